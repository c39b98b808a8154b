//! Leader election by repository, the effectful part: one task that, every retry period, lists
//! the agent's Leases (coordination.k8s.io/v1) in its namespace, renews its member Lease, and
//! carries out what `election::decide` says (renew, acquire with the Lease's resourceVersion,
//! shed). The runtime asks `leads` before starting a repository's destinations; the git worker
//! asks `may_push` just before each push (fencing).

use super::election::{
    self, Action, ElectionConfig, LEASE_PREFIX, Observed, REPOSITORY_ANNOTATION, ROLE_LABEL, Round,
    Tenure,
};
use crate::git::url::{RepoKey, redact};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams, Preconditions};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

const MEMBER: &str = "member";
/// A member Lease unchanged for this many of its durations belongs to a replica that is gone
/// (killed without shutting down): it is deleted, so pod churn leaves no Leases behind.
const GONE_MEMBER_DURATIONS: u32 = 20;
const REPOSITORY: &str = "repository";
const NAME_LABEL: &str = "app.kubernetes.io/name";

/// The election of this replica. Cheap to clone.
#[derive(Clone)]
pub struct Leases {
    shared: Arc<Shared>,
}

struct Shared {
    config: ElectionConfig,
    state: Mutex<State>,
    changed: Notify,
}

#[derive(Default)]
struct State {
    /// The repositories the plan has workers for.
    wanted: BTreeSet<RepoKey>,
    tenures: BTreeMap<RepoKey, Tenure>,
    /// Being handed over: the runtime stops its destinations and pushes, then calls
    /// [`Leases::handed_over`]; renewed meanwhile.
    shedding: BTreeSet<RepoKey>,
    /// Handed over to the runtime, not yet taken.
    shed_requests: Vec<RepoKey>,
    /// Pushed what they had: release their Leases next round.
    handed_over: BTreeSet<RepoKey>,
    /// Let go of at this time; not taken again for two lease durations.
    cooling: BTreeMap<RepoKey, Instant>,
    /// What `leads` answered at the end of the last round (a change wakes the runtime).
    leading: BTreeSet<RepoKey>,
}

impl std::fmt::Debug for Leases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leases")
            .field("identity", &self.shared.config.identity)
            .finish_non_exhaustive()
    }
}

impl Leases {
    pub fn new(config: ElectionConfig) -> Self {
        Self {
            shared: Arc::new(Shared {
                config,
                state: Mutex::new(State::default()),
                changed: Notify::new(),
            }),
        }
    }

