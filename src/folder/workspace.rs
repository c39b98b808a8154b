//! Edits to a folder as a careful colleague makes them: an object's document is changed where
//! it is (only what differs), a new object goes where the placement says (listed in the nearest
//! `kustomization.yaml`), a gone object's document leaves its file (the file and its listing
//! with it when it was the last). Pure: files are read through a function and the result is the
//! set of changed files.

use super::index::{FolderIndex, Key, identity_of, key_of};
use super::kustomization::{add_resource, remove_resource};
use crate::manifest::ObjectIdentity;
use crate::manifest::documents::{self, Span, split};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// An object's document could not be edited.
#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error("editing {id} in {path}: {source}")]
    Edit {
        id: Box<ObjectIdentity>,
        path: String,
        source: crate::manifest::EditError,
    },
    #[error("the new document for {id} does not read as YAML: {message}")]
    Render {
        id: Box<ObjectIdentity>,
        message: String,
    },
}

/// Where a new object goes: a file of its own, or a bundle file that holds several objects,
/// ordered by name.
#[derive(Clone, Copy, Debug)]
pub struct Placement<'a> {
    /// From the repository root.
    pub path: &'a str,
    pub bundle: bool,
}

/// What an edit did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Edited {
    /// The document already said this.
    Unchanged { path: String },
    /// The object's document was changed where it is.
    Updated { path: String },
    /// The object was added (in a new file, or into a bundle).
    Added { path: String },
    /// The object's document was removed.
    Removed { path: String },
    /// Nothing to remove: the folder has no document for the object.
    Absent,
}

/// A folder being edited: the index of its last commit plus the files changed since.
pub struct Workspace<'a> {
    index: &'a FolderIndex,
    load: &'a dyn Fn(&str) -> Option<Vec<u8>>,
    /// Changed files: new text, or `None` (removed).
    files: BTreeMap<String, Option<String>>,
    /// Identity key → the changed file that holds it now (`None`: no changed file does).
    overlay: HashMap<Key, Option<Arc<str>>>,
    /// Lower-cased path → path, of every file (for paths that differ only in case).
    lower: Option<HashMap<String, String>>,
}

impl<'a> Workspace<'a> {
    pub fn new(index: &'a FolderIndex, load: &'a dyn Fn(&str) -> Option<Vec<u8>>) -> Self {
        Self {
            index,
            load,
            files: BTreeMap::new(),
            overlay: HashMap::new(),
            lower: None,
        }
    }

    /// The current text of a file.
    pub fn text(&self, path: &str) -> Option<String> {
        match self.files.get(path) {
            Some(text) => text.clone(),
            None if self.index.has_file(path) => {
                (self.load)(path).and_then(|b| String::from_utf8(b).ok())
            }
            None => None,
        }
    }

    fn exists(&self, path: &str) -> bool {
        match self.files.get(path) {
            Some(text) => text.is_some(),
            None => self.index.has_file(path),
        }
    }

    /// The file that holds the object now.
    fn file_of(&self, id: &ObjectIdentity) -> Option<String> {
        if let Some(Some(path)) = self.overlay.get(&key_of(id)) {
            return Some(path.to_string());
        }
        self.index
            .places(id)
            .into_iter()
            .find(|place| !self.files.contains_key(&*place.path))
            .map(|place| place.path.to_string())
    }

    /// The object's document: its file, the file's text and the document's span.
    pub fn find(&self, id: &ObjectIdentity) -> Option<(String, String, Span)> {
        let path = self.file_of(id)?;
        let text = self.text(&path)?;
        let inherited = self.index.inherited(&path);
        let span = split(&text)
            .into_iter()
            .find(|span| identity_of(span.of(&text), inherited).is_ok_and(|found| &found == id))?;
        Some((path, text, span))
    }

