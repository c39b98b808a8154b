//! Validating admission webhooks: which registered `ValidatingWebhookConfiguration` webhooks match a
//! request, the `admission.k8s.io/v1` `AdmissionReview` each gets, and what its answer means.

use std::time::Duration;

use base64::Engine;
use serde_json::{Map, Value, json};

use crate::auth::User;
use crate::errors::ApiError;
use crate::ids;
use crate::outbound::Endpoint;
use crate::selectors::LabelSelector;

/// One webhook of a `ValidatingWebhookConfiguration`, with the real server's defaults applied.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub name: String,
    rules: Vec<Rule>,
    ignore_failures: bool,
    timeout: Duration,
    side_effects: String,
    namespace_selector: Value,
    object_selector: Value,
    url: Option<String>,
    ca_bundle: Option<Vec<u8>>,
    /// Client certificate and key (PEM) the server presents (AdmissionConfiguration).
    client: Option<std::sync::Arc<(String, String)>>,
}

impl Webhook {
    /// Presents this client certificate and key when calling the webhook.
    pub fn with_client(mut self, client: Option<std::sync::Arc<(String, String)>>) -> Self {
        self.client = client;
        self
    }
}

#[derive(Debug, Clone)]
struct Rule {
    operations: Vec<String>,
    groups: Vec<String>,
    versions: Vec<String>,
    resources: Vec<String>,
    scope: String,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The webhooks of every stored configuration.
pub fn webhooks<'a>(configs: impl IntoIterator<Item = &'a Value>) -> Vec<Webhook> {
    let mut out = Vec::new();
    for c in configs {
        for w in c["webhooks"].as_array().into_iter().flatten() {
            let rules = w["rules"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| Rule {
                    operations: strings(&r["operations"]),
                    groups: strings(&r["apiGroups"]),
                    versions: strings(&r["apiVersions"]),
                    resources: strings(&r["resources"]),
                    scope: r["scope"].as_str().unwrap_or("*").to_string(),
                })
                .collect();
            let ca_bundle = w["clientConfig"]["caBundle"].as_str().and_then(|b| {
                base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .ok()
            });
            out.push(Webhook {
                name: w["name"].as_str().unwrap_or_default().to_string(),
                rules,
                ignore_failures: w["failurePolicy"].as_str() == Some("Ignore"),
                timeout: Duration::from_secs(
                    w["timeoutSeconds"].as_u64().unwrap_or(10).clamp(1, 30),
                ),
                side_effects: w["sideEffects"].as_str().unwrap_or("Unknown").to_string(),
                namespace_selector: w["namespaceSelector"].clone(),
                object_selector: w["objectSelector"].clone(),
                url: w["clientConfig"]["url"].as_str().map(String::from),
                ca_bundle,
                client: None,
            });
        }
    }
    out
}

/// What an admission request is about.
#[derive(Debug, Clone)]
pub struct Attributes {
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: String,
    /// (group, version, kind) of `object` (`autoscaling/v1` `Scale` for the scale subresource).
    pub kind: (String, String, String),
    pub namespaced: bool,
    pub namespace: String,
    /// Empty for `generateName` creates before naming and for deletecollection members.
    pub name: String,
    /// CREATE, UPDATE or DELETE.
    pub operation: &'static str,
    pub object: Option<Value>,
    pub old_object: Option<Value>,
    pub dry_run: bool,
    pub options: Value,
    /// The user the request acts as (the impersonated one when impersonating).
    pub user: User,
}

fn matches_any(list: &[String], v: &str) -> bool {
    list.iter().any(|x| x == "*" || x == v)
}

fn resource_matches(list: &[String], resource: &str, sub: &str) -> bool {
    list.iter().any(|r| {
        let (rr, rs) = r.split_once('/').unwrap_or((r.as_str(), ""));
        (rr == "*" || rr == resource) && (rs == sub || (rs == "*" && !sub.is_empty()))
            || (r == "*/*")
    })
}

