//! One virtual user: a QuickJS runtime with the script loaded, on a [`Fiber`] of its own,
//! and the driver that answers what its code asks for (requests, sleeps, checks, groups)
//! on the VU's async task.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use aiotest_http_user::HttpClient;
use rquickjs::loader::{Loader, Resolver};
use rquickjs::{Context, Ctx, Exception, Function, Module, Object, Persistent, Runtime, Value};

use crate::error::JsError;
use crate::fiber::{Fiber, JS_STACK_LIMIT, Owned, Suspender};
use crate::http::{RawResponse, RequestSpec};
use crate::script::Script;

/// What the driver asks the VU's stack to do.
pub(crate) enum Call {
    /// Run the script's init code.
    Init,
    /// Call the exported function `func` with the setup data (JSON), as iteration
    /// `iteration` of this VU; `result` asks for its return value as JSON.
    Run {
        func: Arc<str>,
        data: Option<Arc<str>>,
        iteration: u64,
        result: bool,
    },
    /// Describe the script's exports (after init): `{"options": ..., "functions": [...]}`.
    Describe,
    /// End: the fiber's function returns.
    Exit,
}

/// What the VU's stack is resumed with.
pub(crate) enum Resume {
    /// A call to make.
    Call(Call),
    /// The answer to [`Op::Request`].
    Response(Box<RawResponse>),
    /// The answers to [`Op::Batch`], in its order.
    Responses(Vec<RawResponse>),
    /// A text answer (the jar's cookies, as JSON).
    Text(String),
    /// What it asked for is done.
    Done,
    /// What it asked for will not happen: the call is being abandoned (its task was
    /// dropped); the native function throws and the interrupt handler ends the script.
    Abort,
}

/// What the VU's stack asks the driver for.
pub(crate) enum Op {
    Request(Box<RequestSpec>),
    /// Requests sent side by side (`http.batch`).
    Batch(Vec<RequestSpec>),
    /// `test.abort(reason)`: the run ends.
    AbortTest(String),
    /// An operation on the VU's cookie jar, for a URL.
    Jar(crate::http::Place, JarOp),
    Sleep(Duration),
    Check {
        name: String,
        passed: bool,
    },
    EnterGroup(String),
    /// A sample of a custom metric.
    Metric {
        metric: aiotest_metrics::Metric,
        value: f64,
        tags: aiotest_metrics::Tags,
    },
    ExitGroup,
    /// The call ended: its result as JSON when asked for, or its exception.
    Finished(Result<Option<String>, JsError>),
}

/// Does `op` to `client`'s cookies for the URL at `place`.
fn jar(client: &mut HttpClient, place: &crate::http::Place, op: JarOp) -> Resume {
    let now = std::time::SystemTime::now();
    let jar = client.cookies_mut();
    match op {
        JarOp::List => {
            let mut by_name = serde_json::Map::new();
            for (name, value) in jar.for_url(&place.host, &place.path, place.https, now) {
                let values = by_name
                    .entry(name.to_owned())
                    .or_insert_with(|| serde_json::Value::Array(Vec::new()));
                if let serde_json::Value::Array(v) = values {
                    v.push(serde_json::Value::String(value.to_owned()));
                }
            }
            Resume::Text(serde_json::Value::Object(by_name).to_string())
        }
        JarOp::Set(line) => {
            jar.store(&place.host, &place.path, &line, now);
            Resume::Done
        }
        JarOp::Remove(name) => {
            jar.remove(&place.host, &place.path, place.https, name.as_deref());
            Resume::Done
        }
    }
}

/// What `http.cookieJar()` does to the cookies of a URL.
pub(crate) enum JarOp {
    /// `cookiesForURL`: `{name: [value]}` as JSON.
    List,
    /// `set`: the cookie as a `Set-Cookie` line.
    Set(String),
    /// `clear` (every cookie) or `delete` (the one named).
    Remove(Option<String>),
}

