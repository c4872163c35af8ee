//! `HttpUser` (shared settings) and `HttpClient` (one per virtual user): requests, checks,
//! retries, and a metrics record for every attempt.

use std::borrow::Cow;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use aiotest_core::user::UserContext;
use aiotest_metrics::{
    ErrorCategory, Metric, MetricError, MetricsCollector, Recorder, RequestRecord, Tags,
};
use bytes::Bytes;
use http::header::{
    CONTENT_LENGTH, CONTENT_TYPE, COOKIE, HOST, HeaderName, HeaderValue, SET_COOKIE,
    TRANSFER_ENCODING,
};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, Method, StatusCode, Uri};
use serde::Serialize;
use serde::de::DeserializeOwned;

use aiotest_core::scenario::IterationLateness;
use aiotest_core::stop::StopSignal;

use crate::conn::{Connection, Kind, Origin, connect, tls_config};
use crate::cookies::CookieJar;
use crate::naming::name_for_path;
use crate::target::{Targets, join};
use crate::timer::{CoarseTimer, WallClock};

/// A setting of [`HttpUser`] that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HttpConfigError {
    /// The host is not an absolute `http://` or `https://` URL.
    #[error("host `{host}`: {reason}")]
    BadHost {
        /// The host given.
        host: String,
        /// What is wrong.
        reason: String,
    },
    /// A default header's name or value is not valid HTTP.
    #[error("default header `{name}`: invalid name or value")]
    BadHeader {
        /// The header name given.
        name: String,
    },
    /// A zero timeout.
    #[error("timeout must be longer than zero")]
    ZeroTimeout,
    /// The TLS configuration could not be built.
    #[error("TLS setup failed: {0}")]
    Tls(String),
    /// The client certificate or its key is not usable PEM.
    #[error("client certificate: {0}")]
    ClientCert(String),
    /// A zero response body limit.
    #[error("the response body limit must be at least one byte")]
    ZeroBodyLimit,
    /// A host mapping (`hosts`) that does not read.
    #[error("hosts `{name}` = `{address}`: {reason}")]
    BadHostMapping {
        /// The name mapped.
        name: String,
        /// The address given.
        address: String,
        /// What is wrong.
        reason: String,
    },
}

/// The default limit of a response body: larger ones fail as `body_too_large`.
pub const DEFAULT_MAX_RESPONSE_BODY: u64 = 64 << 20;
/// How many redirects a request follows by default (k6's `maxRedirects`).
pub const DEFAULT_MAX_REDIRECTS: u32 = 10;

/// Retry backoff: the first retry waits about `RETRY_BASE`, each next one twice as long
/// (with full jitter), never more than `RETRY_CAP`.
const RETRY_BASE: Duration = Duration::from_millis(100);
const RETRY_CAP: Duration = Duration::from_secs(5);

struct Settings {
    base: Option<Base>,
    timeout: Duration,
    max_retries: u32,
    default_headers: HeaderMap,
    scenario: Arc<str>,
    reset_connections_per_iteration: bool,
    clear_cookies_per_iteration: bool,
    retry_base: Duration,
    tls: Arc<rustls::ClientConfig>,
    max_body: usize,
    max_redirects: u32,
    /// Where names connect instead of their DNS answer (`resolve`).
    hosts: Arc<Vec<crate::conn::HostMapping>>,
    /// `http://` URLs speak HTTP/2 from the first byte (h2c by prior knowledge).
    h2c: bool,
}

#[derive(Clone)]
pub(crate) struct Base {
    /// Shared with the client's connections to it: a connection is found by address.
    origin: Arc<Origin>,
    /// Path prefix of the host URL, without a trailing slash (often empty).
    prefix: String,
    /// `host[:port]` as written, for the Host header.
    authority: HeaderValue,
    /// The same, for HTTP/2 request URIs.
    uri_authority: Authority,
}

/// The settings of an HTTP user type, as in the seed's `HttpUser`: `host`, `timeout`
/// (30 s), `max_retries` (3), `verify_ssl` (true), plus default headers. Build it once per
/// user type; each virtual user gets its own [`HttpClient`] from [`HttpUser::client`].
///
/// ```
/// use std::time::Duration;
/// use aiotest_http_user::HttpUser;
///
/// let http = HttpUser::builder()
///     .host("http://127.0.0.1:8080")
///     .timeout(Duration::from_secs(5))
///     .header("x-test-run", "nightly")
///     .build()?;
/// # Ok::<(), aiotest_http_user::HttpConfigError>(())
/// ```
#[derive(Clone)]
pub struct HttpUser {
    settings: Arc<Settings>,
}

impl std::fmt::Debug for HttpUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpUser")
            .field("timeout", &self.settings.timeout)
            .field("max_retries", &self.settings.max_retries)
            .finish_non_exhaustive()
    }
}

/// Builds an [`HttpUser`].
#[derive(Debug, Clone)]
pub struct HttpUserBuilder {
    host: Option<String>,
    timeout: Duration,
    max_retries: u32,
    verify_ssl: bool,
    headers: Vec<(String, String)>,
    scenario: String,
    reset_connections_per_iteration: bool,
    clear_cookies_per_iteration: bool,
    retry_base: Duration,
    max_body: u64,
    max_redirects: u32,
    client_cert: Option<(Vec<u8>, Vec<u8>)>,
    hosts: Vec<(String, String)>,
    h2c: bool,
}

impl Default for HttpUserBuilder {
    fn default() -> Self {
        HttpUserBuilder {
            host: None,
            timeout: Duration::from_secs(30),
            max_retries: 3,
            verify_ssl: true,
            headers: Vec::new(),
            scenario: "default".into(),
            reset_connections_per_iteration: false,
            clear_cookies_per_iteration: false,
            retry_base: RETRY_BASE,
            max_body: DEFAULT_MAX_RESPONSE_BODY,
            max_redirects: DEFAULT_MAX_REDIRECTS,
            client_cert: None,
            hosts: Vec::new(),
            h2c: false,
        }
    }
}

impl HttpUserBuilder {
    /// The base URL relative paths are joined to, e.g. `http://127.0.0.1:8080/api`.
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into());
        self
    }

    /// Longest time for one attempt, connecting included (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Retries after the first attempt, for idempotent requests only (default 3).
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }

    /// Whether certificates are checked (default true). False accepts any certificate.
    pub fn verify_ssl(mut self, verify: bool) -> Self {
        self.verify_ssl = verify;
        self
    }

    /// A header sent with every request.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The scenario name recorded with every request (default `default`).
    pub fn scenario(mut self, scenario: impl Into<String>) -> Self {
        self.scenario = scenario.into();
        self
    }

    /// Drop the user's connections at [`HttpClient::end_iteration`] (k6 style).
    pub fn reset_connections_per_iteration(mut self, on: bool) -> Self {
        self.reset_connections_per_iteration = on;
        self
    }

    /// Clear the user's cookies at [`HttpClient::end_iteration`] (k6 style).
    pub fn clear_cookies_per_iteration(mut self, on: bool) -> Self {
        self.clear_cookies_per_iteration = on;
        self
    }

    /// The first retry's backoff (default 100 ms); each next doubles, capped at 5 s.
    pub fn retry_backoff(mut self, base: Duration) -> Self {
        self.retry_base = base;
        self
    }

    /// The largest response body a request accepts (default 64 MiB): a larger one, by
    /// its declared length or by what arrived, fails the request with category
    /// `body_too_large` and closes the connection. No memory is reserved from a length
    /// the server declares.
    pub fn max_response_body(mut self, bytes: u64) -> Self {
        self.max_body = bytes;
        self
    }

    /// How many redirects (301, 302, 303, 307, 308 with a `Location`) a request follows
    /// (default 10; 0 turns following off). Each hop is recorded as a request of its
    /// own; by RFC 9110's rules, a POST goes on as a GET without its body after 301 or
    /// 302, any method but GET and HEAD does after 303, and 307 and 308 keep the method
    /// and body; a hop to another origin drops the `Authorization` and `Cookie` headers.
    pub fn max_redirects(mut self, n: u32) -> Self {
        self.max_redirects = n;
        self
    }

    /// A client certificate for servers that ask for one (mutual TLS): the certificate
    /// chain and its private key, both PEM (PKCS#8, PKCS#1 or SEC1 keys).
    pub fn client_cert_pem(mut self, cert: impl Into<Vec<u8>>, key: impl Into<Vec<u8>>) -> Self {
        self.client_cert = Some((cert.into(), key.into()));
        self
    }

    /// Connects to `address` where a URL names `name` (k6's `hosts`): `name` is a host
    /// (every port) or `host:port`, `address` an IP address (the URL's port) or
    /// `ip:port`. The URL, the `Host` header and TLS keep the name; only where the
    /// connection goes changes, so a test written for a public host runs against a local
    /// stand-in unchanged.
    pub fn resolve(mut self, name: impl Into<String>, address: impl Into<String>) -> Self {
        self.hosts.push((name.into(), address.into()));
        self
    }

    /// Speaks HTTP/2 to `http://` URLs from the connection's first byte (h2c "with prior
    /// knowledge", RFC 9113 3.3), for servers that serve HTTP/2 without TLS; no upgrade
    /// from HTTP/1.1 is tried. `https://` URLs keep choosing by ALPN.
    pub fn http2_prior_knowledge(mut self, on: bool) -> Self {
        self.h2c = on;
        self
    }

    /// Checks the settings and builds the shared TLS configuration.
    pub fn build(self) -> Result<HttpUser, HttpConfigError> {
        if self.timeout.is_zero() {
            return Err(HttpConfigError::ZeroTimeout);
        }
        if self.max_body == 0 {
            return Err(HttpConfigError::ZeroBodyLimit);
        }
        let client_auth = self
            .client_cert
            .as_ref()
            .map(|(cert, key)| crate::conn::client_auth(cert, key))
            .transpose()
            .map_err(HttpConfigError::ClientCert)?;
        let base = self.host.as_deref().map(parse_base).transpose()?;
        let mut default_headers = HeaderMap::new();
        for (name, value) in &self.headers {
            let bad = || HttpConfigError::BadHeader { name: name.clone() };
            let n = HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad())?;
            let v = HeaderValue::from_str(value).map_err(|_| bad())?;
            default_headers.append(n, v);
        }
        let tls = tls_config(self.verify_ssl, client_auth)
            .map_err(|e| HttpConfigError::Tls(e.to_string()))?;
        let hosts = self
            .hosts
            .iter()
            .map(|(n, a)| crate::conn::HostMapping::parse(n, a))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(HttpUser {
            settings: Arc::new(Settings {
                base,
                timeout: self.timeout,
                max_retries: self.max_retries,
                default_headers,
                scenario: self.scenario.into(),
                reset_connections_per_iteration: self.reset_connections_per_iteration,
                clear_cookies_per_iteration: self.clear_cookies_per_iteration,
                retry_base: self.retry_base,
                tls,
                max_body: usize::try_from(self.max_body).unwrap_or(usize::MAX),
                max_redirects: self.max_redirects,
                hosts: Arc::new(hosts),
                h2c: self.h2c,
            }),
        })
    }
}

