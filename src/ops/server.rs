//! The operations HTTP server: `GET /metrics` (OpenMetrics or Prometheus text), `GET /healthz`
//! (200 while the process runs), `GET /readyz` (200 once ready, else 503 and the reason), and the
//! live view of the queues: `GET /status` (HTML) and `GET /status.json`.

use super::Readiness;
use super::metrics::{Format, Metrics};
use super::status::StatusSource;
use crate::http_limits::ConnectionCap;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Open connections at most; past it a new one is closed at once.
pub const MAX_CONNECTIONS: usize = 64;

/// Accept errors that concern one connection (or a passing shortage), not the listener.
fn is_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted | WouldBlock
    ) || e
        .raw_os_error()
        .is_some_and(|code| code == 23 || code == 24) // ENFILE, EMFILE
}

/// The default of `run --metrics-addr`: loopback only; the Deployment sets `0.0.0.0:9090`.
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9090";

const TEXT: &str = "text/plain; charset=utf-8";

#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error("cannot listen for metrics and health checks on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the metrics and health server on {addr} failed: {source}")]
    Serve {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// What the endpoints read. Cheap to clone.
#[derive(Clone)]
pub struct OpsState {
    pub metrics: Arc<Metrics>,
    pub readiness: Readiness,
    /// What `/status` and `/status.json` show (`None`: they answer 404).
    pub status: Option<Arc<dyn StatusSource>>,
}

impl std::fmt::Debug for OpsState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpsState")
            .field("readiness", &self.readiness)
            .finish_non_exhaustive()
    }
}

/// The routes, for serving or for testing without a socket.
pub fn router(state: OpsState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/status", get(status_page))
        .route("/status.json", get(status_json))
        .with_state(state)
}

async fn metrics(State(state): State<OpsState>, headers: HeaderMap) -> Response {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok());
    let format = Format::negotiate(accept);
    match state.metrics.encode(format) {
        Ok(body) => ([(header::CONTENT_TYPE, format.content_type())], body).into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, TEXT)],
            "encoding the metrics failed\n",
        )
            .into_response(),
    }
}

async fn healthz() -> Response {
    ([(header::CONTENT_TYPE, TEXT)], "ok\n").into_response()
}

async fn readyz(State(state): State<OpsState>) -> Response {
    match state.readiness.check() {
        Ok(()) => ([(header::CONTENT_TYPE, TEXT)], "ready\n").into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, TEXT)],
            format!("not ready: {reason}\n"),
        )
            .into_response(),
    }
}

fn no_status() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, TEXT)],
        "no status: the agent is not running in this process\n",
    )
        .into_response()
}

/// The status report rendered by `render`, never cached.
fn status_reply(
    state: &OpsState,
    content_type: &'static str,
    render: fn(&super::status::StatusReport) -> String,
) -> Response {
    let Some(source) = &state.status else {
        return no_status();
    };
    let body = render(&source.report());
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

async fn status_page(State(state): State<OpsState>) -> Response {
    status_reply(
        &state,
        "text/html; charset=utf-8",
        super::status::StatusReport::to_html,
    )
}

async fn status_json(State(state): State<OpsState>) -> Response {
    status_reply(
        &state,
        "application/json",
        super::status::StatusReport::to_json,
    )
}

/// A bound, not yet serving, operations server: bind first to learn the port (`:0`) or to fail
/// early on an address in use.
#[derive(Debug)]
pub struct OpsServer {
    listener: TcpListener,
    addr: SocketAddr,
}

impl OpsServer {
    pub async fn bind(addr: SocketAddr) -> Result<Self, OpsError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| OpsError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| OpsError::Bind { addr, source })?;
        Ok(Self { listener, addr })
    }

    /// The address actually listened on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown` completes, then stops accepting and lets the requests in flight
    /// finish. Connections keep the bounds of `http_limits`: the header-read timeout and at
    /// most [`MAX_CONNECTIONS`] open (past it a new one is closed at once).
    pub async fn run(
        self,
        state: OpsState,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), OpsError> {
        let addr = self.addr;
        tracing::info!(%addr, "serving /metrics, /healthz, /readyz, /status and /status.json");
        let router = router(state);
        let cap = ConnectionCap::new(MAX_CONNECTIONS);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut connections = tokio::task::JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                accepted = self.listener.accept() => accepted,
                () = &mut shutdown => break,
            };
            while connections.try_join_next().is_some() {}
            let stream = match accepted {
                Ok((stream, _)) => stream,
                // Out of file descriptors and the like: the listener itself is fine.
                Err(e) if is_transient(&e) => {
                    tracing::debug!(%addr, error = %e, "accept failed");
                    continue;
                }
                Err(source) => return Err(OpsError::Serve { addr, source }),
            };
            let Some(slot) = cap.admit() else {
                drop(stream);
                continue;
            };
            let service = hyper_util::service::TowerToHyperService::new(router.clone());
            let mut stopped = stopped.clone();
            connections.spawn(async move {
                let _slot = slot;
                let connection = crate::http_limits::http1()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                tokio::pin!(connection);
                tokio::select! {
                    _ = connection.as_mut() => return,
                    _ = stopped.wait_for(|stop| *stop) => {}
                }
                // Shutdown: finish the request in flight, take no new one.
                connection.as_mut().graceful_shutdown();
                let _ = connection.await;
            });
        }
        let _ = stop.send(true);
        while connections.join_next().await.is_some() {}
        tracing::debug!(%addr, "metrics and health server stopped");
        Ok(())
    }
}

/// Binds `addr` and serves the endpoints until `shutdown` completes (for example
/// `token.cancelled_owned()` of a `CancellationToken`, or a `oneshot` receiver mapped to `()`).
pub async fn serve(
    addr: SocketAddr,
    state: OpsState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), OpsError> {
    OpsServer::bind(addr).await?.run(state, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_address_parses() {
        let addr: SocketAddr = DEFAULT_METRICS_ADDR.parse().unwrap();
        assert!(addr.ip().is_loopback());
        assert_eq!(addr.port(), 9090);
    }

    #[tokio::test]
    async fn a_bind_failure_names_the_address() {
        let taken = OpsServer::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let addr = taken.local_addr();
        let error = OpsServer::bind(addr).await.unwrap_err();
        assert!(matches!(error, OpsError::Bind { addr: a, .. } if a == addr));
        let message = error.to_string();
        assert!(message.contains(&addr.to_string()), "{message}");
        assert!(message.starts_with("cannot listen"), "{message}");
    }
}
