//! The end-to-end benchmark's target when nginx is not installed: HTTP/1.1 on one
//! thread (pin it with `taskset`), keep-alive without limit, `ok` (2 bytes) to every
//! request. `bench_target 127.0.0.1:PORT`; runs until killed.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;

fn main() {
    let Some(addr) = std::env::args().nth(1) else {
        eprintln!("usage: bench_target 127.0.0.1:PORT");
        std::process::exit(2);
    };
    let addr: std::net::SocketAddr = match addr.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bench_target: `{addr}`: {e}");
            std::process::exit(2);
        }
    };
    if !addr.ip().is_loopback() {
        eprintln!("bench_target: {addr}: only loopback addresses");
        std::process::exit(2);
    }
    aiotest_bench::client_runtime().block_on(async move {
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("bench_target: bind {addr}: {e}");
                std::process::exit(1);
            }
        };
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req| async {
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(b"ok"))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}
