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

/// A client acting as `user` (a simulator token user), or as the admin impersonating `user`.
async fn client_as(env: &Env, user: &str, impersonating: bool) -> kube::Client {
    if !impersonating {
        return env.sim.client_for(user).await.expect("client");
    }
    let text = env.sim.kubeconfig("admin").expect("kubeconfig");
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&text).expect("kubeconfig");
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("config");
    config.auth_info.impersonate = Some(user.to_string());
    kube::Client::try_from(config).expect("client")
}

/// How attribution facts reach the agent in a test.
#[derive(Clone, Copy, PartialEq)]
enum Facts {
    /// The simulator's audit webhook backend posts EventLists to the agent's `/audit`.
    Audit,
    /// The simulator calls the agent's `/admission` through a ValidatingWebhookConfiguration.
    Admission,
}

/// A simulator with users alice and bob whose changes reach the agent's attribution webhook
/// (HTTPS; `/audit` requires the apiserver's client certificate), and an agent with a resolver
/// (grace `grace`), configured with commit windows of `quiet`.
async fn people(
    facts: Facts,
    quiet: &str,
    grace: Duration,
) -> (Env, Running, gitops_reverser::attribution::WebhookServer) {
    let pki = crate::attribution::pki();
    let (server, index) = crate::attribution::start(&pki, 10 << 20).await;
    let base = format!("https://127.0.0.1:{}", server.local_addr().port());
    let mut config = kubesim::SimConfig::default()
        .with_user(kubesim::User::admin("alice", "alice-token"))
        .with_user(kubesim::User::admin("bob", "bob-token"));
    if facts == Facts::Admission {
        // As a kube-apiserver whose AdmissionConfiguration gives it a client certificate.
        config = config
            .with_admission_client_cert(pki.client_cert_pem.clone(), pki.client_key_pem.clone());
    }
    if facts == Facts::Audit {
        config = config.with_audit_sink(
            kubesim::AuditSink::new(&format!("{base}/audit"))
                .with_tls(
                    &pki.ca_pem,
                    Some((&pki.client_cert_pem, &pki.client_key_pem)),
                )
                .with_batch(50, Duration::from_millis(20)),
        );
    }
    let env = Env::with(config).await;
    if facts == Facts::Admission {
        use base64::Engine;
        let ca = base64::engine::general_purpose::STANDARD.encode(&pki.ca_pem);
        apply(&env.client, json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": "gitops-reverser"},
            "webhooks": [{"name": "attribution.configbutler.ai", "admissionReviewVersions": ["v1"],
                "sideEffects": "None", "failurePolicy": "Ignore", "timeoutSeconds": 2,
                "clientConfig": {"url": format!("{base}/admission"), "caBundle": ca},
                "rules": [{"operations": ["CREATE", "UPDATE", "DELETE"], "apiGroups": ["", "apps"],
                    "apiVersions": ["*"], "resources": ["configmaps", "deployments"], "scope": "*"}]}]})).await;
    }
    env.configure_quiet(quiet).await;
    let resolver = Arc::new(gitops_reverser::attribution::Resolver::new(
        index,
        grace,
        gitops_reverser::identity::AuthorMapping::default(),
    ));
    let agent = env.start_full("state", false, Some(resolver));
    agent.ready().await;
    (env, agent, server)
}

/// The history since the initial reconcile, oldest first: (author, author date, subject).
fn history(env: &Env) -> Vec<(String, i64, String)> {
    let dir = env.repo.to_str().expect("utf-8");
    git(
        &env.repo,
        &[
            "--git-dir",
            dir,
            "log",
            "--reverse",
            "--format=%an|%at|%s",
            "main",
        ],
        None,
    )
    .lines()
    .filter(|l| !l.contains("|reconcile: "))
    .map(|l| {
        let mut parts = l.splitn(3, '|');
        let who = parts.next().unwrap_or_default().to_string();
        let at = parts.next().and_then(|t| t.parse().ok()).unwrap_or(0);
        (who, at, parts.next().unwrap_or_default().to_string())
    })
    .collect()
}

