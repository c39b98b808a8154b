//! One destination's task: it takes the events routed to the destination from a bounded queue,
//! decides each one against the file its worker last pushed ([`decide_event`], with the Git
//! read on a blocking thread) and hands the changes to the worker, at once or once their author
//! is known. A slow or hanging repository blocks only its own destinations' tasks; the main
//! loop never waits for them (it counts an overflow and reconciles the destination instead).

use super::capture::{Decided, Decision, Event, GitView, Known, Layout, decide_event};
use crate::attribution::resolver::{Lookup, Resolver};
use crate::config::{ObjectKey, WatchKey};
use crate::git::change::{Change, FileChange};
use crate::git::worker::WorkerHandle;
use crate::identity::Author;
use crate::manifest::ContentHash;
use crate::manifest::exclude::ExclusionPolicy;
use crate::manifest::user_exclude::UserExclusions;
use crate::ops::metrics::{EventDecision, Metrics};
use kube::api::DynamicObject;
use serde_json::Value;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Events a destination's queue holds before the main loop counts an overflow.
pub const DEFAULT_QUEUE_CAPACITY: usize = 1024;

/// One event routed to a destination: the object is shared by every destination it routes to.
#[derive(Clone, Debug)]
pub struct Routed {
    pub watch: WatchKey,
    pub object: Arc<DynamicObject>,
    pub deleted: bool,
    /// The destination's rules write this object when Git lacks it (CREATE) / holds it (UPDATE).
    pub creates: bool,
    pub updates: bool,
    /// The exclusions of the rules that select it, applied on top of the destination's.
    pub exclusions: Option<Arc<UserExclusions>>,
}

/// What a destination's task is asked to do.
#[derive(Debug)]
pub enum Input {
    Event(Routed),
    /// The content hashes of the files a reconcile wrote or found (path → hash).
    Learned(Vec<(String, ContentHash)>),
    /// Answered once every event queued before it has reached the worker, changes waiting for
    /// their author included: a reconcile starts after it, so no older change lands after it.
    Barrier(oneshot::Sender<()>),
}

/// What became of an event offered to a destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offered {
    /// In the task's queue, which now holds this many.
    Queued { depth: usize },
    /// Held until the running reconcile ends; this many are held.
    Held { held: usize },
    /// Not taken (the queue is full, or the held bound was reached and the held events were
    /// dropped): the destination must reconcile again. `first`: the first loss since the last
    /// reconcile started (worth a warning); `reconciling`: lost to the held bound.
    Lost { first: bool, reconciling: bool },
    /// The task has stopped.
    Closed,
}

/// A destination's intake on the main loop: events go to its task's bounded queue without
/// waiting; while its reconcile runs they are held (bounded) and handed over after it, in
/// order; whatever cannot be taken marks the destination for another reconcile (nothing is lost:
/// the reconcile lists the current state).
pub struct Intake {
    tx: mpsc::Sender<Input>,
    held: Vec<Routed>,
    held_limit: usize,
    reconciling: bool,
    resync: bool,
}

impl Intake {
    pub fn new(tx: mpsc::Sender<Input>, held_limit: usize) -> Self {
        Self {
            tx,
            held: Vec::new(),
            held_limit,
            reconciling: false,
            resync: false,
        }
    }

    /// The task's queue (for a reconcile's barrier and what it learned).
    pub fn sender(&self) -> &mpsc::Sender<Input> {
        &self.tx
    }

    pub fn reconciling(&self) -> bool {
        self.reconciling
    }

    /// Events were lost since the last reconcile started: another one is due.
    pub fn needs_resync(&self) -> bool {
        self.resync
    }

    /// Asks for another reconcile (a resync interval passed).
    pub fn request_resync(&mut self) {
        self.resync = true;
    }

