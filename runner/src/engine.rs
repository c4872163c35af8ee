//! The run engine: the one lifecycle and the one control loop of every runner.
//!
//! [`Engine::run`] goes READY → STARTING (the placement prepares, setup runs) → RUNNING
//! (the scenarios start, run and end as their executors say; PAUSED in between as asked)
//! → STOPPING (graceful stop, teardown, final metrics) → READY, or QUITTING when asked to
//! quit. Whatever ends the run (its scenarios are done, a command, an output, a fault of
//! the placement), it ends the same way and its report has a summary.
//!
//! What differs between runners is a [`Placement`]: where users run (this process's user
//! managers, or workers reached through Redis) and where metrics come from besides the
//! run's own collector. A worker is an engine too: its scenarios are driven by the
//! commands its master sends, not by their executors here.
//!
//! Metrics: every flush interval the engine takes what its collector and the placement
//! (workers' snapshots) gathered, and files each snapshot under the interval of the grid
//! its records' own time falls in (the grid is absolute: the same seconds in every
//! process). An interval closes a flush interval and a quarter after its end, so that
//! users' batches of it have arrived, and once every source has reported past it (the
//! placement's watermark); then the live view, the interval series and every output see
//! it. Totals take every snapshot as it arrives, so nothing is lost to a late one: it is
//! counted in the next interval to close, marked `late`, and the summary says how many.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use aiotest_coordinator::wire::TaskCounts;
use aiotest_core::clock::RunClock;
use aiotest_core::lifecycle::{
    Hooks, LifecycleError, Phase, SetupContext, SetupData, SetupOutcome, teardown_runs,
};
use aiotest_core::scenario::{Scenario, validate_scenarios};
use aiotest_core::shape::{IMMEDIATE, validate_spawn_rate, validate_users};
use aiotest_core::state::{Role, RunnerState};
use aiotest_core::user::UserType;
use aiotest_metrics::{
    ErrorCategory, MetricsCollector, MetricsConfig, PrometheusExporter, RequestMetricsEvent,
    Snapshot,
};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::aggregate::Aggregator;
use crate::handle::{Command, RunnerCore, ScenarioCommand, WorkerView, lock, now_us};
use crate::output::{IntervalView, Output, PrometheusOutput, RunInfo, Verdict};
use crate::report::{RunError, RunReport, StopReason};
use crate::scenarios::{Part, Scenarios};
use crate::series::SeriesPoint;
use crate::summary::{RunMeta, Summary};

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
    /// Metrics batching; `flush_interval` is also the length of the run's intervals.
    pub metrics: MetricsConfig,
    /// How often closed-model executors (load shapes) are polled (default 250 ms).
    pub shape_poll: Duration,
    /// The command that started the run, shown in reports (the command line puts its
    /// own).
    pub command: Option<String>,
    /// Tags of the whole test (k6's `--tag`): every named-metric sample carries them,
    /// under its scenario's own tags.
    pub tags: Vec<(String, String)>,
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
            command: None,
            tags: Vec::new(),
        }
    }
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
        for (k, v) in &self.tags {
            aiotest_core::tag::check(k, v).map_err(|why| RunError::InvalidConfig {
                what: "tag",
                reason: format!("`{}`: {why}", k.escape_debug()),
            })?;
        }
        Ok(())
    }
}

/// What a placement gets when users may start.
pub(crate) struct Begin<'a> {
    /// The run's collector: users record into it.
    pub(crate) collector: &'a MetricsCollector,
    /// Setup's data, if setup ran and returned some.
    pub(crate) setup: Option<SetupData>,
}

/// What a placement reports when it is done.
#[derive(Default)]
pub(crate) struct Finish {
    pub(crate) missing_workers: Vec<String>,
    /// Workers whose final flush never came.
    pub(crate) missing_flushes: Vec<String>,
    /// The same, each with the end of the last interval it reported (µs since the
    /// epoch): its metrics are missing from there on.
    pub(crate) missing_since_us: Vec<(String, Option<u64>)>,
    /// What else the placement has to say of the figures.
    pub(crate) notes: Vec<String>,
}

/// A future the placement's stop races: resolves on an abort (a second Ctrl-C).
pub(crate) type Abort<'a> = Pin<&'a mut (dyn Future<Output = ()> + Send)>;

/// Where a run's users are and where its metrics come from: what local, master and
/// worker runs differ in. Nothing here may block: a placement that does I/O hands it to
/// a task of its own, so the control loop always serves commands at once.
pub(crate) trait Placement: Send {
    /// Before setup (a master takes its lock and waits for workers). `Ok(Some(reason))`
    /// when a command from `commands` ended the run meanwhile ([`Command::ending`]).
    fn prepare(
        &mut self,
        commands: &mut mpsc::Receiver<Command>,
    ) -> impl Future<Output = Result<Option<StopReason>, RunError>> + Send;

