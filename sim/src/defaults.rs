//! Defaulting, as the real server fills in fields: the decode-time defaults of built-in kinds
//! (owned by an Update manager that sent the object) and server allocations (owned by nobody).

use serde_json::{Map, Value, json};

/// State for values the server allocates (cluster IPs, node ports).
#[derive(Debug, Clone)]
pub struct Allocator {
    next_ip: u32,
    next_node_port: u32,
}

impl Default for Allocator {
    fn default() -> Self {
        Allocator {
            next_ip: 10,
            next_node_port: 30000,
        }
    }
}

impl Allocator {
    fn cluster_ip(&mut self) -> String {
        let n = self.next_ip;
        self.next_ip += 1;
        format!("10.96.{}.{}", (n >> 8) & 0xff, n & 0xff)
    }

    fn node_port(&mut self) -> u32 {
        let p = self.next_node_port;
        self.next_node_port = if p >= 32767 { 30000 } else { p + 1 };
        p
    }
}

fn obj(v: &mut Value) -> Option<&mut Map<String, Value>> {
    v.as_object_mut()
}

fn set_default(m: &mut Map<String, Value>, key: &str, value: Value) {
    if m.get(key).is_none_or(Value::is_null) {
        m.insert(key.into(), value);
    }
}

/// `Always` for `:latest` or untagged images, `IfNotPresent` otherwise.
fn pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

fn default_container(c: &mut Value) {
    let Some(c) = obj(c) else { return };
    let image = c
        .get("image")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if !image.is_empty() {
        set_default(c, "imagePullPolicy", json!(pull_policy(&image)));
    }
    set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
    set_default(c, "terminationMessagePolicy", json!("File"));
    set_default(c, "resources", json!({}));
    if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports.iter_mut().filter_map(obj) {
            set_default(p, "protocol", json!("TCP"));
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(probe).and_then(obj) {
            set_default(p, "timeoutSeconds", json!(1));
            set_default(p, "periodSeconds", json!(10));
            set_default(p, "successThreshold", json!(1));
            set_default(p, "failureThreshold", json!(3));
            default_http_get(p);
        }
    }
    if let Some(lc) = c.get_mut("lifecycle").and_then(obj) {
        for hook in ["postStart", "preStop"] {
            if let Some(h) = lc.get_mut(hook).and_then(obj) {
                default_http_get(h);
            }
        }
    }
    // `SetDefaults_ObjectFieldSelector`: a fieldRef without apiVersion means v1.
    if let Some(env) = c.get_mut("env").and_then(Value::as_array_mut) {
        for e in env.iter_mut().filter_map(obj) {
            if let Some(r) = e
                .get_mut("valueFrom")
                .and_then(obj)
                .and_then(|v| v.get_mut("fieldRef"))
                .and_then(obj)
            {
                set_default(r, "apiVersion", json!("v1"));
            }
        }
    }
}

/// `SetDefaults_HTTPGetAction`: path `/`, scheme HTTP.
fn default_http_get(handler: &mut Map<String, Value>) {
    if let Some(h) = handler.get_mut("httpGet").and_then(obj) {
        if h.get("path")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            h.insert("path".into(), json!("/"));
        }
        set_default(h, "scheme", json!("HTTP"));
    }
}

fn default_pod_spec(spec: &mut Value) {
    let Some(s) = obj(spec) else { return };
    set_default(s, "restartPolicy", json!("Always"));
    set_default(s, "dnsPolicy", json!("ClusterFirst"));
    set_default(s, "schedulerName", json!("default-scheduler"));
    set_default(s, "terminationGracePeriodSeconds", json!(30));
    set_default(s, "securityContext", json!({}));
    for list in ["containers", "initContainers"] {
        if let Some(cs) = s.get_mut(list).and_then(Value::as_array_mut) {
            cs.iter_mut().for_each(default_container);
        }
    }
    if let Some(vols) = s.get_mut("volumes").and_then(Value::as_array_mut) {
        for v in vols.iter_mut().filter_map(obj) {
            for source in ["configMap", "secret", "projected", "downwardAPI"] {
                if let Some(src) = v.get_mut(source).and_then(obj) {
                    set_default(src, "defaultMode", json!(420));
                }
            }
            if let Some(src) = v.get_mut("hostPath").and_then(obj) {
                set_default(src, "type", json!(""));
            }
        }
    }
}

