//! The HTTP(S) server: authenticates (and impersonates), applies fault knobs, routes to discovery,
//! OpenAPI or the store (writes through admission webhooks), answers, and feeds the audit sink.
//! Long because it is the one table of the REST surface (every path and verb); the logic behind
//! each route lives in its own module.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch as tokio_watch;
use tokio::task::JoinSet;

use crate::admission::{self, Attributes};
use crate::audit::{self, Record};
use crate::auth::{self, User, Users};
use crate::catalogue::ResourceInfo;
use crate::discovery;
use crate::errors::{ApiError, success_status};
use crate::faults::FaultState;
use crate::ids;
use crate::openapi;
use crate::routes::{self, Query, Route, Target};
use crate::selectors::{FieldSelector, LabelSelector};
use crate::store::{DeleteOpts, Deleted, ListQuery, PatchKind, Pinned, Store, WriteOpts};
use crate::table;
use crate::watch::{self as watch_stream, Start, WatchSpec};

/// The largest request body accepted (the real server's default).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

type ResBody = BoxBody<Bytes, Infallible>;

/// One request the server answered, for tests that check who did what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub user: String,
    pub groups: Vec<String>,
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    pub code: u16,
    /// The authenticated user when `user` is impersonated.
    pub impersonator: Option<String>,
}

/// State shared by every connection.
pub struct Shared {
    store: Mutex<Store>,
    pub(crate) rv_tx: tokio_watch::Sender<u64>,
    pub(crate) users: Users,
    pub(crate) faults: FaultState,
    pub(crate) server_address: String,
    pub(crate) shutdown_rx: tokio_watch::Receiver<bool>,
    pub(crate) bookmark_interval: Duration,
    audit: Mutex<Vec<AuditEntry>>,
    pub(crate) audit_sink: Option<audit::Pipeline>,
    /// Client certificate and key (PEM) presented to admission webhooks.
    pub(crate) admission_client: Option<Arc<(String, String)>>,
}

impl Shared {
    pub(crate) fn new(
        store: Store,
        users: Users,
        server_address: String,
        shutdown_rx: tokio_watch::Receiver<bool>,
        bookmark_interval: Duration,
    ) -> Self {
        let rv = store.resource_version();
        Shared {
            store: Mutex::new(store),
            rv_tx: tokio_watch::channel(rv).0,
            users,
            faults: FaultState::default(),
            server_address,
            shutdown_rx,
            bookmark_interval,
            audit: Mutex::new(Vec::new()),
            audit_sink: None,
            admission_client: None,
        }
    }

    /// Present this client certificate and key to admission webhooks.
    pub(crate) fn with_admission_client(mut self, client: Option<(String, String)>) -> Self {
        self.admission_client = client.map(Arc::new);
        self
    }

    /// Send audit events of mutating requests to `sink`.
    pub(crate) fn with_audit_sink(mut self, sink: Option<audit::Pipeline>) -> Self {
        self.audit_sink = sink;
        self
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wake watchers after a write.
    pub(crate) fn notify(&self, store: &Store) {
        let rv = store.resource_version();
        self.rv_tx.send_if_modified(|old| {
            if *old != rv {
                *old = rv;
                true
            } else {
                false
            }
        });
    }

    pub(crate) fn audit_log(&self) -> Vec<AuditEntry> {
        self.audit.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Accept connections until `shutdown` turns true.
pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut shutdown: tokio_watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => break,
        };
        let Ok((stream, peer)) = accepted else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let tls = tls.clone();
        conns.spawn(async move {
            let svc = service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(shared, req, peer).await) }
            });
            let builder = hyper::server::conn::http1::Builder::new();
            match tls {
                Some(acceptor) => {
                    if let Ok(s) = acceptor.accept(stream).await {
                        let _ = builder.serve_connection(TokioIo::new(s), svc).await;
                    }
                }
                None => {
                    let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                }
            }
        });
        // Reap finished connections.
        while conns.try_join_next().is_some() {}
    }
    conns.abort_all();
}

fn json_response(code: u16, v: &Value) -> Response<ResBody> {
    let body = serde_json::to_vec(v).unwrap_or_default();
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)).boxed())
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()))
}

fn error_response(e: &ApiError) -> Response<ResBody> {
    let mut r = json_response(e.code, &e.to_status());
    if let Some(secs) = e.details.get("retryAfterSeconds").and_then(Value::as_u64)
        && let Ok(v) = http::HeaderValue::from_str(&secs.to_string())
    {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

fn text_response(code: u16, text: &str) -> Response<ResBody> {
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(text.to_string())).boxed())
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()))
}

