//! The quick mode's request (`--url` or a URL as the argument, with `-X`, `--header`,
//! `--body`, `--body-file`, `--json`) and the HTTP settings every test can set
//! (`--timeout`, `--max-retries`, `--insecure`, `--max-redirects`, `--max-response-body`,
//! `--client-cert`/`--client-key`; `[http]` in a scenario file). Both travel in a
//! master's plan, so workers send exactly the same requests (a client certificate
//! travels as its PEM text: workers need no files).

use std::time::Duration;

use aiotest_http_user::HttpUserBuilder;
use serde::{Deserialize, Serialize};

use crate::args::RunArgs;
use crate::run::UsageError;

/// Most retries a request may be given.
pub(crate) const MAX_RETRIES: u32 = 10;
/// The longest timeout.
pub(crate) const MAX_TIMEOUT: Duration = Duration::from_secs(3_600);
/// The largest body the command line sends (it is held in memory, shared by all users).
pub(crate) const MAX_BODY: u64 = 64 << 20;

/// Most redirects a request may follow.
pub(crate) const MAX_REDIRECTS: u32 = 100;
/// The largest response body limit.
pub(crate) const MAX_RESPONSE_BODY: u64 = 4 << 30;

/// Timeout, retries, certificate checks, redirects, the response body limit and a client
/// certificate of the test's HTTP users. Unset values keep the HTTP user's defaults (30
/// s, 3 retries, certificates checked, 10 redirects, 64 MiB, no client certificate).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct HttpSettings {
    pub(crate) timeout_s: Option<f64>,
    pub(crate) max_retries: Option<u32>,
    pub(crate) verify_ssl: Option<bool>,
    pub(crate) max_redirects: Option<u32>,
    pub(crate) max_response_body: Option<u64>,
    /// PEM certificate chain and key.
    pub(crate) client_cert: Option<(String, String)>,
    /// `--hosts`: NAME=ADDRESS.
    #[serde(default)]
    pub(crate) hosts: Vec<(String, String)>,
}

impl HttpSettings {
    /// The command line's settings; an error names the flag.
    pub(crate) fn from_args(args: &RunArgs) -> Result<Self, UsageError> {
        let client_cert = match (&args.client_cert, &args.client_key) {
            (Some(cert), Some(key)) => {
                let read = |flag: &str, path: &std::path::Path| {
                    read_pem(path).map_err(|e| UsageError(format!("{flag}: {e}")))
                };
                Some((read("--client-cert", cert)?, read("--client-key", key)?))
            }
            (None, None) => None,
            (Some(_), None) => {
                return Err(UsageError(
                    "--client-cert needs --client-key (the certificate's private key)".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(UsageError(
                    "--client-key needs --client-cert (the certificate it belongs to)".into(),
                ));
            }
        };
        Ok(HttpSettings {
            timeout_s: args.timeout.map(|t| t.as_secs_f64()),
            max_retries: args.max_retries,
            verify_ssl: args.insecure.then_some(false),
            max_redirects: args.max_redirects,
            max_response_body: args.max_response_body,
            client_cert,
            hosts: args.hosts.clone(),
        })
    }

    /// These settings, with `base`'s where these have none (the command line over a
    /// scenario file's `[http]`).
    pub(crate) fn over(&self, base: &HttpSettings) -> HttpSettings {
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
        }
    }

    /// `builder` with these settings.
    pub(crate) fn apply(&self, mut builder: HttpUserBuilder) -> HttpUserBuilder {
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
        builder
    }
}

/// A PEM file's text (at most 1 MiB: a certificate chain is a few KiB).
pub(crate) fn read_pem(path: &std::path::Path) -> Result<String, String> {
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
pub(crate) fn parse_redirects(s: &str) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(n) if n <= MAX_REDIRECTS => Ok(n),
        _ => Err(format!(
            "`{s}`: a number of redirects from 0 (none followed) to {MAX_REDIRECTS}"
        )),
    }
}

/// `--max-response-body`: a size from 1 byte to 4 GiB.
pub(crate) fn parse_body_limit(s: &str) -> Result<u64, String> {
    let n = aiotest_core::size::parse(s)?;
    if n == 0 || n > MAX_RESPONSE_BODY {
        return Err(format!(
            "`{s}`: a response body limit is from 1 byte to {}",
            aiotest_core::size::format(MAX_RESPONSE_BODY)
        ));
    }
    Ok(n)
}

/// The one request a quick-mode test sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct QuickRequest {
    pub(crate) method: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Option<Vec<u8>>,
}

impl Default for QuickRequest {
    fn default() -> Self {
        QuickRequest {
            method: "GET".into(),
            headers: Vec::new(),
            body: None,
        }
    }
}

