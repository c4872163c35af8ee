//! Per-endpoint statistics and snapshots: HDR histograms and counters that merge exactly.
//!
//! A [`Snapshot`] is the statistics of some set of requests (one interval of one worker,
//! or a whole run). `merge` adds another snapshot in: it is associative and commutative,
//! and merging the snapshots of any partition of a set of requests gives exactly the
//! snapshot of the whole set. Histograms cross the wire in HDR's compact V2 + deflate form.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

use crate::latencies::Latencies;
use serde::{Deserialize, Serialize};

use crate::iterations::ScenarioStats;
use crate::model::Tags;
use crate::record::{ErrorCategory, RequestRecord};

/// Lowest trackable duration: 1 microsecond.
pub const HISTOGRAM_LOW_US: u64 = 1;
/// Highest trackable duration: one hour, in microseconds. Longer durations are recorded
/// as one hour (and still counted).
pub const HISTOGRAM_HIGH_US: u64 = 3_600_000_000;
/// Significant decimal digits kept: values are exact to 0.1%.
pub const HISTOGRAM_SIGFIG: u8 = 3;
/// Distinct error messages kept per endpoint; the rest are counted under "other".
pub const MAX_ERROR_MESSAGES: usize = 16;
/// Longest error message kept, in bytes; longer ones are cut at a character boundary.
pub const MAX_ERROR_MESSAGE_LEN: usize = 200;

/// A new, empty duration histogram. It starts small and grows up to
/// [`HISTOGRAM_HIGH_US`] as larger values arrive, so an endpoint answering in
/// milliseconds costs tens of kilobytes, not the full hour's range.
pub fn new_histogram() -> Histogram<u64> {
    // `new` fails only for more than 5 significant figures; the lowest value is 1 and the
    // histogram resizes itself as values arrive.
    Histogram::new(HISTOGRAM_SIGFIG).expect("3 significant figures are valid")
}

/// Which endpoint a record belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EndpointKey {
    /// The scenario.
    pub scenario: String,
    /// The request name.
    pub name: String,
    /// The HTTP method.
    pub method: String,
    /// The requests' own key=value tags (the group among them); none for most.
    #[serde(default, skip_serializing_if = "Tags::is_empty")]
    pub tags: Tags,
}

impl EndpointKey {
    /// A key from its parts, without tags.
    pub fn new(scenario: &str, name: &str, method: &str) -> Self {
        Self::tagged(scenario, name, method, Tags::none())
    }

    /// A key from its parts.
    pub fn tagged(scenario: &str, name: &str, method: &str, tags: &Tags) -> Self {
        EndpointKey {
            scenario: scenario.to_owned(),
            name: name.to_owned(),
            method: method.to_owned(),
            tags: tags.clone(),
        }
    }

    /// The name as tables show it: the request name, then its tags as k6 writes a
    /// sub-metric (`/pay {group:::checkout}`) when it has any.
    pub fn label(&self) -> std::borrow::Cow<'_, str> {
        if self.tags.is_empty() {
            std::borrow::Cow::Borrowed(&self.name)
        } else {
            std::borrow::Cow::Owned(format!("{} {}", self.name, self.tags))
        }
    }
}

/// One distinct error message and how often it was seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorMessage {
    /// The failure's category.
    pub category: ErrorCategory,
    /// The message (at most [`MAX_ERROR_MESSAGE_LEN`] bytes).
    pub message: String,
    /// How many failures carried it.
    pub count: u64,
}

/// Error messages with bounded cardinality.
///
/// At most [`MAX_ERROR_MESSAGES`] distinct (category, message) pairs are kept. Which ones
/// is decided by their order (category, then text), not by arrival: "the first N" would
/// depend on the order snapshots are merged in, and merges must be exact in any order.
/// The counts of the others, and of failures without a message, go to `other`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorMessages {
    /// Kept messages, sorted by (category, message).
    pub kept: Vec<ErrorMessage>,
    /// Failures whose message was not kept, or had none.
    pub other: u64,
}

