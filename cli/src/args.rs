//! The command line's arguments and the parsers of their values.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use aiotest_core::shape::{Stage, validate_users};
use aiotest_core::wait::WaitTime;
use clap::{Args, Parser, Subcommand};

/// aiotest: a load-testing framework.
#[derive(Debug, Parser)]
#[command(name = "aiotest", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a load test.
    Run(RunArgs),
}

/// `aiotest run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// A scenario file (TOML), a k6-style script (.js), or a URL to test (http:// or
    /// https://, as --url).
    pub scenario: Option<PathBuf>,
    /// Test one URL (like hey or oha): GET unless -X or a body says otherwise.
    #[arg(long, conflicts_with_all = ["scenario", "demo"])]
    pub url: Option<String>,
    /// --url: the request method (GET, or POST with a body).
    #[arg(short = 'X', long, value_parser = crate::quick::parse_method)]
    pub method: Option<String>,
    /// --url: a request header, `Name: value` (repeatable).
    #[arg(long = "header", value_parser = crate::quick::parse_header)]
    pub headers: Vec<(String, String)>,
    /// --url: the request body.
    #[arg(long)]
    pub body: Option<String>,
    /// --url: the request body, read from this file (at most 64 MiB).
    #[arg(long)]
    pub body_file: Option<PathBuf>,
    /// --url: a JSON request body (checked; sets content-type: application/json).
    #[arg(long)]
    pub json: Option<String>,
    /// Longest time for one attempt, connecting included (default 30s; at most 1h).
    #[arg(long, value_parser = crate::quick::parse_timeout)]
    pub timeout: Option<Duration>,
    /// Retries of idempotent requests after connection errors, timeouts, 502-504
    /// (default 3; 0 to 10).
    #[arg(long, value_parser = crate::quick::parse_retries)]
    pub max_retries: Option<u32>,
    /// Accept any TLS certificate (verify_ssl = false).
    #[arg(long)]
    pub insecure: bool,
    /// Speak HTTP/2 to http:// URLs from the first byte (h2c by prior knowledge), for
    /// servers that serve HTTP/2 without TLS.
    #[arg(long)]
    pub h2c: bool,
    /// Redirects a request follows, each hop recorded (default 10; 0 turns it off).
    #[arg(long, value_parser = crate::quick::parse_redirects)]
    pub max_redirects: Option<u32>,
    /// The largest response body, e.g. 10MiB (default 64MiB): a larger one fails as
    /// body_too_large.
    #[arg(long, value_parser = crate::quick::parse_body_limit)]
    pub max_response_body: Option<u64>,
    /// Connect to ADDRESS where a URL names NAME (k6's `hosts`), repeatable: NAME is a
    /// host or host:port, ADDRESS an IP or ip:port; the URL, Host header and TLS keep the
    /// name. Over a script's `options.hosts`.
    #[arg(long = "hosts", value_name = "NAME=ADDRESS", value_parser = parse_host_mapping)]
    pub hosts: Vec<(String, String)>,
    /// A client certificate (PEM) for servers that require one (mutual TLS).
    #[arg(long)]
    pub client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long)]
    pub client_key: Option<PathBuf>,
    /// Start an embedded target on 127.0.0.1 and test it (with a scenario file: the file's
    /// users test the embedded target).
    #[arg(long)]
    pub demo: bool,
    /// The host to test, overriding the user types' hosts.
    #[arg(short = 'H', long, value_parser = parse_host)]
    pub host: Option<String>,
    /// Number of users (default 1; 10 with --demo; at most 1000000).
    #[arg(short = 'u', long, value_parser = parse_users)]
    pub users: Option<u32>,
    /// Users started (or stopped) per second (default: all within a second).
    #[arg(short = 'r', long, value_parser = parse_rate)]
    pub spawn_rate: Option<f64>,
    /// How long to run: 30s, 5m, 1h30m (default: until stopped; 10s with --demo).
    #[arg(short = 't', long, value_parser = parse_duration)]
    pub run_time: Option<Duration>,
    /// k6-style stages instead of -u/-t: DURATION:USERS,... e.g. 10s:50,1m:50,10s:0.
    #[arg(long, value_parser = parse_stages_arg, conflicts_with_all = ["users", "run_time"])]
    pub stages: Option<StagesArg>,
    /// Open model: start this many iterations per second (k6's constant-arrival-rate),
    /// whatever earlier ones take; needs -t. -u sets the users started beforehand.
    #[arg(long, value_parser = parse_arrival_rate, conflicts_with_all = ["stages", "iterations"])]
    pub rate: Option<f64>,
    /// With --rate: most users at once; an iteration due when all are busy is dropped
    /// and counted (default: enough for 30 s of iterations in flight, at least 10).
    #[arg(long, value_parser = parse_users, requires = "rate")]
    pub max_users: Option<u32>,
    /// With --rate: let an iteration that finds all --max-users busy wait this long for
    /// one to come free (the wait counts in its latency) instead of dropping it at once.
    #[arg(long, value_parser = parse_duration, requires = "rate")]
    pub max_delay: Option<Duration>,
    /// Run this many iterations in all, shared by the -u users (k6's shared-iterations,
    /// like `k6 run -i`); -t bounds it (default 10m).
    #[arg(short = 'i', long, value_parser = parse_iterations, conflicts_with = "stages")]
    pub iterations: Option<u64>,
    /// Wait after each request for --url/--demo: seconds (0.5) or a range (0.5..1.5).
    #[arg(long, value_parser = parse_wait)]
    pub wait: Option<WaitArg>,
    /// Skip setup.
    #[arg(long)]
    pub no_setup: bool,
    /// Skip teardown.
    #[arg(long)]
    pub no_teardown: bool,
    /// Graceful stop period for users to finish their task in flight.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub stop_timeout: Duration,
    /// Write the summary as JSON to this file.
    #[arg(long, value_parser = parse_output_path)]
    pub summary_export: Option<PathBuf>,
    /// Write a self-contained HTML report (charts, tables, thresholds) to this file.
    #[arg(long, value_parser = parse_output_path)]
    pub html: Option<PathBuf>,
    /// Write PREFIX_stats.csv, PREFIX_failures.csv and PREFIX_history.csv (Locust's
    /// three files).
    #[arg(long, value_parser = parse_output_path)]
    pub csv: Option<PathBuf>,
    /// Distinct request names kept apart; past it, new names are counted under `(other)`
    /// (1 to 100000).
    #[arg(long, default_value = "1000", value_parser = parse_max_endpoints)]
    pub max_endpoints: usize,
    /// Keep each response's timing breakdown as k6's trends (`http_req_blocked`,
    /// `http_req_connecting`, `http_req_tls_handshaking`, `http_req_sending`,
    /// `http_req_waiting`, `http_req_receiving`) under the request's tags; on by itself
    /// when a threshold reads one.
    #[arg(long)]
    pub timings: bool,
    /// Exit 0 even when not one request succeeded (by default that run exits 1): for a
    /// test that expects a target to refuse.
    #[arg(long)]
    pub allow_failures: bool,
    /// A pass/fail criterion, e.g. "p95<300ms", "failures<1%", "rps>100" (repeatable).
    #[arg(long = "threshold")]
    pub thresholds: Vec<String>,
    /// Run only the scenario file's tasks with one of these tags (comma-separated or
    /// repeated).
    #[arg(long, value_delimiter = ',', value_parser = parse_tag)]
    pub tags: Vec<String>,
    /// Leave out the scenario file's tasks with any of these tags.
    #[arg(long, value_delimiter = ',', value_parser = parse_tag)]
    pub exclude_tags: Vec<String>,
    /// A tag of the whole test, KEY=VALUE (repeatable): every named-metric sample
    /// carries it (k6's --tag).
    #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = parse_test_tag)]
    pub tag: Vec<(String, String)>,
    /// Serve /metrics and the control API (/api/state, pause, resume, stop, quit, users)
    /// here, e.g. 127.0.0.1:8089. Off by default.
    #[arg(long)]
    pub control_addr: Option<SocketAddr>,
    /// Bearer token for the control API; required when --control-addr is not loopback.
    #[arg(long, requires = "control_addr")]
    pub control_token: Option<String>,
    /// Run as the master of a distributed test (with --redis and --expect-workers).
    #[arg(long, conflicts_with = "worker", requires = "redis")]
    pub master: bool,
    /// Run as a worker of a distributed test: no scenario needed, the master sends it.
    #[arg(long, requires = "redis", conflicts_with_all = ["url", "demo", "scenario", "html", "csv", "summary_export"])]
    pub worker: bool,
    /// The Redis a distributed test meets in: `redis://[user:password@]host:port`, or `rediss://`.
    #[arg(long)]
    pub redis: Option<String>,
    /// A PEM file of CA certificates to trust for a `rediss://` Redis (a private CA).
    #[arg(long, requires = "redis", value_name = "PEM")]
    pub redis_ca: Option<std::path::PathBuf>,
    /// Distributed runs with the same id meet; different ids share a Redis unseen
    /// (letters, digits, `.`, `_`, `-`; at most 64).
    #[arg(long, default_value = "default", value_parser = parse_run_id)]
    pub run_id: String,
    /// Master: workers to wait for before starting (1 to 10000).
    #[arg(long, default_value = "1", value_parser = parse_workers)]
    pub expect_workers: usize,
    /// Master: how long to wait for them.
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    pub worker_wait: Duration,
    /// Silence after which the master marks a worker MISSING (at least 2s: two heartbeats).
    #[arg(long, value_parser = parse_liveness, default_value = "5s")]
    pub liveness_timeout: Duration,
    /// Worker: exit when the master is lost instead of waiting for a new one.
    #[arg(long)]
    pub exit_on_master_loss: bool,
    /// Worker: a master silent this long is lost; the worker stops its users (so no load
    /// goes unrecorded) and waits for a master again (at least 2s).
    #[arg(long, value_parser = parse_two_beats, default_value = "10s")]
    pub master_timeout: Duration,
    /// How long Redis may be unreachable before a master ends its run (exit 1, with the
    /// summary of what arrived) or a waiting worker exits.
    #[arg(long, value_parser = parse_two_beats, default_value = "30s")]
    pub redis_timeout: Duration,
    /// Keep the control API (--control-addr) up after the run, with the final figures,
    /// until POST /api/quit or Ctrl-C.
    #[arg(long)]
    pub linger: bool,
    /// No progress line, no keys, no logs; the summary and the one-line reason a run
    /// failed are still printed.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Log level: error, warn, info, debug, trace.
    #[arg(short = 'L', long, default_value = "warn", value_parser = parse_level)]
    pub loglevel: tracing::Level,
}