/// An object as a client of `version` sees it (`in_list`: built-in list items carry no type).
pub(crate) fn present(res: &ResourceInfo, version: &str, obj: &Value, in_list: bool) -> Value {
    let mut out = crate::convert::from_storage(&res.group, &res.kind, version, obj);
    if let Some(m) = out.as_object_mut() {
        if in_list && res.crd.is_none() {
            m.remove("apiVersion");
            m.remove("kind");
        } else {
            m.insert("apiVersion".into(), json!(res.api_version(version)));
            m.insert("kind".into(), json!(res.kind));
        }
    }
    out
}

fn header_str(h: &HeaderMap, name: header::HeaderName) -> &str {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// Who a request comes from and when it arrived.
struct Caller {
    /// The user the request acts as.
    user: User,
    /// The authenticated user, when it impersonates `user`.
    impersonator: Option<User>,
    peer: SocketAddr,
    received: String,
}

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<ResBody> {
    let received = ids::now_rfc3339_micros();
    let latency = shared.faults.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let route = routes::route(req.uri().path());
    match &route {
        Route::Health(_) => return text_response(200, "ok"),
        Route::Version => return json_response(200, &discovery::version()),
        _ => {}
    }
    let auth_header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let user = match shared.users.authenticate(auth_header) {
        Ok(u) => u.clone(),
        Err(e) => return error_response(&e),
    };
    let caller = match auth::impersonate(&shared.users, &user, req.headers()) {
        Ok(Some(as_user)) => Caller {
            user: as_user,
            impersonator: Some(user),
            peer,
            received,
        },
        Ok(None) => Caller {
            user,
            impersonator: None,
            peer,
            received,
        },
        Err(e) => return error_response(&e),
    };
    match route {
        Route::Resource(target) => {
            let (resp, audit) = resource_request(&shared, &caller, target, req).await;
            if let Some(mut a) = audit {
                a.code = resp.status().as_u16();
                shared
                    .audit
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(a);
            }
            resp
        }
        other => {
            if req.method() != Method::GET {
                return error_response(&ApiError::method_not_allowed());
            }
            if matches!(other, Route::OpenApiV2) {
                let accept = header_str(req.headers(), header::ACCEPT);
                return if accept.contains("protobuf") {
                    Response::builder()
                        .status(StatusCode::OK)
                        .header(header::CONTENT_TYPE, openapi::V2_PROTOBUF)
                        .body(Full::new(Bytes::from(openapi::v2_protobuf())).boxed())
                        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()))
                } else {
                    json_response(200, &openapi::v2_document())
                };
            }
            let store = shared.lock();
            let cat = store.catalogue();
            let doc = match other {
                Route::CoreVersions => Some(discovery::core_versions(&shared.server_address)),
                Route::Groups => Some(discovery::groups(cat)),
                Route::Group(g) => discovery::group(cat, &g),
                Route::GroupVersion { group, version } => {
                    discovery::resource_list(cat, &group, &version)
                }
                Route::OpenApiRoot => Some(openapi::root(cat)),
                Route::OpenApiDoc(path) => openapi::document(cat, &path),
                _ => None,
            };
            match doc {
                Some(d) => json_response(200, &d),
                None => error_response(&ApiError::no_route()),
            }
        }
    }
}

/// The field manager of a request: `fieldManager`, or the User-Agent's program name.
fn field_manager(q: &Query, headers: &HeaderMap) -> Result<String, ApiError> {
    if let Some(m) = &q.field_manager {
        if m.len() > 128 {
            return Err(ApiError::invalid(
                "",
                "",
                "",
                vec![crate::errors::Cause::invalid(
                    "fieldManager",
                    &json!(m),
                    "must be no more than 128 characters",
                )],
            ));
        }
        return Ok(m.clone());
    }
    let ua = header_str(headers, header::USER_AGENT);
    let prefix = ua.split('/').next().unwrap_or_default().trim();
    Ok(if prefix.is_empty() {
        "unknown".into()
    } else {
        prefix.to_string()
    })
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, ApiError> {
    match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(ApiError::request_entity_too_large(MAX_BODY))
        }
        Err(e) => Err(ApiError::bad_request(format!(
            "unable to read the request body: {e}"
        ))),
    }
}

