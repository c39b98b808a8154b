//! Status conditions the plan produces: condition types and reasons of the four kinds, the
//! builder that derives `Ready` from the specific checks, and the merge that keeps transition times.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

pub use crate::crd::CONDITION_READY as READY;
/// GitRepoConfig: the credentials Secret is well-formed and the remote accepted it (checked by
/// I/O code: an authenticated probe or push).
pub const CREDENTIALS_VALID: &str = "CredentialsValid";
/// GitRepoConfig: the remote answered a cheap check (done by I/O code).
pub const REPOSITORY_REACHABLE: &str = "RepositoryReachable";
/// GitRepoConfig with `commit.signingKeyRef`: the key is usable; its fingerprint and public key.
pub const COMMITS_SIGNED: &str = "CommitsSigned";
/// GitDestination: `repoRef`, `folder` and `pathTemplate` resolve to something usable.
pub const REFERENCES_RESOLVED: &str = "ReferencesResolved";
/// GitDestination: `branch` matches the GitRepoConfig's `allowedBranches`.
pub const BRANCH_ALLOWED: &str = "BranchAllowed";
/// GitDestination, WatchRule, ClusterWatchRule: the GitRepoConfig's `accessPolicy` admits it.
pub const ACCESS_ALLOWED: &str = "AccessAllowed";
/// GitDestination: `True` when another destination already owns the same, an enclosing or a
/// nested folder on the same repository and branch (this one then writes nothing).
pub const DESTINATION_CONFLICT: &str = "DestinationConflict";
/// GitDestination: `True` while `spec.suspend` stops it writing.
pub const SUSPENDED: &str = "Suspended";
/// WatchRule, ClusterWatchRule: the destination exists and is Ready.
pub const DESTINATION_RESOLVED: &str = "DestinationResolved";
/// WatchRule, ClusterWatchRule: every `rules[]` entry resolved through discovery.
pub const RESOURCES_RESOLVED: &str = "ResourcesResolved";

/// The `reason` values the plan writes (CamelCase, stable: tests and tooling match on them).
pub mod reason {
    pub const READY: &str = "Ready";
    pub const PENDING: &str = "Pending";
    pub const INVALID_URL: &str = "InvalidURL";
    pub const INVALID_COMMIT_WINDOW: &str = "InvalidCommitWindow";
    pub const INVALID_ACCESS_POLICY: &str = "InvalidAccessPolicy";
    pub const NO_SECRET: &str = "NoSecret";
    pub const CREDENTIALS_VALID: &str = "CredentialsValid";
    pub const CREDENTIALS_INVALID: &str = "CredentialsInvalid";
    /// The remote refused the credentials (authentication failed, unknown host key).
    pub const CREDENTIALS_REJECTED: &str = "CredentialsRejected";
    /// The credentials are well-formed but the remote could not be reached to verify them.
    pub const NOT_VERIFIED: &str = "NotVerified";
    pub const SIGNED: &str = "Signed";
    pub const SIGNING_KEY_INVALID: &str = "SigningKeyInvalid";
    pub const REACHABLE: &str = "Reachable";
    pub const UNREACHABLE: &str = "Unreachable";
    pub const RESOLVED: &str = "Resolved";
    pub const REPO_NOT_FOUND: &str = "RepoNotFound";
    pub const REPO_INVALID: &str = "RepoInvalid";
    pub const REPO_NOT_RESOLVED: &str = "RepoNotResolved";
    pub const INVALID_FOLDER: &str = "InvalidFolder";
    pub const INVALID_PATH_TEMPLATE: &str = "InvalidPathTemplate";
    pub const INVALID_RESYNC_INTERVAL: &str = "InvalidResyncInterval";
    pub const INVALID_ENCRYPTION: &str = "InvalidEncryption";
    pub const INVALID_EXCLUSIONS: &str = "InvalidExclusions";
    pub const BRANCH_ALLOWED: &str = "BranchAllowed";
    pub const BRANCH_NOT_ALLOWED: &str = "BranchNotAllowed";
    pub const ACCESS_ALLOWED: &str = "AccessAllowed";
    pub const NAMESPACE_NOT_ADMITTED: &str = "NamespaceNotAdmitted";
    pub const CLUSTER_RULES_NOT_ALLOWED: &str = "ClusterRulesNotAllowed";
    pub const NO_CONFLICT: &str = "NoConflict";
    pub const FOLDER_OVERLAP: &str = "FolderOverlap";
    pub const DESTINATION_NOT_FOUND: &str = "DestinationNotFound";
    pub const DESTINATION_NOT_READY: &str = "DestinationNotReady";
    pub const DESTINATION_NOT_RESOLVED: &str = "DestinationNotResolved";
    pub const INVALID_SELECTOR: &str = "InvalidSelector";
    pub const RESOURCES_NOT_FOUND: &str = "ResourcesNotFound";
    pub const RESOURCES_REJECTED: &str = "ResourcesRejected";
    pub const NO_RESOURCES_SELECTED: &str = "NoResourcesSelected";
    pub const SUSPENDED: &str = "Suspended";
    pub const ACTIVE: &str = "Active";
}