    /// Takes one event, never waiting.
    pub fn offer(&mut self, routed: Routed) -> Offered {
        if self.reconciling {
            if self.held.len() < self.held_limit {
                self.held.push(routed);
                return Offered::Held {
                    held: self.held.len(),
                };
            }
            self.held.clear();
            return self.lost();
        }
        match self.tx.try_send(Input::Event(routed)) {
            Ok(()) => Offered::Queued {
                depth: self.tx.max_capacity() - self.tx.capacity(),
            },
            Err(mpsc::error::TrySendError::Full(_)) => self.lost(),
            Err(mpsc::error::TrySendError::Closed(_)) => Offered::Closed,
        }
    }

    fn lost(&mut self) -> Offered {
        let first = !self.resync;
        self.resync = true;
        Offered::Lost {
            first,
            reconciling: self.reconciling,
        }
    }

    /// A reconcile starts: events are held from now on, and what was lost before is covered.
    pub fn start_reconcile(&mut self) {
        self.reconciling = true;
        self.resync = false;
    }

    /// The reconcile ended: the held events go to the task, in order; returns what became of
    /// each.
    pub fn end_reconcile(&mut self) -> Vec<Offered> {
        self.reconciling = false;
        std::mem::take(&mut self.held)
            .into_iter()
            .map(|routed| self.offer(routed))
            .collect()
    }
}

/// Metrics and logs of one offered event; true when it was lost.
pub fn record_offer(offered: Offered, label: &str, metrics: &Metrics) -> bool {
    match offered {
        Offered::Queued { depth } => {
            metrics.set_destination_queue(label, depth);
            false
        }
        Offered::Held { held } => {
            metrics.set_destination_held(label, held);
            false
        }
        Offered::Lost { first, reconciling } => {
            metrics.record_destination_overflow(label);
            // A first listing of many objects arrives while the initial reconcile runs: that is
            // not a slow repository, and the log says so.
            if first && reconciling {
                tracing::warn!(destination = %label,
                    "more events arrived while its reconcile ran than are held; they are dropped \
                     and the destination reconciles again after it (expected when a watch first \
                     lists many objects)");
            } else if first {
                tracing::warn!(destination = %label,
                    "queue full (its repository is slow or unreachable); events are dropped and \
                     the destination reconciles from complete listings once it catches up");
            }
            true
        }
        Offered::Closed => {
            tracing::error!(destination = %label, "the destination's task has stopped; event dropped");
            false
        }
    }
}

/// What a destination's task needs.
pub struct Settings {
    pub key: ObjectKey,
    pub worker: WorkerHandle,
    pub layout: Layout,
    pub policy: ExclusionPolicy,
    pub resolver: Option<Arc<Resolver>>,
    pub metrics: Arc<Metrics>,
    /// `Observe` mode: changes are decided and reported in `live`, never sent to the worker.
    pub observe: bool,
    /// Its numbers for the status page and its status.
    pub live: Arc<super::live::DestinationLive>,
    /// Delete events remove the object's document (`prune` is not `Never`).
    pub deletes: bool,
}

/// Starts the task; it ends when every sender is dropped and its queue is empty.
pub fn spawn(settings: Settings, capacity: usize) -> (mpsc::Sender<Input>, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let task = Task {
        label: settings.key.to_string(),
        settings,
        known: Known::new(),
        attributing: Attributing::default(),
    };
    (tx, tokio::spawn(task.run(rx)))
}

struct Task {
    settings: Settings,
    /// The destination as `namespace/name`, for logs and metric labels.
    label: String,
    known: Known,
    attributing: Attributing,
}

/// The worker's view of the branch: files as it last pushed them (its local cache).
pub struct Pushed<'a>(pub &'a WorkerHandle, pub &'a str);

impl GitView for crate::git::apply::FolderAt {
    fn document(&self, id: &crate::manifest::ObjectIdentity, _path: &str) -> Option<Value> {
        crate::git::apply::FolderAt::document(self, id)
    }
}

impl GitView for Pushed<'_> {
    fn document(&self, id: &crate::manifest::ObjectIdentity, _path: &str) -> Option<Value> {
        self.0.pushed_document(self.1, id).ok().flatten()
    }
}

