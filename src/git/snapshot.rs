//! What a snapshot commit (an initial reconcile) asks of a worker: the folder's whole desired
//! content, and which existing files it may remove — only those provably the destination's.

use std::sync::Arc;

/// The complete desired content of one destination folder (initial reconcile).
#[derive(Debug)]
pub struct SnapshotRequest {
    pub folder: String,
    /// The destination, `namespace/name`, for the ownership marker.
    pub destination: String,
    /// Paths relative to the folder → bytes.
    pub files: Vec<(String, Vec<u8>)>,
    /// Which files of the folder that `files` lacks may be removed.
    pub prune: Prune,
    /// Lines for the commit message's body: what was not pruned and why (types whose rule did
    /// not resolve or whose listing failed).
    pub notes: Vec<String>,
}

/// Which existing files of a folder a snapshot may remove when its `files` lack them.
#[derive(Clone)]
pub enum Prune {
    /// None: existing files stay; only additions and updates are written.
    Nothing,
    /// Only files holding exactly one Kubernetes document for which the predicate says "ours"
    /// (the agent: an object of a type the destination watches, listed completely, that routes
    /// to it). Files that are not one such document — a README, a kustomization, a file that
    /// does not parse, an object of an unwatched type — always stay.
    Owned(Arc<dyn Fn(&serde_json::Value) -> bool + Send + Sync>),
}

impl std::fmt::Debug for Prune {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Prune::Nothing => f.write_str("Nothing"),
            Prune::Owned(_) => f.write_str("Owned(..)"),
        }
    }
}
