//! What people look at: the self-contained HTML report ([`HtmlReport`], `--html`) and the
//! live dashboard the control server serves at `/`. Both are one page with everything
//! embedded (style, the in-house chart script, data): nothing is fetched from the
//! network, so they work in closed networks and from a `file://` URL. Tables are plain
//! HTML, readable with JavaScript off; the charts are drawn by the script from the run's
//! interval series.

mod report;

use std::path::PathBuf;
use std::sync::LazyLock;

use aiotest_core::BoxError;

use crate::RunnerHandle;
use crate::output::{IntervalView, Output, RunInfo, Verdict};
use crate::series::Series;
use crate::summary::{RunMeta, Summary};

pub use report::render;

/// The stylesheet of the report and the dashboard.
pub(crate) const PAGE_CSS: &str = include_str!("page.css");
/// The chart script both draw with.
pub(crate) const CHARTS_JS: &str = include_str!("charts.js");

/// The dashboard page, with its style and scripts in it.
pub(crate) fn dashboard_page() -> &'static str {
    static PAGE: LazyLock<String> = LazyLock::new(|| {
        include_str!("dashboard.html")
            .replace("/*CSS*/", PAGE_CSS)
            .replace("/*CHARTS*/", CHARTS_JS)
            .replace("/*DASHBOARD*/", include_str!("dashboard.js"))
    });
    &PAGE
}

/// What the dashboard shows under its charts, as HTML rendered here (the same tables as
/// the report): during the run from the totals so far, after it from the final summary.
pub(crate) fn tables(handle: &RunnerHandle) -> serde_json::Value {
    let meta = handle.meta();
    let finished = handle.summary();
    let summary = match &finished {
        Some(s) => s.clone(),
        None => live_summary(handle, meta.as_ref()),
    };
    let mut html = String::new();
    html.push_str("<h2>Totals</h2>");
    html.push_str(&report::totals_table(&summary));
    let workers = handle.workers();
    if !workers.is_empty() {
        html.push_str("<h2>Workers</h2>");
        let series = handle.series();
        let latest = series.last().map_or(&[][..], |p| &p.generator[..]);
        html.push_str(&report::workers_table(&workers, latest));
    }
    html.push_str("<h2>Thresholds</h2>");
    html.push_str(&report::thresholds_table(&summary));
    if !summary.checks.is_empty() {
        html.push_str("<h2>Checks</h2>");
        html.push_str(&summary.checks_table().to_html());
    }
    if !summary.metrics.is_empty() {
        html.push_str("<h2>Metrics</h2>");
        html.push_str(&summary.metrics_table(None).to_html());
    }
    html.push_str("<h2>Scenarios</h2>");
    html.push_str(&summary.scenarios_table(meta.as_ref()).to_html());
    html.push_str("<h2>Endpoints</h2>");
    html.push_str(
        &summary
            .endpoints_table(summary.latency_unit(), false)
            .to_html(),
    );
    html.push_str("<h2>Errors</h2>");
    html.push_str(&report::errors_tables(&summary));
    serde_json::json!({
        "html": html,
        "command": meta.and_then(|m| m.command),
        "finished": finished.is_some(),
    })
}

/// The summary as it stands: the totals so far over the run time so far, with the
/// threshold verdicts as they stand.
pub(crate) fn live_summary(handle: &RunnerHandle, meta: Option<&RunMeta>) -> Summary {
    let run_time = handle
        .series()
        .last()
        .map_or(0.0, |p| p.run_time_s)
        .max(0.0);
    let mut summary = Summary::new(
        &handle.total(),
        std::time::Duration::from_secs_f64(run_time),
    )
    .with_scenarios(meta.map_or(&[], |m| &m.scenarios));
    summary.thresholds = handle.thresholds();
    summary
}

/// The final report of the run, once it has ended (`GET /report.html` with `--linger`).
pub(crate) fn final_report(handle: &RunnerHandle) -> Option<String> {
    let summary = handle.summary()?;
    let meta = handle.meta()?;
    Some(render(&meta, &summary, &handle.series()))
}

/// Writes the self-contained HTML report to a file at the end of the run (`--html`).
pub struct HtmlReport {
    path: PathBuf,
    meta: Option<RunMeta>,
    series: Series,
}

impl HtmlReport {
    /// A report written to `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        HtmlReport {
            path: path.into(),
            meta: None,
            series: Series::default(),
        }
    }
}

impl Output for HtmlReport {
    fn name(&self) -> &str {
        "html report"
    }

    fn start(&mut self, run: &RunInfo<'_>) -> Result<(), BoxError> {
        self.meta = Some(run.meta.clone());
        Ok(())
    }

    fn interval(&mut self, view: &IntervalView<'_>) -> Verdict {
        self.series.push(view.point.clone());
        Verdict::Continue
    }

    fn end(&mut self, summary: &Summary) -> Result<(), BoxError> {
        let mut meta = self
            .meta
            .clone()
            .unwrap_or_else(|| RunMeta::new(None, "local", &[], crate::handle::now_us()));
        meta.ended_us = Some(crate::handle::now_us());
        let page = render(&meta, summary, self.series.points());
        std::fs::write(&self.path, page).map_err(|e| {
            format!(
                "cannot write the HTML report to {}: {e}",
                self.path.display()
            )
            .into()
        })
    }
}
