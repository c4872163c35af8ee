//! Clock work of the hot path: the request timeout without a timer per request, and
//! wall-clock timestamps without a second clock read per request.
//!
//! Registering a tokio timer for every request and removing it again is a large share of
//! a kept-alive request's CPU cost (about 1,000 instructions of ~20,000, by callgrind). A
//! client instead keeps one timer and re-arms it only when its deadline lags the needed
//! one by more than a slack, so about once a second. The timer may then fire up to the
//! slack *early*; it never fires late. When it fires, the real deadline is checked: if it
//! has not passed, the timer is re-armed to it and the wait goes on. A request therefore
//! times out exactly at its deadline, as with `tokio::time::timeout_at`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::{Instant, Sleep};

/// Re-arm when the armed deadline is more than this much earlier than needed (or a
/// sixteenth of the timeout, if that is smaller).
const MAX_SLACK: Duration = Duration::from_secs(1);

/// One reusable timer per client, for waits that must end `timeout` after they start.
pub(crate) struct CoarseTimer {
    timeout: Duration,
    slack: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    /// The starts the armed sleep serves: a wait started in this window has its deadline
    /// at most the slack after the sleep's, so the sleep fires at most that early.
    window: Option<(Instant, Instant)>,
    /// The waker the sleep holds, when it is registered and has not fired since. While
    /// the same task waits, the sleep need not be polled again: it wakes that task.
    registered: Option<Waker>,
}

impl CoarseTimer {
    /// A timer for waits of `timeout`.
    pub(crate) fn new(timeout: Duration) -> Self {
        CoarseTimer {
            timeout,
            slack: MAX_SLACK.min(timeout / 16),
            sleep: None,
            window: None,
            registered: None,
        }
    }

    /// Waits from now on end `timeout` after they start (a request's own timeout); the
    /// armed sleep is dropped when the timeout changes.
    #[inline]
    pub(crate) fn set_timeout(&mut self, timeout: Duration) {
        if timeout != self.timeout {
            self.timeout = timeout;
            self.slack = MAX_SLACK.min(timeout / 16);
            self.window = None;
        }
    }

    /// Prepares the timer for a wait started at `started`. Most calls find the armed
    /// sleep good enough and compare two instants; the deadline is not even computed.
    pub(crate) fn arm(&mut self, started: Instant) {
        if let Some((from, to)) = self.window
            && from <= started
            && started <= to
        {
            return;
        }
        let deadline = started + self.timeout;
        match &mut self.sleep {
            Some(sleep) => sleep.as_mut().reset(deadline),
            None => self.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
        }
        self.window = Some((started, started + self.slack));
        self.registered = None;
    }

    /// Polls `fut` under the armed timer: `Ready(Ok)` when it completes, `Ready(Err(()))`
    /// once the wait started at `started` has lasted the timeout.
    pub(crate) fn poll<F: Future>(
        &mut self,
        cx: &mut Context<'_>,
        fut: Pin<&mut F>,
        started: Instant,
    ) -> Poll<Result<F::Output, ()>> {
        if let Poll::Ready(v) = fut.poll(cx) {
            return Poll::Ready(Ok(v));
        }
        let Some(sleep) = &mut self.sleep else {
            // Not armed: a caller error, but never a panic; arm it now.
            self.arm(started);
            return self.poll_sleep(cx, started);
        };
        let holds_this_waker = self
            .registered
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()));
        if holds_this_waker && !sleep.is_elapsed() {
            return Poll::Pending;
        }
        self.poll_sleep(cx, started)
    }

    fn poll_sleep<T>(&mut self, cx: &mut Context<'_>, started: Instant) -> Poll<Result<T, ()>> {
        let Some(sleep) = &mut self.sleep else {
            return Poll::Pending;
        };
        loop {
            match sleep.as_mut().poll(cx) {
                Poll::Pending => {
                    self.registered = Some(cx.waker().clone());
                    return Poll::Pending;
                }
                Poll::Ready(()) => {
                    let deadline = started + self.timeout;
                    if Instant::now() >= deadline {
                        self.registered = None;
                        return Poll::Ready(Err(()));
                    }
                    // Fired early: wait out the rest of the real deadline. The window
                    // closes, so the next wait re-arms.
                    sleep.as_mut().reset(deadline);
                    self.window = None;
                }
            }
        }
    }

    /// Runs `fut`, started at `started`, until it completes (`Ok`) or times out
    /// (`Err(())`).
    #[cfg(test)]
    pub(crate) async fn run<F: Future>(
        &mut self,
        fut: F,
        started: Instant,
    ) -> Result<F::Output, ()> {
        self.arm(started);
        let mut fut = std::pin::pin!(fut);
        std::future::poll_fn(|cx| self.poll(cx, fut.as_mut(), started)).await
    }
}

