//! The agent's main loop: reflects the custom resources, namespaces and discovery into the
//! plan, applies it (watches, workers, statuses, initial reconciles) and routes live events to
//! the destinations' tasks: the wiring of one loop; the decisions live in `capture`,
//! `destination`, `reconcile`, `remotes`, `status` and `cluster`.
//!
//! Long (about 1,100 lines) because it is the one place that owns the loop's state (workers,
//! destinations, watches, leases, readiness) and every transition of it; each decision it makes
//! is a call into a pure module, so what remains here is wiring that is clearer read together.

use super::board::{Posted, StatusBoard};
use super::capture::Layout;
use super::cluster::{discover, preflight, reflect, state};
use super::destination::{self, Input, Intake, Routed, record_offer};
use super::election::ElectionConfig;
use super::hash_key;
use super::leases::Leases;
use super::live::DestinationLive;
use super::reconcile::{self, ReconcileResult, Reconciled, namespace_of};
pub use super::remotes::DEFAULT_RECHECK;
use super::remotes::{Probed, PushLedger, Remotes};
use super::status::{self, Snapshot};
use super::triggers::{Triggers, nudge_reconcilers};
use super::watches::{WatchEvent, WatchManager};
use crate::config::{self, Inputs, ObjectKey, ObjectRef, Plan};
use crate::crd::{
    ClusterWatchRule, DestinationMode, GitDestination, GitRepoConfig, Operation, WatchRule,
};
use crate::git::registry::Registry;
use crate::git::transport::{GitCli, Transport};
use crate::git::window::WindowConfig;
use crate::git::worker::{PushEvent, WorkerConfig, WorkerHandle};
use crate::manifest::exclude::ExclusionPolicy;
use crate::manifest::user_exclude::UserExclusions;
use crate::ops::Readiness;
use crate::ops::metrics::{EventDecision, Metrics};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::ResourceExt;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, mpsc, oneshot};

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
    /// How long shutdown waits for the destinations to hand over their changes and the workers
    /// to push them ([`DEFAULT_SHUTDOWN_GRACE`], within Kubernetes' default 30 s).
    pub shutdown_grace: Duration,
    /// Queue sizes (bounded: a full queue holds back only its own destination or repository).
    pub queues: Queues,
    /// Leader election per repository (`--leader-elect`); `None`: this replica writes every
    /// repository.
    pub election: Option<ElectionConfig>,
    /// The Secret holding the key of the keyed hash of encrypted Secrets (created when
    /// missing, at the first destination that encrypts).
    pub hash_key_secret: ObjectKey,
}

/// Queue sizes of the agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Queues {
    /// Events waiting for one destination's task; past it the main loop counts an overflow
    /// and the destination reconciles again.
    pub destination: usize,
    /// Changes waiting for one repository worker; past it that destination's task waits.
    pub worker: usize,
}

impl Default for Queues {
    fn default() -> Self {
        Self {
            destination: destination::DEFAULT_QUEUE_CAPACITY,
            worker: WorkerConfig::default().queue_capacity,
        }
    }
}

/// How long shutdown waits for changes to be pushed.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(25);

impl Default for AgentOptions {
    fn default() -> Self {
        Self {
            state_dir: PathBuf::from("/var/lib/gitops-reverser"),
            allow_secrets: false,
            cluster: "default".into(),
            streaming_lists: false,
            transport: Arc::new(GitCli::new()),
            settle: Duration::from_millis(200),
            resolver: None,
            recheck: DEFAULT_RECHECK,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            queues: Queues::default(),
            election: None,
            hash_key_secret: ObjectKey::new(hash_key::DEFAULT_NAMESPACE, hash_key::DEFAULT_NAME),
        }
    }
}

/// Why the agent stopped with work undone.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(
        "changes of {destinations} were not pushed within the shutdown grace of {grace:?}; the \
         next start reconciles them"
    )]
    NotFlushed {
        destinations: String,
        grace: Duration,
    },
    #[error("the agent task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error(
        "the custom resource {resource} is not served: install the CRDs first \
         (kubectl apply -k manifests/crds, or `gitops-reverser crds | kubectl apply -f -`)"
    )]
    CrdMissing { resource: String },
    #[error(
        "the service account cannot list {resource}: {detail} (grant list and watch on it; \
         see manifests/rbac.yaml)"
    )]
    Forbidden { resource: String, detail: String },
    #[error("cannot list {resource} at start: {source}")]
    Preflight {
        resource: String,
        source: kube::Error,
    },
}

