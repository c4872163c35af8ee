//! aiotest's Redis coordination for distributed runs.
//!
//! **Status:** this crate is a placeholder in the workspace layout; its contents arrive
//! with the distributed-mode work. It will hold the connection (on `fred`, with
//! reconnection, auth and TLS from the Redis URL), the versioned wire protocol
//! (`rmp-serde` envelopes: `command`, `request_metrics`, `heartbeat`), metrics transport
//! that survives a dropped connection, run-id namespacing, `RedisLock::with_lock`, and a
//! `test-util` feature that starts a private `redis-server`.
//!
//! **Who should depend on it:** the runner, and tools that talk to a running test.
