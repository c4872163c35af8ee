//! `handleSummary(data)`: the run's summary in k6's data shape, given to the script, and
//! what it returns written where it says (`stdout`, `stderr`, files).

use std::collections::BTreeMap;
use std::sync::Arc;

use aiotest_core::BoxError;
use aiotest_runner::Summary;
use aiotest_runner::output::Output;
use serde_json::{Map, Value, json};

use crate::script::Script;
use crate::vu::Vu;

/// The trend figures k6 shows by default (`summaryTrendStats`).
pub(crate) const TREND_STATS: [&str; 6] = ["avg", "min", "med", "max", "p(90)", "p(95)"];

/// Checks `summaryTrendStats`: each a trend's figure (`avg`, `min`, `med`, `max`,
/// `count`, `p(N)`).
pub(crate) fn trend_stats(given: &[String]) -> Result<Vec<String>, String> {
    if given.is_empty() {
        return Err("options.summaryTrendStats: name at least one figure".into());
    }
    for stat in given {
        match aiotest_metrics::Aggregation::parse(stat) {
            Some(aiotest_metrics::Aggregation::Rate | aiotest_metrics::Aggregation::Value)
            | None => {
                return Err(format!(
                    "options.summaryTrendStats: `{stat}` is not a trend's figure (avg, min, med, max, count, p(N))"
                ));
            }
            Some(_) => {}
        }
    }
    Ok(given.to_vec())
}

/// Each trend row's figures of `stats`, by the row's key in `data`'s `metrics`.
type TrendValues = BTreeMap<String, Map<String, Value>>;

/// k6's `data` for `handleSummary`: `metrics` (by name, and `name{tag:value}` for the
/// tag sets a threshold names), `root_group` (checks by group), `state`, `options`.
pub(crate) fn data(summary: &Summary, stats: &[String], trends: &TrendValues) -> Value {
    let mut metrics = Map::new();
    for row in &summary.metrics {
        let key = row_key(row);
        let mut values = Map::new();
        match trends.get(&key) {
            Some(v) if row.kind == "trend" => values = v.clone(),
            _ => {
                for (k, v) in &row.values {
                    let shown = row.kind != "trend" || stats.iter().any(|s| s == k);
                    if shown && let Some(n) = serde_json::Number::from_f64(*v) {
                        values.insert(k.clone(), Value::Number(n));
                    }
                }
            }
        }
        if row.kind == "rate" {
            let rate = row.values.get("rate").copied().unwrap_or(0.0);
            let passes = (rate * row.samples as f64).round() as u64;
            values.insert("passes".into(), json!(passes));
            values.insert("fails".into(), json!(row.samples - passes.min(row.samples)));
        }
        metrics.insert(
            key,
            json!({
                "type": row.kind,
                "contains": if row.time { "time" } else { "default" },
                "values": values,
            }),
        );
    }
    for t in &summary.thresholds {
        let (metric, expr) = t.expr.split_once(' ').unwrap_or((t.expr.as_str(), ""));
        let entry = metrics
            .entry(metric.to_owned())
            .or_insert_with(|| json!({ "values": {} }));
        if let Some(o) = entry.as_object_mut() {
            let th = o
                .entry("thresholds")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Some(th) = th.as_object_mut() {
                th.insert(
                    expr.trim_end_matches(":abort").to_owned(),
                    json!({ "ok": t.ok }),
                );
            }
        }
    }
    json!({
        "metrics": metrics,
        "root_group": root_group(summary),
        "state": {
            "testRunDurationMs": summary.duration_s * 1e3,
            "isStdOutTTY": false,
            "isStdErrTTY": false,
        },
        "options": { "summaryTrendStats": stats },
    })
}

/// A row's key in k6's `metrics`: `name`, or `name{k:v,...}` for a tag set.
fn row_key(row: &aiotest_runner::summary::MetricRow) -> String {
    match &row.tags {
        None => row.name.clone(),
        Some(tags) => {
            let t: Vec<String> = tags.iter().map(|(k, v)| format!("{k}:{v}")).collect();
            format!("{}{{{}}}", row.name, t.join(","))
        }
    }
}

/// The figures of `stats` of every trend row of `summary`, read from the run's total.
fn trend_values(
    summary: &Summary,
    total: &aiotest_metrics::Snapshot,
    stats: &[String],
) -> TrendValues {
    let secs = summary.duration_s;
    let builtin = aiotest_metrics::builtin_metrics(total, &BTreeMap::new(), |_| true);
    let mut out = TrendValues::new();
    for row in summary.metrics.iter().filter(|r| r.kind == "trend") {
        let pairs = row.tags.iter().flatten();
        let Ok(tags) = aiotest_metrics::Tags::from_pairs(pairs) else {
            continue;
        };
        let series = if aiotest_metrics::is_builtin(&row.name) {
            builtin.select(&row.name, &tags)
        } else {
            total.metrics.select(&row.name, &tags)
        };
        let Some(series) = series else { continue };
        let mut values = Map::new();
        for stat in stats {
            let Some(agg) = aiotest_metrics::Aggregation::parse(stat) else {
                continue;
            };
            let v = series
                .value(agg, secs)
                .map(|v| (v * 1_000.0).round() / 1_000.0);
            if let Some(n) = v.and_then(serde_json::Number::from_f64) {
                values.insert(stat.clone(), Value::Number(n));
            }
        }
        out.insert(row_key(row), values);
    }
    out
}

