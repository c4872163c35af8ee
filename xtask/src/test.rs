//! `cargo xtask test`: the project's one test command, and what CI runs.

use crate::util::{Counts, cargo, run as step, run_counting};

/// Formatting, lints, docs, tests (with doc tests), then the distributed smoke test. Extra args go to `cargo test`.
pub(crate) fn run(extra: &[String]) -> Result<(), String> {
    // Redis-backed tests need a real redis-server, the report and dashboard tests a real
    // Chromium; get them before anything else so a missing one fails fast with the
    // command to run.
    crate::install::ensure_redis_server()?;
    crate::install::ensure_chromium()?;
    step("fmt", cargo().args(["fmt", "--all", "--check"]))?;
    step(
        "clippy",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    step(
        "docs",
        cargo()
            .args(["doc", "--workspace", "--no-deps", "--locked"])
            .env("RUSTDOCFLAGS", "-D warnings"),
    )?;
    let mut counts = Counts::default();
    let tests = run_counting(
        "tests",
        cargo()
            .args(["test", "--workspace", "--locked", "--all-targets"])
            .args(extra),
        &mut counts,
    );
    let all_tests = tests.and_then(|()| {
        run_counting(
            "doc tests",
            cargo().args(["test", "--workspace", "--locked", "--doc"]),
            &mut counts,
        )
    });
    // One plain closing line over every test binary and the doc tests.
    println!(
        "tests: {} passed, {} failed, {} skipped",
        counts.passed, counts.failed, counts.ignored
    );
    all_tests?;
    if counts.passed == 0 {
        return Err("no test ran".into());
    }
    // The distributed smoke test: real processes, a real redis-server.
    crate::dist_test::run(&[])?;
    // The closing line again, last, for whoever reads only the end.
    println!(
        "tests: {} passed, {} failed, {} skipped",
        counts.passed, counts.failed, counts.ignored
    );
    eprintln!("xtask: test: all checks passed");
    Ok(())
}
