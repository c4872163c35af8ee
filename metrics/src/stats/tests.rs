//! Tests of per-endpoint statistics and snapshots.

use super::*;

fn rec(name: &str, status: Option<u16>, us: u64, t: u64) -> RequestRecord<'_> {
    RequestRecord {
        status,
        time_us: t,
        bytes_sent: 100,
        bytes_received: 1_000,
        ..RequestRecord::ok(name, "GET", 0, us)
    }
}

#[test]
fn endpoint_stats_count_everything_exactly() {
    let mut s = EndpointStats::default();
    s.record(&rec("/a", Some(200), 1_000, 50));
    s.record(&rec("/a", Some(500), 3_000, 10).failed(ErrorCategory::HttpStatus, Some("500 boom")));
    s.record(&rec("/a", None, 7, 90).failed(ErrorCategory::Connect, Some("refused")));
    s.record(&rec("/a", Some(200), 2_000, 70));
    assert_eq!(s.requests, 4);
    assert_eq!(s.failures, 2);
    assert_eq!(s.failures_by_category[ErrorCategory::HttpStatus.index()], 1);
    assert_eq!(s.failures_by_category[ErrorCategory::Connect.index()], 1);
    assert_eq!(s.status_codes, vec![(200, 2), (500, 1)]);
    assert_eq!((s.bytes_sent, s.bytes_received), (400, 4_000));
    // The refused connection is counted but times nothing.
    assert_eq!((s.min_us, s.max_us), (Some(1_000), Some(3_000)));
    assert_eq!(s.mean_us(), (1_000 + 3_000 + 2_000) as f64 / 3.0);
    assert_eq!((s.first_time_us, s.last_time_us), (Some(10), Some(90)));
    assert_eq!(s.errors.total(), 2);
    assert_eq!(s.percentile_us(1.0), 3_000);
    assert_eq!(s.percentile_us(0.0), 1_000);
}

#[test]
fn interrupted_requests_count_as_failures_with_the_time_they_waited() {
    let mut s = EndpointStats::default();
    s.record(&rec("/a", Some(200), 1_000, 50));
    s.record(&rec("/a", None, 4_000_000, 60).failed(ErrorCategory::Interrupted, None));
    s.record(&rec("/a", None, 2_000, 70).failed(ErrorCategory::Interrupted, None));
    assert_eq!(
        (s.requests, s.failures, s.timed(), s.interrupted()),
        (3, 2, 3, 2)
    );
    // What they waited is a lower bound of their latency, and it shows.
    assert_eq!((s.min_us, s.max_us), (Some(1_000), Some(4_000_000)));
    assert!(
        s.percentile_us(0.99) >= 3_990_000,
        "{}",
        s.percentile_us(0.99)
    );
    let mut m = EndpointStats::default();
    m.merge(&s);
    assert_eq!((m.requests, m.timed(), m.interrupted()), (3, 3, 2));
}

#[test]
fn failures_before_any_exchange_time_nothing_but_a_timeout_keeps_its_duration() {
    let mut s = EndpointStats::default();
    s.record(&rec("/a", Some(200), 5_000, 1));
    for c in [
        ErrorCategory::Connect,
        ErrorCategory::Dns,
        ErrorCategory::Tls,
    ] {
        let mut r = rec("/a", None, 30, 2).failed(c, None);
        r.status = None;
        s.record(&r);
    }
    let mut t = rec("/a", None, 30_000_000, 3).failed(ErrorCategory::Timeout, None);
    t.status = None;
    s.record(&t);
    assert_eq!((s.requests, s.failures, s.timed()), (5, 4, 2));
    assert_eq!(s.min_us, Some(5_000), "no refusal pulls the minimum down");
    assert_eq!(s.max_us, Some(30_000_000), "the timeout shows");
}

