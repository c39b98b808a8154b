//! The audit webhook backend: `ResponseComplete` events at `RequestResponse` level for mutating
//! requests, POSTed as `audit.k8s.io/v1` `EventList` batches (size/wait limits, retries, faults).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::auth::User;
use crate::errors::SimError;
use crate::faults::{AuditFaults, REORDER_HOLD};
use crate::outbound::Endpoint;

/// Where audit events go and how they are batched, like the real webhook backend's flags
/// (`--audit-webhook-config-file`, `--audit-webhook-batch-max-size`, `...-batch-max-wait`).
#[derive(Debug, Clone)]
pub struct AuditSink {
    /// `http://...` or `https://...`.
    pub url: String,
    /// The CA (PEM) the sink's serving certificate must chain to (HTTPS).
    pub ca_pem: Option<String>,
    /// The client certificate chain and private key (PEM) presented to the sink (HTTPS).
    pub client_cert_pem: Option<String>,
    pub client_key_pem: Option<String>,
    /// Events per batch at most (real default 400).
    pub max_batch_size: usize,
    /// How long the first event of a batch waits for more (real default 30 s).
    pub max_batch_wait: Duration,
    /// Attempts after the first failed one; then the batch is dropped.
    pub retries: u32,
    /// Pause between attempts.
    pub retry_backoff: Duration,
    /// Timeout of one POST.
    pub timeout: Duration,
    /// Leave `metadata.managedFields` out of request and response objects (the policy's
    /// `omitManagedFields`).
    pub omit_managed_fields: bool,
}

impl AuditSink {
    /// A plain sink at `url`: batches of at most 100 events or 50 ms, 3 retries 100 ms apart.
    pub fn new(url: &str) -> Self {
        AuditSink {
            url: url.into(),
            ca_pem: None,
            client_cert_pem: None,
            client_key_pem: None,
            max_batch_size: 100,
            max_batch_wait: Duration::from_millis(50),
            retries: 3,
            retry_backoff: Duration::from_millis(100),
            timeout: Duration::from_secs(5),
            omit_managed_fields: false,
        }
    }

    /// Trust `ca_pem` and present a client certificate (the webhook kubeconfig's
    /// `certificate-authority-data`, `client-certificate-data`, `client-key-data`).
    pub fn with_tls(mut self, ca_pem: &str, client: Option<(&str, &str)>) -> Self {
        self.ca_pem = Some(ca_pem.into());
        if let Some((cert, key)) = client {
            self.client_cert_pem = Some(cert.into());
            self.client_key_pem = Some(key.into());
        }
        self
    }

    /// Batch limits.
    pub fn with_batch(mut self, max_size: usize, max_wait: Duration) -> Self {
        self.max_batch_size = max_size.max(1);
        self.max_batch_wait = max_wait;
        self
    }
}

/// The running backend: events go in, batches go out.
#[derive(Debug, Clone)]
pub struct Pipeline {
    tx: mpsc::Sender<Value>,
    pub(crate) omit_managed_fields: bool,
}

/// Events buffered before new ones are dropped (the real backend's buffer size).
const BUFFER: usize = 10_000;

