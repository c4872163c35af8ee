//! aiotest's HTTP user: the per-user HTTP client on hyper and hyper-util.
//!
//! **Status:** this crate is a placeholder in the workspace layout; its contents arrive
//! with the HTTP user work. It will hold `HttpUser` settings (`host`, `timeout` 30 s,
//! `max_retries` 3, `verify_ssl`), a client per user with its own keep-alive connections
//! and cookie jar, HTTP/1.1 and HTTP/2 over rustls, response checks, request naming
//! (`/users/42` becomes `/users/{id}`), retries of idempotent requests only, and a record
//! of every request into the user's metrics recorder.
//!
//! **Who should depend on it:** user types that speak HTTP.
