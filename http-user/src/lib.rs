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
//! valgrind --tool=callgrind --separate-threads=yes target/release/callgrind_probe client 3000
//! ```
//!
//! (the probe's docs give the full commands; per request = the difference between 3,000
//! and 1,000 requests, divided by 2,000).
//!
//! | loop | instructions per request | allocations per request |
//! |---|---|---|
//! | bare `hyper::client::conn::http1`: build the request, send, collect the body | 16,425 | 9 |
//! | the same plus the metrics record (two clock reads, a wall-clock stamp, `Recorder::record`) | 16,977 | 9 |
//! | the same under `tokio::time::timeout` | 17,893 | 9 |
//! | `HttpClient::get(..).send()`: everything above, and cookies, naming, checks, retries | 17,972 | 7 |
//!
//! The client makes fewer allocations than the bare loop: a path is parsed into its target
//! and name once per client and then shared, and the Host value is built once. It costs
//! 995 instructions (5.9%) more than the bare loop with the metrics record: about 400 are
//! the request timeout (one re-armed timer per client, see `timer.rs`; a plain
//! `tokio::time::timeout` costs 916, most of it tokio's timer wheel being scanned at each
//! park while a timer is pending), about 600 are request assembly, the byte counting below
//! TLS and response handling. `cargo bench -p aiotest-bench` measures the same four loops
//! as thread CPU time (`/proc/thread-self/schedstat`), kernel work on the client thread
//! included: medians from 28.7 to 32.6 µs over two runs, in no consistent order (the
//! client was below the bare loop in one run, above it in the other), since the loopback
//! system calls (the same count for all four) dominate.
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
pub mod naming;
mod target;
mod timer;

pub use client::{
    HttpClient, HttpConfigError, HttpUser, HttpUserBuilder, RequestBuilder, RequestError, Response,
};
pub use cookies::CookieJar;
