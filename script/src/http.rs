//! `k6/http` requests: the parameters a script gives, checked, and the response it gets
//! back, as k6 shapes it.

use std::collections::BTreeMap;

use aiotest_http_user::HttpClient;
use rquickjs::{Array, Ctx};
use serde::Deserialize;

/// One request, as the script asked for it.
#[derive(Debug)]
pub(crate) struct RequestSpec {
    method: http::Method,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<String>,
    /// The body is a form (an object the script passed): sent as such unless the script
    /// set a content type.
    form: bool,
    /// `tags.name`: what the request is recorded under.
    name: Option<String>,
    tags: Vec<(String, String)>,
    response: ResponseType,
    /// `timeout`: this request's own.
    timeout: Option<std::time::Duration>,
    /// `redirects`: how many this request follows.
    redirects: Option<u32>,
    /// `cookies`: (name, value, replace) sent with this request only.
    cookies: Vec<(String, String, bool)>,
}

/// `responseType`: what the script keeps of the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResponseType {
    Text,
    None,
}

/// `params` as k6 has them; a field k6 has and aiotest does not yet is refused by name.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Params {
    #[serde(default)]
    headers: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    tags: BTreeMap<String, serde_json::Value>,
    response_type: Option<String>,
    timeout: Option<serde_json::Value>,
    redirects: Option<serde_json::Value>,
    cookies: Option<serde_json::Value>,
    auth: Option<serde_json::Value>,
    compression: Option<serde_json::Value>,
    responses_callback: Option<serde_json::Value>,
}

/// A header, tag or similar value as text (`"a"` or `3`; not an object).
fn text(what: &str, v: &serde_json::Value) -> Result<String, String> {
    match v {
        serde_json::Value::String(s) => Ok(s.clone()),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        serde_json::Value::Bool(b) => Ok(b.to_string()),
        other => Err(format!("{what} must be a string or a number, not {other}")),
    }
}

impl RequestSpec {
    /// The URL asked for.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Checks what `http.request(method, url, body, params)` was given.
    pub(crate) fn parse(
        method: &str,
        url: String,
        body: Option<String>,
        form: bool,
        params: Option<&str>,
    ) -> Result<Self, String> {
        let method = http::Method::from_bytes(method.as_bytes())
            .map_err(|_| format!("`{method}` is not an HTTP method"))?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!(
                "`{url}` is not a URL: k6 scripts give whole URLs (http://host/path)"
            ));
        }
        let mut spec = RequestSpec {
            method,
            url,
            headers: Vec::new(),
            body,
            form,
            name: None,
            tags: Vec::new(),
            response: ResponseType::Text,
            timeout: None,
            redirects: None,
            cookies: Vec::new(),
        };
        let Some(params) = params else {
            return Ok(spec);
        };
        let p: Params = serde_json::from_str(params).map_err(|e| format!("params: {e}"))?;
        let unsupported = [
            ("auth", p.auth.is_some()),
            ("compression", p.compression.is_some()),
            ("responseCallback", p.responses_callback.is_some()),
        ];
        if let Some((name, _)) = unsupported.iter().find(|(_, set)| *set) {
            return Err(format!("params.{name} is not supported by aiotest yet"));
        }
        for (k, v) in &p.headers {
            spec.headers
                .push((k.clone(), text(&format!("params.headers.{k}"), v)?));
        }
        for (k, v) in &p.tags {
            let v = text(&format!("params.tags.{k}"), v)?;
            if k == "name" {
                spec.name = Some(v);
            } else {
                spec.tags.push((k.clone(), v));
            }
        }
        spec.timeout = match &p.timeout {
            None => None,
            // k6: a number is milliseconds, a string a duration (`"60s"`).
            Some(serde_json::Value::Number(n)) => match n.as_f64() {
                Some(ms) if ms > 0.0 && ms.is_finite() && ms < 1e12 => {
                    Some(std::time::Duration::from_secs_f64(ms / 1e3))
                }
                _ => {
                    return Err(format!(
                        "params.timeout {n}: give milliseconds, more than 0"
                    ));
                }
            },
            Some(serde_json::Value::String(t)) => match aiotest_core::duration::parse_duration(t) {
                Ok(d) if !d.is_zero() => Some(d),
                Ok(_) => return Err(format!("params.timeout `{t}`: more than 0")),
                Err(e) => return Err(format!("params.timeout `{t}`: {e}")),
            },
            Some(other) => {
                return Err(format!(
                    "params.timeout must be a duration (\"30s\") or milliseconds, not {other}"
                ));
            }
        };
        spec.redirects = match &p.redirects {
            None => None,
            Some(v) => match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
                Some(n) => Some(n),
                None => {
                    return Err(format!(
                        "params.redirects must be a count, 0 or more, not {v}"
                    ));
                }
            },
        };
        if let Some(c) = &p.cookies {
            let serde_json::Value::Object(map) = c else {
                return Err(format!(
                    "params.cookies must be an object of name: value, not {c}"
                ));
            };
            for (name, v) in map {
                let (value, replace) = match v {
                    serde_json::Value::Object(o) => {
                        let value = o.get("value").ok_or_else(|| {
                            format!("params.cookies.{name}: an object needs `value`")
                        })?;
                        if let Some(k) = o.keys().find(|k| *k != "value" && *k != "replace") {
                            return Err(format!(
                                "params.cookies.{name}.{k}: a request's cookie has `value` and `replace`"
                            ));
                        }
                        let replace = match o.get("replace") {
                            None => false,
                            Some(serde_json::Value::Bool(b)) => *b,
                            Some(other) => {
                                return Err(format!(
                                    "params.cookies.{name}.replace must be true or false, not {other}"
                                ));
                            }
                        };
                        (
                            text(&format!("params.cookies.{name}.value"), value)?,
                            replace,
                        )
                    }
                    v => (text(&format!("params.cookies.{name}"), v)?, false),
                };
                if name.is_empty() || name.contains([';', '=', ' ']) || value.contains(';') {
                    return Err(format!("params.cookies: `{name}={value}` is not a cookie"));
                }
                spec.cookies.push((name.clone(), value, replace));
            }
        }
        spec.response = match p.response_type.as_deref() {
            None | Some("text") => ResponseType::Text,
            Some("none") => ResponseType::None,
            Some(other) => {
                return Err(format!(
                    "params.responseType `{other}`: aiotest supports \"text\" and \"none\""
                ));
            }
        };
        Ok(spec)
    }
}

