//! `aiotest_cli::Test`: a Rust binary's own users through the same command line.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aiotest_cli::Test;
use aiotest_core::prelude::*;
use aiotest_http_user::{HttpClient, HttpUser};
use aiotest_runner::Summary;

struct Reader {
    client: HttpClient,
    token: Option<Arc<String>>,
    with_token: Arc<AtomicU64>,
}

async fn read(u: &mut Reader) -> TaskResult {
    if u.token.as_deref().is_some_and(|t| t == "t-1") {
        u.with_token.fetch_add(1, Ordering::Relaxed);
    }
    u.client.get("/read").send().await;
    Ok(())
}

fn test(
    with_token: &Arc<AtomicU64>,
    torn: &Arc<AtomicU64>,
    summarized: &Arc<AtomicU64>,
    fail_setup: bool,
) -> Test {
    let http = HttpUser::builder().build().unwrap();
    let counter = Arc::clone(with_token);
    let reader = UserType::builder("reader", move |ctx| Reader {
        client: http.client_for(ctx),
        token: ctx.setup::<String>(),
        with_token: Arc::clone(&counter),
    })
    .wait_time(0.05)
    .task("read", 1, read)
    .build()
    .unwrap();
    let t = Arc::clone(torn);
    let lifecycle = Lifecycle::<String>::new()
        .setup(move |_ctx| async move {
            if fail_setup {
                Err("no accounts service".into())
            } else {
                Ok("t-1".to_string())
            }
        })
        .teardown(move |data: Option<Arc<String>>| {
            if data.is_some_and(|d| *d == "t-1") {
                t.fetch_add(1, Ordering::Relaxed);
            }
            async { Ok(()) }
        });
    let s = Arc::clone(summarized);
    Test::new()
        .user_type(reader)
        .lifecycle(lifecycle)
        .on_summary(SummaryHook::new(move |sum: &Summary| {
            s.store(sum.totals.requests, Ordering::Relaxed);
            Ok(())
        }))
}

#[test]
fn setup_data_reaches_every_user_and_teardown_and_the_summary_hook() {
    let target = super::target();
    let host = format!("http://{}", target.addr);
    let (with_token, torn, summarized) = (Arc::default(), Arc::default(), Arc::default());
    let code = test(&with_token, &torn, &summarized, false)
        .run_args(["bin", "run", "-H", &host, "-u", "3", "-t", "1s", "-q"]);
    assert_eq!(code, 0);
    let served = target.served.load(Ordering::Relaxed);
    assert!(served > 10, "{served}");
    assert_eq!(
        with_token.load(Ordering::Relaxed),
        served,
        "every request's user had the setup data"
    );
    assert_eq!(torn.load(Ordering::Relaxed), 1);
    assert_eq!(summarized.load(Ordering::Relaxed), served);
}

#[test]
fn a_failed_setup_exits_1_without_users_or_teardown() {
    let target = super::target();
    let host = format!("http://{}", target.addr);
    let (with_token, torn, summarized) = (Arc::default(), Arc::default(), Arc::default());
    let code = test(&with_token, &torn, &summarized, true)
        .run_args(["bin", "run", "-H", &host, "-u", "3", "-t", "1s", "-q"]);
    assert_eq!(code, 1);
    assert_eq!(target.served.load(Ordering::Relaxed), 0);
    assert_eq!(torn.load(Ordering::Relaxed), 0);
    assert_eq!(summarized.load(Ordering::Relaxed), 0);
}

/// An output that counts the requests of every interval it sees.
struct IntervalCount(Arc<AtomicU64>);

impl aiotest_runner::output::Output for IntervalCount {
    fn name(&self) -> &str {
        "interval-count"
    }

    fn interval(
        &mut self,
        view: &aiotest_runner::output::IntervalView<'_>,
    ) -> aiotest_runner::output::Verdict {
        self.0
            .fetch_add(view.interval.total().requests, Ordering::Relaxed);
        aiotest_runner::output::Verdict::Continue
    }
}

/// A binary's outputs and `request_metrics` handlers run through `Test::main`: the
/// handler sees every request, the output every interval; a threshold naming a
/// request nobody makes fails the run ("no requests matched") instead of passing.
#[test]
fn outputs_and_request_handlers_run_and_an_unmatched_threshold_fails() {
    let target = super::target();
    let host = format!("http://{}", target.addr);
    let (with_token, torn, summarized) = (Arc::default(), Arc::default(), Arc::default());
    let (handled, intervals) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let h = Arc::clone(&handled);
    let code = test(&with_token, &torn, &summarized, false)
        .on_request(0, move |_| {
            h.fetch_add(1, Ordering::Relaxed);
        })
        .output(IntervalCount(Arc::clone(&intervals)))
        .run_args([
            "bin",
            "run",
            "-H",
            &host,
            "-u",
            "2",
            "-t",
            "1s",
            "-q",
            "--threshold",
            "p95{name=/nope}<1s",
        ]);
    assert_eq!(code, 99, "a threshold that matched nothing fails");
    let served = target.served.load(Ordering::Relaxed);
    assert!(served > 5, "{served}");
    assert_eq!(handled.load(Ordering::Relaxed), served);
    assert_eq!(intervals.load(Ordering::Relaxed), served);
}

