//! Integration tests of the HTTP user against real servers on 127.0.0.1.

// Test helpers outside #[test] functions unwrap too; a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod awkward;
mod groups;
mod rules;
mod server;
mod timings;

use std::sync::atomic::Ordering;
use std::time::Duration;

use aiotest_http_user::{HttpClient, HttpUser};
use aiotest_metrics::{
    EndpointStats, ErrorCategory, MetricsCollector, MetricsConfig, RequestMetricsEvent, Snapshot,
};
use server::{Raw, start, start_raw, start_tls_h1};

fn collector() -> MetricsCollector {
    MetricsCollector::new(MetricsConfig::default(), RequestMetricsEvent::new()).unwrap()
}

fn client(host: &str, c: &MetricsCollector) -> HttpClient {
    HttpUser::builder()
        .host(host)
        .retry_backoff(Duration::from_millis(1))
        .build()
        .unwrap()
        .client(c.recorder())
}

/// A client of `host` that accepts the test servers' self-signed certificates.
fn insecure_client(host: &str, c: &MetricsCollector) -> HttpClient {
    HttpUser::builder()
        .host(host)
        .verify_ssl(false)
        .build()
        .unwrap()
        .client(c.recorder())
}

/// Drops the client (flushing its recorder) and returns everything recorded.
fn finish(client: HttpClient, c: &MetricsCollector) -> Snapshot {
    drop(client);
    let mut sink = Vec::new();
    c.flush_to(&mut sink, u64::MAX);
    let mut all = Snapshot::new();
    for s in &sink {
        all.merge(s);
    }
    all
}

fn endpoint<'a>(s: &'a Snapshot, name: &str, method: &str) -> &'a EndpointStats {
    s.endpoints
        .iter()
        .find(|(k, _)| k.name == name && k.method == method)
        .map(|(_, v)| v)
        .unwrap_or_else(|| {
            panic!(
                "no {method} {name} in {:?}",
                s.endpoints.keys().collect::<Vec<_>>()
            )
        })
}

#[tokio::test]
async fn one_connection_serves_all_requests_of_a_user() {
    let srv = start(false);
    let c = collector();
    let mut client = client(&srv.url("http"), &c);
    for _ in 0..20 {
        let r = client.get("/ok").send().await;
        assert!(r.is_ok(), "{:?}", r.error());
        assert_eq!(r.text(), "hello");
    }
    assert_eq!(client.connections_opened(), 1);
    assert_eq!(srv.seen.connections.load(Ordering::Relaxed), 1);
    let snap = finish(client, &c);
    assert_eq!(endpoint(&snap, "/ok", "GET").requests, 20);
}

#[tokio::test]
async fn each_user_keeps_its_own_cookies() {
    let srv = start(false);
    let c = collector();
    let mut a = client(&srv.url("http"), &c);
    let mut b = client(&srv.url("http"), &c);
    a.get("/set-cookie").send().await;
    assert_eq!(a.cookies().get("session"), Some("abc123"));
    assert_eq!(a.get("/echo-cookie").send().await.text(), "session=abc123");
    assert_eq!(b.get("/echo-cookie").send().await.text(), "");
    a.clear_cookies();
    assert_eq!(a.get("/echo-cookie").send().await.text(), "");
}

#[tokio::test]
async fn requests_are_named_by_path_with_ids_or_explicitly() {
    let srv = start(false);
    let c = collector();
    let mut client = client(&srv.url("http"), &c);
    for id in [1, 22, 333] {
        client.get(format!("/users/{id}?x=1")).send().await;
    }
    client
        .get("/users/550e8400-e29b-41d4-a716-446655440000")
        .send()
        .await;
    client.get("/users/7").name("one user").send().await;
    client
        .post("/echo")
        .json(&serde_json::json!({"a": 1}))
        .send()
        .await;
    // One path, alternating methods and an explicit name: each record finds its own
    // endpoint although the client remembers one per path.
    for _ in 0..2 {
        client.get("/echo").send().await;
        client.post("/echo").send().await;
        client.get("/echo").name("named echo").send().await;
    }
    let snap = finish(client, &c);
    assert_eq!(endpoint(&snap, "/users/{id}", "GET").requests, 4);
    assert_eq!(endpoint(&snap, "one user", "GET").requests, 1);
    assert_eq!(endpoint(&snap, "/echo", "POST").requests, 3);
    assert_eq!(endpoint(&snap, "/echo", "GET").requests, 2);
    assert_eq!(endpoint(&snap, "named echo", "GET").requests, 2);
    assert_eq!(snap.endpoints.len(), 5);
}

