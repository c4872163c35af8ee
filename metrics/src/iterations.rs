//! Iterations as metrics: per scenario, how many iterations completed, were interrupted
//! by a stop, or were dropped (an arrival-rate scenario that found no free user), and how
//! long the completed ones took. They are k6's `iterations`, `iteration_duration`,
//! `dropped_iterations` and `interrupted_iterations` in the named model, under their
//! scenario's tags (`scenario` among them), and merge exactly like every named metric;
//! [`ScenarioStats`] is one scenario's figures read back from the model
//! ([`Snapshot::scenarios`](crate::Snapshot::scenarios)).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Latencies;
use crate::model::{MetricSet, Series, Tags, Values};
use crate::stats::{HISTOGRAM_HIGH_US, HISTOGRAM_LOW_US};

/// The counter of iterations run to their end.
pub const ITERATIONS: &str = "iterations";
/// The counter of iterations cut off by the end of a graceful stop period.
pub const INTERRUPTED_ITERATIONS: &str = "interrupted_iterations";
/// The counter of arrival-rate iterations due with no user free to run them.
pub const DROPPED_ITERATIONS: &str = "dropped_iterations";
/// The time trend of the completed iterations' durations.
pub const ITERATION_DURATION: &str = "iteration_duration";

/// One scenario's iterations.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScenarioStats {
    /// Iterations run to their end (successful or not).
    pub iterations: u64,
    /// Iterations cut off by the end of the graceful stop period.
    pub interrupted: u64,
    /// Arrival-rate iterations that were due but found no user to run them.
    pub dropped: u64,
    /// Durations of the completed iterations, µs (sparse while few slots are filled).
    pub duration: Latencies,
    /// Their sum, µs.
    pub duration_sum_us: u64,
    /// The shortest, µs.
    pub min_us: Option<u64>,
    /// The longest, µs.
    pub max_us: Option<u64>,
}

impl ScenarioStats {
    /// Counts a completed iteration that took `us`.
    pub fn completed(&mut self, us: u64) {
        self.iterations += 1;
        let _ = self
            .duration
            .record(us.clamp(HISTOGRAM_LOW_US, HISTOGRAM_HIGH_US));
        self.duration_sum_us = self.duration_sum_us.saturating_add(us);
        self.min_us = Some(self.min_us.map_or(us, |m| m.min(us)));
        self.max_us = Some(self.max_us.map_or(us, |m| m.max(us)));
    }

    /// Adds `other` in, exactly.
    pub fn merge(&mut self, other: &ScenarioStats) {
        self.iterations += other.iterations;
        self.interrupted += other.interrupted;
        self.dropped += other.dropped;
        self.duration.merge_from(&other.duration);
        self.duration_sum_us = self.duration_sum_us.saturating_add(other.duration_sum_us);
        self.min_us = match (self.min_us, other.min_us) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.max_us = self.max_us.max(other.max_us);
    }

    /// Files these figures into `set` under `tags` (a scenario's: `scenario` among
    /// them), as the named metrics they are.
    pub fn file_into(&self, set: &mut MetricSet, tags: &Tags) {
        if self.iterations > 0 {
            let n = self.iterations;
            set.merge_series(ITERATIONS, tags, &Series::counter(n as f64, n));
            let trend = Series::time_trend_us(
                n,
                self.duration_sum_us,
                self.min_us,
                self.max_us,
                &self.duration,
            );
            set.merge_series(ITERATION_DURATION, tags, &trend);
        }
        for (name, n) in [
            (INTERRUPTED_ITERATIONS, self.interrupted),
            (DROPPED_ITERATIONS, self.dropped),
        ] {
            if n > 0 {
                set.merge_series(name, tags, &Series::counter(n as f64, n));
            }
        }
    }

    /// Every scenario's figures in `set`, by the `scenario` tag of their series.
    pub fn read_all(set: &MetricSet) -> BTreeMap<String, ScenarioStats> {
        let mut out: BTreeMap<String, ScenarioStats> = BTreeMap::new();
        for name in [
            ITERATIONS,
            INTERRUPTED_ITERATIONS,
            DROPPED_ITERATIONS,
            ITERATION_DURATION,
        ] {
            let Some(by_tags) = set.series.get(name) else {
                continue;
            };
            for (tags, series) in by_tags {
                let Some(scenario) = tags.get("scenario") else {
                    continue;
                };
                let stats = match out.get_mut(scenario) {
                    Some(s) => s,
                    None => out.entry(scenario.to_owned()).or_default(),
                };
                match (name, &series.values) {
                    (ITERATION_DURATION, Values::Trend(t)) if t.count > 0 => {
                        stats.duration.merge_from(&t.histogram);
                        let us = |ms: f64| (ms * 1_000.0).round() as u64;
                        stats.duration_sum_us = stats.duration_sum_us.saturating_add(us(t.sum));
                        stats.min_us = Some(stats.min_us.map_or(us(t.min), |m| m.min(us(t.min))));
                        stats.max_us = Some(stats.max_us.map_or(us(t.max), |m| m.max(us(t.max))));
                    }
                    (ITERATIONS, Values::Counter { .. }) => stats.iterations += series.samples,
                    (INTERRUPTED_ITERATIONS, Values::Counter { .. }) => {
                        stats.interrupted += series.samples;
                    }
                    (DROPPED_ITERATIONS, Values::Counter { sum }) => {
                        stats.dropped += sum.round() as u64;
                    }
                    _ => {}
                }
            }
        }
        out
    }

    /// Whether nothing is counted.
    pub fn is_empty(&self) -> bool {
        self.iterations == 0 && self.interrupted == 0 && self.dropped == 0
    }

    /// The iteration duration at `quantile`, µs; 0 when none completed.
    pub fn percentile_us(&self, quantile: f64) -> u64 {
        if self.duration.is_empty() {
            return 0;
        }
        let q = if quantile.is_nan() {
            0.5
        } else {
            quantile.clamp(0.0, 1.0)
        };
        let v = self.duration.value_at_quantile(q);
        match (self.min_us, self.max_us) {
            (Some(lo), Some(hi)) if lo <= hi => v.clamp(lo, hi),
            _ => v,
        }
    }

    /// The mean iteration duration, µs.
    pub fn mean_us(&self) -> f64 {
        match self.iterations {
            0 => 0.0,
            n => self.duration_sum_us as f64 / n as f64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iterations_count_and_merge_exactly() {
        let mut a = ScenarioStats::default();
        a.completed(1_000);
        a.completed(3_000);
        a.interrupted += 1;
        let mut b = ScenarioStats::default();
        b.completed(2_000);
        b.dropped += 4;
        let mut m = ScenarioStats::default();
        m.merge(&a);
        m.merge(&b);
        assert_eq!((m.iterations, m.interrupted, m.dropped), (3, 1, 4));
        assert_eq!((m.min_us, m.max_us), (Some(1_000), Some(3_000)));
        assert_eq!(m.mean_us(), 2_000.0);
        assert_eq!(m.percentile_us(0.5), 2_000);
        let json = serde_json::to_string(&m).unwrap();
        let back: ScenarioStats = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
    }
}
