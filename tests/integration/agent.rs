//! The agent end to end against the API simulator and a real bare repository: custom
//! resources in, commits out — creates, updates, deletes, exclusions, status-only changes.

use crate::support::git_servers::{BareRepo, git};
use gitops_reverser::agent::runtime::{AgentOptions, handle, run};
use gitops_reverser::git::transport::GitCli;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const FOLDER: &str = "clusters/dev";

fn show(repo: &Path, path: &str) -> Option<String> {
    let dir = repo.to_str().expect("utf-8");
    let out = crate::support::git_servers::git_output(
        repo,
        &["--git-dir", dir, "show", &format!("main:{path}")],
        None,
    );
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn commits(repo: &Path) -> usize {
    let dir = repo.to_str().expect("utf-8");
    let out = crate::support::git_servers::git_output(
        repo,
        &["--git-dir", dir, "rev-list", "--count", "main"],
        None,
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

/// Waits until `check` holds, polling what a user would look at (the repository).
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn apply(client: &kube::Client, object: serde_json::Value) {
    let gvk = kube::core::GroupVersionKind::try_from(&kube::core::TypeMeta {
        api_version: object["apiVersion"]
            .as_str()
            .expect("apiVersion")
            .to_string(),
        kind: object["kind"].as_str().expect("kind").to_string(),
    })
    .expect("gvk");
    let (resource, _) = kube::discovery::pinned_kind(client, &gvk)
        .await
        .expect("discovered");
    let api: Api<DynamicObject> = match object["metadata"]["namespace"].as_str() {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    let name = object["metadata"]["name"]
        .as_str()
        .expect("name")
        .to_string();
    api.patch(
        &name,
        &PatchParams::apply("test").force(),
        &Patch::Apply(&object),
    )
    .await
    .expect("applied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_writes_creates_updates_and_deletes_and_nothing_else() {
    let sim = kubesim::Simulator::start(kubesim::SimConfig::default())
        .await
        .expect("simulator");
    let client = sim.client().await.expect("client");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in gitops_reverser::crd::all_crds() {
        crds.create(&PostParams::default(), &crd)
            .await
            .expect("CRD");
    }
    let scratch = tempfile::TempDir::new().expect("scratch");
    let repo = BareRepo::init(scratch.path().join("repo.git")).path;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "shop"}})).expect("ns"),
        )
        .await
        .expect("ns");
    for object in [
        json!({"apiVersion": "configbutler.ai/v1alpha1", "kind": "GitRepoConfig", "metadata": {"name": "repo", "namespace": "shop"},
            "spec": {"url": format!("file://{}", repo.display()), "commit": {"window": {"quiet": "0s"}}}}),
        json!({"apiVersion": "configbutler.ai/v1alpha1", "kind": "GitDestination", "metadata": {"name": "dev", "namespace": "shop"},
            "spec": {"repoRef": {"name": "repo"}, "branch": "main", "folder": FOLDER}}),
        json!({"apiVersion": "configbutler.ai/v1alpha1", "kind": "WatchRule", "metadata": {"name": "apps", "namespace": "shop"},
            "spec": {"destinationRef": {"name": "dev"}, "rules": [
                {"apiGroups": [""], "resources": ["configmaps", "secrets"]},
                {"apiGroups": ["apps"], "resources": ["deployments"]}]}}),
    ] {
        apply(&client, object).await;
    }
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "shop");
    configmaps
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "before"}, "data": {"a": "1"}}))
                .expect("cm"),
        )
        .await
        .expect("cm");

    let options = AgentOptions {
        state_dir: scratch.path().join("state"),
        allow_secrets: false,
        cluster: "test".into(),
        streaming_lists: false,
        transport: Arc::new(GitCli::new()),
        settle: Duration::from_millis(50),
    };
    let agent = handle(&options);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(run(client.clone(), options, agent.clone(), async {
        let _ = stopped.await;
    }));

    // The initial reconcile writes what existed before the agent started.
    let before = format!("{FOLDER}/shop/core/configmaps/before.yaml");
    until("the initial reconcile", || show(&repo, &before).is_some()).await;
    until("readiness", || agent.readiness.is_ready()).await;
    assert!(
        git(
            &repo,
            &[
                "--git-dir",
                repo.to_str().expect("utf-8"),
                "log",
                "-1",
                "--format=%s",
                "main"
            ],
            None
        )
        .starts_with("reconcile: ")
    );

    // Create, update, delete.
    let path = format!("{FOLDER}/shop/core/configmaps/settings.yaml");
    configmaps
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "settings"}, "data": {"mode": "on"}}),
            )
            .expect("cm"),
        )
        .await
        .expect("create");
    until("the created file", || {
        show(&repo, &path).is_some_and(|f| f.contains("mode: \"on\""))
    })
    .await;
    configmaps
        .patch(
            "settings",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"mode": "off"}})),
        )
        .await
        .expect("update");
    until("the updated file", || {
        show(&repo, &path).is_some_and(|f| f.contains("mode: \"off\""))
    })
    .await;

    // A Secret is never written.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "shop");
    secrets
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "db"}, "stringData": {"password": "never-commit-this"}})).expect("secret"))
        .await
        .expect("secret");

    // A Deployment, then a status-only change: one commit for the Deployment, none for status.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "shop");
    deployments
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}})).expect("deploy"))
        .await
        .expect("deployment");
    let web = format!("{FOLDER}/shop/apps/deployments/web.yaml");
    until("the deployment file", || show(&repo, &web).is_some()).await;
    let after_deployment = commits(&repo);
    deployments
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"replicas": 1, "readyReplicas": 1}})),
        )
        .await
        .expect("status");

    configmaps
        .delete("settings", &Default::default())
        .await
        .expect("delete");
    until("the deleted file", || show(&repo, &path).is_none()).await;
    // Exactly one more commit (the delete): the status change and the Secret made none.
    assert_eq!(commits(&repo), after_deployment + 1);
    let tree = git(
        &repo,
        &[
            "--git-dir",
            repo.to_str().expect("utf-8"),
            "ls-tree",
            "-r",
            "--name-only",
            "main",
        ],
        None,
    );
    assert!(!tree.contains("secrets"), "{tree}");
    assert!(
        !git(
            &repo,
            &[
                "--git-dir",
                repo.to_str().expect("utf-8"),
                "log",
                "-p",
                "main"
            ],
            None
        )
        .contains("never-commit-this")
    );

    // Teardown: deleting the custom resources releases watches and workers.
    for (kind, name) in [
        ("watchrules", "apps"),
        ("gitdestinations", "dev"),
        ("gitrepoconfigs", "repo"),
    ] {
        let resource = kube::api::ApiResource {
            group: "configbutler.ai".into(),
            version: "v1alpha1".into(),
            api_version: "configbutler.ai/v1alpha1".into(),
            kind: String::new(),
            plural: kind.into(),
        };
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "shop", &resource);
        api.delete(name, &Default::default())
            .await
            .expect("delete CR");
    }
    until("teardown", || {
        agent.registry.is_empty() && agent.watches() == 0
    })
    .await;
    let _ = stop.send(());
    running.await.expect("agent task").expect("agent");
}
