//! Every output tells the same story: a test with the four kinds of custom metric,
//! key=value tags, nested groups and checks, run over two workers, gives the same figures
//! and verdicts in the JSON export, the HTML report, the CSV files and Prometheus's
//! `/metrics`, each equal to what the target served.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::Value;

use super::metrics::shop;
use super::{
    MASTER_OF_TWO, TempFile, counter_sum, free_port, http, http_text, spawn, spawn_piped, text,
    wait_exit, wait_for,
};

const FILE: &str = r#"
host = "http://ADDR"

[load]
users = 2
run_time = "2s"

[[metrics]]
name = "carts"
kind = "counter"

[[metrics]]
name = "last_total"
kind = "gauge"

[[metrics]]
name = "cart_ok"
kind = "rate"

[[metrics]]
name = "connect_ms"
kind = "trend"
time = true

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
metrics = [
  { name = "carts", value = 1, tags = { shop = "eu" } },
  { name = "last_total", json = "/total" },
  { name = "cart_ok", json = "/ok" },
  { name = "connect_ms", response = "connecting" },
]
[[users.tasks]]
path = "/pay"
group = "checkout::pay"
tags = { page = "pay" }
checks = [{ name = "paid", status = 200 }]
"#;

/// The cells of each row of the HTML table `id`, by field.
fn html_rows(html: &str, id: &str) -> Vec<BTreeMap<String, String>> {
    let start = html
        .find(&format!("<table id=\"{id}\">"))
        .unwrap_or_else(|| panic!("no table {id}"));
    let table = &html[start..start + html[start..].find("</table>").unwrap()];
    table
        .split("<tr")
        .skip(2) // before the header, the header
        .map(|row| {
            row.split("data-field=\"")
                .skip(1)
                .map(|cell| {
                    let (field, rest) = cell.split_once('"').unwrap();
                    let value = rest[1..].split("</td>").next().unwrap();
                    (
                        field.to_owned(),
                        value.replace("&nbsp;", " ").trim().to_owned(),
                    )
                })
                .collect()
        })
        .collect()
}

/// The rows of a CSV file, each by its header's names.
fn csv_rows(path: &std::path::Path) -> Vec<BTreeMap<String, String>> {
    let mut r = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let headers = r.headers().unwrap().clone();
    r.records()
        .map(|row| {
            let row = row.unwrap();
            headers
                .iter()
                .zip(row.iter())
                .map(|(h, v)| (h.to_owned(), v.to_owned()))
                .collect()
        })
        .collect()
}

/// A named metric's whole in the JSON export.
fn whole<'a>(json: &'a Value, name: &str) -> &'a Value {
    json["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name && m["tags"].is_null())
        .unwrap_or_else(|| panic!("no {name}: {}", json["metrics"]))
}

