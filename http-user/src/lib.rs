//! aiotest's HTTP user: a lean per-user HTTP client on hyper, recording every request.
//!
//! [`HttpUser`] holds a user type's settings as in the seed (`host`, `timeout` 30 s,
//! `max_retries` 3, `verify_ssl` true) plus default headers; build it once. Each virtual
//! user gets its own [`HttpClient`] with its own keep-alive connections and cookie jar,
//! like a browser: HTTP/1.1 on `http://`, HTTP/2 when an `https://` server offers it
//! (ALPN), TLS through rustls with the webpki roots.
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
//! | `HttpClient::get(..).send()`: everything above, and cookies, naming, checks, retries, byte counts | 17,196 | 17,196 | 6 |
//!
//! The client makes fewer allocations than the bare loop: a path is parsed into its target
//! and name once per client, the Host value is built once, and a body is read into one
//! buffer rather than collected into a list of them. In a run's runtime it costs what the
//! bare loop with the metrics record costs (27 instructions, 0.16%, more, about 20 of
//! them passing on whether a check ran); in an idle one, where its pending timeout alone
//! pays for the time driver's work at each park, 217 (1.3%) more; and 703 less than the
//! bare loop under a `tokio::time::timeout` in either.
//! About 50 instructions a request (0.3%) mark the attempt in flight, so that one
//! cancelled by the run's stop is recorded as `interrupted` (as in a run: 17,107 without
//! the mark, 17,150 with it).
//! Its timeout is one timer per client, re-armed about once a second (see `timer.rs`);
//! what else it adds (byte counting below TLS, request and response glue) is paid for
//! by what it saves: a body read into one buffer, a path's target, name and metrics
//! endpoint resolved once, no `http::request::Builder`.
//! `cargo bench -p aiotest-bench` measures the same four loops as thread CPU time
//! (`/proc/thread-self/schedstat`), kernel work on the client thread included. Two runs
//! gave medians of 30.7, 33.9, 32.2 and 32.2 µs, then 30.8, 30.3, 32.4 and 32.9 µs (in
//! the table's order): the loopback system calls (the same count for all four) dominate,
//! and one loop moves by up to 3.6 µs between runs, more than the loops differ.
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
pub mod naming;
mod target;
mod timer;

pub use client::{
    HttpClient, HttpConfigError, HttpUser, HttpUserBuilder, RequestBuilder, RequestError, Response,
};
pub use cookies::CookieJar;
