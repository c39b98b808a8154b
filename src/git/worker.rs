//! One worker per repository and branch: every destination on it shares one queue, its commit
//! windows, and a push loop that rebuilds on another writer's commits and waits out outages.
//!
//! Long (about 1,000 lines) because the worker's task and its push round share one state
//! machine (pending work, remote tip, retry timing, fencing) that reads best in one place; what
//! is separable lives beside it: windows (`window`), the folder edits (`apply`), snapshot
//! commits (`snapshot_commit`), the store, transport and progress.

use super::change::{Change, commit_message};
use super::marker::{self, Claim, MARKER_FILE, Owner};
use super::progress::{PushFailure, PushRecord, WorkerView};
pub use super::snapshot::{Prune, SnapshotRequest};
use super::store::{Signature, SnapshotStats, Store, StoreError};
use super::transport::{PushOutcome, Remote, Transport, TransportError};
use super::url::RepoKey;
use super::window::{Closed, WindowConfig, Windows};
use gix::ObjectId;
use jiff::Timestamp;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How a worker behaves.
#[derive(Clone)]
pub struct WorkerConfig {
    pub windows: WindowConfig,
    /// The agent's identity on every commit it writes.
    pub committer_name: String,
    pub committer_email: String,
    /// Push attempts per round while another writer keeps moving or holding the branch;
    /// `0` (the default) never gives up while the remote answers. Each attempt fetches and
    /// replays the changes on the new tip after a jittered, growing wait (at most `retry_max`).
    pub max_push_attempts: u32,
    /// First and longest wait between rounds while the remote fails.
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// Commands waiting in the queue before senders wait (backpressure, bounded memory).
    pub queue_capacity: usize,
    /// Time source for windows: the wall clock (live agent), or only the changes' own
    /// timestamps (`replay`), so that both group changes the same way.
    pub clock: Clock,
    /// This cluster's identity in ownership markers.
    pub cluster: String,
    /// Age after which another owner's marker may be taken over.
    pub marker_stale_after: Duration,
    /// Signs every commit the worker writes (window, snapshot and replayed commits alike).
    pub signer: Option<Arc<super::signing::SshSigner>>,
    /// Called after every push round that reached the remote (with its duration, for a
    /// histogram) and every one that failed (with the error, for reachability conditions).
    pub on_push: Option<PushObserver>,
    /// Asked just before each push: false when this replica no longer leads the repository
    /// (its Lease expired or was taken). The worker then drops what it has without pushing;
    /// the replica that leads now reconciles it. `None`: always allowed (no election).
    pub fence: Option<Fence>,
    /// Who writes (the pod name), recorded in the ownership marker.
    pub holder: Option<String>,
}

/// Whether this replica may still push to a repository (leader election's fencing check).
pub type Fence = Arc<dyn Fn(&RepoKey) -> bool + Send + Sync>;

/// What became of one push round.
#[derive(Debug)]
pub enum PushEvent<'a> {
    /// The remote took the push; it took this long.
    Pushed { took: Duration },
    /// The round failed; the changes stay pending and are retried.
    Failed(&'a WorkerError),
}

/// Observes push rounds per repository.
pub type PushObserver = Arc<dyn Fn(&RepoKey, PushEvent<'_>) + Send + Sync>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    Wall,
    Events,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            windows: WindowConfig::default(),
            committer_name: "gitops-reverser".into(),
            committer_email: "gitops-reverser@configbutler.ai".into(),
            max_push_attempts: 0,
            retry_initial: Duration::from_millis(200),
            retry_max: Duration::from_secs(30),
            queue_capacity: 10_000,
            clock: Clock::Wall,
            cluster: "default".into(),
            marker_stale_after: Duration::from_secs(24 * 3600),
            on_push: None,
            signer: None,
            fence: None,
            holder: None,
        }
    }
}

/// Counters a worker keeps; read them for metrics and tests.
#[derive(Debug, Default)]
pub struct WorkerStats {
    /// Files waiting in open windows or in closed, unpushed commits (not counting the queue).
    pub waiting_changes: AtomicU64,
    pub commits: AtomicU64,
    pub pushes: AtomicU64,
    /// Pushes refused because the remote moved (another writer); each is followed by a rebuild.
    pub push_conflicts: AtomicU64,
    /// Rounds that failed to reach the remote; the changes stay and are retried.
    pub push_failures: AtomicU64,
    /// Changes dropped because the file already had that content.
    pub unchanged: AtomicU64,
    /// Changes not written because another owner's fresh marker holds their folder.
    pub refused: AtomicU64,
    /// Commit windows open now.
    pub open_windows: AtomicU64,
}

