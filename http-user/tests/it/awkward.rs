//! The HTTP/1.1 client against servers that answer badly: lengths it must not trust,
//! closes and resets after a request was read, stray answers, folded headers, huge heads.
//! Each server is a few lines over a raw socket and keeps its own log of what it read, and
//! each test compares the client's records with that log.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aiotest_http_user::{HttpClient, HttpUser};
use aiotest_metrics::{ErrorCategory, MetricsCollector, Snapshot};

use crate::{collector, endpoint, finish};

/// What a raw server read.
#[derive(Default)]
pub(crate) struct Log {
    /// Requests read whole (head and body).
    pub(crate) requests: AtomicU64,
    pub(crate) connections: AtomicU64,
}

/// One request as a raw server read it.
pub(crate) struct Req {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) head: String,
    pub(crate) body: Vec<u8>,
}

/// A connection of a raw server: reads requests, writes bytes.
pub(crate) struct Conn {
    stream: TcpStream,
    pending: Vec<u8>,
    log: Arc<Log>,
}

impl Conn {
    /// The next request, whole, or `None` at the connection's end. With `body = false`
    /// only its head is read (the body stays unread).
    pub(crate) fn request(&mut self, body: bool) -> Option<Req> {
        let end = loop {
            if let Some(end) = self.pending.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            self.fill()?;
        };
        let head = String::from_utf8_lossy(&self.pending[..end]).into_owned();
        self.pending.drain(..end);
        let mut words = head.split_whitespace();
        let method = words.next().unwrap_or_default().to_owned();
        let path = words.next().unwrap_or_default().to_owned();
        let len = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())?
            })
            .unwrap_or(0);
        let mut req = Req {
            method,
            path,
            head,
            body: Vec::new(),
        };
        if body {
            while self.pending.len() < len {
                self.fill()?;
            }
            req.body = self.pending.drain(..len).collect();
            self.log.requests.fetch_add(1, Ordering::SeqCst);
        }
        Some(req)
    }

    fn fill(&mut self) -> Option<()> {
        let mut buf = [0u8; 65536];
        match self.stream.read(&mut buf) {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                self.pending.extend_from_slice(&buf[..n]);
                Some(())
            }
        }
    }

    /// Reads and drops `len` bytes of a body whose head was read alone.
    pub(crate) fn drain_body(&mut self, len: usize) {
        while self.pending.len() < len {
            if self.fill().is_none() {
                return;
            }
        }
        self.pending.drain(..len);
        self.log.requests.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn write(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).is_ok()
    }

    /// Closes with a reset (linger 0) instead of a FIN.
    pub(crate) fn reset(self) {
        let sock = socket2::Socket::from(self.stream);
        let _ = sock.set_linger(Some(Duration::ZERO));
    }
}

pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    pub(crate) log: Arc<Log>,
}

impl Server {
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub(crate) fn requests(&self) -> u64 {
        self.log.requests.load(Ordering::SeqCst)
    }
}

/// A server that runs `handle` on a thread for each connection.
pub(crate) fn serve(handle: impl Fn(Conn) + Send + Sync + 'static) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Arc::new(Log::default());
    let handle = Arc::new(handle);
    let log2 = Arc::clone(&log);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            log2.connections.fetch_add(1, Ordering::SeqCst);
            let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
            let conn = Conn {
                stream,
                pending: Vec::new(),
                log: Arc::clone(&log2),
            };
            let handle = Arc::clone(&handle);
            std::thread::spawn(move || handle(conn));
        }
    });
    Server { addr, log }
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

fn http(host: &str) -> aiotest_http_user::HttpUserBuilder {
    HttpUser::builder()
        .host(host)
        .retry_backoff(Duration::from_millis(1))
}

fn user(host: &str, c: &MetricsCollector) -> HttpClient {
    http(host).build().unwrap().client(c.recorder())
}

/// Every request of the snapshot, and its failures.
fn totals(s: &Snapshot) -> (u64, u64) {
    let t = s.total();
    (t.requests, t.failures)
}

