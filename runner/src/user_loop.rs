//! One virtual user's life: `on_start`, iterations of its tasks as its scenario's
//! executor hands them out, a wait after every task (failed or not), pauses at task
//! boundaries, a graceful stop, `on_stop`.
//!
//! An iteration is one pass of a sequential user's tasks (a task of weight `n` runs `n`
//! times in it) or one weighted pick of a concurrent user's slot. Where the next one
//! comes from is the only thing executors change ([`Work`]): a closed-model user loops,
//! an iteration executor's user draws on a budget, an arrival-rate user waits for a ticket
//! from the schedule. A stop lets the iteration in flight finish (without its waits);
//! one cut off when the graceful stop period ends is recorded as interrupted.
//!
//! A task that panics is caught and counted; the user is then replaced by a fresh
//! instance of its type (state reset, `on_start` again), so the target count holds. A
//! factory that panics is retried after a second, so a broken user type cannot spin.

use std::any::Any;
use std::future::{Future, poll_fn};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use aiotest_core::BoxFuture;
use aiotest_core::fastrand::Rng;
use aiotest_core::lifecycle::SetupData;
use aiotest_core::scenario::IterationLateness;
use aiotest_core::stop::StopSignal;
use aiotest_core::user::{ExecutionMode, TaskResult, UserContext, UserInstance, UserType};
use aiotest_core::wait::Wait;
use aiotest_metrics::IdleFlush;
use aiotest_metrics::{MetricsCollector, Recorder};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::arrival::{Pool, Ticket};

/// Counts kept across all users of a run.
#[derive(Debug, Default)]
pub struct UserStats {
    /// Tasks (and hooks) that returned an error.
    pub task_errors: AtomicU64,
    /// Tasks, hooks or factories that panicked (each replaced the user).
    pub panics: AtomicU64,
    /// Tasks run to completion (successful or not).
    pub tasks: AtomicU64,
}

/// What every user of a run shares.
pub(crate) struct UserEnv {
    pub(crate) collector: MetricsCollector,
    pub(crate) host: Option<Arc<str>>,
    pub(crate) setup: Option<SetupData>,
    pub(crate) stats: Arc<UserStats>,
    /// The next user's number, unique within the run across scenarios.
    pub(crate) next_id: AtomicU64,
}

/// The runner's end of a user's stop: the user loop's channel, and the same stop as the
/// user's own clients see it ([`StopSignal`], in the user's context).
pub(crate) struct UserStop {
    tx: watch::Sender<bool>,
    signal: StopSignal,
}

impl UserStop {
    /// A stop not yet given, and the user's [`Control`] over it and `paused`.
    pub(crate) fn new(paused: watch::Receiver<bool>) -> (UserStop, Control) {
        let (tx, rx) = watch::channel(false);
        let signal = StopSignal::new();
        let mut control = Control::new(rx, paused);
        control.signal = signal.clone();
        (UserStop { tx, signal }, control)
    }

    /// Stops the user gracefully.
    pub(crate) fn give(&self) {
        let _ = self.tx.send(true);
        self.signal.stop();
    }
}

/// A user's stop and pause signals. Each is read through its version first, a plain
/// atomic load; the value (behind the channel's lock) only when it changed.
#[derive(Clone)]
pub(crate) struct Control {
    /// The stop as the user's clients see it.
    signal: StopSignal,
    /// The user's recorders: handed on while the user idles, before an interval closes
    /// without their records.
    recorders: Vec<IdleFlush>,
    /// Graceful stop of this user: finish the iteration in flight, skip the waits,
    /// `on_stop`.
    stop: watch::Receiver<bool>,
    /// The run is paused: hold at the next task boundary.
    paused: watch::Receiver<bool>,
    /// The stop was seen given; it is never taken back.
    stop_seen: bool,
    /// The pause signal as last read.
    paused_seen: bool,
}

fn wall_now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Whether a receiver may hold a value not yet read (a closed channel counts).
fn may_have_changed(rx: &watch::Receiver<bool>) -> bool {
    !matches!(rx.has_changed(), Ok(false))
}

impl Control {
    pub(crate) fn new(mut stop: watch::Receiver<bool>, mut paused: watch::Receiver<bool>) -> Self {
        let stop_seen = *stop.borrow_and_update();
        let paused_seen = *paused.borrow_and_update();
        Control {
            signal: StopSignal::new(),
            recorders: Vec::new(),
            stop,
            paused,
            stop_seen,
            paused_seen,
        }
    }

    fn is_stopped(&mut self) -> bool {
        if !self.stop_seen && may_have_changed(&self.stop) {
            self.stop_seen = *self.stop.borrow_and_update();
        }
        self.stop_seen
    }

