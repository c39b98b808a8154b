//! The resolver: joins a watch event to its fact (uid+resourceVersion, name+resourceVersion,
//! content hash, or the deletion keys), waiting a bounded grace for a late fact, else unknown.

use super::facts::{Fact, FactIndex, FactKey, NameKey, Source};
use crate::identity::{Author, AuthorMapping};
use crate::manifest::ContentHash;
use jiff::Timestamp;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The default grace: how long a change waits for its fact.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3);

/// What the watch knows about one change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lookup {
    pub uid: Option<String>,
    /// The object's resourceVersion in the watch event.
    pub resource_version: Option<String>,
    /// The content hash of the sanitized object (what admission facts are keyed by).
    pub content_hash: Option<ContentHash>,
    /// True for a deletion (the watch's DELETED event).
    pub deleted: bool,
    /// API group (`""` for core).
    pub group: String,
    /// Resource plural (`configmaps`).
    pub resource: String,
    pub namespace: Option<String>,
    pub name: String,
    /// When the watch saw the change: the time of an unattributed change.
    pub observed_at: Timestamp,
}

impl Lookup {
    /// The keys to try, best first: audit by uid+rv, then name+rv, then admission by content;
    /// a deletion by uid, then by name.
    pub fn keys(&self) -> Vec<FactKey> {
        let name = || NameKey {
            group: self.group.clone(),
            resource: self.resource.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        };
        let mut keys = Vec::with_capacity(3);
        if self.deleted {
            if let Some(uid) = &self.uid {
                keys.push(FactKey::DeleteUid(uid.clone()));
            }
            keys.push(FactKey::DeleteName(name()));
            return keys;
        }
        if let Some(rv) = &self.resource_version {
            if let Some(uid) = &self.uid {
                keys.push(FactKey::UidRv {
                    uid: uid.clone(),
                    rv: rv.clone(),
                });
            }
            keys.push(FactKey::NameRv {
                name: name(),
                rv: rv.clone(),
            });
        }
        if let Some(hash) = self.content_hash {
            keys.push(FactKey::Hash(hash));
        }
        keys
    }
}

/// Who made a change and when, as the Git engine needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attribution {
    pub author: Author,
    /// The Kubernetes username of the author (the `Kubernetes-User` trailer).
    pub user: Option<String>,
    /// Who impersonated the author (the `Impersonated-by` trailer).
    pub impersonator: Option<String>,
    /// The fact's time (audit `requestReceivedTimestamp`, admission receive time), or the
    /// lookup's `observed_at` when unknown: the author date.
    pub time: Timestamp,
    pub audit_id: Option<String>,
    pub source: Source,
}

impl Attribution {
    /// The explicit unknown author at the time the watch saw the change.
    pub fn unknown(observed_at: Timestamp) -> Self {
        Self {
            author: Author::unknown(),
            user: None,
            impersonator: None,
            time: observed_at,
            audit_id: None,
            source: Source::Unknown,
        }
    }
}

/// Resolver counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResolverStats {
    /// Resolved without waiting (the fact was there).
    pub immediate: u64,
    /// Resolved after waiting for the fact to arrive.
    pub waited: u64,
    /// No fact within the grace: the unknown author.
    pub unknown: u64,
    /// Resolved by source.
    pub audit: u64,
    pub admission: u64,
}

/// Joins watch events to facts. Cheap to share (`Arc`); every `resolve` waits on its own, so a
/// change waiting for its fact never holds up another.
#[derive(Debug)]
pub struct Resolver {
    index: Arc<FactIndex>,
    grace: Duration,
    mapping: AuthorMapping,
    /// The audit webhook is in use: an admission fact alone is held (up to the grace) in case
    /// the change's audit fact, which outranks it, arrives.
    prefer_audit: bool,
    immediate: AtomicU64,
    waited: AtomicU64,
    unknown: AtomicU64,
    audit: AtomicU64,
    admission: AtomicU64,
}

