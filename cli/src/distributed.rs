//! `--master` and `--worker`: the plan a master ships with its run instance so workers
//! need no files, and the worker's side of the command line.

use std::path::Path;

use aiotest_coordinator::Redis;
use aiotest_core::lifecycle::Hooks;
use aiotest_core::scenario::{DEFAULT_SCENARIO, Scenario};
use aiotest_core::user::UserType;
use aiotest_core::wait::WaitTime;
use aiotest_runner::{DistributedConfig, Planned, RunConfig, WorkerRunner};

use crate::load::SelfScheduled;
use crate::quick::{HttpSettings, QuickRequest};
use serde::{Deserialize, Serialize};

use crate::args::{RunArgs, WaitArg};
use crate::run::{UsageError, url_user_type};
use crate::{EXIT_FAILED, EXIT_OK, Test};

/// What workers run, shipped by the master through Redis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Plan {
    /// A `--url` test.
    pub(crate) url: Option<String>,
    /// A scenario file's text.
    pub(crate) scenario: Option<String>,
    /// A script, with what it opened and the command line's load over it.
    #[serde(default)]
    pub(crate) script: Option<crate::script::Shipped>,
    /// `--wait` of a `--url` test: (min, max) seconds.
    pub(crate) wait: Option<(f64, f64)>,
    /// The host users target.
    pub(crate) host: Option<String>,
    /// `--rate` or `-i`: load that runs on the workers, each on its part.
    #[serde(default)]
    pub(crate) load: Option<SelfScheduled>,
    /// A `--url` test's request (method, headers, body).
    #[serde(default)]
    pub(crate) request: QuickRequest,
    /// `--timeout`, `--max-retries`, `--insecure`.
    #[serde(default)]
    pub(crate) http: HttpSettings,
    /// The master's values of the environment variables the scenario file refers to
    /// (`{{env.NAME}}`).
    #[serde(default)]
    pub(crate) env: std::collections::BTreeMap<String, String>,
    /// `--tags`, `--exclude-tags`.
    #[serde(default)]
    pub(crate) tags: crate::scenario::TagFilter,
    /// `--tag KEY=VALUE`: the test's tags.
    #[serde(default)]
    pub(crate) test_tags: Vec<(String, String)>,
    /// Responses' timing breakdowns kept as trends (`--timings`, or a threshold on one).
    #[serde(default)]
    pub(crate) timing_trends: bool,
    /// The scenario file's data files, by their paths as written.
    #[serde(default)]
    pub(crate) data: std::collections::BTreeMap<String, String>,
    /// Where the workers number the unique rows of data files in Redis, one key per
    /// master run.
    #[serde(default)]
    pub(crate) data_key: String,
}

impl Plan {
    pub(crate) fn wait_arg(w: Option<WaitArg>) -> Option<(f64, f64)> {
        w.map(|w| match w {
            WaitArg::Fixed(s) => (s, s),
            WaitArg::Between(a, b) => (a, b),
        })
    }
}

pub(crate) fn dist_config(args: &RunArgs) -> DistributedConfig {
    DistributedConfig {
        run_id: args.run_id.clone(),
        liveness_timeout: args.liveness_timeout,
        expect_workers: args.expect_workers,
        wait_timeout: args.worker_wait,
        exit_on_master_loss: args.exit_on_master_loss,
        quit_workers_at_end: true,
        redis_timeout: args.redis_timeout,
        master_timeout: args.master_timeout,
        ..DistributedConfig::default()
    }
}

pub(crate) async fn connect(args: &RunArgs) -> Result<Redis, UsageError> {
    let url = args.redis.as_deref().unwrap_or_default();
    let Some(path) = &args.redis_ca else {
        return Redis::connect(url)
            .await
            .map_err(|e| UsageError(format!("--redis {}: {e}", redacted(url))));
    };
    let named = |what: String| UsageError(format!("--redis-ca {}: {what}", path.display()));
    if !url.starts_with("rediss://") {
        return Err(named(
            "a CA is for TLS; --redis must be a rediss:// URL".into(),
        ));
    }
    let pem = std::fs::read(path).map_err(|e| named(format!("cannot read it: {e}")))?;
    Redis::connect_with_root_ca(url, &pem)
        .await
        .map_err(|e| named(e.to_string()))
}

/// `url` without its password.
pub(crate) fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s + 3 => format!("{}***{}", &url[..s + 3], &url[at..]),
        _ => url.to_owned(),
    }
}