fn authors(history: &[(String, i64, String)]) -> Vec<&str> {
    history.iter().map(|(who, _, _)| who.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_person_gets_their_own_commit_dated_when_they_made_the_change() {
    let (env, agent, server) = people(Facts::Audit, "0s", Duration::from_secs(3)).await;
    let as_alice = Api::<ConfigMap>::namespaced(client_as(&env, "alice", false).await, "shop");
    let as_bob = Api::<ConfigMap>::namespaced(client_as(&env, "bob", false).await, "shop");
    let as_carol = Api::<ConfigMap>::namespaced(client_as(&env, "carol", true).await, "shop");
    let started = jiff::Timestamp::now();
    as_alice
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "shared"}, "data": {"v": "alice"}}),
            )
            .expect("cm"),
        )
        .await
        .expect("alice creates");
    until("alice's file", || {
        env.file("shop", "shared")
            .is_some_and(|f| f.contains("alice"))
    })
    .await;
    as_bob
        .patch(
            "shared",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"v": "bob"}})),
        )
        .await
        .expect("bob edits");
    until("bob's edit", || {
        env.file("shop", "shared")
            .is_some_and(|f| f.contains("bob"))
    })
    .await;
    as_carol
        .patch(
            "shared",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"v": "carol"}})),
        )
        .await
        .expect("carol (impersonated) edits");
    until("carol's edit", || {
        env.file("shop", "shared")
            .is_some_and(|f| f.contains("carol"))
    })
    .await;
    as_alice
        .delete("shared", &Default::default())
        .await
        .expect("alice deletes");
    until("the delete", || env.file("shop", "shared").is_none()).await;
    let finished = jiff::Timestamp::now();

    let people = history(&env);
    assert_eq!(
        authors(&people),
        ["alice", "bob", "carol", "alice"],
        "{people:?}"
    );
    // Author dates are the request times: within the test's run, in order.
    for (_, at, _) in &people {
        assert!(
            *at >= started.as_second() && *at <= finished.as_second(),
            "{people:?}"
        );
    }
    assert!(people.windows(2).all(|w| w[0].1 <= w[1].1), "{people:?}");
    let dir = env.repo.to_str().expect("utf-8");
    let carol = git(
        &env.repo,
        &["--git-dir", dir, "log", "-1", "--format=%B", "main~1"],
        None,
    );
    assert!(
        carol.contains("Kubernetes-User: carol") && carol.contains("Impersonated-by: admin"),
        "{carol}"
    );
    agent.stop().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_are_one_commit_per_person_and_a_touched_window_closes_first() {
    let (env, agent, server) = people(Facts::Audit, "1s", Duration::from_secs(3)).await;
    let as_alice = Api::<ConfigMap>::namespaced(client_as(&env, "alice", false).await, "shop");
    let as_bob = Api::<ConfigMap>::namespaced(client_as(&env, "bob", false).await, "shop");
    let cm = |name: &str, v: &str| {
        serde_json::from_value::<ConfigMap>(json!({"metadata": {"name": name}, "data": {"v": v}}))
            .expect("cm")
    };
    // alice: 20 quick edits of one object; bob meanwhile creates another one.
    as_alice
        .create(&PostParams::default(), &cm("alice-cm", "0"))
        .await
        .expect("create");
    as_bob
        .create(&PostParams::default(), &cm("bob-cm", "0"))
        .await
        .expect("create");
    for i in 1..=20 {
        as_alice
            .patch(
                "alice-cm",
                &PatchParams::default(),
                &Patch::Merge(json!({"data": {"v": i.to_string()}})),
            )
            .await
            .expect("edit");
    }
    until("alice's burst", || {
        env.file("shop", "alice-cm")
            .is_some_and(|f| f.contains("v: \"20\""))
    })
    .await;
    until("bob's object", || env.file("shop", "bob-cm").is_some()).await;
    let first = history(&env);
    let mut who = authors(&first);
    who.sort();
    assert_eq!(who, ["alice", "bob"], "one commit each: {first:?}");

    // bob edits alice's object while her window is open: her commit comes first, then his.
    as_alice
        .patch(
            "alice-cm",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"v": "alice-last"}})),
        )
        .await
        .expect("edit");
    as_bob
        .patch(
            "alice-cm",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"v": "bob-last"}})),
        )
        .await
        .expect("edit");
    until("bob's edit of alice's object", || {
        env.file("shop", "alice-cm")
            .is_some_and(|f| f.contains("bob-last"))
    })
    .await;
    let all = history(&env);
    assert_eq!(authors(&all[first.len()..]), ["alice", "bob"], "{all:?}");
    agent.stop().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_dry_runs_conflicts_and_late_facts() {
    let (env, agent, server) = people(Facts::Audit, "0s", Duration::from_millis(1500)).await;
    apply(&env.client, json!({"apiVersion": "configbutler.ai/v1alpha1", "kind": "WatchRule",
        "metadata": {"name": "deployments", "namespace": "shop"},
        "spec": {"destinationRef": {"name": "dev"}, "rules": [{"apiGroups": ["apps"], "resources": ["deployments"]}]}})).await;
    until("the deployments watch", || agent.agent.watches() >= 2).await;
    // bob creates a Deployment and scales it (the scale subresource, as kubectl scale does).
    let deployments: Api<Deployment> = Api::namespaced(client_as(&env, "bob", false).await, "shop");
    deployments
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}})).expect("deploy"))
        .await
        .expect("create");
    let web = format!("{FOLDER}/shop/apps/deployments/web.yaml");
    until("the deployment", || show(&env.repo, &web).is_some()).await;
    deployments
        .patch_scale(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await
        .expect("scale");
    until("the scaled deployment", || {
        show(&env.repo, &web).is_some_and(|f| f.contains("replicas: 3"))
    })
    .await;
    let scaled = history(&env);
    assert_eq!(
        scaled.last().map(|h| h.0.as_str()),
        Some("bob"),
        "{scaled:?}"
    );

    // A dry run and a conflicting update by alice make no fact and no commit of hers.
    let as_alice = Api::<ConfigMap>::namespaced(client_as(&env, "alice", false).await, "shop");
    env.put_configmap("shop", "cm", "admin").await;
    until("the configmap", || env.file("shop", "cm").is_some()).await;
    let dry = PatchParams {
        dry_run: true,
        ..Default::default()
    };
    as_alice
        .patch("cm", &dry, &Patch::Merge(json!({"data": {"value": "dry"}})))
        .await
        .expect("dry run");
    let stale =
        json!({"metadata": {"name": "cm", "resourceVersion": "1"}, "data": {"value": "stale"}});
    let conflict = as_alice
        .replace(
            "cm",
            &PostParams::default(),
            &serde_json::from_value(stale).expect("cm"),
        )
        .await;
    assert!(conflict.is_err(), "a stale update is a 409");
    let before = history(&env).len();
    // Late facts: the audit backend is delayed past the grace period → unknown, not a guess.
    env.sim.faults().delay_audit(Duration::from_secs(4));
    as_alice
        .patch(
            "cm",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"value": "late"}})),
        )
        .await
        .expect("edit");
    until("the late edit", || {
        env.file("shop", "cm").is_some_and(|f| f.contains("late"))
    })
    .await;
    let after = history(&env);
    assert_eq!(after.len(), before + 1, "{after:?}");
    assert_eq!(
        after.last().map(|h| h.0.as_str()),
        Some("unknown (unattributed)"),
        "{after:?}"
    );
    agent.stop().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reordered_and_duplicated_audit_batches_still_give_the_right_authors() {
    let (env, agent, server) = people(Facts::Audit, "0s", Duration::from_secs(3)).await;
    env.sim.faults().reorder_audit(true);
    env.sim.faults().duplicate_audit(true);
    let as_alice = Api::<ConfigMap>::namespaced(client_as(&env, "alice", false).await, "shop");
    let as_bob = Api::<ConfigMap>::namespaced(client_as(&env, "bob", false).await, "shop");
    let cm = |name: &str| {
        serde_json::from_value::<ConfigMap>(json!({"metadata": {"name": name}, "data": {"v": "1"}}))
            .expect("cm")
    };
    as_alice
        .create(&PostParams::default(), &cm("a"))
        .await
        .expect("create");
    until("a", || env.file("shop", "a").is_some()).await;
    as_bob
        .create(&PostParams::default(), &cm("b"))
        .await
        .expect("create");
    until("b", || env.file("shop", "b").is_some()).await;
    as_alice
        .create(&PostParams::default(), &cm("c"))
        .await
        .expect("create");
    until("c", || env.file("shop", "c").is_some()).await;
    assert_eq!(authors(&history(&env)), ["alice", "bob", "alice"]);
    agent.stop().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_alone_attributes_creates_updates_deletes_and_generated_names() {
    let (env, agent, server) = people(Facts::Admission, "0s", Duration::from_secs(3)).await;
    let as_alice = Api::<ConfigMap>::namespaced(client_as(&env, "alice", false).await, "shop");
    let as_bob = Api::<ConfigMap>::namespaced(client_as(&env, "bob", false).await, "shop");
    let created = as_alice
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"generateName": "gen-"}, "data": {"v": "1"}}),
            )
            .expect("cm"),
        )
        .await
        .expect("generateName create");
    let name = created.metadata.name.clone().expect("a generated name");
    until("the generated object", || env.file("shop", &name).is_some()).await;
    as_bob
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"v": "2"}})),
        )
        .await
        .expect("edit");
    until("bob's edit", || {
        env.file("shop", &name)
            .is_some_and(|f| f.contains("v: \"2\""))
    })
    .await;
    as_alice
        .delete(&name, &Default::default())
        .await
        .expect("delete");
    until("the delete", || env.file("shop", &name).is_none()).await;
    assert_eq!(authors(&history(&env)), ["alice", "bob", "alice"]);
    agent.stop().await;
    server.shutdown().await;
}

