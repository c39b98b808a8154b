//! The agent's main loop: reflects the custom resources, namespaces and discovery into the
//! plan, applies it (watches, workers, statuses, initial reconciles) and captures live events.

use super::capture::{
    Decision, Layout, came_from_git, decide_delete, decide_upsert, render_folder,
};
use super::watches::{WatchEvent, WatchManager, api_for};
use crate::config::{self, Inputs, ObjectKey, ObjectRef, Plan, ProblemKind, RemoteProblem};
use crate::crd::{
    ClusterWatchRule, GitDestination, GitRepoConfig, Operation, PrunePolicy, WatchRule,
};
use crate::git::change::{Change, FileChange};
use crate::git::credentials::Credentials;
use crate::git::registry::Registry;
use crate::git::transport::{Remote, Transport};
use crate::git::window::WindowConfig;
use crate::git::worker::{
    Prune, PushEvent, SnapshotRequest, WorkerConfig, WorkerError, WorkerHandle,
};
use crate::identity::Author;
use crate::manifest::exclude::ExclusionPolicy;
use crate::ops::Readiness;
use crate::ops::metrics::{EventDecision, Metrics};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc};

/// How the agent runs.
#[derive(Clone)]
pub struct AgentOptions {
    pub state_dir: PathBuf,
    pub allow_secrets: bool,
    /// This cluster's name in ownership markers.
    pub cluster: String,
    pub streaming_lists: bool,
    pub transport: Arc<dyn Transport>,
    /// How long after the last configuration change the plan is recomputed (debounce).
    pub settle: Duration,
    /// Who made each change (audit and admission facts); without it every change is
    /// authored "unknown (unattributed)".
    pub resolver: Option<Arc<crate::attribution::resolver::Resolver>>,
    /// How often credentials Secrets are read again and unreachable repositories probed again
    /// ([`DEFAULT_RECHECK`]); reachable ones are probed every [`PROBE_INTERVAL`].
    pub recheck: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

/// How often a repository's reachability is checked again while nothing changes.
const PROBE_INTERVAL: Duration = Duration::from_secs(300);
/// How soon an unreachable repository is checked again, so its condition recovers promptly,
/// and how often credentials Secrets are read again (a rotated token is used from then on).
pub const DEFAULT_RECHECK: Duration = Duration::from_secs(20);

/// What a reachability check was about: a change of any of these checks again at once.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ProbeKey {
    url: String,
    generation: Option<i64>,
    /// The credentials probed with (`Debug` prints no secret): a rotated token is verified
    /// again at once.
    credentials: Option<Credentials>,
}

/// A reachability check: what, when, and the answer (`None` while it runs).
type Probe = (ProbeKey, Instant, Option<Result<(), RemoteProblem>>);

/// The outcome of the latest push round per repository URL, written by the workers (from
/// their blocking threads) and taken by the main loop: a failed push marks the repository
/// unreachable at once, a successful one clears it. Bounded: one entry per repository.
#[derive(Default)]
pub struct PushLedger {
    latest: std::sync::Mutex<BTreeMap<crate::git::url::NormalizedUrl, Result<(), RemoteProblem>>>,
    changed: Notify,
}

impl PushLedger {
    fn record(&self, key: &crate::git::url::RepoKey, event: &PushEvent<'_>) {
        let result = match event {
            PushEvent::Pushed { .. } => Ok(()),
            PushEvent::Failed(WorkerError::Transport { source, .. }) => Err(RemoteProblem::new(
                format!("the last push failed: {source}"),
                source.rejects_credentials(),
            )),
            // Contention and local cache problems say nothing about reachability.
            PushEvent::Failed(_) => return,
        };
        if let Ok(mut latest) = self.latest.lock() {
            latest.insert(key.url.clone(), result);
        }
        self.changed.notify_one();
    }

    fn take(&self) -> BTreeMap<crate::git::url::NormalizedUrl, Result<(), RemoteProblem>> {
        self.latest
            .lock()
            .map(|mut latest| std::mem::take(&mut *latest))
            .unwrap_or_default()
    }
}

/// What the agent holds for one Ready destination.
struct Destination {
    worker: WorkerHandle,
    layout: Layout,
    prune: bool,
    folder: String,
    /// The rules and watches its last reconcile covered (a change triggers a new one).
    covered: (BTreeSet<config::RuleKey>, BTreeSet<config::WatchKey>),
    /// Nudges its reconcilers after each push; stopped when the destination is released.
    triggers: tokio::task::JoinHandle<()>,
    /// The content hash of each file as the agent last wrote or read it (path → hash): lets an
    /// object applied from Git be recognised without reading Git, and an object applied from an
    /// older revision be seen as the change it is.
    known: std::collections::HashMap<String, crate::manifest::ContentHash>,
}

/// How an initial reconcile went: done, with what was not pruned and why (empty: everything
/// was), or incomplete and why.
type ReconcileResult = Result<Vec<String>, String>;

/// A finished initial reconcile: the destination, how it went, and the hashes of the files it
/// wrote or found (path from the repository root → content hash).
type Reconciled = (
    ObjectKey,
    ReconcileResult,
    Vec<(String, crate::manifest::ContentHash)>,
);

/// Each destination's reconciler triggers, as its spec says now (namespace filled in).
type Triggers = Arc<std::sync::Mutex<BTreeMap<ObjectKey, Vec<crate::crd::ReconcilerTrigger>>>>;

/// The running agent's shared pieces, for the `run` command and tests.
#[derive(Clone)]
pub struct AgentHandle {
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    pub readiness: Readiness,
    watches: Arc<std::sync::Mutex<usize>>,
    pushes: Arc<PushLedger>,
}

impl AgentHandle {
    /// Number of running watches.
    pub fn watches(&self) -> usize {
        self.watches.lock().map(|n| *n).unwrap_or(0)
    }
}

