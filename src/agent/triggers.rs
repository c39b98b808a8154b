//! Reconciler triggers: after each push of a destination's worker, its Flux `GitRepository` or
//! `Kustomization` and Argo CD `Application` objects are asked to reconcile at once, so the fresh
//! commit is applied instead of a stale one on an interval.

use crate::config::ObjectKey;
use crate::crd::ReconcilerTrigger;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Each destination's reconciler triggers, as its spec says now (namespace filled in).
pub type Triggers = Arc<std::sync::Mutex<BTreeMap<ObjectKey, Vec<ReconcilerTrigger>>>>;

/// After each push of the destination's worker, asks its reconcilers to reconcile now: Flux's
/// `reconcile.fluxcd.io/requestedAt` (a timestamp) or Argo CD's `argocd.argoproj.io/refresh`.
pub async fn nudge_reconcilers(
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