    /// Resolves when the stop signal is (or already was) given.
    async fn stopped(&mut self) {
        // An error means the sender is gone: the run is over, so stop too.
        if self.stop.wait_for(|s| *s).await.is_ok() {
            self.stop_seen = true;
        }
    }

    /// Watches `recorder` while the user idles.
    fn watch(&mut self, recorder: IdleFlush) {
        self.recorders.push(recorder);
    }

    /// Awaits `fut` while the user does nothing else: a recorder whose oldest record
    /// would otherwise stay buffered past its interval's close is handed on meanwhile.
    async fn idle<F: Future>(&self, fut: F) -> F::Output {
        let mut fut = std::pin::pin!(fut);
        loop {
            let Some(due) = self.recorders.iter().filter_map(IdleFlush::due_us).min() else {
                return fut.await;
            };
            let wait = Duration::from_micros(due.saturating_sub(wall_now_us()));
            tokio::select! {
                out = &mut fut => return out,
                () = tokio::time::sleep(wait) => {
                    // The clock is not asked again: a recorder due by then flushes, so
                    // the loop ends even on a paused clock.
                    for r in &self.recorders {
                        if r.due_us().is_some_and(|d| d <= due) {
                            r.flush();
                        }
                    }
                }
            }
        }
    }

    /// Waits while the run is paused, unless stopped; true if it waited.
    async fn hold_while_paused(&mut self) -> bool {
        if may_have_changed(&self.paused) {
            self.paused_seen = *self.paused.borrow_and_update();
        }
        if !self.paused_seen || self.is_stopped() {
            return false;
        }
        // A clone waits, so this receiver still sees the change on its next read.
        let mut paused = self.paused.clone();
        let mut stop = self.stop.clone();
        self.idle(async {
            tokio::select! {
                _ = paused.wait_for(|p| !*p) => {}
                _ = stop.wait_for(|s| *s) => {}
            }
        })
        .await;
        true
    }

    /// Sleeps `d`; false if stopped meanwhile.
    async fn sleep(&mut self, d: Duration) -> bool {
        if d.is_zero() {
            // Zero waits still yield, so a wait-free user cannot starve its thread.
            tokio::task::yield_now().await;
            return !self.is_stopped();
        }
        let mut stop = self.stop.clone();
        let stopped = self
            .idle(async {
                tokio::select! {
                    () = tokio::time::sleep(d) => false,
                    _ = stop.wait_for(|s| *s) => true,
                }
            })
            .await;
        if stopped {
            self.stop_seen = true;
        }
        !stopped && !self.is_stopped()
    }
}

/// Where a user's iterations come from; see the [module docs](self).
pub(crate) enum Work {
    /// Loop until stopped (closed model).
    Loop,
    /// Draw each iteration from a budget shared by the scenario's users here.
    Shared(Arc<AtomicU64>),
    /// Run this many iterations.
    PerUser(u64),
    /// Run what the schedule hands out: each slot takes the first iteration waiting in
    /// the pool, or registers there as free. A user started for a ticket no free user
    /// could take runs that one first.
    Tickets(Arc<Pool>, Option<Ticket>),
}

/// Where one slot of a user gets its next iteration.
enum Source {
    Loop,
    Budget(Arc<AtomicU64>),
    Tickets(TicketSlot),
}

/// A slot of the open model: its channel, the sender it offers to the pool, the pool.
struct TicketSlot {
    rx: mpsc::Receiver<Ticket>,
    tx: mpsc::Sender<Ticket>,
    pool: Arc<Pool>,
    /// A ticket is already waiting in the channel: the slot is not offered yet.
    preloaded: bool,
    /// It has not offered itself yet: a pre-allocated user getting ready.
    first: bool,
}

impl Source {
    fn for_slots(work: &Work, slots: usize) -> Vec<Source> {
        match work {
            Work::Loop => (0..slots).map(|_| Source::Loop).collect(),
            Work::Shared(b) => (0..slots).map(|_| Source::Budget(Arc::clone(b))).collect(),
            // The user's own budget, shared by its slots.
            Work::PerUser(n) => {
                let b = Arc::new(AtomicU64::new(*n));
                (0..slots).map(|_| Source::Budget(Arc::clone(&b))).collect()
            }
            Work::Tickets(free, first) => (0..slots)
                .map(|i| {
                    let (tx, rx) = mpsc::channel(1);
                    let preloaded = i == 0 && first.is_some_and(|t| tx.try_send(t).is_ok());
                    Source::Tickets(TicketSlot {
                        rx,
                        tx,
                        pool: Arc::clone(free),
                        preloaded,
                        // A user started for a ticket was not pre-allocated; a
                        // concurrent user counts once.
                        first: i == 0 && first.is_none(),
                    })
                })
                .collect(),
        }
    }

