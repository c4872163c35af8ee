//! In-process test targets on 127.0.0.1:0, each on its own thread and runtime so a test
//! may pause its own clock without freezing the server.

use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

/// What a test server has seen.
#[derive(Default)]
pub(crate) struct Seen {
    pub(crate) connections: AtomicU64,
    pub(crate) requests: AtomicU64,
    pub(crate) flaky_calls: AtomicU64,
}

pub(crate) struct TestServer {
    pub(crate) addr: SocketAddr,
    pub(crate) seen: Arc<Seen>,
}

impl TestServer {
    pub(crate) fn url(&self, scheme: &str) -> String {
        match scheme {
            "https" => format!("https://localhost:{}", self.addr.port()),
            _ => format!("http://{}", self.addr),
        }
    }
}

/// Routes: `/ok`, `/status/{code}`, `/set-cookie`, `/echo-cookie`, `/echo` (body and
/// content type), `/echo-len` (the body's length and last byte), `/big/{n}` (`n` bytes),
/// `/version`, `/flaky` (503 twice, then 200), `/never` (no answer), and anything else 200
/// with the path as body and an `x-path` header.
async fn route(
    req: Request<Incoming>,
    seen: Arc<Seen>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    seen.requests.fetch_add(1, Ordering::Relaxed);
    let path = req.uri().path().to_owned();
    let version = format!("{:?}", req.version());
    let cookie = req
        .headers()
        .get("cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut builder = Response::builder().status(200);
    let text: Bytes = match path.as_str() {
        "/ok" => "hello".into(),
        "/set-cookie" => {
            builder = builder.header("set-cookie", "session=abc123; Path=/");
            "set".into()
        }
        "/echo-cookie" => cookie.into(),
        "/echo" => format!("{content_type}|{query}|{}", String::from_utf8_lossy(&body)).into(),
        "/echo-len" => format!("{} {:?}", body.len(), body.last().map(|&b| b as char)).into(),
        "/version" => version.into(),
        p if p.starts_with("/big/") => {
            let n = p[5..].parse::<usize>().unwrap_or(0);
            (0..n)
                .map(|i| b'a' + (i % 26) as u8)
                .collect::<Vec<u8>>()
                .into()
        }
        "/flaky" => {
            if seen.flaky_calls.fetch_add(1, Ordering::Relaxed) < 2 {
                builder = builder.status(503);
            }
            "flaky".into()
        }
        "/never" => {
            std::future::pending::<()>().await;
            Bytes::new()
        }
        p if p.starts_with("/status/") => {
            builder = builder.status(p[8..].parse::<u16>().unwrap_or(500));
            "status".into()
        }
        p => {
            builder = builder.header("x-path", p);
            p.to_owned().into()
        }
    };
    Ok(builder.body(Full::new(text)).expect("valid response"))
}

fn spawn_runtime<F>(f: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("server runtime");
        rt.block_on(f);
    });
}

/// An HTTP/1.1 (and h2c) server, or with `tls` an HTTPS server offering h2 and http/1.1
/// with a self-signed certificate for `localhost`.
pub(crate) fn start(tls: bool) -> TestServer {
    serve(tls.then(|| tls_acceptor(&[b"h2", b"http/1.1"])))
}

/// An HTTPS server that offers only http/1.1 in ALPN.
pub(crate) fn start_tls_h1() -> TestServer {
    serve(Some(tls_acceptor(&[b"http/1.1"])))
}

fn serve(acceptor: Option<tokio_rustls::TlsAcceptor>) -> TestServer {
    let std_listener = StdListener::bind("127.0.0.1:0").expect("bind");
    std_listener.set_nonblocking(true).expect("nonblocking");
    let addr = std_listener.local_addr().expect("addr");
    let seen = Arc::new(Seen::default());
    let seen2 = Arc::clone(&seen);
    spawn_runtime(async move {
        let listener = TcpListener::from_std(std_listener).expect("listener");
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            seen2.connections.fetch_add(1, Ordering::Relaxed);
            let seen = Arc::clone(&seen2);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| route(req, Arc::clone(&seen)));
                let builder = auto::Builder::new(TokioExecutor::new());
                match acceptor {
                    Some(acceptor) => {
                        // A failed handshake (the client refused our certificate) just ends
                        // this connection.
                        if let Ok(tls) = acceptor.accept(stream).await {
                            let _ = builder.serve_connection(TokioIo::new(tls), service).await;
                        }
                    }
                    None => {
                        let _ = builder
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    }
                }
            });
        }
    });
    TestServer { addr, seen }
}

/// An HTTPS server (http/1.1) that requires a client certificate issued by `ca`.
pub(crate) fn start_mtls(ca: rustls::pki_types::CertificateDer<'static>) -> TestServer {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("certificate");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).expect("CA");
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::clone(&provider),
    )
    .build()
    .expect("client verifier");
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .expect("server config");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    serve(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))))
}

