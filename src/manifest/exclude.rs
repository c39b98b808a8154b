//! Exclusions: objects never written to Git by default (Secrets, derived and runtime objects,
//! well-known per-cluster objects), each skip with a rule id and a reason a person can read.

use super::object::split_api_version;
use super::user_exclude::UserExclusions;
use serde_json::Value;
use std::collections::BTreeSet;

/// Which exclusion rules are switched off, and what a user excludes on top. By default every
/// built-in rule applies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExclusionPolicy {
    /// Rule ids (see [`RULES`] and the rule ids below) that do not apply.
    pub disabled: BTreeSet<String>,
    /// Objects and fields a user configured to leave out (rule id [`USER`]; the reason names
    /// the user's rule).
    pub user: UserExclusions,
    /// Secrets (namespace, name) that hold the agent's keys — a destination's age identity —
    /// never written, not even encrypted (rule id [`AGENT_KEYS`]).
    pub key_secrets: BTreeSet<(String, String)>,
}

impl ExclusionPolicy {
    /// The default policy with Secrets let through (`--allow-secrets`).
    pub fn allowing_secrets() -> Self {
        let mut policy = Self::default();
        policy.disabled.insert(SECRETS.to_string());
        policy
    }

    /// This policy with the exclusions of the rules that select an object added (`None`: as
    /// it is).
    pub fn with_rules(&self, rules: Option<&UserExclusions>) -> Self {
        let mut policy = self.clone();
        if let Some(rules) = rules {
            policy.user = UserExclusions::merged([&self.user, rules]);
        }
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

/// How the reason of a user's exclusion starts; the entry's id follows.
const USER_REASON: &str = "excluded by ";

impl Exclusion {
    /// The rule as metrics name it: the built-in rule id, or the user's exclusion entry.
    pub fn rule_name(&self) -> &str {
        match self.rule {
            USER => self.reason.strip_prefix(USER_REASON).unwrap_or(USER),
            id => id,
        }
    }
}

/// Rule id of Secrets (the `--allow-secrets` switch).
pub const SECRETS: &str = "secrets";
/// Rule id of objects that a controller owns.
pub const CONTROLLER_OWNED: &str = "controller-owned";
/// Rule id of the RBAC policy the API server bootstraps and reconciles.
pub const BOOTSTRAP_RBAC: &str = "bootstrap-rbac";
/// Rule id of service-account token Secrets (generated, even when Secrets are allowed).
pub const SERVICE_ACCOUNT_TOKENS: &str = "service-account-tokens";
/// Rule id of the objects a user's exclusions leave out; the reason names which one.
pub const USER: &str = "user";
/// Rule id of the Secrets holding the agent's keys (a destination's age identity).
pub const AGENT_KEYS: &str = "agent-keys";

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
        && let (Some(namespace), Some(name)) = (namespace, name)
        && policy
            .key_secrets
            .contains(&(namespace.to_string(), name.to_string()))
    {
        return Some(Exclusion {
            rule: AGENT_KEYS,
            reason: "holds the age identity of a destination; private keys never go to Git"
                .to_string(),
        });
    }
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
    policy.user.object_rule(obj).map(|rule| Exclusion {
        rule: USER,
        reason: format!("{USER_REASON}{}", rule.id),
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(api_version: &str, kind: &str, ns: Option<&str>, name: &str) -> Value {
        let mut meta = json!({"name": name});
        if let Some(ns) = ns {
            meta["namespace"] = json!(ns);
        }
        json!({"apiVersion": api_version, "kind": kind, "metadata": meta})
    }

    fn rule_of(obj: &Value, policy: &ExclusionPolicy) -> Option<&'static str> {
        exclusion(obj, policy).map(|e| e.rule)
    }

    #[test]
    fn a_destinations_age_identity_is_never_written_even_with_secrets_allowed() {
        let mut p = ExclusionPolicy::allowing_secrets();
        p.key_secrets
            .insert(("shop".to_string(), "sops-age".to_string()));
        let identity = object("v1", "Secret", Some("shop"), "sops-age");
        assert_eq!(rule_of(&identity, &p), Some(AGENT_KEYS));
        for near in [
            object("v1", "Secret", Some("other"), "sops-age"),
            object("v1", "Secret", Some("shop"), "db"),
            object("v1", "ConfigMap", Some("shop"), "sops-age"),
        ] {
            assert_eq!(rule_of(&near, &p), None, "{near}");
        }
    }

    /// Every built-in rule, each with an object it excludes and a near miss it lets through.
    #[test]
    fn every_built_in_rule_excludes_its_objects_and_only_those() {
        let p = ExclusionPolicy::default();
        let cases: Vec<(&str, Value, Option<&str>)> = vec![
            (
                "a Secret",
                object("v1", "Secret", Some("shop"), "db"),
                Some(SECRETS),
            ),
            (
                "a core Event",
                object("v1", "Event", Some("shop"), "e"),
                Some("events"),
            ),
            (
                "an events.k8s.io Event",
                object("events.k8s.io/v1", "Event", Some("shop"), "e"),
                Some("events"),
            ),
            (
                "Endpoints",
                object("v1", "Endpoints", Some("shop"), "web"),
                Some("endpoints"),
            ),
            (
                "an EndpointSlice",
                object(
                    "discovery.k8s.io/v1",
                    "EndpointSlice",
                    Some("shop"),
                    "web-x",
                ),
                Some("endpoints"),
            ),
            (
                "a Lease",
                object(
                    "coordination.k8s.io/v1",
                    "Lease",
                    Some("kube-node-lease"),
                    "n1",
                ),
                Some("leases"),
            ),
            (
                "a ControllerRevision",
                object("apps/v1", "ControllerRevision", Some("shop"), "web-1"),
                Some("controller-revisions"),
            ),
            (
                "kube-root-ca.crt in any namespace",
                object("v1", "ConfigMap", Some("shop"), "kube-root-ca.crt"),
                Some("per-cluster"),
            ),
            (
                "extension-apiserver-authentication in kube-system",
                object(
                    "v1",
                    "ConfigMap",
                    Some("kube-system"),
                    "extension-apiserver-authentication",
                ),
                Some("per-cluster"),
            ),
            (
                "a ConfigMap of that name elsewhere",
                object(
                    "v1",
                    "ConfigMap",
                    Some("shop"),
                    "extension-apiserver-authentication",
                ),
                None,
            ),
            (
                "cluster-info in kube-public",
                object("v1", "ConfigMap", Some("kube-public"), "cluster-info"),
                Some("per-cluster"),
            ),
            (
                "the default ServiceAccount",
                object("v1", "ServiceAccount", Some("shop"), "default"),
                Some("per-cluster"),
            ),
            (
                "another ServiceAccount",
                object("v1", "ServiceAccount", Some("shop"), "web"),
                None,
            ),
            (
                "Namespace kube-system",
                object("v1", "Namespace", None, "kube-system"),
                Some("per-cluster"),
            ),
            (
                "Namespace kube-public",
                object("v1", "Namespace", None, "kube-public"),
                Some("per-cluster"),
            ),
            (
                "Namespace kube-node-lease",
                object("v1", "Namespace", None, "kube-node-lease"),
                Some("per-cluster"),
            ),
            (
                "Namespace default",
                object("v1", "Namespace", None, "default"),
                Some("per-cluster"),
            ),
            (
                "a team's Namespace",
                object("v1", "Namespace", None, "shop"),
                None,
            ),
            (
                "the kubernetes Service in default",
                object("v1", "Service", Some("default"), "kubernetes"),
                Some("per-cluster"),
            ),
            (
                "a Service named kubernetes elsewhere",
                object("v1", "Service", Some("shop"), "kubernetes"),
                None,
            ),
            (
                "a ConfigMap",
                object("v1", "ConfigMap", Some("shop"), "settings"),
                None,
            ),
            (
                "a Deployment",
                object("apps/v1", "Deployment", Some("shop"), "web"),
                None,
            ),
        ];
        for (what, obj, want) in cases {
            assert_eq!(rule_of(&obj, &p), want, "{what}");
            if let Some(rule) = want {
                let e = exclusion(&obj, &p).unwrap_or_else(|| panic!("{what}"));
                assert!(!e.reason.is_empty(), "{what}: a reason");
                // Disabling the rule lets it through (where no other rule applies).
                let mut off = ExclusionPolicy::default();
                off.disabled.insert(rule.to_string());
                assert_eq!(rule_of(&obj, &off), None, "{what} with {rule} disabled");
            }
        }
    }

    /// Service-account tokens stay out even when Secrets are allowed; other Secrets then pass.
    #[test]
    fn service_account_tokens_stay_out_when_secrets_are_allowed() {
        let allowed = ExclusionPolicy::allowing_secrets();
        let mut token = object("v1", "Secret", Some("shop"), "web-token-x");
        token["type"] = json!("kubernetes.io/service-account-token");
        assert_eq!(rule_of(&token, &allowed), Some(SERVICE_ACCOUNT_TOKENS));
        assert_eq!(
            rule_of(&token, &ExclusionPolicy::default()),
            Some(SERVICE_ACCOUNT_TOKENS)
        );
        let mut opaque = object("v1", "Secret", Some("shop"), "db");
        opaque["type"] = json!("Opaque");
        assert_eq!(rule_of(&opaque, &allowed), None);
    }

    /// Objects a controller owns are derived (write the owner instead); an owner reference
    /// without `controller: true` is no reason to skip.
    #[test]
    fn controller_owned_objects_are_derived_and_other_owners_are_not() {
        let p = ExclusionPolicy::default();
        let mut pod = object("v1", "Pod", Some("shop"), "web-abc");
        pod["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1",
            "kind": "ReplicaSet", "name": "web-7d4", "uid": "u", "controller": true}]);
        let e = exclusion(&pod, &p).expect("excluded");
        assert_eq!(e.rule, CONTROLLER_OWNED);
        assert!(e.reason.contains("ReplicaSet/web-7d4"), "{}", e.reason);
        let mut cm = object("v1", "ConfigMap", Some("shop"), "settings");
        cm["metadata"]["ownerReferences"] = json!([{"apiVersion": "v1", "kind": "ConfigMap",
            "name": "parent", "uid": "u"}]);
        assert_eq!(rule_of(&cm, &p), None);
    }

    /// The default RBAC policy the API server recreates (`kubernetes.io/bootstrapping:
    /// rbac-defaults`) is not written; a user's ClusterRole is.
    #[test]
    fn bootstrap_rbac_is_not_written_and_a_users_role_is() {
        let p = ExclusionPolicy::default();
        let mut admin = object("rbac.authorization.k8s.io/v1", "ClusterRole", None, "admin");
        admin["metadata"]["labels"] = json!({"kubernetes.io/bootstrapping": "rbac-defaults"});
        assert_eq!(rule_of(&admin, &p), Some(BOOTSTRAP_RBAC));
        let mine = object(
            "rbac.authorization.k8s.io/v1",
            "ClusterRole",
            None,
            "reader",
        );
        assert_eq!(rule_of(&mine, &p), None);
    }
}
