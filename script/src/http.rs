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
    jar: Option<serde_json::Value>,
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
        };
        let Some(params) = params else {
            return Ok(spec);
        };
        let p: Params = serde_json::from_str(params).map_err(|e| format!("params: {e}"))?;
        let unsupported = [
            ("timeout", p.timeout.is_some()),
            ("redirects", p.redirects.is_some()),
            ("cookies", p.cookies.is_some()),
            ("jar", p.jar.is_some()),
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
    /// `Name: value` lines, names as k6 shows them.
    headers: String,
    /// blocked, connecting, tls_handshaking, sending, waiting, receiving, duration, ms.
    timings: [f64; 7],
    proto: &'static str,
    error: String,
    error_code: u16,
    url: String,
    method: http::Method,
}

/// Appends `content-type` as k6 shows it: `Content-Type`.
fn push_canonical(out: &mut String, name: &str) {
    let mut up = true;
    for c in name.chars() {
        out.push(if up { c.to_ascii_uppercase() } else { c });
        up = c == '-';
    }
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
    } = spec;
    let shown_method = method.clone();
    let mut b = client.request(method, url.clone());
    let has_type = headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
    for (k, v) in &headers {
        b = b.header(k, v);
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
    let mut lines = String::new();
    r.for_each_header(|k, v| {
        push_canonical(&mut lines, k);
        lines.push_str(": ");
        lines.push_str(&String::from_utf8_lossy(v));
        lines.push('\n');
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
        url,
        method: shown_method,
    }
}

/// Writes `r` into `a`, the VU's one response array, by position, as the module's
/// `Response` constructor reads it (an object literal built in JavaScript has its keys
/// compiled in, and the array is reused, so a response costs no key lookups and no
/// allocation beyond its strings). Headers are one string, split when the script first
/// reads them.
pub(crate) fn fill_response<'js>(
    ctx: &Ctx<'js>,
    a: &Array<'js>,
    r: RawResponse,
) -> rquickjs::Result<()> {
    a.set(0, r.status)?;
    match &r.body {
        None => a.set(1, rquickjs::Null)?,
        Some(b) => {
            let text = match std::str::from_utf8(b) {
                Ok(t) => rquickjs::String::from_str(ctx.clone(), t)?,
                Err(_) => rquickjs::String::from_str(ctx.clone(), &String::from_utf8_lossy(b))?,
            };
            a.set(1, text)?;
        }
    }
    a.set(2, r.headers)?;
    for (i, v) in r.timings.into_iter().enumerate() {
        a.set(3 + i, v)?;
    }
    a.set(10, r.proto)?;
    a.set(11, r.error)?;
    a.set(12, r.error_code)?;
    a.set(13, r.url)?;
    a.set(14, r.method.as_str())?;
    Ok(())
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

    #[test]
    fn header_names_read_as_k6_shows_them() {
        let mut s = String::new();
        push_canonical(&mut s, "content-type");
        s.push(' ');
        push_canonical(&mut s, "x-request-id");
        assert_eq!(s, "Content-Type X-Request-Id");
    }
}
