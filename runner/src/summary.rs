//! The end-of-run summary: a table per endpoint plus totals, and its JSON export.
//!
//! Everything is computed from the merged snapshot, so percentiles are the HDR
//! histogram's (within 0.1%), never averages of per-user percentiles.

use crate::escape::printable;
use crate::table::Table;

mod tables;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use aiotest_core::scenario::Scenario;
use aiotest_metrics::{EndpointStats, ErrorCategory, Snapshot};
use serde::Serialize;

use crate::threshold::ThresholdResult;

/// One row of the summary: an endpoint, or the totals.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// The scenario.
    pub scenario: String,
    /// The request name (`Total` for the totals row), with its tags as k6 writes a
    /// sub-metric when it has any (`/pay {group:::checkout}`).
    pub name: String,
    /// The request's own tags (the group among them), when it has any.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// The method (empty for the totals row).
    pub method: String,
    /// Requests made.
    pub requests: u64,
    /// Requests failed.
    pub failures: u64,
    /// Requests still in flight when the graceful stop period ended: counted in
    /// `requests` and `failures`, with no latency (outside every percentile).
    pub interrupted: u64,
    /// Attempts that were retries.
    pub retries: u64,
    /// Requests whose response a check judged.
    pub checks: u64,
    /// Checks that failed (failures of category `check_failed`).
    pub checks_failed: u64,
    /// Requests per second over the run time.
    pub rps: f64,
    /// Shortest duration, ms. `None` (null in JSON, `-` in tables) when no request of the row has a
    /// duration (every one failed before an exchange, or was interrupted).
    pub min_ms: Option<f64>,
    /// Median, ms. `None` (null in JSON, `-` in tables) when no request of the row has a
    /// duration (every one failed before an exchange, or was interrupted).
    pub p50_ms: Option<f64>,
    /// 90th percentile, ms. `None` (null in JSON, `-` in tables) when no request of the row has a
    /// duration (every one failed before an exchange, or was interrupted).
    pub p90_ms: Option<f64>,
    /// 95th percentile, ms. `None` (null in JSON, `-` in tables) when no request of the row has a
    /// duration (every one failed before an exchange, or was interrupted).
    pub p95_ms: Option<f64>,
    /// 99th percentile, ms. `None` (null in JSON, `-` in tables) when no request of the row has a
    /// duration (every one failed before an exchange, or was interrupted).
    pub p99_ms: Option<f64>,
    /// Longest duration, ms. `None` (null in JSON, `-` in tables) when no request of the row has a
    /// duration (every one failed before an exchange, or was interrupted).
    pub max_ms: Option<f64>,
    /// Mean duration, ms. `None` (null in JSON, `-` in tables) when no request of the row has a
    /// duration (every one failed before an exchange, or was interrupted).
    pub mean_ms: Option<f64>,
    /// Bytes sent.
    pub bytes_sent: u64,
    /// Bytes received.
    pub bytes_received: u64,
    /// Open-model (arrival-rate) requests: the plain service time's median, ms. The
    /// durations above then count from each iteration's intended start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_p50_ms: Option<f64>,
    /// Service time, 90th percentile, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_p90_ms: Option<f64>,
    /// Service time, 95th percentile, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_p95_ms: Option<f64>,
    /// Service time, 99th percentile, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_p99_ms: Option<f64>,
    /// Longest service time, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_max_ms: Option<f64>,
}

fn ms(us: u64) -> f64 {
    us as f64 / 1_000.0
}

impl Row {
    /// The row for `stats` over `secs` seconds.
    pub fn new(scenario: &str, name: &str, method: &str, stats: &EndpointStats, secs: f64) -> Self {
        let timed = stats.timed() > 0;
        Row {
            scenario: scenario.to_owned(),
            name: name.to_owned(),
            tags: BTreeMap::new(),
            method: method.to_owned(),
            requests: stats.requests,
            failures: stats.failures,
            interrupted: stats.interrupted(),
            retries: stats.retries,
            checks: stats.checks,
            checks_failed: stats.failures_by_category[ErrorCategory::CheckFailed.index()],
            rps: if secs > 0.0 {
                stats.requests as f64 / secs
            } else {
                0.0
            },
            min_ms: timed.then(|| ms(stats.min_us.unwrap_or(0))),
            p50_ms: timed.then(|| ms(stats.percentile_us(0.50))),
            p90_ms: timed.then(|| ms(stats.percentile_us(0.90))),
            p95_ms: timed.then(|| ms(stats.percentile_us(0.95))),
            p99_ms: timed.then(|| ms(stats.percentile_us(0.99))),
            max_ms: timed.then(|| ms(stats.max_us.unwrap_or(0))),
            mean_ms: timed.then(|| stats.mean_us() / 1_000.0),
            bytes_sent: stats.bytes_sent,
            bytes_received: stats.bytes_received,
            service_p50_ms: stats.service.as_ref().map(|t| ms(t.percentile_us(0.50))),
            service_p90_ms: stats.service.as_ref().map(|t| ms(t.percentile_us(0.90))),
            service_p95_ms: stats.service.as_ref().map(|t| ms(t.percentile_us(0.95))),
            service_p99_ms: stats.service.as_ref().map(|t| ms(t.percentile_us(0.99))),
            service_max_ms: stats.service.as_ref().map(|t| ms(t.max_us)),
        }
    }
}

