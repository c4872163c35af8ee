//! The worker: the engine with users in this process and no shape of its own, driven by
//! the commands its master sends (k6's externally controlled executor).
//!
//! A worker waits for a master to announce an instance of its run id, reads that
//! instance's plan (if its user types come from one), says hello, and runs the engine
//! until the master stops it (then it waits for the next instance), tells it to quit,
//! or falls silent for `master_timeout` (then it stops its users, so no load goes
//! unrecorded, and waits for a master again). Its intervals go to the master on the
//! instance's metrics stream, numbered, the last one marked.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aiotest_coordinator::wire::{ChannelType, Keys, Message, NodeType, TaskCounts};
use aiotest_coordinator::{DistributedCoordinator, Redis};
use aiotest_core::lifecycle::{Hooks, SetupData};
use aiotest_core::scenario::{DEFAULT_GRACEFUL_STOP, Scenario, validate_scenarios};
use aiotest_core::state::{Role, RunnerState};
use aiotest_core::user::UserType;
use aiotest_metrics::Snapshot;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::distributed::DistributedConfig;
use crate::distributed::INSTANCE_KEY_TTL;
use crate::engine::{Engine, RunConfig, single_scenario};
use crate::handle::{Command, RunnerCore, RunnerHandle, ScenarioCommand, lock};
use crate::local::LocalPlacement;
use crate::output::{IntervalView, Output, Verdict};
use crate::report::{RunError, StopReason};
use crate::scenarios::Part;

/// What a worker runs in one instance.
pub struct Planned {
    /// The scenarios, by the names the master's have (their executors run on the
    /// master; here only their user types, graceful stop and kind count).
    pub scenarios: Vec<Scenario>,
    /// Their lifecycle (a worker runs neither setup nor teardown, but decodes setup's
    /// data with it).
    pub hooks: Hooks,
    /// The host users target, if the plan names one (else the worker's `RunConfig`'s).
    pub host: Option<String>,
    /// The test's tags, if the plan gives them (else the worker's `RunConfig`'s).
    pub tags: Option<Vec<(String, String)>>,
    /// Whether responses' timing breakdowns are kept as trends
    /// ([`aiotest_metrics::MetricsConfig::timing_trends`]), if the plan says (else the
    /// worker's `RunConfig`'s).
    pub timing_trends: Option<bool>,
}

impl Planned {
    /// The one scenario (`default`) of a test given as user types: its load shape runs
    /// on the master.
    pub fn from_types(
        types: Vec<UserType>,
        hooks: Hooks,
        host: Option<String>,
    ) -> Result<Self, RunError> {
        let scenarios =
            single_scenario(types, Box::new(|_: Duration| None), DEFAULT_GRACEFUL_STOP)?;
        Ok(Planned {
            scenarios,
            hooks,
            host,
            tags: None,
            timing_trends: None,
        })
    }
}

/// What a worker runs: built from the plan its master ships with the instance (`None`
/// when the master ships none).
pub trait WorkerPlan: Send {
    /// What to run for `plan`; an error skips this instance.
    fn build(&mut self, plan: Option<&[u8]>) -> Result<Planned, String>;
}

/// A worker with its scenarios in code: the plan is not needed.
struct FixedPlan {
    scenarios: Vec<Scenario>,
    hooks: Hooks,
}

impl WorkerPlan for FixedPlan {
    fn build(&mut self, _: Option<&[u8]>) -> Result<Planned, String> {
        Ok(Planned {
            scenarios: self.scenarios.clone(),
            hooks: self.hooks.clone(),
            host: None,
            tags: None,
            timing_trends: None,
        })
    }
}

impl<F> WorkerPlan for F
where
    F: FnMut(Option<&[u8]>) -> Result<Planned, String> + Send,
{
    fn build(&mut self, plan: Option<&[u8]>) -> Result<Planned, String> {
        self(plan)
    }
}

/// What a worker reports when it ends.
#[derive(Debug, Default)]
pub struct WorkerReport {
    /// Metrics batches sent.
    pub batches: u64,
    /// Requests counted in them.
    pub requests: u64,
    /// Users cancelled after the graceful stop period.
    pub cancelled_users: usize,
    /// Times the master was lost.
    pub master_losses: u64,
    /// Runs (instances) this worker took part in.
    pub runs: u64,
}

