//! `RedisLock::with_lock(redis, name, timeout)`: a lock a process holds while it lives.
//!
//! Acquired with `SET key token NX PX timeout` and a random token; renewed every third of
//! the timeout while held, by a Lua script that extends it only if the token is still
//! ours; released by a Lua compare-and-delete, so a holder never deletes a lock that
//! expired and was taken by someone else. A holder that dies stops renewing, and the lock
//! expires after `timeout`.

use std::time::Duration;

use fred::prelude::*;
use tokio::task::JoinHandle;

use crate::redis::{CoordError, Redis};
use crate::wire::Keys;

const RENEW: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end";
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
            return Err(LockError::Held {
                name: name.to_owned(),
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
    loop {
        tokio::time::sleep(every).await;
        let extended: Result<i64, _> = redis
            .client()
            .eval(
                RENEW,
                vec![key.as_str()],
                vec![token.clone(), ms.to_string()],
            )
            .await;
        match extended {
            Ok(1) => {}
            Ok(_) => {
                tracing::error!(key, "lock lost: it expired and is held by someone else now");
                return;
            }
            // A passing Redis error: try again next round; the lock lives `ms` meanwhile.
            Err(e) => tracing::warn!(key, "lock renewal failed: {e}"),
        }
    }
}
