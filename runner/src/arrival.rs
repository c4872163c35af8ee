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

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use aiotest_core::scenario::{ArrivalSchedule, Share};
use aiotest_metrics::MetricsCollector;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::manager::UserManager;
use crate::user_loop::Work;

/// An arrival-rate iteration handed to a user: when it was due.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket {
    pub(crate) due: Instant,
}

/// Where an arrival-rate scenario's iterations meet its users: the users (or slots of a
/// concurrent user) free for one, and the iterations due that wait for a user. One is
/// empty whenever the other is not: a user coming free takes the first in line itself,
/// with no wake-up of the scheduler in between.
pub(crate) struct Pool(Mutex<PoolState>);

#[derive(Default)]
struct PoolState {
    free: Vec<mpsc::Sender<Ticket>>,
    /// Due instants of the iterations in line, first due first.
    waiting: VecDeque<Instant>,
    max_delay: Duration,
    /// In line past `max_delay`, found by a user: dropped, to be counted.
    dropped: u64,
    /// While paused, users coming free take nothing from the line.
    paused: bool,
}

impl PoolState {
    /// The first iteration in line still within its wait; those past it are dropped.
    fn first_waiting(&mut self, now: Instant) -> Option<Ticket> {
        while let Some(due) = self.waiting.pop_front() {
            if now.saturating_duration_since(due) <= self.max_delay {
                return Some(Ticket { due });
            }
            self.dropped += 1;
        }
        None
    }

    /// Gives `ticket` to a free user, if there is one.
    fn hand(&mut self, ticket: Ticket) -> bool {
        while let Some(tx) = self.free.pop() {
            // A user that has stopped left its sender behind: try the next.
            if tx.try_send(ticket).is_ok() {
                return true;
            }
        }
        false
    }
}

impl Pool {
    fn new(max_delay: Duration) -> Self {
        Pool(Mutex::new(PoolState {
            max_delay,
            ..PoolState::default()
        }))
    }

    fn state(&self) -> MutexGuard<'_, PoolState> {
        // Held only to move a sender or a due instant; never across an await.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot whose channel is `tx` is free: it gets the first iteration in line, or
    /// waits on the free list for the next one due.
    pub(crate) fn offer(&self, tx: &mpsc::Sender<Ticket>, now: Instant) {
        let mut st = self.state();
        if !st.paused
            && let Some(t) = st.first_waiting(now)
        {
            // Its channel is empty: it has just finished the iteration it held.
            if tx.try_send(t).is_ok() {
                return;
            }
            st.waiting.push_front(t.due);
        }
        st.free.push(tx.clone());
    }
}

/// One arrival-rate scenario on this node.
pub(crate) struct ArrivalRun {
    schedule: ArrivalSchedule,
    share: Share,
    /// The next iteration this node runs.
    next: u64,
    /// Where scenario time 0 is on the tokio clock (moved forward by pauses).
    origin: Instant,
    paused_at: Option<Instant>,
    pool: Arc<Pool>,
    max_vus: u32,
    users: UserManager,
    collector: MetricsCollector,
    scenario: Arc<str>,
    ended: bool,
    dropped: u64,
}

/// Iterations due this close ahead start now, and the scheduler wakes this much before
/// the next is due: the timer wakes no finer than a millisecond, and an iteration started
/// a little early (its lateness then counts as zero) distorts less than every iteration
/// started up to a millisecond late.
const LOOKAHEAD: Duration = Duration::from_millis(1);

impl ArrivalRun {
    /// Starts the scenario at `now`, `elapsed` into its schedule (a worker joining late or
    /// given a new share) as measured `lag` ago, with `pre_allocated` users idle and up
    /// to `max_vus`; an iteration may wait `max_delay` for a free user.
    #[allow(clippy::too_many_arguments)] // a scenario part, unpacked
    pub(crate) fn start(
        schedule: ArrivalSchedule,
        share: Share,
        (pre_allocated, max_vus): (u32, u32),
        max_delay: Duration,
        mut users: UserManager,
        collector: MetricsCollector,
        (elapsed, lag): (Duration, Duration),
        now: Instant,
    ) -> Self {
        let pool = Arc::new(Pool::new(max_delay));
        users.start_with(pre_allocated, || Work::Tickets(Arc::clone(&pool), None));
        let scenario = users.scenario();
        let next = share.next_from(schedule.due_before(elapsed));
        ArrivalRun {
            schedule,
            share,
            next,
            origin: now.checked_sub(elapsed + lag).unwrap_or(now),
            paused_at: None,
            pool,
            max_vus,
            users,
            collector,
            scenario,
            ended: false,
            dropped: 0,
        }
    }

    /// A new share of the schedule from `elapsed` on, measured `lag` ago (the workers
    /// changed).
    pub(crate) fn reshare(
        &mut self,
        share: Share,
        max_vus: u32,
        (elapsed, lag): (Duration, Duration),
        now: Instant,
    ) {
        if share == self.share && max_vus == self.max_vus {
            return;
        }
        self.share = share;
        self.max_vus = max_vus;
        self.origin = now.checked_sub(elapsed + lag).unwrap_or(now);
        self.next = share.next_from(self.schedule.due_before(elapsed).max(share.from));
    }

