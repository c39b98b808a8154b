//! Validation of incoming objects as the real server does it: type checks of built-in kinds (400),
//! names, labels, ConfigMap keys, Deployment selectors and Service ports (422 with causes). Pure.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::errors::Cause;
use crate::selectors::LabelSelector;

fn typed<T: DeserializeOwned>(obj: &Value) -> Result<(), String> {
    serde_json::from_value::<T>(obj.clone())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Decode a built-in object into its real type, as the server's decoder would. The error text is
/// what follows "cannot be handled as a Kind: ".
pub fn type_check(group: &str, kind: &str, obj: &Value) -> Result<(), String> {
    use k8s_openapi::api::{
        admissionregistration, apps, autoscaling, batch, certificates, coordination, core,
        discovery, events, flowcontrol, networking, node, policy, rbac, scheduling, storage,
    };
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions;
    use k8s_openapi::kube_aggregator::pkg::apis::apiregistration;
    match (group, kind) {
        ("", "ConfigMap") => typed::<core::v1::ConfigMap>(obj),
        ("", "Endpoints") => typed::<core::v1::Endpoints>(obj),
        ("", "Event") => typed::<core::v1::Event>(obj),
        ("", "Namespace") => typed::<core::v1::Namespace>(obj),
        ("", "PersistentVolumeClaim") => typed::<core::v1::PersistentVolumeClaim>(obj),
        ("", "Pod") => typed::<core::v1::Pod>(obj),
        ("", "Secret") => typed::<core::v1::Secret>(obj),
        ("", "ServiceAccount") => typed::<core::v1::ServiceAccount>(obj),
        ("", "Service") => typed::<core::v1::Service>(obj),
        ("apps", "DaemonSet") => typed::<apps::v1::DaemonSet>(obj),
        ("apps", "Deployment") => typed::<apps::v1::Deployment>(obj),
        ("apps", "ReplicaSet") => typed::<apps::v1::ReplicaSet>(obj),
        ("apps", "StatefulSet") => typed::<apps::v1::StatefulSet>(obj),
        ("batch", "CronJob") => typed::<batch::v1::CronJob>(obj),
        ("batch", "Job") => typed::<batch::v1::Job>(obj),
        ("coordination.k8s.io", "Lease") => typed::<coordination::v1::Lease>(obj),
        ("networking.k8s.io", "Ingress") => typed::<networking::v1::Ingress>(obj),
        ("networking.k8s.io", "NetworkPolicy") => typed::<networking::v1::NetworkPolicy>(obj),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => {
            typed::<rbac::v1::ClusterRoleBinding>(obj)
        }
        ("rbac.authorization.k8s.io", "ClusterRole") => typed::<rbac::v1::ClusterRole>(obj),
        ("rbac.authorization.k8s.io", "RoleBinding") => typed::<rbac::v1::RoleBinding>(obj),
        ("rbac.authorization.k8s.io", "Role") => typed::<rbac::v1::Role>(obj),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            typed::<apiextensions::v1::CustomResourceDefinition>(obj)
        }
        ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration") => {
            typed::<admissionregistration::v1::ValidatingWebhookConfiguration>(obj)
        }
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration") => {
            typed::<admissionregistration::v1::MutatingWebhookConfiguration>(obj)
        }
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy") => {
            typed::<admissionregistration::v1::ValidatingAdmissionPolicy>(obj)
        }
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding") => {
            typed::<admissionregistration::v1::ValidatingAdmissionPolicyBinding>(obj)
        }
        ("", "LimitRange") => typed::<core::v1::LimitRange>(obj),
        ("", "Node") => typed::<core::v1::Node>(obj),
        ("", "PersistentVolume") => typed::<core::v1::PersistentVolume>(obj),
        ("", "PodTemplate") => typed::<core::v1::PodTemplate>(obj),
        ("", "ReplicationController") => typed::<core::v1::ReplicationController>(obj),
        ("", "ResourceQuota") => typed::<core::v1::ResourceQuota>(obj),
        ("apiregistration.k8s.io", "APIService") => typed::<apiregistration::v1::APIService>(obj),
        ("apps", "ControllerRevision") => typed::<apps::v1::ControllerRevision>(obj),
        ("autoscaling", "HorizontalPodAutoscaler") => {
            typed::<autoscaling::v2::HorizontalPodAutoscaler>(obj)
        }
        ("certificates.k8s.io", "CertificateSigningRequest") => {
            typed::<certificates::v1::CertificateSigningRequest>(obj)
        }
        ("discovery.k8s.io", "EndpointSlice") => typed::<discovery::v1::EndpointSlice>(obj),
        ("events.k8s.io", "Event") => typed::<events::v1::Event>(obj),
        ("flowcontrol.apiserver.k8s.io", "FlowSchema") => typed::<flowcontrol::v1::FlowSchema>(obj),
        ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration") => {
            typed::<flowcontrol::v1::PriorityLevelConfiguration>(obj)
        }
        ("networking.k8s.io", "IngressClass") => typed::<networking::v1::IngressClass>(obj),
        ("networking.k8s.io", "IPAddress") => typed::<networking::v1::IPAddress>(obj),
        ("networking.k8s.io", "ServiceCIDR") => typed::<networking::v1::ServiceCIDR>(obj),
        ("node.k8s.io", "RuntimeClass") => typed::<node::v1::RuntimeClass>(obj),
        ("policy", "PodDisruptionBudget") => typed::<policy::v1::PodDisruptionBudget>(obj),
        ("scheduling.k8s.io", "PriorityClass") => typed::<scheduling::v1::PriorityClass>(obj),
        ("storage.k8s.io", "CSIDriver") => typed::<storage::v1::CSIDriver>(obj),
        ("storage.k8s.io", "CSINode") => typed::<storage::v1::CSINode>(obj),
        ("storage.k8s.io", "CSIStorageCapacity") => typed::<storage::v1::CSIStorageCapacity>(obj),
        ("storage.k8s.io", "StorageClass") => typed::<storage::v1::StorageClass>(obj),
        ("storage.k8s.io", "VolumeAttachment") => typed::<storage::v1::VolumeAttachment>(obj),
        _ => match obj.get("metadata") {
            Some(Value::Object(_)) | None => Ok(()),
            Some(_) => Err("metadata must be an object".into()),
        },
    }
}

