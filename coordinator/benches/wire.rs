//! The master's side of a distributed run, per second: every worker sends one metrics
//! batch a second, so merging 100 workers x 50 endpoints is decoding 100 batches and
//! merging their snapshots. The target is under 5% of a core: 50 ms per second of run.
//! Also one batch's encoding (the worker's side) and decoding.
//!
//! `cargo bench -p aiotest-coordinator --bench wire` (or `cargo xtask bench --criterion`).

// criterion's macros define an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;

use aiotest_coordinator::wire::{Envelope, Message, PROTOCOL_VERSION, TaskCounts, decode, encode};
use aiotest_metrics::{RequestRecord, Snapshot};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};

/// One worker's second: 50 endpoints, `per_endpoint` requests each, spread latencies.
fn batch(worker: u64, per_endpoint: u64) -> Vec<u8> {
    encode(&envelope(worker, per_endpoint))
}

/// The same batch as a worker holds it before encoding (full histograms).
fn envelope(worker: u64, per_endpoint: u64) -> Envelope {
    let mut s = Snapshot::new();
    let mut rng = worker.wrapping_add(1);
    for e in 0..50 {
        let name = format!("/endpoint/{e}");
        for _ in 0..per_endpoint {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            s.record(&RequestRecord::ok(
                &name,
                "GET",
                200,
                50 + (rng >> 33) % 200_000,
            ));
        }
    }
    Envelope {
        version: PROTOCOL_VERSION,
        run_id: "bench".into(),
        instance: "i1".into(),
        sender: format!("w{worker}"),
        seq: 1,
        message: Message::Metrics {
            batch: 1,
            snapshot: s,
            last: false,
            counts: TaskCounts::default(),
        },
    }
}

fn wire(c: &mut Criterion) {
    let mut group = c.benchmark_group("wire");
    group.sample_size(20);
    // 100 requests per endpoint and second: 5,000 requests/s per worker.
    let one = batch(0, 100);
    println!("one worker's 1 s batch (50 endpoints): {} bytes", one.len());
    // As a worker encodes it: from full histograms (a decoded batch would pass its
    // histograms' bytes through).
    let fresh = envelope(0, 100);
    group.bench_function("encode_batch_50_endpoints", |b| {
        b.iter(|| encode(black_box(&fresh)))
    });
    group.bench_function("decode_batch_50_endpoints", |b| {
        b.iter(|| decode(black_box(&one), "bench", Some("i1")))
    });
    let batches: Vec<Vec<u8>> = (0..100).map(|w| batch(w, 100)).collect();
    group.bench_function("master_merges_100_workers_x_50_endpoints", |b| {
        b.iter_batched_ref(
            Snapshot::new,
            |total| {
                for bytes in &batches {
                    if let Ok(Envelope {
                        message: Message::Metrics { snapshot, .. },
                        ..
                    }) = decode(bytes, "bench", Some("i1"))
                    {
                        total.merge(&snapshot);
                    }
                }
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, wire);
criterion_main!(benches);
