//! Server-side apply and managedFields as kube-rs sees them: ownership after create, update and
//! apply; conflicts and force; defaults owned by nobody under apply; dry runs.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::support::*;

fn fields(obj: &impl serde::Serialize) -> Vec<Value> {
    let v = serde_json::to_value(obj).unwrap();
    v["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn entry<'a>(entries: &'a [Value], manager: &str) -> &'a Value {
    entries
        .iter()
        .find(|e| e["manager"] == manager)
        .unwrap_or_else(|| panic!("no manager {manager} in {entries:?}"))
}

fn cm(v: Value) -> ConfigMap {
    serde_json::from_value(v).unwrap()
}

#[tokio::test]
async fn managed_fields_after_create_update_and_apply() {
    let sim = sim().await;
    let api: Api<ConfigMap> = Api::namespaced(sim.client().await.unwrap(), "default");
    let pp = |m: &str| PostParams {
        field_manager: Some(m.into()),
        ..Default::default()
    };
    let created = api
        .create(&pp("creator"), &cm(json!({"metadata": {"name": "m", "labels": {"team": "a"}}, "data": {"a": "1", "b": "1"}})))
        .await
        .unwrap();
    let e = fields(&created);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0]["operation"], "Update");
    assert_eq!(e[0]["apiVersion"], "v1");
    assert_eq!(
        e[0]["fieldsV1"],
        json!({"f:data": {".": {}, "f:a": {}, "f:b": {}}, "f:metadata": {"f:labels": {".": {}, "f:team": {}}}})
    );

    let mut changed = created.clone();
    changed
        .data
        .as_mut()
        .unwrap()
        .insert("a".into(), "2".into());
    let updated = api.replace("m", &pp("updater"), &changed).await.unwrap();
    let e = fields(&updated);
    assert_eq!(
        entry(&e, "creator")["fieldsV1"],
        json!({"f:data": {".": {}, "f:b": {}}, "f:metadata": {"f:labels": {".": {}, "f:team": {}}}})
    );
    assert_eq!(
        entry(&e, "updater")["fieldsV1"],
        json!({"f:data": {"f:a": {}}})
    );

    let applied = api
        .patch("m", &PatchParams::apply("applier"), &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "m"}, "data": {"c": "1"}})))
        .await
        .unwrap();
    let e = fields(&applied);
    assert_eq!(e[0]["manager"], "applier", "Apply entries come first");
    assert_eq!(e[0]["operation"], "Apply");
    assert_eq!(e[0]["fieldsV1"], json!({"f:data": {"f:c": {}}}));
    assert_eq!(applied.data.unwrap().len(), 3);
}

#[tokio::test]
async fn apply_conflicts_are_409_until_forced() {
    let sim = sim().await;
    let api: Api<ConfigMap> = Api::namespaced(sim.client().await.unwrap(), "default");
    let config = |v: &str| {
        Patch::Apply(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": v}}),
        )
    };
    api.patch("c", &PatchParams::apply("flux"), &config("1"))
        .await
        .unwrap();
    // Same value: shared ownership, no conflict.
    api.patch("c", &PatchParams::apply("argo"), &config("1"))
        .await
        .unwrap();
    let err = api
        .patch("c", &PatchParams::apply("argo"), &config("2"))
        .await
        .unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!("expected an API error, got {err:?}")
    };
    assert_eq!(status.code, 409);
    assert_eq!(status.reason, "Conflict");
    assert_eq!(
        status.message,
        "Apply failed with 1 conflict: conflict with \"flux\": .data.k"
    );
    let causes = status.details.unwrap().causes;
    assert_eq!(causes[0].field, ".data.k");
    assert_eq!(causes[0].reason, "FieldManagerConflict");
    let forced = api
        .patch("c", &PatchParams::apply("argo").force(), &config("2"))
        .await
        .unwrap();
    assert_eq!(forced.data.as_ref().unwrap()["k"], "2");
    let e = fields(&forced);
    assert!(
        e.iter().all(|x| x["manager"] != "flux"),
        "flux lost its only field: {e:?}"
    );
    assert_eq!(
        entry(&e, "argo")["fieldsV1"],
        json!({"f:data": {"f:k": {}}})
    );
}

fn deployment() -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}})
}

