//! The control server over real HTTP on 127.0.0.1 (real clock: sockets are involved).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aiotest_core::lifecycle::Hooks;
use aiotest_core::prelude::*;
use aiotest_core::state::RunnerState;
use aiotest_metrics::PrometheusExporter;
use aiotest_runner::{ControlError, LocalRunner, RunConfig, StopReason, serve_control};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTP/1.1 request with `Connection: close`; returns status and body.
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    token: Option<&str>,
) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = token.map_or(String::new(), |t| format!("authorization: Bearer {t}\r\n"));
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n{auth}content-length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

struct Ticker {
    hits: Arc<AtomicU64>,
    recorder: Option<aiotest_metrics::Recorder>,
}

async fn tick(u: &mut Ticker) -> TaskResult {
    u.hits.fetch_add(1, Ordering::Relaxed);
    // A named metric and a named check: the dashboard and /metrics show them.
    if let Some(r) = u.recorder.as_mut() {
        let ticks = aiotest_metrics::Metric::counter("ticks").unwrap();
        r.add(&ticks, 1.0, &aiotest_metrics::Tags::new()).unwrap();
        r.record_check("ticked", true);
    }
    Ok(())
}

async fn wait_for_state(addr: SocketAddr, want: &str) {
    for _ in 0..200 {
        let (_, body) = http(addr, "GET", "/api/state", "", None).await;
        if body.contains(&format!("\"state\":\"{want}\"")) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("state never became {want}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_pauses_resumes_resizes_and_stops_a_run() {
    let hits = Arc::new(AtomicU64::new(0));
    let h = Arc::clone(&hits);
    let ut = UserType::builder("ticker", move |ctx| Ticker {
        hits: Arc::clone(&h),
        recorder: ctx.take(),
    })
    .wait_time(0.01)
    .task("tick", 1, tick)
    .build()
    .unwrap();
    let shape = ConstantShape::new(3, IMMEDIATE, None).unwrap();
    let exporter = Arc::new(PrometheusExporter::new());
    let config = RunConfig {
        metrics: aiotest_metrics::MetricsConfig {
            flush_interval: Duration::from_millis(100),
            ..Default::default()
        },
        ..RunConfig::default()
    };
    let runner = LocalRunner::with_exporter(
        vec![ut],
        Box::new(shape),
        Hooks::default(),
        config,
        Some(exporter),
    )
    .unwrap();
    let handle = runner.handle();
    let server = serve_control("127.0.0.1:0".parse().unwrap(), handle.clone(), None)
        .await
        .unwrap();
    let addr = server.addr();
    let run = tokio::spawn(runner.run());

    wait_for_state(addr, "RUNNING").await;
    assert_eq!(http(addr, "POST", "/api/pause", "", None).await.0, 202);
    wait_for_state(addr, "PAUSED").await;
    // Once PAUSED is published, no task can start: the count must not move.
    let at_pause = hits.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        hits.load(Ordering::Relaxed),
        at_pause,
        "no task ran while paused"
    );

    assert_eq!(http(addr, "POST", "/api/resume", "", None).await.0, 202);
    wait_for_state(addr, "RUNNING").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        hits.load(Ordering::Relaxed) > at_pause,
        "tasks run again after resume"
    );

    assert_eq!(
        http(addr, "POST", "/api/users", r#"{"users": 7}"#, None)
            .await
            .0,
        202
    );
    let mut seven = false;
    for _ in 0..100 {
        let (_, body) = http(addr, "GET", "/api/state", "", None).await;
        if body.contains("\"ticker\":7") {
            seven = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(seven, "the user count followed POST /api/users");
    let (status, body) = http(addr, "POST", "/api/users", "seven", None).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("expected {\\\"users\\\": N}"), "{body}");
    // A count above the limit is refused with the reason, and changes nothing.
    let (status, body) = http(addr, "POST", "/api/users", r#"{"users": 4294967295}"#, None).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("4294967295 users is above the limit of 1000000 users per run"),
        "{body}"
    );
    let (_, body) = http(addr, "GET", "/api/state", "", None).await;
    assert!(body.contains("\"ticker\":7"), "{body}");

    let (status, metrics) = http(addr, "GET", "/metrics", "", None).await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("aiotest_runner_state{state=\"RUNNING\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("aiotest_users{user_type=\"ticker\"}"),
        "{metrics}"
    );
    assert_eq!(http(addr, "GET", "/nope", "", None).await.0, 404);
    assert_eq!(http(addr, "DELETE", "/api/state", "", None).await.0, 405);

    // The dashboard's tables and /metrics have the named metric and check.
    let mut tables = String::new();
    for _ in 0..100 {
        tables = http(addr, "GET", "/api/tables", "", None).await.1;
        if tables.contains("named-metrics") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        tables.contains("id=\\\"named-metrics\\\"") && tables.contains("ticks"),
        "{tables}"
    );
    assert!(tables.contains("id=\\\"named-checks\\\""), "{tables}");
    let metrics = http(addr, "GET", "/metrics", "", None).await.1;
    assert!(
        metrics.contains("aiotest_custom_ticks_total{scenario=\"default\"}"),
        "{metrics}"
    );
    assert_eq!(http(addr, "POST", "/api/stop", "", None).await.0, 202);
    let report = run.await.unwrap().unwrap();
    assert_eq!(report.reason, StopReason::Stopped);
    assert_eq!(handle.state(), RunnerState::Ready);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_required_off_loopback_and_enforced_when_set() {
    let ut = UserType::builder("idle", |_ctx| ())
        .task("noop", 1, async |_u: &mut ()| Ok(()))
        .build()
        .unwrap();
    let runner = LocalRunner::new(
        vec![ut],
        ConstantShape::new(0, 1.0, None).unwrap(),
        Hooks::default(),
        RunConfig::default(),
    )
    .unwrap();
    let handle = runner.handle();
    let err = serve_control("0.0.0.0:0".parse().unwrap(), handle.clone(), None)
        .await
        .unwrap_err();
    assert!(matches!(err, ControlError::TokenRequired(_)), "{err}");
    assert!(err.to_string().contains("a token is required"));
    let server = serve_control(
        "127.0.0.1:0".parse().unwrap(),
        handle,
        Some("s3cret".into()),
    )
    .await
    .unwrap();
    let addr = server.addr();
    assert_eq!(http(addr, "GET", "/api/state", "", None).await.0, 401);
    assert_eq!(
        http(addr, "GET", "/api/state", "", Some("wrong")).await.0,
        401
    );
    assert_eq!(
        http(addr, "GET", "/api/state", "", Some("s3cret")).await.0,
        200
    );
    // The dashboard page holds no figures: it is served without the token; every figure
    // it then asks for needs it.
    let (status, page) = http(addr, "GET", "/", "", None).await;
    assert_eq!(status, 200);
    assert!(page.contains("aiotest dashboard") && page.contains("drawCharts"));
    assert!(
        !page.contains("src=\"http") && !page.contains("href=\"http"),
        "nothing fetched from elsewhere"
    );
    for path in ["/api/series", "/api/summary", "/api/tables", "/report.html"] {
        assert_eq!(http(addr, "GET", path, "", None).await.0, 401, "{path}");
    }
    let (status, body) = http(addr, "GET", "/report.html", "", Some("s3cret")).await;
    assert_eq!(status, 404, "no report before the run has ended");
    assert!(body.contains("--linger"), "{body}");
    let (status, body) = http(addr, "GET", "/api/series", "", Some("s3cret")).await;
    assert_eq!((status, body.as_str()), (200, "{\"points\":[]}"));
    drop(runner);
}
