//! Replicas and leases (issue #15 item 1): two agent processes (`gitops-reverser run
//! --leader-elect`, the real binary) against one simulator and two repositories. Each leads one;
//! a SIGKILLed replica's repository is taken over within the lease duration and the changes made
//! meanwhile land exactly once; a leader paused past its lease (SIGSTOP) pushes nothing when it
//! resumes; the ownership marker names the cluster (the uid of `kube-system`) and the holder.

use crate::support::agent_env::{Env, apply, show};
use crate::support::git_servers::{BareRepo, git};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::json;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const FOLDER: &str = "clusters/dev";
const LEASE: Duration = Duration::from_secs(4);
const REPOS: [&str; 2] = ["one", "two"];

struct Replica {
    name: String,
    child: Child,
    log: PathBuf,
    metrics: u16,
}

impl Replica {
    fn start(name: &str, kubeconfig: &Path, scratch: &Path) -> Self {
        let metrics = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log = scratch.join(format!("{name}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_gitops-reverser"))
            .args(["run", "--leader-elect", "--leader-elect-resource-namespace"])
            .arg("default")
            .args(["--leader-elect-lease-duration", "4s"])
            .args(["--leader-elect-renew-deadline", "3s"])
            .args(["--leader-elect-retry-period", "500ms"])
            .arg("--metrics-addr")
            .arg(format!("127.0.0.1:{metrics}"))
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--state-dir")
            .arg(scratch.join(format!("state-{name}")))
            .env("POD_NAME", name)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("the agent starts");
        Self {
            name: name.into(),
            child,
            log,
            metrics,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} {}", self.name);
    }

    /// `/metrics` of this replica (empty when it does not answer).
    fn metrics(&self) -> String {
        self.get("/metrics")
    }

    /// True when this replica runs `repo`'s worker and has finished its initial reconciles.
    fn settled_on(&self, repo: &str) -> bool {
        let runs = self
            .metrics()
            .lines()
            .any(|l| l.contains("waiting_changes{") && l.contains(&format!("/{repo}")));
        runs && self.get("/readyz").starts_with("HTTP/1.1 200")
    }

