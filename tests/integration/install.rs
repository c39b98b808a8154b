//! What a first real install met (issue #10), each end to end on the simulator: credentials in
//! a Secret of any name over every transport that takes them, pruning that stops only for the
//! resource type whose rule did not resolve, cluster-scoped objects spelled `namespace: ""`,
//! `create` subjects for new objects, and an outage that shows on the resources at once.

use crate::support::agent_env::*;
use crate::support::git_servers::{GitServer, commit_by_hand, git, secret_string_data};
use gitops_reverser::git::credentials::Credentials;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use std::time::{Duration, Instant};

async fn put_secret(env: &Env, name: &str, data: serde_json::Value) {
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), "shop");
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "shop"},
        "stringData": data});
    secrets
        .patch(
            name,
            &PatchParams::apply("test").force(),
            &Patch::Apply(&secret),
        )
        .await
        .expect("secret");
}

/// GitRepoConfig `repo` for `url` with `secretRef: git-creds`, destination `dev`, rule `apps`.
async fn configure_with_secret(env: &Env, url: &str) {
    for object in [
        json!({"apiVersion": "configbutler.ai/v1alpha1", "kind": "GitRepoConfig", "metadata": {"name": "repo", "namespace": "shop"},
            "spec": {"url": url, "secretRef": {"name": "git-creds"}, "commit": {"window": {"quiet": "0s"}}}}),
        json!({"apiVersion": "configbutler.ai/v1alpha1", "kind": "GitDestination", "metadata": {"name": "dev", "namespace": "shop"},
            "spec": {"repoRef": {"name": "repo"}, "branch": "main", "folder": FOLDER}}),
        json!({"apiVersion": "configbutler.ai/v1alpha1", "kind": "WatchRule", "metadata": {"name": "apps", "namespace": "shop"},
            "spec": {"destinationRef": {"name": "dev"}, "rules": [{"apiGroups": [""], "resources": ["configmaps"]}]}}),
    ] {
        apply(&env.client, object).await;
    }
}