#[test]
fn open_model_requests_count_from_their_intended_start_and_keep_their_service_time() {
    let mut s = EndpointStats::default();
    // Served in 5 ms, but its iteration started 900 ms late.
    let late = RequestRecord {
        lateness_us: Some(900_000),
        ..rec("/a", Some(200), 5_000, 0)
    };
    s.record(&late);
    s.record(&RequestRecord {
        lateness_us: Some(0),
        ..rec("/a", Some(200), 5_000, 0)
    });
    assert_eq!(s.max_us, Some(905_000), "latency from the intended start");
    assert_eq!(s.percentile_us(1.0), 905_000);
    let service = s.service.as_ref().expect("service time kept");
    assert_eq!(service.max_us, 5_000);
    assert_eq!(service.percentile_us(0.99), 5_000);
    assert_eq!(service.mean_us(), 5_000.0);
    // Closed-model requests keep no service time apart.
    let mut closed = EndpointStats::default();
    closed.record(&rec("/a", Some(200), 5_000, 0));
    assert!(closed.service.is_none());
    closed.merge(&s);
    assert_eq!(closed.service.as_ref().map(|t| t.histogram.len()), Some(2));
}

#[test]
fn checks_count_through_a_recorder_and_a_merge() {
    let collector = crate::MetricsCollector::new(
        crate::MetricsConfig::default(),
        crate::RequestMetricsEvent::new(),
    )
    .unwrap();
    let mut r = collector.recorder();
    for i in 0..10u64 {
        let mut record = rec("/a", Some(200), 1_000, i);
        record.checked = i < 7;
        if i == 0 {
            record = record.failed(ErrorCategory::CheckFailed, Some("no `ok` in the body"));
        }
        r.record(&record);
    }
    drop(r);
    collector.close_interval(u64::MAX);
    let mut total = Snapshot::new();
    for s in collector.take_pending() {
        total.merge(&s);
        total.merge(&s);
    }
    let t = total.total();
    assert_eq!((t.requests, t.checks), (20, 14), "merged twice");
    assert_eq!(
        t.failures_by_category[ErrorCategory::CheckFailed.index()],
        2
    );
}

#[test]
fn percentiles_are_exact_to_three_significant_digits() {
    let mut s = EndpointStats::default();
    for us in 1..=100_000 {
        s.record(&rec("/p", Some(200), us, 0));
    }
    for (q, want) in [
        (0.5, 50_000u64),
        (0.9, 90_000),
        (0.99, 99_000),
        (0.999, 99_900),
    ] {
        let got = s.percentile_us(q);
        assert!(got.abs_diff(want) * 1000 <= want, "q={q}: {got} vs {want}");
    }
    assert_eq!(EndpointStats::default().percentile_us(0.5), 0, "empty");
}

#[test]
fn durations_beyond_an_hour_are_clamped_in_the_histogram_but_counted() {
    let mut s = EndpointStats::default();
    s.record(&rec("/slow", Some(200), 2 * HISTOGRAM_HIGH_US, 0));
    s.record(&rec("/slow", Some(200), 0, 0));
    assert_eq!(s.requests, 2);
    assert_eq!(s.histogram.len(), 2);
    assert_eq!(s.max_us, Some(2 * HISTOGRAM_HIGH_US), "exact max is kept");
    assert!(s.percentile_us(1.0) >= HISTOGRAM_HIGH_US);
}

#[test]
fn error_messages_are_bounded_deterministically() {
    let mut e = ErrorMessages::default();
    for i in (0..20).rev() {
        e.add(ErrorCategory::Other, Some(&format!("error {i:02}")), 2);
    }
    e.add(ErrorCategory::Timeout, None, 3);
    assert_eq!(e.kept.len(), MAX_ERROR_MESSAGES);
    assert_eq!(e.kept[0].message, "error 00");
    assert_eq!(e.kept[15].message, "error 15");
    assert_eq!(e.other, 4 * 2 + 3);
    assert_eq!(e.total(), 20 * 2 + 3);
    // Long messages are cut at a character boundary.
    let long = "é".repeat(300);
    e.add(ErrorCategory::Connect, Some(&long), 1);
    let kept = e
        .kept
        .iter()
        .find(|m| m.category == ErrorCategory::Connect)
        .unwrap();
    assert!(kept.message.len() <= MAX_ERROR_MESSAGE_LEN);
    assert!(kept.message.chars().all(|c| c == 'é'));
}

