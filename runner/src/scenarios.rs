//! The scenarios of a run, as the engine drives them: each starts at its start time (run
//! time, pauses excluded), runs as its executor says, ends (its users get its graceful
//! stop period to finish their iteration) and is done once its users are gone. The run
//! ends when every scenario is done.
//!
//! Closed-model executors are polled here, on the run clock's grid, and their targets go
//! to the placement. Iteration and arrival-rate executors run where their users are (on
//! every worker, each with its part), so the engine only starts and ends them.

use std::time::Duration;

use aiotest_core::scenario::{Drive, Executor, Scenario, Share, split_count};
use aiotest_core::shape::{validate_spawn_rate, validate_users};
use tokio::time::Instant;

use crate::engine::Placement;
use crate::report::RunError;

/// A node's part of a self-scheduled scenario.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Part {
    /// Its share of an arrival schedule.
    pub(crate) share: Share,
    /// Users: iteration executors' fixed count; arrival-rate pre-allocated and most.
    pub(crate) vus: (u32, u32),
    /// Iterations: shared by its users (shared-iterations), or each user's
    /// (per-vu-iterations).
    pub(crate) budget: u64,
    /// How far into the scenario the part starts (a worker joining, or re-shared).
    pub(crate) elapsed: Duration,
    /// How long ago `elapsed` was measured (a master's command in transit): an arrival
    /// part's clock starts that much further on, so it keeps the master's time and its
    /// iterations due meanwhile are due at once, not cut from its end.
    pub(crate) lag: Duration,
}

impl Part {
    /// The whole scenario on one node.
    pub(crate) fn whole(executor: &Executor) -> Self {
        Part::of(executor, 0, 1)
    }

    /// Worker `index` of `of`'s part, from the scenario's start: users and shared
    /// iterations split exactly (the parts sum to the whole), per-user iterations kept,
    /// the arrival schedule interleaved.
    pub(crate) fn of(executor: &Executor, index: usize, of: usize) -> Self {
        let (pre, max) = executor.vus();
        let pick = |n: u32| {
            split_count(u64::from(n), of)
                .get(index)
                .map_or(0, |&v| u32::try_from(v).unwrap_or(u32::MAX))
        };
        let vus = (pick(pre), pick(max).max(u32::from(max > 0 && of > 0)));
        let budget = match executor {
            Executor::SharedIterations {
                iterations, vus: n, ..
            } => {
                // In proportion to the users each worker gets, exactly.
                let users = split_count(u64::from(*n), of);
                split_weighted(*iterations, &users)
                    .get(index)
                    .copied()
                    .unwrap_or(0)
            }
            Executor::PerVuIterations { iterations, .. } => *iterations,
            _ => 0,
        };
        Part {
            share: Share {
                index: u32::try_from(index).unwrap_or(0),
                of: u32::try_from(of.max(1)).unwrap_or(1),
                from: 0,
            },
            vus,
            budget,
            elapsed: Duration::ZERO,
            lag: Duration::ZERO,
        }
    }
}

