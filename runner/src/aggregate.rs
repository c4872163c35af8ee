//! The run's interval grid: snapshots from every source (the run's own collector, each
//! worker) are filed under the interval of their own time, and an interval closes once
//! every source has reported past it.
//!
//! The grid is the collector's: intervals of `flush_interval` from the Unix epoch, the
//! same in every process, so a worker's second 12 is its master's second 12 and the
//! target's. A snapshot spans one interval (its records' own), and is filed there. The
//! run's first and last intervals are cut at the run's start and end. A snapshot for an
//! interval that already closed (its batch came later than the close waits) is counted in
//! the next interval to close and marked there as `late`; totals take every snapshot as
//! it arrives, so nothing is lost.

use std::collections::BTreeMap;
use std::time::Duration;

use aiotest_metrics::Snapshot;

/// The run's intervals; see the [module docs](self).
pub(crate) struct Aggregator {
    pub(crate) step_us: u64,
    /// When the run started: its first interval starts here.
    start_us: u64,
    /// The run's first interval.
    first: u64,
    /// The next interval to close.
    next: u64,
    open: BTreeMap<u64, Snapshot>,
    /// What arrived for intervals already closed, since the last close.
    late: Snapshot,
    /// Requests that arrived late, over the run.
    pub(crate) late_requests: u64,
    pub(crate) total: Snapshot,
}

impl Aggregator {
    pub(crate) fn new(start_us: u64, step: Duration) -> Self {
        let step_us = u64::try_from(step.as_micros()).unwrap_or(u64::MAX).max(1);
        let first = start_us / step_us;
        Aggregator {
            step_us,
            start_us,
            first,
            next: first,
            open: BTreeMap::new(),
            late: Snapshot::new(),
            late_requests: 0,
            total: Snapshot::new(),
        }
    }

    pub(crate) fn add(&mut self, s: Snapshot) {
        self.total.merge(&s);
        // Before the run (setup's requests) counts in its first interval.
        let k = s
            .start_us
            .map_or(self.next, |t| t / self.step_us)
            .max(self.first);
        if k < self.next {
            self.late.merge(&s);
        } else {
            self.open.entry(k).or_default().merge(&s);
        }
    }

    fn end_of(&self, k: u64) -> u64 {
        k.saturating_add(1).saturating_mul(self.step_us)
    }

    /// Closes every interval ending by `watermark_us`, oldest first.
    pub(crate) fn close_until(&mut self, watermark_us: u64, out: &mut Vec<Snapshot>) {
        while self.end_of(self.next) <= watermark_us {
            let s = self.take(self.next, None);
            out.push(s);
            self.next += 1;
        }
    }

    /// Closes everything, the last interval ending at `final_us`.
    pub(crate) fn close_all(&mut self, final_us: u64, out: &mut Vec<Snapshot>) {
        let last = self
            .open
            .keys()
            .next_back()
            .copied()
            .unwrap_or(0)
            .max(self.next)
            .max(final_us.saturating_sub(1) / self.step_us);
        while self.next <= last {
            let end = (self.next == last).then_some(final_us);
            let s = self.take(self.next, end);
            out.push(s);
            self.next += 1;
        }
        if !self.late.is_empty() {
            // Late to the very end: counted in the last interval.
            let late = std::mem::take(&mut self.late);
            let n = late.total().requests;
            self.late_requests += n;
            if let Some(last) = out.last_mut() {
                let span = (last.start_us, last.end_us);
                last.merge(&late);
                last.late += n;
                (last.start_us, last.end_us) = span;
            }
        }
    }

    fn take(&mut self, k: u64, end: Option<u64>) -> Snapshot {
        let mut s = self.open.remove(&k).unwrap_or_default();
        let late = std::mem::take(&mut self.late);
        if !late.is_empty() {
            let n = late.total().requests;
            s.merge(&late);
            s.late += n;
        }
        self.late_requests += s.late;
        let start = (k * self.step_us).max(self.start_us);
        s.start_us = Some(start);
        s.end_us = Some(end.map_or(self.end_of(k), |e| e.clamp(start, self.end_of(k))));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiotest_metrics::RequestRecord;

    const S: u64 = 1_000_000;

    /// `n` requests of grid interval `[start, start + 1 s)`.
    fn snap(start: u64, n: u64) -> Snapshot {
        let mut s = Snapshot::new();
        for _ in 0..n {
            s.record(&RequestRecord::ok("/a", "GET", 200, 100).at(start));
        }
        s.start_us = Some(start);
        s.end_us = Some(start + S);
        s
    }

    #[test]
    fn snapshots_land_in_the_interval_of_their_own_time_and_late_ones_are_marked() {
        // The run starts 0.4 s into second 100.
        let mut agg = Aggregator::new(100 * S + 400_000, Duration::from_secs(1));
        agg.add(snap(100 * S, 5));
        agg.add(snap(101 * S, 7));
        agg.add(snap(100 * S, 2));
        // Setup's requests, before the run: its first interval.
        agg.add(snap(99 * S, 1));
        let mut out = Vec::new();
        agg.close_until(101 * S + 900_000, &mut out);
        assert_eq!(out.len(), 1, "second 101 has not ended");
        assert_eq!(out[0].total().requests, 8);
        assert_eq!(
            (out[0].start_us, out[0].end_us),
            (Some(100 * S + 400_000), Some(101 * S)),
            "the first interval starts with the run"
        );
        agg.close_until(102 * S, &mut out);
        assert_eq!(out[1].total().requests, 7);
        assert_eq!(out[1].late, 0);
        // A batch of second 101 after it closed: counted in the next, marked late.
        agg.add(snap(101 * S, 3));
        out.clear();
        agg.close_until(104 * S, &mut out);
        let counts: Vec<(u64, u64)> = out.iter().map(|s| (s.total().requests, s.late)).collect();
        assert_eq!(counts, [(3, 3), (0, 0)], "empty intervals close too");
        assert_eq!(agg.late_requests, 3);
        assert_eq!(agg.total.total().requests, 18);
        // The end closes everything, the last one at the run's end.
        agg.add(snap(105 * S, 1));
        out.clear();
        agg.close_all(105 * S + 200_000, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].end_us, Some(105 * S + 200_000));
        assert_eq!(out[1].total().requests, 1);
        assert_eq!(agg.total.total().requests, 19);
    }
}