    /// The object's document as Git has it now, read as kustomize builds it: a namespace its
    /// kustomization gives it is filled in.
    pub fn document(&self, id: &ObjectIdentity) -> Option<Value> {
        let (path, text, span) = self.find(id)?;
        let mut docs = crate::manifest::yaml::parse_documents(span.of(&text), &path).ok()?;
        if docs.len() != 1 {
            return None;
        }
        let mut doc = docs.remove(0);
        if let Some(namespace) = self.index.inherited(&path)
            && let Some(meta) = doc.get_mut("metadata").and_then(Value::as_object_mut)
            && meta
                .get("namespace")
                .is_none_or(|ns| ns.as_str().is_none_or(str::is_empty))
        {
            meta.insert("namespace".into(), Value::from(namespace));
        }
        Some(doc)
    }

    /// Sets a file's text (or removes it), keeping track of which objects it holds.
    fn set(&mut self, path: &str, text: Option<String>, known: Option<&ObjectIdentity>) {
        let inherited = self.index.inherited(path);
        let keys_of = |text: &str| -> Vec<Key> {
            split(text)
                .iter()
                .filter_map(|span| identity_of(span.of(text), inherited).ok())
                .map(|id| key_of(&id))
                .collect()
        };
        let old: Vec<Key> = match self.files.get(path) {
            Some(Some(text)) => keys_of(text),
            Some(None) => Vec::new(),
            None => self
                .index
                .keys_of(path)
                .map(|keys| keys.iter().copied().filter(|k| *k != 0).collect())
                .unwrap_or_default(),
        };
        let new: Vec<Key> = match (&text, known) {
            (Some(_), Some(id)) if !self.exists(path) => vec![key_of(id)],
            (Some(text), _) => keys_of(text),
            (None, _) => Vec::new(),
        };
        for key in old {
            self.overlay.insert(key, None);
        }
        let shared: Arc<str> = path.into();
        for key in new {
            self.overlay.insert(key, Some(shared.clone()));
        }
        if let Some(lower) = &mut self.lower
            && text.is_some()
        {
            lower.insert(path.to_lowercase(), path.to_string());
        }
        self.files.insert(path.to_string(), text);
    }

    /// Writes an object: its document edited in place where the folder has it (only what
    /// differs; a namespace its kustomization gives it stays implicit), else added where the
    /// placement says. `rendered` is the object's whole document as the agent writes it.
    pub fn upsert(
        &mut self,
        id: &ObjectIdentity,
        rendered: &str,
        placement: Placement<'_>,
    ) -> Result<Edited, WorkspaceError> {
        if let Some((path, text, span)) = self.find(id) {
            let original = span.of(&text);
            let edited = self.edited(id, &path, original, rendered)?;
            if edited == original {
                return Ok(Edited::Unchanged { path });
            }
            let new_text = documents::replace(&text, &span, &edited);
            self.set(&path, Some(new_text), None);
            return Ok(Edited::Updated { path });
        }
        let path = self.distinct(placement.path);
        match self.text(&path) {
            Some(text) if placement.bundle => {
                let spans = split(&text);
                let before = spans.iter().find(|span| {
                    identity_of(span.of(&text), self.index.inherited(&path))
                        .is_ok_and(|other| other.name > id.name)
                });
                let new_text = documents::insert(&text, before, rendered);
                self.set(&path, Some(new_text), None);
            }
            Some(_) => {
                // Someone else's file at the object's path: never written over.
                let path = self.distinct(&twin_path(placement.path, &id.key()));
                self.create(&path, rendered, id);
                return Ok(Edited::Added { path });
            }
            None => self.create(&path, rendered, id),
        }
        Ok(Edited::Added { path })
    }

    fn create(&mut self, path: &str, rendered: &str, id: &ObjectIdentity) {
        let mut text = rendered.to_string();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        self.set(path, Some(text), Some(id));
        if let Some((kustomization, k)) = self.index.nearest_kustomization(path)
            && k.resources.is_some()
            && let Some(entry) = relative_to(&kustomization, path)
            && let Some(current) = self.text(&kustomization)
            && let Some(listed) = add_resource(&current, &entry)
        {
            self.set(&kustomization, Some(listed), None);
        }
    }

