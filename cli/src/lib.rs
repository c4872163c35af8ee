//! The `aiotest` command line.
//!
//! `aiotest run --url URL` tests one URL; `aiotest run --demo` starts an embedded target on
//! 127.0.0.1 and tests it; `-u`, `-r`, `-t` or `--stages` shape the load; `--threshold`
//! sets pass/fail criteria; `--summary-export` writes the summary as JSON. A live progress
//! line runs on stderr, the summary table goes to stdout. Ctrl-C stops gracefully, a
//! second Ctrl-C at once; both still print the summary.
//!
//! Exit codes: 0 success, 99 a threshold failed, 2 bad usage or input, 1 the run itself
//! failed (setup error, unwritable export, ...).
//!
//! **Who should depend on it:** Rust binaries that define their own user types and want
//! aiotest's whole command line from one call in `main`: see [`Test`].

mod args;
mod demo;
mod distributed;
mod keyboard;
mod load;
mod progress;
mod quick;
mod run;
mod script;
mod signals;
mod term;
mod test;

pub use args::{
    Cli, Command, RunArgs, StagesArg, WaitArg, parse_duration, parse_stages, parse_wait,
};
pub use test::Test;

/// Scenario files (the `aiotest-scenario` crate), as `aiotest run FILE.toml` reads them.
pub use aiotest_scenario as scenario;

/// Success.
pub const EXIT_OK: i32 = 0;
/// The run itself failed (setup failed, the summary could not be written, ...).
pub const EXIT_FAILED: i32 = 1;
/// Bad usage or bad input: nothing ran.
pub const EXIT_USAGE: i32 = 2;
/// A threshold failed.
pub const EXIT_THRESHOLDS: i32 = 99;
/// Exit code: the run was cut short by Ctrl-C or SIGTERM (k6's code for the same), so a
/// cancelled CI job never reads as a pass. The summary and exports are still written.
pub const EXIT_SIGNAL: i32 = 105;
/// Exit code: a script called `test.abort()` (k6's code for it).
pub const EXIT_SCRIPT_ABORTED: i32 = 108;

use clap::Parser;

/// Parses `args` (program name first) and runs the command on a new multi-threaded
/// runtime. Returns the exit code; the binary passes it to `std::process::exit`.
pub fn main_with_args<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    run_with(args, None)
}

fn run_with<I, T>(args: I, test: Option<Test>) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            // --help and --version are "errors" that print to stdout and succeed.
            let code = if e.use_stderr() { EXIT_USAGE } else { EXIT_OK };
            let _ = e.print();
            return code;
        }
    };
    let Command::Run(run_args) = cli.command;
    // -q: no logs at all; what ends a run badly is still said once, by the command.
    let level = if run_args.quiet {
        tracing_subscriber::filter::LevelFilter::OFF
    } else {
        run_args.loglevel.into()
    };
    // Logs go to stderr with the progress line; the summary owns stdout. Colours only on
    // a terminal, never in a pipe or a file, and not with NO_COLOR.
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(term::colour(term::Stream::Stderr))
        .with_target(false)
        .try_init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("aiotest: cannot start the async runtime: {e}");
            return EXIT_FAILED;
        }
    };
    runtime.block_on(run::run(run_args, test))
}
