//! Named metrics of k6's four kinds, each sample under a set of key=value tags.
//!
//! - [`Metric`]: a name (ASCII letters, digits and `_`, not starting with a digit, at most
//!   128 bytes) and a [`MetricKind`]: a counter (a sum), a gauge (the last value, with min
//!   and max), a rate (the share of non-zero samples) or a trend (an HDR histogram: min,
//!   max, avg, med, p(N)). A trend made with [`Metric::time_trend`] holds milliseconds.
//! - [`Tags`]: a sorted set of key=value pairs.
//! - [`MetricSet`]: one [`Series`] per (name, tags), merged exactly across users,
//!   intervals and workers, and read by [`Aggregation`] over the series a tag filter
//!   selects.
//!
//! The same name given two kinds is a mistake that cannot be caught where the metric is
//! made (two users, two workers): the first kind a [`MetricSet`] saw stays, and the
//! samples of the other are counted in [`MetricSet::conflicts`] for the summary to show.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::Latencies;

/// Longest metric name, tag key or tag value, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// Trend values are kept in thousandths: 3 decimals (a microsecond in a time trend).
const TREND_SCALE: f64 = 1_000.0;
/// The largest trend value a histogram can hold in thousandths.
const TREND_MAX: f64 = 1e15;

/// What a metric's samples mean and how they add up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricKind {
    /// A sum (k6's Counter): `count`, and `rate` per second.
    Counter,
    /// The last value, with the smallest and largest seen: `value`, `min`, `max`.
    Gauge,
    /// The share of non-zero samples: `rate`.
    Rate,
    /// A distribution: `avg`, `min`, `med`, `max`, `p(N)`, `count`.
    Trend,
}

impl MetricKind {
    /// Its name, as k6 writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Rate => "rate",
            MetricKind::Trend => "trend",
        }
    }
}

impl fmt::Display for MetricKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A metric name, tag or value that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum MetricError {
    /// A name that is empty, too long or has other characters than ASCII letters,
    /// digits and `_` (or starts with a digit).
    #[error(
        "metric name `{0}`: use 1 to 128 ASCII letters, digits and _, not starting with a digit"
    )]
    BadName(String),
    /// A tag key that is empty, too long or not printable, or a value that is too long.
    #[error("tag `{key}`: {reason}")]
    BadTag {
        /// The key.
        key: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A value the metric cannot hold.
    #[error("metric `{metric}`: {reason} (got {value})")]
    BadValue {
        /// The metric's name.
        metric: String,
        /// The value.
        value: f64,
        /// What is wrong.
        reason: &'static str,
    },
}

/// A named metric of one kind: a cheap handle to record samples with.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Metric {
    name: Arc<str>,
    kind: MetricKind,
    time: bool,
}

impl Metric {
    fn new(name: &str, kind: MetricKind, time: bool) -> Result<Self, MetricError> {
        let ok = !name.is_empty()
            && name.len() <= MAX_NAME_LEN
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !ok {
            return Err(MetricError::BadName(name.escape_debug().to_string()));
        }
        Ok(Metric {
            name: name.into(),
            kind,
            time,
        })
    }

    /// A counter: a sum of what is added.
    pub fn counter(name: &str) -> Result<Self, MetricError> {
        Self::new(name, MetricKind::Counter, false)
    }

    /// A gauge: the last value set, with the smallest and largest.
    pub fn gauge(name: &str) -> Result<Self, MetricError> {
        Self::new(name, MetricKind::Gauge, false)
    }

    /// A rate: the share of samples that are non-zero (true).
    pub fn rate(name: &str) -> Result<Self, MetricError> {
        Self::new(name, MetricKind::Rate, false)
    }

    /// A trend of plain numbers (at least 0, kept to 3 decimals, 3 significant digits).
    pub fn trend(name: &str) -> Result<Self, MetricError> {
        Self::new(name, MetricKind::Trend, false)
    }

    /// A trend of durations in milliseconds (k6's `Trend(name, true)`).
    pub fn time_trend(name: &str) -> Result<Self, MetricError> {
        Self::new(name, MetricKind::Trend, true)
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its kind.
    pub fn kind(&self) -> MetricKind {
        self.kind
    }

    /// Whether it holds milliseconds.
    pub fn is_time(&self) -> bool {
        self.time
    }

    /// Checks that `value` is one this metric can hold.
    pub fn check(&self, value: f64) -> Result<(), MetricError> {
        let bad = |reason| {
            Err(MetricError::BadValue {
                metric: self.name.to_string(),
                value,
                reason,
            })
        };
        if !value.is_finite() {
            return bad("not a finite number");
        }
        if self.kind == MetricKind::Trend && !(0.0..=TREND_MAX / TREND_SCALE).contains(&value) {
            return bad("a trend takes values from 0 to 1e12");
        }
        Ok(())
    }
}

/// A set of key=value tags, sorted by key, each key once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Tags(Vec<(String, String)>);

impl Tags {
    /// No tags.
    pub const fn new() -> Self {
        Tags(Vec::new())
    }

