//! The HTML of reports: the run's settings, totals, thresholds, scenarios, endpoints and
//! errors as plain tables (readable with JavaScript off), and the page around them. The
//! live dashboard shows the same tables, fetched as HTML from the control server.

use std::fmt::Write as _;

use crate::handle::WorkerView;
use crate::series::{GeneratorPoint, SeriesPoint};
use crate::summary::{RunMeta, Summary};

pub(crate) use crate::table::esc;

/// JSON for a `<script type="application/json">` block: `</` cannot close it early.
pub(crate) fn json_in_script(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value)
        .unwrap_or_else(|_| "null".into())
        .replace("</", "<\\/")
}

/// µs since the Unix epoch as `2026-11-29 22:49:28 UTC`.
pub(crate) fn utc(us: u64) -> String {
    let secs = us / 1_000_000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Days to a civil date (proleptic Gregorian), after Howard Hinnant's algorithm.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

/// The totals: one row, as the summary's last, and the request checks' verdicts.
pub(crate) fn totals_table(summary: &Summary) -> String {
    let mut out = summary.totals_table().to_html();
    let t = &summary.totals;
    if t.checks > 0 {
        let _ = write!(
            out,
            "<p id=\"checks\">Checks: <b data-field=\"checks_passed\">{}</b> passed, \
             <b data-field=\"checks_failed\">{}</b> failed.</p>",
            t.checks - t.checks_failed.min(t.checks),
            t.checks_failed
        );
    }
    out
}

/// Thresholds with their verdicts; a note when there are none.
pub(crate) fn thresholds_table(summary: &Summary) -> String {
    if summary.thresholds.is_empty() {
        return "<p class=\"note\" id=\"thresholds\">No thresholds were set.</p>".into();
    }
    summary.thresholds_table().to_html()
}

/// Failures by category, then by message.
pub(crate) fn errors_tables(summary: &Summary) -> String {
    if summary.errors.is_empty() {
        return "<p class=\"note\" id=\"errors\">No request failed.</p>".into();
    }
    summary.error_categories_table().to_html() + &summary.errors_table(None).to_html()
}

/// A distributed run's workers.
pub(crate) fn workers_table(workers: &[WorkerView], generator: &[GeneratorPoint]) -> String {
    if workers.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "<table id=\"workers\"><tr><th class=\"text\">Worker</th><th class=\"text\">State</th><th>Users</th>\
         <th>Timer delay p99 (ms)</th><th>CPU (%)</th></tr>",
    );
    for w in workers {
        let cls = if w.state.as_str() == "MISSING" {
            " bad"
        } else {
            ""
        };
        // The worker's health in the latest interval, found by its process id (its node
        // id is host-pid-suffix).
        let pid = w.id.rsplit('-').nth(1).unwrap_or_default();
        let health = generator
            .iter()
            .find(|g| g.process == format!("worker_pid:{pid}"));
        let figure = |v: Option<f64>, bound: f64| match v {
            Some(v) if v > bound => format!("<td class=\"bad\">{v:.1}</td>"),
            Some(v) => format!("<td>{v:.1}</td>"),
            None => "<td>-</td>".to_owned(),
        };
        let _ = write!(
            out,
            "<tr><td class=\"text\">{}</td><td class=\"text{cls}\">{}</td><td>{}</td>{}{}</tr>",
            esc(&w.id),
            w.state.as_str(),
            w.users,
            figure(
                health.and_then(|g| g.delay_p99_ms),
                crate::health::DELAY_BOUND_MS
            ),
            figure(
                health.and_then(|g| g.cpu_percent),
                crate::health::CPU_BOUND_PERCENT
            ),
        );
    }
    out.push_str("</table>");
    out
}

fn notes_list(summary: &Summary) -> String {
    if summary.notes.is_empty() {
        return String::new();
    }
    let mut out = String::from("<h2>Notes</h2><ul id=\"notes\">");
    for n in &summary.notes {
        let _ = write!(out, "<li>{}</li>", esc(n));
    }
    out.push_str("</ul>");
    out
}

fn settings_list(meta: &RunMeta, summary: &Summary) -> String {
    let mut out = String::from("<dl class=\"settings\" id=\"run\">");
    let mut item = |k: &str, v: &str| {
        let _ = write!(out, "<dt>{}</dt><dd>{}</dd>", esc(k), esc(v));
    };
    if let Some(c) = &meta.command {
        item("Command", c);
    }
    item("Runner", &meta.role);
    item("Started", &utc(meta.started_us));
    if let Some(end) = meta.ended_us {
        item("Ended", &utc(end));
    }
    item(
        "Run time",
        &format!(
            "{:.1} s (pauses and graceful stops excluded)",
            summary.duration_s
        ),
    );
    out.push_str("</dl>");
    out
}

