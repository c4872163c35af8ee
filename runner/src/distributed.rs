//! Distributed runs: one master and many workers meeting in Redis.
//!
//! The master holds the run's lock (a second master of the same run id is refused), waits
//! for the expected workers, runs setup once and ships its data, turns each shape tick into
//! absolute per-worker, per-type user counts ([`split_over_workers`]), and merges the
//! workers' interval snapshots exactly. Heartbeats go both ways every second; a worker
//! silent for the liveness timeout is MISSING and its users go to the others; a worker that
//! comes back rejoins. Commands are absolute and repeated every heartbeat, so a lost
//! pub/sub message is harmless. On stop, the master waits for every live worker's final
//! flush before the summary.
//!
//! A worker runs what its master says; when the master is silent for too long it stops its
//! users (flushing their metrics) and waits for a master again, or exits.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aiotest_coordinator::wire::{ChannelType, Keys, Message, NodeType};
use aiotest_coordinator::{CoordError, DistributedCoordinator, LockError, Redis, RedisLock};
use aiotest_core::clock::RunClock;
use aiotest_core::lifecycle::{Hooks, LifecycleError, Phase, SetupOutcome, teardown_runs};
use aiotest_core::shape::{LoadUserShape, validate_spawn_rate, validate_users};
use aiotest_core::state::{Role, RunnerState};
use aiotest_core::user::UserType;
use aiotest_core::weights::split_over_workers;
use aiotest_metrics::{MetricsCollector, MetricsSink, RequestMetricsEvent, Snapshot};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::local::{Command, PublishedState, Shared, Sinks, lock, now_us, run_setup, run_teardown};
use crate::manager::UserManager;
use crate::user_loop::{UserEnv, UserStats};
use crate::{RunConfig, RunError, RunReport, RunnerHandle, StopReason, WorkerView};

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
        if !(1..=MAX_WORKERS).contains(&self.expect_workers) {
            return invalid(
                "expected workers",
                format!("{} is not between 1 and {MAX_WORKERS}", self.expect_workers),
            );
        }
        Ok(())
    }
}

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
}

type Workers = Arc<Mutex<BTreeMap<String, WorkerInfo>>>;