/// What a run was, for reports: the command, when it ran, its scenarios.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunMeta {
    /// The command that started it, when known (the command line puts its own).
    pub command: Option<String>,
    /// Local or master.
    pub role: String,
    /// When it started (outputs started), µs since the Unix epoch.
    pub started_us: u64,
    /// When it ended, once it has.
    pub ended_us: Option<u64>,
    /// Its scenarios, in the test's order.
    pub scenarios: Vec<ScenarioInfo>,
}

/// A scenario as the test defines it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScenarioInfo {
    /// Its name.
    pub name: String,
    /// Its executor (k6's name).
    pub executor: String,
    /// The executor's settings in a line (`50 per 1s for 5s, 2 to 20 users`).
    pub settings: String,
    /// The user types it runs.
    pub user_types: Vec<String>,
    /// When it starts, seconds into the run.
    pub start_time_s: f64,
    /// Its graceful stop, seconds.
    pub graceful_stop_s: f64,
    /// Its tags.
    pub tags: Vec<(String, String)>,
}

impl RunMeta {
    /// The run of `scenarios`, starting at `started_us`.
    pub fn new(
        command: Option<String>,
        role: &str,
        scenarios: &[Scenario],
        started_us: u64,
    ) -> Self {
        RunMeta {
            command,
            role: role.to_owned(),
            started_us,
            ended_us: None,
            scenarios: scenarios
                .iter()
                .map(|sc| ScenarioInfo {
                    name: sc.name().to_owned(),
                    executor: sc.executor().kind().to_owned(),
                    settings: sc.executor().to_string(),
                    user_types: sc
                        .user_types()
                        .iter()
                        .map(|t| t.name().to_owned())
                        .collect(),
                    start_time_s: sc.starts_at().as_secs_f64(),
                    graceful_stop_s: sc.graceful_stop_period().as_secs_f64(),
                    tags: sc.tags().to_vec(),
                })
                .collect(),
        }
    }
}

/// A scenario's iterations.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScenarioRow {
    /// The scenario.
    pub name: String,
    /// Its executor (k6's name).
    pub executor: String,
    /// Its tags, as the test gave them.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Iterations run to their end.
    pub iterations: u64,
    /// Arrival-rate iterations that were due and found no free user.
    pub dropped_iterations: u64,
    /// Iterations cut off by the end of a graceful stop period.
    pub interrupted_iterations: u64,
    /// Iterations per second over the run time.
    pub iterations_per_s: f64,
    /// Iteration duration, median, ms.
    pub iteration_p50_ms: f64,
    /// Iteration duration, 95th percentile, ms.
    pub iteration_p95_ms: f64,
    /// Longest iteration, ms.
    pub iteration_max_ms: f64,
    /// Mean iteration, ms.
    pub iteration_mean_ms: f64,
}

/// A distinct error and how often it happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorRow {
    /// The request name.
    pub name: String,
    /// The method.
    pub method: String,
    /// The error category.
    pub category: String,
    /// The message (`(other messages)` for the ones not kept individually).
    pub message: String,
    /// How many failures.
    pub count: u64,
}

/// A named check's verdicts (k6's `checks`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckRow {
    /// The check's name.
    pub name: String,
    /// Responses that passed it.
    pub passes: u64,
    /// Responses that failed it.
    pub fails: u64,
    /// The share that passed, in % (0 when none was judged).
    pub rate: f64,
}

/// One named metric (all its tag sets together, `tags` empty) or one of its tag sets.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricRow {
    /// The metric's name.
    pub name: String,
    /// `counter`, `gauge`, `rate` or `trend`.
    pub kind: String,
    /// Whether its values are milliseconds (a time trend).
    pub time: bool,
    /// The tag set of this row; `None` for the metric's whole (every tag set together).
    pub tags: Option<BTreeMap<String, String>>,
    /// Samples taken.
    pub samples: u64,
    /// Its figures by aggregation: `count` and `rate` (per second) of a counter; `value`,
    /// `min`, `max` of a gauge; `rate` (0 to 1) of a rate; `avg`, `min`, `med`, `max`,
    /// `p(90)`, `p(95)`, `p(99)` of a trend.
    pub values: BTreeMap<String, f64>,
}