/// The same binary as master and as worker (threads here, processes in practice):
/// the worker's `request_metrics` handler sees every request, the master's output
/// every merged interval.
#[test]
fn request_handlers_run_on_workers_and_outputs_on_the_master() {
    let redis = aiotest_coordinator::testutil::RedisServer::start().unwrap();
    let target = super::target();
    let host = format!("http://{}", target.addr);
    let url = redis.url();
    let (handled, intervals) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let h = Arc::clone(&handled);
    let worker_url = url.clone();
    let worker = std::thread::spawn(move || {
        let (a, b, c) = (Arc::default(), Arc::default(), Arc::default());
        test(&a, &b, &c, false)
            .on_request(0, move |_| {
                h.fetch_add(1, Ordering::Relaxed);
            })
            .run_args([
                "bin",
                "run",
                "--worker",
                "--redis",
                &worker_url,
                "--run-id",
                "bin",
                "-q",
            ])
    });
    let (a, b, c) = (Arc::default(), Arc::default(), Arc::default());
    let code = test(&a, &b, &c, false)
        .output(IntervalCount(Arc::clone(&intervals)))
        .run_args([
            "bin", "run", "--master", "--redis", &url, "--run-id", "bin", "-H", &host, "-u", "2",
            "-t", "2s", "-q",
        ]);
    assert_eq!(code, 0);
    assert_eq!(
        worker.join().unwrap(),
        0,
        "the worker quits with its master"
    );
    let served = target.served.load(Ordering::Relaxed);
    assert!(served > 5, "{served}");
    assert_eq!(
        handled.load(Ordering::Relaxed),
        served,
        "every request, on the worker"
    );
    assert_eq!(
        intervals.load(Ordering::Relaxed),
        served,
        "every request, on the master"
    );
}

/// A binary's own load shape: `-t` ends it early and changes nothing else; `-u` cannot
/// say which of its users to change, so it is refused.
#[test]
fn t_bounds_a_binarys_own_shape_and_u_is_refused() {
    let target = super::target();
    let host = format!("http://{}", target.addr);
    let (with_token, torn, summarized) = (Arc::default(), Arc::default(), Arc::default());
    // Two users for a minute, unless -t says less.
    let shape = ConstantShape::new(2, 10.0, Some(std::time::Duration::from_secs(60))).unwrap();
    let started = std::time::Instant::now();
    let code = test(&with_token, &torn, &summarized, false)
        .shape(shape)
        .run_args(["bin", "run", "-H", &host, "-t", "1s", "-q"]);
    assert_eq!(code, 0);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(target.served.load(Ordering::Relaxed) > 5);
    let shape = ConstantShape::new(2, 10.0, None).unwrap();
    let code = test(&with_token, &torn, &summarized, false)
        .shape(shape)
        .run_args(["bin", "run", "-H", &host, "-u", "5", "-q"]);
    assert_eq!(code, 2);
}

struct Unique {
    client: HttpClient,
    n: u64,
}

async fn unique_path(u: &mut Unique) -> TaskResult {
    u.n += 1;
    // An id the namer cannot recognize: one request name per request.
    let path = format!("/items/sku-{}x{}", u.n, u.client.retries());
    u.client.get(path).send().await;
    Ok(())
}

/// A task that puts a unique id in every path: past --max-endpoints the names fold into
/// `(other)`, every request still counted, and the summary says so.
#[test]
fn unique_paths_fold_into_other_past_max_endpoints() {
    let target = super::target();
    let host = format!("http://{}", target.addr);
    let http = HttpUser::builder().build().unwrap();
    let ut = UserType::builder("unique", move |ctx| Unique {
        client: http.client_for(ctx),
        n: 0,
    })
    .wait_time(0.0)
    .task("get", 1, unique_path)
    .build()
    .unwrap();
    let export = super::export_path("fold");
    let code = Test::new().user_type(ut).run_args([
        "bin",
        "run",
        "-H",
        &host,
        "-u",
        "2",
        "-t",
        "1s",
        "-q",
        "--max-endpoints",
        "5",
        "--summary-export",
        export.to_str().unwrap(),
    ]);
    assert_eq!(code, 0);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&export).unwrap()).unwrap();
    let endpoints = json["endpoints"].as_array().unwrap();
    assert_eq!(endpoints.len(), 6, "5 names and (other)");
    let other = endpoints.iter().find(|e| e["name"] == "(other)").unwrap();
    assert!(other["requests"].as_u64().unwrap() > 100);
    assert_eq!(
        json["totals"]["requests"].as_u64(),
        Some(target.served.load(Ordering::Relaxed))
    );
    assert!(
        json["notes"].to_string().contains("--max-endpoints"),
        "{}",
        json["notes"]
    );
    let _ = std::fs::remove_file(export);
}
