//! `replay`: rebuilds a folder's Git history from kube-apiserver audit logs, with no cluster,
//! through the same manifest core, commit windows and worker as the live agent.

use crate::audit::change::{
    AuditChange, ChangeKind, ChangeTarget, Classified, ScaleChange, Verb, classify,
};
use crate::audit::read::read_events;
use crate::git::change::{Change, FileChange};
use crate::git::registry::{Registry, RegistryError};
use crate::git::store::Store;
use crate::git::transport::{GitCli, Remote, Transport, TransportError};
use crate::git::url::NormalizedUrl;
use crate::git::window::WindowConfig;
use crate::git::worker::{Clock, WorkerConfig, WorkerError};
use crate::identity::{AuthorMapping, UserInfo};
use crate::manifest::exclude::ExclusionPolicy;
use crate::manifest::hash::hash_and_stamp;
use crate::manifest::layout::{Location, PathTemplate};
use crate::manifest::pipeline::{Outcome, prepare};
use crate::manifest::sanitize::sanitize;
use crate::manifest::yaml::to_yaml;
use jiff::Timestamp;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// What to replay into where.
#[derive(Clone)]
pub struct ReplayOptions {
    pub repo: Remote,
    pub branch: String,
    pub folder: String,
    pub state_dir: PathBuf,
    pub windows: WindowConfig,
    pub authors: AuthorMapping,
    pub exclusions: ExclusionPolicy,
    pub template: PathTemplate,
    /// Identity in the ownership marker: the cluster the log came from, and a destination name.
    pub cluster: String,
    pub destination: String,
    /// Signs every commit of the replay, when set.
    pub signer: Option<std::sync::Arc<crate::git::signing::SshSigner>>,
}

