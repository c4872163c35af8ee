//! Iterations as metrics: per scenario, how many iterations completed, were interrupted
//! by a stop, or were dropped (an arrival-rate scenario that found no free user), and how
//! long the completed ones took (k6's `iterations`, `iteration_duration`,
//! `dropped_iterations`, `interrupted_iterations`). Merges exactly, like everything in a
//! [`Snapshot`](crate::Snapshot).

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::stats::{HISTOGRAM_HIGH_US, HISTOGRAM_LOW_US, new_histogram};

/// One scenario's iterations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioStats {
    /// Iterations run to their end (successful or not).
    pub iterations: u64,
    /// Iterations cut off by the end of the graceful stop period.
    pub interrupted: u64,
    /// Arrival-rate iterations that were due but found no user to run them.
    pub dropped: u64,
    /// Durations of the completed iterations, µs.
    #[serde(with = "crate::stats::histogram_v2")]
    pub duration: Histogram<u64>,
    /// Their sum, µs.
    pub duration_sum_us: u64,
    /// The shortest, µs.
    pub min_us: Option<u64>,
    /// The longest, µs.
    pub max_us: Option<u64>,
}

impl Default for ScenarioStats {
    fn default() -> Self {
        ScenarioStats {
            iterations: 0,
            interrupted: 0,
            dropped: 0,
            duration: new_histogram(),
            duration_sum_us: 0,
            min_us: None,
            max_us: None,
        }
    }
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
        let _ = self.duration.add(&other.duration);
        self.duration_sum_us = self.duration_sum_us.saturating_add(other.duration_sum_us);
        self.min_us = match (self.min_us, other.min_us) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.max_us = self.max_us.max(other.max_us);
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
