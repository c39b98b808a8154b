//! The index of a destination folder: every object document of every YAML file, found by its
//! identity, with the namespace a listing `kustomization.yaml` gives a document that names
//! none; and what cannot be read (files that do not parse, documents that are no object, one
//! object in two places) for reports. Compact: per document a 128-bit digest of its identity
//! and its place, not the document.

use super::kustomization::{Kustomization, is_kustomization};
use crate::manifest::ObjectIdentity;
use crate::manifest::documents::split;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

/// The version of a file's content (its Git blob id), so an index is updated file by file.
pub type FileVersion = [u8; 20];

/// An object's identity as the index keys it: the first 128 bits of the SHA-256 of
/// [`ObjectIdentity::key`] (never 0, which marks a document that is no object).
pub type Key = u128;

/// The index key of an identity.
pub fn key_of(id: &ObjectIdentity) -> Key {
    let digest = Sha256::digest(id.key().as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    u128::from_le_bytes(bytes).max(1)
}

/// Where one document is: its file (path from the repository root) and its position among the
/// file's documents.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Place {
    pub path: Arc<str>,
    pub doc: u32,
}

#[derive(Clone, Debug)]
struct FileEntry {
    version: FileVersion,
    /// The keys of the file's documents, in order (0: a document that is no object).
    keys: Box<[Key]>,
    /// The namespace its listing kustomization gives documents that name none.
    namespace: Option<Arc<str>>,
}

/// A folder's documents by identity.
#[derive(Clone, Debug, Default)]
pub struct FolderIndex {
    folder: String,
    files: BTreeMap<Arc<str>, FileEntry>,
    /// Every other file of the folder (kustomizations, READMEs, broken files) and its version.
    others: BTreeMap<Arc<str>, FileVersion>,
    /// Identity key → its first place in path order.
    objects: HashMap<Key, Place>,
    /// Identity keys found in more than one place → every place, in path order.
    duplicates: BTreeMap<Key, Vec<Place>>,
    /// Directory (from the repository root) → its kustomization's file name and content.
    kustomizations: BTreeMap<String, (String, Kustomization)>,
    /// Files that do not read as YAML → why.
    broken: BTreeMap<String, String>,
    /// Documents that are not objects (no kind, no name…) → why.
    unplaced: BTreeMap<String, String>,
}

/// Why a document has no identity.
#[derive(Debug, PartialEq, Eq)]
pub enum NoIdentity {
    /// It does not read as YAML.
    Unreadable(String),
    /// It reads, but is no object (no kind, no name, a kustomize file…).
    NotAnObject(String),
}

impl std::fmt::Display for NoIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoIdentity::Unreadable(why) | NoIdentity::NotAnObject(why) => f.write_str(why),
        }
    }
}

/// The first lines of a document: enough to know which object it is.
#[derive(Deserialize)]
struct Head {
    #[serde(rename = "apiVersion")]
    api_version: Option<String>,
    kind: Option<String>,
    metadata: Option<HeadMetadata>,
}

#[derive(Deserialize)]
struct HeadMetadata {
    name: Option<String>,
    namespace: Option<String>,
}

/// True for the files the index reads as manifests (YAML, and JSON, which YAML reads too).
pub fn is_manifest_path(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    (lower.ends_with(".yaml") || lower.ends_with(".yml") || lower.ends_with(".json"))
        && !is_kustomization(path)
}

/// The identity of one document's text, or why it has none. `inherited`: the namespace its
/// kustomization gives it when it names none. The document is read once, whole (so a syntax
/// error anywhere in it is found), into only the fields an identity needs.
pub fn identity_of(text: &str, inherited: Option<&str>) -> Result<ObjectIdentity, NoIdentity> {
    let head: Head =
        serde_saphyr::from_str(text).map_err(|e| NoIdentity::Unreadable(e.to_string()))?;
    let missing = |what: &str| NoIdentity::NotAnObject(format!("no {what}"));
    let api_version = head.api_version.ok_or_else(|| missing("apiVersion"))?;
    let kind = head.kind.ok_or_else(|| missing("kind"))?;
    let metadata = head.metadata.ok_or_else(|| missing("metadata"))?;
    let name = metadata.name.ok_or_else(|| missing("metadata.name"))?;
    let (group, _) = crate::manifest::object::split_api_version(&api_version);
    if group == "kustomize.config.k8s.io" {
        return Err(NoIdentity::NotAnObject(format!(
            "a kustomize {kind}, not an object"
        )));
    }
    let namespace = metadata
        .namespace
        .filter(|ns| !ns.is_empty())
        .or_else(|| inherited.map(str::to_string));
    Ok(ObjectIdentity {
        group: group.to_string(),
        kind,
        namespace,
        name,
    })
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(dir, _)| dir)
}