fn parse_base(host: &str) -> Result<Base, HttpConfigError> {
    let bad = |reason: &str| HttpConfigError::BadHost {
        host: host.to_owned(),
        reason: reason.to_owned(),
    };
    // The shared check first: it refuses a port that does not parse (an `http::Uri` would
    // report none, and the default port would get the load) and characters no request
    // line can carry.
    let checked = aiotest_core::url::parse_base_url(host).map_err(|e| bad(&e.to_string()))?;
    let uri: Uri = host
        .parse()
        .map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
    let authority = uri.authority().ok_or_else(|| bad("it names no host"))?;
    if uri.query().is_some() {
        return Err(bad("it must not have a query string"));
    }
    Ok(Base {
        origin: Arc::new(Origin {
            https: checked.https,
            host: checked.host.to_owned(),
            port: checked.port,
        }),
        prefix: uri.path().trim_end_matches('/').to_owned(),
        authority: HeaderValue::from_str(authority.as_str())
            .map_err(|_| bad("invalid authority"))?,
        uri_authority: authority.clone(),
    })
}

impl HttpUser {
    /// Starts building settings.
    pub fn builder() -> HttpUserBuilder {
        HttpUserBuilder::default()
    }

    /// A client for one virtual user, recording into `recorder`: its own connections and
    /// cookie jar.
    pub fn client(&self, recorder: Recorder) -> HttpClient {
        let base = self.settings.base.clone().map(Arc::new);
        self.client_with_base(recorder, base)
    }

    /// A client for the virtual user of `ctx`, inside a runner: it records into the
    /// recorder the runner put in the context (a further client of the same user gets a
    /// new recorder on the run's collector), and targets the run's host (`--host`) when
    /// there is one, else this user type's. Without either in the context (a factory
    /// called outside a runner), its records are not collected anywhere.
    pub fn client_for(&self, ctx: &UserContext) -> HttpClient {
        let recorder = ctx
            .take::<Recorder>()
            .or_else(|| ctx.get_cloned::<MetricsCollector>().map(|c| c.recorder()))
            .unwrap_or_else(|| {
                tracing::warn!(
                    user = ctx.user_id(),
                    "no metrics recorder in the user context; this user's requests are not counted"
                );
                self.detached_recorder()
            });
        let base = match ctx.host().map(parse_base) {
            Some(Ok(b)) => Some(Arc::new(b)),
            Some(Err(e)) => {
                // Runners check the run's host before any user starts. Should a bad one
                // get here, relative paths fail and are counted: load never goes to a
                // host nobody named.
                tracing::error!("{e}; relative paths of this user fail");
                None
            }
            None => self.settings.base.clone().map(Arc::new),
        };
        let mut client = self.client_with_base(recorder, base);
        if let Some(scenario) = ctx.scenario() {
            client.scenario = Arc::from(scenario);
        }
        client.lateness = ctx.get_cloned::<IterationLateness>();
        client.stop = ctx.get_cloned::<StopSignal>();
        client
    }

    fn detached_recorder(&self) -> Recorder {
        MetricsCollector::with_defaults().recorder()
    }

    fn client_with_base(&self, recorder: Recorder, base: Option<Arc<Base>>) -> HttpClient {
        HttpClient::fresh(&self.settings, recorder, base)
    }
}

impl HttpClient {
    /// A client with nothing behind it yet: no connection, cookie, target or group.
    fn fresh(settings: &Arc<Settings>, recorder: Recorder, base: Option<Arc<Base>>) -> HttpClient {
        HttpClient {
            timing_trends: recorder.timing_trends(),
            timing_tags: TimingTags::default(),
            base,
            scenario: Arc::clone(&settings.scenario),
            lateness: None,
            settings: Arc::clone(settings),
            conns: Vec::new(),
            cookies: CookieJar::new(),
            recorder,
            name_buf: String::with_capacity(64),
            cookie_buf: String::new(),
            rng: aiotest_core::fastrand::Rng::new(),
            retries: 0,
            connections_opened: 0,
            timer: CoarseTimer::new(settings.timeout),
            wall: WallClock::default(),
            targets: Targets::default(),
            stop: None,
            attempt_started: None,
            cadence_us: 0,
            group: Groups::default(),
            redirected_to: None,
        }
    }
}

/// One virtual user's HTTP client: its own keep-alive connections (one per origin) and its
/// own cookie jar, like a browser. Every attempt is recorded into the user's recorder.
pub struct HttpClient {
    settings: Arc<Settings>,
    conns: Vec<(Arc<Origin>, Connection)>,
    cookies: CookieJar,
    recorder: Recorder,
    name_buf: String,
    cookie_buf: String,
    rng: aiotest_core::fastrand::Rng,
    retries: u64,
    connections_opened: u64,
    timer: CoarseTimer,
    wall: WallClock,
    /// Parsed targets and names of the paths this user requested.
    targets: Targets,
    /// The base URL: the run's host if the context gave one, else the settings'.
    base: Option<Arc<Base>>,
    /// The scenario recorded with every request: the runner's, else the settings'.
    scenario: Arc<str>,
    /// In an open-model scenario, how late the current iteration started: latencies then
    /// count from the intended start.
    lateness: Option<IterationLateness>,
    /// The user's graceful stop, inside a runner: no retry starts after it.
    stop: Option<StopSignal>,
    /// When the attempt in flight started.
    attempt_started: Option<Instant>,
    /// The average time between this user's attempts, µs (0 until known).
    cadence_us: u64,
    /// The groups the user is in (k6's `group`).
    group: Groups,
    /// Each response's timing breakdown is kept as k6's trends
    /// ([`aiotest_metrics::MetricsConfig::timing_trends`]).
    timing_trends: bool,
    timing_tags: TimingTags,
    /// Where the last request's redirects led, when it followed any.
    redirected_to: Option<String>,
}

/// The group path a user is in, and what its requests and checks carry for it.
#[derive(Default)]
struct Groups {
    /// `::outer::inner`, empty outside every group.
    path: String,
    /// `{group: path}`, or none outside every group.
    tags: Tags,
    /// Each open group's start and the path's length before it.
    open: Vec<(Instant, usize)>,
}

/// k6's trends of the timing breakdown, in [`Timings`]' order.
/// k6's timing trends, then `http_req_duration` per response (sending + waiting +
/// receiving, as k6 defines it).
fn timing_metrics() -> &'static [Metric; 7] {
    static METRICS: std::sync::OnceLock<[Metric; 7]> = std::sync::OnceLock::new();
    METRICS.get_or_init(|| {
        let t = aiotest_metrics::TIMING_TRENDS;
        [
            t[0],
            t[1],
            t[2],
            t[3],
            t[4],
            t[5],
            aiotest_metrics::HTTP_REQ_DURATION,
        ]
        .map(|n| Metric::time_trend(n).expect("a valid metric name"))
    })
}

/// The trend of group durations (k6's `group_duration`).
fn group_duration() -> &'static Metric {
    static METRIC: std::sync::OnceLock<Metric> = std::sync::OnceLock::new();
    METRIC.get_or_init(|| Metric::time_trend("group_duration").expect("a valid metric name"))
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("connections", &self.conns.len())
            .field("cookies", &self.cookies.len())
            .finish_non_exhaustive()
    }
}

/// How a request went wrong, if it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestError {
    /// The category recorded.
    pub category: ErrorCategory,
    /// What happened.
    pub message: String,
}

