//! The open model: an arrival-rate scenario's schedule and its pool of users.
//!
//! Iterations are due on the scenario's [`ArrivalSchedule`] (this node's [`Share`] of it),
//! whatever earlier ones take. A due iteration goes to a free user at once; with none
//! free, a new user is started for it while there are fewer than `max_vus` (its start-up
//! is part of the iteration's lateness); otherwise it is dropped and counted. Every
//! iteration's requests report latency from its *intended* start, the lateness measured
//! here (coordinated omission corrected), and keep their service time beside it.
//!
//! The schedule runs on scenario time, which stops while the run is paused: a resume
//! continues where the pause left off, with no burst of catch-up iterations. Iterations
//! due while this node was busy elsewhere (a slow loop) are started late, not skipped:
//! their lateness says so.

use std::sync::Arc;
use std::time::Duration;

use aiotest_core::scenario::{ArrivalSchedule, Share};
use aiotest_metrics::MetricsCollector;
use tokio::time::Instant;

use crate::manager::UserManager;
use crate::user_loop::{FreeList, Ticket, Work};

/// One arrival-rate scenario on this node.
pub(crate) struct ArrivalRun {
    schedule: ArrivalSchedule,
    share: Share,
    /// The next iteration this node runs.
    next: u64,
    /// Where scenario time 0 is on the tokio clock (moved forward by pauses).
    origin: Instant,
    paused_at: Option<Instant>,
    free: FreeList,
    max_vus: u32,
    users: UserManager,
    collector: MetricsCollector,
    scenario: Arc<str>,
    ended: bool,
    dropped: u64,
}

impl ArrivalRun {
    /// Starts the scenario at `now`, `elapsed` into its schedule (a worker joining late or
    /// given a new share), with `pre_allocated` users idle and up to `max_vus`.
    pub(crate) fn start(
        schedule: ArrivalSchedule,
        share: Share,
        (pre_allocated, max_vus): (u32, u32),
        mut users: UserManager,
        collector: MetricsCollector,
        elapsed: Duration,
        now: Instant,
    ) -> Self {
        let free = FreeList::default();
        users.start_with(pre_allocated, || Work::Tickets(Arc::clone(&free), None));
        let scenario = users.scenario();
        let next = share.next_from(schedule.due_before(elapsed));
        ArrivalRun {
            schedule,
            share,
            next,
            origin: now.checked_sub(elapsed).unwrap_or(now),
            paused_at: None,
            free,
            max_vus,
            users,
            collector,
            scenario,
            ended: false,
            dropped: 0,
        }
    }

    /// A new share of the schedule from `elapsed` on (the workers changed).
    pub(crate) fn reshare(&mut self, share: Share, max_vus: u32, elapsed: Duration, now: Instant) {
        if share == self.share && max_vus == self.max_vus {
            return;
        }
        self.share = share;
        self.max_vus = max_vus;
        self.origin = now.checked_sub(elapsed).unwrap_or(now);
        self.next = share.next_from(self.schedule.due_before(elapsed).max(share.from));
    }

    fn scenario_time(&self, now: Instant) -> Duration {
        let at = self.paused_at.unwrap_or(now);
        at.saturating_duration_since(self.origin)
    }

    /// Starts what is due by `now`; says when the next iteration is due.
    pub(crate) fn step(&mut self, now: Instant) -> Option<Instant> {
        self.users.cleanup_inactive_users();
        let users_due = self.users.step(now);
        if self.ended || self.paused_at.is_some() {
            return users_due;
        }
        let t = self.scenario_time(now);
        let next_due = loop {
            let Some(due) = self.schedule.due(self.next) else {
                break None;
            };
            if due > t {
                break Some(now + (due - t));
            }
            self.dispatch(now - (t - due));
            self.next = self.share.next_from(self.next + 1);
        };
        if self.dropped > 0 {
            self.collector
                .add_dropped(&self.scenario, std::mem::take(&mut self.dropped));
        }
        match (next_due, users_due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Hands one iteration due at `due` to a free user, a new one, or drops it.
    fn dispatch(&mut self, due: Instant) {
        let ticket = Ticket { due };
        loop {
            let Some(tx) = crate::handle::lock(&self.free).pop() else {
                break;
            };
            // A user that has stopped left its sender behind: try the next.
            if tx.try_send(ticket).is_ok() {
                return;
            }
        }
        if (self.users.live_user_count() as u64) < u64::from(self.max_vus) {
            let free = Arc::clone(&self.free);
            self.users
                .start_with(1, || Work::Tickets(Arc::clone(&free), Some(ticket)));
        } else {
            self.dropped += 1;
        }
    }

    pub(crate) fn pause(&mut self, now: Instant) {
        if self.paused_at.is_none() {
            self.paused_at = Some(now);
        }
        self.users.pause_all_users(now);
    }

    pub(crate) fn resume(&mut self, now: Instant) {
        if let Some(at) = self.paused_at.take() {
            self.origin += now.saturating_duration_since(at);
        }
        self.users.resume_all_users(now);
    }

    /// Stops starting iterations; users finish theirs by `deadline`.
    pub(crate) fn end(&mut self, deadline: Instant) {
        self.ended = true;
        self.users.end(deadline);
    }

    pub(crate) fn users(&self) -> &UserManager {
        &self.users
    }

    pub(crate) fn users_mut(&mut self) -> &mut UserManager {
        &mut self.users
    }
}
