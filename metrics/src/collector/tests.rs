//! Tests of recorders and the collector.

use super::*;

fn collector(batch_size: usize, buffer_size: usize) -> MetricsCollector {
    let config = MetricsConfig {
        batch_size,
        flush_interval: Duration::from_secs(1),
        buffer_size,
        ..MetricsConfig::default()
    };
    MetricsCollector::new(config, RequestMetricsEvent::new()).unwrap()
}

fn ok(name: &str, t: u64) -> RequestRecord<'_> {
    RequestRecord::ok(name, "GET", 200, 100).at(t)
}

fn total(snaps: &[Snapshot]) -> EndpointStats {
    let mut all = Snapshot::new();
    for s in snaps {
        all.merge(s);
    }
    all.total()
}

#[test]
fn a_recorder_flushes_every_batch_size_records() {
    let c = collector(4, 16);
    let mut r = c.recorder();
    for _ in 0..3 {
        r.record(&ok("/a", 0));
    }
    assert_eq!(r.buffered(), 3);
    c.close_interval(1);
    assert!(
        total(&c.take_pending()).requests == 0,
        "nothing flushed yet"
    );
    r.record(&ok("/a", 0));
    assert_eq!(r.buffered(), 0);
    c.close_interval(2);
    assert_eq!(total(&c.take_pending()).requests, 4);
}

#[test]
fn a_recorder_flushes_when_its_oldest_record_is_a_flush_interval_old() {
    let c = collector(1_000, 16);
    let mut r = c.recorder();
    r.record(&ok("/a", 5_000_000));
    r.record(&ok("/a", 5_400_000));
    assert_eq!(r.buffered(), 2);
    r.record(&ok("/a", 6_000_000));
    assert_eq!(r.buffered(), 0, "1 s after the first record");
    r.record(&ok("/a", 6_100_000));
    r.flush_if_due(6_500_000);
    assert_eq!(r.buffered(), 1, "not due yet");
    r.flush_if_due(7_100_000);
    assert_eq!(r.buffered(), 0);
}

#[test]
fn iterations_are_flushed_once_the_oldest_is_a_flush_interval_old() {
    let config = MetricsConfig {
        batch_size: 1_000,
        flush_interval: Duration::from_millis(1),
        buffer_size: 16,
        ..MetricsConfig::default()
    };
    let c = MetricsCollector::new(config, RequestMetricsEvent::new()).unwrap();
    // A user whose recorder sees only iterations (its requests go through its client's
    // recorder): they must not wait for a full batch, or the live view lags by minutes.
    let mut r = c.recorder();
    r.record_iteration("s", 100, false);
    // The wall clock moves on past the flush interval.
    std::thread::sleep(Duration::from_millis(3));
    r.record_iteration("s", 100, false);
    c.close_interval(u64::MAX);
    let mut all = Snapshot::new();
    for s in c.take_pending() {
        all.merge(&s);
    }
    assert_eq!(
        all.scenarios()["s"].iterations,
        2,
        "flushed without the recorder dropped"
    );
    drop(r);
}

#[test]
fn named_checks_of_many_recorders_add_up_exactly_per_name() {
    let c = MetricsCollector::with_defaults();
    let (mut a, mut b) = (c.recorder(), c.recorder());
    for i in 0..10 {
        a.record_check("status is 200", true);
        a.record_check("has token", i % 5 != 0);
        b.record_check("has token", true);
    }
    assert_eq!(a.buffered(), 2, "one pending entry per name");
    a.flush();
    assert_eq!(a.buffered(), 0);
    c.close_interval(1);
    // Counted after a flush too, into the next interval.
    a.record_check("status is 200", false);
    drop((a, b));
    c.close_interval(2);
    let mut all = Snapshot::new();
    for s in c.take_pending() {
        all.merge(&s);
    }
    let checks = all.checks();
    let s = |n: &str| (checks[n].passes, checks[n].fails);
    assert_eq!(s("status is 200"), (10, 1));
    assert_eq!(s("has token"), (18, 2));
    assert!(!all.is_empty());
}

