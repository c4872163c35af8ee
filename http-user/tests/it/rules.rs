//! Redirects followed hop by hop, a given `Cookie` header merged with the jar, retries
//! that end at the user's stop, and client certificates (mutual TLS).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aiotest_core::stop::StopSignal;
use aiotest_core::user::UserContext;
use aiotest_http_user::HttpUser;
use aiotest_metrics::ErrorCategory;

use crate::awkward::{Req, serve};
use crate::{collector, endpoint, finish};

fn answer(status: u16, headers: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} X\r\n{headers}content-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// What the server saw of each request: method, path, body, and its `cookie` and
/// `authorization` headers.
type Seen = Arc<Mutex<Vec<(String, String, String, String, String)>>>;

fn header(r: &Req, name: &str) -> String {
    r.head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
        .unwrap_or_default()
}

fn redirecting(other: Option<String>) -> (crate::awkward::Server, Seen) {
    let seen: Seen = Arc::default();
    let log = Arc::clone(&seen);
    let srv = serve(move |mut c| {
        while let Some(r) = c.request(true) {
            log.lock().unwrap().push((
                r.method.clone(),
                r.path.clone(),
                String::from_utf8_lossy(&r.body).into_owned(),
                header(&r, "cookie"),
                header(&r, "authorization"),
            ));
            let reply = match r.path.as_str() {
                "/old" => answer(301, "location: /new\r\n", ""),
                "/new" => answer(302, "location: final?x=1\r\n", ""),
                "/final?x=1" => answer(200, "", "arrived"),
                "/see-other" => answer(303, "location: /final?x=1\r\n", ""),
                "/temporary" => answer(307, "location: /echo\r\n", ""),
                "/echo" => answer(
                    200,
                    "",
                    &format!("{} {}", r.method, String::from_utf8_lossy(&r.body)),
                ),
                "/loop" => answer(302, "location: /loop\r\n", ""),
                "/away" => answer(
                    302,
                    &format!("location: {}/echo\r\n", other.as_deref().unwrap_or("")),
                    "",
                ),
                _ => answer(200, "", "ok"),
            };
            if !c.write(&reply) {
                return;
            }
        }
    });
    (srv, seen)
}

#[tokio::test]
async fn redirects_are_followed_hop_by_hop_with_the_method_rules_of_rfc_9110() {
    let (srv, seen) = redirecting(None);
    let c = collector();
    let http = HttpUser::builder().host(srv.url()).build().unwrap();
    let mut client = http.client(c.recorder());

    // Two hops, each a request of its own; the final answer is the response.
    let r = client.get("/old").send().await;
    assert_eq!((r.status_code(), r.text().as_ref()), (200, "arrived"));
    // A POST goes on as a GET without its body after 301, 302 and 303 ...
    let r = client.post("/see-other").body("data").send().await;
    assert_eq!(r.text(), "arrived", "{:?}", r.error());
    // ... and keeps both after 307.
    let r = client.post("/temporary").body("data").send().await;
    assert_eq!(r.text(), "POST data");
    // A loop ends after 10 hops with the last redirect as the answer.
    let r = client.get("/loop").send().await;
    assert_eq!(r.status_code(), 302);
    assert!(r.is_ok(), "a redirect not followed is not a failure");
    let snap = finish(client, &c);
    assert_eq!(endpoint(&snap, "/old", "GET").requests, 1);
    assert_eq!(endpoint(&snap, "/new", "GET").requests, 1);
    assert_eq!(endpoint(&snap, "/final", "GET").requests, 2);
    assert_eq!(endpoint(&snap, "/see-other", "POST").requests, 1);
    assert_eq!(endpoint(&snap, "/echo", "POST").requests, 1);
    assert_eq!(endpoint(&snap, "/loop", "GET").requests, 11);
    assert_eq!(snap.total().requests, 18);
    assert_eq!(snap.total().requests as usize, seen.lock().unwrap().len());
    let after_303 = seen.lock().unwrap()[4].clone();
    assert_eq!((after_303.0.as_str(), after_303.2.as_str()), ("GET", ""));

    // Off with 0, and a hop that leaves the origin drops the request's credentials.
    let (far, far_seen) = redirecting(None);
    let (srv, _) = redirecting(Some(far.url()));
    let c = collector();
    let mut client = HttpUser::builder()
        .host(srv.url())
        .max_redirects(0)
        .build()
        .unwrap()
        .client(c.recorder());
    let r = client.get("/old").send().await;
    assert_eq!(r.status_code(), 301);
    let mut client = HttpUser::builder()
        .host(srv.url())
        .build()
        .unwrap()
        .client(c.recorder());
    let r = client
        .put("/away")
        .header("authorization", "Bearer secret")
        .body("b")
        .send()
        .await;
    assert_eq!(r.text(), "PUT b", "{:?}", r.error());
    let far_seen = far_seen.lock().unwrap();
    assert_eq!(far_seen.len(), 1);
    assert_eq!(far_seen[0].4, "", "no credentials for another origin");
}

