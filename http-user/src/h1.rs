//! The HTTP/1.1 exchange, written for a load generator: the user's own task writes the
//! request and reads the response on its connection, with no driver task, no channel
//! between the two, and buffers that are reused for the connection's whole life.
//!
//! A general client (hyper's) runs each connection on a task of its own and hands every
//! request to it through a channel; each request then costs a channel send, two task
//! wake-ups and a header map built from the response. Here a request is one write of a
//! head encoded into the connection's write buffer, and a response is parsed in place
//! from its read buffer: the body is a slice of that buffer (no copy), and the headers
//! are kept as raw bytes, made into a map only if the user asks for them.

use std::io;
use std::pin::Pin;
use std::task::Context;
use std::time::Duration;

use aiotest_metrics::ErrorCategory;
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;

/// A response head larger than this is refused (hyper's limit is about as large).
const MAX_HEAD: usize = 64 * 1024;
/// Most headers a response may have.
const MAX_HEADERS: usize = 100;
/// The read buffer's size when a connection first reads; it grows for larger responses.
const READ_CHUNK: usize = 4096;
/// A body at most this large is copied behind the head and sent in one write.
const COALESCE_BODY: usize = 16 * 1024;
/// A connection idle at least this long is checked before it is used again (a request
/// that is not idempotent always checks it): long enough that back-to-back requests skip
/// the check, short enough that bytes a server sends between a user's requests are seen.
pub(crate) const CHECK_AFTER_IDLE: Duration = Duration::from_millis(1);
/// The most room a read asks for beyond what the buffer holds.
const READ_STEP: usize = 64 * 1024;

/// A response read off the wire: its status, its raw head (status line and headers,
/// to be parsed again only on demand) and its body.
#[derive(Debug)]
pub(crate) struct RawResponse {
    pub(crate) status: u16,
    pub(crate) head: Bytes,
    pub(crate) body: Bytes,
    /// The head has at least one `Set-Cookie`.
    pub(crate) sets_cookie: bool,
}

/// A failed exchange.
#[derive(Debug)]
pub(crate) struct ExchangeError {
    pub(crate) category: ErrorCategory,
    pub(crate) message: String,
    /// Not one byte of the request reached the connection: the write failed at once (the
    /// peer had reset it), so the server cannot have processed it and it may go again on
    /// a fresh connection. Any other failure may have reached the server.
    pub(crate) unsent: bool,
}

fn protocol(message: impl Into<String>) -> ExchangeError {
    ExchangeError {
        category: ErrorCategory::Protocol,
        message: message.into(),
        unsent: false,
    }
}

fn too_large(what: &str, limit: usize) -> ExchangeError {
    ExchangeError {
        category: ErrorCategory::BodyTooLarge,
        message: format!(
            "{what} is over the {} limit",
            aiotest_core::size::format(limit as u64)
        ),
        unsent: false,
    }
}

pub(crate) fn io_error(e: &io::Error) -> ExchangeError {
    use io::ErrorKind::*;
    let tls = e
        .get_ref()
        .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some());
    let category = if tls {
        ErrorCategory::Tls
    } else if matches!(
        e.kind(),
        ConnectionReset | BrokenPipe | UnexpectedEof | ConnectionAborted
    ) {
        ErrorCategory::Reset
    } else if e.kind() == TimedOut {
        ErrorCategory::Timeout
    } else {
        ErrorCategory::Other
    };
    ExchangeError {
        category,
        message: format!("connection error: {e}"),
        unsent: false,
    }
}

fn closed_early(received: bool) -> ExchangeError {
    ExchangeError {
        category: ErrorCategory::Reset,
        message: if received {
            "connection closed before the response was complete".to_owned()
        } else {
            "connection closed before the response".to_owned()
        },
        unsent: false,
    }
}

/// How the body of a response ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Empty,
    Length(usize),
    Chunked,
    /// Until the server closes the connection.
    Close,
}

/// What the head of a response says.
struct Head {
    len: usize,
    status: u16,
    framing: Framing,
    keep_alive: bool,
    sets_cookie: bool,
}

