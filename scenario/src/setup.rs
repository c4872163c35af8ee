//! Setup's and teardown's requests as the run's hooks.

use crate::*;

/// Setup's and teardown's requests as the run's hooks, and the names setup captures.
pub(crate) fn setup(
    cx: &Ctx<'_>,
    reqs: &[Spanned<RequestSpec>],
    teardown_reqs: &[Spanned<RequestSpec>],
    http_settings: &HttpSettings,
) -> Result<(Hooks, Vec<String>), ScenarioError> {
    let mut captures: Vec<String> = Vec::new();
    let mut plans = Vec::new();
    for (i, r) in reqs.iter().enumerate() {
        let field = format!("setup[{i}]");
        let spec = r.get_ref();
        if let Some(w) = &spec.weight {
            return cx.err(
                Some(w.span()),
                format!("{field}.weight"),
                "setup requests run once, in order: no weight",
            );
        }
        // A setup request may use what earlier ones captured.
        let scope = Scope {
            captures: &captures,
            vars: &[],
            columns: None,
            in_setup: true,
        };
        let plan = request(cx, &field, r, scope)?;
        let mut caps = Vec::new();
        for (name, c) in &spec.capture {
            let CaptureSpec::Pointer(pointer) = c.get_ref() else {
                return cx.err(
                    Some(c.span()),
                    format!("{field}.capture.{name}"),
                    "setup captures take a JSON pointer (like /data/token)",
                );
            };
            if !(pointer.is_empty() || pointer.starts_with('/')) {
                return cx.err(
                    Some(c.span()),
                    format!("{field}.capture.{name}"),
                    format!("`{pointer}` is not a JSON pointer (like /data/token)"),
                );
            }
            caps.push((name.clone(), pointer.clone()));
        }
        captures.extend(caps.iter().map(|(n, _)| n.clone()));
        plans.push((plan, caps));
    }
    let mut teardown = Vec::new();
    for (i, r) in teardown_reqs.iter().enumerate() {
        let field = format!("teardown[{i}]");
        let spec = r.get_ref();
        if let Some(w) = &spec.weight {
            return cx.err(
                Some(w.span()),
                format!("{field}.weight"),
                "teardown requests run once, in order: no weight",
            );
        }
        if let Some((name, c)) = spec.capture.iter().next() {
            return cx.err(
                Some(c.span()),
                format!("{field}.capture.{name}"),
                "teardown requests capture nothing: nothing runs after them",
            );
        }
        // Teardown may use everything setup captured.
        let scope = Scope {
            captures: &captures,
            vars: &[],
            columns: None,
            in_setup: false,
        };
        teardown.push(request(cx, &field, r, scope)?);
    }
    if plans.is_empty() && teardown.is_empty() {
        return Ok((Hooks::default(), captures));
    }
    let plans = Arc::new(plans);
    let settings = http_settings.clone();
    let mut lifecycle = Lifecycle::<serde_json::Value>::new()
        .setup(move |ctx| {
            let plans = Arc::clone(&plans);
            let settings = settings.clone();
            async move {
                // No host: relative paths fail (the command line refuses to start such a
                // run); load never goes to a host nobody named.
                let mut http = settings.apply(HttpUser::builder());
                if let Some(h) = ctx.host() {
                    http = http.host(h);
                }
                let http = http.build()?;
                // Setup's requests are counted in the run's statistics, like any other.
                let recorder = ctx
                    .take::<aiotest_metrics::Recorder>()
                    .unwrap_or_else(|| aiotest_metrics::MetricsCollector::with_defaults().recorder());
                let mut client = http.client(recorder);
                let mut values = serde_json::Map::new();
                for (i, (plan, caps)) in plans.iter().enumerate() {
                    let current = serde_json::Value::Object(values.clone());
                    let r = plan
                        .rendered(Some(&current))
                        .once()
                        .send(&mut client, None, None)
                        .await;
                    if let Some(e) = r.error() {
                        return Err(format!("setup request {i} ({} {}): {}", plan.method, plan.path, e.message).into());
                    }
                    if caps.is_empty() {
                        continue;
                    }
                    let body: serde_json::Value = r
                        .json()
                        .map_err(|e| format!("setup request {i} ({}): the response is not JSON: {e}", plan.path))?;
                    for (name, pointer) in caps {
                        let v = body.pointer(pointer).ok_or_else(|| {
                            format!("setup request {i} ({}): capture `{name}`: nothing at {pointer} in the response", plan.path)
                        })?;
                        values.insert(name.clone(), v.clone());
                    }
                }
                Ok(serde_json::Value::Object(values))
            }
        });
    if !teardown.is_empty() {
        let plans = Arc::new(teardown);
        let settings = http_settings.clone();
        // Teardown gets the run's host and collector whether setup ran or not, so its
        // requests go where the users' went and are counted in the summary.
        lifecycle =
            lifecycle.teardown_with_context(move |ctx, data: Option<Arc<serde_json::Value>>| {
                let plans = Arc::clone(&plans);
                let settings = settings.clone();
                let host = ctx.host().map(str::to_owned);
                let collector = ctx.take::<aiotest_metrics::MetricsCollector>();
                async move { run_teardown(&plans, &settings, host, collector, data).await }
            });
    }
    Ok((lifecycle.into_hooks(), captures))
}

/// Sends every teardown request, in order, each whatever became of the one before; the
/// first failure is teardown's error.
pub(crate) async fn run_teardown(
    plans: &[RequestPlan],
    settings: &HttpSettings,
    host: Option<String>,
    collector: Option<aiotest_metrics::MetricsCollector>,
    data: Option<Arc<serde_json::Value>>,
) -> Result<(), aiotest_core::BoxError> {
    let mut http = settings.apply(HttpUser::builder());
    if let Some(h) = host {
        http = http.host(h);
    }
    let http = http.build()?;
    let recorder = collector
        .map(|c| c.recorder())
        .unwrap_or_else(|| aiotest_metrics::MetricsCollector::with_defaults().recorder());
    // Its records reach the collector when the client is dropped, before the summary.
    let mut client = http.client(recorder);
    let mut first_error = None;
    for (i, plan) in plans.iter().enumerate() {
        let r = plan
            .rendered(data.as_deref())
            .once()
            .send(&mut client, None, None)
            .await;
        if let (Some(e), None) = (r.error(), &first_error) {
            first_error = Some(format!(
                "teardown request {i} ({} {}): {}",
                plan.method, plan.path, e.message
            ));
        }
    }
    drop(client);
    first_error.map_or(Ok(()), |e| Err(e.into()))
}
