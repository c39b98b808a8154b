//! The capture decision for one live object and one destination: write its file, delete it,
//! or write nothing — with the reason (equivalent to Git, excluded) that logs and metrics show.

use crate::manifest::equivalence::{Equivalence, Verdict};
use crate::manifest::exclude::{Exclusion, ExclusionPolicy};
use crate::manifest::hash::{ContentHash, recorded_hash};
use crate::manifest::layout::{Location, PathTemplate};
use crate::manifest::object::{ObjectError, ObjectId, ObjectIdentity};
use crate::manifest::pipeline::{Outcome, prepare};
use crate::manifest::yaml::{YamlError, to_yaml};
use serde_json::Value;

/// Where a destination writes: its folder and layout, and how it encrypts Secrets.
#[derive(Clone, Debug)]
pub struct Layout {
    pub folder: String,
    pub template: PathTemplate,
    /// Placements before `template`: the first that matches an object places it.
    pub placements: Vec<crate::manifest::layout::PlacementRule>,
    /// Secrets become SOPS documents (`….sops.yaml`) with a keyed hash.
    pub encryption: Option<crate::secrets::Encryption>,
}

impl Layout {
    /// The path of an object's file (`….sops.yaml` for a Secret this layout encrypts).
    pub fn path(&self, id: &ObjectId, resource: &str) -> String {
        self.placement(id, resource).0
    }

    /// Where a new object goes, and whether that file is a bundle several objects share.
    pub fn placement(&self, id: &ObjectId, resource: &str) -> (String, bool) {
        let rule = self
            .placements
            .iter()
            .find(|p| p.matches(&id.group, &id.kind, resource));
        let (template, bundle) = match rule {
            Some(rule) => (&rule.template, rule.bundle),
            None => (&self.template, false),
        };
        let path = self.path_with(template, id, resource);
        match self.encryption_for(id) {
            Some(_) if !bundle => (crate::secrets::sops_path(&path), false),
            _ => (path, bundle),
        }
    }

    /// The encryption that applies to this object, if any (Secrets, when configured).
    pub fn encryption_for(&self, id: &ObjectId) -> Option<&crate::secrets::Encryption> {
        self.encryption
            .as_ref()
            .filter(|_| id.group.is_empty() && id.kind == "Secret")
    }

    fn path_with(&self, template: &PathTemplate, id: &ObjectId, resource: &str) -> String {
        template.path_in(
            &self.folder,
            &Location {
                group: &id.group,
                version: &id.version,
                kind: &id.kind,
                resource,
                namespace: id.namespace.as_deref(),
                name: &id.name,
            },
        )
    }
}

/// What to do with one event for one destination.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Write the file: the object is new or differs from Git.
    Write {
        path: String,
        content: Vec<u8>,
        hash: ContentHash,
        id: ObjectId,
    },
    /// Remove the file: the object is gone.
    Delete { path: String, id: ObjectId },
    /// Nothing to write: Git already says this (exact, hash-annotation or near, with reason),
    /// or the object is gone and has no file.
    Unchanged {
        path: String,
        id: ObjectId,
        why: Unchanged,
    },
    /// Never written (Secrets, derived and runtime objects...).
    Excluded { id: ObjectId, exclusion: Exclusion },
}

/// Why nothing is written.
#[derive(Clone, Debug, PartialEq)]
pub enum Unchanged {
    Equivalent(Equivalence),
    /// A delete of an object that has no file.
    NoFile,
}

