//! `cargo xtask`: the project's automation, one module per task.
//!
//! - `cargo xtask test`: formatting, clippy with warnings denied, every test in the
//!   workspace (doc tests too), and the docs with warnings denied. The one test command.
//! - `cargo xtask bench`: aiotest beside wrk against a pinned target; `--memory`: RSS
//!   per idle user and over a long run; `--scripts`: a k6-style script beside the same
//!   scenario file; `--http2`: beside h2load; `--open`: the open model against the
//!   closed loop; `--criterion`: the criterion benchmarks.
//! - `cargo xtask dist-test`: the distributed smoke test: a private redis-server, a
//!   counting target, one master and three worker processes (also run by `test`).
//! - `cargo xtask screenshots`: the dashboard and report pictures in `docs/`.
//! - `cargo xtask screens`: terminal screens (80 and 160 columns, in tmux) in
//!   `docs/terminal/`.
//!
//! Only the standard library: xtask must build fast on a fresh clone.

mod bench;
mod dist_test;
mod install;
#[cfg(test)]
mod packaging;
mod screens;
mod screenshots;
mod test;
mod util;

use std::process::ExitCode;

const USAGE: &str = "usage: cargo xtask <test | bench | dist-test | screenshots | screens>

  test       fmt check, clippy (-D warnings), rustdoc (-D warnings), all tests incl. doc
             tests, then dist-test
  bench      aiotest beside wrk (and oha) against a pinned nginx or bench_target:
             req/s, CPU per request, peak RSS [--rounds N] [--seconds N] [--connections N]
             --memory: RSS per idle user (1k, 10k, 50k users) and over a long run
             --http2: aiotest beside h2load over HTTP/2, TLS and h2c, 50 x 1 stream
             --open: the open model at 25/50/80% of the closed loop and past it, at 50
             and 500 users (achieved, dropped, p99 from the intended start)
             --scripts: a k6-style script beside the scenario file making the same GET
             (req/s, CPU per request), a VU's memory idle in sleep(), 1,000 VUs' start
             --criterion [ARGS]: the criterion benchmarks (ARGS go to cargo bench)
  dist-test  distributed smoke test: master + 3 workers over a private redis-server
  screenshots  docs/dashboard.png and docs/report.png, from a run of examples/scenarios.toml
  screens    docs/terminal/*.txt: a demo run and a scenario run in tmux at 80 and 160
             columns
";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let task = args.next();
    let rest: Vec<String> = args.collect();
    let result = match task.as_deref() {
        Some("test") => test::run(&rest),
        Some("bench") => bench::run(&rest),
        Some("dist-test") => dist_test::run(&rest),
        Some("screenshots") => screenshots::run(&rest),
        Some("screens") => screens::run(&rest),
        Some("help" | "--help" | "-h") => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(other) => Err(format!("unknown task `{other}`\n\n{USAGE}")),
        None => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}
