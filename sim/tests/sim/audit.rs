//! The audit webhook backend: EventList batches of ResponseComplete events with users,
//! impersonation, objects and failures, over mutual TLS; delayed, reordered, duplicated batches.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kubesim::{AuditSink, SimConfig, User};
use serde_json::{Value, json};

use crate::support::*;

fn ok() -> Answer {
    Arc::new(|_| json!({}))
}

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"k": "v"}})).unwrap()
}

/// Collect events from batches until `n` have arrived.
async fn events(sink: &mut Receiver, n: usize) -> Vec<Value> {
    let mut out = Vec::new();
    while out.len() < n {
        let batch = sink.next().await;
        assert_eq!(batch["kind"], "EventList");
        assert_eq!(batch["apiVersion"], "audit.k8s.io/v1");
        out.extend(batch["items"].as_array().cloned().unwrap_or_default());
    }
    out
}

fn is_micro_timestamp(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.len() == 27 && s.ends_with('Z') && s.as_bytes()[19] == b'.')
}

#[tokio::test]
async fn batches_record_users_objects_and_failures_over_mutual_tls() {
    let pki = Pki::new();
    let mut sink = Receiver::start(Some(pki.server_requiring_client_certs()), ok()).await;
    let sim = sim_with(
        SimConfig::default()
            .with_user(User::admin("alice", "alice-token"))
            .with_user(User::admin("bob", "bob-token"))
            .with_audit_sink(AuditSink::new(&sink.url).with_tls(
                &pki.ca_pem,
                Some((&pki.client_cert_pem, &pki.client_key_pem)),
            )),
    )
    .await;
    let alice: Api<ConfigMap> = Api::namespaced(sim.client_for("alice").await.unwrap(), "default");
    let bob: Api<ConfigMap> = Api::namespaced(sim.client_for("bob").await.unwrap(), "default");

    let created = alice
        .create(&PostParams::default(), &cm("a"))
        .await
        .unwrap();
    let mut edited = created.clone();
    edited.data = Some([("k".to_string(), "w".to_string())].into());
    let updated = bob
        .replace("a", &PostParams::default(), &edited)
        .await
        .unwrap();
    // A stale resourceVersion: 409.
    assert!(
        bob.replace("a", &PostParams::default(), &edited)
            .await
            .is_err()
    );
    // A dry run.
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    alice.create(&dry, &cm("dry")).await.unwrap();
    // Impersonation.
    let (code, _) = raw_with(
        &sim,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/a",
        ADMIN,
        "application/merge-patch+json",
        r#"{"data":{"k":"carol"}}"#,
        &[("Impersonate-User", "carol")],
    )
    .await;
    assert_eq!(code, 200);
    // A read is not audited to the sink.
    alice.get("a").await.unwrap();
    alice.delete("a", &Default::default()).await.unwrap();

    let ev = events(&mut sink, 6).await;
    let verbs: Vec<&str> = ev.iter().map(|e| e["verb"].as_str().unwrap()).collect();
    assert_eq!(
        verbs,
        ["create", "update", "update", "create", "patch", "delete"]
    );
    for e in &ev {
        assert_eq!(e["level"], "RequestResponse");
        assert_eq!(e["stage"], "ResponseComplete");
        assert!(e.get("kind").is_none());
        assert!(is_micro_timestamp(&e["requestReceivedTimestamp"]), "{e}");
        assert!(is_micro_timestamp(&e["stageTimestamp"]), "{e}");
        assert_eq!(e["sourceIPs"], json!(["127.0.0.1"]));
        assert_eq!(e["annotations"]["authorization.k8s.io/decision"], "allow");
        assert!(e["auditID"].as_str().is_some_and(|a| a.len() == 36));
    }
    let c = &ev[0];
    assert_eq!(c["user"]["username"], "alice");
    assert!(
        c["requestURI"]
            .as_str()
            .is_some_and(|u| u.starts_with("/api/v1/namespaces/default/configmaps")),
        "{c}"
    );
    assert_eq!(
        c["objectRef"],
        json!({"resource": "configmaps", "namespace": "default", "name": "a", "apiVersion": "v1"})
    );
    assert_eq!(c["responseStatus"], json!({"metadata": {}, "code": 201}));
    assert_eq!(c["requestObject"]["metadata"]["name"], "a");
    assert_eq!(
        c["responseObject"]["metadata"]["resourceVersion"].as_str(),
        created.metadata.resource_version.as_deref()
    );
    let u = &ev[1];
    assert_eq!(u["user"]["username"], "bob");
    assert_eq!(
        u["objectRef"]["resourceVersion"].as_str(),
        created.metadata.resource_version.as_deref()
    );
    assert_eq!(
        u["objectRef"]["uid"].as_str(),
        created.metadata.uid.as_deref()
    );
    assert_eq!(
        u["responseObject"]["metadata"]["resourceVersion"].as_str(),
        updated.metadata.resource_version.as_deref()
    );
    let conflict = &ev[2];
    assert_eq!(conflict["responseStatus"]["code"], 409);
    assert_eq!(conflict["responseStatus"]["reason"], "Conflict");
    assert_eq!(conflict["responseObject"]["kind"], "Status");
    let d = &ev[3];
    assert!(d["requestURI"].as_str().unwrap().contains("dryRun=All"));
    assert!(
        d["responseObject"]["metadata"]
            .get("resourceVersion")
            .is_none()
    );
    let p = &ev[4];
    assert_eq!(p["user"]["username"], "admin");
    assert_eq!(
        p["impersonatedUser"],
        json!({"username": "carol", "groups": ["system:authenticated"]})
    );
    assert_eq!(p["requestObject"], json!({"data": {"k": "carol"}}));
    let del = &ev[5];
    assert_eq!(del["requestObject"]["kind"], "DeleteOptions", "{del}");
    assert_eq!(del["responseObject"]["status"], "Success");
}