impl Pipeline {
    /// Start the batcher and sender; both end when `shutdown` turns true.
    pub fn start(
        sink: &AuditSink,
        knobs: Arc<Mutex<AuditFaults>>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Self, SimError> {
        let client = match (&sink.client_cert_pem, &sink.client_key_pem) {
            (Some(c), Some(k)) => Some((c.as_bytes(), k.as_bytes())),
            _ => None,
        };
        let endpoint = Endpoint::new(&sink.url, sink.ca_pem.as_deref().map(str::as_bytes), client)
            .map_err(|e| SimError::Config(format!("audit sink: {e}")))?;
        let (tx, rx) = mpsc::channel(BUFFER);
        let (btx, brx) = mpsc::unbounded_channel();
        tokio::spawn(batcher(
            rx,
            btx,
            sink.max_batch_size.max(1),
            sink.max_batch_wait,
            knobs.clone(),
            shutdown.clone(),
        ));
        tokio::spawn(sender(brx, endpoint, sink.clone(), knobs, shutdown));
        Ok(Pipeline {
            tx,
            omit_managed_fields: sink.omit_managed_fields,
        })
    }

    /// Queue an event; dropped when the buffer is full.
    pub fn send(&self, event: Value) {
        if self.tx.try_send(event).is_err() {
            tracing::warn!("kubesim audit buffer full: event dropped");
        }
    }
}

/// A batch with the time it was closed.
struct Batch {
    events: Vec<Value>,
    closed: Instant,
}

fn knobs_now(k: &Mutex<AuditFaults>) -> AuditFaults {
    *k.lock().unwrap_or_else(|p| p.into_inner())
}

async fn batcher(
    mut rx: mpsc::Receiver<Value>,
    out: mpsc::UnboundedSender<Batch>,
    max: usize,
    wait: Duration,
    knobs: Arc<Mutex<AuditFaults>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut held: Option<Batch> = None;
    loop {
        let hold_until = held.as_ref().map(|b| b.closed + REORDER_HOLD);
        let first = tokio::select! {
            e = rx.recv() => match e { Some(e) => e, None => break },
            _ = shutdown.changed() => break,
            _ = sleep_until_opt(hold_until) => {
                if let Some(b) = held.take() { let _ = out.send(b); }
                continue;
            }
        };
        let mut events = vec![first];
        let deadline = Instant::now() + wait;
        while events.len() < max {
            tokio::select! {
                e = rx.recv() => match e { Some(e) => events.push(e), None => break },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        let batch = Batch {
            events,
            closed: Instant::now(),
        };
        if knobs_now(&knobs).reorder {
            match held.take() {
                Some(prev) => {
                    let _ = out.send(batch);
                    let _ = out.send(prev);
                }
                None => held = Some(batch),
            }
        } else {
            if let Some(prev) = held.take() {
                let _ = out.send(prev);
            }
            let _ = out.send(batch);
        }
    }
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

async fn sender(
    mut rx: mpsc::UnboundedReceiver<Batch>,
    endpoint: Endpoint,
    sink: AuditSink,
    knobs: Arc<Mutex<AuditFaults>>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let batch = tokio::select! {
            b = rx.recv() => match b { Some(b) => b, None => break },
            _ = shutdown.changed() => break,
        };
        let k = knobs_now(&knobs);
        if !k.delay.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep_until(batch.closed + k.delay) => {}
                _ = shutdown.changed() => break,
            }
        }
        let body = serde_json::to_vec(&event_list(batch.events)).unwrap_or_default();
        let times = if k.duplicate { 2 } else { 1 };
        for _ in 0..times {
            post_with_retries(&endpoint, &sink, body.clone()).await;
        }
    }
}

async fn post_with_retries(endpoint: &Endpoint, sink: &AuditSink, body: Vec<u8>) {
    for attempt in 0..=sink.retries {
        match endpoint.post_json(body.clone(), sink.timeout).await {
            Ok((code, _)) if (200..300).contains(&code) => return,
            Ok((code, _)) => tracing::debug!("audit sink answered {code} (attempt {attempt})"),
            Err(e) => tracing::debug!("audit sink: {e} (attempt {attempt})"),
        }
        if attempt < sink.retries {
            tokio::time::sleep(sink.retry_backoff).await;
        }
    }
    tracing::warn!("kubesim audit batch dropped after {} retries", sink.retries);
}

/// An `EventList` of `events` (items carry no kind/apiVersion, as the real backend sends them).
pub fn event_list(events: Vec<Value>) -> Value {
    json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": events})
}

/// The `user`/`impersonatedUser` of an event.
pub fn user_info(u: &User) -> Value {
    let mut m = Map::new();
    m.insert("username".into(), json!(u.name));
    if let Some(uid) = &u.uid {
        m.insert("uid".into(), json!(uid));
    }
    m.insert("groups".into(), json!(u.groups));
    Value::Object(m)
}

/// Everything an event records about one request.
#[derive(Debug, Clone, Default)]
pub struct Record {
    pub audit_id: String,
    pub request_uri: String,
    pub verb: String,
    /// The authenticated user and, when impersonating, the impersonated one.
    pub user: Option<User>,
    pub impersonated: Option<User>,
    pub source_ip: String,
    pub user_agent: String,
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    pub request_object: Option<Value>,
    pub response_object: Option<Value>,
    pub code: u16,
    pub received: String,
    pub completed: String,
    /// Whether authorization allowed the request.
    pub allowed: bool,
}

fn strip_managed_fields(v: &mut Value) {
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
    }
    if let Some(items) = v.get_mut("items").and_then(Value::as_array_mut) {
        for i in items {
            strip_managed_fields(i);
        }
    }
}

