//! The agent with attribution end to end: who made each change reaches the commit (audit
//! webhook and admission webhook on the simulator), per person, in order, with late and
//! reordered facts.

use crate::support::agent_env::*;
use crate::support::git_servers::git;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

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
    // Meanwhile the status page counts it as waiting for its author (#15 item 4).
    let board = agent.agent.board.clone();
    let awaiting = || {
        use gitops_reverser::ops::status::StatusSource;
        board.report().destinations[0].awaiting_attribution
    };
    until("the edit counted as waiting for its author", || {
        awaiting() == 1
    })
    .await;
    until("the late edit", || {
        env.file("shop", "cm").is_some_and(|f| f.contains("late"))
    })
    .await;
    assert_eq!(awaiting(), 0, "no change waits once it is committed");
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
