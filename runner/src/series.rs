//! The run's interval series: one point per closed interval (a second by default), with
//! the figures charts and history files need, merged from every worker in a distributed
//! run. Memory stays bounded: past [`MAX_POINTS`] points, neighbours merge in pairs and
//! each point then covers twice the time, so an eight-hour run keeps 1,024 points of
//! about 30 s.
//!
//! Counts merge exactly. Percentiles are exact for points of one interval; a merged
//! point's percentile is the request-weighted mean of its parts' (the histograms are not
//! kept per point: a thousand endpoints times a thousand points would not fit). The
//! run's exact percentiles are in the summary.

use aiotest_metrics::{EndpointKey, EndpointStats, ScenarioStats, Snapshot};
use serde::Serialize;

/// Most points a series keeps.
pub const MAX_POINTS: usize = 1_024;

/// Figures of one endpoint (or of all) over one point's time.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PointRow {
    /// Requests.
    pub requests: u64,
    /// Failed requests.
    pub failures: u64,
    /// Median duration, µs.
    pub p50_us: u64,
    /// 95th percentile, µs.
    pub p95_us: u64,
    /// 99th percentile, µs.
    pub p99_us: u64,
}

impl PointRow {
    fn of(stats: &EndpointStats) -> Self {
        PointRow {
            requests: stats.requests,
            failures: stats.failures,
            p50_us: stats.percentile_us(0.50),
            p95_us: stats.percentile_us(0.95),
            p99_us: stats.percentile_us(0.99),
        }
    }

    fn absorb(&mut self, other: &PointRow) {
        let w = Weights(self.requests, other.requests);
        self.p50_us = w.mean(self.p50_us, other.p50_us);
        self.p95_us = w.mean(self.p95_us, other.p95_us);
        self.p99_us = w.mean(self.p99_us, other.p99_us);
        self.requests += other.requests;
        self.failures += other.failures;
    }
}

/// One scenario over one point's time: its iterations and, for an open-model scenario,
/// its requests' latency from the intended start beside their service time.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ScenarioPoint {
    /// Iterations completed.
    pub iterations: u64,
    /// Arrival-rate iterations dropped.
    pub dropped: u64,
    /// Its requests.
    pub requests: u64,
    /// Its requests' median, µs (from the intended start in the open model).
    pub p50_us: u64,
    /// Their 99th percentile, µs.
    pub p99_us: u64,
    /// Open model: the service time's median, µs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_p50_us: Option<u64>,
    /// Open model: the service time's 99th percentile, µs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_p99_us: Option<u64>,
}

impl ScenarioPoint {
    fn of(name: &str, interval: &Snapshot, it: Option<&ScenarioStats>) -> Self {
        let mut merged = EndpointStats::default();
        for (_, s) in interval
            .endpoints
            .iter()
            .filter(|(k, _)| k.scenario == name)
        {
            merged.merge(s);
        }
        ScenarioPoint {
            iterations: it.map_or(0, |i| i.iterations),
            dropped: it.map_or(0, |i| i.dropped),
            requests: merged.requests,
            p50_us: merged.percentile_us(0.50),
            p99_us: merged.percentile_us(0.99),
            service_p50_us: merged.service.as_ref().map(|t| t.percentile_us(0.50)),
            service_p99_us: merged.service.as_ref().map(|t| t.percentile_us(0.99)),
        }
    }

    fn absorb(&mut self, other: &ScenarioPoint) {
        let w = Weights(self.requests, other.requests);
        self.p50_us = w.mean(self.p50_us, other.p50_us);
        self.p99_us = w.mean(self.p99_us, other.p99_us);
        self.service_p50_us = w.mean_opt(self.service_p50_us, other.service_p50_us);
        self.service_p99_us = w.mean_opt(self.service_p99_us, other.service_p99_us);
        self.requests += other.requests;
        self.iterations += other.iterations;
        self.dropped += other.dropped;
    }
}

/// Two parts' request counts: a merged point's percentile is their weighted mean.
struct Weights(u64, u64);

impl Weights {
    fn mean(&self, x: u64, y: u64) -> u64 {
        let Weights(a, b) = *self;
        if a + b == 0 {
            return 0;
        }
        ((u128::from(x) * u128::from(a) + u128::from(y) * u128::from(b)) / u128::from(a + b)) as u64
    }

    fn mean_opt(&self, x: Option<u64>, y: Option<u64>) -> Option<u64> {
        match (x, y) {
            (Some(x), Some(y)) => Some(self.mean(x, y)),
            (x, y) => x.or(y),
        }
    }
}

