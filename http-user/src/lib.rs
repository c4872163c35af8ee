//! aiotest's HTTP user: a lean per-user HTTP client, recording every request.
//!
//! [`HttpUser`] holds a user type's settings as in the seed (`host`, `timeout` 30 s,
//! `max_retries` 3, `verify_ssl` true) plus default headers; build it once. Each virtual
//! user gets its own [`HttpClient`] with its own keep-alive connections and cookie jar,
//! like a browser: HTTP/1.1 on `http://`, HTTP/2 when an `https://` server offers it
//! (ALPN), TLS through rustls with the webpki roots.
//!
//! HTTP/1.1 runs on the user's own task: the request head is encoded into the
//! connection's reused write buffer and sent in one write (a body up to 16 KiB with it),
//! the response parsed in place from one reused read buffer, its body a slice of that
//! buffer and its headers a map only when asked for. Content-Length, chunked and
//! close-delimited bodies, HEAD, 204/304, interim 1xx responses and `Connection: close`
//! are handled; a head over 64 KiB, more than 100 headers or conflicting lengths are a
//! `protocol` error. A connection idle 50 ms or more is checked before use (a server may
//! have closed it, or sent a 408 first); a request that meets a connection closed before
//! any byte of its answer goes once more on a fresh connection, unrecorded, whatever its
//! method (as browsers do: the server closed an idle connection as the request left).
//! HTTP/2 runs on the user's task too, on the `h2` crate (`src/h2.rs`).
//!
//! Every attempt is recorded into the user's [`aiotest_metrics::Recorder`]: duration from
//! sending the request to the last body byte (connecting is outside it, but inside the
//! timeout), bytes as counted on the TCP connection (a new connection's handshake counts
//! towards the request that opened it), named explicitly or by path with ids replaced
//! ([`naming`]). A failed request is never an `Err`: [`Response::error`] says what went
//! wrong, in the categories of [`aiotest_metrics::ErrorCategory`].
//!
//! Only idempotent requests (GET, HEAD, PUT, DELETE, OPTIONS, TRACE) are retried, and
//! only after a connection error, a reset, a timeout, or a 502/503/504; each attempt is
//! its own record, the backoff (exponential with jitter) is in no record.
//!
//! **Who should depend on this crate:** user types that speak HTTP.
//!
//! ## Cost
//!
//! A kept-alive GET against a local hyper server, client thread only, counted in
//! instructions by callgrind (deterministic, where CPU time on the 2-core VM varies by
//! ±10%), each loop run as a spawned task like a virtual user, in a release build without
//! tokio's `test-util`. The loops are in the `aiotest-bench` package:
//!
//! ```sh
//! cargo build --release -p aiotest-bench --bin callgrind_probe
//! valgrind --tool=callgrind --separate-threads=yes target/release/callgrind_probe client 3000 run
//! ```
//!
//! (the probe's docs give the full commands; per request = the difference between 3,000
//! and 1,000 requests, divided by 2,000). Each loop is measured twice: in a runtime as
//! in a run, where a timer is always pending (the runner's control loop waits on its next
//! flush), and in an idle runtime with no other timer. While any timer is pending,
//! tokio's time driver reads the clock and scans its wheel at every park; the client
//! always has its timeout pending, so an idle runtime charges that work to the client
//! alone.
//!
//! | loop | as in a run | idle runtime | allocations |
//! |---|---|---|---|
//! | bare `hyper::client::conn::http1`: build the request, send, collect the body | 16,607 | 16,413 | 9 |
//! | the same plus the metrics record (two clock reads, a wall-clock stamp, `Recorder::record`) | 17,169 | 16,979 | 9 |
//! | the same under `tokio::time::timeout` | 17,899 | 17,899 | 9 |
//! | `HttpClient::get(..).send()`: everything above, and cookies, naming, checks, retries, byte counts | 6,746 | 6,738 | 0 |
//!
//! The client costs 2.5 times fewer instructions than a bare loop on hyper's client
//! connection and allocates nothing per request: no channel to a connection task and
//! no wake-ups of one, a request head written straight into a reused buffer, a response
//! parsed where it was read with its headers left raw, a path's target, name and metrics
//! endpoint resolved once per client, and one timeout timer per client, re-armed about
//! once a second (see `timer.rs`), not one per request. (It used hyper's client until
//! 2026-11-30: 17,196 instructions and 6 allocations.)
//!
//! `cargo bench -p aiotest-bench` measures the same four loops as thread CPU time
//! (`/proc/thread-self/schedstat`), kernel work on the client thread included. A run on
//! 2026-11-30 gave medians of 54.3, 51.3 and 54.9 µs for the three bare loops and 43.9
//! µs for the client: the loopback system calls, the same count for all four, are most
//! of it, and a loop moves by several µs between runs on this machine.
//!
//! ```no_run
//! use aiotest_http_user::HttpUser;
//! use aiotest_metrics::{MetricsCollector, MetricsConfig, RequestMetricsEvent};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let collector = MetricsCollector::new(MetricsConfig::default(), RequestMetricsEvent::new())?;
//! let http = HttpUser::builder().host("http://127.0.0.1:8080").build()?;
//! let mut client = http.client(collector.recorder());
//! let response = client
//!     .post("/login")
//!     .json(&serde_json::json!({"user": "u1", "password": "secret"}))
//!     .expect_status(200)
//!     .send()
//!     .await;
//! if let Some(error) = response.error() {
//!     eprintln!("login failed ({}): {}", error.category, error.message);
//! }
//! let item = client.get("/items/42").send().await; // recorded as GET /items/{id}
//! # let _ = item;
//! # Ok(())
//! # }
//! ```

mod client;
mod conn;
pub mod cookies;
mod h1;
mod h2;
pub mod naming;
mod target;
mod timer;

/// Named metrics, for [`HttpClient::add`] without a dependency on `aiotest-metrics`.
pub use aiotest_metrics::{Metric, MetricError, MetricKind, Tags};
pub use client::{
    DEFAULT_MAX_REDIRECTS, DEFAULT_MAX_RESPONSE_BODY, HttpClient, HttpConfigError, HttpUser,
    HttpUserBuilder, RequestBuilder, RequestError, Response, Timings,
};
pub use cookies::CookieJar;
