//! k6-style scripts (`aiotest run script.js`) against the counting target: the
//! lifecycle as k6 describes it, the load from options and flags, and the errors a script
//! author meets.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{TempFile, check_counts, endpoint_counts, run_exported, target, text};

/// A script file with `{BASE}` replaced by the target's URL.
fn script(name: &str, base: &str, body: &str) -> TempFile {
    TempFile::with_extension(name, "js", &body.replace("{BASE}", base))
}

fn run(file: &TempFile, name: &str, extra: &[&str]) -> (Option<i32>, serde_json::Value, String) {
    let (out, json) = run_exported(
        name,
        &[&["run", file.path().to_str().unwrap()][..], extra].concat(),
    );
    (
        out.status.code(),
        json,
        text(&out.stdout) + &text(&out.stderr),
    )
}

/// The first error `script_errors` counted in an export, and how often.
fn script_error(json: &serde_json::Value) -> (String, f64) {
    let row = json["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "script_errors" && !m["tags"].is_null())
        .unwrap_or_else(|| panic!("no script_errors: {json}"));
    (
        row["tags"]["error"].as_str().unwrap().to_owned(),
        row["values"]["count"].as_f64().unwrap(),
    )
}

/// A named metric's whole-test row in an export.
fn metric<'a>(json: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    json["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name && m["tags"].is_null())
}

