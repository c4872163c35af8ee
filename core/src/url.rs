//! Checks of the URLs and paths a test sends load to.
//!
//! A load tester must never guess where load goes: a port that does not parse is an
//! error, not port 80 (what an `http::Uri` gives when asked for a missing or unparsable
//! port), and a path that no server can receive is an error before the run, not a
//! failure per request. Every front end (the user-type builder, the HTTP user, the
//! command line, scenario files) checks with these functions, so they agree.

/// Why a URL or path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    /// No `http://` or `https://` in front.
    #[error("it must start with http:// or https://")]
    NoScheme,
    /// A scheme other than http or https.
    #[error("the scheme must be http or https, not `{0}`")]
    BadScheme(String),
    /// Nothing between `://` and the path.
    #[error("it names no host")]
    NoHost,
    /// A port that is not a number from 1 to 65535.
    #[error("port `{0}` is not a port number (1 to 65535)")]
    BadPort(String),
    /// A `:` with nothing after it.
    #[error("the port after `:` is empty")]
    EmptyPort,
    /// An IPv6 address without brackets.
    #[error("an IPv6 address must be in brackets, e.g. http://[::1]:8080")]
    UnbracketedIpv6,
    /// A character that cannot appear in a URL.
    #[error("{what} at byte {at}: percent-encode it ({hint})")]
    BadChar {
        /// What was found.
        what: &'static str,
        /// Its byte offset.
        at: usize,
        /// How to write it instead.
        hint: &'static str,
    },
    /// A relative path that does not start with `/`.
    #[error("a path must start with /")]
    NotAbsolutePath,
}

/// The parts of an `http(s)://host[:port][/path]` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl<'a> {
    /// `https` or not.
    pub https: bool,
    /// The host, without brackets for IPv6.
    pub host: &'a str,
    /// The port: the one written, or 80/443.
    pub port: u16,
    /// `host[:port]` as written (user info removed).
    pub authority: &'a str,
    /// What follows the authority (path and query), possibly empty.
    pub rest: &'a str,
}

/// Checks `url` (`http://host:port/path?query`) and splits it.
///
/// ```
/// use aiotest_core::url::{parse_base_url, UrlError};
/// let u = parse_base_url("http://127.0.0.1:8080/api").unwrap();
/// assert_eq!((u.host, u.port, u.rest), ("127.0.0.1", 8080, "/api"));
/// assert_eq!(parse_base_url("http://h:99999/"), Err(UrlError::BadPort("99999".into())));
/// ```
pub fn parse_base_url(url: &str) -> Result<BaseUrl<'_>, UrlError> {
    check_chars(url)?;
    let (scheme, rest) = url.split_once("://").ok_or(UrlError::NoScheme)?;
    let https = match scheme {
        "http" => false,
        "https" => true,
        "" => return Err(UrlError::NoScheme),
        other => return Err(UrlError::BadScheme(other.to_owned())),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, rest) = rest.split_at(end);
    // User info (`user:password@`) is not part of where the load goes.
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or(UrlError::NoHost)?;
        match after {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':').ok_or(UrlError::NoHost)?)),
        }
    } else {
        match authority.split_once(':') {
            Some((_, p)) if p.contains(':') => return Err(UrlError::UnbracketedIpv6),
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(UrlError::NoHost);
    }
    let port = match port {
        None => {
            if https {
                443
            } else {
                80
            }
        }
        Some("") => return Err(UrlError::EmptyPort),
        Some(p) => parse_port(p)?,
    };
    Ok(BaseUrl {
        https,
        host,
        port,
        authority,
        rest,
    })
}

fn parse_port(p: &str) -> Result<u16, UrlError> {
    let bad = || UrlError::BadPort(p.to_owned());
    if !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(bad()),
        Ok(n) => Ok(n),
    }
}

/// Checks a request path (`/items?page=2`): it starts with `/` and holds only characters
/// a request line can carry.
///
/// ```
/// use aiotest_core::url::check_path;
/// assert!(check_path("/items/42?page=2").is_ok());
/// assert!(check_path("/a b").unwrap_err().to_string().contains("%20"));
/// ```
pub fn check_path(path: &str) -> Result<(), UrlError> {
    if !path.starts_with('/') {
        return Err(UrlError::NotAbsolutePath);
    }
    check_chars(path)
}

