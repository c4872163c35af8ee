//! The master: the engine with users on workers, reached through Redis.
//!
//! The master holds its run id's lock, announces a fresh instance every heartbeat, waits
//! for the expected workers, ships setup's data, turns each target into absolute
//! per-worker, per-type user counts ([`split_over_workers`]) repeated every heartbeat,
//! marks silent workers MISSING and moves their users, merges the workers' interval
//! snapshots, and on stop waits for every live worker's final flush.
//!
//! Nothing here waits on Redis inside the control loop: messages go through an outbox to
//! a task of their own, and what arrives lands in an inbox the loop drains. So the master
//! answers pause, stop or quit at once even with Redis gone, and it ends the run when
//! Redis stays unreachable for `redis_timeout`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aiotest_coordinator::wire::{
    ChannelType, Keys, Message, NodeType, TaskCounts, new_instance_id,
};
use aiotest_coordinator::{
    COMMAND_TIMEOUT, DistributedCoordinator, Redis, RedisLock, Subscription,
};
use aiotest_core::lifecycle::Hooks;
use aiotest_core::scenario::{Drive, Executor, Scenario};
use aiotest_core::shape::LoadUserShape;
use aiotest_core::state::{Role, RunnerState};
use aiotest_core::user::UserType;
use aiotest_core::weights::split_over_workers;
use aiotest_metrics::{PrometheusExporter, Snapshot};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::distributed::{DistributedConfig, INSTANCE_KEY_TTL};
use crate::engine::{Abort, Begin, Finish, Placement, RunConfig, Runner, single_scenario};
use crate::handle::{Command, RunnerHandle, WorkerView, lock};
use crate::output::Output;
use crate::report::{RunError, RunReport, StopReason};
use crate::scenarios::{Part, split_weighted};

/// What the master knows of a worker.
#[derive(Debug, Clone)]
struct WorkerInfo {
    last_seen: Instant,
    state: RunnerState,
    users: u64,
    has_setup: bool,
    missing: bool,
    final_seen: bool,
    last_batch: Option<u64>,
    compatible: bool,
    /// End of its newest snapshot (µs since the epoch): how far it has reported.
    reported_to_us: Option<u64>,
    /// Scenarios whose users are all done there.
    done: Vec<String>,
}

/// What the subscriptions received, waiting for the control loop.
#[derive(Default)]
struct Inbox {
    hellos: Vec<(String, Vec<String>, Vec<String>)>,
    beats: Vec<(String, RunnerState, u64, bool, Vec<String>)>,
    metrics: Vec<(String, u64, Snapshot, bool, TaskCounts)>,
}

/// A message for the I/O task.
enum Out {
    Command(Message, Option<String>),
    Announce(Message),
    Touch(Vec<String>),
}

/// When Redis last did what it was asked, and whether its latest answer was a failure.
struct Health {
    last_ok: Mutex<Instant>,
    failing: std::sync::atomic::AtomicBool,
    /// Redis answered again after failing, and the control loop has not yet seen it.
    recovered: std::sync::atomic::AtomicBool,
}

impl Health {
    fn since_ok(&self, now: Instant) -> Duration {
        now.saturating_duration_since(*lock(&self.last_ok))
    }