/// What a VU's native functions share with its driver, on the VU's own thread.
pub(crate) struct Shared {
    /// The VU's number (`__VU`; 0 for the VU that reads the options).
    pub(crate) id: u64,
    /// The scenario the VU runs in (empty for setup, teardown and the options).
    pub(crate) scenario: RefCell<String>,
    /// The scenario's iteration in this process that the VU runs.
    pub(crate) scenario_iteration: Cell<u64>,
    /// Whether init code is running (`open` is allowed, requests are not).
    pub(crate) in_init: Cell<bool>,
    /// Set when the current call is abandoned: the interrupt handler then stops the
    /// script at its next check.
    pub(crate) aborting: Rc<Cell<bool>>,
    /// The VU's one response array, which every response is written into (see
    /// [`crate::http::fill_response`]).
    pub(crate) response: RefCell<Option<Persistent<rquickjs::Array<'static>>>>,
    /// What that array holds.
    pub(crate) filled: RefCell<crate::http::Filled>,
    /// The custom metrics this VU declared (`new Trend(...)`), by the id its
    /// JavaScript object holds.
    pub(crate) metrics: RefCell<Vec<aiotest_metrics::Metric>>,
    /// The shared arrays this VU opened (`k6/data`), by the id its JavaScript holds.
    pub(crate) arrays: RefCell<Vec<Arc<Vec<Box<str>>>>>,
    /// The fiber's suspender, once it started.
    suspender: RefCell<Option<Rc<Suspender<Resume, Op>>>>,
    pub(crate) script: Arc<Script>,
}

impl Shared {
    /// Suspends the VU with `op`; a JavaScript exception when the call is abandoned or
    /// made outside a call.
    pub(crate) fn ask(&self, ctx: &Ctx<'_>, op: Op) -> rquickjs::Result<Resume> {
        let s = self.suspender.borrow().clone();
        let answer = s.and_then(|s| s.suspend(op));
        match answer {
            Some(Resume::Abort) | None => Err(Exception::throw_message(
                ctx,
                "the iteration was interrupted",
            )),
            Some(r) => Ok(r),
        }
    }
}

/// The names `import` accepts, with their sources.
const MODULES: &[(&str, &str)] = &[
    ("k6", include_str!("js/k6.js")),
    ("k6/http", include_str!("js/http.js")),
    ("k6/metrics", include_str!("js/metrics.js")),
    ("k6/data", include_str!("js/data.js")),
    ("k6/encoding", include_str!("js/encoding.js")),
    ("k6/execution", include_str!("js/execution.js")),
];

/// Modules k6 has that aiotest does not: refused by name when imported.
const NOT_SUPPORTED: &[&str] = &[
    "k6/ws",
    "k6/net/grpc",
    "k6/browser",
    "k6/crypto",
    "k6/html",
    "k6/timers",
    "k6/experimental",
];

///
/// A local file (`./lib.js`, `../common/util.js`, relative to the file that imports it) is
/// known by its path relative to the script's directory, and read as `open()` reads
/// files: from disk where the script was read from disk (recorded, so a master ships it
/// to its workers), from the plan's files on a worker.
struct Modules {
    script: Arc<Script>,
}

/// `name` imported from the module `base`, as a path relative to the script's directory
/// (`None` for a name that is not a relative path).
fn local_module(script: &Script, base: &str, name: &str) -> Option<String> {
    if !(name.starts_with("./") || name.starts_with("../")) {
        return None;
    }
    // The main script sits in the script's directory; a local module where its path says.
    let mut parts: Vec<&str> = if base == script.name {
        Vec::new()
    } else {
        let mut p: Vec<&str> = base.split('/').collect();
        p.pop();
        p
    };
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." if parts.last().is_some_and(|p| *p != "..") => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    Some(parts.join("/"))
}

