//! The initial reconcile of one destination: list everything its rules select, render the
//! folder and write the difference as one snapshot commit, pruning only documents that are
//! provably the destination's (their type listed completely, routed to it).

use super::capture::{FolderContent, Layout, Listed, render_folder};
use super::destination::{Input, fill_type};
use super::watches::api_for;
use crate::config::{self, ObjectKey, ObjectRef, Plan};
use crate::crd::Operation;
use crate::git::worker::{Prune, SnapshotRequest, WorkerHandle};
use crate::manifest::ContentHash;
use crate::manifest::exclude::ExclusionPolicy;
use kube::api::ListParams;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

/// How an initial reconcile went: done, with what was not pruned and why (empty: everything
/// was), or incomplete and why.
pub type ReconcileResult = Result<ReconcileReport, String>;

/// What a reconcile that ran to the end has to say.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Types not pruned, and why (empty: everything was).
    pub not_pruned: Vec<String>,
    /// Files of the folder left as they are (they do not read, hold no object) and objects
    /// found twice, as the branch holds them after the reconcile.
    pub folder_notes: Vec<String>,
}

/// A finished initial reconcile: the destination, how it went, and the hashes of the files it
/// wrote or found (path from the repository root → content hash).
pub type Reconciled = (ObjectKey, ReconcileResult, Vec<(String, ContentHash)>);

/// What one reconcile works with.
pub struct Request {
    pub client: kube::Client,
    pub plan: Arc<Plan>,
    pub key: ObjectKey,
    pub worker: WorkerHandle,
    /// The destination's task: drained before listing, so no older change lands after the
    /// snapshot.
    pub destination: mpsc::Sender<Input>,
    pub layout: Layout,
    pub prune: bool,
    /// Why some types are not watched (rules that did not resolve): not pruned, and said so.
    pub unresolved: Vec<String>,
    pub policy: ExclusionPolicy,
    /// `Observe` mode: the snapshot is previewed and reported in `live`, never committed.
    pub observe: bool,
    /// The destination's live numbers: what each rule selects, what it would write.
    pub live: Arc<super::live::DestinationLive>,
    /// Where the reconcile's duration is recorded (`gitops_reverser_reconcile_duration_seconds`).
    pub metrics: Arc<crate::ops::metrics::Metrics>,
    /// Fetch the branch before rendering (a resync: a person may have edited Git).
    pub fetch_first: bool,
}

