use std::collections::BTreeMap;

use super::*;
use crate::{Aggregation, ErrorCategory, RequestRecord};

fn tags(pairs: &[(&str, &str)]) -> Tags {
    Tags::from_pairs(pairs.iter().copied()).unwrap()
}

fn snapshot() -> Snapshot {
    let mut s = Snapshot::new();
    let checkout = tags(&[("group", "::checkout")]);
    for ms in [10, 20, 30, 40] {
        s.record(&RequestRecord::ok("/cart", "GET", 200, ms * 1_000));
    }
    s.record(
        &RequestRecord::ok("/cart", "GET", 500, 50_000).failed(ErrorCategory::HttpStatus, None),
    );
    s.record(
        &RequestRecord {
            bytes_sent: 300,
            bytes_received: 700,
            ..RequestRecord::ok("/pay", "POST", 200, 100_000)
        }
        .tagged(&checkout),
    );
    let mut refused = RequestRecord::ok("/pay", "POST", 0, 0).failed(ErrorCategory::Connect, None);
    refused.status = None;
    s.record(&refused.tagged(&checkout));
    let mut it = crate::ScenarioStats::default();
    it.completed(250_000);
    it.dropped = 2;
    s.count_iterations("default", &it);
    s.count_check("::checkout::paid", &Tags::new(), 3, 1);
    s.count_check("cart shown", &Tags::new(), 5, 0);
    s
}

fn value(set: &MetricSet, name: &str, filter: &[(&str, &str)], agg: Aggregation) -> Option<f64> {
    set.select(name, &tags(filter))?.value(agg, 10.0)
}

#[test]
fn requests_are_counted_by_status_and_tags() {
    let scenario_tags = BTreeMap::from([("default".to_owned(), tags(&[("env", "staging")]))]);
    let set = builtin_metrics(&snapshot(), &scenario_tags, |_| true);
    let count = |f: &[(&str, &str)]| value(&set, "http_reqs", f, Aggregation::Count);
    assert_eq!(count(&[]), Some(7.0));
    assert_eq!(count(&[("status", "200")]), Some(5.0));
    assert_eq!(count(&[("status", "500")]), Some(1.0));
    assert_eq!(
        count(&[("status", "0")]),
        Some(1.0),
        "the refused request has no status"
    );
    assert_eq!(count(&[("group", "::checkout")]), Some(2.0));
    assert_eq!(count(&[("env", "staging"), ("method", "GET")]), Some(5.0));
    assert_eq!(count(&[("env", "prod")]), None);
    let failed = value(
        &set,
        "http_req_failed",
        &[("name", "/cart")],
        Aggregation::Rate,
    );
    assert_eq!(failed, Some(0.2));
    // k6's error_code: the refused connection's failure has 1210; the error status has
    // no code here (the count by status is http_reqs'), and every request is in one
    // series or the other.
    let failed = |f: &[(&str, &str)]| {
        let s = set.select("http_req_failed", &tags(f)).unwrap();
        (s.samples, s.value(Aggregation::Rate, 1.0))
    };
    assert_eq!(failed(&[("error_code", "1210")]), (1, Some(1.0)));
    assert_eq!(failed(&[]), (7, Some(2.0 / 7.0)));
    assert_eq!(ErrorCategory::HttpStatus.error_code(503), Some(1503));
    assert_eq!(ErrorCategory::HttpStatus.error_code(302), None);
    assert_eq!(ErrorCategory::Timeout.error_code(0), Some(1050));
    let sent = value(
        &set,
        "data_sent",
        &[("scenario", "default")],
        Aggregation::Count,
    );
    assert_eq!(sent, Some(300.0));
}

