//! `GitDestination`: one folder on one branch of one `GitRepoConfig`, its file layout and
//! prune policy, plus `validate_folder`, the one check of what a folder may be.

use crate::manifest::layout::LayoutError;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::CrdError;

/// The longest `folder` accepted (keeps CEL cost bounded and paths sane).
pub use crate::manifest::layout::MAX_FOLDER_LEN;

/// One folder on one branch of a GitRepoConfig that the agent keeps equal to the objects its
/// WatchRules and ClusterWatchRules select.
// kube's printcolumn(...) entries repeat `type_ = "string"`, which this lint mistakes for
// duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, JsonSchema, PartialEq)]
#[kube(
    group = "configbutler.ai",
    version = "v1alpha1",
    kind = "GitDestination",
    namespaced,
    shortname = "gd",
    category = "gitops-reverser",
    status = "super::status::GitDestinationStatus",
    derive = "PartialEq",
    doc = "One folder on one branch of a GitRepoConfig, kept equal to the objects selected by \
           the WatchRules and ClusterWatchRules that point at it.",
    printcolumn(name = "Repo", type_ = "string", json_path = ".spec.repoRef.name"),
    printcolumn(name = "Branch", type_ = "string", json_path = ".spec.branch"),
    printcolumn(name = "Folder", type_ = "string", json_path = ".spec.folder"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct GitDestinationSpec {
    /// The GitRepoConfig to write through. Immutable: moving a destination would orphan the
    /// files it wrote; create a new GitDestination instead.
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "self == oldSelf", "message": "repoRef is immutable; create a new GitDestination"}
    ]))]
    pub repo_ref: RepoRef,

    /// Branch to write to; must match the GitRepoConfig's `allowedBranches`. Immutable.
    #[schemars(length(min = 1, max = 255))]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "self == oldSelf", "message": "branch is immutable; create a new GitDestination"}
    ]))]
    pub branch: String,

    /// Folder inside the repository that this destination owns, relative to the repository
    /// root with `/` separators, e.g. `clusters/prod`. No leading or trailing `/`, no
    /// backslash or control character, no empty, `.` or `..` segment (so the repository root
    /// itself cannot be used). Immutable. Two destinations on the same repository and branch
    /// may not share or nest folders.
    #[schemars(length(min = 1, max = MAX_FOLDER_LEN))]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "!self.startsWith('/')", "message": "folder must be relative (no leading '/')"},
        {"rule": "!self.contains('\\\\')", "message": "folder must use '/' as separator (no backslash)"},
        {"rule": "!self.matches('\\\\p{Cc}')", "message": "folder must not contain control characters"},
        {
            "rule": "!self.matches('(^|/)[.]{0,2}(/|$)')",
            "message": "folder must not contain empty, '.' or '..' segments"
        },
        {"rule": "self == oldSelf", "message": "folder is immutable; create a new GitDestination"}
    ]))]
    pub folder: String,

    /// Layout of files inside `folder`, relative to it. Placeholders: `{namespace}` (`_cluster`
    /// for cluster-scoped objects), `{group}` (`core` for the core group), `{version}`, `{kind}`,
    /// `{resource}`, `{name}`; at most one per path segment. It must end in `.yaml` or `.yml`
    /// and use `{name}` (in the file name), `{namespace}`, `{group}` and `{resource}` or
    /// `{kind}`. Default: `{namespace}/{group}/{resource}/{name}.yaml`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub path_template: Option<String>,

    /// Where new objects go, per resource or kind, before `pathTemplate` (the first placement
    /// that matches an object decides). A placement with `bundle: true` may put several
    /// objects in one file (documents ordered by name), such as `{namespace}/configmaps.yaml`.
    /// Objects the folder already holds stay where they are, in whatever file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub placements: Vec<Placement>,

    /// Which documents of objects that are gone leave `folder`. `Sweep` (default): on a delete
    /// event, and at every reconcile those of a type the rules watch whose complete listing
    /// lacked them. `OnEvent`: only on a watched delete event, never inferred at a reconcile.
    /// `Never`: nothing is removed, deletes included. Files that are no object documents (a
    /// README, a kustomization, a file that does not parse), documents of kinds the rules do
    /// not watch, and types whose rule does not resolve are never removed. With Flux
    /// `prune: true` on this folder, a removed document deletes the object from the cluster.
    #[serde(default)]
    pub prune: PrunePolicy,

    /// Reconcile the folder against the branch tip at this interval (`1h`, `30m`; at least
    /// `10s`), so a
    /// person's edit of a recorded document is brought back to the cluster's truth. Off by
    /// default; for folders only recorded, never for folders a reconciler applies (the agent
    /// would undo edits meant to reach the cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 16))]
    pub resync_interval: Option<String>,

    /// Reconcilers to nudge after each successful push, so the fresh commit is applied at once
    /// instead of a stale one on an interval: a Flux `GitRepository` or `Kustomization` gets
    /// `reconcile.fluxcd.io/requestedAt`, an Argo CD `Application` gets
    /// `argocd.argoproj.io/refresh`. The agent needs `patch` on them (opt-in RBAC).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub triggers: Vec<ReconcilerTrigger>,

    /// Stop writing to the folder: changes are neither committed nor queued while it is true
    /// (what was already queued is still pushed). Set it back to false and the folder is
    /// reconciled from complete listings: everything that changed meanwhile lands as one
    /// commit. The `Suspended` condition says which it is.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,

    /// `Record` (the default) writes every change; `Observe` decides every change and the
    /// initial reconcile as `Record` would and reports what would be written (in
    /// `status.observed` and on the status page) without writing anything to the repository.
    #[serde(default, skip_serializing_if = "DestinationMode::is_record")]
    pub mode: DestinationMode,

    /// Encrypt Secrets: with it, the rules pointing here may select `secrets`, and each Secret
    /// is written as a SOPS document (`….sops.yaml`) that `sops` and Flux's kustomize-controller
    /// decrypt. Without it, Secrets are never written (unless the agent runs with
    /// `--allow-secrets`, which writes them in plain text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<DestinationEncryption>,

    /// Objects and fields never written, on top of the built-in exclusions: objects by name
    /// pattern, label or annotation selector; fields by JSON pointer (per group and kind) or by
    /// the field managers that own them (`managedFieldsManagers`, as Argo CD's
    /// `ignoreDifferences`). Excluded fields are left out of the hash, the file and the
    /// comparison with Git, so a change only there makes no commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclusions: Option<super::exclusions::Exclusions>,
}