fn parse_body(
    bytes: &[u8],
    content_type: &str,
    res: &ResourceInfo,
    version: &str,
) -> Result<Value, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::bad_request(format!(
            "{} in version {version:?} cannot be handled as a {}: empty body",
            res.kind, res.kind
        )));
    }
    let media = content_type.split(';').next().unwrap_or_default().trim();
    if media == "application/vnd.kubernetes.protobuf" {
        return crate::protobuf::decode(bytes).map_err(|m| {
            ApiError::unsupported_media_type(
                &format!("{media}: {m}"),
                &["application/json", "application/yaml"],
            )
        });
    }
    if !matches!(
        media,
        "" | "application/json" | "application/yaml" | "yaml" | "*/*" | "text/plain"
    ) {
        return Err(ApiError::unsupported_media_type(
            media,
            &["application/json", "application/yaml"],
        ));
    }
    let yaml = content_type.contains("yaml");

    if yaml {
        let text = std::str::from_utf8(bytes)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
        serde_saphyr::from_str::<Value>(text)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
    } else {
        serde_json::from_slice::<Value>(bytes).map_err(|e| {
            ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
        })
    }
}

fn verb_of(method: &Method, t: &Target, q: &Query) -> Option<&'static str> {
    Some(match *method {
        Method::GET if q.watch => "watch",
        Method::GET if t.name.is_some() => "get",
        Method::GET => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if t.name.is_some() => "delete",
        Method::DELETE => "deletecollection",
        _ => return None,
    })
}

/// What the handlers of resource requests answer: a JSON body the audit sink may record, or a
/// ready response (reads, watches).
enum Reply {
    Json(u16, Value),
    Raw(Response<ResBody>),
}

/// What a request's handling learnt that its audit event records.
#[derive(Default)]
struct Exchange {
    request_object: Option<Value>,
    forbidden: bool,
}

const MUTATING: &[&str] = &["create", "update", "patch", "delete", "deletecollection"];

async fn resource_request(
    shared: &Arc<Shared>,
    caller: &Caller,
    t: Target,
    req: Request<Incoming>,
) -> (Response<ResBody>, Option<AuditEntry>) {
    let user = &caller.user;
    let query = match routes::parse_query(req.uri().query().unwrap_or_default()) {
        Ok(q) => q,
        Err(m) => return (error_response(&ApiError::bad_request(m)), None),
    };
    let Some(verb) = verb_of(req.method(), &t, &query) else {
        return (error_response(&ApiError::method_not_allowed()), None);
    };
    let audit = AuditEntry {
        user: user.name.clone(),
        groups: user.groups.clone(),
        verb: verb.into(),
        group: t.group.clone(),
        resource: t.plural.clone(),
        subresource: t.subresource.clone().unwrap_or_default(),
        namespace: t.namespace.clone().unwrap_or_default(),
        name: t.name.clone().unwrap_or_default(),
        code: 0,
        impersonator: caller.impersonator.as_ref().map(|u| u.name.clone()),
    };
    let audit_id = ids::uid();
    let record = match &shared.audit_sink {
        Some(_) if MUTATING.contains(&verb) => Some(Record {
            audit_id: audit_id.clone(),
            request_uri: req
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_default(),
            verb: verb.into(),
            user: Some(caller.impersonator.clone().unwrap_or_else(|| user.clone())),
            impersonated: caller.impersonator.as_ref().map(|_| user.clone()),
            source_ip: caller.peer.ip().to_string(),
            user_agent: header_str(req.headers(), header::USER_AGENT).to_string(),
            group: t.group.clone(),
            version: t.version.clone(),
            resource: t.plural.clone(),
            subresource: t.subresource.clone().unwrap_or_default(),
            namespace: t.namespace.clone().unwrap_or_default(),
            name: t.name.clone().unwrap_or_default(),
            received: caller.received.clone(),
            ..Default::default()
        }),
        _ => None,
    };
    let mut ex = Exchange::default();
    let (mut resp, response_object) =
        match resource_inner(shared, user, &t, verb, query, req, &mut ex).await {
            Ok(Reply::Raw(r)) => (r, None),
            Ok(Reply::Json(code, v)) => (json_response(code, &v), Some(v)),
            Err(e) => (error_response(&e), Some(e.to_status())),
        };
    if let Ok(v) = http::HeaderValue::from_str(&audit_id) {
        resp.headers_mut().insert("audit-id", v);
    }
    if let (Some(mut rec), Some(sink)) = (record, &shared.audit_sink) {
        rec.code = resp.status().as_u16();
        rec.request_object = ex.request_object;
        rec.response_object = response_object;
        rec.allowed = !ex.forbidden;
        rec.completed = ids::now_rfc3339_micros();
        sink.send(rec.event(sink.omit_managed_fields));
    }
    (resp, Some(audit))
}

