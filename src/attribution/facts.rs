//! The fact index: who made which change and when, from audit events and admission requests,
//! kept in memory with a size and an age bound (evictions counted) and a signal on each insert.

use crate::audit::{AuditChange, ChangeKind, Classified, ScaleChange};
use crate::identity::UserInfo;
use crate::manifest::ContentHash;
use jiff::Timestamp;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Default bound on the number of keys held.
pub const DEFAULT_MAX_ENTRIES: usize = 200_000;
/// Default bound on the age of a fact (since it was inserted).
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(10 * 60);

/// Where a fact (or an attribution) came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    Audit,
    Admission,
    /// No fact: the author is [`crate::identity::Author::unknown`].
    Unknown,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Audit => "audit",
            Self::Admission => "admission",
            Self::Unknown => "unknown",
        }
    }
}

/// Who made one change and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fact {
    /// The author: the impersonated user when there was impersonation, else the user.
    pub user: UserInfo,
    /// The authenticated user who impersonated [`Fact::user`], when someone did.
    pub impersonator: Option<UserInfo>,
    /// Audit `requestReceivedTimestamp`, or the admission request's receive time.
    pub time: Timestamp,
    pub source: Source,
    pub audit_id: Option<String>,
}

/// The identity of an object by name: group, resource (plural), namespace, name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NameKey {
    pub group: String,
    pub resource: String,
    pub namespace: Option<String>,
    pub name: String,
}

/// What a fact is found by.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum FactKey {
    /// An audit change: the object's uid and its resourceVersion after the change.
    UidRv { uid: String, rv: String },
    /// Fallback when the uid is not known: the object's name and resourceVersion.
    NameRv { name: NameKey, rv: String },
    /// Who deleted (or asked to delete) the object with this uid.
    DeleteUid(String),
    /// Who last deleted (or asked to delete) an object by this name.
    DeleteName(NameKey),
    /// An admission request: the content hash of the object as it will be stored.
    Hash(ContentHash),
}

impl FactKey {
    /// How a second fact under the same key is merged. A uid+rv (or name+rv) names one write,
    /// so duplicates are the same fact and the first stays; a uid is deleted once, by whoever
    /// asked first (earliest request time, whatever the arrival order); a name or a content can
    /// recur, and the latest request is the one the watch will show.
    fn merge(&self) -> Merge {
        match self {
            Self::UidRv { .. } | Self::NameRv { .. } => Merge::First,
            Self::DeleteUid(_) => Merge::Earliest,
            Self::DeleteName(_) | Self::Hash(_) => Merge::Latest,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Merge {
    First,
    Earliest,
    Latest,
}

/// Bounds of the index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FactLimits {
    pub max_entries: usize,
    pub max_age: Duration,
}

impl Default for FactLimits {
    fn default() -> Self {
        Self {
            max_entries: DEFAULT_MAX_ENTRIES,
            max_age: DEFAULT_MAX_AGE,
        }
    }
}

/// Counters of the index (monotonic, except `entries`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FactStats {
    /// Facts inserted from audit changes (one per change, whatever the number of keys).
    pub audit_facts: u64,
    /// Facts inserted from admission requests.
    pub admission_facts: u64,
    /// Keys whose fact was already there (duplicates and merges).
    pub duplicates: u64,
    /// Keys evicted for the size bound.
    pub evicted_size: u64,
    /// Keys evicted for the age bound.
    pub evicted_age: u64,
    /// Keys held now.
    pub entries: u64,
}

#[derive(Debug)]
struct Slot {
    fact: Arc<Fact>,
    seq: u64,
    inserted: Instant,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<FactKey, Slot>,
    /// Insertion order: (seq, key, inserted at). A key replaced later has a newer seq; its old
    /// entry here is stale and removes nothing when it is popped.
    order: VecDeque<(u64, FactKey, Instant)>,
    next_seq: u64,
}

/// The bounded, shared index of facts. Insert from any thread; [`FactIndex::changed`] wakes
/// whoever waits for a fact.
#[derive(Debug)]
pub struct FactIndex {
    limits: FactLimits,
    inner: Mutex<Inner>,
    notify: Notify,
    audit_facts: AtomicU64,
    admission_facts: AtomicU64,
    duplicates: AtomicU64,
    evicted_size: AtomicU64,
    evicted_age: AtomicU64,
}

impl Default for FactIndex {
    fn default() -> Self {
        Self::new(FactLimits::default())
    }
}

impl FactIndex {
    pub fn new(limits: FactLimits) -> Self {
        Self {
            limits: FactLimits {
                max_entries: limits.max_entries.max(1),
                max_age: limits.max_age,
            },
            inner: Mutex::new(Inner::default()),
            notify: Notify::new(),
            audit_facts: AtomicU64::new(0),
            admission_facts: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            evicted_size: AtomicU64::new(0),
            evicted_age: AtomicU64::new(0),
        }
    }

