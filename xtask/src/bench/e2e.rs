//! `cargo xtask bench`: aiotest against wrk (and oha when installed), same target, same
//! machine, same run: the target on CPU 0, each generator in turn on CPU 1 (A B A B),
//! then the open model at 80% of aiotest's closed-loop maximum.

use std::path::Path;

use super::rig::{self, Target, Usage};
use crate::dist_test::{json_f64, json_number};

/// What the benchmark runs, from its flags.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) rounds: usize,
    pub(crate) seconds: u64,
    pub(crate) connections: u64,
    /// `--open`: only the open model, at 50 and at 500 users.
    pub(crate) open: bool,
}

impl Options {
    pub(crate) fn parse(args: &[String]) -> Result<Options, String> {
        let mut o = Options {
            rounds: 3,
            seconds: 8,
            connections: 50,
            open: false,
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let value = |it: &mut std::slice::Iter<'_, String>| {
                it.next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .filter(|v| *v > 0)
                    .ok_or_else(|| format!("{flag} needs a whole number above 0"))
            };
            match flag.as_str() {
                "--open" => o.open = true,
                "--rounds" => o.rounds = value(&mut it)?.min(20) as usize,
                "--seconds" => o.seconds = value(&mut it)?.min(600),
                "--connections" => o.connections = value(&mut it)?.min(10_000),
                other => {
                    return Err(format!(
                        "bench: unknown flag `{other}` (--rounds N, --seconds N, --connections N, --open; \
                         --memory; --http2; --scripts; --criterion [ARGS])"
                    ));
                }
            }
        }
        Ok(o)
    }
}

/// One generator's run.
#[derive(Debug, Clone, Copy)]
struct Sample {
    requests: u64,
    secs: f64,
    usage: Usage,
}

impl Sample {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.secs.max(1e-9)
    }

    /// CPU microseconds per request: (user, system).
    fn cpu_us(&self) -> (f64, f64) {
        let n = self.requests.max(1) as f64;
        (self.usage.user_s * 1e6 / n, self.usage.sys_s * 1e6 / n)
    }
}

fn export_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("aiotest-bench-{}-{name}.json", std::process::id()))
}

/// What an open-model run showed besides its sample: iterations dropped, p99 from the
/// intended start and the service p99 (the time each request itself took), in ms.
#[derive(Debug, Clone, Copy, Default)]
struct Open {
    dropped: u64,
    p99_ms: f64,
    service_p99_ms: f64,
}

fn aiotest(
    target: &Target,
    o: &Options,
    rate: Option<(u64, &str)>,
) -> Result<(Sample, Open), String> {
    aiotest_at(&target.url(), o, rate)
}

/// `aiotest run --url URL -u N -t Ss -q --summary-export FILE` with `extra` flags, pinned
/// and measured: its usage and its export's text.
pub(super) fn aiotest_export(
    url: &str,
    extra: &[String],
    o: &Options,
) -> Result<(Usage, String), String> {
    let export = export_path("aiotest");
    let mut args: Vec<String> = vec![
        "run".into(),
        "--url".into(),
        url.into(),
        "-u".into(),
        o.connections.to_string(),
        "-t".into(),
        format!("{}s", o.seconds),
        "-q".into(),
        "--summary-export".into(),
        export.display().to_string(),
    ];
    args.extend_from_slice(extra);
    let (usage, _) = rig::measure(&rig::release_bin("aiotest"), &args, o.connections + 100)?;
    let json = std::fs::read_to_string(&export).map_err(|e| format!("aiotest's export: {e}"))?;
    let _ = std::fs::remove_file(&export);
    Ok((usage, json))
}