impl Decision {
    /// The label of the decision in metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Decision::Write { .. } => "written",
            Decision::Delete { .. } => "deleted",
            Decision::Unchanged {
                why: Unchanged::Equivalent(Equivalence::Exact),
                ..
            } => "exact",
            Decision::Unchanged {
                why: Unchanged::Equivalent(Equivalence::HashAnnotation),
                ..
            } => "hash-annotation",
            Decision::Unchanged {
                why: Unchanged::Equivalent(Equivalence::Near { .. }),
                ..
            } => "near",
            Decision::Unchanged {
                why: Unchanged::NoFile,
                ..
            } => "no-file",
            Decision::Excluded { .. } => "excluded",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error(transparent)]
    Object(#[from] ObjectError),
    #[error(transparent)]
    Yaml(#[from] YamlError),
    #[error("{id}: {source}")]
    Encrypt {
        id: Box<ObjectId>,
        source: Box<crate::secrets::SopsError>,
    },
}

/// True when a live object came from Git unchanged and Git still holds that file: its hash
/// annotation equals the hash of its own content (DESIGN §3, step 1) and the hash the agent
/// knows for its file. Decided without reading Git; an object applied from an older revision
/// carries another hash and is not recognised here (it is a change).
pub fn came_from_git(live: &Value, known: Option<ContentHash>, policy: &ExclusionPolicy) -> bool {
    let verified = crate::manifest::equivalence::verified_hash_annotation(live);
    verified.is_some()
        && verified == known
        && crate::manifest::exclude::exclusion(live, policy).is_none()
}

/// Decides for a live object (as the API server sent it) that exists. `git_doc` is the
/// current document of its file in Git, if any. Cheapest checks first: the hash of the new
/// content against the hash the file records; only when they differ, the full equivalence.
pub fn decide_upsert(
    live: Value,
    resource: &str,
    layout: &Layout,
    policy: &ExclusionPolicy,
    git_doc: Option<&Value>,
) -> Result<Decision, CaptureError> {
    // Equivalence needs the live object as sent (managedFields, last-applied); keep it only
    // when there is a file to compare with.
    let original = git_doc.map(|_| live.clone());
    let manifest = match prepare(live, policy)? {
        Outcome::Kept(manifest) => manifest,
        Outcome::Skipped { id, exclusion } => return Ok(Decision::Excluded { id, exclusion }),
    };
    let path = layout.path(&manifest.id, resource);
    if let Some(encryption) = layout.encryption_for(&manifest.id) {
        return decide_sealed(manifest, path, encryption, git_doc);
    }
    if let (Some(git_doc), Some(original)) = (git_doc, original) {
        if recorded_hash(git_doc) == manifest.hash {
            return Ok(Decision::Unchanged {
                path,
                id: manifest.id,
                why: Unchanged::Equivalent(Equivalence::Exact),
            });
        }
        if let Verdict::Equivalent(how) =
            crate::manifest::pipeline::compare_with(git_doc, &original, policy).0
        {
            return Ok(Decision::Unchanged {
                path,
                id: manifest.id,
                why: Unchanged::Equivalent(how),
            });
        }
    }
    let content = to_yaml(&manifest.doc)?.into_bytes();
    Ok(Decision::Write {
        path,
        content,
        hash: manifest.hash,
        id: manifest.id,
    })
}

/// The decision for a Secret the destination encrypts: unchanged when the file's keyed hash
/// is the live value's (ciphertexts differ on every encryption, so they are never compared,
/// and no diff of values is ever computed), or — when the hash cannot tell (none, or made with
/// another key) and the destination has age identities — when Git's file decrypts to exactly
/// the live Secret; else the new SOPS document.
fn decide_sealed(
    manifest: crate::manifest::Manifest,
    path: String,
    encryption: &crate::secrets::Encryption,
    git_doc: Option<&Value>,
) -> Result<Decision, CaptureError> {
    let hash = encryption.hash(&manifest.doc);
    if git_doc.map(recorded_hash) == Some(hash) {
        return Ok(Decision::Unchanged {
            path,
            id: manifest.id,
            why: Unchanged::Equivalent(Equivalence::HashAnnotation),
        });
    }
    if git_doc.is_some_and(|git| encryption.decrypts_to(git, &manifest.doc)) {
        return Ok(Decision::Unchanged {
            path,
            id: manifest.id,
            why: Unchanged::Equivalent(Equivalence::Exact),
        });
    }
    let id = manifest.id;
    let (hash, text) = crate::secrets::seal(manifest.doc, encryption, jiff::Timestamp::now())
        .map_err(|source| CaptureError::Encrypt {
            id: Box::new(id.clone()),
            source: Box::new(source),
        })?;
    Ok(Decision::Write {
        path,
        content: text.into_bytes(),
        hash,
        id,
    })
}

/// Decides for an object that is gone: remove its file if Git has one.
pub fn decide_delete(
    last: &Value,
    resource: &str,
    layout: &Layout,
    git_has_file: bool,
) -> Result<Decision, CaptureError> {
    let id = ObjectId::of(last)?;
    let path = layout.path(&id, resource);
    Ok(if git_has_file {
        Decision::Delete { path, id }
    } else {
        Decision::Unchanged {
            path,
            id,
            why: Unchanged::NoFile,
        }
    })
}

/// What Git holds, as far as one decision needs it: an object's document, wherever the folder
/// has it, as the destination's worker last pushed it. The agent reads its local
/// cache (on a blocking thread); tests use a map.
pub trait GitView {
    /// The object's document, wherever the folder has it; `path` is where the layout would
    /// place it (a view that has no index, such as a test's map of files, reads it there).
    fn document(&self, id: &ObjectIdentity, path: &str) -> Option<Value>;
}

impl GitView for std::collections::HashMap<String, Vec<u8>> {
    fn document(&self, _id: &ObjectIdentity, path: &str) -> Option<Value> {
        self.get(path)
            .and_then(|bytes| crate::manifest::yaml::parse_single_document(bytes, path))
    }
}

/// A destination's memory between events: the content hash of each object's document as the
/// agent last wrote or read it (identity key, [`ObjectIdentity::key`] → hash). It lets an object applied from Git
/// be recognised without reading Git, and says a file was written even before its push.
pub type Known = std::collections::HashMap<String, ContentHash>;

/// One live event for one destination.
#[derive(Clone, Copy, Debug)]
pub struct Event<'a> {
    /// The object as the API server sent it, `apiVersion` and `kind` filled in.
    pub live: &'a Value,
    /// Its resource (plural), for the path.
    pub resource: &'a str,
    /// The watch said DELETED (the object's last state).
    pub deleted: bool,
    /// The destination's rules write objects Git does not hold yet (CREATE) / holds (UPDATE).
    pub creates: bool,
    pub updates: bool,
}

