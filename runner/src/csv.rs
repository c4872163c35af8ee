//! CSV files a Locust user recognizes (`--csv PREFIX`): `PREFIX_stats.csv` (per endpoint
//! and aggregated, Locust's columns first), `PREFIX_failures.csv` (failures by endpoint,
//! category and message) and `PREFIX_history.csv` (one row per closed interval for the
//! aggregate and each endpoint, written as the run goes, so a run cut short keeps its
//! history). Beside them, the summary's own tables as the printed summary and the HTML
//! report show them ([`crate::table`]): `PREFIX_metrics.csv` (each named metric, whole
//! and per tag set, a column per figure), `PREFIX_checks.csv`, `PREFIX_scenarios.csv`
//! (iterations) and `PREFIX_thresholds.csv` (verdicts).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use aiotest_core::BoxError;
use aiotest_metrics::{EndpointKey, EndpointStats, Snapshot};

use crate::output::{IntervalView, Output, RunInfo, Verdict};
use crate::series::PointRow;
use crate::summary::Summary;
#[cfg(test)]
use crate::table::csv_field as field;
use crate::table::csv_line;

fn line(out: &mut String, fields: &[String]) {
    csv_line(out, fields.iter().map(String::as_str));
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1_000.0)
}

const STATS_PERCENTILES: [(&str, f64); 12] = [
    ("50%", 0.50),
    ("66%", 0.66),
    ("75%", 0.75),
    ("80%", 0.80),
    ("90%", 0.90),
    ("95%", 0.95),
    ("98%", 0.98),
    ("99%", 0.99),
    ("99.9%", 0.999),
    ("99.99%", 0.9999),
    ("100%", 1.0),
    ("Service 99%", -1.0),
];

