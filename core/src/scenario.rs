//! Scenarios and executors, as in k6: a test holds named scenarios, each with what it runs
//! (user types), an executor that decides *when* iterations start, a start time, a
//! graceful stop period and tags.
//!
//! An *iteration* is one pass of a user's task sequence (sequential users: every task, a
//! task of weight `n` `n` times), or one weighted task pick (concurrent users). Every
//! executor runs the same iterations; they differ only in when:
//!
//! | executor | iterations start |
//! |---|---|
//! | [`Executor::ConstantVus`], [`Executor::RampingVus`], [`Executor::Shape`] | users loop; the number of users follows the target (closed model) |
//! | [`Executor::ExternallyControlled`] | the same, with the number set from outside (control API, keys) |
//! | [`Executor::SharedIterations`] | users loop until `iterations` have run in all |
//! | [`Executor::PerVuIterations`] | each user runs `iterations` |
//! | [`Executor::ConstantArrivalRate`], [`Executor::RampingArrivalRate`] | on a fixed schedule, whatever earlier ones take (open model); one with no free user is dropped (or waits up to `max_delay`) |
//!
//! This module is the model and its arithmetic: schedules ([`ArrivalSchedule`]), exact
//! splits over workers, validation. It reads no clock; the runner drives it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::shape::{LoadUserShape, MAX_USERS, ShapeError, Stage, validate_users};

/// The highest arrival rate, iterations per second, of any front end.
pub const MAX_RATE: f64 = 10_000_000.0;
use crate::user::UserType;

/// The default graceful stop period of a scenario (k6's `gracefulStop`).
pub const DEFAULT_GRACEFUL_STOP: Duration = Duration::from_secs(30);

/// The name of the one scenario of a test defined without scenarios.
pub const DEFAULT_SCENARIO: &str = "default";

/// A stage of a ramping arrival rate: move linearly to `target` iterations per time unit
/// over `duration`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateStage {
    /// How long the stage lasts.
    pub duration: Duration,
    /// The rate at its end, in iterations per time unit.
    pub target: f64,
}

impl RateStage {
    /// A stage reaching `target` iterations per time unit after `duration`.
    pub fn new(duration: Duration, target: f64) -> Self {
        RateStage { duration, target }
    }
}

/// A custom load shape as an executor, shared so a scenario can be cloned.
#[derive(Clone)]
pub struct SharedShape(Arc<Mutex<Box<dyn LoadUserShape>>>);

impl SharedShape {
    /// Wraps `shape`.
    pub fn new(shape: Box<dyn LoadUserShape>) -> Self {
        SharedShape(Arc::new(Mutex::new(shape)))
    }

    /// The shape's tick at `run_time`.
    pub fn tick(&self, run_time: Duration) -> Option<(u32, f64)> {
        self.lock().tick(run_time)
    }