    fn open_model(&self) -> bool {
        matches!(self, Source::Tickets(..))
    }

    /// Offers a ticket slot to its pool: it takes the first iteration waiting there, or
    /// the next one due.
    fn offer(&mut self) {
        if let Source::Tickets(slot) = self {
            if slot.preloaded {
                // Its first ticket is already in its channel.
                slot.preloaded = false;
            } else {
                slot.pool
                    .offer(&slot.tx, Instant::now(), std::mem::take(&mut slot.first));
            }
        }
    }

    /// The next iteration: `Some(lateness)` (open model) or `Some(None)`, or `None` when
    /// there is none (stopped, budget spent).
    async fn next(&mut self, ctl: &mut Control) -> Option<Option<Duration>> {
        if ctl.is_stopped() {
            return None;
        }
        match self {
            Source::Loop => Some(None),
            Source::Budget(left) => left
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                .ok()
                .map(|_| None),
            Source::Tickets(TicketSlot { rx, tx, pool, .. }) => loop {
                let t = match rx.try_recv() {
                    Ok(t) => t,
                    Err(_) => {
                        let mut stop = ctl.stop.clone();
                        let next = ctl
                            .idle(async {
                                tokio::select! {
                                    t = rx.recv() => t,
                                    _ = stop.wait_for(|s| *s) => None,
                                }
                            })
                            .await;
                        match next {
                            Some(t) => t,
                            None => {
                                ctl.stop_seen = true;
                                return None;
                            }
                        }
                    }
                };
                // Handed out ahead of its due time: wait for it, finely. A wait shorter
                // than a millisecond hands no records on meanwhile.
                let now = Instant::now();
                let stopped = if pool.pacer().is_due(t.due, now) {
                    false
                } else {
                    let mut stop = ctl.stop.clone();
                    let wait = async {
                        tokio::select! {
                            () = pool.pacer().until(t.due) => false,
                            _ = stop.wait_for(|s| *s) => true,
                        }
                    };
                    if t.due < now + Duration::from_millis(1) {
                        wait.await
                    } else {
                        ctl.idle(wait).await
                    }
                };
                if stopped {
                    pool.abandon(t);
                    ctl.stop_seen = true;
                    return None;
                }
                if !pool.still_ours(&t) {
                    // A new share dealt it elsewhere: take the next one.
                    pool.offer(tx, Instant::now(), false);
                    continue;
                }
                // Paused meanwhile: the schedule stood still, so the due time moved on by
                // the pause.
                let held_from = Instant::now();
                let due = if ctl.hold_while_paused().await {
                    t.due + held_from.elapsed()
                } else {
                    t.due
                };
                return Some(Some(Instant::now().saturating_duration_since(due)));
            },
        }
    }
}

/// A future that turns a panic while polling into an `Err`.
struct CatchUnwind<F>(F);

impl<F: Future + Unpin> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match catch_unwind(AssertUnwindSafe(|| Pin::new(&mut self.0).poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

fn panic_message(p: &(dyn Any + Send)) -> &str {
    p.downcast_ref::<&str>()
        .copied()
        .or_else(|| p.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(non-string panic)")
}

/// How one task (or hook) call ended.
enum Outcome {
    Done,
    Panicked,
}

async fn call(
    fut: BoxFuture<'_, TaskResult>,
    what: &str,
    user_type: &str,
    stats: &UserStats,
) -> Outcome {
    match CatchUnwind(fut).await {
        Ok(Ok(())) => Outcome::Done,
        Ok(Err(e)) => {
            let n = stats.task_errors.fetch_add(1, Ordering::Relaxed) + 1;
            // The first errors in full, then a sample, so a failing task cannot flood logs.
            if n <= 10 || n.is_multiple_of(1000) {
                tracing::warn!(user_type, what, errors = n, "task error: {e}");
            }
            Outcome::Done
        }
        Err(p) => {
            stats.panics.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                user_type,
                what,
                "panicked: {}; the user is replaced",
                panic_message(&*p)
            );
            Outcome::Panicked
        }
    }
}

/// The wait after a task that took `elapsed`; false if stopped meanwhile.
async fn wait_after(
    user_type: &UserType,
    rng: &mut Rng,
    task_started: Instant,
    ctl: &mut Control,
) -> bool {
    let wait_time = user_type.wait_time();
    // A clock read per task, saved when the wait does not depend on the task's length.
    let elapsed = if wait_time.uses_task_elapsed() {
        task_started.elapsed()
    } else {
        Duration::ZERO
    };
    let d = match wait_time.next(rng, elapsed) {
        Wait::Sleep(d) => d,
        Wait::Compute(fut) => tokio::select! {
            d = fut => d,
            () = ctl.stopped() => return false,
        },
    };
    ctl.sleep(d).await
}

/// An iteration in flight: recorded when it completes, or as interrupted if it is
/// dropped first (the user was cancelled, or a task panicked).
struct Iteration<'r> {
    recorder: &'r mut Recorder,
    scenario: &'r str,
    started: Instant,
    done: bool,
}

impl Iteration<'_> {
    fn complete(mut self) {
        self.done = true;
        let us = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.recorder.record_iteration(self.scenario, us, false);
    }
}