#[tokio::test]
async fn many_distinct_paths_each_reach_their_target_and_name() {
    // More distinct paths than a client keeps parsed (32), each asked twice, under a host
    // with a path prefix: the kept ones and the ones built per request must agree.
    let srv = start(false);
    let c = collector();
    let mut client = client(&format!("{}/api/", srv.url("http")), &c);
    for round in 0..2 {
        for i in 0..40 {
            let r = client
                .get(format!("/page{i}/item/{}", 1000 + i))
                .send()
                .await;
            assert_eq!(
                r.text(),
                format!("/api/page{i}/item/{}", 1000 + i),
                "round {round}"
            );
        }
        let r = client
            .get("/page3/item/9")
            .query(&[("q", round)])
            .send()
            .await;
        assert_eq!(r.text(), "/api/page3/item/9");
    }
    let snap = finish(client, &c);
    for i in 0..40 {
        let expected = if i == 3 { 4 } else { 2 };
        assert_eq!(
            endpoint(&snap, &format!("/page{i}/item/{{id}}"), "GET").requests,
            expected
        );
    }
    assert_eq!(snap.endpoints.len(), 40);
}

#[tokio::test]
async fn bodies_queries_and_headers_reach_the_server() {
    let srv = start(false);
    let c = collector();
    let mut client = client(&srv.url("http"), &c);
    let r = client
        .post("/echo")
        .query(&[("q", "a b"), ("n", "1")])
        .form(&[("user", "u1")])
        .send()
        .await;
    assert_eq!(
        r.text(),
        "application/x-www-form-urlencoded|q=a+b&n=1|user=u1"
    );
    let r = client.put("/echo").json(&vec![1, 2]).send().await;
    assert_eq!(r.text(), "application/json||[1,2]");
    let parsed: serde_json::Value = client
        .get("/echo")
        .header("x-a", "b")
        .send()
        .await
        .json()
        .unwrap_or_default();
    assert_eq!(
        parsed,
        serde_json::Value::Null,
        "not JSON: json() is an error, not a panic"
    );
    let bad = client.get("/ok").header("bad header", "x").send().await;
    assert_eq!(bad.error().unwrap().category, ErrorCategory::Other);
    assert!(
        bad.error()
            .unwrap()
            .message
            .contains("invalid header `bad header`")
    );
}

#[tokio::test]
async fn status_and_checks_mark_failures_without_ending_the_task() {
    let srv = start(false);
    let c = collector();
    let mut client = client(&srv.url("http"), &c);
    let r = client.get("/status/404").send().await;
    assert_eq!(r.status_code(), 404);
    assert_eq!(r.error().unwrap().category, ErrorCategory::HttpStatus);
    let r = client.get("/status/404").expect_status(404).send().await;
    assert!(r.is_ok(), "an expected 404 is a success");
    let r = client.get("/ok").expect_status(201).send().await;
    assert_eq!(r.error().unwrap().message, "HTTP 200, expected [201]");
    let r = client
        .get("/ok")
        .check(|r| {
            if r.text() == "hello" {
                Ok(())
            } else {
                Err("no greeting".into())
            }
        })
        .send()
        .await;
    assert!(r.is_ok());
    let r = client
        .get("/ok")
        .name("checked")
        .check(|r| {
            if r.text().contains("bye") {
                Ok(())
            } else {
                Err(format!("body was {:?}", r.text()))
            }
        })
        .send()
        .await;
    assert_eq!(r.error().unwrap().category, ErrorCategory::CheckFailed);
    let snap = finish(client, &c);
    let checked = endpoint(&snap, "checked", "GET");
    assert_eq!((checked.requests, checked.failures), (1, 1));
    assert_eq!(
        checked.failures_by_category[ErrorCategory::CheckFailed.index()],
        1
    );
    assert_eq!(checked.errors.kept[0].message, "body was \"hello\"");
    let s404 = endpoint(&snap, "/status/{id}", "GET");
    assert_eq!((s404.requests, s404.failures), (2, 1));
    let ok = endpoint(&snap, "/ok", "GET");
    assert_eq!((ok.requests, ok.failures), (2, 1));
}

