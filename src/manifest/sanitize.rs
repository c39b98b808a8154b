//! Sanitize: remove what the cluster invented and keep what a person meant. A denylist in
//! readable tables (metadata, annotations and labels, per-kind runtime fields), never an allowlist.

use super::hash::HASH_ANNOTATION;
use serde_json::Value;

/// Metadata the API server or controllers fill in; never part of intent.
pub const RUNTIME_METADATA: &[&str] = &[
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
    "managedFields",
    "ownerReferences",
];

/// Annotations and labels dropped by exact key, with the reason.
pub const DROPPED_KEYS: &[(&str, &str)] = &[
    (
        "kubectl.kubernetes.io/last-applied-configuration",
        "client-side apply bookkeeping",
    ),
    (
        "argocd.argoproj.io/tracking-id",
        "Argo CD resource tracking",
    ),
    (
        "argocd.argoproj.io/installation-id",
        "Argo CD installation tracking",
    ),
    (HASH_ANNOTATION, "recomputed on every write"),
    (
        "deployment.kubernetes.io/revision",
        "set by the Deployment controller",
    ),
    (
        "kubernetes.io/metadata.name",
        "namespace label set by the API server",
    ),
    (
        "pv.kubernetes.io/bind-completed",
        "set by the volume binder",
    ),
    (
        "pv.kubernetes.io/bound-by-controller",
        "set by the volume binder",
    ),
    (
        "pv.kubernetes.io/provisioned-by",
        "set by the volume provisioner",
    ),
    ("volume.kubernetes.io/selected-node", "set by the scheduler"),
    (
        "volume.kubernetes.io/storage-provisioner",
        "set by the volume binder",
    ),
    (
        "volume.beta.kubernetes.io/storage-provisioner",
        "set by the volume binder",
    ),
    (
        "endpoints.kubernetes.io/last-change-trigger-time",
        "set by the endpoints controller",
    ),
    (
        "control-plane.alpha.kubernetes.io/leader",
        "leader-election record",
    ),
];

/// Annotations and labels dropped by prefix, with the reason.
pub const DROPPED_PREFIXES: &[(&str, &str)] = &[(
    "kustomize.toolkit.fluxcd.io/",
    "Flux kustomize-controller bookkeeping",
)];

