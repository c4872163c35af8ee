//! `test.abort()`: a VU ends the run, wherever it runs. The call is a sample of the
//! counter `script_aborts` under its reason, handed on at once; [`AbortWatch`], an output
//! of the local runner or the master, stops the run in the interval that sample falls
//! in, as a threshold with `abortOnFail` would, and the command line exits 108 (k6's code
//! for it).

use std::sync::OnceLock;

use aiotest_http_user::HttpClient;
use aiotest_metrics::{Metric, Tags};
use aiotest_runner::Summary;
use aiotest_runner::output::{IntervalView, Output, Verdict};

/// The counter of `test.abort()` calls, by reason (`{reason: "no stock"}`).
pub const SCRIPT_ABORTS: &str = "script_aborts";

fn metric() -> &'static Metric {
    static METRIC: OnceLock<Metric> = OnceLock::new();
    METRIC.get_or_init(|| Metric::counter(SCRIPT_ABORTS).expect("a valid metric name"))
}

/// Counts the abort on `client`'s recorder and hands it on now.
pub(crate) fn record(client: &mut HttpClient, reason: &str) {
    let tags = Tags::from_pairs([("reason", crate::user::bounded(reason))]).unwrap_or_default();
    if let Err(e) = client.add(metric(), 1.0, &tags) {
        tracing::warn!("test.abort(): {e}");
    }
    client.recorder().flush();
}

/// Why the run was aborted, from a snapshot's `script_aborts`: the first reason.
fn reason(snapshot: &aiotest_metrics::Snapshot) -> Option<String> {
    let by_tags = snapshot.metrics.series.get(SCRIPT_ABORTS)?;
    let (tags, _) = by_tags.iter().find(|(_, s)| s.samples > 0)?;
    Some(
        tags.iter()
            .find(|(k, _)| *k == "reason")
            .map(|(_, v)| v.to_owned())
            .unwrap_or_default(),
    )
}

/// Stops the run once a VU called `test.abort()`, and says so in the summary.
#[derive(Debug, Default)]
pub struct AbortWatch {
    stopped: bool,
}

impl Output for AbortWatch {
    fn name(&self) -> &str {
        "test.abort()"
    }

    fn interval(&mut self, view: &IntervalView<'_>) -> Verdict {
        if self.stopped {
            return Verdict::Continue;
        }
        match reason(view.interval) {
            None => Verdict::Continue,
            Some(r) => {
                self.stopped = true;
                Verdict::Stop(if r.is_empty() {
                    "called".into()
                } else {
                    format!("called: {r}")
                })
            }
        }
    }

    fn summary(&mut self, summary: &mut Summary, total: &aiotest_metrics::Snapshot) {
        if let Some(r) = reason(total) {
            let shown = if r.is_empty() {
                String::new()
            } else {
                format!(" ({r})")
            };
            summary.notes.push(format!(
                "the script called test.abort(){shown}: the run was aborted"
            ));
        }
    }
}

/// Whether `summary` is of a run a script aborted, and why.
pub fn aborted(summary: &Summary) -> Option<String> {
    let row = summary
        .metrics
        .iter()
        .find(|m| m.name == SCRIPT_ABORTS && m.tags.is_none())?;
    if row.values.get("count").copied().unwrap_or(0.0) <= 0.0 {
        return None;
    }
    let reason = summary
        .metrics
        .iter()
        .filter(|m| m.name == SCRIPT_ABORTS)
        .find_map(|m| m.tags.as_ref()?.get("reason").cloned())
        .unwrap_or_default();
    Some(reason)
}