/// Creates the agent's shared pieces (registry, metrics, readiness).
pub fn handle(options: &AgentOptions) -> AgentHandle {
    // Metrics read the registry's workers at scrape time, and workers report push durations to
    // the metrics: the registry is set once both exist.
    let workers: Arc<std::sync::OnceLock<Arc<Registry>>> = Arc::new(std::sync::OnceLock::new());
    let sampled = workers.clone();
    let metrics = Arc::new(Metrics::new(move || {
        sampled
            .get()
            .map(|r| {
                r.handles()
                    .iter()
                    .map(crate::ops::metrics::WorkerSample::of)
                    .collect()
            })
            .unwrap_or_default()
    }));
    let observed = metrics.clone();
    let pushes = Arc::new(PushLedger::default());
    let ledger = pushes.clone();
    let registry = Arc::new(Registry::new(
        &options.state_dir,
        options.transport.clone(),
        WorkerConfig {
            cluster: options.cluster.clone(),
            on_push: Some(Arc::new(
                move |key: &crate::git::url::RepoKey, event: PushEvent<'_>| {
                    if let PushEvent::Pushed { took } = event {
                        observed.observe_push(key, took);
                    }
                    ledger.record(key, &event);
                },
            )),
            ..WorkerConfig::default()
        },
    ));
    let _ = workers.set(registry.clone());
    let readiness = Readiness::new();
    readiness.set_not_ready("the initial reconcile has not finished");
    AgentHandle {
        registry,
        metrics,
        readiness,
        watches: Arc::new(std::sync::Mutex::new(0)),
        pushes,
    }
}

/// What to probe a repository with, or `None` when it names a Secret that gave no usable
/// credentials (`CredentialsValid` says why; probing without them would only mislead).
fn probe_key(
    repo: &config::RepoPlan,
    credentials: Option<&Result<Credentials, String>>,
) -> Option<ProbeKey> {
    let creds = match (&repo.secret, credentials) {
        (None, _) => None,
        (Some(_), Some(Ok(c))) => Some(c.clone()),
        (Some(_), _) => return None,
    };
    Some(ProbeKey {
        url: repo.remote_url.clone(),
        generation: repo.generation,
        credentials: creds,
    })
}

/// Runs the agent until `shutdown` resolves; then flushes every worker.
pub async fn run(
    client: kube::Client,
    options: AgentOptions,
    handle: AgentHandle,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), AgentError> {
    let changed = Arc::new(Notify::new());
    let repos = reflect::<GitRepoConfig>(client.clone(), changed.clone());
    let destinations = reflect::<GitDestination>(client.clone(), changed.clone());
    let watch_rules = reflect::<WatchRule>(client.clone(), changed.clone());
    let cluster_rules = reflect::<ClusterWatchRule>(client.clone(), changed.clone());
    let namespaces = reflect::<Namespace>(client.clone(), changed.clone());
    let _crds = reflect::<CustomResourceDefinition>(client.clone(), changed.clone());

    let (tx, mut events) = mpsc::channel(1024);
    let mut watches = WatchManager::new(client.clone(), tx, options.streaming_lists);
    let (done_tx, mut reconciled) = mpsc::channel::<Reconciled>(64);
    let (probe_tx, mut probed) =
        mpsc::channel::<(ObjectKey, ProbeKey, Result<(), RemoteProblem>)>(64);
    let mut agent = Agent {
        client: client.clone(),
        options: options.clone(),
        handle: handle.clone(),
        plan: Arc::new(Plan::default()),
        destinations: BTreeMap::new(),
        reconciling: BTreeSet::new(),
        reconcile_results: BTreeMap::new(),
        held: BTreeMap::new(),
        attributing: Attributing::default(),
        triggers: Triggers::default(),
        done_tx,
        probes: BTreeMap::new(),
        probe_tx,
        credentials: BTreeMap::new(),
        repos: Vec::new(),
    };
    tokio::pin!(shutdown);
    // Reachability is checked again now and then even when nothing changes.
    let mut recheck = tokio::time::interval(options.recheck);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut dirty = true;
    loop {
        let settle = tokio::time::sleep(if dirty {
            options.settle
        } else {
            Duration::from_secs(3600)
        });
        tokio::select! {
            _ = &mut shutdown => break,
            _ = changed.notified() => { dirty = true; }
            _ = recheck.tick() => {
                // A rotated, created or removed credentials Secret is picked up here too.
                if agent.credentials_changed().await {
                    dirty = true;
                }
                agent.probe_repositories();
            }
            _ = handle.pushes.changed.notified() => {
                if agent.take_push_results() {
                    dirty = true;
                }
            }
            _ = settle, if dirty => {
                dirty = false;
                let inputs = Inputs {
                    repos: state(&repos),
                    destinations: state(&destinations),
                    watch_rules: state(&watch_rules),
                    cluster_rules: state(&cluster_rules),
                    namespaces: state(&namespaces).into_iter()
                        .map(|ns| (ns.name_any(), ns.labels().clone()))
                        .collect(),
                    discovery: discover(&client).await,
                    credentials: BTreeMap::new(),
                    reachability: agent.reachability(),
                    allow_secrets: options.allow_secrets,
                };
                agent.apply(inputs, &mut watches).await;
            }
            Some(event) = events.recv() => {
                if agent.capture(event).await {
                    dirty = true;
                }
            }
            Some((key, probe, result)) = probed.recv() => {
                let before = agent.probes.get(&key).and_then(|(_, _, r)| r.clone());
                if before.as_ref() != Some(&result) {
                    dirty = true;
                }
                agent.probes.insert(key, (probe, Instant::now(), Some(result)));
            }
            Some((key, result, hashes)) = reconciled.recv() => {
                if let Some(destination) = agent.destinations.get_mut(&key) {
                    destination.known.extend(hashes);
                }
                agent.reconciling.remove(&key);
                // Events held during the reconcile go through now, for this destination only.
                for (watch, object, deleted) in agent.held.remove(&key).unwrap_or_default() {
                    agent.capture_object(watch, object, deleted, Some(&key)).await;
                }
                if let Err(reason) = &result {
                    tracing::warn!(destination = %key, %reason, "initial reconcile incomplete");
                }
                agent.reconcile_results.insert(key, result);
                agent.update_readiness();
                // The destination's `Reconciled` condition says how it went.
                dirty = true;
            }
        }
    }
    drop(watches);
    for (key, destination) in &agent.destinations {
        if let Err(e) = destination.worker.flush().await {
            tracing::error!(destination = %key, error = %e, "changes not pushed at shutdown; the next start reconciles them");
        }
    }
    for key in agent.destinations.keys() {
        handle.registry.release(&key.to_string());
    }
    Ok(())
}

