//! The catalogue of served resources: the built-in kinds and the ones CustomResourceDefinitions add,
//! with scope, kind, plural, short names, verbs and subresources. Pure data, no I/O.
//! Long because it lists every resource a Kubernetes 1.33 server serves.

use std::cmp::Ordering;
use std::sync::Arc;

use serde_json::Value;

/// Verbs of an ordinary resource.
pub const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
/// Verbs of namespaces (no deletecollection, as on a real server).
pub const NAMESPACE_VERBS: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];
/// Verbs of the `status` and `scale` subresources.
pub const SUBRESOURCE_VERBS: &[&str] = &["get", "patch", "update"];

/// Where a resource keeps what its `scale` subresource exposes (JSON paths like `.spec.replicas`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalePaths {
    pub spec_replicas: String,
    pub status_replicas: String,
    pub label_selector: Option<String>,
}

/// An extra column of `kubectl get` for a custom resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrinterColumn {
    pub name: String,
    pub type_: String,
    pub format: String,
    pub description: String,
    pub priority: i64,
    pub json_path: String,
}

/// One served resource (all its served versions).
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceInfo {
    pub group: String,
    /// Served versions, most preferred first.
    pub versions: Vec<String>,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub verbs: Vec<String>,
    pub status: bool,
    pub scale: Option<ScalePaths>,
    /// Served by a CustomResourceDefinition (name `<plural>.<group>`), not built in.
    pub crd: Option<String>,
    /// Whether `metadata.generation` is tracked.
    pub generation: bool,
    pub printer_columns: Vec<PrinterColumn>,
    /// A CRD's `openAPIV3Schema` per served version (what `/openapi/v3` serves for it).
    pub schemas: Vec<(String, Arc<Value>)>,
}

impl ResourceInfo {
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{version}", self.group)
        }
    }

    pub fn preferred_version(&self) -> &str {
        self.versions.first().map(String::as_str).unwrap_or("v1")
    }

    pub fn serves(&self, version: &str) -> bool {
        self.versions.iter().any(|v| v == version)
    }

    /// A CRD's `openAPIV3Schema` for one of its versions.
    pub fn schema(&self, version: &str) -> Option<Arc<Value>> {
        self.schemas
            .iter()
            .find(|(v, _)| v == version)
            .map(|(_, s)| s.clone())
    }

    pub fn has_verb(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == verb)
    }
}

struct Builtin {
    group: &'static str,
    version: &'static str,
    /// Another served version (converted, see `convert`).
    also: Option<&'static str>,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
    status: bool,
    scale: bool,
    all: bool,
    generation: bool,
}

const fn b(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
) -> Builtin {
    Builtin {
        group,
        version,
        also: None,
        kind,
        plural,
        namespaced,
        short,
        status: false,
        scale: false,
        all: false,
        generation: false,
    }
}

impl Builtin {
    const fn status(mut self) -> Self {
        self.status = true;
        self
    }
    const fn scale(mut self) -> Self {
        self.scale = true;
        self
    }
    const fn all(mut self) -> Self {
        self.all = true;
        self
    }
    const fn also(mut self, version: &'static str) -> Self {
        self.also = Some(version);
        self
    }
    const fn generation(mut self) -> Self {
        self.generation = true;
        self
    }
}

