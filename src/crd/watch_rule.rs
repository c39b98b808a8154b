//! `WatchRule` (namespaced) and `ClusterWatchRule` (cluster-scoped): which objects go to a
//! GitDestination, described by the one `ResourceRule` type both kinds share.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Which objects in the WatchRule's own namespace are written to a GitDestination in the same
/// namespace.
// kube's printcolumn(...) entries repeat `type_ = "string"`, which this lint mistakes for
// duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, JsonSchema, PartialEq)]
#[kube(
    group = "configbutler.ai",
    version = "v1alpha1",
    kind = "WatchRule",
    namespaced,
    shortname = "wr",
    category = "gitops-reverser",
    status = "super::status::WatchRuleStatus",
    derive = "PartialEq",
    doc = "Selects objects in its own namespace and writes them to a GitDestination in the same \
           namespace.",
    printcolumn(
        name = "Destination",
        type_ = "string",
        json_path = ".spec.destinationRef.name"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.rules.all(r, !has(r.scope))",
        "message": "rules of a WatchRule must not set scope (it only watches its own namespace)"
    }
]))]
pub struct WatchRuleSpec {
    /// The GitDestination, in this namespace, that selected objects are written to.
    pub destination_ref: LocalDestinationRef,

    /// Only objects whose labels match; when omitted, every object the rules select.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_selector: Option<LabelSelector>,

    /// What to watch; an object is selected when any rule matches it. Rules here must not set
    /// `scope`: a WatchRule only sees namespaced objects in its own namespace.
    #[schemars(length(min = 1, max = 100))]
    pub rules: Vec<ResourceRule>,

    /// Objects and fields never written for the objects these rules select, on top of the
    /// built-in exclusions and the GitDestination's own `spec.exclusions` (same shape): objects
    /// by name pattern, label or annotation selector; fields by JSON pointer (per group and
    /// kind) or by the field managers that own them. They apply before hashing, writing and the
    /// comparison with Git; an object several rules select gets the exclusions of each.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclusions: Option<super::exclusions::Exclusions>,
}

/// Which cluster-scoped objects, and namespaced objects in selected namespaces, are written to
/// a GitDestination. The destination's GitRepoConfig must set `accessPolicy.allowClusterRules`.
// kube's printcolumn(...) entries repeat `type_ = "string"`, which this lint mistakes for
// duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, JsonSchema, PartialEq)]
#[kube(
    group = "configbutler.ai",
    version = "v1alpha1",
    kind = "ClusterWatchRule",
    shortname = "cwr",
    category = "gitops-reverser",
    status = "super::status::WatchRuleStatus",
    derive = "PartialEq",
    doc = "Selects cluster-scoped objects, and namespaced objects in selected namespaces, and \
           writes them to a GitDestination.",
    printcolumn(
        name = "Destination-Namespace",
        type_ = "string",
        json_path = ".spec.destinationRef.namespace"
    ),
    printcolumn(
        name = "Destination",
        type_ = "string",
        json_path = ".spec.destinationRef.name"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.rules.all(r, has(r.scope))",
        "message": "every rule of a ClusterWatchRule must set scope (Cluster or Namespaced)"
    }
]))]
pub struct ClusterWatchRuleSpec {
    /// The GitDestination that selected objects are written to.
    pub destination_ref: DestinationRef,

    /// For `Namespaced` rules: only objects in namespaces whose labels match. When omitted,
    /// namespaced rules match in every namespace. Ignored by `Cluster` rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,

    /// Only objects whose labels match; when omitted, every object the rules select.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_selector: Option<LabelSelector>,

    /// What to watch; an object is selected when any rule matches it. Every rule here must set
    /// `scope`.
    #[schemars(length(min = 1, max = 100))]
    pub rules: Vec<ResourceRule>,

    /// Objects and fields never written for the objects these rules select, on top of the
    /// built-in exclusions and the GitDestination's own `spec.exclusions` (same shape): objects
    /// by name pattern, label or annotation selector; fields by JSON pointer (per group and
    /// kind) or by the field managers that own them. They apply before hashing, writing and the
    /// comparison with Git; an object several rules select gets the exclusions of each.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclusions: Option<super::exclusions::Exclusions>,
}

/// A GitDestination in the same namespace as the referring WatchRule.
#[derive(Serialize, Deserialize, Clone, Debug, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LocalDestinationRef {
    /// Name of the GitDestination.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// A GitDestination by namespace and name.
#[derive(Serialize, Deserialize, Clone, Debug, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DestinationRef {
    /// Name of the GitDestination.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace of the GitDestination.
    #[schemars(length(min = 1, max = 63))]
    pub namespace: String,
}

