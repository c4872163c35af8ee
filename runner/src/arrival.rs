//! The open model: an arrival-rate scenario's schedule and its pool of users.
//!
//! Iterations are due on the scenario's [`ArrivalSchedule`] (this node's [`Share`] of it),
//! whatever earlier ones take. The scheduler hands each out [`AHEAD`] of its due time: to
//! a free user, which waits for the due time on the scenario's [`Pacer`] (to the tens of
//! microseconds, not on tokio's millisecond ticks) and then starts it, or into a line
//! that users coming free take from, first due first. An iteration that comes due with
//! no user free to take it gets a new user while there are fewer than `max_vus` (its
//! start-up is part of the iteration's lateness); otherwise it is dropped and counted
//! once it is `max_delay` past due (k6's rule, with `max_delay` zero). Every iteration's
//! requests report latency from its *intended* start, the lateness measured here
//! (coordinated omission corrected), and keep their service time beside it.
//!
//! The schedule runs on scenario time, which stops while the run is paused: a resume
//! continues where the pause left off, with no burst of catch-up iterations. Iterations
//! due while this node was busy elsewhere (a slow loop) are started late, not skipped:
//! their lateness says so.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use aiotest_core::scenario::{ArrivalSchedule, Share};
use aiotest_metrics::MetricsCollector;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::manager::UserManager;
use crate::pacer::Pacer;
use crate::user_loop::Work;

/// An arrival-rate iteration handed to a user: when it is due, and under which share of
/// the schedule it was handed out.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket {
    pub(crate) due: Instant,
    epoch: u64,
}

/// Where an arrival-rate scenario's iterations meet its users: the users (or slots of a
/// concurrent user) free for one, and the iterations handed out that wait for a user.
/// One is empty whenever the other is not: a user coming free takes the first in line
/// itself, with no wake-up of the scheduler in between.
pub(crate) struct Pool {
    state: Mutex<PoolState>,
    /// Bumped when this node's share of the schedule changes.
    epoch: AtomicU64,
    pacer: Pacer,
    collector: MetricsCollector,
    scenario: Arc<str>,
}

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
    /// Pre-allocated users that have not yet offered themselves: while any is starting,
    /// an iteration waits for it rather than being dropped (k6 readies its
    /// pre-allocated users before the scenario starts; here they start with it), for
    /// [`STARTING_GRACE`] at most.
    starting: u32,
    starting_until: Option<Instant>,
    /// When the scenario ended here: a ticket due by then that was never started is
    /// dropped.
    ended_at: Option<Instant>,
    /// From when the last new share applies: tickets of an earlier share due from then
    /// on belong to the new share's dealing.
    reshared_from: Option<Instant>,
}

