//! Every error path answers with a `Status` as the real server shapes it, and identity: tokens
//! map to users, 401 without one, 403 for what a user may not do.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use kubesim::{Access, SimConfig, User};
use serde_json::{Value, json};

use crate::support::*;

fn assert_status(body: &Value, code: u16, reason: &str) {
    assert_eq!(body["kind"], "Status", "{body}");
    assert_eq!(body["apiVersion"], "v1", "{body}");
    assert_eq!(body["status"], "Failure", "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["reason"], reason, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

const CM: &str = "/api/v1/namespaces/default/configmaps";

#[tokio::test]
async fn every_error_path_is_a_status() {
    let sim = sim().await;
    let json_ct = "application/json";
    let good = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"},"data":{"k":"v"}}"#;

    let (c, b) = raw(&sim, "GET", &format!("{CM}/missing"), ADMIN, "", "").await;
    assert_status(&b, 404, "NotFound");
    assert_eq!(b["message"], "configmaps \"missing\" not found");
    assert_eq!(
        b["details"],
        json!({"name": "missing", "kind": "configmaps"})
    );
    assert_eq!(c, 404);

    let (c, _) = raw(&sim, "POST", CM, ADMIN, json_ct, good).await;
    assert_eq!(c, 201);
    let (_, b) = raw(&sim, "POST", CM, ADMIN, json_ct, good).await;
    assert_status(&b, 409, "AlreadyExists");

    let stale = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","resourceVersion":"1"},"data":{}}"#;
    let (_, b) = raw(&sim, "PUT", &format!("{CM}/a"), ADMIN, json_ct, stale).await;
    assert_status(&b, 409, "Conflict");

    let (_, b) = raw(
        &sim,
        "POST",
        CM,
        ADMIN,
        json_ct,
        r#"{"metadata":{"name":"Bad_Name"}}"#,
    )
    .await;
    assert_status(&b, 422, "Invalid");
    assert_eq!(b["details"]["causes"][0]["field"], "metadata.name");
    assert_eq!(b["details"]["causes"][0]["reason"], "FieldValueInvalid");
    assert_eq!(b["details"]["kind"], "ConfigMap");

    let (_, b) = raw(&sim, "POST", CM, ADMIN, json_ct, r#"{"metadata":{}}"#).await;
    assert_status(&b, 422, "Invalid");
    assert_eq!(b["details"]["causes"][0]["reason"], "FieldValueRequired");

    for malformed in ["{not json", "[1,2]", "", "\"x\"", "{\"metadata\": 7}"] {
        let (_, b) = raw(&sim, "POST", CM, ADMIN, json_ct, malformed).await;
        assert_status(&b, 400, "BadRequest");
    }
    // `enabled: yes` read by a YAML 1.1 client becomes a boolean: refused like the real server.
    let (_, b) = raw(
        &sim,
        "POST",
        CM,
        ADMIN,
        json_ct,
        r#"{"metadata":{"name":"flags"},"data":{"enabled":true}}"#,
    )
    .await;
    assert_status(&b, 400, "BadRequest");
    assert!(
        b["message"]
            .as_str()
            .unwrap()
            .starts_with("ConfigMap in version \"v1\" cannot be handled as a ConfigMap"),
        "{b}"
    );
    let (_, b) = raw(
        &sim,
        "POST",
        CM,
        ADMIN,
        "application/yaml",
        "metadata:\n  name: flags\ndata:\n  enabled: yes\n",
    )
    .await;
    assert!(b["code"] == 400 || b["code"] == 201, "{b}");

    let (_, b) = raw(
        &sim,
        "PATCH",
        &format!("{CM}/a"),
        ADMIN,
        "application/json-patch+json",
        r#"[{"op":"remove","path":"/nope"}]"#,
    )
    .await;
    assert_status(&b, 422, "Invalid");
    let (_, b) = raw(
        &sim,
        "PATCH",
        &format!("{CM}/a"),
        ADMIN,
        "application/merge-patch+json",
        "{oops",
    )
    .await;
    assert_status(&b, 400, "BadRequest");
    let (_, b) = raw(&sim, "PATCH", &format!("{CM}/a"), ADMIN, "text/plain", "{}").await;
    assert_status(&b, 415, "UnsupportedMediaType");
    let (_, b) = raw(
        &sim,
        "PATCH",
        &format!("{CM}/a"),
        ADMIN,
        "application/apply-patch+yaml",
        "data: [",
    )
    .await;
    assert_status(&b, 400, "BadRequest");
    let (_, b) = raw(
        &sim,
        "PATCH",
        &format!("{CM}/a?fieldManager=x"),
        ADMIN,
        "application/apply-patch+yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: other\n",
    )
    .await;
    assert_status(&b, 400, "BadRequest");
    let (_, b) = raw(
        &sim,
        "POST",
        "/api/v1/namespaces/nope/configmaps",
        ADMIN,
        json_ct,
        good,
    )
    .await;
    assert_status(&b, 404, "NotFound");
    assert_eq!(b["message"], "namespaces \"nope\" not found");
    let (_, b) = raw(
        &sim,
        "GET",
        "/apis/nope.example.com/v1/things",
        ADMIN,
        "",
        "",
    )
    .await;
    assert_status(&b, 404, "NotFound");
    let (_, b) = raw(
        &sim,
        "GET",
        &format!("{CM}?labelSelector=bad%20key%3Dx"),
        ADMIN,
        "",
        "",
    )
    .await;
    assert_status(&b, 400, "BadRequest");
    let (_, b) = raw(
        &sim,
        "GET",
        &format!("{CM}?fieldSelector=spec.x%3D1"),
        ADMIN,
        "",
        "",
    )
    .await;
    assert_status(&b, 400, "BadRequest");
    let (_, b) = raw(
        &sim,
        "POST",
        "/api/v1/namespaces/default/configmaps/a/status",
        ADMIN,
        json_ct,
        good,
    )
    .await;
    assert_eq!(b["kind"], "Status");

    // Gone: a watch from a compacted resourceVersion (the error comes as an event).
    sim.faults().compact_history();
    let (_, b) = raw(
        &sim,
        "GET",
        &format!("{CM}?watch=true&resourceVersion=1"),
        ADMIN,
        "",
        "",
    )
    .await;
    assert_status(&b["object"], 410, "Expired");
    assert_eq!(b["type"], "ERROR");
}

#[tokio::test]
async fn tokens_identify_users_and_access_is_enforced() {
    let config = SimConfig::default()
        .with_user(User::admin("alice", "alice-token").with_groups(&["devs"]))
        .with_user(User::admin("bob", "bob-token").with_access(Access::ReadOnly));
    let sim = sim_with(config).await;
    let (_, b) = raw(&sim, "GET", CM, None, "", "").await;
    assert_status(&b, 401, "Unauthorized");
    let (_, b) = raw(&sim, "GET", CM, Some("wrong"), "", "").await;
    assert_status(&b, 401, "Unauthorized");

    let alice: Api<ConfigMap> = Api::namespaced(sim.client_for("alice").await.unwrap(), "default");
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "by-alice"}})).unwrap();
    alice.create(&PostParams::default(), &cm).await.unwrap();
    let bob: Api<ConfigMap> = Api::namespaced(sim.client_for("bob").await.unwrap(), "default");
    assert!(bob.get("by-alice").await.is_ok());
    let err = bob
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "by-bob"}})).unwrap(),
        )
        .await
        .unwrap_err();
    let kube::Error::Api(s) = err else { panic!() };
    assert_eq!((s.code, s.reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        s.message,
        "configmaps is forbidden: User \"bob\" cannot create resource \"configmaps\" in API group \"\" in the namespace \"default\""
    );

    let log = sim.audit_log();
    let created = log
        .iter()
        .find(|a| a.verb == "create" && a.name.is_empty() && a.user == "alice")
        .unwrap();
    assert_eq!(created.code, 201);
    assert!(created.groups.contains(&"devs".to_string()));
    assert!(
        log.iter()
            .any(|a| a.user == "bob" && a.verb == "create" && a.code == 403)
    );
    assert!(sim.client_for("nobody").await.is_err());
}
