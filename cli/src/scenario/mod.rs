//! Scenario files: user types, tasks, load and setup in TOML, for tests without Rust.
//!
//! A file is checked completely before anything runs; every problem is reported as
//! `FILE:LINE: FIELD: what is wrong`. The format is documented in the README, and
//! `examples/scenario.toml` uses every field.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::time::Duration;

use aiotest_core::lifecycle::{Hooks, Lifecycle};
use aiotest_core::prelude::*;
use aiotest_core::scenario::Scenario;

use crate::quick::HttpSettings;
use aiotest_core::shape::validate_users;
use aiotest_core::user::ExecutionMode;
use aiotest_http_user::{HttpClient, HttpUser};
use serde::Deserialize;
use toml::Spanned;

use crate::args::parse_duration;

pub(crate) mod data;
pub(crate) mod env;
mod feeds;
mod scenarios;
mod syntax;
mod template;

use aiotest_runner::Threshold;

type BoxedShape = Box<dyn LoadUserShape>;

/// A problem in a scenario file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioError {
    /// The file.
    pub file: PathBuf,
    /// The line (1-based), when known.
    pub line: Option<usize>,
    /// The field, as a path like `users[0].tasks[1].weight`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if self.field.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.field, self.message)
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    host: Option<Spanned<String>>,
    http: Option<Spanned<HttpSpec>>,
    load: Option<Spanned<LoadSpec>>,
    #[serde(default)]
    setup: Vec<Spanned<RequestSpec>>,
    #[serde(default)]
    teardown: Vec<Spanned<RequestSpec>>,
    users: Option<Spanned<Vec<Spanned<UserSpec>>>>,
    #[serde(default)]
    scenarios: Vec<Spanned<scenarios::ScenarioSpec>>,
    #[serde(default)]
    thresholds: Vec<Spanned<ThresholdSpec>>,
    #[serde(default)]
    data: Vec<Spanned<data::DataSpec>>,
    #[serde(default)]
    metrics: Vec<Spanned<feeds::MetricSpec>>,
}

/// A threshold in the file: the flag's expression, alone or as `{ expr = "..." }`.
#[derive(Deserialize)]
#[serde(
    untagged,
    expecting = "expected a threshold as --threshold takes it, e.g. \"p95<300ms\", or a table with one key, expr = \"p95<300ms\""
)]
enum ThresholdSpec {
    Expr(String),
    Table(ThresholdTable),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ThresholdTable {
    expr: String,
}

/// `[http]`: the HTTP users' settings.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpSpec {
    timeout: Option<Spanned<String>>,
    max_retries: Option<Spanned<u32>>,
    verify_ssl: Option<bool>,
    max_redirects: Option<Spanned<u32>>,
    max_response_body: Option<Spanned<SizeSpec>>,
    /// PEM files, relative to the scenario file.
    client_cert: Option<Spanned<String>>,
    client_key: Option<Spanned<String>>,
}

/// A size: bytes, or a string with a unit (`"64MiB"`).
#[derive(Deserialize)]
#[serde(
    untagged,
    expecting = "expected a size: a number of bytes or a string such as \"10MiB\""
)]
enum SizeSpec {
    Bytes(u64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoadSpec {
    // Wider than any valid count, so a huge one gets the limit's message.
    users: Option<Spanned<u64>>,
    spawn_rate: Option<Spanned<f64>>,
    run_time: Option<Spanned<String>>,
    stages: Option<Spanned<Vec<Spanned<StageSpec>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StageSpec {
    duration: Spanned<String>,
    target: Spanned<u64>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(
    untagged,
    expecting = "expected seconds (a number, e.g. 0.5), a range of seconds [min, max], e.g. [0.5, 1.5], { pacing = SECONDS } or { throughput = TASKS_PER_SECOND }"
)]
enum WaitSpec {
    Fixed(f64),
    Range([f64; 2]),
    Paced(PacedWait),
}

/// `{ pacing = 2.0 }` (a task every 2 s, its own time included) or `{ throughput = 0.5 }`
/// (tasks per second, the same thing as a rate).
#[derive(Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields)]
struct PacedWait {
    pacing: Option<f64>,
    throughput: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserSpec {
    name: Spanned<String>,
    weight: Option<Spanned<u32>>,
    wait_time: Option<Spanned<WaitSpec>>,
    execution_mode: Option<Spanned<String>>,
    max_concurrent_tasks: Option<Spanned<usize>>,
    #[serde(default)]
    headers: BTreeMap<String, Spanned<String>>,
    /// This type's own `timeout`, `max_retries`, `verify_ssl` (over the file's `[http]`).
    http: Option<Spanned<HttpSpec>>,
    tasks: Option<Spanned<Vec<Spanned<RequestSpec>>>>,
}

/// A task of a user, or a setup request: the same fields, checked by role.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestSpec {
    name: Option<Spanned<String>>,
    weight: Option<Spanned<u32>>,
    method: Option<Spanned<String>>,
    path: Spanned<String>,
    #[serde(default)]
    headers: BTreeMap<String, Spanned<String>>,
    body: Option<Spanned<String>>,
    json: Option<Spanned<toml::Value>>,
    expect_status: Option<Spanned<u16>>,
    body_contains: Option<Spanned<String>>,
    #[serde(default)]
    capture: BTreeMap<String, Spanned<CaptureSpec>>,
    #[serde(default)]
    checks: Vec<Spanned<CheckSpec>>,
    /// Locust's labels (`["slow"]`, which `--tags` select) or k6's key=value tags
    /// (`{ team = "web" }`, on its samples).
    tags: Option<Spanned<toml::Value>>,
    /// The group it is made in (k6's `group`): `checkout`, nested as `checkout::pay`.
    group: Option<Spanned<String>>,
    /// Named metrics it feeds.
    #[serde(default)]
    metrics: Vec<Spanned<feeds::FeedSpec>>,
}

/// Where a capture takes its value: a JSON pointer into the body, `{ header = NAME }`, or
/// `{ regex = "..." }` (its first group, else the whole match).
#[derive(Deserialize, Clone)]
#[serde(
    untagged,
    expecting = "expected a JSON pointer (\"/data/token\"), { header = \"NAME\" } or { regex = \"token=(\\\\w+)\" }"
)]
enum CaptureSpec {
    Pointer(String),
    Header(HeaderCapture),
    Regex(RegexCapture),
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct HeaderCapture {
    header: String,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RegexCapture {
    regex: String,
}

/// A checked capture of a task.
#[derive(Clone, Debug)]
enum Capture {
    Json(JsonPointer),
    Header(http::header::HeaderName),
    Regex(regex_lite::Regex),
}

/// A named check of a response (k6's `check`): one of `status`, `header`, `json`,
/// `body_contains` or `regex`, with `equals` for a header's or a JSON value's value.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckSpec {
    name: Spanned<String>,
    status: Option<Spanned<u16>>,
    header: Option<Spanned<String>>,
    json: Option<Spanned<String>>,
    body_contains: Option<Spanned<String>>,
    regex: Option<Spanned<String>>,
    equals: Option<Spanned<toml::Value>>,
    /// Also fail the request when the check fails (it only counts otherwise).
    #[serde(default)]
    fail_request: bool,
}

/// A JSON pointer (`/data/items/0/id`), split and unescaped once: looking one up with
/// `Value::pointer` unescapes each part again, a string allocated per part and request.
#[derive(Clone, Debug)]
struct JsonPointer {
    text: String,
    parts: Vec<String>,
}

impl JsonPointer {
    /// `text`, which is empty or starts with `/` (checked with the file).
    fn new(text: &str) -> Self {
        let parts = text
            .split('/')
            .skip(1)
            .map(|p| p.replace("~1", "/").replace("~0", "~"))
            .collect();
        JsonPointer {
            text: text.to_owned(),
            parts,
        }
    }

    /// The value it points at in `v`.
    fn find<'v>(&self, v: &'v serde_json::Value) -> Option<&'v serde_json::Value> {
        self.parts.iter().try_fold(v, |v, part| match v {
            serde_json::Value::Object(o) => o.get(part),
            serde_json::Value::Array(a) => {
                // RFC 6901: a decimal index without leading zeros.
                if !part.bytes().all(|b| b.is_ascii_digit())
                    || (part.len() > 1 && part.starts_with('0'))
                {
                    return None;
                }
                a.get(part.parse::<usize>().ok()?)
            }
            _ => None,
        })
    }
}

impl fmt::Display for JsonPointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A checked named check.
#[derive(Clone, Debug)]
struct NamedCheck {
    name: String,
    what: CheckKind,
    fail_request: bool,
}

#[derive(Clone, Debug)]
enum CheckKind {
    Status(u16),
    Header(http::header::HeaderName, Option<String>),
    Json(JsonPointer, Option<serde_json::Value>),
    BodyContains(String),
    Regex(regex_lite::Regex),
}

/// A scenario file, checked and ready to run.
pub struct ScenarioFile {
    /// The user types.
    pub user_types: Vec<UserType>,
    /// Its `[[scenarios]]`, if it has any (then they set the load, not `[load]`).
    pub scenarios: Vec<Scenario>,
    /// Setup (and its captures).
    pub hooks: Hooks,
    /// The file's load, if it has one.
    pub shape: Option<Box<dyn LoadUserShape>>,
    /// The file's `[load]` as written, so the command line can change one part of it.
    pub load: Option<FileLoad>,
    /// Every request name the file's requests are recorded under, when all are known
    /// before the run (`None` when a name depends on setup's captures).
    pub request_names: Option<Vec<String>>,
    /// The file's host.
    pub host: Option<String>,
    /// Where the first relative path is (`FILE:LINE: FIELD`), if any: such a file needs a
    /// host from the file, `-H` or `--demo`.
    pub relative_path: Option<String>,
    /// Its thresholds (`thresholds`), before any of the command line's.
    pub thresholds: Vec<Threshold>,
    /// Its data files (`[[data]]`).
    pub(crate) data: Arc<data::Data>,
    /// Each tag of its requests, with the names of the requests that carry it.
    pub tags: BTreeMap<String, Vec<String>>,
}

/// `--tags` and `--exclude-tags`: which tasks run (Locust's). Setup and teardown always
/// run.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct TagFilter {
    /// Only tasks with one of these tags (all tasks when empty).
    pub include: Vec<String>,
    /// No task with one of these tags.
    pub exclude: Vec<String>,
}

impl TagFilter {
    /// Whether a task tagged `tags` runs.
    fn selects(&self, tags: &[String]) -> bool {
        (self.include.is_empty() || tags.iter().any(|t| self.include.contains(t)))
            && !tags.iter().any(|t| self.exclude.contains(t))
    }
}

/// What a file is built with besides its text: the command line's settings, and in a
/// distributed run's worker the master's.
#[derive(Clone, Copy)]
pub(crate) struct Inputs<'a> {
    /// HTTP settings over the file's `[http]`.
    pub(crate) http: &'a HttpSettings,
    /// Where `{{env.NAME}}` comes from.
    pub(crate) env: env::Env<'a>,
    /// Which tasks run.
    pub(crate) tags: &'a TagFilter,
    /// Where `[[data]]` files are read from.
    pub(crate) files: data::Files<'a>,
    /// `--no-setup`: nothing may use `{{setup.NAME}}` but setup itself.
    pub(crate) no_setup: bool,
}

static NO_TAGS: TagFilter = TagFilter {
    include: Vec::new(),
    exclude: Vec::new(),
};

impl Inputs<'_> {
    /// The file alone: this process's environment, files from the disk, every task.
    pub(crate) fn with_http(http: &HttpSettings) -> Inputs<'_> {
        Inputs {
            http,
            env: env::Env::Process,
            tags: &NO_TAGS,
            files: data::Files::Disk,
            no_setup: false,
        }
    }
}

/// A file's `[load]`, as written.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FileLoad {
    /// `users`, `spawn_rate`, `run_time`.
    Constant {
        /// Users (1 when not given).
        users: u32,
        /// Users started per second, if given.
        spawn_rate: Option<f64>,
        /// How long, if given.
        run_time: Option<Duration>,
    },
    /// `stages`.
    Stages,
}

struct Ctx<'a> {
    file: &'a Path,
    text: &'a str,
    /// `--no-setup`: setup's values never come.
    no_setup: bool,
    /// The declared `[[metrics]]`, by name.
    metrics: HashMap<String, aiotest_metrics::Metric>,
}

impl Ctx<'_> {
    fn line_of(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .matches('\n')
            .count()
            + 1
    }

    fn err<T>(
        &self,
        span: Option<std::ops::Range<usize>>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Result<T, ScenarioError> {
        Err(ScenarioError {
            file: self.file.to_owned(),
            line: span.map(|s| self.line_of(s.start)),
            field: field.into(),
            message: message.into(),
        })
    }
}

/// Reads, checks and builds the scenario in `file`.
pub fn load(file: &Path) -> Result<ScenarioFile, ScenarioError> {
    load_with(file, Inputs::with_http(&HttpSettings::default()))
}

/// [`load`], with the command line's settings.
pub(crate) fn load_with(file: &Path, inputs: Inputs<'_>) -> Result<ScenarioFile, ScenarioError> {
    let text = std::fs::read_to_string(file).map_err(|e| ScenarioError {
        file: file.to_owned(),
        line: None,
        field: String::new(),
        message: format!("cannot read it: {e}"),
    })?;
    parse_with(file, &text, inputs)
}

/// Checks and builds a scenario from `text` (named `file` in errors).
pub fn parse(file: &Path, text: &str) -> Result<ScenarioFile, ScenarioError> {
    parse_with(file, text, Inputs::with_http(&HttpSettings::default()))
}