/// A response (or the failure to get one). Never an `Err`: a failed request is a
/// measurement, recorded and returned, and the user's task goes on.
#[derive(Debug, Clone)]
pub struct Response {
    status: Option<StatusCode>,
    headers: Headers,
    body: Bytes,
    duration: Duration,
    error: Option<RequestError>,
    attempts: u32,
    timings: Timings,
}

/// Where a request's time went, as k6's `res.timings` has it: `blocked` (resolving the
/// name and waiting for a connection), `connecting` (TCP) and `tls_handshaking` (both
/// non-zero only for the request that opened its connection), `sending` (writing the
/// request), `waiting` (from the request written to the first byte of the answer: the
/// time to first byte) and `receiving` (the rest of the answer). `duration` is sending +
/// waiting + receiving. Kept in whole microseconds; zero for a part that did not happen
/// (a request that failed before its answer has no `receiving`). Over HTTP/2 the request
/// is handed to the connection, not written by the client: its `sending` is 0 and its
/// `waiting` runs to the answer's head.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timings {
    /// blocked, connecting, tls_handshaking, sending, waiting, receiving, in µs.
    us: [u32; 6],
    /// The protocol of the answer: 1 HTTP/1.1, 2 HTTP/2, 0 none.
    proto: u8,
}

impl Timings {
    fn part(&self, i: usize) -> Duration {
        Duration::from_micros(u64::from(self.us[i]))
    }

    /// Resolving and waiting for a connection.
    pub fn blocked(&self) -> Duration {
        self.part(0)
    }

    /// The TCP handshake of the connection this request opened.
    pub fn connecting(&self) -> Duration {
        self.part(1)
    }

    /// The TLS handshake of the connection this request opened.
    pub fn tls_handshaking(&self) -> Duration {
        self.part(2)
    }

    /// Writing the request.
    pub fn sending(&self) -> Duration {
        self.part(3)
    }

    /// The request written to the answer's first byte.
    pub fn waiting(&self) -> Duration {
        self.part(4)
    }

    /// The answer's first byte to its last.
    pub fn receiving(&self) -> Duration {
        self.part(5)
    }

    /// sending + waiting + receiving.
    pub fn duration(&self) -> Duration {
        self.sending() + self.waiting() + self.receiving()
    }

    /// `HTTP/1.1` or `HTTP/2.0` (k6's `proto`), empty without an answer.
    pub fn proto(&self) -> &'static str {
        match self.proto {
            1 => "HTTP/1.1",
            2 => "HTTP/2.0",
            _ => "",
        }
    }
}

/// When an exchange's request was written whole and its answer's first byte came, if
/// known, and its protocol (1 or 2).
type Marks = (Option<Instant>, Option<Instant>, u8);

/// The timing breakdown of an answered attempt that began at `started`, sent its request
/// on a ready connection at `sent` and took `duration` from there; `opening`: how its
/// connection was opened, when this request opened it. Two instant subtractions for a
/// kept-alive request (each costs more than the rest of this together).
fn timings(
    started: Instant,
    sent: Instant,
    duration: Duration,
    opening: Option<&crate::conn::Opening>,
    marks: Marks,
) -> Timings {
    let (written, first_byte, proto) = marks;
    if sent == started && opening.is_none() && written.is_none() && first_byte.is_none() {
        // The common case: a kept-alive connection, a request taken by one write, an
        // answer read whole by one read. All of it was waiting.
        let mut us = [0; 6];
        us[4] = micros(duration);
        return Timings { us, proto };
    }
    let (connecting, tls) = opening.map_or((Duration::ZERO, Duration::ZERO), |o| {
        (o.connecting, o.tls_handshaking)
    });
    let blocked = if sent == started {
        Duration::ZERO
    } else {
        (sent - started).saturating_sub(connecting + tls)
    };
    let sending = written.map_or(Duration::ZERO, |w| w.saturating_duration_since(sent));
    // An answer read whole by one read arrived with its first byte: all of it was waiting.
    let to_first_byte = first_byte.map_or(duration, |f| f.saturating_duration_since(sent));
    Timings {
        us: [
            micros(blocked),
            micros(connecting),
            micros(tls),
            micros(sending),
            micros(to_first_byte.saturating_sub(sending)),
            micros(duration.saturating_sub(to_first_byte)),
        ],
        proto,
    }
}

/// Microseconds, saturating (a part never exceeds the hour a timeout allows).
fn micros(d: Duration) -> u32 {
    // In u64: `as_micros` works in u128, whose division costs more than the rest.
    let us = d
        .as_secs()
        .saturating_mul(1_000_000)
        .saturating_add(u64::from(d.subsec_micros()));
    u32::try_from(us).unwrap_or(u32::MAX)
}

impl Response {
    /// The status, if a response arrived.
    pub fn status(&self) -> Option<StatusCode> {
        self.status
    }

    /// Where its time went (k6's `res.timings`), and its protocol.
    pub fn timings(&self) -> &Timings {
        &self.timings
    }

    /// The status code as a number, 0 when no response arrived.
    pub fn status_code(&self) -> u16 {
        self.status.map_or(0, |s| s.as_u16())
    }

    /// The response headers (empty without a response).
    pub fn headers(&self) -> &HeaderMap {
        self.headers.map()
    }

    /// Calls `f` with each response header's name (lower case over HTTP/2, as received
    /// over HTTP/1.1) and value, in order, without building the [`HeaderMap`] that
    /// [`headers`](Self::headers) builds (a map costs an allocation per header).
    pub fn for_each_header(&self, mut f: impl FnMut(&str, &[u8])) {
        if let Some(map) = self.headers.map.get() {
            for (k, v) in map {
                f(k.as_str(), v.as_bytes());
            }
            return;
        }
        crate::h1::for_each_header(&self.headers.raw, f);
    }

    /// The header lines of an HTTP/1.1 answer as they arrived (`Name: value`, each ending
    /// in CRLF, then an empty line), without copying them; `None` for an HTTP/2 answer
    /// (read [`for_each_header`](Self::for_each_header)) or no answer.
    pub fn header_block(&self) -> Option<Bytes> {
        let raw = &self.headers.raw;
        let start = raw.windows(2).position(|w| w == b"\r\n")? + 2;
        Some(raw.slice(start..))
    }

    /// The body.
    pub fn bytes(&self) -> &Bytes {
        &self.body
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }

    /// The body parsed as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// The last attempt's duration: request sent to last body byte received.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// Why the request failed (transport, status, or check), if it did.
    pub fn error(&self) -> Option<&RequestError> {
        self.error.as_ref()
    }

    /// Whether the request succeeded.
    pub fn is_ok(&self) -> bool {
        self.error.is_none()
    }

    /// How many attempts were made (1 without retries).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }
}

/// A response's headers: an HTTP/1.1 head is kept as it arrived and made into a map the
/// first time anyone asks, so a response nobody inspects costs no map.
#[derive(Debug, Clone, Default)]
struct Headers {
    raw: Bytes,
    map: std::sync::OnceLock<HeaderMap>,
}

impl Headers {
    fn raw(head: Bytes) -> Self {
        Headers {
            raw: head,
            map: std::sync::OnceLock::new(),
        }
    }

    fn parsed(map: HeaderMap) -> Self {
        Headers {
            raw: Bytes::new(),
            map: std::sync::OnceLock::from(map),
        }
    }

    fn map(&self) -> &HeaderMap {
        self.map.get_or_init(|| crate::h1::header_map(&self.raw))
    }
}

type Check = Box<dyn FnOnce(&Response) -> Result<(), String> + Send>;

enum Expect {
    /// Any status below 400.
    Default,
    /// Exactly these.
    Statuses(Vec<u16>),
}

/// A request being built; [`send`](Self::send) runs it.
#[must_use = "a request does nothing until sent"]
pub struct RequestBuilder<'c> {
    client: &'c mut HttpClient,
    method: Method,
    path: Cow<'static, str>,
    query: Option<String>,
    name: Option<Cow<'static, str>>,
    /// Added to the defaults in order. A list, not a `HeaderMap`: most requests add
    /// none, and an empty list costs nothing to make and drop.
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
    expect: Expect,
    check: Option<Check>,
    invalid: Option<String>,
    tags: Tags,
    /// This request's own timeout and redirect limit, over the user type's (boxed:
    /// the builder is moved with every call, and most requests have none).
    own: Option<Box<Own>>,
}

/// A request's own limits, over its user type's.
#[derive(Debug, Clone, Copy, Default)]
struct Own {
    timeout: Option<Duration>,
    max_redirects: Option<u32>,
}

