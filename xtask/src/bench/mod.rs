//! `cargo xtask bench`: the end-to-end benchmark against wrk (default), the memory
//! benchmark (`--memory`), k6-style scripts beside scenario files (`--scripts`) and the
//! criterion micro-benchmarks (`--criterion`).

mod e2e;
mod http2;
mod memory;
mod rig;
mod scripts;

use crate::util::{cargo, run as step};

/// The packages with benchmarks. Each is benchmarked on its own: a `cargo bench
/// --workspace` would unify features across every package's dev-dependencies and build
/// tokio with `test-util` (the other crates' tests need it), which slows every clock
/// read and timer park. Benchmarks must see the features of a release build.
/// The scenario crate's only benchmark is named: a plain `cargo bench` of it would also
/// build its tests in release mode.
const PACKAGES: [(&str, Option<&str>); 4] = [
    ("aiotest-metrics", None),
    ("aiotest-coordinator", Some("wire")),
    ("aiotest-bench", None),
    ("aiotest-scenario", Some("scenario_file")),
];

/// `cargo xtask bench [--rounds N] [--seconds N] [--connections N]`,
/// `cargo xtask bench --memory`, `cargo xtask bench --criterion [ARGS]`.
pub(crate) fn run(extra: &[String]) -> Result<(), String> {
    match extra.first().map(String::as_str) {
        Some("--criterion") => criterion(&extra[1..]),
        Some("--memory") => memory::run(&extra[1..]),
        Some("--scripts") => scripts::run(&e2e::Options::parse(&extra[1..])?),
        Some("--http2") => http2::run(&e2e::Options::parse(&extra[1..])?),
        _ => {
            let o = e2e::Options::parse(extra)?;
            if o.open { e2e::open(&o) } else { e2e::run(&o) }
        }
    }
}

/// `cargo bench -p P` for each package with benchmarks; extra args go to each run (e.g.
/// a criterion filter after `--`).
fn criterion(extra: &[String]) -> Result<(), String> {
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

/// The release builds the end-to-end benchmarks run: `aiotest` and `bench_target`.
fn build_release() -> Result<(), String> {
    step(
        "build aiotest and bench_target (release)",
        cargo().args([
            "build",
            "--quiet",
            "--release",
            "-p",
            "aiotest-cli",
            "-p",
            "aiotest-bench",
            "--bin",
            "aiotest",
            "--bin",
            "bench_target",
        ]),
    )
}