/// The verdict badge: thresholds passed or failed, or the run's failures when there are
/// no thresholds.
fn verdict(summary: &Summary) -> String {
    if !summary.thresholds.is_empty() {
        return if summary.thresholds_ok() {
            "<span class=\"badge ok\" id=\"verdict\">thresholds passed</span>".into()
        } else {
            "<span class=\"badge bad\" id=\"verdict\">thresholds FAILED</span>".into()
        };
    }
    let t = &summary.totals;
    if t.requests > 0 && t.failures == t.requests {
        "<span class=\"badge bad\" id=\"verdict\">every request failed</span>".into()
    } else {
        "<span class=\"badge\" id=\"verdict\">no thresholds</span>".into()
    }
}

/// The whole report: one self-contained page. Tables are plain HTML; the charts are drawn
/// by the embedded script from the embedded series.
pub fn render(meta: &RunMeta, summary: &Summary, series: &[SeriesPoint]) -> String {
    let title = match &meta.command {
        Some(c) => format!("aiotest report: {c}"),
        None => "aiotest report".to_owned(),
    };
    let mut out = String::with_capacity(64 * 1024);
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>{}</style></head><body>",
        esc(&title),
        super::PAGE_CSS
    );
    let _ = write!(
        out,
        "<header><h1>aiotest report</h1>{}<span class=\"sub\">{}</span></header>",
        verdict(summary),
        esc(&utc(meta.started_us))
    );
    out.push_str("<h2>Run</h2>");
    out.push_str(&settings_list(meta, summary));
    out.push_str("<h2>Totals</h2>");
    out.push_str(&totals_table(summary));
    out.push_str("<h2>Thresholds</h2>");
    out.push_str(&thresholds_table(summary));
    if !summary.checks.is_empty() {
        out.push_str("<h2>Checks</h2>");
        out.push_str(&summary.checks_table().to_html());
    }
    if !summary.metrics.is_empty() {
        out.push_str("<h2>Metrics</h2>");
        out.push_str(&summary.metrics_table(None).to_html());
    }
    out.push_str(
        "<h2>Over time</h2><noscript><p class=\"note\">The charts need JavaScript; every \
         figure is also in the tables.</p></noscript><div class=\"charts\" id=\"charts\"></div>",
    );
    out.push_str("<h2>Scenarios</h2>");
    out.push_str(&summary.scenarios_table(Some(meta)).to_html());
    out.push_str("<h2>Endpoints</h2>");
    out.push_str(
        &summary
            .endpoints_table(summary.latency_unit(), false)
            .to_html(),
    );
    out.push_str("<h2>Errors</h2>");
    out.push_str(&errors_tables(summary));
    out.push_str(&notes_list(summary));
    let _ = writeln!(
        out,
        "<footer>Made by aiotest. Open-model latencies count from each iteration's intended \
         start; the service time is beside them.</footer>\
         <script type=\"application/json\" id=\"series-data\">{}</script>\
         <script>{}</script>\
         <script>aiotest.drawCharts(document.getElementById(\"charts\"), \
         JSON.parse(document.getElementById(\"series-data\").textContent));</script>\
         </body></html>",
        json_in_script(&series),
        super::CHARTS_JS
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_metrics_have_a_table_row_each_escaped() {
        use aiotest_metrics::{Metric, Snapshot, Tags};
        let mut snap = Snapshot::new();
        let tags = Tags::from_pairs([("page", "<script>")]).unwrap();
        snap.metrics
            .add(&Metric::time_trend("load_ms").unwrap(), &tags, 12.0, 1);
        let summary = Summary::new(&snap, std::time::Duration::from_secs(1));
        let html = summary.metrics_table(None).to_html();
        assert!(
            html.contains("<td class=\"text\" data-field=\"metric\">load_ms</td><td class=\"text\" data-field=\"tags\">(all)</td>"),
            "{html}"
        );
        assert!(html.contains("page:&lt;script&gt;"), "{html}");
        assert!(html.contains("<td data-field=\"avg\">12ms</td>"), "{html}");
        assert!(!html.contains("<script>"), "{html}");
    }

    #[test]
    fn utc_dates_are_civil_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        // date -u -d @1796078968
        assert_eq!(utc(1_796_078_968_000_000), "2026-11-30 22:49:28 UTC");
        // A leap day.
        assert_eq!(utc(951_782_400_000_000), "2000-02-29 00:00:00 UTC");
    }

    #[test]
    fn text_and_scripts_cannot_break_out() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(json_in_script(&"</script>"), "\"<\\/script>\"");
    }
}