fn default_pod_template(template: &mut Value) {
    let Some(t) = obj(template) else { return };
    let meta = t.entry("metadata").or_insert_with(|| json!({}));
    if let Some(m) = obj(meta) {
        // The real server's Go types serialise an unset template timestamp as null.
        m.entry("creationTimestamp").or_insert(Value::Null);
    }
    if let Some(spec) = t.get_mut("spec") {
        default_pod_spec(spec);
    }
}

fn spec_of(o: &mut Value) -> Option<&mut Map<String, Value>> {
    o.get_mut("spec").and_then(obj)
}

/// The defaults the real server applies when it decodes a built-in object.
pub fn decode_defaults(group: &str, kind: &str, o: &mut Value) {
    match (group, kind) {
        ("apps", "Deployment") => {
            if let Some(s) = spec_of(o) {
                set_default(s, "replicas", json!(1));
                set_default(s, "revisionHistoryLimit", json!(10));
                set_default(s, "progressDeadlineSeconds", json!(600));
                let strategy = s.entry("strategy").or_insert_with(|| json!({}));
                if let Some(st) = obj(strategy) {
                    set_default(st, "type", json!("RollingUpdate"));
                    if st.get("type") == Some(&json!("RollingUpdate")) {
                        let ru = st.entry("rollingUpdate").or_insert_with(|| json!({}));
                        if let Some(ru) = obj(ru) {
                            set_default(ru, "maxSurge", json!("25%"));
                            set_default(ru, "maxUnavailable", json!("25%"));
                        }
                    }
                }
                if let Some(t) = s.get_mut("template") {
                    default_pod_template(t);
                }
            }
        }
        ("apps", "StatefulSet") => {
            if let Some(s) = spec_of(o) {
                set_default(s, "replicas", json!(1));
                set_default(s, "revisionHistoryLimit", json!(10));
                set_default(s, "podManagementPolicy", json!("OrderedReady"));
                set_default(
                    s,
                    "updateStrategy",
                    json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
                );
                set_default(
                    s,
                    "persistentVolumeClaimRetentionPolicy",
                    json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
                );
                if let Some(templates) = s
                    .get_mut("volumeClaimTemplates")
                    .and_then(Value::as_array_mut)
                {
                    for t in templates.iter_mut().filter_map(obj) {
                        // The claims are full PersistentVolumeClaims to the server's Go types.
                        let meta = t.entry("metadata").or_insert_with(|| json!({}));
                        if let Some(m) = obj(meta) {
                            m.entry("creationTimestamp").or_insert(Value::Null);
                        }
                        if let Some(spec) = t.get_mut("spec").and_then(obj) {
                            set_default(spec, "volumeMode", json!("Filesystem"));
                        }
                        set_default(t, "status", json!({"phase": "Pending"}));
                    }
                }
                if let Some(t) = s.get_mut("template") {
                    default_pod_template(t);
                }
            }
        }
        ("apps", "DaemonSet") => {
            if let Some(s) = spec_of(o) {
                set_default(s, "revisionHistoryLimit", json!(10));
                set_default(
                    s,
                    "updateStrategy",
                    json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}),
                );
                if let Some(t) = s.get_mut("template") {
                    default_pod_template(t);
                }
            }
        }
        ("apps", "ReplicaSet") => {
            if let Some(s) = spec_of(o) {
                set_default(s, "replicas", json!(1));
                if let Some(t) = s.get_mut("template") {
                    default_pod_template(t);
                }
            }
        }
        ("batch", "Job") => {
            if let Some(s) = spec_of(o) {
                default_job_spec(s);
            }
        }
        ("batch", "CronJob") => {
            if let Some(s) = spec_of(o) {
                set_default(s, "concurrencyPolicy", json!("Allow"));
                set_default(s, "suspend", json!(false));
                set_default(s, "successfulJobsHistoryLimit", json!(3));
                set_default(s, "failedJobsHistoryLimit", json!(1));
                if let Some(jt) = s.get_mut("jobTemplate").and_then(obj) {
                    jt.entry("metadata").or_insert_with(|| json!({}));
                    if let Some(m) = jt.get_mut("metadata").and_then(obj) {
                        m.entry("creationTimestamp").or_insert(Value::Null);
                    }
                    if let Some(js) = jt.get_mut("spec").and_then(obj) {
                        default_job_spec(js);
                    }
                }
            }
        }
        ("", "Pod") => {
            if let Some(spec) = o.get_mut("spec") {
                default_pod_spec(spec);
                if let Some(s) = obj(spec) {
                    set_default(s, "enableServiceLinks", json!(true));
                    set_default(s, "serviceAccountName", json!("default"));
                    set_default(s, "serviceAccount", json!("default"));
                }
            }
        }
        ("", "Service") => {
            if let Some(s) = spec_of(o) {
                set_default(s, "type", json!("ClusterIP"));
                set_default(s, "sessionAffinity", json!("None"));
                let external = s.get("type") == Some(&json!("ExternalName"));
                if !external {
                    set_default(s, "internalTrafficPolicy", json!("Cluster"));
                }
                if matches!(
                    s.get("type").and_then(Value::as_str),
                    Some("NodePort" | "LoadBalancer")
                ) {
                    set_default(s, "externalTrafficPolicy", json!("Cluster"));
                }
                if s.get("type") == Some(&json!("LoadBalancer")) {
                    set_default(s, "allocateLoadBalancerNodePorts", json!(true));
                }
                if let Some(ports) = s.get_mut("ports").and_then(Value::as_array_mut) {
                    for p in ports.iter_mut().filter_map(obj) {
                        set_default(p, "protocol", json!("TCP"));
                        if let Some(port) = p.get("port").cloned() {
                            set_default(p, "targetPort", port);
                        }
                    }
                }
            }
        }
        ("", "Secret") => {
            if let Some(m) = obj(o) {
                set_default(m, "type", json!("Opaque"));
            }
        }
        ("", "PersistentVolumeClaim") => {
            if let Some(s) = spec_of(o) {
                set_default(s, "volumeMode", json!("Filesystem"));
            }
        }
        ("", "Namespace") => {
            if let Some(m) = obj(o) {
                let spec = m.entry("spec").or_insert_with(|| json!({}));
                if let Some(s) = obj(spec) {
                    set_default(s, "finalizers", json!(["kubernetes"]));
                }
            }
        }
        ("", "ReplicationController") => {
            if let Some(s) = spec_of(o) {
                set_default(s, "replicas", json!(1));
                if let Some(t) = s.get_mut("template") {
                    default_pod_template(t);
                }
            }
        }
        ("", "PodTemplate") => {
            if let Some(t) = o.get_mut("template") {
                default_pod_template(t);
            }
        }
        ("", "PersistentVolume") => {
            if let Some(s) = spec_of(o) {
                set_default(s, "persistentVolumeReclaimPolicy", json!("Retain"));
                set_default(s, "volumeMode", json!("Filesystem"));
            }
        }
        ("", "LimitRange") => {
            if let Some(limits) = spec_of(o)
                .and_then(|s| s.get_mut("limits"))
                .and_then(Value::as_array_mut)
            {
                limits
                    .iter_mut()
                    .filter_map(obj)
                    .for_each(default_limit_range_item);
            }
        }
        ("autoscaling", "HorizontalPodAutoscaler") => {
            if let Some(s) = spec_of(o) {
                default_hpa_spec(s);
            }
        }
        ("discovery.k8s.io", "EndpointSlice") => {
            if let Some(ports) = obj(o)
                .and_then(|m| m.get_mut("ports"))
                .and_then(Value::as_array_mut)
            {
                for p in ports.iter_mut().filter_map(obj) {
                    set_default(p, "protocol", json!("TCP"));
                }
            }
        }
        ("scheduling.k8s.io", "PriorityClass") => {
            if let Some(m) = obj(o) {
                set_default(m, "preemptionPolicy", json!("PreemptLowerPriority"));
            }
        }
        ("storage.k8s.io", "StorageClass") => {
            if let Some(m) = obj(o) {
                set_default(m, "reclaimPolicy", json!("Delete"));
                set_default(m, "volumeBindingMode", json!("Immediate"));
            }
        }
        ("storage.k8s.io", "CSIDriver") => {
            if let Some(s) = spec_of(o) {
                set_default(s, "attachRequired", json!(true));
                set_default(s, "podInfoOnMount", json!(false));
                set_default(s, "requiresRepublish", json!(false));
                set_default(s, "storageCapacity", json!(false));
                set_default(s, "fsGroupPolicy", json!("ReadWriteOnceWithFSType"));
                set_default(s, "volumeLifecycleModes", json!(["Persistent"]));
                set_default(s, "seLinuxMount", json!(false));
            }
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            if let Some(s) = spec_of(o) {
                set_default(s, "conversion", json!({"strategy": "None"}));
                if let Some(names) = s.get_mut("names").and_then(obj)
                    && let Some(kind) = names
                        .get("kind")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                {
                    set_default(names, "listKind", json!(format!("{kind}List")));
                    set_default(names, "singular", json!(kind.to_lowercase()));
                }
            }
        }
        _ => {}
    }
}