fn stats_header() -> Vec<String> {
    let mut h: Vec<String> = [
        "Type",
        "Name",
        "Request Count",
        "Failure Count",
        "Median Response Time",
        "Average Response Time",
        "Min Response Time",
        "Max Response Time",
        "Average Content Size",
        "Requests/s",
        "Failures/s",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    h.extend(STATS_PERCENTILES.iter().map(|(n, _)| (*n).to_owned()));
    h.extend(["Scenario".to_owned(), "Interrupted Count".to_owned()]);
    h
}

fn stats_row(kind: &str, name: &str, scenario: &str, s: &EndpointStats, secs: f64) -> Vec<String> {
    let per_s = |n: u64| {
        if secs > 0.0 {
            format!("{:.2}", n as f64 / secs)
        } else {
            "0".into()
        }
    };
    let size = s.bytes_received.checked_div(s.requests).unwrap_or(0);
    let mut row = vec![
        kind.to_owned(),
        name.to_owned(),
        s.requests.to_string(),
        s.failures.to_string(),
        ms(s.percentile_us(0.50)),
        format!("{:.2}", s.mean_us() / 1_000.0),
        ms(s.min_us.unwrap_or(0)),
        ms(s.max_us.unwrap_or(0)),
        size.to_string(),
        per_s(s.requests),
        per_s(s.failures),
    ];
    for (_, q) in STATS_PERCENTILES {
        row.push(if q < 0.0 {
            // The open model's plain service time (empty for closed-model rows).
            s.service
                .as_ref()
                .map_or(String::new(), |t| ms(t.percentile_us(0.99)))
        } else {
            ms(s.percentile_us(q))
        });
    }
    row.push(scenario.to_owned());
    row.push(s.interrupted().to_string());
    row
}

/// Every file `--csv PREFIX` writes, as `PREFIX_{name}.csv`.
pub const FILES: [&str; 7] = [
    "stats",
    "failures",
    "history",
    "metrics",
    "checks",
    "scenarios",
    "thresholds",
];

/// The CSV files; see the [module docs](self).
pub struct CsvOutput {
    prefix: PathBuf,
    history: Option<BufWriter<File>>,
    /// Requests and failures so far, per endpoint and in all (the history's running
    /// totals).
    so_far: HashMap<EndpointKey, (u64, u64)>,
    total_so_far: (u64, u64),
    stats: String,
    failures: String,
}

impl CsvOutput {
    /// Files named `PREFIX_stats.csv`, `PREFIX_failures.csv`, `PREFIX_history.csv`.
    pub fn new(prefix: impl Into<PathBuf>) -> Self {
        CsvOutput {
            prefix: prefix.into(),
            history: None,
            so_far: HashMap::new(),
            total_so_far: (0, 0),
            stats: String::new(),
            failures: String::new(),
        }
    }

    /// The file `PREFIX_{kind}.csv`.
    pub fn path(&self, kind: &str) -> PathBuf {
        let mut name = self
            .prefix
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_default();
        name.push(format!("_{kind}.csv"));
        self.prefix.with_file_name(name)
    }

    fn write(path: &Path, text: &str) -> Result<(), BoxError> {
        std::fs::write(path, text)
            .map_err(|e| format!("cannot write {}: {e}", path.display()).into())
    }
}

const HISTORY_HEADER: &[&str] = &[
    "Timestamp",
    "Run Time",
    "User Count",
    "Scenario",
    "Type",
    "Name",
    "Requests/s",
    "Failures/s",
    "50%",
    "95%",
    "99%",
    "Total Request Count",
    "Total Failure Count",
    "Generator Delay 99%",
    "Generator CPU %",
];

impl Output for CsvOutput {
    fn name(&self) -> &str {
        "csv"
    }

    /// Creates the history file at once: a path that cannot be written fails the run
    /// before any request, not after it.
    fn start(&mut self, _run: &RunInfo<'_>) -> Result<(), BoxError> {
        let path = self.path("history");
        let file = File::create(&path)
            .map_err(|e| -> BoxError { format!("cannot write {}: {e}", path.display()).into() })?;
        let mut w = BufWriter::new(file);
        let mut head = String::new();
        line(
            &mut head,
            &HISTORY_HEADER
                .iter()
                .map(|s| (*s).to_owned())
                .collect::<Vec<_>>(),
        );
        w.write_all(head.as_bytes())
            .map_err(|e| -> BoxError { format!("cannot write {}: {e}", path.display()).into() })?;
        self.history = Some(w);
        Ok(())
    }

    fn interval(&mut self, view: &IntervalView<'_>) -> Verdict {
        let p = view.point;
        let secs = p.seconds().max(1e-6);
        let mut out = String::new();
        let row = |out: &mut String,
                   scenario: &str,
                   kind: &str,
                   name: &str,
                   r: &PointRow,
                   so_far: (u64, u64),
                   generator: (String, String)| {
            line(
                out,
                &[
                    format!("{:.3}", p.end_us as f64 / 1e6),
                    format!("{:.3}", p.run_time_s),
                    p.users.to_string(),
                    scenario.to_owned(),
                    kind.to_owned(),
                    name.to_owned(),
                    format!("{:.2}", r.requests as f64 / secs),
                    format!("{:.2}", r.failures as f64 / secs),
                    ms(r.p50_us),
                    ms(r.p95_us),
                    ms(r.p99_us),
                    so_far.0.to_string(),
                    so_far.1.to_string(),
                    generator.0,
                    generator.1,
                ],
            );
        };
        self.total_so_far.0 += p.total.requests;
        self.total_so_far.1 += p.total.failures;
        // The generator's health on the aggregate's row: the worst process'.
        let worst = |f: fn(&crate::series::GeneratorPoint) -> Option<f64>| {
            p.generator
                .iter()
                .filter_map(f)
                .reduce(f64::max)
                .map_or(String::new(), |v| format!("{v:.2}"))
        };
        let generator = (worst(|g| g.delay_p99_ms), worst(|g| g.cpu_percent));
        row(
            &mut out,
            "",
            "",
            "Aggregated",
            &p.total,
            self.total_so_far,
            generator,
        );
        for (k, r) in &p.endpoints {
            let t = self.so_far.entry(k.clone()).or_default();
            t.0 += r.requests;
            t.1 += r.failures;
            let t = *t;
            let none = (String::new(), String::new());
            row(&mut out, &k.scenario, &k.method, &k.label(), r, t, none);
        }
        if let Some(w) = self.history.as_mut()
            && let Err(e) = w.write_all(out.as_bytes())
        {
            tracing::error!("csv history: {e}");
        }
        Verdict::Continue
    }

    fn summary(&mut self, summary: &mut Summary, total: &Snapshot) {
        let secs = summary.duration_s;
        let mut stats = String::new();
        line(&mut stats, &stats_header());
        for (k, s) in &total.endpoints {
            line(
                &mut stats,
                &stats_row(&k.method, &k.label(), &k.scenario, s, secs),
            );
        }
        line(
            &mut stats,
            &stats_row("", "Aggregated", "", &total.total(), secs),
        );
        self.stats = stats;
        let mut failures = String::new();
        line(
            &mut failures,
            &["Method", "Name", "Category", "Error", "Occurrences"].map(str::to_owned),
        );
        for e in &summary.errors {
            line(
                &mut failures,
                &[
                    e.method.clone(),
                    e.name.clone(),
                    e.category.clone(),
                    e.message.clone(),
                    e.count.to_string(),
                ],
            );
        }
        self.failures = failures;
    }

    /// Writes the files; the summary's own tables (metrics, checks, scenarios,
    /// thresholds) as the printed summary and the HTML report show them.
    fn end(&mut self, summary: &Summary) -> Result<(), BoxError> {
        let mut errors = Vec::new();
        if let Some(mut w) = self.history.take()
            && let Err(e) = w.flush()
        {
            errors.push(format!(
                "cannot write {}: {e}",
                self.path("history").display()
            ));
        }
        for (kind, text) in [
            ("stats", self.stats.clone()),
            ("failures", self.failures.clone()),
            ("metrics", summary.metrics_table(None).to_csv()),
            ("checks", summary.checks_table().to_csv()),
            ("scenarios", summary.scenarios_table(None).to_csv()),
            ("thresholds", summary.thresholds_table().to_csv()),
        ] {
            if let Err(e) = Self::write(&self.path(kind), &text) {
                errors.push(e.to_string());
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; ").into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_metrics_have_a_row_whole_and_per_tag_set_with_a_column_per_figure() {
        use aiotest_metrics::{Metric, Tags};
        let mut snap = Snapshot::new();
        let orders = Metric::counter("orders").unwrap();
        let eu = Tags::from_pairs([("shop", "eu"), ("tier", "=gold")]).unwrap();
        snap.metrics.add(&orders, &eu, 2.0, 1);
        snap.metrics.add(&orders, &Tags::new(), 1.0, 1);
        let summary = Summary::new(&snap, std::time::Duration::from_secs(1));
        assert_eq!(
            summary.metrics_table(None).to_csv(),
            "Metric,Name,Tags,Kind,Samples,count,rate,value,avg,min,med,max,p(90),p(95),p(99)\n\
             orders,orders,(all),counter,2,3,3,,,,,,,,\n\
             orders,orders,,counter,1,1,1,,,,,,,,\n\
             orders,orders,\"shop:eu,tier:=gold\",counter,1,2,2,,,,,,,,\n"
        );
    }

    #[test]
    fn fields_with_commas_or_quotes_are_quoted_and_nothing_raw_gets_through() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        // A line break or an escape sequence from a response is written escaped.
        assert_eq!(field("two\nlines"), "two\\nlines");
        assert_eq!(field("\u{1b}[2J"), "\\x1b[2J");
        assert_eq!(field("=1+1,x"), "\"'=1+1,x\"");
    }

    #[test]
    fn files_sit_beside_the_prefix() {
        let c = CsvOutput::new("/tmp/run1");
        assert_eq!(c.path("stats"), PathBuf::from("/tmp/run1_stats.csv"));
        let c = CsvOutput::new("out");
        assert_eq!(c.path("history"), PathBuf::from("out_history.csv"));
    }
}
