//! The request timeout without a timer per request.
//!
//! Registering a tokio timer for every request and removing it again is a large share of
//! a kept-alive request's CPU cost (about 1,000 instructions of ~20,000, by callgrind). A
//! client instead keeps one timer and re-arms it only when its deadline lags the needed
//! one by more than a slack, so about once a second. The timer may then fire up to the
//! slack *early*; it never fires late. When it fires, the real deadline is checked: if it
//! has not passed, the timer is re-armed to it and the wait goes on. A request therefore
//! times out exactly at its deadline, as with `tokio::time::timeout_at`.

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::task::Poll;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// Re-arm when the armed deadline is more than this much earlier than needed (or a
/// sixteenth of the timeout, if that is smaller).
const MAX_SLACK: Duration = Duration::from_secs(1);

/// One reusable timer per client.
#[derive(Default)]
pub(crate) struct CoarseTimer {
    sleep: Option<Pin<Box<Sleep>>>,
    armed: Option<Instant>,
}

impl CoarseTimer {
    /// Runs `fut` until it completes (`Ok`) or `deadline` passes (`Err(())`).
    pub(crate) async fn run<F: Future>(
        &mut self,
        fut: F,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<F::Output, ()> {
        let slack = MAX_SLACK.min(timeout / 16);
        // Deadlines only move forward (now + a fixed timeout), so the armed one is never
        // later than the needed one: firing can be early, never late.
        let stale = self
            .armed
            .is_none_or(|a| a + slack < deadline || a > deadline);
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if stale {
            sleep.as_mut().reset(deadline);
            self.armed = Some(deadline);
        }
        let armed = &mut self.armed;
        let mut fut = pin!(fut);
        poll_fn(|cx| {
            if let Poll::Ready(v) = fut.as_mut().poll(cx) {
                return Poll::Ready(Ok(v));
            }
            loop {
                match sleep.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(()) if Instant::now() >= deadline => return Poll::Ready(Err(())),
                    Poll::Ready(()) => {
                        // Fired early: wait out the rest of the real deadline.
                        sleep.as_mut().reset(deadline);
                        *armed = Some(deadline);
                    }
                }
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn times_out_exactly_at_the_deadline_even_when_armed_early() {
        let mut timer = CoarseTimer::default();
        let timeout = Duration::from_secs(30);
        let t0 = Instant::now();
        // A fast request arms the timer at t0 + 30 s.
        assert_eq!(timer.run(async { 1 }, t0 + timeout, timeout).await, Ok(1));
        // 900 ms later (within the slack) the timer is not re-armed: it would fire 900 ms
        // early for the next request, which must still wait its full 30 s.
        tokio::time::sleep(Duration::from_millis(900)).await;
        let start = Instant::now();
        let r = timer
            .run(std::future::pending::<()>(), start + timeout, timeout)
            .await;
        assert_eq!(r, Err(()));
        assert_eq!(Instant::now() - start, timeout);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stale_timer_is_re_armed_and_completion_wins() {
        let mut timer = CoarseTimer::default();
        let timeout = Duration::from_millis(800);
        let t0 = Instant::now();
        assert_eq!(timer.run(async {}, t0 + timeout, timeout).await, Ok(()));
        tokio::time::sleep(Duration::from_secs(5)).await;
        let start = Instant::now();
        let slow = async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            "done"
        };
        assert_eq!(timer.run(slow, start + timeout, timeout).await, Ok("done"));
        let r = timer
            .run(
                std::future::pending::<()>(),
                Instant::now() + timeout,
                timeout,
            )
            .await;
        assert_eq!(r, Err(()));
    }
}
