//! The Redis connection: from a URL (`redis://`, `rediss://` for TLS, user and password),
//! with fred's reconnection.

use fred::prelude::*;
use fred::types::config::Config;

/// A coordination failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoordError {
    /// The Redis URL does not parse.
    #[error("Redis URL `{url}`: {reason}")]
    BadUrl {
        /// The URL (password hidden).
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// A subscription did not become active within 5 s.
    #[error("subscription to `{0}` did not become active within 5 s")]
    NotSubscribed(String),
    /// Redis refused or failed a command, or the connection failed.
    #[error("Redis: {}", plain(.0))]
    Redis(#[from] fred::error::Error),
}

/// A Redis error in plain words: `connection refused`, not `IO Error: Os { code: 111,
/// kind: ConnectionRefused, ... }`.
pub(crate) fn plain(e: &fred::error::Error) -> String {
    use fred::error::ErrorKind;
    let details = e.details();
    match e.kind() {
        ErrorKind::IO => {
            // fred keeps an I/O error as its Debug text; its `message: "..."` is the
            // operating system's own words.
            let os = details
                .split_once("message: \"")
                .and_then(|(_, rest)| rest.split_once('"'))
                .map(|(m, _)| m.to_lowercase());
            match os {
                Some(m) => format!("cannot reach the server: {m}"),
                None if details.contains("UnexpectedEof") => {
                    "the server closed the connection".to_owned()
                }
                None => format!("connection failed: {details}"),
            }
        }
        ErrorKind::Timeout => "no answer in time".to_owned(),
        ErrorKind::Auth => format!("authentication failed: {details}"),
        ErrorKind::Canceled => "the request was cancelled (connection lost)".to_owned(),
        ErrorKind::Backpressure => "too many commands waiting".to_owned(),
        _ => details.to_owned(),
    }
}

/// A connection to the Redis a run coordinates through. Cheap to clone.
#[derive(Clone)]
pub struct Redis {
    client: Client,
    config: Config,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Redis")
    }
}

