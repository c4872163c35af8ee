//! Key=value tags on requests and k6's groups: what each request, check and group
//! duration is counted under.

use std::collections::BTreeMap;

use aiotest_metrics::{Aggregation, EndpointKey, Tags, builtin_metrics};

use crate::server::start;
use crate::{client, collector, finish};

fn tags(pairs: &[(&str, &str)]) -> Tags {
    Tags::from_pairs(pairs.iter().copied()).unwrap()
}

fn key(name: &str, pairs: &[(&str, &str)]) -> EndpointKey {
    EndpointKey::tagged("default", name, "GET", &tags(pairs))
}

#[tokio::test]
async fn tagged_and_grouped_requests_are_counted_apart() {
    let srv = start(false);
    let c = collector();
    let mut client = client(&srv.url("http"), &c);
    client.get("/ok").send().await;
    client.get("/ok").tag("team", "web").send().await;
    client.get("/ok").tag("team", "web").send().await;
    let inner = client
        .group("checkout", |c| {
            Box::pin(async move {
                c.get("/ok").send().await;
                c.check("in checkout", true);
                c.group("pay", |c| {
                    Box::pin(async move {
                        let r = c.get("/ok").tag("team", "web").send().await;
                        c.check("paid", r.status_code() == 200);
                        c.group_path().to_owned()
                    })
                })
                .await
            })
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(inner, "::checkout::pay");
    assert_eq!(client.group_path(), "", "left every group");
    client.check("outside", false);
    // A bad group name: refused, its body never runs, the path unchanged.
    let mut ran = false;
    let bad = client
        .group("a::b", |_| {
            ran = true;
            Box::pin(async {})
        })
        .await;
    assert!(bad.is_err() && !ran);
    // `name` names the request; a system tag fails it unsent.
    client.get("/ok").tag("name", "/named").send().await;
    let r = client.get("/ok").tag("status", "x").send().await;
    assert!(r.error().unwrap().message.contains("system tag"), "{r:?}");
    let s = finish(client, &c);

    let n = |k: &EndpointKey| s.endpoints.get(k).map_or(0, |e| e.requests);
    // The plain one, and the one failed unsent (counted, as every failed request is).
    assert_eq!(n(&key("/ok", &[])), 2);
    assert_eq!(s.endpoints[&key("/ok", &[])].failures, 1);
    assert_eq!(n(&key("/ok", &[("team", "web")])), 2);
    assert_eq!(n(&key("/ok", &[("group", "::checkout")])), 1);
    assert_eq!(
        n(&key(
            "/ok",
            &[("group", "::checkout::pay"), ("team", "web")]
        )),
        1
    );
    assert_eq!(n(&key("/named", &[])), 1);
    assert_eq!(
        srv.seen.requests.load(std::sync::atomic::Ordering::Relaxed),
        6,
        "the unsent request never reached the target"
    );
    assert_eq!(key("/ok", &[("team", "web")]).label(), "/ok {team:web}");

    // Checks by path, as k6 has them.
    let checks = s.checks();
    let checks: Vec<&str> = checks.keys().map(String::as_str).collect();
    assert_eq!(
        checks,
        [
            "::checkout::in checkout",
            "::checkout::pay::paid",
            "outside"
        ]
    );

    // One group_duration sample per group run, the inner one within the outer.
    let d = |g: &str| {
        s.metrics
            .select("group_duration", &tags(&[("group", g)]))
            .unwrap()
    };
    let (outer, inner) = (d("::checkout"), d("::checkout::pay"));
    assert_eq!((outer.samples, inner.samples), (1, 1));
    let max = |s: &aiotest_metrics::Series| s.value(Aggregation::Max, 1.0).unwrap();
    assert!(
        max(&inner) > 0.0 && max(&inner) <= max(&outer),
        "{inner:?} {outer:?}"
    );

    // The built-in view reads the same tags.
    let view = builtin_metrics(&s, &BTreeMap::new(), |_| true);
    let count = |f: &[(&str, &str)]| {
        view.select("http_reqs", &tags(f))
            .and_then(|s| s.value(Aggregation::Count, 1.0))
    };
    assert_eq!(count(&[("team", "web")]), Some(3.0));
    assert_eq!(
        count(&[("group", "::checkout::pay"), ("status", "200")]),
        Some(1.0)
    );
    let rate = |f: &[(&str, &str)]| {
        view.select("checks", &tags(f))
            .and_then(|s| s.value(Aggregation::Rate, 1.0))
    };
    assert_eq!(rate(&[("group", "::checkout::pay")]), Some(1.0));
    assert_eq!(rate(&[]), Some(2.0 / 3.0));
}

#[tokio::test]
async fn a_cancelled_groups_run_is_left_at_the_end_of_the_iteration() {
    let srv = start(false);
    let c = collector();
    let mut client = client(&srv.url("http"), &c);
    let cut = tokio::time::timeout(
        std::time::Duration::from_millis(20),
        client.group("slow", |_| {
            Box::pin(async { tokio::time::sleep(std::time::Duration::from_secs(30)).await })
        }),
    )
    .await;
    assert!(cut.is_err(), "the body was cancelled");
    assert_eq!(client.group_path(), "::slow", "still open");
    client.end_iteration();
    assert_eq!(client.group_path(), "");
    client.get("/ok").send().await;
    let s = finish(client, &c);
    assert_eq!(
        s.endpoints[&key("/ok", &[])].requests,
        1,
        "counted outside the group"
    );
    assert!(
        s.metrics.select("group_duration", &Tags::new()).is_none(),
        "a cancelled run has no duration"
    );
}