/// Tag sets listed per metric in the printed summary (the JSON export has them all).
const TAG_SETS_SHOWN: usize = 10;

/// Error messages listed in the printed summary (the JSON export has them all).
const ERRORS_SHOWN: usize = 20;

impl MetricRow {
    fn new(
        name: &str,
        tags: Option<&aiotest_metrics::Tags>,
        s: &aiotest_metrics::Series,
        secs: f64,
    ) -> Self {
        use aiotest_metrics::{Aggregation as A, MetricKind};
        let aggs: &[(&str, A)] = match s.kind() {
            MetricKind::Counter => &[("count", A::Count), ("rate", A::Rate)],
            MetricKind::Gauge => &[("value", A::Value), ("min", A::Min), ("max", A::Max)],
            MetricKind::Rate => &[("rate", A::Rate)],
            MetricKind::Trend => &[
                ("avg", A::Avg),
                ("min", A::Min),
                ("med", A::Med),
                ("max", A::Max),
                ("p(90)", A::Percentile(90.0)),
                ("p(95)", A::Percentile(95.0)),
                ("p(99)", A::Percentile(99.0)),
            ],
        };
        let values = aggs
            .iter()
            .filter_map(|(label, a)| {
                s.value(*a, secs)
                    .map(|v| ((*label).to_owned(), (v * 1_000.0).round() / 1_000.0))
            })
            .collect();
        MetricRow {
            name: name.to_owned(),
            kind: s.kind().as_str().to_owned(),
            time: s.time,
            tags: tags.map(|t| {
                t.iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect()
            }),
            samples: s.samples,
            values,
        }
    }

    /// Its tag set as `k:v` pairs joined by `sep`; `None` for the metric's whole.
    pub(crate) fn tags_joined(&self, sep: &str) -> Option<String> {
        let tags = self.tags.as_ref()?;
        let pairs: Vec<String> = tags.iter().map(|(k, v)| format!("{k}:{v}")).collect();
        Some(pairs.join(sep))
    }
}

/// The run's summary, as printed and exported.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Run time in seconds, pauses excluded.
    pub duration_s: f64,
    /// All endpoints together.
    pub totals: Row,
    /// Per endpoint, ordered by scenario, name, method.
    pub endpoints: Vec<Row>,
    /// Per scenario: its iterations.
    pub scenarios: Vec<ScenarioRow>,
    /// Named checks, by name.
    pub checks: Vec<CheckRow>,
    /// Named metrics, by name: each metric's whole, then each of its tag sets.
    pub metrics: Vec<MetricRow>,
    /// Failures by message, most frequent first.
    pub errors: Vec<ErrorRow>,
    /// Threshold verdicts, in the order given.
    pub thresholds: Vec<ThresholdResult>,
    /// What the figures leave out, and why: interrupted requests, users cancelled,
    /// workers whose last metrics never arrived, a run that ended early.
    pub notes: Vec<String>,
}

