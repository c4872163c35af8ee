//! Prometheus: aiotest's figures as `aiotest_*` metrics, served at `/metrics`.
//!
//! The exporter owns its own `metrics-exporter-prometheus` recorder (never the process'
//! global one), so two runners, or two tests, in one process never mix their numbers.
//! Counters and the duration histogram are updated from closed interval snapshots, never
//! per request. Feeding the histogram costs one observation per request at that point
//! (the exporter has no bulk insert), off the request path; upkeep runs after each update
//! so the exporter's sample buffers never grow between scrapes.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `aiotest_requests_total` | counter | scenario, name, method, tags, status (`none` without a response) |
//! | `aiotest_failures_total` | counter | scenario, name, method, tags, category |
//! | `aiotest_request_duration_seconds` | histogram, 10 µs to 60 s | scenario, name, method, tags |
//! | `aiotest_bytes_sent_total`, `aiotest_bytes_received_total` | counter | scenario, name, method, tags |
//! | `aiotest_iterations_total`, `aiotest_dropped_iterations_total`, `aiotest_interrupted_iterations_total` | counter | scenario |
//! | `aiotest_iteration_duration_seconds` | histogram, as requests' | scenario |
//! | `aiotest_checks_total` | counter | check, result (`pass`, `fail`; both from a check's first verdict), group (a check made in one) |
//! | `aiotest_users` | gauge | user_type |
//! | `aiotest_runner_state` | gauge, 1 for the current state | state |
//! | `aiotest_workers` | gauge | state |
//! | `aiotest_custom_NAME...` | per kind, see below | the metric's tags |
//!
//! *tags*: a request's own key=value tags (the group among them), each key made a label
//! name (other characters than letters, digits and `_` become `_`).
//!
//! Named metrics (counters, gauges, rates, trends) are written from their run totals
//! after the others: a counter as `aiotest_custom_NAME_total`, a gauge as
//! `aiotest_custom_NAME`, a rate as the gauge `aiotest_custom_NAME_rate`, a trend as a
//! summary `aiotest_custom_NAME` (quantiles 0.5, 0.9, 0.95, 0.99; a time trend in seconds,
//! `..._seconds`).
//!
//! Every metric has a `# HELP` line. An endpoint's failure counters appear at zero, for
//! every category, with the endpoint; a scenario's iteration counters at zero when the
//! run starts ([`PrometheusExporter::declare_scenario`]): `rate()` and `increase()` see
//! the first failure, not a series that starts above zero.
//!
//! The duration buckets are fine enough that `histogram_quantile` lands within 10% of
//! the true percentile from 50 µs to 10 s, whatever the distribution: 30 buckets per
//! decade, each bound 8% above the previous one, so linear interpolation inside a bucket
//! is off by at most that ([`duration_buckets`]).

use aiotest_core::state::RunnerState;
use metrics::{Label, Recorder as _};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use crate::record::ErrorCategory;
use crate::stats::{EndpointKey, Snapshot};

/// Buckets per decade between [`FINE_FROM_S`] and [`FINE_TO_S`]: each bound is
/// 10^(1/30), 8%, above the previous one.
const PER_DECADE: i32 = 30;
/// Where the fine buckets start (50 µs, about).
const FINE_FROM_S: f64 = 5e-5;
/// Where they end.
const FINE_TO_S: f64 = 10.0;

/// Bucket upper bounds of `aiotest_request_duration_seconds` and
/// `aiotest_iteration_duration_seconds`: 10 and 25 µs, then 30 per decade from 50 µs to
/// 10 s (three significant digits), then 15, 20, 30 and 60 s.
pub fn duration_buckets() -> &'static [f64] {
    static BUCKETS: std::sync::LazyLock<Vec<f64>> = std::sync::LazyLock::new(|| {
        let mut b = vec![1e-5, 2.5e-5];
        let first = (FINE_FROM_S.log10() * f64::from(PER_DECADE)).floor() as i32;
        let last = (FINE_TO_S.log10() * f64::from(PER_DECADE)).round() as i32;
        for k in first..=last {
            let v = 10f64.powf(f64::from(k) / f64::from(PER_DECADE));
            // Three significant digits: readable `le` labels.
            let scale = 10f64.powi(2 - v.log10().floor() as i32);
            let v = (v * scale).round() / scale;
            if b.last().is_none_or(|&l| v > l) {
                b.push(v);
            }
        }
        b.extend([15.0, 20.0, 30.0, 60.0]);
        b
    });
    &BUCKETS
}

