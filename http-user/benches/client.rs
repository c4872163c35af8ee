//! CPU cost per request of the HTTP user's client, beside a bare
//! `hyper::client::conn::http1` loop measured the same way.
//!
//! `cargo bench -p aiotest-http-user`. Both run on a current-thread runtime on the bench
//! thread (so hyper's connection task runs there too) against a hyper server on another
//! thread; the figure is the bench thread's CPU time per request, read from
//! `/proc/thread-self/schedstat`, not wall time, so the server's share is not in it.

// criterion's macros define an undocumented public function.
#![allow(missing_docs)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use aiotest_http_user::HttpUser;
use aiotest_metrics::{MetricsCollector, MetricsConfig, RequestMetricsEvent};
use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt, Empty, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;

/// CPU time this thread has used, in nanoseconds.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

fn start_server() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(|_req| async {
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                            b"hello",
                        ))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    });
    addr
}

fn client_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn bench(c: &mut Criterion) {
    let addr = start_server();
    let mut group = c.benchmark_group("http_get_cpu_per_request");
    group.measurement_time(Duration::from_secs(8));

    group.bench_function("bare_hyper_conn_http1", |b| {
        let rt = client_rt();
        let mut sender = rt.block_on(async {
            let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let _ = stream.set_nodelay(true);
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .expect("handshake");
            tokio::spawn(conn);
            sender
        });
        let host = addr.to_string();
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = thread_cpu_ns();
                for _ in 0..iters {
                    sender.ready().await.expect("ready");
                    let req = Request::get("/items")
                        .header("host", host.as_str())
                        .body(Empty::<Bytes>::new())
                        .expect("request");
                    let res = sender.send_request(req).await.expect("response");
                    let body = res.into_body().collect().await.expect("body").to_bytes();
                    std::hint::black_box(body);
                }
                Duration::from_nanos(thread_cpu_ns() - start)
            })
        })
    });

    group.bench_function("aiotest_http_client_with_metrics", |b| {
        let rt = client_rt();
        let collector = MetricsCollector::new(MetricsConfig::default(), RequestMetricsEvent::new())
            .expect("collector");
        let http = HttpUser::builder()
            .host(format!("http://{addr}"))
            .build()
            .expect("settings");
        let mut client = http.client(collector.recorder());
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = thread_cpu_ns();
                for _ in 0..iters {
                    let res = client.get("/items").send().await;
                    std::hint::black_box(res.status_code());
                }
                Duration::from_nanos(thread_cpu_ns() - start)
            })
        });
        collector.take_pending();
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
