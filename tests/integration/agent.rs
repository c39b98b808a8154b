//! The agent end to end against the API simulator and a real bare repository: custom
//! resources in, commits out — creates, updates, deletes, exclusions, status-only changes.

use crate::support::agent_env::*;
use crate::support::git_servers::{BareRepo, git};
use gitops_reverser::agent::runtime::{AgentOptions, spawn};
use gitops_reverser::git::transport::GitCli;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
        resolver: None,
        ..AgentOptions::default()
    };
    let running = spawn(client.clone(), options);
    let agent = running.handle.clone();

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

    // The repository reports itself reachable and ready.
    let repos: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), "shop", &configbutler("gitrepoconfigs"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let repo_status = repos.get("repo").await.expect("repo").data["status"].clone();
        let condition = |t: &str| {
            repo_status["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["type"] == t)
                .map(|c| c["status"].clone())
        };
        if condition("RepositoryReachable") == Some(json!("True"))
            && condition("Ready") == Some(json!("True"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "GitRepoConfig never became Ready: {repo_status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

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
        let resource = configbutler(kind);
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "shop", &resource);
        api.delete(name, &Default::default())
            .await
            .expect("delete CR");
    }
    until("teardown", || {
        agent.registry.is_empty() && agent.watches() == 0
    })
    .await;
    running.stop().await.expect("agent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_reconciles_what_changed_while_down_in_one_commit_and_nothing_otherwise() {
    let env = Env::new().await;
    env.configure().await;
    env.put_configmap("shop", "keep", "1").await;
    env.put_configmap("shop", "change", "1").await;
    env.put_configmap("shop", "remove", "1").await;
    let agent = env.start("state");
    agent.ready().await;
    until("the first reconcile", || {
        env.file("shop", "remove").is_some()
    })
    .await;
    agent.stop().await;

    // While the agent is down: one change, one delete, one create.
    env.put_configmap("shop", "change", "2").await;
    env.configmaps("shop")
        .delete("remove", &Default::default())
        .await
        .expect("delete");
    env.put_configmap("shop", "added", "1").await;
    let before = env.subjects().len();
    let agent = env.start("state");
    agent.ready().await;
    let subjects = env.subjects();
    assert_eq!(subjects.len(), before + 1, "{subjects:?}");
    assert_eq!(subjects[0], "reconcile: 1 added, 1 updated, 1 removed");
    assert!(env.file("shop", "remove").is_none() && env.file("shop", "added").is_some());
    agent.stop().await;

    // A restart with nothing changed (and a fresh state directory) makes no commit.
    let agent = env.start("fresh-state");
    agent.ready().await;
    assert_eq!(env.subjects().len(), before + 1);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_watch_and_compacted_history_lose_and_duplicate_nothing() {
    let env = Env::new().await;
    env.configure().await;
    let agent = env.start("state");
    agent.ready().await;
    env.put_configmap("shop", "a", "1").await;
    until("a", || env.file("shop", "a").is_some()).await;
    env.put_configmap("shop", "doomed", "1").await;
    until("doomed", || env.file("shop", "doomed").is_some()).await;
    // The watch goes away, history is compacted (the next watch gets 410 and relists), and
    // meanwhile objects change and one is deleted.
    env.sim.faults().drop_watches();
    env.sim.faults().compact_history();
    env.put_configmap("shop", "a", "2").await;
    env.configmaps("shop")
        .delete("doomed", &Default::default())
        .await
        .expect("delete");
    env.put_configmap("shop", "b", "1").await;
    env.sim.faults().expire_watches();
    until("the final state", || {
        env.file("shop", "a")
            .is_some_and(|f| f.contains("value: \"2\""))
            && env.file("shop", "b").is_some()
            && env.file("shop", "doomed").is_none()
    })
    .await;
    // Every change is one commit, none twice.
    let subjects = env.subjects();
    let mut unique = subjects.clone();
    unique.dedup();
    assert_eq!(unique, subjects, "{subjects:?}");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_policy_changes_start_and_stop_writes_without_a_restart() {
    let env = Env::new().await;
    env.configure().await;
    env.namespace("team", json!({"tenant": "yes"})).await;
    apply(&env.client, json!({"apiVersion": "configbutler.ai/v1alpha1", "kind": "WatchRule",
        "metadata": {"name": "team", "namespace": "team"},
        "spec": {"destinationRef": {"name": "dev"}, "rules": [{"apiGroups": [""], "resources": ["configmaps"]}]}})).await;
    // The WatchRule's destinationRef names a GitDestination in its own namespace; give team one.
    apply(&env.client, json!({"apiVersion": "configbutler.ai/v1alpha1", "kind": "GitDestination",
        "metadata": {"name": "dev", "namespace": "team"},
        "spec": {"repoRef": {"name": "repo", "namespace": "shop"}, "branch": "main", "folder": "clusters/team"}})).await;
    env.put_configmap("team", "t1", "1").await;
    let agent = env.start("state");
    agent.ready().await;
    let team_file = |name: &str| {
        show(
            &env.repo,
            &format!("clusters/team/team/core/configmaps/{name}.yaml"),
        )
    };
    env.put_configmap("shop", "probe", "1").await;
    until("shop's writes", || env.file("shop", "probe").is_some()).await;
    assert!(
        team_file("t1").is_none(),
        "SameNamespace must not admit team"
    );

    // Loosen: admit namespaces labelled tenant=yes.
    apply(&env.client, json!({"apiVersion": "configbutler.ai/v1alpha1", "kind": "GitRepoConfig",
        "metadata": {"name": "repo", "namespace": "shop"},
        "spec": {"url": env.url(), "commit": {"window": {"quiet": "0s"}},
            "accessPolicy": {"namespacedRules": {"mode": "FromSelector", "namespaceSelector": {"matchLabels": {"tenant": "yes"}}}}}})).await;
    until("team's files after loosening", || team_file("t1").is_some()).await;

    // Tighten again: team's later changes are not written.
    apply(
        &env.client,
        json!({"apiVersion": "configbutler.ai/v1alpha1", "kind": "GitRepoConfig",
        "metadata": {"name": "repo", "namespace": "shop"},
        "spec": {"url": env.url(), "commit": {"window": {"quiet": "0s"}}}}),
    )
    .await;
    // The team WatchRule reports that the policy no longer admits it.
    let rules: Api<DynamicObject> =
        Api::namespaced_with(env.client.clone(), "team", &configbutler("watchrules"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rule = rules.get("team").await.expect("rule");
        let conditions = rule
            .data
            .pointer("/status/conditions")
            .cloned()
            .unwrap_or_default();
        let access = conditions
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "AccessAllowed");
        if access.is_some_and(|c| c["status"] == "False") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "AccessAllowed never became False: {conditions}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    env.put_configmap("team", "t2", "1").await;
    env.put_configmap("shop", "probe2", "1").await;
    until("shop still writes", || env.file("shop", "probe2").is_some()).await;
    assert!(team_file("t2").is_none());
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_spellings_of_one_repository_share_one_worker_and_a_later_crd_is_captured() {
    let env = Env::new().await;
    env.configure().await;
    apply(&env.client, json!({"apiVersion": "configbutler.ai/v1alpha1", "kind": "GitRepoConfig",
        "metadata": {"name": "same-repo", "namespace": "shop"},
        "spec": {"url": format!("{}/", env.repo.display()), "commit": {"window": {"quiet": "0s"}}}})).await;
    apply(&env.client, json!({"apiVersion": "configbutler.ai/v1alpha1", "kind": "GitDestination",
        "metadata": {"name": "widgets", "namespace": "shop"},
        "spec": {"repoRef": {"name": "same-repo"}, "branch": "main", "folder": "clusters/widgets"}})).await;
    apply(&env.client, json!({"apiVersion": "configbutler.ai/v1alpha1", "kind": "WatchRule",
        "metadata": {"name": "widgets", "namespace": "shop"},
        "spec": {"destinationRef": {"name": "widgets"}, "rules": [{"apiGroups": ["example.com"], "resources": ["widgets"]}]}})).await;
    let agent = env.start("state");
    agent.ready().await;
    assert_eq!(
        agent.agent.registry.len(),
        1,
        "one worker for both spellings"
    );

    // The CRD appears after the agent started; its objects are captured without a restart.
    install_crd(&env, "example.com", "v1", "Widget", "widgets").await;
    apply(&env.client, json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w1", "namespace": "shop"}, "spec": {"size": 3, "futureField": {"x": []}}})).await;
    env.put_configmap("shop", "cm", "1").await;
    until("the widget and the configmap", || {
        show(
            &env.repo,
            "clusters/widgets/shop/example.com/widgets/w1.yaml",
        )
        .is_some_and(|f| f.contains("futureField"))
            && env.file("shop", "cm").is_some()
    })
    .await;
    assert_eq!(agent.agent.registry.len(), 1);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nested_folder_conflicts_and_secrets_are_written_only_when_allowed() {
    let env = Env::new().await;
    env.configure().await;
    apply(&env.client, json!({"apiVersion": "configbutler.ai/v1alpha1", "kind": "WatchRule",
        "metadata": {"name": "secrets", "namespace": "shop"},
        "spec": {"destinationRef": {"name": "dev"}, "rules": [{"apiGroups": [""], "resources": ["secrets"]}]}})).await;
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), "shop");
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "db"}, "stringData": {"password": "opt-in"}}),
            )
            .expect("secret"),
        )
        .await
        .expect("secret");
    let agent = env.start_with("state", true);
    agent.ready().await;
    until("the allowed Secret", || {
        show(&env.repo, &format!("{FOLDER}/shop/core/secrets/db.yaml")).is_some()
    })
    .await;
    let reconciled = until_condition(
        &env.client,
        "gitdestinations",
        "shop",
        "dev",
        "Reconciled",
        "True",
    )
    .await;
    assert_eq!(reconciled["reason"], "Complete");

    // A second destination inside the first one's folder is the later one: it conflicts.
    apply(&env.client, json!({"apiVersion": "configbutler.ai/v1alpha1", "kind": "GitDestination",
        "metadata": {"name": "nested", "namespace": "shop"},
        "spec": {"repoRef": {"name": "repo"}, "branch": "main", "folder": format!("{FOLDER}/inner")}})).await;
    let conflict = until_condition(
        &env.client,
        "gitdestinations",
        "shop",
        "nested",
        "DestinationConflict",
        "True",
    )
    .await;
    assert!(
        conflict["message"]
            .as_str()
            .unwrap_or_default()
            .contains("shop/dev"),
        "{conflict}"
    );
    let earlier = condition(
        &env.client,
        "gitdestinations",
        "shop",
        "dev",
        "DestinationConflict",
    )
    .await;
    assert!(
        earlier.as_ref().is_none_or(|c| c["status"] == "False"),
        "{earlier:?}"
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_that_fails_removes_nothing_until_a_complete_listing() {
    let env = Env::new().await;
    env.configure().await;
    env.put_configmap("shop", "keep", "1").await;
    env.put_configmap("shop", "gone", "1").await;
    let agent = env.start("state");
    agent.ready().await;
    until("the first reconcile", || env.file("shop", "gone").is_some()).await;
    agent.stop().await;

    // While the agent is down an object is deleted, and listing ConfigMaps starts failing.
    env.configmaps("shop")
        .delete("gone", &Default::default())
        .await
        .expect("delete");
    env.sim.faults().fail_lists("configmaps", Some(500));
    let agent = env.start("state");
    agent.ready().await;
    let incomplete = until_condition(
        &env.client,
        "gitdestinations",
        "shop",
        "dev",
        "Reconciled",
        "False",
    )
    .await;
    assert!(
        incomplete["message"]
            .as_str()
            .unwrap_or_default()
            .contains("Not pruned: listing v1 configmaps"),
        "{incomplete}"
    );
    assert!(
        env.file("shop", "gone").is_some(),
        "a partial view must not delete"
    );

    // Listing works again: the watch lists, the reconcile runs again and removes the file.
    env.sim.faults().fail_lists("configmaps", None);
    until("the file of the deleted object to go", || {
        env.file("shop", "gone").is_none()
    })
    .await;
    until_condition(
        &env.client,
        "gitdestinations",
        "shop",
        "dev",
        "Reconciled",
        "True",
    )
    .await;
    assert!(env.file("shop", "keep").is_some());
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_repository_is_reported_and_its_changes_land_when_it_returns() {
    let env = Env::new().await;
    // The repository is away when the agent starts.
    let away = env.scratch.path().join("away.git");
    std::fs::rename(&env.repo, &away).expect("take the repository away");
    env.configure().await;
    env.put_configmap("shop", "settings", "1").await;
    let agent = env.start("state");
    let unreachable = until_condition(
        &env.client,
        "gitrepoconfigs",
        "shop",
        "repo",
        "RepositoryReachable",
        "False",
    )
    .await;
    assert!(
        unreachable["message"]
            .as_str()
            .unwrap_or_default()
            .contains("repo.git"),
        "{unreachable}"
    );
    // Meanwhile a person changes something: it waits, it is not lost.
    env.put_configmap("shop", "edited", "1").await;

    std::fs::rename(&away, &env.repo).expect("bring the repository back");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(env.file("shop", "settings").is_some() && env.file("shop", "edited").is_some()) {
        assert!(Instant::now() < deadline, "the changes never landed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while condition(
        &env.client,
        "gitrepoconfigs",
        "shop",
        "repo",
        "RepositoryReachable",
    )
    .await
    .map(|c| c["status"].clone())
        != Some(json!("True"))
    {
        assert!(
            Instant::now() < deadline,
            "RepositoryReachable never recovered"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    agent.stop().await;
}
