//! The scenario file format, checked and run.

use super::*;

const VALID_TAIL: &str = "[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/\"\n";

fn check(text: &str) -> Result<ScenarioFile, ScenarioError> {
    parse(Path::new("s.toml"), text)
}

/// Thousands of user types: each is kept, in order, with its request name, and a
/// name used twice is found however far apart the two are. (Its cost per type is
/// measured in `benches/scenario_file.rs`.)
#[test]
fn a_file_of_thousands_of_user_types_is_checked_whole() {
    let types = 5_000;
    let mut text = String::new();
    for i in 0..types {
        text.push_str(&format!(
            "[[users]]\nname = \"u{i}\"\n[[users.tasks]]\nname = \"t{i}\"\npath = \"/items/{i}\"\n"
        ));
    }
    let s = check(&text).unwrap();
    assert_eq!(s.user_types.len(), types);
    assert_eq!(s.user_types[types - 1].name(), format!("u{}", types - 1));
    let names = s.request_names.unwrap();
    assert_eq!(names.len(), types);
    assert_eq!(names[4_321], "t4321");
    text.push_str("[[users]]\nname = \"u0\"\n[[users.tasks]]\npath = \"/\"\n");
    let e = check(&text).err().unwrap().to_string();
    assert!(
        e.ends_with(&format!("users[{types}].name: `u0` is used twice")),
        "{e}"
    );
}

#[test]
fn the_example_file_is_valid() {
    use std::time::Duration;
    let s = load(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/scenario.toml"
    )))
    .unwrap();
    let names: Vec<&str> = s.user_types.iter().map(UserType::name).collect();
    assert_eq!(names, ["shopper", "api"]);
    assert_eq!(s.user_types[0].weight(), 3);
    assert_eq!(s.user_types[1].max_concurrent_tasks(), 4);
    assert_eq!(
        s.shape.as_ref().and_then(|sh| sh.duration()),
        Some(Duration::from_secs(20))
    );
    let names = s.request_names.expect("no path uses a capture");
    assert!(names.contains(&"/login".to_owned()), "{names:?}");
    assert!(names.contains(&"browse".to_owned()), "{names:?}");
    let templated = check(
        "[[setup]]\npath = \"/login\"\ncapture = { id = \"/id\" }\n\
         [[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/items/{{setup.id}}\"\n",
    )
    .unwrap();
    assert!(
        templated.request_names.is_none(),
        "a templated path's name is unknown"
    );
    assert_eq!(s.host.as_deref(), Some("http://127.0.0.1:8080"));
    assert!(s.hooks.has_setup());
    assert_eq!(s.thresholds.len(), 6);
    assert_eq!(s.tags["shop"], ["browse", "add to cart"]);
    assert_eq!(s.data.column_names(), ["password", "username"]);
}

#[test]
fn the_scenarios_example_is_valid() {
    let s = load(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/scenarios.toml"
    )))
    .unwrap();
    let kinds: Vec<&str> = s.scenarios.iter().map(|s| s.executor().kind()).collect();
    for k in [
        "shared-iterations",
        "per-vu-iterations",
        "constant-vus",
        "ramping-vus",
        "constant-arrival-rate",
        "ramping-arrival-rate",
        "externally-controlled",
    ] {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }
}

#[test]
fn setup_values_fill_templates() {
    let values = serde_json::json!({"token": "abc", "n": 7});
    assert_eq!(
        render("/a/{{setup.token}}?n={{setup.n}}", Some(&values)),
        "/a/abc?n=7"
    );
    assert_eq!(render("plain", Some(&values)), "plain");
    let j = render_json(
        &serde_json::json!({"t": "{{setup.token}}", "l": ["{{setup.n}}"]}),
        Some(&values),
    );
    assert_eq!(j, serde_json::json!({"t": "abc", "l": ["7"]}));
}

