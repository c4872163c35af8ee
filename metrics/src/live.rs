//! The live view: run totals, plus current requests/s and percentiles over a sliding
//! window kept as a ring of interval snapshots.
//!
//! [`LiveView`] is also the local aggregate: as a [`MetricsSink`] it takes every closed
//! interval, adds it to the run's total and to the ring, and drops ring entries that fell
//! out of the window. Percentiles over the window are exact (to HDR precision): the
//! window's intervals are merged when asked, about once a second.
//!
//! Rates divide the requests of the closed intervals in the window by the time those
//! intervals span, less the time the run was paused in them, never by the time up to
//! now: requests reach the view in batches, up to a flush interval or two after they were
//! made, and dividing by "now" would count the time whose requests have not arrived yet
//! (a rate ~10% low at steady state, and zero for the first seconds); dividing by paused
//! time would make a pause look like a target that stopped answering.

use std::collections::VecDeque;
use std::time::Duration;

use crate::collector::MetricsSink;
use crate::stats::{EndpointKey, EndpointStats, Snapshot};

/// The default sliding window.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(10);

/// Current figures for one endpoint, or for all of them.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveRow {
    /// Requests in the window.
    pub requests: u64,
    /// Failures in the window.
    pub failures: u64,
    /// Requests per second over the window.
    pub rps: f64,
    /// Median duration in the window, µs.
    pub p50_us: u64,
    /// 95th percentile, µs.
    pub p95_us: u64,
    /// 99th percentile, µs.
    pub p99_us: u64,
}

impl LiveRow {
    fn from_stats(stats: &EndpointStats, secs: f64) -> Self {
        LiveRow {
            requests: stats.requests,
            failures: stats.failures,
            rps: if secs > 0.0 {
                stats.requests as f64 / secs
            } else {
                0.0
            },
            p50_us: stats.percentile_us(0.50),
            p95_us: stats.percentile_us(0.95),
            p99_us: stats.percentile_us(0.99),
        }
    }
}

/// What the live line and the live endpoints show.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveStats {
    /// Requests since the run started.
    pub total_requests: u64,
    /// Failures since the run started.
    pub total_failures: u64,
    /// How much time the window's closed intervals span (less than the window early in
    /// a run).
    pub covered: Duration,
    /// All endpoints together, over the window.
    pub totals: LiveRow,
    /// Per endpoint, over the window, ordered by key.
    pub endpoints: Vec<(EndpointKey, LiveRow)>,
}

/// Run totals and a sliding window; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct LiveView {
    window_us: u64,
    /// Closed intervals, each with the time within it the run was paused.
    ring: VecDeque<(Snapshot, u64)>,
    total: Snapshot,
}

impl Default for LiveView {
    fn default() -> Self {
        LiveView::new(DEFAULT_WINDOW)
    }
}

impl LiveView {
    /// A view with a window of `window`.
    pub fn new(window: Duration) -> Self {
        LiveView {
            window_us: u64::try_from(window.as_micros()).unwrap_or(u64::MAX).max(1),
            ring: VecDeque::new(),
            total: Snapshot::new(),
        }
    }

    /// Adds a closed interval.
    pub fn push(&mut self, interval: Snapshot) {
        self.push_active(interval, 0);
    }

    /// Adds a closed interval during `paused_us` of which the run was paused: that time
    /// is not in the rate's divisor (a pause is not a quiet target).
    pub fn push_active(&mut self, mut interval: Snapshot, paused_us: u64) {
        self.total.merge(&interval);
        // Kept for the window, read only through merges: sparse, not full histograms.
        interval.compact();
        let newest_end = interval.end_us;
        self.ring.push_back((interval, paused_us));
        if let Some(end) = newest_end {
            self.evict(end);
        }
    }

    fn evict(&mut self, now_us: u64) {
        let horizon = now_us.saturating_sub(self.window_us);
        while self
            .ring
            .front()
            .is_some_and(|(s, _)| s.end_us.is_some_and(|e| e <= horizon))
        {
            self.ring.pop_front();
        }
    }

    /// The run's totals so far.
    pub fn total(&self) -> &Snapshot {
        &self.total
    }

    /// The current figures: over the closed intervals of the last window, which ends
    /// with the newest closed interval.
    pub fn current(&self) -> LiveStats {
        let newest = self
            .ring
            .iter()
            .filter_map(|(s, _)| s.end_us)
            .max()
            .unwrap_or(0);
        let horizon = newest.saturating_sub(self.window_us);
        let mut window = Snapshot::new();
        let mut from = newest;
        let mut paused = 0u64;
        for (s, p) in self
            .ring
            .iter()
            .filter(|(s, _)| s.end_us.is_none_or(|e| e > horizon))
        {
            window.merge(s);
            from = from.min(s.start_us.unwrap_or(newest));
            // A pause in an interval cut by the horizon counts in proportion.
            let (a, b) = (s.start_us.unwrap_or(newest), s.end_us.unwrap_or(newest));
            let inside = b.saturating_sub(a.max(horizon));
            paused += match b.saturating_sub(a) {
                0 => 0,
                len => (*p).min(len) * inside / len,
            };
        }
        let covered = Duration::from_micros(
            newest
                .saturating_sub(from.max(horizon))
                .saturating_sub(paused),
        );
        let secs = covered.as_secs_f64();
        let total = self.total.total();
        LiveStats {
            total_requests: total.requests,
            total_failures: total.failures,
            covered,
            totals: LiveRow::from_stats(&window.total(), secs),
            endpoints: window
                .endpoints
                .iter()
                .map(|(k, s)| (k.clone(), LiveRow::from_stats(s, secs)))
                .collect(),
        }
    }
}