/// `SetDefaults_LimitRangeItem`: a Container item's default limit falls back to its max, its
/// default request to the default limit, then to its min.
fn default_limit_range_item(item: &mut Map<String, Value>) {
    if item.get("type").and_then(Value::as_str) != Some("Container") {
        return;
    }
    let resources = |item: &Map<String, Value>, f: &str| -> Map<String, Value> {
        item.get(f)
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    let mut default = resources(item, "default");
    for (k, v) in resources(item, "max") {
        default.entry(k).or_insert(v);
    }
    let mut request = resources(item, "defaultRequest");
    for (k, v) in default.iter().chain(resources(item, "min").iter()) {
        request.entry(k.clone()).or_insert_with(|| v.clone());
    }
    if !default.is_empty() {
        item.insert("default".into(), Value::Object(default));
    }
    if !request.is_empty() {
        item.insert("defaultRequest".into(), Value::Object(request));
    }
}

/// autoscaling/v2 `SetDefaults_HorizontalPodAutoscaler`: one replica at least, 80% CPU when no
/// metric is given, and the scaling rules of a `behavior` that is given.
fn default_hpa_spec(s: &mut Map<String, Value>) {
    set_default(s, "minReplicas", json!(1));
    if s.get("metrics")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty)
    {
        s.insert(
            "metrics".into(),
            json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]),
        );
    }
    if let Some(b) = s.get_mut("behavior").and_then(obj) {
        let up = b.entry("scaleUp").or_insert_with(|| json!({}));
        if let Some(up) = obj(up) {
            set_default(up, "stabilizationWindowSeconds", json!(0));
            set_default(up, "selectPolicy", json!("Max"));
            set_default(
                up,
                "policies",
                json!([{"type": "Pods", "value": 4, "periodSeconds": 15}, {"type": "Percent", "value": 100, "periodSeconds": 15}]),
            );
        }
        let down = b.entry("scaleDown").or_insert_with(|| json!({}));
        if let Some(down) = obj(down) {
            set_default(down, "stabilizationWindowSeconds", json!(300));
            set_default(down, "selectPolicy", json!("Max"));
            set_default(
                down,
                "policies",
                json!([{"type": "Percent", "value": 100, "periodSeconds": 15}]),
            );
        }
    }
}