    /// An empty set to borrow where a record has no tags.
    pub fn none() -> &'static Tags {
        static NONE: Tags = Tags::new();
        &NONE
    }

    /// How many pairs.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Sets one of the tags aiotest itself gives a sample (`name`, `status`, `proto`,
    /// ...): a key that passes the tag rule, and a value of any length (a request name).
    pub fn set_system(&mut self, key: &'static str, value: &str) {
        debug_assert!(aiotest_core::tag::check(key, "").is_ok());
        self.set_checked(key, value);
    }

    /// These tags with every pair of `other` set over them.
    pub fn with(&self, other: &Tags) -> Tags {
        if other.is_empty() {
            return self.clone();
        }
        if self.is_empty() {
            return other.clone();
        }
        let mut all = self.clone();
        for (k, v) in other.iter() {
            // Both sides were checked when they were built.
            all.set_checked(k, v);
        }
        all
    }

    /// Sets a pair already known to pass the tag rule, or a system tag made here.
    pub(crate) fn set_checked(&mut self, key: &str, value: &str) {
        match self.0.binary_search_by(|(k, _)| k.as_str().cmp(key)) {
            Ok(i) => self.0[i].1 = value.to_owned(),
            Err(i) => self.0.insert(i, (key.to_owned(), value.to_owned())),
        }
    }

    /// Tags from pairs; a key given twice keeps its last value.
    pub fn from_pairs<K: AsRef<str>, V: AsRef<str>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, MetricError> {
        let mut tags = Tags::new();
        for (k, v) in pairs {
            tags.insert(k.as_ref(), v.as_ref())?;
        }
        Ok(tags)
    }

    /// Sets `key` to `value`.
    pub fn insert(&mut self, key: &str, value: &str) -> Result<(), MetricError> {
        if let Err(reason) = aiotest_core::tag::check(key, value) {
            return Err(MetricError::BadTag {
                key: key.escape_debug().to_string(),
                reason,
            });
        }
        self.set_checked(key, value);
        Ok(())
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| k.as_str().cmp(key))
            .ok()
            .map(|i| self.0[i].1.as_str())
    }

    /// Whether every pair of `filter` is among these tags.
    pub fn contains_all(&self, filter: &Tags) -> bool {
        filter.iter().all(|(k, v)| self.get(k) == Some(v))
    }

    /// The pairs, by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Tags {
    /// `{k:v,k2:v2}` as k6 writes a sub-metric; nothing when empty.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return Ok(());
        }
        f.write_str("{")?;
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{k}:{v}")?;
        }
        f.write_str("}")
    }
}

/// A trend's samples: exact count, sum, min and max, and a histogram of the values in
/// thousandths for the percentiles (3 significant digits).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrendValues {
    /// Samples.
    pub count: u64,
    /// Their sum.
    pub sum: f64,
    /// The smallest.
    pub min: f64,
    /// The largest.
    pub max: f64,
    /// The values in thousandths.
    pub histogram: Latencies,
}

impl TrendValues {
    fn new() -> Self {
        TrendValues {
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            histogram: Latencies::new(),
        }
    }

    /// The value at `quantile` (0 to 1), within 0.1% of the true one and within
    /// min..max; `None` without samples.
    pub fn percentile(&self, quantile: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        // The middle of the sample's bucket, to 4 significant digits (the histogram keeps
        // 1 part in 2,048): a trend of round numbers reads back round, where the bucket's
        // top would make 10 read 10.007.
        let h = &self.histogram;
        let mid = h.median_equivalent(h.value_at_quantile(quantile.clamp(0.0, 1.0))) as f64;
        let v = round_significant(mid, 4) / TREND_SCALE;
        Some(v.clamp(self.min, self.max))
    }
}

/// `v` to `digits` significant digits.
fn round_significant(v: f64, digits: i32) -> f64 {
    if v == 0.0 {
        return 0.0;
    }
    let scale = 10f64.powi(digits - 1 - v.abs().log10().floor() as i32);
    (v * scale).round() / scale
}

