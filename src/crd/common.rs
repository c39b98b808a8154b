//! Pieces shared by all custom resources: the error type of this layer, the status type
//! with its list-map `conditions`, and condition look-ups.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::duration::DurationError;

/// The condition every kind reports: `True` when the object is in effect.
pub const CONDITION_READY: &str = "Ready";

/// A spec value the agent cannot use; the message names the field and the bad input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CrdError {
    #[error("{field}: {source}")]
    Duration {
        field: &'static str,
        #[source]
        source: DurationError,
    },
    #[error("folder {folder:?}: {reason}")]
    Folder {
        folder: String,
        reason: &'static str,
    },
    #[error("{field}: {value} is out of range ({reason})")]
    OutOfRange {
        field: &'static str,
        value: i64,
        reason: &'static str,
    },
}

/// Finds the condition of the given type in a status' condition list.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// True when the list holds a `Ready` condition with status `True`.
pub fn is_ready(conditions: &[Condition]) -> bool {
    find_condition(conditions, CONDITION_READY).is_some_and(|c| c.status == "True")
}

// A kind that needs more status fields gets its own struct with these two first.
/// What the agent last observed and concluded about this object.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceStatus {
    /// The `metadata.generation` of the spec this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Current state, one entry per type: `Ready` (the object is in effect), plus kind-specific
    /// conditions such as `Conflict`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

impl ResourceStatus {
    /// The condition of the given type, if reported.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        find_condition(&self.conditions, type_)
    }

    /// True when `Ready` is `True`.
    pub fn is_ready(&self) -> bool {
        is_ready(&self.conditions)
    }
}
