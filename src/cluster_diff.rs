//! `diff` against a live cluster: every document of a Git folder compared with the object the
//! cluster holds, plus the cluster's objects of those kinds that Git lacks; and the RFC 6902
//! patch that brings one live object back to its Git document (`diff --output json-patch`).

use crate::git::store::Store;
use crate::git::transport::{GitCli, Remote, Transport};
use crate::git::url::NormalizedUrl;
use crate::manifest::equivalence::{Verdict, compare};
use crate::manifest::exclude::{ExclusionPolicy, exclusion};
use crate::manifest::object::ObjectId;
use crate::manifest::sanitize::sanitized;
use crate::manifest::yaml::to_yaml;
use kube::api::{Api, DynamicObject, ListParams};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Where the Git side comes from.
pub enum GitSource {
    /// A local checkout: the folder inside it.
    Dir(PathBuf),
    /// A remote repository: fetched into `state_dir`, the folder at the branch tip.
    Repo {
        remote: Remote,
        branch: String,
        folder: String,
        state_dir: PathBuf,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterDiffError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Yaml(#[from] crate::manifest::yaml::YamlError),
    #[error(transparent)]
    Store(#[from] crate::git::store::StoreError),
    #[error(transparent)]
    Transport(#[from] crate::git::transport::TransportError),
    #[error(transparent)]
    Url(#[from] crate::git::url::UrlError),
    #[error("branch {branch} does not exist in {url}")]
    NoBranch { url: String, branch: String },
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("cannot write output: {0}")]
    Write(#[from] std::io::Error),
}

/// The object documents of the folder, found as the agent finds them (multi-document files, the
/// namespace a listing kustomization gives): (file name, document). Files that do not read and
/// documents that are no object are reported and left out; kustomizations are not objects.
fn git_documents(source: &GitSource) -> Result<Vec<(String, Value)>, ClusterDiffError> {
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut folder_in_index = String::new();
    match source {
        GitSource::Dir(dir) => {
            let mut stack = vec![dir.clone()];
            while let Some(at) = stack.pop() {
                let entries = std::fs::read_dir(&at).map_err(|source| ClusterDiffError::Read {
                    path: at.display().to_string(),
                    source,
                })?;
                for entry in entries.flatten() {
                    let path = entry.path();
                    if path.is_dir() {
                        if path.file_name().is_none_or(|n| n != ".git") {
                            stack.push(path);
                        }
                    } else if is_manifest(&path) {
                        let bytes =
                            std::fs::read(&path).map_err(|source| ClusterDiffError::Read {
                                path: path.display().to_string(),
                                source,
                            })?;
                        let relative = path.strip_prefix(dir).unwrap_or(&path);
                        files.insert(relative.display().to_string(), bytes);
                    }
                }
            }
        }
        GitSource::Repo {
            remote,
            branch,
            folder,
            state_dir,
        } => {
            let store = Store::open(state_dir, &NormalizedUrl::parse(&remote.url)?)?;
            let tip = GitCli::new()
                .fetch_branch(store.dir(), remote, branch)?
                .ok_or_else(|| ClusterDiffError::NoBranch {
                    url: crate::git::url::redact(&remote.url),
                    branch: branch.clone(),
                })?;
            for path in store.folder_files(Some(tip), folder)?.into_keys() {
                if is_manifest(Path::new(&path))
                    && let Some(bytes) = store.read_file(Some(tip), &path)?
                {
                    files.insert(path, bytes);
                }
            }
            folder_in_index = folder.clone();
        }
    }
    let load = |path: &str| files.get(path).cloned();
    let index = crate::folder::FolderIndex::build(
        &folder_in_index,
        files.keys().map(|path| (path.clone(), [0u8; 20])),
        &load,
    );
    for note in index.notes(&load) {
        tracing::warn!(%note, "a file of the folder is left out of the diff");
    }
    let workspace = crate::folder::Workspace::new(&index, &load);
    let mut docs = Vec::new();
    for place in index.all_places() {
        if let Some(doc) = index
            .identity_at(&place, &load)
            .and_then(|id| workspace.document(&id))
        {
            docs.push((place.path.to_string(), doc));
        }
    }
    Ok(docs)
}

fn is_manifest(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

/// Compares the folder with the cluster and prints one verdict per object; returns true when
/// everything is equivalent.
pub async fn diff_cluster(
    client: kube::Client,
    source: &GitSource,
    out: &mut dyn Write,
) -> Result<bool, ClusterDiffError> {
    let docs = git_documents(source)?;
    let mut all_equivalent = true;
    let mut seen: BTreeSet<ObjectId> = BTreeSet::new();
    // (apiVersion, kind) → namespaces the folder has them in (None: cluster-scoped).
    let mut kinds: BTreeMap<(String, String), BTreeSet<Option<String>>> = BTreeMap::new();
    for (file, git) in &docs {
        let Ok(id) = ObjectId::of(git) else {
            writeln!(out, "{file}: not a Kubernetes object; skipped")?;
            continue;
        };
        kinds
            .entry((id.api_version(), id.kind.clone()))
            .or_default()
            .insert(id.namespace.clone());
        seen.insert(id.clone());
        let api = match api_for(
            &client,
            &id.api_version(),
            &id.kind,
            id.namespace.as_deref(),
        )
        .await
        {
            Some(api) => api,
            None => {
                all_equivalent = false;
                writeln!(
                    out,
                    "{id}: missing in cluster (the cluster does not serve {} {})",
                    id.api_version(),
                    id.kind
                )?;
                continue;
            }
        };
        let live = match api.get_opt(&id.name).await? {
            Some(live) => serde_json::to_value(&live).unwrap_or(Value::Null),
            None => {
                all_equivalent = false;
                writeln!(out, "{id}: missing in cluster")?;
                continue;
            }
        };
        match compare(git, &live) {
            Verdict::Different { paths } => {
                all_equivalent = false;
                let (git_yaml, live_yaml) =
                    (to_yaml(&sanitized(git))?, to_yaml(&sanitized(&live))?);
                let diff = similar::TextDiff::from_lines(&git_yaml, &live_yaml);
                writeln!(out, "{id}: different: {}", paths.join(", "))?;
                write!(
                    out,
                    "{}",
                    diff.unified_diff()
                        .context_radius(3)
                        .header(&format!("git: {file}"), "live")
                )?;
            }
            verdict => writeln!(out, "{id}: {verdict}")?,
        }
    }
    // Objects of the same kinds, in the same namespaces, that Git lacks.
    let policy = ExclusionPolicy::default();
    for ((api_version, kind), namespaces) in kinds {
        for namespace in namespaces {
            let Some(api) = api_for(&client, &api_version, &kind, namespace.as_deref()).await
            else {
                continue;
            };
            for live in api.list(&ListParams::default()).await?.items {
                let mut value = serde_json::to_value(&live).unwrap_or(Value::Null);
                if let Some(map) = value.as_object_mut() {
                    map.entry("apiVersion")
                        .or_insert_with(|| Value::String(api_version.clone()));
                    map.entry("kind")
                        .or_insert_with(|| Value::String(kind.clone()));
                }
                let Ok(id) = ObjectId::of(&value) else {
                    continue;
                };
                if !seen.iter().any(|s| s.same_object(&id)) && exclusion(&value, &policy).is_none()
                {
                    all_equivalent = false;
                    writeln!(out, "{id}: missing in Git")?;
                }
            }
        }
    }
    Ok(all_equivalent)
}

/// The RFC 6902 JSON patch that makes `live` (the object as the API server returns it)
/// equivalent to the Git document again, for `kubectl patch --type json`. It is computed between
/// the sanitized documents, so status, managed fields and the annotations sanitize drops are
/// never touched; where sanitize dropped keys inside a map the patch adds to or removes (say,
/// annotations beside the last-applied one), it names the keys one by one, so the live object's
/// other keys there stay. Then every replacement or removal that [`compare`] does not need (a
/// server default no field manager owns, `1000m` for `"1"`) is left out: the patch changes what
/// `diff` calls different and nothing else.
pub fn patch_to_git(git: &Value, live: &Value) -> json_patch::Patch {
    use json_patch::{AddOperation, PatchOperation, RemoveOperation};
    let live_clean = sanitized(live);
    let mut ops = Vec::new();
    for op in json_patch::diff(&live_clean, &sanitized(git)).0 {
        match op {
            PatchOperation::Add(AddOperation { path, value }) => {
                add_keeping_live_keys(live, path, value, &mut ops);
            }
            PatchOperation::Remove(RemoveOperation { path }) => {
                remove_keeping_live_keys(live, &live_clean, path, &mut ops);
            }
            op => ops.push(op),
        }
    }
    // Last first; only replacements and removals of object members are candidates, since
    // leaving one out shifts no array index another operation names.
    for at in (0..ops.len()).rev() {
        if shifts_no_index(live, &ops[at]) {
            let mut without = ops.clone();
            without.remove(at);
            if equivalent_after(git, live, &without) {
                ops = without;
            }
        }
    }
    json_patch::Patch(ops)
}

/// Pushes `add path value`, or, when `live` holds a map at `path` and `value` is a map, one add
/// per key of `value` (recursively), so the keys only `live` has are kept.
fn add_keeping_live_keys(
    live: &Value,
    path: json_patch::jsonptr::PointerBuf,
    value: Value,
    ops: &mut Vec<json_patch::PatchOperation>,
) {
    match (live.pointer(path.as_str()), value) {
        (Some(Value::Object(_)), Value::Object(entries)) => {
            for (key, value) in entries {
                let mut child = path.clone();
                child.push_back(key.as_str());
                add_keeping_live_keys(live, child, value, ops);
            }
        }
        (_, value) => ops.push(json_patch::PatchOperation::Add(json_patch::AddOperation {
            path,
            value,
        })),
    }
}

/// Pushes `remove path`, or, when sanitize dropped something inside the map at `path`, one
/// remove per key the sanitized live object has there (recursively), so the dropped keys stay.
fn remove_keeping_live_keys(
    live: &Value,
    live_clean: &Value,
    path: json_patch::jsonptr::PointerBuf,
    ops: &mut Vec<json_patch::PatchOperation>,
) {
    match (
        live.pointer(path.as_str()),
        live_clean.pointer(path.as_str()),
    ) {
        (Some(raw @ Value::Object(_)), Some(clean @ Value::Object(keys))) if raw != clean => {
            for key in keys.keys() {
                let mut child = path.clone();
                child.push_back(key.as_str());
                remove_keeping_live_keys(live, live_clean, child, ops);
            }
        }
        _ => ops.push(json_patch::PatchOperation::Remove(
            json_patch::RemoveOperation { path },
        )),
    }
}

/// Whether `op` replaces a value, or removes a member of an object of `live` (not an array
/// element).
fn shifts_no_index(live: &Value, op: &json_patch::PatchOperation) -> bool {
    let remove = match op {
        json_patch::PatchOperation::Replace(_) => return true,
        json_patch::PatchOperation::Remove(remove) => remove,
        _ => return false,
    };
    remove
        .path
        .as_str()
        .rsplit_once('/')
        .and_then(|(parent, _)| live.pointer(parent))
        .is_some_and(Value::is_object)
}

/// Whether `live` with `ops` applied is equivalent to `git`.
fn equivalent_after(git: &Value, live: &Value, ops: &[json_patch::PatchOperation]) -> bool {
    let mut after = live.clone();
    json_patch::patch(&mut after, ops).is_ok()
        && matches!(compare(git, &after), Verdict::Equivalent(_))
}

async fn api_for(
    client: &kube::Client,
    api_version: &str,
    kind: &str,
    namespace: Option<&str>,
) -> Option<Api<DynamicObject>> {
    let gvk = kube::core::GroupVersionKind::try_from(&kube::core::TypeMeta {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
    })
    .ok()?;
    let (resource, capabilities) = kube::discovery::pinned_kind(client, &gvk).await.ok()?;
    Some(match (namespace, capabilities.scope) {
        (Some(ns), kube::discovery::Scope::Namespaced) => {
            Api::namespaced_with(client.clone(), ns, &resource)
        }
        _ => Api::all_with(client.clone(), &resource),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn example(file: &str) -> Value {
        let path = format!("{}/examples/objects/{file}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        crate::manifest::yaml::parse_documents(&text, file)
            .expect("YAML")
            .remove(0)
    }

    fn patched(live: &Value, patch: &json_patch::Patch) -> Value {
        let mut out = live.clone();
        json_patch::patch(&mut out, patch).expect("the patch applies to the live object");
        out
    }

    #[test]
    fn the_patch_undoes_a_kubectl_edit_and_nothing_else() {
        let (git, live) = (
            example("deployment.git.yaml"),
            example("deployment.edited.live.yaml"),
        );
        assert!(matches!(compare(&git, &live), Verdict::Different { .. }));
        let patch = patch_to_git(&git, &live);
        let after = patched(&live, &patch);
        assert!(
            matches!(compare(&git, &after), Verdict::Equivalent(_)),
            "{patch}"
        );
        // Only what `diff` names: replicas and the image; server defaults, status and
        // bookkeeping stay as the server has them.
        let paths: Vec<&str> = patch.iter().map(|op| op.path().as_str()).collect();
        assert_eq!(
            paths,
            ["/spec/replicas", "/spec/template/spec/containers/0/image"],
            "{patch}"
        );
        assert_eq!(after["status"], live["status"]);
        assert_eq!(
            after["metadata"]["annotations"],
            live["metadata"]["annotations"]
        );
    }

    #[test]
    fn a_map_git_lacks_loses_only_the_keys_sanitize_keeps() {
        let git = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "settings", "namespace": "shop"},
            "data": {"mode": "standard"}
        });
        let live = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "settings", "namespace": "shop",
                         "annotations": {"argocd.argoproj.io/tracking-id": "shop:/ConfigMap:shop/settings",
                                         "owner": "bob"}},
            "data": {"mode": "standard"}
        });
        let after = patched(&live, &patch_to_git(&git, &live));
        assert_eq!(
            after["metadata"]["annotations"],
            json!({"argocd.argoproj.io/tracking-id": "shop:/ConfigMap:shop/settings"})
        );
    }

    #[test]
    fn keys_git_adds_to_a_map_sanitize_emptied_keep_the_live_keys() {
        let git = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "settings", "namespace": "shop",
                         "annotations": {"team": "checkout"}},
            "data": {"mode": "standard"}
        });
        let live = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "settings", "namespace": "shop", "uid": "u-1",
                         "resourceVersion": "7",
                         "annotations": {"argocd.argoproj.io/tracking-id": "shop:/ConfigMap:shop/settings"}},
            "data": {"mode": "sale", "extra": "1"}
        });
        let patch = patch_to_git(&git, &live);
        let after = patched(&live, &patch);
        assert_eq!(
            after["metadata"]["annotations"],
            json!({"team": "checkout", "argocd.argoproj.io/tracking-id": "shop:/ConfigMap:shop/settings"})
        );
        assert_eq!(after["data"], json!({"mode": "standard"}));
        assert_eq!(after["metadata"]["resourceVersion"], "7");
    }

    #[test]
    fn equal_documents_give_an_empty_patch() {
        let git = example("deployment.git.yaml");
        assert!(patch_to_git(&git, &git).is_empty());
    }
}