/// What the samples of one series add up to, by kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Values {
    /// A counter's sum.
    Counter {
        /// The sum.
        sum: f64,
    },
    /// A gauge's last value (by the time it was set) and its extremes.
    Gauge {
        /// The last value.
        value: f64,
        /// When it was set (µs since the Unix epoch).
        at_us: u64,
        /// The smallest set.
        min: f64,
        /// The largest set.
        max: f64,
    },
    /// A rate's non-zero samples among all.
    Rate {
        /// Non-zero samples.
        nonzero: u64,
    },
    /// A trend's distribution.
    Trend(TrendValues),
}

/// One (name, tags) series: its kind, whether it holds milliseconds, its sample count and
/// what they add up to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// Whether its values are milliseconds (a time trend).
    pub time: bool,
    /// Samples taken.
    pub samples: u64,
    /// What they add up to.
    pub values: Values,
}

impl Series {
    /// A counter's series: `samples` samples adding up to `sum`.
    pub fn counter(sum: f64, samples: u64) -> Self {
        Series {
            time: false,
            samples,
            values: Values::Counter { sum },
        }
    }

    /// A rate's series: `samples` samples, `nonzero` of them non-zero.
    pub fn rate(samples: u64, nonzero: u64) -> Self {
        Series {
            time: false,
            samples,
            values: Values::Rate { nonzero },
        }
    }

    /// A time trend's series from durations in µs (`histogram` of µs: a µs is the
    /// thousandth of a millisecond a trend keeps, so it is taken as it is).
    pub fn time_trend_us(
        count: u64,
        sum_us: u64,
        min_us: Option<u64>,
        max_us: Option<u64>,
        histogram: &Latencies,
    ) -> Self {
        Series {
            time: true,
            samples: count,
            values: Values::Trend(TrendValues {
                count,
                sum: sum_us as f64 / 1_000.0,
                min: min_us.map_or(f64::INFINITY, |m| m as f64 / 1_000.0),
                max: max_us.map_or(f64::NEG_INFINITY, |m| m as f64 / 1_000.0),
                histogram: histogram.clone(),
            }),
        }
    }

    /// An empty series of `kind`.
    pub fn new(kind: MetricKind, time: bool) -> Self {
        let values = match kind {
            MetricKind::Counter => Values::Counter { sum: 0.0 },
            MetricKind::Gauge => Values::Gauge {
                value: 0.0,
                at_us: 0,
                min: f64::INFINITY,
                max: f64::NEG_INFINITY,
            },
            MetricKind::Rate => Values::Rate { nonzero: 0 },
            MetricKind::Trend => Values::Trend(TrendValues::new()),
        };
        Series {
            time,
            samples: 0,
            values,
        }
    }

    /// Its kind.
    pub fn kind(&self) -> MetricKind {
        match self.values {
            Values::Counter { .. } => MetricKind::Counter,
            Values::Gauge { .. } => MetricKind::Gauge,
            Values::Rate { .. } => MetricKind::Rate,
            Values::Trend(_) => MetricKind::Trend,
        }
    }

    /// Adds one sample taken at `at_us` (checked by [`Metric::check`] first).
    pub fn add(&mut self, value: f64, at_us: u64) {
        self.samples += 1;
        match &mut self.values {
            Values::Counter { sum } => *sum += value,
            Values::Gauge {
                value: last,
                at_us: when,
                min,
                max,
            } => {
                if at_us >= *when {
                    *last = value;
                    *when = at_us;
                }
                *min = min.min(value);
                *max = max.max(value);
            }
            Values::Rate { nonzero } => *nonzero += u64::from(value != 0.0),
            Values::Trend(t) => {
                t.count += 1;
                t.sum += value;
                t.min = t.min.min(value);
                t.max = t.max.max(value);
                // In range by `Metric::check`: the cast neither wraps nor saturates.
                let _ = t.histogram.record((value * TREND_SCALE).round() as u64);
            }
        }
    }

    /// Adds `other` in; false (and nothing added) if it is of another kind.
    pub fn merge(&mut self, other: &Series) -> bool {
        match (&mut self.values, &other.values) {
            (Values::Counter { sum }, Values::Counter { sum: o }) => *sum += o,
            (
                Values::Gauge {
                    value,
                    at_us,
                    min,
                    max,
                },
                Values::Gauge {
                    value: ov,
                    at_us: oat,
                    min: omin,
                    max: omax,
                },
            ) => {
                if other.samples > 0 && (self.samples == 0 || *oat >= *at_us) {
                    *value = *ov;
                    *at_us = *oat;
                }
                *min = min.min(*omin);
                *max = max.max(*omax);
            }
            (Values::Rate { nonzero }, Values::Rate { nonzero: o }) => *nonzero += o,
            (Values::Trend(t), Values::Trend(o)) => {
                t.count += o.count;
                t.sum += o.sum;
                t.min = t.min.min(o.min);
                t.max = t.max.max(o.max);
                t.histogram.merge_from(&o.histogram);
            }
            _ => return false,
        }
        self.samples += other.samples;
        self.time |= other.time;
        true
    }

