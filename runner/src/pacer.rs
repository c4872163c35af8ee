//! Waits that end on time to the tens of microseconds, for the open model.
//!
//! tokio's timer wakes no finer than a millisecond: every sleep ends on the next
//! millisecond's tick, so iterations due anywhere within one millisecond would all start
//! together on its tick, a burst of `rate / 1000`. A [`Pacer`] keeps the waits of one
//! arrival-rate scenario in a heap and arms a Linux `timerfd` (nanosecond resolution)
//! for the earliest, registered with the runtime's own reactor: the runtime wakes when it
//! fires, with no thread of its own and no busy waiting. A wait registered later than the
//! one armed costs a lock and a heap push; one registered earlier re-arms the timer.
//!
//! Where there is no `timerfd` (not Linux, or it could not be made) or the runtime's
//! clock is paused (tests), the waits are tokio's, and end up to its millisecond early
//! rather than up to a millisecond late.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

/// Waits due this close together end together: one wake of the runtime for them, at
/// the least. [`Pacer::set_window`] widens it.
const EARLY: Duration = Duration::from_micros(10);

/// The widest window [`Pacer::set_window`] allows.
const WIDEST: Duration = Duration::from_micros(500);

/// On tokio's timer, waits end up to this early: its grain.
const COARSE: Duration = Duration::from_millis(1);

/// The waits of one arrival-rate scenario.
pub(crate) struct Pacer {
    #[cfg(target_os = "linux")]
    fine: Option<Arc<fine::Fine>>,
    #[cfg(target_os = "linux")]
    driver: Option<tokio::task::JoinHandle<()>>,
}

impl Pacer {
    /// A pacer on the current runtime: a `timerfd` if it can have one and the clock runs.
    pub(crate) fn new() -> Self {
        #[cfg(target_os = "linux")]
        {
            if clock_is_paused() {
                return Pacer {
                    fine: None,
                    driver: None,
                };
            }
            match fine::Fine::new() {
                Ok(f) => {
                    let f = Arc::new(f);
                    let driver = tokio::spawn(fine::drive(Arc::clone(&f)));
                    Pacer {
                        fine: Some(f),
                        driver: Some(driver),
                    }
                }
                Err(e) => {
                    tracing::debug!("no timerfd ({e}): the open model waits on tokio's timer");
                    Pacer {
                        fine: None,
                        driver: None,
                    }
                }
            }
        }
        #[cfg(not(target_os = "linux"))]
        Pacer {}
    }

    /// Whether waits end finer than tokio's millisecond.
    #[cfg(test)]
    pub(crate) fn is_fine(&self) -> bool {
        #[cfg(target_os = "linux")]
        return self.fine.is_some();
        #[cfg(not(target_os = "linux"))]
        false
    }

    /// Waits due within `window` of one another end together, the later ones early (at
    /// least 10 µs, at most 0.5 ms). Each wake of an idle runtime costs some
    /// microseconds of CPU; a window wide enough to wake for several waits at a time keeps
    /// a generator that starts iterations one at a time from spending itself on wake-ups.
    pub(crate) fn set_window(&self, window: Duration) {
        #[cfg(target_os = "linux")]
        if let Some(f) = &self.fine {
            f.set_window(window.clamp(EARLY, WIDEST));
        }
        #[cfg(not(target_os = "linux"))]
        let _ = window;
    }

    /// Whether a wait until `at` would end at once (`now` is the time).
    pub(crate) fn is_due(&self, at: Instant, now: Instant) -> bool {
        #[cfg(target_os = "linux")]
        if let Some(f) = &self.fine {
            return now + f.window() >= at;
        }
        now + COARSE >= at
    }

