//! Connections: TCP (counted), optional TLS with ALPN, then HTTP/1.1 on the user's own
//! task ([`crate::h1`]) or HTTP/2 on it too ([`crate::h2`], the `h2` crate). One connection per origin per user, kept
//! alive between requests.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use aiotest_metrics::ErrorCategory;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;

use crate::h1::H1;

/// Where a connection goes: scheme, host and port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Origin {
    pub(crate) https: bool,
    pub(crate) host: String,
    pub(crate) port: u16,
}

/// A failure to open a connection, categorized.
#[derive(Debug)]
pub(crate) struct ConnectError {
    pub(crate) category: ErrorCategory,
    pub(crate) message: String,
}

/// Bytes that crossed the TCP connection (below TLS), both ways.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) sent: AtomicU64,
    pub(crate) received: AtomicU64,
}

/// A stream that counts what it reads and writes.
pub(crate) struct CountingIo<T> {
    inner: T,
    counters: Arc<Counters>,
}

impl<T: AsyncRead + Unpin> AsyncRead for CountingIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        self.counters.received.fetch_add(n, Ordering::Relaxed);
        res
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for CountingIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = res {
            self.counters.sent.fetch_add(n as u64, Ordering::Relaxed);
        }
        res
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = res {
            self.counters.sent.fetch_add(n as u64, Ordering::Relaxed);
        }
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The byte stream under HTTP/1.1: plain TCP or TLS, counted below TLS.
pub(crate) enum Stream {
    Plain(CountingIo<TcpStream>),
    Tls(Box<TlsStream<CountingIo<TcpStream>>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl Stream {
    fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => &s.inner,
            Stream::Tls(s) => &s.get_ref().0.inner,
        }
    }

    /// Whether the socket itself has anything to read now (bytes, its end, an error),
    /// asked of the kernel: the runtime's own record of readiness can lag behind what
    /// arrived while the connection sat idle.
    fn socket_has_input(&self) -> bool {
        let mut probe = [std::mem::MaybeUninit::<u8>::uninit(); 1];
        match socket2::SockRef::from(self.tcp()).peek(&mut probe) {
            Err(e) => e.kind() != io::ErrorKind::WouldBlock,
            Ok(_) => true,
        }
    }
}

/// The protocol of a live connection.
pub(crate) enum Kind {
    /// Driven by the user's task itself.
    H1(H1<Stream>),
    /// Driven by the user's task too, while a request waits on it (boxed: it is large).
    H2(Box<crate::h2::H2>),
}

/// A live connection. Dropping it closes the socket (and stops an HTTP/2 driver task).
pub(crate) struct Connection {
    pub(crate) kind: Kind,
    pub(crate) counters: Arc<Counters>,
    pub(crate) requests: u64,
    /// How long opening it took, for the request that opened it.
    pub(crate) opening: Opening,
}

/// The parts of opening a connection, as k6 times them (resolving the name counts in the
/// request's `blocked`, with the rest of the wait for the connection).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Opening {
    /// The TCP handshake.
    pub(crate) connecting: Duration,
    /// The TLS handshake (zero for http).
    pub(crate) tls_handshaking: Duration,
}

impl Connection {
    fn new(kind: Kind, counters: Arc<Counters>, opening: Opening) -> Self {
        Connection {
            kind,
            counters,
            requests: 0,
            opening,
        }
    }

    /// Whether this is an HTTP/2 connection.
    pub(crate) fn is_h2(&self) -> bool {
        matches!(self.kind, Kind::H2(_))
    }

    /// Whether the connection can take a request at `now`, without waiting.
    ///
    /// An HTTP/1.1 connection the last response left open is checked for anything the
    /// server sent since (its end, a reset, a `408`, a stray answer) when it has been idle
    /// a while, or always when `careful` (a request that must not reach the server twice):
    /// such a connection is closed, never paired with the next request, and the request
    /// goes on a fresh one, since the server cannot have seen it. Back-to-back idempotent
    /// requests skip the check; should such a request meet a close, the attempt is
    /// counted and retried as any failed one.
    pub(crate) fn is_ready(&mut self, now: tokio::time::Instant, careful: bool) -> bool {
        match &mut self.kind {
            Kind::H1(h1) => {
                if !h1.is_open() {
                    return false;
                }
                if !careful && !h1.idle_a_while(now) {
                    return true;
                }
                // TLS may hold decrypted bytes the socket no longer shows.
                if h1.io.socket_has_input() || (h1.io.is_tls() && h1.has_input()) {
                    h1.close();
                    return false;
                }
                true
            }
            Kind::H2(h2) => h2.is_ready(),
        }
    }

