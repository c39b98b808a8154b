//! The status board: the main loop posts each destination's configuration, conditions, queue
//! and live numbers after every plan, and `/status` reads the board together with the workers'
//! published views. Reading takes a short read lock and clones; no worker or destination task
//! is ever asked or waited for.

use super::destination::Input;
use super::live::DestinationLive;
use crate::config::ObjectKey;
use crate::git::registry::Registry;
use crate::git::worker::WorkerHandle;
use crate::ops::Readiness;
use crate::ops::metrics::{EventDecision, Metrics};
use crate::ops::status::{
    ConditionStatus, DestinationStatus, FailureStatus, Fill, PushStatus, StatusReport,
    StatusSource, WindowStatus, WorkerStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use tokio::sync::mpsc;

/// One destination as the main loop last posted it.
#[derive(Clone, Debug)]
pub struct Posted {
    pub key: ObjectKey,
    /// The GitRepoConfig's `spec.url` as configured, redacted ([`crate::git::url::redact`]).
    pub url: String,
    /// The worker it shares: normalized URL and branch.
    pub repository: String,
    pub branch: String,
    pub folder: String,
    pub mode: crate::crd::DestinationMode,
    pub suspended: bool,
    pub ready: Option<Condition>,
    pub reachable: Option<Condition>,
    /// Its task's queue, while it runs (weak: the board never keeps a task alive).
    pub queue: Option<mpsc::WeakSender<Input>>,
    pub live: Option<Arc<DestinationLive>>,
}

/// What `/status` shows. Shared behind an `Arc` by the main loop (writes) and the operations
/// server (reads).
pub struct StatusBoard {
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    readiness: Readiness,
    posted: RwLock<Vec<Posted>>,
}

impl std::fmt::Debug for StatusBoard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusBoard").finish_non_exhaustive()
    }
}

fn condition(c: &Option<Condition>) -> Option<ConditionStatus> {
    c.as_ref().map(|c| ConditionStatus {
        status: c.status.clone(),
        reason: c.reason.clone(),
        message: c.message.clone(),
    })
}

fn fill(queue: &mpsc::WeakSender<Input>) -> Option<Fill> {
    let queue = queue.upgrade()?;
    Some(Fill {
        depth: queue.max_capacity() - queue.capacity(),
        capacity: queue.max_capacity(),
    })
}

impl StatusBoard {
    pub fn new(registry: Arc<Registry>, metrics: Arc<Metrics>, readiness: Readiness) -> Self {
        Self {
            registry,
            metrics,
            readiness,
            posted: RwLock::new(Vec::new()),
        }
    }

    /// Replaces what the board shows of the destinations.
    pub fn post(&self, destinations: Vec<Posted>) {
        *self.posted.write().unwrap_or_else(|p| p.into_inner()) = destinations;
    }

    /// The destinations as last posted.
    pub fn posted(&self) -> Vec<Posted> {
        self.posted
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn worker(handle: &WorkerHandle, now: jiff::Timestamp, posted: &[Posted]) -> WorkerStatus {
        let view = handle.view();
        let stats = handle.stats();
        let repository = handle.key().to_string();
        let reachability: Vec<bool> = posted
            .iter()
            .filter(|p| p.repository == repository)
            .filter_map(|p| p.reachable.as_ref())
            .filter(|c| c.status != "Unknown")
            .map(|c| c.status == "True")
            .collect();
        let reachable = match reachability.as_slice() {
            [] => None,
            all => Some(all.iter().all(|r| *r)),
        };
        WorkerStatus {
            queue: Fill {
                depth: handle.queued(),
                capacity: handle.queue_capacity(),
            },
            open_windows: view
                .open_windows
                .iter()
                .map(|w| WindowStatus {
                    author: w.author.clone(),
                    destination: w.destination.clone(),
                    folder: w.folder.clone(),
                    age_seconds: now.duration_since(w.opened).as_secs().max(0).unsigned_abs(),
                    files: w.files,
                })
                .collect(),
            waiting_commits: view.waiting_commits,
            waiting_files: view.waiting_files,
            last_push: view.last_push.map(|p| PushStatus {
                at: p.at.to_string(),
                commit: p.commit,
                took_ms: u64::try_from(p.took.as_millis()).unwrap_or(u64::MAX),
            }),
            last_failure: view.last_failure.map(|f| FailureStatus {
                at: f.at.to_string(),
                error: f.error,
            }),
            reachable,
            commits: stats.commits.load(Ordering::Relaxed),
            pushes: stats.pushes.load(Ordering::Relaxed),
            push_failures: stats.push_failures.load(Ordering::Relaxed),
            repository,
        }
    }
}

/// One destination's progress for its resource status.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Progress {
    /// This replica reports it: it runs the destination (with leader election another replica
    /// may), or the destination is suspended (nothing runs it anywhere).
    pub mine: bool,
    pub last_push: Option<crate::git::progress::PushRecord>,
    /// Files in open windows and in commits not yet pushed.
    pub pending: usize,
    pub open_windows: usize,
    /// `Observe` mode: what would have been written.
    pub observed: Option<crate::ops::status::WouldWriteStatus>,
    /// Objects each rule selected at the last reconcile.
    pub selected: std::collections::BTreeMap<crate::config::RuleKey, u64>,
}

