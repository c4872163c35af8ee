//! `aiotest run`: builds the user types and shape from the arguments, runs them, prints
//! the summary and decides the exit code.

use std::sync::Arc;
use std::time::Duration;

use aiotest_core::lifecycle::Hooks;
use aiotest_core::prelude::*;
use aiotest_core::scenario::{DEFAULT_SCENARIO, SharedShape};
use aiotest_http_user::{HttpClient, HttpUser};
use aiotest_metrics::PrometheusExporter;
use aiotest_runner::csv::CsvOutput;
use aiotest_runner::output::{JsonExport, Output, SummaryHookOutput, Thresholds};
use aiotest_runner::web::HtmlReport;
use aiotest_runner::{
    LocalRunner, MasterRunner, RunConfig, RunError, RunReport, RunnerHandle, Threshold,
    serve_control,
};

use crate::Test;
use crate::args::RunArgs;
use crate::quick::{HttpSettings, QuickRequest};
use crate::{EXIT_FAILED, EXIT_OK, EXIT_SCRIPT_ABORTED, EXIT_SIGNAL, EXIT_THRESHOLDS, EXIT_USAGE};

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

    fn output(self, o: Box<dyn Output>) -> Self {
        match self {
            AnyRunner::Local(r) => AnyRunner::Local(r.output(o)),
            AnyRunner::Master(r) => AnyRunner::Master(Box::new(r.output(o))),
        }
    }

    async fn run(self) -> Result<RunReport, RunError> {
        match self {
            AnyRunner::Local(r) => r.run().await,
            AnyRunner::Master(r) => r.run().await,
        }
    }
}

/// A user of `--url`: one request to one URL per task.
struct UrlUser {
    client: HttpClient,
    path: &'static str,
    method: http::Method,
    body: bytes::Bytes,
}

async fn get_url(u: &mut UrlUser) -> TaskResult {
    u.client.get(u.path).send().await;
    Ok(())
}

async fn send_url(u: &mut UrlUser) -> TaskResult {
    u.client
        .request(u.method.clone(), u.path)
        .body(u.body.clone())
        .send()
        .await;
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
    request: &QuickRequest,
    settings: &HttpSettings,
) -> Result<UserType, UsageError> {
    let (origin, path) = split_url(url)?;
    let mut http = HttpUser::builder().host(host_override.unwrap_or(&origin));
    // Headers go with every request of the user, built once.
    for (k, v) in &request.headers {
        http = http.header(k, v);
    }
    let http = settings
        .apply(http)
        .build()
        .map_err(|e| UsageError(format!("--url: {e}")))?;
    // One string for the whole run, shared by every user without a copy per request.
    let path: &'static str = Box::leak(path.into_boxed_str());
    let method = http::Method::from_bytes(request.method.as_bytes())
        .map_err(|_| UsageError(format!("-X: `{}` is not an HTTP method", request.method)))?;
    let body = bytes::Bytes::from(request.body.clone().unwrap_or_default());
    let plain = request.is_plain_get();
    let b = UserType::builder("url", move |ctx| UrlUser {
        client: http.client_for(ctx),
        path,
        method: method.clone(),
        body: body.clone(),
    })
    .wait_time(wait);
    // A plain GET keeps the client's GET path: nothing to clone per request.
    let b = if plain {
        b.task("get", 1, get_url)
    } else {
        b.task("send", 1, send_url)
    };
    b.build().map_err(|e| UsageError(e.to_string()))
}

