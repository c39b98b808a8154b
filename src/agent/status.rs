//! Status written to the custom resources: the plan's conditions merged into each object's
//! status (transition times kept), plus each destination's `Reconciled`; and, at most every
//! [`PROGRESS_INTERVAL`] and only when they changed, the fields that follow the work: a
//! destination's last push, pending changes, open windows and what it would write in `Observe`
//! mode, a repository's URL, reachability and signing key, a rule's selected objects.

use super::reconcile::ReconcileResult;
use crate::config::{self, Inputs, ObjectKey, Plan};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The condition type that reports a destination's initial reconcile.
pub const RECONCILED: &str = "Reconciled";

/// How often the progress fields are compared and, where they changed, written: at most one
/// write per object per interval, however fast the work goes.
pub const PROGRESS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// The condition type that says whether every file of the folder could be read.
pub const FOLDER_READABLE: &str = "FolderReadable";

/// Files left as they are and objects found twice, after the last reconcile (`None`: none yet).
fn folder_condition(result: &ReconcileResult, generation: Option<i64>) -> Option<Condition> {
    let notes = &result.as_ref().ok()?.folder_notes;
    Some(if notes.is_empty() {
        config::conditions::condition(
            FOLDER_READABLE,
            config::Status::True,
            "AllRead",
            "every file of the folder reads; no object is in two places",
            generation,
        )
    } else {
        let reason = if notes.iter().all(|n| n.starts_with("Found twice")) {
            "ObjectsFoundTwice"
        } else {
            "FilesLeftAsTheyAre"
        };
        let shown: Vec<&str> = notes.iter().take(10).map(String::as_str).collect();
        let more = notes.len().saturating_sub(shown.len());
        config::conditions::condition(
            FOLDER_READABLE,
            config::Status::False,
            reason,
            if more > 0 {
                format!(
                    "{}; and {more} more (see the reconcile commit)",
                    shown.join("; ")
                )
            } else {
                shown.join("; ")
            },
            generation,
        )
    })
}

fn reconciled_condition(result: &ReconcileResult, generation: Option<i64>) -> Condition {
    match result.as_ref().map(|report| &report.not_pruned) {
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

/// What the statuses are written from: the plan's inputs and conclusions, and how each
/// destination's last reconcile went.
pub struct Snapshot {
    pub inputs: Inputs,
    pub plan: std::sync::Arc<Plan>,
    pub reconciled: BTreeMap<ObjectKey, ReconcileResult>,
    /// The fingerprint of each GitRepoConfig's signing key, when it has a usable one.
    pub signing: BTreeMap<ObjectKey, String>,
}

/// Starts the status writer: its own task, so the main loop never waits for the API server.
/// It always writes the latest snapshot it was given (an older one is skipped, never written
/// after a newer one).
pub fn spawn_writer(
    client: kube::Client,
    board: std::sync::Arc<super::board::StatusBoard>,
) -> (
    tokio::sync::watch::Sender<Option<std::sync::Arc<Snapshot>>>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, mut rx) = tokio::sync::watch::channel::<Option<std::sync::Arc<Snapshot>>>(None);
    let task = tokio::spawn(async move {
        let mut written = Written::default();
        let mut tick = tokio::time::interval(PROGRESS_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let latest = rx.borrow_and_update().clone();
                    if let Some(snapshot) = latest {
                        write(&client, &snapshot).await;
                    }
                }
                _ = tick.tick() => {
                    let latest = rx.borrow().clone();
                    if let Some(snapshot) = latest {
                        let patches = progress_patches(&snapshot, &board.progress());
                        written.write(&client, patches).await;
                    }
                }
            }
        }
    });
    (tx, task)
}

/// Which object a progress patch is for.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    Repo(ObjectKey),
    Destination(ObjectKey),
    WatchRule(ObjectKey),
    ClusterWatchRule(String),
}

