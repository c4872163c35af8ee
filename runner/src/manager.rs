//! The user manager: starts and stops users to reach the load shape's target at its
//! spawn rate, without blocking anything.
//!
//! The manager never sleeps: [`UserManager::step`] does what is due at `now` and says when
//! the next action is due, so the runner's loop keeps polling the shape, serving commands
//! and flushing metrics during a ramp. User k always has the same type (see
//! `aiotest_core::weights`), and the newest users stop first, so the split by weight is
//! exact at every count.

use std::sync::Arc;
use std::time::Duration;

use aiotest_core::user::UserType;
use aiotest_core::weights::{WeightError, WeightedSequence};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::user_loop::{Control, UserEnv, run_user};

struct Slot {
    stop: watch::Sender<bool>,
    type_index: usize,
}

struct Ramp {
    up: bool,
    total: u32,
    done: u32,
    rate: f64,
    started: Instant,
}

/// Starts, stops, pauses and resumes a run's users.
pub struct UserManager {
    types: Vec<UserType>,
    sequence: WeightedSequence,
    type_of: Vec<usize>,
    users: Vec<Slot>,
    tasks: JoinSet<()>,
    paused: watch::Sender<bool>,
    paused_at: Option<Instant>,
    env: Arc<UserEnv>,
    next_id: u64,
    target: Option<(u32, f64)>,
    ramp: Option<Ramp>,
}

impl UserManager {
    pub(crate) fn new(types: Vec<UserType>, env: Arc<UserEnv>) -> Result<Self, WeightError> {
        let weights: Vec<u32> = types.iter().map(UserType::weight).collect();
        Ok(UserManager {
            sequence: WeightedSequence::new(&weights)?,
            types,
            type_of: Vec::new(),
            users: Vec::new(),
            tasks: JoinSet::new(),
            paused: watch::channel(false).0,
            paused_at: None,
            env,
            next_id: 0,
            target: None,
            ramp: None,
        })
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
        let current = u32::try_from(self.users.len()).unwrap_or(u32::MAX);
        self.ramp = (target != current).then(|| Ramp {
            up: target > current,
            total: target.abs_diff(current),
            done: 0,
            rate,
            started: now,
        });
    }

    /// Does the starts and stops due at `now`; returns when the next one is due.
    pub fn step(&mut self, now: Instant) -> Option<Instant> {
        if self.paused_at.is_some() {
            return None;
        }
        let ramp = self.ramp.as_ref()?;
        let (up, total, rate, started) = (ramp.up, ramp.total, ramp.rate, ramp.started);
        let allowed = if rate.is_finite() {
            let elapsed = now.saturating_duration_since(started).as_secs_f64();
            // The first action at once, then one every 1/rate seconds.
            ((rate * elapsed).floor() as u64 + 1).min(u64::from(total)) as u32
        } else {
            total
        };
        let mut done = ramp.done;
        while done < allowed {
            if up {
                self.start_user();
            } else {
                self.stop_newest();
            }
            done += 1;
        }
        if done >= total {
            self.ramp = None;
            return None;
        }
        if let Some(r) = self.ramp.as_mut() {
            r.done = done;
        }
        Some(started + Duration::from_secs_f64(f64::from(done) / rate))
    }

    fn start_user(&mut self) {
        let k = self.users.len();
        while self.type_of.len() <= k {
            self.type_of.push(self.sequence.next_index());
        }
        let type_index = self.type_of[k];
        let (stop, stop_rx) = watch::channel(false);
        let control = Control {
            stop: stop_rx,
            paused: self.paused.subscribe(),
        };
        let id = self.next_id;
        self.next_id += 1;
        self.tasks.spawn(run_user(
            self.types[type_index].clone(),
            id,
            Arc::clone(&self.env),
            control,
        ));
        self.users.push(Slot { stop, type_index });
    }

    fn stop_newest(&mut self) {
        if let Some(slot) = self.users.pop() {
            // The user finishes its task in flight, runs on_stop and ends.
            let _ = slot.stop.send(true);
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

    /// Reaps users that have ended.
    pub fn cleanup_inactive_users(&mut self) {
        while let Some(result) = self.tasks.try_join_next() {
            if let Err(e) = result
                && e.is_panic()
            {
                // run_user catches task panics; this would be a bug in the loop itself.
                tracing::error!("a user task panicked outside its tasks: {e}");
            }
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
        self.ramp = None;
        self.target = None;
        for slot in self.users.drain(..) {
            let _ = slot.stop.send(true);
        }
        // Paused users must wake up to see the stop.
        let _ = self.paused.send(false);
        self.paused_at = None;
        let deadline = Instant::now() + grace;
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
        let left = self.tasks.len();
        tracing::warn!(
            users = left,
            "users still busy after the graceful stop period; cancelling them"
        );
        self.tasks.shutdown().await;
        left
    }
}
