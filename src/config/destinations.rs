//! GitDestination planning: resolving `repoRef`, branch, folder and path template into what a
//! worker needs, and the folder-overlap check between destinations of one repository + branch.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::ObjectKey;
use super::RuleKey;
use super::conditions::{self, Check, Health, Status, reason, with_ready};
use super::repos::{RepoPlan, admit_namespace};
use crate::crd::{
    DestinationMode, GitDestination, GitRepoConfig, PrunePolicy, WindowSettings, validate_folder,
};
use crate::git::url::RepoKey;
use crate::manifest::layout::PathTemplate;

/// Everything a worker and the layout need to write one destination.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedDestination {
    /// The GitRepoConfig it writes through.
    pub repo: ObjectKey,
    /// Normalized URL + branch: the worker it shares with every destination on that branch.
    pub repo_key: RepoKey,
    /// The GitRepoConfig's `spec.url` as written, for the transport.
    pub remote_url: String,
    pub folder: String,
    pub path_template: PathTemplate,
    /// `spec.placements`, parsed, in order.
    pub placements: Vec<crate::manifest::layout::PlacementRule>,
    pub prune: PrunePolicy,
    /// `spec.resyncInterval`: a reconcile against the branch tip this often.
    pub resync: Option<std::time::Duration>,
    pub window: WindowSettings,
    pub committer_name: String,
    pub committer_email: String,
    pub author_email_domain: Option<String>,
    /// The GitRepoConfig's credentials Secret.
    pub credentials: Option<ObjectKey>,
    /// `spec.suspend`: holds no worker and writes nothing until resumed.
    pub suspended: bool,
    /// `spec.mode`: `Observe` decides and reports, and writes nothing.
    pub mode: DestinationMode,
    /// The age recipients Secrets are encrypted to (checked), when it encrypts them.
    pub age_recipients: Option<Vec<String>>,
    /// The Secret (in the destination's namespace) holding age identities that decrypt Git's
    /// SOPS files, when named.
    pub age_identity: Option<ObjectKey>,
    /// `spec.exclusions`, compiled (rule ids name the destination).
    pub exclusions: crate::manifest::user_exclude::UserExclusions,
}

/// What the plan concluded about one GitDestination.
#[derive(Clone, Debug, PartialEq)]
pub struct DestinationPlan {
    pub generation: Option<i64>,
    /// The GitRepoConfig `repoRef` names, when it exists.
    pub repo: Option<ObjectKey>,
    /// Set when the repository, folder and path template resolve (even if not Ready because
    /// of the branch, the access policy or a conflict).
    pub resolved: Option<ResolvedDestination>,
    /// `Ready`, `ReferencesResolved`, `BranchAllowed`, `AccessAllowed`, `DestinationConflict`.
    pub conditions: Vec<Condition>,
    /// True when it is in effect: rules pointing at it write, it holds a worker.
    pub ready: bool,
    /// The destination that owns an overlapping folder, when this one lost the tie-break.
    pub conflicts_with: Option<ObjectKey>,
    /// Ready rules writing to it.
    pub rules: BTreeSet<RuleKey>,
}

/// The destination's view of its repository's `RepositoryReachable`: the same status and
/// cause, naming the GitRepoConfig, without bearing on the destination's `Ready` (an outage
/// delays pushes; capture goes on and nothing is lost).
fn repository_reachable(repo_ref: &ObjectKey, plan: &RepoPlan) -> Check {
    let found = plan
        .conditions
        .iter()
        .find(|c| c.type_ == conditions::REPOSITORY_REACHABLE);
    let (status, reason_) = match found.map(|c| (c.status.as_str(), c.reason.as_str())) {
        Some(("True", _)) => (Status::True, reason::REACHABLE),
        Some(("False", r)) if r == reason::INVALID_URL => (Status::False, reason::INVALID_URL),
        Some(("False", _)) => (Status::False, reason::UNREACHABLE),
        _ => (Status::Unknown, reason::PENDING),
    };
    let message = found.map(|c| c.message.as_str()).unwrap_or_default();
    Check::informational(
        conditions::REPOSITORY_REACHABLE,
        status,
        reason_,
        format!("through GitRepoConfig {repo_ref}: {message}"),
    )
}

