//! The user manager: the users of one scenario on this node. It starts and stops users
//! to reach a target at its spawn rate (closed-model executors), starts a fixed number
//! with their work (iteration and arrival-rate executors), and ends them, without
//! blocking anything.
//!
//! The manager never sleeps: [`UserManager::step`] does what is due at `now` and says when
//! the next action is due, so the runner's loop keeps polling the shape, serving commands
//! and flushing metrics during a ramp or a scenario's graceful stop. User k always has the
//! same type (see `aiotest_core::weights`), and the newest users stop first, so the split
//! by weight is exact at every count.

use std::sync::Arc;
use std::time::Duration;

use aiotest_core::user::UserType;
use aiotest_core::weights::{WeightError, WeightedSequence};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::user_loop::{UserEnv, UserStop, Work, run_user};

struct Slot {
    stop: UserStop,
    type_index: usize,
    task: tokio::task::Id,
}

/// One paced step of a ramp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// Start the next user of the weighted sequence.
    StartNext,
    /// Start a user of this type.
    StartType(usize),
    /// Stop the newest user.
    StopNewest,
    /// Stop the newest user of this type.
    StopNewestOfType(usize),
}

struct Ramp {
    actions: Vec<Action>,
    done: usize,
    rate: f64,
    started: Instant,
}

/// Starts, stops, pauses and resumes one scenario's users.
pub struct UserManager {
    types: Vec<UserType>,
    scenario: Arc<str>,
    sequence: WeightedSequence,
    type_of: Vec<usize>,
    users: Vec<Slot>,
    tasks: JoinSet<()>,
    paused: watch::Sender<bool>,
    paused_at: Option<Instant>,
    env: Arc<UserEnv>,
    /// The run's collector, tagged with this scenario's tags.
    collector: aiotest_metrics::MetricsCollector,
    target: Option<(u32, f64)>,
    type_targets: Option<(Vec<u32>, f64)>,
    ramp: Option<Ramp>,
    /// Ending: users still running then are cancelled.
    cancel_at: Option<Instant>,
    cancelled: u64,
    /// The users left at the deadline were cancelled (and counted): reaping them later
    /// counts nothing more.
    aborted: bool,
}

impl UserManager {
    pub(crate) fn new(
        types: Vec<UserType>,
        scenario: Arc<str>,
        env: Arc<UserEnv>,
        tags: aiotest_metrics::Tags,
    ) -> Result<Self, WeightError> {
        let weights: Vec<u32> = types.iter().map(UserType::weight).collect();
        Ok(UserManager {
            collector: env.collector.tagged(tags),
            sequence: WeightedSequence::new(&weights)?,
            types,
            scenario,
            type_of: Vec::new(),
            users: Vec::new(),
            tasks: JoinSet::new(),
            paused: watch::channel(false).0,
            paused_at: None,
            env,
            target: None,
            type_targets: None,
            ramp: None,
            cancel_at: None,
            cancelled: 0,
            aborted: false,
        })
    }

    /// Users whose task has not ended yet (stopping ones included).
    pub fn live_user_count(&self) -> usize {
        self.tasks.len()
    }

    /// Users cancelled because they outlived a graceful stop period.
    pub fn cancelled(&self) -> u64 {
        self.cancelled
    }

    /// Starts the next `n` users of the weighted sequence at once, each with the work
    /// `work` gives it (iteration and arrival-rate executors).
    pub(crate) fn start_with(&mut self, n: u32, mut work: impl FnMut() -> Work) {
        for _ in 0..n {
            let k = self.users.len();
            while self.type_of.len() <= k {
                self.type_of.push(self.sequence.next_index());
            }
            self.start_user(self.type_of[k], work());
        }
    }

    /// Ends the scenario: every user finishes its iteration in flight by `deadline`; the
    /// ones still running then are cancelled by [`step`](Self::step).
    pub(crate) fn end(&mut self, deadline: Instant) {
        self.ramp = None;
        self.target = None;
        self.type_targets = None;
        for slot in &self.users {
            slot.stop.give();
        }
        // Paused users must wake up to see the stop.
        let _ = self.paused.send(false);
        self.paused_at = None;
        self.cancel_at = Some(self.cancel_at.map_or(deadline, |d| d.min(deadline)));
    }

