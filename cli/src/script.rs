//! `aiotest run script.js`: a k6-style script, through the `aiotest-script` front end,
//! with the command line's load over the script's own as k6 does it.

use aiotest_core::lifecycle::Hooks;
use aiotest_core::scenario::{DEFAULT_SCENARIO, Scenario};
use aiotest_runner::Threshold;
use aiotest_script::Shortcut;

use crate::args::RunArgs;
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
}

/// Loads the script at `path` and decides its load: `-u`, `-t`, `-i` and `--stages`
/// override the options' `vus`, `duration`, `iterations` and `stages` one by one and
/// replace its scenarios (as in k6); `--rate` runs the default function at that rate.
pub(crate) fn load(path: &std::path::Path, args: &RunArgs) -> Result<ScriptRun, UsageError> {
    for (given, flag) in [
        (args.master || args.worker, "--master/--worker"),
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
    // The command line's HTTP settings over the options' (its --hosts after theirs).
    let http = crate::quick::HttpSettings::from_args(args)?;
    let inputs = aiotest_script::Inputs {
        env: std::env::vars().collect(),
        http: Some(std::sync::Arc::new(move |b| http.apply(b))),
    };
    let plan = aiotest_script::load(path, inputs).map_err(|e| UsageError(e.to_string()))?;
    let flags = Shortcut {
        vus: args.users,
        duration: args.run_time,
        iterations: args.iterations,
        stages: args.stages.as_ref().map(|s| s.0.clone()),
    };
    let from_flags = flags.is_set() || args.rate.is_some();
    let scenarios = if from_flags || plan.scenarios.is_empty() {
        let Some(default) = plan.default_type else {
            return Err(UsageError(format!(
                "{}: the command line's load runs the default function, and the script exports none",
                path.display()
            )));
        };
        let executor = match crate::load::self_scheduled(args)? {
            Some(load) if args.rate.is_some() => load.executor(),
            _ => plan
                .shortcut
                .overridden_by(&flags)
                .executor()
                .map_err(|e| UsageError(format!("{}: {e}", path.display())))?,
        };
        vec![
            Scenario::new(DEFAULT_SCENARIO, vec![default], executor)
                .map_err(|e| UsageError(format!("{}: {e}", path.display())))?
                .graceful_stop(args.stop_timeout),
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
    })
}
