//! A script's VUs as the engine's users, and its setup and teardown as the engine's
//! hooks.

use std::sync::{Arc, OnceLock};

use aiotest_core::BoxError;
use aiotest_core::lifecycle::{Hooks, Lifecycle};
use aiotest_core::user::{TaskResult, UserContext, UserType};
use aiotest_core::wait::WaitTime;
use aiotest_http_user::{HttpClient, HttpUser};
use aiotest_metrics::{Metric, Tags};

use crate::error::JsError;
use crate::script::Script;
use crate::vu::Vu;

/// One VU of a user type: its JavaScript, its client, and where it is in its life.
pub(crate) struct JsUser {
    vu: Result<Vu, JsError>,
    client: HttpClient,
    func: Arc<str>,
    data: Option<Arc<str>>,
    iteration: u64,
    reset_cookies: bool,
    /// Iterations of the VU's scenario started in this process.
    scenario_iterations: Arc<std::sync::atomic::AtomicU64>,
    /// The user's graceful stop: what a VU that aborted the test waits for.
    stop: Option<aiotest_core::stop::StopSignal>,
}

impl JsUser {
    fn new(script: &Arc<Script>, http: &HttpUser, func: &Arc<str>, ctx: &UserContext) -> Self {
        // k6 numbers VUs from 1 (`__VU` is 0 in setup, teardown and the options' init).
        let mut vu = Vu::new(script, ctx.user_id() + 1);
        match &mut vu {
            Ok(vu) => vu.set_scenario(ctx.scenario().unwrap_or("default")),
            Err(e) => tracing::error!(vu = ctx.user_id(), "init failed: {e}"),
        }
        JsUser {
            vu,
            client: http.client_for(ctx),
            func: Arc::clone(func),
            data: ctx
                .setup_data()
                .map(|d| Arc::from(String::from_utf8_lossy(d.json()).as_ref())),
            iteration: 0,
            reset_cookies: script.reset_cookies,
            stop: ctx.get_cloned::<aiotest_core::stop::StopSignal>(),
            scenario_iterations: Arc::clone(
                script
                    .scenario_iterations
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(ctx.scenario().unwrap_or("default").to_owned())
                    .or_default(),
            ),
        }
    }

    async fn iterate(&mut self) -> TaskResult {
        let vu = match &mut self.vu {
            Ok(vu) => vu,
            Err(e) => return Err(Box::new(e.clone())),
        };
        if vu.aborted() {
            // This VU ended the test: it starts nothing more while the run stops.
            if let Some(stop) = &self.stop {
                stop.stopped().await;
            }
            return Ok(());
        }
        if self.reset_cookies {
            self.client.clear_cookies();
        }
        let iteration = self.iteration;
        self.iteration += 1;
        vu.set_scenario_iteration(
            self.scenario_iterations
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        );
        match vu
            .call(
                &mut self.client,
                &self.func,
                self.data.clone(),
                iteration,
                false,
            )
            .await
        {
            Ok(_) => Ok(()),
            // `test.abort()`: counted in `script_aborts`, not as an error of the script.
            Err(_) if vu.aborted() => Ok(()),
            Err(e) => {
                // Counted with its message and place, in every output and across workers;
                // a message that varies without bound folds with the metric's tag sets.
                let tags = Tags::from_pairs([("error", bounded(&e.to_string()))]);
                if let Ok(tags) = tags {
                    let _ = self.client.add(script_errors(), 1.0, &tags);
                }
                Err(Box::new(e))
            }
        }
    }
}

/// `script_errors`: exceptions thrown by VU code, by message (`{error: "Error: x at
/// script.js:3:9"}`).
fn script_errors() -> &'static Metric {
    static METRIC: OnceLock<Metric> = OnceLock::new();
    METRIC.get_or_init(|| Metric::counter(SCRIPT_ERRORS).expect("a valid metric name"))
}

/// The counter of exceptions thrown by VU code, by message (`{error: "Error: x at
/// script.js:3:9"}`): every output shows it, and a threshold can name it.
pub const SCRIPT_ERRORS: &str = "script_errors";

/// `message` cut to what a tag value holds, at a character boundary.
pub(crate) fn bounded(message: &str) -> String {
    let max = aiotest_core::tag::MAX_VALUE_LEN;
    if message.len() <= max {
        return message.to_owned();
    }
    let mut end = max - 3;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &message[..end])
}

/// The user type whose VUs call the exported function `func`.
pub(crate) fn user_type(
    script: &Arc<Script>,
    http: &HttpUser,
    func: &str,
) -> Result<UserType, String> {
    let func: Arc<str> = Arc::from(func);
    let (s, h, f) = (Arc::clone(script), http.clone(), Arc::clone(&func));
    // No wait between iterations: a script sleeps where it says so, as in k6.
    UserType::builder(func.to_string(), move |ctx| JsUser::new(&s, &h, &f, ctx))
        .wait_time(WaitTime::none())
        .task_fn(func.to_string(), 1, |u: &mut JsUser| Box::pin(u.iterate()))
        .build()
        .map_err(|e| e.to_string())
}

/// The VU that runs setup or teardown: numbered 0, as no VU of the test is.
fn lifecycle_vu(script: &Arc<Script>) -> Result<Vu, BoxError> {
    Vu::new(script, 0).map_err(|e| Box::new(e) as BoxError)
}

/// Setup and teardown, when the script exports them.
pub(crate) fn hooks(script: &Arc<Script>, http: &HttpUser, setup: bool, teardown: bool) -> Hooks {
    let mut l = Lifecycle::<serde_json::Value>::new()
        .setup_timeout(script.setup_timeout)
        .teardown_timeout(script.teardown_timeout);
    if setup {
        let (s, h) = (Arc::clone(script), http.clone());
        l = l.setup(move |ctx| {
            let (s, h) = (Arc::clone(&s), h.clone());
            async move {
                let recorder = ctx.take::<aiotest_metrics::Recorder>();
                let mut client = match recorder {
                    Some(r) => h.client(r),
                    None => h.client(aiotest_metrics::MetricsCollector::with_defaults().recorder()),
                };
                let mut vu = lifecycle_vu(&s)?;
                let out = vu
                    .call(&mut client, &Arc::from("setup"), None, 0, true)
                    .await
                    .map_err(|e| format!("setup() threw: {e}"))?;
                drop(client);
                match out {
                    None => Ok(serde_json::Value::Null),
                    Some(json) => serde_json::from_str(&json)
                        .map_err(|e| format!("setup()'s value is not JSON: {e}").into()),
                }
            }
        });
    }
    if teardown {
        let (s, h) = (Arc::clone(script), http.clone());
        l = l.teardown_with_context(move |ctx, data: Option<Arc<serde_json::Value>>| {
            let (s, h) = (Arc::clone(&s), h.clone());
            let collector = ctx.take::<aiotest_metrics::MetricsCollector>();
            async move {
                let recorder = collector.map(|c| c.recorder()).unwrap_or_else(|| {
                    aiotest_metrics::MetricsCollector::with_defaults().recorder()
                });
                let mut client = h.client(recorder);
                let mut vu = lifecycle_vu(&s)?;
                let json = match data.as_deref() {
                    None => None,
                    Some(v) => Some(Arc::from(serde_json::to_string(v)?.as_str())),
                };
                vu.call(&mut client, &Arc::from("teardown"), json, 0, false)
                    .await
                    .map_err(|e| format!("teardown() threw: {e}"))?;
                Ok(())
            }
        });
    }
    l.into_hooks()
}
