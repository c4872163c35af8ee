//! k6's built-in metrics, read from a snapshot's request, iteration and check families
//! into the named model, so that one threshold form, one filter and one aggregation
//! read them all (`http_req_duration{name:/cart,group:::checkout} p(95)<200`).
//!
//! | name | kind | system tags |
//! |---|---|---|
//! | `http_reqs` | counter | scenario, name, method, status (`0`: no response), the request's own |
//! | `http_req_failed` | rate | scenario, name, method, error_code (a failure k6 has a code for: [`ErrorCategory::error_code`]), the request's own |
//! | `http_req_duration` | time trend | scenario, name, method, the request's own; per response with the timing trends, and then also status, proto, expected_response, error_code |
//! | `data_sent`, `data_received` | counter (bytes) | scenario, name, method, the request's own |
//! | `iterations`, `dropped_iterations`, `interrupted_iterations` | counter | scenario |
//! | `iteration_duration` | time trend | scenario |
//! | `checks` | rate | check, group (for a check made in a group), and its recorder's: scenario, the test's |
//! | `vus` | gauge | none: the users running, sampled by the local or master runner as each second closes |
//!
//! Every series also carries its scenario's tags (the test's and the scenario's own), as
//! a custom metric's samples do. A request's latency is kept per endpoint, not per
//! status: `status` is a tag of `http_reqs` alone.

use std::collections::BTreeMap;

use crate::ErrorCategory;
use crate::iterations::{
    DROPPED_ITERATIONS, INTERRUPTED_ITERATIONS, ITERATION_DURATION, ITERATIONS,
};
use crate::model::{MetricSet, Series, Tags};
use crate::stats::Snapshot;

/// The names [`builtin_metrics`] gives, each with its kind, as k6 names them.
pub const BUILTIN_METRICS: [&str; 11] = [
    "http_reqs",
    "http_req_failed",
    "http_req_duration",
    "data_sent",
    "data_received",
    "iterations",
    "dropped_iterations",
    "interrupted_iterations",
    "iteration_duration",
    "checks",
    "vus",
];

/// k6's request duration. Read from the endpoint figures, unless the client kept it per
/// response (with the timing trends: sending + waiting + receiving, as k6 defines it,
/// under the tags of [`RESPONSE_TAGS`] too).
pub const HTTP_REQ_DURATION: &str = "http_req_duration";

/// The system tags only a per-response sample carries (the timing trends, and
/// `http_req_duration` kept with them): a filter on one needs those samples.
pub const RESPONSE_TAGS: [&str; 4] = ["status", "proto", "expected_response", "error_code"];

/// The name of the users gauge, which the runner samples into a snapshot's named
/// metrics (the others are read from its request, iteration and check families).
pub const VUS: &str = "vus";

/// k6's trends of the timing breakdown, kept when
/// [`MetricsConfig::timing_trends`](crate::MetricsConfig::timing_trends) is on: blocked,
/// connecting, tls_handshaking, sending, waiting, receiving.
pub const TIMING_TRENDS: [&str; 6] = [
    "http_req_blocked",
    "http_req_connecting",
    "http_req_tls_handshaking",
    "http_req_sending",
    "http_req_waiting",
    "http_req_receiving",
];

/// Whether `name` is one of k6's built-in metrics this model reads.
pub fn is_builtin(name: &str) -> bool {
    BUILTIN_METRICS.contains(&name)
}

