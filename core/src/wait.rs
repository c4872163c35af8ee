//! Wait times between a user's tasks: fixed, uniform, computed by a sync or async closure,
//! constant pacing and constant throughput.
//!
//! A wait follows *every* task, failed or not (AioTest skips it after a failure, which
//! turns a failing endpoint into a hot loop). Constructors never fail; values are checked
//! by [`WaitTime::validate`], which [`crate::user::UserTypeBuilder::build`] calls, so a bad
//! wait time is an error when the user type is built, never at run time.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::BoxFuture;

/// How long a user waits after each task.
///
/// Seconds are `f64`, like the seed's `WaitTimeType`; `1.0.into()` and `(0.5, 1.5).into()`
/// work where a `WaitTime` is expected.
#[derive(Clone)]
pub struct WaitTime(Kind);

#[derive(Clone)]
enum Kind {
    Fixed(f64),
    Between(f64, f64),
    Sync(Arc<dyn Fn() -> Duration + Send + Sync>),
    Async(Arc<dyn Fn() -> BoxFuture<'static, Duration> + Send + Sync>),
    Pacing(f64),
    Throughput(f64),
}

/// What the runner must do after a task: sleep for a duration, or first await the async
/// closure's answer and then sleep for it.
pub enum Wait {
    /// Sleep this long (zero: yield and go on).
    Sleep(Duration),
    /// Await this future for the duration to sleep.
    Compute(BoxFuture<'static, Duration>),
}

impl fmt::Debug for Wait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Wait::Sleep(d) => f.debug_tuple("Sleep").field(d).finish(),
            Wait::Compute(_) => f.write_str("Compute(..)"),
        }
    }
}

/// A wait time that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum WaitTimeError {
    /// A negative, NaN, infinite or absurdly large (over 1e9) number of seconds.
    #[error("{what} must be between 0 and 1e9 seconds, got {value}")]
    BadSeconds {
        /// Which value.
        what: &'static str,
        /// The value given.
        value: f64,
    },
    /// A uniform range whose minimum is above its maximum.
    #[error("wait time range: min {min} is above max {max}")]
    MinAboveMax {
        /// The minimum given.
        min: f64,
        /// The maximum given.
        max: f64,
    },
    /// A throughput that is not a positive finite number of tasks per second.
    #[error("constant throughput must be a finite number of tasks per second > 0, got {value}")]
    BadThroughput {
        /// The value given.
        value: f64,
    },
}

fn seconds(what: &'static str, value: f64) -> Result<(), WaitTimeError> {
    // Duration::from_secs_f64 panics on negative, NaN or huge values: refuse them here.
    // Also false for NaN and infinities.
    if !(0.0..=1e9).contains(&value) {
        return Err(WaitTimeError::BadSeconds { what, value });
    }
    Ok(())
}

impl WaitTime {
    /// Always the same wait.
    pub fn fixed(secs: f64) -> Self {
        WaitTime(Kind::Fixed(secs))
    }

    /// A uniformly random wait between `min` and `max` seconds (Locust's `between`).
    pub fn between(min: f64, max: f64) -> Self {
        WaitTime(Kind::Between(min, max))
    }

    /// No wait at all.
    pub fn none() -> Self {
        WaitTime::fixed(0.0)
    }

    /// A wait computed by a closure after each task.
    pub fn from_fn(f: impl Fn() -> Duration + Send + Sync + 'static) -> Self {
        WaitTime(Kind::Sync(Arc::new(f)))
    }