fn hide_password(url: &str) -> String {
    // redis://user:secret@host -> redis://user:***@host
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s + 3 => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

fn policy() -> ReconnectPolicy {
    // Forever, from 100 ms up to 2 s between attempts: a run outlives a Redis restart.
    ReconnectPolicy::new_exponential(0, 100, 2_000, 2)
}

/// Longest wait for any one command: while Redis is away, fred queues commands until it
/// reconnects, and a caller must learn of the outage instead of waiting for good.
pub const COMMAND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

fn builder(config: Config) -> Builder {
    let mut b = Builder::from_config(config);
    b.set_policy(policy());
    b.with_performance_config(|p| p.default_command_timeout = COMMAND_TIMEOUT);
    b.with_connection_config(|c| c.connection_timeout = COMMAND_TIMEOUT);
    b
}

impl Redis {
    /// Connects to `url` (`redis://[user:password@]host:port[/db]`, or `rediss://` for TLS).
    pub async fn connect(url: &str) -> Result<Self, CoordError> {
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            return Err(CoordError::BadUrl {
                url: hide_password(url),
                reason: "the scheme must be redis:// or rediss:// (TLS)".into(),
            });
        }
        let config = Config::from_url(url).map_err(|e| CoordError::BadUrl {
            url: hide_password(url),
            reason: e.details().to_string(),
        })?;
        let client = builder(config.clone()).build()?;
        client.init().await?;
        Ok(Redis { client, config })
    }

    /// Connects to a `rediss://` URL whose server certificate is signed by `ca_pem` (a
    /// private CA) rather than a CA the system trusts.
    pub async fn connect_with_root_ca(url: &str, ca_pem: &[u8]) -> Result<Self, CoordError> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let bad = |reason: String| CoordError::BadUrl {
            url: hide_password(url),
            reason,
        };
        let mut config = Config::from_url(url).map_err(|e| bad(e.details().to_string()))?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem) {
            let cert = cert.map_err(|e| bad(format!("CA certificate: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| bad(format!("CA certificate: {e}")))?;
        }
        if roots.is_empty() {
            return Err(bad("the CA file holds no PEM certificate".into()));
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| bad(format!("TLS: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.tls = Some(tls.into());
        let client = builder(config.clone()).build()?;
        client.init().await?;
        Ok(Redis { client, config })
    }

    /// The command client.
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// A new command client with its own connection, for blocking reads (XREAD BLOCK) that
    /// must not hold up the shared connection's other commands.
    pub(crate) async fn dedicated(&self) -> Result<Client, CoordError> {
        let client = builder(self.config.clone()).build()?;
        client.init().await?;
        Ok(client)
    }

    /// A new pub/sub client on the same server (it resubscribes after reconnecting).
    pub(crate) async fn subscriber(&self) -> Result<fred::clients::SubscriberClient, CoordError> {
        let sub = builder(self.config.clone()).build_subscriber_client()?;
        sub.init().await?;
        sub.manage_subscriptions();
        Ok(sub)
    }

    /// Publishes raw bytes on a channel (tests use it to send garbage).
    pub async fn publish_raw(&self, channel: &str, bytes: &[u8]) -> Result<(), CoordError> {
        let _: i64 = self.client.publish(channel, bytes.to_vec()).await?;
        Ok(())
    }

    /// Appends a raw entry to a stream (tests use it to send garbage).
    pub async fn xadd_raw(&self, stream: &str, bytes: &[u8]) -> Result<(), CoordError> {
        let _: String = self
            .client
            .xadd(stream, false, None, "*", vec![("m", bytes.to_vec())])
            .await?;
        Ok(())
    }

    /// Stores `bytes` at `key`, expiring after `ttl`.
    pub async fn set_bytes(
        &self,
        key: &str,
        bytes: &[u8],
        ttl: std::time::Duration,
    ) -> Result<(), CoordError> {
        let ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1);
        let _: Option<String> = self
            .client
            .set(key, bytes.to_vec(), Some(Expiration::PX(ms)), None, false)
            .await?;
        Ok(())
    }

    /// The bytes at `key`, if any.
    pub async fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>, CoordError> {
        Ok(self.client.get(key).await?)
    }

    /// Makes `keys` expire after `ttl` (keys that do not exist are skipped).
    pub async fn expire(
        &self,
        keys: &[String],
        ttl: std::time::Duration,
    ) -> Result<(), CoordError> {
        let secs = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX).max(1);
        for k in keys {
            let _: i64 = self.client.expire(k.as_str(), secs, None).await?;
        }
        Ok(())
    }

    /// Adds 1 to the counter at `key` (created at 0, expiring after `ttl` from its
    /// creation) and returns the new value: numbers unique across every node of a run.
    pub async fn incr(&self, key: &str, ttl: std::time::Duration) -> Result<u64, CoordError> {
        let n: i64 = self.client.incr(key).await?;
        if n == 1 {
            self.expire(&[key.to_owned()], ttl).await?;
        }
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Deletes `keys`.
    pub async fn del(&self, keys: &[String]) -> Result<(), CoordError> {
        let _: i64 = self.client.del(keys.to_vec()).await?;
        Ok(())
    }

    /// The number of entries in a stream (0 when it does not exist).
    pub async fn stream_len(&self, stream: &str) -> Result<u64, CoordError> {
        Ok(self.client.xlen(stream).await?)
    }

    /// Checks the server answers.
    pub async fn ping(&self) -> Result<(), CoordError> {
        let _: String = self.client.ping(None).await?;
        Ok(())
    }

    /// Closes the connection.
    pub async fn quit(&self) {
        let _ = self.client.quit().await;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redis_errors_are_said_in_plain_words() {
        use fred::error::{Error, ErrorKind};
        let e = Error::new(
            ErrorKind::IO,
            "Os { code: 111, kind: ConnectionRefused, message: \"Connection refused\" }",
        );
        assert_eq!(
            super::plain(&e),
            "cannot reach the server: connection refused"
        );
        assert_eq!(
            super::CoordError::from(e).to_string(),
            "Redis: cannot reach the server: connection refused"
        );
        assert_eq!(
            super::plain(&Error::new(ErrorKind::Timeout, "Request timed out.")),
            "no answer in time"
        );
    }

    #[test]
    fn passwords_are_hidden_in_errors() {
        assert_eq!(
            super::hide_password("redis://u:secret@h:1/0"),
            "redis://u:***@h:1/0"
        );
        assert_eq!(
            super::hide_password("redis://:secret@h:1"),
            "redis://:***@h:1"
        );
        assert_eq!(super::hide_password("redis://h:1"), "redis://h:1");
    }
}