/// What was decided for one event and one destination.
#[derive(Clone, Debug, PartialEq)]
pub struct Decided {
    pub decision: Decision,
    /// Git held (or the agent had written) a document for the object: a write is an `update`
    /// rather than a `create`.
    pub existed: bool,
    /// Git had to be read (the hash fast path needs no read).
    pub read_git: bool,
}

/// The whole decision for one event and one destination, synchronous and without I/O but
/// `git`'s reads: the hash fast path (no read), then the file Git holds, the operations the
/// rules cover, and the write / delete / unchanged verdict. `known` is updated with what the
/// decision wrote or learned. `None`: the operation (a create of an object Git lacks, an update
/// of one it holds) is one the destination's rules do not write.
pub fn decide_event(
    event: &Event<'_>,
    layout: &Layout,
    policy: &ExclusionPolicy,
    known: &mut Known,
    git: &dyn GitView,
) -> Result<Option<Decided>, CaptureError> {
    let id = ObjectId::of(event.live)?;
    let path = layout.path(&id, event.resource);
    let identity = id.identity();
    let key = identity.key();
    if event.deleted {
        let exists = git.document(&identity, &path).is_some();
        let decision = decide_delete(event.live, event.resource, layout, exists)?;
        if matches!(decision, Decision::Delete { .. }) {
            known.remove(&key);
        }
        return Ok(Some(Decided {
            decision,
            existed: exists,
            read_git: true,
        }));
    }
    let written = known.contains_key(&key);
    if event.updates && came_from_git(event.live, known.get(&key).copied(), policy) {
        return Ok(Some(Decided {
            decision: Decision::Unchanged {
                path,
                id,
                why: Unchanged::Equivalent(Equivalence::HashAnnotation),
            },
            existed: true,
            read_git: false,
        }));
    }
    let git_doc = git.document(&identity, &path);
    match git_doc.as_ref().map(recorded_hash) {
        Some(hash) => known.insert(key.clone(), hash),
        None => known.remove(&key),
    };
    // CREATE or UPDATE as far as Git is concerned; the rule must cover it.
    if (git_doc.is_none() && !event.creates) || (git_doc.is_some() && !event.updates) {
        return Ok(None);
    }
    let decision = decide_upsert(
        event.live.clone(),
        event.resource,
        layout,
        policy,
        git_doc.as_ref(),
    )?;
    if let Decision::Write { hash, .. } = &decision {
        known.insert(key, *hash);
    }
    Ok(Some(Decided {
        decision,
        existed: git_doc.is_some() || written,
        read_git: true,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::yaml::parse_single_document;
    use serde_json::json;
    use std::collections::HashMap;

    /// Git holding what the decisions wrote (as a push would), for a sequence of events.
    fn push(git: &mut HashMap<String, Vec<u8>>, outcome: &Option<Decided>) {
        match outcome.as_ref().map(|d| &d.decision) {
            Some(Decision::Write { path, content, .. }) => {
                git.insert(path.clone(), content.clone());
            }
            Some(Decision::Delete { path, .. }) => {
                git.remove(path);
            }
            _ => {}
        }
    }

    fn event(live: &Value, deleted: bool) -> Event<'_> {
        Event {
            live,
            resource: "configmaps",
            deleted,
            creates: true,
            updates: true,
        }
    }

    fn label(outcome: &Option<Decided>) -> (&'static str, bool, bool) {
        match outcome {
            Some(d) => (d.decision.label(), d.existed, d.read_git),
            None => ("not-covered", false, false),
        }
    }

    /// A life: created (a create), re-sent unchanged (exact), applied back from Git by a
    /// reconciler (hash fast path, no read), edited (an update), deleted, deleted again.
    #[test]
    fn an_objects_life_against_an_in_memory_git() {
        let policy = ExclusionPolicy::default();
        let layout = layout();
        let mut git: HashMap<String, Vec<u8>> = HashMap::new();
        let mut known = Known::new();
        let mut step = |live: &Value, deleted: bool, git: &mut HashMap<String, Vec<u8>>| {
            let out = decide_event(&event(live, deleted), &layout, &policy, &mut known, &*git)
                .expect("decided");
            push(git, &out);
            label(&out)
        };
        assert_eq!(step(&live("on"), false, &mut git), ("written", false, true));
        assert_eq!(step(&live("on"), false, &mut git), ("exact", true, true));
        let path = "clusters/dev/shop/core/configmaps/settings.yaml";
        let mut applied = parse_single_document(&git[path], path).unwrap();
        applied["metadata"]["resourceVersion"] = json!("12");
        assert_eq!(
            step(&applied, false, &mut git),
            ("hash-annotation", true, false),
            "recognised without reading Git"
        );
        assert_eq!(step(&live("off"), false, &mut git), ("written", true, true));
        assert_eq!(step(&live("off"), true, &mut git), ("deleted", true, true));
        assert_eq!(step(&live("off"), true, &mut git), ("no-file", false, true));
    }

    /// A second change before the first was pushed is an update, not a second create.
    #[test]
    fn a_write_not_yet_pushed_makes_the_next_one_an_update() {
        let policy = ExclusionPolicy::default();
        let git: HashMap<String, Vec<u8>> = HashMap::new();
        let mut known = Known::new();
        let first = decide_event(
            &event(&live("1"), false),
            &layout(),
            &policy,
            &mut known,
            &git,
        )
        .unwrap();
        let second = decide_event(
            &event(&live("2"), false),
            &layout(),
            &policy,
            &mut known,
            &git,
        )
        .unwrap();
        assert_eq!(label(&first), ("written", false, true));
        assert_eq!(label(&second), ("written", true, true));
    }

    /// Rules that write only creates (or only updates) leave the other operation alone.
    #[test]
    fn operations_the_rules_do_not_cover_are_not_written() {
        let policy = ExclusionPolicy::default();
        let mut git: HashMap<String, Vec<u8>> = HashMap::new();
        let mut known = Known::new();
        let live_on = live("on");
        let updates_only = Event {
            creates: false,
            ..event(&live_on, false)
        };
        assert_eq!(
            decide_event(&updates_only, &layout(), &policy, &mut known, &git).unwrap(),
            None
        );
        let created = decide_event(
            &event(&live_on, false),
            &layout(),
            &policy,
            &mut known,
            &git,
        )
        .unwrap();
        push(&mut git, &created);
        let live_off = live("off");
        let creates_only = Event {
            updates: false,
            ..event(&live_off, false)
        };
        assert_eq!(
            decide_event(&creates_only, &layout(), &policy, &mut known, &git).unwrap(),
            None
        );
    }

    fn layout() -> Layout {
        Layout {
            encryption: None,
            folder: "clusters/dev".into(),
            template: PathTemplate::default(),
            placements: Vec::new(),
        }
    }

    fn live(value: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "settings", "namespace": "shop", "uid": "u1", "resourceVersion": "7",
                "managedFields": [{"manager": "kubectl-edit", "operation": "Update", "apiVersion": "v1",
                    "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:mode": {}}}}]},
            "data": {"mode": value}})
    }

    #[test]
    fn objects_applied_from_the_file_git_holds_are_recognised_without_reading_git() {
        let policy = ExclusionPolicy::default();
        let Decision::Write { hash, content, .. } =
            decide_upsert(live("on"), "configmaps", &layout(), &policy, None).unwrap()
        else {
            panic!("a new object is written")
        };
        // What Flux applies: the file, hash annotation included, plus server fields.
        let mut applied = parse_single_document(&content, "file").unwrap();
        applied["metadata"]["resourceVersion"] = json!("9");
        assert!(came_from_git(&applied, Some(hash), &policy));
        // An older revision of the file (another hash), or no known file: not recognised.
        let other = crate::manifest::hash::content_hash(&json!({"older": true}));
        assert!(!came_from_git(&applied, Some(other), &policy));
        assert!(!came_from_git(&applied, None, &policy));
        // Edited after it was applied: the annotation no longer matches the content.
        applied["data"]["mode"] = json!("edited");
        assert!(!came_from_git(&applied, Some(hash), &policy));
    }

    #[test]
    fn new_object_is_written_and_an_equal_one_is_not() {
        let policy = ExclusionPolicy::default();
        let first = decide_upsert(live("on"), "configmaps", &layout(), &policy, None).unwrap();
        let Decision::Write { path, content, .. } = &first else {
            panic!("{first:?}")
        };
        assert_eq!(path, "clusters/dev/shop/core/configmaps/settings.yaml");
        let written = parse_single_document(content, path).unwrap();
        let content = &written;
        // The same object again (a status-only or metadata-only update): nothing to write.
        let again =
            decide_upsert(live("on"), "configmaps", &layout(), &policy, Some(content)).unwrap();
        assert_eq!(again.label(), "exact");
        // A real change is written.
        let changed =
            decide_upsert(live("off"), "configmaps", &layout(), &policy, Some(content)).unwrap();
        assert_eq!(changed.label(), "written");
    }

    #[test]
    fn secrets_are_excluded_and_deletes_need_a_file() {
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "shop"}});
        let d = decide_upsert(
            secret.clone(),
            "secrets",
            &layout(),
            &ExclusionPolicy::default(),
            None,
        )
        .unwrap();
        assert_eq!(d.label(), "excluded");
        let d = decide_upsert(
            secret.clone(),
            "secrets",
            &layout(),
            &ExclusionPolicy::allowing_secrets(),
            None,
        )
        .unwrap();
        assert_eq!(d.label(), "written");
        assert_eq!(
            decide_delete(&secret, "secrets", &layout(), false)
                .unwrap()
                .label(),
            "no-file"
        );
        assert_eq!(
            decide_delete(&secret, "secrets", &layout(), true)
                .unwrap()
                .label(),
            "deleted"
        );
    }

    /// A SOPS file whose keyed hash the agent cannot check (written under another hash key):
    /// with the destination's age identities it is opened and, holding the live values, kept;
    /// without them, or for another value, it is encrypted again.
    #[test]
    fn a_sops_file_from_another_hash_key_is_kept_when_it_decrypts_to_the_live_secret() {
        use crate::secrets::{Encryption, Identities, Recipients};
        let id = age::x25519::Identity::generate();
        let recipients = Recipients::parse([id.to_public().to_string().as_str()]).unwrap();
        let identities = || {
            let key = secrecy::ExposeSecret::expose_secret(&id.to_string()).to_string();
            Identities::parse(&key, "test").unwrap()
        };
        let layout = |encryption: Encryption| Layout {
            encryption: Some(encryption),
            ..layout()
        };
        let secret = |password: &str| {
            json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": "db", "namespace": "shop", "resourceVersion": "3"},
                "data": {"password": password}})
        };
        let policy = ExclusionPolicy::allowing_secrets();
        let before = Encryption::new(recipients.clone(), b"the old cluster key".to_vec());
        let Decision::Write { content, path, .. } = decide_upsert(
            secret("aHVudGVyMg=="),
            "secrets",
            &layout(before),
            &policy,
            None,
        )
        .unwrap() else {
            panic!("written")
        };
        assert!(path.ends_with("/db.sops.yaml"), "{path}");
        let git_doc = parse_single_document(&content, &path).unwrap();
        let now = Encryption::new(recipients, b"the new cluster key".to_vec());
        let decide = |encryption: &Encryption, password: &str| {
            decide_upsert(
                secret(password),
                "secrets",
                &layout(encryption.clone()),
                &policy,
                Some(&git_doc),
            )
            .unwrap()
            .label()
        };
        assert_eq!(
            decide(&now, "aHVudGVyMg=="),
            "written",
            "no identities: encrypted again"
        );
        let verified = now.clone().with_identities(identities());
        assert_eq!(decide(&verified, "aHVudGVyMg=="), "exact");
        assert_eq!(decide(&verified, "b3RoZXI="), "written", "another value");

        // The reconcile keeps Git's bytes the same way.
        let git: HashMap<String, Vec<u8>> = HashMap::from([(path.clone(), content.clone())]);
        let render = |encryption: Encryption| {
            let listed = Listed {
                resource: "secrets".into(),
                object: secret("aHVudGVyMg=="),
                exclusions: None,
            };
            render_folder([listed], &layout(encryption), &policy, &git).objects
        };
        assert!(
            render(verified)[0].keep,
            "Git's document stays byte for byte"
        );
        let again = &render(now)[0];
        assert!(!again.keep);
        assert_ne!(again.content, content);
    }

    #[test]
    fn a_hand_written_file_without_server_defaults_is_near() {
        let git = b"apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: shop\nspec:\n  ports:\n  - port: 80\n  selector:\n    app: web\n";
        let live = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "shop", "managedFields": [{"manager": "kustomize-controller",
                "operation": "Apply", "apiVersion": "v1", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:spec": {"f:ports": {"k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:port": {}}}, "f:selector": {}}}}]},
            "spec": {"ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}], "selector": {"app": "web"},
                "sessionAffinity": "None", "type": "ClusterIP", "clusterIP": "10.0.0.7"}});
        let d = decide_upsert(
            live,
            "services",
            &layout(),
            &ExclusionPolicy::default(),
            Some(&parse_single_document(git, "git").unwrap()),
        )
        .unwrap();
        assert_eq!(d.label(), "near", "{d:?}");
    }
}