impl Summary {
    /// The summary of `snapshot` over `run_time`.
    pub fn new(snapshot: &Snapshot, run_time: Duration) -> Self {
        let secs = run_time.as_secs_f64();
        let endpoints: Vec<Row> = snapshot
            .endpoints
            .iter()
            .map(|(k, s)| Row {
                tags: k
                    .tags
                    .iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
                ..Row::new(&k.scenario, &k.label(), &k.method, s, secs)
            })
            .collect();
        let mut errors = Vec::new();
        for (k, s) in &snapshot.endpoints {
            for m in &s.errors.kept {
                errors.push(ErrorRow {
                    name: k.label().into_owned(),
                    method: k.method.clone(),
                    category: m.category.as_str().to_owned(),
                    message: m.message.clone(),
                    count: m.count,
                });
            }
            if s.errors.other > 0 {
                // Failures without a kept message: say their categories' share instead.
                let kept_by_cat = |c: ErrorCategory| -> u64 {
                    s.errors
                        .kept
                        .iter()
                        .filter(|m| m.category == c)
                        .map(|m| m.count)
                        .sum()
                };
                for c in ErrorCategory::ALL {
                    let n = s.failures_by_category[c.index()].saturating_sub(kept_by_cat(c));
                    if n > 0 {
                        errors.push(ErrorRow {
                            name: k.label().into_owned(),
                            method: k.method.clone(),
                            category: c.as_str().to_owned(),
                            message: "(other messages)".to_owned(),
                            count: n,
                        });
                    }
                }
            }
        }
        errors.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
        let scenarios = snapshot
            .scenarios()
            .into_iter()
            .map(|(name, it)| ScenarioRow {
                name,
                executor: String::new(),
                tags: BTreeMap::new(),
                iterations: it.iterations,
                dropped_iterations: it.dropped,
                interrupted_iterations: it.interrupted,
                iterations_per_s: if secs > 0.0 {
                    it.iterations as f64 / secs
                } else {
                    0.0
                },
                iteration_p50_ms: ms(it.percentile_us(0.50)),
                iteration_p95_ms: ms(it.percentile_us(0.95)),
                iteration_max_ms: ms(it.max_us.unwrap_or(0)),
                iteration_mean_ms: it.mean_us() / 1_000.0,
            })
            .collect();
        let checks = snapshot
            .checks()
            .into_iter()
            .map(|(name, c)| CheckRow {
                name,
                passes: c.passes,
                fails: c.fails,
                rate: (c.rate() * 100_000.0).round() / 1_000.0,
            })
            .collect();
        let mut metrics = Vec::new();
        let mut notes = Vec::new();
        // k6's built-in metrics first, each as a whole (their tag sets are one per
        // endpoint: the endpoint table has them, thresholds read them).
        let builtin = aiotest_metrics::builtin_metrics(snapshot, &BTreeMap::new(), |_| true);
        for name in aiotest_metrics::BUILTIN_METRICS {
            let whole = builtin.select(name, &aiotest_metrics::Tags::new());
            let Some(whole) = whole.filter(|w| w.samples > 0) else {
                continue;
            };
            let none_dropped = name == "dropped_iterations"
                && whole.value(aiotest_metrics::Aggregation::Count, secs) == Some(0.0);
            if !none_dropped {
                metrics.push(MetricRow::new(name, None, &whole, secs));
            }
        }
        for (name, by_tags) in &snapshot.metrics.series {
            if aiotest_metrics::is_builtin(name) {
                continue; // listed above, from the built-in view
            }
            let all = aiotest_metrics::Tags::new();
            if let Some(whole) = snapshot.metrics.select(name, &all) {
                metrics.push(MetricRow::new(name, None, &whole, secs));
            }
            if by_tags.len() > 1 || by_tags.keys().any(|t| !t.is_empty()) {
                for (tags, series) in by_tags {
                    metrics.push(MetricRow::new(name, Some(tags), series, secs));
                }
            }
        }
        for (name, n) in snapshot.metrics.folded() {
            notes.push(format!(
                "{n} samples of metric `{}` are counted under {{folded:true}}: it had more than {} tag sets (a tag whose value changes with every sample?); its totals are exact, its figures per tag set leave them out",
                printable(name),
                aiotest_metrics::MAX_TAG_SETS
            ));
        }
        for (name, n) in &snapshot.metrics.conflicts {
            notes.push(format!(
                "{n} samples of metric `{}` are left out: the name was first used for a {}, and they were of another kind",
                printable(name),
                snapshot.metrics.kind_of(name).map_or("metric", |k| k.as_str())
            ));
        }
        Summary {
            duration_s: secs,
            totals: Row::new("", "Total", "", &snapshot.total(), secs),
            endpoints,
            scenarios,
            checks,
            metrics,
            errors,
            thresholds: Vec::new(),
            notes,
        }
    }

    /// Names each scenario's executor (k6's name) and tags, and lists scenarios that ran
    /// no iteration too.
    pub fn with_scenarios(mut self, scenarios: &[ScenarioInfo]) -> Self {
        for sc in scenarios {
            let tags: BTreeMap<String, String> = sc.tags.iter().cloned().collect();
            match self.scenarios.iter_mut().find(|s| s.name == sc.name) {
                Some(row) => {
                    row.executor = sc.executor.clone();
                    row.tags = tags;
                }
                None => self.scenarios.push(ScenarioRow {
                    name: sc.name.clone(),
                    executor: sc.executor.clone(),
                    tags,
                    iterations: 0,
                    dropped_iterations: 0,
                    interrupted_iterations: 0,
                    iterations_per_s: 0.0,
                    iteration_p50_ms: 0.0,
                    iteration_p95_ms: 0.0,
                    iteration_max_ms: 0.0,
                    iteration_mean_ms: 0.0,
                }),
            }
        }
        self.scenarios.sort_by(|a, b| a.name.cmp(&b.name));
        self
    }

    /// Whether every threshold passed (true without thresholds).
    pub fn thresholds_ok(&self) -> bool {
        self.thresholds.iter().all(|t| t.ok)
    }

