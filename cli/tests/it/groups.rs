//! k6's key=value tags and groups from a scenario file: each request counted under its
//! tags and group path, group durations, checks by group, thresholds on k6's built-in
//! metrics filtered by those tags; on one machine and exact over two workers.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use serde_json::Value;

use super::{TempFile, run_exported, run_file_over_two_workers, run_scenario, serve, text};

type Served = Arc<Mutex<BTreeMap<String, u64>>>;

/// A shop that counts what it served, by path.
fn shop() -> (std::net::SocketAddr, Served) {
    let served = Served::default();
    let counts = Arc::clone(&served);
    let addr = serve(move |parts, _| {
        *counts
            .lock()
            .unwrap()
            .entry(parts.uri.path().to_owned())
            .or_default() += 1;
        hyper::Response::new(Full::new(Bytes::from_static(b"ok")))
    });
    (addr, served)
}

const FILE: &str = r#"
host = "http://ADDR"

[load]
users = 2
run_time = "1s"

[[users]]
name = "buyer"
wait_time = 0.01
execution_mode = "sequential"
[[users.tasks]]
path = "/browse"
tags = { page = "list" }
[[users.tasks]]
path = "/cart"
group = "checkout"
checks = [{ name = "cart shown", status = 200 }]
[[users.tasks]]
path = "/pay"
group = "checkout::pay"
tags = { page = "pay" }
checks = [{ name = "paid", status = 200 }]
"#;

fn run(file: &std::path::Path, name: &str, extra: &[&str]) -> (Option<i32>, Value, String) {
    run_scenario(file, name, extra)
}

/// The endpoint row named `name` (the request name and its tags, as tables show it).
fn row<'a>(json: &'a Value, name: &str) -> &'a Value {
    json["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no row {name}: {}", json["endpoints"]))
}