/// The longest condition message the API server accepts (bytes); longer ones are cut.
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024;

/// A condition's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    True,
    False,
    Unknown,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::True => "True",
            Status::False => "False",
            Status::Unknown => "Unknown",
        }
    }
}

/// The `lastTransitionTime` the plan puts on every condition (the Unix epoch): a placeholder
/// that [`merge_conditions`] replaces with the kept or the current time.
pub fn placeholder_time() -> Time {
    Time(Timestamp::UNIX_EPOCH)
}

/// One condition with a placeholder `lastTransitionTime`; the message is cut to
/// [`MAX_MESSAGE_BYTES`] at a character boundary.
pub fn condition(
    type_: &str,
    status: Status,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
) -> Condition {
    let mut message = message.into();
    if message.len() > MAX_MESSAGE_BYTES {
        let mut end = MAX_MESSAGE_BYTES - 3;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push_str("...");
    }
    Condition {
        type_: type_.to_string(),
        status: status.as_str().to_string(),
        reason: reason.to_string(),
        message,
        observed_generation: generation,
        last_transition_time: placeholder_time(),
    }
}

/// Merges the plan's `desired` conditions into the `existing` ones of an object's status:
/// each desired condition keeps the existing `lastTransitionTime` when its status did not
/// change and gets `now` otherwise. Existing conditions of types the plan does not produce
/// (for example a `Conflict` set by the Git worker) are kept unchanged after the desired ones.
/// Comparing the result with `existing` tells whether a status write is needed.
pub fn merge_conditions(
    existing: &[Condition],
    desired: &[Condition],
    now: &Time,
) -> Vec<Condition> {
    let mut out: Vec<Condition> = desired
        .iter()
        .map(|want| {
            let mut merged = want.clone();
            merged.last_transition_time = existing
                .iter()
                .find(|c| c.type_ == want.type_ && c.status == want.status)
                .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
            merged
        })
        .collect();
    out.extend(
        existing
            .iter()
            .filter(|c| !desired.iter().any(|d| d.type_ == c.type_))
            .cloned(),
    );
    out
}

/// How a check bears on `Ready`, independent of the condition's polarity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Health {
    Ok,
    Pending,
    Failed,
}

/// One specific condition of an object, with how it bears on `Ready`.
#[derive(Clone, Debug)]
pub(crate) struct Check {
    pub type_: &'static str,
    pub status: Status,
    pub reason: &'static str,
    pub message: String,
    pub health: Health,
    /// False for a check that only feeds `Ready` (it has no condition type of its own).
    pub emit: bool,
}

impl Check {
    pub fn ok(type_: &'static str, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            type_,
            status: Status::True,
            reason,
            message: message.into(),
            health: Health::Ok,
            emit: true,
        }
    }

    pub fn failed(type_: &'static str, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            type_,
            status: Status::False,
            reason,
            message: message.into(),
            health: Health::Failed,
            emit: true,
        }
    }

    pub fn pending(type_: &'static str, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            type_,
            status: Status::Unknown,
            reason,
            message: message.into(),
            health: Health::Pending,
            emit: true,
        }
    }

    /// A condition that informs without bearing on `Ready` (e.g. a destination showing its
    /// repository's reachability: an outage delays pushes, it does not stop capture).
    pub fn informational(
        type_: &'static str,
        status: Status,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            ..Self::ok(type_, reason, message)
        }
    }

    /// A failure that only shows in `Ready` (e.g. an invalid URL).
    pub fn ready_only(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            emit: false,
            ..Self::failed(READY, reason, message)
        }
    }
}

