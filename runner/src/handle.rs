//! What every runner shares with the outside: the [`RunnerHandle`] that controls and
//! observes a run, the commands it sends, the published state machine, and the figures
//! the engine keeps for everyone to read (live view, interval series, final summary).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use aiotest_core::state::{Role, RunnerState, StateManager};
use aiotest_metrics::{LiveStats, LiveView, PrometheusExporter, Snapshot};
use tokio::sync::{mpsc, watch};

use crate::report::StopReason;
use crate::series::{Series, SeriesPoint};
use crate::summary::{RunMeta, Summary};
use crate::threshold::ThresholdResult;

/// What a [`RunnerHandle`] (or a master, through a worker's bridge) asks of a run.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Command {
    Pause,
    Resume,
    Stop,
    Quit,
    Abort,
    SetUsers(u32),
    /// What a worker's master asks of scenario `i` (its index in the test).
    Scenario(usize, ScenarioCommand),
    /// End the run for this reason (a worker whose master stopped it or went silent).
    End(StopReason),
}

impl Command {
    /// How this command ends a run, in every phase alike (waiting for workers or for a
    /// master, setup, the run itself): `None` for one that does not end it. A queue that
    /// closed (`None`) is a quit.
    pub(crate) fn ending(c: Option<&Command>) -> Option<StopReason> {
        match c {
            None | Some(Command::Quit) => Some(StopReason::Quit),
            Some(Command::Stop) => Some(StopReason::Stopped),
            Some(Command::Abort) => Some(StopReason::Aborted),
            Some(Command::End(reason)) => Some(*reason),
            Some(_) => None,
        }
    }
}

/// What a master asks of one scenario on a worker.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ScenarioCommand {
    /// Absolute users per user type (in the scenario's types' order), at a rate.
    TypeTargets { targets: Vec<u32>, rate: f64 },
    /// Start (or re-share) an iteration or arrival-rate scenario with this part.
    Start(crate::scenarios::Part),
    /// End it: users finish their iteration within this graceful stop period.
    End(std::time::Duration),
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

/// The figures a run publishes as it goes; read by handles, the control server and
/// outputs. Every lock here is held only to copy or swap small values, never across an
/// await.
pub(crate) struct Shared {
    pub(crate) live: Mutex<LiveView>,
    pub(crate) users: Mutex<Vec<(String, u64)>>,
    pub(crate) workers: Mutex<Vec<WorkerView>>,
    pub(crate) series: Mutex<Series>,
    pub(crate) summary: Mutex<Option<Summary>>,
    /// What the run is (command, start and end, scenarios), once it started.
    pub(crate) meta: Mutex<Option<RunMeta>>,
    /// Threshold verdicts as they stand, published by the thresholds output.
    pub(crate) thresholds: Mutex<Vec<ThresholdResult>>,
    /// Scenarios whose users are all done (a worker reports them to its master).
    pub(crate) scenarios_done: Mutex<Vec<String>>,
    pub(crate) exporter: Option<Arc<PrometheusExporter>>,
    /// Set by [`RunnerHandle::quit`]: also after the run ended (`--linger`).
    pub(crate) quit: watch::Sender<bool>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Held only to copy or merge small values, never across an await.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
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

    /// The current state.
    pub(crate) fn state(&self) -> RunnerState {
        self.states.get_current_state()
    }
}

impl std::ops::Deref for PublishedState {
    type Target = StateManager;

    fn deref(&self) -> &StateManager {
        &self.states
    }
}

/// What a runner keeps for the whole of its life, across the runs of its engine (a worker
/// joins one run after another): its command queue, published state and figures.
pub(crate) struct RunnerCore {
    pub(crate) role: Role,
    pub(crate) states: PublishedState,
    pub(crate) commands: mpsc::Receiver<Command>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) handle: RunnerHandle,
}

impl RunnerCore {
    pub(crate) fn new(role: Role, exporter: Option<Arc<PrometheusExporter>>) -> Self {
        let (state_tx, state_rx) = watch::channel(RunnerState::Ready);
        // Commands are rare and small; a handful in flight is plenty.
        let (cmd_tx, commands) = mpsc::channel(16);
        let shared = Arc::new(Shared {
            live: Mutex::new(LiveView::default()),
            users: Mutex::new(Vec::new()),
            workers: Mutex::new(Vec::new()),
            series: Mutex::new(Series::default()),
            summary: Mutex::new(None),
            meta: Mutex::new(None),
            thresholds: Mutex::new(Vec::new()),
            scenarios_done: Mutex::new(Vec::new()),
            exporter: exporter.clone(),
            quit: watch::channel(false).0,
        });
        let handle = RunnerHandle {
            commands: cmd_tx,
            state: state_rx,
            shared: Arc::clone(&shared),
        };
        RunnerCore {
            role,
            states: PublishedState {
                states: StateManager::new(role),
                tx: state_tx,
                exporter,
            },
            commands,
            shared,
            handle,
        }
    }
}

