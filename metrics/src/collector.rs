//! Local recording and collection: per-user [`Recorder`]s batch records and flush them into
//! a shared [`MetricsCollector`], which files each record under the interval of its own
//! time and hands the intervals it holds to the sink when asked.
//!
//! Intervals are a grid of `flush_interval` from the Unix epoch (interval `k` covers
//! `[k * step, (k + 1) * step)` µs), the same in every process: a record sent in second
//! 12 is in interval 12 whenever its batch arrives, on a worker as on its master, so a
//! run's series matches the target's own per-second log.
//!
//! The request path is [`Recorder::record`]: one hash lookup of the endpoint (an id is
//! assigned the first time a recorder sees it), a push into a pre-allocated buffer, and a
//! length check. No lock, no channel, no allocation. Every `batch_size` records, or when
//! a record is `flush_interval` newer than the last flush, the recorder takes the
//! collector's lock once and merges its whole batch into the open interval. Dropping a
//! recorder flushes it, so the last records of a stopping user are never lost.
//!
//! Closed intervals wait in a queue of at most `buffer_size` for the sink. A sink that
//! falls behind does not make the queue grow: the two oldest intervals merge into one.
//! Memory stays bounded and every count survives; only time resolution is lost.

use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hashbrown::{Equivalent, HashMap};

use crate::event::RequestMetricsEvent;
use crate::iterations::ScenarioStats;
use crate::model::{Metric, MetricError, Tags};
use crate::record::{ErrorCategory, RequestRecord};
use crate::stats::{EndpointKey, EndpointStats, MAX_ERROR_MESSAGE_LEN, Snapshot, truncate};

/// Distinct failure messages one recorder remembers; later new ones are counted without
/// their text (under "other").
const MAX_RECORDER_MESSAGES: usize = 64;
const NO_MESSAGE: u16 = u16::MAX;
const NO_CATEGORY: u8 = u8::MAX;
const NO_STATUS: u16 = 0;
const NO_LATENESS: u64 = u64::MAX;

/// Source of [`Shared::id`].
static NEXT_COLLECTOR_ID: AtomicU64 = AtomicU64::new(0);

/// An endpoint (scenario, name, method) a [`Recorder`] has resolved, to record against
/// with [`Recorder::record_at`] without looking the three strings up again. Valid for
/// every recorder of the collector it came from; elsewhere it is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    collector: u64,
    id: u32,
}

/// Batching settings, named as in AioTest's `MetricsCollector`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Records a recorder buffers before it flushes (default 256).
    pub batch_size: usize,
    /// Longest time records wait in a recorder, and the length of an interval snapshot
    /// (default 1 s).
    pub flush_interval: Duration,
    /// Closed intervals kept for a slow sink before the oldest merge (default 16).
    pub buffer_size: usize,
    /// Distinct endpoints (scenario, name, method) kept apart (default 1,000). Past it, a
    /// new name is counted under [`OTHER_ENDPOINT`] with its scenario and method, and one
    /// warning names the first folded ones: a task that puts a unique id in every path
    /// would otherwise make one endpoint (and one histogram) per request.
    pub max_endpoints: usize,
    /// Keep k6's trends of each response's timing breakdown (`http_req_blocked`,
    /// `http_req_connecting`, `http_req_tls_handshaking`, `http_req_sending`,
    /// `http_req_waiting`, `http_req_receiving`) under the request's system tags
    /// (default off: six samples a request are not free). An HTTP client reads it from
    /// its recorder ([`Recorder::timing_trends`]).
    pub timing_trends: bool,
}

/// The name new request names are counted under once [`MetricsConfig::max_endpoints`]
/// is reached.
pub const OTHER_ENDPOINT: &str = "(other)";

/// The most `max_endpoints` may be.
pub const MAX_ENDPOINTS_LIMIT: usize = 100_000;

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            batch_size: 256,
            flush_interval: Duration::from_secs(1),
            buffer_size: 16,
            max_endpoints: 1_000,
            timing_trends: false,
        }
    }
}

/// A batching setting that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `batch_size` is 0.
    #[error("metrics batch_size must be at least 1")]
    ZeroBatchSize,
    /// `buffer_size` is 0.
    #[error("metrics buffer_size must be at least 1")]
    ZeroBufferSize,
    /// `flush_interval` is under a millisecond.
    #[error("metrics flush_interval must be at least 1ms, got {0:?}")]
    FlushIntervalTooShort(Duration),
    /// `max_endpoints` is 0 or over [`MAX_ENDPOINTS_LIMIT`].
    #[error("metrics max_endpoints must be from 1 to 100000, got {0}")]
    MaxEndpoints(usize),
}

impl MetricsConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.batch_size == 0 {
            return Err(ConfigError::ZeroBatchSize);
        }
        if self.buffer_size == 0 {
            return Err(ConfigError::ZeroBufferSize);
        }
        if self.flush_interval < Duration::from_millis(1) {
            return Err(ConfigError::FlushIntervalTooShort(self.flush_interval));
        }
        if self.max_endpoints == 0 || self.max_endpoints > MAX_ENDPOINTS_LIMIT {
            return Err(ConfigError::MaxEndpoints(self.max_endpoints));
        }
        Ok(())
    }
}

/// Where closed interval snapshots go: the local aggregate, or a transport to a master.
pub trait MetricsSink {
    /// Takes one closed interval.
    fn accept(&mut self, interval: Snapshot);
}

