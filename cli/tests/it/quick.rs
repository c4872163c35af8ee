//! The quick mode as oha and curl users expect it: a URL as the argument, a method,
//! headers and a body, HTTP settings; and every mistake refused before a request.

use std::sync::atomic::Ordering;

use super::{aiotest, export_path, target, text};

fn echoed(t: &super::Target) -> Vec<String> {
    t.echoed.lock().unwrap().clone()
}

#[test]
fn a_url_argument_with_a_method_headers_and_a_body_sends_exactly_that() {
    let t = target();
    let url = format!("http://{}/echo", t.addr);
    let out = aiotest(&[
        "run",
        &url,
        "-X",
        "PUT",
        "--header",
        "X-Api-Key: k1",
        "--json",
        r#"{"a":1}"#,
        "-i",
        "3",
        "-q",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        echoed(&t),
        vec![r#"PUT k1 application/json {"a":1}"#.to_owned(); 3]
    );

    // A body without -X is a POST, as with curl; from a file too.
    let t = target();
    let url = format!("http://{}/echo", t.addr);
    let file = std::env::temp_dir().join(format!("aiotest-it-{}-body.txt", std::process::id()));
    std::fs::write(&file, "from a file").unwrap();
    let out = aiotest(&["run", "--url", &url, "--body", "hello", "-i", "1", "-q"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = aiotest(&[
        "run",
        "--url",
        &url,
        "--body-file",
        file.to_str().unwrap(),
        "-i",
        "1",
        "-q",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        echoed(&t),
        vec![
            "POST - - hello".to_owned(),
            "POST - - from a file".to_owned()
        ]
    );
    let _ = std::fs::remove_file(file);
}

#[test]
fn quick_mode_mistakes_exit_2_before_any_request() {
    let t = target();
    let url = format!("http://{}/echo", t.addr);
    let file = std::env::temp_dir().join(format!("aiotest-it-{}-quick.toml", std::process::id()));
    std::fs::write(
        &file,
        format!(
            "host = \"http://{}\"\n[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/\"\n",
            t.addr
        ),
    )
    .unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--url", &url, "-H", "http://127.0.0.1:1"],
            "name different hosts",
        ),
        (vec!["--url", &url, "-X", "post"], "write POST"),
        (vec!["--url", &url, "--header", "no colon"], "Name: value"),
        (vec!["--url", &url, "--json", "{bad"], "--json: not JSON"),
        (
            vec!["--url", &url, "--body", "a", "--json", "{}"],
            "give one",
        ),
        (
            vec!["--url", &url, "--body-file", "/nonexistent/body"],
            "--body-file: /nonexistent/body",
        ),
        (
            vec!["--url", &url, "--body-file", "/dev/zero"],
            "--body-file: /dev/zero: over the 64 MiB a body may have",
        ),
        (vec!["--url", &url, "--timeout", "0s"], "at most 1h"),
        (vec!["--url", &url, "--max-retries", "99"], "0 to 10"),
        (vec!["--url", &url, "--max-redirects", "101"], "to 100"),
        (
            vec!["--url", &url, "--rate", "10", "--max-users", "0"],
            "--max-users 0: an open-model run needs at least one user",
        ),
        (
            vec!["--url", &url, "-H", "Authorization: Bearer x"],
            "looks like a header: -H is the host (as in Locust); use --header 'Authorization: Bearer x'",
        ),
        (
            vec!["127.0.0.1:8080"],
            "`127.0.0.1:8080` is not a file; to test a URL write its scheme: `http://127.0.0.1:8080`",
        ),
        (
            vec!["--url", &url, "--max-response-body", "0"],
            "from 1 byte to 4 GiB",
        ),
        (
            vec!["--url", &url, "--max-response-body", "lots"],
            "is not a size",
        ),
        (
            vec!["--url", &url, "--client-cert", "/nonexistent/c.pem"],
            "--client-cert needs --client-key",
        ),
        (
            vec![
                "--url",
                &url,
                "--client-cert",
                "/nonexistent/c.pem",
                "--client-key",
                "/nonexistent/k.pem",
            ],
            "--client-cert: /nonexistent/c.pem",
        ),
        (vec![&url, "--url", &url], "cannot be used with '--url"),
        (
            vec![file.to_str().unwrap(), "--header", "a: b"],
            "a scenario file or a binary sets its own requests",
        ),
    ];
    for (args, want) in cases {
        let out = aiotest(&[&["run"][..], &args, &["-t", "1s", "-q"]].concat());
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains(want),
            "{args:?}: want {want:?} in {}",
            text(&out.stderr)
        );
    }
    assert_eq!(
        t.served.load(Ordering::Relaxed),
        0,
        "not one request was sent"
    );
    let _ = std::fs::remove_file(file);
}

/// `--timeout` and `--max-retries` on the command line, and `[http]` in a file, reach the
/// HTTP users: against a target that never answers, each request times out once, quickly,
/// with no retry.
#[test]
fn timeouts_and_retries_come_from_the_command_line_or_the_file() {
    let t = target();
    let url = format!("http://{}/hang", t.addr);
    let export = export_path("timeout");
    let out = aiotest(&[
        "run",
        "--url",
        &url,
        "--timeout",
        "200ms",
        "--max-retries",
        "0",
        "-i",
        "2",
        "-q",
        "--allow-failures",
        "--summary-export",
        export.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&export).unwrap()).unwrap();
    assert_eq!(json["totals"]["requests"], 2, "no retries");
    assert_eq!(json["errors"][0]["category"], "timeout");
    assert!(json["totals"]["max_ms"].as_f64().unwrap() < 1_000.0);
    assert_eq!(t.served.load(Ordering::Relaxed), 2);

    let t = target();
    let file = std::env::temp_dir().join(format!("aiotest-it-{}-http.toml", std::process::id()));
    let toml = |timeout: &str| {
        format!(
            "host = \"http://{}\"\n[http]\ntimeout = \"{timeout}\"\nmax_retries = 0\n\
             [[users]]\nname = \"u\"\nwait_time = 0\n[[users.tasks]]\npath = \"/hang\"\n\
             [[scenarios]]\nname = \"s\"\nexecutor = \"shared-iterations\"\niterations = 2\n",
            t.addr
        )
    };
    std::fs::write(&file, toml("200ms")).unwrap();
    let out = aiotest(&[
        "run",
        file.to_str().unwrap(),
        "-q",
        "--allow-failures",
        "--summary-export",
        export.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&export).unwrap()).unwrap();
    assert_eq!(json["totals"]["requests"], 2);
    assert_eq!(json["errors"][0]["category"], "timeout");
    std::fs::write(&file, toml("never")).unwrap();
    let out = aiotest(&["run", file.to_str().unwrap(), "-q"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains(":3: http.timeout: invalid duration `never`"),
        "{}",
        text(&out.stderr)
    );
    let _ = std::fs::remove_file(file);
    let _ = std::fs::remove_file(export);
}

/// `-t` changes only a file's duration, `-u` only its users: the rest of `[load]` stays.
#[test]
fn command_line_load_flags_change_only_their_part_of_the_files_load() {
    let t = target();
    let file = std::env::temp_dir().join(format!("aiotest-it-{}-load.toml", std::process::id()));
    let toml = |load: &str| {
        format!(
            "host = \"http://{}\"\n[load]\n{load}\n\
             [[users]]\nname = \"many\"\nweight = 5\nwait_time = 0.05\n[[users.tasks]]\npath = \"/many\"\n\
             [[users]]\nname = \"one\"\nweight = 1\nwait_time = 0.05\n[[users.tasks]]\npath = \"/one\"\n",
            t.addr
        )
    };
    let export = export_path("load-parts");
    let run = |args: &[&str]| {
        let out = aiotest(
            &[
                &[
                    "run",
                    file.to_str().unwrap(),
                    "-q",
                    "--summary-export",
                    export.to_str().unwrap(),
                ][..],
                args,
            ]
            .concat(),
        );
        let json: serde_json::Value = std::fs::read_to_string(&export)
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default();
        (out, json)
    };
    let requests = |json: &serde_json::Value, name: &str| {
        json["endpoints"]
            .as_array()
            .and_then(|a| a.iter().find(|e| e["name"] == name))
            .map_or(0, |e| e["requests"].as_u64().unwrap())
    };
    // The file's 6 users stay with -t: the weight-1 type still gets its user.
    std::fs::write(
        &file,
        toml("users = 6\nspawn_rate = 100\nrun_time = \"30s\""),
    )
    .unwrap();
    let (out, json) = run(&["-t", "2s"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let d = json["duration_s"].as_f64().unwrap();
    assert!((2.0..2.5).contains(&d), "-t set the duration: {d}");
    assert!(requests(&json, "/one") > 0, "the 6th user runs: {json}");
    assert!(requests(&json, "/many") > 4 * requests(&json, "/one"));
    // -u keeps the file's run time.
    std::fs::write(&file, toml("users = 6\nrun_time = \"1s\"")).unwrap();
    let (out, json) = run(&["-u", "2"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let d = json["duration_s"].as_f64().unwrap();
    assert!((1.0..1.5).contains(&d), "the file's run_time: {d}");
    // Stages have no single user count or duration to change.
    std::fs::write(&file, toml("stages = [{ duration = \"1s\", target = 2 }]")).unwrap();
    let (out, _) = run(&["-t", "5s"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("the file's [load] has stages"),
        "{}",
        text(&out.stderr)
    );
    let _ = std::fs::remove_file(file);
    let _ = std::fs::remove_file(export);
}

/// Redirects are followed and each hop counted, unless `--max-redirects 0` (or the file's
/// `max_redirects`) turns it off; a body over `--max-response-body` (or the file's limit)
/// fails on its own, and the run goes on.
#[test]
fn redirects_and_the_body_limit_come_from_the_command_line_or_the_file() {
    use std::sync::atomic::AtomicU64;
    let served = std::sync::Arc::new(AtomicU64::new(0));
    let count = std::sync::Arc::clone(&served);
    let addr = super::serve(move |req, _| {
        count.fetch_add(1, Ordering::SeqCst);
        let b = hyper::Response::builder();
        let (b, body) = match req.uri.path() {
            "/r" => (b.status(302).header("location", "/dest"), String::new()),
            "/big" => (b, "x".repeat(2_000)),
            _ => (b, "ok".to_owned()),
        };
        b.body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .unwrap()
    });
    let export = export_path("redirects");
    let run = |args: &[&str]| {
        let out = aiotest(
            &[
                &["run", "-q", "--summary-export", export.to_str().unwrap()][..],
                args,
            ]
            .concat(),
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&out.stderr)
        );
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&export).unwrap()).unwrap();
        json
    };
    let r = format!("http://{addr}/r");
    let json = run(&[&r, "-i", "3"]);
    assert_eq!(super::endpoint_counts(&json, "/r"), (3, 0));
    assert_eq!(super::endpoint_counts(&json, "/dest"), (3, 0));
    assert_eq!(served.swap(0, Ordering::SeqCst), 6);
    let json = run(&[&r, "-i", "3", "--max-redirects", "0"]);
    assert_eq!(json["totals"]["requests"], 3);
    assert_eq!(served.swap(0, Ordering::SeqCst), 3);
    let big = format!("http://{addr}/big");
    let json = run(&[
        &big,
        "-i",
        "2",
        "--max-response-body",
        "1KiB",
        "--allow-failures",
    ]);
    assert_eq!(super::endpoint_counts(&json, "/big"), (2, 2));
    assert_eq!(json["errors"][0]["category"], "body_too_large");
    assert_eq!(served.swap(0, Ordering::SeqCst), 2);

    let file = super::TempFile::new("limits", "");
    let toml = |http: &str| {
        format!(
            "host = \"http://{addr}\"\n[http]\n{http}\n\
             [[users]]\nname = \"u\"\nwait_time = 0\n\
             [[users.tasks]]\npath = \"/r\"\n[[users.tasks]]\npath = \"/big\"\n\
             [[scenarios]]\nname = \"s\"\nexecutor = \"per-vu-iterations\"\nvus = 1\niterations = 1\n"
        )
    };
    std::fs::write(
        file.path(),
        toml("max_redirects = 0\nmax_response_body = \"1KiB\""),
    )
    .unwrap();
    let json = run(&[file.path().to_str().unwrap(), "--allow-failures"]);
    assert_eq!(super::endpoint_counts(&json, "/r"), (1, 0));
    assert_eq!(super::endpoint_counts(&json, "/big"), (1, 1));
    assert_eq!(served.swap(0, Ordering::SeqCst), 2);
    for (http, want) in [
        (
            "max_response_body = \"lots\"",
            ":3: http.max_response_body: `lots` is not a size",
        ),
        (
            "max_redirects = 1000",
            ":3: http.max_redirects: 1000 is more than the 100",
        ),
        (
            "client_cert = \"nope.pem\"",
            ":3: http.client_cert: needs client_key",
        ),
        (
            "client_cert = \"nope.pem\"\nclient_key = \"nope.pem\"",
            ":3: http.client_cert: cannot read",
        ),
    ] {
        std::fs::write(file.path(), toml(http)).unwrap();
        let out = aiotest(&["run", file.path().to_str().unwrap(), "-q"]);
        assert_eq!(out.status.code(), Some(2), "{http}");
        assert!(
            text(&out.stderr).contains(want),
            "{http}: {}",
            text(&out.stderr)
        );
    }
    assert_eq!(served.load(Ordering::SeqCst), 0);
    let _ = std::fs::remove_file(export);
}