impl ErrorMessages {
    /// Counts `n` failures of `category` with `message`.
    pub fn add(&mut self, category: ErrorCategory, message: Option<&str>, n: u64) {
        let Some(message) = message else {
            self.other += n;
            return;
        };
        let message = truncate(message, MAX_ERROR_MESSAGE_LEN);
        let pos = self
            .kept
            .binary_search_by(|m| (m.category, m.message.as_str()).cmp(&(category, message)));
        match pos {
            Ok(i) => self.kept[i].count += n,
            Err(i) if i < MAX_ERROR_MESSAGES => {
                self.kept.insert(
                    i,
                    ErrorMessage {
                        category,
                        message: message.to_owned(),
                        count: n,
                    },
                );
                if self.kept.len() > MAX_ERROR_MESSAGES {
                    // The largest falls out; its failures are still counted.
                    if let Some(evicted) = self.kept.pop() {
                        self.other += evicted.count;
                    }
                }
            }
            Err(_) => self.other += n,
        }
    }

    /// Adds every count of `other` in.
    pub fn merge(&mut self, other: &ErrorMessages) {
        for m in &other.kept {
            self.add(m.category, Some(&m.message), m.count);
        }
        self.other += other.other;
    }

    /// All failures counted here.
    pub fn total(&self) -> u64 {
        self.other + self.kept.iter().map(|m| m.count).sum::<u64>()
    }
}

/// `s` cut to at most `max` bytes at a character boundary.
pub(crate) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Everything known about one endpoint's requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointStats {
    /// Durations in microseconds.
    pub histogram: Latencies,
    /// Requests made.
    pub requests: u64,
    /// Requests that failed (any category).
    pub failures: u64,
    /// Requests that were retries of an earlier attempt (each attempt is also a request).
    pub retries: u64,
    /// Requests whose response a check judged (failed ones are failures of category
    /// `check_failed`).
    #[serde(default)]
    pub checks: u64,
    /// Failures per category, indexed by [`ErrorCategory::index`].
    pub failures_by_category: [u64; ErrorCategory::COUNT],
    /// Responses per status code, sorted by code. Requests without a response have none.
    pub status_codes: Vec<(u16, u64)>,
    /// Bytes sent.
    pub bytes_sent: u64,
    /// Bytes received.
    pub bytes_received: u64,
    /// Sum of all durations (exact mean = sum / requests).
    pub duration_sum_us: u64,
    /// Shortest duration.
    pub min_us: Option<u64>,
    /// Longest duration.
    pub max_us: Option<u64>,
    /// Time of the first request (µs since the Unix epoch).
    pub first_time_us: Option<u64>,
    /// Time of the last request.
    pub last_time_us: Option<u64>,
    /// Error messages, bounded.
    pub errors: ErrorMessages,
    /// Requests of open-model (arrival-rate) iterations: their plain service time. For
    /// them, `histogram`, `min_us`, `max_us` and `duration_sum_us` count from the
    /// iteration's *intended* start (coordinated-omission corrected); this keeps the time
    /// from sending to the last byte beside it. `None` when no such request was made.
    #[serde(default)]
    pub service: Option<ServiceTime>,
    /// Samples in `histogram` estimated, not measured: the requests users would have
    /// sent while they waited on requests that never completed (see
    /// [`RequestRecord::expected_interval_us`]). They weigh in the percentiles only:
    /// counts, min, max and mean are the measured requests'.
    #[serde(default)]
    pub estimated: u64,
}

/// Estimated samples one request that never completed adds at most: past it, each
/// recorded value stands for several (with its count), so memory and time stay bounded.
const MAX_ESTIMATED_VALUES: u64 = 10_000;

