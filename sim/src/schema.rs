//! What the simulator knows of the built-in types' structure: which lists are atomic, sets or maps
//! keyed by fields (server-side apply), their strategic-merge-patch keys, and each kind's zero object.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock};

use serde_json::{Value, json};

/// How server-side apply treats a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListType {
    /// Replaced as a whole, owned as one field.
    Atomic,
    /// A set of scalars; each value is owned (`v:"x"`).
    Set,
    /// Items identified by these key fields (`k:{"name":"x"}`).
    Map(Vec<String>),
}

/// How a strategic merge patch treats a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatchStrategy {
    Replace,
    /// Merge items with the same value of this key.
    MergeKey(&'static str),
    /// Merge scalar items as a set.
    MergePrimitive,
}

fn in_container(path: &[&str]) -> bool {
    path.iter()
        .any(|p| matches!(*p, "containers" | "initContainers" | "ephemeralContainers"))
}

/// What `builtin_schema.txt` says of one field: its shape and the type of its value or items.
#[derive(Debug, Clone, PartialEq, Eq)]
enum FieldShape {
    /// A struct (or a map of scalars) walked field by field.
    Struct,
    /// A map from names to structs of the target type.
    MapOf,
    Set,
    /// A list keyed by these fields.
    Keyed(Vec<&'static str>),
    AtomicMap,
    /// A list replaced as a whole, of structs of the target type.
    AtomicList,
    /// A `resource.Quantity`.
    Quantity,
    /// A map of quantities (`requests`, `limits`, `hard`, ...).
    QuantityMap,
}

#[derive(Debug, Default)]
struct BuiltinSchema {
    /// (apiVersion, kind) → root type.
    kinds: HashMap<(&'static str, &'static str), &'static str>,
    /// type → field → (shape, type of the value or items).
    fields: HashMap<&'static str, HashMap<&'static str, (FieldShape, Option<&'static str>)>>,
    atomic_structs: HashSet<&'static str>,
}

const OBJECT_META: &str = "apimachinery::pkg::apis::meta::v1::ObjectMeta";
/// The root of a custom resource: only its metadata is known.
const CUSTOM_ROOT: &str = "kubesim::CustomResource";

/// The list and map semantics of every built-in type of Kubernetes 1.33, generated from
/// k8s-openapi's merge strategies and the Go types' markers by
/// `sim/tests/tools/gen_builtin_schema.py` (see the file's header).
static SCHEMA: LazyLock<BuiltinSchema> = LazyLock::new(|| {
    let mut s = BuiltinSchema::default();
    for line in include_str!("builtin_schema.txt").lines() {
        let cols: Vec<&'static str> = line.split('\t').collect();
        match cols.as_slice() {
            ["K", api_version, kind, ty] => {
                s.kinds.insert((*api_version, *kind), *ty);
            }
            ["A", ty] => {
                s.atomic_structs.insert(*ty);
            }
            ["F", ty, field, shape, target] => {
                let shape = match *shape {
                    "struct" => FieldShape::Struct,
                    "mapof" => FieldShape::MapOf,
                    "set" => FieldShape::Set,
                    "atomicmap" => FieldShape::AtomicMap,
                    "quantity" => FieldShape::Quantity,
                    "atomiclist" => FieldShape::AtomicList,
                    "quantitymap" => FieldShape::QuantityMap,
                    keyed => FieldShape::Keyed(
                        keyed
                            .strip_prefix("map:")
                            .unwrap_or(keyed)
                            .split(',')
                            .collect(),
                    ),
                };
                let target = (*target != "-").then_some(*target);
                s.fields
                    .entry(*ty)
                    .or_default()
                    .insert(*field, (shape, target));
            }
            _ => {}
        }
    }
    s.fields
        .entry(CUSTOM_ROOT)
        .or_default()
        .insert("metadata", (FieldShape::Struct, Some(OBJECT_META)));
    s
});

/// Where a walk of an object stands in the schema: the shape of the value there and its type.
/// Anything the schema does not know is a struct of unknown type: walked field by field, its
/// lists atomic.
#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    shape: Option<FieldShape>,
    target: Option<&'static str>,
    /// Inside a custom resource with a structural schema: the CRD's `openAPIV3Schema` and the
    /// path to the schema of the value here.
    crd: Option<(Arc<Value>, Vec<String>)>,
}

impl Slot {
    /// The root of an object of a kind (`builtin` false: a custom resource, of which only the
    /// metadata is known).
    pub fn root(api_version: &str, kind: &str, builtin: bool) -> Slot {
        let ty = builtin
            .then(|| SCHEMA.kinds.get(&(api_version, kind)).copied())
            .flatten()
            .unwrap_or(CUSTOM_ROOT);
        Slot {
            shape: Some(FieldShape::Struct),
            target: Some(ty),
            crd: None,
        }
    }