/// [`aiotest`] against `url` (`--insecure` for https).
fn aiotest_at(url: &str, o: &Options, rate: Option<(u64, &str)>) -> Result<(Sample, Open), String> {
    let mut extra: Vec<String> = Vec::new();
    if url.starts_with("https://") {
        extra.push("--insecure".into());
    }
    if let Some((r, max_delay)) = rate {
        extra.extend([
            "--rate".into(),
            r.to_string(),
            "--max-users".into(),
            o.connections.to_string(),
            "--max-delay".into(),
            max_delay.into(),
        ]);
    }
    let (usage, json) = aiotest_export(url, &extra, o)?;
    let requests = json_number(&json, "totals", "requests").ok_or("no totals.requests")?;
    let secs = json_f64(&json, "duration_s").ok_or("no duration_s")?;
    let open = Open {
        dropped: json_number(&json, "scenarios", "dropped_iterations").unwrap_or(0),
        p99_ms: json
            .find("\"totals\"")
            .and_then(|at| json_f64(&json[at..], "p99_ms"))
            .unwrap_or(0.0),
        // The open model keeps each request's service time beside its latency from the
        // intended start.
        service_p99_ms: json
            .find("\"totals\"")
            .and_then(|at| json_f64(&json[at..], "service_p99_ms"))
            .unwrap_or(0.0),
    };
    Ok((
        Sample {
            requests,
            secs,
            usage,
        },
        open,
    ))
}

/// `wrk -t1 -cN -dSs URL`: "N requests in 8.00s".
fn wrk(target: &Target, o: &Options) -> Result<Sample, String> {
    wrk_at(&target.url(), o)
}

/// [`wrk`] against `url`.
fn wrk_at(url: &str, o: &Options) -> Result<Sample, String> {
    let args = vec![
        "-t1".to_owned(),
        format!("-c{}", o.connections),
        format!("-d{}s", o.seconds),
        url.to_owned(),
    ];
    let (usage, out) = rig::measure(Path::new("wrk"), &args, o.connections + 100)?;
    let line = out
        .lines()
        .find(|l| l.contains(" requests in "))
        .ok_or_else(|| format!("wrk said: {out}"))?;
    let mut words = line.split_whitespace();
    let requests = words
        .next()
        .and_then(|n| n.parse().ok())
        .ok_or("wrk count")?;
    let secs = line
        .split(" requests in ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .and_then(|d| d.trim().strip_suffix('s'))
        .and_then(|d| d.parse().ok())
        .ok_or_else(|| format!("wrk duration in `{line}`"))?;
    Ok(Sample {
        requests,
        secs,
        usage,
    })
}

/// `oha -z Ss -c N --no-tui URL`: "Requests/sec:" and "Total:".
fn oha(target: &Target, o: &Options) -> Result<Sample, String> {
    let args = vec![
        "-z".to_owned(),
        format!("{}s", o.seconds),
        "-c".to_owned(),
        o.connections.to_string(),
        "--no-tui".to_owned(),
        target.url(),
    ];
    let (usage, out) = rig::measure(Path::new("oha"), &args, o.connections + 100)?;
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    let rps = field("Requests/sec:").ok_or_else(|| format!("oha said: {out}"))?;
    let secs = field("Total:").ok_or_else(|| format!("oha said: {out}"))?;
    Ok(Sample {
        requests: (rps * secs).round() as u64,
        secs,
        usage,
    })
}

pub(super) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

type Generator = (
    &'static str,
    fn(&Target, &Options) -> Result<Sample, String>,
);

/// Runs the benchmark and prints its table.
pub(crate) fn run(o: &Options) -> Result<(), String> {
    super::build_release()?;
    let target = Target::start(o.connections)?;
    let mut gens: Vec<Generator> = vec![("aiotest", |t, o| aiotest(t, o, None).map(|(s, _)| s))];
    let mut missing = Vec::new();
    for (name, f) in [
        (
            "wrk",
            wrk as fn(&Target, &Options) -> Result<Sample, String>,
        ),
        ("oha", oha),
    ] {
        if rig::installed(name).is_some() {
            gens.push((name, f));
        } else {
            missing.push(name);
        }
    }
    println!(
        "bench: target {}; generators pinned to CPU {}; {} connections, {} s, {} rounds in turns",
        target.what,
        rig::GENERATOR_CPU,
        o.connections,
        o.seconds,
        o.rounds
    );
    if !missing.is_empty() {
        println!("bench: not installed, left out: {}", missing.join(", "));
    }
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); gens.len()];
    for round in 1..=o.rounds {
        for (i, (name, f)) in gens.iter().enumerate() {
            let s = f(&target, o)?;
            println!(
                "bench: round {round}/{}: {name:<8} {:>9.0} req/s",
                o.rounds,
                s.rps()
            );
            samples[i].push(s);
        }
    }
    let rows: Vec<Row> = gens
        .iter()
        .zip(&samples)
        .map(|((name, _), s)| Row::of(name, s))
        .collect();
    let wrk = rows.iter().find(|r| r.name == "wrk").cloned();
    println!();
    println!(
        "| generator | req/s median | min | max | CPU us/request (user + sys) | peak RSS | req/s vs wrk | CPU/request vs wrk |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for r in &rows {
        r.print(wrk.as_ref());
    }
    // Over TLS (HTTP/1.1): aiotest and wrk in turns.
    match (target.tls_url(), &wrk) {
        (Some(url), Some(_)) => {
            let mut tls: [Vec<Sample>; 2] = [Vec::new(), Vec::new()];
            for _ in 0..o.rounds {
                tls[0].push(aiotest_at(&url, o, None)?.0);
                tls[1].push(wrk_at(&url, o)?);
            }
            let (a, w) = (
                Row::of("aiotest (TLS)", &tls[0]),
                Row::of("wrk (TLS)", &tls[1]),
            );
            for r in [&a, &w] {
                r.print(Some(&w));
            }
        }
        _ => println!("bench: no TLS rows (they need nginx, openssl and wrk)"),
    }
    // The open model at 25%, 50% and 80% of the closed loop's maximum, as k6 does it (an
    // iteration that finds every user busy is dropped), and far past it (its ceiling).
    open_rows(&target, o, &[(o.connections, rows[0].rps)], 1)
}