/// When a runtime field is dropped.
#[derive(Clone, Copy, Debug)]
pub enum Drop {
    Always,
    /// Dropped unless its value is this string, or a list holding only this string
    /// (`clusterIP: None` makes a headless Service; it is intent).
    UnlessValue(&'static str),
    /// Dropped only when its value is this string, or a list holding only this string.
    IfValue(&'static str),
}

/// A field the cluster fills in for one kind: (group, kind, path, when, reason). The path is
/// dot-separated; `[*]` after a segment means every element of that list.
pub struct RuntimeField {
    pub group: &'static str,
    pub kind: &'static str,
    pub path: &'static str,
    pub drop: Drop,
    pub reason: &'static str,
}

const fn field(
    group: &'static str,
    kind: &'static str,
    path: &'static str,
    drop: Drop,
    reason: &'static str,
) -> RuntimeField {
    RuntimeField {
        group,
        kind,
        path,
        drop,
        reason,
    }
}

/// Per-kind runtime fields. Extend here; each entry says why the field is not intent.
pub const RUNTIME_FIELDS: &[RuntimeField] = &[
    field(
        "",
        "Service",
        "spec.clusterIP",
        Drop::UnlessValue("None"),
        "allocated by the API server",
    ),
    field(
        "",
        "Service",
        "spec.clusterIPs",
        Drop::UnlessValue("None"),
        "allocated by the API server",
    ),
    field(
        "",
        "Service",
        "spec.ipFamilies",
        Drop::Always,
        "chosen by the API server",
    ),
    field(
        "",
        "Service",
        "spec.ipFamilyPolicy",
        Drop::Always,
        "defaulted by the API server",
    ),
    field(
        "",
        "Service",
        "spec.healthCheckNodePort",
        Drop::Always,
        "allocated by the API server",
    ),
    field(
        "",
        "PersistentVolumeClaim",
        "spec.volumeName",
        Drop::Always,
        "set when the claim binds",
    ),
    field(
        "",
        "PersistentVolume",
        "spec.claimRef.uid",
        Drop::Always,
        "set when the volume binds",
    ),
    field(
        "",
        "PersistentVolume",
        "spec.claimRef.resourceVersion",
        Drop::Always,
        "set when the volume binds",
    ),
    field(
        "",
        "Pod",
        "spec.nodeName",
        Drop::Always,
        "set by the scheduler",
    ),
    field(
        "",
        "Namespace",
        "spec.finalizers",
        Drop::IfValue("kubernetes"),
        "added by the API server",
    ),
    field(
        "batch",
        "Job",
        "spec.selector",
        Drop::Always,
        "generated from the Job's uid",
    ),
    field(
        "batch",
        "Job",
        "spec.template.metadata.labels.controller-uid",
        Drop::Always,
        "generated from the Job's uid",
    ),
    field(
        "batch",
        "Job",
        "spec.template.metadata.labels.batch\\.kubernetes\\.io/controller-uid",
        Drop::Always,
        "generated from the Job's uid",
    ),
    field(
        "admissionregistration.k8s.io",
        "MutatingWebhookConfiguration",
        "webhooks[*].clientConfig.caBundle",
        Drop::Always,
        "injected by a CA injector",
    ),
    field(
        "admissionregistration.k8s.io",
        "ValidatingWebhookConfiguration",
        "webhooks[*].clientConfig.caBundle",
        Drop::Always,
        "injected by a CA injector",
    ),
    field(
        "apiextensions.k8s.io",
        "CustomResourceDefinition",
        "spec.conversion.webhook.clientConfig.caBundle",
        Drop::Always,
        "injected by a CA injector",
    ),
];

/// Sanitizes an object in place: status, runtime metadata, reconciler bookkeeping, per-kind
/// runtime fields and nested `creationTimestamp: null` go; everything else stays, including
/// unknown fields of custom resources and meaningful empty values such as `{}`.
/// Idempotent. Anything that is not a JSON object is left as it is.
pub fn sanitize(obj: &mut Value) {
    let Some(root) = obj.as_object_mut() else {
        return;
    };
    root.remove("status");
    let group = root
        .get("apiVersion")
        .and_then(Value::as_str)
        .map(|v| super::object::split_api_version(v).0.to_string())
        .unwrap_or_default();
    let kind = root
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();

    if let Some(Value::Object(metadata)) = root.get_mut("metadata") {
        for key in RUNTIME_METADATA {
            metadata.remove(*key);
        }
        for section in ["labels", "annotations"] {
            if let Some(Value::Object(entries)) = metadata.get_mut(section) {
                entries.retain(|k, _| dropped_key_reason(k).is_none());
            }
            if metadata.get(section).is_some_and(is_empty_or_null) {
                metadata.remove(section);
            }
        }
    }
    for field in RUNTIME_FIELDS
        .iter()
        .filter(|f| f.group == group && f.kind == kind)
    {
        remove_path(obj, &split_path(field.path), field.drop);
        // The top level itself is never removed, even if a field emptied it.
    }
    remove_null_creation_timestamps(obj);
}

/// Why an annotation or label key is dropped, if it is.
pub fn dropped_key_reason(key: &str) -> Option<&'static str> {
    DROPPED_KEYS
        .iter()
        .find(|(k, _)| *k == key)
        .or_else(|| DROPPED_PREFIXES.iter().find(|(p, _)| key.starts_with(p)))
        .map(|(_, reason)| *reason)
}

fn is_empty_or_null(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        _ => false,
    }
}

/// Splits `a.b[*].c\.d` into segments; `\.` escapes a dot inside a key.
fn split_path(path: &str) -> Vec<String> {
    let mut segments = Vec::new();
    let mut current = String::new();
    let mut chars = path.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'.') => {
                chars.next();
                current.push('.');
            }
            '.' => segments.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    segments.push(current);
    segments
}

/// Removes the field at `segments` when `drop` says so; a map or list that held nothing but
/// removed fields is removed too. Returns true when `value` itself is now empty because of it.
fn remove_path(value: &mut Value, segments: &[String], drop: Drop) -> bool {
    let Some((first, rest)) = segments.split_first() else {
        return false;
    };
    let (key, every) = match first.strip_suffix("[*]") {
        Some(key) => (key, true),
        None => (first.as_str(), false),
    };
    let Some(map) = value.as_object_mut() else {
        return false;
    };
    let emptied = if rest.is_empty() && !every {
        map.get(key).is_some_and(|v| should_drop(v, drop))
    } else {
        match map.get_mut(key) {
            Some(Value::Array(items)) if every => {
                let mut emptied = !items.is_empty();
                for item in items.iter_mut() {
                    emptied &= remove_path(item, rest, drop);
                }
                emptied
            }
            Some(child) if !every => remove_path(child, rest, drop),
            _ => false,
        }
    };
    if emptied {
        map.remove(key);
    }
    emptied && map.is_empty()
}

