//! The live progress line: an output of the run, fed every closed interval.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use aiotest_core::BoxError;
use aiotest_core::scenario::human_duration;
use aiotest_core::state::RunnerState;
use aiotest_runner::Summary;
use aiotest_runner::output::{IntervalView, Output, Verdict};

use crate::term::{self, Stream};

/// One refreshing line on a terminal, never wider than it; a plain line every 5
/// intervals otherwise; nothing when quiet.
pub(crate) struct Progress {
    tty: bool,
    quiet: bool,
    /// Columns to fit on a terminal (`None`: unknown, the line is not cut).
    width: Option<usize>,
    intervals: u64,
    /// Wall time spent paused so far, to the interval.
    paused_for: Duration,
    printed: bool,
}

impl Progress {
    pub(crate) fn new(quiet: bool) -> Self {
        let tty = std::io::stderr().is_terminal();
        Progress {
            tty,
            quiet,
            width: if tty && !quiet {
                term::width(Stream::Stderr)
            } else {
                None
            },
            intervals: 0,
            paused_for: Duration::ZERO,
            printed: false,
        }
    }
}

/// What one progress line shows.
#[derive(Debug, Clone, Default)]
pub(crate) struct Figures {
    /// Run time, pauses excluded.
    pub(crate) run_time: Duration,
    /// The planned duration, when known.
    pub(crate) planned: Option<Duration>,
    /// Wall time spent paused so far.
    pub(crate) paused_for: Duration,
    pub(crate) paused: bool,
    pub(crate) users: u64,
    pub(crate) rps: f64,
    pub(crate) p95_us: u64,
    pub(crate) failures: u64,
    pub(crate) requests: u64,
}

impl Figures {
    /// The line, fitted to `width` columns when given: the separators shrink first, then
    /// fields are left off from the least telling one (the request count) on.
    pub(crate) fn line(&self, width: Option<usize>) -> String {
        let mut clock = match self.planned {
            Some(p) => format!("[{}/{}]", clock(self.run_time), human_duration(p)),
            None => format!("[{}]", clock(self.run_time)),
        };
        if self.paused {
            clock.push_str(" PAUSED");
        } else if !self.paused_for.is_zero() {
            // The clock stands still while paused: say for how long it did.
            clock.push_str(&format!(" (paused {})", clock_whole(self.paused_for)));
        }
        let fail_pct = if self.requests == 0 {
            0.0
        } else {
            100.0 * self.failures as f64 / self.requests as f64
        };
        let fields = [
            clock,
            plural(self.users, "user", "users"),
            format!("{} req/s", rate(self.rps)),
            format!("p95 {}", latency(self.p95_us)),
            format!("{fail_pct:.2}% failed"),
            format!("{} requests", self.requests),
        ];
        let join = |keep: usize, sep: &str| {
            let mut line = fields[0].clone();
            if keep > 1 {
                line.push(' ');
                line.push_str(&fields[1..keep].join(sep));
            }
            line
        };
        let Some(width) = width else {
            return join(fields.len(), " | ");
        };
        // The last column stays free: a full line would wrap on some terminals.
        let room = width.saturating_sub(1);
        for keep in (1..=fields.len()).rev() {
            for sep in [" | ", "  "] {
                let line = join(keep, sep);
                if line.chars().count() <= room {
                    return line;
                }
            }
        }
        fields[0].chars().take(room).collect()
    }
}

/// Run time: tenths of a second under a minute, then `1m05s`, `1h02m03s`.
fn clock(d: Duration) -> String {
    if d < Duration::from_secs(60) {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        clock_whole(d)
    }
}

fn clock_whole(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3_600, s % 3_600 / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, m, s) => format!("{h}h{m:02}m{s:02}s"),
    }
}