    /// The JSON export (`--summary-export`).
    pub fn to_json(&self) -> String {
        // Serializing plain structs of numbers and strings cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// How the scenario named `scenario` runs (its executor, as displayed), if known.
    pub(crate) fn executor_of(&self, scenario: &str) -> Option<&str> {
        self.scenarios
            .iter()
            .find(|s| s.name == scenario)
            .map(|s| s.executor.as_str())
    }

    /// The table printed at the end of a run, in full (every column): for pipes, files
    /// and wide terminals.
    pub fn render_table(&self) -> String {
        self.render_table_for(None)
    }

    /// The table fitted to `width` columns when given: every column when they fit, else
    /// the narrow layout (requests, failures, rate, p50, p95, p99, max); a name too long
    /// for its column goes on a line of its own above its figures, never cut.
    pub fn render_table_for(&self, width: Option<usize>) -> String {
        let mut out = self
            .endpoints_table(self.latency_unit(), true)
            .to_text(width);
        let _ = writeln!(out, "Run time {:.1} s", self.duration_s);
        let t = &self.totals;
        if t.checks > 0 {
            let _ = writeln!(
                out,
                "Request checks {} passed, {} failed ({:.2}% passed)",
                t.checks - t.checks_failed.min(t.checks),
                t.checks_failed,
                100.0 * (t.checks - t.checks_failed.min(t.checks)) as f64 / t.checks as f64
            );
        }
        // The other tables under a title each, indented.
        let inner = width.map(|w| w.saturating_sub(2));
        let mut section = |title: &str, table: Table| {
            if table.is_empty() {
                return;
            }
            let _ = writeln!(out, "\n{title}:");
            for line in table.to_text(inner).lines() {
                let _ = writeln!(out, "  {line}");
            }
        };
        section("Checks", self.checks_table());
        section("Metrics", self.metrics_table(Some(TAG_SETS_SHOWN)));
        if self
            .scenarios
            .iter()
            .any(|s| s.iterations + s.dropped_iterations + s.interrupted_iterations > 0)
        {
            section("Iterations", self.scenarios_table(None));
        }
        section("Errors", self.errors_table(Some(ERRORS_SHOWN)));
        section("Thresholds", self.thresholds_table());
        if !self.notes.is_empty() {
            let _ = writeln!(out, "\nNotes:");
            for n in &self.notes {
                let _ = writeln!(out, "  {n}");
            }
        }
        out
    }
}

/// The unit of every duration in one table, picked so that the largest fits: µs when
/// all are under a millisecond, ms up to 100 s, s beyond.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatencyUnit {
    /// Microseconds.
    Micros,
    /// Milliseconds.
    Millis,
    /// Seconds.
    Secs,
}

impl LatencyUnit {
    pub(crate) fn of(max_ms: impl Iterator<Item = f64>) -> Self {
        let max = max_ms.fold(0.0, f64::max);
        if max < 1.0 {
            LatencyUnit::Micros
        } else if max < 100_000.0 {
            LatencyUnit::Millis
        } else {
            LatencyUnit::Secs
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            LatencyUnit::Micros => "µs",
            LatencyUnit::Millis => "ms",
            LatencyUnit::Secs => "s",
        }
    }

    /// A duration, or `-` for none.
    pub(crate) fn show_opt(self, ms: Option<f64>) -> String {
        ms.map_or_else(|| "-".to_owned(), |ms| self.show(ms))
    }