/// Lists everything the destination's rules select and writes the folder's difference as one
/// commit. A listing that fails removes nothing.
pub async fn reconcile(request: Request, done: mpsc::Sender<Reconciled>) {
    let Request {
        client,
        plan,
        key,
        worker,
        destination,
        layout,
        prune,
        unresolved,
        policy,
        observe,
        live,
        metrics,
        fetch_first,
    } = request;
    let mut selected: BTreeMap<config::RuleKey, u64> = BTreeMap::new();
    let folder = layout.folder.clone();
    let folder_name = folder.clone();
    // Every change decided before the reconcile reaches the worker first.
    let (drained, barrier) = oneshot::channel();
    if destination.send(Input::Barrier(drained)).await.is_ok() {
        let _ = barrier.await;
    }
    let started = Instant::now();
    // With an age identity, Git's SOPS files are opened and compared with the live Secrets
    // while rendering (below, page by page); they must be the remote's, not an older cache's:
    // fetched first (a preview of no change moves the cache to the remote's tip). So does a
    // resync (a person may have edited Git).
    if fetch_first
        || layout
            .encryption
            .as_ref()
            .is_some_and(|e| e.has_identities())
    {
        let fetch = SnapshotRequest {
            folder: folder.clone(),
            destination: key.to_string(),
            objects: Vec::new(),
            files: Vec::new(),
            prune: Prune::Nothing,
            notes: Vec::new(),
        };
        if let Err(e) = worker.preview(fetch).await {
            tracing::warn!(destination = %key, error = %e,
                "cannot fetch before rendering; SOPS files are compared with the cache");
        }
    }
    // Each page is rendered as soon as it is listed, so the listing is held one page at a time
    // (whole objects with their managed fields), not all at once: 100,000 ConfigMaps held as
    // JSON values took 570 MiB of heap; their rendered files take a fifth of it.
    let mut content = FolderContent::default();
    // Git's folder, indexed once for every page (not resolved again per object).
    let pushed = {
        let (view, folder) = (worker.clone(), folder.clone());
        let read = tokio::task::spawn_blocking(move || view.pushed_folder(&folder))
            .await
            .map_err(|e| e.to_string())
            .and_then(|read| read.map_err(|e| e.to_string()));
        match read {
            Ok(pushed) => Arc::new(pushed),
            Err(e) => {
                let result = Err(format!("reading the folder failed: {e}"));
                let _ = done.send((key, result, Vec::new())).await;
                return;
            }
        }
    };
    let rendering = Arc::new((layout, policy));
    let mut failures = Vec::new();
    let mut listed = Vec::new();
    for watch in plan.watches_for(&key) {
        let api = api_for(client.clone(), &watch);
        let mut params = ListParams::default().limit(500);
        loop {
            match api.list(&params).await {
                Ok(list) => {
                    let next = list.metadata.continue_.clone().filter(|c| !c.is_empty());
                    let mut page = Vec::with_capacity(list.items.len());
                    for object in list.items {
                        let labels = object.metadata.labels.clone().unwrap_or_default();
                        let r = ObjectRef {
                            group: &watch.group,
                            version: &watch.version,
                            resource: &watch.resource,
                            namespace: namespace_of(&object.metadata),
                            labels: &labels,
                        };
                        let mut ours = None;
                        for route in plan.route(&r, Operation::All) {
                            if route.destination == key {
                                *selected.entry(route.rule).or_default() += 1;
                                ours = Some(route.exclusions);
                            }
                        }
                        let Some(exclusions) = ours else {
                            continue;
                        };
                        if let Ok(mut value) = serde_json::to_value(&object) {
                            fill_type(&mut value, &watch);
                            page.push(Listed {
                                resource: watch.resource.clone(),
                                object: value,
                                exclusions,
                            });
                        }
                    }
                    // Rendering reads the files Git holds (SOPS files that stay): off the
                    // async threads.
                    let (pushed, rendering) = (pushed.clone(), rendering.clone());
                    match tokio::task::spawn_blocking(move || {
                        let (layout, policy) = &*rendering;
                        render_folder(page, layout, policy, &*pushed)
                    })
                    .await
                    {
                        Ok(rendered) => content.extend(rendered),
                        Err(e) => {
                            let result = Err(format!("rendering the folder failed: {e}"));
                            let _ = done.send((key, result, Vec::new())).await;
                            return;
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
    live.set_selected(selected);
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
        objects: content.objects,
        files: Vec::new(),
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
    let (written, hashes) = match observe {
        // Nothing is written, so nothing is learned: the files keep what Git has.
        true => {
            let previewed = worker.preview(request).await;
            if let Ok(stats) = &previewed {
                live.observe_reconcile(stats.message());
                tracing::info!(destination = %key, would = %stats.message(),
                    "observe mode: the reconcile would commit this; nothing written");
            }
            (previewed.map(|_| None), Vec::new())
        }
        false => (worker.snapshot(request).await, content.hashes),
    };
    let result = match written {
        Err(e) => Err(e.to_string()),
        Ok(_) if !complete && prune => Err(not_pruned.join("; ")),
        Ok(_) if !complete => Err(failures.join("; ")),
        Ok(_) => Ok(ReconcileReport {
            not_pruned: if prune { not_pruned } else { Vec::new() },
            folder_notes: worker.folder_notes(&folder_name).await,
        }),
    };
    metrics.observe_reconcile(started.elapsed());
    tracing::info!(destination = %key, took = ?started.elapsed(), complete, "initial reconcile");
    let _ = done.send((key, result, hashes)).await;
}

/// The prune rule of one destination's snapshot: a document is ours when its type was listed
/// completely for this destination and the object it describes routes here (namespace, labels),
/// so the listing would have contained it had it still existed.
fn owned_by(plan: Arc<Plan>, destination: ObjectKey, listed: Vec<config::WatchKey>) -> Prune {
    Prune::Owned(Arc::new(
        move |id: &crate::manifest::ObjectIdentity, doc: &Value| {
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
        },
    ))
}

/// An object's namespace, `None` for cluster-scoped objects however the server spelled it
/// (a missing field or `namespace: ""`).
pub fn namespace_of(meta: &kube::api::ObjectMeta) -> Option<&str> {
    meta.namespace.as_deref().filter(|ns| !ns.is_empty())
}