    /// The root of a custom resource whose CRD has this `openAPIV3Schema` for its version: list
    /// and map types from its `x-kubernetes-list-type`, `x-kubernetes-list-map-keys` and
    /// `x-kubernetes-map-type`, `metadata` as for every object.
    pub fn custom(schema: Option<Arc<Value>>) -> Slot {
        match schema {
            Some(root) => Slot {
                shape: Some(FieldShape::Struct),
                target: None,
                crd: Some((root, vec![])),
            },
            None => Slot::root("", "", false),
        }
    }

    fn unknown() -> Slot {
        Slot {
            shape: None,
            target: None,
            crd: None,
        }
    }

    /// The CRD schema of the value here.
    fn crd_schema(&self) -> Option<&Value> {
        let (root, path) = self.crd.as_ref()?;
        path.iter().try_fold(&**root, |s, p| s.get(p.as_str()))
    }

    fn crd_child(&self, steps: &[&str]) -> Slot {
        let Some((root, path)) = &self.crd else {
            return Slot::unknown();
        };
        let mut path = path.clone();
        path.extend(steps.iter().map(|s| s.to_string()));
        Slot {
            shape: Some(FieldShape::Struct),
            target: None,
            crd: Some((root.clone(), path)),
        }
    }

    /// The value under `name` of the object here.
    pub fn field(&self, name: &str) -> Slot {
        if let Some((_, path)) = &self.crd {
            if path.is_empty() && name == "metadata" {
                return Slot::root("", "", false).field("metadata");
            }
            let Some(s) = self.crd_schema() else {
                return Slot::unknown();
            };
            return if s["properties"].get(name).is_some() {
                self.crd_child(&["properties", name])
            } else if s["additionalProperties"].is_object() {
                self.crd_child(&["additionalProperties"])
            } else {
                Slot::unknown()
            };
        }
        match (&self.shape, self.target) {
            (Some(FieldShape::Struct), Some(ty)) => SCHEMA
                .fields
                .get(ty)
                .and_then(|f| f.get(name))
                .map(|(shape, target)| Slot {
                    shape: Some(shape.clone()),
                    target: *target,
                    crd: None,
                })
                .unwrap_or_else(Slot::unknown),
            (Some(FieldShape::MapOf), target) => Slot {
                shape: Some(FieldShape::Struct),
                target,
                crd: None,
            },
            (Some(FieldShape::QuantityMap), _) => Slot {
                shape: Some(FieldShape::Quantity),
                target: None,
                crd: None,
            },
            _ => Slot::unknown(),
        }
    }

    /// An item of the list here.
    pub fn item(&self) -> Slot {
        if self.crd.is_some() {
            return self.crd_child(&["items"]);
        }
        Slot {
            shape: Some(FieldShape::Struct),
            target: self.target,
            crd: None,
        }
    }

    /// How server-side apply treats the list here.
    pub fn list_type(&self) -> ListType {
        if self.crd.is_some() {
            let s = self.crd_schema().unwrap_or(&Value::Null);
            return match s["x-kubernetes-list-type"].as_str() {
                Some("set") => ListType::Set,
                Some("map") => ListType::Map(
                    s["x-kubernetes-list-map-keys"]
                        .as_array()
                        .map(|ks| {
                            ks.iter()
                                .filter_map(|k| k.as_str().map(String::from))
                                .collect()
                        })
                        .unwrap_or_default(),
                ),
                _ => ListType::Atomic,
            };
        }
        match &self.shape {
            Some(FieldShape::Set) => ListType::Set,
            Some(FieldShape::Keyed(keys)) => {
                ListType::Map(keys.iter().map(|k| k.to_string()).collect())
            }
            _ => ListType::Atomic,
        }
    }