struct Agent {
    client: kube::Client,
    options: AgentOptions,
    handle: AgentHandle,
    plan: Arc<Plan>,
    destinations: BTreeMap<ObjectKey, Destination>,
    reconciling: BTreeSet<ObjectKey>,
    reconcile_results: BTreeMap<ObjectKey, ReconcileResult>,
    /// Reachability of each GitRepoConfig's repository: what was probed (URL, credentials,
    /// generation), when, and the answer (`None` while the probe runs).
    probes: BTreeMap<ObjectKey, Probe>,
    probe_tx: mpsc::Sender<(ObjectKey, ProbeKey, Result<(), RemoteProblem>)>,
    /// The credentials read at the last apply (for reachability checks between applies).
    credentials: BTreeMap<ObjectKey, Result<Credentials, String>>,
    /// The GitRepoConfigs of the last apply (their Secrets are read again between applies).
    repos: Vec<GitRepoConfig>,
    /// Changes waiting for their author, in order per file.
    attributing: Attributing,
    triggers: Triggers,
    /// Events that arrived for a destination while its reconcile was running.
    held: BTreeMap<ObjectKey, Vec<(config::WatchKey, Box<kube::api::DynamicObject>, bool)>>,
    done_tx: mpsc::Sender<Reconciled>,
}

impl Agent {
    /// Recomputes the plan and makes the world match it.
    async fn apply(&mut self, mut inputs: Inputs, watches: &mut WatchManager) {
        let credentials = self.check_credentials(&inputs.repos).await;
        self.repos = inputs.repos.clone();
        if let Ok(mut triggers) = self.triggers.lock() {
            *triggers = inputs
                .destinations
                .iter()
                .map(|d| {
                    let ns = d.namespace().unwrap_or_default();
                    let list = d
                        .spec
                        .triggers
                        .iter()
                        .cloned()
                        .map(|mut t| {
                            t.namespace.get_or_insert_with(|| ns.clone());
                            t
                        })
                        .collect();
                    (ObjectKey::new(&ns, d.name_any()), list)
                })
                .collect();
        }
        inputs.credentials = credentials
            .iter()
            .map(|(k, v)| (k.clone(), v.as_ref().map(|_| ()).map_err(Clone::clone)))
            .collect();
        let plan = Arc::new(config::plan(&inputs));
        self.credentials = credentials;
        self.plan = plan.clone();
        self.probe_repositories();
        let credentials = &self.credentials;
        self.write_statuses(&inputs, &plan).await;

        // Workers: release destinations that are gone or moved; acquire new ones.
        let holders = plan.holders();
        let stale: Vec<ObjectKey> = self
            .destinations
            .iter()
            .filter(|(key, d)| holders.get(*key) != Some(d.worker.key()))
            .map(|(key, _)| key.clone())
            .collect();
        for key in stale {
            if let Some(gone) = self.destinations.remove(&key) {
                gone.triggers.abort();
            }
            self.handle.registry.release(&key.to_string());
            self.reconcile_results.remove(&key);
            self.held.remove(&key);
        }
        for (key, repo_key) in &holders {
            let Some(resolved) = plan.destinations.get(key).and_then(|d| d.resolved.as_ref())
            else {
                continue;
            };
            // Credentials are read per GitRepoConfig (the Secret may have any name).
            let creds = resolved
                .credentials
                .as_ref()
                .and_then(|_| credentials.get(&resolved.repo))
                .and_then(|r| r.as_ref().ok())
                .cloned();
            let remote = Remote::new(resolved.remote_url.clone(), creds);
            if let Some(existing) = self.destinations.get(key) {
                if existing.worker.set_remote(remote) {
                    tracing::info!(destination = %key, repository = %repo_key,
                        "credentials changed; the next fetch and push use them");
                }
            } else {
                let windows = WindowConfig {
                    quiet: resolved.window.quiet,
                    max_age: resolved.window.max_age,
                    max_changes: resolved.window.max_changes as usize,
                };
                match self.handle.registry.acquire_with(
                    remote,
                    &repo_key.branch,
                    &key.to_string(),
                    Some(windows),
                ) {
                    Ok(worker) => {
                        let pushed = worker.pushed();
                        self.destinations.insert(
                            key.clone(),
                            Destination {
                                worker,
                                layout: Layout {
                                    folder: resolved.folder.clone(),
                                    template: resolved.path_template.clone(),
                                },
                                prune: resolved.prune == PrunePolicy::Sweep,
                                folder: resolved.folder.clone(),
                                covered: Default::default(),
                                known: Default::default(),
                                triggers: tokio::spawn(nudge_reconcilers(
                                    self.client.clone(),
                                    key.clone(),
                                    pushed,
                                    self.triggers.clone(),
                                )),
                            },
                        );
                    }
                    Err(e) => {
                        tracing::error!(destination = %key, error = %e, "cannot start a worker")
                    }
                }
            }
        }
        watches.sync(plan.watches.iter());
        if let Ok(mut n) = self.handle.watches.lock() {
            *n = watches.len();
        }
        self.handle.metrics.set_watches(watches.len());

        // Initial reconcile for destinations whose rules or watches changed.
        let policy = self.policy();
        for (key, destination) in self.destinations.iter_mut() {
            let rules = plan
                .destinations
                .get(key)
                .map(|d| d.rules.clone())
                .unwrap_or_default();
            // Types a rule names but that did not resolve (a CRD briefly gone, a resource
            // not served or not listable) are not watched, so their files are never pruned;
            // every other type still is. Excluded resources are no problem: never written.
            let unresolved: Vec<String> = rules
                .iter()
                .filter_map(|r| plan.rules.get(r).map(|p| (r, p)))
                .flat_map(|(r, p)| {
                    p.problems
                        .iter()
                        .filter(|problem| problem.explicit && problem.kind != ProblemKind::Excluded)
                        .map(move |problem| format!("{r}: {}", problem.message))
                })
                .collect();
            let covered = (rules, plan.watches_for(key));
            if covered.1.is_empty() {
                // Nothing is selected yet: no listing can be complete, so nothing is written or
                // removed; readiness is not held up by it.
                destination.covered = covered;
                self.reconcile_results
                    .entry(key.clone())
                    .or_insert_with(|| {
                        Err("no resources are selected yet; nothing reconciled".into())
                    });
                continue;
            }
            if covered == destination.covered || self.reconciling.contains(key) {
                continue;
            }
            destination.covered = covered;
            self.reconciling.insert(key.clone());
            tokio::spawn(reconcile(
                self.client.clone(),
                plan.clone(),
                key.clone(),
                destination.worker.clone(),
                destination.layout.clone(),
                destination.folder.clone(),
                destination.prune,
                unresolved,
                policy.clone(),
                self.done_tx.clone(),
            ));
        }
        self.plan = plan;
        self.update_readiness();
    }