impl StatusBoard {
    /// Every posted destination's progress, from its worker's published view and its live
    /// numbers (a suspended destination has neither: only what its worker, if still running
    /// for others, last pushed for it).
    pub fn progress(&self) -> std::collections::BTreeMap<ObjectKey, Progress> {
        let views: std::collections::BTreeMap<String, crate::git::progress::WorkerView> = self
            .registry
            .handles()
            .iter()
            .map(|h| (h.key().to_string(), h.view()))
            .collect();
        self.posted()
            .into_iter()
            .map(|p| {
                let name = p.key.to_string();
                let mut progress = Progress {
                    mine: p.live.is_some() || p.suspended,
                    ..Progress::default()
                };
                if let Some(view) = views.get(&p.repository) {
                    progress.last_push = view.pushed_by_destination.get(&name).cloned();
                    let windows: Vec<_> = view
                        .open_windows
                        .iter()
                        .filter(|w| w.destination == name)
                        .collect();
                    progress.open_windows = windows.len();
                    progress.pending = windows.iter().map(|w| w.files).sum::<usize>()
                        + view.waiting_by_destination.get(&name).copied().unwrap_or(0);
                }
                if let Some(live) = &p.live {
                    progress.selected = live.selected();
                    if p.mode == crate::crd::DestinationMode::Observe {
                        progress.observed = Some(live.would_write().unwrap_or_default());
                    }
                }
                (p.key, progress)
            })
            .collect()
    }
}

impl StatusSource for StatusBoard {
    fn report(&self) -> StatusReport {
        let now = jiff::Timestamp::now();
        let posted = self.posted();
        let mut workers: Vec<WorkerStatus> = self
            .registry
            .handles()
            .iter()
            .map(|h| Self::worker(h, now, &posted))
            .collect();
        workers.sort_by(|a, b| a.repository.cmp(&b.repository));
        let destinations = posted
            .iter()
            .map(|p| DestinationStatus {
                name: p.key.to_string(),
                url: p.url.clone(),
                repository: p.repository.clone(),
                branch: p.branch.clone(),
                folder: p.folder.clone(),
                mode: p.mode.as_str().to_string(),
                suspended: p.suspended,
                ready: condition(&p.ready),
                reachable: condition(&p.reachable),
                queue: p.queue.as_ref().and_then(fill),
                events: p.live.as_ref().map(|l| l.events()).unwrap_or_default(),
                awaiting_attribution: p.live.as_ref().map_or(0, |l| l.awaiting_attribution()),
                would_write: p.live.as_ref().and_then(|l| l.would_write()),
            })
            .collect();
        StatusReport {
            generated_at: now.to_string(),
            not_ready: self.readiness.check().err(),
            workers,
            destinations,
            events: EventDecision::ALL
                .iter()
                .map(|d| (d.as_str().to_string(), self.metrics.events(*d)))
                .collect(),
        }
    }
}