/// One HTTP/1.1 connection's state around its byte stream `S`.
pub(crate) struct H1<S> {
    pub(crate) io: S,
    read: BytesMut,
    /// The next request, head and (small) body.
    pub(crate) write: Vec<u8>,
    /// False once the server said it closes, a response ended with the connection, or
    /// bytes nobody asked for were seen.
    reusable: bool,
    /// When the last response ended (set by the caller, who reads the clock anyway).
    pub(crate) idle_since: Option<Instant>,
    /// When the last request was written whole (only when it took several writes), and
    /// when the first byte of its answer came (only when it took several reads): k6's
    /// `sending` ends and `receiving` begins there.
    pub(crate) written_at: Option<Instant>,
    pub(crate) first_byte_at: Option<Instant>,
    /// Whether a byte of the current answer has been read.
    answering: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> H1<S> {
    pub(crate) fn new(io: S) -> Self {
        H1 {
            io,
            read: BytesMut::new(),
            write: Vec::new(),
            reusable: true,
            idle_since: None,
            written_at: None,
            first_byte_at: None,
            answering: false,
        }
    }

    /// Whether the last response left the connection open.
    pub(crate) fn is_open(&self) -> bool {
        self.reusable
    }

    /// The connection must not carry another request.
    pub(crate) fn close(&mut self) {
        self.reusable = false;
    }

    /// Whether the connection has been idle for [`CHECK_AFTER_IDLE`] or more at `now` (a
    /// connection that never carried a request has not).
    pub(crate) fn idle_a_while(&self, now: Instant) -> bool {
        self.idle_since
            .is_some_and(|t| now.saturating_duration_since(t) >= CHECK_AFTER_IDLE)
    }

    /// Whether the stream has anything to read right now without waiting: its end, an
    /// error, or bytes nobody asked for (say a 408 before a close). Through the stream's
    /// own readiness, so for a TLS stream it also sees what TLS has buffered.
    pub(crate) fn has_input(&mut self) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut probe = [0u8; 1];
        let mut buf = ReadBuf::new(&mut probe);
        !Pin::new(&mut self.io)
            .poll_read(&mut cx, &mut buf)
            .is_pending()
    }

    /// Sends the request in the write buffer (then `body`, when it was too large to copy
    /// there) and reads the response. `head_request`: the response has no body whatever
    /// its headers say. A body over `max_body` bytes fails with its own category. On an
    /// error the connection must not be used again.
    ///
    /// A write that fails after the server got part of the request is followed by a read:
    /// a server may answer before it stops reading (a `413` to a large body), and that
    /// answer is the request's.
    pub(crate) async fn exchange(
        &mut self,
        body: &[u8],
        head_request: bool,
        max_body: usize,
    ) -> Result<RawResponse, ExchangeError> {
        self.read.clear();
        self.written_at = None;
        self.first_byte_at = None;
        self.answering = false;
        // A write that failed part way: the answer read next, if any, is the request's;
        // without one, this error is.
        let write_error = match self.send(body).await {
            Ok(writes) => {
                // A request taken by one write went out at once (an idle connection's
                // socket buffer takes it whole): its system call's few µs count in
                // `waiting`, and the clock is not read. One that took several writes
                // (a large body) had to wait for the socket: that is `sending`.
                if writes > 1 {
                    self.written_at = Some(Instant::now());
                }
                None
            }
            Err((e, 0)) => {
                self.reusable = false;
                return Err(ExchangeError {
                    unsent: true,
                    ..io_error(&e)
                });
            }
            Err((e, _)) => {
                self.reusable = false;
                Some(e)
            }
        };
        // Read in place, not in a function of its own: one state machine per exchange.
        let result = async {
            // Whether any byte of an answer came, interim responses included: after one, the
            // server has the request.
            let mut received = !self.read.is_empty();
            let head = loop {
                match parse_head(&self.read, head_request)? {
                    Some(h) if h.len > MAX_HEAD => return Err(head_too_large()),
                    Some(h) if (100..200).contains(&h.status) && h.status != 101 => {
                        // An interim response (100 Continue, 103 Early Hints): the final one
                        // follows.
                        let _ = self.read.split_to(h.len);
                    }
                    Some(h) => break h,
                    None => {
                        if self.read.len() > MAX_HEAD {
                            return Err(head_too_large());
                        }
                        if self.fill(READ_CHUNK).await? == 0 {
                            return Err(closed_early(received));
                        }
                        received = true;
                    }
                }
            };
            if head.status == 101 {
                return Err(protocol(
                    "the server switched protocols (101), not supported",
                ));
            }
            let head_bytes = self.read.split_to(head.len).freeze();
            let body = match head.framing {
                Framing::Empty => Bytes::new(),
                Framing::Length(n) => {
                    if n > max_body {
                        return Err(too_large(
                            &format!("the declared body of {n} bytes"),
                            max_body,
                        ));
                    }
                    while self.read.len() < n {
                        let want = self.step(n - self.read.len());
                        if self.fill(want).await? == 0 {
                            return Err(closed_early(true));
                        }
                    }
                    self.read.split_to(n).freeze()
                }
                Framing::Chunked => self.read_chunked(max_body).await?,
                Framing::Close => {
                    loop {
                        if self.read.len() > max_body {
                            return Err(too_large("the body", max_body));
                        }
                        let want = self.step(usize::MAX);
                        if self.fill(want).await? == 0 {
                            break;
                        }
                    }
                    self.reusable = false;
                    self.read.split().freeze()
                }
            };
            // A kept-alive connection carries one response per request: bytes past it mean
            // the two sides disagree on where it ended.
            self.reusable &= head.keep_alive && self.read.is_empty();
            Ok(RawResponse {
                status: head.status,
                head: head_bytes,
                body,
                sets_cookie: head.sets_cookie,
            })
        }
        .await;
        match (result, write_error) {
            (Ok(r), _) => Ok(r),
            (Err(e), None) => {
                self.reusable = false;
                Err(e)
            }
            (Err(_), Some(e)) => Err(io_error(&e)),
        }
    }