    fn policy(&self) -> ExclusionPolicy {
        if self.options.allow_secrets {
            ExclusionPolicy::allowing_secrets()
        } else {
            ExclusionPolicy::default()
        }
    }

    fn update_readiness(&self) {
        let pending: Vec<String> = self
            .destinations
            .keys()
            .filter(|k| !self.reconcile_results.contains_key(*k))
            .map(|k| k.to_string())
            .collect();
        if pending.is_empty() {
            self.handle.readiness.set_ready();
        } else {
            self.handle.readiness.set_not_ready(format!(
                "initial reconcile running for {}",
                pending.join(", ")
            ));
        }
    }

    fn reachability(&self) -> BTreeMap<ObjectKey, Result<(), RemoteProblem>> {
        self.probes
            .iter()
            .filter_map(|(key, (_, _, result))| Some((key.clone(), result.clone()?)))
            .collect()
    }

    /// Starts a cheap remote check (`git ls-remote`) for each repository whose URL, credentials
    /// or generation changed, or whose last check is older than [`PROBE_INTERVAL`] (or
    /// [`AgentOptions::recheck`] while it is unreachable).
    fn probe_repositories(&mut self) {
        let plan = self.plan.clone();
        let credentials = &self.credentials;
        self.probes.retain(|key, _| plan.repos.contains_key(key));
        for (key, repo) in &plan.repos {
            if repo.url.is_none() {
                continue;
            }
            let Some(probe) = probe_key(repo, credentials.get(key)) else {
                continue; // CredentialsValid already says why
            };
            let creds = probe.credentials.clone();
            let fresh = self.probes.get(key).is_some_and(|(p, at, result)| {
                let every = match result {
                    Some(Err(_)) => self.options.recheck,
                    _ => PROBE_INTERVAL,
                };
                *p == probe && at.elapsed() < every
            });
            if fresh {
                continue;
            }
            let previous = self.probes.get(key).and_then(|(_, _, r)| r.clone());
            self.probes
                .insert(key.clone(), (probe.clone(), Instant::now(), previous));
            let transport = self.options.transport.clone();
            let remote = Remote::new(repo.remote_url.clone(), creds);
            let tx = self.probe_tx.clone();
            let key = key.clone();
            tokio::spawn(async move {
                let result = tokio::task::spawn_blocking(move || {
                    transport
                        .probe(&remote)
                        .map(|_| ())
                        .map_err(|e| RemoteProblem::new(e.to_string(), e.rejects_credentials()))
                })
                .await
                .unwrap_or_else(|e| Err(RemoteProblem::new(e.to_string(), false)));
                let _ = tx.send((key, probe, result)).await;
            });
        }
    }

    /// Records the workers' latest push outcomes as each repository's reachability (a failed
    /// push marks it unreachable at once; a successful one clears it). True when a condition
    /// changes.
    fn take_push_results(&mut self) -> bool {
        let results = self.handle.pushes.take();
        let mut changed = false;
        for (url, result) in results {
            for (key, repo) in &self.plan.repos {
                if repo.url.as_ref() != Some(&url) {
                    continue;
                }
                let Some(probe) = probe_key(repo, self.credentials.get(key)) else {
                    continue;
                };
                let before = self.probes.get(key).and_then(|(_, _, r)| r.clone());
                if before.as_ref() != Some(&result) {
                    match &result {
                        Ok(()) => {
                            tracing::info!(repository = %key, "push succeeded; repository reachable")
                        }
                        Err(problem) => {
                            tracing::warn!(repository = %key, reason = %problem.message,
                            "push failed; repository marked unreachable until a push or probe succeeds")
                        }
                    }
                    changed = true;
                }
                self.probes
                    .insert(key.clone(), (probe, Instant::now(), Some(result.clone())));
            }
        }
        changed
    }

    /// Reads the credentials Secrets again (between plan applies): true when any changed, so
    /// the plan is applied again and the workers use the new credentials from their next push.
    async fn credentials_changed(&mut self) -> bool {
        if self.repos.is_empty() {
            return false;
        }
        let fresh = self.check_credentials(&self.repos).await;
        fresh != self.credentials
    }

