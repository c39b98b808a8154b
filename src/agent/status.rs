//! Status conditions written to the custom resources: the plan's conditions merged into each
//! object's status (transition times kept), plus each destination's `Reconciled`.

use super::reconcile::ReconcileResult;
use crate::config::{self, Inputs, ObjectKey, Plan};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};
use std::collections::BTreeMap;

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
}

/// Starts the status writer: its own task, so the main loop never waits for the API server.
/// It always writes the latest snapshot it was given (an older one is skipped, never written
/// after a newer one).
pub fn spawn_writer(
    client: kube::Client,
) -> (
    tokio::sync::watch::Sender<Option<std::sync::Arc<Snapshot>>>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, mut rx) = tokio::sync::watch::channel::<Option<std::sync::Arc<Snapshot>>>(None);
    let task = tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            let latest = rx.borrow_and_update().clone();
            if let Some(snapshot) = latest {
                write(&client, &snapshot).await;
            }
        }
    });
    (tx, task)
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