/// A `--wait` value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WaitArg {
    /// Always the same.
    Fixed(f64),
    /// Uniform in a range.
    Between(f64, f64),
}

impl WaitArg {
    /// As a core wait time.
    pub fn to_wait_time(self) -> WaitTime {
        match self {
            WaitArg::Fixed(s) => WaitTime::fixed(s),
            WaitArg::Between(a, b) => WaitTime::between(a, b),
        }
    }
}

pub use aiotest_core::duration::parse_duration;

/// A `--stages` value. A newtype so clap takes the list as one value: for an
/// `Option<Vec<T>>` field clap expects many values of `T`.
#[derive(Debug, Clone, PartialEq)]
pub struct StagesArg(pub Vec<Stage>);

fn parse_stages_arg(s: &str) -> Result<StagesArg, String> {
    parse_stages(s).map(StagesArg)
}

/// Parses `10s:50,1m:50,10s:0`.
pub fn parse_stages(s: &str) -> Result<Vec<Stage>, String> {
    let stages =
        s.split(',')
            .enumerate()
            .map(|(i, part)| {
                let (d, u) = part.split_once(':').ok_or_else(|| {
                    format!(
                        "stage {} (`{part}`): use DURATION:USERS, e.g. 30s:50",
                        i + 1
                    )
                })?;
                let duration = parse_duration(d).map_err(|e| format!("stage {}: {e}", i + 1))?;
                let users = u.trim().parse::<u64>().map_err(|_| {
                    format!("stage {} (`{part}`): `{u}` is not a user count", i + 1)
                })?;
                let users = validate_users(users)
                    .map_err(|e| format!("stage {} (`{part}`): {e}", i + 1))?;
                Ok(Stage::new(duration, users))
            })
            .collect::<Result<Vec<_>, String>>()?;
    if stages.iter().all(|s| s.duration.is_zero()) {
        return Err("the stages add up to no time at all".into());
    }
    Ok(stages)
}

