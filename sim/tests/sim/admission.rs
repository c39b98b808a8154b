//! Validating admission webhooks: the AdmissionReviews a registered webhook receives (users,
//! impersonation, dry runs, generateName), denials, failure policies, HTTPS with a caBundle.

use std::sync::Arc;

use base64::Engine;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, PostParams};
use kubesim::{SimConfig, SimHandle, User};
use serde_json::{Value, json};

use crate::support::*;

/// An answer that allows (or denies with `message`) whatever it is asked.
fn verdict(allowed: bool, message: &'static str) -> Answer {
    Arc::new(move |review: &Value| {
        let mut response = json!({"uid": review["request"]["uid"], "allowed": allowed});
        if !allowed {
            response["status"] = json!({"message": message});
        }
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response})
    })
}

/// Register a webhook for ConfigMaps in every namespace.
async fn register(sim: &SimHandle, name: &str, client_config: Value, failure_policy: &str) {
    let body = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [{
            "name": name,
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": failure_policy,
            "timeoutSeconds": 2,
            "clientConfig": client_config,
            "rules": [{"operations": ["CREATE", "UPDATE", "DELETE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"], "scope": "Namespaced"}],
        }],
    });
    let (code, b) = raw(
        sim,
        "POST",
        "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations",
        ADMIN,
        "application/json",
        &body.to_string(),
    )
    .await;
    assert_eq!(code, 201, "{b}");
}

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"k": "v"}})).unwrap()
}

#[tokio::test]
async fn webhooks_receive_real_admission_reviews() {
    let mut hook = Receiver::start(None, verdict(true, "")).await;
    let sim = sim_with(
        SimConfig::default().with_user(User::admin("alice", "alice-token").with_uid("alice-uid")),
    )
    .await;
    register(
        &sim,
        "record.kubesim.test",
        json!({"url": format!("{}/validate", hook.url)}),
        "Fail",
    )
    .await;
    let api: Api<ConfigMap> = Api::namespaced(sim.client_for("alice").await.unwrap(), "default");

    // generateName create: the object admission sees is the one stored, name and uid included.
    let mut gen_cm = cm("");
    gen_cm.metadata.name = None;
    gen_cm.metadata.generate_name = Some("gen-".into());
    let created = api.create(&PostParams::default(), &gen_cm).await.unwrap();
    let review = hook.next().await;
    assert_eq!(review["kind"], "AdmissionReview");
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
    let r = &review["request"];
    assert_eq!(r["operation"], "CREATE");
    assert_eq!(
        r["kind"],
        json!({"group": "", "version": "v1", "kind": "ConfigMap"})
    );
    assert_eq!(
        r["resource"],
        json!({"group": "", "version": "v1", "resource": "configmaps"})
    );
    assert_eq!(r["requestKind"], r["kind"]);
    assert_eq!(r["requestResource"], r["resource"]);
    assert_eq!(r["namespace"], "default");
    let name = created.metadata.name.clone().unwrap();
    assert!(name.starts_with("gen-"));
    assert_eq!(r["name"], name.as_str());
    assert_eq!(r["object"]["metadata"]["name"], name.as_str());
    assert_eq!(r["object"]["metadata"]["generateName"], "gen-");
    assert_eq!(
        r["object"]["metadata"]["uid"].as_str(),
        created.metadata.uid.as_deref()
    );
    assert!(r["object"]["metadata"].get("resourceVersion").is_none());
    assert_eq!(r["object"]["kind"], "ConfigMap");
    assert!(r["object"]["metadata"]["managedFields"].is_array());
    assert_eq!(r["oldObject"], Value::Null);
    assert_eq!(r["dryRun"], false);
    assert_eq!(
        r["options"],
        json!({"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"})
    );
    assert_eq!(
        r["userInfo"],
        json!({"username": "alice", "uid": "alice-uid", "groups": ["system:masters", "system:authenticated"]})
    );
    assert!(r["uid"].as_str().is_some_and(|u| u.len() == 36));

    // Update: oldObject is the stored object, object carries its resourceVersion.
    let mut changed = created.clone();
    changed.data = Some([("k".to_string(), "w".to_string())].into());
    api.replace(&name, &PostParams::default(), &changed)
        .await
        .unwrap();
    let r = hook.next().await["request"].clone();
    assert_eq!(r["operation"], "UPDATE");
    assert_eq!(r["options"]["kind"], "UpdateOptions");
    assert_eq!(r["oldObject"]["data"]["k"], "v");
    assert_eq!(r["object"]["data"]["k"], "w");
    assert_eq!(
        r["object"]["metadata"]["resourceVersion"].as_str(),
        created.metadata.resource_version.as_deref()
    );

    // Dry run: flagged, options carry dryRun, nothing is stored.
    let pp = PostParams {
        dry_run: true,
        ..Default::default()
    };
    api.create(&pp, &cm("dry")).await.unwrap();
    let r = hook.next().await["request"].clone();
    assert_eq!(r["dryRun"], true);
    assert_eq!(r["options"]["dryRun"], json!(["All"]));
    assert!(api.get_opt("dry").await.unwrap().is_none());

    // Impersonation: the review names the impersonated user.
    let (code, b) = raw_with(
        &sim,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        ADMIN,
        "application/json",
        r#"{"metadata":{"name":"by-carol"}}"#,
        &[("Impersonate-User", "carol"), ("Impersonate-Group", "devs")],
    )
    .await;
    assert_eq!(code, 201, "{b}");
    let r = hook.next().await["request"].clone();
    assert_eq!(
        r["userInfo"],
        json!({"username": "carol", "groups": ["devs", "system:authenticated"]})
    );

    // Delete: no object, the stored one as oldObject, DeleteOptions.
    api.delete(&name, &DeleteParams::default()).await.unwrap();
    let r = hook.next().await["request"].clone();
    assert_eq!(r["operation"], "DELETE");
    assert_eq!(r["object"], Value::Null);
    assert_eq!(r["oldObject"]["data"]["k"], "w");
    assert_eq!(r["options"]["kind"], "DeleteOptions");

    // The configurations themselves never go to webhooks; other resources do not match.
    let log = sim.audit_log();
    let carol = log.iter().find(|e| e.name.is_empty() && e.user == "carol");
    assert_eq!(carol.and_then(|e| e.impersonator.as_deref()), Some("admin"));
    assert!(hook.rx.try_recv().is_err());
}

