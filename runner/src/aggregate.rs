//! The run's interval grid: snapshots from every source (the run's own collector, each
//! worker) are filed under the grid interval their end is nearest to, and an interval
//! closes once every source has reported past it. Totals take every snapshot as it
//! arrives, so a late one is never lost: it joins the next open interval.

use std::collections::BTreeMap;
use std::time::Duration;

use aiotest_metrics::Snapshot;

/// The run's intervals on a grid of `flush_interval` from the start; see the
/// [module docs](self).
pub(crate) struct Aggregator {
    origin_us: u64,
    pub(crate) step_us: u64,
    /// The next grid interval to close (1 is the first).
    next: u64,
    open: BTreeMap<u64, Snapshot>,
    pub(crate) total: Snapshot,
}

impl Aggregator {
    pub(crate) fn new(origin_us: u64, step: Duration) -> Self {
        Aggregator {
            origin_us,
            step_us: u64::try_from(step.as_micros()).unwrap_or(u64::MAX).max(1),
            next: 1,
            open: BTreeMap::new(),
            total: Snapshot::new(),
        }
    }

    pub(crate) fn add(&mut self, s: Snapshot) {
        self.total.merge(&s);
        // The grid interval nearest its end; a late one joins the next open interval.
        let k = s.end_us.map_or(self.next, |e| {
            (e.saturating_sub(self.origin_us) + self.step_us / 2) / self.step_us
        });
        self.open.entry(k.max(self.next)).or_default().merge(&s);
    }

    fn end_of(&self, k: u64) -> u64 {
        self.origin_us + k * self.step_us
    }

    /// Closes every interval ending by `watermark_us`, oldest first.
    pub(crate) fn close_until(&mut self, watermark_us: u64, out: &mut Vec<Snapshot>) {
        while self.end_of(self.next) <= watermark_us {
            out.push(self.take(self.next, None));
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
            .max(self.next);
        while self.next <= last {
            let end = (self.next == last).then_some(final_us);
            out.push(self.take(self.next, end));
            self.next += 1;
        }
    }

    fn take(&mut self, k: u64, end: Option<u64>) -> Snapshot {
        let mut s = self.open.remove(&k).unwrap_or_default();
        let start = self.end_of(k - 1);
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

    fn snap(end: u64, n: u64) -> Snapshot {
        let mut s = Snapshot::new();
        for _ in 0..n {
            s.record(&RequestRecord::ok("/a", "GET", 200, 100));
        }
        s.start_us = Some(end.saturating_sub(S));
        s.end_us = Some(end);
        s
    }

    #[test]
    fn snapshots_land_on_the_grid_interval_nearest_their_end_and_late_ones_are_kept() {
        let mut agg = Aggregator::new(100 * S, Duration::from_secs(1));
        // Two workers, out of phase with the grid by 0.3 s and 0.6 s.
        agg.add(snap(101 * S + 300_000, 5));
        agg.add(snap(101 * S + 600_000, 7));
        let mut out = Vec::new();
        agg.close_until(102 * S, &mut out);
        let counts: Vec<u64> = out.iter().map(|s| s.total().requests).collect();
        assert_eq!(counts, [5, 7], "1.3 s is nearest 1 s; 1.6 s nearest 2 s");
        assert_eq!(
            (out[1].start_us, out[1].end_us),
            (Some(101 * S), Some(102 * S))
        );
        // A snapshot for an interval already closed joins the next open one: counted.
        agg.add(snap(101 * S, 3));
        out.clear();
        agg.close_until(104 * S, &mut out);
        let counts: Vec<u64> = out.iter().map(|s| s.total().requests).collect();
        assert_eq!(counts, [3, 0], "empty intervals close too");
        assert_eq!(agg.total.total().requests, 15);
        // The end closes everything, the last one at the run's end.
        agg.add(snap(105 * S + 200_000, 1));
        out.clear();
        agg.close_all(105 * S + 200_000, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].end_us, Some(105 * S));
        assert_eq!(agg.total.total().requests, 16);
    }
}
