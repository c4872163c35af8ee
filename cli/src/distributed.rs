//! `--master` and `--worker`: the plan a master ships so workers need no files, and the
//! worker's side of the command line.

use std::path::Path;
use std::time::Duration;

use aiotest_coordinator::Redis;
use aiotest_coordinator::wire::Keys;
use aiotest_core::lifecycle::Hooks;
use aiotest_core::wait::WaitTime;
use aiotest_runner::{DistributedConfig, RunConfig, WorkerRunner};
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
    /// `--wait` of a `--url` test: (min, max) seconds.
    pub(crate) wait: Option<(f64, f64)>,
    /// The host users target.
    pub(crate) host: Option<String>,
}

impl Plan {
    pub(crate) fn wait_arg(w: Option<WaitArg>) -> Option<(f64, f64)> {
        w.map(|w| match w {
            WaitArg::Fixed(s) => (s, s),
            WaitArg::Between(a, b) => (a, b),
        })
    }
}

/// How long a plan stays in Redis: longer than any sensible run, short enough to clean up.
const PLAN_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

pub(crate) fn dist_config(args: &RunArgs) -> DistributedConfig {
    DistributedConfig {
        run_id: args.run_id.clone(),
        liveness_timeout: args.liveness_timeout,
        expect_workers: args.expect_workers,
        wait_timeout: args.worker_wait,
        exit_on_master_loss: args.exit_on_master_loss,
        quit_workers_at_end: true,
        ..DistributedConfig::default()
    }
}

pub(crate) async fn connect(args: &RunArgs) -> Result<Redis, UsageError> {
    let url = args.redis.as_deref().unwrap_or_default();
    let Some(path) = &args.redis_ca else {
        return Redis::connect(url)
            .await
            .map_err(|e| UsageError(e.to_string()));
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

/// The master stores the plan before workers are needed.
pub(crate) async fn publish_plan(
    redis: &Redis,
    run_id: &str,
    plan: &Plan,
) -> Result<(), UsageError> {
    let bytes = serde_json::to_vec(plan).map_err(|e| UsageError(format!("plan: {e}")))?;
    redis
        .set_bytes(&Keys::new(run_id).plan(), &bytes, PLAN_TTL)
        .await
        .map_err(|e| UsageError(e.to_string()))
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

/// `aiotest run --worker`: waits for the master's plan (unless the binary has its own
/// user types), then works until the master says quit.
pub(crate) async fn run_worker(args: RunArgs, test: Option<Test>) -> Result<i32, UsageError> {
    let redis = connect(&args).await?;
    let (types, hooks, host) = match test {
        Some(t) => (t.user_types, t.hooks, args.host.clone()),
        None => {
            let key = Keys::new(&args.run_id).plan();
            if !args.quiet {
                eprintln!(
                    "aiotest: worker waiting for a master on run `{}`",
                    args.run_id
                );
            }
            let plan = loop {
                match redis.get_bytes(&key).await {
                    Ok(Some(bytes)) => match serde_json::from_slice::<Plan>(&bytes) {
                        Ok(p) => break p,
                        Err(e) => {
                            return Err(UsageError(format!(
                                "the master's plan does not decode: {e}"
                            )));
                        }
                    },
                    Ok(None) => {}
                    Err(e) => tracing::warn!("reading the plan: {e}"),
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            };
            let host = args.host.clone().or(plan.host.clone());
            match (&plan.url, &plan.scenario) {
                (Some(url), _) => {
                    let wait = plan
                        .wait
                        .map_or(WaitTime::none(), |(a, b)| WaitTime::between(a, b));
                    (
                        vec![url_user_type(url, wait, host.as_deref())?],
                        Hooks::default(),
                        host,
                    )
                }
                (None, Some(text)) => {
                    let s = crate::scenario::parse(Path::new("(scenario from the master)"), text)
                        .map_err(|e| UsageError(e.to_string()))?;
                    (s.user_types, s.hooks, host.or(s.host))
                }
                (None, None) => return Err(UsageError("the master's plan names no test".into())),
            }
        }
    };
    let config = RunConfig {
        host,
        stop_timeout: args.stop_timeout,
        ..RunConfig::default()
    };
    let worker = WorkerRunner::new(types, hooks, config, dist_config(&args), redis, &node_id())
        .map_err(|e| UsageError(e.to_string()))?;
    match worker.run().await {
        Ok(report) => {
            {
                eprintln!(
                    "aiotest: worker done: {} requests in {} metrics batches, {} users cancelled",
                    report.requests, report.batches, report.cancelled_users
                );
            }
            Ok(EXIT_OK)
        }
        Err(e) => {
            eprintln!("aiotest: worker: {e}");
            Ok(EXIT_FAILED)
        }
    }
}
