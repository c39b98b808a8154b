//! SealedSecrets (issue #16): the `SealedSecret` is recorded like any custom resource; the
//! `Secret` its controller creates from it is not (controller-owned), even with
//! `--allow-secrets`; a reconciler applying the recorded `SealedSecret` back causes no commit.

use crate::agent_pairing::flux_apply;
use crate::support::agent_env::*;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_secret_is_recorded_and_its_secret_never_is() {
    let env = Env::new().await;
    env.configure().await;
    install_crd(
        &env,
        "bitnami.com",
        "v1alpha1",
        "SealedSecret",
        "sealedsecrets",
    )
    .await;
    env.watch_rules(json!([
            {"apiGroups": [""], "resources": ["configmaps", "secrets"]},
            {"apiGroups": ["bitnami.com"], "resources": ["sealedsecrets"]}]))
        .await;
    // Even with Secrets allowed, the controller's Secret stays out.
    let agent = env.start_with("state", true);
    agent.ready().await;

    // The SealedSecret, as in Argo CD's test data (bitnami-sealedsecret-healthy.yaml).
    apply(
        &env.client,
        json!({"apiVersion": "bitnami.com/v1alpha1", "kind": "SealedSecret",
        "metadata": {"name": "registry", "namespace": "shop"},
        "spec": {"encryptedData": {".dockerconfigjson": "AgBy3i4OJSWK+PiTySYZZA=="},
            "template": {"metadata": {"name": "registry", "namespace": "shop"},
                "type": "kubernetes.io/dockerconfigjson"}}}),
    )
    .await;
    let sealed = api_of(
        &env.client,
        &json!({"apiVersion": "bitnami.com/v1alpha1",
        "kind": "SealedSecret", "metadata": {"namespace": "shop"}}),
    )
    .await
    .get("registry")
    .await
    .expect("the SealedSecret");
    // What the controller does: the Secret, owned by the SealedSecret.
    Api::<Secret>::namespaced(env.client.clone(), "shop")
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "registry",
                "ownerReferences": [{"apiVersion": "bitnami.com/v1alpha1", "kind": "SealedSecret",
                    "name": "registry", "uid": sealed.metadata.uid, "controller": true}]},
                "type": "kubernetes.io/dockerconfigjson",
                "stringData": {".dockerconfigjson": "{\"auths\":{\"r\":{\"auth\":\"never-commit-this\"}}}"}}))
            .expect("secret"),
        )
        .await
        .expect("the controller's Secret");

    let sealed_path = format!("{FOLDER}/shop/bitnami.com/sealedsecrets/registry.yaml");
    until("the SealedSecret in Git", || {
        show(&env.repo, &sealed_path).is_some()
    })
    .await;
    // A sentinel after the Secret: once it lands, the Secret's event was decided too.
    env.put_configmap("shop", "sentinel", "1").await;
    until("the sentinel", || env.file("shop", "sentinel").is_some()).await;
    assert!(
        show(
            &env.repo,
            &format!("{FOLDER}/shop/core/secrets/registry.yaml")
        )
        .is_none(),
        "the controller's Secret must never be written"
    );
    let dir = env.repo.to_str().expect("utf-8");
    let history =
        crate::support::git_servers::git(&env.repo, &["--git-dir", dir, "log", "-p", "main"], None);
    assert!(!history.contains("never-commit-this"));

    // A reconciler applying the folder back: no commit.
    let settled = env.subjects().len();
    for _ in 0..3 {
        flux_apply(&env, FOLDER).await;
    }
    env.sentinel("2").await;
    assert_eq!(env.subjects().len(), settled + 1, "{:?}", env.subjects());
    agent.stop().await;
}