impl Resolver {
    pub fn new(index: Arc<FactIndex>, grace: Duration, mapping: AuthorMapping) -> Self {
        Self {
            index,
            grace,
            mapping,
            prefer_audit: false,
            immediate: AtomicU64::new(0),
            waited: AtomicU64::new(0),
            unknown: AtomicU64::new(0),
            audit: AtomicU64::new(0),
            admission: AtomicU64::new(0),
        }
    }

    /// With `prefer` (the audit webhook is configured), a change whose only fact so far is an
    /// admission fact waits up to the grace for its audit fact, and is attributed by it when
    /// it comes: the API server's audit record is the stronger evidence.
    pub fn preferring_audit(mut self, prefer: bool) -> Self {
        self.prefer_audit = prefer;
        self
    }

    pub fn index(&self) -> &Arc<FactIndex> {
        &self.index
    }

    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// The attribution of a change: immediately when its fact is there; else as soon as it
    /// arrives (woken by the index on each insert, no polling), up to the grace; else the
    /// unknown author (counted). A fact arriving after that is not looked at again.
    pub async fn resolve(&self, lookup: Lookup) -> Attribution {
        let keys = lookup.keys();
        if keys.is_empty() {
            return self.unresolved(&lookup);
        }
        // A fact settles the change at once unless it is an admission fact while audit facts,
        // which outrank it, may still come.
        let settles = |fact: &Fact| !self.prefer_audit || fact.source == Source::Audit;
        if let Some(fact) = self.index.first(&keys).filter(|f| settles(f)) {
            self.immediate.fetch_add(1, Ordering::Relaxed);
            return self.attribute(&fact);
        }
        let deadline = tokio::time::Instant::now() + self.grace;
        loop {
            let notified = self.index.changed().notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before looking, so an insert between the look and the wait wakes us.
            notified.as_mut().enable();
            if let Some(fact) = self.index.first(&keys).filter(|f| settles(f)) {
                self.waited.fetch_add(1, Ordering::Relaxed);
                return self.attribute(&fact);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                break;
            }
        }
        // One last look: a fact inserted at the deadline still counts, and an admission fact
        // is used when no audit fact came.
        match self.index.first(&keys) {
            Some(fact) => {
                self.waited.fetch_add(1, Ordering::Relaxed);
                self.attribute(&fact)
            }
            None => self.unresolved(&lookup),
        }
    }

    /// The attribution when the fact is already there, without waiting or counting.
    pub fn try_resolve(&self, lookup: &Lookup) -> Option<Attribution> {
        let fact = self.index.first(&lookup.keys())?;
        Some(self.attribution_of(&fact))
    }

    fn attribute(&self, fact: &Fact) -> Attribution {
        match fact.source {
            Source::Audit => &self.audit,
            _ => &self.admission,
        }
        .fetch_add(1, Ordering::Relaxed);
        self.attribution_of(fact)
    }

    fn attribution_of(&self, fact: &Fact) -> Attribution {
        Attribution {
            author: self.mapping.author(&fact.user),
            user: Some(fact.user.username.clone()).filter(|u| !u.is_empty()),
            impersonator: fact.impersonator.as_ref().map(|u| u.username.clone()),
            time: fact.time,
            audit_id: fact.audit_id.clone(),
            source: fact.source,
        }
    }

    fn unresolved(&self, lookup: &Lookup) -> Attribution {
        self.unknown.fetch_add(1, Ordering::Relaxed);
        Attribution::unknown(lookup.observed_at)
    }