#[test]
fn snapshot_round_trips_through_messagepack_and_json() {
    let mut snap = Snapshot {
        start_us: Some(1),
        end_us: Some(2),
        ..Snapshot::default()
    };
    for i in 0..1_000u64 {
        let mut r = rec(if i % 2 == 0 { "/a" } else { "/b" }, Some(200), 100 + i, i);
        if i % 10 == 0 {
            r = r.failed(ErrorCategory::Timeout, Some("timed out"));
        }
        snap.record(&r);
    }
    let packed = rmp_serde::to_vec(&snap).unwrap();
    let back: Snapshot = rmp_serde::from_slice(&packed).unwrap();
    assert_eq!(back, snap);
    let json = serde_json::to_vec(&snap).unwrap();
    let back: Snapshot = serde_json::from_slice(&json).unwrap();
    assert_eq!(back, snap);
    // V2 + deflate keeps it small: two endpoints of 500 distinct values each.
    assert!(packed.len() < 4_000, "{} bytes", packed.len());
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    assert!(rmp_serde::from_slice::<Snapshot>(b"not a snapshot").is_err());
    assert!(rmp_serde::from_slice::<Snapshot>(&[]).is_err());
    let mut snap = Snapshot::default();
    snap.record(&rec("/a", Some(200), 5, 0));
    let mut packed = rmp_serde::to_vec(&snap).unwrap();
    // Corrupt the histogram bytes in the middle of the message.
    let mid = packed.len() / 2;
    for b in &mut packed[mid..mid + 8] {
        *b ^= 0x5a;
    }
    let _ = rmp_serde::from_slice::<Snapshot>(&packed); // Ok or Err, but never a panic
    assert!(serde_json::from_str::<Snapshot>(r#"{"start_us":null,"end_us":null,"endpoints":[{"key":{"scenario":"s","name":"n","method":"GET"},"stats":{"histogram":[1,2,3]}}]}"#).is_err());
}

#[test]
fn merge_adds_and_widens_the_span() {
    let mut a = Snapshot {
        start_us: Some(10),
        end_us: Some(20),
        ..Snapshot::default()
    };
    a.record(&rec("/a", Some(200), 5, 12));
    let mut b = Snapshot {
        start_us: Some(5),
        end_us: Some(15),
        ..Snapshot::default()
    };
    b.record(&rec("/a", Some(404), 9, 6).failed(ErrorCategory::HttpStatus, None));
    b.record(&rec("/b", Some(200), 1, 7));
    a.merge(&b);
    assert_eq!((a.start_us, a.end_us), (Some(5), Some(20)));
    assert_eq!(a.endpoints.len(), 2);
    let total = a.total();
    assert_eq!((total.requests, total.failures), (3, 1));
    assert_eq!(total.status_codes, vec![(200, 2), (404, 1)]);
    assert!(!a.is_empty() && Snapshot::new().is_empty());
}

/// An HDR V2 deflate blob with the given inner header and payload bytes.
fn hdr_blob(payload_len: u32, digits: u32, high: u64, payload: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let inner = hdr_plain(payload_len, digits, high, payload);
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&inner).unwrap();
    let compressed = z.finish().unwrap();
    let mut blob = Vec::new();
    blob.extend_from_slice(&0x1c84_9314u32.to_be_bytes());
    blob.extend_from_slice(&(compressed.len() as u32).to_be_bytes());
    blob.extend_from_slice(&compressed);
    blob
}

/// The same, as plain HDR V2 (what aiotest writes).
fn hdr_plain(payload_len: u32, digits: u32, high: u64, payload: &[u8]) -> Vec<u8> {
    let mut inner = Vec::new();
    inner.extend_from_slice(&0x1c84_9313u32.to_be_bytes());
    inner.extend_from_slice(&payload_len.to_be_bytes());
    inner.extend_from_slice(&0u32.to_be_bytes());
    inner.extend_from_slice(&digits.to_be_bytes());
    inner.extend_from_slice(&1u64.to_be_bytes());
    inner.extend_from_slice(&high.to_be_bytes());
    inner.extend_from_slice(&1.0f64.to_be_bytes());
    inner.extend_from_slice(payload);
    inner
}

/// Deserializes a histogram the way a snapshot field is (JSON byte array).
fn decode_histogram(blob: &[u8]) -> Result<hdrhistogram::Histogram<u64>, String> {
    let json = serde_json::to_string(blob).unwrap();
    histogram_v2::deserialize(&mut serde_json::Deserializer::from_str(&json))
        .map_err(|e| e.to_string())
}

#[test]
fn hostile_histograms_are_refused_before_anything_is_allocated_for_them() {
    // A real histogram still decodes.
    let mut s = EndpointStats::default();
    s.record(&rec("/a", Some(200), 1_234, 1));
    let json = serde_json::to_string(&s).unwrap();
    let back: EndpointStats = serde_json::from_str(&json).unwrap();
    assert_eq!(back.requests, 1);
    // So does one written with deflate, as earlier versions wrote them.
    {
        use hdrhistogram::serialization::{Serializer as _, V2DeflateSerializer};
        let mut h = hdrhistogram::Histogram::<u64>::new(3).unwrap();
        h.record(1_234).unwrap();
        let mut blob = Vec::new();
        V2DeflateSerializer::new().serialize(&h, &mut blob).unwrap();
        assert_eq!(decode_histogram(&blob).unwrap().len(), 1);
    }

    let cases: [(Vec<u8>, &str); 9] = [
        // Plain V2, as written now: the same header checks.
        (
            hdr_plain(u32::MAX, 3, 1 << 40, &[]),
            "declares a 4294967295-byte payload",
        ),
        (hdr_plain(0, 5, u64::MAX / 2, &[]), "5 significant digits"),
        (hdr_plain(0, 3, 1 << 40, &vec![0; 5 << 20]), "is more than"),
        // hdrhistogram would allocate the declared 4 GiB payload buffer first.
        (
            hdr_blob(u32::MAX, 3, 1 << 40, &[]),
            "declares a 4294967295-byte payload",
        ),
        // 5 digits over the whole range: a 50 MB counts array.
        (hdr_blob(0, 5, u64::MAX / 2, &[]), "5 significant digits"),
        // A deflate bomb: 8 MiB of zeros compress to a few kB.
        (
            hdr_blob(0, 3, 1 << 40, &vec![0; 8 << 20]),
            "inflates to more than",
        ),
        (
            vec![0x1c, 0x84, 0x93, 0x14, 0, 0, 0, 99, 1, 2],
            "declares 99 compressed bytes",
        ),
        (b"hello".to_vec(), "is not HDR V2"),
        (vec![0x1c, 0x84], "cut short"),
    ];
    for (blob, expected) in cases {
        let err = decode_histogram(&blob).unwrap_err();
        assert!(err.contains(expected), "{err} (expected {expected})");
    }
}

#[test]
fn a_request_that_never_completed_adds_the_samples_its_user_would_have_taken() {
    let mut s = EndpointStats::default();
    for _ in 0..99 {
        s.record(&RequestRecord::ok("/a", "GET", 200, 1_000));
    }
    // Cut off after 10 s, from a user that sent a request every 10 ms.
    s.record(&RequestRecord {
        expected_interval_us: Some(10_000),
        ..RequestRecord::ok("/a", "GET", 0, 10_000_000).failed(ErrorCategory::Interrupted, None)
    });
    assert_eq!(s.requests, 100);
    assert_eq!(s.timed(), 100, "estimated samples are no requests");
    assert_eq!(s.estimated, 999);
    assert_eq!(s.max_us, Some(10_000_000));
    // The user waited most of the time: the 95th percentile shows it.
    assert!(
        s.percentile_us(0.95) > 9_000_000,
        "{}",
        s.percentile_us(0.95)
    );
    assert!((s.mean_us() - (99.0 * 1_000.0 + 10_000_000.0) / 100.0).abs() < 1e-6);
    // Merged exactly; bounded for a huge wait at a tiny interval.
    let mut t = EndpointStats::default();
    t.merge(&s);
    assert_eq!((t.estimated, t.timed()), (999, 100));
    let mut u = EndpointStats::default();
    u.record(&RequestRecord {
        expected_interval_us: Some(1),
        ..RequestRecord::ok("/a", "GET", 0, 3_600_000_000).failed(ErrorCategory::Timeout, None)
    });
    assert_eq!(u.estimated, 3_599_999_999);
    assert_eq!(u.timed(), 1);
}