    pub(crate) fn show(self, ms: f64) -> String {
        match self {
            LatencyUnit::Micros => format!("{:.0}", ms * 1_000.0),
            LatencyUnit::Millis => format!("{ms:.2}"),
            LatencyUnit::Secs => format!("{:.2}", ms / 1_000.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiotest_metrics::RequestRecord;

    fn snapshot() -> Snapshot {
        let mut s = Snapshot::new();
        for i in 1..=100u64 {
            s.record(&RequestRecord::ok("/a", "GET", 200, i * 1_000));
        }
        for _ in 0..10 {
            s.record(
                &RequestRecord::ok("/b", "POST", 503, 500)
                    .failed(ErrorCategory::HttpStatus, Some("HTTP 503")),
            );
        }
        s
    }

    #[test]
    fn rows_have_exact_counts_and_hdr_percentiles() {
        let sum = Summary::new(&snapshot(), Duration::from_secs(10));
        assert_eq!(sum.duration_s, 10.0);
        assert_eq!(sum.totals.requests, 110);
        assert_eq!(sum.totals.failures, 10);
        assert!((sum.totals.rps - 11.0).abs() < 1e-9);
        let a = &sum.endpoints[0];
        assert_eq!((a.name.as_str(), a.method.as_str()), ("/a", "GET"));
        assert_eq!(a.min_ms, Some(1.0));
        assert_eq!(a.max_ms, Some(100.0));
        let (p50, p99) = (a.p50_ms.unwrap(), a.p99_ms.unwrap());
        assert!((p50 - 50.0).abs() <= 0.05, "{p50}");
        assert!((p99 - 99.0).abs() <= 0.1, "{p99}");
        assert!((a.mean_ms.unwrap() - 50.5).abs() < 1e-9);
        assert_eq!(
            sum.errors,
            vec![ErrorRow {
                name: "/b".into(),
                method: "POST".into(),
                category: "http_status".into(),
                message: "HTTP 503".into(),
                count: 10
            }]
        );
    }

    #[test]
    fn without_a_single_duration_the_latency_figures_are_null_not_zero() {
        let mut snap = Snapshot::new();
        for _ in 0..3 {
            snap.record(
                &RequestRecord::ok("/down", "GET", 0, 0)
                    .failed(ErrorCategory::Connect, Some("refused")),
            );
        }
        let sum = Summary::new(&snap, Duration::from_secs(1));
        assert_eq!(sum.totals.p95_ms, None);
        let v: serde_json::Value = serde_json::from_str(&sum.to_json()).unwrap();
        for field in [
            "min_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "max_ms", "mean_ms",
        ] {
            assert!(
                v["totals"][field].is_null(),
                "totals.{field}: {}",
                v["totals"]
            );
        }
        let table = sum.render_table_for(None);
        let total = table.lines().find(|l| l.starts_with("Total")).unwrap();
        assert!(
            total.ends_with("-  -  -  -  -  -  -") || total.contains("  -"),
            "{table}"
        );
        assert!(
            !total.contains("0µs") && !total.contains(" 0.00"),
            "{table}"
        );
    }

    #[test]
    fn json_export_has_the_documented_fields() {
        let sum = Summary::new(&snapshot(), Duration::from_secs(10));
        let v: serde_json::Value = serde_json::from_str(&sum.to_json()).unwrap();
        for field in ["duration_s", "totals", "endpoints", "errors", "thresholds"] {
            assert!(v.get(field).is_some(), "{field}");
        }
        for field in ["requests", "failures", "rps"] {
            assert!(v["totals"].get(field).is_some(), "totals.{field}");
        }
        let e = &v["endpoints"][0];
        for field in [
            "name", "method", "requests", "failures", "rps", "min_ms", "p50_ms", "p90_ms",
            "p95_ms", "p99_ms", "max_ms", "mean_ms",
        ] {
            assert!(e.get(field).is_some(), "endpoints[].{field}");
        }
        for field in ["name", "category", "message", "count"] {
            assert!(v["errors"][0].get(field).is_some(), "errors[].{field}");
        }
    }

    #[test]
    fn the_table_lists_endpoints_totals_and_errors() {
        let table = Summary::new(&snapshot(), Duration::from_secs(10)).render_table();
        assert!(table.contains("GET /a"), "{table}");
        assert!(table.contains("POST /b"));
        assert!(
            table
                .lines()
                .any(|l| l.starts_with("Total") && l.contains("110")),
            "{table}"
        );
        assert!(
            table.contains("\nErrors:\n  Endpoint  Category     Count  Message\n  POST /b   http_status     10  HTTP 503\n"),
            "{table}"
        );
    }

    #[test]
    fn text_html_and_csv_render_the_one_endpoint_table() {
        let summary = Summary::new(&snapshot(), Duration::from_secs(10));
        let table = summary.endpoints_table(summary.latency_unit(), true);
        let text = table.to_text(None);
        assert!(
            text.starts_with("Endpoint  Requests  Fails  Req/s  Min ms  p50 ms"),
            "{text}"
        );
        assert!(
            text.contains("\nPOST /b         10     10    1.0    0.50"),
            "{text}"
        );
        let html = table.to_html();
        assert!(
            html.contains("<th>Interrupted</th>"),
            "HTML has what text leaves out"
        );
        assert!(
            html.contains("<td data-field=\"failures\">10</td>"),
            "{html}"
        );
        assert!(html.contains("<tr class=\"total\">"), "{html}");
        let csv = table.to_csv();
        let mut lines = csv.lines();
        assert_eq!(
            lines.next(),
            Some(
                "Endpoint,Scenario,Method,Name,Requests,Fails,Interrupted,Req/s,Min ms,p50 ms,p90 ms,p95 ms,p99 ms,Max ms,Mean ms"
            )
        );
        assert_eq!(
            lines.nth(1),
            Some("POST /b,default,POST,/b,10,10,0,1.0,0.50,0.50,0.50,0.50,0.50,0.50,0.50")
        );
        assert_eq!(lines.count(), 1, "the totals: {csv}");
    }

    /// The right edge of every figure under its header, in every line of the table.
    fn assert_aligned(table: &str) {
        let mut lines = table.lines();
        let header = lines.next().unwrap();
        let ends: Vec<usize> = header
            .char_indices()
            .filter(|&(i, c)| {
                c != ' '
                    && header[i + c.len_utf8()..]
                        .chars()
                        .next()
                        .is_none_or(|n| n == ' ')
            })
            .map(|(i, _)| header[..i].chars().count())
            .collect();
        for l in lines.take_while(|l| !l.starts_with("Run time")) {
            let chars: Vec<char> = l.chars().collect();
            // A line of figures: each non-blank figure ends at a header's right edge.
            if !chars.iter().any(|c| c.is_ascii_digit()) {
                continue;
            }
            if l.split_whitespace().count() < 3 {
                continue; // a name on a line of its own
            }
            for (i, c) in chars.iter().enumerate() {
                let last = chars.get(i + 1).is_none_or(|n| *n == ' ');
                if c.is_ascii_digit() && last {
                    assert!(ends.contains(&i), "misaligned at column {i}:\n{table}");
                }
            }
        }
    }

    #[test]
    fn named_checks_have_a_row_each_with_passes_failures_and_rate() {
        let mut snap = snapshot();
        snap.count_check("status is 200", &aiotest_metrics::Tags::new(), 100, 0);
        snap.count_check("has token", &aiotest_metrics::Tags::new(), 95, 5);
        let summary = Summary::new(&snap, Duration::from_secs(10));
        let table = summary.render_table();
        assert!(
            table.contains(
                "\nChecks:\n  Check          Result  Rate %  Passed  Failed\n  \
                 has token      FAIL     95.00      95       5\n  \
                 status is 200  ok      100.00     100       0\n"
            ),
            "{table}"
        );
        let json: serde_json::Value = serde_json::from_str(&summary.to_json()).unwrap();
        assert_eq!(json["checks"][0]["rate"], 95.0);
        assert_eq!(json["checks"][1]["passes"], 100);
    }

    #[test]
    fn checks_made_in_groups_are_shown_under_their_group() {
        let mut snap = snapshot();
        for (path, fails) in [
            ("::checkout::pay::paid", 1),
            ("::checkout::cart shown", 0),
            ("home", 0),
        ] {
            snap.count_check(path, &aiotest_metrics::Tags::new(), 9, fails);
        }
        let table = Summary::new(&snap, Duration::from_secs(10)).render_table();
        let want = "\nChecks:\n  Check         Result  Rate %  Passed  Failed\n  \
                    home          ok      100.00       9       0\n  \
                    ::checkout\n    cart shown  ok      100.00       9       0\n  \
                    ::checkout::pay\n    paid        FAIL     90.00       9       1\n";
        assert!(table.contains(want), "{table}");
    }

    #[test]
    fn named_metrics_have_a_row_each_and_their_tag_sets_below() {
        use aiotest_metrics::{Metric, Tags};
        let mut snap = snapshot();
        let orders = Metric::counter("orders").unwrap();
        let wait = Metric::time_trend("cart_wait").unwrap();
        let ok = Metric::rate("order_ok").unwrap();
        let eu = Tags::from_pairs([("shop", "eu")]).unwrap();
        let us = Tags::from_pairs([("shop", "us")]).unwrap();
        for i in 1..=20u64 {
            snap.metrics
                .add(&orders, if i % 2 == 0 { &eu } else { &us }, 1.0, i);
            snap.metrics.add(&wait, &Tags::new(), i as f64, i);
            snap.metrics
                .add(&ok, &Tags::new(), if i == 1 { 0.0 } else { 1.0 }, i);
        }
        snap.metrics
            .add(&Metric::gauge("orders").unwrap(), &eu, 1.0, 1);
        let summary = Summary::new(&snap, Duration::from_secs(10));
        let table = summary.render_table();
        // k6's built-in metrics first, read from the request figures.
        assert!(
            table.contains(
                "\nMetrics:\n  Metric             Kind     Samples  count    rate       avg    min      med    max    p(90)    p(95)    p(99)\n  \
                 http_reqs          counter      110    110    11/s\n  \
                 http_req_failed    rate         110          9.10%\n  \
                 http_req_duration  trend        110                 45.955ms  0.5ms  45.01ms  100ms  88.99ms  95.01ms  98.98ms\n"
            ),
            "{table}"
        );
        assert!(
            !table.contains("dropped_iterations"),
            "none dropped: {table}"
        );
        assert!(
            table.contains(
                "\n  cart_wait          trend         20                   10.5ms    1ms     10ms   20ms  18.01ms     19ms     20ms\n  \
                 order_ok           rate          20         95.00%\n  \
                 orders             counter       20     20     2/s\n    \
                 {shop:eu}        counter       10     10     1/s\n    \
                 {shop:us}        counter       10     10     1/s\n"
            ),
            "{table}"
        );
        assert!(
            summary
                .notes
                .iter()
                .any(|n| n.contains("1 samples of metric `orders` are left out")),
            "{:?}",
            summary.notes
        );
        let json: serde_json::Value = serde_json::from_str(&summary.to_json()).unwrap();
        let all = json["metrics"].as_array().unwrap();
        let builtin: Vec<&str> = all[..5]
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            builtin,
            [
                "http_reqs",
                "http_req_failed",
                "http_req_duration",
                "data_sent",
                "data_received"
            ]
        );
        let rows = &all[5..];
        assert_eq!(rows.len(), 5);
        assert_eq!(rows[0]["name"], "cart_wait");
        assert_eq!(rows[0]["time"], true);
        assert_eq!(rows[0]["values"]["p(95)"], 19.0);
        assert_eq!(rows[0]["tags"], serde_json::Value::Null, "the whole");
        assert_eq!(rows[3]["tags"]["shop"], "eu");
        assert_eq!(rows[3]["values"]["count"], 10.0);
    }

    #[test]
    fn folded_tag_sets_are_named_in_the_notes() {
        use aiotest_metrics::{MAX_TAG_SETS, Metric, Tags};
        let mut snap = snapshot();
        let m = Metric::counter("by_user").unwrap();
        for i in 0..MAX_TAG_SETS + 7 {
            let tags = Tags::from_pairs([("user", i.to_string().as_str())]).unwrap();
            snap.metrics.add(&m, &tags, 1.0, 1);
        }
        let summary = Summary::new(&snap, Duration::from_secs(1));
        assert!(
            summary.notes.iter().any(|n| n.starts_with(
                "7 samples of metric `by_user` are counted under {folded:true}: it had more than 1000 tag sets"
            )),
            "{:?}",
            summary.notes
        );
        let text = summary.render_table();
        assert!(
            text.contains("(991 more tag sets in the JSON export)"),
            "{text}"
        );
    }

    #[test]
    fn short_names_keep_the_figures_under_their_headers() {
        let mut s = Snapshot::new();
        for i in 1..=5u64 {
            s.record(&RequestRecord::ok("/", "GET", 200, i * 1_000));
        }
        let table = Summary::new(&s, Duration::from_secs(1)).render_table();
        assert!(table.starts_with("Endpoint  Requests"), "{table}");
        assert_aligned(&table);
    }

    #[test]
    fn the_narrow_layout_fits_80_columns_and_never_cuts_a_name() {
        let long = format!("/{}", "x".repeat(70));
        let mut s = snapshot();
        for _ in 0..3 {
            s.record(&RequestRecord::ok(&long, "GET", 200, 2_000_000));
        }
        let sum = Summary::new(&s, Duration::from_secs(10));
        let wide = sum.render_table();
        assert!(wide.lines().next().unwrap().contains("Mean ms"), "{wide}");
        assert_aligned(&wide);
        let narrow = sum.render_table_for(Some(80));
        let table_lines = narrow.lines().take_while(|l| !l.starts_with("Run time"));
        for l in table_lines {
            assert!(l.chars().count() < 80, "too wide: {l}\n{narrow}");
        }
        assert!(!narrow.contains("Mean"), "{narrow}");
        assert!(narrow.contains(&format!("GET {long}\n")), "{narrow}");
        assert_aligned(&narrow);
        // Wide enough for everything: the full table.
        assert_eq!(sum.render_table_for(Some(500)), wide);
    }

    #[test]
    fn durations_take_one_unit_that_fits_the_largest() {
        let table_with = |us: u64| {
            let mut s = Snapshot::new();
            s.record(&RequestRecord::ok("/", "GET", 200, us));
            Summary::new(&s, Duration::from_secs(1)).render_table()
        };
        let fast = table_with(72);
        assert!(fast.contains("p50 µs") && fast.contains(" 72"), "{fast}");
        assert!(table_with(2_500).contains("p50 ms"));
        let slow = table_with(250_000_000);
        assert!(slow.contains("p50 s"), "{slow}");
        assert_aligned(&slow);
    }

    #[test]
    fn an_empty_run_summarizes_to_zeros() {
        let sum = Summary::new(&Snapshot::new(), Duration::ZERO);
        assert_eq!(sum.totals.requests, 0);
        assert_eq!(sum.totals.rps, 0.0);
        assert!(sum.render_table().contains("Total"));
    }
}