impl MetricsSink for Vec<Snapshot> {
    fn accept(&mut self, interval: Snapshot) {
        self.push(interval);
    }
}

/// What arrived for one interval of the grid since the collector last handed it on.
#[derive(Default)]
struct Bucket {
    /// By endpoint id.
    current: Vec<Option<EndpointStats>>,
    /// Named metrics (iterations and checks among them).
    metrics: crate::MetricSet,
}

struct State {
    keys: Vec<EndpointKey>,
    /// The same keys, shared with the recorders that use them: one copy of an endpoint's
    /// strings per collector, not one per user.
    owned: Vec<Arc<OwnedKey>>,
    index: std::collections::HashMap<EndpointKey, u32>,
    /// What arrived since the last close, by grid interval.
    buckets: std::collections::BTreeMap<u64, Bucket>,
    pending: VecDeque<Snapshot>,
    merged_intervals: u64,
    /// Request names folded into [`OTHER_ENDPOINT`], the first few (for the warning).
    folded: Vec<String>,
}

/// Names listed in the warning about folded endpoints.
const FOLDED_SHOWN: usize = 3;

impl State {
    /// The bucket of grid interval `k`, with a slot for every known endpoint.
    fn bucket(&mut self, k: u64) -> &mut Bucket {
        let slots = self.keys.len();
        let b = self.buckets.entry(k).or_default();
        if b.current.len() < slots {
            b.current.resize_with(slots, || None);
        }
        b
    }
}

fn now_wall_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

struct Shared {
    /// Unique per collector: tells an [`Endpoint`] of this collector from another's.
    id: u64,
    config: MetricsConfig,
    state: Mutex<State>,
    event: RequestMetricsEvent,
    /// The names admitted, frozen when `max_endpoints` is reached: recorders then fold
    /// any other name without taking the lock or remembering it, and learn an admitted
    /// one they had not met yet.
    admitted: std::sync::OnceLock<hashbrown::HashSet<OwnedKey>>,
}

impl Shared {
    /// The state, even if a thread panicked while holding the lock: the state is only
    /// ever changed by complete merges, so it is consistent at every unlock.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Collects the batches of every recorder; see the [module docs](self). Cheap to clone.
#[derive(Clone)]
pub struct MetricsCollector {
    shared: Arc<Shared>,
    /// Tags every named-metric sample of its recorders carries (a scenario's, the test's).
    tags: Arc<Tags>,
}

impl std::fmt::Debug for MetricsCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsCollector")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl MetricsCollector {
    /// A collector with the default settings and no event handlers.
    pub fn with_defaults() -> Self {
        Self::build(MetricsConfig::default(), RequestMetricsEvent::new())
    }

