//! The destination folder as the worker edits it: the folder index of a commit (cached per
//! folder, brought forward file by file from the one before), and a window's changes and a
//! snapshot applied to it as in-place edits through a [`Workspace`].

use super::change::FileChange;
use super::snapshot::{Prune, SnapshotRequest};
use super::store::{SnapshotStats, Store, StoreError};
use crate::folder::index::{Key, key_of};
use crate::folder::{Edited, FileVersion, FolderIndex, Placement, Workspace};
use crate::manifest::ObjectIdentity;
use crate::manifest::hash::recorded_hash;
use gix::ObjectId;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// Indexes kept per folder: the pushed tip's and the head being written.
const KEPT_PER_FOLDER: usize = 2;

/// The indexes kept of one folder: its tree id → index, oldest first.
type Kept = Vec<(ObjectId, Arc<FolderIndex>)>;

/// A file's new state: path → new bytes, or `None` (removed).
pub type FileEdit = (String, Option<Vec<u8>>);

/// What a window's changes make: the files, and where each object's document is now (path by
/// identity key, for the commit message's trailers).
#[derive(Debug, Default)]
pub struct WindowFiles {
    pub files: Vec<FileEdit>,
    pub placed: HashMap<Key, String>,
}

/// The folder indexes of recent commits, by folder and the folder's tree id.
#[derive(Default)]
pub struct FolderIndexes {
    cache: Mutex<HashMap<String, Kept>>,
}

fn version(id: &ObjectId) -> FileVersion {
    let mut version = [0u8; 20];
    let bytes = id.as_bytes();
    let n = bytes.len().min(20);
    version[..n].copy_from_slice(&bytes[..n]);
    version
}

/// What a snapshot changes: files to write (relative to the folder), files to remove, and
/// what it did by document.
#[derive(Debug, Default)]
pub struct SnapshotPlan {
    pub files: Vec<(String, Vec<u8>)>,
    pub removed: HashSet<String>,
    /// Documents added, updated, removed, unchanged.
    pub counts: SnapshotStats,
    /// What was not read, found twice, or not pruned (the commit body).
    pub notes: Vec<String>,
}

/// A folder at one commit, indexed: many objects' documents read without resolving the
/// branch and the folder again for each (a reconcile's render).
pub struct FolderAt {
    store: Arc<Store>,
    commit: Option<ObjectId>,
    index: Arc<FolderIndex>,
}

impl FolderAt {
    pub fn new(
        store: Arc<Store>,
        commit: Option<ObjectId>,
        folder: &str,
    ) -> Result<Self, StoreError> {
        let index = store.folder_index(commit, folder)?;
        Ok(Self {
            store,
            commit,
            index,
        })
    }

    /// An object's document, wherever the folder has it (`None` at once when it has none).
    pub fn document(&self, id: &ObjectIdentity) -> Option<Value> {
        self.index.find(id)?;
        let load = |path: &str| self.store.read_file(self.commit, path).ok().flatten();
        Workspace::new(&self.index, &load).document(id)
    }
}

impl Store {
    /// The index of `folder` at `commit`: from the cache when the folder's tree is the same,
    /// else brought forward from the last one by re-reading only the files that differ.
    pub fn folder_index(
        &self,
        commit: Option<ObjectId>,
        folder: &str,
    ) -> Result<Arc<FolderIndex>, StoreError> {
        let Some(tree) = self.folder_tree(commit, folder)? else {
            return Ok(Arc::new(FolderIndex::build(folder, [], &|_| None)));
        };
        let base = {
            let cache = self.indexes.cache.lock().unwrap_or_else(|e| e.into_inner());
            let entries = cache.get(folder);
            if let Some((_, index)) = entries.and_then(|e| e.iter().find(|(t, _)| *t == tree)) {
                return Ok(index.clone());
            }
            entries
                .and_then(|e| e.last())
                .map(|(_, index)| index.clone())
        };
        let files = self.folder_files(commit, folder)?;
        let load = |path: &str| files.get(path).and_then(|id| self.read_blob(*id));
        let index = match base {
            Some(base) => {
                let mut index = (*base).clone();
                let mut changed: Vec<(String, Option<FileVersion>)> = files
                    .iter()
                    .filter(|(path, id)| base.version_of(path) != Some(version(id)))
                    .map(|(path, id)| (path.clone(), Some(version(id))))
                    .collect();
                changed.extend(
                    base.paths()
                        .filter(|path| !files.contains_key(*path))
                        .map(|path| (path.to_string(), None)),
                );
                index.update(changed, &load);
                index
            }
            None => FolderIndex::build(
                folder,
                files.iter().map(|(path, id)| (path.clone(), version(id))),
                &load,
            ),
        };
        let index = Arc::new(index);
        let mut cache = self.indexes.cache.lock().unwrap_or_else(|e| e.into_inner());
        let entries = cache.entry(folder.to_string()).or_default();
        entries.push((tree, index.clone()));
        if entries.len() > KEPT_PER_FOLDER {
            entries.remove(0);
        }
        Ok(index)
    }

    /// An object's document in `folder` at `commit`, wherever the folder has it.
    pub fn document_at(
        &self,
        commit: Option<ObjectId>,
        folder: &str,
        id: &ObjectIdentity,
    ) -> Result<Option<Value>, StoreError> {
        let index = self.folder_index(commit, folder)?;
        let load = |path: &str| self.read_file(commit, path).ok().flatten();
        Ok(Workspace::new(&index, &load).document(id))
    }

