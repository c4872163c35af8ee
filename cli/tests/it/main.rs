//! The `aiotest` binary against an in-process HTTP server on 127.0.0.1 that counts the
//! requests it served.

#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;

pub(crate) struct Target {
    addr: SocketAddr,
    pub(crate) served: Arc<AtomicU64>,
    /// Requests that carried `authorization: Bearer t-9`.
    authorized: Arc<AtomicU64>,
    /// What `/echo` received: `METHOD x-api-key content-type body`, one line a request.
    pub(crate) echoed: Arc<std::sync::Mutex<Vec<String>>>,
}

/// A counting server on its own thread and runtime; `/slow` answers after 50 ms, `/hang`
/// never (each request is counted when it arrives), `/fail` with a 500, `/5ms` after
/// 5 ms, and `/stall` after 5 ms except once: from 2 s after its first request, every
/// request arriving within a second is held until that second is over.
fn target() -> Target {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let served = Arc::new(AtomicU64::new(0));
    let authorized = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&served);
    let auth = Arc::clone(&authorized);
    let stall_origin = Arc::new(std::sync::OnceLock::<std::time::Instant>::new());
    let echoed = Arc::new(std::sync::Mutex::new(Vec::new()));
    let echo_log = Arc::clone(&echoed);
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let counter = Arc::clone(&counter);
                let auth = Arc::clone(&auth);
                let stall_origin = Arc::clone(&stall_origin);
                let echo_log = Arc::clone(&echo_log);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let counter = Arc::clone(&counter);
                            let auth = Arc::clone(&auth);
                            let stall_origin = Arc::clone(&stall_origin);
                            let echo_log = Arc::clone(&echo_log);
                            async move {
                                if req.uri().path() == "/echo" {
                                    use http_body_util::BodyExt;
                                    let h = |k: &str| {
                                        req.headers()
                                            .get(k)
                                            .and_then(|v| v.to_str().ok())
                                            .unwrap_or("-")
                                            .to_owned()
                                    };
                                    let line = format!(
                                        "{} {} {}",
                                        req.method(),
                                        h("x-api-key"),
                                        h("content-type")
                                    );
                                    let body = req
                                        .into_body()
                                        .collect()
                                        .await
                                        .map(|b| b.to_bytes())
                                        .unwrap_or_default();
                                    echo_log
                                        .lock()
                                        .unwrap()
                                        .push(format!("{line} {}", String::from_utf8_lossy(&body)));
                                    counter.fetch_add(1, Ordering::Relaxed);
                                    return Ok::<_, Infallible>(hyper::Response::new(Full::new(
                                        Bytes::from_static(b"ok"),
                                    )));
                                }
                                let ms = std::time::Duration::from_millis;
                                if req.uri().path() == "/stall" {
                                    let now = std::time::Instant::now();
                                    let origin = *stall_origin.get_or_init(|| now);
                                    let (from, to) = (origin + ms(2_000), origin + ms(3_000));
                                    if (from..to).contains(&now) {
                                        tokio::time::sleep(to - now).await;
                                    }
                                }
                                if matches!(req.uri().path(), "/5ms" | "/stall") {
                                    tokio::time::sleep(ms(5)).await;
                                }
                                if req.uri().path() == "/slow" {
                                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                                }
                                if req.uri().path() == "/hang" {
                                    counter.fetch_add(1, Ordering::Relaxed);
                                    std::future::pending::<()>().await;
                                }
                                if req
                                    .headers()
                                    .get("authorization")
                                    .is_some_and(|v| v == "Bearer t-9")
                                {
                                    auth.fetch_add(1, Ordering::Relaxed);
                                }
                                counter.fetch_add(1, Ordering::Relaxed);
                                if req.uri().path() == "/fail" {
                                    let mut r = hyper::Response::new(Full::new(
                                        Bytes::from_static(b"broken"),
                                    ));
                                    *r.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
                                    return Ok::<_, Infallible>(r);
                                }
                                let body: &'static [u8] = if req.uri().path() == "/login" {
                                    br#"{"data":{"token":"t-9"}}"#
                                } else {
                                    b"ok"
                                };
                                Ok::<_, Infallible>(hyper::Response::new(Full::new(
                                    Bytes::from_static(body),
                                )))
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    });
    Target {
        addr,
        served,
        authorized,
        echoed,
    }
}