/// The documents of `folder` at revision `rev` of the test repository: (path, document).
fn folder_documents(env: &Env, folder: &str, rev: &str) -> Vec<(String, serde_json::Value)> {
    let dir = env.repo.to_str().expect("utf-8");
    let files = git(
        &env.repo,
        &[
            "--git-dir",
            dir,
            "ls-tree",
            "-r",
            "--name-only",
            rev,
            folder,
        ],
        None,
    );
    files
        .lines()
        .filter(|p| p.ends_with(".yaml"))
        .map(|path| {
            let text = git(
                &env.repo,
                &["--git-dir", dir, "show", &format!("{rev}:{path}")],
                None,
            );
            let doc = gitops_reverser::manifest::yaml::parse_documents(&text, path)
                .expect("yaml")
                .remove(0);
            (path.to_string(), doc)
        })
        .collect()
}

/// A Flux-like reconciler: server-side applies every file of the folder at the branch tip as
/// `kustomize-controller` with Flux's labels and `force`, as kustomize-controller does.
async fn flux_apply(env: &Env, folder: &str) -> usize {
    flux_apply_at(env, folder, "main").await
}

/// As [`flux_apply`], from revision `rev` (an interval-driven reconciler applying a stale commit).
async fn flux_apply_at(env: &Env, folder: &str, rev: &str) -> usize {
    let documents = folder_documents(env, folder, rev);
    for (_, mut object) in documents.iter().cloned() {
        let labels = object["metadata"]
            .as_object_mut()
            .expect("metadata")
            .entry("labels")
            .or_insert_with(|| json!({}));
        labels["kustomize.toolkit.fluxcd.io/name"] = json!("apps");
        labels["kustomize.toolkit.fluxcd.io/namespace"] = json!("flux-system");
        apply_as(&env.client, "kustomize-controller", &object).await;
    }
    documents.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flux_like_reconciler_applying_the_folder_never_causes_a_commit() {
    let env = Env::new().await;
    env.configure().await;
    apply(&env.client, json!({"apiVersion": "configbutler.ai/v1alpha1", "kind": "WatchRule",
        "metadata": {"name": "workloads", "namespace": "shop"},
        "spec": {"destinationRef": {"name": "dev"}, "rules": [
            {"apiGroups": ["apps"], "resources": ["deployments"]}, {"apiGroups": [""], "resources": ["services"]}]}})).await;
    // A person creates objects through the API (kubectl): quantities, empty maps and lists.
    env.put_configmap("shop", "settings", "1").await;
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), "shop");
    deployments
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                "containers": [{"name": "web", "image": "nginx:1.27", "args": [],
                    "resources": {"requests": {"cpu": "500m", "memory": "64Mi"}, "limits": {}}}]}}}})).expect("deploy"))
        .await
        .expect("deployment");
    apply(&env.client, json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}})).await;
    let agent = env.start("state");
    agent.ready().await;
    until("the files", || {
        show(
            &env.repo,
            &format!("{FOLDER}/shop/apps/deployments/web.yaml"),
        )
        .is_some()
            && show(&env.repo, &format!("{FOLDER}/shop/core/services/web.yaml")).is_some()
    })
    .await;
    let settled = env.subjects().len();
    let quiet = |m: &gitops_reverser::ops::metrics::Metrics| {
        use gitops_reverser::ops::metrics::EventDecision;
        m.events(EventDecision::HashAnnotation)
            + m.events(EventDecision::Exact)
            + m.events(EventDecision::Near)
    };
    let written = |m: &gitops_reverser::ops::metrics::Metrics| {
        m.events(gitops_reverser::ops::metrics::EventDecision::Written)
    };
    let reads_before = agent.agent.metrics.git_reads();
    let (quiet_before, written_before) =
        (quiet(&agent.agent.metrics), written(&agent.agent.metrics));

    // 20 rounds of the reconciler applying the folder: not one commit.
    for _ in 0..20 {
        assert_eq!(flux_apply(&env, FOLDER).await, 3);
    }
    // The first round changed every object (Flux's labels): the agent saw all three and wrote
    // nothing; later rounds apply the same content, which the API server does not even change.
    until("the agent's decisions on the re-applied objects", || {
        quiet(&agent.agent.metrics) >= quiet_before + 3
    })
    .await;
    assert_eq!(written(&agent.agent.metrics), written_before);
    // The hash fast path: objects applied from Git carry a hash matching their content, so the
    // agent decided without reading a single file from Git.
    assert_eq!(
        agent.agent.metrics.git_reads(),
        reads_before,
        "no Git read for applied objects"
    );
    assert!(
        agent
            .agent
            .metrics
            .events(gitops_reverser::ops::metrics::EventDecision::HashAnnotation)
            >= 3
    );
    assert_eq!(env.subjects().len(), settled, "{:?}", env.subjects());

    // A human edit between rounds: exactly one commit, then quiet again.
    env.configmaps("shop")
        .patch("settings", &PatchParams::apply("kubectl-edit").force(), &Patch::Apply(json!({
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": "shop"}, "data": {"value": "2"}})))
        .await
        .expect("human edit");
    until("the human edit", || {
        env.file("shop", "settings")
            .is_some_and(|f| f.contains("value: \"2\""))
    })
    .await;
    assert_eq!(env.subjects().len(), settled + 1);
    for _ in 0..5 {
        flux_apply(&env, FOLDER).await;
    }
    assert_eq!(env.subjects().len(), settled + 1, "{:?}", env.subjects());
    assert_eq!(written(&agent.agent.metrics), written_before + 1);
    agent.stop().await;
}

/// An Argo CD-like reconciler with its defaults: client-side apply — the object with Argo's
/// tracking annotation and the `kubectl.kubernetes.io/last-applied-configuration` annotation,
/// merged into the live object by an Update manager — for every file of the folder.
async fn argo_apply(env: &Env, folder: &str) -> usize {
    let documents = folder_documents(env, folder, "main");
    for (_, mut object) in documents.iter().cloned() {
        let kind = object["kind"].as_str().expect("kind").to_string();
        let ns = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let name = object["metadata"]["name"]
            .as_str()
            .expect("name")
            .to_string();
        let annotations = object["metadata"]
            .as_object_mut()
            .expect("metadata")
            .entry("annotations")
            .or_insert_with(|| json!({}));
        annotations["argocd.argoproj.io/tracking-id"] = json!(format!("apps:{kind}:{ns}/{name}"));
        let last_applied = serde_json::to_string(&object).expect("json");
        object["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] =
            json!(last_applied);
        let params = PatchParams {
            field_manager: Some("argocd-controller".into()),
            ..Default::default()
        };
        api_of(&env.client, &object)
            .await
            .patch(&name, &params, &Patch::Merge(&object))
            .await
            .expect("argo apply");
    }
    documents.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_argo_cd_like_reconciler_applying_the_folder_never_causes_a_commit() {
    let env = Env::new().await;
    env.configure().await;
    env.put_configmap("shop", "settings", "1").await;
    env.put_configmap("shop", "limits", "0123").await;
    let agent = env.start("state");
    agent.ready().await;
    until("the files", || env.file("shop", "limits").is_some()).await;
    let settled = env.subjects().len();
    for _ in 0..20 {
        assert_eq!(argo_apply(&env, FOLDER).await, 2);
    }
    // The first round changed both objects (Argo's annotations); wait for the agent to decide.
    until("the agent's decisions", || {
        use gitops_reverser::ops::metrics::EventDecision;
        let m = &agent.agent.metrics;
        m.events(EventDecision::HashAnnotation)
            + m.events(EventDecision::Exact)
            + m.events(EventDecision::Near)
            >= 2
    })
    .await;
    assert_eq!(env.subjects().len(), settled, "{:?}", env.subjects());
    // A person's edit: one commit, and the next Argo sync (which reverts nothing: the file now
    // holds the edit) makes none.
    env.configmaps("shop")
        .patch(
            "settings",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"value": "2"}})),
        )
        .await
        .expect("edit");
    until("the edit", || {
        env.file("shop", "settings")
            .is_some_and(|f| f.contains("value: \"2\""))
    })
    .await;
    let decided = {
        use gitops_reverser::ops::metrics::EventDecision;
        let m = &agent.agent.metrics;
        m.events(EventDecision::HashAnnotation)
            + m.events(EventDecision::Exact)
            + m.events(EventDecision::Near)
    };
    for _ in 0..3 {
        argo_apply(&env, FOLDER).await;
    }
    // The next sync changes the edited object's last-applied annotation: wait for that decision.
    until("the decision on the synced object", || {
        use gitops_reverser::ops::metrics::EventDecision;
        let m = &agent.agent.metrics;
        m.events(EventDecision::HashAnnotation)
            + m.events(EventDecision::Exact)
            + m.events(EventDecision::Near)
            > decided
    })
    .await;
    assert_eq!(env.subjects().len(), settled + 1, "{:?}", env.subjects());
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_against_the_cluster_is_quiet_in_sync_and_names_a_live_edit() {
    let env = Env::new().await;
    env.configure().await;
    env.put_configmap("shop", "settings", "1").await;
    let agent = env.start("state");
    agent.ready().await;
    until("the file", || env.file("shop", "settings").is_some()).await;
    agent.stop().await;

    let kubeconfig = env.scratch.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        env.sim.kubeconfig("admin").expect("kubeconfig"),
    )
    .expect("write");
    let url = env.url();
    let diff = move || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_gitops-reverser"))
            .arg("diff")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["--repo", &url, "--folder", FOLDER])
            .output()
            .expect("diff runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, text) = tokio::task::spawn_blocking(diff.clone())
        .await
        .expect("diff");
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("v1/ConfigMap shop/settings: equivalent: "),
        "{text}"
    );

    // A live edit while no agent runs: exit 1, naming the field; a live object Git lacks.
    env.configmaps("shop")
        .patch(
            "settings",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"value": "2"}})),
        )
        .await
        .expect("edit");
    env.put_configmap("shop", "extra", "1").await;
    let (code, text) = tokio::task::spawn_blocking(diff).await.expect("diff");
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("v1/ConfigMap shop/settings: different: data.value"),
        "{text}"
    );
    assert!(
        text.contains("v1/ConfigMap shop/extra: missing in Git"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_push_the_named_flux_and_argo_objects_are_asked_to_reconcile() {
    let env = Env::new().await;
    for (group, version, kind, plural) in [
        (
            "source.toolkit.fluxcd.io",
            "v1",
            "GitRepository",
            "gitrepositories",
        ),
        ("argoproj.io", "v1alpha1", "Application", "applications"),
    ] {
        install_crd(&env, group, version, kind, plural).await;
        apply(
            &env.client,
            json!({"apiVersion": format!("{group}/{version}"), "kind": kind,
            "metadata": {"name": "platform", "namespace": "shop"}, "spec": {}}),
        )
        .await;
    }
    env.configure().await;
    apply(&env.client, json!({"apiVersion": "configbutler.ai/v1alpha1", "kind": "GitDestination",
        "metadata": {"name": "dev", "namespace": "shop"},
        "spec": {"repoRef": {"name": "repo"}, "branch": "main", "folder": FOLDER, "triggers": [
            {"kind": "GitRepository", "name": "platform"}, {"kind": "Application", "name": "platform"}]}})).await;
    let agent = env.start("state");
    agent.ready().await;
    env.put_configmap("shop", "settings", "1").await;
    until("the file", || env.file("shop", "settings").is_some()).await;

    let annotation = |group: &str, version: &str, kind: &str, plural: &str, key: &str| {
        let api: Api<DynamicObject> = Api::namespaced_with(
            env.client.clone(),
            "shop",
            &kube::api::ApiResource {
                group: group.into(),
                version: version.into(),
                api_version: format!("{group}/{version}"),
                kind: kind.into(),
                plural: plural.into(),
            },
        );
        let key = key.to_string();
        async move {
            api.get("platform")
                .await
                .ok()?
                .metadata
                .annotations?
                .get(&key)
                .cloned()
        }
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let flux = annotation(
            "source.toolkit.fluxcd.io",
            "v1",
            "GitRepository",
            "gitrepositories",
            "reconcile.fluxcd.io/requestedAt",
        )
        .await;
        let argo = annotation(
            "argoproj.io",
            "v1alpha1",
            "Application",
            "applications",
            "argocd.argoproj.io/refresh",
        )
        .await;
        if flux.is_some() && argo.as_deref() == Some("normal") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "reconcilers not nudged: flux {flux:?}, argo {argo:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_written_file_without_server_defaults_is_applied_but_never_rewritten() {
    let env = Env::new().await;
    env.configure().await;
    apply(&env.client, json!({"apiVersion": "configbutler.ai/v1alpha1", "kind": "WatchRule",
        "metadata": {"name": "workloads", "namespace": "shop"},
        "spec": {"destinationRef": {"name": "dev"}, "rules": [{"apiGroups": ["apps"], "resources": ["deployments"]}]}})).await;
    let agent = env.start("state");
    agent.ready().await;
    // A person commits a Deployment by hand: no defaults, `cpu: "1"`, integer replicas.
    let path = format!("{FOLDER}/shop/apps/deployments/api.yaml");
    let hand_written = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: api\n  namespace: shop\nspec:\n  replicas: 1\n  selector:\n    matchLabels:\n      app: api\n  template:\n    metadata:\n      labels:\n        app: api\n    spec:\n      containers:\n      - name: api\n        image: ghcr.io/example/api:2.0\n        resources:\n          requests:\n            cpu: \"1\"\n            memory: 128Mi\n";
    let scratch = env.scratch.path().join("work");
    let dir = env.repo.to_str().expect("utf-8");
    git(
        env.scratch.path(),
        &["clone", "-q", dir, scratch.to_str().expect("utf-8")],
        None,
    );
    let file = scratch.join(&path);
    std::fs::create_dir_all(file.parent().expect("parent")).expect("dirs");
    std::fs::write(&file, hand_written).expect("write");
    let work = scratch.to_str().expect("utf-8");
    git(&scratch, &["-C", work, "add", "-A"], None);
    git(
        &scratch,
        &["-C", work, "commit", "-q", "-m", "a person adds api"],
        None,
    );
    git(
        &scratch,
        &["-C", work, "push", "-q", "origin", "HEAD:main"],
        None,
    );
    let before = env.subjects().len();

    // The Flux-like reconciler applies the folder (the server adds its defaults) ten times.
    for _ in 0..10 {
        flux_apply(&env, FOLDER).await;
    }
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), "shop");
    let live = deployments.get("api").await.expect("applied");
    assert!(
        live.spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .is_some(),
        "the server defaulted it"
    );
    // The agent's cache may not have the person's commit yet, so it may decide to write; the
    // worker then finds the person's file on the branch, equivalent to the live object, and
    // drops the change. Wait until the agent has handled the Deployment and its worker is idle.
    until("the agent to handle the applied Deployment", || {
        use gitops_reverser::ops::metrics::EventDecision;
        let m = &agent.agent.metrics;
        let decided = m.events(EventDecision::Written)
            + m.events(EventDecision::Near)
            + m.events(EventDecision::Exact)
            + m.events(EventDecision::HashAnnotation);
        let idle = agent.agent.registry.handles().iter().all(|h| {
            h.queued() == 0
                && h.stats()
                    .waiting_changes
                    .load(std::sync::atomic::Ordering::Relaxed)
                    == 0
        });
        decided >= 1 && idle
    })
    .await;
    assert_eq!(env.subjects().len(), before, "{:?}", env.subjects());
    assert_eq!(
        show(&env.repo, &path).as_deref(),
        Some(hand_written),
        "the file is the person's, unchanged"
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_apply_after_a_captured_edit_is_recorded_as_the_revert_it_is() {
    let env = Env::new().await;
    env.configure().await;
    env.put_configmap("shop", "settings", "1").await;
    let agent = env.start("state");
    agent.ready().await;
    until("the file", || env.file("shop", "settings").is_some()).await;
    flux_apply(&env, FOLDER).await;
    let dir = env.repo.to_str().expect("utf-8");
    let before_edit = git(&env.repo, &["--git-dir", dir, "rev-parse", "main"], None);

    // A person edits; the agent captures it.
    env.configmaps("shop")
        .patch("settings", &PatchParams::apply("kubectl-edit").force(), &Patch::Apply(json!({
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": "shop"}, "data": {"value": "2"}})))
        .await
        .expect("edit");
    until("the edit", || {
        env.file("shop", "settings")
            .is_some_and(|f| f.contains("value: \"2\""))
    })
    .await;
    // An interval-driven reconciler, not yet aware of the new commit, applies the previous one.
    flux_apply_at(&env, FOLDER, before_edit.trim()).await;
    until("the revert", || {
        env.file("shop", "settings")
            .is_some_and(|f| f.contains("value: \"1\""))
    })
    .await;
    let subjects = env.subjects();
    assert_eq!(
        &subjects[..2],
        [
            "update v1 ConfigMap shop/settings",
            "update v1 ConfigMap shop/settings"
        ],
        "{subjects:?}"
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argo_cd_with_server_side_apply_causes_no_commit_either() {
    let env = Env::new().await;
    env.configure().await;
    env.put_configmap("shop", "settings", "1").await;
    let agent = env.start("state");
    agent.ready().await;
    until("the file", || env.file("shop", "settings").is_some()).await;
    let settled = env.subjects().len();
    let quiet = |m: &gitops_reverser::ops::metrics::Metrics| {
        use gitops_reverser::ops::metrics::EventDecision;
        m.events(EventDecision::HashAnnotation)
            + m.events(EventDecision::Exact)
            + m.events(EventDecision::Near)
    };
    let before = quiet(&agent.agent.metrics);
    // Argo CD with `ServerSideApply=true`: server-side apply as argocd-controller, with its
    // tracking annotation.
    let dir = env.repo.to_str().expect("utf-8");
    let path = format!("{FOLDER}/shop/core/configmaps/settings.yaml");
    for _ in 0..10 {
        let text = git(
            &env.repo,
            &["--git-dir", dir, "show", &format!("main:{path}")],
            None,
        );
        let mut object = gitops_reverser::manifest::yaml::parse_documents(&text, &path)
            .expect("yaml")
            .remove(0);
        object["metadata"]["annotations"]["argocd.argoproj.io/tracking-id"] =
            json!("apps:/ConfigMap:shop/settings");
        env.configmaps("shop")
            .patch(
                "settings",
                &PatchParams::apply("argocd-controller").force(),
                &Patch::Apply(&object),
            )
            .await
            .expect("argo ssa");
    }
    until("the agent's decision", || {
        quiet(&agent.agent.metrics) > before
    })
    .await;
    assert_eq!(env.subjects().len(), settled, "{:?}", env.subjects());
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_triggers_the_reconciler_applies_the_fresh_commit_and_no_revert_happens() {
    let env = Env::new().await;
    let (group, version, kind, plural) = (
        "source.toolkit.fluxcd.io",
        "v1",
        "GitRepository",
        "gitrepositories",
    );
    install_crd(&env, group, version, kind, plural).await;
    apply(
        &env.client,
        json!({"apiVersion": format!("{group}/{version}"), "kind": kind,
        "metadata": {"name": "platform", "namespace": "shop"}, "spec": {}}),
    )
    .await;
    env.configure().await;
    apply(
        &env.client,
        json!({"apiVersion": "configbutler.ai/v1alpha1", "kind": "GitDestination",
        "metadata": {"name": "dev", "namespace": "shop"},
        "spec": {"repoRef": {"name": "repo"}, "branch": "main", "folder": FOLDER,
            "triggers": [{"kind": "GitRepository", "name": "platform"}]}}),
    )
    .await;
    env.put_configmap("shop", "settings", "1").await;
    let agent = env.start("state");
    agent.ready().await;
    until("the file", || env.file("shop", "settings").is_some()).await;

    // The Flux-like reconciler, driven by the agent's nudges: each new `requestedAt` makes it
    // apply the branch tip, as source-controller + kustomize-controller would.
    let sources: Api<DynamicObject> = Api::namespaced_with(
        env.client.clone(),
        "shop",
        &kube::api::ApiResource {
            group: group.into(),
            version: version.into(),
            api_version: format!("{group}/{version}"),
            kind: kind.into(),
            plural: plural.into(),
        },
    );
    let requested = || async {
        sources
            .get("platform")
            .await
            .ok()?
            .metadata
            .annotations?
            .get("reconcile.fluxcd.io/requestedAt")
            .cloned()
    };
    let seen = requested().await;
    env.configmaps("shop")
        .patch("settings", &PatchParams::apply("kubectl-edit").force(), &Patch::Apply(json!({
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": "shop"}, "data": {"value": "2"}})))
        .await
        .expect("edit");
    until("the edit", || {
        env.file("shop", "settings")
            .is_some_and(|f| f.contains("value: \"2\""))
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while requested().await == seen {
        assert!(
            Instant::now() < deadline,
            "the agent never nudged the GitRepository"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Nudged after the push: the reconciler applies the fresh commit, which holds the edit.
    flux_apply(&env, FOLDER).await;
    let live = env
        .configmaps("shop")
        .get("settings")
        .await
        .expect("settings");
    assert_eq!(
        live.data.and_then(|d| d.get("value").cloned()).as_deref(),
        Some("2"),
        "no revert"
    );
    let subjects = env.subjects();
    assert_eq!(
        subjects
            .iter()
            .filter(|s| s.as_str() == "update v1 ConfigMap shop/settings")
            .count(),
        1,
        "{subjects:?}"
    );
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