#[tokio::test]
async fn a_denial_blocks_the_write() {
    let hook = Receiver::start(None, verdict(false, "nope")).await;
    let sim = sim().await;
    register(&sim, "deny.kubesim.test", json!({"url": hook.url}), "Fail").await;
    let (code, b) = raw(
        &sim,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        ADMIN,
        "application/json",
        r#"{"metadata":{"name":"x"}}"#,
    )
    .await;
    assert_eq!(code, 403);
    assert_eq!(
        b["message"],
        "admission webhook \"deny.kubesim.test\" denied the request: nope"
    );
    assert_eq!(b["status"], "Failure");
    assert!(b.get("reason").is_none());
    let (code, _) = raw(
        &sim,
        "GET",
        "/api/v1/namespaces/default/configmaps/x",
        ADMIN,
        "",
        "",
    )
    .await;
    assert_eq!(code, 404);
}

#[tokio::test]
async fn failure_policy_decides_when_the_webhook_is_down() {
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/", l.local_addr().unwrap())
    };
    let sim = sim().await;
    register(&sim, "ignore.kubesim.test", json!({"url": dead}), "Ignore").await;
    let post = |name: &str| {
        let body = format!(r#"{{"metadata":{{"name":"{name}"}}}}"#);
        let sim = &sim;
        async move {
            raw(
                sim,
                "POST",
                "/api/v1/namespaces/default/configmaps",
                ADMIN,
                "application/json",
                &body,
            )
            .await
        }
    };
    assert_eq!(post("a").await.0, 201);
    register(&sim, "fail.kubesim.test", json!({"url": dead}), "Fail").await;
    let (code, b) = post("b").await;
    assert_eq!(code, 500);
    assert_eq!(b["reason"], "InternalError");
    let m = b["message"].as_str().unwrap();
    assert!(
        m.starts_with("Internal error occurred: failed calling webhook \"fail.kubesim.test\": failed to call webhook: Post"),
        "{m}"
    );
    assert!(m.contains("?timeout=2s"), "{m}");
}

#[tokio::test]
async fn https_webhooks_are_verified_against_their_ca_bundle() {
    let pki = Pki::new();
    let mut hook = Receiver::start(Some(pki.server.clone()), verdict(true, "")).await;
    let sim = sim().await;
    let bundle = base64::engine::general_purpose::STANDARD.encode(&pki.ca_pem);
    register(
        &sim,
        "tls.kubesim.test",
        json!({"url": hook.url, "caBundle": bundle}),
        "Fail",
    )
    .await;
    let api: Api<ConfigMap> = Api::namespaced(sim.client().await.unwrap(), "default");
    api.create(&PostParams::default(), &cm("a")).await.unwrap();
    assert_eq!(hook.next().await["request"]["name"], "a");

    // A bundle of another CA: the call fails, and failurePolicy Fail rejects.
    let other = base64::engine::general_purpose::STANDARD.encode(Pki::new().ca_pem);
    let (code, b) = raw(
        &sim,
        "PUT",
        "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/tls.kubesim.test",
        ADMIN,
        "application/json",
        &json!({"metadata": {"name": "tls.kubesim.test"}, "webhooks": [{
            "name": "tls.kubesim.test", "admissionReviewVersions": ["v1"], "sideEffects": "None",
            "clientConfig": {"url": hook.url, "caBundle": other},
            "rules": [{"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"]}]}]})
        .to_string(),
    )
    .await;
    assert_eq!(code, 200, "{b}");
    let err = api
        .create(&PostParams::default(), &cm("b"))
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => assert_eq!(s.code, 500),
        other => panic!("unexpected {other}"),
    }
}