    /// Users running (stopping ones not counted).
    pub fn active_user_count(&self) -> usize {
        self.users.len()
    }

    /// Running users per user type, in the order the types were given.
    pub fn counts_by_type(&self) -> Vec<(&str, u64)> {
        let mut counts = vec![0u64; self.types.len()];
        for u in &self.users {
            counts[u.type_index] += 1;
        }
        self.types.iter().map(UserType::name).zip(counts).collect()
    }

    /// The current target, if one was set.
    pub fn target(&self) -> Option<(u32, f64)> {
        self.target
    }

    /// Moves towards `target` users at `rate` users per second (infinite: at once),
    /// starting at `now`. Setting the same target and rate again keeps the ramp going.
    pub fn manage_users(&mut self, target: u32, rate: f64, now: Instant) {
        if self.target == Some((target, rate)) {
            return;
        }
        self.target = Some((target, rate));
        self.type_targets = None;
        let current = u32::try_from(self.users.len()).unwrap_or(u32::MAX);
        let action = if target > current {
            Action::StartNext
        } else {
            Action::StopNewest
        };
        self.start_ramp(vec![action; target.abs_diff(current) as usize], rate, now);
    }

    /// Moves to exactly `targets[t]` users of each type `t` (in the order the types were
    /// given), at `rate` users per second in all: what a worker does with the absolute
    /// per-type counts its master sends. Repeating the same targets keeps the ramp going.
    pub fn manage_users_by_type(&mut self, targets: &[u32], rate: f64, now: Instant) {
        if self
            .type_targets
            .as_ref()
            .is_some_and(|(t, r)| t.as_slice() == targets && *r == rate)
        {
            return;
        }
        self.type_targets = Some((targets.to_vec(), rate));
        self.target = Some((targets.iter().sum(), rate));
        let mut current = vec![0u32; self.types.len()];
        for u in &self.users {
            current[u.type_index] += 1;
        }
        // Interleave the types, one action each in turn, so a partial ramp stays close
        // to the final mix; stops first, to stay within the target while moving.
        let mut stops: Vec<u32> = (0..self.types.len())
            .map(|t| current[t].saturating_sub(targets.get(t).copied().unwrap_or(0)))
            .collect();
        let mut starts: Vec<u32> = (0..self.types.len())
            .map(|t| {
                targets
                    .get(t)
                    .copied()
                    .unwrap_or(0)
                    .saturating_sub(current[t])
            })
            .collect();
        let mut actions = Vec::new();
        for (pending, make) in [
            (&mut stops, Action::StopNewestOfType as fn(usize) -> Action),
            (&mut starts, Action::StartType as fn(usize) -> Action),
        ] {
            while pending.iter().any(|&n| n > 0) {
                for (t, n) in pending.iter_mut().enumerate() {
                    if *n > 0 {
                        *n -= 1;
                        actions.push(make(t));
                    }
                }
            }
        }
        self.start_ramp(actions, rate, now);
    }

    fn start_ramp(&mut self, actions: Vec<Action>, rate: f64, now: Instant) {
        self.ramp = (!actions.is_empty()).then_some(Ramp {
            actions,
            done: 0,
            rate,
            started: now,
        });
    }

    /// Does the starts, stops and cancellations due at `now`; returns when the next one
    /// is due.
    pub fn step(&mut self, now: Instant) -> Option<Instant> {
        if let Some(at) = self.cancel_at {
            if self.tasks.is_empty() {
                return None;
            }
            if now < at {
                return Some(at);
            }
            if !self.aborted {
                self.count_cancelled();
                // Cancelling drops their futures: requests and iterations in flight are
                // recorded as interrupted, recorders flush.
                self.tasks.abort_all();
            }
            return None;
        }
        if self.paused_at.is_some() {
            return None;
        }
        let mut ramp = self.ramp.take()?;
        let total = ramp.actions.len();
        let allowed = if ramp.rate.is_finite() {
            let elapsed = now.saturating_duration_since(ramp.started).as_secs_f64();
            // The first action at once, then one every 1/rate seconds.
            ((ramp.rate * elapsed).floor() as usize)
                .saturating_add(1)
                .min(total)
        } else {
            total
        };
        while ramp.done < allowed {
            match ramp.actions[ramp.done] {
                Action::StartNext => {
                    let k = self.users.len();
                    while self.type_of.len() <= k {
                        self.type_of.push(self.sequence.next_index());
                    }
                    self.start_user(self.type_of[k], Work::Loop);
                }
                Action::StartType(t) => self.start_user(t, Work::Loop),
                Action::StopNewest => self.stop_newest(None),
                Action::StopNewestOfType(t) => self.stop_newest(Some(t)),
            }
            ramp.done += 1;
        }
        if ramp.done >= total {
            return None;
        }
        let next = ramp.started + Duration::from_secs_f64(ramp.done as f64 / ramp.rate);
        self.ramp = Some(ramp);
        Some(next)
    }

