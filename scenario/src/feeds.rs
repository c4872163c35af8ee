//! Named metrics in a scenario file: `[[metrics]]` declares them, a request's `metrics`
//! feeds them from its response, a captured value or a constant.
//!
//! ```toml
//! [[metrics]]
//! name = "cart_total"
//! kind = "trend"
//!
//! [[users.tasks]]
//! path = "/cart"
//! metrics = [
//!   { name = "cart_total", json = "/total", tags = { shop = "eu" } },
//!   { name = "carts_seen", value = 1 },
//!   { name = "cart_ms", response = "duration" },
//! ]
//! ```
//!
//! A sample that finds no number (no response, nothing at the pointer, text that is not
//! a number, a value the metric cannot hold) is not made up: it is counted in the
//! counter `metric_misses{metric:NAME}`, which the summary lists like any other.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use aiotest_http_user::{HttpClient, Response};
use aiotest_metrics::{Metric, Tags};
use serde::Deserialize;
use toml::Spanned;

use super::{Ctx, JsonPointer, ScenarioError, Scope, Vars, one_of};

/// The counter of samples a feed could not take, by metric.
pub(super) const MISSES: &str = "metric_misses";

/// `[[metrics]]`: a named metric of the file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MetricSpec {
    name: Spanned<String>,
    kind: Spanned<String>,
    /// A trend of milliseconds.
    #[serde(default)]
    time: Option<Spanned<bool>>,
}

/// One entry of a request's `metrics`: a declared metric and where its sample comes from.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FeedSpec {
    name: Spanned<String>,
    value: Option<Spanned<f64>>,
    json: Option<Spanned<String>>,
    header: Option<Spanned<String>>,
    response: Option<Spanned<String>>,
    vars: Option<Spanned<String>>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

/// A property of the response.
#[derive(Clone, Copy, Debug)]
enum Property {
    /// Milliseconds, as the summary counts them.
    Duration,
    /// The status code; no sample without a response.
    Status,
    /// Body bytes.
    BodySize,
    /// 1 when the request succeeded, else 0 (for a rate).
    Ok,
    /// A part of the timing breakdown, in milliseconds (`Response::timings`).
    Blocked,
    Connecting,
    TlsHandshaking,
    Sending,
    Waiting,
    Receiving,
}

#[derive(Clone, Debug)]
enum Source {
    Value(f64),
    Json(JsonPointer),
    Header(http::header::HeaderName),
    Response(Property),
    Vars(String),
}

/// A checked feed.
#[derive(Clone, Debug)]
pub(super) struct Feed {
    metric: Metric,
    source: Source,
    tags: Tags,
}

/// The file's `[[metrics]]`, checked: by name.
pub(super) fn declare(
    cx: &Ctx<'_>,
    specs: &[Spanned<MetricSpec>],
) -> Result<HashMap<String, Metric>, ScenarioError> {
    let mut out = HashMap::new();
    for (i, s) in specs.iter().enumerate() {
        let field = format!("metrics[{i}]");
        let spec = s.get_ref();
        let name = spec.name.get_ref();
        let time = spec.time.as_ref().is_some_and(|t| *t.get_ref());
        let made = match spec.kind.get_ref().as_str() {
            "counter" => Metric::counter(name),
            "gauge" => Metric::gauge(name),
            "rate" => Metric::rate(name),
            "trend" if time => Metric::time_trend(name),
            "trend" => Metric::trend(name),
            other => {
                return cx.err(
                    Some(spec.kind.span()),
                    format!("{field}.kind"),
                    format!("`{other}` is not a kind: use counter, gauge, rate or trend"),
                );
            }
        };
        let metric = match made {
            Ok(m) => m,
            Err(e) => {
                return cx.err(
                    Some(spec.name.span()),
                    format!("{field}.name"),
                    e.to_string(),
                );
            }
        };
        if let Some(t) = &spec.time
            && metric.kind() != aiotest_metrics::MetricKind::Trend
        {
            return cx.err(
                Some(t.span()),
                format!("{field}.time"),
                "only a trend holds times",
            );
        }
        if name == MISSES {
            return cx.err(
                Some(spec.name.span()),
                format!("{field}.name"),
                format!("`{MISSES}` counts the samples feeds could not take: pick another name"),
            );
        }
        if out.insert(name.clone(), metric).is_some() {
            return cx.err(
                Some(spec.name.span()),
                format!("{field}.name"),
                format!("`{name}` is declared twice"),
            );
        }
    }
    Ok(out)
}