impl MetricsSink for LiveView {
    fn accept(&mut self, interval: Snapshot) {
        self.push(interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{ErrorCategory, RequestRecord};

    const S: u64 = 1_000_000;

    /// An interval [start, end) with `n` requests to `name`, each taking `us`.
    fn interval(start: u64, end: u64, name: &str, n: u64, us: u64, failed: u64) -> Snapshot {
        let mut s = Snapshot {
            start_us: Some(start),
            end_us: Some(end),
            ..Snapshot::default()
        };
        for i in 0..n {
            let mut r = RequestRecord::ok(name, "GET", 200, us).at(start);
            if i < failed {
                r = r.failed(ErrorCategory::HttpStatus, None);
            }
            s.record(&r);
        }
        s
    }

    #[test]
    fn window_rate_and_percentiles_follow_the_last_ten_seconds() {
        let mut view = LiveView::default();
        // 20 one-second intervals: 100 req/s at 1 ms for the first 10 s, then 300 req/s at
        // 5 ms.
        for sec in 0..20 {
            let (n, us) = if sec < 10 { (100, 1_000) } else { (300, 5_000) };
            view.push(interval(sec * S, (sec + 1) * S, "/a", n, us, 0));
        }
        let live = view.current();
        assert_eq!(live.total_requests, 10 * 100 + 10 * 300);
        assert_eq!(live.covered, Duration::from_secs(10));
        assert_eq!(live.totals.requests, 3_000);
        assert!(
            (live.totals.rps - 300.0).abs() < 1e-9,
            "{}",
            live.totals.rps
        );
        // 5 ms recorded exactly to HDR precision (0.1%).
        assert!(
            live.totals.p50_us.abs_diff(5_000) <= 5,
            "{}",
            live.totals.p50_us
        );
        assert_eq!(view.ring.len(), 10, "older intervals were dropped");
    }

    #[test]
    fn early_in_a_run_the_rate_uses_the_time_covered() {
        let mut view = LiveView::default();
        view.push(interval(0, S, "/a", 50, 100, 5));
        view.push(interval(S, 2 * S, "/b", 150, 100, 0));
        let live = view.current();
        assert_eq!(live.covered, Duration::from_secs(2));
        assert!((live.totals.rps - 100.0).abs() < 1e-9);
        assert_eq!(live.totals.failures, 5);
        assert_eq!(live.total_failures, 5);
        let names: Vec<&str> = live
            .endpoints
            .iter()
            .map(|(k, _)| k.name.as_str())
            .collect();
        assert_eq!(names, ["/a", "/b"]);
        assert!((live.endpoints[0].1.rps - 25.0).abs() < 1e-9);
    }

    #[test]
    fn the_rate_divides_by_the_time_the_closed_intervals_span() {
        // Intervals of 1 s starting at 1 s (the first second's requests arrived late).
        let mut view = LiveView::default();
        view.push(interval(S, 2 * S, "/a", 100, 100, 0));
        let live = view.current();
        assert_eq!(live.covered, Duration::from_secs(1));
        assert!(
            (live.totals.rps - 100.0).abs() < 1e-9,
            "{}",
            live.totals.rps
        );
        // Steady state: 100 req/s, whatever "now" is when asked.
        for sec in 2..30 {
            view.push(interval(sec * S, (sec + 1) * S, "/a", 100, 100, 0));
        }
        let live = view.current();
        assert_eq!(live.covered, Duration::from_secs(10));
        assert!(
            (live.totals.rps - 100.0).abs() < 1e-9,
            "{}",
            live.totals.rps
        );
    }

    #[test]
    fn paused_time_is_not_in_the_rate() {
        let mut view = LiveView::default();
        for sec in 0..4 {
            view.push(interval(sec * S, (sec + 1) * S, "/a", 100, 100, 0));
        }
        // Paused for 9 of the next 10 s, 10 requests in the second it ran.
        view.push_active(interval(4 * S, 5 * S, "/a", 10, 100, 0), 900_000);
        for sec in 5..13 {
            view.push_active(interval(sec * S, (sec + 1) * S, "/a", 0, 100, 0), S);
        }
        view.push_active(interval(13 * S, 14 * S, "/a", 90, 100, 0), 0);
        let live = view.current();
        // The window 4..14 s: 100 requests in 1.1 s of running.
        assert_eq!(live.covered, Duration::from_millis(1_100));
        assert!(
            (live.totals.rps - 100.0 / 1.1).abs() < 1e-6,
            "{}",
            live.totals.rps
        );
    }

    #[test]
    fn a_quiet_window_reports_zero_rate_but_keeps_totals() {
        let mut view = LiveView::new(Duration::from_secs(5));
        view.push(interval(0, S, "/a", 10, 100, 0));
        view.push(interval(30 * S, 31 * S, "/a", 0, 100, 0));
        let live = view.current();
        assert_eq!(live.totals.requests, 0);
        assert_eq!(live.totals.rps, 0.0);
        assert_eq!(live.totals.p99_us, 0);
        assert_eq!(live.total_requests, 10);
    }
}