    fn scenario_time(&self, now: Instant) -> Duration {
        let at = self.paused_at.unwrap_or(now);
        at.saturating_duration_since(self.origin)
    }

    /// Starts what is due by `now`; says when the next iteration is due (or the first
    /// in line must be dropped).
    pub(crate) fn step(&mut self, now: Instant) -> Option<Instant> {
        self.users.cleanup_inactive_users();
        let users_due = self.users.step(now);
        if self.ended || self.paused_at.is_some() {
            return users_due;
        }
        let pool = Arc::clone(&self.pool);
        let mut st = pool.state();
        // Users freed while the line was held (a pause) take it first.
        while !st.free.is_empty() {
            match st.first_waiting(now) {
                Some(t) => {
                    if !st.hand(t) {
                        st.waiting.push_front(t.due);
                    }
                }
                None => break,
            }
        }
        let t = self.scenario_time(now);
        let next_due = loop {
            let Some(due) = self.schedule.due(self.next) else {
                break None;
            };
            if due > t + LOOKAHEAD {
                // Wake a little ahead: the timer fires up to a millisecond after the
                // instant asked for.
                break Some(now + (due - t - LOOKAHEAD));
            }
            let due = match due.checked_sub(t) {
                Some(ahead) => now + ahead,
                None => now - (t - due),
            };
            self.dispatch(&mut st, Ticket { due }, now);
            self.next = self.share.next_from(self.next + 1);
        };
        // Drop those in line past their wait; wake when the first one's is over.
        let first = st.first_waiting(now);
        if let Some(t) = first {
            st.waiting.push_front(t.due);
        }
        self.dropped += std::mem::take(&mut st.dropped);
        let max_delay = st.max_delay;
        drop(st);
        self.flush_dropped();
        let line_due = first.map(|t| t.due + max_delay + Duration::from_micros(1));
        [next_due, users_due, line_due].into_iter().flatten().min()
    }

    fn flush_dropped(&mut self) {
        if self.dropped > 0 {
            self.collector
                .add_dropped(&self.scenario, std::mem::take(&mut self.dropped));
        }
    }

    /// Hands one due iteration to a free user or a new one; else it waits in line (if
    /// the executor allows a wait) or is dropped.
    fn dispatch(&mut self, st: &mut PoolState, ticket: Ticket, now: Instant) {
        // None is free while others wait in line: a user coming free takes the line.
        if st.waiting.is_empty() && st.hand(ticket) {
            return;
        }
        if (self.users.live_user_count() as u64) < u64::from(self.max_vus) {
            let pool = Arc::clone(&self.pool);
            self.users
                .start_with(1, || Work::Tickets(Arc::clone(&pool), Some(ticket)));
        } else if now <= ticket.due + st.max_delay {
            // Not yet past its due time (started within the lookahead, or due this very
            // instant, a user just started may not have offered itself yet) or within
            // its wait: it waits in line for a user coming free, and is dropped only if
            // none has by its due time plus `max_delay`. Dropping an iteration the moment the
            // scheduler looked ahead at it counted users as busy that came free in time:
            // at 67,000 iterations/s and 50 users, two thirds were dropped so.
            st.waiting.push_back(ticket.due);
        } else {
            self.dropped += 1;
        }
    }

    pub(crate) fn pause(&mut self, now: Instant) {
        if self.paused_at.is_none() {
            self.paused_at = Some(now);
        }
        self.pool.state().paused = true;
        self.users.pause_all_users(now);
    }

    pub(crate) fn resume(&mut self, now: Instant) {
        if let Some(at) = self.paused_at.take() {
            let paused = now.saturating_duration_since(at);
            self.origin += paused;
            let mut st = self.pool.state();
            st.paused = false;
            // Those in line did not wait while the run was paused.
            for due in &mut st.waiting {
                *due += paused;
            }
        }
        self.users.resume_all_users(now);
    }

    /// Stops starting iterations at `now`; users finish theirs by `deadline`. Iterations
    /// still in line never start, nor do those of this node that were due by now (or by
    /// the schedule's end) and not yet handed out (the scheduler was late, say a stalled
    /// process): both are dropped, so due = done + dropped + interrupted always holds.
    pub(crate) fn end(&mut self, now: Instant, deadline: Instant) {
        if !self.ended {
            let t = self.scenario_time(now).min(self.schedule.length());
            let due = self.schedule.due_before(t);
            let mut k = self.share.next_from(self.next);
            while k < due {
                self.dropped += 1;
                k = self.share.next_from(k + 1);
            }
            self.next = k;
        }
        self.ended = true;
        {
            let mut st = self.pool.state();
            self.dropped += st.waiting.len() as u64 + std::mem::take(&mut st.dropped);
            st.waiting.clear();
        }
        self.flush_dropped();
        self.users.end(deadline);
    }

    pub(crate) fn users(&self) -> &UserManager {
        &self.users
    }

    pub(crate) fn users_mut(&mut self) -> &mut UserManager {
        &mut self.users
    }
}