const BUILTINS: &[Builtin] = &[
    b("", "v1", "ConfigMap", "configmaps", true, &["cm"]),
    b("", "v1", "Endpoints", "endpoints", true, &["ep"]),
    b("", "v1", "Event", "events", true, &["ev"]),
    b("", "v1", "Namespace", "namespaces", false, &["ns"]).status(),
    b(
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        true,
        &["pvc"],
    )
    .status(),
    b("", "v1", "Pod", "pods", true, &["po"]).status().all(),
    b("", "v1", "Secret", "secrets", true, &[]),
    b("", "v1", "ServiceAccount", "serviceaccounts", true, &["sa"]),
    b("", "v1", "Service", "services", true, &["svc"])
        .status()
        .all(),
    b(
        "admissionregistration.k8s.io",
        "v1",
        "MutatingWebhookConfiguration",
        "mutatingwebhookconfigurations",
        false,
        &[],
    )
    .generation(),
    b(
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations",
        false,
        &[],
    )
    .generation(),
    b(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        false,
        &["crd", "crds"],
    )
    .status()
    .generation(),
    b("apps", "v1", "DaemonSet", "daemonsets", true, &["ds"])
        .status()
        .all()
        .generation(),
    b("apps", "v1", "Deployment", "deployments", true, &["deploy"])
        .status()
        .scale()
        .all()
        .generation(),
    b("apps", "v1", "ReplicaSet", "replicasets", true, &["rs"])
        .status()
        .scale()
        .all()
        .generation(),
    b("apps", "v1", "StatefulSet", "statefulsets", true, &["sts"])
        .status()
        .scale()
        .all()
        .generation(),
    b("batch", "v1", "CronJob", "cronjobs", true, &["cj"])
        .status()
        .all()
        .generation(),
    b("batch", "v1", "Job", "jobs", true, &[])
        .status()
        .all()
        .generation(),
    b("coordination.k8s.io", "v1", "Lease", "leases", true, &[]),
    b(
        "networking.k8s.io",
        "v1",
        "Ingress",
        "ingresses",
        true,
        &["ing"],
    )
    .status()
    .generation(),
    b(
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        "networkpolicies",
        true,
        &["netpol"],
    )
    .generation(),
    b(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        false,
        &[],
    ),
    b(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
        false,
        &[],
    ),
    b(
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
        true,
        &[],
    ),
    b(
        "rbac.authorization.k8s.io",
        "v1",
        "Role",
        "roles",
        true,
        &[],
    ),
    // The rest of the built-in resources a Kubernetes 1.33 server serves by default (GA and
    // default-on groups; create-only reviews, bindings and component statuses left out).
    b("", "v1", "LimitRange", "limitranges", true, &["limits"]),
    b("", "v1", "Node", "nodes", false, &["no"]).status(),
    b(
        "",
        "v1",
        "PersistentVolume",
        "persistentvolumes",
        false,
        &["pv"],
    )
    .status(),
    b("", "v1", "PodTemplate", "podtemplates", true, &[]),
    b(
        "",
        "v1",
        "ReplicationController",
        "replicationcontrollers",
        true,
        &["rc"],
    )
    .status()
    .scale()
    .all()
    .generation(),
    b(
        "",
        "v1",
        "ResourceQuota",
        "resourcequotas",
        true,
        &["quota"],
    )
    .status(),
    b(
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingAdmissionPolicy",
        "validatingadmissionpolicies",
        false,
        &[],
    )
    .status()
    .generation(),
    b(
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingAdmissionPolicyBinding",
        "validatingadmissionpolicybindings",
        false,
        &[],
    )
    .generation(),
    b(
        "apiregistration.k8s.io",
        "v1",
        "APIService",
        "apiservices",
        false,
        &[],
    )
    .status(),
    b(
        "apps",
        "v1",
        "ControllerRevision",
        "controllerrevisions",
        true,
        &[],
    ),
    b(
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        true,
        &["hpa"],
    )
    .status()
    .all()
    .generation()
    .also("v1"),
    b(
        "certificates.k8s.io",
        "v1",
        "CertificateSigningRequest",
        "certificatesigningrequests",
        false,
        &["csr"],
    )
    .status(),
    b(
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        true,
        &[],
    )
    .generation(),
    b("events.k8s.io", "v1", "Event", "events", true, &["ev"]),
    b(
        "flowcontrol.apiserver.k8s.io",
        "v1",
        "FlowSchema",
        "flowschemas",
        false,
        &[],
    )
    .status()
    .generation(),
    b(
        "flowcontrol.apiserver.k8s.io",
        "v1",
        "PriorityLevelConfiguration",
        "prioritylevelconfigurations",
        false,
        &[],
    )
    .status()
    .generation(),
    b(
        "networking.k8s.io",
        "v1",
        "IngressClass",
        "ingressclasses",
        false,
        &[],
    )
    .generation(),
    b(
        "networking.k8s.io",
        "v1",
        "IPAddress",
        "ipaddresses",
        false,
        &["ip"],
    ),
    b(
        "networking.k8s.io",
        "v1",
        "ServiceCIDR",
        "servicecidrs",
        false,
        &[],
    )
    .status(),
    b(
        "node.k8s.io",
        "v1",
        "RuntimeClass",
        "runtimeclasses",
        false,
        &[],
    ),
    b(
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        true,
        &["pdb"],
    )
    .status()
    .generation(),
    b(
        "scheduling.k8s.io",
        "v1",
        "PriorityClass",
        "priorityclasses",
        false,
        &["pc"],
    ),
    b(
        "storage.k8s.io",
        "v1",
        "CSIDriver",
        "csidrivers",
        false,
        &[],
    ),
    b("storage.k8s.io", "v1", "CSINode", "csinodes", false, &[]),
    b(
        "storage.k8s.io",
        "v1",
        "CSIStorageCapacity",
        "csistoragecapacities",
        true,
        &[],
    ),
    b(
        "storage.k8s.io",
        "v1",
        "StorageClass",
        "storageclasses",
        false,
        &["sc"],
    ),
    b(
        "storage.k8s.io",
        "v1",
        "VolumeAttachment",
        "volumeattachments",
        false,
        &[],
    )
    .status(),
];