    /// Users may start: setup is done.
    fn begin(&mut self, begin: Begin<'_>) -> Result<(), RunError>;

    /// Scenario `i` starts: a closed-model one waits for targets; an iteration or
    /// arrival-rate one starts its part.
    fn start_scenario(&mut self, i: usize, part: Part, now: Instant);

    /// A new user target for scenario `i`, moved to at `rate` users per second.
    fn set_target(&mut self, i: usize, users: u32, rate: f64, now: Instant);

    /// Absolute users per user type of scenario `i` (a worker told by its master).
    fn set_type_targets(&mut self, i: usize, targets: &[u32], rate: f64, now: Instant);

    /// Scenario `i`'s current target.
    fn target(&self, i: usize) -> Option<(u32, f64)>;

    /// Scenario `i` ends: its users finish their iteration within `grace`.
    fn end_scenario(&mut self, i: usize, grace: Duration, now: Instant);

    /// Whether scenario `i` has nothing left running: its users are gone (its budget
    /// spent, or it ended).
    fn scenario_done(&mut self, i: usize) -> bool;

    /// Pause users at their next task boundary.
    fn pause(&mut self, now: Instant);

    /// Let them go on.
    fn resume(&mut self, now: Instant);

    /// Does what is due at `now`; says when it next has something due. An error ends
    /// the run (gracefully, with a summary): the placement cannot go on.
    fn step(&mut self, now: Instant) -> Result<Option<Instant>, RunError>;

    /// Snapshots from elsewhere (workers) since the last call.
    fn take_intervals(&mut self, into: &mut Vec<Snapshot>);

    /// The time (µs since the epoch) up to which every source of snapshots has reported:
    /// intervals ending by then may close.
    fn watermark(&self, now_us: u64, interval_us: u64) -> u64;

    /// Running users per user type.
    fn users(&self) -> Vec<(String, u64)>;

    /// A master's workers.
    fn workers(&self) -> Vec<WorkerView>;

    /// What users' tasks did so far.
    fn counts(&self) -> TaskCounts;

    /// Stops every user: within `grace`, then cancelled; `abort` cuts the grace short.
    fn stop(
        &mut self,
        quit: bool,
        grace: Duration,
        abort: Abort<'_>,
    ) -> impl Future<Output = ()> + Send;

    /// After the run: release what the placement holds.
    fn finish(&mut self) -> impl Future<Output = Finish> + Send;
}

/// Maps the tokio clock onto wall-clock microseconds from one reading, so every interval
/// of a run sits on one grid (and on tokio's paused clock in tests).
struct TimeBase {
    at: Instant,
    wall_us: u64,
}

impl TimeBase {
    fn now() -> Self {
        TimeBase {
            at: Instant::now(),
            wall_us: now_us(),
        }
    }

    fn wall_us(&self, t: Instant) -> u64 {
        let since = t.saturating_duration_since(self.at).as_micros();
        self.wall_us
            .saturating_add(u64::try_from(since).unwrap_or(u64::MAX))
    }
}

/// How the control loop ended.
struct Ending {
    reason: StopReason,
    fault: Option<RunError>,
    stopped_by: Option<String>,
    /// The scenarios ended on their own at this run time (graceful stops not in it).
    run_time: Option<Duration>,
}

impl Ending {
    fn because(reason: StopReason) -> Self {
        Ending {
            reason,
            fault: None,
            stopped_by: None,
            run_time: None,
        }
    }

    /// The run cannot go on. The error goes into the report as its fault: the caller
    /// says it, once (logged here at debug level only).
    fn fault(e: RunError) -> Self {
        tracing::debug!("{e}");
        Ending {
            fault: Some(e),
            ..Ending::because(StopReason::Fault)
        }
    }
}

/// The state of one run inside [`Engine::run`].
struct Run {
    collector: MetricsCollector,
    clock: RunClock,
    base: TimeBase,
    agg: Aggregator,
    next_flush: Instant,
    planned: Option<Duration>,
    /// The run's pauses (wall-clock µs), the last one open while paused.
    pauses: Vec<(u64, Option<u64>)>,
    /// The stretch without a response going on (since when, wall-clock µs), and the
    /// longest one seen.
    quiet_since: Option<u64>,
    longest_quiet: Option<(u64, u64)>,
}

impl Run {
    /// Follows stretches of closed intervals in which no sent request got a response (a
    /// target that hangs); a paused interval neither extends nor ends one.
    fn note_quiet(&mut self, interval: &Snapshot, span: (u64, u64)) {
        if self.paused_within(span.0, span.1) >= span.1.saturating_sub(span.0) {
            return;
        }
        let responses: u64 = interval
            .endpoints
            .values()
            .flat_map(|e| e.status_codes.iter().map(|&(_, n)| n))
            .sum();
        if responses > 0 {
            self.quiet_since = None;
            return;
        }
        let since = *self.quiet_since.get_or_insert(span.0);
        let longest = self.longest_quiet.map_or(0, |(a, b)| b - a);
        if span.1.saturating_sub(since) > longest {
            self.longest_quiet = Some((since, span.1));
        }
    }