/// A worker failed to land its changes this round (they are kept and retried).
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("repository {key}: {source}")]
    Transport { key: String, source: TransportError },
    #[error("repository {key}: {source}")]
    Store { key: String, source: StoreError },
    #[error(
        "repository {key}: the remote kept moving; gave up after {attempts} attempts this round"
    )]
    Contended { key: String, attempts: u32 },
    #[error("repository {key}: the worker has stopped")]
    Stopped { key: String },
    #[error(
        "repository {key}: this replica no longer holds the repository's lease; not pushing \
         (the replica that leads it now reconciles)"
    )]
    NotLeading { key: String },
}

/// Why a flush or snapshot did not land (shared by every caller waiting for the same round).
pub type RoundError = Arc<WorkerError>;

/// The answer to a flush or snapshot: the remote tip once everything is on the remote.
pub type RoundResult = Result<Option<ObjectId>, RoundError>;

/// Commands taken from the queue before one push.
const BATCH: usize = 1000;

enum Command {
    Change(Box<Change>),
    /// Close every window and push; answer when the remote has everything (or why not).
    Flush(oneshot::Sender<RoundResult>),
    /// Make a folder hold exactly the given files, as one commit after everything before it.
    Snapshot(Arc<SnapshotRequest>, oneshot::Sender<RoundResult>),
    /// Fetch, then say what such a snapshot would change on the remote tip; write nothing.
    Preview(Arc<SnapshotRequest>, oneshot::Sender<PreviewResult>),
}

/// The answer to a preview: what the snapshot would add, update and remove.
pub type PreviewResult = Result<SnapshotStats, RoundError>;

/// Work not yet on the remote, in order: replayed onto whatever the remote tip is when pushed.
#[derive(Clone, Debug)]
enum Pending {
    Window(Closed),
    Snapshot(Arc<SnapshotRequest>),
}

impl Pending {
    /// The destination (`namespace/name`) it belongs to.
    fn destination(&self) -> Option<&str> {
        match self {
            Pending::Window(w) => w.changes.first().map(|c| c.destination.as_str()),
            Pending::Snapshot(s) => Some(s.destination.as_str()),
        }
    }

    fn size(&self) -> usize {
        match self {
            Pending::Window(w) => w.changes.len(),
            Pending::Snapshot(s) => s.len(),
        }
    }
}

/// The sending side of a worker. Cheap to clone; the worker stops when every handle is gone.
#[derive(Clone)]
pub struct WorkerHandle {
    key: RepoKey,
    /// The URL and credentials the next push uses; replaced when the credentials change.
    remote: Arc<tokio::sync::watch::Sender<Remote>>,
    store: Arc<Store>,
    pushed: tokio::sync::watch::Receiver<u64>,
    tx: mpsc::Sender<Command>,
    stats: Arc<WorkerStats>,
    view: tokio::sync::watch::Receiver<WorkerView>,
}

impl WorkerHandle {
    /// What the worker is doing, as of its last round (never waits for the worker).
    pub fn view(&self) -> WorkerView {
        self.view.borrow().clone()
    }

    /// How many commands the queue holds before senders wait.
    pub fn queue_capacity(&self) -> usize {
        self.tx.max_capacity()
    }