const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1035_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";

fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

pub fn is_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_label)
}

fn is_qualified_name(s: &str) -> bool {
    let (prefix, name) = match s.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    if prefix.is_some_and(|p| !is_subdomain(p)) {
        return false;
    }
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn is_label_value(s: &str) -> bool {
    s.is_empty()
        || (s.len() <= 63
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.ends_with(|c: char| c.is_ascii_alphanumeric()))
}

/// Validate an object about to be stored; an empty list means valid.
pub fn validate(group: &str, kind: &str, obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let meta = &obj["metadata"];
    let name = meta["name"].as_str().unwrap_or_default();
    let name_value = meta["name"].clone();
    let (ok, msg) = match (group, kind) {
        ("", "Namespace") => (is_label(name), LABEL_MSG),
        ("", "Service") => (
            is_label(name) && name.starts_with(|c: char| c.is_ascii_lowercase()),
            DNS1035_MSG,
        ),
        ("rbac.authorization.k8s.io", _) => (
            !name.is_empty()
                && name != "."
                && name != ".."
                && !name.contains('/')
                && !name.contains('%'),
            "may not contain '/' or '%'",
        ),
        _ => (is_subdomain(name), SUBDOMAIN_MSG),
    };
    if name.is_empty() {
        causes.push(Cause::required(
            "metadata.name",
            "name or generateName is required",
        ));
    } else if !ok {
        causes.push(Cause::invalid("metadata.name", &name_value, msg));
    }
    if let Some(labels) = meta["labels"].as_object() {
        for (k, v) in labels {
            if !is_qualified_name(k) {
                causes.push(Cause::invalid("metadata.labels", &Value::String(k.clone()), "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"));
            }
            if !v.as_str().is_some_and(is_label_value) {
                causes.push(Cause::invalid("metadata.labels", v, "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"));
            }
        }
    }
    if let Some(annotations) = meta["annotations"].as_object() {
        for k in annotations.keys() {
            if !is_qualified_name(&k.to_lowercase()) {
                causes.push(Cause::invalid("metadata.annotations", &Value::String(k.clone()), "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"));
            }
        }
    }
    match (group, kind) {
        ("", "ConfigMap") | ("", "Secret") => {
            for field in ["data", "binaryData", "stringData"] {
                if let Some(m) = obj[field].as_object() {
                    for k in m.keys() {
                        let valid = !k.is_empty()
                            && k.len() <= 253
                            && k.chars()
                                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                            && k != "."
                            && k != "..";
                        if !valid {
                            causes.push(Cause::invalid(&format!("{field}[{k}]"), &Value::String(k.clone()), "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"));
                        }
                    }
                }
            }
            if kind == "ConfigMap"
                && let (Some(d), Some(b)) = (obj["data"].as_object(), obj["binaryData"].as_object())
            {
                for k in d.keys().filter(|k| b.contains_key(*k)) {
                    causes.push(Cause::invalid(
                        &format!("data[{k}]"),
                        &Value::String(k.clone()),
                        "duplicate of key present in binaryData",
                    ));
                }
            }
        }
        ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet") => {
            let spec = &obj["spec"];
            match spec.get("selector") {
                None | Some(Value::Null) => causes.push(Cause::required("spec.selector", "")),
                Some(sel) => match LabelSelector::from_object(sel) {
                    Ok(s) if s.is_empty() => causes.push(Cause::invalid(
                        "spec.selector",
                        sel,
                        "empty selector is invalid for deployment",
                    )),
                    Ok(s) => {
                        let labels = crate::selectors::labels_of(&spec["template"]);
                        if !s.matches(&labels) {
                            causes.push(Cause::invalid(
                                "spec.template.metadata.labels",
                                &spec["template"]["metadata"]["labels"],
                                "`selector` does not match template `labels`",
                            ));
                        }
                    }
                    Err(e) => causes.push(Cause::invalid("spec.selector", sel, &e)),
                },
            }
            if spec["replicas"].as_i64().is_some_and(|r| r < 0) {
                causes.push(Cause::invalid(
                    "spec.replicas",
                    &spec["replicas"],
                    "must be greater than or equal to 0",
                ));
            }
            validate_pod_spec("spec.template.spec", &spec["template"]["spec"], &mut causes);
        }
        ("batch", "Job") => validate_pod_spec(
            "spec.template.spec",
            &obj["spec"]["template"]["spec"],
            &mut causes,
        ),
        ("", "Pod") => validate_pod_spec("spec", &obj["spec"], &mut causes),
        ("", "Service") => {
            let spec = &obj["spec"];
            let headless_or_external =
                spec["type"] == "ExternalName" || spec["clusterIP"] == "None";
            let ports = spec["ports"].as_array();
            if !headless_or_external && ports.is_none_or(Vec::is_empty) {
                causes.push(Cause::required("spec.ports", ""));
            }
            for (i, p) in ports.into_iter().flatten().enumerate() {
                let port = p["port"].as_i64().unwrap_or(0);
                if !(1..=65535).contains(&port) {
                    causes.push(Cause::invalid(
                        &format!("spec.ports[{i}].port"),
                        &p["port"],
                        "must be between 1 and 65535, inclusive",
                    ));
                }
            }
            if let Some(t) = spec["type"].as_str() {
                let supported = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
                if !supported.contains(&t) {
                    causes.push(Cause::not_supported("spec.type", &spec["type"], &supported));
                }
            }
        }
        _ => {}
    }
    causes
}

