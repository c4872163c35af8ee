//! How local runs end: a target that hangs, a threshold that matches nothing, SIGTERM,
//! `--linger`, and live figures that are right.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{
    aiotest, counter_sum, export_path, free_port, http, http_text, spawn_piped, target, text,
    wait_exit, wait_for,
};

fn read_json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

/// A target that accepts and never answers: the requests it received are in the summary
/// as interrupted failures, `failures<1%` fails (it used to pass on "0 requests"), and
/// since not one request succeeded the run failed: exit 1.
#[test]
fn a_hung_target_gives_interrupted_requests_and_fails_the_threshold() {
    let t = target();
    let url = format!("http://{}/hang", t.addr);
    let export = export_path("hang");
    let out = aiotest(&[
        "run",
        "--url",
        &url,
        "-u",
        "5",
        "-t",
        "3s",
        "--stop-timeout",
        "1s",
        "--threshold",
        "failures<1%",
        "-q",
        "--summary-export",
        export.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let json = read_json(&export);
    let served = t.served.load(Ordering::Relaxed);
    assert_eq!(served, 5, "each user sent one request");
    assert_eq!(json["totals"]["requests"].as_u64(), Some(served));
    assert_eq!(json["totals"]["interrupted"].as_u64(), Some(served));
    assert_eq!(json["totals"]["failures"].as_u64(), Some(served));
    assert_eq!(json["thresholds"][0]["ok"], false);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("5 requests were still in flight when the graceful stop period ended"),
        "{stdout}"
    );
    // They waited the whole run: that is their duration, a lower bound.
    assert!(
        json["totals"]["max_ms"].as_f64().unwrap() >= 3_000.0,
        "{}",
        json["totals"]
    );
    let _ = std::fs::remove_file(export);
}

/// A target that answers for a second and then hangs for the rest of the run: the
/// requests made before it hung are fast, but users waited for most of the run, so
/// `p95<100ms` fails (it used to pass with p95 at a few ms), and the summary says how
/// long no response came.
#[test]
fn a_target_that_hangs_mid_run_fails_a_latency_threshold() {
    let started = std::sync::OnceLock::<Instant>::new();
    let served = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let count = std::sync::Arc::clone(&served);
    let addr = super::serve(move |_, _| {
        count.fetch_add(1, Ordering::SeqCst);
        let first = *started.get_or_init(Instant::now);
        if first.elapsed() > Duration::from_secs(1) {
            // Hangs the server's only thread: every connection waits.
            std::thread::sleep(Duration::from_secs(20));
        }
        std::thread::sleep(Duration::from_millis(2));
        hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from_static(b"ok")))
    });
    let export = export_path("hang-mid-run");
    let out = aiotest(&[
        "run",
        &format!("http://{addr}/"),
        "-u",
        "20",
        "-t",
        "6s",
        "--stop-timeout",
        "1s",
        "--threshold",
        "p95<100ms",
        "--threshold",
        "failures<5%",
        "-q",
        "--summary-export",
        export.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(99), "{}", text(&out.stderr));
    let json = read_json(&export);
    let verdicts = super::threshold_verdicts(&json);
    assert!(!verdicts[0], "p95<100ms fails: {}", json["thresholds"]);
    assert!(
        json["totals"]["p95_ms"].as_f64().unwrap() > 1_000.0,
        "{}",
        json["totals"]
    );
    // Estimated samples are not requests: the count is what was sent, the server's
    // count plus the 19 requests queued behind the one its thread hangs in.
    let (counted, served) = (
        json["totals"]["requests"].as_u64().unwrap(),
        served.load(Ordering::SeqCst),
    );
    assert!(
        (served..=served + 20).contains(&counted),
        "{counted} vs {served}"
    );
    assert_eq!(json["totals"]["interrupted"].as_u64(), Some(20));
    let notes = json["notes"].to_string();
    assert!(notes.contains("got a response"), "{notes}");
    assert!(notes.contains("samples estimated"), "{notes}");
    let _ = std::fs::remove_file(export);
}

