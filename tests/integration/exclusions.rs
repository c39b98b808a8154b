//! Exclusions a user configures (issue #16 item 4): objects by name pattern, label or
//! annotation selector; fields by JSON pointer and by the field managers that own them. The
//! `diff` and `sanitize` commands name the rule; on the agent, an HPA-like manager scaling a
//! Deployment makes no commit while a person's scale makes one, a field excluded by JSON pointer
//! never reaches Git, and a label-selected object never does — configured on the GitDestination
//! or on the WatchRule / ClusterWatchRule that selects the object.

use crate::support::agent_env::*;
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use std::process::Command;

const EXCLUSIONS: &str = "examples/objects/exclusions.yaml";
const GIT: &str = "examples/objects/deployment.git.yaml";
const AUTOSCALED: &str = "examples/objects/deployment.autoscaled.live.yaml";

fn cli(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gitops-reverser"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the binary runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn diff_names_the_rule_that_left_a_field_out() {
    let (code, out, _) = cli(&["diff", GIT, AUTOSCALED]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("different: spec.replicas"), "{out}");
    let (code, out, err) = cli(&["diff", "--exclusions", EXCLUSIONS, GIT, AUTOSCALED]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains(&format!(
            "excluded /spec/replicas: {EXCLUSIONS} exclusions.fields[0] managedFieldsManagers kube-controller-manager"
        )),
        "{out}"
    );
    assert!(out.contains("equivalent: near"), "{out}");
    // Only what would have been written is named (status is never written anyway).
    assert!(!out.contains("/status"), "{out}");
}

#[test]
fn sanitize_leaves_out_excluded_fields_and_objects_and_says_which_rule() {
    let input = r#"{"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"replicas": 2, "template": {"metadata": {"annotations":
            {"kubectl.kubernetes.io/restartedAt": "2026-12-04T10:00:00Z"}}}}}
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "tmp-scratch", "namespace": "shop"}}
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cache", "namespace": "shop",
            "labels": {"gitops-reverser.configbutler.ai/ignore": "true"}}}"#;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("objects.json");
    std::fs::write(&file, input).expect("write");
    let (code, out, err) = cli(&[
        "sanitize",
        "--exclusions",
        EXCLUSIONS,
        file.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!out.contains("restartedAt"), "{out}");
    assert!(out.contains("replicas: 2"), "{out}");
    assert!(
        !out.contains("tmp-scratch") && !out.contains("cache"),
        "{out}"
    );
    assert!(
        err.contains("excluded /spec/template/metadata/annotations/kubectl.kubernetes.io~1restartedAt of apps/v1/Deployment shop/web: examples/objects/exclusions.yaml exclusions.fields[1] jsonPointers"),
        "{err}"
    );
    assert!(
        err.contains(
            "shop/tmp-scratch: excluded by examples/objects/exclusions.yaml exclusions.objects[0]"
        ),
        "{err}"
    );
    assert!(
        err.contains(
            "shop/cache: excluded by examples/objects/exclusions.yaml exclusions.objects[1]"
        ),
        "{err}"
    );
}

