//! The built-in kinds real application folders hold beyond workloads — HPA, PDB, quotas, limit
//! ranges, classes, slices, webhooks — served like every other resource, judged by kubectl and
//! kube-rs.

use futures::StreamExt;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kubesim::SimConfig;
use serde_json::{Value, json};

use crate::support::*;

const APP_EXTRAS: &str = r#"apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: web
  namespace: default
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: web
  minReplicas: 2
  maxReplicas: 5
  metrics:
  - type: Resource
    resource:
      name: cpu
      target:
        type: Utilization
        averageUtilization: 70
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: web
  namespace: default
spec:
  minAvailable: 1
  selector:
    matchLabels:
      app: web
---
apiVersion: v1
kind: ResourceQuota
metadata:
  name: compute
  namespace: default
spec:
  hard:
    pods: "10"
    requests.cpu: "4"
    requests.memory: 8Gi
---
apiVersion: v1
kind: LimitRange
metadata:
  name: defaults
  namespace: default
spec:
  limits:
  - type: Container
    max:
      cpu: "2"
    defaultRequest:
      cpu: 100m
"#;

const CLUSTER_EXTRAS: &str = r#"apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata:
  name: high
value: 1000
description: important
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: fast
provisioner: example.com/fake
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: example
spec:
  controller: example.com/ingress
---
apiVersion: storage.k8s.io/v1
kind: CSIDriver
metadata:
  name: fake.example.com
spec:
  attachRequired: false
---
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata:
  name: runc
handler: runc
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-abc
  namespace: default
  labels:
    kubernetes.io/service-name: web
addressType: IPv4
endpoints:
- addresses:
  - 10.0.0.1
ports:
- name: http
  port: 80
---
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  name: inject
"#;

fn json_of(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("kubectl printed invalid JSON ({e}): {s}"))
}

#[tokio::test]
async fn kubectl_applies_an_hpa_a_pdb_a_quota_and_a_limit_range_from_one_file() {
    let sim = sim_with(SimConfig::default().with_tls()).await;
    let Some(k) = Kubectl::new(&sim, "admin") else {
        return;
    };
    let f = k.file("extras.yaml", APP_EXTRAS);
    let dry = k.ok(&["apply", "--dry-run=server", "-f", &f]).await;
    assert_eq!(dry.lines().count(), 4, "{dry}");
    assert!(
        k.ok(&["get", "hpa,pdb,quota,limits", "-o", "name"])
            .await
            .trim()
            .is_empty(),
        "a dry run stores nothing"
    );
    let out = k.ok(&["apply", "-f", &f]).await;
    for line in [
        "horizontalpodautoscaler.autoscaling/web created",
        "poddisruptionbudget.policy/web created",
        "resourcequota/compute created",
        "limitrange/defaults created",
    ] {
        assert!(out.contains(line), "{line} missing from:\n{out}");
    }
    // kubectl sends a PDB's selector and a LimitRange's limits again every time (their patch
    // strategy is `replace`, and the server defaulted the limits), but nothing changes.
    let rvs = k
        .ok(&[
            "get",
            "hpa,pdb,quota,limits",
            "-o",
            "jsonpath={.items[*].metadata.resourceVersion}",
        ])
        .await;
    k.ok(&["apply", "-f", &f]).await;
    assert_eq!(
        k.ok(&[
            "get",
            "hpa,pdb,quota,limits",
            "-o",
            "jsonpath={.items[*].metadata.resourceVersion}"
        ])
        .await,
        rvs,
        "a repeated client-side apply stores nothing"
    );
    let ssa = k
        .ok(&[
            "apply",
            "--server-side",
            "--field-manager=flux",
            "--force-conflicts",
            "-f",
            &f,
        ])
        .await;
    assert_eq!(ssa.matches("serverside-applied").count(), 4, "{ssa}");
    let hpa = json_of(&k.ok(&["get", "hpa", "web", "-o", "json"]).await);
    assert_eq!(hpa["spec"]["maxReplicas"], 5);
    assert_eq!(hpa["metadata"]["generation"], 1);
    let limits = json_of(&k.ok(&["get", "limitrange", "defaults", "-o", "json"]).await);
    // The server's defaults: the default limit falls back to max.
    assert_eq!(limits["spec"]["limits"][0]["default"]["cpu"], "2");
    assert_eq!(limits["spec"]["limits"][0]["defaultRequest"]["cpu"], "100m");
    let names = k.ok(&["get", "hpa,pdb,quota,limits", "-o", "name"]).await;
    assert_eq!(names.lines().count(), 4, "{names}");
    k.ok(&["delete", "-f", &f]).await;
    assert!(
        k.ok(&["get", "hpa,pdb,quota,limits", "-o", "name"])
            .await
            .trim()
            .is_empty()
    );
}