/// The parts of a request admission needs besides the object.
struct AdmissionBase<'a> {
    res: &'a ResourceInfo,
    version: &'a str,
    sub: &'a str,
    namespace: &'a str,
    name: &'a str,
    operation: &'static str,
    dry_run: bool,
    options: Value,
}

/// An object as admission sees it: typed, without the resourceVersion a create has not got yet.
fn admission_object(res: &ResourceInfo, version: &str, obj: &Value, creating: bool) -> Value {
    let mut o = present(res, version, obj, false);
    if creating && let Some(m) = o["metadata"].as_object_mut() {
        m.remove("resourceVersion");
    }
    o
}

/// Run the validating admission webhooks that match. `preview` computes, under the store lock,
/// the (object, oldObject) pairs to admit — one, or one per member of a deletecollection. The
/// configurations themselves are never sent to webhooks (as on a real server). Returns the first
/// admitted object when any webhook was called.
async fn admit(
    shared: &Arc<Shared>,
    user: &User,
    base: AdmissionBase<'_>,
    preview: impl FnOnce(&mut Store) -> Result<Vec<(Option<Value>, Option<Value>)>, ApiError>,
) -> Result<Option<Value>, ApiError> {
    let res = base.res;
    let requests = {
        let mut store = shared.lock();
        let Some(vwc) = store
            .catalogue()
            .by_plural(
                "admissionregistration.k8s.io",
                "validatingwebhookconfigurations",
            )
            .cloned()
        else {
            return Ok(None);
        };
        if res.group == "admissionregistration.k8s.io" {
            return Ok(None);
        }
        let configs = store.snapshot(&vwc, None);
        if configs.is_empty() {
            return Ok(None);
        }
        let kind = if base.sub == "scale" {
            ("autoscaling".into(), "v1".into(), "Scale".into())
        } else {
            (
                res.group.clone(),
                base.version.to_string(),
                res.kind.clone(),
            )
        };
        let template = Attributes {
            group: res.group.clone(),
            version: base.version.to_string(),
            resource: res.plural.clone(),
            subresource: base.sub.to_string(),
            kind,
            namespaced: res.namespaced,
            namespace: base.namespace.to_string(),
            name: base.name.to_string(),
            operation: base.operation,
            object: None,
            old_object: None,
            dry_run: base.dry_run,
            options: base.options,
            user: user.clone(),
        };
        let hooks: Vec<admission::Webhook> = admission::webhooks(configs.iter().map(|c| &**c))
            .into_iter()
            .filter(|h| h.rules_match(&template))
            .map(|h| h.with_client(shared.admission_client.clone()))
            .collect();
        if hooks.is_empty() {
            return Ok(None);
        }
        let pairs = preview(&mut store)?;
        let ns_object = store
            .catalogue()
            .by_plural("", "namespaces")
            .cloned()
            .and_then(|r| store.get(&r, "", base.namespace).ok());
        let mut requests = Vec::new();
        for (object, old_object) in pairs {
            let mut a = template.clone();
            if a.name.is_empty() && base.operation == "CREATE" {
                a.name = object
                    .as_ref()
                    .and_then(|o| o["metadata"]["name"].as_str())
                    .unwrap_or_default()
                    .to_string();
            }
            a.object = object;
            a.old_object = old_object;
            let selected: Vec<admission::Webhook> = hooks
                .iter()
                .filter(|h| h.selectors_match(&a, ns_object.as_deref()))
                .cloned()
                .collect();
            requests.push((selected, a));
        }
        requests
    };
    let first = requests.first().and_then(|(_, a)| a.object.clone());
    for (selected, a) in &requests {
        if !selected.is_empty() {
            admission::call_all(selected, a).await?;
        }
    }
    Ok(first)
}