/// The generator's own health over a point's time, in one process (see
/// [`crate::health`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GeneratorPoint {
    /// The process, by its tags: `worker_pid:N` for a worker, empty for a local run.
    pub process: String,
    /// How late its runtime ran a timer, p99, ms (the worst of a merged point's).
    pub delay_p99_ms: Option<f64>,
    /// Its CPU use, percent of the machine's cores (the highest of a merged point's).
    pub cpu_percent: Option<f64>,
}

impl GeneratorPoint {
    fn absorb(&mut self, later: &GeneratorPoint) {
        let max = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.delay_p99_ms = max(self.delay_p99_ms, later.delay_p99_ms);
        self.cpu_percent = max(self.cpu_percent, later.cpu_percent);
    }
}

/// One point of the series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesPoint {
    /// Start of the point's time, µs since the Unix epoch.
    pub start_us: u64,
    /// Its end.
    pub end_us: u64,
    /// Run time at its end, pauses excluded, in seconds.
    pub run_time_s: f64,
    /// Users running at its end.
    pub users: u64,
    /// All endpoints together.
    pub total: PointRow,
    /// Per endpoint, ordered by key.
    pub endpoints: Vec<(EndpointKey, PointRow)>,
    /// Per scenario that ran in the point's time, ordered by name.
    pub scenarios: Vec<(String, ScenarioPoint)>,
    /// The generator's health, per process that reported it.
    pub generator: Vec<GeneratorPoint>,
    /// A process' timer delay p99 passed its bound ([`crate::health::DELAY_BOUND_MS`])
    /// in this point's time: its latencies include the generator's own delay.
    pub generator_late: bool,
    /// Part of a run of intervals with a process over the CPU bound
    /// ([`crate::health::CPU_BOUND_PERCENT`] for
    /// [`crate::health::CPU_BOUND_INTERVALS`] in a row).
    pub generator_busy: bool,
}

impl SeriesPoint {
    /// The point of `interval` (its figures), covering `start_us..end_us`.
    pub fn new(
        interval: &Snapshot,
        (start_us, end_us): (u64, u64),
        run_time_s: f64,
        users: u64,
    ) -> Self {
        SeriesPoint {
            start_us,
            end_us,
            run_time_s,
            users,
            total: PointRow::of(&interval.total()),
            endpoints: interval
                .endpoints
                .iter()
                .map(|(k, s)| (k.clone(), PointRow::of(s)))
                .collect(),
            scenarios: {
                let iterations = interval.scenarios();
                scenario_names(interval, &iterations)
                    .into_iter()
                    .map(|name| {
                        let point = ScenarioPoint::of(&name, interval, iterations.get(&name));
                        (name, point)
                    })
                    .collect()
            },
            generator: crate::health::per_process(interval),
            generator_late: false,
            generator_busy: false,
        }
        .marked()
    }

    /// Marks the point late if a process' delay passed its bound.
    fn marked(mut self) -> Self {
        self.generator_late = self.generator.iter().any(|g| {
            g.delay_p99_ms
                .is_some_and(|d| d > crate::health::DELAY_BOUND_MS)
        });
        self
    }

    fn cpu_over(&self) -> bool {
        self.generator.iter().any(|g| {
            g.cpu_percent
                .is_some_and(|c| c > crate::health::CPU_BOUND_PERCENT)
        })
    }

    /// The point's length in seconds.
    pub fn seconds(&self) -> f64 {
        self.end_us.saturating_sub(self.start_us) as f64 / 1e6
    }

    fn absorb(&mut self, later: SeriesPoint) {
        self.end_us = later.end_us;
        self.run_time_s = later.run_time_s;
        self.users = later.users;
        self.total.absorb(&later.total);
        for (k, row) in later.endpoints {
            match self.endpoints.binary_search_by(|(mine, _)| mine.cmp(&k)) {
                Ok(i) => self.endpoints[i].1.absorb(&row),
                Err(i) => self.endpoints.insert(i, (k, row)),
            }
        }
        for (name, row) in later.scenarios {
            match self.scenarios.binary_search_by(|(mine, _)| mine.cmp(&name)) {
                Ok(i) => self.scenarios[i].1.absorb(&row),
                Err(i) => self.scenarios.insert(i, (name, row)),
            }
        }
        for g in later.generator {
            match self.generator.iter_mut().find(|m| m.process == g.process) {
                Some(m) => m.absorb(&g),
                None => self.generator.push(g),
            }
        }
        self.generator_late |= later.generator_late;
        self.generator_busy |= later.generator_busy;
    }
}

