//! Users in this process: the placement of a local run and of every worker, and
//! [`LocalRunner`], the engine with it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aiotest_coordinator::wire::TaskCounts;
use aiotest_core::lifecycle::Hooks;
use aiotest_core::scenario::{Executor, Scenario};
use aiotest_core::shape::LoadUserShape;
use aiotest_core::state::Role;
use aiotest_core::user::UserType;
use aiotest_metrics::{PrometheusExporter, Snapshot};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::arrival::ArrivalRun;
use crate::engine::{Abort, Begin, Finish, Placement, RunConfig, Runner, single_scenario};
use crate::handle::{Command, RunnerHandle, WorkerView};
use crate::manager::UserManager;
use crate::output::Output;
use crate::report::{RunError, RunReport, StopReason};
use crate::scenarios::Part;
use crate::user_loop::{UserEnv, UserStats, Work};

/// One scenario's users here.
enum Run {
    Waiting,
    /// Closed model: users follow targets.
    Targets(UserManager),
    /// A fixed number of users with an iteration budget: shared by them
    /// (shared-iterations) or each one's (per-vu-iterations), as last given.
    Iterations(UserManager, Option<Arc<AtomicU64>>, Part),
    /// Open model: a schedule and its pool.
    Arrivals(ArrivalRun),
}

impl Run {
    fn users(&self) -> Option<&UserManager> {
        match self {
            Run::Waiting => None,
            Run::Targets(m) | Run::Iterations(m, ..) => Some(m),
            Run::Arrivals(a) => Some(a.users()),
        }
    }

    fn users_mut(&mut self) -> Option<&mut UserManager> {
        match self {
            Run::Waiting => None,
            Run::Targets(m) | Run::Iterations(m, ..) => Some(m),
            Run::Arrivals(a) => Some(a.users_mut()),
        }
    }
}

/// A running iteration scenario's new part: more iterations for its shared budget, or
/// more users (a lost worker's share moved here).
fn reshare_iterations(
    m: &mut UserManager,
    budget: Option<&Arc<AtomicU64>>,
    old: &mut Part,
    new: Part,
) {
    if *old == new || m.ended() {
        return;
    }
    if let Some(b) = budget {
        if new.budget > old.budget {
            b.fetch_add(new.budget - old.budget, Ordering::AcqRel);
        } else {
            let less = old.budget - new.budget;
            let _ = b.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(n.saturating_sub(less))
            });
        }
    }
    if new.vus.0 > old.vus.0 {
        let more = new.vus.0 - old.vus.0;
        match budget {
            Some(b) => m.start_with(more, || Work::Shared(Arc::clone(b))),
            None => m.start_with(more, || Work::PerUser(new.budget)),
        }
    }
    *old = new;
}

/// Users run by this process: one [`UserManager`] per scenario.
pub(crate) struct LocalPlacement {
    scenarios: Vec<Scenario>,
    runs: Vec<Run>,
    host: Option<Arc<str>>,
    stats: Arc<UserStats>,
    env: Option<Arc<UserEnv>>,
    paused_at: Option<Instant>,
    /// The number of the first user started here.
    first_user_id: u64,
    /// The test's tags.
    tags: Vec<(String, String)>,
}

impl LocalPlacement {
    pub(crate) fn new(scenarios: Vec<Scenario>, config: &RunConfig) -> Self {
        LocalPlacement {
            runs: scenarios.iter().map(|_| Run::Waiting).collect(),
            scenarios,
            host: config.host.as_deref().map(Arc::from),
            stats: Arc::default(),
            env: None,
            paused_at: None,
            first_user_id: 0,
            tags: config.tags.clone(),
        }
    }

    /// Users numbered from `id` (a worker's block, so numbers are unique in the test).
    pub(crate) fn first_user_id(mut self, id: u64) -> Self {
        self.first_user_id = id;
        self
    }

    fn manager(&self, i: usize) -> Option<UserManager> {
        let sc = self.scenarios.get(i)?;
        let env = Arc::clone(self.env.as_ref()?);
        UserManager::new(
            sc.user_types().to_vec(),
            sc.name_arc(),
            env,
            scenario_tags(&self.tags, sc),
        )
        .ok()
    }

    fn each_manager(&mut self, mut f: impl FnMut(&mut UserManager)) {
        for run in &mut self.runs {
            if let Some(m) = run.users_mut() {
                f(m);
            }
        }
    }
}

