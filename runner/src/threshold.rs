//! k6-style thresholds: pass/fail criteria checked at the end of a run (and, with
//! `:abort`, while it runs).
//!
//! Grammar: `METRIC[{FILTER[,FILTER]}] OP VALUE[UNIT][:abort]`.
//!
//! | metric | meaning | value |
//! |---|---|---|
//! | `p50`, `p90`, `p95`, `p99`, `p99.9`, any `pNN` or `p(NN)` | duration percentile | `us`, `ms` (default), `s`, `m` |
//! | `avg` or `mean`, `min`, `max` | duration | as above |
//! | `failures` | failed requests: with `%` the rate, without it the count | `1%` or `10` |
//! | `rps` | requests per second over the run | number |
//! | `requests` | request count | number |
//! | `iterations` | completed iterations | number |
//! | `dropped_iterations` | arrival-rate iterations dropped for want of a free user | number |
//!
//! | `checks` | the share of checks that passed: responses judged by a request's own check (failing it when it fails) and, unfiltered, every named check's verdicts | `99%` |
//!
//! `OP` is `<`, `<=`, `>` or `>=`. Filters: `name=/login` restricts a request metric to
//! requests of that name (all methods); `scenario=checkout` to one scenario's requests or
//! iterations; `check=has token` the checks metric to one named check; `tag=auth` to the
//! requests of the tasks a scenario file tags `auth`. Examples: `p95<300ms`, `p99{name=/login}<1s`,
//! `p95{scenario=browse,name=/items}<200ms`, `failures<1%`, `rps>100`,
//! `dropped_iterations{scenario=rate}<1`, `p95<500:abort`. For open-model (arrival-rate)
//! requests, durations count from each iteration's intended start.

use std::collections::BTreeMap;
use std::fmt;

use aiotest_metrics::{Aggregation, EndpointStats, ErrorCategory, Snapshot, Tags};
use serde::Serialize;

/// A threshold expression that does not parse, with the expression and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("threshold `{expr}`: {reason}")]
pub struct ThresholdError {
    /// The expression given.
    pub expr: String,
    /// What is wrong with it.
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Metric {
    Percentile(f64),
    Mean,
    Min,
    Max,
    FailureRate,
    Failures,
    Rps,
    Requests,
    Iterations,
    DroppedIterations,
    /// The share of judged responses whose check passed (`checks>99%`).
    ChecksRate,
    /// Written `checks` without `%`: only the rate is taken.
    Checks,
    /// A named metric read by an aggregation (k6's form); `percent` when the limit was
    /// written in %.
    Named {
        agg: Aggregation,
        percent: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    /// `==` (k6's form only).
    Eq,
    /// `!=` (k6's form only).
    Ne,
}

/// A parsed threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    expr: String,
    metric: Metric,
    name: Option<String>,
    scenario: Option<String>,
    /// `check=`: one named check.
    check: Option<String>,
    /// `tag=`: the requests of the tasks with this tag.
    tag: Option<String>,
    /// The request names `tag` stands for, once known.
    tag_names: Option<Vec<String>>,
    /// A named metric and its tag filter (k6's form).
    named: Option<(String, Tags)>,
    op: Op,
    /// In the metric's base unit: ms for durations, a fraction for rates.
    limit: f64,
    abort: bool,
}

/// A threshold's verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThresholdResult {
    /// The expression as given.
    pub expr: String,
    /// Whether it held. A threshold that matched no request fails: a check that cannot
    /// fail is no check.
    pub ok: bool,
    /// The measured value, in the expression's unit (ms for durations, % for a rate).
    pub value: f64,
    /// Requests its selector matched.
    pub matched: u64,
    /// Why it failed when the value says nothing (`no requests matched`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expr)
    }
}

