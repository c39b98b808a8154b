//! CustomResourceDefinitions: creating one serves its resource (discovery, CRUD, status and scale
//! subresources, cluster scope); deleting it stops serving and removes its objects.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::discovery::{Discovery, Scope};
use serde_json::json;

use crate::support::*;

fn crd(scope: &str) -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": scope,
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
            "versions": [
                {"name": "v1beta1", "served": true, "storage": false, "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}},
                {"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
                 "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.size", "statusReplicasPath": ".status.size"}}}
            ]}
    }))
    .unwrap()
}

#[tokio::test]
async fn a_crd_is_served_in_discovery_and_removed_with_its_objects() {
    let sim = sim().await;
    let client = sim.client().await.unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let created = crds
        .create(&PostParams::default(), &crd("Namespaced"))
        .await
        .unwrap();
    let conditions = created.status.unwrap().conditions.unwrap();
    assert!(
        conditions
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
    );

    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    let group = discovery.get("example.com").expect("group served");
    assert_eq!(group.preferred_version_or_latest(), "v1");
    let (ar, caps) = group.recommended_kind("Widget").unwrap();
    assert_eq!(ar.plural, "widgets");
    assert_eq!(caps.scope, Scope::Namespaced);
    assert!(caps.subresources.iter().any(|(s, _)| s.plural == "status"));

    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar);
    let w: DynamicObject = serde_json::from_value(json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 1}})).unwrap();
    let w = api.create(&PostParams::default(), &w).await.unwrap();
    assert_eq!(w.metadata.generation, Some(1));
    let w = api
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 2}})),
        )
        .await
        .unwrap();
    assert_eq!(w.metadata.generation, Some(2));
    api.patch_status(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"size": 2}})),
    )
    .await
    .unwrap();
    let scale = api.get_scale("w").await.unwrap();
    assert_eq!(
        (scale.spec.unwrap().replicas, scale.status.unwrap().replicas),
        (Some(2), 2)
    );
    // The other served version sees the same object.
    let beta = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", "v1beta1", "Widget"),
        "widgets",
    );
    let old: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &beta);
    assert_eq!(
        old.get("w").await.unwrap().types.unwrap().api_version,
        "example.com/v1beta1"
    );
    // Strategic merge patch is not for custom resources.
    let err = api
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"size": 3}})),
        )
        .await
        .unwrap_err();
    let kube::Error::Api(s) = err else { panic!() };
    assert_eq!(s.code, 415);

    crds.delete("widgets.example.com", &DeleteParams::default())
        .await
        .unwrap();
    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    assert!(discovery.get("example.com").is_none());
    let err = api.get("w").await.unwrap_err();
    let kube::Error::Api(s) = err else { panic!() };
    assert_eq!(s.code, 404);
    // Recreating it serves an empty resource.
    crds.create(&PostParams::default(), &crd("Cluster"))
        .await
        .unwrap();
    let all: Api<DynamicObject> = Api::all_with(client, &ar);
    assert!(
        all.list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test]
async fn an_invalid_crd_is_rejected_with_causes() {
    let sim = sim().await;
    let crds: Api<CustomResourceDefinition> = Api::all(sim.client().await.unwrap());
    let mut bad = crd("Namespaced");
    bad.metadata.name = Some("wrong.example.com".into());
    let err = crds.create(&PostParams::default(), &bad).await.unwrap_err();
    let kube::Error::Api(s) = err else { panic!() };
    assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
    assert_eq!(s.details.unwrap().causes[0].field, "metadata.name");
}

/// `kubectl get` of a custom resource shows its printer columns as the server evaluates them:
/// JSONPath filters, AGE once (the CRD's own), `priority: 1` columns only with `-o wide`.
#[tokio::test]
async fn kubectl_get_shows_printer_columns_as_the_server_evaluates_them() {
    let sim = crate::support::sim_with(kubesim::SimConfig::default().with_tls()).await;
    let Some(k) = crate::support::Kubectl::new(&sim, "admin") else {
        return;
    };
    let crd = k.file(
        "crd.yaml",
        r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: gadgets, singular: gadget, kind: Gadget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
    additionalPrinterColumns:
    - name: Ready
      type: string
      jsonPath: .status.conditions[?(@.type=="Ready")].status
    - name: Size
      type: integer
      jsonPath: .spec.size
    - name: Reason
      type: string
      priority: 1
      jsonPath: .status.conditions[?(@.type=="Ready")].reason
    - name: Age
      type: date
      jsonPath: .metadata.creationTimestamp
"#,
    );
    k.ok(&["apply", "-f", &crd]).await;
    k.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/gadgets.example.com",
        "--timeout=10s",
    ])
    .await;
    let cr = k.file(
        "cr.yaml",
        r#"apiVersion: example.com/v1
kind: Gadget
metadata: {name: g1, namespace: default}
spec: {size: 3}
status:
  conditions:
  - {type: Synced, status: "False", reason: Waiting}
  - {type: Ready, status: "True", reason: AllGood}
"#,
    );
    k.ok(&["apply", "-f", &cr]).await;
    let out = k.ok(&["get", "gadgets"]).await;
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, vec!["NAME", "READY", "SIZE", "AGE"], "{out}");
    let row: Vec<&str> = out.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..3], &["g1", "True", "3"], "{out}");
    let wide = k.ok(&["get", "gadgets", "-o", "wide"]).await;
    let header: Vec<&str> = wide.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        vec!["NAME", "READY", "SIZE", "REASON", "AGE"],
        "{wide}"
    );
    assert!(wide.lines().nth(1).unwrap().contains("AllGood"), "{wide}");
}