    /// Fetches the branch and returns what a snapshot of `request` would change on it, without
    /// writing a commit or pushing (a destination in `Observe` mode). When the worker holds no
    /// unpushed work, its local branch moves to the fetched tip, so decisions compare with
    /// what the remote holds.
    pub async fn preview(&self, request: SnapshotRequest) -> PreviewResult {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Preview(Arc::new(request), tx))
            .await
            .map_err(|_| self.stopped())?;
        rx.await.map_err(|_| self.stopped())?
    }

    pub fn key(&self) -> &RepoKey {
        &self.key
    }

    pub fn stats(&self) -> &WorkerStats {
        &self.stats
    }

    /// Signs the commits written from now on with `signer` (`None`: unsigned).
    pub fn set_signer(&self, signer: Option<Arc<super::signing::SshSigner>>) {
        self.store.set_signer(signer);
    }

    /// Uses `remote` (URL spelling and credentials) from the next fetch or push on, so a
    /// rotated or newly created credentials Secret takes effect without a restart. Returns
    /// true when it differs from the one in use.
    pub fn set_remote(&self, remote: Remote) -> bool {
        self.remote.send_if_modified(|current| {
            if *current == remote {
                false
            } else {
                *current = remote;
                true
            }
        })
    }

    /// The bytes of `path` on the branch as this worker last committed it for a push (what Git
    /// holds or is about to, as far as this worker knows), or `None`. Changes still in an open
    /// commit window are not there yet.
    pub fn read_pushed(&self, path: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let tip = self
            .store
            .resolve(&format!("refs/heads/{}", self.key.branch))?;
        self.store.read_file(tip, path)
    }

    /// An object's document in `folder` on the branch as this worker last committed it for a
    /// push, wherever the folder has it (edited in place, in a multi-document file…).
    pub fn pushed_document(
        &self,
        folder: &str,
        id: &crate::manifest::ObjectIdentity,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        let tip = self
            .store
            .resolve(&format!("refs/heads/{}", self.key.branch))?;
        self.store.document_at(tip, folder, id)
    }

    /// A folder on the branch as this worker last committed it for a push, indexed once for
    /// many reads (a reconcile's render).
    pub fn pushed_folder(&self, folder: &str) -> Result<super::apply::FolderAt, StoreError> {
        let tip = self
            .store
            .resolve(&format!("refs/heads/{}", self.key.branch))?;
        super::apply::FolderAt::new(self.store.clone(), tip, folder)
    }

    /// What a folder holds that the agent leaves as it is (files that do not read, documents
    /// that are no object, objects found twice), on the branch as last committed for a push.
    pub async fn folder_notes(&self, folder: &str) -> Vec<String> {
        let (store, branch, folder) = (
            self.store.clone(),
            format!("refs/heads/{}", self.key.branch),
            folder.to_string(),
        );
        tokio::task::spawn_blocking(move || {
            let tip = store.resolve(&branch).ok().flatten();
            let load = |path: &str| store.read_file(tip, path).ok().flatten();
            store
                .folder_index(tip, &folder)
                .map(|index| index.notes(&load))
                .unwrap_or_default()
        })
        .await
        .unwrap_or_default()
    }

    /// Changes each time the worker pushed to the remote (a count), for reconciler triggers.
    pub fn pushed(&self) -> tokio::sync::watch::Receiver<u64> {
        self.pushed.clone()
    }

    /// Commands waiting in the queue.
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Queues a change; waits while the queue is full.
    pub async fn send(&self, change: Change) -> Result<(), WorkerError> {
        self.tx
            .send(Command::Change(Box::new(change)))
            .await
            .map_err(|_| WorkerError::Stopped {
                key: self.key.to_string(),
            })
    }

    /// Closes every open window and pushes; returns the remote tip once everything queued
    /// before this call is on the remote, or the reason it is not (the changes stay queued).
    pub async fn flush(&self) -> RoundResult {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Flush(tx))
            .await
            .map_err(|_| self.stopped())?;
        rx.await.map_err(|_| self.stopped())?
    }

    fn stopped(&self) -> RoundError {
        Arc::new(WorkerError::Stopped {
            key: self.key.to_string(),
        })
    }

    /// Writes the difference between `request.files` and the folder as one commit (after
    /// everything queued before it) and pushes; returns the remote tip. No commit when the
    /// folder already holds exactly that.
    pub async fn snapshot(&self, request: SnapshotRequest) -> RoundResult {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Snapshot(Arc::new(request), tx))
            .await
            .map_err(|_| self.stopped())?;
        rx.await.map_err(|_| self.stopped())?
    }
}

