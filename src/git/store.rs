//! The local repository store: one bare cache per remote under the state directory, edited in
//! memory with gix (blobs, trees, commits, compare-and-swap ref updates); no working tree.

use super::url::NormalizedUrl;
use gix::ObjectId;
use gix::bstr::ByteSlice;
use gix::objs::tree::EntryKind;
use gix::refs::transaction::{Change, LogChange, PreviousValue, RefEdit, RefLog};
use gix::refs::{FullName, Target};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A failure of the local store, naming what was being done and on which repository.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{action} in {dir}: {detail}")]
    Git {
        action: &'static str,
        dir: PathBuf,
        detail: String,
    },
    #[error("ref {name} in {dir} moved: expected {expected:?}, found {found:?}")]
    RefMoved {
        name: String,
        dir: PathBuf,
        expected: Option<ObjectId>,
        found: Option<ObjectId>,
    },
    #[error("path {path:?} cannot be written: {problem}")]
    BadPath { path: String, problem: &'static str },
    #[error("cannot sign a commit in {dir}: {source}")]
    Sign {
        dir: PathBuf,
        source: super::signing::SigningError,
    },
}

/// A person and a time, for the author and committer lines of a commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    pub name: String,
    pub email: String,
    pub time: jiff::Timestamp,
}

impl Signature {
    fn to_gix(&self) -> gix::actor::Signature {
        gix::actor::Signature {
            name: self.name.as_str().into(),
            email: self.email.as_str().into(),
            time: gix::date::Time::new(self.time.as_second(), 0),
        }
    }
}

/// Bytes of decoded objects each pooled handle keeps (trees and blobs read recently).
const OBJECT_CACHE_BYTES: usize = 4 << 20;

/// Handles kept for reuse, at most (one per thread reading or writing at the same time).
const POOLED_HANDLES: usize = 4;

/// A pooled repository handle; goes back to the pool when dropped.
pub(super) struct Local<'a> {
    repo: Option<gix::Repository>,
    pool: &'a std::sync::Mutex<Vec<gix::Repository>>,
}

impl std::ops::Deref for Local<'_> {
    type Target = gix::Repository;

    fn deref(&self) -> &gix::Repository {
        self.repo.as_ref().expect("present until dropped")
    }
}

impl Drop for Local<'_> {
    fn drop(&mut self) {
        let mut pool = self
            .pool
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(repo) = self.repo.take()
            && pool.len() < POOLED_HANDLES
        {
            pool.push(repo);
        }
    }
}

/// One bare repository caching one remote.
pub struct Store {
    repo: gix::ThreadSafeRepository,
    /// Thread-local handles with their object caches, reused across calls (see `local`).
    handles: std::sync::Mutex<Vec<gix::Repository>>,
    dir: PathBuf,
    /// Signs every commit this store writes, when set (replaced when the key rotates).
    signer: std::sync::RwLock<Option<std::sync::Arc<super::signing::SshSigner>>>,
    /// The folder indexes of recent commits (the workspace of windows and snapshots, and the
    /// decisions' view of what was pushed).
    pub(super) indexes: super::apply::FolderIndexes,
}

impl Store {
    /// Opens the cache of `url` under `state_dir`, creating an empty bare repository the first
    /// time. The directory name is a hash of the normalized URL, so it never holds credentials.
    pub fn open(state_dir: &Path, url: &NormalizedUrl) -> Result<Self, StoreError> {
        let digest = Sha256::digest(url.as_str().as_bytes());
        let name: String = digest.iter().take(10).map(|b| format!("{b:02x}")).collect();
        let dir = state_dir.join("repos").join(name);
        Self::open_dir(&dir)
    }

