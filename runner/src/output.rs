//! Outputs: what a run reports to, as plug-ins (k6's `output.Output`, tracing-subscriber's
//! `Layer`). The engine calls every output at the start of the run, at each closed
//! interval, and at the end with the final summary; an output may ask the run to stop.
//! A new output is a new type implementing [`Output`], never an edit of the control loop.
//!
//! Built in: [`Thresholds`] (pass/fail, `:abort` stops the run), [`JsonExport`] (the
//! summary as JSON), [`PrometheusOutput`] (`/metrics`), [`RequestMetricsOutput`] (the
//! `request_metrics` event's handlers), [`SummaryHookOutput`] (k6's `handleSummary`). The
//! command line adds its progress line the same way, and so can any program.
//!
//! ```
//! use aiotest_runner::output::{IntervalView, Output, Verdict};
//!
//! /// Stops the run once 1,000 requests have failed.
//! struct FailureBudget;
//!
//! impl Output for FailureBudget {
//!     fn name(&self) -> &str {
//!         "failure-budget"
//!     }
//!     fn interval(&mut self, view: &IntervalView<'_>) -> Verdict {
//!         if view.total.total().failures >= 1_000 {
//!             Verdict::Stop("1,000 failures".into())
//!         } else {
//!             Verdict::Continue
//!         }
//!     }
//! }
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aiotest_coordinator::wire::TaskCounts;
use aiotest_core::BoxError;
use aiotest_core::lifecycle::SummaryHook;
use aiotest_core::state::{Role, RunnerState};
use aiotest_metrics::{
    LiveStats, PrometheusExporter, RequestMetricsEvent, RequestRecord, Snapshot,
};

use crate::handle::WorkerView;
use crate::series::SeriesPoint;
use crate::summary::{RunMeta, Summary};
use crate::threshold::{Threshold, ThresholdResult};

/// What an output learns when the run starts.
#[non_exhaustive]
pub struct RunInfo<'a> {
    /// Local, master or worker.
    pub role: Role,
    /// The user types' names.
    pub user_types: &'a [String],
    /// The test's scenarios.
    pub scenarios: &'a [aiotest_core::scenario::Scenario],
    /// How long the run is planned to take, when the load shape knows.
    pub planned: Option<Duration>,
    /// The run's `request_metrics` event: an output may add handlers that see every
    /// request as it is recorded (in a local run and on workers; a master records none).
    pub request_metrics: &'a RequestMetricsEvent,
    /// What the run is: command, start time, scenarios (for reports).
    pub meta: &'a RunMeta,
    /// The run's handle: an output may publish through it (the thresholds output
    /// publishes its verdicts as they stand).
    pub handle: &'a crate::RunnerHandle,
    /// The test's own tags (`--tag`).
    pub tags: &'a [(String, String)],
}

impl RunInfo<'_> {
    /// Each scenario's tags, by name: the test's, the scenario's own over them and
    /// `scenario`, as its samples carry them.
    pub fn scenario_tags(&self) -> std::collections::BTreeMap<String, aiotest_metrics::Tags> {
        self.scenarios
            .iter()
            .map(|sc| {
                (
                    sc.name().to_owned(),
                    crate::local::scenario_tags(self.tags, sc),
                )
            })
            .collect()
    }
}

/// One closed interval, and the run as it stands at its end.
#[non_exhaustive]
pub struct IntervalView<'a> {
    /// Start of the interval, µs since the Unix epoch.
    pub start_us: u64,
    /// Its end.
    pub end_us: u64,
    /// The requests of the interval (merged from every worker in a distributed run).
    pub interval: &'a Snapshot,
    /// The interval's point of the run's series (what charts and history files show).
    pub point: &'a SeriesPoint,
    /// Every request of the run so far.
    pub total: &'a Snapshot,
    /// The sliding window's figures (requests/s, percentiles), over closed intervals.
    pub live: &'a LiveStats,
    /// Run time at the end of the interval, pauses excluded.
    pub run_time: Duration,
    /// How long the run is planned to take, when known.
    pub planned: Option<Duration>,
    /// Users per user type.
    pub users: &'a [(String, u64)],
    /// The runner's state.
    pub state: RunnerState,
    /// Tasks, task errors and panics so far.
    pub counts: &'a TaskCounts,
    /// A master's workers.
    pub workers: &'a [WorkerView],
}