/// Controls and observes a running runner. Cheap to clone.
#[derive(Clone)]
pub struct RunnerHandle {
    commands: mpsc::Sender<Command>,
    state: watch::Receiver<RunnerState>,
    shared: Arc<Shared>,
}

impl RunnerHandle {
    async fn send(&self, c: Command) {
        // A closed channel means the run is over: there is nothing left to control.
        let _ = self.commands.send(c).await;
    }

    /// Sends `c` without waiting; false when the queue is full or the run is over.
    pub(crate) fn try_send(&self, c: Command) -> bool {
        self.commands.try_send(c).is_ok()
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

    /// Like stop, and the runner ends in QUITTING. After the run has ended (a program
    /// that lingers to serve the final figures), it makes
    /// [`quit_requested`](Self::quit_requested) return.
    pub async fn quit(&self) {
        self.shared.quit.send_replace(true);
        self.send(Command::Quit).await;
    }

    /// Stops at once: no graceful stop period (a second Ctrl-C). Requests in flight are
    /// counted as interrupted; everything recorded so far is in the summary.
    pub async fn abort(&self) {
        self.send(Command::Abort).await;
    }

    /// Overrides the shape's user count until the shape's target changes again.
    pub async fn set_users(&self, users: u32) {
        self.send(Command::SetUsers(users)).await;
    }

    /// Resolves once [`quit`](Self::quit) was called, during or after the run.
    pub async fn quit_requested(&self) {
        let mut rx = self.shared.quit.subscribe();
        let _ = rx.wait_for(|q| *q).await;
    }

    /// Every request counted so far (as of the last closed interval).
    pub fn total(&self) -> Snapshot {
        lock(&self.shared.live).total().clone()
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

    /// The run's interval series so far (one point per interval, downsampled for long
    /// runs), merged from every worker in a distributed run.
    pub fn series(&self) -> Vec<SeriesPoint> {
        lock(&self.shared.series).points().to_vec()
    }

    /// The final summary, once the run has ended.
    pub fn summary(&self) -> Option<Summary> {
        lock(&self.shared.summary).clone()
    }

    /// What the run is: its command, when it started and ended, its scenarios.
    pub fn meta(&self) -> Option<RunMeta> {
        lock(&self.shared.meta).clone()
    }

    /// Threshold verdicts as they stand (at the last closed interval; final once the run
    /// has ended).
    pub fn thresholds(&self) -> Vec<ThresholdResult> {
        lock(&self.shared.thresholds).clone()
    }

    /// Publishes threshold verdicts for [`thresholds`](Self::thresholds) (the thresholds
    /// output does, at every interval and at the end).
    pub fn publish_thresholds(&self, verdicts: Vec<ThresholdResult>) {
        *lock(&self.shared.thresholds) = verdicts;
    }

    /// Scenarios whose users are all done.
    pub(crate) fn scenarios_done(&self) -> Vec<String> {
        lock(&self.shared.scenarios_done).clone()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_transition_reaches_the_handles_and_the_gauge_and_illegal_ones_change_nothing() {
        let exporter = Arc::new(PrometheusExporter::new());
        for role in [Role::Local, Role::Master, Role::Worker] {
            let mut core = RunnerCore::new(role, Some(Arc::clone(&exporter)));
            core.states.enter(RunnerState::Starting);
            core.states.enter(RunnerState::Running);
            assert_eq!(core.handle.state(), RunnerState::Running, "{role:?}");
            assert!(
                exporter
                    .render()
                    .contains("aiotest_runner_state{state=\"RUNNING\"} 1"),
                "{role:?}: {}",
                exporter.render()
            );
            // Running -> Starting is illegal: logged, nothing published.
            core.states.enter(RunnerState::Starting);
            assert_eq!(core.states.state(), RunnerState::Running);
            assert_eq!(core.handle.state(), RunnerState::Running);
        }
    }
}
