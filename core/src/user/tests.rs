//! Tests of the user model: building, validation, running instances, task scheduling.

use std::sync::{Arc, Mutex};

use super::*;
use crate::testutil::block_on;

/// A user that logs what ran into a log shared with the test.
struct Logger {
    id: u64,
    log: Arc<Mutex<Vec<String>>>,
    count: u32,
}

impl Logger {
    fn push(&self, s: String) {
        self.log.lock().unwrap().push(s);
    }
}

async fn login(u: &mut Logger) -> TaskResult {
    u.push(format!("{} login", u.id));
    Ok(())
}
async fn browse(u: &mut Logger) -> TaskResult {
    u.count += 1;
    u.push(format!("{} browse {}", u.id, u.count));
    Ok(())
}
async fn fail(_u: &mut Logger) -> TaskResult {
    Err("boom".into())
}
async fn look(u: &Logger) -> TaskResult {
    u.push(format!("{} look", u.id));
    Ok(())
}
async fn logout(u: &mut Logger) -> TaskResult {
    u.push(format!("{} logout", u.id));
    Ok(())
}

fn logger_type(log: &Arc<Mutex<Vec<String>>>) -> UserTypeBuilder<Logger> {
    let log = Arc::clone(log);
    UserType::builder("logger", move |ctx: &UserContext| Logger {
        id: ctx.user_id(),
        log: Arc::clone(&log),
        count: 0,
    })
}

fn ctx(id: u64) -> UserContext {
    UserContext::new(id, "logger".into(), None, None)
}

#[test]
fn a_user_runs_on_start_tasks_and_on_stop_on_its_own_state() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let ut = logger_type(&log)
        .on_start(login)
        .on_stop(logout)
        .task("browse", 1, browse)
        .task("fail", 1, fail)
        .shared_task("look", 1, look)
        .task("closure", 1, async |u: &mut Logger| {
            u.count += 10;
            Ok(())
        })
        .build()
        .unwrap();
    let mut user = ut.spawn(&ctx(7));
    block_on(user.on_start().unwrap()).unwrap();
    block_on(user.run_task(0).unwrap()).unwrap();
    assert_eq!(
        block_on(user.run_task(1).unwrap()).unwrap_err().to_string(),
        "boom"
    );
    block_on(user.run_task(2).unwrap()).unwrap(); // a shared task runs in sequence too
    block_on(user.run_task(3).unwrap()).unwrap();
    block_on(user.run_task(0).unwrap()).unwrap();
    assert!(user.run_task(4).is_none(), "out of range");
    block_on(user.on_stop().unwrap()).unwrap();
    assert_eq!(
        *log.lock().unwrap(),
        ["7 login", "7 browse 1", "7 look", "7 browse 12", "7 logout"]
    );
    // Only shared tasks can run with shared access.
    assert!(user.run_shared_task(0).is_none());
    assert!(user.run_shared_task(2).is_some());
}

#[test]
fn each_user_gets_its_own_state() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let ut = logger_type(&log).task("browse", 1, browse).build().unwrap();
    let mut a = ut.spawn(&ctx(1));
    let mut b = ut.spawn(&ctx(2));
    block_on(a.run_task(0).unwrap()).unwrap();
    block_on(a.run_task(0).unwrap()).unwrap();
    block_on(b.run_task(0).unwrap()).unwrap();
    assert_eq!(
        *log.lock().unwrap(),
        ["1 browse 1", "1 browse 2", "2 browse 1"]
    );
    assert!(a.on_start().is_none() && a.on_stop().is_none());
}

#[test]
fn concurrent_users_run_shared_tasks_at_the_same_time() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let ut = logger_type(&log)
        .execution_mode(ExecutionMode::Concurrent)
        .max_concurrent_tasks(2)
        .shared_task("look", 3, look)
        .shared_task("peek", 1, async |u: &Logger| {
            u.push("peek".into());
            Ok(())
        })
        .build()
        .unwrap();
    assert_eq!(ut.max_concurrent_tasks(), 2);
    let user = ut.spawn(&ctx(3));
    // Two futures borrowing the same user at once: this only compiles for shared tasks.
    let f1 = user.run_shared_task(0).unwrap();
    let f2 = user.run_shared_task(1).unwrap();
    block_on(f2).unwrap();
    block_on(f1).unwrap();
    assert_eq!(*log.lock().unwrap(), ["peek", "3 look"]);
}

#[test]
fn defaults_follow_the_seed() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let ut = logger_type(&log).task("browse", 1, browse).build().unwrap();
    assert_eq!(ut.name(), "logger");
    assert_eq!(ut.weight(), 1);
    assert_eq!(ut.host(), None);
    assert_eq!(ut.execution_mode(), ExecutionMode::Sequential);
    assert_eq!(ut.max_concurrent_tasks(), 1);
    assert_eq!(format!("{:?}", ut.wait_time()), "WaitTime::fixed(1)");
    let conc = logger_type(&log)
        .execution_mode(ExecutionMode::Concurrent)
        .shared_task("a", 1, look)
        .shared_task("b", 1, look)
        .shared_task("c", 1, look)
        .weight(4)
        .host("https://example.test:8443/base")
        .build()
        .unwrap();
    assert_eq!(
        conc.max_concurrent_tasks(),
        3,
        "defaults to the number of tasks"
    );
    assert_eq!(conc.weight(), 4);
    assert_eq!(conc.host(), Some("https://example.test:8443/base"));
}

