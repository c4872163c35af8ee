//! A user's own values: captured from its responses, used by its later requests.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::Full;

/// What the shop target saw.
#[derive(Default)]
struct Seen {
    logins: AtomicU64,
    /// `GET /items/{id}` with the id and owner that belong to its token.
    right: AtomicU64,
    /// `GET /items/{id}` with anything else.
    wrong: AtomicU64,
}

/// `POST /login` gives a new token `tok-K`; `GET /items` with `Bearer tok-K` lists one
/// item, id `7K`, and says its owner `K` in an `x-owner` header; `GET /items/{id}` checks
/// that the id and the `x-owner` header sent belong to the token sent.
fn shop() -> (std::net::SocketAddr, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let s = Arc::clone(&seen);
    (super::serve(move |req, _| answer(req, &s)), seen)
}

fn answer(req: &http::request::Parts, s: &Seen) -> hyper::Response<Full<Bytes>> {
    let header = |name: &str| super::header(req, name);
    let owner: Option<u64> = header("authorization")
        .strip_prefix("Bearer tok-")
        .and_then(|k| k.parse().ok());
    let path = req.uri.path().to_owned();
    let mut response = hyper::Response::builder();
    let body = match (req.method.as_str(), path.as_str(), owner) {
        ("POST", "/login", _) => {
            let k = s.logins.fetch_add(1, Ordering::Relaxed) + 1;
            format!("{{\"token\": \"tok-{k}\"}}")
        }
        ("GET", "/items", Some(k)) => {
            response = response.header("x-owner", k.to_string());
            format!("{{\"items\": [{{\"id\": {}}}]}}", 7 * k)
        }
        ("GET", p, Some(k)) if p.starts_with("/items/") => {
            let id_ok = p["/items/".len()..] == (7 * k).to_string();
            let owner_ok = header("x-owner-seen") == k.to_string();
            if id_ok && owner_ok {
                s.right.fetch_add(1, Ordering::Relaxed);
            } else {
                s.wrong.fetch_add(1, Ordering::Relaxed);
            }
            "{}".to_owned()
        }
        _ => {
            response = response.status(401);
            "{}".to_owned()
        }
    };
    response.body(Full::new(Bytes::from(body))).unwrap()
}

#[test]
fn each_user_sends_the_values_its_own_responses_gave_it() {
    let (addr, seen) = shop();
    let toml = format!(
        r#"host = "http://{addr}"
[load]
users = 4
run_time = "2s"

[[users]]
name = "shopper"
wait_time = 0.005

[[users.tasks]]
name = "login"
method = "POST"
path = "/login"
capture = {{ token = "/token" }}

[[users.tasks]]
name = "list"
path = "/items"
headers = {{ authorization = "Bearer {{{{vars.token}}}}" }}
capture = {{ item = "/items/0/id", owner = {{ header = "x-owner" }} }}

[[users.tasks]]
path = "/items/{{{{vars.item}}}}"
headers = {{ authorization = "Bearer {{{{vars.token}}}}", x-owner-seen = "{{{{vars.owner}}}}" }}
"#
    );
    let file = super::TempFile::new("vars", &toml);
    let json = super::run_file(file.path(), "vars", &[]);
    let right = seen.right.load(Ordering::Relaxed);
    assert!(right > 20, "{right}");
    assert_eq!(
        seen.wrong.load(Ordering::Relaxed),
        0,
        "no user sent another's values"
    );
    // Named by its template: one row, whatever the values.
    assert_eq!(
        super::endpoint_counts(&json, "/items/{{vars.item}}"),
        (right, 0)
    );
    assert_eq!(json["totals"]["failures"].as_u64().unwrap(), 0, "{json}");
}