fn check_exact(json: &Value, served: &Served) {
    let served = served.lock().unwrap().clone();
    assert!(served.values().all(|&n| n > 0), "{served:?}");
    let browse = row(json, "/browse {page:list}");
    assert_eq!(browse["requests"], served["/browse"]);
    assert_eq!(browse["tags"]["page"], "list");
    let cart = row(json, "/cart {group:::checkout}");
    assert_eq!(cart["requests"], served["/cart"]);
    assert_eq!(cart["tags"]["group"], "::checkout");
    let pay = row(json, "/pay {group:::checkout::pay,page:pay}");
    assert_eq!(pay["requests"], served["/pay"]);
    // A group's duration: one sample a task run in it.
    let durations: BTreeMap<String, u64> = json["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["name"] == "group_duration" && m["tags"]["group"].is_string())
        .filter(|m| m["tags"].as_object().unwrap().len() == 2) // group and scenario
        .map(|m| {
            (
                m["tags"]["group"].as_str().unwrap().to_owned(),
                m["samples"].as_u64().unwrap(),
            )
        })
        .collect();
    // In a file, a task's groups cover that task: `checkout` has a sample for each task
    // in it or below it. A group cut by the end of the run has none: at most one a user.
    for (group, n) in [
        ("::checkout", served["/cart"] + served["/pay"]),
        ("::checkout::pay", served["/pay"]),
    ] {
        let d = durations[group];
        assert!(d <= n && d + 2 >= n, "{group}: {d} durations, {n} requests");
    }
    // k6's built-in metrics in the metrics section, from the same figures.
    let whole = |name: &str| {
        json["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name && m["tags"].is_null())
            .unwrap_or_else(|| panic!("no {name}: {}", json["metrics"]))
            .clone()
    };
    let total: u64 = served.values().sum();
    assert_eq!(whole("http_reqs")["values"]["count"], total as f64);
    assert_eq!(whole("http_req_duration")["samples"], total);
    assert_eq!(whole("checks")["values"]["rate"], 1.0);
    // Checks by path, as k6 has them.
    assert_eq!(
        check_names(json),
        ["::checkout::cart shown", "::checkout::pay::paid"]
    );
}

/// The names of the export's named checks, in order.
fn check_names(json: &Value) -> Vec<&str> {
    json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect()
}

/// Each part of the timing breakdown has a sample per response, under the request's tags.
fn check_timings(json: &Value, served: &Served) {
    let served: u64 = served.lock().unwrap().values().sum();
    for name in [
        "http_req_blocked",
        "http_req_connecting",
        "http_req_tls_handshaking",
        "http_req_sending",
        "http_req_waiting",
        "http_req_receiving",
    ] {
        let rows: Vec<&Value> = json["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["name"] == name)
            .collect();
        let whole = rows.iter().find(|m| m["tags"].is_null()).expect(name);
        assert_eq!(whole["samples"], served, "{name}");
        assert_eq!(whole["time"], true, "{name}");
        let pay = rows
            .iter()
            .find(|m| m["tags"]["page"] == "pay")
            .unwrap_or_else(|| panic!("{name}: {rows:?}"));
        for (k, v) in [
            ("name", "/pay"),
            ("method", "GET"),
            ("status", "200"),
            ("proto", "HTTP/1.1"),
            ("expected_response", "true"),
            ("group", "::checkout::pay"),
            ("scenario", "default"),
        ] {
            assert_eq!(pay["tags"][k], v, "{name}: {pay}");
        }
    }
}

#[test]
fn a_files_tags_and_groups_are_counted_exported_and_judged() {
    let (addr, served) = shop();
    let file = TempFile::new("groups", &FILE.replace("ADDR", &addr.to_string()));
    let passing = [
        "--threshold",
        "http_reqs{page:pay} count>0",
        "--threshold",
        "http_req_duration{group:::checkout::pay} p(95)<5000",
        "--threshold",
        "http_req_failed{group:::checkout} rate==0",
        "--threshold",
        "checks{group:::checkout::pay} rate==100%",
        // Checks and iterations are named metrics under their scenario's tags.
        "--threshold",
        "checks{scenario:default} rate==100%",
        "--threshold",
        "group_duration{group:::checkout} max<5000",
        "--threshold",
        "iterations{scenario:default} count>0",
        // A threshold on a part of the timing breakdown keeps those trends by itself.
        "--threshold",
        "http_req_waiting{page:pay,status:200,proto:HTTP/1.1} p(95)<5000",
        // With them, k6's per-response duration, under every system tag.
        "--threshold",
        "http_req_duration{page:pay,status:200,expected_response:true} p(95)<5000",
    ];
    let (code, json, out) = run(file.path(), "groups-pass", &passing);
    assert_eq!(code, Some(0), "{out}");
    check_exact(&json, &served);
    check_timings(&json, &served);
    for t in json["thresholds"].as_array().unwrap() {
        assert_eq!(t["ok"], true, "{t}");
        assert!(t["matched"].as_u64().unwrap() > 0, "{t}");
    }
    let by_status = json["thresholds"].as_array().unwrap().last().unwrap();
    assert_eq!(
        by_status["matched"],
        served.lock().unwrap()["/pay"],
        "{by_status}"
    );
    // The summary shows each row under its tags.
    assert!(
        out.contains("/pay {group:::checkout::pay,page:pay}"),
        "{out}"
    );
    for failing in [
        "http_reqs{page:pay} count<1",
        "http_req_duration{group:::checkout} max<0.001",
        "checks{group:::nowhere} rate>0",
        "checks{scenario:other} rate>0",
        "http_reqs{page:none} count>=0",
    ] {
        let (code, json, out) = run(file.path(), "groups-fail", &["--threshold", failing]);
        assert_eq!(code, Some(99), "{failing}: {out}");
        assert_eq!(json["thresholds"][0]["ok"], false, "{failing}");
    }
}

#[test]
fn a_files_tags_and_groups_add_up_exactly_over_two_workers() {
    let (addr, served) = shop();
    let file = TempFile::new("groups-dist", &FILE.replace("ADDR", &addr.to_string()));
    let (code, json, out) = run_file_over_two_workers(
        file.path(),
        "groups-dist",
        &[
            "--threshold",
            "http_reqs{page:pay} count>0",
            "--threshold",
            "http_req_duration{status:200} max<5000",
        ],
    );
    assert_eq!(code, Some(0), "{out}");
    check_exact(&json, &served);
    check_timings(&json, &served);
}

/// The example file, the scenario-file twin of the Rust example `checkout`: the same rows,
/// checks and groups, judged the same way.
#[test]
fn the_checkout_example_file_runs_against_the_demo_target() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/checkout.toml");
    let (out, json) = run_exported(
        "example-checkout",
        &[
            "run",
            file,
            "--demo",
            "-t",
            "1s",
            "--threshold",
            "http_reqs{page:home} count>0",
            "--threshold",
            "http_req_duration{page:pay} p(95)<5000",
            "--threshold",
            "checks{group:::checkout::pay} rate==100%",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    for name in [
        "/ {page:home}",
        "/cart {group:::checkout,page:cart}",
        "/pay {group:::checkout::pay,page:pay}",
    ] {
        assert!(row(&json, name)["requests"].as_u64().unwrap() > 0, "{name}");
    }
    assert_eq!(
        check_names(&json),
        [
            "::checkout::cart shown",
            "::checkout::pay::paid",
            "home shown"
        ]
    );
}