    /// Whether the connection can take a request (waits for HTTP/2 readiness).
    pub(crate) async fn ready(&mut self, careful: bool) -> bool {
        match &mut self.kind {
            Kind::H1(_) => self.is_ready(tokio::time::Instant::now(), careful),
            Kind::H2(h2) => h2.ready().await,
        }
    }
}

fn err(category: ErrorCategory, message: String) -> ConnectError {
    ConnectError { category, message }
}

/// A name connected to a given address instead of its DNS answer (k6's `hosts`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostMapping {
    /// The host, lower case.
    host: String,
    /// Only this port of it, if given.
    port: Option<u16>,
    ip: std::net::IpAddr,
    /// The port to connect to, if not the URL's.
    to_port: Option<u16>,
}

impl HostMapping {
    /// `name` (`host` or `host:port`) to `address` (`ip` or `ip:port`).
    pub(crate) fn parse(name: &str, address: &str) -> Result<Self, crate::HttpConfigError> {
        let bad = |reason: &str| crate::HttpConfigError::BadHostMapping {
            name: name.to_owned(),
            address: address.to_owned(),
            reason: reason.to_owned(),
        };
        let port = |p: &str| {
            p.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad(&format!("`{p}` is not a port")))
        };
        let (host, port_of_name) = match name.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, Some(port(p)?)),
            _ => (name, None),
        };
        if host.is_empty() || host.contains(['/', ' ']) {
            return Err(bad("the name is a host name, or host:port"));
        }
        let (ip, to_port) = match address.parse::<std::net::SocketAddr>() {
            Ok(sa) => (sa.ip(), Some(sa.port())),
            Err(_) => (
                address
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .map_err(|_| bad("the address is an IP address, or ip:port"))?,
                None,
            ),
        };
        Ok(HostMapping {
            host: host.to_ascii_lowercase(),
            port: port_of_name,
            ip,
            to_port,
        })
    }

    /// Where `origin` connects, if this mapping covers it.
    fn address_for(&self, origin: &Origin) -> Option<std::net::SocketAddr> {
        (origin.host.eq_ignore_ascii_case(&self.host) && self.port.is_none_or(|p| p == origin.port))
            .then(|| std::net::SocketAddr::new(self.ip, self.to_port.unwrap_or(origin.port)))
    }
}

/// Opens a connection to `origin`: resolve (or take its address from `hosts`), connect,
/// TLS with ALPN when https, then the HTTP handshake (HTTP/2 at once over plain TCP with
/// `h2c`). Every failure is categorized.
pub(crate) async fn connect(
    origin: &Origin,
    tls: &Arc<rustls::ClientConfig>,
    hosts: &[HostMapping],
    h2c: bool,
) -> Result<Connection, ConnectError> {
    // A mapping for host:port wins over one for the host, and a later one (the command
    // line's) over an earlier one (the test's).
    let mapped = hosts
        .iter()
        .rev()
        .filter(|m| m.port.is_some())
        .chain(hosts.iter().rev().filter(|m| m.port.is_none()))
        .find_map(|m| m.address_for(origin));
    let addrs: Vec<_> = match mapped {
        Some(a) => vec![a],
        None => tokio::net::lookup_host((origin.host.as_str(), origin.port))
            .await
            .map_err(|e| {
                err(
                    ErrorCategory::Dns,
                    format!("cannot resolve {}: {e}", origin.host),
                )
            })?
            .collect(),
    };
    if addrs.is_empty() {
        return Err(err(
            ErrorCategory::Dns,
            format!("{} has no address", origin.host),
        ));
    }
    let resolved = Instant::now();
    let mut last = None;
    let mut tcp = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => last = Some((addr, e)),
        }
    }
    let Some(tcp) = tcp else {
        let msg = last.map_or_else(
            || "no address".to_owned(),
            |(a, e)| format!("connect to {a}: {e}"),
        );
        return Err(err(ErrorCategory::Connect, msg));
    };
    let connected = Instant::now();
    let mut opening = Opening {
        connecting: connected - resolved,
        tls_handshaking: Duration::ZERO,
    };
    // Requests are small and latency matters more than packet count.
    let _ = tcp.set_nodelay(true);
    let counters = Arc::new(Counters::default());
    let io = CountingIo {
        inner: tcp,
        counters: Arc::clone(&counters),
    };
    if !origin.https && h2c {
        return h2(Stream::Plain(io), counters, opening).await;
    }
    if !origin.https {
        let h1 = H1::new(Stream::Plain(io));
        return Ok(Connection::new(Kind::H1(h1), counters, opening));
    }
    let name = ServerName::try_from(origin.host.clone()).map_err(|e| {
        err(
            ErrorCategory::Tls,
            format!("invalid TLS server name {}: {e}", origin.host),
        )
    })?;
    let stream = tokio_rustls::TlsConnector::from(Arc::clone(tls))
        .connect(name, io)
        .await
        .map_err(|e| {
            err(
                ErrorCategory::Tls,
                format!("TLS handshake with {}: {e}", origin.host),
            )
        })?;
    opening.tls_handshaking = connected.elapsed();
    if stream.get_ref().1.alpn_protocol() != Some(b"h2") {
        let h1 = H1::new(Stream::Tls(Box::new(stream)));
        return Ok(Connection::new(Kind::H1(h1), counters, opening));
    }
    h2(Stream::Tls(Box::new(stream)), counters, opening).await
}

