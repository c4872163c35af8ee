//! The timing breakdown against servers that take known times: a delay before the first
//! byte, a body dripped in parts, a slow reader of a large request, TLS.

use std::time::Duration;

use aiotest_http_user::Timings;

use crate::awkward::serve;
use crate::server::{start, start_tls_h1};
use crate::{client, collector};

fn ms(t: Duration) -> f64 {
    t.as_secs_f64() * 1_000.0
}

/// The parts add up to the duration, to the microsecond each part is rounded to.
fn adds_up(t: &Timings, duration: Duration) {
    let sum = t.duration().as_micros() as i128;
    let d = duration.as_micros() as i128;
    assert!((sum - d).abs() <= 3, "{t:?} vs {duration:?}");
}

#[tokio::test]
async fn waiting_and_receiving_match_a_servers_delay_and_drip() {
    // 150 ms before the first byte; the body in three parts 100 ms apart.
    let srv = serve(|mut conn| {
        while conn.request(true).is_some() {
            std::thread::sleep(Duration::from_millis(150));
            conn.write(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nab");
            std::thread::sleep(Duration::from_millis(100));
            conn.write(b"cd");
            std::thread::sleep(Duration::from_millis(100));
            if !conn.write(b"ef") {
                return;
            }
        }
    });
    let c = collector();
    let mut client = client(&srv.url(), &c);
    for i in 0..2 {
        let r = client.get("/drip").send().await;
        assert_eq!(r.text(), "abcdef");
        let t = *r.timings();
        // The server cannot answer before 150 ms nor finish before 350 ms; how soon the
        // client's task sees each read moves the line between the two by the
        // scheduling noise of a loaded 2-core machine (20 ms allowed).
        assert!((150.0..220.0).contains(&ms(t.waiting())), "{i}: {t:?}");
        assert!((180.0..260.0).contains(&ms(t.receiving())), "{i}: {t:?}");
        assert!(ms(t.waiting() + t.receiving()) >= 350.0, "{i}: {t:?}");
        assert_eq!(t.tls_handshaking(), Duration::ZERO, "http has no TLS");
        assert_eq!(t.proto(), "HTTP/1.1");
        adds_up(&t, r.duration());
        if i == 0 {
            assert!(
                t.connecting() > Duration::ZERO,
                "it opened the connection: {t:?}"
            );
        } else {
            assert_eq!(t.connecting(), Duration::ZERO, "kept alive: {t:?}");
            assert_eq!(t.blocked(), Duration::ZERO, "kept alive: {t:?}");
        }
    }
}

#[tokio::test]
async fn an_answer_read_whole_at_once_was_all_waiting() {
    let srv = start(false);
    let c = collector();
    let mut client = client(&srv.url("http"), &c);
    let _ = client.get("/ok").send().await;
    let r = client.get("/ok").send().await;
    let t = *r.timings();
    assert_eq!(t.receiving(), Duration::ZERO, "{t:?}");
    assert_eq!(t.waiting().as_micros(), r.duration().as_micros(), "{t:?}");
}

#[tokio::test]
async fn a_large_request_to_a_slow_reader_is_sending() {
    // The server reads the head, waits 200 ms, then reads the 8 MiB body.
    let srv = serve(|mut conn| {
        let Some(_) = conn.request(false) else { return };
        std::thread::sleep(Duration::from_millis(200));
        conn.drain_body(8 << 20);
        conn.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
    });
    let c = collector();
    let mut client = client(&srv.url(), &c);
    let r = client
        .post("/upload")
        .body(vec![b'x'; 8 << 20])
        .send()
        .await;
    assert!(r.is_ok(), "{:?}", r.error());
    let t = *r.timings();
    assert!(ms(t.sending()) >= 150.0, "{t:?}");
    assert!(ms(t.waiting()) < 100.0, "{t:?}");
    adds_up(&t, r.duration());
}

#[tokio::test]
async fn tls_handshaking_counts_for_the_request_that_opened_the_connection() {
    for (srv, proto) in [(start_tls_h1(), "HTTP/1.1"), (start(true), "HTTP/2.0")] {
        let c = collector();
        let mut client = crate::insecure_client(&srv.url("https"), &c);
        let first = *client.get("/ok").send().await.timings();
        let second = *client.get("/ok").send().await.timings();
        assert!(first.tls_handshaking() > Duration::ZERO, "{first:?}");
        assert!(first.connecting() > Duration::ZERO, "{first:?}");
        assert_eq!(second.tls_handshaking(), Duration::ZERO, "{second:?}");
        assert_eq!(second.connecting(), Duration::ZERO, "{second:?}");
        assert_eq!((first.proto(), second.proto()), (proto, proto));
    }
}

#[tokio::test]
async fn a_request_with_no_answer_has_no_protocol_nor_parts() {
    let c = collector();
    let mut client = client(
        &format!("http://127.0.0.1:{}", crate::server::closed_port()),
        &c,
    );
    let r = client.get("/").send().await;
    assert!(!r.is_ok());
    assert_eq!(*r.timings(), Timings::default());
    assert_eq!(r.timings().proto(), "");
}

/// With the collector's `timing_trends`, each part is a sample of k6's trend under the
/// request's system tags; without, none is kept.
#[tokio::test]
async fn the_breakdown_is_kept_as_k6s_trends_when_asked() {
    use aiotest_metrics::{
        Aggregation, MetricsCollector, MetricsConfig, RequestMetricsEvent, Tags,
    };
    let srv = serve(|mut conn| {
        while conn.request(true).is_some() {
            std::thread::sleep(Duration::from_millis(100));
            if !conn.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\nno") {
                return;
            }
        }
    });
    let config = MetricsConfig {
        timing_trends: true,
        ..MetricsConfig::default()
    };
    let c = MetricsCollector::new(config, RequestMetricsEvent::new()).unwrap();
    let mut client = client(&srv.url(), &c);
    for _ in 0..3 {
        let r = client.get("/gone").tag("team", "web").send().await;
        // An answer in one read is all waiting, on a new connection as on a kept one.
        let t = r.timings();
        assert!(
            ms(t.waiting()) >= 100.0 && t.receiving() == Duration::ZERO,
            "{t:?}"
        );
    }
    let s = crate::finish(client, &c);
    let tags = Tags::from_pairs([
        ("name", "/gone"),
        ("method", "GET"),
        ("status", "404"),
        ("proto", "HTTP/1.1"),
        ("expected_response", "false"),
        ("error_code", "1404"),
        ("team", "web"),
    ])
    .unwrap();
    let series = |name: &str| {
        s.metrics
            .select(name, &tags)
            .unwrap_or_else(|| panic!("no {name}{tags}: {:?}", s.metrics.series.keys()))
    };
    let waiting = series("http_req_waiting");
    assert_eq!(waiting.samples, 3);
    let min = waiting.value(Aggregation::Min, 1.0).unwrap();
    assert!((100.0..170.0).contains(&min), "{waiting:?}");
    // One request opened the connection: the others' connecting time is 0.
    let connecting = series("http_req_connecting");
    assert!(connecting.value(Aggregation::Max, 1.0).unwrap() > 0.0);
    assert_eq!(connecting.value(Aggregation::Med, 1.0), Some(0.0));
    assert_eq!(
        series("http_req_tls_handshaking").value(Aggregation::Max, 1.0),
        Some(0.0),
        "http has no TLS"
    );
    for name in ["http_req_blocked", "http_req_sending", "http_req_receiving"] {
        assert_eq!(series(name).samples, 3, "{name}");
    }
    // k6's duration per response: sending + waiting + receiving, under the same tags.
    let duration = series("http_req_duration");
    assert_eq!(duration.samples, 3);
    let (d, w) = (
        duration.value(Aggregation::Min, 1.0).unwrap(),
        waiting.value(Aggregation::Min, 1.0).unwrap(),
    );
    assert!(d >= w && d < w + 50.0, "duration {d} ms, waiting {w} ms");

    // Off by default.
    let c = crate::collector();
    let mut plain = crate::client(&srv.url(), &c);
    plain.get("/gone").send().await;
    let s = crate::finish(plain, &c);
    assert!(s.metrics.is_empty(), "{:?}", s.metrics.series.keys());
}