impl Webhook {
    /// Whether the rules select this request (not yet the label selectors).
    pub fn rules_match(&self, a: &Attributes) -> bool {
        self.rules.iter().any(|r| {
            matches_any(&r.operations, a.operation)
                && matches_any(&r.groups, &a.group)
                && matches_any(&r.versions, &a.version)
                && resource_matches(&r.resources, &a.resource, &a.subresource)
                && match r.scope.as_str() {
                    "Cluster" => !a.namespaced,
                    "Namespaced" => a.namespaced,
                    _ => true,
                }
        })
    }

    /// Whether the namespace and object selectors select this request; `ns_labels` are the labels
    /// of the request's namespace (or of the Namespace object itself).
    pub fn selectors_match(&self, a: &Attributes, ns_object: Option<&Value>) -> bool {
        let select = |sel: &Value, obj: &Value| match LabelSelector::from_object(sel) {
            Ok(s) => s.matches_object(obj),
            Err(_) => false,
        };
        if !self.namespace_selector.is_null() {
            let is_namespace = a.group.is_empty() && a.resource == "namespaces";
            if a.namespaced || is_namespace {
                let ns = match (is_namespace, ns_object) {
                    (true, _) => a.object.as_ref().or(a.old_object.as_ref()),
                    (false, o) => o,
                };
                if !select(&self.namespace_selector, ns.unwrap_or(&Value::Null)) {
                    return false;
                }
            }
        }
        if !self.object_selector.is_null() {
            let any = [a.object.as_ref(), a.old_object.as_ref()]
                .into_iter()
                .flatten()
                .any(|o| select(&self.object_selector, o));
            if !any {
                return false;
            }
        }
        true
    }
}

fn user_info(u: &User) -> Value {
    let mut m = Map::new();
    m.insert("username".into(), json!(u.name));
    if let Some(uid) = &u.uid {
        m.insert("uid".into(), json!(uid));
    }
    m.insert("groups".into(), json!(u.groups));
    Value::Object(m)
}

/// The `AdmissionReview` a webhook is sent for `a`, with request uid `uid`.
pub fn review(a: &Attributes, uid: &str) -> Value {
    let kind = json!({"group": a.kind.0, "version": a.kind.1, "kind": a.kind.2});
    let resource = json!({"group": a.group, "version": a.version, "resource": a.resource});
    let mut r = Map::new();
    r.insert("uid".into(), json!(uid));
    r.insert("kind".into(), kind.clone());
    r.insert("resource".into(), resource.clone());
    if !a.subresource.is_empty() {
        r.insert("subResource".into(), json!(a.subresource));
    }
    r.insert("requestKind".into(), kind);
    r.insert("requestResource".into(), resource);
    if !a.subresource.is_empty() {
        r.insert("requestSubResource".into(), json!(a.subresource));
    }
    if !a.name.is_empty() {
        r.insert("name".into(), json!(a.name));
    }
    if !a.namespace.is_empty() {
        r.insert("namespace".into(), json!(a.namespace));
    }
    r.insert("operation".into(), json!(a.operation));
    r.insert("userInfo".into(), user_info(&a.user));
    r.insert("object".into(), a.object.clone().unwrap_or(Value::Null));
    r.insert(
        "oldObject".into(),
        a.old_object.clone().unwrap_or(Value::Null),
    );
    r.insert("dryRun".into(), json!(a.dry_run));
    r.insert("options".into(), a.options.clone());
    json!({"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": r})
}

/// `options` of a review: `CreateOptions`, `UpdateOptions` or `DeleteOptions` (with the fields of
/// the request's DeleteOptions body, `extra`).
pub fn options(
    operation: &str,
    dry_run: bool,
    field_manager: Option<&str>,
    field_validation: Option<&str>,
    extra: Option<&Value>,
) -> Value {
    let kind = match operation {
        "CREATE" => "CreateOptions",
        "UPDATE" => "UpdateOptions",
        _ => "DeleteOptions",
    };
    let mut m = Map::new();
    if let Some(Value::Object(e)) = extra {
        for (k, v) in e {
            if k != "kind" && k != "apiVersion" && k != "dryRun" {
                m.insert(k.clone(), v.clone());
            }
        }
    }
    m.insert("kind".into(), json!(kind));
    m.insert("apiVersion".into(), json!("meta.k8s.io/v1"));
    if dry_run {
        m.insert("dryRun".into(), json!(["All"]));
    }
    if kind != "DeleteOptions" {
        if let Some(f) = field_manager {
            m.insert("fieldManager".into(), json!(f));
        }
        if let Some(f) = field_validation {
            m.insert("fieldValidation".into(), json!(f));
        }
    }
    Value::Object(m)
}