impl Drop for Iteration<'_> {
    fn drop(&mut self) {
        if !self.done {
            let us = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX);
            self.recorder.record_iteration(self.scenario, us, true);
        }
    }
}

/// What one slot of a user needs.
struct SlotEnv<'a> {
    user_type: &'a UserType,
    env: &'a UserEnv,
    /// The collector of the user's scenario (tagged with its tags).
    collector: &'a MetricsCollector,
    scenario: &'a str,
    lateness: &'a IterationLateness,
}

/// Runs a user until it is stopped or its work is done.
pub(crate) async fn run_user(
    user_type: UserType,
    user_id: u64,
    scenario: Arc<str>,
    env: Arc<UserEnv>,
    collector: MetricsCollector,
    mut ctl: Control,
    work: Work,
) {
    let mut rng = Rng::new();
    let name = user_type.name_arc();
    let slots = match user_type.execution_mode() {
        ExecutionMode::Sequential => 1,
        ExecutionMode::Concurrent => user_type.max_concurrent_tasks(),
    };
    let mut sources = Source::for_slots(&work, slots);
    while !ctl.is_stopped() {
        let lateness = IterationLateness::closed();
        // The user's recorder, the collector for any further recorder it needs (a
        // concurrent user with one HTTP client per slot, say), and the lateness of its
        // iterations (open model).
        let recorder = collector.recorder();
        ctl.recorders.clear();
        ctl.watch(recorder.idle());
        let ctx = UserContext::new(
            user_id,
            Arc::clone(&name),
            env.host.clone(),
            env.setup.clone(),
        )
        .in_scenario(Arc::clone(&scenario))
        .with(recorder)
        .with(collector.clone())
        .with(lateness.clone())
        .with(ctl.signal.clone());
        let mut instance = match catch_unwind(AssertUnwindSafe(|| user_type.spawn(&ctx))) {
            Ok(i) => i,
            Err(p) => {
                env.stats.panics.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    user_type = &*name,
                    "user factory panicked: {}",
                    panic_message(&*p)
                );
                if !ctl.sleep(Duration::from_secs(1)).await {
                    return;
                }
                continue;
            }
        };
        if let Some(f) = instance.on_start()
            && let Outcome::Panicked = call(f, "on_start", &name, &env.stats).await
        {
            continue;
        }
        let slot_env = SlotEnv {
            user_type: &user_type,
            env: &env,
            collector: &collector,
            scenario: &scenario,
            lateness: &lateness,
        };
        let replaced = match user_type.execution_mode() {
            ExecutionMode::Sequential => {
                sequential(
                    &mut *instance,
                    &slot_env,
                    &mut ctl,
                    &mut rng,
                    &mut sources[0],
                )
                .await
            }
            ExecutionMode::Concurrent => {
                concurrent(&*instance, &slot_env, &ctl, &mut sources).await
            }
        };
        if replaced {
            continue;
        }
        if let Some(f) = instance.on_stop() {
            call(f, "on_stop", &name, &env.stats).await;
        }
        return;
    }
}

