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
    snap.count_check("has token", &crate::Tags::new(), 97, 3);
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
    assert_eq!(count_le(0.000251), 90.0);
    assert_eq!(
        count_le(0.000316),
        90.0,
        "the refused connection has no latency"
    );
    assert_eq!(count_le(0.00251), 99.0);
    assert_eq!(count_le(60.0), 99.0);

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
    assert_eq!(counter("aiotest_checks_total", "result", "pass"), 97.0);
    assert_eq!(counter("aiotest_checks_total", "result", "fail"), 3.0);
    assert_eq!(counter("aiotest_checks_total", "check", "has token"), 100.0);
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
    snap.count_iterations("rate", &it);
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

/// Prometheus' `histogram_quantile`: the bucket holding the rank, then linear
/// interpolation between its bounds (the first bucket's lower bound is 0).
fn histogram_quantile(q: f64, buckets: &[prometheus_parse::HistogramCount]) -> f64 {
    let total = buckets.last().map_or(0.0, |b| b.count);
    let rank = q * total;
    let mut prev = (0.0, 0.0);
    for b in buckets {
        if b.count >= rank {
            let (lower, below) = prev;
            if b.less_than.is_infinite() {
                return lower;
            }
            return lower + (b.less_than - lower) * (rank - below) / (b.count - below);
        }
        prev = (b.less_than, b.count);
    }
    f64::NAN
}

#[test]
fn histogram_quantile_lands_within_10_percent_from_50_us_to_10_s() {
    // Point masses (the worst case for interpolation: every sample at one value, the
    // estimate anywhere in its bucket), at values from 50 µs to 10 s, and a spread-out
    // mix: each percentile from the scrape is within 10% of the snapshot's.
    let mut cases: Vec<Vec<u64>> = Vec::new();
    let mut us = 50.0_f64;
    while us <= 10_000_000.0 {
        cases.push(vec![us as u64; 100]);
        us *= 1.37;
    }
    cases.push(vec![26_300; 1_000]);
    cases.push((0..10_000u64).map(|i| 50 + i * i / 10).collect());
    cases.push(
        (0..1_000u64)
            .map(|i| 1_000 + (i % 7) * 3_000 + (i % 13) * 40_000)
            .collect(),
    );
    for values in cases {
        let mut snap = Snapshot::new();
        for &v in &values {
            snap.record(&RequestRecord::ok("/x", "GET", 200, v));
        }
        let exporter = PrometheusExporter::new();
        exporter.update(&snap);
        let scrape = parse(&exporter.render());
        let hist = scrape
            .samples
            .iter()
            .find(|s| s.metric == "aiotest_request_duration_seconds")
            .unwrap();
        let Value::Histogram(buckets) = &hist.value else {
            panic!("not a histogram");
        };
        let stats = snap.total();
        for q in [0.5, 0.9, 0.99] {
            let truth = stats.percentile_us(q) as f64 / 1e6;
            let estimate = histogram_quantile(q, buckets);
            let off = (estimate - truth).abs() / truth;
            assert!(
                off <= 0.10,
                "p{} of {}..{} us: {estimate} s from the scrape, {truth} s in the summary ({:.1}% off)",
                q * 100.0,
                values.iter().min().unwrap(),
                values.iter().max().unwrap(),
                off * 100.0
            );
        }
    }
}

#[test]
fn every_metric_has_help_and_failure_counters_start_at_zero() {
    let exporter = PrometheusExporter::new();
    exporter.declare_scenario("checkout");
    let mut snap = Snapshot::new();
    snap.record(&RequestRecord::ok("/ok", "GET", 200, 1_000));
    let mut it = crate::ScenarioStats::default();
    it.completed(2_000);
    snap.count_iterations("checkout", &it);
    exporter.update(&snap);
    exporter.set_users("u", 1);
    exporter.set_runner_state(RunnerState::Running);
    exporter.set_workers(&[]);
    let text = exporter.render();
    let scrape = parse(&text);
    let mut names: Vec<&str> = scrape
        .samples
        .iter()
        .map(|s| {
            let m = s.metric.as_str();
            m.strip_suffix("_count")
                .or_else(|| m.strip_suffix("_sum"))
                .unwrap_or(m)
        })
        .collect();
    names.sort_unstable();
    names.dedup();
    assert!(names.len() >= 11, "{names:?}");
    for name in names {
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "no HELP for {name}:\n{text}"
        );
    }
    // No failure yet, but the series are there for rate() to start from.
    let zero_failures = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "aiotest_failures_total")
        .filter(|s| matches!(s.value, Value::Counter(v) if v == 0.0))
        .count();
    assert_eq!(zero_failures, ErrorCategory::ALL.len());
    // A declared scenario's counters exist before its first drop.
    assert!(
        scrape
            .samples
            .iter()
            .any(|s| s.metric == "aiotest_dropped_iterations_total"
                && label(s, "scenario") == Some("checkout")
                && matches!(s.value, Value::Counter(v) if v == 0.0)),
        "{text}"
    );
}

