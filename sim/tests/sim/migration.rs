//! Brownfield take-overs: objects made by client-side `kubectl apply`, then applied server-side
//! by another manager — kubectl's own migration (`apply --server-side`, which moves the
//! client-side manager's fields to the new manager with a JSON patch and applies again) and Flux's
//! (kustomize-controller drops the client-side managers and the last-applied annotation, then
//! applies with force). An apply never removes a field present in its own configuration.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kubesim::SimConfig;
use serde_json::{Value, json};

use crate::support::*;

const CONFIGMAP: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: default
  labels:
    app: web
  annotations:
    team: a
data:
  mode: fast
  level: "3"
"#;

const SERVICE: &str = r#"apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: default
  labels:
    app: web
spec:
  selector:
    app: web
  ports:
  - name: http
    port: 80
    targetPort: 8080
  - name: metrics
    port: 9090
"#;

const DEPLOYMENT: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: default
  labels:
    app: web
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: nginx:1.27
        ports:
        - containerPort: 80
        env:
        - name: MODE
          value: fast
        resources:
          limits:
            memory: 128Mi
"#;

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

fn json_of(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("kubectl printed invalid JSON ({e}): {s}"))
}

fn yaml_of(s: &str) -> Value {
    serde_saphyr::from_str(s).expect("test manifest is YAML")
}