#[tokio::test]
async fn scale_and_status_writes_are_audited_with_their_subresource() {
    let mut sink = Receiver::start(None, ok()).await;
    let sim = sim_with(SimConfig::default().with_audit_sink(AuditSink::new(&sink.url))).await;
    let api: Api<Deployment> = Api::namespaced(sim.client().await.unwrap(), "default");
    let d: Deployment = serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": {
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}}}}))
    .unwrap();
    api.create(&PostParams::default(), &d).await.unwrap();
    api.patch_scale(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 3}})),
    )
    .await
    .unwrap();
    let ev = events(&mut sink, 2).await;
    let s = &ev[1];
    assert_eq!(s["verb"], "patch");
    assert_eq!(
        s["objectRef"],
        json!({"resource": "deployments", "namespace": "default", "name": "web", "apiGroup": "apps", "apiVersion": "v1", "subresource": "scale"})
    );
    assert_eq!(s["responseObject"]["kind"], "Scale");
    assert_eq!(s["responseObject"]["spec"]["replicas"], 3);
}

#[tokio::test]
async fn faults_reorder_duplicate_and_delay_batches() {
    let mut sink = Receiver::start(None, ok()).await;
    let sim = sim_with(
        SimConfig::default()
            .with_audit_sink(AuditSink::new(&sink.url).with_batch(1, Duration::from_millis(10))),
    )
    .await;
    let api: Api<ConfigMap> = Api::namespaced(sim.client().await.unwrap(), "default");
    let name_of = |b: &Value| {
        b["items"][0]["objectRef"]["name"]
            .as_str()
            .unwrap()
            .to_string()
    };

    sim.faults().reorder_audit(true);
    api.create(&PostParams::default(), &cm("first"))
        .await
        .unwrap();
    api.create(&PostParams::default(), &cm("second"))
        .await
        .unwrap();
    assert_eq!(name_of(&sink.next().await), "second");
    assert_eq!(name_of(&sink.next().await), "first");
    sim.faults().reorder_audit(false);

    sim.faults().duplicate_audit(true);
    api.create(&PostParams::default(), &cm("twice"))
        .await
        .unwrap();
    let (x, y) = (sink.next().await, sink.next().await);
    assert_eq!(name_of(&x), "twice");
    assert_eq!(x, y);
    sim.faults().duplicate_audit(false);

    sim.faults().delay_audit(Duration::from_millis(400));
    let t = Instant::now();
    api.create(&PostParams::default(), &cm("late"))
        .await
        .unwrap();
    assert_eq!(name_of(&sink.next().await), "late");
    assert!(t.elapsed() >= Duration::from_millis(400));
}

#[tokio::test]
async fn batches_hold_many_events_and_failed_posts_are_retried() {
    // The sink fails the first POST: the batch is retried.
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = calls.clone();
    let mut sink = Receiver::start(
        None,
        Arc::new(move |_| {
            if seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                json!({"__status": 500})
            } else {
                json!({})
            }
        }),
    )
    .await;
    let sim = sim_with(
        SimConfig::default()
            .with_audit_sink(AuditSink::new(&sink.url).with_batch(100, Duration::from_millis(200))),
    )
    .await;
    let api: Api<ConfigMap> = Api::namespaced(sim.client().await.unwrap(), "default");
    for i in 0..5 {
        api.create(&PostParams::default(), &cm(&format!("c{i}")))
            .await
            .unwrap();
    }
    let failed = sink.next().await;
    let retried = sink.next().await;
    assert_eq!(failed["items"].as_array().map(Vec::len), Some(5));
    assert_eq!(failed, retried);
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
}
