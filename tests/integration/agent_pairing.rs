//! The agent paired with Flux- and Argo CD-like reconcilers on the simulator: applying the
//! folder causes no commit, a person's edit exactly one, stale applies are recorded as reverts,
//! triggers nudge the reconcilers, `diff --kubeconfig` agrees.

use crate::support::agent_env::*;
use crate::support::git_servers::git;
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use serde_json::json;
use std::time::{Duration, Instant};

/// The documents of `folder` at revision `rev` of the test repository: (path, document).
pub(crate) fn folder_documents(
    env: &Env,
    folder: &str,
    rev: &str,
) -> Vec<(String, serde_json::Value)> {
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
pub(crate) async fn flux_apply(env: &Env, folder: &str) -> usize {
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
pub(crate) async fn argo_apply(env: &Env, folder: &str) -> usize {
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