#[test]
fn malformed_files_name_file_line_and_field() {
    let cases: Vec<(String, &str)> = vec![
        // TOML syntax
        ("[[users]\nname = \"u\"".into(), "s.toml:1:"),
        // unknown field, with its line
        (format!("{VALID_TAIL}wieght = 3\n"), "s.toml:5: users[0].tasks[0].wieght: unknown field `wieght`"),
        // What the TOML reader finds is named in full and in words, not Rust's types.
        ("[[users]]\nname = \"u\"\nwait_time = \"abc\"\n[[users.tasks]]\npath = \"/\"\n".into(), "s.toml:3: users[0].wait_time: expected seconds (a number, e.g. 0.5), a range of seconds [min, max]"),
        ("[[users]]\nname = \"u\"\nweight = \"x\"\n[[users.tasks]]\npath = \"/\"\n".into(), "s.toml:3: users[0].weight: invalid type: string \"x\", expected a whole number from 0 to 4294967295"),
        (format!("{VALID_TAIL}[[users]]\nname = \"v\"\n[[users.tasks]]\nname = \"x\"\n"), "s.toml:7: users[1].tasks[0]: missing field `path`"),
        ("[users]\nname = \"u\"\n".into(), "s.toml:1: users: `[users]` is one table, but `users` is a list: write `[[users]]` for each entry"),
        (format!("[load]\nusers = 1.5\n{VALID_TAIL}"), "s.toml:2: load.users: invalid type: decimal number `1.5`, expected a whole number, 0 or more"),
        // wrong type
        ("[[users]]\nname = \"u\"\nweight = \"three\"\n[[users.tasks]]\npath = \"/\"\n".into(), "s.toml:3: users[0].weight: invalid type"),
        // missing required field
        ("[[users]]\nname = \"u\"\n[[users.tasks]]\nmethod = \"GET\"\n".into(), "missing field `path`"),
        // no users at all
        ("host = \"http://h\"\n".into(), "s.toml: users: at least one [[users]] table is needed"),
        // a user without tasks
        ("[[users]]\nname = \"u\"\n".into(), "users[0].tasks: at least one [[users.tasks]] table is needed"),
        ("[[users]]\nname = \"u\"\nweight = 0\n[[users.tasks]]\npath = \"/\"\n".into(), "s.toml:3: users[0].weight: must be at least 1"),
        ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/\"\nweight = 0\n".into(), "s.toml:5: users[0].tasks[0].weight: must be at least 1"),
        ("[[users]]\nname = \"u\"\nwait_time = [2, 1]\n[[users.tasks]]\npath = \"/\"\n".into(), "s.toml:3: users[0].wait_time: wait time range: min 2 is above max 1"),
        ("[[users]]\nname = \"u\"\nwait_time = -1\n[[users.tasks]]\npath = \"/\"\n".into(), "s.toml:3: users[0].wait_time: wait time must be between 0 and 1e9 seconds"),
        ("[[users]]\nname = \"u\"\nexecution_mode = \"parallel\"\n[[users.tasks]]\npath = \"/\"\n".into(), "s.toml:3: users[0].execution_mode: `parallel`: use sequential or concurrent"),
        ("[[users]]\nname = \"u\"\nmax_concurrent_tasks = 2\n[[users.tasks]]\npath = \"/\"\n".into(), "s.toml:3: users[0].max_concurrent_tasks: applies to execution_mode = \"concurrent\" only"),
        ("[[users]]\nname = \"u\"\n[[users.tasks]]\nmethod = \"G3T\"\npath = \"/\"\n".into(), "s.toml:4: users[0].tasks[0].method: `G3T` is not an HTTP method"),
        ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"items\"\n".into(), "s.toml:4: users[0].tasks[0].path: `items` must start with / or be an http(s) URL"),
        ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/\"\nbody = \"x\"\njson = { a = 1 }\n".into(), "s.toml:6: users[0].tasks[0].json: give body or json, not both"),
        ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/\"\nexpect_status = 42\n".into(), "s.toml:5: users[0].tasks[0].expect_status: 42 is not an HTTP status"),
        ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/a/{{setup.token}}\"\n".into(), "s.toml:4: users[0].tasks[0].path: `{{setup.token}}` is not captured by any [[setup]] request"),
        (format!("[load]\nrun_time = \"5x\"\n{VALID_TAIL}"), "s.toml:2: load.run_time: invalid duration `5x`"),
        (format!("[load]\nusers = 5\nstages = [{{ duration = \"1s\", target = 1 }}]\n{VALID_TAIL}"), "load: give either stages or users/run_time, not both"),
        (format!("[load]\nspawn_rate = 0.0\n{VALID_TAIL}"), "s.toml:2: load.spawn_rate: must be above 0"),
        (format!("[load]\nstages = [{{ duration = \"soon\", target = 1 }}]\n{VALID_TAIL}"), "s.toml:2: load.stages[0].duration: invalid duration `soon`"),
        (format!("{VALID_TAIL}{VALID_TAIL}"), "s.toml:6: users[1].name: `u` is used twice"),
        // a user's own values
        ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/\"\ncapture = { t = \"t\" }\n".into(), "s.toml:5: users[0].tasks[0].capture.t: `t` is not a JSON pointer"),
        ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/\"\ncapture = { t = { header = \"bad name\" } }\n".into(), "s.toml:5: users[0].tasks[0].capture.t: `bad name` is not a header name"),
        ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/\"\ncapture = { t = { cookie = \"x\" } }\n".into(), "s.toml:5: users[0].tasks[0].capture: expected a JSON pointer (\"/data/token\"), { header = \"NAME\" } or { regex = "),
        ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/a/{{vars.id}}\"\n".into(), "s.toml:4: users[0].tasks[0].path: `{{vars.id}}` is not captured by any task of this user type"),
        (format!("{VALID_TAIL}[[users]]\nname = \"v\"\nheaders = {{ a = \"{{{{vars.t}}}}\" }}\n[[users.tasks]]\npath = \"/\"\n"), "s.toml:7: users[1].headers.a: `{{vars.t}}` is not captured by any task of this user type"),
        (format!("[[setup]]\npath = \"/x/{{{{vars.t}}}}\"\n{VALID_TAIL}"), "s.toml:2: setup[0].path: `{{vars.t}}` is not captured by any task of this user type"),
        (format!("[[setup]]\npath = \"/login\"\ncapture = {{ t = {{ header = \"x-t\" }} }}\n{VALID_TAIL}"), "s.toml:3: setup[0].capture.t: setup captures take a JSON pointer"),
        ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/\"\nbody = \"{{vars.t\"\ncapture = { t = \"/t\" }\n".into(), "s.toml:5: users[0].tasks[0].body: unclosed `{{vars.`"),
        ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/\"\nheaders = { \"bad name\" = \"v\" }\n".into(), "s.toml:5: users[0].tasks[0].headers.bad name: not a valid header name"),
        (format!("host = \"ftp://x\"\n{VALID_TAIL}"), "s.toml:1: host: `ftp://x`: the scheme must be http or https, not `ftp`"),
        (format!("host = \"http://h:65536\"\n{VALID_TAIL}"), "s.toml:1: host: `http://h:65536`: port `65536` is not a port number (1 to 65535)"),
        (format!("host = \"http://h?q=1\"\n{VALID_TAIL}"), "s.toml:1: host: `http://h?q=1`: no query string"),
        ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/a\\tb\"\n".into(), "s.toml:4: users[0].tasks[0].path: `/a\tb`: a tab or line break at byte 2"),
        ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"http://h:0/x\"\n".into(), "s.toml:4: users[0].tasks[0].path: `http://h:0/x`: port `0` is not a port number"),
        (format!("[[setup]]\npath = \"/lo gin\"\n{VALID_TAIL}"), "s.toml:2: setup[0].path: `/lo gin`: a space at byte 3"),
        (format!("[load]\nusers = 1000001\n{VALID_TAIL}"), "s.toml:2: load.users: 1000001 users is above the limit of 1000000 users per run"),
        ("[[users]]\nname = \"u\"\nexecution_mode = \"concurrent\"\nmax_concurrent_tasks = 4294967295\n[[users.tasks]]\npath = \"/\"\n".into(), "users[0]: user type `u`: max_concurrent_tasks must be at most 1000"),
        (format!("[[setup]]\npath = \"/login\"\ncapture = {{ t = \"token\" }}\n{VALID_TAIL}"), "s.toml:3: setup[0].capture.t: `token` is not a JSON pointer"),
        (format!("[[setup]]\npath = \"/login\"\nweight = 2\n{VALID_TAIL}"), "s.toml:3: setup[0].weight: setup requests run once, in order: no weight"),
        // built-ins
        ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/{{builtin.now}}\"\n".into(), "s.toml:4: users[0].tasks[0].path: `{{builtin.now}}`: the built-ins are vu, iteration, uuid and random(MIN,MAX)"),
        ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/{{builtin.random(5,1)}}\"\n".into(), "s.toml:4: users[0].tasks[0].path: `{{builtin.random(5,1)}}`: random takes two whole numbers, MIN <= MAX"),
        ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/\"\nheaders = { x = \"{{builtin.random(a,9)}}\" }\n".into(), "s.toml:5: users[0].tasks[0].headers.x: `{{builtin.random(a,9)}}`: random takes two whole numbers"),
        ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/\"\nbody = \"{{builtin.uuid\"\n".into(), "s.toml:5: users[0].tasks[0].body: unclosed `{{builtin.`"),
        // teardown
        (format!("[[teardown]]\npath = \"/x\"\nweight = 2\n{VALID_TAIL}"), "s.toml:3: teardown[0].weight: teardown requests run once, in order: no weight"),
        (format!("[[teardown]]\npath = \"/x\"\ncapture = {{ t = \"/t\" }}\n{VALID_TAIL}"), "s.toml:3: teardown[0].capture.t: teardown requests capture nothing"),
        // named checks and regex captures
        ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/\"\nchecks = [{ status = 200 }]\n".into(), "s.toml:5: users[0].tasks[0].checks: missing field `name`"),
        ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/\"\nchecks = [{ name = \" \", status = 200 }]\n".into(), "s.toml:5: users[0].tasks[0].checks[0].name: must not be empty"),
        ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/\"\nchecks = [{ name = \"c\" }]\n".into(), "s.toml:5: users[0].tasks[0].checks[0]: give one of status, header, json, body_contains or regex (found none)"),
        ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/\"\nchecks = [{ name = \"c\", status = 200, json = \"/a\" }]\n".into(), "s.toml:5: users[0].tasks[0].checks[0]: give one of status, header, json, body_contains or regex (found status, json)"),
        ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/\"\nchecks = [{ name = \"c\", status = 999 }]\n".into(), "s.toml:5: users[0].tasks[0].checks[0].status: 999 is not an HTTP status (100 to 599)"),
        ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/\"\nchecks = [{ name = \"c\", header = \"a b\" }]\n".into(), "s.toml:5: users[0].tasks[0].checks[0].header: `a b` is not a header name"),
        ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/\"\nchecks = [{ name = \"c\", header = \"x\", equals = 3 }]\n".into(), "s.toml:5: users[0].tasks[0].checks[0].equals: a header's value is text: give a string"),
        ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/\"\nchecks = [{ name = \"c\", json = \"id\" }]\n".into(), "s.toml:5: users[0].tasks[0].checks[0].json: `id` is not a JSON pointer (like /data/token)"),
        ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/\"\nchecks = [{ name = \"c\", body_contains = \"x\", equals = \"y\" }]\n".into(), "s.toml:5: users[0].tasks[0].checks[0].equals: equals compares a header's or a JSON value's value: give header or json"),
        ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/\"\nchecks = [{ name = \"c\", regex = \"(a\" }]\n".into(), "s.toml:5: users[0].tasks[0].checks[0].regex: `(a` is not a regular expression"),
        ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/\"\nchecks = [{ name = \"c\", status = 200, fail = true }]\n".into(), "s.toml:5: users[0].tasks[0].checks: unknown field `fail`"),
        ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/\"\n[[users.tasks.checks]]\nname = \"c\"\nstatus = \"200\"\n".into(), "s.toml:7: users[0].tasks[0].checks[0].status: invalid type: string \"200\""),
        ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/\"\ncapture = { t = { regex = \"[a\" } }\n".into(), "s.toml:5: users[0].tasks[0].capture.t: `[a` is not a regular expression"),
        ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/\"\nchecks = [{ name = \"c\", json = \"/a\", equals = \"{{vars.x}}\" }]\n".into(), "s.toml:5: users[0].tasks[0].checks[0].equals: `{{vars.x}}` is not captured by any task of this user type"),
        (format!("[[teardown]]\npath = \"/x/{{{{setup.t}}}}\"\n{VALID_TAIL}"), "s.toml:2: teardown[0].path: `{{setup.t}}` is not captured by any [[setup]] request"),
        // a user type's own HTTP settings
        ("[[users]]\nname = \"u\"\nhttp = { timeout = \"soon\" }\n[[users.tasks]]\npath = \"/\"\n".into(), "s.toml:3: users[0].http.timeout: "),
        ("[[users]]\nname = \"u\"\nhttp = { max_retries = 99 }\n[[users.tasks]]\npath = \"/\"\n".into(), "s.toml:3: users[0].http.max_retries: 99 is more than the 10 retries allowed"),
        ("[[users]]\nname = \"u\"\nhttp = { retries = 1 }\n[[users.tasks]]\npath = \"/\"\n".into(), "s.toml:3: users[0].http: unknown field `retries`"),
        // paced waits
        ("[[users]]\nname = \"u\"\nwait_time = { pacing = 1, throughput = 2 }\n[[users.tasks]]\npath = \"/\"\n".into(), "s.toml:3: users[0].wait_time: give one of pacing = SECONDS or throughput = TASKS_PER_SECOND"),
        ("[[users]]\nname = \"u\"\nwait_time = {}\n[[users.tasks]]\npath = \"/\"\n".into(), "s.toml:3: users[0].wait_time: give one of pacing"),
        ("[[users]]\nname = \"u\"\nwait_time = { throughput = 0 }\n[[users.tasks]]\npath = \"/\"\n".into(), "s.toml:3: users[0].wait_time: "),
        ("[[users]]\nname = \"u\"\nwait_time = { pacing = -2 }\n[[users.tasks]]\npath = \"/\"\n".into(), "s.toml:3: users[0].wait_time: constant pacing must be between 0 and 1e9 seconds"),
        ("[[users]]\nname = \"u\"\nwait_time = { pace = 2 }\n[[users.tasks]]\npath = \"/\"\n".into(), "s.toml:3: users[0].wait_time: expected seconds"),
        // environment variables
        ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/{{env.AIOTEST_UNSET_7Q}}\"\n".into(), "s.toml:4: users[0].tasks[0].path: `{{env.AIOTEST_UNSET_7Q}}`: the environment variable AIOTEST_UNSET_7Q is not set"),
        ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/{{env.9LIVES}}\"\n".into(), "s.toml:4: users[0].tasks[0].path: `{{env.9LIVES}}`: `9LIVES` is not an environment variable name"),
        ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/\"\nbody = \"{{env.X\"\n".into(), "s.toml:5: users[0].tasks[0].body: unclosed `{{env.`"),
        ("[[users]]\nname = \"u\"\nheaders = { x = \"{{env.AIOTEST_UNSET_7Q}}\" }\n[[users.tasks]]\npath = \"/\"\n".into(), "s.toml:3: users[0].headers.x: `{{env.AIOTEST_UNSET_7Q}}`"),
        ("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/\"\njson = { a = [\"{{env.AIOTEST_UNSET_7Q}}\"] }\n".into(), "s.toml:5: users[0].tasks[0].json: `{{env.AIOTEST_UNSET_7Q}}`"),
        (format!("host = \"{{{{env.AIOTEST_UNSET_7Q}}}}\"\n{VALID_TAIL}"), "s.toml:1: host: `{{env.AIOTEST_UNSET_7Q}}`"),
        (format!("host = \"{{{{env.AIOTEST_UNSET_7Q:-ftp://x}}}}\"\n{VALID_TAIL}"), "s.toml:1: host: `ftp://x`: the scheme must be http or https"),
        // thresholds
        (format!("thresholds = [\"p95<300ms\", \"p95<<3\"]\n{VALID_TAIL}"), "s.toml:1: thresholds[1]: "),
        (format!("thresholds = [\"latency<3ms\"]\n{VALID_TAIL}"), "s.toml:1: thresholds[0]: "),
        (format!("thresholds = [3]\n{VALID_TAIL}"), "s.toml:1: thresholds: expected a threshold as --threshold takes it"),
        (format!("{VALID_TAIL}[[thresholds]]\nexpr = \"p95<1s\"\nabort = true\n"), "s.toml:5: thresholds[0]: expected a threshold as --threshold takes it"),
        (format!("{VALID_TAIL}[[thresholds]]\nexpr = \"p95<1s:stop\"\n"), "s.toml:5: thresholds[0]: "),
    ];
    assert!(cases.len() >= 10);
    for (text, want) in cases {
        let err = match check(&text) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(want), "\n{text}\nwant: {want}\n got: {err}");
    }
}

