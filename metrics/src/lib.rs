//! aiotest's metrics: the numbers users trust the tool for.
//!
//! **Status:** this crate is a placeholder in the workspace layout; its contents arrive
//! with the metrics work. It will hold:
//!
//! - the request record (name, method, status, duration in microseconds, bytes, error
//!   category, time) and per-endpoint statistics in HDR histograms, so percentiles stay
//!   exact when merged across users, threads and machines;
//! - a per-user recorder with no lock and no per-request allocation, flushed in batches to
//!   a collector (`batch_size`, `flush_interval`, `buffer_size`);
//! - serializable, exactly mergeable snapshots and a sliding-window live view;
//! - the `request_metrics` event (handlers with priorities) and the Prometheus exporter.
//!
//! **Who should depend on it:** runners and transports that move metrics, and anyone who
//! wants aiotest's statistics without its runner.
