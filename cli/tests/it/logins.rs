//! A scenario file with a k6 script's power, end to end: each user logs in with its own
//! row of a CSV of 100 accounts, captures a token and an item id, uses them, checks the
//! JSON it gets, and the run has thresholds on a check and on a request, setup and
//! teardown. The target verifies every request; run locally and over two workers.

use std::collections::{HashMap, HashSet};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use aiotest_coordinator::testutil::RedisServer;
use bytes::Bytes;
use http_body_util::Full;

const ACCOUNTS: u64 = 100;

/// What the bank target saw.
#[derive(Default)]
struct Seen {
    served: AtomicU64,
    logins: AtomicU64,
    /// Logins with a password that is not the account's.
    bad_logins: AtomicU64,
    /// The accounts logged in to, and the tokens issued.
    accounts: Mutex<HashSet<u64>>,
    tokens: Mutex<HashMap<String, u64>>,
    /// Item fetches with the token's own item, and with anything else.
    right: AtomicU64,
    wrong: AtomicU64,
    /// Teardown's call, with setup's admin token.
    teardowns: AtomicU64,
    /// Requests of the task the runs leave out with --exclude-tags.
    excluded: AtomicU64,
}

impl Seen {
    fn n(&self, a: &AtomicU64) -> u64 {
        a.load(Ordering::Relaxed)
    }
}

/// `POST /admin/login` gives the admin token `adm-7`; `POST /login` takes `{"username":
/// "userK", "password": "pw-K"}` and gives a new token of account K; `GET /items` with it
/// lists the account's one item, id `1000+K`; `GET /items/ID` answers `{"id", "owner"}`
/// when ID is the token's account's item; `DELETE /admin/sessions` wants the admin token.
fn bank() -> (std::net::SocketAddr, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let s = Arc::clone(&seen);
    (super::serve(move |req, body| answer(req, body, &s)), seen)
}

