//! The generator's own health, measured in every process that runs users: how late its
//! runtime runs a timer (a probe sleeps 10 ms at a time on the open model's `timerfd`
//! pacer and records how late it woke: the scheduling delay every request of the
//! process also pays), and the CPU the process uses. Both are named metrics
//! (`generator_delay`, a time trend in ms; `generator_cpu`, a gauge in percent of the
//! machine's cores), so every output shows them, a worker's carry its process id, and a
//! threshold can name them (`generator_delay p(99)<5`). [`HealthWatch`] says once, and
//! in the summary's notes, when the generator itself was the bottleneck.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aiotest_metrics::{Aggregation, Metric, MetricsCollector, Snapshot, Tags};
use tokio::time::Instant;

use crate::output::{IntervalView, Output, Verdict};
use crate::summary::Summary;

/// The trend of the probe's lateness, ms.
pub const GENERATOR_DELAY: &str = "generator_delay";
/// The gauge of the process' CPU use, percent of the machine's cores.
pub const GENERATOR_CPU: &str = "generator_cpu";
/// An interval whose delay p99 is over this is one where the generator slowed its
/// requests down.
pub const DELAY_BOUND_MS: f64 = 5.0;
/// CPU use over this share ...
pub const CPU_BOUND_PERCENT: f64 = 90.0;
/// ... for this many intervals in a row leaves the generator no room.
pub const CPU_BOUND_INTERVALS: u32 = 10;

/// How often the probe wakes.
const TICK: Duration = Duration::from_millis(10);

fn delay_metric() -> &'static Metric {
    static M: OnceLock<Metric> = OnceLock::new();
    M.get_or_init(|| Metric::time_trend(GENERATOR_DELAY).expect("a valid metric name"))
}

fn cpu_metric() -> &'static Metric {
    static M: OnceLock<Metric> = OnceLock::new();
    M.get_or_init(|| Metric::gauge(GENERATOR_CPU).expect("a valid metric name"))
}

fn wall_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// The process' CPU time so far (user + system), from `/proc/self/stat` (Linux; `None`
/// elsewhere).
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The fields after the command name (which may hold spaces), from the state on.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // USER_HZ, 100 on every Linux the project targets.
    Some(Duration::from_millis(ticks * 10))
}

/// Runs the probe until dropped: every 10 ms a sample of `generator_delay`, every second
/// one of `generator_cpu`, under `tags`, into `collector`.
pub(crate) async fn probe(collector: MetricsCollector, tags: Tags) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let mut cpu_from = (Instant::now(), cpu_time());
    // On the open model's fine timer: tokio's would add its own millisecond grain to
    // every sample, a third of the bound's headroom gone before the runtime is late.
    let pacer = crate::pacer::Pacer::new();
    let mut due = Instant::now() + TICK;
    loop {
        pacer.until(due).await;
        let now = Instant::now();
        let late = now.saturating_duration_since(due);
        let at = wall_us();
        let _ = collector.add_at(delay_metric(), late.as_secs_f64() * 1e3, &tags, at);
        if now.duration_since(cpu_from.0) >= Duration::from_secs(1) {
            let used = cpu_time();
            if let (Some(before), Some(after)) = (cpu_from.1, used) {
                let share = after.saturating_sub(before).as_secs_f64()
                    / now.duration_since(cpu_from.0).as_secs_f64()
                    / cores;
                let _ = collector.add_at(cpu_metric(), (share * 100.0).min(100.0), &tags, at);
            }
            cpu_from = (now, used);
        }
        // From now, not from the missed deadline: a late wake-up is one sample, not a
        // burst of catching up.
        due = now + TICK;
    }
}

/// Each process' delay p99 and CPU use over `interval`, by its tags (a worker's
/// `worker_pid`), ordered by them.
pub(crate) fn per_process(interval: &Snapshot) -> Vec<crate::series::GeneratorPoint> {
    let mut out: Vec<crate::series::GeneratorPoint> = Vec::new();
    let mut entry = |tags: &Tags| -> usize {
        let process: Vec<String> = tags.iter().map(|(k, v)| format!("{k}:{v}")).collect();
        let process = process.join(",");
        match out.iter().position(|g| g.process == process) {
            Some(i) => i,
            None => {
                out.push(crate::series::GeneratorPoint {
                    process,
                    delay_p99_ms: None,
                    cpu_percent: None,
                });
                out.len() - 1
            }
        }
    };
    let mut delays = Vec::new();
    if let Some(by_tags) = interval.metrics.series.get(GENERATOR_DELAY) {
        for (tags, series) in by_tags {
            delays.push((
                entry(tags),
                series.value(Aggregation::Percentile(99.0), 1.0),
            ));
        }
    }
    let mut cpus = Vec::new();
    if let Some(by_tags) = interval.metrics.series.get(GENERATOR_CPU) {
        for (tags, series) in by_tags {
            cpus.push((entry(tags), series.value(Aggregation::Max, 1.0)));
        }
    }
    for (i, d) in delays {
        out[i].delay_p99_ms = d;
    }
    for (i, c) in cpus {
        out[i].cpu_percent = c;
    }
    out.sort_by(|a, b| a.process.cmp(&b.process));
    out
}

/// Says when the generator was its own bottleneck: once on the terminal, and in the
/// summary's notes with the worst interval and when it was.
#[derive(Debug, Default)]
pub struct HealthWatch {
    /// The worst interval's delay p99, ms, its end (µs since the epoch), and its tags.
    worst: Option<(f64, u64, String)>,
    said_delay: bool,
    /// Intervals in a row over the CPU bound, the longest such run and when it ended.
    cpu_run: u32,
    cpu_worst: Option<(u32, u64)>,
    said_cpu: bool,
    started_us: u64,
}