    /// A collector with `config`, firing `request_metrics` on `event`.
    pub fn new(config: MetricsConfig, event: RequestMetricsEvent) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self::build(config, event))
    }

    fn build(config: MetricsConfig, event: RequestMetricsEvent) -> Self {
        MetricsCollector {
            shared: Arc::new(Shared {
                id: NEXT_COLLECTOR_ID.fetch_add(1, Ordering::Relaxed),
                config,
                state: Mutex::new(State {
                    keys: Vec::new(),
                    owned: Vec::new(),
                    index: std::collections::HashMap::new(),
                    buckets: Default::default(),
                    pending: VecDeque::new(),
                    merged_intervals: 0,
                    folded: Vec::new(),
                }),
                event,
                admitted: std::sync::OnceLock::new(),
            }),
            tags: Arc::default(),
        }
    }

    /// The same collector, whose recorders tag every named-metric sample with `tags`
    /// (a sample's own tags win over them): a scenario's and the test's tags, as k6 puts
    /// them on every sample.
    pub fn tagged(&self, tags: Tags) -> Self {
        MetricsCollector {
            shared: Arc::clone(&self.shared),
            tags: Arc::new(tags),
        }
    }

    /// The tags its recorders put on every named-metric sample.
    pub fn tags(&self) -> &Tags {
        &self.tags
    }

    /// The settings.
    pub fn config(&self) -> &MetricsConfig {
        &self.shared.config
    }

    /// The `request_metrics` event recorders fire.
    pub fn event(&self) -> &RequestMetricsEvent {
        &self.shared.event
    }

    /// A new recorder for one user (or thread).
    pub fn recorder(&self) -> Recorder {
        // The buffer grows with use (a handful of reallocations, then none): a full one
        // (256 records of 56 bytes) reserved up front was 14 KiB of every idle user's
        // memory, 60% of it.
        self.recorder_with(self.shared.config.batch_size)
    }

    /// A recorder that buffers at most `batch` records of each kind: a runner's per-user
    /// recorder of iterations, which records one every few requests, needs no more than
    /// a few.
    pub fn recorder_with(&self, batch: usize) -> Recorder {
        let batch_size = batch.clamp(1, self.shared.config.batch_size);
        let state = RecorderState {
            shared: Arc::clone(&self.shared),
            endpoints: HashMap::new(),
            slots: Vec::new(),
            last: 0,
            buf: Vec::new(),
            iterations: Vec::new(),
            scenario_names: Vec::new(),
            checks: Vec::new(),
            metrics: crate::MetricSet::new(),
            metrics_at: 0,
            tags: Arc::clone(&self.tags),
            merged: Vec::new(),
            merged_next: 0,
            staged: Vec::new(),
            messages: Vec::new(),
            batch_size,
            flush_interval_us: duration_us(self.shared.config.flush_interval),
            flush_due_us: None,
        };
        Recorder {
            state: Arc::new(Mutex::new(state)),
        }
    }

    /// Counts `n` iterations of `scenario` that were due and dropped (no user was free),
    /// now.
    pub fn add_dropped(&self, scenario: &str, n: u64) {
        self.add_dropped_at(scenario, n, now_wall_us());
    }

    /// Counts `n` iterations of `scenario` that were due and dropped at `time_us`.
    pub fn add_dropped_at(&self, scenario: &str, n: u64, time_us: u64) {
        if n == 0 {
            return;
        }
        let k = time_us / self.step_us();
        let tags = scenario_tags(&self.tags, scenario);
        let dropped = crate::model::Series::counter(n as f64, n);
        let mut state = self.shared.lock();
        state.bucket(k).metrics.merge_series(
            crate::iterations::DROPPED_ITERATIONS,
            &tags,
            &dropped,
        );
    }

    /// Adds one sample of `metric` taken at `at_us`, under `tags` over this collector's
    /// own: for the runner's figures that belong to no user (k6's `vus`). A value the
    /// metric cannot hold is refused.
    pub fn add_at(
        &self,
        metric: &Metric,
        value: f64,
        tags: &Tags,
        at_us: u64,
    ) -> Result<(), MetricError> {
        metric.check(value)?;
        let all = self.tags.with(tags);
        let k = at_us / self.step_us();
        let mut state = self.shared.lock();
        state.bucket(k).metrics.add(metric, &all, value, at_us);
        Ok(())
    }

    /// The grid's step, µs.
    pub fn step_us(&self) -> u64 {
        duration_us(self.shared.config.flush_interval).max(1)
    }

    /// Queues for the sink everything that arrived since the last close: one snapshot per
    /// grid interval, spanning that interval (`[k * step, (k + 1) * step)`). An interval
    /// that gets more records later is queued again, with those. If `buffer_size`
    /// intervals already wait, the two oldest merge first. `_now_us` is kept for callers
    /// that close on a clock; records carry their own time.
    pub fn close_interval(&self, _now_us: u64) {
        let step = self.step_us();
        let mut state = self.shared.lock();
        let buckets = std::mem::take(&mut state.buckets);
        for (k, bucket) in buckets {
            let mut snapshot = Snapshot {
                start_us: Some(k.saturating_mul(step)),
                end_us: Some(k.saturating_add(1).saturating_mul(step)),
                metrics: bucket.metrics,
                ..Snapshot::default()
            };
            for (id, stats) in bucket.current.into_iter().enumerate() {
                if let (Some(stats), Some(key)) = (stats, state.keys.get(id)) {
                    snapshot.endpoints.insert(key.clone(), stats);
                }
            }
            state.pending.push_back(snapshot);
        }
        while state.pending.len() > self.shared.config.buffer_size {
            if let (Some(mut oldest), Some(next)) =
                (state.pending.pop_front(), state.pending.pop_front())
            {
                oldest.merge(&next);
                state.pending.push_front(oldest);
                state.merged_intervals += 1;
            }
        }
    }

    /// Removes and returns the closed intervals, oldest first.
    pub fn take_pending(&self) -> Vec<Snapshot> {
        self.shared.lock().pending.drain(..).collect()
    }

    /// Closes the interval at `now_us` and hands every closed interval to `sink`.
    pub fn flush_to(&self, sink: &mut dyn MetricsSink, now_us: u64) {
        self.close_interval(now_us);
        for interval in self.take_pending() {
            sink.accept(interval);
        }
    }

    /// How many times a slow sink made two intervals merge.
    pub fn merged_intervals(&self) -> u64 {
        self.shared.lock().merged_intervals
    }
}

fn duration_us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// An endpoint key as a recorder owns it.
#[derive(PartialEq, Eq)]
struct OwnedKey {
    scenario: Box<str>,
    name: Box<str>,
    method: Box<str>,
    tags: Tags,
}

impl OwnedKey {
    fn of(key: &EndpointKey) -> Self {
        OwnedKey {
            scenario: key.scenario.as_str().into(),
            name: key.name.as_str().into(),
            method: key.method.as_str().into(),
            tags: key.tags.clone(),
        }
    }
}

/// The same key borrowed from a record: looked up without allocating.
struct BorrowedKey<'a> {
    scenario: &'a str,
    name: &'a str,
    method: &'a str,
    tags: &'a Tags,
}

// Both hash the strings and tags in the same order, so a borrowed key finds its owned
// twin.
impl Hash for OwnedKey {
    fn hash<H: Hasher>(&self, h: &mut H) {
        (&*self.scenario, &*self.name, &*self.method, &self.tags).hash(h);
    }
}

impl Hash for BorrowedKey<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        (self.scenario, self.name, self.method, self.tags).hash(h);
    }
}

impl Equivalent<OwnedKey> for BorrowedKey<'_> {
    fn equivalent(&self, key: &OwnedKey) -> bool {
        self.scenario == &*key.scenario
            && self.name == &*key.name
            && self.method == &*key.method
            && *self.tags == key.tags
    }
}

impl Equivalent<Arc<OwnedKey>> for BorrowedKey<'_> {
    fn equivalent(&self, key: &Arc<OwnedKey>) -> bool {
        self.equivalent(&**key)
    }
}

