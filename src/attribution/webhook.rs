//! The attribution webhooks over HTTPS: `POST /audit` (audit.k8s.io/v1 EventList batches from
//! the kube-apiserver, client certificate required) and `POST /admission` (AdmissionReview).

use super::facts::FactIndex;
pub use super::requests::{
    AdmissionIgnored, AdmissionRequest, AdmissionReview, BadRequest, GroupVersionResource,
    Ingested, admission_fact, admission_response, ingest_events, parse_admission_review,
    parse_event_list,
};
use super::tls::{ReloadingCert, TlsError, server_config};
use crate::audit::AuditEvent;
use crate::http_limits::{BodyBudget, ConnectionCap};
use axum::body::{Body, Bytes};
use axum::http::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use jiff::Timestamp;
use serde_json::{Value, json};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, mpsc, watch};
use tokio::task::JoinHandle;

/// Default bound on a request body.
pub const DEFAULT_MAX_BODY_BYTES: usize = 10 * 1024 * 1024;
/// Default number of audit batches waiting to be processed before batches are shed.
pub const DEFAULT_QUEUE_CAPACITY: usize = 64;
/// How often the serving certificate files are checked for changes.
pub const DEFAULT_CERT_RELOAD_INTERVAL: Duration = Duration::from_secs(10);
/// How long a client has to complete the TLS handshake (as long as it has for the headers).
const HANDSHAKE_TIMEOUT: Duration = crate::http_limits::HEADER_READ_TIMEOUT;
/// Default number of open connections; past it new ones are closed at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;
/// Default budget of request-body bytes held at once (read, parsed or queued): about three
/// bodies of the largest size. Past it requests get 503 and a `Retry-After`, so 48 parallel
/// 10 MB bodies cost about this much, not 480 MB.
pub const DEFAULT_BODY_BUDGET_BYTES: usize = 32 * 1024 * 1024;
/// Default time to receive a whole body once the headers are in; then 408.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(20);

/// Where and how the webhook server listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookConfig {
    pub listen: SocketAddr,
    /// Serving certificate chain, PEM (leaf first).
    pub cert_file: PathBuf,
    /// Serving private key, PEM.
    pub key_file: PathBuf,
    /// CA that signs the kube-apiserver's client certificate. `/audit` and `/admission` accept
    /// only requests that present a certificate it signed: whoever can post a fact chooses a
    /// commit's author. Without it both refuse every request (403), unless
    /// `admission_without_client_cert` opens `/admission`.
    pub client_ca_file: Option<PathBuf>,
    /// Accept AdmissionReviews from any TLS client (for clusters whose API server cannot be
    /// given a client certificate for webhooks). Anyone who can reach the port can then name
    /// the author of a change: restrict who can (NetworkPolicy). Audit facts still outrank.
    pub admission_without_client_cert: bool,
    pub max_body_bytes: usize,
    /// Request-body bytes held at once, from reading until processed (queued audit batches
    /// included); a request that does not fit gets 503 with `Retry-After`.
    pub body_budget_bytes: usize,
    /// Time to receive a whole body after the headers; then 408.
    pub body_read_timeout: Duration,
    /// Open connections at most; past it new ones are closed at once.
    pub max_connections: usize,
    /// Audit batches queued for processing; a batch past this is shed (counted).
    pub queue_capacity: usize,
    pub cert_reload_interval: Duration,
}

impl WebhookConfig {
    /// A configuration with the default limits.
    pub fn new(listen: SocketAddr, cert_file: PathBuf, key_file: PathBuf) -> Self {
        Self {
            listen,
            cert_file,
            key_file,
            client_ca_file: None,
            admission_without_client_cert: false,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            body_budget_bytes: DEFAULT_BODY_BUDGET_BYTES,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            cert_reload_interval: DEFAULT_CERT_RELOAD_INTERVAL,
        }
    }
}