    fn start_user(&mut self, type_index: usize, work: Work) {
        if type_index >= self.types.len() {
            return;
        }
        let (stop, control) = UserStop::new(self.paused.subscribe());
        let id = self
            .env
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let task = self
            .tasks
            .spawn(run_user(
                self.types[type_index].clone(),
                id,
                Arc::clone(&self.scenario),
                Arc::clone(&self.env),
                self.collector.clone(),
                control,
                work,
            ))
            .id();
        self.users.push(Slot {
            stop,
            type_index,
            task,
        });
    }

    fn stop_newest(&mut self, of_type: Option<usize>) {
        let at = match of_type {
            None => self.users.len().checked_sub(1),
            Some(t) => self.users.iter().rposition(|u| u.type_index == t),
        };
        if let Some(i) = at {
            let slot = self.users.remove(i);
            // The user finishes its task in flight, runs on_stop and ends.
            slot.stop.give();
        }
    }

    /// Holds every user at its next task boundary and freezes the ramp.
    pub fn pause_all_users(&mut self, now: Instant) {
        if self.paused_at.is_none() {
            self.paused_at = Some(now);
            let _ = self.paused.send(true);
        }
    }

    /// Lets users go on; the ramp continues where it was.
    pub fn resume_all_users(&mut self, now: Instant) {
        if let Some(at) = self.paused_at.take() {
            if let Some(r) = self.ramp.as_mut() {
                r.started += now.saturating_duration_since(at);
            }
            let _ = self.paused.send(false);
        }
    }

    /// Reaps users that have ended (stopped, their work done, or cancelled).
    pub fn cleanup_inactive_users(&mut self) {
        let mut ended = std::collections::HashSet::new();
        while let Some(result) = self.tasks.try_join_next_with_id() {
            let id = match result {
                Ok((id, ())) => id,
                Err(e) => {
                    if e.is_panic() {
                        // run_user catches task panics; this would be a bug in the loop.
                        tracing::error!("a user task panicked outside its tasks: {e}");
                    }
                    e.id()
                }
            };
            ended.insert(id);
        }
        // One pass, however many ended: removing them one by one was quadratic when a
        // million users ended together.
        if !ended.is_empty() {
            self.users.retain(|u| !ended.contains(&u.task));
        }
    }

    /// Stops every user: each finishes its task in flight and runs `on_stop` within
    /// `grace`; those still running then are cancelled. Returns how many were cancelled.
    pub async fn stop_all_users(&mut self, grace: Duration) -> usize {
        self.stop_all_users_or(grace, std::future::pending()).await
    }

    /// As [`stop_all_users`](Self::stop_all_users), cutting the grace period short when
    /// `abort` resolves (a second Ctrl-C).
    pub async fn stop_all_users_or(
        &mut self,
        grace: Duration,
        abort: impl std::future::Future<Output = ()>,
    ) -> usize {
        self.end(Instant::now() + grace);
        self.users.clear();
        self.finish(abort).await
    }

    /// After [`end`](Self::end): waits for the users until the deadline (or `abort`),
    /// then cancels the rest. Returns how many were cancelled.
    pub(crate) async fn finish(&mut self, abort: impl std::future::Future<Output = ()>) -> usize {
        let deadline = self.cancel_at.unwrap_or_else(Instant::now);
        let mut abort = std::pin::pin!(abort);
        loop {
            tokio::select! {
                joined = tokio::time::timeout_at(deadline, self.tasks.join_next()) => match joined {
                    Ok(Some(_)) => {}
                    Ok(None) => return 0,
                    Err(_) => break,
                },
                () = &mut abort => break,
            }
        }
        let left = if self.aborted {
            0
        } else {
            self.count_cancelled()
        };
        self.tasks.shutdown().await;
        left
    }