/// The file's `[http]`, checked; a client certificate is read through `files`.
fn http_settings(
    cx: &Ctx<'_>,
    spec: Option<&Spanned<HttpSpec>>,
    field: &str,
    files: data::Files<'_>,
) -> Result<HttpSettings, ScenarioError> {
    let Some(h) = spec else {
        return Ok(HttpSettings::default());
    };
    let h = h.get_ref();
    let timeout_s = match &h.timeout {
        Some(t) => Some(
            crate::quick::parse_timeout(t.get_ref())
                .or_else(|e| cx.err(Some(t.span()), format!("{field}.timeout"), e))?
                .as_secs_f64(),
        ),
        None => None,
    };
    if let Some(n) = &h.max_retries
        && *n.get_ref() > crate::quick::MAX_RETRIES
    {
        return cx.err(
            Some(n.span()),
            format!("{field}.max_retries"),
            format!(
                "{} is more than the {} retries allowed",
                n.get_ref(),
                crate::quick::MAX_RETRIES
            ),
        );
    }
    if let Some(n) = &h.max_redirects
        && *n.get_ref() > crate::quick::MAX_REDIRECTS
    {
        return cx.err(
            Some(n.span()),
            format!("{field}.max_redirects"),
            format!(
                "{} is more than the {} redirects allowed",
                n.get_ref(),
                crate::quick::MAX_REDIRECTS
            ),
        );
    }
    let max_response_body = match &h.max_response_body {
        Some(b) => {
            let text = match b.get_ref() {
                SizeSpec::Bytes(n) => n.to_string(),
                SizeSpec::Text(t) => t.clone(),
            };
            Some(
                crate::quick::parse_body_limit(&text)
                    .or_else(|e| cx.err(Some(b.span()), format!("{field}.max_response_body"), e))?,
            )
        }
        None => None,
    };
    let client_cert = match (&h.client_cert, &h.client_key) {
        (Some(cert), Some(key)) => {
            let read = |f: &Spanned<String>, name: &str| {
                data::read_file(cx, files, f, &format!("{field}.{name}"))
            };
            let pem = (read(cert, "client_cert")?, read(key, "client_key")?);
            // Checked here, so a bad file names its field and line.
            if let Err(e) = HttpUser::builder()
                .client_cert_pem(pem.0.as_bytes(), pem.1.as_bytes())
                .build()
            {
                return cx.err(
                    Some(cert.span()),
                    format!("{field}.client_cert"),
                    e.to_string(),
                );
            }
            Some(pem)
        }
        (None, None) => None,
        (Some(c), None) => {
            return cx.err(
                Some(c.span()),
                format!("{field}.client_cert"),
                "needs client_key (the certificate's private key)",
            );
        }
        (None, Some(k)) => {
            return cx.err(
                Some(k.span()),
                format!("{field}.client_key"),
                "needs client_cert (the certificate it belongs to)",
            );
        }
    };
    Ok(HttpSettings {
        timeout_s,
        max_retries: h.max_retries.as_ref().map(|n| *n.get_ref()),
        verify_ssl: h.verify_ssl,
        max_redirects: h.max_redirects.as_ref().map(|n| *n.get_ref()),
        max_response_body,
        client_cert,
        // A file names its host; the command line's --hosts may point it elsewhere.
        hosts: Vec::new(),
    })
}

/// [`parse`], with the command line's settings (`inputs`).
pub(crate) fn parse_with(
    file: &Path,
    text: &str,
    inputs: Inputs<'_>,
) -> Result<ScenarioFile, ScenarioError> {
    let overrides = inputs.http;
    let env = inputs.env;
    let cx = Ctx {
        file,
        text,
        no_setup: inputs.no_setup,
        metrics: HashMap::new(),
    };
    let mut spec: FileSpec = match toml::from_str(text) {
        Ok(s) => s,
        Err(e) => {
            let line = e.span().map(|s| cx.line_of(s.start));
            // Name the field in full (`users[1].tasks[0].path`) and its type in words.
            let field = e
                .span()
                .map(|s| syntax::field_at(text, s.start))
                .unwrap_or_default();
            let on_header = line
                .and_then(|l| text.lines().nth(l - 1))
                .is_some_and(|l| l.trim_start().starts_with('['));
            return Err(ScenarioError {
                file: file.to_owned(),
                line,
                message: syntax::plain_message(e.message().trim(), &field, on_header),
                field,
            });
        }
    };
    env::expand_file(&cx, &mut spec, env)?;
    let cx = Ctx {
        metrics: feeds::declare(&cx, &spec.metrics)?,
        ..cx
    };
    let host = match &spec.host {
        Some(h) => {
            let v = h.get_ref();
            match aiotest_core::url::parse_base_url(v) {
                Ok(u) if u.rest.contains(['?', '#']) => {
                    return cx.err(Some(h.span()), "host", format!("`{v}`: no query string"));
                }
                Ok(_) => {}
                Err(e) => return cx.err(Some(h.span()), "host", format!("`{v}`: {e}")),
            }
            Some(v.clone())
        }
        None => None,
    };
    let file_http = http_settings(&cx, spec.http.as_ref(), "http", inputs.files)?;
    let http = overrides.over(&file_http);
    let (shape, load) = match load_shape(&cx, spec.load.as_ref())? {
        Some((s, l)) => (Some(s), Some(l)),
        None => (None, None),
    };
    let (hooks, captures) = setup(&cx, &spec.setup, &spec.teardown, &http)?;
    let data = Arc::new(data::Data::load(&cx, &spec.data, inputs.files)?);
    let Some(users) = &spec.users else {
        return cx.err(None, "users", "at least one [[users]] table is needed");
    };
    if users.get_ref().is_empty() {
        return cx.err(
            Some(users.span()),
            "users",
            "at least one [[users]] table is needed",
        );
    }
    // One HTTP configuration (TLS roots included) for every user type: building one per
    // type made checking a file of many types slow and large.
    let http_user = http
        .apply(HttpUser::builder())
        .build()
        .or_else(|e| cx.err(spec.http.as_ref().map(Spanned::span), "http", e.to_string()))?;
    let mut user_types = Vec::new();
    let mut untasked = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, u) in users.get_ref().iter().enumerate() {
        if !seen.insert(u.get_ref().name.get_ref().as_str()) {
            let n = &u.get_ref().name;
            return cx.err(
                Some(n.span()),
                format!("users[{i}].name"),
                format!("`{}` is used twice", n.get_ref()),
            );
        }
        // A user type's own `http` is over the file's; the command line is over both.
        let own;
        let client = match &u.get_ref().http {
            Some(h) => {
                let field = format!("users[{i}].http");
                let own_http = http_settings(&cx, Some(h), &field, inputs.files)?;
                let settings = overrides.over(&own_http.over(&file_http));
                own = settings
                    .apply(HttpUser::builder())
                    .build()
                    .or_else(|e| cx.err(Some(h.span()), field, e.to_string()))?;
                &own
            }
            None => &http_user,
        };
        let refs = Refs {
            captures: &captures,
            data: &data,
            tags: inputs.tags,
        };
        match user_type(&cx, i, u, &refs, client)? {
            Some(t) => user_types.push(t),
            None => untasked.push(u.get_ref().name.get_ref().clone()),
        }
    }
    if user_types.is_empty() {
        return cx.err(
            None,
            "",
            format!(
                "no task is left to run: {} leave no user type a task",
                tag_flags(inputs.tags)
            ),
        );
    }
    if let (Some(load), Some(first)) = (&spec.load, spec.scenarios.first()) {
        let _ = first;
        return cx.err(
            Some(load.span()),
            "load",
            "give [load] or [[scenarios]], not both: each scenario has its own executor",
        );
    }
    let scenarios = scenarios::build(&cx, &spec.scenarios, &user_types, &untasked)?;
    let relative_path = first_relative_path(&cx, &spec);
    let mut thresholds = Vec::new();
    for (i, t) in spec.thresholds.iter().enumerate() {
        let (ThresholdSpec::Expr(expr) | ThresholdSpec::Table(ThresholdTable { expr })) =
            t.get_ref();
        match Threshold::parse(expr) {
            Ok(parsed) => thresholds.push(parsed),
            Err(e) => return cx.err(Some(t.span()), format!("thresholds[{i}]"), e.to_string()),
        }
    }
    Ok(ScenarioFile {
        user_types,
        scenarios,
        hooks,
        shape,
        load,
        request_names: request_names(&spec),
        host,
        relative_path,
        thresholds,
        data,
        tags: tag_names(&cx, &spec)?,
    })
}

/// `--tags X` / `--exclude-tags Y`, as the user gave them.
fn tag_flags(tags: &TagFilter) -> String {
    let mut parts = Vec::new();
    if !tags.include.is_empty() {
        parts.push(format!("--tags {}", tags.include.join(",")));
    }
    if !tags.exclude.is_empty() {
        parts.push(format!("--exclude-tags {}", tags.exclude.join(",")));
    }
    parts.join(" and ")
}

/// Each tag, with the names of the requests that carry it (for `{tag=...}` thresholds).
fn tag_names(
    cx: &Ctx<'_>,
    spec: &FileSpec,
) -> Result<BTreeMap<String, Vec<String>>, ScenarioError> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut add = |field: String, r: &Spanned<RequestSpec>| -> Result<(), ScenarioError> {
        let labels = task_tags(cx, &field, r.get_ref())?.labels;
        let r = r.get_ref();
        let Some(first) = r.tags.as_ref().filter(|_| !labels.is_empty()) else {
            return Ok(());
        };
        let name = match &r.name {
            Some(n) => n.get_ref().clone(),
            None if r.path.get_ref().contains("{{setup.") => {
                return cx.err(
                    Some(first.span()),
                    format!("{field}.tags"),
                    "a tagged request whose path takes setup's values needs a name: thresholds select it by name",
                );
            }
            None if r.path.get_ref().contains("{{") => r.path.get_ref().clone(),
            None => crate::run::request_name(r.path.get_ref()),
        };
        for t in &labels {
            let names = out.entry(t.clone()).or_default();
            if !names.contains(&name) {
                names.push(name.clone());
            }
        }
        Ok(())
    };
    for (i, r) in spec.setup.iter().enumerate() {
        add(format!("setup[{i}]"), r)?;
    }
    for (i, r) in spec.teardown.iter().enumerate() {
        add(format!("teardown[{i}]"), r)?;
    }
    for (i, u) in spec
        .users
        .iter()
        .flat_map(|u| u.get_ref().iter())
        .enumerate()
    {
        for (j, t) in u
            .get_ref()
            .tasks
            .iter()
            .flat_map(|t| t.get_ref().iter())
            .enumerate()
        {
            add(format!("users[{i}].tasks[{j}]"), t)?;
        }
    }
    Ok(out)
}

/// What a request's templates may refer to, and which tasks run.
struct Refs<'a, 'd> {
    /// Setup's captures (`{{setup.NAME}}`).
    captures: &'a [String],
    /// The data files (`{{data.COLUMN}}`).
    data: &'d Arc<data::Data>,
    tags: &'a TagFilter,
}

/// The names the file's requests are recorded under: explicit, or the path's.
fn request_names(spec: &FileSpec) -> Option<Vec<String>> {
    let tasks = spec
        .users
        .iter()
        .flat_map(|u| u.get_ref().iter())
        .flat_map(|u| u.get_ref().tasks.iter().flat_map(|t| t.get_ref().iter()));
    let mut names = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for r in spec.setup.iter().chain(&spec.teardown).chain(tasks) {
        let r = r.get_ref();
        let name = match &r.name {
            Some(n) => n.get_ref().clone(),
            // A path with a user's values is named by its template.
            None if r.path.get_ref().contains("{{vars.")
                || r.path.get_ref().contains(BUILTIN)
                || r.path.get_ref().contains(data::OPEN) =>
            {
                r.path.get_ref().clone()
            }
            // A path templated by setup's values is named only once setup has run.
            None if r.path.get_ref().contains("{{") => return None,
            None => crate::run::request_name(r.path.get_ref()),
        };
        if seen.insert(name.clone()) {
            names.push(name);
        }
    }
    Some(names)
}

/// `FILE:LINE: FIELD` of the first request whose path is relative.
fn first_relative_path(cx: &Ctx<'_>, spec: &FileSpec) -> Option<String> {
    let located = |field: String, r: &Spanned<RequestSpec>| {
        let p = &r.get_ref().path;
        p.get_ref().starts_with('/').then(|| {
            format!(
                "{}:{}: {field}.path",
                cx.file.display(),
                cx.line_of(p.span().start)
            )
        })
    };
    let setup = spec
        .setup
        .iter()
        .enumerate()
        .find_map(|(i, r)| located(format!("setup[{i}]"), r))
        .or_else(|| {
            spec.teardown
                .iter()
                .enumerate()
                .find_map(|(i, r)| located(format!("teardown[{i}]"), r))
        });
    setup.or_else(|| {
        spec.users
            .as_ref()?
            .get_ref()
            .iter()
            .enumerate()
            .find_map(|(i, u)| {
                u.get_ref()
                    .tasks
                    .as_ref()?
                    .get_ref()
                    .iter()
                    .enumerate()
                    .find_map(|(j, t)| located(format!("users[{i}].tasks[{j}]"), t))
            })
    })
}

fn load_shape(
    cx: &Ctx<'_>,
    load: Option<&Spanned<LoadSpec>>,
) -> Result<Option<(BoxedShape, FileLoad)>, ScenarioError> {
    let Some(load) = load else {
        return Ok(None);
    };
    let l = load.get_ref();
    if let Some(stages) = &l.stages {
        if l.users.is_some() || l.run_time.is_some() {
            return cx.err(
                Some(load.span()),
                "load",
                "give either stages or users/run_time, not both",
            );
        }
        let mut out = Vec::new();
        for (i, st) in stages.get_ref().iter().enumerate() {
            let d = &st.get_ref().duration;
            let duration = parse_duration(d.get_ref())
                .or_else(|e| cx.err(Some(d.span()), format!("load.stages[{i}].duration"), e))?;
            let t = &st.get_ref().target;
            let target = validate_users(*t.get_ref()).or_else(|e| {
                cx.err(
                    Some(t.span()),
                    format!("load.stages[{i}].target"),
                    e.to_string(),
                )
            })?;
            out.push(Stage::new(duration, target));
        }
        let shape = StagesShape::new(out)
            .or_else(|e| cx.err(Some(stages.span()), "load.stages", e.to_string()))?;
        return Ok(Some((Box::new(shape), FileLoad::Stages)));
    }
    let users = match &l.users {
        Some(u) => validate_users(*u.get_ref())
            .or_else(|e| cx.err(Some(u.span()), "load.users", e.to_string()))?,
        None => 1,
    };
    let given_rate = match &l.spawn_rate {
        Some(r) if r.get_ref().is_nan() || *r.get_ref() <= 0.0 => {
            return cx.err(Some(r.span()), "load.spawn_rate", "must be above 0");
        }
        Some(r) => Some(*r.get_ref()),
        None => None,
    };
    let rate = given_rate.unwrap_or(f64::from(users.max(1)));
    let run_time = match &l.run_time {
        Some(t) => Some(
            parse_duration(t.get_ref()).or_else(|e| cx.err(Some(t.span()), "load.run_time", e))?,
        ),
        None => None,
    };
    let shape = ConstantShape::new(users, rate, run_time)
        .or_else(|e| cx.err(Some(load.span()), "load", e.to_string()))?;
    let written = FileLoad::Constant {
        users,
        spawn_rate: given_rate,
        run_time,
    };
    Ok(Some((Box::new(shape), written)))
}

/// Substitutes `{{setup.NAME}}` from `values`; names were checked against the captures.
fn render(template: &str, values: Option<&serde_json::Value>) -> String {
    let filled = template::replace::<std::convert::Infallible>(template, "{{setup.", |name| {
        Ok(Some(match values.and_then(|v| v.get(name)) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            // Setup did not run (`--no-setup`): the value is empty.
            None => String::new(),
        }))
    });
    match filled {
        Ok(s) => s,
        Err(never) => match never {},
    }
}

/// Every string in `v`.
fn json_strings<'v>(v: &'v serde_json::Value, out: &mut Vec<&'v str>) {
    match v {
        serde_json::Value::String(s) => out.push(s),
        serde_json::Value::Array(a) => a.iter().for_each(|x| json_strings(x, out)),
        serde_json::Value::Object(o) => o.values().for_each(|x| json_strings(x, out)),
        _ => {}
    }
}

