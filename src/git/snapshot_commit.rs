//! Writing a snapshot commit (an initial reconcile): a folder made to hold exactly a set of
//! files, every new object in one pack, the folder's trees built bottom-up; what it changed.

use super::store::{Signature, Store, StoreError, check_path};
use gix::ObjectId;
use gix::object::tree::EntryKind;
use std::collections::BTreeMap;

/// What a snapshot changed in its folder.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SnapshotStats {
    pub added: usize,
    pub updated: usize,
    pub removed: usize,
    pub unchanged: usize,
}

impl SnapshotStats {
    pub fn is_empty(&self) -> bool {
        self.added + self.updated + self.removed == 0
    }

    /// The commit message of a snapshot: `reconcile: N added, M updated, K removed`.
    pub fn message(&self) -> String {
        format!(
            "reconcile: {} added, {} updated, {} removed",
            self.added, self.updated, self.removed
        )
    }
}

/// How a snapshot commit is written: by whom, with what note in its body, and the extra file
/// (the ownership marker) written only along with a real change.
pub struct SnapshotCommit<'a> {
    pub agent: &'a Signature,
    /// Lines of the commit body (what was not pruned and why).
    pub notes: &'a [String],
    pub extra: Option<(&'a str, &'a [u8])>,
    /// The subject line, when the caller counts better than files (documents); else
    /// [`SnapshotStats::message`].
    pub subject: Option<String>,
}

impl Store {
    /// Makes `folder` hold exactly `files` (paths relative to the folder → bytes), plus the
    /// existing files for which `keep` says so (the ownership marker), as one commit on top of
    /// `parent`. New objects go into one pack. Returns `None` when the folder already has
    /// exactly that content. `extra` (the refreshed marker) is written only along with a real
    /// change. The agent is author and committer; the message is [`SnapshotStats::message`].
    pub fn snapshot(
        &self,
        parent: Option<ObjectId>,
        folder: &str,
        files: impl IntoIterator<Item = (String, Vec<u8>)>,
        keep: impl Fn(&str) -> bool,
        commit: SnapshotCommit<'_>,
    ) -> Result<Option<(ObjectId, SnapshotStats)>, StoreError> {
        let SnapshotCommit {
            agent,
            notes,
            extra,
            subject,
        } = commit;
        check_path(folder)?;
        let existing = self.folder_files(parent, folder)?;
        let prefix = format!("{folder}/");
        let mut pack = super::pack::PackWriter::new(self.dir())
            .map_err(|e| self.fail("starting a pack", e))?;
        let mut wanted: BTreeMap<String, ObjectId> = BTreeMap::new();
        let mut stats = SnapshotStats::default();
        let repo = self.local();
        for (relative, bytes) in files {
            let path = format!("{prefix}{relative}");
            check_path(&path)?;
            let mut id =
                gix::objs::compute_hash(gix::hash::Kind::Sha1, gix::objs::Kind::Blob, &bytes)
                    .map_err(|e| self.fail("hashing a file", e))?;
            // A re-encrypted Secret with the same value keeps the file Git holds.
            if let Some(old) = existing.get(&path)
                && *old != id
                && repo
                    .find_blob(*old)
                    .is_ok_and(|b| crate::secrets::same_sealed(&b.data, &bytes))
            {
                id = *old;
            }
            match existing.get(&path) {
                Some(old) if *old == id => stats.unchanged += 1,
                Some(_) => stats.updated += 1,
                None => stats.added += 1,
            }
            if existing.get(&path) != Some(&id) {
                pack.add(gix::objs::Kind::Blob, id, &bytes)
                    .map_err(|e| self.fail("packing a file", e))?;
            }
            wanted.insert(relative, id);
        }
        for (path, id) in &existing {
            let relative = &path[prefix.len()..];
            if wanted.contains_key(relative) {
                continue;
            }
            if keep(relative) {
                wanted.insert(relative.to_string(), *id);
            } else {
                stats.removed += 1;
            }
        }
        if stats.is_empty() {
            return Ok(None);
        }
        // Written only along with a real change (the ownership marker, refreshed).
        if let Some((relative, bytes)) = extra {
            let id = gix::objs::compute_hash(gix::hash::Kind::Sha1, gix::objs::Kind::Blob, bytes)
                .map_err(|e| self.fail("hashing a file", e))?;
            pack.add(gix::objs::Kind::Blob, id, bytes)
                .map_err(|e| self.fail("packing a file", e))?;
            wanted.insert(relative.to_string(), id);
        }
        let folder_tree = if wanted.is_empty() {
            None
        } else {
            Some(build_tree(&wanted, &mut pack).map_err(|e| self.fail("writing folder trees", e))?)
        };
        pack.finish()
            .map_err(|e| self.fail("finishing a pack", e))?;

        let repo = self.local();
        let base = match parent {
            Some(commit) => self.tree_of(&repo, commit)?,
            None => repo.empty_tree(),
        };
        let mut editor = base.edit().map_err(|e| self.fail("editing a tree", e))?;
        match folder_tree {
            Some(id) => editor.upsert(folder, EntryKind::Tree, id).map(|_| ()),
            None => editor.remove(folder).map(|_| ()),
        }
        .map_err(|e| self.fail("placing the folder", e))?;
        let tree = editor
            .write()
            .map_err(|e| self.fail("writing a tree", e))?
            .detach();
        let mut message = subject.unwrap_or_else(|| stats.message());
        if !notes.is_empty() {
            message.push('\n');
            for note in notes {
                message.push('\n');
                message.push_str(note);
            }
        }
        let commit = self.write_commit(&repo, tree, parent, agent, agent, &message)?;
        Ok(Some((commit, stats)))
    }
}