/// An output's answer to an interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Carry on.
    Continue,
    /// Stop the run (gracefully), for this reason.
    Stop(String),
}

/// A plug-in the engine reports to. Every hook has a default that does nothing.
pub trait Output: Send {
    /// A short name for logs and errors.
    fn name(&self) -> &str;

    /// The run starts. An error ends the run before any user starts.
    fn start(&mut self, run: &RunInfo<'_>) -> Result<(), BoxError> {
        let _ = run;
        Ok(())
    }

    /// An interval closed (every flush interval, one second by default; and the last
    /// ones at the end of the run).
    fn interval(&mut self, view: &IntervalView<'_>) -> Verdict {
        let _ = view;
        Verdict::Continue
    }

    /// The summary is being made: add to it (threshold verdicts, notes). Called on every
    /// output before any [`end`](Self::end).
    fn summary(&mut self, summary: &mut Summary, total: &Snapshot) {
        let _ = (summary, total);
    }

    /// The run is over; `summary` is final. An error is reported with the run (exit
    /// code 1 on the command line).
    fn end(&mut self, summary: &Summary) -> Result<(), BoxError> {
        let _ = summary;
        Ok(())
    }
}

/// k6-style thresholds: each is checked at the end (its verdict goes into the summary);
/// `:abort` ones also after every interval, and a failure stops the run.
/// Every verdict, as it stands, is published on the run's handle (the dashboard shows
/// them).
pub struct Thresholds {
    list: Vec<Threshold>,
    handle: Option<crate::RunnerHandle>,
    scenario_tags: std::collections::BTreeMap<String, aiotest_metrics::Tags>,
}

impl Thresholds {
    /// The thresholds in `list`.
    pub fn new(list: Vec<Threshold>) -> Self {
        Thresholds {
            list,
            handle: None,
            scenario_tags: Default::default(),
        }
    }
}

impl Output for Thresholds {
    fn name(&self) -> &str {
        "thresholds"
    }

    fn start(&mut self, run: &RunInfo<'_>) -> Result<(), BoxError> {
        self.handle = Some(run.handle.clone());
        self.scenario_tags = run.scenario_tags();
        Ok(())
    }

    fn interval(&mut self, view: &IntervalView<'_>) -> Verdict {
        let secs = view.run_time.as_secs_f64();
        let verdicts: Vec<ThresholdResult> = self
            .list
            .iter()
            .map(|t| t.evaluate_in(view.total, secs, &self.scenario_tags))
            .collect();
        let mut stop = Verdict::Continue;
        for (t, verdict) in self.list.iter().zip(&verdicts) {
            // Mid-run, a threshold that has seen no request yet has nothing to judge.
            if t.aborts() && !verdict.ok && verdict.matched > 0 {
                stop = Verdict::Stop(format!(
                    "threshold `{}` failed (value {})",
                    verdict.expr, verdict.value
                ));
                break;
            }
        }
        if let Some(h) = &self.handle {
            h.publish_thresholds(verdicts);
        }
        stop
    }

    fn summary(&mut self, summary: &mut Summary, total: &Snapshot) {
        summary.thresholds = self
            .list
            .iter()
            .map(|t| t.evaluate_in(total, summary.duration_s, &self.scenario_tags))
            .collect();
        if let Some(h) = &self.handle {
            h.publish_thresholds(summary.thresholds.clone());
        }
    }
}

/// Writes the summary as JSON to a file at the end of the run (`--summary-export`).
pub struct JsonExport {
    path: PathBuf,
}

impl JsonExport {
    /// An export to `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        JsonExport { path: path.into() }
    }
}

impl Output for JsonExport {
    fn name(&self) -> &str {
        "summary-export"
    }