/// A request's `metrics`, checked against the declared ones and the user's captures.
pub(super) fn feeds(
    cx: &Ctx<'_>,
    field: &str,
    specs: &[Spanned<FeedSpec>],
    scope: Scope<'_>,
) -> Result<Arc<[Feed]>, ScenarioError> {
    let mut out = Vec::with_capacity(specs.len());
    for (k, f) in specs.iter().enumerate() {
        let ff = format!("{field}.metrics[{k}]");
        let spec = f.get_ref();
        let name = spec.name.get_ref();
        let Some(metric) = cx.metrics.get(name) else {
            return cx.err(
                Some(spec.name.span()),
                format!("{ff}.name"),
                format!("`{name}` is not declared: add it to [[metrics]] with its kind"),
            );
        };
        one_of(
            cx,
            f.span(),
            &ff,
            &[
                ("value", spec.value.is_some()),
                ("json", spec.json.is_some()),
                ("header", spec.header.is_some()),
                ("response", spec.response.is_some()),
                ("vars", spec.vars.is_some()),
            ],
        )?;
        let source = if let Some(v) = &spec.value {
            if let Err(e) = metric.check(*v.get_ref()) {
                return cx.err(Some(v.span()), format!("{ff}.value"), e.to_string());
            }
            Source::Value(*v.get_ref())
        } else if let Some(p) = &spec.json {
            if !(p.get_ref().is_empty() || p.get_ref().starts_with('/')) {
                return cx.err(
                    Some(p.span()),
                    format!("{ff}.json"),
                    format!("`{}` is not a JSON pointer (like /data/total)", p.get_ref()),
                );
            }
            Source::Json(JsonPointer::new(p.get_ref()))
        } else if let Some(h) = &spec.header {
            match http::header::HeaderName::from_bytes(h.get_ref().as_bytes()) {
                Ok(n) => Source::Header(n),
                Err(_) => {
                    return cx.err(
                        Some(h.span()),
                        format!("{ff}.header"),
                        format!("`{}` is not a header name", h.get_ref()),
                    );
                }
            }
        } else if let Some(r) = &spec.response {
            Source::Response(match r.get_ref().as_str() {
                "duration" => Property::Duration,
                "status" => Property::Status,
                "body_size" => Property::BodySize,
                "ok" => Property::Ok,
                "blocked" => Property::Blocked,
                "connecting" => Property::Connecting,
                "tls_handshaking" => Property::TlsHandshaking,
                "sending" => Property::Sending,
                "waiting" => Property::Waiting,
                "receiving" => Property::Receiving,
                other => {
                    return cx.err(
                        Some(r.span()),
                        format!("{ff}.response"),
                        format!("`{other}` is not a response property: use duration, status, body_size, ok, blocked, connecting, tls_handshaking, sending, waiting or receiving"),
                    );
                }
            })
        } else if let Some(v) = &spec.vars {
            if !scope.vars.iter().any(|c| c == v.get_ref()) {
                return cx.err(
                    Some(v.span()),
                    format!("{ff}.vars"),
                    format!("no task of this user type captures `{}`", v.get_ref()),
                );
            }
            Source::Vars(v.get_ref().clone())
        } else {
            unreachable!("exactly one source was given");
        };
        let tags = match Tags::from_pairs(&spec.tags) {
            Ok(t) => t,
            Err(e) => return cx.err(Some(f.span()), format!("{ff}.tags"), e.to_string()),
        };
        out.push(Feed {
            metric: metric.clone(),
            source,
            tags,
        });
    }
    Ok(out.into())
}

impl Feed {
    /// The sample `r` (and the user's `vars`) give, if any.
    fn sample(
        &self,
        r: &Response,
        body: &mut Option<Option<serde_json::Value>>,
        vars: Option<&Vars>,
    ) -> Option<f64> {
        let answered = r.status().is_some();
        match &self.source {
            Source::Value(v) => Some(*v),
            Source::Response(Property::Duration) => Some(r.duration().as_secs_f64() * 1_000.0),
            Source::Response(Property::Ok) => Some(if r.is_ok() { 1.0 } else { 0.0 }),
            Source::Response(Property::Status) => answered.then(|| f64::from(r.status_code())),
            Source::Response(Property::BodySize) => answered.then(|| r.bytes().len() as f64),
            Source::Response(part) => {
                let t = r.timings();
                let d = match part {
                    Property::Blocked => t.blocked(),
                    Property::Connecting => t.connecting(),
                    Property::TlsHandshaking => t.tls_handshaking(),
                    Property::Sending => t.sending(),
                    Property::Waiting => t.waiting(),
                    _ => t.receiving(),
                };
                // A part of an answer: without one, no sample.
                answered.then_some(d.as_secs_f64() * 1_000.0)
            }
            Source::Header(h) => number(r.headers().get(h)?.to_str().ok()?),
            Source::Json(pointer) => {
                if !answered {
                    return None;
                }
                let body = body.get_or_insert_with(|| r.json().ok());
                match pointer.find(body.as_ref()?)? {
                    serde_json::Value::Number(n) => n.as_f64(),
                    serde_json::Value::Bool(b) => Some(f64::from(u8::from(*b))),
                    serde_json::Value::String(s) => number(s),
                    _ => None,
                }
            }
            Source::Vars(name) => {
                let vars = vars?.lock().unwrap_or_else(|e| e.into_inner());
                number(vars.get(name)?)
            }
        }
    }
}

fn number(text: &str) -> Option<f64> {
    text.trim().parse().ok().filter(|v: &f64| v.is_finite())
}

/// Records what `feeds` take from `r`; a miss counts in [`MISSES`].
pub(super) fn record(feeds: &[Feed], r: &Response, client: &mut HttpClient, vars: Option<&Vars>) {
    let mut body = None;
    for f in feeds {
        let taken = f
            .sample(r, &mut body, vars)
            .is_some_and(|v| client.add(&f.metric, v, &f.tags).is_ok());
        if !taken {
            miss(client, f.metric.name());
        }
    }
}

fn miss(client: &mut HttpClient, name: &str) {
    static MISSES_METRIC: std::sync::LazyLock<Metric> =
        std::sync::LazyLock::new(|| Metric::counter(MISSES).expect("a valid name"));
    if let Ok(tags) = Tags::from_pairs([("metric", name)]) {
        let _ = client.add(&MISSES_METRIC, 1.0, &tags);
    }
}