/// Writes the nested trees for `files` (relative paths, sorted) into `pack`; returns the root.
fn build_tree(
    files: &BTreeMap<String, ObjectId>,
    pack: &mut super::pack::PackWriter,
) -> Result<ObjectId, String> {
    // Directory → its direct entries; parents are filled in deepest first.
    let mut dirs: BTreeMap<String, Vec<gix::objs::tree::Entry>> = BTreeMap::new();
    dirs.insert(String::new(), Vec::new());
    for (path, id) in files {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        let mut at = String::new();
        for segment in dir.split('/').filter(|s| !s.is_empty()) {
            if !at.is_empty() {
                at.push('/');
            }
            at.push_str(segment);
            dirs.entry(at.clone()).or_default();
        }
        dirs.entry(dir.to_string())
            .or_default()
            .push(gix::objs::tree::Entry {
                mode: EntryKind::Blob.into(),
                filename: name.into(),
                oid: *id,
            });
    }
    let mut order: Vec<String> = dirs.keys().cloned().collect();
    order.sort_by_key(|d| std::cmp::Reverse(d.matches('/').count() + usize::from(!d.is_empty())));
    let mut buf = Vec::new();
    for dir in order {
        let mut entries = dirs.remove(&dir).unwrap_or_default();
        entries.sort();
        let tree = gix::objs::Tree { entries };
        buf.clear();
        gix::objs::WriteTo::write_to(&tree, &mut buf).map_err(|e| e.to_string())?;
        let id = gix::objs::compute_hash(gix::hash::Kind::Sha1, gix::objs::Kind::Tree, &buf)
            .map_err(|e| e.to_string())?;
        pack.add(gix::objs::Kind::Tree, id, &buf)
            .map_err(|e| e.to_string())?;
        if dir.is_empty() {
            return Ok(id);
        }
        let (parent, name) = dir.rsplit_once('/').unwrap_or(("", &dir));
        dirs.entry(parent.to_string())
            .or_default()
            .push(gix::objs::tree::Entry {
                mode: EntryKind::Tree.into(),
                filename: name.into(),
                oid: id,
            });
    }
    Err("no root tree".to_string())
}
