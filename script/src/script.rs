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
    /// `setupTimeout`, `teardownTimeout`.
    pub(crate) setup_timeout: Duration,
    pub(crate) teardown_timeout: Duration,
    /// `SharedArray`s by name: each item as JSON, one copy for every VU.
    pub(crate) arrays: SharedArrays,
}

/// The data of a script's `SharedArray`s.
pub(crate) type SharedArrays = Arc<Mutex<HashMap<String, Arc<Vec<Box<str>>>>>>;