/// `Suspended`: informational (a suspended destination is still configured correctly).
fn suspended(suspend: bool) -> Check {
    if suspend {
        Check::informational(
            conditions::SUSPENDED,
            Status::True,
            reason::SUSPENDED,
            "spec.suspend is true: nothing is written; when it is set back to false the folder \
             is reconciled and what changed meanwhile lands as one commit",
        )
    } else {
        Check::informational(
            conditions::SUSPENDED,
            Status::False,
            reason::ACTIVE,
            "spec.suspend is false: changes are written",
        )
    }
}

/// True when one folder is the other or lies inside it, by whole path segments: `apps`
/// overlaps `apps` and `apps/prod`, not `apps2`.
pub fn folders_overlap(a: &str, b: &str) -> bool {
    a == b || is_inside(a, b) || is_inside(b, a)
}

fn is_inside(inner: &str, outer: &str) -> bool {
    inner
        .strip_prefix(outer)
        .is_some_and(|rest| rest.starts_with('/'))
}

/// A destination competing for a folder on one repository + branch.
struct Claim {
    key: ObjectKey,
    repo: ObjectKey,
    repo_key: RepoKey,
    folder: String,
    created: Option<Time>,
}

/// The tie-break: earlier `creationTimestamp` first (unset last), then namespace/name.
fn claim_order(c: &Claim) -> (bool, Option<&Time>, &ObjectKey) {
    (c.created.is_none(), c.created.as_ref(), &c.key)
}

/// The destination that owns a folder another one overlaps.
struct Winner {
    key: ObjectKey,
    repo: ObjectKey,
    folder: String,
}

/// For each losing claim, the winner it overlaps. Claims are taken in tie-break order; a claim
/// overlapping a folder already won on the same repository + branch loses (losers own nothing,
/// so they cannot block a later destination).
fn conflicts(mut claims: Vec<&Claim>) -> BTreeMap<ObjectKey, Winner> {
    claims.sort_by(|a, b| claim_order(a).cmp(&claim_order(b)));
    let mut winners: BTreeMap<&RepoKey, Vec<&Claim>> = BTreeMap::new();
    let mut lost = BTreeMap::new();
    for claim in claims {
        let won = winners.entry(&claim.repo_key).or_default();
        match won
            .iter()
            .find(|w| folders_overlap(&w.folder, &claim.folder))
        {
            Some(winner) => {
                lost.insert(
                    claim.key.clone(),
                    Winner {
                        key: winner.key.clone(),
                        repo: winner.repo.clone(),
                        folder: winner.folder.clone(),
                    },
                );
            }
            None => won.push(claim),
        }
    }
    lost
}

