//! aiotest's JavaScript front end: k6-style scripts on an embedded QuickJS engine.
//!
//! [`load`] reads a script, runs its init code once to read `options` and its exports,
//! and returns a [`ScriptPlan`]: user types whose VUs call the script's exported
//! functions, its scenarios, setup and teardown as hooks, and its thresholds, for the
//! runner to execute like any other plan.
//!
//! Each VU is a QuickJS runtime of its own with the script loaded, and a stack of its
//! own (a fiber): VU code is synchronous JavaScript, as in k6, and a request or a
//! `sleep` suspends that stack while the VU's async task awaits. No thread waits for the
//! network.
//!
//! **Who should depend on this crate:** front ends that run k6-style scripts (the
//! `aiotest` binary).

mod abort;
mod batch;
mod error;
mod fiber;
mod http;
mod natives;
mod options;
mod script;
mod summary;
mod user;
mod vu;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aiotest_core::lifecycle::Hooks;
use aiotest_core::scenario::Scenario;
use aiotest_core::user::UserType;
use aiotest_http_user::{HttpUser, HttpUserBuilder};
use aiotest_runner::Threshold;
use serde::Deserialize;

pub use abort::{AbortWatch, SCRIPT_ABORTS, aborted};
pub use error::{JsError, ScriptError};
pub use options::Shortcut;
pub use summary::HandleSummary;
pub use user::SCRIPT_ERRORS;

/// What a script asks the engine to run.
pub struct ScriptPlan {
    /// `options.scenarios`, each running its `exec` function (empty when the options
    /// have none).
    pub scenarios: Vec<Scenario>,
    /// `vus`, `duration`, `iterations`, `stages`: the load when there are no scenarios,
    /// or when the command line sets the load.
    pub shortcut: Shortcut,
    /// The user type of the `default` function, if the script exports one: what the
    /// shortcut load runs.
    pub default_type: Option<UserType>,
    /// `setup` and `teardown`.
    pub hooks: Hooks,
    /// `options.thresholds`.
    pub thresholds: Vec<Threshold>,
    /// `options.tags`: tags of every sample of the test.
    pub tags: Vec<(String, String)>,
    /// `handleSummary`, if the script exports it: an output that replaces the default
    /// summary with what it returns.
    pub handle_summary: Option<HandleSummary>,
    files: script::Files,
}

impl ScriptPlan {
    /// The files the script's init code opened from disk while it was loaded, by the path
    /// it gave: what a worker needs besides the script's text.
    pub fn opened_files(&self) -> BTreeMap<String, String> {
        match &self.files {
            script::Files::Disk(seen) => seen.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            script::Files::Given(files) => (**files).clone(),
        }
    }
}

/// What a script is loaded with besides its text.
#[derive(Clone, Default)]
pub struct Inputs {
    /// `__ENV`.
    pub env: BTreeMap<String, String>,
    /// HTTP settings over the options' (a command line's timeout, `--hosts`...): applied
    /// to the HTTP user after the options.
    pub http: Option<Arc<HttpOver>>,
}

/// What [`Inputs::http`] does to the options' HTTP user.
pub type HttpOver = dyn Fn(HttpUserBuilder) -> HttpUserBuilder + Send + Sync;

impl std::fmt::Debug for Inputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inputs")
            .field("env", &self.env.len())
            .field("http", &self.http.is_some())
            .finish()
    }
}

/// What the options VU reports of the script's exports.
#[cfg(test)]
mod tests {
    #[test]
    fn the_environment_a_script_reads_is_found_in_its_text() {
        let src = "const a = __ENV.BASE_URL; const b = __ENV['TOKEN']; const c = __ENV[\"X_1\"]; __ENV[name];";
        assert_eq!(super::env_referenced(src), ["BASE_URL", "TOKEN", "X_1"]);
    }
}

#[derive(Deserialize)]
struct Exports {
    options: Option<serde_json::Value>,
    functions: Vec<String>,
}

/// k6's default setup and teardown timeout.
const HOOK_TIMEOUT: Duration = Duration::from_secs(60);