impl Record {
    /// The `audit.k8s.io/v1` Event (without kind/apiVersion, as in an `EventList`).
    pub fn event(&self, omit_managed_fields: bool) -> Value {
        let mut e = Map::new();
        e.insert("level".into(), json!("RequestResponse"));
        e.insert("auditID".into(), json!(self.audit_id));
        e.insert("stage".into(), json!("ResponseComplete"));
        e.insert("requestURI".into(), json!(self.request_uri));
        e.insert("verb".into(), json!(self.verb));
        if let Some(u) = &self.user {
            e.insert("user".into(), user_info(u));
        }
        if let Some(u) = &self.impersonated {
            e.insert("impersonatedUser".into(), user_info(u));
        }
        e.insert("sourceIPs".into(), json!([self.source_ip]));
        if !self.user_agent.is_empty() {
            e.insert("userAgent".into(), json!(self.user_agent));
        }
        // objectRef: the URL's parts, then what the request object's metadata adds.
        let mut r = Map::new();
        r.insert("resource".into(), json!(self.resource));
        let meta = self
            .request_object
            .as_ref()
            .map(|o| o["metadata"].clone())
            .unwrap_or(Value::Null);
        let from_meta = |k: &str| meta[k].as_str().filter(|s| !s.is_empty()).map(String::from);
        let namespace = Some(self.namespace.clone())
            .filter(|s| !s.is_empty())
            .or_else(|| from_meta("namespace"));
        if let Some(ns) = namespace {
            r.insert("namespace".into(), json!(ns));
        }
        let name = Some(self.name.clone())
            .filter(|s| !s.is_empty())
            .or_else(|| from_meta("name"));
        if let Some(n) = name {
            r.insert("name".into(), json!(n));
        }
        if let Some(uid) = from_meta("uid") {
            r.insert("uid".into(), json!(uid));
        }
        if !self.group.is_empty() {
            r.insert("apiGroup".into(), json!(self.group));
        }
        r.insert("apiVersion".into(), json!(self.version));
        if let Some(rv) = from_meta("resourceVersion") {
            r.insert("resourceVersion".into(), json!(rv));
        }
        if !self.subresource.is_empty() {
            r.insert("subresource".into(), json!(self.subresource));
        }
        e.insert("objectRef".into(), Value::Object(r));
        // responseStatus: the Status of a failure, or only the code.
        let mut status = Map::new();
        status.insert("metadata".into(), json!({}));
        if self.code >= 300
            && let Some(Value::Object(s)) = &self.response_object
            && s.get("kind").and_then(Value::as_str) == Some("Status")
        {
            for k in ["status", "message", "reason", "details"] {
                if let Some(v) = s.get(k) {
                    status.insert(k.into(), v.clone());
                }
            }
        }
        status.insert("code".into(), json!(self.code));
        e.insert("responseStatus".into(), Value::Object(status));
        for (key, obj) in [
            ("requestObject", &self.request_object),
            ("responseObject", &self.response_object),
        ] {
            if let Some(o) = obj {
                let mut o = o.clone();
                if omit_managed_fields {
                    strip_managed_fields(&mut o);
                }
                e.insert(key.into(), o);
            }
        }
        e.insert("requestReceivedTimestamp".into(), json!(self.received));
        e.insert("stageTimestamp".into(), json!(self.completed));
        e.insert(
            "annotations".into(),
            json!({
                "authorization.k8s.io/decision": if self.allowed { "allow" } else { "forbid" },
                "authorization.k8s.io/reason": "",
            }),
        );
        Value::Object(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_have_the_real_shape() {
        let rec = Record {
            audit_id: "a1".into(),
            request_uri: "/api/v1/namespaces/ns/configmaps/cm?dryRun=All".into(),
            verb: "update".into(),
            user: Some(User::admin("admin", "t")),
            impersonated: Some(User::admin("carol", "")),
            source_ip: "127.0.0.1".into(),
            resource: "configmaps".into(),
            version: "v1".into(),
            namespace: "ns".into(),
            name: "cm".into(),
            request_object: Some(
                json!({"metadata": {"name": "cm", "uid": "u", "resourceVersion": "5", "managedFields": []}}),
            ),
            response_object: Some(
                json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": "m", "reason": "Conflict", "details": {"name": "cm"}, "code": 409}),
            ),
            code: 409,
            received: "2024-01-01T00:00:00.000001Z".into(),
            completed: "2024-01-01T00:00:00.000002Z".into(),
            allowed: true,
            ..Default::default()
        };
        let e = rec.event(true);
        assert_eq!(
            e["objectRef"],
            json!({"resource": "configmaps", "namespace": "ns", "name": "cm", "uid": "u", "apiVersion": "v1", "resourceVersion": "5"})
        );
        assert_eq!(e["responseStatus"]["reason"], "Conflict");
        assert_eq!(e["responseStatus"]["code"], 409);
        assert_eq!(e["impersonatedUser"]["username"], "carol");
        assert!(
            e["requestObject"]["metadata"]
                .get("managedFields")
                .is_none()
        );
        assert_eq!(e["annotations"]["authorization.k8s.io/decision"], "allow");
    }
}