#[test]
fn named_metrics_are_written_by_kind_with_their_tags_as_labels() {
    use crate::model::{Metric, Tags};
    let e = PrometheusExporter::new();
    let eu = Tags::from_pairs([("shop", "eu"), ("9 lives", "a\"b")]).unwrap();
    let mut snap = interval();
    for i in 1..=100u32 {
        snap.metrics
            .add(&Metric::counter("orders").unwrap(), &eu, 0.5, 1);
        snap.metrics.add(
            &Metric::time_trend("cart_wait").unwrap(),
            &Tags::new(),
            f64::from(i),
            1,
        );
        snap.metrics.add(
            &Metric::rate("order_ok").unwrap(),
            &Tags::new(),
            f64::from(u8::from(i % 4 != 0)),
            1,
        );
    }
    snap.metrics
        .add(&Metric::gauge("depth").unwrap(), &Tags::new(), 7.0, 1);
    e.update(&snap);
    e.update(&snap); // totals over intervals
    let text = e.render();
    let scrape = parse(&text);
    let find = |name: &str| {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .collect::<Vec<_>>()
    };
    let orders = find("aiotest_custom_orders_total");
    assert_eq!(orders.len(), 1, "{text}");
    assert!(
        matches!(orders[0].value, Value::Counter(v) if v == 100.0),
        "{text}"
    );
    assert_eq!(label(orders[0], "shop"), Some("eu"));
    // Escaped as the format wants (the parser leaves escapes as written).
    assert_eq!(label(orders[0], "_9_lives"), Some("a\\\"b"));
    let ok = find("aiotest_custom_order_ok_rate");
    assert!(
        matches!(ok[0].value, Value::Gauge(v) if v == 0.75),
        "{text}"
    );
    let depth = find("aiotest_custom_depth");
    assert!(
        matches!(depth[0].value, Value::Gauge(v) if v == 7.0),
        "{text}"
    );
    let wait = find("aiotest_custom_cart_wait_seconds");
    let Value::Summary(quantiles) = &wait[0].value else {
        panic!("a summary: {text}");
    };
    let p95 = quantiles.iter().find(|q| q.quantile == 0.95).unwrap().count;
    assert!((p95 - 0.095).abs() < 0.0001, "{p95}");
    for family in [
        "aiotest_custom_orders_total",
        "aiotest_custom_cart_wait_seconds",
        "aiotest_custom_order_ok_rate",
        "aiotest_custom_depth",
    ] {
        assert!(
            text.contains(&format!("# HELP {family} ")),
            "{family}: {text}"
        );
    }
    assert!(
        text.contains("aiotest_custom_cart_wait_seconds_count 200"),
        "{text}"
    );
}

#[test]
fn a_requests_own_tags_are_labels_of_its_endpoint() {
    let mut snap = Snapshot::new();
    let tags = crate::Tags::from_pairs([("group", "::checkout"), ("team-id", "web")]).unwrap();
    snap.record(&RequestRecord::ok("/pay", "POST", 200, 1_000).tagged(&tags));
    snap.record(&RequestRecord::ok("/pay", "POST", 200, 1_000));
    let exporter = PrometheusExporter::new();
    exporter.update(&snap);
    let scrape = parse(&exporter.render());
    let requests: Vec<_> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "aiotest_requests_total" && label(s, "name") == Some("/pay"))
        .collect();
    assert_eq!(requests.len(), 2, "a series per tag set");
    let tagged = requests
        .iter()
        .find(|s| label(s, "group").is_some())
        .expect("the tagged series");
    assert_eq!(label(tagged, "group"), Some("::checkout"));
    assert_eq!(
        label(tagged, "team_id"),
        Some("web"),
        "a key made a label name"
    );
    assert!(matches!(tagged.value, Value::Counter(n) if n == 1.0));
}