/// One rule of a WatchRule or ClusterWatchRule, shaped like an RBAC or admission rule: it
/// matches an object when its group, version and resource are listed (or `*`).
#[derive(Serialize, Deserialize, Clone, Debug, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ResourceRule {
    /// API groups: `""` is the core group (ConfigMaps, Secrets, ...), `*` is every group.
    #[schemars(length(min = 1))]
    pub api_groups: Vec<String>,

    /// API versions; `*` (the default) is every version. The agent writes each object once,
    /// in its group's preferred version.
    #[serde(default = "all")]
    #[schemars(length(min = 1))]
    pub api_versions: Vec<String>,

    /// Resources (plural, lower-case, e.g. `deployments`); `*` is every resource of the
    /// listed groups. Subresources are not watched.
    #[schemars(length(min = 1))]
    pub resources: Vec<String>,

    /// Which changes are written: `CREATE`, `UPDATE`, `DELETE`, or `*` (the default) for all.
    #[serde(default = "all_operations")]
    #[schemars(length(min = 1))]
    pub operations: Vec<Operation>,

    /// `Cluster` for cluster-scoped resources, `Namespaced` for namespaced ones. Required in a
    /// ClusterWatchRule; must be omitted in a WatchRule (which only sees its own namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<RuleScope>,
}

/// A kind of change to an object.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, JsonSchema, PartialEq, Eq, Hash)]
pub enum Operation {
    /// The object was created.
    #[serde(rename = "CREATE")]
    Create,
    /// The object was changed.
    #[serde(rename = "UPDATE")]
    Update,
    /// The object was deleted.
    #[serde(rename = "DELETE")]
    Delete,
    /// Every operation.
    #[serde(rename = "*")]
    All,
}

// Whether a ClusterWatchRule rule matches cluster-scoped or namespaced resources. (A plain
// comment: a doc comment here would replace the description of the optional `scope` field.)
#[derive(Serialize, Deserialize, Clone, Copy, Debug, JsonSchema, PartialEq, Eq, Hash)]
pub enum RuleScope {
    /// Cluster-scoped resources (Namespaces, ClusterRoles, CRDs, ...).
    Cluster,
    /// Namespaced resources, in the namespaces picked by `namespaceSelector`.
    Namespaced,
}

impl ResourceRule {
    /// True when this rule's `operations` include `op` (directly or through `*`).
    pub fn covers_operation(&self, op: Operation) -> bool {
        self.operations
            .iter()
            .any(|o| *o == Operation::All || *o == op)
    }

    /// True when `group` is listed or `*` is.
    pub fn covers_group(&self, group: &str) -> bool {
        listed(&self.api_groups, group)
    }

    /// True when `version` is listed or `*` is.
    pub fn covers_version(&self, version: &str) -> bool {
        listed(&self.api_versions, version)
    }

    /// True when `resource` (plural) is listed or `*` is.
    pub fn covers_resource(&self, resource: &str) -> bool {
        listed(&self.resources, resource)
    }
}

fn listed(list: &[String], item: &str) -> bool {
    list.iter().any(|l| l == "*" || l == item)
}

fn all() -> Vec<String> {
    vec!["*".to_string()]
}

fn all_operations() -> Vec<Operation> {
    vec![Operation::All]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rule_defaults_cover_everything_listed() {
        let rule: ResourceRule =
            serde_json::from_value(json!({"apiGroups": ["apps"], "resources": ["deployments"]}))
                .unwrap();
        assert_eq!(rule.api_versions, vec!["*"]);
        assert_eq!(rule.operations, vec![Operation::All]);
        assert_eq!(rule.scope, None);
        for op in [Operation::Create, Operation::Update, Operation::Delete] {
            assert!(rule.covers_operation(op));
        }
        assert!(rule.covers_group("apps") && !rule.covers_group(""));
        assert!(rule.covers_version("v1"));
        assert!(rule.covers_resource("deployments") && !rule.covers_resource("statefulsets"));
    }

    #[test]
    fn explicit_operations_and_scope() {
        let rule: ResourceRule = serde_json::from_value(json!({
            "apiGroups": [""],
            "resources": ["*"],
            "operations": ["CREATE", "UPDATE"],
            "scope": "Namespaced"
        }))
        .unwrap();
        assert!(rule.covers_operation(Operation::Update));
        assert!(!rule.covers_operation(Operation::Delete));
        assert_eq!(rule.scope, Some(RuleScope::Namespaced));
        assert!(rule.covers_group("") && rule.covers_resource("configmaps"));
    }

    #[test]
    fn unknown_operation_is_rejected() {
        let err = serde_json::from_value::<ResourceRule>(json!({
            "apiGroups": [""], "resources": ["pods"], "operations": ["PATCH"]
        }));
        assert!(err.is_err());
    }

    #[test]
    fn watch_rule_minimal_spec() {
        let spec: WatchRuleSpec = serde_json::from_value(json!({
            "destinationRef": {"name": "prod"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"]}]
        }))
        .unwrap();
        assert_eq!(spec.destination_ref.name, "prod");
        assert_eq!(spec.object_selector, None);
        assert_eq!(spec.rules.len(), 1);
    }
}
