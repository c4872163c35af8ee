//! `aiotest run`: builds the user types and shape from the arguments, runs them, prints
//! the summary and decides the exit code.

use std::time::Duration;

use aiotest_core::lifecycle::Hooks;
use aiotest_core::prelude::*;
use aiotest_http_user::{HttpClient, HttpUser};
use aiotest_metrics::RequestMetricsEvent;
use std::sync::Arc;

use aiotest_metrics::PrometheusExporter;
use aiotest_runner::{
    LocalRunner, MasterRunner, RunConfig, RunError, RunReport, RunnerHandle, Summary, Threshold,
    serve_control,
};

/// The local runner, or the master of a distributed run: the same handle and report.
// Built once per process: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum AnyRunner {
    Local(LocalRunner),
    Master(Box<MasterRunner>),
}

impl AnyRunner {
    fn handle(&self) -> RunnerHandle {
        match self {
            AnyRunner::Local(r) => r.handle(),
            AnyRunner::Master(r) => r.handle(),
        }
    }

    async fn run(self) -> Result<RunReport, RunError> {
        match self {
            AnyRunner::Local(r) => r.run().await,
            AnyRunner::Master(r) => r.run().await,
        }
    }
}

use crate::Test;

use crate::args::RunArgs;
use crate::{EXIT_FAILED, EXIT_OK, EXIT_THRESHOLDS, EXIT_USAGE};

/// A user of `--url`: one GET of one URL per task.
struct UrlUser {
    client: HttpClient,
    path: &'static str,
}

async fn get_url(u: &mut UrlUser) -> TaskResult {
    u.client.get(u.path).send().await;
    Ok(())
}

/// A bad argument or input: reported with exit code 2 before anything runs.
#[derive(Debug)]
pub(crate) struct UsageError(pub(crate) String);

/// Splits `http://host:port/path?q` into the origin and the path with its query, after
/// the checks every front end shares: a port that does not parse, or a path no request
/// line can carry, is an error here, before any request.
fn split_url(url: &str) -> Result<(String, String), UsageError> {
    let bad = |why: String| UsageError(format!("--url `{url}`: {why}"));
    let u = aiotest_core::url::parse_base_url(url).map_err(|e| bad(e.to_string()))?;
    let path = u.rest.split('#').next().unwrap_or("");
    let path = if path.is_empty() {
        "/".to_owned()
    } else if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_owned()
    };
    aiotest_core::url::check_path(&path).map_err(|e| bad(e.to_string()))?;
    let scheme = if u.https { "https" } else { "http" };
    Ok((format!("{scheme}://{}", u.authority), path))
}

pub(crate) fn url_user_type(
    url: &str,
    wait: WaitTime,
    host_override: Option<&str>,
) -> Result<UserType, UsageError> {
    let (origin, path) = split_url(url)?;
    let http = HttpUser::builder()
        .host(host_override.unwrap_or(&origin))
        .build()
        .map_err(|e| UsageError(format!("--url: {e}")))?;
    // One string for the whole run, shared by every user without a copy per request.
    let path: &'static str = Box::leak(path.into_boxed_str());
    UserType::builder("url", move |ctx| UrlUser {
        client: http.client_for(ctx),
        path,
    })
    .wait_time(wait)
    .task("get", 1, get_url)
    .build()
    .map_err(|e| UsageError(e.to_string()))
}

fn shape(
    args: &RunArgs,
    default_users: u32,
    default_time: Option<Duration>,
) -> Result<Box<dyn LoadUserShape>, UsageError> {
    if let Some(stages) = &args.stages {
        let s =
            StagesShape::new(stages.0.clone()).map_err(|e| UsageError(format!("--stages: {e}")))?;
        return Ok(Box::new(s));
    }
    let users = args.users.unwrap_or(default_users);
    let rate = args.spawn_rate.unwrap_or(f64::from(users.max(1)));
    let s = ConstantShape::new(users, rate, args.run_time.or(default_time))
        .map_err(|e| UsageError(format!("-u/-r/-t: {e}")))?;
    Ok(Box::new(s))
}

/// Runs `aiotest run` (with the user types of a Rust binary, if given) and returns the
/// exit code.
pub(crate) async fn run(args: RunArgs, test: Option<Test>) -> i32 {
    match prepare_and_run(args, test).await {
        Ok(code) => code,
        Err(UsageError(msg)) => {
            eprintln!("aiotest: {msg}");
            EXIT_USAGE
        }
    }
}