    /// Whether the map or struct here is atomic (owned and replaced as a whole), like every
    /// `metav1.LabelSelector`, a Service's `spec.selector` or an `ownerReferences` item.
    pub fn atomic(&self) -> bool {
        if self.crd.is_some() {
            return self
                .crd_schema()
                .is_some_and(|s| s["x-kubernetes-map-type"] == "atomic");
        }
        match (&self.shape, self.target) {
            (Some(FieldShape::AtomicMap), _) => true,
            (Some(FieldShape::Struct), Some(ty)) => SCHEMA.atomic_structs.contains(ty),
            _ => false,
        }
    }

    /// Whether the value here is a `resource.Quantity`.
    pub fn is_quantity(&self) -> bool {
        self.shape == Some(FieldShape::Quantity)
    }

    /// Whether the value here is a list whose items are objects of a known type.
    pub fn is_list(&self) -> bool {
        if self.crd.is_some() {
            return self.crd_schema().is_some_and(|s| s["type"] == "array");
        }
        matches!(
            self.shape,
            Some(FieldShape::Set | FieldShape::Keyed(_) | FieldShape::AtomicList)
        )
    }

    /// The slot at a path of field names from the root (list items skipped).
    pub fn at(mut self, path: &[&str]) -> Slot {
        for name in path {
            self = if self.is_list() {
                self.item().field(name)
            } else {
                self.field(name)
            };
        }
        self
    }
}

/// The strategic-merge-patch strategy of the list at `path`.
pub fn patch_strategy(path: &[&str]) -> PatchStrategy {
    let n = path.len();
    let Some(last) = path.last() else {
        return PatchStrategy::Replace;
    };
    let parent = if n >= 2 { path[n - 2] } else { "" };
    match *last {
        "finalizers" if parent == "metadata" => PatchStrategy::MergePrimitive,
        "ownerReferences" if parent == "metadata" => PatchStrategy::MergeKey("uid"),
        "containers" | "initContainers" | "ephemeralContainers" => PatchStrategy::MergeKey("name"),
        "env" | "imagePullSecrets" | "webhooks" => PatchStrategy::MergeKey("name"),
        "secrets" if n == 1 => PatchStrategy::MergeKey("name"),
        "volumes" if parent == "spec" => PatchStrategy::MergeKey("name"),
        "ports" if in_container(&path[..n - 1]) => PatchStrategy::MergeKey("containerPort"),
        "ports" if parent == "spec" && n == 2 => PatchStrategy::MergeKey("port"),
        "volumeMounts" => PatchStrategy::MergeKey("mountPath"),
        "volumeDevices" => PatchStrategy::MergeKey("devicePath"),
        "hostAliases" => PatchStrategy::MergeKey("ip"),
        "topologySpreadConstraints" => PatchStrategy::MergeKey("topologyKey"),
        "conditions" if parent == "status" => PatchStrategy::MergeKey("type"),
        _ => PatchStrategy::Replace,
    }
}

/// The object a Go client of the real server would see for an empty value of this kind: the
/// structs that are never absent. Ownership of a field created inside them does not include them.
pub fn zero_object(builtin: bool, kind: &str) -> Value {
    if !builtin {
        return json!({"metadata": {}});
    }
    let pod_template =
        json!({"metadata": {"creationTimestamp": null}, "spec": {"containers": null}});
    match kind {
        "Deployment" => {
            json!({"metadata": {}, "spec": {"template": pod_template, "strategy": {}}, "status": {}})
        }
        "StatefulSet" | "DaemonSet" => {
            json!({"metadata": {}, "spec": {"template": pod_template, "updateStrategy": {}}, "status": {}})
        }
        "ReplicaSet" | "Job" => {
            json!({"metadata": {}, "spec": {"template": pod_template}, "status": {}})
        }
        "CronJob" => {
            json!({"metadata": {}, "spec": {"jobTemplate": {"metadata": {"creationTimestamp": null}, "spec": {"template": pod_template}}}, "status": {}})
        }
        "Pod" => json!({"metadata": {}, "spec": {"containers": null}, "status": {}}),
        "Namespace" | "PersistentVolumeClaim" => json!({"metadata": {}, "spec": {}, "status": {}}),
        "Service" | "Ingress" => {
            json!({"metadata": {}, "spec": {}, "status": {"loadBalancer": {}}})
        }
        "NetworkPolicy" => json!({"metadata": {}, "spec": {"podSelector": {}}}),
        "RoleBinding" | "ClusterRoleBinding" => json!({"metadata": {}, "roleRef": {}}),
        "Lease" => json!({"metadata": {}, "spec": {}}),
        "HorizontalPodAutoscaler" => {
            json!({"metadata": {}, "spec": {"scaleTargetRef": {}}, "status": {}})
        }
        "ReplicationController" => json!({"metadata": {}, "spec": {}, "status": {}}),
        "PodTemplate" => json!({"metadata": {}, "template": pod_template}),
        "PodDisruptionBudget"
        | "ResourceQuota"
        | "PersistentVolume"
        | "Node"
        | "ValidatingAdmissionPolicy"
        | "CertificateSigningRequest"
        | "FlowSchema"
        | "PriorityLevelConfiguration"
        | "ServiceCIDR"
        | "APIService"
        | "VolumeAttachment" => json!({"metadata": {}, "spec": {}, "status": {}}),
        "LimitRange"
        | "IngressClass"
        | "ValidatingAdmissionPolicyBinding"
        | "CSIDriver"
        | "CSINode"
        | "IPAddress" => json!({"metadata": {}, "spec": {}}),
        "CustomResourceDefinition" => {
            json!({"metadata": {}, "spec": {"names": {}}, "status": {"acceptedNames": {}}})
        }
        _ => json!({"metadata": {}}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment() -> Slot {
        Slot::root("apps/v1", "Deployment", true)
    }

    #[test]
    fn container_ports_and_service_ports_have_different_keys() {
        assert_eq!(
            deployment()
                .at(&["spec", "template", "spec", "containers", "ports"])
                .list_type(),
            ListType::Map(vec!["containerPort".into(), "protocol".into()])
        );
        assert_eq!(
            Slot::root("v1", "Service", true)
                .at(&["spec", "ports"])
                .list_type(),
            ListType::Map(vec!["port".into(), "protocol".into()])
        );
        assert_eq!(
            Slot::root("networking.k8s.io/v1", "NetworkPolicy", true)
                .at(&["spec", "ingress", "ports"])
                .list_type(),
            ListType::Atomic
        );
        assert_eq!(
            patch_strategy(&["spec", "ports"]),
            PatchStrategy::MergeKey("port")
        );
        assert_eq!(
            patch_strategy(&["spec", "containers", "ports"]),
            PatchStrategy::MergeKey("containerPort")
        );
    }

    #[test]
    fn selectors_and_references_are_atomic_and_finalizers_a_set() {
        assert!(deployment().at(&["spec", "selector"]).atomic());
        assert!(
            Slot::root("v1", "Service", true)
                .at(&["spec", "selector"])
                .atomic()
        );
        assert!(
            !deployment()
                .at(&["spec", "template", "metadata", "labels"])
                .atomic()
        );
        assert!(
            deployment()
                .at(&["metadata", "ownerReferences"])
                .item()
                .atomic()
        );
        assert_eq!(
            deployment().at(&["metadata", "finalizers"]).list_type(),
            ListType::Set
        );
        assert_eq!(
            Slot::root("autoscaling/v2", "HorizontalPodAutoscaler", true)
                .at(&["status", "conditions"])
                .list_type(),
            ListType::Map(vec!["type".into()])
        );
    }

    #[test]
    fn custom_resources_have_atomic_lists_but_keyed_metadata() {
        let cr = Slot::root("example.com/v1", "Widget", false);
        assert_eq!(
            cr.clone().at(&["spec", "containers"]).list_type(),
            ListType::Atomic
        );
        assert_eq!(
            cr.at(&["metadata", "finalizers"]).list_type(),
            ListType::Set
        );
    }
}
