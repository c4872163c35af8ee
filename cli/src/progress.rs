//! The live progress line: an output of the run, fed every closed interval.

use std::io::{IsTerminal, Write};

use aiotest_core::BoxError;
use aiotest_core::state::RunnerState;
use aiotest_runner::Summary;
use aiotest_runner::output::{IntervalView, Output, Verdict};

/// One refreshing line on a terminal, a plain line every 5 intervals otherwise, nothing
/// when quiet.
pub(crate) struct Progress {
    tty: bool,
    quiet: bool,
    intervals: u64,
    printed: bool,
}

impl Progress {
    pub(crate) fn new(quiet: bool) -> Self {
        Progress {
            tty: std::io::stderr().is_terminal(),
            quiet,
            intervals: 0,
            printed: false,
        }
    }
}

impl Output for Progress {
    fn name(&self) -> &str {
        "progress"
    }

    fn interval(&mut self, view: &IntervalView<'_>) -> Verdict {
        self.intervals += 1;
        if self.quiet || (!self.tty && !self.intervals.is_multiple_of(5)) {
            return Verdict::Continue;
        }
        let live = view.live;
        let users: u64 = view.users.iter().map(|(_, u)| u).sum();
        let fail_pct = if live.total_requests == 0 {
            0.0
        } else {
            100.0 * live.total_failures as f64 / live.total_requests as f64
        };
        let elapsed = view.run_time.as_secs_f64();
        let of = view
            .planned
            .map_or(String::new(), |t| format!("/{:.0}s", t.as_secs_f64()));
        let paused = if view.state == RunnerState::Paused {
            " PAUSED"
        } else {
            ""
        };
        let line = format!(
            "[{elapsed:>6.1}s{of}]{paused} users {users} | {:.1} req/s | p95 {:.2} ms | failures {fail_pct:.2}% | requests {}",
            live.totals.rps,
            live.totals.p95_us as f64 / 1_000.0,
            live.total_requests,
        );
        let mut err = std::io::stderr().lock();
        let _ = if self.tty {
            write!(err, "\r\x1b[2K{line}")
        } else {
            writeln!(err, "{line}")
        };
        let _ = err.flush();
        self.printed = true;
        Verdict::Continue
    }

    fn end(&mut self, _: &Summary) -> Result<(), BoxError> {
        if self.tty && self.printed {
            eprintln!();
        }
        Ok(())
    }
}