/// On the agent: a GitDestination's exclusions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_autoscaler_scaling_makes_no_commit_a_person_scaling_makes_one() {
    let env = Env::new().await;
    env.configure().await;
    apply(&env.client, json!({"apiVersion": "configbutler.ai/v1alpha1", "kind": "GitDestination",
        "metadata": {"name": "dev", "namespace": "shop"},
        "spec": {"repoRef": {"name": "repo"}, "branch": "main", "folder": FOLDER,
            "exclusions": {
                "objects": [{"labelSelector": {"matchLabels": {"gitops-reverser.configbutler.ai/ignore": "true"}}}],
                "fields": [
                    {"group": "apps", "kind": "Deployment", "managedFieldsManagers": ["kube-controller-manager"]},
                    {"jsonPointers": ["/metadata/annotations/example.com~1build-id"]}]}}}))
    .await;
    env.watch_rules(json!([
            {"apiGroups": [""], "resources": ["configmaps"]},
            {"apiGroups": ["apps"], "resources": ["deployments"]}]))
        .await;
    let agent = env.start("state");
    agent.ready().await;

    apply_as(&env.client, "kubectl", &json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop", "annotations": {"example.com/build-id": "4711"}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}}))
    .await;
    apply_as(
        &env.client,
        "kubectl",
        &json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "cache", "namespace": "shop",
            "labels": {"gitops-reverser.configbutler.ai/ignore": "true"}}, "data": {"a": "1"}}),
    )
    .await;
    let path = format!("{FOLDER}/shop/apps/deployments/web.yaml");
    until("the Deployment in Git", || show(&env.repo, &path).is_some()).await;
    env.sentinel("0").await;
    let file = show(&env.repo, &path).expect("file");
    assert!(file.contains("replicas: 2"), "{file}");
    assert!(
        !file.contains("build-id"),
        "excluded by JSON pointer: {file}"
    );
    assert!(
        env.file("shop", "cache").is_none(),
        "a label-selected object never reaches Git"
    );

    // The autoscaler (kube-controller-manager) scales: no commit.
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), "shop");
    let scale = |replicas: i32, manager: &str| {
        let params = PatchParams {
            field_manager: Some(manager.to_string()),
            ..PatchParams::default()
        };
        let deployments = deployments.clone();
        async move {
            deployments
                .patch(
                    "web",
                    &params,
                    &Patch::Merge(json!({"spec": {"replicas": replicas}})),
                )
                .await
                .expect("scaled");
        }
    };
    let settled = env.subjects().len();
    scale(5, "kube-controller-manager").await;
    scale(7, "kube-controller-manager").await;
    env.only_the_sentinel("1", settled).await;
    assert!(
        show(&env.repo, &path)
            .expect("file")
            .contains("replicas: 2")
    );

    // The same change by a person: one commit.
    scale(3, "kubectl-scale").await;
    until("the person's scale in Git", || {
        show(&env.repo, &path).is_some_and(|f| f.contains("replicas: 3"))
    })
    .await;
    env.sentinel("2").await;
    assert_eq!(env.subjects().len(), settled + 3, "{:?}", env.subjects());
    let dir = env.repo.to_str().expect("utf-8");
    let history =
        crate::support::git_servers::git(&env.repo, &["--git-dir", dir, "log", "-p", "main"], None);
    assert!(!history.contains("build-id") && !history.contains("name: cache"));
    // Metrics name the rule that left out what.
    let metrics = agent
        .agent
        .metrics
        .encode(gitops_reverser::ops::metrics::Format::Prometheus)
        .expect("metrics");
    let rule = "GitDestination shop/dev spec.exclusions";
    for series in [
        format!("rule=\"{rule}.objects[0]\",what=\"object\""),
        format!(
            "rule=\"{rule}.fields[0] managedFieldsManagers kube-controller-manager\",what=\"field\""
        ),
        format!(
            "rule=\"{rule}.fields[1] jsonPointers /metadata/annotations/example.com~1build-id\",what=\"field\""
        ),
    ] {
        assert!(metrics.contains(&series), "{series} in\n{metrics}");
    }
    agent.stop().await;
}

/// Every path on `main` in the folder.
fn paths(env: &Env) -> Vec<String> {
    let dir = env.repo.to_str().expect("utf-8");
    crate::support::git_servers::git(
        &env.repo,
        &["--git-dir", dir, "ls-tree", "-r", "--name-only", "main"],
        None,
    )
    .lines()
    .map(str::to_string)
    .collect()
}

