//! Named checks as metrics (k6's `checks`): a check's verdicts are samples of the rate
//! `checks` in the named model, tagged `check` (its name) and `group` (the group it was
//! made in, if any) besides the recorder's tags (scenario, the test's). A named check
//! judges a response without failing its request; it merges exactly, like every named
//! metric. [`CheckStats`] is one check's verdicts as read back from the model.

use serde::{Deserialize, Serialize};

use crate::model::{Series, Tags, Values};

/// The rate named checks are samples of.
pub const CHECKS: &str = "checks";

/// The tags of the check at `path` (`::group::name` for one made in a group, its name
/// otherwise) over `base`.
pub fn check_tags(base: &Tags, path: &str) -> Tags {
    let (group, name) = crate::split_check_path(path);
    let mut tags = base.clone();
    tags.set_checked("check", name);
    if let Some(group) = group {
        tags.set_checked("group", group);
    }
    tags
}

/// `passes` verdicts that passed and `fails` that failed, as a series of the rate.
pub(crate) fn verdicts(passes: u64, fails: u64) -> Series {
    Series {
        time: false,
        samples: passes + fails,
        values: Values::Rate { nonzero: passes },
    }
}

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
