//! Instruction counts per request, client thread only: a bare `hyper::client::conn::http1`
//! loop or the aiotest `HttpClient`, N kept-alive GETs against an in-process server.
//!
//! ```sh
//! cargo build --release -p aiotest-http-user --example callgrind_probe
//! for m in bare client; do for n in 1000 3000; do
//!   valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file=/tmp/cg.$m.$n \
//!     target/release/examples/callgrind_probe $m $n
//! done; done
//! # per request = (client-thread total at 3000 - at 1000) / 2000
//! ```

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let n: u64 = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr");
    // The server on its own thread, so its instructions land in another thread's count.
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
                    let svc = hyper::service::service_fn(|_r| async {
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                            b"hello",
                        ))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        if mode == "bare" {
            let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let _ = stream.set_nodelay(true);
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .expect("handshake");
            tokio::spawn(conn);
            let host = addr.to_string();
            for _ in 0..n {
                sender.ready().await.expect("ready");
                let req = hyper::Request::get("/items")
                    .header("host", host.as_str())
                    .body(Empty::<Bytes>::new())
                    .expect("request");
                let res = sender.send_request(req).await.expect("response");
                std::hint::black_box(res.into_body().collect().await.expect("body").to_bytes());
            }
        } else {
            let collector = aiotest_metrics::MetricsCollector::with_defaults();
            let http = aiotest_http_user::HttpUser::builder()
                .host(format!("http://{addr}"))
                .build()
                .expect("settings");
            let mut client = http.client(collector.recorder());
            for _ in 0..n {
                std::hint::black_box(client.get("/items").send().await.status_code());
            }
        }
    });
}