#[tokio::test]
async fn defaults_are_not_owned_by_the_apply_manager() {
    let sim = sim().await;
    let api: Api<Deployment> = Api::namespaced(sim.client().await.unwrap(), "default");
    let d = api
        .patch(
            "web",
            &PatchParams::apply("flux"),
            &Patch::Apply(deployment()),
        )
        .await
        .unwrap();
    let v = serde_json::to_value(&d).unwrap();
    assert_eq!(v["spec"]["replicas"], 1);
    assert_eq!(v["spec"]["progressDeadlineSeconds"], 600);
    assert_eq!(
        v["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
        "IfNotPresent"
    );
    let e = fields(&d);
    assert_eq!(e.len(), 1, "only the applier: {e:?}");
    assert_eq!(
        e[0]["fieldsV1"],
        json!({"f:spec": {"f:selector": {}, "f:template": {"f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {".": {}, "f:image": {}, "f:name": {}}}}}}})
    );
    // Re-applying the same configuration changes nothing.
    let again = api
        .patch(
            "web",
            &PatchParams::apply("flux"),
            &Patch::Apply(deployment()),
        )
        .await
        .unwrap();
    assert_eq!(again.metadata.resource_version, d.metadata.resource_version);
}

#[tokio::test]
async fn an_update_manager_owns_the_defaults_of_what_it_created() {
    // As on a real server: defaulting happens when the request is decoded, before ownership.
    let sim = sim().await;
    let api: Api<Deployment> = Api::namespaced(sim.client().await.unwrap(), "default");
    let d: Deployment = serde_json::from_value(deployment()).unwrap();
    let created = api
        .create(
            &PostParams {
                field_manager: Some("kubectl-create".into()),
                ..Default::default()
            },
            &d,
        )
        .await
        .unwrap();
    let e = fields(&created);
    let spec = &entry(&e, "kubectl-create")["fieldsV1"]["f:spec"];
    assert!(
        spec.get("f:progressDeadlineSeconds").is_some() && spec.get("f:replicas").is_some(),
        "{spec}"
    );
    assert!(
        spec["f:strategy"]["f:rollingUpdate"].get(".").is_some(),
        "{spec}"
    );
    assert!(
        spec["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"web\"}"]
            .get("f:imagePullPolicy")
            .is_some()
    );
}

#[tokio::test]
async fn dry_run_stores_nothing_and_sends_no_event() {
    let sim = sim().await;
    let api: Api<ConfigMap> = Api::namespaced(sim.client().await.unwrap(), "default");
    let before = sim.resource_version();
    let pp = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let out = api
        .create(
            &pp,
            &cm(json!({"metadata": {"name": "dry"}, "data": {"a": "1"}})),
        )
        .await
        .unwrap();
    assert_eq!(out.metadata.name.as_deref(), Some("dry"));
    let applied = api
        .patch(
            "dry2",
            &PatchParams::apply("x").dry_run(),
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dry2"}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(applied.metadata.name.as_deref(), Some("dry2"));
    assert_eq!(sim.resource_version(), before);
    assert!(api.get_opt("dry").await.unwrap().is_none());
    assert!(api.get_opt("dry2").await.unwrap().is_none());
}

#[tokio::test]
async fn cluster_scoped_objects_created_by_apply_have_no_namespace() {
    use k8s_openapi::api::core::v1::Namespace;
    use k8s_openapi::api::rbac::v1::ClusterRole;
    let sim = sim().await;
    let client = sim.client().await.unwrap();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let roles: Api<ClusterRole> = Api::all(client.clone());
    let ns = namespaces
        .patch(
            "team",
            &PatchParams::apply("flux"),
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}}),
            ),
        )
        .await
        .unwrap();
    let role = roles
        .patch(
            "reader",
            &PatchParams::apply("flux"),
            &Patch::Apply(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": "reader"}, "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]})),
        )
        .await
        .unwrap();
    let raw_ns = serde_json::to_value(&ns).unwrap();
    let raw_role = serde_json::to_value(&role).unwrap();
    assert!(raw_ns["metadata"].get("namespace").is_none(), "{raw_ns}");
    assert!(
        raw_role["metadata"].get("namespace").is_none(),
        "{raw_role}"
    );
    // Also as stored and as a dry run sees it.
    let got = serde_json::to_value(roles.get("reader").await.unwrap()).unwrap();
    assert!(got["metadata"].get("namespace").is_none(), "{got}");
    let dry = roles
        .patch(
            "writer",
            &PatchParams::apply("flux").dry_run(),
            &Patch::Apply(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "writer"}})),
        )
        .await
        .unwrap();
    assert!(
        serde_json::to_value(&dry).unwrap()["metadata"]
            .get("namespace")
            .is_none()
    );
}
