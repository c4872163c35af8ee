//! `cargo xtask bench`: runs the workspace's criterion benchmarks.

use crate::util::{cargo, run as step};

/// The packages with benchmarks. Each is benchmarked on its own: a `cargo bench
/// --workspace` would unify features across every package's dev-dependencies and build
/// tokio with `test-util` (the other crates' tests need it), which slows every clock
/// read and timer park. Benchmarks must see the features of a release build.
/// The command line's only benchmark is named: a plain `cargo bench -p aiotest-cli` would
/// also build its process-level tests in release mode.
const PACKAGES: [(&str, Option<&str>); 3] = [
    ("aiotest-metrics", None),
    ("aiotest-bench", None),
    ("aiotest-cli", Some("scenario_file")),
];

/// `cargo bench -p P` for each package with benchmarks; extra args go to each run (e.g.
/// a criterion filter after `--`).
pub(crate) fn run(extra: &[String]) -> Result<(), String> {
    for (package, only) in PACKAGES {
        let mut cmd = cargo();
        cmd.args(["bench", "-p", package]);
        if let Some(bench) = only {
            cmd.args(["--bench", bench]);
        }
        step(&format!("bench {package}"), cmd.args(extra))?;
    }
    Ok(())
}
