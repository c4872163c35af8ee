//! Scenarios and executors on tokio's paused clock: exact iteration counts, the open
//! model's schedule, drops and intended-start latency, pauses without catch-up bursts,
//! scenarios with their own start times.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aiotest_core::lifecycle::Hooks;
use aiotest_core::prelude::*;
use aiotest_core::scenario::IterationLateness;
use aiotest_metrics::{Aggregation, Metric, Recorder, RequestRecord, Tags};
use aiotest_runner::{LocalRunner, RunConfig, StopReason};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// A user whose one task "requests" `/x`: it takes `work`, records the request (with
/// its iteration's lateness, as the HTTP client does) and counts it.
struct Worker {
    recorder: Option<Recorder>,
    lateness: Option<IterationLateness>,
    scenario: String,
    work: Duration,
    hits: Arc<AtomicU64>,
}

async fn request(u: &mut Worker) -> TaskResult {
    // No timer for no work: tokio's timer fires on whole milliseconds.
    if !u.work.is_zero() {
        tokio::time::sleep(u.work).await;
    }
    u.hits.fetch_add(1, Ordering::Relaxed);
    if let Some(r) = u.recorder.as_mut() {
        let record = RequestRecord {
            scenario: &u.scenario,
            lateness_us: u.lateness.as_ref().and_then(IterationLateness::get_us),
            ..RequestRecord::ok("/x", "GET", 200, u.work.as_micros() as u64)
        };
        r.record(&record);
        // A named metric with a tag of its own: the scenario's tags join it.
        let kind = Tags::from_pairs([("kind", "work")]).unwrap();
        r.add(&Metric::counter("work_done").unwrap(), 1.0, &kind)
            .unwrap();
    }
    Ok(())
}

fn worker_type(hits: &Arc<AtomicU64>, work: Duration, wait: f64) -> UserType {
    let hits = Arc::clone(hits);
    UserType::builder("worker", move |ctx| Worker {
        recorder: ctx.take::<Recorder>(),
        lateness: ctx.get_cloned::<IterationLateness>(),
        scenario: ctx.scenario().unwrap_or("default").to_owned(),
        work,
        hits: Arc::clone(&hits),
    })
    .wait_time(wait)
    .task("request", 1, request)
    .build()
    .unwrap()
}