/// The scenarios with iterations or requests in `interval`, ordered by name.
fn scenario_names(
    interval: &Snapshot,
    iterations: &std::collections::BTreeMap<String, ScenarioStats>,
) -> Vec<String> {
    let mut names: Vec<String> = iterations.keys().cloned().collect();
    for k in interval.endpoints.keys() {
        if !names.contains(&k.scenario) {
            names.push(k.scenario.clone());
        }
    }
    names.sort_unstable();
    names
}

/// The bounded series; see the [module docs](self).
#[derive(Debug, Clone, Default)]
pub struct Series {
    points: Vec<SeriesPoint>,
    /// How many intervals each point covers now (doubles at every downsampling).
    per_point: u32,
    /// Intervals in the last point.
    in_last: u32,
    /// Intervals in a row with a process over the CPU bound.
    cpu_run: u32,
}

impl Series {
    /// Adds the point of one closed interval.
    pub fn push(&mut self, mut point: SeriesPoint) {
        if point.cpu_over() {
            self.cpu_run += 1;
        } else {
            self.cpu_run = 0;
        }
        if self.cpu_run >= crate::health::CPU_BOUND_INTERVALS {
            point.generator_busy = true;
            if self.cpu_run == crate::health::CPU_BOUND_INTERVALS {
                // The run just became long enough: its earlier intervals are part of it.
                self.mark_busy_back(self.cpu_run - 1);
            }
        }
        self.add(point);
    }

    /// Marks the points holding the last `intervals` intervals busy.
    fn mark_busy_back(&mut self, intervals: u32) {
        let mut left = intervals;
        let per_point = self.per_point.max(1);
        let mut in_point = self.in_last;
        for p in self.points.iter_mut().rev() {
            if left == 0 {
                break;
            }
            p.generator_busy = true;
            left = left.saturating_sub(in_point);
            in_point = per_point;
        }
    }

    fn add(&mut self, point: SeriesPoint) {
        let per_point = self.per_point.max(1);
        // A run's last intervals end with it, often a fraction of the usual length: one
        // under half its predecessor's joins it, rather than show a rate over a sliver.
        if let Some(last) = self.points.last_mut()
            && point.seconds() < last.seconds() / 2.0
        {
            last.absorb(point);
            return;
        }
        match self.points.last_mut() {
            Some(last) if self.in_last < per_point => {
                last.absorb(point);
                self.in_last += 1;
            }
            _ => {
                if self.points.len() >= MAX_POINTS {
                    self.halve();
                    return self.add(point);
                }
                self.points.push(point);
                self.in_last = 1;
            }
        }
    }

    fn halve(&mut self) {
        let old = std::mem::take(&mut self.points);
        let lone_last = old.len() % 2 == 1;
        let mut it = old.into_iter();
        while let Some(mut a) = it.next() {
            if let Some(b) = it.next() {
                a.absorb(b);
            }
            self.points.push(a);
        }
        let before = self.per_point.max(1);
        self.per_point = before * 2;
        // A lone last point keeps its old width and takes more until it is full.
        self.in_last = if lone_last { before } else { self.per_point };
    }

