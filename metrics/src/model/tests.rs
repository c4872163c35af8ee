use super::*;

fn tags(pairs: &[(&str, &str)]) -> Tags {
    Tags::from_pairs(pairs.iter().copied()).unwrap()
}

#[test]
fn names_tags_and_values_are_checked() {
    assert!(Metric::counter("orders_placed").is_ok());
    for bad in ["", "9lives", "with space", "dash-ed", &"x".repeat(129)] {
        assert!(
            matches!(Metric::counter(bad), Err(MetricError::BadName(_))),
            "{bad:?}"
        );
    }
    let t = Metric::trend("t").unwrap();
    assert!(t.check(-1.0).is_err());
    assert!(t.check(f64::NAN).is_err());
    assert!(t.check(2e12).is_err());
    assert!(t.check(0.0).is_ok());
    let g = Metric::gauge("g").unwrap();
    assert!(g.check(-5.0).is_ok());
    assert!(g.check(f64::INFINITY).is_err());
    let mut tg = Tags::new();
    assert!(tg.insert("", "x").is_err());
    assert!(tg.insert("a:b", "x").is_err());
    assert!(tg.insert("k", &"v".repeat(513)).is_err());
}

#[test]
fn tags_are_sorted_and_a_key_keeps_its_last_value() {
    let t = tags(&[("page", "home"), ("env", "ci"), ("page", "cart")]);
    assert_eq!(t.to_string(), "{env:ci,page:cart}");
    assert!(t.contains_all(&tags(&[("page", "cart")])));
    assert!(!t.contains_all(&tags(&[("page", "home")])));
    assert!(t.contains_all(&Tags::new()));
}

#[test]
fn each_kind_adds_up_and_reads_as_k6_does() {
    let mut set = MetricSet::new();
    let c = Metric::counter("c").unwrap();
    let g = Metric::gauge("g").unwrap();
    let r = Metric::rate("r").unwrap();
    let t = Metric::time_trend("t").unwrap();
    let none = Tags::new();
    set.add(&c, &none, 2.0, 1);
    set.add(&c, &none, 3.5, 2);
    // The last value by time, not by arrival.
    set.add(&g, &none, 7.0, 20);
    set.add(&g, &none, -3.0, 10);
    set.add(&g, &none, 12.0, 15);
    for v in [1.0, 0.0, 1.0, 1.0] {
        set.add(&r, &none, v, 1);
    }
    for v in 1..=100 {
        set.add(&t, &none, f64::from(v), 1);
    }
    let read = |name: &str, a: Aggregation| set.select(name, &none).unwrap().value(a, 2.0);
    assert_eq!(read("c", Aggregation::Count), Some(5.5));
    assert_eq!(read("c", Aggregation::Rate), Some(2.75));
    assert_eq!(read("g", Aggregation::Value), Some(7.0));
    assert_eq!(read("g", Aggregation::Min), Some(-3.0));
    assert_eq!(read("g", Aggregation::Max), Some(12.0));
    assert_eq!(read("r", Aggregation::Rate), Some(0.75));
    assert_eq!(read("t", Aggregation::Avg), Some(50.5));
    assert_eq!(read("t", Aggregation::Min), Some(1.0));
    assert_eq!(read("t", Aggregation::Max), Some(100.0));
    assert_eq!(read("t", Aggregation::Count), Some(100.0));
    let med = read("t", Aggregation::Med).unwrap();
    assert!((med - 50.0).abs() <= 0.05, "{med}");
    let p95 = read("t", Aggregation::Percentile(95.0)).unwrap();
    assert!((p95 - 95.0).abs() <= 0.1, "{p95}");
    // An aggregation the kind has not: no figure.
    assert_eq!(read("c", Aggregation::Avg), None);
    assert_eq!(read("r", Aggregation::Count), None);
    assert!(set.select("missing", &none).is_none());
}