/// Events held for a destination while its reconcile runs, at most; past it they are dropped
/// and another reconcile follows (bounded memory while a repository hangs).
const HELD_LIMIT: usize = 10_000;

/// What a destination's reconcile covers: its rules with their exclusions, and its watches.
type Covered = (
    BTreeMap<config::RuleKey, Arc<UserExclusions>>,
    BTreeSet<config::WatchKey>,
);

/// What the agent holds for one Ready destination.
struct Destination {
    worker: WorkerHandle,
    /// Where its events go: its task's queue, or held while it reconciles.
    intake: Intake,
    task: tokio::task::JoinHandle<()>,
    /// What the destination was started with; a change starts it anew.
    settings: (Layout, bool),
    /// The rules (with their exclusions) and watches its last reconcile covered (a change
    /// triggers a new one).
    covered: Covered,
    /// Nudges its reconcilers after each push; stopped when the destination is released.
    triggers: tokio::task::JoinHandle<()>,
    /// `Observe`: decides and reports, writes nothing.
    mode: DestinationMode,
    /// Its task's numbers, for the status page and its status.
    live: Arc<DestinationLive>,
    /// What its objects are checked with (built-in and its own exclusions).
    policy: ExclusionPolicy,
    /// `spec.resyncInterval`, and when the next resync is due (after a reconcile started).
    resync: Option<Duration>,
    next_resync: Option<tokio::time::Instant>,
}

impl Destination {
    /// Hands an event to the destination's task without waiting (or holds it while a
    /// reconcile runs); counts and says what happened. True when it was lost: the destination
    /// must reconcile again.
    fn offer(&mut self, routed: Routed, label: &str, metrics: &Metrics) -> bool {
        let offered = self.intake.offer(routed);
        record_offer(offered, label, metrics)
    }
}

/// The running agent's shared pieces, for the `run` command and tests.
#[derive(Clone)]
pub struct AgentHandle {
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    pub readiness: Readiness,
    /// The election, when replicas share the repositories.
    pub leases: Option<Leases>,
    /// What `/status` shows.
    pub board: Arc<StatusBoard>,
    watches: Arc<std::sync::Mutex<usize>>,
    pushes: Arc<PushLedger>,
}

/// A running agent: its shared pieces, and a way to stop it.
pub struct RunningAgent {
    pub handle: AgentHandle,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), AgentError>>,
}

impl RunningAgent {
    /// Stops the agent (watches end, destinations hand over, workers push within the grace)
    /// and returns how it ended.
    pub async fn stop(self) -> Result<(), AgentError> {
        let _ = self.stop.send(());
        self.task.await?
    }

    /// True once the agent's task has ended.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

/// Starts the agent on its own task: what `run`, `demo`, the tests and the benches use.
pub fn spawn(client: kube::Client, options: AgentOptions) -> RunningAgent {
    let handle = handle(&options);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(run(client, options, handle.clone(), async {
        let _ = stopped.await;
    }));
    RunningAgent { handle, stop, task }
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
    let leases = options.election.clone().map(Leases::new);
    let fence = leases.clone().map(|leases| -> crate::git::worker::Fence {
        Arc::new(move |key: &crate::git::url::RepoKey| leases.may_push(key))
    });
    let pushes = Arc::new(PushLedger::default());
    let ledger = pushes.clone();
    let registry = Arc::new(Registry::new(
        &options.state_dir,
        options.transport.clone(),
        WorkerConfig {
            cluster: options.cluster.clone(),
            queue_capacity: options.queues.worker,
            on_push: Some(Arc::new(
                move |key: &crate::git::url::RepoKey, event: PushEvent<'_>| {
                    if let PushEvent::Pushed { took } = event {
                        observed.observe_push(key, took);
                    }
                    ledger.record(key, &event);
                },
            )),
            fence,
            holder: options.election.as_ref().map(|e| e.identity.clone()),
            ..WorkerConfig::default()
        },
    ));
    let _ = workers.set(registry.clone());
    let readiness = Readiness::new();
    readiness.set_not_ready("the initial reconcile has not finished");
    let board = Arc::new(StatusBoard::new(
        registry.clone(),
        metrics.clone(),
        readiness.clone(),
    ));
    AgentHandle {
        board,
        registry,
        metrics,
        readiness,
        leases,
        watches: Arc::new(std::sync::Mutex::new(0)),
        pushes,
    }
}

