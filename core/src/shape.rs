//! Load shapes: what user count the test should have at a given run time, and how fast
//! to get there.
//!
//! A shape is polled by the runner (at least every 250 ms during a ramp) with the run time
//! from [`crate::clock::RunClock`], which starts with the test and stops while paused.
//! `tick` answers `Some((user_count, spawn_rate))`, the target and the rate in users per
//! second at which to move towards it (starting or stopping), or `None` to end the test.
//!
//! Zero users is a valid target, and so is a rate above the user count: the move then
//! takes less than a second. A rate of [`IMMEDIATE`] moves at once.

use std::time::Duration;

/// A spawn rate meaning "all at once".
pub const IMMEDIATE: f64 = f64::INFINITY;

/// Most users a run may have, over all its user types and workers. A virtual user holds a
/// task, its own connections and cookie jar (about 20 KB idle): a million is ~20 GB, more
/// than most machines can give one run. Every shape, the runners and the control API
/// refuse more.
pub const MAX_USERS: u32 = 1_000_000;

/// A shape answers, for a run time, the target user count and spawn rate, or the end.
///
/// Implement it for a custom shape; closures of the same signature implement it too.
///
/// ```
/// use std::time::Duration;
/// use aiotest_core::shape::LoadUserShape;
///
/// /// Ten users, fifty for ten seconds of every twenty, for one minute.
/// struct Waves;
///
/// impl LoadUserShape for Waves {
///     fn tick(&mut self, run_time: Duration) -> Option<(u32, f64)> {
///         let t = run_time.as_secs();
///         if t >= 60 {
///             return None;
///         }
///         Some((if t % 20 < 10 { 10 } else { 50 }, 20.0))
///     }
/// }
///
/// assert_eq!(Waves.tick(Duration::from_secs(12)), Some((50, 20.0)));
/// ```
pub trait LoadUserShape: Send {
    /// The target `(user_count, spawn_rate)` at `run_time`, or `None` when the test is over.
    fn tick(&mut self, run_time: Duration) -> Option<(u32, f64)>;

    /// How long the test lasts, when the shape knows (for progress displays); `None` for
    /// a shape that runs until stopped or decides as it goes.
    fn duration(&self) -> Option<Duration> {
        None
    }
}

impl<F> LoadUserShape for F
where
    F: FnMut(Duration) -> Option<(u32, f64)> + Send,
{
    fn tick(&mut self, run_time: Duration) -> Option<(u32, f64)> {
        self(run_time)
    }
}

impl LoadUserShape for Box<dyn LoadUserShape> {
    fn tick(&mut self, run_time: Duration) -> Option<(u32, f64)> {
        (**self).tick(run_time)
    }

    fn duration(&self) -> Option<Duration> {
        (**self).duration()
    }
}

/// A shape definition that was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ShapeError {
    /// A spawn rate that is NaN, zero or negative.
    #[error("spawn rate must be a positive number of users per second, got {rate}")]
    InvalidSpawnRate {
        /// The rate given.
        rate: f64,
    },
    /// A user count above [`MAX_USERS`].
    #[error("{users} users is above the limit of {MAX_USERS} users per run")]
    TooManyUsers {
        /// The count asked for.
        users: u64,
    },
    /// A duration that must be positive was zero.
    #[error("{what} must be longer than zero")]
    ZeroDuration {
        /// Which duration.
        what: &'static str,
    },
    /// A stages shape without stages.
    #[error("stages: at least one stage is needed")]
    NoStages,
    /// Stages whose durations add up to zero.
    #[error("stages: the stages add up to no time at all")]
    StagesTakeNoTime,
    /// A step shape that adds no users per step.
    #[error("step shape: users per step must be at least 1")]
    ZeroStep,
    /// A spike that does not end before the test does.
    #[error(
        "spike shape: the spike (at {at:?}, for {length:?}) must end within the test ({total:?})"
    )]
    SpikeOutsideTest {
        /// When the spike starts.
        at: Duration,
        /// How long it lasts.
        length: Duration,
        /// How long the test lasts.
        total: Duration,
    },
}

