//! The agent against the API simulator: time from start to the initial reconcile commit for
//! 10,000 ConfigMaps in 100 namespaces, then 1,000 changes at full speed until all are pushed,
//! and the process's peak memory. Run: `cargo bench --bench agent`.

use gitops_reverser::agent::runtime::{AgentOptions, spawn};
use gitops_reverser::git::transport::GitCli;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Counts live heap bytes, so the figure is what the agent keeps, not what the allocator has not
/// yet returned to the system.
#[global_allocator]
static ALLOCATOR: cap::Cap<std::alloc::System> = cap::Cap::new(std::alloc::System, usize::MAX);

fn main() {
    let quick = std::env::args().any(|a| a == "--test");
    let (namespaces, per_namespace, changes) = if quick { (2, 5, 10) } else { (100, 100, 1_000) };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(bench(namespaces, per_namespace, changes));
}

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

async fn bench(namespaces: usize, per_namespace: usize, changes: usize) {
    // The simulator runs in its own process, so this process's memory is the agent's.
    let scratch = tempfile::TempDir::new().expect("scratch");
    let kubeconfig = scratch.path().join("kubeconfig");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let mut sim = std::process::Command::new(env!("CARGO_BIN_EXE_gitops-reverser"))
        .args([
            "sim",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--kubeconfig",
        ])
        .arg(&kubeconfig)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("simulator");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !kubeconfig.exists() {
        assert!(Instant::now() < deadline, "the simulator did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let config = kube::config::Kubeconfig::read_from(&kubeconfig).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(config, &Default::default())
        .await
        .expect("config");
    let client = kube::Client::try_from(config).expect("client");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in gitops_reverser::crd::all_crds() {
        crds.create(&PostParams::default(), &crd)
            .await
            .expect("CRD");
    }
    let repo = scratch.path().join("repo.git");
    let status = std::process::Command::new("git")
        .args(["init", "-q", "--bare", "-b", "main"])
        .arg(&repo)
        .status()
        .expect("git");
    assert!(status.success());

    let ns_api: Api<Namespace> = Api::all(client.clone());
    for n in 0..namespaces {
        let ns = serde_json::from_value(json!({"metadata": {"name": format!("ns-{n:03}")}}))
            .expect("ns");
        ns_api
            .create(&PostParams::default(), &ns)
            .await
            .expect("ns");
    }
    ns_api
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "infra"}})).expect("ns"),
        )
        .await
        .expect("ns");
    let mut tasks = Vec::new();
    for n in 0..namespaces {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), &format!("ns-{n:03}"));
        tasks.push(tokio::spawn(async move {
            for i in 0..per_namespace {
                let cm = serde_json::from_value(
                    json!({"metadata": {"name": format!("cm-{i:03}"), "labels": {"app": "bench"}},
                    "data": {"key": format!("value-{i}"), "other": "x".repeat(200)}}),
                )
                .expect("cm");
                api.create(&PostParams::default(), &cm).await.expect("cm");
            }
        }));
    }
    for t in tasks {
        t.await.expect("create");
    }
    let total = namespaces * per_namespace;

    let resource = |kind: &str, plural: &str| kube::api::ApiResource {
        group: "configbutler.ai".into(),
        version: "v1alpha1".into(),
        api_version: "configbutler.ai/v1alpha1".into(),
        kind: kind.into(),
        plural: plural.into(),
    };
    for (kind, plural, namespace, spec) in [
        (
            "GitRepoConfig",
            "gitrepoconfigs",
            Some("infra"),
            json!({"url": format!("file://{}", repo.display()), "accessPolicy": {"allowClusterRules": true}}),
        ),
        (
            "GitDestination",
            "gitdestinations",
            Some("infra"),
            json!({"repoRef": {"name": "repo"}, "branch": "main", "folder": "clusters/bench"}),
        ),
        (
            "ClusterWatchRule",
            "clusterwatchrules",
            None,
            json!({"destinationRef": {"name": "dest", "namespace": "infra"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "scope": "Namespaced"}]}),
        ),
    ] {
        let name = if kind == "GitRepoConfig" {
            "repo"
        } else {
            "dest"
        };
        let mut object = json!({"apiVersion": "configbutler.ai/v1alpha1", "kind": kind, "metadata": {"name": name}, "spec": spec});
        let api: Api<DynamicObject> = match namespace {
            Some(ns) => {
                object["metadata"]["namespace"] = json!(ns);
                Api::namespaced_with(client.clone(), ns, &resource(kind, plural))
            }
            None => Api::all_with(client.clone(), &resource(kind, plural)),
        };
        api.patch(
            name,
            &PatchParams::apply("bench").force(),
            &Patch::Apply(&object),
        )
        .await
        .expect("configure");
    }

    let rss_before = rss_kib("VmRSS:");
    let heap_before = ALLOCATOR.allocated();
    let options = AgentOptions {
        state_dir: scratch.path().join("state"),
        allow_secrets: false,
        cluster: "bench".into(),
        streaming_lists: false,
        transport: Arc::new(GitCli::new()),
        settle: Duration::from_millis(50),
        resolver: None,
        ..AgentOptions::default()
    };
    let started = Instant::now();
    let running = spawn(client.clone(), options);
    let agent = running.handle.clone();
    while !agent.readiness.is_ready() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let reconcile = started.elapsed();

    // 1,000 changes as fast as the API takes them, then wait until all are pushed.
    let commits_before: u64 = agent
        .registry
        .handles()
        .iter()
        .map(|h| h.stats().commits.load(Ordering::Relaxed))
        .sum();
    let burst = Instant::now();
    for c in 0..changes {
        let ns = format!("ns-{:03}", c % namespaces);
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        let patch = json!({"data": {"key": format!("changed-{c}")}});
        api.patch(
            &format!("cm-{:03}", (c / namespaces) % per_namespace),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .expect("change");
    }
    let last = format!(
        "clusters/bench/ns-{:03}/core/configmaps/cm-{:03}.yaml",
        (changes - 1) % namespaces,
        ((changes - 1) / namespaces) % per_namespace
    );
    let want = format!("changed-{}", changes - 1);
    loop {
        let out = std::process::Command::new("git")
            .arg("--git-dir")
            .arg(&repo)
            .args(["show", &format!("main:{last}")])
            .output()
            .expect("git");
        let waiting: u64 = agent
            .registry
            .handles()
            .iter()
            .map(|h| h.stats().waiting_changes.load(Ordering::Relaxed))
            .sum();
        if String::from_utf8_lossy(&out.stdout).contains(&want) && waiting == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let steady = burst.elapsed();
    let commits_after: u64 = agent
        .registry
        .handles()
        .iter()
        .map(|h| h.stats().commits.load(Ordering::Relaxed))
        .sum();
    let rss_after = rss_kib("VmRSS:");
    let heap_after = ALLOCATOR.allocated();
    let peak = rss_kib("VmHWM:");
    running.stop().await.expect("agent");
    let _ = sim.kill();
    let _ = sim.wait();
    println!("agent, {total} ConfigMaps in {namespaces} namespaces (simulator in another process)");
    println!("  start → initial reconcile pushed: {reconcile:.2?}");
    println!(
        "  {changes} changes → all pushed: {steady:.2?} ({} commits)",
        commits_after - commits_before
    );
    println!(
        "  live heap held by the agent: {} MiB ({} bytes per tracked object)",
        heap_after.saturating_sub(heap_before) / (1 << 20),
        heap_after.saturating_sub(heap_before) / total.max(1)
    );
    println!(
        "  RSS before the agent {} MiB, after {} MiB, peak {} MiB",
        rss_before / 1024,
        rss_after / 1024,
        peak / 1024
    );
}
