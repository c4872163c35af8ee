//! `aiotest run script.js`: a k6-style script, through the `aiotest-script` front end,
//! with the command line's load over the script's own as k6 does it. A master ships the
//! script's text, the files it opened and the environment it reads to its workers, which
//! make the same scenarios of them.

use std::collections::BTreeMap;
use std::time::Duration;

use aiotest_core::lifecycle::Hooks;
use aiotest_core::scenario::{DEFAULT_SCENARIO, Scenario};
use aiotest_core::shape::Stage;
use aiotest_runner::Threshold;
use aiotest_script::{ScriptPlan, Shortcut};
use serde::{Deserialize, Serialize};

use crate::args::RunArgs;
use crate::load::SelfScheduled;
use crate::quick::HttpSettings;
use crate::run::UsageError;

/// Whether the file given to `run` is a script (`.js`, `.mjs`).
pub(crate) fn is_script(path: &std::path::Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("js" | "mjs")
    )
}

/// What a script runs, ready for the runner.
pub(crate) struct ScriptRun {
    pub(crate) scenarios: Vec<Scenario>,
    pub(crate) hooks: Hooks,
    pub(crate) thresholds: Vec<Threshold>,
    pub(crate) tags: Vec<(String, String)>,
    /// `handleSummary`: replaces the printed summary.
    pub(crate) handle_summary: Option<aiotest_script::HandleSummary>,
    /// What a master's workers need to run the same script.
    pub(crate) shipped: Shipped,
}

/// A script as a master ships it: workers need no files.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Shipped {
    /// The script's path as the master was given it (in errors).
    pub(crate) name: String,
    pub(crate) source: String,
    /// What its init code opened, by the path it gave.
    pub(crate) files: BTreeMap<String, String>,
    /// The master's values of the variables it reads (`__ENV.NAME`).
    pub(crate) env: BTreeMap<String, String>,
    /// The command line's load: `-u`, `-t` (seconds), `-i`, `--stages` (seconds, VUs).
    pub(crate) users: Option<u32>,
    pub(crate) run_time_s: Option<f64>,
    pub(crate) iterations: Option<u64>,
    pub(crate) stages: Option<Vec<(f64, u32)>>,
    pub(crate) stop_timeout_s: f64,
}

impl Shipped {
    fn flags(&self) -> Shortcut {
        Shortcut {
            vus: self.users,
            duration: self.run_time_s.map(Duration::from_secs_f64),
            iterations: self.iterations,
            stages: self.stages.as_ref().map(|s| {
                s.iter()
                    .map(|(d, n)| Stage::new(Duration::from_secs_f64(*d), *n))
                    .collect()
            }),
        }
    }
}

/// Loads the script at `path` and decides its load: `-u`, `-t`, `-i` and `--stages`
/// override the options' `vus`, `duration`, `iterations` and `stages` one by one and
/// replace its scenarios (as in k6); `--rate` runs the default function at that rate.
pub(crate) fn load(path: &std::path::Path, args: &RunArgs) -> Result<ScriptRun, UsageError> {
    for (given, flag) in [
        (
            !args.tags.is_empty() || !args.exclude_tags.is_empty(),
            "--tags/--exclude-tags",
        ),
        (args.spawn_rate.is_some(), "-r"),
    ] {
        if given {
            return Err(UsageError(format!(
                "{flag} does not apply to a script yet: {}",
                path.display()
            )));
        }
    }
    let http = crate::quick::http_settings(args)?;
    let plan = aiotest_script::load(path, inputs(std::env::vars().collect(), &http))
        .map_err(|e| UsageError(e.to_string()))?;
    let source = std::fs::read_to_string(path)
        .map_err(|e| UsageError(format!("{}: {e}", path.display())))?;
    let env = aiotest_script::env_referenced(&source)
        .into_iter()
        .filter_map(|k| std::env::var(&k).ok().map(|v| (k, v)))
        .collect();
    let shipped = Shipped {
        name: path.display().to_string(),
        files: plan.opened_files(),
        source,
        env,
        users: args.users,
        run_time_s: args.run_time.map(|d| d.as_secs_f64()),
        iterations: args.iterations,
        stages: args.stages.as_ref().map(|s| {
            s.0.iter()
                .map(|st| (st.duration.as_secs_f64(), st.target))
                .collect()
        }),
        stop_timeout_s: args.stop_timeout.as_secs_f64(),
    };
    let rate = crate::load::self_scheduled(args)?.filter(|_| args.rate.is_some());
    run_of(plan, &shipped, rate.as_ref()).map_err(UsageError)
}

/// The script's inputs: `env`, and the command line's HTTP settings over the options'
/// (its --hosts after theirs).
fn inputs(env: BTreeMap<String, String>, http: &HttpSettings) -> aiotest_script::Inputs {
    let http = http.clone();
    aiotest_script::Inputs {
        env,
        http: Some(std::sync::Arc::new(move |b| http.apply(b))),
    }
}

/// The same script on a worker, from its master's plan.
pub(crate) fn on_worker(
    shipped: &Shipped,
    http: &HttpSettings,
    rate: Option<&SelfScheduled>,
) -> Result<ScriptRun, String> {
    let plan = aiotest_script::load_text(
        &shipped.name,
        shipped.source.clone(),
        shipped.files.clone(),
        inputs(shipped.env.clone(), http),
    )
    .map_err(|e| e.to_string())?;
    run_of(plan, shipped, rate)
}

/// The scenarios of `plan` under the command line's load (`shipped`, `rate`): the same
/// on a master and its workers.
fn run_of(
    plan: ScriptPlan,
    shipped: &Shipped,
    rate: Option<&SelfScheduled>,
) -> Result<ScriptRun, String> {
    let flags = shipped.flags();
    let from_flags = flags.is_set() || rate.is_some();
    let scenarios = if from_flags || plan.scenarios.is_empty() {
        let Some(default) = plan.default_type else {
            return Err(format!(
                "{}: the command line's load runs the default function, and the script exports none",
                shipped.name
            ));
        };
        let executor = match rate {
            Some(load) => load.executor(),
            None => plan
                .shortcut
                .overridden_by(&flags)
                .executor()
                .map_err(|e| format!("{}: {e}", shipped.name))?,
        };
        vec![
            Scenario::new(DEFAULT_SCENARIO, vec![default], executor)
                .map_err(|e| format!("{}: {e}", shipped.name))?
                .graceful_stop(Duration::from_secs_f64(shipped.stop_timeout_s)),
        ]
    } else {
        plan.scenarios
    };
    Ok(ScriptRun {
        scenarios,
        hooks: plan.hooks,
        thresholds: plan.thresholds,
        tags: plan.tags,
        handle_summary: plan.handle_summary,
        shipped: shipped.clone(),
    })
}