async fn prepare_and_run(args: RunArgs, test: Option<Test>) -> Result<i32, UsageError> {
    if args.worker {
        return crate::distributed::run_worker(args, test).await;
    }
    // A scenario file is checked completely before anything starts.
    let scenario = match &args.scenario {
        Some(path) => Some(crate::scenario::load(path).map_err(|e| UsageError(e.to_string()))?),
        None => None,
    };
    if test.is_some() && scenario.is_some() {
        return Err(UsageError(
            "this binary defines its own user types; a scenario file cannot be added".into(),
        ));
    }
    if test.is_some() && args.url.is_some() {
        return Err(UsageError(
            "--url tests one URL; this binary defines its own user types".into(),
        ));
    }
    let thresholds = args
        .thresholds
        .iter()
        .map(|t| Threshold::parse(t))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| UsageError(e.to_string()))?;
    let wait = args.wait.map_or(WaitTime::none(), |w| w.to_wait_time());

    let demo = if args.demo {
        let target = crate::demo::start()
            .await
            .map_err(|e| UsageError(format!("--demo: cannot start the demo target: {e}")))?;
        if !args.quiet {
            eprintln!("aiotest: demo target listening on http://{}", target.addr);
        }
        Some(target)
    } else {
        None
    };
    let demo_url = demo.as_ref().map(|t| format!("http://{}", t.addr));
    let demo_time = demo.as_ref().map(|_| Duration::from_secs(10));
    let mut host = args.host.clone();
    let mut scenario_total = None;
    let (user_types, code_shape, hooks, summary_hook, default_users) = if let Some(s) = scenario {
        // -H wins, then the embedded target with --demo, then the file's host.
        if host.is_none() {
            host = demo_url.clone().or(s.host);
        }
        if let (None, Some(at)) = (&host, &s.relative_path) {
            return Err(UsageError(format!(
                "{at}: a relative path needs a host: set `host` in the file, -H URL or --demo"
            )));
        }
        scenario_total = s.total;
        let users = if demo.is_some() { 10 } else { 1 };
        (s.user_types, s.shape, s.hooks, None, users)
    } else {
        match (test, &args.url, &demo_url) {
            (Some(t), _, _) => {
                // A binary's users test the demo target when asked, unless -H names a host.
                if host.is_none() {
                    host.clone_from(&demo_url);
                }
                let users = if demo.is_some() { 10 } else { 1 };
                (t.user_types, t.shape, t.hooks, t.summary_hook, users)
            }
            (None, Some(url), _) => (
                vec![url_user_type(url, wait, args.host.as_deref())?],
                None,
                Hooks::default(),
                None,
                1,
            ),
            (None, None, Some(url)) => (
                vec![url_user_type(url, wait, None)?],
                None,
                Hooks::default(),
                None,
                10,
            ),
            (None, None, None) => {
                return Err(UsageError(
                    "nothing to run: give --url URL, --demo or a scenario file (see aiotest run --help)".into(),
                ));
            }
        }
    };
    let cli_shapes_load = args.users.is_some() || args.run_time.is_some() || args.stages.is_some();
    let (shape, total) = match code_shape {
        // A shape written in code runs unless the command line sets the load itself.
        Some(s) if !cli_shapes_load => (s, scenario_total.or(demo_time)),
        _ => {
            let total = args
                .stages
                .as_ref()
                .map(|s| s.0.iter().map(|st| st.duration).sum())
                .or(args.run_time)
                .or(demo_time);
            (shape(&args, default_users, demo_time)?, total)
        }
    };
    let config = RunConfig {
        host,
        stop_timeout: args.stop_timeout,
        no_setup: args.no_setup,
        no_teardown: args.no_teardown,
        ..RunConfig::default()
    };
    let exporter = args
        .control_addr
        .map(|_| Arc::new(PrometheusExporter::new()));
    let runner = if args.master {
        let redis = crate::distributed::connect(&args).await?;
        // Workers need no files: they read what to run from Redis.
        let scenario_text = match &args.scenario {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| UsageError(format!("{}: {e}", path.display())))?,
            ),
            None => None,
        };
        let plan = crate::distributed::Plan {
            url: args.url.clone().or_else(|| {
                demo_url
                    .as_ref()
                    .filter(|_| scenario_text.is_none())
                    .map(|u| format!("{u}/"))
            }),
            scenario: scenario_text,
            wait: crate::distributed::Plan::wait_arg(args.wait),
            host: config.host.clone(),
        };
        crate::distributed::publish_plan(&redis, &args.run_id, &plan).await?;
        if !args.quiet {
            eprintln!(
                "aiotest: master of run `{}`, waiting for {} workers",
                args.run_id, args.expect_workers
            );
        }
        AnyRunner::Master(Box::new(
            MasterRunner::new(
                user_types,
                shape,
                hooks,
                config,
                crate::distributed::dist_config(&args),
                redis,
                exporter,
            )
            .map_err(|e| UsageError(e.to_string()))?,
        ))
    } else {
        AnyRunner::Local(
            LocalRunner::with_options(
                user_types,
                shape,
                hooks,
                config,
                RequestMetricsEvent::new(),
                exporter,
            )
            .map_err(|e| UsageError(e.to_string()))?,
        )
    };
    let handle = runner.handle();
    // Kept alive for the run; dropping it stops the server.
    let _control = match args.control_addr {
        Some(addr) => {
            let server = serve_control(addr, handle.clone(), args.control_token.clone())
                .await
                .map_err(|e| UsageError(e.to_string()))?;
            if !args.quiet {
                eprintln!(
                    "aiotest: control API and /metrics on http://{}",
                    server.addr()
                );
            }
            Some(server)
        }
        None => None,
    };
    let progress = tokio::spawn(crate::progress::report(
        handle.clone(),
        total,
        thresholds.clone(),
        args.quiet,
    ));
    let signals = tokio::spawn(ctrl_c(handle.clone()));
    // Restores the terminal when the run is over (dropped at the end of this function).
    let _keyboard = if args.quiet {
        None
    } else {
        crate::keyboard::start(handle.clone())
    };
    let result = runner.run().await;
    signals.abort();
    // The progress task ends by itself once the run has stopped.
    let _ = progress.await;
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            // Setup failed (teardown skipped), or the shape misbehaved.
            eprintln!("aiotest: {e}");
            return Ok(EXIT_FAILED);
        }
    };
    let mut summary = Summary::new(&report.snapshot, report.run_time);
    let secs = report.run_time.as_secs_f64();
    summary.thresholds = thresholds
        .iter()
        .map(|t| t.evaluate(&report.snapshot, secs))
        .collect();
    print!("{}", summary.render_table());
    if let Some(path) = &args.summary_export
        && let Err(e) = std::fs::write(path, summary.to_json())
    {
        eprintln!(
            "aiotest: cannot write the summary to {}: {e}",
            path.display()
        );
        return Ok(EXIT_FAILED);
    }
    if let Some(target) = &demo {
        let served = target.served.load(std::sync::atomic::Ordering::Relaxed);
        println!("Demo target served {served} requests.");
    }
    if let Some(Err(e)) = &report.teardown {
        eprintln!("aiotest: {e}");
    }
    if !report.missing_workers.is_empty() {
        eprintln!(
            "aiotest: workers went MISSING during the run (their users moved to the others): {}",
            report.missing_workers.join(", ")
        );
    }
    if report.cancelled_users > 0 {
        eprintln!(
            "aiotest: {} users were still busy after the graceful stop period and were cancelled",
            report.cancelled_users
        );
    }
    if let Some(hook) = summary_hook
        && let Err(e) = hook.call(&summary)
    {
        eprintln!("aiotest: {e}");
        return Ok(EXIT_FAILED);
    }
    Ok(if summary.thresholds_ok() {
        EXIT_OK
    } else {
        EXIT_THRESHOLDS
    })
}

/// First Ctrl-C: graceful stop. Second: stop at once. Both still print the summary.
async fn ctrl_c(handle: aiotest_runner::RunnerHandle) {
    if tokio::signal::ctrl_c().await.is_err() {
        return;
    }
    eprintln!("\naiotest: stopping (Ctrl-C again to stop at once)");
    handle.stop().await;
    if tokio::signal::ctrl_c().await.is_ok() {
        eprintln!("\naiotest: stopping at once");
        handle.abort().await;
    }
}