    /// The shape's duration, if it knows it.
    pub fn duration(&self) -> Option<Duration> {
        self.lock().duration()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Box<dyn LoadUserShape>> {
        // Only ever held for one tick: a panic inside a tick leaves the shape as it was.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::fmt::Debug for SharedShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedShape(..)")
    }
}

/// When a scenario's iterations start; see the [module docs](self). Field names are k6's.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Executor {
    /// `vus` users share `iterations`; the scenario ends when all have run, or after
    /// `max_duration`.
    SharedIterations {
        /// Users.
        vus: u32,
        /// Iterations in all.
        iterations: u64,
        /// Longest the scenario may take.
        max_duration: Duration,
    },
    /// Each of `vus` users runs `iterations`; ends when all have, or after `max_duration`.
    PerVuIterations {
        /// Users.
        vus: u32,
        /// Iterations per user.
        iterations: u64,
        /// Longest the scenario may take.
        max_duration: Duration,
    },
    /// `vus` users loop for `duration`.
    ConstantVus {
        /// Users.
        vus: u32,
        /// How long.
        duration: Duration,
    },
    /// Users ramp linearly between stage targets (today's `--stages`).
    RampingVus {
        /// Users at the start.
        start_vus: u32,
        /// The stages.
        stages: Vec<Stage>,
    },
    /// `rate` iterations per `time_unit` start for `duration`, whatever earlier ones take.
    ConstantArrivalRate {
        /// Iterations per time unit.
        rate: f64,
        /// The unit of `rate` (default 1 s).
        time_unit: Duration,
        /// How long.
        duration: Duration,
        /// Users started before the first iteration.
        pre_allocated_vus: u32,
        /// Most users; an iteration due when all are busy waits up to `max_delay`, then
        /// is dropped.
        max_vus: u32,
        /// How long past due an iteration may wait for a free user once `max_vus` are
        /// busy; the wait counts in its latency (from the intended start). Zero (the
        /// default, k6's behaviour) drops it at once.
        max_delay: Duration,
    },
    /// The arrival rate ramps linearly between stage targets.
    RampingArrivalRate {
        /// Iterations per time unit at the start.
        start_rate: f64,
        /// The unit of the rates (default 1 s).
        time_unit: Duration,
        /// The stages.
        stages: Vec<RateStage>,
        /// Users started before the first iteration.
        pre_allocated_vus: u32,
        /// Most users; an iteration due when all are busy waits up to `max_delay`, then
        /// is dropped.
        max_vus: u32,
        /// How long past due an iteration may wait for a free user once `max_vus` are
        /// busy; the wait counts in its latency (from the intended start). Zero (the
        /// default, k6's behaviour) drops it at once.
        max_delay: Duration,
    },
    /// `vus` users loop; the control API and the keys change the number (up to
    /// `max_vus`), pause and resume; runs for `duration`, or until stopped.
    ExternallyControlled {
        /// Users at the start.
        vus: u32,
        /// Most users.
        max_vus: u32,
        /// How long, if bounded.
        duration: Option<Duration>,
    },
    /// AioTest's `LoadUserShape`: users follow its targets until it says the test is over.
    Shape(SharedShape),
}

/// How an executor drives its users.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drive {
    /// Users loop; their number follows a target over time (closed model).
    Targets,
    /// A fixed number of users loop until an iteration budget is spent.
    Iterations,
    /// Iterations start on a schedule, run by a pool of users (open model).
    Arrivals,
}

impl Executor {
    /// A custom load shape as an executor.
    pub fn shape(shape: impl LoadUserShape + 'static) -> Self {
        Executor::Shape(SharedShape::new(Box::new(shape)))
    }

