//! The agent's configuration brain: a pure function from the custom resources, namespaces and
//! discovery to what the agent must do (conditions, destinations, watches, routes). No I/O.
//! Controllers feed [`Inputs`] to [`plan`] on every change and apply the [`Plan`] it returns.

pub mod conditions;
pub mod destinations;
pub mod discovery;
pub mod plan;
pub mod repos;
pub mod rules;
pub mod selector;

#[cfg(test)]
pub(crate) mod testkit;

use std::fmt;

use kube::core::ObjectMeta;

pub use conditions::{Status, merge_conditions};
pub use destinations::{DestinationPlan, ResolvedDestination};
pub use discovery::{ApiResource, Discovery};
pub use plan::{Delta, Inputs, ObjectRef, Plan, Route, WatchKey, plan};
pub use repos::{RemoteProblem, RepoPlan};
pub use rules::{
    GroupResource, NamespaceScope, Operations, ProblemKind, ResourceProblem, RulePlan,
    SelectedResource,
};
pub use selector::SelectorError;

/// A WatchRule (by namespace/name) or a ClusterWatchRule (by name); displays with its kind.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RuleKey {
    Cluster(String),
    Namespaced(ObjectKey),
}

impl fmt::Display for RuleKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleKey::Cluster(name) => write!(f, "ClusterWatchRule {name}"),
            RuleKey::Namespaced(key) => write!(f, "WatchRule {key}"),
        }
    }
}

/// A namespaced object by namespace and name; displays as `namespace/name`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The key of a namespaced object, or `None` when its metadata lacks a name or namespace.
    pub fn of(meta: &ObjectMeta) -> Option<Self> {
        Some(Self::new(meta.namespace.clone()?, meta.name.clone()?))
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}