/// Plain service times of open-model requests; see [`EndpointStats::service`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceTime {
    /// Durations from sending to the last byte, µs.
    pub histogram: Latencies,
    /// Their sum.
    pub sum_us: u64,
    /// The longest.
    pub max_us: u64,
}

impl ServiceTime {
    fn record(&mut self, us: u64) {
        let _ = self
            .histogram
            .record(us.clamp(HISTOGRAM_LOW_US, HISTOGRAM_HIGH_US));
        self.sum_us = self.sum_us.saturating_add(us);
        self.max_us = self.max_us.max(us);
    }

    fn merge(&mut self, other: &ServiceTime) {
        self.histogram.merge_from(&other.histogram);
        self.sum_us = self.sum_us.saturating_add(other.sum_us);
        self.max_us = self.max_us.max(other.max_us);
    }

    /// The service time at `quantile`, µs (never above the exact maximum).
    pub fn percentile_us(&self, quantile: f64) -> u64 {
        if self.histogram.is_empty() {
            return 0;
        }
        let q = if quantile.is_nan() {
            0.5
        } else {
            quantile.clamp(0.0, 1.0)
        };
        self.histogram.value_at_quantile(q).min(self.max_us)
    }

    /// The mean service time, µs.
    pub fn mean_us(&self) -> f64 {
        match self.histogram.len() {
            0 => 0.0,
            n => self.sum_us as f64 / n as f64,
        }
    }
}

impl Default for EndpointStats {
    fn default() -> Self {
        EndpointStats {
            histogram: Latencies::new(),
            estimated: 0,
            requests: 0,
            failures: 0,
            retries: 0,
            checks: 0,
            failures_by_category: [0; ErrorCategory::COUNT],
            status_codes: Vec::new(),
            bytes_sent: 0,
            bytes_received: 0,
            duration_sum_us: 0,
            min_us: None,
            max_us: None,
            first_time_us: None,
            last_time_us: None,
            errors: ErrorMessages::default(),
            service: None,
        }
    }
}

fn min_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) | (None, x) => x,
    }
}

fn max_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    a.max(b)
}

impl EndpointStats {
    /// Counts one request.
    pub fn record(&mut self, r: &RequestRecord<'_>) {
        self.record_parts(
            r.status,
            r.duration_us,
            r.lateness_us,
            r.bytes_sent,
            r.bytes_received,
            r.error,
            r.message,
            r.time_us,
        );
        if r.attempt > 0 {
            self.retries += 1;
        }
        self.checks += u64::from(r.checked);
        if let Some(e) = r.expected_interval_us
            && r.lateness_us.is_none()
        {
            self.record_omitted(r.duration_us, e);
        }
    }

    /// Adds the samples a user waiting `waited_us` on a request that never completed
    /// would have taken, one every `interval_us`: `waited - interval`, `waited - 2 *
    /// interval`, ... down to one interval (HdrHistogram's
    /// `recordValueWithExpectedInterval`).
    pub(crate) fn record_omitted(&mut self, waited_us: u64, interval_us: u64) {
        if interval_us == 0 || waited_us <= interval_us {
            return;
        }
        let n = (waited_us - 1) / interval_us;
        let groups = n.min(MAX_ESTIMATED_VALUES);
        for g in 0..groups {
            let (first, last) = (g * n / groups + 1, (g + 1) * n / groups);
            let mid = first + (last - first) / 2;
            let v = waited_us
                .saturating_sub(mid.saturating_mul(interval_us))
                .clamp(HISTOGRAM_LOW_US, HISTOGRAM_HIGH_US);
            let _ = self.histogram.record_n(v, last - first + 1);
        }
        self.estimated += n;
    }

