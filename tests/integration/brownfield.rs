//! Brownfield loops (issue #11): objects made by hand — `kubectl create`, client-side
//! `kubectl apply`, a Helm-like Update manager — are recorded by the agent and then taken over by
//! reconcilers in mixed rounds: Flux-like server-side apply (`kustomize-controller`, force),
//! Argo CD-like client-side apply, and Argo CD with `ServerSideApply=true`. On the simulator's
//! structured-merge-diff semantics: no field is lost, the agent commits nothing, and a person's
//! edit between rounds is exactly one commit.

use crate::agent_pairing::{argo_apply, flux_apply, folder_documents};
use crate::support::agent_env::*;
use gitops_reverser::manifest::equivalence::compare;
use gitops_reverser::ops::metrics::{EventDecision, Metrics};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

/// Argo CD with `ServerSideApply=true`: every file of the folder server-side applied as
/// `argocd-controller` with its tracking annotation, forcing conflicts.
pub(crate) async fn argo_server_side_apply(env: &Env) -> usize {
    let documents = folder_documents(env, FOLDER, "main");
    for (_, mut object) in documents.iter().cloned() {
        let kind = object["kind"].as_str().unwrap_or_default().to_string();
        let ns = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        object["metadata"]
            .as_object_mut()
            .expect("metadata")
            .entry("annotations")
            .or_insert_with(|| json!({}))["argocd.argoproj.io/tracking-id"] =
            json!(format!("apps:{kind}:{ns}/{name}"));
        apply_as(&env.client, "argocd-controller", &object).await;
    }
    documents.len()
}

/// Decisions that wrote nothing: what the agent says about re-applied objects.
fn quiet(m: &Metrics) -> u64 {
    m.events(EventDecision::HashAnnotation)
        + m.events(EventDecision::Exact)
        + m.events(EventDecision::Near)
}

/// Every document in Git is still what the cluster holds (nothing was lost on the way).
async fn git_equals_live(env: &Env) {
    for (path, doc) in folder_documents(env, FOLDER, "main") {
        let live = api_of(&env.client, &doc)
            .await
            .get(doc["metadata"]["name"].as_str().expect("name"))
            .await
            .expect("live object");
        let live = serde_json::to_value(&live).expect("json");
        let verdict = compare(&doc, &live);
        assert!(verdict.is_equivalent(), "{path}: {verdict}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_made_objects_taken_over_by_reconcilers_lose_nothing_and_commit_nothing() {
    let env = Env::new().await;
    env.configure().await;
    apply(&env.client, json!({"apiVersion": "configbutler.ai/v1alpha1", "kind": "WatchRule",
        "metadata": {"name": "workloads", "namespace": "shop"},
        "spec": {"destinationRef": {"name": "dev"}, "rules": [
            {"apiGroups": ["apps"], "resources": ["deployments"]}, {"apiGroups": [""], "resources": ["services"]}]}})).await;

    // `kubectl create`: a POST with kubectl's manager name.
    let create = PostParams {
        field_manager: Some("kubectl-create".into()),
        ..Default::default()
    };
    Api::<ConfigMap>::namespaced(env.client.clone(), "shop")
        .create(
            &create,
            &serde_json::from_value(json!({"metadata": {"name": "settings"},
                "data": {"mode": "fast", "level": "3"}}))
            .expect("cm"),
        )
        .await
        .expect("kubectl create");
    // Client-side `kubectl apply`: the object with its last-applied annotation, by
    // kubectl-client-side-apply.
    let service = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}});
    let mut with_last_applied = service.clone();
    with_last_applied["metadata"]["annotations"] = json!({
        "kubectl.kubernetes.io/last-applied-configuration": service.to_string()});
    Api::<Service>::namespaced(env.client.clone(), "shop")
        .create(
            &PostParams {
                field_manager: Some("kubectl-client-side-apply".into()),
                ..Default::default()
            },
            &serde_json::from_value(with_last_applied).expect("svc"),
        )
        .await
        .expect("client-side apply");
    // A Helm-like Update manager.
    Api::<Deployment>::namespaced(env.client.clone(), "shop")
        .create(
            &PostParams {
                field_manager: Some("helm".into()),
                ..Default::default()
            },
            &serde_json::from_value(json!({"metadata": {"name": "web", "labels": {"app.kubernetes.io/managed-by": "Helm"}},
                "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{
                        "name": "web", "image": "nginx:1.27",
                        "ports": [{"containerPort": 8080}],
                        "env": [{"name": "MODE", "value": "fast"}],
                        "resources": {"requests": {"cpu": "500m", "memory": "64Mi"}}}]}}}}))
            .expect("deploy"),
        )
        .await
        .expect("helm");

    let agent = env.start("state");
    agent.ready().await;
    until("the three files", || {
        env.file("shop", "settings").is_some()
            && show(
                &env.repo,
                &format!("{FOLDER}/shop/apps/deployments/web.yaml"),
            )
            .is_some()
            && show(&env.repo, &format!("{FOLDER}/shop/core/services/web.yaml")).is_some()
    })
    .await;
    let settled = env.subjects().len();
    let metrics = &agent.agent.metrics;
    let written = metrics.events(EventDecision::Written);

    // Mixed rounds: Flux takes over, Argo CD applies client-side, then server-side, and again.
    let before = quiet(metrics);
    for _ in 0..3 {
        assert_eq!(flux_apply(&env, FOLDER).await, 3);
        assert_eq!(argo_apply(&env, FOLDER).await, 3);
        assert_eq!(argo_server_side_apply(&env).await, 3);
    }
    // A sentinel change after the rounds: once its commit lands, every earlier event has been
    // decided and any change it made committed before it (one queue, in order).
    env.put_configmap("shop", "sentinel", "1").await;
    until("the sentinel", || env.file("shop", "sentinel").is_some()).await;
    assert_eq!(
        metrics.events(EventDecision::Written),
        written + 1,
        "{:?}",
        env.subjects()
    );
    assert_eq!(env.subjects().len(), settled + 1, "{:?}", env.subjects());
    assert!(
        quiet(metrics) >= before + 3,
        "the agent saw the reconcilers' changes and wrote nothing"
    );
    let settled = settled + 1;
    git_equals_live(&env).await;

    // A person's edit between rounds: exactly one commit, then quiet again.
    Api::<Deployment>::namespaced(env.client.clone(), "shop")
        .patch(
            "web",
            &PatchParams::apply("kubectl-edit").force(),
            &Patch::Apply(json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web", "namespace": "shop"}, "spec": {"replicas": 5}})),
        )
        .await
        .expect("edit");
    until("the edit", || {
        show(
            &env.repo,
            &format!("{FOLDER}/shop/apps/deployments/web.yaml"),
        )
        .is_some_and(|f| f.contains("replicas: 5"))
    })
    .await;
    assert_eq!(env.subjects().len(), settled + 1);
    for _ in 0..2 {
        flux_apply(&env, FOLDER).await;
        argo_apply(&env, FOLDER).await;
        argo_server_side_apply(&env).await;
    }
    env.put_configmap("shop", "sentinel", "2").await;
    until("the second sentinel", || {
        env.file("shop", "sentinel")
            .is_some_and(|f| f.contains("value: \"2\""))
    })
    .await;
    assert_eq!(env.subjects().len(), settled + 2, "{:?}", env.subjects());
    git_equals_live(&env).await;
    agent.stop().await;
}