    /// Resolves at `at` (up to the window early, with others due then; on tokio's timer,
    /// up to a millisecond early).
    pub(crate) async fn until(&self, at: Instant) {
        #[cfg(target_os = "linux")]
        if let Some(f) = &self.fine {
            return std::future::poll_fn(|cx| f.poll_until(at, cx)).await;
        }
        // tokio's timer ends a sleep on the millisecond tick after it is due: sleep to
        // the tick before, and start up to a millisecond early, never late.
        if Instant::now() + COARSE < at {
            tokio::time::sleep_until(at - COARSE).await;
        }
    }
}

impl Drop for Pacer {
    fn drop(&mut self) {
        #[cfg(target_os = "linux")]
        if let Some(d) = self.driver.take() {
            d.abort();
        }
    }
}

/// Whether the runtime's clock stands still (tokio's paused test clock): it then does
/// not move while real time passes.
#[cfg(target_os = "linux")]
fn clock_is_paused() -> bool {
    let at = Instant::now();
    let real = std::time::Instant::now();
    while real.elapsed() < Duration::from_micros(2) {
        std::hint::spin_loop();
    }
    Instant::now() == at
}

#[cfg(target_os = "linux")]
mod fine {
    use std::cmp::Ordering;
    use std::collections::BinaryHeap;
    use std::os::fd::OwnedFd;
    use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
    use std::sync::{Arc, Mutex, MutexGuard};
    use std::task::{Context, Poll, Waker};
    use std::time::Duration;

    use rustix::time::{
        Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, timerfd_create,
        timerfd_settime,
    };
    use tokio::io::unix::AsyncFd;
    use tokio::time::Instant;

    use super::EARLY;

    /// A wait: when it ends and whom to wake. Ordered earliest first.
    struct Entry {
        at: Instant,
        waker: Waker,
    }