    /// A wait computed by an async closure after each task (it may ask a service, say).
    pub fn from_async_fn<F, Fut>(f: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Duration> + Send + 'static,
    {
        WaitTime(Kind::Async(Arc::new(move || Box::pin(f()))))
    }

    /// Starts tasks every `secs` seconds: the wait is `secs` minus the task's own time, or
    /// nothing when the task took longer (Locust's `constant_pacing`).
    pub fn constant_pacing(secs: f64) -> Self {
        WaitTime(Kind::Pacing(secs))
    }

    /// At most `tasks_per_sec` tasks per second per user: pacing of `1 / tasks_per_sec`.
    pub fn constant_throughput(tasks_per_sec: f64) -> Self {
        WaitTime(Kind::Throughput(tasks_per_sec))
    }

    /// Checks the values; called when a user type is built.
    pub fn validate(&self) -> Result<(), WaitTimeError> {
        match self.0 {
            Kind::Fixed(s) => seconds("wait time", s),
            Kind::Between(min, max) => {
                seconds("wait time min", min)?;
                seconds("wait time max", max)?;
                if min > max {
                    return Err(WaitTimeError::MinAboveMax { min, max });
                }
                Ok(())
            }
            Kind::Pacing(s) => seconds("constant pacing", s),
            Kind::Throughput(t) => {
                if !t.is_finite() || t <= 0.0 {
                    return Err(WaitTimeError::BadThroughput { value: t });
                }
                Ok(())
            }
            Kind::Sync(_) | Kind::Async(_) => Ok(()),
        }
    }

    /// Whether [`next`](Self::next) uses the task's duration (pacing and throughput
    /// do); when it does not, a runner need not read the clock to measure it.
    pub fn uses_task_elapsed(&self) -> bool {
        matches!(self.0, Kind::Pacing(_) | Kind::Throughput(_))
    }

    /// The wait after a task that took `task_elapsed`. Only valid wait times (see
    /// [`validate`](Self::validate)) reach here; anything else waits zero.
    pub fn next(&self, rng: &mut fastrand::Rng, task_elapsed: Duration) -> Wait {
        let secs = |s: f64| Duration::try_from_secs_f64(s).unwrap_or(Duration::ZERO);
        match &self.0 {
            Kind::Fixed(s) => Wait::Sleep(secs(*s)),
            Kind::Between(min, max) => Wait::Sleep(secs(min + rng.f64() * (max - min))),
            Kind::Sync(f) => Wait::Sleep(f()),
            Kind::Async(f) => Wait::Compute(f()),
            Kind::Pacing(s) => Wait::Sleep(secs(*s).saturating_sub(task_elapsed)),
            Kind::Throughput(t) => Wait::Sleep(secs(1.0 / t).saturating_sub(task_elapsed)),
        }
    }
}

impl Default for WaitTime {
    /// One second, as in the seed's `User.wait_time`.
    fn default() -> Self {
        WaitTime::fixed(1.0)
    }
}

impl fmt::Debug for WaitTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Kind::Fixed(s) => write!(f, "WaitTime::fixed({s})"),
            Kind::Between(a, b) => write!(f, "WaitTime::between({a}, {b})"),
            Kind::Sync(_) => f.write_str("WaitTime::from_fn(..)"),
            Kind::Async(_) => f.write_str("WaitTime::from_async_fn(..)"),
            Kind::Pacing(s) => write!(f, "WaitTime::constant_pacing({s})"),
            Kind::Throughput(t) => write!(f, "WaitTime::constant_throughput({t})"),
        }
    }
}

impl From<f64> for WaitTime {
    fn from(secs: f64) -> Self {
        WaitTime::fixed(secs)
    }
}

impl From<(f64, f64)> for WaitTime {
    fn from((min, max): (f64, f64)) -> Self {
        WaitTime::between(min, max)
    }
}

