//! aiotest's Redis coordination for distributed runs.
//!
//! - [`wire`]: the protocol, in one module: a versioned [`Envelope`](wire::Envelope)
//!   (protocol version, run id, sender, sequence number) around every
//!   [`Message`](wire::Message), encoded with rmp-serde; garbage, other versions and other
//!   runs are refused with a typed error. [`Keys`](wire::Keys) namespaces every key and
//!   channel by run id, so two tests can share one Redis.
//! - [`Redis`]: a connection from a URL (`redis://`, `rediss://`, user and password) with
//!   fred's reconnection.
//! - [`DistributedCoordinator`]: `publish(channel_type, message, worker_id)` and
//!   `subscribe(channel_type, handler)`; commands and heartbeats over pub/sub, metrics on a
//!   Redis Stream the master reads and trims, so a dropped connection loses none.
//! - [`RedisLock`]: `with_lock(redis, keys, name, timeout)`: `SET NX PX` with a random
//!   token, renewal while held, compare-and-delete release.
//! - Feature `test-util`: `testutil::RedisServer`, a private `redis-server` on a free
//!   port (plain, with a password, or TLS-only with a fresh CA), stopped on drop.
//!
//! **Who should depend on it:** the runner's master and worker, and tools that talk to a
//! running distributed test.

mod coordinator;
mod lock;
mod redis;
#[cfg(feature = "test-util")]
pub mod testutil;
pub mod wire;

pub use coordinator::{DistributedCoordinator, Subscription};
pub use lock::{LockError, RedisLock};
pub use redis::{COMMAND_TIMEOUT, CoordError, Redis};
