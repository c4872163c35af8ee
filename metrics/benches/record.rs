//! The cost of recording one request into a local recorder, and of merging snapshots.
//!
//! `cargo bench -p aiotest-metrics` (or `cargo xtask bench --criterion`).

// criterion's macros define an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;

use aiotest_metrics::{
    ErrorCategory, MetricsCollector, MetricsConfig, RequestMetricsEvent, RequestRecord, Snapshot,
};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};

fn record(c: &mut Criterion) {
    let mut group = c.benchmark_group("record");
    let collector = MetricsCollector::new(MetricsConfig::default(), RequestMetricsEvent::new())
        .expect("default config is valid");

    // The hot path: a known endpoint, flushes every 256 records included (amortized).
    let mut recorder = collector.recorder();
    let mut us = 0u64;
    group.bench_function("one_endpoint", |b| {
        b.iter(|| {
            us = (us + 7) % 50_000;
            let r = RequestRecord::ok("/items/{id}", "GET", 200, 1 + us);
            recorder.record(black_box(&r));
        })
    });

    // Eight endpoints in turn, so the endpoint lookup cannot stay on one cache line.
    let names = [
        "/",
        "/login",
        "/items",
        "/items/{id}",
        "/cart",
        "/checkout",
        "/search",
        "/logout",
    ];
    let mut i = 0usize;
    group.bench_function("eight_endpoints", |b| {
        b.iter(|| {
            i = (i + 1) % names.len();
            let r = RequestRecord::ok(names[i], "GET", 200, 100 + i as u64 * 37);
            recorder.record(black_box(&r));
        })
    });

    // A failure with a message (the message is interned once).
    group.bench_function("failure_with_message", |b| {
        b.iter(|| {
            let r = RequestRecord::ok("/items", "GET", 503, 900)
                .failed(ErrorCategory::HttpStatus, Some("503 Service Unavailable"));
            recorder.record(black_box(&r));
        })
    });
    group.finish();
    // Keep the collector's memory in check between groups.
    drop(recorder);
    collector.take_pending();
}

fn snapshot_with(endpoints: usize, per_endpoint: u64, seed: u64) -> Snapshot {
    let mut s = Snapshot::new();
    let mut rng = seed;
    for e in 0..endpoints {
        let name = format!("/endpoint/{e}");
        for _ in 0..per_endpoint {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let us = 50 + (rng >> 33) % 200_000;
            s.record(&RequestRecord::ok(&name, "GET", 200, us));
        }
    }
    s
}

fn merge(c: &mut Criterion) {
    let mut group = c.benchmark_group("merge");
    group.sample_size(20);
    let a = snapshot_with(1_000, 200, 1);
    let b = snapshot_with(1_000, 200, 2);
    group.bench_function("1000_endpoints", |bench| {
        bench.iter_batched_ref(
            || a.clone(),
            |acc| acc.merge(black_box(&b)),
            BatchSize::LargeInput,
        )
    });
    let bytes = rmp_serde_size(&b);
    println!("a 1000-endpoint snapshot (200 requests each) is {bytes} bytes in rmp-serde");
    group.finish();
}

fn rmp_serde_size(s: &Snapshot) -> usize {
    // Serialized through serde_json's byte count as a stand-in would be misleading; the
    // wire format is MessagePack, so measure that.
    rmp_serde::to_vec(s).map(|v| v.len()).unwrap_or(0)
}

criterion_group!(benches, record, merge);
criterion_main!(benches);