/// One buffered request, compact and free of borrowed data.
#[derive(Clone, Copy)]
struct Raw {
    endpoint: u32,
    status: u16,
    category: u8,
    message: u16,
    retry: bool,
    checked: bool,
    duration_us: u64,
    /// `NO_LATENESS` in the closed model.
    lateness_us: u64,
    /// The user's interval between requests, for one that never completed; 0 for none.
    expected_us: u64,
    bytes_sent: u64,
    bytes_received: u64,
    time_us: u64,
}

/// Records requests for one user or thread; see the [module docs](self).
///
/// Its buffer sits behind a mutex of its own, taken once per record and never contended
/// in a run: the user's own task is the only one that records into it, and the runner,
/// on that same task, hands its records on before the user idles ([`IdleFlush`]), so a
/// user that waits or is paused does not hold its records back.
pub struct Recorder {
    state: Arc<Mutex<RecorderState>>,
}

/// A [`Recorder`]'s batch as its user's runner sees it while the user idles: when the
/// oldest record buffered must be handed on for its interval not to close without it,
/// and a flush. It does not keep the recorder alive.
#[derive(Clone)]
pub struct IdleFlush(std::sync::Weak<Mutex<RecorderState>>);

impl std::fmt::Debug for IdleFlush {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdleFlush").finish_non_exhaustive()
    }
}

impl IdleFlush {
    /// When (µs since the epoch) the oldest buffered record must be handed on: half a
    /// flush interval after the end of its interval (which closes a quarter later than
    /// that at the earliest). `None` when nothing is buffered.
    pub fn due_us(&self) -> Option<u64> {
        let state = self.0.upgrade()?;
        let s = lock_state(&state);
        let oldest = s.flush_due_us?.saturating_sub(s.flush_interval_us);
        let step = s.flush_interval_us.max(1);
        Some(
            (oldest / step + 1)
                .saturating_mul(step)
                .saturating_add(step / 2),
        )
    }

    /// Hands the buffered records on now.
    pub fn flush(&self) {
        if let Some(state) = self.0.upgrade() {
            lock_state(&state).flush_now();
        }
    }
}

fn lock_state(m: &Mutex<RecorderState>) -> MutexGuard<'_, RecorderState> {
    // A poisoned lock still holds a consistent batch: records are pushed whole.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Recorder {
    #[inline]
    fn lock(&self) -> MutexGuard<'_, RecorderState> {
        lock_state(&self.state)
    }

    /// Records one request, firing `request_metrics` first if it has handlers.
    #[inline]
    pub fn record(&mut self, r: &RequestRecord<'_>) {
        self.lock().record(r);
    }

    /// The endpoint of `scenario`, `name`, `method` and `tags`, for
    /// [`record_at`](Self::record_at).
    pub fn endpoint(&mut self, scenario: &str, name: &str, method: &str, tags: &Tags) -> Endpoint {
        self.lock().endpoint(scenario, name, method, tags)
    }

    /// Records one request against `endpoint`, which must be the endpoint of `r`'s
    /// scenario, name and method: the lookup [`record`](Self::record) makes is skipped
    /// (`r`'s strings still go to `request_metrics` handlers). For callers that record
    /// the same endpoint again and again, such as an HTTP client with its paths. An
    /// endpoint of another collector is not trusted: `r`'s strings are looked up.
    #[inline]
    pub fn record_at(&mut self, endpoint: Endpoint, r: &RequestRecord<'_>) {
        self.lock().record_at(endpoint, r);
    }

    /// Flushes if the oldest buffered record is older than `flush_interval` at `now_us`.
    /// Call it between tasks so an idle user's records still arrive in time.
    pub fn flush_if_due(&mut self, now_us: u64) {
        self.lock().flush_if_due(now_us);
    }

    /// Flushes now (also done on drop).
    pub fn flush(&mut self) {
        self.lock().flush_now();
    }

    /// Records buffered and not yet flushed.
    pub fn buffered(&self) -> usize {
        self.lock().buffered()
    }

    /// Adds one sample of `metric` under `tags` (k6's `counter.add(1, tags)`,
    /// `trend.add(ms)`, ...), sent with the next flush like a request. A value the metric
    /// cannot hold (not finite; a negative trend) is refused and nothing is recorded.
    ///
    /// ```
    /// # use aiotest_metrics::*;
    /// let collector = MetricsCollector::new(MetricsConfig::default(), RequestMetricsEvent::new())?;
    /// let mut recorder = collector.recorder();
    /// let orders = Metric::counter("orders")?;
    /// recorder.add(&orders, 1.0, &Tags::from_pairs([("shop", "eu")])?)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn add(&mut self, metric: &Metric, value: f64, tags: &Tags) -> Result<(), MetricError> {
        self.add_at(metric, value, tags, now_wall_us())
    }

    /// [`add`](Self::add) for a sample taken at `at_us` (µs since the Unix epoch): it
    /// belongs to that time's interval.
    pub fn add_at(
        &mut self,
        metric: &Metric,
        value: f64,
        tags: &Tags,
        at_us: u64,
    ) -> Result<(), MetricError> {
        metric.check(value)?;
        let mut state = self.lock();
        if state.tags.is_empty() {
            state.add(metric, value, tags, at_us);
        } else if tags.is_empty() {
            let base = Arc::clone(&state.tags);
            state.add(metric, value, &base, at_us);
        } else {
            let i = state.merged_for(tags)?;
            // Lent out for the call, not copied.
            let all = std::mem::take(&mut state.merged[i].1);
            state.add(metric, value, &all, at_us);
            state.merged[i].1 = all;
        }
        Ok(())
    }

    /// A new recorder on the same collector, with the same tags: for requests a user
    /// makes side by side (k6's `http.batch`), each in a recorder of its own.
    pub fn sibling(&self) -> Recorder {
        let (shared, tags) = {
            let s = self.lock();
            (Arc::clone(&s.shared), Arc::clone(&s.tags))
        };
        MetricsCollector { shared, tags }.recorder()
    }

    /// Whether its collector keeps the timing breakdown's trends
    /// ([`MetricsConfig::timing_trends`]).
    pub fn timing_trends(&self) -> bool {
        self.lock().shared.config.timing_trends
    }

    /// `tags` with its collector's set under them: what a sample under `tags` is filed
    /// under, for [`add_all_under`](Self::add_all_under).
    pub fn full_tags(&self, tags: &Tags) -> Tags {
        self.lock().tags.with(tags)
    }

    /// Adds one sample of each `(metric, value)` under exactly `tags` (already made by
    /// [`full_tags`](Self::full_tags)), all taken at `at_us`: for a caller that keeps the
    /// tags of what it records again and again, such as an HTTP client's timing trends.
    /// The samples are kept by the tags' address until the recorder flushes, so that
    /// no tag set is compared per sample. A value a metric cannot hold is refused, and
    /// nothing of the others is recorded either.
    pub fn add_all_under(
        &mut self,
        samples: &[(&Metric, f64)],
        tags: &Arc<Tags>,
        at_us: u64,
    ) -> Result<(), MetricError> {
        for (metric, value) in samples {
            metric.check(*value)?;
        }
        self.lock().add_staged(samples, tags, at_us);
        Ok(())
    }

    /// Adds one sample of each `(metric, value)` under `tags`, all taken at `at_us`:
    /// [`add_at`](Self::add_at) for several metrics of one event, the tags merged with
    /// the collector's once. A value a metric cannot hold is refused, and nothing of the
    /// others is recorded either.
    pub fn add_all_at(
        &mut self,
        samples: &[(&Metric, f64)],
        tags: &Tags,
        at_us: u64,
    ) -> Result<(), MetricError> {
        let all = Arc::new(self.full_tags(tags));
        self.add_all_under(samples, &all, at_us)
    }

    /// Counts one verdict of the named check `name` (k6's `check`): it judges a response
    /// without failing the request. Sent with the next flush of this recorder's requests.
    pub fn record_check(&mut self, name: &str, passed: bool) {
        self.lock().record_check(name, passed);
    }

    /// Records one iteration of `scenario` that took `duration_us`: completed, or cut off
    /// by the end of the graceful stop period (`interrupted`).
    pub fn record_iteration(&mut self, scenario: &str, duration_us: u64, interrupted: bool) {
        self.lock()
            .record_iteration(scenario, duration_us, interrupted);
    }

    /// This recorder's batch, for its runner to hand on while the user idles.
    pub fn idle(&self) -> IdleFlush {
        IdleFlush(Arc::downgrade(&self.state))
    }
}