/// The command line as typed, for reports: arguments with spaces or quotes quoted, the
/// control token and any password in a URL replaced by `***`.
fn command_line() -> String {
    let mut args = std::env::args();
    let program = args
        .next()
        .map(|p| {
            std::path::Path::new(&p)
                .file_name()
                .map_or(p.clone(), |f| f.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "aiotest".into());
    let mut out = vec![program];
    let mut secret_next = false;
    for a in args {
        let a = if secret_next {
            "***".to_owned()
        } else if a.starts_with("--control-token=") {
            "--control-token=***".to_owned()
        } else {
            crate::distributed::redacted(&a)
        };
        secret_next = a == "--control-token";
        let special = |c: char| c.is_whitespace() || "'\"$`\\".contains(c);
        out.push(if a.is_empty() || a.contains(special) {
            format!("'{}'", a.replace('\'', "'\\''"))
        } else {
            a
        });
    }
    out.join(" ")
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

/// What to run, from a scenario file, a Rust binary's `Test`, `--url` or `--demo`.
struct Plan {
    /// Scenarios the file or binary defines (then the command line sets no load).
    scenarios: Vec<Scenario>,
    user_types: Vec<UserType>,
    shape: Option<Box<dyn LoadUserShape>>,
    /// A scenario file's `[load]` as written.
    file_load: Option<crate::scenario::FileLoad>,
    hooks: Hooks,
    outputs: Vec<Box<dyn Output>>,
    default_users: u32,
    /// Every request name the run can make, when known before it runs.
    names: Option<Vec<String>>,
    /// The scenarios already say the load, the command line's included (a script).
    load_decided: bool,
}

/// The name the HTTP user records a request to `path` under.
pub(crate) fn request_name(path: &str) -> String {
    let mut name = String::new();
    aiotest_http_user::naming::name_for_path(path, &mut name);
    name
}

/// `aiotest run http://...`: a URL where the scenario file goes is the URL to test.
fn url_as_argument(args: &mut RunArgs) -> Result<(), UsageError> {
    let Some(arg) = args.scenario.as_ref().and_then(|p| p.to_str()) else {
        return Ok(());
    };
    if !(arg.starts_with("http://") || arg.starts_with("https://")) {
        // `127.0.0.1:8080` or `localhost:3000/api` is a URL without its scheme, not a
        // file (unless such a file exists).
        let looks_like_host = {
            let host = arg.split('/').next().unwrap_or("");
            host.rsplit_once(':').is_some_and(|(h, port)| {
                !h.is_empty() && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())
            })
        };
        if looks_like_host && !std::path::Path::new(arg).exists() {
            return Err(UsageError(format!(
                "`{arg}` is not a file; to test a URL write its scheme: `http://{arg}`"
            )));
        }
        return Ok(());
    }
    if args.url.is_some() || args.demo {
        return Err(UsageError(format!(
            "`{arg}` is the URL to test: give it once, without --url or --demo"
        )));
    }
    args.url = Some(arg.to_owned());
    args.scenario = None;
    Ok(())
}

/// `--url` names where requests go; a `-H` naming another host is a mistake, not an
/// override (the load would go where the URL does not say).
fn check_url_and_host(args: &RunArgs) -> Result<(), UsageError> {
    let (Some(url), Some(host)) = (&args.url, &args.host) else {
        return Ok(());
    };
    let origin = |s: &str| {
        aiotest_core::url::parse_base_url(s)
            .ok()
            .map(|u| (u.https, u.authority.to_ascii_lowercase()))
    };
    if origin(url) != origin(host) {
        return Err(UsageError(format!(
            "--url `{url}` and -H `{host}` name different hosts: the URL says where the \
             requests go; drop -H, or put that host in the URL"
        )));
    }
    Ok(())
}

async fn prepare_and_run(mut args: RunArgs, test: Option<Test>) -> Result<i32, UsageError> {
    url_as_argument(&mut args)?;
    if args.worker {
        return crate::distributed::run_worker(args, test).await;
    }
    check_url_and_host(&args)?;
    let http = crate::quick::http_settings(&args)?;
    let request = QuickRequest::from_args(&args)?;
    if let Some(flag) = QuickRequest::given(&args)
        && args.url.is_none()
        && (args.scenario.is_some() || test.is_some() || !args.demo)
    {
        return Err(UsageError(format!(
            "{flag} sets the request of a --url (or --demo) test; a scenario file or a \
             binary sets its own requests"
        )));
    }
    // A scenario file is checked completely before anything starts.
    let tags = crate::scenario::TagFilter {
        include: args.tags.clone(),
        exclude: args.exclude_tags.clone(),
    };
    if args.scenario.is_none() && (!args.tags.is_empty() || !args.exclude_tags.is_empty()) {
        return Err(UsageError(
            "--tags and --exclude-tags pick a scenario file's tasks: give a scenario file".into(),
        ));
    }
    // A k6-style script: the options' load, with the command line's over it.
    let mut script = match &args.scenario {
        Some(path) if crate::script::is_script(path) => Some(crate::script::load(path, &args)?),
        _ => None,
    };
    let mut scenario = match &args.scenario {
        Some(path) if script.is_none() => {
            let inputs = crate::scenario::Inputs {
                tags: &tags,
                no_setup: args.no_setup,
                ..crate::scenario::Inputs::with_http(&http)
            };
            Some(crate::scenario::load_with(path, inputs).map_err(|e| UsageError(e.to_string()))?)
        }
        _ => None,
    };
    if test.is_some() && scenario.is_some() {
        return Err(UsageError(
            "this binary defines its own user types; a scenario file cannot be added".into(),
        ));
    }
    if test.is_some() && http != HttpSettings::default() {
        return Err(UsageError(
            "--timeout, --max-retries, --insecure, --h2c, --max-redirects, --max-response-body and \
             --client-cert set the HTTP users of --url, --demo and scenario-file tests; this \
             binary builds its own"
                .into(),
        ));
    }
    if test.is_some() && args.url.is_some() {
        return Err(UsageError(
            "--url tests one URL; this binary defines its own user types".into(),
        ));
    }
    if args.linger && args.control_addr.is_none() {
        return Err(UsageError(
            "--linger keeps the control API up after the run: give --control-addr too".into(),
        ));
    }
    let mut thresholds = args
        .thresholds
        .iter()
        .map(|t| Threshold::parse(t))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| UsageError(e.to_string()))?;
    // The file's thresholds first; the command line's add to them.
    if let Some(s) = &mut scenario {
        thresholds.splice(0..0, std::mem::take(&mut s.thresholds));
    }
    if let Some(s) = &mut script {
        thresholds.splice(0..0, std::mem::take(&mut s.thresholds));
    }
    let mut tags = script
        .as_mut()
        .map(|s| std::mem::take(&mut s.tags))
        .unwrap_or_default();
    tags.extend(args.tag.iter().cloned());
    // `{tag=...}` stands for the requests of the file's tasks with that tag.
    for t in &mut thresholds {
        let Some(tag) = t.tag().map(str::to_owned) else {
            continue;
        };
        let names = scenario.as_ref().and_then(|s| s.tags.get(&tag));
        match names {
            Some(names) => *t = t.clone().with_tag_names(names.clone()),
            None => {
                let known: Vec<&str> = scenario
                    .iter()
                    .flat_map(|s| s.tags.keys().map(String::as_str))
                    .collect();
                return Err(UsageError(format!(
                    "threshold `{t}`: no request of this test has the tag `{tag}`; {}",
                    if known.is_empty() {
                        "tags are given to a scenario file's requests (`tags = [...]`)".to_owned()
                    } else {
                        format!("the tags are: {}", known.join(", "))
                    }
                )));
            }
        }
    }
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
    // What a master ships of a script to its workers.
    let shipped = script.as_ref().map(|s| s.shipped.clone());
    // A script's handleSummary replaces the printed summary.
    let summary_replaced = script.as_ref().is_some_and(|s| s.handle_summary.is_some());
    let plan = if let Some(s) = script {
        let mut outputs: Vec<Box<dyn Output>> =
            vec![Box::new(aiotest_script::AbortWatch::default())];
        if let Some(h) = s.handle_summary {
            outputs.push(Box::new(h));
        }
        Plan {
            scenarios: s.scenarios,
            user_types: Vec::new(),
            shape: None,
            file_load: None,
            hooks: s.hooks,
            outputs,
            default_users: 1,
            names: None,
            load_decided: true,
        }
    } else if let Some(s) = scenario {
        // -H wins, then the embedded target with --demo, then the file's host.
        if host.is_none() {
            host = demo_url.clone().or(s.host);
        }
        if let (None, Some(at)) = (&host, &s.relative_path) {
            return Err(UsageError(format!(
                "{at}: a relative path needs a host: set `host` in the file, -H URL or --demo"
            )));
        }
        Plan {
            scenarios: s.scenarios,
            user_types: s.user_types,
            shape: s.shape,
            file_load: s.load,
            hooks: s.hooks,
            outputs: Vec::new(),
            default_users: if demo.is_some() { 10 } else { 1 },
            names: s.request_names,
            load_decided: false,
        }
    } else {
        match (test, &args.url, &demo_url) {
            (Some(t), _, _) => {
                // A binary's users test the demo target when asked, unless -H names a host.
                if host.is_none() {
                    host.clone_from(&demo_url);
                }
                let mut outputs = t.outputs;
                if !t.requests.is_empty() {
                    outputs.push(Box::new(t.requests));
                }
                if let Some(hook) = t.summary_hook {
                    outputs.push(Box::new(SummaryHookOutput::new(hook)));
                }
                Plan {
                    scenarios: t.scenarios,
                    user_types: t.user_types,
                    shape: t.shape,
                    file_load: None,
                    hooks: t.hooks,
                    outputs,
                    default_users: if demo.is_some() { 10 } else { 1 },
                    names: None,
                    load_decided: false,
                }
            }
            (None, Some(url), _) => Plan {
                scenarios: Vec::new(),
                names: Some(vec![request_name(&split_url(url)?.1)]),
                user_types: vec![url_user_type(url, wait, None, &request, &http)?],
                shape: None,
                file_load: None,
                hooks: Hooks::default(),
                outputs: Vec::new(),
                default_users: 1,
                load_decided: false,
            },
            (None, None, Some(url)) => Plan {
                scenarios: Vec::new(),
                names: Some(vec!["/".to_owned()]),
                user_types: vec![url_user_type(url, wait, None, &request, &http)?],
                shape: None,
                file_load: None,
                hooks: Hooks::default(),
                outputs: Vec::new(),
                default_users: 10,
                load_decided: false,
            },
            (None, None, None) => {
                return Err(UsageError(
                    "nothing to run: give --url URL, --demo or a scenario file (see aiotest run --help)".into(),
                ));
            }
        }
    };
    check_threshold_names(&thresholds, plan.names.as_deref(), &plan.scenarios)?;
    let scenarios = if plan.scenarios.is_empty() {
        let executor = match crate::load::self_scheduled(&args)? {
            Some(load) => load.executor(),
            // The test's own load, with what the command line changes in it.
            None => Executor::Shape(SharedShape::new(crate::load::closed(
                &args,
                plan.shape,
                plan.file_load,
                plan.default_users,
                demo_time,
            )?)),
        };
        let sc = Scenario::new(DEFAULT_SCENARIO, plan.user_types, executor)
            .map_err(|e| UsageError(e.to_string()))?
            .graceful_stop(args.stop_timeout);
        vec![sc]
    } else if crate::load::given(&args) && !plan.load_decided {
        return Err(UsageError(
            "the test's scenarios set the load: -u, -t, --stages, --rate and -i do not apply"
                .into(),
        ));
    } else {
        plan.scenarios
    };
    let config = RunConfig {
        host,
        stop_timeout: args.stop_timeout,
        no_setup: args.no_setup,
        no_teardown: args.no_teardown,
        command: Some(command_line()),
        metrics: aiotest_metrics::MetricsConfig {
            max_endpoints: args.max_endpoints,
            // Asked for, or read by a threshold: one on a trend nobody keeps would fail.
            timing_trends: args.timings || thresholds.iter().any(Threshold::needs_timings),
            ..aiotest_metrics::MetricsConfig::default()
        },
        tags,
        ..RunConfig::default()
    };
    let exporter = args
        .control_addr
        .map(|_| Arc::new(PrometheusExporter::new()));
    let mut runner = if args.master {
        // Workers need no files: they read what to run from the plan of this instance. A
        // plan that cannot be made is refused before Redis is touched.
        let (worker_plan, plan_keys) =
            crate::distributed::worker_plan(&args, demo_url.as_deref(), &config, shipped)?;
        let redis = crate::distributed::connect(&args).await?;
        if !args.quiet {
            eprintln!(
                "aiotest: master of run `{}`, waiting for {} workers",
                args.run_id, args.expect_workers
            );
        }
        AnyRunner::Master(Box::new(
            MasterRunner::scenarios(
                scenarios,
                plan.hooks,
                config,
                crate::distributed::dist_config(&args),
                redis,
                exporter,
            )
            .map_err(|e| UsageError(e.to_string()))?
            .plan(worker_plan)
            .clean_up(plan_keys),
        ))
    } else {
        AnyRunner::Local(
            LocalRunner::scenarios(scenarios, plan.hooks, config, exporter)
                .map_err(|e| UsageError(e.to_string()))?,
        )
    };
    runner = runner
        .output(Box::new(Thresholds::new(thresholds)))
        .output(Box::new(crate::progress::Progress::new(args.quiet)));
    if let Some(path) = &args.summary_export {
        runner = runner.output(Box::new(JsonExport::new(path)));
    }
    if let Some(path) = &args.html {
        runner = runner.output(Box::new(HtmlReport::new(path)));
    }
    if let Some(prefix) = &args.csv {
        runner = runner.output(Box::new(CsvOutput::new(prefix)));
    }
    runner = runner.output(Box::new(aiotest_runner::health::HealthWatch::new()));
    for o in plan.outputs {
        runner = runner.output(o);
    }
    let handle = runner.handle();
    // Kept alive for the run (and the linger); dropping it stops the server.
    let control = match args.control_addr {
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
    let signalled = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let signals = tokio::spawn(crate::signals::stop_on_signals(
        handle.clone(),
        args.quiet,
        Arc::clone(&signalled),
    ));
    // Restores the terminal when the run is over (dropped at the end of this function).
    let keyboard = if args.quiet {
        None
    } else {
        crate::keyboard::start(handle.clone())
    };
    if keyboard.is_some() {
        eprintln!("aiotest: {}", crate::keyboard::HELP);
    }
    let result = runner.run().await;
    signals.abort();
    drop(keyboard);
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            // Setup failed (teardown skipped), or the run could not start.
            eprintln!("aiotest: {e}");
            return Ok(EXIT_FAILED);
        }
    };
    // Fitted to a terminal; in full in a pipe or a file.
    let width = crate::term::width(crate::term::Stream::Stdout);
    if !summary_replaced {
        print!("{}", report.summary.render_table_for(width));
    }
    if let Some(target) = &demo {
        let served = target.served.load(std::sync::atomic::Ordering::Relaxed);
        println!("Demo target served {served} requests.");
    }
    let mut code = exit_code(&report, args.allow_failures);
    if signalled.load(std::sync::atomic::Ordering::SeqCst) {
        if !args.quiet || code == EXIT_OK {
            eprintln!("aiotest: the run was cut short by a signal (exit {EXIT_SIGNAL})");
        }
        code = EXIT_SIGNAL;
    }
    if let (true, Some(server)) = (args.linger, &control) {
        if !args.quiet {
            eprintln!(
                "aiotest: run over; the final figures stay at http://{} until POST /api/quit or Ctrl-C",
                server.addr()
            );
        }
        tokio::select! {
            () = handle.quit_requested() => {}
            () = crate::signals::first_signal() => {}
        }
    }
    drop(control);
    Ok(code)
}

