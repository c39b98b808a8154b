//! A remote repository as the Git engine sees it — URL, credentials, TLS settings — what a
//! probe and a push answer, and the failures of talking to it, classified into the retry
//! classes (contention, transient, permanent) that docs/architecture.md describes.

use std::fmt;
use std::io;
use std::time::Duration;

use super::credentials::Credentials;
use super::url::redact;

/// A remote repository and how to authenticate to it.
#[derive(Clone, PartialEq, Eq)]
pub struct Remote {
    pub url: String,
    pub credentials: Option<Credentials>,
    /// How HTTPS servers are verified.
    pub tls: TlsSettings,
}

/// How an HTTPS remote's certificate is verified.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM certificates of the CA(s) to trust instead of the system's (a private CA).
    pub ca_bundle: Option<String>,
    /// Do not verify the server's certificate at all (explicit, for test setups only).
    pub insecure_skip_verify: bool,
}

impl Remote {
    pub fn new(url: impl Into<String>, credentials: Option<Credentials>) -> Self {
        Self {
            url: url.into(),
            credentials,
            tls: TlsSettings::default(),
        }
    }

    /// The same remote, verifying HTTPS with `tls`.
    pub fn with_tls(mut self, tls: TlsSettings) -> Self {
        self.tls = tls;
        self
    }
}

impl fmt::Debug for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Remote")
            .field("url", &redact(&self.url))
            .field("credentials", &self.credentials)
            .field("tls", &self.tls)
            .finish()
    }
}

/// What [`Transport::probe`] learned about a remote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteInfo {
    /// The branch the remote's `HEAD` points at (`main` for `refs/heads/main`); `None` when the
    /// remote does not say (an empty repository does not advertise its unborn `HEAD`).
    pub default_branch: Option<String>,
    /// The remote has no refs at all.
    pub empty: bool,
}

/// The result of a push that reached the remote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    /// The branch is now at the pushed commit (or already was).
    Pushed,
    /// The lease failed or the push was not a fast-forward: the remote moved. The caller
    /// fetches, rebuilds its changes on the new tip and pushes again.
    Rejected { reason: String },
}

/// Why talking to a remote failed. `url` is always redacted; `detail` holds git's relevant
/// messages with every credential scrubbed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot reach {url} ({op}): {detail}")]
    Unreachable {
        op: &'static str,
        url: String,
        detail: String,
    },
    #[error("{op} with {url} did not finish within {after:?}; git was killed")]
    Timeout {
        op: &'static str,
        url: String,
        after: Duration,
    },
    #[error("authentication to {url} failed ({op}): {detail}")]
    Authentication {
        op: &'static str,
        url: String,
        detail: String,
    },
    #[error(
        "host key verification failed for {host} ({op} {url}): the server's key does not match \
         the known_hosts of the credentials: {detail}"
    )]
    HostKey {
        op: &'static str,
        url: String,
        host: String,
        detail: String,
    },
    #[error(
        "the HTTPS certificate of {url} could not be verified ({op}): {detail}; give the CA that \
         signed it as `caFile` (or `ca.crt`) in the credentials Secret"
    )]
    Certificate {
        op: &'static str,
        url: String,
        detail: String,
    },
    #[error("repository {url} not found or not accessible ({op}): {detail}")]
    NotFound {
        op: &'static str,
        url: String,
        detail: String,
    },
    #[error("{url} refused the push to branch {branch}: {reason}")]
    RemoteRejected {
        url: String,
        branch: String,
        reason: String,
    },
    #[error("git {op} with {url} failed: {detail}")]
    Git {
        op: &'static str,
        url: String,
        detail: String,
    },
    #[error("git {op} with {url} printed something unexpected: {detail}")]
    UnexpectedOutput {
        op: &'static str,
        url: String,
        detail: String,
    },
    #[error("invalid branch name {branch:?} for {url}")]
    InvalidBranch { url: String, branch: String },
    #[error("cannot prepare a private directory for git ({op} with {url}): {source}")]
    Setup {
        op: &'static str,
        url: String,
        source: io::Error,
    },
    #[error("cannot run {git} for {op} with {url}: {source}")]
    Spawn {
        op: &'static str,
        url: String,
        git: String,
        source: io::Error,
    },
}

impl TransportError {
    /// The remote could not be reached or did not answer in time: retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unreachable { .. } | Self::Timeout { .. })
    }

    /// Retrying cannot help: authentication, an unknown host key, a missing repository, a
    /// refusal that is not contention (a protected branch, a hook), an invalid branch. Such an
    /// error ends `replay`; the agent keeps the changes pending and reports it.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            Self::Authentication { .. }
                | Self::HostKey { .. }
                | Self::Certificate { .. }
                | Self::NotFound { .. }
                | Self::RemoteRejected { .. }
                | Self::InvalidBranch { .. }
        )
    }

    /// The remote refused the credentials (authentication failed) or the SSH host key did not
    /// match `known_hosts`: the credentials Secret is what needs fixing.
    pub fn rejects_credentials(&self) -> bool {
        matches!(self, Self::Authentication { .. } | Self::HostKey { .. })
    }
}

/// Whether a refused push means another writer moved or holds the branch (fetch, replay and
/// push again) rather than a refusal that will not change (a protected branch, a hook).
/// Servers spell it in several ways: a lease that no longer holds (`stale info`), a branch
/// that moved (`fetch first`, `non-fast-forward`), a ref lock held by a concurrent push
/// (`cannot lock ref`, `failed to update ref`, `atomic transaction failed`).
pub fn is_contention(reason: &str) -> bool {
    [
        "stale info",
        "fetch first",
        "non-fast-forward",
        "cannot lock ref",
        "failed to update ref",
        "failed to lock",
        "atomic transaction failed",
        "incorrect old value",
        "reference already exists",
    ]
    .iter()
    .any(|needle| reason.contains(needle))
}