    /// How long the run was paused within `[from, to)` (wall-clock µs).
    fn paused_within(&self, from: u64, to: u64) -> u64 {
        self.pauses
            .iter()
            .map(|&(a, b)| {
                let b = b.unwrap_or(u64::MAX).min(to);
                b.saturating_sub(a.max(from))
            })
            .sum()
    }
}

/// What the local runner and the master hold alike: the runner's core, the test, and the
/// outputs; they differ only in the placement they run it with.
pub(crate) struct Runner {
    pub(crate) core: RunnerCore,
    pub(crate) scenarios: Vec<Scenario>,
    hooks: Hooks,
    pub(crate) config: RunConfig,
    outputs: Vec<Box<dyn Output>>,
}

impl Runner {
    /// Checks the test and settings; with an exporter, its output is the first.
    pub(crate) fn new(
        role: Role,
        scenarios: Vec<Scenario>,
        hooks: Hooks,
        config: RunConfig,
        exporter: Option<Arc<PrometheusExporter>>,
    ) -> Result<Self, RunError> {
        if scenarios.is_empty() {
            return Err(RunError::NoUserTypes);
        }
        validate_scenarios(&scenarios)?;
        config.validate()?;
        for sc in &scenarios {
            let weights: Vec<u32> = sc.user_types().iter().map(UserType::weight).collect();
            aiotest_core::weights::split_by_weight(0, &weights)?;
        }
        let mut outputs: Vec<Box<dyn Output>> = Vec::new();
        if let Some(e) = &exporter {
            outputs.push(Box::new(PrometheusOutput::new(Arc::clone(e))));
        }
        Ok(Runner {
            core: RunnerCore::new(role, exporter),
            scenarios,
            hooks,
            config,
            outputs,
        })
    }

    pub(crate) fn add_output(&mut self, output: Box<dyn Output>) {
        self.outputs.push(output);
    }

    /// Runs the test once, with users where `placement` puts them.
    pub(crate) async fn run<P: Placement>(&mut self, placement: P) -> Result<RunReport, RunError> {
        Engine {
            core: &mut self.core,
            placement,
            scenarios: &self.scenarios,
            driven: false,
            hooks: &self.hooks,
            config: &self.config,
            setup_given: None,
            outputs: &mut self.outputs,
        }
        .run()
        .await
    }
}

/// The one scenario of a test given as user types and a load shape.
pub(crate) fn single_scenario(
    types: Vec<UserType>,
    shape: Box<dyn aiotest_core::shape::LoadUserShape>,
    graceful_stop: Duration,
) -> Result<Vec<Scenario>, RunError> {
    if types.is_empty() {
        return Err(RunError::NoUserTypes);
    }
    let executor =
        aiotest_core::scenario::Executor::Shape(aiotest_core::scenario::SharedShape::new(shape));
    Ok(vec![
        Scenario::new(aiotest_core::scenario::DEFAULT_SCENARIO, types, executor)?
            .graceful_stop(graceful_stop),
    ])
}

/// One run of a runner; see the [module docs](self).
pub(crate) struct Engine<'r, P: Placement> {
    pub(crate) core: &'r mut RunnerCore,
    pub(crate) placement: P,
    pub(crate) scenarios: &'r [Scenario],
    /// A worker: its master starts, drives and ends the scenarios.
    pub(crate) driven: bool,
    pub(crate) hooks: &'r Hooks,
    pub(crate) config: &'r RunConfig,
    /// A worker's setup data, from its master: setup does not run here.
    pub(crate) setup_given: Option<Option<SetupData>>,
    pub(crate) outputs: &'r mut [Box<dyn Output>],
}