/// Starts the worker task for one repository and branch.
pub fn spawn(
    key: RepoKey,
    remote: Remote,
    store: Arc<Store>,
    transport: Arc<dyn Transport>,
    config: WorkerConfig,
) -> WorkerHandle {
    let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
    let stats = Arc::new(WorkerStats::default());
    let (pushed_tx, pushed) = tokio::sync::watch::channel(0u64);
    let (remote_tx, remote) = tokio::sync::watch::channel(remote);
    let (view_tx, view) = tokio::sync::watch::channel(WorkerView::default());
    let worker = Worker {
        view: view_tx,
        key: key.clone(),
        remote,
        store: store.clone(),
        transport,
        windows: Windows::new(config.windows),
        pending: VecDeque::new(),
        remote_tip: None,
        fetched: false,
        retry_delay: config.retry_initial,
        retry_at: None,
        stats: stats.clone(),
        pushed: Arc::new(pushed_tx),
        config,
    };
    tokio::spawn(worker.run(rx));
    WorkerHandle {
        key,
        remote: Arc::new(remote_tx),
        store,
        pushed,
        tx,
        stats,
        view,
    }
}

struct Worker {
    key: RepoKey,
    remote: tokio::sync::watch::Receiver<Remote>,
    store: Arc<Store>,
    transport: Arc<dyn Transport>,
    config: WorkerConfig,
    windows: Windows,
    /// Closed windows not yet on the remote, oldest first: whole-file states, replayed onto
    /// whatever the remote tip is when they are pushed.
    pending: VecDeque<Pending>,
    /// The remote branch as last seen (`None`: does not exist).
    remote_tip: Option<ObjectId>,
    fetched: bool,
    retry_delay: Duration,
    retry_at: Option<tokio::time::Instant>,
    stats: Arc<WorkerStats>,
    /// Bumped after every successful push.
    pushed: Arc<tokio::sync::watch::Sender<u64>>,
    /// What the worker is doing, for the status page (replaced after every round).
    view: tokio::sync::watch::Sender<WorkerView>,
}