    #[allow(clippy::too_many_arguments)] // the fields of a record, unpacked
    pub(crate) fn record_parts(
        &mut self,
        status: Option<u16>,
        duration_us: u64,
        lateness_us: Option<u64>,
        bytes_sent: u64,
        bytes_received: u64,
        error: Option<ErrorCategory>,
        message: Option<&str>,
        time_us: u64,
    ) {
        self.requests += 1;
        // A request that failed before any exchange, or was interrupted, has no latency:
        // it counts, but times nothing.
        if error.is_none_or(ErrorCategory::has_latency) {
            // An open-model request's latency counts from its intended start; its plain
            // service time goes beside it.
            let latency = match lateness_us {
                Some(late) => {
                    self.service
                        .get_or_insert_with(ServiceTime::default)
                        .record(duration_us);
                    duration_us.saturating_add(late)
                }
                None => duration_us,
            };
            let d = latency.clamp(HISTOGRAM_LOW_US, HISTOGRAM_HIGH_US);
            // Cannot fail: d is within the bounds and the histogram grows on demand.
            let _ = self.histogram.record(d);
            self.duration_sum_us = self.duration_sum_us.saturating_add(latency);
            self.min_us = min_opt(self.min_us, Some(latency));
            self.max_us = max_opt(self.max_us, Some(latency));
        }
        self.first_time_us = min_opt(self.first_time_us, Some(time_us));
        self.last_time_us = max_opt(self.last_time_us, Some(time_us));
        self.bytes_sent += bytes_sent;
        self.bytes_received += bytes_received;
        if let Some(code) = status {
            self.add_status(code, 1);
        }
        if let Some(category) = error {
            self.failures += 1;
            self.failures_by_category[category.index()] += 1;
            self.errors.add(category, message, 1);
        }
    }

    fn add_status(&mut self, code: u16, n: u64) {
        match self.status_codes.binary_search_by_key(&code, |&(c, _)| c) {
            Ok(i) => self.status_codes[i].1 += n,
            Err(i) => self.status_codes.insert(i, (code, n)),
        }
    }

    /// Adds `other` in, exactly.
    pub fn merge(&mut self, other: &EndpointStats) {
        self.histogram.merge_from(&other.histogram);
        self.estimated += other.estimated;
        self.requests += other.requests;
        self.failures += other.failures;
        self.retries += other.retries;
        self.checks += other.checks;
        for (a, b) in self
            .failures_by_category
            .iter_mut()
            .zip(other.failures_by_category)
        {
            *a += b;
        }
        for &(code, n) in &other.status_codes {
            self.add_status(code, n);
        }
        self.bytes_sent += other.bytes_sent;
        self.bytes_received += other.bytes_received;
        self.duration_sum_us = self.duration_sum_us.saturating_add(other.duration_sum_us);
        self.min_us = min_opt(self.min_us, other.min_us);
        self.max_us = max_opt(self.max_us, other.max_us);
        self.first_time_us = min_opt(self.first_time_us, other.first_time_us);
        self.last_time_us = max_opt(self.last_time_us, other.last_time_us);
        self.errors.merge(&other.errors);
        if let Some(theirs) = &other.service {
            self.service
                .get_or_insert_with(ServiceTime::default)
                .merge(theirs);
        }
    }

    /// The duration at `quantile` (0.0 to 1.0), in microseconds; 0 when empty.
    ///
    /// Within 0.1% of the true value, and never outside the exact min and max: HDR answers
    /// with the top of a value's bucket, which could otherwise put p99 above the maximum.
    pub fn percentile_us(&self, quantile: f64) -> u64 {
        if self.timed() == 0 {
            return 0;
        }
        let q = if quantile.is_nan() {
            0.5
        } else {
            quantile.clamp(0.0, 1.0)
        };
        let v = self.histogram.value_at_quantile(q);
        match (self.min_us, self.max_us) {
            (Some(lo), Some(hi)) if lo <= hi => v.clamp(lo, hi),
            _ => v,
        }
    }

    /// The exact mean duration in microseconds, over the timed requests; 0 when none.
    pub fn mean_us(&self) -> f64 {
        match self.timed() {
            0 => 0.0,
            n => self.duration_sum_us as f64 / n as f64,
        }
    }