impl Resolver for Modules {
    fn resolve<'js>(
        &mut self,
        _ctx: &Ctx<'js>,
        base: &str,
        name: &str,
        _attributes: Option<rquickjs::loader::ImportAttributes<'js>>,
    ) -> rquickjs::Result<String> {
        if MODULES.iter().any(|(n, _)| *n == name) {
            return Ok(name.to_owned());
        }
        if let Some(path) = local_module(&self.script, base, name) {
            return Ok(path);
        }
        let supported: Vec<&str> = MODULES.iter().map(|(n, _)| *n).collect();
        let why = if NOT_SUPPORTED
            .iter()
            .any(|n| name == *n || name.starts_with(&format!("{n}/")))
        {
            format!(
                "aiotest does not support the module `{name}` (it supports {})",
                supported.join(", ")
            )
        } else if name.starts_with("k6") {
            format!(
                "no module `{name}`: aiotest supports {}",
                supported.join(", ")
            )
        } else {
            format!(
                "cannot import `{name}`: aiotest imports the modules {} and local files by a \
                 relative path (`./lib.js`); remote modules are not supported yet",
                supported.join(", ")
            )
        };
        Err(rquickjs::Error::new_resolving_message(base, name, why))
    }
}

impl Loader for Modules {
    fn load<'js>(
        &mut self,
        ctx: &Ctx<'js>,
        name: &str,
        _attributes: Option<rquickjs::loader::ImportAttributes<'js>>,
    ) -> rquickjs::Result<Module<'js, rquickjs::module::Declared>> {
        if let Some((_, source)) = MODULES.iter().find(|(n, _)| *n == name) {
            return Module::declare(ctx.clone(), name, *source);
        }
        let source = self
            .script
            .files
            .read(&self.script.dir, name)
            .map_err(|e| rquickjs::Error::new_loading_message(name, e))?;
        Module::declare(ctx.clone(), name, source)
    }
}

/// The state that lives on the fiber: the context and what init produced.
struct OnFiber {
    ctx: Context,
    shared: Rc<Shared>,
    /// The script's exports (its module namespace), after init.
    exports: Option<Persistent<Object<'static>>>,
    /// The setup data parsed in this VU, and the JSON it came from.
    data: Option<(Arc<str>, Persistent<Value<'static>>)>,
}

impl OnFiber {
    /// The script's exports, after init.
    fn exports<'js>(&self, ctx: &Ctx<'js>, script: &Script) -> Result<Object<'js>, JsError> {
        self.exports
            .clone()
            .ok_or_else(|| JsError::plain("the script's init did not run"))?
            .restore(ctx)
            .map_err(|e| JsError::from_rquickjs(ctx, e, script))
    }

    fn run(&mut self, call: Call) -> Result<Option<String>, JsError> {
        let shared = Rc::clone(&self.shared);
        let script = Arc::clone(&shared.script);
        let context = self.ctx.clone();
        context.with(|ctx| match call {
            Call::Init => {
                shared.in_init.set(true);
                let r = init(&ctx, &shared, &script);
                shared.in_init.set(false);
                let ns = r?;
                self.exports = Some(Persistent::save(&ctx, ns));
                Ok(None)
            }
            Call::Run {
                func,
                data,
                iteration,
                result,
            } => {
                let exports = self.exports(&ctx, &script)?;
                let f: Function<'_> = exports
                    .get(&*func)
                    .map_err(|e| JsError::from_rquickjs(&ctx, e, &script))?;
                let data_value = match data {
                    None => Value::new_undefined(ctx.clone()),
                    Some(json) => match &self.data {
                        Some((same, v)) if Arc::ptr_eq(same, &json) => v
                            .clone()
                            .restore(&ctx)
                            .map_err(|e| JsError::from_rquickjs(&ctx, e, &script))?,
                        _ => {
                            let v = ctx
                                .json_parse(json.as_bytes())
                                .map_err(|e| JsError::from_rquickjs(&ctx, e, &script))?;
                            self.data = Some((json, Persistent::save(&ctx, v.clone())));
                            v
                        }
                    },
                };
                ctx.globals()
                    .set("__ITER", iteration)
                    .map_err(|e| JsError::from_rquickjs(&ctx, e, &script))?;
                let out: Value<'_> = f
                    .call((data_value,))
                    .map_err(|e| JsError::from_rquickjs(&ctx, e, &script))?;
                if !result || out.is_undefined() {
                    return Ok(None);
                }
                ctx.json_stringify(out)
                    .map(|s| s.and_then(|s| s.to_string().ok()))
                    .map_err(|e| JsError::from_rquickjs(&ctx, e, &script))
            }
            Call::Describe => {
                let exports = self.exports(&ctx, &script)?;
                let describe: Function<'_> = ctx
                    .eval(
                        "(ns) => JSON.stringify({ options: ns.options === undefined ? null : ns.options, \
                         functions: Object.keys(ns).filter((k) => typeof ns[k] === 'function') })",
                    )
                    .map_err(|e| JsError::from_rquickjs(&ctx, e, &script))?;
                describe
                    .call((exports,))
                    .map(Some)
                    .map_err(|e| JsError::from_rquickjs(&ctx, e, &script))
            }
            Call::Exit => Ok(None),
        })
    }
}