/// A master's latest announcement.
#[derive(Clone)]
struct Announced {
    instance: String,
    accepting: bool,
    at: Instant,
}

/// How a worker left an instance.
enum Left {
    Stopped,
    Quit,
    MasterLost,
}

/// Intervals waiting to go to the master, oldest first. Bounded: past 16, the two
/// oldest merge, so a slow Redis costs time resolution, never a count.
#[derive(Default)]
struct ShipQueue {
    items: VecDeque<(Snapshot, TaskCounts)>,
    closed: bool,
}

/// Sends a worker's intervals on the instance's metrics stream, on a task of its own.
struct Shipper {
    queue: Arc<Mutex<ShipQueue>>,
    wake: Arc<Notify>,
    task: JoinHandle<()>,
}

impl Shipper {
    fn start(coord: Arc<DistributedCoordinator>, batches: Arc<AtomicU64>) -> Self {
        let queue: Arc<Mutex<ShipQueue>> = Arc::default();
        let wake: Arc<Notify> = Arc::default();
        let task = tokio::spawn(ship(coord, Arc::clone(&queue), Arc::clone(&wake), batches));
        Shipper { queue, wake, task }
    }

    fn output(&self) -> ShipOutput {
        ShipOutput {
            queue: Arc::clone(&self.queue),
            wake: Arc::clone(&self.wake),
            sent: TaskCounts::default(),
        }
    }

    /// Marks the end and waits (at most `limit`) until everything, the last one marked,
    /// is sent.
    async fn finish(self, limit: Duration) {
        lock(&self.queue).closed = true;
        self.wake.notify_one();
        let abort = self.task.abort_handle();
        if tokio::time::timeout(limit, self.task).await.is_err() {
            abort.abort();
            tracing::warn!("could not send the final metrics to the master in time");
        }
    }
}