/// `Ready` followed by `checks`, all stamped with `generation`, and whether `Ready` is True.
/// `Ready` takes the reason and message of the first failed check, else of the first pending
/// one (status Unknown), else `ready_message` with reason `Ready`.
pub(crate) fn with_ready(
    checks: Vec<Check>,
    ready_message: String,
    generation: Option<i64>,
) -> (Vec<Condition>, bool) {
    let blocking = checks
        .iter()
        .find(|c| c.health == Health::Failed)
        .map(|c| (Status::False, c))
        .or_else(|| {
            checks
                .iter()
                .find(|c| c.health == Health::Pending)
                .map(|c| (Status::Unknown, c))
        });
    let ready = match blocking {
        Some((status, check)) => condition(READY, status, check.reason, &check.message, generation),
        None => condition(
            READY,
            Status::True,
            reason::READY,
            ready_message,
            generation,
        ),
    };
    let is_ready = blocking.is_none();
    let mut out = vec![ready];
    out.extend(
        checks
            .into_iter()
            .filter(|c| c.emit)
            .map(|c| condition(c.type_, c.status, c.reason, c.message, generation)),
    );
    (out, is_ready)
}

/// Joins items for a message, listing at most `max` and counting the rest.
pub(crate) fn join_limited<I: IntoIterator<Item = String>>(items: I, max: usize) -> String {
    let items: Vec<String> = items.into_iter().collect();
    if items.len() <= max {
        return items.join(", ");
    }
    format!("{} and {} more", items[..max].join(", "), items.len() - max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).unwrap_or(Timestamp::UNIX_EPOCH))
    }

    #[test]
    fn merge_keeps_transition_time_only_when_status_is_unchanged() {
        let mut old_ready = condition(READY, Status::True, "Ready", "ok", Some(1));
        old_ready.last_transition_time = at(100);
        let mut old_access = condition(ACCESS_ALLOWED, Status::True, "AccessAllowed", "", Some(1));
        old_access.last_transition_time = at(100);
        let mut foreign = condition("Conflict", Status::False, "NoMarker", "", Some(1));
        foreign.last_transition_time = at(50);
        let existing = vec![old_ready, old_access, foreign.clone()];

        let desired = vec![
            condition(READY, Status::True, "Ready", "still ok", Some(2)),
            condition(
                ACCESS_ALLOWED,
                Status::False,
                "NamespaceNotAdmitted",
                "no",
                Some(2),
            ),
            condition(BRANCH_ALLOWED, Status::True, "BranchAllowed", "", Some(2)),
        ];
        let merged = merge_conditions(&existing, &desired, &at(200));
        let times: Vec<_> = merged
            .iter()
            .map(|c| (c.type_.as_str(), c.last_transition_time.clone()))
            .collect();
        assert_eq!(
            times,
            vec![
                (READY, at(100)),
                (ACCESS_ALLOWED, at(200)),
                (BRANCH_ALLOWED, at(200)),
                ("Conflict", at(50)),
            ]
        );
        assert_eq!(merged[0].message, "still ok");
        assert_eq!(merged[0].observed_generation, Some(2));
        // Merging the same desired state again changes nothing: no status write needed.
        assert_eq!(merge_conditions(&merged, &desired, &at(300)), merged);
    }

    #[test]
    fn ready_follows_first_failed_then_first_pending_check() {
        let table: Vec<(Vec<Check>, &str, &str)> = vec![
            (vec![Check::ok("A", "Fine", "a")], "True", "Ready"),
            (
                vec![
                    Check::pending("A", "Pending", "a"),
                    Check::failed("B", "Broken", "b"),
                ],
                "False",
                "Broken",
            ),
            (
                vec![
                    Check::ok("A", "Fine", "a"),
                    Check::pending("B", "Pending", "b"),
                ],
                "Unknown",
                "Pending",
            ),
        ];
        for (checks, status, why) in table {
            let (conditions, ready) = with_ready(checks, "all good".into(), Some(3));
            assert_eq!(conditions[0].type_, READY);
            assert_eq!(conditions[0].status, status);
            assert_eq!(conditions[0].reason, why);
            assert_eq!(ready, status == "True");
            assert!(conditions.iter().all(|c| c.observed_generation == Some(3)));
        }
    }

    #[test]
    fn long_messages_are_cut_at_a_character_boundary() {
        let long = "é".repeat(MAX_MESSAGE_BYTES);
        let c = condition(READY, Status::False, "X", long, None);
        assert!(c.message.len() <= MAX_MESSAGE_BYTES);
        assert!(c.message.ends_with("..."));
    }

    #[test]
    fn join_limited_counts_the_rest() {
        let items = (0..5).map(|i| i.to_string());
        assert_eq!(join_limited(items.clone(), 10), "0, 1, 2, 3, 4");
        assert_eq!(join_limited(items, 2), "0, 1 and 3 more");
    }
}