/// Evaluates the prelude and the script as a module; its namespace.
fn init<'js>(ctx: &Ctx<'js>, shared: &Rc<Shared>, script: &Script) -> Result<Object<'js>, JsError> {
    let err = |e| JsError::from_rquickjs(ctx, e, script);
    let natives = crate::natives::object(ctx, shared).map_err(err)?;
    let buf = rquickjs::Array::new(ctx.clone()).map_err(err)?;
    for i in 0..15 {
        buf.set(i, rquickjs::Null).map_err(err)?;
    }
    *shared.response.borrow_mut() = Some(Persistent::save(ctx, buf));
    let g = ctx.globals();
    g.set("__aiotest", natives).map_err(err)?;
    g.set("__VU", shared.id).map_err(err)?;
    g.set("__ITER", 0).map_err(err)?;
    g.set("__ENV", crate::natives::env(ctx, &script.env).map_err(err)?)
        .map_err(err)?;
    ctx.eval::<(), _>(include_str!("js/prelude.js"))
        .map_err(err)?;
    let module = Module::declare(ctx.clone(), script.name.as_str(), script.source.as_bytes())
        .map_err(err)?;
    let (module, promise) = module.eval().map_err(err)?;
    promise.finish::<()>().map_err(err)?;
    module.namespace().map_err(err)
}

/// A virtual user of a script.
pub(crate) struct Vu {
    inner: Owned<Inner>,
    /// The clients `http.batch` sends on beside the VU's own, kept with their
    /// connections for its next batch.
    siblings: Vec<HttpClient>,
    batch: crate::batch::Limits,
    /// The last call ended the test (`test.abort()`).
    aborted: bool,
}

struct Inner {
    fiber: Fiber<Resume, Op>,
    /// The runtime, dropped after the fiber (whose context holds it too: a fiber that
    /// never finished leaks both, never frees one under the other).
    _runtime: Runtime,
    shared: Rc<Shared>,
    /// Whether a call was started and not finished (its task was dropped mid-call).
    busy: bool,
}