    /// Reads each referenced credentials Secret and checks its shape.
    async fn check_credentials(
        &self,
        repos: &[GitRepoConfig],
    ) -> BTreeMap<ObjectKey, Result<Credentials, String>> {
        let mut out = BTreeMap::new();
        for repo in repos {
            let Some(name) = repo.spec.secret_name() else {
                continue;
            };
            let ns = repo.namespace().unwrap_or_default();
            let key = ObjectKey::new(&ns, repo.name_any());
            let api: Api<Secret> = Api::namespaced(self.client.clone(), &ns);
            let result = match api.get_opt(name).await {
                Ok(Some(secret)) => {
                    let mut data: BTreeMap<String, Vec<u8>> = secret
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.0))
                        .collect();
                    for (k, v) in secret.string_data.unwrap_or_default() {
                        data.insert(k, v.into_bytes());
                    }
                    Credentials::from_secret_data(&data)
                        .map_err(|e| format!("Secret {ns}/{name}: {e}"))
                }
                Ok(None) => Err(format!("Secret {ns}/{name} not found")),
                Err(e) => Err(format!("Secret {ns}/{name} cannot be read: {e}")),
            };
            out.insert(key, result);
        }
        out
    }

    /// Patches the conditions of every custom resource whose conditions changed.
    async fn write_statuses(&self, inputs: &Inputs, plan: &Plan) {
        let now = Time(jiff::Timestamp::now());
        let client = &self.client;
        for repo in &inputs.repos {
            let ns = repo.namespace().unwrap_or_default();
            let key = ObjectKey::new(&ns, repo.name_any());
            if let Some(p) = plan.repos.get(&key) {
                patch_status(
                    Api::namespaced(client.clone(), &ns),
                    repo,
                    &p.conditions,
                    &now,
                )
                .await;
            }
        }
        for dest in &inputs.destinations {
            let ns = dest.namespace().unwrap_or_default();
            let key = ObjectKey::new(&ns, dest.name_any());
            if let Some(p) = plan.destinations.get(&key) {
                let mut conditions = p.conditions.clone();
                if let Some(result) = self.reconcile_results.get(&key) {
                    conditions.push(reconciled_condition(result, p.generation));
                }
                patch_status(
                    Api::namespaced(client.clone(), &ns),
                    dest,
                    &conditions,
                    &now,
                )
                .await;
            }
        }
        for rule in &inputs.watch_rules {
            let ns = rule.namespace().unwrap_or_default();
            let key = config::RuleKey::Namespaced(ObjectKey::new(&ns, rule.name_any()));
            if let Some(p) = plan.rules.get(&key) {
                patch_status(
                    Api::namespaced(client.clone(), &ns),
                    rule,
                    &p.conditions,
                    &now,
                )
                .await;
            }
        }
        for rule in &inputs.cluster_rules {
            if let Some(p) = plan.rules.get(&config::RuleKey::Cluster(rule.name_any())) {
                patch_status(Api::all(client.clone()), rule, &p.conditions, &now).await;
            }
        }
    }

    /// One live event: route it, decide per destination, hand changes to the workers.
    /// Returns true when the plan must be applied again (a reconcile is due).
    async fn capture(&mut self, event: WatchEvent) -> bool {
        let (key, object, deleted) = match event {
            WatchEvent::Upsert { key, object, .. } => (key, object, false),
            WatchEvent::Delete { key, object } => (key, object, true),
            WatchEvent::Listed { key, objects } => {
                tracing::debug!(watch = %key, objects, "listing complete");
                // A destination whose reconcile could not list everything tries again once a
                // watch it depends on lists successfully.
                let retry: Vec<ObjectKey> = self
                    .destinations
                    .keys()
                    .filter(|d| matches!(self.reconcile_results.get(*d), Some(Err(_))))
                    .filter(|d| self.plan.watches_for(d).contains(&key))
                    .cloned()
                    .collect();
                for d in &retry {
                    if let Some(destination) = self.destinations.get_mut(d) {
                        destination.covered = Default::default();
                    }
                }
                return !retry.is_empty();
            }
            WatchEvent::Failed { .. } => return false,
        };
        self.capture_object(key, object, deleted, None).await;
        false
    }

    /// Captures one object for every destination it routes to (or only `only`). A
    /// destination whose initial reconcile is running holds the event until it finishes, so the
    /// reconcile is one commit and nothing that happens meanwhile is lost.
    async fn capture_object(
        &mut self,
        key: config::WatchKey,
        object: Box<kube::api::DynamicObject>,
        deleted: bool,
        only: Option<&ObjectKey>,
    ) {
        let labels = object.metadata.labels.clone().unwrap_or_default();
        let object_ref = ObjectRef {
            group: &key.group,
            version: &key.version,
            resource: &key.resource,
            namespace: namespace_of(&object.metadata),
            labels: &labels,
        };
        let (creates, updates) = if deleted {
            (self.plan.route(&object_ref, Operation::Delete), Vec::new())
        } else {
            (
                self.plan.route(&object_ref, Operation::Create),
                self.plan.route(&object_ref, Operation::Update),
            )
        };
        let mut targets: BTreeMap<ObjectKey, (bool, bool)> = BTreeMap::new();
        for r in creates {
            targets.entry(r.destination).or_default().0 = true;
        }
        for r in updates {
            targets.entry(r.destination).or_default().1 = true;
        }
        if targets.is_empty() {
            tracing::debug!(watch = %key, namespace = ?object_ref.namespace,
                name = ?object.metadata.name, deleted, "no destination's rule selects this object");
            self.handle.metrics.record_event(EventDecision::NoRoute);
            return;
        }
        let mut live = match serde_json::to_value(&*object) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(watch = %key, error = %e, "cannot read an object; skipped");
                return;
            }
        };
        fill_type(&mut live, &key);
        let policy = self.policy();
        for (dest_key, (on_create, on_update)) in targets {
            if only.is_some_and(|o| *o != dest_key) {
                continue;
            }
            if self.reconciling.contains(&dest_key) {
                self.held
                    .entry(dest_key)
                    .or_default()
                    .push((key.clone(), object.clone(), deleted));
                continue;
            }
            let Some(destination) = self.destinations.get_mut(&dest_key) else {
                continue;
            };
            // Whether Git held a document for the object: a write is a `create` otherwise.
            let mut existed = true;
            let decision = if deleted {
                let path = match crate::manifest::ObjectId::of(&live) {
                    Ok(id) => destination.layout.path(&id, &key.resource),
                    Err(_) => continue,
                };
                let exists = destination
                    .worker
                    .read_pushed(&path)
                    .ok()
                    .flatten()
                    .is_some();
                decide_delete(&live, &key.resource, &destination.layout, exists)
            } else {
                let id = match crate::manifest::ObjectId::of(&live) {
                    Ok(id) => id,
                    Err(e) => {
                        tracing::warn!(watch = %key, error = %e, "object without identity; skipped");
                        continue;
                    }
                };
                let path = destination.layout.path(&id, &key.resource);
                if on_update && came_from_git(&live, destination.known.get(&path).copied(), &policy)
                {
                    let decision = Decision::Unchanged {
                        path,
                        id,
                        why: crate::agent::capture::Unchanged::Equivalent(
                            crate::manifest::equivalence::Equivalence::HashAnnotation,
                        ),
                    };
                    record_decision(&self.handle.metrics, &dest_key, &decision);
                    continue;
                }
                // Git holds a document for it, or the agent wrote one not yet pushed.
                let written = destination.known.contains_key(&path);
                self.handle.metrics.record_git_read();
                let current = destination.worker.read_pushed(&path).ok().flatten();
                let git_doc = current
                    .as_deref()
                    .and_then(|bytes| crate::manifest::yaml::parse_single_document(bytes, &path));
                match git_doc.as_ref().map(crate::manifest::hash::recorded_hash) {
                    Some(hash) => destination.known.insert(path.clone(), hash),
                    None => destination.known.remove(&path),
                };
                // CREATE or UPDATE as far as Git is concerned; the rule must cover it.
                if (current.is_none() && !on_create) || (current.is_some() && !on_update) {
                    continue;
                }
                existed = current.is_some() || written;
                decide_upsert(
                    live.clone(),
                    &key.resource,
                    &destination.layout,
                    &policy,
                    git_doc.as_ref(),
                )
            };
            let decision = match decision {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(watch = %key, destination = %dest_key, error = %e, "cannot render an object; skipped");
                    continue;
                }
            };
            record_decision(&self.handle.metrics, &dest_key, &decision);
            match &decision {
                Decision::Write { path, hash, .. } => {
                    destination.known.insert(path.clone(), *hash);
                }
                Decision::Delete { path, .. } => {
                    destination.known.remove(path);
                }
                _ => {}
            }
            let file = match decision {
                Decision::Write {
                    path,
                    content,
                    hash,
                    id,
                } => FileChange {
                    summary: format!(
                        "{} {}",
                        if existed { "update" } else { "create" },
                        id.summary()
                    ),
                    namespace: id.namespace.clone(),
                    live: Some(Arc::new(live.clone())),
                    path,
                    content: Some(content.into()),
                    hash: Some(hash),
                },
                Decision::Delete { path, id } => FileChange {
                    summary: format!("delete {}", id.summary()),
                    namespace: id.namespace.clone(),
                    live: None,
                    path,
                    content: None,
                    hash: None,
                },
                _ => continue,
            };
            let observed_at = jiff::Timestamp::now();
            let change = Change {
                folder: destination.folder.clone(),
                destination: dest_key.to_string(),
                author: Author::unknown(),
                user: None,
                impersonator: None,
                audit_id: None,
                received: observed_at,
                file,
            };
            let Some(resolver) = self.options.resolver.clone() else {
                self.handle.metrics.record_unattributed();
                if let Err(e) = destination.worker.send(change).await {
                    tracing::error!(destination = %dest_key, error = %e, "worker stopped; change not queued");
                }
                continue;
            };
            let lookup = crate::attribution::resolver::Lookup {
                uid: object.metadata.uid.clone(),
                resource_version: object.metadata.resource_version.clone(),
                content_hash: change.file.hash,
                deleted,
                group: key.group.clone(),
                resource: key.resource.clone(),
                namespace: namespace_of(&object.metadata).map(str::to_string),
                name: object.metadata.name.clone().unwrap_or_default(),
                observed_at,
            };
            self.attributing.submit(
                &dest_key,
                change,
                lookup,
                resolver,
                destination.worker.clone(),
                self.handle.metrics.clone(),
            );
        }
    }
}

