//! `cargo xtask dist-test`: the distributed smoke test.
//!
//! Builds the CLI, starts a private redis-server and a counting HTTP target (a thread of
//! this process), one master and three worker processes on loopback; ramps up, pauses
//! (no request may be served while paused), resumes, and lets the stages end. Then checks
//! that the master's total equals the requests the target served, that every worker took
//! part and their counts add up, and that no process is left running.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::util::{cargo, root, run as step};

/// Kills a child process when dropped, so a failed check leaves nothing running.
pub(crate) struct Guard(pub(crate) Option<Child>, pub(crate) &'static str);

impl Guard {
    pub(crate) fn wait(&mut self, limit: Duration) -> Result<std::process::Output, String> {
        let deadline = Instant::now() + limit;
        let mut child = self.0.take().ok_or("already waited")?;
        loop {
            if child.try_wait().map_err(|e| e.to_string())?.is_some() {
                return child.wait_with_output().map_err(|e| e.to_string());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{} did not exit within {limit:?}", self.1));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub(crate) fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// A keep-alive HTTP/1.1 target on its own threads, counting the requests it answered.
fn start_target() -> Result<(u16, Arc<AtomicU64>), String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let served = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&served);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let counter = Arc::clone(&counter);
            std::thread::spawn(move || serve(stream, &counter));
        }
    });
    Ok((port, served))
}

fn serve(stream: TcpStream, counter: &AtomicU64) {
    let _ = stream.set_nodelay(true);
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        // A GET without a body ends at the blank line.
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) if line == "\r\n" => break,
                Ok(_) => {}
            }
        }
        // Counted before the answer: the client may count it before write_all returns.
        counter.fetch_add(1, Ordering::Relaxed);
        if writer
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .is_err()
        {
            return;
        }
    }
}

/// A POST to the master's control API.
pub(crate) fn post(port: u16, path: &str) -> Result<(), String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("control API: {e}"))?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    if !out.starts_with("HTTP/1.1 202") {
        return Err(format!("POST {path}: {}", out.lines().next().unwrap_or("")));
    }
    Ok(())
}

/// The whole number after `"key":` following `"section"` in the exported JSON.
pub(crate) fn json_number(json: &str, section: &str, key: &str) -> Option<u64> {
    let at = json.find(&format!("\"{section}\""))?;
    let v = json_f64(&json[at..], key)?;
    (v >= 0.0 && v.fract() == 0.0).then_some(v as u64)
}

/// The number (decimals allowed) after the first `"key":` in JSON text.
pub(crate) fn json_f64(json: &str, key: &str) -> Option<f64> {
    let at = json.find(&format!("\"{key}\""))?;
    let after = json[at + key.len() + 2..]
        .trim_start()
        .strip_prefix(':')?
        .trim_start();
    let end = after
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+')))
        .unwrap_or(after.len());
    after[..end].parse().ok()
}

fn check(ok: bool, what: &str, failures: &mut Vec<String>) {
    println!("dist-test: {} {what}", if ok { "ok  " } else { "FAIL" });
    if !ok {
        failures.push(what.to_owned());
    }
}