fn managers(obj: &Value) -> Vec<(String, String)> {
    obj["metadata"]["managedFields"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    (
                        e["manager"].as_str().unwrap_or_default().to_string(),
                        e["operation"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Every field of `config` is in `live` with the same value (lists compared item by item, as far
/// as the configuration goes).
fn assert_contains(live: &Value, config: &Value, at: &str) {
    match (live, config) {
        // A server drops maps an apply emptied.
        (Value::Null, Value::Object(c)) if c.is_empty() => {}
        (Value::Object(l), Value::Object(c)) => {
            for (k, cv) in c {
                let lv = match l.get(k) {
                    Some(v) => v,
                    None if cv.as_object().is_some_and(|m| m.is_empty()) => &Value::Null,
                    None => panic!("{at}.{k} is gone from the live object"),
                };
                assert_contains(lv, cv, &format!("{at}.{k}"));
            }
        }
        (Value::Array(l), Value::Array(c)) => {
            assert_eq!(l.len(), c.len(), "{at}: list length");
            for (i, (lv, cv)) in l.iter().zip(c).enumerate() {
                assert_contains(lv, cv, &format!("{at}[{i}]"));
            }
        }
        _ => assert_eq!(live, config, "{at}"),
    }
}

async fn kubectl_migration_keeps_every_field(manifest: &str, kind: &str, name: &str) {
    let sim = sim_with(SimConfig::default().with_tls()).await;
    let Some(k) = Kubectl::new(&sim, "admin") else {
        return;
    };
    let f = k.file("obj.yaml", manifest);
    k.ok(&["apply", "-f", &f]).await;
    k.ok(&[
        "apply",
        "--server-side",
        "--field-manager=kustomize-controller",
        "--force-conflicts",
        "-f",
        &f,
    ])
    .await;
    let live = json_of(
        &k.ok(&["get", kind, name, "-o", "json", "--show-managed-fields"])
            .await,
    );
    let mut config = yaml_of(manifest);
    config["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("namespace");
    assert_contains(&live, &config, "");
    assert_eq!(
        managers(&live),
        vec![("kustomize-controller".to_string(), "Apply".to_string())],
        "{live:#}"
    );
    // kubectl moved the last-applied annotation to the new manager; its configuration lacks it,
    // so structured-merge-diff prunes it on the second apply.
    assert!(
        live["metadata"]["annotations"].get(LAST_APPLIED).is_none(),
        "{live:#}"
    );
    // Applying again changes nothing.
    let out = k
        .ok(&[
            "apply",
            "--server-side",
            "--field-manager=kustomize-controller",
            "-f",
            &f,
        ])
        .await;
    assert!(out.contains("serverside-applied"), "{out}");
    let again = json_of(&k.ok(&["get", kind, name, "-o", "json"]).await);
    assert_eq!(
        again["metadata"]["resourceVersion"], live["metadata"]["resourceVersion"],
        "a repeated apply stores nothing"
    );
}

#[tokio::test]
async fn kubectl_client_side_then_server_side_keeps_a_configmap() {
    kubectl_migration_keeps_every_field(CONFIGMAP, "configmap", "settings").await;
}

#[tokio::test]
async fn kubectl_client_side_then_server_side_keeps_a_service_and_its_ports() {
    kubectl_migration_keeps_every_field(SERVICE, "service", "web").await;
}

#[tokio::test]
async fn kubectl_client_side_then_server_side_keeps_a_deployment() {
    kubectl_migration_keeps_every_field(DEPLOYMENT, "deployment", "web").await;
}

/// What kustomize-controller does with an object it finds: drop the managers of client-side
/// kubectl (and `before-first-apply`) and the last-applied annotation in one JSON patch —
/// `[{}]` when no manager is left, which strips managedFields — then a forced dry-run apply and
/// a forced apply.
async fn flux_apply(api: &Api<DynamicObject>, config: &Value) -> DynamicObject {
    let name = config["metadata"]["name"].as_str().unwrap();
    if let Some(live) = api.get_opt(name).await.unwrap() {
        let live = serde_json::to_value(&live).unwrap();
        let entries: Vec<Value> = live["metadata"]["managedFields"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let kept: Vec<Value> = entries
            .iter()
            .filter(|e| {
                let m = e["manager"].as_str().unwrap_or_default();
                !((m.starts_with("kubectl") || m.starts_with("before-first-apply"))
                    && e["operation"] == "Update"
                    && e.get("subresource").is_none())
            })
            .cloned()
            .collect();
        let mut ops = Vec::new();
        if kept.len() != entries.len() {
            let value = if kept.is_empty() {
                vec![json!({})]
            } else {
                kept
            };
            ops.push(json!({"op": "replace", "path": "/metadata/managedFields", "value": value}));
        }
        if live["metadata"]["annotations"].get(LAST_APPLIED).is_some() {
            ops.push(json!({"op": "remove", "path": "/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration"}));
        }
        if !ops.is_empty() {
            let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops)).unwrap();
            api.patch(name, &PatchParams::default(), &Patch::<()>::Json(patch))
                .await
                .unwrap();
        }
    }
    let pp = PatchParams::apply("kustomize-controller").force();
    api.patch(name, &pp.clone().dry_run(), &Patch::Apply(config))
        .await
        .unwrap();
    api.patch(name, &pp, &Patch::Apply(config)).await.unwrap()
}

async fn flux_takes_over<K>(manifest: &str, drop: &str)
where
    K: kube::Resource<DynamicType = ()>,
{
    let sim = sim_with(SimConfig::default().with_tls()).await;
    let Some(k) = Kubectl::new(&sim, "admin") else {
        return;
    };
    let f = k.file("obj.yaml", manifest);
    k.ok(&["apply", "-f", &f]).await;
    let api: Api<DynamicObject> = Api::namespaced_with(
        sim.client().await.unwrap(),
        "default",
        &ApiResource::erase::<K>(&()),
    );
    let mut config = yaml_of(manifest);
    config["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("namespace");
    let applied = serde_json::to_value(flux_apply(&api, &config).await).unwrap();
    assert_contains(&applied, &config, "");
    assert_eq!(
        managers(&applied),
        vec![("kustomize-controller".to_string(), "Apply".to_string())],
        "{applied:#}"
    );
    assert!(
        applied["metadata"]["annotations"]
            .get(LAST_APPLIED)
            .is_none()
    );
    // Flux now owns the fields: dropping one from its configuration removes it.
    let mut smaller = config.clone();
    let (parent, field) = drop.rsplit_once('.').unwrap();
    let mut at = &mut smaller;
    for seg in parent.split('.').filter(|s| !s.is_empty()) {
        at = &mut at[seg];
    }
    at.as_object_mut().unwrap().remove(field);
    let pruned = serde_json::to_value(flux_apply(&api, &smaller).await).unwrap();
    assert_contains(&pruned, &smaller, "");
    let mut at = &pruned;
    for seg in parent.split('.').filter(|s| !s.is_empty()) {
        at = &at[seg];
    }
    assert!(at.get(field).is_none(), "{drop} stays: {pruned:#}");
}

#[tokio::test]
async fn flux_takes_over_a_client_side_configmap() {
    flux_takes_over::<ConfigMap>(CONFIGMAP, ".data.level").await;
}

#[tokio::test]
async fn flux_takes_over_a_client_side_service() {
    flux_takes_over::<Service>(SERVICE, ".metadata.labels.app").await;
}

#[tokio::test]
async fn flux_takes_over_a_client_side_deployment() {
    flux_takes_over::<Deployment>(DEPLOYMENT, ".metadata.labels.app").await;
}

fn manager_entries(obj: &Value) -> Vec<(String, String, String)> {
    obj["metadata"]["managedFields"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    (
                        e["manager"].as_str().unwrap_or_default().to_string(),
                        e["operation"].as_str().unwrap_or_default().to_string(),
                        e["subresource"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn each_kubectl_verb_is_an_update_manager_of_its_own_name() {
    let sim = sim_with(SimConfig::default().with_tls()).await;
    let Some(k) = Kubectl::new(&sim, "admin") else {
        return;
    };
    let f = k.file("deploy.yaml", DEPLOYMENT);
    k.ok(&["create", "-f", &f]).await;
    k.ok(&["label", "deployment", "web", "tier=front"]).await;
    k.ok(&["annotate", "deployment", "web", "owner=team"]).await;
    k.ok(&[
        "patch",
        "deployment",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"minReadySeconds":3}}"#,
    ])
    .await;
    k.ok(&["scale", "deployment", "web", "--replicas=4"]).await;
    let live = json_of(
        &k.ok(&[
            "get",
            "deployment",
            "web",
            "-o",
            "json",
            "--show-managed-fields",
        ])
        .await,
    );
    let entries = manager_entries(&live);
    for (manager, subresource) in [
        ("kubectl-create", ""),
        ("kubectl-label", ""),
        ("kubectl-annotate", ""),
        ("kubectl-patch", ""),
        // kubectl scale names no field manager: the server takes the User-Agent's program.
        ("kubectl", "scale"),
    ] {
        assert!(
            entries.contains(&(
                manager.to_string(),
                "Update".to_string(),
                subresource.to_string()
            )),
            "{manager} missing: {entries:?}"
        );
    }
    let scale = live["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["subresource"] == "scale")
        .unwrap();
    assert_eq!(scale["fieldsV1"], json!({"f:spec": {"f:replicas": {}}}));
    // kubectl-create lost replicas to the scale, and only that.
    let create = live["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["manager"] == "kubectl-create")
        .unwrap();
    assert!(create["fieldsV1"]["f:spec"].get("f:replicas").is_none());
    assert!(create["fieldsV1"]["f:spec"].get("f:selector").is_some());
}

/// Client-side, then server-side, then client-side again, then server-side again (an Argo CD
/// application switching `ServerSideApply=true` on and off): no field is ever lost, and each
/// round that repeats the same configuration stores nothing.
#[tokio::test]
async fn mixed_client_and_server_side_rounds_keep_every_field() {
    let sim = sim_with(SimConfig::default().with_tls()).await;
    let Some(k) = Kubectl::new(&sim, "admin") else {
        return;
    };
    let f = k.file("deploy.yaml", DEPLOYMENT);
    let mut config = yaml_of(DEPLOYMENT);
    config["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("namespace");
    let get = || async {
        json_of(
            &k.ok(&[
                "get",
                "deployment",
                "web",
                "-o",
                "json",
                "--show-managed-fields",
            ])
            .await,
        )
    };
    let csa = ["apply", "-f", f.as_str()];
    let ssa = [
        "apply",
        "--server-side",
        "--field-manager=argocd-controller",
        "--force-conflicts",
        "-f",
        f.as_str(),
    ];
    for (round, args) in [&csa[..], &ssa[..], &csa[..], &ssa[..], &ssa[..]]
        .into_iter()
        .enumerate()
    {
        k.ok(args).await;
        let live = get().await;
        assert_contains(&live, &config, &format!("round {round}"));
    }
    let before = get().await;
    k.ok(&ssa).await;
    let after = get().await;
    assert_eq!(
        before["metadata"]["resourceVersion"], after["metadata"]["resourceVersion"],
        "{after:#}"
    );
}