impl Worker {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        tracing::debug!(repository = %self.key, "worker started");
        loop {
            let window_due = match self.config.clock {
                Clock::Wall => self.windows.next_deadline().map(instant_at),
                Clock::Events => None,
            };
            let wake = [window_due, self.retry_at].into_iter().flatten().min();
            let command = match wake {
                Some(at) => tokio::select! {
                    command = rx.recv() => command,
                    _ = tokio::time::sleep_until(at) => {
                        self.tick().await;
                        continue;
                    }
                },
                None => rx.recv().await,
            };
            let Some(command) = command else { break };
            // Take everything already queued before pushing, so a burst costs one push.
            let mut batch = vec![command];
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(command) => batch.push(command),
                    Err(_) => break,
                }
            }
            let mut flushes = Vec::new();
            for command in batch {
                match command {
                    Command::Change(change) => {
                        let closed = self.windows.add(*change);
                        self.close(closed);
                    }
                    Command::Flush(reply) => {
                        let closed = self.windows.flush();
                        self.close(closed);
                        flushes.push(reply);
                    }
                    Command::Snapshot(request, reply) => {
                        let closed = self.windows.flush();
                        self.close(closed);
                        self.pending.push_back(Pending::Snapshot(request));
                        flushes.push(reply);
                    }
                    Command::Preview(request, reply) => {
                        let _ = reply.send(self.preview(request).await.map_err(Arc::new));
                    }
                }
            }
            if !flushes.is_empty() {
                let result = self
                    .push_pending()
                    .await
                    .map(|()| self.remote_tip)
                    .map_err(Arc::new);
                // Counters are current before anyone hears back.
                self.publish_waiting();
                for reply in flushes {
                    let _ = reply.send(result.clone());
                }
            } else if !self.pending.is_empty() && self.retry_at.is_none() {
                let _ = self.push_pending().await;
            }
            self.publish_waiting();
        }
        // Every handle is gone: land what is left, once, then release everything.
        let closed = self.windows.flush();
        self.close(closed);
        if let Err(e) = self.push_pending().await {
            tracing::error!(repository = %self.key, error = %e, waiting = self.pending.len(),
                "worker stopping with changes not pushed; the next reconcile writes them");
        }
        tracing::debug!(repository = %self.key, "worker stopped");
    }

    fn close(&mut self, closed: Vec<Closed>) {
        self.pending.extend(closed.into_iter().map(Pending::Window));
    }

    fn publish_waiting(&self) {
        let pending: usize = self.pending.iter().map(Pending::size).sum();
        let (open, in_windows) = self.windows.open_counts();
        let waiting = pending + in_windows;
        self.stats
            .open_windows
            .store(open as u64, Ordering::Relaxed);
        self.stats
            .waiting_changes
            .store(waiting as u64, Ordering::Relaxed);
        let open_windows = self.windows.open_windows();
        let mut by_destination = std::collections::BTreeMap::new();
        for item in &self.pending {
            if let Some(destination) = item.destination() {
                *by_destination.entry(destination.to_string()).or_default() += item.size();
            }
        }
        self.view.send_modify(|view| {
            view.open_windows = open_windows;
            view.waiting_by_destination = by_destination;
            view.waiting_commits = self.pending.len();
            view.waiting_files = pending;
        });
    }

    /// Fetches the branch and computes what `request` would change on its tip (the commit's
    /// objects stay unreferenced in the cache; nothing is pushed).
    async fn preview(
        &mut self,
        request: Arc<SnapshotRequest>,
    ) -> Result<SnapshotStats, WorkerError> {
        let idle = self.pending.is_empty() && self.windows.open_counts().0 == 0;
        let (key, remote, store, transport) = (
            self.key.clone(),
            self.remote.borrow().clone(),
            self.store.clone(),
            self.transport.clone(),
        );
        let job = move || -> Result<(Option<ObjectId>, SnapshotStats), WorkerError> {
            let tip = transport
                .fetch_branch(store.dir(), &remote, &key.branch)
                .map_err(|source| WorkerError::Transport {
                    key: key.to_string(),
                    source,
                })?;
            let store_err = |source| WorkerError::Store {
                key: key.to_string(),
                source,
            };
            if let (true, Some(tip)) = (idle, tip) {
                store
                    .force_ref(&format!("refs/heads/{}", key.branch), tip)
                    .map_err(store_err)?;
            }
            let plan = store.plan_snapshot(tip, &request).map_err(store_err)?;
            Ok((tip, plan.counts))
        };
        let (tip, stats) =
            tokio::task::spawn_blocking(job)
                .await
                .map_err(|e| WorkerError::Stopped {
                    key: format!("{} ({e})", self.key),
                })??;
        if idle {
            self.remote_tip = tip;
            self.fetched = true;
        }
        Ok(stats)
    }

    async fn tick(&mut self) {
        if self.config.clock == Clock::Wall {
            let closed = self.windows.due(Timestamp::now());
            self.close(closed);
        }
        if self
            .retry_at
            .is_some_and(|at| at <= tokio::time::Instant::now())
        {
            self.retry_at = None;
        }
        if !self.pending.is_empty() && self.retry_at.is_none() {
            let _ = self.push_pending().await;
        }
        self.publish_waiting();
    }

    /// Pushes every pending window. On failure the windows stay pending and a retry is
    /// scheduled with exponential backoff.
    async fn push_pending(&mut self) -> Result<(), WorkerError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pushes_before = self.stats.pushes.load(Ordering::Relaxed);
        let started = std::time::Instant::now();
        let job = PushJob {
            key: self.key.clone(),
            remote: self.remote.borrow().clone(),
            store: self.store.clone(),
            transport: self.transport.clone(),
            config: self.config.clone(),
            pending: self.pending.iter().cloned().collect(),
            remote_tip: self.remote_tip,
            fetched: self.fetched,
            stats: self.stats.clone(),
            pushed: self.pushed.clone(),
        };
        let outcome = tokio::task::spawn_blocking(move || job.run())
            .await
            .unwrap_or_else(|e| {
                Err((
                    Box::new(WorkerError::Stopped {
                        key: format!("{} ({e})", self.key),
                    }),
                    None,
                ))
            });
        match outcome {
            Ok(tip) => {
                if let (true, Some(commit)) = (
                    self.stats.pushes.load(Ordering::Relaxed) != pushes_before,
                    tip,
                ) {
                    let record = PushRecord {
                        at: Timestamp::now(),
                        commit: commit.to_string(),
                        took: started.elapsed(),
                    };
                    let destinations: Vec<String> = self
                        .pending
                        .iter()
                        .filter_map(|p| p.destination().map(str::to_string))
                        .collect();
                    self.view.send_modify(|view| {
                        for destination in destinations {
                            view.pushed_by_destination
                                .insert(destination, record.clone());
                        }
                        view.last_push = Some(record);
                        view.last_failure = None;
                    });
                }
                self.pending.clear();
                self.remote_tip = tip;
                self.fetched = true;
                self.retry_delay = self.config.retry_initial;
                self.retry_at = None;
                Ok(())
            }
            Err((error, _)) if matches!(*error, WorkerError::NotLeading { .. }) => {
                let dropped: usize = self.pending.iter().map(Pending::size).sum();
                tracing::warn!(repository = %self.key, dropped_changes = dropped,
                    "lease lost: dropping unpushed changes; the replica that leads the \
                     repository now reconciles them");
                self.pending.clear();
                // The cache's view of the branch may be behind the new leader's pushes.
                self.fetched = false;
                self.retry_at = None;
                Err(*error)
            }
            Err((error, seen_tip)) => {
                if let Some(tip) = seen_tip {
                    self.remote_tip = tip;
                    self.fetched = true;
                }
                self.stats.push_failures.fetch_add(1, Ordering::Relaxed);
                let failure = PushFailure {
                    at: Timestamp::now(),
                    error: error.to_string(),
                };
                self.view
                    .send_modify(|view| view.last_failure = Some(failure));
                if let Some(observe) = &self.config.on_push {
                    observe(&self.key, PushEvent::Failed(&error));
                }
                tracing::warn!(repository = %self.key, error = %error,
                    waiting_commits = self.pending.len(), retry_in = ?self.retry_delay,
                    "push failed; changes kept and retried");
                self.retry_at = Some(tokio::time::Instant::now() + self.retry_delay);
                self.retry_delay = (self.retry_delay * 2).min(self.config.retry_max);
                Err(*error)
            }
        }
    }
}