/// Splits `n` in proportion to `weights`, exactly (largest remainders).
pub(crate) fn split_weighted(n: u64, weights: &[u64]) -> Vec<u64> {
    let total: u64 = weights.iter().sum();
    if total == 0 {
        return vec![0; weights.len()];
    }
    let mut out: Vec<u64> = weights
        .iter()
        .map(|w| (u128::from(n) * u128::from(*w) / u128::from(total)) as u64)
        .collect();
    let mut rest = n - out.iter().sum::<u64>();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by_key(|&i| {
        std::cmp::Reverse((u128::from(n) * u128::from(weights[i])) % u128::from(total))
    });
    for i in order {
        if rest == 0 {
            break;
        }
        if weights[i] > 0 {
            out[i] += 1;
            rest -= 1;
        }
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Waiting,
    Running,
    Ending,
    Done,
}

/// One scenario's progress in the engine.
struct State {
    phase: Phase,
    last_target: Option<(u32, f64)>,
}

/// How often a scenario that runs on its own or is ending is looked at (its budget spent,
/// its users gone).
const ENDING_CHECK_MS: u64 = 50;

/// Every scenario's progress; see the [module docs](self).
pub(crate) struct Scenarios {
    states: Vec<State>,
    poll_every: Duration,
    next_poll: Instant,
    last_check: Instant,
    /// The next start or end of a scenario that is due at a known run time.
    next_edge: Option<Instant>,
    /// Run time when the last scenario's executor ended (its load; the graceful stop
    /// that follows is not in it).
    ended_at: Duration,
}

impl Scenarios {
    pub(crate) fn new(n: usize, poll_every: Duration, now: Instant) -> Self {
        Scenarios {
            states: (0..n)
                .map(|_| State {
                    phase: Phase::Waiting,
                    last_target: None,
                })
                .collect(),
            poll_every: poll_every.max(Duration::from_millis(1)),
            next_poll: now,
            last_check: now,
            // The first look is at once: scenarios starting at 0 start then.
            next_edge: Some(now),
            ended_at: Duration::ZERO,
        }
    }

    /// Starts, polls and ends the scenarios due at run time `run_time`. `Ok(true)` once
    /// every scenario is done; an unusable tick of a shape is an error.
    pub(crate) fn advance<P: Placement>(
        &mut self,
        scenarios: &[Scenario],
        placement: &mut P,
        run_time: Duration,
        now: Instant,
    ) -> Result<bool, RunError> {
        self.last_check = now;
        self.next_edge = None;
        let poll = now >= self.next_poll;
        if poll {
            // Polls sit on the run clock's grid, so a shape ending at 10 s is seen at
            // 10 s even after a pause shifted wall time.
            let into =
                Duration::from_nanos((run_time.as_nanos() % self.poll_every.as_nanos()) as u64);
            self.next_poll = now + (self.poll_every - into);
        }
        for (i, (sc, st)) in scenarios.iter().zip(self.states.iter_mut()).enumerate() {
            if st.phase == Phase::Waiting && run_time >= sc.starts_at() {
                st.phase = Phase::Running;
                placement.start_scenario(i, Part::whole(sc.executor()), now);
            }
            let t = run_time.saturating_sub(sc.starts_at());
            match (st.phase, sc.executor().drive()) {
                (Phase::Running, Drive::Targets) if poll || st.last_target.is_none() => {
                    match sc.executor().target(t) {
                        None => {
                            st.phase = Phase::Ending;
                            self.ended_at = self.ended_at.max(run_time);
                            placement.end_scenario(i, sc.graceful_stop_period(), now);
                        }
                        Some((users, rate)) => {
                            validate_spawn_rate(rate)?;
                            validate_users(users.into())?;
                            // A new target replaces any manual override.
                            if st.last_target != Some((users, rate)) {
                                st.last_target = Some((users, rate));
                                placement.set_target(i, users, rate, now);
                            }
                        }
                    }
                }
                (Phase::Running, _) => {
                    let length = sc.executor().duration();
                    let over = length.is_some_and(|d| t >= d);
                    if over {
                        st.phase = Phase::Ending;
                        // Its executor ended at its length, whenever that was seen.
                        let end = sc.starts_at() + length.unwrap_or_default();
                        self.ended_at = self.ended_at.max(end);
                        placement.end_scenario(i, sc.graceful_stop_period(), now);
                    } else if placement.scenario_done(i) {
                        st.phase = Phase::Done;
                        self.ended_at = self.ended_at.max(run_time);
                    }
                }
                (Phase::Ending, _) if placement.scenario_done(i) => st.phase = Phase::Done,
                _ => {}
            }
            // Starts and ends at known run times are seen when they are due, not at the
            // next look.
            let edge = match (st.phase, sc.executor().drive()) {
                (Phase::Waiting, _) => Some(sc.starts_at()),
                (Phase::Running, Drive::Iterations | Drive::Arrivals) => sc.ends_by(),
                _ => None,
            };
            if let Some(at) = edge.filter(|at| *at > run_time) {
                let when = now + (at - run_time);
                self.next_edge = Some(self.next_edge.map_or(when, |e: Instant| e.min(when)));
            }
        }
        Ok(self.states.iter().all(|s| s.phase == Phase::Done))
    }

    /// When the scenarios next need a look: the poll of a running closed-model executor,
    /// a waiting scenario's start, or soon while one is ending (to see its users gone).
    pub(crate) fn next_poll(&self, scenarios: &[Scenario]) -> Option<Instant> {
        let mut at = self.next_edge;
        for (sc, st) in scenarios.iter().zip(&self.states) {
            let next = match st.phase {
                Phase::Waiting => None,
                Phase::Running if sc.executor().drive() == Drive::Targets => Some(self.next_poll),
                Phase::Running | Phase::Ending => {
                    Some(self.last_check + Duration::from_millis(ENDING_CHECK_MS))
                }
                Phase::Done => None,
            };
            at = match (at, next) {
                (Some(a), Some(b)) => Some(std::cmp::min(a, b)),
                (a, b) => a.or(b),
            };
        }
        at
    }

    /// The scenario a manual user count (the control API, the keys) applies to: the first
    /// running externally controlled one, else the first running closed-model one.
    pub(crate) fn manual(&self, scenarios: &[Scenario]) -> Option<usize> {
        let running = |i: &usize| {
            self.states[*i].phase == Phase::Running
                && scenarios[*i].executor().drive() == Drive::Targets
        };
        let idx = 0..scenarios.len();
        idx.clone()
            .filter(running)
            .find(|&i| {
                matches!(
                    scenarios[i].executor(),
                    Executor::ExternallyControlled { .. }
                )
            })
            .or_else(|| idx.clone().find(running))
    }

    /// Run time when the last scenario's executor ended.
    pub(crate) fn ended_at(&self) -> Duration {
        self.ended_at
    }

    /// Names of the scenarios that are done.
    pub(crate) fn done_names(&self, scenarios: &[Scenario]) -> Vec<String> {
        scenarios
            .iter()
            .zip(&self.states)
            .filter(|(_, st)| st.phase == Phase::Done)
            .map(|(sc, _)| sc.name().to_owned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_split_users_and_shared_iterations_exactly() {
        let e = Executor::SharedIterations {
            vus: 5,
            iterations: 1_001,
            max_duration: Duration::from_secs(60),
        };
        let parts: Vec<Part> = (0..3).map(|i| Part::of(&e, i, 3)).collect();
        assert_eq!(parts.iter().map(|p| p.vus.0).collect::<Vec<_>>(), [2, 2, 1]);
        assert_eq!(parts.iter().map(|p| p.budget).sum::<u64>(), 1_001);
        assert_eq!(parts[2].budget, 200, "one user of five: a fifth");
        let per = Executor::PerVuIterations {
            vus: 4,
            iterations: 7,
            max_duration: Duration::from_secs(60),
        };
        let parts: Vec<Part> = (0..2).map(|i| Part::of(&per, i, 2)).collect();
        assert_eq!(parts.iter().map(|p| p.vus.0).sum::<u32>(), 4);
        assert!(parts.iter().all(|p| p.budget == 7), "each user runs 7");
        assert_eq!(split_weighted(10, &[1, 1, 1]), [4, 3, 3]);
        assert_eq!(split_weighted(10, &[0, 3, 1]), [0, 8, 2]);
    }
}