/// The merge patch of each object's progress fields (`status.…`; `null` removes a field).
/// Pure: from the plan's inputs and conclusions and the destinations' progress. Only what this
/// replica reports is patched: the destinations it runs, their repositories and rules (and
/// repositories no destination uses), so replicas splitting the work never overwrite each
/// other.
pub fn progress_patches(
    snapshot: &Snapshot,
    progress: &BTreeMap<ObjectKey, super::board::Progress>,
) -> BTreeMap<(Target, String), Value> {
    let mut out = BTreeMap::new();
    let uid = |meta: &kube::api::ObjectMeta| meta.uid.clone().unwrap_or_default();
    let repo_of = |dest: &ObjectKey| {
        snapshot
            .plan
            .destinations
            .get(dest)
            .and_then(|d| d.resolved.as_ref())
            .map(|r| r.repo.clone())
    };
    let used: std::collections::BTreeSet<ObjectKey> = snapshot
        .plan
        .destinations
        .keys()
        .filter_map(repo_of)
        .collect();
    let reported: std::collections::BTreeSet<ObjectKey> = progress
        .iter()
        .filter(|(_, p)| p.mine)
        .filter_map(|(k, _)| repo_of(k))
        .collect();
    for repo in &snapshot.inputs.repos {
        let key = ObjectKey::new(repo.namespace().unwrap_or_default(), repo.name_any());
        let Some(plan) = snapshot.plan.repos.get(&key) else {
            continue;
        };
        if used.contains(&key) && !reported.contains(&key) {
            continue;
        }
        let reachable = plan
            .conditions
            .iter()
            .find(|c| c.type_ == config::conditions::REPOSITORY_REACHABLE)
            .and_then(|c| match c.status.as_str() {
                "True" => Some(true),
                "False" => Some(false),
                _ => None,
            });
        out.insert(
            (Target::Repo(key.clone()), uid(&repo.metadata)),
            json!({"status": {
                "url": crate::git::url::redact(&repo.spec.url),
                "reachable": reachable,
                "signingKeyFingerprint": snapshot.signing.get(&key),
            }}),
        );
    }
    let mut selected: BTreeMap<config::RuleKey, u64> = BTreeMap::new();
    for dest in &snapshot.inputs.destinations {
        let key = ObjectKey::new(dest.namespace().unwrap_or_default(), dest.name_any());
        let Some(p) = progress.get(&key).filter(|p| p.mine) else {
            continue;
        };
        for (rule, n) in &p.selected {
            *selected.entry(rule.clone()).or_default() += n;
        }
        let mut status = serde_json::Map::new();
        if let Some(push) = &p.last_push {
            status.insert("lastPushedCommit".into(), json!(push.commit));
            status.insert("lastPushTime".into(), json!(Time(push.at)));
        }
        status.insert("pendingChanges".into(), json!(p.pending));
        status.insert("openWindows".into(), json!(p.open_windows));
        let observed = p.observed.as_ref().map(|o| {
            json!({
                "reconcile": o.reconcile,
                "changes": o.changes,
                "recent": o.recent.iter()
                    .map(|c| format!("{} ({})", c.summary, c.path))
                    .collect::<Vec<_>>(),
            })
        });
        status.insert("observed".into(), observed.unwrap_or(Value::Null));
        out.insert(
            (Target::Destination(key), uid(&dest.metadata)),
            json!({ "status": status }),
        );
    }
    for rule in &snapshot.inputs.watch_rules {
        let key = ObjectKey::new(rule.namespace().unwrap_or_default(), rule.name_any());
        if let Some(n) = selected.get(&config::RuleKey::Namespaced(key.clone())) {
            out.insert(
                (Target::WatchRule(key), uid(&rule.metadata)),
                json!({"status": {"selectedObjects": n}}),
            );
        }
    }
    for rule in &snapshot.inputs.cluster_rules {
        if let Some(n) = selected.get(&config::RuleKey::Cluster(rule.name_any())) {
            out.insert(
                (
                    Target::ClusterWatchRule(rule.name_any()),
                    uid(&rule.metadata),
                ),
                json!({"status": {"selectedObjects": n}}),
            );
        }
    }
    out
}

/// Merge-patches the status subresource of one object.
async fn merge_status<K>(api: Api<K>, name: &str, patch: &Value) -> Result<(), kube::Error>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map(drop)
}

/// The progress patches last written, per object (and uid, so a recreated object is written
/// again): only a patch that differs is sent.
#[derive(Default)]
struct Written {
    last: BTreeMap<(Target, String), Value>,
}

impl Written {
    async fn write(&mut self, client: &kube::Client, patches: BTreeMap<(Target, String), Value>) {
        // Objects that are gone are forgotten.
        self.last.retain(|k, _| patches.contains_key(k));
        for (key, patch) in patches {
            if self.last.get(&key) == Some(&patch) {
                continue;
            }
            use crate::crd::{ClusterWatchRule, GitDestination, GitRepoConfig, WatchRule};
            let c = || client.clone();
            let result = match &key.0 {
                Target::Repo(k) => {
                    merge_status(
                        Api::<GitRepoConfig>::namespaced(c(), &k.namespace),
                        &k.name,
                        &patch,
                    )
                    .await
                }
                Target::Destination(k) => {
                    merge_status(
                        Api::<GitDestination>::namespaced(c(), &k.namespace),
                        &k.name,
                        &patch,
                    )
                    .await
                }
                Target::WatchRule(k) => {
                    merge_status(
                        Api::<WatchRule>::namespaced(c(), &k.namespace),
                        &k.name,
                        &patch,
                    )
                    .await
                }
                Target::ClusterWatchRule(name) => {
                    merge_status(Api::<ClusterWatchRule>::all(c()), name, &patch).await
                }
            };
            match result {
                Ok(()) => {
                    self.last.insert(key, patch);
                }
                // Retried at the next interval.
                Err(e) => tracing::warn!(object = ?key.0, error = %e, "cannot write status"),
            }
        }
    }
}