/// A webhook's verdict as the real server turns a denial into an error.
fn denial(webhook: &str, status: &Value) -> ApiError {
    let denied_by = format!("admission webhook {webhook:?} denied the request");
    let mut code = status["code"].as_u64().unwrap_or(0) as u16;
    if code < 400 {
        code = 403;
    }
    let reason = status["reason"].as_str().unwrap_or_default();
    let message = match status["message"].as_str().filter(|m| !m.is_empty()) {
        Some(m) => format!("{denied_by}: {m}"),
        None if !reason.is_empty() => format!("{denied_by}: {reason}"),
        None => format!("{denied_by} without explanation"),
    };
    ApiError::new(code, reason, message).with_details(if status["details"].is_object() {
        status["details"].clone()
    } else {
        Value::Null
    })
}

/// Call one webhook; `Ok(())` allows, an error rejects (denial, or a failure under `Fail`).
pub async fn call(hook: &Webhook, a: &Attributes) -> Result<(), ApiError> {
    if a.dry_run && !matches!(hook.side_effects.as_str(), "None" | "NoneOnDryRun") {
        return Err(ApiError::bad_request(format!(
            "admission webhook {:?} does not support dry run",
            hook.name
        )));
    }
    match call_inner(hook, a).await {
        Ok(()) => Ok(()),
        Err(Verdict::Denied(e)) => Err(e),
        Err(Verdict::Failed(_)) if hook.ignore_failures => Ok(()),
        Err(Verdict::Failed(m)) => Err(ApiError::internal(format!(
            "failed calling webhook {:?}: {m}",
            hook.name
        ))),
    }
}

enum Verdict {
    Denied(ApiError),
    Failed(String),
}

async fn call_inner(hook: &Webhook, a: &Attributes) -> Result<(), Verdict> {
    let Some(url) = &hook.url else {
        return Err(Verdict::Failed(
            "kubesim supports only clientConfig.url webhooks".into(),
        ));
    };
    let client = hook
        .client
        .as_deref()
        .map(|(cert, key)| (cert.as_bytes(), key.as_bytes()));
    let endpoint = Endpoint::new(url, hook.ca_bundle.as_deref(), client)
        .map_err(|e| Verdict::Failed(format!("failed to call webhook: {e}")))?
        .with_query("timeout", &format!("{}s", hook.timeout.as_secs()));
    let uid = ids::uid();
    let body = serde_json::to_vec(&review(a, &uid)).unwrap_or_default();
    let (code, answer) = endpoint
        .post_json(body, hook.timeout)
        .await
        .map_err(|e| Verdict::Failed(format!("failed to call webhook: {e}")))?;
    if !(200..300).contains(&code) {
        return Err(Verdict::Failed(format!(
            "received invalid webhook response: the server responded with status code {code}"
        )));
    }
    let review: Value = serde_json::from_slice(&answer).map_err(|e| {
        Verdict::Failed(format!(
            "received invalid webhook response: cannot decode the AdmissionReview: {e}"
        ))
    })?;
    if review["kind"] != "AdmissionReview" || review["apiVersion"] != "admission.k8s.io/v1" {
        return Err(Verdict::Failed(format!(
            "received invalid webhook response: expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got {}, Kind={}",
            review["apiVersion"].as_str().unwrap_or_default(),
            review["kind"].as_str().unwrap_or_default()
        )));
    }
    let response = &review["response"];
    if response["uid"].as_str() != Some(uid.as_str()) {
        return Err(Verdict::Failed(format!(
            "received invalid webhook response: expected response.uid={uid:?}, got {:?}",
            response["uid"].as_str().unwrap_or_default()
        )));
    }
    match response["allowed"].as_bool() {
        Some(true) => Ok(()),
        Some(false) => Err(Verdict::Denied(denial(&hook.name, &response["status"]))),
        None => Err(Verdict::Failed(
            "received invalid webhook response: response.allowed is missing".into(),
        )),
    }
}