#[test]
fn sets_merge_exactly_whatever_the_split() {
    // One stream of samples, split over three "workers" in turns, merges to the set
    // that took them all.
    let t = Metric::trend("lat").unwrap();
    let g = Metric::gauge("depth").unwrap();
    let mut whole = MetricSet::new();
    let mut parts = [MetricSet::new(), MetricSet::new(), MetricSet::new()];
    for i in 0..3_000u64 {
        let tg = tags(&[("page", if i % 3 == 0 { "home" } else { "cart" })]);
        let v = (i * 7919 % 5_000) as f64 / 10.0;
        whole.add(&t, &tg, v, i);
        whole.add(&g, &Tags::new(), v, i);
        parts[(i % 3) as usize].add(&t, &tg, v, i);
        parts[(i % 3) as usize].add(&g, &Tags::new(), v, i);
    }
    let mut merged = MetricSet::new();
    for p in parts.iter().rev() {
        merged.merge(p);
    }
    assert_eq!(merged, whole);
    let home = merged.select("lat", &tags(&[("page", "home")])).unwrap();
    assert_eq!(home.samples, 1_000);
    assert_eq!(merged.select("lat", &Tags::new()).unwrap().samples, 3_000);
    // The gauge's last value is the latest sample's, merged in any order.
    let last = (2_999u64 * 7919 % 5_000) as f64 / 10.0;
    assert_eq!(
        merged
            .select("depth", &Tags::new())
            .unwrap()
            .value(Aggregation::Value, 1.0),
        Some(last)
    );
    // Across the wire too.
    let bytes = rmp_serde::to_vec(&merged).unwrap();
    let back: MetricSet = rmp_serde::from_slice(&bytes).unwrap();
    assert_eq!(back, whole);
}

/// A tag whose value changes with every sample: the first MAX_TAG_SETS tag sets are
/// kept apart, the rest counted under {folded:true}, the total exact, and a merge of two
/// bounded sets stays bounded.
#[test]
fn tag_sets_past_the_bound_fold_and_totals_stay_exact() {
    let m = Metric::counter("by_user").unwrap();
    let fill = |from: usize| {
        let mut set = MetricSet::new();
        for i in from..from + MAX_TAG_SETS + 500 {
            set.add(&m, &tags(&[("user", &i.to_string())]), 1.0, 1);
        }
        set
    };
    let a = fill(0);
    let by_tags = &a.series["by_user"];
    assert_eq!(by_tags.len(), MAX_TAG_SETS + 1);
    assert_eq!(by_tags[folded_tags()].samples, 500);
    assert_eq!(a.folded().collect::<Vec<_>>(), [("by_user", 500)]);
    let mut both = a.clone();
    both.merge(&fill(5_000));
    assert_eq!(both.series["by_user"].len(), MAX_TAG_SETS + 1);
    let total = both.select("by_user", &Tags::new()).unwrap();
    assert_eq!(total.value(Aggregation::Count, 1.0), Some(3_000.0));
}

#[test]
fn a_name_taken_by_another_kind_counts_its_samples_as_conflicts() {
    let mut set = MetricSet::new();
    set.add(&Metric::counter("x").unwrap(), &Tags::new(), 1.0, 1);
    set.add(&Metric::trend("x").unwrap(), &Tags::new(), 1.0, 1);
    set.add(&Metric::trend("x").unwrap(), &Tags::new(), 2.0, 1);
    assert_eq!(set.kind_of("x"), Some(MetricKind::Counter));
    assert_eq!(set.conflicts.get("x"), Some(&2));
    assert!(!set.is_empty());
}

#[test]
fn aggregations_parse_as_k6_writes_them() {
    assert_eq!(
        Aggregation::parse("p(95)"),
        Some(Aggregation::Percentile(95.0))
    );
    assert_eq!(
        Aggregation::parse("p(99.9)"),
        Some(Aggregation::Percentile(99.9))
    );
    assert_eq!(Aggregation::parse("med"), Some(Aggregation::Med));
    assert_eq!(Aggregation::parse("p(101)"), None);
    assert_eq!(Aggregation::parse("p95"), None);
    assert_eq!(Aggregation::Percentile(95.0).to_string(), "p(95)");
}
