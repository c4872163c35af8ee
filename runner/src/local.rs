//! The local runner: one process runs the whole test, k6 lifecycle included.
//!
//! [`LocalRunner::run`] goes READY → STARTING (setup) → RUNNING (users follow the shape,
//! PAUSED in between as asked) → STOPPING (graceful stop, final flush, teardown) → READY,
//! or QUITTING when asked to quit. Every transition goes through the core state manager
//! and is published on a watch channel, which [`RunnerHandle`] exposes together with the
//! commands (pause, resume, stop, quit, set users) and the live metrics.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aiotest_core::clock::RunClock;
use aiotest_core::lifecycle::{
    Hooks, LifecycleError, Phase, SetupContext, SetupOutcome, teardown_runs,
};
use aiotest_core::shape::{LoadUserShape, ShapeError, validate_spawn_rate, validate_users};
use aiotest_core::state::{Role, RunnerState, StateManager};
use aiotest_core::user::UserType;
use aiotest_core::weights::WeightError;
use aiotest_metrics::{
    ConfigError, LiveStats, LiveView, MetricsCollector, MetricsConfig, MetricsSink,
    PrometheusExporter, RequestMetricsEvent, Snapshot,
};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::manager::UserManager;
use crate::user_loop::{UserEnv, UserStats};

/// How a run is carried out.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The host users target (`--host`), overriding user types' hosts.
    pub host: Option<String>,
    /// Graceful stop period: users finish their task in flight within it (default 30 s).
    pub stop_timeout: Duration,
    /// Skip setup (`--no-setup`).
    pub no_setup: bool,
    /// Skip teardown (`--no-teardown`).
    pub no_teardown: bool,
    /// Metrics batching.
    pub metrics: MetricsConfig,
    /// How often the shape is polled (default 250 ms).
    pub shape_poll: Duration,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            host: None,
            stop_timeout: Duration::from_secs(30),
            no_setup: false,
            no_teardown: false,
            metrics: MetricsConfig::default(),
            shape_poll: Duration::from_millis(250),
        }
    }
}

/// Why a run could not be carried out.
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
    /// A setting of the run is unusable.
    #[error("{what}: {reason}")]
    InvalidConfig {
        /// The setting.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl RunConfig {
    /// Checks the settings: the host must be a usable URL (a port that does not parse is
    /// never read as the default one), the metrics settings consistent.
    pub fn validate(&self) -> Result<(), RunError> {
        if let Some(host) = &self.host {
            aiotest_core::url::parse_base_url(host).map_err(|e| RunError::InvalidConfig {
                what: "host",
                reason: format!("`{host}`: {e}"),
            })?;
        }
        self.metrics.validate()?;
        Ok(())
    }
}

/// Commands a [`RunnerHandle`] sends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Command {
    Pause,
    Resume,
    Stop,
    Quit,
    Abort,
    SetUsers(u32),
}

/// Why users stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The shape said the test is over.
    ShapeEnded,
    /// A stop command.
    Stopped,
    /// A quit command.
    Quit,
    /// An abort command: users were cancelled without a graceful stop period.
    Aborted,
}

/// What a finished run reports.
#[derive(Debug)]
pub struct RunReport {
    /// Every request, per endpoint.
    pub snapshot: Snapshot,
    /// Run time, pauses excluded.
    pub run_time: Duration,
    /// Why users stopped.
    pub reason: StopReason,
    /// How setup went.
    pub setup: SetupOutcome,
    /// How teardown went, if it ran.
    pub teardown: Option<Result<(), LifecycleError>>,
    /// Task errors, panics and completed tasks.
    pub task_errors: u64,
    /// Panics caught (each replaced a user).
    pub panics: u64,
    /// Tasks completed.
    pub tasks: u64,
    /// Users cancelled because they outlived the graceful stop period.
    pub cancelled_users: usize,
    /// Distributed runs: workers that went MISSING (their users moved to the others).
    pub missing_workers: Vec<String>,
}

pub(crate) struct Shared {
    pub(crate) live: Mutex<LiveView>,
    pub(crate) users: Mutex<Vec<(String, u64)>>,
    pub(crate) workers: Mutex<Vec<WorkerView>>,
    pub(crate) exporter: Option<Arc<PrometheusExporter>>,
}