    /// k6's name of the executor (`constant-arrival-rate`, ...; `shape` for a custom
    /// load shape).
    pub fn kind(&self) -> &'static str {
        match self {
            Executor::SharedIterations { .. } => "shared-iterations",
            Executor::PerVuIterations { .. } => "per-vu-iterations",
            Executor::ConstantVus { .. } => "constant-vus",
            Executor::RampingVus { .. } => "ramping-vus",
            Executor::ConstantArrivalRate { .. } => "constant-arrival-rate",
            Executor::RampingArrivalRate { .. } => "ramping-arrival-rate",
            Executor::ExternallyControlled { .. } => "externally-controlled",
            Executor::Shape(_) => "shape",
        }
    }

    /// How it drives its users.
    pub fn drive(&self) -> Drive {
        match self {
            Executor::SharedIterations { .. } | Executor::PerVuIterations { .. } => {
                Drive::Iterations
            }
            Executor::ConstantArrivalRate { .. } | Executor::RampingArrivalRate { .. } => {
                Drive::Arrivals
            }
            _ => Drive::Targets,
        }
    }

    /// How long it runs at most, when that is known.
    pub fn duration(&self) -> Option<Duration> {
        match self {
            Executor::SharedIterations { max_duration, .. }
            | Executor::PerVuIterations { max_duration, .. } => Some(*max_duration),
            Executor::ConstantVus { duration, .. }
            | Executor::ConstantArrivalRate { duration, .. } => Some(*duration),
            Executor::RampingVus { stages, .. } => Some(stages.iter().map(|s| s.duration).sum()),
            Executor::RampingArrivalRate { stages, .. } => {
                Some(stages.iter().map(|s| s.duration).sum())
            }
            Executor::ExternallyControlled { duration, .. } => *duration,
            Executor::Shape(s) => s.duration(),
        }
    }

    /// The user target at `t` into the scenario, for [`Drive::Targets`] executors: `None`
    /// once the scenario is over. (An externally controlled scenario starts at `vus`;
    /// the runner applies the numbers set from outside.)
    pub fn target(&self, t: Duration) -> Option<(u32, f64)> {
        match self {
            Executor::ConstantVus { vus, duration } => {
                (t < *duration).then_some((*vus, f64::INFINITY))
            }
            Executor::RampingVus { start_vus, stages } => {
                let mut s = crate::shape::StagesShape::new(stages.clone())
                    .ok()?
                    .with_start_users(*start_vus);
                s.tick(t)
            }
            Executor::ExternallyControlled { vus, duration, .. } => duration
                .is_none_or(|d| t < d)
                .then_some((*vus, f64::INFINITY)),
            Executor::Shape(s) => s.tick(t),
            _ => None,
        }
    }

    /// For [`Drive::Arrivals`] executors: the schedule of iteration starts.
    pub fn arrivals(&self) -> Option<ArrivalSchedule> {
        match self {
            Executor::ConstantArrivalRate {
                rate,
                time_unit,
                duration,
                ..
            } => Some(ArrivalSchedule::new(
                rate / time_unit.as_secs_f64(),
                &[RateStage::new(*duration, *rate)],
                *time_unit,
            )),
            Executor::RampingArrivalRate {
                start_rate,
                time_unit,
                stages,
                ..
            } => Some(ArrivalSchedule::new(
                start_rate / time_unit.as_secs_f64(),
                stages,
                *time_unit,
            )),
            _ => None,
        }
    }

    /// Users: for [`Drive::Iterations`] the fixed count, for [`Drive::Arrivals`] the
    /// pre-allocated and most users.
    pub fn vus(&self) -> (u32, u32) {
        match self {
            Executor::SharedIterations { vus, .. } | Executor::PerVuIterations { vus, .. } => {
                (*vus, *vus)
            }
            Executor::ConstantArrivalRate {
                pre_allocated_vus,
                max_vus,
                ..
            }
            | Executor::RampingArrivalRate {
                pre_allocated_vus,
                max_vus,
                ..
            } => (*pre_allocated_vus, *max_vus),
            Executor::ExternallyControlled { vus, max_vus, .. } => (*vus, *max_vus),
            Executor::ConstantVus { vus, .. } => (*vus, *vus),
            Executor::RampingVus { .. } | Executor::Shape(_) => (0, MAX_USERS),
        }
    }

    /// For [`Drive::Arrivals`] executors: how long past due an iteration may wait for a
    /// free user (zero: dropped at once); zero for the others.
    pub fn max_delay(&self) -> Duration {
        match self {
            Executor::ConstantArrivalRate { max_delay, .. }
            | Executor::RampingArrivalRate { max_delay, .. } => *max_delay,
            _ => Duration::ZERO,
        }
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        let bad = |field: &'static str, why: String| Err(ScenarioError::Executor { field, why });
        let positive = |field: &'static str, d: Duration| {
            if d.is_zero() {
                bad(field, "must be longer than zero".into())
            } else {
                Ok(())
            }
        };
        // A rate is per `time_unit`: bounded per second, as the command line bounds it.
        let rate_ok = |field: &'static str, r: f64, unit: Duration| {
            if !(r.is_finite() && r >= 0.0) {
                return bad(
                    field,
                    format!("{r} is not a rate (a number of iterations, 0 or more)"),
                );
            }
            let per_s = r / unit.as_secs_f64().max(f64::MIN_POSITIVE);
            if per_s > MAX_RATE {
                return bad(
                    field,
                    format!(
                        "{r:e} per {unit:?} is more than the {MAX_RATE:.0} iterations per second allowed"
                    ),
                );
            }
            Ok(())
        };
        let users = |field: &'static str, n: u32| {
            validate_users(n.into())
                .map(drop)
                .or_else(|e| bad(field, e.to_string()))
        };
        match self {
            Executor::SharedIterations {
                vus,
                iterations,
                max_duration,
            } => {
                users("vus", *vus)?;
                if *vus == 0 {
                    return bad("vus", "must be at least 1".into());
                }
                if *iterations < u64::from(*vus) {
                    return bad(
                        "iterations",
                        format!("{iterations} is fewer than the {vus} users sharing them"),
                    );
                }
                positive("max_duration", *max_duration)
            }
            Executor::PerVuIterations {
                vus,
                iterations,
                max_duration,
            } => {
                users("vus", *vus)?;
                if *vus == 0 {
                    return bad("vus", "must be at least 1".into());
                }
                if *iterations == 0 {
                    return bad("iterations", "must be at least 1".into());
                }
                positive("max_duration", *max_duration)
            }
            Executor::ConstantVus { vus, duration } => {
                users("vus", *vus)?;
                positive("duration", *duration)
            }
            Executor::RampingVus { start_vus, stages } => {
                users("start_vus", *start_vus)?;
                crate::shape::StagesShape::new(stages.clone())
                    .map(drop)
                    .or_else(|e| bad("stages", e.to_string()))
            }
            Executor::ConstantArrivalRate {
                rate,
                time_unit,
                duration,
                pre_allocated_vus,
                max_vus,
                max_delay,
            } => {
                positive("time_unit", *time_unit)?;
                rate_ok("rate", *rate, *time_unit)?;
                positive("duration", *duration)?;
                pool(*pre_allocated_vus, *max_vus, *max_delay)
            }
            Executor::RampingArrivalRate {
                start_rate,
                time_unit,
                stages,
                pre_allocated_vus,
                max_vus,
                max_delay,
            } => {
                positive("time_unit", *time_unit)?;
                rate_ok("start_rate", *start_rate, *time_unit)?;
                if stages.is_empty() {
                    return bad("stages", "at least one stage is needed".into());
                }
                for s in stages {
                    rate_ok("stages.target", s.target, *time_unit)?;
                }
                if stages.iter().all(|s| s.duration.is_zero()) {
                    return bad("stages", "the stages add up to no time at all".into());
                }
                pool(*pre_allocated_vus, *max_vus, *max_delay)
            }
            Executor::ExternallyControlled {
                vus,
                max_vus,
                duration,
            } => {
                users("max_vus", *max_vus)?;
                if vus > max_vus {
                    return bad("vus", format!("{vus} is above max_vus ({max_vus})"));
                }
                if let Some(d) = duration {
                    positive("duration", *d)?;
                }
                Ok(())
            }
            Executor::Shape(_) => Ok(()),
        }
    }
}

