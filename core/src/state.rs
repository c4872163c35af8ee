//! Runner states, the one transition table every runner obeys, and the guards built on it.
//!
//! The table follows AioTest's `RunnerState` with three of its bugs fixed:
//! `quit` really reaches [`RunnerState::Quitting`] (from every state, and it is final),
//! a paused run can be stopped, and [`RunnerState::Missing`] is a real state of a worker
//! (entered when the master loses it, or it loses the master, and left when it rejoins).

use std::fmt;

use serde::{Deserialize, Serialize};

/// The state of a runner: local, master or worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunnerState {
    /// Idle: before the first start, or after a stop has completed.
    Ready,
    /// Setup and the first spawn are under way.
    Starting,
    /// Users are running.
    Running,
    /// Users hold at their next task boundary; the load shape's clock is frozen.
    Paused,
    /// A worker out of contact with its master (workers only).
    Missing,
    /// Users are being stopped (graceful stop period, then cancellation).
    Stopping,
    /// The runner is shutting down for good. Final.
    Quitting,
}

impl RunnerState {
    /// Every state, in declaration order (handy for tables and metrics labels).
    pub const ALL: [RunnerState; 7] = [
        RunnerState::Ready,
        RunnerState::Starting,
        RunnerState::Running,
        RunnerState::Paused,
        RunnerState::Missing,
        RunnerState::Stopping,
        RunnerState::Quitting,
    ];

    /// The upper-case name used on the wire, in logs and in metrics labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            RunnerState::Ready => "READY",
            RunnerState::Starting => "STARTING",
            RunnerState::Running => "RUNNING",
            RunnerState::Paused => "PAUSED",
            RunnerState::Missing => "MISSING",
            RunnerState::Stopping => "STOPPING",
            RunnerState::Quitting => "QUITTING",
        }
    }
}

impl fmt::Display for RunnerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which kind of runner a [`StateManager`] belongs to. Only workers can be MISSING.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A single-process run.
    Local,
    /// The coordinating node of a distributed run.
    Master,
    /// A load-generating node of a distributed run.
    Worker,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Local => "local",
            Role::Master => "master",
            Role::Worker => "worker",
        })
    }
}

/// A refused state change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The transition table has no edge from `from` to `to`.
    #[error("illegal runner state transition from {from} to {to} ({role} runner)")]
    IllegalTransition {
        /// The runner's role.
        role: Role,
        /// The state the runner was in.
        from: RunnerState,
        /// The state that was asked for.
        to: RunnerState,
    },
    /// MISSING was asked of a runner that is not a worker.
    #[error("MISSING is a worker state; a {role} runner cannot enter it")]
    MissingOutsideWorker {
        /// The runner's role.
        role: Role,
    },
}

/// Whether the table allows `from -> to` for a runner of `role`.
///
/// A same-state "transition" is allowed (a no-op), except into MISSING for a non-worker.
pub fn transition_allowed(role: Role, from: RunnerState, to: RunnerState) -> bool {
    use RunnerState::*;
    if to == Missing && role != Role::Worker {
        return false;
    }
    if from == to {
        return true;
    }
    match (from, to) {
        // Quitting is reachable from everywhere and leads nowhere.
        (Quitting, _) => false,
        (_, Quitting) => true,
        (Ready, Starting) => true,
        (Starting, Running | Stopping) => true,
        (Running, Paused | Stopping) => true,
        (Paused, Running | Stopping) => true,
        (Stopping, Ready) => true,
        // A worker loses contact in any live state, and rejoins idle: the master then
        // sends it absolute user counts again.
        (Ready | Starting | Running | Paused | Stopping, Missing) => role == Role::Worker,
        (Missing, Ready) => true,
        _ => false,
    }
}

/// A transition that was carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// The state before.
    pub from: RunnerState,
    /// The state after.
    pub to: RunnerState,
}

impl Transition {
    /// Whether the state actually changed (false for a same-state no-op).
    pub fn changed(&self) -> bool {
        self.from != self.to
    }
}

