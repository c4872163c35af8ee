//! Weighted splits: which user type the k-th user is, how N users divide over user types,
//! and weighted random choice of tasks.
//!
//! The split is computed over the *total*, never per delta: AioTest rounds each delta
//! (banker's rounding), so a `+1` step always lands on the same type. Here the split of N
//! users is within one of the exact quota `N * w / W` for every type (quota property), and
//! it is *house-monotone*: going from N to N+1 adds one user and removes none. Largest
//! remainder, the obvious choice, satisfies quota but not monotonicity (the "Alabama
//! paradox": over 307 random weight sets and totals up to 300 it took a user away from a
//! type 2,448 times as the total grew), which would make a ramp-up stop users. We use the
//! Balinski–Young quota method instead: users are assigned one at a time, each to the
//! type with the highest `w / (count + 1)` among those still below their upper quota.
//!
//! Because the assignment is a sequence, user number k always has the same type, so
//! "stop the newest users first" keeps the split exact on the way down too.

/// A weight set that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WeightError {
    /// No weights at all.
    #[error("at least one weight is needed")]
    Empty,
    /// A weight of zero.
    #[error("weight at position {index} is 0; weights must be at least 1")]
    Zero {
        /// Position of the zero weight.
        index: usize,
    },
}

fn check(weights: &[u32]) -> Result<(), WeightError> {
    if weights.is_empty() {
        return Err(WeightError::Empty);
    }
    if let Some(index) = weights.iter().position(|&w| w == 0) {
        return Err(WeightError::Zero { index });
    }
    Ok(())
}

/// The sequence of user types by weight: the k-th call to [`next_index`](Self::next_index) says
/// which type the k-th user is. Prefix counts are the split (see the module docs).
#[derive(Debug, Clone)]
pub struct WeightedSequence {
    weights: Vec<u64>,
    total_weight: u64,
    counts: Vec<u64>,
    assigned: u64,
}

impl WeightedSequence {
    /// A sequence over `weights` (each at least 1).
    pub fn new(weights: &[u32]) -> Result<Self, WeightError> {
        check(weights)?;
        Ok(WeightedSequence {
            weights: weights.iter().map(|&w| u64::from(w)).collect(),
            total_weight: weights.iter().map(|&w| u64::from(w)).sum(),
            counts: vec![0; weights.len()],
            assigned: 0,
        })
    }

    /// The type of the next user.
    pub fn next_index(&mut self) -> usize {
        let h = u128::from(self.assigned + 1);
        let total = u128::from(self.total_weight);
        let mut best: Option<usize> = None;
        for (i, (&w, &a)) in self.weights.iter().zip(&self.counts).enumerate() {
            // Eligible while one more stays within the upper quota: a + 1 <= ceil(h w / W),
            // that is a < h w / W. Some type always is, since sum(a) = h - 1 < h.
            if u128::from(a) * total >= h * u128::from(w) {
                continue;
            }
            best = match best {
                Some(b) if !self.better(i, b, h, total) => Some(b),
                _ => Some(i),
            };
        }
        let chosen = best.unwrap_or(0);
        self.counts[chosen] += 1;
        self.assigned += 1;
        chosen
    }

    /// Whether type `i` should get the next user rather than `b`: the higher
    /// `w / (a + 1)`; on a tie, the one further below its exact quota `h w / W`; then the
    /// earlier type. (Without the second rule, 3 users over weights 3:1 would all go to
    /// the first type, though 2 and 1 is closer to the quota.)
    fn better(&self, i: usize, b: usize, h: u128, total: u128) -> bool {
        let (wi, ai) = (u128::from(self.weights[i]), u128::from(self.counts[i]));
        let (wb, ab) = (u128::from(self.weights[b]), u128::from(self.counts[b]));
        match (wi * (ab + 1)).cmp(&(wb * (ai + 1))) {
            std::cmp::Ordering::Greater => true,
            std::cmp::Ordering::Less => false,
            // Deficits scaled by W: h w - a W (never negative for eligible types).
            std::cmp::Ordering::Equal => h * wi - ai * total > h * wb - ab * total,
        }
    }

    /// Users assigned so far, per type.
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// How many users have been assigned.
    pub fn assigned(&self) -> u64 {
        self.assigned
    }
}