impl PoolState {
    /// The first iteration in line still within its wait; those past it are dropped.
    fn first_waiting(&mut self, now: Instant) -> Option<Instant> {
        while let Some(due) = self.waiting.pop_front() {
            let starting = self.starting > 0 && self.starting_until.is_some_and(|u| now < u);
            if starting || now.saturating_duration_since(due) <= self.max_delay {
                return Some(due);
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
    fn new(max_delay: Duration, collector: MetricsCollector, scenario: Arc<str>) -> Self {
        Pool {
            state: Mutex::new(PoolState {
                max_delay,
                ..PoolState::default()
            }),
            epoch: AtomicU64::new(0),
            pacer: Pacer::new(),
            collector,
            scenario,
        }
    }

    fn state(&self) -> MutexGuard<'_, PoolState> {
        // Held only to move a sender or a due instant; never across an await.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where a user holding a ticket waits for its due time.
    pub(crate) fn pacer(&self) -> &Pacer {
        &self.pacer
    }

    /// Whether `t` is still this node's to run: false if a new share of the schedule
    /// took its due time elsewhere.
    pub(crate) fn still_ours(&self, t: &Ticket) -> bool {
        self.same_share(t) || Self::before_reshare(&self.state(), t)
    }

    fn same_share(&self, t: &Ticket) -> bool {
        t.epoch == self.epoch.load(Ordering::Acquire)
    }

    /// Due before the last new share applies: still this node's under any share.
    fn before_reshare(st: &PoolState, t: &Ticket) -> bool {
        st.reshared_from.is_none_or(|from| t.due < from)
    }

    /// A user stopped holding `t`, never started: dropped if it was due by the
    /// scenario's end here, back in line if the scenario goes on.
    pub(crate) fn abandon(&self, t: Ticket) {
        let mut st = self.state();
        match st.ended_at {
            Some(end) => {
                drop(st);
                if t.due <= end {
                    self.collector.add_dropped(&self.scenario, 1);
                }
            }
            None => {
                if self.same_share(&t) || Self::before_reshare(&st, &t) {
                    let at = st.waiting.partition_point(|d| *d <= t.due);
                    st.waiting.insert(at, t.due);
                }
            }
        }
    }

    fn ticket(&self, due: Instant) -> Ticket {
        Ticket {
            due,
            epoch: self.epoch.load(Ordering::Acquire),
        }
    }

    /// A slot whose channel is `tx` is free (for the first time if `first`, a
    /// pre-allocated user ready): it gets the first iteration in line, or waits on the
    /// free list for the next one due.
    pub(crate) fn offer(&self, tx: &mpsc::Sender<Ticket>, now: Instant, first: bool) {
        let mut st = self.state();
        if first {
            st.starting = st.starting.saturating_sub(1);
        }
        if !st.paused
            && let Some(due) = st.first_waiting(now)
        {
            // Its channel is empty: it has just finished the iteration it held.
            if tx.try_send(self.ticket(due)).is_ok() {
                return;
            }
            st.waiting.push_front(due);
        }
        st.free.push(tx.clone());
    }
}

/// One arrival-rate scenario on this node.
pub(crate) struct ArrivalRun {
    schedule: ArrivalSchedule,
    share: Share,
    /// The next iteration this node hands out.
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

/// Iterations are handed out this long before they are due, so a free user is waiting
/// on its due time (on the pacer, finely) when it comes: the scheduler itself wakes on
/// tokio's timer, a millisecond grain and later still on a busy runtime. It wakes again
/// when the next is due within half of this.
const AHEAD: Duration = Duration::from_millis(10);

/// How long iterations wait for pre-allocated users still starting, at most (one whose
/// start failed never offers itself).
const STARTING_GRACE: Duration = Duration::from_secs(5);

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
        let scenario = users.scenario();
        let pool = Arc::new(Pool::new(
            max_delay,
            collector.clone(),
            Arc::clone(&scenario),
        ));
        {
            let mut st = pool.state();
            st.starting = pre_allocated;
            st.starting_until = Some(now + STARTING_GRACE);
        }
        users.start_with(pre_allocated, || Work::Tickets(Arc::clone(&pool), None));
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
    /// changed). Iterations handed out from then on, in line or held by users, are left
    /// to the new share's dealing.
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
        let from = self.schedule.due_before(elapsed).max(share.from);
        self.next = share.next_from(from);
        if let Some(at) = self.schedule.due(from) {
            let from = self.origin + at;
            let mut st = self.pool.state();
            st.waiting.retain(|due| *due < from);
            st.reshared_from = Some(from);
            self.pool.epoch.fetch_add(1, Ordering::AcqRel);
        }
    }

    fn scenario_time(&self, now: Instant) -> Duration {
        let at = self.paused_at.unwrap_or(now);
        at.saturating_duration_since(self.origin)
    }

    /// Hands out what is due within [`AHEAD`] of `now`, starts users for iterations due
    /// with none free; says when to look again.
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
                Some(due) => {
                    if !st.hand(pool.ticket(due)) {
                        st.waiting.push_front(due);
                    }
                }
                None => break,
            }
        }
        let t = self.scenario_time(now);
        pool.pacer().set_window(self.window());
        let next_due = loop {
            let Some(due) = self.schedule.due(self.next) else {
                break None;
            };
            if due > t + AHEAD {
                break Some(now + (due - t - AHEAD / 2));
            }
            let due = match due.checked_sub(t) {
                Some(ahead) => now + ahead,
                None => now - (t - due),
            };
            // None is free while others wait in line: a user coming free takes the line.
            if !(st.waiting.is_empty() && st.hand(pool.ticket(due))) {
                st.waiting.push_back(due);
            }
            self.next = self.share.next_from(self.next + 1);
        };
        // Due with no user free (or it would have taken it): a new user while there
        // may be more, however late the scheduler looks; else dropped once past its wait.
        let mut users_short = false;
        while let Some(&due) = st.waiting.front() {
            if due > now {
                break;
            }
            if (self.users.live_user_count() as u64) >= u64::from(self.max_vus) {
                break;
            }
            st.waiting.pop_front();
            let ticket = pool.ticket(due);
            self.users
                .start_with(1, || Work::Tickets(Arc::clone(&pool), Some(ticket)));
            users_short = true;
        }
        if let Some(due) = st.first_waiting(now) {
            st.waiting.push_front(due);
        }
        let more_users = (self.users.live_user_count() as u64) < u64::from(self.max_vus);
        let line_due = st.waiting.front().copied().filter(|_| more_users);
        self.dropped += std::mem::take(&mut st.dropped);
        drop(st);
        if users_short {
            tracing::debug!(scenario = %self.scenario, "iterations came due with no user free: users started");
        }
        self.flush_dropped();
        [next_due, users_due, line_due].into_iter().flatten().min()
    }

    /// How close together waits may end as one: the time this node's next `max_vus`
    /// iterations take to come due (the pacer keeps it between 10 µs and 0.5 ms), or
    /// 10 µs below 2,000 iterations/s. Only free users wait, so a burst is never more
    /// than the users free for it, and one wake of the runtime starts several iterations:
    /// each wake of an idle runtime costs microseconds of CPU. Measured at 150,000
    /// iterations/s with 50 users, a window of a quarter of that span used 99% of the
    /// generator's core and dropped 3% of the iterations where this one used 85-89% and
    /// dropped 1%; below 2,000/s the wakes cost too little to matter.
    fn window(&self) -> Duration {
        let users = u64::from(self.max_vus.max(1));
        let span = users * u64::from(self.share.of.max(1));
        match (
            self.schedule.due(self.next),
            self.schedule.due(self.next + span),
        ) {
            (Some(a), Some(b)) => {
                let span = b.saturating_sub(a);
                if span > Duration::from_micros(500) * users as u32 {
                    Duration::ZERO
                } else {
                    span
                }
            }
            _ => Duration::ZERO,
        }
    }

    fn flush_dropped(&mut self) {
        if self.dropped > 0 {
            self.collector
                .add_dropped(&self.scenario, std::mem::take(&mut self.dropped));
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
    /// due by now that never started are dropped: those in line, those held by users
    /// that had not started them, and those of this node not yet handed out (the
    /// scheduler was late, say a stalled process). Those not yet due were never due. So
    /// due = done + dropped + interrupted always holds.
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
            let end = now;
            st.ended_at.get_or_insert(end);
            let due_by_end = st.waiting.iter().filter(|d| **d <= end).count();
            self.dropped += due_by_end as u64 + std::mem::take(&mut st.dropped);
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