#[tokio::test]
async fn idempotent_requests_retry_on_503_each_attempt_recorded() {
    let srv = start(false);
    let c = collector();
    let mut client = client(&srv.url("http"), &c);
    let r = client.get("/flaky").send().await;
    assert!(r.is_ok());
    assert_eq!(r.attempts(), 3);
    assert_eq!(client.retries(), 2);
    let snap = finish(client, &c);
    let flaky = endpoint(&snap, "/flaky", "GET");
    assert_eq!((flaky.requests, flaky.failures, flaky.retries), (3, 2, 2));
    assert_eq!(flaky.status_codes, vec![(200, 1), (503, 2)]);
}

#[tokio::test]
async fn post_and_500_are_never_retried() {
    let srv = start(false);
    let c = collector();
    let mut client = client(&srv.url("http"), &c);
    let r = client.post("/flaky").send().await;
    assert_eq!((r.status_code(), r.attempts()), (503, 1));
    let r = client.get("/status/500").send().await;
    assert_eq!((r.status_code(), r.attempts()), (500, 1));
    assert_eq!(client.retries(), 0);
    assert_eq!(srv.seen.requests.load(Ordering::Relaxed), 2);
}

#[tokio::test]
async fn connection_refused_is_categorized_and_retried_up_to_max_retries() {
    let c = collector();
    let mut client = client(&format!("http://127.0.0.1:{}", server::closed_port()), &c);
    let r = client.get("/ok").send().await;
    let e = r.error().unwrap();
    assert_eq!(e.category, ErrorCategory::Connect);
    assert!(e.message.contains("refused"), "{}", e.message);
    assert_eq!(r.attempts(), 4, "1 + max_retries (3)");
    let snap = finish(client, &c);
    let s = endpoint(&snap, "/ok", "GET");
    assert_eq!((s.requests, s.failures, s.retries), (4, 4, 3));
    assert_eq!(s.status_codes, vec![]);
}

#[tokio::test]
async fn a_name_that_does_not_resolve_is_a_dns_error() {
    // `.invalid` never resolves (RFC 2606): the system resolver fails at once, with or
    // without a reachable name server.
    let c = collector();
    let mut client = HttpUser::builder()
        .host("http://no-such-host.invalid:8080")
        .max_retries(0)
        .build()
        .unwrap()
        .client(c.recorder());
    let r = client.get("/ok").send().await;
    let e = r.error().unwrap();
    assert_eq!(e.category, ErrorCategory::Dns, "{}", e.message);
    assert!(e.message.contains("no-such-host.invalid"), "{}", e.message);
    let snap = finish(client, &c);
    assert_eq!(endpoint(&snap, "/ok", "GET").failures, 1);
}

#[tokio::test]
async fn a_server_that_never_answers_is_cut_at_the_timeout() {
    let srv = start(false);
    let c = collector();
    let http = HttpUser::builder()
        .host(srv.url("http"))
        .max_retries(0)
        .build()
        .unwrap();
    let mut client = http.client(c.recorder());
    // Connect on the real clock, then freeze it: the 30 s default timeout then passes
    // in virtual time as soon as the client waits on the silent server.
    assert!(client.get("/ok").send().await.is_ok());
    tokio::time::pause();
    let r = client.get("/never").send().await;
    tokio::time::resume();
    let e = r.error().unwrap();
    assert_eq!(e.category, ErrorCategory::Timeout);
    assert_eq!(e.message, "no complete response within 30s");
    assert!(
        r.duration() >= Duration::from_secs(30),
        "{:?}",
        r.duration()
    );
    assert!(r.duration() < Duration::from_secs(31), "{:?}", r.duration());
    // The connection was mid-response: the next request opens a new one and works.
    assert!(client.get("/ok").send().await.is_ok());
    assert_eq!(client.connections_opened(), 2);
}