fn aiotest(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aiotest"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A file in the temp directory, removed when dropped.
pub(crate) struct TempFile(std::path::PathBuf);

impl TempFile {
    /// `text` written to a file named after this process and `name`.
    pub(crate) fn new(name: &str, text: &str) -> Self {
        Self::with_extension(name, "toml", text)
    }

    /// `text` written to `NAME.EXT` (a script is `.js`).
    pub(crate) fn with_extension(name: &str, ext: &str, text: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("aiotest-it-{}-{name}.{ext}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        TempFile(path)
    }

    pub(crate) fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs a scenario file quietly with `extra` arguments and a summary export; the exit
/// code must be 0. The export, parsed.
pub(crate) fn run_file(file: &std::path::Path, name: &str, extra: &[&str]) -> serde_json::Value {
    let export = export_path(name);
    let mut args = vec![
        "run",
        file.to_str().unwrap(),
        "-q",
        "--summary-export",
        export.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = aiotest(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let json = serde_json::from_str(&std::fs::read_to_string(&export).unwrap()).unwrap();
    let _ = std::fs::remove_file(export);
    json
}

/// Runs the binary with `args` and `--summary-export`; its output and the export.
pub(crate) fn run_exported(name: &str, args: &[&str]) -> (std::process::Output, serde_json::Value) {
    let export = export_path(name);
    let _ = std::fs::remove_file(&export);
    let out = aiotest(&[args, &["-q", "--summary-export", export.to_str().unwrap()]].concat());
    let json = std::fs::read_to_string(&export)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or(serde_json::Value::Null);
    let _ = std::fs::remove_file(export);
    (out, json)
}

/// Runs the scenario `file` with `extra` arguments: its exit code, JSON export, and
/// everything it printed.
pub(crate) fn run_scenario(
    file: &std::path::Path,
    name: &str,
    extra: &[&str],
) -> (Option<i32>, serde_json::Value, String) {
    let (out, json) = run_exported(
        name,
        &[&["run", file.to_str().unwrap()][..], extra].concat(),
    );
    (
        out.status.code(),
        json,
        text(&out.stdout) + &text(&out.stderr),
    )
}

/// The flags of a master that waits for two workers.
pub(crate) const MASTER_OF_TWO: [&str; 5] =
    ["--master", "--expect-workers", "2", "--worker-wait", "30s"];

/// [`run_scenario`] as the master of two worker processes meeting in a private redis-server.
pub(crate) fn run_file_over_two_workers(
    file: &std::path::Path,
    name: &str,
    extra: &[&str],
) -> (Option<i32>, serde_json::Value, String) {
    let redis = aiotest_coordinator::testutil::RedisServer::start().unwrap();
    let meet = ["--redis", &redis.url(), "--run-id", name];
    let _workers: Vec<_> = (0..2)
        .map(|_| spawn(&[&["run", "--worker", "-q"][..], &meet[..]].concat()))
        .collect();
    run_scenario(file, name, &[&MASTER_OF_TWO[..], &meet[..], extra].concat())
}

fn export_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("aiotest-it-{}-{name}.json", std::process::id()))
}

#[test]
fn the_summary_counts_exactly_what_the_server_served() {
    let t = target();
    let url = format!("http://{}/items/42?x=1", t.addr);
    let export = export_path("exact");
    let out = aiotest(&[
        "run",
        "--url",
        &url,
        "-u",
        "5",
        "-t",
        "2s",
        "-q",
        "--summary-export",
        export.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&export).unwrap()).unwrap();
    let counted = json["totals"]["requests"].as_u64().unwrap();
    assert!(counted > 100, "{counted}");
    assert_eq!(
        counted,
        t.served.load(Ordering::Relaxed),
        "every request counted once"
    );
    assert_eq!(json["endpoints"][0]["name"], "/items/{id}");
    assert_eq!(json["endpoints"][0]["method"], "GET");
    for f in [
        "name", "method", "requests", "failures", "rps", "min_ms", "p50_ms", "p90_ms", "p95_ms",
        "p99_ms", "max_ms", "mean_ms",
    ] {
        assert!(json["endpoints"][0].get(f).is_some(), "endpoints[].{f}");
    }
    for f in ["duration_s", "errors", "thresholds"] {
        assert!(json.get(f).is_some(), "{f}");
    }
    assert!((json["duration_s"].as_f64().unwrap() - 2.0).abs() < 0.3);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("GET /items/{id}") && stdout.contains("Total"),
        "{stdout}"
    );
    let _ = std::fs::remove_file(export);
}

#[test]
fn thresholds_decide_the_exit_code() {
    let t = target();
    let url = format!("http://{}/slow", t.addr);
    let export = export_path("thresholds");
    let out = aiotest(&[
        "run",
        "--url",
        &url,
        "-u",
        "2",
        "-t",
        "1s",
        "-q",
        "--threshold",
        "p95>=40ms",
        "--threshold",
        "failures<1%",
        "--summary-export",
        export.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&export).unwrap()).unwrap();
    assert_eq!(json["thresholds"][0]["expr"], "p95>=40ms");
    assert_eq!(json["thresholds"][0]["ok"], true);
    assert!(json["thresholds"][0]["value"].as_f64().unwrap() >= 50.0);
    let out = aiotest(&[
        "run",
        "--url",
        &url,
        "-u",
        "2",
        "-t",
        "1s",
        "-q",
        "--threshold",
        "p95<10ms",
    ]);
    assert_eq!(out.status.code(), Some(99));
    assert!(
        text(&out.stdout)
            .lines()
            .any(|l| l.trim_start().starts_with("p95<10ms") && l.contains("  FAILED  ")),
        "{}",
        text(&out.stdout)
    );
    let _ = std::fs::remove_file(export);
}

#[test]
fn a_scenario_file_runs_with_setup_captures_and_counts_every_request() {
    let t = target();
    let file =
        std::env::temp_dir().join(format!("aiotest-it-{}-scenario.toml", std::process::id()));
    let toml = r#"
host = "http://ADDR"
[load]
users = 4
run_time = "1s"

[[setup]]
method = "POST"
path = "/login"
capture = { token = "/data/token" }

[[users]]
name = "reader"
wait_time = 0.01
headers = { authorization = "Bearer {{setup.token}}" }

[[users.tasks]]
name = "read"
path = "/items/{{setup.token}}"
body_contains = "ok"
"#
    .replace("ADDR", &t.addr.to_string());
    std::fs::write(&file, toml).unwrap();
    let export = export_path("scenario");
    let out = aiotest(&[
        "run",
        file.to_str().unwrap(),
        "-q",
        "--summary-export",
        export.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&export).unwrap()).unwrap();
    let served = t.served.load(Ordering::Relaxed);
    assert!(served > 20, "{served}");
    assert_eq!(
        json["totals"]["requests"].as_u64().unwrap(),
        served,
        "setup's request counted too"
    );
    assert_eq!(
        json["totals"]["failures"].as_u64().unwrap(),
        0,
        "{}",
        text(&out.stdout)
    );
    assert_eq!(
        t.authorized.load(Ordering::Relaxed),
        served - 1,
        "every user request carried the captured token"
    );
    let names: Vec<&str> = json["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["/login", "read"]);
    let _ = std::fs::remove_file(file);
    let _ = std::fs::remove_file(export);
}

#[test]
fn thresholds_in_a_scenario_file_decide_the_exit_code_and_flags_add_to_them() {
    let t = target();
    let file = std::env::temp_dir().join(format!("aiotest-it-{}-th.toml", std::process::id()));
    let write = |thresholds: &str| {
        let toml = format!(
            "host = \"http://{}\"\n{thresholds}\n[load]\nusers = 1\nrun_time = \"1s\"\n\n[[users]]\nname = \"u\"\nwait_time = 0.01\n[[users.tasks]]\npath = \"/ok\"\n",
            t.addr
        );
        std::fs::write(&file, toml).unwrap();
    };
    let run = |extra: &[&str]| {
        let mut args = vec!["run", file.to_str().unwrap(), "-q"];
        args.extend_from_slice(extra);
        aiotest(&args).status.code()
    };
    write("thresholds = [\"failures<1%\", \"p95<10s\"]");
    assert_eq!(run(&[]), Some(0), "the file's thresholds pass");
    assert_eq!(
        run(&["--threshold", "p95<1us"]),
        Some(99),
        "a flag adds a failing one"
    );
    write("[[thresholds]]\nexpr = \"requests<1\"\n");
    assert_eq!(run(&[]), Some(99), "the file's own threshold fails");
    write("thresholds = [\"p99{name=/nowhere}<1s\"]");
    assert_eq!(
        run(&[]),
        Some(2),
        "a name no request has is refused before the run"
    );
    let _ = std::fs::remove_file(file);
}

/// A scenario file whose users send `authorization: Bearer {{env.AIOTEST_IT_TOKEN...}}`.
pub(crate) fn env_file(t: &Target, name: &str, reference: &str) -> std::path::PathBuf {
    let file = std::env::temp_dir().join(format!("aiotest-it-{}-{name}.toml", std::process::id()));
    let toml = format!(
        "host = \"http://{}\"\n[load]\nusers = 2\nrun_time = \"1s\"\n\n[[users]]\nname = \"u\"\nwait_time = 0.01\n[[users.tasks]]\npath = \"/env\"\nheaders = {{ authorization = \"Bearer {reference}\" }}\n",
        t.addr
    );
    std::fs::write(&file, toml).unwrap();
    file
}

#[test]
fn environment_variables_fill_a_file_or_it_is_refused_before_the_run() {
    let run = |file: &std::path::Path, token: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_aiotest"));
        cmd.args(["run", file.to_str().unwrap(), "-q"]);
        match token {
            Some(v) => cmd.env("AIOTEST_IT_TOKEN", v),
            None => cmd.env_remove("AIOTEST_IT_TOKEN"),
        };
        cmd.output().unwrap()
    };
    let t = target();
    let file = env_file(&t, "env", "{{env.AIOTEST_IT_TOKEN}}");
    let out = run(&file, Some("t-9"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let served = t.served.load(Ordering::Relaxed);
    assert!(served > 10, "{served}");
    assert_eq!(
        t.authorized.load(Ordering::Relaxed),
        served,
        "every request had the value"
    );

    let out = run(&file, None);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains(":11: users[0].tasks[0].headers.authorization: `{{env.AIOTEST_IT_TOKEN}}`: the environment variable AIOTEST_IT_TOKEN is not set"),
        "{err}"
    );
    assert_eq!(t.served.load(Ordering::Relaxed), served, "nothing was sent");

    let t = target();
    let defaulted = env_file(&t, "env-default", "{{env.AIOTEST_IT_TOKEN:-t-9}}");
    let out = run(&defaulted, None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let served = t.served.load(Ordering::Relaxed);
    assert_eq!(
        t.authorized.load(Ordering::Relaxed),
        served,
        "the default was sent"
    );
    let _ = std::fs::remove_file(file);
    let _ = std::fs::remove_file(defaulted);
}

#[test]
fn a_checks_threshold_judges_the_share_of_checks_that_passed() {
    let t = target();
    // One task's check always passes, the other's never: half the checks pass.
    let toml = format!(
        "host = \"http://{}\"\n[load]\nusers = 1\nrun_time = \"1s\"\n\n[[users]]\nname = \"u\"\nwait_time = 0.01\n[[users.tasks]]\npath = \"/a\"\nbody_contains = \"ok\"\n[[users.tasks]]\npath = \"/b\"\nbody_contains = \"never in any body\"\n",
        t.addr
    );
    let file = TempFile::new("checks", &toml);
    let run = |threshold: &str| {
        aiotest(&[
            "run",
            file.path().to_str().unwrap(),
            "-q",
            "--threshold",
            threshold,
        ])
        .status
        .code()
    };
    assert_eq!(run("checks>40%"), Some(0));
    assert_eq!(run("checks>99%"), Some(99));
    assert_eq!(run("checks{name=/a}>99%"), Some(0));
    assert_eq!(run("checks{name=/b}>1%"), Some(99));
}

#[test]
fn a_paced_user_starts_a_task_every_period_its_own_time_included() {
    let t = target();
    // `/slow` takes 50 ms; paced at 100 ms a user makes 10 a second. Were the task's time
    // not counted in the period, it would make one every 150 ms: 13 in 2 s, not 20.
    let toml = format!(
        "host = \"http://{}\"\n[load]\nusers = 2\nrun_time = \"2s\"\n\n[[users]]\nname = \"u\"\nwait_time = {{ pacing = 0.1 }}\n[[users.tasks]]\npath = \"/slow\"\n",
        t.addr
    );
    let file = TempFile::new("pacing", &toml);
    let json = run_file(file.path(), "pacing", &[]);
    let requests = json["totals"]["requests"].as_u64().unwrap();
    assert!(
        (34..=42).contains(&requests),
        "2 users x 2 s x 10/s: {requests}"
    );
}

#[test]
fn a_user_types_own_http_settings_apply_to_it_alone() {
    let t = target();
    // `/hang` never answers: the impatient type gives up after 100 ms, without retries.
    let toml = format!(
        "host = \"http://{}\"\n[http]\nmax_retries = 3\n[load]\nusers = 2\nrun_time = \"1s\"\n\n\
         [[users]]\nname = \"impatient\"\nwait_time = 0\nhttp = {{ timeout = \"100ms\", max_retries = 0 }}\n[[users.tasks]]\npath = \"/hang\"\n\n\
         [[users]]\nname = \"plain\"\nwait_time = 0.01\n[[users.tasks]]\npath = \"/ok\"\n",
        t.addr
    );
    let file = TempFile::new("type-http", &toml);
    let json = run_file(file.path(), "type-http", &[]);
    let row = |name: &str| {
        json["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("no {name}: {json}"))
            .clone()
    };
    let hang = row("/hang");
    let timed_out = hang["failures"].as_u64().unwrap();
    // 1 s of 100 ms attempts, the last cut by the run's end.
    assert!((7..=11).contains(&timed_out), "{hang}");
    assert_eq!(hang["retries"].as_u64().unwrap(), 0, "{hang}");
    assert_eq!(row("/ok")["failures"].as_u64().unwrap(), 0);
}

#[test]
fn teardown_requests_use_setups_values_and_are_counted() {
    let t = target();
    let file =
        std::env::temp_dir().join(format!("aiotest-it-{}-teardown.toml", std::process::id()));
    let write = |teardown_path: &str| {
        let toml = format!(
            "host = \"http://{}\"\n[load]\nusers = 2\nrun_time = \"1s\"\n\n\
             [[setup]]\nmethod = \"POST\"\npath = \"/login\"\ncapture = {{ token = \"/data/token\" }}\n\n\
             [[teardown]]\nmethod = \"DELETE\"\npath = \"{teardown_path}\"\nheaders = {{ authorization = \"Bearer {{{{setup.token}}}}\" }}\n\n\
             [[users]]\nname = \"u\"\nwait_time = 0.01\n[[users.tasks]]\npath = \"/ok\"\n",
            t.addr
        );
        std::fs::write(&file, toml).unwrap();
    };
    write("/session");
    let before = t.served.load(Ordering::Relaxed);
    let json = run_file(&file, "teardown", &[]);
    let served = t.served.load(Ordering::Relaxed) - before;
    assert_eq!(
        json["totals"]["requests"].as_u64().unwrap(),
        served,
        "teardown's request counted"
    );
    let session = json["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "/session")
        .unwrap_or_else(|| panic!("{json}"))
        .clone();
    assert_eq!(session["requests"].as_u64().unwrap(), 1);
    assert_eq!(session["method"], "DELETE");
    assert!(
        t.authorized.load(Ordering::Relaxed) >= 1,
        "it carried setup's token"
    );

    // --no-setup: teardown's token would be empty, so the file is refused before the
    // run.
    let out = aiotest(&["run", file.to_str().unwrap(), "-q", "--no-setup"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(
            ":14: teardown[0].headers.authorization: `{{setup.token}}`: --no-setup skips the setup that captures it"
        ),
        "{}",
        text(&out.stderr)
    );
    // A teardown that needs nothing from setup runs with --no-setup: on the run's host,
    // counted.
    let toml = format!(
        "host = \"http://{}\"\n[load]\nusers = 1\nrun_time = \"500ms\"\n\n\
         [[setup]]\nmethod = \"POST\"\npath = \"/login\"\n\n\
         [[teardown]]\nmethod = \"DELETE\"\npath = \"/session\"\n\n\
         [[users]]\nname = \"u\"\nwait_time = 0.01\n[[users.tasks]]\npath = \"/ok\"\n",
        t.addr
    );
    std::fs::write(&file, toml).unwrap();
    let before = t.served.load(Ordering::Relaxed);
    let json = run_file(&file, "teardown-no-setup", &["--no-setup"]);
    let served = t.served.load(Ordering::Relaxed) - before;
    assert_eq!(json["totals"]["requests"].as_u64().unwrap(), served);
    assert_eq!(endpoint_counts(&json, "/session"), (1, 0));
    assert!(
        !json["endpoints"].to_string().contains("/login"),
        "setup did not run"
    );

    // A teardown request that fails is said, counted as a failure, and fails the run:
    // what the test set up was not cleaned up.
    write("/fail");
    let export = export_path("teardown-fail");
    let out = aiotest(&[
        "run",
        file.to_str().unwrap(),
        "-q",
        "--summary-export",
        export.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("teardown failed: teardown request 0 (DELETE /fail): HTTP 500"),
        "{}",
        text(&out.stderr)
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&export).unwrap()).unwrap();
    assert_eq!(json["totals"]["failures"].as_u64().unwrap(), 1, "{json}");
    let _ = std::fs::remove_file(export);
    let _ = std::fs::remove_file(file);
}

#[test]
fn a_path_with_built_ins_is_one_row_named_by_its_template() {
    let t = target();
    let toml = format!(
        "host = \"http://{}\"\n[load]\nusers = 3\nrun_time = \"1s\"\n\n[[users]]\nname = \"u\"\nwait_time = 0.01\n[[users.tasks]]\npath = \"/u/{{{{builtin.vu}}}}/{{{{builtin.random(1,1000)}}}}\"\nheaders = {{ x-request-id = \"{{{{builtin.uuid}}}}\" }}\n",
        t.addr
    );
    let file = TempFile::new("builtin", &toml);
    let json = run_file(file.path(), "builtin", &[]);
    let rows = json["endpoints"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{json}");
    assert_eq!(
        rows[0]["name"],
        "/u/{{builtin.vu}}/{{builtin.random(1,1000)}}"
    );
    let served = t.served.load(Ordering::Relaxed);
    assert!(served > 30, "{served}");
    assert_eq!(rows[0]["requests"].as_u64().unwrap(), served);
    assert_eq!(rows[0]["failures"].as_u64().unwrap(), 0);
}

#[test]
fn a_user_type_with_a_hundred_tasks_runs_every_one() {
    let t = target();
    let mut toml = format!(
        "host = \"http://{}\"\n[load]\nusers = 2\nrun_time = \"2s\"\n\n[[users]]\nname = \"many\"\nwait_time = 0\n",
        t.addr
    );
    for i in 0..100 {
        toml.push_str(&format!(
            "\n[[users.tasks]]\nname = \"t{i}\"\npath = \"/many/{i}\"\n"
        ));
    }
    let file = TempFile::new("tasks", &toml);
    let json = run_file(file.path(), "tasks", &[]);
    let mut names: Vec<String> = json["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["requests"].as_u64().unwrap() > 0)
        .map(|e| e["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort_by_key(|n| n[1..].parse::<u32>().unwrap());
    let expected: Vec<String> = (0..100).map(|i| format!("t{i}")).collect();
    // Thousands of iterations pick among 100 equal weights: each is all but certain to
    // be picked (a miss has odds below 1e-6).
    assert_eq!(names, expected);
    assert_eq!(
        json["totals"]["requests"].as_u64().unwrap(),
        t.served.load(Ordering::Relaxed)
    );
}

#[test]
fn a_bad_scenario_file_exits_2_before_anything_runs() {
    let t = target();
    let file = std::env::temp_dir().join(format!("aiotest-it-{}-bad.toml", std::process::id()));
    let toml = "host = \"http://ADDR\"\n[[users]]\nname = \"u\"\nweight = 0\n[[users.tasks]]\npath = \"/\"\n"
        .replace("ADDR", &t.addr.to_string());
    std::fs::write(&file, toml).unwrap();
    let out = aiotest(&["run", file.to_str().unwrap(), "-t", "1s"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains(":4: users[0].weight: must be at least 1"),
        "{err}"
    );
    assert_eq!(t.served.load(Ordering::Relaxed), 0, "nothing ran");
    let _ = std::fs::remove_file(file);
}

#[test]
fn a_stages_run_ramps_up_and_down_and_ends() {
    let t = target();
    let url = format!("http://{}/", t.addr);
    let export = export_path("stages");
    let out = aiotest(&[
        "run",
        "--url",
        &url,
        "--stages",
        "500ms:4,500ms:4,500ms:0",
        "--wait",
        "0.01",
        "-q",
        "--summary-export",
        export.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&export).unwrap()).unwrap();
    assert!(
        (json["duration_s"].as_f64().unwrap() - 1.5).abs() < 0.3,
        "{json}"
    );
    assert_eq!(
        json["totals"]["requests"].as_u64().unwrap(),
        t.served.load(Ordering::Relaxed)
    );
    let _ = std::fs::remove_file(export);
}

#[test]
fn bad_usage_exits_2_naming_what_is_wrong() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["run", "--url", "ftp://x"],
            "--url `ftp://x`: the scheme must be http or https",
        ),
        (
            &["run", "--url", "localhost:80"],
            "it must start with http:// or https://",
        ),
        (&["run", "--demo", "-t", "5x"], "invalid duration `5x`"),
        (
            &["run", "--demo", "--stages", "10s:x"],
            "`x` is not a user count",
        ),
        (
            &["run", "--demo", "--wait", "2..1"],
            "the minimum is above the maximum",
        ),
        (&["run", "--demo", "-r", "0"], "invalid spawn rate `0`"),
        (
            &["run", "--demo", "--threshold", "latency<3"],
            "threshold `latency<3`: unknown metric",
        ),
        (&["run"], "nothing to run"),
        (
            &["run", "/nonexistent/plan.toml"],
            "/nonexistent/plan.toml: cannot read it",
        ),
        (&["fly"], "unrecognized subcommand 'fly'"),
        (
            &[
                "run",
                "--worker",
                "--redis",
                "redis://127.0.0.1:1",
                "--redis-ca",
                "/x.pem",
            ],
            "--redis-ca /x.pem: a CA is for TLS; --redis must be a rediss:// URL",
        ),
        (
            &[
                "run",
                "--worker",
                "--redis",
                "rediss://127.0.0.1:1",
                "--redis-ca",
                "/nonexistent/ca.pem",
            ],
            "--redis-ca /nonexistent/ca.pem: cannot read it",
        ),
        (
            &[
                "run",
                "--worker",
                "--redis",
                "rediss://127.0.0.1:1",
                "--redis-ca",
                concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"),
            ],
            "holds no PEM certificate",
        ),
    ];
    for (args, msg) in cases {
        let out = aiotest(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = text(&out.stderr);
        assert!(err.contains(msg), "{args:?}: {err}");
    }
}

/// Input that would send load where nobody asked (a port read as 80), or crash the
/// process (a count that allocates gigabytes), or fail every request (a path with a
/// space): each exits 2 naming the input, before a single request is sent.
#[test]
fn dangerous_input_exits_2_before_any_request() {
    let t = target();
    let addr = t.addr.to_string();
    let url = format!("http://{addr}/");
    let dir = std::env::temp_dir();
    let file = |name: &str, toml: String| {
        let path = dir.join(format!("aiotest-it-{}-{name}.toml", std::process::id()));
        std::fs::write(&path, toml).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let tail = "[[users]]\nname = \"u\"\nwait_time = 0\n[[users.tasks]]\npath = \"/\"\n";
    let bad_host = file(
        "bad-host",
        format!("host = \"http://127.0.0.1:99999\"\n{tail}"),
    );
    let huge = file(
        "huge",
        format!("host = \"http://{addr}\"\n[load]\nusers = 4294967295\n{tail}"),
    );
    let huge_stage = file(
        "huge-stage",
        format!(
            "host = \"http://{addr}\"\n[load]\nstages = [{{ duration = \"1s\", target = 2000000 }}]\n{tail}"
        ),
    );
    let space = file(
        "space",
        format!(
            "host = \"http://{addr}\"\n[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/a b\"\n"
        ),
    );
    let no_host_url = file(
        "no-host-url",
        format!(
            "host = \"http://{addr}\"\n[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"http://\"\n"
        ),
    );
    let relative = file("relative", tail.to_owned());
    let spaced_url = format!("http://{addr}/a b");
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["--url", "http://127.0.0.1:99999/"],
            "--url `http://127.0.0.1:99999/`: port `99999` is not a port number (1 to 65535)"
                .into(),
        ),
        (
            vec!["--url", "http://127.0.0.1:65536/"],
            "port `65536` is not a port number".into(),
        ),
        (
            vec!["--url", "http://127.0.0.1:abc/"],
            "port `abc` is not a port number".into(),
        ),
        (
            vec!["--url", "http://127.0.0.1:-1/"],
            "port `-1` is not a port number".into(),
        ),
        (
            vec!["--url", &url, "-H", "http://127.0.0.1:99999"],
            "invalid value 'http://127.0.0.1:99999' for '--host <HOST>'".into(),
        ),
        (
            vec![&bad_host],
            format!(
                "{bad_host}:1: host: `http://127.0.0.1:99999`: port `99999` is not a port number"
            ),
        ),
        (
            vec!["--url", &url, "-u", "4294967295"],
            "4294967295 users is above the limit of 1000000 users per run".into(),
        ),
        (
            vec!["--url", &url, "--stages", "1s:4294967295"],
            "stage 1 (`1s:4294967295`): 4294967295 users is above the limit".into(),
        ),
        (
            vec![&huge],
            format!(
                "{huge}:3: load.users: 4294967295 users is above the limit of 1000000 users per run"
            ),
        ),
        (
            vec![&huge_stage],
            format!("{huge_stage}:3: load.stages[0].target: 2000000 users is above the limit"),
        ),
        (
            vec!["--url", &spaced_url],
            format!("--url `{spaced_url}`: a space at byte"),
        ),
        (
            vec![&space],
            format!(
                "{space}:5: users[0].tasks[0].path: `/a b`: a space at byte 2: percent-encode it (write it as %20)"
            ),
        ),
        (
            vec![&no_host_url],
            format!("{no_host_url}:5: users[0].tasks[0].path: `http://`: it names no host"),
        ),
        (
            vec![&relative],
            format!("{relative}:5: users[0].tasks[0].path: a relative path needs a host"),
        ),
        (
            vec![
                "--url",
                &url,
                "--master",
                "--redis",
                "redis://127.0.0.1:1",
                "--liveness-timeout",
                "0s",
            ],
            "`0s` is under two heartbeats (2s)".into(),
        ),
        (
            vec![
                "--url",
                &url,
                "--master",
                "--redis",
                "redis://127.0.0.1:1",
                "--run-id",
                "",
            ],
            "the run id is empty".into(),
        ),
        (
            vec![
                "--url",
                &url,
                "--master",
                "--redis",
                "redis://127.0.0.1:1",
                "--run-id",
                "a:b",
            ],
            "may hold only letters, digits".into(),
        ),
        (
            vec![
                "--url",
                &url,
                "--master",
                "--redis",
                "redis://127.0.0.1:1",
                "--expect-workers",
                "0",
            ],
            "`0` is not a worker count from 1 to 10000".into(),
        ),
    ];
    for (args, msg) in &cases {
        let mut all = vec!["run", "-t", "2s", "-q"];
        all.extend(args);
        let out = aiotest(&all);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(msg.as_str()),
            "{args:?}\nwant: {msg}\n got: {err}"
        );
    }
    assert_eq!(t.served.load(Ordering::Relaxed), 0, "no request was sent");
    for f in [bad_host, huge, huge_stage, space, no_host_url, relative] {
        let _ = std::fs::remove_file(f);
    }
}

/// A dead target: every connection refused. Not one request succeeded, so the run failed
/// (exit 1) unless the test says that is expected; refusals have no latency, so a latency
/// threshold cannot pass on them.
#[test]
fn a_run_where_nothing_succeeded_fails_and_refusals_time_nothing() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/");
    let export = export_path("dead");
    let args = [
        "run",
        "--url",
        &url,
        "-t",
        "1s",
        "-q",
        "--summary-export",
        export.to_str().unwrap(),
        "--threshold",
        "p95<1ms",
    ];
    let out = aiotest(&args);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("not one of the")
            && text(&out.stderr).contains("--allow-failures"),
        "{}",
        text(&out.stderr)
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&export).unwrap()).unwrap();
    let t = &json["totals"];
    assert!(t["requests"].as_u64().unwrap() > 0);
    assert_eq!(t["failures"], t["requests"]);
    assert!(
        t["p95_ms"].is_null(),
        "refusals are outside the percentiles: {t}"
    );
    let th = &json["thresholds"][0];
    assert_eq!(th["ok"], false);
    assert!(
        th["reason"]
            .as_str()
            .unwrap()
            .contains("failed before any exchange"),
        "{th}"
    );
    assert!(
        json["notes"].to_string().contains("connect"),
        "the notes say why: {}",
        json["notes"]
    );
    // Asked for: the all-failed rule steps aside, the threshold still fails.
    let out = aiotest(&[&args[..], &["--allow-failures"]].concat());
    assert_eq!(out.status.code(), Some(99), "{}", text(&out.stderr));
    let _ = std::fs::remove_file(export);
}

#[test]
fn ctrl_c_stops_gracefully_and_still_prints_the_summary() {
    let t = target();
    let url = format!("http://{}/", t.addr);
    let child = Command::new(env!("CARGO_BIN_EXE_aiotest"))
        .args(["run", "--url", &url, "-u", "3", "-q"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until traffic flows, then interrupt.
    let started = std::time::Instant::now();
    while t.served.load(Ordering::Relaxed) < 50
        && started.elapsed() < std::time::Duration::from_secs(20)
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(105), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let total: u64 = stdout
        .lines()
        .find(|l| l.starts_with("Total"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert_eq!(total, t.served.load(Ordering::Relaxed));
}

/// An HTTP/1.1 server on 127.0.0.1, on its own thread and runtime, answering every
/// request with `answer` (given the request's head and whole body).
pub(crate) fn serve<F>(answer: F) -> SocketAddr
where
    F: Fn(&http::request::Parts, &[u8]) -> hyper::Response<Full<Bytes>> + Send + Sync + 'static,
{
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let answer = Arc::new(answer);
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let answer = Arc::clone(&answer);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let answer = Arc::clone(&answer);
                            async move {
                                use http_body_util::BodyExt;
                                let (parts, body) = req.into_parts();
                                let body = body.collect().await.map(|b| b.to_bytes());
                                Ok::<_, Infallible>(answer(&parts, &body.unwrap_or_default()))
                            }
                        },
                    );
                    // HTTP/1.1, or HTTP/2 when the client starts with its preface (h2c).
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                });
            }
        });
    });
    addr
}