    /// Requests with a duration: all but those that failed before any exchange.
    pub fn timed(&self) -> u64 {
        self.histogram.len().saturating_sub(self.estimated)
    }

    /// Requests still in flight when the run's graceful stop ended.
    pub fn interrupted(&self) -> u64 {
        self.failures_by_category[ErrorCategory::Interrupted.index()]
    }
}

/// Statistics of a set of requests, per endpoint, with the time span they cover.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Start of the covered span (µs since the Unix epoch), if known.
    pub start_us: Option<u64>,
    /// End of the covered span.
    pub end_us: Option<u64>,
    /// Statistics per endpoint, ordered by key.
    #[serde(with = "crate::stats::endpoint_list")]
    pub endpoints: BTreeMap<EndpointKey, EndpointStats>,
    /// Requests counted here that belong to an earlier interval: they arrived after that
    /// interval had closed (behind a request that took longer than the close waits, or
    /// in a worker's delayed batch). Counted in every total, once.
    #[serde(default)]
    pub late: u64,
    /// Named metrics (counters, gauges, rates, trends) by name and tags.
    #[serde(default)]
    pub metrics: crate::MetricSet,
}

impl Snapshot {
    /// An empty snapshot.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one request.
    pub fn record(&mut self, r: &RequestRecord<'_>) {
        let key = EndpointKey::tagged(r.scenario, r.name, r.method, r.tags);
        self.endpoints.entry(key).or_default().record(r);
    }

    /// Its histograms held without full counts arrays where few slots are filled (see
    /// [`Latencies::compact`]): for a snapshot kept, not read again soon.
    pub fn compact(&mut self) {
        for stats in self.endpoints.values_mut() {
            stats.histogram.compact();
            if let Some(service) = &mut stats.service {
                service.histogram.compact();
            }
        }
        self.metrics.compact();
    }

    /// Adds `other` in, exactly; the span grows to cover both.
    pub fn merge(&mut self, other: &Snapshot) {
        self.start_us = min_opt(self.start_us, other.start_us);
        self.end_us = max_opt(self.end_us, other.end_us);
        self.late += other.late;
        for (key, stats) in &other.endpoints {
            match self.endpoints.get_mut(key) {
                Some(mine) => mine.merge(stats),
                None => {
                    self.endpoints.insert(key.clone(), stats.clone());
                }
            }
        }
        self.metrics.merge(&other.metrics);
    }

    /// Iterations per scenario: read from the iteration metrics of the named model
    /// (see [`crate::iterations`]).
    pub fn scenarios(&self) -> BTreeMap<String, ScenarioStats> {
        ScenarioStats::read_all(&self.metrics)
    }

    /// Counts `stats` as iterations of `scenario` (tagged with it alone).
    pub fn count_iterations(&mut self, scenario: &str, stats: &ScenarioStats) {
        let mut tags = crate::Tags::new();
        tags.set_checked("scenario", scenario);
        stats.file_into(&mut self.metrics, &tags);
    }

    /// Named checks' verdicts by path (`::group::name` for one made in a group, its name
    /// otherwise), every scenario's together: read from the rate
    /// [`checks`](crate::checks::CHECKS) of the named metrics.
    pub fn checks(&self) -> BTreeMap<String, crate::CheckStats> {
        let mut out: BTreeMap<String, crate::CheckStats> = BTreeMap::new();
        let Some(by_tags) = self.metrics.series.get(crate::checks::CHECKS) else {
            return out;
        };
        for (tags, series) in by_tags {
            let (Some(name), crate::model::Values::Rate { nonzero }) =
                (tags.get("check"), &series.values)
            else {
                continue;
            };
            let path = match tags.get("group") {
                Some(group) => format!("{group}::{name}"),
                None => name.to_owned(),
            };
            let c = out.entry(path).or_default();
            c.passes += nonzero;
            c.fails += series.samples.saturating_sub(*nonzero);
        }
        out
    }

