//! HTTP/2 on the user's own task, on the `h2` crate: the connection is polled by the
//! request that waits on it, so a request costs no task of its own and no channel (hyper's
//! client spawned a task for every request to hand its response back, and moved that
//! task's future into place: a tenth of a request's instructions went in copies). Between
//! requests nobody polls the connection: what the server sent meanwhile (a ping, a
//! GOAWAY, window updates) is handled when the next request polls it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, SET_COOKIE};
use http::{HeaderMap, StatusCode};
use tokio::time::Instant;

use crate::conn::Stream;
use crate::h1::ExchangeError;
use aiotest_metrics::ErrorCategory;

/// A live HTTP/2 connection.
pub(crate) struct H2 {
    send: h2::client::SendRequest<Bytes>,
    conn: h2::client::Connection<Stream, Bytes>,
    /// The connection future ended (GOAWAY, an error, the socket closed).
    ended: bool,
}

/// What an answered exchange gives: status, headers, body, whether a cookie was set, and
/// when the head arrived.
pub(crate) type Answer = (StatusCode, HeaderMap, Bytes, bool, Instant);

impl H2 {
    /// The client preface and settings exchange on `io`.
    pub(crate) async fn handshake(io: Stream) -> Result<H2, h2::Error> {
        let (send, conn) = h2::client::Builder::new().handshake(io).await?;
        Ok(H2 {
            send,
            conn,
            ended: false,
        })
    }

    /// Polls the connection: `true` once it has ended.
    fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.ended && Pin::new(&mut self.conn).poll(cx).is_ready() {
            self.ended = true;
        }
        self.ended
    }

    /// Whether a request can go now (the connection lives and has room for a stream).
    pub(crate) fn is_ready(&mut self) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        !self.drive(&mut cx) && matches!(self.send.poll_ready(&mut cx), Poll::Ready(Ok(())))
    }

    /// Waits until a request can go; `false` when the connection ended instead.
    pub(crate) async fn ready(&mut self) -> bool {
        std::future::poll_fn(|cx| {
            if self.drive(cx) {
                return Poll::Ready(false);
            }
            self.send.poll_ready(cx).map(|r| r.is_ok())
        })
        .await
    }

    /// Sends `request` with `body` and reads the whole answer, at most `max_body` bytes
    /// of body.
    pub(crate) async fn exchange(
        &mut self,
        request: http::Request<()>,
        body: Bytes,
        max_body: usize,
    ) -> Result<Answer, ExchangeError> {
        if !self.ready().await {
            return Err(ended(true));
        }
        let end = body.is_empty();
        let (mut response, mut stream) = self
            .send
            .send_request(request, end)
            .map_err(|e| failed(&e, true))?;
        if !end {
            // Queued whole; the connection writes it as the peer's window allows.
            stream
                .send_data(body, true)
                .map_err(|e| failed(&e, false))?;
        }
        let response = std::future::poll_fn(|cx| {
            if let Poll::Ready(r) = Pin::new(&mut response).poll(cx) {
                return Poll::Ready(r.map_err(|e| failed(&e, false)));
            }
            if self.drive(cx) {
                // The connection ended first: the answer's error says why, if it has one.
                return match Pin::new(&mut response).poll(cx) {
                    Poll::Ready(r) => Poll::Ready(r.map_err(|e| failed(&e, false))),
                    Poll::Pending => Poll::Ready(Err(ended(false))),
                };
            }
            Poll::Pending
        })
        .await?;
        let head_at = Instant::now();
        let (parts, mut recv) = response.into_parts();
        let declared = parts
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if let Some(n) = declared.filter(|&n| n > max_body as u64) {
            return Err(too_large(
                format!("the declared body of {n} bytes"),
                max_body,
            ));
        }
        // A body in one frame (most are) is that frame's bytes, uncopied.
        let mut first: Option<Bytes> = None;
        let mut joined = BytesMut::new();
        let mut len = 0usize;
        loop {
            let chunk = std::future::poll_fn(|cx| {
                if let Poll::Ready(c) = recv.poll_data(cx) {
                    return Poll::Ready(c);
                }
                if self.drive(cx) {
                    return recv
                        .poll_data(cx)
                        .map(|c| c.or_else(|| Some(Err(h2::Error::from(h2::Reason::CANCEL)))));
                }
                Poll::Pending
            })
            .await;
            let Some(chunk) = chunk else { break };
            let data = chunk.map_err(|e| failed(&e, false))?;
            let _ = recv.flow_control().release_capacity(data.len());
            len = len.saturating_add(data.len());
            if len > max_body {
                return Err(too_large("the body".to_owned(), max_body));
            }
            match &first {
                None => first = Some(data),
                Some(head) => {
                    if joined.is_empty() {
                        joined.extend_from_slice(head);
                    }
                    joined.extend_from_slice(&data);
                }
            }
        }
        let body = if joined.is_empty() {
            first.unwrap_or_default()
        } else {
            joined.freeze()
        };
        let sets_cookie = parts.headers.contains_key(SET_COOKIE);
        Ok((parts.status, parts.headers, body, sets_cookie, head_at))
    }
}

/// The connection ended; `unsent`: before the request went out.
fn ended(unsent: bool) -> ExchangeError {
    ExchangeError {
        category: ErrorCategory::Reset,
        message: "the HTTP/2 connection ended".to_owned(),
        unsent,
    }
}

fn too_large(what: String, max: usize) -> ExchangeError {
    ExchangeError {
        category: ErrorCategory::BodyTooLarge,
        message: format!(
            "{what} is over the {} limit",
            aiotest_core::size::format(max as u64)
        ),
        unsent: false,
    }
}

/// An HTTP/2 error, categorized: the socket's (reset, closed), a stream refused before
/// it was processed (`unsent`), or the peer breaking the protocol.
fn failed(e: &h2::Error, before_send: bool) -> ExchangeError {
    if let Some(io) = e.get_io() {
        let mut x = crate::h1::io_error(io);
        x.unsent = before_send;
        return x;
    }
    // A stream refused or cancelled, or the connection closed without an error (a
    // server going away): a reset. Any other reason: the protocol was broken (a bad
    // frame, an HTTP/1.1 server spoken to by prior knowledge).
    let category = match e.reason() {
        Some(h2::Reason::REFUSED_STREAM | h2::Reason::CANCEL | h2::Reason::NO_ERROR) | None => {
            ErrorCategory::Reset
        }
        Some(_) => ErrorCategory::Protocol,
    };
    ExchangeError {
        category,
        message: format!("HTTP/2: {e}"),
        // RFC 9113 8.7: a refused stream was not processed; neither was one that never
        // left.
        unsent: before_send || e.reason() == Some(h2::Reason::REFUSED_STREAM),
    }
}