    /// Opens (or creates) a bare repository at `dir`. What a crash (SIGKILL) can leave behind
    /// is cleared first — lock files, temporary and half-moved packs, refs to objects that never
    /// landed — and a cache that cannot be opened is moved aside and started anew: it is only a
    /// cache, the remote is the record, and the next fetch fills it again.
    pub fn open_dir(dir: &Path) -> Result<Self, StoreError> {
        let fail = |action, e: &dyn std::fmt::Display| StoreError::Git {
            action,
            dir: dir.to_path_buf(),
            detail: e.to_string(),
        };
        if dir.join("HEAD").exists() {
            let cleared = clear_crash_leftovers(dir);
            if !cleared.is_empty() {
                tracing::warn!(cache = %dir.display(), cleared = %cleared.join(", "),
                    "removed what an interrupted run left in the cache");
            }
        }
        let opened = if dir.join("HEAD").exists() {
            match gix::open(dir) {
                Ok(repo) => Some(repo),
                Err(e) => {
                    let aside = dir
                        .with_extension(format!("damaged-{}", jiff::Timestamp::now().as_second()));
                    tracing::warn!(cache = %dir.display(), error = %e, moved_to = %aside.display(),
                        "the cache is damaged; moved aside and rebuilt from the remote");
                    std::fs::rename(dir, &aside)
                        .map_err(|e| fail("moving a damaged cache aside", &e))?;
                    None
                }
            }
        } else {
            None
        };
        let repo = if let Some(repo) = opened {
            drop_dangling_refs(&repo);
            repo
        } else {
            std::fs::create_dir_all(dir).map_err(|e| fail("creating the cache directory", &e))?;
            gix::init_bare(dir).map_err(|e| fail("creating the cache", &e))?
        };
        Ok(Self {
            repo: repo.into_sync(),
            handles: std::sync::Mutex::new(Vec::new()),
            dir: dir.to_path_buf(),
            signer: std::sync::RwLock::new(None),
            indexes: super::apply::FolderIndexes::default(),
        })
    }

    /// Signs every commit written from now on with `signer` (`None`: unsigned).
    pub fn with_signer(self, signer: Option<std::sync::Arc<super::signing::SshSigner>>) -> Self {
        self.set_signer(signer);
        self
    }

    /// Replaces the signer for the commits written from now on.
    pub fn set_signer(&self, signer: Option<std::sync::Arc<super::signing::SshSigner>>) {
        // A panic while holding the lock leaves an Option: still usable.
        *self
            .signer
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = signer;
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A handle on the repository with an object cache, taken from the pool (or made) and put
    /// back when dropped. Reading a file walks the same upper trees every time (the root, the
    /// folder, the namespace): with a fresh handle per call each walk opened and inflated them
    /// again from loose objects — about 2,000 loose-object reads a second at 500 changes/s.
    /// Objects never change under their id, so a cached one is never stale.
    pub(super) fn local(&self) -> Local<'_> {
        let pooled = self
            .handles
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop();
        let repo = pooled.unwrap_or_else(|| {
            let mut repo = self.repo.to_thread_local();
            repo.object_cache_size(OBJECT_CACHE_BYTES);
            repo
        });
        Local {
            repo: Some(repo),
            pool: &self.handles,
        }
    }

    pub(super) fn fail(&self, action: &'static str, e: impl std::fmt::Display) -> StoreError {
        StoreError::Git {
            action,
            dir: self.dir.clone(),
            detail: e.to_string(),
        }
    }

    /// The commit a ref points to, if the ref exists.
    pub fn resolve(&self, name: &str) -> Result<Option<ObjectId>, StoreError> {
        let repo = self.local();
        match repo.try_find_reference(name) {
            Ok(Some(mut r)) => r
                .peel_to_id()
                .map(|id| Some(id.detach()))
                .map_err(|e| self.fail("resolving a ref", e)),
            Ok(None) => Ok(None),
            Err(e) => Err(self.fail("finding a ref", e)),
        }
    }

    /// Sets `name` to `new` if it currently is `expected` (`None`: must not exist).
    pub fn update_ref(
        &self,
        name: &str,
        new: ObjectId,
        expected: Option<ObjectId>,
    ) -> Result<(), StoreError> {
        let repo = self.local();
        let full: FullName = name.try_into().map_err(|e| self.fail("naming a ref", e))?;
        let previous = match expected {
            Some(id) => PreviousValue::MustExistAndMatch(Target::Object(id)),
            None => PreviousValue::MustNotExist,
        };
        let edit = RefEdit {
            change: Change::Update {
                log: LogChange {
                    mode: RefLog::AndReference,
                    force_create_reflog: false,
                    message: "gitops-reverser".into(),
                },
                expected: previous,
                new: Target::Object(new),
            },
            name: full,
            deref: false,
        };
        repo.edit_reference(edit).map(|_| ()).map_err(|e| {
            // Only a ref that really moved is contention; anything else (a lock file left
            // behind, a broken cache) is reported as the failure it is.
            match self.resolve(name) {
                Ok(found) if found != expected => StoreError::RefMoved {
                    name: name.to_string(),
                    dir: self.dir.clone(),
                    expected,
                    found,
                },
                _ => self.fail("updating a ref", e),
            }
        })
    }

