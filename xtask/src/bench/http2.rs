//! `cargo xtask bench --http2`: aiotest beside h2load (Debian's `nghttp2-client`) over
//! HTTP/2, 50 connections of one stream each, against nginx on CPU 0: over TLS (ALPN) and
//! without it (h2c, by prior knowledge), the generators in turns on CPU 1.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::e2e::{Options, median};
use super::rig::{self, Usage};
use crate::dist_test::{Guard, free_port, json_f64, json_number};

/// nginx serving HTTP/2 in clear text on one port and over TLS on another.
struct Target {
    h2c: u16,
    tls: u16,
    what: String,
    _process: Guard,
    dir: PathBuf,
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Target {
    fn start(connections: u64) -> Result<Target, String> {
        let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .ok_or("nginx is missing: apt-get install nginx-light")?;
        let (h2c, tls) = (free_port()?, free_port()?);
        let dir = std::env::temp_dir().join(format!("aiotest-bench-h2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        rig::self_signed(&dir)?;
        let files = connections + 100;
        let conf = dir.join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                "worker_processes 1;\nmaster_process off;\ndaemon off;\n\
                 pid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
                 worker_rlimit_nofile {files};\n\
                 events {{ worker_connections {files}; }}\n\
                 http {{\n  access_log off;\n  keepalive_requests 1000000000;\n  \
                 keepalive_timeout 600s;\n  \
                 server {{\n    listen 127.0.0.1:{h2c} http2 backlog=4096;\n    \
                 location / {{ return 200 \"ok\"; }}\n  }}\n  \
                 server {{\n    listen 127.0.0.1:{tls} ssl http2 backlog=4096;\n    \
                 ssl_certificate {d}/cert.pem;\n    ssl_certificate_key {d}/key.pem;\n    \
                 location / {{ return 200 \"ok\"; }}\n  }}\n}}\n",
                d = dir.display()
            ),
        )
        .map_err(|e| format!("{}: {e}", conf.display()))?;
        let (child, version) = rig::spawn_nginx(&nginx, &dir, files)?;
        let process = Guard(Some(child), "nginx");
        let deadline = Instant::now() + Duration::from_secs(10);
        for port in [h2c, tls] {
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                if Instant::now() >= deadline {
                    return Err(format!("nginx never listened on port {port}"));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(Target {
            h2c,
            tls,
            what: format!(
                "{version} (HTTP/2, one worker process, access log off, 2-byte body), pinned to CPU {}",
                rig::TARGET_CPU
            ),
            _process: process,
            dir,
        })
    }
}

/// One generator's run: requests, seconds, usage.
type Ran = (u64, f64, Usage);

/// `h2load -cN -m1 -D S URL`: "N succeeded" of "requests:", and "finished in Xs".
fn h2load(url: &str, o: &Options) -> Result<Ran, String> {
    let args = vec![
        format!("-c{}", o.connections),
        "-m1".to_owned(),
        "-D".to_owned(),
        o.seconds.to_string(),
        url.to_owned(),
    ];
    let (usage, out) = rig::measure(Path::new("h2load"), &args, o.connections + 100)?;
    let succeeded = out
        .lines()
        .find_map(|l| l.strip_prefix("requests: "))
        .and_then(|l| {
            l.split(", ")
                .find_map(|p| p.strip_suffix(" succeeded"))
                .and_then(|n| n.parse().ok())
        })
        .ok_or_else(|| format!("h2load said: {out}"))?;
    let secs = out
        .lines()
        .find_map(|l| l.strip_prefix("finished in "))
        .and_then(|l| l.split(',').next())
        .and_then(|d| d.trim().strip_suffix('s'))
        .and_then(|d| d.parse().ok())
        .ok_or_else(|| format!("h2load's duration: {out}"))?;
    Ok((succeeded, secs, usage))
}

/// `aiotest run --url URL (--h2c | --insecure) -u N -t Ss -q`.
fn aiotest(url: &str, h2c: bool, o: &Options) -> Result<Ran, String> {
    let flag = if h2c { "--h2c" } else { "--insecure" };
    let (usage, json) = super::e2e::aiotest_export(url, &[flag.to_owned()], o)?;
    let requests = json_number(&json, "totals", "requests").ok_or("no totals.requests")?;
    let failures = json_number(&json, "totals", "failures").unwrap_or(0);
    let secs = json_f64(&json, "duration_s").ok_or("no duration_s")?;
    Ok((requests - failures, secs, usage))
}

/// Runs the benchmark and prints its table.
pub(crate) fn run(o: &Options) -> Result<(), String> {
    for tool in ["h2load", "openssl"] {
        if rig::installed(tool).is_none() {
            return Err(format!(
                "{tool} is missing: apt-get install {}",
                if tool == "h2load" {
                    "nghttp2-client"
                } else {
                    "openssl"
                }
            ));
        }
    }
    super::build_release()?;
    let target = Target::start(o.connections)?;
    println!(
        "bench --http2: target {}; generators pinned to CPU {}; {} connections x 1 stream, {} s, {} rounds in turns",
        target.what,
        rig::GENERATOR_CPU,
        o.connections,
        o.seconds,
        o.rounds
    );
    println!();
    println!(
        "| protocol | generator | req/s median | min | max | CPU us/request (user + sys) | req/s vs h2load | CPU/request vs h2load |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (proto, h2c, url) in [
        ("h2c", true, format!("http://127.0.0.1:{}/", target.h2c)),
        ("TLS", false, format!("https://127.0.0.1:{}/", target.tls)),
    ] {
        // (req/s, CPU µs per request (user, sys)) per round: h2load, aiotest.
        let mut seen: [Vec<(f64, f64, f64)>; 2] = [Vec::new(), Vec::new()];
        for _ in 0..o.rounds {
            for (i, ran) in [h2load(&url, o)?, aiotest(&url, h2c, o)?]
                .into_iter()
                .enumerate()
            {
                let (n, secs, u) = ran;
                let per = n.max(1) as f64;
                seen[i].push((
                    n as f64 / secs.max(1e-9),
                    u.user_s * 1e6 / per,
                    u.sys_s * 1e6 / per,
                ));
            }
        }
        let stats = |s: &[(f64, f64, f64)]| {
            let rps: Vec<f64> = s.iter().map(|x| x.0).collect();
            (
                median(rps.clone()),
                rps.iter().copied().fold(f64::INFINITY, f64::min),
                rps.iter().copied().fold(0.0, f64::max),
                median(s.iter().map(|x| x.1).collect()),
                median(s.iter().map(|x| x.2).collect()),
            )
        };
        let h = stats(&seen[0]);
        for (name, s) in [("h2load", &seen[0]), ("aiotest", &seen[1])] {
            let (rps, min, max, user, sys) = stats(s);
            println!(
                "| {proto} | {name} | {rps:.0} | {min:.0} | {max:.0} | {:.2} ({user:.2} + {sys:.2}) | {:.2}x | {:.2}x |",
                user + sys,
                rps / h.0.max(1e-9),
                (user + sys) / (h.3 + h.4).max(1e-9)
            );
        }
    }
    Ok(())
}