#[test]
fn the_four_phases_run_once_each_and_setup_data_reaches_default_and_teardown() {
    let t = target();
    let base = format!("http://{}", t.addr);
    let f = script(
        "lifecycle",
        &base,
        r#"
import http from 'k6/http';
import { check, sleep } from 'k6';

// 1. init code: once per VU (and once to read these options).
export const options = { vus: 3, iterations: 12 };

// 2. setup code: once.
export function setup() {
  const res = http.get('{BASE}/login');
  return { token: res.json('data.token'), v: 1 };
}

// 3. VU code: each iteration, with setup's data.
export default function (data) {
  const r = http.get('{BASE}/items');
  check(r, {
    'token came': () => data.token === 't-9',
    'status is 200': (r) => r.status === 200,
  });
  sleep(0.01);
}

// 4. teardown code: once, with the same data.
export function teardown(data) {
  http.post('{BASE}/echo', JSON.stringify(data), { headers: { 'Content-Type': 'application/json' } });
}
"#,
    );
    let (code, json, out) = run(&f, "script-lifecycle", &[]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(endpoint_counts(&json, &format!("{base}/login")), (1, 0));
    assert_eq!(endpoint_counts(&json, &format!("{base}/items")), (12, 0));
    assert_eq!(endpoint_counts(&json, &format!("{base}/echo")), (1, 0));
    assert_eq!(check_counts(&json, "token came"), (12, 0));
    assert_eq!(check_counts(&json, "status is 200"), (12, 0));
    // Everything the target served is in the summary: 1 + 12 + 1.
    assert_eq!(json["totals"]["requests"], 14);
    assert_eq!(t.served.load(Ordering::Relaxed), 14);
    assert_eq!(
        t.echoed.lock().unwrap().as_slice(),
        [r#"POST - application/json {"token":"t-9","v":1}"#]
    );
    assert_eq!(
        metric(&json, "iterations").unwrap()["values"]["count"],
        12.0
    );
}

#[test]
fn teardown_that_throws_on_wrong_data_fails_the_run_and_a_failed_setup_skips_it() {
    let t = target();
    let base = format!("http://{}", t.addr);
    // Teardown checks what setup returned, and throws when it is not what it expects.
    let f = script(
        "teardown-throws",
        &base,
        r#"
import http from 'k6/http';
export function setup() { return { v: 1 }; }
export default function () { http.get('{BASE}/a'); }
export function teardown(data) {
  if (data.v !== 2) {
    throw new Error('incorrect data: ' + JSON.stringify(data));
  }
}
"#,
    );
    let (code, _, out) = run(&f, "script-teardown-throws", &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(r#"teardown() threw: Error: incorrect data: {"v":1} at "#),
        "{out}"
    );
    // A setup that throws: no VU runs, teardown does not run, the exit code says so.
    let f = script(
        "setup-throws",
        &base,
        r#"
import http from 'k6/http';
export function setup() { throw new Error('no accounts'); }
export default function () { http.get('{BASE}/never'); }
export function teardown() { http.get('{BASE}/echo'); }
"#,
    );
    let served = t.served.load(Ordering::Relaxed);
    let (code, _, out) = run(&f, "script-setup-throws", &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("setup() threw: Error: no accounts at "),
        "{out}"
    );
    assert_eq!(t.served.load(Ordering::Relaxed), served, "nothing was sent");
}

#[test]
fn a_scenario_runs_its_exec_function_with_constant_vus() {
    let t = target();
    let base = format!("http://{}", t.addr);
    let f = script(
        "exec",
        &base,
        r#"
import http from 'k6/http';
export const options = {
  scenarios: {
    browsing: { executor: 'constant-vus', exec: 'browse', vus: 2, duration: '1s', tags: { kind: 'web' } },
    buying: { executor: 'per-vu-iterations', exec: 'buy', vus: 2, iterations: 3, startTime: '200ms' },
  },
};
export function browse() { http.get('{BASE}/5ms'); }
export function buy() { http.post('{BASE}/echo', 'item=1'); }
"#,
    );
    let (code, json, out) = run(&f, "script-exec", &[]);
    assert_eq!(code, Some(0), "{out}");
    let scenarios: Vec<&str> = json["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(scenarios, ["browsing", "buying"]);
    let (browsed, _) = endpoint_counts(&json, &format!("{base}/5ms"));
    // Two VUs for a second at a little over 5 ms a request.
    assert!((100..=400).contains(&browsed), "{browsed}");
    assert_eq!(endpoint_counts(&json, &format!("{base}/echo")), (6, 0));
    assert_eq!(json["totals"]["requests"], t.served.load(Ordering::Relaxed));
}

#[test]
fn the_command_line_overrides_the_options_load_field_by_field() {
    let t = target();
    let base = format!("http://{}", t.addr);
    let f = script(
        "override",
        &base,
        r#"
import http from 'k6/http';
export const options = { vus: 2, iterations: 4 };
export default function () { http.get('{BASE}/x'); }
"#,
    );
    let (code, json, out) = run(&f, "script-override", &["-i", "7"]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(endpoint_counts(&json, &format!("{base}/x")), (7, 0));
    // No load at all: one iteration of one VU, as in k6.
    let f = script(
        "no-load",
        &base,
        "import http from 'k6/http';\nexport default function () { http.get('{BASE}/y'); }\n",
    );
    let (code, json, out) = run(&f, "script-no-load", &[]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(endpoint_counts(&json, &format!("{base}/y")), (1, 0));
}

#[test]
fn an_exception_in_vu_code_fails_its_iteration_only_and_is_counted_with_its_line() {
    let t = target();
    let base = format!("http://{}", t.addr);
    let f = script(
        "throws",
        &base,
        r#"
import http from 'k6/http';
export const options = { iterations: 6 };
export default function () {
  http.get('{BASE}/x');
  if (__ITER % 2 === 0) {
    throw new Error('odd one out');
  }
  http.get('{BASE}/after');
}
"#,
    );
    let (code, json, out) = run(&f, "script-throws", &[]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(endpoint_counts(&json, &format!("{base}/x")), (6, 0));
    assert_eq!(endpoint_counts(&json, &format!("{base}/after")), (3, 0));
    let (error, count) = script_error(&json);
    assert_eq!(count, 3.0);
    assert!(error.starts_with("Error: odd one out at "), "{error}");
    assert!(error.ends_with(".js:7:15"), "{error}");
}

#[test]
fn a_script_that_cannot_run_exits_2_saying_what_and_where() {
    let t = target();
    let base = format!("http://{}", t.addr);
    let cases: [(&str, &str, &str); 8] = [
        (
            "syntax",
            "export default function () {\n  const x = ;\n}\n",
            "SyntaxError: unexpected token in expression: ';' at ",
        ),
        (
            "module",
            "import ws from 'k6/ws';\nexport default function () {}\n",
            "aiotest does not support the module `k6/ws`",
        ),
        (
            "export",
            "import { nope } from 'k6/http';\nexport default function () {}\n",
            "Could not find export 'nope' in module 'k6/http'",
        ),
        (
            "init-request",
            "import http from 'k6/http';\nhttp.get('{BASE}/x');\nexport default function () {}\n",
            "an HTTP request is not allowed in the init context",
        ),
        (
            "option",
            "export const options = { vus: 2, duraton: '1s' };\nexport default function () {}\n",
            "options: unknown field `duraton`",
        ),
        (
            "nothing",
            "export function setup() {}\n",
            "the script exports no default function and no scenarios",
        ),
        (
            "trend-stats",
            "export const options = { summaryTrendStats: ['avg', 'rate'] };\nexport default function () {}\n",
            "options.summaryTrendStats: `rate` is not a trend's figure",
        ),
        (
            "batch-limit",
            "export const options = { batchPerHost: 0 };\nexport default function () {}\n",
            "options.batchPerHost: 0 sends nothing",
        ),
    ];
    for (name, body, expected) in cases {
        let f = script(&format!("bad-{name}"), &base, body);
        let (code, _, out) = run(&f, &format!("script-bad-{name}"), &[]);
        assert_eq!(code, Some(2), "{name}: {out}");
        assert!(out.contains(expected), "{name}: {out}");
        assert!(
            out.contains(&f.path().display().to_string()),
            "{name}: {out}"
        );
    }
    // Where the syntax error is.
    let f = script(
        "bad-where",
        &base,
        "export default function () {\n  const x = ;\n}\n",
    );
    let (_, _, out) = run(&f, "script-bad-where", &[]);
    assert!(
        out.contains(&format!("{}:2:13", f.path().display())),
        "{out}"
    );
    assert_eq!(t.served.load(Ordering::Relaxed), 0);
}

#[test]
fn a_threshold_with_abort_on_fail_ends_the_run_early_and_exits_99() {
    let t = target();
    let base = format!("http://{}", t.addr);
    let f = script(
        "abort",
        &base,
        r#"
import http from 'k6/http';
export const options = {
  vus: 2,
  duration: '30s',
  thresholds: {
    http_req_failed: [{ threshold: 'rate<0.1', abortOnFail: true }],
    checks: ['rate>0.99'],
  },
};
export default function () {
  // Half fail: far over the threshold, but not a run where nothing succeeded.
  http.get(__ITER % 2 === 0 ? '{BASE}/fail' : '{BASE}/ok');
}
"#,
    );
    let started = Instant::now();
    let (code, json, out) = run(&f, "script-abort", &[]);
    assert_eq!(code, Some(99), "{out}");
    assert!(started.elapsed() < Duration::from_secs(15), "{out}");
    let verdicts: Vec<(String, bool)> = json["thresholds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["expr"].as_str().unwrap().to_owned(),
                t["ok"].as_bool().unwrap(),
            )
        })
        .collect();
    // `checks` matched nothing: a threshold that cannot fail is no threshold.
    assert_eq!(
        verdicts,
        [
            ("checks rate>0.99".to_owned(), false),
            ("http_req_failed rate<0.1:abort".to_owned(), false)
        ]
    );
    assert_eq!(json["totals"]["requests"], t.served.load(Ordering::Relaxed));
}

#[test]
fn custom_metrics_of_the_four_kinds_groups_tags_and_headers_are_counted() {
    let t = target();
    let base = format!("http://{}", t.addr);
    let f = script(
        "metrics",
        &base,
        r#"
import http from 'k6/http';
import { check, group } from 'k6';
import { Counter, Gauge, Rate, Trend } from 'k6/metrics';

const orders = new Counter('orders');
const basket = new Gauge('basket_size');
const paid = new Rate('paid');
const waits = new Trend('login_wait', true);

export const options = {
  // One VU: its __ITER runs 0..8, so half of the payments pass.
  vus: 1,
  iterations: 8,
  tags: { team: 'shop' },
  thresholds: {
    'orders{shop:eu}': ['count==8'],
    paid: ['rate==0.5'],
    'login_wait': ['max<10000'],
    'http_reqs{page:cart}': ['count==8'],
  },
};

export default function () {
  group('checkout', () => {
    const r = http.get('{BASE}/login', { tags: { page: 'cart' } });
    check(r, {
      'has a length': (r) => r.headers['Content-Length'] === String(r.body.length),
      'token': (r) => r.json('data.token') === 't-9',
    });
    waits.add(r.timings.waiting);
  });
  orders.add(1, { shop: 'eu' });
  basket.add(__ITER + 1);
  paid.add(__ITER % 2 === 0);
}
"#,
    );
    let (code, json, out) = run(&f, "script-metrics", &[]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(threshold_ok(&json), [true, true, true, true]);
    assert_eq!(metric(&json, "orders").unwrap()["values"]["count"], 8.0);
    assert_eq!(metric(&json, "paid").unwrap()["values"]["rate"], 0.5);
    let gauge = &metric(&json, "basket_size").unwrap()["values"];
    assert_eq!(gauge["min"], 1.0, "{gauge}");
    assert_eq!(metric(&json, "login_wait").unwrap()["samples"], 8);
    assert_eq!(check_counts(&json, "::checkout::has a length"), (8, 0));
    assert_eq!(check_counts(&json, "::checkout::token"), (8, 0));
    // The group is on the request and its checks; the test's tag on every sample.
    let login = json["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| {
            e["name"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{base}/login "))
        })
        .unwrap();
    assert_eq!(login["tags"]["group"], "::checkout", "{login}");
    assert_eq!(login["requests"], 8);
    let tagged = json["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "orders" && !m["tags"].is_null())
        .unwrap();
    assert_eq!(tagged["tags"]["team"], "shop", "{tagged}");
    assert_eq!(t.served.load(Ordering::Relaxed), 8);
}

fn threshold_ok(json: &serde_json::Value) -> Vec<bool> {
    json["thresholds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["ok"].as_bool().unwrap())
        .collect()
}

#[test]
fn a_shared_array_from_a_csv_opened_in_init_base64_and_a_redirect_followed() {
    // The stand-in: `/r` redirects to `/final`, which echoes the authorization it got.
    let addr = super::serve(|req, _| {
        let mut r = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(
            super::header(req, "authorization").to_owned(),
        )));
        if req.uri.path() == "/r" {
            *r.status_mut() = hyper::StatusCode::FOUND;
            r.headers_mut().insert(
                "location",
                hyper::header::HeaderValue::from_static("/final"),
            );
        }
        r
    });
    let base = format!("http://{addr}");
    let csv = TempFile::with_extension("users", "csv", "name,password\nann,a1\nbob,b2\ncid,c3\n");
    let csv_name = csv.path().file_name().unwrap().to_str().unwrap().to_owned();
    let f = script(
        "shared",
        &base,
        &r#"
import http from 'k6/http';
import { check } from 'k6';
import { SharedArray } from 'k6/data';
import encoding from 'k6/encoding';

const users = new SharedArray('users', function () {
  const [header, ...rows] = open('CSV').trim().split('\n');
  const keys = header.split(',');
  return rows.map((row) => Object.fromEntries(row.split(',').map((v, i) => [keys[i], v])));
});

export const options = { vus: 1, iterations: 3 };

export default function () {
  const u = users[__ITER % users.length];
  const auth = 'Basic ' + encoding.b64encode(`${u.name}:${u.password}`);
  const r = http.get('{BASE}/r', { headers: { Authorization: auth } });
  check(r, {
    'redirect followed': (r) => r.status === 200,
    'credentials arrived': (r) => encoding.b64decode(r.body.slice(6), 'std', 's') === `${u.name}:${u.password}`,
    'three users': () => users.length === 3 && [...users].map((x) => x.name).join() === 'ann,bob,cid',
  });
}
"#
        .replace("CSV", &csv_name),
    );
    let (code, json, out) = run(&f, "script-shared", &[]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(check_counts(&json, "redirect followed"), (3, 0));
    assert_eq!(check_counts(&json, "credentials arrived"), (3, 0));
    assert_eq!(check_counts(&json, "three users"), (3, 0));
    // Each hop is a request of its own, as in k6.
    assert_eq!(json["totals"]["requests"], 6, "{out}");
    // A shared array is read-only, and made in init code only.
    let f = script(
        "shared-write",
        &base,
        "import { SharedArray } from 'k6/data';\nconst a = new SharedArray('a', () => [1, 2]);\nexport default function () { a[0] = 3; }\n",
    );
    let (code, json, out) = run(&f, "script-shared-write", &[]);
    assert_eq!(code, Some(0), "{out}");
    let (error, _) = script_error(&json);
    assert!(
        error.starts_with("TypeError: SharedArray `a` is read-only"),
        "{error}"
    );
}

#[test]
fn a_script_for_a_public_host_runs_against_a_local_stand_in_through_hosts() {
    // The stand-in answers with the Host header it got: the name, not the address.
    let addr = super::serve(|req, _| {
        hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(
            super::header(req, "host").to_owned(),
        )))
    });
    let f = script(
        "hosts",
        "",
        r#"
import http from 'k6/http';
import { check } from 'k6';
export const options = {
  iterations: 2,
  // Written for the public site; the command line points it elsewhere.
  hosts: { 'shop.example.com': '127.0.0.1:1' },
};
export default function () {
  const r = http.get('http://shop.example.com/items');
  check(r, { 'the name went as Host': (r) => r.body === 'shop.example.com' });
}
"#,
    );
    let mapping = format!("shop.example.com={addr}");
    let (code, json, out) = run(&f, "script-hosts", &["--hosts", &mapping]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(check_counts(&json, "the name went as Host"), (2, 0));
    // Without the command line's mapping, the options' is used (nothing listens there).
    let (code, json, out) = run(&f, "script-hosts-options", &[]);
    assert_eq!(code, Some(1), "{out}");
    // Every attempt failed to connect (a GET is retried: 2 iterations, 4 attempts each).
    assert_eq!(json["totals"]["failures"], 8, "{out}");
    assert_eq!(json["totals"]["requests"], 8, "{out}");
    assert!(out.contains("127.0.0.1:1"), "{out}");
    // The same flag points a --url test, and a bad mapping is refused before the run.
    let (out, json) = run_exported(
        "url-hosts",
        &[
            "run",
            "--url",
            "http://shop.example.com/x",
            "-i",
            "3",
            "--hosts",
            &mapping,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(json["totals"]["requests"], 3);
    let (out, _) = run_exported(
        "bad-hosts",
        &[
            "run",
            "--url",
            "http://shop.example.com/x",
            "--hosts",
            "shop.example.com=localhost",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("the address is an IP address, or ip:port"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn handle_summary_replaces_the_summary_and_writes_two_files_in_k6s_shape() {
    let t = target();
    let base = format!("http://{}", t.addr);
    let dir = std::env::temp_dir().join(format!("aiotest-it-{}-summary", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let f = script(
        "summary",
        &base,
        &r#"
import http from 'k6/http';
import { check, group } from 'k6';
export const options = {
  iterations: 4,
  thresholds: { http_req_duration: ['p(95)<5000'] },
  summaryTrendStats: ['avg', 'p(99.9)', 'count'],
};
export default function () {
  group('shop', () => {
    const r = http.get('{BASE}/x');
    check(r, { 'is 200': (r) => r.status === 200 });
  });
}
export function handleSummary(data) {
  const reqs = data.metrics.http_reqs.values.count;
  const checks = data.root_group.groups[0].checks[0];
  const ok = data.metrics.http_req_duration.thresholds['p(95)<5000'].ok;
  return {
    stdout: `requests: ${reqs}\n`,
    'DIR/summary.json': JSON.stringify(data),
    'DIR/short.txt': `${checks.path} ${checks.passes}/${checks.fails} ${ok} ${data.metrics.http_req_duration.contains}`,
  };
}
"#
        .replace("DIR", dir.to_str().unwrap()),
    );
    let (code, json, out) = run(&f, "script-summary", &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("requests: 4\n"), "{out}");
    // The default summary is replaced; the export is still written.
    assert!(!out.contains("Endpoint"), "{out}");
    assert_eq!(json["totals"]["requests"], 4);
    assert_eq!(
        std::fs::read_to_string(dir.join("short.txt")).unwrap(),
        "::shop::is 200 4/0 true time"
    );
    let data: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(data["metrics"]["iterations"]["type"], "counter");
    assert_eq!(data["metrics"]["checks"]["values"]["passes"], 4);
    // Trends have the figures summaryTrendStats names, and only those.
    let trend = data["metrics"]["iteration_duration"]["values"]
        .as_object()
        .unwrap();
    let mut stats: Vec<&str> = trend.keys().map(String::as_str).collect();
    stats.sort_unstable();
    assert_eq!(stats, ["avg", "count", "p(99.9)"], "{trend:?}");
    assert_eq!(trend["count"], 4.0);
    assert_eq!(data["options"]["summaryTrendStats"][1], "p(99.9)");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_script_over_two_workers_runs_setup_once_and_judges_the_merged_figures() {
    let t = target();
    let base = format!("http://{}", t.addr);
    let words = TempFile::with_extension("words", "txt", "alpha\nbeta\n");
    let words_name = words
        .path()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let f = script(
        "dist",
        &base,
        &r#"
import http from 'k6/http';
import { check } from 'k6';
import { SharedArray } from 'k6/data';

// Opened on the master; the workers get it in the plan.
const words = new SharedArray('words', () => open('WORDS').trim().split('\n'));

export const options = {
  vus: 4,
  iterations: 40,
  thresholds: { iterations: ['count==40'], checks: ['rate==1'], 'http_reqs{name:fetch}': ['count==40'] },
};

export function setup() {
  return { token: http.get('{BASE}/login').json('data.token') };
}

export default function (data) {
  const r = http.get(`{BASE}/w/${words[__ITER % words.length]}`, { tags: { name: 'fetch' } });
  check(r, { 'token travelled': () => data.token === 't-9' && r.status === 200 });
}

export function teardown(data) {
  http.post('{BASE}/echo', data.token);
}
"#
        .replace("WORDS", &words_name),
    );
    let (code, json, out) = super::run_file_over_two_workers(f.path(), "script-dist", &[]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(threshold_ok(&json), [true, true, true], "{out}");
    assert_eq!(check_counts(&json, "token travelled"), (40, 0));
    // Setup once, 40 iterations over both workers, teardown once: what the target served.
    assert_eq!(endpoint_counts(&json, &format!("{base}/login")), (1, 0));
    assert_eq!(json["totals"]["requests"], 42);
    assert_eq!(t.served.load(Ordering::Relaxed), 42);
    assert_eq!(t.echoed.lock().unwrap().as_slice(), ["POST - - t-9"]);
}

#[test]
fn stages_ramp_the_vus_up_and_down_and_the_run_ends() {
    let t = target();
    let base = format!("http://{}", t.addr);
    let f = script(
        "stages",
        &base,
        r#"
import http from 'k6/http';
import { sleep } from 'k6';
export const options = {
  stages: [
    { duration: '1s', target: 3 },
    { duration: '1s', target: 0 },
  ],
  thresholds: { vus: ['max==3'] },
};
export default function () {
  http.get('{BASE}/x');
  sleep(0.05);
}
"#,
    );
    let started = Instant::now();
    let (code, json, out) = run(&f, "script-stages", &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(started.elapsed() < Duration::from_secs(10), "{out}");
    assert_eq!(threshold_ok(&json), [true], "{out}");
    let requests = json["totals"]["requests"].as_u64().unwrap();
    // About 3 VU-seconds at a little over 50 ms an iteration.
    assert!((20..=80).contains(&requests), "{requests}");
    assert_eq!(requests, t.served.load(Ordering::Relaxed));
}

#[test]
fn cookies_persist_within_an_iteration_and_are_reset_between_them_unless_asked() {
    // `/login` sets a session cookie; `/me` answers with the cookies it got.
    let addr = super::serve(|req, _| {
        let mut r = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(
            super::header(req, "cookie").to_owned(),
        )));
        if req.uri.path() == "/login" {
            r.headers_mut().insert(
                "set-cookie",
                hyper::header::HeaderValue::from_static("sid=abc; Path=/"),
            );
        }
        r
    });
    let body = r#"
import http from 'k6/http';
import { check } from 'k6';
export const options = { iterations: 3, OPTION };
export default function () {
  const before = http.get('{BASE}/me').body;
  http.get('{BASE}/login');
  check(http.get('{BASE}/me'), { 'logged in': (r) => r.body === 'sid=abc' });
  check(null, { 'a fresh jar': () => before === '' });
}
"#;
    let base = format!("http://{addr}");
    let f = script("cookies", &base, &body.replace(", OPTION", ""));
    let (code, json, out) = run(&f, "script-cookies", &[]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(check_counts(&json, "logged in"), (3, 0));
    assert_eq!(check_counts(&json, "a fresh jar"), (3, 0));
    // With noCookiesReset, the second and third iterations start logged in.
    let f = script(
        "cookies-kept",
        &base,
        &body.replace("OPTION", "noCookiesReset: true"),
    );
    let (code, json, out) = run(&f, "script-cookies-kept", &[]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(check_counts(&json, "a fresh jar"), (1, 2));
}

#[test]
fn k6_execution_names_the_vu_and_scenario_and_refuses_what_it_lacks() {
    let t = target();
    let base = format!("http://{}", t.addr);
    let f = script(
        "execution",
        &base,
        r#"
import http from 'k6/http';
import { check } from 'k6';
import exec from 'k6/execution';
import { Counter } from 'k6/metrics';
export const options = {
  scenarios: { browse: { executor: 'per-vu-iterations', vus: 2, iterations: 3 } },
};
const numbered = new Counter('numbered');
export default function () {
  http.get('{BASE}/x');
  check(exec, {
    'names its scenario': (e) => e.scenario.name === 'browse',
    'knows its VU and iteration': (e) => e.vu.idInTest === __VU && e.vu.iterationInScenario === __ITER && __VU >= 1,
  });
  numbered.add(1, { n: String(exec.scenario.iterationInInstance) });
  if (__ITER === 2) {
    exec.scenario.iterationInTest;
  }
}
"#,
    );
    let (code, json, out) = run(&f, "script-execution", &[]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(check_counts(&json, "names its scenario"), (6, 0));
    assert_eq!(check_counts(&json, "knows its VU and iteration"), (6, 0));
    // The scenario's iterations in this process, numbered once each whichever VU ran it.
    let mut numbers: Vec<String> = json["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["name"] == "numbered" && !m["tags"].is_null())
        .map(|m| {
            assert_eq!(m["values"]["count"], 1.0, "{m}");
            m["tags"]["n"].as_str().unwrap().to_owned()
        })
        .collect();
    numbers.sort_unstable();
    assert_eq!(numbers, ["0", "1", "2", "3", "4", "5"]);
    let (error, count) = script_error(&json);
    assert_eq!(count, 2.0, "{out}");
    assert!(
        error.starts_with(
            "Error: k6/execution: scenario.iterationInTest is not supported by aiotest"
        ),
        "{error}"
    );
}

/// A raw HTTP/1.1 stand-in, a thread per connection (so one request may wait for others):
/// `answer(path and query, request head)` gives the status, extra header lines and body;
/// it counts every request it answered.
struct Raw {
    addr: std::net::SocketAddr,
    served: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

fn raw_server(answer: impl Fn(&str, &str) -> (u16, String, String) + Send + Sync + 'static) -> Raw {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let served = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (answer, count) = (std::sync::Arc::new(answer), std::sync::Arc::clone(&served));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let (answer, count) = (
                std::sync::Arc::clone(&answer),
                std::sync::Arc::clone(&count),
            );
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut out = stream;
                loop {
                    let mut head = String::new();
                    loop {
                        let mut line = String::new();
                        match reader.read_line(&mut line) {
                            Ok(0) | Err(_) => return,
                            Ok(_) if line == "\r\n" => break,
                            Ok(_) => head.push_str(&line),
                        }
                    }
                    let target = head.split(' ').nth(1).unwrap_or("/").to_owned();
                    let length: usize = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse().ok())?
                        })
                        .unwrap_or(0);
                    let mut body = vec![0; length];
                    if std::io::Read::read_exact(&mut reader, &mut body).is_err() {
                        return;
                    }
                    let (status, headers, text) = answer(&target, &head);
                    count.fetch_add(1, Ordering::Relaxed);
                    let reply = format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: {}\r\n{headers}\r\n{text}",
                        text.len()
                    );
                    if out.write_all(reply.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    Raw { addr, served }
}

/// The value of header `name` in a request head, or "".
fn head_value<'h>(head: &'h str, name: &str) -> &'h str {
    head.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
        .unwrap_or("")
}

#[test]
fn http_batch_sends_its_requests_side_by_side_and_answers_in_their_order() {
    // `/meet` answers `met` once four of them are in the server at once, `alone` after
    // a second of waiting for the others: only requests sent side by side meet.
    let waiting = std::sync::Arc::new((std::sync::Mutex::new(0u32), std::sync::Condvar::new()));
    let t = raw_server(move |target, _| {
        if !target.starts_with("/meet") {
            return (200, String::new(), format!("ok {target}"));
        }
        let (lock, cv) = &*waiting;
        let mut n = lock.lock().unwrap();
        *n += 1;
        cv.notify_all();
        let (mut n, _) = cv
            .wait_timeout_while(n, Duration::from_secs(1), |n| *n % 4 != 0)
            .unwrap();
        let met = *n % 4 == 0;
        if !met {
            *n -= 1; // gone: the next four meet afresh
        }
        (200, String::new(), if met { "met" } else { "alone" }.into())
    });
    let base = format!("http://{}", t.addr);
    let body = r#"
import http from 'k6/http';
import { check } from 'k6';
export const options = { iterations: 2, OPTIONS };
export default function () {
  const rs = http.batch([
    '{BASE}/meet?a',
    ['GET', '{BASE}/meet?b', null, { tags: { name: 'meet-b' } }],
    { method: 'GET', url: '{BASE}/meet?c' },
    { url: '{BASE}/meet?d' },
  ]);
  check(rs, {
    'four met': (rs) => rs.length === 4 && rs.every((r) => r.status === 200 && r.body === 'met'),
    'in their order': (rs) => rs.map((r) => r.url.split('?')[1]).join() === 'a,b,c,d',
  });
  const named = http.batch({ home: '{BASE}/x', form: ['POST', '{BASE}/y', { b: 1 }] });
  check(named, {
    'keyed as given': (o) => o.home.body === 'ok /x' && o.form.body === 'ok /y' && o.form.request.method === 'POST',
  });
}
"#;
    let f = script("batch", &base, &body.replace(", OPTIONS", ""));
    let (code, json, out) = run(&f, "script-batch", &[]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(check_counts(&json, "four met"), (2, 0));
    assert_eq!(check_counts(&json, "in their order"), (2, 0));
    assert_eq!(check_counts(&json, "keyed as given"), (2, 0));
    assert_eq!(endpoint_counts(&json, "meet-b"), (2, 0));
    assert_eq!(json["totals"]["requests"], 12, "{out}");
    assert_eq!(t.served.load(Ordering::Relaxed), 12);
    // Two at a time to one host: the four never meet.
    let f = script(
        "batch-per-host",
        &base,
        &body.replace("iterations: 2, OPTIONS", "iterations: 1, batchPerHost: 2"),
    );
    let (code, json, out) = run(&f, "script-batch-per-host", &[]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(check_counts(&json, "four met"), (0, 1));
    assert_eq!(check_counts(&json, "in their order"), (1, 0));
    assert_eq!(json["totals"]["requests"], 6, "{out}");
    // A batch that is not a list of requests says which one.
    let f = script(
        "batch-bad",
        &base,
        "import http from 'k6/http';\nexport default function () { http.batch([['GET', '{BASE}/x', null, { timeuot: 1 }]]); }\n",
    );
    let (_, json, _) = run(&f, "script-batch-bad", &[]);
    let (error, _) = script_error(&json);
    assert!(
        error.starts_with("Error: http.batch, request 0: params: unknown field `timeuot`"),
        "{error}"
    );
}

#[test]
fn the_cookie_jar_and_a_requests_own_cookies_work_as_k6_documents() {
    // `/set` sets two cookies (and `/set2` a third), `/me` answers with the cookies it got.
    let t = raw_server(|target, head| match target {
        "/set" => (
            200,
            "set-cookie: sid=abc; Path=/\r\nset-cookie: theme=dark; Path=/; HttpOnly\r\n".into(),
            String::new(),
        ),
        "/set2" => (200, "set-cookie: late=1; Path=/\r\n".into(), String::new()),
        _ => (200, String::new(), head_value(head, "cookie").to_owned()),
    });
    let base = format!("http://{}", t.addr);
    let f = script(
        "jar",
        &base,
        r#"
import http from 'k6/http';
import { check } from 'k6';
export default function () {
  const jar = http.cookieJar();
  const r = http.get('{BASE}/set');
  check(r, {
    'res.cookies': (r) => r.cookies.sid[0].value === 'abc' && r.cookies.theme[0].http_only === true && r.cookies.sid[0].path === '/',
  });
  check(jar.cookiesForURL('{BASE}/any'), {
    'the jar holds them': (c) => c.sid[0] === 'abc' && c.theme[0] === 'dark',
  });
  jar.set('{BASE}/', 'extra', 'x1');
  check(http.get('{BASE}/me'), { 'jar.set reaches the target': (r) => r.body === 'sid=abc; theme=dark; extra=x1' });
  jar.delete('{BASE}/', 'theme');
  check(http.get('{BASE}/me', { cookies: { sid: 'zzz', one: 'off' } }), {
    "the jar's cookie wins unless replaced": (r) => r.body === 'one=off; sid=abc; extra=x1',
  });
  check(http.get('{BASE}/me', { cookies: { sid: { value: 'zzz', replace: true } }, jar: jar }), {
    'replace: true wins': (r) => r.body === 'sid=zzz; extra=x1',
  });
  check(http.get('{BASE}/me'), { 'request cookies are not kept': (r) => r.body === 'sid=abc; extra=x1' });
  jar.clear('{BASE}/');
  check(http.get('{BASE}/me'), { 'cleared': (r) => r.body === '' });
  http.batch(['{BASE}/set2']);
  check(http.get('{BASE}/me'), { "a batch's cookies reach the jar": (r) => r.body === 'late=1' });
  let refused = '';
  try { new http.CookieJar(); } catch (e) { refused = String(e); }
  check(refused, { 'a jar of its own is refused': (m) => m.includes('new http.CookieJar() is not supported') });
}
"#,
    );
    let (code, json, out) = run(&f, "script-jar", &[]);
    assert_eq!(code, Some(0), "{out}");
    for name in [
        "res.cookies",
        "the jar holds them",
        "jar.set reaches the target",
        "the jar's cookie wins unless replaced",
        "replace: true wins",
        "request cookies are not kept",
        "cleared",
        "a batch's cookies reach the jar",
        "a jar of its own is refused",
    ] {
        assert_eq!(check_counts(&json, name), (1, 0), "{name}: {out}");
    }
    assert_eq!(json["totals"]["requests"], t.served.load(Ordering::Relaxed));
}

#[test]
fn timeout_and_redirects_params_and_the_url_a_redirect_ends_at() {
    let t = raw_server(|target, _| match target {
        "/r" => (302, "location: /final\r\n".into(), String::new()),
        "/hang" => {
            std::thread::sleep(Duration::from_secs(3));
            (200, String::new(), String::new())
        }
        other => (200, String::new(), other.to_owned()),
    });
    let base = format!("http://{}", t.addr);
    let f = script(
        "params",
        &base,
        r#"
import http from 'k6/http';
import { check } from 'k6';
export default function () {
  check(http.get('{BASE}/r'), {
    'followed to its end': (r) => r.status === 200 && r.url === '{BASE}/final' && r.body === '/final',
  });
  check(http.get('{BASE}/r', { redirects: 0 }), {
    'not followed': (r) => r.status === 302 && r.url === '{BASE}/r' && r.headers.Location === '/final',
  });
  const started = Date.now();
  const late = http.get('{BASE}/hang', { timeout: '300ms' });
  const took = Date.now() - started;
  check(late, {
    'timed out': (r) => r.status === 0 && r.error_code === 1050 && took >= 290 && took < 2500,
  });
  check(http.get('{BASE}/quick', { timeout: 2000 }), { 'a number is ms': (r) => r.status === 200 });
}
"#,
    );
    let (code, json, out) = run(&f, "script-params", &["--max-retries", "0"]);
    assert_eq!(code, Some(0), "{out}");
    for name in [
        "followed to its end",
        "not followed",
        "timed out",
        "a number is ms",
    ] {
        assert_eq!(check_counts(&json, name), (1, 0), "{name}: {out}");
    }
    // /r twice, /final once, /hang once (timed out), /quick once.
    assert_eq!(json["totals"]["requests"], 5, "{out}");
}

#[test]
fn test_abort_ends_the_run_for_every_vu_runs_teardown_and_exits_108() {
    let t = target();
    let base = format!("http://{}", t.addr);
    let f = script(
        "abort-test",
        &base,
        r#"
import http from 'k6/http';
import { sleep } from 'k6';
import exec from 'k6/execution';
export const options = { vus: 4, duration: '30s' };
export default function () {
  http.get('{BASE}/x');
  if (__VU === 2 && __ITER === 3) {
    exec.test.abort('stock ran out');
    http.get('{BASE}/never');
  }
  sleep(0.05);
}
export function teardown() { http.get('{BASE}/teardown'); }
"#,
    );
    let started = Instant::now();
    let (code, json, out) = run(&f, "script-abort-test", &[]);
    assert_eq!(code, Some(108), "{out}");
    // Stopped within a few intervals, not after the 30 s asked for.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert!(
        out.contains("the script aborted the run (test.abort(): stock ran out; exit 108)"),
        "{out}"
    );
    let notes = json["notes"].to_string();
    assert!(notes.contains("test.abort() (stock ran out)"), "{notes}");
    let never = format!("{base}/never");
    assert!(
        !json["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == never.as_str()),
        "nothing after test.abort() was sent"
    );
    assert_eq!(endpoint_counts(&json, &format!("{base}/teardown")), (1, 0));
    let aborts = json["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "script_aborts" && m["tags"]["reason"] == "stock ran out")
        .unwrap_or_else(|| panic!("no script_aborts: {json}"));
    assert_eq!(aborts["values"]["count"], 1.0);
    // Not an error of the script.
    assert!(
        !json["metrics"].to_string().contains("script_errors"),
        "{}",
        json["metrics"]
    );
    assert_eq!(json["totals"]["requests"], t.served.load(Ordering::Relaxed));
    // Over two workers: the worker whose VU called it ends the run for both.
    let started = Instant::now();
    let (code, json, out) = super::run_file_over_two_workers(f.path(), "script-abort-dist", &[]);
    assert_eq!(code, Some(108), "{out}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert!(
        json["notes"]
            .to_string()
            .contains("test.abort() (stock ran out)"),
        "{out}"
    );
    assert_eq!(endpoint_counts(&json, &format!("{base}/teardown")), (1, 0));
}

#[test]
fn a_script_imports_local_files_by_relative_path_alone_and_over_two_workers() {
    let t = target();
    let base = format!("http://{}", t.addr);
    // main.js imports ./lib/pages.js, which imports ../shared.js: paths relative to the
    // file that imports.
    let dir = std::env::temp_dir().join(format!("aiotest-it-{}-imports", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("lib")).unwrap();
    std::fs::write(
        dir.join("shared.js"),
        "export const PREFIX = '/page';\nexport function pick(i) { return ['a', 'b'][i % 2]; }\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("lib/pages.js"),
        "import { PREFIX, pick } from '../shared.js';\nexport function path(i) { return `${PREFIX}/${pick(i)}`; }\n",
    )
    .unwrap();
    let main = dir.join("main.js");
    std::fs::write(
        &main,
        r#"
import http from 'k6/http';
import { check } from 'k6';
import { path } from './lib/pages.js';
export const options = { vus: 2, iterations: 10 };
export default function () {
  const r = http.get(`{BASE}${path(__ITER)}`, { tags: { name: 'page' } });
  check(r, { 'a page': (r) => r.status === 200 });
}
"#
        .replace("{BASE}", &base),
    )
    .unwrap();
    let (out, json) = run_exported("script-imports", &["run", main.to_str().unwrap()]);
    let text = super::text(&out.stdout) + &super::text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert_eq!(check_counts(&json, "a page"), (10, 0));
    // The workers read none of the files: the master ships them in the plan.
    let (code, json, text) = super::run_file_over_two_workers(&main, "script-imports-dist", &[]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(check_counts(&json, "a page"), (10, 0));
    assert_eq!(json["totals"]["requests"], 10);
    // A file that is not there is an error naming it, before anything runs.
    std::fs::write(
        &main,
        "import { x } from './nowhere.js';\nexport default function () {}\n",
    )
    .unwrap();
    let (out, _) = run_exported("script-imports-missing", &["run", main.to_str().unwrap()]);
    let text = super::text(&out.stdout) + &super::text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("nowhere.js"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