/// Parses `0`, `0.5` or `0.5..1.5`.
pub fn parse_wait(s: &str) -> Result<WaitArg, String> {
    let num = |v: &str| -> Result<f64, String> {
        let n: f64 = v
            .trim()
            .parse()
            .map_err(|_| format!("invalid wait `{s}`: use seconds (0.5) or a range (0.5..1.5)"))?;
        if !n.is_finite() || n < 0.0 {
            return Err(format!("invalid wait `{s}`: seconds must be 0 or more"));
        }
        Ok(n)
    };
    match s.split_once("..") {
        Some((a, b)) => {
            let (a, b) = (num(a)?, num(b)?);
            if a > b {
                return Err(format!(
                    "invalid wait `{s}`: the minimum is above the maximum"
                ));
            }
            Ok(WaitArg::Between(a, b))
        }
        None => Ok(WaitArg::Fixed(num(s)?)),
    }
}

/// Parses a user count: a whole number up to `MAX_USERS`.
fn parse_users(s: &str) -> Result<u32, String> {
    let n: u64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a user count (a whole number)"))?;
    validate_users(n).map_err(|e| e.to_string())
}

/// Checks a `-H` URL the way every runner and client does: a bad port is an error.
fn parse_host(s: &str) -> Result<String, String> {
    // `-H 'Authorization: Bearer x'` is curl's and oha's header flag; here it is the host.
    if let Some((name, rest)) = s.split_once(':')
        && !name.is_empty()
        && !matches!(name, "http" | "https")
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        // `localhost:8080` is a host and a port.
        && !rest.split('/').next().is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!(
            "`{s}` looks like a header: -H is the host (as in Locust); use --header '{s}'"
        ));
    }
    let u = aiotest_core::url::parse_base_url(s).map_err(|e| format!("`{s}`: {e}"))?;
    if u.rest.contains(['?', '#']) {
        return Err(format!("`{s}`: a host must not have a query string"));
    }
    Ok(s.to_owned())
}