    fn end(&mut self, summary: &Summary) -> Result<(), BoxError> {
        std::fs::write(&self.path, summary.to_json())
            .map_err(|e| format!("cannot write the summary to {}: {e}", self.path.display()).into())
    }
}

/// Feeds the Prometheus exporter served at `/metrics`: counters and histograms from each
/// closed interval (aggregated, never per request), users per type, workers per state.
pub struct PrometheusOutput {
    exporter: Arc<PrometheusExporter>,
}

impl PrometheusOutput {
    /// An output feeding `exporter`.
    pub fn new(exporter: Arc<PrometheusExporter>) -> Self {
        PrometheusOutput { exporter }
    }
}

impl Output for PrometheusOutput {
    fn name(&self) -> &str {
        "prometheus"
    }

    fn start(&mut self, run: &RunInfo<'_>) -> Result<(), BoxError> {
        for sc in run.scenarios {
            self.exporter.declare_scenario(sc.name());
        }
        for name in run.user_types {
            self.exporter.set_users(name, 0);
        }
        Ok(())
    }

    fn interval(&mut self, view: &IntervalView<'_>) -> Verdict {
        self.exporter.update(view.interval);
        for (name, n) in view.users {
            self.exporter.set_users(name, *n);
        }
        if view.workers.is_empty() {
            return Verdict::Continue;
        }
        let mut by_state: Vec<(RunnerState, u64)> = Vec::new();
        for w in view.workers {
            match by_state.iter_mut().find(|(s, _)| *s == w.state) {
                Some((_, n)) => *n += 1,
                None => by_state.push((w.state, 1)),
            }
        }
        self.exporter.set_workers(&by_state);
        Verdict::Continue
    }
}

type Handler = Arc<dyn Fn(&RequestRecord<'_>) + Send + Sync>;

/// Handlers of the `request_metrics` event, by priority (higher first): attached to the
/// run's event when it starts, so they see every request as it is recorded. They run on
/// the recording user's task: keep them quick.
#[derive(Default, Clone)]
pub struct RequestMetricsOutput {
    handlers: Vec<(i32, Handler)>,
}

impl RequestMetricsOutput {
    /// No handlers yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `handler` with `priority`.
    pub fn handler<F>(mut self, priority: i32, handler: F) -> Self
    where
        F: Fn(&RequestRecord<'_>) + Send + Sync + 'static,
    {
        self.handlers.push((priority, Arc::new(handler)));
        self
    }

    /// Whether any handler was added.
    pub fn is_empty(&self) -> bool {
        self.handlers.is_empty()
    }
}

impl Output for RequestMetricsOutput {
    fn name(&self) -> &str {
        "request_metrics"
    }

    fn start(&mut self, run: &RunInfo<'_>) -> Result<(), BoxError> {
        for (priority, h) in &self.handlers {
            let h = Arc::clone(h);
            run.request_metrics
                .add_handler(move |r: &RequestRecord<'_>| h(r), *priority);
        }
        Ok(())
    }
}

/// k6's `handleSummary`: called with the final summary; an error is reported with the
/// run.
pub struct SummaryHookOutput {
    hook: SummaryHook<Summary>,
}

impl SummaryHookOutput {
    /// An output calling `hook`.
    pub fn new(hook: SummaryHook<Summary>) -> Self {
        SummaryHookOutput { hook }
    }
}

impl Output for SummaryHookOutput {
    fn name(&self) -> &str {
        "summary hook"
    }

    fn end(&mut self, summary: &Summary) -> Result<(), BoxError> {
        self.hook.call(summary).map_err(|e| e.to_string().into())
    }
}

impl Output for Box<dyn Output> {
    fn name(&self) -> &str {
        (**self).name()
    }

    fn start(&mut self, run: &RunInfo<'_>) -> Result<(), BoxError> {
        (**self).start(run)
    }

    fn interval(&mut self, view: &IntervalView<'_>) -> Verdict {
        (**self).interval(view)
    }

    fn summary(&mut self, summary: &mut Summary, total: &Snapshot) {
        (**self).summary(summary, total);
    }

    fn end(&mut self, summary: &Summary) -> Result<(), BoxError> {
        (**self).end(summary)
    }
}