/// Splits `total` users over types by `weights`: exact in sum, each type within one of its
/// quota, and monotone in `total`.
///
/// ```
/// use aiotest_core::weights::split_by_weight;
///
/// assert_eq!(split_by_weight(10, &[3, 1])?, vec![8, 2]);
/// // Going up by one never takes a user from another type.
/// assert_eq!(split_by_weight(3, &[1, 1, 1])?, vec![1, 1, 1]);
/// assert_eq!(split_by_weight(4, &[1, 1, 1])?, vec![2, 1, 1]);
/// # Ok::<(), aiotest_core::weights::WeightError>(())
/// ```
pub fn split_by_weight(total: u64, weights: &[u32]) -> Result<Vec<u64>, WeightError> {
    let mut seq = WeightedSequence::new(weights)?;
    for _ in 0..total {
        seq.next_index();
    }
    Ok(seq.counts)
}

/// Splits `total` users over `workers` workers and over types by `weights`: the result is
/// `[worker][type]` user counts (absolute, as a master sends them).
///
/// Global user k has the type the [`WeightedSequence`] gives it and runs on worker
/// `k % workers`, so: every type's count over all workers is exactly its split of the
/// total; worker totals differ by at most one; and going from N to N+1 users adds one user
/// on one worker and removes none.
///
/// ```
/// use aiotest_core::weights::split_over_workers;
///
/// // 10 users, types 3:1, 3 workers.
/// let split = split_over_workers(10, &[3, 1], 3)?;
/// assert_eq!(split.iter().map(|w| w.iter().sum::<u64>()).collect::<Vec<_>>(), [4, 3, 3]);
/// assert_eq!((0..2).map(|t| split.iter().map(|w| w[t]).sum::<u64>()).collect::<Vec<_>>(), [8, 2]);
/// # Ok::<(), aiotest_core::weights::WeightError>(())
/// ```
pub fn split_over_workers(
    total: u64,
    weights: &[u32],
    workers: usize,
) -> Result<Vec<Vec<u64>>, WeightError> {
    let mut seq = WeightedSequence::new(weights)?;
    let mut out = vec![vec![0u64; weights.len()]; workers];
    if workers == 0 {
        return Ok(out);
    }
    for k in 0..total {
        let t = seq.next_index();
        out[(k % workers as u64) as usize][t] += 1;
    }
    Ok(out)
}

/// Random choice by weight (tasks of a concurrent user, like Locust's `@task(n)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightedChoice {
    /// Running sums of the weights; the last is the total.
    cumulative: Vec<u64>,
}

impl WeightedChoice {
    /// A choice over `weights` (each at least 1).
    pub fn new(weights: &[u32]) -> Result<Self, WeightError> {
        check(weights)?;
        let cumulative = weights
            .iter()
            .scan(0u64, |sum, &w| {
                *sum += u64::from(w);
                Some(*sum)
            })
            .collect();
        Ok(WeightedChoice { cumulative })
    }

