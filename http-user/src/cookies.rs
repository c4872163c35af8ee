//! A per-user cookie jar: what a browser keeps, enough for load tests.
//!
//! Supported from RFC 6265: `Set-Cookie` name/value, `Domain` (with subdomain matching),
//! host-only cookies, `Path` (with the default path rule), `Secure`, `Max-Age` and
//! `Expires` (IMF-fixdate and the older dashed form). Not supported: `SameSite` (a load
//! test has no cross-site context) and the public-suffix list (the jar never sees
//! third-party domains in a test against your own service).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, PartialEq, Eq)]
struct Cookie {
    name: String,
    value: String,
    domain: String,
    host_only: bool,
    path: String,
    secure: bool,
    expires: Option<SystemTime>,
}

/// The cookies of one user.
#[derive(Debug, Clone, Default)]
pub struct CookieJar {
    cookies: Vec<Cookie>,
}

impl CookieJar {
    /// An empty jar.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of cookies held (expired ones included until next use).
    pub fn len(&self) -> usize {
        self.cookies.len()
    }

    /// Whether the jar is empty.
    pub fn is_empty(&self) -> bool {
        self.cookies.is_empty()
    }

    /// Forgets every cookie.
    pub fn clear(&mut self) {
        self.cookies.clear();
    }

    /// The value of the cookie `name`, whatever its domain and path.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.cookies
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.value.as_str())
    }

    /// Stores (or deletes) a cookie from a `Set-Cookie` header received from `host` for a
    /// request to `request_path`. Malformed headers are ignored, as browsers do.
    pub fn store(&mut self, host: &str, request_path: &str, set_cookie: &str, now: SystemTime) {
        let mut parts = set_cookie.split(';');
        let Some((name, value)) = parts.next().and_then(|nv| nv.split_once('=')) else {
            return;
        };
        let name = name.trim();
        if name.is_empty() {
            return;
        }
        let host = host.to_ascii_lowercase();
        let mut cookie = Cookie {
            name: name.to_owned(),
            value: value.trim().trim_matches('"').to_owned(),
            domain: host.clone(),
            host_only: true,
            path: default_path(request_path).to_owned(),
            secure: false,
            expires: None,
        };
        let mut max_age: Option<i64> = None;
        for attr in parts {
            let (k, v) = attr.split_once('=').unwrap_or((attr, ""));
            let (k, v) = (k.trim(), v.trim());
            if k.eq_ignore_ascii_case("domain") {
                let d = v.trim_start_matches('.').to_ascii_lowercase();
                if d.is_empty() {
                    continue;
                }
                if !domain_matches(&host, &d) {
                    return; // a cookie for another domain: rejected
                }
                cookie.domain = d;
                cookie.host_only = false;
            } else if k.eq_ignore_ascii_case("path") {
                if v.starts_with('/') {
                    cookie.path = v.to_owned();
                }
            } else if k.eq_ignore_ascii_case("secure") {
                cookie.secure = true;
            } else if k.eq_ignore_ascii_case("max-age") {
                max_age = v.parse().ok();
            } else if k.eq_ignore_ascii_case("expires") {
                cookie.expires = parse_http_date(v);
            }
        }
        // Max-Age wins over Expires.
        if let Some(secs) = max_age {
            cookie.expires = Some(if secs <= 0 {
                UNIX_EPOCH
            } else {
                now + Duration::from_secs(secs.unsigned_abs())
            });
        }
        self.cookies.retain(|c| {
            !(c.name == cookie.name && c.domain == cookie.domain && c.path == cookie.path)
        });
        if cookie.expires.is_none_or(|e| e > now) {
            self.cookies.push(cookie);
        }
    }

    /// The cookies a request to `host` and `path` would send, by name and value, in the
    /// order the jar holds them (k6's `jar.cookiesForURL`). Expired ones are forgotten.
    pub fn for_url(
        &mut self,
        host: &str,
        path: &str,
        https: bool,
        now: SystemTime,
    ) -> Vec<(&str, &str)> {
        self.cookies.retain(|c| c.expires.is_none_or(|e| e > now));
        self.cookies
            .iter()
            .filter(|c| c.applies(host, path, https))
            .map(|c| (c.name.as_str(), c.value.as_str()))
            .collect()
    }

    /// Forgets the cookies a request to `host` and `path` would send, or only those named
    /// `name` (k6's `jar.clear(url)` and `jar.delete(url, name)`).
    pub fn remove(&mut self, host: &str, path: &str, https: bool, name: Option<&str>) {
        self.cookies
            .retain(|c| !(c.applies(host, path, https) && name.is_none_or(|n| n == c.name)));
    }

    /// Applies to this jar what changed from `before` to `after` (a copy of `before`
    /// that requests were made with): cookies set or changed there are set here, cookies
    /// gone there are gone here. For requests made side by side on copies of one jar.
    pub fn absorb(&mut self, before: &CookieJar, after: &CookieJar) {
        let same =
            |a: &Cookie, b: &Cookie| a.name == b.name && a.domain == b.domain && a.path == b.path;
        for gone in before
            .cookies
            .iter()
            .filter(|b| !after.cookies.iter().any(|a| same(a, b)))
        {
            self.cookies.retain(|c| !same(c, gone));
        }
        for set in after.cookies.iter().filter(|a| !before.cookies.contains(a)) {
            self.cookies.retain(|c| !same(c, set));
            self.cookies.push(set.clone());
        }
    }

    /// Writes the `Cookie` header value for a request to `host` and `path` into `out`
    /// (cleared first). Returns false when no cookie applies.
    pub fn header_value(
        &mut self,
        host: &str,
        path: &str,
        https: bool,
        now: SystemTime,
        out: &mut String,
    ) -> bool {
        out.clear();
        if self.cookies.is_empty() {
            return false;
        }
        self.cookies.retain(|c| c.expires.is_none_or(|e| e > now));
        for c in &self.cookies {
            if !c.applies(host, path, https) {
                continue;
            }
            if !out.is_empty() {
                out.push_str("; ");
            }
            out.push_str(&c.name);
            out.push('=');
            out.push_str(&c.value);
        }
        !out.is_empty()
    }
}