/// Checks by group, as k6 nests them.
fn root_group(summary: &Summary) -> Value {
    #[derive(Default)]
    struct Group {
        groups: BTreeMap<String, Group>,
        checks: Vec<Value>,
    }
    fn render(name: &str, path: &str, g: &Group) -> Value {
        let groups: Vec<Value> = g
            .groups
            .iter()
            .map(|(n, sub)| render(n, &format!("{path}::{n}"), sub))
            .collect();
        json!({ "name": name, "path": path, "groups": groups, "checks": g.checks })
    }
    let mut root = Group::default();
    for c in &summary.checks {
        // `::outer::inner::name` is a check made in a group; `name` one made outside.
        let (path, name) = match c.name.strip_prefix("::").and_then(|p| p.rsplit_once("::")) {
            Some((groups, name)) => (groups.split("::").collect::<Vec<_>>(), name),
            None => (Vec::new(), c.name.as_str()),
        };
        let mut g = &mut root;
        for part in &path {
            g = g.groups.entry((*part).to_owned()).or_default();
        }
        let group_path: String = path.iter().map(|p| format!("::{p}")).collect();
        g.checks.push(json!({
            "name": name,
            "path": format!("{group_path}::{name}"),
            "passes": c.passes,
            "fails": c.fails,
        }));
    }
    render("", "", &root)
}

/// Calls the script's `handleSummary` at the end of the run and writes what it returns.
pub struct HandleSummary {
    script: Arc<Script>,
    /// `summaryTrendStats`.
    stats: Vec<String>,
    /// Their values, read when the run's total is known.
    trends: TrendValues,
}

impl HandleSummary {
    pub(crate) fn new(script: Arc<Script>, stats: Vec<String>) -> Self {
        HandleSummary {
            script,
            stats,
            trends: TrendValues::new(),
        }
    }
}

impl Output for HandleSummary {
    fn name(&self) -> &str {
        "handleSummary"
    }

    fn summary(&mut self, summary: &mut Summary, total: &aiotest_metrics::Snapshot) {
        self.trends = trend_values(summary, total, &self.stats);
    }

    fn end(&mut self, summary: &Summary) -> Result<(), BoxError> {
        let data = data(summary, &self.stats, &self.trends).to_string();
        let data: Arc<str> = Arc::from(data.as_str());
        let mut vu = Vu::new(&self.script, 0)?;
        let out = vu
            .call_sync("handleSummary", data)
            .map_err(|e| format!("handleSummary() threw: {e}"))?;
        let Some(out) = out else {
            return Ok(());
        };
        let outputs: BTreeMap<String, Value> = serde_json::from_str(&out).map_err(
            |_| "handleSummary() must return an object: { stdout: '...', 'file.json': '...' }",
        )?;
        for (target, content) in outputs {
            let text = match content {
                Value::String(s) => s,
                other => other.to_string(),
            };
            match target.as_str() {
                "stdout" => print!("{text}"),
                "stderr" => eprint!("{text}"),
                path => std::fs::write(path, text)
                    .map_err(|e| format!("handleSummary(): cannot write {path}: {e}"))?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_nest_by_group_as_k6_has_them() {
        let mut s = Summary::new(
            &aiotest_metrics::Snapshot::default(),
            std::time::Duration::from_secs(2),
        );
        for (name, passes) in [
            ("ok", 3),
            ("::checkout::pay::paid", 2),
            ("::checkout::listed", 1),
        ] {
            s.checks.push(aiotest_runner::summary::CheckRow {
                name: name.into(),
                passes,
                fails: 0,
                rate: 100.0,
            });
        }
        let stats: Vec<String> = TREND_STATS.iter().map(|s| (*s).to_owned()).collect();
        let d = data(&s, &stats, &TrendValues::new());
        let root = &d["root_group"];
        assert_eq!(root["checks"][0]["name"], "ok");
        let checkout = &root["groups"][0];
        assert_eq!(checkout["path"], "::checkout");
        assert_eq!(checkout["checks"][0]["path"], "::checkout::listed");
        assert_eq!(checkout["groups"][0]["checks"][0]["passes"], 2);
        assert_eq!(d["state"]["testRunDurationMs"], 2000.0);
    }
}