    /// Counts verdicts of the check at `path` (see [`checks`](Self::checks)) under
    /// `tags` (its recorder's; `check` and `group` are added).
    pub fn count_check(&mut self, path: &str, tags: &crate::Tags, passes: u64, fails: u64) {
        let tags = crate::checks::check_tags(tags, path);
        self.metrics.merge_series(
            crate::checks::CHECKS,
            &tags,
            &crate::checks::verdicts(passes, fails),
        );
    }

    /// Whether no request (and no iteration) is counted.
    pub fn is_empty(&self) -> bool {
        self.endpoints.values().all(|e| e.requests == 0) && self.metrics.is_empty()
    }

    /// All endpoints merged into one (the "Total" row of a summary).
    pub fn total(&self) -> EndpointStats {
        let mut total = EndpointStats::default();
        for stats in self.endpoints.values() {
            total.merge(stats);
        }
        total
    }
}

/// Serde for histograms: HDR V2 as bytes (its counts are already run-length and
/// variable-length encoded). Written without deflate: compressing every histogram of
/// every batch cost the workers and the master more CPU than the bytes it saved (a
/// 50-endpoint batch encoded in 1.37 ms with deflate). Read with or without it.
pub(crate) mod histogram_v2 {
    use std::fmt;

    use hdrhistogram::Histogram;
    #[cfg(test)]
    use hdrhistogram::serialization::Deserializer as HdrDe;
    use hdrhistogram::serialization::{Serializer as _, V2Serializer};
    use serde::de::{self, SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(h: &Histogram<u64>, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = Vec::new();
        V2Serializer::new()
            .serialize(h, &mut buf)
            .map_err(|e| serde::ser::Error::custom(format!("histogram: {e:?}")))?;
        s.serialize_bytes(&buf)
    }

    /// The plain HDR V2 bytes of a histogram, inflated if they came deflated, with their
    /// header checked.
    pub(crate) fn checked_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let bytes = d.deserialize_bytes(BytesVisitor)?;
        match bytes.first_chunk::<4>().map(|c| u32::from_be_bytes(*c)) {
            Some(V2_DEFLATE_COOKIE) => checked_inflate(&bytes),
            _ => checked_v2(&bytes).map(|()| bytes),
        }
        .map_err(|e| de::Error::custom(format!("histogram {e}")))
    }

    #[cfg(test)]
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Histogram<u64>, D::Error> {
        let plain = checked_bytes(d)?;
        let mut h: Histogram<u64> = HdrDe::new()
            .deserialize(&mut plain.as_slice())
            .map_err(|e| de::Error::custom(format!("histogram: {e:?}")))?;
        h.auto(true);
        Ok(h)
    }

    /// The most a histogram may inflate to. Ours, at 3 significant digits over the whole
    /// `u64` range, stay under 600 kB even with every bucket filled.
    pub(crate) const MAX_INFLATED: usize = 4 << 20;
    /// The most significant digits accepted: what aiotest records with.
    const MAX_DIGITS: u32 = super::HISTOGRAM_SIGFIG as u32;
    const V2_COOKIE: u32 = 0x1c84_9313;
    const V2_DEFLATE_COOKIE: u32 = 0x1c84_9314;

