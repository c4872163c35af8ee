//! CPU cost per request of the HTTP user's client, beside a bare
//! `hyper::client::conn::http1` loop, that loop plus the metrics record, and plus a
//! request timeout too.
//!
//! `cargo bench -p aiotest-bench` (or `cargo xtask bench --criterion`). Each loop runs on a
//! current-thread runtime on the bench thread (so hyper's connection task runs there too)
//! against a hyper server on another thread; the figure is the bench thread's CPU time per
//! request, read from `/proc/thread-self/schedstat`, not wall time, so the server's share
//! is not in it. It includes the kernel's loopback work done on the client thread.

// criterion's macros define an undocumented public function.
#![allow(missing_docs)]

use std::time::Duration;

use aiotest_bench::{
    Bare, BareLoop, aiotest_client, aiotest_get, client_runtime, start_server, thread_cpu_ns,
};
use aiotest_metrics::MetricsCollector;
use criterion::{Criterion, criterion_group, criterion_main};

fn bench(c: &mut Criterion) {
    let addr = start_server();
    let mut group = c.benchmark_group("http_get_cpu_per_request");
    group.measurement_time(Duration::from_secs(8));
    let collector = MetricsCollector::with_defaults();

    for bare_loop in BareLoop::ALL {
        group.bench_function(bare_loop.name(), |b| {
            let rt = client_runtime();
            let mut bare = rt.block_on(Bare::connect(addr));
            let mut recorder = collector.recorder();
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = thread_cpu_ns();
                    bare_loop.run(&mut bare, &mut recorder, iters).await;
                    Duration::from_nanos(thread_cpu_ns() - start)
                })
            })
        });
    }

    group.bench_function("aiotest_http_client_with_metrics", |b| {
        let rt = client_runtime();
        let mut client = aiotest_client(addr, collector.recorder());
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = thread_cpu_ns();
                for _ in 0..iters {
                    std::hint::black_box(aiotest_get(&mut client).await);
                }
                Duration::from_nanos(thread_cpu_ns() - start)
            })
        });
    });
    group.finish();
    // The collector's queue would otherwise hold every interval of the run.
    collector.take_pending();
}

criterion_group!(benches, bench);
criterion_main!(benches);