fn parse_run_id(s: &str) -> Result<String, String> {
    aiotest_coordinator::wire::check_run_id(s).map_err(|e| e.to_string())?;
    Ok(s.to_owned())
}

fn parse_workers(s: &str) -> Result<usize, String> {
    let max = aiotest_runner::distributed::MAX_WORKERS;
    match s.trim().parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(format!("`{s}` is not a worker count from 1 to {max}")),
    }
}

fn parse_liveness(s: &str) -> Result<Duration, String> {
    parse_two_beats(s).map_err(|e| format!("{e}: healthy workers would go MISSING"))
}

/// A timeout of at least two heartbeats (2 s): anything shorter fires between two of
/// them.
fn parse_two_beats(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_secs(2) {
        return Err(format!("`{s}` is under two heartbeats (2s)"));
    }
    Ok(d)
}

/// A file to write at the end of the run: its directory must exist now, so a typo fails
/// before any request rather than after the whole run.
fn parse_output_path(s: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(s);
    if s.is_empty() || s.ends_with('/') {
        return Err(format!("`{s}` is not a file name"));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(format!(
            "`{s}`: the directory {} does not exist",
            dir.display()
        ));
    }
    Ok(path)
}

fn parse_max_endpoints(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if (1..=aiotest_metrics::MAX_ENDPOINTS_LIMIT).contains(&n) => Ok(n),
        _ => Err(format!(
            "`{s}`: a number of request names from 1 to {}",
            aiotest_metrics::MAX_ENDPOINTS_LIMIT
        )),
    }
}