/// What a script gets back from a request (k6's `Response`, without its methods, which
/// the module's JavaScript adds).
#[derive(Debug)]
pub(crate) struct RawResponse {
    status: u16,
    /// The body as received (`None`: `responseType: "none"`).
    body: Option<bytes::Bytes>,
    /// `Name: value` lines, as received (JavaScript shows names as k6 does, when read).
    headers: bytes::Bytes,
    /// blocked, connecting, tls_handshaking, sending, waiting, receiving, duration, ms.
    timings: [f64; 7],
    proto: &'static str,
    error: String,
    error_code: u16,
    url: String,
    method: http::Method,
}

/// Sends `spec` on the VU's client.
pub(crate) async fn send(client: &mut HttpClient, spec: RequestSpec) -> RawResponse {
    let RequestSpec {
        method,
        url,
        headers,
        body,
        form,
        name,
        tags,
        response,
        timeout,
        redirects,
        cookies,
    } = spec;
    let shown_method = method.clone();
    let cookie = request_cookies(client, &url, &headers, cookies);
    let mut b = client.request(method, url.clone());
    if let Some(c) = &cookie {
        b = b.header("cookie", c);
    }
    if let Some(t) = timeout {
        b = b.timeout(t);
    }
    if let Some(n) = redirects {
        b = b.max_redirects(n);
    }
    let has_type = headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
    for (k, v) in &headers {
        if cookie.is_none() || !k.eq_ignore_ascii_case("cookie") {
            b = b.header(k, v);
        }
    }
    if form && !has_type {
        b = b.header("content-type", "application/x-www-form-urlencoded");
    }
    for (k, v) in &tags {
        b = b.tag(k, v);
    }
    if let Some(n) = name {
        b = b.name(n);
    }
    if let Some(body) = body {
        b = b.body(body);
    }
    let r = b.send().await;
    let t = r.timings();
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    let (error, error_code) = match r.error() {
        Some(e) => (
            e.message.clone(),
            e.category.error_code(r.status_code()).unwrap_or(0),
        ),
        None => (String::new(), 0),
    };
    // HTTP/1.1's head as it came; HTTP/2's written out the same way.
    let lines = r.header_block().unwrap_or_else(|| {
        let mut lines = Vec::new();
        r.for_each_header(|k, v| {
            lines.extend_from_slice(k.as_bytes());
            lines.extend_from_slice(b": ");
            lines.extend_from_slice(v);
            lines.extend_from_slice(b"\r\n");
        });
        lines.into()
    });
    RawResponse {
        status: r.status_code(),
        body: match response {
            ResponseType::Text => Some(r.bytes().clone()),
            ResponseType::None => None,
        },
        headers: lines,
        timings: [
            ms(t.blocked()),
            ms(t.connecting()),
            ms(t.tls_handshaking()),
            ms(t.sending()),
            ms(t.waiting()),
            ms(t.receiving()),
            ms(t.duration()),
        ],
        proto: t.proto(),
        error,
        error_code,
        url: client.redirected_to().map_or(url, str::to_owned),
        method: shown_method,
    }
}

