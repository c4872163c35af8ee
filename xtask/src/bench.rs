//! `cargo xtask bench`: runs the workspace's criterion benchmarks.

use crate::util::{cargo, run as step};

/// The packages with benchmarks. Each is benchmarked on its own: a `cargo bench
/// --workspace` would unify features across every package's dev-dependencies and build
/// tokio with `test-util` (the other crates' tests need it), which slows every clock
/// read and timer park. Benchmarks must see the features of a release build.
const PACKAGES: [&str; 2] = ["aiotest-metrics", "aiotest-bench"];

/// `cargo bench -p P` for each package with benchmarks; extra args go to each run (e.g.
/// a criterion filter after `--`).
pub(crate) fn run(extra: &[String]) -> Result<(), String> {
    for package in PACKAGES {
        step(
            &format!("bench {package}"),
            cargo().args(["bench", "-p", package]).args(extra),
        )?;
    }
    Ok(())
}