/// `cargo xtask bench --open`: aiotest's closed loop at 50 and at 500 users, then the
/// open model at 25%, 50% and 80% of each one's maximum, and at twice it (the open
/// model's ceiling), in turns, `rounds` times.
pub(crate) fn open(o: &Options) -> Result<(), String> {
    super::build_release()?;
    let target = Target::start(500)?;
    println!(
        "bench: target {}; aiotest pinned to CPU {}; {} s a run, {} rounds",
        target.what,
        rig::GENERATOR_CPU,
        o.seconds,
        o.rounds
    );
    let mut closed = Vec::new();
    for users in [50, 500] {
        let c = Options {
            connections: users,
            ..o.clone()
        };
        let mut s = Vec::new();
        for _ in 0..o.rounds {
            s.push(aiotest(&target, &c, None)?.0);
        }
        let rps = median(s.iter().map(Sample::rps).collect());
        println!("bench: closed loop, {users} users: {rps:.0} req/s (median)");
        closed.push((users, rps));
    }
    open_rows(&target, o, &closed, o.rounds)
}

/// One open-model run's row.
struct OpenRow {
    users: u64,
    share: f64,
    max_delay: &'static str,
    rate: u64,
    samples: Vec<(Sample, Open)>,
}

/// The open model at 25%, 50% and 80% of each closed loop's maximum (`(users, req/s)`)
/// as k6 does it (an iteration that finds every user busy is dropped), at 80% letting an
/// iteration wait up to 10 ms for a user (as wrk2 queues), and at 200% (the ceiling),
/// `rounds` times in turns: the median round's achieved rate
/// against the schedule (every iteration one request), iterations dropped, the p99 from
/// the intended start beside the service p99.
fn open_rows(
    target: &Target,
    o: &Options,
    closed: &[(u64, f64)],
    rounds: usize,
) -> Result<(), String> {
    let mut rows: Vec<OpenRow> = Vec::new();
    for &(users, rps) in closed {
        for (share, max_delay) in [
            (0.25, "0s"),
            (0.5, "0s"),
            (0.8, "0s"),
            (0.8, "10ms"),
            (2.0, "0s"),
        ] {
            rows.push(OpenRow {
                users,
                share,
                max_delay,
                rate: (rps * share).round().max(1.0) as u64,
                samples: Vec::new(),
            });
        }
    }
    for _ in 0..rounds {
        for r in &mut rows {
            let c = Options {
                connections: r.users,
                ..o.clone()
            };
            let run = aiotest(target, &c, Some((r.rate, r.max_delay)))?;
            println!(
                "bench: open model, {} users, --rate {} --max-delay {}: {:.0}/s, {} dropped",
                r.users,
                r.rate,
                r.max_delay,
                run.0.requests as f64 / o.seconds as f64,
                run.1.dropped
            );
            r.samples.push(run);
        }
    }
    println!();
    println!(
        "| open model | asked | achieved (median round) | achieved/asked | dropped | p99 from the intended start | service p99 | CPU us/request (user + sys) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for r in &mut rows {
        // The round with the median count of requests.
        r.samples.sort_by_key(|(s, _)| s.requests);
        let (s, open) = r.samples[r.samples.len() / 2];
        let due = r.rate as f64 * o.seconds as f64;
        let (user, sys) = s.cpu_us();
        let what = if r.share > 1.0 {
            format!(
                "{} users, ceiling: {:.0}x the closed loop",
                r.users, r.share
            )
        } else {
            format!(
                "{} users, {:.0}% of the closed loop, --max-delay {}",
                r.users,
                r.share * 100.0,
                r.max_delay
            )
        };
        println!(
            "| {what} | {}/s | {:.0}/s | {:.2}% | {} | {:.2} ms | {:.2} ms | {:.2} ({user:.2} + {sys:.2}) |",
            r.rate,
            s.requests as f64 / o.seconds as f64,
            s.requests as f64 / due * 100.0,
            open.dropped,
            open.p99_ms,
            open.service_p99_ms,
            user + sys,
        );
    }
    Ok(())
}