/// A latency in the unit that fits it: `812µs`, `1.23ms`, `45.6ms`, `123ms`, `1.23s`.
pub(crate) fn latency(us: u64) -> String {
    let us_f = us as f64;
    match us {
        0..1_000 => format!("{us}µs"),
        1_000..10_000 => format!("{:.2}ms", us_f / 1e3),
        10_000..100_000 => format!("{:.1}ms", us_f / 1e3),
        100_000..1_000_000 => format!("{:.0}ms", us_f / 1e3),
        1_000_000..10_000_000 => format!("{:.2}s", us_f / 1e6),
        _ => format!("{:.1}s", us_f / 1e6),
    }
}

/// A rate with the precision it needs: `0.5`, `12.3`, `86443`.
fn rate(r: f64) -> String {
    if r < 100.0 {
        format!("{r:.1}")
    } else {
        format!("{r:.0}")
    }
}

impl Output for Progress {
    fn name(&self) -> &str {
        "progress"
    }

    fn interval(&mut self, view: &IntervalView<'_>) -> Verdict {
        self.intervals += 1;
        if view.state == RunnerState::Paused {
            self.paused_for += Duration::from_micros(view.end_us.saturating_sub(view.start_us));
        }
        if self.quiet || (!self.tty && !self.intervals.is_multiple_of(5)) {
            return Verdict::Continue;
        }
        let live = view.live;
        let figures = Figures {
            run_time: view.run_time,
            planned: view.planned,
            paused_for: self.paused_for,
            paused: view.state == RunnerState::Paused,
            users: view.users.iter().map(|(_, u)| u).sum(),
            rps: live.totals.rps,
            p95_us: live.totals.p95_us,
            failures: live.total_failures,
            requests: live.total_requests,
        };
        let line = figures.line(self.width);
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

/// `n` and the noun that goes with it: `1 user`, `2 users`.
pub(crate) fn plural(n: impl Into<u64>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn busy() -> Figures {
        Figures {
            run_time: Duration::from_millis(6_000),
            planned: Some(Duration::from_secs(6)),
            users: 10,
            rps: 86_442.7,
            p95_us: 120,
            requests: 519_657,
            ..Figures::default()
        }
    }

    #[test]
    fn the_line_fits_80_columns_with_large_figures() {
        let f = busy();
        assert_eq!(
            f.line(None),
            "[6.0s/6s] 10 users | 86443 req/s | p95 120µs | 0.00% failed | 519657 requests"
        );
        let big = Figures {
            run_time: Duration::from_secs(3_725),
            planned: Some(Duration::from_secs(7_200)),
            paused_for: Duration::from_secs(65),
            users: 1_000_000,
            rps: 1_234_567.0,
            p95_us: 12_345_678,
            failures: 1,
            requests: 12_345_678_901,
            ..Figures::default()
        };
        for width in [40, 60, 80, 100] {
            let line = big.line(Some(width));
            assert!(line.chars().count() < width, "{width}: {line}");
            assert!(line.starts_with("[1h02m05s/2h] (paused 1m05s)"), "{line}");
        }
        // Wide enough: everything, with the separators.
        assert!(big.line(Some(200)).ends_with(" | 12345678901 requests"));
        // At 80 columns the busy line keeps every field.
        assert!(f.line(Some(80)).ends_with("519657 requests"));
    }

    #[test]
    fn the_clock_shows_run_time_over_plan_and_marks_pauses() {
        let mut f = busy();
        f.planned = None;
        f.run_time = Duration::from_secs(75);
        assert!(
            f.line(None).starts_with("[1m15s] 10 users | "),
            "{}",
            f.line(None)
        );
        f.paused = true;
        assert!(f.line(None).starts_with("[1m15s] PAUSED 10 users | "));
    }

    #[test]
    fn latencies_take_the_unit_that_fits() {
        let cases = [
            (812, "812µs"),
            (1_234, "1.23ms"),
            (45_600, "45.6ms"),
            (123_400, "123ms"),
            (1_234_000, "1.23s"),
            (61_000_000, "61.0s"),
        ];
        for (us, want) in cases {
            assert_eq!(latency(us), want);
        }
    }
}
