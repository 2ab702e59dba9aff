//! The HTTP accept loop and the read deadlines (docs/reliability/transport-http.md).
//!
//! Our own loop rather than `axum::serve`, which has no connection limits and no way to set
//! hyper's header read timeout: each connection is counted (total and per address, refused ones
//! accepted and closed at once), served by hyper's HTTP/1 connection with a timer so that a
//! request's header must arrive within `http.header_timeout_s` (this also ends idle keep-alive
//! connections), and accept errors back off instead of spinning. The body deadline is a
//! middleware ([`body_deadline`]): hyper has none, and tower-http's `RequestBodyTimeoutLayer`
//! would add a dependency for what is a dozen lines here, and answers a late body with an
//! error body rather than our problem document.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures_util::StreamExt;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tower_service::Service;
use tracing::{debug, warn};

use super::{Problem, St};
use crate::net_guard::{self, AcceptBackoff, ConnLimiter, LogEvery};

/// Accept and serve HTTP connections until the task is aborted (which ends every connection
/// too: they live in this task's [`JoinSet`]).
pub(super) async fn serve(
    listener: TcpListener,
    app: Router,
    limiter: ConnLimiter,
    header_timeout: Duration,
) {
    let mut conns = JoinSet::new();
    let mut backoff = AcceptBackoff::default();
    let mut refused_log = LogEvery::new(net_guard::LOG_EVERY);
    let stats = limiter.stats().clone();
    loop {
        while conns.try_join_next().is_some() {}
        let (stream, peer) = match listener.accept().await {
            Ok(c) => {
                backoff.succeeded();
                c
            }
            Err(e) => {
                stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                let (pause, log) = backoff.failed(Instant::now());
                if let Some(n) = log {
                    warn!(error = %e, failures = n, pause_ms = pause.as_millis() as u64,
                        "HTTP accept failing; backing off (one line per 10 s)");
                }
                tokio::time::sleep(pause).await;
                continue;
            }
        };
        let slot = match limiter.accept(peer.ip()) {
            Ok(s) => s,
            Err(why) => {
                drop(stream);
                if let Some(n) = refused_log.event(Instant::now()) {
                    warn!(%peer, reason = ?why, refused = n,
                        "HTTP connections refused (limit reached; one line per 10 s)");
                }
                continue;
            }
        };
        let app = app.clone();
        let stats = stats.clone();
        conns.spawn(async move {
            let _slot = slot;
            let svc = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                let mut app = app.clone();
                async move { app.call(req).await }
            });
            let mut b = hyper::server::conn::http1::Builder::new();
            b.timer(TokioTimer::new())
                .header_read_timeout(header_timeout);
            if let Err(e) = b.serve_connection(TokioIo::new(stream), svc).await {
                if e.is_timeout() {
                    stats.idle_closed.fetch_add(1, Ordering::Relaxed);
                    debug!(%peer, "HTTP header not received in time, connection closed");
                } else {
                    debug!(%peer, error = %e, "HTTP connection ended");
                }
            }
        });
    }
}

/// A request's body must arrive within `http.body_timeout_s` of its header; a late one gets
/// 408 and the connection is closed (hyper does not reuse a connection whose body was not read).
pub(super) async fn body_deadline(State(st): State<St>, req: Request, next: Next) -> Response {
    let expired = Arc::new(AtomicBool::new(false));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(st.cfg.http.body_timeout_s);
    let req = req.map(|body| {
        let flag = expired.clone();
        let frames = body.into_data_stream();
        Body::from_stream(futures_util::stream::unfold(Some(frames), move |s| {
            let flag = flag.clone();
            async move {
                let mut s = s?;
                match tokio::time::timeout_at(deadline, s.next()).await {
                    Ok(Some(frame)) => Some((frame, Some(s))),
                    Ok(None) => None,
                    Err(_) => {
                        flag.store(true, Ordering::Relaxed);
                        Some((Err(axum::Error::new("request body timeout")), None))
                    }
                }
            }
        }))
    });
    let res = next.run(req).await;
    if !expired.load(Ordering::Relaxed) {
        return res;
    }
    st.metrics
        .http_conns
        .slow_closed
        .fetch_add(1, Ordering::Relaxed);
    let mut res = Problem::new(
        StatusCode::REQUEST_TIMEOUT,
        "body_timeout",
        "Request body too slow",
        format!(
            "The request body did not arrive within {} s",
            st.cfg.http.body_timeout_s
        ),
    )
    .into_response();
    res.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    res
}
