//! One virtual user's life: `on_start`, its tasks by execution mode with a wait after
//! every task (failed or not), pauses at task boundaries, a graceful stop, `on_stop`.
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
use aiotest_core::user::{ExecutionMode, TaskResult, UserContext, UserInstance, UserType};
use aiotest_core::wait::Wait;
use aiotest_metrics::MetricsCollector;
use tokio::sync::watch;
use tokio::time::Instant;

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
}

/// A user's stop and pause signals.
#[derive(Clone)]
pub(crate) struct Control {
    /// Graceful stop of this user: finish the task in flight, skip the wait, `on_stop`.
    pub(crate) stop: watch::Receiver<bool>,
    /// The run is paused: hold at the next task boundary.
    pub(crate) paused: watch::Receiver<bool>,
}

impl Control {
    fn is_stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// Resolves when the stop signal is (or already was) given.
    async fn stopped(&mut self) {
        // An error means the sender is gone: the run is over, so stop too.
        let _ = self.stop.wait_for(|s| *s).await;
    }

    /// Holds while paused; false if stopped meanwhile.
    async fn unpaused(&mut self) -> bool {
        if !*self.paused.borrow() {
            return !self.is_stopped();
        }
        let mut paused = self.paused.clone();
        tokio::select! {
            _ = paused.wait_for(|p| !*p) => !self.is_stopped(),
            () = self.stopped() => false,
        }
    }

    /// Sleeps `d`; false if stopped meanwhile.
    async fn sleep(&mut self, d: Duration) -> bool {
        if d.is_zero() {
            // Zero waits still yield, so a wait-free user cannot starve its thread.
            tokio::task::yield_now().await;
            return !self.is_stopped();
        }
        tokio::select! {
            () = tokio::time::sleep(d) => !self.is_stopped(),
            () = self.stopped() => false,
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
    elapsed: Duration,
    ctl: &mut Control,
) -> bool {
    let d = match user_type.wait_time().next(rng, elapsed) {
        Wait::Sleep(d) => d,
        Wait::Compute(fut) => tokio::select! {
            d = fut => d,
            () = ctl.stopped() => return false,
        },
    };
    ctl.sleep(d).await
}

/// Runs a user until it is stopped.
pub(crate) async fn run_user(
    user_type: UserType,
    user_id: u64,
    env: Arc<UserEnv>,
    mut ctl: Control,
) {
    let mut rng = Rng::new();
    let name = user_type.name_arc();
    while !ctl.is_stopped() {
        // The user's recorder, and the collector for any further recorder it needs (a
        // concurrent user with one HTTP client per slot, say).
        let ctx = UserContext::new(
            user_id,
            Arc::clone(&name),
            env.host.clone(),
            env.setup.clone(),
        )
        .with(env.collector.recorder())
        .with(env.collector.clone());
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
        let replaced = match user_type.execution_mode() {
            ExecutionMode::Sequential => {
                sequential(&mut *instance, &user_type, &env, &mut ctl, &mut rng).await
            }
            ExecutionMode::Concurrent => concurrent(&*instance, &user_type, &env, &ctl).await,
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

/// Tasks one at a time. Returns true if a task panicked (the user must be replaced).
async fn sequential(
    instance: &mut dyn UserInstance,
    user_type: &UserType,
    env: &UserEnv,
    ctl: &mut Control,
    rng: &mut Rng,
) -> bool {
    let mut scheduler = user_type.scheduler();
    loop {
        if !ctl.unpaused().await {
            return false;
        }
        let index = scheduler.next_task(rng);
        let Some(fut) = instance.run_task(index) else {
            return false;
        };
        let started = Instant::now();
        let outcome = call(
            fut,
            &user_type.tasks()[index].name,
            user_type.name(),
            &env.stats,
        )
        .await;
        env.stats.tasks.fetch_add(1, Ordering::Relaxed);
        if let Outcome::Panicked = outcome {
            return true;
        }
        if !wait_after(user_type, rng, started.elapsed(), ctl).await {
            return false;
        }
    }
}

/// A continuous pool of `max_concurrent_tasks` slots, each picking its next task by
/// weight as soon as its previous task and wait are done. Returns true if a task
/// panicked: the other slots then finish their task in flight and the user is replaced.
async fn concurrent(
    instance: &dyn UserInstance,
    user_type: &UserType,
    env: &UserEnv,
    ctl: &Control,
) -> bool {
    let (abandon_tx, abandon_rx) = watch::channel(false);
    let slots: Vec<Pin<Box<dyn Future<Output = bool> + Send + '_>>> = (0..user_type.max_concurrent_tasks())
        .map(|_| {
            // A slot stops on the user's stop or when another slot panicked.
            let mut slot_ctl = ctl.clone();
            let mut abandon = abandon_rx.clone();
            let abandon_tx = abandon_tx.clone();
            let fut: Pin<Box<dyn Future<Output = bool> + Send + '_>> = Box::pin(async move {
                let mut rng = Rng::new();
                let mut scheduler = user_type.scheduler();
                loop {
                    let proceed = tokio::select! {
                        ok = slot_ctl.unpaused() => ok,
                        _ = abandon.wait_for(|a| *a) => false,
                    };
                    if !proceed || *abandon.borrow() {
                        return false;
                    }
                    let index = scheduler.next_task(&mut rng);
                    let Some(fut) = instance.run_shared_task(index) else {
                        return false;
                    };
                    let started = Instant::now();
                    let outcome = call(fut, &user_type.tasks()[index].name, user_type.name(), &env.stats).await;
                    env.stats.tasks.fetch_add(1, Ordering::Relaxed);
                    if let Outcome::Panicked = outcome {
                        let _ = abandon_tx.send(true);
                        return true;
                    }
                    let waited = tokio::select! {
                        ok = wait_after(user_type, &mut rng, started.elapsed(), &mut slot_ctl) => ok,
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