    pub fn limits(&self) -> FactLimits {
        self.limits
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves a consistent map (every step is one insert or
        // remove), so the poison is not worth spreading.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Signalled after every insert (for [`super::Resolver`]).
    pub fn changed(&self) -> &Notify {
        &self.notify
    }

    /// Stores one fact under each of `keys`. Returns how many keys were new or updated.
    pub fn insert(&self, fact: Fact, keys: Vec<FactKey>) -> usize {
        self.insert_many(vec![(fact, keys)])
    }

    /// Stores many facts under one lock and signals once.
    pub fn insert_many(&self, facts: Vec<(Fact, Vec<FactKey>)>) -> usize {
        if facts.is_empty() {
            return 0;
        }
        let now = Instant::now();
        let mut changed = 0;
        {
            let mut inner = self.lock();
            for (fact, keys) in facts {
                if keys.is_empty() {
                    continue;
                }
                match fact.source {
                    Source::Audit => &self.audit_facts,
                    Source::Admission => &self.admission_facts,
                    Source::Unknown => continue,
                }
                .fetch_add(1, Ordering::Relaxed);
                let fact = Arc::new(fact);
                for key in keys {
                    if self.put(&mut inner, key, fact.clone(), now) {
                        changed += 1;
                    } else {
                        self.duplicates.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            self.evict(&mut inner, now);
        }
        if changed > 0 {
            self.notify.notify_waiters();
        }
        changed
    }

    fn put(&self, inner: &mut Inner, key: FactKey, fact: Arc<Fact>, now: Instant) -> bool {
        if let Some(slot) = inner.map.get(&key) {
            // An audit fact outranks an admission fact under the same key (a delete), whatever
            // their order or times; within one source the key's merge rule decides.
            let replace = match (slot.fact.source, fact.source) {
                (Source::Admission, Source::Audit) => true,
                (Source::Audit, Source::Admission) => false,
                _ => match key.merge() {
                    Merge::First => false,
                    Merge::Earliest => fact.time < slot.fact.time,
                    Merge::Latest => fact.time > slot.fact.time,
                },
            };
            if !replace {
                return false;
            }
        }
        let seq = inner.next_seq;
        inner.next_seq += 1;
        inner.order.push_back((seq, key.clone(), now));
        inner.map.insert(
            key,
            Slot {
                fact,
                seq,
                inserted: now,
            },
        );
        true
    }

    fn evict(&self, inner: &mut Inner, now: Instant) {
        while let Some((_, _, at)) = inner.order.front() {
            let too_old = now.saturating_duration_since(*at) > self.limits.max_age;
            let too_many = inner.order.len() > self.limits.max_entries;
            if !too_old && !too_many {
                break;
            }
            let Some((seq, key, _)) = inner.order.pop_front() else {
                break;
            };
            if inner.map.get(&key).is_some_and(|slot| slot.seq == seq) {
                inner.map.remove(&key);
                if too_old {
                    &self.evicted_age
                } else {
                    &self.evicted_size
                }
                .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Removes facts older than the age bound (inserts do this too).
    pub fn prune(&self) {
        let mut inner = self.lock();
        self.evict(&mut inner, Instant::now());
    }

    /// The fact under `key`, unless it is older than the age bound.
    pub fn get(&self, key: &FactKey) -> Option<Arc<Fact>> {
        self.first(std::slice::from_ref(key))
    }

    /// The fact under the first of `keys` that has one (age bound applied).
    pub fn first(&self, keys: &[FactKey]) -> Option<Arc<Fact>> {
        let inner = self.lock();
        let now = Instant::now();
        keys.iter().find_map(|key| {
            let slot = inner.map.get(key)?;
            let fresh = now.saturating_duration_since(slot.inserted) <= self.limits.max_age;
            fresh.then(|| slot.fact.clone())
        })
    }

    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn stats(&self) -> FactStats {
        FactStats {
            audit_facts: self.audit_facts.load(Ordering::Relaxed),
            admission_facts: self.admission_facts.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            evicted_size: self.evicted_size.load(Ordering::Relaxed),
            evicted_age: self.evicted_age.load(Ordering::Relaxed),
            entries: self.len() as u64,
        }
    }

    /// Classifies nothing itself: stores the facts of one [`Classified`] audit event. Returns
    /// how many facts (changes) it held; skipped events hold none.
    pub fn insert_classified(&self, classified: &Classified) -> usize {
        let facts = audit_facts(classified);
        let n = facts.len();
        self.insert_many(facts);
        n
    }
}

/// The facts (with their keys) of one classified audit event: one per change.
pub fn audit_facts(classified: &Classified) -> Vec<(Fact, Vec<FactKey>)> {
    match classified {
        Classified::Change(change) => vec![change_fact(change)],
        Classified::Changes(changes) => changes.iter().map(change_fact).collect(),
        Classified::Scale(scale) => vec![scale_fact(scale)],
        Classified::Skipped(_) => Vec::new(),
    }
}

fn audit_fact(
    user: &UserInfo,
    impersonated: Option<&UserInfo>,
    time: Timestamp,
    audit_id: Option<&String>,
) -> Fact {
    let impersonated = impersonated.filter(|u| !u.username.is_empty());
    Fact {
        user: impersonated.unwrap_or(user).clone(),
        impersonator: impersonated.map(|_| user.clone()),
        time,
        source: Source::Audit,
        audit_id: audit_id.cloned(),
    }
}

fn change_fact(change: &AuditChange) -> (Fact, Vec<FactKey>) {
    let fact = audit_fact(
        &change.user,
        change.impersonated_user.as_ref(),
        change.request_received,
        change.audit_id.as_ref(),
    );
    let target = &change.target;
    let uid = target.uid.clone().or_else(|| {
        change
            .object
            .as_ref()?
            .pointer("/metadata/uid")?
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    });
    let name = NameKey {
        group: target.group.clone(),
        resource: target.resource.clone(),
        namespace: target.namespace.clone(),
        name: target.name.clone(),
    };
    let mut keys = Vec::with_capacity(4);
    let deletes = matches!(change.kind, ChangeKind::Delete | ChangeKind::DeletePending);
    // A write that left the object stored is found by its resourceVersion; a delete's
    // resourceVersion (when the response had one) is the last state's, not the watch's.
    if let Some(rv) = change
        .resource_version
        .as_ref()
        .filter(|_| !deletes || change.kind == ChangeKind::DeletePending)
    {
        if let Some(uid) = &uid {
            keys.push(FactKey::UidRv {
                uid: uid.clone(),
                rv: rv.clone(),
            });
        }
        keys.push(FactKey::NameRv {
            name: name.clone(),
            rv: rv.clone(),
        });
    }
    if deletes {
        if let Some(uid) = uid {
            keys.push(FactKey::DeleteUid(uid));
        }
        keys.push(FactKey::DeleteName(name));
    }
    (fact, keys)
}

fn scale_fact(scale: &ScaleChange) -> (Fact, Vec<FactKey>) {
    let fact = audit_fact(
        &scale.user,
        scale.impersonated_user.as_ref(),
        scale.request_received,
        scale.audit_id.as_ref(),
    );
    let mut keys = Vec::with_capacity(2);
    if let Some(rv) = &scale.resource_version {
        if let Some(uid) = &scale.parent.uid {
            keys.push(FactKey::UidRv {
                uid: uid.clone(),
                rv: rv.clone(),
            });
        }
        keys.push(FactKey::NameRv {
            name: NameKey {
                group: scale.parent.group.clone(),
                resource: scale.parent.resource.clone(),
                namespace: scale.parent.namespace.clone(),
                name: scale.parent.name.clone(),
            },
            rv: rv.clone(),
        });
    }
    (fact, keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fact(user: &str, secs: i64) -> Fact {
        Fact {
            user: UserInfo::named(user),
            impersonator: None,
            time: Timestamp::from_second(secs).unwrap(),
            source: Source::Audit,
            audit_id: Some(format!("{user}-{secs}")),
        }
    }

    fn uid_rv(uid: &str, rv: &str) -> FactKey {
        FactKey::UidRv {
            uid: uid.into(),
            rv: rv.into(),
        }
    }

    #[test]
    fn size_bound_evicts_oldest_and_counts() {
        let index = FactIndex::new(FactLimits {
            max_entries: 3,
            max_age: Duration::from_secs(3600),
        });
        for i in 0..5 {
            index.insert(fact("alice", i), vec![uid_rv("u", &i.to_string())]);
        }
        assert_eq!(index.len(), 3);
        assert!(index.get(&uid_rv("u", "0")).is_none());
        assert!(index.get(&uid_rv("u", "1")).is_none());
        assert!(index.get(&uid_rv("u", "4")).is_some());
        let stats = index.stats();
        assert_eq!(stats.evicted_size, 2);
        assert_eq!(stats.evicted_age, 0);
        assert_eq!(stats.audit_facts, 5);
        assert_eq!(stats.entries, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn age_bound_evicts_and_hides_old_facts() {
        let index = FactIndex::new(FactLimits {
            max_entries: 100,
            max_age: Duration::from_secs(60),
        });
        index.insert(fact("alice", 1), vec![uid_rv("u", "1")]);
        tokio::time::advance(Duration::from_secs(30)).await;
        index.insert(fact("bob", 2), vec![uid_rv("u", "2")]);
        tokio::time::advance(Duration::from_secs(31)).await;
        // Too old to be read even before anything evicts it.
        assert!(index.get(&uid_rv("u", "1")).is_none());
        assert!(index.get(&uid_rv("u", "2")).is_some());
        index.prune();
        assert_eq!(index.len(), 1);
        assert_eq!(index.stats().evicted_age, 1);
    }

    #[test]
    fn duplicates_are_idempotent() {
        let index = FactIndex::default();
        let keys = vec![uid_rv("u", "7"), FactKey::DeleteUid("u".into())];
        assert_eq!(index.insert(fact("alice", 5), keys.clone()), 2);
        assert_eq!(index.insert(fact("alice", 5), keys.clone()), 0);
        // A different fact under the same write key does not replace the first either.
        assert_eq!(index.insert(fact("bob", 9), keys), 0);
        assert_eq!(index.len(), 2);
        assert_eq!(index.stats().duplicates, 4);
        assert_eq!(index.get(&uid_rv("u", "7")).unwrap().user.username, "alice");
    }

    #[test]
    fn reordered_arrival_keeps_the_right_fact() {
        let hash = ContentHash::parse(&format!("sha256:{}", "ab".repeat(32))).unwrap();
        // Content: the later request wins whatever the arrival order.
        let index = FactIndex::default();
        index.insert(fact("bob", 20), vec![FactKey::Hash(hash)]);
        index.insert(fact("alice", 10), vec![FactKey::Hash(hash)]);
        assert_eq!(
            index.get(&FactKey::Hash(hash)).unwrap().user.username,
            "bob"
        );
        // Deletion of a uid: whoever asked first, whatever the arrival order.
        for order in [[("bob", 20), ("alice", 10)], [("alice", 10), ("bob", 20)]] {
            let index = FactIndex::default();
            for (user, t) in order {
                index.insert(fact(user, t), vec![FactKey::DeleteUid("u".into())]);
            }
            let got = index.get(&FactKey::DeleteUid("u".into())).unwrap();
            assert_eq!(got.user.username, "alice", "{order:?}");
        }
    }

    #[test]
    fn replaced_keys_do_not_evict_the_newer_fact() {
        let hash = ContentHash::parse(&format!("sha256:{}", "cd".repeat(32))).unwrap();
        let index = FactIndex::new(FactLimits {
            max_entries: 2,
            max_age: Duration::from_secs(3600),
        });
        index.insert(fact("alice", 1), vec![FactKey::Hash(hash)]);
        index.insert(fact("bob", 2), vec![FactKey::Hash(hash)]);
        index.insert(fact("carol", 3), vec![uid_rv("u", "1")]);
        // The stale order entry of alice went first and removed nothing.
        assert_eq!(
            index.get(&FactKey::Hash(hash)).unwrap().user.username,
            "bob"
        );
        assert_eq!(index.stats().evicted_size, 0);
    }
}
