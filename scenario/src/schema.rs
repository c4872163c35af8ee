//! A scenario file's text as read: the TOML tables and fields, before any check.

use crate::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileSpec {
    pub(crate) host: Option<Spanned<String>>,
    pub(crate) http: Option<Spanned<HttpSpec>>,
    pub(crate) load: Option<Spanned<LoadSpec>>,
    #[serde(default)]
    pub(crate) setup: Vec<Spanned<RequestSpec>>,
    #[serde(default)]
    pub(crate) teardown: Vec<Spanned<RequestSpec>>,
    pub(crate) users: Option<Spanned<Vec<Spanned<UserSpec>>>>,
    #[serde(default)]
    pub(crate) scenarios: Vec<Spanned<scenarios::ScenarioSpec>>,
    #[serde(default)]
    pub(crate) thresholds: Vec<Spanned<ThresholdSpec>>,
    #[serde(default)]
    pub(crate) data: Vec<Spanned<data::DataSpec>>,
    #[serde(default)]
    pub(crate) metrics: Vec<Spanned<feeds::MetricSpec>>,
}

/// A threshold in the file: the flag's expression, alone or as `{ expr = "..." }`.
#[derive(Deserialize)]
#[serde(
    untagged,
    expecting = "expected a threshold as --threshold takes it, e.g. \"p95<300ms\", or a table with one key, expr = \"p95<300ms\""
)]
pub(crate) enum ThresholdSpec {
    Expr(String),
    Table(ThresholdTable),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ThresholdTable {
    pub(crate) expr: String,
}

/// `[http]`: the HTTP users' settings.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HttpSpec {
    pub(crate) timeout: Option<Spanned<String>>,
    pub(crate) max_retries: Option<Spanned<u32>>,
    pub(crate) verify_ssl: Option<bool>,
    pub(crate) max_redirects: Option<Spanned<u32>>,
    pub(crate) max_response_body: Option<Spanned<SizeSpec>>,
    /// PEM files, relative to the scenario file.
    pub(crate) client_cert: Option<Spanned<String>>,
    pub(crate) client_key: Option<Spanned<String>>,
    /// HTTP/2 without TLS, by prior knowledge.
    pub(crate) h2c: Option<bool>,
}