/// Holds a runner's current state and enforces the transition table.
///
/// ```
/// use aiotest_core::state::{Role, RunnerState, StateManager};
///
/// let mut states = StateManager::new(Role::Local);
/// assert!(states.can_start());
/// states.transition_state(RunnerState::Starting)?;
/// states.transition_state(RunnerState::Running)?;
/// states.transition_state(RunnerState::Paused)?;
/// assert!(states.can_stop(), "a paused run can be stopped");
/// assert!(states.transition_state(RunnerState::Ready).is_err());
/// states.set_quit_state();
/// assert!(states.is_in_quit_state());
/// # Ok::<(), aiotest_core::state::StateError>(())
/// ```
#[derive(Debug, Clone)]
pub struct StateManager {
    role: Role,
    state: RunnerState,
}

impl StateManager {
    /// A manager in [`RunnerState::Ready`].
    pub fn new(role: Role) -> Self {
        StateManager {
            role,
            state: RunnerState::Ready,
        }
    }

    /// The runner's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Moves to `to` if the table allows it; a same-state request is a no-op.
    pub fn transition_state(&mut self, to: RunnerState) -> Result<Transition, StateError> {
        let from = self.state;
        if to == RunnerState::Missing && self.role != Role::Worker {
            return Err(StateError::MissingOutsideWorker { role: self.role });
        }
        if !transition_allowed(self.role, from, to) {
            return Err(StateError::IllegalTransition {
                role: self.role,
                from,
                to,
            });
        }
        self.state = to;
        Ok(Transition { from, to })
    }

    /// Moves to QUITTING, which every state allows. Returns the state left.
    pub fn set_quit_state(&mut self) -> RunnerState {
        std::mem::replace(&mut self.state, RunnerState::Quitting)
    }

    /// Whether the runner is quitting.
    pub fn is_in_quit_state(&self) -> bool {
        self.state == RunnerState::Quitting
    }

    /// The current state.
    pub fn get_current_state(&self) -> RunnerState {
        self.state
    }

    /// A test can start from READY only.
    pub fn can_start(&self) -> bool {
        self.state == RunnerState::Ready
    }

    /// Users are running (not paused, not ramping down).
    pub fn is_running(&self) -> bool {
        self.state == RunnerState::Running
    }

    /// A starting, running or paused test can be stopped.
    pub fn can_stop(&self) -> bool {
        matches!(
            self.state,
            RunnerState::Starting | RunnerState::Running | RunnerState::Paused
        )
    }

    /// Only a running test can be paused.
    pub fn can_pause(&self) -> bool {
        self.state == RunnerState::Running
    }

    /// Only a paused test can be resumed.
    pub fn can_resume(&self) -> bool {
        self.state == RunnerState::Paused
    }
}

#[cfg(test)]
mod tests {
    use super::RunnerState::*;
    use super::*;

    /// The expected table, written out by hand: row = from, column = to, in the order of
    /// `RunnerState::ALL` (Ready Starting Running Paused Missing Stopping Quitting).
    /// `x` allowed, `.` refused, `=` same-state no-op.
    const LOCAL_TABLE: [&str; 7] = [
        "=x....x", // Ready
        ".=x..xx", // Starting
        "..=x.xx", // Running
        "..x=.xx", // Paused
        "x...=.x", // Missing (unreachable for local/master, but its edges are still defined)
        "x....=x", // Stopping
        "......=", // Quitting
    ];
    const WORKER_TABLE: [&str; 7] = [
        "=x..x.x", // Ready
        ".=x.xxx", // Starting
        "..=xxxx", // Running
        "..x=xxx", // Paused
        "x...=.x", // Missing
        "x...x=x", // Stopping
        "......=", // Quitting
    ];

    fn expected(role: Role, from: usize, to: usize) -> bool {
        let table = if role == Role::Worker {
            WORKER_TABLE
        } else {
            LOCAL_TABLE
        };
        let cell = table[from].as_bytes()[to];
        // Non-workers never enter MISSING, not even as a no-op.
        if RunnerState::ALL[to] == Missing && role != Role::Worker {
            return false;
        }
        cell != b'.'
    }

