//! The run's series against the target's own clock: every second of the CSV history, the
//! first and the last included, holds what the target served in that second.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{aiotest, text};

fn wall_us() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_micros(),
    )
    .unwrap()
}

/// A target that logs how many requests arrived in each wall-clock second, and answers
/// in 2 ms in even seconds and 12 ms in odd ones: the rate changes every second, so a
/// series a second late cannot pass for right.
fn counting_target() -> (std::net::SocketAddr, Arc<Mutex<BTreeMap<u64, u64>>>) {
    let log: Arc<Mutex<BTreeMap<u64, u64>>> = Arc::default();
    let seen = Arc::clone(&log);
    let addr = super::serve(move |_, _| {
        let now = wall_us();
        *seen.lock().unwrap().entry(now / 1_000_000).or_default() += 1;
        let ms = if (now / 1_000_000).is_multiple_of(2) {
            2
        } else {
            12
        };
        std::thread::sleep(Duration::from_millis(ms));
        hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from_static(b"ok")))
    });
    (addr, log)
}

/// `(interval end in µs, requests in the interval)` of the history's aggregated rows.
fn history(path: &std::path::Path) -> Vec<(u64, u64)> {
    let mut r = csv::Reader::from_path(path).unwrap();
    let mut rows = Vec::new();
    let mut before = 0u64;
    for rec in r.records() {
        let rec = rec.unwrap();
        if &rec[5] != "Aggregated" {
            continue;
        }
        let end = (rec[0].parse::<f64>().unwrap() * 1e6).round() as u64;
        let so_far: u64 = rec[11].parse().unwrap();
        rows.push((end, so_far - before));
        before = so_far;
    }
    rows
}

#[test]
fn every_second_of_the_history_is_the_targets_own_count_first_and_last_included() {
    check_history("series", &["-u", "4"]);
}

/// Users that wait over a second between requests (Locust's `between(1, 2)`) hand their
/// records on while they wait: none arrives after its second closed.
#[test]
fn users_that_think_for_seconds_do_not_hold_their_records_back() {
    let json = check_history("series-think", &["-u", "20", "--wait", "0.8..1.6"]);
    let notes = json["notes"].to_string();
    assert!(!notes.contains("late"), "{notes}");
    // A healthy generator: no note of its own health, and it did measure itself.
    assert!(!notes.contains("the generator"), "{notes}");
    let measured = json["metrics"]
        .as_array()
        .is_some_and(|m| m.iter().any(|m| m["name"] == "generator_delay"));
    assert!(measured, "no generator_delay in {}", json["metrics"]);
}

/// Runs 5 s against the counting target with `extra`, checks the history against the
/// target's log and returns the summary export.
fn check_history(name: &str, extra: &[&str]) -> serde_json::Value {
    let (addr, log) = counting_target();
    let prefix = std::env::temp_dir().join(format!("aiotest-it-{}-{name}", std::process::id()));
    let export = super::export_path(name);
    let url = format!("http://{addr}/");
    let mut args = vec![
        "run",
        &url,
        "-t",
        "5s",
        "-q",
        "--csv",
        prefix.to_str().unwrap(),
        "--summary-export",
        export.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = aiotest(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let history_path = std::path::PathBuf::from(format!("{}_history.csv", prefix.display()));
    let rows = history(&history_path);
    let served = log.lock().unwrap().clone();
    let total: u64 = served.values().sum();
    assert_eq!(rows.iter().map(|r| r.1).sum::<u64>(), total, "{rows:?}");
    assert!(rows.len() >= 5, "{rows:?}");
    // The rows' ends are the seconds' ends, but the last (the run's end).
    for (i, &(end, n)) in rows.iter().enumerate() {
        let second = (end - 1) / 1_000_000;
        if i + 1 < rows.len() {
            assert_eq!(end % 1_000_000, 0, "row {i} ends on a second: {rows:?}");
        }
        let want = served.get(&second).copied().unwrap_or(0);
        // A request sent in the last microseconds of a second reaches the target in the
        // next: a few may cross the boundary.
        assert!(
            n.abs_diff(want) <= 3 + want / 50,
            "second {second} (row {i} of {}): the history has {n}, the target served {want}\n{rows:?}\n{served:?}",
            rows.len()
        );
    }
    for suffix in aiotest_runner::csv::FILES {
        let _ = std::fs::remove_file(format!("{}_{suffix}.csv", prefix.display()));
    }
    let json = serde_json::from_str(&std::fs::read_to_string(&export).unwrap()).unwrap();
    let _ = std::fs::remove_file(export);
    json
}

/// A ramping arrival rate against the target's own clock: 0 -> 600/s over 2 s, then 2 s
/// at 600/s. The target stamps every request's arrival; counted in whole seconds from
/// the first, each second holds what the schedule says (150, 450, 600, 600) to within
/// 2% (a request sent at a second's edge may land in the next).
#[test]
fn a_ramping_arrival_rate_arrives_second_by_second_as_scheduled() {
    let stamps: Arc<Mutex<Vec<u64>>> = Arc::default();
    let seen = Arc::clone(&stamps);
    let addr = super::serve(move |_, _| {
        seen.lock().unwrap().push(wall_us());
        hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from_static(b"ok")))
    });
    let file = super::TempFile::new(
        "ramping-arrival",
        &format!(
            "host = \"http://{addr}\"\n\
             [[users]]\nname = \"u\"\n[[users.tasks]]\nname = \"get\"\npath = \"/\"\n\
             [[scenarios]]\nname = \"ramp\"\nexecutor = \"ramping-arrival-rate\"\n\
             users = [\"u\"]\nstart_rate = 0\n\
             stages = [{{ duration = \"2s\", target = 600 }}, {{ duration = \"2s\", target = 600 }}]\n\
             pre_allocated_vus = 20\nmax_vus = 20\n"
        ),
    );
    let json = super::run_file(file.path(), "ramping-arrival", &[]);
    let sc = &json["scenarios"][0];
    let done = sc["iterations"].as_u64().unwrap();
    let dropped = sc["dropped_iterations"].as_u64().unwrap();
    assert_eq!(done + dropped, 1_800, "{sc}");
    let mut stamps = stamps.lock().unwrap().clone();
    assert_eq!(stamps.len() as u64, done, "the target got every iteration");
    stamps.sort_unstable();
    let first = stamps[0];
    let mut per_second = [0u64; 4];
    for s in &stamps {
        let k = ((s - first) / 1_000_000).min(3) as usize;
        per_second[k] += 1;
    }
    for (k, want) in [150u64, 450, 600, 600].into_iter().enumerate() {
        let got = per_second[k];
        assert!(
            got.abs_diff(want) <= 3 + want / 50,
            "second {k}: {got}, scheduled {want} ({per_second:?})"
        );
    }
}