/// The `Cookie` header of a request given `cookies` (k6's `params.cookies`): a
/// `Cookie` header the script set, then each cookie given that the jar does not hold
/// for the URL under its name, or that replaces the jar's (`replace: true`). The
/// client merges the jar's behind it, leaving out the names it holds. `None` when no
/// cookie was given.
fn request_cookies(
    client: &mut HttpClient,
    url: &str,
    headers: &[(String, String)],
    cookies: Vec<(String, String, bool)>,
) -> Option<String> {
    if cookies.is_empty() {
        return None;
    }
    let in_jar: Vec<String> = match Place::of(url) {
        Some(p) => client
            .cookies_mut()
            .for_url(&p.host, &p.path, p.https, std::time::SystemTime::now())
            .into_iter()
            .map(|(n, _)| n.to_owned())
            .collect(),
        None => Vec::new(),
    };
    let mut out = headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("cookie"))
        .map(|(_, v)| v.clone())
        .collect::<Vec<_>>()
        .join("; ");
    for (name, value, replace) in cookies {
        if !replace && in_jar.contains(&name) {
            continue;
        }
        if !out.is_empty() {
            out.push_str("; ");
        }
        out.push_str(&name);
        out.push('=');
        out.push_str(&value);
    }
    Some(out)
}

/// A URL's host, path and scheme, as a cookie jar reads them.
pub(crate) struct Place {
    pub(crate) host: String,
    pub(crate) path: String,
    pub(crate) https: bool,
}

impl Place {
    /// `None` for what is not an absolute http(s) URL.
    pub(crate) fn of(url: &str) -> Option<Place> {
        let uri: http::Uri = url.parse().ok()?;
        let https = match uri.scheme_str()? {
            "https" => true,
            "http" => false,
            _ => return None,
        };
        Some(Place {
            host: uri.host()?.to_owned(),
            path: uri.path().to_owned(),
            https,
        })
    }
}

/// Writes `r` into `a`, the VU's one response array, by position, as the module's
/// `Response` constructor reads it (an object literal built in JavaScript has its keys
/// compiled in, and the array is reused, so a response costs no key lookups and no
/// allocation beyond its strings). Headers are one string, split when the script first
/// reads them.
///
/// `last` is what the array holds from the VU's previous response: a field that has not
/// changed is not written again (a VU asking the same URL again and again gets the same
/// status, headers but their date, body and URL; each new JavaScript string costs).
/// `None` for a fresh array.
pub(crate) fn fill_response<'js>(
    ctx: &Ctx<'js>,
    a: &Array<'js>,
    r: RawResponse,
    last: Option<&mut Filled>,
) -> rquickjs::Result<()> {
    let mut fresh = Filled::default();
    let (last, all) = match last {
        Some(l) => {
            let all = !l.set;
            // Until it is all written: a write that fails leaves the array unknown.
            l.set = false;
            (l, all)
        }
        None => (&mut fresh, true),
    };
    let text = |b: &[u8]| match std::str::from_utf8(b) {
        Ok(t) => rquickjs::String::from_str(ctx.clone(), t),
        Err(_) => rquickjs::String::from_str(ctx.clone(), &String::from_utf8_lossy(b)),
    };
    if all || last.status != r.status {
        a.set(0, r.status)?;
    }
    if all || last.body != r.body {
        match &r.body {
            None => a.set(1, rquickjs::Null)?,
            Some(b) => a.set(1, text(b)?)?,
        }
    }
    if all || last.headers != r.headers {
        a.set(2, text(&r.headers)?)?;
    }
    for (i, v) in r.timings.into_iter().enumerate() {
        a.set(3 + i, v)?;
    }
    if all || last.proto != r.proto {
        a.set(10, r.proto)?;
    }
    if all || last.error != r.error {
        a.set(11, r.error.as_str())?;
    }
    if all || last.error_code != r.error_code {
        a.set(12, r.error_code)?;
    }
    if all || last.url != r.url {
        a.set(13, r.url.as_str())?;
    }
    if all || last.method != r.method {
        a.set(14, r.method.as_str())?;
    }
    *last = Filled {
        set: true,
        status: r.status,
        body: r.body,
        headers: r.headers,
        proto: r.proto,
        error: r.error,
        error_code: r.error_code,
        url: r.url,
        method: r.method,
    };
    Ok(())
}

/// What a VU's response array holds (see [`fill_response`]).
#[derive(Default)]
pub(crate) struct Filled {
    set: bool,
    status: u16,
    body: Option<bytes::Bytes>,
    headers: bytes::Bytes,
    proto: &'static str,
    error: String,
    error_code: u16,
    url: String,
    method: http::Method,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_checked_by_name() {
        let ok = RequestSpec::parse(
            "GET",
            "http://127.0.0.1:1/x".into(),
            None,
            false,
            Some(r#"{"headers":{"X-A":"1"},"tags":{"name":"home","page":3}}"#),
        )
        .expect("valid");
        assert_eq!(ok.name.as_deref(), Some("home"));
        assert_eq!(ok.tags, vec![("page".to_owned(), "3".to_owned())]);
        let e = RequestSpec::parse(
            "GET",
            "http://h/".into(),
            None,
            false,
            Some(r#"{"timeuot":"1s"}"#),
        )
        .expect_err("a typo");
        assert!(e.contains("unknown field `timeuot`"), "{e}");
        let e = RequestSpec::parse("GET", "/x".into(), None, false, None).expect_err("relative");
        assert!(e.contains("not a URL"), "{e}");
        let e =
            RequestSpec::parse("G T", "http://h/".into(), None, false, None).expect_err("method");
        assert!(e.contains("not an HTTP method"), "{e}");
    }
}
