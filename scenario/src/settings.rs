//! The HTTP settings every test can set, whatever its front end: `--timeout`,
//! `--max-retries`, `--insecure`, `--max-redirects`, `--max-response-body`,
//! `--client-cert`/`--client-key` and `--hosts` on the command line, `[http]` in a
//! scenario file, the options of a script. They travel in a master's plan, so workers
//! send exactly the same requests (a client certificate travels as its PEM text: workers
//! need no files).

use std::time::Duration;

use aiotest_http_user::HttpUserBuilder;
use serde::{Deserialize, Serialize};

/// Most retries a request may be given.
pub const MAX_RETRIES: u32 = 10;
/// The longest timeout.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3_600);
/// Most redirects a request may follow.
pub const MAX_REDIRECTS: u32 = 100;
/// The largest response body limit.
pub const MAX_RESPONSE_BODY: u64 = 4 << 30;

/// Timeout, retries, certificate checks, redirects, the response body limit and a client
/// certificate of the test's HTTP users. Unset values keep the HTTP user's defaults (30
/// s, 3 retries, certificates checked, 10 redirects, 64 MiB, no client certificate).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HttpSettings {
    /// How long a request may take, in seconds.
    pub timeout_s: Option<f64>,
    /// How often a failed idempotent request is sent again.
    pub max_retries: Option<u32>,
    /// Whether servers' certificates are checked.
    pub verify_ssl: Option<bool>,
    /// How many redirects a request follows.
    pub max_redirects: Option<u32>,
    /// The largest response body read, in bytes.
    pub max_response_body: Option<u64>,
    /// PEM certificate chain and key.
    pub client_cert: Option<(String, String)>,
    /// `--hosts`: NAME=ADDRESS.
    #[serde(default)]
    pub hosts: Vec<(String, String)>,
    /// HTTP/2 without TLS, by prior knowledge (`--h2c`, `h2c = true`).
    #[serde(default)]
    pub h2c: Option<bool>,
}

impl HttpSettings {
    /// These settings, with `base`'s where these have none (the command line over a
    /// scenario file's `[http]`).
    pub fn over(&self, base: &HttpSettings) -> HttpSettings {
        HttpSettings {
            timeout_s: self.timeout_s.or(base.timeout_s),
            max_retries: self.max_retries.or(base.max_retries),
            verify_ssl: self.verify_ssl.or(base.verify_ssl),
            max_redirects: self.max_redirects.or(base.max_redirects),
            max_response_body: self.max_response_body.or(base.max_response_body),
            client_cert: self
                .client_cert
                .clone()
                .or_else(|| base.client_cert.clone()),
            // The command line's after the file's: a later mapping of a name wins.
            hosts: base.hosts.iter().chain(&self.hosts).cloned().collect(),
            h2c: self.h2c.or(base.h2c),
        }
    }

    /// `builder` with these settings.
    pub fn apply(&self, mut builder: HttpUserBuilder) -> HttpUserBuilder {
        if let Some(t) = self.timeout_s {
            builder = builder.timeout(Duration::from_secs_f64(t));
        }
        if let Some(n) = self.max_retries {
            builder = builder.max_retries(n);
        }
        if let Some(v) = self.verify_ssl {
            builder = builder.verify_ssl(v);
        }
        if let Some(n) = self.max_redirects {
            builder = builder.max_redirects(n);
        }
        if let Some(n) = self.max_response_body {
            builder = builder.max_response_body(n);
        }
        if let Some((cert, key)) = &self.client_cert {
            builder = builder.client_cert_pem(cert.as_bytes(), key.as_bytes());
        }
        for (name, address) in &self.hosts {
            builder = builder.resolve(name, address);
        }
        if let Some(on) = self.h2c {
            builder = builder.http2_prior_knowledge(on);
        }
        builder
    }
}

/// A PEM file's text (at most 1 MiB: a certificate chain is a few KiB).
pub fn read_pem(path: &std::path::Path) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut text = String::new();
    file.take((1 << 20) + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if text.len() > 1 << 20 {
        return Err(format!(
            "{}: over 1 MiB, not a PEM certificate or key",
            path.display()
        ));
    }
    Ok(text)
}

/// `--max-redirects`.
pub fn parse_redirects(s: &str) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(n) if n <= MAX_REDIRECTS => Ok(n),
        _ => Err(format!(
            "`{s}`: a number of redirects from 0 (none followed) to {MAX_REDIRECTS}"
        )),
    }
}

/// `--max-response-body`: a size from 1 byte to 4 GiB.
pub fn parse_body_limit(s: &str) -> Result<u64, String> {
    let n = aiotest_core::size::parse(s)?;
    if n == 0 || n > MAX_RESPONSE_BODY {
        return Err(format!(
            "`{s}`: a response body limit is from 1 byte to {}",
            aiotest_core::size::format(MAX_RESPONSE_BODY)
        ));
    }
    Ok(n)
}

/// `--max-retries`.
pub fn parse_retries(s: &str) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(n) if n <= MAX_RETRIES => Ok(n),
        _ => Err(format!(
            "`{s}`: a number of retries from 0 to {MAX_RETRIES}"
        )),
    }
}

/// `--timeout`: more than zero, at most an hour.
pub fn parse_timeout(s: &str) -> Result<Duration, String> {
    let d = aiotest_core::duration::parse_duration(s)?;
    if d.is_zero() || d > MAX_TIMEOUT {
        return Err(format!("`{s}`: a timeout is more than 0 and at most 1h"));
    }
    Ok(d)
}