#[tokio::test]
async fn a_declared_length_reserves_nothing_and_a_body_over_the_limit_fails_alone() {
    let srv = serve(|mut c| {
        while let Some(r) = c.request(true) {
            let reply: &[u8] = match r.path.as_str() {
                "/huge" => b"HTTP/1.1 200 OK\r\ncontent-length: 1000000000000\r\n\r\nabc",
                "/chunk" => {
                    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nE8D4A51000\r\nabc"
                }
                "/endless" => {
                    c.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n");
                    let chunk = [b'x'; 8192];
                    let mut framed = b"2000\r\n".to_vec();
                    framed.extend_from_slice(&chunk);
                    framed.extend_from_slice(b"\r\n");
                    while c.write(&framed) {}
                    return;
                }
                "/flood" => {
                    c.write(b"HTTP/1.1 200 OK\r\n\r\n");
                    let block = [b'y'; 65536];
                    while c.write(&block) {}
                    return;
                }
                _ => OK,
            };
            if !c.write(reply) {
                return;
            }
        }
    });
    let c = collector();
    let mut client = http(&srv.url())
        .max_retries(0)
        .max_response_body(1 << 20)
        .build()
        .unwrap()
        .client(c.recorder());
    for path in ["/huge", "/chunk", "/endless", "/flood"] {
        let r = client.get(path).send().await;
        let e = r.error().unwrap_or_else(|| panic!("{path} succeeded"));
        assert_eq!(
            e.category,
            ErrorCategory::BodyTooLarge,
            "{path}: {}",
            e.message
        );
        assert!(e.message.contains("1 MiB"), "{path}: {}", e.message);
        // The run goes on: the next request works, on a new connection.
        let r = client.get("/ok").send().await;
        assert_eq!(r.text(), "ok", "after {path}: {:?}", r.error());
    }
    assert_eq!(client.connections_opened(), 5);
    let snap = finish(client, &c);
    let huge = endpoint(&snap, "/huge", "GET");
    assert_eq!((huge.requests, huge.failures), (1, 1));
    assert_eq!(
        snap.total().failures_by_category[ErrorCategory::BodyTooLarge.index()],
        4
    );
    assert_eq!(totals(&snap), (8, 4));
    assert_eq!(srv.requests(), 8);

    // Within the default limit (64 MiB), a large body is read whole.
    let big = serve(|mut c| {
        while c.request(true).is_some() {
            let mut reply = b"HTTP/1.1 200 OK\r\ncontent-length: 3000000\r\n\r\n".to_vec();
            reply.resize(reply.len() + 3_000_000, b'b');
            if !c.write(&reply) {
                return;
            }
        }
    });
    let mut client = user(&big.url(), &c);
    let r = client.get("/").send().await;
    assert_eq!(r.bytes().len(), 3_000_000, "{:?}", r.error());
}

/// A server that reads each POST whole and then ends the connection without answering
/// (with a FIN, or with a reset); GETs are answered.
fn swallows_posts(reset: bool) -> Server {
    serve(move |mut c| {
        while let Some(r) = c.request(true) {
            if r.method == "POST" {
                if reset {
                    c.reset();
                }
                return;
            }
            if !c.write(OK) {
                return;
            }
        }
    })
}

#[tokio::test]
async fn a_post_the_server_read_is_never_sent_again() {
    for reset in [false, true] {
        let srv = swallows_posts(reset);
        let c = collector();
        let mut client = user(&srv.url(), &c);
        for i in 0..6 {
            let r = client.post("/order").body("item=1").send().await;
            let e = r.error().unwrap_or_else(|| panic!("POST {i} succeeded"));
            assert_eq!(e.category, ErrorCategory::Reset, "{}", e.message);
            assert_eq!(r.attempts(), 1);
            // Back-to-back on a kept-alive connection, and after a pause.
            let r = client.get("/ok").send().await;
            assert!(r.is_ok(), "{:?}", r.error());
            if i % 2 == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        let snap = finish(client, &c);
        let post = endpoint(&snap, "/order", "POST");
        assert_eq!((post.requests, post.failures, post.retries), (6, 6, 0));
        assert_eq!(snap.total().requests, srv.requests(), "reset: {reset}");
    }
}

#[tokio::test]
async fn under_fifty_users_every_post_the_server_read_is_counted_once() {
    let srv = swallows_posts(false);
    let c = collector();
    let http = http(&srv.url()).build().unwrap();
    let mut users = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let mut client = http.client(c.recorder());
        users.spawn(async move {
            for _ in 0..40 {
                client.get("/ok").send().await;
                client.post("/order").body("x").send().await;
            }
            drop(client);
        });
    }
    while users.join_next().await.is_some() {}
    let mut sink = Vec::new();
    c.flush_to(&mut sink, u64::MAX);
    let mut snap = Snapshot::new();
    for s in &sink {
        snap.merge(s);
    }
    let post = endpoint(&snap, "/order", "POST");
    assert_eq!((post.requests, post.failures), (2000, 2000));
    assert_eq!(snap.total().requests, srv.requests());
}

