//! What a worker is doing right now, for the status page and the resources' status: its open
//! commit windows, the commits waiting to be pushed and how the last push went. The worker
//! publishes a fresh [`WorkerView`] after every round through a watch channel, so readers never
//! wait for it and it never waits for them.

use jiff::Timestamp;
use std::collections::BTreeMap;
use std::time::Duration;

/// One open commit window: one author's changes to one destination folder, not yet a commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenWindow {
    /// `name <email>` of the author the window belongs to.
    pub author: String,
    pub folder: String,
    /// The destination (`namespace/name`) of its first change.
    pub destination: String,
    /// When its first change was received.
    pub opened: Timestamp,
    /// Files in it (a file changed twice counts once).
    pub files: usize,
}

/// A push that reached the remote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushRecord {
    pub at: Timestamp,
    /// The remote tip after the push.
    pub commit: String,
    /// The whole round: fetch if needed, replay, push, rebuilds on another writer's commits.
    pub took: Duration,
}

/// A push round that failed (the changes stay and are retried).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushFailure {
    pub at: Timestamp,
    /// The error, naming the repository by its normalized URL (no credentials).
    pub error: String,
}

/// A worker's state as of its last round.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkerView {
    pub open_windows: Vec<OpenWindow>,
    /// Closed windows and snapshots replayed as commits at the next push.
    pub waiting_commits: usize,
    /// Files in those commits.
    pub waiting_files: usize,
    pub last_push: Option<PushRecord>,
    /// The last failed round, cleared by the next push that reaches the remote.
    pub last_failure: Option<PushFailure>,
    /// Per destination (`namespace/name`): files in commits waiting to be pushed.
    pub waiting_by_destination: BTreeMap<String, usize>,
    /// Per destination: the last push that held its changes.
    pub pushed_by_destination: BTreeMap<String, PushRecord>,
}