    fn failing(&self) -> bool {
        self.failing.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Publishes what the control loop queued, never making it wait: commands are absolute
/// and repeated every heartbeat, so a full outbox drops one harmlessly.
async fn io_loop(
    coord: Arc<DistributedCoordinator>,
    redis: Redis,
    mut rx: mpsc::Receiver<Out>,
    health: Arc<Health>,
) {
    while let Some(out) = rx.recv().await {
        let failing = health.failing();
        let op = async {
            match out {
                Out::Command(m, to) => coord.publish(ChannelType::Command, m, to.as_deref()).await,
                Out::Announce(m) => coord.announce(m).await,
                Out::Touch(keys) => redis.expire(&keys, INSTANCE_KEY_TTL).await,
            }
        };
        // fred's own command timeout applies; this is the backstop.
        match tokio::time::timeout(COMMAND_TIMEOUT + Duration::from_secs(1), op).await {
            Ok(Ok(())) => {
                *lock(&health.last_ok) = Instant::now();
                if failing {
                    tracing::warn!("Redis answers again");
                    health
                        .recovered
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                }
                health
                    .failing
                    .store(false, std::sync::atomic::Ordering::Relaxed);
            }
            Ok(Err(e)) => {
                if !failing {
                    tracing::warn!("cannot reach the workers: {e}");
                }
                health
                    .failing
                    .store(true, std::sync::atomic::Ordering::Relaxed);
            }
            Err(_) => {
                if !failing {
                    tracing::warn!("cannot reach the workers: Redis did not answer in time");
                }
                health
                    .failing
                    .store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }
}

/// One scenario as the master runs it over its workers.
struct ScenarioPlan {
    name: String,
    types: Vec<String>,
    weights: Vec<u32>,
    executor: Executor,
    drive: Drive,
    /// Closed model: the target, and the users it last placed per type.
    target: Option<(u32, f64)>,
    dispatched: Vec<u64>,
    redispatch: bool,
    /// Self-scheduled: when it started (moved forward by pauses), and each worker's
    /// part, last sent.
    started: Option<Instant>,
    parts: BTreeMap<String, Part>,
    /// Iterations each worker reported done (shared-iterations re-splits).
    done_by: BTreeMap<String, u64>,
    /// Iterations each worker accounted for: done, dropped or interrupted.
    accounted_by: BTreeMap<String, u64>,
    /// Ended, with this graceful stop period.
    ended: Option<Duration>,
}

impl ScenarioPlan {
    fn new(sc: &Scenario) -> Self {
        ScenarioPlan {
            name: sc.name().to_owned(),
            types: sc
                .user_types()
                .iter()
                .map(|t| t.name().to_owned())
                .collect(),
            weights: sc.user_types().iter().map(UserType::weight).collect(),
            executor: sc.executor().clone(),
            drive: sc.executor().drive(),
            target: None,
            dispatched: vec![0; sc.user_types().len()],
            redispatch: false,
            started: None,
            parts: BTreeMap::new(),
            done_by: BTreeMap::new(),
            accounted_by: BTreeMap::new(),
            ended: None,
        }
    }
}

/// Users on workers; see the [module docs](self).
pub(crate) struct WorkersPlacement {
    plans: Vec<ScenarioPlan>,
    /// Every user type of the test, for the workers' hello.
    names: Vec<String>,
    dist: DistributedConfig,
    redis: Redis,
    keys: Keys,
    coord: Arc<DistributedCoordinator>,
    plan: Option<Vec<u8>>,
    lock: Option<RedisLock>,
    subscriptions: Vec<Subscription>,
    inbox: Arc<Mutex<Inbox>>,
    arrived: Arc<Notify>,
    outbox: Option<mpsc::Sender<Out>>,
    io: Option<JoinHandle<()>>,
    health: Arc<Health>,
    workers: BTreeMap<String, WorkerInfo>,
    ever_missing: BTreeSet<String>,
    paused: bool,
    paused_at: Option<Instant>,
    accepting: bool,
    setup_json: Option<Vec<u8>>,
    /// Setup is done: workers may be sent its data.
    begun: bool,
    next_beat: Instant,
    next_touch: Instant,
    intervals: Vec<Snapshot>,
    counts: TaskCounts,
    missing_flushes: Vec<String>,
    /// Arrival-rate iterations of workers gone that nobody accounted for: (scenario,
    /// worker, count), counted as dropped.
    lost: Vec<(String, String, u64)>,
    /// How many of `lost` are in the figures already.
    lost_counted: usize,
    /// More keys to delete at the end (the plan's).
    clean_up: Vec<String>,
}

impl WorkersPlacement {
    fn new(
        scenarios: &[Scenario],
        dist: DistributedConfig,
        redis: Redis,
        plan: Option<Vec<u8>>,
    ) -> Self {
        let instance = new_instance_id();
        let coord = DistributedCoordinator::new(
            redis.clone(),
            &dist.run_id,
            &instance,
            "master",
            NodeType::Master,
        );
        let now = Instant::now();
        let mut names: Vec<String> = Vec::new();
        for sc in scenarios {
            for t in sc.user_types() {
                if !names.iter().any(|n| n == t.name()) {
                    names.push(t.name().to_owned());
                }
            }
        }
        WorkersPlacement {
            plans: scenarios.iter().map(ScenarioPlan::new).collect(),
            names,
            keys: Keys::new(&dist.run_id, &instance),
            dist,
            redis,
            coord: Arc::new(coord),
            plan,
            lock: None,
            subscriptions: Vec::new(),
            inbox: Arc::default(),
            arrived: Arc::default(),
            outbox: None,
            io: None,
            health: Arc::new(Health {
                last_ok: Mutex::new(now),
                failing: Default::default(),
                recovered: Default::default(),
            }),
            workers: BTreeMap::new(),
            ever_missing: BTreeSet::new(),
            paused: false,
            paused_at: None,
            accepting: true,
            setup_json: None,
            begun: false,
            next_beat: now,
            next_touch: now,
            intervals: Vec::new(),
            counts: TaskCounts::default(),
            missing_flushes: Vec::new(),
            lost: Vec::new(),
            lost_counted: 0,
            clean_up: Vec::new(),
        }
    }

    fn send(&self, out: Out) {
        if let Some(tx) = &self.outbox {
            // Full: Redis is slow or gone; what is dropped is repeated next heartbeat.
            let _ = tx.try_send(out);
        }
    }

    fn broadcast(&self, m: Message) {
        self.send(Out::Command(m, None));
    }

    fn live_ids(&self) -> Vec<String> {
        self.workers
            .iter()
            .filter(|(_, w)| w.compatible && !w.missing)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Subscribes to the workers' heartbeats and metrics stream, and starts the I/O task.
    async fn connect(&mut self) -> Result<(), RunError> {
        let inbox = Arc::clone(&self.inbox);
        let beats = self
            .coord
            .subscribe(ChannelType::Heartbeat, move |env| {
                if let Message::Heartbeat {
                    state,
                    users,
                    has_setup,
                    done,
                } = env.message
                {
                    lock(&inbox)
                        .beats
                        .push((env.sender, state, users, has_setup, done));
                }
            })
            .await?;
        let inbox = Arc::clone(&self.inbox);
        let arrived = Arc::clone(&self.arrived);
        let metrics = self
            .coord
            .subscribe(ChannelType::RequestMetrics, move |env| {
                match env.message {
                    Message::Hello {
                        user_types,
                        scenarios,
                    } => {
                        lock(&inbox)
                            .hellos
                            .push((env.sender, user_types, scenarios));
                    }
                    Message::Metrics {
                        batch,
                        snapshot,
                        last,
                        counts,
                    } => {
                        lock(&inbox)
                            .metrics
                            .push((env.sender, batch, snapshot, last, counts));
                    }
                    _ => return,
                }
                arrived.notify_one();
            })
            .await?;
        self.subscriptions = vec![beats, metrics];
        // Room for a few heartbeats' worth of messages to every worker.
        let (tx, rx) = mpsc::channel(1_024);
        self.outbox = Some(tx);
        self.io = Some(tokio::spawn(io_loop(
            Arc::clone(&self.coord),
            self.redis.clone(),
            rx,
            Arc::clone(&self.health),
        )));
        Ok(())
    }

    /// Takes what the subscriptions received.
    fn drain(&mut self, now: Instant) {
        if self
            .health
            .recovered
            .swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            // Silent because Redis was, not because they are gone: every worker gets a
            // new liveness period to be heard again (and to send what it holds).
            for w in self.workers.values_mut() {
                w.last_seen = now;
                w.missing = false;
            }
        }
        let inbox = std::mem::take(&mut *lock(&self.inbox));
        for (id, types, scenarios) in inbox.hellos {
            let missing: Vec<&String> = self
                .names
                .iter()
                .chain(self.plans.iter().map(|p| &p.name))
                .filter(|t| !types.contains(t) && !scenarios.contains(t))
                .collect();
            if !missing.is_empty() {
                tracing::error!(
                    worker = id,
                    ?missing,
                    "worker lacks user types or scenarios; it gets no users"
                );
            }
            // A worker (re)joins: it starts idle, without setup data, and with a new run.
            self.workers.insert(
                id,
                WorkerInfo {
                    last_seen: now,
                    state: RunnerState::Ready,
                    users: 0,
                    has_setup: false,
                    missing: false,
                    final_seen: false,
                    last_batch: None,
                    compatible: missing.is_empty(),
                    reported_to_us: None,
                    done: Vec::new(),
                },
            );
            for p in &mut self.plans {
                p.redispatch = true;
            }
        }
        for (id, state, users, has_setup, done) in inbox.beats {
            if let Some(w) = self.workers.get_mut(&id) {
                w.last_seen = now;
                w.state = state;
                w.users = users;
                w.has_setup = has_setup;
                w.done = done;
            }
        }
        for (id, batch, snapshot, last, counts) in inbox.metrics {
            match self.workers.get_mut(&id) {
                Some(w) => {
                    if w.last_batch.is_some_and(|b| b + 1 != batch) {
                        tracing::warn!(worker = id, batch, "metrics batch gap");
                    }
                    w.last_batch = Some(batch);
                    w.final_seen |= last;
                    w.last_seen = now;
                    w.reported_to_us = w.reported_to_us.max(snapshot.end_us);
                }
                // Counted all the same: a request sent is a request counted.
                None => tracing::warn!(worker = id, "metrics from a worker that never said hello"),
            }
            let iterations = snapshot.scenarios();
            for p in &mut self.plans {
                if let Some(s) = iterations.get(&p.name) {
                    *p.done_by.entry(id.clone()).or_default() += s.iterations;
                    *p.accounted_by.entry(id.clone()).or_default() +=
                        s.iterations + s.dropped + s.interrupted;
                }
            }
            self.counts.add(&counts);
            self.intervals.push(snapshot);
        }
    }

    /// How far into scenario `i` the run is (pauses excluded).
    fn elapsed(&self, i: usize, now: Instant) -> Duration {
        let Some(started) = self.plans[i].started else {
            return Duration::ZERO;
        };
        self.paused_at
            .unwrap_or(now)
            .saturating_duration_since(started)
    }

    /// Sends each live worker its absolute per-type counts of closed-model scenario `i`.
    fn dispatch(&mut self, i: usize) {
        let live = self.live_ids();
        let plan = &mut self.plans[i];
        plan.redispatch = false;
        let Some((users, rate)) = plan.target else {
            return;
        };
        if live.is_empty() {
            // Nobody runs them: no user is placed.
            plan.dispatched.iter_mut().for_each(|n| *n = 0);
            return;
        }
        if self.paused || plan.ended.is_some() {
            return;
        }
        let split =
            split_over_workers(u64::from(users), &plan.weights, live.len()).unwrap_or_default();
        // Every worker moves at its share of the rate, so the whole ramp keeps its rate.
        let rate = rate / live.len() as f64;
        let mut by_type = vec![0u64; plan.types.len()];
        let mut out = Vec::with_capacity(live.len());
        for (id, counts) in live.iter().zip(&split) {
            let users = plan
                .types
                .iter()
                .zip(counts)
                .map(|(t, n)| (t.clone(), u32::try_from(*n).unwrap_or(u32::MAX)))
                .collect();
            for (sum, n) in by_type.iter_mut().zip(counts) {
                *sum += n;
            }
            out.push(Out::Command(
                Message::Spawn {
                    scenario: plan.name.clone(),
                    users,
                    spawn_rate: rate,
                },
                Some(id.clone()),
            ));
        }
        plan.dispatched = by_type;
        for o in out {
            self.send(o);
        }
    }

    /// Sends each live worker its part of self-scheduled scenario `i`; a changed set of
    /// workers gets new parts from now on (a lost worker's share moves to the others).
    fn send_parts(&mut self, i: usize, now: Instant) {
        let live = self.live_ids();
        let elapsed = self.elapsed(i, now);
        let plan = &mut self.plans[i];
        if plan.started.is_none() || plan.ended.is_some() || live.is_empty() {
            return;
        }
        let same =
            plan.parts.len() == live.len() && live.iter().all(|id| plan.parts.contains_key(id));
        if !same {
            let first = plan.parts.is_empty();
            // The share of a worker gone: iterations due in it before the new split that
            // it never reported (it died with them in flight, unflushed, or never ran
            // them) would be in no count; they are counted as dropped, and said.
            if let Some(schedule) = plan.executor.arrivals() {
                let new_from = schedule.due_before(elapsed);
                for (gone, part) in plan.parts.iter().filter(|(id, _)| !live.contains(id)) {
                    let mut due = 0u64;
                    let mut k = part.share.next_from(part.share.from);
                    while k < new_from {
                        due += 1;
                        k = part.share.next_from(k + 1);
                    }
                    let accounted = plan.accounted_by.get(gone).copied().unwrap_or(0);
                    let lost = due.saturating_sub(accounted);
                    if lost > 0 {
                        // Counted once: what it accounted for now includes them.
                        *plan.accounted_by.entry(gone.clone()).or_default() += lost;
                        self.lost.push((plan.name.clone(), gone.clone(), lost));
                    }
                }
            }
            let mut parts = BTreeMap::new();
            // Iterations already run by workers gone are not run again (shared budget).
            let done: u64 = plan.done_by.values().sum();
            let remaining = match plan.executor {
                Executor::SharedIterations { iterations, .. } => iterations.saturating_sub(done),
                _ => 0,
            };
            for (k, id) in live.iter().enumerate() {
                let mut part = Part::of(&plan.executor, k, live.len());
                if !first {
                    part.elapsed = elapsed;
                    part.share.from = plan
                        .executor
                        .arrivals()
                        .map_or(0, |a| a.due_before(elapsed));
                    if matches!(plan.executor, Executor::SharedIterations { .. }) {
                        let users: Vec<u64> = (0..live.len())
                            .map(|j| u64::from(Part::of(&plan.executor, j, live.len()).vus.0))
                            .collect();
                        let extra = split_weighted(remaining, &users)[k];
                        part.budget = plan.done_by.get(id).copied().unwrap_or(0) + extra;
                    }
                }
                parts.insert(id.clone(), part);
            }
            plan.parts = parts;
        }
        let out: Vec<Out> = plan
            .parts
            .iter()
            .map(|(id, part)| {
                Out::Command(
                    Message::StartScenario {
                        scenario: plan.name.clone(),
                        share: part.share,
                        vus: part.vus.0,
                        max_vus: part.vus.1,
                        budget: part.budget,
                        elapsed_us: u64::try_from(part.elapsed.as_micros()).unwrap_or(u64::MAX),
                        sent_us: crate::handle::now_us(),
                    },
                    Some(id.clone()),
                )
            })
            .collect();
        for o in out {
            self.send(o);
        }
    }

    /// Every heartbeat: liveness, announcements, setup data and targets again.
    fn beat(&mut self, now: Instant) -> Result<(), RunError> {
        for (id, w) in self.workers.iter_mut() {
            let silent = now.saturating_duration_since(w.last_seen) > self.dist.liveness_timeout;
            if silent && !w.missing {
                tracing::warn!(
                    worker = id,
                    "worker silent: MISSING; its users move to the others"
                );
                self.ever_missing.insert(id.clone());
            }
            w.missing = silent;
        }
        self.send(Out::Announce(Message::Announce {
            accepting: self.accepting,
        }));
        // The master's own heartbeat, with its state: absolute, so a worker that missed
        // a pause or a resume catches up.
        self.broadcast(Message::Heartbeat {
            state: if self.paused {
                RunnerState::Paused
            } else {
                RunnerState::Running
            },
            users: self.plans.iter().flat_map(|p| &p.dispatched).sum(),
            has_setup: true,
            done: Vec::new(),
        });
        let lacking: Vec<String> = self
            .live_ids()
            .into_iter()
            .filter(|id| self.workers.get(id).is_some_and(|w| !w.has_setup))
            .collect();
        for id in lacking.into_iter().filter(|_| self.begun) {
            self.send(Out::Command(
                Message::SetupData {
                    json: self.setup_json.clone(),
                },
                Some(id),
            ));
        }
        // Absolute targets and parts, repeated: a lost command, a new or returning
        // worker, or a missing one all converge here.
        for i in 0..self.plans.len() {
            match (self.plans[i].drive, self.plans[i].ended) {
                (_, Some(grace)) => self.broadcast(Message::EndScenario {
                    scenario: self.plans[i].name.clone(),
                    grace_us: u64::try_from(grace.as_micros()).unwrap_or(u64::MAX),
                }),
                (Drive::Targets, None) => self.dispatch(i),
                (_, None) => self.send_parts(i, now),
            }
        }
        if now >= self.next_touch {
            self.next_touch = now + Duration::from_secs(60);
            self.send(Out::Touch(vec![
                self.keys.plan(),
                self.keys.metrics_stream(),
            ]));
        }
        if self.lock.as_ref().is_some_and(|l| !l.is_held()) {
            return Err(RunError::LockLost);
        }
        if self.health.since_ok(now) > self.dist.redis_timeout {
            return Err(RunError::RedisUnreachable(self.dist.redis_timeout));
        }
        Ok(())
    }
}

impl Placement for WorkersPlacement {
    async fn prepare(
        &mut self,
        commands: &mut mpsc::Receiver<Command>,
    ) -> Result<Option<StopReason>, RunError> {
        // A master that died leaves its lock for up to the lock's timeout: wait that long
        // (obeying commands) before taking another master for a live one.
        // A live master renews its lock every third of the timeout: the lock's time left
        // growing between two looks means a live master, refused at once.
        let give_up = Instant::now() + self.dist.lock_timeout + Duration::from_secs(1);
        let mut said = false;
        let mut last: Option<(Instant, Duration)> = None;
        let lock = loop {
            match RedisLock::with_lock(&self.redis, &self.keys, "master", self.dist.lock_timeout)
                .await
            {
                Ok(lock) => break lock,
                Err(aiotest_coordinator::LockError::Held { remaining, .. })
                    if Instant::now() < give_up =>
                {
                    let now = Instant::now();
                    if let (Some((then, before)), Some(left)) = (last, remaining) {
                        let expected = before.saturating_sub(now - then);
                        if left > expected + Duration::from_millis(100) {
                            return Err(RunError::MasterExists);
                        }
                    }
                    last = remaining.map(|r| (now, r));
                    if !said {
                        said = true;
                        tracing::warn!(
                            "another master holds run `{}`; waiting up to {:?} for its lock, which a master that died keeps that long",
                            self.dist.run_id,
                            self.dist.lock_timeout
                        );
                    }
                    tokio::select! {
                        c = commands.recv() => {
                            if let Some(reason) = Command::ending(c.as_ref()) {
                                return Ok(Some(reason));
                            }
                        }
                        () = tokio::time::sleep(Duration::from_millis(250)) => {}
                    }
                }
                Err(e) => return Err(e.into()),
            }
        };
        self.lock = Some(lock);
        if let Some(plan) = &self.plan {
            self.redis
                .set_bytes(&self.keys.plan(), plan, INSTANCE_KEY_TTL)
                .await?;
        }
        self.connect().await?;
        let deadline = Instant::now() + self.dist.wait_timeout;
        loop {
            let now = Instant::now();
            self.drain(now);
            let ready = self.workers.values().filter(|w| w.compatible).count();
            if ready >= self.dist.expect_workers {
                return Ok(None);
            }
            if now >= self.next_beat {
                self.next_beat = now + self.dist.heartbeat_interval;
                self.send(Out::Announce(Message::Announce { accepting: true }));
                if self.health.since_ok(now) > self.dist.redis_timeout {
                    return Err(RunError::RedisUnreachable(self.dist.redis_timeout));
                }
            }
            if now >= deadline {
                return Err(RunError::NotEnoughWorkers {
                    got: ready,
                    want: self.dist.expect_workers,
                });
            }
            tokio::select! {
                c = commands.recv() => {
                    if let Some(reason) = Command::ending(c.as_ref()) {
                        return Ok(Some(reason));
                    }
                }
                () = self.arrived.notified() => {}
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    }

    fn begin(&mut self, begin: Begin<'_>) -> Result<(), RunError> {
        self.setup_json = begin.setup.map(|d| d.json().to_vec());
        self.begun = true;
        self.broadcast(Message::SetupData {
            json: self.setup_json.clone(),
        });
        Ok(())
    }

    fn start_scenario(&mut self, i: usize, _part: Part, now: Instant) {
        if let Some(plan) = self.plans.get_mut(i)
            && plan.drive != Drive::Targets
            && plan.started.is_none()
        {
            plan.started = Some(now);
            self.send_parts(i, now);
        }
    }

    fn set_target(&mut self, i: usize, users: u32, rate: f64, _now: Instant) {
        if let Some(plan) = self.plans.get_mut(i) {
            plan.target = Some((users, rate));
            plan.redispatch = true;
        }
    }

    fn set_type_targets(&mut self, _: usize, _: &[u32], _: f64, _: Instant) {
        tracing::warn!("a master places users by total, not by type; ignored");
    }

    fn target(&self, i: usize) -> Option<(u32, f64)> {
        self.plans.get(i)?.target
    }

    fn end_scenario(&mut self, i: usize, grace: Duration, _now: Instant) {
        if let Some(plan) = self.plans.get_mut(i) {
            plan.ended = Some(grace);
            let m = Message::EndScenario {
                scenario: plan.name.clone(),
                grace_us: u64::try_from(grace.as_micros()).unwrap_or(u64::MAX),
            };
            self.broadcast(m);
        }
    }

    fn scenario_done(&mut self, i: usize) -> bool {
        let Some(plan) = self.plans.get(i) else {
            return true;
        };
        // A closed-model scenario is done once ended; the others also when every live
        // worker has spent its part.
        if plan.drive == Drive::Targets && plan.ended.is_none() {
            return false;
        }
        if plan.drive != Drive::Targets && plan.started.is_none() {
            return false;
        }
        let live = self.live_ids();
        live.iter().all(|id| {
            self.workers
                .get(id)
                .is_some_and(|w| w.done.contains(&plan.name))
        })
    }

    fn pause(&mut self, now: Instant) {
        self.paused = true;
        self.paused_at = Some(now);
        self.broadcast(Message::Pause);
    }

    fn resume(&mut self, now: Instant) {
        self.paused = false;
        if let Some(at) = self.paused_at.take() {
            let paused_for = now.saturating_duration_since(at);
            for plan in &mut self.plans {
                if let Some(s) = plan.started.as_mut() {
                    *s += paused_for;
                }
            }
        }
        self.broadcast(Message::Resume);
        for plan in &mut self.plans {
            plan.redispatch = true;
        }
    }

    fn step(&mut self, now: Instant) -> Result<Option<Instant>, RunError> {
        self.drain(now);
        if now >= self.next_beat {
            self.next_beat = now + self.dist.heartbeat_interval;
            self.beat(now)?;
        }
        for i in 0..self.plans.len() {
            if self.plans[i].redispatch {
                self.dispatch(i);
            }
        }
        Ok(Some(self.next_beat))
    }

    fn take_intervals(&mut self, into: &mut Vec<Snapshot>) {
        into.append(&mut self.intervals);
        let fresh = &self.lost[self.lost_counted..];
        if !fresh.is_empty() {
            let now = crate::handle::now_us();
            let mut s = Snapshot {
                start_us: Some(now),
                end_us: Some(now),
                ..Snapshot::default()
            };
            for (scenario, _, n) in fresh {
                let dropped = aiotest_metrics::ScenarioStats {
                    dropped: *n,
                    ..aiotest_metrics::ScenarioStats::default()
                };
                s.count_iterations(scenario, &dropped);
            }
            self.lost_counted = self.lost.len();
            into.push(s);
        }
    }

    fn watermark(&self, now_us: u64, interval_us: u64) -> u64 {
        // Every live worker has closed and sent its intervals up to here; one that lags
        // (or died without a word) holds intervals back for three intervals at most.
        let floor = now_us.saturating_sub(3 * interval_us);
        self.workers
            .values()
            .filter(|w| w.compatible && !w.missing)
            .map(|w| w.reported_to_us.unwrap_or(floor))
            .min()
            .unwrap_or(now_us)
            .max(floor)
    }

    fn users(&self) -> Vec<(String, u64)> {
        // The users on live workers: none when every worker is MISSING (Redis gone).
        let mut out: Vec<(String, u64)> = self.names.iter().map(|n| (n.clone(), 0)).collect();
        let live: Vec<&WorkerInfo> = self
            .workers
            .values()
            .filter(|w| w.compatible && !w.missing)
            .collect();
        if live.is_empty() {
            return out;
        }
        let mut add = |t: &str, n: u64| {
            if let Some((_, total)) = out.iter_mut().find(|(name, _)| name == t) {
                *total += n;
            }
        };
        let mut placed = 0;
        for plan in self.plans.iter().filter(|p| p.drive == Drive::Targets) {
            for (t, n) in plan.types.iter().zip(&plan.dispatched) {
                add(t, *n);
                placed += n;
            }
        }
        // The workers' own counts cover self-scheduled scenarios (iterations, arrivals),
        // which the master places no users for.
        let rest = live
            .iter()
            .map(|w| w.users)
            .sum::<u64>()
            .saturating_sub(placed);
        if rest > 0
            && let Some(plan) = self
                .plans
                .iter()
                .find(|p| p.drive != Drive::Targets && p.ended.is_none())
        {
            let split =
                aiotest_core::weights::split_by_weight(rest, &plan.weights).unwrap_or_default();
            for (t, n) in plan.types.iter().zip(split) {
                add(t, n);
            }
        }
        out
    }

    fn workers(&self) -> Vec<WorkerView> {
        self.workers
            .iter()
            .map(|(id, w)| WorkerView {
                id: id.clone(),
                state: if w.missing {
                    RunnerState::Missing
                } else {
                    w.state
                },
                users: if w.missing { 0 } else { w.users },
            })
            .collect()
    }

    fn counts(&self) -> TaskCounts {
        self.counts
    }

    async fn stop(&mut self, quit: bool, grace: Duration, mut abort: Abort<'_>) {
        self.accepting = false;
        self.send(Out::Announce(Message::Announce { accepting: false }));
        let mut stop = if grace.is_zero() {
            Message::Abort
        } else if quit || self.dist.quit_workers_at_end {
            Message::Quit
        } else {
            Message::Stop
        };
        let now = Instant::now();
        let mut deadline = now + grace + Duration::from_secs(5);
        let mut gave_up = false;
        let mut next_send = now;
        let mut aborted = false;
        loop {
            let now = Instant::now();
            self.drain(now);
            if now >= next_send {
                next_send = now + Duration::from_millis(200);
                self.broadcast(stop.clone());
            }
            // A worker MISSING while Redis fails is unreachable, not gone: wait for it too.
            let redis_failing = self.health.failing();
            let pending: Vec<String> = self
                .workers
                .iter()
                .filter(|(_, w)| w.compatible && !w.final_seen && (!w.missing || redis_failing))
                .map(|(id, _)| id.clone())
                .collect();
            if pending.is_empty() {
                break;
            }
            // Redis may come back while the workers still run (their master timeout):
            // then their stop and final flushes get through. Past that they stop on their
            // own and nothing more can come.
            // A quit does not wait for Redis, nor does a run that Redis already failed for
            // its whole --redis-timeout.
            let outage_limit =
                (self.dist.master_timeout + Duration::from_secs(2)).min(self.dist.redis_timeout);
            if !gave_up
                && self.health.failing()
                && (quit || self.health.since_ok(now) > outage_limit)
            {
                gave_up = true;
                tracing::warn!(
                    "Redis is unreachable: not waiting any longer for the workers' final flushes"
                );
                deadline = deadline.min(now);
            }
            if now >= deadline {
                break;
            }
            tokio::select! {
                () = &mut abort, if !aborted => {
                    // Stop at once: workers cancel their users; their final flushes are
                    // awaited a little longer, never a whole grace period.
                    aborted = true;
                    stop = Message::Abort;
                    next_send = Instant::now();
                    deadline = deadline.min(Instant::now() + Duration::from_secs(2));
                }
                () = self.arrived.notified() => {}
                () = tokio::time::sleep_until(next_send.min(deadline)) => {}
            }
        }
        // Every worker that took part and sent no final flush, MISSING ones too: their
        // metrics from their last report on are missing.
        self.missing_flushes = self
            .workers
            .iter()
            .filter(|(_, w)| w.compatible && !w.final_seen)
            .map(|(id, _)| id.clone())
            .collect();
        if !self.missing_flushes.is_empty() {
            tracing::debug!(pending = ?self.missing_flushes, "workers sent no final flush");
        }
    }

    async fn finish(&mut self) -> Finish {
        self.outbox = None;
        if let Some(io) = self.io.take() {
            // The outbox is closed: the task ends once what it holds is sent, or gives up.
            if tokio::time::timeout(Duration::from_secs(2), io)
                .await
                .is_err()
            {
                tracing::debug!("the I/O task did not finish in time");
            }
        }
        self.subscriptions.clear();
        let cleanup = async {
            let mut keys = vec![
                self.keys.plan(),
                self.keys.metrics_stream(),
                self.keys.worker_ordinals(),
            ];
            keys.extend(self.clean_up.iter().cloned());
            let _ = self.redis.del(&keys).await;
            if let Some(l) = self.lock.take() {
                let _ = l.release().await;
            }
        };
        if tokio::time::timeout(Duration::from_secs(2), cleanup)
            .await
            .is_err()
        {
            tracing::warn!("could not clean up in Redis; the keys expire on their own");
        }
        let missing_flushes = std::mem::take(&mut self.missing_flushes);
        Finish {
            missing_workers: self.ever_missing.iter().cloned().collect(),
            missing_since_us: missing_flushes
                .iter()
                .map(|id| {
                    (
                        id.clone(),
                        self.workers.get(id).and_then(|w| w.reported_to_us),
                    )
                })
                .collect(),
            missing_flushes,
            notes: self
                .lost
                .iter()
                .map(|(scenario, worker, n)| {
                    format!(
                        "{n} iterations of scenario {scenario} due on worker {worker} before its \
                         share moved to the others never reported back (run unrecorded, or \
                         never run): counted as dropped."
                    )
                })
                .collect(),
        }
    }
}

/// Runs a distributed test's master: the engine with users on workers.
pub struct MasterRunner {
    runner: Runner,
    dist: DistributedConfig,
    redis: Redis,
    plan: Option<Vec<u8>>,
    clean_up: Vec<String>,
}

impl MasterRunner {
    /// A master for `types` (their names and weights; workers register the same types)
    /// following `shape`.
    pub fn new(
        types: Vec<UserType>,
        shape: Box<dyn LoadUserShape>,
        hooks: Hooks,
        config: RunConfig,
        dist: DistributedConfig,
        redis: Redis,
        exporter: Option<Arc<PrometheusExporter>>,
    ) -> Result<Self, RunError> {
        let scenarios = single_scenario(types, shape, config.stop_timeout)?;
        Self::scenarios(scenarios, hooks, config, dist, redis, exporter)
    }

    /// A master for a test of several scenarios; workers have the same scenarios (by
    /// name) and run their parts.
    pub fn scenarios(
        scenarios: Vec<Scenario>,
        hooks: Hooks,
        config: RunConfig,
        dist: DistributedConfig,
        redis: Redis,
        exporter: Option<Arc<PrometheusExporter>>,
    ) -> Result<Self, RunError> {
        dist.validate()?;
        Ok(MasterRunner {
            runner: Runner::new(Role::Master, scenarios, hooks, config, exporter)?,
            dist,
            redis,
            plan: None,
            clean_up: Vec::new(),
        })
    }

    /// What workers built from a plan run (see `WorkerRunner::from_plan`): stored with
    /// this master's instance, so only workers that join it read it.
    pub fn plan(mut self, plan: Vec<u8>) -> Self {
        self.plan = Some(plan);
        self
    }

    /// Redis keys the plan's users make (a data file's row counter, say): deleted with
    /// the instance's own when the run ends.
    pub fn clean_up(mut self, keys: Vec<String>) -> Self {
        self.clean_up.extend(keys);
        self
    }

    /// Adds an output; it sees the intervals merged from every worker.
    pub fn output(mut self, output: impl Output + 'static) -> Self {
        self.runner.add_output(Box::new(output));
        self
    }

    /// A handle to control and observe the whole run.
    pub fn handle(&self) -> RunnerHandle {
        self.runner.core.handle.clone()
    }

    /// Runs the whole distributed test: the lock, the workers, setup, the run, their
    /// final flushes, teardown, the summary.
    pub async fn run(mut self) -> Result<RunReport, RunError> {
        let mut placement = WorkersPlacement::new(
            &self.runner.scenarios,
            self.dist.clone(),
            self.redis.clone(),
            self.plan.take(),
        );
        placement.clean_up = std::mem::take(&mut self.clean_up);
        self.runner.run(placement).await
    }
}