/// The webhook server could not start.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook TLS: {0}")]
    Tls(#[from] TlsError),
    #[error("cannot listen for webhooks on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Counters of the webhook server.
#[derive(Debug, Default)]
pub struct WebhookStats {
    audit_batches: AtomicU64,
    audit_events_accepted: AtomicU64,
    audit_events_used: AtomicU64,
    audit_events_skipped: AtomicU64,
    audit_batches_shed: AtomicU64,
    audit_events_shed: AtomicU64,
    admission_requests: AtomicU64,
    admission_facts: AtomicU64,
    admission_ignored: AtomicU64,
    rejected: AtomicU64,
    busy: AtomicU64,
    connections_refused: AtomicU64,
}

/// A snapshot of [`WebhookStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WebhookCounters {
    /// EventList batches queued.
    pub audit_batches: u64,
    /// Events in the queued batches.
    pub audit_events_accepted: u64,
    /// Events that became facts (persisted changes).
    pub audit_events_used: u64,
    /// Events processed that were not changes (reads, failures, dry runs, ...).
    pub audit_events_skipped: u64,
    pub audit_batches_shed: u64,
    /// Events dropped because the queue was full.
    pub audit_events_shed: u64,
    /// AdmissionReviews answered (always allowed).
    pub admission_requests: u64,
    pub admission_facts: u64,
    /// Admission requests that gave no fact (dry runs, subresources, CONNECT, no object).
    pub admission_ignored: u64,
    /// Requests refused with a 4xx (bad input, no client certificate, too large, too slow).
    pub rejected: u64,
    /// Requests refused with 503 because the body budget was spent (the sender retries).
    pub busy: u64,
    /// Connections closed at once because `max_connections` were open.
    pub connections_refused: u64,
}

impl WebhookStats {
    pub fn snapshot(&self) -> WebhookCounters {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        WebhookCounters {
            audit_batches: get(&self.audit_batches),
            audit_events_accepted: get(&self.audit_events_accepted),
            audit_events_used: get(&self.audit_events_used),
            audit_events_skipped: get(&self.audit_events_skipped),
            audit_batches_shed: get(&self.audit_batches_shed),
            audit_events_shed: get(&self.audit_events_shed),
            admission_requests: get(&self.admission_requests),
            admission_facts: get(&self.admission_facts),
            admission_ignored: get(&self.admission_ignored),
            rejected: get(&self.rejected),
            busy: get(&self.busy),
            connections_refused: get(&self.connections_refused),
        }
    }
}

fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

// ---------------------------------------------------------------------------------------------
// The server

/// An audit batch and the body budget it holds until it is processed.
type Batch = (Vec<AuditEvent>, OwnedSemaphorePermit);

struct Shared {
    index: Arc<FactIndex>,
    stats: Arc<WebhookStats>,
    queue: mpsc::Sender<Batch>,
    max_body_bytes: usize,
    budget: BodyBudget,
    body_read_timeout: Duration,
    connections: ConnectionCap,
    /// A client CA is configured: certificates it signed are accepted.
    audit_enabled: bool,
    /// `/admission` requires such a certificate too (the default).
    admission_needs_client_cert: bool,
}

