//! Named metrics in the text exposition format, written from their run totals.
//!
//! The `metrics` crate's counters take whole numbers and it has no summary type, so named
//! metrics are written here, after the exporter's own: each as `aiotest_custom_NAME`
//! (a namespace of their own: a metric called `requests` never collides with
//! `aiotest_requests_total`), its tags as labels.
//!
//! | kind | written as |
//! |---|---|
//! | counter | counter `aiotest_custom_NAME_total` (the sum) |
//! | gauge | gauge `aiotest_custom_NAME` (the last value) |
//! | rate | gauge `aiotest_custom_NAME_rate` (the non-zero share, 0 to 1) |
//! | trend | summary `aiotest_custom_NAME` with quantiles 0.5, 0.9, 0.95, 0.99, `_sum` and `_count`; a time trend in seconds as `aiotest_custom_NAME_seconds` |

use std::fmt::Write as _;

use crate::model::{MetricKind, MetricSet, Series, Tags, Values};

/// The quantiles a trend's summary shows.
const QUANTILES: [f64; 4] = [0.5, 0.9, 0.95, 0.99];

/// Appends the text exposition of `set` to `out`.
pub(crate) fn render(set: &MetricSet, out: &mut String) {
    for (name, by_tags) in &set.series {
        // The built-in ones recorded in the named model have families of their own
        // (`aiotest_users`, `aiotest_checks_total`, `aiotest_iterations_total`, ...).
        if crate::is_builtin(name) {
            continue;
        }
        let Some(first) = by_tags.values().next() else {
            continue;
        };
        let base = format!("aiotest_custom_{name}");
        let (family, kind, help) = match (first.kind(), first.time) {
            (MetricKind::Counter, _) => (format!("{base}_total"), "counter", "sum"),
            (MetricKind::Gauge, _) => (base, "gauge", "last value"),
            (MetricKind::Rate, _) => (format!("{base}_rate"), "gauge", "share of non-zero samples"),
            (MetricKind::Trend, true) => (
                format!("{base}_seconds"),
                "summary",
                "distribution, in seconds",
            ),
            (MetricKind::Trend, false) => (base, "summary", "distribution"),
        };
        let _ = writeln!(
            out,
            "# HELP {family} Named metric `{name}` ({}): {help}.",
            first.kind()
        );
        let _ = writeln!(out, "# TYPE {family} {kind}");
        for (tags, series) in by_tags {
            write_series(out, &family, tags, series);
        }
        out.push('\n');
    }
}

fn write_series(out: &mut String, family: &str, tags: &Tags, s: &Series) {
    let labels = labels(tags, None);
    match &s.values {
        Values::Counter { sum } => line(out, family, &labels, *sum),
        Values::Gauge { value, .. } => line(out, family, &labels, *value),
        Values::Rate { nonzero } => {
            line(
                out,
                family,
                &labels,
                *nonzero as f64 / s.samples.max(1) as f64,
            );
        }
        Values::Trend(t) => {
            let unit = if s.time { 1e-3 } else { 1.0 };
            for q in QUANTILES {
                let v = t.percentile(q).unwrap_or(0.0) * unit;
                line(
                    out,
                    family,
                    &labels_with(tags, "quantile", &q.to_string()),
                    v,
                );
            }
            line(out, &format!("{family}_sum"), &labels, t.sum * unit);
            line(out, &format!("{family}_count"), &labels, t.count as f64);
        }
    }
}

fn line(out: &mut String, name: &str, labels: &str, v: f64) {
    let _ = writeln!(out, "{name}{labels} {v}");
}

/// `key` made a valid label name: other characters than ASCII letters, digits and `_`
/// become `_`, a leading digit gets a `_` before it.
pub(crate) fn label_name(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 1);
    if key.starts_with(|c: char| c.is_ascii_digit()) {
        out.push('_');
    }
    out.extend(key.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        }
    }));
    out
}

fn labels_with(tags: &Tags, key: &str, value: &str) -> String {
    labels(tags, Some((key, value)))
}

/// `{k="v",...}`: keys made valid label names (other characters become `_`, a leading
/// digit gets a `_` before it), values escaped; nothing when there are none.
fn labels(tags: &Tags, extra: Option<(&str, &str)>) -> String {
    if tags.is_empty() && extra.is_none() {
        return String::new();
    }
    let mut out = String::from("{");
    for (i, (k, v)) in tags.iter().chain(extra).enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&label_name(k));
        out.push_str("=\"");
        for c in v.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
    out
}