/// A distributed run's worker, as its master sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WorkerView {
    /// The worker's node id.
    pub id: String,
    /// Its state (MISSING when silent past the liveness timeout).
    pub state: RunnerState,
    /// Users it reported in its last heartbeat.
    pub users: u64,
}

/// Controls and observes a running [`LocalRunner`]. Cheap to clone.
#[derive(Clone)]
pub struct RunnerHandle {
    commands: mpsc::Sender<Command>,
    state: watch::Receiver<RunnerState>,
    shared: Arc<Shared>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Held only to copy or merge small values, never across an await.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A runner's state machine and where its state is published: the watch channel its
/// handles read and the Prometheus `aiotest_runner_state` gauge. Reads go to the state
/// machine (`Deref`); every transition goes through [`enter`](Self::enter).
pub(crate) struct PublishedState {
    states: StateManager,
    tx: watch::Sender<RunnerState>,
    exporter: Option<Arc<PrometheusExporter>>,
}

impl PublishedState {
    /// Moves to `to` and publishes it. The runners only ask for legal transitions; an
    /// illegal one is logged, never a crash.
    pub(crate) fn enter(&mut self, to: RunnerState) {
        match self.states.transition_state(to) {
            Ok(_) => {
                let _ = self.tx.send(to);
                if let Some(e) = &self.exporter {
                    e.set_runner_state(to);
                }
            }
            Err(e) => tracing::error!("{e}"),
        }
    }
}

impl std::ops::Deref for PublishedState {
    type Target = StateManager;

    fn deref(&self) -> &StateManager {
        &self.states
    }
}

impl RunnerHandle {
    /// A handle with its command receiver and the published state machine of a runner in
    /// `role`, for the runners of this crate.
    pub(crate) fn create(
        exporter: Option<Arc<PrometheusExporter>>,
        role: Role,
    ) -> (RunnerHandle, mpsc::Receiver<Command>, PublishedState) {
        let (state_tx, state_rx) = watch::channel(RunnerState::Ready);
        // Commands are rare and small; a handful in flight is plenty.
        let (cmd_tx, commands) = mpsc::channel(16);
        let handle = RunnerHandle {
            commands: cmd_tx,
            state: state_rx,
            shared: Arc::new(Shared {
                live: Mutex::new(LiveView::default()),
                users: Mutex::new(Vec::new()),
                workers: Mutex::new(Vec::new()),
                exporter: exporter.clone(),
            }),
        };
        let states = PublishedState {
            states: StateManager::new(role),
            tx: state_tx,
            exporter,
        };
        (handle, commands, states)
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    async fn send(&self, c: Command) {
        // A closed channel means the run is over: there is nothing left to control.
        let _ = self.commands.send(c).await;
    }

    /// Pauses users at their next task boundary and freezes the shape's clock.
    pub async fn pause(&self) {
        self.send(Command::Pause).await;
    }

    /// Resumes a paused run.
    pub async fn resume(&self) {
        self.send(Command::Resume).await;
    }

    /// Stops users (gracefully), then runs teardown and ends the run.
    pub async fn stop(&self) {
        self.send(Command::Stop).await;
    }

    /// Like stop, and the runner ends in QUITTING.
    pub async fn quit(&self) {
        self.send(Command::Quit).await;
    }

    /// Stops at once: no graceful stop period (a second Ctrl-C). Requests in flight are
    /// cancelled; everything recorded so far is still in the summary.
    pub async fn abort(&self) {
        self.send(Command::Abort).await;
    }

    /// Every request counted so far (as of the last flush), for live threshold checks.
    pub fn total(&self) -> Snapshot {
        lock(&self.shared.live).total().clone()
    }

    /// Overrides the shape's user count until the shape's target changes again.
    pub async fn set_users(&self, users: u32) {
        self.send(Command::SetUsers(users)).await;
    }

    /// The current state.
    pub fn state(&self) -> RunnerState {
        *self.state.borrow()
    }

    /// A receiver that sees every state change.
    pub fn subscribe(&self) -> watch::Receiver<RunnerState> {
        self.state.clone()
    }

    /// Totals and the current window's figures.
    pub fn live(&self) -> LiveStats {
        lock(&self.shared.live).current()
    }

    /// A distributed run's workers as the master sees them (empty for a local run).
    pub fn workers(&self) -> Vec<WorkerView> {
        lock(&self.shared.workers).clone()
    }

    /// Running users per user type.
    pub fn users(&self) -> Vec<(String, u64)> {
        lock(&self.shared.users).clone()
    }

    /// The Prometheus exporter, if the runner has one.
    pub fn exporter(&self) -> Option<Arc<PrometheusExporter>> {
        self.shared.exporter.clone()
    }
}

pub(crate) fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Hands closed intervals to the live view and the Prometheus exporter.
pub(crate) struct Sinks<'a> {
    pub(crate) live: &'a Mutex<LiveView>,
    pub(crate) exporter: Option<&'a PrometheusExporter>,
}

impl MetricsSink for Sinks<'_> {
    fn accept(&mut self, interval: Snapshot) {
        if let Some(e) = self.exporter {
            e.update(&interval);
        }
        lock(self.live).push(interval);
    }
}