    /// How much room to ask for when `missing` more bytes are expected: never more than
    /// the buffer already holds (or [`READ_STEP`]), so memory follows what arrived, not
    /// what the server declared.
    fn step(&self, missing: usize) -> usize {
        missing.min(self.read.len().max(READ_STEP)).max(READ_CHUNK)
    }

    /// Writes the request; on failure, the error and how many bytes were written.
    /// Writes the request; how many writes it took.
    async fn send(&mut self, body: &[u8]) -> Result<u32, (io::Error, usize)> {
        let mut written = 0;
        let mut writes = 0;
        for part in [self.write.as_slice(), body] {
            let mut rest = part;
            while !rest.is_empty() {
                writes += 1;
                match self.io.write(rest).await {
                    Ok(0) => return Err((io::ErrorKind::WriteZero.into(), written)),
                    Ok(n) => {
                        written += n;
                        rest = &rest[n..];
                    }
                    Err(e) => return Err((e, written)),
                }
            }
        }
        self.io.flush().await.map_err(|e| (e, written))?;
        Ok(writes)
    }

    /// Reads once into the read buffer, with at least `want` bytes of room; the count
    /// read, 0 at the connection's end.
    async fn fill(&mut self, want: usize) -> Result<usize, ExchangeError> {
        // The answer's first bytes came by the last read and more must be waited for: its
        // first byte came about now (the parse in between takes µs). An answer read
        // whole by its first read never reads the clock: its `receiving` is 0.
        if self.answering && self.first_byte_at.is_none() {
            self.first_byte_at = Some(Instant::now());
        }
        // With the last response's body dropped, this takes its memory back.
        self.read.reserve(want);
        let n = self
            .io
            .read_buf(&mut self.read)
            .await
            .map_err(|e| io_error(&e))?;
        self.answering |= n > 0;
        Ok(n)
    }

    /// A chunked body, decoded, at most `max_body` bytes; trailers are read and dropped.
    /// A chunk is copied out as it arrives, so its declared size reserves nothing.
    async fn read_chunked(&mut self, max_body: usize) -> Result<Bytes, ExchangeError> {
        let mut body = BytesMut::new();
        loop {
            let (start, size) = loop {
                match httparse::parse_chunk_size(&self.read) {
                    Ok(httparse::Status::Complete(found)) => break found,
                    Ok(httparse::Status::Partial) => {
                        if self.read.len() > MAX_HEAD {
                            return Err(protocol("chunk size line too long"));
                        }
                        if self.fill(READ_CHUNK).await? == 0 {
                            return Err(closed_early(true));
                        }
                    }
                    Err(_) => return Err(protocol("invalid chunk size")),
                }
            };
            let room = max_body - body.len();
            let Some(size) = usize::try_from(size).ok().filter(|&n| n <= room) else {
                return Err(too_large(
                    &format!("a chunk of {size} bytes after {} bytes", body.len()),
                    max_body,
                ));
            };
            let _ = self.read.split_to(start);
            if size == 0 {
                return self.skip_trailers().await.map(|()| body.freeze());
            }
            let mut left = size;
            while left > 0 {
                if self.read.is_empty() {
                    let want = self.step(left);
                    if self.fill(want).await? == 0 {
                        return Err(closed_early(true));
                    }
                }
                let take = left.min(self.read.len());
                body.extend_from_slice(&self.read[..take]);
                let _ = self.read.split_to(take);
                left -= take;
            }
            while self.read.len() < 2 {
                if self.fill(READ_CHUNK).await? == 0 {
                    return Err(closed_early(true));
                }
            }
            if &self.read[..2] != b"\r\n" {
                return Err(protocol("chunk not followed by CRLF"));
            }
            let _ = self.read.split_to(2);
        }
    }

