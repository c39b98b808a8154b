//! A real-world corpus (issue #11): the ingress-nginx and Flux install manifests (50 documents,
//! 15 kinds; tests/data/realworld-manifests/SOURCES.md) applied to the simulator, recorded by
//! the agent, then re-applied crosswise Flux-style and Argo CD-style (client- and server-side)
//! over 5 rounds: zero commits; and every file the agent committed is accepted by
//! `kubectl apply --dry-run=server`.

use crate::agent_pairing::{argo_apply, flux_apply, folder_documents};
use crate::brownfield::argo_server_side_apply;
use crate::support::agent_env::*;
use crate::support::git_servers::require_binary;
use serde_json::json;
use std::path::Path;

fn corpus() -> Vec<serde_json::Value> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/realworld-manifests");
    let mut docs = Vec::new();
    for file in [
        "ingress-nginx-controller-v1.15.1-cloud-deploy.yaml",
        "flux2-v2.3.0-gotk-components.yaml",
    ] {
        let text = std::fs::read_to_string(dir.join(file)).expect("corpus file");
        docs.extend(
            gitops_reverser::manifest::yaml::parse_documents(&text, file)
                .expect("the corpus parses"),
        );
    }
    // Namespaces and CRDs first, as any installer orders them.
    docs.sort_by_key(|d| match d["kind"].as_str() {
        Some("Namespace") => 0,
        Some("CustomResourceDefinition") => 1,
        _ => 2,
    });
    docs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_install_manifests_reapplied_crosswise_cause_no_commit_and_stay_applicable() {
    let kubectl = require_binary("kubectl", "kubectl").expect("kubectl");
    let config = kubesim::SimConfig {
        anonymous: Some("admin".into()),
        ..kubesim::SimConfig::default()
    };
    let env = Env::with(config).await;
    let docs = corpus();
    assert_eq!(docs.len(), 50);
    let kinds: std::collections::BTreeSet<&str> =
        docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert!(kinds.len() >= 15, "{kinds:?}");
    for doc in &docs {
        apply_as(&env.client, "kubectl", doc).await;
    }

    // Record everything the corpus made, in every namespace and at cluster scope.
    env.configure().await;
    apply(&env.client, json!({"apiVersion": "configbutler.ai/v1alpha1", "kind": "GitRepoConfig",
        "metadata": {"name": "repo", "namespace": "shop"},
        "spec": {"url": env.url(), "commit": {"window": {"quiet": "0s"}}, "accessPolicy": {"allowClusterRules": true}}})).await;
    let names: Vec<String> = docs
        .iter()
        .map(|d| {
            let kind = d["kind"].as_str().unwrap_or_default();
            match kind {
                "NetworkPolicy" => "networkpolicies".to_string(),
                "IngressClass" => "ingressclasses".to_string(),
                other => format!("{}s", other.to_lowercase()),
            }
        })
        .collect();
    let mut resources: Vec<String> = names;
    resources.sort();
    resources.dedup();
    let groups = [
        "",
        "apps",
        "batch",
        "rbac.authorization.k8s.io",
        "networking.k8s.io",
        "admissionregistration.k8s.io",
        "apiextensions.k8s.io",
    ];
    apply(
        &env.client,
        json!({"apiVersion": "configbutler.ai/v1alpha1", "kind": "ClusterWatchRule",
        "metadata": {"name": "corpus"},
        "spec": {"destinationRef": {"name": "dev", "namespace": "shop"}, "rules": [
            {"apiGroups": groups, "resources": resources, "scope": "Namespaced"},
            {"apiGroups": groups, "resources": resources, "scope": "Cluster"}]}}),
    )
    .await;
    let agent = env.start("state");
    agent.ready().await;
    let recorded = folder_documents(&env, FOLDER, "main");
    assert!(recorded.len() >= 45, "{} files", recorded.len());
    let settled = env.subjects().len();

    for _ in 0..5 {
        flux_apply(&env, FOLDER).await;
        argo_apply(&env, FOLDER).await;
        argo_server_side_apply(&env).await;
    }
    // A sentinel: once it lands, every earlier event was decided (one queue, in order).
    env.put_configmap("shop", "sentinel", "1").await;
    until("the sentinel", || env.file("shop", "sentinel").is_some()).await;
    assert_eq!(
        env.subjects().len(),
        settled + 1,
        "{:?}",
        &env.subjects()[..8.min(env.subjects().len())]
    );

    // Every committed file is what a server accepts.
    let kubeconfig = env.scratch.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        env.sim.kubeconfig("admin").expect("kubeconfig"),
    )
    .expect("write");
    let files = env.scratch.path().join("files");
    for (path, doc) in folder_documents(&env, FOLDER, "main") {
        let file = files.join(&path);
        std::fs::create_dir_all(file.parent().expect("dir")).expect("dir");
        std::fs::write(&file, serde_json::to_string(&doc).expect("json")).expect("write");
        let out = std::process::Command::new(&kubectl)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["apply", "--dry-run=server", "-f"])
            .arg(&file)
            .output()
            .expect("kubectl runs");
        assert!(
            out.status.success(),
            "{path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    agent.stop().await;
}