    #[test]
    fn every_pair_of_states_follows_the_table_for_every_role() {
        for role in [Role::Local, Role::Master, Role::Worker] {
            for (i, &from) in RunnerState::ALL.iter().enumerate() {
                for (j, &to) in RunnerState::ALL.iter().enumerate() {
                    let want = expected(role, i, j);
                    assert_eq!(
                        transition_allowed(role, from, to),
                        want,
                        "{role}: {from} -> {to}"
                    );
                    let mut m = StateManager { role, state: from };
                    let got = m.transition_state(to);
                    assert_eq!(got.is_ok(), want, "{role}: {from} -> {to}: {got:?}");
                    let now = m.get_current_state();
                    assert_eq!(now, if want { to } else { from });
                }
            }
        }
    }

    #[test]
    fn quit_is_reachable_from_every_state_and_final() {
        for role in [Role::Local, Role::Master, Role::Worker] {
            for from in RunnerState::ALL {
                let mut m = StateManager { role, state: from };
                assert_eq!(m.set_quit_state(), from);
                assert!(m.is_in_quit_state());
                for to in RunnerState::ALL {
                    if to != Quitting {
                        assert!(m.transition_state(to).is_err(), "{role}: QUITTING -> {to}");
                    }
                }
            }
        }
    }

    #[test]
    fn illegal_transition_is_a_typed_error_naming_both_states() {
        let mut m = StateManager::new(Role::Local);
        let err = m.transition_state(Paused).unwrap_err();
        assert_eq!(
            err,
            StateError::IllegalTransition {
                role: Role::Local,
                from: Ready,
                to: Paused
            }
        );
        assert_eq!(
            err.to_string(),
            "illegal runner state transition from READY to PAUSED (local runner)"
        );
        let err = m.transition_state(Missing).unwrap_err();
        assert_eq!(err, StateError::MissingOutsideWorker { role: Role::Local });
    }

    #[test]
    fn same_state_is_a_no_op() {
        let mut m = StateManager::new(Role::Master);
        let t = m.transition_state(Ready).unwrap();
        assert!(!t.changed());
        m.transition_state(Starting).unwrap();
        assert!(m.transition_state(Starting).is_ok());
    }

    #[test]
    fn guards_per_state() {
        // state, can_start, is_running, can_stop, can_pause, can_resume
        let table = [
            (Ready, true, false, false, false, false),
            (Starting, false, false, true, false, false),
            (Running, false, true, true, true, false),
            (Paused, false, false, true, false, true),
            (Missing, false, false, false, false, false),
            (Stopping, false, false, false, false, false),
            (Quitting, false, false, false, false, false),
        ];
        for (state, start, running, stop, pause, resume) in table {
            let m = StateManager {
                role: Role::Worker,
                state,
            };
            assert_eq!(m.can_start(), start, "{state} can_start");
            assert_eq!(m.is_running(), running, "{state} is_running");
            assert_eq!(m.can_stop(), stop, "{state} can_stop");
            assert_eq!(m.can_pause(), pause, "{state} can_pause");
            assert_eq!(m.can_resume(), resume, "{state} can_resume");
        }
    }

    #[test]
    fn worker_goes_missing_and_rejoins_idle() {
        let mut m = StateManager::new(Role::Worker);
        m.transition_state(Starting).unwrap();
        m.transition_state(Running).unwrap();
        m.transition_state(Missing).unwrap();
        assert!(m.transition_state(Running).is_err());
        m.transition_state(Ready).unwrap();
        assert!(m.can_start());
    }

    #[test]
    fn states_serialize_upper_case() {
        assert_eq!(serde_json::to_string(&Paused).unwrap(), "\"PAUSED\"");
        let back: RunnerState = serde_json::from_str("\"QUITTING\"").unwrap();
        assert_eq!(back, Quitting);
    }
}
