//! The native functions a VU's JavaScript calls (`globalThis.__aiotest`), on which the
//! `k6` modules' JavaScript stands. Each one that needs the VU's client or clock
//! suspends the VU with an [`Op`] and returns what its driver answered.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use base64::Engine as _;
use std::time::Duration;

use aiotest_metrics::{Metric, Tags};
use rquickjs::{Array, Ctx, Exception, Function, Object, Persistent};

use crate::http::{RequestSpec, fill_response};
use crate::vu::{JarOp, Op, Resume, Shared};

/// One request of `http.batch`, as the module's JavaScript hands it over.
#[derive(serde::Deserialize)]
struct BatchItem {
    /// The key of a batch given as an object, for errors.
    key: Option<String>,
    method: String,
    url: String,
    body: Option<String>,
    form: bool,
    params: Option<String>,
}

/// The `Set-Cookie` line k6's `jar.set(url, name, value, options)` stands for.
fn set_cookie_line(name: &str, value: &str, options: Option<&str>) -> Result<String, String> {
    if name.is_empty() || name.contains([';', '=', ' ', ',']) || value.contains([';', ',']) {
        return Err(format!("`{name}={value}` is not a cookie"));
    }
    let mut line = format!("{name}={value}");
    let Some(options) = options else {
        return Ok(line);
    };
    let o: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(options).map_err(|e| format!("options: {e}"))?;
    for (k, v) in &o {
        let attr = match (k.as_str(), v) {
            ("domain", serde_json::Value::String(d)) => format!("Domain={d}"),
            ("path", serde_json::Value::String(p)) => format!("Path={p}"),
            ("expires", serde_json::Value::String(e)) => format!("Expires={e}"),
            ("max_age", serde_json::Value::Number(n)) => format!("Max-Age={n}"),
            ("secure", serde_json::Value::Bool(b)) => {
                if !*b {
                    continue;
                }
                "Secure".to_owned()
            }
            // The jar sends cookies to requests, where HttpOnly changes nothing.
            ("http_only", serde_json::Value::Bool(_)) => continue,
            ("domain" | "path" | "expires" | "max_age" | "secure" | "http_only", v) => {
                return Err(format!("options.{k}: {v} is not of its type"));
            }
            _ => {
                return Err(format!(
                    "options.{k}: a cookie has domain, path, expires, max_age, secure and http_only"
                ));
            }
        };
        if attr.contains(';') {
            return Err(format!("options.{k}: {v} holds a `;`"));
        }
        line.push_str("; ");
        line.push_str(&attr);
    }
    Ok(line)
}

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
                fill_response(
                    &ctx,
                    &buf.clone().restore(&ctx)?,
                    *r,
                    Some(&mut s.filled.borrow_mut()),
                )?;
                Ok(buf)
            },
        )?,
    )?;

    let s = Rc::clone(shared);
    o.set(
        "batch",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'_>, requests: String| -> rquickjs::Result<Persistent<Array<'static>>> {
                not_in_init(&ctx, &s, "http.batch()")?;
                let given: Vec<BatchItem> = serde_json::from_str(&requests)
                    .map_err(|e| throw(&ctx, &format!("internal: http.batch's requests: {e}")))?;
                let mut specs = Vec::with_capacity(given.len());
                for (i, r) in given.into_iter().enumerate() {
                    let spec =
                        RequestSpec::parse(&r.method, r.url, r.body, r.form, r.params.as_deref())
                            .map_err(|e| {
                            throw(
                                &ctx,
                                &format!(
                                    "http.batch, request {}: {e}",
                                    r.key.unwrap_or_else(|| i.to_string())
                                ),
                            )
                        })?;
                    specs.push(spec);
                }
                let Resume::Responses(all) = s.ask(&ctx, Op::Batch(specs))? else {
                    return Err(throw(
                        &ctx,
                        "internal: a batch was answered with no responses",
                    ));
                };
                let out = Array::new(ctx.clone())?;
                for (i, r) in all.into_iter().enumerate() {
                    let a = Array::new(ctx.clone())?;
                    fill_response(&ctx, &a, r, None)?;
                    out.set(i, a)?;
                }
                Ok(Persistent::save(&ctx, out))
            },
        )?,
    )?;

    let s = Rc::clone(shared);
    o.set(
        "jar",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'_>,
                  op: String,
                  url: String,
                  name: Option<String>,
                  value: Option<String>,
                  options: Option<String>|
                  -> rquickjs::Result<Option<String>> {
                not_in_init(&ctx, &s, "the cookie jar")?;
                let Some(place) = crate::http::Place::of(&url) else {
                    return Err(throw(
                        &ctx,
                        &format!("jar.{op}(`{url}`): not an http(s) URL"),
                    ));
                };
                let op = match op.as_str() {
                    "cookiesForURL" => JarOp::List,
                    "clear" => JarOp::Remove(None),
                    "delete" => JarOp::Remove(Some(name.unwrap_or_default())),
                    "set" => {
                        let name = name.unwrap_or_default();
                        let value = value.unwrap_or_default();
                        let cookie =
                            set_cookie_line(&name, &value, options.as_deref()).map_err(|e| {
                                throw(&ctx, &format!("jar.set(`{url}`, `{name}`): {e}"))
                            })?;
                        JarOp::Set(cookie)
                    }
                    other => {
                        return Err(throw(&ctx, &format!("internal: no jar operation {other}")));
                    }
                };
                match s.ask(&ctx, Op::Jar(place, op))? {
                    Resume::Text(t) => Ok(Some(t)),
                    Resume::Done => Ok(None),
                    _ => Err(throw(&ctx, "internal: the jar did not answer")),
                }
            },
        )?,
    )?;

    let s = Rc::clone(shared);
    o.set(
        "abortTest",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'_>, reason: String| -> rquickjs::Result<()> {
                not_in_init(&ctx, &s, "test.abort()")?;
                s.ask(&ctx, Op::AbortTest(reason.clone()))?;
                let shown = if reason.is_empty() {
                    String::new()
                } else {
                    format!(": {reason}")
                };
                Err(throw(&ctx, &format!("test.abort() called{shown}")))
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
        "sharedHas",
        Function::new(ctx.clone(), move |name: String| -> bool {
            shared_arrays(&s).contains_key(&name)
        })?,
    )?;

    let s = Rc::clone(shared);
    o.set(
        "sharedPut",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'_>, name: String, items: Vec<String>| -> rquickjs::Result<()> {
                if !s.in_init.get() {
                    return Err(throw(
                        &ctx,
                        &format!("SharedArray(`{name}`): made in the init context only (code outside functions)"),
                    ));
                }
                let items: Vec<Box<str>> = items.into_iter().map(String::into_boxed_str).collect();
                // A VU initialising at the same time may have made it first: one copy wins.
                shared_arrays(&s).entry(name).or_insert_with(|| Arc::new(items));
                Ok(())
            },
        )?,
    )?;

    let s = Rc::clone(shared);
    o.set(
        "sharedOpen",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'_>, name: String| -> rquickjs::Result<usize> {
                let array = shared_arrays(&s)
                    .get(&name)
                    .cloned()
                    .ok_or_else(|| throw(&ctx, &format!("SharedArray `{name}` was never made")))?;
                let mut open = s.arrays.borrow_mut();
                open.push(array);
                Ok(open.len() - 1)
            },
        )?,
    )?;

    let s = Rc::clone(shared);
    o.set(
        "sharedLength",
        Function::new(ctx.clone(), move |id: usize| -> usize {
            s.arrays.borrow().get(id).map_or(0, |a| a.len())
        })?,
    )?;

    let s = Rc::clone(shared);
    o.set(
        "sharedGet",
        Function::new(ctx.clone(), move |id: usize, i: usize| -> Option<String> {
            s.arrays
                .borrow()
                .get(id)
                .and_then(|a| a.get(i))
                .map(|x| x.to_string())
        })?,
    )?;

    let s = Rc::clone(shared);
    o.set(
        "scenarioIteration",
        Function::new(ctx.clone(), move || -> u64 { s.scenario_iteration.get() })?,
    )?;

    let s = Rc::clone(shared);
    o.set(
        "scenarioName",
        Function::new(ctx.clone(), move || -> String {
            s.scenario.borrow().clone()
        })?,
    )?;

    o.set(
        "b64encode",
        Function::new(
            ctx.clone(),
            move |input: String, variant: String| -> String {
                base64_engine(&variant).encode(input.as_bytes())
            },
        )?,
    )?;

    o.set(
        "b64decode",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'_>, input: String, variant: String| -> rquickjs::Result<String> {
                let bytes = base64_engine(&variant)
                    .decode(input.as_bytes())
                    .map_err(|e| {
                        throw(
                            &ctx,
                            &format!("b64decode: `{input}` is not {variant} base64: {e}"),
                        )
                    })?;
                String::from_utf8(bytes).map_err(|_| {
                    throw(
                        &ctx,
                        &format!("b64decode: `{input}` does not decode to text"),
                    )
                })
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
                s.script
                    .files
                    .read(&s.script.dir, &path)
                    .map_err(|e| throw(&ctx, &format!("open(`{path}`): {e}")))
            },
        )?,
    )?;
    Ok(o)
}

/// The script's shared arrays, locked (a poisoned lock still holds whole arrays: each is
/// inserted in one step).
fn shared_arrays(
    s: &Shared,
) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Arc<Vec<Box<str>>>>> {
    s.script.arrays.lock().unwrap_or_else(|e| e.into_inner())
}

/// The base64 alphabet and padding of k6's `std`, `rawstd`, `url`, `rawurl` (checked
/// by the module before it gets here).
fn base64_engine(variant: &str) -> &'static base64::engine::GeneralPurpose {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    match variant {
        "rawstd" => &STANDARD_NO_PAD,
        "url" => &URL_SAFE,
        "rawurl" => &URL_SAFE_NO_PAD,
        _ => &STANDARD,
    }
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