fn validate_pod_spec(at: &str, spec: &Value, causes: &mut Vec<Cause>) {
    let containers = spec["containers"].as_array();
    if containers.is_none_or(Vec::is_empty) {
        causes.push(Cause::required(&format!("{at}.containers"), ""));
        return;
    }
    let mut seen = Vec::new();
    for (i, c) in containers.into_iter().flatten().enumerate() {
        let name = c["name"].as_str().unwrap_or_default();
        if name.is_empty() {
            causes.push(Cause::required(&format!("{at}.containers[{i}].name"), ""));
        } else if !is_label(name) {
            causes.push(Cause::invalid(
                &format!("{at}.containers[{i}].name"),
                &c["name"],
                LABEL_MSG,
            ));
        } else if seen.contains(&name) {
            causes.push(Cause::duplicate(
                &format!("{at}.containers[{i}].name"),
                &c["name"],
            ));
        }
        seen.push(name);
        if c["image"].as_str().is_none_or(str::is_empty) {
            causes.push(Cause::required(&format!("{at}.containers[{i}].image"), ""));
        }
    }
    if let Some(p) = spec["restartPolicy"].as_str() {
        let supported = ["Always", "OnFailure", "Never"];
        if !supported.contains(&p) {
            causes.push(Cause::not_supported(
                &format!("{at}.restartPolicy"),
                &spec["restartPolicy"],
                &supported,
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn configmap_data_must_be_strings() {
        let err = type_check(
            "",
            "ConfigMap",
            &json!({"metadata": {"name": "a"}, "data": {"enabled": true}}),
        )
        .unwrap_err();
        assert!(err.contains("expected a string"), "{err}");
        assert!(
            type_check(
                "",
                "ConfigMap",
                &json!({"metadata": {"name": "a"}, "data": {"enabled": "yes"}})
            )
            .is_ok()
        );
    }

    #[test]
    fn names_labels_and_keys_are_checked() {
        let causes = validate(
            "",
            "ConfigMap",
            &json!({"metadata": {"name": "Bad_Name", "labels": {"ok": "no way"}}, "data": {"a b": "x"}}),
        );
        let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(
            fields,
            vec!["metadata.name", "metadata.labels", "data[a b]"]
        );
        assert!(validate("", "ConfigMap", &json!({"metadata": {"name": "ok.name"}})).is_empty());
        assert_eq!(
            validate("", "Namespace", &json!({"metadata": {"name": "a.b"}}))[0].field,
            "metadata.name"
        );
    }

    #[test]
    fn a_deployment_selector_must_match_its_template() {
        let d = json!({"metadata": {"name": "web"}, "spec": {"selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "other"}}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}});
        let causes = validate("apps", "Deployment", &d);
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].field, "spec.template.metadata.labels");
        let mut no_containers = d.clone();
        no_containers["spec"]["template"]["spec"]["containers"] = json!([]);
        no_containers["spec"]["template"]["metadata"]["labels"]["app"] = json!("web");
        assert_eq!(
            validate("apps", "Deployment", &no_containers)[0].field,
            "spec.template.spec.containers"
        );
    }
}
