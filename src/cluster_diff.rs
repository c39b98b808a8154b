//! `diff` against a live cluster: every document of a Git folder compared with the object the
//! cluster holds, plus the cluster's objects of those kinds that Git lacks.

use crate::git::store::Store;
use crate::git::transport::{GitCli, Remote, Transport};
use crate::git::url::NormalizedUrl;
use crate::manifest::equivalence::{Verdict, compare};
use crate::manifest::exclude::{ExclusionPolicy, exclusion};
use crate::manifest::object::ObjectId;
use crate::manifest::sanitize::sanitized;
use crate::manifest::yaml::{parse_documents, to_yaml};
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

/// The documents of the folder: (file name, document).
fn git_documents(source: &GitSource) -> Result<Vec<(String, Value)>, ClusterDiffError> {
    let mut texts: Vec<(String, String)> = Vec::new();
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
                        let text = std::fs::read_to_string(&path).map_err(|source| {
                            ClusterDiffError::Read {
                                path: path.display().to_string(),
                                source,
                            }
                        })?;
                        texts.push((path.display().to_string(), text));
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
                    texts.push((path, String::from_utf8_lossy(&bytes).into_owned()));
                }
            }
        }
    }
    texts.sort();
    let mut docs = Vec::new();
    for (name, text) in texts {
        for doc in parse_documents(&text, &name)? {
            docs.push((name.clone(), doc));
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