#[tokio::test]
async fn a_request_cancelled_in_flight_is_recorded_as_interrupted_with_the_time_it_waited() {
    let srv = start(false);
    let c = collector();
    let mut client = client(&srv.url("http"), &c);
    assert!(client.get("/ok").send().await.is_ok());
    // The user's task is cancelled while its request waits on a silent server, as the
    // runner cancels users that outlive the graceful stop period.
    let task = tokio::spawn(async move {
        client.get("/never").send().await;
        client
    });
    while srv.seen.requests.load(Ordering::Relaxed) < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    let mut sink = Vec::new();
    c.flush_to(&mut sink, u64::MAX);
    let mut all = Snapshot::new();
    for s in &sink {
        all.merge(s);
    }
    let never = endpoint(&all, "/never", "GET");
    assert_eq!(
        (never.requests, never.failures, never.interrupted()),
        (1, 1, 1)
    );
    // What it waited is its duration, a lower bound of its latency.
    assert_eq!(never.timed(), 1);
    assert!(never.max_us.is_some(), "{:?}", never.max_us);
    assert_eq!(endpoint(&all, "/ok", "GET").requests, 1);
    // A request that completed before the cancel is not also interrupted.
    assert_eq!(all.total().interrupted(), 1);
}

#[tokio::test]
async fn bytes_are_counted_as_on_the_wire() {
    let srv = start_raw(Raw::Keep);
    let c = collector();
    let mut client = client(&format!("http://{}", srv.addr), &c);
    for _ in 0..5 {
        assert!(
            client
                .get("/count")
                .header("x-pad", "0123456789")
                .send()
                .await
                .is_ok()
        );
    }
    let conns = client.connections_opened();
    let snap = finish(client, &c);
    let s = endpoint(&snap, "/count", "GET");
    assert_eq!(
        s.bytes_sent,
        srv.read.load(Ordering::Relaxed),
        "connections {conns}, requests {}, written {}",
        s.requests,
        srv.written.load(Ordering::Relaxed)
    );
    assert_eq!(s.bytes_received, srv.written.load(Ordering::Relaxed));
    assert_eq!(s.bytes_received, 5 * server::RAW_RESPONSE.len() as u64);
}

#[tokio::test]
async fn a_body_in_many_chunks_arrives_whole_and_counted() {
    let srv = start_raw(Raw::Chunked);
    let c = collector();
    let mut client = client(&format!("http://{}", srv.addr), &c);
    for _ in 0..3 {
        let r = client.get("/chunks").send().await;
        assert!(r.is_ok(), "{:?}", r.error());
        assert_eq!(r.text(), "hello, world");
    }
    assert_eq!(
        client.connections_opened(),
        1,
        "the trailer ends the message"
    );
    let snap = finish(client, &c);
    let s = endpoint(&snap, "/chunks", "GET");
    assert_eq!(s.bytes_received, 3 * server::CHUNKED_RESPONSE.len() as u64);
    assert_eq!(s.bytes_received, srv.written.load(Ordering::Relaxed));
}

#[tokio::test]
async fn a_reset_mid_body_is_a_reset_not_a_panic() {
    let srv = start_raw(Raw::ResetMidBody);
    let c = collector();
    let http = HttpUser::builder()
        .host(format!("http://{}", srv.addr))
        .max_retries(1)
        .retry_backoff(Duration::from_millis(1))
        .build()
        .unwrap();
    let mut client = http.client(c.recorder());
    let r = client.get("/partial").send().await;
    let e = r.error().unwrap();
    assert_eq!(e.category, ErrorCategory::Reset, "{}", e.message);
    assert_eq!(r.attempts(), 2, "a reset GET is retried");
    let snap = finish(client, &c);
    assert_eq!(endpoint(&snap, "/partial", "GET").failures, 2);
}

#[tokio::test]
async fn a_peer_that_does_not_speak_http_is_a_protocol_error() {
    let srv = start_raw(Raw::Garbage);
    let c = collector();
    let mut client = client(&format!("http://{}", srv.addr), &c);
    let r = client.get("/x").send().await;
    let e = r.error().unwrap();
    assert_eq!(e.category, ErrorCategory::Protocol, "{}", e.message);
    assert_eq!(r.attempts(), 1, "a protocol error is not retried");
}