/// `# HELP` texts.
const HELP: &[(&str, &str)] = &[
    (
        "aiotest_requests_total",
        "Requests made, by scenario, name, method and response status (none: no response).",
    ),
    (
        "aiotest_failures_total",
        "Failed requests, by scenario, name, method and error category.",
    ),
    (
        DURATION,
        "Request duration in seconds; open-model requests count from their iteration's intended start.",
    ),
    (
        "aiotest_bytes_sent_total",
        "Bytes sent, requests and bodies.",
    ),
    (
        "aiotest_bytes_received_total",
        "Bytes received, responses and bodies.",
    ),
    (
        "aiotest_iterations_total",
        "Iterations completed, by scenario.",
    ),
    (
        "aiotest_dropped_iterations_total",
        "Arrival-rate iterations due that found no free user, by scenario.",
    ),
    (
        "aiotest_interrupted_iterations_total",
        "Iterations cut off by the end of a graceful stop, by scenario.",
    ),
    (
        ITERATION_DURATION,
        "Iteration duration in seconds, by scenario.",
    ),
    (
        "aiotest_checks_total",
        "Named checks' verdicts, by check and result.",
    ),
    ("aiotest_users", "Users running, by user type."),
    (
        "aiotest_runner_state",
        "1 for the runner's current state, 0 for the others.",
    ),
    (
        "aiotest_workers",
        "Workers in each state (distributed runs).",
    ),
];

const DURATION: &str = "aiotest_request_duration_seconds";
const ITERATION_DURATION: &str = "aiotest_iteration_duration_seconds";

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// aiotest's Prometheus metrics; see the [module docs](self).
pub struct PrometheusExporter {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    /// Named metrics' run totals, written by [`named::render`]. A std mutex: held to merge
    /// an interval or to write the text, never across an await.
    named: std::sync::Mutex<crate::MetricSet>,
}

impl std::fmt::Debug for PrometheusExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrometheusExporter")
    }
}

impl Default for PrometheusExporter {
    fn default() -> Self {
        Self::new()
    }
}

fn key(name: &'static str, labels: Vec<Label>) -> metrics::Key {
    metrics::Key::from_parts(name, labels)
}

/// An endpoint's labels: scenario, name, method, then its own tags (a tag whose label
/// name would repeat one of those is left out).
fn endpoint_labels(k: &EndpointKey) -> Vec<Label> {
    let mut labels = vec![
        Label::new("scenario", k.scenario.clone()),
        Label::new("name", k.name.clone()),
        Label::new("method", k.method.clone()),
    ];
    for (key, value) in k.tags.iter() {
        let key = named::label_name(key);
        if !labels.iter().any(|l| l.key() == key) {
            labels.push(Label::new(key, value.to_owned()));
        }
    }
    labels
}

const META: metrics::Metadata<'static> =
    metrics::Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