impl<'c> RequestBuilder<'c> {
    /// How long each attempt of this request may take (connecting included), instead of
    /// the user type's [`timeout`](HttpUserBuilder::timeout): k6's `timeout` param.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        if timeout.is_zero() {
            self.invalid = Some("a request's timeout is more than 0".into());
        }
        self.own.get_or_insert_default().timeout = Some(timeout);
        self
    }

    /// How many redirects this request follows, instead of the user type's
    /// [`max_redirects`](HttpUserBuilder::max_redirects) (0: none, the redirect is the
    /// answer): k6's `redirects` param.
    pub fn max_redirects(mut self, n: u32) -> Self {
        self.own.get_or_insert_default().max_redirects = Some(n);
        self
    }

    /// Tags the request with `key=value` (k6's `tags: { key: value }`): it is counted
    /// under its own endpoint row, and thresholds and every output can tell it apart
    /// (`http_req_duration{key:value}`). `name` names the request, as
    /// [`name`](Self::name) does (k6's `tags: { name }`). A tag that breaks the tag rule
    /// (an empty or unprintable key, more than 128 bytes), or one of the system tags
    /// aiotest sets (`scenario`, `method`, `status`, `group`), makes the request fail
    /// unsent, naming it.
    pub fn tag(mut self, key: &str, value: &str) -> Self {
        if key == "name" {
            self.name = Some(Cow::Owned(value.to_owned()));
            return self;
        }
        if matches!(key, "scenario" | "method" | "status" | "group") {
            self.invalid = Some(format!("tag `{key}`: a system tag, set by aiotest"));
            return self;
        }
        if let Err(e) = self.tags.insert(key, value) {
            self.invalid = Some(e.to_string());
        }
        self
    }

    /// Names the request in the statistics (default: the path with ids replaced).
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(n), Ok(v)) => self.headers.push((n, v)),
            _ => self.invalid = Some(format!("invalid header `{name}`")),
        }
        self
    }

    /// Adds query parameters (URL-encoded).
    pub fn query<T: Serialize + ?Sized>(mut self, params: &T) -> Self {
        match serde_urlencoded::to_string(params) {
            Ok(q) if q.is_empty() => {}
            Ok(q) => match &mut self.query {
                Some(existing) => {
                    existing.push('&');
                    existing.push_str(&q);
                }
                None => self.query = Some(q),
            },
            Err(e) => self.invalid = Some(format!("query does not encode: {e}")),
        }
        self
    }

    /// Sends `value` as JSON (sets `Content-Type: application/json`).
    pub fn json<T: Serialize + ?Sized>(mut self, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(v) => {
                self.body = v.into();
                self.set_content_type("application/json");
            }
            Err(e) => self.invalid = Some(format!("JSON body does not encode: {e}")),
        }
        self
    }

    /// Sends `value` as a form (`application/x-www-form-urlencoded`).
    pub fn form<T: Serialize + ?Sized>(mut self, value: &T) -> Self {
        match serde_urlencoded::to_string(value) {
            Ok(v) => {
                self.body = v.into();
                self.set_content_type("application/x-www-form-urlencoded");
            }
            Err(e) => self.invalid = Some(format!("form body does not encode: {e}")),
        }
        self
    }

    fn set_content_type(&mut self, value: &'static str) {
        self.headers.retain(|(n, _)| n != CONTENT_TYPE);
        self.headers
            .push((CONTENT_TYPE, HeaderValue::from_static(value)));
    }

    /// Sends raw bytes.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// The request fails (category `http_status`) unless the status is `status`.
    /// Without it, any status below 400 is a success.
    pub fn expect_status(mut self, status: u16) -> Self {
        match &mut self.expect {
            Expect::Statuses(v) => v.push(status),
            Expect::Default => self.expect = Expect::Statuses(vec![status]),
        }
        self
    }

    /// A check of the response (Locust's `catch_response`): an `Err(message)` marks the
    /// request failed (category `check_failed`) without ending the user's task. It runs
    /// only when the status was as expected.
    pub fn check<F>(mut self, check: F) -> Self
    where
        F: FnOnce(&Response) -> Result<(), String> + Send + 'static,
    {
        self.check = Some(Box::new(check));
        self
    }

    /// Records the request as failed (category `other`, with `message`) without sending
    /// it: for a request that cannot be made as asked, so that it still counts.
    pub fn fail_unsent(mut self, message: impl Into<String>) -> Self {
        self.invalid = Some(message.into());
        self
    }

    /// Sends the request, retrying idempotent ones on connection errors, timeouts and
    /// 502/503/504 and following redirects; every attempt and every hop is recorded.
    /// Never fails: see [`Response::error`].
    pub async fn send(self) -> Response {
        let RequestBuilder {
            client,
            method,
            path,
            query,
            name,
            headers,
            body,
            expect,
            check,
            invalid,
            tags,
            own,
        } = self;
        let max_redirects = match &own {
            None => client.settings.max_redirects,
            Some(own) => own.max_redirects.unwrap_or(client.settings.max_redirects),
        };
        // The group's tag is the client's own: set over a request's tag of that name.
        let tags = if tags.is_empty() {
            None
        } else {
            Some(tags.with(&client.group.tags))
        };
        let plan = Plan {
            tags,
            idempotent: is_idempotent(&method),
            method,
            path,
            query,
            name,
            headers,
            body,
            expect,
            follow: max_redirects > 0,
            strip_credentials: false,
        };
        let timeout = match own {
            None => client.settings.timeout,
            Some(own) => own.timeout.unwrap_or(client.settings.timeout),
        };
        if client.redirected_to.is_some() {
            client.redirected_to = None;
        }
        if let Some(message) = invalid {
            return client.record_unsent(&plan, message);
        }
        let mut hops_left = max_redirects;
        // Should the run cancel this user while an attempt is in flight (the graceful
        // stop period ran out), dropping this future records the attempt as interrupted.
        let mut flight = InFlight {
            client,
            plan,
            armed: false,
        };
        // One loop for retries and redirect hops, so the common case (one attempt) moves
        // its response and measurements as little as possible.
        let mut attempt = 0u32;
        loop {
            flight.armed = true;
            let (mut response, mut meta) = flight.client.attempt(&flight.plan, timeout).await;
            flight.armed = false;
            response.attempts = attempt + 1;
            let client = &mut *flight.client;
            let plan = &flight.plan;
            let retryable = response.error.as_ref().is_some_and(|e| {
                matches!(
                    e.category,
                    ErrorCategory::Connect
                        | ErrorCategory::Dns
                        | ErrorCategory::Timeout
                        | ErrorCategory::Reset
                )
            }) || matches!(response.status_code(), 502..=504);
            if plan.idempotent
                && retryable
                && attempt < client.settings.max_retries
                && !client.is_stopping()
            {
                client.record_attempt(plan, &response, &meta, attempt, false);
                // The backoff is outside every attempt's measured time; no retry starts
                // once the user is stopping, and a back-off ends there.
                let backoff = client.backoff(attempt + 1);
                if !client.back_off(backoff).await {
                    // The last attempt, recorded, is the answer.
                    return response;
                }
                attempt += 1;
                client.retries += 1;
                continue;
            }
            if let Some(next) = meta.location.take() {
                // A redirect followed: this hop is a request of its own.
                client.record_attempt(plan, &response, &meta, attempt, false);
                hops_left -= 1;
                attempt = 0;
                let previous = std::mem::replace(&mut flight.plan, Plan::placeholder());
                flight.plan = previous.redirected(response.status_code(), *next, hops_left > 0);
                continue;
            }
            // The final attempt: the user's check has its say before the record is made,
            // so the request is counted once, with its verdict.
            let checked = response.error.is_none() && check.is_some();
            if checked
                && let Some(check) = check
                && let Err(message) = check(&response)
            {
                response.error = Some(RequestError {
                    category: ErrorCategory::CheckFailed,
                    message,
                });
            }
            client.record_attempt(plan, &response, &meta, attempt, checked);
            if hops_left < max_redirects {
                client.redirected_to = Some(plan.path.as_ref().to_owned());
            }
            return response;
        }
    }
}

/// Whether a request may be sent again without changing what the server holds.
fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS | Method::TRACE
    )
}

/// A request being sent; see [`RequestBuilder::send`].
struct InFlight<'c> {
    client: &'c mut HttpClient,
    plan: Plan,
    /// An attempt is in flight: connecting, sending or waiting for the response.
    armed: bool,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.client.record_interrupted(&self.plan);
        }
    }
}

/// What an attempt measured besides the response itself.
struct Meta {
    sent_at_us: u64,
    bytes_sent: u64,
    bytes_received: u64,
    /// The path's entry in the client's target table, if it has one.
    entry: Option<usize>,
    /// Where a redirect to be followed leads (boxed: most attempts have none, and this
    /// is moved with every response).
    location: Option<Box<Location>>,
}

/// Where a redirect leads.
#[derive(Clone)]
struct Location {
    /// The absolute URL.
    url: String,
    /// Its path and query when it stays on the request's origin.
    same_origin_path: Option<String>,
}

struct Plan {
    method: Method,
    path: Cow<'static, str>,
    query: Option<String>,
    name: Option<Cow<'static, str>>,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
    expect: Expect,
    idempotent: bool,
    /// A redirect in the answer is followed.
    follow: bool,
    /// Sent to another origin than the request's first: no `Authorization` or `Cookie`
    /// header of the request's own or the defaults.
    strip_credentials: bool,
    /// The request's own tags with the group's; `None` for none of its own (the
    /// group's, if any, are the client's).
    tags: Option<Tags>,
}

impl Plan {
    fn placeholder() -> Plan {
        Plan {
            tags: None,
            method: Method::GET,
            path: Cow::Borrowed(""),
            query: None,
            name: None,
            headers: Vec::new(),
            body: Bytes::new(),
            expect: Expect::Default,
            idempotent: true,
            follow: false,
            strip_credentials: false,
        }
    }