    /// One GET on the operations port; the whole answer (empty when it does not answer).
    fn get(&self, path: &str) -> String {
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.metrics)) else {
            return String::new();
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let request = format!("GET {path} HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n");
        if stream.write_all(request.as_bytes()).is_err() {
            return String::new();
        }
        let mut body = String::new();
        let _ = stream.read_to_string(&mut body);
        body
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` until it gives a value, or fails naming `what` after `within`.
async fn wait_for<T>(what: &str, within: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The holder of each repository's Lease, by repository name ("one", "two").
async fn holders(leases: &Api<Lease>) -> Vec<(String, Option<String>)> {
    let list = leases
        .list(&ListParams::default().labels("configbutler.ai/lease-role=repository"))
        .await
        .expect("list leases");
    let mut out = Vec::new();
    for lease in list.items {
        let repo = lease
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("configbutler.ai/repository"))
            .and_then(|r| {
                let url = r.split('#').next().unwrap_or_default();
                let url = url.trim_end_matches(".git");
                REPOS.iter().find(|n| url.ends_with(&format!("/{n}")))
            })
            .map(|n| n.to_string())
            .unwrap_or_default();
        let holder = lease.spec.and_then(|s| s.holder_identity);
        out.push((repo, holder));
    }
    out.sort();
    out
}

/// Waits until two different replicas lead the two repositories; returns who leads which.
async fn split_between_two(what: &str, leases: &Api<Lease>) -> Vec<(String, Option<String>)> {
    wait_for(what, Duration::from_secs(60), async || {
        let h = holders(leases).await;
        let names: std::collections::BTreeSet<_> =
            h.iter().filter_map(|(_, h)| h.clone()).collect();
        (h.len() == 2 && names.len() == 2).then_some(h)
    })
    .await
}

async fn holder_of(leases: &Api<Lease>, repo: &str) -> Option<String> {
    holders(leases)
        .await
        .into_iter()
        .find(|(r, _)| r == repo)
        .and_then(|(_, h)| h)
}

fn file(repo: &Path, namespace: &str, name: &str) -> Option<String> {
    show(
        repo,
        &format!("{FOLDER}/{namespace}/core/configmaps/{name}.yaml"),
    )
}

/// Commits on `main` that touched the ConfigMap's file.
fn commits_touching(repo: &Path, namespace: &str, name: &str) -> usize {
    let dir = repo.to_str().expect("utf-8");
    let path = format!("{FOLDER}/{namespace}/core/configmaps/{name}.yaml");
    git(
        repo,
        &["--git-dir", dir, "log", "--format=%H", "main", "--", &path],
        None,
    )
    .lines()
    .count()
}

async fn set(api: &Api<ConfigMap>, name: &str, value: &str) {
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name}, "data": {"value": value}});
    api.patch(
        name,
        &PatchParams::apply("person").force(),
        &Patch::Apply(&cm),
    )
    .await
    .expect("apply");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_split_repositories_take_over_and_fence() {
    let env = Env::with(kubesim::SimConfig::default().with_tls()).await;
    let (client, scratch) = (env.client.clone(), &env.scratch);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut repos = Vec::new();
    for ns in REPOS {
        env.namespace(ns, json!({})).await;
        let repo = BareRepo::init(scratch.path().join(format!("{ns}.git"))).path;
        for object in [
            json!({"apiVersion": "configbutler.ai/v1alpha1", "kind": "GitRepoConfig", "metadata": {"name": "repo", "namespace": ns},
                "spec": {"url": format!("file://{}", repo.display()), "commit": {"window": {"quiet": "1500ms"}}}}),
            json!({"apiVersion": "configbutler.ai/v1alpha1", "kind": "GitDestination", "metadata": {"name": "dev", "namespace": ns},
                "spec": {"repoRef": {"name": "repo"}, "branch": "main", "folder": FOLDER}}),
            json!({"apiVersion": "configbutler.ai/v1alpha1", "kind": "WatchRule", "metadata": {"name": "apps", "namespace": ns},
                "spec": {"destinationRef": {"name": "dev"}, "rules": [{"apiGroups": [""], "resources": ["configmaps"]}]}}),
        ] {
            apply(&client, object).await;
        }
        set(&Api::namespaced(client.clone(), ns), "cm", "initial").await;
        repos.push(repo);
    }
    let kubeconfig = scratch.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        env.sim.kubeconfig("admin").expect("kubeconfig"),
    )
    .expect("write");
    let leases: Api<Lease> = Api::namespaced(client.clone(), "default");
    let cluster_uid = namespaces
        .get("kube-system")
        .await
        .expect("kube-system")
        .metadata
        .uid
        .expect("kube-system has a uid");

    // Two replicas: each comes to lead one repository, and each repository gets its files.
    let mut replicas = vec![
        Replica::start("agent-a", &kubeconfig, scratch.path()),
        Replica::start("agent-b", &kubeconfig, scratch.path()),
    ];
    let split = split_between_two("each replica to lead one repository", &leases).await;
    for (i, ns) in REPOS.iter().enumerate() {
        let repo = &repos[i];
        wait_for(
            &format!("repository {ns} to get its ConfigMap"),
            Duration::from_secs(30),
            async || file(repo, ns, "cm").filter(|f| f.contains("initial")),
        )
        .await;
        let marker = show(repo, &format!("{FOLDER}/.gitops-reverser-owner")).expect("marker");
        let holder = split
            .iter()
            .find(|(r, _)| r == ns)
            .and_then(|(_, h)| h.clone());
        assert!(
            marker.contains(&format!("cluster: {cluster_uid}")),
            "{marker}"
        );
        assert!(
            marker.contains(&format!("holder: {}", holder.expect("held"))),
            "{marker}"
        );
    }

    // SIGKILL the leader of repository one; the other takes over within the lease duration,
    // and what changed meanwhile lands exactly once.
    let one: Api<ConfigMap> = Api::namespaced(client.clone(), "one");
    let leader = holder_of(&leases, "one").await.expect("one is led");
    let victim = replicas
        .iter()
        .position(|r| r.name == leader)
        .expect("a replica");
    let survivor = replicas[1 - victim].name.clone();
    let before = commits_touching(&repos[0], "one", "cm");
    replicas[victim].signal("KILL");
    let killed = Instant::now();
    set(&one, "cm", "during-takeover").await;
    set(&one, "cm2", "created-during-takeover").await;
    wait_for(
        "the survivor to take over repository one",
        LEASE + Duration::from_secs(3),
        async || {
            (holder_of(&leases, "one").await.as_deref() == Some(survivor.as_str())).then_some(())
        },
    )
    .await;
    eprintln!("takeover after {:?}", killed.elapsed());
    wait_for(
        "the changes made during the takeover in Git",
        Duration::from_secs(30),
        async || {
            let cm = file(&repos[0], "one", "cm").filter(|f| f.contains("during-takeover"));
            let cm2 =
                file(&repos[0], "one", "cm2").filter(|f| f.contains("created-during-takeover"));
            cm.and(cm2)
        },
    )
    .await;
    // One more change after the takeover settles: the file changed in exactly one commit per
    // change, nothing twice.
    set(&one, "cm", "after-takeover").await;
    wait_for(
        "the change after the takeover in Git",
        Duration::from_secs(30),
        async || file(&repos[0], "one", "cm").filter(|f| f.contains("after-takeover")),
    )
    .await;
    assert_eq!(commits_touching(&repos[0], "one", "cm"), before + 2);
    assert_eq!(commits_touching(&repos[0], "one", "cm2"), 1);

    // A replacement joins and gets one repository back (the survivor hands one over).
    replicas.push(Replica::start("agent-c", &kubeconfig, scratch.path()));
    split_between_two("the repositories to be split again", &leases).await;

    // Pause the leader of repository two with a change in an open commit window, past its
    // lease. The other replica takes over and writes the state; the paused one, resumed, must
    // not push its stale window.
    let two: Api<ConfigMap> = Api::namespaced(client.clone(), "two");
    let leader = holder_of(&leases, "two").await.expect("two is led");
    let paused = replicas
        .iter()
        .position(|r| r.name == leader && r.child.id() != 0)
        .expect("a replica");
    let other = replicas
        .iter()
        .find(|r| r.name != leader && r.name != replicas[victim].name)
        .expect("another live replica")
        .name
        .clone();
    // The leader of two runs its destination and has reconciled it: a change now goes into a
    // commit window (not into a reconcile's snapshot).
    wait_for(
        "the leader of two to settle",
        Duration::from_secs(30),
        async || replicas[paused].settled_on("two").then_some(()),
    )
    .await;
    set(&two, "cm", "stale-in-paused-window").await;
    wait_for(
        "the leader of two to hold the change in a window",
        Duration::from_secs(20),
        async || {
            let metrics = replicas[paused].metrics();
            metrics
                .lines()
                .find(|l| {
                    l.contains("waiting_changes{") && l.contains("/two") && !l.ends_with(" 0")
                })
                .map(str::to_string)
        },
    )
    .await;
    replicas[paused].signal("STOP");
    wait_for(
        "the other replica to take over repository two",
        LEASE + Duration::from_secs(3),
        async || (holder_of(&leases, "two").await.as_deref() == Some(other.as_str())).then_some(()),
    )
    .await;
    wait_for(
        "the new leader to reconcile repository two",
        Duration::from_secs(30),
        async || file(&repos[1], "two", "cm").filter(|f| f.contains("stale-in-paused-window")),
    )
    .await;
    set(&two, "cm", "newest").await;
    wait_for(
        "the newest value in Git",
        Duration::from_secs(30),
        async || file(&repos[1], "two", "cm").filter(|f| f.contains("newest")),
    )
    .await;
    let dir = repos[1].to_str().expect("utf-8");
    let head = git(&repos[1], &["--git-dir", dir, "rev-parse", "main"], None);
    replicas[paused].signal("CONT");
    wait_for(
        "the resumed replica to drop its window unpushed",
        Duration::from_secs(30),
        async || {
            replicas[paused]
                .log()
                .contains("lease lost: dropping unpushed changes")
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        git(&repos[1], &["--git-dir", dir, "rev-parse", "main"], None),
        head,
        "the resumed replica pushed after its lease expired"
    );
    assert!(
        file(&repos[1], "two", "cm")
            .expect("file")
            .contains("newest")
    );
    let log = replicas[paused].log();
    assert!(!log.contains("panicked"), "{log}");

    // A replica that shuts down (SIGTERM) pushes, releases its Leases and deletes its member
    // Lease: the other leads everything at its next retry, not a lease duration later.
    let leaving = replicas[paused].name.clone();
    wait_for(
        "the resumed replica to lead again",
        Duration::from_secs(60),
        async || {
            let h = holders(&leases).await;
            h.iter()
                .any(|(_, h)| h.as_deref() == Some(leaving.as_str()))
                .then_some(())
        },
    )
    .await;
    replicas[paused].signal("TERM");
    wait_for("the replica to exit", Duration::from_secs(30), async || {
        replicas[paused].child.try_wait().expect("status")
    })
    .await;
    let exited = Instant::now();
    wait_for(
        "the other replica to lead both repositories",
        LEASE,
        async || {
            let h = holders(&leases).await;
            h.iter()
                .all(|(_, h)| h.as_deref() == Some(other.as_str()))
                .then_some(())
        },
    )
    .await;
    eprintln!("handover after a shutdown took {:?}", exited.elapsed());
    let members = leases
        .list(&ListParams::default().labels("configbutler.ai/lease-role=member"))
        .await
        .expect("list");
    assert!(
        !members
            .items
            .iter()
            .any(|l| l.spec.as_ref().and_then(|s| s.holder_identity.as_deref()) == Some(&leaving)),
        "the member Lease of {leaving} is still there"
    );
}

/// What the election relies on from the API server, on the simulator: Leases with optimistic
/// concurrency (an update with a stale resourceVersion is a 409 Conflict, a second create a
/// 409 AlreadyExists) and a `kube-system` namespace whose uid stays the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_serves_leases_with_conflicts_and_a_stable_kube_system_uid() {
    let env = Env::new().await;
    let namespaces: Api<Namespace> = Api::all(env.client.clone());
    let uid = |ns: Namespace| ns.metadata.uid.expect("kube-system has a uid");
    let first = uid(namespaces.get("kube-system").await.expect("kube-system"));
    let labelled = json!({"metadata": {"labels": {"touched": "yes"}}});
    namespaces
        .patch(
            "kube-system",
            &PatchParams::default(),
            &Patch::Merge(&labelled),
        )
        .await
        .expect("patch");
    assert_eq!(
        uid(namespaces.get("kube-system").await.expect("again")),
        first
    );

    let leases: Api<Lease> = Api::namespaced(env.client.clone(), "default");
    let lease: Lease = serde_json::from_value(json!({"metadata": {"name": "l"},
        "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15, "leaseTransitions": 0,
            "renewTime": "2026-12-04T21:00:00.000000Z"}}))
    .expect("lease");
    let created = leases
        .create(&Default::default(), &lease)
        .await
        .expect("create");
    let again = leases.create(&Default::default(), &lease).await;
    assert!(matches!(again, Err(kube::Error::Api(s)) if s.code == 409));
    let mut renewed = created.clone();
    renewed.spec.as_mut().expect("spec").holder_identity = Some("b".into());
    let written = leases
        .replace("l", &Default::default(), &renewed)
        .await
        .expect("an update with the current resourceVersion");
    assert_ne!(
        written.metadata.resource_version,
        created.metadata.resource_version
    );
    // A replica with the older view loses: 409, and the Lease keeps the newer holder.
    let stale = leases.replace("l", &Default::default(), &created).await;
    assert!(
        matches!(&stale, Err(kube::Error::Api(s)) if s.code == 409),
        "{stale:?}"
    );
    let now = leases.get("l").await.expect("get");
    assert_eq!(
        now.spec.and_then(|s| s.holder_identity).as_deref(),
        Some("b")
    );
}
