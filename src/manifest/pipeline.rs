//! The object pipeline of the core, in one call: exclusion check, sanitize, content hash and
//! stamp, path — what a live object becomes in Git, or why it is not written.

use super::equivalence::{Verdict, compare};
use super::exclude::{Exclusion, ExclusionPolicy, exclusion};
use super::hash::{ContentHash, hash_and_stamp};
use super::layout::{Location, PathTemplate, guess_resource};
use super::object::{ObjectError, ObjectId};
use super::sanitize::sanitize;
use super::user_exclude::{ExcludedField, remove_fields};
use serde_json::Value;

/// An object as it is written to Git: sanitized, with its hash stamped in.
#[derive(Clone, Debug, PartialEq)]
pub struct Manifest {
    pub id: ObjectId,
    pub hash: ContentHash,
    pub doc: Value,
    /// Fields a user's exclusions removed, with the rule that did.
    pub excluded_fields: Vec<ExcludedField>,
}

impl Manifest {
    /// The file path inside `folder`. `resource` is the plural name from discovery; when it is
    /// not known, Kubernetes' own guess from the kind is used.
    pub fn path(&self, template: &PathTemplate, folder: &str, resource: Option<&str>) -> String {
        let guessed;
        let resource = match resource {
            Some(r) => r,
            None => {
                guessed = guess_resource(&self.id.kind);
                &guessed
            }
        };
        let at = Location {
            group: &self.id.group,
            version: &self.id.version,
            kind: &self.id.kind,
            resource,
            namespace: self.id.namespace.as_deref(),
            name: &self.id.name,
        };
        if folder.is_empty() || folder == "." {
            template.render(&at)
        } else {
            template.path_in(folder, &at)
        }
    }
}

/// What the pipeline decided for one object.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Kept(Manifest),
    Skipped { id: ObjectId, exclusion: Exclusion },
}

/// Runs an object through the core: excluded objects are reported with their reason (checked
/// before sanitize, which removes the owner references the check needs); kept objects come back
/// sanitized and stamped.
pub fn prepare(mut obj: Value, policy: &ExclusionPolicy) -> Result<Outcome, ObjectError> {
    let id = ObjectId::of(&obj)?;
    if let Some(exclusion) = exclusion(&obj, policy) {
        return Ok(Outcome::Skipped { id, exclusion });
    }
    // Owned fields are read from managedFields, which sanitize removes.
    let fields = policy.user.fields_of(&obj);
    sanitize(&mut obj);
    let excluded_fields = remove_fields(&mut obj, &fields);
    let hash = hash_and_stamp(&mut obj);
    Ok(Outcome::Kept(Manifest {
        id,
        hash,
        doc: obj,
        excluded_fields,
    }))
}

/// The fields of `live` (as the API server sent it) that a user's exclusions leave out of its
/// file, with the rule of each (fields sanitize removes anyway are not named).
pub fn excluded_fields(live: &Value, policy: &ExclusionPolicy) -> Vec<ExcludedField> {
    let fields = policy.user.fields_of(live);
    if fields.is_empty() {
        return fields;
    }
    remove_fields(&mut super::sanitize::sanitized(live), &fields)
}

/// The verdict between a Git document and a live object with the fields a user's exclusions
/// leave out removed from both (found on the live object), and which were.
pub fn compare_with(
    git: &Value,
    live: &Value,
    policy: &ExclusionPolicy,
) -> (Verdict, Vec<ExcludedField>) {
    let fields = policy.user.fields_of(live);
    if fields.is_empty() {
        return (compare(git, live), Vec::new());
    }
    let said = excluded_fields(live, policy);
    let (mut git, mut live) = (git.clone(), live.clone());
    remove_fields(&mut git, &fields);
    remove_fields(&mut live, &fields);
    (compare(&git, &live), said)
}

/// Expands a `List` (`kind: List` or any `…List` with `items`) into its items, filling in an
/// item's missing `apiVersion`/`kind` from the list (`DeploymentList` → `Deployment`), as the
/// API server omits them in typed lists. Anything else is returned as the single document.
pub fn expand_list(doc: Value) -> Vec<Value> {
    let is_list = doc
        .get("kind")
        .and_then(Value::as_str)
        .is_some_and(|k| k.ends_with("List"))
        && doc.get("items").is_some_and(Value::is_array);
    if !is_list {
        return vec![doc];
    }
    let Value::Object(mut list) = doc else {
        return Vec::new();
    };
    let kind = list.get("kind").and_then(Value::as_str).unwrap_or_default();
    let item_kind = kind
        .strip_suffix("List")
        .filter(|k| !k.is_empty())
        .map(str::to_string);
    let api_version = list.get("apiVersion").cloned();
    let Some(Value::Array(items)) = list.remove("items") else {
        return Vec::new();
    };
    items
        .into_iter()
        .map(|mut item| {
            if let (Some(map), Some(kind)) = (item.as_object_mut(), &item_kind) {
                if !map.contains_key("kind") {
                    map.insert("kind".into(), Value::String(kind.clone()));
                }
                if let Some(v) = &api_version
                    && !map.contains_key("apiVersion")
                {
                    map.insert("apiVersion".into(), v.clone());
                }
            }
            item
        })
        .collect()
}