/// Reads the script at `path`, runs its init code once, and plans its test. The files
/// its init code opens are read from beside it, and recorded
/// ([`ScriptPlan::opened_files`]).
pub fn load(path: &Path, inputs: Inputs) -> Result<ScriptPlan, ScriptError> {
    let file = path.display().to_string();
    let source = std::fs::read_to_string(path).map_err(|e| ScriptError {
        file: file.clone(),
        message: format!("cannot read it: {e}"),
    })?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    plan(
        file,
        source,
        dir,
        script::Files::Disk(Default::default()),
        inputs,
    )
}

/// Plans the test of a script given as text (`name` in errors), whose `open()` reads
/// only `files`: a worker's copy of its master's script.
pub fn load_text(
    name: &str,
    source: String,
    files: BTreeMap<String, String>,
    inputs: Inputs,
) -> Result<ScriptPlan, ScriptError> {
    plan(
        name.to_owned(),
        source,
        std::path::PathBuf::new(),
        script::Files::Given(Arc::new(files)),
        inputs,
    )
}

/// The names of the environment variables `source` reads (`__ENV.NAME`,
/// `__ENV['NAME']`): what a master ships to its workers of its environment.
pub fn env_referenced(source: &str) -> Vec<String> {
    let mut out = std::collections::BTreeSet::new();
    for (i, _) in source.match_indices("__ENV") {
        let rest = &source[i + 5..];
        let name: String = if let Some(r) = rest.strip_prefix('.') {
            r.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '$')
                .collect()
        } else if let Some(r) = rest.strip_prefix('[') {
            let r = r.trim_start();
            match r.chars().next() {
                Some(q @ ('\'' | '"' | '`')) => r[1..].chars().take_while(|c| *c != q).collect(),
                _ => String::new(),
            }
        } else {
            String::new()
        };
        if !name.is_empty() {
            out.insert(name);
        }
    }
    out.into_iter().collect()
}