/// Re-read the wall clock when the last reading is older than this (monotonic time).
const WALL_REFRESH: Duration = Duration::from_secs(1);

/// Wall-clock microseconds for a record, derived from the monotonic instant the client
/// reads anyway: the wall clock is read at most once a second and the monotonic time
/// since then added to it. Records are stamped to the microsecond without a second
/// clock read per request; a step of the system clock shows after at most a second.
#[derive(Debug, Default)]
pub(crate) struct WallClock {
    /// The last wall-clock reading, the instant it was taken, and when it goes stale.
    anchor: Option<(Instant, u64, Instant)>,
}

impl WallClock {
    /// Microseconds since the Unix epoch at `now`.
    pub(crate) fn micros_at(&mut self, now: Instant) -> u64 {
        if let Some((at, us, stale)) = self.anchor
            && at <= now
            && now < stale
        {
            return us + (now - at).as_micros() as u64;
        }
        let us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        self.anchor = Some((now, us, now + WALL_REFRESH));
        us
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records whether it was woken.
    #[derive(Default)]
    struct Flag(std::sync::atomic::AtomicBool);

    impl std::task::Wake for Flag {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_latest_waker_is_the_one_woken_at_the_deadline() {
        use std::sync::Arc;
        let timeout = Duration::from_secs(10);
        let mut timer = CoarseTimer::new(timeout);
        let started = Instant::now();
        timer.arm(started);
        let mut fut = std::pin::pin!(std::future::pending::<()>());
        let (a, b) = (Arc::new(Flag::default()), Arc::new(Flag::default()));
        let (wa, wb) = (Waker::from(Arc::clone(&a)), Waker::from(Arc::clone(&b)));
        // Polled by one task, then (same wait) by another: the second must be woken.
        assert!(
            timer
                .poll(&mut Context::from_waker(&wa), fut.as_mut(), started)
                .is_pending()
        );
        assert!(
            timer
                .poll(&mut Context::from_waker(&wb), fut.as_mut(), started)
                .is_pending()
        );
        tokio::time::sleep(timeout).await;
        assert!(
            b.0.load(std::sync::atomic::Ordering::SeqCst),
            "the new waker"
        );
        assert_eq!(
            timer.poll(&mut Context::from_waker(&wb), fut.as_mut(), started),
            Poll::Ready(Err(()))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn wall_time_follows_the_monotonic_clock_and_is_re_read_each_second() {
        let mut wall = WallClock::default();
        let t0 = Instant::now();
        let w0 = wall.micros_at(t0);
        let real = |w: u64| {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_micros() as u64;
            now.abs_diff(w)
        };
        assert!(real(w0) < 1_000_000);
        // Within a second: the anchor plus the monotonic time elapsed, to the microsecond.
        assert_eq!(
            wall.micros_at(t0 + Duration::from_micros(250_123)),
            w0 + 250_123
        );
        // Past a second (paused clock: the wall clock barely moved): a fresh reading.
        let later = wall.micros_at(t0 + Duration::from_secs(30));
        assert!(real(later) < 1_000_000, "re-read, not extrapolated 30 s");
        // An instant before the anchor is read fresh too, never underflows.
        assert!(real(wall.micros_at(t0)) < 1_000_000);
    }

    #[tokio::test(start_paused = true)]
    async fn times_out_exactly_at_the_deadline_even_when_armed_early() {
        let timeout = Duration::from_secs(30);
        let mut timer = CoarseTimer::new(timeout);
        let t0 = Instant::now();
        // A fast request arms the timer at t0 + 30 s.
        assert_eq!(timer.run(async { 1 }, t0).await, Ok(1));
        // 900 ms later (within the slack) the timer is not re-armed: it would fire 900 ms
        // early for the next request, which must still wait its full 30 s.
        tokio::time::sleep(Duration::from_millis(900)).await;
        let start = Instant::now();
        let r = timer.run(std::future::pending::<()>(), start).await;
        assert_eq!(r, Err(()));
        assert_eq!(Instant::now() - start, timeout);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stale_timer_is_re_armed_and_completion_wins() {
        let timeout = Duration::from_millis(800);
        let mut timer = CoarseTimer::new(timeout);
        let t0 = Instant::now();
        assert_eq!(timer.run(async {}, t0).await, Ok(()));
        tokio::time::sleep(Duration::from_secs(5)).await;
        let start = Instant::now();
        let slow = async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            "done"
        };
        assert_eq!(timer.run(slow, start).await, Ok("done"));
        let r = timer
            .run(std::future::pending::<()>(), Instant::now())
            .await;
        assert_eq!(r, Err(()));
    }
}
