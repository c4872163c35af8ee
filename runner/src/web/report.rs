//! The HTML of reports: the run's settings, totals, thresholds, scenarios, endpoints and
//! errors as plain tables (readable with JavaScript off), and the page around them. The
//! live dashboard shows the same tables, fetched as HTML from the control server.

use std::fmt::Write as _;

use crate::handle::WorkerView;
use crate::series::SeriesPoint;
use crate::summary::{Row, RunMeta, Summary};

/// `s` with `& < > " '` escaped, for text and attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

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

/// A duration in ms, `-` for none (no request of the row has a duration).
fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"))
}

/// A numeric cell carrying its field name, so a reader (or a test) finds it.
fn num(out: &mut String, field: &str, text: &str) {
    let _ = write!(out, "<td data-field=\"{field}\">{}</td>", esc(text));
}

const ROW_HEAD: &str = "<tr><th class=\"text\">Endpoint</th><th>Requests</th><th>Fails</th>\
<th>Interrupted</th><th>Req/s</th><th>Min ms</th><th>p50 ms</th><th>p90 ms</th><th>p95 ms</th>\
<th>p99 ms</th><th>Max ms</th><th>Mean ms</th></tr>";

fn row_cells(out: &mut String, label: &str, r: &Row) {
    let _ = write!(out, "<td class=\"text\">{}</td>", esc(label));
    num(out, "requests", &r.requests.to_string());
    num(out, "failures", &r.failures.to_string());
    num(out, "interrupted", &r.interrupted.to_string());
    num(out, "rps", &format!("{:.1}", r.rps));
    num(out, "min_ms", &ms(r.min_ms));
    num(out, "p50_ms", &ms(r.p50_ms));
    num(out, "p90_ms", &ms(r.p90_ms));
    num(out, "p95_ms", &ms(r.p95_ms));
    num(out, "p99_ms", &ms(r.p99_ms));
    num(out, "max_ms", &ms(r.max_ms));
    num(out, "mean_ms", &ms(r.mean_ms));
}

