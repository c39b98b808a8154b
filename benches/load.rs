//! Load, measured (issue #15 item 8). The agent runs as its own process (`gitops-reverser run`,
//! the release build), the API simulator in another (`gitops-reverser sim`), each destination
//! on a local bare repository; this process writes to the API and watches the repositories.
//!
//! 1. `initial`: N ConfigMaps exist before the agent starts → time from the agent's start until
//!    its reconcile commit is on the remote, and the agent process's peak RSS (`VmHWM`).
//! 2. `sustained`: R changes/s for S seconds over 10,000 ConfigMaps, each change a unique value
//!    → the delay from each change's API write to the first push that contains it (p50, p99,
//!    max), read from the pushed commits; the remote's branch is polled every 2 ms.
//! 3. `replicas`: the same load over the same objects, split between two repositories (half
//!    the namespaces each) led by two `--leader-elect` replicas → the same figures per
//!    repository, peak RSS per replica.
//!
//! Run: `cargo bench --bench load` (small: 20,000 objects, 15 s of load) or
//! `LOAD_FULL=1 cargo bench --bench load` (100,000 objects, 500 changes/s for 60 s: the figures
//! in docs/performance.md). `LOAD_ONLY=initial,sustained,replicas` picks scenarios;
//! `LOAD_OBJECTS`, `LOAD_RATE`, `LOAD_SECONDS` override the sizes; `LOAD_KEEP=1` keeps the
//! repositories and the agents' logs; `LOAD_AGENT_PREFIX="heaptrack -o /tmp/agent"` runs the
//! agent under a profiler.

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{DynamicObject, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const FOLDER: &str = "clusters/load";
/// ConfigMaps per namespace in the sustained and replicas scenarios (10,000 = 100 × 100).
const PER_NAMESPACE: usize = 100;
/// ConfigMaps per namespace in the initial scenario.
const PER_NAMESPACE_INITIAL: usize = 500;
/// API writes in flight at most (the writer paces itself; this only bounds a slow API).
const IN_FLIGHT: usize = 64;

struct Sizes {
    initial_objects: usize,
    objects: usize,
    rate: usize,
    seconds: u64,
}

fn main() {
    let quick = std::env::args().any(|a| a == "--test");
    let full = std::env::var("LOAD_FULL").is_ok_and(|v| v == "1");
    let number = |name: &str, default: usize| -> usize {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let sizes = if quick {
        Sizes {
            initial_objects: 200,
            objects: 200,
            rate: 50,
            seconds: 2,
        }
    } else {
        Sizes {
            initial_objects: number("LOAD_OBJECTS", if full { 100_000 } else { 20_000 }),
            objects: 10_000,
            rate: number("LOAD_RATE", 500),
            seconds: number("LOAD_SECONDS", if full { 60 } else { 15 }) as u64,
        }
    };
    let only = std::env::var("LOAD_ONLY").unwrap_or_else(|_| "initial,sustained,replicas".into());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "load: the agent and the simulator in their own processes; {} cores, load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
    for scenario in only.split(',').map(str::trim) {
        match scenario {
            "initial" => runtime.block_on(initial(sizes.initial_objects)),
            "sustained" => runtime.block_on(sustained(&sizes, false)),
            "replicas" => runtime.block_on(sustained(&sizes, true)),
            other => panic!("LOAD_ONLY: unknown scenario {other:?} (initial, sustained, replicas)"),
        }
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Scenario 1: start → reconcile commit pushed, and peak RSS, for `objects` ConfigMaps.
async fn initial(objects: usize) {
    let cluster = Cluster::start().await;
    let namespaces = objects.div_ceil(PER_NAMESPACE_INITIAL);
    let populated = Instant::now();
    cluster
        .populate(namespaces, PER_NAMESPACE_INITIAL, objects, |_| "one")
        .await;
    let populate = populated.elapsed();
    let repo = cluster.repository("one").await;
    cluster.cluster_rule("one", Some("one")).await;
    let mut agent = Agent::start(&cluster, "agent", &[]);
    let tip = wait_for("the reconcile commit", Duration::from_secs(600), || {
        repo.tip()
    })
    .await;
    let pushed = agent.started.elapsed();
    let peak_at_push = agent.peak_rss_kib();
    let files = git(&repo.path, &["ls-tree", "-r", "--name-only", &tip])
        .lines()
        .filter(|l| l.ends_with(".yaml") && l.contains("/configmaps/"))
        .count();
    assert_eq!(files, objects, "the reconcile commit holds every object");
    wait_for("the agent to be ready", Duration::from_secs(300), || {
        agent.ready().then_some(())
    })
    .await;
    let ready = agent.started.elapsed();
    let stopped = agent.stop();
    let peak = agent.peak_rss_kib().max(stopped);
    println!(
        "\ninitial reconcile: {objects} ConfigMaps in {namespaces} namespaces (created in {populate:.1?})"
    );
    println!("  agent start → reconcile commit pushed: {pushed:.2?} (goal: under 30 s)");
    println!("  agent start → ready: {ready:.2?}");
    println!(
        "  agent peak RSS (VmHWM): {} MiB at the push, {} MiB by the end (goal: under 600 MiB)",
        peak_at_push / 1024,
        peak / 1024
    );
    println!(
        "  commits on the remote: {}; load average now {}",
        git(&repo.path, &["rev-list", "--count", "main"]).trim(),
        load_average()
    );
}

/// Scenarios 2 and 3: `rate` changes/s for `seconds` over `objects` ConfigMaps, one agent and
/// one repository, or two `--leader-elect` replicas and two repositories (half the namespaces
/// each).
async fn sustained(sizes: &Sizes, replicas: bool) {
    let cluster = Cluster::start().await;
    let namespaces = sizes.objects.div_ceil(PER_NAMESPACE);
    let halves: &[&str] = if replicas { &["one", "two"] } else { &["one"] };
    let half = |n: usize| halves[n * halves.len() / namespaces];
    let names = cluster
        .populate(namespaces, PER_NAMESPACE, sizes.objects, half)
        .await;
    let mut repos = BTreeMap::new();
    for name in halves {
        repos.insert(name.to_string(), cluster.repository(name).await);
        cluster.cluster_rule(name, replicas.then_some(*name)).await;
    }
    let mut agents = if replicas {
        vec![
            Agent::start(&cluster, "agent-a", &ELECTION),
            Agent::start(&cluster, "agent-b", &ELECTION),
        ]
    } else {
        vec![Agent::start(&cluster, "agent", &[])]
    };
    // Settled: every repository has its reconcile commit, the replicas lead one each, every
    // replica is ready, and no branch moved for 3 s.
    let settle = Instant::now();
    let leases: Api<Lease> = Api::namespaced(cluster.client.clone(), "infra");
    let mut last: Vec<Option<String>> = Vec::new();
    let mut still_since = Instant::now();
    loop {
        assert!(
            settle.elapsed() < Duration::from_secs(300),
            "the agents did not settle; their logs are in {}",
            cluster.scratch.path().display()
        );
        let tips: Vec<Option<String>> = repos.values().map(Repo::tip).collect();
        if tips != last {
            last = tips;
            still_since = Instant::now();
        }
        let split = !replicas || distinct_holders(&leases).await == 2;
        if last.iter().all(Option::is_some)
            && split
            && agents.iter().all(Agent::ready)
            && still_since.elapsed() > Duration::from_secs(3)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let settled = settle.elapsed();
    let bases: BTreeMap<String, String> = repos
        .iter()
        .map(|(n, r)| (n.clone(), r.tip().expect("settled")))
        .collect();

    // The pollers: every branch move of every repository, with the time it was seen.
    let stop_polling = Arc::new(AtomicBool::new(false));
    let pollers: BTreeMap<String, std::thread::JoinHandle<Vec<(Instant, String)>>> = repos
        .iter()
        .map(|(n, r)| {
            let (repo, stop) = (r.clone(), stop_polling.clone());
            (n.clone(), std::thread::spawn(move || repo.poll(&stop)))
        })
        .collect();

    // The writer: change i at start + i/rate, a unique value each; objects in a shuffled
    // order, so an object changes again only after every other did (no two writes of one
    // object in flight).
    let total = sizes.rate * sizes.seconds as usize;
    let mut order: Vec<usize> = (0..names.len()).collect();
    fastrand::Rng::with_seed(15).shuffle(&mut order);
    let gate = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let start = tokio::time::Instant::now();
    let mut writes = Vec::with_capacity(total);
    for i in 0..total {
        tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / sizes.rate as f64))
            .await;
        let permit = gate.clone().acquire_owned().await.expect("gate");
        let (namespace, name) = names[order[i % order.len()]].clone();
        let api: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), &namespace);
        writes.push(tokio::spawn(async move {
            // Values from 1: the objects were created with 0.
            let seq = i + 1;
            let patch = json!({"data": {"seq": seq.to_string()}});
            let sent = Instant::now();
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .expect("a change");
            drop(permit);
            Change {
                path: format!("{FOLDER}/{namespace}/core/configmaps/{name}.yaml"),
                seq,
                sent,
                took: sent.elapsed(),
            }
        }));
    }
    let mut written = Vec::with_capacity(total);
    for w in writes {
        written.push(w.await.expect("writer"));
    }
    let writing = start.elapsed();

    // Which push delivered each change: walk the branch moves seen, reading the values each
    // pushed tip holds for the files it changed, until every change is delivered.
    let route: HashMap<String, String> = names
        .iter()
        .map(|(ns, n)| {
            let namespace_index: usize = ns.trim_start_matches("ns-").parse().expect("ns");
            (
                format!("{FOLDER}/{ns}/core/configmaps/{n}.yaml"),
                half(namespace_index).to_string(),
            )
        })
        .collect();
    let mut pending: BTreeMap<String, HashMap<String, VecDeque<&Change>>> = BTreeMap::new();
    for w in &written {
        pending
            .entry(route[&w.path].clone())
            .or_default()
            .entry(w.path.clone())
            .or_default()
            .push_back(w);
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(
            Instant::now() < deadline,
            "changes not pushed 120 s after the load; the agents' logs are in {}",
            cluster.scratch.path().display()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Peek at the newest tips: done when each repository's tip holds every last value.
        let done = pending.iter().all(|(repo, files)| {
            let Some(tip) = repos[repo].tip() else {
                return false;
            };
            let values = repos[repo].values_between(&bases[repo], &tip);
            files.iter().all(|(path, queue)| {
                queue
                    .back()
                    .is_none_or(|last| values.get(path).is_some_and(|v| *v >= last.seq))
            })
        });
        if done {
            break;
        }
    }
    stop_polling.store(true, Ordering::Relaxed);
    let mut results = Vec::new();
    for (name, poller) in pollers {
        let moves = poller.join().expect("poller");
        let repo = &repos[&name];
        let files = pending.get_mut(&name).expect("changes for each repository");
        let mut delays = Vec::new();
        let mut previous = bases[&name].clone();
        for (seen, tip) in &moves {
            for (path, value) in repo.values_between(&previous, tip) {
                let Some(queue) = files.get_mut(&path) else {
                    continue;
                };
                while queue.front().is_some_and(|w| w.seq <= value) {
                    let w = queue.pop_front().expect("front");
                    delays.push((w.sent, seen.saturating_duration_since(w.sent)));
                }
            }
            previous = tip.clone();
        }
        let undelivered: usize = files.values().map(VecDeque::len).sum();
        assert_eq!(undelivered, 0, "every change of {name} is in a push");
        let commits = git(
            &repo.path,
            &["rev-list", "--count", &format!("{}..main", bases[&name])],
        );
        results.push((name, delays, moves.len(), commits.trim().to_string()));
    }
    let rss: Vec<(String, u64, (f64, u64))> = agents
        .iter_mut()
        .map(|a| {
            let push = a.push_time();
            (a.name.clone(), a.stop(), push)
        })
        .collect();
    let mut latencies: Vec<Duration> = written.iter().map(|w| w.took).collect();
    println!(
        "\n{}: {total} changes at {} /s for {} s over {} ConfigMaps in {namespaces} namespaces{}",
        if replicas {
            "two replicas"
        } else {
            "sustained"
        },
        sizes.rate,
        sizes.seconds,
        names.len(),
        if replicas {
            ", two repositories (half the namespaces each), two --leader-elect replicas"
        } else {
            ""
        }
    );
    println!(
        "  settled after {settled:.1?}; writing took {writing:.2?} ({:.0} changes/s); API write p50 {:.1?}, p99 {:.1?}",
        total as f64 / writing.as_secs_f64(),
        percentile(&mut latencies, 50.0),
        percentile(&mut latencies, 99.0)
    );
    // The last window of the load closes on its quiet period (3 s without a change), not on
    // its size: the changes of the load's last seconds are also reported apart.
    let steady_until = start.into_std() + Duration::from_secs(sizes.seconds.saturating_sub(5));
    for (name, delays, pushes, commits) in results {
        let mut all: Vec<Duration> = delays.iter().map(|(_, d)| *d).collect();
        let mut steady: Vec<Duration> = delays
            .iter()
            .filter(|(sent, _)| *sent < steady_until)
            .map(|(_, d)| *d)
            .collect();
        println!(
            "  repository {name}: {} changes, write → push p50 {:.2?}, p99 {:.2?}, max {:.2?} (goal p99 under 5 s); {pushes} pushes, {commits} commits",
            all.len(),
            percentile(&mut all, 50.0),
            percentile(&mut all, 99.0),
            percentile(&mut all, 100.0),
        );
        println!(
            "    without the load's last 5 s ({} changes): p50 {:.2?}, p99 {:.2?}, max {:.2?}",
            steady.len(),
            percentile(&mut steady, 50.0),
            percentile(&mut steady, 99.0),
            percentile(&mut steady, 100.0),
        );
    }
    for (name, peak, (push_seconds, pushes)) in rss {
        println!(
            "  {name}: peak RSS (VmHWM) {} MiB; `git push` took {:.2} s per push on average ({pushes} pushes, initial included)",
            peak / 1024,
            push_seconds / pushes.max(1) as f64
        );
    }
    println!("  load average now {}", load_average());
}

/// The election flags of the replicas: the defaults of the Deployment, the Leases in `infra`.
const ELECTION: [&str; 3] = [
    "--leader-elect",
    "--leader-elect-resource-namespace",
    "infra",
];

/// One change as written: the file it lands in, its value, when it was sent, how long the API took.
struct Change {
    path: String,
    seq: usize,
    sent: Instant,
    took: Duration,
}

fn percentile(values: &mut [Duration], p: f64) -> Duration {
    if values.is_empty() {
        return Duration::ZERO;
    }
    values.sort_unstable();
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

async fn distinct_holders(leases: &Api<Lease>) -> usize {
    let Ok(list) = leases
        .list(&ListParams::default().labels("configbutler.ai/lease-role=repository"))
        .await
    else {
        return 0;
    };
    let holders: std::collections::BTreeSet<String> = list
        .items
        .into_iter()
        .filter_map(|l| l.spec?.holder_identity)
        .filter(|h| !h.is_empty())
        .collect();
    holders.len()
}

/// Polls `check` every 20 ms until it gives a value; panics naming `what` after `within`.
async fn wait_for<T>(what: &str, within: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `git --git-dir <repo> <args>`; its stdout.
fn git(repo: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(repo)
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// A bare repository the agent pushes to.
#[derive(Clone)]
struct Repo {
    path: PathBuf,
}

impl Repo {
    /// The tip of `main`, read from the ref file (a push writes it by rename), else
    /// `packed-refs`.
    fn tip(&self) -> Option<String> {
        if let Ok(text) = std::fs::read_to_string(self.path.join("refs/heads/main")) {
            let tip = text.trim();
            if tip.len() == 40 {
                return Some(tip.to_string());
            }
        }
        std::fs::read_to_string(self.path.join("packed-refs"))
            .ok()?
            .lines()
            .find(|l| l.ends_with(" refs/heads/main"))
            .map(|l| l[..40].to_string())
    }

    /// Every move of `main` until `stop`, with the time it was seen (polled every 2 ms).
    fn poll(&self, stop: &AtomicBool) -> Vec<(Instant, String)> {
        let mut moves: Vec<(Instant, String)> = Vec::new();
        let mut last = self.tip();
        while !stop.load(Ordering::Relaxed) {
            let tip = self.tip();
            if tip != last {
                if let Some(t) = &tip {
                    moves.push((Instant::now(), t.clone()));
                }
                last = tip;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        moves
    }

    /// The `seq` value of every ConfigMap file changed between two commits, as `to` holds it.
    fn values_between(&self, from: &str, to: &str) -> HashMap<String, usize> {
        let diff = git(
            &self.path,
            &["diff", "--no-renames", "-U0", from, to, "--", FOLDER],
        );
        let mut values = HashMap::new();
        let mut file: Option<&str> = None;
        for line in diff.lines() {
            if let Some(path) = line.strip_prefix("+++ b/") {
                file = Some(path);
            } else if line.starts_with("+++ ") {
                file = None;
            } else if let (Some(path), Some(rest)) = (file, line.strip_prefix("+  seq: "))
                && let Ok(seq) = rest.trim_matches(['"', '\'']).parse()
            {
                values.insert(path.to_string(), seq);
            }
        }
        values
    }
}

/// The simulator in its own process, a client of it, and a scratch directory.
struct Cluster {
    sim: Child,
    client: kube::Client,
    kubeconfig: PathBuf,
    scratch: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.sim.kill();
        let _ = self.sim.wait();
    }
}

impl Cluster {
    async fn start() -> Self {
        let mut scratch = tempfile::TempDir::new().expect("scratch");
        if std::env::var_os("LOAD_KEEP").is_some() {
            scratch.disable_cleanup(true);
            println!(
                "(LOAD_KEEP: repositories and agent logs stay in {})",
                scratch.path().display()
            );
        }
        let kubeconfig = scratch.path().join("kubeconfig");
        let sim = Command::new(env!("CARGO_BIN_EXE_gitops-reverser"))
            .args(["sim", "--listen", &format!("127.0.0.1:{}", free_port())])
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .stdout(Stdio::null())
            .spawn()
            .expect("simulator");
        wait_for("the simulator", Duration::from_secs(30), || {
            kubeconfig.exists().then_some(())
        })
        .await;
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
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let infra = serde_json::from_value(json!({"metadata": {"name": "infra"}})).expect("ns");
        namespaces
            .create(&PostParams::default(), &infra)
            .await
            .expect("infra");
        Self {
            sim,
            client,
            kubeconfig,
            scratch,
        }
    }

    /// `objects` ConfigMaps (about 400 bytes of data each) in `namespaces` namespaces
    /// `ns-000…`, each labelled `half: <half(n)>`; returns (namespace, name) of every one.
    async fn populate(
        &self,
        namespaces: usize,
        per_namespace: usize,
        objects: usize,
        half: impl Fn(usize) -> &'static str,
    ) -> Vec<(String, String)> {
        let ns_api: Api<Namespace> = Api::all(self.client.clone());
        for n in 0..namespaces {
            let ns = serde_json::from_value(
                json!({"metadata": {"name": format!("ns-{n:03}"), "labels": {"half": half(n)}}}),
            )
            .expect("ns");
            ns_api
                .create(&PostParams::default(), &ns)
                .await
                .expect("namespace");
        }
        let names: Vec<(String, String)> = (0..objects)
            .map(|i| {
                (
                    format!("ns-{:03}", i / per_namespace),
                    format!("cm-{:04}", i % per_namespace),
                )
            })
            .collect();
        let client = self.client.clone();
        futures::stream::iter(names.clone())
            .map(|(namespace, name)| {
                let api: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
                async move {
                    let cm = serde_json::from_value(json!({
                        "metadata": {"name": name, "labels": {"app": "load"}},
                        "data": {"seq": "0", "payload": "x".repeat(384)}
                    }))
                    .expect("cm");
                    api.create(&PostParams::default(), &cm)
                        .await
                        .expect("a ConfigMap");
                }
            })
            .buffer_unordered(32)
            .collect::<Vec<()>>()
            .await;
        names
    }

    /// A bare repository `<name>.git`, its GitRepoConfig and GitDestination `<name>` in `infra`
    /// (default commit windows: 3 s quiet, 60 s, 200 changes).
    async fn repository(&self, name: &str) -> Repo {
        let path = self.scratch.path().join(format!("{name}.git"));
        let status = Command::new("git")
            .args(["init", "-q", "--bare", "-b", "main"])
            .arg(&path)
            .status()
            .expect("git");
        assert!(status.success());
        self.apply(
            "GitRepoConfig",
            "gitrepoconfigs",
            name,
            json!({"url": format!("file://{}", path.display()), "accessPolicy": {"allowClusterRules": true}}),
        )
        .await;
        self.apply(
            "GitDestination",
            "gitdestinations",
            name,
            json!({"repoRef": {"name": name}, "branch": "main", "folder": FOLDER}),
        )
        .await;
        Repo { path }
    }

    /// A ClusterWatchRule sending ConfigMaps to destination `infra/<destination>`, of the
    /// namespaces labelled `half: <half>` (all when `None`).
    async fn cluster_rule(&self, destination: &str, half: Option<&str>) {
        let mut spec = json!({
            "destinationRef": {"name": destination, "namespace": "infra"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "scope": "Namespaced"}]
        });
        if let Some(half) = half {
            spec["namespaceSelector"] = json!({"matchLabels": {"half": half}});
        }
        self.apply("ClusterWatchRule", "clusterwatchrules", destination, spec)
            .await;
    }

    async fn apply(&self, kind: &str, plural: &str, name: &str, spec: Value) {
        let resource = kube::api::ApiResource {
            group: "configbutler.ai".into(),
            version: "v1alpha1".into(),
            api_version: "configbutler.ai/v1alpha1".into(),
            kind: kind.into(),
            plural: plural.into(),
        };
        let mut object = json!({"apiVersion": "configbutler.ai/v1alpha1", "kind": kind,
            "metadata": {"name": name}, "spec": spec});
        let api: Api<DynamicObject> = if kind == "ClusterWatchRule" {
            Api::all_with(self.client.clone(), &resource)
        } else {
            object["metadata"]["namespace"] = json!("infra");
            Api::namespaced_with(self.client.clone(), "infra", &resource)
        };
        api.patch(
            name,
            &PatchParams::apply("load").force(),
            &Patch::Apply(&object),
        )
        .await
        .expect("configure");
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// `gitops-reverser run` as a child process (the release build of this benchmark).
struct Agent {
    name: String,
    child: Child,
    metrics: u16,
    started: Instant,
    /// The last `VmHWM` read, in KiB (kept once the process is gone).
    peak: u64,
}

impl Agent {
    fn start(cluster: &Cluster, name: &str, extra: &[&str]) -> Self {
        let metrics = free_port();
        let log = cluster.scratch.path().join(format!("{name}.log"));
        let started = Instant::now();
        // A profiler may wrap the agent (LOAD_AGENT_PREFIX="heaptrack -o /tmp/agent"); the
        // RSS figures are then the wrapper's.
        let prefix = std::env::var("LOAD_AGENT_PREFIX").unwrap_or_default();
        let mut words = prefix.split_whitespace();
        let mut command = match words.next() {
            Some(program) => {
                let mut c = Command::new(program);
                c.args(words).arg(env!("CARGO_BIN_EXE_gitops-reverser"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_gitops-reverser")),
        };
        let child = command
            .arg("run")
            .args(extra)
            .arg("--kubeconfig")
            .arg(&cluster.kubeconfig)
            .arg("--state-dir")
            .arg(cluster.scratch.path().join(format!("state-{name}")))
            .arg("--metrics-addr")
            .arg(format!("127.0.0.1:{metrics}"))
            .args(["--cluster-name", "load"])
            .env("POD_NAME", name)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("the agent starts");
        Self {
            name: name.into(),
            child,
            metrics,
            started,
            peak: 0,
        }
    }

    /// The process's peak resident set (`VmHWM`, KiB), as last read while it ran.
    fn peak_rss_kib(&mut self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        if let Some(kib) = status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        {
            self.peak = self.peak.max(kib);
        }
        self.peak
    }

    /// `/readyz` answers 200.
    fn ready(&self) -> bool {
        self.get("/readyz").starts_with("HTTP/1.1 200")
    }

    /// The time `git push` took, summed over the agent's pushes, and their number (from
    /// `gitops_reverser_push_duration_seconds`).
    fn push_time(&self) -> (f64, u64) {
        let metrics = self.get("/metrics");
        let sum = |suffix: &str| -> f64 {
            metrics
                .lines()
                .filter(|l| {
                    l.starts_with(&format!("gitops_reverser_push_duration_seconds_{suffix}{{"))
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        };
        (sum("sum"), sum("count") as u64)
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
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
    }

    /// Reads the peak one last time, stops the process (SIGTERM, as Kubernetes does) and
    /// returns the peak in KiB.
    fn stop(&mut self) -> u64 {
        let peak = self.peak_rss_kib();
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_child(&self.child),
            rustix::process::Signal::TERM,
        );
        let _ = self.child.wait();
        peak
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