/// What a request's templates may name.
#[derive(Clone, Copy)]
struct Scope<'a> {
    /// Setup's captures.
    captures: &'a [String],
    /// The captures of the user type's tasks (none for setup and teardown).
    vars: &'a [String],
    /// The data columns; `None` for setup and teardown, which run for no user.
    columns: Option<&'a [String]>,
    /// A setup request's: it runs only when setup does.
    in_setup: bool,
}

/// Every `{{setup.NAME}}` in `s` must name a setup capture, every `{{vars.NAME}}` a
/// capture of the user type's tasks, every `{{data.COLUMN}}` a data file's column.
fn check_refs(
    cx: &Ctx<'_>,
    s: &Spanned<String>,
    field: &str,
    scope: Scope<'_>,
) -> Result<(), ScenarioError> {
    for found in template::refs(s.get_ref(), data::OPEN) {
        let Ok(name) = found else {
            return cx.err(Some(s.span()), field, format!("unclosed `{}`", data::OPEN));
        };
        match scope.columns {
            None => {
                return cx.err(
                    Some(s.span()),
                    field,
                    format!(
                        "`{{{{data.{name}}}}}`: setup and teardown run once, for no user; data rows belong to users' tasks"
                    ),
                );
            }
            Some(cols) if !cols.iter().any(|c| c == name) => {
                return cx.err(
                    Some(s.span()),
                    field,
                    format!(
                        "`{{{{data.{name}}}}}` is not a column of any [[data]] file{}",
                        if cols.is_empty() {
                            String::new()
                        } else {
                            format!("; the columns are: {}", cols.join(", "))
                        }
                    ),
                );
            }
            Some(_) => {}
        }
    }
    for (open, known, whose) in [
        ("{{setup.", scope.captures, "any [[setup]] request"),
        ("{{vars.", scope.vars, "any task of this user type"),
    ] {
        for found in template::refs(s.get_ref(), open) {
            let Ok(name) = found else {
                return cx.err(Some(s.span()), field, format!("unclosed `{open}`"));
            };
            if !known.iter().any(|c| c == name) {
                return cx.err(
                    Some(s.span()),
                    field,
                    format!("`{open}{name}}}}}` is not captured by {whose}"),
                );
            }
            if open == "{{setup." && cx.no_setup && !scope.in_setup {
                return cx.err(
                    Some(s.span()),
                    field,
                    format!(
                        "`{{{{setup.{name}}}}}`: --no-setup skips the setup that captures it, so it would be empty; run setup, or leave the value out"
                    ),
                );
            }
        }
    }
    Ok(())
}

/// A request checked and with its templates unresolved.
#[derive(Clone)]
struct RequestPlan {
    name: Option<String>,
    method: http::Method,
    path: String,
    headers: Vec<(String, String)>,
    body: Option<String>,
    json: Option<serde_json::Value>,
    expect_status: Option<u16>,
    body_contains: Option<String>,
    /// What a task captures into its user's variables.
    captures: Arc<[(String, Capture)]>,
    /// Its named checks.
    checks: Arc<[NamedCheck]>,
    /// The named metrics it feeds.
    feeds: Arc<[feeds::Feed]>,
    /// Some template of it reads the user's variables (`{{vars.NAME}}`).
    uses_vars: bool,
    /// Its key=value tags.
    tags: Arc<[(String, String)]>,
    /// The groups it is made in, outermost first.
    group: Arc<[String]>,
}

/// A task's `tags`: labels, or key=value pairs.
#[derive(Default)]
struct TaskTags {
    /// Locust's labels, which `--tags` and `--exclude-tags` select.
    labels: Vec<String>,
    /// k6's tags, carried by the request's samples.
    pairs: Vec<(String, String)>,
}

impl TaskTags {
    /// What `--tags` and `--exclude-tags` match: each label, and each pair as `key=value`.
    fn selectable(&self) -> Vec<String> {
        let pairs = self.pairs.iter().map(|(k, v)| format!("{k}={v}"));
        self.labels.iter().cloned().chain(pairs).collect()
    }
}

/// A TOML value as the file wrote it, for a message.
fn show(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => format!("{s:?}"),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        other => format!("a {}", other.type_str()),
    }
}

/// A task's `tags`, checked: a list of labels (letters, digits, `_`, `-` and `.`) or a
/// table of key = "value" tags (the tag rule).
fn task_tags(cx: &Ctx<'_>, field: &str, spec: &RequestSpec) -> Result<TaskTags, ScenarioError> {
    let Some(t) = &spec.tags else {
        return Ok(TaskTags::default());
    };
    let mut out = TaskTags::default();
    match t.get_ref() {
        toml::Value::Array(items) => {
            for (k, item) in items.iter().enumerate() {
                let ok = item.as_str().filter(|tag| {
                    !tag.is_empty()
                        && tag.bytes().all(|b| {
                            b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.'
                        })
                });
                match ok {
                    Some(tag) => out.labels.push(tag.to_owned()),
                    None => {
                        return cx.err(
                            Some(t.span()),
                            format!("{field}.tags[{k}]"),
                            format!("{}: a tag is letters, digits, _, - and .", show(item)),
                        );
                    }
                }
            }
        }
        toml::Value::Table(pairs) => {
            for (k, v) in pairs {
                let Some(v) = v.as_str() else {
                    return cx.err(
                        Some(t.span()),
                        format!("{field}.tags.{k}"),
                        format!("{}: a tag's value is a string", show(v)),
                    );
                };
                if let Err(why) = aiotest_core::tag::check(k, v) {
                    return cx.err(Some(t.span()), format!("{field}.tags.{k}"), why);
                }
                if matches!(
                    k.as_str(),
                    "group" | "scenario" | "name" | "method" | "status"
                ) {
                    return cx.err(
                        Some(t.span()),
                        format!("{field}.tags.{k}"),
                        format!("`{k}` is a system tag, set by aiotest"),
                    );
                }
                out.pairs.push((k.clone(), v.to_owned()));
            }
        }
        other => {
            return cx.err(
                Some(t.span()),
                format!("{field}.tags"),
                format!(
                    "{}: tags are a list of labels ([\"slow\"], for --tags) or a table of \
                     key = \"value\" tags ({{ team = \"web\" }})",
                    show(other)
                ),
            );
        }
    }
    Ok(out)
}

fn request(
    cx: &Ctx<'_>,
    field: &str,
    r: &Spanned<RequestSpec>,
    scope: Scope<'_>,
) -> Result<RequestPlan, ScenarioError> {
    let spec = r.get_ref();
    let tags = task_tags(cx, field, spec)?.pairs;
    let group = match &spec.group {
        None => Vec::new(),
        Some(g) => {
            let parts: Vec<String> = g.get_ref().split("::").map(str::to_owned).collect();
            let path = format!("::{}", g.get_ref());
            if parts.iter().any(String::is_empty)
                || aiotest_core::tag::check("group", &path).is_err()
            {
                return cx.err(
                    Some(g.span()),
                    format!("{field}.group"),
                    format!(
                        "`{}`: a group is a name, or names joined by :: for nested groups \
                         (`checkout::pay`), at most 512 bytes",
                        g.get_ref()
                    ),
                );
            }
            parts
        }
    };
    let method = match &spec.method {
        Some(m) => {
            let upper = m.get_ref().to_ascii_uppercase();
            if upper.is_empty() || !upper.bytes().all(|b| b.is_ascii_alphabetic()) {
                return cx.err(
                    Some(m.span()),
                    format!("{field}.method"),
                    format!("`{}` is not an HTTP method", m.get_ref()),
                );
            }
            http::Method::from_bytes(upper.as_bytes()).or_else(|_| {
                cx.err(
                    Some(m.span()),
                    format!("{field}.method"),
                    format!("`{}` is not an HTTP method", m.get_ref()),
                )
            })?
        }
        None => http::Method::GET,
    };
    let p = spec.path.get_ref();
    if !(p.starts_with('/') || p.starts_with("http://") || p.starts_with("https://")) {
        return cx.err(
            Some(spec.path.span()),
            format!("{field}.path"),
            format!("`{p}` must start with / or be an http(s) URL"),
        );
    }
    if let Err(e) = aiotest_core::url::check_path_or_url(p) {
        return cx.err(
            Some(spec.path.span()),
            format!("{field}.path"),
            format!("`{p}`: {e}"),
        );
    }
    check_refs(cx, &spec.path, &format!("{field}.path"), scope)?;
    check_builtins(cx, &spec.path, &format!("{field}.path"))?;
    let mut headers = Vec::new();
    for (k, v) in &spec.headers {
        let hf = format!("{field}.headers.{k}");
        if http::header::HeaderName::from_bytes(k.as_bytes()).is_err() {
            return cx.err(Some(v.span()), hf, "not a valid header name");
        }
        if http::header::HeaderValue::from_str(v.get_ref()).is_err() {
            return cx.err(Some(v.span()), hf, "not a valid header value");
        }
        check_refs(cx, v, &hf, scope)?;
        check_builtins(cx, v, &hf)?;
        headers.push((k.clone(), v.get_ref().clone()));
    }
    if let (Some(_), Some(j)) = (&spec.body, &spec.json) {
        return cx.err(
            Some(j.span()),
            format!("{field}.json"),
            "give body or json, not both",
        );
    }
    if let Some(b) = &spec.body {
        check_refs(cx, b, &format!("{field}.body"), scope)?;
        check_builtins(cx, b, &format!("{field}.body"))?;
    }
    let json = match &spec.json {
        Some(j) => Some(
            serde_json::to_value(j.get_ref())
                .or_else(|e| cx.err(Some(j.span()), format!("{field}.json"), e.to_string()))?,
        ),
        None => None,
    };
    if let (Some(j), Some(value)) = (&spec.json, &json) {
        // Its strings take the same references as a body.
        let mut strings = Vec::new();
        json_strings(value, &mut strings);
        for text in strings {
            let spanned = Spanned::new(j.span(), text.to_owned());
            check_refs(cx, &spanned, &format!("{field}.json"), scope)?;
            check_builtins(cx, &spanned, &format!("{field}.json"))?;
        }
    }
    if let Some(s) = &spec.expect_status
        && !(100..=599).contains(s.get_ref())
    {
        return cx.err(
            Some(s.span()),
            format!("{field}.expect_status"),
            format!("{} is not an HTTP status (100 to 599)", s.get_ref()),
        );
    }
    let dynamic = |t: &str| t.contains("{{vars.") || t.contains(BUILTIN) || t.contains(data::OPEN);
    let checks = named_checks(cx, field, &spec.checks, scope)?;
    let uses_vars = dynamic(p)
        || checks.iter().any(|c| c.template().is_some_and(dynamic))
        || headers.iter().any(|(_, v)| dynamic(v))
        || spec.body.as_ref().is_some_and(|b| dynamic(b.get_ref()))
        || json.as_ref().is_some_and(|j| dynamic(&j.to_string()));
    // A path that takes a user's values is named by its template: the values must not
    // make a name per user.
    let name = spec
        .name
        .as_ref()
        .map(|n| n.get_ref().clone())
        .or_else(|| dynamic(p).then(|| p.clone()));
    Ok(RequestPlan {
        name,
        checks,
        tags: tags.into(),
        group: group.into(),
        feeds: feeds::feeds(cx, field, &spec.metrics, scope)?,
        captures: Arc::new([]),
        uses_vars,
        method,
        path: p.clone(),
        headers,
        body: spec.body.as_ref().map(|b| b.get_ref().clone()),
        json,
        expect_status: spec.expect_status.as_ref().map(|s| *s.get_ref()),
        body_contains: spec.body_contains.as_ref().map(|s| s.get_ref().clone()),
    })
}

/// Exactly one of `given` (a field's name, and whether it is there) must be there.
fn one_of(
    cx: &Ctx<'_>,
    span: std::ops::Range<usize>,
    field: &str,
    given: &[(&str, bool)],
) -> Result<(), ScenarioError> {
    let found: Vec<&str> = given.iter().filter(|(_, g)| *g).map(|(n, _)| *n).collect();
    if found.len() == 1 {
        return Ok(());
    }
    let names: Vec<&str> = given.iter().map(|(n, _)| *n).collect();
    let (last, rest) = names.split_last().unwrap_or((&"", &[]));
    cx.err(
        Some(span),
        field,
        format!(
            "give one of {} or {last} (found {})",
            rest.join(", "),
            if found.is_empty() {
                "none".to_owned()
            } else {
                found.join(", ")
            }
        ),
    )
}

/// A request's `checks`, checked.
fn named_checks(
    cx: &Ctx<'_>,
    field: &str,
    specs: &[Spanned<CheckSpec>],
    scope: Scope<'_>,
) -> Result<Arc<[NamedCheck]>, ScenarioError> {
    let mut out = Vec::new();
    for (k, c) in specs.iter().enumerate() {
        let cf = format!("{field}.checks[{k}]");
        let spec = c.get_ref();
        let name = spec.name.get_ref().trim();
        if name.is_empty() {
            return cx.err(
                Some(spec.name.span()),
                format!("{cf}.name"),
                "must not be empty",
            );
        }
        one_of(
            cx,
            c.span(),
            &cf,
            &[
                ("status", spec.status.is_some()),
                ("header", spec.header.is_some()),
                ("json", spec.json.is_some()),
                ("body_contains", spec.body_contains.is_some()),
                ("regex", spec.regex.is_some()),
            ],
        )?;
        // A string to compare with may take the request's references.
        if let Some(e) = &spec.equals
            && let toml::Value::String(text) = e.get_ref()
        {
            let spanned = Spanned::new(e.span(), text.clone());
            check_refs(cx, &spanned, &format!("{cf}.equals"), scope)?;
            check_builtins(cx, &spanned, &format!("{cf}.equals"))?;
        }
        if let (Some(e), None, None) = (&spec.equals, &spec.header, &spec.json) {
            return cx.err(
                Some(e.span()),
                format!("{cf}.equals"),
                "equals compares a header's or a JSON value's value: give header or json",
            );
        }
        let what = if let Some(st) = &spec.status {
            if !(100..=599).contains(st.get_ref()) {
                return cx.err(
                    Some(st.span()),
                    format!("{cf}.status"),
                    format!("{} is not an HTTP status (100 to 599)", st.get_ref()),
                );
            }
            CheckKind::Status(*st.get_ref())
        } else if let Some(h) = &spec.header {
            let Ok(n) = http::header::HeaderName::from_bytes(h.get_ref().as_bytes()) else {
                return cx.err(
                    Some(h.span()),
                    format!("{cf}.header"),
                    format!("`{}` is not a header name", h.get_ref()),
                );
            };
            let equals = match &spec.equals {
                Some(e) => match e.get_ref() {
                    toml::Value::String(v) => Some(v.clone()),
                    _ => {
                        return cx.err(
                            Some(e.span()),
                            format!("{cf}.equals"),
                            "a header's value is text: give a string",
                        );
                    }
                },
                None => None,
            };
            CheckKind::Header(n, equals)
        } else if let Some(j) = &spec.json {
            let p = j.get_ref();
            if !(p.is_empty() || p.starts_with('/')) {
                return cx.err(
                    Some(j.span()),
                    format!("{cf}.json"),
                    format!("`{p}` is not a JSON pointer (like /data/token)"),
                );
            }
            let equals = match &spec.equals {
                Some(e) => Some(serde_json::to_value(e.get_ref()).or_else(|err| {
                    cx.err(Some(e.span()), format!("{cf}.equals"), err.to_string())
                })?),
                None => None,
            };
            CheckKind::Json(JsonPointer::new(p), equals)
        } else if let Some(b) = &spec.body_contains {
            CheckKind::BodyContains(b.get_ref().clone())
        } else if let Some(r) = &spec.regex {
            CheckKind::Regex(regex(cx, r.get_ref(), r.span(), &format!("{cf}.regex"))?)
        } else {
            // Checked above: one of them is given.
            return cx.err(
                Some(c.span()),
                cf,
                "give one of status, header, json, body_contains or regex",
            );
        };
        out.push(NamedCheck {
            name: name.to_owned(),
            what,
            fail_request: spec.fail_request,
        });
    }
    Ok(out.into())
}

