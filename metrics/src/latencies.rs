//! Latency histograms that stay in their wire form until someone reads them.
//!
//! A master merges every worker's batch each second: with 100 workers and 50 endpoints
//! that is 5,000 histograms a second. Decoding each into a full counts array (about
//! 10,000 slots for latencies up to 200 ms, zeroed first) and then adding it slot by slot
//! cost most of the merge, though a second's histogram has a few hundred non-zero slots
//! at most. A [`Latencies`] read off the wire keeps its HDR V2 bytes (checked when read);
//! merging it into another walks the run-length encoded counts and adds only the
//! non-zero ones. It becomes a full histogram only when it is read or changed.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::OnceLock;

use hdrhistogram::Histogram;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::stats::new_histogram;

/// A latency histogram (µs), dereferencing to an [`hdrhistogram::Histogram`].
#[derive(Clone)]
pub struct Latencies {
    /// The full histogram, once needed (at once, for one made here).
    dense: OnceLock<Histogram<u64>>,
    /// The checked HDR V2 bytes it arrived as, until it is changed.
    wire: Option<Box<[u8]>>,
}

impl Latencies {
    /// An empty histogram at aiotest's precision.
    pub fn new() -> Self {
        Latencies {
            dense: OnceLock::from(new_histogram()),
            wire: None,
        }
    }

    /// Adds `other` in, exactly. One still in its wire form is added from its non-zero
    /// counts, without being decoded.
    pub fn merge_from(&mut self, other: &Latencies) {
        match (other.dense.get(), &other.wire) {
            // Both grow on demand and share a precision: adding cannot fail.
            (Some(h), _) => {
                let _ = self.deref_mut().add(h);
            }
            (None, Some(bytes)) => {
                let target = self.deref_mut();
                // Checked when it was read, so the walk cannot fail here.
                let _ = for_each_count(bytes, |value, count| {
                    let _ = target.record_n(value, count);
                });
            }
            (None, None) => {}
        }
    }

    fn decode(bytes: &[u8]) -> Histogram<u64> {
        let mut h = new_histogram();
        let _ = for_each_count(bytes, |value, count| {
            let _ = h.record_n(value, count);
        });
        h
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
            wire: None,
        }
    }
}

impl Deref for Latencies {
    type Target = Histogram<u64>;

    fn deref(&self) -> &Histogram<u64> {
        self.dense
            .get_or_init(|| Latencies::decode(self.wire.as_deref().unwrap_or_default()))
    }
}

impl DerefMut for Latencies {
    fn deref_mut(&mut self) -> &mut Histogram<u64> {
        let _ = <Self as Deref>::deref(self);
        // Changed from here on: the bytes no longer say what it holds.
        self.wire = None;
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
        match &self.wire {
            // Unchanged since it was read: its bytes are still what it holds.
            Some(bytes) => s.serialize_bytes(bytes),
            None => crate::stats::histogram_v2::serialize(<Self as Deref>::deref(self), s),
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
            wire: Some(plain.into_boxed_slice()),
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