async fn run(scenarios: Vec<Scenario>) -> aiotest_runner::RunReport {
    LocalRunner::scenarios(scenarios, Hooks::default(), RunConfig::default(), None)
        .unwrap()
        .run()
        .await
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn shared_iterations_run_exactly_that_many_and_end() {
    let hits = Arc::new(AtomicU64::new(0));
    let sc = Scenario::new(
        "shared",
        vec![worker_type(&hits, ms(3), 0.0)],
        Executor::SharedIterations {
            vus: 10,
            iterations: 1_000,
            max_duration: secs(600),
        },
    )
    .unwrap();
    let report = run(vec![sc.tag("team", "checkout")]).await;
    assert_eq!(report.reason, StopReason::ShapeEnded);
    assert_eq!(hits.load(Ordering::Relaxed), 1_000);
    // Every named sample carries the scenario's name and tags, and its own.
    let tags = Tags::from_pairs([
        ("scenario", "shared"),
        ("team", "checkout"),
        ("kind", "work"),
    ])
    .unwrap();
    let work = report.snapshot.metrics.select("work_done", &tags).unwrap();
    assert_eq!(work.value(Aggregation::Count, 1.0), Some(1_000.0));
    assert_eq!(report.snapshot.metrics.series["work_done"].len(), 1);
    let it = &report.snapshot.scenarios()["shared"];
    assert_eq!((it.iterations, it.interrupted, it.dropped), (1_000, 0, 0));
    assert_eq!(report.snapshot.total().requests, 1_000);
    // 10 users, 3 ms each: about 100 x 3 ms, not the 600 s allowed.
    assert!(report.run_time < secs(1), "{:?}", report.run_time);
}

#[tokio::test(start_paused = true)]
async fn per_vu_iterations_run_that_many_each_and_max_duration_cuts_them() {
    let hits = Arc::new(AtomicU64::new(0));
    let sc = Scenario::new(
        "per-vu",
        vec![worker_type(&hits, ms(10), 0.0)],
        Executor::PerVuIterations {
            vus: 4,
            iterations: 25,
            max_duration: secs(60),
        },
    )
    .unwrap();
    let report = run(vec![sc]).await;
    assert_eq!(hits.load(Ordering::Relaxed), 100);
    assert_eq!(report.snapshot.scenarios()["per-vu"].iterations, 100);
    // A max_duration shorter than the work: the scenario ends there, iterations in
    // flight finish (graceful stop), the rest never start.
    let hits = Arc::new(AtomicU64::new(0));
    let sc = Scenario::new(
        "cut",
        vec![worker_type(&hits, secs(1), 0.0)],
        Executor::PerVuIterations {
            vus: 2,
            iterations: 100,
            max_duration: ms(4_500),
        },
    )
    .unwrap();
    let report = run(vec![sc]).await;
    let it = &report.snapshot.scenarios()["cut"];
    assert_eq!(
        it.iterations, 10,
        "5 each: 4 done by 4.5 s, the 5th finishes in grace"
    );
    assert_eq!(report.run_time, ms(4_500));
}

#[tokio::test(start_paused = true)]
async fn a_constant_arrival_rate_starts_every_iteration_on_schedule() {
    let hits = Arc::new(AtomicU64::new(0));
    let sc = Scenario::new(
        "rate",
        vec![worker_type(&hits, ms(5), 1.0)],
        Executor::ConstantArrivalRate {
            rate: 500.0,
            time_unit: secs(1),
            duration: secs(10),
            pre_allocated_vus: 10,
            max_vus: 50,
            max_delay: Duration::ZERO,
        },
    )
    .unwrap();
    let report = run(vec![sc]).await;
    let it = &report.snapshot.scenarios()["rate"];
    assert_eq!(it.iterations, 5_000, "rate x duration, exactly");
    assert_eq!(it.dropped, 0);
    assert_eq!(hits.load(Ordering::Relaxed), 5_000);
    let x = report.snapshot.total();
    assert_eq!(x.requests, 5_000);
    // No wait follows an open-model iteration (the user type's 1 s wait is for the
    // closed model): 5 ms each, 2.5 users busy on average, none started late.
    let service = x
        .service
        .as_ref()
        .expect("open-model requests keep a service time");
    assert_eq!(service.percentile_us(0.99), 5_000);
    assert!(x.percentile_us(0.99) < 6_000, "{}", x.percentile_us(0.99));
}

/// The schedule starts what is due within its 1 ms lookahead at once; an iteration not
/// yet due that finds the one user busy waits for it instead of being dropped: at 4,000
/// per second and a task that takes no time, one user keeps up. (Dropped on sight, three
/// of every four were lost.)
#[tokio::test(start_paused = true)]
async fn an_iteration_not_yet_due_waits_for_a_user_instead_of_being_dropped() {
    let hits = Arc::new(AtomicU64::new(0));
    let sc = Scenario::new(
        "fast",
        vec![worker_type(&hits, Duration::ZERO, 0.0)],
        Executor::ConstantArrivalRate {
            rate: 4_000.0,
            time_unit: secs(1),
            duration: secs(2),
            pre_allocated_vus: 1,
            max_vus: 1,
            max_delay: Duration::ZERO,
        },
    )
    .unwrap();
    let report = run(vec![sc]).await;
    let it = &report.snapshot.scenarios()["fast"];
    assert_eq!((it.iterations, it.dropped), (8_000, 0));
    assert_eq!(it.iterations, 8_000);
    assert_eq!(hits.load(Ordering::Relaxed), 8_000);
    // None started late: the user was free by each one's due time.
    let x = report.snapshot.total();
    assert!(x.percentile_us(1.0) <= 1_000, "{}", x.percentile_us(1.0));
}

#[tokio::test(start_paused = true)]
async fn with_every_user_busy_iterations_are_dropped_and_counted_never_delayed() {
    let hits = Arc::new(AtomicU64::new(0));
    // 100 per second for 10 s, each taking 100 ms: 10 users busy on average, 5 allowed.
    let sc = Scenario::new(
        "tight",
        vec![worker_type(&hits, ms(100), 0.0)],
        Executor::ConstantArrivalRate {
            rate: 100.0,
            time_unit: secs(1),
            duration: secs(10),
            pre_allocated_vus: 5,
            max_vus: 5,
            max_delay: Duration::ZERO,
        },
    )
    .unwrap();
    let report = run(vec![sc]).await;
    let it = &report.snapshot.scenarios()["tight"];
    assert_eq!(
        it.iterations + it.dropped,
        1_000,
        "every due iteration accounted for"
    );
    assert!((450..=550).contains(&it.iterations), "{}", it.iterations);
    // What ran, ran on time: dropping, not queueing.
    let x = report.snapshot.total();
    assert!(x.percentile_us(1.0) <= 101_000, "{}", x.percentile_us(1.0));
}

#[tokio::test(start_paused = true)]
async fn latency_counts_from_the_intended_start_when_a_new_user_was_needed() {
    // No pre-allocated users: each iteration that finds none free starts one, and a
    // user's start-up (its factory, here made slow by on_start) is part of the
    // iteration's latency, not hidden.
    async fn slow_start(_: &mut Worker) -> TaskResult {
        tokio::time::sleep(Duration::from_millis(200)).await;
        Ok(())
    }
    let hits = Arc::new(AtomicU64::new(0));
    let h = Arc::clone(&hits);
    let ut = UserType::builder("worker", move |ctx| Worker {
        recorder: ctx.take::<Recorder>(),
        lateness: ctx.get_cloned::<IterationLateness>(),
        scenario: ctx.scenario().unwrap_or("default").to_owned(),
        work: Duration::from_millis(5),
        hits: Arc::clone(&h),
    })
    .on_start(slow_start)
    .task("request", 1, request)
    .build()
    .unwrap();
    let sc = Scenario::new(
        "cold",
        vec![ut],
        Executor::ConstantArrivalRate {
            rate: 10.0,
            time_unit: secs(1),
            duration: secs(2),
            pre_allocated_vus: 0,
            max_vus: 10,
            max_delay: Duration::ZERO,
        },
    )
    .unwrap();
    let report = run(vec![sc]).await;
    let x = report.snapshot.total();
    assert_eq!(x.requests, 20);
    let service = x.service.as_ref().unwrap();
    assert_eq!(service.max_us, 5_000, "the server's part");
    assert_eq!(
        x.max_us,
        Some(205_000),
        "from the intended start: 200 ms start-up + 5 ms"
    );
}

#[tokio::test(start_paused = true)]
async fn a_ramping_arrival_rate_follows_the_integral_and_a_pause_brings_no_burst() {
    let hits = Arc::new(AtomicU64::new(0));
    // 0 -> 100/s over 10 s, 100/s for 10 s: 500 + 1,000 iterations.
    let sc = Scenario::new(
        "ramp",
        vec![worker_type(&hits, ms(2), 0.0)],
        Executor::RampingArrivalRate {
            start_rate: 0.0,
            time_unit: secs(1),
            stages: vec![
                RateStage::new(secs(10), 100.0),
                RateStage::new(secs(10), 100.0),
            ],
            pre_allocated_vus: 5,
            max_vus: 20,
            max_delay: Duration::ZERO,
        },
    )
    .unwrap();
    let runner =
        LocalRunner::scenarios(vec![sc], Hooks::default(), RunConfig::default(), None).unwrap();
    let handle = runner.handle();
    let run = runner.start();
    tokio::time::sleep(secs(15)).await;
    handle.pause().await;
    tokio::time::sleep(ms(10)).await;
    let at_pause = hits.load(Ordering::Relaxed);
    tokio::time::sleep(secs(5)).await;
    assert_eq!(
        hits.load(Ordering::Relaxed),
        at_pause,
        "nothing runs while paused"
    );
    handle.resume().await;
    // Right after the resume, the rate is the schedule's (100/s), not a burst of the
    // 500 iterations the pause would have held.
    tokio::time::sleep(secs(1)).await;
    let after = hits.load(Ordering::Relaxed) - at_pause;
    assert!(
        (95..=105).contains(&after),
        "{after} in the second after the resume"
    );
    let report = run.await.unwrap().unwrap();
    let it = &report.snapshot.scenarios()["ramp"];
    assert_eq!(
        it.iterations + it.dropped,
        1_500,
        "the integral of the rate"
    );
    assert_eq!(it.dropped, 0);
    assert_eq!(
        report.run_time,
        secs(20),
        "the pause is not in the run time"
    );
}

#[tokio::test(start_paused = true)]
async fn scenarios_start_at_their_own_time_and_are_counted_apart() {
    let (a, b) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let warmup = Scenario::new(
        "warmup",
        vec![worker_type(&a, ms(10), 0.09)],
        Executor::ConstantVus {
            vus: 2,
            duration: secs(5),
        },
    )
    .unwrap();
    let burst = Scenario::new(
        "burst",
        vec![worker_type(&b, ms(5), 0.0)],
        Executor::ConstantArrivalRate {
            rate: 50.0,
            time_unit: secs(1),
            duration: secs(4),
            pre_allocated_vus: 2,
            max_vus: 10,
            max_delay: Duration::ZERO,
        },
    )
    .unwrap()
    .start_time(secs(3));
    let runner = LocalRunner::scenarios(
        vec![warmup, burst],
        Hooks::default(),
        RunConfig::default(),
        None,
    )
    .unwrap();
    let run = runner.start();
    tokio::time::sleep(ms(2_900)).await;
    assert_eq!(
        b.load(Ordering::Relaxed),
        0,
        "burst waits for its start time"
    );
    let report = run.await.unwrap().unwrap();
    assert_eq!(report.run_time, secs(7), "the later one ends at 3 + 4 s");
    assert_eq!(report.snapshot.scenarios()["burst"].iterations, 200);
    let warm = report.snapshot.scenarios()["warmup"].iterations;
    // 2 users, one iteration every 100 ms each, for 5 s; one started at the very end
    // finishes in the graceful stop.
    assert!((98..=102).contains(&warm), "{warm}");
    // Requests carry their scenario.
    let by_scenario = |name: &str| -> u64 {
        report
            .snapshot
            .endpoints
            .iter()
            .filter(|(k, _)| k.scenario == name)
            .map(|(_, s)| s.requests)
            .sum()
    };
    assert_eq!(by_scenario("burst"), 200);
    assert_eq!(by_scenario("warmup"), warm);
}

#[tokio::test(start_paused = true)]
async fn with_a_max_delay_iterations_wait_in_line_and_the_wait_is_in_their_latency() {
    // 10 per second for 2 s, one user, 150 ms each: the user falls 50 ms further behind
    // with every iteration. Allowed to wait 10 s, it runs one every 150 ms: 14 by the
    // end at 2 s, the 14th 650 ms late; the 6 still in line then never start.
    let sc = |max_delay: Duration| {
        let hits = Arc::new(AtomicU64::new(0));
        Scenario::new(
            "queued",
            vec![worker_type(&hits, ms(150), 0.0)],
            Executor::ConstantArrivalRate {
                rate: 10.0,
                time_unit: secs(1),
                duration: secs(2),
                pre_allocated_vus: 1,
                max_vus: 1,
                max_delay,
            },
        )
        .unwrap()
    };
    let report = run(vec![sc(secs(10))]).await;
    let it = &report.snapshot.scenarios()["queued"];
    assert_eq!((it.iterations, it.dropped), (14, 6));
    let x = report.snapshot.total();
    assert_eq!(x.service.as_ref().unwrap().max_us, 150_000);
    let max = x.max_us.unwrap();
    assert!(
        (800_000..=802_000).contains(&max),
        "150 ms + 650 ms in line: {max}"
    );
    // Allowed 300 ms, those that would wait longer are dropped; what ran waited at most
    // that long.
    let report = run(vec![sc(ms(300))]).await;
    let it = &report.snapshot.scenarios()["queued"];
    assert_eq!(
        it.iterations + it.dropped,
        20,
        "every due iteration accounted for"
    );
    assert!(it.dropped >= 5, "{}", it.dropped);
    let max = report.snapshot.total().max_us.unwrap();
    assert!(max <= 451_000, "150 ms + at most 300 ms in line: {max}");
    assert!(max >= 400_000, "some waited: {max}");
}

/// The process stalls for 300 ms across the scenario's end (its runtime is late): the
/// iterations due in that time that never started are dropped and counted, so due =
/// done + dropped + interrupted (they used to be lost: 2,848 + 0 of 3,000).
#[tokio::test(start_paused = true)]
async fn iterations_due_before_the_end_of_a_stall_across_it_are_counted_as_dropped() {
    struct Staller {
        started: tokio::time::Instant,
        stalled: Arc<std::sync::atomic::AtomicBool>,
        hits: Arc<AtomicU64>,
    }
    async fn go(u: &mut Staller) -> TaskResult {
        u.hits.fetch_add(1, Ordering::Relaxed);
        if u.started.elapsed() >= ms(9_850) && !u.stalled.swap(true, Ordering::SeqCst) {
            // Everything on this runtime is late by 300 ms, the scheduler too.
            tokio::time::advance(ms(300)).await;
        }
        Ok(())
    }
    let hits = Arc::new(AtomicU64::new(0));
    let (h, stalled, started) = (
        Arc::clone(&hits),
        Arc::new(std::sync::atomic::AtomicBool::new(false)),
        tokio::time::Instant::now(),
    );
    let ut = UserType::builder("staller", move |_| Staller {
        started,
        stalled: Arc::clone(&stalled),
        hits: Arc::clone(&h),
    })
    .task("go", 1, go)
    .build()
    .unwrap();
    let sc = Scenario::new(
        "rate",
        vec![ut],
        Executor::ConstantArrivalRate {
            rate: 300.0,
            time_unit: secs(1),
            duration: secs(10),
            pre_allocated_vus: 5,
            max_vus: 5,
            max_delay: Duration::ZERO,
        },
    )
    .unwrap();
    let report = run(vec![sc]).await;
    let it = &report.snapshot.scenarios()["rate"];
    assert!(
        it.iterations < 3_000,
        "the stall cost iterations: {}",
        it.iterations
    );
    assert_eq!(
        it.iterations + it.dropped + it.interrupted,
        3_000,
        "due = done + dropped + interrupted: {it:?}"
    );
}

/// Pre-allocated users that take 100 ms to start (their `on_start`): iterations due
/// meanwhile wait for them, late (and say so), rather than being dropped the moment the
/// first user offers itself. k6 readies its pre-allocated users before the scenario.
#[tokio::test(start_paused = true)]
async fn iterations_wait_for_pre_allocated_users_still_starting() {
    struct Slow(Option<IterationLateness>, Option<Recorder>);
    async fn start(_: &mut Slow) -> TaskResult {
        tokio::time::sleep(ms(100)).await;
        Ok(())
    }
    async fn go(u: &mut Slow) -> TaskResult {
        let record = RequestRecord {
            lateness_us: u.0.as_ref().and_then(IterationLateness::get_us),
            ..RequestRecord::ok("/x", "GET", 200, 0)
        };
        if let Some(r) = u.1.as_mut() {
            r.record(&record);
        }
        Ok(())
    }
    let ut = UserType::builder("slow", |ctx| {
        Slow(
            ctx.get_cloned::<IterationLateness>(),
            ctx.take::<Recorder>(),
        )
    })
    .on_start(start)
    .task("go", 1, go)
    .build()
    .unwrap();
    let sc = Scenario::new(
        "warm",
        vec![ut],
        Executor::ConstantArrivalRate {
            rate: 200.0,
            time_unit: secs(1),
            duration: secs(2),
            pre_allocated_vus: 4,
            max_vus: 4,
            max_delay: Duration::ZERO,
        },
    )
    .unwrap();
    let report = run(vec![sc]).await;
    let it = &report.snapshot.scenarios()["warm"];
    assert_eq!((it.iterations, it.dropped), (400, 0));
    // The first ones started about 100 ms late, and their latency says so.
    let max = report.snapshot.total().max_us.unwrap();
    assert!((95_000..=101_000).contains(&max), "{max}");
}

/// On the real clock, iterations start at their own due times, not together on
/// millisecond ticks: at 1,500/s with 10 users (below 2,000/s the pacer's window is
/// 10 µs), the gap between one start and the next is most often within 250 µs of the
/// schedule's 667 µs (25 µs here when quiet; the margin is for a loaded machine). On
/// tokio's millisecond timer the gaps are 0 and 1,000 µs: at least 333 µs off.
#[tokio::test]
async fn on_the_real_clock_iterations_start_at_their_own_due_times() {
    let starts = Arc::new(std::sync::Mutex::new(Vec::<std::time::Instant>::new()));
    let log = Arc::clone(&starts);
    struct Stamp(Arc<std::sync::Mutex<Vec<std::time::Instant>>>);
    async fn stamp(u: &mut Stamp) -> TaskResult {
        u.0.lock().unwrap().push(std::time::Instant::now());
        Ok(())
    }
    let ut = UserType::builder("stamp", move |_| Stamp(Arc::clone(&log)))
        .task("stamp", 1, stamp)
        .build()
        .unwrap();
    let sc = Scenario::new(
        "paced",
        vec![ut],
        Executor::ConstantArrivalRate {
            rate: 1_500.0,
            time_unit: secs(1),
            duration: secs(2),
            pre_allocated_vus: 10,
            max_vus: 10,
            max_delay: Duration::ZERO,
        },
    )
    .unwrap();
    let report = run(vec![sc]).await;
    let it = &report.snapshot.scenarios()["paced"];
    assert_eq!(it.iterations + it.dropped, 3_000);
    let mut starts = starts.lock().unwrap().clone();
    starts.sort();
    assert!(starts.len() >= 2_900, "{}", starts.len());
    let mut off: Vec<f64> = starts
        .windows(2)
        .map(|w| ((w[1] - w[0]).as_secs_f64() * 1e6 - 666.7).abs())
        .collect();
    off.sort_by(f64::total_cmp);
    let typical = off[off.len() / 2];
    assert!(typical < 250.0, "typical gap off by {typical:.0} µs");
}
