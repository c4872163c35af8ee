//! Property tests: merging is exact and associative, whatever the split of the requests,
//! and snapshots survive the wire format unchanged.

use aiotest_metrics::{
    ErrorCategory, MetricsCollector, MetricsConfig, RequestMetricsEvent, RequestRecord, Snapshot,
};
use proptest::prelude::*;

const NAMES: [&str; 4] = ["/a", "/b", "/users/{id}", "/checkout"];
const METHODS: [&str; 2] = ["GET", "POST"];

/// One generated request: which endpoint, how long, what came back, which part it lands in.
#[derive(Debug, Clone)]
struct Req {
    name: usize,
    method: usize,
    duration_us: u64,
    status: Option<u16>,
    error: Option<(ErrorCategory, Option<u8>)>,
    bytes: u64,
    time_us: u64,
    attempt: u32,
    part: usize,
    /// Open-model requests: how late their iteration started.
    lateness: Option<u64>,
}

fn req() -> impl Strategy<Value = Req> {
    (
        0..NAMES.len(),
        0..METHODS.len(),
        // Durations over the whole range, weighted towards realistic ones.
        prop_oneof![1u64..1_000, 1_000u64..100_000, 100_000u64..4_000_000_000],
        prop_oneof![
            Just(None),
            Just(Some(200u16)),
            Just(Some(404)),
            Just(Some(503))
        ],
        prop::option::of((
            prop::sample::select(ErrorCategory::ALL.to_vec()),
            // Up to 40 distinct messages: more than are kept, so eviction is exercised.
            prop::option::of(0u8..40),
        )),
        0u64..10_000,
        (0u64..1_000_000_000, 0u32..3),
        0usize..4,
        prop::option::of(0u64..2_000_000),
    )
        .prop_map(
            |(
                name,
                method,
                duration_us,
                status,
                error,
                bytes,
                (time_us, attempt),
                part,
                lateness,
            )| {
                Req {
                    name,
                    method,
                    duration_us,
                    status,
                    error,
                    bytes,
                    time_us,
                    attempt,
                    part,
                    lateness,
                }
            },
        )
}

fn with_record<T>(r: &Req, f: impl FnOnce(&RequestRecord<'_>) -> T) -> T {
    let msg = r.error.and_then(|(_, m)| m).map(|m| format!("message {m}"));
    let record = RequestRecord {
        scenario: "default",
        name: NAMES[r.name],
        method: METHODS[r.method],
        tags: aiotest_metrics::Tags::none(),
        status: r.status,
        duration_us: r.duration_us,
        bytes_sent: r.bytes,
        bytes_received: r.bytes * 3,
        error: r.error.map(|(c, _)| c),
        message: msg.as_deref(),
        time_us: r.time_us,
        attempt: r.attempt,
        lateness_us: r.lateness,
        checked: false,
        expected_interval_us: None,
    };
    f(&record)
}

fn snapshot_of<'a>(reqs: impl IntoIterator<Item = &'a Req>) -> Snapshot {
    let mut s = Snapshot::new();
    for r in reqs {
        with_record(r, |rec| s.record(rec));
    }
    s
}

fn merged(parts: &[&Snapshot]) -> Snapshot {
    let mut out = Snapshot::new();
    for p in parts {
        out.merge(p);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn merging_the_parts_equals_recording_everything_in_one(reqs in prop::collection::vec(req(), 0..400)) {
        let whole = snapshot_of(&reqs);
        let parts: Vec<Snapshot> = (0..4)
            .map(|p| snapshot_of(reqs.iter().filter(|r| r.part == p)))
            .collect();
        let left = merged(&[&merged(&[&parts[0], &parts[1]]), &merged(&[&parts[2], &parts[3]])]);
        let right = merged(&[&parts[3], &parts[2], &parts[1], &parts[0]]);
        prop_assert_eq!(&left, &whole);
        prop_assert_eq!(&right, &whole);
        for (key, stats) in &whole.endpoints {
            for q in [0.5, 0.9, 0.95, 0.99, 0.999] {
                prop_assert_eq!(left.endpoints[key].percentile_us(q), stats.percentile_us(q));
            }
        }
        let total = whole.total();
        prop_assert_eq!(total.requests, reqs.len() as u64);
        prop_assert_eq!(total.errors.total(), total.failures);
    }

    #[test]
    fn merge_is_associative(a in prop::collection::vec(req(), 0..100),
                            b in prop::collection::vec(req(), 0..100),
                            c in prop::collection::vec(req(), 0..100)) {
        let (a, b, c) = (snapshot_of(&a), snapshot_of(&b), snapshot_of(&c));
        let ab_c = merged(&[&merged(&[&a, &b]), &c]);
        let a_bc = merged(&[&a, &merged(&[&b, &c])]);
        prop_assert_eq!(ab_c, a_bc);
    }

    #[test]
    fn snapshots_round_trip_through_rmp_serde(reqs in prop::collection::vec(req(), 0..200)) {
        let mut s = snapshot_of(&reqs);
        s.start_us = reqs.first().map(|r| r.time_us);
        s.end_us = reqs.last().map(|r| r.time_us);
        let bytes = rmp_serde::to_vec(&s).unwrap();
        let back: Snapshot = rmp_serde::from_slice(&bytes).unwrap();
        prop_assert_eq!(back, s);
    }

    #[test]
    fn four_recorders_on_one_collector_equal_one_snapshot(reqs in prop::collection::vec(req(), 0..300),
                                                          batch_size in 1usize..50) {
        let config = MetricsConfig { batch_size, ..MetricsConfig::default() };
        let collector = MetricsCollector::new(config, RequestMetricsEvent::new()).unwrap();
        let mut recorders: Vec<_> = (0..4).map(|_| collector.recorder()).collect();
        for r in &reqs {
            with_record(r, |rec| recorders[r.part].record(rec));
        }
        drop(recorders);
        let mut sink = Vec::new();
        collector.flush_to(&mut sink, 2_000_000_000);
        let got = merged(&sink.iter().collect::<Vec<_>>());
        prop_assert_eq!(got.endpoints, snapshot_of(&reqs).endpoints);
    }
}