/// Checks a spawn rate: positive, not NaN; [`IMMEDIATE`] is allowed. The runner applies
/// this to every tick of a user-written shape, so a bad one ends the test with this error
/// rather than a panic or a stall.
pub fn validate_spawn_rate(rate: f64) -> Result<(), ShapeError> {
    if rate.is_nan() || rate <= 0.0 {
        return Err(ShapeError::InvalidSpawnRate { rate });
    }
    Ok(())
}

/// Checks a user count against [`MAX_USERS`]. The runner applies this to every tick of a
/// user-written shape and to every count set through a runner's handle.
pub fn validate_users(users: u64) -> Result<u32, ShapeError> {
    match u32::try_from(users) {
        Ok(n) if n <= MAX_USERS => Ok(n),
        _ => Err(ShapeError::TooManyUsers { users }),
    }
}

/// A fixed user count, optionally for a fixed time (Locust's `-u N -r R -t T`, k6's
/// `constant-vus`). Without a duration it runs until stopped.
#[derive(Debug, Clone, PartialEq)]
pub struct ConstantShape {
    users: u32,
    spawn_rate: f64,
    duration: Option<Duration>,
}

impl ConstantShape {
    /// `users` at `spawn_rate` users/s, for `duration` (or until stopped when `None`).
    pub fn new(
        users: u32,
        spawn_rate: f64,
        duration: Option<Duration>,
    ) -> Result<Self, ShapeError> {
        validate_spawn_rate(spawn_rate)?;
        validate_users(users.into())?;
        if duration == Some(Duration::ZERO) {
            return Err(ShapeError::ZeroDuration { what: "run time" });
        }
        Ok(ConstantShape {
            users,
            spawn_rate,
            duration,
        })
    }
}

impl LoadUserShape for ConstantShape {
    fn tick(&mut self, run_time: Duration) -> Option<(u32, f64)> {
        match self.duration {
            Some(d) if run_time >= d => None,
            _ => Some((self.users, self.spawn_rate)),
        }
    }

    fn duration(&self) -> Option<Duration> {
        self.duration
    }
}

/// One k6-style stage: move linearly to `target` users over `duration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stage {
    /// How long the stage lasts; zero jumps to the target at once.
    pub duration: Duration,
    /// The user count at the end of the stage.
    pub target: u32,
}

impl Stage {
    /// A stage reaching `target` users after `duration`.
    pub fn new(duration: Duration, target: u32) -> Self {
        Stage { duration, target }
    }
}

/// k6's `ramping-vus`: any number of stages, each a linear ramp from the previous target
/// (or the start count) to its own; the test ends after the last stage.
///
/// During a ramp the target follows the line (rounded towards the previous target) and the
/// rate is the ramp's slope, so a runner polling every 250 ms tracks it closely. A stage
/// that holds the count keeps the previous slope, to catch up after a lag; a hold at the
/// very start starts its users at once, as k6's `startVUs` does.
#[derive(Debug, Clone, PartialEq)]
pub struct StagesShape {
    start_users: u32,
    stages: Vec<Stage>,
}

impl StagesShape {
    /// Stages starting from zero users.
    pub fn new(stages: Vec<Stage>) -> Result<Self, ShapeError> {
        if stages.is_empty() {
            return Err(ShapeError::NoStages);
        }
        if stages.iter().all(|s| s.duration.is_zero()) {
            return Err(ShapeError::StagesTakeNoTime);
        }
        for s in &stages {
            validate_users(s.target.into())?;
        }
        Ok(StagesShape {
            start_users: 0,
            stages,
        })
    }

    /// Starts the first stage from `users` instead of zero (k6's `startVUs`); at most
    /// [`MAX_USERS`].
    pub fn with_start_users(mut self, users: u32) -> Self {
        self.start_users = users.min(MAX_USERS);
        self
    }

    /// The total length of all stages.
    pub fn total_duration(&self) -> Duration {
        self.stages.iter().map(|s| s.duration).sum()
    }
}

impl LoadUserShape for StagesShape {
    fn duration(&self) -> Option<Duration> {
        Some(self.total_duration())
    }