    /// The next hop after a `status` redirect to `location`, by RFC 9110's method rules
    /// as browsers apply them: a POST goes on as a GET without its body after 301 or
    /// 302, any method but GET and HEAD does after 303, and 307 and 308 keep both. A hop on the same origin is named by its path, as a
    /// request to that path would be; one to another origin by its URL.
    fn redirected(mut self, status: u16, location: Location, follow: bool) -> Plan {
        let cross_origin = location.same_origin_path.is_none();
        let to_get = match status {
            301 | 302 => self.method == Method::POST,
            303 => self.method != Method::GET && self.method != Method::HEAD,
            _ => false,
        };
        if to_get {
            self.method = Method::GET;
            self.body = Bytes::new();
            self.headers.retain(|(n, _)| {
                n != CONTENT_TYPE && n != CONTENT_LENGTH && n != TRANSFER_ENCODING
            });
        }
        if cross_origin {
            self.strip_credentials = true;
            self.headers
                .retain(|(n, _)| n != http::header::AUTHORIZATION && n != COOKIE);
        }
        self.idempotent = is_idempotent(&self.method);
        self.name = location.same_origin_path.map(|p| {
            let mut name = String::new();
            name_for_path(&p, &mut name);
            Cow::Owned(name)
        });
        self.path = Cow::Owned(location.url);
        self.query = None;
        self.follow = follow;
        self
    }

