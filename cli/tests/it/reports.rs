//! The HTML report, the CSV files and the live dashboard, read back as their users would:
//! the report and the dashboard in a real headless Chromium, the CSV files with a
//! standard CSV reader.

use std::io::{Read, Write};
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::Value;

use super::browser::Browser;
use super::{Target, aiotest, export_path, free_port, spawn, target, text};

fn served(t: &Target) -> u64 {
    t.served.load(Ordering::Relaxed)
}

fn temp(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("aiotest-it-{}-{name}", std::process::id()))
}

fn csv_rows(path: &std::path::Path) -> Vec<csv::StringRecord> {
    let mut r = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let width = r.headers().unwrap().len();
    let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    assert!(
        rows.iter().all(|row| row.len() == width),
        "{}: every row has the header's {width} fields",
        path.display()
    );
    rows
}

fn column(path: &std::path::Path, name: &str) -> usize {
    csv::Reader::from_path(path)
        .unwrap()
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("{}: no column {name}", path.display()))
}

const TEST: &str = r#"
host = "http://ADDR"
[[users]]
name = "buyer"
wait_time = 0
[[users.tasks]]
name = "buy"
path = "/5ms"
body_contains = "ok"

[[users]]
name = "breaker"
wait_time = 0.1
[[users.tasks]]
name = "break"
path = "/fail"

[[scenarios]]
name = "rate"
executor = "constant-arrival-rate"
users = ["buyer"]
rate = 50
duration = "4s"
pre_allocated_vus = 2
max_vus = 10

[[scenarios]]
name = "errors"
executor = "constant-vus"
users = ["breaker"]
vus = 1
duration = "4s"
"#;