fn instant_at(at: Timestamp) -> tokio::time::Instant {
    let now = Timestamp::now();
    let wait = at.duration_since(now).unsigned_abs();
    if at <= now {
        tokio::time::Instant::now()
    } else {
        tokio::time::Instant::now() + wait
    }
}

/// One push round, run on a blocking thread: fetch if needed, replay the pending windows on the
/// remote tip as commits, push with a lease; on a lost race fetch and replay again.
struct PushJob {
    pushed: Arc<tokio::sync::watch::Sender<u64>>,
    key: RepoKey,
    remote: Remote,
    store: Arc<Store>,
    transport: Arc<dyn Transport>,
    config: WorkerConfig,
    pending: Vec<Pending>,
    remote_tip: Option<ObjectId>,
    fetched: bool,
    stats: Arc<WorkerStats>,
}

/// On failure: the error, and the remote tip if a fetch learned a new one.
type PushResult = Result<Option<ObjectId>, (Box<WorkerError>, Option<Option<ObjectId>>)>;

impl PushJob {
    fn run(self) -> PushResult {
        let key = self.key.to_string();
        let transport_err = |source| {
            Box::new(WorkerError::Transport {
                key: key.clone(),
                source,
            })
        };
        let store_err = |source| {
            Box::new(WorkerError::Store {
                key: key.clone(),
                source,
            })
        };
        let mut tip = self.remote_tip;
        let mut learned = None;
        if !self.fetched {
            tip = self.fetch().map_err(|e| (transport_err(e), None))?;
            learned = Some(tip);
        }
        let limit = match self.config.max_push_attempts {
            0 => u32::MAX,
            n => n,
        };
        for attempt in 1..=limit {
            let base = match tip {
                Some(tip) => Some(tip),
                None => self
                    .default_branch_tip()
                    .map_err(|e| (transport_err(e), learned))?,
            };
            let (head, commits) = self.replay(base).map_err(|e| (store_err(e), learned))?;
            let Some(head) = head.filter(|h| Some(*h) != base) else {
                return Ok(tip); // every file already has its content
            };
            // Fencing: nothing is pushed (nor the local branch moved) once the lease is gone.
            if self
                .config
                .fence
                .as_ref()
                .is_some_and(|may| !may(&self.key))
            {
                return Err((Box::new(WorkerError::NotLeading { key }), learned));
            }
            // The local branch moves before the push: the remote may show the commit before
            // `git push` returns, and a decision reading the branch meanwhile must not compare
            // with the older content. If the push fails the branch holds what will be pushed
            // (the next round rebuilds it on the remote tip), never less.
            let local = format!("refs/heads/{}", self.key.branch);
            if let Err(e) = self.store.force_ref(&local, head) {
                tracing::warn!(repository = %self.key, error = %e, "cannot move the local branch");
            }
            let started = std::time::Instant::now();
            let pushed =
                self.transport
                    .push(self.store.dir(), &self.remote, &self.key.branch, head, tip);
            if let (Ok(PushOutcome::Pushed), Some(observe)) = (&pushed, &self.config.on_push) {
                observe(
                    &self.key,
                    PushEvent::Pushed {
                        took: started.elapsed(),
                    },
                );
            }
            match pushed {
                Ok(PushOutcome::Pushed) => {
                    self.stats.pushes.fetch_add(1, Ordering::Relaxed);
                    self.pushed.send_modify(|n| *n += 1);
                    self.stats.commits.fetch_add(commits, Ordering::Relaxed);
                    if let Err(e) = self
                        .store
                        .force_ref(&format!("refs/remotes/origin/{}", self.key.branch), head)
                    {
                        tracing::warn!(repository = %self.key, error = %e,
                            "pushed, but the cache's remote-tracking branch did not move; the next fetch corrects it");
                    }
                    tracing::info!(repository = %self.key, commit = %head, commits, attempt, "pushed");
                    return Ok(Some(head));
                }
                Ok(PushOutcome::Rejected { reason }) => {
                    self.stats.push_conflicts.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(repository = %self.key, %reason, attempt,
                        "remote moved; fetching and replaying the changes on the new tip");
                    std::thread::sleep(backoff(attempt, self.config.retry_max));
                    tip = self.fetch().map_err(|e| (transport_err(e), learned))?;
                    learned = Some(tip);
                }
                Err(e) => return Err((transport_err(e), learned)),
            }
        }
        Err((
            Box::new(WorkerError::Contended {
                key,
                attempts: limit,
            }),
            learned,
        ))
    }

