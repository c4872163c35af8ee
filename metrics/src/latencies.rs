//! Latency histograms that stay in their wire form until someone reads them.
//!
//! A master merges every worker's batch each second: with 100 workers and 50 endpoints
//! that is 5,000 histograms a second. Decoding each into a full counts array (about
//! 10,000 slots for latencies up to 200 ms, zeroed first) and then adding it slot by slot
//! cost most of the merge, though a second's histogram has a few hundred non-zero slots
//! at most. A [`Latencies`] read off the wire keeps its HDR V2 bytes (checked when read);
//! merging it into another walks the run-length encoded counts and adds only the
//! non-zero ones. It becomes a full histogram only when it is read or changed.
//!
//! A histogram made here starts *sparse*: the slots it has counts in, sorted, and no
//! counts array. An interval's histogram of one endpoint of many holds a few dozen
//! values, where a full array for latencies up to 100 ms is 64 kB: with 1,000 endpoints
//! and a few intervals open or kept, the arrays were most of a run's memory. Past
//! [`SPARSE_MAX`] distinct slots it becomes a full histogram. Reading one (a percentile)
//! builds the full histogram beside the slots until [`Latencies::compact`] drops it.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::OnceLock;

use hdrhistogram::Histogram;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::stats::new_histogram;

/// Distinct slots a sparse histogram holds before it becomes a full one (16 bytes a
/// slot: 16 kB at most, where a full one for latencies up to 100 ms is 64 kB).
pub const SPARSE_MAX: usize = 1024;

/// A latency histogram (µs), dereferencing to an [`hdrhistogram::Histogram`].
#[derive(Clone)]
pub struct Latencies {
    /// The full histogram: what it holds when `rest` is `None`, else built from `rest`
    /// when first read.
    dense: OnceLock<Histogram<u64>>,
    /// What it holds, when not the full histogram.
    rest: Rest,
}

/// What a histogram holds, when not a full one.
#[derive(Clone)]
enum Rest {
    /// The full histogram holds it.
    None,
    /// The checked HDR V2 bytes it arrived as, until it is changed.
    Wire(Box<[u8]>),
    /// Counts by the lowest value of their slot, sorted by value.
    Sparse(Vec<(u64, u64)>),
}

/// A histogram at aiotest's precision, for the slot arithmetic of sparse ones.
fn reference() -> &'static Histogram<u64> {
    static REFERENCE: OnceLock<Histogram<u64>> = OnceLock::new();
    REFERENCE.get_or_init(new_histogram)
}

impl Latencies {
    /// An empty histogram at aiotest's precision.
    pub fn new() -> Self {
        Latencies {
            dense: OnceLock::new(),
            rest: Rest::Sparse(Vec::new()),
        }
    }

    /// Counts `value` once.
    pub fn record(&mut self, value: u64) -> Result<(), hdrhistogram::RecordError> {
        self.record_n(value, 1)
    }

    /// Counts `value` `n` times.
    pub fn record_n(&mut self, value: u64, n: u64) -> Result<(), hdrhistogram::RecordError> {
        if let Rest::Sparse(slots) = &mut self.rest {
            let slot = reference().lowest_equivalent(value);
            match slots.binary_search_by_key(&slot, |&(v, _)| v) {
                Ok(i) => slots[i].1 = slots[i].1.saturating_add(n),
                Err(i) if slots.len() < SPARSE_MAX => slots.insert(i, (slot, n)),
                Err(_) => return self.deref_mut().record_n(value, n),
            }
            // A full histogram read before this no longer says what it holds.
            self.dense = OnceLock::new();
            return Ok(());
        }
        self.deref_mut().record_n(value, n)
    }

    /// Adds `other` in, exactly. One still in its wire form is added from its non-zero
    /// counts, without being decoded; a sparse one from its slots.
    pub fn merge_from(&mut self, other: &Latencies) {
        match &other.rest {
            Rest::Sparse(slots) => {
                for &(value, count) in slots {
                    let _ = self.record_n(value, count);
                }
            }
            // Checked when it was read, so the walk cannot fail here.
            Rest::Wire(bytes) => {
                let _ = for_each_count(bytes, |value, count| {
                    let _ = self.record_n(value, count);
                });
            }
            Rest::None => {
                if let Some(h) = other.dense.get() {
                    // Both grow on demand and share a precision: adding cannot fail.
                    let _ = self.deref_mut().add(h);
                }
            }
        }
    }