/// Series of samples under one kept tag set, by metric.
type Staged = Vec<(Metric, crate::model::Series)>;

/// A recorder's state; see [`Recorder`].
struct RecorderState {
    shared: Arc<Shared>,
    /// Endpoint key -> slot; a slot holds the key again and the collector's endpoint id.
    endpoints: HashMap<Arc<OwnedKey>, usize>,
    slots: Vec<(Arc<OwnedKey>, u32)>,
    /// The slot of the previous record's endpoint.
    last: usize,
    buf: Vec<Raw>,
    /// Iterations: (index in `scenario_names`, duration, interrupted, time).
    iterations: Vec<(u16, u64, bool, u64)>,
    /// Scenarios iterations were recorded for, with their tags (this recorder's, and
    /// `scenario`).
    scenario_names: Vec<(Box<str>, Tags)>,
    /// Named checks' verdicts since the last flush: (path, its tags, passes, fails, time
    /// of the newest). The tags are made once per check, when it is first seen.
    checks: Vec<(Box<str>, Tags, u64, u64, u64)>,
    /// Named metrics' samples since the last flush, all of grid interval `metrics_at`.
    metrics: crate::MetricSet,
    metrics_at: u64,
    /// Tags of every sample (its collector's).
    tags: Arc<Tags>,
    /// A sample's own tags merged over `tags`, the last few distinct ones: a custom
    /// metric fed again and again under the same tags merges them once, not per sample.
    merged: Vec<(Tags, Tags)>,
    /// The entry of `merged` replaced next when it is full.
    merged_next: usize,
    /// Samples of [`Recorder::add_all_under`] since the last flush, all of interval
    /// `metrics_at`, by the address of their tags, then by metric.
    staged: Vec<(Arc<Tags>, Staged)>,
    messages: Vec<Box<str>>,
    batch_size: usize,
    flush_interval_us: u64,
    flush_due_us: Option<u64>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.lock();
        f.debug_struct("Recorder")
            .field("buffered", &s.buf.len())
            .field("endpoints", &s.endpoints.len())
            .finish_non_exhaustive()
    }
}

/// `base` with `scenario` set.
fn scenario_tags(base: &Tags, scenario: &str) -> Tags {
    let mut tags = base.clone();
    tags.set_checked("scenario", scenario);
    tags
}