/// Resolves who made each change (waiting at most the resolver's grace period) without
/// holding up other files: every change waits for its author on its own task, and changes of one
/// file reach the worker in the order they were seen.
#[derive(Default)]
struct Attributing {
    /// The last change submitted per (destination, path): done when it reached the worker.
    last: std::collections::HashMap<(ObjectKey, String), tokio::sync::watch::Receiver<bool>>,
}

impl Attributing {
    fn submit(
        &mut self,
        destination: &ObjectKey,
        mut change: Change,
        lookup: crate::attribution::resolver::Lookup,
        resolver: Arc<crate::attribution::resolver::Resolver>,
        worker: WorkerHandle,
        metrics: Arc<Metrics>,
    ) {
        if self.last.len() > 4096 {
            self.last.retain(|_, done| !*done.borrow());
        }
        let (done_tx, done_rx) = tokio::sync::watch::channel(false);
        let previous = self
            .last
            .insert((destination.clone(), change.file.path.clone()), done_rx);
        let destination = destination.clone();
        tokio::spawn(async move {
            let who = resolver.resolve(lookup).await;
            if let Some(mut previous) = previous {
                let _ = previous.wait_for(|done| *done).await;
            }
            if who.source == crate::attribution::facts::Source::Unknown {
                metrics.record_unattributed();
            }
            change.author = who.author;
            change.user = who.user;
            change.impersonator = who.impersonator;
            change.audit_id = who.audit_id;
            change.received = who.time;
            if let Err(e) = worker.send(change).await {
                tracing::error!(%destination, error = %e, "worker stopped; change not queued");
            }
            let _ = done_tx.send(true);
        });
    }
}

