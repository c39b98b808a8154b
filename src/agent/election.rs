//! Leader election by repository, the pure part: Lease names, what each replica sees of the
//! Leases, and the decision of one round (renew, acquire, shed) that splits the repositories
//! between the live replicas. No I/O: the `leases` module reads and writes the Leases.
//!
//! Conventions of Kubernetes' leader election (client-go): a Lease is expired when its record
//! (resourceVersion) has not changed for `leaseDurationSeconds` *as observed locally* (no clock
//! of another machine is trusted); the holder renews every retry period and considers itself the
//! leader only until `renew deadline` after its last successful renewal began, which leaves
//! `lease duration - renew deadline` as the safety margin before anyone may take over.

use crate::git::url::RepoKey;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// Prefix of every Lease name the agent writes.
pub const LEASE_PREFIX: &str = "gitops-reverser-";
/// Label on every Lease the agent writes (what it is for: `repository` or `member`).
pub const ROLE_LABEL: &str = "configbutler.ai/lease-role";
/// Annotation naming the repository and branch of a repository Lease (no credentials).
pub const REPOSITORY_ANNOTATION: &str = "configbutler.ai/repository";

/// How the replicas elect a leader per repository (the `--leader-elect-*` flags).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElectionConfig {
    /// This replica's identity (`holderIdentity`): the pod name.
    pub identity: String,
    /// Where the Leases live: the agent's namespace.
    pub namespace: String,
    /// How long a Lease stays held after the holder last renewed it (`leaseDurationSeconds`).
    pub lease_duration: Duration,
    /// How long the holder keeps pushing after its last successful renewal began; must be less
    /// than the lease duration (the difference is the fencing margin).
    pub renew_deadline: Duration,
    /// How often Leases are renewed and free ones tried.
    pub retry_period: Duration,
}

/// The Kubernetes defaults (kube-controller-manager's): 15 s, 10 s, 2 s.
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(15);
pub const DEFAULT_RENEW_DEADLINE: Duration = Duration::from_secs(10);
pub const DEFAULT_RETRY_PERIOD: Duration = Duration::from_secs(2);

/// The election settings do not fit together.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ElectionConfigError {
    #[error(
        "--leader-elect-renew-deadline ({deadline:?}) must be less than \
         --leader-elect-lease-duration ({duration:?}): the difference is the fencing margin"
    )]
    DeadlineNotBelowDuration {
        deadline: Duration,
        duration: Duration,
    },
    #[error(
        "--leader-elect-retry-period ({retry:?}) must be less than \
         --leader-elect-renew-deadline ({deadline:?})"
    )]
    RetryNotBelowDeadline { retry: Duration, deadline: Duration },
    #[error("--leader-elect-lease-duration must be at least 1s (Leases count whole seconds)")]
    TooShort,
}

impl ElectionConfig {
    /// Checks the timing flags the way kube-controller-manager does.
    pub fn validate(&self) -> Result<(), ElectionConfigError> {
        if self.lease_duration < Duration::from_secs(1) {
            return Err(ElectionConfigError::TooShort);
        }
        if self.renew_deadline >= self.lease_duration {
            return Err(ElectionConfigError::DeadlineNotBelowDuration {
                deadline: self.renew_deadline,
                duration: self.lease_duration,
            });
        }
        if self.retry_period >= self.renew_deadline {
            return Err(ElectionConfigError::RetryNotBelowDeadline {
                retry: self.retry_period,
                deadline: self.renew_deadline,
            });
        }
        Ok(())
    }

    /// `leaseDurationSeconds` as written (whole seconds, rounded up).
    pub fn lease_duration_seconds(&self) -> i32 {
        let d = self.lease_duration;
        let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
        i32::try_from(secs).unwrap_or(i32::MAX)
    }
}

fn short_hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    digest[..6].iter().map(|b| format!("{b:02x}")).collect()
}

/// The Lease of one repository worker: `gitops-reverser-<12 hex of sha256(url#branch)>`, the
/// same on every replica (the key is the normalized URL, without credentials).
pub fn lease_name(key: &RepoKey) -> String {
    format!("{LEASE_PREFIX}{}", short_hash(&key.to_string()))
}

/// The Lease that says a replica is alive (and so counts when the repositories are split).
pub fn member_lease_name(identity: &str) -> String {
    format!("{LEASE_PREFIX}member-{}", short_hash(identity))
}