#[test]
fn a_value_not_captured_yet_fails_the_request_unsent_and_a_capture_that_finds_nothing_fails() {
    let (addr, seen) = shop();
    // The item is asked for before anything captured it, and the login's capture points
    // at nothing.
    let toml = format!(
        r#"host = "http://{addr}"
[load]
users = 1
run_time = "1s"

[[users]]
name = "early"
wait_time = 0.01

[[users.tasks]]
path = "/items/{{{{vars.item}}}}"

[[users.tasks]]
method = "POST"
path = "/login"
capture = {{ item = "/no/such/field" }}
"#
    );
    let file = super::TempFile::new("vars-miss", &toml);
    let json = super::run_file(file.path(), "vars-miss", &["--allow-failures"]);
    let rows = json["endpoints"].as_array().unwrap();
    let item = rows
        .iter()
        .find(|e| e["name"] == "/items/{{vars.item}}")
        .unwrap();
    let requests = item["requests"].as_u64().unwrap();
    assert!(requests > 5, "{requests}");
    assert_eq!(
        item["failures"].as_u64().unwrap(),
        requests,
        "never sendable"
    );
    assert_eq!(
        seen.right.load(Ordering::Relaxed) + seen.wrong.load(Ordering::Relaxed),
        0,
        "and never sent"
    );
    let login = rows.iter().find(|e| e["name"] == "/login").unwrap();
    assert_eq!(
        login["failures"].as_u64().unwrap(),
        login["requests"].as_u64().unwrap(),
        "a capture that finds nothing fails its request"
    );
    let text = json.to_string();
    assert!(text.contains("is not captured yet by this user"), "{text}");
    assert!(text.contains("nothing at /no/such/field"), "{text}");
}

#[test]
fn named_checks_count_per_name_and_fail_their_request_only_when_asked() {
    let (addr, seen) = shop();
    let toml = format!(
        r#"host = "http://{addr}"
thresholds = ["checks{{check=logged in}}>=100%", "checks{{check=json content type}}<1%"]
[load]
users = 3
run_time = "1500ms"

[[users]]
name = "checker"
wait_time = 0.005

[[users.tasks]]
name = "login"
method = "POST"
path = "/login"
capture = {{ token = {{ regex = '"token": "(tok-\d+)"' }} }}
checks = [
  {{ name = "logged in", status = 200 }},
  {{ name = "has a token", json = "/token" }},
  {{ name = "first token", json = "/token", equals = "tok-1" }},
]

[[users.tasks]]
name = "list"
path = "/items"
headers = {{ authorization = "Bearer {{{{vars.token}}}}" }}
capture = {{ item = "/items/0/id", owner = {{ header = "x-owner" }} }}
checks = [
  {{ name = "owner header", header = "x-owner" }},
  {{ name = "json content type", header = "content-type", equals = "application/json" }},
]

[[users.tasks]]
name = "fetch"
path = "/items/{{{{vars.item}}}}"
headers = {{ authorization = "Bearer {{{{vars.token}}}}", x-owner-seen = "{{{{vars.owner}}}}" }}
checks = [{{ name = "empty object", regex = '^\{{\}}$', fail_request = true }}]

[[users.tasks]]
name = "strict"
path = "/items"
headers = {{ authorization = "Bearer {{{{vars.token}}}}" }}
checks = [{{ name = "says admin", body_contains = "admin", fail_request = true }}]
"#
    );
    let file = super::TempFile::new("checks", &toml);
    let json = super::run_file(file.path(), "checks", &["--allow-failures"]);
    let logins = seen.logins.load(Ordering::Relaxed);
    assert!(logins > 5, "{logins}");
    let check = |name: &str| super::check_counts(&json, name);
    let endpoint = |name: &str| super::endpoint_counts(&json, name);
    // Every login passed its checks; exactly one response had the first token.
    assert_eq!(check("logged in"), (logins, 0));
    assert_eq!(check("has a token"), (logins, 0));
    assert_eq!(check("first token"), (1, logins - 1));
    // The regex capture gave each user its token: every fetch was right.
    let (fetches, fetch_failures) = endpoint("fetch");
    assert_eq!(seen.wrong.load(Ordering::Relaxed), 0);
    assert_eq!(seen.right.load(Ordering::Relaxed), fetches);
    assert_eq!((check("empty object"), fetch_failures), ((fetches, 0), 0));
    // A failing check counts, and fails its request only when asked to.
    let (lists, list_failures) = endpoint("list");
    assert_eq!(check("owner header"), (lists, 0));
    assert_eq!(check("json content type"), (0, lists));
    assert_eq!(list_failures, 0, "a named check alone fails no request");
    let (stricts, strict_failures) = endpoint("strict");
    assert_eq!(check("says admin"), (0, stricts));
    assert_eq!(strict_failures, stricts, "fail_request = true fails it");
    assert!(json.to_string().contains("check `says admin` failed"));
    assert_eq!(
        super::threshold_verdicts(&json),
        [true, true],
        "{}",
        json["thresholds"]
    );
}