    /// Values counted. Read without building a full histogram.
    pub fn len(&self) -> u64 {
        let mut n = 0u64;
        self.each_slot(|_, count| n = n.saturating_add(count));
        n
    }

    /// Whether nothing is counted.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value at `quantile` (0 to 1), exactly as [`Histogram::value_at_quantile`]
    /// answers it, read without building a full histogram.
    pub fn value_at_quantile(&self, quantile: f64) -> u64 {
        // A full histogram, once there, says what it holds (a record drops a stale one).
        if let Some(h) = self.dense.get() {
            return h.value_at_quantile(quantile);
        }
        let quantile = quantile.min(1.0);
        let total = self.len();
        let want = ((quantile * total as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        let mut found = None;
        self.each_slot(|value, count| {
            seen = seen.saturating_add(count);
            if found.is_none() && seen >= want {
                found = Some(value);
            }
        });
        let h = reference();
        match found {
            Some(v) if quantile == 0.0 => h.lowest_equivalent(v),
            Some(v) => h.highest_equivalent(v),
            None => 0,
        }
    }

    /// The middle of `value`'s slot.
    pub fn median_equivalent(&self, value: u64) -> u64 {
        reference().median_equivalent(value)
    }

    /// Every non-zero slot in value order: its lowest value and its count.
    fn each_slot(&self, mut f: impl FnMut(u64, u64)) {
        match (&self.rest, self.dense.get()) {
            (Rest::Sparse(slots), _) => slots.iter().for_each(|&(v, c)| f(v, c)),
            (_, Some(h)) => {
                for v in h.iter_recorded() {
                    f(
                        h.lowest_equivalent(v.value_iterated_to()),
                        v.count_at_value(),
                    );
                }
            }
            // Checked when it was read, so the walk cannot fail here.
            (Rest::Wire(bytes), None) => {
                let _ = for_each_count(bytes, f);
            }
            (Rest::None, None) => {}
        }
    }

    /// Drops the full histogram a read built beside a sparse or wire form, and makes a
    /// full one that holds few slots sparse: for a histogram kept, not read again soon.
    pub fn compact(&mut self) {
        match &self.rest {
            Rest::Sparse(_) | Rest::Wire(_) => self.dense = OnceLock::new(),
            Rest::None => {
                let Some(h) = self.dense.get() else {
                    return;
                };
                let mut slots = Vec::new();
                for v in h.iter_recorded() {
                    if slots.len() == SPARSE_MAX {
                        return;
                    }
                    slots.push((
                        h.lowest_equivalent(v.value_iterated_to()),
                        v.count_at_value(),
                    ));
                }
                self.rest = Rest::Sparse(slots);
                self.dense = OnceLock::new();
            }
        }
    }

    /// Whether it is held without a full histogram (sparse or as it arrived).
    pub fn is_compact(&self) -> bool {
        !matches!(self.rest, Rest::None) && self.dense.get().is_none()
    }

    fn decode(bytes: &[u8]) -> Histogram<u64> {
        let mut h = new_histogram();
        let _ = for_each_count(bytes, |value, count| {
            let _ = h.record_n(value, count);
        });
        h
    }

    fn from_slots(slots: &[(u64, u64)]) -> Histogram<u64> {
        let mut h = new_histogram();
        for &(value, count) in slots {
            let _ = h.record_n(value, count);
        }
        h
    }

    /// The full histogram of what it holds.
    fn built(&self) -> Histogram<u64> {
        match &self.rest {
            Rest::Wire(bytes) => Latencies::decode(bytes),
            Rest::Sparse(slots) => Latencies::from_slots(slots),
            Rest::None => new_histogram(),
        }
    }
}

impl Default for Latencies {
    fn default() -> Self {
        Latencies::new()
    }
}

impl From<Histogram<u64>> for Latencies {
    fn from(h: Histogram<u64>) -> Self {
        Latencies {
            dense: OnceLock::from(h),
            rest: Rest::None,
        }
    }
}

impl Deref for Latencies {
    type Target = Histogram<u64>;

    fn deref(&self) -> &Histogram<u64> {
        self.dense.get_or_init(|| self.built())
    }
}

impl DerefMut for Latencies {
    fn deref_mut(&mut self) -> &mut Histogram<u64> {
        let _ = <Self as Deref>::deref(self);
        // Changed from here on: the full histogram alone says what it holds.
        self.rest = Rest::None;
        self.dense
            .get_mut()
            .expect("deref initialized the histogram just above")
    }
}

impl PartialEq for Latencies {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl fmt::Debug for Latencies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Latencies")
            .field("len", &self.len())
            .field("max", &self.max())
            .finish_non_exhaustive()
    }
}

impl Serialize for Latencies {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match (&self.rest, self.dense.get()) {
            // Unchanged since it was read: its bytes are still what it holds.
            (Rest::Wire(bytes), _) => s.serialize_bytes(bytes),
            (_, Some(h)) => crate::stats::histogram_v2::serialize(h, s),
            // A sparse one is written from a full histogram made for the purpose, not kept.
            (_, None) => crate::stats::histogram_v2::serialize(&self.built(), s),
        }
    }
}