    /// Sets `name` to `new` whatever it was (for remote-tracking refs after a fetch).
    pub fn force_ref(&self, name: &str, new: ObjectId) -> Result<(), StoreError> {
        let repo = self.local();
        repo.reference(name, new, PreviousValue::Any, "gitops-reverser")
            .map(|_| ())
            .map_err(|e| self.fail("setting a ref", e))
    }

    /// The bytes of `path` at `commit` (`None` if the commit is `None` or has no such file).
    pub fn read_file(
        &self,
        commit: Option<ObjectId>,
        path: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(commit) = commit else {
            return Ok(None);
        };
        let repo = self.local();
        let tree = self.tree_of(&repo, commit)?;
        let Some(entry) = tree
            .lookup_entry_by_path(path)
            .map_err(|e| self.fail("looking up a file", e))?
        else {
            return Ok(None);
        };
        if !entry.mode().is_blob() {
            return Ok(None);
        }
        let blob = repo
            .find_blob(entry.object_id())
            .map_err(|e| self.fail("reading a file", e))?;
        Ok(Some(blob.data.clone()))
    }

    pub(super) fn tree_of<'r>(
        &self,
        repo: &'r gix::Repository,
        commit: ObjectId,
    ) -> Result<gix::Tree<'r>, StoreError> {
        repo.find_commit(commit)
            .and_then(|c| c.tree())
            .map_err(|e| self.fail("reading a commit's tree", e))
    }

    /// The tree id of `folder` at `commit` (`None`: no such folder).
    pub fn folder_tree(
        &self,
        commit: Option<ObjectId>,
        folder: &str,
    ) -> Result<Option<ObjectId>, StoreError> {
        let Some(commit) = commit else {
            return Ok(None);
        };
        let repo = self.local();
        let root = self.tree_of(&repo, commit)?;
        Ok(root
            .lookup_entry_by_path(folder)
            .map_err(|e| self.fail("looking up a folder", e))?
            .filter(|entry| entry.mode().is_tree())
            .map(|entry| entry.object_id()))
    }

    /// The bytes of a blob (`None` when the cache lacks it).
    pub fn read_blob(&self, id: ObjectId) -> Option<Vec<u8>> {
        self.local()
            .find_blob(id)
            .ok()
            .map(|blob| blob.data.clone())
    }

    /// Every file under `folder` at `commit`, as path (from the repository root) → blob id.
    pub fn folder_files(
        &self,
        commit: Option<ObjectId>,
        folder: &str,
    ) -> Result<BTreeMap<String, ObjectId>, StoreError> {
        let mut out = BTreeMap::new();
        let Some(commit) = commit else { return Ok(out) };
        let repo = self.local();
        let root = self.tree_of(&repo, commit)?;
        let tree = match root
            .lookup_entry_by_path(folder)
            .map_err(|e| self.fail("looking up a folder", e))?
        {
            Some(entry) if entry.mode().is_tree() => repo
                .find_tree(entry.object_id())
                .map_err(|e| self.fail("reading a folder", e))?,
            _ => return Ok(out),
        };
        let mut stack = vec![(folder.to_string(), tree)];
        while let Some((prefix, tree)) = stack.pop() {
            for entry in tree.iter() {
                let entry = entry.map_err(|e| self.fail("reading a tree entry", e))?;
                let path = format!("{prefix}/{}", entry.filename().to_str_lossy());
                if entry.mode().is_tree() {
                    let sub = repo
                        .find_tree(entry.oid())
                        .map_err(|e| self.fail("reading a folder", e))?;
                    stack.push((path, sub));
                } else if entry.mode().is_blob() {
                    out.insert(path, entry.oid().to_owned());
                }
            }
        }
        Ok(out)
    }

    /// Writes a commit on top of `parent` that sets each file to its new state (`None`
    /// removes it). A file that already has that content is left alone; when nothing differs,
    /// no commit is made and `None` comes back. Returns the commit and the files it changed.
    pub fn commit_files(
        &self,
        parent: Option<ObjectId>,
        files: &[(&str, Option<&[u8]>)],
        author: &Signature,
        committer: &Signature,
        message: &str,
    ) -> Result<Option<(ObjectId, Vec<String>)>, StoreError> {
        let repo = self.local();
        let base = match parent {
            Some(commit) => self.tree_of(&repo, commit)?,
            None => repo.empty_tree(),
        };
        let mut editor = base.edit().map_err(|e| self.fail("editing a tree", e))?;
        let mut changed = Vec::new();
        for (path, content) in files {
            check_path(path)?;
            let current = base
                .lookup_entry_by_path(*path)
                .map_err(|e| self.fail("looking up a file", e))?
                .map(|e| (e.mode().is_blob(), e.object_id()));
            match content {
                Some(bytes) => {
                    let id =
                        gix::objs::compute_hash(repo.object_hash(), gix::objs::Kind::Blob, bytes)
                            .map_err(|e| self.fail("hashing a file", e))?;
                    if current == Some((true, id)) {
                        continue;
                    }
                    // A re-encrypted Secret with the same value keeps the file Git holds.
                    if let Some((true, old)) = current
                        && repo
                            .find_blob(old)
                            .is_ok_and(|b| crate::secrets::same_sealed(&b.data, bytes))
                    {
                        continue;
                    }
                    repo.write_blob(bytes)
                        .map_err(|e| self.fail("writing a file", e))?;
                    editor
                        .upsert(*path, EntryKind::Blob, id)
                        .map_err(|e| self.fail("placing a file", e))?;
                }
                None => {
                    if current.is_none() {
                        continue;
                    }
                    editor
                        .remove(*path)
                        .map_err(|e| self.fail("removing a file", e))?;
                }
            }
            changed.push(path.to_string());
        }
        if changed.is_empty() {
            return Ok(None);
        }
        let tree = editor
            .write()
            .map_err(|e| self.fail("writing a tree", e))?
            .detach();
        let commit = self.write_commit(&repo, tree, parent, author, committer, message)?;
        Ok(Some((commit, changed)))
    }

    /// Writes a commit object (no ref is touched).
    pub fn commit_tree(
        &self,
        tree: ObjectId,
        parent: Option<ObjectId>,
        author: &Signature,
        committer: &Signature,
        message: &str,
    ) -> Result<ObjectId, StoreError> {
        self.write_commit(&self.local(), tree, parent, author, committer, message)
    }

    pub(super) fn write_commit(
        &self,
        repo: &gix::Repository,
        tree: ObjectId,
        parent: Option<ObjectId>,
        author: &Signature,
        committer: &Signature,
        message: &str,
    ) -> Result<ObjectId, StoreError> {
        let mut commit = gix::objs::Commit {
            tree,
            parents: parent.into_iter().collect(),
            author: author.to_gix(),
            committer: committer.to_gix(),
            encoding: None,
            message: message.into(),
            extra_headers: Vec::new(),
        };
        let signer = self
            .signer
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        if let Some(signer) = signer {
            // The signature covers the commit as written without it; git verifies it after
            // taking the `gpgsig` header out again.
            let mut payload = Vec::new();
            gix::objs::WriteTo::write_to(&commit, &mut payload)
                .map_err(|e| self.fail("encoding a commit", e))?;
            let signature = signer.sign(&payload).map_err(|source| StoreError::Sign {
                dir: self.dir.clone(),
                source,
            })?;
            commit
                .extra_headers
                .push(("gpgsig".into(), signature.into()));
        }
        repo.write_object(commit)
            .map(|id| id.detach())
            .map_err(|e| self.fail("writing a commit", e))
    }

    /// The tree of a commit.
    pub fn tree_id(&self, commit: ObjectId) -> Result<ObjectId, StoreError> {
        let repo = self.local();
        Ok(self.tree_of(&repo, commit)?.id)
    }

    /// Every value of trailer `key` in the messages of `tip` and its ancestors.
    pub fn trailer_values(
        &self,
        tip: Option<ObjectId>,
        key: &str,
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        let mut values = std::collections::HashSet::new();
        let repo = self.local();
        let mut stack: Vec<ObjectId> = tip.into_iter().collect();
        let mut seen = std::collections::HashSet::new();
        let prefix = format!("{key}: ");
        while let Some(id) = stack.pop() {
            if !seen.insert(id) {
                continue;
            }
            let commit = repo
                .find_commit(id)
                .map_err(|e| self.fail("reading history", e))?;
            let message = commit.message_raw_sloppy().to_str_lossy();
            values.extend(
                message
                    .lines()
                    .filter_map(|l| l.strip_prefix(&prefix))
                    .map(|v| v.trim().to_string()),
            );
            stack.extend(commit.parent_ids().map(|p| p.detach()));
        }
        Ok(values)
    }

    /// The parents of a commit.
    pub fn parents(&self, commit: ObjectId) -> Result<Vec<ObjectId>, StoreError> {
        let repo = self.local();
        let c = repo
            .find_commit(commit)
            .map_err(|e| self.fail("reading a commit", e))?;
        Ok(c.parent_ids().map(|id| id.detach()).collect())
    }
}

