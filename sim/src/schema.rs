//! What the simulator knows of the built-in types' structure: which lists are atomic, sets or maps
//! keyed by fields (server-side apply), their strategic-merge-patch keys, and each kind's zero object.

use serde_json::{Value, json};

/// How server-side apply treats a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListType {
    /// Replaced as a whole, owned as one field.
    Atomic,
    /// A set of scalars; each value is owned (`v:"x"`).
    Set,
    /// Items identified by these key fields (`k:{"name":"x"}`).
    Map(Vec<&'static str>),
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

/// The list type of the list at `path` (field names from the root, list items skipped).
/// Custom resources get the metadata rules only; every other list of theirs is atomic.
pub fn list_type(builtin: bool, path: &[&str]) -> ListType {
    let n = path.len();
    let Some(last) = path.last() else {
        return ListType::Atomic;
    };
    let parent = if n >= 2 { path[n - 2] } else { "" };
    match (*last, parent) {
        ("finalizers", "metadata") => return ListType::Set,
        ("ownerReferences", "metadata") => return ListType::Map(vec!["uid"]),
        _ => {}
    }
    if !builtin {
        return ListType::Atomic;
    }
    match *last {
        "containers" | "initContainers" | "ephemeralContainers" => ListType::Map(vec!["name"]),
        "env" | "imagePullSecrets" | "webhooks" => ListType::Map(vec!["name"]),
        "volumes" if parent == "spec" => ListType::Map(vec!["name"]),
        "ports" if in_container(&path[..n - 1]) => ListType::Map(vec!["containerPort", "protocol"]),
        "ports" if parent == "spec" && n == 2 => ListType::Map(vec!["port", "protocol"]),
        "volumeMounts" => ListType::Map(vec!["mountPath"]),
        "volumeDevices" => ListType::Map(vec!["devicePath"]),
        "hostAliases" => ListType::Map(vec!["ip"]),
        "topologySpreadConstraints" => ListType::Map(vec!["topologyKey", "whenUnsatisfiable"]),
        "conditions" if parent == "status" => ListType::Map(vec!["type"]),
        _ => ListType::Atomic,
    }
}

/// Whether the map at `path` is atomic (owned and replaced as a whole), like every
/// `metav1.LabelSelector` and a Service's `spec.selector`.
pub fn atomic_map(builtin: bool, path: &[&str]) -> bool {
    builtin
        && matches!(
            path.last(),
            Some(
                &("selector"
                    | "podSelector"
                    | "namespaceSelector"
                    | "objectSelector"
                    | "labelSelector")
            )
        )
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
        "CustomResourceDefinition" => {
            json!({"metadata": {}, "spec": {"names": {}}, "status": {"acceptedNames": {}}})
        }
        _ => json!({"metadata": {}}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ports_and_service_ports_have_different_keys() {
        assert_eq!(
            list_type(true, &["spec", "template", "spec", "containers", "ports"]),
            ListType::Map(vec!["containerPort", "protocol"])
        );
        assert_eq!(
            list_type(true, &["spec", "ports"]),
            ListType::Map(vec!["port", "protocol"])
        );
        assert_eq!(
            list_type(true, &["spec", "ingress", "ports"]),
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
    fn custom_resources_have_atomic_lists_but_keyed_metadata() {
        assert_eq!(list_type(false, &["spec", "containers"]), ListType::Atomic);
        assert_eq!(list_type(false, &["metadata", "finalizers"]), ListType::Set);
    }
}
