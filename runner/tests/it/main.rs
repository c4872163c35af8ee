//! LocalRunner tests on tokio's paused clock: users here do no I/O, so the whole run is
//! driven by timers and every count is exact.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aiotest_core::lifecycle::{Hooks, Lifecycle, SetupContext, SetupOutcome};
use aiotest_core::prelude::*;
use aiotest_core::state::RunnerState;
use aiotest_runner::{LocalRunner, RunConfig, RunError, StopReason};
use serde::{Deserialize, Serialize};

mod control;
mod distributed;
mod scenarios;

/// A user that counts its tasks into a counter shared with the test.
struct Counter {
    hits: Arc<AtomicU64>,
}

async fn hit(u: &mut Counter) -> TaskResult {
    u.hits.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

fn counter_type(name: &str, weight: u32, hits: &Arc<AtomicU64>, wait: f64) -> UserType {
    let hits = Arc::clone(hits);
    UserType::builder(name, move |_ctx| Counter {
        hits: Arc::clone(&hits),
    })
    .weight(weight)
    .wait_time(wait)
    .task("hit", 1, hit)
    .build()
    .unwrap()
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[tokio::test(start_paused = true)]
async fn constant_users_run_their_tasks_for_the_run_time() {
    let hits = Arc::new(AtomicU64::new(0));
    let shape = ConstantShape::new(5, IMMEDIATE, Some(secs(10))).unwrap();
    let runner = LocalRunner::new(
        vec![counter_type("c", 1, &hits, 1.0)],
        shape,
        Hooks::default(),
        RunConfig::default(),
    )
    .unwrap();
    let report = runner.run().await.unwrap();
    assert_eq!(report.reason, StopReason::ShapeEnded);
    assert_eq!(report.run_time, secs(10));
    // Each user: a task at t = 0, 1, ..., 9 (the shape ends at 10 s).
    let n = hits.load(Ordering::Relaxed);
    assert!((50..=55).contains(&n), "{n}");
    assert_eq!(report.tasks, n);
    assert_eq!(report.cancelled_users, 0);
}

#[tokio::test(start_paused = true)]
async fn stages_reach_each_stage_count() {
    let hits = Arc::new(AtomicU64::new(0));
    let shape = StagesShape::new(vec![
        Stage::new(secs(10), 20),
        Stage::new(secs(10), 20),
        Stage::new(secs(5), 5),
        Stage::new(secs(5), 5),
    ])
    .unwrap();
    let runner = LocalRunner::new(
        vec![counter_type("c", 1, &hits, 1.0)],
        shape,
        Hooks::default(),
        RunConfig::default(),
    )
    .unwrap();
    let handle = runner.handle();
    let run = runner.start();
    let users = |h: &aiotest_runner::RunnerHandle| h.users().iter().map(|(_, n)| n).sum::<u64>();
    tokio::time::sleep(Duration::from_millis(5_500)).await;
    let mid_ramp = users(&handle);
    assert!(
        (9..=12).contains(&mid_ramp),
        "halfway up the ramp: {mid_ramp}"
    );
    tokio::time::sleep(secs(10)).await; // t = 15.5 s, in the hold stage
    assert_eq!(users(&handle), 20);
    tokio::time::sleep(secs(10)).await; // t = 25.5 s, in the second hold
    assert_eq!(users(&handle), 5);
    let report = run.await.unwrap().unwrap();
    assert_eq!(report.run_time, secs(30));
    assert_eq!(handle.state(), RunnerState::Ready);
}

#[tokio::test(start_paused = true)]
async fn pause_stops_traffic_and_freezes_the_shape_clock() {
    let hits = Arc::new(AtomicU64::new(0));
    let shape = ConstantShape::new(4, IMMEDIATE, Some(secs(10))).unwrap();
    let runner = LocalRunner::new(
        vec![counter_type("c", 1, &hits, 0.5)],
        shape,
        Hooks::default(),
        RunConfig::default(),
    )
    .unwrap();
    let handle = runner.handle();
    let started = tokio::time::Instant::now();
    let run = tokio::spawn(runner.run());
    tokio::time::sleep(Duration::from_millis(3_100)).await;
    handle.pause().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(handle.state(), RunnerState::Paused);
    let at_pause = hits.load(Ordering::Relaxed);
    tokio::time::sleep(secs(60)).await;
    assert_eq!(
        hits.load(Ordering::Relaxed),
        at_pause,
        "no task runs while paused"
    );
    handle.resume().await;
    let report = run.await.unwrap().unwrap();
    assert_eq!(
        report.run_time,
        secs(10),
        "the paused minute is not run time"
    );
    assert!(started.elapsed() >= secs(70));
    // 4 users, a task every 0.5 s, for 10 s of run time: about 80 tasks.
    let n = hits.load(Ordering::Relaxed);
    assert!((76..=92).contains(&n), "{n}");
}

#[derive(Serialize, Deserialize)]
struct Accounts {
    token: String,
}

struct Reader {
    token: Option<Arc<Accounts>>,
    seen: Arc<AtomicU64>,
}

async fn read_token(u: &mut Reader) -> TaskResult {
    if u.token.as_ref().is_some_and(|a| a.token == "t-42") {
        u.seen.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn setup_data_reaches_every_user_and_teardown() {
    let seen = Arc::new(AtomicU64::new(0));
    let s = Arc::clone(&seen);
    let reader = UserType::builder("reader", move |ctx| Reader {
        token: ctx.setup::<Accounts>(),
        seen: Arc::clone(&s),
    })
    .wait_time(1.0)
    .task("read", 1, read_token)
    .build()
    .unwrap();
    let torn = Arc::new(AtomicU64::new(0));
    let t = Arc::clone(&torn);
    let hooks = Lifecycle::<Accounts>::new()
        .setup(async |ctx: SetupContext| {
            assert_eq!(ctx.host(), Some("http://127.0.0.1:9"));
            Ok(Accounts {
                token: "t-42".into(),
            })
        })
        .teardown(move |data: Option<Arc<Accounts>>| {
            if data.is_some_and(|d| d.token == "t-42") {
                t.fetch_add(1, Ordering::Relaxed);
            }
            async { Ok(()) }
        })
        .into_hooks();
    let config = RunConfig {
        host: Some("http://127.0.0.1:9".into()),
        ..RunConfig::default()
    };
    let shape = ConstantShape::new(3, IMMEDIATE, Some(secs(5))).unwrap();
    let report = LocalRunner::new(vec![reader], shape, hooks, config)
        .unwrap()
        .run()
        .await
        .unwrap();
    assert!(matches!(report.setup, SetupOutcome::Done(_)));
    assert_eq!(
        seen.load(Ordering::Relaxed),
        report.tasks,
        "every task of every user saw the data"
    );
    assert!(report.tasks >= 15);
    assert_eq!(
        torn.load(Ordering::Relaxed),
        1,
        "teardown ran once with the data"
    );
    assert!(matches!(report.teardown, Some(Ok(()))));
}

#[tokio::test(start_paused = true)]
async fn a_failed_setup_skips_users_and_teardown() {
    let hits = Arc::new(AtomicU64::new(0));
    let torn = Arc::new(AtomicU64::new(0));
    let t = Arc::clone(&torn);
    let hooks = Lifecycle::<u32>::new()
        .setup(async |_ctx| Err("database unreachable".into()))
        .teardown(move |_d| {
            t.fetch_add(1, Ordering::Relaxed);
            async { Ok(()) }
        })
        .into_hooks();
    let shape = ConstantShape::new(3, IMMEDIATE, Some(secs(5))).unwrap();
    let runner = LocalRunner::new(
        vec![counter_type("c", 1, &hits, 1.0)],
        shape,
        hooks,
        RunConfig::default(),
    )
    .unwrap();
    let handle = runner.handle();
    let err = runner.run().await.unwrap_err();
    assert!(matches!(err, RunError::Setup(_)));
    assert_eq!(err.to_string(), "setup failed: database unreachable");
    assert_eq!(hits.load(Ordering::Relaxed), 0);
    assert_eq!(torn.load(Ordering::Relaxed), 0);
    assert_eq!(handle.state(), RunnerState::Ready);
}

#[tokio::test(start_paused = true)]
async fn setup_timeout_and_no_setup() {
    let hits = Arc::new(AtomicU64::new(0));
    let slow = || {
        Lifecycle::<u32>::new()
            .setup(async |_ctx| {
                tokio::time::sleep(secs(3600)).await;
                Ok(1)
            })
            .setup_timeout(secs(2))
            .into_hooks()
    };
    let shape = || ConstantShape::new(1, IMMEDIATE, Some(secs(2))).unwrap();
    let err = LocalRunner::new(
        vec![counter_type("c", 1, &hits, 1.0)],
        shape(),
        slow(),
        RunConfig::default(),
    )
    .unwrap()
    .run()
    .await
    .unwrap_err();
    assert_eq!(err.to_string(), "setup timed out after 2s");
    let config = RunConfig {
        no_setup: true,
        ..RunConfig::default()
    };
    let report = LocalRunner::new(
        vec![counter_type("c", 1, &hits, 1.0)],
        shape(),
        slow(),
        config,
    )
    .unwrap()
    .run()
    .await
    .unwrap();
    assert!(matches!(report.setup, SetupOutcome::Skipped));
    assert!(hits.load(Ordering::Relaxed) > 0);
}

struct Fragile {
    hits: Arc<AtomicU64>,
}

async fn fragile(u: &mut Fragile) -> TaskResult {
    let n = u.hits.fetch_add(1, Ordering::Relaxed);
    if n % 3 == 2 {
        panic!("task bug #{n}");
    }
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_panicking_task_is_counted_and_the_user_replaced() {
    let hits = Arc::new(AtomicU64::new(0));
    let h = Arc::clone(&hits);
    let ut = UserType::builder("fragile", move |_ctx| Fragile {
        hits: Arc::clone(&h),
    })
    .wait_time(1.0)
    .task("fragile", 1, fragile)
    .build()
    .unwrap();
    let shape = ConstantShape::new(2, IMMEDIATE, Some(secs(9))).unwrap();
    let runner = LocalRunner::new(vec![ut], shape, Hooks::default(), RunConfig::default()).unwrap();
    let handle = runner.handle();
    let run = tokio::spawn(runner.run());
    tokio::time::sleep(Duration::from_millis(5_500)).await;
    assert_eq!(
        handle.users().iter().map(|(_, n)| n).sum::<u64>(),
        2,
        "the target holds"
    );
    let report = run.await.unwrap().unwrap();
    assert!(report.panics >= 3, "{}", report.panics);
    assert_eq!(report.tasks, hits.load(Ordering::Relaxed));
}

struct Failing;
async fn always_fails(_: &mut Failing) -> TaskResult {
    Err("boom".into())
}

#[tokio::test(start_paused = true)]
async fn the_wait_follows_failed_tasks_too() {
    let ut = UserType::builder("failing", |_ctx| Failing)
        .wait_time(1.0)
        .task("fail", 1, always_fails)
        .build()
        .unwrap();
    let shape = ConstantShape::new(1, IMMEDIATE, Some(secs(10))).unwrap();
    let report = LocalRunner::new(vec![ut], shape, Hooks::default(), RunConfig::default())
        .unwrap()
        .run()
        .await
        .unwrap();
    assert!(
        (10..=11).contains(&report.task_errors),
        "no hot loop: {}",
        report.task_errors
    );
}

struct Slow;
async fn very_slow(_: &mut Slow) -> TaskResult {
    tokio::time::sleep(secs(3600)).await;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn users_get_a_graceful_stop_period_then_are_cancelled() {
    let ut = UserType::builder("slow", |_ctx| Slow)
        .task("slow", 1, very_slow)
        .build()
        .unwrap();
    let config = RunConfig {
        stop_timeout: secs(2),
        ..RunConfig::default()
    };
    let shape = ConstantShape::new(3, IMMEDIATE, None).unwrap();
    let runner = LocalRunner::new(vec![ut], shape, Hooks::default(), config).unwrap();
    let handle = runner.handle();
    let run = tokio::spawn(runner.run());
    tokio::time::sleep(secs(5)).await;
    let stop_at = tokio::time::Instant::now();
    handle.stop().await;
    let report = run.await.unwrap().unwrap();
    assert_eq!(report.reason, StopReason::Stopped);
    assert_eq!(report.cancelled_users, 3);
    let took = stop_at.elapsed();
    assert!(took >= secs(2) && took < secs(3), "{took:?}");
}

#[tokio::test(start_paused = true)]
async fn users_split_over_types_by_weight_and_set_users_overrides() {
    let hits = Arc::new(AtomicU64::new(0));
    let types = vec![
        counter_type("heavy", 3, &hits, 1.0),
        counter_type("light", 1, &hits, 1.0),
    ];
    let shape = ConstantShape::new(8, IMMEDIATE, Some(secs(20))).unwrap();
    let runner = LocalRunner::new(types, shape, Hooks::default(), RunConfig::default()).unwrap();
    let handle = runner.handle();
    let run = tokio::spawn(runner.run());
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        handle.users(),
        vec![("heavy".into(), 6), ("light".into(), 2)]
    );
    handle.set_users(3).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        handle.users(),
        vec![("heavy".into(), 2), ("light".into(), 1)],
        "newest stopped first"
    );
    handle.quit().await;
    let report = run.await.unwrap().unwrap();
    assert_eq!(report.reason, StopReason::Quit);
    assert_eq!(handle.state(), RunnerState::Quitting);
}

#[tokio::test(start_paused = true)]
async fn a_shape_with_a_bad_rate_ends_the_run_with_an_error_and_a_summary() {
    let hits = Arc::new(AtomicU64::new(0));
    // Good ticks for 2 s, then a NaN rate.
    let shape =
        |t: Duration| (t < secs(5)).then_some((3, if t < secs(2) { 10.0 } else { f64::NAN }));
    let report = LocalRunner::new(
        vec![counter_type("c", 1, &hits, 1.0)],
        shape,
        Hooks::default(),
        RunConfig::default(),
    )
    .unwrap()
    .run()
    .await
    .unwrap();
    assert_eq!(report.reason, StopReason::Fault);
    let err = report.fault.expect("the fault is reported");
    assert!(
        err.to_string()
            .starts_with("load shape: spawn rate must be"),
        "{err}"
    );
    assert!(
        report.run_time >= secs(2) && report.run_time < secs(3),
        "{:?}",
        report.run_time
    );
    assert!(
        hits.load(Ordering::Relaxed) > 0,
        "users ran until the bad tick"
    );
    assert!(
        report.summary.notes[0].starts_with("The run ended early: load shape: spawn rate"),
        "{:?}",
        report.summary.notes
    );
}

/// A user whose task blocks its runtime thread, as blocking work done in a task by
/// mistake does.
struct Blocker;
async fn block(_: &mut Blocker) -> TaskResult {
    std::thread::sleep(Duration::from_millis(30));
    Ok(())
}

/// Runs `ut` for 3 s on the real clock (4 users) with the health watch, and returns the
/// summary's notes, the whole run's `generator_delay` p99 and how many points of the
/// series are marked late, of how many.
async fn health_of(ut: UserType) -> (String, f64, (usize, usize)) {
    let shape = ConstantShape::new(4, IMMEDIATE, Some(secs(3))).unwrap();
    let runner = LocalRunner::new(vec![ut], shape, Hooks::default(), RunConfig::default())
        .unwrap()
        .output(aiotest_runner::health::HealthWatch::new());
    let handle = runner.handle();
    let report = runner.run().await.unwrap();
    let series = handle.series();
    let marked = (
        series.iter().filter(|p| p.generator_late).count(),
        series.len(),
    );
    // A point is marked exactly when a process' delay p99 in it passed the bound (a
    // blocked runtime may not have sampled itself at all in its first interval).
    for p in &series {
        let late = p.generator.iter().any(|g| {
            g.delay_p99_ms
                .is_some_and(|d| d > aiotest_runner::health::DELAY_BOUND_MS)
        });
        assert_eq!(p.generator_late, late, "{:?}", p.generator);
    }
    let p99 = report
        .summary
        .metrics
        .iter()
        .find(|m| m.name == aiotest_runner::health::GENERATOR_DELAY && m.tags.is_none())
        .and_then(|m| m.values.get("p(99)").copied())
        .unwrap_or_else(|| panic!("no generator_delay: {:?}", report.summary.metrics));
    (report.summary.notes.join("\n"), p99, marked)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_blocked_by_its_users_is_seen_and_noted() {
    let ut = UserType::builder("blocker", |_ctx| Blocker)
        .wait_time(0.0)
        .task("block", 1, block)
        .build()
        .unwrap();
    let (notes, p99, (marked, points)) = health_of(ut).await;
    assert!(p99 > aiotest_runner::health::DELAY_BOUND_MS, "{p99}");
    assert!(notes.contains("the generator was a bottleneck"), "{notes}");
    // Blocked throughout: every interval that sampled itself is marked.
    assert!(marked >= 2 && marked + 1 >= points, "{marked} of {points}");
}