#[test]
fn bad_definitions_are_errors_when_built_naming_type_and_task() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let l = || logger_type(&log);
    let cases: Vec<(Result<UserType, UserTypeError>, &str)> = vec![
        (l().build(), "user type `logger` has no tasks"),
        (
            UserType::builder(" ", |_: &UserContext| ()).build(),
            "a user type needs a name",
        ),
        (
            l().weight(0).task("browse", 1, browse).build(),
            "user type `logger`: weight must be at least 1",
        ),
        (
            l().task("browse", 0, browse).build(),
            "user type `logger`, task `browse`: weight must be at least 1",
        ),
        (
            l().task("browse", 1, browse)
                .task("browse", 1, login)
                .build(),
            "user type `logger`: task name `browse` is empty or used twice",
        ),
        (
            l().task("", 1, browse).build(),
            "user type `logger`: task name `` is empty or used twice",
        ),
        (
            l().task("browse", 1, browse).wait_time(-1.0).build(),
            "user type `logger`: wait time must be between 0 and 1e9 seconds, got -1",
        ),
        (
            l().task("browse", 1, browse).wait_time((3.0, 1.0)).build(),
            "user type `logger`: wait time range: min 3 is above max 1",
        ),
        (
            l().task("browse", 1, browse)
                .wait_time(WaitTime::constant_throughput(0.0))
                .build(),
            "user type `logger`: constant throughput must be a finite number of tasks per second > 0, got 0",
        ),
        (
            l().task("browse", 1, browse).host("example.com").build(),
            "user type `logger`: host `example.com`: it must start with http:// or https://",
        ),
        (
            l().task("browse", 1, browse)
                .max_concurrent_tasks(2)
                .build(),
            "user type `logger`: max_concurrent_tasks applies to concurrent mode only",
        ),
        (
            l().execution_mode(ExecutionMode::Concurrent)
                .max_concurrent_tasks(0)
                .shared_task("look", 1, look)
                .build(),
            "user type `logger`: max_concurrent_tasks must be at least 1",
        ),
        (
            l().execution_mode(ExecutionMode::Concurrent)
                .shared_task("look", 1, look)
                .task("browse", 1, browse)
                .build(),
            "user type `logger`, task `browse`: concurrent tasks share the user, so they take `&U`; add it with shared_task",
        ),
    ];
    for (result, msg) in cases {
        assert_eq!(result.unwrap_err().to_string(), msg);
    }
}

#[test]
fn host_validation() {
    for ok in [
        "http://127.0.0.1:8080",
        "https://a.test",
        "http://h/path?q=1",
        "http://[::1]:80",
    ] {
        assert!(
            logger_type(&Arc::default())
                .host(ok)
                .task("t", 1, browse)
                .build()
                .is_ok(),
            "{ok}"
        );
    }
    for bad in [
        "",
        "127.0.0.1",
        "ftp://a",
        "http://",
        "https:///path",
        "http://a b",
        "http:/x",
        "http://127.0.0.1:99999",
    ] {
        assert!(
            logger_type(&Arc::default())
                .host(bad)
                .task("t", 1, browse)
                .build()
                .is_err(),
            "{bad}"
        );
    }
    let e = logger_type(&Arc::default())
        .host("http://127.0.0.1:65536/")
        .task("t", 1, browse)
        .build()
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        e.as_deref(),
        Some(
            "user type `logger`: host `http://127.0.0.1:65536/`: port `65536` is not a port number (1 to 65535)"
        )
    );
}

#[test]
fn sequential_scheduler_repeats_each_task_by_weight_in_order() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let ut = logger_type(&log)
        .task("a", 2, browse)
        .task("b", 1, browse)
        .task("c", 3, browse)
        .build()
        .unwrap();
    let mut sched = ut.scheduler();
    let mut rng = fastrand::Rng::with_seed(0);
    let order: Vec<usize> = (0..12).map(|_| sched.next_task(&mut rng)).collect();
    assert_eq!(order, [0, 0, 1, 2, 2, 2, 0, 0, 1, 2, 2, 2]);
}

#[test]
fn concurrent_scheduler_picks_by_weight() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let ut = logger_type(&log)
        .execution_mode(ExecutionMode::Concurrent)
        .shared_task("heavy", 9, look)
        .shared_task("light", 1, look)
        .build()
        .unwrap();
    let mut sched = ut.scheduler();
    let mut rng = fastrand::Rng::with_seed(11);
    let heavy = (0..10_000)
        .filter(|_| sched.next_task(&mut rng) == 0)
        .count();
    assert!((8_800..=9_200).contains(&heavy), "{heavy}");
}

#[test]
fn context_carries_host_and_typed_setup_data() {
    let data = crate::lifecycle::SetupData::new(vec![1u32, 2, 3]).unwrap();
    let ctx = UserContext::new(
        5,
        "shop".into(),
        Some("http://127.0.0.1:9".into()),
        Some(data),
    );
    assert_eq!(ctx.user_id(), 5);
    assert_eq!(ctx.user_type(), "shop");
    assert_eq!(ctx.host(), Some("http://127.0.0.1:9"));
    assert_eq!(*ctx.setup::<Vec<u32>>().unwrap(), vec![1, 2, 3]);
    assert!(ctx.setup::<String>().is_none());
}

#[test]
fn extensions_are_taken_once_by_type() {
    let ctx = UserContext::new(1, "t".into(), None, None)
        .with(7u32)
        .with(String::from("rec"));
    assert_eq!(ctx.take::<String>().as_deref(), Some("rec"));
    assert_eq!(ctx.take::<String>(), None, "taken once");
    assert_eq!(ctx.take::<u32>(), Some(7));
    assert_eq!(ctx.take::<u64>(), None);
    let ctx = UserContext::new(1, "t".into(), None, None).with(5i64);
    assert_eq!(ctx.get_cloned::<i64>(), Some(5));
    assert_eq!(ctx.get_cloned::<i64>(), Some(5), "left in place");
}