/// Runs a load test on this machine (the seed's `LocalRunner(user_types, load_shape,
/// config)`).
pub struct LocalRunner {
    types: Vec<UserType>,
    shape: Box<dyn LoadUserShape>,
    hooks: Hooks,
    config: RunConfig,
    event: RequestMetricsEvent,
    states: PublishedState,
    commands: mpsc::Receiver<Command>,
    handle: RunnerHandle,
}

impl LocalRunner {
    /// A runner for `types` following `shape`, with lifecycle `hooks`.
    pub fn new(
        types: Vec<UserType>,
        shape: impl LoadUserShape + 'static,
        hooks: Hooks,
        config: RunConfig,
    ) -> Result<Self, RunError> {
        Self::with_options(
            types,
            Box::new(shape),
            hooks,
            config,
            RequestMetricsEvent::new(),
            None,
        )
    }

    /// As [`new`](Self::new), with a `request_metrics` event and a Prometheus exporter.
    pub fn with_options(
        types: Vec<UserType>,
        shape: Box<dyn LoadUserShape>,
        hooks: Hooks,
        config: RunConfig,
        event: RequestMetricsEvent,
        exporter: Option<Arc<PrometheusExporter>>,
    ) -> Result<Self, RunError> {
        if types.is_empty() {
            return Err(RunError::NoUserTypes);
        }
        config.validate()?;
        let weights: Vec<u32> = types.iter().map(UserType::weight).collect();
        aiotest_core::weights::split_by_weight(0, &weights)?;
        let (handle, commands, states) = RunnerHandle::create(exporter, Role::Local);
        Ok(LocalRunner {
            types,
            shape,
            hooks,
            config,
            event,
            states,
            commands,
            handle,
        })
    }

    /// A handle to control and observe the run.
    pub fn handle(&self) -> RunnerHandle {
        self.handle.clone()
    }

    /// Starts the run on its own task (the seed's `start`): control it with
    /// [`handle`](Self::handle), taken before, and await the report from the join handle.
    /// ([`new`](Self::new) does the seed's `initialize`: everything is checked there.)
    pub fn start(self) -> tokio::task::JoinHandle<Result<RunReport, RunError>> {
        tokio::spawn(self.run())
    }