    /// Reads past the trailer section that ends a chunked body.
    async fn skip_trailers(&mut self) -> Result<(), ExchangeError> {
        loop {
            if self.read.starts_with(b"\r\n") {
                let _ = self.read.split_to(2);
                return Ok(());
            }
            if let Some(at) = self.read.windows(4).position(|w| w == b"\r\n\r\n") {
                if at + 4 > MAX_HEAD {
                    return Err(protocol("trailers larger than 64 KiB"));
                }
                let _ = self.read.split_to(at + 4);
                return Ok(());
            }
            if self.read.len() > MAX_HEAD {
                return Err(protocol("trailers larger than 64 KiB"));
            }
            if self.fill(READ_CHUNK).await? == 0 {
                return Err(closed_early(true));
            }
        }
    }
}

fn head_too_large() -> ExchangeError {
    protocol(format!("response head larger than {} KiB", MAX_HEAD / 1024))
}

/// Headers room for the first parse of a head: most responses have fewer, and the room
/// is initialized on every parse.
const FEW_HEADERS: usize = 24;

/// Parses a response head at the start of `buf`: `None` while it is incomplete.
fn parse_head(buf: &[u8], head_request: bool) -> Result<Option<Head>, ExchangeError> {
    if buf.is_empty() {
        return Ok(None);
    }
    match parse_head_in::<FEW_HEADERS>(buf, head_request) {
        Err(httparse::Error::TooManyHeaders) => parse_head_in::<MAX_HEADERS>(buf, head_request)
            .map_err(|e| match e {
                httparse::Error::TooManyHeaders => {
                    protocol(format!("response has more than {MAX_HEADERS} headers"))
                }
                e => protocol(format!("invalid response head: {e}")),
            })?,
        Err(e) => Err(protocol(format!("invalid response head: {e}"))),
        Ok(head) => head,
    }
}

/// [`parse_head`] with room for `N` headers.
fn parse_head_in<const N: usize>(
    buf: &[u8],
    head_request: bool,
) -> Result<Result<Option<Head>, ExchangeError>, httparse::Error> {
    let mut headers = [httparse::EMPTY_HEADER; N];
    let mut response = httparse::Response::new(&mut headers);
    let len = match parser().parse_response(&mut response, buf)? {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial => return Ok(Ok(None)),
    };
    Ok(read_head(&response, len, head_request))
}

/// What a parsed head of `len` bytes says about its response.
fn read_head(
    response: &httparse::Response<'_, '_>,
    len: usize,
    head_request: bool,
) -> Result<Option<Head>, ExchangeError> {
    let status = response.code.unwrap_or(0);
    if status < 100 {
        return Err(protocol(format!("invalid status code {status}")));
    }
    let mut keep_alive = response.version == Some(1);
    let mut length: Option<usize> = None;
    let mut chunked = false;
    let mut transfer_encoding = false;
    let mut sets_cookie = false;
    for h in response.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .map(str::trim)
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<usize>().ok())
                .ok_or_else(|| protocol("invalid Content-Length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(protocol("conflicting Content-Length headers"));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encoding = true;
            // Chunked must be the last coding for the body to be delimited by it.
            chunked = h
                .value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case("set-cookie") {
            sets_cookie = true;
        }
    }
    let framing = if head_request || status == 204 || status == 304 || status < 200 {
        Framing::Empty
    } else if transfer_encoding {
        if chunked {
            Framing::Chunked
        } else {
            Framing::Close
        }
    } else {
        match length {
            Some(0) => Framing::Empty,
            Some(n) => Framing::Length(n),
            None => Framing::Close,
        }
    };
    Ok(Some(Head {
        len,
        status,
        framing,
        keep_alive: keep_alive && framing != Framing::Close,
        sets_cookie,
    }))
}