#[test]
fn past_max_endpoints_new_names_are_counted_under_other_in_bounded_memory() {
    let config = MetricsConfig {
        max_endpoints: 3,
        ..MetricsConfig::default()
    };
    let c = MetricsCollector::new(config, RequestMetricsEvent::new()).unwrap();
    let (mut a, mut b) = (c.recorder(), c.recorder());
    for i in 0..1_000u64 {
        // A unique id in every path: one name per request.
        let name = format!("/items/sku-{i}");
        let r = if i % 2 == 0 { &mut a } else { &mut b };
        r.record(&ok(&name, i));
    }
    let (na, nb) = (a.lock().endpoints.len(), b.lock().endpoints.len());
    assert!(
        na <= 4 && nb <= 4,
        "recorders remember no folded name: {na} {nb}"
    );
    drop((a, b));
    c.close_interval(u64::MAX);
    let mut all = Snapshot::new();
    for s in c.take_pending() {
        all.merge(&s);
    }
    assert_eq!(all.endpoints.len(), 4, "3 names and (other)");
    assert_eq!(all.total().requests, 1_000, "every request counted");
    let other = all
        .endpoints
        .iter()
        .find(|(k, _)| k.name == OTHER_ENDPOINT)
        .map(|(_, s)| s.requests);
    assert_eq!(other, Some(997));
    let err = MetricsCollector::new(
        MetricsConfig {
            max_endpoints: 0,
            ..MetricsConfig::default()
        },
        RequestMetricsEvent::new(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "metrics max_endpoints must be from 1 to 100000, got 0"
    );
}

/// A name admitted before the bound was reached keeps its own row in every recorder,
/// including one that meets it only after the bound was reached elsewhere.
#[test]
fn a_name_admitted_before_the_bound_is_never_folded() {
    let config = MetricsConfig {
        max_endpoints: 2,
        ..MetricsConfig::default()
    };
    let c = MetricsCollector::new(config, RequestMetricsEvent::new()).unwrap();
    let (mut a, mut b) = (c.recorder(), c.recorder());
    a.record(&ok("/a", 1));
    a.record(&ok("/b", 2));
    a.record(&ok("/c", 3));
    for i in 0..10 {
        b.record(&ok("/a", 10 + i));
        b.record(&ok("/d", 30 + i));
    }
    drop((a, b));
    c.close_interval(u64::MAX);
    let mut all = Snapshot::new();
    for s in c.take_pending() {
        all.merge(&s);
    }
    let count = |name: &str| {
        all.endpoints
            .iter()
            .find(|(k, _)| k.name == name)
            .map(|(_, s)| s.requests)
    };
    assert_eq!(count("/a"), Some(11));
    assert_eq!(count("/b"), Some(1));
    assert_eq!(count(OTHER_ENDPOINT), Some(11), "/c and the ten /d");
}

#[test]
fn dropping_a_recorder_flushes_its_last_records() {
    let c = collector(1_000, 16);
    let mut r = c.recorder();
    r.record(&ok("/a", 1));
    drop(r);
    let mut sink = Vec::new();
    c.flush_to(&mut sink, 10);
    assert_eq!(total(&sink).requests, 1);
}

#[test]
fn endpoints_stay_known_across_intervals() {
    let c = collector(1, 16);
    let mut r = c.recorder();
    r.record(&ok("/a", 1));
    c.close_interval(10);
    r.record(&ok("/a", 1_000_011));
    r.record(&ok("/b", 1_000_012));
    c.close_interval(20);
    r.record(&ok("/b", 2_000_021));
    c.close_interval(30);
    let p = c.take_pending();
    let counts: Vec<u64> = p.iter().map(|s| s.total().requests).collect();
    assert_eq!(counts, [1, 2, 1]);
    assert_eq!(p[1].start_us, Some(1_000_000));
    assert_eq!(p[1].end_us, Some(2_000_000));
}

#[test]
fn records_are_filed_under_the_interval_of_their_own_time_whenever_they_arrive() {
    let c = collector(1_000, 16);
    let (mut early, mut late) = (c.recorder(), c.recorder());
    // Seconds 5 and 6, in one batch; a batch of second 5 that arrives after second 5 was
    // handed on is filed under second 5 again, never under the second it arrived in.
    early.record(&ok("/a", 5_100_000));
    early.record(&ok("/a", 5_900_000));
    early.record(&ok("/a", 6_200_000));
    late.record(&ok("/a", 5_500_000));
    early.record_iteration("s", 10, false);
    early.flush();
    c.close_interval(6_300_000);
    late.flush();
    c.close_interval(7_000_000);
    let p = c.take_pending();
    // (The iteration is filed at the wall clock's second: a snapshot of its own.)
    let spans: Vec<(Option<u64>, u64)> = p
        .iter()
        .filter(|s| s.total().requests > 0)
        .map(|s| (s.start_us, s.total().requests))
        .collect();
    assert_eq!(
        spans,
        [
            (Some(5_000_000), 2),
            (Some(6_000_000), 1),
            (Some(5_000_000), 1)
        ]
    );
    assert_eq!(
        p.iter().filter(|s| s.scenarios().contains_key("s")).count(),
        1
    );
}

#[test]
fn a_slow_sink_makes_intervals_merge_not_queue_and_nothing_is_lost() {
    let c = collector(1, 2);
    let mut r = c.recorder();
    for i in 0..5u64 {
        for _ in 0..=i {
            r.record(&ok("/a", i * 1_000_000 + 1));
        }
        c.close_interval(i * 1_000_000 + 10);
    }
    let p = c.take_pending();
    assert_eq!(p.len(), 2, "bounded by buffer_size");
    assert_eq!(c.merged_intervals(), 3);
    assert_eq!(total(&p).requests, 1 + 2 + 3 + 4 + 5);
    assert_eq!(p[0].start_us, Some(0));
    assert_eq!(p[0].end_us, Some(4_000_000));
    assert_eq!(p[1].start_us, Some(4_000_000));
}

#[test]
fn recorders_on_many_threads_lose_nothing() {
    let c = collector(64, 4);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let c = c.clone();
            std::thread::spawn(move || {
                let mut r = c.recorder();
                let names = ["/a", "/b", "/c"];
                for i in 0..10_000u64 {
                    let name = names[(i as usize + t) % 3];
                    r.record(&RequestRecord::ok(name, "GET", 200, 1 + i % 5_000).at(i));
                    if i % 2_500 == 0 {
                        c.close_interval(i);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let mut sink = Vec::new();
    c.flush_to(&mut sink, 20_000);
    let t = total(&sink);
    assert_eq!(t.requests, 40_000);
    assert_eq!(t.histogram.len(), 40_000);
}

#[test]
fn failures_keep_their_messages_up_to_a_bound() {
    let c = collector(10_000, 4);
    let mut r = c.recorder();
    for i in 0..100 {
        let msg = format!("error {i:03}");
        r.record(&ok("/a", 0).failed(ErrorCategory::Other, Some(&msg)));
    }
    r.record(&ok("/a", 0).failed(ErrorCategory::Timeout, None));
    drop(r);
    let mut sink = Vec::new();
    c.flush_to(&mut sink, 1);
    let t = total(&sink);
    assert_eq!(t.failures, 101);
    assert_eq!(t.errors.total(), 101);
    assert_eq!(t.errors.kept.len(), crate::stats::MAX_ERROR_MESSAGES);
}

#[test]
fn a_resolved_endpoint_records_like_its_strings_and_only_on_its_collector() {
    let c = collector(1, 16);
    let mut r = c.recorder();
    let a = r.endpoint("default", "/a", "GET", Tags::none());
    assert_eq!(r.endpoint("default", "/a", "GET", Tags::none()), a);
    r.record_at(a, &ok("/a", 1));
    r.record(&ok("/a", 2));
    // An endpoint of another collector is not trusted: the record's strings decide.
    let other = collector(1, 16)
        .recorder()
        .endpoint("default", "/z", "GET", Tags::none());
    r.record_at(other, &ok("/b", 3));
    c.close_interval(10);
    let snap = c.take_pending().remove(0);
    let count = |name: &str| {
        snap.endpoints
            .get(&EndpointKey::new("default", name, "GET"))
            .map_or(0, |e| e.requests)
    };
    assert_eq!((count("/a"), count("/b"), count("/z")), (2, 1, 0));
}

#[test]
fn handlers_see_every_record() {
    let event = RequestMetricsEvent::new();
    let seen = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let s = Arc::clone(&seen);
    event.add_handler(
        move |r: &RequestRecord<'_>| {
            s.fetch_add(r.duration_us, std::sync::atomic::Ordering::Relaxed);
        },
        0,
    );
    let c = MetricsCollector::new(MetricsConfig::default(), event).unwrap();
    let mut r = c.recorder();
    r.record(&ok("/a", 0));
    r.record(&ok("/b", 0));
    assert_eq!(seen.load(std::sync::atomic::Ordering::Relaxed), 200);
}

#[test]
fn bad_settings_are_refused() {
    let bad = |batch_size, flush_ms, buffer_size| MetricsConfig {
        batch_size,
        flush_interval: Duration::from_millis(flush_ms),
        buffer_size,
        ..MetricsConfig::default()
    };
    let err = |c: MetricsConfig| {
        MetricsCollector::new(c, RequestMetricsEvent::new())
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        err(bad(0, 1000, 1)),
        "metrics batch_size must be at least 1"
    );
    assert_eq!(
        err(bad(1, 1000, 0)),
        "metrics buffer_size must be at least 1"
    );
    assert_eq!(
        err(bad(1, 0, 1)),
        "metrics flush_interval must be at least 1ms, got 0ns"
    );
}

#[test]
fn an_idle_users_batch_is_due_before_its_interval_closes_and_flushes_on_demand() {
    let c = collector(1_000, 16);
    let mut r = c.recorder();
    let idle = r.idle();
    assert_eq!(idle.due_us(), None, "nothing buffered");
    r.record(&ok("/a", 5_300_000));
    r.record(&ok("/a", 5_800_000));
    // Half a flush interval after the oldest record's second ends.
    assert_eq!(idle.due_us(), Some(6_500_000));
    idle.flush();
    assert_eq!(r.buffered(), 0);
    assert_eq!(idle.due_us(), None);
    c.close_interval(0);
    assert_eq!(total(&c.take_pending()).requests, 2);
    drop(r);
    idle.flush();
    assert_eq!(idle.due_us(), None, "a dropped recorder is not kept alive");
}

#[test]
fn metric_samples_land_in_the_interval_they_were_taken_in() {
    use crate::model::{Aggregation, Metric, Tags};
    let c = collector(1_000, 16);
    let mut r = c.recorder();
    let orders = Metric::counter("orders").unwrap();
    let eu = Tags::from_pairs([("shop", "eu")]).unwrap();
    r.add_at(&orders, 2.0, &eu, 5_100_000).unwrap();
    r.add_at(&orders, 3.0, &eu, 5_900_000).unwrap();
    assert_eq!(r.buffered(), 1, "one series pending");
    // The next second's sample sends the earlier ones first, to their own interval.
    r.add_at(&orders, 4.0, &Tags::new(), 6_200_000).unwrap();
    assert!(r.add_at(&orders, f64::NAN, &eu, 6_300_000).is_err());
    drop(r);
    c.close_interval(0);
    let snaps = c.take_pending();
    assert_eq!(snaps.len(), 2);
    let read = |s: &Snapshot, tags: &Tags| {
        s.metrics
            .select("orders", tags)
            .and_then(|x| x.value(Aggregation::Count, 1.0))
    };
    assert_eq!(snaps[0].start_us, Some(5_000_000));
    assert_eq!(read(&snaps[0], &eu), Some(5.0));
    assert_eq!(read(&snaps[1], &Tags::new()), Some(4.0));
    assert_eq!(read(&snaps[1], &eu), None);
}

#[test]
fn a_tagged_collectors_recorders_put_its_tags_on_every_sample() {
    use crate::model::{Aggregation, Metric, Tags};
    let c = collector(1_000, 16);
    let scenario = c.tagged(Tags::from_pairs([("scenario", "shop"), ("env", "ci")]).unwrap());
    let mut r = scenario.recorder();
    let orders = Metric::counter("orders").unwrap();
    r.add_at(&orders, 1.0, &Tags::new(), 5_000_000).unwrap();
    // The sample's own tag wins over the collector's.
    r.add_at(
        &orders,
        2.0,
        &Tags::from_pairs([("env", "prod")]).unwrap(),
        5_000_001,
    )
    .unwrap();
    drop(r);
    c.close_interval(0);
    let mut all = Snapshot::new();
    for s in c.take_pending() {
        all.merge(&s);
    }
    let count = |pairs: &[(&str, &str)]| {
        all.metrics
            .select("orders", &Tags::from_pairs(pairs.iter().copied()).unwrap())
            .and_then(|s| s.value(Aggregation::Count, 1.0))
    };
    assert_eq!(count(&[("scenario", "shop"), ("env", "ci")]), Some(1.0));
    assert_eq!(count(&[("scenario", "shop"), ("env", "prod")]), Some(2.0));
    assert_eq!(count(&[("scenario", "shop")]), Some(3.0));
}

/// Own tags are merged with the collector's once per distinct set while few repeat; past
/// the sets kept, older ones are merged again when they come back, and nothing is lost.
#[test]
fn many_distinct_own_tag_sets_are_each_counted_under_their_own_tags() {
    use crate::model::{Aggregation, Metric, Tags};
    let c = collector(1_000, 1_000_000);
    let scenario = c.tagged(Tags::from_pairs([("scenario", "shop")]).unwrap());
    let mut r = scenario.recorder();
    let orders = Metric::counter("orders").unwrap();
    let sets = MERGED_TAGS_KEPT * 2 + 3;
    for round in 0..3 {
        for i in 0..sets {
            let own = Tags::from_pairs([("page", i.to_string().as_str())]).unwrap();
            r.add_at(&orders, 1.0, &own, 5_000_000 + round).unwrap();
        }
    }
    drop(r);
    c.close_interval(0);
    let mut all = Snapshot::new();
    for s in c.take_pending() {
        all.merge(&s);
    }
    let series = &all.metrics.series["orders"];
    assert_eq!(series.len(), sets);
    for (tags, s) in series {
        assert_eq!(tags.get("scenario"), Some("shop"), "{tags}");
        assert_eq!(s.value(Aggregation::Count, 1.0), Some(3.0), "{tags}");
    }
}

#[test]
fn samples_under_kept_tags_are_filed_like_any_other() {
    use crate::model::{Aggregation, Metric, Tags};
    let c = collector(1_000, 16);
    let scenario = c.tagged(Tags::from_pairs([("scenario", "shop")]).unwrap());
    let mut r = scenario.recorder();
    let (wait, sent) = (
        Metric::time_trend("wait").unwrap(),
        Metric::counter("sent").unwrap(),
    );
    let own = Tags::from_pairs([("name", "/a")]).unwrap();
    let full = Arc::new(r.full_tags(&own));
    assert_eq!(
        full.get("scenario"),
        Some("shop"),
        "the collector's tags are in"
    );
    for (i, at) in [5_100_000u64, 5_200_000, 6_100_000].into_iter().enumerate() {
        r.add_all_under(&[(&wait, 10.0 * (i + 1) as f64), (&sent, 1.0)], &full, at)
            .unwrap();
    }
    // The same tags made again (another address) and the plain form add to the same
    // series; a bad value records nothing of the others.
    let again = Arc::new(r.full_tags(&own));
    r.add_all_under(&[(&sent, 1.0)], &again, 6_200_000).unwrap();
    r.add_at(&sent, 1.0, &own, 6_300_000).unwrap();
    assert!(
        r.add_all_under(&[(&sent, 1.0), (&wait, -1.0)], &full, 6_400_000)
            .is_err()
    );
    drop(r);
    c.close_interval(0);
    let snaps = c.take_pending();
    assert_eq!(snaps.len(), 2, "filed by their own time");
    let read = |s: &Snapshot, name: &str, agg| {
        s.metrics.select(name, &own).and_then(|x| x.value(agg, 1.0))
    };
    assert_eq!(read(&snaps[0], "wait", Aggregation::Max), Some(20.0));
    assert_eq!(read(&snaps[0], "sent", Aggregation::Count), Some(2.0));
    assert_eq!(read(&snaps[1], "wait", Aggregation::Count), Some(1.0));
    assert_eq!(read(&snaps[1], "sent", Aggregation::Count), Some(3.0));
    assert_eq!(snaps[1].metrics.series["sent"].len(), 1, "one series");
}