    /// The figure `aggregation` names, over `run_secs` for a counter's rate; `None` when
    /// there is no sample or the aggregation does not apply to this kind.
    pub fn value(&self, aggregation: Aggregation, run_secs: f64) -> Option<f64> {
        if self.samples == 0 {
            return None;
        }
        match (&self.values, aggregation) {
            (Values::Counter { sum }, Aggregation::Count) => Some(*sum),
            (Values::Counter { sum }, Aggregation::Rate) => {
                Some(if run_secs > 0.0 { sum / run_secs } else { 0.0 })
            }
            (Values::Gauge { value, .. }, Aggregation::Value) => Some(*value),
            (Values::Gauge { min, .. }, Aggregation::Min) => Some(*min),
            (Values::Gauge { max, .. }, Aggregation::Max) => Some(*max),
            (Values::Rate { nonzero }, Aggregation::Rate) => {
                Some(*nonzero as f64 / self.samples as f64)
            }
            (Values::Trend(t), Aggregation::Count) => Some(t.count as f64),
            (Values::Trend(t), Aggregation::Avg) => Some(t.sum / t.count as f64),
            (Values::Trend(t), Aggregation::Min) => Some(t.min),
            (Values::Trend(t), Aggregation::Max) => Some(t.max),
            (Values::Trend(t), Aggregation::Med) => t.percentile(0.5),
            (Values::Trend(t), Aggregation::Percentile(q)) => t.percentile(q / 100.0),
            _ => None,
        }
    }
}

/// How a series is read into one figure, as k6's thresholds name them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Aggregation {
    /// A counter's sum, a trend's sample count.
    Count,
    /// A counter's sum per second, a rate's non-zero share.
    Rate,
    /// A gauge's last value.
    Value,
    /// A trend's mean.
    Avg,
    /// A gauge's or trend's smallest value.
    Min,
    /// A gauge's or trend's largest value.
    Max,
    /// A trend's median.
    Med,
    /// A trend's percentile, 0 to 100.
    Percentile(f64),
}

impl Aggregation {
    /// Parses `count`, `rate`, `value`, `avg`, `min`, `max`, `med` or `p(N)` (N from 0
    /// to 100).
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "count" => Aggregation::Count,
            "rate" => Aggregation::Rate,
            "value" => Aggregation::Value,
            "avg" => Aggregation::Avg,
            "min" => Aggregation::Min,
            "max" => Aggregation::Max,
            "med" => Aggregation::Med,
            _ => {
                let n: f64 = text.strip_prefix("p(")?.strip_suffix(')')?.parse().ok()?;
                if !(0.0..=100.0).contains(&n) {
                    return None;
                }
                Aggregation::Percentile(n)
            }
        })
    }

    /// The aggregations a kind has, as written.
    pub fn of(kind: MetricKind) -> &'static str {
        match kind {
            MetricKind::Counter => "count, rate",
            MetricKind::Gauge => "value, min, max",
            MetricKind::Rate => "rate",
            MetricKind::Trend => "avg, min, med, max, p(N), count",
        }
    }
}

impl fmt::Display for Aggregation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Aggregation::Count => f.write_str("count"),
            Aggregation::Rate => f.write_str("rate"),
            Aggregation::Value => f.write_str("value"),
            Aggregation::Avg => f.write_str("avg"),
            Aggregation::Min => f.write_str("min"),
            Aggregation::Max => f.write_str("max"),
            Aggregation::Med => f.write_str("med"),
            Aggregation::Percentile(n) => write!(f, "p({n})"),
        }
    }
}

/// Tag sets a metric keeps apart. Past them, a new tag set's samples are counted under
/// [`folded_tags`], so that a tag whose value changes with every sample (an id) cannot
/// grow memory without bound; totals stay exact.
pub const MAX_TAG_SETS: usize = 1_000;

/// The tag set samples past a metric's [`MAX_TAG_SETS`] are counted under:
/// `{folded:true}`.
pub fn folded_tags() -> &'static Tags {
    static FOLDED: std::sync::OnceLock<Tags> = std::sync::OnceLock::new();
    FOLDED.get_or_init(|| Tags(vec![("folded".to_owned(), "true".to_owned())]))
}