impl PrometheusExporter {
    /// A fresh exporter with no metrics yet.
    pub fn new() -> Self {
        let builder = PrometheusBuilder::new();
        // Setting buckets for one exact name cannot fail: the bucket list is non-empty.
        let builder = match builder
            .set_buckets_for_metric(Matcher::Full(DURATION.into()), duration_buckets())
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full(ITERATION_DURATION.into()),
                    duration_buckets(),
                )
            }) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!("prometheus buckets refused: {e}");
                PrometheusBuilder::new()
            }
        };
        let recorder = builder.build_recorder();
        for (name, help) in HELP {
            let key = metrics::KeyName::from_const_str(name);
            let help = metrics::SharedString::const_str(help);
            if name.ends_with("_seconds") {
                recorder.describe_histogram(key, Some(metrics::Unit::Seconds), help);
            } else if name.ends_with("_total") {
                recorder.describe_counter(key, None, help);
            } else {
                recorder.describe_gauge(key, None, help);
            }
        }
        let handle = recorder.handle();
        PrometheusExporter {
            recorder,
            handle,
            named: std::sync::Mutex::default(),
        }
    }

    /// Shows `scenario`'s iteration counters at zero, before its first iteration.
    pub fn declare_scenario(&self, scenario: &str) {
        let labels = vec![Label::new("scenario", scenario.to_owned())];
        for metric in [
            "aiotest_iterations_total",
            "aiotest_dropped_iterations_total",
            "aiotest_interrupted_iterations_total",
        ] {
            self.recorder
                .register_counter(&key(metric, labels.clone()), &META)
                .increment(0);
        }
    }

    /// Adds a closed interval's counts.
    pub fn update(&self, interval: &Snapshot) {
        for (k, stats) in &interval.endpoints {
            let labels = endpoint_labels(k);
            let mut answered = 0;
            for &(code, n) in &stats.status_codes {
                answered += n;
                let mut l = labels.clone();
                l.push(Label::new("status", code.to_string()));
                self.recorder
                    .register_counter(&key("aiotest_requests_total", l), &META)
                    .increment(n);
            }
            if stats.requests > answered {
                let mut l = labels.clone();
                l.push(Label::new("status", "none"));
                self.recorder
                    .register_counter(&key("aiotest_requests_total", l), &META)
                    .increment(stats.requests - answered);
            }
            // Every category, at zero until it fails: a series that starts above zero
            // hides its first increase from rate().
            for category in ErrorCategory::ALL {
                let n = stats.failures_by_category[category.index()];
                let mut l = labels.clone();
                l.push(Label::new("category", category.as_str()));
                self.recorder
                    .register_counter(&key("aiotest_failures_total", l), &META)
                    .increment(n);
            }
            self.recorder
                .register_counter(&key("aiotest_bytes_sent_total", labels.clone()), &META)
                .increment(stats.bytes_sent);
            self.recorder
                .register_counter(&key("aiotest_bytes_received_total", labels.clone()), &META)
                .increment(stats.bytes_received);
            let histogram = self
                .recorder
                .register_histogram(&key(DURATION, labels), &META);
            for v in stats.histogram.iter_recorded() {
                // The bucket's lowest value: a sample of exactly 5 ms counts as <= 0.005.
                let us = stats.histogram.lowest_equivalent(v.value_iterated_to());
                let secs = us as f64 / 1e6;
                histogram.record_many(secs, v.count_at_value() as usize);
            }
        }
        for (name, it) in &interval.scenarios() {
            let labels = vec![Label::new("scenario", name.clone())];
            for (metric, n) in [
                ("aiotest_iterations_total", it.iterations),
                ("aiotest_dropped_iterations_total", it.dropped),
                ("aiotest_interrupted_iterations_total", it.interrupted),
            ] {
                self.recorder
                    .register_counter(&key(metric, labels.clone()), &META)
                    .increment(n);
            }
            let histogram = self
                .recorder
                .register_histogram(&key(ITERATION_DURATION, labels), &META);
            for v in it.duration.iter_recorded() {
                let us = it.duration.lowest_equivalent(v.value_iterated_to());
                histogram.record_many(us as f64 / 1e6, v.count_at_value() as usize);
            }
        }
        for (path, c) in &interval.checks() {
            let (group, name) = crate::split_check_path(path);
            // Both results, at zero until they happen: rate() sees the first failure.
            for (result, n) in [("pass", c.passes), ("fail", c.fails)] {
                let mut labels = vec![
                    Label::new("check", name.to_owned()),
                    Label::new("result", result),
                ];
                if let Some(group) = group {
                    labels.push(Label::new("group", group.to_owned()));
                }
                self.recorder
                    .register_counter(&key("aiotest_checks_total", labels), &META)
                    .increment(n);
            }
        }
        if !interval.metrics.is_empty() {
            self.named
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .merge(&interval.metrics);
        }
        self.handle.run_upkeep();
    }

    /// Sets the number of running users of `user_type`.
    pub fn set_users(&self, user_type: &str, users: u64) {
        let k = key(
            "aiotest_users",
            vec![Label::new("user_type", user_type.to_owned())],
        );
        self.recorder.register_gauge(&k, &META).set(users as f64);
    }

    /// Marks `state` as the runner's current state (1) and every other state 0.
    pub fn set_runner_state(&self, state: RunnerState) {
        for s in RunnerState::ALL {
            let k = key(
                "aiotest_runner_state",
                vec![Label::new("state", s.as_str())],
            );
            self.recorder
                .register_gauge(&k, &META)
                .set(if s == state { 1.0 } else { 0.0 });
        }
    }

    /// Sets how many workers are in each state (states not given are set to 0).
    pub fn set_workers(&self, counts: &[(RunnerState, u64)]) {
        for s in RunnerState::ALL {
            let n = counts
                .iter()
                .filter(|(st, _)| *st == s)
                .map(|(_, n)| *n)
                .sum::<u64>();
            let k = key("aiotest_workers", vec![Label::new("state", s.as_str())]);
            self.recorder.register_gauge(&k, &META).set(n as f64);
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = self.handle.render();
        let named = self.named.lock().unwrap_or_else(|e| e.into_inner());
        if !named.series.is_empty() {
            if !out.is_empty() && !out.ends_with("\n\n") {
                out.push('\n');
            }
            named::render(&named, &mut out);
        }
        out
    }
}

/// A response of the metrics app, independent of any HTTP library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppResponse {
    /// HTTP status code.
    pub status: u16,
    /// `Content-Type` header.
    pub content_type: &'static str,
    /// The body.
    pub body: String,
}

/// The `/metrics` service, built by [`create_prometheus_app`]; the runner mounts it on its
/// HTTP server, adapting requests with [`PrometheusApp::handle`].
#[derive(Debug, Clone)]
pub struct PrometheusApp {
    exporter: std::sync::Arc<PrometheusExporter>,
}

/// Builds the `/metrics` service over `exporter` (the seed's `create_prometheus_app`).
pub fn create_prometheus_app(exporter: std::sync::Arc<PrometheusExporter>) -> PrometheusApp {
    PrometheusApp { exporter }
}

impl PrometheusApp {
    /// Answers `method path`: `GET /metrics` (or `HEAD`) renders; other paths are 404,
    /// other methods on `/metrics` 405.
    pub fn handle(&self, method: &str, path: &str) -> AppResponse {
        let path = path.split('?').next().unwrap_or(path);
        match (method, path) {
            ("GET" | "HEAD", "/metrics") => AppResponse {
                status: 200,
                content_type: CONTENT_TYPE,
                body: self.exporter.render(),
            },
            (_, "/metrics") => AppResponse {
                status: 405,
                content_type: "text/plain; charset=utf-8",
                body: "method not allowed; use GET\n".into(),
            },
            _ => AppResponse {
                status: 404,
                content_type: "text/plain; charset=utf-8",
                body: "not found; metrics are at /metrics\n".into(),
            },
        }
    }
}

mod named;

#[cfg(test)]
mod tests;