    pub fn stats(&self) -> ResolverStats {
        ResolverStats {
            immediate: self.immediate.load(Ordering::Relaxed),
            waited: self.waited.load(Ordering::Relaxed),
            unknown: self.unknown.load(Ordering::Relaxed),
            audit: self.audit.load(Ordering::Relaxed),
            admission: self.admission.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditEvent, classify};
    use crate::identity::UserInfo;
    use serde_json::{Value, json};

    fn index() -> Arc<FactIndex> {
        Arc::new(FactIndex::default())
    }

    fn resolver(index: &Arc<FactIndex>) -> Resolver {
        Resolver::new(index.clone(), DEFAULT_GRACE, AuthorMapping::default())
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn event(v: Value) -> AuditEvent {
        serde_json::from_value(v).unwrap()
    }

    fn update_event(user: &str, rv: &str, impersonated: Option<&str>) -> AuditEvent {
        event(json!({
            "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse",
            "auditID": format!("id-{rv}"), "stage": "ResponseComplete", "verb": "update",
            "requestURI": "/api/v1/namespaces/shop/configmaps/web",
            "user": {"username": user},
            "impersonatedUser": impersonated.map(|u| json!({"username": u})),
            "objectRef": {"resource": "configmaps", "namespace": "shop", "name": "web",
                "apiVersion": "v1", "resourceVersion": "1"},
            "responseStatus": {"code": 200},
            "responseObject": {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "web", "namespace": "shop", "uid": "uid-web",
                    "resourceVersion": rv}, "data": {"a": rv}},
            "requestReceivedTimestamp": "2026-01-02T03:04:05.123456Z",
            "stageTimestamp": "2026-01-02T03:04:05.2Z"
        }))
    }

    fn lookup(rv: &str) -> Lookup {
        Lookup {
            uid: Some("uid-web".into()),
            resource_version: Some(rv.into()),
            content_hash: None,
            deleted: false,
            group: String::new(),
            resource: "configmaps".into(),
            namespace: Some("shop".into()),
            name: "web".into(),
            observed_at: ts("2026-01-02T03:04:06Z"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn immediate_hit_adds_no_latency() {
        let index = index();
        index.insert_classified(&classify(&update_event("alice", "42", None)));
        let r = resolver(&index);
        let start = tokio::time::Instant::now();
        let a = r.resolve(lookup("42")).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert_eq!(a.author.name, "alice");
        assert_eq!(a.user.as_deref(), Some("alice"));
        assert_eq!(a.time, ts("2026-01-02T03:04:05.123456Z"));
        assert_eq!(a.audit_id.as_deref(), Some("id-42"));
        assert_eq!(a.source, Source::Audit);
        assert_eq!(r.stats().immediate, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn fact_arriving_within_grace_is_used() {
        let index = index();
        let r = Arc::new(resolver(&index));
        let waiting = tokio::spawn({
            let r = r.clone();
            async move {
                let start = tokio::time::Instant::now();
                (r.resolve(lookup("43")).await, start.elapsed())
            }
        });
        tokio::time::sleep(Duration::from_millis(1500)).await;
        // Unrelated inserts wake the waiter, which goes back to waiting.
        index.insert_classified(&classify(&update_event("carol", "41", None)));
        tokio::time::sleep(Duration::from_millis(500)).await;
        index.insert_classified(&classify(&update_event("bob", "43", None)));
        let (a, took) = waiting.await.unwrap();
        assert_eq!(a.author.name, "bob");
        assert_eq!(took, Duration::from_millis(2000));
        assert_eq!(r.stats().waited, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn no_fact_is_unknown_after_the_grace() {
        let index = index();
        let r = resolver(&index);
        let start = tokio::time::Instant::now();
        let a = r.resolve(lookup("44")).await;
        assert_eq!(start.elapsed(), DEFAULT_GRACE);
        assert!(a.author.is_unknown());
        assert_eq!(a.source, Source::Unknown);
        assert_eq!(a.time, ts("2026-01-02T03:04:06Z"));
        assert_eq!(a.user, None);
        assert_eq!(r.stats().unknown, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_lookups_do_not_block_each_other() {
        let index = index();
        let r = Arc::new(resolver(&index));
        let slow = tokio::spawn({
            let r = r.clone();
            async move { r.resolve(lookup("50")).await }
        });
        tokio::task::yield_now().await;
        index.insert_classified(&classify(&update_event("alice", "51", None)));
        let start = tokio::time::Instant::now();
        let fast = r.resolve(lookup("51")).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert_eq!(fast.author.name, "alice");
        assert!(slow.await.unwrap().author.is_unknown());
    }

    #[tokio::test]
    async fn impersonation_names_the_impersonated_user_and_the_impersonator() {
        let index = index();
        index.insert_classified(&classify(&update_event("admin", "45", Some("carol"))));
        let a = resolver(&index).resolve(lookup("45")).await;
        assert_eq!(a.author.name, "carol");
        assert_eq!(a.user.as_deref(), Some("carol"));
        assert_eq!(a.impersonator.as_deref(), Some("admin"));
    }

    #[tokio::test]
    async fn delete_by_uid_and_pending_delete_by_its_requester() {
        let index = index();
        // alice asks for the deletion; finalizers hold the object (DeletePending).
        let pending = event(json!({
            "auditID": "d1", "stage": "ResponseComplete", "verb": "delete",
            "requestURI": "/api/v1/namespaces/shop/configmaps/web",
            "user": {"username": "alice"},
            "objectRef": {"resource": "configmaps", "namespace": "shop", "name": "web",
                "apiVersion": "v1"},
            "responseStatus": {"code": 200},
            "responseObject": {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "web", "namespace": "shop", "uid": "uid-web",
                    "resourceVersion": "60", "finalizers": ["x/y"],
                    "deletionTimestamp": "2026-01-02T03:04:07Z"}},
            "requestReceivedTimestamp": "2026-01-02T03:04:07Z"
        }));
        // The controller removes the finalizer: the object goes, by the controller's update.
        let finalize = event(json!({
            "auditID": "d2", "stage": "ResponseComplete", "verb": "update",
            "requestURI": "/api/v1/namespaces/shop/configmaps/web",
            "user": {"username": "system:serviceaccount:x:controller"},
            "objectRef": {"resource": "configmaps", "namespace": "shop", "name": "web",
                "apiVersion": "v1", "resourceVersion": "60"},
            "responseStatus": {"code": 200},
            "responseObject": {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "web", "namespace": "shop", "uid": "uid-web",
                    "resourceVersion": "61",
                    "deletionTimestamp": "2026-01-02T03:04:07Z"}},
            "requestReceivedTimestamp": "2026-01-02T03:04:09Z"
        }));
        // Reordered: the finalizer removal arrives first.
        index.insert_classified(&classify(&finalize));
        index.insert_classified(&classify(&pending));
        let mut l = lookup("61");
        l.deleted = true;
        let a = resolver(&index).resolve(l).await;
        assert_eq!(a.author.name, "alice");
        assert_eq!(a.audit_id.as_deref(), Some("d1"));
        assert_eq!(a.time, ts("2026-01-02T03:04:07Z"));
    }

    #[tokio::test]
    async fn delete_without_uid_falls_back_to_the_name() {
        let index = index();
        let delete = event(json!({
            "auditID": "d3", "stage": "ResponseComplete", "verb": "delete",
            "user": {"username": "bob"},
            "objectRef": {"resource": "configmaps", "namespace": "shop", "name": "web",
                "apiVersion": "v1"},
            "responseStatus": {"code": 200},
            "requestReceivedTimestamp": "2026-01-02T03:04:08Z"
        }));
        index.insert_classified(&classify(&delete));
        let mut l = lookup("70");
        l.deleted = true;
        assert_eq!(resolver(&index).resolve(l).await.author.name, "bob");
    }

    #[tokio::test]
    async fn scale_is_attributed_on_the_parent() {
        let index = index();
        let scale = event(json!({
            "auditID": "s1", "stage": "ResponseComplete", "verb": "patch",
            "requestURI": "/apis/apps/v1/namespaces/shop/deployments/web/scale",
            "user": {"username": "bob"},
            "objectRef": {"resource": "deployments", "namespace": "shop", "name": "web",
                "apiGroup": "apps", "apiVersion": "v1", "subresource": "scale"},
            "responseStatus": {"code": 200},
            "responseObject": {"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {"name": "web", "namespace": "shop", "uid": "uid-deploy",
                    "resourceVersion": "6977"},
                "spec": {"replicas": 3}},
            "requestReceivedTimestamp": "2026-01-02T03:04:10Z"
        }));
        assert!(matches!(
            classify(&scale),
            crate::audit::Classified::Scale(_)
        ));
        index.insert_classified(&classify(&scale));
        let l = Lookup {
            uid: Some("uid-deploy".into()),
            resource_version: Some("6977".into()),
            group: "apps".into(),
            resource: "deployments".into(),
            namespace: Some("shop".into()),
            name: "web".into(),
            observed_at: ts("2026-01-02T03:04:11Z"),
            ..Lookup::default()
        };
        let a = resolver(&index).resolve(l.clone()).await;
        assert_eq!(a.author.name, "bob");
        // Without the uid, the name and resourceVersion still find it.
        let by_name = Lookup { uid: None, ..l };
        assert_eq!(resolver(&index).resolve(by_name).await.author.name, "bob");
    }

    #[tokio::test]
    async fn admission_fact_by_content_hash() {
        let index = index();
        let hash = crate::manifest::content_hash(&json!({"kind": "ConfigMap"}));
        index.insert(
            Fact {
                user: UserInfo::named("dave"),
                impersonator: None,
                time: ts("2026-01-02T03:04:12Z"),
                source: Source::Admission,
                audit_id: None,
            },
            vec![FactKey::Hash(hash)],
        );
        let l = Lookup {
            content_hash: Some(hash),
            ..lookup("99")
        };
        let a = resolver(&index).resolve(l).await;
        assert_eq!(a.author.name, "dave");
        assert_eq!(a.source, Source::Admission);
    }

    fn admission_fact(user: &str) -> Fact {
        Fact {
            user: UserInfo::named(user),
            impersonator: None,
            time: ts("2026-01-02T03:04:05Z"),
            source: Source::Admission,
            audit_id: None,
        }
    }

    /// A forged or mistaken admission fact names someone; the API server's audit record of the
    /// same change, arriving later, names who really made it: the audit fact wins.
    #[tokio::test(start_paused = true)]
    async fn an_audit_fact_outranks_an_earlier_admission_fact() {
        let index = index();
        let hash =
            crate::manifest::content_hash(&json!({"kind": "ConfigMap", "data": {"a": "44"}}));
        index.insert(admission_fact("ceo@example.com"), vec![FactKey::Hash(hash)]);
        let r = Arc::new(resolver(&index).preferring_audit(true));
        let waiting = tokio::spawn({
            let r = r.clone();
            async move {
                r.resolve(Lookup {
                    content_hash: Some(hash),
                    ..lookup("44")
                })
                .await
            }
        });
        tokio::time::sleep(Duration::from_millis(800)).await;
        index.insert_classified(&classify(&update_event("bob", "44", None)));
        let a = waiting.await.unwrap();
        assert_eq!((a.author.name.as_str(), a.source), ("bob", Source::Audit));

        // Without an audit fact, the admission fact is used once the grace is over.
        let other =
            crate::manifest::content_hash(&json!({"kind": "ConfigMap", "data": {"a": "45"}}));
        index.insert(admission_fact("dave"), vec![FactKey::Hash(other)]);
        let start = tokio::time::Instant::now();
        let a = r
            .resolve(Lookup {
                content_hash: Some(other),
                ..lookup("45")
            })
            .await;
        assert_eq!(
            (a.author.name.as_str(), a.source),
            ("dave", Source::Admission)
        );
        assert_eq!(start.elapsed(), DEFAULT_GRACE);
    }

    /// Under a key both sources use (a delete), the audit fact replaces an admission fact and
    /// an admission fact never replaces an audit fact, whatever the order.
    #[test]
    fn under_a_shared_key_audit_facts_win_in_any_order() {
        let key = || FactKey::DeleteUid("uid-web".into());
        let audit = || Fact {
            source: Source::Audit,
            audit_id: Some("a1".into()),
            ..admission_fact("bob")
        };
        let index = index();
        index.insert(admission_fact("ceo"), vec![key()]);
        index.insert(audit(), vec![key()]);
        assert_eq!(index.first(&[key()]).unwrap().user.username, "bob");
        let index2 = Arc::new(FactIndex::default());
        index2.insert(audit(), vec![key()]);
        index2.insert(admission_fact("ceo"), vec![key()]);
        assert_eq!(index2.first(&[key()]).unwrap().user.username, "bob");
    }
}