#[tokio::test]
async fn https_with_a_self_signed_certificate_fails_verification_unless_disabled() {
    let srv = start(true);
    let c = collector();
    let strict = HttpUser::builder()
        .host(srv.url("https"))
        .max_retries(0)
        .build()
        .unwrap();
    let mut client = strict.client(c.recorder());
    let r = client.get("/ok").send().await;
    let e = r.error().unwrap();
    assert_eq!(e.category, ErrorCategory::Tls, "{}", e.message);

    let lax = HttpUser::builder()
        .host(srv.url("https"))
        .verify_ssl(false)
        .build()
        .unwrap();
    let mut client = lax.client(c.recorder());
    let r = client.get("/ok").send().await;
    assert!(r.is_ok(), "{:?}", r.error());
    assert_eq!(r.text(), "hello");
    // The server offers h2 over ALPN, so the user speaks HTTP/2.
    assert_eq!(client.get("/version").send().await.text(), "HTTP/2.0");
    for _ in 0..5 {
        client.get("/ok").send().await;
    }
    assert_eq!(client.connections_opened(), 1, "one multiplexed connection");
    let snap = finish(client, &c);
    let ok = endpoint(&snap, "/ok", "GET");
    assert_eq!(
        ok.requests,
        1 + 1 + 5 - 1,
        "the strict client's failure is counted too"
    );
    assert!(ok.bytes_received > 0 && ok.bytes_sent > 0);
}

#[tokio::test]
async fn connections_and_cookies_can_be_reset_per_iteration() {
    let srv = start(false);
    let c = collector();
    let http = HttpUser::builder()
        .host(srv.url("http"))
        .reset_connections_per_iteration(true)
        .clear_cookies_per_iteration(true)
        .build()
        .unwrap();
    let mut client = http.client(c.recorder());
    for _ in 0..3 {
        client.get("/set-cookie").send().await;
        assert_eq!(
            client.get("/echo-cookie").send().await.text(),
            "session=abc123"
        );
        client.end_iteration();
        assert!(client.cookies().is_empty());
    }
    assert_eq!(client.connections_opened(), 3);
}

#[tokio::test]
async fn inside_a_runner_the_context_gives_the_recorder_and_the_run_host() {
    use aiotest_core::user::UserContext;
    let srv = start(false);
    let c = collector();
    // The user type names another host; the run's host (the context's) wins.
    let http = HttpUser::builder()
        .host("http://127.0.0.1:1")
        .build()
        .unwrap();
    let ctx =
        UserContext::new(1, "t".into(), Some(srv.url("http").into()), None).with(c.recorder());
    let mut client = http.client_for(&ctx);
    assert!(client.get("/ok").send().await.is_ok());
    let snap = finish(client, &c);
    assert_eq!(endpoint(&snap, "/ok", "GET").requests, 1);
}

#[tokio::test]
async fn bad_settings_are_refused_at_build() {
    let cases = [
        (
            HttpUser::builder().host("ftp://x").build(),
            "host `ftp://x`: the scheme must be http or https, not `ftp`",
        ),
        (
            HttpUser::builder().host("http://127.0.0.1:99999").build(),
            "host `http://127.0.0.1:99999`: port `99999` is not a port number (1 to 65535)",
        ),
        (
            HttpUser::builder().host("http://127.0.0.1:abc/").build(),
            "host `http://127.0.0.1:abc/`: port `abc` is not a port number (1 to 65535)",
        ),
        (
            HttpUser::builder().host("127.0.0.1:80").build(),
            "host `127.0.0.1:80`: it must start with http:// or https://",
        ),
        (
            HttpUser::builder().host("http://h/?q=1").build(),
            "host `http://h/?q=1`: it must not have a query string",
        ),
        (
            HttpUser::builder().header("bad name", "v").build(),
            "default header `bad name`: invalid name or value",
        ),
        (
            HttpUser::builder().timeout(Duration::ZERO).build(),
            "timeout must be longer than zero",
        ),
    ];
    for (result, msg) in cases {
        assert_eq!(result.unwrap_err().to_string(), msg);
    }
    // No host: relative paths are a recorded failure, absolute URLs work.
    let srv = start(false);
    let c = collector();
    let mut client = HttpUser::builder().build().unwrap().client(c.recorder());
    let r = client.get("/ok").send().await;
    assert!(r.error().unwrap().message.contains("no host is set"));
    let r = client.get(format!("{}/ok", srv.url("http"))).send().await;
    assert!(r.is_ok(), "{:?}", r.error());
}

