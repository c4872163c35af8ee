//! The `--demo` target: a small HTTP server on 127.0.0.1:0, so the first run needs
//! nothing but a clone.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// A running demo target; counts the requests it served.
pub(crate) struct DemoTarget {
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    /// Requests answered so far.
    pub(crate) served: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DemoTarget {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the target on 127.0.0.1 with an ephemeral port.
pub(crate) async fn start() -> std::io::Result<DemoTarget> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let served = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&served);
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_req| {
                    let counter = Arc::clone(&counter);
                    async move {
                        counter.fetch_add(1, Ordering::Relaxed);
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                            b"{\"hello\":\"from the aiotest demo target\"}",
                        ))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(DemoTarget { addr, served, task })
}