/// What the master's workers run: the `--url` test or the scenario file's text, so
/// workers need no files.
/// The plan, encoded, and the Redis keys it names that the master deletes at the end.
pub(crate) fn worker_plan(
    args: &RunArgs,
    demo_url: Option<&str>,
    config: &RunConfig,
    script: Option<crate::script::Shipped>,
) -> Result<(Vec<u8>, Vec<String>), UsageError> {
    let scenario = match &args.scenario {
        Some(_) if script.is_some() => None,
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| UsageError(format!("{}: {e}", path.display())))?,
        ),
        None => None,
    };
    let env = scenario
        .as_deref()
        .map(crate::scenario::env::referenced)
        .unwrap_or_default();
    let data = match (&args.scenario, &scenario) {
        (Some(path), Some(text)) => crate::scenario::data::referenced(path, text)
            .map_err(|e| UsageError(format!("{}: {e}", path.display())))?,
        _ => Default::default(),
    };
    let plan = Plan {
        env,
        data,
        data_key: format!(
            "aiotest:{}:data:{:016x}",
            args.run_id,
            aiotest_core::fastrand::u64(..)
        ),
        tags: crate::scenario::TagFilter {
            include: args.tags.clone(),
            exclude: args.exclude_tags.clone(),
        },
        // The run's tags: a script's options' and the command line's.
        test_tags: config.tags.clone(),
        timing_trends: config.metrics.timing_trends,
        url: args.url.clone().or_else(|| {
            demo_url
                .filter(|_| scenario.is_none() && script.is_none())
                .map(|u| format!("{u}/"))
        }),
        scenario,
        script,
        wait: Plan::wait_arg(args.wait),
        host: config.host.clone(),
        load: crate::load::self_scheduled(args)?,
        request: QuickRequest::from_args(args)?,
        http: crate::quick::http_settings(args)?,
    };
    let bytes = serde_json::to_vec(&plan).map_err(|e| UsageError(format!("plan: {e}")))?;
    // A unique row counter per data set: `KEY:INDEX`, as the workers name them.
    let keys = (0..plan.data.len())
        .map(|i| format!("{}:{i}", plan.data_key))
        .collect();
    Ok((bytes, keys))
}

fn node_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".into());
    format!(
        "{host}-{}-{:04x}",
        std::process::id(),
        aiotest_core::fastrand::u16(..)
    )
}

/// Builds what a master's plan asks for; `host` (the worker's own `-H`) wins over the
/// plan's.
fn build_from_plan(
    bytes: Option<&[u8]>,
    host: Option<&str>,
    redis: &Redis,
) -> Result<Planned, String> {
    let bytes = bytes.ok_or("the master stored no plan")?;
    let plan: Plan = serde_json::from_slice(bytes)
        .map_err(|e| format!("the master's plan does not decode: {e}"))?;
    let (test_tags, timing_trends) = (plan.test_tags.clone(), plan.timing_trends);
    build_planned(plan, host, redis).map(|mut p| {
        p.tags = Some(test_tags);
        p.timing_trends = Some(timing_trends);
        p
    })
}

fn build_planned(plan: Plan, host: Option<&str>, redis: &Redis) -> Result<Planned, String> {
    let host = host.map(str::to_owned).or(plan.host.clone());
    if let Some(shipped) = &plan.script {
        // The master's scenarios, made the same way; setup ran on the master.
        let run = crate::script::on_worker(shipped, &plan.http, plan.load.as_ref())?;
        return planned(Vec::new(), run.scenarios, run.hooks, host, None);
    }
    match (&plan.url, &plan.scenario) {
        (Some(url), _) => {
            let wait = plan
                .wait
                .map_or(WaitTime::none(), |(a, b)| WaitTime::between(a, b));
            let types = vec![
                url_user_type(url, wait, host.as_deref(), &plan.request, &plan.http)
                    .map_err(|e| e.0)?,
            ];
            planned(
                types,
                Vec::new(),
                Hooks::default(),
                host,
                plan.load.as_ref(),
            )
        }
        (None, Some(text)) => {
            let inputs = crate::scenario::Inputs {
                http: &plan.http,
                env: crate::scenario::env::Env::Given(&plan.env),
                tags: &plan.tags,
                files: crate::scenario::data::Files::Given(&plan.data),
                // The master checked it; a worker never runs setup.
                no_setup: false,
            };
            let s =
                crate::scenario::parse_with(Path::new("(scenario from the master)"), text, inputs)
                    .map_err(|e| e.to_string())?;
            // Unique rows are numbered across every worker of the run.
            if !plan.data_key.is_empty() {
                s.data.share_unique_rows(redis, &plan.data_key);
            }
            planned(
                s.user_types,
                s.scenarios,
                s.hooks,
                host.or(s.host),
                plan.load.as_ref(),
            )
        }
        (None, None) => Err(
            "the master runs a Rust binary's own user types: run that binary as its worker".into(),
        ),
    }
}