impl Task {
    async fn run(mut self, mut rx: mpsc::Receiver<Input>) {
        while let Some(input) = rx.recv().await {
            self.settings
                .metrics
                .set_destination_queue(&self.label, rx.len());
            match input {
                Input::Event(routed) => self.capture(routed).await,
                Input::Learned(hashes) => self.known.extend(hashes),
                Input::Barrier(done) => {
                    self.attributing.drained().await;
                    let _ = done.send(());
                }
            }
        }
        self.attributing.drained().await;
    }

    /// Decides one event and hands its change, if any, to the worker.
    async fn capture(&mut self, routed: Routed) {
        let Routed {
            watch,
            object,
            deleted,
            creates,
            updates,
            exclusions,
        } = routed;
        let mut live = match serde_json::to_value(&*object) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(destination = %self.label, watch = %watch, error = %e,
                    "cannot read an object; skipped");
                return;
            }
        };
        fill_type(&mut live, &watch);
        // The decision may read Git (the worker's cache on disk): off the async threads.
        let known = std::mem::take(&mut self.known);
        let (worker, layout, policy) = (
            self.settings.worker.clone(),
            self.settings.layout.clone(),
            self.settings.policy.with_rules(exclusions.as_deref()),
        );
        let resource = watch.resource.clone();
        let decided = tokio::task::spawn_blocking(move || {
            let mut known = known;
            let event = Event {
                live: &live,
                resource: &resource,
                deleted,
                creates,
                updates,
            };
            let outcome = decide_event(
                &event,
                &layout,
                &policy,
                &mut known,
                &Pushed(&worker, &layout.folder),
            );
            let fields = match &outcome {
                Ok(Some(d)) if !deleted && !matches!(d.decision, Decision::Excluded { .. }) => {
                    crate::manifest::pipeline::excluded_fields(&live, &policy)
                }
                _ => Vec::new(),
            };
            (known, (outcome, fields), live)
        })
        .await;
        let (known, (outcome, fields), live) = match decided {
            Ok(done) => done,
            Err(e) => {
                tracing::error!(destination = %self.label, error = %e,
                    "the decision did not finish; the event is lost until the next reconcile");
                return;
            }
        };
        self.known = known;
        let metrics = &self.settings.metrics;
        let (decision, existed) = match outcome {
            Ok(Some(Decided {
                decision,
                existed,
                read_git,
            })) => {
                if read_git {
                    metrics.record_git_read();
                }
                (decision, existed)
            }
            Ok(None) => {
                tracing::debug!(destination = %self.label, watch = %watch, deleted,
                    "the destination's rules do not write this operation");
                return;
            }
            Err(e) => {
                tracing::warn!(watch = %watch, destination = %self.label, error = %e,
                    "cannot render an object; skipped");
                return;
            }
        };
        metrics.record_event(EventDecision::from(&decision));
        if let Decision::Excluded { exclusion, .. } = &decision {
            metrics.record_exclusion(&self.label, exclusion.rule_name(), "object");
        }
        for field in &fields {
            metrics.record_exclusion(&self.label, &field.rule, "field");
        }
        self.settings.live.record(EventDecision::from(&decision));
        log_decision(&self.settings.key, &decision);
        if matches!(decision, Decision::Delete { .. }) && !self.settings.deletes {
            tracing::info!(destination = %self.label, watch = %watch,
                "prune: Never; the deleted object's document stays in Git");
            return;
        }
        let bundle =
            |id: &crate::manifest::ObjectId| self.settings.layout.placement(id, &watch.resource).1;
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
                live: Some(Arc::new(live)),
                path,
                content: Some(content.into()),
                hash: Some(hash),
                bundle: bundle(&id),
                object: Some(id.identity()),
            },
            Decision::Delete { path, id } => FileChange {
                summary: format!("delete {}", id.summary()),
                namespace: id.namespace.clone(),
                live: None,
                path,
                content: None,
                hash: None,
                bundle: bundle(&id),
                object: Some(id.identity()),
            },
            Decision::Unchanged { .. } | Decision::Excluded { .. } => return,
        };
        let observed_at = jiff::Timestamp::now();
        if self.settings.observe {
            self.settings
                .live
                .observe(observed_at, file.summary, file.path);
            return;
        }
        let change = Change {
            folder: self.settings.layout.folder.clone(),
            destination: self.label.clone(),
            author: Author::unknown(),
            user: None,
            impersonator: None,
            audit_id: None,
            received: observed_at,
            file,
        };
        let Some(resolver) = self.settings.resolver.clone() else {
            metrics.record_unattributed();
            if let Err(e) = self.settings.worker.send(change).await {
                tracing::error!(destination = %self.label, error = %e, "worker stopped; change not queued");
            }
            return;
        };
        let lookup = Lookup {
            uid: object.metadata.uid.clone(),
            resource_version: object.metadata.resource_version.clone(),
            content_hash: change.file.hash,
            deleted,
            group: watch.group.clone(),
            resource: watch.resource.clone(),
            namespace: object
                .metadata
                .namespace
                .clone()
                .filter(|ns| !ns.is_empty()),
            name: object.metadata.name.clone().unwrap_or_default(),
            observed_at,
        };
        self.attributing.submit(
            &self.label,
            change,
            lookup,
            resolver,
            self.settings.worker.clone(),
            (metrics.clone(), self.settings.live.clone()),
        );
    }
}