/// A running webhook server. Dropping it does not stop it; call [`WebhookServer::shutdown`].
pub struct WebhookServer {
    addr: SocketAddr,
    stats: Arc<WebhookStats>,
    cert: Arc<ReloadingCert>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for WebhookServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl WebhookServer {
    /// Loads the certificates, binds and starts serving (plus the audit queue's worker and the
    /// certificate reloader). Facts go into `index`.
    pub async fn start(config: WebhookConfig, index: Arc<FactIndex>) -> Result<Self, WebhookError> {
        let cert = Arc::new(ReloadingCert::load(&config.cert_file, &config.key_file)?);
        let tls = server_config(cert.clone(), config.client_ca_file.as_deref())?;
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| WebhookError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| WebhookError::Bind {
            addr: config.listen,
            source,
        })?;
        let stats = Arc::new(WebhookStats::default());
        let (queue, batches) = mpsc::channel(config.queue_capacity.max(1));
        let (shutdown, shutdown_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            index: index.clone(),
            stats: stats.clone(),
            queue,
            max_body_bytes: config.max_body_bytes,
            budget: BodyBudget::new(config.body_budget_bytes.max(config.max_body_bytes)),
            body_read_timeout: config.body_read_timeout,
            connections: ConnectionCap::new(config.max_connections),
            audit_enabled: config.client_ca_file.is_some(),
            admission_needs_client_cert: !config.admission_without_client_cert,
        });
        let tasks = vec![
            tokio::spawn(process_batches(batches, index, stats.clone())),
            tokio::spawn(accept_loop(
                listener,
                tokio_rustls::TlsAcceptor::from(tls),
                shared,
                shutdown_rx.clone(),
            )),
            tokio::spawn(reload_loop(
                cert.clone(),
                config.cert_reload_interval,
                shutdown_rx,
            )),
        ];
        Ok(Self {
            addr,
            stats,
            cert,
            shutdown,
            tasks,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stats(&self) -> WebhookCounters {
        self.stats.snapshot()
    }

    /// The live counters, shareable (for metrics read at scrape time).
    pub fn counters(&self) -> Arc<WebhookStats> {
        self.stats.clone()
    }

    /// Re-reads the serving certificate now if its files changed (the server also does it
    /// every `cert_reload_interval`).
    pub fn reload_certificate(&self) -> Result<bool, TlsError> {
        self.cert.reload_if_changed()
    }

    /// Stops accepting, drops open connections and the queued batches.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            task.abort();
            let _ = task.await;
        }
    }
}

async fn process_batches(
    mut batches: mpsc::Receiver<Batch>,
    index: Arc<FactIndex>,
    stats: Arc<WebhookStats>,
) {
    while let Some((events, budget)) = batches.recv().await {
        let done = ingest_events(&index, &events);
        bump(&stats.audit_events_used, done.used);
        bump(&stats.audit_events_skipped, done.skipped);
        // The batch's body bytes are free again once its events are facts.
        drop((events, budget));
    }
}

async fn reload_loop(
    cert: Arc<ReloadingCert>,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        match cert.reload_if_changed() {
            Ok(true) => tracing::info!("webhook serving certificate reloaded"),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "webhook serving certificate not reloaded"),
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(error = %e, "webhook accept failed");
                continue;
            }
        };
        // Past the cap the connection is closed before TLS: a flood costs no memory.
        let Some(slot) = shared.connections.admit() else {
            bump(&shared.stats.connections_refused, 1);
            tracing::debug!(%peer, "webhook connection refused: too many open");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let shared = shared.clone();
        conns.spawn(async move {
            let _slot = slot;
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "webhook TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            // Verified against the client CA during the handshake when presented.
            let client_cert = tls
                .get_ref()
                .1
                .peer_certificates()
                .is_some_and(|c| !c.is_empty());
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(&shared, req, client_cert).await) }
            });
            // Slow or idle clients are closed after the header-read timeout.
            let _ = crate::http_limits::http1()
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
        while conns.try_join_next().is_some() {}
    }
    conns.abort_all();
}

fn status_body(status: StatusCode, message: &str) -> Response<Body> {
    let body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": status.canonical_reason().unwrap_or_default().replace(' ', ""),
        "code": status.as_u16(),
    });
    json_response(status, &body)
}

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

async fn handle(
    shared: &Shared,
    req: Request<hyper::body::Incoming>,
    client_cert: bool,
) -> Response<Body> {
    let result = match (req.method(), req.uri().path()) {
        (&Method::POST, "/audit") => audit(shared, req, client_cert).await,
        (&Method::POST, "/admission") => admission(shared, req, client_cert).await,
        (_, "/audit" | "/admission") => Err(BadRequest::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{} is not allowed here: use POST", req.method()),
        )),
        (_, path) => Err(BadRequest::new(
            StatusCode::NOT_FOUND,
            format!("no endpoint {path:?}: the webhooks are POST /audit and POST /admission"),
        )),
    };
    result.unwrap_or_else(|bad| {
        if bad.status == StatusCode::SERVICE_UNAVAILABLE {
            bump(&shared.stats.busy, 1);
        } else {
            bump(&shared.stats.rejected, 1);
        }
        tracing::debug!(status = %bad.status, message = %bad.message, "webhook request refused");
        let mut response = status_body(bad.status, &bad.message);
        if bad.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        response
    })
}

