//! Named metrics declared in a scenario file, fed from responses and constants, judged by
//! thresholds in k6's form, and exported: on one machine and exact over two workers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use serde_json::Value;

use super::{
    TempFile, aiotest, run_exported, run_file_over_two_workers, run_scenario, serve, text,
};

/// A shop whose `/cart` answers totals 10, 20, 30 in turn; it counts what it served.
pub(super) fn shop() -> (std::net::SocketAddr, Arc<AtomicU64>) {
    let served = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&served);
    let addr = serve(move |_, _| {
        let n = counter.fetch_add(1, Ordering::Relaxed);
        let body = format!(r#"{{"total": {}, "ok": true}}"#, 10 * (n % 3 + 1));
        hyper::Response::new(Full::new(Bytes::from(body)))
    });
    (addr, served)
}

const FILE: &str = r#"
host = "http://ADDR"

[load]
users = 2
run_time = "1s"

[[metrics]]
name = "carts"
kind = "counter"

[[metrics]]
name = "cart_total"
kind = "trend"

[[metrics]]
name = "cart_ok"
kind = "rate"

[[metrics]]
name = "last_total"
kind = "gauge"

[[metrics]]
name = "cart_ms"
kind = "trend"
time = true

[[metrics]]
name = "ttfb"
kind = "trend"
time = true

[[metrics]]
name = "connect_ms"
kind = "trend"
time = true

[[users]]
name = "shopper"
wait_time = 0.01
[[users.tasks]]
path = "/cart"
metrics = [
  { name = "carts", value = 1, tags = { shop = "eu" } },
  { name = "cart_total", json = "/total" },
  { name = "cart_total", json = "/missing" },
  { name = "cart_ok", json = "/ok" },
  { name = "last_total", json = "/total" },
  { name = "cart_ms", response = "duration" },
  { name = "ttfb", response = "waiting" },
  { name = "connect_ms", response = "connecting" },
]
"#;

fn metric<'a>(json: &'a Value, name: &str, tags: &[(&str, &str)]) -> &'a Value {
    json["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| {
            // No tags: the metric's whole, whose tags are null.
            m["name"] == name
                && match m["tags"].as_object() {
                    None => tags.is_empty(),
                    Some(t) => {
                        !tags.is_empty()
                            && t.len() == tags.len()
                            && tags.iter().all(|(k, v)| t[*k] == *v)
                    }
                }
        })
        .unwrap_or_else(|| panic!("no metric {name} {tags:?}: {}", json["metrics"]))
}

fn run(file: &std::path::Path, name: &str, extra: &[&str]) -> (Option<i32>, Value, String) {
    run_scenario(file, name, extra)
}

fn check_exact(json: &Value, served: u64) {
    assert_eq!(json["totals"]["requests"], served);
    let n = served as f64;
    assert_eq!(metric(json, "carts", &[])["values"]["count"], n);
    assert_eq!(
        // Every sample carries its scenario and the test's --tag, beside its own tags.
        metric(
            json,
            "carts",
            &[("scenario", "default"), ("env", "ci"), ("shop", "eu")]
        )["values"]["count"],
        n
    );
    let total = metric(json, "cart_total", &[]);
    assert_eq!(total["samples"], served, "one sample a response");
    assert_eq!(total["values"]["min"], 10.0);
    assert_eq!(total["values"]["max"], 30.0);
    assert_eq!(metric(json, "cart_ok", &[])["values"]["rate"], 1.0);
    let last = metric(json, "last_total", &[])["values"]["value"]
        .as_f64()
        .unwrap();
    assert!([10.0, 20.0, 30.0].contains(&last), "{last}");
    let ms = metric(json, "cart_ms", &[]);
    assert_eq!(ms["time"], true);
    assert!(ms["values"]["max"].as_f64().unwrap() > 0.0);
    // The time to first byte is part of the duration; a connection is opened by one
    // request a user (two users, and a worker each in a distributed run: at most 4).
    let ttfb = metric(json, "ttfb", &[]);
    assert_eq!(ttfb["samples"], served);
    assert!(ttfb["values"]["max"].as_f64().unwrap() <= ms["values"]["max"].as_f64().unwrap());
    let connect = metric(json, "connect_ms", &[]);
    assert_eq!(connect["samples"], served);
    assert!(
        connect["values"]["max"].as_f64().unwrap() > 0.0,
        "{connect}"
    );
    assert!(
        connect["values"]["p(90)"].as_f64().unwrap() == 0.0,
        "kept-alive requests open nothing: {connect}"
    );
    // The feed that found nothing made no sample: it is counted as a miss.
    assert_eq!(
        metric(
            json,
            "metric_misses",
            &[
                ("scenario", "default"),
                ("env", "ci"),
                ("metric", "cart_total")
            ]
        )["values"]["count"],
        n
    );
}

#[test]
fn a_files_metrics_are_fed_exported_and_judged_in_k6s_form() {
    let (addr, served) = shop();
    let file = TempFile::new("metrics", &FILE.replace("ADDR", &addr.to_string()));
    let passing = [
        "--tag",
        "env=ci",
        "--threshold",
        "carts{shop:eu} count>0",
        "--threshold",
        "cart_total p(95)<=30",
        "--threshold",
        "cart_ok rate==100%",
        "--threshold",
        "last_total max<=30",
        "--threshold",
        "vus max==2",
    ];
    let (code, json, out) = run(file.path(), "metrics-pass", &passing);
    assert_eq!(code, Some(0), "{out}");
    check_exact(&json, served.load(Ordering::Relaxed));
    for t in json["thresholds"].as_array().unwrap() {
        assert_eq!(t["ok"], true, "{t}");
        assert!(t["matched"].as_u64().unwrap() > 0, "{t}");
    }
    // Each kind fails when it should: exit 99, and the failing one says why.
    for failing in [
        "carts count<1",
        "cart_total max<30",
        "cart_ok rate<1",
        "last_total value>30",
        "cart_ms p(99)>60000",
        "carts{shop:us} count>=0",
        "vus max<2",
    ] {
        let (code, json, out) = run(
            file.path(),
            "metrics-fail",
            &["--tag", "env=ci", "--threshold", failing],
        );
        assert_eq!(code, Some(99), "{failing}: {out}");
        assert_eq!(json["thresholds"][0]["ok"], false, "{failing}");
    }
    let (_, json, _) = run(
        file.path(),
        "metrics-none",
        &["--threshold", "carts{shop:us} count>=0"],
    );
    assert_eq!(
        json["thresholds"][0]["reason"],
        "no sample of `carts{shop:us}` was taken"
    );
}