#[test]
fn scenarios_take_each_executor_with_k6s_fields() {
    use std::time::Duration;
    let text = format!(
        "{VALID_TAIL}\
[[scenarios]]
name = \"a\"
executor = \"shared-iterations\"
vus = 5
iterations = 100
[[scenarios]]
name = \"b\"
executor = \"per-vu-iterations\"
vus = 2
iterations = 3
max_duration = \"1m\"
[[scenarios]]
name = \"c\"
executor = \"constant-vus\"
vus = 4
duration = \"30s\"
start_time = \"10s\"
graceful_stop = \"5s\"
tags = {{ team = \"web\" }}
[[scenarios]]
name = \"d\"
executor = \"ramping-vus\"
start_vus = 0
stages = [{{ duration = \"10s\", target = 5 }}, {{ duration = \"5s\", target = 0 }}]
[[scenarios]]
name = \"e\"
executor = \"constant-arrival-rate\"
rate = 30
time_unit = \"1m\"
duration = \"2m\"
pre_allocated_vus = 2
[[scenarios]]
name = \"f\"
executor = \"ramping-arrival-rate\"
start_rate = 10
stages = [{{ duration = \"1m\", target = 100 }}]
pre_allocated_vus = 5
max_vus = 50
max_delay = \"250ms\"
[[scenarios]]
name = \"g\"
executor = \"externally-controlled\"
vus = 1
max_vus = 20
"
    );
    let f = check(&text).unwrap();
    let kinds: Vec<(&str, &str)> = f
        .scenarios
        .iter()
        .map(|s| (s.name(), s.executor().kind()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("a", "shared-iterations"),
            ("b", "per-vu-iterations"),
            ("c", "constant-vus"),
            ("d", "ramping-vus"),
            ("e", "constant-arrival-rate"),
            ("f", "ramping-arrival-rate"),
            ("g", "externally-controlled"),
        ]
    );
    let c = &f.scenarios[2];
    assert_eq!(c.starts_at(), Duration::from_secs(10));
    assert_eq!(c.graceful_stop_period(), Duration::from_secs(5));
    match f.scenarios[4].executor() {
        Executor::ConstantArrivalRate {
            rate,
            time_unit,
            pre_allocated_vus,
            max_vus,
            max_delay,
            ..
        } => {
            assert_eq!((*rate, *time_unit), (30.0, Duration::from_secs(60)));
            assert_eq!(
                (*pre_allocated_vus, *max_vus),
                (2, 2),
                "max_vus defaults to pre_allocated_vus"
            );
            assert_eq!(*max_delay, Duration::ZERO);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        f.scenarios[5].executor().max_delay(),
        Duration::from_millis(250)
    );
}

#[test]
fn bad_scenarios_name_file_line_and_field() {
    let sc = |body: &str| format!("{VALID_TAIL}[[scenarios]]\nname = \"s\"\n{body}");
    let cases: Vec<(String, &str)> = vec![
        (
            sc("executor = \"constant-rate\"\n"),
            "s.toml:7: scenarios[0].executor: `constant-rate` is not an executor: use shared-iterations,",
        ),
        (
            sc("executor = \"constant-vus\"\nduration = \"10s\"\nrate = 5\n"),
            "s.toml:9: scenarios[0].rate: `constant-vus` takes no rate (it takes vus, duration)",
        ),
        (
            sc("executor = \"constant-vus\"\n"),
            "scenarios[0].duration: `constant-vus` needs duration",
        ),
        (
            sc("executor = \"constant-arrival-rate\"\nrate = 5\nduration = \"1m\"\n"),
            "scenarios[0].pre_allocated_vus: `constant-arrival-rate` needs pre_allocated_vus",
        ),
        (
            sc(
                "executor = \"constant-arrival-rate\"\nrate = -5\nduration = \"1m\"\npre_allocated_vus = 1\n",
            ),
            "s.toml:8: scenarios[0].rate: -5 is not a rate",
        ),
        (
            sc(
                "executor = \"constant-arrival-rate\"\nrate = 1e300\nduration = \"1m\"\npre_allocated_vus = 1\n",
            ),
            "s.toml:8: scenarios[0].rate: 1e300 per 1s is more than the 10000000 iterations per second allowed",
        ),
        (
            sc(
                "executor = \"ramping-arrival-rate\"\ntime_unit = \"1ms\"\nstages = [{ duration = \"1s\", target = 20000 }]\npre_allocated_vus = 1\n",
            ),
            "scenarios[0].stages.target: 2e4 per 1ms is more than the 10000000 iterations per second allowed",
        ),
        (
            sc(
                "executor = \"constant-arrival-rate\"\nrate = 5\nduration = \"1m\"\npre_allocated_vus = 8\nmax_vus = 2\n",
            ),
            "s.toml:10: scenarios[0].pre_allocated_vus: 8 is above max_vus (2)",
        ),
        (
            sc(
                "executor = \"constant-arrival-rate\"\nrate = 5\nduration = \"1m\"\npre_allocated_vus = 1\nmax_delay = \"2h\"\n",
            ),
            "s.toml:11: scenarios[0].max_delay: 7200 s is longer than the 3600 s",
        ),
        (
            sc("executor = \"shared-iterations\"\nvus = 10\niterations = 5\n"),
            "s.toml:9: scenarios[0].iterations: 5 is fewer than the 10 users sharing them",
        ),
        (
            sc("executor = \"ramping-vus\"\nstages = [{ duration = \"1x\", target = 1 }]\n"),
            "s.toml:8: scenarios[0].stages[0].duration: invalid duration `1x`",
        ),
        (
            sc("executor = \"constant-vus\"\nduration = \"1s\"\nusers = [\"nobody\"]\n"),
            "s.toml:9: scenarios[0].users: no [[users]] type is named `nobody`; the types are: u",
        ),
        (
            sc("executor = \"constant-vus\"\nduration = \"1s\"\nstart_time = \"later\"\n"),
            "s.toml:9: scenarios[0].start_time: invalid duration `later`",
        ),
        (
            sc("executor = \"constant-vus\"\nduration = \"1s\"\nvuz = 3\n"),
            "unknown field `vuz`",
        ),
        (
            format!(
                "{}[[scenarios]]\nname = \"s\"\nexecutor = \"constant-vus\"\nduration = \"1s\"\n",
                sc("executor = \"constant-vus\"\nduration = \"1s\"\n")
            ),
            "s.toml:10: scenarios[1].name: `s` is used twice",
        ),
        (
            format!(
                "[load]\nusers = 2\n{}",
                sc("executor = \"constant-vus\"\nduration = \"1s\"\n")
            ),
            "give [load] or [[scenarios]], not both",
        ),
        (
            format!(
                "{VALID_TAIL}[[scenarios]]\nname = \"a b\"\nexecutor = \"constant-vus\"\nduration = \"1s\"\n"
            ),
            "s.toml:6: scenarios[0].name:",
        ),
    ];
    for (text, want) in cases {
        let err = match check(&text) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(want), "\n{text}\nwant: {want}\n got: {err}");
    }
}

#[test]
fn thresholds_in_the_file_take_the_flags_syntax_in_either_form() {
    let text = format!("thresholds = [\"p95<300ms\", \"failures<1%\"]\n{VALID_TAIL}");
    let s = check(&text).unwrap_or_else(|e| panic!("{e}"));
    let shown: Vec<String> = s.thresholds.iter().map(ToString::to_string).collect();
    assert_eq!(shown.len(), 2);
    assert!(shown[0].starts_with("p95<"), "{shown:?}");
    let text = format!("{VALID_TAIL}[[thresholds]]\nexpr = \"p99{{name=/}}<1s:abort\"\n");
    let s = check(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.thresholds.len(), 1);
    assert!(check(VALID_TAIL).unwrap().thresholds.is_empty());
}

#[test]
fn json_pointers_find_what_serde_json_finds() {
    let v: serde_json::Value = serde_json::from_str(
        r#"{"a": {"b/c": [10, {"~d": "x"}], "": 1}, "items": [{"id": 7}], "0": "zero"}"#,
    )
    .unwrap();
    for p in [
        "",
        "/a",
        "/a/b~1c",
        "/a/b~1c/0",
        "/a/b~1c/1/~0d",
        "/a/",
        "/items/0/id",
        "/items/00",
        "/items/+0",
        "/items/1",
        "/0",
        "/nope",
        "/a/b~1c/-",
        "/items/0/id/x",
    ] {
        assert_eq!(JsonPointer::new(p).find(&v), v.pointer(p), "{p}");
    }
}

#[test]
fn built_ins_fill_in_a_new_value_each_time_within_their_bounds() {
    let none = HashMap::new();
    let at = |vars, vu, iteration| Values {
        vars,
        vu,
        iteration,
        data: None,
    };
    assert_eq!(
        fill_vars("/u/{{builtin.vu}}/{{builtin.iteration}}", &at(&none, 7, 3)).unwrap(),
        "/u/7/3"
    );
    for _ in 0..200 {
        let n: i64 = fill_vars("{{builtin.random(-2,3)}}", &at(&none, 0, 0))
            .unwrap()
            .parse()
            .unwrap();
        assert!((-2..=3).contains(&n), "{n}");
    }
    let a = fill_vars("{{builtin.uuid}}", &at(&none, 0, 0)).unwrap();
    let b = fill_vars("{{builtin.uuid}}", &at(&none, 0, 0)).unwrap();
    assert_ne!(a, b);
    let bytes = a.as_bytes();
    assert_eq!(a.len(), 36, "{a}");
    assert!([8, 13, 18, 23].iter().all(|&i| bytes[i] == b'-'), "{a}");
    assert_eq!(bytes[14], b'4', "version 4: {a}");
    assert!(b"89ab".contains(&bytes[19]), "variant 1: {a}");
    let vars: HashMap<String, String> = [("id".to_owned(), "42".to_owned())].into();
    assert_eq!(
        fill_vars("/{{vars.id}}/{{builtin.vu}}/{{vars.id}}", &at(&vars, 3, 0)).unwrap(),
        "/42/3/42"
    );
    // A captured value is sent as it is, never read for references.
    let sly: HashMap<String, String> =
        [("v".to_owned(), "{{builtin.vu}}{{vars.v}}".to_owned())].into();
    assert_eq!(
        fill_vars("a{{vars.v}}b{{", &at(&sly, 3, 0)).unwrap(),
        "a{{builtin.vu}}{{vars.v}}b{{"
    );
    assert_eq!(
        fill_vars("/{{vars.nope}}", &at(&vars, 3, 0)).unwrap_err(),
        "`{{vars.nope}}` is not captured yet by this user"
    );
}

/// Bad `[[data]]` files and tags: each is refused with FILE:LINE: FIELD.
#[test]
fn bad_data_files_and_tags_name_file_line_and_field() {
    let dir = std::env::temp_dir();
    let write = |name: &str, text: &str| {
        let p = dir.join(format!("aiotest-unit-{}-{name}", std::process::id()));
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let good = write("good.csv", "key,secret\na,1\n");
    let other = write("other.csv", "key\nb\n");
    let ragged = write("ragged.csv", "key,secret\na,1\nb,2,3\n");
    let empty = write("empty.csv", "key,secret\n");
    let twice = write("twice.csv", "key,key\na,b\n");
    let bad_column = write("col.csv", "my key\na\n");
    let lines = write("lines.jsonl", "{\"key\": \"a\"}\n[1]\n");
    let missing = write(
        "missing.jsonl",
        "{\"key\": \"a\", \"n\": 1}\n{\"key\": \"b\"}\n",
    );
    let txt = write("rows.txt", "key\na\n");
    let task =
        |extra: &str| format!("[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/\"\n{extra}");
    let data = |file: &str, extra: &str| format!("[[data]]\nfile = \"{file}\"\n{extra}");
    let cases: Vec<(String, String)> = vec![
        (data("/nonexistent/users.csv", "") + VALID_TAIL, "s.toml:2: data[0].file: cannot read `/nonexistent/users.csv`".into()),
        (data(&good, "strategy = \"sequential\"\n") + VALID_TAIL, "s.toml:3: data[0].strategy: `sequential`: use unique, round_robin or random".into()),
        (data(&good, "strategy = \"random\"\non_exhausted = \"wrap\"\n") + VALID_TAIL, "s.toml:4: data[0].on_exhausted: applies to strategy = \"unique\" only".into()),
        (data(&good, "on_exhausted = \"stop\"\n") + VALID_TAIL, "s.toml:3: data[0].on_exhausted: `stop`: use error or wrap".into()),
        (data(&good, "rows = 3\n") + VALID_TAIL, "s.toml:3: data[0].rows: unknown field `rows`".into()),
        (data(&txt, "") + VALID_TAIL, format!("s.toml:2: data[0].file: `{txt}`: a data file is .csv (with a header line) or .jsonl")),
        (data(&ragged, "") + VALID_TAIL, format!("s.toml:2: data[0].file: `{ragged}`: line 3: 3 fields, but the header has 2")),
        (data(&empty, "") + VALID_TAIL, format!("s.toml:2: data[0].file: `{empty}` has no rows")),
        (data(&twice, "") + VALID_TAIL, format!("s.toml:2: data[0].file: `{twice}`: the header names `key` twice")),
        (data(&bad_column, "") + VALID_TAIL, format!("s.toml:2: data[0].file: `{bad_column}`: column `my key`: a column name is letters")),
        (data(&lines, "") + VALID_TAIL, format!("s.toml:2: data[0].file: `{lines}`: line 2: not a JSON object")),
        (data(&missing, "") + VALID_TAIL, format!("s.toml:2: data[0].file: `{missing}`: line 2: no `n` (the first line has it)")),
        (data(&good, "") + &data(&other, "") + VALID_TAIL, format!("s.toml:4: data[1].file: column `key` is in `{good}` too")),
        (data(&good, "") + &task("headers = { k = \"{{data.nope}}\" }\n"), "s.toml:7: users[0].tasks[0].headers.k: `{{data.nope}}` is not a column of any [[data]] file; the columns are: key, secret".into()),
        (task("body = \"{{data.key}}\"\n"), "s.toml:5: users[0].tasks[0].body: `{{data.key}}` is not a column of any [[data]] file".into()),
        (data(&good, "") + "[[setup]]\npath = \"/{{data.key}}\"\n" + VALID_TAIL, "s.toml:4: setup[0].path: `{{data.key}}`: setup and teardown run once, for no user".into()),
        (data(&good, "") + &task("json = { user = \"{{data.nope}}\" }\n"), "s.toml:7: users[0].tasks[0].json: `{{data.nope}}` is not a column".into()),
        (task("tags = [\"a b\"]\n"), "s.toml:5: users[0].tasks[0].tags[0]: \"a b\": a tag is letters, digits, _, - and .".into()),
        (task("tags = \"x\"\n"), "s.toml:5: users[0].tasks[0].tags: \"x\": tags are a list of labels".into()),
        (task("tags = { team = 1 }\n"), "s.toml:5: users[0].tasks[0].tags.team: 1: a tag's value is a string".into()),
        (task("tags = { \"a:b\" = \"x\" }\n"), "s.toml:5: users[0].tasks[0].tags.a:b: a key has no control characters".into()),
        (task("tags = { status = \"x\" }\n"), "s.toml:5: users[0].tasks[0].tags.status: `status` is a system tag".into()),
        (task("group = \"a::::b\"\n"), "s.toml:5: users[0].tasks[0].group: `a::::b`: a group is a name".into()),
        ("[[setup]]\npath = \"/{{setup.t}}\"\ntags = [\"s\"]\n".to_owned() + "[[setup]]\npath = \"/\"\ncapture = { t = \"/t\" }\n" + VALID_TAIL, "setup[0].path: `{{setup.t}}` is not captured".into()),
    ];
    for (text, want) in cases {
        let err = match check(&text) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(&want), "\n{text}\nwant: {want}\n got: {err}");
    }
    // A CSV saved by a spreadsheet, with a byte order mark, names its columns plainly.
    let bom = write("bom.csv", "\u{feff}key,secret\na,1\n");
    let s = check(&(data(&bom, "") + &task("headers = { k = \"{{data.key}}\" }\n")))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.data.column_names(), ["key", "secret"]);
    let _ = std::fs::remove_file(bom);
    // A tagged request named by a path with setup's values needs a name.
    let text = "[[setup]]\npath = \"/\"\ncapture = { t = \"/t\" }\n[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/{{setup.t}}\"\ntags = [\"x\"]\n";
    let err = check(text).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("s.toml:8: users[0].tasks[0].tags: a tagged request whose path takes setup's values needs a name"), "{err}");
    for f in [
        good, other, ragged, empty, twice, bad_column, lines, missing, txt,
    ] {
        let _ = std::fs::remove_file(f);
    }
}

#[test]
fn a_missing_file_is_an_error_naming_it() {
    let err = load(Path::new("/nonexistent/plan.toml")).err().unwrap();
    assert!(
        err.to_string()
            .starts_with("/nonexistent/plan.toml: cannot read it:"),
        "{err}"
    );
}