#[tokio::test]
async fn kubectl_applies_classes_slices_and_webhooks_both_ways() {
    let sim = sim_with(SimConfig::default().with_tls()).await;
    let Some(k) = Kubectl::new(&sim, "admin") else {
        return;
    };
    let f = k.file("cluster.yaml", CLUSTER_EXTRAS);
    let out = k.ok(&["apply", "-f", &f]).await;
    assert_eq!(out.matches("created").count(), 7, "{out}");
    let ssa = k
        .ok(&["apply", "--server-side", "--force-conflicts", "-f", &f])
        .await;
    assert_eq!(ssa.matches("serverside-applied").count(), 7, "{ssa}");
    let resources = k.ok(&["api-resources", "-o", "name"]).await;
    for r in [
        "horizontalpodautoscalers.autoscaling",
        "poddisruptionbudgets.policy",
        "resourcequotas",
        "limitranges",
        "priorityclasses.scheduling.k8s.io",
        "storageclasses.storage.k8s.io",
        "csidrivers.storage.k8s.io",
        "ingressclasses.networking.k8s.io",
        "runtimeclasses.node.k8s.io",
        "endpointslices.discovery.k8s.io",
        "mutatingwebhookconfigurations.admissionregistration.k8s.io",
    ] {
        assert!(
            resources.lines().any(|l| l == r),
            "{r} not served:\n{resources}"
        );
    }
    let sc = json_of(&k.ok(&["get", "storageclass", "fast", "-o", "json"]).await);
    assert_eq!(sc["reclaimPolicy"], "Delete");
    assert_eq!(sc["volumeBindingMode"], "Immediate");
    let pc = json_of(&k.ok(&["get", "priorityclass", "high", "-o", "json"]).await);
    assert_eq!(pc["preemptionPolicy"], "PreemptLowerPriority");
    let slice = json_of(
        &k.ok(&["get", "endpointslice", "web-abc", "-o", "json"])
            .await,
    );
    assert_eq!(slice["ports"][0]["protocol"], "TCP");
    k.ok(&["delete", "-f", &f]).await;
}