#[test]
fn a_files_metrics_add_up_exactly_over_two_workers() {
    let (addr, served) = shop();
    let file = TempFile::new("metrics-dist", &FILE.replace("ADDR", &addr.to_string()));
    let (code, json, out) = run_file_over_two_workers(
        file.path(),
        "metrics-dist",
        &[
            "--threshold",
            "carts{env:ci} count>0",
            "--tag",
            "env=ci",
            "--threshold",
            "vus max==2",
        ],
    );
    assert_eq!(code, Some(0), "{out}");
    check_exact(&json, served.load(Ordering::Relaxed));
    // k6's `vus`: the master counts its workers' users (one each), once.
    let vus = metric(&json, "vus", &[]);
    assert_eq!(vus["kind"], "gauge");
    assert_eq!(vus["values"]["max"], 2.0, "{vus}");
}

#[test]
fn a_bad_test_tag_is_refused() {
    for (tag, want) in [
        ("env", "`env`: a tag is KEY=VALUE, e.g. --tag env=staging"),
        (
            "a:b=c",
            "`a:b=c`: a key has no control characters and none of { } , : =",
        ),
    ] {
        let out = aiotest(&["run", "--url", "http://127.0.0.1:9/", "--tag", tag]);
        assert_eq!(out.status.code(), Some(2), "{tag}");
        assert!(
            text(&out.stderr).contains(want),
            "{tag}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn a_bad_metric_in_a_file_is_refused_naming_the_line() {
    for (bad, want) in [
        (
            "[[metrics]]\nname = \"x\"\nkind = \"histogram\"\n",
            "metrics[0].kind: `histogram` is not a kind: use counter, gauge, rate or trend",
        ),
        (
            "[[metrics]]\nname = \"9x\"\nkind = \"counter\"\n",
            "metrics[0].name: metric name `9x`",
        ),
        (
            "[[metrics]]\nname = \"x\"\nkind = \"counter\"\ntime = true\n",
            "metrics[0].time: only a trend holds times",
        ),
        (
            "[[metrics]]\nname = \"x\"\nkind = \"counter\"\n[[metrics]]\nname = \"x\"\nkind = \"rate\"\n",
            "metrics[1].name: `x` is declared twice",
        ),
    ] {
        let toml = format!(
            "host = \"http://127.0.0.1:9\"\n{bad}[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/\"\n"
        );
        let file = TempFile::new("bad-metric", &toml);
        let out = aiotest(&["run", file.path().to_str().unwrap(), "-q"]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let err = text(&out.stderr);
        assert!(err.contains(want), "{bad}: {err}");
    }
    for (feed, want) in [
        (
            "{ name = \"nope\", value = 1 }",
            "metrics[0].name: `nope` is not declared",
        ),
        (
            "{ name = \"x\" }",
            "give one of value, json, header, response or vars (found none)",
        ),
        (
            "{ name = \"x\", value = 1, json = \"/a\" }",
            "(found value, json)",
        ),
        (
            "{ name = \"x\", response = \"size\" }",
            "`size` is not a response property",
        ),
        (
            "{ name = \"x\", vars = \"t\" }",
            "no task of this user type captures `t`",
        ),
        (
            "{ name = \"x\", json = \"a\" }",
            "`a` is not a JSON pointer",
        ),
    ] {
        let toml = format!(
            "host = \"http://127.0.0.1:9\"\n[[metrics]]\nname = \"x\"\nkind = \"counter\"\n[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/\"\nmetrics = [{feed}]\n"
        );
        let file = TempFile::new("bad-feed", &toml);
        let out = aiotest(&["run", file.path().to_str().unwrap(), "-q"]);
        assert_eq!(out.status.code(), Some(2), "{feed}");
        let err = text(&out.stderr);
        assert!(
            err.contains(want) && err.contains(":9: users[0].tasks[0]"),
            "{feed}: {err}"
        );
    }
}

/// The example file, the scenario-file twin of the Rust example `custom_metrics`: the
/// same metrics of the same kinds, judged the same way.
#[test]
fn the_custom_metrics_example_file_runs_against_the_demo_target() {
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/custom_metrics.toml"
    );
    let (out, json) = run_exported(
        "example-metrics",
        &[
            "run",
            file,
            "--demo",
            "-t",
            "1s",
            "--threshold",
            "pages{page:home} count>10",
            "--threshold",
            "body_bytes value>0",
            "--threshold",
            "fast rate>0.5",
            "--threshold",
            "connect_ms max>0",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let requests = json["totals"]["requests"].as_u64().unwrap();
    assert_eq!(
        metric(&json, "pages", &[])["values"]["count"],
        requests as f64
    );
    for (name, kind) in [
        ("pages", "counter"),
        ("body_bytes", "gauge"),
        ("fast", "rate"),
        ("connect_ms", "trend"),
    ] {
        assert_eq!(metric(&json, name, &[])["kind"], kind, "{name}");
    }
}
