//! HTTP API, SSE, console and metrics (stub: being written).

use std::net::SocketAddr;
use std::sync::Arc;

use bibridge_b2bua::config::Config;

use crate::control::ControlHandle;
use crate::metrics::Metrics;
use crate::ServerError;

/// Bind the HTTP listener and serve.
pub async fn start(
    addr: SocketAddr,
    _cfg: Arc<Config>,
    _control: ControlHandle,
    _metrics: Arc<Metrics>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), ServerError> {
    let l = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind {
            what: "HTTP",
            addr,
            source,
        })?;
    let local = l.local_addr().unwrap_or(addr);
    Ok((local, tokio::spawn(async move { drop(l) })))
}