/// Tasks one at a time, iteration after iteration. Returns true if a task panicked (the
/// user must be replaced).
async fn sequential(
    instance: &mut dyn UserInstance,
    slot: &SlotEnv<'_>,
    ctl: &mut Control,
    rng: &mut Rng,
    source: &mut Source,
) -> bool {
    let user_type = slot.user_type;
    let mut scheduler = user_type.scheduler();
    let tasks = user_type.iteration_len();
    let open = source.open_model();
    let mut recorder = slot.collector.recorder_with(16);
    ctl.watch(recorder.idle());
    source.offer();
    while let Some(late) = source.next(ctl).await {
        slot.lateness.set(late);
        let iteration = Iteration {
            recorder: &mut recorder,
            scenario: slot.scenario,
            started: Instant::now(),
            done: false,
        };
        for j in 0..tasks {
            let held = ctl.hold_while_paused().await;
            let index = scheduler.next_task(rng);
            let Some(fut) = instance.run_task(index) else {
                return false;
            };
            // The iteration's first task starts with it (unless a pause came between):
            // one clock read for both.
            let started = if j == 0 && !held {
                iteration.started
            } else {
                Instant::now()
            };
            let outcome = call(
                fut,
                &user_type.tasks()[index].name,
                user_type.name(),
                &slot.env.stats,
            )
            .await;
            slot.env.stats.tasks.fetch_add(1, Ordering::Relaxed);
            if let Outcome::Panicked = outcome {
                return true;
            }
            // No wait after an open-model iteration: the schedule says when the next
            // starts. Once stopped, the iteration finishes without its waits.
            let last = j + 1 == tasks;
            if (last && open) || ctl.is_stopped() {
                continue;
            }
            wait_after(user_type, rng, started, ctl).await;
        }
        iteration.complete();
        source.offer();
    }
    false
}

/// A continuous pool of `max_concurrent_tasks` slots, each running iterations of one
/// weighted task pick as soon as its previous one (and its wait) is done. Returns true
/// if a task panicked: the other slots then finish their task in flight and the user is
/// replaced.
async fn concurrent(
    instance: &dyn UserInstance,
    slot: &SlotEnv<'_>,
    ctl: &Control,
    sources: &mut [Source],
) -> bool {
    let user_type = slot.user_type;
    let (abandon_tx, abandon_rx) = watch::channel(false);
    let slots: Vec<Pin<Box<dyn Future<Output = bool> + Send + '_>>> = sources
        .iter_mut()
        .map(|source| {
            // A slot stops on the user's stop or when another slot panicked.
            let mut slot_ctl = ctl.clone();
            let mut abandon = abandon_rx.clone();
            let abandon_tx = abandon_tx.clone();
            let fut: Pin<Box<dyn Future<Output = bool> + Send + '_>> = Box::pin(async move {
                let mut rng = Rng::new();
                let mut scheduler = user_type.scheduler();
                let mut recorder = slot.collector.recorder_with(16);
                slot_ctl.watch(recorder.idle());
                let open = source.open_model();
                source.offer();
                loop {
                    let next = tokio::select! {
                        n = async {
                            slot_ctl.hold_while_paused().await;
                            source.next(&mut slot_ctl).await
                        } => n,
                        _ = abandon.wait_for(|a| *a) => None,
                    };
                    let Some(late) = next else {
                        return false;
                    };
                    // Slots share the user's lateness: the HTTP client reads it when it
                    // records, so a slot's requests carry its own iteration's.
                    slot.lateness.set(late);
                    let iteration = Iteration {
                        recorder: &mut recorder,
                        scenario: slot.scenario,
                        started: Instant::now(),
                        done: false,
                    };
                    let index = scheduler.next_task(&mut rng);
                    let Some(fut) = instance.run_shared_task(index) else {
                        return false;
                    };
                    let started = iteration.started;
                    let outcome = call(
                        fut,
                        &user_type.tasks()[index].name,
                        user_type.name(),
                        &slot.env.stats,
                    )
                    .await;
                    slot.env.stats.tasks.fetch_add(1, Ordering::Relaxed);
                    if let Outcome::Panicked = outcome {
                        let _ = abandon_tx.send(true);
                        return true;
                    }
                    iteration.complete();
                    source.offer();
                    if open || slot_ctl.is_stopped() {
                        continue;
                    }
                    let waited = tokio::select! {
                        ok = wait_after(user_type, &mut rng, started, &mut slot_ctl) => ok,
                        _ = abandon.wait_for(|a| *a) => false,
                    };
                    if !waited {
                        return false;
                    }
                }
            });
            fut
        })
        .collect();
    join_all(slots).await.into_iter().any(|panicked| panicked)
}

/// Polls every future to completion, without spawning (they borrow the user).
async fn join_all<T>(futs: Vec<Pin<Box<dyn Future<Output = T> + Send + '_>>>) -> Vec<T> {
    let mut futs: Vec<_> = futs.into_iter().map(Some).collect();
    let mut out: Vec<Option<T>> = futs.iter().map(|_| None).collect();
    poll_fn(|cx| {
        let mut pending = false;
        for (slot, result) in futs.iter_mut().zip(out.iter_mut()) {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => {
                        *result = Some(v);
                        *slot = None;
                    }
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}