fn answer(req: &http::request::Parts, body: &[u8], s: &Seen) -> hyper::Response<Full<Bytes>> {
    s.served.fetch_add(1, Ordering::Relaxed);
    let header = |name: &str| super::header(req, name);
    let account = header("authorization")
        .strip_prefix("Bearer ")
        .and_then(|t| s.tokens.lock().unwrap().get(t).copied());
    let json = |status: u16, body: String| {
        hyper::Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap()
    };
    let path = req.uri.path();
    match (req.method.as_str(), path, account) {
        ("GET", "/admin/report", _) => {
            s.excluded.fetch_add(1, Ordering::Relaxed);
            json(200, "{}".into())
        }
        ("POST", "/admin/login", _) => json(200, r#"{"admin": "adm-7"}"#.into()),
        ("DELETE", "/admin/sessions", _) if header("x-admin") == "adm-7" => {
            s.teardowns.fetch_add(1, Ordering::Relaxed);
            json(200, "{}".into())
        }
        ("POST", "/login", _) => {
            let login: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
            let k: Option<u64> = login["username"]
                .as_str()
                .and_then(|u| u.strip_prefix("user"))
                .and_then(|k| k.parse().ok());
            match k {
                Some(k) if login["password"] == format!("pw-{k}") => {
                    let n = s.logins.fetch_add(1, Ordering::Relaxed);
                    s.accounts.lock().unwrap().insert(k);
                    let token = format!("tok-{k}-{n}");
                    s.tokens.lock().unwrap().insert(token.clone(), k);
                    json(
                        200,
                        format!(
                            r#"{{"token": "{token}", "user": {{"name": "user{k}", "id": {k}}}}}"#
                        ),
                    )
                }
                _ => {
                    s.bad_logins.fetch_add(1, Ordering::Relaxed);
                    json(401, "{}".into())
                }
            }
        }
        ("GET", "/items", Some(k)) => {
            json(200, format!(r#"{{"items": [{{"id": {}}}]}}"#, 1000 + k))
        }
        ("GET", p, Some(k)) if p.starts_with("/items/") => {
            if p["/items/".len()..] == (1000 + k).to_string() {
                s.right.fetch_add(1, Ordering::Relaxed);
                json(
                    200,
                    format!(r#"{{"id": {}, "owner": "user{k}"}}"#, 1000 + k),
                )
            } else {
                s.wrong.fetch_add(1, Ordering::Relaxed);
                json(403, "{}".into())
            }
        }
        _ => json(401, "{}".into()),
    }
}

/// The scenario file, and its CSV of accounts beside it (removed when dropped).
struct Files {
    scenario: super::TempFile,
    csv: std::path::PathBuf,
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.csv);
    }
}

fn files(addr: std::net::SocketAddr, name: &str) -> Files {
    let csv_name = format!("aiotest-it-{}-{name}.csv", std::process::id());
    let csv = std::env::temp_dir().join(&csv_name);
    let mut rows = String::from("username,password\n");
    for k in 0..ACCOUNTS {
        rows.push_str(&format!("user{k},pw-{k}\n"));
    }
    std::fs::write(&csv, rows).unwrap();
    let toml = format!(
        r#"host = "http://{addr}"
thresholds = ["checks{{check=token issued}}>=100%", "p95{{name=item}}<2s", "failures{{name=login}}<1%"]

[load]
users = {ACCOUNTS}
spawn_rate = 400
run_time = "3s"

# One account per user, never shared.
[[data]]
file = "{csv_name}"
strategy = "unique"

[[setup]]
method = "POST"
path = "/admin/login"
capture = {{ admin = "/admin" }}

[[teardown]]
method = "DELETE"
path = "/admin/sessions"
headers = {{ x-admin = "{{{{setup.admin}}}}" }}

[[users]]
name = "customer"
wait_time = 0.05

[[users.tasks]]
name = "login"
method = "POST"
path = "/login"
json = {{ username = "{{{{data.username}}}}", password = "{{{{data.password}}}}" }}
capture = {{ token = "/token" }}
checks = [
  {{ name = "token issued", json = "/token" }},
  {{ name = "user has an id", json = "/user/id" }},
  {{ name = "greets its own user", json = "/user/name", equals = "{{{{data.username}}}}" }},
  {{ name = "answers JSON", header = "content-type", equals = "application/json" }},
]

[[users.tasks]]
name = "items"
path = "/items"
headers = {{ authorization = "Bearer {{{{vars.token}}}}" }}
capture = {{ item = "/items/0/id" }}

[[users.tasks]]
name = "item"
path = "/items/{{{{vars.item}}}}"
headers = {{ authorization = "Bearer {{{{vars.token}}}}" }}
checks = [{{ name = "item is the user's", json = "/owner", equals = "{{{{data.username}}}}" }}]

# Left out by --exclude-tags slow (on the workers too).
[[users.tasks]]
name = "report"
path = "/admin/report"
tags = ["slow", "admin"]
"#
    );
    Files {
        scenario: super::TempFile::new(name, &toml),
        csv,
    }
}

/// What every run of the file must show, from the target's side and the summary's.
fn verify(seen: &Seen, json: &serde_json::Value) {
    let logins = seen.n(&seen.logins);
    let accounts = seen.accounts.lock().unwrap().len() as u64;
    assert_eq!(
        accounts, ACCOUNTS,
        "each of the 100 users logged in with its own row: no row twice, none left out"
    );
    assert_eq!(
        seen.n(&seen.bad_logins),
        0,
        "every password matched its user"
    );
    assert!(logins >= 2 * ACCOUNTS, "{logins}");
    let right = seen.n(&seen.right);
    assert_eq!(seen.n(&seen.wrong), 0, "every item id was the user's own");
    assert!(right >= ACCOUNTS, "{right}");
    assert_eq!(
        seen.n(&seen.teardowns),
        1,
        "teardown ran once, with setup's token"
    );
    assert_eq!(
        seen.n(&seen.excluded),
        0,
        "--exclude-tags left the report out"
    );
    let check = |name: &str| super::check_counts(json, name);
    assert_eq!(check("token issued"), (logins, 0));
    assert_eq!(check("user has an id"), (logins, 0));
    assert_eq!(check("answers JSON"), (logins, 0));
    assert_eq!(check("greets its own user"), (logins, 0));
    assert_eq!(check("item is the user's"), (right, 0));
    assert_eq!(
        json["totals"]["requests"].as_u64().unwrap(),
        seen.n(&seen.served),
        "the summary counts what the target served, setup and teardown included"
    );
    assert_eq!(json["totals"]["failures"].as_u64().unwrap(), 0, "{json}");
    assert_eq!(
        super::threshold_verdicts(json),
        [true, true, true],
        "{}",
        json["thresholds"]
    );
}

#[test]
fn users_log_in_with_their_own_csv_rows_and_use_what_they_captured() {
    let (addr, seen) = bank();
    let f = files(addr, "logins-local");
    let json = super::run_file(
        f.scenario.path(),
        "logins-local",
        &["--exclude-tags", "slow"],
    );
    verify(&seen, &json);
}

#[test]
fn over_two_workers_every_user_still_has_its_own_row() {
    let redis = RedisServer::start().unwrap();
    let (addr, seen) = bank();
    let f = files(addr, "logins-dist");
    let redis_url = redis.url();
    let meet = ["--redis", redis_url.as_str(), "--run-id", "logins"];
    // The workers run elsewhere: no files of their own, everything comes in the plan.
    let workers: Vec<super::Proc> = (0..2)
        .map(|_| {
            super::Proc(
                Command::new(env!("CARGO_BIN_EXE_aiotest"))
                    .args([&["run", "--worker", "-q"][..], &meet].concat())
                    .current_dir("/")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap(),
            )
        })
        .collect();
    let export = std::env::temp_dir().join(format!(
        "aiotest-it-{}-logins-dist.json",
        std::process::id()
    ));
    let out = Command::new(env!("CARGO_BIN_EXE_aiotest"))
        .args(
            [
                &[
                    "run",
                    f.scenario.path().to_str().unwrap(),
                    "--master",
                    "--expect-workers",
                    "2",
                    "--worker-wait",
                    "30s",
                    "-q",
                    "--summary-export",
                    export.to_str().unwrap(),
                    "--exclude-tags",
                    "slow",
                ][..],
                &meet,
            ]
            .concat(),
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", super::text(&out.stderr));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&export).unwrap()).unwrap();
    let _ = std::fs::remove_file(&export);
    drop(workers);
    verify(&seen, &json);
}