impl Vu {
    /// Starts a VU numbered `id` and runs the script's init code in it.
    pub(crate) fn new(script: &Arc<Script>, id: u64) -> Result<Vu, JsError> {
        let runtime = Runtime::new().map_err(|e| JsError::plain(e.to_string()))?;
        runtime.set_max_stack_size(JS_STACK_LIMIT);
        runtime.set_loader(
            Modules {
                script: Arc::clone(script),
            },
            Modules {
                script: Arc::clone(script),
            },
        );
        let aborting = Rc::new(Cell::new(false));
        let flag = Rc::clone(&aborting);
        runtime.set_interrupt_handler(Some(Box::new(move || flag.get())));
        let ctx = Context::full(&runtime).map_err(|e| JsError::plain(e.to_string()))?;
        let shared = Rc::new(Shared {
            id,
            scenario: RefCell::new(String::new()),
            scenario_iteration: Cell::new(0),
            in_init: Cell::new(false),
            aborting,
            suspender: RefCell::new(None),
            response: RefCell::new(None),
            filled: RefCell::new(crate::http::Filled::default()),
            metrics: RefCell::new(Vec::new()),
            arrays: RefCell::new(Vec::new()),
            script: Arc::clone(script),
        });
        let on = OnFiber {
            ctx,
            shared: Rc::clone(&shared),
            exports: None,
            data: None,
        };
        let fiber = Fiber::new(move |suspender: Rc<Suspender<Resume, Op>>, first: Resume| {
            *on.shared.suspender.borrow_mut() = Some(Rc::clone(&suspender));
            on.ctx
                .with(|ctx| crate::fiber::quickjs_stack_starts_here(&ctx));
            let mut on = on;
            let mut input = first;
            loop {
                let result = match input {
                    Resume::Call(Call::Exit) => break,
                    Resume::Call(call) => on.run(call),
                    // An answer with no call waiting: nothing to do but say so.
                    _ => Err(JsError::plain("internal: an answer came with no call")),
                };
                match suspender.suspend(Op::Finished(result)) {
                    Some(next) => input = next,
                    None => break,
                }
            }
            // Values kept across calls go before the context does.
            on.exports = None;
            on.data = None;
            on.shared.response.borrow_mut().take();
        })
        .map_err(|e| JsError::plain(format!("cannot allocate the VU's stack: {e}")))?;
        let mut vu = Vu {
            inner: Owned::new(Inner {
                fiber,
                _runtime: runtime,
                shared,
                busy: false,
            }),
            siblings: Vec::new(),
            batch: script.batch,
            aborted: false,
        };
        vu.run_sync(Call::Init)?;
        Ok(vu)
    }

    /// Numbers the scenario iteration the next call runs (`scenario.iterationInInstance`).
    pub(crate) fn set_scenario_iteration(&mut self, n: u64) {
        self.inner.get_mut().shared.scenario_iteration.set(n);
    }

    /// Whether the script called `test.abort()` (in the last call, or before).
    pub(crate) fn aborted(&self) -> bool {
        self.aborted
    }

    /// Names the scenario the VU runs in (`k6/execution`'s `scenario.name`).
    pub(crate) fn set_scenario(&mut self, name: &str) {
        *self.inner.get_mut().shared.scenario.borrow_mut() = name.to_owned();
    }

    /// The script's exports: `{"options": ..., "functions": [...]}` as JSON.
    pub(crate) fn describe(&mut self) -> Result<String, JsError> {
        self.run_sync(Call::Describe)?
            .ok_or_else(|| JsError::plain("internal: no description of the exports"))
    }

    /// Calls `func` with `data`, for its return value as JSON, where nothing may wait
    /// (`handleSummary`: the run is over).
    pub(crate) fn call_sync(
        &mut self,
        func: &str,
        data: Arc<str>,
    ) -> Result<Option<String>, JsError> {
        self.run_sync(Call::Run {
            func: Arc::from(func),
            data: Some(data),
            iteration: 0,
            result: true,
        })
    }

    /// Runs a call that may not suspend for anything but its end (init, handleSummary).
    fn run_sync(&mut self, call: Call) -> Result<Option<String>, JsError> {
        let inner = self.inner.get_mut();
        match inner.fiber.resume(Resume::Call(call)) {
            Some(Op::Finished(r)) => r,
            Some(_) => {
                inner.busy = true;
                Err(JsError::plain(
                    "init code and handleSummary may not make requests or sleep: that is for VU code, setup and teardown",
                ))
            }
            None => Err(JsError::plain("internal: the VU's stack ended")),
        }
    }

