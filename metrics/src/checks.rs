//! Named checks as metrics (k6's `checks`): per check name, how many responses passed
//! it and how many failed it. A named check judges a response without failing its
//! request; it merges exactly, like everything in a [`Snapshot`](crate::Snapshot).

use serde::{Deserialize, Serialize};

/// One named check's verdicts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckStats {
    /// Responses that passed it.
    pub passes: u64,
    /// Responses that failed it.
    pub fails: u64,
}

impl CheckStats {
    /// Counts one verdict.
    pub fn count(&mut self, passed: bool) {
        if passed {
            self.passes += 1;
        } else {
            self.fails += 1;
        }
    }

    /// Adds `other` in.
    pub fn merge(&mut self, other: &CheckStats) {
        self.passes += other.passes;
        self.fails += other.fails;
    }

    /// Every verdict.
    pub fn total(&self) -> u64 {
        self.passes + self.fails
    }

    /// The share that passed, 0 to 1; 0 when none was judged.
    pub fn rate(&self) -> f64 {
        match self.total() {
            0 => 0.0,
            n => self.passes as f64 / n as f64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_count_and_merge_exactly() {
        let mut a = CheckStats::default();
        a.count(true);
        a.count(false);
        a.count(true);
        let mut b = CheckStats::default();
        b.count(false);
        b.merge(&a);
        assert_eq!((b.passes, b.fails, b.total()), (2, 2, 4));
        assert!((b.rate() - 0.5).abs() < 1e-12);
        assert_eq!(CheckStats::default().rate(), 0.0);
    }
}