/// Distinct own tag sets whose merge with the collector's a recorder keeps.
const MERGED_TAGS_KEPT: usize = 16;

impl RecorderState {
    /// The index in `merged` of `own` merged over this recorder's tags, merged now when
    /// it is not there (replacing the oldest entry when full).
    fn merged_for(&mut self, own: &Tags) -> Result<usize, MetricError> {
        if let Some(i) = self.merged.iter().position(|(o, _)| o == own) {
            return Ok(i);
        }
        let mut all = (*self.tags).clone();
        for (k, v) in own.iter() {
            all.insert(k, v)?;
        }
        let entry = (own.clone(), all);
        if self.merged.len() < MERGED_TAGS_KEPT {
            self.merged.push(entry);
            Ok(self.merged.len() - 1)
        } else {
            let i = self.merged_next;
            self.merged[i] = entry;
            self.merged_next = (i + 1) % MERGED_TAGS_KEPT;
            Ok(i)
        }
    }

    /// Records one request, firing `request_metrics` first if it has handlers.
    #[inline]
    fn record(&mut self, r: &RequestRecord<'_>) {
        let endpoint = self.endpoint_id(r.scenario, r.name, r.method, r.tags);
        self.push(endpoint, r);
    }

    /// The endpoint of `scenario`, `name`, `method` and `tags`, for
    /// [`record_at`](Self::record_at).
    fn endpoint(&mut self, scenario: &str, name: &str, method: &str, tags: &Tags) -> Endpoint {
        Endpoint {
            collector: self.shared.id,
            id: self.endpoint_id(scenario, name, method, tags),
        }
    }

    /// Records one request against `endpoint`, which must be the endpoint of `r`'s
    /// scenario, name and method: the lookup [`record`](Self::record) makes is skipped
    /// (`r`'s strings still go to `request_metrics` handlers). For callers that record
    /// the same endpoint again and again, such as an HTTP client with its paths. An
    /// endpoint of another collector is not trusted: `r`'s strings are looked up.
    #[inline]
    fn record_at(&mut self, endpoint: Endpoint, r: &RequestRecord<'_>) {
        let id = if endpoint.collector == self.shared.id {
            endpoint.id
        } else {
            self.endpoint_id(r.scenario, r.name, r.method, r.tags)
        };
        self.push(id, r);
    }

    #[inline]
    fn push(&mut self, endpoint: u32, r: &RequestRecord<'_>) {
        if self.shared.event.is_active() {
            self.shared.event.fire(r);
        }
        let message = match (r.error, r.message) {
            (Some(_), Some(m)) => self.message_id(m),
            _ => NO_MESSAGE,
        };
        self.buf.push(Raw {
            endpoint,
            status: r.status.unwrap_or(NO_STATUS),
            category: r.error.map_or(NO_CATEGORY, |c| c as u8),
            message,
            retry: r.attempt > 0,
            checked: r.checked,
            duration_us: r.duration_us,
            lateness_us: r.lateness_us.unwrap_or(NO_LATENESS),
            expected_us: r.expected_interval_us.unwrap_or(0),
            bytes_sent: r.bytes_sent,
            bytes_received: r.bytes_received,
            time_us: r.time_us,
        });
        let due = *self
            .flush_due_us
            .get_or_insert(r.time_us.saturating_add(self.flush_interval_us));
        if self.buf.len() >= self.batch_size || r.time_us >= due {
            self.flush_now();
        }
    }

    /// Flushes if the oldest buffered record is older than `flush_interval` at `now_us`.
    /// Call it between tasks so an idle user's records still arrive in time.
    fn flush_if_due(&mut self, now_us: u64) {
        if self.flush_due_us.is_some_and(|due| now_us >= due) {
            self.flush_now();
        }
    }

    /// Records buffered and not yet flushed.
    fn buffered(&self) -> usize {
        self.buf.len()
            + self.iterations.len()
            + self
                .checks
                .iter()
                .filter(|(_, _, p, f, _)| p + f > 0)
                .count()
            + self.metrics.series.values().map(|s| s.len()).sum::<usize>()
            + self.staged.iter().map(|(_, s)| s.len()).sum::<usize>()
    }

    /// Adds a checked sample taken at `at_us`.
    fn add(&mut self, metric: &Metric, value: f64, tags: &Tags, at_us: u64) {
        self.enter_metrics_interval(at_us);
        self.metrics.add(metric, tags, value, at_us);
        self.metrics_added(at_us);
    }

    /// Samples of several metrics under tags kept by their address.
    fn add_staged(&mut self, samples: &[(&Metric, f64)], tags: &Arc<Tags>, at_us: u64) {
        self.enter_metrics_interval(at_us);
        let i = match self.staged.iter().position(|(t, _)| Arc::ptr_eq(t, tags)) {
            Some(i) => i,
            None => {
                self.staged.push((Arc::clone(tags), Vec::new()));
                self.staged.len() - 1
            }
        };
        let series = &mut self.staged[i].1;
        for &(metric, value) in samples {
            match series.iter_mut().find(|(m, _)| m == metric) {
                Some((_, s)) => s.add(value, at_us),
                None => {
                    let mut s = crate::model::Series::new(metric.kind(), metric.is_time());
                    s.add(value, at_us);
                    series.push((metric.clone(), s));
                }
            }
        }
        self.metrics_added(at_us);
    }