/// One Lease as this replica last saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    pub holder: Option<String>,
    pub resource_version: String,
    /// `leaseDurationSeconds`, or ours when it has none.
    pub duration: Duration,
    /// When this replica first saw this resourceVersion (local monotonic clock).
    pub seen_at: Instant,
}

impl Observed {
    /// Held by someone who renewed it within its duration, as observed here.
    pub fn is_live(&self, now: Instant) -> bool {
        self.holder.as_deref().is_some_and(|h| !h.is_empty())
            && now.saturating_duration_since(self.seen_at) < self.duration
    }

    pub fn is_held_by(&self, identity: &str) -> bool {
        self.holder.as_deref() == Some(identity)
    }
}

/// Merges a fresh read into what was observed: the observation time moves only when the
/// record changed (a new resourceVersion), as client-go's `observedTime`.
pub fn observe(previous: Option<&Observed>, mut fresh: Observed) -> Observed {
    if let Some(previous) = previous
        && previous.resource_version == fresh.resource_version
    {
        fresh.seen_at = previous.seen_at;
    }
    fresh
}

/// What this replica does with one Lease this round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Ours: write a new renewTime.
    Renew(RepoKey),
    /// Free, expired or missing: take it (create it, or update it with its resourceVersion).
    Acquire(RepoKey),
    /// Ours, but more than our share while another replica has less: hand it over (the
    /// runtime stops its destinations and pushes what they have, then the Lease is released).
    Shed(RepoKey),
}

/// What one round decides from.
#[derive(Debug)]
pub struct Round<'a> {
    pub identity: &'a str,
    pub now: Instant,
    /// Every repository Lease the plan needs, with what was observed of it (`None`: missing).
    pub repositories: BTreeMap<RepoKey, Option<&'a Observed>>,
    /// The other replicas' member Leases.
    pub members: Vec<&'a Observed>,
    /// Repositories this replica let go of recently (not taken again during the cool-down).
    pub cooling: &'a BTreeSet<RepoKey>,
    /// Repositories being handed over (still renewed until released).
    pub shedding: &'a BTreeSet<RepoKey>,
}

/// How many repositories one replica should lead: `ceil(repositories / live replicas)`.
pub fn fair_share(repositories: usize, replicas: usize) -> usize {
    repositories.div_ceil(replicas.max(1))
}

/// Decides one round: renew what is ours, shed what is over our share, acquire free or expired
/// Leases up to our share (each replica tries them in its own order, so two replicas starting
/// together tend to pick different ones; a lost race is a conflict and costs nothing).
pub fn decide(round: &Round<'_>) -> Vec<Action> {
    let me = round.identity;
    let live_others: BTreeSet<&str> = round
        .members
        .iter()
        .filter(|m| m.is_live(round.now) && !m.is_held_by(me))
        .filter_map(|m| m.holder.as_deref())
        .collect();
    let share = fair_share(round.repositories.len(), live_others.len() + 1);
    let mut ours: Vec<&RepoKey> = round
        .repositories
        .iter()
        .filter(|(_, o)| o.is_some_and(|o| o.is_held_by(me) && o.is_live(round.now)))
        .map(|(k, _)| k)
        .collect();
    let mut actions: Vec<Action> = ours.iter().map(|k| Action::Renew((*k).clone())).collect();
    let kept = ours
        .iter()
        .filter(|k| !round.shedding.contains(**k))
        .count();
    // Another replica may take over only what is free: shed while we have more than our
    // share and some replica has less (it then finds the Lease free).
    let others_lead = round
        .repositories
        .values()
        .filter(|o| o.is_some_and(|o| o.is_live(round.now) && !o.is_held_by(me)))
        .count();
    let room_elsewhere = share * live_others.len() > others_lead;
    if kept > share && room_elsewhere {
        ours.sort_by_key(|k| std::cmp::Reverse(preference(me, k)));
        let excess = kept - share;
        actions.extend(
            ours.iter()
                .filter(|k| !round.shedding.contains(**k))
                .take(excess)
                .map(|k| Action::Shed((*k).clone())),
        );
    }
    // What we handed over is left to the others while one of them has room for it; when none
    // has (it left too), it is ours again at once.
    let mut free: Vec<&RepoKey> = round
        .repositories
        .iter()
        .filter(|(k, _)| !(room_elsewhere && round.cooling.contains(*k)))
        .filter(|(_, o)| o.is_none_or(|o| !o.is_live(round.now)))
        .map(|(k, _)| k)
        .collect();
    free.sort_by_key(|k| preference(me, k));
    let room = share.saturating_sub(kept);
    actions.extend(
        free.into_iter()
            .take(room)
            .map(|k| Action::Acquire(k.clone())),
    );
    actions
}