impl Threshold {
    /// Parses `expr`.
    pub fn parse(expr: &str) -> Result<Self, ThresholdError> {
        let err = |reason: &str| ThresholdError {
            expr: expr.to_owned(),
            reason: reason.to_owned(),
        };
        // Spaces are insignificant outside the filter; inside it they are part of the
        // name (`{name=/search results}`).
        let mut text = String::with_capacity(expr.len());
        let mut in_filter = false;
        for c in expr.chars() {
            match c {
                '{' => in_filter = true,
                '}' => in_filter = false,
                c if c.is_whitespace() && !in_filter => continue,
                _ => {}
            }
            text.push(c);
        }
        let (text, abort) = match text.strip_suffix(":abort") {
            Some(t) => (t.to_owned(), true),
            None => (text, false),
        };
        if let Some(named) = parse_named(expr.trim().trim_end_matches(":abort")) {
            let (name, tags, agg, op, limit, percent) = named.map_err(|r| err(&r))?;
            return Ok(Threshold {
                expr: expr.trim().to_owned(),
                metric: Metric::Named { agg, percent },
                name: None,
                scenario: None,
                check: None,
                tag: None,
                tag_names: None,
                named: Some((name, tags)),
                op,
                limit,
                abort,
            });
        }
        let after_filter = text.rfind('}').map_or(0, |i| i + 1);
        let op_at = text[after_filter..]
            .find(['<', '>'])
            .map(|i| i + after_filter)
            .ok_or_else(|| err("no comparison: use <, <=, > or >="))?;
        let (lhs, rest) = text.split_at(op_at);
        let (op, value) = if let Some(v) = rest.strip_prefix("<=") {
            (Op::Le, v)
        } else if let Some(v) = rest.strip_prefix(">=") {
            (Op::Ge, v)
        } else if let Some(v) = rest.strip_prefix('<') {
            (Op::Lt, v)
        } else if let Some(v) = rest.strip_prefix('>') {
            (Op::Gt, v)
        } else {
            return Err(err("no comparison: use <, <=, > or >="));
        };
        let (metric_text, filters) = match lhs.split_once('{') {
            Some((m, filter)) => {
                let filter = filter
                    .strip_suffix('}')
                    .ok_or_else(|| err("unclosed `{` in the filter"))?;
                (m, parse_filters(filter).map_err(|r| err(&r))?)
            }
            None => (lhs, Filters::default()),
        };
        let Filters {
            name,
            scenario,
            check,
            tag,
        } = filters;
        let metric = parse_metric(metric_text).ok_or_else(|| {
            err("unknown metric: use p50, p90, p95, p99, pNN, avg, min, max, failures, rps, requests, iterations, dropped_iterations or checks, or a named metric in k6's form, e.g. `cart_total{shop:eu} p(95)<200`")
        })?;
        if name.is_some() && matches!(metric, Metric::Iterations | Metric::DroppedIterations) {
            return Err(err(
                "iterations belong to scenarios: filter them by {scenario=...}",
            ));
        }
        if check.is_some() && !matches!(metric, Metric::Checks) {
            return Err(err("check=... filters the checks metric only"));
        }
        if check.is_some() && (name.is_some() || scenario.is_some() || tag.is_some()) {
            return Err(err(
                "a named check counts every response it judged: filter it by check=... alone",
            ));
        }
        if tag.is_some() && matches!(metric, Metric::Iterations | Metric::DroppedIterations) {
            return Err(err(
                "iterations belong to scenarios: filter them by {scenario=...}",
            ));
        }
        let (metric, limit) = parse_value(metric, value).map_err(|r| err(&r))?;
        Ok(Threshold {
            expr: expr.trim().to_owned(),
            metric,
            name,
            scenario,
            check,
            tag,
            tag_names: None,
            named: None,
            op,
            limit,
            abort,
        })
    }

    /// Whether a failure should stop the run at once.
    pub fn aborts(&self) -> bool {
        self.abort
    }

    /// The request name its selector names (`{name=...}`), if any.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The tag its selector names (`{tag=...}`), if any.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The same threshold with its `tag=` standing for the requests named `names` (the
    /// scenario file knows which requests carry which tag).
    pub fn with_tag_names(mut self, names: Vec<String>) -> Self {
        self.tag_names = Some(names);
        self
    }

    /// The metric a threshold in k6's form reads (`http_req_waiting{...} p(95)<200`).
    pub fn metric_name(&self) -> Option<&str> {
        self.named.as_ref().map(|(name, _)| name.as_str())
    }

    /// Whether it reads samples only the timing trends keep
    /// ([`MetricsConfig::timing_trends`](aiotest_metrics::MetricsConfig::timing_trends)):
    /// a part of the timing breakdown, or `http_req_duration` filtered by a tag only a
    /// response has (`status`, `proto`, `expected_response`, `error_code`).
    pub fn needs_timings(&self) -> bool {
        let Some((name, filter)) = &self.named else {
            return false;
        };
        aiotest_metrics::TIMING_TRENDS.contains(&name.as_str())
            || (name == aiotest_metrics::HTTP_REQ_DURATION
                && filter
                    .iter()
                    .any(|(k, _)| aiotest_metrics::RESPONSE_TAGS.contains(&k)))
    }

    /// The scenario its selector names (`{scenario=...}`), if any.
    pub fn scenario(&self) -> Option<&str> {
        self.scenario.as_deref()
    }

    /// The verdict for `snapshot` over `run_secs` seconds, for a test without tags.
    pub fn evaluate(&self, snapshot: &Snapshot, run_secs: f64) -> ThresholdResult {
        self.evaluate_in(snapshot, run_secs, &BTreeMap::new())
    }

