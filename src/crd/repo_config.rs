//! `GitRepoConfig`: one remote repository, its credentials, commit identity and windows, and
//! the access policy saying which rules may write through it.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::CrdError;
use super::duration::{DURATION_PATTERN, parse_duration};

/// Committer name used when `commit.committerName` is not set.
pub const DEFAULT_COMMITTER_NAME: &str = "gitops-reverser";
/// Committer e-mail used when `commit.committerEmail` is not set.
pub const DEFAULT_COMMITTER_EMAIL: &str = "gitops-reverser@configbutler.ai";

/// A remote Git repository that destinations write to: where it is, how to authenticate, which
/// branches may be written, who commits, how changes are grouped into commits, and which
/// namespaces' rules may use it.
// kube's printcolumn(...) entries repeat `type_ = "string"`, which this lint mistakes for
// duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, JsonSchema, PartialEq)]
#[kube(
    group = "configbutler.ai",
    version = "v1alpha1",
    kind = "GitRepoConfig",
    namespaced,
    shortname = "grc",
    category = "gitops-reverser",
    status = "super::status::GitRepoConfigStatus",
    derive = "PartialEq",
    doc = "A remote Git repository that GitDestinations write to, with its credentials, commit \
           settings and access policy.",
    printcolumn(name = "URL", type_ = "string", json_path = ".spec.url"),
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
pub struct GitRepoConfigSpec {
    /// Repository URL: `https://host/path`, `ssh://user@host[:port]/path` or scp-style
    /// `user@host:path`. Never put credentials in the URL; use `secretRef`.
    #[schemars(length(min = 1, max = 2048))]
    pub url: String,

    /// Branches that destinations may write to, as globs (`*` matches any run of characters,
    /// including `/`; `?` matches one character). A GitDestination whose branch matches none is
    /// not Ready. Default: every branch.
    #[serde(default = "default_allowed_branches")]
    #[schemars(length(min = 1))]
    pub allowed_branches: Vec<String>,

    /// Secret in this namespace with the credentials: `identity` (SSH private key, with its
    /// passphrase in `password` when encrypted) and `known_hosts` for SSH; `username` and
    /// `password`, a token alone in `password`, or `bearerToken` for HTTPS. Flux- and Argo
    /// CD-shaped Secrets are accepted; `caFile` (or `ca.crt`) adds a CA bundle for an HTTPS server
    /// signed by a private CA. Read again every 20 s. Omit for a public repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,

    /// Do not verify the HTTPS server's certificate. Only for test setups: anyone on the path
    /// can then read and change what is pushed. Prefer a CA bundle (`caFile` or `ca.crt` in the
    /// `secretRef` Secret) for a private CA.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_skip_tls_verify: bool,

    /// Committer identity and how changes are grouped into commits.
    #[serde(default)]
    pub commit: CommitSettings,

    /// Which rules may write through this repository.
    #[serde(default)]
    pub access_policy: AccessPolicy,
}

/// A Secret in the same namespace as the object that refers to it.
#[derive(Serialize, Deserialize, Clone, Debug, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Committer identity, author e-mail derivation and commit windows.
#[derive(Serialize, Deserialize, Clone, Debug, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CommitSettings {
    /// Committer name on every commit (the author is the person who changed the object).
    #[serde(default = "default_committer_name")]
    #[schemars(length(min = 1))]
    pub committer_name: String,

    /// Committer e-mail on every commit.
    #[serde(default = "default_committer_email")]
    #[schemars(length(min = 1))]
    pub committer_email: String,

    /// Domain for author e-mails of users whose Kubernetes user name is not an e-mail address:
    /// user `alice` becomes `alice@<authorEmailDomain>`. When omitted, the agent's built-in
    /// fallback is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub author_email_domain: Option<String>,

    /// When an open commit (changes by one author to one destination) is closed and committed.
    /// A window also closes at once when the author changes or a second author touches a
    /// resource already in it.
    #[serde(default)]
    pub window: CommitWindow,

    /// Secret in this namespace with an OpenSSH private key (no passphrase) under
    /// `signing-key` (or `identity`, `ssh-privatekey`): every commit is then signed with it
    /// (SSH signatures, as `git commit -S` with `gpg.format=ssh`), and the `CommitsSigned`
    /// condition shows the key's fingerprint and public key for an allowed-signers file.
    /// While the key cannot be used nothing is committed (never an unsigned commit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key_ref: Option<SecretRef>,
}