fn tls_acceptor(alpn: &[&[u8]]) -> tokio_rustls::TlsAcceptor {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("certificate");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let chain = vec![cert.cert.der().clone()];
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server config");
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// A raw HTTP/1.1 server answering every request with `response`, counting the exact
/// bytes it read and wrote.
pub(crate) struct RawServer {
    pub(crate) addr: SocketAddr,
    pub(crate) read: Arc<AtomicU64>,
    pub(crate) written: Arc<AtomicU64>,
    /// Connections it closed after answering (`CloseAfterEach`, `UntilClose`,
    /// `TimeoutNotice`), counted once closed.
    pub(crate) closed: Arc<AtomicU64>,
}

pub(crate) const RAW_RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";

/// `behaviour`: `Keep` answers every request; `ResetMidBody` promises 1000 body bytes,
/// sends 10 and resets the connection.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Raw {
    Keep,
    ResetMidBody,
    /// Answers with bytes that are not HTTP.
    Garbage,
    /// Answers with [`CHUNKED_RESPONSE`]: a body in several chunks, then a trailer.
    Chunked,
    /// Answers each request as `Keep` does, then closes the connection without saying
    /// so (as a server whose idle timeout is shorter than the client's pause).
    CloseAfterEach,
    /// Answers the first request of each connection as `Keep` does, and closes the
    /// connection on the second without answering (the server's idle timeout ran out
    /// just as the client sent it).
    CloseOnSecond,
    /// Answers each request as `Keep` does, then at once sends an unasked `408 Request
    /// Timeout` and closes (as some servers do when their idle timeout runs out).
    TimeoutNotice,
    /// Answers with a body that has no length and ends when the connection closes.
    UntilClose,
    /// Answers with `100 Continue`, then as `Keep` does.
    Continue,
}

/// `hello, world` in three chunks and an empty one, with a trailer.
pub(crate) const CHUNKED_RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
    3\r\nhel\r\n4\r\nlo, \r\n5\r\nworld\r\n0\r\nx-done: yes\r\n\r\n";

pub(crate) fn start_raw(behaviour: Raw) -> RawServer {
    let listener = StdListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let read = Arc::new(AtomicU64::new(0));
    let written = Arc::new(AtomicU64::new(0));
    let closed = Arc::new(AtomicU64::new(0));
    let (r, w, c) = (Arc::clone(&read), Arc::clone(&written), Arc::clone(&closed));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let (r, w, c) = (Arc::clone(&r), Arc::clone(&w), Arc::clone(&c));
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let mut pending = Vec::new();
                let mut buf = [0u8; 4096];
                let mut answered = 0;
                loop {
                    // Requests have no body here: one request ends at a blank line.
                    while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                        pending.drain(..end + 4);
                        if behaviour == Raw::CloseOnSecond && answered == 1 {
                            return;
                        }
                        answered += 1;
                        let reply: &[u8] = match behaviour {
                            Raw::Keep => RAW_RESPONSE,
                            Raw::ResetMidBody => {
                                b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n0123456789"
                            }
                            Raw::Garbage => b"SMTP READY \x00\x01\x02\r\n\r\n",
                            Raw::Chunked => CHUNKED_RESPONSE,
                            Raw::CloseAfterEach | Raw::CloseOnSecond => RAW_RESPONSE,
                            Raw::TimeoutNotice => b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello\
                                HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                            Raw::UntilClose => b"HTTP/1.1 200 OK\r\n\r\nuntil the end",
                            Raw::Continue => {
                                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"
                            }
                        };
                        // Counted before writing: the client may read the reply, and
                        // the test check the count, before write_all even returns here.
                        w.fetch_add(reply.len() as u64, Ordering::Relaxed);
                        if stream.write_all(reply).is_err() {
                            return;
                        }
                        if matches!(
                            behaviour,
                            Raw::CloseAfterEach | Raw::UntilClose | Raw::TimeoutNotice
                        ) {
                            drop(stream);
                            c.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                        if behaviour == Raw::ResetMidBody {
                            // Linger 0 makes close send a RST instead of a FIN.
                            let sock = socket_linger_zero(stream);
                            drop(sock);
                            return;
                        }
                    }
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            r.fetch_add(n as u64, Ordering::Relaxed);
                            pending.extend_from_slice(&buf[..n]);
                        }
                    }
                }
            });
        }
    });
    RawServer {
        addr,
        read,
        written,
        closed,
    }
}

fn socket_linger_zero(stream: std::net::TcpStream) -> std::net::TcpStream {
    // std has no stable set_linger; tokio's TcpStream does.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async move {
        let _ = stream.set_nonblocking(true);
        let t = tokio::net::TcpStream::from_std(stream).expect("tokio stream");
        #[allow(deprecated)] // set_linger is deprecated only because it can block on close
        let _ = t.set_linger(Some(Duration::ZERO));
        t.into_std().expect("std stream")
    })
}

/// A port on which nothing listens.
pub(crate) fn closed_port() -> u16 {
    let l = StdListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    port
}
