//! Master and workers in one process, meeting in a real redis-server on a free port.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aiotest_coordinator::Redis;
use aiotest_coordinator::testutil::RedisServer;
use aiotest_core::lifecycle::Hooks;
use aiotest_core::prelude::*;
use aiotest_metrics::{Recorder, RequestRecord};
use aiotest_runner::{
    DistributedConfig, MasterRunner, RunConfig, RunError, StopReason, WorkerRunner,
};

/// One worker's counters: requests its users recorded, and users alive now.
#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    live: AtomicI64,
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
        u.counters.sent.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

fn rec_type(counters: &Arc<Counters>) -> UserType {
    let c = Arc::clone(counters);
    UserType::builder("rec", move |ctx| {
        c.live.fetch_add(1, Ordering::Relaxed);
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
    let master = MasterRunner::new(
        vec![rec],
        Box::new(shape),
        Hooks::default(),
        config(),
        dist("exact", 3),
        Redis::connect(&srv.url()).await.unwrap(),
        None,
    )
    .unwrap();
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
    assert!(report.missing_workers.is_empty());
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
    let master = MasterRunner::new(
        vec![rec],
        Box::new(shape),
        Hooks::default(),
        config(),
        dist("kill", 3),
        Redis::connect(&srv.url()).await.unwrap(),
        None,
    )
    .unwrap();
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
    waiting.wait_timeout = Duration::from_millis(800);
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
    // A new master: refused while the dead one's lock lives (up to 10 s), then it runs.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let (handle, run) = loop {
        let master = relay_master(&srv.url()).await;
        let handle = master.handle();
        let run = tokio::spawn(master.run());
        tokio::time::sleep(Duration::from_millis(300)).await;
        if !run.is_finished() {
            break (handle, run);
        }
        match run.await.unwrap() {
            Err(RunError::MasterExists) => assert!(
                tokio::time::Instant::now() < deadline,
                "the lock never expired"
            ),
            other => panic!("{other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
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
