//! Crash consistency (issue #14): the agent (`gitops-reverser run`, a real process) under a
//! stream of changes on the simulator is killed with SIGKILL at random moments — a window open,
//! a commit written but not pushed, a push or a snapshot in flight — and started again on the
//! same state directory; afterwards Git equals the live state, nothing a crash left in the cache
//! blocks the start, and `git fsck --strict` is clean. The seed is printed; set
//! `GITOPS_REVERSER_CRASH_SEED` to repeat a run and `GITOPS_REVERSER_CRASH_KILLS` for more kills
//! (CI runs 6).

use crate::support::agent_env::{FOLDER, apply, show};
use crate::support::git_servers::{BareRepo, git};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const OBJECTS: usize = 8;

fn start_agent(kubeconfig: &std::path::Path, state: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_gitops-reverser"))
        .args([
            "run",
            "--metrics-addr",
            "127.0.0.1:0",
            "--cluster-name",
            "crash",
        ])
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--state-dir")
        .arg(state)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the agent starts")
}

/// The value each ConfigMap holds live and in Git's file (`None`: no file).
async fn live_and_git(
    api: &Api<ConfigMap>,
    repo: &std::path::Path,
) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    for i in 0..OBJECTS {
        let name = format!("cm-{i}");
        let live = api
            .get(&name)
            .await
            .ok()
            .and_then(|cm| cm.data?.get("value").cloned())
            .unwrap_or_default();
        let file = show(repo, &format!("{FOLDER}/shop/core/configmaps/{name}.yaml"));
        let in_git = file.and_then(|f| {
            f.lines()
                .find_map(|l| l.trim().strip_prefix("value: "))
                .map(|v| v.trim_matches('"').to_string())
        });
        out.push((live, in_git));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_any_moment_loses_nothing() {
    let seed: u64 = std::env::var("GITOPS_REVERSER_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    let kills: usize = std::env::var("GITOPS_REVERSER_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    eprintln!("crash test: seed {seed}, {kills} kills (GITOPS_REVERSER_CRASH_SEED repeats it)");
    let mut rng = fastrand::Rng::with_seed(seed);

    let sim = kubesim::Simulator::start(kubesim::SimConfig::default().with_tls())
        .await
        .expect("simulator");
    let client = sim.client().await.expect("client");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in gitops_reverser::crd::all_crds() {
        crds.create(&PostParams::default(), &crd)
            .await
            .expect("CRD");
    }
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "shop"}})).expect("ns"),
        )
        .await
        .expect("ns");
    let scratch = tempfile::TempDir::new().expect("scratch");
    let repo = BareRepo::init(scratch.path().join("repo.git")).path;
    for object in [
        json!({"apiVersion": "configbutler.ai/v1alpha1", "kind": "GitRepoConfig", "metadata": {"name": "repo", "namespace": "shop"},
            "spec": {"url": format!("file://{}", repo.display()), "commit": {"window": {"quiet": "200ms"}}}}),
        json!({"apiVersion": "configbutler.ai/v1alpha1", "kind": "GitDestination", "metadata": {"name": "dev", "namespace": "shop"},
            "spec": {"repoRef": {"name": "repo"}, "branch": "main", "folder": FOLDER}}),
        json!({"apiVersion": "configbutler.ai/v1alpha1", "kind": "WatchRule", "metadata": {"name": "apps", "namespace": "shop"},
            "spec": {"destinationRef": {"name": "dev"}, "rules": [{"apiGroups": [""], "resources": ["configmaps"]}]}}),
    ] {
        apply(&client, object).await;
    }
    let kubeconfig = scratch.path().join("kubeconfig");
    std::fs::write(&kubeconfig, sim.kubeconfig("admin").expect("kubeconfig")).expect("write");
    let state = scratch.path().join("state");

    // A stream of changes for the whole run.
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "shop");
    let streaming = Arc::new(AtomicBool::new(true));
    let stream = tokio::spawn({
        let (api, streaming) = (api.clone(), streaming.clone());
        async move {
            let mut n = 0u64;
            while streaming.load(Ordering::SeqCst) {
                let name = format!("cm-{}", n as usize % OBJECTS);
                let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": name, "namespace": "shop"}, "data": {"value": n.to_string()}});
                let _ = api
                    .patch(
                        &name,
                        &PatchParams::apply("person").force(),
                        &Patch::Apply(&cm),
                    )
                    .await;
                n += 1;
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
        }
    });

    for kill in 0..kills {
        let mut agent = start_agent(&kubeconfig, &state);
        let after = Duration::from_millis(rng.u64(150..2500));
        tokio::time::sleep(after).await;
        assert!(
            agent.try_wait().expect("status").is_none(),
            "kill {kill}: the agent exited by itself before the kill (seed {seed})"
        );
        agent.kill().expect("SIGKILL");
        let _ = agent.wait();
        eprintln!("crash test: kill {kill} after {after:?}");
    }
    streaming.store(false, Ordering::SeqCst);
    stream.await.expect("stream");

    // A last start: Git comes to equal the live state.
    let mut agent = start_agent(&kubeconfig, &state);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let pairs = live_and_git(&api, &repo).await;
        if pairs.iter().all(|(live, git)| git.as_deref() == Some(live)) {
            break;
        }
        assert!(
            agent.try_wait().expect("status").is_none(),
            "the agent exited (seed {seed})"
        );
        assert!(
            Instant::now() < deadline,
            "Git never equalled the live state (seed {seed}): {pairs:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    agent.kill().expect("stop");
    let _ = agent.wait();
    let dir = repo.to_str().expect("utf-8");
    git(&repo, &["--git-dir", dir, "fsck", "--strict"], None);
    let merges = git(
        &repo,
        &["--git-dir", dir, "rev-list", "--merges", "--count", "main"],
        None,
    );
    assert_eq!(merges, "0");
}