/// Limits of one commit window; durations are Go-style (`3s`, `1m30s`, `500ms`).
#[derive(Serialize, Deserialize, Clone, Debug, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CommitWindow {
    /// Close the window after this long without a new change.
    #[serde(default = "default_quiet")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub quiet: String,

    /// Close the window this long after its first change, however busy it is.
    #[serde(default = "default_max_age")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub max_age: String,

    /// Close the window once it holds this many changes.
    #[serde(default = "default_max_changes")]
    #[schemars(range(min = 1))]
    pub max_changes: i32,
}

/// Which rules may write through a repository.
#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AccessPolicy {
    /// Which namespaces' WatchRules (through GitDestinations) may use this repository.
    #[serde(default)]
    pub namespaced_rules: NamespacedRulesPolicy,

    /// Whether ClusterWatchRules may write through this repository.
    #[serde(default)]
    pub allow_cluster_rules: bool,
}

/// The namespaces whose WatchRules may write through a repository.
#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.mode != 'FromSelector' || has(self.namespaceSelector)",
        "message": "namespaceSelector is required when mode is FromSelector"
    },
    {
        "rule": "self.mode == 'FromSelector' || !has(self.namespaceSelector)",
        "message": "namespaceSelector is only used when mode is FromSelector"
    }
]))]
pub struct NamespacedRulesPolicy {
    /// `SameNamespace`: only rules in this GitRepoConfig's namespace; `AllNamespaces`: rules in
    /// any namespace; `FromSelector`: rules in namespaces matching `namespaceSelector`.
    #[serde(default)]
    pub mode: NamespacedRulesMode,

    /// Namespaces whose rules may use this repository; required when, and only used when,
    /// `mode` is `FromSelector`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
}

/// Which namespaces' rules may write through a repository.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, JsonSchema, PartialEq, Eq)]
pub enum NamespacedRulesMode {
    /// Only rules in the GitRepoConfig's own namespace.
    #[default]
    SameNamespace,
    /// Rules in any namespace.
    AllNamespaces,
    /// Rules in namespaces matching `namespaceSelector`.
    FromSelector,
}

/// The effective commit window of a repository, parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowSettings {
    pub quiet: Duration,
    pub max_age: Duration,
    pub max_changes: u32,
}

impl GitRepoConfigSpec {
    /// The commit window with durations parsed; errors name the field and the bad input.
    pub fn window(&self) -> Result<WindowSettings, CrdError> {
        self.commit.window.parse()
    }

    /// True when `branch` matches one of `allowedBranches`.
    pub fn allows_branch(&self, branch: &str) -> bool {
        self.allowed_branches
            .iter()
            .any(|glob| glob_match(glob, branch))
    }

    /// The Secret holding the commit signing key, if any.
    pub fn signing_secret_name(&self) -> Option<&str> {
        self.commit
            .signing_key_ref
            .as_ref()
            .map(|r| r.name.as_str())
    }

    /// The Secret holding the credentials, if any.
    pub fn secret_name(&self) -> Option<&str> {
        self.secret_ref.as_ref().map(|r| r.name.as_str())
    }
}

impl CommitWindow {
    /// The window with durations parsed; errors name the field and the bad input.
    pub fn parse(&self) -> Result<WindowSettings, CrdError> {
        let duration = |field, input: &str| {
            parse_duration(input).map_err(|source| CrdError::Duration { field, source })
        };
        let max_changes = u32::try_from(self.max_changes)
            .ok()
            .filter(|n| *n >= 1)
            .ok_or(CrdError::OutOfRange {
                field: "commit.window.maxChanges",
                value: i64::from(self.max_changes),
                reason: "must be at least 1",
            })?;
        Ok(WindowSettings {
            quiet: duration("commit.window.quiet", &self.quiet)?,
            max_age: duration("commit.window.maxAge", &self.max_age)?,
            max_changes,
        })
    }
}

impl Default for CommitSettings {
    fn default() -> Self {
        Self {
            committer_name: default_committer_name(),
            committer_email: default_committer_email(),
            author_email_domain: None,
            window: CommitWindow::default(),
            signing_key_ref: None,
        }
    }
}

impl Default for CommitWindow {
    fn default() -> Self {
        Self {
            quiet: default_quiet(),
            max_age: default_max_age(),
            max_changes: default_max_changes(),
        }
    }
}