/// Checks the content type, reserves the body's bytes in the budget (the declared length, or
/// the largest body when none is declared) and reads it within the size bound and the read
/// timeout. The reservation lasts as long as the returned permit.
async fn read_json_body(
    shared: &Shared,
    req: Request<hyper::body::Incoming>,
) -> Result<(Bytes, OwnedSemaphorePermit), BadRequest> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if essence != "application/json" {
        let shown = if content_type.is_empty() {
            "none".to_string()
        } else {
            format!("{content_type:?}")
        };
        return Err(BadRequest::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("content type {shown}: expected application/json"),
        ));
    }
    let too_large = || {
        BadRequest::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {} bytes", shared.max_body_bytes),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > shared.max_body_bytes as u64) {
        return Err(too_large());
    }
    let wanted = declared.map_or(shared.max_body_bytes, |n| n as usize);
    let permit = shared.budget.reserve(wanted).map_err(|over| {
        tracing::warn!(
            wanted = over.wanted,
            budget = over.total,
            held = shared.budget.held(),
            "webhook body budget spent; request refused with 503 (the sender retries)"
        );
        BadRequest::new(StatusCode::SERVICE_UNAVAILABLE, over.to_string())
    })?;
    let limited = http_body_util::Limited::new(req.into_body(), shared.max_body_bytes);
    let collected = tokio::time::timeout(
        shared.body_read_timeout,
        http_body_util::BodyExt::collect(limited),
    )
    .await
    .map_err(|_| {
        BadRequest::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the body did not arrive within {:?}",
                shared.body_read_timeout
            ),
        )
    })?;
    match collected {
        Ok(collected) => Ok((collected.to_bytes(), permit)),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(e) => Err(BadRequest::new(
            StatusCode::BAD_REQUEST,
            format!("cannot read the body: {e}"),
        )),
    }
}

async fn audit(
    shared: &Shared,
    req: Request<hyper::body::Incoming>,
    client_cert: bool,
) -> Result<Response<Body>, BadRequest> {
    if !shared.audit_enabled {
        return Err(BadRequest::new(
            StatusCode::FORBIDDEN,
            "the audit endpoint is disabled: no client CA is configured",
        ));
    }
    if !client_cert {
        return Err(BadRequest::new(
            StatusCode::UNAUTHORIZED,
            "the audit endpoint requires a client certificate signed by the configured CA",
        ));
    }
    let (body, budget) = read_json_body(shared, req).await?;
    let events = parse_event_list(&body)?;
    drop(body);
    let n = events.len() as u64;
    match shared.queue.try_send((events, budget)) {
        Ok(()) => {
            bump(&shared.stats.audit_batches, 1);
            bump(&shared.stats.audit_events_accepted, n);
            Ok(json_response(
                StatusCode::OK,
                &json!({"accepted": n, "shed": 0}),
            ))
        }
        Err(_) => {
            // Never make the API server wait: the batch is dropped and counted.
            bump(&shared.stats.audit_batches_shed, 1);
            bump(&shared.stats.audit_events_shed, n);
            tracing::warn!(events = n, "audit queue full; batch shed");
            Ok(json_response(
                StatusCode::OK,
                &json!({"accepted": 0, "shed": n}),
            ))
        }
    }
}