/// `r` compiled as a regular expression.
fn regex(
    cx: &Ctx<'_>,
    r: &str,
    span: std::ops::Range<usize>,
    field: &str,
) -> Result<regex_lite::Regex, ScenarioError> {
    regex_lite::Regex::new(r).or_else(|e| {
        let why = e.to_string();
        // The engine's message spans lines; its last line says what is wrong.
        let why = why.lines().last().unwrap_or(&why).trim().to_owned();
        cx.err(
            Some(span),
            field,
            format!("`{r}` is not a regular expression: {why}"),
        )
    })
}

impl NamedCheck {
    /// The text it compares with, when that text has references to fill in.
    fn template(&self) -> Option<&str> {
        match &self.what {
            CheckKind::Header(_, Some(t))
            | CheckKind::Json(_, Some(serde_json::Value::String(t)))
                if t.contains("{{") =>
            {
                Some(t)
            }
            _ => None,
        }
    }

    /// The same check, comparing with `fill(its text)`.
    fn filled(&self, fill: impl Fn(&str) -> Result<String, String>) -> Result<NamedCheck, String> {
        let mut c = self.clone();
        match &mut c.what {
            CheckKind::Header(_, Some(t))
            | CheckKind::Json(_, Some(serde_json::Value::String(t))) => {
                *t = fill(t)?;
            }
            _ => {}
        }
        Ok(c)
    }

    /// Whether `r` passes; `body` is the response's JSON, parsed once for all checks.
    fn judge(
        &self,
        r: &aiotest_http_user::Response,
        body: &mut Option<Option<serde_json::Value>>,
    ) -> bool {
        if r.status().is_none() {
            // No response (refused, timed out, or never sent): nothing passes.
            return false;
        }
        match &self.what {
            CheckKind::Status(s) => r.status_code() == *s,
            CheckKind::Header(h, equals) => match (r.headers().get(h), equals) {
                (Some(v), Some(want)) => v.as_bytes() == want.as_bytes(),
                (Some(_), None) => true,
                (None, _) => false,
            },
            CheckKind::Json(pointer, equals) => {
                let body = body.get_or_insert_with(|| r.json().ok());
                match (body.as_ref().and_then(|b| pointer.find(b)), equals) {
                    (Some(v), Some(want)) => v == want,
                    (Some(_), None) => true,
                    (None, _) => false,
                }
            }
            CheckKind::BodyContains(needle) => r.text().contains(needle.as_str()),
            CheckKind::Regex(re) => re.is_match(&r.text()),
        }
    }
}

impl RequestPlan {
    /// The same request with `{{setup.NAME}}` filled in.
    fn rendered(&self, values: Option<&serde_json::Value>) -> RequestPlan {
        let mut r = self.clone();
        r.path = render(&self.path, values);
        r.headers = self
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), render(v, values)))
            .collect();
        r.body = self.body.as_deref().map(|b| render(b, values));
        r.json = self.json.as_ref().map(|j| render_json(j, values));
        if self.checks.iter().any(|c| c.template().is_some()) {
            let fill = |t: &str| Ok::<_, String>(render(t, values));
            r.checks = self
                .checks
                .iter()
                .map(|c| c.filled(fill))
                .collect::<Result<Vec<_>, _>>()
                .unwrap_or_else(|_| self.checks.to_vec())
                .into();
        }
        r
    }

    /// The same request with a user's values filled in; `Err` says which one it does not
    /// have.
    fn with_vars(&self, values: &Values<'_>) -> Result<RequestPlan, String> {
        let fill = |s: &str| fill_vars(s, values);
        let checks = if self.checks.iter().any(|c| c.template().is_some()) {
            self.checks
                .iter()
                .map(|c| c.filled(fill))
                .collect::<Result<Vec<_>, _>>()?
                .into()
        } else {
            Arc::clone(&self.checks)
        };
        Ok(RequestPlan {
            name: self.name.clone(),
            method: self.method.clone(),
            path: fill(&self.path)?,
            headers: self
                .headers
                .iter()
                .map(|(k, v)| Ok((k.clone(), fill(v)?)))
                .collect::<Result<_, String>>()?,
            body: self.body.as_deref().map(fill).transpose()?,
            json: self
                .json
                .as_ref()
                .map(|j| fill_json(j, values))
                .transpose()?,
            expect_status: self.expect_status,
            body_contains: self.body_contains.clone(),
            captures: Arc::clone(&self.captures),
            checks,
            feeds: Arc::clone(&self.feeds),
            uses_vars: self.uses_vars,
            tags: Arc::clone(&self.tags),
            group: Arc::clone(&self.group),
        })
    }

    /// A setup or teardown request with its built-ins filled in (`{{builtin.vu}}` and
    /// `{{builtin.iteration}}` are 0: no user sends it). It can use no variables nor data:
    /// the file was checked for that.
    fn once(self) -> RequestPlan {
        if self.uses_vars {
            let none = HashMap::new();
            let values = Values {
                vars: &none,
                vu: 0,
                iteration: 0,
                data: None,
            };
            self.with_vars(&values).unwrap_or(self)
        } else {
            self
        }
    }

    /// Sends the request. `vars`: where its captures go; `unsendable`: why a value it
    /// needs is missing, which fails it unsent.
    async fn send(
        &self,
        client: &mut HttpClient,
        vars: Option<&Vars>,
        unsendable: Option<&str>,
    ) -> aiotest_http_user::Response {
        // Checked with the file: entering cannot fail.
        let mut entered = 0;
        for g in self.group.iter() {
            entered += usize::from(client.enter_group(g).is_ok());
        }
        let r = self.send_in_group(client, vars, unsendable).await;
        for _ in 0..entered {
            client.exit_group();
        }
        r
    }

    async fn send_in_group(
        &self,
        client: &mut HttpClient,
        vars: Option<&Vars>,
        unsendable: Option<&str>,
    ) -> aiotest_http_user::Response {
        let mut req = client.request(self.method.clone(), self.path.clone());
        if let Some(why) = unsendable {
            req = req.fail_unsent(why);
        }
        for (k, v) in self.tags.iter() {
            req = req.tag(k, v);
        }
        if let Some(n) = &self.name {
            req = req.name(n.clone());
        }
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        if let Some(b) = &self.body {
            req = req.body(b.clone());
        }
        if let Some(j) = &self.json {
            req = req.json(j);
        }
        if let Some(s) = self.expect_status {
            req = req.expect_status(s);
        }
        let captures = match vars {
            Some(v) if !self.captures.is_empty() => {
                Some((Arc::clone(&self.captures), Arc::clone(v)))
            }
            _ => None,
        };
        let failing = self.checks.iter().any(|c| c.fail_request);
        if self.body_contains.is_some() || captures.is_some() || failing {
            let needle = self.body_contains.clone();
            let checks = failing.then(|| Arc::clone(&self.checks));
            req = req.check(move |r| {
                if let Some(needle) = &needle
                    && !r.text().contains(needle.as_str())
                {
                    return Err(format!("body does not contain {needle:?}"));
                }
                let mut body = None;
                for c in checks.iter().flat_map(|c| c.iter()) {
                    if c.fail_request && !c.judge(r, &mut body) {
                        return Err(format!("check `{}` failed", c.name));
                    }
                }
                if let Some((captures, vars)) = captures {
                    capture(r, &captures, &vars)?;
                }
                Ok(())
            });
        }
        let r = req.send().await;
        // Named checks count whatever became of the request (no response fails them all).
        let mut body = None;
        for c in self.checks.iter() {
            let passed = c.judge(&r, &mut body);
            client.check(&c.name, passed);
        }
        if !self.feeds.is_empty() {
            feeds::record(&self.feeds, &r, client, vars);
        }
        r
    }
}

/// Takes a task's captures from its response into the user's variables; `Err` names the
/// first that found nothing (the request then fails, `check_failed`).
fn capture(
    r: &aiotest_http_user::Response,
    captures: &[(String, Capture)],
    vars: &Vars,
) -> Result<(), String> {
    let mut body: Option<serde_json::Value> = None;
    let mut got = Vec::with_capacity(captures.len());
    for (name, c) in captures {
        let value = match c {
            Capture::Json(pointer) => {
                if body.is_none() {
                    body =
                        Some(r.json().map_err(|e| {
                            format!("capture `{name}`: the response is not JSON: {e}")
                        })?);
                }
                match body.as_ref().and_then(|b| pointer.find(b)) {
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(v) => v.to_string(),
                    None => {
                        return Err(format!(
                            "capture `{name}`: nothing at {pointer} in the response"
                        ));
                    }
                }
            }
            Capture::Header(h) => match r.headers().get(h).map(|v| v.to_str()) {
                Some(Ok(v)) => v.to_owned(),
                _ => return Err(format!("capture `{name}`: no {h} header in the response")),
            },
            Capture::Regex(re) => {
                let text = r.text();
                match re
                    .captures(&text)
                    .and_then(|c| c.get(1).or_else(|| c.get(0)))
                {
                    Some(m) => m.as_str().to_owned(),
                    None => {
                        return Err(format!(
                            "capture `{name}`: /{}/ matches nothing in the response",
                            re.as_str()
                        ));
                    }
                }
            }
        };
        got.push((name.clone(), value));
    }
    if let Ok(mut vars) = vars.lock() {
        vars.extend(got);
    }
    Ok(())
}

/// The built-in values a request may use: `{{builtin.vu}}` (the user's number),
/// `{{builtin.uuid}}` (a new random UUID each time) and `{{builtin.random(MIN,MAX)}}` (a
/// whole number from MIN to MAX, new each time).
const BUILTIN: &str = "{{builtin.";

/// A built-in reference, checked with the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Builtin {
    Vu,
    Iteration,
    Uuid,
    Random(i64, i64),
}

/// What `{{builtin.INNER}}` means, or why it means nothing.
fn parse_builtin(inner: &str) -> Result<Builtin, String> {
    match inner {
        "vu" => return Ok(Builtin::Vu),
        "iteration" => return Ok(Builtin::Iteration),
        "uuid" => return Ok(Builtin::Uuid),
        _ => {}
    }
    let args = inner
        .strip_prefix("random(")
        .and_then(|a| a.strip_suffix(')'))
        .ok_or_else(|| {
            format!("`{{{{builtin.{inner}}}}}`: the built-ins are vu, iteration, uuid and random(MIN,MAX)")
        })?;
    let bad = || format!("`{{{{builtin.{inner}}}}}`: random takes two whole numbers, MIN <= MAX");
    let (a, b) = args.split_once(',').ok_or_else(bad)?;
    let (a, b): (i64, i64) = (
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    );
    if a > b {
        return Err(bad());
    }
    Ok(Builtin::Random(a, b))
}

/// Every `{{builtin.…}}` of `s` must be one.
fn check_builtins(cx: &Ctx<'_>, s: &Spanned<String>, field: &str) -> Result<(), ScenarioError> {
    for found in template::refs(s.get_ref(), BUILTIN) {
        let Ok(inner) = found else {
            return cx.err(Some(s.span()), field, format!("unclosed `{BUILTIN}`"));
        };
        if let Err(message) = parse_builtin(inner) {
            return cx.err(Some(s.span()), field, message);
        }
    }
    Ok(())
}

fn builtin_value(b: Builtin, vu: u64, iteration: u64) -> String {
    match b {
        Builtin::Vu => vu.to_string(),
        Builtin::Iteration => iteration.to_string(),
        Builtin::Random(a, b) => aiotest_core::fastrand::i64(a..=b).to_string(),
        Builtin::Uuid => {
            // Version 4, variant 1: 122 random bits.
            let n = (aiotest_core::fastrand::u128(..) & !(0xf << 76) & !(0x3 << 62))
                | (0x4 << 76)
                | (0x2 << 62);
            let h = format!("{n:032x}");
            format!(
                "{}-{}-{}-{}-{}",
                &h[..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..]
            )
        }
    }
}

/// What a user's templates are filled with.
struct Values<'a> {
    /// Its captures.
    vars: &'a HashMap<String, String>,
    /// Its number.
    vu: u64,
    /// Its iteration, from 0.
    iteration: u64,
    /// The data files and its rows of them.
    data: Option<(&'a data::Data, &'a data::Rows)>,
}