/// What a replay did, for the summary it prints.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub events: usize,
    /// Changes that went to the worker.
    pub used: usize,
    /// Skips by reason (audit filtering, exclusions, unknown parents...).
    pub skipped: BTreeMap<String, usize>,
    /// Changes dropped because Git already holds the object's final state from this log.
    pub already_in_git: usize,
    pub commits: u64,
    pub pushes: u64,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "events read: {}", self.events)?;
        writeln!(f, "changes used: {}", self.used)?;
        writeln!(f, "already in Git: {}", self.already_in_git)?;
        writeln!(f, "skipped: {}", self.skipped.values().sum::<usize>())?;
        for (reason, count) in &self.skipped {
            writeln!(f, "  {reason}: {count}")?;
        }
        writeln!(f, "commits: {}", self.commits)?;
        write!(f, "pushes: {}", self.pushes)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("cannot read {input}: {source}")]
    Read {
        input: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error(transparent)]
    Store(#[from] crate::git::store::StoreError),
    #[error(transparent)]
    Worker(#[from] WorkerError),
    #[error("{0}")]
    Push(std::sync::Arc<WorkerError>),
    #[error("the fetch did not finish: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// How often `replay` tries again to push to a remote that does not answer (about 4 minutes in
/// all) before it gives up.
const REPLAY_RETRIES: u32 = 8;

/// One planned file change with the time it was made.
struct Planned {
    change: Change,
}

/// Reads the logs, plans the changes, drops those Git already reflects, and sends the rest
/// through a worker whose windows measure time by the changes' own timestamps.
pub async fn replay(inputs: &[PathBuf], options: ReplayOptions) -> Result<Summary, ReplayError> {
    let mut summary = Summary::default();
    let mut events = Vec::new();
    for input in inputs {
        let name = input.display().to_string();
        let file = std::fs::File::open(input).map_err(|source| ReplayError::Read {
            input: name.clone(),
            source,
        })?;
        let read = read_events(std::io::BufReader::new(file), &name)?;
        for malformed in &read.malformed {
            tracing::warn!(input = %malformed.input, position = %malformed.position, problem = %malformed.message, "skipping malformed audit entry");
            *summary.skipped.entry("malformed".into()).or_default() += 1;
        }
        events.extend(read.events);
    }
    summary.events = events.len() + summary.skipped.get("malformed").copied().unwrap_or(0);
    let mut planned = plan(events.iter().map(classify), &options, &mut summary.skipped);

    // Git may already hold what this log leads to (a second replay, or a running agent).
    let transport: Arc<dyn Transport> = Arc::new(GitCli::new());
    let url = NormalizedUrl::parse(&options.repo.url).map_err(RegistryError::from)?;
    let store = Store::open(&options.state_dir, &url)?;
    let tip = {
        let (transport, remote, dir, branch) = (
            transport.clone(),
            options.repo.clone(),
            store.dir().to_path_buf(),
            options.branch.clone(),
        );
        tokio::task::spawn_blocking(move || transport.fetch_branch(&dir, &remote, &branch))
            .await??
    };
    // Replaying the same log twice adds nothing: the history's Audit-ID trailers say which
    // changes an earlier replay recorded. Changes are in time order, so everything up to the
    // last recorded one was handled then (committed, or dropped because the file already had
    // that content) and is skipped now.
    let recorded = store.trailer_values(tip, crate::git::change::AUDIT_ID_TRAILER)?;
    let high_water = planned.iter().rposition(|p| {
        p.change
            .audit_id
            .as_ref()
            .is_some_and(|id| recorded.contains(id))
    });
    if let Some(last) = high_water {
        planned.drain(..=last);
        summary.already_in_git = last + 1;
    }
    summary.used = planned.len();

    let config = WorkerConfig {
        windows: options.windows,
        clock: Clock::Events,
        cluster: options.cluster.clone(),
        signer: options.signer.clone(),
        ..WorkerConfig::default()
    };
    let registry = Registry::new(&options.state_dir, transport, config);
    let worker = registry.acquire(options.repo.clone(), &options.branch, "replay")?;
    for p in planned {
        worker.send(p.change).await?;
    }
    // Another writer on the branch is retried inside the push round for as long as the remote
    // answers; an unreachable remote is retried here a while; only a permanent error (or a
    // remote that stays away) ends the replay with a non-zero exit.
    let mut result = worker.flush().await;
    let mut retries = 0u32;
    while let Err(e) = &result {
        let transient = match &**e {
            WorkerError::Transport { source, .. } => !source.is_permanent(),
            WorkerError::Contended { .. } => true,
            _ => false,
        };
        if !transient || retries >= REPLAY_RETRIES {
            break;
        }
        retries += 1;
        let wait = std::time::Duration::from_secs(1u64 << retries.min(5));
        tracing::warn!(error = %e, retry_in = ?wait, attempt = retries, "push failed; retrying");
        tokio::time::sleep(wait).await;
        result = worker.flush().await;
    }
    summary.commits = worker.stats().commits.load(Ordering::Relaxed);
    summary.pushes = worker.stats().pushes.load(Ordering::Relaxed);
    registry.release("replay");
    result.map_err(ReplayError::Push)?;
    Ok(summary)
}

/// Turns classified events into file changes, in the order the requests were received.
fn plan(
    classified: impl Iterator<Item = Classified>,
    options: &ReplayOptions,
    skipped: &mut BTreeMap<String, usize>,
) -> Vec<Planned> {
    enum Step {
        Change(AuditChange),
        Scale(ScaleChange),
    }
    let mut steps: Vec<(Timestamp, usize, Step)> = Vec::new();
    for (seq, c) in classified.enumerate() {
        match c {
            Classified::Change(change) => {
                steps.push((change.request_received, seq, Step::Change(change)))
            }
            Classified::Changes(changes) => steps.extend(
                changes
                    .into_iter()
                    .map(|c| (c.request_received, seq, Step::Change(c))),
            ),
            Classified::Scale(scale) => {
                steps.push((scale.request_received, seq, Step::Scale(scale)))
            }
            Classified::Skipped(reason) => *skipped.entry(reason.label()).or_default() += 1,
        }
    }
    steps.sort_by_key(|(time, seq, _)| (*time, *seq));
    let mut skip = |reason: String| *skipped.entry(reason).or_default() += 1;
    // The last written document per path, for scale changes.
    let mut known: HashMap<String, Value> = HashMap::new();
    let mut out = Vec::new();
    for (time, _, step) in steps {
        match step {
            Step::Change(change) => {
                let (user, impersonator) =
                    (change.author_user().clone(), change.impersonator().cloned());
                let verb = verb_word(change.verb, change.kind);
                let file = match (change.kind.removes_object(), change.object) {
                    (false, Some(object)) => match prepare(object, &options.exclusions) {
                        Ok(Outcome::Kept(manifest)) => {
                            let path = manifest.path(
                                &options.template,
                                &options.folder,
                                Some(&change.target.resource),
                            );
                            let content = match to_yaml(&manifest.doc) {
                                Ok(text) => text,
                                Err(e) => {
                                    skip(format!("unwritable object: {e}"));
                                    continue;
                                }
                            };
                            known.insert(path.clone(), manifest.doc.clone());
                            FileChange {
                                summary: format!("{verb} {}", manifest.id.summary()),
                                path,
                                content: Some(content.into_bytes().into()),
                                hash: Some(manifest.hash),
                                namespace: manifest.id.namespace.clone(),
                                live: None,
                                object: Some(manifest.id.identity()),
                                bundle: false,
                            }
                        }
                        Ok(Outcome::Skipped { exclusion, .. }) => {
                            skip(format!("excluded: {}", exclusion.rule));
                            continue;
                        }
                        Err(e) => {
                            skip(format!("not an object: {e}"));
                            continue;
                        }
                    },
                    (false, None) => {
                        skip("no object".into());
                        continue;
                    }
                    (true, _) => {
                        let Some(path) = target_path(&change.target, options) else {
                            skip("delete of an unknown kind".into());
                            continue;
                        };
                        // The kind is known when this replay saw the object; else the resource.
                        let seen = known
                            .remove(&path)
                            .and_then(|doc| crate::manifest::ObjectId::of(&doc).ok());
                        let what = seen
                            .as_ref()
                            .map_or_else(|| change.target.to_string(), |id| id.summary());
                        FileChange {
                            summary: format!("delete {what}"),
                            path,
                            content: None,
                            hash: None,
                            namespace: change.target.namespace.clone(),
                            live: None,
                            object: seen.map(|id| id.identity()),
                            bundle: false,
                        }
                    }
                };
                out.push(planned(
                    options,
                    change.audit_id.as_ref(),
                    &user,
                    impersonator.as_ref(),
                    time,
                    file,
                ));
            }
            Step::Scale(scale) => {
                let Some(path) = target_path(&scale.parent, options) else {
                    skip("scale of an unknown kind".into());
                    continue;
                };
                let Some(mut doc) = known.get(&path).cloned() else {
                    skip("scale of an object not seen before".into());
                    continue;
                };
                if let Some(spec) = doc.get_mut("spec").and_then(Value::as_object_mut) {
                    spec.insert("replicas".into(), Value::from(scale.replicas));
                }
                sanitize(&mut doc);
                let hash = hash_and_stamp(&mut doc);
                let object = crate::manifest::ObjectId::of(&doc)
                    .ok()
                    .map(|id| id.identity());
                let Ok(content) = to_yaml(&doc) else {
                    skip("unwritable object".into());
                    continue;
                };
                known.insert(path.clone(), doc);
                let file = FileChange {
                    summary: format!("scale {} to {}", scale.parent, scale.replicas),
                    path,
                    content: Some(content.into_bytes().into()),
                    hash: Some(hash),
                    namespace: scale.parent.namespace.clone(),
                    live: None,
                    object,
                    bundle: false,
                };
                out.push(planned(
                    options,
                    scale.audit_id.as_ref(),
                    scale.author_user(),
                    scale.impersonator(),
                    time,
                    file,
                ));
            }
        }
    }
    out
}

fn planned(
    options: &ReplayOptions,
    audit_id: Option<&String>,
    user: &UserInfo,
    impersonator: Option<&UserInfo>,
    time: Timestamp,
    file: FileChange,
) -> Planned {
    Planned {
        change: Change {
            folder: options.folder.clone(),
            destination: options.destination.clone(),
            author: options.authors.author(user),
            user: Some(user.username.clone()).filter(|u| !u.is_empty()),
            impersonator: impersonator.map(|u| u.username.clone()),
            audit_id: audit_id.cloned(),
            received: time,
            file,
        },
    }
}

fn verb_word(verb: Verb, kind: ChangeKind) -> &'static str {
    match (verb, kind) {
        (Verb::Create, _) => "create",
        (_, ChangeKind::DeletePending) => "delete (pending finalizers)",
        _ => "update",
    }
}

/// The file path of a target known only by its reference (deletes, scale parents).
fn target_path(target: &ChangeTarget, options: &ReplayOptions) -> Option<String> {
    let kind = target.kind.clone().unwrap_or_default();
    let at = Location {
        group: &target.group,
        version: &target.version,
        kind: &kind,
        resource: &target.resource,
        namespace: target.namespace.as_deref(),
        name: &target.name,
    };
    if target.resource.is_empty() || (kind.is_empty() && options.template.uses_kind()) {
        return None;
    }
    Some(options.template.path_in(&options.folder, &at))
}