/// Runs the smoke test.
pub(crate) fn run(_extra: &[String]) -> Result<(), String> {
    crate::install::ensure_redis_server()?;
    step(
        "build the CLI",
        cargo().args(["build", "--quiet", "-p", "aiotest-cli"]),
    )?;
    let bin: PathBuf = root().join("target/debug/aiotest");
    let redis_port = free_port()?;
    let mut redis = Guard(
        Some(
            Command::new("redis-server")
                .args([
                    "--port",
                    &redis_port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("redis-server: {e}"))?,
        ),
        "redis-server",
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", redis_port)).is_err() {
        if Instant::now() > deadline {
            return Err("redis-server did not come up".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let redis_url = format!("redis://127.0.0.1:{redis_port}");
    let (target_port, served) = start_target()?;
    let control_port = free_port()?;
    let export =
        std::env::temp_dir().join(format!("aiotest-dist-test-{}.json", std::process::id()));
    let run_id = format!("dist-test-{}", std::process::id());

    let spawn = |args: &[&str], name: &'static str| -> Result<Guard, String> {
        let child = Command::new(&bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{name}: {e}"))?;
        Ok(Guard(Some(child), name))
    };
    let url = format!("http://127.0.0.1:{target_port}/");
    let control = format!("127.0.0.1:{control_port}");
    let export_s = export.to_string_lossy().into_owned();
    let mut master = spawn(
        &[
            "run",
            "--url",
            &url,
            "--master",
            "--expect-workers",
            "3",
            "--redis",
            &redis_url,
            "--run-id",
            &run_id,
            "--stages",
            "2s:30,4s:30,1s:0",
            "--wait",
            "0.005",
            "--control-addr",
            &control,
            "--summary-export",
            &export_s,
            "-q",
        ],
        "master",
    )?;
    let mut workers = Vec::new();
    for _ in 0..3 {
        workers.push(spawn(
            &[
                "run", "--worker", "--redis", &redis_url, "--run-id", &run_id, "-q",
            ],
            "worker",
        )?);
    }
    println!(
        "dist-test: master and 3 workers started (redis :{redis_port}, target :{target_port})"
    );

    let mut failures = Vec::new();
    // Wait for traffic, then pause in the hold stage.
    let deadline = Instant::now() + Duration::from_secs(30);
    while served.load(Ordering::Relaxed) < 500 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    check(
        served.load(Ordering::Relaxed) >= 500,
        "traffic flows through the workers",
        &mut failures,
    );
    std::thread::sleep(Duration::from_secs(2));
    post(control_port, "/api/pause")?;
    // Pause reaches every worker within a second; then nothing may be served.
    std::thread::sleep(Duration::from_millis(1_200));
    let at_pause = served.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(1_500));
    check(
        served.load(Ordering::Relaxed) == at_pause,
        "no request served while paused",
        &mut failures,
    );
    post(control_port, "/api/resume")?;
    std::thread::sleep(Duration::from_millis(800));
    check(
        served.load(Ordering::Relaxed) > at_pause,
        "traffic resumes",
        &mut failures,
    );

    let out = master.wait(Duration::from_secs(60))?;
    check(
        out.status.success(),
        "the master exits with 0",
        &mut failures,
    );
    let json = std::fs::read_to_string(&export).map_err(|e| format!("summary export: {e}"))?;
    let _ = std::fs::remove_file(&export);
    let total = json_number(&json, "totals", "requests").unwrap_or(0);
    let target = served.load(Ordering::Relaxed);
    println!("dist-test: master counted {total} requests, the target served {target}");
    check(
        total == target && total > 0,
        "the master's total equals the requests served",
        &mut failures,
    );

    let mut per_worker = Vec::new();
    for (i, w) in workers.iter_mut().enumerate() {
        let out = w.wait(Duration::from_secs(20))?;
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        let n = err
            .lines()
            .find_map(|l| l.split("worker done: ").nth(1))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        println!("dist-test: worker {i} sent {n} requests");
        check(
            out.status.success(),
            &format!("worker {i} exits with 0 after the master"),
            &mut failures,
        );
        per_worker.push(n);
    }
    check(
        per_worker.iter().all(|&n| n > 0),
        "every worker took part",
        &mut failures,
    );
    check(
        per_worker.iter().sum::<u64>() == total,
        "the workers' counts add up to the master's",
        &mut failures,
    );
    drop(redis.0.take().map(|mut r| {
        let _ = r.kill();
        r.wait()
    }));
    if failures.is_empty() {
        println!("dist-test: all checks passed");
        Ok(())
    } else {
        Err(format!("dist-test failed: {}", failures.join("; ")))
    }
}