/// This replica's order of preference among repositories (a hash of both names).
fn preference(identity: &str, key: &RepoKey) -> String {
    short_hash(&format!("{identity}\n{key}"))
}

/// Whether this replica may still push to a repository: the fencing check. Held until
/// `renew deadline` after the last successful renewal began.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tenure {
    /// When the last successful write of the Lease (acquire or renew) was sent.
    renewed: Option<Instant>,
}

impl Tenure {
    /// A write of the Lease that was sent at `sent` succeeded.
    pub fn renewed(&mut self, sent: Instant) {
        self.renewed = Some(self.renewed.map_or(sent, |r| r.max(sent)));
    }

    /// The Lease is lost (another holder seen, a conflict, or released).
    pub fn end(&mut self) {
        self.renewed = None;
    }

    /// True while `now` is before the last renewal + the renew deadline.
    pub fn holds(&self, now: Instant, renew_deadline: Duration) -> bool {
        self.renewed
            .is_some_and(|r| now.saturating_duration_since(r) < renew_deadline)
    }

    pub fn ever(&self) -> bool {
        self.renewed.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::url::NormalizedUrl;

    fn key(n: u32) -> RepoKey {
        RepoKey {
            url: NormalizedUrl::parse(&format!("https://git.example/org/repo{n}.git")).unwrap(),
            branch: "main".into(),
        }
    }

    fn held(by: &str, seen_at: Instant) -> Observed {
        Observed {
            holder: Some(by.into()),
            resource_version: "1".into(),
            duration: Duration::from_secs(15),
            seen_at,
        }
    }

    fn round<'a>(
        identity: &'a str,
        now: Instant,
        repositories: BTreeMap<RepoKey, Option<&'a Observed>>,
        members: Vec<&'a Observed>,
        empty: &'a BTreeSet<RepoKey>,
    ) -> Round<'a> {
        Round {
            identity,
            now,
            repositories,
            members,
            cooling: empty,
            shedding: empty,
        }
    }

    #[test]
    fn names_are_deterministic_and_hide_the_url() {
        let a = lease_name(&key(1));
        assert_eq!(a, lease_name(&key(1)));
        assert_ne!(a, lease_name(&key(2)));
        assert!(
            a.starts_with("gitops-reverser-") && a.len() == 16 + 12,
            "{a}"
        );
        assert!(!a.contains("example"));
        assert_ne!(member_lease_name("pod-a"), member_lease_name("pod-b"));
        let mut other_branch = key(1);
        other_branch.branch = "dev".into();
        assert_ne!(a, lease_name(&other_branch));
    }

    #[test]
    fn alone_a_replica_takes_every_repository_and_two_split_them() {
        let t0 = Instant::now();
        let none = BTreeSet::new();
        let repos = BTreeMap::from([(key(1), None), (key(2), None)]);
        let alone = decide(&round("a", t0, repos.clone(), vec![], &none));
        assert_eq!(alone.len(), 2);
        assert!(alone.iter().all(|a| matches!(a, Action::Acquire(_))));
        // With a live second replica each takes one.
        let b = held("b", t0);
        let two = decide(&round("a", t0, repos, vec![&b], &none));
        assert_eq!(two.len(), 1, "{two:?}");
    }

    #[test]
    fn a_replica_over_its_share_sheds_when_another_has_room() {
        let t0 = Instant::now();
        let none = BTreeSet::new();
        let (r1, r2) = (held("a", t0), held("a", t0));
        let repos = BTreeMap::from([(key(1), Some(&r1)), (key(2), Some(&r2))]);
        // Alone: renew both.
        let alone = decide(&round("a", t0, repos.clone(), vec![], &none));
        assert_eq!(alone, vec![Action::Renew(key(1)), Action::Renew(key(2))]);
        // Replica b came up: a sheds one and still renews both until it is released.
        let b = held("b", t0);
        let actions = decide(&round("a", t0, repos.clone(), vec![&b], &none));
        assert_eq!(actions.len(), 3, "{actions:?}");
        assert_eq!(
            actions
                .iter()
                .filter(|a| matches!(a, Action::Shed(_)))
                .count(),
            1
        );
        // Once shedding, nothing more is shed.
        let shedding = BTreeSet::from([key(1)]);
        let r = Round {
            shedding: &shedding,
            ..round("a", t0, repos, vec![&b], &none)
        };
        assert!(!decide(&r).iter().any(|a| matches!(a, Action::Shed(_))));
    }

    #[test]
    fn an_expired_lease_of_a_dead_replica_is_taken_over() {
        let t0 = Instant::now();
        let none = BTreeSet::new();
        let (mine, theirs, member) = (held("a", t0), held("b", t0), held("b", t0));
        let repos = BTreeMap::from([(key(1), Some(&mine)), (key(2), Some(&theirs))]);
        // Within the duration: b is alive, its Lease is left alone.
        let soon = t0 + Duration::from_secs(5);
        assert_eq!(
            decide(&round("a", soon, repos.clone(), vec![&member], &none)),
            vec![Action::Renew(key(1))]
        );
        // b stopped renewing (its records did not change for a lease duration): take over.
        // Our own Lease was renewed meanwhile (a new resourceVersion, seen now).
        let later = t0 + Duration::from_secs(16);
        let renewed = held("a", later);
        let repos = BTreeMap::from([(key(1), Some(&renewed)), (key(2), Some(&theirs))]);
        assert_eq!(
            decide(&round("a", later, repos, vec![&member], &none)),
            vec![Action::Renew(key(1)), Action::Acquire(key(2))]
        );
    }

    #[test]
    fn a_handed_over_repository_is_left_to_a_replica_with_room() {
        let t0 = Instant::now();
        let cooling = BTreeSet::from([key(1)]);
        let none = BTreeSet::new();
        let (mine, b) = (held("a", t0), held("b", t0));
        let repos = BTreeMap::from([(key(1), None), (key(2), Some(&mine))]);
        // b is alive and leads nothing: key(1) is left for it.
        let r = Round {
            cooling: &cooling,
            ..round("a", t0, repos.clone(), vec![&b], &none)
        };
        assert_eq!(decide(&r), vec![Action::Renew(key(2))]);
        // b left (no live member): key(1) is ours again at once.
        let r = Round {
            cooling: &cooling,
            ..round("a", t0, repos, vec![], &none)
        };
        assert_eq!(
            decide(&r),
            vec![Action::Renew(key(2)), Action::Acquire(key(1))]
        );
    }

    #[test]
    fn observation_time_moves_only_with_the_record() {
        let t0 = Instant::now();
        let first = held("b", t0);
        let same = observe(Some(&first), held("b", t0 + Duration::from_secs(9)));
        assert_eq!(same.seen_at, t0);
        let mut changed = held("b", t0 + Duration::from_secs(9));
        changed.resource_version = "2".into();
        assert_eq!(
            observe(Some(&first), changed).seen_at,
            t0 + Duration::from_secs(9)
        );
    }

    #[test]
    fn tenure_ends_at_the_renew_deadline_and_on_loss() {
        let t0 = Instant::now();
        let deadline = Duration::from_secs(10);
        let mut tenure = Tenure::default();
        assert!(!tenure.holds(t0, deadline));
        tenure.renewed(t0);
        assert!(tenure.holds(t0 + Duration::from_secs(9), deadline));
        assert!(!tenure.holds(t0 + Duration::from_secs(10), deadline));
        tenure.renewed(t0 + Duration::from_secs(8));
        assert!(tenure.holds(t0 + Duration::from_secs(17), deadline));
        tenure.end();
        assert!(!tenure.holds(t0 + Duration::from_secs(9), deadline));
    }

    #[test]
    fn timing_flags_are_checked() {
        let mut c = ElectionConfig {
            identity: "a".into(),
            namespace: "ns".into(),
            lease_duration: DEFAULT_LEASE_DURATION,
            renew_deadline: DEFAULT_RENEW_DEADLINE,
            retry_period: DEFAULT_RETRY_PERIOD,
        };
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.lease_duration_seconds(), 15);
        c.renew_deadline = c.lease_duration;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("fencing margin")
        );
        c.renew_deadline = Duration::from_secs(1);
        assert!(matches!(
            c.validate(),
            Err(ElectionConfigError::RetryNotBelowDeadline { .. })
        ));
    }
}
