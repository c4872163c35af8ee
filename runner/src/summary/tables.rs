//! The summary's tables, built once in the [table model](crate::table) and rendered by
//! every output: the printed summary, the HTML report, the dashboard and the CSV files.

use crate::table::{Cell, Column, Row as TableRow, Show, Table};

use super::{CheckRow, LatencyUnit, MetricRow, Row, RunMeta, Summary};

/// The figure columns of the metrics table, in order: (header and aggregation label).
const FIGURES: [&str; 10] = [
    "count", "rate", "value", "avg", "min", "med", "max", "p(90)", "p(95)", "p(99)",
];

/// Field names of [`FIGURES`] for HTML.
const FIGURE_FIELDS: [&str; 10] = [
    "count", "rate", "value", "avg", "min", "med", "max", "p90", "p95", "p99",
];

fn num(v: impl ToString) -> Cell {
    Cell::of(v.to_string())
}

impl Summary {
    /// The unit every duration of the endpoint tables takes: the one that fits the
    /// largest.
    pub(crate) fn latency_unit(&self) -> LatencyUnit {
        LatencyUnit::of(
            self.endpoints
                .iter()
                .chain(std::iter::once(&self.totals))
                .map(|r| r.max_ms.unwrap_or(0.0).max(r.service_max_ms.unwrap_or(0.0))),
        )
    }