/// Matches `text` against a glob where `*` is any run of characters (including `/`) and `?` is
/// exactly one character; everything else matches itself.
pub fn glob_match(glob: &str, text: &str) -> bool {
    let (glob, text): (Vec<char>, Vec<char>) = (glob.chars().collect(), text.chars().collect());
    let (mut g, mut t) = (0, 0);
    // Where the last `*` was, and the text position it is currently assumed to extend to.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match glob.get(g) {
            Some('*') => {
                star = Some((g, t));
                g += 1;
            }
            Some(c) if *c == '?' || *c == text[t] => {
                g += 1;
                t += 1;
            }
            _ => match star {
                Some((star_g, star_t)) => {
                    g = star_g + 1;
                    t = star_t + 1;
                    star = Some((star_g, star_t + 1));
                }
                None => return false,
            },
        }
    }
    glob[g..].iter().all(|c| *c == '*')
}

fn default_allowed_branches() -> Vec<String> {
    vec!["*".to_string()]
}

fn default_committer_name() -> String {
    DEFAULT_COMMITTER_NAME.to_string()
}

fn default_committer_email() -> String {
    DEFAULT_COMMITTER_EMAIL.to_string()
}

fn default_quiet() -> String {
    "3s".to_string()
}

fn default_max_age() -> String {
    "60s".to_string()
}

fn default_max_changes() -> i32 {
    200
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_apply_when_fields_are_omitted() {
        let spec: GitRepoConfigSpec =
            serde_json::from_value(json!({"url": "https://example.com/org/repo.git"})).unwrap();
        assert_eq!(spec.allowed_branches, vec!["*"]);
        assert_eq!(spec.secret_ref, None);
        assert_eq!(spec.commit.committer_name, "gitops-reverser");
        assert_eq!(
            spec.commit.committer_email,
            "gitops-reverser@configbutler.ai"
        );
        assert_eq!(spec.commit.author_email_domain, None);
        assert_eq!(
            spec.window(),
            Ok(WindowSettings {
                quiet: Duration::from_secs(3),
                max_age: Duration::from_secs(60),
                max_changes: 200
            })
        );
        assert_eq!(
            spec.access_policy.namespaced_rules.mode,
            NamespacedRulesMode::SameNamespace
        );
        assert!(!spec.access_policy.allow_cluster_rules);
    }

    #[test]
    fn partial_window_keeps_other_defaults() {
        let spec: GitRepoConfigSpec = serde_json::from_value(json!({
            "url": "git@example.com:org/repo.git",
            "commit": {"window": {"quiet": "1m30s"}}
        }))
        .unwrap();
        let window = spec.window().unwrap();
        assert_eq!(window.quiet, Duration::from_secs(90));
        assert_eq!(window.max_age, Duration::from_secs(60));
        assert_eq!(window.max_changes, 200);
        assert_eq!(spec.commit.committer_name, DEFAULT_COMMITTER_NAME);
    }

    #[test]
    fn bad_window_values_name_field_and_input() {
        let mut window = CommitWindow {
            quiet: "3 seconds".into(),
            ..CommitWindow::default()
        };
        let err = window.parse().unwrap_err().to_string();
        assert!(
            err.contains("commit.window.quiet") && err.contains("\"3 seconds\""),
            "{err}"
        );
        window = CommitWindow {
            max_changes: 0,
            ..CommitWindow::default()
        };
        let err = window.parse().unwrap_err().to_string();
        assert!(
            err.contains("commit.window.maxChanges") && err.contains('0'),
            "{err}"
        );
    }

    #[test]
    fn glob_matches_branches() {
        let table = [
            ("*", "main", true),
            ("*", "feature/x", true),
            ("main", "main", true),
            ("main", "main2", false),
            ("release/*", "release/1.2", true),
            ("release/*", "release", false),
            ("env-?", "env-a", true),
            ("env-?", "env-ab", false),
            ("*-prod", "eu-prod", true),
            ("*-prod", "eu-prod-x", false),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("", "", true),
            ("", "main", false),
        ];
        for (glob, text, want) in table {
            assert_eq!(glob_match(glob, text), want, "{glob} vs {text}");
        }
    }

    #[test]
    fn allowed_branches_gate_destinations() {
        let spec: GitRepoConfigSpec = serde_json::from_value(json!({
            "url": "https://example.com/r.git",
            "allowedBranches": ["main", "env/*"]
        }))
        .unwrap();
        assert!(spec.allows_branch("main"));
        assert!(spec.allows_branch("env/prod"));
        assert!(!spec.allows_branch("develop"));
    }
}