    pub fn config(&self) -> &ElectionConfig {
        &self.shared.config
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update is a few inserts and removes: a poisoned lock is still consistent.
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The fencing check: true while this replica holds `key`'s Lease, until the renew
    /// deadline after its last successful renewal began (then another replica may take over
    /// only after the rest of the lease duration: the safety margin).
    pub fn may_push(&self, key: &RepoKey) -> bool {
        let deadline = self.shared.config.renew_deadline;
        self.state()
            .tenures
            .get(key)
            .is_some_and(|t| t.holds(Instant::now(), deadline))
    }

    /// True when this replica should run `key`'s destinations: it holds the Lease and is not
    /// handing it over.
    pub fn leads(&self, key: &RepoKey) -> bool {
        self.may_push(key) && !self.state().shedding.contains(key)
    }

    /// The repositories the plan needs workers for (Leases of others are left alone).
    pub fn want(&self, keys: BTreeSet<RepoKey>) {
        self.state().wanted = keys;
    }

    /// Resolves when this replica gained or lost a repository, or must hand one over.
    pub async fn changed(&self) {
        self.shared.changed.notified().await;
    }

    /// Repositories to hand over: stop their destinations, push, then [`Leases::handed_over`].
    pub fn take_shed(&self) -> Vec<RepoKey> {
        std::mem::take(&mut self.state().shed_requests)
    }

    /// `key`'s destinations stopped and its worker pushed: its Lease is released next round.
    pub fn handed_over(&self, key: RepoKey) {
        self.state().handed_over.insert(key);
    }

    /// Starts the election task.
    pub fn spawn(&self, client: kube::Client) -> tokio::task::JoinHandle<()> {
        let api: Api<Lease> = Api::namespaced(client, &self.shared.config.namespace);
        let leases = self.clone();
        tokio::spawn(async move {
            let mut elector = Elector {
                api,
                leases,
                observed: BTreeMap::new(),
                records: BTreeMap::new(),
            };
            loop {
                elector.round().await;
                let retry = elector.leases.shared.config.retry_period;
                // Jitter (client-go's factor 1.2) keeps replicas from writing in lockstep.
                tokio::time::sleep(retry.mul_f64(1.0 + fastrand::f64() * 0.2)).await;
            }
        })
    }

    /// Releases every Lease this replica holds (at shutdown, after the workers pushed), so the
    /// other replicas take over at once instead of after the lease duration.
    pub async fn release_all(&self, client: kube::Client) {
        let api: Api<Lease> = Api::namespaced(client, &self.shared.config.namespace);
        let held: Vec<RepoKey> = {
            let mut state = self.state();
            let held = state
                .tenures
                .iter()
                .filter(|(_, t)| t.ever())
                .map(|(k, _)| k.clone())
                .collect();
            for tenure in state.tenures.values_mut() {
                tenure.end();
            }
            held
        };
        let member = election::member_lease_name(&self.shared.config.identity);
        if let Err(e) = api.delete(&member, &DeleteParams::default()).await {
            tracing::debug!(lease = %member, error = %e, "member lease not deleted");
        }
        for key in held {
            let name = election::lease_name(&key);
            let Ok(mut lease) = api.get(&name).await else {
                continue;
            };
            let ours = lease
                .spec
                .as_ref()
                .and_then(|s| s.holder_identity.as_deref())
                == Some(self.shared.config.identity.as_str());
            if !ours {
                continue;
            }
            release(&mut lease);
            match api.replace(&name, &PostParams::default(), &lease).await {
                Ok(_) => tracing::info!(repository = %key, lease = %name, "lease released"),
                Err(e) => {
                    tracing::warn!(repository = %key, lease = %name, error = %e,
                        "cannot release the lease; it expires after its duration")
                }
            }
        }
    }
}

/// Clears the holder the way client-go releases (`leaseDurationSeconds: 1`).
fn release(lease: &mut Lease) {
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(MicroTime(jiff::Timestamp::now()));
}

struct Elector {
    api: Api<Lease>,
    leases: Leases,
    /// By Lease name.
    observed: BTreeMap<String, Observed>,
    records: BTreeMap<String, Lease>,
}

/// How a write of a Lease ended.
enum Written {
    Ok,
    /// Someone else wrote it first (409): our view was stale.
    Conflict,
    Failed(kube::Error),
}

impl Elector {
    fn config(&self) -> &ElectionConfig {
        &self.leases.shared.config
    }

    async fn round(&mut self) {
        match self
            .api
            .list(&ListParams::default().labels(&format!("{NAME_LABEL}=gitops-reverser")))
            .await
        {
            Ok(list) => self.learn(list.items),
            Err(e) => tracing::warn!(error = %e, namespace = %self.config().namespace,
                "cannot list the leases; holding on until the renew deadline"),
        }
        self.renew_member().await;
        self.forget_gone_members().await;
        self.release_handed_over().await;
        let actions = {
            let state = self.leases.state();
            let now = Instant::now();
            let cooling: BTreeSet<RepoKey> = state.cooling.keys().cloned().collect();
            let identity = self.config().identity.clone();
            let member = election::member_lease_name(&identity);
            let repositories = state
                .wanted
                .iter()
                .map(|k| (k.clone(), self.observed.get(&election::lease_name(k))))
                .collect();
            let members = self
                .records
                .iter()
                .filter(|(name, lease)| **name != member && role_of(lease) == Some(MEMBER))
                .filter_map(|(name, _)| self.observed.get(name))
                .collect();
            election::decide(&Round {
                identity: &identity,
                now,
                repositories,
                members,
                cooling: &cooling,
                shedding: &state.shedding,
            })
        };
        for action in actions {
            match action {
                Action::Renew(key) => self.write(&key, false).await,
                Action::Acquire(key) => self.write(&key, true).await,
                Action::Shed(key) => {
                    tracing::info!(repository = %key,
                        "handing the repository over to a replica with fewer (fair share)");
                    let mut state = self.leases.state();
                    state.shedding.insert(key.clone());
                    state.shed_requests.push(key);
                }
            }
        }
        self.settle();
    }

    /// Takes a fresh listing into what was observed.
    fn learn(&mut self, items: Vec<Lease>) {
        let now = Instant::now();
        let ours = self.config().lease_duration;
        let mut seen = BTreeSet::new();
        for lease in items {
            let Some(name) = lease.metadata.name.clone() else {
                continue;
            };
            if !name.starts_with(LEASE_PREFIX) {
                continue;
            }
            let fresh = observed_of(&lease, ours, now);
            let merged = election::observe(self.observed.get(&name), fresh);
            self.observed.insert(name.clone(), merged);
            self.records.insert(name.clone(), lease);
            seen.insert(name);
        }
        self.observed.retain(|name, _| seen.contains(name));
        self.records.retain(|name, _| seen.contains(name));
    }