/// Series by (name, tags), and the samples refused for a kind conflict.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricSet {
    /// By name, then tags.
    pub series: BTreeMap<String, BTreeMap<Tags, Series>>,
    /// Samples left out because their metric's name was already taken by another kind,
    /// by name.
    #[serde(default)]
    pub conflicts: BTreeMap<String, u64>,
}

impl MetricSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether no sample is held.
    pub fn is_empty(&self) -> bool {
        self.series
            .values()
            .all(|s| s.values().all(|s| s.samples == 0))
            && self.conflicts.is_empty()
    }

    /// The kind `name` has here, if any.
    pub fn kind_of(&self, name: &str) -> Option<MetricKind> {
        self.series
            .get(name)
            .and_then(|s| s.values().next())
            .map(Series::kind)
    }

    /// Adds one sample of `metric` under `tags` (checked by [`Metric::check`] first).
    pub fn add(&mut self, metric: &Metric, tags: &Tags, value: f64, at_us: u64) {
        // Found without building anything: a sample allocates only for a new series.
        if let Some(series) = self
            .series
            .get_mut(metric.name())
            .and_then(|by_tags| by_tags.get_mut(tags))
            && series.kind() == metric.kind
        {
            series.add(value, at_us);
            return;
        }
        let mut one = Series::new(metric.kind, metric.time);
        one.add(value, at_us);
        self.merge_series(metric.name(), tags, &one);
    }

    /// Adds one series in.
    pub fn merge_series(&mut self, name: &str, tags: &Tags, series: &Series) {
        self.merge_series_within(name, tags, series, MAX_TAG_SETS);
    }

    /// [`merge_series`](Self::merge_series) keeping up to `most` tag sets of a metric
    /// apart (a derived view of already bounded figures passes `usize::MAX`).
    pub(crate) fn merge_series_within(
        &mut self,
        name: &str,
        tags: &Tags,
        series: &Series,
        most: usize,
    ) {
        if self.kind_of(name).is_some_and(|k| k != series.kind()) {
            *self.conflicts.entry(name.to_owned()).or_default() += series.samples;
            return;
        }
        let by_tags = match self.series.get_mut(name) {
            Some(m) => m,
            None => self.series.entry(name.to_owned()).or_default(),
        };
        let full = by_tags.len() >= most;
        match by_tags.get_mut(tags) {
            Some(mine) => {
                mine.merge(series);
            }
            None if full => {
                // Too many tag sets (a tag whose value changes with every sample): the
                // samples are counted, under one tag set that says so.
                let folded = folded_tags();
                match by_tags.get_mut(folded) {
                    Some(mine) => {
                        mine.merge(series);
                    }
                    None => {
                        by_tags.insert(folded.clone(), series.clone());
                    }
                }
            }
            None => {
                by_tags.insert(tags.clone(), series.clone());
            }
        }
    }

    /// Samples of each metric counted under [`folded_tags`], past its [`MAX_TAG_SETS`].
    pub fn folded(&self) -> impl Iterator<Item = (&str, u64)> {
        self.series.iter().filter_map(|(name, by_tags)| {
            by_tags
                .get(folded_tags())
                .map(|s| (name.as_str(), s.samples))
        })
    }

    /// Adds `other` in, exactly.
    pub fn merge(&mut self, other: &MetricSet) {
        for (name, by_tags) in &other.series {
            for (tags, series) in by_tags {
                self.merge_series(name, tags, series);
            }
        }
        for (name, n) in &other.conflicts {
            *self.conflicts.entry(name.clone()).or_default() += n;
        }
    }

    /// Its trends' histograms compacted (see [`Latencies::compact`]).
    pub fn compact(&mut self) {
        for series in self.series.values_mut().flat_map(|s| s.values_mut()) {
            if let Values::Trend(t) = &mut series.values {
                t.histogram.compact();
            }
        }
    }

    /// The series of `name` whose tags hold every pair of `filter`, merged; `None` when
    /// no series matched.
    pub fn select(&self, name: &str, filter: &Tags) -> Option<Series> {
        let mut merged: Option<Series> = None;
        for (tags, series) in self.series.get(name)? {
            if !tags.contains_all(filter) {
                continue;
            }
            match &mut merged {
                Some(m) => {
                    m.merge(series);
                }
                None => merged = Some(series.clone()),
            }
        }
        merged
    }
}

#[cfg(test)]
mod tests;