fn default_job_spec(s: &mut Map<String, Value>) {
    set_default(s, "backoffLimit", json!(6));
    set_default(s, "completionMode", json!("NonIndexed"));
    set_default(s, "completions", json!(1));
    set_default(s, "parallelism", json!(1));
    set_default(s, "suspend", json!(false));
    set_default(s, "podReplacementPolicy", json!("TerminatingOrFailed"));
    if let Some(t) = s.get_mut("template") {
        default_pod_template(t);
    }
}

/// What the server's storage layer allocates on create (never owned by a field manager), and the
/// status a fresh object starts with.
pub fn allocate(group: &str, kind: &str, o: &mut Value, alloc: &mut Allocator) {
    match (group, kind) {
        ("", "Service") => {
            let Some(s) = spec_of(o) else { return };
            let type_ = s
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("ClusterIP")
                .to_string();
            if type_ != "ExternalName" {
                let ip = match s.get("clusterIP").and_then(Value::as_str) {
                    Some(ip) if !ip.is_empty() => ip.to_string(),
                    _ => alloc.cluster_ip(),
                };
                s.insert("clusterIP".into(), json!(ip));
                set_default(s, "clusterIPs", json!([ip]));
                set_default(s, "ipFamilies", json!(["IPv4"]));
                set_default(s, "ipFamilyPolicy", json!("SingleStack"));
            }
            if matches!(type_.as_str(), "NodePort" | "LoadBalancer")
                && let Some(ports) = s.get_mut("ports").and_then(Value::as_array_mut)
            {
                for p in ports.iter_mut().filter_map(obj) {
                    if p.get("nodePort").is_none() {
                        p.insert("nodePort".into(), json!(alloc.node_port()));
                    }
                }
            }
            if let Some(m) = obj(o) {
                set_default(m, "status", json!({"loadBalancer": {}}));
            }
        }
        ("", "Namespace") => {
            if let Some(m) = obj(o) {
                set_default(m, "status", json!({"phase": "Active"}));
            }
        }
        ("", "PersistentVolumeClaim") => {
            if let Some(m) = obj(o) {
                set_default(m, "status", json!({"phase": "Pending"}));
            }
        }
        ("", "Pod") => {
            if let Some(m) = obj(o) {
                set_default(
                    m,
                    "status",
                    json!({"phase": "Pending", "qosClass": "BestEffort"}),
                );
            }
        }
        ("apps", "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet")
        | ("batch", "Job" | "CronJob") => {
            if let Some(m) = obj(o) {
                set_default(m, "status", json!({}));
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deployment_gets_the_real_defaults() {
        let mut d = json!({"spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}},
            "spec": {"containers": [{"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}, {"name": "x", "image": "busybox"}]}}}});
        decode_defaults("apps", "Deployment", &mut d);
        let s = &d["spec"];
        assert_eq!(s["replicas"], 1);
        assert_eq!(s["revisionHistoryLimit"], 10);
        assert_eq!(s["progressDeadlineSeconds"], 600);
        assert_eq!(
            s["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
        );
        let pod = &s["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Always");
        assert_eq!(pod["dnsPolicy"], "ClusterFirst");
        assert_eq!(pod["schedulerName"], "default-scheduler");
        assert_eq!(pod["terminationGracePeriodSeconds"], 30);
        assert_eq!(pod["securityContext"], json!({}));
        assert_eq!(pod["containers"][0]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(pod["containers"][1]["imagePullPolicy"], "Always");
        assert_eq!(
            pod["containers"][0]["terminationMessagePath"],
            "/dev/termination-log"
        );
        assert_eq!(pod["containers"][0]["ports"][0]["protocol"], "TCP");
        assert!(s["template"]["metadata"]["creationTimestamp"].is_null());
    }

    #[test]
    fn probes_hooks_field_refs_and_volume_sources_get_their_defaults() {
        let mut d = json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x:1",
            "livenessProbe": {"httpGet": {"port": 80}},
            "lifecycle": {"preStop": {"httpGet": {"path": "/stop", "port": 80}}},
            "env": [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]}],
            "volumes": [{"name": "p", "projected": {"sources": []}}, {"name": "h", "hostPath": {"path": "/x"}}]}}}});
        decode_defaults("apps", "Deployment", &mut d);
        let pod = &d["spec"]["template"]["spec"];
        let c = &pod["containers"][0];
        assert_eq!(c["livenessProbe"]["httpGet"]["scheme"], "HTTP");
        assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/");
        assert_eq!(c["lifecycle"]["preStop"]["httpGet"]["scheme"], "HTTP");
        assert_eq!(c["env"][0]["valueFrom"]["fieldRef"]["apiVersion"], "v1");
        assert_eq!(pod["volumes"][0]["projected"]["defaultMode"], 420);
        assert_eq!(pod["volumes"][1]["hostPath"]["type"], "");
    }

    #[test]
    fn a_recreate_strategy_gets_no_rolling_update() {
        let mut d = json!({"spec": {"strategy": {"type": "Recreate"}}});
        decode_defaults("apps", "Deployment", &mut d);
        assert_eq!(d["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn a_service_gets_defaults_and_an_allocated_ip() {
        let mut s = json!({"spec": {"ports": [{"port": 80}], "selector": {"a": "b"}}});
        decode_defaults("", "Service", &mut s);
        allocate("", "Service", &mut s, &mut Allocator::default());
        let spec = &s["spec"];
        assert_eq!(spec["type"], "ClusterIP");
        assert_eq!(spec["sessionAffinity"], "None");
        assert_eq!(spec["internalTrafficPolicy"], "Cluster");
        assert_eq!(
            spec["ports"][0],
            json!({"port": 80, "protocol": "TCP", "targetPort": 80})
        );
        assert_eq!(spec["clusterIP"], "10.96.0.10");
        assert_eq!(spec["clusterIPs"], json!(["10.96.0.10"]));
        assert_eq!(spec["ipFamilies"], json!(["IPv4"]));
        assert_eq!(spec["ipFamilyPolicy"], "SingleStack");
    }

    #[test]
    fn configmaps_get_nothing() {
        let mut c = json!({"data": {"a": "b"}});
        decode_defaults("", "ConfigMap", &mut c);
        allocate("", "ConfigMap", &mut c, &mut Allocator::default());
        assert_eq!(c, json!({"data": {"a": "b"}}));
    }
}