    /// The verdict for `snapshot` over `run_secs` seconds, each scenario's samples under
    /// its tags in `scenario_tags` (see [`crate::output::RunInfo::scenario_tags`]).
    pub fn evaluate_in(
        &self,
        snapshot: &Snapshot,
        run_secs: f64,
        scenario_tags: &BTreeMap<String, Tags>,
    ) -> ThresholdResult {
        if let (Some((name, tags)), Metric::Named { agg, percent }) = (&self.named, self.metric) {
            let builtin;
            let set = if aiotest_metrics::is_builtin(name) {
                builtin = aiotest_metrics::builtin_metrics(snapshot, scenario_tags, |n| n == name);
                &builtin
            } else {
                &snapshot.metrics
            };
            return self.evaluate_named(set, run_secs, name, tags, agg, percent);
        }
        let mut stats = EndpointStats::default();
        let tagged = |name: &str| match (&self.tag, &self.tag_names) {
            (None, _) => true,
            (Some(_), Some(names)) => names.iter().any(|n| n == name),
            (Some(_), None) => false,
        };
        for (k, s) in &snapshot.endpoints {
            if self.check.is_none()
                && self.name.as_deref().is_none_or(|n| n == k.name)
                && self.scenario.as_deref().is_none_or(|sc| sc == k.scenario)
                && tagged(&k.name)
            {
                stats.merge(s);
            }
        }
        // Named checks: one (`check=`), or all of them with the unfiltered `checks`.
        let mut named = aiotest_metrics::CheckStats::default();
        let unfiltered = self.name.is_none() && self.scenario.is_none() && self.tag.is_none();
        for (n, c) in &snapshot.checks() {
            if self.check.as_deref().map_or(unfiltered, |want| want == n) {
                named.merge(c);
            }
        }
        let mut iterations = aiotest_metrics::ScenarioStats::default();
        let mut scenarios_seen = 0u64;
        for (name, it) in &snapshot.scenarios() {
            if self.scenario.as_deref().is_none_or(|sc| sc == name) {
                iterations.merge(it);
                scenarios_seen += 1;
            }
        }
        let (value, shown) = match self.metric {
            Metric::Percentile(q) => {
                let v = stats.percentile_us(q) as f64 / 1_000.0;
                (v, v)
            }
            Metric::Mean => (stats.mean_us() / 1_000.0, stats.mean_us() / 1_000.0),
            Metric::Min => {
                let v = stats.min_us.unwrap_or(0) as f64 / 1_000.0;
                (v, v)
            }
            Metric::Max => {
                let v = stats.max_us.unwrap_or(0) as f64 / 1_000.0;
                (v, v)
            }
            Metric::FailureRate => {
                let rate = if stats.requests == 0 {
                    0.0
                } else {
                    stats.failures as f64 / stats.requests as f64
                };
                (rate, rate * 100.0)
            }
            Metric::Failures => (stats.failures as f64, stats.failures as f64),
            Metric::Rps => {
                let v = if run_secs > 0.0 {
                    stats.requests as f64 / run_secs
                } else {
                    0.0
                };
                (v, v)
            }
            Metric::Requests => (stats.requests as f64, stats.requests as f64),
            Metric::Iterations => (iterations.iterations as f64, iterations.iterations as f64),
            Metric::DroppedIterations => (iterations.dropped as f64, iterations.dropped as f64),
            // Read by `evaluate_named`.
            Metric::Named { .. } => (0.0, 0.0),
            Metric::ChecksRate | Metric::Checks => {
                let failed = stats.failures_by_category[ErrorCategory::CheckFailed.index()];
                let judged = stats.checks + named.total();
                let passed = stats.checks.saturating_sub(failed) + named.passes;
                let rate = if judged == 0 {
                    0.0
                } else {
                    passed as f64 / judged as f64
                };
                (rate, rate * 100.0)
            }
        };
        let holds = self.op.holds(value, self.limit);
        // A latency threshold needs timed requests: interrupted ones have no latency.
        // An iteration threshold needs its scenario to have run.
        let (judged, matched) = match self.metric {
            Metric::Percentile(_) | Metric::Mean | Metric::Min | Metric::Max => {
                (stats.timed(), stats.requests)
            }
            Metric::Iterations | Metric::DroppedIterations => (scenarios_seen, scenarios_seen),
            Metric::ChecksRate | Metric::Checks if self.check.is_some() => {
                (named.total(), named.total())
            }
            Metric::ChecksRate | Metric::Checks => {
                (stats.checks + named.total(), stats.requests + named.total())
            }
            _ => (stats.requests, stats.requests),
        };
        let reason = (judged == 0).then(|| match self.metric {
            Metric::Iterations | Metric::DroppedIterations => "no scenario matched".to_owned(),
            Metric::ChecksRate | Metric::Checks if self.check.is_some() => format!(
                "no response was judged by the check `{}`",
                self.check.as_deref().unwrap_or_default()
            ),
            _ if self.tag.is_some() && self.tag_names.as_ref().is_none_or(Vec::is_empty) => {
                format!(
                    "no request carries the tag `{}` (tags come from a scenario file's tasks)",
                    self.tag.as_deref().unwrap_or_default()
                )
            }
            Metric::ChecksRate | Metric::Checks if stats.requests > 0 => {
                "no response it matched was checked".to_owned()
            }
            _ if stats.requests == 0 => "no requests matched".to_owned(),
            _ => "no request it matched has a duration (each failed before any exchange, or \
                  was interrupted)"
                .to_owned(),
        });
        ThresholdResult {
            expr: self.expr.clone(),
            ok: holds && judged > 0,
            value: (shown * 1_000.0).round() / 1_000.0,
            matched,
            reason,
        }
    }
}