/// The complete desired content of a destination folder from complete listings: every kept
/// object rendered at its path (relative to the folder). Excluded objects are counted by rule.
#[derive(Debug, Default)]
pub struct FolderContent {
    /// Every object to hold, found wherever the folder has it.
    pub objects: Vec<crate::git::snapshot::SnapshotObject>,
    /// Identity key → the content hash its document records.
    pub hashes: Vec<(String, ContentHash)>,
    pub excluded: std::collections::BTreeMap<&'static str, usize>,
    /// Objects that could not be rendered, with the reason (they are reported, not written).
    pub invalid: Vec<String>,
}

impl FolderContent {
    /// Adds what another part of the listing rendered (the folder rendered page by page).
    pub fn extend(&mut self, other: FolderContent) {
        self.objects.extend(other.objects);
        self.hashes.extend(other.hashes);
        for (rule, count) in other.excluded {
            *self.excluded.entry(rule).or_default() += count;
        }
        self.invalid.extend(other.invalid);
    }
}

/// A Secret's SOPS document: `None` (Git's stays) when its keyed hash is the live value's, or
/// when it decrypts with the destination's identities to the live Secret (re-encrypting would
/// change every byte and make a commit of nothing), else a new encryption. The hash returned
/// is the one the document records.
fn sealed_file(
    doc: Value,
    id: &ObjectIdentity,
    path: &str,
    encryption: &crate::secrets::Encryption,
    git: &dyn GitView,
) -> Result<(ContentHash, Option<String>), crate::secrets::SopsError> {
    let hash = encryption.hash(&doc);
    if let Some(held) = git.document(id, path) {
        let recorded = recorded_hash(&held);
        if recorded == hash || encryption.decrypts_to(&held, &doc) {
            return Ok((recorded, None));
        }
    }
    crate::secrets::seal(doc, encryption, jiff::Timestamp::now())
        .map(|(hash, text)| (hash, Some(text)))
}