fn should_drop(value: &Value, drop: Drop) -> bool {
    let is = |wanted: &str| match value {
        Value::String(s) => s == wanted,
        Value::Array(items) => {
            !items.is_empty() && items.iter().all(|i| i.as_str() == Some(wanted))
        }
        _ => false,
    };
    match drop {
        Drop::Always => true,
        Drop::UnlessValue(keep) => !is(keep),
        Drop::IfValue(only) => is(only),
    }
}

/// Removes `creationTimestamp: null`, which Go clients write into embedded templates.
fn remove_null_creation_timestamps(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if map.get("creationTimestamp").is_some_and(Value::is_null) {
                map.remove("creationTimestamp");
            }
            map.values_mut().for_each(remove_null_creation_timestamps);
        }
        Value::Array(items) => items.iter_mut().for_each(remove_null_creation_timestamps),
        _ => {}
    }
}

/// Convenience for callers holding a borrowed object.
pub fn sanitized(obj: &Value) -> Value {
    let mut copy = obj.clone();
    sanitize(&mut copy);
    copy
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::yaml::parse_documents;
    use serde_json::json;

    /// A realistic live object: `kubectl get -o yaml` output from the copied real-world corpus
    /// (`tests/data/realworld/SOURCES.md`) or written here in the same shape.
    struct Case {
        name: &'static str,
        live: Value,
        /// JSON pointers that must be gone after sanitize.
        gone: &'static [&'static str],
        /// JSON pointers that must survive, with their values.
        kept: Vec<(&'static str, Value)>,
    }

    fn realworld(file: &str) -> Value {
        let path = format!("{}/tests/data/realworld/{file}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        parse_documents(&text, file).unwrap().remove(0)
    }

    fn cases() -> Vec<Case> {
        vec![
            Case {
                name: "Argo CD-applied Deployment (tracking id, last-applied, managedFields, revision)",
                live: realworld("live-deployment.yaml"),
                gone: &[
                    "/status",
                    "/metadata/managedFields",
                    "/metadata/generation",
                    "/metadata/creationTimestamp",
                    "/metadata/uid",
                    "/metadata/resourceVersion",
                    "/metadata/annotations/argocd.argoproj.io~1tracking-id",
                    "/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration",
                    "/metadata/annotations/deployment.kubernetes.io~1revision",
                    "/spec/template/metadata/creationTimestamp",
                ],
                kept: vec![
                    ("/metadata/annotations/iksm-version", json!("2.0")),
                    ("/spec/replicas", json!(4)),
                    ("/spec/template/metadata/labels/app", json!("guestbook-ui")),
                ],
            },
            Case {
                name: "headless Service keeps clusterIP: None",
                live: realworld("service1-raw.yaml"),
                gone: &["/status", "/metadata/selfLink", "/metadata/uid"],
                kept: vec![
                    ("/spec/clusterIP", json!("None")),
                    ("/spec/sessionAffinity", json!("None")),
                ],
            },
            Case {
                name: "LoadBalancer Service loses allocated addresses",
                live: realworld("health-svc-loadbalancer.yaml"),
                gone: &["/spec/clusterIP", "/status"],
                kept: vec![("/spec/type", json!("LoadBalancer"))],
            },
            Case {
                name: "bound PVC loses binder bookkeeping",
                live: realworld("health-pvc-bound.yaml"),
                gone: &[
                    "/spec/volumeName",
                    "/metadata/annotations/pv.kubernetes.io~1bind-completed",
                    "/metadata/annotations/volume.beta.kubernetes.io~1storage-provisioner",
                ],
                kept: vec![("/spec/accessModes", json!(["ReadWriteOnce"]))],
            },
            Case {
                name: "StatefulSet template and claim templates",
                live: realworld("health-statefulset.yaml"),
                gone: &["/spec/template/metadata/creationTimestamp", "/status"],
                kept: vec![("/spec/serviceName", json!("redis-master"))],
            },
            Case {
                name: "PersistentVolume loses claimRef binding ids, keeps the claim",
                live: realworld("pv1-raw.yaml"),
                gone: &[
                    "/spec/claimRef/uid",
                    "/spec/claimRef/resourceVersion",
                    "/status",
                ],
                kept: vec![("/spec/claimRef/name", json!("prom-prometheus-alertmanager"))],
            },
            Case {
                name: "ConfigMap keeps data, drops runtime metadata and empty maps",
                live: json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
                    "name": "settings", "namespace": "shop", "uid": "1", "resourceVersion": "9",
                    "creationTimestamp": "2024-01-01T00:00:00Z", "labels": {}, "annotations": null},
                    "data": {"enabled": "yes", "empty": ""}}),
                gone: &["/metadata/labels", "/metadata/annotations", "/metadata/uid"],
                kept: vec![("/data", json!({"enabled": "yes", "empty": ""}))],
            },
            Case {
                name: "ServiceAccount keeps image pull secrets",
                live: json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {
                    "name": "builder", "namespace": "ci", "uid": "u"},
                    "imagePullSecrets": [{"name": "registry"}]}),
                gone: &["/metadata/uid"],
                kept: vec![("/imagePullSecrets", json!([{"name": "registry"}]))],
            },
            Case {
                name: "Flux-applied NetworkPolicy: Flux labels go, `{}` rules stay",
                live: json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {
                    "name": "allow-egress", "namespace": "flux-system", "generation": 1,
                    "labels": {"app.kubernetes.io/instance": "flux-system",
                        "kustomize.toolkit.fluxcd.io/name": "flux-system",
                        "kustomize.toolkit.fluxcd.io/namespace": "flux-system"},
                    "annotations": {"kustomize.toolkit.fluxcd.io/ssa": "merge"}},
                    "spec": {"egress": [{}], "ingress": [{"from": [{"podSelector": {}}]}],
                        "podSelector": {}, "policyTypes": ["Ingress", "Egress"]}}),
                gone: &[
                    "/metadata/labels/kustomize.toolkit.fluxcd.io~1name",
                    "/metadata/labels/kustomize.toolkit.fluxcd.io~1namespace",
                    "/metadata/annotations",
                ],
                kept: vec![
                    (
                        "/metadata/labels/app.kubernetes.io~1instance",
                        json!("flux-system"),
                    ),
                    ("/spec/egress", json!([{}])),
                    ("/spec/podSelector", json!({})),
                    ("/spec/ingress/0/from/0/podSelector", json!({})),
                ],
            },
            Case {
                name: "custom resource keeps unknown fields; Argo keeps sync waves",
                live: {
                    let mut hr = realworld("flux-helmrelease-podinfo.yaml");
                    hr["metadata"]["annotations"] = json!({"argocd.argoproj.io/sync-wave": "2",
                        "argocd.argoproj.io/installation-id": "x"});
                    hr["spec"]["someFutureField"] = json!({"nested": [1, {}]});
                    hr["status"] = json!({"conditions": []});
                    hr
                },
                gone: &[
                    "/status",
                    "/metadata/annotations/argocd.argoproj.io~1installation-id",
                ],
                kept: vec![
                    (
                        "/metadata/annotations/argocd.argoproj.io~1sync-wave",
                        json!("2"),
                    ),
                    ("/spec/someFutureField", json!({"nested": [1, {}]})),
                    ("/spec/values/redis/enabled", json!(true)),
                ],
            },
            Case {
                name: "Namespace loses server finalizer and name label, keeps user labels",
                live: json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop",
                    "labels": {"kubernetes.io/metadata.name": "shop", "team": "a"}},
                    "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}),
                gone: &["/spec", "/metadata/labels/kubernetes.io~1metadata.name"],
                kept: vec![("/metadata/labels/team", json!("a"))],
            },
        ]
    }

    #[test]
    fn sanitize_table() {
        for case in cases() {
            let out = sanitized(&case.live);
            for pointer in case.gone {
                assert!(
                    out.pointer(pointer).is_none(),
                    "{}: {pointer} survived",
                    case.name
                );
            }
            for (pointer, want) in &case.kept {
                assert_eq!(out.pointer(pointer), Some(want), "{}: {pointer}", case.name);
            }
            assert_eq!(sanitized(&out), out, "{}: not idempotent", case.name);
        }
    }

    #[test]
    fn typed_list_items_are_objects_of_the_list_kind() {
        let list = realworld("list1-raw.json");
        let items = crate::manifest::pipeline::expand_list(list);
        assert!(!items.is_empty());
        for item in items {
            let out = sanitized(&item);
            assert_eq!(out["kind"], "Pod");
            assert!(out.pointer("/spec/nodeName").is_none() && out.get("status").is_none());
        }
    }

    fn arb_json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            "[a-z0-9:. ]{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map(
                    prop_oneof![
                        "[a-zA-Z]{1,6}".boxed(),
                        Just("creationTimestamp".to_string()).boxed(),
                        Just("status".to_string()).boxed(),
                        Just("clusterIP".to_string()).boxed(),
                    ],
                    inner,
                    0..5
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn sanitize_is_idempotent(
            kind in proptest::sample::select(vec!["Service", "Namespace", "Job", "ConfigMap", "Widget"]),
            spec in arb_json(),
            metadata in arb_json(),
        ) {
            let group = if kind == "Job" { "batch/v1" } else { "v1" };
            let obj = json!({"apiVersion": group, "kind": kind, "metadata": metadata, "spec": spec});
            let once = sanitized(&obj);
            proptest::prop_assert_eq!(sanitized(&once), once);
        }
    }
}