/// Medians of one generator's rounds.
#[derive(Debug, Clone)]
struct Row {
    name: &'static str,
    rps: f64,
    min: f64,
    max: f64,
    user_us: f64,
    sys_us: f64,
    rss_kb: u64,
}

impl Row {
    fn of(name: &'static str, s: &[Sample]) -> Row {
        let rps: Vec<f64> = s.iter().map(Sample::rps).collect();
        Row {
            name,
            rps: median(rps.clone()),
            min: rps.iter().copied().fold(f64::INFINITY, f64::min),
            max: rps.iter().copied().fold(0.0, f64::max),
            user_us: median(s.iter().map(|x| x.cpu_us().0).collect()),
            sys_us: median(s.iter().map(|x| x.cpu_us().1).collect()),
            rss_kb: median(s.iter().map(|x| x.usage.max_rss_kb as f64).collect()) as u64,
        }
    }

    fn cpu(&self) -> f64 {
        self.user_us + self.sys_us
    }

    /// Its line of the table, against `base` (wrk's row) when there is one.
    fn print(&self, base: Option<&Row>) {
        let (vs_rps, vs_cpu) = match base {
            Some(w) => (
                format!("{:.2}x", self.rps / w.rps),
                format!("{:.2}x", self.cpu() / w.cpu()),
            ),
            None => ("-".into(), "-".into()),
        };
        println!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.2} ({:.2} + {:.2}) | {:.1} MB | {vs_rps} | {vs_cpu} |",
            self.name,
            self.rps,
            self.min,
            self.max,
            self.cpu(),
            self.user_us,
            self.sys_us,
            self.rss_kb as f64 / 1024.0
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_json_numbers() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        let json = "{\"duration_s\": 8.0,\n\"totals\": {\"requests\": 12}}";
        assert_eq!(json_f64(json, "duration_s"), Some(8.0));
        assert!(Options::parse(&["--rounds".into(), "0".into()]).is_err());
        assert!(Options::parse(&["--fast".into()]).is_err());
        assert_eq!(Options::parse(&[]).map(|o| o.rounds).ok(), Some(3));
        assert!(Options::parse(&["--open".into()]).is_ok_and(|o| o.open));
    }
}