/// The HTTP/2 handshake on `io` (TLS after ALPN, or plain TCP by prior knowledge).
async fn h2(
    io: Stream,
    counters: Arc<Counters>,
    opening: Opening,
) -> Result<Connection, ConnectError> {
    let h2 = crate::h2::H2::handshake(io).await.map_err(|e| {
        let category = match e.get_io() {
            Some(io) => crate::h1::io_error(io).category,
            None => ErrorCategory::Protocol,
        };
        err(category, format!("HTTP/2 handshake: {e}"))
    })?;
    Ok(Connection::new(Kind::H2(Box::new(h2)), counters, opening))
}

/// A client certificate chain and its key, for servers that ask for one.
pub(crate) type ClientAuth = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// Reads a PEM certificate chain and private key; an error says which of the two is
/// unusable and why.
pub(crate) fn client_auth(cert: &[u8], key: &[u8]) -> Result<ClientAuth, String> {
    let chain = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the certificate is not PEM: {e}"))?;
    if chain.is_empty() {
        return Err("the certificate file holds no CERTIFICATE section".to_owned());
    }
    let key = PrivateKeyDer::from_pem_slice(key)
        .map_err(|e| format!("the key is not a PEM private key: {e}"))?;
    Ok((chain, key))
}

/// The TLS settings shared by all users of one [`crate::HttpUser`]: webpki roots and
/// ALPN `h2, http/1.1`; with `verify` false, any certificate is accepted; with a client
/// certificate, it is presented to servers that ask for one.
pub(crate) fn tls_config(
    verify: bool,
    client: Option<ClientAuth>,
) -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()?;
    let builder = if verify {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        builder.with_root_certificates(roots)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
    };
    let mut config = match client {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// `verify_ssl = false`: for test environments with self-signed certificates. Signatures
/// are still checked against the presented certificate, so the TLS session is sound; only
/// the certificate's trust and name are not.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod host_mapping_tests {
    use super::*;

    fn origin(host: &str, port: u16) -> Origin {
        Origin {
            https: false,
            host: host.into(),
            port,
        }
    }

    #[test]
    fn a_mapping_takes_a_name_or_a_name_and_port_to_an_ip_or_an_ip_and_port() {
        let m = HostMapping::parse("Shop.Example.com", "127.0.0.1").expect("valid");
        assert_eq!(
            m.address_for(&origin("shop.example.com", 443)),
            Some("127.0.0.1:443".parse().expect("valid"))
        );
        assert_eq!(m.address_for(&origin("example.com", 443)), None);
        let m = HostMapping::parse("shop.example.com:443", "127.0.0.1:8443").expect("valid");
        assert_eq!(
            m.address_for(&origin("shop.example.com", 443)),
            Some("127.0.0.1:8443".parse().expect("valid"))
        );
        assert_eq!(m.address_for(&origin("shop.example.com", 80)), None);
        let m = HostMapping::parse("v6.example", "[::1]:81").expect("valid");
        assert_eq!(
            m.address_for(&origin("v6.example", 80)),
            Some("[::1]:81".parse().expect("valid"))
        );
        for (name, address) in [
            ("shop.example.com", "localhost"),
            ("shop.example.com:x", "127.0.0.1"),
            ("shop.example.com:0", "127.0.0.1"),
            ("", "127.0.0.1"),
            ("http://shop", "127.0.0.1"),
        ] {
            let e = HostMapping::parse(name, address).expect_err("refused");
            assert!(
                e.to_string()
                    .starts_with(&format!("hosts `{name}` = `{address}`: ")),
                "{e}"
            );
        }
    }
}
