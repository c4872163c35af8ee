//! The live progress line, and live checks of `:abort` thresholds.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use aiotest_core::state::RunnerState;
use aiotest_runner::{RunnerHandle, Threshold};
use tokio::time::Instant;

/// Prints progress every second until the run ends: one refreshing line on a terminal,
/// a plain line every 5 s otherwise, nothing when `quiet`. Aborting thresholds are checked
/// every second; one that fails stops the run.
pub(crate) async fn report(
    handle: RunnerHandle,
    total: Option<Duration>,
    thresholds: Vec<Threshold>,
    quiet: bool,
) {
    let tty = std::io::stderr().is_terminal();
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut n = 0u64;
    loop {
        tick.tick().await;
        n += 1;
        let state = handle.state();
        if matches!(state, RunnerState::Stopping | RunnerState::Quitting)
            || (n > 1 && state == RunnerState::Ready)
        {
            break;
        }
        let elapsed = started.elapsed().as_secs_f64();
        for t in thresholds.iter().filter(|t| t.aborts()) {
            let verdict = t.evaluate(&handle.total(), elapsed);
            if !verdict.ok {
                eprintln!(
                    "\naiotest: threshold `{}` failed (value {}); stopping",
                    verdict.expr, verdict.value
                );
                handle.stop().await;
                return;
            }
        }
        if quiet || (!tty && !n.is_multiple_of(5)) {
            continue;
        }
        let live = handle.live();
        let users: u64 = handle.users().iter().map(|(_, u)| u).sum();
        let fail_pct = if live.total_requests == 0 {
            0.0
        } else {
            100.0 * live.total_failures as f64 / live.total_requests as f64
        };
        let of = total.map_or(String::new(), |t| format!("/{:.0}s", t.as_secs_f64()));
        let paused = if state == RunnerState::Paused {
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
        let _ = if tty {
            write!(err, "\r\x1b[2K{line}")
        } else {
            writeln!(err, "{line}")
        };
        let _ = err.flush();
    }
    if tty && !quiet {
        eprintln!();
    }
}