/// A request header's value, empty when absent or not text.
pub(crate) fn header<'r>(req: &'r http::request::Parts, name: &str) -> &'r str {
    req.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// A named check's `(passes, fails)` in a summary export.
pub(crate) fn check_counts(json: &serde_json::Value, name: &str) -> (u64, u64) {
    let c = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name}: {json}"));
    (c["passes"].as_u64().unwrap(), c["fails"].as_u64().unwrap())
}

/// Whether each threshold held, in a summary export.
pub(crate) fn threshold_verdicts(json: &serde_json::Value) -> Vec<bool> {
    json["thresholds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["ok"].as_bool().unwrap())
        .collect()
}

/// An endpoint's `(requests, failures)` in a summary export.
pub(crate) fn endpoint_counts(json: &serde_json::Value, name: &str) -> (u64, u64) {
    let e = json["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no endpoint {name}: {json}"));
    (
        e["requests"].as_u64().unwrap(),
        e["failures"].as_u64().unwrap(),
    )
}

/// Kills the process when dropped, so a failing test leaves nothing running.
pub(crate) struct Proc(pub(crate) Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn spawn(args: &[&str]) -> Proc {
    Proc(
        Command::new(env!("CARGO_BIN_EXE_aiotest"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// The body of a request to the control API on `port`, if it answered.
pub(crate) fn http_text(port: u16, method: &str, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out.split_once("\r\n\r\n")?.1.to_owned())
}

/// The JSON answer of the control API on `port`, if it answered.
pub(crate) fn http(port: u16, method: &str, path: &str) -> Option<serde_json::Value> {
    serde_json::from_str(&http_text(port, method, path)?).ok()
}

/// Starts the binary with its output captured.
pub(crate) fn spawn_piped(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_aiotest"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits (at most `limit`) for `child` to exit; kills it and fails the test otherwise.
pub(crate) fn wait_exit(child: Child, limit: std::time::Duration, what: &str) -> Output {
    let started = std::time::Instant::now();
    let mut child = child;
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{what} did not exit within {limit:?}\nstderr: {}",
                text(&out.stderr)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// Waits until `f` holds, at most `limit`.
pub(crate) fn wait_for(what: &str, limit: std::time::Duration, mut f: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !f() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The sum of every sample of `name` in a Prometheus text exposition.
pub(crate) fn counter_sum(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

mod binary_entry;
mod browser;
mod data;
mod distributed;
mod endings;
mod groups;
mod h2c;
mod health;
mod logins;
mod metrics;
mod outputs;
mod quick;
mod reports;
mod scenarios;
mod scripts;
mod series;
mod terminal;
mod vars;
