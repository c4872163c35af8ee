//! The `aiotest` command line, and the same command line for your own Rust binaries.
//!
//! **Status:** the `run` command arrives with the local runner. Today the binary answers
//! `--version` and `--help` and refuses everything else with exit code 2, so nothing
//! pretends to run a test.
//!
//! **Who should depend on it:** Rust binaries that register their user types and want
//! aiotest's full command line from one call in `main` (coming with the runner).

use std::io::Write;

/// Exit code for bad usage or bad input.
pub const EXIT_USAGE: i32 = 2;

const HELP: &str = "aiotest: a load-testing framework

usage:
  aiotest --version    print the version
  aiotest --help       print this help

`aiotest run` is not available yet: the local runner is under construction.
";

/// Runs the command line `args` (without the program name), writing to `out` and `err`.
/// Returns the process exit code; the binary passes it to `std::process::exit`.
pub fn run_cli<I, S>(args: I, out: &mut dyn Write, err: &mut dyn Write) -> i32
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let args: Vec<String> = args.into_iter().map(|s| s.as_ref().to_owned()).collect();
    // Write errors (a closed pipe) are not worth a panic: the exit code still tells.
    match args.first().map(String::as_str) {
        Some("--version" | "-V") => {
            let _ = writeln!(out, "aiotest {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Some("--help" | "-h") | None => {
            let _ = write!(out, "{HELP}");
            0
        }
        Some("run") => {
            let _ = writeln!(
                err,
                "aiotest: `run` is not available yet: the local runner is under construction"
            );
            EXIT_USAGE
        }
        Some(other) => {
            let _ = writeln!(
                err,
                "aiotest: unknown command `{other}`; try `aiotest --help`"
            );
            EXIT_USAGE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> (i32, String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run_cli(args, &mut out, &mut err);
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn version_and_help_succeed() {
        let (code, out, _) = run(&["--version"]);
        assert_eq!((code, out.trim()), (0, "aiotest 0.1.0"));
        let (code, out, _) = run(&[]);
        assert_eq!(code, 0);
        assert!(out.contains("usage:"));
    }

    #[test]
    fn unknown_commands_and_run_are_refused_with_exit_2() {
        let (code, _, err) = run(&["frobnicate"]);
        assert_eq!(code, EXIT_USAGE);
        assert!(err.contains("unknown command `frobnicate`"), "{err}");
        let (code, _, err) = run(&["run", "--url", "http://127.0.0.1:1"]);
        assert_eq!(code, EXIT_USAGE);
        assert!(err.contains("not available yet"), "{err}");
    }
}