/// A duration as people write it: `500ms`, `30s`, `5m`, `1h30m`, `2.5s`.
pub fn human_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 && !d.is_zero() {
        return format!("{}us", d.as_micros());
    }
    if ms < 1_000 {
        return format!("{ms}ms");
    }
    if !ms.is_multiple_of(1_000) {
        return format!("{}s", d.as_secs_f64());
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3_600, secs % 3_600 / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

fn users(n: u32) -> String {
    if n == 1 {
        "1 user".into()
    } else {
        format!("{n} users")
    }
}

/// What the executor does, in a line for reports: `50 per 1s for 5s, 2 to 20 users`.
impl std::fmt::Display for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = |d: &Duration| human_duration(*d);
        let rate = |r: &f64, unit: &Duration| format!("{r} per {}", human_duration(*unit));
        match self {
            Executor::SharedIterations {
                vus,
                iterations,
                max_duration,
            } => write!(
                f,
                "{iterations} iterations shared by {}, at most {}",
                users(*vus),
                d(max_duration)
            ),
            Executor::PerVuIterations {
                vus,
                iterations,
                max_duration,
            } => write!(
                f,
                "{iterations} iterations each for {}, at most {}",
                users(*vus),
                d(max_duration)
            ),
            Executor::ConstantVus { vus, duration } => {
                write!(f, "{} for {}", users(*vus), d(duration))
            }
            Executor::RampingVus { start_vus, stages } => {
                let stages: Vec<String> = stages
                    .iter()
                    .map(|s| format!("{} over {}", s.target, d(&s.duration)))
                    .collect();
                write!(f, "from {}: {}", users(*start_vus), stages.join(", "))
            }
            Executor::ConstantArrivalRate {
                rate: r,
                time_unit,
                duration,
                pre_allocated_vus,
                max_vus,
                max_delay,
            } => {
                write!(
                    f,
                    "{} for {}, {pre_allocated_vus} to {}",
                    rate(r, time_unit),
                    d(duration),
                    users(*max_vus)
                )?;
                if !max_delay.is_zero() {
                    write!(f, ", waits up to {}", d(max_delay))?;
                }
                Ok(())
            }
            Executor::RampingArrivalRate {
                start_rate,
                time_unit,
                stages,
                pre_allocated_vus,
                max_vus,
                max_delay,
            } => {
                let stages: Vec<String> = stages
                    .iter()
                    .map(|s| format!("{} over {}", s.target, d(&s.duration)))
                    .collect();
                write!(
                    f,
                    "from {}: {}; {pre_allocated_vus} to {}",
                    rate(start_rate, time_unit),
                    stages.join(", "),
                    users(*max_vus)
                )?;
                if !max_delay.is_zero() {
                    write!(f, ", waits up to {}", d(max_delay))?;
                }
                Ok(())
            }
            Executor::ExternallyControlled {
                vus,
                max_vus,
                duration,
            } => {
                write!(f, "{} (up to {max_vus}), ", users(*vus))?;
                match duration {
                    Some(t) => write!(f, "for {}", d(t)),
                    None => f.write_str("until stopped"),
                }
            }
            Executor::Shape(s) => match s.duration() {
                Some(t) => write!(f, "a custom load shape, {}", d(&t)),
                None => f.write_str("a custom load shape"),
            },
        }
    }
}