    /// Runs the whole test: setup, users following the shape until it ends or a stop or
    /// quit arrives, graceful stop, final metrics flush, teardown.
    pub async fn run(mut self) -> Result<RunReport, RunError> {
        self.states.enter(RunnerState::Starting);
        // Created before setup, so setup's own requests are counted like any other.
        let collector = MetricsCollector::new(self.config.metrics.clone(), self.event.clone())?;
        let setup = run_setup(&self.hooks, &self.config, &collector).await;
        if let SetupOutcome::Failed = setup.0 {
            self.states.enter(RunnerState::Stopping);
            self.states.enter(RunnerState::Ready);
            return Err(RunError::Setup(setup.1.unwrap_or(
                LifecycleError::Timeout {
                    phase: Phase::Setup,
                    after: self.hooks.setup_timeout(),
                },
            )));
        }
        let setup = setup.0;
        let stats = Arc::new(UserStats::default());
        let env = Arc::new(UserEnv {
            collector: collector.clone(),
            host: self.config.host.as_deref().map(Arc::from),
            setup: setup.data().cloned(),
            stats: Arc::clone(&stats),
        });
        let mut manager = UserManager::new(self.types.clone(), env)?;
        let mut clock = RunClock::new();
        let start = Instant::now();
        clock.start(start.into_std());
        let (reason, shape_error) = self
            .control_loop(&mut manager, &mut clock, &collector)
            .await;
        let run_time = clock.run_time(Instant::now().into_std());
        if self.states.get_current_state() == RunnerState::Paused || self.states.can_stop() {
            self.states.enter(RunnerState::Stopping);
        }
        let grace = if reason == StopReason::Aborted {
            Duration::ZERO
        } else {
            self.config.stop_timeout
        };
        let commands = &mut self.commands;
        let abort = async move {
            while let Some(c) = commands.recv().await {
                if c == Command::Abort {
                    return;
                }
            }
            std::future::pending::<()>().await;
        };
        let cancelled = manager.stop_all_users_or(grace, abort).await;
        self.publish_users(&manager);
        drop(manager);
        let shared = Arc::clone(&self.handle.shared);
        collector.flush_to(
            &mut Sinks {
                live: &shared.live,
                exporter: shared.exporter.as_deref(),
            },
            now_us(),
        );
        let teardown = if teardown_runs(&self.hooks, &setup, self.config.no_teardown) {
            Some(run_teardown(&self.hooks, setup.data().cloned()).await)
        } else {
            None
        };
        let snapshot = lock(&shared.live).total().clone();
        self.states.enter(if reason == StopReason::Quit {
            RunnerState::Quitting
        } else {
            RunnerState::Ready
        });
        if let Some(e) = shape_error {
            return Err(RunError::Shape(e));
        }
        Ok(RunReport {
            snapshot,
            run_time,
            reason,
            setup,
            teardown,
            task_errors: stats.task_errors.load(Ordering::Relaxed),
            panics: stats.panics.load(Ordering::Relaxed),
            tasks: stats.tasks.load(Ordering::Relaxed),
            cancelled_users: cancelled,
            missing_workers: Vec::new(),
        })
    }

    fn publish_users(&self, manager: &UserManager) {
        let counts: Vec<(String, u64)> = manager
            .counts_by_type()
            .into_iter()
            .map(|(n, c)| (n.to_owned(), c))
            .collect();
        if let Some(e) = &self.handle.shared.exporter {
            for (name, n) in &counts {
                e.set_users(name, *n);
            }
        }
        *lock(&self.handle.shared.users) = counts;
    }

    /// Polls the shape, serves commands, paces users and flushes metrics until the test
    /// ends. Never blocks on any one of them.
    async fn control_loop(
        &mut self,
        manager: &mut UserManager,
        clock: &mut RunClock,
        collector: &MetricsCollector,
    ) -> (StopReason, Option<ShapeError>) {
        let shared = Arc::clone(&self.handle.shared);
        let flush_every = self.config.metrics.flush_interval;
        let mut next_flush = Instant::now() + flush_every;
        let mut next_poll = Instant::now();
        let mut last_tick: Option<(u32, f64)> = None;
        let mut manager_due: Option<Instant> = None;
        let mut running = false;
        loop {
            let paused = self.states.get_current_state() == RunnerState::Paused;
            let mut wake = next_flush;
            if !paused {
                wake = wake.min(next_poll);
                if let Some(d) = manager_due {
                    wake = wake.min(d);
                }
            }
            tokio::select! {
                biased;
                cmd = self.commands.recv() => {
                    let now = Instant::now();
                    match cmd {
                        Some(Command::Pause) if self.states.can_pause() => {
                            manager.pause_all_users(now);
                            clock.pause(now.into_std());
                            self.states.enter(RunnerState::Paused);
                        }
                        Some(Command::Resume) if self.states.can_resume() => {
                            manager.resume_all_users(now);
                            clock.resume(now.into_std());
                            self.states.enter(RunnerState::Running);
                            next_poll = now;
                        }
                        Some(Command::Stop) => return (StopReason::Stopped, None),
                        Some(Command::Quit) | None => return (StopReason::Quit, None),
                        Some(Command::Abort) => return (StopReason::Aborted, None),
                        Some(Command::SetUsers(n)) if validate_users(n.into()).is_ok() => {
                            let rate = manager.target().map_or(f64::INFINITY, |(_, r)| r);
                            manager.manage_users(n, rate, now);
                            manager_due = Some(now);
                        }
                        Some(other) => tracing::debug!(?other, state = %self.states.get_current_state(), "command ignored in this state"),
                    }
                }
                () = tokio::time::sleep_until(wake) => {}
            }
            let now = Instant::now();
            if now >= next_flush {
                collector.flush_to(
                    &mut Sinks {
                        live: &shared.live,
                        exporter: shared.exporter.as_deref(),
                    },
                    now_us(),
                );
                self.publish_users(manager);
                next_flush = now + flush_every;
            }
            if self.states.get_current_state() == RunnerState::Paused {
                continue;
            }
            if now >= next_poll {
                // Polls sit on the run clock's grid, so a shape ending at 10 s is seen at
                // 10 s even after a pause shifted wall time.
                let run_time = clock.run_time(now.into_std());
                let poll = self.config.shape_poll.max(Duration::from_millis(1));
                let into = Duration::from_nanos((run_time.as_nanos() % poll.as_nanos()) as u64);
                next_poll = now + (poll - into);
                match self.shape.tick(clock.run_time(now.into_std())) {
                    None => return (StopReason::ShapeEnded, None),
                    Some((users, rate)) => {
                        if let Err(e) =
                            validate_spawn_rate(rate).and(validate_users(users.into()).map(drop))
                        {
                            tracing::error!("load shape: {e}");
                            return (StopReason::Stopped, Some(e));
                        }
                        // A new shape target replaces any manual override.
                        if last_tick != Some((users, rate)) {
                            last_tick = Some((users, rate));
                            manager.manage_users(users, rate, now);
                        }
                    }
                }
            }
            manager_due = manager.step(now);
            manager.cleanup_inactive_users();
            self.publish_users(manager);
            if !running {
                running = true;
                self.states.enter(RunnerState::Running);
            }
        }
    }
}