async fn resource_inner(
    shared: &Arc<Shared>,
    user: &User,
    t: &Target,
    verb: &str,
    q: Query,
    req: Request<Incoming>,
    ex: &mut Exchange,
) -> Result<Reply, ApiError> {
    let res = shared
        .lock()
        .catalogue()
        .lookup(&t.group, &t.version, &t.plural)
        .cloned()
        .ok_or_else(ApiError::no_route)?;
    // Scope checks.
    if !res.namespaced && t.namespace.is_some() {
        return Err(ApiError::no_route());
    }
    if res.namespaced && t.name.is_some() && t.namespace.is_none() {
        return Err(ApiError::no_route());
    }
    if res.namespaced && verb == "create" && t.namespace.is_none() {
        return Err(ApiError::method_not_allowed());
    }
    let sub = t.subresource.clone().unwrap_or_default();
    match sub.as_str() {
        "" => {}
        "status" if res.status => {}
        "scale" if res.scale.is_some() => {}
        _ => return Err(ApiError::no_route()),
    }
    if !sub.is_empty() && !matches!(verb, "get" | "update" | "patch") {
        return Err(ApiError::method_not_allowed());
    }
    if !res.has_verb(verb) {
        return Err(ApiError::method_not_allowed());
    }
    let ns = t.namespace.clone().unwrap_or_default();
    let name = t.name.clone().unwrap_or_default();
    if let Err(e) = auth::authorize(user, verb, &res.group, &res.plural, &ns, &name) {
        ex.forbidden = true;
        return Err(e);
    }
    if let Some(code) = shared.faults.take_failure() {
        return Err(match code {
            429 => ApiError::too_many_requests(1),
            c => ApiError::new(
                c,
                "InternalError",
                "Internal error occurred: injected by kubesim fault knob",
            ),
        });
    }
    if verb == "list"
        && let Some(code) = shared.faults.list_failure(&res.plural)
    {
        return Err(ApiError::new(
            code,
            "InternalError",
            "Internal error occurred: list failure injected by kubesim fault knob",
        ));
    }
    let accept = header_str(req.headers(), header::ACCEPT).to_string();
    let content_type = header_str(req.headers(), header::CONTENT_TYPE).to_string();
    let manager = field_manager(&q, req.headers())?;
    let opts = WriteOpts {
        manager,
        dry_run: q.dry_run,
        subresource: sub.clone(),
        force: q.force,
        pinned: Some(Pinned::fresh()),
    };
    let version = t.version.clone();
    let ns_scope = t.namespace.as_deref();

    match verb {
        "get" => {
            let store = shared.lock();
            let obj = store.get(&res, &ns, &name)?;
            if sub == "scale" {
                return Ok(Reply::Raw(json_response(200, &store.scale_of(&res, &obj))));
            }
            if table::wants_table(&accept) {
                return Ok(Reply::Raw(json_response(
                    200,
                    &table::table(
                        &res,
                        std::slice::from_ref(&obj),
                        store.resource_version(),
                        None,
                    ),
                )));
            }
            if table::wants_metadata(&accept) {
                return Ok(Reply::Raw(json_response(200, &table::partial(&obj))));
            }
            Ok(Reply::Raw(json_response(
                200,
                &present(&res, &version, &obj, false),
            )))
        }
        "list" => {
            let lq = ListQuery {
                labels: LabelSelector::parse(&q.label_selector).map_err(|m| {
                    ApiError::bad_request(format!("unable to parse requirement: {m}"))
                })?,
                fields: FieldSelector::parse(&q.field_selector, &res.kind)
                    .map_err(ApiError::bad_request)?,
                limit: q.limit,
                continue_token: q.continue_token.clone(),
            };
            let store = shared.lock();
            check_list_rv(&q, store.resource_version())?;
            let page = store.list(&res, ns_scope, &lq)?;
            if table::wants_table(&accept) {
                return Ok(Reply::Raw(json_response(
                    200,
                    &table::table(
                        &res,
                        &page.items,
                        page.resource_version,
                        page.continue_token.as_deref(),
                    ),
                )));
            }
            let mut meta = json!({"resourceVersion": page.resource_version.to_string()});
            if let Some(c) = &page.continue_token {
                meta["continue"] = json!(c);
            }
            if let Some(r) = page.remaining {
                meta["remainingItemCount"] = json!(r);
            }
            if table::wants_metadata(&accept) {
                return Ok(Reply::Raw(json_response(
                    200,
                    &table::partial_list(&page.items, meta),
                )));
            }
            let items: Vec<Value> = page
                .items
                .iter()
                .map(|o| present(&res, &version, o, true))
                .collect();
            drop(store);
            Ok(Reply::Raw(json_response(
                200,
                &json!({"kind": res.list_kind(), "apiVersion": res.api_version(&version), "metadata": meta, "items": items}),
            )))
        }
        "watch" => {
            let labels = LabelSelector::parse(&q.label_selector)
                .map_err(|m| ApiError::bad_request(format!("unable to parse requirement: {m}")))?;
            let mut field_sel = q.field_selector.clone();
            if !name.is_empty() {
                field_sel = if field_sel.is_empty() {
                    format!("metadata.name={name}")
                } else {
                    format!("{field_sel},metadata.name={name}")
                };
            }
            let fields =
                FieldSelector::parse(&field_sel, &res.kind).map_err(ApiError::bad_request)?;
            let rv = q.resource_version.clone().unwrap_or_default();
            let start = if q.send_initial_events {
                if q.resource_version_match.as_deref() != Some("NotOlderThan") {
                    return Err(ApiError::invalid(
                        "",
                        "",
                        "",
                        vec![crate::errors::Cause::forbidden(
                            "sendInitialEvents",
                            "sendInitialEvents is forbidden for watch unless resourceVersionMatch is set to NotOlderThan",
                        )],
                    ));
                }
                Start::Snapshot {
                    end_bookmark: q.allow_watch_bookmarks,
                }
            } else if rv.is_empty() || rv == "0" {
                Start::Snapshot {
                    end_bookmark: false,
                }
            } else {
                Start::After(rv.parse().map_err(|_| {
                    ApiError::bad_request(format!("invalid resource version: {rv:?}"))
                })?)
            };
            let spec = WatchSpec {
                res: res.clone(),
                version: version.clone(),
                namespace: t.namespace.clone(),
                labels,
                fields,
                start,
                bookmarks: q.allow_watch_bookmarks,
                timeout: Duration::from_secs(q.timeout_seconds.unwrap_or(1800).min(86_400)),
                table: table::wants_table(&accept),
                metadata_only: table::wants_metadata(&accept),
            };
            let body = watch_stream::start(shared.clone(), spec);
            Ok(Reply::Raw(
                Response::builder()
                    .status(200)
                    .header(header::CONTENT_TYPE, "application/json")
                    .header(header::CACHE_CONTROL, "no-cache, private")
                    .body(body.boxed())
                    .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed())),
            ))
        }
        "create" => {
            let bytes = read_body(req).await?;
            let mut body = parse_body(&bytes, &content_type, &res, &version)?;
            ex.request_object = Some(body.clone());
            let preview_opts = WriteOpts {
                dry_run: true,
                ..opts.clone()
            };
            let admitted = admit(
                shared,
                user,
                AdmissionBase {
                    res: &res,
                    version: &version,
                    sub: "",
                    namespace: &ns,
                    name: body["metadata"]["name"].as_str().unwrap_or_default(),
                    operation: "CREATE",
                    dry_run: opts.dry_run,
                    options: admission::options(
                        "CREATE",
                        opts.dry_run,
                        q.field_manager.as_deref(),
                        q.field_validation.as_deref(),
                        None,
                    ),
                },
                |store| {
                    let o = store.create(&res, &version, &ns, body.clone(), &preview_opts)?;
                    Ok(vec![(
                        Some(admission_object(&res, &version, &o, true)),
                        None,
                    )])
                },
            )
            .await?;
            // The real write stores the name admission saw for a generateName create.
            if let Some(a) = admitted
                && body["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .is_empty()
                && let Some(n) = a["metadata"]["name"].as_str()
                && body["metadata"].is_object()
            {
                body["metadata"]["name"] = json!(n);
            }
            let mut store = shared.lock();
            let created = store.create(&res, &version, &ns, body, &opts)?;
            shared.notify(&store);
            Ok(Reply::Json(201, present(&res, &version, &created, false)))
        }
        "update" => {
            let bytes = read_body(req).await?;
            let body = parse_body(&bytes, &content_type, &res, &version)?;
            ex.request_object = Some(body.clone());
            let preview_opts = WriteOpts {
                dry_run: true,
                ..opts.clone()
            };
            admit(
                shared,
                user,
                AdmissionBase {
                    res: &res,
                    version: &version,
                    sub: &sub,
                    namespace: &ns,
                    name: &name,
                    operation: "UPDATE",
                    dry_run: opts.dry_run,
                    options: admission::options(
                        "UPDATE",
                        opts.dry_run,
                        q.field_manager.as_deref(),
                        q.field_validation.as_deref(),
                        None,
                    ),
                },
                |store| {
                    let old = store.get(&res, &ns, &name)?;
                    Ok(vec![if sub == "scale" {
                        let o = store.scale_write(
                            &res,
                            &version,
                            &ns,
                            &name,
                            None,
                            Some(&body),
                            &preview_opts,
                        )?;
                        (Some(o), Some(store.scale_of(&res, &old)))
                    } else {
                        let o = store.update(
                            &res,
                            &version,
                            &ns,
                            &name,
                            body.clone(),
                            &preview_opts,
                        )?;
                        (
                            Some(admission_object(&res, &version, &o, false)),
                            Some(present(&res, &version, &old, false)),
                        )
                    }])
                },
            )
            .await?;
            let mut store = shared.lock();
            let out = if sub == "scale" {
                store.scale_write(&res, &version, &ns, &name, None, Some(&body), &opts)?
            } else {
                present(
                    &res,
                    &version,
                    &store.update(&res, &version, &ns, &name, body, &opts)?,
                    false,
                )
            };
            shared.notify(&store);
            Ok(Reply::Json(200, out))
        }
        "patch" => {
            let kind = match content_type.split(';').next().unwrap_or_default().trim() {
                "application/json-patch+json" => PatchKind::Json,
                "application/merge-patch+json" => PatchKind::Merge,
                "application/strategic-merge-patch+json" if res.crd.is_none() => {
                    PatchKind::Strategic
                }
                "application/apply-patch+yaml" => PatchKind::Apply,
                other => {
                    let accepted: &[&str] = if res.crd.is_none() {
                        &[
                            "application/json-patch+json",
                            "application/merge-patch+json",
                            "application/apply-patch+yaml",
                            "application/strategic-merge-patch+json",
                        ]
                    } else {
                        &[
                            "application/json-patch+json",
                            "application/merge-patch+json",
                            "application/apply-patch+yaml",
                        ]
                    };
                    return Err(ApiError::unsupported_media_type(other, accepted));
                }
            };
            let bytes = read_body(req).await?;
            let body = if kind == PatchKind::Apply {
                parse_body(&bytes, "yaml", &res, &version)?
            } else {
                serde_json::from_slice::<Value>(&bytes)
                    .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?
            };
            ex.request_object = Some(body.clone());
            let existed = shared.lock().get(&res, &ns, &name).is_ok();
            let operation = if existed { "UPDATE" } else { "CREATE" };
            let preview_opts = WriteOpts {
                dry_run: true,
                ..opts.clone()
            };
            admit(
                shared,
                user,
                AdmissionBase {
                    res: &res,
                    version: &version,
                    sub: &sub,
                    namespace: &ns,
                    name: &name,
                    operation,
                    dry_run: opts.dry_run,
                    options: admission::options(
                        operation,
                        opts.dry_run,
                        q.field_manager.as_deref(),
                        q.field_validation.as_deref(),
                        None,
                    ),
                },
                |store| {
                    let old = store.get(&res, &ns, &name).ok();
                    Ok(vec![if sub == "scale" {
                        let o = store.scale_write(
                            &res,
                            &version,
                            &ns,
                            &name,
                            Some((kind, &body)),
                            None,
                            &preview_opts,
                        )?;
                        (Some(o), old.map(|old| store.scale_of(&res, &old)))
                    } else {
                        let o =
                            store.patch(&res, &version, &ns, &name, kind, &body, &preview_opts)?;
                        (
                            Some(admission_object(&res, &version, &o, old.is_none())),
                            old.map(|old| present(&res, &version, &old, false)),
                        )
                    }])
                },
            )
            .await?;
            let mut store = shared.lock();
            let existed = store.get(&res, &ns, &name).is_ok();
            let out = if sub == "scale" {
                store.scale_write(&res, &version, &ns, &name, Some((kind, &body)), None, &opts)?
            } else {
                present(
                    &res,
                    &version,
                    &store.patch(&res, &version, &ns, &name, kind, &body, &opts)?,
                    false,
                )
            };
            shared.notify(&store);
            Ok(Reply::Json(if existed { 200 } else { 201 }, out))
        }
        "delete" => {
            let bytes = read_body(req).await?;
            let mut pre = DeleteOpts::default();
            let mut opts = opts;
            let mut delete_options = None;
            if !bytes.is_empty() {
                let body: Value = serde_json::from_slice(&bytes).map_err(|e| {
                    ApiError::bad_request(format!("error decoding DeleteOptions: {e}"))
                })?;
                pre.uid = body["preconditions"]["uid"].as_str().map(String::from);
                pre.resource_version = body["preconditions"]["resourceVersion"]
                    .as_str()
                    .map(String::from);
                if body["dryRun"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|v| v == "All"))
                {
                    opts.dry_run = true;
                }
                delete_options = Some(body);
            }
            ex.request_object = Some(audited_delete_options(delete_options.as_ref()));
            let preview_opts = WriteOpts {
                dry_run: true,
                ..opts.clone()
            };
            admit(
                shared,
                user,
                AdmissionBase {
                    res: &res,
                    version: &version,
                    sub: "",
                    namespace: &ns,
                    name: &name,
                    operation: "DELETE",
                    dry_run: opts.dry_run,
                    options: admission::options(
                        "DELETE",
                        opts.dry_run,
                        None,
                        None,
                        delete_options.as_ref(),
                    ),
                },
                |store| {
                    let old = store.get(&res, &ns, &name)?;
                    store.delete(&res, &ns, &name, &pre, &preview_opts)?;
                    Ok(vec![(None, Some(present(&res, &version, &old, false)))])
                },
            )
            .await?;
            let mut store = shared.lock();
            let outcome = store.delete(&res, &ns, &name, &pre, &opts)?;
            shared.notify(&store);
            Ok(match outcome {
                Deleted::Marked(obj) => Reply::Json(200, present(&res, &version, &obj, false)),
                Deleted::Gone(obj) => Reply::Json(
                    200,
                    success_status(
                        &res.group,
                        &res.plural,
                        &name,
                        obj["metadata"]["uid"].as_str().unwrap_or_default(),
                    ),
                ),
            })
        }
        "deletecollection" => {
            let lq = ListQuery {
                labels: LabelSelector::parse(&q.label_selector).map_err(|m| {
                    ApiError::bad_request(format!("unable to parse requirement: {m}"))
                })?,
                fields: FieldSelector::parse(&q.field_selector, &res.kind)
                    .map_err(ApiError::bad_request)?,
                ..Default::default()
            };
            let bytes = read_body(req).await?;
            let delete_options: Option<Value> = if bytes.is_empty() {
                None
            } else {
                Some(serde_json::from_slice(&bytes).map_err(|e| {
                    ApiError::bad_request(format!("error decoding DeleteOptions: {e}"))
                })?)
            };
            ex.request_object = Some(audited_delete_options(delete_options.as_ref()));
            admit(
                shared,
                user,
                AdmissionBase {
                    res: &res,
                    version: &version,
                    sub: "",
                    namespace: &ns,
                    name: "",
                    operation: "DELETE",
                    dry_run: opts.dry_run,
                    options: admission::options(
                        "DELETE",
                        opts.dry_run,
                        None,
                        None,
                        delete_options.as_ref(),
                    ),
                },
                |store| {
                    let page = store.list(&res, ns_scope, &lq)?;
                    Ok(page
                        .items
                        .iter()
                        .map(|o| (None, Some(present(&res, &version, o, false))))
                        .collect())
                },
            )
            .await?;
            let mut store = shared.lock();
            let deleted = store.delete_collection(&res, ns_scope, &lq, &opts)?;
            shared.notify(&store);
            let items: Vec<Value> = deleted
                .iter()
                .map(|o| present(&res, &version, o, true))
                .collect();
            Ok(Reply::Json(
                200,
                json!({"kind": res.list_kind(), "apiVersion": res.api_version(&version), "metadata": {"resourceVersion": store.resource_version().to_string()}, "items": items}),
            ))
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// The request object of a DELETE as audit records it: the body, typed as `meta.k8s.io/v1`
/// DeleteOptions when it says nothing, or the real server's internal DeleteOptions without one.
fn audited_delete_options(body: Option<&Value>) -> Value {
    match body {
        Some(Value::Object(m)) => {
            let mut m = m.clone();
            m.entry("kind").or_insert_with(|| json!("DeleteOptions"));
            m.entry("apiVersion")
                .or_insert_with(|| json!("meta.k8s.io/v1"));
            Value::Object(m)
        }
        Some(other) => other.clone(),
        None => json!({"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/__internal"}),
    }
}

/// A LIST from a resourceVersion the server has not reached yet is refused, as on a real server.
fn check_list_rv(q: &Query, current: u64) -> Result<(), ApiError> {
    if let Some(rv) = q
        .resource_version
        .as_deref()
        .filter(|r| !r.is_empty() && *r != "0")
    {
        let n: u64 = rv
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv:?}")))?;
        if n > current {
            return Err(ApiError::new(504, "Timeout", format!("Too large resource version: {n}, current: {current}"))
                .with_details(json!({"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}], "retryAfterSeconds": 1})));
        }
    }
    Ok(())
}

/// The address a listener is bound to, as clients should dial it.
pub(crate) fn dial_address(addr: SocketAddr) -> String {
    addr.to_string()
}