/// The built-in metrics of `snapshot` that `wanted` asks for, under their system tags
/// and each scenario's tags in `scenario_tags` (by scenario name; a scenario not there
/// has none).
pub fn builtin_metrics(
    snapshot: &Snapshot,
    scenario_tags: &BTreeMap<String, Tags>,
    wanted: impl Fn(&str) -> bool,
) -> MetricSet {
    let mut set = MetricSet::new();
    let none = Tags::new();
    let base = |scenario: &str| -> Tags {
        let mut t = scenario_tags.get(scenario).unwrap_or(&none).clone();
        t.set_checked("scenario", scenario);
        t
    };
    // Kept per response (with the timing trends): those samples are the metric, under
    // every system tag, instead of the endpoint figures.
    let per_response = snapshot.metrics.series.contains_key(HTTP_REQ_DURATION);
    let endpoint_metrics = [
        "http_reqs",
        "http_req_failed",
        "http_req_duration",
        "data_sent",
        "data_received",
    ];
    if endpoint_metrics.iter().any(|n| wanted(n)) {
        for (key, stats) in &snapshot.endpoints {
            let mut tags = base(&key.scenario).with(&key.tags);
            tags.set_checked("name", &key.name);
            tags.set_checked("method", &key.method);
            if wanted("http_reqs") {
                let mut answered = 0;
                for &(status, n) in &stats.status_codes {
                    answered += n;
                    let mut t = tags.clone();
                    t.set_checked("status", &status.to_string());
                    set.merge_series_within("http_reqs", &t, &counter(n as f64, n), usize::MAX);
                }
                let unanswered = stats.requests.saturating_sub(answered);
                if unanswered > 0 || stats.requests == 0 {
                    let mut t = tags.clone();
                    t.set_checked("status", "0");
                    set.merge_series_within(
                        "http_reqs",
                        &t,
                        &counter(unanswered as f64, unanswered),
                        usize::MAX,
                    );
                }
            }
            if wanted("http_req_failed") {
                // Failures of a category k6 has a code for are a series of their own,
                // tagged `error_code`; the rest (and every success) one without it.
                let mut coded = 0;
                for c in ErrorCategory::ALL {
                    let n = stats.failures_by_category[c.index()];
                    let Some(code) = c.error_code(0).filter(|_| n > 0) else {
                        continue;
                    };
                    coded += n;
                    let mut t = tags.clone();
                    t.set_checked("error_code", &code.to_string());
                    set.merge_series_within("http_req_failed", &t, &rate(n, n), usize::MAX);
                }
                let rest = rate(
                    stats.requests.saturating_sub(coded),
                    stats.failures.saturating_sub(coded),
                );
                if rest.samples > 0 || coded == 0 {
                    set.merge_series_within("http_req_failed", &tags, &rest, usize::MAX);
                }
            }
            if wanted(HTTP_REQ_DURATION) && !per_response {
                let trend = Series::time_trend_us(
                    stats.timed(),
                    stats.duration_sum_us,
                    stats.min_us,
                    stats.max_us,
                    &stats.histogram,
                );
                set.merge_series_within("http_req_duration", &tags, &trend, usize::MAX);
            }
            if wanted("data_sent") {
                let c = counter(stats.bytes_sent as f64, stats.requests);
                set.merge_series_within("data_sent", &tags, &c, usize::MAX);
            }
            if wanted("data_received") {
                let c = counter(stats.bytes_received as f64, stats.requests);
                set.merge_series_within("data_received", &tags, &c, usize::MAX);
            }
        }
    }
    let with_scenario_tags = |tags: &Tags| -> Tags {
        match tags.get("scenario").and_then(|sc| scenario_tags.get(sc)) {
            Some(theirs) => theirs.with(tags),
            None => tags.clone(),
        }
    };
    // Iterations are recorded in the named model, under their scenario's tags; a
    // scenario that ran and dropped none still has a `dropped_iterations` series:
    // `count<1` holds on it.
    for name in [
        ITERATIONS,
        ITERATION_DURATION,
        DROPPED_ITERATIONS,
        INTERRUPTED_ITERATIONS,
    ] {
        if !wanted(name) {
            continue;
        }
        if let Some(by_tags) = snapshot.metrics.series.get(name) {
            for (tags, series) in by_tags {
                set.merge_series_within(name, &with_scenario_tags(tags), series, usize::MAX);
            }
        }
    }
    if wanted(DROPPED_ITERATIONS)
        && let Some(ran) = snapshot.metrics.series.get(ITERATIONS)
    {
        for tags in ran.keys() {
            let tags = with_scenario_tags(tags);
            if set.select(DROPPED_ITERATIONS, &tags).is_none() {
                set.merge_series_within(DROPPED_ITERATIONS, &tags, &counter(0.0, 1), usize::MAX);
            }
        }
    }
    // Recorded in the named model itself.
    for name in [crate::checks::CHECKS, VUS, HTTP_REQ_DURATION] {
        if wanted(name)
            && let Some(by_tags) = snapshot.metrics.series.get(name)
        {
            for (tags, series) in by_tags {
                set.merge_series_within(name, tags, series, usize::MAX);
            }
        }
    }
    set
}

/// A check's group and name from the path it is counted under: `::outer::inner::name`
/// for one made in a group (the name is what follows the last `::`), the name alone
/// otherwise.
pub fn split_check_path(path: &str) -> (Option<&str>, &str) {
    match path.strip_prefix("::").and_then(|_| path.rfind("::")) {
        Some(at) if at > 0 => (Some(&path[..at]), &path[at + 2..]),
        _ => (None, path),
    }
}

fn rate(samples: u64, nonzero: u64) -> Series {
    Series::rate(samples, nonzero)
}

fn counter(sum: f64, samples: u64) -> Series {
    Series::counter(sum, samples)
}

#[cfg(test)]
mod tests;
