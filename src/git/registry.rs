//! The worker registry: one worker per normalized repository URL and branch, shared by every
//! destination that points there, and shut down when the last of them lets go.

use super::store::{Store, StoreError};
use super::transport::{Remote, Transport};
use super::url::{NormalizedUrl, RepoKey, UrlError};
use super::worker::{WorkerConfig, WorkerHandle, spawn};
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Url(#[from] UrlError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

struct Entry {
    handle: WorkerHandle,
    holders: BTreeSet<String>,
}

/// Hands out workers. Cheap to share behind an `Arc`.
pub struct Registry {
    state_dir: PathBuf,
    transport: Arc<dyn Transport>,
    config: WorkerConfig,
    workers: Mutex<HashMap<RepoKey, Entry>>,
}

impl Registry {
    pub fn new(
        state_dir: impl Into<PathBuf>,
        transport: Arc<dyn Transport>,
        config: WorkerConfig,
    ) -> Self {
        Self {
            state_dir: state_dir.into(),
            transport,
            config,
            workers: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RepoKey, Entry>> {
        // A panic while holding the lock leaves the map consistent (every operation is one
        // insert or remove), so a poisoned lock is still usable.
        self.workers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The worker for `remote`'s repository and `branch`, started if needed; `holder` (for
    /// example `GitDestination shop/web`) keeps it alive until [`Registry::release`].
    /// Must be called inside a tokio runtime.
    pub fn acquire(
        &self,
        remote: Remote,
        branch: &str,
        holder: &str,
    ) -> Result<WorkerHandle, RegistryError> {
        self.acquire_with(remote, branch, holder, None)
    }

    /// Like [`Registry::acquire`], with the commit windows of the repository's configuration.
    /// The worker keeps the windows it started with; a later holder's differing windows take
    /// effect when the worker is next started.
    pub fn acquire_with(
        &self,
        remote: Remote,
        branch: &str,
        holder: &str,
        windows: Option<super::window::WindowConfig>,
    ) -> Result<WorkerHandle, RegistryError> {
        let key = RepoKey {
            url: NormalizedUrl::parse(&remote.url)?,
            branch: branch.to_string(),
        };
        let mut workers = self.lock();
        if let Some(entry) = workers.get_mut(&key) {
            entry.holders.insert(holder.to_string());
            return Ok(entry.handle.clone());
        }
        let store = Arc::new(
            Store::open(&self.state_dir, &key.url)?.with_signer(self.config.signer.clone()),
        );
        let mut config = self.config.clone();
        if let Some(windows) = windows {
            config.windows = windows;
        }
        let handle = spawn(key.clone(), remote, store, self.transport.clone(), config);
        tracing::info!(repository = %key, %holder, "worker started");
        workers.insert(
            key,
            Entry {
                handle: handle.clone(),
                holders: BTreeSet::from([holder.to_string()]),
            },
        );
        Ok(handle)
    }

    /// Lets go of everything `holder` acquired. A worker left with no holder drops its handle;
    /// it lands what it still has and stops once no other clone of the handle is in use.
    pub fn release(&self, holder: &str) {
        let mut workers = self.lock();
        workers.retain(|key, entry| {
            entry.holders.remove(holder);
            let keep = !entry.holders.is_empty();
            if !keep {
                tracing::info!(repository = %key, "no destination left; worker stopping");
            }
            keep
        });
    }

    /// The running workers' handles (for metrics).
    pub fn handles(&self) -> Vec<WorkerHandle> {
        self.lock().values().map(|e| e.handle.clone()).collect()
    }

    /// The repositories and branches that have a worker.
    pub fn keys(&self) -> Vec<RepoKey> {
        let mut keys: Vec<RepoKey> = self.lock().keys().cloned().collect();
        keys.sort();
        keys
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
