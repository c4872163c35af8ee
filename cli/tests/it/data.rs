//! `[[data]]` files and their strategies, `{{builtin.iteration}}`, and tags, seen by the
//! target: `/echo` logs each request's `x-api-key` header and body.

use std::process::Command;

/// A file in the temporary folder, removed when dropped.
struct Data(std::path::PathBuf);

impl Data {
    fn new(name: &str, text: &str) -> (Self, String) {
        let file = format!("aiotest-it-{}-{name}", std::process::id());
        let path = std::env::temp_dir().join(&file);
        std::fs::write(&path, text).unwrap();
        (Data(path), file)
    }
}

impl Drop for Data {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The logged `(key, body)` of every request to `/echo`, in arrival order.
fn echoed(t: &super::Target) -> Vec<(String, String)> {
    t.echoed
        .lock()
        .unwrap()
        .iter()
        .map(|line| {
            let mut parts = line.splitn(4, ' ');
            let _method = parts.next();
            let key = parts.next().unwrap_or_default().to_owned();
            let _type = parts.next();
            (key, parts.next().unwrap_or_default().to_owned())
        })
        .collect()
}

/// A file of `users` users sending two tasks an iteration to `/echo`, with the key
/// `{{data.key}}` and the body `{{builtin.iteration}}`.
fn echo_file(t: &super::Target, name: &str, data: &str, users: u32) -> super::TempFile {
    let toml = format!(
        r#"host = "http://{}"
[load]
users = {users}
run_time = "1s"

{data}

[[users]]
name = "u"
wait_time = 0.02

[[users.tasks]]
name = "first"
method = "POST"
path = "/echo"
headers = {{ x-api-key = "{{{{data.key}}}}" }}
body = "{{{{builtin.iteration}}}}"

[[users.tasks]]
name = "second"
method = "POST"
path = "/echo"
headers = {{ x-api-key = "{{{{data.key}}}}" }}
body = "{{{{builtin.iteration}}}}"
"#,
        t.addr
    );
    super::TempFile::new(name, &toml)
}

#[test]
fn round_robin_gives_each_iteration_the_next_row_and_iterations_count_from_zero() {
    let t = super::target();
    let (_csv, csv) = Data::new("rr.csv", "key\nk0\nk1\nk2\n");
    let data = format!("[[data]]\nfile = \"{csv}\"\nstrategy = \"round_robin\"");
    let file = echo_file(&t, "rr", &data, 1);
    super::run_file(file.path(), "rr", &[]);
    let seen = echoed(&t);
    assert!(seen.len() >= 10, "{seen:?}");
    // Both tasks of iteration i carry iteration i and row i mod 3 (the last iteration
    // may have been cut after its first task).
    for (n, (key, body)) in seen.iter().enumerate() {
        let i = n / 2;
        assert_eq!(body, &i.to_string(), "request {n}: {seen:?}");
        assert_eq!(key, &format!("k{}", i % 3), "request {n}: {seen:?}");
    }
}

#[test]
fn random_rows_change_between_iterations_and_stay_within_one() {
    let t = super::target();
    let rows: String = (0..10)
        .map(|i| format!("{{\"key\": \"k{i}\"}}\n"))
        .collect();
    let (_jsonl, jsonl) = Data::new("random.jsonl", &rows);
    let data = format!("[[data]]\nfile = \"{jsonl}\"\nstrategy = \"random\"");
    let file = echo_file(&t, "random", &data, 1);
    super::run_file(file.path(), "random", &[]);
    let seen = echoed(&t);
    assert!(seen.len() >= 10, "{seen:?}");
    let pairs: Vec<_> = seen.chunks_exact(2).collect();
    for p in &pairs {
        assert_eq!(p[0], p[1], "one row for a whole iteration: {seen:?}");
    }
    let distinct: std::collections::HashSet<_> = seen.iter().map(|(k, _)| k).collect();
    assert!(distinct.len() > 1, "{seen:?}");
    assert!(distinct.iter().all(|k| k.starts_with('k')), "{seen:?}");
}

#[test]
fn unique_rows_run_out_with_a_clear_failure_or_wrap_when_asked() {
    let t = super::target();
    let (_csv, csv) = Data::new("unique.csv", "key\na\nb\n");
    // Three users, two rows: one user has none, and its requests fail unsent.
    let data = format!("[[data]]\nfile = \"{csv}\"\nstrategy = \"unique\"");
    let file = echo_file(&t, "unique", &data, 3);
    let json = super::run_file(file.path(), "unique", &["--allow-failures"]);
    let seen = echoed(&t);
    let keys: std::collections::BTreeSet<_> = seen.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["a", "b"].into(), "each row went to one user");
    let failures = json["totals"]["failures"].as_u64().unwrap();
    assert!(failures > 5, "{json}");
    assert_eq!(
        json["totals"]["requests"].as_u64().unwrap() - failures,
        seen.len() as u64,
        "what failed was never sent"
    );
    assert!(
        json.to_string()
            .contains("all 2 rows are taken, one per user (strategy unique)"),
        "{json}"
    );
    let t = super::target();
    let data =
        format!("[[data]]\nfile = \"{csv}\"\nstrategy = \"unique\"\non_exhausted = \"wrap\"");
    let file = echo_file(&t, "wrap", &data, 3);
    let json = super::run_file(file.path(), "wrap", &[]);
    assert_eq!(json["totals"]["failures"].as_u64().unwrap(), 0, "{json}");
    let keys: std::collections::BTreeSet<_> = echoed(&t).into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, ["a".to_owned(), "b".to_owned()].into());
}