/// One run writes the JSON export, the HTML report and the CSV files; each is read back
/// and must agree with the export and with what the server counted.
#[test]
fn the_html_report_and_the_csv_files_agree_with_the_json_export() {
    let t = target();
    let file = temp("report.toml");
    std::fs::write(&file, TEST.replace("ADDR", &t.addr.to_string())).unwrap();
    let (export, html, csv_prefix) = (export_path("report"), temp("report.html"), temp("run"));
    let out = aiotest(&[
        "run",
        file.to_str().unwrap(),
        "-q",
        "--summary-export",
        export.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
        "--csv",
        csv_prefix.to_str().unwrap(),
        "--threshold",
        "p95<1s",
        "--threshold",
        "failures<1%",
    ]);
    assert_eq!(
        out.status.code(),
        Some(99),
        "failures<1% fails: {}",
        text(&out.stderr)
    );
    let json: Value = serde_json::from_str(&std::fs::read_to_string(&export).unwrap()).unwrap();
    let (requests, failures) = (
        json["totals"]["requests"].as_u64().unwrap(),
        json["totals"]["failures"].as_u64().unwrap(),
    );
    assert_eq!(requests, served(&t));
    assert!(requests > 200 && failures > 20, "{requests} {failures}");
    // Every buy ran its check (and passed); the failed requests never got to theirs.
    let buys = json["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "buy")
        .map(|e| e["requests"].as_u64().unwrap())
        .unwrap();
    assert_eq!(json["totals"]["checks"], buys);
    assert_eq!(json["totals"]["checks_failed"], 0);

    // CSV: the aggregate and the endpoints' rows add up to the export; failures too; the
    // history's running total ends at it.
    let csv_path =
        |kind: &str| std::path::PathBuf::from(format!("{}_{kind}.csv", csv_prefix.display()));
    let stats = csv_path("stats");
    let (name, count, fails) = (
        column(&stats, "Name"),
        column(&stats, "Request Count"),
        column(&stats, "Failure Count"),
    );
    let rows = csv_rows(&stats);
    let agg = rows.iter().find(|r| &r[name] == "Aggregated").unwrap();
    assert_eq!(agg[count].parse::<u64>().unwrap(), requests);
    assert_eq!(agg[fails].parse::<u64>().unwrap(), failures);
    let endpoint_sum: u64 = rows
        .iter()
        .filter(|r| &r[name] != "Aggregated")
        .map(|r| r[count].parse::<u64>().unwrap())
        .sum();
    assert_eq!(endpoint_sum, requests);
    let failures_csv = csv_path("failures");
    let occ = column(&failures_csv, "Occurrences");
    let cat = column(&failures_csv, "Category");
    let frows = csv_rows(&failures_csv);
    assert_eq!(
        frows
            .iter()
            .map(|r| r[occ].parse::<u64>().unwrap())
            .sum::<u64>(),
        failures
    );
    assert!(frows.iter().all(|r| &r[cat] == "http_status"));
    let history = csv_path("history");
    let (hname, total) = (
        column(&history, "Name"),
        column(&history, "Total Request Count"),
    );
    let hrows = csv_rows(&history);
    let aggregated: Vec<&csv::StringRecord> =
        hrows.iter().filter(|r| &r[hname] == "Aggregated").collect();
    assert!(
        aggregated.len() >= 4,
        "one row per interval: {}",
        aggregated.len()
    );
    assert_eq!(
        aggregated.last().unwrap()[total].parse::<u64>().unwrap(),
        requests
    );

    // The report, with JavaScript: every chart drawn with every point of the series,
    // the tables equal to the export.
    let url = format!("file://{}", html.display());
    let b = Browser::start(true);
    b.open(&url);
    b.wait_for(
        "the charts",
        Duration::from_secs(20),
        "return document.querySelectorAll('#charts polyline').length",
    );
    let charts =
        b.eval("return Array.from(document.querySelectorAll('#charts figure')).map(f => f.id)");
    for id in [
        "chart-rps",
        "chart-latency",
        "chart-open",
        "chart-users",
        "chart-iterations",
        "chart-generator-delay",
        "chart-generator-cpu",
    ] {
        assert!(
            charts.as_array().unwrap().iter().any(|c| c == id),
            "{id} in {charts}"
        );
    }
    let drawn = b.eval(
        "const n = JSON.parse(document.getElementById('series-data').textContent).length;
         const pl = document.querySelector('#chart-rps polyline');
         return [n, +pl.dataset.points, pl.getAttribute('points').trim().split(/\\s+/).length];",
    );
    let n = drawn[0].as_u64().unwrap();
    assert!(n >= 4, "{drawn}");
    assert_eq!(
        drawn[1], drawn[0],
        "every point of the series drawn: {drawn}"
    );
    assert_eq!(drawn[2], drawn[0], "the SVG holds them: {drawn}");
    let cell = |b: &Browser, field: &str| -> u64 {
        b.eval(&format!(
            "return document.querySelector('#totals td[data-field={field}]').textContent"
        ))
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
    };
    assert_eq!(cell(&b, "requests"), requests);
    assert_eq!(cell(&b, "failures"), failures);
    assert_eq!(
        b.eval("return document.querySelector('#checks b[data-field=checks_passed]').textContent"),
        buys.to_string()
    );
    let verdict = b.eval("return document.getElementById('verdict').textContent");
    assert_eq!(verdict, "thresholds FAILED");
    let scenarios = b.eval(
        "return Array.from(document.querySelectorAll('#scenarios tr[data-scenario]')).map(r => r.dataset.scenario)",
    );
    assert_eq!(scenarios, serde_json::json!(["errors", "rate"]));
    drop(b);

    // Without JavaScript: no chart, the same tables.
    let b = Browser::start(false);
    b.open(&url);
    assert_eq!(cell(&b, "requests"), requests);
    assert_eq!(
        b.eval("return document.querySelectorAll('#charts polyline').length"),
        0,
        "scripts really were off"
    );
    // k6's built-in metrics are rows of PREFIX_metrics.csv as of every other output.
    // The summary's tables are CSV files too, rendered from the same table model.
    let metrics = csv_rows(&csv_path("metrics"));
    let reqs = metrics
        .iter()
        .find(|r| &r[0] == "http_reqs")
        .expect("http_reqs in the metrics CSV");
    assert_eq!((&reqs[2], &reqs[3]), ("(all)", "counter"));
    assert_eq!(reqs[5].parse::<u64>().unwrap(), requests, "count");
    let verdicts = csv_rows(&csv_path("thresholds"));
    assert!(verdicts.iter().any(|r| &r[1] == "FAILED"), "{verdicts:?}");
    let scenarios = csv_rows(&csv_path("scenarios"));
    let names: Vec<&str> = scenarios.iter().map(|r| &r[0]).collect();
    assert_eq!(names, ["errors", "rate"]);
    for f in [file, export, html] {
        let _ = std::fs::remove_file(f);
    }
    for suffix in aiotest_runner::csv::FILES {
        let _ = std::fs::remove_file(csv_path(suffix));
    }
}

/// A GET to the control server with the bearer token; the status and body.
fn get_with_token(port: u16, path: &str, token: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = raw.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    (status, body)
}

/// The dashboard in a browser: it asks for the token, then shows the run live; its
/// buttons pause it (the target stops receiving requests), set the users, resume and stop
/// it; with --linger it then offers the final report.
#[test]
fn the_dashboard_shows_the_run_live_and_its_buttons_steer_it() {
    let t = target();
    let url = format!("http://{}/5ms", t.addr);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let export = export_path("dashboard");
    let mut run = spawn(&[
        "run",
        "--url",
        &url,
        "-u",
        "4",
        "--wait",
        "0.02",
        "-t",
        "120s",
        "--control-addr",
        &addr,
        "--control-token",
        "s3cret",
        "--linger",
        "-q",
        "--summary-export",
        export.to_str().unwrap(),
        "--threshold",
        "p95<5s",
    ]);
    super::wait_for("the control server", Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let b = Browser::start(true);
    b.open(&format!("http://{addr}/"));
    // No token yet: the API refuses, and the page asks for it.
    b.wait_for(
        "the token box",
        Duration::from_secs(20),
        "return !document.getElementById('token-box').hidden",
    );
    b.type_into("#token", "s3cret");
    b.click("#use-token");
    b.wait_for(
        "RUNNING with charts of two points or more",
        Duration::from_secs(30),
        "const pl = document.querySelector('#chart-rps polyline');
         return document.getElementById('state').textContent === 'RUNNING'
             && pl && +pl.dataset.points >= 2
             && document.querySelectorAll('#endpoints tr[data-scenario]').length === 1",
    );
    // Thresholds as they stand, mid-run.
    b.wait_for(
        "the threshold's verdict",
        Duration::from_secs(10),
        "const td = document.querySelector('#thresholds td.ok');
         return td && td.textContent === 'passed'",
    );
    assert!(served(&t) > 0);

    b.click("#pause");
    b.wait_for(
        "PAUSED",
        Duration::from_secs(10),
        "return document.getElementById('state').textContent === 'PAUSED'",
    );
    // Users hold at their next task boundary: a request in flight may still land.
    std::thread::sleep(Duration::from_millis(500));
    let at_pause = served(&t);
    std::thread::sleep(Duration::from_millis(1_500));
    assert_eq!(served(&t), at_pause, "nothing is sent while paused");

    b.type_into("#users", "2");
    b.click("#set-users");
    b.click("#resume");
    b.wait_for(
        "RUNNING with 2 users",
        Duration::from_secs(10),
        "return document.getElementById('state').textContent === 'RUNNING'
             && document.getElementById('tile-users').textContent === '2'",
    );
    super::wait_for("requests after the resume", Duration::from_secs(10), || {
        served(&t) > at_pause
    });

    b.click("#stop");
    b.wait_for(
        "the run over and the report offered",
        Duration::from_secs(40),
        "return !document.getElementById('report').hidden",
    );
    // The final state: done, nobody running, nothing to steer.
    b.wait_for(
        "the final state",
        Duration::from_secs(10),
        "return document.getElementById('state').textContent === 'DONE'
             && document.getElementById('tile-users').textContent === '0'
             && document.getElementById('pause').disabled
             && document.getElementById('stop').disabled",
    );
    let (status, page) = get_with_token(port, "/report.html", "s3cret");
    assert_eq!(status, 200);
    assert!(
        page.contains("id=\"series-data\""),
        "{}",
        &page[..200.min(page.len())]
    );
    assert_eq!(get_with_token(port, "/report.html", "wrong").0, 401);
    let (_, summary) = get_with_token(port, "/api/summary", "s3cret");
    let summary: Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(summary["totals"]["requests"], served(&t));
    drop(b);

    let (status, _) = {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            s,
            "POST /api/quit HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).unwrap();
        (raw.split(' ').nth(1).map(str::to_owned), raw)
    };
    assert_eq!(status.as_deref(), Some("202"));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while run.0.try_wait().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "did not exit after quit"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let json: Value = serde_json::from_str(&std::fs::read_to_string(&export).unwrap()).unwrap();
    assert_eq!(json["totals"]["requests"], served(&t));
    let _ = std::fs::remove_file(export);
}

/// Bytes from a response never reach the terminal or a CSV cell raw: a captured value
/// holding escape sequences, used in a path, is shown escaped in the Errors section and
/// in the failures CSV; a name that starts like a formula is neutralised in the CSV; and
/// a path longer than 65,535 characters is printed in the summary, not a panic.
#[test]
fn response_bytes_are_escaped_on_the_terminal_and_in_csv_cells() {
    let addr = super::serve(|req, _| {
        let body = if req.uri.path() == "/login" {
            "{\"token\":\"\\u001b]0;owned\\u0007\\u001b[2J\"}".to_owned()
        } else {
            "ok".to_owned()
        };
        let status = if req.uri.path().starts_with("/=") {
            500
        } else {
            200
        };
        hyper::Response::builder()
            .status(status)
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .unwrap()
    });
    let long = "a".repeat(70_000);
    let file = super::TempFile::new(
        "escapes",
        &format!(
            "host = \"http://{addr}\"\n\
             [[setup]]\npath = \"/login\"\ncapture = {{ token = \"/token\" }}\n\
             [[users]]\nname = \"u\"\nwait_time = 0\n\
             [[users.tasks]]\npath = \"/items/{{{{setup.token}}}}\"\nname = \"/items/{{{{setup.token}}}}\"\n\
             [[users.tasks]]\npath = \"/=cmd\"\nname = \"=HYPERLINK(1)\"\n\
             [[users.tasks]]\npath = \"/{long}\"\n\
             [[scenarios]]\nname = \"s\"\nexecutor = \"per-vu-iterations\"\nvus = 1\niterations = 1\n"
        ),
    );
    let prefix = std::env::temp_dir().join(format!("aiotest-it-{}-esc", std::process::id()));
    let out = super::aiotest(&[
        "run",
        file.path().to_str().unwrap(),
        "-q",
        "--allow-failures",
        "--csv",
        prefix.to_str().unwrap(),
    ]);
    let stdout = super::text(&out.stdout);
    let stderr = super::text(&out.stderr);
    assert!(out.status.code().is_some(), "{stderr}");
    assert!(
        !stdout.contains('\u{1b}'),
        "a raw escape reached the terminal"
    );
    assert!(
        !stderr.contains('\u{1b}'),
        "a raw escape reached the terminal"
    );
    assert!(stdout.contains(&long), "the long path is in the summary");
    assert!(stdout.contains("\\x1b]0;owned\\x07\\x1b[2J"), "{stdout}");
    let failures = std::fs::read_to_string(format!("{}_failures.csv", prefix.display())).unwrap();
    let stats = std::fs::read_to_string(format!("{}_stats.csv", prefix.display())).unwrap();
    assert!(!failures.contains('\u{1b}') && !stats.contains('\u{1b}'));
    assert!(stats.contains("'=HYPERLINK(1)"), "{stats}");
    assert!(failures.contains("'=HYPERLINK(1)"), "{failures}");
    for suffix in aiotest_runner::csv::FILES {
        let _ = std::fs::remove_file(format!("{}_{suffix}.csv", prefix.display()));
    }
}
