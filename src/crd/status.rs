//! The status of the kinds that report more than conditions: what a GitDestination last
//! pushed and has waiting (and, in `Observe` mode, would write), a GitRepoConfig's URL,
//! reachability and signing key, and how many objects a rule selects. The agent writes these
//! fields at most every few seconds, apart from the conditions.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What the agent last observed and did for a GitDestination.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitDestinationStatus {
    /// The `metadata.generation` of the spec this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Current state, one entry per type: `Ready`, `ReferencesResolved`, `BranchAllowed`,
    /// `AccessAllowed`, `DestinationConflict`, `RepositoryReachable`, `Suspended`, `Reconciled`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The commit the last push holding this destination's changes left on the branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_pushed_commit: Option<String>,
    /// When that push reached the remote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_push_time: Option<Time>,
    /// Files of this destination waiting in open commit windows or in commits not yet pushed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_changes: Option<i64>,
    /// Open commit windows (one per author) of this destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_windows: Option<i64>,
    /// In `Observe` mode: what would have been written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<ObservedWrites>,
}

/// What a destination in `Observe` mode would have written.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObservedWrites {
    /// What its last reconcile would have committed (`reconcile: N added, M updated, K removed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconcile: Option<String>,
    /// Changes it would have committed since it started.
    pub changes: i64,
    /// The latest of them, newest first: commit subject and path.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent: Vec<String>,
}

/// What the agent last observed of a GitRepoConfig.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitRepoConfigStatus {
    /// The `metadata.generation` of the spec this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Current state, one entry per type: `Ready`, `CredentialsValid`, `RepositoryReachable`,
    /// `CommitsSigned`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// `spec.url` as configured (a password or token in it shown as `***`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Whether the last probe or push reached the repository (unset until one did or failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reachable: Option<bool>,
    /// With `commit.signingKeyRef`: the fingerprint (`SHA256:…`) of the key commits are signed
    /// with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key_fingerprint: Option<String>,
}

/// What the agent last observed of a WatchRule or ClusterWatchRule.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WatchRuleStatus {
    /// The `metadata.generation` of the spec this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Current state, one entry per type: `Ready`, `DestinationResolved`, `ResourcesResolved`,
    /// `AccessAllowed`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Objects the rule selected at its destination's last reconcile (listing everything the
    /// rules select), excluded kinds included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selected_objects: Option<i64>,
}