#[tokio::test]
async fn an_interim_answer_then_a_close_is_a_failure_not_a_resend() {
    let srv = serve(|mut c| {
        while let Some(r) = c.request(true) {
            if r.path == "/early" {
                c.write(b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\n");
                return;
            }
            if !c.write(OK) {
                return;
            }
        }
    });
    let c = collector();
    let mut client = user(&srv.url(), &c);
    assert!(client.get("/ok").send().await.is_ok());
    let r = client.post("/early").body("x").send().await;
    let e = r.error().unwrap();
    assert_eq!(e.category, ErrorCategory::Reset);
    assert_eq!(
        e.message,
        "connection closed before the response was complete"
    );
    let snap = finish(client, &c);
    assert_eq!(totals(&snap), (2, 1));
    assert_eq!(srv.requests(), 2);
}

#[tokio::test]
async fn an_early_answer_to_a_large_body_is_reported_and_not_resent() {
    // A server that reads the head of a large upload, answers 413 and closes without
    // reading the body (so the client's write fails).
    let srv = serve(|mut c| {
        while let Some(r) = c.request(false) {
            if r.head.contains("content-length: 8388608") {
                c.log.requests.fetch_add(1, Ordering::SeqCst);
                c.write(b"HTTP/1.1 413 Content Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                std::thread::sleep(Duration::from_millis(50));
                return;
            }
            c.log.requests.fetch_add(1, Ordering::SeqCst);
            if !c.write(OK) {
                return;
            }
        }
    });
    let c = collector();
    let mut client = user(&srv.url(), &c);
    assert!(client.get("/ok").send().await.is_ok());
    let r = client
        .post("/upload")
        .body(vec![b'z'; 8 << 20])
        .send()
        .await;
    assert_eq!(r.status_code(), 413, "{:?}", r.error());
    assert_eq!(r.error().unwrap().category, ErrorCategory::HttpStatus);
    let snap = finish(client, &c);
    assert_eq!(totals(&snap), (2, 1));
    assert_eq!(srv.requests(), 2, "the upload reached the server once");
}

#[tokio::test]
async fn a_stray_answer_on_an_idle_connection_is_never_paired_with_the_next_request() {
    // Every answer is followed by an unasked 409 a moment later, or at once in the same
    // write.
    let srv = serve(|mut c| {
        while let Some(r) = c.request(true) {
            let body = format!("for {}", r.path);
            let reply = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            let stray = b"HTTP/1.1 409 Conflict\r\ncontent-length: 5\r\n\r\nstray";
            if r.path.starts_with("/together") {
                let mut both = reply.into_bytes();
                both.extend_from_slice(stray);
                if !c.write(&both) {
                    return;
                }
            } else {
                if !c.write(reply.as_bytes()) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(2));
                if !c.write(stray) {
                    return;
                }
            }
        }
    });
    let c = collector();
    let mut client = user(&srv.url(), &c);
    for i in 0..10 {
        let path = if i % 2 == 0 {
            format!("/later/{i}")
        } else {
            format!("/together/{i}")
        };
        let r = client.get(path.clone()).send().await;
        assert_eq!(r.status_code(), 200, "{path}: {:?}", r.error());
        assert_eq!(r.text(), format!("for {path}"));
        // The user's think time: the stray arrives while the connection is idle.
        tokio::time::sleep(Duration::from_millis(10)).await;
        let r = client.post(format!("/post/{i}")).body("x").send().await;
        assert_eq!(r.text(), format!("for /post/{i}"), "{:?}", r.error());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let snap = finish(client, &c);
    assert_eq!(totals(&snap), (20, 0));
    assert_eq!(srv.requests(), 20);
}

#[tokio::test]
async fn a_folded_header_is_unfolded_and_a_huge_head_refused() {
    let srv = serve(|mut c| {
        while let Some(r) = c.request(true) {
            let reply: Vec<u8> = match r.path.as_str() {
                "/folded" => {
                    b"HTTP/1.1 200 OK\r\nx-folded: one\r\n  two\r\ncontent-length: 2\r\n\r\nok"
                        .to_vec()
                }
                "/huge-head" => {
                    let mut h = b"HTTP/1.1 200 OK\r\n".to_vec();
                    for i in 0..64 {
                        h.extend_from_slice(format!("x-{i}: {}\r\n", "v".repeat(2040)).as_bytes());
                    }
                    h.extend_from_slice(b"content-length: 2\r\n\r\nok");
                    h
                }
                _ => OK.to_vec(),
            };
            if !c.write(&reply) {
                return;
            }
        }
    });
    let c = collector();
    let mut client = user(&srv.url(), &c);
    let r = client.get("/folded").send().await;
    assert!(r.is_ok(), "{:?}", r.error());
    let folded = r.headers().get("x-folded").unwrap().to_str().unwrap();
    assert_eq!(
        folded.split_whitespace().collect::<Vec<_>>(),
        ["one", "two"]
    );
    let r = client.get("/huge-head").send().await;
    let e = r.error().unwrap();
    assert_eq!(e.category, ErrorCategory::Protocol);
    assert_eq!(e.message, "response head larger than 64 KiB");
}