impl From<Duration> for WaitTime {
    fn from(d: Duration) -> Self {
        WaitTime::fixed(d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sleep_of(w: Wait) -> Duration {
        match w {
            Wait::Sleep(d) => d,
            Wait::Compute(_) => panic!("expected a plain sleep"),
        }
    }

    #[test]
    fn fixed_and_conversions() {
        let mut rng = fastrand::Rng::with_seed(1);
        let w: WaitTime = 0.25.into();
        assert_eq!(
            sleep_of(w.next(&mut rng, Duration::ZERO)),
            Duration::from_millis(250)
        );
        let w: WaitTime = Duration::from_millis(40).into();
        assert_eq!(
            sleep_of(w.next(&mut rng, Duration::ZERO)),
            Duration::from_millis(40)
        );
        assert_eq!(
            sleep_of(WaitTime::default().next(&mut rng, Duration::ZERO)),
            Duration::from_secs(1)
        );
        assert_eq!(
            sleep_of(WaitTime::none().next(&mut rng, Duration::from_secs(3))),
            Duration::ZERO
        );
    }

    #[test]
    fn between_stays_in_range_and_spreads() {
        let mut rng = fastrand::Rng::with_seed(3);
        let w: WaitTime = (0.5, 1.5).into();
        let (mut lo, mut hi) = (Duration::MAX, Duration::ZERO);
        for _ in 0..10_000 {
            let d = sleep_of(w.next(&mut rng, Duration::ZERO));
            assert!(d >= Duration::from_millis(500) && d <= Duration::from_millis(1500));
            lo = lo.min(d);
            hi = hi.max(d);
        }
        assert!(lo < Duration::from_millis(510) && hi > Duration::from_millis(1490));
        let same = WaitTime::between(2.0, 2.0);
        assert!(same.validate().is_ok());
        assert_eq!(
            sleep_of(same.next(&mut rng, Duration::ZERO)),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn pacing_and_throughput_subtract_the_task_time() {
        let mut rng = fastrand::Rng::with_seed(1);
        let pacing = WaitTime::constant_pacing(2.0);
        assert_eq!(
            sleep_of(pacing.next(&mut rng, Duration::from_millis(500))),
            Duration::from_millis(1500)
        );
        assert_eq!(
            sleep_of(pacing.next(&mut rng, Duration::from_secs(5))),
            Duration::ZERO,
            "a slow task is followed by no wait"
        );
        let tput = WaitTime::constant_throughput(4.0);
        assert_eq!(
            sleep_of(tput.next(&mut rng, Duration::from_millis(100))),
            Duration::from_millis(150)
        );
    }

    #[test]
    fn closures_compute_the_wait() {
        let mut rng = fastrand::Rng::with_seed(1);
        let sync = WaitTime::from_fn(|| Duration::from_millis(7));
        assert_eq!(
            sleep_of(sync.next(&mut rng, Duration::ZERO)),
            Duration::from_millis(7)
        );
        let asynch = WaitTime::from_async_fn(|| async { Duration::from_millis(9) });
        match asynch.next(&mut rng, Duration::ZERO) {
            Wait::Compute(fut) => {
                assert_eq!(crate::testutil::block_on(fut), Duration::from_millis(9))
            }
            Wait::Sleep(_) => panic!("expected a computed wait"),
        }
        assert!(sync.validate().is_ok() && asynch.validate().is_ok());
    }

    #[test]
    fn bad_values_are_refused_with_the_value_named() {
        let cases: Vec<(WaitTime, &str)> = vec![
            (
                WaitTime::fixed(-1.0),
                "wait time must be between 0 and 1e9 seconds, got -1",
            ),
            (
                WaitTime::fixed(f64::NAN),
                "wait time must be between 0 and 1e9 seconds, got NaN",
            ),
            (
                WaitTime::fixed(f64::INFINITY),
                "wait time must be between 0 and 1e9 seconds, got inf",
            ),
            (
                WaitTime::between(-0.5, 1.0),
                "wait time min must be between 0 and 1e9 seconds, got -0.5",
            ),
            (
                WaitTime::between(0.0, f64::NAN),
                "wait time max must be between 0 and 1e9 seconds, got NaN",
            ),
            (
                WaitTime::between(2.0, 1.0),
                "wait time range: min 2 is above max 1",
            ),
            (
                WaitTime::constant_pacing(-3.0),
                "constant pacing must be between 0 and 1e9 seconds, got -3",
            ),
            (
                WaitTime::constant_throughput(0.0),
                "constant throughput must be a finite number of tasks per second > 0, got 0",
            ),
            (
                WaitTime::constant_throughput(-1.0),
                "constant throughput must be a finite number of tasks per second > 0, got -1",
            ),
        ];
        for (w, msg) in cases {
            assert_eq!(w.validate().unwrap_err().to_string(), msg, "{w:?}");
        }
    }

    #[test]
    fn debug_names_the_kind() {
        assert_eq!(
            format!("{:?}", WaitTime::between(1.0, 2.0)),
            "WaitTime::between(1, 2)"
        );
    }
}