#[tokio::test]
async fn https_over_http1_keeps_its_connection_and_its_cookies() {
    let srv = start_tls_h1();
    let c = collector();
    let mut client = insecure_client(&srv.url("https"), &c);
    assert_eq!(client.get("/version").send().await.text(), "HTTP/1.1");
    assert!(client.get("/set-cookie").send().await.is_ok());
    assert_eq!(
        client.get("/echo-cookie").send().await.text(),
        "session=abc123"
    );
    let r = client
        .post("/echo-len")
        .body(vec![b'x'; 100_000])
        .send()
        .await;
    assert_eq!(r.text(), "100000 Some('x')", "a large body over TLS");
    assert_eq!(client.connections_opened(), 1);
    assert_eq!(srv.seen.connections.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn bodies_large_and_small_both_ways_and_headers_on_demand() {
    let srv = start(false);
    let c = collector();
    let mut client = client(&srv.url("http"), &c);
    for n in [0usize, 1, 16 * 1024, 16 * 1024 + 1, 1_000_000] {
        let body: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
        let last = body.last().map(|&b| b as char);
        let r = client.post("/echo-len").body(body.clone()).send().await;
        assert_eq!(r.text(), format!("{n} {last:?}"), "request body of {n}");
        let r = client.get(format!("/big/{n}")).send().await;
        assert!(r.is_ok(), "{:?}", r.error());
        assert_eq!(r.bytes().as_ref(), body.as_slice(), "response body of {n}");
    }
    let r = client.get("/some/where").send().await;
    assert_eq!(r.headers().get("x-path").unwrap(), "/some/where");
    assert_eq!(r.headers().get("content-length").unwrap(), "11");
    // A HEAD response announces a length but has no body; the connection stays usable.
    let r = client.head("/big/500").send().await;
    assert!(r.is_ok(), "{:?}", r.error());
    assert!(r.bytes().is_empty());
    assert_eq!(r.headers().get("content-length").unwrap(), "500");
    assert_eq!(client.get("/ok").send().await.text(), "hello");
    assert_eq!(
        client.connections_opened(),
        1,
        "every response ended where it should"
    );
}

#[tokio::test]
async fn a_connection_the_server_closed_while_idle_is_replaced_without_a_failure() {
    let srv = start_raw(Raw::CloseAfterEach);
    let c = collector();
    let mut client = client(&format!("http://{}", srv.addr), &c);
    for i in 0..5 {
        // Once the server closed the connection, idle long enough for it to be checked
        // before use: the close is seen before the request goes, which goes on a new
        // connection. (Waiting for the close itself: a loaded machine may run the
        // server's thread late.)
        if i > 0 {
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while srv.closed.load(Ordering::Relaxed) < i {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the server never closed"
                );
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        let r = client.get("/a").send().await;
        assert!(r.is_ok(), "request {i}: {:?}", r.error());
        assert_eq!(r.attempts(), 1);
        assert_eq!(r.text(), "hello");
    }
    assert_eq!(client.connections_opened(), 5);
    // Back to back, a GET is not checked first: it meets the close, and the attempt is
    // counted and retried, visibly.
    let r = client.get("/a").send().await;
    assert!(r.is_ok(), "{:?}", r.error());
    assert_eq!(r.attempts(), 2);
    let snap = finish(client, &c);
    let s = endpoint(&snap, "/a", "GET");
    assert_eq!((s.requests, s.failures, s.retries), (7, 1, 1));

    // Closed once the server read the next request, without answering: it may have
    // processed it. A GET's attempt is counted and retried; a POST is never sent again.
    let srv = start_raw(Raw::CloseOnSecond);
    let mut client = self::client(&format!("http://{}", srv.addr), &c);
    assert!(client.get("/b").send().await.is_ok());
    let r = client.get("/b").send().await;
    assert!(r.is_ok(), "{:?}", r.error());
    assert_eq!(r.attempts(), 2);
    // The retry answered first on its connection; a POST second there meets the close.
    let r = client.post("/b").body("x").send().await;
    assert_eq!(r.error().unwrap().category, ErrorCategory::Reset);
    assert_eq!(r.attempts(), 1);
    let r = client.post("/b").body("x").send().await;
    assert!(r.is_ok(), "a POST on a fresh connection: {:?}", r.error());
    let snap = finish(client, &c);
    let get = endpoint(&snap, "/b", "GET");
    let post = endpoint(&snap, "/b", "POST");
    assert_eq!(
        (
            get.requests,
            get.failures,
            get.retries,
            post.requests,
            post.failures
        ),
        (3, 1, 1, 2, 1)
    );

    // A connection idle a while is checked before use: a 408 the server sent before
    // closing it is not taken for the next request's answer.
    let srv = start_raw(Raw::TimeoutNotice);
    let mut client = self::client(&format!("http://{}", srv.addr), &c);
    for i in 0..3 {
        let r = client.get("/c").send().await;
        assert_eq!(r.status_code(), 200, "request {i}: {:?}", r.error());
        tokio::time::sleep(Duration::from_millis(80)).await;
    }
    assert_eq!(client.connections_opened(), 3);
}

#[tokio::test]
async fn a_body_delimited_by_the_close_and_an_interim_response() {
    let srv = start_raw(Raw::UntilClose);
    let c = collector();
    let mut client = client(&format!("http://{}", srv.addr), &c);
    for _ in 0..2 {
        let r = client.get("/x").send().await;
        assert_eq!(r.text(), "until the end", "{:?}", r.error());
    }
    assert_eq!(
        client.connections_opened(),
        2,
        "such a connection is not reused"
    );

    let srv = start_raw(Raw::Continue);
    let mut second = self::client(&format!("http://{}", srv.addr), &c);
    for _ in 0..3 {
        let r = second.get("/y").send().await;
        assert_eq!(r.status_code(), 200, "{:?}", r.error());
        assert_eq!(r.text(), "hello");
    }
    assert_eq!(second.connections_opened(), 1);
}

#[tokio::test]
async fn h2c_by_prior_knowledge_speaks_http2_over_plain_tcp() {
    let srv = start(false);
    let c = collector();
    let mut h2c = HttpUser::builder()
        .host(srv.url("http"))
        .http2_prior_knowledge(true)
        .build()
        .unwrap()
        .client(c.recorder());
    let r = h2c.get("/version").send().await;
    assert!(r.is_ok(), "{:?}", r.error());
    assert_eq!(r.text(), "HTTP/2.0");
    assert_eq!(r.timings().proto(), "HTTP/2.0");
    for _ in 0..5 {
        let r = h2c.post("/echo").body("x=1").send().await;
        assert!(r.is_ok(), "{:?}", r.error());
    }
    // A body larger than the peer's first flow-control window (64 KiB) goes whole, and
    // one as large comes back whole.
    let big: Vec<u8> = (0..1_000_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let r = h2c.post("/echo-len").body(big.clone()).send().await;
    assert_eq!(
        r.text(),
        format!("1000000 {:?}", big.last().map(|&b| b as char))
    );
    let r = h2c.get("/big/1000000").send().await;
    assert!(r.is_ok(), "{:?}", r.error());
    assert_eq!(r.bytes().len(), 1_000_000);
    assert_eq!(h2c.connections_opened(), 1, "one multiplexed connection");
    let snap = finish(h2c, &c);
    assert_eq!(endpoint(&snap, "/echo", "POST").requests, 5);
    assert_eq!(srv.seen.requests.load(Ordering::Relaxed), 8);
    // Without it, the same server is spoken to in HTTP/1.1.
    let mut plain = client(&srv.url("http"), &c);
    assert_eq!(plain.get("/version").send().await.text(), "HTTP/1.1");
    // A server that speaks only HTTP/1.1 fails the handshake, counted as a protocol error.
    let h1_only = start_raw(Raw::Keep);
    let mut h2c = HttpUser::builder()
        .host(format!("http://{}", h1_only.addr))
        .http2_prior_knowledge(true)
        .max_retries(0)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
        .client(c.recorder());
    let r = h2c.get("/").send().await;
    let e = r.error().expect("an HTTP/1.1 server cannot answer HTTP/2");
    assert_eq!(e.category, ErrorCategory::Protocol, "{}", e.message);
}