    /// The files a window's changes make on top of `head`: each object's document edited where
    /// the folder has it or placed anew, removed from its file on a delete; a change whose
    /// object the folder already holds equivalently (another writer's document: a person's,
    /// without server defaults) is dropped. Returns path → new bytes (`None`: removed).
    pub fn window_files(
        &self,
        head: Option<ObjectId>,
        folder: &str,
        changes: &[&FileChange],
    ) -> Result<WindowFiles, StoreError> {
        let index = self.folder_index(head, folder)?;
        let load = |path: &str| self.read_file(head, path).ok().flatten();
        let mut workspace = Workspace::new(&index, &load);
        let mut whole = Vec::new();
        let mut placed = HashMap::new();
        for change in changes {
            let (Some(id), Some(content)) = (&change.object, &change.content) else {
                match &change.object {
                    Some(id) => {
                        if let Edited::Removed { path } = workspace.delete(id) {
                            placed.insert(key_of(id), path);
                        }
                    }
                    None => whole.push((
                        change.path.clone(),
                        change.content.as_ref().map(|c| c.to_vec()),
                    )),
                }
                continue;
            };
            if let (Some(live), Some(doc)) = (&change.live, workspace.document(id)) {
                let verdict = crate::manifest::equivalence::compare(&doc, live);
                if verdict.is_equivalent() {
                    tracing::info!(folder, object = %id, %verdict,
                        "the branch's document already says this; not rewriting it");
                    continue;
                }
            }
            let Ok(text) = std::str::from_utf8(content) else {
                whole.push((change.path.clone(), Some(content.to_vec())));
                continue;
            };
            let placement = Placement {
                path: &change.path,
                bundle: change.bundle,
            };
            match workspace.upsert(id, text, placement) {
                Ok(
                    Edited::Added { path } | Edited::Updated { path } | Edited::Unchanged { path },
                ) => {
                    placed.insert(key_of(id), path);
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(folder, object = %id, error = %e, "cannot edit the object's document; not written");
                }
            }
        }
        let mut files = workspace.changes();
        files.extend(whole);
        Ok(WindowFiles { files, placed })
    }

    /// What a snapshot changes on top of `head`: every object written where the folder has it
    /// (or placed anew), and the documents its prune rule claims that the objects lack removed.
    pub fn plan_snapshot(
        &self,
        head: Option<ObjectId>,
        request: &SnapshotRequest,
    ) -> Result<SnapshotPlan, StoreError> {
        let folder = request.folder.as_str();
        let index = self.folder_index(head, folder)?;
        let load = |path: &str| self.read_file(head, path).ok().flatten();
        let mut workspace = Workspace::new(&index, &load);
        let mut plan = SnapshotPlan::default();
        let mut wanted: HashSet<Key> = HashSet::with_capacity(request.objects.len());
        for object in &request.objects {
            wanted.insert(key_of(&object.id));
            if object.keep {
                plan.counts.unchanged += 1;
                continue;
            }
            if index.find(&object.id).is_some()
                && workspace
                    .document(&object.id)
                    .is_some_and(|doc| recorded_hash(&doc) == object.hash)
            {
                plan.counts.unchanged += 1;
                continue;
            }
            let text = String::from_utf8_lossy(&object.content);
            let placement = Placement {
                path: &object.path,
                bundle: object.bundle,
            };
            match workspace.upsert(&object.id, &text, placement) {
                Ok(Edited::Added { .. }) => plan.counts.added += 1,
                Ok(Edited::Updated { .. }) => plan.counts.updated += 1,
                Ok(_) => plan.counts.unchanged += 1,
                Err(e) => {
                    tracing::error!(folder, object = %object.id, error = %e,
                        "cannot edit the object's document; not written");
                    plan.notes.push(format!("Not written: {e}"));
                }
            }
        }
        if let Prune::Owned(owned) = &request.prune {
            let stale: Vec<ObjectIdentity> = index
                .stale(&wanted)
                .iter()
                .filter_map(|place| index.identity_at(place, &load))
                .collect();
            for id in stale {
                let ours = workspace.document(&id).is_some_and(|doc| owned(&id, &doc));
                if ours && matches!(workspace.delete(&id), Edited::Removed { .. }) {
                    plan.counts.removed += 1;
                }
            }
        }
        plan.notes.extend(request.notes.iter().cloned());
        let found = index.notes(&load);
        for note in &found {
            tracing::warn!(folder, %note, "a file of the folder is left as it is");
        }
        plan.notes.extend(found);
        let prefix = format!("{folder}/");
        let mut written: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        for (path, bytes) in workspace.changes() {
            let relative = path.strip_prefix(&prefix).unwrap_or(&path).to_string();
            match bytes {
                Some(bytes) => {
                    written.insert(relative, bytes);
                }
                None => {
                    plan.removed.insert(relative);
                }
            }
        }
        for (relative, bytes) in &request.files {
            match load(&format!("{prefix}{relative}")) {
                None => plan.counts.added += 1,
                Some(old) if old != *bytes => plan.counts.updated += 1,
                Some(_) => {
                    plan.counts.unchanged += 1;
                    continue;
                }
            }
            written.insert(relative.clone(), bytes.clone());
        }
        plan.files = written.into_iter().collect();
        Ok(plan)
    }
}
