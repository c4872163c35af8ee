//! aiotest's runners: they execute what `aiotest-core` describes, with one engine.
//!
//! - One lifecycle and one control loop for every runner (setup once, users following the
//!   shape polled on the run clock, pause/resume/stop/quit/abort acting at once, a
//!   graceful stop period, teardown, final metrics, a summary); runners differ only in
//!   where users run.
//! - [`LocalRunner`]: users in this process. [`MasterRunner`] and [`WorkerRunner`]: a
//!   distributed run over Redis (`aiotest-coordinator`): exact per-worker splits,
//!   heartbeats, MISSING workers' users moved, every worker's final flush in the summary,
//!   one master per run id, a fresh run instance per master start. Each is controlled and
//!   observed through a [`RunnerHandle`], and ends with a [`RunReport`] whatever ends it.
//! - [`output`]: what a run reports to, as plug-ins: thresholds, the JSON export,
//!   Prometheus, `request_metrics` handlers, the summary hook, and your own.
//! - [`UserManager`]: starts and stops users at the shape's spawn rate, newest first,
//!   split over user types exactly by weight; a user whose task panics is replaced.
//! - [`serve_control`]: `/metrics` and the control API (`/api/state`, pause, resume, stop,
//!   quit, users), loopback by default, a bearer token required elsewhere.
//! - [`Summary`]: the end-of-run table, its notes and its JSON export; [`Threshold`]:
//!   k6-style pass/fail criteria (`p95<300ms`, `failures<1%`, `rps>100`); [`series`]: the
//!   run's bounded interval series.
//!
//! The runner is generic over users: it knows user types from `aiotest-core` and metrics
//! from `aiotest-metrics`, nothing of HTTP.
//!
//! **Who should depend on it:** programs that embed a load test; most users go through
//! `aiotest-cli` instead.
//!
//! ```
//! use std::time::Duration;
//! use aiotest_core::prelude::*;
//! use aiotest_core::lifecycle::Hooks;
//! use aiotest_runner::{LocalRunner, RunConfig};
//!
//! struct Idle;
//! async fn nap(_: &mut Idle) -> TaskResult { Ok(()) }
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let idle = UserType::builder("idle", |_ctx| Idle).task("nap", 1, nap).build()?;
//! let shape = ConstantShape::new(3, 10.0, Some(Duration::from_secs(5)))?;
//! let runner = LocalRunner::new(vec![idle], shape, Hooks::default(), RunConfig::default())?;
//! let report = runner.run().await?;
//! assert_eq!(report.run_time, Duration::from_secs(5));
//! # Ok(())
//! # }
//! ```

mod aggregate;
mod arrival;
pub mod control;
pub mod csv;
pub mod distributed;
mod engine;
pub mod escape;
mod handle;
pub mod health;
mod local;
mod manager;
mod master;
pub mod output;
mod pacer;
mod report;
mod scenarios;
pub mod series;
pub mod summary;
pub mod table;
pub mod threshold;
mod user_loop;
pub mod web;
mod worker;

pub use control::{ControlError, ControlServer, serve_control};
pub use distributed::{DistributedConfig, MAX_WORKERS};
pub use engine::RunConfig;
pub use handle::{RunnerHandle, WorkerView};
pub use local::LocalRunner;
pub use manager::UserManager;
pub use master::MasterRunner;
pub use report::{RunError, RunReport, StopReason};
pub use summary::{RunMeta, ScenarioInfo, ScenarioRow, Summary};
pub use threshold::{Threshold, ThresholdError, ThresholdResult};
pub use user_loop::UserStats;
pub use worker::{Planned, WorkerPlan, WorkerReport, WorkerRunner};
