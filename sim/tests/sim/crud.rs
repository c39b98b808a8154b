//! Storage semantics through kube-rs: metadata the server invents, generation, optimistic
//! concurrency, selectors and paging, finalizers, namespace cascade, subresources, defaults.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::support::*;

fn cm(name: &str, labels: serde_json::Value) -> ConfigMap {
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": labels}, "data": {"k": "v"}}),
    )
    .unwrap()
}

#[tokio::test]
async fn metadata_resource_versions_and_stale_updates() {
    let sim = sim().await;
    let api: Api<ConfigMap> = Api::namespaced(sim.client().await.unwrap(), "default");
    let a = api
        .create(&PostParams::default(), &cm("a", json!({})))
        .await
        .unwrap();
    let b = api
        .create(&PostParams::default(), &cm("b", json!({})))
        .await
        .unwrap();
    let rv = |c: &ConfigMap| {
        c.metadata
            .resource_version
            .clone()
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    assert!(rv(&b) > rv(&a), "one global, increasing resourceVersion");
    assert!(a.metadata.uid.is_some() && a.metadata.creation_timestamp.is_some());
    let mut stale = a.clone();
    stale.data = Some([("k".to_string(), "1".to_string())].into());
    api.replace("a", &PostParams::default(), &stale)
        .await
        .unwrap();
    let err = api
        .replace("a", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    let kube::Error::Api(s) = err else { panic!() };
    assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
    assert!(
        s.message.contains("the object has been modified"),
        "{}",
        s.message
    );

    let generated: ConfigMap =
        serde_json::from_value(json!({"metadata": {"generateName": "gen-"}})).unwrap();
    let g = api
        .create(&PostParams::default(), &generated)
        .await
        .unwrap();
    assert!(g.metadata.name.unwrap().starts_with("gen-"));
}

#[tokio::test]
async fn selectors_and_paging() {
    let sim = sim().await;
    let api: Api<ConfigMap> = Api::namespaced(sim.client().await.unwrap(), "default");
    for (i, env) in ["prod", "dev", "prod", "test", "prod"].iter().enumerate() {
        api.create(
            &PostParams::default(),
            &cm(&format!("c{i}"), json!({"env": env, "n": i.to_string()})),
        )
        .await
        .unwrap();
    }
    let names = |l: kube::api::ObjectList<ConfigMap>| {
        l.items
            .into_iter()
            .map(|c| c.metadata.name.unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("env=prod"))
                .await
                .unwrap()
        ),
        vec!["c0", "c2", "c4"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("env in (dev,test),n!=3"))
                .await
                .unwrap()
        ),
        vec!["c1"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("!env"))
                .await
                .unwrap()
        ),
        vec!["kube-root-ca.crt"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().fields("metadata.name=c3"))
                .await
                .unwrap()
        ),
        vec!["c3"]
    );
    let all: Api<ConfigMap> = Api::all(sim.client().await.unwrap());
    let in_default = all
        .list(&ListParams::default().fields("metadata.namespace=default"))
        .await
        .unwrap();
    assert_eq!(in_default.items.len(), 6);
    let page = api.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(page.items.len(), 2);
    assert_eq!(page.metadata.remaining_item_count, Some(4));
    let mut seen = names(page.clone());
    let mut token = page.metadata.continue_;
    while let Some(t) = token {
        let next = api
            .list(&ListParams::default().limit(2).continue_token(&t))
            .await
            .unwrap();
        token = next.metadata.continue_.clone();
        seen.extend(names(next));
    }
    assert_eq!(seen.len(), 6);
    let deleted = api
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels("env=prod"),
        )
        .await
        .unwrap();
    assert_eq!(deleted.left().unwrap().items.len(), 3);
    assert_eq!(
        api.list(&ListParams::default()).await.unwrap().items.len(),
        3
    );
}