impl Threshold {
    fn evaluate_named(
        &self,
        set: &aiotest_metrics::MetricSet,
        run_secs: f64,
        name: &str,
        tags: &Tags,
        agg: Aggregation,
        percent: bool,
    ) -> ThresholdResult {
        let series = set.select(name, tags);
        let matched = series.as_ref().map_or(0, |s| s.samples);
        let value = series.as_ref().and_then(|s| s.value(agg, run_secs));
        let reason = match (&series, value) {
            (None, _) => Some(match unknown_tag_keys(set, name, tags) {
                Some(keys) if self.needs_timings() => format!(
                    "no sample of `{name}{tags}` was taken: no sample of `{name}` has the \
                     tag {keys}, which only the timing trends keep (`--timings`, \
                     `MetricsConfig::timing_trends`)"
                ),
                Some(keys) => format!(
                    "no sample of `{name}{tags}` was taken: no sample of `{name}` has the \
                     tag {keys}"
                ),
                None => format!("no sample of `{name}{tags}` was taken"),
            }),
            (Some(s), None) if s.samples == 0 => {
                Some(format!("no sample of `{name}{tags}` was taken"))
            }
            (Some(s), None) => Some(format!(
                "`{agg}` does not apply to {name}, a {}: use {}",
                s.kind(),
                Aggregation::of(s.kind())
            )),
            _ => None,
        };
        let v = value.unwrap_or(0.0);
        let holds = value.is_some() && self.op.holds(v, self.limit);
        let shown = if percent { v * 100.0 } else { v };
        ThresholdResult {
            expr: self.expr.clone(),
            ok: holds,
            value: (shown * 1_000.0).round() / 1_000.0,
            matched,
            reason,
        }
    }
}

impl Op {
    fn holds(self, value: f64, limit: f64) -> bool {
        match self {
            Op::Lt => value < limit,
            Op::Le => value <= limit,
            Op::Gt => value > limit,
            Op::Ge => value >= limit,
            Op::Eq => value == limit,
            Op::Ne => value != limit,
        }
    }
}

/// The parts of a threshold in k6's form.
type Named = (String, Tags, Aggregation, Op, f64, bool);

/// The keys of `filter` that no series of `name` in `set` has, as `a`, `a or b`; `None`
/// when every key is known (or `name` has no series at all).
fn unknown_tag_keys(set: &aiotest_metrics::MetricSet, name: &str, filter: &Tags) -> Option<String> {
    let by_tags = set.series.get(name)?;
    let unknown: Vec<&str> = filter
        .iter()
        .map(|(k, _)| k)
        .filter(|k| !by_tags.keys().any(|t| t.get(k).is_some()))
        .collect();
    (!unknown.is_empty()).then(|| {
        unknown
            .iter()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(" or ")
    })
}

/// A threshold in k6's form, `NAME[{KEY:VALUE,...}] AGGREGATION OP NUMBER[%]` (the
/// aggregation after a space or a colon): `None` when `text` is not in that form.
fn parse_named(text: &str) -> Option<Result<Named, String>> {
    let ident = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    let (name, rest) = text.split_at(ident);
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let (filter, rest) = match rest.strip_prefix('{') {
        Some(r) => {
            let end = r.find('}')?;
            (Some(&r[..end]), &r[end + 1..])
        }
        None => (None, rest),
    };
    let after = rest.trim_start();
    let after = after.strip_prefix(':').unwrap_or(after).trim_start();
    if after.len() == rest.len() && filter.is_none() {
        // No separator after a bare name: today's form (`p95<300ms`).
        return None;
    }
    let op_at = after.find(['<', '>', '=', '!'])?;
    let agg = Aggregation::parse(after[..op_at].trim())?;
    Some(named_parts(name, filter, agg, &after[op_at..]))
}

fn named_parts(
    name: &str,
    filter: Option<&str>,
    agg: Aggregation,
    comparison: &str,
) -> Result<Named, String> {
    let mut tags = Tags::new();
    for pair in filter
        .unwrap_or("")
        .split(',')
        .filter(|p| !p.trim().is_empty())
    {
        let (k, v) = pair
            .split_once([':', '='])
            .ok_or_else(|| format!("`{pair}`: a tag filter is KEY:VALUE"))?;
        tags.insert(k.trim(), v.trim()).map_err(|e| e.to_string())?;
    }
    let ops = [
        ("<=", Op::Le),
        (">=", Op::Ge),
        ("==", Op::Eq),
        ("!=", Op::Ne),
        ("<", Op::Lt),
        (">", Op::Gt),
    ];
    let (op, value) = ops
        .iter()
        .find_map(|(t, op)| comparison.strip_prefix(t).map(|v| (*op, v.trim())))
        .ok_or_else(|| "no comparison: use <, <=, >, >=, == or !=".to_owned())?;
    let value = value.strip_prefix('=').unwrap_or(value).trim(); // k6's `===`
    let (number, percent) = match value.strip_suffix('%') {
        Some(n) => (n.trim(), true),
        None => (value, false),
    };
    let n: f64 = number
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite())
        .ok_or_else(|| format!("`{value}` is not a number"))?;
    let limit = if percent { n / 100.0 } else { n };
    Ok((name.to_owned(), tags, agg, op, limit, percent))
}

/// A threshold's filters.
#[derive(Debug, Clone, Default, PartialEq)]
struct Filters {
    name: Option<String>,
    scenario: Option<String>,
    check: Option<String>,
    tag: Option<String>,
}