/// How a destination encrypts Secrets.
#[derive(Serialize, Deserialize, Clone, Debug, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DestinationEncryption {
    /// SOPS with age: the values of `data` and `stringData` are encrypted
    /// (`encrypted_regex: ^(data|stringData)$`), metadata stays readable.
    pub sops: SopsEncryption,
}

/// SOPS encryption settings.
#[derive(Serialize, Deserialize, Clone, Debug, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SopsEncryption {
    /// The age recipients (`age1…` public keys) every Secret is encrypted to: the key Flux
    /// decrypts with, and any a person may need. The private keys never reach the agent.
    #[schemars(length(min = 1, max = 16))]
    #[schemars(extend("items" = {"type": "string", "pattern": "^age1[02-9ac-hj-np-z]{58}$"}))]
    pub age_recipients: Vec<String>,

    /// A Secret in this namespace holding age private keys as Flux's `sops-age` Secret does
    /// (each key ending in `.agekey`, e.g. `age.agekey`). Optional, read with `get` only: with
    /// it, a SOPS file in Git whose content hash the agent cannot check (written with `sops` by
    /// a person, or under another hash key) is decrypted and compared with the live Secret, and
    /// kept as it is when the values are the same instead of being encrypted again. Nothing
    /// decrypted is written, logged or kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_identity_secret_ref: Option<super::repo_config::SecretRef>,
}

/// Whether a destination writes what it decides.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, JsonSchema, PartialEq, Eq)]
pub enum DestinationMode {
    /// Commit and push every change.
    #[default]
    Record,
    /// Decide and report what would be written; write nothing.
    Observe,
}

impl DestinationMode {
    pub fn is_record(&self) -> bool {
        *self == DestinationMode::Record
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DestinationMode::Record => "Record",
            DestinationMode::Observe => "Observe",
        }
    }
}

/// One reconciler object to nudge after a push.
#[derive(Serialize, Deserialize, Clone, Debug, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ReconcilerTrigger {
    /// Which kind of reconciler object.
    pub kind: TriggerKind,
    /// Its name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Its namespace; defaults to the GitDestination's own namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
}

/// The reconciler objects a destination can nudge.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, JsonSchema, PartialEq, Eq)]
pub enum TriggerKind {
    /// Flux `source.toolkit.fluxcd.io/v1` GitRepository.
    GitRepository,
    /// Flux `kustomize.toolkit.fluxcd.io/v1` Kustomization.
    Kustomization,
    /// Argo CD `argoproj.io/v1alpha1` Application.
    Application,
}

impl TriggerKind {
    /// The object's (group, version, plural, kind) and the annotation that asks for a reconcile.
    pub fn target(
        self,
    ) -> (
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
    ) {
        match self {
            TriggerKind::GitRepository => (
                "source.toolkit.fluxcd.io",
                "v1",
                "gitrepositories",
                "GitRepository",
                "reconcile.fluxcd.io/requestedAt",
            ),
            TriggerKind::Kustomization => (
                "kustomize.toolkit.fluxcd.io",
                "v1",
                "kustomizations",
                "Kustomization",
                "reconcile.fluxcd.io/requestedAt",
            ),
            TriggerKind::Application => (
                "argoproj.io",
                "v1alpha1",
                "applications",
                "Application",
                "argocd.argoproj.io/refresh",
            ),
        }
    }
}