    fn tick(&mut self, run_time: Duration) -> Option<(u32, f64)> {
        let mut from = self.start_users;
        let mut rate = IMMEDIATE;
        let mut stage_start = Duration::ZERO;
        for stage in &self.stages {
            let stage_end = stage_start + stage.duration;
            let delta = stage.target.abs_diff(from);
            if delta > 0 && !stage.duration.is_zero() {
                rate = f64::from(delta) / stage.duration.as_secs_f64();
            } else if delta > 0 {
                rate = IMMEDIATE;
            }
            if run_time < stage_end {
                let progress = if rate.is_infinite() {
                    delta
                } else {
                    let into = (run_time - stage_start).as_secs_f64();
                    ((rate * into).floor() as u32).min(delta)
                };
                let users = if stage.target >= from {
                    from + progress
                } else {
                    from - progress
                };
                return Some((users, rate));
            }
            from = stage.target;
            stage_start = stage_end;
        }
        None
    }
}

/// Adds `step_users` every `step_duration` up to `max_users`, for `total` run time.
#[derive(Debug, Clone, PartialEq)]
pub struct StepShape {
    step_users: u32,
    step_duration: Duration,
    max_users: u32,
    spawn_rate: f64,
    total: Duration,
}

impl StepShape {
    /// A staircase: `step_users` more users every `step_duration`, never above
    /// `max_users`, moved at `spawn_rate`, ending after `total`.
    pub fn new(
        step_users: u32,
        step_duration: Duration,
        max_users: u32,
        spawn_rate: f64,
        total: Duration,
    ) -> Result<Self, ShapeError> {
        validate_spawn_rate(spawn_rate)?;
        if step_users == 0 {
            return Err(ShapeError::ZeroStep);
        }
        validate_users(max_users.into())?;
        if step_duration.is_zero() {
            return Err(ShapeError::ZeroDuration {
                what: "step duration",
            });
        }
        if total.is_zero() {
            return Err(ShapeError::ZeroDuration { what: "run time" });
        }
        Ok(StepShape {
            step_users,
            step_duration,
            max_users,
            spawn_rate,
            total,
        })
    }
}

impl LoadUserShape for StepShape {
    fn duration(&self) -> Option<Duration> {
        Some(self.total)
    }

    fn tick(&mut self, run_time: Duration) -> Option<(u32, f64)> {
        if run_time >= self.total {
            return None;
        }
        let step = run_time.as_nanos() / self.step_duration.as_nanos();
        let users = u128::from(self.step_users).saturating_mul(step + 1);
        let users = users.min(u128::from(self.max_users)) as u32;
        Some((users, self.spawn_rate))
    }
}

/// A base load with one spike: `base_users`, then `spike_users` from `at` for `length`,
/// then `base_users` again until `total`.
#[derive(Debug, Clone, PartialEq)]
pub struct SpikeShape {
    base_users: u32,
    spike_users: u32,
    at: Duration,
    length: Duration,
    total: Duration,
    spawn_rate: f64,
}

impl SpikeShape {
    /// A spike of `spike_users` at `at` for `length` over a base of `base_users`; the
    /// test lasts `total`; users move at `spawn_rate` (use [`IMMEDIATE`] for a sharp edge).
    pub fn new(
        base_users: u32,
        spike_users: u32,
        at: Duration,
        length: Duration,
        total: Duration,
        spawn_rate: f64,
    ) -> Result<Self, ShapeError> {
        validate_spawn_rate(spawn_rate)?;
        validate_users(base_users.into())?;
        validate_users(spike_users.into())?;
        if length.is_zero() {
            return Err(ShapeError::ZeroDuration {
                what: "spike length",
            });
        }
        if at + length > total {
            return Err(ShapeError::SpikeOutsideTest { at, length, total });
        }
        Ok(SpikeShape {
            base_users,
            spike_users,
            at,
            length,
            total,
            spawn_rate,
        })
    }
}

impl LoadUserShape for SpikeShape {
    fn duration(&self) -> Option<Duration> {
        Some(self.total)
    }