    /// The points, oldest first.
    pub fn points(&self) -> &[SeriesPoint] {
        &self.points
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiotest_metrics::RequestRecord;

    fn interval(n: u64, us: u64) -> Snapshot {
        let mut s = Snapshot::new();
        for _ in 0..n {
            s.record(&RequestRecord::ok("/a", "GET", 200, us));
        }
        s
    }

    #[test]
    fn a_long_run_keeps_a_bounded_series_with_exact_counts() {
        let mut series = Series::default();
        let intervals = 5 * MAX_POINTS as u64 + 3;
        for i in 0..intervals {
            let p = SeriesPoint::new(
                &interval(10, 1_000),
                (i * 1_000_000, (i + 1) * 1_000_000),
                (i + 1) as f64,
                7,
            );
            series.push(p);
        }
        let points = series.points();
        assert!(points.len() <= MAX_POINTS, "{}", points.len());
        assert!(points.len() > MAX_POINTS / 4, "{}", points.len());
        let requests: u64 = points.iter().map(|p| p.total.requests).sum();
        assert_eq!(requests, 10 * intervals, "no request lost by downsampling");
        // The points tile the run without gaps or overlaps.
        assert_eq!(points[0].start_us, 0);
        assert_eq!(points.last().map(|p| p.end_us), Some(intervals * 1_000_000));
        for w in points.windows(2) {
            assert_eq!(w[0].end_us, w[1].start_us);
        }
        assert!(points.iter().all(|p| p.total.p50_us.abs_diff(1_000) <= 1));
    }

    #[test]
    fn a_short_last_interval_joins_the_point_before_it() {
        let mut series = Series::default();
        series.push(SeriesPoint::new(
            &interval(10, 1_000),
            (0, 1_000_000),
            1.0,
            1,
        ));
        series.push(SeriesPoint::new(
            &interval(1, 1_000),
            (1_000_000, 1_050_000),
            1.05,
            1,
        ));
        assert_eq!(series.points().len(), 1);
        assert_eq!(series.points()[0].total.requests, 11);
        assert_eq!(series.points()[0].end_us, 1_050_000);
    }

    #[test]
    fn a_merged_point_weights_percentiles_by_requests() {
        let mut a = SeriesPoint::new(&interval(30, 1_000), (0, 1), 1.0, 1);
        a.absorb(SeriesPoint::new(&interval(10, 5_000), (1, 2), 2.0, 2));
        assert_eq!(a.total.requests, 40);
        assert_eq!(a.total.p50_us, 2_000, "(30 x 1000 + 10 x 5000) / 40");
        assert_eq!((a.start_us, a.end_us, a.users), (0, 2, 2));
    }

    #[test]
    fn a_point_keeps_each_scenarios_iterations_and_open_model_latency() {
        let mut s = Snapshot::new();
        for _ in 0..10 {
            s.record(&RequestRecord {
                scenario: "rate",
                lateness_us: Some(4_000),
                ..RequestRecord::ok("/a", "GET", 200, 1_000)
            });
            s.record(&RequestRecord {
                scenario: "loop",
                ..RequestRecord::ok("/a", "GET", 200, 2_000)
            });
        }
        let mut it = aiotest_metrics::ScenarioStats::default();
        it.completed(1_000);
        it.dropped = 3;
        s.count_iterations("rate", &it);
        let mut p = SeriesPoint::new(&s, (0, 1), 1.0, 1);
        let rate = &p.scenarios[1];
        assert_eq!(rate.0, "rate");
        assert_eq!(
            (rate.1.iterations, rate.1.dropped, rate.1.requests),
            (1, 3, 10)
        );
        assert_eq!(rate.1.p99_us, 5_000, "from the intended start");
        assert_eq!(rate.1.service_p99_us, Some(1_000));
        assert_eq!(p.scenarios[0].1.service_p99_us, None, "closed model");
        p.absorb(SeriesPoint::new(&s, (1, 2), 2.0, 1));
        assert_eq!(p.scenarios[1].1.dropped, 6);
        assert_eq!(p.scenarios[1].1.p99_us, 5_000);
    }

    /// An interval whose process used `cpu` percent and whose timer ran `delay` ms late.
    fn health(second: u64, cpu: f64, delay: f64) -> SeriesPoint {
        let mut s = interval(1, 1_000);
        let at = second * 1_000_000;
        let tags = aiotest_metrics::Tags::new();
        let delay_metric =
            aiotest_metrics::Metric::time_trend(crate::health::GENERATOR_DELAY).unwrap();
        let cpu_metric = aiotest_metrics::Metric::gauge(crate::health::GENERATOR_CPU).unwrap();
        s.metrics.add(&delay_metric, &tags, delay, at);
        s.metrics.add(&cpu_metric, &tags, cpu, at);
        SeriesPoint::new(&s, (at, at + 1_000_000), second as f64, 1)
    }

    #[test]
    fn intervals_where_the_generator_was_the_bottleneck_are_marked() {
        let mut series = Series::default();
        // Two calm intervals, one late, nine over the CPU bound (not yet a run of ten),
        // a calm one, then twelve over it: the whole run of twelve is marked busy.
        series.push(health(0, 50.0, 1.0));
        series.push(health(1, 50.0, 1.0));
        series.push(health(2, 50.0, 40.0));
        for s in 3..12 {
            series.push(health(s, 95.0, 1.0));
        }
        series.push(health(12, 50.0, 1.0));
        for s in 13..25 {
            series.push(health(s, 95.0, 1.0));
        }
        let late: Vec<bool> = series.points().iter().map(|p| p.generator_late).collect();
        let busy: Vec<bool> = series.points().iter().map(|p| p.generator_busy).collect();
        assert_eq!(late.iter().filter(|l| **l).count(), 1);
        assert!(late[2]);
        assert_eq!(busy[..13], [false; 13]);
        assert_eq!(busy[13..], [true; 12]);
        let g = &series.points()[2].generator;
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].process, "");
        assert_eq!(g[0].cpu_percent, Some(50.0));
        assert!(g[0].delay_p99_ms.is_some_and(|d| d > 39.0));
    }
}
