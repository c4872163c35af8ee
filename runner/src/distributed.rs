//! Distributed runs: one master and many workers meeting in Redis. The settings both
//! sides share are here; the master is in `master.rs`, the worker in `worker.rs`.
//!
//! Every master start creates a run *instance*: its keys, channels and metrics stream are
//! namespaced by it, and it announces itself every heartbeat on its run id's announce
//! channel. A worker joins only an instance a live master announces (never a plan it
//! finds stored), so a run id used again sends load only where its new master says, and
//! nothing an earlier instance left is ever counted. The master holds the run id's lock
//! for the whole run (taken back after a Redis restart), so there are never two masters.

use std::time::Duration;

use crate::report::RunError;

/// Settings shared by masters and workers.
#[derive(Debug, Clone)]
pub struct DistributedConfig {
    /// The run id: a master and workers with the same id meet (default `default`).
    pub run_id: String,
    /// How often heartbeats go out (default 1 s).
    pub heartbeat_interval: Duration,
    /// Master: a worker silent this long is MISSING (default 5 s).
    pub liveness_timeout: Duration,
    /// Worker: a master silent this long makes the worker stop its users (default 10 s).
    pub master_timeout: Duration,
    /// Master: workers to wait for before starting (default 1).
    pub expect_workers: usize,
    /// Master: how long to wait for them (default 60 s).
    pub wait_timeout: Duration,
    /// Worker: exit when the master is lost instead of waiting for a new one.
    pub exit_on_master_loss: bool,
    /// Master: tell workers to quit (not just stop) when the run ends, so worker
    /// processes exit with it.
    pub quit_workers_at_end: bool,
    /// Master: the run lock's timeout; a master that dies frees the run id after it
    /// (default 10 s; the lock is renewed every third of it while the master lives).
    pub lock_timeout: Duration,
    /// How long Redis may be unreachable before the run ends with an error (master) or
    /// the worker exits while waiting for a master (default 30 s). A worker in a run
    /// stops its users sooner: when its master is silent for `master_timeout`.
    pub redis_timeout: Duration,
}

impl Default for DistributedConfig {
    fn default() -> Self {
        DistributedConfig {
            run_id: "default".into(),
            heartbeat_interval: Duration::from_secs(1),
            liveness_timeout: Duration::from_secs(5),
            master_timeout: Duration::from_secs(10),
            expect_workers: 1,
            wait_timeout: Duration::from_secs(60),
            exit_on_master_loss: false,
            quit_workers_at_end: false,
            lock_timeout: Duration::from_secs(10),
            redis_timeout: Duration::from_secs(30),
        }
    }
}

/// Most workers a master waits for.
pub const MAX_WORKERS: usize = 10_000;

impl DistributedConfig {
    /// Checks the settings: a valid run id, a liveness timeout of at least two heartbeats
    /// (shorter marks a healthy worker MISSING between two of its heartbeats), a master
    /// timeout of at least two heartbeats, 1 to [`MAX_WORKERS`] expected workers.
    pub fn validate(&self) -> Result<(), RunError> {
        let invalid = |what, reason: String| Err(RunError::InvalidConfig { what, reason });
        if let Err(e) = aiotest_coordinator::wire::check_run_id(&self.run_id) {
            return invalid("run id", e.to_string());
        }
        if self.heartbeat_interval.is_zero() {
            return invalid("heartbeat interval", "must be longer than zero".into());
        }
        let two_beats = self.heartbeat_interval * 2;
        if self.liveness_timeout < two_beats {
            return invalid(
                "liveness timeout",
                format!(
                    "{:?} is under two heartbeats ({two_beats:?}): healthy workers would go MISSING",
                    self.liveness_timeout
                ),
            );
        }
        if self.master_timeout < two_beats {
            return invalid(
                "master timeout",
                format!(
                    "{:?} is under two heartbeats ({two_beats:?})",
                    self.master_timeout
                ),
            );
        }
        if self.redis_timeout < two_beats {
            return invalid(
                "redis timeout",
                format!(
                    "{:?} is under two heartbeats ({two_beats:?})",
                    self.redis_timeout
                ),
            );
        }
        if !(1..=MAX_WORKERS).contains(&self.expect_workers) {
            return invalid(
                "expected workers",
                format!("{} is not between 1 and {MAX_WORKERS}", self.expect_workers),
            );
        }
        Ok(())
    }
}

impl From<aiotest_coordinator::LockError> for RunError {
    fn from(e: aiotest_coordinator::LockError) -> Self {
        match e {
            aiotest_coordinator::LockError::Held { .. } => RunError::MasterExists,
            other => RunError::Coordination(other.to_string()),
        }
    }
}

impl From<aiotest_coordinator::CoordError> for RunError {
    fn from(e: aiotest_coordinator::CoordError) -> Self {
        RunError::Coordination(e.to_string())
    }
}

/// How long an instance's keys (its plan and metrics stream) live without their master
/// refreshing them: a master that dies leaves nothing behind for longer.
pub(crate) const INSTANCE_KEY_TTL: Duration = Duration::from_secs(3_600);