/// `template` with `{{vars.NAME}}`, `{{data.COLUMN}}` and `{{builtin.…}}` filled in; `Err`
/// says which value the user does not have.
fn fill_vars(template: &str, v: &Values<'_>) -> Result<String, String> {
    if !template.contains("{{") {
        return Ok(template.to_owned());
    }
    // One pass: a value is never read again for references. Checked with the file:
    // every reference is closed and means something.
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            break;
        };
        out.push_str(&rest[..start]);
        let inner = &after[..end];
        if let Some(name) = inner.strip_prefix("vars.") {
            match v.vars.get(name) {
                Some(x) => out.push_str(x),
                None => {
                    return Err(format!(
                        "`{{{{vars.{name}}}}}` is not captured yet by this user"
                    ));
                }
            }
        } else if let Some(column) = inner.strip_prefix("data.") {
            match v.data {
                Some((data, rows)) => out.push_str(data.value(column, rows)?),
                None => return Err(format!("`{{{{data.{column}}}}}`: no data rows here")),
            }
        } else if let Some(Ok(b)) = inner.strip_prefix("builtin.").map(parse_builtin) {
            out.push_str(&builtin_value(b, v.vu, v.iteration));
        } else {
            out.push_str(&rest[start..start + 2 + end + 2]);
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn fill_json(v: &serde_json::Value, values: &Values<'_>) -> Result<serde_json::Value, String> {
    Ok(match v {
        serde_json::Value::String(s) => serde_json::Value::String(fill_vars(s, values)?),
        serde_json::Value::Array(a) => a
            .iter()
            .map(|x| fill_json(x, values))
            .collect::<Result<_, _>>()?,
        serde_json::Value::Object(o) => o
            .iter()
            .map(|(k, x)| Ok((k.clone(), fill_json(x, values)?)))
            .collect::<Result<_, String>>()?,
        other => other.clone(),
    })
}

fn render_json(v: &serde_json::Value, values: Option<&serde_json::Value>) -> serde_json::Value {
    match v {
        serde_json::Value::String(s) => serde_json::Value::String(render(s, values)),
        serde_json::Value::Array(a) => a.iter().map(|x| render_json(x, values)).collect(),
        serde_json::Value::Object(o) => o
            .iter()
            .map(|(k, x)| (k.clone(), render_json(x, values)))
            .collect(),
        other => other.clone(),
    }
}

/// Setup's and teardown's requests as the run's hooks, and the names setup captures.
fn setup(
    cx: &Ctx<'_>,
    reqs: &[Spanned<RequestSpec>],
    teardown_reqs: &[Spanned<RequestSpec>],
    http_settings: &HttpSettings,
) -> Result<(Hooks, Vec<String>), ScenarioError> {
    let mut captures: Vec<String> = Vec::new();
    let mut plans = Vec::new();
    for (i, r) in reqs.iter().enumerate() {
        let field = format!("setup[{i}]");
        let spec = r.get_ref();
        if let Some(w) = &spec.weight {
            return cx.err(
                Some(w.span()),
                format!("{field}.weight"),
                "setup requests run once, in order: no weight",
            );
        }
        // A setup request may use what earlier ones captured.
        let scope = Scope {
            captures: &captures,
            vars: &[],
            columns: None,
            in_setup: true,
        };
        let plan = request(cx, &field, r, scope)?;
        let mut caps = Vec::new();
        for (name, c) in &spec.capture {
            let CaptureSpec::Pointer(pointer) = c.get_ref() else {
                return cx.err(
                    Some(c.span()),
                    format!("{field}.capture.{name}"),
                    "setup captures take a JSON pointer (like /data/token)",
                );
            };
            if !(pointer.is_empty() || pointer.starts_with('/')) {
                return cx.err(
                    Some(c.span()),
                    format!("{field}.capture.{name}"),
                    format!("`{pointer}` is not a JSON pointer (like /data/token)"),
                );
            }
            caps.push((name.clone(), pointer.clone()));
        }
        captures.extend(caps.iter().map(|(n, _)| n.clone()));
        plans.push((plan, caps));
    }
    let mut teardown = Vec::new();
    for (i, r) in teardown_reqs.iter().enumerate() {
        let field = format!("teardown[{i}]");
        let spec = r.get_ref();
        if let Some(w) = &spec.weight {
            return cx.err(
                Some(w.span()),
                format!("{field}.weight"),
                "teardown requests run once, in order: no weight",
            );
        }
        if let Some((name, c)) = spec.capture.iter().next() {
            return cx.err(
                Some(c.span()),
                format!("{field}.capture.{name}"),
                "teardown requests capture nothing: nothing runs after them",
            );
        }
        // Teardown may use everything setup captured.
        let scope = Scope {
            captures: &captures,
            vars: &[],
            columns: None,
            in_setup: false,
        };
        teardown.push(request(cx, &field, r, scope)?);
    }
    if plans.is_empty() && teardown.is_empty() {
        return Ok((Hooks::default(), captures));
    }
    let plans = Arc::new(plans);
    let settings = http_settings.clone();
    let mut lifecycle = Lifecycle::<serde_json::Value>::new()
        .setup(move |ctx| {
            let plans = Arc::clone(&plans);
            let settings = settings.clone();
            async move {
                // No host: relative paths fail (the command line refuses to start such a
                // run); load never goes to a host nobody named.
                let mut http = settings.apply(HttpUser::builder());
                if let Some(h) = ctx.host() {
                    http = http.host(h);
                }
                let http = http.build()?;
                // Setup's requests are counted in the run's statistics, like any other.
                let recorder = ctx
                    .take::<aiotest_metrics::Recorder>()
                    .unwrap_or_else(|| aiotest_metrics::MetricsCollector::with_defaults().recorder());
                let mut client = http.client(recorder);
                let mut values = serde_json::Map::new();
                for (i, (plan, caps)) in plans.iter().enumerate() {
                    let current = serde_json::Value::Object(values.clone());
                    let r = plan
                        .rendered(Some(&current))
                        .once()
                        .send(&mut client, None, None)
                        .await;
                    if let Some(e) = r.error() {
                        return Err(format!("setup request {i} ({} {}): {}", plan.method, plan.path, e.message).into());
                    }
                    if caps.is_empty() {
                        continue;
                    }
                    let body: serde_json::Value = r
                        .json()
                        .map_err(|e| format!("setup request {i} ({}): the response is not JSON: {e}", plan.path))?;
                    for (name, pointer) in caps {
                        let v = body.pointer(pointer).ok_or_else(|| {
                            format!("setup request {i} ({}): capture `{name}`: nothing at {pointer} in the response", plan.path)
                        })?;
                        values.insert(name.clone(), v.clone());
                    }
                }
                Ok(serde_json::Value::Object(values))
            }
        });
    if !teardown.is_empty() {
        let plans = Arc::new(teardown);
        let settings = http_settings.clone();
        // Teardown gets the run's host and collector whether setup ran or not, so its
        // requests go where the users' went and are counted in the summary.
        lifecycle =
            lifecycle.teardown_with_context(move |ctx, data: Option<Arc<serde_json::Value>>| {
                let plans = Arc::clone(&plans);
                let settings = settings.clone();
                let host = ctx.host().map(str::to_owned);
                let collector = ctx.take::<aiotest_metrics::MetricsCollector>();
                async move { run_teardown(&plans, &settings, host, collector, data).await }
            });
    }
    Ok((lifecycle.into_hooks(), captures))
}

/// Sends every teardown request, in order, each whatever became of the one before; the
/// first failure is teardown's error.
async fn run_teardown(
    plans: &[RequestPlan],
    settings: &HttpSettings,
    host: Option<String>,
    collector: Option<aiotest_metrics::MetricsCollector>,
    data: Option<Arc<serde_json::Value>>,
) -> Result<(), aiotest_core::BoxError> {
    let mut http = settings.apply(HttpUser::builder());
    if let Some(h) = host {
        http = http.host(h);
    }
    let http = http.build()?;
    let recorder = collector
        .map(|c| c.recorder())
        .unwrap_or_else(|| aiotest_metrics::MetricsCollector::with_defaults().recorder());
    // Its records reach the collector when the client is dropped, before the summary.
    let mut client = http.client(recorder);
    let mut first_error = None;
    for (i, plan) in plans.iter().enumerate() {
        let r = plan
            .rendered(data.as_deref())
            .once()
            .send(&mut client, None, None)
            .await;
        if let (Some(e), None) = (r.error(), &first_error) {
            first_error = Some(format!(
                "teardown request {i} ({} {}): {}",
                plan.method, plan.path, e.message
            ));
        }
    }
    drop(client);
    first_error.map_or(Ok(()), |e| Err(e.into()))
}

/// A user type's tasks rendered with the setup values they were rendered with.
type Rendered =
    Arc<std::sync::Mutex<Option<(Option<Arc<serde_json::Value>>, Arc<Vec<RequestPlan>>)>>>;

/// Whether two setup values are the same one (the same run's).
fn same_values(a: &Option<Arc<serde_json::Value>>, b: &Option<Arc<serde_json::Value>>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        _ => false,
    }
}

/// A scenario user: its clients (one per concurrent slot) and its tasks, rendered with
/// setup's values when the user starts.
struct ScenarioUser {
    clients: Vec<tokio::sync::Mutex<HttpClient>>,
    tasks: Arc<Vec<RequestPlan>>,
    /// What this user's tasks captured (`{{vars.NAME}}`), its own for its whole life.
    vars: Vars,
    /// The user's number (`{{builtin.vu}}`).
    vu: u64,
    /// Tasks run so far, and how many make one iteration (`{{builtin.iteration}}`).
    runs: AtomicU64,
    per_iteration: u64,
    /// The data files, the ones this user type's tasks use, and this user's rows of them
    /// with the iteration each was taken in.
    data: Arc<data::Data>,
    used: Arc<[usize]>,
    rows: tokio::sync::Mutex<UserRows>,
}

/// A user's rows of the data files it uses.
struct UserRows {
    rows: data::Rows,
    /// The iteration each row was taken in.
    taken_in: Vec<u64>,
    /// Whether to ask again for a row that could not be had (Redis did not answer).
    again: Vec<bool>,
}

impl UserRows {
    fn new(files: usize) -> Self {
        UserRows {
            rows: vec![None; files],
            taken_in: vec![0; files],
            again: vec![false; files],
        }
    }
}

/// A user's captured values, shared by its concurrent slots.
type Vars = Arc<std::sync::Mutex<HashMap<String, String>>>;

impl ScenarioUser {
    async fn run(&self, i: usize) -> TaskResult {
        let Some(plan) = self.tasks.get(i) else {
            return Ok(());
        };
        let iteration = self.runs.fetch_add(1, AtomicOrdering::Relaxed) / self.per_iteration;
        let filled;
        let mut unsendable = None;
        let plan = if plan.uses_vars {
            let rows = if self.used.is_empty() {
                None
            } else {
                Some(self.rows(iteration).await)
            };
            // Filled under the locks, which are let go before the request is sent.
            let vars = self.vars.lock().unwrap_or_else(|e| e.into_inner());
            let values = Values {
                vars: &vars,
                vu: self.vu,
                iteration,
                data: rows.as_ref().map(|r| (&*self.data, &r.rows)),
            };
            let result = plan.with_vars(&values);
            drop(vars);
            drop(rows);
            match result {
                Ok(p) => filled = p,
                Err(why) => {
                    unsendable = Some(why);
                    filled = plan.clone();
                }
            }
            &filled
        } else {
            plan
        };
        let unsendable = unsendable.as_deref();
        // A concurrent user has one client per slot; a free one always exists.
        for c in &self.clients {
            if let Ok(mut client) = c.try_lock() {
                plan.send(&mut client, Some(&self.vars), unsendable).await;
                return Ok(());
            }
        }
        if let Some(c) = self.clients.first() {
            plan.send(&mut *c.lock().await, Some(&self.vars), unsendable)
                .await;
        }
        Ok(())
    }

    /// This user's rows for `iteration`: its own row of a unique file, taken once; a new
    /// row of the others each iteration.
    async fn rows(&self, iteration: u64) -> tokio::sync::MutexGuard<'_, UserRows> {
        let mut guard = self.rows.lock().await;
        let u = &mut *guard;
        for &set in self.used.iter() {
            let fresh = match u.rows.get(set) {
                Some(None) => true,
                Some(Some(_)) => {
                    u.again[set] || (self.data.per_iteration(set) && u.taken_in[set] != iteration)
                }
                None => false,
            };
            if fresh {
                let taken = self.data.take(set).await;
                u.again[set] = matches!(taken, Err((_, true)));
                u.rows[set] = Some(taken.map_err(|(why, _)| why));
                u.taken_in[set] = iteration;
            }
        }
        guard
    }
}