pub use super::snapshot_commit::{SnapshotCommit, SnapshotStats};

/// Removes what an interrupted process leaves in a bare repository: ref and config lock files,
/// this engine's temporary pack and index files, and packs whose index was never moved into
/// place. Returns what it removed (relative paths).
fn clear_crash_leftovers(dir: &Path) -> Vec<String> {
    let mut removed = Vec::new();
    let mut remove = |path: &Path| {
        if std::fs::remove_file(path).is_ok() {
            removed.push(path.strip_prefix(dir).unwrap_or(path).display().to_string());
        }
    };
    for name in [
        "HEAD.lock",
        "config.lock",
        "packed-refs.lock",
        "index.lock",
        "shallow.lock",
    ] {
        let path = dir.join(name);
        if path.exists() {
            remove(&path);
        }
    }
    let mut stack = vec![dir.join("refs")];
    while let Some(at) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&at) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "lock") {
                remove(&path);
            }
        }
    }
    let packs = dir.join("objects").join("pack");
    if let Ok(entries) = std::fs::read_dir(&packs) {
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let orphan_pack = path.extension().is_some_and(|e| e == "pack")
                && !path.with_extension("idx").exists();
            if name.starts_with("tmp_pack_gr_") || name.starts_with("tmp_idx_gr_") || orphan_pack {
                remove(&path);
            }
        }
    }
    removed
}