impl<P: Placement> Engine<'_, P> {
    /// Runs the whole lifecycle; see the [module docs](self).
    pub(crate) async fn run(mut self) -> Result<RunReport, RunError> {
        let event = RequestMetricsEvent::new();
        // The run's length, when every scenario's is known (not with iteration counts,
        // whose max_duration is only a bound).
        let planned = if self.driven {
            None
        } else {
            self.scenarios
                .iter()
                .map(Scenario::planned_end)
                .collect::<Option<Vec<_>>>()
                .and_then(|ends| ends.into_iter().max())
        };
        let mut user_types: Vec<String> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for sc in self.scenarios {
            for t in sc.user_types() {
                if seen.insert(t.name()) {
                    user_types.push(t.name().to_owned());
                }
            }
        }
        let meta = RunMeta::new(
            self.config.command.clone(),
            &self.core.role.to_string(),
            self.scenarios,
            now_us(),
        );
        *lock(&self.core.shared.meta) = Some(meta.clone());
        // A new run: not done until its summary is made.
        *lock(&self.core.shared.summary) = None;
        for o in self.outputs.iter_mut() {
            let info = RunInfo {
                role: self.core.role,
                user_types: &user_types,
                scenarios: self.scenarios,
                planned,
                request_metrics: &event,
                meta: &meta,
                handle: &self.core.handle,
                tags: &self.config.tags,
            };
            o.start(&info).map_err(|e| RunError::Output {
                name: o.name().to_owned(),
                reason: e.to_string(),
            })?;
        }
        // Created before setup, so setup's own requests are counted like any other.
        let collector = MetricsCollector::new(self.config.metrics.clone(), event)?;
        let mut ended = match self.placement.prepare(&mut self.core.commands).await {
            Ok(e) => e,
            Err(e) => {
                self.placement.finish().await;
                return Err(e);
            }
        };
        if self.core.states.state() == RunnerState::Missing {
            self.core.states.enter(RunnerState::Ready);
        }
        self.core.states.enter(RunnerState::Starting);
        // Setup obeys the commands every phase does: a stop, quit or abort ends it at
        // once (its request in flight is recorded as interrupted), and a pause asked
        // meanwhile holds the users from their start.
        let mut paused_at_start = false;
        let (setup, setup_error) = match self.setup_given.take() {
            Some(data) => (data.map_or(SetupOutcome::Skipped, SetupOutcome::Done), None),
            None if ended.is_none() => {
                let mut setup_fut = std::pin::pin!(run_setup(self.hooks, self.config, &collector));
                loop {
                    tokio::select! {
                        r = &mut setup_fut => break r,
                        c = self.core.commands.recv() => {
                            if let Some(reason) = Command::ending(c.as_ref()) {
                                ended = Some(reason);
                                break (SetupOutcome::Failed, None);
                            }
                            match c {
                                Some(Command::Pause) => paused_at_start = true,
                                Some(Command::Resume) => paused_at_start = false,
                                other => tracing::debug!(?other, "command ignored during setup"),
                            }
                        }
                    }
                }
            }
            None => (SetupOutcome::Skipped, None),
        };
        if ended.is_some() && matches!(setup, SetupOutcome::Failed) {
            // Cut short, not failed: the run ends as asked, with a summary of what setup
            // sent, and no teardown (setup did not complete).
            self.core.states.enter(RunnerState::Stopping);
            return self
                .end_before_users(collector, ended.unwrap_or(StopReason::Stopped))
                .await;
        }
        if let SetupOutcome::Failed = setup {
            self.core.states.enter(RunnerState::Stopping);
            self.core.states.enter(RunnerState::Ready);
            self.placement.finish().await;
            return Err(RunError::Setup(setup_error.unwrap_or(
                LifecycleError::Timeout {
                    phase: Phase::Setup,
                    after: self.hooks.setup_timeout(),
                },
            )));
        }
        if let Err(e) = self.placement.begin(Begin {
            collector: &collector,
            setup: setup.data().cloned(),
        }) {
            self.placement.finish().await;
            return Err(e);
        }
        let base = TimeBase::now();
        let mut clock = RunClock::new();
        clock.start(base.at.into_std());
        let flush_every = self.config.metrics.flush_interval;
        let mut run = Run {
            collector,
            clock,
            agg: Aggregator::new(base.wall_us, flush_every),
            next_flush: base.at + flush_every,
            base,
            planned,
            pauses: Vec::new(),
            quiet_since: None,
            longest_quiet: None,
        };
        // The generator's own health, where users run (a master's are its workers').
        let probe = (self.core.role != Role::Master).then(|| {
            let tags = if self.core.role == Role::Worker {
                aiotest_metrics::Tags::from_pairs([("worker_pid", std::process::id().to_string())])
                    .unwrap_or_default()
            } else {
                aiotest_metrics::Tags::new()
            };
            tokio::spawn(crate::health::probe(run.collector.clone(), tags)).abort_handle()
        });
        let ending = match ended {
            None => {
                if paused_at_start {
                    let now = Instant::now();
                    self.placement.pause(now);
                    run.clock.pause(now.into_std());
                    run.pauses.push((run.base.wall_us(now), None));
                    self.core.states.enter(RunnerState::Running);
                    self.core.states.enter(RunnerState::Paused);
                }
                self.control_loop(&mut run).await
            }
            Some(reason) => Ending::because(reason),
        };
        let run_time = ending
            .run_time
            .unwrap_or_else(|| run.clock.run_time(Instant::now().into_std()));
        self.core.states.enter(RunnerState::Stopping);
        self.stop_users(&ending).await;
        if let Some(p) = probe {
            p.abort();
        }
        let teardown = if teardown_runs(self.hooks, &setup, self.config.no_teardown) {
            let ctx = SetupContext::new(self.config.host.as_deref().map(Arc::from))
                .with(run.collector.recorder())
                .with(run.collector.clone());
            Some(run_teardown(self.hooks, ctx, setup.data().cloned()).await)
        } else {
            None
        };
        let finish = self.placement.finish().await;
        // The run time is the time load was sent: workers that went on sending after the
        // master's end (their stop held up by Redis) stretch it to their last request.
        self.flush(&mut run, Instant::now(), false);
        let last_sent = run
            .agg
            .total
            .endpoints
            .values()
            .filter_map(|e| e.last_time_us)
            .max();
        let run_time = match last_sent {
            Some(t) => {
                let paused = run.clock.paused_time(Instant::now().into_std());
                let ran = Duration::from_micros(t.saturating_sub(run.base.wall_us));
                run_time.max(ran.saturating_sub(paused))
            }
            None => run_time,
        };
        let (summary, output_errors) = self.finish_metrics(&mut run, run_time, &ending, &finish);
        let counts = self.placement.counts();
        let snapshot = run.agg.total;
        self.core
            .states
            .enter(if ending.reason == StopReason::Quit {
                RunnerState::Quitting
            } else {
                RunnerState::Ready
            });
        Ok(RunReport {
            summary,
            snapshot,
            run_time,
            reason: ending.reason,
            fault: ending.fault,
            stopped_by: ending.stopped_by,
            setup,
            teardown,
            task_errors: counts.task_errors,
            panics: counts.panics,
            tasks: counts.tasks,
            cancelled_users: usize::try_from(counts.cancelled_users).unwrap_or(usize::MAX),
            missing_workers: finish.missing_workers,
            missing_flushes: finish.missing_flushes,
            output_errors,
        })
    }

    /// Ends a run that a command stopped before any user started (while setup ran): the
    /// summary of what setup sent, the outputs' last word, no teardown.
    async fn end_before_users(
        &mut self,
        collector: MetricsCollector,
        reason: StopReason,
    ) -> Result<RunReport, RunError> {
        let base = TimeBase::now();
        let flush_every = self.config.metrics.flush_interval;
        let mut run = Run {
            collector,
            clock: RunClock::new(),
            agg: Aggregator::new(base.wall_us, flush_every),
            next_flush: base.at,
            base,
            planned: None,
            pauses: Vec::new(),
            quiet_since: None,
            longest_quiet: None,
        };
        let ending = Ending {
            stopped_by: Some("a command while setup ran: no user started".into()),
            run_time: Some(Duration::ZERO),
            ..Ending::because(reason)
        };
        let finish = self.placement.finish().await;
        let (summary, output_errors) =
            self.finish_metrics(&mut run, Duration::ZERO, &ending, &finish);
        let counts = self.placement.counts();
        self.core.states.enter(if reason == StopReason::Quit {
            RunnerState::Quitting
        } else {
            RunnerState::Ready
        });
        Ok(RunReport {
            summary,
            snapshot: run.agg.total,
            run_time: Duration::ZERO,
            reason,
            fault: None,
            stopped_by: ending.stopped_by,
            setup: SetupOutcome::Failed,
            teardown: None,
            task_errors: counts.task_errors,
            panics: counts.panics,
            tasks: counts.tasks,
            cancelled_users: 0,
            missing_workers: finish.missing_workers,
            missing_flushes: finish.missing_flushes,
            output_errors,
        })
    }

    /// Stops every user; a second abort-type command cuts the graceful period short.
    async fn stop_users(&mut self, ending: &Ending) {
        let grace = if ending.reason == StopReason::Aborted {
            Duration::ZERO
        } else {
            self.config.stop_timeout
        };
        let commands = &mut self.core.commands;
        let mut abort = std::pin::pin!(async move {
            while let Some(c) = commands.recv().await {
                if c == Command::Abort {
                    return;
                }
            }
            std::future::pending::<()>().await;
        });
        let quit = ending.reason == StopReason::Quit;
        self.placement.stop(quit, grace, abort.as_mut()).await;
    }

    /// Drives the scenarios, serves commands, steps the placement and closes intervals
    /// until the run ends. Never blocks on any one of them.
    async fn control_loop(&mut self, run: &mut Run) -> Ending {
        let mut scenarios =
            Scenarios::new(self.scenarios.len(), self.config.shape_poll, Instant::now());
        let mut due: Option<Instant> = None;
        let mut running = false;
        loop {
            let paused = self.core.states.state() == RunnerState::Paused;
            let mut wake = run.next_flush;
            if !paused
                && !self.driven
                && let Some(p) = scenarios.next_poll(self.scenarios)
            {
                wake = wake.min(p);
            }
            if let Some(d) = due {
                wake = wake.min(d);
            }
            let cmd = tokio::select! {
                biased;
                // The core keeps a handle, so the queue never closes under the loop.
                c = self.core.commands.recv() => Some(c.unwrap_or(Command::Quit)),
                () = tokio::time::sleep_until(wake) => None,
            };
            let now = Instant::now();
            if let Some(c) = cmd
                && let Some(ending) = self.command(c, now, run, &scenarios)
            {
                return ending;
            }
            if self.core.states.state() != RunnerState::Paused && !self.driven {
                let run_time = run.clock.run_time(now.into_std());
                match scenarios.advance(self.scenarios, &mut self.placement, run_time, now) {
                    Ok(true) => {
                        return Ending {
                            run_time: Some(scenarios.ended_at()),
                            ..Ending::because(StopReason::ShapeEnded)
                        };
                    }
                    Ok(false) => {}
                    Err(e) => return Ending::fault(e),
                }
            }
            due = match self.placement.step(now) {
                Ok(d) => d,
                Err(e) => return Ending::fault(e),
            };
            self.publish_users(&scenarios);
            if self.core.role != Role::Worker {
                // k6's `vus`, as the loop leaves the users (a worker's master counts its
                // users): a sample whenever they may have changed, in the interval of
                // its time like any.
                let users: u64 = lock(&self.core.shared.users).iter().map(|(_, n)| n).sum();
                let none = aiotest_metrics::Tags::new();
                let at = run.base.wall_us(now);
                // A count of users is always a value a gauge holds.
                let _ = run.collector.add_at(vus_metric(), users as f64, &none, at);
            }
            if now >= run.next_flush {
                while run.next_flush <= now {
                    run.next_flush += self.config.metrics.flush_interval;
                }
                if let Some(why) = self.flush(run, now, false) {
                    tracing::warn!("stopping: {why}");
                    return Ending {
                        reason: StopReason::OutputStopped,
                        fault: None,
                        stopped_by: Some(why),
                        run_time: None,
                    };
                }
            }
            if !running {
                running = true;
                if self.core.states.state() == RunnerState::Starting {
                    self.core.states.enter(RunnerState::Running);
                }
            }
        }
    }

    /// Serves one command; `Some` when it ends the run.
    fn command(
        &mut self,
        c: Command,
        now: Instant,
        run: &mut Run,
        scenarios: &Scenarios,
    ) -> Option<Ending> {
        let states = &mut self.core.states;
        match c {
            Command::Pause if states.can_pause() => {
                self.placement.pause(now);
                run.clock.pause(now.into_std());
                run.pauses.push((run.base.wall_us(now), None));
                states.enter(RunnerState::Paused);
            }
            Command::Resume if states.can_resume() => {
                self.placement.resume(now);
                run.clock.resume(now.into_std());
                if let Some((_, end)) = run.pauses.last_mut() {
                    end.get_or_insert(run.base.wall_us(now));
                }
                states.enter(RunnerState::Running);
            }
            Command::Stop | Command::Quit | Command::Abort | Command::End(_) => {
                return Command::ending(Some(&c)).map(Ending::because);
            }
            Command::SetUsers(n) => {
                match (validate_users(n.into()), scenarios.manual(self.scenarios)) {
                    (Ok(n), Some(i)) => {
                        let rate = self.placement.target(i).map_or(IMMEDIATE, |(_, r)| r);
                        self.placement.set_target(i, n, rate, now);
                    }
                    (Ok(_), None) => tracing::warn!(
                        "set users: no running scenario takes a number of users (its executor decides)"
                    ),
                    (Err(e), _) => tracing::warn!("set users: {e}"),
                }
            }
            Command::Scenario(i, sc) if i < self.scenarios.len() => match sc {
                ScenarioCommand::TypeTargets { targets, rate } => {
                    if validate_spawn_rate(rate).is_ok() {
                        self.placement.set_type_targets(i, &targets, rate, now);
                    }
                }
                ScenarioCommand::Start(part) => self.placement.start_scenario(i, part, now),
                ScenarioCommand::End(grace) => self.placement.end_scenario(i, grace, now),
            },
            other => {
                tracing::debug!(?other, state = %states.state(), "command ignored in this state");
            }
        }
        None
    }

    /// Users, workers and finished scenarios, for handles and the control API: at
    /// once, not per interval.
    fn publish_users(&mut self, scenarios: &Scenarios) {
        *lock(&self.core.shared.users) = self.placement.users();
        let workers = self.placement.workers();
        if !workers.is_empty() {
            *lock(&self.core.shared.workers) = workers;
        }
        let done: Vec<String> = if self.driven {
            let mut names = Vec::new();
            for (i, sc) in self.scenarios.iter().enumerate() {
                if self.placement.scenario_done(i) {
                    names.push(sc.name().to_owned());
                }
            }
            names
        } else {
            scenarios.done_names(self.scenarios)
        };
        *lock(&self.core.shared.scenarios_done) = done;
    }

    /// Closes what can close at `now` (everything when `last`), feeding the live view, the
    /// series and the outputs. Returns an output's reason to stop, if one asked.
    fn flush(&mut self, run: &mut Run, now: Instant, last: bool) -> Option<String> {
        let now_us = run.base.wall_us(now);
        run.collector.close_interval(now_us);
        let mut arrived = run.collector.take_pending();
        self.placement.take_intervals(&mut arrived);
        for s in arrived {
            run.agg.add(s);
        }
        let mut closed = Vec::new();
        if last {
            run.agg.close_all(now_us, &mut closed);
        } else {
            // Users flush a batch once its oldest record is a flush interval old: an
            // interval is complete here a flush interval (and a margin) after its end.
            let lag = run.agg.step_us + run.agg.step_us / 4;
            let watermark = self
                .placement
                .watermark(now_us.saturating_sub(lag), run.agg.step_us)
                .min(now_us.saturating_sub(lag));
            run.agg.close_until(watermark, &mut closed);
        }
        if closed.is_empty() {
            return None;
        }
        let users = self.placement.users();
        let workers = self.placement.workers();
        let counts = self.placement.counts();
        let run_time = run.clock.run_time(now.into_std());
        let state = self.core.states.state();
        let mut stop = None;
        for interval in closed {
            let span = (
                interval.start_us.unwrap_or(now_us),
                interval.end_us.unwrap_or(now_us),
            );
            run.note_quiet(&interval, span);
            let total_users = users.iter().map(|(_, n)| n).sum();
            let live = {
                let paused = run.paused_within(span.0, span.1);
                let mut view = lock(&self.core.shared.live);
                view.push_active(interval.clone(), paused);
                view.current()
            };
            let point = SeriesPoint::new(&interval, span, run_time.as_secs_f64(), total_users);
            lock(&self.core.shared.series).push(point.clone());
            let view = IntervalView {
                start_us: span.0,
                end_us: span.1,
                interval: &interval,
                point: &point,
                total: &run.agg.total,
                live: &live,
                run_time,
                planned: run.planned,
                users: &users,
                state,
                counts: &counts,
                workers: &workers,
            };
            for o in self.outputs.iter_mut() {
                if let Verdict::Stop(why) = o.interval(&view)
                    && stop.is_none()
                    && !last
                {
                    stop = Some(format!("{}: {why}", o.name()));
                }
            }
        }
        stop
    }

    /// The last intervals, the summary and the outputs' last word.
    fn finish_metrics(
        &mut self,
        run: &mut Run,
        run_time: Duration,
        ending: &Ending,
        finish: &Finish,
    ) -> (Summary, Vec<String>) {
        self.flush(run, Instant::now(), true);
        let total = &run.agg.total;
        let infos = lock(&self.core.shared.meta)
            .as_ref()
            .map(|m| m.scenarios.clone())
            .unwrap_or_default();
        let mut summary = Summary::new(total, run_time).with_scenarios(&infos);
        summary.notes = notes(
            total,
            &self.placement.counts(),
            ending,
            finish,
            run.base.wall_us,
        );
        if let Some((from, to)) = run.longest_quiet
            && to - from >= 2_000_000
            && total.total().requests > 0
        {
            let at = |t: u64| t.saturating_sub(run.base.wall_us) as f64 / 1e6;
            summary.notes.push(format!(
                "No request sent from {:.1} s to {:.1} s of the run got a response: {:.1} s \
                 without one, the longest such stretch.",
                at(from),
                at(to),
                (to - from) as f64 / 1e6
            ));
        }
        if run.agg.late_requests > 0 {
            summary.notes.push(format!(
                "{} requests reached the figures after their second of the series had \
                 closed (held behind a request longer than a second, or in a delayed batch \
                 of a worker): they are in every total, and in the series in a later second, \
                 marked late.",
                run.agg.late_requests
            ));
        }
        for o in self.outputs.iter_mut() {
            o.summary(&mut summary, total);
        }
        let mut errors = Vec::new();
        for o in self.outputs.iter_mut() {
            if let Err(e) = o.end(&summary) {
                // In the report (`output_errors`): the caller says it once.
                tracing::debug!("{}: {e}", o.name());
                errors.push(format!("{}: {e}", o.name()));
            }
        }
        *lock(&self.core.shared.summary) = Some(summary.clone());
        // The run is over: nobody runs any more, whatever the last interval showed.
        for (_, n) in lock(&self.core.shared.users).iter_mut() {
            *n = 0;
        }
        if let Some(meta) = lock(&self.core.shared.meta).as_mut() {
            meta.ended_us = Some(now_us());
        }
        (summary, errors)
    }
}