/// A size: bytes, or a string with a unit (`"64MiB"`).
#[derive(Deserialize)]
#[serde(
    untagged,
    expecting = "expected a size: a number of bytes or a string such as \"10MiB\""
)]
pub(crate) enum SizeSpec {
    Bytes(u64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoadSpec {
    // Wider than any valid count, so a huge one gets the limit's message.
    pub(crate) users: Option<Spanned<u64>>,
    pub(crate) spawn_rate: Option<Spanned<f64>>,
    pub(crate) run_time: Option<Spanned<String>>,
    pub(crate) stages: Option<Spanned<Vec<Spanned<StageSpec>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StageSpec {
    pub(crate) duration: Spanned<String>,
    pub(crate) target: Spanned<u64>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(
    untagged,
    expecting = "expected seconds (a number, e.g. 0.5), a range of seconds [min, max], e.g. [0.5, 1.5], { pacing = SECONDS } or { throughput = TASKS_PER_SECOND }"
)]
pub(crate) enum WaitSpec {
    Fixed(f64),
    Range([f64; 2]),
    Paced(PacedWait),
}

/// `{ pacing = 2.0 }` (a task every 2 s, its own time included) or `{ throughput = 0.5 }`
/// (tasks per second, the same thing as a rate).
#[derive(Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields)]
pub(crate) struct PacedWait {
    pub(crate) pacing: Option<f64>,
    pub(crate) throughput: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserSpec {
    pub(crate) name: Spanned<String>,
    pub(crate) weight: Option<Spanned<u32>>,
    pub(crate) wait_time: Option<Spanned<WaitSpec>>,
    pub(crate) execution_mode: Option<Spanned<String>>,
    pub(crate) max_concurrent_tasks: Option<Spanned<usize>>,
    #[serde(default)]
    pub(crate) headers: BTreeMap<String, Spanned<String>>,
    /// This type's own `timeout`, `max_retries`, `verify_ssl` (over the file's `[http]`).
    pub(crate) http: Option<Spanned<HttpSpec>>,
    pub(crate) tasks: Option<Spanned<Vec<Spanned<RequestSpec>>>>,
}

/// A task of a user, or a setup request: the same fields, checked by role.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RequestSpec {
    pub(crate) name: Option<Spanned<String>>,
    pub(crate) weight: Option<Spanned<u32>>,
    pub(crate) method: Option<Spanned<String>>,
    pub(crate) path: Spanned<String>,
    #[serde(default)]
    pub(crate) headers: BTreeMap<String, Spanned<String>>,
    pub(crate) body: Option<Spanned<String>>,
    pub(crate) json: Option<Spanned<toml::Value>>,
    pub(crate) expect_status: Option<Spanned<u16>>,
    pub(crate) body_contains: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) capture: BTreeMap<String, Spanned<CaptureSpec>>,
    #[serde(default)]
    pub(crate) checks: Vec<Spanned<CheckSpec>>,
    /// Locust's labels (`["slow"]`, which `--tags` select) or k6's key=value tags
    /// (`{ team = "web" }`, on its samples).
    pub(crate) tags: Option<Spanned<toml::Value>>,
    /// The group it is made in (k6's `group`): `checkout`, nested as `checkout::pay`.
    pub(crate) group: Option<Spanned<String>>,
    /// Named metrics it feeds.
    #[serde(default)]
    pub(crate) metrics: Vec<Spanned<feeds::FeedSpec>>,
}

/// Where a capture takes its value: a JSON pointer into the body, `{ header = NAME }`, or
/// `{ regex = "..." }` (its first group, else the whole match).
#[derive(Deserialize, Clone)]
#[serde(
    untagged,
    expecting = "expected a JSON pointer (\"/data/token\"), { header = \"NAME\" } or { regex = \"token=(\\\\w+)\" }"
)]
pub(crate) enum CaptureSpec {
    Pointer(String),
    Header(HeaderCapture),
    Regex(RegexCapture),
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct HeaderCapture {
    pub(crate) header: String,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegexCapture {
    pub(crate) regex: String,
}

/// A checked capture of a task.
#[derive(Clone, Debug)]
pub(crate) enum Capture {
    Json(JsonPointer),
    Header(http::header::HeaderName),
    Regex(regex_lite::Regex),
}

/// A named check of a response (k6's `check`): one of `status`, `header`, `json`,
/// `body_contains` or `regex`, with `equals` for a header's or a JSON value's value.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CheckSpec {
    pub(crate) name: Spanned<String>,
    pub(crate) status: Option<Spanned<u16>>,
    pub(crate) header: Option<Spanned<String>>,
    pub(crate) json: Option<Spanned<String>>,
    pub(crate) body_contains: Option<Spanned<String>>,
    pub(crate) regex: Option<Spanned<String>>,
    pub(crate) equals: Option<Spanned<toml::Value>>,
    /// Also fail the request when the check fails (it only counts otherwise).
    #[serde(default)]
    pub(crate) fail_request: bool,
}

/// A JSON pointer (`/data/items/0/id`), split and unescaped once: looking one up with
/// `Value::pointer` unescapes each part again, a string allocated per part and request.
#[derive(Clone, Debug)]
pub(crate) struct JsonPointer {
    pub(crate) text: String,
    pub(crate) parts: Vec<String>,
}

impl JsonPointer {
    /// `text`, which is empty or starts with `/` (checked with the file).
    pub(crate) fn new(text: &str) -> Self {
        let parts = text
            .split('/')
            .skip(1)
            .map(|p| p.replace("~1", "/").replace("~0", "~"))
            .collect();
        JsonPointer {
            text: text.to_owned(),
            parts,
        }
    }

    /// The value it points at in `v`.
    pub(crate) fn find<'v>(&self, v: &'v serde_json::Value) -> Option<&'v serde_json::Value> {
        self.parts.iter().try_fold(v, |v, part| match v {
            serde_json::Value::Object(o) => o.get(part),
            serde_json::Value::Array(a) => {
                // RFC 6901: a decimal index without leading zeros.
                if !part.bytes().all(|b| b.is_ascii_digit())
                    || (part.len() > 1 && part.starts_with('0'))
                {
                    return None;
                }
                a.get(part.parse::<usize>().ok()?)
            }
            _ => None,
        })
    }
}

impl fmt::Display for JsonPointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A checked named check.
#[derive(Clone, Debug)]
pub(crate) struct NamedCheck {
    pub(crate) name: String,
    pub(crate) what: CheckKind,
    pub(crate) fail_request: bool,
}

#[derive(Clone, Debug)]
pub(crate) enum CheckKind {
    Status(u16),
    Header(http::header::HeaderName, Option<String>),
    Json(JsonPointer, Option<serde_json::Value>),
    BodyContains(String),
    Regex(regex_lite::Regex),
}