    /// Calls the exported function `func` with the setup data; its return value as JSON
    /// when `result`.
    pub(crate) async fn call(
        &mut self,
        client: &mut HttpClient,
        func: &Arc<str>,
        data: Option<Arc<str>>,
        iteration: u64,
        result: bool,
    ) -> Result<Option<String>, JsError> {
        self.settle();
        let mut input = Resume::Call(Call::Run {
            func: Arc::clone(func),
            data,
            iteration,
            result,
        });
        loop {
            // The VU is borrowed only between awaits: what is held across them (the
            // answer being awaited) is plain data.
            let op = {
                let inner = self.inner.get_mut();
                inner.busy = true;
                let op = inner.fiber.resume(input);
                if matches!(op, None | Some(Op::Finished(_))) {
                    inner.busy = false;
                }
                op
            };
            let Some(op) = op else {
                return Err(JsError::plain("internal: the VU's stack ended"));
            };
            input = match op {
                Op::Finished(r) => return r,
                Op::Request(spec) => {
                    let r = crate::http::send(client, *spec).await;
                    Resume::Response(Box::new(r))
                }
                Op::Batch(specs) => Resume::Responses(
                    crate::batch::send(client, &mut self.siblings, specs, self.batch).await,
                ),
                Op::Jar(place, op) => jar(client, &place, op),
                Op::AbortTest(reason) => {
                    crate::abort::record(client, &reason);
                    self.aborted = true;
                    Resume::Done
                }
                Op::Sleep(d) => {
                    // What the VU recorded goes on before it idles, so that no interval
                    // closes without it.
                    if client.recorder().buffered() > 0 {
                        client.recorder().flush();
                    }
                    tokio::time::sleep(d).await;
                    Resume::Done
                }
                Op::Check { name, passed } => {
                    client.check(&name, passed);
                    Resume::Done
                }
                Op::EnterGroup(name) => match client.enter_group(&name) {
                    Ok(()) => Resume::Done,
                    Err(e) => {
                        tracing::warn!("group `{name}`: {e}");
                        Resume::Abort
                    }
                },
                Op::Metric {
                    metric,
                    value,
                    tags,
                } => match client.add(&metric, value, &tags) {
                    Ok(()) => Resume::Done,
                    Err(e) => {
                        tracing::warn!("metric `{}`: {e}", metric.name());
                        Resume::Abort
                    }
                },
                Op::ExitGroup => {
                    client.exit_group();
                    Resume::Done
                }
            };
        }
    }

    /// Ends a call whose task was dropped while it waited: its native function throws,
    /// the interrupt handler stops the script, and the call finishes.
    fn settle(&mut self) {
        let inner = self.inner.get_mut();
        if !inner.busy {
            return;
        }
        inner.shared.aborting.set(true);
        // Each resume ends one suspension; a script that catches the exception and asks
        // again is interrupted at its next check.
        for _ in 0..10_000 {
            match inner.fiber.resume(Resume::Abort) {
                Some(Op::Finished(_)) | None => {
                    inner.busy = false;
                    break;
                }
                Some(_) => {}
            }
        }
        inner.shared.aborting.set(false);
    }
}