/// One object a reconcile listed for a destination.
#[derive(Clone, Debug)]
pub struct Listed {
    /// The plural of the resource it came from, for the path.
    pub resource: String,
    pub object: Value,
    /// The exclusions of the rules that select it, on top of the destination's.
    pub exclusions: Option<std::sync::Arc<crate::manifest::user_exclude::UserExclusions>>,
}

/// Renders listed objects into the folder's desired content. `git` is the folder as last
/// pushed (for the SOPS files that stay).
pub fn render_folder(
    objects: impl IntoIterator<Item = Listed>,
    layout: &Layout,
    policy: &ExclusionPolicy,
    git: &dyn GitView,
) -> FolderContent {
    let mut out = FolderContent::default();
    for Listed {
        resource,
        object,
        exclusions,
    } in objects
    {
        let label = crate::manifest::object::describe(&object);
        let with_rules;
        let policy = match exclusions {
            Some(rules) => {
                with_rules = policy.with_rules(Some(&rules));
                &with_rules
            }
            None => policy,
        };
        // Git's document, when it has one: a person's equivalent document stays as it is.
        let held = ObjectId::of(&object).ok().and_then(|id| {
            let path = layout.path(&id, &resource);
            git.document(&id.identity(), &path)
                .map(|doc| (doc, object.clone()))
        });
        match prepare(object, policy) {
            Ok(Outcome::Kept(mut manifest)) => {
                let (path, bundle) = layout.placement(&manifest.id, &resource);
                let identity = manifest.id.identity();
                let encryption = layout.encryption_for(&manifest.id);
                if let (None, Some((doc, live))) = (encryption, &held) {
                    let recorded = recorded_hash(doc);
                    if recorded == manifest.hash
                        || crate::manifest::pipeline::compare_with(doc, live, policy)
                            .0
                            .is_equivalent()
                    {
                        out.hashes.push((identity.key(), recorded));
                        out.objects.push(crate::git::snapshot::SnapshotObject {
                            id: identity,
                            path,
                            bundle,
                            content: Vec::new(),
                            hash: recorded,
                            keep: true,
                        });
                        continue;
                    }
                }
                let rendered = match encryption {
                    Some(encryption) => {
                        sealed_file(manifest.doc, &identity, &path, encryption, git)
                            .map(|(hash, text)| {
                                manifest.hash = hash;
                                text
                            })
                            .map_err(|e| e.to_string())
                    }
                    None => to_yaml(&manifest.doc).map(Some).map_err(|e| e.to_string()),
                };
                match rendered {
                    Ok(text) => {
                        out.hashes.push((identity.key(), manifest.hash));
                        out.objects.push(crate::git::snapshot::SnapshotObject {
                            id: identity,
                            path,
                            bundle,
                            keep: text.is_none(),
                            content: text.map(String::into_bytes).unwrap_or_default(),
                            hash: manifest.hash,
                        });
                    }
                    Err(e) => out.invalid.push(format!("{label}: {e}")),
                }
            }
            Ok(Outcome::Skipped { exclusion, .. }) => {
                *out.excluded.entry(exclusion.rule).or_default() += 1
            }
            Err(e) => out.invalid.push(format!("{label}: {e}")),
        }
    }
    out
}
