//! Real master and worker processes over a private redis-server.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aiotest_coordinator::testutil::RedisServer;

use super::{Proc, free_port, http, spawn};

fn worker_views(port: u16) -> Vec<(String, String, u64)> {
    http(port, "GET", "/api/state")
        .and_then(|v| v["workers"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .map(|w| {
            (
                w["id"].as_str().unwrap_or("").to_owned(),
                w["state"].as_str().unwrap_or("").to_owned(),
                w["users"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

#[test]
fn a_run_over_tls_with_a_private_ca_counts_every_request() {
    let (redis, ca_pem) = RedisServer::start_tls().unwrap();
    let ca = std::env::temp_dir().join(format!("aiotest-it-ca-{}.pem", std::process::id()));
    std::fs::write(&ca, ca_pem).unwrap();
    let ca_arg = ca.to_str().unwrap();
    let t = super::target();
    let url = format!("http://{}/", t.addr);
    let redis_url = redis.url();
    let meet = [
        "--redis",
        &redis_url,
        "--redis-ca",
        ca_arg,
        "--run-id",
        "tls",
    ];
    let _worker = spawn(&[&["run", "--worker", "-q"][..], &meet].concat());
    let export = super::export_path("tls");
    let master = [
        "run",
        "--url",
        &url,
        "--master",
        "--expect-workers",
        "1",
        "--worker-wait",
        "30s",
        "-u",
        "2",
        "-t",
        "2s",
        "--wait",
        "0.01",
        "-q",
        "--summary-export",
        export.to_str().unwrap(),
    ];
    let out = super::aiotest(&[&master[..], &meet].concat());
    assert_eq!(out.status.code(), Some(0), "{}", super::text(&out.stderr));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&export).unwrap()).unwrap();
    let counted = json["totals"]["requests"].as_u64().unwrap();
    assert!(counted > 10, "{counted}");
    assert_eq!(counted, t.served.load(std::sync::atomic::Ordering::Relaxed));
    let _ = std::fs::remove_file(export);
    let _ = std::fs::remove_file(ca);
}

#[test]
fn workers_send_the_masters_environment_values_not_their_own() {
    let redis = RedisServer::start().unwrap();
    let t = super::target();
    let file = super::env_file(&t, "dist-env", "{{env.AIOTEST_IT_TOKEN}}");
    let redis_url = redis.url();
    let meet = ["--redis", redis_url.as_str(), "--run-id", "env"];
    // The worker has no such variable, or a wrong one: the master's value must win.
    let _worker = super::Proc(
        Command::new(env!("CARGO_BIN_EXE_aiotest"))
            .args([&["run", "--worker", "-q"][..], &meet].concat())
            .env("AIOTEST_IT_TOKEN", "wrong")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_aiotest"))
        .args(
            [
                &[
                    "run",
                    file.to_str().unwrap(),
                    "--master",
                    "--expect-workers",
                    "1",
                    "--worker-wait",
                    "30s",
                    "-q",
                ][..],
                &meet,
            ]
            .concat(),
        )
        .env("AIOTEST_IT_TOKEN", "t-9")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", super::text(&out.stderr));
    let served = served(&t);
    assert!(served > 10, "{served}");
    assert_eq!(
        t.authorized.load(std::sync::atomic::Ordering::Relaxed),
        served,
        "every request carried the master's value"
    );
    let _ = std::fs::remove_file(file);
}

#[test]
fn a_worker_killed_with_sigkill_goes_missing_and_its_users_move() {
    let redis = RedisServer::start().unwrap();
    let t = super::target();
    let url = format!("http://{}/", t.addr);
    let control = free_port();
    let control_addr = format!("127.0.0.1:{control}");
    let export = super::export_path("sigkill");
    let _ = std::fs::remove_file(&export);
    let master = spawn(&[
        "run",
        "--url",
        &url,
        "--master",
        "--expect-workers",
        "3",
        "--redis",
        &redis.url(),
        "--run-id",
        "sigkill",
        "-u",
        "9",
        "--wait",
        "0.01",
        "--control-addr",
        &control_addr,
        "-q",
        "--summary-export",
        export.to_str().unwrap(),
    ]);
    let mut workers: Vec<Proc> = (0..3)
        .map(|_| {
            spawn(&[
                "run",
                "--worker",
                "--redis",
                &redis.url(),
                "--run-id",
                "sigkill",
                "-q",
            ])
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let w = worker_views(control);
        if w.len() == 3 && w.iter().all(|(_, s, u)| s == "RUNNING" && *u == 3) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "workers never ran 3 users each: {w:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // SIGKILL one worker: no goodbye, no final flush.
    let victim = workers.remove(0);
    let mut victim = victim;
    victim.0.kill().unwrap();
    let _ = victim.0.wait();
    let killed = Instant::now();
    let mut missing_after = None;
    loop {
        let w = worker_views(control);
        if missing_after.is_none() && w.iter().any(|(_, s, _)| s == "MISSING") {
            missing_after = Some(killed.elapsed());
        }
        let carried: u64 = w
            .iter()
            .filter(|(_, s, _)| s == "RUNNING")
            .map(|(_, _, u)| u)
            .sum();
        if missing_after.is_some() && carried == 9 {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(12),
            "not moved: {w:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let missing_after = missing_after.unwrap_or_default();
    // The dashboard's tables show the workers and the lost one's state.
    let tables = http(control, "GET", "/api/tables").expect("the dashboard's tables");
    let html = tables["html"].as_str().unwrap_or_default();
    assert!(
        html.contains("id=\"workers\"") && html.contains("MISSING"),
        "{html}"
    );
    // Each running worker's own health: a line of its own in the series (its process
    // id), and its latest timer delay and CPU on its row of the workers table.
    let running: Vec<String> = worker_views(control)
        .into_iter()
        .filter(|(_, s, _)| s == "RUNNING")
        .map(|(id, _, _)| id)
        .collect();
    assert_eq!(running.len(), 2, "{running:?}");
    let pid_of = |id: &str| id.rsplit('-').nth(1).unwrap_or_default().to_owned();
    super::wait_for(
        "each worker's health in the series",
        Duration::from_secs(10),
        || {
            let series = http(control, "GET", "/api/series").unwrap_or_default();
            let last = series["points"]
                .as_array()
                .and_then(|p| p.last())
                .cloned()
                .unwrap_or_default();
            let processes = last["generator"].to_string();
            running
                .iter()
                .all(|id| processes.contains(&format!("worker_pid:{}", pid_of(id))))
        },
    );
    let tables = http(control, "GET", "/api/tables").expect("the dashboard's tables");
    let html = tables["html"].as_str().unwrap_or_default();
    for id in &running {
        let row = html
            .split("<tr>")
            .find(|r| r.contains(id.as_str()))
            .unwrap_or_else(|| panic!("no row for {id}: {html}"));
        let figures: Vec<&str> = row
            .split("<td")
            .skip(4)
            .filter_map(|c| c.split('>').nth(1)?.split('<').next())
            .collect();
        assert_eq!(figures.len(), 2, "{row}");
        for f in figures {
            assert!(f.parse::<f64>().is_ok(), "a figure, not {f:?}: {row}");
        }
    }
    // Liveness 5 s, checked at each of the master's 1 s heartbeats, and the victim's
    // last heartbeat came up to 1 s before the kill: MISSING at most 6 s after the kill
    // in theory. One more second for this test's polling on a loaded 2-core machine (CI
    // once saw 6.02 s); a broken liveness check would never mark it at all.
    assert!(
        missing_after <= Duration::from_secs(7),
        "MISSING after {missing_after:?}"
    );
    // Its users are then running on the other two (seen in their next heartbeats).
    assert!(
        killed.elapsed() < Duration::from_secs(9),
        "users moved after {:?}",
        killed.elapsed()
    );
    assert!(http(control, "POST", "/api/stop").is_some());
    let mut master = master;
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = master.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the master did not exit");
        std::thread::sleep(Duration::from_millis(100));
    };
    // The lost worker's last records never came: the run says so, and fails.
    assert_eq!(status.code(), Some(1));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&export).unwrap()).unwrap();
    let notes = json["notes"].to_string();
    assert!(notes.contains("went MISSING"), "{notes}");
    assert_eq!(notes.matches("Metrics of worker").count(), 1, "{notes}");
    let _ = std::fs::remove_file(export);
    for mut w in workers {
        let deadline = Instant::now() + Duration::from_secs(15);
        while w.0.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "a worker did not exit after the master"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn spawn_logged(args: &[&str]) -> super::Proc {
    super::Proc(super::spawn_piped(args))
}

fn served(t: &super::Target) -> u64 {
    t.served.load(std::sync::atomic::Ordering::Relaxed)
}

/// Redis killed for good in the middle of a run: the master ends with exit 1 and the
/// summary of what it received (within its --redis-timeout), the worker stops its users
/// when its master falls silent (so the target's count freezes) and exits when Redis
/// stays away.
#[test]
fn redis_killed_for_good_ends_the_master_and_stops_the_workers() {
    let mut redis = RedisServer::start().unwrap();
    let t = super::target();
    let url = format!("http://{}/", t.addr);
    let export = super::export_path("redis-gone");
    let _ = std::fs::remove_file(&export);
    let meet = [
        "--redis",
        &redis.url(),
        "--run-id",
        "gone",
        "--redis-timeout",
        "3s",
    ];
    let worker = spawn_logged(
        &[
            &["run", "--worker", "--master-timeout", "3s", "-q"][..],
            &meet,
        ]
        .concat(),
    );
    let master = super::spawn_piped(
        &[
            &[
                "run",
                "--url",
                &url,
                "--master",
                "-u",
                "2",
                "--wait",
                "0.01",
                "-q",
                "--summary-export",
                export.to_str().unwrap(),
            ][..],
            &meet,
        ]
        .concat(),
    );
    super::wait_for("traffic", Duration::from_secs(30), || served(&t) > 100);
    // Long enough for metrics to reach the master: a worker sends a second once its
    // users' batches of it are in (1.25 s after it ends), at its next flush.
    std::thread::sleep(Duration::from_secs(4));
    redis.kill();
    let killed = Instant::now();
    let out = super::wait_exit(master, Duration::from_secs(15), "the master");
    let err = super::text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("Redis has been unreachable for 3s"), "{err}");
    assert!(
        super::text(&out.stdout).contains("Total"),
        "the summary is printed"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&export).unwrap()).unwrap();
    let counted = json["totals"]["requests"].as_u64().unwrap();
    assert!(counted > 0 && counted <= served(&t), "{counted}");
    let notes = json["notes"].to_string();
    assert!(notes.contains("The run ended early"), "{notes}");
    assert!(notes.contains("Metrics of worker"), "{notes}");
    // The worker stops its users once its master is silent for 3 s (plus a heartbeat).
    std::thread::sleep(Duration::from_secs(5).saturating_sub(killed.elapsed()));
    let frozen = served(&t);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        served(&t),
        frozen,
        "no load after the worker lost its master"
    );
    let mut worker = worker;
    let w = super::wait_exit(
        std::mem::replace(
            &mut worker.0,
            std::process::Command::new("true").spawn().unwrap(),
        ),
        Duration::from_secs(15),
        "the worker",
    );
    assert_eq!(w.status.code(), Some(1), "{}", super::text(&w.stderr));
    assert!(
        super::text(&w.stderr).contains("Redis has been unreachable"),
        "{}",
        super::text(&w.stderr)
    );
    let _ = std::fs::remove_file(export);
}

/// With Redis gone, the master still obeys: `POST /api/quit` ends it at once, with a
/// summary, instead of answering 202 and doing nothing.
#[test]
fn a_master_whose_redis_died_still_obeys_quit() {
    let mut redis = RedisServer::start().unwrap();
    let t = super::target();
    let url = format!("http://{}/", t.addr);
    let control = free_port();
    let control_addr = format!("127.0.0.1:{control}");
    let meet = ["--redis", &redis.url(), "--run-id", "quit-gone"];
    let _worker = spawn(&[&["run", "--worker", "-q"][..], &meet].concat());
    let master = super::spawn_piped(
        &[
            &[
                "run",
                "--url",
                &url,
                "--master",
                "-u",
                "2",
                "--wait",
                "0.01",
                "-q",
                "--control-addr",
                &control_addr,
            ][..],
            &meet,
        ]
        .concat(),
    );
    super::wait_for("traffic", Duration::from_secs(30), || served(&t) > 100);
    redis.kill();
    std::thread::sleep(Duration::from_millis(500));
    assert!(http(control, "POST", "/api/quit").is_some());
    let out = super::wait_exit(
        master,
        Duration::from_secs(10),
        "the master after /api/quit",
    );
    // Its worker's last metrics cannot come: said, and the run fails.
    assert_eq!(out.status.code(), Some(1), "{}", super::text(&out.stderr));
    let stdout = super::text(&out.stdout);
    assert!(stdout.contains("Total"));
    assert!(stdout.contains("Metrics of worker"), "{stdout}");
}

/// The keys of a run id left in a Redis (`redis-cli --scan`).
pub(crate) fn run_keys(redis: &RedisServer, run_id: &str) -> Vec<String> {
    let out = std::process::Command::new("redis-cli")
        .args([
            "-p",
            &redis.port().to_string(),
            "--scan",
            "--pattern",
            &format!("aiotest:{run_id}:*"),
        ])
        .output()
        .unwrap();
    let mut keys: Vec<String> = super::text(&out.stdout)
        .lines()
        .map(str::to_owned)
        .filter(|k| !k.is_empty())
        .collect();
    keys.sort();
    keys
}

/// A run id used again: the first master dies (SIGKILL) leaving its plan and its worker's
/// last metrics in Redis; a worker started before the next master waits for it instead
/// of running the stored plan; the next master's run sends load only to its own URL and
/// counts only its own requests.
#[test]
fn a_reused_run_id_sends_load_only_where_the_new_master_says() {
    let redis = RedisServer::start().unwrap();
    let old = super::target();
    let new = super::target();
    let meet = ["--redis", &redis.url(), "--run-id", "reused"];
    let w1 = spawn(
        &[
            &["run", "--worker", "--master-timeout", "2s", "-q"][..],
            &meet,
        ]
        .concat(),
    );
    let old_url = format!("http://{}/", old.addr);
    let mut first = spawn(
        &[
            &[
                "run", "--url", &old_url, "--master", "-u", "2", "--wait", "0.01", "-q",
            ][..],
            &meet,
        ]
        .concat(),
    );
    super::wait_for("traffic to the old target", Duration::from_secs(30), || {
        served(&old) > 100
    });
    first.0.kill().unwrap();
    let _ = first.0.wait();
    // The first worker stops its users within its master timeout; then a second worker
    // starts, before any master: it must not run what it finds in Redis.
    std::thread::sleep(Duration::from_secs(4));
    let w2 = spawn(&[&["run", "--worker", "-q"][..], &meet].concat());
    std::thread::sleep(Duration::from_secs(2));
    let old_served = served(&old);
    // The dead master's lock expires 10 s after its death: the next master waits for
    // it (it used to be refused as "another master is running").
    let new_url = format!("http://{}/", new.addr);
    let export = super::export_path("reused");
    let out = super::aiotest(
        &[
            &[
                "run",
                "--url",
                &new_url,
                "--master",
                "--expect-workers",
                "2",
                "-u",
                "4",
                "-t",
                "2s",
                "--wait",
                "0.01",
                "-q",
                "--summary-export",
                export.to_str().unwrap(),
            ][..],
            &meet,
        ]
        .concat(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", super::text(&out.stderr));
    assert_eq!(served(&old), old_served, "no load to the old URL");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&export).unwrap()).unwrap();
    let counted = json["totals"]["requests"].as_u64().unwrap();
    assert!(counted > 50, "{counted}");
    assert_eq!(
        counted,
        served(&new),
        "only the new run's requests are counted"
    );
    drop((w1, w2));
    let _ = std::fs::remove_file(export);
}

/// Redis killed for good in a run shorter than `--redis-timeout`: the master runs to
/// its end, but its workers went MISSING and their metrics stopped coming. It shows no
/// users once they are gone, and ends with exit 1 and a note giving, per worker, from
/// when its metrics are missing (it used to exit 0 with a quarter of the requests).
#[test]
fn redis_lost_before_a_short_run_ends_is_exit_1_with_the_missing_metrics_named() {
    let mut redis = RedisServer::start().unwrap();
    let t = super::target();
    let url = format!("http://{}/", t.addr);
    let export = super::export_path("redis-lost-short");
    let _ = std::fs::remove_file(&export);
    let port = super::free_port();
    let meet = ["--redis", &redis.url(), "--run-id", "lost-short"];
    let workers: Vec<_> = (0..2)
        .map(|_| {
            spawn_logged(
                &[
                    &["run", "--worker", "--master-timeout", "3s", "-q"][..],
                    &meet,
                ]
                .concat(),
            )
        })
        .collect();
    let master = super::spawn_piped(
        &[
            &[
                "run",
                "--url",
                &url,
                "--master",
                "--expect-workers",
                "2",
                "--liveness-timeout",
                "2s",
                "-u",
                "4",
                "--wait",
                "0.01",
                "-t",
                "10s",
                "-q",
                "--control-addr",
                &format!("127.0.0.1:{port}"),
                "--summary-export",
                export.to_str().unwrap(),
            ][..],
            &meet,
        ]
        .concat(),
    );
    super::wait_for("traffic", Duration::from_secs(30), || served(&t) > 100);
    std::thread::sleep(Duration::from_secs(3));
    redis.kill();
    // Both workers go MISSING after the liveness timeout: nobody runs the users.
    super::wait_for("no users on the master", Duration::from_secs(10), || {
        super::http(port, "GET", "/api/state").is_some_and(|s| s["users"]["url"] == 0)
    });
    let out = super::wait_exit(master, Duration::from_secs(30), "the master");
    let err = super::text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("metrics of"), "{err}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&export).unwrap()).unwrap();
    let notes = json["notes"].to_string();
    assert_eq!(notes.matches("Metrics of worker").count(), 2, "{notes}");
    assert!(notes.contains("s into the run on"), "{notes}");
    let counted = json["totals"]["requests"].as_u64().unwrap();
    assert!(
        counted > 0 && counted < served(&t),
        "{counted} of {}",
        served(&t)
    );
    drop(workers);
    let _ = std::fs::remove_file(export);
}

/// Redis down for 6 s across the run's end, then back: the master waits for its
/// workers' final flushes rather than giving up at once, so what they sent late is
/// merged; every request the target served is counted, and the run time is the time
/// load was sent (the workers ran on until Redis brought them the stop).
#[test]
fn redis_down_across_the_end_and_back_loses_nothing_and_times_the_load() {
    let mut redis = RedisServer::start().unwrap();
    let t = super::target();
    let url = format!("http://{}/", t.addr);
    let export = super::export_path("redis-back");
    let _ = std::fs::remove_file(&export);
    let meet = ["--redis", &redis.url(), "--run-id", "back"];
    let worker = spawn_logged(&[&["run", "--worker", "-q"][..], &meet].concat());
    let master = super::spawn_piped(
        &[
            &[
                "run",
                "--url",
                &url,
                "--master",
                "-u",
                "2",
                "--wait",
                "0.01",
                "-t",
                "8s",
                "-q",
                "--summary-export",
                export.to_str().unwrap(),
            ][..],
            &meet,
        ]
        .concat(),
    );
    super::wait_for("traffic", Duration::from_secs(30), || served(&t) > 50);
    let first = Instant::now();
    std::thread::sleep(Duration::from_secs(4));
    redis.kill();
    std::thread::sleep(Duration::from_secs(6));
    redis.restart().unwrap();
    let out = super::wait_exit(master, Duration::from_secs(40), "the master");
    let err = super::text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&export).unwrap()).unwrap();
    assert_eq!(
        json["totals"]["requests"].as_u64(),
        Some(served(&t)),
        "{}",
        json["notes"]
    );
    // The load ran about 10 s (to the restart), not the 8 s the master planned.
    let ran = first.elapsed().as_secs_f64();
    let duration = json["duration_s"].as_f64().unwrap();
    assert!(
        duration > 9.0,
        "run time {duration} s, the load ran ~{ran:.1} s"
    );
    drop(worker);
    let _ = std::fs::remove_file(export);
}

/// A distributed run that ends normally leaves nothing of its run id in Redis: its plan,
/// metrics stream, worker numbering and a data file's row counter go with it (the row
/// counter used to stay a week).
#[test]
fn a_normal_end_leaves_no_key_of_the_run_in_redis() {
    let redis = RedisServer::start().unwrap();
    let t = super::target();
    let dir = std::env::temp_dir().join(format!("aiotest-it-{}-keys", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("rows.csv"), "n\n1\n2\n3\n4\n").unwrap();
    let file = dir.join("keys.toml");
    std::fs::write(
        &file,
        format!(
            "host = \"http://{}\"\n[[data]]\nfile = \"rows.csv\"\non_exhausted = \"wrap\"\n\
             [[users]]\nname = \"u\"\nwait_time = 0.01\n[[users.tasks]]\npath = \"/n/{{{{data.n}}}}\"\nname = \"/n\"\n",
            t.addr
        ),
    )
    .unwrap();
    let meet = ["--redis", &redis.url(), "--run-id", "tidy"];
    let _worker = spawn(&[&["run", "--worker", "-q"][..], &meet].concat());
    let out = super::aiotest(
        &[
            &[
                "run",
                file.to_str().unwrap(),
                "--master",
                "-u",
                "2",
                "-t",
                "2s",
                "-q",
            ][..],
            &meet,
        ]
        .concat(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", super::text(&out.stderr));
    assert!(served(&t) > 0);
    assert_eq!(run_keys(&redis, "tidy"), Vec::<String>::new());
    let _ = std::fs::remove_dir_all(dir);
}
