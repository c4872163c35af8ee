//! The tags-and-groups example against the embedded demo target: rows under their tags
//! and group paths, checks by group, group durations, and thresholds on k6's built-in
//! metrics through those tags deciding the exit code.

mod common;

fn run(name: &str, thresholds: &[&str]) -> (Option<i32>, serde_json::Value) {
    common::run_example(env!("CARGO_BIN_EXE_checkout"), name, thresholds)
}

fn requests(json: &serde_json::Value, row: &str) -> u64 {
    json["endpoints"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["name"] == row))
        .and_then(|r| r["requests"].as_u64())
        .unwrap_or_else(|| panic!("no row {row}: {}", json["endpoints"]))
}

#[test]
fn tags_and_groups_are_counted_and_judged() {
    let (code, json) = run(
        "pass",
        &[
            "http_reqs{page:home} count>0",
            "http_req_duration{page:pay} p(95)<5000",
            "checks{group:::checkout::pay} rate==100%",
            "group_duration{group:::checkout} max<5000",
        ],
    );
    assert_eq!(code, Some(0), "{json}");
    let home = requests(&json, "/ {page:home}");
    let cart = requests(&json, "/cart {group:::checkout,page:cart}");
    let pay = requests(&json, "/pay {group:::checkout::pay,page:pay}");
    // One of each an iteration; an iteration cut by the end of the run has fewer.
    assert!(
        home >= cart && cart >= pay && home <= pay + 2,
        "{home} {cart} {pay}"
    );
    let checks: Vec<&str> = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        checks,
        [
            "::checkout::cart shown",
            "::checkout::pay::paid",
            "home shown"
        ]
    );
    let groups: Vec<&str> = json["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["name"] == "group_duration")
        .filter_map(|m| m["tags"]["group"].as_str())
        .collect();
    assert!(
        groups.contains(&"::checkout") && groups.contains(&"::checkout::pay"),
        "{groups:?}"
    );
    for failing in [
        "http_reqs{page:home} count<1",
        "http_req_duration{page:pay} max<0.001",
        "checks{group:::checkout} rate<1",
        "group_duration{group:::checkout::pay} max==0",
    ] {
        let (code, json) = run("fail", &[failing]);
        assert_eq!(code, Some(99), "{failing}: {}", json["thresholds"]);
    }
}