/// Deletes refs whose commit is not in the cache (written just before a crash took the objects);
/// the next fetch sets them again.
fn drop_dangling_refs(repo: &gix::Repository) {
    let Ok(platform) = repo.references() else {
        return;
    };
    let Ok(all) = platform.all() else {
        return;
    };
    let dangling: Vec<gix::Reference<'_>> = all
        .flatten()
        .filter(|r| {
            r.try_id()
                .is_some_and(|id| repo.find_object(id.detach()).is_err())
        })
        .collect();
    for r in dangling {
        let name = r.name().as_bstr().to_string();
        match r.delete() {
            Ok(()) => tracing::warn!(git_ref = %name, "removed a ref to a commit the cache lacks"),
            Err(e) => tracing::warn!(git_ref = %name, error = %e, "cannot remove a dangling ref"),
        }
    }
}

/// Paths are written from the repository root with `/` separators; anything that could leave
/// the repository or hide in `.git` is refused.
pub(super) fn check_path(path: &str) -> Result<(), StoreError> {
    let bad = |problem| {
        Err(StoreError::BadPath {
            path: path.to_string(),
            problem,
        })
    };
    if path.is_empty() || path.starts_with('/') || path.ends_with('/') {
        return bad("must be a relative file path");
    }
    if path
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == ".." || s.eq_ignore_ascii_case(".git"))
    {
        return bad("must not contain empty, `.`, `..` or `.git` segments");
    }
    if path.contains('\0') {
        return bad("must not contain NUL");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("gr-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn who(name: &str, second: i64) -> Signature {
        Signature {
            name: name.into(),
            email: format!("{name}@example.com"),
            time: jiff::Timestamp::from_second(second).unwrap(),
        }
    }

    #[test]
    fn commits_edit_trees_in_memory_and_skip_files_that_already_match() {
        let dir = scratch("commit");
        let store = Store::open_dir(&dir).unwrap();
        let (alice, agent) = (who("alice", 1_800_000_000), who("agent", 1_800_000_100));
        let (first, changed) = store
            .commit_files(
                None,
                &[
                    ("apps/a.yaml", Some(b"a: 1\n")),
                    ("apps/x/b.yaml", Some(b"b\n")),
                ],
                &alice,
                &agent,
                "first",
            )
            .unwrap()
            .unwrap();
        assert_eq!(changed, ["apps/a.yaml", "apps/x/b.yaml"]);
        store.update_ref("refs/heads/main", first, None).unwrap();
        assert_eq!(
            store
                .read_file(Some(first), "apps/a.yaml")
                .unwrap()
                .as_deref(),
            Some(&b"a: 1\n"[..])
        );

        // Same content again: nothing to commit.
        assert!(
            store
                .commit_files(
                    Some(first),
                    &[("apps/a.yaml", Some(b"a: 1\n"))],
                    &alice,
                    &agent,
                    "noop"
                )
                .unwrap()
                .is_none()
        );
        // Removing a missing file: nothing either.
        assert!(
            store
                .commit_files(
                    Some(first),
                    &[("apps/zz.yaml", None)],
                    &alice,
                    &agent,
                    "noop"
                )
                .unwrap()
                .is_none()
        );

        let (second, changed) = store
            .commit_files(
                Some(first),
                &[("apps/a.yaml", Some(b"a: 2\n")), ("apps/x/b.yaml", None)],
                &alice,
                &agent,
                "second",
            )
            .unwrap()
            .unwrap();
        assert_eq!(changed.len(), 2);
        assert_eq!(store.parents(second).unwrap(), [first]);
        let files = store.folder_files(Some(second), "apps").unwrap();
        assert_eq!(files.keys().collect::<Vec<_>>(), ["apps/a.yaml"]);

        // Compare-and-swap: a stale expectation is refused and says so.
        store
            .update_ref("refs/heads/main", second, Some(first))
            .unwrap();
        let err = store
            .update_ref("refs/heads/main", first, Some(first))
            .unwrap_err();
        assert!(
            matches!(err, StoreError::RefMoved { found: Some(f), .. } if f == second),
            "{err}"
        );
        assert_eq!(store.resolve("refs/heads/main").unwrap(), Some(second));
        assert_eq!(store.resolve("refs/heads/nope").unwrap(), None);
        // A lock left behind (a crash) is not contention: the error says what failed.
        std::fs::write(store.dir().join("refs/heads/main.lock"), b"").unwrap();
        let err = store
            .update_ref("refs/heads/main", first, Some(second))
            .unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Git {
                    action: "updating a ref",
                    ..
                }
            ),
            "{err}"
        );
        std::fs::remove_file(store.dir().join("refs/heads/main.lock")).unwrap();

        // The author and committer are the ones given, with their times.
        let out = std::process::Command::new("git")
            .args([
                "--git-dir",
                dir.to_str().unwrap(),
                "log",
                "-1",
                "--format=%an <%ae> %at|%cn %ct|%s",
                "main",
            ])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "alice <alice@example.com> 1800000000|agent 1800000100|second"
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn hostile_paths_are_refused() {
        let dir = scratch("paths");
        let store = Store::open_dir(&dir).unwrap();
        let sig = who("a", 0);
        for path in [
            "",
            "/abs",
            "a/../b",
            "a//b",
            ".git/config",
            "a/.GIT/x",
            "dir/",
        ] {
            let err = store
                .commit_files(None, &[(path, Some(b"x"))], &sig, &sig, "m")
                .unwrap_err();
            assert!(matches!(err, StoreError::BadPath { .. }), "{path}: {err}");
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    /// What a SIGKILL can leave behind never blocks the next start: stale locks, temporary and
    /// half-moved packs and refs to missing commits are cleared; a cache that does not open at
    /// all is moved aside and started anew.
    #[test]
    fn a_crashed_cache_is_cleared_or_rebuilt_at_open() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("cache.git");
        let store = Store::open_dir(&dir).unwrap();
        let agent = Signature {
            name: "a".into(),
            email: "a@x".into(),
            time: jiff::Timestamp::UNIX_EPOCH,
        };
        let (first, _) = store
            .commit_files(
                None,
                &[("a.yaml", Some(b"a: 1\n"))],
                &agent,
                &agent,
                "first",
            )
            .unwrap()
            .unwrap();
        store.update_ref("refs/heads/main", first, None).unwrap();
        drop(store);
        for leftover in [
            "refs/heads/main.lock",
            "packed-refs.lock",
            "objects/pack/tmp_pack_gr_1_2",
            "objects/pack/tmp_idx_gr_1_2",
            "objects/pack/pack-0123.pack",
        ] {
            std::fs::write(dir.join(leftover), b"partial").unwrap();
        }
        std::fs::write(
            dir.join("refs/heads/ghost"),
            b"1111111111111111111111111111111111111111\n",
        )
        .unwrap();
        let store = Store::open_dir(&dir).unwrap();
        assert!(!dir.join("refs/heads/main.lock").exists());
        assert!(!dir.join("objects/pack/pack-0123.pack").exists());
        assert!(!dir.join("objects/pack/tmp_pack_gr_1_2").exists());
        assert_eq!(store.resolve("refs/heads/ghost").unwrap(), None);
        assert_eq!(store.resolve("refs/heads/main").unwrap(), Some(first));
        store
            .update_ref("refs/heads/main", first, Some(first))
            .unwrap();
        drop(store);

        // A cache that does not open is moved aside; a fresh one takes its place.
        std::fs::write(dir.join("config"), b"[core\n\tbare = maybe = no\n").unwrap();
        let store = Store::open_dir(&dir).unwrap();
        assert_eq!(store.resolve("refs/heads/main").unwrap(), None);
        let aside = std::fs::read_dir(tmp.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains("damaged-"))
            .count();
        assert_eq!(aside, 1);
    }

    #[test]
    fn snapshots_write_the_difference_as_one_commit() {
        let dir = scratch("snapshot");
        let store = Store::open_dir(&dir).unwrap();
        let agent = who("agent", 1_800_000_000);
        let files = |pairs: &[(&str, &str)]| -> Vec<(String, Vec<u8>)> {
            pairs
                .iter()
                .map(|(p, c)| (p.to_string(), c.as_bytes().to_vec()))
                .collect()
        };
        // Something outside the folder, and a marker inside it, must survive.
        let (base, _) = store
            .commit_files(
                None,
                &[("README.md", Some(b"hi")), ("apps/.marker", Some(b"m"))],
                &agent,
                &agent,
                "base",
            )
            .unwrap()
            .unwrap();
        let keep = |p: &str| p == ".marker";
        let (first, stats) = store
            .snapshot(
                Some(base),
                "apps",
                files(&[
                    ("shop/core/configmaps/a.yaml", "a"),
                    ("shop/apps/deployments/web.yaml", "w"),
                    ("_cluster/core/namespaces/shop.yaml", "n"),
                ]),
                keep,
                SnapshotCommit {
                    agent: &agent,
                    notes: &[],
                    extra: None,
                    subject: None,
                },
            )
            .unwrap()
            .unwrap();
        assert_eq!((stats.added, stats.updated, stats.removed), (3, 0, 0));
        let again = store
            .snapshot(
                Some(first),
                "apps",
                files(&[
                    ("shop/core/configmaps/a.yaml", "a"),
                    ("shop/apps/deployments/web.yaml", "w"),
                    ("_cluster/core/namespaces/shop.yaml", "n"),
                ]),
                keep,
                SnapshotCommit {
                    agent: &agent,
                    notes: &[],
                    extra: None,
                    subject: None,
                },
            )
            .unwrap();
        assert!(again.is_none(), "same content: no commit");
        let (second, stats) = store
            .snapshot(
                Some(first),
                "apps",
                files(&[
                    ("shop/core/configmaps/a.yaml", "a2"),
                    ("shop/core/configmaps/b.yaml", "b"),
                ]),
                keep,
                SnapshotCommit {
                    agent: &agent,
                    notes: &[],
                    extra: None,
                    subject: None,
                },
            )
            .unwrap()
            .unwrap();
        assert_eq!(
            (stats.added, stats.updated, stats.removed, stats.unchanged),
            (1, 1, 2, 0)
        );
        let listed: Vec<String> = store
            .folder_files(Some(second), "apps")
            .unwrap()
            .into_keys()
            .collect();
        assert_eq!(
            listed,
            [
                "apps/.marker",
                "apps/shop/core/configmaps/a.yaml",
                "apps/shop/core/configmaps/b.yaml"
            ]
        );
        assert_eq!(
            store
                .read_file(Some(second), "README.md")
                .unwrap()
                .as_deref(),
            Some(&b"hi"[..])
        );
        store.update_ref("refs/heads/main", second, None).unwrap();
        let git = |args: &[&str]| {
            let out = std::process::Command::new("git")
                .arg("--git-dir")
                .arg(&dir)
                .args(args)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        git(&["fsck", "--strict"]);
        assert_eq!(
            git(&["log", "-1", "--format=%s", "main"]).trim(),
            "reconcile: 1 added, 1 updated, 2 removed"
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