/// Runs the agent until `shutdown` resolves; then flushes every worker.
pub async fn run(
    client: kube::Client,
    options: AgentOptions,
    handle: AgentHandle,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), AgentError> {
    preflight(&client).await?;
    let elector = handle.leases.as_ref().map(|l| l.spawn(client.clone()));
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
    let (probe_tx, mut probed) = mpsc::channel::<Probed>(64);
    let (status, status_writer) = status::spawn_writer(client.clone(), handle.board.clone());
    let mut agent = Agent {
        client: client.clone(),
        options: options.clone(),
        handle: handle.clone(),
        plan: Arc::new(Plan::default()),
        destinations: BTreeMap::new(),
        reconcile_results: BTreeMap::new(),
        triggers: Triggers::default(),
        done_tx,
        remotes: Remotes::new(
            client.clone(),
            options.transport.clone(),
            options.recheck,
            handle.pushes.clone(),
            probe_tx,
        ),
        status,
        inputs: None,
        hash_key: None,
    };
    tokio::pin!(shutdown);
    // No plan before every configuration store has listed: a plan from half the custom
    // resources would start the wrong watches and report ready too early.
    handle
        .readiness
        .set_not_ready("the custom resources and namespaces have not been listed yet");
    let listed = async {
        let _ = repos.wait_until_ready().await;
        let _ = destinations.wait_until_ready().await;
        let _ = watch_rules.wait_until_ready().await;
        let _ = cluster_rules.wait_until_ready().await;
        let _ = namespaces.wait_until_ready().await;
    };
    tokio::select! {
        _ = &mut shutdown => {
            status_writer.abort();
            if let Some(elector) = elector {
                elector.abort();
            }
            return Ok(());
        }
        _ = listed => {}
    }
    // Destinations with spec.resyncInterval are looked at every few seconds.
    let mut resync = tokio::time::interval(Duration::from_secs(5));
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
            _ = leadership_changed(&handle.leases) => { dirty = true; }
            _ = recheck.tick() => {
                // A rotated, created or removed credentials Secret is picked up here too.
                if agent.remotes.credentials_changed().await {
                    dirty = true;
                }
                agent.remotes.probe(&agent.plan);
            }
            _ = resync.tick() => {
                if agent.resync_due() {
                    dirty = true;
                }
            }
            _ = handle.pushes.changed.notified() => {
                if agent.remotes.take_push_results(&agent.plan) {
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
                    signing: BTreeMap::new(),
                    reachability: agent.remotes.reachability(),
                    allow_secrets: options.allow_secrets,
                };
                agent.apply(inputs, &mut watches).await;
            }
            Some(event) = events.recv() => {
                if agent.capture(event) {
                    dirty = true;
                }
            }
            Some(done) = probed.recv() => {
                if agent.remotes.probed(done) {
                    dirty = true;
                }
            }
            Some((key, result, hashes)) = reconciled.recv() => {
                if agent.reconciled(key, result, hashes) {
                    dirty = true;
                }
            }
        }
    }
    drop(watches);
    let result = agent.shut_down().await;
    status_writer.abort();
    // Everything is pushed (or the grace is over): the other replicas may take over now.
    if let (Some(elector), Some(leases)) = (elector, &handle.leases) {
        elector.abort();
        leases.release_all(client.clone()).await;
    }
    result
}

/// Resolves when the repositories this replica leads changed (never without an election).
async fn leadership_changed(leases: &Option<Leases>) {
    match leases {
        Some(leases) => leases.changed().await,
        None => std::future::pending().await,
    }
}

struct Agent {
    client: kube::Client,
    options: AgentOptions,
    handle: AgentHandle,
    plan: Arc<Plan>,
    destinations: BTreeMap<ObjectKey, Destination>,
    reconcile_results: BTreeMap<ObjectKey, ReconcileResult>,
    /// Credentials and reachability of the repositories.
    remotes: Remotes,
    triggers: Triggers,
    done_tx: mpsc::Sender<Reconciled>,
    /// The status writer's input: the latest plan and reconcile results.
    status: tokio::sync::watch::Sender<Option<Arc<Snapshot>>>,
    /// The inputs of the last plan (statuses are written from them).
    inputs: Option<Inputs>,
    /// The key of the keyed hash of encrypted Secrets, once read.
    hash_key: Option<Vec<u8>>,
}