fn user_type(
    cx: &Ctx<'_>,
    i: usize,
    u: &Spanned<UserSpec>,
    refs: &Refs<'_, '_>,
    http: &HttpUser,
) -> Result<Option<UserType>, ScenarioError> {
    let captures = refs.captures;
    let field = format!("users[{i}]");
    let spec = u.get_ref();
    let name = spec.name.get_ref().clone();
    if name.trim().is_empty() {
        return cx.err(
            Some(spec.name.span()),
            format!("{field}.name"),
            "must not be empty",
        );
    }
    let weight = match &spec.weight {
        Some(w) if *w.get_ref() == 0 => {
            return cx.err(
                Some(w.span()),
                format!("{field}.weight"),
                "must be at least 1",
            );
        }
        Some(w) => *w.get_ref(),
        None => 1,
    };
    let wait = match &spec.wait_time {
        None => WaitTime::fixed(1.0),
        Some(w) => {
            let wt = match *w.get_ref() {
                WaitSpec::Fixed(s) => WaitTime::fixed(s),
                WaitSpec::Range([a, b]) => WaitTime::between(a, b),
                WaitSpec::Paced(PacedWait {
                    pacing: Some(s),
                    throughput: None,
                }) => WaitTime::constant_pacing(s),
                WaitSpec::Paced(PacedWait {
                    pacing: None,
                    throughput: Some(t),
                }) => WaitTime::constant_throughput(t),
                WaitSpec::Paced(_) => {
                    return cx.err(
                        Some(w.span()),
                        format!("{field}.wait_time"),
                        "give one of pacing = SECONDS or throughput = TASKS_PER_SECOND",
                    );
                }
            };
            if let Err(e) = wt.validate() {
                return cx.err(Some(w.span()), format!("{field}.wait_time"), e.to_string());
            }
            wt
        }
    };
    let mode = match spec
        .execution_mode
        .as_ref()
        .map(|m| (m, m.get_ref().as_str()))
    {
        None | Some((_, "sequential")) => ExecutionMode::Sequential,
        Some((_, "concurrent")) => ExecutionMode::Concurrent,
        Some((m, other)) => {
            return cx.err(
                Some(m.span()),
                format!("{field}.execution_mode"),
                format!("`{other}`: use sequential or concurrent"),
            );
        }
    };
    let slots = match (&spec.max_concurrent_tasks, mode) {
        (Some(m), ExecutionMode::Sequential) => {
            return cx.err(
                Some(m.span()),
                format!("{field}.max_concurrent_tasks"),
                "applies to execution_mode = \"concurrent\" only",
            );
        }
        (Some(m), _) if *m.get_ref() == 0 => {
            return cx.err(
                Some(m.span()),
                format!("{field}.max_concurrent_tasks"),
                "must be at least 1",
            );
        }
        (Some(m), _) => *m.get_ref(),
        (None, ExecutionMode::Concurrent) => {
            spec.tasks.as_ref().map_or(1, |t| t.get_ref().len().max(1))
        }
        (None, ExecutionMode::Sequential) => 1,
    };
    let Some(tasks) = &spec.tasks else {
        return cx.err(
            Some(u.span()),
            format!("{field}.tasks"),
            "at least one [[users.tasks]] table is needed",
        );
    };
    if tasks.get_ref().is_empty() {
        return cx.err(
            Some(tasks.span()),
            format!("{field}.tasks"),
            "at least one [[users.tasks]] table is needed",
        );
    }
    // The names this type's tasks capture: any of its requests may use them.
    let mut vars: Vec<String> = Vec::new();
    for t in tasks.get_ref() {
        for name in t.get_ref().capture.keys() {
            if !vars.contains(name) {
                vars.push(name.clone());
            }
        }
    }
    let columns = refs.data.column_names();
    let scope = Scope {
        captures,
        vars: &vars,
        columns: Some(&columns),
        in_setup: false,
    };
    // The data files its tasks (and its headers) use.
    let mut used: Vec<usize> = Vec::new();
    let mut note_data = |text: &str| {
        for column in template::refs(text, data::OPEN).flatten() {
            if let Some(set) = refs.data.set_of(column)
                && !used.contains(&set)
            {
                used.push(set);
            }
        }
    };
    for v in spec.headers.values() {
        note_data(v.get_ref());
    }
    let mut user_headers = Vec::new();
    for (k, v) in &spec.headers {
        let hf = format!("{field}.headers.{k}");
        if http::header::HeaderName::from_bytes(k.as_bytes()).is_err()
            || http::header::HeaderValue::from_str(v.get_ref()).is_err()
        {
            return cx.err(Some(v.span()), hf, "not a valid header");
        }
        check_refs(cx, v, &hf, scope)?;
        user_headers.push((k.clone(), v.get_ref().clone()));
    }
    let mut plans = Vec::new();
    let mut names_weights = Vec::new();
    let mut selected = Vec::new();
    for (j, t) in tasks.get_ref().iter().enumerate() {
        let tf = format!("{field}.tasks[{j}]");
        let mut plan = request(cx, &tf, t, scope)?;
        let ts = t.get_ref();
        note_data(ts.path.get_ref());
        for v in ts.headers.values() {
            note_data(v.get_ref());
        }
        if let Some(b) = &ts.body {
            note_data(b.get_ref());
        }
        if let Some(j) = &plan.json {
            note_data(&j.to_string());
        }
        let mut captured = Vec::new();
        for (cname, c) in &t.get_ref().capture {
            let cf = format!("{tf}.capture.{cname}");
            captured.push((
                cname.clone(),
                match c.get_ref() {
                    CaptureSpec::Pointer(p) if p.is_empty() || p.starts_with('/') => {
                        Capture::Json(JsonPointer::new(p))
                    }
                    CaptureSpec::Pointer(p) => {
                        return cx.err(
                            Some(c.span()),
                            cf,
                            format!("`{p}` is not a JSON pointer (like /data/token)"),
                        );
                    }
                    CaptureSpec::Regex(r) => Capture::Regex(regex(cx, &r.regex, c.span(), &cf)?),
                    CaptureSpec::Header(h) => {
                        match http::header::HeaderName::from_bytes(h.header.as_bytes()) {
                            Ok(n) => Capture::Header(n),
                            Err(_) => {
                                return cx.err(
                                    Some(c.span()),
                                    cf,
                                    format!("`{}` is not a header name", h.header),
                                );
                            }
                        }
                    }
                },
            ));
        }
        plan.captures = captured.into();
        // User-level headers first; a task's own header of the same name wins.
        let mut headers: Vec<(String, String)> = user_headers
            .iter()
            .filter(|(k, _)| {
                !plan
                    .headers
                    .iter()
                    .any(|(tk, _)| tk.eq_ignore_ascii_case(k))
            })
            .cloned()
            .collect();
        headers.append(&mut plan.headers);
        plan.headers = headers;
        plan.uses_vars |= plan
            .headers
            .iter()
            .any(|(_, v)| v.contains("{{vars.") || v.contains(BUILTIN) || v.contains(data::OPEN));
        let w = match &t.get_ref().weight {
            Some(w) if *w.get_ref() == 0 => {
                return cx.err(Some(w.span()), format!("{tf}.weight"), "must be at least 1");
            }
            Some(w) => *w.get_ref(),
            None => 1,
        };
        let tname = plan
            .name
            .clone()
            .unwrap_or_else(|| format!("{} {}", plan.method, plan.path));
        if names_weights
            .iter()
            .any(|(n, _): &(String, u32)| *n == tname)
        {
            return cx.err(
                Some(t.span()),
                format!("{tf}.name"),
                format!("`{tname}` is used twice; give the tasks distinct names"),
            );
        }
        names_weights.push((tname, w));
        let tags = task_tags(cx, &tf, ts)?.selectable();
        selected.push(refs.tags.selects(&tags));
        plans.push(plan);
    }
    // Every task is checked; only those the tags select run.
    let mut keep = selected.iter();
    plans.retain(|_| keep.next().copied().unwrap_or(false));
    let mut keep = selected.iter();
    names_weights.retain(|_| keep.next().copied().unwrap_or(false));
    if plans.is_empty() {
        return Ok(None);
    }
    let slots = match (&spec.max_concurrent_tasks, mode) {
        (None, ExecutionMode::Concurrent) => plans.len(),
        _ => slots,
    };
    // A sequential user's iteration is one pass of its tasks, a task of weight n n times.
    let per_iteration = match mode {
        ExecutionMode::Sequential => names_weights
            .iter()
            .map(|(_, w)| u64::from(*w))
            .sum::<u64>()
            .max(1),
        ExecutionMode::Concurrent => 1,
    };
    let used: Arc<[usize]> = used.into();
    let data = Arc::clone(refs.data);
    let http = http.clone();
    let plans = Arc::new(plans);
    // Setup runs once a run: its values are the same for every user, and so are the
    // tasks rendered with them. Rendered once and shared, not once per user (a copy of
    // every task per user was most of the memory of a file of many tasks).
    let rendered: Rendered = Arc::default();
    let mut b = UserType::builder(name, move |ctx| {
        let values = ctx.setup::<serde_json::Value>();
        let tasks = {
            let mut cache = rendered.lock().unwrap_or_else(|e| e.into_inner());
            match &*cache {
                Some((v, tasks)) if same_values(v, &values) => Arc::clone(tasks),
                _ => {
                    let tasks: Arc<Vec<RequestPlan>> = Arc::new(
                        plans
                            .iter()
                            .map(|p| p.rendered(values.as_deref()))
                            .collect(),
                    );
                    *cache = Some((values.clone(), Arc::clone(&tasks)));
                    tasks
                }
            }
        };
        // One client per concurrent slot, each with its own recorder on the run's
        // collector.
        let clients = (0..slots)
            .map(|_| tokio::sync::Mutex::new(http.client_for(ctx)))
            .collect();
        ScenarioUser {
            clients,
            tasks,
            vars: Vars::default(),
            vu: ctx.user_id(),
            runs: AtomicU64::new(0),
            per_iteration,
            rows: tokio::sync::Mutex::new(UserRows::new(data.len())),
            data: Arc::clone(&data),
            used: Arc::clone(&used),
        }
    })
    .weight(weight)
    .wait_time(wait)
    .execution_mode(mode);
    if mode == ExecutionMode::Concurrent {
        b = b.max_concurrent_tasks(slots);
    }
    for (j, (tname, w)) in names_weights.into_iter().enumerate() {
        b = b.shared_task_fn(tname, w, move |user: &ScenarioUser| Box::pin(user.run(j)));
    }
    b.build()
        .map(Some)
        .or_else(|e| cx.err(Some(u.span()), field, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID_TAIL: &str = "[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/\"\n";

    fn check(text: &str) -> Result<ScenarioFile, ScenarioError> {
        parse(Path::new("s.toml"), text)
    }

    /// Thousands of user types: each is kept, in order, with its request name, and a
    /// name used twice is found however far apart the two are. (Its cost per type is
    /// measured in `cli/benches/scenario_file.rs`.)
    #[test]
    fn a_file_of_thousands_of_user_types_is_checked_whole() {
        let types = 5_000;
        let mut text = String::new();
        for i in 0..types {
            text.push_str(&format!(
                "[[users]]\nname = \"u{i}\"\n[[users.tasks]]\nname = \"t{i}\"\npath = \"/items/{i}\"\n"
            ));
        }
        let s = check(&text).unwrap();
        assert_eq!(s.user_types.len(), types);
        assert_eq!(s.user_types[types - 1].name(), format!("u{}", types - 1));
        let names = s.request_names.unwrap();
        assert_eq!(names.len(), types);
        assert_eq!(names[4_321], "t4321");
        text.push_str("[[users]]\nname = \"u0\"\n[[users.tasks]]\npath = \"/\"\n");
        let e = check(&text).err().unwrap().to_string();
        assert!(
            e.ends_with(&format!("users[{types}].name: `u0` is used twice")),
            "{e}"
        );
    }

    #[test]
    fn the_example_file_is_valid() {
        use std::time::Duration;
        let s = load(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/scenario.toml"
        )))
        .unwrap();
        let names: Vec<&str> = s.user_types.iter().map(UserType::name).collect();
        assert_eq!(names, ["shopper", "api"]);
        assert_eq!(s.user_types[0].weight(), 3);
        assert_eq!(s.user_types[1].max_concurrent_tasks(), 4);
        assert_eq!(
            s.shape.as_ref().and_then(|sh| sh.duration()),
            Some(Duration::from_secs(20))
        );
        let names = s.request_names.expect("no path uses a capture");
        assert!(names.contains(&"/login".to_owned()), "{names:?}");
        assert!(names.contains(&"browse".to_owned()), "{names:?}");
        let templated = check(
            "[[setup]]\npath = \"/login\"\ncapture = { id = \"/id\" }\n\
             [[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/items/{{setup.id}}\"\n",
        )
        .unwrap();
        assert!(
            templated.request_names.is_none(),
            "a templated path's name is unknown"
        );
        assert_eq!(s.host.as_deref(), Some("http://127.0.0.1:8080"));
        assert!(s.hooks.has_setup());
        assert_eq!(s.thresholds.len(), 6);
        assert_eq!(s.tags["shop"], ["browse", "add to cart"]);
        assert_eq!(s.data.column_names(), ["password", "username"]);
    }

    #[test]
    fn the_scenarios_example_is_valid() {
        let s = load(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/scenarios.toml"
        )))
        .unwrap();
        let kinds: Vec<&str> = s.scenarios.iter().map(|s| s.executor().kind()).collect();
        for k in [
            "shared-iterations",
            "per-vu-iterations",
            "constant-vus",
            "ramping-vus",
            "constant-arrival-rate",
            "ramping-arrival-rate",
            "externally-controlled",
        ] {
            assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
        }
    }

    #[test]
    fn setup_values_fill_templates() {
        let values = serde_json::json!({"token": "abc", "n": 7});
        assert_eq!(
            render("/a/{{setup.token}}?n={{setup.n}}", Some(&values)),
            "/a/abc?n=7"
        );
        assert_eq!(render("plain", Some(&values)), "plain");
        let j = render_json(
            &serde_json::json!({"t": "{{setup.token}}", "l": ["{{setup.n}}"]}),
            Some(&values),
        );
        assert_eq!(j, serde_json::json!({"t": "abc", "l": ["7"]}));
    }

    #[test]
    fn malformed_files_name_file_line_and_field() {
        let cases: Vec<(String, &str)> = vec![
            // TOML syntax
            ("[[users]\nname = \"u\"".into(), "s.toml:1:"),
            // unknown field, with its line
            (format!("{VALID_TAIL}wieght = 3\n"), "s.toml:5: users[0].tasks[0].wieght: unknown field `wieght`"),
            // What the TOML reader finds is named in full and in words, not Rust's types.
            ("[[users]]\nname = \"u\"\nwait_time = \"abc\"\n[[users.tasks]]\npath = \"/\"\n".into(), "s.toml:3: users[0].wait_time: expected seconds (a number, e.g. 0.5), a range of seconds [min, max]"),
            ("[[users]]\nname = \"u\"\nweight = \"x\"\n[[users.tasks]]\npath = \"/\"\n".into(), "s.toml:3: users[0].weight: invalid type: string \"x\", expected a whole number from 0 to 4294967295"),
            (format!("{VALID_TAIL}[[users]]\nname = \"v\"\n[[users.tasks]]\nname = \"x\"\n"), "s.toml:7: users[1].tasks[0]: missing field `path`"),
            ("[users]\nname = \"u\"\n".into(), "s.toml:1: users: `[users]` is one table, but `users` is a list: write `[[users]]` for each entry"),
            (format!("[load]\nusers = 1.5\n{VALID_TAIL}"), "s.toml:2: load.users: invalid type: decimal number `1.5`, expected a whole number, 0 or more"),
            // wrong type
            ("[[users]]\nname = \"u\"\nweight = \"three\"\n[[users.tasks]]\npath = \"/\"\n".into(), "s.toml:3: users[0].weight: invalid type"),
            // missing required field
            ("[[users]]\nname = \"u\"\n[[users.tasks]]\nmethod = \"GET\"\n".into(), "missing field `path`"),
            // no users at all
            ("host = \"http://h\"\n".into(), "s.toml: users: at least one [[users]] table is needed"),
            // a user without tasks
            ("[[users]]\nname = \"u\"\n".into(), "users[0].tasks: at least one [[users.tasks]] table is needed"),
            ("[[users]]\nname = \"u\"\nweight = 0\n[[users.tasks]]\npath = \"/\"\n".into(), "s.toml:3: users[0].weight: must be at least 1"),
            ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/\"\nweight = 0\n".into(), "s.toml:5: users[0].tasks[0].weight: must be at least 1"),
            ("[[users]]\nname = \"u\"\nwait_time = [2, 1]\n[[users.tasks]]\npath = \"/\"\n".into(), "s.toml:3: users[0].wait_time: wait time range: min 2 is above max 1"),
            ("[[users]]\nname = \"u\"\nwait_time = -1\n[[users.tasks]]\npath = \"/\"\n".into(), "s.toml:3: users[0].wait_time: wait time must be between 0 and 1e9 seconds"),
            ("[[users]]\nname = \"u\"\nexecution_mode = \"parallel\"\n[[users.tasks]]\npath = \"/\"\n".into(), "s.toml:3: users[0].execution_mode: `parallel`: use sequential or concurrent"),
            ("[[users]]\nname = \"u\"\nmax_concurrent_tasks = 2\n[[users.tasks]]\npath = \"/\"\n".into(), "s.toml:3: users[0].max_concurrent_tasks: applies to execution_mode = \"concurrent\" only"),
            ("[[users]]\nname = \"u\"\n[[users.tasks]]\nmethod = \"G3T\"\npath = \"/\"\n".into(), "s.toml:4: users[0].tasks[0].method: `G3T` is not an HTTP method"),
            ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"items\"\n".into(), "s.toml:4: users[0].tasks[0].path: `items` must start with / or be an http(s) URL"),
            ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/\"\nbody = \"x\"\njson = { a = 1 }\n".into(), "s.toml:6: users[0].tasks[0].json: give body or json, not both"),
            ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/\"\nexpect_status = 42\n".into(), "s.toml:5: users[0].tasks[0].expect_status: 42 is not an HTTP status"),
            ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/a/{{setup.token}}\"\n".into(), "s.toml:4: users[0].tasks[0].path: `{{setup.token}}` is not captured by any [[setup]] request"),
            (format!("[load]\nrun_time = \"5x\"\n{VALID_TAIL}"), "s.toml:2: load.run_time: invalid duration `5x`"),
            (format!("[load]\nusers = 5\nstages = [{{ duration = \"1s\", target = 1 }}]\n{VALID_TAIL}"), "load: give either stages or users/run_time, not both"),
            (format!("[load]\nspawn_rate = 0.0\n{VALID_TAIL}"), "s.toml:2: load.spawn_rate: must be above 0"),
            (format!("[load]\nstages = [{{ duration = \"soon\", target = 1 }}]\n{VALID_TAIL}"), "s.toml:2: load.stages[0].duration: invalid duration `soon`"),
            (format!("{VALID_TAIL}{VALID_TAIL}"), "s.toml:6: users[1].name: `u` is used twice"),
            // a user's own values
            ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/\"\ncapture = { t = \"t\" }\n".into(), "s.toml:5: users[0].tasks[0].capture.t: `t` is not a JSON pointer"),
            ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/\"\ncapture = { t = { header = \"bad name\" } }\n".into(), "s.toml:5: users[0].tasks[0].capture.t: `bad name` is not a header name"),
            ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/\"\ncapture = { t = { cookie = \"x\" } }\n".into(), "s.toml:5: users[0].tasks[0].capture: expected a JSON pointer (\"/data/token\"), { header = \"NAME\" } or { regex = "),
            ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/a/{{vars.id}}\"\n".into(), "s.toml:4: users[0].tasks[0].path: `{{vars.id}}` is not captured by any task of this user type"),
            (format!("{VALID_TAIL}[[users]]\nname = \"v\"\nheaders = {{ a = \"{{{{vars.t}}}}\" }}\n[[users.tasks]]\npath = \"/\"\n"), "s.toml:7: users[1].headers.a: `{{vars.t}}` is not captured by any task of this user type"),
            (format!("[[setup]]\npath = \"/x/{{{{vars.t}}}}\"\n{VALID_TAIL}"), "s.toml:2: setup[0].path: `{{vars.t}}` is not captured by any task of this user type"),
            (format!("[[setup]]\npath = \"/login\"\ncapture = {{ t = {{ header = \"x-t\" }} }}\n{VALID_TAIL}"), "s.toml:3: setup[0].capture.t: setup captures take a JSON pointer"),
            ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/\"\nbody = \"{{vars.t\"\ncapture = { t = \"/t\" }\n".into(), "s.toml:5: users[0].tasks[0].body: unclosed `{{vars.`"),
            ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/\"\nheaders = { \"bad name\" = \"v\" }\n".into(), "s.toml:5: users[0].tasks[0].headers.bad name: not a valid header name"),
            (format!("host = \"ftp://x\"\n{VALID_TAIL}"), "s.toml:1: host: `ftp://x`: the scheme must be http or https, not `ftp`"),
            (format!("host = \"http://h:65536\"\n{VALID_TAIL}"), "s.toml:1: host: `http://h:65536`: port `65536` is not a port number (1 to 65535)"),
            (format!("host = \"http://h?q=1\"\n{VALID_TAIL}"), "s.toml:1: host: `http://h?q=1`: no query string"),
            ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/a\\tb\"\n".into(), "s.toml:4: users[0].tasks[0].path: `/a\tb`: a tab or line break at byte 2"),
            ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"http://h:0/x\"\n".into(), "s.toml:4: users[0].tasks[0].path: `http://h:0/x`: port `0` is not a port number"),
            (format!("[[setup]]\npath = \"/lo gin\"\n{VALID_TAIL}"), "s.toml:2: setup[0].path: `/lo gin`: a space at byte 3"),
            (format!("[load]\nusers = 1000001\n{VALID_TAIL}"), "s.toml:2: load.users: 1000001 users is above the limit of 1000000 users per run"),
            ("[[users]]\nname = \"u\"\nexecution_mode = \"concurrent\"\nmax_concurrent_tasks = 4294967295\n[[users.tasks]]\npath = \"/\"\n".into(), "users[0]: user type `u`: max_concurrent_tasks must be at most 1000"),
            (format!("[[setup]]\npath = \"/login\"\ncapture = {{ t = \"token\" }}\n{VALID_TAIL}"), "s.toml:3: setup[0].capture.t: `token` is not a JSON pointer"),
            (format!("[[setup]]\npath = \"/login\"\nweight = 2\n{VALID_TAIL}"), "s.toml:3: setup[0].weight: setup requests run once, in order: no weight"),
            // built-ins
            ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/{{builtin.now}}\"\n".into(), "s.toml:4: users[0].tasks[0].path: `{{builtin.now}}`: the built-ins are vu, iteration, uuid and random(MIN,MAX)"),
            ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/{{builtin.random(5,1)}}\"\n".into(), "s.toml:4: users[0].tasks[0].path: `{{builtin.random(5,1)}}`: random takes two whole numbers, MIN <= MAX"),
            ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/\"\nheaders = { x = \"{{builtin.random(a,9)}}\" }\n".into(), "s.toml:5: users[0].tasks[0].headers.x: `{{builtin.random(a,9)}}`: random takes two whole numbers"),
            ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/\"\nbody = \"{{builtin.uuid\"\n".into(), "s.toml:5: users[0].tasks[0].body: unclosed `{{builtin.`"),
            // teardown
            (format!("[[teardown]]\npath = \"/x\"\nweight = 2\n{VALID_TAIL}"), "s.toml:3: teardown[0].weight: teardown requests run once, in order: no weight"),
            (format!("[[teardown]]\npath = \"/x\"\ncapture = {{ t = \"/t\" }}\n{VALID_TAIL}"), "s.toml:3: teardown[0].capture.t: teardown requests capture nothing"),
            // named checks and regex captures
            ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/\"\nchecks = [{ status = 200 }]\n".into(), "s.toml:5: users[0].tasks[0].checks: missing field `name`"),
            ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/\"\nchecks = [{ name = \" \", status = 200 }]\n".into(), "s.toml:5: users[0].tasks[0].checks[0].name: must not be empty"),
            ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/\"\nchecks = [{ name = \"c\" }]\n".into(), "s.toml:5: users[0].tasks[0].checks[0]: give one of status, header, json, body_contains or regex (found none)"),
            ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/\"\nchecks = [{ name = \"c\", status = 200, json = \"/a\" }]\n".into(), "s.toml:5: users[0].tasks[0].checks[0]: give one of status, header, json, body_contains or regex (found status, json)"),
            ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/\"\nchecks = [{ name = \"c\", status = 999 }]\n".into(), "s.toml:5: users[0].tasks[0].checks[0].status: 999 is not an HTTP status (100 to 599)"),
            ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/\"\nchecks = [{ name = \"c\", header = \"a b\" }]\n".into(), "s.toml:5: users[0].tasks[0].checks[0].header: `a b` is not a header name"),
            ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/\"\nchecks = [{ name = \"c\", header = \"x\", equals = 3 }]\n".into(), "s.toml:5: users[0].tasks[0].checks[0].equals: a header's value is text: give a string"),
            ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/\"\nchecks = [{ name = \"c\", json = \"id\" }]\n".into(), "s.toml:5: users[0].tasks[0].checks[0].json: `id` is not a JSON pointer (like /data/token)"),
            ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/\"\nchecks = [{ name = \"c\", body_contains = \"x\", equals = \"y\" }]\n".into(), "s.toml:5: users[0].tasks[0].checks[0].equals: equals compares a header's or a JSON value's value: give header or json"),
            ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/\"\nchecks = [{ name = \"c\", regex = \"(a\" }]\n".into(), "s.toml:5: users[0].tasks[0].checks[0].regex: `(a` is not a regular expression"),
            ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/\"\nchecks = [{ name = \"c\", status = 200, fail = true }]\n".into(), "s.toml:5: users[0].tasks[0].checks: unknown field `fail`"),
            ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/\"\n[[users.tasks.checks]]\nname = \"c\"\nstatus = \"200\"\n".into(), "s.toml:7: users[0].tasks[0].checks[0].status: invalid type: string \"200\""),
            ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/\"\ncapture = { t = { regex = \"[a\" } }\n".into(), "s.toml:5: users[0].tasks[0].capture.t: `[a` is not a regular expression"),
            ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/\"\nchecks = [{ name = \"c\", json = \"/a\", equals = \"{{vars.x}}\" }]\n".into(), "s.toml:5: users[0].tasks[0].checks[0].equals: `{{vars.x}}` is not captured by any task of this user type"),
            (format!("[[teardown]]\npath = \"/x/{{{{setup.t}}}}\"\n{VALID_TAIL}"), "s.toml:2: teardown[0].path: `{{setup.t}}` is not captured by any [[setup]] request"),
            // a user type's own HTTP settings
            ("[[users]]\nname = \"u\"\nhttp = { timeout = \"soon\" }\n[[users.tasks]]\npath = \"/\"\n".into(), "s.toml:3: users[0].http.timeout: "),
            ("[[users]]\nname = \"u\"\nhttp = { max_retries = 99 }\n[[users.tasks]]\npath = \"/\"\n".into(), "s.toml:3: users[0].http.max_retries: 99 is more than the 10 retries allowed"),
            ("[[users]]\nname = \"u\"\nhttp = { retries = 1 }\n[[users.tasks]]\npath = \"/\"\n".into(), "s.toml:3: users[0].http: unknown field `retries`"),
            // paced waits
            ("[[users]]\nname = \"u\"\nwait_time = { pacing = 1, throughput = 2 }\n[[users.tasks]]\npath = \"/\"\n".into(), "s.toml:3: users[0].wait_time: give one of pacing = SECONDS or throughput = TASKS_PER_SECOND"),
            ("[[users]]\nname = \"u\"\nwait_time = {}\n[[users.tasks]]\npath = \"/\"\n".into(), "s.toml:3: users[0].wait_time: give one of pacing"),
            ("[[users]]\nname = \"u\"\nwait_time = { throughput = 0 }\n[[users.tasks]]\npath = \"/\"\n".into(), "s.toml:3: users[0].wait_time: "),
            ("[[users]]\nname = \"u\"\nwait_time = { pacing = -2 }\n[[users.tasks]]\npath = \"/\"\n".into(), "s.toml:3: users[0].wait_time: constant pacing must be between 0 and 1e9 seconds"),
            ("[[users]]\nname = \"u\"\nwait_time = { pace = 2 }\n[[users.tasks]]\npath = \"/\"\n".into(), "s.toml:3: users[0].wait_time: expected seconds"),
            // environment variables
            ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/{{env.AIOTEST_UNSET_7Q}}\"\n".into(), "s.toml:4: users[0].tasks[0].path: `{{env.AIOTEST_UNSET_7Q}}`: the environment variable AIOTEST_UNSET_7Q is not set"),
            ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/{{env.9LIVES}}\"\n".into(), "s.toml:4: users[0].tasks[0].path: `{{env.9LIVES}}`: `9LIVES` is not an environment variable name"),
            ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/\"\nbody = \"{{env.X\"\n".into(), "s.toml:5: users[0].tasks[0].body: unclosed `{{env.`"),
            ("[[users]]\nname = \"u\"\nheaders = { x = \"{{env.AIOTEST_UNSET_7Q}}\" }\n[[users.tasks]]\npath = \"/\"\n".into(), "s.toml:3: users[0].headers.x: `{{env.AIOTEST_UNSET_7Q}}`"),
            ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/\"\njson = { a = [\"{{env.AIOTEST_UNSET_7Q}}\"] }\n".into(), "s.toml:5: users[0].tasks[0].json: `{{env.AIOTEST_UNSET_7Q}}`"),
            (format!("host = \"{{{{env.AIOTEST_UNSET_7Q}}}}\"\n{VALID_TAIL}"), "s.toml:1: host: `{{env.AIOTEST_UNSET_7Q}}`"),
            (format!("host = \"{{{{env.AIOTEST_UNSET_7Q:-ftp://x}}}}\"\n{VALID_TAIL}"), "s.toml:1: host: `ftp://x`: the scheme must be http or https"),
            // thresholds
            (format!("thresholds = [\"p95<300ms\", \"p95<<3\"]\n{VALID_TAIL}"), "s.toml:1: thresholds[1]: "),
            (format!("thresholds = [\"latency<3ms\"]\n{VALID_TAIL}"), "s.toml:1: thresholds[0]: "),
            (format!("thresholds = [3]\n{VALID_TAIL}"), "s.toml:1: thresholds: expected a threshold as --threshold takes it"),
            (format!("{VALID_TAIL}[[thresholds]]\nexpr = \"p95<1s\"\nabort = true\n"), "s.toml:5: thresholds[0]: expected a threshold as --threshold takes it"),
            (format!("{VALID_TAIL}[[thresholds]]\nexpr = \"p95<1s:stop\"\n"), "s.toml:5: thresholds[0]: "),
        ];
        assert!(cases.len() >= 10);
        for (text, want) in cases {
            let err = match check(&text) {
                Ok(_) => panic!("accepted:\n{text}"),
                Err(e) => e.to_string(),
            };
            assert!(err.contains(want), "\n{text}\nwant: {want}\n got: {err}");
        }
    }

    #[test]
    fn scenarios_take_each_executor_with_k6s_fields() {
        use std::time::Duration;
        let text = format!(
            "{VALID_TAIL}\
[[scenarios]]
name = \"a\"
executor = \"shared-iterations\"
vus = 5
iterations = 100
[[scenarios]]
name = \"b\"
executor = \"per-vu-iterations\"
vus = 2
iterations = 3
max_duration = \"1m\"
[[scenarios]]
name = \"c\"
executor = \"constant-vus\"
vus = 4
duration = \"30s\"
start_time = \"10s\"
graceful_stop = \"5s\"
tags = {{ team = \"web\" }}
[[scenarios]]
name = \"d\"
executor = \"ramping-vus\"
start_vus = 0
stages = [{{ duration = \"10s\", target = 5 }}, {{ duration = \"5s\", target = 0 }}]
[[scenarios]]
name = \"e\"
executor = \"constant-arrival-rate\"
rate = 30
time_unit = \"1m\"
duration = \"2m\"
pre_allocated_vus = 2
[[scenarios]]
name = \"f\"
executor = \"ramping-arrival-rate\"
start_rate = 10
stages = [{{ duration = \"1m\", target = 100 }}]
pre_allocated_vus = 5
max_vus = 50
max_delay = \"250ms\"
[[scenarios]]
name = \"g\"
executor = \"externally-controlled\"
vus = 1
max_vus = 20
"
        );
        let f = check(&text).unwrap();
        let kinds: Vec<(&str, &str)> = f
            .scenarios
            .iter()
            .map(|s| (s.name(), s.executor().kind()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("a", "shared-iterations"),
                ("b", "per-vu-iterations"),
                ("c", "constant-vus"),
                ("d", "ramping-vus"),
                ("e", "constant-arrival-rate"),
                ("f", "ramping-arrival-rate"),
                ("g", "externally-controlled"),
            ]
        );
        let c = &f.scenarios[2];
        assert_eq!(c.starts_at(), Duration::from_secs(10));
        assert_eq!(c.graceful_stop_period(), Duration::from_secs(5));
        match f.scenarios[4].executor() {
            Executor::ConstantArrivalRate {
                rate,
                time_unit,
                pre_allocated_vus,
                max_vus,
                max_delay,
                ..
            } => {
                assert_eq!((*rate, *time_unit), (30.0, Duration::from_secs(60)));
                assert_eq!(
                    (*pre_allocated_vus, *max_vus),
                    (2, 2),
                    "max_vus defaults to pre_allocated_vus"
                );
                assert_eq!(*max_delay, Duration::ZERO);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            f.scenarios[5].executor().max_delay(),
            Duration::from_millis(250)
        );
    }

    #[test]
    fn bad_scenarios_name_file_line_and_field() {
        let sc = |body: &str| format!("{VALID_TAIL}[[scenarios]]\nname = \"s\"\n{body}");
        let cases: Vec<(String, &str)> = vec![
            (
                sc("executor = \"constant-rate\"\n"),
                "s.toml:7: scenarios[0].executor: `constant-rate` is not an executor: use shared-iterations,",
            ),
            (
                sc("executor = \"constant-vus\"\nduration = \"10s\"\nrate = 5\n"),
                "s.toml:9: scenarios[0].rate: `constant-vus` takes no rate (it takes vus, duration)",
            ),
            (
                sc("executor = \"constant-vus\"\n"),
                "scenarios[0].duration: `constant-vus` needs duration",
            ),
            (
                sc("executor = \"constant-arrival-rate\"\nrate = 5\nduration = \"1m\"\n"),
                "scenarios[0].pre_allocated_vus: `constant-arrival-rate` needs pre_allocated_vus",
            ),
            (
                sc(
                    "executor = \"constant-arrival-rate\"\nrate = -5\nduration = \"1m\"\npre_allocated_vus = 1\n",
                ),
                "s.toml:8: scenarios[0].rate: -5 is not a rate",
            ),
            (
                sc(
                    "executor = \"constant-arrival-rate\"\nrate = 1e300\nduration = \"1m\"\npre_allocated_vus = 1\n",
                ),
                "s.toml:8: scenarios[0].rate: 1e300 per 1s is more than the 10000000 iterations per second allowed",
            ),
            (
                sc(
                    "executor = \"ramping-arrival-rate\"\ntime_unit = \"1ms\"\nstages = [{ duration = \"1s\", target = 20000 }]\npre_allocated_vus = 1\n",
                ),
                "scenarios[0].stages.target: 2e4 per 1ms is more than the 10000000 iterations per second allowed",
            ),
            (
                sc(
                    "executor = \"constant-arrival-rate\"\nrate = 5\nduration = \"1m\"\npre_allocated_vus = 8\nmax_vus = 2\n",
                ),
                "s.toml:10: scenarios[0].pre_allocated_vus: 8 is above max_vus (2)",
            ),
            (
                sc(
                    "executor = \"constant-arrival-rate\"\nrate = 5\nduration = \"1m\"\npre_allocated_vus = 1\nmax_delay = \"2h\"\n",
                ),
                "s.toml:11: scenarios[0].max_delay: 7200 s is longer than the 3600 s",
            ),
            (
                sc("executor = \"shared-iterations\"\nvus = 10\niterations = 5\n"),
                "s.toml:9: scenarios[0].iterations: 5 is fewer than the 10 users sharing them",
            ),
            (
                sc("executor = \"ramping-vus\"\nstages = [{ duration = \"1x\", target = 1 }]\n"),
                "s.toml:8: scenarios[0].stages[0].duration: invalid duration `1x`",
            ),
            (
                sc("executor = \"constant-vus\"\nduration = \"1s\"\nusers = [\"nobody\"]\n"),
                "s.toml:9: scenarios[0].users: no [[users]] type is named `nobody`; the types are: u",
            ),
            (
                sc("executor = \"constant-vus\"\nduration = \"1s\"\nstart_time = \"later\"\n"),
                "s.toml:9: scenarios[0].start_time: invalid duration `later`",
            ),
            (
                sc("executor = \"constant-vus\"\nduration = \"1s\"\nvuz = 3\n"),
                "unknown field `vuz`",
            ),
            (
                format!(
                    "{}[[scenarios]]\nname = \"s\"\nexecutor = \"constant-vus\"\nduration = \"1s\"\n",
                    sc("executor = \"constant-vus\"\nduration = \"1s\"\n")
                ),
                "s.toml:10: scenarios[1].name: `s` is used twice",
            ),
            (
                format!(
                    "[load]\nusers = 2\n{}",
                    sc("executor = \"constant-vus\"\nduration = \"1s\"\n")
                ),
                "give [load] or [[scenarios]], not both",
            ),
            (
                format!(
                    "{VALID_TAIL}[[scenarios]]\nname = \"a b\"\nexecutor = \"constant-vus\"\nduration = \"1s\"\n"
                ),
                "s.toml:6: scenarios[0].name:",
            ),
        ];
        for (text, want) in cases {
            let err = match check(&text) {
                Ok(_) => panic!("accepted:\n{text}"),
                Err(e) => e.to_string(),
            };
            assert!(err.contains(want), "\n{text}\nwant: {want}\n got: {err}");
        }
    }

    #[test]
    fn thresholds_in_the_file_take_the_flags_syntax_in_either_form() {
        let text = format!("thresholds = [\"p95<300ms\", \"failures<1%\"]\n{VALID_TAIL}");
        let s = check(&text).unwrap_or_else(|e| panic!("{e}"));
        let shown: Vec<String> = s.thresholds.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 2);
        assert!(shown[0].starts_with("p95<"), "{shown:?}");
        let text = format!("{VALID_TAIL}[[thresholds]]\nexpr = \"p99{{name=/}}<1s:abort\"\n");
        let s = check(&text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.thresholds.len(), 1);
        assert!(check(VALID_TAIL).unwrap().thresholds.is_empty());
    }

    #[test]
    fn json_pointers_find_what_serde_json_finds() {
        let v: serde_json::Value = serde_json::from_str(
            r#"{"a": {"b/c": [10, {"~d": "x"}], "": 1}, "items": [{"id": 7}], "0": "zero"}"#,
        )
        .unwrap();
        for p in [
            "",
            "/a",
            "/a/b~1c",
            "/a/b~1c/0",
            "/a/b~1c/1/~0d",
            "/a/",
            "/items/0/id",
            "/items/00",
            "/items/+0",
            "/items/1",
            "/0",
            "/nope",
            "/a/b~1c/-",
            "/items/0/id/x",
        ] {
            assert_eq!(JsonPointer::new(p).find(&v), v.pointer(p), "{p}");
        }
    }

    #[test]
    fn built_ins_fill_in_a_new_value_each_time_within_their_bounds() {
        let none = HashMap::new();
        let at = |vars, vu, iteration| Values {
            vars,
            vu,
            iteration,
            data: None,
        };
        assert_eq!(
            fill_vars("/u/{{builtin.vu}}/{{builtin.iteration}}", &at(&none, 7, 3)).unwrap(),
            "/u/7/3"
        );
        for _ in 0..200 {
            let n: i64 = fill_vars("{{builtin.random(-2,3)}}", &at(&none, 0, 0))
                .unwrap()
                .parse()
                .unwrap();
            assert!((-2..=3).contains(&n), "{n}");
        }
        let a = fill_vars("{{builtin.uuid}}", &at(&none, 0, 0)).unwrap();
        let b = fill_vars("{{builtin.uuid}}", &at(&none, 0, 0)).unwrap();
        assert_ne!(a, b);
        let bytes = a.as_bytes();
        assert_eq!(a.len(), 36, "{a}");
        assert!([8, 13, 18, 23].iter().all(|&i| bytes[i] == b'-'), "{a}");
        assert_eq!(bytes[14], b'4', "version 4: {a}");
        assert!(b"89ab".contains(&bytes[19]), "variant 1: {a}");
        let vars: HashMap<String, String> = [("id".to_owned(), "42".to_owned())].into();
        assert_eq!(
            fill_vars("/{{vars.id}}/{{builtin.vu}}/{{vars.id}}", &at(&vars, 3, 0)).unwrap(),
            "/42/3/42"
        );
        // A captured value is sent as it is, never read for references.
        let sly: HashMap<String, String> =
            [("v".to_owned(), "{{builtin.vu}}{{vars.v}}".to_owned())].into();
        assert_eq!(
            fill_vars("a{{vars.v}}b{{", &at(&sly, 3, 0)).unwrap(),
            "a{{builtin.vu}}{{vars.v}}b{{"
        );
        assert_eq!(
            fill_vars("/{{vars.nope}}", &at(&vars, 3, 0)).unwrap_err(),
            "`{{vars.nope}}` is not captured yet by this user"
        );
    }

    /// Bad `[[data]]` files and tags: each is refused with FILE:LINE: FIELD.
    #[test]
    fn bad_data_files_and_tags_name_file_line_and_field() {
        let dir = std::env::temp_dir();
        let write = |name: &str, text: &str| {
            let p = dir.join(format!("aiotest-unit-{}-{name}", std::process::id()));
            std::fs::write(&p, text).unwrap();
            p.display().to_string()
        };
        let good = write("good.csv", "key,secret\na,1\n");
        let other = write("other.csv", "key\nb\n");
        let ragged = write("ragged.csv", "key,secret\na,1\nb,2,3\n");
        let empty = write("empty.csv", "key,secret\n");
        let twice = write("twice.csv", "key,key\na,b\n");
        let bad_column = write("col.csv", "my key\na\n");
        let lines = write("lines.jsonl", "{\"key\": \"a\"}\n[1]\n");
        let missing = write(
            "missing.jsonl",
            "{\"key\": \"a\", \"n\": 1}\n{\"key\": \"b\"}\n",
        );
        let txt = write("rows.txt", "key\na\n");
        let task = |extra: &str| {
            format!("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/\"\n{extra}")
        };
        let data = |file: &str, extra: &str| format!("[[data]]\nfile = \"{file}\"\n{extra}");
        let cases: Vec<(String, String)> = vec![
            (data("/nonexistent/users.csv", "") + VALID_TAIL, "s.toml:2: data[0].file: cannot read `/nonexistent/users.csv`".into()),
            (data(&good, "strategy = \"sequential\"\n") + VALID_TAIL, "s.toml:3: data[0].strategy: `sequential`: use unique, round_robin or random".into()),
            (data(&good, "strategy = \"random\"\non_exhausted = \"wrap\"\n") + VALID_TAIL, "s.toml:4: data[0].on_exhausted: applies to strategy = \"unique\" only".into()),
            (data(&good, "on_exhausted = \"stop\"\n") + VALID_TAIL, "s.toml:3: data[0].on_exhausted: `stop`: use error or wrap".into()),
            (data(&good, "rows = 3\n") + VALID_TAIL, "s.toml:3: data[0].rows: unknown field `rows`".into()),
            (data(&txt, "") + VALID_TAIL, format!("s.toml:2: data[0].file: `{txt}`: a data file is .csv (with a header line) or .jsonl")),
            (data(&ragged, "") + VALID_TAIL, format!("s.toml:2: data[0].file: `{ragged}`: line 3: 3 fields, but the header has 2")),
            (data(&empty, "") + VALID_TAIL, format!("s.toml:2: data[0].file: `{empty}` has no rows")),
            (data(&twice, "") + VALID_TAIL, format!("s.toml:2: data[0].file: `{twice}`: the header names `key` twice")),
            (data(&bad_column, "") + VALID_TAIL, format!("s.toml:2: data[0].file: `{bad_column}`: column `my key`: a column name is letters")),
            (data(&lines, "") + VALID_TAIL, format!("s.toml:2: data[0].file: `{lines}`: line 2: not a JSON object")),
            (data(&missing, "") + VALID_TAIL, format!("s.toml:2: data[0].file: `{missing}`: line 2: no `n` (the first line has it)")),
            (data(&good, "") + &data(&other, "") + VALID_TAIL, format!("s.toml:4: data[1].file: column `key` is in `{good}` too")),
            (data(&good, "") + &task("headers = { k = \"{{data.nope}}\" }\n"), "s.toml:7: users[0].tasks[0].headers.k: `{{data.nope}}` is not a column of any [[data]] file; the columns are: key, secret".into()),
            (task("body = \"{{data.key}}\"\n"), "s.toml:5: users[0].tasks[0].body: `{{data.key}}` is not a column of any [[data]] file".into()),
            (data(&good, "") + "[[setup]]\npath = \"/{{data.key}}\"\n" + VALID_TAIL, "s.toml:4: setup[0].path: `{{data.key}}`: setup and teardown run once, for no user".into()),
            (data(&good, "") + &task("json = { user = \"{{data.nope}}\" }\n"), "s.toml:7: users[0].tasks[0].json: `{{data.nope}}` is not a column".into()),
            (task("tags = [\"a b\"]\n"), "s.toml:5: users[0].tasks[0].tags[0]: \"a b\": a tag is letters, digits, _, - and .".into()),
            (task("tags = \"x\"\n"), "s.toml:5: users[0].tasks[0].tags: \"x\": tags are a list of labels".into()),
            (task("tags = { team = 1 }\n"), "s.toml:5: users[0].tasks[0].tags.team: 1: a tag's value is a string".into()),
            (task("tags = { \"a:b\" = \"x\" }\n"), "s.toml:5: users[0].tasks[0].tags.a:b: a key has no control characters".into()),
            (task("tags = { status = \"x\" }\n"), "s.toml:5: users[0].tasks[0].tags.status: `status` is a system tag".into()),
            (task("group = \"a::::b\"\n"), "s.toml:5: users[0].tasks[0].group: `a::::b`: a group is a name".into()),
            ("[[setup]]\npath = \"/{{setup.t}}\"\ntags = [\"s\"]\n".to_owned() + "[[setup]]\npath = \"/\"\ncapture = { t = \"/t\" }\n" + VALID_TAIL, "setup[0].path: `{{setup.t}}` is not captured".into()),
        ];
        for (text, want) in cases {
            let err = match check(&text) {
                Ok(_) => panic!("accepted:\n{text}"),
                Err(e) => e.to_string(),
            };
            assert!(err.contains(&want), "\n{text}\nwant: {want}\n got: {err}");
        }
        // A CSV saved by a spreadsheet, with a byte order mark, names its columns plainly.
        let bom = write("bom.csv", "\u{feff}key,secret\na,1\n");
        let s = check(&(data(&bom, "") + &task("headers = { k = \"{{data.key}}\" }\n")))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.data.column_names(), ["key", "secret"]);
        let _ = std::fs::remove_file(bom);
        // A tagged request named by a path with setup's values needs a name.
        let text = "[[setup]]\npath = \"/\"\ncapture = { t = \"/t\" }\n[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/{{setup.t}}\"\ntags = [\"x\"]\n";
        let err = check(text).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("s.toml:8: users[0].tasks[0].tags: a tagged request whose path takes setup's values needs a name"), "{err}");
        for f in [
            good, other, ragged, empty, twice, bad_column, lines, missing, txt,
        ] {
            let _ = std::fs::remove_file(f);
        }
    }

    #[test]
    fn a_missing_file_is_an_error_naming_it() {
        let err = load(Path::new("/nonexistent/plan.toml")).err().unwrap();
        assert!(
            err.to_string()
                .starts_with("/nonexistent/plan.toml: cannot read it:"),
            "{err}"
        );
    }
}
