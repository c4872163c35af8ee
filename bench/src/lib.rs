//! Cost measurements of aiotest's hot path: a kept-alive GET to a local server through a
//! bare `hyper::client::conn::http1` loop, through that loop plus the metrics record a
//! load tester must make (and plus a request timeout), and through the HTTP user's
//! `HttpClient`.
//!
//! The loops live here so that the criterion benchmark (`cargo bench -p aiotest-bench`)
//! and the instruction-count probe (`callgrind_probe`, under valgrind) measure exactly
//! the same code. This crate is its own package because of cargo's feature unification:
//! the other crates' tests need tokio's `test-util`, which slows every clock read and
//! timer park, and a release build of the tool has none of it.
//!
//! **Who should depend on this crate:** nobody; it is run, not used.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use aiotest_http_user::{HttpClient, HttpUser};
use aiotest_metrics::{Recorder, RequestRecord};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

/// CPU time the calling thread has used, in nanoseconds (0 where unavailable).
pub fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

/// A current-thread runtime: the client and its connection task share the thread, so
/// the thread's CPU time is the whole client-side cost.
pub fn client_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime builds")
}

/// What else the client's runtime holds while a loop runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surroundings {
    /// Nothing: the loop's own timers are the only ones.
    Idle,
    /// A timer pending all along, as in every aiotest run (the runner's control loop
    /// always waits on its next metrics flush). While any timer is pending, tokio's time
    /// driver reads the clock and scans its wheel at every park; an idle runtime spares a
    /// loop without a timeout that work, which no loop inside a runner is spared.
    Run,
}

impl Surroundings {
    /// Sets `rt` up accordingly (call before the loop starts).
    pub fn prepare(self, rt: &tokio::runtime::Runtime) {
        if self == Surroundings::Run {
            rt.spawn(async { tokio::time::sleep(Duration::from_secs(24 * 3600)).await });
        }
    }
}

/// Starts a hyper HTTP/1.1 server answering `hello` to everything, on 127.0.0.1 and its
/// own thread (so its work is counted on another thread), and returns its address.
pub fn start_server() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener
        .set_nonblocking(true)
        .expect("nonblocking listener");
    let addr = listener.local_addr().expect("listener address");
    std::thread::spawn(move || {
        client_runtime().block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            serve(listener, b"hello").await;
        });
    });
    addr
}

/// Serves HTTP/1.1 on `listener` forever, with keep-alive and TCP_NODELAY, answering
/// `body` to every request (call inside a runtime).
pub async fn serve(listener: tokio::net::TcpListener, body: &'static [u8]) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |_req| async move {
                Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(body))))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// A bare hyper HTTP/1.1 connection: no pool, no timeout, no metrics.
pub struct Bare {
    sender: SendRequest<Empty<Bytes>>,
    host: String,
}

impl Bare {
    /// Connects to `addr` (call inside the runtime; the connection task is spawned on it).
    pub async fn connect(addr: SocketAddr) -> Bare {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connect to the server");
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("HTTP/1.1 handshake");
        tokio::spawn(conn);
        Bare {
            sender,
            host: addr.to_string(),
        }
    }

    /// One GET /items: build the request, send it, collect the body.
    pub async fn get(&mut self) -> Bytes {
        self.sender.ready().await.expect("connection ready");
        let req = hyper::Request::get("/items")
            .header("host", self.host.as_str())
            .body(Empty::<Bytes>::new())
            .expect("request");
        let res = self.sender.send_request(req).await.expect("response");
        res.into_body().collect().await.expect("body").to_bytes()
    }

    /// One GET /items and the least a load tester must add: a monotonic timing of it,
    /// a wall-clock stamp, and the metrics record.
    pub async fn get_recorded(&mut self, recorder: &mut Recorder) -> Bytes {
        let sent = std::time::Instant::now();
        let body = self.get().await;
        let duration = sent.elapsed();
        let time_us = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        recorder.record(&RequestRecord {
            scenario: "default",
            name: "/items",
            method: "GET",
            tags: aiotest_metrics::Tags::none(),
            status: Some(200),
            duration_us: duration.as_micros() as u64,
            bytes_sent: 60,
            bytes_received: 80 + body.len() as u64,
            error: None,
            message: None,
            time_us,
            attempt: 0,
            lateness_us: None,
            checked: false,
            expected_interval_us: None,
        });
        body
    }

    /// [`get_recorded`](Self::get_recorded) under a 30 s `tokio::time::timeout`: the
    /// bare loop with the least a load tester must add, a request timeout included.
    pub async fn get_recorded_with_timeout(&mut self, recorder: &mut Recorder) -> Bytes {
        tokio::time::timeout(Duration::from_secs(30), self.get_recorded(recorder))
            .await
            .expect("a local server answers within 30 s")
    }
}

/// The bare loops measured beside the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BareLoop {
    /// [`Bare::get`].
    Bare,
    /// [`Bare::get_recorded`].
    Recorded,
    /// [`Bare::get_recorded_with_timeout`].
    Timed,
}

impl BareLoop {
    /// All three, in order of what they add.
    pub const ALL: [BareLoop; 3] = [BareLoop::Bare, BareLoop::Recorded, BareLoop::Timed];

    /// The benchmark's name for it.
    pub fn name(self) -> &'static str {
        match self {
            BareLoop::Bare => "bare_hyper_conn_http1",
            BareLoop::Recorded => "bare_plus_metrics_record",
            BareLoop::Timed => "bare_plus_metrics_record_and_timeout",
        }
    }

    /// Runs `n` requests of this loop on `bare`.
    pub async fn run(self, bare: &mut Bare, recorder: &mut Recorder, n: u64) {
        for _ in 0..n {
            let body = match self {
                BareLoop::Bare => bare.get().await,
                BareLoop::Recorded => bare.get_recorded(recorder).await,
                BareLoop::Timed => bare.get_recorded_with_timeout(recorder).await,
            };
            std::hint::black_box(body);
        }
    }
}

/// The HTTP user's client for `addr`, recording into `recorder`, with default settings
/// (30 s timeout, retries, cookies).
pub fn aiotest_client(addr: SocketAddr, recorder: Recorder) -> HttpClient {
    HttpUser::builder()
        .host(format!("http://{addr}"))
        .build()
        .expect("valid settings")
        .client(recorder)
}

/// One GET /items through the HTTP user's client; returns the status code.
pub async fn aiotest_get(client: &mut HttpClient) -> u16 {
    client.get("/items").send().await.status_code()
}