/// The totals: one row, as the summary's last.
pub(crate) fn totals_table(summary: &Summary) -> String {
    let mut out = String::from("<table id=\"totals\">");
    out.push_str(ROW_HEAD);
    out.push_str("<tr class=\"total\">");
    row_cells(&mut out, "Total", &summary.totals);
    out.push_str("</tr></table>");
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

/// Endpoints grouped by scenario; an open-model row has its service time under it.
pub(crate) fn endpoints_table(summary: &Summary) -> String {
    let mut out = String::from("<table id=\"endpoints\">");
    out.push_str(ROW_HEAD);
    let mut scenario: Option<&str> = None;
    for r in &summary.endpoints {
        if scenario != Some(r.scenario.as_str()) {
            scenario = Some(&r.scenario);
            let executor = summary
                .executor_of(&r.scenario)
                .map(|e| format!(" ({e})"))
                .unwrap_or_default();
            let _ = write!(
                out,
                "<tr class=\"group\"><td colspan=\"12\">scenario {}{}</td></tr>",
                esc(&r.scenario),
                esc(&executor)
            );
        }
        let _ = write!(out, "<tr data-scenario=\"{}\">", esc(&r.scenario));
        row_cells(&mut out, &format!("{} {}", r.method, r.name), r);
        out.push_str("</tr>");
        if let (Some(p50), Some(p90), Some(p95), Some(p99), Some(max)) = (
            r.service_p50_ms,
            r.service_p90_ms,
            r.service_p95_ms,
            r.service_p99_ms,
            r.service_max_ms,
        ) {
            let _ = write!(
                out,
                "<tr class=\"service\"><td class=\"text\">&nbsp;&nbsp;service time</td>\
                 <td colspan=\"5\"></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td></td></tr>",
                ms(Some(p50)),
                ms(Some(p90)),
                ms(Some(p95)),
                ms(Some(p99)),
                ms(Some(max))
            );
        }
    }
    if summary.endpoints.is_empty() {
        out.push_str("<tr><td class=\"text\" colspan=\"12\">No request yet.</td></tr>");
    }
    out.push_str("</table>");
    out
}

/// Scenarios: what each is (from the run's settings, when known) and its iterations.
pub(crate) fn scenarios_table(meta: Option<&RunMeta>, summary: &Summary) -> String {
    let mut out = String::from(
        "<table id=\"scenarios\"><tr><th class=\"text\">Scenario</th><th class=\"text\">Executor</th>\
         <th class=\"text\">Settings</th><th>Starts</th><th>Iterations</th><th>Dropped</th>\
         <th>Interrupted</th><th>Iter/s</th><th>Iter p50 ms</th><th>Iter p95 ms</th></tr>",
    );
    for sc in &summary.scenarios {
        let info = meta.and_then(|m| m.scenarios.iter().find(|i| i.name == sc.name));
        let settings = info.map_or(String::new(), |i| {
            format!("{}; users: {}", i.settings, i.user_types.join(", "))
        });
        let starts = info.map_or(String::new(), |i| format!("{}s", i.start_time_s));
        let _ = write!(
            out,
            "<tr data-scenario=\"{}\"><td class=\"text\">{}</td><td class=\"text\">{}</td><td class=\"text\">{}</td><td>{}</td>",
            esc(&sc.name),
            esc(&sc.name),
            esc(&sc.executor),
            esc(&settings),
            esc(&starts)
        );
        num(&mut out, "iterations", &sc.iterations.to_string());
        num(
            &mut out,
            "dropped_iterations",
            &sc.dropped_iterations.to_string(),
        );
        num(
            &mut out,
            "interrupted_iterations",
            &sc.interrupted_iterations.to_string(),
        );
        num(
            &mut out,
            "iterations_per_s",
            &format!("{:.1}", sc.iterations_per_s),
        );
        num(&mut out, "iteration_p50_ms", &ms(Some(sc.iteration_p50_ms)));
        num(&mut out, "iteration_p95_ms", &ms(Some(sc.iteration_p95_ms)));
        out.push_str("</tr>");
    }
    out.push_str("</table>");
    out
}

/// Named checks: passes, failures and the share that passed.
pub(crate) fn checks_table(summary: &Summary) -> String {
    let mut out = String::from(
        "<table id=\"named-checks\"><tr><th class=\"text\">Check</th><th>Passed</th>\
         <th>Failed</th><th>Rate %</th></tr>",
    );
    for c in &summary.checks {
        let cls = if c.fails == 0 { "ok" } else { "bad" };
        let _ = write!(
            out,
            "<tr><td class=\"text {cls}\">{}</td><td>{}</td><td>{}</td><td>{:.2}</td></tr>",
            esc(&c.name),
            c.passes,
            c.fails,
            c.rate
        );
    }
    out.push_str("</table>");
    out
}

/// Named metrics: a row per metric (its tag sets together), then one per tag set.
pub(crate) fn metrics_table(summary: &Summary) -> String {
    let mut out = String::from(
        "<table id=\"named-metrics\"><tr><th class=\"text\">Metric</th>\
         <th class=\"text\">Tags</th><th class=\"text\">Kind</th><th>Samples</th>\
         <th class=\"text\">Figures</th></tr>",
    );
    for m in &summary.metrics {
        let tags = m.tags_joined(", ").unwrap_or_else(|| "(all)".to_owned());
        let _ = write!(
            out,
            "<tr><td class=\"text\">{}</td><td class=\"text\">{}</td><td class=\"text\">{}</td>\
             <td>{}</td><td class=\"text\">{}</td></tr>",
            esc(&m.name),
            esc(&tags),
            esc(&m.kind),
            m.samples,
            esc(&m.figures())
        );
    }
    out.push_str("</table>");
    out
}

/// Thresholds with their verdicts; a note when there are none.
pub(crate) fn thresholds_table(summary: &Summary) -> String {
    if summary.thresholds.is_empty() {
        return "<p class=\"note\" id=\"thresholds\">No thresholds were set.</p>".into();
    }
    let mut out = String::from(
        "<table id=\"thresholds\"><tr><th class=\"text\">Threshold</th><th class=\"text\">Verdict</th>\
         <th>Value</th><th>Matched</th><th class=\"text\">Why</th></tr>",
    );
    for t in &summary.thresholds {
        let (cls, verdict) = if t.ok {
            ("ok", "passed")
        } else {
            ("bad", "FAILED")
        };
        let _ = write!(
            out,
            "<tr><td class=\"text\">{}</td><td class=\"text {cls}\">{verdict}</td><td>{}</td><td>{}</td><td class=\"text\">{}</td></tr>",
            esc(&t.expr),
            t.value,
            t.matched,
            esc(t.reason.as_deref().unwrap_or(""))
        );
    }
    out.push_str("</table>");
    out
}

/// Failures by category, then by message.
pub(crate) fn errors_tables(summary: &Summary) -> String {
    if summary.errors.is_empty() {
        return "<p class=\"note\" id=\"errors\">No request failed.</p>".into();
    }
    let mut by_category: Vec<(&str, u64)> = Vec::new();
    for e in &summary.errors {
        match by_category.iter_mut().find(|(c, _)| *c == e.category) {
            Some((_, n)) => *n += e.count,
            None => by_category.push((&e.category, e.count)),
        }
    }
    by_category.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let mut out = String::from(
        "<table id=\"error-categories\"><tr><th class=\"text\">Category</th><th>Failures</th></tr>",
    );
    for (c, n) in by_category {
        let _ = write!(
            out,
            "<tr><td class=\"text\">{}</td><td>{n}</td></tr>",
            esc(c)
        );
    }
    out.push_str(
        "</table><table id=\"errors\"><tr><th class=\"text\">Endpoint</th><th class=\"text\">Category</th>\
         <th class=\"text\">Message</th><th>Count</th></tr>",
    );
    for e in &summary.errors {
        let _ = write!(
            out,
            "<tr><td class=\"text\">{} {}</td><td class=\"text\">{}</td><td class=\"text\">{}</td><td>{}</td></tr>",
            esc(&e.method),
            esc(&e.name),
            esc(&e.category),
            esc(&e.message),
            e.count
        );
    }
    out.push_str("</table>");
    out
}

/// A distributed run's workers.
pub(crate) fn workers_table(workers: &[WorkerView]) -> String {
    if workers.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "<table id=\"workers\"><tr><th class=\"text\">Worker</th><th class=\"text\">State</th><th>Users</th></tr>",
    );
    for w in workers {
        let cls = if w.state.as_str() == "MISSING" {
            " bad"
        } else {
            ""
        };
        let _ = write!(
            out,
            "<tr><td class=\"text\">{}</td><td class=\"text{cls}\">{}</td><td>{}</td></tr>",
            esc(&w.id),
            w.state.as_str(),
            w.users
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
        out.push_str(&checks_table(summary));
    }
    if !summary.metrics.is_empty() {
        out.push_str("<h2>Metrics</h2>");
        out.push_str(&metrics_table(summary));
    }
    out.push_str(
        "<h2>Over time</h2><noscript><p class=\"note\">The charts need JavaScript; every \
         figure is also in the tables.</p></noscript><div class=\"charts\" id=\"charts\"></div>",
    );
    out.push_str("<h2>Scenarios</h2>");
    out.push_str(&scenarios_table(Some(meta), summary));
    out.push_str("<h2>Endpoints</h2>");
    out.push_str(&endpoints_table(summary));
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
        let html = metrics_table(&summary);
        assert!(
            html.contains("<td class=\"text\">load_ms</td><td class=\"text\">(all)</td>"),
            "{html}"
        );
        assert!(html.contains("page:&lt;script&gt;"), "{html}");
        assert!(html.contains("avg=12ms"), "{html}");
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