/// `kubectl explain` of a custom resource reads the CRD's own schema from `/openapi/v3`.
#[tokio::test]
async fn kubectl_explain_shows_a_custom_resources_fields() {
    let sim = crate::support::sim_with(kubesim::SimConfig::default().with_tls()).await;
    let Some(k) = crate::support::Kubectl::new(&sim, "admin") else {
        return;
    };
    let crd = k.file(
        "crd.yaml",
        r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gizmos.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: gizmos, singular: gizmo, kind: Gizmo}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        description: A gizmo of the example group.
        properties:
          spec:
            type: object
            description: What the gizmo should be.
            properties:
              size:
                type: integer
                description: How many parts the gizmo has.
              colour:
                type: string
                description: The colour it is painted.
"#,
    );
    k.ok(&["apply", "-f", &crd]).await;
    k.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/gizmos.example.com",
        "--timeout=10s",
    ])
    .await;
    let top = k.ok(&["explain", "gizmos"]).await;
    assert!(top.contains("A gizmo of the example group."), "{top}");
    let spec = k.ok(&["explain", "gizmos.spec"]).await;
    assert!(spec.contains("What the gizmo should be."), "{spec}");
    assert!(spec.contains("size") && spec.contains("colour"), "{spec}");
    let size = k.ok(&["explain", "gizmos.spec.size"]).await;
    assert!(size.contains("How many parts the gizmo has."), "{size}");
    assert!(size.contains("integer"), "{size}");
}

/// Server-side apply follows a CRD's structural schema: `x-kubernetes-list-type: map` lists merge
/// by their keys, `set` lists by value, `x-kubernetes-map-type: atomic` maps are owned whole;
/// lists without a type stay atomic.
#[tokio::test]
async fn apply_follows_the_list_and_map_types_of_a_crd_schema() {
    let sim = sim().await;
    let client = sim.client().await.unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "routers.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "routers", "singular": "router", "kind": "Router"},
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {"spec": {"type": "object", "properties": {
                    "routes": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                        "items": {"type": "object", "properties": {"name": {"type": "string"}, "port": {"type": "integer"}}}},
                    "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
                    "selector": {"type": "object", "x-kubernetes-map-type": "atomic", "additionalProperties": {"type": "string"}},
                    "plain": {"type": "array", "items": {"type": "string"}}
                }}}}}}]}
    }))
    .unwrap();
    crds.create(&PostParams::default(), &crd).await.unwrap();
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", "v1", "Router"),
        "routers",
    );
    let api: Api<DynamicObject> = Api::namespaced_with(client, "default", &ar);
    let cfg = |spec: serde_json::Value| {
        Patch::Apply(
            json!({"apiVersion": "example.com/v1", "kind": "Router", "metadata": {"name": "r"}, "spec": spec}),
        )
    };
    api.patch("r", &PatchParams::apply("flux"), &cfg(json!({
        "routes": [{"name": "a", "port": 1}], "tags": ["x"], "selector": {"app": "a"}, "plain": ["p"]})))
        .await
        .unwrap();
    let r = api
        .patch(
            "r",
            &PatchParams::apply("argo"),
            &cfg(json!({
            "routes": [{"name": "b", "port": 2}], "tags": ["y"]})),
        )
        .await
        .unwrap();
    assert_eq!(
        r.data["spec"]["routes"],
        json!([{"name": "a", "port": 1}, {"name": "b", "port": 2}])
    );
    assert_eq!(r.data["spec"]["tags"], json!(["x", "y"]));
    let entries = r.metadata.managed_fields.unwrap();
    let argo = entries
        .iter()
        .find(|e| e.manager.as_deref() == Some("argo"))
        .unwrap();
    assert_eq!(
        argo.fields_v1.as_ref().unwrap().0,
        json!({"f:spec": {"f:routes": {"k:{\"name\":\"b\"}": {".": {}, "f:name": {}, "f:port": {}}}, "f:tags": {"v:\"y\"": {}}}})
    );
    // An atomic map and an untyped list are owned whole: changing them conflicts.
    for spec in [json!({"selector": {"app": "b"}}), json!({"plain": ["q"]})] {
        let err = api
            .patch("r", &PatchParams::apply("argo"), &cfg(spec.clone()))
            .await
            .unwrap_err();
        let kube::Error::Api(status) = err else {
            panic!("{err:?}")
        };
        assert_eq!(status.code, 409, "{spec}");
    }
}
