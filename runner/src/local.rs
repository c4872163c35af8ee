//! Users in this process: the placement of a local run and of every worker, and
//! [`LocalRunner`], the engine with it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use aiotest_coordinator::wire::TaskCounts;
use aiotest_core::lifecycle::Hooks;
use aiotest_core::shape::LoadUserShape;
use aiotest_core::state::Role;
use aiotest_core::user::UserType;
use aiotest_metrics::{PrometheusExporter, Snapshot};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::engine::{Abort, Begin, Finish, Placement, RunConfig, Runner};
use crate::handle::{Command, RunnerHandle, WorkerView};
use crate::manager::UserManager;
use crate::output::Output;
use crate::report::{RunError, RunReport};
use crate::user_loop::{UserEnv, UserStats};

/// Users run by this process's [`UserManager`].
pub(crate) struct LocalPlacement {
    types: Vec<UserType>,
    host: Option<Arc<str>>,
    stats: Arc<UserStats>,
    manager: Option<UserManager>,
    cancelled: u64,
}

impl LocalPlacement {
    pub(crate) fn new(types: Vec<UserType>, config: &RunConfig) -> Self {
        LocalPlacement {
            types,
            host: config.host.as_deref().map(Arc::from),
            stats: Arc::default(),
            manager: None,
            cancelled: 0,
        }
    }
}

impl Placement for LocalPlacement {
    async fn prepare(&mut self, _: &mut mpsc::Receiver<Command>) -> Result<bool, RunError> {
        Ok(true)
    }

    fn begin(&mut self, begin: Begin<'_>) -> Result<(), RunError> {
        let env = Arc::new(UserEnv {
            collector: begin.collector.clone(),
            host: self.host.clone(),
            setup: begin.setup,
            stats: Arc::clone(&self.stats),
        });
        self.manager = Some(UserManager::new(self.types.clone(), env)?);
        Ok(())
    }

    fn set_target(&mut self, users: u32, rate: f64, now: Instant) {
        if let Some(m) = self.manager.as_mut() {
            m.manage_users(users, rate, now);
        }
    }

    fn set_type_targets(&mut self, targets: &[u32], rate: f64, now: Instant) {
        if let Some(m) = self.manager.as_mut() {
            m.manage_users_by_type(targets, rate, now);
        }
    }

    fn target(&self) -> Option<(u32, f64)> {
        self.manager.as_ref().and_then(UserManager::target)
    }

    fn pause(&mut self, now: Instant) {
        if let Some(m) = self.manager.as_mut() {
            m.pause_all_users(now);
        }
    }

    fn resume(&mut self, now: Instant) {
        if let Some(m) = self.manager.as_mut() {
            m.resume_all_users(now);
        }
    }

    fn step(&mut self, now: Instant) -> Result<Option<Instant>, RunError> {
        let Some(m) = self.manager.as_mut() else {
            return Ok(None);
        };
        let due = m.step(now);
        m.cleanup_inactive_users();
        Ok(due)
    }

    fn take_intervals(&mut self, _: &mut Vec<Snapshot>) {}

    fn watermark(&self, now_us: u64, _: u64) -> u64 {
        now_us
    }

    fn users(&self) -> Vec<(String, u64)> {
        match &self.manager {
            Some(m) => m
                .counts_by_type()
                .into_iter()
                .map(|(n, c)| (n.to_owned(), c))
                .collect(),
            None => self
                .types
                .iter()
                .map(|t| (t.name().to_owned(), 0))
                .collect(),
        }
    }

    fn workers(&self) -> Vec<WorkerView> {
        Vec::new()
    }

    fn counts(&self) -> TaskCounts {
        TaskCounts {
            tasks: self.stats.tasks.load(Ordering::Relaxed),
            task_errors: self.stats.task_errors.load(Ordering::Relaxed),
            panics: self.stats.panics.load(Ordering::Relaxed),
            cancelled_users: self.cancelled,
        }
    }

    async fn stop(&mut self, _quit: bool, grace: Duration, abort: Abort<'_>) {
        if let Some(m) = self.manager.as_mut() {
            self.cancelled += m.stop_all_users_or(grace, abort).await as u64;
        }
    }

    async fn finish(&mut self) -> Finish {
        // Users are gone; their recorders flushed as they ended.
        self.manager = None;
        Finish::default()
    }
}

/// Runs a load test on this machine (AioTest's `LocalRunner(user_types, load_shape,
/// config)`): the engine with users in this process.
pub struct LocalRunner {
    runner: Runner,
}

impl LocalRunner {
    /// A runner for `types` following `shape`, with lifecycle `hooks`.
    pub fn new(
        types: Vec<UserType>,
        shape: impl LoadUserShape + 'static,
        hooks: Hooks,
        config: RunConfig,
    ) -> Result<Self, RunError> {
        Self::with_exporter(types, Box::new(shape), hooks, config, None)
    }

    /// As [`new`](Self::new), serving Prometheus metrics through `exporter` (its
    /// output is added, and the runner state gauge kept).
    pub fn with_exporter(
        types: Vec<UserType>,
        shape: Box<dyn LoadUserShape>,
        hooks: Hooks,
        config: RunConfig,
        exporter: Option<Arc<PrometheusExporter>>,
    ) -> Result<Self, RunError> {
        Ok(LocalRunner {
            runner: Runner::new(Role::Local, types, shape, hooks, config, exporter)?,
        })
    }

    /// Adds an output (see [`crate::output`]); outputs are called in the order added.
    pub fn output(mut self, output: impl Output + 'static) -> Self {
        self.runner.add_output(Box::new(output));
        self
    }

    /// A handle to control and observe the run.
    pub fn handle(&self) -> RunnerHandle {
        self.runner.core.handle.clone()
    }

    /// Starts the run on its own task (AioTest's `start`): control it with
    /// [`handle`](Self::handle), taken before, and await the report from the join handle.
    /// ([`new`](Self::new) does AioTest's `initialize`: everything is checked there.)
    pub fn start(self) -> tokio::task::JoinHandle<Result<RunReport, RunError>> {
        tokio::spawn(self.run())
    }

    /// Runs the whole test: setup, users following the shape until it ends or a stop or
    /// quit arrives, graceful stop, teardown, final metrics, summary. Every ending that
    /// got past setup is a report.
    pub async fn run(mut self) -> Result<RunReport, RunError> {
        let placement = LocalPlacement::new(self.runner.types.clone(), &self.runner.config);
        self.runner.run(placement).await
    }
}