/// Plans every destination. `repos` holds each GitRepoConfig with its plan.
pub(crate) fn plan_destinations(
    destinations: &[GitDestination],
    repos: &BTreeMap<ObjectKey, (&GitRepoConfig, RepoPlan)>,
    namespaces: &BTreeMap<String, BTreeMap<String, String>>,
) -> BTreeMap<ObjectKey, DestinationPlan> {
    struct Partial {
        generation: Option<i64>,
        repo: Option<ObjectKey>,
        resolved: Option<ResolvedDestination>,
        checks: Vec<Check>,
        claim: Option<Claim>,
    }
    let mut partials: BTreeMap<ObjectKey, Partial> = BTreeMap::new();
    for dest in destinations {
        let Some(key) = ObjectKey::of(&dest.metadata) else {
            continue;
        };
        let spec = &dest.spec;
        let who = format!("GitDestination {key}");
        let mut problems: Vec<(&'static str, String)> = Vec::new();

        let folder_ok = match validate_folder(&spec.folder) {
            Ok(()) => true,
            Err(err) => {
                problems.push((reason::INVALID_FOLDER, format!("spec.{err}")));
                false
            }
        };
        let template = match spec.path_template.as_deref() {
            None => Some(PathTemplate::default()),
            Some(t) => match PathTemplate::parse(t) {
                Ok(t) => Some(t),
                Err(err) => {
                    problems.push((
                        reason::INVALID_PATH_TEMPLATE,
                        format!("spec.pathTemplate: {err}"),
                    ));
                    None
                }
            },
        };
        let mut placements = Vec::new();
        let mut placements_ok = true;
        for (i, p) in spec.placements.iter().enumerate() {
            let parsed = if p.bundle {
                PathTemplate::parse_bundle(&p.path)
            } else {
                PathTemplate::parse(&p.path)
            };
            match parsed {
                Ok(template) => placements.push(crate::manifest::layout::PlacementRule {
                    groups: p.api_groups.clone(),
                    resources: p.resources.clone(),
                    kinds: p.kinds.clone(),
                    template,
                    bundle: p.bundle,
                }),
                Err(err) => {
                    let hint = if p.bundle {
                        ""
                    } else {
                        " (set bundle: true for a file several objects share)"
                    };
                    problems.push((
                        reason::INVALID_PATH_TEMPLATE,
                        format!("spec.placements[{i}].path: {err}{hint}"),
                    ));
                    placements_ok = false;
                }
            }
        }
        let resync = match spec.resync_interval.as_deref() {
            None => Some(None),
            Some(text) => match crate::crd::duration::parse_duration(text) {
                Ok(d) if d >= std::time::Duration::from_secs(10) => Some(Some(d)),
                Ok(_) => {
                    problems.push((
                        reason::INVALID_RESYNC_INTERVAL,
                        format!("spec.resyncInterval: {text:?} is shorter than 10s"),
                    ));
                    None
                }
                Err(err) => {
                    problems.push((
                        reason::INVALID_RESYNC_INTERVAL,
                        format!("spec.resyncInterval: {err}"),
                    ));
                    None
                }
            },
        };
        let encryption_ok = match &spec.encryption {
            None => true,
            Some(e) => match crate::secrets::Recipients::parse(
                e.sops.age_recipients.iter().map(String::as_str),
            ) {
                Ok(_) => true,
                Err(err) => {
                    problems.push((
                        reason::INVALID_ENCRYPTION,
                        format!("spec.encryption.sops.ageRecipients: {err}"),
                    ));
                    false
                }
            },
        };
        let exclusions = match &spec.exclusions {
            None => Some(Default::default()),
            Some(e) => match e.compile(&who, "spec.exclusions") {
                Ok(c) => Some(c),
                Err(err) => {
                    problems.push((reason::INVALID_EXCLUSIONS, err.to_string()));
                    None
                }
            },
        };
        let repo_ref = ObjectKey::new(spec.repo_namespace(&key.namespace), &spec.repo_ref.name);
        let repo = repos.get(&repo_ref);
        match repo {
            None => problems.insert(
                0,
                (
                    reason::REPO_NOT_FOUND,
                    format!("GitRepoConfig {repo_ref} (spec.repoRef) not found"),
                ),
            ),
            Some((_, plan)) if !plan.usable() => {
                let why = plan
                    .conditions
                    .first()
                    .map(|c| c.message.as_str())
                    .unwrap_or_default();
                problems.insert(
                    0,
                    (
                        reason::REPO_INVALID,
                        format!("GitRepoConfig {repo_ref} is not usable: {why}"),
                    ),
                );
            }
            Some(_) => {}
        }

        let mut checks = Vec::new();
        checks.push(match problems.first() {
            None => Check::ok(
                conditions::REFERENCES_RESOLVED,
                reason::RESOLVED,
                format!(
                    "GitRepoConfig {repo_ref}, folder {}, path template {}",
                    spec.folder,
                    spec.path_template
                        .as_deref()
                        .unwrap_or(crate::manifest::layout::DEFAULT_TEMPLATE)
                ),
            ),
            Some((first, _)) => Check::failed(
                conditions::REFERENCES_RESOLVED,
                first,
                format!(
                    "{who}: {}",
                    problems
                        .iter()
                        .map(|(_, m)| m.as_str())
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            ),
        });

        let (branch_ok, admitted) = match repo {
            None => {
                let wait = format!("{who}: waiting for GitRepoConfig {repo_ref}");
                checks.push(Check::pending(
                    conditions::BRANCH_ALLOWED,
                    reason::REPO_NOT_RESOLVED,
                    &wait,
                ));
                checks.push(Check::pending(
                    conditions::ACCESS_ALLOWED,
                    reason::REPO_NOT_RESOLVED,
                    &wait,
                ));
                (false, false)
            }
            Some((config, _)) => {
                let branch_ok = config.spec.allows_branch(&spec.branch);
                let globs = config.spec.allowed_branches.join(", ");
                checks.push(if branch_ok {
                    Check::ok(
                        conditions::BRANCH_ALLOWED,
                        reason::BRANCH_ALLOWED,
                        format!("branch {} matches allowedBranches [{globs}] of GitRepoConfig {repo_ref}", spec.branch),
                    )
                } else {
                    Check::failed(
                        conditions::BRANCH_ALLOWED,
                        reason::BRANCH_NOT_ALLOWED,
                        format!(
                            "{who}: branch {} is not allowed by GitRepoConfig {repo_ref} \
                             (allowedBranches: [{globs}])",
                            spec.branch
                        ),
                    )
                });
                let admission = admit_namespace(
                    &repo_ref,
                    &config.spec.access_policy,
                    &key.namespace,
                    namespaces,
                );
                let admitted = admission.is_ok();
                checks.push(match admission {
                    Ok(why) => Check::ok(
                        conditions::ACCESS_ALLOWED,
                        reason::ACCESS_ALLOWED,
                        format!("namespace {} is admitted by GitRepoConfig {repo_ref} ({why})", key.namespace),
                    ),
                    Err(why) => Check::failed(
                        conditions::ACCESS_ALLOWED,
                        reason::NAMESPACE_NOT_ADMITTED,
                        format!(
                            "{who}: namespace {} is not admitted by GitRepoConfig {repo_ref} ({why})",
                            key.namespace
                        ),
                    ),
                });
                (branch_ok, admitted)
            }
        };

        let usable =
            repo.and_then(|(config, plan)| Some((config, plan.url.clone()?, plan.window?)));
        let resolved = match (
            usable,
            folder_ok && encryption_ok && placements_ok,
            &template,
            exclusions,
            resync,
        ) {
            (Some((config, url, window)), true, Some(template), Some(exclusions), Some(resync)) => {
                Some(ResolvedDestination {
                    placements,
                    resync,
                    exclusions,
                    repo: repo_ref.clone(),
                    repo_key: RepoKey {
                        url,
                        branch: spec.branch.clone(),
                    },
                    remote_url: config.spec.url.clone(),
                    folder: spec.folder.clone(),
                    path_template: template.clone(),
                    prune: spec.prune,
                    window,
                    committer_name: config.spec.commit.committer_name.clone(),
                    committer_email: config.spec.commit.committer_email.clone(),
                    author_email_domain: config.spec.commit.author_email_domain.clone(),
                    credentials: repo.and_then(|(_, p)| p.secret.clone()),
                    suspended: spec.suspend,
                    mode: spec.mode,
                    age_recipients: spec
                        .encryption
                        .as_ref()
                        .map(|e| e.sops.age_recipients.clone()),
                    age_identity: spec
                        .encryption
                        .as_ref()
                        .and_then(|e| e.sops.age_identity_secret_ref.as_ref())
                        .map(|r| ObjectKey::new(&key.namespace, &r.name)),
                })
            }
            _ => None,
        };
        // The folder is claimed by identity (repo, branch, folder: all immutable) and policy,
        // not by the mutable path template, so fixing a template never flips ownership.
        let claim = match (repo, folder_ok && branch_ok && admitted) {
            (Some((_, plan)), true) => plan.url.clone().map(|url| Claim {
                key: key.clone(),
                repo: repo_ref.clone(),
                repo_key: RepoKey {
                    url,
                    branch: spec.branch.clone(),
                },
                folder: spec.folder.clone(),
                created: dest.metadata.creation_timestamp.clone(),
            }),
            _ => None,
        };
        if let Some((_, plan)) = repo {
            checks.push(repository_reachable(&repo_ref, plan));
        }
        checks.push(suspended(spec.suspend));
        partials.insert(
            key,
            Partial {
                generation: dest.metadata.generation,
                repo: repo.map(|_| repo_ref),
                resolved,
                checks,
                claim,
            },
        );
    }

    let lost = conflicts(partials.values().filter_map(|p| p.claim.as_ref()).collect());
    let mut out = BTreeMap::new();
    for (key, mut partial) in partials {
        let winner = lost.get(&key);
        partial.checks.push(match (&partial.claim, winner) {
            (None, _) => Check::pending(
                conditions::DESTINATION_CONFLICT,
                reason::PENDING,
                "not checked until the repository, folder, branch and access policy resolve",
            ),
            (Some(claim), None) => Check {
                status: Status::False,
                ..Check::ok(
                    conditions::DESTINATION_CONFLICT,
                    reason::NO_CONFLICT,
                    format!(
                        "no other destination on {} uses folder {}, a folder inside it or one \
                         enclosing it",
                        claim.repo_key, claim.folder
                    ),
                )
            },
            (Some(claim), Some(winner)) => {
                let through = if winner.repo == claim.repo {
                    String::new()
                } else {
                    format!(" through GitRepoConfig {} (same repository)", winner.repo)
                };
                Check {
                    type_: conditions::DESTINATION_CONFLICT,
                    status: Status::True,
                    reason: reason::FOLDER_OVERLAP,
                    message: format!(
                        "GitDestination {key}: folder {} on {} overlaps folder {} of \
                         GitDestination {}{through}, which was created earlier (or sorts first \
                         by namespace/name) and owns it; this destination writes nothing until \
                         it uses a folder that neither contains nor lies inside {}",
                        claim.folder, claim.repo_key, winner.folder, winner.key, winner.folder
                    ),
                    health: Health::Failed,
                    emit: true,
                }
            }
        });
        let ready_message = match &partial.resolved {
            Some(r) if r.suspended => {
                format!(
                    "suspended: writes nothing to folder {} on {}",
                    r.folder, r.repo_key
                )
            }
            Some(r) if r.mode == DestinationMode::Observe => format!(
                "observes folder {} on {}: reports what it would write, writes nothing",
                r.folder, r.repo_key
            ),
            Some(r) => format!("writes folder {} on {}", r.folder, r.repo_key),
            None => String::new(),
        };
        let (conditions, ready) = with_ready(partial.checks, ready_message, partial.generation);
        out.insert(
            key,
            DestinationPlan {
                generation: partial.generation,
                repo: partial.repo,
                ready: ready && partial.resolved.is_some(),
                resolved: partial.resolved,
                conditions,
                conflicts_with: winner.map(|w| w.key.clone()),
                rules: BTreeSet::new(),
            },
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::conditions::{
        ACCESS_ALLOWED, BRANCH_ALLOWED, DESTINATION_CONFLICT, READY, REFERENCES_RESOLVED,
    };
    use super::super::testkit::*;
    use super::super::{Inputs, plan};
    use super::*;

    fn status<'a>(p: &'a DestinationPlan, type_: &str) -> (&'a str, &'a str) {
        p.conditions
            .iter()
            .find(|c| c.type_ == type_)
            .map(|c| (c.status.as_str(), c.reason.as_str()))
            .unwrap_or(("missing", "missing"))
    }

    #[test]
    fn folder_overlap_is_by_segments() {
        let table = [
            ("apps", "apps", true),
            ("apps", "apps/prod", true),
            ("apps/prod", "apps", true),
            ("apps", "apps2", false),
            ("apps/prod", "apps/dev", false),
            ("a/b/c", "a", true),
            ("apps-x", "apps", false),
        ];
        for (a, b, want) in table {
            assert_eq!(folders_overlap(a, b), want, "{a} vs {b}");
        }
    }

    /// Table: destinations as (name, repo, branch, folder, created second); expected conflicted
    /// names with their winner.
    #[test]
    fn destination_conflicts() {
        type Dest = (&'static str, &'static str, &'static str, &'static str, i64);
        type Case = (&'static str, Vec<Dest>, Vec<(&'static str, &'static str)>);
        let table: Vec<Case> = vec![
            (
                "same folder",
                vec![
                    ("a", "r1", "main", "apps", 1),
                    ("b", "r1", "main", "apps", 2),
                ],
                vec![("b", "a")],
            ),
            (
                "nested",
                vec![
                    ("a", "r1", "main", "apps", 1),
                    ("b", "r1", "main", "apps/prod", 2),
                ],
                vec![("b", "a")],
            ),
            (
                "enclosing",
                vec![
                    ("a", "r1", "main", "apps/prod", 1),
                    ("b", "r1", "main", "apps", 2),
                ],
                vec![("b", "a")],
            ),
            (
                "siblings",
                vec![
                    ("a", "r1", "main", "apps/prod", 1),
                    ("b", "r1", "main", "apps/dev", 2),
                    ("c", "r1", "main", "apps2", 3),
                ],
                vec![],
            ),
            (
                "other branch",
                vec![
                    ("a", "r1", "main", "apps", 1),
                    ("b", "r1", "dev", "apps", 2),
                ],
                vec![],
            ),
            (
                "two spellings of one repo",
                vec![
                    ("a", "r1", "main", "apps", 1),
                    ("b", "r2", "main", "apps/x", 2),
                ],
                vec![("b", "a")],
            ),
            (
                "other repo",
                vec![
                    ("a", "r1", "main", "apps", 1),
                    ("b", "r3", "main", "apps", 2),
                ],
                vec![],
            ),
            (
                "earlier wins whatever the name",
                vec![
                    ("z", "r1", "main", "apps", 1),
                    ("a", "r1", "main", "apps", 2),
                ],
                vec![("a", "z")],
            ),
            (
                "same time: namespace/name decides",
                vec![
                    ("b", "r1", "main", "apps", 5),
                    ("a", "r1", "main", "apps", 5),
                ],
                vec![("b", "a")],
            ),
            // A loser owns nothing: c does not conflict with b, which lost to a.
            (
                "losers block nobody",
                vec![
                    ("a", "r1", "main", "apps/prod", 1),
                    ("b", "r1", "main", "apps", 2),
                    ("c", "r1", "main", "apps/dev", 3),
                ],
                vec![("b", "a")],
            ),
        ];
        for (name, dests, want) in table {
            let mut repos = vec![
                repo("infra", "r1", "git@github.com:org/repo.git"),
                // The same repository as r1, spelled differently.
                repo("infra", "r2", "ssh://git@GitHub.com:22/org/repo/"),
                repo("infra", "r3", "git@github.com:org/other.git"),
            ];
            repos.rotate_left(1);
            let inputs = Inputs {
                repos,
                destinations: dests
                    .iter()
                    .map(|(n, r, b, f, t)| created(dest("infra", n, r, b, f), *t))
                    .collect(),
                ..Inputs::default()
            };
            let p = plan(&inputs);
            let got: Vec<(String, String)> = p
                .destinations
                .iter()
                .filter_map(|(k, d)| {
                    Some((k.name.clone(), d.conflicts_with.as_ref()?.name.clone()))
                })
                .collect();
            let want: Vec<(String, String)> = want
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect();
            assert_eq!(got, want, "{name}");
            for (k, d) in &p.destinations {
                let conflicted = d.conflicts_with.is_some();
                assert_eq!(
                    status(d, DESTINATION_CONFLICT).0,
                    if conflicted { "True" } else { "False" },
                    "{name}: {k}"
                );
                assert_eq!(d.ready, !conflicted, "{name}: {k}");
                if conflicted {
                    assert_eq!(status(d, READY), ("False", "FolderOverlap"), "{name}: {k}");
                    let msg = &d.conditions[0].message;
                    assert!(
                        msg.contains(&format!("GitDestination {k}")) && msg.contains("overlaps"),
                        "{msg}"
                    );
                }
            }
        }
    }

    #[test]
    fn reference_problems_are_reported() {
        let mut r = repo("infra", "main", "https://h/org/r");
        r.spec.allowed_branches = vec!["main".into(), "release/*".into()];
        let mut bad_template = dest("infra", "tpl", "main", "main", "t");
        bad_template.spec.path_template = Some("{name}.yaml".into());
        let inputs = Inputs {
            repos: vec![r],
            destinations: vec![
                dest("infra", "ok", "main", "release/1.2", "ok"),
                dest("infra", "branch", "main", "dev", "b"),
                dest("infra", "missing", "nope", "main", "m"),
                dest("infra", "folder", "main", "main", "../x"),
                bad_template,
            ],
            ..Inputs::default()
        };
        let p = plan(&inputs);
        let d = |n: &str| &p.destinations[&ObjectKey::new("infra", n)];
        assert_eq!(status(d("ok"), READY), ("True", "Ready"));
        assert_eq!(
            status(d("branch"), BRANCH_ALLOWED),
            ("False", "BranchNotAllowed")
        );
        assert!(
            d("branch").conditions[0]
                .message
                .contains("allowedBranches: [main, release/*]")
        );
        assert_eq!(
            status(d("missing"), REFERENCES_RESOLVED),
            ("False", "RepoNotFound")
        );
        assert_eq!(
            status(d("missing"), BRANCH_ALLOWED),
            ("Unknown", "RepoNotResolved")
        );
        assert!(
            d("missing").conditions[0]
                .message
                .contains("GitRepoConfig infra/nope")
        );
        assert_eq!(status(d("folder"), READY), ("False", "InvalidFolder"));
        assert_eq!(status(d("tpl"), READY), ("False", "InvalidPathTemplate"));
        assert!(d("tpl").resolved.is_none());
        let ok = d("ok")
            .resolved
            .as_ref()
            .map(|r| (r.repo_key.to_string(), r.folder.as_str()));
        assert_eq!(ok, Some(("https://h/org/r#release/1.2".to_string(), "ok")));
    }

    #[test]
    fn destination_outside_admitted_namespaces_claims_nothing() {
        // shop's destination is created first but not admitted: it must not block infra's.
        let early = with_repo_ns(dest("shop", "early", "main", "main", "apps"), "infra");
        let late = with_repo_ns(dest("infra", "late", "main", "main", "apps"), "infra");
        let inputs = Inputs {
            namespaces: namespaces(),
            repos: vec![repo("infra", "main", "https://h/org/r")],
            destinations: vec![created(early, 1), created(late, 2)],
            ..Inputs::default()
        };
        let p = plan(&inputs);
        let early = &p.destinations[&ObjectKey::new("shop", "early")];
        assert_eq!(
            status(early, ACCESS_ALLOWED),
            ("False", "NamespaceNotAdmitted")
        );
        assert!(
            early.conditions[0]
                .message
                .contains("SameNamespace admits only namespace infra")
        );
        assert!(p.destinations[&ObjectKey::new("infra", "late")].ready);
    }
}