    /// Keeps this replica's member Lease current (it counts when repositories are split).
    async fn renew_member(&mut self) {
        let identity = self.config().identity.clone();
        let name = election::member_lease_name(&identity);
        let lease = match self.records.get(&name) {
            Some(existing) => {
                let mut lease = existing.clone();
                self.hold(&mut lease, false);
                lease
            }
            None => self.fresh(&name, MEMBER, None),
        };
        let exists = self.records.contains_key(&name);
        if let Written::Failed(e) = self.put(&name, lease, exists).await {
            tracing::warn!(error = %e, lease = %name, "cannot renew this replica's member lease");
        }
    }

    /// Deletes the member Leases of replicas gone long ago (with their resourceVersion as a
    /// precondition: one that came back is kept).
    async fn forget_gone_members(&mut self) {
        let now = Instant::now();
        let mine = election::member_lease_name(&self.config().identity);
        let gone: Vec<(String, String)> = self
            .records
            .iter()
            .filter(|(name, lease)| **name != mine && role_of(lease) == Some(MEMBER))
            .filter_map(|(name, _)| {
                let o = self.observed.get(name)?;
                (now.saturating_duration_since(o.seen_at) > o.duration * GONE_MEMBER_DURATIONS)
                    .then(|| (name.clone(), o.resource_version.clone()))
            })
            .collect();
        for (name, resource_version) in gone {
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    resource_version: Some(resource_version),
                    uid: None,
                }),
                ..DeleteParams::default()
            };
            match self.api.delete(&name, &params).await {
                Ok(_) => {
                    tracing::info!(lease = %name, "deleted the member lease of a replica gone long ago");
                    self.records.remove(&name);
                    self.observed.remove(&name);
                }
                Err(e) => tracing::debug!(lease = %name, error = %e, "member lease not deleted"),
            }
        }
    }

    /// Releases the Leases of repositories whose destinations were handed over.
    async fn release_handed_over(&mut self) {
        let done: Vec<RepoKey> = std::mem::take(&mut self.leases.state().handed_over)
            .into_iter()
            .collect();
        for key in done {
            let name = election::lease_name(&key);
            {
                let mut state = self.leases.state();
                state.shedding.remove(&key);
                if let Some(t) = state.tenures.get_mut(&key) {
                    t.end();
                }
                state.cooling.insert(key.clone(), Instant::now());
            }
            let Some(mut lease) = self.records.get(&name).cloned() else {
                continue;
            };
            release(&mut lease);
            match self.put(&name, lease, true).await {
                Written::Ok => tracing::info!(repository = %key, lease = %name,
                    "lease released for another replica"),
                Written::Conflict => {}
                Written::Failed(e) => tracing::warn!(repository = %key, lease = %name,
                    error = %e, "cannot release the lease; it expires after its duration"),
            }
        }
    }

    /// Renews (`acquire: false`) or takes (`acquire: true`) a repository's Lease.
    async fn write(&mut self, key: &RepoKey, acquire: bool) {
        let name = election::lease_name(key);
        let existing = self.records.get(&name).cloned();
        let exists = existing.is_some();
        let lease = match existing {
            Some(mut lease) => {
                self.hold(&mut lease, acquire);
                lease
            }
            None => self.fresh(&name, REPOSITORY, Some(key)),
        };
        let sent = Instant::now();
        match self.put(&name, lease, exists).await {
            Written::Ok => {
                let mut state = self.leases.state();
                let tenure = state.tenures.entry(key.clone()).or_default();
                if acquire {
                    tracing::info!(repository = %key, lease = %name, "lease acquired; leading");
                }
                tenure.renewed(sent);
            }
            Written::Conflict => {
                let mut state = self.leases.state();
                if let Some(t) = state.tenures.get_mut(key)
                    && t.ever()
                {
                    tracing::warn!(repository = %key, lease = %name,
                        "lease lost: another replica wrote it; not pushing to this repository");
                    t.end();
                }
            }
            Written::Failed(e) => {
                tracing::warn!(repository = %key, lease = %name, error = %e,
                    "cannot write the lease; pushing stops at the renew deadline unless it succeeds")
            }
        }
    }

    /// Sets this replica as holder with a new renewTime (and acquireTime and one more
    /// transition when the holder changes).
    fn hold(&self, lease: &mut Lease, acquire: bool) {
        let identity = self.config().identity.clone();
        let seconds = self.config().lease_duration_seconds();
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let now = MicroTime(jiff::Timestamp::now());
        if spec.holder_identity.as_deref() != Some(identity.as_str()) || acquire {
            if spec.holder_identity.as_deref() != Some(identity.as_str()) {
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            }
            spec.acquire_time = Some(now.clone());
            spec.holder_identity = Some(identity);
        }
        spec.renew_time = Some(now);
        spec.lease_duration_seconds = Some(seconds);
    }

    /// A new Lease held by this replica.
    fn fresh(&self, name: &str, role: &str, key: Option<&RepoKey>) -> Lease {
        let mut lease = Lease {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(self.config().namespace.clone()),
                labels: Some(BTreeMap::from([
                    (NAME_LABEL.to_string(), "gitops-reverser".to_string()),
                    (ROLE_LABEL.to_string(), role.to_string()),
                ])),
                annotations: key.map(|k| {
                    BTreeMap::from([(REPOSITORY_ANNOTATION.to_string(), redact(&k.to_string()))])
                }),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        self.hold(&mut lease, true);
        if let Some(spec) = lease.spec.as_mut() {
            spec.lease_transitions = Some(0);
        }
        lease
    }

    /// Creates, or replaces with the resourceVersion last seen (optimistic concurrency: a
    /// replica whose view is stale gets a conflict, never overwrites).
    async fn put(&mut self, name: &str, lease: Lease, exists: bool) -> Written {
        let result = if exists {
            self.api.replace(name, &PostParams::default(), &lease).await
        } else {
            self.api.create(&PostParams::default(), &lease).await
        };
        match result {
            Ok(written) => {
                let now = Instant::now();
                let fresh = observed_of(&written, self.config().lease_duration, now);
                self.observed.insert(name.to_string(), fresh);
                self.records.insert(name.to_string(), written);
                Written::Ok
            }
            Err(kube::Error::Api(status)) if status.code == 409 => {
                // Forget the stale record: the next listing brings the current one.
                self.records.remove(name);
                self.observed.remove(name);
                Written::Conflict
            }
            Err(e) => Written::Failed(e),
        }
    }

    /// After a round: Leases another replica holds now end our tenure; expired tenures and
    /// cool-downs are forgotten; the runtime is woken when what this replica leads changed.
    fn settle(&mut self) {
        let identity = self.config().identity.clone();
        let deadline = self.config().renew_deadline;
        let cool_down = self.config().lease_duration * 2;
        let now = Instant::now();
        let mut state = self.leases.state();
        for (key, tenure) in state.tenures.iter_mut() {
            let name = election::lease_name(key);
            let taken = self
                .observed
                .get(&name)
                .is_some_and(|o| o.holder.is_some() && !o.is_held_by(&identity));
            if tenure.ever() && (taken || !tenure.holds(now, deadline)) {
                tracing::warn!(repository = %key, lease = %name,
                    "lease lost (not renewed within the renew deadline, or taken); \
                     not pushing to this repository");
                tenure.end();
            }
        }
        state.tenures.retain(|_, t| t.ever());
        // A cool-down ends when another replica took the Lease (the hand-over is done; if it
        // is freed again, it is free for anyone) or after two lease durations.
        let observed = &self.observed;
        state.cooling.retain(|key, at| {
            let taken = observed
                .get(&election::lease_name(key))
                .is_some_and(|o| o.holder.is_some() && !o.is_held_by(&identity));
            !taken && now.saturating_duration_since(*at) < cool_down
        });
        let leading: BTreeSet<RepoKey> = state
            .tenures
            .iter()
            .filter(|(k, t)| t.holds(now, deadline) && !state.shedding.contains(*k))
            .map(|(k, _)| k.clone())
            .collect();
        let wake = leading != state.leading || !state.shed_requests.is_empty();
        state.leading = leading;
        drop(state);
        if wake {
            self.leases.shared.changed.notify_one();
        }
    }
}

fn role_of(lease: &Lease) -> Option<&str> {
    lease
        .metadata
        .labels
        .as_ref()?
        .get(ROLE_LABEL)
        .map(String::as_str)
}

fn observed_of(lease: &Lease, ours: Duration, now: Instant) -> Observed {
    let spec = lease.spec.as_ref();
    Observed {
        holder: spec
            .and_then(|s| s.holder_identity.clone())
            .filter(|h| !h.is_empty()),
        resource_version: lease.metadata.resource_version.clone().unwrap_or_default(),
        duration: spec
            .and_then(|s| s.lease_duration_seconds)
            .and_then(|s| u64::try_from(s).ok())
            .map_or(ours, Duration::from_secs),
        seen_at: now,
    }
}
