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
//! instructions by callgrind (deterministic; CPU time on the 2-core VM varies ±20%), with
//! the `callgrind_probe` example (its docs give the commands):
//!
//! | loop | instructions per request |
//! |---|---|
//! | bare `hyper::client::conn::http1` (build request, send, collect body) | 17,341 |
//! | `HttpClient::get(..).send()`, metrics record included | 21,344 |
//!
//! The difference (+23%) is the request timeout's timer work, request assembly
//! (default headers, Host, cookies, target), naming and the metrics record (about 400
//! to 770 of it), and response handling. `cargo bench -p aiotest-http-user` measures both
//! loops as thread CPU time (`/proc/thread-self/schedstat`): 50 µs and 59 µs medians, each
//! ±10 µs between runs; that figure includes the kernel's loopback TCP work done on the
//! client thread, which is why it is larger than a user-space-only count.
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