/// Group order of `/apis` for the built-in groups (as a real server lists them, roughly).
const GROUP_ORDER: &[&str] = &[
    "apiregistration.k8s.io",
    "apps",
    "events.k8s.io",
    "autoscaling",
    "batch",
    "certificates.k8s.io",
    "networking.k8s.io",
    "policy",
    "rbac.authorization.k8s.io",
    "storage.k8s.io",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "scheduling.k8s.io",
    "coordination.k8s.io",
    "node.k8s.io",
    "discovery.k8s.io",
    "flowcontrol.apiserver.k8s.io",
];

/// Every resource the simulator serves right now.
#[derive(Debug, Clone)]
pub struct Catalogue {
    resources: Vec<ResourceInfo>,
}

impl Default for Catalogue {
    fn default() -> Self {
        Self::builtin()
    }
}

impl Catalogue {
    /// The built-in resources only.
    pub fn builtin() -> Self {
        let resources = BUILTINS
            .iter()
            .map(|r| ResourceInfo {
                group: r.group.into(),
                versions: std::iter::once(r.version)
                    .chain(r.also)
                    .map(String::from)
                    .collect(),
                kind: r.kind.into(),
                plural: r.plural.into(),
                singular: r.kind.to_lowercase(),
                namespaced: r.namespaced,
                short_names: r.short.iter().map(|s| s.to_string()).collect(),
                categories: if r.all { vec!["all".into()] } else { vec![] },
                verbs: if r.plural == "namespaces" {
                    NAMESPACE_VERBS
                } else {
                    ALL_VERBS
                }
                .iter()
                .map(|s| s.to_string())
                .collect(),
                status: r.status,
                scale: r.scale.then(|| ScalePaths {
                    spec_replicas: ".spec.replicas".into(),
                    status_replicas: ".status.replicas".into(),
                    label_selector: Some(".spec.selector".into()),
                }),
                crd: None,
                schemas: vec![],
                generation: r.generation,
                printer_columns: vec![],
            })
            .collect();
        Catalogue { resources }
    }

    pub fn resources(&self) -> &[ResourceInfo] {
        &self.resources
    }

    /// The resource served at `group/version` under `plural`.
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceInfo> {
        self.resources
            .iter()
            .find(|r| r.group == group && r.plural == plural && r.serves(version))
    }

    /// The resource of `group` with this plural, whatever the version.
    pub fn by_plural(&self, group: &str, plural: &str) -> Option<&ResourceInfo> {
        self.resources
            .iter()
            .find(|r| r.group == group && r.plural == plural)
    }

    pub fn by_kind(&self, group: &str, kind: &str) -> Option<&ResourceInfo> {
        self.resources
            .iter()
            .find(|r| r.group == group && r.kind == kind)
    }

    /// Whether `group/version` is served at all.
    pub fn serves_group_version(&self, group: &str, version: &str) -> bool {
        self.resources
            .iter()
            .any(|r| r.group == group && r.serves(version))
    }

    /// The resources served at one group-version, in plural order.
    pub fn in_group_version(&self, group: &str, version: &str) -> Vec<&ResourceInfo> {
        let mut list: Vec<&ResourceInfo> = self
            .resources
            .iter()
            .filter(|r| r.group == group && r.serves(version))
            .collect();
        list.sort_by(|a, b| a.plural.cmp(&b.plural));
        list
    }