/// The first number in `s` (`12`, `97.50%` and `1.2ms` alike).
fn number(s: &str) -> f64 {
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
        .unwrap_or(s.len());
    s[..end].parse().unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

#[test]
fn the_json_html_csv_and_prometheus_outputs_agree_with_the_target_over_two_workers() {
    let (addr, served) = shop();
    let file = TempFile::new("outputs", &FILE.replace("ADDR", &addr.to_string()));
    let dir = std::env::temp_dir().join(format!("aiotest-it-outputs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let export = dir.join("summary.json");
    let html = dir.join("report.html");
    let prefix = dir.join("run");
    let redis = aiotest_coordinator::testutil::RedisServer::start().unwrap();
    let meet = ["--redis", &redis.url(), "--run-id", "outputs"];
    let _workers: Vec<_> = (0..2)
        .map(|_| spawn(&[&["run", "--worker", "-q"][..], &meet[..]].concat()))
        .collect();
    let port = free_port();
    let control = format!("127.0.0.1:{port}");
    let thresholds = [
        "carts{shop:eu} count>0",
        "last_total max<=30",
        "cart_ok rate==100%",
        "connect_ms p(95)<5000",
        "http_reqs{page:pay} count>0",
        "checks{group:::checkout::pay} rate==100%",
        "vus max==2",
        // Fails: every figure above passes, and a failing verdict must show everywhere.
        "http_req_duration{group:::checkout} max<0.001",
    ];
    let mut args = vec!["run", file.path().to_str().unwrap()];
    args.extend(MASTER_OF_TWO);
    args.extend([
        "-q",
        "--summary-export",
        export.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
        "--csv",
        prefix.to_str().unwrap(),
        "--control-addr",
        &control,
        "--linger",
    ]);
    args.extend(&meet);
    for t in &thresholds {
        args.extend(["--threshold", t]);
    }
    let child = spawn_piped(&args);
    wait_for("the run to end", Duration::from_secs(60), || {
        http(port, "GET", "/api/state").is_some_and(|s| s["done"] == true)
    });
    let metrics = http_text(port, "GET", "/metrics").unwrap();
    assert!(http(port, "POST", "/api/quit").is_some());
    let out = wait_exit(child, Duration::from_secs(20), "the master after /api/quit");
    assert_eq!(out.status.code(), Some(99), "{}", text(&out.stderr));

    let json: Value = serde_json::from_str(&std::fs::read_to_string(&export).unwrap()).unwrap();
    let served = served.load(Ordering::Relaxed);
    assert!(served > 0);
    assert_eq!(json["totals"]["requests"], served);
    let carts = whole(&json, "carts")["values"]["count"].as_f64().unwrap();
    assert!(carts > 0.0 && carts < served as f64, "{carts} of {served}");

    // Thresholds: the same verdicts in the export, the HTML report and the CSV file.
    let verdicts: Vec<bool> = json["thresholds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["ok"].as_bool().unwrap())
        .collect();
    let mut want = vec![true; thresholds.len()];
    *want.last_mut().unwrap() = false;
    assert_eq!(verdicts, want, "{}", json["thresholds"]);
    let page = std::fs::read_to_string(&html).unwrap();
    let html_verdicts: Vec<bool> = html_rows(&page, "thresholds")
        .iter()
        .map(|r| r["verdict"] == "passed")
        .collect();
    assert_eq!(html_verdicts, want);
    let csv_verdicts: Vec<bool> = csv_rows(&prefix.with_file_name("run_thresholds.csv"))
        .iter()
        .map(|r| r["Verdict"] == "passed")
        .collect();
    assert_eq!(csv_verdicts, want);

    // Every named metric's whole, and each tag set, alike in JSON, HTML and CSV.
    let html_metrics = html_rows(&page, "named-metrics");
    let csv_metrics = csv_rows(&prefix.with_file_name("run_metrics.csv"));
    let rows = json["metrics"].as_array().unwrap();
    assert_eq!(html_metrics.len(), rows.len());
    assert_eq!(csv_metrics.len(), rows.len());
    for ((j, h), c) in rows.iter().zip(&html_metrics).zip(&csv_metrics) {
        let name = j["name"].as_str().unwrap();
        assert_eq!(c["Name"], name);
        assert_eq!(h["kind"], j["kind"].as_str().unwrap(), "{name}");
        assert_eq!(c["Samples"], j["samples"].to_string(), "{name}");
        assert_eq!(h["samples"], j["samples"].to_string(), "{name}");
        for (figure, v) in j["values"].as_object().unwrap() {
            let v = v.as_f64().unwrap();
            let field = figure.replace(['(', ')'], "");
            assert_eq!(number(&c[figure.as_str()]), v, "{name} {figure} in CSV");
            let shown = number(&h[&field]);
            let shown = if j["kind"] == "rate" {
                shown / 100.0
            } else {
                shown
            };
            assert!(
                (shown - v).abs() < 1e-9,
                "{name} {figure} in HTML: {shown} vs {v}"
            );
        }
    }

    // Named checks: the same verdicts by group in the export and the checks CSV.
    let csv_checks: Vec<(String, String, String)> =
        csv_rows(&prefix.with_file_name("run_checks.csv"))
            .iter()
            .map(|r| {
                let path = format!("{}::{}", r["Group"], r["Check"]);
                (path, r["Passed"].clone(), r["Failed"].clone())
            })
            .collect();
    let json_checks: Vec<(String, String, String)> = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["passes"].to_string(),
                c["fails"].to_string(),
            )
        })
        .collect();
    assert_eq!(csv_checks, json_checks);
    let html_checks = html_rows(&page, "named-checks");
    let html_checks: Vec<_> = html_checks.iter().filter(|r| !r.is_empty()).collect();
    assert_eq!(
        html_checks.len(),
        json_checks.len(),
        "a row each, headings aside"
    );

    // Prometheus: the same counts, the tags as labels.
    assert_eq!(
        counter_sum(&metrics, "aiotest_requests_total") as u64,
        served
    );
    assert_eq!(counter_sum(&metrics, "aiotest_custom_carts_total"), carts);
    assert!(metrics.contains("aiotest_custom_carts_total{"), "{metrics}");
    assert!(metrics.contains("shop=\"eu\""), "{metrics}");
    assert!(
        metrics.contains("# HELP aiotest_custom_carts_total"),
        "{metrics}"
    );
    let checks: f64 = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["passes"].as_f64().unwrap() + c["fails"].as_f64().unwrap())
        .sum();
    assert_eq!(counter_sum(&metrics, "aiotest_checks_total"), checks);
    assert!(metrics.contains("group=\"::checkout::pay\""), "{metrics}");
    let _ = std::fs::remove_dir_all(dir);
}
