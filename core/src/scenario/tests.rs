//! Tests of scenarios, executors and their arithmetic.

use super::*;
use crate::user::TaskResult;

struct Idle;
async fn nap(_: &mut Idle) -> TaskResult {
    Ok(())
}

fn idle() -> UserType {
    UserType::builder("idle", |_| Idle)
        .task("nap", 1, nap)
        .build()
        .unwrap()
}

fn s(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

#[test]
fn a_constant_rate_schedule_starts_at_once_and_counts_the_integral() {
    let e = Executor::ConstantArrivalRate {
        rate: 500.0,
        time_unit: s(1),
        duration: s(10),
        pre_allocated_vus: 10,
        max_vus: 100,
        max_delay: Duration::ZERO,
    };
    let a = e.arrivals().unwrap();
    assert_eq!(a.integral(), 5_000.0);
    assert_eq!(a.due(0), Some(Duration::ZERO));
    assert_eq!(a.due(1), Some(Duration::from_millis(2)));
    assert_eq!(a.due(4_999), Some(Duration::from_micros(9_998_000)));
    assert_eq!(a.due(5_000), None, "exactly rate x duration iterations");
    assert_eq!(a.due_before(s(10)), 5_000);
    assert_eq!(a.due_before(s(1)), 500);
    // A time unit: 30 per minute is one every 2 s.
    let per_minute = Executor::ConstantArrivalRate {
        rate: 30.0,
        time_unit: s(60),
        duration: s(60),
        pre_allocated_vus: 1,
        max_vus: 1,
        max_delay: Duration::ZERO,
    };
    let a = per_minute.arrivals().unwrap();
    assert_eq!(a.due(3), Some(s(6)));
    assert_eq!(a.due_before(s(60)), 30);
}

#[test]
fn a_ramping_schedule_follows_the_integral_of_the_rate() {
    // 0 -> 100/s over 10 s (500 iterations), 100/s for 10 s (1,000), 100 -> 0 over 10 s (500).
    let e = Executor::RampingArrivalRate {
        start_rate: 0.0,
        time_unit: s(1),
        stages: vec![
            RateStage::new(s(10), 100.0),
            RateStage::new(s(10), 100.0),
            RateStage::new(s(10), 0.0),
        ],
        pre_allocated_vus: 10,
        max_vus: 100,
        max_delay: Duration::ZERO,
    };
    let a = e.arrivals().unwrap();
    assert_eq!(a.integral(), 2_000.0);
    assert_eq!(a.length(), s(30));
    // Under a linear ramp the count grows with the square of time: 125 by 5 s.
    assert_eq!(a.due_before(s(5)), 125);
    assert_eq!(a.due_before(s(10)), 500);
    assert_eq!(a.due_before(s(20)), 1_500);
    assert_eq!(a.due_before(s(30)), 2_000);
    // Due times only grow.
    let mut last = Duration::ZERO;
    for k in 0..2_000 {
        let d = a.due(k).unwrap();
        assert!(d >= last, "{k}");
        last = d;
    }
    assert_eq!(a.due(2_000), None);
}

#[test]
fn shares_split_every_iteration_exactly_once() {
    let shares: Vec<Share> = (0..3)
        .map(|i| Share {
            index: i,
            of: 3,
            from: 10,
        })
        .collect();
    for k in 10..100u64 {
        assert_eq!(shares.iter().filter(|s| s.owns(k)).count(), 1, "{k}");
    }
    assert!(!shares.iter().any(|s| s.owns(9)), "before `from`");
    assert_eq!(shares[1].next_from(0), 10);
    assert_eq!(shares[2].next_from(10), 11);
    assert_eq!(shares[0].next_from(13), 15);
    assert!(Share::ALL.owns(0) && Share::ALL.owns(7));
    assert_eq!(split_count(10, 3), [4, 3, 3]);
    assert_eq!(split_count(2, 3), [1, 1, 0]);
    assert_eq!(split_count(10, 3).iter().sum::<u64>(), 10);
}

#[test]
fn targets_of_closed_model_executors() {
    let c = Executor::ConstantVus {
        vus: 5,
        duration: s(10),
    };
    assert_eq!(c.target(s(3)), Some((5, f64::INFINITY)));
    assert_eq!(c.target(s(10)), None);
    let r = Executor::RampingVus {
        start_vus: 0,
        stages: vec![Stage::new(s(10), 10)],
    };
    assert_eq!(r.target(s(5)).map(|t| t.0), Some(5));
    assert_eq!(r.target(s(10)), None);
    let shape = Executor::shape(|t: Duration| (t < s(2)).then_some((3, 1.0)));
    assert_eq!(shape.target(s(1)), Some((3, 1.0)));
    assert_eq!(shape.target(s(2)), None);
    assert_eq!(shape.drive(), Drive::Targets);
    assert_eq!(c.kind(), "constant-vus");
}

#[test]
fn bad_executors_and_scenarios_are_refused_naming_the_field() {
    let cases: Vec<(Executor, &str)> = vec![
        (
            Executor::SharedIterations {
                vus: 10,
                iterations: 5,
                max_duration: s(10),
            },
            "iterations: 5 is fewer than the 10 users sharing them",
        ),
        (
            Executor::PerVuIterations {
                vus: 0,
                iterations: 5,
                max_duration: s(10),
            },
            "vus: must be at least 1",
        ),
        (
            Executor::ConstantArrivalRate {
                rate: f64::NAN,
                time_unit: s(1),
                duration: s(1),
                pre_allocated_vus: 1,
                max_vus: 1,
                max_delay: Duration::ZERO,
            },
            "rate: NaN is not a rate",
        ),
        (
            Executor::ConstantArrivalRate {
                rate: 10.0,
                time_unit: s(1),
                duration: s(1),
                pre_allocated_vus: 5,
                max_vus: 2,
                max_delay: Duration::ZERO,
            },
            "pre_allocated_vus: 5 is above max_vus (2)",
        ),
        (
            Executor::ConstantArrivalRate {
                rate: 10.0,
                time_unit: Duration::ZERO,
                duration: s(1),
                pre_allocated_vus: 1,
                max_vus: 2,
                max_delay: Duration::ZERO,
            },
            "time_unit: must be longer than zero",
        ),
        (
            Executor::ConstantVus {
                vus: 2_000_000,
                duration: s(1),
            },
            "vus: 2000000 users is above the limit",
        ),
        (
            Executor::RampingArrivalRate {
                start_rate: 0.0,
                time_unit: s(1),
                stages: vec![],
                pre_allocated_vus: 1,
                max_vus: 1,
                max_delay: Duration::ZERO,
            },
            "stages: at least one stage is needed",
        ),
    ];
    for (e, want) in cases {
        let got = Scenario::new("s", vec![idle()], e).unwrap_err().to_string();
        assert!(got.starts_with(want), "want {want}\n got {got}");
    }
    assert!(matches!(
        Scenario::new("a b", vec![idle()], Executor::shape(|_: Duration| None)),
        Err(ScenarioError::BadName(_))
    ));
    assert!(matches!(
        Scenario::new("s", vec![], Executor::shape(|_: Duration| None)),
        Err(ScenarioError::NoUserTypes(_))
    ));
    let one = Scenario::new("s", vec![idle()], Executor::shape(|_: Duration| None)).unwrap();
    assert_eq!(
        validate_scenarios(&[one.clone(), one])
            .unwrap_err()
            .to_string(),
        "scenario name `s` is used twice"
    );
    let tagged = Scenario::new("t", vec![idle()], Executor::shape(|_: Duration| None))
        .unwrap()
        .tag("a:b", "x");
    assert_eq!(
        validate_scenarios(&[tagged]).unwrap_err().to_string(),
        "scenario `t`: tag `a:b`: a key has no control characters and none of { } , : ="
    );
}

#[test]
fn lateness_is_none_in_the_closed_model() {
    let l = IterationLateness::closed();
    assert_eq!(l.get_us(), None);
    let shared = l.clone();
    l.set(Some(Duration::from_millis(3)));
    assert_eq!(shared.get_us(), Some(3_000));
    l.set(None);
    assert_eq!(shared.get_us(), None);
}

#[test]
fn executors_describe_themselves_in_a_line() {
    let e = Executor::ConstantArrivalRate {
        rate: 50.0,
        time_unit: Duration::from_secs(1),
        duration: Duration::from_secs(90),
        pre_allocated_vus: 2,
        max_vus: 20,
        max_delay: Duration::from_millis(100),
    };
    assert_eq!(
        e.to_string(),
        "50 per 1s for 1m30s, 2 to 20 users, waits up to 100ms"
    );
    let e = Executor::SharedIterations {
        vus: 1,
        iterations: 20,
        max_duration: Duration::from_secs(600),
    };
    assert_eq!(e.to_string(), "20 iterations shared by 1 user, at most 10m");
    assert_eq!(
        human_duration(Duration::from_millis(1_500)),
        "1.5s",
        "fractions of a second as written"
    );
    assert_eq!(human_duration(Duration::from_secs(3_660)), "1h1m");
}

/// A run's planned end is known for executors that run for a set time; for iteration
/// counts it is not (max_duration only bounds them), though the latest end still is.
#[test]
fn iteration_counts_have_a_latest_end_but_no_planned_one() {
    let timed = Scenario::new(
        "timed",
        vec![idle()],
        Executor::ConstantVus {
            vus: 1,
            duration: s(30),
        },
    )
    .unwrap()
    .start_time(s(5));
    assert_eq!(timed.planned_end(), Some(s(35)));
    let counted = Scenario::new(
        "counted",
        vec![idle()],
        Executor::SharedIterations {
            vus: 1,
            iterations: 10,
            max_duration: s(600),
        },
    )
    .unwrap();
    assert_eq!(counted.ends_by(), Some(s(600)));
    assert_eq!(counted.planned_end(), None);
}