impl Cookie {
    /// Whether a request to `host` and `path` sends it.
    fn applies(&self, host: &str, path: &str, https: bool) -> bool {
        let domain_ok = if self.host_only {
            host.eq_ignore_ascii_case(&self.domain)
        } else {
            domain_matches(&host.to_ascii_lowercase(), &self.domain)
        };
        domain_ok && path_matches(path, &self.path) && (https || !self.secure)
    }
}

/// RFC 6265 5.1.4: the directory of the request path.
fn default_path(request_path: &str) -> &str {
    let path = request_path.split(['?', '#']).next().unwrap_or("");
    if !path.starts_with('/') {
        return "/";
    }
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

fn domain_matches(host: &str, domain: &str) -> bool {
    host == domain
        || (host.len() > domain.len()
            && host.ends_with(domain)
            && host.as_bytes()[host.len() - domain.len() - 1] == b'.')
}

fn path_matches(request_path: &str, cookie_path: &str) -> bool {
    let request_path = request_path.split(['?', '#']).next().unwrap_or("/");
    request_path == cookie_path
        || (request_path.starts_with(cookie_path)
            && (cookie_path.ends_with('/')
                || request_path.as_bytes().get(cookie_path.len()) == Some(&b'/')))
}

/// Parses `Sun, 06 Nov 1994 08:49:37 GMT` or `Sunday, 06-Nov-94 08:49:37 GMT`.
fn parse_http_date(s: &str) -> Option<SystemTime> {
    let rest = s.split_once(',').map_or(s, |(_, r)| r).trim();
    let mut fields = rest.split([' ', '-']).filter(|f| !f.is_empty());
    let day: u32 = fields.next()?.parse().ok()?;
    let month = match fields.next()?.to_ascii_lowercase().as_str() {
        "jan" => 1,
        "feb" => 2,
        "mar" => 3,
        "apr" => 4,
        "may" => 5,
        "jun" => 6,
        "jul" => 7,
        "aug" => 8,
        "sep" => 9,
        "oct" => 10,
        "nov" => 11,
        "dec" => 12,
        _ => return None,
    };
    let mut year: i64 = fields.next()?.parse().ok()?;
    if year < 100 {
        year += if year < 70 { 2000 } else { 1900 };
    }
    let mut hms = fields.next()?.split(':');
    let h: i64 = hms.next()?.parse().ok()?;
    let m: i64 = hms.next()?.parse().ok()?;
    let sec: i64 = hms.next()?.parse().ok()?;
    if !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    let secs = days_from_civil(year, month, day) * 86_400 + h * 3_600 + m * 60 + sec;
    if secs <= 0 {
        return Some(UNIX_EPOCH);
    }
    Some(UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs()))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn header(jar: &mut CookieJar, host: &str, path: &str, https: bool, now: SystemTime) -> String {
        let mut out = String::new();
        jar.header_value(host, path, https, now, &mut out);
        out
    }

    #[test]
    fn cookies_are_sent_back_by_host_path_and_scheme() {
        let now = at(1_000_000);
        let mut jar = CookieJar::new();
        jar.store("shop.test", "/login", "session=abc; Path=/; HttpOnly", now);
        jar.store("shop.test", "/cart/add", "cart=1", now); // default path /cart
        jar.store("shop.test", "/", "tls=1; Secure", now);
        jar.store("shop.test", "/", "wide=1; Domain=.shop.test", now);
        assert_eq!(
            header(&mut jar, "shop.test", "/", false, now),
            "session=abc; wide=1"
        );
        assert_eq!(
            header(&mut jar, "shop.test", "/cart/view?x", true, now),
            "session=abc; cart=1; tls=1; wide=1"
        );
        assert_eq!(header(&mut jar, "api.shop.test", "/", false, now), "wide=1");
        assert_eq!(header(&mut jar, "other.test", "/", true, now), "");
        assert_eq!(
            header(&mut jar, "shop.test", "/cartoon", false, now),
            "session=abc; wide=1"
        );
        assert_eq!(jar.get("cart"), Some("1"));
    }

    #[test]
    fn a_urls_cookies_are_listed_and_removed_by_url_and_name() {
        let now = at(1_000_000);
        let mut jar = CookieJar::new();
        jar.store("shop.test", "/", "a=1; Path=/", now);
        jar.store("shop.test", "/cart/x", "b=2", now);
        jar.store("shop.test", "/", "gone=1; Max-Age=1", now);
        jar.store("other.test", "/", "c=3", now);
        let later = at(1_000_005);
        assert_eq!(
            jar.for_url("shop.test", "/cart/y", false, later),
            vec![("a", "1"), ("b", "2")]
        );
        assert_eq!(jar.len(), 3, "the expired cookie is forgotten");
        jar.remove("shop.test", "/cart/y", false, Some("a"));
        assert_eq!(
            jar.for_url("shop.test", "/cart/", false, later),
            vec![("b", "2")]
        );
        jar.remove("shop.test", "/", false, None);
        assert_eq!(
            jar.for_url("shop.test", "/cart/", false, later),
            vec![("b", "2")]
        );
        jar.remove("shop.test", "/cart/", false, None);
        assert!(jar.for_url("shop.test", "/cart/", false, later).is_empty());
        assert_eq!(jar.get("c"), Some("3"), "another host's cookie stays");
    }

    #[test]
    fn what_copies_changed_is_absorbed() {
        let now = at(1_000_000);
        let mut jar = CookieJar::new();
        jar.store("shop.test", "/", "keep=1", now);
        jar.store("shop.test", "/", "drop=1", now);
        jar.store("shop.test", "/", "change=1", now);
        let before = jar.clone();
        let (mut one, mut two) = (jar.clone(), jar.clone());
        one.store("shop.test", "/", "drop=; Max-Age=0", now);
        one.store("shop.test", "/", "new=1", now);
        two.store("shop.test", "/", "change=2", now);
        jar.absorb(&before, &one);
        jar.absorb(&before, &two);
        let mut got = jar.for_url("shop.test", "/", false, now);
        got.sort_unstable();
        assert_eq!(got, vec![("change", "2"), ("keep", "1"), ("new", "1")]);
    }

    #[test]
    fn set_cookie_replaces_and_expiry_deletes() {
        let now = at(1_000_000);
        let mut jar = CookieJar::new();
        jar.store("h", "/", "a=1", now);
        jar.store("h", "/", "a=2", now);
        assert_eq!(header(&mut jar, "h", "/", false, now), "a=2");
        jar.store("h", "/", "a=gone; Max-Age=0", now);
        assert!(jar.is_empty());
        jar.store("h", "/", "b=1; Max-Age=60", now);
        assert_eq!(header(&mut jar, "h", "/", false, at(1_000_059)), "b=1");
        assert_eq!(header(&mut jar, "h", "/", false, at(1_000_061)), "");
        jar.store("h", "/", "c=1; Expires=Thu, 01 Jan 1970 00:00:00 GMT", now);
        assert!(jar.get("c").is_none());
        jar.clear();
        assert!(jar.is_empty());
    }

    #[test]
    fn foreign_domains_and_garbage_are_ignored() {
        let now = at(0);
        let mut jar = CookieJar::new();
        jar.store("shop.test", "/", "x=1; Domain=evil.test", now);
        jar.store("shop.test", "/", "no-equals-sign", now);
        jar.store("shop.test", "/", "=value-without-name", now);
        jar.store("shop.test", "/", "", now);
        assert!(jar.is_empty());
    }

    #[test]
    fn http_dates_parse() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(at(784_111_777))
        );
        assert_eq!(
            parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"),
            Some(at(784_111_777))
        );
        assert_eq!(
            parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(at(1_445_412_480))
        );
        assert_eq!(parse_http_date("not a date"), None);
        assert_eq!(parse_http_date("Wed, 41 Oct 2015 07:28:00 GMT"), None);
    }

    #[test]
    fn default_paths() {
        for (req, want) in [
            ("/", "/"),
            ("/a", "/"),
            ("/a/b", "/a"),
            ("/a/b/", "/a/b"),
            ("x", "/"),
            ("/a/b?c=/d", "/a"),
        ] {
            assert_eq!(default_path(req), want, "{req}");
        }
    }
}