    /// An index drawn with probability `weight / total`.
    pub fn pick(&self, rng: &mut fastrand::Rng) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(1);
        let x = rng.u64(0..total);
        self.cumulative.partition_point(|&c| c <= x)
    }

    /// How many choices there are.
    pub fn len(&self) -> usize {
        self.cumulative.len()
    }

    /// Always false: a choice has at least one option.
    pub fn is_empty(&self) -> bool {
        self.cumulative.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Weight sets: hand-picked edge cases plus pseudo-random ones from a fixed seed.
    fn weight_sets() -> Vec<Vec<u32>> {
        let mut sets = vec![
            vec![1],
            vec![1, 1],
            vec![3, 1],
            vec![5, 2, 1],
            vec![1, 1, 1],
            vec![7, 3, 3, 1],
            vec![10, 1],
            vec![2, 3, 5, 7, 11],
            vec![1000, 1],
            vec![u32::MAX, 1, u32::MAX],
        ];
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..200 {
            let n = rng.usize(2..=6);
            sets.push((0..n).map(|_| rng.u32(1..=20)).collect());
        }
        sets
    }

    #[test]
    fn split_is_exact_within_quota_and_monotone_for_many_totals_and_weight_sets() {
        for weights in weight_sets() {
            let total_weight: u128 = weights.iter().map(|&w| u128::from(w)).sum();
            let mut seq = WeightedSequence::new(&weights).unwrap();
            let mut prev = vec![0u64; weights.len()];
            for n in 0..=400u64 {
                let counts = seq.counts().to_vec();
                assert_eq!(counts.iter().sum::<u64>(), n, "{weights:?} n={n}");
                for (i, (&c, &w)) in counts.iter().zip(&weights).enumerate() {
                    // floor(q) <= c <= ceil(q), with q = n w / W, in exact integers.
                    let num = u128::from(n) * u128::from(w);
                    let lo = num / total_weight;
                    let hi = num.div_ceil(total_weight);
                    let c = u128::from(c);
                    assert!(
                        lo <= c && c <= hi,
                        "{weights:?} n={n} type {i}: {c} outside [{lo}, {hi}]"
                    );
                    assert!(
                        c >= u128::from(prev[i]),
                        "{weights:?} n={n}: type {i} lost a user"
                    );
                }
                if n % 50 == 0 {
                    assert_eq!(split_by_weight(n, &weights).unwrap(), counts);
                }
                prev = counts;
                seq.next_index();
            }
        }
    }

    #[test]
    fn plus_one_steps_rotate_over_equal_types() {
        let mut seq = WeightedSequence::new(&[1, 1, 1]).unwrap();
        let order: Vec<usize> = (0..6).map(|_| seq.next_index()).collect();
        assert_eq!(order, vec![0, 1, 2, 0, 1, 2]);
        // Unequal weights interleave instead of bunching: with 3:1 the light type gets the
        // third user, where its quota (0.75) is furthest from being met.
        let mut seq = WeightedSequence::new(&[3, 1]).unwrap();
        let first_four: Vec<usize> = (0..4).map(|_| seq.next_index()).collect();
        assert_eq!(first_four, [0, 0, 1, 0]);
    }

    #[test]
    fn zero_and_empty_weights_are_errors() {
        assert_eq!(split_by_weight(3, &[]), Err(WeightError::Empty));
        assert_eq!(
            split_by_weight(3, &[2, 0]),
            Err(WeightError::Zero { index: 1 })
        );
        assert!(WeightedChoice::new(&[0]).is_err());
        assert_eq!(split_by_weight(0, &[4, 4]).unwrap(), vec![0, 0]);
    }

    #[test]
    fn worker_split_is_exact_per_type_balanced_and_monotone() {
        for weights in weight_sets().into_iter().take(60) {
            for workers in 1..=5usize {
                let mut prev = split_over_workers(0, &weights, workers).unwrap();
                for n in 1..=120u64 {
                    let split = split_over_workers(n, &weights, workers).unwrap();
                    let per_type: Vec<u64> = (0..weights.len())
                        .map(|t| split.iter().map(|w| w[t]).sum())
                        .collect();
                    assert_eq!(
                        per_type,
                        split_by_weight(n, &weights).unwrap(),
                        "{weights:?} n={n} w={workers}"
                    );
                    let totals: Vec<u64> = split.iter().map(|w| w.iter().sum()).collect();
                    let (lo, hi) = (totals.iter().min().unwrap(), totals.iter().max().unwrap());
                    assert!(hi - lo <= 1, "{totals:?}");
                    for (a, b) in split.iter().flatten().zip(prev.iter().flatten()) {
                        assert!(a >= b, "{weights:?} n={n}: a count went down");
                    }
                    prev = split;
                }
            }
        }
        assert_eq!(
            split_over_workers(5, &[1], 0).unwrap(),
            Vec::<Vec<u64>>::new()
        );
    }

    #[test]
    fn weighted_choice_follows_weights() {
        let choice = WeightedChoice::new(&[5, 1, 4]).unwrap();
        let mut rng = fastrand::Rng::with_seed(42);
        let mut hits = [0u32; 3];
        let draws = 100_000;
        for _ in 0..draws {
            hits[choice.pick(&mut rng)] += 1;
        }
        for (i, expected) in [0.5, 0.1, 0.4].into_iter().enumerate() {
            let share = f64::from(hits[i]) / f64::from(draws);
            assert!((share - expected).abs() < 0.01, "index {i}: {share}");
        }
        let single = WeightedChoice::new(&[9]).unwrap();
        assert_eq!(single.pick(&mut rng), 0);
        assert_eq!(single.len(), 1);
    }
}
