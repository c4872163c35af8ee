//! The control and metrics HTTP server: `/metrics` for Prometheus and a small API to
//! follow and steer a run.
//!
//! | route | does |
//! |---|---|
//! | `GET /` | the live dashboard (a page with no data in it: served without the token) |
//! | `GET /metrics` | Prometheus text exposition (`aiotest_*`) |
//! | `GET /api/state` | `{"state", "done", "users", "requests", "failures", "rps", "p95_ms", "workers"}` |
//! | `GET /api/series` | `{"points": [...]}`: the run's interval series |
//! | `GET /api/summary` | the summary as it stands (the JSON export's shape), final after the run |
//! | `GET /api/tables` | the dashboard's tables as HTML |
//! | `GET /report.html` | the HTML report, once the run has ended (`--linger`) |
//! | `POST /api/pause`, `/api/resume`, `/api/stop`, `/api/quit` | the runner commands |
//! | `POST /api/users` | body `{"users": N}`: change the target user count |
//!
//! It binds to loopback unless told otherwise, and then a bearer token is required
//! (`Authorization: Bearer TOKEN` on every request): AioTest served its control endpoints
//! on 0.0.0.0 with no authentication.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use aiotest_core::shape::validate_users;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::RunnerHandle;

/// Why the control server did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// A non-loopback address without a token.
    #[error("--control-addr {0} is not a loopback address: a token is required (--control-token)")]
    TokenRequired(SocketAddr),
    /// Binding failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A running control server; dropping it stops it.
#[derive(Debug)]
pub struct ControlServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl ControlServer {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the control server for `handle` on `addr`.
pub async fn serve_control(
    addr: SocketAddr,
    handle: RunnerHandle,
    token: Option<String>,
) -> Result<ControlServer, ControlError> {
    if !addr.ip().is_loopback() && token.as_deref().is_none_or(str::is_empty) {
        return Err(ControlError::TokenRequired(addr));
    }
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ControlError::Bind { addr, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| ControlError::Bind { addr, source })?;
    let token: Option<Arc<str>> = token.map(Into::into);
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let handle = handle.clone();
            let token = token.clone();
            // Each connection's task ends with its connection; the accept task owns none
            // of them past that, and aborting it stops new ones.
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let handle = handle.clone();
                    let token = token.clone();
                    async move { Ok::<_, Infallible>(route(req, &handle, token.as_deref()).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(ControlServer { addr, task })
}

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Full<Bytes>> {
    reply(status, "application/json", value.to_string())
}

fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    json(status, &serde_json::json!({ "error": message }))
}

/// Whether the request carries the token (compared without an early exit).
fn authorized(req: &Request<Incoming>, token: Option<&str>) -> bool {
    let Some(token) = token else { return true };
    let given = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[derive(Deserialize)]
struct UsersBody {
    // Wider than any valid count, so a huge one gets the limit's message, not serde's.
    users: u64,
}

async fn route(
    req: Request<Incoming>,
    handle: &RunnerHandle,
    token: Option<&str>,
) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    // The page itself holds no figures; everything it shows comes through the API.
    if method == Method::GET && path == "/" {
        return reply(
            StatusCode::OK,
            "text/html; charset=utf-8",
            crate::web::dashboard_page(),
        );
    }
    if !authorized(&req, token) {
        return error(StatusCode::UNAUTHORIZED, "a bearer token is required");
    }
    match (method, path.as_str()) {
        (Method::GET, "/api/series") => json(
            StatusCode::OK,
            &serde_json::json!({ "points": handle.series() }),
        ),
        (Method::GET, "/api/tables") => json(StatusCode::OK, &crate::web::tables(handle)),
        (Method::GET, "/api/summary") => {
            let summary = handle
                .summary()
                .unwrap_or_else(|| crate::web::live_summary(handle, handle.meta().as_ref()));
            reply(StatusCode::OK, "application/json", summary.to_json())
        }
        (Method::GET, "/report.html") => match crate::web::final_report(handle) {
            Some(page) => reply(StatusCode::OK, "text/html; charset=utf-8", page),
            None => error(
                StatusCode::NOT_FOUND,
                "the report is ready once the run has ended (keep the server up with --linger)",
            ),
        },
        (Method::GET, "/metrics") => match handle.exporter() {
            Some(e) => {
                let app = aiotest_metrics::create_prometheus_app(e);
                let r = app.handle("GET", "/metrics");
                reply(StatusCode::OK, r.content_type, r.body)
            }
            None => error(
                StatusCode::NOT_FOUND,
                "this runner has no Prometheus exporter",
            ),
        },
        (Method::GET, "/api/state") => {
            let live = handle.live();
            let users: serde_json::Map<String, serde_json::Value> = handle
                .users()
                .into_iter()
                .map(|(name, n)| (name, n.into()))
                .collect();
            json(
                StatusCode::OK,
                &serde_json::json!({
                    "state": handle.state().as_str(),
                    // The run ended and its summary is final (with --linger).
                    "done": handle.summary().is_some(),
                    "users": users,
                    "requests": live.total_requests,
                    "failures": live.total_failures,
                    "rps": live.totals.rps,
                    "p95_ms": live.totals.p95_us as f64 / 1_000.0,
                    "workers": handle.workers(),
                }),
            )
        }
        (Method::POST, "/api/pause") => {
            handle.pause().await;
            json(StatusCode::ACCEPTED, &serde_json::json!({ "ok": true }))
        }
        (Method::POST, "/api/resume") => {
            handle.resume().await;
            json(StatusCode::ACCEPTED, &serde_json::json!({ "ok": true }))
        }
        (Method::POST, "/api/stop") => {
            handle.stop().await;
            json(StatusCode::ACCEPTED, &serde_json::json!({ "ok": true }))
        }
        (Method::POST, "/api/quit") => {
            handle.quit().await;
            json(StatusCode::ACCEPTED, &serde_json::json!({ "ok": true }))
        }
        (Method::POST, "/api/users") => {
            // Bodies are tiny; anything over 4 KiB is refused, not buffered.
            let body = match Limited::new(req.into_body(), 4096).collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => return error(StatusCode::PAYLOAD_TOO_LARGE, "body over 4 KiB"),
            };
            match serde_json::from_slice::<UsersBody>(&body)
                .map_err(|e| format!("expected {{\"users\": N}}: {e}"))
                .and_then(|b| validate_users(b.users).map_err(|e| e.to_string()))
            {
                Ok(users) => {
                    handle.set_users(users).await;
                    json(
                        StatusCode::ACCEPTED,
                        &serde_json::json!({ "ok": true, "users": users }),
                    )
                }
                Err(e) => error(StatusCode::BAD_REQUEST, &e),
            }
        }
        (
            _,
            "/" | "/metrics" | "/api/state" | "/api/series" | "/api/summary" | "/api/tables"
            | "/report.html" | "/api/pause" | "/api/resume" | "/api/stop" | "/api/quit"
            | "/api/users",
        ) => error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
        _ => error(StatusCode::NOT_FOUND, "not found"),
    }
}