    /// The document's new text: edited in place, or (a SOPS document, whose MAC covers its
    /// values) written whole.
    fn edited(
        &self,
        id: &ObjectIdentity,
        path: &str,
        original: &str,
        rendered: &str,
    ) -> Result<String, WorkspaceError> {
        let mut new = crate::manifest::yaml::parse_documents(rendered, path)
            .ok()
            .and_then(|mut docs| (docs.len() == 1).then(|| docs.remove(0)))
            .ok_or_else(|| WorkspaceError::Render {
                id: Box::new(id.clone()),
                message: "not one document".into(),
            })?;
        if new.get("sops").is_some() {
            return Ok(rendered.to_string());
        }
        // A namespace the kustomization gives stays implicit, as the person wrote it.
        let inherited = self.index.inherited(path);
        if inherited.is_some() && inherited == id.namespace.as_deref() {
            let implicit = crate::manifest::yaml::parse_documents(original, path)
                .ok()
                .and_then(|docs| docs.into_iter().next())
                .is_some_and(|doc| doc.pointer("/metadata/namespace").is_none());
            if implicit && let Some(meta) = new.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.remove("namespace");
            }
        }
        crate::manifest::edit_document(original, &new).map_err(|source| WorkspaceError::Edit {
            id: Box::new(id.clone()),
            path: path.to_string(),
            source,
        })
    }

    /// Removes an object's document (its file when it was the last, and the file's entry in
    /// the nearest kustomization's `resources:`).
    pub fn delete(&mut self, id: &ObjectIdentity) -> Edited {
        let Some((path, text, span)) = self.find(id) else {
            return Edited::Absent;
        };
        let rest = documents::remove(&text, &span);
        if split(&rest).is_empty() {
            self.set(&path, None, None);
            if let Some((kustomization, _)) = self.index.nearest_kustomization(&path)
                && let Some(entry) = relative_to(&kustomization, &path)
                && let Some(current) = self.text(&kustomization)
                && let Some(unlisted) = remove_resource(&current, &entry)
            {
                self.set(&kustomization, Some(unlisted), None);
            }
        } else {
            self.set(&path, Some(rest), None);
        }
        Edited::Removed { path }
    }

    /// A path that differs from every other file's by more than case: `web.yaml` when `Web.yaml`
    /// exists becomes `web~1a2b3c4d.yaml`, so a checkout on a case-insensitive file system keeps
    /// both.
    fn distinct(&mut self, path: &str) -> String {
        let index = self.index;
        let files = &self.files;
        let lower = self.lower.get_or_insert_with(|| {
            let mut lower: HashMap<String, String> = index
                .paths()
                .map(|p| (p.to_lowercase(), p.to_string()))
                .collect();
            for (p, text) in files {
                if text.is_some() {
                    lower.insert(p.to_lowercase(), p.clone());
                }
            }
            lower
        });
        match lower.get(&path.to_lowercase()) {
            Some(existing) if existing != path => twin_path(path, path),
            _ => path.to_string(),
        }
    }

    /// The changed files: path → new bytes, or `None` (removed).
    pub fn changes(self) -> Vec<(String, Option<Vec<u8>>)> {
        self.files
            .into_iter()
            .map(|(path, text)| (path, text.map(String::into_bytes)))
            .collect()
    }

    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

/// `a/b/name.yaml` → `a/b/name~1a2b3c4d.yaml`, the suffix from `seed` (an FNV-1a hash).
fn twin_path(path: &str, seed: &str) -> String {
    let hash = seed.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    let (dir, name) = path.rsplit_once('/').map_or(("", path), |(d, n)| (d, n));
    let (stem, ext) = name
        .find('.')
        .map_or((name, ""), |i| (&name[..i], &name[i..]));
    let file = format!("{stem}~{hash:08x}{ext}");
    if dir.is_empty() {
        file
    } else {
        format!("{dir}/{file}")
    }
}

