//! [`StopSignal`]: a user's graceful stop, as the user's own clients see it. The runner
//! gives it once; a client reads it between attempts (no retry starts after it) and
//! awaits it in a back-off, so nothing a user does outlives the run's graceful stop.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

/// A one-way stop flag that can be awaited. Clones share it.
///
/// ```
/// use aiotest_core::stop::StopSignal;
/// let stop = StopSignal::new();
/// let seen_by_client = stop.clone();
/// assert!(!seen_by_client.is_stopped());
/// stop.stop();
/// assert!(seen_by_client.is_stopped());
/// ```
#[derive(Clone, Default)]
pub struct StopSignal(Arc<Inner>);

#[derive(Default)]
struct Inner {
    stopped: AtomicBool,
    /// Who waits for it. A `std` mutex: held only to push or take wakers, never across
    /// an await.
    waiting: Mutex<Vec<Waker>>,
}

impl std::fmt::Debug for StopSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("StopSignal")
            .field(&self.is_stopped())
            .finish()
    }
}

impl StopSignal {
    /// A signal not yet given.
    pub fn new() -> Self {
        Self::default()
    }

    /// Gives the signal (again is a no-op) and wakes whoever awaits it.
    pub fn stop(&self) {
        self.0.stopped.store(true, Ordering::Release);
        let waiting = std::mem::take(&mut *self.lock());
        for w in waiting {
            w.wake();
        }
    }

    /// Whether the signal was given.
    #[inline]
    pub fn is_stopped(&self) -> bool {
        self.0.stopped.load(Ordering::Acquire)
    }

    /// Resolves once the signal is given (at once if it was).
    pub fn stopped(&self) -> Stopped<'_> {
        Stopped(self)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Waker>> {
        // A poisoned lock still holds a valid list of wakers.
        self.0.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The future of [`StopSignal::stopped`].
#[derive(Debug)]
pub struct Stopped<'a>(&'a StopSignal);

impl Future for Stopped<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.is_stopped() {
            return Poll::Ready(());
        }
        let mut waiting = self.0.lock();
        if !waiting.iter().any(|w| w.will_wake(cx.waker())) {
            waiting.push(cx.waker().clone());
        }
        drop(waiting);
        // Given between the first look and the push: its wake-up may have missed us.
        if self.0.is_stopped() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn an_awaited_stop_wakes_its_waiter_once_and_then_resolves() {
        let stop = StopSignal::new();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&count));
        let mut cx = Context::from_waker(&waker);
        let mut fut = stop.stopped();
        assert!(Pin::new(&mut fut).poll(&mut cx).is_pending());
        assert!(
            Pin::new(&mut fut).poll(&mut cx).is_pending(),
            "polled twice"
        );
        assert_eq!(stop.lock().len(), 1, "one waker kept for one waiter");
        stop.clone().stop();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(Pin::new(&mut fut).poll(&mut cx).is_ready());
        assert!(Pin::new(&mut stop.stopped()).poll(&mut cx).is_ready());
    }
}
