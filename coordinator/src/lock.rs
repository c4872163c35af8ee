//! `RedisLock::with_lock(redis, name, timeout)`: a lock a process holds while it lives.
//!
//! Acquired with `SET key token NX PX timeout` and a random token; renewed every third of
//! the timeout while held (and at once after a reconnection), by a Lua script that extends
//! it only if the token is still ours, and takes it back if the key is gone (a Redis
//! restart without persistence loses it; without taking it back, a second holder would be
//! admitted); released by a Lua compare-and-delete, so a holder never deletes a lock that
//! expired and was taken by someone else. A holder that dies stops renewing, and the lock
//! expires after `timeout`. A holder that finds someone else's token has lost the lock:
//! [`RedisLock::is_held`] turns false, and it must stop acting as the holder.

use std::time::Duration;

use fred::prelude::*;
use tokio::task::JoinHandle;

use crate::redis::{CoordError, Redis};
use crate::wire::Keys;

/// 1: ours, extended; 2: the key was gone, taken back; 0: someone else holds it.
const RENEW: &str = "local v = redis.call('get', KEYS[1]) \
    if v == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) \
    elseif v == false then redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 2 \
    else return 0 end";
const RELEASE: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";

/// Why a lock was not acquired.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// Someone else holds it.
    #[error("lock `{name}` is held by another process")]
    Held {
        /// The lock's name.
        name: String,
        /// How long it has left before it expires unless renewed (`None` when Redis
        /// could not say). A holder that is alive renews it every third of its timeout, so
        /// a value that grows between two attempts means a live holder.
        remaining: Option<Duration>,
    },
    /// A zero timeout.
    #[error("lock `{name}`: the timeout must be at least 1 ms")]
    ZeroTimeout {
        /// The lock's name.
        name: String,
    },
    /// Redis failed.
    #[error(transparent)]
    Coord(#[from] CoordError),
}

/// A held lock. Renewed in the background until [`release`](Self::release)d or dropped
/// (dropping stops the renewal; the lock then expires after its timeout).
#[derive(Debug)]
pub struct RedisLock {
    redis: Redis,
    key: String,
    token: String,
    renewal: JoinHandle<()>,
}

impl RedisLock {
    /// Takes lock `name` of the run `keys` belongs to, for `timeout` (renewed while held).
    pub async fn with_lock(
        redis: &Redis,
        keys: &Keys,
        name: &str,
        timeout: Duration,
    ) -> Result<RedisLock, LockError> {
        let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        if ms == 0 {
            return Err(LockError::ZeroTimeout {
                name: name.to_owned(),
            });
        }
        let key = keys.lock(name);
        let mut rng = aiotest_core::fastrand::Rng::new();
        let token = format!("{:016x}{:016x}", rng.u64(..), rng.u64(..));
        let set: Option<String> = redis
            .client()
            .set(
                &key,
                token.as_str(),
                Some(Expiration::PX(ms as i64)),
                Some(SetOptions::NX),
                false,
            )
            .await
            .map_err(CoordError::from)?;
        if set.is_none() {
            let pttl: Result<i64, _> = redis.client().pttl(&key).await;
            let remaining = pttl
                .ok()
                .and_then(|ms| u64::try_from(ms).ok())
                .map(Duration::from_millis);
            return Err(LockError::Held {
                name: name.to_owned(),
                remaining,
            });
        }
        let renewal = tokio::spawn(renew(redis.clone(), key.clone(), token.clone(), ms));
        Ok(RedisLock {
            redis: redis.clone(),
            key,
            token,
            renewal,
        })
    }

    /// Releases the lock, if it is still ours.
    pub async fn release(self) -> Result<(), CoordError> {
        self.renewal.abort();
        let _: i64 = self
            .redis
            .client()
            .eval(RELEASE, vec![self.key.as_str()], vec![self.token.as_str()])
            .await?;
        Ok(())
    }

    /// Whether the renewal is still running (false once the lock was lost).
    pub fn is_held(&self) -> bool {
        !self.renewal.is_finished()
    }
}

impl Drop for RedisLock {
    fn drop(&mut self) {
        self.renewal.abort();
    }
}

async fn renew(redis: Redis, key: String, token: String, ms: u64) {
    let every = Duration::from_millis((ms / 3).max(1));
    // After a reconnection the server may be a fresh one: check at once, so the lock is
    // ours again before anyone else can take it.
    let mut reconnects = redis.client().reconnect_rx();
    let mut failing = false;
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            r = reconnects.recv() => {
                if matches!(r, Err(tokio::sync::broadcast::error::RecvError::Closed)) {
                    reconnects = redis.client().reconnect_rx();
                }
            }
        }
        let extended: Result<i64, _> = redis
            .client()
            .eval(
                RENEW,
                vec![key.as_str()],
                vec![token.clone(), ms.to_string()],
            )
            .await;
        match extended {
            Ok(1) => failing = false,
            Ok(2) => {
                failing = false;
                tracing::warn!(key, "the lock had vanished (Redis restarted?); taken back");
            }
            Ok(_) => {
                tracing::error!(key, "lock lost: another process holds it now");
                return;
            }
            // A passing Redis error: try again next round; the lock lives `ms` meanwhile.
            Err(e) => {
                if !failing {
                    tracing::warn!(key, "lock renewal failed: {}", crate::redis::plain(&e));
                    failing = true;
                }
            }
        }
    }
}