/// After each push of the destination's worker, asks its reconcilers to reconcile now: Flux's
/// `reconcile.fluxcd.io/requestedAt` (a timestamp) or Argo CD's `argocd.argoproj.io/refresh`.
async fn nudge_reconcilers(
    client: kube::Client,
    destination: ObjectKey,
    mut pushed: tokio::sync::watch::Receiver<u64>,
    triggers: Triggers,
) {
    while pushed.changed().await.is_ok() {
        let list = triggers
            .lock()
            .ok()
            .and_then(|t| t.get(&destination).cloned())
            .unwrap_or_default();
        for trigger in list {
            let (group, version, plural, kind, annotation) = trigger.kind.target();
            let resource = kube::api::ApiResource {
                group: group.into(),
                version: version.into(),
                api_version: format!("{group}/{version}"),
                kind: kind.into(),
                plural: plural.into(),
            };
            let ns = trigger
                .namespace
                .clone()
                .unwrap_or_else(|| destination.namespace.clone());
            let api: Api<kube::api::DynamicObject> =
                Api::namespaced_with(client.clone(), &ns, &resource);
            let value = if annotation == "argocd.argoproj.io/refresh" {
                "normal".to_string()
            } else {
                jiff::Timestamp::now().to_string()
            };
            let patch = json!({"metadata": {"annotations": {annotation: value}}});
            match api
                .patch(
                    &trigger.name,
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                Ok(_) => {
                    tracing::info!(%destination, reconciler = %format!("{kind} {ns}/{}", trigger.name), "asked to reconcile the pushed commit")
                }
                Err(e) => {
                    tracing::warn!(%destination, reconciler = %format!("{kind} {ns}/{}", trigger.name), error = %e,
                    "cannot nudge the reconciler (does the agent have patch on it?)")
                }
            }
        }
    }
}

/// The condition type that reports a destination's initial reconcile.
pub const RECONCILED: &str = "Reconciled";

fn reconciled_condition(result: &ReconcileResult, generation: Option<i64>) -> Condition {
    match result {
        Ok(not_pruned) if not_pruned.is_empty() => config::conditions::condition(
            RECONCILED,
            config::Status::True,
            "Complete",
            "the folder was reconciled from complete listings",
            generation,
        ),
        Ok(not_pruned) => config::conditions::condition(
            RECONCILED,
            config::Status::True,
            "PartiallyPruned",
            format!(
                "the folder was reconciled from complete listings of the types that resolved; {}",
                not_pruned.join("; ")
            ),
            generation,
        ),
        Err(reason) => config::conditions::condition(
            RECONCILED,
            config::Status::False,
            "Incomplete",
            reason.clone(),
            generation,
        ),
    }
}

/// Logs a decision and counts it.
fn record_decision(metrics: &Metrics, destination: &ObjectKey, decision: &Decision) {
    log_decision(destination, decision);
    metrics.record_event(EventDecision::from(decision));
}

/// What was decided and why: writes at info, everything else at debug.
fn log_decision(destination: &ObjectKey, decision: &Decision) {
    use crate::agent::capture::Unchanged;
    let label = decision.label();
    match decision {
        Decision::Write { path, id, .. } | Decision::Delete { path, id } => {
            tracing::info!(%destination, object = %id, %path, decision = label, "change captured");
        }
        Decision::Unchanged { path, id, why } => {
            let reason = match why {
                Unchanged::Equivalent(how) => how.to_string(),
                Unchanged::NoFile => "no file to remove".to_string(),
            };
            tracing::debug!(%destination, object = %id, %path, decision = label, %reason, "nothing to write");
        }
        Decision::Excluded { id, exclusion } => {
            tracing::debug!(%destination, object = %id, decision = label, rule = exclusion.rule,
                reason = %exclusion.reason, "not written");
        }
    }
}

/// Watch events of typed lists may lack apiVersion/kind; the watch knows them.
fn fill_type(object: &mut Value, key: &config::WatchKey) {
    if let Some(map) = object.as_object_mut() {
        let api_version = if key.group.is_empty() {
            key.version.clone()
        } else {
            format!("{}/{}", key.group, key.version)
        };
        map.entry("apiVersion")
            .or_insert_with(|| Value::String(api_version));
        map.entry("kind")
            .or_insert_with(|| Value::String(key.kind.clone()));
    }
}

