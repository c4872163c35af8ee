//! The rig of the end-to-end benchmarks: a target pinned to CPU 0 (nginx when installed,
//! else the in-repo `bench_target`), programs pinned to CPU 1 and measured by GNU time
//! (wall time, user and system CPU, peak RSS of the child), and the open-files limit.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::dist_test::{Guard, free_port};
use crate::util::{have, root};

/// The CPU of the target; generators run on the other one.
pub(crate) const TARGET_CPU: &str = "0";
/// The CPU of the program measured.
pub(crate) const GENERATOR_CPU: &str = "1";

/// A running target, stopped when dropped.
pub(crate) struct Target {
    pub(crate) port: u16,
    /// The same answer over TLS (HTTP/1.1), when nginx and openssl are installed.
    pub(crate) tls_port: Option<u16>,
    /// What it is, for the report.
    pub(crate) what: String,
    _process: Guard,
    dir: PathBuf,
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Target {
    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// The URL over TLS, when the target serves it.
    pub(crate) fn tls_url(&self) -> Option<String> {
        self.tls_port.map(|p| format!("https://127.0.0.1:{p}/"))
    }

    /// Starts nginx (access log off, unlimited keep-alive, a 2-byte body, one worker
    /// process and no master) or, without nginx, `bench_target`; pinned to CPU 0, with
    /// room for `connections` connections.
    pub(crate) fn start(connections: u64) -> Result<Target, String> {
        let port = free_port()?;
        let dir = std::env::temp_dir().join(format!("aiotest-bench-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_file());
        let mut tls_port = None;
        let (child, what) = match nginx {
            Some(nginx) => {
                let conf = dir.join("nginx.conf");
                let files = connections + 100;
                // The same answer over TLS, when a certificate can be made.
                let tls = if self_signed(&dir).is_ok() {
                    let p = free_port()?;
                    tls_port = Some(p);
                    format!(
                        "  server {{\n    listen 127.0.0.1:{p} ssl backlog=4096;\n    \
                         ssl_certificate {d}/cert.pem;\n    ssl_certificate_key {d}/key.pem;\n    \
                         location / {{ return 200 \"ok\"; }}\n  }}\n",
                        d = dir.display()
                    )
                } else {
                    String::new()
                };
                std::fs::write(
                    &conf,
                    format!(
                        "worker_processes 1;\nmaster_process off;\ndaemon off;\n\
                         pid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
                         worker_rlimit_nofile {files};\n\
                         events {{ worker_connections {files}; }}\n\
                         http {{\n  access_log off;\n  keepalive_requests 1000000000;\n  \
                         keepalive_timeout 600s;\n  server {{\n    listen 127.0.0.1:{port} backlog=4096;\n    \
                         location / {{ return 200 \"ok\"; }}\n  }}\n{tls}}}\n",
                        d = dir.display()
                    ),
                )
                .map_err(|e| format!("{}: {e}", conf.display()))?;
                let (child, version) = spawn_nginx(&nginx, &dir, files)?;
                (
                    child,
                    format!(
                        "{version} (one worker process, access log off, unlimited keep-alive, 2-byte body)"
                    ),
                )
            }
            None => {
                let bin = release_bin("bench_target");
                let child = command(connections + 100, TARGET_CPU, &bin)
                    .arg(format!("127.0.0.1:{port}"))
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .map_err(|e| format!("{}: {e}", bin.display()))?;
                (
                    child,
                    "the in-repo bench_target (hyper, one thread; nginx is not installed: \
                     apt-get install nginx-light for the reference target)"
                        .to_owned(),
                )
            }
        };
        let process = Guard(Some(child), "the target");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() >= deadline {
                return Err(format!("the target never listened on port {port}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Some(p) = tls_port {
            while TcpStream::connect(("127.0.0.1", p)).is_err() {
                if Instant::now() >= deadline {
                    return Err(format!("the target never listened on port {p}"));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(Target {
            port,
            tls_port,
            what: format!("{what}, pinned to CPU {TARGET_CPU}"),
            _process: process,
            dir,
        })
    }
}

/// A self-signed certificate for 127.0.0.1 in `DIR/cert.pem` and `DIR/key.pem` (the
/// generators do not check it), made by openssl.
pub(crate) fn self_signed(dir: &Path) -> Result<(), String> {
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=127.0.0.1", "-keyout"])
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("openssl: {e}"))?;
    if made.success() {
        Ok(())
    } else {
        Err("openssl could not make a certificate".into())
    }
}

/// nginx (the binary `nginx`) with the configuration `DIR/nginx.conf`, pinned to the
/// target's CPU with room for `files` open files; its version, for the report.
pub(crate) fn spawn_nginx(
    nginx: &Path,
    dir: &Path,
    files: u64,
) -> Result<(std::process::Child, String), String> {
    let version = Command::new(nginx)
        .arg("-v")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_owned())
        .unwrap_or_default();
    let child = command(files, TARGET_CPU, nginx)
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .arg("-e")
        .arg(dir.join("error.log"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("nginx: {e}"))?;
    Ok((
        child,
        version.trim_start_matches("nginx version: ").to_owned(),
    ))
}

/// `target/release/NAME`.
pub(crate) fn release_bin(name: &str) -> PathBuf {
    root().join("target/release").join(name)
}

/// `PROGRAM` pinned to `cpu` with the open-files limit raised to `files` (bounded by the
/// hard limit): `prlimit --nofile=N:N -- taskset -c CPU PROGRAM`.
pub(crate) fn command(files: u64, cpu: &str, program: &Path) -> Command {
    let limit = files.min(hard_files_limit());
    let mut c = Command::new("prlimit");
    c.arg(format!("--nofile={limit}:{limit}"))
        .args(["--", "taskset", "-c", cpu])
        .arg(program);
    c
}

/// The hard limit of open files (`ulimit -Hn`), which an unprivileged process may raise
/// its own limit to.
pub(crate) fn hard_files_limit() -> u64 {
    Command::new("sh")
        .args(["-c", "ulimit -Hn"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(1024)
}

/// What GNU time measured of one child.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Usage {
    pub(crate) wall_s: f64,
    pub(crate) user_s: f64,
    pub(crate) sys_s: f64,
    pub(crate) max_rss_kb: u64,
}

/// Runs `program args` pinned to CPU 1 with `files` open files allowed, under GNU time;
/// returns its usage and its standard output.
pub(crate) fn measure(
    program: &Path,
    args: &[String],
    files: u64,
) -> Result<(Usage, String), String> {
    if !Path::new("/usr/bin/time").is_file() {
        return Err("GNU time (/usr/bin/time) is missing: apt-get install time".into());
    }
    let out_file = std::env::temp_dir().join(format!("aiotest-bench-time-{}", std::process::id()));
    let mut cmd = command(files, GENERATOR_CPU, Path::new("/usr/bin/time"));
    cmd.args(["-f", "%e %U %S %M", "-o"])
        .arg(&out_file)
        .arg(program)
        .args(args);
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("{}: {e}", program.display()))?;
    let text = std::fs::read_to_string(&out_file).map_err(|e| format!("GNU time's output: {e}"))?;
    let _ = std::fs::remove_file(&out_file);
    let last = text.lines().last().unwrap_or_default();
    let f: Vec<&str> = last.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
    let usage = match (num(0), num(1), num(2), num(3)) {
        (Some(wall_s), Some(user_s), Some(sys_s), Some(rss)) => Usage {
            wall_s,
            user_s,
            sys_s,
            max_rss_kb: rss as u64,
        },
        _ => {
            return Err(format!(
                "{}: GNU time said `{}`",
                program.display(),
                text.trim()
            ));
        }
    };
    if !out.status.success() {
        return Err(format!(
            "{} {} failed ({}): {}",
            program.display(),
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout).trim()
        ));
    }
    Ok((usage, String::from_utf8_lossy(&out.stdout).into_owned()))
}

/// Whether `program` is installed, for the optional generators (wrk, oha).
pub(crate) fn installed(program: &str) -> Option<PathBuf> {
    have(program).then(|| PathBuf::from(program))
}
