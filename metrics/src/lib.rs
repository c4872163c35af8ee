//! aiotest's metrics: exact, mergeable latency statistics that cost almost nothing to
//! record.
//!
//! - [`RequestRecord`]: one request (name, method, status, duration in µs, bytes, error
//!   category and message, time).
//! - [`Recorder`]: owned by one user or thread; records without a lock, a channel or an
//!   allocation, and flushes batches into a [`MetricsCollector`] (`batch_size`,
//!   `flush_interval`, `buffer_size`). Dropping it flushes it.
//! - [`Snapshot`]: per-endpoint [`EndpointStats`] (HDR histogram from 1 µs to 1 h at 3
//!   significant digits, counts, failures by category, status codes, bytes, min/max/mean,
//!   first/last time, bounded error messages). Serializable (histograms in HDR V2 +
//!   deflate) and exactly mergeable, across users, threads and machines.
//! - [`LiveView`]: run totals and a sliding window of current requests/s and percentiles.
//! - [`RequestMetricsEvent`]: the `request_metrics` event, handlers by priority.
//! - [`PrometheusExporter`] and [`create_prometheus_app`]: `aiotest_*` metrics at
//!   `/metrics`.
//!
//! **Who should depend on this crate:** runners and transports that move metrics, clients
//! that record requests (the HTTP user), and anyone who wants aiotest's statistics without
//! its runner.
//!
//! ```
//! use aiotest_metrics::{LiveView, MetricsCollector, MetricsConfig, RequestMetricsEvent, RequestRecord};
//!
//! let collector = MetricsCollector::new(MetricsConfig::default(), RequestMetricsEvent::new())?;
//! let mut recorder = collector.recorder(); // one per user
//! recorder.record(&RequestRecord::ok("/items", "GET", 200, 1_250).at(1_000_000));
//! drop(recorder); // a stopping user flushes
//!
//! let mut aggregate = LiveView::default();
//! collector.flush_to(&mut aggregate, 2_000_000);
//! let total = aggregate.total().total();
//! assert_eq!(total.requests, 1);
//! assert_eq!(total.percentile_us(0.99), 1_250);
//! # Ok::<(), aiotest_metrics::ConfigError>(())
//! ```
//!
//! ## Cost
//!
//! `cargo bench -p aiotest-metrics`, on the project's 2-core machine (medians):
//!
//! | benchmark | time |
//! |---|---|
//! | record one request, same endpoint as the last (amortized batch merge included) | 22 ns |
//! | record one request, eight endpoints in turn | 38 ns |
//! | record a failure with a message | 31 ns |
//! | merge a 1,000-endpoint snapshot (200 requests each) into another | 16 ms |
//!
//! Such a 1,000-endpoint snapshot is 512 kB in MessagePack (histograms as plain HDR V2:
//! deflating them made it 383 kB but cost the workers and the master three times the
//! CPU). Memory per recorder is its batch buffer (56 bytes a record, growing with use up
//! to `batch_size` records) and its endpoint table, whose keys it shares with the
//! collector (about 50 bytes an endpoint); the histograms live once per collector and
//! interval, not once per user.

pub mod builtin;
pub mod checks;
pub mod collector;
pub mod event;
pub mod iterations;
pub mod latencies;
pub mod live;
pub mod model;
pub mod prometheus;
pub mod record;
pub mod stats;

pub use builtin::{
    BUILTIN_METRICS, HTTP_REQ_DURATION, RESPONSE_TAGS, TIMING_TRENDS, VUS, builtin_metrics,
    is_builtin, split_check_path,
};
pub use checks::{CHECKS, CheckStats};
pub use collector::{
    ConfigError, Endpoint, IdleFlush, MAX_ENDPOINTS_LIMIT, MetricsCollector, MetricsConfig,
    MetricsSink, OTHER_ENDPOINT, Recorder,
};
pub use event::RequestMetricsEvent;
pub use iterations::ScenarioStats;
pub use latencies::Latencies;
pub use live::{LiveRow, LiveStats, LiveView};
pub use model::{
    Aggregation, MAX_TAG_SETS, Metric, MetricError, MetricKind, MetricSet, Series, Tags,
    folded_tags,
};
pub use prometheus::{PrometheusApp, PrometheusExporter, create_prometheus_app};
pub use record::{ErrorCategory, RequestRecord};
pub use stats::{EndpointKey, EndpointStats, ErrorMessage, ErrorMessages, ServiceTime, Snapshot};