    /// Whether a header of the defaults goes out with this plan.
    fn sends_default(&self, name: &HeaderName) -> bool {
        !(self.strip_credentials && (name == http::header::AUTHORIZATION || name == COOKIE))
    }
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

impl HttpClient {
    /// A GET request to `path` (relative to the host, or an absolute URL).
    pub fn get(&mut self, path: impl Into<Cow<'static, str>>) -> RequestBuilder<'_> {
        self.request(Method::GET, path)
    }

    /// A POST request.
    pub fn post(&mut self, path: impl Into<Cow<'static, str>>) -> RequestBuilder<'_> {
        self.request(Method::POST, path)
    }

    /// A PUT request.
    pub fn put(&mut self, path: impl Into<Cow<'static, str>>) -> RequestBuilder<'_> {
        self.request(Method::PUT, path)
    }

    /// A PATCH request.
    pub fn patch(&mut self, path: impl Into<Cow<'static, str>>) -> RequestBuilder<'_> {
        self.request(Method::PATCH, path)
    }

    /// A DELETE request.
    pub fn delete(&mut self, path: impl Into<Cow<'static, str>>) -> RequestBuilder<'_> {
        self.request(Method::DELETE, path)
    }

    /// A HEAD request.
    pub fn head(&mut self, path: impl Into<Cow<'static, str>>) -> RequestBuilder<'_> {
        self.request(Method::HEAD, path)
    }

    /// A request with any method.
    pub fn request(
        &mut self,
        method: Method,
        path: impl Into<Cow<'static, str>>,
    ) -> RequestBuilder<'_> {
        RequestBuilder {
            client: self,
            method,
            path: path.into(),
            query: None,
            name: None,
            headers: Vec::new(),
            body: Bytes::new(),
            expect: Expect::Default,
            check: None,
            invalid: None,
            tags: Tags::new(),
            own: None,
        }
    }

    /// The user's cookies.
    pub fn cookies(&self) -> &CookieJar {
        &self.cookies
    }

    /// A client for requests this user makes beside its own (k6's `http.batch`): the
    /// same settings, target, scenario and run signals, its own connections, a copy of
    /// the cookies and a recorder of its own on the same collector, with the same tags.
    pub fn sibling(&self) -> HttpClient {
        let mut c = HttpClient::fresh(&self.settings, self.recorder.sibling(), self.base.clone());
        c.scenario = Arc::clone(&self.scenario);
        c.lateness = self.lateness.clone();
        c.stop = self.stop.clone();
        c.cookies = self.cookies.clone();
        c.same_groups_as(self);
        c
    }

    /// Puts this client in the groups `other` is in (its requests carry their path), as
    /// a [`sibling`](Self::sibling) made earlier follows its user into a group.
    pub fn same_groups_as(&mut self, other: &HttpClient) {
        if self.group.path != other.group.path {
            self.group = Groups {
                path: other.group.path.clone(),
                tags: other.group.tags.clone(),
                open: Vec::new(),
            };
        }
    }

    /// The URL the last request's redirects led to (k6's `res.url` then); `None` when
    /// it followed none.
    pub fn redirected_to(&self) -> Option<&str> {
        self.redirected_to.as_deref()
    }

    /// The user's cookies, to change (k6's `http.cookieJar()`).
    pub fn cookies_mut(&mut self) -> &mut CookieJar {
        &mut self.cookies
    }

    /// Forgets every cookie.
    pub fn clear_cookies(&mut self) {
        self.cookies.clear();
    }

    /// Closes every connection; the next request opens a new one.
    pub fn reset_connections(&mut self) {
        self.conns.clear();
    }

    /// Called at the end of an iteration: applies the per-iteration reset settings, leaves
    /// any group still open (one whose body was cancelled; its run has no duration
    /// sample) and flushes the recorder if its interval is due.
    pub fn end_iteration(&mut self) {
        self.group = Groups::default();
        if self.settings.reset_connections_per_iteration {
            self.reset_connections();
        }
        if self.settings.clear_cookies_per_iteration {
            self.clear_cookies();
        }
        self.recorder.flush_if_due(now_us());
    }

    /// How many attempts were retries.
    pub fn retries(&self) -> u64 {
        self.retries
    }

    /// How many connections this client has opened.
    pub fn connections_opened(&self) -> u64 {
        self.connections_opened
    }

    /// Counts a verdict of the named check `name` and returns `passed` (k6's `check`):
    /// the summary shows each name's passes and failures, and a `checks>99%` threshold
    /// judges them. It does not fail any request; for that, use
    /// [`RequestBuilder::check`].
    ///
    /// ```no_run
    /// # async fn f(client: &mut aiotest_http_user::HttpClient) {
    /// let r = client.get("/api/cart").send().await;
    /// client.check("cart is JSON", r.json::<serde_json::Value>().is_ok());
    /// # }
    /// ```
    pub fn check(&mut self, name: &str, passed: bool) -> bool {
        if self.group.path.is_empty() {
            self.recorder.record_check(name, passed);
        } else {
            // In a group, a check is known by its path, as k6 has it: `::group::name`.
            let path = format!("{}::{name}", self.group.path);
            self.recorder.record_check(&path, passed);
        }
        passed
    }

    /// Runs `body` in the group `name` (k6's `group(name, fn)`): every request and check
    /// made in it carries the tag `group` with the path of the groups it is in
    /// (`::checkout::pay`), and its time is a sample of the `group_duration` trend under
    /// that tag. Groups nest. A name that is empty, holds `::` or breaks the tag rule
    /// is refused and `body` does not run. A group whose body is cancelled (dropped
    /// before it ends) stays open, without a duration sample, until
    /// [`end_iteration`](Self::end_iteration).
    ///
    /// ```no_run
    /// # async fn f(client: &mut aiotest_http_user::HttpClient) -> Result<(), aiotest_metrics::MetricError> {
    /// client
    ///     .group("checkout", |c| {
    ///         Box::pin(async move {
    ///             let r = c.get("/cart").send().await;
    ///             c.check("cart is there", r.status_code() == 200);
    ///         })
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn group<T>(
        &mut self,
        name: &str,
        body: impl for<'a> FnOnce(
            &'a mut HttpClient,
        ) -> Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>,
    ) -> Result<T, MetricError> {
        self.enter_group(name)?;
        let out = body(self).await;
        self.exit_group();
        Ok(out)
    }

    /// Enters the group `name` until [`exit_group`](Self::exit_group): the unscoped form
    /// of [`group`](Self::group), for front ends that walk a plan.
    pub fn enter_group(&mut self, name: &str) -> Result<(), MetricError> {
        if name.is_empty() || name.contains("::") {
            return Err(MetricError::BadTag {
                key: "group".into(),
                reason: "a group name is not empty and holds no `::`",
            });
        }
        let before = self.group.path.len();
        let mut path = String::with_capacity(before + 2 + name.len());
        path.push_str(&self.group.path);
        path.push_str("::");
        path.push_str(name);
        let tags = Tags::from_pairs([("group", path.as_str())])?;
        self.group.open.push((Instant::now(), before));
        self.group.path = path;
        self.group.tags = tags;
        Ok(())
    }

    /// Leaves the innermost group, recording its duration; nothing outside every group.
    pub fn exit_group(&mut self) {
        let Some((started, before)) = self.group.open.pop() else {
            return;
        };
        let ms = started.elapsed().as_secs_f64() * 1_000.0;
        // A duration is finite and at least 0: the trend holds it.
        let _ = self.recorder.add(group_duration(), ms, &self.group.tags);
        self.group.path.truncate(before);
        self.group.tags = if self.group.path.is_empty() {
            Tags::new()
        } else {
            Tags::from_pairs([("group", self.group.path.as_str())]).unwrap_or_default()
        };
    }

    /// The group path the user is in (`::checkout::pay`), empty outside every group.
    pub fn group_path(&self) -> &str {
        &self.group.path
    }

    /// Adds a sample of a named metric under `tags` (k6's `myTrend.add(v, tags)`): it
    /// goes out with this user's requests, into the summary, thresholds
    /// (`orders{shop:eu} count>10`), the JSON export and Prometheus. A value the metric
    /// cannot hold is refused.
    ///
    /// ```no_run
    /// # use aiotest_metrics::{Metric, Tags};
    /// # async fn f(client: &mut aiotest_http_user::HttpClient) -> Result<(), Box<dyn std::error::Error>> {
    /// let cart_total = Metric::trend("cart_total")?;
    /// let r = client.get("/api/cart").send().await;
    /// let total: f64 = r.json::<serde_json::Value>()?["total"].as_f64().unwrap_or(0.0);
    /// client.add(&cart_total, total, &Tags::from_pairs([("shop", "eu")])?)?;
    /// # Ok(()) }
    /// ```
    pub fn add(
        &mut self,
        metric: &aiotest_metrics::Metric,
        value: f64,
        tags: &aiotest_metrics::Tags,
    ) -> Result<(), aiotest_metrics::MetricError> {
        self.recorder.add(metric, value, tags)
    }

    /// The recorder (to flush it, or to record non-HTTP work).
    pub fn recorder(&mut self) -> &mut Recorder {
        &mut self.recorder
    }

    /// Whether the user is stopping (its graceful stop began).
    fn is_stopping(&self) -> bool {
        self.stop.as_ref().is_some_and(StopSignal::is_stopped)
    }

    /// Sleeps `d` unless the user stops first; false if it did.
    async fn back_off(&self, d: Duration) -> bool {
        let mut sleep = Box::pin(tokio::time::sleep(d));
        let Some(stop) = &self.stop else {
            sleep.await;
            return true;
        };
        let mut stopped = std::pin::pin!(stop.stopped());
        std::future::poll_fn(|cx| {
            if stopped.as_mut().poll(cx).is_ready() {
                return std::task::Poll::Ready(false);
            }
            sleep.as_mut().poll(cx).map(|()| !stop.is_stopped())
        })
        .await
    }

    fn backoff(&mut self, attempt: u32) -> Duration {
        let exp = self
            .settings
            .retry_base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(RETRY_CAP);
        // Full jitter: anywhere in [exp/2, exp], so retries of many users spread out.
        exp.mul_f64(0.5 + self.rng.f64() * 0.5)
    }

    /// Resolves the target of `plan`: the base (origin, Host) and the request target
    /// (path and query), with its entry in `targets` when the path is kept there.
    fn resolve<'s>(
        base: Option<&'s Base>,
        targets: &mut Targets,
        plan: &Plan,
    ) -> Result<(Cow<'s, Base>, PathAndQuery, Option<usize>), String> {
        if plan.path.starts_with("http://") || plan.path.starts_with("https://") {
            if plan.query.is_none()
                && let Some((b, target)) = targets.absolute(&plan.path)
            {
                return Ok((Cow::Owned(b.clone()), target.clone(), None));
            }
            let uri: Uri = plan
                .path
                .parse()
                .map_err(|e| format!("bad URL `{}`: {e}", plan.path))?;
            let b = parse_base(&format!(
                "{}://{}",
                uri.scheme_str().unwrap_or("http"),
                uri.authority().map_or("", |a| a.as_str())
            ))
            .map_err(|e| e.to_string())?;
            let path = uri.path_and_query().map_or("/", |p| p.as_str());
            let target = join("", path, plan.query.as_deref())
                .map_err(|e| format!("bad URL `{}`: {e}", plan.path))?;
            if plan.query.is_none() {
                targets.remember_absolute(&plan.path, &b, &target);
            }
            return Ok((Cow::Owned(b), target, None));
        }
        let Some(b) = base else {
            return Err(format!("relative path `{}` but no host is set", plan.path));
        };
        if plan.query.is_none()
            && let Some(i) = targets.index(&b.prefix, &plan.path)
        {
            return Ok((Cow::Borrowed(b), targets.target(i).clone(), Some(i)));
        }
        let target = join(&b.prefix, &plan.path, plan.query.as_deref())
            .map_err(|e| format!("bad path `{}`: {e}", plan.path))?;
        Ok((Cow::Borrowed(b), target, None))
    }

    /// One attempt, measured but not yet recorded.
    async fn attempt(&mut self, plan: &Plan, timeout: Duration) -> (Response, Meta) {
        // One clock read starts the attempt; when a kept-alive connection is ready at
        // once, it is also the moment the request is sent.
        let started = Instant::now();
        let sent_at_us = self.wall.micros_at(started);
        if let Some(before) = self.attempt_started.replace(started) {
            let gap = u64::try_from(started.saturating_duration_since(before).as_micros())
                .unwrap_or(u64::MAX);
            self.cadence_us = match self.cadence_us {
                0 => gap,
                c => c - c / 8 + gap / 8,
            };
        }
        let failed = |category, message: String, duration: Duration, bytes: (u64, u64), entry| {
            (
                Response {
                    status: None,
                    headers: Headers::default(),
                    body: Bytes::new(),
                    duration,
                    error: Some(RequestError { category, message }),
                    attempts: 1,
                    timings: Timings::default(),
                },
                Meta {
                    sent_at_us,
                    bytes_sent: bytes.0,
                    bytes_received: bytes.1,
                    entry,
                    location: None,
                },
            )
        };
        // The base is shared: holding it lets the origin be borrowed, not cloned.
        let shared_base = self.base.clone();
        let (base, target, entry) =
            match HttpClient::resolve(shared_base.as_deref(), &mut self.targets, plan) {
                Ok(t) => t,
                Err(message) => {
                    return failed(ErrorCategory::Other, message, Duration::ZERO, (0, 0), None);
                }
            };
        let origin = &base.origin;
        self.timer.set_timeout(timeout);
        let timed_out = || format!("no complete response within {timeout:?}");

        // A connection found closed before a byte of the request left goes once more on
        // a fresh connection, unrecorded: the server cannot have seen the request.
        let careful = !plan.idempotent;
        let mut fresh_tries = 0;
        loop {
            let (conn_index, sent) = match self.ready_connection(origin, started, careful) {
                Some(i) if fresh_tries == 0 => (i, started),
                _ => {
                    // The slow path (wait, or connect and handshake) is boxed: its
                    // future is large and would otherwise be moved on every request.
                    let deadline = started + timeout;
                    match Box::pin(self.open_connection(origin, deadline, timeout, careful)).await {
                        Ok(i) => (i, Instant::now()),
                        Err(e) => {
                            return failed(e.category, e.message, started.elapsed(), (0, 0), entry);
                        }
                    }
                }
            };
            let (baseline, h2, fresh) = {
                let conn = &self.conns[conn_index].1;
                let fresh = conn.requests == 0;
                // A new connection's handshake bytes belong to the request that opened it.
                let base = if fresh {
                    (0, 0)
                } else {
                    (
                        conn.counters.sent.load(Ordering::Relaxed),
                        conn.counters.received.load(Ordering::Relaxed),
                    )
                };
                (base, conn.is_h2(), fresh)
            };
            let cookie = self.cookie_header(&base.origin, target.as_str(), plan);
            let h2_request = if h2 {
                match self.build_request(plan, &base, target.clone(), cookie) {
                    Ok(r) => Some(r),
                    Err(message) => {
                        return failed(
                            ErrorCategory::Other,
                            message,
                            Duration::ZERO,
                            (0, 0),
                            entry,
                        );
                    }
                }
            } else {
                None
            };
            let conn = &mut self.conns[conn_index].1;
            if let Kind::H1(h1) = &mut conn.kind {
                let cookie = cookie.then_some(self.cookie_buf.as_str());
                encode_h1(
                    &mut h1.write,
                    plan,
                    &base,
                    target.as_str(),
                    &self.settings,
                    cookie,
                );
            }
            self.timer.arm(started);
            let result = {
                // Built in place: the exchange future is large, and pinning a local
                // would copy it.
                let mut exchange = std::pin::pin!(async {
                    match (&mut conn.kind, h2_request) {
                        (Kind::H1(h1), _) => {
                            let body: &[u8] = if crate::h1::coalesces(plan.body.len()) {
                                &[]
                            } else {
                                &plan.body
                            };
                            let raw = h1
                                .exchange(body, plan.method == Method::HEAD, self.settings.max_body)
                                .await?;
                            let status = StatusCode::from_u16(raw.status).map_err(|_| {
                                crate::h1::ExchangeError {
                                    category: ErrorCategory::Protocol,
                                    message: format!("invalid status code {}", raw.status),
                                    unsent: false,
                                }
                            })?;
                            let marks = (h1.written_at, h1.first_byte_at, 1);
                            Ok((
                                status,
                                Headers::raw(raw.head),
                                raw.body,
                                raw.sets_cookie,
                                marks,
                            ))
                        }
                        (Kind::H2(h2), Some(request)) => {
                            let (status, headers, body, sets_cookie, head_at) = h2
                                .exchange(request, plan.body.clone(), self.settings.max_body)
                                .await?;
                            Ok::<_, crate::h1::ExchangeError>((
                                status,
                                Headers::parsed(headers),
                                body,
                                sets_cookie,
                                (None, Some(head_at), 2),
                            ))
                        }
                        (Kind::H2(_), None) => unreachable!("an HTTP/2 request is built"),
                    }
                });
                let timer = &mut self.timer;
                std::future::poll_fn(|cx| timer.poll(cx, exchange.as_mut(), started)).await
            };
            let duration = sent.elapsed();
            conn.requests += 1;
            if let Kind::H1(h1) = &mut conn.kind {
                h1.idle_since = Some(sent + duration);
            }
            let bytes = (
                conn.counters.sent.load(Ordering::Relaxed) - baseline.0,
                conn.counters.received.load(Ordering::Relaxed) - baseline.1,
            );
            let (status, headers, body, sets_cookie, marks) = match result {
                Err(_elapsed) => {
                    // Mid-response: the connection cannot be reused.
                    self.conns.swap_remove(conn_index);
                    return failed(ErrorCategory::Timeout, timed_out(), duration, bytes, entry);
                }
                Ok(Err(e)) => {
                    self.conns.swap_remove(conn_index);
                    // Not one byte of the request left: the server cannot have it.
                    if e.unsent && fresh_tries == 0 {
                        fresh_tries += 1;
                        continue;
                    }
                    return failed(e.category, e.message, duration, bytes, entry);
                }
                Ok(Ok(r)) => r,
            };
            if sets_cookie {
                let now = SystemTime::now();
                for value in headers.map().get_all(SET_COOKIE) {
                    if let Ok(v) = value.to_str() {
                        self.cookies.store(&origin.host, target.as_str(), v, now);
                    }
                }
            }
            let opening = fresh.then_some(&conn.opening);
            let timings = timings(started, sent, duration, opening, marks);
            let code = status.as_u16();
            let location = if plan.follow && matches!(code, 301..=303 | 307 | 308) {
                headers
                    .map()
                    .get(http::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|l| resolve_location(&base, target.as_str(), l))
                    .map(Box::new)
            } else {
                None
            };
            let error = match &plan.expect {
                // A hop to be followed is judged as any request without expectations.
                _ if location.is_some() => None,
                Expect::Default if code >= 400 => Some(format!("HTTP {code}")),
                Expect::Statuses(want) if !want.contains(&code) => {
                    Some(format!("HTTP {code}, expected {want:?}"))
                }
                _ => None,
            };
            return (
                Response {
                    status: Some(status),
                    headers,
                    body,
                    duration,
                    error: error.map(|message| RequestError {
                        category: ErrorCategory::HttpStatus,
                        message,
                    }),
                    attempts: 1,
                    timings,
                },
                Meta {
                    sent_at_us,
                    bytes_sent: bytes.0,
                    bytes_received: bytes.1,
                    entry,
                    location,
                },
            );
        }
    }

    /// The index of a kept-alive connection to `origin` that can take a request now;
    /// `careful`: checked for a close or stray bytes however briefly it was idle.
    #[inline]
    fn ready_connection(
        &mut self,
        origin: &Arc<Origin>,
        now: Instant,
        careful: bool,
    ) -> Option<usize> {
        // A relative path's origin is the base's own: found by address, not compared.
        self.conns
            .iter_mut()
            .position(|(o, c)| (Arc::ptr_eq(o, origin) || o == origin) && c.is_ready(now, careful))
    }

    /// The index of a ready connection to `origin`: a live one once it is ready, else a
    /// new one.
    async fn open_connection(
        &mut self,
        origin: &Arc<Origin>,
        deadline: Instant,
        timeout: Duration,
        careful: bool,
    ) -> Result<usize, crate::conn::ConnectError> {
        if let Some(i) = self.conns.iter().position(|(o, _)| o == origin) {
            let ready = tokio::time::timeout_at(deadline, self.conns[i].1.ready(careful)).await;
            if ready == Ok(true) {
                return Ok(i);
            }
            self.conns.swap_remove(i);
        }
        let conn = match tokio::time::timeout_at(
            deadline,
            connect(
                origin,
                &self.settings.tls,
                &self.settings.hosts,
                self.settings.h2c,
            ),
        )
        .await
        {
            Ok(result) => result?,
            Err(_) => {
                return Err(crate::conn::ConnectError {
                    category: ErrorCategory::Timeout,
                    message: format!(
                        "could not connect to {}:{} within {timeout:?}",
                        origin.host, origin.port
                    ),
                });
            }
        };
        self.connections_opened += 1;
        self.conns.push((Arc::clone(origin), conn));
        Ok(self.conns.len() - 1)
    }

    /// Fills the cookie buffer with the `Cookie` header for a request to `target` on
    /// `origin`: the jar's cookies, merged behind a `Cookie` header the request (or the
    /// defaults) set, whose cookies win over the jar's of the same name. False when the
    /// jar has none for it (a given header then goes as it is).
    #[inline]
    fn cookie_header(&mut self, origin: &Origin, target: &str, plan: &Plan) -> bool {
        !self.cookies.is_empty() && self.jar_cookie_header(origin, target, plan)
    }

    /// [`cookie_header`](Self::cookie_header) for a jar that holds cookies.
    fn jar_cookie_header(&mut self, origin: &Origin, target: &str, plan: &Plan) -> bool {
        if !self.cookies.header_value(
            &origin.host,
            target,
            origin.https,
            SystemTime::now(),
            &mut self.cookie_buf,
        ) {
            return false;
        }
        let given = self
            .settings
            .default_headers
            .get_all(COOKIE)
            .iter()
            .filter(|_| plan.sends_default(&COOKIE))
            .chain(
                plan.headers
                    .iter()
                    .filter(|(n, _)| n == COOKIE)
                    .map(|(_, v)| v),
            );
        let mut explicit = String::new();
        for v in given {
            if let Ok(v) = v.to_str() {
                if !explicit.is_empty() {
                    explicit.push_str("; ");
                }
                explicit.push_str(v.trim());
            }
        }
        if !explicit.is_empty() {
            merge_cookies(&explicit, &mut self.cookie_buf);
        }
        true
    }

    /// The HTTP/2 request for one attempt: the authority goes in the URI
    /// (`:authority`), not in a Host header.
    fn build_request(
        &self,
        plan: &Plan,
        base: &Base,
        target: PathAndQuery,
        cookie: bool,
    ) -> Result<http::Request<()>, String> {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(if base.origin.https {
            Scheme::HTTPS
        } else {
            Scheme::HTTP
        });
        parts.authority = Some(base.uri_authority.clone());
        parts.path_and_query = Some(target);
        let uri = Uri::from_parts(parts).map_err(|e| format!("invalid request URI: {e}"))?;
        let mut request = http::Request::new(());
        *request.method_mut() = plan.method.clone();
        *request.uri_mut() = uri;
        let headers = request.headers_mut();
        if !self.settings.default_headers.is_empty() {
            headers.clone_from(&self.settings.default_headers);
            if plan.strip_credentials {
                headers.remove(http::header::AUTHORIZATION);
                headers.remove(COOKIE);
            }
        }
        for (name, value) in &plan.headers {
            headers.append(name, value.clone());
        }
        if cookie && let Ok(v) = HeaderValue::from_str(&self.cookie_buf) {
            // Holds the given cookies merged with the jar's.
            headers.insert(COOKIE, v);
        }
        Ok(request)
    }

    fn record_name<'a>(
        name_buf: &'a mut String,
        targets: &'a Targets,
        plan: &'a Plan,
        entry: Option<usize>,
    ) -> &'a str {
        match (&plan.name, entry) {
            (Some(n), _) => n,
            (None, Some(i)) => targets.name(i),
            (None, None) => {
                name_for_path(&plan.path, name_buf);
                name_buf
            }
        }
    }

    fn record_unsent(&mut self, plan: &Plan, message: String) -> Response {
        let name = Self::record_name(&mut self.name_buf, &self.targets, plan, None);
        self.recorder.record(&RequestRecord {
            scenario: &self.scenario,
            name,
            method: plan.method.as_str(),
            tags: plan.tags.as_ref().unwrap_or(&self.group.tags),
            status: None,
            duration_us: 0,
            bytes_sent: 0,
            bytes_received: 0,
            error: Some(ErrorCategory::Other),
            message: Some(&message),
            time_us: now_us(),
            attempt: 0,
            lateness_us: None,
            checked: false,
            expected_interval_us: None,
        });
        Response {
            status: None,
            headers: Headers::default(),
            body: Bytes::new(),
            duration: Duration::ZERO,
            timings: Timings::default(),
            error: Some(RequestError {
                category: ErrorCategory::Other,
                message,
            }),
            attempts: 1,
        }
    }

    /// Records an attempt cancelled in flight: a request and a failure, with no duration
    /// (its latency is unknown; the statistics keep it out of every percentile).
    #[cold]
    fn record_interrupted(&mut self, plan: &Plan) {
        // What it waited: a lower bound of its latency.
        let (waited_us, time_us) = match self.attempt_started {
            Some(t) => (
                u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX),
                self.wall.micros_at(t),
            ),
            None => (0, now_us()),
        };
        let lateness_us = self.lateness.as_ref().and_then(IterationLateness::get_us);
        let expected_interval_us = self.cadence();
        let name = Self::record_name(&mut self.name_buf, &self.targets, plan, None);
        self.recorder.record(&RequestRecord {
            scenario: &self.scenario,
            name,
            method: plan.method.as_str(),
            tags: plan.tags.as_ref().unwrap_or(&self.group.tags),
            status: None,
            duration_us: waited_us,
            bytes_sent: 0,
            bytes_received: 0,
            error: Some(ErrorCategory::Interrupted),
            message: Some("still in flight when the run's graceful stop period ended"),
            time_us,
            attempt: 0,
            lateness_us,
            checked: false,
            expected_interval_us,
        });
    }