fn join(dir: &str, entry: &str) -> String {
    let mut parts: Vec<&str> = if dir.is_empty() {
        Vec::new()
    } else {
        dir.split('/').collect()
    };
    for part in entry.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    parts.join("/")
}

type Inheritance = HashMap<String, Arc<str>>;

impl FolderIndex {
    /// Indexes `files` (path from the repository root → version), all under `folder`, reading
    /// each with `load` once. Files that cannot be loaded count as broken.
    pub fn build(
        folder: &str,
        files: impl IntoIterator<Item = (String, FileVersion)>,
        load: &dyn Fn(&str) -> Option<Vec<u8>>,
    ) -> Self {
        let mut index = FolderIndex {
            folder: folder.to_string(),
            ..Default::default()
        };
        let files: BTreeMap<String, FileVersion> = files.into_iter().collect();
        for (path, version) in &files {
            if is_kustomization(path) {
                index.read_kustomization(path, load);
                index.others.insert(path.as_str().into(), *version);
            }
        }
        let inheritance = index.inheritance();
        for (path, version) in files {
            if is_kustomization(&path) {
                continue;
            }
            index.add_file(&path, version, inheritance.get(&path).cloned(), load);
        }
        index
    }

    fn read_kustomization(&mut self, path: &str, load: &dyn Fn(&str) -> Option<Vec<u8>>) {
        let text = load(path).and_then(|b| String::from_utf8(b).ok());
        match text.as_deref().and_then(Kustomization::parse) {
            Some(k) => {
                let name = path.rsplit('/').next().unwrap_or(path).to_string();
                self.kustomizations
                    .insert(parent(path).to_string(), (name, k));
            }
            None => {
                self.broken
                    .insert(path.to_string(), "does not read as a kustomization".into());
            }
        }
    }

    /// File → namespace: each kustomization's `namespace:` for the files it lists, through the
    /// folders it lists; an outer kustomization's namespace wins, as kustomize applies it last.
    fn inheritance(&self) -> Inheritance {
        let listed: BTreeSet<String> = self
            .kustomizations
            .iter()
            .flat_map(|(dir, (_, k))| k.local_resources().map(move |r| join(dir, &r)))
            .collect();
        let mut out = HashMap::new();
        let mut seen = BTreeSet::new();
        for dir in self.kustomizations.keys() {
            if !listed.contains(dir) {
                self.inherit(dir, None, &mut out, &mut seen);
            }
        }
        out
    }

    fn inherit(
        &self,
        dir: &str,
        outer: Option<&Arc<str>>,
        out: &mut Inheritance,
        seen: &mut BTreeSet<String>,
    ) {
        if !seen.insert(dir.to_string()) {
            return;
        }
        let Some((_, k)) = self.kustomizations.get(dir) else {
            return;
        };
        let own: Option<Arc<str>> = k.namespace.as_deref().map(Arc::from);
        let namespace = outer.cloned().or(own);
        for entry in k.local_resources() {
            let target = join(dir, &entry);
            if self.kustomizations.contains_key(&target) {
                self.inherit(&target, namespace.as_ref(), out, seen);
            } else if let Some(ns) = &namespace {
                out.insert(target, ns.clone());
            }
        }
    }