/// Runs setup under its timeout, if there is one and it is not skipped. Setup gets the
/// run's recorder (and collector) in its context, so its own requests are counted.
pub(crate) async fn run_setup(
    hooks: &Hooks,
    config: &RunConfig,
    collector: &MetricsCollector,
) -> (SetupOutcome, Option<LifecycleError>) {
    if config.no_setup {
        return (SetupOutcome::Skipped, None);
    }
    let ctx = SetupContext::new(config.host.as_deref().map(Arc::from))
        .with(collector.recorder())
        .with(collector.clone());
    let Some(fut) = hooks.run_setup(ctx) else {
        return (SetupOutcome::NotDefined, None);
    };
    let timeout = hooks.setup_timeout();
    let error = match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(data)) => return (SetupOutcome::Done(data), None),
        Ok(Err(e)) => e,
        Err(_) => LifecycleError::Timeout {
            phase: Phase::Setup,
            after: timeout,
        },
    };
    tracing::error!("{error}");
    (SetupOutcome::Failed, Some(error))
}

/// Runs teardown under its timeout, if there is one.
pub(crate) async fn run_teardown(
    hooks: &Hooks,
    data: Option<aiotest_core::lifecycle::SetupData>,
) -> Result<(), LifecycleError> {
    let Some(fut) = hooks.run_teardown(data) else {
        return Ok(());
    };
    let timeout = hooks.teardown_timeout();
    let result = match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(LifecycleError::Timeout {
            phase: Phase::Teardown,
            after: timeout,
        }),
    };
    if let Err(e) = &result {
        tracing::error!("{e}");
    }
    result
}

#[cfg(test)]
mod published_state_tests {
    use super::*;

    #[test]
    fn every_transition_reaches_the_handles_and_the_gauge_and_illegal_ones_change_nothing() {
        let exporter = Arc::new(PrometheusExporter::new());
        for role in [Role::Local, Role::Master, Role::Worker] {
            let (handle, _commands, mut states) =
                RunnerHandle::create(Some(Arc::clone(&exporter)), role);
            states.enter(RunnerState::Starting);
            states.enter(RunnerState::Running);
            assert_eq!(*handle.state.borrow(), RunnerState::Running, "{role:?}");
            assert!(
                exporter
                    .render()
                    .contains("aiotest_runner_state{state=\"RUNNING\"} 1"),
                "{role:?}: {}",
                exporter.render()
            );
            // Running -> Starting is illegal: logged, nothing published.
            states.enter(RunnerState::Starting);
            assert_eq!(states.get_current_state(), RunnerState::Running);
            assert_eq!(*handle.state.borrow(), RunnerState::Running);
        }
    }
}