/// The metric label of a decision (the same words as [`Decision::label`]).
impl From<&Decision> for EventDecision {
    fn from(decision: &Decision) -> Self {
        match decision {
            Decision::Write { .. } => EventDecision::Written,
            Decision::Delete { .. } => EventDecision::Deleted,
            Decision::Unchanged {
                why: super::capture::Unchanged::Equivalent(how),
                ..
            } => how.into(),
            Decision::Unchanged {
                why: super::capture::Unchanged::NoFile,
                ..
            } => EventDecision::NoFile,
            Decision::Excluded { .. } => EventDecision::Excluded,
        }
    }
}

/// Puts `apiVersion` and `kind` on an object from its watch (list items may lack them).
pub fn fill_type(object: &mut Value, key: &WatchKey) {
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

/// What was decided and why: writes at info, everything else at debug.
fn log_decision(destination: &ObjectKey, decision: &Decision) {
    use super::capture::Unchanged;
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

/// Resolves who made each change (waiting at most the resolver's grace period) without
/// holding up other files: every change waits for its author on its own task, and changes of one
/// file reach the worker in the order they were seen.
#[derive(Default)]
struct Attributing {
    /// The last change submitted per path: done when it reached the worker.
    last: std::collections::HashMap<String, tokio::sync::watch::Receiver<bool>>,
}

impl Attributing {
    fn submit(
        &mut self,
        destination: &str,
        mut change: Change,
        lookup: Lookup,
        resolver: Arc<Resolver>,
        worker: WorkerHandle,
        (metrics, live): (Arc<Metrics>, Arc<super::live::DestinationLive>),
    ) {
        if self.last.len() > 4096 {
            self.last.retain(|_, done| !*done.borrow());
        }
        let (done_tx, done_rx) = tokio::sync::watch::channel(false);
        let previous = self.last.insert(change.file.path.clone(), done_rx);
        let destination = destination.to_string();
        live.attribution_started();
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
            live.attribution_finished();
            if let Err(e) = worker.send(change).await {
                tracing::error!(%destination, error = %e, "worker stopped; change not queued");
            }
            let _ = done_tx.send(true);
        });
    }

    /// Waits until every submitted change has reached the worker.
    async fn drained(&mut self) {
        for (_, mut done) in self.last.drain() {
            let _ = done.wait_for(|done| *done).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::capture::Unchanged;
    use crate::manifest::equivalence::Equivalence;

    fn routed(name: &str) -> Routed {
        let resource = kube::api::ApiResource {
            group: String::new(),
            version: "v1".into(),
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            plural: "configmaps".into(),
        };
        Routed {
            watch: WatchKey {
                group: String::new(),
                version: "v1".into(),
                resource: "configmaps".into(),
                kind: "ConfigMap".into(),
                namespaced: true,
                namespace: None,
            },
            object: Arc::new(DynamicObject::new(name, &resource)),
            deleted: false,
            creates: true,
            updates: true,
            exclusions: None,
        }
    }

    fn name(input: Input) -> String {
        match input {
            Input::Event(r) => r.object.metadata.name.clone().unwrap_or_default(),
            other => format!("{other:?}"),
        }
    }

    /// Events are queued without waiting; during a reconcile they are held and handed over
    /// after it, in order; a full queue or the held bound loses events and asks for another
    /// reconcile, warning once.
    #[test]
    fn the_intake_holds_during_a_reconcile_and_never_waits() {
        let (tx, mut rx) = mpsc::channel(2);
        let mut intake = Intake::new(tx, 3);
        assert_eq!(intake.offer(routed("a")), Offered::Queued { depth: 1 });
        intake.start_reconcile();
        assert_eq!(intake.offer(routed("b")), Offered::Held { held: 1 });
        assert_eq!(intake.offer(routed("c")), Offered::Held { held: 2 });
        assert_eq!(name(rx.try_recv().unwrap()), "a");
        assert!(rx.try_recv().is_err(), "held events wait for the reconcile");
        assert_eq!(
            intake.end_reconcile(),
            [Offered::Queued { depth: 1 }, Offered::Queued { depth: 2 }]
        );
        assert_eq!(name(rx.try_recv().unwrap()), "b");
        assert_eq!(name(rx.try_recv().unwrap()), "c");

        // A full queue: lost, another reconcile is due, the first loss is the one to warn about.
        intake.offer(routed("d"));
        intake.offer(routed("e"));
        let lost = |first| Offered::Lost {
            first,
            reconciling: false,
        };
        assert_eq!(intake.offer(routed("f")), lost(true));
        assert_eq!(intake.offer(routed("g")), lost(false));
        assert!(intake.needs_resync());
        intake.start_reconcile();
        assert!(!intake.needs_resync(), "the reconcile covers what was lost");

        // The held bound: past it the held events go, and another reconcile follows.
        for n in ["h", "i", "j"] {
            assert!(matches!(intake.offer(routed(n)), Offered::Held { .. }));
        }
        assert_eq!(
            intake.offer(routed("k")),
            Offered::Lost {
                first: true,
                reconciling: true
            },
            "lost to the held bound, said apart from a full queue"
        );
        assert!(intake.end_reconcile().is_empty());
        assert!(intake.needs_resync());

        drop(rx);
        assert_eq!(intake.offer(routed("l")), Offered::Closed);
    }

    #[test]
    fn decisions_map_from_the_capture_decision_with_its_labels() {
        let id = crate::manifest::object::ObjectId {
            group: String::new(),
            version: "v1".into(),
            kind: "ConfigMap".into(),
            namespace: Some("shop".into()),
            name: "web".into(),
        };
        let unchanged = |why| Decision::Unchanged {
            path: "p".into(),
            id: id.clone(),
            why,
        };
        let cases = [
            Decision::Delete {
                path: "p".into(),
                id: id.clone(),
            },
            unchanged(Unchanged::Equivalent(Equivalence::Exact)),
            unchanged(Unchanged::Equivalent(Equivalence::HashAnnotation)),
            unchanged(Unchanged::Equivalent(Equivalence::Near {
                reason: "defaults".into(),
            })),
            unchanged(Unchanged::NoFile),
        ];
        for decision in &cases {
            assert_eq!(EventDecision::from(decision).as_str(), decision.label());
        }
    }
}