    /// Named groups (not the core group) in `/apis` order, each with its versions, most preferred first.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut names: Vec<String> = Vec::new();
        for g in GROUP_ORDER {
            if self.resources.iter().any(|r| r.group == *g) {
                names.push(g.to_string());
            }
        }
        let mut custom: Vec<String> = self
            .resources
            .iter()
            .filter(|r| !r.group.is_empty() && !GROUP_ORDER.contains(&r.group.as_str()))
            .map(|r| r.group.clone())
            .collect();
        custom.sort();
        custom.dedup();
        names.extend(custom);
        names
            .into_iter()
            .map(|g| {
                let mut versions: Vec<String> = self
                    .resources
                    .iter()
                    .filter(|r| r.group == g)
                    .flat_map(|r| r.versions.iter().cloned())
                    .collect();
                versions.sort_by(|a, b| compare_versions(a, b));
                versions.dedup();
                (g, versions)
            })
            .collect()
    }

    /// Start serving (or re-serve) what a CustomResourceDefinition declares.
    pub fn add_crd(&mut self, info: ResourceInfo) {
        self.resources
            .retain(|r| !(r.group == info.group && r.plural == info.plural));
        self.resources.push(info);
    }

    /// Stop serving a CustomResourceDefinition's resource.
    pub fn remove_crd(&mut self, group: &str, plural: &str) -> Option<ResourceInfo> {
        let at = self
            .resources
            .iter()
            .position(|r| r.group == group && r.plural == plural && r.crd.is_some())?;
        Some(self.resources.remove(at))
    }
}