    fn tick(&mut self, run_time: Duration) -> Option<(u32, f64)> {
        if run_time >= self.total {
            return None;
        }
        let in_spike = run_time >= self.at && run_time < self.at + self.length;
        let users = if in_spike {
            self.spike_users
        } else {
            self.base_users
        };
        Some((users, self.spawn_rate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }
    fn s(v: u64) -> Duration {
        Duration::from_secs(v)
    }

    fn check(shape: &mut dyn LoadUserShape, table: &[(Duration, Option<(u32, f64)>)]) {
        for &(t, want) in table {
            assert_eq!(shape.tick(t), want, "tick({t:?})");
        }
    }

    #[test]
    fn user_counts_above_the_limit_are_refused_by_every_shape() {
        let too_many = ShapeError::TooManyUsers {
            users: u64::from(u32::MAX),
        };
        assert_eq!(validate_users(u64::from(MAX_USERS)), Ok(MAX_USERS));
        assert_eq!(validate_users(u64::from(u32::MAX)), Err(too_many.clone()));
        assert_eq!(
            too_many.to_string(),
            "4294967295 users is above the limit of 1000000 users per run"
        );
        assert_eq!(
            ConstantShape::new(u32::MAX, 1.0, None),
            Err(too_many.clone())
        );
        assert_eq!(
            StagesShape::new(vec![Stage::new(s(1), u32::MAX)]),
            Err(too_many.clone())
        );
        assert_eq!(
            StepShape::new(1, s(1), u32::MAX, 1.0, s(10)),
            Err(too_many.clone())
        );
        assert_eq!(
            SpikeShape::new(1, u32::MAX, s(1), s(1), s(5), 1.0),
            Err(too_many)
        );
    }

    #[test]
    fn constant_holds_then_ends() {
        let mut shape = ConstantShape::new(10, 2.0, Some(s(30))).unwrap();
        check(
            &mut shape,
            &[
                (s(0), Some((10, 2.0))),
                (ms(29_999), Some((10, 2.0))),
                (s(30), None),
                (s(31), None),
            ],
        );
        let mut forever = ConstantShape::new(0, 1.0, None).unwrap();
        assert_eq!(
            forever.tick(s(1_000_000)),
            Some((0, 1.0)),
            "zero users is valid"
        );
        let mut fast = ConstantShape::new(5, 100.0, None).unwrap();
        assert_eq!(
            fast.tick(s(0)),
            Some((5, 100.0)),
            "rate above users is valid"
        );
    }

    #[test]
    fn bad_rates_and_durations_are_errors() {
        for rate in [0.0, -1.0, f64::NAN, f64::NEG_INFINITY] {
            assert!(
                matches!(
                    ConstantShape::new(1, rate, None),
                    Err(ShapeError::InvalidSpawnRate { .. })
                ),
                "rate {rate}"
            );
        }
        assert!(ConstantShape::new(1, IMMEDIATE, None).is_ok());
        assert_eq!(
            ConstantShape::new(1, 1.0, Some(Duration::ZERO)),
            Err(ShapeError::ZeroDuration { what: "run time" })
        );
        assert_eq!(StagesShape::new(vec![]), Err(ShapeError::NoStages));
        assert_eq!(
            StagesShape::new(vec![Stage::new(Duration::ZERO, 5)]),
            Err(ShapeError::StagesTakeNoTime)
        );
        assert_eq!(
            StepShape::new(0, s(1), 10, 1.0, s(10)),
            Err(ShapeError::ZeroStep)
        );
        assert!(StepShape::new(1, Duration::ZERO, 10, 1.0, s(10)).is_err());
        assert!(StepShape::new(1, s(1), 10, 1.0, Duration::ZERO).is_err());
        assert!(matches!(
            SpikeShape::new(1, 10, s(50), s(20), s(60), 1.0),
            Err(ShapeError::SpikeOutsideTest { .. })
        ));
        assert!(SpikeShape::new(1, 10, s(5), Duration::ZERO, s(60), 1.0).is_err());
    }

    #[test]
    fn stages_ramp_linearly_hold_and_ramp_down_to_zero() {
        // Up to 50 over 10 s (5 users/s), hold for 60 s, down to 0 over 10 s.
        let mut shape = StagesShape::new(vec![
            Stage::new(s(10), 50),
            Stage::new(s(60), 50),
            Stage::new(s(10), 0),
        ])
        .unwrap();
        assert_eq!(shape.total_duration(), s(80));
        check(
            &mut shape,
            &[
                (s(0), Some((0, 5.0))),
                (ms(199), Some((0, 5.0))),
                (ms(200), Some((1, 5.0))),
                (ms(1_000), Some((5, 5.0))),
                (ms(5_500), Some((27, 5.0))),
                (ms(9_999), Some((49, 5.0))),
                (s(10), Some((50, 5.0))),
                (s(40), Some((50, 5.0))),
                (s(70), Some((50, 5.0))),
                (ms(70_100), Some((50, 5.0))),
                (ms(70_200), Some((49, 5.0))),
                (s(75), Some((25, 5.0))),
                (ms(79_999), Some((1, 5.0))),
                (s(80), None),
            ],
        );
    }

    #[test]
    fn stages_with_start_users_and_instant_jumps() {
        // k6 startVUs: a hold at the very start starts its users at once.
        let mut shape = StagesShape::new(vec![
            Stage::new(s(5), 20),
            Stage::new(Duration::ZERO, 100),
            Stage::new(s(5), 100),
            Stage::new(s(2), 80),
        ])
        .unwrap()
        .with_start_users(20);
        check(
            &mut shape,
            &[
                (s(0), Some((20, IMMEDIATE))),
                (ms(4_999), Some((20, IMMEDIATE))),
                // The zero-length stage jumps; the hold after it keeps the jump's rate.
                (s(5), Some((100, IMMEDIATE))),
                (s(10), Some((100, 10.0))),
                (s(11), Some((90, 10.0))),
                (s(12), None),
            ],
        );
    }

    #[test]
    fn stages_hold_keeps_previous_slope() {
        let mut shape = StagesShape::new(vec![Stage::new(s(4), 8), Stage::new(s(4), 8)]).unwrap();
        check(
            &mut shape,
            &[(s(2), Some((4, 2.0))), (s(6), Some((8, 2.0))), (s(8), None)],
        );
    }

    #[test]
    fn step_adds_users_per_step_up_to_max() {
        let mut shape = StepShape::new(10, s(30), 35, 5.0, s(120)).unwrap();
        check(
            &mut shape,
            &[
                (s(0), Some((10, 5.0))),
                (ms(29_999), Some((10, 5.0))),
                (s(30), Some((20, 5.0))),
                (s(60), Some((30, 5.0))),
                (s(90), Some((35, 5.0))),
                (ms(119_999), Some((35, 5.0))),
                (s(120), None),
            ],
        );
    }

    #[test]
    fn spike_rises_for_its_length_then_falls_back() {
        let mut shape = SpikeShape::new(5, 100, s(20), s(10), s(60), IMMEDIATE).unwrap();
        check(
            &mut shape,
            &[
                (s(0), Some((5, IMMEDIATE))),
                (ms(19_999), Some((5, IMMEDIATE))),
                (s(20), Some((100, IMMEDIATE))),
                (ms(29_999), Some((100, IMMEDIATE))),
                (s(30), Some((5, IMMEDIATE))),
                (s(60), None),
            ],
        );
    }

    #[test]
    fn closures_are_shapes() {
        let mut shape = |t: Duration| (t < s(3)).then_some((7, 1.0));
        check(&mut shape, &[(s(1), Some((7, 1.0))), (s(3), None)]);
        let mut boxed: Box<dyn LoadUserShape> = Box::new(ConstantShape::new(3, 1.0, None).unwrap());
        assert_eq!(boxed.tick(s(9)), Some((3, 1.0)));
    }

    #[test]
    fn validate_spawn_rate_accepts_positive_and_immediate() {
        assert!(validate_spawn_rate(0.001).is_ok());
        assert!(validate_spawn_rate(IMMEDIATE).is_ok());
        assert!(validate_spawn_rate(0.0).is_err());
        assert_eq!(
            validate_spawn_rate(-2.0).unwrap_err().to_string(),
            "spawn rate must be a positive number of users per second, got -2"
        );
    }
}