#[test]
fn durations_are_the_endpoint_figures_in_milliseconds() {
    let snap = snapshot();
    let set = builtin_metrics(&snap, &BTreeMap::new(), |_| true);
    let cart = |agg| value(&set, "http_req_duration", &[("name", "/cart")], agg);
    assert_eq!(cart(Aggregation::Count), Some(5.0));
    assert_eq!(cart(Aggregation::Min), Some(10.0));
    assert_eq!(cart(Aggregation::Max), Some(50.0));
    assert_eq!(cart(Aggregation::Avg), Some(30.0));
    // Percentiles within the histogram's precision (1 part in 2,048).
    let med = cart(Aggregation::Med).unwrap();
    assert!((med - 30.0).abs() <= 30.0 / 1_000.0, "{med}");
    // The refused request has no duration: one timed request in the group.
    let pay = value(
        &set,
        "http_req_duration",
        &[("group", "::checkout")],
        Aggregation::Count,
    );
    assert_eq!(pay, Some(1.0));
    let it = |agg| value(&set, "iteration_duration", &[], agg);
    assert_eq!(it(Aggregation::Max), Some(250.0));
    assert_eq!(
        value(&set, "iterations", &[], Aggregation::Count),
        Some(1.0)
    );
    assert_eq!(
        value(&set, "dropped_iterations", &[], Aggregation::Count),
        Some(2.0)
    );
}

#[test]
fn checks_carry_their_group() {
    let set = builtin_metrics(&snapshot(), &BTreeMap::new(), |n| n == "checks");
    assert_eq!(set.series.len(), 1, "only what was asked for is built");
    let rate = |f: &[(&str, &str)]| value(&set, "checks", f, Aggregation::Rate);
    assert_eq!(rate(&[]), Some(8.0 / 9.0));
    assert_eq!(rate(&[("group", "::checkout")]), Some(0.75));
    assert_eq!(rate(&[("check", "paid")]), Some(0.75));
    assert_eq!(rate(&[("check", "cart shown")]), Some(1.0));
    assert_eq!(split_check_path("::a::b::c"), (Some("::a::b"), "c"));
    assert_eq!(split_check_path("plain"), (None, "plain"));
    assert_eq!(split_check_path("::"), (None, "::"));
}

#[test]
fn the_view_of_a_merge_is_the_merge_of_the_views() {
    let (a, b) = (snapshot(), snapshot());
    let mut merged = a.clone();
    merged.merge(&b);
    let none = BTreeMap::new();
    let mut views = builtin_metrics(&a, &none, |_| true);
    views.merge(&builtin_metrics(&b, &none, |_| true));
    assert_eq!(builtin_metrics(&merged, &none, |_| true), views);
}

/// Kept per response (with the timing trends), `http_req_duration` is those samples,
/// under every system tag, and no longer the endpoint figures.
#[test]
fn a_per_response_duration_replaces_the_endpoint_figures() {
    let mut snap = snapshot();
    let d = crate::Metric::time_trend(HTTP_REQ_DURATION).unwrap();
    let ok = tags(&[
        ("name", "/cart"),
        ("status", "200"),
        ("expected_response", "true"),
    ]);
    let bad = tags(&[
        ("name", "/cart"),
        ("status", "500"),
        ("expected_response", "false"),
    ]);
    for ms in [3.0, 4.0] {
        snap.metrics.add(&d, &ok, ms, 1);
    }
    snap.metrics.add(&d, &bad, 9.0, 1);
    let set = builtin_metrics(&snap, &BTreeMap::new(), |_| true);
    let dur = |f: &[(&str, &str)], agg| value(&set, HTTP_REQ_DURATION, f, agg);
    assert_eq!(
        dur(&[], Aggregation::Count),
        Some(3.0),
        "the endpoints' are left out"
    );
    assert_eq!(dur(&[("status", "200")], Aggregation::Max), Some(4.0));
    assert_eq!(
        dur(&[("expected_response", "false")], Aggregation::Count),
        Some(1.0)
    );
    // The other built-in metrics still read the endpoints.
    assert_eq!(value(&set, "http_reqs", &[], Aggregation::Count), Some(7.0));
}