impl Drop for Vu {
    fn drop(&mut self) {
        self.settle();
        let inner = self.inner.get_mut();
        if !inner.busy {
            let _ = inner.fiber.resume(Resume::Call(Call::Exit));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn script(source: &str) -> Arc<Script> {
        Arc::new(Script {
            name: "t.js".into(),
            source: source.into(),
            env: Default::default(),
            dir: std::env::temp_dir(),
            reset_cookies: true,
            batch: Default::default(),
            setup_timeout: Duration::from_secs(1),
            arrays: Default::default(),
            scenario_iterations: Default::default(),
            files: crate::script::Files::Given(Default::default()),
            teardown_timeout: Duration::from_secs(1),
        })
    }

    #[test]
    fn a_local_module_is_known_by_its_path_from_the_scripts_directory() {
        let s = script("");
        let at = |base: &str, name: &str| local_module(&s, base, name);
        assert_eq!(at("t.js", "./lib/a.js").as_deref(), Some("lib/a.js"));
        assert_eq!(at("lib/a.js", "../b.js").as_deref(), Some("b.js"));
        assert_eq!(at("lib/a.js", "./c/./d.js").as_deref(), Some("lib/c/d.js"));
        assert_eq!(at("t.js", "../up.js").as_deref(), Some("../up.js"));
        assert_eq!(
            at("../up.js", "../more.js").as_deref(),
            Some("../../more.js")
        );
        assert_eq!(at("t.js", "k6/http"), None);
        assert_eq!(at("t.js", "https://jslib.k6.io/x.js"), None);
    }

    fn client() -> HttpClient {
        aiotest_http_user::HttpUser::builder()
            .build()
            .unwrap()
            .client(aiotest_metrics::MetricsCollector::with_defaults().recorder())
    }

    const SOURCE: &str = r#"
import { sleep } from 'k6';
let calls = 0;
export function nap() { calls += 1; sleep(10); return calls; }
export function stubborn() {
  // Catches the interruption and asks again: the interrupt handler ends it.
  for (;;) { try { sleep(10); } catch (e) { calls += 1; } }
}
export function count() { calls += 1; return calls; }
"#;

    #[tokio::test(start_paused = true)]
    async fn a_sleeping_vu_holds_no_thread_and_an_abandoned_call_is_ended_cleanly() {
        let s = script(SOURCE);
        let mut vu = Vu::new(&s, 1).unwrap();
        let mut c = client();
        let nap: Arc<str> = Arc::from("nap");
        // The paused clock jumps through the 10 s sleep: the VU awaited, it did not block.
        let r = vu.call(&mut c, &nap, None, 0, true).await.unwrap();
        assert_eq!(r.as_deref(), Some("1"));
        // The task gives up mid-sleep (a run's stop): the call is abandoned ...
        let gave_up =
            tokio::time::timeout(Duration::from_secs(1), vu.call(&mut c, &nap, None, 1, true))
                .await;
        assert!(gave_up.is_err());
        // ... and the next call finds the VU free, its state intact (2 naps began).
        let count: Arc<str> = Arc::from("count");
        let r = vu.call(&mut c, &count, None, 2, true).await.unwrap();
        assert_eq!(r.as_deref(), Some("3"));
        // A script that swallows the interruption is interrupted for good.
        let stubborn: Arc<str> = Arc::from("stubborn");
        let gave_up = tokio::time::timeout(
            Duration::from_secs(1),
            vu.call(&mut c, &stubborn, None, 3, false),
        )
        .await;
        assert!(gave_up.is_err());
        let r = vu.call(&mut c, &count, None, 4, true).await.unwrap();
        let n: u64 = r.unwrap().parse().unwrap();
        // It caught some interruptions until QuickJS checked the interrupt handler (every
        // few thousand operations), within the bound `settle` allows.
        assert!((5..10_004).contains(&n), "{n}");
        // Dropped mid-call: ended, not leaked, not crashed.
        let _ = tokio::time::timeout(Duration::from_secs(1), vu.call(&mut c, &nap, None, 5, true))
            .await;
        drop(vu);
    }

    #[tokio::test]
    async fn a_vu_moves_between_threads_while_it_waits() {
        let s = script(SOURCE);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let s = Arc::clone(&s);
                rt.spawn(async move {
                    let mut vu = Vu::new(&s, i).unwrap();
                    let mut c = client();
                    let count: Arc<str> = Arc::from("count");
                    let mut last = None;
                    for it in 0..200 {
                        last = vu.call(&mut c, &count, None, it, true).await.unwrap();
                        tokio::task::yield_now().await;
                    }
                    last
                })
            })
            .collect();
        for h in handles {
            assert_eq!(h.await.unwrap().as_deref(), Some("200"));
        }
        rt.shutdown_background();
    }
}
