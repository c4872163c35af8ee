//! The native functions a VU's JavaScript calls (`globalThis.__aiotest`), on which the
//! `k6` modules' JavaScript stands. Each one that needs the VU's client or clock
//! suspends the VU with an [`Op`] and returns what its driver answered.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use aiotest_metrics::{Metric, Tags};
use rquickjs::{Array, Ctx, Exception, Function, Object, Persistent};

use crate::http::{RequestSpec, fill_response};
use crate::vu::{Op, Resume, Shared};

fn throw(ctx: &Ctx<'_>, message: &str) -> rquickjs::Error {
    Exception::throw_message(ctx, message)
}

/// Refuses what init code may not do (as k6 does).
fn not_in_init(ctx: &Ctx<'_>, shared: &Shared, what: &str) -> rquickjs::Result<()> {
    if shared.in_init.get() {
        return Err(throw(
            ctx,
            &format!(
                "{what} is not allowed in the init context (code outside functions); call it in VU code, setup or teardown"
            ),
        ));
    }
    Ok(())
}

/// `__aiotest`: the natives of the VU `shared` describes.
pub(crate) fn object<'js>(ctx: &Ctx<'js>, shared: &Rc<Shared>) -> rquickjs::Result<Object<'js>> {
    let o = Object::new(ctx.clone())?;

    let s = Rc::clone(shared);
    o.set(
        "request",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'_>,
                  method: String,
                  url: String,
                  body: Option<String>,
                  form: bool,
                  params: Option<String>|
                  -> rquickjs::Result<Persistent<Array<'static>>> {
                not_in_init(&ctx, &s, "an HTTP request")?;
                let spec = RequestSpec::parse(&method, url, body, form, params.as_deref())
                    .map_err(|e| {
                        throw(&ctx, &format!("http.{}: {e}", method.to_ascii_lowercase()))
                    })?;
                let Resume::Response(r) = s.ask(&ctx, Op::Request(Box::new(spec)))? else {
                    return Err(throw(
                        &ctx,
                        "internal: a request was answered with no response",
                    ));
                };
                let buf = s
                    .response
                    .borrow()
                    .clone()
                    .ok_or_else(|| throw(&ctx, "internal: the VU has no response array"))?;
                fill_response(&ctx, &buf.clone().restore(&ctx)?, *r)?;
                Ok(buf)
            },
        )?,
    )?;

    let s = Rc::clone(shared);
    o.set(
        "sleep",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'_>, secs: f64| -> rquickjs::Result<()> {
                not_in_init(&ctx, &s, "sleep()")?;
                if !secs.is_finite() || secs < 0.0 {
                    return Err(throw(
                        &ctx,
                        &format!("sleep({secs}): give seconds, 0 or more"),
                    ));
                }
                s.ask(&ctx, Op::Sleep(Duration::from_secs_f64(secs)))?;
                Ok(())
            },
        )?,
    )?;

    let s = Rc::clone(shared);
    o.set(
        "check",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'_>, name: String, passed: bool| -> rquickjs::Result<()> {
                not_in_init(&ctx, &s, "check()")?;
                s.ask(&ctx, Op::Check { name, passed })?;
                Ok(())
            },
        )?,
    )?;

    let s = Rc::clone(shared);
    o.set(
        "groupEnter",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'_>, name: String| -> rquickjs::Result<()> {
                not_in_init(&ctx, &s, "group()")?;
                match s.ask(&ctx, Op::EnterGroup(name.clone()))? {
                    Resume::Done => Ok(()),
                    _ => Err(throw(
                        &ctx,
                        &format!("group(`{name}`): not a valid group name"),
                    )),
                }
            },
        )?,
    )?;

    let s = Rc::clone(shared);
    o.set(
        "groupExit",
        Function::new(ctx.clone(), move |ctx: Ctx<'_>| -> rquickjs::Result<()> {
            s.ask(&ctx, Op::ExitGroup)?;
            Ok(())
        })?,
    )?;

    let s = Rc::clone(shared);
    o.set(
        "metricDefine",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'_>,
                  name: String,
                  kind: String,
                  time: bool|
                  -> rquickjs::Result<usize> {
                let m = match (kind.as_str(), time) {
                    ("counter", _) => Metric::counter(&name),
                    ("gauge", _) => Metric::gauge(&name),
                    ("rate", _) => Metric::rate(&name),
                    ("trend", false) => Metric::trend(&name),
                    _ => Metric::time_trend(&name),
                }
                .map_err(|e| throw(&ctx, &format!("new {kind}(`{name}`): {e}")))?;
                let mut all = s.metrics.borrow_mut();
                if let Some(other) = all.iter().find(|o| o.name() == m.name() && **o != m) {
                    return Err(throw(
                        &ctx,
                        &format!(
                            "metric `{name}` is already a {:?}: one name, one kind",
                            other.kind()
                        ),
                    ));
                }
                all.push(m);
                Ok(all.len() - 1)
            },
        )?,
    )?;

    let s = Rc::clone(shared);
    o.set(
        "metricAdd",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'_>, id: usize, value: f64, tags: Option<String>| -> rquickjs::Result<()> {
                not_in_init(&ctx, &s, "adding to a metric")?;
                let metric = s
                    .metrics
                    .borrow()
                    .get(id)
                    .cloned()
                    .ok_or_else(|| throw(&ctx, "internal: no such metric"))?;
                let tags = match tags {
                    None => Tags::new(),
                    Some(json) => {
                        let map: std::collections::BTreeMap<String, serde_json::Value> =
                            serde_json::from_str(&json).map_err(|e| {
                                throw(&ctx, &format!("{}.add(value, tags): tags must be an object of strings: {e}", metric.name()))
                            })?;
                        let mut t = Tags::new();
                        for (k, v) in map {
                            let v = match v {
                                serde_json::Value::String(s) => s,
                                other => other.to_string(),
                            };
                            t.insert(&k, &v).map_err(|e| {
                                throw(&ctx, &format!("{}.add: tag `{k}`: {e}", metric.name()))
                            })?;
                        }
                        t
                    }
                };
                if !value.is_finite() {
                    return Err(throw(&ctx, &format!("{}.add({value}): not a number", metric.name())));
                }
                match s.ask(&ctx, Op::Metric { metric: metric.clone(), value, tags })? {
                    Resume::Done => Ok(()),
                    _ => Err(throw(&ctx, &format!("{}.add({value}): refused (see the log)", metric.name()))),
                }
            },
        )?,
    )?;

    let s = Rc::clone(shared);
    o.set(
        "log",
        Function::new(ctx.clone(), move |level: String, message: String| {
            // The script's own output: shown as it prints it, whatever the log level.
            let vu = s.id;
            match level.as_str() {
                "debug" => tracing::debug!(target: "aiotest::console", vu, "{message}"),
                _ => eprintln!("{level}: {message}"),
            }
        })?,
    )?;

    let s = Rc::clone(shared);
    o.set(
        "open",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'_>, path: String, mode: String| -> rquickjs::Result<String> {
                if !s.in_init.get() {
                    return Err(throw(
                        &ctx,
                        &format!("open(`{path}`): files are opened in the init context only (code outside functions)"),
                    ));
                }
                if !mode.is_empty() {
                    return Err(throw(
                        &ctx,
                        &format!("open(`{path}`, `{mode}`): aiotest opens files as text only"),
                    ));
                }
                let full = s.script.dir.join(&path);
                std::fs::read_to_string(&full).map_err(|e| {
                    throw(&ctx, &format!("open(`{path}`): cannot read {}: {e}", full.display()))
                })
            },
        )?,
    )?;
    Ok(o)
}

/// `__ENV` from `env`.
pub(crate) fn env<'js>(
    ctx: &Ctx<'js>,
    env: &BTreeMap<String, String>,
) -> rquickjs::Result<Object<'js>> {
    let o = Object::new(ctx.clone())?;
    for (k, v) in env {
        o.set(k.as_str(), v.as_str())?;
    }
    Ok(o)
}