impl QuickRequest {
    /// The request the command line describes; an error names the flag.
    pub(crate) fn from_args(args: &RunArgs) -> Result<Self, UsageError> {
        let mut r = QuickRequest::default();
        if let Some(m) = &args.method {
            r.method = m.clone();
        }
        r.headers.clone_from(&args.headers);
        let named = |flag: &str, why: String| UsageError(format!("{flag}: {why}"));
        r.body = match (&args.body, &args.body_file, &args.json) {
            (Some(b), None, None) => Some(b.clone().into_bytes()),
            (None, Some(path), None) => {
                // Read with a bound, not by the size on disk: a pipe or a device
                // (`/dev/zero`) has none.
                use std::io::Read;
                let file = std::fs::File::open(path)
                    .map_err(|e| named("--body-file", format!("{}: {e}", path.display())))?;
                let mut body = Vec::new();
                file.take(MAX_BODY + 1)
                    .read_to_end(&mut body)
                    .map_err(|e| named("--body-file", format!("{}: {e}", path.display())))?;
                if body.len() as u64 > MAX_BODY {
                    return Err(named(
                        "--body-file",
                        format!(
                            "{}: over the {} MiB a body may have",
                            path.display(),
                            MAX_BODY >> 20
                        ),
                    ));
                }
                Some(body)
            }
            (None, None, Some(j)) => {
                serde_json::from_str::<serde_json::Value>(j)
                    .map_err(|e| named("--json", format!("not JSON: {e}")))?;
                if !r
                    .headers
                    .iter()
                    .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
                {
                    r.headers
                        .push(("content-type".into(), "application/json".into()));
                }
                Some(j.clone().into_bytes())
            }
            (None, None, None) => None,
            _ => {
                return Err(UsageError(
                    "--body, --body-file and --json each give the body: give one".into(),
                ));
            }
        };
        if r.body.is_some() && matches!(r.method.as_str(), "GET" | "HEAD") && args.method.is_none()
        {
            // As curl does: a body without a method is a POST.
            r.method = "POST".into();
        }
        Ok(r)
    }

    /// Whether it is anything but a plain GET.
    pub(crate) fn is_plain_get(&self) -> bool {
        self.method == "GET" && self.headers.is_empty() && self.body.is_none()
    }

    /// The flags that set it, for errors where they do not apply.
    pub(crate) fn given(args: &RunArgs) -> Option<&'static str> {
        if args.method.is_some() {
            Some("-X/--method")
        } else if !args.headers.is_empty() {
            Some("--header")
        } else if args.body.is_some() {
            Some("--body")
        } else if args.body_file.is_some() {
            Some("--body-file")
        } else if args.json.is_some() {
            Some("--json")
        } else {
            None
        }
    }
}

/// `-X`: an HTTP method, as written (methods are case-sensitive; the standard ones are
/// upper case).
pub(crate) fn parse_method(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !ok {
        return Err(format!("`{s}` is not an HTTP method (e.g. GET, POST, PUT)"));
    }
    if s.bytes().any(|b| b.is_ascii_lowercase())
        && ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
            .iter()
            .any(|m| m.eq_ignore_ascii_case(s))
    {
        return Err(format!(
            "`{s}`: methods are case-sensitive; write {}",
            s.to_ascii_uppercase()
        ));
    }
    Ok(s.to_owned())
}

/// `--header 'Name: value'`.
pub(crate) fn parse_header(s: &str) -> Result<(String, String), String> {
    let Some((name, value)) = s.split_once(':') else {
        return Err(format!("`{s}` is not `Name: value`"));
    };
    let (name, value) = (name.trim(), value.trim());
    http::HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("`{name}` is not a header name"))?;
    http::HeaderValue::from_str(value)
        .map_err(|_| format!("the value of `{name}` holds a character a header cannot"))?;
    Ok((name.to_ascii_lowercase(), value.to_owned()))
}

/// `--max-retries`.
pub(crate) fn parse_retries(s: &str) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(n) if n <= MAX_RETRIES => Ok(n),
        _ => Err(format!(
            "`{s}`: a number of retries from 0 to {MAX_RETRIES}"
        )),
    }
}

/// `--timeout`: more than zero, at most an hour.
pub(crate) fn parse_timeout(s: &str) -> Result<Duration, String> {
    let d = crate::args::parse_duration(s)?;
    if d.is_zero() || d > MAX_TIMEOUT {
        return Err(format!("`{s}`: a timeout is more than 0 and at most 1h"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_headers_retries_and_timeouts_are_checked() {
        assert_eq!(parse_method("PATCH").unwrap(), "PATCH");
        assert_eq!(parse_method("PURGE").unwrap(), "PURGE");
        assert!(parse_method("post").unwrap_err().contains("write POST"));
        assert!(parse_method("GE T").is_err());
        assert_eq!(
            parse_header("X-Api-Key:  k1 ").unwrap(),
            ("x-api-key".to_owned(), "k1".to_owned())
        );
        assert!(
            parse_header("no colon")
                .unwrap_err()
                .contains("Name: value")
        );
        assert!(
            parse_header("bad name: v")
                .unwrap_err()
                .contains("not a header name")
        );
        assert!(parse_header("x: a\u{7f}b").is_err());
        assert_eq!(parse_retries("0"), Ok(0));
        assert!(parse_retries("11").is_err());
        assert!(parse_timeout("0s").is_err());
        assert!(parse_timeout("2h").is_err());
        assert_eq!(parse_timeout("1.5s"), Ok(Duration::from_millis(1_500)));
    }
}