/// The longest an arrival-rate iteration may wait for a free user.
pub const MAX_ARRIVAL_DELAY: Duration = Duration::from_secs(3600);

fn pool(pre_allocated: u32, max: u32, max_delay: Duration) -> Result<(), ScenarioError> {
    if max_delay > MAX_ARRIVAL_DELAY {
        return Err(ScenarioError::Executor {
            field: "max_delay",
            why: format!(
                "{} s is longer than the {} s an iteration may wait",
                max_delay.as_secs_f64(),
                MAX_ARRIVAL_DELAY.as_secs()
            ),
        });
    }
    validate_users(max.into()).map_err(|e| ScenarioError::Executor {
        field: "max_vus",
        why: e.to_string(),
    })?;
    if max == 0 {
        return Err(ScenarioError::Executor {
            field: "max_vus",
            why: "must be at least 1".into(),
        });
    }
    if pre_allocated > max {
        return Err(ScenarioError::Executor {
            field: "pre_allocated_vus",
            why: format!("{pre_allocated} is above max_vus ({max})"),
        });
    }
    Ok(())
}

/// A scenario that cannot run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ScenarioError {
    /// An empty name, or one with characters outside `A-Z a-z 0-9 . _ -`.
    #[error("scenario name `{0}`: use 1 to 64 letters, digits, `.`, `_` or `-`")]
    BadName(String),
    /// No user types.
    #[error("scenario `{0}`: no user types to run")]
    NoUserTypes(String),
    /// An executor setting that cannot work.
    #[error("{field}: {why}")]
    Executor {
        /// The setting (k6's name, in snake case).
        field: &'static str,
        /// What is wrong.
        why: String,
    },
    /// Two scenarios of one test with the same name.
    #[error("scenario name `{0}` is used twice")]
    Duplicate(String),
    /// A tag that cannot be one ([`crate::tag::check`]).
    #[error("scenario `{scenario}`: tag `{key}`: {why}")]
    BadTag {
        /// The scenario.
        scenario: String,
        /// The tag's key.
        key: String,
        /// What is wrong.
        why: &'static str,
    },
    /// A shape problem.
    #[error(transparent)]
    Shape(#[from] ShapeError),
}

/// One scenario of a test; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct Scenario {
    name: Arc<str>,
    user_types: Vec<UserType>,
    executor: Executor,
    start_time: Duration,
    graceful_stop: Duration,
    tags: Vec<(String, String)>,
}

impl Scenario {
    /// A scenario named `name` running `user_types` as `executor` says, starting at once,
    /// with the default graceful stop (30 s).
    pub fn new(
        name: impl Into<String>,
        user_types: Vec<UserType>,
        executor: Executor,
    ) -> Result<Self, ScenarioError> {
        let name: String = name.into();
        let ok_name = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !ok_name {
            return Err(ScenarioError::BadName(name));
        }
        if user_types.is_empty() {
            return Err(ScenarioError::NoUserTypes(name));
        }
        executor.validate()?;
        Ok(Scenario {
            name: name.into(),
            user_types,
            executor,
            start_time: Duration::ZERO,
            graceful_stop: DEFAULT_GRACEFUL_STOP,
            tags: Vec::new(),
        })
    }