/// The response parser: a header folded over several lines (obs-fold) is accepted, as
/// RFC 9112 section 5.2 asks of a client; its line breaks become spaces in the map.
fn parser() -> httparse::ParserConfig {
    let mut config = httparse::ParserConfig::default();
    config.allow_obsolete_multiline_headers_in_responses(true);
    config
}

/// The headers of a raw head as a map (names lower-cased; a header whose value is not
/// valid in a map is left out; a folded one is unfolded).
/// Calls `f` with each header of the response head `head`, as received.
pub(crate) fn for_each_header(head: &[u8], mut f: impl FnMut(&str, &[u8])) {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    if parser().parse_response(&mut response, head).is_err() {
        return;
    }
    for h in response.headers.iter() {
        f(h.name, h.value);
    }
}

pub(crate) fn header_map(head: &[u8]) -> http::HeaderMap {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let mut map = http::HeaderMap::new();
    if parser().parse_response(&mut response, head).is_err() {
        return map;
    }
    for h in response.headers.iter() {
        let Ok(name) = http::header::HeaderName::from_bytes(h.name.as_bytes()) else {
            continue;
        };
        let value = if h.value.iter().any(|&b| b == b'\r' || b == b'\n') {
            let unfolded: Vec<u8> = h
                .value
                .iter()
                .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b })
                .collect();
            http::HeaderValue::from_bytes(&unfolded)
        } else {
            http::HeaderValue::from_bytes(h.value)
        };
        if let Ok(v) = value {
            map.append(name, v);
        }
    }
    map
}

/// Whether a body of `len` bytes goes behind the head in one write.
pub(crate) fn coalesces(len: usize) -> bool {
    len <= COALESCE_BODY
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> Head {
        parse_head(raw.as_bytes(), false)
            .expect("valid")
            .expect("complete")
    }

    #[test]
    fn framing_follows_the_headers() {
        let h = head("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n");
        assert_eq!(h.framing, Framing::Length(5));
        assert!(h.keep_alive);
        let h = head("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
        assert_eq!(h.framing, Framing::Chunked);
        let h = head("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n");
        assert_eq!(h.framing, Framing::Close);
        assert!(!h.keep_alive);
        let h = head("HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!(h.framing, Framing::Close);
        let h = head("HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n");
        assert_eq!(h.framing, Framing::Empty);
        assert!(h.keep_alive);
        let h = head("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n");
        assert!(!h.keep_alive);
        let h = head("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n");
        assert!(!h.keep_alive);
        let h = head("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 1\r\n\r\n");
        assert!(h.keep_alive);
        let h = head("HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nContent-Length: 0\r\n\r\n");
        assert!(h.sets_cookie);
        assert_eq!(h.framing, Framing::Empty);
        let h = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", true)
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, Framing::Empty, "a HEAD response has no body");
    }

    #[test]
    fn bad_heads_are_protocol_errors_and_partial_ones_wait() {
        assert!(
            parse_head(b"HTTP/1.1 200 OK\r\nContent-Le", false)
                .unwrap()
                .is_none()
        );
        for bad in [
            "HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            "HTTP/1.1 099 Odd\r\n\r\n",
            "SMTP READY\r\n\r\n",
        ] {
            let e = parse_head(bad.as_bytes(), false).err().expect(bad);
            assert_eq!(e.category, ErrorCategory::Protocol, "{bad}");
        }
        let many = |n: usize| {
            let mut h = String::from("HTTP/1.1 200 OK\r\n");
            for i in 0..n {
                h.push_str(&format!("x-{i}: {i}\r\n"));
            }
            h + "content-length: 3\r\n\r\n"
        };
        let h = head(&many(MAX_HEADERS - 1));
        assert_eq!(h.framing, Framing::Length(3), "past the first parse's room");
        let e = parse_head(many(MAX_HEADERS).as_bytes(), false)
            .err()
            .unwrap();
        assert_eq!(e.message, "response has more than 100 headers");
        // The same length twice is allowed.
        let h = head("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n");
        assert_eq!(h.framing, Framing::Length(5));
    }

    #[test]
    fn headers_are_made_into_a_map_on_demand() {
        let raw = b"HTTP/1.1 200 OK\r\nX-One: 1\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\n\r\n";
        let map = header_map(raw);
        assert_eq!(map.get("x-one").unwrap(), "1");
        let cookies: Vec<_> = map.get_all("set-cookie").iter().collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
        assert!(header_map(b"").is_empty(), "no response, no headers");
    }
}