/// A GitRepoConfig, by name and optionally namespace.
#[derive(Serialize, Deserialize, Clone, Debug, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RepoRef {
    /// Name of the GitRepoConfig.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,

    /// Namespace of the GitRepoConfig; defaults to the GitDestination's own namespace. A
    /// GitRepoConfig in another namespace must allow it in `accessPolicy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
}

/// Which documents of objects that are gone are removed from the folder.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, JsonSchema, PartialEq, Eq)]
pub enum PrunePolicy {
    /// On delete events, and at reconciles after a complete listing of the type.
    #[default]
    Sweep,
    /// Only on a watched delete event; never inferred at a reconcile.
    OnEvent,
    /// Never: only add and update.
    Never,
}

impl PrunePolicy {
    /// True when a reconcile removes documents its listings lack.
    pub fn at_reconcile(self) -> bool {
        self == PrunePolicy::Sweep
    }

    /// True when a delete event removes the object's document.
    pub fn on_delete(self) -> bool {
        self != PrunePolicy::Never
    }
}

/// Where new objects of some resources or kinds go.
#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Placement {
    /// API groups this placement is for (`""` is the core group); empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub api_groups: Vec<String>,
    /// Resources (plural, `configmaps`) this placement is for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub resources: Vec<String>,
    /// Kinds (`ConfigMap`) this placement is for. With neither resources nor kinds, every
    /// object matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub kinds: Vec<String>,
    /// The path template, relative to `folder`, with the placeholders of `pathTemplate`.
    #[schemars(length(min = 1, max = 512))]
    pub path: String,
    /// Several objects may share the file (`path` need not name each object): documents are
    /// ordered by name. Without it, `path` must tell every object apart, as `pathTemplate`.
    #[serde(default)]
    pub bundle: bool,
}

impl GitDestinationSpec {
    /// Namespace of the GitRepoConfig, given the destination's own namespace.
    pub fn repo_namespace<'a>(&'a self, own_namespace: &'a str) -> &'a str {
        self.repo_ref.namespace.as_deref().unwrap_or(own_namespace)
    }

    /// Checks `folder` with [`validate_folder`].
    pub fn validate(&self) -> Result<(), CrdError> {
        validate_folder(&self.folder)
    }
}

/// Checks a destination folder: non-empty, at most [`MAX_FOLDER_LEN`] characters, relative (no
/// leading `/`), `/`-separated (no backslash), no control character, and no empty, `.` or `..`
/// segment (so no trailing `/` either). The same
/// rules are in the CRD schema as CEL, so the apiserver rejects what this rejects.
pub fn validate_folder(folder: &str) -> Result<(), CrdError> {
    crate::manifest::layout::validate_folder(folder).map_err(|e| CrdError::Folder {
        folder: folder.to_string(),
        reason: match e {
            LayoutError::Folder { problem, .. } => problem,
            LayoutError::Template { .. } => "is not a valid folder",
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn folder_validation() {
        let long = "a".repeat(MAX_FOLDER_LEN + 1);
        let table: &[(&str, Option<&str>)] = &[
            ("apps/prod", None),
            ("apps", None),
            ("clusters/eu-1/.hidden/x..y", None),
            ("...", None),
            ("", Some("must not be empty")),
            (".", Some("'..' segments")),
            ("/abs", Some("leading '/'")),
            ("../x", Some("'..' segments")),
            ("a/../b", Some("'..' segments")),
            ("a/./b", Some("'..' segments")),
            ("a/", Some("empty")),
            ("a//b", Some("empty")),
            ("a\\b", Some("backslash")),
            ("a\nb", Some("control")),
            (&long, Some("longer than")),
        ];
        for (folder, want) in table {
            match (validate_folder(folder), want) {
                (Ok(()), None) => {}
                (Err(err), Some(reason)) => {
                    let text = err.to_string();
                    assert!(text.contains(reason), "{folder:?}: {text}");
                    assert!(text.contains(&format!("{folder:?}")), "{folder:?}: {text}");
                }
                (got, _) => panic!("{folder:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn defaults_apply_when_fields_are_omitted() {
        let spec: GitDestinationSpec = serde_json::from_value(json!({
            "repoRef": {"name": "repo"},
            "branch": "main",
            "folder": "clusters/prod"
        }))
        .unwrap();
        assert_eq!(spec.prune, PrunePolicy::Sweep);
        assert_eq!(spec.path_template, None);
        assert_eq!(spec.repo_namespace("team-a"), "team-a");
        assert_eq!(spec.validate(), Ok(()));
    }

    #[test]
    fn explicit_repo_namespace_wins() {
        let spec: GitDestinationSpec = serde_json::from_value(json!({
            "repoRef": {"name": "repo", "namespace": "gitops"},
            "branch": "main",
            "folder": "x",
            "prune": "Never"
        }))
        .unwrap();
        assert_eq!(spec.repo_namespace("team-a"), "gitops");
        assert_eq!(spec.prune, PrunePolicy::Never);
    }
}