    fn fetch(&self) -> Result<Option<ObjectId>, TransportError> {
        self.transport
            .fetch_branch(self.store.dir(), &self.remote, &self.key.branch)
    }

    /// A missing branch starts from the remote's default branch, or as a new root when the
    /// repository is empty.
    fn default_branch_tip(&self) -> Result<Option<ObjectId>, TransportError> {
        let info = self.transport.probe(&self.remote)?;
        match info.default_branch {
            Some(default) if !info.empty && default != self.key.branch => self
                .transport
                .fetch_branch(self.store.dir(), &self.remote, &default),
            _ => Ok(None),
        }
    }

    /// Writes one commit per pending item on top of `base`: a window's files (a file that
    /// already has its content is dropped; a window left with nothing makes no commit), or a
    /// snapshot's difference. Each commit also refreshes the folder's ownership marker; a folder
    /// that another owner's fresh marker holds is not written. Returns the new head and the
    /// number of commits.
    fn replay(&self, base: Option<ObjectId>) -> Result<(Option<ObjectId>, u64), StoreError> {
        let mut head = base;
        let mut commits = 0;
        let now = Timestamp::now();
        let committer = Signature {
            name: self.config.committer_name.clone(),
            email: self.config.committer_email.clone(),
            time: now,
        };
        for item in &self.pending {
            let (folder, destination) = match item {
                Pending::Window(w) => match w.changes.first() {
                    Some(first) => (first.folder.as_str(), first.destination.as_str()),
                    None => continue,
                },
                Pending::Snapshot(s) => (s.folder.as_str(), s.destination.as_str()),
            };
            let us = Owner {
                cluster: self.config.cluster.clone(),
                destination: destination.to_string(),
            };
            let marker_path = format!("{folder}/{MARKER_FILE}");
            let existing = self.store.read_file(head, &marker_path)?;
            match marker::check(
                existing.as_deref(),
                &us,
                now,
                self.config.marker_stale_after,
            ) {
                Claim::Refused { owner, updated } => {
                    self.stats
                        .refused
                        .fetch_add(item.size() as u64, Ordering::Relaxed);
                    tracing::error!(repository = %self.key, %folder, %destination,
                        owner_cluster = %owner.cluster, owner_destination = %owner.destination,
                        marker_updated = %updated,
                        "folder is owned by another writer (fresh ownership marker); not writing");
                    continue;
                }
                Claim::TakeOver { previous } => {
                    tracing::warn!(repository = %self.key, %folder, previous_cluster = %previous.cluster,
                        previous_destination = %previous.destination, "taking over a stale ownership marker");
                }
                Claim::Free | Claim::Ours => {}
            }
            let marker_text = marker::render(&us, self.config.holder.as_deref(), now);
            let written = match item {
                Pending::Window(window) => {
                    self.commit_window(head, window, &marker_path, &marker_text, &committer)?
                }
                Pending::Snapshot(snapshot) => {
                    self.commit_snapshot(head, snapshot, &marker_text, &committer)?
                }
            };
            if let Some(commit) = written {
                head = Some(commit);
                commits += 1;
            }
        }
        Ok((head, commits))
    }