    fn endpoint_columns(unit: LatencyUnit) -> Vec<Column> {
        let lat = |h: &str, field: &'static str, show: Show| {
            Column::num(format!("{h} {}", unit.name()), field).shown(show)
        };
        vec![
            Column::text("Endpoint", "endpoint"),
            Column::text("Scenario", "scenario").shown(Show::CsvOnly),
            Column::text("Method", "method").shown(Show::CsvOnly),
            Column::text("Name", "name").shown(Show::CsvOnly),
            Column::num("Requests", "requests"),
            Column::num("Fails", "failures"),
            Column::num("Interrupted", "interrupted").shown(Show::NotText),
            Column::num("Req/s", "rps"),
            lat("Min", "min", Show::Wide),
            lat("p50", "p50", Show::Always),
            lat("p90", "p90", Show::Wide),
            lat("p95", "p95", Show::Always),
            lat("p99", "p99", Show::Always),
            lat("Max", "max", Show::Always),
            lat("Mean", "mean", Show::Wide),
        ]
    }

    fn endpoint_row(label: String, r: &Row, unit: LatencyUnit) -> TableRow {
        let lat = |v: Option<f64>| {
            Cell::with_raw(unit.show_opt(v), v.map_or(String::new(), |v| unit.show(v)))
        };
        TableRow::new(vec![
            Cell::of(label),
            Cell::of(r.scenario.clone()),
            Cell::of(r.method.clone()),
            Cell::of(r.name.clone()),
            num(r.requests),
            num(r.failures),
            num(r.interrupted),
            Cell::of(format!("{:.1}", r.rps)),
            lat(r.min_ms),
            lat(r.p50_ms),
            lat(r.p90_ms),
            lat(r.p95_ms),
            lat(r.p99_ms),
            lat(r.max_ms),
            lat(r.mean_ms),
        ])
    }

    /// The endpoints, under a heading per scenario when there are several; an open-model
    /// row has its plain service time under it; the totals last when `total`.
    pub fn endpoints_table(&self, unit: LatencyUnit, total: bool) -> Table {
        let mut t = Table::new("endpoints", Self::endpoint_columns(unit));
        t.empty = "No request yet.";
        let several = self
            .endpoints
            .iter()
            .any(|r| r.scenario != self.endpoints[0].scenario);
        let mut scenario: Option<&str> = None;
        for r in &self.endpoints {
            if several && scenario != Some(r.scenario.as_str()) {
                scenario = Some(&r.scenario);
                let executor = self
                    .executor_of(&r.scenario)
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default();
                t.heading(format!("scenario {}{executor}", r.scenario), 0);
            }
            t.row(
                Self::endpoint_row(format!("{} {}", r.method, r.name), r, unit)
                    .scenario(&r.scenario),
            );
            if let (Some(p50), Some(p90), Some(p95), Some(p99), Some(max)) = (
                r.service_p50_ms,
                r.service_p90_ms,
                r.service_p95_ms,
                r.service_p99_ms,
                r.service_max_ms,
            ) {
                // Open model: the row above counts from each iteration's intended start;
                // this one is the plain service time.
                let mut row = TableRow::new(vec![Cell::default(); t.columns.len()]).indent(1);
                row.cells[0] = Cell::of("service time");
                row.cells[1] = Cell::of(r.scenario.clone());
                row.cells[2] = Cell::of(r.method.clone());
                row.cells[3] = Cell::of(format!("{} (service time)", r.name));
                for (i, v) in [(9, p50), (10, p90), (11, p95), (12, p99), (13, max)] {
                    row.cells[i] = Cell::of(unit.show(v));
                }
                t.row(row.class("service"));
            }
        }
        if total {
            t.row(Self::endpoint_row("Total".to_owned(), &self.totals, unit).class("total"));
        }
        t
    }

    /// The totals alone, in the endpoint table's columns.
    pub fn totals_table(&self) -> Table {
        let unit = self.latency_unit();
        let mut t = Table::new("totals", Self::endpoint_columns(unit));
        t.row(Self::endpoint_row("Total".to_owned(), &self.totals, unit).class("total"));
        t
    }

    /// Named checks, the ones made outside every group first, then each group's under
    /// its path, as k6 prints them.
    pub fn checks_table(&self) -> Table {
        let mut t = Table::new(
            "named-checks",
            vec![
                Column::text("Check", "check").marked(),
                Column::text("Group", "group").shown(Show::CsvOnly),
                Column::text("Result", "result").marked(),
                Column::num("Rate %", "rate"),
                Column::num("Passed", "passes"),
                Column::num("Failed", "fails"),
            ],
        );
        let mut checks: Vec<(Option<&str>, &str, &CheckRow)> = self
            .checks
            .iter()
            .map(|c| {
                let (group, name) = aiotest_metrics::split_check_path(&c.name);
                (group, name, c)
            })
            .collect();
        checks.sort_by_key(|&(group, _, _)| group);
        let mut heading = None;
        for (group, name, c) in checks {
            if group.is_some() && group != heading {
                t.heading(group.unwrap_or_default(), 0);
                heading = group;
            }
            let (class, result) = if c.fails == 0 {
                ("ok", "ok")
            } else {
                ("bad", "FAIL")
            };
            t.row(
                TableRow::new(vec![
                    Cell::of(name),
                    Cell::of(group.unwrap_or_default()),
                    Cell::of(result),
                    Cell::with_raw(format!("{:.2}", c.rate), c.rate.to_string()),
                    num(c.passes),
                    num(c.fails),
                ])
                .class(class)
                .indent(usize::from(group.is_some())),
            );
        }
        t
    }

    /// Named metrics, k6's built-in ones first: a row per metric (its tag sets together),
    /// then one per tag set, at most `tag_sets` of them per metric when given (a line
    /// then says how many more the JSON export has).
    pub fn metrics_table(&self, tag_sets: Option<usize>) -> Table {
        let mut columns = vec![
            Column::text("Metric", "metric"),
            Column::text("Name", "name").shown(Show::CsvOnly),
            Column::text("Tags", "tags").shown(Show::NotText),
            Column::text("Kind", "kind"),
            Column::num("Samples", "samples"),
        ];
        for (h, f) in FIGURES.iter().zip(FIGURE_FIELDS) {
            columns.push(Column::num(*h, f));
        }
        let mut t = Table::new("named-metrics", columns);
        let mut shown = 0;
        let mut hidden = 0;
        let more = |t: &mut Table, hidden: usize| {
            if hidden > 0 {
                t.heading(format!("({hidden} more tag sets in the JSON export)"), 1);
            }
        };
        for m in &self.metrics {
            if m.tags.is_none() {
                more(&mut t, hidden);
                (shown, hidden) = (0, 0);
            } else if tag_sets.is_some_and(|most| shown == most) {
                hidden += 1;
                continue;
            } else {
                shown += 1;
            }
            t.row(Self::metric_row(m));
        }
        more(&mut t, hidden);
        t
    }

    fn metric_row(m: &MetricRow) -> TableRow {
        let tags = m.tags_joined(",");
        let label = match &tags {
            Some(tags) => format!("{{{tags}}}"),
            None => m.name.clone(),
        };
        let mut cells = vec![
            Cell::with_raw(label, m.name.clone()),
            Cell::of(m.name.clone()),
            Cell::of(tags.unwrap_or_else(|| "(all)".to_owned())),
            Cell::of(m.kind.clone()),
            num(m.samples),
        ];
        for figure in FIGURES {
            cells.push(match m.values.get(figure) {
                None => Cell::default(),
                Some(v) => {
                    let shown = match (m.kind.as_str(), figure) {
                        ("counter", "rate") => format!("{v}/s"),
                        ("rate", _) => format!("{:.2}%", v * 100.0),
                        ("trend", _) if m.time => format!("{v}ms"),
                        _ => v.to_string(),
                    };
                    Cell::with_raw(shown, v.to_string())
                }
            });
        }
        TableRow::new(cells).indent(usize::from(m.tags.is_some()))
    }

    /// Scenarios: what each is (from the run's settings, when known) and its iterations.
    pub fn scenarios_table(&self, meta: Option<&RunMeta>) -> Table {
        let mut t = Table::new(
            "scenarios",
            vec![
                Column::text("Scenario", "scenario"),
                Column::text("Executor", "executor"),
                Column::text("Settings", "settings").shown(Show::NotText),
                Column::num("Starts", "starts").shown(Show::NotText),
                Column::num("Iterations", "iterations"),
                Column::num("Dropped", "dropped_iterations"),
                Column::num("Interrupted", "interrupted_iterations"),
                Column::num("Iter/s", "iterations_per_s"),
                Column::num("Iter p50 ms", "iteration_p50_ms"),
                Column::num("Iter p95 ms", "iteration_p95_ms").shown(Show::Wide),
                Column::num("Iter max ms", "iteration_max_ms").shown(Show::Wide),
            ],
        );
        for sc in &self.scenarios {
            let info = meta.and_then(|m| m.scenarios.iter().find(|i| i.name == sc.name));
            let settings = info.map_or(String::new(), |i| {
                format!("{}; users: {}", i.settings, i.user_types.join(", "))
            });
            let starts = info.map_or(String::new(), |i| format!("{}s", i.start_time_s));
            let ms = |v: f64| Cell::of(format!("{v:.2}"));
            t.row(
                TableRow::new(vec![
                    Cell::of(sc.name.clone()),
                    Cell::of(sc.executor.clone()),
                    Cell::of(settings),
                    Cell::of(starts),
                    num(sc.iterations),
                    num(sc.dropped_iterations),
                    num(sc.interrupted_iterations),
                    Cell::of(format!("{:.1}", sc.iterations_per_s)),
                    ms(sc.iteration_p50_ms),
                    ms(sc.iteration_p95_ms),
                    ms(sc.iteration_max_ms),
                ])
                .scenario(&sc.name),
            );
        }
        t
    }

    /// Failures by endpoint and message, most frequent first; the first `most` when
    /// given (a line then says how many more the JSON export has).
    pub fn errors_table(&self, most: Option<usize>) -> Table {
        let mut t = Table::new(
            "errors",
            vec![
                Column::text("Endpoint", "endpoint"),
                Column::text("Category", "category"),
                Column::num("Count", "count"),
                Column::text("Message", "message"),
            ],
        );
        let most = most.unwrap_or(usize::MAX);
        for e in self.errors.iter().take(most) {
            t.row(TableRow::new(vec![
                Cell::of(format!("{} {}", e.method, e.name)),
                Cell::of(e.category.clone()),
                num(e.count),
                Cell::of(e.message.clone()),
            ]));
        }
        if self.errors.len() > most {
            t.heading(
                format!(
                    "({} more messages in the JSON export)",
                    self.errors.len() - most
                ),
                0,
            );
        }
        t
    }

    /// Failures by category, most first.
    pub fn error_categories_table(&self) -> Table {
        let mut by_category: Vec<(&str, u64)> = Vec::new();
        for e in &self.errors {
            match by_category.iter_mut().find(|(c, _)| *c == e.category) {
                Some((_, n)) => *n += e.count,
                None => by_category.push((&e.category, e.count)),
            }
        }
        by_category.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let mut t = Table::new(
            "error-categories",
            vec![
                Column::text("Category", "category"),
                Column::num("Failures", "failures"),
            ],
        );
        for (c, n) in by_category {
            t.row(TableRow::new(vec![Cell::of(c), num(n)]));
        }
        t
    }

    /// Thresholds with their verdicts, in the order given.
    pub fn thresholds_table(&self) -> Table {
        let mut t = Table::new(
            "thresholds",
            vec![
                Column::text("Threshold", "threshold"),
                Column::text("Verdict", "verdict").marked(),
                Column::num("Value", "value"),
                Column::num("Matched", "matched").shown(Show::Wide),
                Column::text("Why", "reason"),
            ],
        );
        for th in &self.thresholds {
            let (class, verdict) = if th.ok {
                ("ok", "passed")
            } else {
                ("bad", "FAILED")
            };
            t.row(
                TableRow::new(vec![
                    Cell::of(th.expr.clone()),
                    Cell::of(verdict),
                    num(th.value),
                    num(th.matched),
                    Cell::of(th.reason.clone().unwrap_or_default()),
                ])
                .class(class),
            );
        }
        t
    }
}