impl<'de> Deserialize<'de> for Latencies {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let plain = crate::stats::histogram_v2::checked_bytes(d)?;
        for_each_count(&plain, |_, _| ())
            .map_err(|e| serde::de::Error::custom(format!("histogram {e}")))?;
        Ok(Latencies {
            dense: OnceLock::new(),
            rest: Rest::Wire(plain.into_boxed_slice()),
        })
    }
}

/// The HDR V2 header: cookie, payload length, normalizing offset, significant digits,
/// lowest and highest trackable values, integer-to-double ratio.
const HEADER: usize = 4 + 4 + 4 + 4 + 8 + 8 + 8;

/// Calls `f(value, count)` for every non-zero count of a plain HDR V2 histogram (its
/// header already checked by `checked_v2`), with the lowest value of the count's slot.
/// An error says what is malformed.
pub(crate) fn for_each_count(bytes: &[u8], mut f: impl FnMut(u64, u64)) -> Result<(), String> {
    if bytes.is_empty() {
        return Ok(());
    }
    let Some(header) = bytes.get(..HEADER) else {
        return Err("is cut short in its header".to_owned());
    };
    let u32_at = |at: usize| {
        u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    let payload_len = u32_at(4) as usize;
    if u32_at(8) != 0 {
        return Err("has a normalizing offset, which aiotest does not write".to_owned());
    }
    let digits = u32_at(12);
    let mut lowest = [0u8; 8];
    lowest.copy_from_slice(&header[16..24]);
    let lowest = u64::from_be_bytes(lowest);
    if lowest == 0 || digits > 5 {
        return Err(format!(
            "has invalid bounds (lowest {lowest}, {digits} digits)"
        ));
    }
    let Some(payload) = bytes.get(HEADER..HEADER + payload_len) else {
        return Err(format!(
            "declares a {payload_len}-byte payload but carries less"
        ));
    };
    // The slot layout, as the histogram that wrote it had it.
    let unit_magnitude = lowest.ilog2();
    let sub_bucket_count_magnitude = (2.0 * 10f64.powi(digits as i32)).log2().ceil() as u32;
    let half_magnitude = sub_bucket_count_magnitude.saturating_sub(1);
    let half_count = 1u64 << half_magnitude;
    let mut index: u64 = 0;
    let mut at = 0;
    while at < payload.len() {
        let (encoded, used) =
            read_varint(&payload[at..]).ok_or_else(|| "has a count cut short".to_owned())?;
        at += used;
        // Zig-zag: a negative number is a run of empty slots.
        let n = ((encoded >> 1) as i64) ^ -((encoded & 1) as i64);
        if n < 0 {
            index = index
                .checked_add(n.unsigned_abs())
                .ok_or_else(|| "skips past any slot".to_owned())?;
            continue;
        }
        if n > 0 {
            let bucket = (index >> half_magnitude).saturating_sub(1);
            let sub = if index >> half_magnitude == 0 {
                index
            } else {
                (index & (half_count - 1)) + half_count
            };
            let shift = bucket + u64::from(unit_magnitude);
            if shift + u64::from(sub_bucket_count_magnitude) > 64 {
                return Err(format!("has a count in slot {index}, beyond any value"));
            }
            f(sub << shift, n as u64);
        }
        index += 1;
    }
    Ok(())
}

/// One LEB128-64b9B number (HDR's varint: up to eight 7-bit groups, then a whole byte):
/// the number and the bytes it took, `None` when cut short.
fn read_varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for i in 0..8 {
        let byte = *b.get(i)?;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    let last = *b.get(8)?;
    Some((value | (u64::from(last) << 56), 9))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(h: &Histogram<u64>) -> Latencies {
        let bytes = rmp_serde::to_vec(&Latencies::from(h.clone())).expect("encodes");
        rmp_serde::from_slice(&bytes).expect("decodes")
    }

    fn spread(seed: u64, n: usize, max: u64) -> Histogram<u64> {
        let mut h = new_histogram();
        let mut x = seed;
        for _ in 0..n {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            h.record(1 + (x >> 33) % max).expect("in range");
        }
        h
    }

    #[test]
    fn a_histogram_off_the_wire_merges_and_reads_exactly_as_the_original() {
        for (seed, n, max) in [
            (1, 0, 10),
            (2, 1, 10),
            (3, 1000, 5_000),
            (4, 5000, 60_000_000),
        ] {
            let original = spread(seed, n, max);
            let mut by_add = Latencies::from(spread(9, 100, 1_000));
            let mut by_walk = by_add.clone();
            by_add.merge_from(&Latencies::from(original.clone()));
            by_walk.merge_from(&wire(&original));
            assert_eq!(*by_add, *by_walk, "merged ({n} values up to {max})");
            let read = wire(&original);
            assert_eq!(*read, original, "decoded ({n} values up to {max})");
            assert_eq!(
                read.value_at_quantile(0.99),
                original.value_at_quantile(0.99)
            );
        }
    }

    #[test]
    fn unchanged_bytes_pass_through_and_a_change_drops_them() {
        let original = spread(5, 300, 90_000);
        let mut read = wire(&original);
        let again = wire(&read);
        assert_eq!(*again, original);
        read.record(7).expect("in range");
        let after = wire(&read);
        assert_eq!(after.len(), original.len() + 1, "the change travels");
    }

    #[test]
    fn one_off_the_wire_can_be_changed_and_merged_into_at_once() {
        let original = spread(7, 400, 70_000);
        let mut target = wire(&original);
        target.merge_from(&wire(&original));
        let mut doubled = original.clone();
        doubled.add(&original).expect("same precision");
        assert_eq!(*target, doubled);
        let mut recorded = wire(&original);
        recorded.record(12).expect("in range");
        assert_eq!(recorded.len(), original.len() + 1);
    }

    #[test]
    fn a_sparse_histogram_reads_merges_and_travels_as_a_full_one() {
        // Below, at and past the number of slots a sparse one holds.
        for (seed, n, max) in [(11, 0, 10), (12, 40, 100_000), (13, 3_000, 60_000_000)] {
            let full = spread(seed, n, max);
            let mut sparse = Latencies::new();
            let mut x = seed;
            for _ in 0..n {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                sparse.record(1 + (x >> 33) % max).expect("in range");
            }
            assert_eq!(*sparse, full, "{n} values up to {max}");
            assert_eq!(sparse.value_at_quantile(0.95), full.value_at_quantile(0.95));
            assert_eq!(*wire(&full), *roundtrip(&sparse), "the same bytes' meaning");
            // Merged into every form, and every form into it.
            for mut target in [
                Latencies::new(),
                Latencies::from(spread(14, 500, 9_000)),
                wire(&spread(15, 50, 9_000)),
            ] {
                let mut expected = (*target).clone();
                expected.add(&full).expect("same precision");
                target.merge_from(&sparse);
                assert_eq!(*target, expected);
            }
            let mut into = sparse.clone();
            into.merge_from(&wire(&full));
            let mut doubled = full.clone();
            doubled.add(&full).expect("same precision");
            assert_eq!(*into, doubled);
        }
    }

    #[test]
    fn sparse_reads_answer_as_the_full_histogram_does() {
        for (seed, n, max) in [(21, 1, 10), (22, 7, 1_000), (23, 900, 250_000)] {
            let full = spread(seed, n, max);
            let mut sparse = Latencies::new();
            sparse.merge_from(&Latencies::from(full.clone()));
            sparse.compact();
            assert!(sparse.is_compact(), "{n}");
            let off_wire = wire(&full);
            for q in [0.0, 0.001, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0, 1.5] {
                let want = full.value_at_quantile(q);
                assert_eq!(sparse.value_at_quantile(q), want, "sparse q={q} n={n}");
                assert_eq!(off_wire.value_at_quantile(q), want, "wire q={q} n={n}");
            }
            assert_eq!((sparse.len(), off_wire.len()), (full.len(), full.len()));
            assert!(
                sparse.is_compact() && off_wire.dense.get().is_none(),
                "read in place"
            );
        }
        assert_eq!(Latencies::new().value_at_quantile(0.5), 0);
    }

    #[test]
    fn compacting_drops_the_full_array_and_keeps_every_count() {
        let mut few = Latencies::new();
        for v in [120, 130, 5_000, 5_000, 90_000] {
            few.record(v).expect("in range");
        }
        assert!(few.is_compact(), "recorded sparse");
        let p99 = few.value_at_quantile(0.99);
        assert!(few.is_compact(), "a percentile is read in place");
        let _ = few.max();
        assert!(!few.is_compact(), "another read builds the full histogram");
        few.compact();
        assert!(few.is_compact());
        assert_eq!((few.len(), few.value_at_quantile(0.99)), (5, p99));
        // A full one with few slots becomes sparse; one with many stays full.
        let mut full = Latencies::from(spread(16, 20, 1_000));
        let before = (*full).clone();
        full.compact();
        assert!(full.is_compact());
        assert_eq!(*full, before);
        let mut many = Latencies::from(spread(17, 5_000, 60_000_000));
        many.compact();
        assert!(!many.is_compact(), "past {SPARSE_MAX} slots");
        // A record after a read is counted, and the stale full histogram not used.
        let mut read = Latencies::new();
        read.record(10).expect("in range");
        assert_eq!(read.len(), 1);
        read.record(20).expect("in range");
        assert_eq!(read.len(), 2);
    }

    fn roundtrip(l: &Latencies) -> Latencies {
        rmp_serde::from_slice(&rmp_serde::to_vec(l).expect("encodes")).expect("decodes")
    }

    #[test]
    fn malformed_counts_are_refused_when_read() {
        let bytes = rmp_serde::to_vec(&Latencies::from(spread(6, 50, 1_000))).expect("encodes");
        let plain: serde_bytes_like::Blob = rmp_serde::from_slice(&bytes).expect("bytes");
        let mut cut = plain.0.clone();
        // A count whose continuation bit promises a byte that is not there.
        let len = cut.len();
        cut[len - 1] |= 0x80;
        let err = for_each_count(&cut, |_, _| ()).expect_err("cut short");
        assert!(err.contains("cut short"), "{err}");
        // A run of empty slots that reaches past every value.
        // -(2^40) zig-zagged is 2^41 - 1: five 0xff groups and 0x3f; then a count of 1.
        let mut far = plain.0[..HEADER].to_vec();
        far[4..8].copy_from_slice(&7u32.to_be_bytes());
        far.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x3f, 0x02]);
        let err = for_each_count(&far, |_, _| ()).expect_err("too far");
        assert!(err.contains("beyond any value"), "{err}");
    }

    /// Reads a MessagePack bin as it is.
    mod serde_bytes_like {
        pub(super) struct Blob(pub(super) Vec<u8>);

        impl<'de> serde::Deserialize<'de> for Blob {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> serde::de::Visitor<'de> for V {
                    type Value = Blob;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str("bytes")
                    }
                    fn visit_bytes<E>(self, v: &[u8]) -> Result<Blob, E> {
                        Ok(Blob(v.to_vec()))
                    }
                }
                d.deserialize_bytes(V)
            }
        }
    }
}