#[test]
fn tags_pick_tasks_and_thresholds_select_requests_by_tag() {
    let t = super::target();
    let toml = format!(
        r#"host = "http://{}"
[load]
users = 1
run_time = "1s"

[[users]]
name = "u"
wait_time = 0.02

[[users.tasks]]
name = "browse"
method = "POST"
path = "/echo"
headers = {{ x-api-key = "browse" }}
tags = ["read"]

[[users.tasks]]
name = "buy"
method = "POST"
path = "/echo"
headers = {{ x-api-key = "buy" }}
tags = ["write", "slow-path"]

[[users.tasks]]
name = "home"
method = "POST"
path = "/echo"
headers = {{ x-api-key = "home" }}
"#,
        t.addr
    );
    let file = super::TempFile::new("tags", &toml);
    let keys = |t: &super::Target| -> std::collections::BTreeSet<String> {
        let k = echoed(t).into_iter().map(|(k, _)| k).collect();
        t.echoed.lock().unwrap().clear();
        k
    };
    let json = super::run_file(
        file.path(),
        "tags",
        &[
            "--tags",
            "read,write",
            "--threshold",
            "requests{tag=write}>0",
        ],
    );
    assert_eq!(keys(&t), ["browse".to_owned(), "buy".to_owned()].into());
    let threshold = &json["thresholds"][0];
    assert_eq!(threshold["ok"], true, "{json}");
    let buys = json["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "buy")
        .unwrap()["requests"]
        .clone();
    assert_eq!(
        threshold["matched"], buys,
        "the tag selects buy's requests only"
    );
    super::run_file(file.path(), "tags", &["--exclude-tags", "slow-path"]);
    assert_eq!(keys(&t), ["browse".to_owned(), "home".to_owned()].into());
    // Mistakes are refused before the run: nothing is sent.
    let served = t.served.load(std::sync::atomic::Ordering::Relaxed);
    let refused = |args: &[&str], why: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_aiotest"))
            .args([&["run", file.path().to_str().unwrap(), "-q"][..], args].concat())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = super::text(&out.stderr);
        assert!(err.contains(why), "{args:?}: {err}");
    };
    refused(
        &["--tags", "nothing"],
        "no task is left to run: --tags nothing leave no user type a task",
    );
    refused(
        &["--threshold", "p95{tag=nope}<1s"],
        "threshold `p95{tag=nope}<1s`: no request of this test has the tag `nope`; the tags are: read, slow-path, write",
    );
    refused(
        &["--tags", "a b"],
        "`a b`: a tag is letters, digits, _, - and .",
    );
    assert_eq!(t.served.load(std::sync::atomic::Ordering::Relaxed), served);
}

#[test]
fn a_master_refuses_data_files_too_big_to_ship_before_touching_redis() {
    let t = super::target();
    // 17 MiB of rows: past the 16 MiB a plan carries.
    let row = format!("{}\n", "x".repeat(1023));
    let (_csv, csv) = Data::new("big.csv", &format!("key\n{}", row.repeat(17 * 1024)));
    let data = format!("[[data]]\nfile = \"{csv}\"\nstrategy = \"round_robin\"");
    let file = echo_file(&t, "big", &data, 1);
    let out = Command::new(env!("CARGO_BIN_EXE_aiotest"))
        .args([
            "run",
            file.path().to_str().unwrap(),
            "--master",
            "--expect-workers",
            "1",
            // Nothing listens there: the plan is refused first.
            "--redis",
            "redis://127.0.0.1:1",
            "-q",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = super::text(&out.stderr);
    assert!(
        err.contains(&format!(
            "file `{csv}`: the files the scenario reads add up to more than 16 MiB, the most a distributed run ships to its workers"
        )),
        "{err}"
    );
    // Locally the same file runs: the limit is the plan's.
    super::run_file(file.path(), "big", &["-t", "200ms"]);
    assert!(!echoed(&t).is_empty());
}