    fn add_file(
        &mut self,
        path: &str,
        version: FileVersion,
        namespace: Option<Arc<str>>,
        load: &dyn Fn(&str) -> Option<Vec<u8>>,
    ) {
        if !is_manifest_path(path) {
            self.others.insert(path.into(), version);
            return;
        }
        let Some(text) = load(path).and_then(|b| String::from_utf8(b).ok()) else {
            self.broken
                .insert(path.to_string(), "not UTF-8 text".into());
            self.others.insert(path.into(), version);
            return;
        };
        let mut keys = Vec::new();
        let mut unplaced = Vec::new();
        for (i, span) in split(&text).iter().enumerate() {
            match identity_of(span.of(&text), namespace.as_deref()) {
                Ok(id) => keys.push(key_of(&id)),
                Err(NoIdentity::Unreadable(why)) => {
                    self.broken
                        .insert(path.to_string(), format!("document {}: {why}", i + 1));
                    self.others.insert(path.into(), version);
                    return;
                }
                Err(NoIdentity::NotAnObject(why)) => {
                    unplaced.push(format!("document {}: {why}", i + 1));
                    keys.push(0);
                }
            }
        }
        if !unplaced.is_empty() {
            self.unplaced.insert(path.to_string(), unplaced.join("; "));
        }
        let path: Arc<str> = path.into();
        for (i, key) in keys.iter().enumerate() {
            if *key != 0 {
                self.place(
                    *key,
                    Place {
                        path: path.clone(),
                        doc: i as u32,
                    },
                );
            }
        }
        self.files.insert(
            path,
            FileEntry {
                version,
                keys: keys.into_boxed_slice(),
                namespace,
            },
        );
    }

    fn place(&mut self, key: Key, place: Place) {
        match self.objects.get_mut(&key) {
            None => {
                self.objects.insert(key, place);
            }
            Some(first) => {
                let places = self
                    .duplicates
                    .entry(key)
                    .or_insert_with(|| vec![first.clone()]);
                places.push(place);
                places.sort();
                *first = places[0].clone();
            }
        }
    }

    fn remove_file(&mut self, path: &str) {
        self.others.remove(path);
        self.broken.remove(path);
        self.unplaced.remove(path);
        let Some(entry) = self.files.remove(path) else {
            return;
        };
        for key in entry.keys.iter().copied().filter(|k| *k != 0) {
            if let Some(places) = self.duplicates.get_mut(&key) {
                places.retain(|p| &*p.path != path);
                match places.len() {
                    0 => {
                        self.duplicates.remove(&key);
                        self.objects.remove(&key);
                    }
                    1 => {
                        self.objects.insert(key, places[0].clone());
                        self.duplicates.remove(&key);
                    }
                    _ => {
                        self.objects.insert(key, places[0].clone());
                    }
                }
            } else {
                self.objects.remove(&key);
            }
        }
    }

    /// The index after files changed (path → new version, or `None`: removed), reading changed
    /// files with `load`. A changed kustomization re-reads the files whose namespace it changes.
    pub fn update(
        &mut self,
        changed: impl IntoIterator<Item = (String, Option<FileVersion>)>,
        load: &dyn Fn(&str) -> Option<Vec<u8>>,
    ) {
        let changed: Vec<(String, Option<FileVersion>)> = changed.into_iter().collect();
        for (path, version) in &changed {
            if is_kustomization(path) {
                self.kustomizations.remove(parent(path));
                self.broken.remove(path);
                self.others.remove(path.as_str());
                if let Some(version) = version {
                    self.read_kustomization(path, load);
                    self.others.insert(path.as_str().into(), *version);
                }
            }
        }
        let inheritance = self.inheritance();
        let mut reread: BTreeMap<String, FileVersion> = self
            .files
            .iter()
            .filter(|(path, entry)| inheritance.get(&***path) != entry.namespace.as_ref())
            .map(|(path, entry)| (path.to_string(), entry.version))
            .collect();
        for (path, version) in changed {
            if is_kustomization(&path) {
                continue;
            }
            reread.remove(&path);
            self.remove_file(&path);
            if let Some(version) = version {
                let namespace = inheritance.get(&path).cloned();
                self.add_file(&path, version, namespace, load);
            }
        }
        for (path, version) in reread {
            self.remove_file(&path);
            let namespace = inheritance.get(&path).cloned();
            self.add_file(&path, version, namespace, load);
        }
    }

    /// The folder indexed (from the repository root).
    pub fn folder(&self) -> &str {
        &self.folder
    }

    /// Where the object is (its first place in path order when it is in more than one).
    pub fn find(&self, id: &ObjectIdentity) -> Option<&Place> {
        self.objects.get(&key_of(id))
    }

    /// Every place of an object (more than one when it is found twice).
    pub fn places(&self, id: &ObjectIdentity) -> Vec<Place> {
        let key = key_of(id);
        match self.duplicates.get(&key) {
            Some(places) => places.clone(),
            None => self.objects.get(&key).cloned().into_iter().collect(),
        }
    }