#[tokio::test]
async fn finalizers_namespaces_and_their_cascade() {
    let sim = sim().await;
    let client = sim.client().await.unwrap();
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "team"}})).unwrap(),
    )
    .await
    .unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "team");
    let mut held = cm("held", json!({}));
    held.metadata.finalizers = Some(vec!["example.com/keep".into()]);
    api.create(&PostParams::default(), &held).await.unwrap();
    api.create(&PostParams::default(), &cm("plain", json!({})))
        .await
        .unwrap();
    nss.delete("team", &DeleteParams::default()).await.unwrap();
    assert!(
        api.get_opt("plain").await.unwrap().is_none(),
        "content without finalizers is gone"
    );
    let marked = api.get("held").await.unwrap();
    assert!(
        marked.metadata.deletion_timestamp.is_some(),
        "held back by its finalizer"
    );
    let ns = nss.get("team").await.unwrap();
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Terminating"));
    let err = api
        .create(&PostParams::default(), &cm("late", json!({})))
        .await
        .unwrap_err();
    let kube::Error::Api(s) = err else { panic!() };
    assert_eq!((s.code, s.reason.as_str()), (403, "Forbidden"));
    api.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(api.get_opt("held").await.unwrap().is_none());
    assert!(
        nss.get_opt("team").await.unwrap().is_none(),
        "the namespace goes once empty"
    );
    let err = api
        .create(&PostParams::default(), &cm("x", json!({})))
        .await
        .unwrap_err();
    let kube::Error::Api(s) = err else { panic!() };
    assert_eq!(
        (s.code, s.message.as_str()),
        (404, "namespaces \"team\" not found")
    );
}

#[tokio::test]
async fn generation_status_and_scale_subresources() {
    let sim = sim().await;
    let api: Api<Deployment> = Api::namespaced(sim.client().await.unwrap(), "default");
    let d: Deployment = serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": {"selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}})).unwrap();
    let d = api.create(&PostParams::default(), &d).await.unwrap();
    assert_eq!(d.metadata.generation, Some(1));
    let labelled = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        labelled.metadata.generation,
        Some(1),
        "metadata changes keep the generation"
    );
    let status = api
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"replicas": 1, "observedGeneration": 1}})),
        )
        .await
        .unwrap();
    assert_eq!(status.status.unwrap().observed_generation, Some(1));
    assert_eq!(status.metadata.generation, Some(1));
    let scale = api.get_scale("web").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(1));
    assert_eq!(scale.status.unwrap().selector.as_deref(), Some("app=web"));
    api.patch_scale(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 4}})),
    )
    .await
    .unwrap();
    let d = api.get("web").await.unwrap();
    assert_eq!(d.spec.unwrap().replicas, Some(4));
    assert_eq!(d.metadata.generation, Some(2));
    assert_eq!(
        d.status.unwrap().replicas,
        Some(1),
        "spec writes keep the status"
    );
}

#[tokio::test]
async fn services_get_their_defaults_and_an_ip() {
    let sim = sim().await;
    let api: Api<Service> = Api::namespaced(sim.client().await.unwrap(), "default");
    let s: Service = serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}})).unwrap();
    let s = api.create(&PostParams::default(), &s).await.unwrap();
    let v = serde_json::to_value(&s).unwrap();
    let spec = &v["spec"];
    assert_eq!(spec["type"], "ClusterIP");
    assert_eq!(spec["sessionAffinity"], "None");
    assert_eq!(spec["internalTrafficPolicy"], "Cluster");
    assert_eq!(spec["ipFamilies"], json!(["IPv4"]));
    assert_eq!(spec["ipFamilyPolicy"], "SingleStack");
    assert!(spec["clusterIP"].as_str().unwrap().starts_with("10.96."));
    assert_eq!(spec["clusterIPs"][0], spec["clusterIP"]);
    assert_eq!(spec["ports"][0]["targetPort"], 80);
    // A replace without the allocated fields keeps them.
    let mut bare: Service = serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 81}]}})).unwrap();
    bare.metadata.resource_version = s.metadata.resource_version.clone();
    let r = api
        .replace("web", &PostParams::default(), &bare)
        .await
        .unwrap();
    assert_eq!(r.spec.unwrap().cluster_ip, s.spec.unwrap().cluster_ip);
}