fn plan(
    file: String,
    source: String,
    dir: std::path::PathBuf,
    files: script::Files,
    mut inputs: Inputs,
) -> Result<ScriptPlan, ScriptError> {
    let err = |message: String| ScriptError {
        file: file.clone(),
        message,
    };
    let mut script = script::Script {
        name: file.clone(),
        source,
        env: std::mem::take(&mut inputs.env),
        dir,
        reset_cookies: true,
        batch: Default::default(),
        setup_timeout: HOOK_TIMEOUT,
        teardown_timeout: HOOK_TIMEOUT,
        arrays: Default::default(),
        scenario_iterations: Default::default(),
        files,
    };
    // Init code once, to read the options and the exports (k6 does the same).
    let probe = Arc::new(script::Script {
        name: script.name.clone(),
        source: script.source.clone(),
        env: script.env.clone(),
        dir: script.dir.clone(),
        arrays: Arc::clone(&script.arrays),
        scenario_iterations: Arc::clone(&script.scenario_iterations),
        files: script.files.clone(),
        ..script
    });
    let described = vu::Vu::new(&probe, 0)
        .and_then(|mut vu| vu.describe())
        .map_err(|e| err(e.to_string()))?;
    let exports: Exports = serde_json::from_str(&described)
        .map_err(|e| err(format!("internal: the exports do not read: {e}")))?;
    let options: options::Options = match exports.options {
        None | Some(serde_json::Value::Null) => options::Options::default(),
        Some(v) => serde_json::from_value(v).map_err(|e| err(format!("options: {e}")))?,
    };
    script = Arc::try_unwrap(probe).unwrap_or_else(|p| script::Script {
        name: p.name.clone(),
        source: p.source.clone(),
        env: p.env.clone(),
        dir: p.dir.clone(),
        arrays: Arc::clone(&p.arrays),
        scenario_iterations: Arc::clone(&p.scenario_iterations),
        files: p.files.clone(),
        ..*p
    });
    let hook_timeout = |field: &str, v: &Option<serde_json::Value>| match v {
        None => Ok(HOOK_TIMEOUT),
        Some(serde_json::Value::String(s)) => aiotest_core::duration::parse_duration(s)
            .map_err(|e| err(format!("options.{field}: {e}"))),
        Some(other) => Err(err(format!(
            "options.{field}: {other} is not a duration (write \"30s\")"
        ))),
    };
    script.setup_timeout = hook_timeout("setupTimeout", &options.setup_timeout)?;
    script.teardown_timeout = hook_timeout("teardownTimeout", &options.teardown_timeout)?;
    script.reset_cookies = !options.no_cookies_reset;
    let limit = |field: &str, v: Option<u32>, default: usize| match v {
        None => Ok(default),
        Some(0) => Err(err(format!(
            "options.{field}: 0 sends nothing; give 1 or more"
        ))),
        Some(n) => Ok(n as usize),
    };
    let defaults = batch::Limits::default();
    script.batch = batch::Limits {
        all: limit("batch", options.batch, defaults.all)?,
        per_host: limit("batchPerHost", options.batch_per_host, defaults.per_host)?,
    };
    let script = Arc::new(script);

    let mut http = HttpUser::builder().verify_ssl(!options.insecure_skip_tls_verify);
    if let Some(n) = options.max_redirects {
        http = http.max_redirects(n);
    }
    if let Some(ua) = &options.user_agent {
        http = http.header("user-agent", ua);
    }
    for (name, address) in &options.hosts {
        http = http.resolve(name, address);
    }
    if let Some(over) = &inputs.http {
        http = over(http);
    }
    let http = http.build().map_err(|e| err(format!("options: {e}")))?;

    let has = |f: &str| exports.functions.iter().any(|x| x == f);
    let default_type = if has("default") {
        Some(user::user_type(&script, &http, "default").map_err(err)?)
    } else {
        None
    };
    let mut scenarios = Vec::new();
    for (name, spec) in options.scenarios.iter().flatten() {
        let plan = spec.plan(name).map_err(err)?;
        if !has(&plan.exec) {
            return Err(err(format!(
                "options.scenarios.{name}.exec: the script exports no function `{}`{}",
                plan.exec,
                if plan.exec == "default" {
                    " (export default function () {...}, or name one with exec)"
                } else {
                    ""
                }
            )));
        }
        let t = user::user_type(&script, &http, &plan.exec).map_err(err)?;
        let mut sc = Scenario::new(plan.name.clone(), vec![t], plan.executor)
            .map_err(|e| err(format!("options.scenarios.{name}: {e}")))?;
        if let Some(d) = plan.start_time {
            sc = sc.start_time(d);
        }
        if let Some(d) = plan.graceful_stop {
            sc = sc.graceful_stop(d);
        }
        for (k, v) in plan.tags {
            sc = sc.tag(k, v);
        }
        scenarios.push(sc);
    }
    if scenarios.is_empty() && default_type.is_none() {
        return Err(err(
            "the script exports no default function and no scenarios: nothing to run \
             (export default function () {...})"
                .into(),
        ));
    }
    let shortcut = options.shortcut().map_err(err)?;
    if !scenarios.is_empty() && shortcut.is_set() {
        return Err(err(
            "options: scenarios and vus/duration/iterations/stages cannot be combined (k6 \
             refuses it too): describe the load in the scenarios"
                .into(),
        ));
    }
    let trend_stats = match &options.summary_trend_stats {
        None => summary::TREND_STATS
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
        Some(given) => summary::trend_stats(given).map_err(err)?,
    };
    let thresholds = options
        .threshold_exprs()
        .map_err(err)?
        .iter()
        .map(|t| Threshold::parse(t).map_err(|e| err(format!("options.thresholds: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ScriptPlan {
        scenarios,
        shortcut,
        default_type,
        hooks: user::hooks(&script, &http, has("setup"), has("teardown")),
        thresholds,
        tags: options.tags.into_iter().collect(),
        handle_summary: has("handleSummary")
            .then(|| HandleSummary::new(Arc::clone(&script), trend_stats)),
        files: script.files.clone(),
    })
}