/// `path` relative to the directory of the kustomization file `kustomization`.
fn relative_to(kustomization: &str, path: &str) -> Option<String> {
    let dir = kustomization.rsplit_once('/').map_or("", |(d, _)| d);
    if dir.is_empty() {
        return Some(path.to_string());
    }
    path.strip_prefix(dir)?
        .strip_prefix('/')
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::folder::index::tests::{index, repo};

    fn cm(name: &str, ns: &str, value: &str) -> String {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {ns}\ndata:\n  mode: {value}\n"
        )
    }

    fn id(kind: &str, ns: &str, name: &str) -> ObjectIdentity {
        ObjectIdentity {
            group: String::new(),
            kind: kind.into(),
            namespace: Some(ns.into()),
            name: name.into(),
        }
    }

    const SETTINGS: &str = "# Settings of the shop.\n---\n# why: fast\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings # the app reads this\ndata:\n  mode: fast # keep fast\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: flags\ndata:\n  a: \"1\"\n";

    fn tree() -> HashMap<String, Vec<u8>> {
        repo(&[
            (
                "apps/kustomization.yaml",
                "namespace: shop\nresources:\n  # settings\n  - settings.yaml\n",
            ),
            ("apps/settings.yaml", SETTINGS),
            ("apps/README.md", "hi\n"),
        ])
    }

    fn changes(ws: Workspace<'_>) -> BTreeMap<String, Option<String>> {
        ws.changes()
            .into_iter()
            .map(|(p, b)| (p, b.map(|b| String::from_utf8(b).unwrap())))
            .collect()
    }

    #[test]
    fn an_update_edits_the_document_where_it_is() {
        let files = tree();
        let index = index(&files);
        let load = |p: &str| files.get(p).cloned();
        let mut ws = Workspace::new(&index, &load);
        let placement = Placement {
            path: "apps/shop/core/configmaps/settings.yaml",
            bundle: false,
        };
        let same = ws
            .upsert(
                &id("ConfigMap", "shop", "settings"),
                &cm("settings", "shop", "fast"),
                placement,
            )
            .unwrap();
        assert!(matches!(same, Edited::Unchanged { .. }), "{same:?}");
        let edited = ws
            .upsert(
                &id("ConfigMap", "shop", "settings"),
                &cm("settings", "shop", "slow"),
                placement,
            )
            .unwrap();
        assert_eq!(
            edited,
            Edited::Updated {
                path: "apps/settings.yaml".into()
            }
        );
        let out = changes(ws);
        assert_eq!(out.len(), 1);
        let text = out["apps/settings.yaml"].clone().unwrap();
        assert_eq!(
            text,
            SETTINGS.replace("mode: fast # keep fast", "mode: slow # keep fast"),
            "one line changed; the namespace stays implicit"
        );
    }

    #[test]
    fn a_new_object_is_placed_and_listed_and_a_delete_unlists() {
        let files = tree();
        let index = index(&files);
        let load = |p: &str| files.get(p).cloned();
        let mut ws = Workspace::new(&index, &load);
        let placement = Placement {
            path: "apps/shop/core/configmaps/extra.yaml",
            bundle: false,
        };
        let added = ws
            .upsert(
                &id("ConfigMap", "shop", "extra"),
                &cm("extra", "shop", "x"),
                placement,
            )
            .unwrap();
        assert_eq!(
            added,
            Edited::Added {
                path: placement.path.into()
            }
        );
        assert_eq!(
            ws.delete(&id("ConfigMap", "shop", "settings")),
            Edited::Removed {
                path: "apps/settings.yaml".into()
            }
        );
        assert_eq!(
            ws.delete(&id("ConfigMap", "shop", "nothing")),
            Edited::Absent
        );
        let out = changes(ws);
        assert_eq!(
            out["apps/kustomization.yaml"].as_deref(),
            Some(
                "namespace: shop\nresources:\n  # settings\n  - settings.yaml\n  - shop/core/configmaps/extra.yaml\n"
            ),
            "the file keeps another document: it stays listed"
        );
        let rest = out["apps/settings.yaml"].clone().unwrap();
        assert!(!rest.contains("settings # the app"));
        assert!(
            rest.starts_with("# Settings of the shop.\n---\napiVersion"),
            "{rest}"
        );
    }

    #[test]
    fn the_last_document_takes_its_file_and_bundles_order_by_name() {
        let files = repo(&[(
            "apps/shop/configmaps.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n  namespace: shop\n",
        )]);
        let index = index(&files);
        let load = |p: &str| files.get(p).cloned();
        let mut ws = Workspace::new(&index, &load);
        let bundle = Placement {
            path: "apps/shop/configmaps.yaml",
            bundle: true,
        };
        for name in ["c", "a"] {
            ws.upsert(
                &id("ConfigMap", "shop", name),
                &cm(name, "shop", "x"),
                bundle,
            )
            .unwrap();
        }
        let text = ws.text(bundle.path).unwrap();
        let names: Vec<String> = crate::manifest::yaml::parse_documents(&text, "t")
            .unwrap()
            .iter()
            .map(|d| d["metadata"]["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(names, ["a", "b", "c"]);
        for name in ["a", "b", "c"] {
            ws.delete(&id("ConfigMap", "shop", name));
        }
        assert_eq!(changes(ws)[bundle.path], None);
    }

    #[test]
    fn paths_that_differ_only_in_case_are_made_distinct() {
        let files = repo(&[("apps/Web.yaml", &cm("Web", "shop", "x"))]);
        let index = index(&files);
        let load = |p: &str| files.get(p).cloned();
        let mut ws = Workspace::new(&index, &load);
        let added = ws
            .upsert(
                &id("ConfigMap", "shop", "web"),
                &cm("web", "shop", "x"),
                Placement {
                    path: "apps/web.yaml",
                    bundle: false,
                },
            )
            .unwrap();
        let Edited::Added { path } = added else {
            panic!()
        };
        assert!(
            path.starts_with("apps/web~") && path.ends_with(".yaml"),
            "{path}"
        );
        // Someone else's file at the template path is never overwritten.
        let other = repo(&[("apps/x.yaml", "just: notes\n")]);
        let index = super::super::index::tests::index(&other);
        let load = |p: &str| other.get(p).cloned();
        let mut ws = Workspace::new(&index, &load);
        let added = ws
            .upsert(
                &id("ConfigMap", "shop", "x"),
                &cm("x", "shop", "x"),
                Placement {
                    path: "apps/x.yaml",
                    bundle: false,
                },
            )
            .unwrap();
        assert_ne!(
            added,
            Edited::Added {
                path: "apps/x.yaml".into()
            }
        );
    }

    #[test]
    fn one_object_in_two_places_is_edited_in_the_first_and_never_written_a_third_time() {
        let files = repo(&[
            ("apps/a/settings.yaml", &cm("settings", "shop", "one")),
            ("apps/b/settings.yaml", &cm("settings", "shop", "two")),
        ]);
        let index = index(&files);
        let load = |p: &str| files.get(p).cloned();
        let mut ws = Workspace::new(&index, &load);
        let edited = ws
            .upsert(
                &id("ConfigMap", "shop", "settings"),
                &cm("settings", "shop", "three"),
                Placement {
                    path: "apps/shop/core/configmaps/settings.yaml",
                    bundle: false,
                },
            )
            .unwrap();
        assert_eq!(
            edited,
            Edited::Updated {
                path: "apps/a/settings.yaml".into()
            }
        );
        let out = changes(ws);
        assert_eq!(out.keys().collect::<Vec<_>>(), ["apps/a/settings.yaml"]);
    }
}