/// The tags of every named-metric sample of `sc`'s users: the test's, the scenario's own
/// over them, and, as k6 has it, `scenario`.
pub(crate) fn scenario_tags(test: &[(String, String)], sc: &Scenario) -> aiotest_metrics::Tags {
    let mut tags = aiotest_metrics::Tags::new();
    for (k, v) in test.iter().chain(sc.tags()) {
        // Checked with the scenarios and the config: cannot fail here.
        let _ = tags.insert(k, v);
    }
    let _ = tags.insert("scenario", sc.name());
    tags
}

impl Placement for LocalPlacement {
    async fn prepare(
        &mut self,
        _: &mut mpsc::Receiver<Command>,
    ) -> Result<Option<StopReason>, RunError> {
        Ok(None)
    }

    fn begin(&mut self, begin: Begin<'_>) -> Result<(), RunError> {
        self.env = Some(Arc::new(UserEnv {
            collector: begin.collector.clone(),
            host: self.host.clone(),
            setup: begin.setup,
            stats: Arc::clone(&self.stats),
            next_id: std::sync::atomic::AtomicU64::new(self.first_user_id),
        }));
        Ok(())
    }

    fn start_scenario(&mut self, i: usize, part: Part, now: Instant) {
        // A scenario already running gets its new part (a worker's master re-shares it
        // when the workers change); a repeated start changes nothing.
        match self.runs.get_mut(i) {
            None => return,
            Some(Run::Waiting) => {}
            Some(Run::Arrivals(a)) => {
                a.reshare(part.share, part.vus.1, (part.elapsed, part.lag), now);
                return;
            }
            Some(Run::Iterations(m, budget, old)) => {
                reshare_iterations(m, budget.as_ref(), old, part);
                return;
            }
            Some(Run::Targets(_)) => return,
        }
        let (Some(sc), Some(mut users)) = (self.scenarios.get(i), self.manager(i)) else {
            return;
        };
        let run = match sc.executor() {
            Executor::SharedIterations { .. } => {
                let budget = Arc::new(AtomicU64::new(part.budget));
                users.start_with(part.vus.0, || Work::Shared(Arc::clone(&budget)));
                Run::Iterations(users, Some(budget), part)
            }
            Executor::PerVuIterations { .. } => {
                users.start_with(part.vus.0, || Work::PerUser(part.budget));
                Run::Iterations(users, None, part)
            }
            e => match (e.arrivals(), self.env.as_ref()) {
                (Some(schedule), Some(env)) => Run::Arrivals(ArrivalRun::start(
                    schedule,
                    part.share,
                    part.vus,
                    e.max_delay(),
                    users,
                    env.collector.clone(),
                    (part.elapsed, part.lag),
                    now,
                )),
                _ => Run::Targets(users),
            },
        };
        self.runs[i] = run;
        if let (Some(at), Some(m)) = (self.paused_at, self.runs[i].users_mut()) {
            m.pause_all_users(at);
        }
    }

    fn set_target(&mut self, i: usize, users: u32, rate: f64, now: Instant) {
        if let Some(Run::Targets(m)) = self.runs.get_mut(i) {
            m.manage_users(users, rate, now);
        }
    }

    fn set_type_targets(&mut self, i: usize, targets: &[u32], rate: f64, now: Instant) {
        if matches!(self.runs.get(i), Some(Run::Waiting)) {
            // A worker's closed-model scenario starts with its first targets.
            self.start_scenario(i, Part::whole(self.scenarios[i].executor()), now);
        }
        if let Some(Run::Targets(m)) = self.runs.get_mut(i) {
            m.manage_users_by_type(targets, rate, now);
        }
    }

    fn target(&self, i: usize) -> Option<(u32, f64)> {
        match self.runs.get(i)? {
            Run::Targets(m) => m.target(),
            _ => None,
        }
    }

    fn end_scenario(&mut self, i: usize, grace: Duration, now: Instant) {
        match self.runs.get_mut(i) {
            Some(Run::Targets(m) | Run::Iterations(m, ..)) => m.end(now + grace),
            Some(Run::Arrivals(a)) => a.end(now, now + grace),
            _ => {}
        }
    }

    fn scenario_done(&mut self, i: usize) -> bool {
        if let Some(m) = self.runs.get_mut(i).and_then(Run::users_mut) {
            m.cleanup_inactive_users();
        }
        match self.runs.get(i) {
            Some(Run::Targets(m)) => m.ended() && m.live_user_count() == 0,
            Some(Run::Iterations(m, ..)) => m.live_user_count() == 0,
            Some(Run::Arrivals(a)) => a.users().ended() && a.users().live_user_count() == 0,
            _ => false,
        }
    }