    impl PartialEq for Entry {
        fn eq(&self, other: &Self) -> bool {
            self.at == other.at
        }
    }
    impl Eq for Entry {}
    impl PartialOrd for Entry {
        fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
            Some(self.cmp(other))
        }
    }
    impl Ord for Entry {
        fn cmp(&self, other: &Self) -> Ordering {
            // BinaryHeap is a max-heap: the earliest wait is the greatest.
            other.at.cmp(&self.at)
        }
    }

    #[derive(Default)]
    struct Waits {
        heap: BinaryHeap<Entry>,
        /// When the timer is armed for, if it is.
        armed: Option<Instant>,
    }

    pub(super) struct Fine {
        fd: AsyncFd<OwnedFd>,
        waits: Mutex<Waits>,
        /// Waits due within this many nanoseconds of the first end with it.
        window_ns: AtomicU64,
    }

    impl Fine {
        pub(super) fn new() -> std::io::Result<Self> {
            let fd = timerfd_create(
                TimerfdClockId::Monotonic,
                TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
            )?;
            // `AsyncFd::new` is deprecated because a `T` may close its descriptor while
            // registered; an `OwnedFd` closes it only when dropped, after deregistering.
            #[allow(deprecated)]
            let fd = AsyncFd::with_interest(fd, tokio::io::Interest::READABLE)?;
            Ok(Fine {
                fd,
                waits: Mutex::default(),
                window_ns: AtomicU64::new(EARLY.as_nanos() as u64),
            })
        }

        pub(super) fn set_window(&self, window: Duration) {
            self.window_ns
                .store(window.as_nanos() as u64, AtomicOrdering::Relaxed);
        }

        pub(super) fn window(&self) -> Duration {
            Duration::from_nanos(self.window_ns.load(AtomicOrdering::Relaxed))
        }

        fn waits(&self) -> MutexGuard<'_, Waits> {
            // Held to push or pop a wait and arm the timer; never across an await.
            self.waits.lock().unwrap_or_else(|e| e.into_inner())
        }

        pub(super) fn poll_until(&self, at: Instant, cx: &mut Context<'_>) -> Poll<()> {
            let now = Instant::now();
            if now + self.window() >= at {
                return Poll::Ready(());
            }
            let mut w = self.waits();
            if w.armed.is_none_or(|a| at < a) {
                self.arm(at - now);
                w.armed = Some(at);
            }
            w.heap.push(Entry {
                at,
                waker: cx.waker().clone(),
            });
            Poll::Pending
        }

        /// Arms the timer to fire `after` from now (a zero would disarm it).
        fn arm(&self, after: Duration) {
            let value = after.max(Duration::from_nanos(1));
            let spec = Itimerspec {
                it_interval: rustix::time::Timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                },
                it_value: rustix::time::Timespec {
                    tv_sec: value.as_secs() as _,
                    tv_nsec: value.subsec_nanos() as _,
                },
            };
            if let Err(e) = timerfd_settime(self.fd.get_ref(), TimerfdTimerFlags::empty(), &spec) {
                // Cannot happen with a valid descriptor and value; the wait would then
                // end on the next one armed.
                tracing::warn!("cannot arm the open model's timer: {e}");
            }
        }

        /// Ends the waits due by now; arms the timer for the next. Returns whom to wake.
        fn fire(&self, woken: &mut Vec<Waker>) {
            let now = Instant::now();
            let window = self.window();
            let mut w = self.waits();
            while let Some(top) = w.heap.peek() {
                if top.at > now + window {
                    break;
                }
                if let Some(e) = w.heap.pop() {
                    woken.push(e.waker);
                }
            }
            w.armed = w.heap.peek().map(|e| e.at);
            if let Some(at) = w.armed {
                self.arm(at.saturating_duration_since(now));
            }
        }
    }

    /// Wakes the waits as the timer fires, until the pacer is dropped.
    pub(super) async fn drive(fine: Arc<Fine>) {
        let mut woken = Vec::new();
        let mut buf = [0u8; 8];
        loop {
            let mut ready = match fine.fd.readable().await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!("the open model's timer failed: {e}");
                    return;
                }
            };
            // Reading takes the expiry count and clears the readiness.
            if let Ok(Err(e)) =
                ready.try_io(|fd| rustix::io::read(fd.get_ref(), &mut buf).map_err(Into::into))
                && e.kind() != std::io::ErrorKind::WouldBlock
            {
                tracing::warn!("the open model's timer failed: {e}");
                return;
            }
            fine.fire(&mut woken);
            for w in woken.drain(..) {
                w.wake();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_paused_clock_waits_on_tokio_s_timer() {
        let p = Pacer::new();
        assert!(!p.is_fine());
        let t0 = Instant::now();
        p.until(t0 + Duration::from_millis(250)).await;
        assert_eq!(Instant::now() - t0, Duration::from_millis(249));
        // Within its grain: at once.
        p.until(Instant::now() + Duration::from_micros(900)).await;
        assert_eq!(Instant::now() - t0, Duration::from_millis(249));
    }

    #[cfg(target_os = "linux")]
    #[tokio::test(flavor = "current_thread")]
    async fn waits_end_in_order_and_not_before_their_time() {
        let p = Arc::new(Pacer::new());
        assert!(p.is_fine());
        let t0 = Instant::now() + Duration::from_millis(2);
        // Registered out of order: later ones first, then earlier ones re-arm the timer.
        let offsets_us = [900u64, 300, 700, 100, 500];
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for us in offsets_us {
            let (p, tx) = (Arc::clone(&p), tx.clone());
            tokio::spawn(async move {
                let at = t0 + Duration::from_micros(us);
                p.until(at).await;
                let _ = tx.send((us, Instant::now()));
            });
        }
        drop(tx);
        let mut ended = Vec::new();
        while let Some(e) = rx.recv().await {
            ended.push(e);
        }
        let order: Vec<u64> = ended.iter().map(|e| e.0).collect();
        assert_eq!(order, [100, 300, 500, 700, 900]);
        for (us, at) in ended {
            let due = t0 + Duration::from_micros(us);
            assert!(at + EARLY >= due, "{us} µs ended {:?} early", due - at);
        }
    }
}