async fn admission(
    shared: &Shared,
    req: Request<hyper::body::Incoming>,
    client_cert: bool,
) -> Result<Response<Body>, BadRequest> {
    if shared.admission_needs_client_cert && !shared.audit_enabled {
        return Err(BadRequest::new(
            StatusCode::FORBIDDEN,
            "the admission endpoint is disabled: no client CA is configured (--webhook-client-ca; \
             or --admission-without-client-cert to accept any caller)",
        ));
    }
    if shared.admission_needs_client_cert && !client_cert {
        return Err(BadRequest::new(
            StatusCode::UNAUTHORIZED,
            "the admission endpoint requires a client certificate signed by the configured CA",
        ));
    }
    let received = Timestamp::now();
    let (body, _budget) = read_json_body(shared, req).await?;
    let (review, uid) = parse_admission_review(&body)?;
    bump(&shared.stats.admission_requests, 1);
    let fact = review.request.as_ref().map(|r| admission_fact(r, received));
    match fact {
        Some(Ok((fact, keys))) => {
            shared.index.insert(fact, keys);
            bump(&shared.stats.admission_facts, 1);
        }
        _ => bump(&shared.stats.admission_ignored, 1),
    }
    Ok(json_response(StatusCode::OK, &admission_response(&uid)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribution::facts::FactKey;
    use crate::manifest::{content_hash, sanitize};

    #[test]
    fn event_list_errors_name_the_problem() {
        let bad = parse_event_list(b"{not json").unwrap_err();
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        assert!(bad.message.contains("line 1"), "{}", bad.message);
        let bad = parse_event_list(br#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1"}"#)
            .unwrap_err();
        assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(bad.message.contains("no items"));
        let bad = parse_event_list(
            br#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{"auditID":"a","verb":"get"}]}"#,
        )
        .unwrap_err();
        assert_eq!(
            bad.message,
            "items[0] has no stage (an audit.k8s.io Event always has it)"
        );
        let bad = parse_event_list(br#"{"kind":"Pod","apiVersion":"v1","items":[]}"#).unwrap_err();
        assert!(bad.message.contains("\"Pod\""));
        let ok =
            parse_event_list(br#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[]}"#)
                .unwrap();
        assert!(ok.is_empty());
    }

    #[test]
    fn admission_create_is_keyed_by_the_stored_content_hash() {
        let review = serde_json::json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "r1", "operation": "CREATE",
                "userInfo": {"username": "alice", "groups": null},
                "resource": {"group": "", "version": "v1", "resource": "configmaps"},
                "namespace": "shop",
                "object": {"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"generateName": "web-", "namespace": "shop", "uid": "u1",
                        "creationTimestamp": "2026-01-01T00:00:00Z",
                        "managedFields": [{"manager": "kubectl"}]},
                    "data": {"a": "1"}},
                "dryRun": false}
        });
        let (review, uid) = parse_admission_review(review.to_string().as_bytes()).unwrap();
        assert_eq!(uid, "r1");
        let now = Timestamp::now();
        let (fact, keys) = admission_fact(review.request.as_ref().unwrap(), now).unwrap();
        assert_eq!(fact.user.username, "alice");
        assert_eq!(fact.time, now);
        // What the watch will see: the stored object with its name, rv, uid, ...
        let stored = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"generateName": "web-", "namespace": "shop", "uid": "u1",
                "resourceVersion": "5", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "data": {"a": "1"}});
        let mut stored = stored;
        sanitize(&mut stored);
        assert_eq!(keys, vec![FactKey::Hash(content_hash(&stored))]);
    }

    #[test]
    fn admission_dry_runs_and_subresources_give_no_fact() {
        let mut request = AdmissionRequest {
            uid: Some("r".into()),
            operation: Some("CREATE".into()),
            object: Some(serde_json::json!({"kind": "ConfigMap"})),
            dry_run: Some(true),
            ..AdmissionRequest::default()
        };
        let now = Timestamp::now();
        assert_eq!(
            admission_fact(&request, now).unwrap_err(),
            AdmissionIgnored::DryRun
        );
        request.dry_run = Some(false);
        request.sub_resource = Some("status".into());
        assert_eq!(
            admission_fact(&request, now).unwrap_err(),
            AdmissionIgnored::Subresource
        );
        request.sub_resource = None;
        request.operation = Some("CONNECT".into());
        assert_eq!(
            admission_fact(&request, now).unwrap_err(),
            AdmissionIgnored::Operation
        );
    }
}