async fn ship(
    coord: Arc<DistributedCoordinator>,
    queue: Arc<Mutex<ShipQueue>>,
    wake: Arc<Notify>,
    batches: Arc<AtomicU64>,
) {
    loop {
        // Taken out while it is sent, so the queue's merging never touches it. Once the
        // queue is closed, its last item goes marked; an empty one if nothing is left.
        let next = {
            let mut q = lock(&queue);
            match q.items.pop_front() {
                Some(item) => Some((item, q.closed && q.items.is_empty())),
                None if q.closed => Some(((Snapshot::new(), TaskCounts::default()), true)),
                None => None,
            }
        };
        let Some(((snapshot, counts), last)) = next else {
            wake.notified().await;
            continue;
        };
        let m = Message::Metrics {
            batch: batches.load(Ordering::Relaxed),
            snapshot: snapshot.clone(),
            last,
            counts,
        };
        match coord.publish(ChannelType::RequestMetrics, m, None).await {
            Ok(()) => {
                batches.fetch_add(1, Ordering::Relaxed);
                if last {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!("cannot send metrics to the master: {e}; retrying");
                lock(&queue).items.push_front((snapshot, counts));
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// The users of the `n`-th worker to join an instance are numbered from `(n - 1) *
/// USER_ID_BLOCK`: numbers stay unique in the test (k6's `exec.vu.idInTest`) however many
/// users a worker starts over a run.
pub(crate) const USER_ID_BLOCK: u64 = 1_000_000_000;

/// The worker's output: every closed interval goes to the shipper.
struct ShipOutput {
    queue: Arc<Mutex<ShipQueue>>,
    wake: Arc<Notify>,
    sent: TaskCounts,
}

impl Output for ShipOutput {
    fn name(&self) -> &str {
        "master"
    }

    fn interval(&mut self, view: &IntervalView<'_>) -> Verdict {
        let delta = view.counts.since(&self.sent);
        self.sent = *view.counts;
        {
            let mut q = lock(&self.queue);
            q.items.push_back((view.interval.clone(), delta));
            while q.items.len() > 16 {
                if let (Some((mut a, mut ca)), Some((b, cb))) =
                    (q.items.pop_front(), q.items.pop_front())
                {
                    a.merge(&b);
                    ca.add(&cb);
                    q.items.push_front((a, ca));
                }
            }
        }
        self.wake.notify_one();
        Verdict::Continue
    }
}

/// Runs a distributed test's worker: it waits for a master to announce a run instance of
/// its run id, joins it, runs users as the master says and sends it their metrics; when
/// the master goes silent it stops its users (so no load goes unrecorded) and waits for a
/// master again.
pub struct WorkerRunner {
    core: RunnerCore,
    plan: Box<dyn WorkerPlan>,
    config: RunConfig,
    dist: DistributedConfig,
    redis: Redis,
    node_id: String,
    outputs: Vec<Box<dyn Output>>,
    batches: Arc<AtomicU64>,
    report: WorkerReport,
}

impl WorkerRunner {
    /// A worker named `node_id` (unique within the run) able to run `types`.
    pub fn new(
        types: Vec<UserType>,
        hooks: Hooks,
        config: RunConfig,
        dist: DistributedConfig,
        redis: Redis,
        node_id: &str,
    ) -> Result<Self, RunError> {
        // The master's one scenario of a test given as types and a shape: its shape
        // runs there, never here.
        let scenarios = single_scenario(types, Box::new(|_: Duration| None), config.stop_timeout)?;
        Self::scenarios(scenarios, hooks, config, dist, redis, node_id)
    }

    /// A worker for a test of several scenarios (the master's, by name).
    pub fn scenarios(
        scenarios: Vec<Scenario>,
        hooks: Hooks,
        config: RunConfig,
        dist: DistributedConfig,
        redis: Redis,
        node_id: &str,
    ) -> Result<Self, RunError> {
        validate_scenarios(&scenarios)?;
        Self::from_plan(FixedPlan { scenarios, hooks }, config, dist, redis, node_id)
    }

    /// A worker whose user types come from the plan each master ships with its instance
    /// (`MasterRunner::plan`).
    pub fn from_plan(
        plan: impl WorkerPlan + 'static,
        config: RunConfig,
        dist: DistributedConfig,
        redis: Redis,
        node_id: &str,
    ) -> Result<Self, RunError> {
        config.validate()?;
        dist.validate()?;
        Ok(WorkerRunner {
            core: RunnerCore::new(Role::Worker, None),
            plan: Box::new(plan),
            config,
            dist,
            redis,
            node_id: node_id.to_owned(),
            outputs: Vec::new(),
            batches: Arc::default(),
            report: WorkerReport::default(),
        })
    }

    /// Adds an output: it sees this worker's own intervals, in each run it takes part
    /// in (a [`RequestMetricsOutput`](crate::output::RequestMetricsOutput) sees its
    /// requests).
    pub fn output(mut self, output: impl Output + 'static) -> Self {
        self.outputs.push(Box::new(output));
        self
    }

    /// A handle to observe the worker; `quit` ends it.
    pub fn handle(&self) -> RunnerHandle {
        self.core.handle.clone()
    }

    /// Works until told to quit (by the master, or its handle), or, with
    /// `exit_on_master_loss`, until its master is lost.
    pub async fn run(mut self) -> Result<WorkerReport, RunError> {
        let (ann_tx, mut announced) = watch::channel::<Option<Announced>>(None);
        let _announcements = DistributedCoordinator::subscribe_announcements(
            &self.redis,
            &self.dist.run_id,
            move |env| {
                if let Message::Announce { accepting } = env.message {
                    ann_tx.send_replace(Some(Announced {
                        instance: env.instance,
                        accepting,
                        at: Instant::now(),
                    }));
                }
            },
        )
        .await?;
        let mut done_with: Option<String> = None;
        loop {
            let Some(instance) = self
                .wait_for_master(&mut announced, done_with.as_deref())
                .await?
            else {
                self.core.states.enter(RunnerState::Quitting);
                return Ok(self.report);
            };
            let keys = Keys::new(&self.dist.run_id, &instance);
            let plan = match self.redis.get_bytes(&keys.plan()).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!("cannot read the plan of instance {instance}: {e}");
                    tokio::time::sleep(self.dist.heartbeat_interval).await;
                    continue;
                }
            };
            let planned = match self.plan.build(plan.as_deref()) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!("cannot run what the master of instance {instance} sends: {e}");
                    done_with = Some(instance);
                    continue;
                }
            };
            // This worker's place among the instance's workers: its users' numbers.
            let ordinal = match self
                .redis
                .incr(&keys.worker_ordinals(), INSTANCE_KEY_TTL)
                .await
            {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!("cannot number this worker in instance {instance}: {e}");
                    tokio::time::sleep(self.dist.heartbeat_interval).await;
                    continue;
                }
            };
            let first_user = ordinal.saturating_sub(1).saturating_mul(USER_ID_BLOCK);
            match self.join(&instance, planned, first_user).await? {
                Left::Quit => {
                    self.core.states.enter(RunnerState::Quitting);
                    return Ok(self.report);
                }
                Left::Stopped => done_with = Some(instance),
                Left::MasterLost => {
                    self.report.master_losses += 1;
                    self.core.states.enter(RunnerState::Missing);
                    if self.dist.exit_on_master_loss {
                        self.core.states.enter(RunnerState::Quitting);
                        return Ok(self.report);
                    }
                    // The same instance may come back (a partition healed): rejoin it.
                    done_with = None;
                }
            }
        }
    }

    /// Waits for a live master's instance other than `done_with`; `None` when told to
    /// quit meanwhile. Redis unreachable for `redis_timeout` is an error.
    async fn wait_for_master(
        &mut self,
        announced: &mut watch::Receiver<Option<Announced>>,
        done_with: Option<&str>,
    ) -> Result<Option<String>, RunError> {
        let mut last_ok = Instant::now();
        loop {
            // Only a master heard lately is alive: it announces every heartbeat.
            let fresh = self.dist.heartbeat_interval * 2;
            if let Some(a) = announced.borrow_and_update().clone()
                && a.accepting
                && a.at.elapsed() <= fresh
                && done_with != Some(a.instance.as_str())
            {
                return Ok(Some(a.instance));
            }
            tokio::select! {
                changed = announced.changed() => {
                    if changed.is_err() {
                        return Err(RunError::Coordination("the announcement subscription ended".into()));
                    }
                }
                c = self.core.commands.recv() => {
                    // As in every phase: quit and abort end the worker; a stop ends the
                    // run it is in, and while it waits for a master there is none.
                    if matches!(
                        Command::ending(c.as_ref()),
                        Some(StopReason::Quit | StopReason::Aborted)
                    ) {
                        return Ok(None);
                    }
                }
                () = tokio::time::sleep(self.dist.heartbeat_interval) => {
                    let now = Instant::now();
                    match tokio::time::timeout(self.dist.heartbeat_interval * 2, self.redis.ping()).await {
                        Ok(Ok(())) => last_ok = now,
                        _ if now.saturating_duration_since(last_ok) > self.dist.redis_timeout => {
                            return Err(RunError::RedisUnreachable(self.dist.redis_timeout));
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    /// Takes part in `instance` until it stops this worker, tells it to quit, or goes
    /// silent.
    async fn join(
        &mut self,
        instance: &str,
        planned: Planned,
        first_user: u64,
    ) -> Result<Left, RunError> {
        let Planned {
            scenarios,
            hooks,
            host,
            tags,
            timing_trends,
        } = planned;
        validate_scenarios(&scenarios)?;
        let coord = Arc::new(DistributedCoordinator::new(
            self.redis.clone(),
            &self.dist.run_id,
            instance,
            &self.node_id,
            NodeType::Worker,
        ));
        let mut types: Vec<String> = Vec::new();
        for sc in &scenarios {
            for t in sc.user_types() {
                if !types.iter().any(|n| n == t.name()) {
                    types.push(t.name().to_owned());
                }
            }
        }
        let known: Vec<(String, Vec<String>)> = scenarios
            .iter()
            .map(|sc| {
                let names = sc.user_types().iter().map(|t| t.name().to_owned());
                (sc.name().to_owned(), names.collect())
            })
            .collect();
        let last_seen = Arc::new(Mutex::new(Instant::now()));
        let (setup_tx, mut setup_rx) = watch::channel::<Option<Option<Vec<u8>>>>(None);
        let _commands = coord
            .subscribe(
                ChannelType::Command,
                bridge(
                    self.core.handle.clone(),
                    known,
                    Arc::clone(&last_seen),
                    setup_tx,
                ),
            )
            .await?;
        coord
            .publish(
                ChannelType::RequestMetrics,
                Message::Hello {
                    user_types: types,
                    scenarios: scenarios.iter().map(|s| s.name().to_owned()).collect(),
                },
                None,
            )
            .await?;
        let has_setup = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let beats = tokio::spawn(heartbeats(
            Arc::clone(&coord),
            self.core.handle.clone(),
            Arc::clone(&has_setup),
            Arc::clone(&last_seen),
            self.dist.clone(),
        ));
        let _beats = AbortOnDrop(beats);
        // The master sends setup's data (repeatedly, until this worker's heartbeat says it
        // has it) before any user count.
        let json = loop {
            if let Some(json) = setup_rx.borrow_and_update().clone() {
                break json;
            }
            tokio::select! {
                _ = setup_rx.changed() => {}
                c = self.core.commands.recv() => match Command::ending(c.as_ref()) {
                    Some(StopReason::Quit | StopReason::Aborted) => return Ok(Left::Quit),
                    Some(StopReason::MasterLost) => return Ok(Left::MasterLost),
                    Some(_) => return Ok(Left::Stopped),
                    None => {}
                },
            }
        };
        let setup: Option<SetupData> = match json.as_deref().map(|j| hooks.decode_setup_data(j)) {
            Some(Ok(d)) => Some(d),
            Some(Err(e)) => {
                tracing::error!("setup data from the master: {e}");
                return Ok(Left::Stopped);
            }
            None => None,
        };
        has_setup.store(true, Ordering::Relaxed);
        let shipper = Shipper::start(Arc::clone(&coord), Arc::clone(&self.batches));
        let mut outputs = std::mem::take(&mut self.outputs);
        outputs.push(Box::new(shipper.output()));
        let config = RunConfig {
            no_setup: true,
            no_teardown: true,
            host: host.or_else(|| self.config.host.clone()),
            tags: tags.unwrap_or_else(|| self.config.tags.clone()),
            metrics: aiotest_metrics::MetricsConfig {
                timing_trends: timing_trends.unwrap_or(self.config.metrics.timing_trends),
                ..self.config.metrics.clone()
            },
            ..self.config.clone()
        };
        config.validate()?;
        let placement = LocalPlacement::new(scenarios.clone(), &config).first_user_id(first_user);
        let result = Engine {
            core: &mut self.core,
            placement,
            scenarios: &scenarios,
            driven: true,
            hooks: &hooks,
            config: &config,
            setup_given: Some(setup),
            outputs: &mut outputs,
        }
        .run()
        .await;
        outputs.pop();
        self.outputs = outputs;
        shipper.finish(self.dist.master_timeout).await;
        self.report.batches = self.batches.load(Ordering::Relaxed);
        let report = result?;
        self.report.runs += 1;
        self.report.requests += report.snapshot.total().requests;
        self.report.cancelled_users += report.cancelled_users;
        Ok(match report.reason {
            StopReason::Quit => Left::Quit,
            StopReason::MasterLost => Left::MasterLost,
            _ => Left::Stopped,
        })
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Turns the master's messages into the worker's commands. Every message from the master
/// is a sign of life. `scenarios` are the worker's, by name, with their user types' names.
fn bridge(
    handle: RunnerHandle,
    scenarios: Vec<(String, Vec<String>)>,
    last_seen: Arc<Mutex<Instant>>,
    setup: watch::Sender<Option<Option<Vec<u8>>>>,
) -> impl Fn(aiotest_coordinator::wire::Envelope) + Send + Sync + 'static {
    let index = move |name: &str| {
        let i = scenarios.iter().position(|(n, _)| n == name);
        if i.is_none() {
            tracing::warn!(
                scenario = name,
                "the master names a scenario this worker lacks"
            );
        }
        i.map(|i| (i, scenarios[i].1.clone()))
    };
    move |env| {
        *lock(&last_seen) = Instant::now();
        // Commands are absolute and repeated: when the queue is full, dropping one is safe.
        let _ = match env.message {
            Message::Heartbeat { state, .. } => match state {
                RunnerState::Paused => handle.try_send(Command::Pause),
                RunnerState::Running => handle.try_send(Command::Resume),
                _ => true,
            },
            Message::SetupData { json } => {
                setup.send_replace(Some(json));
                true
            }
            Message::Spawn {
                scenario,
                users,
                spawn_rate,
            } => match index(&scenario) {
                Some((i, types)) => {
                    let targets = types
                        .iter()
                        .map(|n| users.iter().find(|(t, _)| t == n).map_or(0, |(_, c)| *c))
                        .collect();
                    handle.try_send(Command::Scenario(
                        i,
                        ScenarioCommand::TypeTargets {
                            targets,
                            rate: spawn_rate,
                        },
                    ))
                }
                None => true,
            },
            Message::StartScenario {
                scenario,
                share,
                vus,
                max_vus,
                budget,
                elapsed_us,
                sent_us,
            } => match index(&scenario) {
                Some((i, _)) => handle.try_send(Command::Scenario(
                    i,
                    ScenarioCommand::Start(Part {
                        share,
                        vus: (vus, max_vus),
                        budget,
                        elapsed: Duration::from_micros(elapsed_us),
                        lag: transit(sent_us),
                    }),
                )),
                None => true,
            },
            Message::EndScenario { scenario, grace_us } => match index(&scenario) {
                Some((i, _)) => handle.try_send(Command::Scenario(
                    i,
                    ScenarioCommand::End(Duration::from_micros(grace_us)),
                )),
                None => true,
            },
            Message::Pause => handle.try_send(Command::Pause),
            Message::Resume => handle.try_send(Command::Resume),
            Message::Stop => handle.try_send(Command::End(StopReason::Stopped)),
            Message::Quit => handle.try_send(Command::Quit),
            Message::Abort => handle.try_send(Command::Abort),
            _ => true,
        };
    }
}

/// The worker's heartbeat to its master, and the watch on the master's: silent for
/// `master_timeout`, and the run ends (users stop, so no load goes unrecorded).
async fn heartbeats(
    coord: Arc<DistributedCoordinator>,
    handle: RunnerHandle,
    has_setup: Arc<std::sync::atomic::AtomicBool>,
    last_seen: Arc<Mutex<Instant>>,
    dist: DistributedConfig,
) {
    let mut lost = false;
    loop {
        let hb = Message::Heartbeat {
            state: handle.state(),
            users: handle.users().iter().map(|(_, n)| n).sum(),
            has_setup: has_setup.load(Ordering::Relaxed),
            done: handle.scenarios_done(),
        };
        let send = coord.publish(ChannelType::Heartbeat, hb, None);
        if let Ok(Err(e)) = tokio::time::timeout(dist.heartbeat_interval, send).await {
            tracing::debug!("heartbeat: {e}");
        }
        let silent = Instant::now().saturating_duration_since(*lock(&last_seen));
        if silent > dist.master_timeout && !lost {
            tracing::warn!("master silent for {silent:?}; stopping users");
            lost = handle.try_send(Command::End(StopReason::MasterLost));
        }
        tokio::time::sleep(dist.heartbeat_interval).await;
    }
}

/// How long a master's command measured at `sent_us` (µs since the Unix epoch) took to
/// arrive, by this machine's clock; none when unknown. At most a second: a clock set
/// ahead of the master's must not start a part seconds into its schedule.
fn transit(sent_us: u64) -> Duration {
    if sent_us == 0 {
        return Duration::ZERO;
    }
    let now = crate::handle::now_us();
    Duration::from_micros(now.saturating_sub(sent_us)).min(Duration::from_secs(1))
}