/// The exit code of a finished run, after saying what went wrong.
fn exit_code(report: &RunReport, allow_failures: bool) -> i32 {
    // A teardown that failed left what the test set up behind: the run failed.
    let teardown_failed = matches!(&report.teardown, Some(Err(_)));
    if let Some(Err(e)) = &report.teardown {
        eprintln!("aiotest: {e}");
    }
    for e in &report.output_errors {
        eprintln!("aiotest: {e}");
    }
    if let Some(fault) = &report.fault {
        eprintln!("aiotest: the run ended early: {fault}");
        return EXIT_FAILED;
    }
    if !report.output_errors.is_empty() || teardown_failed {
        return EXIT_FAILED;
    }
    if !report.missing_flushes.is_empty() {
        // The figures lack what those workers' users did: they cannot pass for a result.
        eprintln!(
            "aiotest: metrics of {} are missing (see the notes): the run failed",
            report.missing_flushes.join(", ")
        );
        return EXIT_FAILED;
    }
    if let Some(reason) = aiotest_script::aborted(&report.summary) {
        let shown = if reason.is_empty() {
            String::new()
        } else {
            format!(": {reason}")
        };
        eprintln!(
            "aiotest: the script aborted the run (test.abort(){shown}; exit {EXIT_SCRIPT_ABORTED})"
        );
        return EXIT_SCRIPT_ABORTED;
    }
    let t = &report.summary.totals;
    if t.requests > 0 && t.failures == t.requests && !allow_failures {
        eprintln!(
            "aiotest: not one of the {} requests succeeded (see Errors above); the run \
             failed. --allow-failures exits 0 when that is what the test expects.",
            t.requests
        );
        return EXIT_FAILED;
    }
    if report.summary.thresholds_ok() {
        EXIT_OK
    } else {
        EXIT_THRESHOLDS
    }
}

/// A threshold that names a request no run of this test can make is a mistake caught
/// before the run (a typo would otherwise fail the run for nothing).
fn check_threshold_names(
    thresholds: &[Threshold],
    names: Option<&[String]>,
    scenarios: &[Scenario],
) -> Result<(), UsageError> {
    // Scenario names are always known before the run: the test's, or `default`.
    let known: Vec<&str> = if scenarios.is_empty() {
        vec![DEFAULT_SCENARIO]
    } else {
        scenarios.iter().map(Scenario::name).collect()
    };
    for t in thresholds {
        if let Some(sc) = t.scenario()
            && !known.contains(&sc)
        {
            return Err(UsageError(format!(
                "threshold `{t}`: this test has no scenario `{sc}`; its scenarios are: {}",
                known.join(", ")
            )));
        }
    }
    let Some(names) = names else {
        return Ok(());
    };
    for t in thresholds {
        if let Some(n) = t.name()
            && !names.iter().any(|known| known == n)
        {
            return Err(UsageError(format!(
                "threshold `{t}`: no request of this test is named `{n}`; the names are: {}",
                names.join(", ")
            )));
        }
    }
    Ok(())
}