#[tokio::test]
async fn a_cookie_header_given_on_a_request_is_merged_with_the_jar() {
    let (srv, seen) = {
        let seen: Seen = Arc::default();
        let log = Arc::clone(&seen);
        let srv = serve(move |mut c| {
            while let Some(r) = c.request(true) {
                log.lock().unwrap().push((
                    r.method.clone(),
                    r.path.clone(),
                    String::new(),
                    header(&r, "cookie"),
                    String::new(),
                ));
                let reply = if r.path == "/login" {
                    answer(
                        200,
                        "set-cookie: session=jar; Path=/\r\nset-cookie: theme=dark; Path=/\r\n",
                        "",
                    )
                } else {
                    answer(200, "", "")
                };
                if !c.write(&reply) {
                    return;
                }
            }
        });
        (srv, seen)
    };
    let c = collector();
    let mut client = HttpUser::builder()
        .host(srv.url())
        .build()
        .unwrap()
        .client(c.recorder());
    client.get("/login").send().await;
    client
        .get("/a")
        .header("cookie", "session=given; extra=1")
        .send()
        .await;
    client.get("/b").send().await;
    let seen = seen.lock().unwrap();
    assert_eq!(seen[1].3, "session=given; extra=1; theme=dark");
    assert_eq!(seen[2].3, "session=jar; theme=dark");
}

#[tokio::test(start_paused = true)]
async fn no_retry_starts_after_the_users_stop_and_a_back_off_ends_at_it() {
    let port = crate::server::closed_port();
    let c = collector();
    let http = HttpUser::builder()
        .host(format!("http://127.0.0.1:{port}"))
        .max_retries(10)
        .retry_backoff(Duration::from_secs(1))
        .build()
        .unwrap();
    let stop = StopSignal::new();
    let ctx = UserContext::new(1, "t".into(), None, None)
        .with(c.recorder())
        .with(stop.clone());
    let mut client = http.client_for(&ctx);

    // Stopped during the first back-off: that is the last attempt.
    let stopper = stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(30)).await;
        stopper.stop();
    });
    let started = tokio::time::Instant::now();
    let r = client.get("/x").send().await;
    assert_eq!(r.error().unwrap().category, ErrorCategory::Connect);
    assert_eq!(r.attempts(), 1);
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "{:?}",
        started.elapsed()
    );
    // Once stopped, none starts at all.
    let r = client.get("/x").send().await;
    assert_eq!(r.attempts(), 1);
    let snap = finish(client, &c);
    let x = endpoint(&snap, "/x", "GET");
    assert_eq!((x.requests, x.failures, x.retries), (2, 2, 0));
}

#[tokio::test]
async fn a_client_certificate_is_presented_to_a_server_that_requires_one() {
    let ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut ca = ca;
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let client_key = rcgen::KeyPair::generate().unwrap();
    let client_cert = rcgen::CertificateParams::new(vec!["client".into()])
        .unwrap()
        .signed_by(&client_key, &issuer)
        .unwrap();

    let srv = crate::server::start_mtls(ca_cert.der().clone());
    let c = collector();
    let base = || {
        HttpUser::builder()
            .host(srv.url("https"))
            .verify_ssl(false)
            .max_retries(0)
    };
    let mut without = base().build().unwrap().client(c.recorder());
    let r = without.get("/ok").send().await;
    assert!(!r.is_ok(), "the server requires a certificate");
    let mut with = base()
        .client_cert_pem(client_cert.pem(), client_key.serialize_pem())
        .build()
        .unwrap()
        .client(c.recorder());
    let r = with.get("/ok").send().await;
    assert_eq!(r.text(), "hello", "{:?}", r.error());

    let bad = base().client_cert_pem("not pem", "not pem").build();
    let e = bad.unwrap_err().to_string();
    assert!(e.starts_with("client certificate: "), "{e}");
}