const FILTER_KEYS: [&str; 4] = ["name", "scenario", "check", "tag"];

/// `KEY=VALUE` filters separated by commas (a value may hold commas: only a comma before
/// another `KEY=` separates).
fn parse_filters(filter: &str) -> Result<Filters, String> {
    let mut f = Filters::default();
    let mut rest = filter.trim_start();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=').ok_or_else(|| {
            "a filter is KEY=VALUE: name=..., scenario=..., check=... or tag=...".to_owned()
        })?;
        // The value runs to the next `,` that starts another filter.
        let end = after
            .match_indices(',')
            .map(|(i, _)| i)
            .find(|&i| {
                let next = after[i + 1..].trim_start();
                FILTER_KEYS
                    .iter()
                    .any(|k| next.strip_prefix(k).is_some_and(|r| r.starts_with('=')))
            })
            .unwrap_or(after.len());
        let value = after[..end].trim_end();
        let key = key.trim();
        if value.is_empty() {
            return Err(format!("empty {key} in the filter"));
        }
        let slot = match key {
            "name" => &mut f.name,
            "scenario" => &mut f.scenario,
            "check" => &mut f.check,
            "tag" => &mut f.tag,
            other => {
                return Err(format!(
                    "unknown filter `{other}`: use name=..., scenario=..., check=... or tag=..."
                ));
            }
        };
        if slot.replace(value.to_owned()).is_some() {
            return Err(format!("{key} is given twice"));
        }
        rest = after[end..].strip_prefix(',').unwrap_or("").trim_start();
    }
    Ok(f)
}

fn parse_metric(m: &str) -> Option<Metric> {
    Some(match m {
        "avg" | "mean" => Metric::Mean,
        "min" => Metric::Min,
        "max" => Metric::Max,
        "failures" => Metric::Failures,
        "rps" => Metric::Rps,
        "requests" => Metric::Requests,
        "iterations" => Metric::Iterations,
        "dropped_iterations" => Metric::DroppedIterations,
        "checks" => Metric::Checks,
        _ => {
            let p = m.strip_prefix('p')?;
            let p = p
                .strip_prefix('(')
                .and_then(|x| x.strip_suffix(')'))
                .unwrap_or(p);
            let q: f64 = p.parse().ok()?;
            if !(0.0..=100.0).contains(&q) {
                return None;
            }
            Metric::Percentile(q / 100.0)
        }
    })
}