    /// Starts `start_time` into the run (run time: pauses excluded).
    pub fn start_time(mut self, start_time: Duration) -> Self {
        self.start_time = start_time;
        self
    }

    /// How long its iterations in flight may go on once it ends (default 30 s).
    pub fn graceful_stop(mut self, graceful_stop: Duration) -> Self {
        self.graceful_stop = graceful_stop;
        self
    }

    /// A tag for its metrics.
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.push((key.into(), value.into()));
        self
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name, shared.
    pub fn name_arc(&self) -> Arc<str> {
        Arc::clone(&self.name)
    }

    /// Its user types.
    pub fn user_types(&self) -> &[UserType] {
        &self.user_types
    }

    /// Its executor.
    pub fn executor(&self) -> &Executor {
        &self.executor
    }

    /// When it starts.
    pub fn starts_at(&self) -> Duration {
        self.start_time
    }

    /// Its graceful stop period.
    pub fn graceful_stop_period(&self) -> Duration {
        self.graceful_stop
    }

    /// Its tags.
    pub fn tags(&self) -> &[(String, String)] {
        &self.tags
    }

    /// When it ends at the latest, from the run's start, if known.
    pub fn ends_by(&self) -> Option<Duration> {
        self.executor.duration().map(|d| self.start_time + d)
    }

    /// When it is planned to end, from the run's start: known for executors that run for
    /// a set time, not for iteration counts (they end when their iterations are done,
    /// `max_duration` is only a bound).
    pub fn planned_end(&self) -> Option<Duration> {
        match self.executor {
            Executor::SharedIterations { .. } | Executor::PerVuIterations { .. } => None,
            _ => self.ends_by(),
        }
    }
}

/// Checks a test's scenarios together: unique names.
pub fn validate_scenarios(scenarios: &[Scenario]) -> Result<(), ScenarioError> {
    for (i, s) in scenarios.iter().enumerate() {
        if scenarios[..i].iter().any(|o| o.name == s.name) {
            return Err(ScenarioError::Duplicate(s.name.to_string()));
        }
        for (k, v) in &s.tags {
            crate::tag::check(k, v).map_err(|why| ScenarioError::BadTag {
                scenario: s.name.to_string(),
                key: k.escape_debug().to_string(),
                why,
            })?;
        }
    }
    Ok(())
}

/// When each iteration of an arrival-rate scenario is due: iteration `k` (from 0) is due
/// when the integral of the rate reaches `k`, so the first is due at once and the count
/// by any time is the integral, rounded up.
#[derive(Debug, Clone, PartialEq)]
pub struct ArrivalSchedule {
    /// (start, length, rate at start, rate at end, iterations before it), per second.
    stages: Vec<(Duration, Duration, f64, f64, f64)>,
    total: f64,
}

impl ArrivalSchedule {
    /// A schedule starting at `start_rate` per second through `stages` (whose targets are
    /// per `time_unit`).
    fn new(start_rate: f64, stages: &[RateStage], time_unit: Duration) -> Self {
        let unit = time_unit.as_secs_f64();
        let mut out = Vec::with_capacity(stages.len());
        let (mut at, mut from, mut before) = (Duration::ZERO, start_rate, 0.0);
        for s in stages {
            let to = s.target / unit;
            out.push((at, s.duration, from, to, before));
            before += (from + to) / 2.0 * s.duration.as_secs_f64();
            at += s.duration;
            from = to;
        }
        ArrivalSchedule {
            stages: out,
            total: before,
        }
    }

    /// The integral of the rate over the whole schedule: how many iterations it asks for.
    pub fn integral(&self) -> f64 {
        self.total
    }

    /// How long the schedule lasts.
    pub fn length(&self) -> Duration {
        self.stages
            .last()
            .map_or(Duration::ZERO, |(at, len, ..)| *at + *len)
    }

