//! The load the command line asks for (`-u`, `-r`, `-t`, `--stages`, `--rate`, `-i`),
//! as an executor. The open-model and iteration forms travel in a master's plan, so its
//! workers run the very same executor on their part.

use std::time::Duration;

use aiotest_core::scenario::Executor;
use aiotest_core::shape::{ConstantShape, LoadUserShape, StagesShape};
use serde::{Deserialize, Serialize};

use crate::args::RunArgs;
use crate::run::UsageError;
use crate::scenario::FileLoad;

/// How long `-i` may take without `-t` (k6's default `maxDuration`).
const DEFAULT_MAX_DURATION: Duration = Duration::from_secs(600);

/// Load that runs where the users are: shipped to workers in the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum SelfScheduled {
    /// `--rate`: constant arrival rate.
    Rate {
        rate: f64,
        users: u32,
        max_users: u32,
        run_time_s: f64,
        max_delay_s: f64,
    },
    /// `-i`: shared iterations.
    Iterations {
        iterations: u64,
        users: u32,
        max_duration_s: f64,
    },
}

impl SelfScheduled {
    /// The executor.
    pub(crate) fn executor(&self) -> Executor {
        match *self {
            SelfScheduled::Rate {
                rate,
                users,
                max_users,
                run_time_s,
                max_delay_s,
            } => Executor::ConstantArrivalRate {
                rate,
                time_unit: Duration::from_secs(1),
                duration: Duration::from_secs_f64(run_time_s),
                pre_allocated_vus: users,
                max_vus: max_users,
                max_delay: Duration::from_secs_f64(max_delay_s),
            },
            SelfScheduled::Iterations {
                iterations,
                users,
                max_duration_s,
            } => Executor::SharedIterations {
                vus: users,
                iterations,
                max_duration: Duration::from_secs_f64(max_duration_s),
            },
        }
    }
}

/// The most users `--rate` starts beforehand unless `-u` says otherwise.
const DEFAULT_USERS: u32 = 1_000;
/// The most users `--rate` may run unless `--max-users` says otherwise (about 100 MB of
/// idle users).
const DEFAULT_MAX_USERS: u32 = 10_000;

/// The open-model or iteration load of `--rate` or `-i`, if asked for.
pub(crate) fn self_scheduled(args: &RunArgs) -> Result<Option<SelfScheduled>, UsageError> {
    if let Some(rate) = args.rate {
        let Some(run_time) = args.run_time else {
            return Err(UsageError(
                "--rate needs -t: how long to keep the rate (e.g. --rate 500 -t 30s)".into(),
            ));
        };
        // Enough users for 30 s of iterations in flight (a slow target at the default
        // timeout), never fewer than 10 nor, unless asked, more than DEFAULT_MAX_USERS.
        let max_users = args.max_users.unwrap_or_else(|| {
            ((rate * 30.0).ceil() as u64).clamp(10, u64::from(DEFAULT_MAX_USERS)) as u32
        });
        if max_users == 0 {
            return Err(UsageError(
                "--max-users 0: an open-model run needs at least one user".into(),
            ));
        }
        // 100 ms worth of iterations ready before the first one, at most
        // DEFAULT_USERS unless asked.
        let users = args
            .users
            .unwrap_or_else(|| ((rate * 0.1).ceil() as u32).clamp(1, max_users.min(DEFAULT_USERS)));
        if users > max_users {
            return Err(UsageError(format!(
                "-u {users} is above --max-users {max_users}"
            )));
        }
        return Ok(Some(SelfScheduled::Rate {
            rate,
            users,
            max_users,
            run_time_s: run_time.as_secs_f64(),
            max_delay_s: args.max_delay.unwrap_or_default().as_secs_f64(),
        }));
    }
    if let Some(iterations) = args.iterations {
        let users = args.users.unwrap_or(1);
        if u64::from(users) > iterations {
            return Err(UsageError(format!(
                "-i {iterations} is fewer than the {users} users (-u) that share them"
            )));
        }
        return Ok(Some(SelfScheduled::Iterations {
            iterations,
            users,
            max_duration_s: args.run_time.unwrap_or(DEFAULT_MAX_DURATION).as_secs_f64(),
        }));
    }
    Ok(None)
}

/// A load shape that ends at `until` (`-t` over a binary's own shape).
struct Until {
    shape: Box<dyn LoadUserShape>,
    until: Duration,
}

impl LoadUserShape for Until {
    fn tick(&mut self, run_time: Duration) -> Option<(u32, f64)> {
        if run_time >= self.until {
            return None;
        }
        self.shape.tick(run_time)
    }

    fn duration(&self) -> Option<Duration> {
        Some(
            self.shape
                .duration()
                .map_or(self.until, |d| d.min(self.until)),
        )
    }
}

/// The closed-model load: the test's own (`shape`, from a file's `[load]` as `written`,
/// or a binary's), with what `-u`, `-r` and `-t` change in it, each only its own part;
/// `--stages` replaces it. Without a load of its own, `-u`/`-r`/`-t` or the defaults
/// (`default_users`, `default_time`).
pub(crate) fn closed(
    args: &RunArgs,
    shape: Option<Box<dyn LoadUserShape>>,
    written: Option<FileLoad>,
    default_users: u32,
    default_time: Option<Duration>,
) -> Result<Box<dyn LoadUserShape>, UsageError> {
    if let Some(stages) = &args.stages {
        let s =
            StagesShape::new(stages.0.clone()).map_err(|e| UsageError(format!("--stages: {e}")))?;
        return Ok(Box::new(s));
    }
    let (users, rate, time) = (args.users, args.spawn_rate, args.run_time);
    let constant = |users: u32, rate: Option<f64>, time: Option<Duration>| {
        let rate = rate.unwrap_or(f64::from(users.max(1)));
        ConstantShape::new(users, rate, time)
            .map(|s| Box::new(s) as Box<dyn LoadUserShape>)
            .map_err(|e| UsageError(format!("-u/-r/-t: {e}")))
    };
    match (shape, written) {
        (Some(shape), _) if users.is_none() && rate.is_none() && time.is_none() => Ok(shape),
        (
            _,
            Some(FileLoad::Constant {
                users: file_users,
                spawn_rate,
                run_time,
            }),
        ) => constant(
            users.unwrap_or(file_users),
            rate.or(spawn_rate),
            time.or(run_time),
        ),
        (_, Some(FileLoad::Stages)) => Err(UsageError(
            "the file's [load] has stages: -u, -r and -t do not apply; --stages replaces them"
                .into(),
        )),
        (Some(shape), None) => {
            if users.is_some() || rate.is_some() {
                return Err(UsageError(
                    "this test's load shape sets the users: -u and -r do not apply; --stages \
                     replaces it"
                        .into(),
                ));
            }
            let until = time.unwrap_or(Duration::MAX);
            Ok(Box::new(Until { shape, until }))
        }
        (None, None) => constant(users.unwrap_or(default_users), rate, time.or(default_time)),
    }
}

/// Whether the command line sets the load at all.
pub(crate) fn given(args: &RunArgs) -> bool {
    args.users.is_some()
        || args.run_time.is_some()
        || args.stages.is_some()
        || args.rate.is_some()
        || args.iterations.is_some()
}