    /// The pending samples of an earlier interval than `at_us`'s go first.
    fn enter_metrics_interval(&mut self, at_us: u64) {
        let step = self.flush_interval_us.max(1);
        let pending = !self.metrics.series.is_empty() || !self.staged.is_empty();
        if pending && self.metrics_at != at_us / step {
            self.flush_metrics();
        }
        self.metrics_at = at_us / step;
    }

    /// A sample at `at_us` was added: flushed with the requests when due.
    fn metrics_added(&mut self, at_us: u64) {
        let due = *self
            .flush_due_us
            .get_or_insert(at_us.saturating_add(self.flush_interval_us));
        if at_us >= due {
            self.flush_now();
        }
    }

    /// Hands the named metrics' pending samples to the collector.
    fn flush_metrics(&mut self) {
        for (tags, series) in std::mem::take(&mut self.staged) {
            for (metric, s) in series {
                self.metrics.merge_series(metric.name(), &tags, &s);
            }
        }
        if self.metrics.series.is_empty() && self.metrics.conflicts.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut self.metrics);
        let mut state = self.shared.lock();
        let bucket = state.bucket(self.metrics_at);
        if bucket.metrics.series.is_empty() && bucket.metrics.conflicts.is_empty() {
            bucket.metrics = pending;
        } else {
            bucket.metrics.merge(&pending);
        }
    }

    /// Counts one verdict of the named check `name` (k6's `check`): it judges a response
    /// without failing the request. Sent with the next flush of this recorder's requests.
    fn record_check(&mut self, name: &str, passed: bool) {
        // A check judges the response just recorded: its time, without a clock read.
        let time = match self.buf.last() {
            Some(r) => r.time_us,
            None => now_wall_us(),
        };
        if self.buf.is_empty() && self.iterations.is_empty() {
            // No request will flush it soon: keep it as live as a request.
            self.flush_due_us
                .get_or_insert(time.saturating_add(self.flush_interval_us));
        }
        let i = match self.checks.iter().position(|(n, ..)| &**n == name) {
            Some(i) => i,
            None => {
                let tags = crate::checks::check_tags(&self.tags, name);
                self.checks.push((name.into(), tags, 0, 0, time));
                self.checks.len() - 1
            }
        };
        if let Some(&(_, _, p, f, at)) = self.checks.get(i)
            && p + f > 0
            && at / self.flush_interval_us.max(1) != time / self.flush_interval_us.max(1)
        {
            // The pending verdicts belong to an earlier interval: they go first.
            self.flush_checks();
        }
        if let Some((_, _, passes, fails, at)) = self.checks.get_mut(i) {
            if passed {
                *passes += 1;
            } else {
                *fails += 1;
            }
            *at = time;
        }
    }

    /// Records one iteration of `scenario` that took `duration_us`: completed, or cut off
    /// by the end of the graceful stop period (`interrupted`).
    fn record_iteration(&mut self, scenario: &str, duration_us: u64, interrupted: bool) {
        let id = match self
            .scenario_names
            .iter()
            .position(|(n, _)| &**n == scenario)
        {
            Some(i) => i,
            None => {
                let tags = scenario_tags(&self.tags, scenario);
                self.scenario_names.push((scenario.into(), tags));
                self.scenario_names.len() - 1
            }
        };
        // Iterations are far rarer than requests, so reading the clock here costs
        // nothing that matters, and it keeps them as live as requests: flushed once the
        // oldest buffered record is a flush interval old, not only when the batch is full.
        let now = now_wall_us();
        self.iterations.push((
            u16::try_from(id).unwrap_or(u16::MAX),
            duration_us,
            interrupted,
            now,
        ));
        let due = *self
            .flush_due_us
            .get_or_insert(now.saturating_add(self.flush_interval_us));
        if self.iterations.len() >= self.batch_size || now >= due {
            self.flush_now();
        }
    }

    /// Hands the named checks' pending verdicts to the collector.
    fn flush_checks(&mut self) {
        if !self.checks.iter().any(|(_, _, p, f, _)| p + f > 0) {
            return;
        }
        let step = self.flush_interval_us.max(1);
        let mut state = self.shared.lock();
        for (_, tags, passes, fails, at) in &mut self.checks {
            if *passes + *fails == 0 {
                continue;
            }
            let verdicts = crate::checks::verdicts(std::mem::take(passes), std::mem::take(fails));
            let bucket = state.bucket(*at / step);
            bucket
                .metrics
                .merge_series(crate::checks::CHECKS, tags, &verdicts);
        }
    }

    fn flush_now(&mut self) {
        self.flush_due_us = None;
        self.flush_checks();
        self.flush_metrics();
        let step = self.flush_interval_us.max(1);
        if !self.iterations.is_empty() {
            // Summed per scenario and interval first, then filed as named metrics: one
            // merge per (scenario, interval) of the batch, not one per iteration.
            let mut sums: Vec<(u16, u64, ScenarioStats)> = Vec::new();
            for &(id, us, interrupted, at) in &self.iterations {
                let k = at / step;
                let i = match sums.iter().position(|(i, kk, _)| *i == id && *kk == k) {
                    Some(i) => i,
                    None => {
                        sums.push((id, k, ScenarioStats::default()));
                        sums.len() - 1
                    }
                };
                let stats = &mut sums[i].2;
                if interrupted {
                    stats.interrupted += 1;
                } else {
                    stats.completed(us);
                }
            }
            let mut state = self.shared.lock();
            for (id, k, stats) in &sums {
                let Some((_, tags)) = self.scenario_names.get(usize::from(*id)) else {
                    continue;
                };
                stats.file_into(&mut state.bucket(*k).metrics, tags);
            }
            drop(state);
            self.iterations.clear();
        }
        if self.buf.is_empty() {
            return;
        }
        let mut state = self.shared.lock();
        // A batch spans one or two intervals: the bucket is looked up again only when
        // a record's interval differs from the previous one's.
        let mut at_k = u64::MAX;
        let mut bucket: Option<&mut Bucket> = None;
        for r in &self.buf {
            let k = r.time_us / step;
            if k != at_k || bucket.is_none() {
                at_k = k;
                bucket = Some(state.bucket(k));
            }
            let Some(b) = bucket.as_deref_mut() else {
                continue;
            };
            // Every id this recorder holds was registered, so it has a slot.
            let Some(slot) = b.current.get_mut(r.endpoint as usize) else {
                continue;
            };
            let message = self.messages.get(usize::from(r.message)).map(|m| &**m);
            let stats = slot.get_or_insert_with(EndpointStats::default);
            stats.retries += u64::from(r.retry);
            stats.checks += u64::from(r.checked);
            stats.record_parts(
                (r.status != NO_STATUS).then_some(r.status),
                r.duration_us,
                (r.lateness_us != NO_LATENESS).then_some(r.lateness_us),
                r.bytes_sent,
                r.bytes_received,
                ErrorCategory::from_index(r.category),
                message,
                r.time_us,
            );
            if r.expected_us > 0 && r.lateness_us == NO_LATENESS {
                stats.record_omitted(r.duration_us, r.expected_us);
            }
        }
        drop(state);
        self.buf.clear();
    }

    #[inline]
    fn endpoint_id(&mut self, scenario: &str, name: &str, method: &str, tags: &Tags) -> u32 {
        let key = BorrowedKey {
            scenario,
            name,
            method,
            tags,
        };
        // Consecutive requests usually hit the same endpoint: comparing three short
        // strings is cheaper than hashing them.
        if let Some((owned, id)) = self.slots.get(self.last)
            && key.equivalent(owned)
        {
            return *id;
        }
        if let Some(&slot) = self.endpoints.get(&key) {
            self.last = slot;
            return self.slots[slot].1;
        }
        if name != OTHER_ENDPOINT
            && let Some(admitted) = self.shared.admitted.get()
            && !admitted.contains(&key)
        {
            // Neither admitted nor remembered: memory stays bounded however many
            // distinct names come (the `(other)` endpoint itself is remembered).
            return self.endpoint_id(scenario, OTHER_ENDPOINT, method, tags);
        }
        self.register_endpoint(scenario, name, method, tags)
    }

    #[cold]
    fn register_endpoint(&mut self, scenario: &str, name: &str, method: &str, tags: &Tags) -> u32 {
        let key = EndpointKey::tagged(scenario, name, method, tags);
        let mut state = self.shared.lock();
        let (id, owned) = match state.index.get(&key) {
            Some(&id) => (id, state.owned.get(id as usize).cloned()),
            None if state.keys.len() >= self.shared.config.max_endpoints
                && name != OTHER_ENDPOINT =>
            {
                let _ = self
                    .shared
                    .admitted
                    .get_or_init(|| state.keys.iter().map(OwnedKey::of).collect());
                if state.folded.len() < FOLDED_SHOWN {
                    state.folded.push(name.to_owned());
                    if state.folded.len() == 1 {
                        tracing::warn!(
                            "more than {} distinct request names: new ones (the first is `{name}`) \
                             are counted under `{OTHER_ENDPOINT}`. Name requests that carry ids \
                             explicitly (`.name(\"/items/{{id}}\")` in Rust, `name =` in a \
                             scenario file), or raise --max-endpoints",
                            self.shared.config.max_endpoints
                        );
                    }
                }
                drop(state);
                return self.endpoint_id(scenario, OTHER_ENDPOINT, method, tags);
            }
            None => {
                let id = u32::try_from(state.keys.len()).unwrap_or(u32::MAX);
                let owned = Arc::new(OwnedKey::of(&key));
                state.keys.push(key.clone());
                state.owned.push(Arc::clone(&owned));
                state.index.insert(key, id);
                (id, Some(owned))
            }
        };
        drop(state);
        // Always there (pushed with its key); made again only if that ever changes.
        let owned = owned.unwrap_or_else(|| {
            Arc::new(OwnedKey::of(&EndpointKey::tagged(
                scenario, name, method, tags,
            )))
        });
        let slot = self.slots.len();
        self.slots.push((Arc::clone(&owned), id));
        self.endpoints.insert(owned, slot);
        self.last = slot;
        id
    }

    fn message_id(&mut self, message: &str) -> u16 {
        let message = truncate(message, MAX_ERROR_MESSAGE_LEN);
        if let Some(i) = self.messages.iter().position(|m| &**m == message) {
            return i as u16;
        }
        if self.messages.len() >= MAX_RECORDER_MESSAGES {
            return NO_MESSAGE;
        }
        self.messages.push(message.into());
        (self.messages.len() - 1) as u16
    }
}

impl Drop for RecorderState {
    fn drop(&mut self) {
        self.flush_now();
    }
}

#[cfg(test)]
mod tests;