/// `n` with the words for one or many: `1 request was`, `3 requests were`.
fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// What the figures leave out, and why.
fn notes(
    total: &Snapshot,
    counts: &TaskCounts,
    ending: &Ending,
    finish: &Finish,
    start_us: u64,
) -> Vec<String> {
    let mut notes = Vec::new();
    if let Some(fault) = &ending.fault {
        notes.push(format!("The run ended early: {fault}."));
    }
    if let Some(why) = &ending.stopped_by {
        notes.push(format!("Stopped by {why}."));
    }
    let all = total.total();
    let untimed: Vec<String> = ErrorCategory::ALL
        .iter()
        .filter(|c| !c.has_latency() && **c != ErrorCategory::Interrupted)
        .filter(|c| all.failures_by_category[c.index()] > 0)
        .map(|c| format!("{} {c}", all.failures_by_category[c.index()]))
        .collect();
    if !untimed.is_empty() {
        notes.push(format!(
            "Requests that failed before any exchange ({}) are counted as requests and \
             failures, outside the latency figures.",
            untimed.join(", ")
        ));
    }
    if total
        .endpoints
        .keys()
        .any(|k| k.name == aiotest_metrics::OTHER_ENDPOINT)
    {
        notes.push(format!(
            "More request names than the run keeps apart: later ones are counted under \
             `{}`. Name requests that carry ids explicitly, or raise --max-endpoints.",
            aiotest_metrics::OTHER_ENDPOINT
        ));
    }
    let interrupted = all.interrupted();
    if interrupted > 0 {
        notes.push(format!(
            "{} still in flight when the graceful stop period ended: counted as failed \
             (interrupted), with the time waited as the duration (a lower bound).",
            count(interrupted, "request was", "requests were")
        ));
    }
    let estimated: u64 = total.endpoints.values().map(|e| e.estimated).sum();
    if estimated > 0 {
        notes.push(format!(
            "The percentiles include {estimated} samples estimated for the requests users \
             would have sent while they waited on ones that never completed (timed out or \
             interrupted), one per user's usual interval (coordinated-omission correction); \
             counts, min, max and mean are the measured requests'."
        ));
    }
    if counts.cancelled_users > 0 {
        notes.push(format!(
            "{} still busy after the graceful stop period and cancelled.",
            count(counts.cancelled_users, "user was", "users were")
        ));
    }
    if !finish.missing_workers.is_empty() {
        notes.push(format!(
            "Workers went MISSING during the run (their users moved to the others): {}.",
            finish.missing_workers.join(", ")
        ));
    }
    notes.extend(finish.notes.iter().cloned());
    for (worker, since) in &finish.missing_since_us {
        notes.push(match since {
            Some(t) => format!(
                "Metrics of worker {worker} are missing from {:.1} s into the run on (the end \
                 of the last interval it reported): it sent no final flush, so what its users \
                 did after that is not in these figures.",
                t.saturating_sub(start_us) as f64 / 1e6
            ),
            None => format!(
                "Metrics of worker {worker} are missing: it reported nothing, so what its users \
                 did is not in these figures."
            ),
        });
    }
    notes
}

/// Runs setup under its timeout, if there is one and it is not skipped. Setup gets the
/// run's recorder (and collector) in its context, so its own requests are counted.
async fn run_setup(
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
    // Returned to the caller (the run's error), who says it once.
    tracing::debug!("{error}");
    (SetupOutcome::Failed, Some(error))
}

/// Runs teardown under its timeout, if there is one.
async fn run_teardown(
    hooks: &Hooks,
    ctx: SetupContext,
    data: Option<SetupData>,
) -> Result<(), LifecycleError> {
    let Some(fut) = hooks.run_teardown(ctx, data) else {
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
        // In the report (`teardown`): the caller says it once.
        tracing::debug!("{e}");
    }
    result
}

/// k6's `vus` gauge.
fn vus_metric() -> &'static aiotest_metrics::Metric {
    static VUS: std::sync::OnceLock<aiotest_metrics::Metric> = std::sync::OnceLock::new();
    VUS.get_or_init(|| {
        aiotest_metrics::Metric::gauge(aiotest_metrics::VUS).expect("a valid metric name")
    })
}