/// Create, list, watch, apply, dry run and delete through kube-rs for each new kind.
#[tokio::test]
async fn every_new_kind_supports_the_verbs_a_controller_uses() {
    let sim = sim().await;
    let client = sim.client().await.unwrap();
    let cases: Vec<(&str, &str, &str, bool, Value)> = vec![
        (
            "autoscaling",
            "v2",
            "HorizontalPodAutoscaler",
            true,
            json!({"spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 3}}),
        ),
        (
            "policy",
            "v1",
            "PodDisruptionBudget",
            true,
            json!({"spec": {"maxUnavailable": 1}}),
        ),
        (
            "",
            "v1",
            "ResourceQuota",
            true,
            json!({"spec": {"hard": {"pods": "3"}}}),
        ),
        (
            "",
            "v1",
            "LimitRange",
            true,
            json!({"spec": {"limits": [{"type": "Pod", "max": {"cpu": "1"}}]}}),
        ),
        (
            "scheduling.k8s.io",
            "v1",
            "PriorityClass",
            false,
            json!({"value": 5}),
        ),
        (
            "storage.k8s.io",
            "v1",
            "StorageClass",
            false,
            json!({"provisioner": "x"}),
        ),
        (
            "storage.k8s.io",
            "v1",
            "CSIDriver",
            false,
            json!({"spec": {}}),
        ),
        (
            "networking.k8s.io",
            "v1",
            "IngressClass",
            false,
            json!({"spec": {"controller": "x/y"}}),
        ),
        (
            "node.k8s.io",
            "v1",
            "RuntimeClass",
            false,
            json!({"handler": "runc"}),
        ),
        (
            "discovery.k8s.io",
            "v1",
            "EndpointSlice",
            true,
            json!({"addressType": "IPv4", "endpoints": []}),
        ),
    ];
    for (group, version, kind, namespaced, body) in cases {
        let plural = format!("{}s", kind.to_lowercase())
            .replace("policys", "policies")
            .replace("classs", "classes");
        let ar = ApiResource {
            group: group.into(),
            version: version.into(),
            api_version: if group.is_empty() {
                version.into()
            } else {
                format!("{group}/{version}")
            },
            kind: kind.into(),
            plural,
        };
        let api: Api<DynamicObject> = if namespaced {
            Api::namespaced_with(client.clone(), "default", &ar)
        } else {
            Api::all_with(client.clone(), &ar)
        };
        let mut obj = body.clone();
        obj["apiVersion"] = json!(ar.api_version);
        obj["kind"] = json!(kind);
        obj["metadata"] = json!({"name": "one"});
        let watch = watcher(api.clone(), watcher::Config::default());
        let mut watch = Box::pin(watch);
        let dyn_obj: DynamicObject = serde_json::from_value(obj.clone()).unwrap();
        let dry = api
            .create(
                &PostParams {
                    dry_run: true,
                    ..Default::default()
                },
                &dyn_obj,
            )
            .await
            .unwrap_or_else(|e| panic!("{kind} dry run: {e}"));
        assert_eq!(dry.metadata.name.as_deref(), Some("one"));
        assert!(
            api.get_opt("one").await.unwrap().is_none(),
            "{kind}: dry run stored"
        );
        api.create(&PostParams::default(), &dyn_obj)
            .await
            .unwrap_or_else(|e| panic!("{kind} create: {e}"));
        assert_eq!(
            api.list(&Default::default()).await.unwrap().items.len(),
            1,
            "{kind} list"
        );
        let seen = within(async {
            loop {
                match watch.next().await {
                    Some(Ok(watcher::Event::InitApply(o) | watcher::Event::Apply(o)))
                        if o.metadata.name.as_deref() == Some("one") =>
                    {
                        break o;
                    }
                    Some(Err(e)) => panic!("{kind} watch: {e}"),
                    _ => {}
                }
            }
        })
        .await;
        assert_eq!(
            seen.metadata.uid,
            api.get("one").await.unwrap().metadata.uid,
            "{kind}"
        );
        let mut applied = obj.clone();
        applied["metadata"]["labels"] = json!({"owner": "flux"});
        let out = api
            .patch(
                "one",
                &PatchParams::apply("flux").force(),
                &Patch::Apply(&applied),
            )
            .await
            .unwrap_or_else(|e| panic!("{kind} apply: {e}"));
        assert_eq!(out.metadata.labels.unwrap()["owner"], "flux", "{kind}");
        api.delete("one", &DeleteParams::default())
            .await
            .unwrap_or_else(|e| panic!("{kind} delete: {e}"));
        assert!(
            api.get_opt("one").await.unwrap().is_none(),
            "{kind}: deleted"
        );
    }
}

/// HorizontalPodAutoscalers are stored as `autoscaling/v2` and served at `v1` too, converted:
/// `targetCPUUtilizationPercentage` is the v2 CPU utilization metric.
#[tokio::test]
async fn hpa_v1_and_v2_are_two_views_of_one_object() {
    use k8s_openapi::api::autoscaling::{v1, v2};
    let sim = sim().await;
    let client = sim.client().await.unwrap();
    let old: Api<v1::HorizontalPodAutoscaler> = Api::namespaced(client.clone(), "default");
    let new: Api<v2::HorizontalPodAutoscaler> = Api::namespaced(client, "default");
    let hpa: v1::HorizontalPodAutoscaler = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "maxReplicas": 4, "targetCPUUtilizationPercentage": 60}}))
    .unwrap();
    old.create(&PostParams::default(), &hpa).await.unwrap();
    let v2 = new.get("web").await.unwrap();
    let metric = &v2.spec.as_ref().unwrap().metrics.as_ref().unwrap()[0];
    assert_eq!(
        metric.resource.as_ref().unwrap().target.average_utilization,
        Some(60)
    );
    new.patch(
        "web",
        &PatchParams::apply("flux").force(),
        &Patch::Apply(json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web"}, "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "maxReplicas": 4, "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 75}}}]}})),
    )
    .await
    .unwrap();
    let v1 = old.get("web").await.unwrap();
    assert_eq!(v1.spec.unwrap().target_cpu_utilization_percentage, Some(75));
    let patched = old
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"maxReplicas": 9}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.spec.unwrap().max_replicas, 9);
    assert_eq!(new.get("web").await.unwrap().spec.unwrap().max_replicas, 9);
}