/// Checks a path that may also be an absolute `http(s)://` URL.
pub fn check_path_or_url(path: &str) -> Result<(), UrlError> {
    if path.starts_with("http://") || path.starts_with("https://") {
        let u = parse_base_url(path)?;
        if u.rest.is_empty() {
            return Ok(());
        }
        // `http://h?q` has a query and no path: fine for a request, like `/?q`.
        return if u.rest.starts_with('/') {
            check_path(u.rest)
        } else {
            check_chars(u.rest)
        };
    }
    check_path(path)
}

/// Only visible ASCII: whitespace, control characters and raw non-ASCII cannot go on a
/// request line.
fn check_chars(s: &str) -> Result<(), UrlError> {
    for (at, b) in s.bytes().enumerate() {
        let (what, hint) = match b {
            b' ' => ("a space", "write it as %20"),
            b'\t' | b'\n' | b'\r' => ("a tab or line break", "e.g. %09, %0A"),
            0..=0x1f | 0x7f => ("a control character", "as %XX"),
            0x80.. => ("a non-ASCII character", "as UTF-8 bytes, %XX each"),
            _ => continue,
        };
        return Err(UrlError::BadChar { what, at, hint });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_that_do_not_parse_are_errors_never_a_default() {
        for (url, port) in [
            ("http://127.0.0.1:99999/", "99999"),
            ("http://127.0.0.1:65536", "65536"),
            ("http://127.0.0.1:abc/", "abc"),
            ("http://127.0.0.1:-1/", "-1"),
            ("http://127.0.0.1:0/", "0"),
            ("http://127.0.0.1:+80/", "+80"),
            ("http://[::1]:70000/", "70000"),
        ] {
            assert_eq!(
                parse_base_url(url),
                Err(UrlError::BadPort(port.into())),
                "{url}"
            );
        }
        assert_eq!(
            parse_base_url("http://127.0.0.1:/"),
            Err(UrlError::EmptyPort)
        );
        assert_eq!(
            parse_base_url("http://::1:80/"),
            Err(UrlError::UnbracketedIpv6)
        );
    }

    #[test]
    fn good_urls_split_into_their_parts() {
        let u = parse_base_url("https://user:pw@example.com:8443/api?x=1").unwrap();
        assert!(u.https);
        assert_eq!(u.host, "example.com");
        assert_eq!(u.port, 8443);
        assert_eq!(u.authority, "example.com:8443");
        assert_eq!(u.rest, "/api?x=1");
        let u = parse_base_url("http://[::1]:65535").unwrap();
        assert_eq!((u.host, u.port, u.rest), ("::1", 65535, ""));
        assert_eq!(parse_base_url("http://h").unwrap().port, 80);
        assert_eq!(parse_base_url("https://h/").unwrap().port, 443);
    }

    #[test]
    fn schemes_hosts_and_characters_are_checked() {
        assert_eq!(parse_base_url("localhost:80"), Err(UrlError::NoScheme));
        assert_eq!(
            parse_base_url("ftp://x"),
            Err(UrlError::BadScheme("ftp".into()))
        );
        assert_eq!(parse_base_url("http://"), Err(UrlError::NoHost));
        assert_eq!(parse_base_url("http:///a"), Err(UrlError::NoHost));
        assert_eq!(parse_base_url("http://:80/"), Err(UrlError::NoHost));
        assert!(matches!(
            parse_base_url("http://h/a b"),
            Err(UrlError::BadChar { at: 10, .. })
        ));
    }

    #[test]
    fn paths_are_checked() {
        assert!(check_path("/").is_ok());
        assert!(check_path("/{{setup.id}}?q=%20").is_ok());
        assert_eq!(check_path("items"), Err(UrlError::NotAbsolutePath));
        let e = check_path("/a b").unwrap_err().to_string();
        assert_eq!(e, "a space at byte 2: percent-encode it (write it as %20)");
        assert!(check_path("/caf\u{e9}").is_err());
        assert!(check_path("/a\tb").is_err());
        assert!(check_path_or_url("http://h:8080/x").is_ok());
        assert!(check_path_or_url("http://h?q=1").is_ok());
        assert_eq!(check_path_or_url("http://"), Err(UrlError::NoHost));
        assert_eq!(
            check_path_or_url("http://h:99999/"),
            Err(UrlError::BadPort("99999".into()))
        );
    }
}