/// A worker's scenarios: the test's own, else the one `default` scenario, with the
/// master's `--rate`/`-i` load when it has one (a closed-model load runs on the master).
fn planned(
    types: Vec<UserType>,
    scenarios: Vec<Scenario>,
    hooks: Hooks,
    host: Option<String>,
    load: Option<&SelfScheduled>,
) -> Result<Planned, String> {
    if !scenarios.is_empty() {
        return Ok(Planned {
            scenarios,
            hooks,
            host,
            tags: None,
            timing_trends: None,
        });
    }
    match load {
        Some(load) => {
            let sc = Scenario::new(DEFAULT_SCENARIO, types, load.executor())
                .map_err(|e| e.to_string())?;
            Ok(Planned {
                scenarios: vec![sc],
                hooks,
                host,
                tags: None,
                timing_trends: None,
            })
        }
        None => Planned::from_types(types, hooks, host).map_err(|e| e.to_string()),
    }
}

/// `aiotest run --worker`: joins whatever instance a master of the run id announces,
/// runs what its plan says (or the binary's own user types), until told to quit.
pub(crate) async fn run_worker(args: RunArgs, test: Option<Test>) -> Result<i32, UsageError> {
    let redis = connect(&args).await?;
    let config = RunConfig {
        host: args.host.clone(),
        stop_timeout: args.stop_timeout,
        metrics: aiotest_metrics::MetricsConfig {
            max_endpoints: args.max_endpoints,
            ..aiotest_metrics::MetricsConfig::default()
        },
        ..RunConfig::default()
    };
    let node = node_id();
    let host = args.host.clone();
    let worker = match test {
        Some(t) => {
            // The binary's own user types and scenarios; the host is its -H, else the
            // master's.
            let (types, hooks, scenarios) = (t.user_types, t.hooks, t.scenarios);
            let w = WorkerRunner::from_plan(
                move |plan: Option<&[u8]>| {
                    let plan = plan.and_then(|p| serde_json::from_slice::<Plan>(p).ok());
                    let (plan_host, load, tags, timing_trends) = plan
                        .map_or((None, None, None, None), |p| {
                            (p.host, p.load, Some(p.test_tags), Some(p.timing_trends))
                        });
                    planned(
                        types.clone(),
                        scenarios.clone(),
                        hooks.clone(),
                        host.clone().or(plan_host),
                        load.as_ref(),
                    )
                    .map(|mut p| {
                        p.tags = tags;
                        p.timing_trends = timing_trends;
                        p
                    })
                },
                config,
                dist_config(&args),
                redis,
                &node,
            )
            .map_err(|e| UsageError(e.to_string()))?;
            // Per-request handlers run where the requests are made.
            if t.requests.is_empty() {
                w
            } else {
                w.output(t.requests)
            }
        }
        None => WorkerRunner::from_plan(
            {
                let redis = redis.clone();
                move |plan: Option<&[u8]>| build_from_plan(plan, host.as_deref(), &redis)
            },
            config,
            dist_config(&args),
            redis,
            &node,
        )
        .map_err(|e| UsageError(e.to_string()))?,
    };
    if !args.quiet {
        eprintln!(
            "aiotest: worker {node} waiting for a master on run `{}`",
            args.run_id
        );
    }
    let handle = worker.handle();
    // A signal ends the worker: its users stop, their last metrics go to the master.
    let signalled = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = std::sync::Arc::clone(&signalled);
    let signals = tokio::spawn(async move {
        crate::signals::first_signal().await;
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
        handle.quit().await;
    });
    let result = worker.run().await;
    signals.abort();
    match result {
        Ok(report) => {
            eprintln!(
                "aiotest: worker done: {} requests in {} metrics batches over {} runs, {} users cancelled",
                report.requests, report.batches, report.runs, report.cancelled_users
            );
            if signalled.load(std::sync::atomic::Ordering::SeqCst) {
                Ok(crate::EXIT_SIGNAL)
            } else {
                Ok(EXIT_OK)
            }
        }
        Err(e) => {
            eprintln!("aiotest: worker: {e}");
            Ok(EXIT_FAILED)
        }
    }
}