impl HealthWatch {
    /// A watch with the documented bounds.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Output for HealthWatch {
    fn name(&self) -> &str {
        "generator health"
    }

    fn interval(&mut self, view: &IntervalView<'_>) -> Verdict {
        self.judge(view.start_us, view.end_us, view.interval);
        Verdict::Continue
    }

    fn summary(&mut self, summary: &mut Summary, _total: &Snapshot) {
        summary.notes.extend(self.notes());
    }
}

impl HealthWatch {
    /// Judges the interval from `start_us` to `end_us`.
    fn judge(&mut self, start_us: u64, end_us: u64, interval: &Snapshot) {
        if self.started_us == 0 {
            self.started_us = start_us;
        }
        let processes = per_process(interval);
        let cpu = processes
            .iter()
            .filter_map(|g| g.cpu_percent)
            .reduce(f64::max);
        let delays = processes
            .into_iter()
            .filter_map(|g| g.delay_p99_ms.map(|d| (d, g.process)));
        for (p99, tags) in delays {
            if p99 > DELAY_BOUND_MS {
                if self.worst.as_ref().is_none_or(|(w, _, _)| p99 > *w) {
                    self.worst = Some((p99, end_us, tags.clone()));
                }
                if !self.said_delay {
                    self.said_delay = true;
                    tracing::warn!(
                        "the generator is slowing its own requests: its runtime ran a timer {p99:.1} ms late (p99 of an interval; bound {DELAY_BOUND_MS} ms){}; latencies include that delay",
                        if tags.is_empty() {
                            String::new()
                        } else {
                            format!(" on {tags}")
                        }
                    );
                }
            }
        }
        match cpu {
            Some(c) if c > CPU_BOUND_PERCENT => {
                self.cpu_run += 1;
                if self.cpu_worst.is_none_or(|(n, _)| self.cpu_run > n) {
                    self.cpu_worst = Some((self.cpu_run, end_us));
                }
                if self.cpu_run >= CPU_BOUND_INTERVALS && !self.said_cpu {
                    self.said_cpu = true;
                    tracing::warn!(
                        "the generator has used over {CPU_BOUND_PERCENT}% of the machine's CPU for {} intervals: it may be the bottleneck",
                        self.cpu_run
                    );
                }
            }
            _ => self.cpu_run = 0,
        }
    }

    /// What the summary's notes say of the run.
    fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        let at = |us: u64| us.saturating_sub(self.started_us) as f64 / 1e6;
        if let Some((p99, end_us, tags)) = &self.worst {
            notes.push(format!(
                "the generator was a bottleneck: its runtime ran timers late, at worst {p99:.1} ms (p99 of the interval ending {:.0} s into the run{}; bound {DELAY_BOUND_MS} ms), and the latencies of that time include its delay",
                at(*end_us),
                if tags.is_empty() { String::new() } else { format!(", {tags}") }
            ));
        }
        if let Some((n, end_us)) = self.cpu_worst
            && n >= CPU_BOUND_INTERVALS
        {
            notes.push(format!(
                "the generator used over {CPU_BOUND_PERCENT}% of the machine's CPU for {n} intervals in a row (until {:.0} s into the run): it may have been the bottleneck",
                at(end_us)
            ));
        }
        notes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An interval of one second at `second` with these delay samples (ms) and this CPU
    /// use.
    fn interval(second: u64, delays: &[f64], cpu: f64) -> Snapshot {
        let mut s = Snapshot::default();
        let at = second * 1_000_000;
        for d in delays {
            s.metrics.add(delay_metric(), &Tags::new(), *d, at);
        }
        s.metrics.add(cpu_metric(), &Tags::new(), cpu, at);
        s
    }

    #[test]
    fn a_healthy_run_has_no_note() {
        let mut w = HealthWatch::new();
        for second in 1..=30 {
            // The timer wheel's own millisecond, and a rare late wake-up.
            let mut d = vec![1.0; 99];
            d.push(4.0);
            w.judge(
                second * 1_000_000,
                (second + 1) * 1_000_000,
                &interval(second, &d, 60.0),
            );
        }
        assert!(w.notes().is_empty(), "{:?}", w.notes());
    }

    #[test]
    fn a_late_runtime_is_noted_with_its_worst_interval() {
        let mut w = HealthWatch::new();
        w.judge(1_000_000, 2_000_000, &interval(1, &[1.0; 100], 50.0));
        let mut late = vec![1.0; 90];
        late.extend([30.0; 10]);
        w.judge(2_000_000, 3_000_000, &interval(2, &late, 50.0));
        let mut later = vec![1.0; 90];
        later.extend([12.0; 10]);
        w.judge(3_000_000, 4_000_000, &interval(3, &later, 50.0));
        let notes = w.notes();
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("at worst 30.0 ms"), "{}", notes[0]);
        assert!(notes[0].contains("ending 2 s into the run"), "{}", notes[0]);
    }

    #[test]
    fn cpu_over_the_bound_for_ten_intervals_is_noted_and_nine_is_not() {
        let mut w = HealthWatch::new();
        for second in 1..=9 {
            w.judge(
                second * 1_000_000,
                (second + 1) * 1_000_000,
                &interval(second, &[1.0], 97.0),
            );
        }
        w.judge(10_000_000, 11_000_000, &interval(10, &[1.0], 40.0));
        assert!(w.notes().is_empty(), "{:?}", w.notes());
        for second in 11..=21 {
            w.judge(
                second * 1_000_000,
                (second + 1) * 1_000_000,
                &interval(second, &[1.0], 95.0),
            );
        }
        let notes = w.notes();
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].contains("for 11 intervals in a row"),
            "{}",
            notes[0]
        );
    }
}
