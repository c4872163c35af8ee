//! A script as loaded: its text and what every VU of it shares.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A script's source and what every VU made of it shares (read-only).
#[derive(Debug)]
pub(crate) struct Script {
    /// The name errors and stack traces use (the file name as given).
    pub(crate) name: String,
    /// The text.
    pub(crate) source: String,
    /// `__ENV`.
    pub(crate) env: BTreeMap<String, String>,
    /// Where `open()` reads relative paths from.
    pub(crate) dir: PathBuf,
    /// Cookies are cleared before each iteration (k6's default; `noCookiesReset`).
    pub(crate) reset_cookies: bool,
    /// `batch` and `batchPerHost`.
    pub(crate) batch: crate::batch::Limits,
    /// `setupTimeout`, `teardownTimeout`.
    pub(crate) setup_timeout: Duration,
    pub(crate) teardown_timeout: Duration,
    /// `SharedArray`s by name: each item as JSON, one copy for every VU.
    pub(crate) arrays: SharedArrays,
    /// Iterations started in this process, by scenario (`k6/execution`'s
    /// `scenario.iterationInInstance`).
    pub(crate) scenario_iterations: ScenarioIterations,
    /// The files `open()` read, by the path as the script wrote it: recorded where the
    /// script is read from disk (so a master can ship them), given where it is not (a
    /// worker reads only these).
    pub(crate) files: Files,
}

/// Files `open()` reads: from disk (recording each), or only those given.
#[derive(Debug, Clone)]
pub(crate) enum Files {
    Disk(Arc<Mutex<BTreeMap<String, String>>>),
    Given(Arc<BTreeMap<String, String>>),
}

impl Files {
    /// The text of `path` (relative to `dir` on disk).
    pub(crate) fn read(&self, dir: &std::path::Path, path: &str) -> Result<String, String> {
        match self {
            Files::Disk(seen) => {
                let full = dir.join(path);
                let text = std::fs::read_to_string(&full)
                    .map_err(|e| format!("cannot read {}: {e}", full.display()))?;
                seen.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(path.to_owned(), text.clone());
                Ok(text)
            }
            Files::Given(files) => files.get(path).cloned().ok_or_else(|| {
                "the master's plan does not hold this file (only files the master's own run opened travel)".to_owned()
            }),
        }
    }
}

/// Iterations started in this process, by scenario.
pub(crate) type ScenarioIterations = Arc<Mutex<HashMap<String, Arc<std::sync::atomic::AtomicU64>>>>;

/// The data of a script's `SharedArray`s.
pub(crate) type SharedArrays = Arc<Mutex<HashMap<String, Arc<Vec<Box<str>>>>>>;