    fn pause(&mut self, now: Instant) {
        self.paused_at = Some(now);
        for run in &mut self.runs {
            match run {
                Run::Arrivals(a) => a.pause(now),
                other => {
                    if let Some(m) = other.users_mut() {
                        m.pause_all_users(now);
                    }
                }
            }
        }
    }

    fn resume(&mut self, now: Instant) {
        self.paused_at = None;
        for run in &mut self.runs {
            match run {
                Run::Arrivals(a) => a.resume(now),
                other => {
                    if let Some(m) = other.users_mut() {
                        m.resume_all_users(now);
                    }
                }
            }
        }
    }

    fn step(&mut self, now: Instant) -> Result<Option<Instant>, RunError> {
        let mut due: Option<Instant> = None;
        for run in &mut self.runs {
            let d = match run {
                Run::Waiting => None,
                Run::Targets(m) | Run::Iterations(m, ..) => {
                    let d = m.step(now);
                    m.cleanup_inactive_users();
                    d
                }
                Run::Arrivals(a) => a.step(now),
            };
            due = match (due, d) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        Ok(due)
    }

    fn take_intervals(&mut self, _: &mut Vec<Snapshot>) {}

    fn watermark(&self, now_us: u64, _: u64) -> u64 {
        now_us
    }

    fn users(&self) -> Vec<(String, u64)> {
        // Per user type, over all scenarios, in the order the types first appear.
        // Looked up by name: a test may have many thousands of types, and this runs at
        // every interval.
        let mut out: Vec<(String, u64)> = Vec::new();
        let mut at: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for (sc, run) in self.scenarios.iter().zip(&self.runs) {
            let counts = run.users().map(UserManager::counts_by_type);
            for (k, t) in sc.user_types().iter().enumerate() {
                let n = counts
                    .as_ref()
                    .and_then(|c| c.get(k))
                    .map_or(0, |(_, n)| *n);
                match at.get(t.name()) {
                    Some(&i) => out[i].1 += n,
                    None => {
                        at.insert(t.name(), out.len());
                        out.push((t.name().to_owned(), n));
                    }
                }
            }
        }
        out
    }

    fn workers(&self) -> Vec<WorkerView> {
        Vec::new()
    }

    fn counts(&self) -> TaskCounts {
        TaskCounts {
            tasks: self.stats.tasks.load(Ordering::Relaxed),
            task_errors: self.stats.task_errors.load(Ordering::Relaxed),
            panics: self.stats.panics.load(Ordering::Relaxed),
            cancelled_users: self
                .runs
                .iter()
                .filter_map(Run::users)
                .map(UserManager::cancelled)
                .sum(),
        }
    }

    async fn stop(&mut self, _quit: bool, grace: Duration, mut abort: Abort<'_>) {
        // Every scenario's users are told at once, and share one deadline.
        let deadline = Instant::now() + grace;
        self.each_manager(|m| m.end(deadline));
        for run in &mut self.runs {
            if let Some(m) = run.users_mut() {
                m.finish(abort.as_mut()).await;
            }
        }
    }

    async fn finish(&mut self) -> Finish {
        // Users are gone; their recorders flushed as they ended.
        Finish::default()
    }
}

/// Runs a load test on this machine (AioTest's `LocalRunner(user_types, load_shape,
/// config)`): the engine with users in this process.
pub struct LocalRunner {
    runner: Runner,
}

impl LocalRunner {
    /// A runner for `types` following `shape`, with lifecycle `hooks`: one scenario,
    /// `default`, whose graceful stop period is the config's `stop_timeout`.
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
        let scenarios = single_scenario(types, shape, config.stop_timeout)?;
        Self::scenarios(scenarios, hooks, config, exporter)
    }

    /// A runner for a test of several scenarios (k6's `options.scenarios`).
    pub fn scenarios(
        scenarios: Vec<Scenario>,
        hooks: Hooks,
        config: RunConfig,
        exporter: Option<Arc<PrometheusExporter>>,
    ) -> Result<Self, RunError> {
        Ok(LocalRunner {
            runner: Runner::new(Role::Local, scenarios, hooks, config, exporter)?,
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

    /// Runs the whole test: setup, the scenarios until they are done or a stop or quit
    /// arrives, graceful stop, teardown, final metrics, summary. Every ending that got
    /// past setup is a report.
    pub async fn run(mut self) -> Result<RunReport, RunError> {
        let placement = LocalPlacement::new(self.runner.scenarios.clone(), &self.runner.config);
        self.runner.run(placement).await
    }
}