/// Waits until `path` on `main` of the served repository holds `needle`.
async fn until_served(server: &GitServer, path: &str, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if server.repo.tip("main").is_some() && server.repo.show("main", path).contains(needle) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{}: {path} never held {needle:?}",
            server.name
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The Secret is named `git-creds`, the GitRepoConfig `repo`: pushes carry the credentials,
/// `CredentialsValid` says the remote accepted them; a wrong password is rejected by the remote
/// and the condition says so with the remote's answer; fixed, it is used without a restart.
async fn credentials_round(server: &GitServer) {
    let name = server.name;
    let credentials = server
        .credentials
        .as_ref()
        .expect("the server takes credentials");
    let env = Env::new().await;
    put_secret(&env, "git-creds", secret_string_data(credentials)).await;
    configure_with_secret(&env, &server.url).await;
    env.put_configmap("shop", "settings", "1").await;
    let agent = env.start("state");
    let path = format!("{FOLDER}/shop/core/configmaps/settings.yaml");
    until_served(server, &path, "value: \"1\"").await;
    let valid = until_condition(
        &env.client,
        "gitrepoconfigs",
        "shop",
        "repo",
        "CredentialsValid",
        "True",
    )
    .await;
    assert_eq!(valid["reason"], "CredentialsValid", "{name}: {valid}");
    assert!(
        valid["message"]
            .as_str()
            .is_some_and(|m| m.contains("accepted") && m.contains("shop/git-creds")),
        "{name}: {valid}"
    );

    if let Credentials::Basic { username, .. } = credentials {
        // A wrong password: the remote refuses it, and the condition says so.
        put_secret(
            &env,
            "git-creds",
            json!({"username": username, "password": "not-the-password"}),
        )
        .await;
        let rejected = until_condition(
            &env.client,
            "gitrepoconfigs",
            "shop",
            "repo",
            "CredentialsValid",
            "False",
        )
        .await;
        assert_eq!(rejected["reason"], "CredentialsRejected", "{rejected}");
        let message = rejected["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("authentication") && !message.contains("not-the-password"),
            "{message}"
        );
        // Fixed in the Secret: used from the next push on, without a restart.
        put_secret(&env, "git-creds", secret_string_data(credentials)).await;
        until_condition(
            &env.client,
            "gitrepoconfigs",
            "shop",
            "repo",
            "CredentialsValid",
            "True",
        )
        .await;
        env.put_configmap("shop", "settings", "2").await;
        until_served(server, &path, "value: \"2\"").await;

        // The Secret goes away: pushes stop, and the conditions say why.
        let secrets: Api<Secret> = Api::namespaced(env.client.clone(), "shop");
        secrets
            .delete("git-creds", &Default::default())
            .await
            .expect("delete the secret");
        let gone = until_condition(
            &env.client,
            "gitrepoconfigs",
            "shop",
            "repo",
            "CredentialsValid",
            "False",
        )
        .await;
        assert!(
            gone["message"]
                .as_str()
                .is_some_and(|m| m.contains("shop/git-creds") && m.contains("not found")),
            "{gone}"
        );
        env.put_configmap("shop", "settings", "3").await;
        let stopped = until_condition(
            &env.client,
            "gitrepoconfigs",
            "shop",
            "repo",
            "RepositoryReachable",
            "False",
        )
        .await;
        assert!(
            stopped["message"]
                .as_str()
                .is_some_and(|m| m.contains("authentication")),
            "{stopped}"
        );
        assert!(!server.repo.show("main", &path).contains("value: \"3\""));
    }
    agent.stop_unflushed().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_in_a_secret_of_any_name_are_used_over_https() {
    let server = GitServer::http().expect("git http-backend");
    credentials_round(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_in_a_secret_of_any_name_are_used_over_ssh() {
    let server = GitServer::ssh().expect("sshd");
    credentials_round(&server).await;
}

/// A rule naming `secrets` (excluded: simply never written) and a resource the server does not
/// serve: objects of the served type deleted while the agent was down are still pruned; files of
/// the unserved type, and files that are not ours, stay; the commit message, the `Reconciled`
/// condition and the log say which type was not pruned and why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_problem_stops_pruning_only_for_its_own_type() {
    let env = Env::new().await;
    env.configure().await;
    apply(&env.client, json!({"apiVersion": "configbutler.ai/v1alpha1", "kind": "WatchRule", "metadata": {"name": "apps", "namespace": "shop"},
        "spec": {"destinationRef": {"name": "dev"}, "rules": [
            {"apiGroups": [""], "resources": ["configmaps", "secrets"]},
            {"apiGroups": ["example.com"], "resources": ["widgets"]}]}})).await;
    env.put_configmap("shop", "kept", "1").await;
    env.put_configmap("shop", "gone", "1").await;
    let agent = env.start("state");
    agent.ready().await;
    until("both files", || {
        env.file("shop", "kept").is_some() && env.file("shop", "gone").is_some()
    })
    .await;
    agent.stop().await;

    // Files the agent does not own: a README, and a Widget whose CRD is not installed (yet).
    let widget = "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n  namespace: shop\nspec:\n  size: 3\n";
    commit_by_hand(
        env.scratch.path(),
        &env.repo,
        &[
            (&format!("{FOLDER}/README.md"), "# dev cluster\n"),
            (&format!("{FOLDER}/shop/example.com/widgets/w.yaml"), widget),
        ],
    );
    // Deleted while the agent was down.
    env.configmaps("shop")
        .delete("gone", &Default::default())
        .await
        .expect("delete");

    let agent = env.start("state");
    agent.ready().await;
    until("the stale file pruned", || {
        env.file("shop", "gone").is_none()
    })
    .await;
    assert!(env.file("shop", "kept").is_some());
    assert_eq!(
        show(&env.repo, &format!("{FOLDER}/README.md")).as_deref(),
        Some("# dev cluster\n")
    );
    assert_eq!(
        show(
            &env.repo,
            &format!("{FOLDER}/shop/example.com/widgets/w.yaml")
        )
        .as_deref(),
        Some(widget)
    );
    let dir = env.repo.to_str().expect("utf-8");
    let message = git(
        &env.repo,
        &["--git-dir", dir, "log", "-1", "--format=%B", "main"],
        None,
    );
    assert!(
        message.starts_with("reconcile: 0 added, 0 updated, 1 removed"),
        "{message}"
    );
    assert!(
        message.contains("Not pruned") && message.contains("widgets"),
        "{message}"
    );
    assert!(
        !message.contains("secrets"),
        "excluded is no problem: {message}"
    );
    let reconciled = until_condition(
        &env.client,
        "gitdestinations",
        "shop",
        "dev",
        "Reconciled",
        "True",
    )
    .await;
    assert_eq!(reconciled["reason"], "PartiallyPruned", "{reconciled}");
    assert!(
        reconciled["message"]
            .as_str()
            .is_some_and(|m| m.contains("widgets") && !m.contains("secrets")),
        "{reconciled}"
    );
    agent.stop().await;
}

/// A Namespace and a ClusterRole as server-side apply may store them, with `namespace: ""`:
/// routed, written at their cluster-scoped paths, and committed as `create …`; a later change is
/// an `update …`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_scoped_objects_with_an_empty_namespace_are_recorded_and_new_objects_say_create() {
    let env = Env::new().await;
    env.configure().await;
    apply(&env.client, json!({"apiVersion": "configbutler.ai/v1alpha1", "kind": "GitRepoConfig", "metadata": {"name": "repo", "namespace": "shop"},
        "spec": {"url": env.url(), "commit": {"window": {"quiet": "0s"}}, "accessPolicy": {"allowClusterRules": true}}})).await;
    apply(&env.client, json!({"apiVersion": "configbutler.ai/v1alpha1", "kind": "ClusterWatchRule", "metadata": {"name": "cluster"},
        "spec": {"destinationRef": {"name": "dev", "namespace": "shop"}, "rules": [
            {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"], "scope": "Cluster"}]}})).await;
    let agent = env.start("state");
    agent.ready().await;
    let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "reader"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]});
    apply_as(&env.client, "kubectl", &role).await;
    let path = format!("{FOLDER}/_cluster/rbac.authorization.k8s.io/clusterroles/reader.yaml");
    until("the ClusterRole", || show(&env.repo, &path).is_some()).await;
    env.put_configmap("shop", "settings", "1").await;
    until("the ConfigMap", || env.file("shop", "settings").is_some()).await;
    env.put_configmap("shop", "settings", "2").await;
    until("the edit", || {
        env.file("shop", "settings")
            .is_some_and(|f| f.contains("value: \"2\""))
    })
    .await;
    let subjects = env.subjects();
    assert_eq!(
        subjects[..3],
        [
            "update v1 ConfigMap shop/settings",
            "create v1 ConfigMap shop/settings",
            "create rbac.authorization.k8s.io/v1 ClusterRole reader",
        ],
        "{subjects:?}"
    );
    agent.stop().await;
}

/// The remote goes away while the agent runs: the next push fails and both the GitRepoConfig
/// and its destination say `RepositoryReachable=False` with the cause at once (not at the next
/// probe minutes later); when it returns, the waiting change lands and the condition clears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_push_shows_on_the_resources_at_once() {
    let env = Env::new().await;
    env.configure().await;
    let agent = env.start("state");
    agent.ready().await;
    env.put_configmap("shop", "before", "1").await;
    until("the first change", || env.file("shop", "before").is_some()).await;
    until_condition(
        &env.client,
        "gitrepoconfigs",
        "shop",
        "repo",
        "RepositoryReachable",
        "True",
    )
    .await;

    let away = env.scratch.path().join("away.git");
    std::fs::rename(&env.repo, &away).expect("take the repository away");
    env.put_configmap("shop", "during", "1").await;
    let repo = until_condition(
        &env.client,
        "gitrepoconfigs",
        "shop",
        "repo",
        "RepositoryReachable",
        "False",
    )
    .await;
    assert!(
        repo["message"]
            .as_str()
            .is_some_and(|m| m.contains("push failed")),
        "{repo}"
    );
    let destination = until_condition(
        &env.client,
        "gitdestinations",
        "shop",
        "dev",
        "RepositoryReachable",
        "False",
    )
    .await;
    assert!(
        destination["message"]
            .as_str()
            .is_some_and(|m| m.contains("GitRepoConfig shop/repo")),
        "{destination}"
    );
    // Capture goes on: the destination stays Ready, the change waits.
    let ready = condition(&env.client, "gitdestinations", "shop", "dev", "Ready")
        .await
        .expect("Ready");
    assert_eq!(ready["status"], "True", "{ready}");

    std::fs::rename(&away, &env.repo).expect("bring the repository back");
    until("the waiting change", || {
        env.file("shop", "during").is_some()
    })
    .await;
    until_condition(
        &env.client,
        "gitdestinations",
        "shop",
        "dev",
        "RepositoryReachable",
        "True",
    )
    .await;
    agent.stop().await;
}