impl Agent {
    /// Recomputes the plan and makes the world match it.
    async fn apply(&mut self, mut inputs: Inputs, watches: &mut WatchManager) {
        inputs.credentials = self.remotes.read_credentials(&inputs.repos).await;
        inputs.signing = self.remotes.read_signing_keys(&inputs.repos).await;
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
        let plan = Arc::new(config::plan(&inputs));
        let delta = plan.delta_from(&self.plan);
        self.plan = plan.clone();
        self.remotes.probe(&plan);
        self.inputs = Some(inputs);

        // Destinations the plan releases (gone, moved, reconfigured) stop; then the ones it
        // acquires start (plus any whose start failed before).
        for (key, repo) in &delta.release {
            if let Some(gone) = self.destinations.remove(key) {
                gone.triggers.abort();
                self.handle.metrics.forget_destination(&key.to_string());
                // Its task finishes what is queued; the worker lands it when released.
            }
            // Reconfigured on the same repository: the worker stays (one per cache), only
            // the destination's task starts anew.
            if delta.acquire.get(key) != Some(repo) {
                self.handle.registry.release(&key.to_string());
            }
            self.reconcile_results.remove(key);
        }
        let holders = plan.holders();
        if let Some(leases) = self.handle.leases.clone() {
            leases.want(holders.values().cloned().collect());
            for repo in leases.take_shed() {
                self.hand_over(repo, leases.clone());
            }
        }
        for (key, repo_key) in &holders {
            // With an election, only the repositories this replica leads have destinations
            // here; a lost lease stops them (the worker pushes nothing more: fencing).
            if let Some(leases) = &self.handle.leases
                && !leases.leads(repo_key)
            {
                if self.stop_destination(key).is_some() {
                    tracing::info!(destination = %key, repository = %repo_key,
                        "not leading the repository; destination stopped here");
                }
                continue;
            }
            let Some(resolved) = plan.destinations.get(key).and_then(|d| d.resolved.as_ref())
            else {
                continue;
            };
            // Credentials are read per GitRepoConfig (the Secret may have any name).
            let remote = self
                .remotes
                .remote_for(&resolved.repo, &resolved.remote_url);
            let signer = self.remotes.signer_of(&resolved.repo);
            if let Some(existing) = self.destinations.get(key) {
                existing.worker.set_signer(signer);
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
                        worker.set_signer(signer);
                        let pushed = worker.pushed();
                        let layout = Layout {
                            folder: resolved.folder.clone(),
                            template: resolved.path_template.clone(),
                            placements: resolved.placements.clone(),
                            encryption: self.encryption_for(key, resolved).await,
                        };
                        let live = Arc::new(DestinationLive::default());
                        let policy = policy(self.options.allow_secrets, &layout, resolved);
                        let (tx, task) = destination::spawn(
                            destination::Settings {
                                key: key.clone(),
                                worker: worker.clone(),
                                layout: layout.clone(),
                                policy: policy.clone(),
                                resolver: self.options.resolver.clone(),
                                metrics: self.handle.metrics.clone(),
                                observe: resolved.mode == DestinationMode::Observe,
                                live: live.clone(),
                                deletes: resolved.prune.on_delete(),
                            },
                            self.options.queues.destination,
                        );
                        self.destinations.insert(
                            key.clone(),
                            Destination {
                                worker,
                                intake: Intake::new(tx, HELD_LIMIT),
                                task,
                                settings: (layout, resolved.prune.at_reconcile()),
                                covered: Default::default(),
                                triggers: tokio::spawn(nudge_reconcilers(
                                    self.client.clone(),
                                    key.clone(),
                                    pushed,
                                    self.triggers.clone(),
                                )),
                                mode: resolved.mode,
                                live,
                                policy,
                                resync: resolved.resync,
                                next_resync: None,
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
        for (key, destination) in self.destinations.iter_mut() {
            let rules = plan
                .destinations
                .get(key)
                .into_iter()
                .flat_map(|d| &d.rules)
                .map(|r| {
                    let exclusions = plan.rules.get(r).map(|p| p.exclusions.clone());
                    (r.clone(), exclusions.unwrap_or_default())
                })
                .collect();
            let unresolved = plan.unresolved_types(key);
            let covered: Covered = (rules, plan.watches_for(key));
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
            if (covered == destination.covered && !destination.intake.needs_resync())
                || destination.intake.reconciling()
            {
                continue;
            }
            destination.covered = covered;
            let resyncing = destination.intake.needs_resync();
            destination.intake.start_reconcile();
            destination.next_resync = destination
                .resync
                .map(|every| tokio::time::Instant::now() + every);
            tokio::spawn(reconcile::reconcile(
                reconcile::Request {
                    client: self.client.clone(),
                    plan: plan.clone(),
                    key: key.clone(),
                    worker: destination.worker.clone(),
                    destination: destination.intake.sender().clone(),
                    layout: destination.settings.0.clone(),
                    prune: destination.settings.1,
                    unresolved,
                    policy: destination.policy.clone(),
                    observe: destination.mode == DestinationMode::Observe,
                    live: destination.live.clone(),
                    metrics: self.handle.metrics.clone(),
                    fetch_first: resyncing,
                },
                self.done_tx.clone(),
            ));
        }
        self.plan = plan;
        self.update_readiness();
        self.publish_status();
    }

    /// Stops one destination here (its worker is released; what it still has is pushed only
    /// while this replica leads the repository).
    fn stop_destination(&mut self, key: &ObjectKey) -> Option<Destination> {
        let gone = self.destinations.remove(key)?;
        gone.triggers.abort();
        self.handle.metrics.forget_destination(&key.to_string());
        self.handle.registry.release(&key.to_string());
        self.reconcile_results.remove(key);
        Some(gone)
    }

    /// Hands a repository over to another replica: its destinations stop, its worker pushes
    /// what they handed over, then its Lease is released.
    fn hand_over(&mut self, repo: crate::git::url::RepoKey, leases: Leases) {
        let keys: Vec<ObjectKey> = self
            .destinations
            .iter()
            .filter(|(_, d)| *d.worker.key() == repo)
            .map(|(k, _)| k.clone())
            .collect();
        let stopped: Vec<Destination> = keys
            .iter()
            .filter_map(|k| self.stop_destination(k))
            .collect();
        tokio::spawn(async move {
            let mut worker = None;
            for destination in stopped {
                let Destination {
                    worker: w,
                    intake,
                    task,
                    ..
                } = destination;
                drop(intake);
                let _ = task.await;
                worker = Some(w);
            }
            if let Some(worker) = worker
                && let Err(e) = worker.flush().await
            {
                tracing::warn!(repository = %repo, error = %e,
                    "handing over with changes not pushed; the next leader reconciles them");
            }
            leases.handed_over(repo);
        });
    }

    /// How a destination encrypts Secrets: its recipients and the cluster's hash key (read or
    /// created at the first need). Without the key its Secrets are not written (never in
    /// plain text), and the error says why.
    async fn encryption_for(
        &mut self,
        key: &ObjectKey,
        resolved: &config::ResolvedDestination,
    ) -> Option<crate::secrets::Encryption> {
        let recipients = resolved.age_recipients.as_ref()?;
        let recipients =
            match crate::secrets::Recipients::parse(recipients.iter().map(String::as_str)) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(destination = %key, error = %e, "Secrets are not written");
                    return None;
                }
            };
        if self.hash_key.is_none() {
            match hash_key::load_or_create(self.client.clone(), &self.options.hash_key_secret).await
            {
                Ok(k) => self.hash_key = Some(k),
                Err(e) => {
                    tracing::error!(destination = %key, error = %e,
                        "Secrets are not written until the hash key can be read");
                    return None;
                }
            }
        }
        let hash_key = self.hash_key.clone()?;
        let encryption = crate::secrets::Encryption::new(recipients, hash_key);
        let Some(secret) = &resolved.age_identity else {
            return Some(encryption);
        };
        // Without its identities the destination still writes: files it cannot check by hash
        // are then encrypted again.
        match super::age_identity::load(self.client.clone(), secret).await {
            Ok(identities) => Some(encryption.with_identities(identities)),
            Err(e) => {
                tracing::warn!(destination = %key, error = %e,
                    "SOPS files in Git whose hash cannot be checked are encrypted again");
                Some(encryption)
            }
        }
    }

    /// Hands the latest plan and reconcile results to the status writer, and the destinations
    /// to the status board.
    fn publish_status(&self) {
        let posted = self
            .plan
            .destinations
            .iter()
            .filter_map(|(key, plan)| {
                let resolved = plan.resolved.as_ref()?;
                let running = self.destinations.get(key);
                let find = |type_: &str| plan.conditions.iter().find(|c| c.type_ == type_).cloned();
                Some(Posted {
                    key: key.clone(),
                    // As configured, but never a password or token someone put in it.
                    url: crate::git::url::redact(&resolved.remote_url),
                    repository: resolved.repo_key.to_string(),
                    branch: resolved.repo_key.branch.clone(),
                    folder: resolved.folder.clone(),
                    mode: resolved.mode,
                    suspended: resolved.suspended,
                    ready: find(config::conditions::READY),
                    reachable: find(config::conditions::REPOSITORY_REACHABLE),
                    queue: running.map(|d| d.intake.sender().downgrade()),
                    live: running.map(|d| d.live.clone()),
                })
            })
            .collect();
        self.handle.board.post(posted);
        if let Some(inputs) = &self.inputs {
            let _ = self.status.send(Some(Arc::new(Snapshot {
                inputs: self.written_here(inputs),
                plan: self.plan.clone(),
                reconciled: self.reconcile_results.clone(),
                signing: self
                    .plan
                    .repos
                    .keys()
                    .filter_map(|k| {
                        Some((
                            k.clone(),
                            self.remotes.signer_of(k)?.fingerprint().to_string(),
                        ))
                    })
                    .collect(),
            })));
        }
    }

    /// The resources whose status this replica writes. With an election, a destination's
    /// status is written by the replica leading its repository (the others know nothing of its
    /// reconciles and pushes); a destination without a repository by every replica (its
    /// conditions come from the plan alone, the same on each).
    fn written_here(&self, inputs: &Inputs) -> Inputs {
        let mut inputs = inputs.clone();
        if let Some(leases) = &self.handle.leases {
            inputs.destinations.retain(|d| {
                let key = ObjectKey::new(d.namespace().unwrap_or_default(), d.name_any());
                self.plan
                    .destinations
                    .get(&key)
                    .and_then(|p| p.resolved.as_ref())
                    .is_none_or(|r| leases.leads(&r.repo_key))
            });
        }
        inputs
    }

    /// A destination's reconcile finished: what it found is learned, the events held meanwhile
    /// go to its task, and `Reconciled` says how it went. True when it must reconcile again.
    /// Marks destinations whose `spec.resyncInterval` has passed since their last reconcile
    /// for another one (against the fetched branch tip). True when one is due.
    fn resync_due(&mut self) -> bool {
        let now = tokio::time::Instant::now();
        let mut due = false;
        for (key, destination) in &mut self.destinations {
            if destination.next_resync.is_some_and(|at| at <= now)
                && !destination.intake.reconciling()
            {
                tracing::info!(destination = %key, "resync interval passed; reconciling against the branch tip");
                destination.next_resync = None;
                destination.intake.request_resync();
                due = true;
            }
        }
        due
    }

    fn reconciled(
        &mut self,
        key: ObjectKey,
        result: ReconcileResult,
        hashes: Vec<(String, crate::manifest::ContentHash)>,
    ) -> bool {
        let mut again = false;
        let label = key.to_string();
        if let Some(destination) = self.destinations.get_mut(&key) {
            // Only the hash fast path depends on this: a full queue just costs Git reads.
            let _ = destination.intake.sender().try_send(Input::Learned(hashes));
            for offered in destination.intake.end_reconcile() {
                record_offer(offered, &label, &self.handle.metrics);
            }
            self.handle.metrics.set_destination_held(&label, 0);
            again = destination.intake.needs_resync();
        }
        if let Err(reason) = &result {
            tracing::warn!(destination = %key, %reason, "initial reconcile incomplete");
        }
        self.reconcile_results.insert(key, result);
        self.update_readiness();
        self.publish_status();
        again
    }

    /// Stops every destination: each task hands over what it has queued, each worker pushes,
    /// all within the shutdown grace (a hanging repository does not hold up the others, nor
    /// the shutdown past the grace).
    async fn shut_down(&mut self) -> Result<(), AgentError> {
        let grace = self.options.shutdown_grace;
        let flushes =
            std::mem::take(&mut self.destinations)
                .into_iter()
                .map(|(key, destination)| {
                    destination.triggers.abort();
                    let Destination {
                        worker,
                        intake,
                        task,
                        ..
                    } = destination;
                    drop(intake);
                    async move {
                        let _ = task.await;
                        let flushed = worker.flush().await;
                        if let Err(e) = &flushed {
                            tracing::error!(destination = %key, error = %e,
                            "changes not pushed at shutdown; the next start reconciles them");
                        }
                        (key, flushed.is_ok())
                    }
                });
        let outcome = tokio::time::timeout(grace, futures::future::join_all(flushes)).await;
        for key in self.plan.holders().keys() {
            self.handle.registry.release(&key.to_string());
        }
        match outcome {
            Ok(done) => {
                let failed: Vec<String> = done
                    .into_iter()
                    .filter(|(_, ok)| !ok)
                    .map(|(key, _)| key.to_string())
                    .collect();
                if failed.is_empty() {
                    Ok(())
                } else {
                    Err(AgentError::NotFlushed {
                        destinations: failed.join(", "),
                        grace,
                    })
                }
            }
            Err(_) => {
                tracing::error!(
                    ?grace,
                    "shutdown grace over with changes not pushed (a repository \
                    did not answer); the next start reconciles them"
                );
                Err(AgentError::NotFlushed {
                    destinations: "some destinations".into(),
                    grace,
                })
            }
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

    /// One watch event: a listing completed (a failed reconcile may retry), or an object to
    /// route. Returns true when the plan must be applied again (a reconcile is due).
    fn capture(&mut self, event: WatchEvent) -> bool {
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
        self.route(key, Arc::from(object), deleted)
    }

    /// Routes one object to every destination whose rules select it, without waiting: each
    /// destination's task decides on its own. True when a destination lost events and must
    /// reconcile again.
    fn route(
        &mut self,
        key: config::WatchKey,
        object: Arc<kube::api::DynamicObject>,
        deleted: bool,
    ) -> bool {
        let none = BTreeMap::new();
        let labels = object.metadata.labels.as_ref().unwrap_or(&none);
        let object_ref = ObjectRef {
            group: &key.group,
            version: &key.version,
            resource: &key.resource,
            namespace: namespace_of(&object.metadata),
            labels,
        };
        let (creates, updates) = if deleted {
            (self.plan.route(&object_ref, Operation::Delete), Vec::new())
        } else {
            (
                self.plan.route(&object_ref, Operation::Create),
                self.plan.route(&object_ref, Operation::Update),
            )
        };
        // Per destination: creates, updates, and the exclusions of the rules selecting the
        // object (the same whatever the operation).
        type Target = (bool, bool, Option<Arc<UserExclusions>>);
        let mut targets: BTreeMap<ObjectKey, Target> = BTreeMap::new();
        for r in creates {
            let target = targets.entry(r.destination).or_default();
            target.0 = true;
            target.2 = r.exclusions;
        }
        for r in updates {
            let target = targets.entry(r.destination).or_default();
            target.1 = true;
            target.2 = r.exclusions;
        }
        if targets.is_empty() {
            tracing::debug!(watch = %key, namespace = ?object_ref.namespace,
                name = ?object.metadata.name, deleted, "no destination's rule selects this object");
            self.handle.metrics.record_event(EventDecision::NoRoute);
            return false;
        }
        let mut lost = false;
        for (dest_key, (creates, updates, exclusions)) in targets {
            let Some(destination) = self.destinations.get_mut(&dest_key) else {
                continue;
            };
            let routed = Routed {
                watch: key.clone(),
                object: object.clone(),
                deleted,
                creates,
                updates,
                exclusions,
            };
            lost |= destination.offer(routed, &dest_key.to_string(), &self.handle.metrics);
        }
        lost
    }
}

/// What a destination's objects are checked with: Secrets pass when the agent allows them or
/// the destination encrypts them; its own exclusions apply on top of the built-in ones.
fn policy(
    allow_secrets: bool,
    layout: &Layout,
    resolved: &config::ResolvedDestination,
) -> ExclusionPolicy {
    let mut policy = if allow_secrets || layout.encryption.is_some() {
        ExclusionPolicy::allowing_secrets()
    } else {
        ExclusionPolicy::default()
    };
    policy.user = resolved.exclusions.clone();
    if let Some(secret) = &resolved.age_identity {
        policy
            .key_secrets
            .insert((secret.namespace.clone(), secret.name.clone()));
    }
    policy
}
