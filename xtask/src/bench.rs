//! `cargo xtask bench`: runs the workspace's criterion benchmarks.

use crate::util::{cargo, run as step};

/// `cargo bench --workspace`, with extra args passed on (e.g. `-p aiotest-metrics`
/// is better given as `cargo bench -p aiotest-metrics` directly).
pub(crate) fn run(extra: &[String]) -> Result<(), String> {
    step("bench", cargo().args(["bench", "--workspace"]).args(extra))
}