    /// Inflates an HDR V2 deflate histogram and checks its header before any histogram
    /// is built from it. hdrhistogram trusts the declared sizes: a garbage or hostile
    /// snapshot declaring a 4 GB payload or 5-digit precision over the whole range would
    /// make it allocate that much before failing. Here the inflated size is capped, the
    /// declared payload must be present, and the precision must be aiotest's.
    pub(crate) fn checked_inflate(bytes: &[u8]) -> Result<Vec<u8>, String> {
        use std::io::Read as _;
        let (cookie, rest) = split_u32(bytes)?;
        if cookie != V2_DEFLATE_COOKIE {
            return Err(format!(
                "is not HDR V2 deflate (cookie {cookie:#010x}, expected {V2_DEFLATE_COOKIE:#010x})"
            ));
        }
        let (len, rest) = split_u32(rest)?;
        let Some(compressed) = rest.get(..len as usize) else {
            return Err(format!(
                "declares {len} compressed bytes but carries {}",
                rest.len()
            ));
        };
        let mut inflated = Vec::new();
        flate2::read::ZlibDecoder::new(compressed)
            .take(MAX_INFLATED as u64 + 1)
            .read_to_end(&mut inflated)
            .map_err(|e| format!("does not inflate: {e}"))?;
        if inflated.len() > MAX_INFLATED {
            return Err(format!("inflates to more than {MAX_INFLATED} bytes"));
        }
        checked_v2(&inflated).map_err(|e| format!("inflates to a histogram that {e}"))?;
        Ok(inflated)
    }

    /// Checks an HDR V2 histogram's header before hdrhistogram sees it: the cookie, a
    /// declared payload that is present, and aiotest's precision.
    pub(crate) fn checked_v2(bytes: &[u8]) -> Result<(), String> {
        if bytes.len() > MAX_INFLATED {
            return Err(format!("is more than {MAX_INFLATED} bytes"));
        }
        let (cookie, rest) = split_u32(bytes)?;
        if cookie != V2_COOKIE {
            return Err(format!(
                "is not HDR V2 (cookie {cookie:#010x}, expected {V2_COOKIE:#010x})"
            ));
        }
        let (payload, rest) = split_u32(rest)?;
        // Then: normalizing offset (4), digits (4), lowest (8), highest (8), ratio (8).
        let carried = rest.len().saturating_sub(32);
        if payload as usize > carried {
            return Err(format!(
                "declares a {payload}-byte payload but carries {carried}"
            ));
        }
        let (_offset, rest) = split_u32(rest)?;
        let (digits, _) = split_u32(rest)?;
        if digits > MAX_DIGITS {
            return Err(format!(
                "has {digits} significant digits, more than the {MAX_DIGITS} aiotest records"
            ));
        }
        Ok(())
    }

    fn split_u32(b: &[u8]) -> Result<(u32, &[u8]), String> {
        match b.split_first_chunk::<4>() {
            Some((head, rest)) => Ok((u32::from_be_bytes(*head), rest)),
            None => Err("is cut short in its header".to_owned()),
        }
    }

    /// Accepts bytes (MessagePack bin) or a sequence of numbers (JSON).
    struct BytesVisitor;

    impl<'de> Visitor<'de> for BytesVisitor {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an HDR V2 histogram as bytes")
        }

        fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }

        fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
            while let Some(b) = seq.next_element::<u8>()? {
                out.push(b);
            }
            Ok(out)
        }
    }
}

/// Serde for the endpoint map: a list of entries, so keys need not be strings (JSON).
pub(crate) mod endpoint_list {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::{EndpointKey, EndpointStats};

    #[derive(Serialize)]
    struct EntryRef<'a> {
        key: &'a EndpointKey,
        stats: &'a EndpointStats,
    }

    #[derive(Deserialize)]
    struct Entry {
        key: EndpointKey,
        stats: EndpointStats,
    }

    pub(crate) fn serialize<S: Serializer>(
        map: &BTreeMap<EndpointKey, EndpointStats>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(map.iter().map(|(key, stats)| EntryRef { key, stats }))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<EndpointKey, EndpointStats>, D::Error> {
        let entries = Vec::<Entry>::deserialize(d)?;
        let mut map = BTreeMap::new();
        for e in entries {
            // A repeated key (only in a hand-made snapshot) merges rather than overwrites.
            match map.get_mut(&e.key) {
                Some(existing) => EndpointStats::merge(existing, &e.stats),
                None => {
                    map.insert(e.key, e.stats);
                }
            }
        }
        Ok(map)
    }
}

#[cfg(test)]
mod tests;
