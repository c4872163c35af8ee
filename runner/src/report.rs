//! How a run ends: [`RunReport`] for every run that started (whatever ended it), and
//! [`RunError`] for one that could not start.

use std::time::Duration;

use aiotest_core::lifecycle::{LifecycleError, SetupOutcome};
use aiotest_core::shape::ShapeError;
use aiotest_core::weights::WeightError;
use aiotest_metrics::{ConfigError, Snapshot};

use crate::summary::Summary;

/// Why a run could not be carried out, or (as [`RunReport::fault`]) why it ended early.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// No user type was given.
    #[error("no user types to run")]
    NoUserTypes,
    /// User type weights are unusable.
    #[error("user type weights: {0}")]
    Weights(#[from] WeightError),
    /// Metrics settings are unusable.
    #[error("metrics: {0}")]
    Metrics(#[from] ConfigError),
    /// Setup failed or timed out; teardown was skipped.
    #[error("{0}")]
    Setup(LifecycleError),
    /// The load shape returned an unusable tick.
    #[error("load shape: {0}")]
    Shape(#[from] ShapeError),
    /// A scenario cannot run.
    #[error("scenario: {0}")]
    Scenario(#[from] aiotest_core::scenario::ScenarioError),
    /// Another master holds this run id.
    #[error("another master is running this run id; use another --run-id")]
    MasterExists,
    /// Fewer workers than expected arrived in time.
    #[error("{got} of {want} workers arrived in time")]
    NotEnoughWorkers {
        /// Workers that arrived.
        got: usize,
        /// Workers expected.
        want: usize,
    },
    /// Redis failed.
    #[error("coordination: {0}")]
    Coordination(String),
    /// Redis did not answer for longer than the run allows.
    #[error("Redis has been unreachable for {0:?}: the run cannot reach its workers")]
    RedisUnreachable(Duration),
    /// The run's lock was taken by another master (after a Redis restart, say).
    #[error("another master took this run id's lock; this master stopped")]
    LockLost,
    /// An output refused to start.
    #[error("output `{name}`: {reason}")]
    Output {
        /// The output.
        name: String,
        /// Why.
        reason: String,
    },
    /// A setting of the run is unusable.
    #[error("{what}: {reason}")]
    InvalidConfig {
        /// The setting.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// Why users stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The shape said the test is over.
    ShapeEnded,
    /// A stop command (or the master, on a worker).
    Stopped,
    /// A quit command.
    Quit,
    /// An abort command: users were cancelled without a graceful stop period.
    Aborted,
    /// An output asked the run to stop (a failed `:abort` threshold).
    OutputStopped,
    /// A worker's master went silent.
    MasterLost,
    /// The run could not go on ([`RunReport::fault`] says why).
    Fault,
}

/// What a finished run reports. A run that started always ends with one, whatever ended
/// it; its summary's totals are everything that was received, and its notes say what is
/// missing and why.
///
/// What the report (or the run's `Err`) carries is not also logged by the runner (a
/// failed setup, a fault, a failed teardown or output): the caller says it, once, as the
/// `aiotest` command does. It is logged at `debug` level for tracing.
#[derive(Debug)]
pub struct RunReport {
    /// The end-of-run summary (thresholds evaluated, notes made).
    pub summary: Summary,
    /// Every request, per endpoint.
    pub snapshot: Snapshot,
    /// Run time, pauses excluded.
    pub run_time: Duration,
    /// Why users stopped.
    pub reason: StopReason,
    /// Why the run ended on its own, early: Redis unreachable, the lock lost, a shape
    /// that returned an unusable tick.
    pub fault: Option<RunError>,
    /// What an output asked when it stopped the run.
    pub stopped_by: Option<String>,
    /// How setup went.
    pub setup: SetupOutcome,
    /// How teardown went, if it ran.
    pub teardown: Option<Result<(), LifecycleError>>,
    /// Task errors (errors returned by tasks and hooks).
    pub task_errors: u64,
    /// Panics caught (each replaced a user).
    pub panics: u64,
    /// Tasks completed.
    pub tasks: u64,
    /// Users cancelled because they outlived the graceful stop period.
    pub cancelled_users: usize,
    /// Distributed runs: workers that went MISSING (their users moved to the others).
    pub missing_workers: Vec<String>,
    /// Distributed runs: workers whose final metrics never arrived.
    pub missing_flushes: Vec<String>,
    /// Outputs that failed at the end (an export that could not be written).
    pub output_errors: Vec<String>,
}
