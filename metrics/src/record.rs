//! The request record: what one request contributes to the statistics.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::model::Tags;

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum ErrorCategory {
    /// The connection could not be made (refused, unreachable).
    Connect,
    /// The host name did not resolve.
    Dns,
    /// No (complete) response within the timeout.
    Timeout,
    /// The TLS handshake or certificate check failed.
    Tls,
    /// The connection was reset or closed mid-exchange.
    Reset,
    /// The peer broke the HTTP protocol.
    Protocol,
    /// The response had an error status (or one the request did not expect).
    HttpStatus,
    /// A response check written by the user failed.
    CheckFailed,
    /// Anything else.
    Other,
    /// Still in flight when the run's graceful stop period ended: the request was sent
    /// (or being sent) and no response was complete. Counted as a request and a failure,
    /// with the time it had waited as its duration (a lower bound of its latency).
    Interrupted,
    /// The response's body was larger than the user allows (its declared length, or the
    /// bytes that arrived): the rest was not read and the connection was closed.
    BodyTooLarge,
}

impl ErrorCategory {
    /// How many categories there are.
    pub const COUNT: usize = 11;

    /// Every category, in declaration order (which is also [`index`](Self::index) order).
    pub const ALL: [ErrorCategory; Self::COUNT] = [
        ErrorCategory::Connect,
        ErrorCategory::Dns,
        ErrorCategory::Timeout,
        ErrorCategory::Tls,
        ErrorCategory::Reset,
        ErrorCategory::Protocol,
        ErrorCategory::HttpStatus,
        ErrorCategory::CheckFailed,
        ErrorCategory::Other,
        ErrorCategory::Interrupted,
        ErrorCategory::BodyTooLarge,
    ];

    /// The label used in summaries and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCategory::Connect => "connect",
            ErrorCategory::Dns => "dns",
            ErrorCategory::Timeout => "timeout",
            ErrorCategory::Tls => "tls",
            ErrorCategory::Reset => "reset",
            ErrorCategory::Protocol => "protocol",
            ErrorCategory::HttpStatus => "http_status",
            ErrorCategory::CheckFailed => "check_failed",
            ErrorCategory::Other => "other",
            ErrorCategory::Interrupted => "interrupted",
            ErrorCategory::BodyTooLarge => "body_too_large",
        }
    }

    /// Whether a request that failed this way has a latency that says something of the
    /// target: no for failures before any exchange (connect, DNS, TLS, a request that
    /// could not be sent). Those count as requests and failures and stay out of every
    /// percentile, min, max and mean, so a dead target cannot pass `p95<1ms` on fast
    /// refusals. A timeout and an interrupted request keep the time they waited: a lower
    /// bound of a latency that must show.
    pub const fn has_latency(self) -> bool {
        !matches!(
            self,
            ErrorCategory::Connect | ErrorCategory::Dns | ErrorCategory::Tls | ErrorCategory::Other
        )
    }

    /// k6's `error_code` for a failure of this category, `status` being the response's
    /// status (0 for none): 1100 a DNS failure, 1210 a failed dial, 1220 a reset, 1050 a
    /// timeout, 1300 TLS, 1000 (k6's generic error) a broken protocol, and 1000 + the
    /// status for an error status (`1503`). None for what k6 has no code for: a failed
    /// check, an interrupted request, a body over the limit, an unexpected status under
    /// 400, anything else.
    pub const fn error_code(self, status: u16) -> Option<u16> {
        match self {
            ErrorCategory::Dns => Some(1100),
            ErrorCategory::Connect => Some(1210),
            ErrorCategory::Reset => Some(1220),
            ErrorCategory::Timeout => Some(1050),
            ErrorCategory::Tls => Some(1300),
            ErrorCategory::Protocol => Some(1000),
            ErrorCategory::HttpStatus if status >= 400 && status < 600 => Some(1000 + status),
            _ => None,
        }
    }

    /// Position in [`ErrorCategory::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }

    pub(crate) fn from_index(i: u8) -> Option<Self> {
        Self::ALL.get(usize::from(i)).copied()
    }
}

impl fmt::Display for ErrorCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One request, as the HTTP user (or any other client) reports it. Borrowed, so building
/// one costs nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestRecord<'a> {
    /// The scenario the user belongs to.
    pub scenario: &'a str,
    /// The request's name (explicit, or the path with ids replaced).
    pub name: &'a str,
    /// The HTTP method, upper case.
    pub method: &'a str,
    /// The request's own key=value tags (the group among them), besides the scenario's
    /// and the test's: part of the endpoint it is counted under.
    pub tags: &'a Tags,
    /// The response status, if a response arrived.
    pub status: Option<u16>,
    /// From sending the request to the last byte of the body, in microseconds.
    pub duration_us: u64,
    /// Bytes written to the connection for this request.
    pub bytes_sent: u64,
    /// Bytes read from the connection for this response.
    pub bytes_received: u64,
    /// Why it failed; `None` for a success.
    pub error: Option<ErrorCategory>,
    /// A short message for a failure (kept with bounded cardinality).
    pub message: Option<&'a str>,
    /// When the request was sent, in microseconds since the Unix epoch.
    pub time_us: u64,
    /// 0 for a first attempt, n for the n-th retry of the same request.
    pub attempt: u32,
    /// For a request of an open-model (arrival-rate) iteration: how late the iteration
    /// started after its intended start, µs. Its latency then counts from the intended
    /// start (`duration_us` plus this), and `duration_us` is kept as its service time.
    /// `None` in the closed model.
    pub lateness_us: Option<u64>,
    /// A check of the response ran (k6's checks, Locust's `catch_response`): a failed
    /// one makes the request fail with [`ErrorCategory::CheckFailed`].
    pub checked: bool,
    /// For a closed-model request that never completed (timed out, or interrupted at
    /// the end of the graceful stop), the user's usual time between requests, µs: while
    /// it waited, the user sent none, and the latency percentiles take the samples it
    /// would have taken (HdrHistogram's coordinated-omission correction), so a target
    /// that hangs cannot pass a percentile on the requests made before it hung.
    pub expected_interval_us: Option<u64>,
}

impl<'a> RequestRecord<'a> {
    /// A successful request with everything else zero; set the rest with struct update
    /// syntax or the `with_*` helpers.
    pub fn ok(name: &'a str, method: &'a str, status: u16, duration_us: u64) -> Self {
        RequestRecord {
            scenario: "default",
            name,
            method,
            tags: Tags::none(),
            status: Some(status),
            duration_us,
            bytes_sent: 0,
            bytes_received: 0,
            error: None,
            message: None,
            time_us: 0,
            attempt: 0,
            lateness_us: None,
            checked: false,
            expected_interval_us: None,
        }
    }

    /// The same record, failed with `category` and `message`.
    pub fn failed(mut self, category: ErrorCategory, message: Option<&'a str>) -> Self {
        self.error = Some(category);
        self.message = message;
        self
    }

    /// The same record under `tags`.
    pub fn tagged(mut self, tags: &'a Tags) -> Self {
        self.tags = tags;
        self
    }

    /// The same record at `time_us`.
    pub fn at(mut self, time_us: u64) -> Self {
        self.time_us = time_us;
        self
    }

    /// Whether the request failed.
    pub fn is_failure(&self) -> bool {
        self.error.is_some()
    }

    /// Whether its duration is a latency (or a lower bound of one): false for a request
    /// that failed before any exchange.
    pub fn is_timed(&self) -> bool {
        self.error.is_none_or(ErrorCategory::has_latency)
    }
}
