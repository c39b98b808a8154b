//! What a snapshot commit (an initial reconcile) asks of a worker: the folder's whole desired
//! content by object, and which documents it may remove — only those provably the destination's.

use crate::manifest::{ContentHash, ObjectIdentity};
use std::sync::Arc;

/// The complete desired content of one destination folder (initial reconcile).
#[derive(Debug)]
pub struct SnapshotRequest {
    pub folder: String,
    /// The destination, `namespace/name`, for the ownership marker.
    pub destination: String,
    /// Every object the folder should hold, found wherever the folder has it.
    pub objects: Vec<SnapshotObject>,
    /// Whole files (paths relative to the folder → bytes) that are not objects.
    pub files: Vec<(String, Vec<u8>)>,
    /// Which documents of the folder that `objects` lacks may be removed.
    pub prune: Prune,
    /// Lines for the commit message's body: what was not pruned and why (types whose rule did
    /// not resolve or whose listing failed).
    pub notes: Vec<String>,
}

impl SnapshotRequest {
    /// How many objects and files it holds.
    pub fn len(&self) -> usize {
        self.objects.len() + self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One object a snapshot writes.
#[derive(Clone, Debug)]
pub struct SnapshotObject {
    pub id: ObjectIdentity,
    /// Where a new one goes (from the repository root).
    pub path: String,
    pub bundle: bool,
    /// Its document as the agent writes it; empty when `keep`.
    pub content: Vec<u8>,
    /// The content hash the document records.
    pub hash: ContentHash,
    /// Git's document already says this (equivalent to the live object): left as it is.
    pub keep: bool,
}

/// Which documents of a folder a snapshot may remove when its objects lack them.
#[derive(Clone)]
pub enum Prune {
    /// None: existing documents stay; only additions and updates are written.
    Nothing,
    /// Only the object documents for which the predicate says "ours" (the agent: an object of a
    /// type the destination watches, listed completely, that routes to it), given the
    /// document's identity (its namespace as kustomize gives it) and the document. Files that
    /// are no objects — a README, a kustomization, a file that does not parse, an object of an
    /// unwatched type — always stay.
    Owned(Arc<Owned>),
}

/// Whether a document (its identity, and the document) is the destination's to remove.
pub type Owned = dyn Fn(&ObjectIdentity, &serde_json::Value) -> bool + Send + Sync;

impl std::fmt::Debug for Prune {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Prune::Nothing => f.write_str("Nothing"),
            Prune::Owned(_) => f.write_str("Owned(..)"),
        }
    }
}