/// Call every webhook (concurrently, as the real server does); the first rejection wins.
pub async fn call_all(hooks: &[Webhook], a: &Attributes) -> Result<(), ApiError> {
    let mut set = tokio::task::JoinSet::new();
    for h in hooks {
        let (h, a) = (h.clone(), a.clone());
        set.spawn(async move { call(&h, &a).await });
    }
    let mut first = None;
    while let Some(r) = set.join_next().await {
        if let Ok(Err(e)) = r
            && first.is_none()
        {
            first = Some(e);
        }
    }
    first.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(op: &'static str, resource: &str, sub: &str) -> Attributes {
        Attributes {
            group: "apps".into(),
            version: "v1".into(),
            resource: resource.into(),
            subresource: sub.into(),
            kind: ("apps".into(), "v1".into(), "Deployment".into()),
            namespaced: true,
            namespace: "default".into(),
            name: "web".into(),
            operation: op,
            object: Some(json!({"metadata": {"labels": {"a": "1"}}})),
            old_object: None,
            dry_run: false,
            options: options(op, false, None, None, None),
            user: User::admin("alice", "t"),
        }
    }

    #[test]
    fn rules_select_operations_resources_and_subresources() {
        let cfg = json!({"webhooks": [{"name": "w", "sideEffects": "None",
            "rules": [{"operations": ["CREATE", "UPDATE"], "apiGroups": ["apps"], "apiVersions": ["*"], "resources": ["deployments", "*/scale"], "scope": "Namespaced"}],
            "objectSelector": {"matchLabels": {"a": "1"}},
            "clientConfig": {"url": "http://127.0.0.1:1/"}}]});
        let hooks = webhooks([&cfg]);
        let w = &hooks[0];
        assert!(w.rules_match(&attrs("CREATE", "deployments", "")));
        assert!(!w.rules_match(&attrs("DELETE", "deployments", "")));
        assert!(!w.rules_match(&attrs("UPDATE", "deployments", "status")));
        assert!(w.rules_match(&attrs("UPDATE", "deployments", "scale")));
        assert!(!w.rules_match(&attrs("CREATE", "statefulsets", "")));
        assert!(w.selectors_match(&attrs("CREATE", "deployments", ""), None));
        let mut other = attrs("CREATE", "deployments", "");
        other.object = Some(json!({"metadata": {}}));
        assert!(!w.selectors_match(&other, None));
    }

    #[test]
    fn denials_read_like_the_real_server() {
        let e = denial("v.example.com", &json!({"message": "no"}));
        assert_eq!(e.code, 403);
        assert_eq!(
            e.message,
            "admission webhook \"v.example.com\" denied the request: no"
        );
        let e = denial("v", &json!({"code": 422, "reason": "Invalid"}));
        assert_eq!(e.code, 422);
        assert_eq!(
            e.message,
            "admission webhook \"v\" denied the request: Invalid"
        );
        let e = denial("v", &Value::Null);
        assert!(e.message.ends_with("without explanation"));
    }

    #[test]
    fn reviews_carry_the_request() {
        let r = review(&attrs("CREATE", "deployments", ""), "u1");
        assert_eq!(r["request"]["uid"], "u1");
        assert_eq!(r["request"]["userInfo"]["username"], "alice");
        assert_eq!(r["request"]["oldObject"], Value::Null);
        assert_eq!(r["request"]["options"]["kind"], "CreateOptions");
        assert!(r["request"].get("subResource").is_none());
    }
}