    fn commit_window(
        &self,
        head: Option<ObjectId>,
        window: &Closed,
        marker_path: &str,
        marker_text: &str,
        committer: &Signature,
    ) -> Result<Option<ObjectId>, StoreError> {
        let Some(first) = window.changes.first() else {
            return Ok(None);
        };
        let changes: Vec<&super::change::FileChange> = window.files().collect();
        let edited = self.store.window_files(head, &first.folder, &changes)?;
        let mut files: Vec<(&str, Option<&[u8]>)> = edited
            .files
            .iter()
            .map(|(path, bytes)| (path.as_str(), bytes.as_deref()))
            .collect();
        files.push((marker_path, Some(marker_text.as_bytes())));
        let author = Signature {
            name: first.author.name.clone(),
            email: first.author.email.clone(),
            time: window.author_date().unwrap_or(committer.time),
        };
        // The trailers name each object's file as it is now (edited where it lives).
        let placed: Vec<Change> = window
            .changes
            .iter()
            .map(|change| {
                let mut change = change.clone();
                if let Some(path) = change
                    .file
                    .object
                    .as_ref()
                    .and_then(|id| edited.placed.get(&crate::folder::index::key_of(id)))
                {
                    change.file.path = path.clone();
                }
                change
            })
            .collect();
        let message = commit_message(&placed);
        let written = self
            .store
            .commit_files(head, &files, &author, committer, &message)?;
        let changed = written.as_ref().map_or(0, |(_, changed)| {
            changed.iter().filter(|p| p.as_str() != marker_path).count()
        });
        self.stats.unchanged.fetch_add(
            window.changes.len().saturating_sub(changed) as u64,
            Ordering::Relaxed,
        );
        // A refreshed marker alone is not a change.
        Ok(written.filter(|_| changed > 0).map(|(commit, _)| commit))
    }

    fn commit_snapshot(
        &self,
        head: Option<ObjectId>,
        snapshot: &SnapshotRequest,
        marker_text: &str,
        committer: &Signature,
    ) -> Result<Option<ObjectId>, StoreError> {
        let plan = self.store.plan_snapshot(head, snapshot)?;
        let removed = &plan.removed;
        let written = self.store.snapshot(
            head,
            &snapshot.folder,
            plan.files.iter().map(|(p, b)| (p.clone(), b.clone())),
            |relative| relative == MARKER_FILE || !removed.contains(relative),
            super::store::SnapshotCommit {
                agent: committer,
                notes: &plan.notes,
                extra: Some((MARKER_FILE, marker_text.as_bytes())),
                subject: Some(plan.counts.message()),
            },
        )?;
        if written.is_some() {
            let stats = plan.counts;
            tracing::info!(repository = %self.key, folder = %snapshot.folder, added = stats.added,
                updated = stats.updated, removed = stats.removed, "snapshot commit");
        }
        Ok(written.map(|(commit, _)| commit))
    }
}

/// The wait before the next attempt against a busy branch: exponential from 20 ms, at most
/// `max`, with full jitter (a random point of the window), so writers that collided do not
/// collide again in lockstep.
fn backoff(attempt: u32, max: Duration) -> Duration {
    let window = Duration::from_millis(20u64.saturating_mul(1 << attempt.min(16))).min(max);
    window.mul_f64(0.5 + fastrand::f64() / 2.0)
}
