//! Exclusions: objects never written to Git by default (Secrets, derived and runtime objects,
//! well-known per-cluster objects), each skip with a rule id and a reason a person can read.

use super::object::split_api_version;
use serde_json::Value;
use std::collections::BTreeSet;

/// Which exclusion rules are switched off. By default every rule applies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExclusionPolicy {
    /// Rule ids (see [`RULES`] and the rule ids below) that do not apply.
    pub disabled: BTreeSet<String>,
}

impl ExclusionPolicy {
    /// The default policy with Secrets let through (`--allow-secrets`).
    pub fn allowing_secrets() -> Self {
        let mut policy = Self::default();
        policy.disabled.insert(SECRETS.to_string());
        policy
    }

    fn applies(&self, rule: &str) -> bool {
        !self.disabled.contains(rule)
    }
}

/// Why an object is not written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exclusion {
    /// The rule id; put it in `ExclusionPolicy::disabled` to let such objects through.
    pub rule: &'static str,
    pub reason: String,
}

/// Rule id of Secrets (the `--allow-secrets` switch).
pub const SECRETS: &str = "secrets";
/// Rule id of objects that a controller owns.
pub const CONTROLLER_OWNED: &str = "controller-owned";
/// Rule id of the RBAC policy the API server bootstraps and reconciles.
pub const BOOTSTRAP_RBAC: &str = "bootstrap-rbac";
/// Rule id of service-account token Secrets (generated, even when Secrets are allowed).
pub const SERVICE_ACCOUNT_TOKENS: &str = "service-account-tokens";

/// One row of the table: objects of (group, kind), optionally only with this name and in
/// this namespace (`None` = any).
pub struct Rule {
    pub id: &'static str,
    pub group: &'static str,
    pub kind: &'static str,
    pub name: Option<&'static str>,
    pub namespace: Option<&'static str>,
    pub reason: &'static str,
}

const fn kind(
    id: &'static str,
    group: &'static str,
    kind: &'static str,
    reason: &'static str,
) -> Rule {
    Rule {
        id,
        group,
        kind,
        name: None,
        namespace: None,
        reason,
    }
}

const fn named(
    id: &'static str,
    kind: &'static str,
    namespace: Option<&'static str>,
    name: &'static str,
    reason: &'static str,
) -> Rule {
    Rule {
        id,
        group: "",
        kind,
        name: Some(name),
        namespace,
        reason,
    }
}

/// The table. Order matters only for which reason is reported when two rules match.
pub const RULES: &[Rule] = &[
    kind(
        SECRETS,
        "",
        "Secret",
        "Secrets are not written unless allowed; use SealedSecrets or --allow-secrets",
    ),
    kind("events", "", "Event", "events are runtime records"),
    kind(
        "events",
        "events.k8s.io",
        "Event",
        "events are runtime records",
    ),
    kind(
        "endpoints",
        "",
        "Endpoints",
        "derived from a Service by the endpoints controller",
    ),
    kind(
        "endpoints",
        "discovery.k8s.io",
        "EndpointSlice",
        "derived from a Service by the endpointslice controller",
    ),
    kind(
        "leases",
        "coordination.k8s.io",
        "Lease",
        "leases are leader-election and heartbeat records",
    ),
    kind(
        "controller-revisions",
        "apps",
        "ControllerRevision",
        "history kept by a workload controller",
    ),
    named(
        "per-cluster",
        "ConfigMap",
        None,
        "kube-root-ca.crt",
        "published into every namespace by the cluster's root CA publisher",
    ),
    named(
        "per-cluster",
        "ConfigMap",
        Some("kube-system"),
        "extension-apiserver-authentication",
        "maintained by the API server",
    ),
    named(
        "per-cluster",
        "ConfigMap",
        Some("kube-public"),
        "cluster-info",
        "maintained by the cluster bootstrapper",
    ),
    named(
        "per-cluster",
        "ServiceAccount",
        None,
        "default",
        "created in every namespace by the service account controller",
    ),
    named(
        "per-cluster",
        "Namespace",
        None,
        "kube-system",
        "created by the API server",
    ),
    named(
        "per-cluster",
        "Namespace",
        None,
        "kube-public",
        "created by the API server",
    ),
    named(
        "per-cluster",
        "Namespace",
        None,
        "kube-node-lease",
        "created by the API server",
    ),
    named(
        "per-cluster",
        "Namespace",
        None,
        "default",
        "created by the API server",
    ),
    named(
        "per-cluster",
        "Service",
        Some("default"),
        "kubernetes",
        "the API server's own Service",
    ),
];

/// Why `obj` is not written under `policy`, or `None` when it is kept.
pub fn exclusion(obj: &Value, policy: &ExclusionPolicy) -> Option<Exclusion> {
    let group = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .map(|v| split_api_version(v).0)
        .unwrap_or_default();
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
    let name = obj.pointer("/metadata/name").and_then(Value::as_str);
    let namespace = obj.pointer("/metadata/namespace").and_then(Value::as_str);

    if group.is_empty()
        && kind == "Secret"
        && obj.get("type").and_then(Value::as_str) == Some("kubernetes.io/service-account-token")
        && policy.applies(SERVICE_ACCOUNT_TOKENS)
    {
        return Some(Exclusion {
            rule: SERVICE_ACCOUNT_TOKENS,
            reason: "service account token Secrets are generated by the cluster".to_string(),
        });
    }
    let matched = RULES.iter().find(|r| {
        r.group == group
            && r.kind == kind
            && r.name.is_none_or(|n| Some(n) == name)
            && r.namespace.is_none_or(|ns| Some(ns) == namespace)
            && policy.applies(r.id)
    });
    if let Some(rule) = matched {
        return Some(Exclusion {
            rule: rule.id,
            reason: rule.reason.to_string(),
        });
    }
    if let Some(owner) = controller_owner(obj)
        && policy.applies(CONTROLLER_OWNED)
    {
        return Some(Exclusion {
            rule: CONTROLLER_OWNED,
            reason: format!("owned by controller {owner}; it is derived, write its owner instead"),
        });
    }
    if obj
        .pointer("/metadata/labels/kubernetes.io~1bootstrapping")
        .and_then(Value::as_str)
        == Some("rbac-defaults")
        && policy.applies(BOOTSTRAP_RBAC)
    {
        return Some(Exclusion {
            rule: BOOTSTRAP_RBAC,
            reason: "default RBAC policy that the API server recreates on every start".to_string(),
        });
    }
    None
}

/// `Kind/name` of the owner reference marked `controller: true`, if any.
fn controller_owner(obj: &Value) -> Option<String> {
    let owners = obj.pointer("/metadata/ownerReferences")?.as_array()?;
    let owner = owners
        .iter()
        .find(|o| o.get("controller").and_then(Value::as_bool) == Some(true))?;
    let field = |k: &str| owner.get(k).and_then(Value::as_str).unwrap_or("?");
    Some(format!("{}/{}", field("kind"), field("name")))
}