/// A threshold whose selector names a request the test never makes: a usage error
/// before anything runs when the names are known (`--url`, scenario files).
#[test]
fn a_threshold_naming_no_request_of_the_test_is_refused_before_the_run() {
    let t = target();
    let url = format!("http://{}/items/42", t.addr);
    let out = aiotest(&[
        "run",
        "--url",
        &url,
        "-t",
        "1s",
        "--threshold",
        "p95{name=/nope}<1ms",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains(
            "threshold `p95{name=/nope}<1ms`: no request of this test is named `/nope`; the names are: /items/{id}"
        ),
        "{err}"
    );
    assert_eq!(t.served.load(Ordering::Relaxed), 0, "nothing ran");
    // The right name runs, and passes.
    let out = aiotest(&[
        "run",
        "--url",
        &url,
        "-t",
        "1s",
        "-q",
        "--threshold",
        "p95{name=/items/{id}}<10s",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(t.served.load(Ordering::Relaxed) > 0);
}

/// SIGTERM (what `timeout`, docker and CI cancellation send) stops the run gracefully
/// and still writes the summary and the export.
#[test]
fn sigterm_stops_gracefully_and_writes_the_export() {
    let t = target();
    let url = format!("http://{}/", t.addr);
    let export = export_path("sigterm");
    let child = spawn_piped(&[
        "run",
        "--url",
        &url,
        "-u",
        "3",
        "-q",
        "--summary-export",
        export.to_str().unwrap(),
    ]);
    wait_for("traffic", Duration::from_secs(20), || {
        t.served.load(Ordering::Relaxed) > 50
    });
    signal(child.id(), "-TERM");
    let out = wait_exit(child, Duration::from_secs(15), "aiotest after SIGTERM");
    // A run cut short by a signal is not a pass: its own exit code, k6's.
    assert_eq!(out.status.code(), Some(105), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("cut short by a signal (exit 105)"));
    let json = read_json(&export);
    assert_eq!(
        json["totals"]["requests"].as_u64(),
        Some(t.served.load(Ordering::Relaxed)),
        "every request counted once"
    );
    assert!(text(&out.stdout).contains("Total"));
    let _ = std::fs::remove_file(export);
}

/// A second SIGTERM stops at once: users stuck on a silent target are cancelled, their
/// requests counted as interrupted, and the export still written.
#[test]
fn a_second_sigterm_stops_at_once_and_still_writes_the_export() {
    let t = target();
    let url = format!("http://{}/hang", t.addr);
    let export = export_path("sigterm2");
    let child = spawn_piped(&[
        "run",
        "--url",
        &url,
        "-u",
        "3",
        "--stop-timeout",
        "60s",
        "-q",
        "--summary-export",
        export.to_str().unwrap(),
    ]);
    wait_for("3 hung requests", Duration::from_secs(20), || {
        t.served.load(Ordering::Relaxed) == 3
    });
    signal(child.id(), "-TERM");
    std::thread::sleep(Duration::from_millis(300));
    signal(child.id(), "-TERM");
    let out = wait_exit(child, Duration::from_secs(5), "aiotest after two SIGTERMs");
    // Cut short by a signal, whatever else went wrong.
    assert_eq!(out.status.code(), Some(105), "{}", text(&out.stderr));
    let json = read_json(&export);
    assert_eq!(json["totals"]["requests"].as_u64(), Some(3));
    assert_eq!(json["totals"]["interrupted"].as_u64(), Some(3));
    let _ = std::fs::remove_file(export);
}

/// The sum of a Prometheus counter over all its series.
/// `--linger` keeps the control API up after the run: `/metrics` and `/api/state` give
/// the final totals (the JSON export's), until `POST /api/quit`.
#[test]
fn linger_serves_the_final_totals_until_quit() {
    let t = target();
    let url = format!("http://{}/", t.addr);
    let export = export_path("linger");
    let _ = std::fs::remove_file(&export);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = spawn_piped(&[
        "run",
        "--url",
        &url,
        "-u",
        "3",
        "--wait",
        "0.01",
        "-t",
        "2s",
        "--control-addr",
        &addr,
        "--linger",
        "-q",
        "--summary-export",
        export.to_str().unwrap(),
    ]);
    wait_for("the run to end", Duration::from_secs(20), || {
        export.exists()
    });
    // Written at the end: give the writer a moment to finish the file.
    std::thread::sleep(Duration::from_millis(200));
    let json = read_json(&export);
    let total = json["totals"]["requests"].as_u64().unwrap();
    assert_eq!(total, t.served.load(Ordering::Relaxed));
    assert!(child.try_wait().unwrap().is_none(), "it lingers");
    let metrics = http_text(port, "GET", "/metrics").unwrap();
    assert_eq!(
        counter_sum(&metrics, "aiotest_requests_total") as u64,
        total,
        "{metrics}"
    );
    let state = http(port, "GET", "/api/state").unwrap();
    assert_eq!(state["requests"].as_u64(), Some(total));
    assert_eq!(state["state"], "READY");
    // The final state, not the last users: done, nobody running.
    assert_eq!(state["done"], true, "{state}");
    assert_eq!(state["users"]["url"], 0, "{state}");
    assert!(http(port, "POST", "/api/quit").is_some());
    let out = wait_exit(child, Duration::from_secs(5), "aiotest after /api/quit");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let _ = std::fs::remove_file(export);
}

/// At steady state the live requests/s (`/api/state`, the progress line) is the rate the
/// target serves, within 3%: rates divide by the time the closed intervals span, not by
/// the time up to now (which read ~10% low).
#[test]
fn the_live_rate_at_steady_state_is_the_served_rate() {
    let t = target();
    let url = format!("http://{}/", t.addr);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    // Users that mostly wait, all started at once: a rate the machine holds steady from
    // the first second, whatever else runs.
    let mut child = spawn_piped(&[
        "run",
        "--url",
        &url,
        "-u",
        "5",
        "-r",
        "1000",
        "--wait",
        "0.02",
        "--control-addr",
        &addr,
        "-q",
    ]);
    wait_for("traffic", Duration::from_secs(20), || {
        t.served.load(Ordering::Relaxed) > 0
    });
    let first = Instant::now();
    let rps = || {
        http(port, "GET", "/api/state").unwrap()["rps"]
            .as_f64()
            .unwrap()
    };
    // From the third second on, the live rate is the served rate (it used to read
    // (k-1)/k of it for the first ten seconds).
    std::thread::sleep(Duration::from_secs(3));
    let early = rps();
    let served_early = t.served.load(Ordering::Relaxed) as f64 / first.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(1));
    let from = (Instant::now(), t.served.load(Ordering::Relaxed));
    std::thread::sleep(Duration::from_secs(6));
    let mut live = Vec::new();
    for _ in 0..3 {
        live.push(rps());
        std::thread::sleep(Duration::from_secs(1));
    }
    let served =
        (t.served.load(Ordering::Relaxed) - from.1) as f64 / from.0.elapsed().as_secs_f64();
    let live = live.iter().sum::<f64>() / live.len() as f64;
    // A scrape mid-run never shows more iterations than requests (each iteration here is
    // one request): both are filed by their own time, not by when their batch came.
    let metrics = http_text(port, "GET", "/metrics").unwrap();
    let (iterations, requests) = (
        counter_sum(&metrics, "aiotest_iterations_total"),
        counter_sum(&metrics, "aiotest_requests_total"),
    );
    assert!(
        iterations <= requests && iterations > 0.0,
        "{iterations} iterations, {requests} requests"
    );
    // A pause is not a quiet target: the rate over the window stays the rate of the
    // time the run ran.
    assert!(http_text(port, "POST", "/api/pause").is_some());
    std::thread::sleep(Duration::from_secs(6));
    let paused = rps();
    let _ = child.kill();
    let _ = child.wait();
    assert!(served > 50.0, "{served}");
    assert!(
        (live - served).abs() / served < 0.05,
        "live {live:.1} req/s, served {served:.1} req/s"
    );
    assert!(
        (early - served_early).abs() / served_early < 0.05,
        "at 3 s: live {early:.1} req/s, served {served_early:.1} req/s"
    );
    assert!(
        (paused - served).abs() / served < 0.05,
        "paused 6 s: live {paused:.1} req/s, served {served:.1} req/s"
    );
}

/// Retries end with the run: against a target that never answers, a 1 s run whose
/// attempts time out after 1 s ends once its attempt in flight times out, not after
/// three more attempts and their back-offs (it used to run on for every retry).
#[test]
fn retries_and_their_back_off_stop_at_the_graceful_stop() {
    let t = target();
    let url = format!("http://{}/hang", t.addr);
    let export = export_path("retries-stop");
    let started = Instant::now();
    let out = aiotest(&[
        "run",
        &url,
        "-t",
        "1s",
        "--timeout",
        "1s",
        "--max-retries",
        "3",
        "-q",
        "--allow-failures",
        "--summary-export",
        export.to_str().unwrap(),
    ]);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(took < Duration::from_secs(4), "took {took:?}");
    let json = read_json(&export);
    assert_eq!(
        json["totals"]["requests"].as_u64(),
        Some(t.served.load(Ordering::Relaxed))
    );
    let _ = std::fs::remove_file(export);
}

/// A million-user open-model run obeys its signals: starting and ending users is linear
/// (ending them one by one used to be quadratic), so a SIGTERM ends it in seconds.
#[test]
fn many_pre_allocated_users_still_stop_at_a_signal() {
    let t = target();
    let url = format!("http://{}/", t.addr);
    let child = spawn_piped(&[
        "run",
        &url,
        "--rate",
        "20",
        "-u",
        "100000",
        "--max-users",
        "100000",
        "-t",
        "60s",
        "-q",
    ]);
    wait_for("traffic", Duration::from_secs(30), || {
        t.served.load(Ordering::Relaxed) > 0
    });
    signal(child.id(), "-TERM");
    let out = wait_exit(child, Duration::from_secs(20), "aiotest after SIGTERM");
    assert_eq!(out.status.code(), Some(105), "{}", text(&out.stderr));
}

/// Setup obeys the commands every phase does: SIGTERM or `POST /api/stop` while setup
/// waits on a silent target ends the run at once with its summary (it used to wait for
/// the setup request), and a pause asked during setup holds the users from their start.
#[test]
fn setup_obeys_stop_pause_and_signals() {
    // A target whose login takes `login_ms` (its only thread sleeps: a silent target for
    // a long one), counting the users' requests.
    let target = |login_ms: u64| {
        let users_served = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let count = std::sync::Arc::clone(&users_served);
        let addr = super::serve(move |req, _| {
            if req.uri.path() == "/login" {
                std::thread::sleep(Duration::from_millis(login_ms));
            } else {
                count.fetch_add(1, Ordering::SeqCst);
            }
            hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))
        });
        let file = super::TempFile::new(
            &format!("setup-cmds-{login_ms}"),
            &format!(
                "host = \"http://{addr}\"\n[load]\nusers = 2\nrun_time = \"30s\"\n\
                 [[setup]]\npath = \"/login\"\n\
                 [[users]]\nname = \"u\"\nwait_time = 0.05\n[[users.tasks]]\npath = \"/work\"\n"
            ),
        );
        (file, users_served)
    };

    // SIGTERM during setup.
    let (silent, _) = target(60_000);
    let started = Instant::now();
    let child = spawn_piped(&["run", silent.path().to_str().unwrap(), "-q"]);
    std::thread::sleep(Duration::from_millis(800));
    signal(child.id(), "-TERM");
    let out = wait_exit(
        child,
        Duration::from_secs(10),
        "aiotest after SIGTERM in setup",
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(105), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("Total"), "{stdout}");
    assert!(stdout.contains("no user started"), "{stdout}");

    // POST /api/stop during setup: the run time is 0 and so is its rate.
    let (silent, users) = target(60_000);
    let port = free_port();
    let child = spawn_piped(&[
        "run",
        silent.path().to_str().unwrap(),
        "-q",
        "--control-addr",
        &format!("127.0.0.1:{port}"),
    ]);
    wait_for("the control API", Duration::from_secs(20), || {
        http(port, "GET", "/api/state").is_some()
    });
    assert!(http_text(port, "POST", "/api/stop").is_some());
    let out = wait_exit(
        child,
        Duration::from_secs(10),
        "aiotest after a stop in setup",
    );
    let stdout = text(&out.stdout);
    let total = stdout.lines().find(|l| l.starts_with("Total")).unwrap();
    assert_eq!(total.split_whitespace().nth(3), Some("0.0"), "{stdout}");
    assert_eq!(users.load(Ordering::SeqCst), 0);

    // POST /api/pause during setup: the users start paused.
    let (slow, users) = target(1_500);
    let port = free_port();
    let mut child = spawn_piped(&[
        "run",
        slow.path().to_str().unwrap(),
        "-q",
        "--control-addr",
        &format!("127.0.0.1:{port}"),
    ]);
    wait_for("the control API", Duration::from_secs(20), || {
        http(port, "GET", "/api/state").is_some()
    });
    assert!(http_text(port, "POST", "/api/pause").is_some());
    std::thread::sleep(Duration::from_millis(2_500));
    let state = http(port, "GET", "/api/state").unwrap();
    let before_resume = users.load(Ordering::SeqCst);
    assert!(http_text(port, "POST", "/api/resume").is_some());
    wait_for("users after the resume", Duration::from_secs(10), || {
        users.load(Ordering::SeqCst) > 0
    });
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(state["state"], "PAUSED", "{state}");
    assert_eq!(before_resume, 0, "no user request while paused");
}