/// Patches the conditions of every custom resource whose conditions changed.
async fn write(client: &kube::Client, snapshot: &Snapshot) {
    let (inputs, plan, results) = (&snapshot.inputs, &snapshot.plan, &snapshot.reconciled);
    let now = Time(jiff::Timestamp::now());
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
            if let Some(result) = results.get(&key) {
                conditions.push(reconciled_condition(result, p.generation));
                conditions.extend(folder_condition(result, p.generation));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::board::Progress;
    use crate::config::testkit::*;
    use crate::git::progress::PushRecord;
    use crate::ops::status::WouldWriteStatus;

    fn snapshot() -> Snapshot {
        let mut inputs = base_inputs();
        inputs.repos = vec![repo(
            "infra",
            "main",
            "https://bot:s3cret@git.example.com/org/repo.git",
        )];
        inputs.destinations = vec![dest("infra", "prod", "main", "main", "clusters/prod")];
        inputs.watch_rules = vec![watch_rule(
            "infra",
            "apps",
            "prod",
            vec![rr(&[""], &["configmaps"])],
        )];
        let plan = std::sync::Arc::new(config::plan(&inputs));
        Snapshot {
            inputs,
            plan,
            reconciled: BTreeMap::new(),
            signing: [(ObjectKey::new("infra", "main"), "SHA256:abc".to_string())].into(),
        }
    }

    #[test]
    fn progress_patches_carry_pushes_pending_observed_and_selected_counts_without_secrets() {
        let snapshot = snapshot();
        let rule = config::RuleKey::Namespaced(ObjectKey::new("infra", "apps"));
        let progress: BTreeMap<ObjectKey, Progress> = [(
            ObjectKey::new("infra", "prod"),
            Progress {
                mine: true,
                last_push: Some(PushRecord {
                    at: jiff::Timestamp::UNIX_EPOCH,
                    commit: "0123abcd".into(),
                    took: std::time::Duration::from_millis(5),
                }),
                pending: 3,
                open_windows: 1,
                observed: Some(WouldWriteStatus::default()),
                selected: [(rule, 7)].into(),
            },
        )]
        .into();
        let patches = progress_patches(&snapshot, &progress);
        let find = |target: Target| {
            patches
                .iter()
                .find(|((t, _), _)| *t == target)
                .map(|(_, v)| v["status"].clone())
                .unwrap_or_else(|| panic!("no patch for {target:?}: {patches:?}"))
        };
        let repo = find(Target::Repo(ObjectKey::new("infra", "main")));
        assert_eq!(repo["url"], "https://bot:***@git.example.com/org/repo.git");
        assert!(!repo.to_string().contains("s3cret"));
        assert_eq!(repo["signingKeyFingerprint"], "SHA256:abc");
        assert!(repo["reachable"].is_null(), "not known yet: {repo}");
        let dest = find(Target::Destination(ObjectKey::new("infra", "prod")));
        assert_eq!(dest["lastPushedCommit"], "0123abcd");
        assert_eq!(dest["lastPushTime"], "1970-01-01T00:00:00Z");
        assert_eq!(dest["pendingChanges"], 3);
        assert_eq!(dest["openWindows"], 1);
        assert_eq!(dest["observed"]["changes"], 0);
        let rule = find(Target::WatchRule(ObjectKey::new("infra", "apps")));
        assert_eq!(rule["selectedObjects"], 7);

        // A destination another replica runs is not patched, nor its repository or rules.
        let mut elsewhere = progress.clone();
        for p in elsewhere.values_mut() {
            p.mine = false;
        }
        assert!(progress_patches(&snapshot, &elsewhere).is_empty());
        // A destination that stops observing gets `observed: null` (removed).
        let mut recording = progress;
        for p in recording.values_mut() {
            p.observed = None;
            p.last_push = None;
        }
        let patches = progress_patches(&snapshot, &recording);
        let dest = patches
            .iter()
            .find(|((t, _), _)| matches!(t, Target::Destination(_)))
            .map(|(_, v)| v["status"].clone())
            .expect("destination");
        assert!(dest["observed"].is_null() && dest.get("observed").is_some());
        assert!(
            dest.get("lastPushedCommit").is_none(),
            "an unknown push leaves the field as it is"
        );
    }
}