    /// The user's usual time between requests (an average of the last few), once known.
    fn cadence(&self) -> Option<u64> {
        (self.cadence_us > 0).then_some(self.cadence_us)
    }

    fn record_attempt(
        &mut self,
        plan: &Plan,
        response: &Response,
        meta: &Meta,
        attempt: u32,
        checked: bool,
    ) {
        let tags = plan.tags.as_ref().unwrap_or(&self.group.tags);
        // A kept path without an explicit name or tags has its metrics endpoint
        // remembered.
        let endpoint = match (&plan.name, meta.entry) {
            (None, Some(i)) if tags.is_empty() => {
                let (recorder, scenario) = (&mut self.recorder, &self.scenario);
                Some(self.targets.endpoint(i, &plan.method, |name| {
                    recorder.endpoint(scenario, name, plan.method.as_str(), Tags::none())
                }))
            }
            _ => None,
        };
        let error = response.error.as_ref();
        // A request that timed out kept its user waiting as one cut off does.
        let expected_interval_us = if error.is_some_and(|e| e.category == ErrorCategory::Timeout) {
            self.cadence()
        } else {
            None
        };
        let name = Self::record_name(&mut self.name_buf, &self.targets, plan, meta.entry);
        let record = RequestRecord {
            scenario: &self.scenario,
            name,
            method: plan.method.as_str(),
            tags,
            status: response.status.map(|s| s.as_u16()),
            duration_us: u64::try_from(response.duration.as_micros()).unwrap_or(u64::MAX),
            bytes_sent: meta.bytes_sent,
            bytes_received: meta.bytes_received,
            error: error.map(|e| e.category),
            message: error.map(|e| e.message.as_str()),
            time_us: meta.sent_at_us,
            attempt,
            lateness_us: self.lateness.as_ref().and_then(IterationLateness::get_us),
            checked,
            expected_interval_us,
        };
        match endpoint {
            Some(endpoint) => self.recorder.record_at(endpoint, &record),
            None => self.recorder.record(&record),
        }
        if self.timing_trends {
            let own = plan.tags.as_ref().unwrap_or(&self.group.tags);
            let tags = self
                .timing_tags
                .get(&mut self.recorder, record.name, plan, response, own);
            let t = &response.timings;
            let parts = [
                t.blocked(),
                t.connecting(),
                t.tls_handshaking(),
                t.sending(),
                t.waiting(),
                t.receiving(),
                t.duration(),
            ];
            let ms = |d: Duration| d.as_secs_f64() * 1_000.0;
            let metrics = timing_metrics();
            let samples: [(&Metric, f64); 7] = std::array::from_fn(|i| (&metrics[i], ms(parts[i])));
            // Durations are finite and at least 0: every trend holds them.
            let _ = self
                .recorder
                .add_all_under(&samples, &tags, meta.sent_at_us);
        }
    }
}

/// The tags of a response's timing trends, by request: its own (the group among them),
/// its system tags (name, method, status, proto, expected_response, error_code) and its recorder's,
/// made once per distinct request and outcome, not per response.
#[derive(Default)]
struct TimingTags {
    made: Vec<(TimingKey, Arc<Tags>)>,
    /// The entry replaced next when `made` is full.
    next: usize,
}

/// What a response's timing tags depend on.
#[derive(PartialEq)]
struct TimingKey {
    name: Box<str>,
    method: Method,
    status: u16,
    proto: u8,
    expected: bool,
    error_code: Option<u16>,
    own: Tags,
}

/// Distinct requests and outcomes whose timing tags a client keeps.
const TIMING_TAGS_KEPT: usize = 64;

impl TimingTags {
    fn get(
        &mut self,
        recorder: &mut Recorder,
        name: &str,
        plan: &Plan,
        response: &Response,
        own: &Tags,
    ) -> Arc<Tags> {
        let status = response.status.map_or(0, |s| s.as_u16());
        // As k6 has it: the status was one the request expected (a response whose check
        // failed still had one).
        let expected = response
            .error
            .as_ref()
            .is_none_or(|e| e.category == ErrorCategory::CheckFailed);
        let proto = response.timings.proto;
        let error_code = response
            .error
            .as_ref()
            .and_then(|e| e.category.error_code(status));
        let found = self.made.iter().find(|(k, _)| {
            k.status == status
                && k.expected == expected
                && k.error_code == error_code
                && k.proto == proto
                && *k.name == *name
                && k.method == plan.method
                && k.own == *own
        });
        if let Some((_, tags)) = found {
            return Arc::clone(tags);
        }
        let mut tags = own.clone();
        tags.set_system("name", name);
        tags.set_system("method", plan.method.as_str());
        tags.set_system("status", &status.to_string());
        tags.set_system("proto", response.timings.proto());
        tags.set_system("expected_response", if expected { "true" } else { "false" });
        if let Some(code) = error_code {
            tags.set_system("error_code", &code.to_string());
        }
        let tags = Arc::new(recorder.full_tags(&tags));
        let key = TimingKey {
            name: name.into(),
            method: plan.method.clone(),
            status,
            proto,
            expected,
            error_code,
            own: own.clone(),
        };
        if self.made.len() < TIMING_TAGS_KEPT {
            self.made.push((key, Arc::clone(&tags)));
        } else {
            self.made[self.next] = (key, Arc::clone(&tags));
            self.next = (self.next + 1) % TIMING_TAGS_KEPT;
        }
        tags
    }
}

/// Encodes an HTTP/1.1 request head into `out` (cleared first), with the body behind it
/// when it is small enough to go in the same write. Headers in order: the defaults, the
/// request's own, then `Host` unless one was given, the `Cookie` header (the given one
/// merged with the jar's, in place of the given one) and `Content-Length` unless a
/// length or transfer coding was given.
fn encode_h1(
    out: &mut Vec<u8>,
    plan: &Plan,
    base: &Base,
    target: &str,
    settings: &Settings,
    cookie: Option<&str>,
) {
    fn line(out: &mut Vec<u8>, name: &str, value: &[u8]) {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.clear();
    out.extend_from_slice(plan.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let (mut host, mut length) = (false, false);
    let given = settings
        .default_headers
        .iter()
        .filter(|(n, _)| plan.sends_default(n))
        .chain(plan.headers.iter().map(|(n, v)| (n, v)));
    for (name, value) in given {
        if cookie.is_some() && name == COOKIE {
            continue;
        }
        host |= name == HOST;
        length |= name == CONTENT_LENGTH || name == TRANSFER_ENCODING;
        line(out, name.as_str(), value.as_bytes());
    }
    if !host {
        line(out, "host", base.authority.as_bytes());
    }
    if let Some(cookie) = cookie {
        line(out, "cookie", cookie.as_bytes());
    }
    let body = &plan.body;
    let expects_body = matches!(plan.method, Method::POST | Method::PUT | Method::PATCH);
    if !length && (!body.is_empty() || expects_body) {
        let mut digits = [0u8; 20];
        line(out, "content-length", format_len(body.len(), &mut digits));
    }
    out.extend_from_slice(b"\r\n");
    if crate::h1::coalesces(body.len()) {
        out.extend_from_slice(body);
    }
}

/// Puts the cookies of `explicit` (a `Cookie` header the request set) before those of
/// `jar` (the jar's header, rewritten in place), leaving out the jar's cookies that
/// `explicit` names: a cookie set on the request wins over the jar's.
fn merge_cookies(explicit: &str, jar: &mut String) {
    fn name_of(pair: &str) -> &str {
        pair.split_once('=').map_or(pair, |(n, _)| n).trim()
    }
    let names: Vec<&str> = explicit.split(';').map(name_of).collect();
    let mut merged = explicit.to_owned();
    for pair in jar.split(';').map(str::trim) {
        if pair.is_empty() || names.contains(&name_of(pair)) {
            continue;
        }
        merged.push_str("; ");
        merged.push_str(pair);
    }
    *jar = merged;
}

/// Where a `Location` header leads from the request at `target` on `base`; `None` for a
/// location that cannot be followed.
fn resolve_location(base: &Base, target: &str, location: &str) -> Option<Location> {
    let location = location.trim();
    let location = location.split_once('#').map_or(location, |(l, _)| l);
    let scheme = if base.origin.https { "https" } else { "http" };
    let authority = base.authority.to_str().ok()?;
    let here = format!("{scheme}://{authority}");
    let url = if location.starts_with("http://") || location.starts_with("https://") {
        location.to_owned()
    } else if let Some(rest) = location.strip_prefix("//") {
        format!("{scheme}://{rest}")
    } else if location.starts_with('/') {
        format!("{here}{location}")
    } else {
        let path = target.split_once('?').map_or(target, |(p, _)| p);
        if location.is_empty() {
            format!("{here}{target}")
        } else if location.starts_with('?') {
            format!("{here}{path}{location}")
        } else {
            let dir = path.rfind('/').map_or("/", |i| &path[..=i]);
            format!("{here}{dir}{location}")
        }
    };
    // The same origin: this scheme and authority followed by the path.
    let same_origin_path = url
        .strip_prefix(&here)
        .filter(|rest| rest.is_empty() || rest.starts_with(['/', '?']))
        .map(|rest| {
            if rest.is_empty() {
                "/".to_owned()
            } else {
                rest.to_owned()
            }
        });
    Some(Location {
        url,
        same_origin_path,
    })
}

/// `n` in decimal, written into `buf` without allocating.
fn format_len(mut n: usize, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}