    /// The first place of every object whose key `keep` lacks (a snapshot's stale documents).
    pub fn stale(&self, keep: &HashSet<Key>) -> Vec<Place> {
        let mut stale: Vec<Place> = self
            .objects
            .iter()
            .filter(|(key, _)| !keep.contains(*key))
            .map(|(_, place)| place.clone())
            .collect();
        stale.sort();
        stale
    }

    /// The first place of every object, in path order.
    pub fn all_places(&self) -> Vec<Place> {
        self.stale(&HashSet::new())
    }

    /// The keys of a file's documents, in order (0: no object).
    pub fn keys_of(&self, path: &str) -> Option<&[Key]> {
        self.files.get(path).map(|e| &*e.keys)
    }

    /// The namespace a file's documents take when they name none (from a listing kustomization).
    pub fn inherited(&self, path: &str) -> Option<&str> {
        self.files.get(path).and_then(|e| e.namespace.as_deref())
    }

    /// The identity of the document at `place`, read with `load`.
    pub fn identity_at(
        &self,
        place: &Place,
        load: &dyn Fn(&str) -> Option<Vec<u8>>,
    ) -> Option<ObjectIdentity> {
        let text = load(&place.path).and_then(|b| String::from_utf8(b).ok())?;
        let span = split(&text).into_iter().nth(place.doc as usize)?;
        identity_of(span.of(&text), self.inherited(&place.path)).ok()
    }

    /// The version of a file as indexed (any file of the folder).
    pub fn version_of(&self, path: &str) -> Option<FileVersion> {
        self.files
            .get(path)
            .map(|entry| entry.version)
            .or_else(|| self.others.get(path).copied())
    }

    /// True when the folder has a file at `path` (any file).
    pub fn has_file(&self, path: &str) -> bool {
        self.files.contains_key(path) || self.others.contains_key(path)
    }

