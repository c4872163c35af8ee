//! Master and workers in one process, meeting in a real redis-server on a free port.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aiotest_coordinator::Redis;
use aiotest_coordinator::testutil::RedisServer;
use aiotest_core::lifecycle::Hooks;
use aiotest_core::prelude::*;
use aiotest_metrics::{Aggregation, Metric, Recorder, RequestRecord, Tags};
use aiotest_runner::{
    DistributedConfig, MasterRunner, RunConfig, RunError, StopReason, WorkerRunner,
};

/// One worker's counters: requests its users recorded, and users alive now.
#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    live: AtomicI64,
    /// The numbers of the users started here.
    ids: std::sync::Mutex<Vec<u64>>,
}

struct Rec {
    recorder: Option<Recorder>,
    counters: Arc<Counters>,
}

impl Drop for Rec {
    fn drop(&mut self) {
        self.counters.live.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn send(u: &mut Rec) -> TaskResult {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    if let Some(r) = u.recorder.as_mut() {
        r.record(&RequestRecord::ok("/x", "GET", 200, 100).at(t));
        let n = u.counters.sent.fetch_add(1, Ordering::Relaxed);
        // Named metrics ride along with the requests: a counter of the same requests
        // under a tag, and a trend of a known spread.
        let parity =
            Tags::from_pairs([("parity", if n.is_multiple_of(2) { "even" } else { "odd" })])
                .unwrap();
        r.add_at(&Metric::counter("sends").unwrap(), 1.0, &parity, t)
            .unwrap();
        r.add_at(
            &Metric::trend("spread").unwrap(),
            (n % 100) as f64,
            &Tags::new(),
            t,
        )
        .unwrap();
    }
    Ok(())
}

fn rec_type(counters: &Arc<Counters>) -> UserType {
    let c = Arc::clone(counters);
    UserType::builder("rec", move |ctx| {
        c.live.fetch_add(1, Ordering::Relaxed);
        c.ids.lock().unwrap().push(ctx.user_id());
        Rec {
            recorder: ctx.take::<Recorder>(),
            counters: Arc::clone(&c),
        }
    })
    .wait_time(0.02)
    .task("send", 1, send)
    .build()
    .unwrap()
}

fn dist(run: &str, workers: usize) -> DistributedConfig {
    DistributedConfig {
        run_id: run.into(),
        heartbeat_interval: Duration::from_millis(200),
        liveness_timeout: Duration::from_secs(1),
        master_timeout: Duration::from_secs(3),
        expect_workers: workers,
        wait_timeout: Duration::from_secs(10),
        exit_on_master_loss: false,
        quit_workers_at_end: false,
        lock_timeout: Duration::from_secs(2),
        redis_timeout: Duration::from_secs(5),
    }
}

fn config() -> RunConfig {
    RunConfig {
        stop_timeout: Duration::from_secs(2),
        metrics: aiotest_metrics::MetricsConfig {
            flush_interval: Duration::from_millis(200),
            ..Default::default()
        },
        ..RunConfig::default()
    }
}

/// A master of `run` expecting `workers`, with `hooks` and `cfg`.
async fn new_master_with(
    url: &str,
    run: &str,
    workers: usize,
    user_type: UserType,
    shape: impl LoadUserShape + 'static,
    hooks: Hooks,
    cfg: RunConfig,
) -> MasterRunner {
    MasterRunner::new(
        vec![user_type],
        Box::new(shape),
        hooks,
        cfg,
        dist(run, workers),
        Redis::connect(url).await.unwrap(),
        None,
    )
    .unwrap()
}

/// A master of `run` expecting `workers`, with no lifecycle and the test's settings.
async fn new_master(
    url: &str,
    run: &str,
    workers: usize,
    user_type: UserType,
    shape: impl LoadUserShape + 'static,
) -> MasterRunner {
    new_master_with(
        url,
        run,
        workers,
        user_type,
        shape,
        Hooks::default(),
        config(),
    )
    .await
}

async fn start_workers(
    srv: &RedisServer,
    run: &str,
    n: usize,
) -> (Vec<Arc<Counters>>, Vec<tokio::task::JoinHandle<()>>) {
    let mut counters = Vec::new();
    let mut tasks = Vec::new();
    for i in 0..n {
        let c = Arc::new(Counters::default());
        let redis = Redis::connect(&srv.url()).await.unwrap();
        let w = WorkerRunner::new(
            vec![rec_type(&c)],
            Hooks::default(),
            config(),
            dist(run, n),
            redis,
            &format!("w{i}"),
        )
        .unwrap();
        tasks.push(tokio::spawn(async move {
            let _ = w.run().await;
        }));
        counters.push(c);
    }
    (counters, tasks)
}

async fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn live(c: &[Arc<Counters>]) -> Vec<i64> {
    c.iter().map(|c| c.live.load(Ordering::Relaxed)).collect()
}

fn sent(c: &[Arc<Counters>]) -> u64 {
    c.iter().map(|c| c.sent.load(Ordering::Relaxed)).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_exact_totals_pause_and_every_worker_takes_part() {
    let srv = RedisServer::start().unwrap();
    let (counters, workers) = start_workers(&srv, "exact", 3).await;
    let rec = rec_type(&Arc::new(Counters::default()));
    let shape = ConstantShape::new(9, IMMEDIATE, None).unwrap();
    let master = new_master(&srv.url(), "exact", 3, rec, shape).await;
    let handle = master.handle();
    let run = tokio::spawn(master.run());
    wait_until("3 users on each worker", Duration::from_secs(10), || {
        live(&counters) == [3, 3, 3]
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    handle.pause().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let paused_at = sent(&counters);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        sent(&counters),
        paused_at,
        "pause reached every worker within a second"
    );
    handle.resume().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(sent(&counters) > paused_at, "resumed");
    handle.stop().await;
    let report = run.await.unwrap().unwrap();
    assert_eq!(report.reason, StopReason::Stopped);
    assert!(
        counters.iter().all(|c| c.sent.load(Ordering::Relaxed) > 0),
        "every worker took part"
    );
    assert_eq!(
        report.snapshot.total().requests,
        sent(&counters),
        "every request counted exactly once"
    );
    // Named metrics merge exactly across the workers: the counter equals the requests,
    // its two tag sets add up to it, and the trend holds a sample for each.
    let metrics = &report.snapshot.metrics;
    let count = |tags: &[(&str, &str)]| {
        metrics
            .select("sends", &Tags::from_pairs(tags.iter().copied()).unwrap())
            .and_then(|s| s.value(Aggregation::Count, 1.0))
            .unwrap_or(0.0) as u64
    };
    assert_eq!(count(&[]), sent(&counters));
    assert_eq!(
        count(&[("parity", "even")]) + count(&[("parity", "odd")]),
        sent(&counters)
    );
    let spread = metrics.select("spread", &Tags::new()).unwrap();
    assert_eq!(spread.samples, sent(&counters));
    assert!(spread.value(Aggregation::Max, 1.0).unwrap() <= 99.0);
    assert!(report.missing_workers.is_empty());
    // A user's number is unique in the test, not only on its worker (k6's idInTest).
    let mut ids: Vec<u64> = counters
        .iter()
        .flat_map(|c| c.ids.lock().unwrap().clone())
        .collect();
    let n = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!((ids.len(), n), (9, 9), "{ids:?}");
    for w in workers {
        w.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_goes_missing_and_its_users_move() {
    let srv = RedisServer::start().unwrap();
    let (counters, workers) = start_workers(&srv, "kill", 3).await;
    let rec = rec_type(&Arc::new(Counters::default()));
    let shape = ConstantShape::new(9, IMMEDIATE, None).unwrap();
    let master = new_master(&srv.url(), "kill", 3, rec, shape).await;
    let handle = master.handle();
    let run = tokio::spawn(master.run());
    wait_until("3 users on each worker", Duration::from_secs(10), || {
        live(&counters) == [3, 3, 3]
    })
    .await;
    // Kill w2: its task (and its users) vanish without a word to the master.
    workers[2].abort();
    let killed = tokio::time::Instant::now();
    wait_until("w2's users gone", Duration::from_secs(5), || {
        counters[2].live.load(Ordering::Relaxed) == 0
    })
    .await;
    wait_until(
        "the survivors to run all 9 users",
        Duration::from_secs(6),
        || {
            let l = live(&counters);
            l[0] + l[1] == 9
        },
    )
    .await;
    assert!(
        killed.elapsed() < Duration::from_secs(6),
        "{:?}",
        killed.elapsed()
    );
    handle.stop().await;
    let report = run.await.unwrap().unwrap();
    assert_eq!(report.missing_workers, vec!["w2".to_string()]);
    // Its metrics since its last report are missing, and the summary names it.
    assert_eq!(report.missing_flushes, vec!["w2".to_string()]);
    let notes = report.summary.notes.join(" ");
    assert!(notes.contains("Metrics of worker w2"), "{notes}");
    for w in workers {
        w.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_master_is_refused_and_missing_workers_time_out() {
    let srv = RedisServer::start().unwrap();
    let rec = || rec_type(&Arc::new(Counters::default()));
    let shape = || Box::new(ConstantShape::new(1, IMMEDIATE, None).unwrap());
    let mut waiting = dist("solo", 2);
    // Long enough for the second to see the first renew its lock (every 2/3 s): a live
    // master is refused, while a dead one's lock would be waited out.
    waiting.wait_timeout = Duration::from_secs(2);
    let first = MasterRunner::new(
        vec![rec()],
        shape(),
        Hooks::default(),
        config(),
        waiting.clone(),
        Redis::connect(&srv.url()).await.unwrap(),
        None,
    )
    .unwrap();
    let first = tokio::spawn(first.run());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = MasterRunner::new(
        vec![rec()],
        shape(),
        Hooks::default(),
        config(),
        waiting,
        Redis::connect(&srv.url()).await.unwrap(),
        None,
    )
    .unwrap();
    let err = second.run().await.unwrap_err();
    assert!(matches!(err, RunError::MasterExists), "{err}");
    let err = first.await.unwrap().unwrap_err();
    assert_eq!(err.to_string(), "0 of 2 workers arrived in time");
}

async fn relay_master(url: &str) -> MasterRunner {
    let rec = rec_type(&Arc::new(Counters::default()));
    let shape = ConstantShape::new(4, IMMEDIATE, None).unwrap();
    MasterRunner::new(
        vec![rec],
        Box::new(shape),
        Hooks::default(),
        config(),
        dist("relay", 2),
        Redis::connect(url).await.unwrap(),
        None,
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_stop_when_the_master_is_lost_and_rejoin_a_new_one() {
    let srv = RedisServer::start().unwrap();
    let (counters, workers) = start_workers(&srv, "relay", 2).await;
    let first = tokio::spawn(relay_master(&srv.url()).await.run());
    wait_until("2 users on each worker", Duration::from_secs(10), || {
        live(&counters) == [2, 2]
    })
    .await;
    // The master dies without a word.
    first.abort();
    // master_timeout is 3 s here: the workers stop their users within it (plus a beat).
    wait_until(
        "workers to stop their users",
        Duration::from_secs(5),
        || live(&counters) == [0, 0],
    )
    .await;
    // A new master at once: it waits out the dead one's lock (it stops being renewed,
    // and expires 2 s after the death) instead of being refused, then runs.
    let master = relay_master(&srv.url()).await;
    let handle = master.handle();
    let run = tokio::spawn(master.run());
    wait_until(
        "the workers to rejoin and run again",
        Duration::from_secs(10),
        || live(&counters) == [2, 2],
    )
    .await;
    handle.stop().await;
    let report = run.await.unwrap().unwrap();
    assert!(report.snapshot.total().requests > 0);
    for w in workers {
        w.abort();
    }
}

/// A user whose task fails every 5th call and panics every 40th.
struct Flaky {
    recorder: Option<Recorder>,
    counters: Arc<Counters>,
    calls: u64,
}

impl Drop for Flaky {
    fn drop(&mut self) {
        self.counters.live.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn flaky_send(u: &mut Flaky) -> TaskResult {
    u.calls += 1;
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    if let Some(r) = u.recorder.as_mut() {
        r.record(&RequestRecord::ok("/x", "GET", 200, 100).at(t));
        u.counters.sent.fetch_add(1, Ordering::Relaxed);
    }
    if u.calls.is_multiple_of(40) {
        panic!("flaky user panics");
    }
    if u.calls.is_multiple_of(5) {
        return Err("flaky task error".into());
    }
    Ok(())
}

fn flaky_type(counters: &Arc<Counters>) -> UserType {
    let c = Arc::clone(counters);
    UserType::builder("rec", move |ctx| {
        c.live.fetch_add(1, Ordering::Relaxed);
        c.ids.lock().unwrap().push(ctx.user_id());
        Flaky {
            recorder: ctx.take::<Recorder>(),
            counters: Arc::clone(&c),
            calls: 0,
        }
    })
    .wait_time(0.005)
    .task("send", 1, flaky_send)
    .build()
    .unwrap()
}

async fn start_typed_workers(
    srv: &RedisServer,
    run: &str,
    n: usize,
    make: fn(&Arc<Counters>) -> UserType,
) -> (Vec<Arc<Counters>>, Vec<tokio::task::JoinHandle<()>>) {
    let mut counters = Vec::new();
    let mut tasks = Vec::new();
    for i in 0..n {
        let c = Arc::new(Counters::default());
        let w = WorkerRunner::new(
            vec![make(&c)],
            Hooks::default(),
            config(),
            dist(run, n),
            Redis::connect(&srv.url()).await.unwrap(),
            &format!("w{i}"),
        )
        .unwrap();
        tasks.push(tokio::spawn(async move {
            let _ = w.run().await;
        }));
        counters.push(c);
    }
    (counters, tasks)
}

fn http_post(addr: std::net::SocketAddr, path: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// The master is the same engine as a local run: the shape's clock stops while paused,
/// POST /api/users resizes the run, and the workers' task errors and panics reach the
/// report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_master_pauses_resizes_and_reports_its_workers_task_outcomes() {
    let srv = RedisServer::start().unwrap();
    let (counters, workers) = start_typed_workers(&srv, "same", 2, flaky_type).await;
    let shape = ConstantShape::new(4, IMMEDIATE, Some(Duration::from_secs(3))).unwrap();
    let master = new_master(
        &srv.url(),
        "same",
        2,
        flaky_type(&Arc::new(Counters::default())),
        shape,
    )
    .await;
    let handle = master.handle();
    let control =
        aiotest_runner::serve_control("127.0.0.1:0".parse().unwrap(), handle.clone(), None)
            .await
            .unwrap();
    let run = tokio::spawn(master.run());
    wait_until("4 users", Duration::from_secs(10), || {
        live(&counters).iter().sum::<i64>() == 4
    })
    .await;
    handle.pause().await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    handle.resume().await;
    let addr = control.addr();
    let answer =
        tokio::task::spawn_blocking(move || http_post(addr, "/api/users", r#"{"users": 6}"#))
            .await
            .unwrap();
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    wait_until(
        "6 users after POST /api/users",
        Duration::from_secs(5),
        || live(&counters).iter().sum::<i64>() == 6,
    )
    .await;
    let report = run.await.unwrap().unwrap();
    assert_eq!(report.reason, StopReason::ShapeEnded);
    // 3 s of run time; the 1.5 s pause is not in it.
    assert!(
        report.run_time >= Duration::from_secs(3) && report.run_time < Duration::from_millis(3_600),
        "{:?}",
        report.run_time
    );
    assert!(
        report.tasks > 0,
        "tasks counted on workers reach the master"
    );
    assert!(report.task_errors > 0 && report.task_errors < report.tasks);
    assert!(report.panics > 0, "panics on workers reach the master");
    assert_eq!(report.snapshot.total().requests, sent(&counters));
    for w in workers {
        w.abort();
    }
}

/// A user whose task takes ten seconds.
async fn slow_send(u: &mut Rec) -> TaskResult {
    tokio::time::sleep(Duration::from_secs(10)).await;
    send(u).await
}

fn slow_type(counters: &Arc<Counters>) -> UserType {
    let c = Arc::clone(counters);
    UserType::builder("rec", move |ctx| {
        c.live.fetch_add(1, Ordering::Relaxed);
        c.ids.lock().unwrap().push(ctx.user_id());
        Rec {
            recorder: ctx.take::<Recorder>(),
            counters: Arc::clone(&c),
        }
    })
    .task("send", 1, slow_send)
    .build()
    .unwrap()
}

/// Abort (a second Ctrl-C) on a master reaches the workers: their users are cancelled at
/// once, not after the graceful stop period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_on_the_master_cancels_the_workers_users_at_once() {
    let srv = RedisServer::start().unwrap();
    let (counters, workers) = start_typed_workers(&srv, "abort", 2, slow_type).await;
    let mut cfg = config();
    cfg.stop_timeout = Duration::from_secs(30);
    let master = new_master_with(
        &srv.url(),
        "abort",
        2,
        slow_type(&Arc::new(Counters::default())),
        ConstantShape::new(4, IMMEDIATE, None).unwrap(),
        Hooks::default(),
        cfg,
    )
    .await;
    let handle = master.handle();
    let run = tokio::spawn(master.run());
    wait_until("4 users", Duration::from_secs(10), || {
        live(&counters).iter().sum::<i64>() == 4
    })
    .await;
    let started = tokio::time::Instant::now();
    handle.abort().await;
    let report = run.await.unwrap().unwrap();
    assert_eq!(report.reason, StopReason::Aborted);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    wait_until(
        "the workers' users cancelled",
        Duration::from_secs(3),
        || live(&counters).iter().sum::<i64>() == 0,
    )
    .await;
    assert_eq!(report.cancelled_users, 4, "{:?}", report.summary.notes);
    for w in workers {
        w.abort();
    }
}

/// A shape that returns an unusable tick ends a distributed run like any other ending:
/// workers stopped and flushed, teardown run, the lock released, the fault reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_shape_tick_on_the_master_still_ends_the_run_properly() {
    let srv = RedisServer::start().unwrap();
    let (counters, workers) = start_workers(&srv, "bad", 2).await;
    let torn = Arc::new(AtomicU64::new(0));
    let t = Arc::clone(&torn);
    let hooks: Hooks = Lifecycle::<String>::new()
        .setup(|_| async { Ok("data".to_owned()) })
        .teardown(move |_| {
            t.fetch_add(1, Ordering::Relaxed);
            async { Ok(()) }
        })
        .into();
    let shape = |t: Duration| {
        Some((
            4,
            if t < Duration::from_secs(1) {
                100.0
            } else {
                -1.0
            },
        ))
    };
    let master = new_master_with(
        &srv.url(),
        "bad",
        2,
        rec_type(&Arc::new(Counters::default())),
        shape,
        hooks,
        config(),
    )
    .await;
    let report = master.run().await.unwrap();
    assert_eq!(report.reason, StopReason::Fault);
    assert!(
        report
            .fault
            .as_ref()
            .is_some_and(|f| f.to_string().starts_with("load shape: spawn rate")),
        "{:?}",
        report.fault
    );
    assert_eq!(torn.load(Ordering::Relaxed), 1, "teardown ran");
    assert!(
        report.missing_flushes.is_empty(),
        "every worker sent its final flush"
    );
    assert_eq!(
        report.snapshot.total().requests,
        sent(&counters),
        "counted exactly"
    );
    wait_until(
        "the workers to stop their users",
        Duration::from_secs(3),
        || live(&counters).iter().sum::<i64>() == 0,
    )
    .await;
    // The lock was released: another master of the run id starts at once.
    let next = new_master(
        &srv.url(),
        "bad",
        2,
        rec_type(&Arc::new(Counters::default())),
        ConstantShape::new(2, IMMEDIATE, Some(Duration::from_millis(500))).unwrap(),
    )
    .await;
    let report = next.run().await.unwrap();
    assert_eq!(report.reason, StopReason::ShapeEnded);
    for w in workers {
        w.abort();
    }
}

/// After a Redis restart (which forgets the lock), the running master takes its lock back
/// at once and a second master of the same run id is refused; the run goes on and ends
/// with every request counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_redis_restart_the_master_keeps_its_lock_and_a_second_is_refused() {
    let mut srv = RedisServer::start().unwrap();
    let (counters, workers) = start_workers(&srv, "restart", 2).await;
    let master = new_master(
        &srv.url(),
        "restart",
        2,
        rec_type(&Arc::new(Counters::default())),
        ConstantShape::new(4, IMMEDIATE, None).unwrap(),
    )
    .await;
    let handle = master.handle();
    let run = tokio::spawn(master.run());
    wait_until("4 users", Duration::from_secs(10), || {
        live(&counters).iter().sum::<i64>() == 4
    })
    .await;
    srv.restart().unwrap();
    let probe = Redis::connect(&srv.url()).await.unwrap();
    let lock_key = aiotest_coordinator::wire::Keys::new("restart", "-").lock("master");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while probe.get_bytes(&lock_key).await.unwrap().is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the lock was not taken back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let second = MasterRunner::new(
        vec![rec_type(&Arc::new(Counters::default()))],
        Box::new(ConstantShape::new(1, IMMEDIATE, None).unwrap()),
        Hooks::default(),
        config(),
        dist("restart", 2),
        probe,
        None,
    )
    .unwrap();
    let err = second.run().await.unwrap_err();
    assert!(matches!(err, RunError::MasterExists), "{err}");
    // The run goes on after the restart: workers resubscribe and keep sending.
    let before = sent(&counters);
    wait_until("traffic after the restart", Duration::from_secs(5), || {
        sent(&counters) > before + 20
    })
    .await;
    handle.stop().await;
    let report = run.await.unwrap().unwrap();
    assert!(report.fault.is_none(), "{:?}", report.fault);
    assert!(report.snapshot.total().requests > 0);
    for w in workers {
        w.abort();
    }
}

/// `request_metrics` handlers run where the requests are made: on the workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_metrics_handlers_run_on_workers() {
    let srv = RedisServer::start().unwrap();
    let seen = Arc::new(AtomicU64::new(0));
    let counters = Arc::new(Counters::default());
    let s = Arc::clone(&seen);
    let worker = WorkerRunner::new(
        vec![rec_type(&counters)],
        Hooks::default(),
        config(),
        dist("event", 1),
        Redis::connect(&srv.url()).await.unwrap(),
        "w0",
    )
    .unwrap()
    .output(
        aiotest_runner::output::RequestMetricsOutput::new().handler(0, move |_| {
            s.fetch_add(1, Ordering::Relaxed);
        }),
    );
    let worker = tokio::spawn(worker.run());
    let report = new_master(
        &srv.url(),
        "event",
        1,
        rec_type(&Arc::new(Counters::default())),
        ConstantShape::new(2, IMMEDIATE, Some(Duration::from_secs(1))).unwrap(),
    )
    .await
    .run()
    .await
    .unwrap();
    let sent = counters.sent.load(Ordering::Relaxed);
    assert!(sent > 10, "{sent}");
    assert_eq!(
        seen.load(Ordering::Relaxed),
        sent,
        "the handler saw every request"
    );
    assert_eq!(report.snapshot.total().requests, sent);
    worker.abort();
}

async fn start_scenario_workers(
    srv: &RedisServer,
    run: &str,
    n: usize,
    scenario: impl Fn(UserType) -> Scenario,
) -> (Vec<Arc<Counters>>, Vec<tokio::task::JoinHandle<()>>) {
    let mut counters = Vec::new();
    let mut tasks = Vec::new();
    for i in 0..n {
        let c = Arc::new(Counters::default());
        let w = WorkerRunner::scenarios(
            vec![scenario(rec_type(&c))],
            Hooks::default(),
            config(),
            dist(run, n),
            Redis::connect(&srv.url()).await.unwrap(),
            &format!("w{i}"),
        )
        .unwrap();
        tasks.push(tokio::spawn(async move {
            let _ = w.run().await;
        }));
        counters.push(c);
    }
    (counters, tasks)
}

fn ramp(ut: UserType) -> Scenario {
    // 0 -> 300/s over 4 s, then 300/s for 2 s: 600 + 600 iterations.
    Scenario::new(
        "ramp",
        vec![ut],
        Executor::RampingArrivalRate {
            start_rate: 0.0,
            time_unit: Duration::from_secs(1),
            stages: vec![
                RateStage::new(Duration::from_secs(4), 300.0),
                RateStage::new(Duration::from_secs(2), 300.0),
            ],
            pre_allocated_vus: 3,
            max_vus: 30,
            max_delay: Duration::ZERO,
        },
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ramping_arrival_rate_over_three_workers_runs_the_integral_of_its_rate() {
    let srv = RedisServer::start().unwrap();
    let (counters, workers) = start_scenario_workers(&srv, "ramp", 3, ramp).await;
    let master = MasterRunner::scenarios(
        vec![ramp(rec_type(&Arc::new(Counters::default())))],
        Hooks::default(),
        config(),
        dist("ramp", 3),
        Redis::connect(&srv.url()).await.unwrap(),
        None,
    )
    .unwrap();
    let report = master.run().await.unwrap();
    assert_eq!(report.reason, StopReason::ShapeEnded);
    let it = &report.snapshot.scenarios()["ramp"];
    let total = it.iterations + it.dropped;
    // Every worker starts its part on the master's time (its clock set forward by the
    // start command's transit), so the parts add up to the schedule though a loaded
    // machine delivers the start late: a worker that started on its own clock lost the
    // iterations due in its last moments (17 of 1,200 on a loaded 2-core machine).
    assert!(
        (1_199..=1_200).contains(&total),
        "the integral of the rate is 1,200: {total}"
    );
    assert_eq!(it.dropped, 0);
    assert_eq!(report.snapshot.total().requests, sent(&counters));
    for c in &counters {
        let n = c.sent.load(Ordering::Relaxed);
        assert!((380..=420).contains(&n), "a third each: {n}");
    }
    for w in workers {
        w.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_workers_share_of_the_rate_moves_to_the_others() {
    let srv = RedisServer::start().unwrap();
    let constant = |ut: UserType| {
        Scenario::new(
            "rate",
            vec![ut],
            Executor::ConstantArrivalRate {
                rate: 300.0,
                time_unit: Duration::from_secs(1),
                duration: Duration::from_secs(8),
                pre_allocated_vus: 3,
                max_vus: 30,
                max_delay: Duration::ZERO,
            },
        )
        .unwrap()
    };
    let (counters, workers) = start_scenario_workers(&srv, "share", 3, constant).await;
    let master = MasterRunner::scenarios(
        vec![constant(rec_type(&Arc::new(Counters::default())))],
        Hooks::default(),
        config(),
        dist("share", 3),
        Redis::connect(&srv.url()).await.unwrap(),
        None,
    )
    .unwrap();
    let handle = master.handle();
    let run = tokio::spawn(master.run());
    wait_until("every worker running", Duration::from_secs(10), || {
        counters.iter().all(|c| c.sent.load(Ordering::Relaxed) > 50)
    })
    .await;
    // The master shows the users its workers run for an open-model scenario (3
    // pre-allocated at least; it used to show 0: it places none itself).
    wait_until(
        "the workers' users on the master",
        Duration::from_secs(5),
        || handle.users().iter().map(|(_, n)| n).sum::<u64>() >= 3,
    )
    .await;
    workers[2].abort();
    // Liveness is 1 s: by 2 s after the loss the two others run the whole rate.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let two =
        |c: &[Arc<Counters>]| c[0].sent.load(Ordering::Relaxed) + c[1].sent.load(Ordering::Relaxed);
    let before = two(&counters);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let in_two_seconds = two(&counters) - before;
    assert!(
        (560..=640).contains(&in_two_seconds),
        "300/s on the two left: {in_two_seconds} in 2 s"
    );
    let report = run.await.unwrap().unwrap();
    assert_eq!(report.missing_workers, vec!["w2".to_string()]);
    // Its metrics since its last report are missing, and the iterations due on it that
    // it never reported are counted as dropped: due = done + dropped + interrupted holds
    // over the workers (they used to vanish from every count).
    assert_eq!(report.missing_flushes, vec!["w2".to_string()]);
    let it = &report.snapshot.scenarios()["rate"];
    let total = it.iterations + it.dropped + it.interrupted;
    // Each worker's clock starts its part when the master's word reaches it: some
    // iterations either way at a split's boundary (19 short seen on a loaded 2-core
    // machine). The lost worker's share that this guards against is 800.
    assert!(
        (2_360..=2_405).contains(&total),
        "2,400 due, give or take the workers' start lags: {total}"
    );
    assert!(it.dropped > 0, "the lost worker's share: {it:?}");
    let notes = report.summary.notes.join(" ");
    assert!(notes.contains("due on worker w2"), "{notes}");
    assert!(notes.contains("Metrics of worker w2"), "{notes}");
    for w in workers {
        w.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_waiting_for_a_master_ignores_stop_and_leaves_on_quit() {
    let srv = RedisServer::start().unwrap();
    let c = Arc::new(Counters::default());
    let w = WorkerRunner::new(
        vec![rec_type(&c)],
        Hooks::default(),
        config(),
        dist("idle", 1),
        Redis::connect(&srv.url()).await.unwrap(),
        "w0",
    )
    .unwrap();
    let handle = w.handle();
    let run = tokio::spawn(w.run());
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A stop (SIGINT's first meaning) ends a run; there is none yet, so the worker keeps
    // waiting for a master (it used to leave as if the test had ended).
    handle.stop().await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(!run.is_finished(), "a stop ended a worker that had no run");
    handle.quit().await;
    let report = tokio::time::timeout(Duration::from_secs(3), run)
        .await
        .expect("quit ends a waiting worker")
        .unwrap()
        .unwrap();
    assert_eq!((report.runs, report.requests), (0, 0));
    assert_eq!(c.live.load(Ordering::Relaxed), 0);
}
