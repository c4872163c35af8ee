//! Tests of the Prometheus exporter: the text output is checked by a real parser.

use std::sync::Arc;

use prometheus_parse::{Scrape, Value};

use super::*;
use crate::record::RequestRecord;

fn parse(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("valid text exposition format")
}

fn label<'a>(s: &'a prometheus_parse::Sample, name: &str) -> Option<&'a str> {
    s.labels.get(name)
}

fn interval() -> Snapshot {
    let mut snap = Snapshot::new();
    // 90 fast requests (50 µs to 139 µs), 9 slower ones (2 ms), one refused connection.
    for i in 0..90 {
        let mut r = RequestRecord::ok("/fast", "GET", 200, 50 + i);
        r.bytes_sent = 10;
        r.bytes_received = 100;
        snap.record(&r);
    }
    for _ in 0..9 {
        snap.record(
            &RequestRecord::ok("/fast", "GET", 503, 2_000)
                .failed(ErrorCategory::HttpStatus, Some("503")),
        );
    }
    let mut refused =
        RequestRecord::ok("/fast", "GET", 0, 300).failed(ErrorCategory::Connect, None);
    refused.status = None;
    snap.record(&refused);
    snap
}

#[test]
fn output_parses_and_resolves_sub_millisecond_latency() {
    let exporter = PrometheusExporter::new();
    exporter.update(&interval());
    exporter.set_users("shopper", 12);
    exporter.set_runner_state(RunnerState::Running);
    exporter.set_workers(&[(RunnerState::Running, 3), (RunnerState::Missing, 1)]);
    let text = exporter.render();
    let scrape = parse(&text);

    let hist = scrape
        .samples
        .iter()
        .find(|s| s.metric == "aiotest_request_duration_seconds")
        .expect("duration histogram present");
    let Value::Histogram(buckets) = &hist.value else {
        panic!("not a histogram: {:?}", hist.value);
    };
    let count_le = |bound: f64| {
        buckets
            .iter()
            .find(|b| (b.less_than - bound).abs() < 1e-12)
            .map(|b| b.count)
            .unwrap_or_else(|| panic!("no bucket le={bound} in {buckets:?}"))
    };
    assert_eq!(count_le(0.0001), 51.0, "50..=100 µs are <= 100 µs");
    assert_eq!(count_le(0.00025), 90.0);
    assert_eq!(count_le(0.0005), 91.0, "plus the 300 µs refused connection");
    assert_eq!(count_le(0.0025), 100.0);
    assert_eq!(count_le(60.0), 100.0);

    let counter = |metric: &str, key: &str, val: &str| -> f64 {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == metric && label(s, key) == Some(val))
            .map(|s| match s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
                _ => panic!("{metric} is not a number"),
            })
            .sum()
    };
    assert_eq!(counter("aiotest_requests_total", "status", "200"), 90.0);
    assert_eq!(counter("aiotest_requests_total", "status", "503"), 9.0);
    assert_eq!(counter("aiotest_requests_total", "status", "none"), 1.0);
    assert_eq!(
        counter("aiotest_failures_total", "category", "http_status"),
        9.0
    );
    assert_eq!(
        counter("aiotest_failures_total", "category", "connect"),
        1.0
    );
    assert_eq!(counter("aiotest_bytes_sent_total", "name", "/fast"), 900.0);
    assert_eq!(
        counter("aiotest_bytes_received_total", "method", "GET"),
        9_000.0
    );
    assert_eq!(counter("aiotest_users", "user_type", "shopper"), 12.0);
    assert_eq!(counter("aiotest_runner_state", "state", "RUNNING"), 1.0);
    assert_eq!(counter("aiotest_runner_state", "state", "PAUSED"), 0.0);
    assert_eq!(counter("aiotest_workers", "state", "RUNNING"), 3.0);
    assert_eq!(counter("aiotest_workers", "state", "MISSING"), 1.0);
}

#[test]
fn counters_accumulate_over_intervals() {
    let exporter = PrometheusExporter::new();
    exporter.update(&interval());
    exporter.update(&interval());
    let scrape = parse(&exporter.render());
    let total: f64 = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "aiotest_requests_total")
        .map(|s| match s.value {
            Value::Counter(v) | Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum();
    assert_eq!(total, 200.0);
}

#[test]
fn exporters_do_not_share_numbers() {
    let a = PrometheusExporter::new();
    let b = PrometheusExporter::new();
    a.update(&interval());
    assert!(a.render().contains("aiotest_requests_total"));
    assert!(!b.render().contains("aiotest_requests_total"));
}

#[test]
fn the_app_serves_metrics_and_refuses_the_rest() {
    let exporter = Arc::new(PrometheusExporter::new());
    exporter.set_users("u", 1);
    let app = create_prometheus_app(Arc::clone(&exporter));
    let ok = app.handle("GET", "/metrics?x=1");
    assert_eq!((ok.status, ok.content_type), (200, CONTENT_TYPE));
    assert!(ok.body.contains("aiotest_users"));
    assert_eq!(app.handle("POST", "/metrics").status, 405);
    assert_eq!(app.handle("GET", "/").status, 404);
}

#[test]
fn iterations_are_counted_per_scenario() {
    let exporter = PrometheusExporter::new();
    let mut snap = Snapshot::new();
    let mut it = crate::ScenarioStats::default();
    for _ in 0..7 {
        it.completed(40_000);
    }
    it.dropped = 2;
    it.interrupted = 1;
    snap.scenarios.insert("rate".into(), it);
    exporter.update(&snap);
    exporter.update(&snap);
    let scrape = parse(&exporter.render());
    let value = |metric: &str| -> f64 {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == metric && label(s, "scenario") == Some("rate"))
            .map(|s| match s.value {
                Value::Counter(v) | Value::Untyped(v) => v,
                _ => panic!("{metric} is not a counter"),
            })
            .sum()
    };
    assert_eq!(value("aiotest_iterations_total"), 14.0);
    assert_eq!(value("aiotest_dropped_iterations_total"), 4.0);
    assert_eq!(value("aiotest_interrupted_iterations_total"), 2.0);
    assert!(
        scrape
            .samples
            .iter()
            .any(|s| s.metric == "aiotest_iteration_duration_seconds"),
        "iteration durations as a histogram"
    );
}
