//! The generator's own health seen from outside: a process starved of CPU (stopped with
//! SIGSTOP for 400 ms, as a CPU quota or an overcommitted host does to it) is said to
//! have been the bottleneck on the terminal, in the summary's notes and the JSON export,
//! and its interval is marked in the CSV history and the HTML report's series.

use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::browser::Browser;
use super::{export_path, spawn_piped, target, text, wait_exit, wait_for};

#[test]
fn a_generator_starved_of_cpu_is_noted_and_its_interval_marked() {
    let t = target();
    let url = format!("http://{}/", t.addr);
    let export = export_path("starved");
    let prefix = export_path("starved-csv").with_extension("");
    let html = export_path("starved-html").with_extension("html");
    let child = spawn_piped(&[
        "run",
        "--url",
        &url,
        "-u",
        "2",
        "--wait",
        "0.005",
        "-t",
        "4s",
        "--summary-export",
        export.to_str().unwrap(),
        "--csv",
        prefix.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
    ]);
    let pid = child.id().to_string();
    wait_for("traffic", Duration::from_secs(20), || {
        t.served.load(Ordering::Relaxed) >= 20
    });
    let signal = |sig: &str| {
        let ok = Command::new("kill").args([sig, &pid]).status().unwrap();
        assert!(ok.success(), "kill {sig}");
    };
    signal("-STOP");
    std::thread::sleep(Duration::from_millis(400));
    signal("-CONT");
    let out = wait_exit(child, Duration::from_secs(30), "the starved run");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // Said once on the terminal.
    assert_eq!(
        stderr
            .matches("the generator is slowing its own requests")
            .count(),
        1,
        "{stderr}"
    );
    // Noted in the summary and the export, with the worst delay: about the stop.
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&export).unwrap()).unwrap();
    let notes: Vec<&str> = json["notes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n.as_str())
        .collect();
    let note = notes
        .iter()
        .find(|n| n.contains("the generator was a bottleneck"))
        .unwrap_or_else(|| panic!("no note in {notes:?}"));
    let worst: f64 = note
        .split("at worst ")
        .nth(1)
        .and_then(|r| r.split(" ms").next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!((300.0..5_000.0).contains(&worst), "{note}");
    assert!(text(&out.stdout).contains("the generator was a bottleneck"));
    // The CSV history's aggregate rows carry the delay: one interval at about the stop.
    let history = std::fs::read_to_string(format!("{}_history.csv", prefix.display())).unwrap();
    let head: Vec<&str> = history.lines().next().unwrap().split(',').collect();
    let col = head
        .iter()
        .position(|h| *h == "Generator Delay 99%")
        .unwrap();
    let delays: Vec<f64> = history
        .lines()
        .skip(1)
        .filter(|l| l.contains(",Aggregated,"))
        .filter_map(|l| l.split(',').nth(col)?.parse().ok())
        .collect();
    assert!(delays.len() >= 3, "{history}");
    assert!(delays.iter().any(|d| *d >= 300.0), "{delays:?}");
    // The report's series marks that interval, and its charts shade it.
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.contains("\"generator_late\":true"),
        "no marked interval"
    );
    let b = Browser::start(true);
    b.open(&format!("file://{}", html.display()));
    b.wait_for(
        "the generator's chart",
        Duration::from_secs(20),
        "return document.querySelectorAll('#chart-generator-delay polyline').length",
    );
    let shaded = b.eval(
        "return ['chart-rps', 'chart-latency', 'chart-generator-delay', 'chart-generator-cpu']
             .map(id => document.querySelectorAll('#' + id + ' rect.bound').length)",
    );
    for n in shaded.as_array().unwrap() {
        assert!(n.as_u64().unwrap() >= 1, "{shaded}");
    }
    drop(b);
    for f in aiotest_runner::csv::FILES {
        let _ = std::fs::remove_file(format!("{}_{f}.csv", prefix.display()));
    }
    let _ = std::fs::remove_file(export);
    let _ = std::fs::remove_file(html);
}
