//! The quick mode's request (`--url` or a URL as the argument, with `-X`, `--header`,
//! `--body`, `--body-file`, `--json`), and the command line's HTTP settings
//! ([`aiotest_scenario::settings`]). Both travel in a master's plan, so workers send
//! exactly the same requests.

use serde::{Deserialize, Serialize};

use crate::args::RunArgs;
use crate::run::UsageError;

pub(crate) use aiotest_scenario::settings::{
    HttpSettings, parse_body_limit, parse_redirects, parse_retries, parse_timeout, read_pem,
};

/// The largest body the command line sends (it is held in memory, shared by all users).
pub(crate) const MAX_BODY: u64 = 64 << 20;

/// The command line's HTTP settings; an error names the flag.
pub(crate) fn http_settings(args: &RunArgs) -> Result<HttpSettings, UsageError> {
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
        h2c: args.h2c.then_some(true),
    })
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
        assert_eq!(
            parse_timeout("1.5s"),
            Ok(std::time::Duration::from_millis(1_500))
        );
    }
}