/// Lists everything the destination's rules select and writes the folder's difference as one
/// commit. A listing that fails removes nothing.
#[allow(clippy::too_many_arguments)] // one spawned task's inputs, each needed once
async fn reconcile(
    client: kube::Client,
    plan: Arc<Plan>,
    key: ObjectKey,
    worker: WorkerHandle,
    layout: Layout,
    folder: String,
    prune: bool,
    unresolved: Vec<String>,
    policy: ExclusionPolicy,
    done: mpsc::Sender<Reconciled>,
) {
    let started = Instant::now();
    let mut objects = Vec::new();
    let mut failures = Vec::new();
    let mut listed = Vec::new();
    for watch in plan.watches_for(&key) {
        let api = api_for(client.clone(), &watch);
        let mut params = ListParams::default().limit(500);
        loop {
            match api.list(&params).await {
                Ok(list) => {
                    let next = list.metadata.continue_.clone().filter(|c| !c.is_empty());
                    for object in list.items {
                        let labels = object.metadata.labels.clone().unwrap_or_default();
                        let r = ObjectRef {
                            group: &watch.group,
                            version: &watch.version,
                            resource: &watch.resource,
                            namespace: namespace_of(&object.metadata),
                            labels: &labels,
                        };
                        if !plan
                            .route(&r, Operation::All)
                            .iter()
                            .any(|route| route.destination == key)
                        {
                            continue;
                        }
                        if let Ok(mut value) = serde_json::to_value(&object) {
                            fill_type(&mut value, &watch);
                            objects.push((watch.resource.clone(), value));
                        }
                    }
                    match next {
                        Some(token) => params = params.continue_token(&token),
                        None => {
                            listed.push(watch.clone());
                            break;
                        }
                    }
                }
                Err(e) => {
                    failures.push(format!("listing {watch} failed: {e}"));
                    break;
                }
            }
        }
    }
    let content = render_folder(objects, &layout, &policy);
    for problem in &content.invalid {
        tracing::warn!(destination = %key, %problem, "object not written");
    }
    // What is not pruned, and why: said in the log, the commit message and `Reconciled`.
    let not_pruned: Vec<String> = unresolved
        .iter()
        .chain(&failures)
        .map(|why| format!("Not pruned: {why}"))
        .collect();
    if prune {
        for why in &not_pruned {
            tracing::warn!(destination = %key, reason = %why, "files of a resource type are not pruned");
        }
    }
    let request = SnapshotRequest {
        folder,
        destination: key.to_string(),
        files: content.files,
        prune: if prune {
            owned_by(plan.clone(), key.clone(), listed)
        } else {
            Prune::Nothing
        },
        notes: if prune {
            not_pruned.clone()
        } else {
            Vec::new()
        },
    };
    let complete = failures.is_empty();
    let result = match worker.snapshot(request).await {
        Err(e) => Err(e),
        Ok(_) if !complete && prune => Err(not_pruned.join("; ")),
        Ok(_) if !complete => Err(failures.join("; ")),
        Ok(_) if prune => Ok(not_pruned),
        Ok(_) => Ok(Vec::new()),
    };
    tracing::info!(destination = %key, took = ?started.elapsed(), complete, "initial reconcile");
    let _ = done.send((key, result, content.hashes)).await;
}

/// The prune rule of one destination's snapshot: a document is ours when its type was listed
/// completely for this destination and the object it describes routes here (namespace, labels),
/// so the listing would have contained it had it still existed.
fn owned_by(plan: Arc<Plan>, destination: ObjectKey, listed: Vec<config::WatchKey>) -> Prune {
    Prune::Owned(Arc::new(move |doc: &Value| {
        let Ok(id) = crate::manifest::ObjectId::of(doc) else {
            return false;
        };
        let labels: BTreeMap<String, String> = doc
            .pointer("/metadata/labels")
            .and_then(|l| serde_json::from_value(l.clone()).ok())
            .unwrap_or_default();
        listed
            .iter()
            .filter(|w| w.group == id.group && w.kind == id.kind)
            .any(|w| {
                let r = ObjectRef {
                    group: &w.group,
                    version: &w.version,
                    resource: &w.resource,
                    namespace: id.namespace.as_deref(),
                    labels: &labels,
                };
                plan.route(&r, Operation::All)
                    .iter()
                    .any(|route| route.destination == destination)
            })
    }))
}

/// An object's namespace, `None` for cluster-scoped objects however the server spelled it
/// (a missing field or `namespace: ""`).
fn namespace_of(meta: &kube::api::ObjectMeta) -> Option<&str> {
    meta.namespace.as_deref().filter(|ns| !ns.is_empty())
}

/// A reflector on every object of kind `K`, notifying `changed` on each event.
fn reflect<K>(client: kube::Client, changed: Arc<Notify>) -> reflector::Store<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let api: Api<K> = Api::all(client);
    let stream = reflector(writer, watcher(api, watcher::Config::default())).default_backoff();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            if let Err(e) = event {
                tracing::warn!(kind = %K::kind(&()), error = %e, "watch of configuration failed; retrying");
                continue;
            }
            changed.notify_one();
        }
    });
    reader
}

fn state<K: Clone + Resource<DynamicType = ()>>(store: &reflector::Store<K>) -> Vec<K> {
    store.state().iter().map(|o| (**o).clone()).collect()
}

async fn discover(client: &kube::Client) -> config::Discovery {
    match kube::Discovery::new(client.clone()).run().await {
        Ok(discovery) => config::Discovery::from(&discovery),
        Err(e) => {
            tracing::warn!(error = %e, "discovery failed; using no resources until the next change");
            config::Discovery::default()
        }
    }
}

/// Merges `desired` into the object's status conditions and patches when something changed.
async fn patch_status<K>(api: Api<K>, object: &K, desired: &[Condition], now: &Time)
where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + serde::Serialize,
{
    let value = serde_json::to_value(object).unwrap_or_default();
    let existing: Vec<Condition> = value
        .pointer("/status/conditions")
        .cloned()
        .and_then(|c| serde_json::from_value(c).ok())
        .unwrap_or_default();
    let generation = object.meta().generation;
    let mut desired: Vec<Condition> = desired.to_vec();
    for c in desired.iter_mut() {
        c.observed_generation = generation;
    }
    let merged = config::merge_conditions(&existing, &desired, now);
    let observed = value
        .pointer("/status/observedGeneration")
        .and_then(Value::as_i64);
    if merged == existing && observed == generation {
        return;
    }
    let patch = json!({"status": {"observedGeneration": generation, "conditions": merged}});
    if let Err(e) = api
        .patch_status(
            &object.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        tracing::warn!(kind = %K::kind(&()), name = %object.name_any(), error = %e, "cannot write status");
    }
}