/// Kubernetes version priority: GA before beta before alpha, higher numbers first, then other
/// strings alphabetically. `Ordering::Less` means "preferred".
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    fn parse(v: &str) -> Option<(u64, u8, u64)> {
        let rest = v.strip_prefix('v')?;
        let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        let major: u64 = digits.parse().ok()?;
        let tail = &rest[digits.len()..];
        if tail.is_empty() {
            return Some((major, 2, 0));
        }
        let (stage, num) = if let Some(n) = tail.strip_prefix("beta") {
            (1, n)
        } else if let Some(n) = tail.strip_prefix("alpha") {
            (0, n)
        } else {
            return None;
        };
        let minor: u64 = num.parse().ok()?;
        Some((major, stage, minor))
    }
    match (parse(a), parse(b)) {
        (Some((ma, sa, na)), Some((mb, sb, nb))) => sb.cmp(&sa).then(mb.cmp(&ma)).then(nb.cmp(&na)),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

/// Why a CustomResourceDefinition cannot be served.
#[derive(Debug, Clone, PartialEq)]
pub struct CrdProblem {
    pub field: String,
    pub message: String,
    pub value: Value,
}

fn problem(field: &str, value: &Value, message: &str) -> CrdProblem {
    CrdProblem {
        field: field.into(),
        message: message.into(),
        value: value.clone(),
    }
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

/// What a CustomResourceDefinition object serves, or the problems that stop it being served.
pub fn resource_from_crd(crd: &Value) -> Result<ResourceInfo, Vec<CrdProblem>> {
    let spec = &crd["spec"];
    let mut problems = Vec::new();
    let group = spec["group"].as_str().unwrap_or_default().to_string();
    let names = &spec["names"];
    let plural = names["plural"].as_str().unwrap_or_default().to_string();
    let kind = names["kind"].as_str().unwrap_or_default().to_string();
    let name = crd["metadata"]["name"].as_str().unwrap_or_default();
    if group.is_empty() {
        problems.push(problem("spec.group", &spec["group"], "Required value"));
    }
    if plural.is_empty() {
        problems.push(problem(
            "spec.names.plural",
            &names["plural"],
            "Required value",
        ));
    }
    if kind.is_empty() {
        problems.push(problem("spec.names.kind", &names["kind"], "Required value"));
    }
    if !group.is_empty() && !plural.is_empty() && name != format!("{plural}.{group}") {
        problems.push(problem(
            "metadata.name",
            &crd["metadata"]["name"],
            &format!("must be spec.names.plural+\".\"+spec.group ({plural}.{group})"),
        ));
    }
    let namespaced = match spec["scope"].as_str() {
        Some("Namespaced") => true,
        Some("Cluster") => false,
        _ => {
            problems.push(problem(
                "spec.scope",
                &spec["scope"],
                "Unsupported value: supported values: \"Cluster\", \"Namespaced\"",
            ));
            true
        }
    };
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    if versions.is_empty() {
        problems.push(problem(
            "spec.versions",
            &spec["versions"],
            "Required value: must have exactly one version marked as storage version",
        ));
    }
    let storage_count = versions
        .iter()
        .filter(|v| v["storage"].as_bool() == Some(true))
        .count();
    if !versions.is_empty() && storage_count != 1 {
        problems.push(problem(
            "spec.versions",
            &spec["versions"],
            "must have exactly one version marked as storage version",
        ));
    }
    let mut served: Vec<String> = versions
        .iter()
        .filter(|v| v["served"].as_bool() == Some(true))
        .filter_map(|v| v["name"].as_str().map(String::from))
        .collect();
    served.sort_by(|a, b| compare_versions(a, b));
    // Subresources and columns of the preferred served version (or the storage version).
    let chosen = versions
        .iter()
        .find(|v| v["name"].as_str() == served.first().map(String::as_str))
        .or_else(|| {
            versions
                .iter()
                .find(|v| v["storage"].as_bool() == Some(true))
        })
        .cloned()
        .unwrap_or(Value::Null);
    let subresources = &chosen["subresources"];
    let scale = subresources
        .get("scale")
        .filter(|s| s.is_object())
        .map(|s| ScalePaths {
            spec_replicas: s["specReplicasPath"]
                .as_str()
                .unwrap_or(".spec.replicas")
                .into(),
            status_replicas: s["statusReplicasPath"]
                .as_str()
                .unwrap_or(".status.replicas")
                .into(),
            label_selector: s["labelSelectorPath"].as_str().map(String::from),
        });
    let printer_columns = chosen["additionalPrinterColumns"]
        .as_array()
        .map(|cols| {
            cols.iter()
                .filter_map(|c| {
                    Some(PrinterColumn {
                        name: c["name"].as_str()?.into(),
                        type_: c["type"].as_str().unwrap_or("string").into(),
                        format: c["format"].as_str().unwrap_or_default().into(),
                        description: c["description"].as_str().unwrap_or_default().into(),
                        priority: c["priority"].as_i64().unwrap_or(0),
                        json_path: c["jsonPath"].as_str()?.into(),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(ResourceInfo {
        singular: names["singular"]
            .as_str()
            .map(String::from)
            .unwrap_or_else(|| kind.to_lowercase()),
        short_names: strings(&names["shortNames"]),
        categories: strings(&names["categories"]),
        verbs: ALL_VERBS.iter().map(|s| s.to_string()).collect(),
        status: subresources.get("status").is_some_and(|s| s.is_object()),
        scale,
        crd: Some(name.to_string()),
        schemas: versions
            .iter()
            .filter(|v| v["served"].as_bool() == Some(true))
            .filter_map(|v| {
                let schema = v["schema"]["openAPIV3Schema"].clone();
                Some((v["name"].as_str()?.to_string(), schema))
                    .filter(|(_, s)| s.is_object())
                    .map(|(n, s)| (n, Arc::new(s)))
            })
            .collect(),
        generation: true,
        printer_columns,
        group,
        versions: served,
        kind,
        plural,
        namespaced,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn versions_sort_like_kubernetes() {
        let mut v = vec![
            "v1alpha1", "foo", "v2beta1", "v1", "v1beta2", "v2", "v10", "v1beta1",
        ];
        v.sort_by(|a, b| compare_versions(a, b));
        assert_eq!(
            v,
            vec![
                "v10", "v2", "v1", "v2beta1", "v1beta2", "v1beta1", "v1alpha1", "foo"
            ]
        );
    }

    #[test]
    fn builtins_have_the_expected_shape() {
        let c = Catalogue::builtin();
        let d = c.lookup("apps", "v1", "deployments").unwrap();
        assert!(d.namespaced && d.status && d.scale.is_some());
        assert_eq!(d.short_names, vec!["deploy"]);
        assert!(
            !c.lookup("", "v1", "namespaces")
                .unwrap()
                .has_verb("deletecollection")
        );
        assert!(
            !c.lookup("rbac.authorization.k8s.io", "v1", "clusterroles")
                .unwrap()
                .namespaced
        );
        let groups: Vec<String> = c.groups().into_iter().map(|(g, _)| g).collect();
        assert_eq!(groups[0], "apiregistration.k8s.io");
        assert!(groups.iter().position(|g| g == "apps") < groups.iter().position(|g| g == "batch"));
    }

    #[test]
    fn a_crd_serves_its_served_versions() {
        let crd = json!({
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": "Cluster",
                "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"]},
                "versions": [
                    {"name": "v1beta1", "served": true, "storage": false},
                    {"name": "v1", "served": true, "storage": true, "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.size", "statusReplicasPath": ".status.size"}}},
                    {"name": "v1alpha1", "served": false, "storage": false}
                ]}
        });
        let r = resource_from_crd(&crd).unwrap();
        assert_eq!(r.versions, vec!["v1", "v1beta1"]);
        assert!(!r.namespaced && r.status);
        assert_eq!(r.scale.unwrap().spec_replicas, ".spec.size");
        let mut bad = crd.clone();
        bad["metadata"]["name"] = json!("nope");
        assert_eq!(
            resource_from_crd(&bad).unwrap_err()[0].field,
            "metadata.name"
        );
    }
}
