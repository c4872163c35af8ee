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

use crate::settings::HttpSettings;
use aiotest_core::shape::validate_users;
use aiotest_core::user::ExecutionMode;
use aiotest_http_user::{HttpClient, HttpUser};
use serde::Deserialize;
use toml::Spanned;

use aiotest_core::duration::parse_duration;

mod build;
pub mod data;
pub mod env;
mod exchange;
mod feeds;
mod request;
mod scenarios;
mod schema;
pub mod settings;
mod setup;
mod syntax;
mod template;
mod user;
mod values;

pub use build::parse_with;
use build::*;
use request::*;
use schema::*;
use setup::*;
use user::*;
use values::*;

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
    pub data: Arc<data::Data>,
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
pub struct Inputs<'a> {
    /// HTTP settings over the file's `[http]`.
    pub http: &'a HttpSettings,
    /// Where `{{env.NAME}}` comes from.
    pub env: env::Env<'a>,
    /// Which tasks run.
    pub tags: &'a TagFilter,
    /// Where `[[data]]` files are read from.
    pub files: data::Files<'a>,
    /// `--no-setup`: nothing may use `{{setup.NAME}}` but setup itself.
    pub no_setup: bool,
}

static NO_TAGS: TagFilter = TagFilter {
    include: Vec::new(),
    exclude: Vec::new(),
};

impl Inputs<'_> {
    /// The file alone: this process's environment, files from the disk, every task.
    pub fn with_http(http: &HttpSettings) -> Inputs<'_> {
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
pub fn load_with(file: &Path, inputs: Inputs<'_>) -> Result<ScenarioFile, ScenarioError> {
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

/// The name a request to `path` is recorded under when the file gives none.
pub fn request_name(path: &str) -> String {
    let mut name = String::new();
    aiotest_http_user::naming::name_for_path(path, &mut name);
    name
}

#[cfg(test)]
mod tests;