/// On the agent: the exclusions of a WatchRule and of a ClusterWatchRule apply to the objects
/// each selects — in the initial reconcile and for live events — and not to the objects another
/// rule of the same destination selects; a change of a rule's exclusions is reconciled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rules_exclusions_keep_what_it_selects_out_of_git() {
    let env = Env::new().await;
    env.configure().await;
    apply(
        &env.client,
        json!({"apiVersion": "configbutler.ai/v1alpha1", "kind": "GitRepoConfig",
        "metadata": {"name": "repo", "namespace": "shop"},
        "spec": {"url": env.url(), "commit": {"window": {"quiet": "0s"}},
            "accessPolicy": {"allowClusterRules": true}}}),
    )
    .await;
    let apps = |objects: serde_json::Value| {
        json!({"apiVersion": "configbutler.ai/v1alpha1", "kind": "WatchRule",
            "metadata": {"name": "apps", "namespace": "shop"},
            "spec": {"destinationRef": {"name": "dev"},
                "rules": [{"apiGroups": [""], "resources": ["configmaps"]}],
                "exclusions": {"objects": objects,
                    "fields": [{"jsonPointers": ["/metadata/annotations/example.com~1build-id"]}]}}})
    };
    let scratch = json!([{"labelSelector": {"matchLabels": {"team": "scratch"}}}]);
    apply(&env.client, apps(scratch.clone())).await;
    // Another rule of the same destination, without exclusions.
    apply(
        &env.client,
        json!({"apiVersion": "configbutler.ai/v1alpha1", "kind": "WatchRule",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"destinationRef": {"name": "dev"},
            "rules": [{"apiGroups": ["apps"], "resources": ["deployments"]}]}}),
    )
    .await;
    apply(
        &env.client,
        json!({"apiVersion": "configbutler.ai/v1alpha1", "kind": "ClusterWatchRule",
        "metadata": {"name": "namespaces"},
        "spec": {"destinationRef": {"name": "dev", "namespace": "shop"},
            "rules": [{"apiGroups": [""], "resources": ["namespaces"], "scope": "Cluster"}],
            "exclusions": {"objects": [{"name": "sandbox-*"}]}}}),
    )
    .await;
    env.namespace("sandbox-a", json!({})).await;
    env.namespace("team-b", json!({})).await;
    let configmap = |name: &str, labels: serde_json::Value, build: &str| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "shop", "labels": labels,
                "annotations": {"example.com/build-id": build}},
            "data": {"mode": "enabled"}})
    };
    // Before the agent starts: its initial reconcile renders these.
    apply_as(
        &env.client,
        "kubectl",
        &configmap("settings", json!({}), "cm-4711"),
    )
    .await;
    apply_as(
        &env.client,
        "kubectl",
        &configmap("scratch", json!({"team": "scratch"}), "cm-1"),
    )
    .await;
    let agent = env.start("state");
    agent.ready().await;
    env.sentinel("0").await;

    let settings = env.file("shop", "settings").expect("settings in Git");
    assert!(
        settings.contains("mode: enabled") && !settings.contains("build-id"),
        "{settings}"
    );
    assert!(
        env.file("shop", "scratch").is_none(),
        "label-excluded by the WatchRule"
    );
    let listed = paths(&env);
    assert!(
        listed
            .iter()
            .any(|p| p.ends_with("/namespaces/team-b.yaml")),
        "{listed:?}"
    );
    assert!(
        !listed.iter().any(|p| p.contains("sandbox-a")),
        "name-excluded by the ClusterWatchRule: {listed:?}"
    );

    // Live events: another labelled object stays out, a change only in the excluded field is
    // no commit, and a Deployment (selected by the other rule) keeps that annotation.
    apply_as(
        &env.client,
        "kubectl",
        &configmap("scratch-2", json!({"team": "scratch"}), "cm-2"),
    )
    .await;
    env.namespace("sandbox-b", json!({})).await;
    let settled = env.subjects().len();
    apply_as(
        &env.client,
        "kubectl",
        &configmap("settings", json!({}), "cm-4712"),
    )
    .await;
    env.only_the_sentinel("1", settled).await;
    assert!(env.file("shop", "scratch-2").is_none());
    apply_as(&env.client, "kubectl", &json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop", "annotations": {"example.com/build-id": "web-42"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}}))
    .await;
    let web = format!("{FOLDER}/shop/apps/deployments/web.yaml");
    until("the Deployment in Git", || show(&env.repo, &web).is_some()).await;
    assert!(
        show(&env.repo, &web)
            .expect("file")
            .contains("build-id: web-42")
    );

    let dir = env.repo.to_str().expect("utf-8");
    let history =
        crate::support::git_servers::git(&env.repo, &["--git-dir", dir, "log", "-p", "main"], None);
    for never in [
        "cm-4711",
        "cm-4712",
        "cm-1",
        "cm-2",
        "team: scratch",
        "sandbox-",
    ] {
        assert!(!history.contains(never), "{never} reached Git");
    }
    let metrics = agent
        .agent
        .metrics
        .encode(gitops_reverser::ops::metrics::Format::Prometheus)
        .expect("metrics");
    for series in [
        "rule=\"ClusterWatchRule namespaces spec.exclusions.objects[0]\",what=\"object\"",
        "rule=\"WatchRule shop/apps spec.exclusions.objects[0]\",what=\"object\"",
        "rule=\"WatchRule shop/apps spec.exclusions.fields[0] jsonPointers /metadata/annotations/example.com~1build-id\",what=\"field\"",
    ] {
        assert!(metrics.contains(series), "{series} in\n{metrics}");
    }

    // The WatchRule stops excluding the labelled objects: its destination reconciles them in.
    apply(&env.client, apps(json!([]))).await;
    until("the formerly excluded ConfigMaps in Git", || {
        env.file("shop", "scratch").is_some() && env.file("shop", "scratch-2").is_some()
    })
    .await;
    assert!(
        !env.file("shop", "scratch")
            .expect("file")
            .contains("build-id")
    );
    agent.stop().await;
}