    /// Counts the users still running as cancelled, once.
    fn count_cancelled(&mut self) -> usize {
        let left = self.tasks.len();
        tracing::warn!(
            scenario = &*self.scenario,
            users = left,
            "users still busy after the graceful stop period; cancelling them"
        );
        self.cancelled += left as u64;
        self.aborted = true;
        left
    }

    /// The scenario's name.
    pub(crate) fn scenario(&self) -> Arc<str> {
        Arc::clone(&self.scenario)
    }

    /// Whether it was told to end.
    pub(crate) fn ended(&self) -> bool {
        self.cancel_at.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::user_loop::UserStats;
    use aiotest_core::user::TaskResult;

    struct Idle;
    async fn idle(_: &mut Idle) -> TaskResult {
        Ok(())
    }

    fn manager() -> UserManager {
        let types = ["a", "b"]
            .iter()
            .map(|n| {
                UserType::builder(*n, |_ctx| Idle)
                    .task("idle", 1, idle)
                    .build()
                    .expect("valid user type")
            })
            .collect();
        let env = Arc::new(UserEnv {
            collector: aiotest_metrics::MetricsCollector::with_defaults(),
            host: None,
            setup: None,
            stats: Arc::new(UserStats::default()),
            next_id: Default::default(),
        });
        UserManager::new(types, "default".into(), env, aiotest_metrics::Tags::new())
            .expect("valid weights")
    }

    fn counts(m: &UserManager) -> Vec<u64> {
        m.counts_by_type().into_iter().map(|(_, n)| n).collect()
    }

    struct Stuck;
    async fn stuck(_: &mut Stuck) -> TaskResult {
        std::future::pending().await
    }

    /// Users cancelled when the deadline passes in `step` and reaped later by `finish`
    /// are counted once (a 1,000-user run reported 3,106 cancelled users).
    #[tokio::test(start_paused = true)]
    async fn users_cancelled_then_reaped_are_counted_once() {
        let mut m = manager();
        m.types = vec![
            UserType::builder("stuck", |_ctx| Stuck)
                .task("stuck", 1, stuck)
                .build()
                .expect("valid user type"),
        ];
        m.sequence = WeightedSequence::new(&[1]).expect("one weight");
        let t0 = Instant::now();
        m.manage_users_by_type(&[3], f64::INFINITY, t0);
        m.step(t0);
        tokio::time::sleep(Duration::from_millis(10)).await;
        m.end(t0 + Duration::from_secs(2));
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(m.step(Instant::now()), None);
        assert_eq!(m.cancelled(), 3);
        assert_eq!(m.finish(std::future::pending()).await, 0);
        assert_eq!(m.cancelled(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn per_type_targets_are_reached_exactly_at_the_rate() {
        let mut m = manager();
        let t0 = Instant::now();
        m.manage_users_by_type(&[3, 1], f64::INFINITY, t0);
        assert_eq!(m.step(t0), None);
        assert_eq!(counts(&m), [3, 1]);
        // Two users a second: one stop of `a` and one start of `b` now-ish, the rest paced.
        m.manage_users_by_type(&[1, 2], 2.0, t0);
        let next = m.step(t0).expect("more to do");
        assert_eq!(counts(&m), [2, 1], "the first action at once: a stop");
        assert_eq!(next, t0 + Duration::from_millis(500));
        assert_eq!(
            m.step(t0 + Duration::from_millis(500)),
            Some(t0 + Duration::from_secs(1))
        );
        assert_eq!(counts(&m), [1, 1]);
        assert_eq!(m.step(t0 + Duration::from_secs(1)), None);
        assert_eq!(counts(&m), [1, 2]);
        assert_eq!(m.active_user_count(), 3);
        // Repeating the same absolute targets changes nothing.
        m.manage_users_by_type(&[1, 2], 2.0, t0 + Duration::from_secs(5));
        assert_eq!(m.step(t0 + Duration::from_secs(5)), None);
        assert_eq!(m.stop_all_users(Duration::from_secs(1)).await, 0);
    }
}
