//! `cargo xtask bench --memory`: RSS per idle user holding a keep-alive connection, for
//! 1,000, 10,000 and 50,000 users (the open-files limit raised up to the hard limit, and
//! said), and a full-speed run whose RSS is sampled every 10 s (it must stay flat).

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::rig::{self, Target};
use crate::dist_test::Guard;

const USERS: [u64; 3] = [1_000, 10_000, 50_000];

/// The resident set of `pid`, in KiB.
fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn interrupt(child: &Child) {
    let _ = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
}

/// `aiotest run --url URL -u N --wait 600 -q` on CPU 1: every user makes one request and
/// then waits, holding its connection.
fn idle_users(target: &Target, users: u64) -> Result<Guard, String> {
    let mut cmd = rig::command(
        users + 100,
        rig::GENERATOR_CPU,
        &rig::release_bin("aiotest"),
    );
    cmd.args(["run", "--url", &target.url(), "-u", &users.to_string()])
        .args(["--wait", "600", "-t", "10m", "-q"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    Ok(Guard(
        Some(cmd.spawn().map_err(|e| format!("aiotest: {e}"))?),
        "aiotest",
    ))
}

/// The RSS once it has settled: sampled every 500 ms until two samples 2 s apart differ
/// by under 1% (all users started and connected), at most `limit`.
fn settled_rss(pid: u32, limit: Duration) -> Result<u64, String> {
    let start = Instant::now();
    let mut history: Vec<u64> = Vec::new();
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = rss_kb(pid).ok_or("aiotest ended early")?;
        history.push(now);
        if history.len() > 4 {
            let before = history[history.len() - 5];
            if before > 0 && (now as f64 - before as f64).abs() / (before as f64) < 0.01 {
                return Ok(now);
            }
        }
        if start.elapsed() > limit {
            return Ok(now);
        }
    }
}

fn idle(target: &Target) -> Result<(), String> {
    let hard = rig::hard_files_limit();
    println!(
        "bench --memory: each aiotest gets an open-files limit of users + 100, raised up to \
         the hard limit ({hard})"
    );
    let mut base = idle_users(target, 1)?;
    let pid = base.0.as_ref().map(Child::id).unwrap_or_default();
    let one = settled_rss(pid, Duration::from_secs(20))?;
    if let Some(c) = base.0.as_ref() {
        interrupt(c);
    }
    base.wait(Duration::from_secs(30))?;
    println!("\n| users | RSS | RSS per user beyond the first |\n|---|---|---|");
    println!("| 1 | {:.1} MB | |", one as f64 / 1024.0);
    for users in USERS {
        if users + 100 > hard {
            println!(
                "| {users} | skipped: needs {} open files, the hard limit is {hard} | |",
                users + 100
            );
            continue;
        }
        let mut run = idle_users(target, users)?;
        let pid = run.0.as_ref().map(Child::id).unwrap_or_default();
        let rss = settled_rss(pid, Duration::from_secs(60))?;
        if let Some(c) = run.0.as_ref() {
            interrupt(c);
        }
        run.wait(Duration::from_secs(60))?;
        let per = (rss.saturating_sub(one)) as f64 * 1024.0 / (users - 1) as f64;
        println!(
            "| {users} | {:.1} MB | {:.1} KiB |",
            rss as f64 / 1024.0,
            per / 1024.0
        );
    }
    Ok(())
}

fn long_run(target: &Target, seconds: u64) -> Result<(), String> {
    let mut cmd = rig::command(200, rig::GENERATOR_CPU, &rig::release_bin("aiotest"));
    cmd.args(["run", "--url", &target.url(), "-u", "50", "-q"])
        .args(["-t", &format!("{seconds}s")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let mut run = Guard(
        Some(cmd.spawn().map_err(|e| format!("aiotest: {e}"))?),
        "aiotest",
    );
    let pid = run.0.as_ref().map(Child::id).unwrap_or_default();
    let start = Instant::now();
    let mut samples = Vec::new();
    for k in 1..=seconds / 10 {
        let at = Duration::from_secs(k * 10);
        if let Some(wait) = at.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        match rss_kb(pid) {
            Some(kb) => samples.push((k * 10, kb)),
            None => break,
        }
    }
    run.wait(Duration::from_secs(60))?;
    println!("\nfull speed, 50 users, {seconds} s: RSS every 10 s");
    println!(
        "{}",
        samples
            .iter()
            .map(|(t, kb)| format!("{t}s {:.1} MB", *kb as f64 / 1024.0))
            .collect::<Vec<_>>()
            .join(", ")
    );
    // Flat: from the second sample on (the first includes start-up), within 10%.
    if let (Some(&(_, first)), Some(max), Some(min)) = (
        samples.get(1),
        samples.iter().skip(1).map(|s| s.1).max(),
        samples.iter().skip(1).map(|s| s.1).min(),
    ) {
        let spread = (max - min) as f64 / first as f64 * 100.0;
        println!(
            "from 20 s on: {:.1} to {:.1} MB, a spread of {spread:.1}% ({})",
            min as f64 / 1024.0,
            max as f64 / 1024.0,
            if spread <= 10.0 { "flat" } else { "NOT flat" }
        );
    }
    Ok(())
}

/// `--memory [--seconds N]` (the full-speed run's length, default 120).
pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let seconds = match args {
        [] => 120,
        [flag, n] if flag == "--seconds" => n
            .parse::<u64>()
            .ok()
            .filter(|n| (20..=3_600).contains(n))
            .ok_or("--seconds needs 20 to 3600")?,
        _ => return Err("bench --memory takes only --seconds N".into()),
    };
    super::build_release()?;
    let most = USERS.iter().copied().max().unwrap_or(0) + 100;
    let target = Target::start(most.min(rig::hard_files_limit()))?;
    println!("bench --memory: target {}", target.what);
    idle(&target)?;
    long_run(&target, seconds)
}