fn parse_arrival_rate(s: &str) -> Result<f64, String> {
    let r: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a rate (iterations per second)"))?;
    if !r.is_finite() || r <= 0.0 || r > 1e7 {
        return Err(format!(
            "`{s}`: a rate is more than 0 and at most 10000000 iterations per second"
        ));
    }
    Ok(r)
}

fn parse_iterations(s: &str) -> Result<u64, String> {
    match s.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("`{s}` is not a number of iterations (1 or more)")),
    }
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let r: f64 = s
        .parse()
        .map_err(|_| format!("invalid spawn rate `{s}`: a number of users per second"))?;
    if r.is_nan() || r <= 0.0 {
        return Err(format!("invalid spawn rate `{s}`: must be above 0"));
    }
    Ok(r)
}

fn parse_level(s: &str) -> Result<tracing::Level, String> {
    s.parse()
        .map_err(|_| format!("invalid log level `{s}`: use error, warn, info, debug or trace"))
}

/// A tag of `--tags`/`--exclude-tags`: letters, digits, `_`, `-` and `.`.
fn parse_tag(s: &str) -> Result<String, String> {
    let tag = s.trim();
    if tag.is_empty()
        || !tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
    {
        return Err(format!("`{s}`: a tag is letters, digits, _, - and ."));
    }
    Ok(tag.to_owned())
}

fn parse_host_mapping(s: &str) -> Result<(String, String), String> {
    let (name, address) = s.split_once('=').ok_or_else(|| {
        format!("`{s}`: write NAME=ADDRESS, e.g. --hosts shop.example.com=127.0.0.1:8080")
    })?;
    // Checked as the HTTP user will read it.
    aiotest_http_user::HttpUser::builder()
        .resolve(name, address)
        .build()
        .map_err(|e| e.to_string())?;
    Ok((name.to_owned(), address.to_owned()))
}

fn parse_test_tag(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}`: a tag is KEY=VALUE, e.g. --tag env=staging"))?;
    aiotest_core::tag::check(k, v).map_err(|why| format!("`{s}`: {why}"))?;
    Ok((k.to_owned(), v.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ok = [
            ("30s", 30.0),
            ("5m", 300.0),
            ("1h30m", 5_400.0),
            ("500ms", 0.5),
            ("1.5s", 1.5),
            ("10", 10.0),
            ("1m30s", 90.0),
        ];
        for (s, secs) in ok {
            assert_eq!(
                parse_duration(s).unwrap(),
                Duration::from_secs_f64(secs),
                "{s}"
            );
        }
        for bad in ["", "abc", "5x", "-3s", "1h30", "s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_duration("5x").unwrap_err(),
            "invalid duration `5x`: use e.g. 500ms, 30s, 5m, 1h30m"
        );
    }

    #[test]
    fn stages_and_waits() {
        let st = parse_stages("10s:50,1m:50,10s:0").unwrap();
        assert_eq!(
            st,
            vec![
                Stage::new(Duration::from_secs(10), 50),
                Stage::new(Duration::from_secs(60), 50),
                Stage::new(Duration::from_secs(10), 0),
            ]
        );
        assert_eq!(
            parse_stages("10s").unwrap_err(),
            "stage 1 (`10s`): use DURATION:USERS, e.g. 30s:50"
        );
        assert_eq!(
            parse_stages("10s:5,3q:1").unwrap_err(),
            "stage 2: invalid duration `3q`: use e.g. 500ms, 30s, 5m, 1h30m"
        );
        assert_eq!(
            parse_stages("10s:x").unwrap_err(),
            "stage 1 (`10s:x`): `x` is not a user count"
        );
        assert_eq!(parse_wait("0.5").unwrap(), WaitArg::Fixed(0.5));
        assert_eq!(parse_wait("0.5..1.5").unwrap(), WaitArg::Between(0.5, 1.5));
        assert!(
            parse_wait("2..1")
                .unwrap_err()
                .contains("minimum is above the maximum")
        );
        assert!(parse_wait("-1").is_err());
        assert!(parse_wait("soon").is_err());
    }
}