/// Runs a distributed test's master.
pub struct MasterRunner {
    types: Vec<UserType>,
    shape: Box<dyn LoadUserShape>,
    hooks: Hooks,
    config: RunConfig,
    dist: DistributedConfig,
    redis: Redis,
    states: PublishedState,
    commands: mpsc::Receiver<Command>,
    handle: RunnerHandle,
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
        exporter: Option<Arc<aiotest_metrics::PrometheusExporter>>,
    ) -> Result<Self, RunError> {
        if types.is_empty() {
            return Err(RunError::NoUserTypes);
        }
        config.validate()?;
        dist.validate()?;
        let (handle, commands, states) = RunnerHandle::create(exporter, Role::Master);
        Ok(MasterRunner {
            types,
            shape,
            hooks,
            config,
            dist,
            redis,
            states,
            commands,
            handle,
        })
    }

    /// A handle to control and observe the whole run.
    pub fn handle(&self) -> RunnerHandle {
        self.handle.clone()
    }

    /// Runs the whole distributed test; see the [module docs](self).
    pub async fn run(mut self) -> Result<RunReport, RunError> {
        let keys = Keys::new(&self.dist.run_id);
        let run_lock =
            RedisLock::with_lock(&self.redis, &keys, "master", self.dist.lock_timeout).await?;
        let coord = DistributedCoordinator::new(
            self.redis.clone(),
            &self.dist.run_id,
            "master",
            NodeType::Master,
        );
        let workers: Workers = Arc::default();
        let names: Vec<String> = self.types.iter().map(|t| t.name().to_owned()).collect();

        let w = Arc::clone(&workers);
        let _beats = coord
            .subscribe(ChannelType::Heartbeat, move |env| {
                if let Message::Heartbeat {
                    state,
                    users,
                    has_setup,
                } = env.message
                    && let Some(info) = lock(&w).get_mut(&env.sender)
                {
                    info.last_seen = Instant::now();
                    info.state = state;
                    info.users = users;
                    info.has_setup = has_setup;
                }
            })
            .await?;
        let w = Arc::clone(&workers);
        let shared = Arc::clone(self.handle.shared());
        let wanted = names.clone();
        let _metrics = coord
            .subscribe(ChannelType::RequestMetrics, move |env| match env.message {
                Message::Hello { user_types } => {
                    let missing: Vec<&String> =
                        wanted.iter().filter(|t| !user_types.contains(t)).collect();
                    if !missing.is_empty() {
                        tracing::error!(
                            worker = env.sender,
                            ?missing,
                            "worker lacks user types; it gets no users"
                        );
                    }
                    lock(&w).insert(
                        env.sender.clone(),
                        WorkerInfo {
                            last_seen: Instant::now(),
                            state: RunnerState::Ready,
                            users: 0,
                            has_setup: false,
                            missing: false,
                            final_seen: false,
                            last_batch: None,
                            compatible: missing.is_empty(),
                        },
                    );
                }
                Message::Metrics {
                    batch,
                    snapshot,
                    last,
                } => {
                    if let Some(info) = lock(&w).get_mut(&env.sender) {
                        if info.last_batch.is_some_and(|b| b + 1 != batch) {
                            tracing::warn!(worker = env.sender, batch, "metrics batch gap");
                        }
                        info.last_batch = Some(batch);
                        info.final_seen |= last;
                    }
                    let mut sinks = Sinks {
                        live: &shared.live,
                        exporter: shared.exporter.as_deref(),
                    };
                    sinks.accept(snapshot);
                }
                _ => {}
            })
            .await?;

        // Wait for the expected workers, announcing this master to all of them: a worker
        // that lost its previous master says hello again when it hears one.
        let deadline = Instant::now() + self.dist.wait_timeout;
        let mut next_announce = Instant::now();
        loop {
            let ready = lock(&workers).values().filter(|w| w.compatible).count();
            if ready >= self.dist.expect_workers {
                break;
            }
            if Instant::now() >= next_announce {
                next_announce = Instant::now() + self.dist.heartbeat_interval;
                let hb = Message::Heartbeat {
                    state: RunnerState::Ready,
                    users: 0,
                    has_setup: true,
                };
                coord.publish(ChannelType::Command, hb, None).await?;
            }
            if Instant::now() >= deadline {
                return Err(RunError::NotEnoughWorkers {
                    got: ready,
                    want: self.dist.expect_workers,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        self.states.enter(RunnerState::Starting);
        // Setup's own requests are counted: they merge into the run's totals.
        let setup_metrics =
            MetricsCollector::new(self.config.metrics.clone(), RequestMetricsEvent::new())?;
        let (setup, setup_error) = run_setup(&self.hooks, &self.config, &setup_metrics).await;
        {
            let shared = Arc::clone(self.handle.shared());
            setup_metrics.flush_to(
                &mut Sinks {
                    live: &shared.live,
                    exporter: shared.exporter.as_deref(),
                },
                now_us(),
            );
        }
        if let SetupOutcome::Failed = setup {
            self.states.enter(RunnerState::Stopping);
            self.states.enter(RunnerState::Ready);
            let _ = run_lock.release().await;
            return Err(RunError::Setup(setup_error.unwrap_or(
                LifecycleError::Timeout {
                    phase: Phase::Setup,
                    after: self.hooks.setup_timeout(),
                },
            )));
        }
        let setup_json = setup.data().map(|d| d.json().to_vec());
        coord
            .publish(
                ChannelType::Command,
                Message::SetupData {
                    json: setup_json.clone(),
                },
                None,
            )
            .await?;

        let mut clock = RunClock::new();
        clock.start(Instant::now().into_std());
        let reason = self
            .control_loop(&coord, &workers, &mut clock, &setup_json)
            .await?;
        let run_time = clock.run_time(Instant::now().into_std());
        if self.states.can_stop() {
            self.states.enter(RunnerState::Stopping);
        }

        // Stop every worker and wait for each live one's final flush.
        for info in lock(&workers).values_mut() {
            info.final_seen = false;
        }
        let stop = if reason == StopReason::Quit || self.dist.quit_workers_at_end {
            Message::Quit
        } else {
            Message::Stop
        };
        let deadline = Instant::now() + self.config.stop_timeout + Duration::from_secs(5);
        loop {
            coord
                .publish(ChannelType::Command, stop.clone(), None)
                .await?;
            let pending: Vec<String> = lock(&workers)
                .iter()
                .filter(|(_, w)| w.compatible && !w.missing && !w.final_seen)
                .map(|(id, _)| id.clone())
                .collect();
            if pending.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                tracing::error!(
                    ?pending,
                    "workers sent no final flush; their last records are missing"
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let teardown = if teardown_runs(&self.hooks, &setup, self.config.no_teardown) {
            Some(run_teardown(&self.hooks, setup.data().cloned()).await)
        } else {
            None
        };
        let snapshot = lock(&self.handle.shared().live).total().clone();
        let missing_workers = lock(&workers)
            .iter()
            .filter(|(_, w)| w.missing)
            .map(|(id, _)| id.clone())
            .collect();
        self.states.enter(if reason == StopReason::Quit {
            RunnerState::Quitting
        } else {
            RunnerState::Ready
        });
        let _ = run_lock.release().await;
        Ok(RunReport {
            snapshot,
            run_time,
            reason,
            setup,
            teardown,
            task_errors: 0,
            panics: 0,
            tasks: 0,
            cancelled_users: 0,
            missing_workers,
        })
    }

    async fn control_loop(
        &mut self,
        coord: &DistributedCoordinator,
        workers: &Workers,
        clock: &mut RunClock,
        setup_json: &Option<Vec<u8>>,
    ) -> Result<StopReason, RunError> {
        let beat = self.dist.heartbeat_interval;
        let shared = Arc::clone(self.handle.shared());
        let mut next_beat = Instant::now();
        let mut next_poll = Instant::now();
        let mut target: Option<(u32, f64)> = None;
        let mut running = false;
        loop {
            let paused = self.states.get_current_state() == RunnerState::Paused;
            let wake = if paused {
                next_beat
            } else {
                next_beat.min(next_poll)
            };
            tokio::select! {
                biased;
                cmd = self.commands.recv() => {
                    let now = Instant::now();
                    match cmd {
                        Some(Command::Pause) if self.states.can_pause() => {
                            coord.publish(ChannelType::Command, Message::Pause, None).await?;
                            clock.pause(now.into_std());
                            self.states.enter(RunnerState::Paused);
                        }
                        Some(Command::Resume) if self.states.can_resume() => {
                            coord.publish(ChannelType::Command, Message::Resume, None).await?;
                            clock.resume(now.into_std());
                            self.states.enter(RunnerState::Running);
                            next_poll = now;
                        }
                        Some(Command::Stop | Command::Abort) => return Ok(StopReason::Stopped),
                        Some(Command::Quit) | None => return Ok(StopReason::Quit),
                        Some(Command::SetUsers(n)) if validate_users(n.into()).is_ok() => {
                            let rate = target.map_or(f64::INFINITY, |(_, r)| r);
                            target = Some((n, rate));
                            dispatch(&self.types, &shared, coord, workers, (n, rate)).await?;
                        }
                        Some(_) => {}
                    }
                }
                () = tokio::time::sleep_until(wake) => {}
            }
            let now = Instant::now();
            if now >= next_beat {
                next_beat = now + beat;
                let mut changed = false;
                let ids: Vec<(String, bool)> = {
                    let mut map = lock(workers);
                    for w in map.values_mut() {
                        let silent =
                            now.saturating_duration_since(w.last_seen) > self.dist.liveness_timeout;
                        if silent != w.missing {
                            changed = true;
                            if silent {
                                tracing::warn!(
                                    "a worker went silent: MISSING; its users move to the others"
                                );
                            }
                        }
                        w.missing = silent;
                    }
                    map.iter()
                        .filter(|(_, w)| w.compatible && !w.missing)
                        .map(|(id, w)| (id.clone(), w.has_setup))
                        .collect()
                };
                publish_workers(&shared, workers);
                // Broadcast too: a worker this master counts as MISSING gets no heartbeat of
                // its own, and needs one to rejoin.
                let announce = Message::Heartbeat {
                    state: self.states.get_current_state(),
                    users: 0,
                    has_setup: true,
                };
                coord.publish(ChannelType::Command, announce, None).await?;
                for (id, has_setup) in &ids {
                    let hb = Message::Heartbeat {
                        state: self.states.get_current_state(),
                        users: 0,
                        has_setup: true,
                    };
                    coord.publish(ChannelType::Heartbeat, hb, Some(id)).await?;
                    if !has_setup {
                        let m = Message::SetupData {
                            json: setup_json.clone(),
                        };
                        coord.publish(ChannelType::Command, m, Some(id)).await?;
                    }
                }
                // Absolute targets, repeated: a lost command, a new or returning worker,
                // or a missing one all converge here.
                if let Some(t) = target
                    && !paused
                {
                    dispatch(&self.types, &shared, coord, workers, t).await?;
                }
                if changed && paused {
                    coord
                        .publish(ChannelType::Command, Message::Pause, None)
                        .await?;
                }
            }
            if paused {
                continue;
            }
            if now >= next_poll {
                next_poll = now + self.config.shape_poll;
                match self.shape.tick(clock.run_time(now.into_std())) {
                    None => return Ok(StopReason::ShapeEnded),
                    Some((users, rate)) => {
                        validate_spawn_rate(rate)?;
                        validate_users(users.into())?;
                        if target != Some((users, rate)) {
                            target = Some((users, rate));
                            dispatch(&self.types, &shared, coord, workers, (users, rate)).await?;
                        }
                    }
                }
            }
            if !running {
                running = true;
                self.states.enter(RunnerState::Running);
            }
        }
    }
}

/// Sends each live worker its absolute per-type counts.
async fn dispatch(
    types: &[UserType],
    shared: &Shared,
    coord: &DistributedCoordinator,
    workers: &Workers,
    target: (u32, f64),
) -> Result<(), CoordError> {
    let live: Vec<String> = lock(workers)
        .iter()
        .filter(|(_, w)| w.compatible && !w.missing)
        .map(|(id, _)| id.clone())
        .collect();
    if live.is_empty() {
        return Ok(());
    }
    let weights: Vec<u32> = types.iter().map(UserType::weight).collect();
    let split = split_over_workers(u64::from(target.0), &weights, live.len()).unwrap_or_default();
    // Every worker moves at its share of the rate, so the whole ramp keeps its rate.
    let rate = target.1 / live.len() as f64;
    let mut by_type = vec![0u64; types.len()];
    for (id, counts) in live.iter().zip(&split) {
        let users = types
            .iter()
            .zip(counts)
            .map(|(t, n)| (t.name().to_owned(), u32::try_from(*n).unwrap_or(u32::MAX)))
            .collect();
        for (sum, n) in by_type.iter_mut().zip(counts) {
            *sum += n;
        }
        coord
            .publish(
                ChannelType::Command,
                Message::Spawn {
                    users,
                    spawn_rate: rate,
                },
                Some(id),
            )
            .await?;
    }
    *lock(&shared.users) = types
        .iter()
        .map(|t| t.name().to_owned())
        .zip(by_type)
        .collect();
    Ok(())
}

/// Publishes the workers' view (handle, `/api/state`) and the Prometheus gauge.
fn publish_workers(shared: &Shared, workers: &Workers) {
    let views: Vec<WorkerView> = lock(workers)
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
        .collect();
    if let Some(e) = &shared.exporter {
        let mut by_state: Vec<(RunnerState, u64)> = Vec::new();
        for v in &views {
            match by_state.iter_mut().find(|(s, _)| *s == v.state) {
                Some((_, n)) => *n += 1,
                None => by_state.push((v.state, 1)),
            }
        }
        e.set_workers(&by_state);
    }
    *lock(&shared.workers) = views;
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
}

/// Runs a distributed test's worker: it does what its master says.
pub struct WorkerRunner {
    types: Vec<UserType>,
    hooks: Hooks,
    config: RunConfig,
    dist: DistributedConfig,
    redis: Redis,
    node_id: String,
    states: PublishedState,
    handle: RunnerHandle,
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
        if types.is_empty() {
            return Err(RunError::NoUserTypes);
        }
        config.validate()?;
        dist.validate()?;
        let (handle, _commands, states) = RunnerHandle::create(None, Role::Worker);
        Ok(WorkerRunner {
            types,
            hooks,
            config,
            dist,
            redis,
            node_id: node_id.to_owned(),
            states,
            handle,
        })
    }

    /// A handle to observe the worker (its commands come from the master).
    pub fn handle(&self) -> RunnerHandle {
        self.handle.clone()
    }

    /// Runs until the master says quit (or, with `exit_on_master_loss`, until it is lost).
    pub async fn run(mut self) -> Result<WorkerReport, RunError> {
        let coord = DistributedCoordinator::new(
            self.redis.clone(),
            &self.dist.run_id,
            &self.node_id,
            NodeType::Worker,
        );
        // Commands are absolute and repeated: when the queue is full, dropping one is safe.
        let (tx, mut rx) = mpsc::channel::<Message>(256);
        let (seen_tx, seen_rx) = watch::channel(Instant::now());
        let seen_tx = Arc::new(seen_tx);
        let seen = Arc::clone(&seen_tx);
        let _cmds = coord
            .subscribe(ChannelType::Command, move |env| {
                // The master's broadcast heartbeat: how a worker that lost its master
                // learns that a (new) master is there, before it knows this worker.
                if matches!(env.message, Message::Heartbeat { .. }) {
                    seen.send_replace(Instant::now());
                } else {
                    let _ = tx.try_send(env.message);
                }
            })
            .await?;
        let _beats = coord
            .subscribe(ChannelType::Heartbeat, move |_env| {
                seen_tx.send_replace(Instant::now());
            })
            .await?;
        let names: Vec<String> = self.types.iter().map(|t| t.name().to_owned()).collect();
        coord
            .publish(
                ChannelType::RequestMetrics,
                Message::Hello {
                    user_types: names.clone(),
                },
                None,
            )
            .await?;
        let collector =
            MetricsCollector::new(self.config.metrics.clone(), RequestMetricsEvent::new())?;
        let stats = Arc::new(UserStats::default());
        let mut manager: Option<UserManager> = None;
        let mut report = WorkerReport::default();
        let beat = self.dist.heartbeat_interval;
        let flush_every = self.config.metrics.flush_interval;
        let mut next_beat = Instant::now();
        let mut next_flush = Instant::now() + flush_every;
        let mut due: Option<Instant> = None;
        loop {
            let mut wake = next_beat.min(next_flush);
            if let Some(d) = due {
                wake = wake.min(d);
            }
            let message = tokio::select! {
                m = rx.recv() => m,
                () = tokio::time::sleep_until(wake) => None,
            };
            let now = Instant::now();
            let mut quit = false;
            match message {
                Some(Message::SetupData { json }) if manager.is_none() => {
                    let setup = match json.as_deref().map(|j| self.hooks.decode_setup_data(j)) {
                        Some(Ok(d)) => Some(d),
                        Some(Err(e)) => {
                            tracing::error!("setup data from the master: {e}");
                            continue;
                        }
                        None => None,
                    };
                    let env = Arc::new(UserEnv {
                        collector: collector.clone(),
                        host: self.config.host.as_deref().map(Arc::from),
                        setup,
                        stats: Arc::clone(&stats),
                    });
                    manager = Some(UserManager::new(self.types.clone(), env)?);
                }
                Some(Message::Spawn { users, spawn_rate }) => {
                    if let Some(m) = manager.as_mut()
                        && !matches!(
                            self.states.get_current_state(),
                            RunnerState::Paused | RunnerState::Missing
                        )
                    {
                        let targets: Vec<u32> = names
                            .iter()
                            .map(|n| users.iter().find(|(t, _)| t == n).map_or(0, |(_, c)| *c))
                            .collect();
                        m.manage_users_by_type(&targets, spawn_rate, now);
                        due = Some(now);
                        if self.states.can_start() {
                            self.states.enter(RunnerState::Starting);
                            self.states.enter(RunnerState::Running);
                        }
                    }
                }
                Some(Message::Pause) => {
                    if let Some(m) = manager.as_mut()
                        && self.states.can_pause()
                    {
                        m.pause_all_users(now);
                        self.states.enter(RunnerState::Paused);
                    }
                }
                Some(Message::Resume) => {
                    if let Some(m) = manager.as_mut()
                        && self.states.can_resume()
                    {
                        m.resume_all_users(now);
                        self.states.enter(RunnerState::Running);
                        due = Some(now);
                    }
                }
                // The master repeats Stop until it has every final flush: an idle worker
                // answers with an empty final flush each time, which merges as nothing.
                Some(Message::Stop)
                    if self.states.can_stop()
                        || self.states.get_current_state() == RunnerState::Ready =>
                {
                    self.stop_and_flush(&coord, &collector, manager.as_mut(), &mut report, true)
                        .await?;
                }
                Some(Message::Quit) => quit = true,
                _ => {}
            }
            if let Some(m) = manager.as_mut() {
                due = m.step(now);
                m.cleanup_inactive_users();
            }
            if now >= next_flush {
                next_flush = now + flush_every;
                self.flush(&coord, &collector, &mut report, false).await?;
            }
            if now >= next_beat {
                next_beat = now + beat;
                let hb = Message::Heartbeat {
                    state: self.states.get_current_state(),
                    users: manager.as_ref().map_or(0, |m| m.active_user_count() as u64),
                    has_setup: manager.is_some(),
                };
                coord.publish(ChannelType::Heartbeat, hb, None).await?;
                // The master's silence: stop users (their metrics still flush) and wait.
                let silent =
                    now.saturating_duration_since(*seen_rx.borrow()) > self.dist.master_timeout;
                let state = self.states.get_current_state();
                if silent && state != RunnerState::Missing {
                    tracing::warn!(worker = self.node_id, "master silent; stopping users");
                    report.master_losses += 1;
                    self.stop_and_flush(&coord, &collector, manager.as_mut(), &mut report, true)
                        .await?;
                    self.states.enter(RunnerState::Missing);
                    if self.dist.exit_on_master_loss {
                        quit = true;
                    }
                } else if !silent && state == RunnerState::Missing {
                    // A master is back: rejoin, idle, with the same setup data.
                    self.states.enter(RunnerState::Ready);
                    coord
                        .publish(
                            ChannelType::RequestMetrics,
                            Message::Hello {
                                user_types: names.clone(),
                            },
                            None,
                        )
                        .await?;
                }
            }
            if quit {
                self.stop_and_flush(&coord, &collector, manager.as_mut(), &mut report, true)
                    .await?;
                self.states.enter(RunnerState::Quitting);
                return Ok(report);
            }
        }
    }

    async fn stop_and_flush(
        &mut self,
        coord: &DistributedCoordinator,
        collector: &MetricsCollector,
        manager: Option<&mut UserManager>,
        report: &mut WorkerReport,
        last: bool,
    ) -> Result<(), RunError> {
        if let Some(m) = manager {
            if self.states.can_stop() {
                self.states.enter(RunnerState::Stopping);
            }
            report.cancelled_users += m.stop_all_users(self.config.stop_timeout).await;
            if self.states.get_current_state() == RunnerState::Stopping {
                self.states.enter(RunnerState::Ready);
            }
        }
        self.flush(coord, collector, report, last).await
    }

    /// Closes the interval and sends every pending snapshot; with `last`, marks the final one.
    async fn flush(
        &mut self,
        coord: &DistributedCoordinator,
        collector: &MetricsCollector,
        report: &mut WorkerReport,
        last: bool,
    ) -> Result<(), RunError> {
        collector.close_interval(now_us());
        let mut pending = collector.take_pending();
        if last && pending.is_empty() {
            pending.push(Snapshot::new());
        }
        let n = pending.len();
        for (i, snapshot) in pending.into_iter().enumerate() {
            report.requests += snapshot.total().requests;
            let m = Message::Metrics {
                batch: report.batches,
                snapshot,
                last: last && i + 1 == n,
            };
            coord.publish(ChannelType::RequestMetrics, m, None).await?;
            report.batches += 1;
        }
        Ok(())
    }
}

impl From<LockError> for RunError {
    fn from(e: LockError) -> Self {
        match e {
            LockError::Held { .. } => RunError::MasterExists,
            other => RunError::Coordination(other.to_string()),
        }
    }
}

impl From<CoordError> for RunError {
    fn from(e: CoordError) -> Self {
        RunError::Coordination(e.to_string())
    }
}
