//! Named metrics of the four kinds, as k6's `k6/metrics` has them, from a Rust user:
//! a counter of pages under a tag, a gauge of the last body's size, a rate of fast
//! answers and a time trend of what opening connections cost (TCP plus TLS).
//!
//! `cargo run -p aiotest-examples --bin custom_metrics -- run --demo -u 2 -t 5s \
//!   --threshold "pages{page:home} count>10" --threshold "fast rate>0.9"`

use std::time::Duration;

use aiotest_core::prelude::*;
use aiotest_http_user::{HttpClient, HttpUser, Metric, Tags};

/// The metrics, made once and shared by every user (a `Metric` is a cheap handle).
#[derive(Clone)]
struct Metrics {
    pages: Metric,
    body_bytes: Metric,
    fast: Metric,
    handshake: Metric,
    home: Tags,
}

struct Visitor {
    client: HttpClient,
    metrics: Metrics,
}

async fn visit(user: &mut Visitor) -> TaskResult {
    let r = user.client.get("/").send().await;
    let m = &user.metrics;
    let t = *r.timings();
    let handshake = t.connecting() + t.tls_handshaking();
    let fast = r.is_ok() && t.waiting() < Duration::from_millis(50);
    user.client.add(&m.pages, 1.0, &m.home)?;
    user.client
        .add(&m.body_bytes, r.bytes().len() as f64, &m.home)?;
    user.client
        .add(&m.fast, if fast { 1.0 } else { 0.0 }, &Tags::new())?;
    user.client.add(
        &m.handshake,
        handshake.as_secs_f64() * 1_000.0,
        &Tags::new(),
    )?;
    Ok(())
}

fn main() -> Result<(), BoxError> {
    let metrics = Metrics {
        pages: Metric::counter("pages")?,
        body_bytes: Metric::gauge("body_bytes")?,
        fast: Metric::rate("fast")?,
        handshake: Metric::time_trend("handshake_ms")?,
        home: Tags::from_pairs([("page", "home")])?,
    };
    let http = HttpUser::builder().host("http://127.0.0.1:8080").build()?;
    let visitor = UserType::builder("visitor", move |ctx| Visitor {
        client: http.client_for(ctx),
        metrics: metrics.clone(),
    })
    .wait_time(0.05)
    .task("visit", 1, visit)
    .build()?;
    aiotest_cli::Test::new().user_type(visitor).main()
}