/// The limit in the metric's base unit; `failures` becomes a rate when given in %.
fn parse_value(metric: Metric, v: &str) -> Result<(Metric, f64), String> {
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("`{v}` is not a number"))?;
    let duration = matches!(
        metric,
        Metric::Percentile(_) | Metric::Mean | Metric::Min | Metric::Max
    );
    match (metric, unit) {
        (_, "us") if duration => Ok((metric, n / 1_000.0)),
        (_, "" | "ms") if duration => Ok((metric, n)),
        (_, "s") if duration => Ok((metric, n * 1_000.0)),
        (_, "m") if duration => Ok((metric, n * 60_000.0)),
        (Metric::Failures, "%") => Ok((Metric::FailureRate, n / 100.0)),
        (Metric::Checks, "%") => Ok((Metric::ChecksRate, n / 100.0)),
        (Metric::Checks, _) => Err(
            "checks is the share of checks that passed: give a percentage, e.g. checks>99%"
                .to_owned(),
        ),
        (
            Metric::Failures
            | Metric::Rps
            | Metric::Requests
            | Metric::Iterations
            | Metric::DroppedIterations,
            "",
        ) => Ok((metric, n)),
        _ => Err(format!("unit `{unit}` does not fit this metric")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiotest_metrics::{ErrorCategory, RequestRecord};

    fn snapshot() -> Snapshot {
        let mut s = Snapshot::new();
        for i in 1..=100u64 {
            s.record(&RequestRecord::ok("/fast", "GET", 200, i * 1_000)); // 1..100 ms
        }
        for _ in 0..10 {
            s.record(&RequestRecord::ok("/login", "POST", 200, 2_000_000)); // 2 s
        }
        for _ in 0..2 {
            s.record(
                &RequestRecord::ok("/login", "POST", 500, 10)
                    .failed(ErrorCategory::HttpStatus, None),
            );
        }
        s
    }

    fn check(expr: &str) -> ThresholdResult {
        Threshold::parse(expr).unwrap().evaluate(&snapshot(), 10.0)
    }

    fn with_named_metrics() -> Snapshot {
        use aiotest_metrics::{Metric, Tags};
        let mut s = snapshot();
        let eu = Tags::from_pairs([("shop", "eu")]).unwrap();
        let us = Tags::from_pairs([("shop", "us")]).unwrap();
        let orders = Metric::counter("orders").unwrap();
        let depth = Metric::gauge("queue_depth").unwrap();
        let ok = Metric::rate("order_ok").unwrap();
        let wait = Metric::time_trend("cart_wait").unwrap();
        for i in 0..40u64 {
            let tags = if i % 4 == 0 { &us } else { &eu };
            s.metrics.add(&orders, tags, 1.0, i);
            s.metrics
                .add(&ok, tags, if i % 10 == 0 { 0.0 } else { 1.0 }, i);
            s.metrics.add(&wait, tags, (i + 1) as f64, i);
            s.metrics.add(&depth, &Tags::new(), i as f64, i);
        }
        s
    }

    #[test]
    fn named_metrics_are_judged_in_k6s_form_with_tag_filters() {
        let s = with_named_metrics();
        let cases = [
            ("orders count==40", true),
            ("orders{shop:eu} count==30", true),
            ("orders{shop:us}: count>=10", true),
            ("orders rate>=4", true), // 40 in 10 s
            ("orders rate>4", false),
            ("queue_depth value==39", true),
            ("queue_depth max<39", false),
            ("queue_depth min==0", true),
            ("order_ok rate>0.95", false), // 36 of 40
            ("order_ok rate>=90%", true),
            ("cart_wait p(95)<=39", true),
            ("cart_wait p(95)<30", false),
            ("cart_wait{shop:us} max<=37", true),
            ("cart_wait med<25", true),
            ("cart_wait avg==20.5", true),
            ("cart_wait{shop:eu} count!=30", false),
        ];
        for (expr, want) in cases {
            let r = Threshold::parse(expr).unwrap().evaluate(&s, 10.0);
            assert_eq!(r.ok, want, "{expr}: {r:?}");
            assert!(r.matched > 0, "{expr}");
        }
        let r = Threshold::parse("order_ok rate>=90%")
            .unwrap()
            .evaluate(&s, 10.0);
        assert_eq!(r.value, 90.0);
    }

    #[test]
    fn a_named_threshold_that_cannot_be_read_fails_and_says_why() {
        let s = with_named_metrics();
        let fails = |expr: &str, why: &str| {
            let r = Threshold::parse(expr).unwrap().evaluate(&s, 10.0);
            assert!(!r.ok, "{expr}");
            let reason = r.reason.unwrap_or_default();
            assert!(reason.contains(why), "{expr}: {reason}");
        };
        fails(
            "nothing_here count>0",
            "no sample of `nothing_here` was taken",
        );
        fails(
            "orders{shop:asia} count<1",
            "no sample of `orders{shop:asia}`",
        );
        fails(
            "orders p(95)<1",
            "`p(95)` does not apply to orders, a counter: use count, rate",
        );
        fails("queue_depth rate<1", "a gauge: use value, min, max");
        // Unchanged: today's form still parses as it did.
        assert!(Threshold::parse("p95<300ms").unwrap().named.is_none());
        assert!(
            Threshold::parse("p(95){name=/x}<300")
                .unwrap()
                .named
                .is_none()
        );
        assert!(Threshold::parse("failures<1%:abort").unwrap().aborts());
        let named = Threshold::parse("orders count<1:abort").unwrap();
        assert!(named.aborts() && named.named.is_some());
        for (expr, why) in [
            ("orders{shop} count<1", "a tag filter is KEY:VALUE"),
            ("orders count<lots", "`lots` is not a number"),
            ("orders count", "no comparison"),
            ("orders>1", "unknown metric"),
        ] {
            let e = Threshold::parse(expr).unwrap_err().to_string();
            assert!(e.contains(why), "{expr}: {e}");
        }
    }

    #[test]
    fn k6_built_in_metrics_read_the_request_families_under_their_system_tags() {
        let s = snapshot();
        let eval = |e: &str| Threshold::parse(e).unwrap().evaluate(&s, 10.0);
        // The same figure as today's form, in milliseconds.
        let k6 = eval("http_req_duration{name:/fast} p(95)<100");
        let today = eval("p95{name=/fast}<100ms");
        assert!(k6.ok && today.ok, "{k6:?} {today:?}");
        assert!((k6.value - today.value).abs() <= 0.1, "{k6:?} {today:?}");
        assert!(!eval("http_req_duration{name:/fast} p(95)<90").ok);
        let max = eval("http_req_duration{method:POST} max>=2000");
        assert!(max.ok && max.matched == 12, "{max:?}");
        assert!(eval("http_reqs{status:500} count==2").ok);
        assert!(eval("http_reqs{status:200,name:/login} count==10").ok);
        assert!(eval("http_reqs count==112").ok);
        let failed = eval("http_req_failed rate<2%");
        assert!(
            failed.ok && (failed.value - 100.0 * 2.0 / 112.0).abs() < 0.01,
            "{failed:?}"
        );
        assert!(!eval("http_req_failed{name:/login} rate<10%").ok);
        assert!(eval("data_received count==0").ok);
        // Latency is kept per endpoint, not per status, unless the timing trends are
        // kept: said, not passed.
        let by_status = eval("http_req_duration{status:200} p(95)<1");
        assert!(!by_status.ok);
        let why = by_status.reason.unwrap_or_default();
        assert!(
            why.contains("has the tag `status`, which only the timing trends keep"),
            "{why}"
        );
        assert!(
            Threshold::parse("http_req_duration{status:200} p(95)<1")
                .unwrap()
                .needs_timings()
        );
        assert!(
            Threshold::parse("http_req_waiting p(95)<1")
                .unwrap()
                .needs_timings()
        );
        assert!(
            !Threshold::parse("http_req_duration{name:/x} p(95)<1")
                .unwrap()
                .needs_timings()
        );
        // No iteration was recorded: a threshold on them fails.
        assert!(!eval("iterations count>=0").ok);
    }

    #[test]
    fn k6_built_in_thresholds_see_scenario_and_test_tags() {
        let mut s = Snapshot::new();
        for _ in 0..3 {
            s.record(&RequestRecord {
                scenario: "browse",
                ..RequestRecord::ok("/", "GET", 200, 5_000)
            });
        }
        let mut it = aiotest_metrics::ScenarioStats::default();
        it.completed(9_000);
        s.count_iterations("browse", &it);
        let tags = BTreeMap::from([(
            "browse".to_owned(),
            Tags::from_pairs([("env", "staging"), ("scenario", "browse")]).unwrap(),
        )]);
        let eval = |e: &str| Threshold::parse(e).unwrap().evaluate_in(&s, 10.0, &tags);
        assert!(eval("http_reqs{env:staging} count==3").ok);
        assert!(eval("iterations{scenario:browse} count==1").ok);
        assert!(eval("iteration_duration{env:staging} max==9").ok);
        assert!(!eval("http_reqs{env:prod} count==3").ok);
    }

    #[test]
    fn thresholds_pass_and_fail_on_the_right_values() {
        let cases = [
            ("p95{name=/fast}<100ms", true),
            ("p95{name=/fast}<90ms", false),
            ("p(50){name=/fast} <= 51", true),
            ("p99{name=/login}<1s", false),
            ("p99{name=/login}<3s", true),
            ("max<2.5s", true),
            ("min>=0.01ms", true),
            ("avg{name=/fast}<60ms", true),
            ("failures<1%", false), // 2 of 112
            ("failures<2%", true),
            ("failures<=2", true),
            ("rps>10", true), // 112 requests in 10 s
            ("rps>20", false),
            ("requests>=112", true),
            ("p99.9<3000", true),
        ];
        for (expr, want) in cases {
            let r = check(expr);
            assert_eq!(r.ok, want, "{expr}: value {}", r.value);
        }
        let r = check("failures<1%");
        assert_eq!(r.value, 1.786, "shown in percent");
        assert_eq!(r.matched, 112);
        assert!(Threshold::parse("p95<500:abort").unwrap().aborts());
    }

    #[test]
    fn checks_is_the_share_of_checked_responses_that_passed() {
        let mut s = Snapshot::new();
        for i in 0..100u64 {
            let ok = RequestRecord {
                checked: true,
                ..RequestRecord::ok("/checked", "GET", 200, 1_000)
            };
            s.record(&if i < 2 {
                ok.failed(ErrorCategory::CheckFailed, Some("no total"))
            } else {
                ok
            });
        }
        // Unchecked requests, failed or not, are not checks.
        s.record(
            &RequestRecord::ok("/plain", "GET", 500, 1_000).failed(ErrorCategory::HttpStatus, None),
        );
        let eval = |expr: &str| Threshold::parse(expr).unwrap().evaluate(&s, 10.0);
        let r = eval("checks>97%");
        assert!(r.ok, "{r:?}");
        assert_eq!(r.value, 98.0);
        assert!(!eval("checks>99%").ok);
        assert!(eval("checks{name=/checked}>=98%").ok);
        let none = eval("checks{name=/plain}>1%");
        assert!(!none.ok);
        assert_eq!(
            none.reason.as_deref(),
            Some("no response it matched was checked")
        );
        let e = Threshold::parse("checks>99").unwrap_err().to_string();
        assert!(e.contains("give a percentage"), "{e}");
    }

    #[test]
    fn a_threshold_that_matched_no_request_fails() {
        for expr in [
            "p95{name=/nope}<1ms",
            "failures{name=/nope}<1%",
            "requests{name=/nope}<10",
            "max{name=/with space}<1s",
        ] {
            let r = check(expr);
            assert!(!r.ok, "{expr} cannot pass on nothing");
            assert_eq!(r.matched, 0);
            assert_eq!(r.reason.as_deref(), Some("no requests matched"), "{expr}");
        }
        let empty = Threshold::parse("failures<1%")
            .unwrap()
            .evaluate(&Snapshot::new(), 10.0);
        assert!(!empty.ok, "a run without requests fails its thresholds");
        assert!(check("p95{name=/fast}<100ms").reason.is_none());
        // A name with a space is that name, not the name without the space.
        assert_eq!(
            Threshold::parse("p95{name=/a b} < 3").unwrap().name(),
            Some("/a b")
        );
    }

    #[test]
    fn scenario_filters_and_iteration_metrics() {
        let mut snap = snapshot();
        let mut other = RequestRecord::ok("/fast", "GET", 200, 500_000);
        other.scenario = "batch";
        snap.record(&other);
        let mut it = aiotest_metrics::ScenarioStats::default();
        it.completed(1_000);
        it.dropped = 3;
        snap.count_iterations("rate", &it);
        let eval = |e: &str| Threshold::parse(e).unwrap().evaluate(&snap, 10.0);
        assert!(eval("max{scenario=default}<3s").ok);
        assert!(!eval("max{scenario=batch}<100ms").ok, "500 ms in batch");
        assert_eq!(eval("requests{scenario=batch, name=/fast}<=1").matched, 1);
        assert!(eval("iterations{scenario=rate}>=1").ok);
        assert!(!eval("dropped_iterations{scenario=rate}<1").ok);
        let none = eval("dropped_iterations{scenario=nope}<1");
        assert_eq!(
            (none.ok, none.reason.as_deref()),
            (false, Some("no scenario matched"))
        );
        assert_eq!(
            Threshold::parse("iterations{name=/x}>1")
                .unwrap_err()
                .reason,
            "iterations belong to scenarios: filter them by {scenario=...}"
        );
        let t = Threshold::parse("p95{scenario=a,name=/x,y}<1").unwrap();
        assert_eq!((t.scenario(), t.name()), (Some("a"), Some("/x,y")));
    }

    #[test]
    fn named_checks_are_judged_one_by_check_or_all_with_the_request_checks() {
        let mut s = snapshot();
        let mut c = |name: &str, passes: u64, fails: u64| {
            s.count_check(name, &aiotest_metrics::Tags::new(), passes, fails);
        };
        c("status is 200", 99, 1);
        c("has token", 50, 50);
        let eval = |e: &str| Threshold::parse(e).unwrap().evaluate(&s, 10.0);
        let one = eval("checks{check=status is 200}>=99%");
        assert_eq!((one.ok, one.value, one.matched), (true, 99.0, 100));
        assert!(!eval("checks{check=status is 200}>99%").ok);
        // Unfiltered: every named verdict (149 of 200 passed; no request-level check).
        let all = eval("checks>70%");
        assert_eq!((all.ok, all.value, all.matched), (true, 74.5, 312));
        // A request filter leaves named checks out: these requests had no check.
        let none = eval("checks{name=/fast}>1%");
        assert_eq!(
            (none.ok, none.reason.as_deref()),
            (false, Some("no response it matched was checked"))
        );
        let missing = eval("checks{check=nope}>1%");
        assert_eq!(
            (missing.ok, missing.reason.as_deref()),
            (false, Some("no response was judged by the check `nope`"))
        );
        for (expr, reason) in [
            ("p95{check=x}<1", "check=... filters the checks metric only"),
            (
                "checks{check=x,name=/y}>1%",
                "a named check counts every response it judged: filter it by check=... alone",
            ),
        ] {
            assert_eq!(Threshold::parse(expr).unwrap_err().reason, reason);
        }
    }

    #[test]
    fn a_tag_selects_the_requests_its_tasks_make() {
        let t = Threshold::parse("p99{tag=auth}<3s").unwrap();
        assert_eq!(t.tag(), Some("auth"));
        // Unresolved, or resolved to nothing: no request matched, and it says why.
        let r = t.evaluate(&snapshot(), 10.0);
        assert_eq!(
            (r.ok, r.reason.as_deref()),
            (
                false,
                Some("no request carries the tag `auth` (tags come from a scenario file's tasks)")
            )
        );
        let login = t.clone().with_tag_names(vec!["/login".into()]);
        let r = login.evaluate(&snapshot(), 10.0);
        assert_eq!((r.ok, r.matched), (true, 12));
        let r = Threshold::parse("p99{tag=auth}<1s")
            .unwrap()
            .with_tag_names(vec!["/login".into()])
            .evaluate(&snapshot(), 10.0);
        assert!(!r.ok, "the tagged requests take 2 s");
        let both = t.with_tag_names(vec!["/login".into(), "/fast".into()]);
        assert_eq!(both.evaluate(&snapshot(), 10.0).matched, 112);
    }

    #[test]
    fn bad_expressions_name_the_problem() {
        let cases = [
            ("p95", "no comparison: use <, <=, > or >="),
            (
                "latency<3",
                "unknown metric: use p50, p90, p95, p99, pNN, avg, min, max, failures, rps, requests, iterations, dropped_iterations or checks, or a named metric in k6's form, e.g. `cart_total{shop:eu} p(95)<200`",
            ),
            ("p95<fast", "`fast` is not a number"),
            ("p95<3kg", "unit `kg` does not fit this metric"),
            ("rps>3ms", "unit `ms` does not fit this metric"),
            (
                "p95{route=/x}<3",
                "unknown filter `route`: use name=..., scenario=..., check=... or tag=...",
            ),
            ("p95{name=/x<3", "unclosed `{` in the filter"),
            (
                "p101<3",
                "unknown metric: use p50, p90, p95, p99, pNN, avg, min, max, failures, rps, requests, iterations, dropped_iterations or checks, or a named metric in k6's form, e.g. `cart_total{shop:eu} p(95)<200`",
            ),
        ];
        for (expr, reason) in cases {
            let e = Threshold::parse(expr).unwrap_err();
            assert_eq!(e.reason, reason, "{expr}");
            assert_eq!(e.to_string(), format!("threshold `{expr}`: {reason}"));
        }
    }
}