    /// Every file path of the folder.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.files.keys().chain(self.others.keys()).map(|p| &**p)
    }

    /// The kustomization that decides whether a new file at `path` is applied: the nearest one
    /// in its folder or a parent, up to the destination folder. Its path and content.
    pub fn nearest_kustomization(&self, path: &str) -> Option<(String, &Kustomization)> {
        let mut dir = parent(path);
        loop {
            if let Some((name, k)) = self.kustomizations.get(dir) {
                let file = if dir.is_empty() {
                    name.clone()
                } else {
                    format!("{dir}/{name}")
                };
                return Some((file, k));
            }
            if dir == self.folder || dir.is_empty() || !dir.starts_with(&self.folder) {
                return None;
            }
            dir = parent(dir);
        }
    }

    /// Files that do not parse → why.
    pub fn broken(&self) -> &BTreeMap<String, String> {
        &self.broken
    }

    /// Files with documents that are not objects → which and why.
    pub fn unplaced(&self) -> &BTreeMap<String, String> {
        &self.unplaced
    }

    /// Objects found in more than one place: every place, in path order.
    pub fn duplicates(&self) -> impl Iterator<Item = &[Place]> {
        self.duplicates.values().map(Vec::as_slice)
    }

    /// How many objects are indexed.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// Lines for a commit body or a condition: what was not read and what is in two places
    /// (its identity read with `load`).
    pub fn notes(&self, load: &dyn Fn(&str) -> Option<Vec<u8>>) -> Vec<String> {
        let mut notes: Vec<String> = self
            .broken
            .iter()
            .map(|(path, why)| format!("Not read (left as it is): {path}: {why}"))
            .collect();
        notes.extend(
            self.unplaced
                .iter()
                .map(|(path, why)| format!("Not an object (left as it is): {path}: {why}")),
        );
        for places in self.duplicates() {
            let what = places
                .first()
                .and_then(|place| self.identity_at(place, load))
                .map_or_else(|| "an object".to_string(), |id| id.to_string());
            let paths: Vec<String> = places
                .iter()
                .map(|p| format!("{} (document {})", p.path, p.doc + 1))
                .collect();
            notes.push(format!(
                "Found twice: {what} in {} (the first is edited)",
                paths.join(" and ")
            ));
        }
        notes
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap as Map;

    pub(crate) fn repo(files: &[(&str, &str)]) -> Map<String, Vec<u8>> {
        files
            .iter()
            .map(|(p, t)| (p.to_string(), t.as_bytes().to_vec()))
            .collect()
    }

    fn version(text: &[u8]) -> FileVersion {
        let mut v = [0u8; 20];
        let h = crate::manifest::hash::canonical_json(&serde_json::json!(String::from_utf8_lossy(
            text
        )));
        for (i, b) in h.bytes().enumerate() {
            v[i % 20] ^= b.wrapping_mul(i as u8 | 1);
        }
        v
    }

    pub(crate) fn index(files: &Map<String, Vec<u8>>) -> FolderIndex {
        FolderIndex::build(
            "apps",
            files.iter().map(|(p, t)| (p.clone(), version(t))),
            &|p| files.get(p).cloned(),
        )
    }

    fn id(group: &str, kind: &str, ns: Option<&str>, name: &str) -> ObjectIdentity {
        ObjectIdentity {
            group: group.into(),
            kind: kind.into(),
            namespace: ns.map(Into::into),
            name: name.into(),
        }
    }

    const TREE: &[(&str, &str)] = &[
        (
            "apps/kustomization.yaml",
            "namespace: shop\nresources:\n- web.yaml\n- infra\n",
        ),
        (
            "apps/web.yaml",
            "# web\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: other\n",
        ),
        (
            "apps/infra/kustomization.yaml",
            "namespace: infra\nresources:\n- cm.yaml\n",
        ),
        (
            "apps/infra/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n",
        ),
        ("apps/README.md", "# hello\n"),
        ("apps/broken.yaml", "a: [unclosed\n"),
        (
            "apps/list.yaml",
            "kind: Nothing\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n",
        ),
        (
            "apps/twice.yaml",
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n",
        ),
    ];

    #[test]
    fn finds_objects_by_identity_with_kustomize_namespaces() {
        let files = repo(TREE);
        let index = index(&files);
        let web = index
            .find(&id("apps", "Deployment", Some("shop"), "web"))
            .unwrap();
        assert_eq!((&*web.path, web.doc), ("apps/web.yaml", 0));
        let svc = index
            .find(&id("", "Service", Some("other"), "web"))
            .unwrap();
        assert_eq!(svc.doc, 1, "an explicit namespace stays");
        // The outer kustomization's namespace wins, as kustomize applies it last.
        assert!(
            index
                .find(&id("", "ConfigMap", Some("shop"), "settings"))
                .is_some()
        );
        assert!(
            index
                .find(&id("", "ConfigMap", Some("infra"), "settings"))
                .is_none()
        );
        assert_eq!(index.len(), 4);
        assert!(index.broken().contains_key("apps/broken.yaml"));
        assert!(index.unplaced()["apps/list.yaml"].contains("document 1: no apiVersion"));
        let dup: Vec<_> = index.duplicates().collect();
        assert_eq!(dup.len(), 1);
        assert_eq!(&*dup[0][0].path, "apps/list.yaml", "first in path order");
        let notes = index.notes(&|p| files.get(p).cloned()).join("\n");
        assert!(notes.contains("Found twice: Namespace shop in apps/list.yaml (document 2) and apps/twice.yaml (document 1)"), "{notes}");
        assert!(notes.contains("Not read (left as it is): apps/broken.yaml"));
        assert_eq!(
            index
                .nearest_kustomization("apps/infra/new/x.yaml")
                .unwrap()
                .0,
            "apps/infra/kustomization.yaml"
        );
        assert_eq!(
            index
                .nearest_kustomization("apps/shop/core/x.yaml")
                .unwrap()
                .0,
            "apps/kustomization.yaml"
        );
    }

    #[test]
    fn updates_file_by_file() {
        let mut files = repo(TREE);
        let mut index = index(&files);
        files.remove("apps/twice.yaml");
        files.insert(
            "apps/kustomization.yaml".into(),
            b"resources:\n- web.yaml\n- infra\n".to_vec(),
        );
        index.update(
            [
                ("apps/twice.yaml".to_string(), None),
                (
                    "apps/kustomization.yaml".to_string(),
                    Some(version(&files["apps/kustomization.yaml"])),
                ),
            ],
            &|p| files.get(p).cloned(),
        );
        assert_eq!(index.duplicates().count(), 0);
        assert!(index.find(&id("", "Namespace", None, "shop")).is_some());
        assert!(
            index
                .find(&id("", "ConfigMap", Some("infra"), "settings"))
                .is_some(),
            "the inner namespace applies now: read again"
        );
        assert!(index.find(&id("apps", "Deployment", None, "web")).is_some());
    }
}