    /// When iteration `k` is due, from the scenario's start; `None` when it is not part
    /// of the schedule.
    pub fn due(&self, k: u64) -> Option<Duration> {
        let k = k as f64;
        for &(at, len, r0, r1, before) in &self.stages {
            let secs = len.as_secs_f64();
            let x = k - before;
            let in_stage = before + (r0 + r1) / 2.0 * secs;
            if k >= in_stage {
                continue;
            }
            // N(τ) = before + r0 τ + (r1 - r0) τ² / (2 len); solve N(τ) = k, in the
            // form that stays exact when r1 ≈ r0.
            let a = if secs > 0.0 {
                (r1 - r0) / (2.0 * secs)
            } else {
                0.0
            };
            let disc = (r0 * r0 + 4.0 * a * x).max(0.0);
            let denom = r0 + disc.sqrt();
            let tau = if x <= 0.0 {
                0.0
            } else if denom > 0.0 {
                2.0 * x / denom
            } else {
                continue;
            };
            return Some(at + Duration::from_secs_f64(tau.clamp(0.0, secs)));
        }
        None
    }

    /// Iterations due before `t`.
    pub fn due_before(&self, t: Duration) -> u64 {
        // The first k whose due time is not before t, by bisection over the count.
        let (mut lo, mut hi) = (0u64, self.total.ceil() as u64 + 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.due(mid) {
                Some(d) if d < t => lo = mid + 1,
                _ => hi = mid,
            }
        }
        lo
    }
}

/// An arrival-rate worker's part of the schedule: iteration `k` is its own when
/// `k ≥ from` and `k mod of == index`. Over all workers, every iteration exactly once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Share {
    /// This worker's place among the live workers.
    pub index: u32,
    /// How many live workers share the scenario.
    pub of: u32,
    /// The first iteration this split applies from.
    pub from: u64,
}

impl Share {
    /// The whole schedule: one worker, or a local run.
    pub const ALL: Share = Share {
        index: 0,
        of: 1,
        from: 0,
    };

    /// The first iteration at or after `k` that is this worker's.
    pub fn next_from(&self, k: u64) -> u64 {
        let k = k.max(self.from);
        let of = u64::from(self.of.max(1));
        let r = k % of;
        let want = u64::from(self.index) % of;
        if r <= want {
            k + (want - r)
        } else {
            k + (of - r) + want
        }
    }

    /// Whether iteration `k` is this worker's.
    pub fn owns(&self, k: u64) -> bool {
        k >= self.from && k % u64::from(self.of.max(1)) == u64::from(self.index)
    }
}

/// Splits `n` into `parts` counts that differ by at most one and sum to `n`, the larger
/// first.
pub fn split_count(n: u64, parts: usize) -> Vec<u64> {
    if parts == 0 {
        return Vec::new();
    }
    let p = parts as u64;
    (0..p).map(|i| n / p + u64::from(i < n % p)).collect()
}

/// How late the user's current iteration started after its intended start, for
/// open-model (arrival-rate) scenarios: the runner sets it before each iteration, the
/// HTTP client reads it when it records a request, so the request's latency counts from
/// its intended start (coordinated omission corrected). Cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct IterationLateness(Arc<AtomicU64>);

impl IterationLateness {
    const CLOSED: u64 = u64::MAX;

    /// For a user of a closed-model scenario: no lateness.
    pub fn closed() -> Self {
        IterationLateness(Arc::new(AtomicU64::new(Self::CLOSED)))
    }

    /// Sets the current iteration's lateness (`None`: closed model).
    pub fn set(&self, lateness: Option<Duration>) {
        let v = lateness.map_or(Self::CLOSED, |d| {
            u64::try_from(d.as_micros()).unwrap_or(Self::CLOSED - 1)
        });
        self.0.store(v, Ordering::Relaxed);
    }

    /// The current iteration's lateness in µs, `None` in the closed model.
    #[inline]
    pub fn get_us(&self) -> Option<u64> {
        match self.0.load(Ordering::Relaxed) {
            Self::CLOSED => None,
            v => Some(v),
        }
    }
}

impl Default for IterationLateness {
    fn default() -> Self {
        Self::closed()
    }
}

#[cfg(test)]
mod tests;
