//! `cargo xtask bench --scripts`: a k6-style script whose default function is one
//! `http.get`, beside the scenario file making the same request (A B A B, each pinned to
//! CPU 1, the target on CPU 0); then what a VU idle in `sleep()` costs, and how long 1,000
//! VUs take to start and run one iteration each.

use std::path::PathBuf;

use super::e2e::{Options, median};
use super::rig::{self, Target, Usage};
use crate::dist_test::{json_f64, json_number};

/// The benchmark's files, removed when it ends.
struct Files(PathBuf);

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Files {
    fn write(target: &Target) -> Result<Files, String> {
        let dir =
            std::env::temp_dir().join(format!("aiotest-bench-scripts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let url = target.url();
        let files = [
            (
                "get.js",
                format!(
                    "import http from 'k6/http';\nexport default function () {{ http.get('{url}'); }}\n"
                ),
            ),
            (
                "get.toml",
                format!(
                    "[[users]]\nname = \"get\"\nwait_time = 0\n[[users.tasks]]\npath = \"{url}\"\n"
                ),
            ),
            (
                "idle.js",
                format!(
                    "import http from 'k6/http';\nimport {{ sleep }} from 'k6';\nexport default function () {{ http.get('{url}'); sleep(30); }}\n"
                ),
            ),
        ];
        for (name, text) in files {
            std::fs::write(dir.join(name), text).map_err(|e| format!("{name}: {e}"))?;
        }
        Ok(Files(dir))
    }

    fn path(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

/// The VUs of the memory and start-up rows.
const VUS: u64 = 1_000;

/// What one run of aiotest measured and counted.
struct Ran {
    usage: Usage,
    requests: u64,
    failures: u64,
    secs: f64,
}

/// `aiotest run FILE ARGS -q --summary-export X`: its usage and the requests it made.
fn aiotest(file: &str, args: &[&str], files: u64) -> Result<Ran, String> {
    let export = std::env::temp_dir().join(format!(
        "aiotest-bench-scripts-{}-export.json",
        std::process::id()
    ));
    let mut all: Vec<String> = vec!["run".into(), file.into()];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    all.extend([
        "-q".into(),
        "--summary-export".into(),
        export.display().to_string(),
    ]);
    let (usage, _) = rig::measure(&rig::release_bin("aiotest"), &all, files)?;
    let json = std::fs::read_to_string(&export).map_err(|e| format!("aiotest's export: {e}"))?;
    let _ = std::fs::remove_file(&export);
    let requests = json_number(&json, "totals", "requests").ok_or("no totals.requests")?;
    let failures = json_number(&json, "totals", "failures").ok_or("no totals.failures")?;
    let secs = json_f64(&json, "duration_s").ok_or("no duration_s")?;
    Ok(Ran {
        usage,
        requests,
        failures,
        secs,
    })
}

/// Runs the benchmark and prints its tables.
pub(crate) fn run(o: &Options) -> Result<(), String> {
    super::build_release()?;
    // Room for the 1,000 VUs of the memory and start-up rows.
    let target = Target::start(o.connections.max(VUS + 100))?;
    let files = Files::write(&target)?;
    println!(
        "bench --scripts: target {}; aiotest pinned to CPU {}; {} VUs, {} s, {} rounds in turns",
        target.what,
        rig::GENERATOR_CPU,
        o.connections,
        o.seconds,
        o.rounds
    );
    let users = o.connections.to_string();
    let secs = format!("{}s", o.seconds);
    let load = ["-u", users.as_str(), "-t", secs.as_str()];
    let fronts = [
        ("get.js", files.path("get.js")),
        ("get.toml", files.path("get.toml")),
    ];
    // (req/s, CPU µs per request (user, sys)) per round, per front end.
    let mut seen: [Vec<(f64, f64, f64)>; 2] = [Vec::new(), Vec::new()];
    for round in 1..=o.rounds {
        for (i, (name, file)) in fronts.iter().enumerate() {
            let Ran {
                usage,
                requests,
                secs,
                ..
            } = aiotest(file, &load, o.connections + 100)?;
            let n = requests.max(1) as f64;
            let rps = requests as f64 / secs.max(1e-9);
            println!(
                "bench: round {round}/{}: {name:<14} {rps:>9.0} req/s",
                o.rounds
            );
            seen[i].push((rps, usage.user_s * 1e6 / n, usage.sys_s * 1e6 / n));
        }
    }
    println!();
    println!(
        "| front end | req/s median | min | max | CPU us/request (user + sys) | req/s vs the file |"
    );
    println!("|---|---|---|---|---|---|");
    let file_rps = median(seen[1].iter().map(|s| s.0).collect());
    for ((name, _), s) in fronts.iter().zip(&seen) {
        let rps: Vec<f64> = s.iter().map(|x| x.0).collect();
        let user = median(s.iter().map(|x| x.1).collect());
        let sys = median(s.iter().map(|x| x.2).collect());
        let m = median(rps.clone());
        println!(
            "| `aiotest run {name} -u {} -t {}` | {m:.0} | {:.0} | {:.0} | {:.2} ({user:.2} + {sys:.2}) | {:.2}x |",
            o.connections,
            secs,
            rps.iter().copied().fold(f64::INFINITY, f64::min),
            rps.iter().copied().fold(0.0, f64::max),
            user + sys,
            m / file_rps.max(1e-9),
        );
    }
    // A VU idle in sleep(): peak RSS at 1 and at 1,000 VUs, each after one request.
    let idle = files.path("idle.js");
    let vus = VUS.to_string();
    let one = aiotest(&idle, &["-u", "1", "-t", "4s"], 200)?.usage;
    let many = aiotest(&idle, &["-u", &vus, "-t", "4s"], VUS + 200)?.usage;
    let per_vu = (many.max_rss_kb.saturating_sub(one.max_rss_kb)) as f64 / 999.0;
    println!();
    println!("| VUs idle in sleep() | peak RSS | per VU beyond the first |");
    println!("|---|---|---|");
    println!("| 1 | {:.1} MB | |", one.max_rss_kb as f64 / 1024.0);
    println!(
        "| 1,000 | {:.1} MB | {per_vu:.0} KiB |",
        many.max_rss_kb as f64 / 1024.0
    );
    // 1,000 VUs started (init code each) and one iteration each, the whole process.
    let start = aiotest(&files.path("get.js"), &["-u", &vus, "-i", &vus], VUS + 200)?;
    println!();
    println!(
        "1,000 VUs initialised, one iteration each ({} requests, {} failed): {:.2} s wall, {:.2} s user + {:.2} s system CPU",
        start.requests, start.failures, start.usage.wall_s, start.usage.user_s, start.usage.sys_s
    );
    Ok(())
}
