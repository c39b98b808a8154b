//! A change on its way to Git: the whole new state of one file (or its removal), who made it
//! and when, and how a commit message describes a group of them.

use crate::identity::{Author, IMPERSONATOR_TRAILER, USER_TRAILER, trailer_value};
use crate::manifest::{ContentHash, ObjectIdentity};
use jiff::Timestamp;
use std::sync::Arc;

/// The whole new state of one file in the repository (a replay, never a merge).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileChange {
    /// Path from the repository root, inside the destination folder.
    pub path: String,
    /// The new bytes; `None` removes the file.
    pub content: Option<Arc<[u8]>>,
    /// The content hash of the object written, for the commit trailer.
    pub hash: Option<ContentHash>,
    /// One line saying what happened: `update apps/v1 Deployment shop/web`.
    pub summary: String,
    /// The object's namespace, for the subject of a grouped commit.
    pub namespace: Option<String>,
    /// The live object the content was rendered from, when known: if another writer put a
    /// different file at `path` meanwhile (a person's hand-written file, Flux's source), the
    /// change is dropped when that file is equivalent to this object (server defaults,
    /// quantity spellings), so a human-written file is never rewritten.
    pub live: Option<Arc<serde_json::Value>>,
    /// The object the file holds, when it is one: its document is then found wherever the
    /// folder has it (edited in place, or removed from its file), and `path` only places a new
    /// one. `None`: `path` is the whole file.
    pub object: Option<ObjectIdentity>,
    /// `path` is a bundle file that holds several objects (a new object is added to it).
    pub bundle: bool,
}

impl FileChange {
    /// What a commit window keeps the last state of: the object, or the file.
    pub fn key(&self) -> String {
        match &self.object {
            Some(id) => id.key(),
            None => self.path.clone(),
        }
    }
}

/// The trailer naming the audit event of each change in a commit.
pub const AUDIT_ID_TRAILER: &str = "Audit-ID";

/// One change by one person, as it enters a commit window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The destination folder the file belongs to.
    pub folder: String,
    /// The destination that writes the folder, `namespace/name` (for the ownership marker).
    pub destination: String,
    pub author: Author,
    /// The Kubernetes user name, for the trailer.
    pub user: Option<String>,
    /// Who impersonated `user`, if anyone.
    pub impersonator: Option<String>,
    /// The audit ID of the request that made the change, when known (a trailer, so that a
    /// replay of the same log recognises what is already recorded).
    pub audit_id: Option<String>,
    /// When the change was received (the author date).
    pub received: Timestamp,
    pub file: FileChange,
}

/// Builds the commit message of a group of changes by one author in one folder: a subject that
/// says what changed, a body listing each change, and trailers with each written object's hash
/// and the person's Kubernetes identity.
pub fn commit_message(changes: &[Change]) -> String {
    let Some(first) = changes.first() else {
        return "no changes\n".to_string();
    };
    let subject = if changes.len() == 1 {
        first.file.summary.clone()
    } else {
        let who = first.user.as_deref().unwrap_or(&first.author.name);
        let namespaces: std::collections::BTreeSet<_> = changes
            .iter()
            .map(|c| c.file.namespace.as_deref())
            .collect();
        let place = match namespaces.iter().next() {
            Some(Some(ns)) if namespaces.len() == 1 => (*ns).to_string(),
            _ => first.folder.clone(),
        };
        format!("{who}: {} changes in {place}", changes.len())
    };
    let mut message = format!("{subject}\n\n");
    for change in changes {
        message.push_str(&format!("- {}\n", change.file.summary));
    }
    message.push('\n');
    for change in changes {
        if let Some(id) = &change.audit_id {
            message.push_str(&format!("{AUDIT_ID_TRAILER}: {}\n", trailer_value(id)));
        }
    }
    for change in changes {
        if let Some(hash) = change.file.hash {
            message.push_str(&format!("Content-Hash: {} {hash}\n", change.file.path));
        }
    }
    if let Some(user) = &first.user {
        message.push_str(&format!("{USER_TRAILER}: {}\n", trailer_value(user)));
    }
    if let Some(impersonator) = &first.impersonator {
        message.push_str(&format!(
            "{IMPERSONATOR_TRAILER}: {}\n",
            trailer_value(impersonator)
        ));
    }
    message
}
