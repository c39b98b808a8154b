//! The object store: one global resourceVersion, objects per resource, the bounded watch history,
//! and the semantics of every write. Synchronous and free of I/O; the server wraps it in a lock.
//! Long on purpose: every write verb (create, update, patch, apply, delete, collections, status,
//! scale) shares one resourceVersion and watch history, and splitting them would spread one
//! invariant over several files.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use base64::Engine;
use serde_json::{Value, json};

use crate::apply::{Actor, ManagedFieldsError, Managers};
use crate::catalogue::{Catalogue, ResourceInfo, resource_from_crd};
use crate::convert;
use crate::defaults::{self, Allocator};
use crate::errors::{ApiError, Cause};
use crate::ids;
use crate::patch::{self, PatchError};
use crate::quantity;
use crate::schema::Slot;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::validation;

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, as kept in the history watches read from.
#[derive(Debug, Clone)]
pub struct Event {
    pub rv: u64,
    pub group: Arc<str>,
    pub plural: Arc<str>,
    pub namespace: Arc<str>,
    pub type_: EventType,
    pub object: Arc<Value>,
    /// The object before the change (to notice it leaving or entering a selector).
    pub prev: Option<Arc<Value>>,
}

/// How a PATCH body is to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Json,
    Merge,
    Strategic,
    Apply,
}

/// Options every write carries.
#[derive(Debug, Clone, Default)]
pub struct WriteOpts {
    pub manager: String,
    pub dry_run: bool,
    /// "", "status" or "scale".
    pub subresource: String,
    pub force: bool,
    /// Values the write must take instead of inventing them: the admission pass computes the
    /// object on a dry run first, and the real write must store that same object.
    pub pinned: Option<Pinned>,
}

/// A uid and a time a write reuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pinned {
    /// The uid of a created object.
    pub uid: String,
    /// `creationTimestamp`, managedFields times, `deletionTimestamp`.
    pub now: String,
}

impl Pinned {
    pub fn fresh() -> Self {
        Pinned {
            uid: ids::uid(),
            now: ids::now_rfc3339(),
        }
    }
}

impl WriteOpts {
    fn now(&self) -> String {
        self.pinned
            .as_ref()
            .map_or_else(ids::now_rfc3339, |p| p.now.clone())
    }

    fn new_uid(&self) -> String {
        self.pinned
            .as_ref()
            .map_or_else(ids::uid, |p| p.uid.clone())
    }
}

/// Preconditions of a DELETE.
#[derive(Debug, Clone, Default)]
pub struct DeleteOpts {
    pub uid: Option<String>,
    pub resource_version: Option<String>,
}

/// A DELETE's outcome: gone now, or only marked because finalizers remain.
#[derive(Debug, Clone)]
pub enum Deleted {
    Gone(Value),
    Marked(Value),
}

/// Query of a LIST.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
}

/// One page of a LIST.
#[derive(Debug, Clone)]
pub struct ListPage {
    pub items: Vec<Arc<Value>>,
    pub resource_version: u64,
    pub continue_token: Option<String>,
    pub remaining: Option<usize>,
}

/// Settings of the store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Events kept for watches; older resourceVersions get `410 Gone`.
    pub history_limit: usize,
    /// Give every namespace the `kube-root-ca.crt` ConfigMap and `default` ServiceAccount, as a
    /// real cluster's controllers do.
    pub namespace_objects: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            history_limit: 100_000,
            namespace_objects: true,
        }
    }
}

type ResKey = (String, String);
type ObjKey = (String, String);

/// The simulated cluster state.
#[derive(Debug)]
pub struct Store {
    catalogue: Catalogue,
    objects: HashMap<ResKey, BTreeMap<ObjKey, Arc<Value>>>,
    rv: u64,
    history: VecDeque<Event>,
    /// Every event with `rv <= compacted` is gone from the history.
    compacted: u64,
    alloc: Allocator,
    config: StoreConfig,
    ca_pem: String,
}

fn key_of(res: &ResourceInfo) -> ResKey {
    (res.group.clone(), res.plural.clone())
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj["metadata"][field].as_str().unwrap_or_default()
}

fn set_meta(obj: &mut Value, field: &str, value: Value) {
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    obj["metadata"][field] = value;
}

fn remove_meta(obj: &mut Value, field: &str) {
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove(field);
    }
}

fn finalizers(obj: &Value) -> Vec<String> {
    obj["metadata"]["finalizers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The part of an object that bumps `metadata.generation` when it changes.
fn generation_relevant(res: &ResourceInfo, obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
        m.remove("apiVersion");
        m.remove("kind");
    }
    if res.crd.is_none() && v.get("spec").is_some() {
        v["spec"].take()
    } else {
        v
    }
}

/// An object without the per-manager times of its managedFields (to recognise no-op writes).
fn without_times(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(entries) = v["metadata"]
        .get_mut("managedFields")
        .and_then(Value::as_array_mut)
    {
        for e in entries.iter_mut().filter_map(Value::as_object_mut) {
            e.remove("time");
        }
    }
    if let Some(m) = v["metadata"].as_object_mut() {
        m.remove("resourceVersion");
    }
    v
}

fn bad_body(res: &ResourceInfo, version: &str, why: &str) -> ApiError {
    ApiError::bad_request(format!(
        "{} in version {version:?} cannot be handled as a {}: {why}",
        res.kind, res.kind
    ))
}

fn encode_continue(rv: u64, ns: &str, name: &str) -> String {
    let raw =
        json!({"v": "meta.k8s.io/v1", "rv": rv, "start": format!("{ns}/{name}\u{0}")}).to_string();
    base64::engine::general_purpose::STANDARD.encode(raw)
}

fn decode_continue(token: &str) -> Result<(String, String), ApiError> {
    let bad = || {
        ApiError::bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        )
    };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let start = v["start"]
        .as_str()
        .ok_or_else(bad)?
        .trim_end_matches('\u{0}');
    let (ns, name) = start.split_once('/').ok_or_else(bad)?;
    Ok((ns.to_string(), name.to_string()))
}

/// Read a JSON path like `.spec.replicas`.
pub fn read_path<'a>(obj: &'a Value, path: &str) -> &'a Value {
    let mut v = obj;
    for seg in path
        .trim_start_matches('.')
        .split('.')
        .filter(|s| !s.is_empty())
    {
        v = &v[seg];
    }
    v
}

fn write_path(obj: &mut Value, path: &str, value: Value) {
    let segs: Vec<&str> = path
        .trim_start_matches('.')
        .split('.')
        .filter(|s| !s.is_empty())
        .collect();
    let mut v = obj;
    for (i, seg) in segs.iter().enumerate() {
        if !v.is_object() {
            *v = json!({});
        }
        if i + 1 == segs.len() {
            v[*seg] = value;
            return;
        }
        v = &mut v[*seg];
    }
}

const FAKE_CA: &str = "-----BEGIN CERTIFICATE-----\nMIIBkubesimFakeRootCAForTheSimulatedClusterOnly\n-----END CERTIFICATE-----\n";

impl Store {
    pub fn new(config: StoreConfig) -> Self {
        let mut store = Store {
            catalogue: Catalogue::builtin(),
            objects: HashMap::new(),
            rv: 0,
            history: VecDeque::new(),
            compacted: 0,
            alloc: Allocator::default(),
            config,
            ca_pem: FAKE_CA.to_string(),
        };
        for ns in ["default", "kube-node-lease", "kube-public", "kube-system"] {
            let res = store.catalogue.by_plural("", "namespaces").cloned();
            if let Some(res) = res {
                let opts = WriteOpts {
                    manager: "kube-apiserver".into(),
                    ..Default::default()
                };
                let _ = store.create(
                    &res,
                    "v1",
                    "",
                    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
                    &opts,
                );
            }
        }
        store
    }

    /// Give every namespace (those that exist now too) its `kube-root-ca.crt` and `default`
    /// ServiceAccount from now on.
    pub fn enable_namespace_objects(&mut self) {
        self.config.namespace_objects = true;
        let Some(nsres) = self.catalogue.by_plural("", "namespaces").cloned() else {
            return;
        };
        let names: Vec<String> = self
            .snapshot(&nsres, None)
            .iter()
            .map(|n| meta_str(n, "name").to_string())
            .collect();
        for ns in names {
            self.seed_namespace(&ns);
        }
    }

    /// The CA certificate the `kube-root-ca.crt` ConfigMaps carry.
    pub fn set_root_ca(&mut self, pem: String) {
        self.ca_pem = pem;
    }

    pub fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    /// The oldest resourceVersion a watch can still start from.
    pub fn oldest_watchable(&self) -> u64 {
        self.compacted
    }

    /// Forget the whole event history: every watch from an older resourceVersion gets `410 Gone`.
    pub fn compact(&mut self) {
        self.history.clear();
        self.compacted = self.rv;
    }

    /// Events after `rv`, or `410 Gone` when the history no longer reaches back that far.
    pub fn events_since(&self, rv: u64) -> Result<Vec<Event>, ApiError> {
        if rv < self.compacted {
            return Err(ApiError::expired(rv, self.compacted + 1));
        }
        let start = self.history.partition_point(|e| e.rv <= rv);
        Ok(self.history.range(start..).cloned().collect())
    }

    fn push_event(
        &mut self,
        res: &ResourceInfo,
        type_: EventType,
        object: Arc<Value>,
        prev: Option<Arc<Value>>,
    ) {
        let namespace: Arc<str> = Arc::from(meta_str(&object, "namespace"));
        self.history.push_back(Event {
            rv: self.rv,
            group: Arc::from(res.group.as_str()),
            plural: Arc::from(res.plural.as_str()),
            namespace,
            type_,
            object,
            prev,
        });
        while self.history.len() > self.config.history_limit {
            if let Some(e) = self.history.pop_front() {
                self.compacted = e.rv;
            }
        }
    }

    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn bucket(&self, res: &ResourceInfo) -> Option<&BTreeMap<ObjKey, Arc<Value>>> {
        self.objects.get(&key_of(res))
    }

    fn lookup(&self, res: &ResourceInfo, ns: &str, name: &str) -> Option<Arc<Value>> {
        let ns = if res.namespaced { ns } else { "" };
        self.bucket(res)?
            .get(&(ns.to_string(), name.to_string()))
            .cloned()
    }

    /// GET one object.
    pub fn get(&self, res: &ResourceInfo, ns: &str, name: &str) -> Result<Arc<Value>, ApiError> {
        self.lookup(res, ns, name)
            .ok_or_else(|| ApiError::not_found(&res.group, &res.plural, name))
    }

    /// Every object of a resource in a namespace (all namespaces for `None`), in key order.
    pub fn snapshot(&self, res: &ResourceInfo, ns: Option<&str>) -> Vec<Arc<Value>> {
        let Some(bucket) = self.bucket(res) else {
            return vec![];
        };
        match ns {
            Some(ns) if res.namespaced => bucket
                .range((ns.to_string(), String::new())..)
                .take_while(|((n, _), _)| n == ns)
                .map(|(_, v)| v.clone())
                .collect(),
            _ => bucket.values().cloned().collect(),
        }
    }

    /// LIST with selectors and paging.
    pub fn list(
        &self,
        res: &ResourceInfo,
        ns: Option<&str>,
        q: &ListQuery,
    ) -> Result<ListPage, ApiError> {
        let empty = BTreeMap::new();
        let bucket = self.bucket(res).unwrap_or(&empty);
        let start: ObjKey = match &q.continue_token {
            Some(t) => {
                let (n, name) = decode_continue(t)?;
                (n, format!("{name}\u{0}"))
            }
            None => (
                ns.filter(|_| res.namespaced)
                    .unwrap_or_default()
                    .to_string(),
                String::new(),
            ),
        };
        let selecting = !q.labels.is_empty() || !q.fields.is_empty();
        let scope = ns.filter(|_| res.namespaced).map(str::to_string);
        let mut iter = bucket
            .range(start..)
            .take_while(|((n, _), _)| scope.as_ref().is_none_or(|s| s == n))
            .filter(|(_, v)| q.labels.matches_object(v) && q.fields.matches(v))
            .map(|(_, v)| v);
        let mut items = Vec::new();
        for v in iter.by_ref() {
            items.push(v.clone());
            if q.limit.is_some_and(|l| items.len() >= l) {
                break;
            }
        }
        let mut continue_token = None;
        let mut remaining = None;
        if q.limit.is_some_and(|l| items.len() >= l) {
            let rest = iter.count();
            if rest > 0 {
                if let Some(last) = items.last() {
                    continue_token = Some(encode_continue(
                        self.rv,
                        meta_str(last, "namespace"),
                        meta_str(last, "name"),
                    ));
                }
                remaining = (!selecting).then_some(rest);
            }
        }
        Ok(ListPage {
            items,
            resource_version: self.rv,
            continue_token,
            remaining,
        })
    }

    fn namespace_usable(&self, res: &ResourceInfo, ns: &str, name: &str) -> Result<(), ApiError> {
        if !res.namespaced {
            return Ok(());
        }
        let Some(nsres) = self.catalogue.by_plural("", "namespaces").cloned() else {
            return Ok(());
        };
        match self.lookup(&nsres, "", ns) {
            None => Err(ApiError::not_found("", "namespaces", ns)),
            Some(n) if !n["metadata"]["deletionTimestamp"].is_null() => Err(ApiError::new(
                403,
                "Forbidden",
                format!(
                    "{} {name:?} is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                    crate::errors::qualified(&res.group, &res.plural)
                ),
            )
            .with_details(json!({"name": name, "group": res.group, "kind": res.plural, "causes": [{"reason": "NamespaceTerminating", "message": format!("namespace {ns} is being terminated"), "field": "metadata.namespace"}]}))),
            Some(_) => Ok(()),
        }
    }

    /// Check the body names the resource and a namespace consistent with the URL.
    fn check_body(
        &self,
        res: &ResourceInfo,
        version: &str,
        ns: &str,
        body: &Value,
    ) -> Result<(), ApiError> {
        if !body.is_object() {
            return Err(bad_body(res, version, "the body must be a JSON object"));
        }
        if let Some(kind) = body.get("kind")
            && kind.as_str() != Some(res.kind.as_str())
            && kind.as_str() != Some("")
        {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({}) does not match the expected API version ({})",
                body["apiVersion"].as_str().unwrap_or_default(),
                res.api_version(version)
            )));
        }
        if let Some(av) = body.get("apiVersion").and_then(Value::as_str)
            && !av.is_empty()
            && av != res.api_version(version)
            && !res.versions.iter().any(|v| av == res.api_version(v))
        {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({})",
                res.api_version(version)
            )));
        }
        if !body["metadata"].is_null() && !body["metadata"].is_object() {
            return Err(bad_body(res, version, "metadata must be an object"));
        }
        if res.namespaced {
            let body_ns = meta_str(body, "namespace");
            if !body_ns.is_empty() && body_ns != ns {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
        }
        Ok(())
    }

    fn type_check(&self, res: &ResourceInfo, version: &str, obj: &Value) -> Result<(), ApiError> {
        if res.crd.is_none() {
            validation::type_check(&res.group, &res.kind, obj)
                .map_err(|e| bad_body(res, version, &e))?;
        }
        Ok(())
    }

    fn validate(
        &self,
        res: &ResourceInfo,
        old: Option<&Value>,
        obj: &Value,
    ) -> Result<(), ApiError> {
        let mut causes = validation::validate(&res.group, &res.kind, obj);
        if res.group == "apiextensions.k8s.io" && res.kind == "CustomResourceDefinition" {
            match resource_from_crd(obj) {
                Ok(info) => {
                    if let Some(old) = old {
                        if old["spec"]["scope"] != obj["spec"]["scope"] {
                            causes.push(Cause::invalid(
                                "spec.scope",
                                &obj["spec"]["scope"],
                                "field is immutable",
                            ));
                        }
                    } else if let Some(existing) =
                        self.catalogue.by_plural(&info.group, &info.plural)
                        && existing.crd.is_none()
                    {
                        causes.push(Cause::invalid(
                            "spec.names.plural",
                            &obj["spec"]["names"]["plural"],
                            "is already served by a built-in resource",
                        ));
                    }
                }
                Err(problems) => {
                    for p in problems {
                        causes.push(Cause {
                            reason: "FieldValueInvalid".into(),
                            message: p.message,
                            field: p.field,
                        });
                    }
                }
            }
        }
        if let Some(old) = old
            && !old["metadata"]["deletionTimestamp"].is_null()
        {
            let before = finalizers(old);
            if let Some(added) = finalizers(obj).into_iter().find(|f| !before.contains(f)) {
                causes.push(Cause::forbidden(
                        "metadata.finalizers",
                        &format!("no new finalizers can be added if the object is being deleted, found new finalizers []string{{{added:?}}}"),
                    ));
            }
        }
        if causes.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid(
                &res.group,
                &res.kind,
                meta_str(obj, "name"),
                causes,
            ))
        }
    }

    /// The storage-layer steps every write shares: allocations, Secret `stringData`, CRD status.
    fn storage_normalize(&mut self, res: &ResourceInfo, old: Option<&Value>, obj: &mut Value) {
        if res.crd.is_some() {
            return;
        }
        if res.group.is_empty()
            && res.kind == "Service"
            && let (Some(old), Some(spec)) =
                (old, obj.get_mut("spec").and_then(Value::as_object_mut))
        {
            for f in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
                if spec.get(f).is_none_or(Value::is_null)
                    && let Some(v) = old["spec"].get(f)
                {
                    spec.insert(f.into(), v.clone());
                }
            }
        }
        defaults::allocate(&res.group, &res.kind, obj, &mut self.alloc);
        if res.group.is_empty()
            && res.kind == "Secret"
            && let Some(string_data) = obj.as_object_mut().and_then(|m| m.remove("stringData"))
            && let Some(sd) = string_data.as_object()
        {
            if !obj["data"].is_object() {
                obj["data"] = json!({});
            }
            for (k, v) in sd {
                let encoded = base64::engine::general_purpose::STANDARD
                    .encode(v.as_str().unwrap_or_default());
                obj["data"][k] = json!(encoded);
            }
        }
        if res.group == "apiextensions.k8s.io" && res.kind == "CustomResourceDefinition" {
            let now = ids::now_rfc3339();
            let storage: Vec<Value> = obj["spec"]["versions"]
                .as_array()
                .map(|vs| {
                    vs.iter()
                        .filter(|v| v["storage"] == true)
                        .map(|v| v["name"].clone())
                        .collect()
                })
                .unwrap_or_default();
            let mut accepted = obj["spec"]["names"].clone();
            if let Some(a) = accepted.as_object_mut() {
                a.entry("singular").or_insert_with(|| json!(""));
            }
            let since = old
                .and_then(|o| {
                    o["status"]["conditions"][0]["lastTransitionTime"]
                        .as_str()
                        .map(String::from)
                })
                .unwrap_or(now);
            obj["status"] = json!({
                "acceptedNames": accepted,
                "conditions": [
                    {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": since},
                    {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": since}
                ],
                "storedVersions": storage,
            });
        }
    }

    /// Store (or, for a dry run, only return) a new state of an object, with its event.
    fn commit(
        &mut self,
        res: &ResourceInfo,
        old: Option<Arc<Value>>,
        mut obj: Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        if let Some(old) = &old
            && without_times(old) == without_times(&obj)
        {
            return Ok((**old).clone());
        }
        let ns = if res.namespaced {
            meta_str(&obj, "namespace").to_string()
        } else {
            String::new()
        };
        let name = meta_str(&obj, "name").to_string();
        // Finalizers all gone from an object being deleted: it goes.
        let deleting =
            !obj["metadata"]["deletionTimestamp"].is_null() && finalizers(&obj).is_empty();
        if dry_run {
            // As on a real server: a dry-run create has no resourceVersion yet, a dry-run
            // update keeps the stored one.
            match &old {
                Some(o) => set_meta(
                    &mut obj,
                    "resourceVersion",
                    o["metadata"]["resourceVersion"].clone(),
                ),
                None => remove_meta(&mut obj, "resourceVersion"),
            }
            return Ok(obj);
        }
        let rv = self.next_rv();
        set_meta(&mut obj, "resourceVersion", json!(rv.to_string()));
        let arc = Arc::new(obj);
        if deleting {
            self.remove(res, &ns, &name, arc.clone(), old);
            return Ok((*arc).clone());
        }
        self.objects
            .entry(key_of(res))
            .or_default()
            .insert((ns, name), arc.clone());
        let type_ = if old.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.push_event(res, type_, arc.clone(), old);
        if res.group == "apiextensions.k8s.io"
            && res.kind == "CustomResourceDefinition"
            && let Ok(info) = resource_from_crd(&arc)
        {
            self.catalogue.add_crd(info);
        }
        if res.group.is_empty()
            && res.kind == "Namespace"
            && type_ == EventType::Added
            && self.config.namespace_objects
        {
            self.seed_namespace(meta_str(&arc, "name"));
        }
        Ok((*arc).clone())
    }

    /// Remove an object for good (the event carries `obj`, already at its final resourceVersion).
    fn remove(
        &mut self,
        res: &ResourceInfo,
        ns: &str,
        name: &str,
        obj: Arc<Value>,
        prev: Option<Arc<Value>>,
    ) {
        if let Some(bucket) = self.objects.get_mut(&key_of(res)) {
            bucket.remove(&(ns.to_string(), name.to_string()));
        }
        self.push_event(res, EventType::Deleted, obj.clone(), prev);
        if res.group == "apiextensions.k8s.io"
            && res.kind == "CustomResourceDefinition"
            && let Ok(info) = resource_from_crd(&obj)
        {
            self.drop_all(&info);
            self.catalogue.remove_crd(&info.group, &info.plural);
        }
        if res.namespaced {
            self.maybe_finish_namespace(ns);
        }
    }

    /// Delete every object of a resource (a CRD going away).
    fn drop_all(&mut self, info: &ResourceInfo) {
        let all: Vec<Arc<Value>> = self.snapshot(info, None);
        for o in all {
            let rv = self.next_rv();
            let mut gone = (*o).clone();
            set_meta(&mut gone, "resourceVersion", json!(rv.to_string()));
            let ns = meta_str(&o, "namespace").to_string();
            let name = meta_str(&o, "name").to_string();
            if let Some(bucket) = self.objects.get_mut(&key_of(info)) {
                bucket.remove(&(ns, name));
            }
            self.push_event(info, EventType::Deleted, Arc::new(gone), Some(o));
        }
        self.objects.remove(&key_of(info));
    }

    fn seed_namespace(&mut self, ns: &str) {
        let opts = WriteOpts {
            manager: "kube-controller-manager".into(),
            ..Default::default()
        };
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "kube-root-ca.crt", "annotations": {"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."}},
            "data": {"ca.crt": self.ca_pem}});
        if let Some(res) = self.catalogue.by_plural("", "configmaps").cloned() {
            let _ = self.create(&res, "v1", ns, cm, &opts);
        }
        if let Some(res) = self.catalogue.by_plural("", "serviceaccounts").cloned() {
            let _ = self.create(&res, "v1", ns, json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}}), &opts);
        }
    }

    /// A terminating namespace whose content is gone is removed.
    fn maybe_finish_namespace(&mut self, ns: &str) {
        let Some(nsres) = self.catalogue.by_plural("", "namespaces").cloned() else {
            return;
        };
        let Some(nsobj) = self.lookup(&nsres, "", ns) else {
            return;
        };
        if nsobj["metadata"]["deletionTimestamp"].is_null() || !finalizers(&nsobj).is_empty() {
            return;
        }
        let empty = self
            .catalogue
            .resources()
            .iter()
            .filter(|r| r.namespaced)
            .all(|r| self.snapshot(r, Some(ns)).is_empty());
        if empty {
            let rv = self.next_rv();
            let mut gone = (*nsobj).clone();
            set_meta(&mut gone, "resourceVersion", json!(rv.to_string()));
            self.remove(&nsres, "", ns, Arc::new(gone), Some(nsobj));
        }
    }

    /// Create an object (POST).
    pub fn create(
        &mut self,
        res: &ResourceInfo,
        version: &str,
        ns: &str,
        body: Value,
        opts: &WriteOpts,
    ) -> Result<Value, ApiError> {
        self.check_body(res, version, ns, &body)?;
        let mut body = convert::to_storage(&res.group, &res.kind, version, &body);
        let version = convert::storage_version(&res.group, &res.kind, version);
        if body["metadata"].is_null() {
            body["metadata"] = json!({});
        }
        let mut name = meta_str(&body, "name").to_string();
        if name.is_empty() {
            let generate = meta_str(&body, "generateName").to_string();
            if !generate.is_empty() {
                name = format!("{generate}{}", ids::name_suffix());
                set_meta(&mut body, "name", json!(name));
            }
        }
        if !meta_str(&body, "resourceVersion").is_empty() {
            return Err(ApiError::internal(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        let ns = if res.namespaced { ns } else { "" };
        self.type_check(res, version, &body)?;
        body["apiVersion"] = json!(res.api_version(version));
        body["kind"] = json!(res.kind);
        if res.namespaced {
            set_meta(&mut body, "namespace", json!(ns));
        } else {
            remove_meta(&mut body, "namespace");
        }
        let managers =
            Managers::from_object(&body).map_err(|e| invalid_managed_fields(res, &name, &e))?;
        self.finish_create(res, version, ns, body, managers, opts, None)
    }

    #[allow(clippy::too_many_arguments)]
    fn finish_create(
        &mut self,
        res: &ResourceInfo,
        version: &str,
        ns: &str,
        mut obj: Value,
        mut managers: Managers,
        opts: &WriteOpts,
        applied: Option<&Value>,
    ) -> Result<Value, ApiError> {
        let name = meta_str(&obj, "name").to_string();
        // A real server never gives a cluster-scoped object a namespace, not even "".
        if !res.namespaced {
            remove_meta(&mut obj, "namespace");
        }
        if !name.is_empty() && self.lookup(res, ns, &name).is_some() {
            return Err(ApiError::already_exists(&res.group, &res.plural, &name));
        }
        if res.crd.is_none() {
            defaults::decode_defaults(&res.group, &res.kind, &mut obj);
            quantity::canonicalize(
                &mut obj,
                &Slot::root(&res.api_version(version), &res.kind, true),
            );
        }
        // A create never sets the status of a kind that has a status subresource.
        if res.status
            && let Some(m) = obj.as_object_mut()
        {
            m.remove("status");
        }
        let now = opts.now();
        if applied.is_none() {
            let actor = Actor {
                manager: &opts.manager,
                api_version: &res.api_version(version),
                subresource: "",
                time: &now,
                builtin: res.crd.is_none(),
                kind: &res.kind,
                schema: res.schema(version),
            };
            managers.update(None, &obj, &actor, res.status);
        }
        if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("selfLink");
            m.remove("deletionTimestamp");
            m.remove("deletionGracePeriodSeconds");
            m.remove("generateName")
                .map(|g| m.insert("generateName".into(), g));
        }
        set_meta(&mut obj, "uid", json!(opts.new_uid()));
        set_meta(&mut obj, "creationTimestamp", json!(now));
        if res.generation {
            set_meta(&mut obj, "generation", json!(1));
        } else {
            remove_meta(&mut obj, "generation");
        }
        self.storage_normalize(res, None, &mut obj);
        set_managers(&mut obj, &managers);
        self.type_check(res, version, &obj)?;
        self.validate(res, None, &obj)?;
        self.namespace_usable(res, ns, &name)?;
        self.commit(res, None, obj, opts.dry_run)
    }

    /// Replace an object (PUT), on the main resource or the status subresource.
    pub fn update(
        &mut self,
        res: &ResourceInfo,
        version: &str,
        ns: &str,
        name: &str,
        body: Value,
        opts: &WriteOpts,
    ) -> Result<Value, ApiError> {
        self.check_body(res, version, ns, &body)?;
        let body = convert::to_storage(&res.group, &res.kind, version, &body);
        let version = convert::storage_version(&res.group, &res.kind, version);
        let old = self.get(res, ns, name)?;
        self.type_check(res, version, &body)?;
        let request_managers = request_managers(res, name, &old, &body)?;
        self.finish_update(
            res,
            version,
            ns,
            name,
            old,
            body,
            request_managers,
            opts,
            false,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn finish_update(
        &mut self,
        res: &ResourceInfo,
        version: &str,
        ns: &str,
        name: &str,
        old: Arc<Value>,
        mut obj: Value,
        request_managers: Option<Managers>,
        opts: &WriteOpts,
        applied: bool,
    ) -> Result<Value, ApiError> {
        let body_name = meta_str(&obj, "name");
        if !body_name.is_empty() && body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let rv = meta_str(&obj, "resourceVersion");
        if !rv.is_empty() && rv != meta_str(&old, "resourceVersion") {
            return Err(ApiError::stale(&res.group, &res.plural, name));
        }
        let uid = meta_str(&obj, "uid");
        if !uid.is_empty() && uid != meta_str(&old, "uid") {
            return Err(ApiError::conflict(
                &res.group,
                &res.plural,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta_str(&old, "uid")
                ),
            ));
        }
        if obj["metadata"].is_null() {
            obj["metadata"] = json!({});
        }
        obj["apiVersion"] = json!(res.api_version(version));
        obj["kind"] = json!(res.kind);
        set_meta(&mut obj, "name", json!(name));
        if res.namespaced {
            set_meta(&mut obj, "namespace", json!(ns));
        } else {
            remove_meta(&mut obj, "namespace");
        }
        for f in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ] {
            match old["metadata"].get(f) {
                Some(v) => set_meta(&mut obj, f, v.clone()),
                None => remove_meta(&mut obj, f),
            }
        }
        remove_meta(&mut obj, "selfLink");
        // Subresources only change their part.
        match opts.subresource.as_str() {
            "status" => {
                let status = obj.get("status").cloned();
                let mut next = (*old).clone();
                match status {
                    Some(s) => next["status"] = s,
                    None => {
                        if let Some(m) = next.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
                next["apiVersion"] = obj["apiVersion"].clone();
                obj = next;
            }
            _ if res.status => match old.get("status") {
                Some(s) => obj["status"] = s.clone(),
                None => {
                    if let Some(m) = obj.as_object_mut() {
                        m.remove("status");
                    }
                }
            },
            _ => {}
        }
        if res.crd.is_none() {
            defaults::decode_defaults(&res.group, &res.kind, &mut obj);
            quantity::canonicalize(
                &mut obj,
                &Slot::root(&res.api_version(version), &res.kind, true),
            );
        }
        let mut managers = match request_managers {
            Some(m) => m,
            None => Managers::from_object(&old).unwrap_or_default(),
        };
        if applied {
            managers = Managers::from_object(&obj).unwrap_or_default();
        } else {
            let now = opts.now();
            let actor = Actor {
                manager: &opts.manager,
                api_version: &res.api_version(version),
                subresource: &opts.subresource,
                time: &now,
                builtin: res.crd.is_none(),
                kind: &res.kind,
                schema: res.schema(version),
            };
            managers.update(Some(&old), &obj, &actor, res.status);
        }
        if res.generation && generation_relevant(res, &old) != generation_relevant(res, &obj) {
            let g = old["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
            set_meta(&mut obj, "generation", json!(g));
        }
        self.storage_normalize(res, Some(&old), &mut obj);
        set_managers(&mut obj, &managers);
        self.type_check(res, version, &obj)?;
        self.validate(res, Some(&old), &obj)?;
        self.commit(res, Some(old), obj, opts.dry_run)
    }

    /// PATCH an object (any of the four patch types), on the main resource or the status subresource.
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &mut self,
        res: &ResourceInfo,
        version: &str,
        ns: &str,
        name: &str,
        kind: PatchKind,
        body: &Value,
        opts: &WriteOpts,
    ) -> Result<Value, ApiError> {
        if kind == PatchKind::Apply {
            return self.apply(res, version, ns, name, body, opts);
        }
        let old = self.get(res, ns, name)?;
        // A patch is made against the object as its client's version shows it.
        let view = convert::from_storage(&res.group, &res.kind, version, &old);
        let patched = match kind {
            PatchKind::Json => patch::json_patch(&view, body),
            PatchKind::Merge => patch::merge_patch(&view, body),
            PatchKind::Strategic => patch::strategic_merge_patch(&view, body),
            PatchKind::Apply => unreachable_apply(),
        }
        .map(|p| convert::to_storage(&res.group, &res.kind, version, &p))
        .map_err(|e| match e {
            PatchError::Malformed(m) => ApiError::bad_request(m),
            PatchError::Inapplicable(m) => ApiError::new(422, "Invalid", m),
        })?;
        let version = convert::storage_version(&res.group, &res.kind, version);
        self.check_body(res, version, ns, &patched)?;
        self.type_check(res, version, &patched)?;
        let request_managers = request_managers(res, name, &old, &patched)?;
        self.finish_update(
            res,
            version,
            ns,
            name,
            old,
            patched,
            request_managers,
            opts,
            false,
        )
    }

    fn apply(
        &mut self,
        res: &ResourceInfo,
        version: &str,
        ns: &str,
        name: &str,
        config: &Value,
        opts: &WriteOpts,
    ) -> Result<Value, ApiError> {
        if !config.is_object() {
            return Err(ApiError::bad_request(
                "error decoding YAML: the apply configuration must be an object",
            ));
        }
        if opts.manager.is_empty() {
            return Err(ApiError::bad_request(
                "PATCH requests of type \"application/apply-patch+yaml\" require fieldManager to be set",
            ));
        }
        if config["apiVersion"].as_str().is_none_or(str::is_empty)
            || config["kind"].as_str().is_none_or(str::is_empty)
        {
            return Err(ApiError::bad_request(format!(
                "error decoding YAML: {}",
                if config["kind"].as_str().is_none_or(str::is_empty) {
                    "Object 'Kind' is missing"
                } else {
                    "Object 'apiVersion' is missing"
                }
            )));
        }
        self.check_body(res, version, ns, config)?;
        if config["metadata"]
            .get("managedFields")
            .is_some_and(|m| !m.is_null())
        {
            return Err(ApiError::bad_request("metadata.managedFields must be nil"));
        }
        let config_name = meta_str(config, "name");
        if !config_name.is_empty() && config_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({config_name}) does not match the name on the URL ({name})"
            )));
        }
        let mut config = convert::to_storage(&res.group, &res.kind, version, config);
        let version = convert::storage_version(&res.group, &res.kind, version);
        self.type_check(res, version, &config)?;
        if res.crd.is_none() {
            quantity::canonicalize(
                &mut config,
                &Slot::root(&res.api_version(version), &res.kind, true),
            );
        }
        set_meta(&mut config, "name", json!(name));
        if res.namespaced {
            set_meta(&mut config, "namespace", json!(ns));
        }
        let now = opts.now();
        let api_version = res.api_version(version);
        let actor = Actor {
            manager: &opts.manager,
            api_version: &api_version,
            subresource: &opts.subresource,
            time: &now,
            builtin: res.crd.is_none(),
            kind: &res.kind,
            schema: res.schema(version),
        };
        let live = self.lookup(res, ns, name);
        let mut managers = match &live {
            Some(l) => Managers::from_object(l).unwrap_or_default(),
            None => Managers::default(),
        };
        let mut base = live.as_deref().cloned();
        if let Some(b) = base.as_mut() {
            remove_meta(b, "managedFields");
        }
        let mut merged = managers
            .apply(base.as_ref(), &config, &actor, opts.force, res.status)
            .map_err(|c| c.to_error())?;
        match live {
            None => {
                if !opts.subresource.is_empty() {
                    return Err(ApiError::not_found(&res.group, &res.plural, name));
                }
                if res.namespaced {
                    set_meta(&mut merged, "namespace", json!(ns));
                }
                self.finish_create(res, version, ns, merged, managers, opts, Some(&config))
            }
            Some(old) => {
                let rv = meta_str(&config, "resourceVersion");
                if !rv.is_empty() && rv != meta_str(&old, "resourceVersion") {
                    return Err(ApiError::stale(&res.group, &res.plural, name));
                }
                set_meta(
                    &mut merged,
                    "resourceVersion",
                    old["metadata"]["resourceVersion"].clone(),
                );
                set_managers(&mut merged, &managers);
                self.finish_update(res, version, ns, name, old, merged, None, opts, true)
            }
        }
    }

    /// DELETE one object: gone at once, or marked with a deletionTimestamp while finalizers remain.
    pub fn delete(
        &mut self,
        res: &ResourceInfo,
        ns: &str,
        name: &str,
        pre: &DeleteOpts,
        opts: &WriteOpts,
    ) -> Result<Deleted, ApiError> {
        let old = self.get(res, ns, name)?;
        if let Some(uid) = pre.uid.as_deref().filter(|u| *u != meta_str(&old, "uid")) {
            return Err(ApiError::conflict(
                &res.group,
                &res.plural,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta_str(&old, "uid")
                ),
            ));
        }
        if let Some(rv) = pre
            .resource_version
            .as_deref()
            .filter(|r| *r != meta_str(&old, "resourceVersion"))
        {
            return Err(ApiError::conflict(
                &res.group,
                &res.plural,
                name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    meta_str(&old, "resourceVersion")
                ),
            ));
        }
        let ns = if res.namespaced { ns } else { "" };
        let is_namespace = res.group.is_empty() && res.kind == "Namespace";
        if !finalizers(&old).is_empty() || is_namespace {
            if !old["metadata"]["deletionTimestamp"].is_null() {
                return Ok(Deleted::Marked((*old).clone()));
            }
            let mut marked = (*old).clone();
            set_meta(&mut marked, "deletionTimestamp", json!(opts.now()));
            set_meta(&mut marked, "deletionGracePeriodSeconds", json!(0));
            if res.generation {
                let g = old["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
                set_meta(&mut marked, "generation", json!(g));
            }
            if is_namespace {
                marked["status"] = json!({"phase": "Terminating"});
            }
            if opts.dry_run {
                return Ok(Deleted::Marked(marked));
            }
            let rv = self.next_rv();
            set_meta(&mut marked, "resourceVersion", json!(rv.to_string()));
            let arc = Arc::new(marked);
            self.objects
                .entry(key_of(res))
                .or_default()
                .insert((ns.to_string(), name.to_string()), arc.clone());
            self.push_event(res, EventType::Modified, arc.clone(), Some(old));
            if is_namespace {
                self.empty_namespace(name);
                self.maybe_finish_namespace(name);
                return Ok(match self.lookup(res, "", name) {
                    Some(still) => Deleted::Marked((*still).clone()),
                    None => Deleted::Gone((*arc).clone()),
                });
            }
            return Ok(Deleted::Marked((*arc).clone()));
        }
        let mut gone = (*old).clone();
        if opts.dry_run {
            return Ok(Deleted::Gone(gone));
        }
        let rv = self.next_rv();
        set_meta(&mut gone, "resourceVersion", json!(rv.to_string()));
        self.remove(res, ns, name, Arc::new(gone.clone()), Some(old));
        Ok(Deleted::Gone(gone))
    }

    /// Delete everything in a namespace that is being deleted.
    fn empty_namespace(&mut self, ns: &str) {
        let resources: Vec<ResourceInfo> = self
            .catalogue
            .resources()
            .iter()
            .filter(|r| r.namespaced)
            .cloned()
            .collect();
        let opts = WriteOpts {
            manager: "kube-controller-manager".into(),
            ..Default::default()
        };
        for r in resources {
            for o in self.snapshot(&r, Some(ns)) {
                let _ = self.delete(&r, ns, meta_str(&o, "name"), &DeleteOpts::default(), &opts);
            }
        }
    }

    /// DELETE a collection: every object matching the selectors.
    pub fn delete_collection(
        &mut self,
        res: &ResourceInfo,
        ns: Option<&str>,
        q: &ListQuery,
        opts: &WriteOpts,
    ) -> Result<Vec<Value>, ApiError> {
        let q = ListQuery {
            limit: None,
            continue_token: None,
            ..q.clone()
        };
        let page = self.list(res, ns, &q)?;
        let mut out = Vec::new();
        for o in page.items {
            let ns = meta_str(&o, "namespace").to_string();
            match self.delete(res, &ns, meta_str(&o, "name"), &DeleteOpts::default(), opts)? {
                Deleted::Gone(v) | Deleted::Marked(v) => out.push(v),
            }
        }
        Ok(out)
    }

    /// The `autoscaling/v1` Scale of an object.
    pub fn scale_of(&self, res: &ResourceInfo, obj: &Value) -> Value {
        let paths = res.scale.clone().unwrap_or(crate::catalogue::ScalePaths {
            spec_replicas: ".spec.replicas".into(),
            status_replicas: ".status.replicas".into(),
            label_selector: None,
        });
        let mut status =
            json!({"replicas": read_path(obj, &paths.status_replicas).as_i64().unwrap_or(0)});
        if let Some(sel_path) = &paths.label_selector {
            let sel = read_path(obj, sel_path);
            let text = match sel {
                Value::String(s) => Some(s.clone()),
                Value::Object(_) => LabelSelector::from_object(sel).ok().map(|s| s.to_query()),
                _ => None,
            };
            if let Some(t) = text {
                status["selector"] = json!(t);
            }
        }
        let meta = &obj["metadata"];
        json!({
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                "name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
                "resourceVersion": meta["resourceVersion"], "creationTimestamp": meta["creationTimestamp"],
            },
            "spec": {"replicas": read_path(obj, &paths.spec_replicas).as_i64().unwrap_or(0)},
            "status": status,
        })
    }

    /// Write a Scale (after PUT or PATCH of the scale subresource) into its object.
    #[allow(clippy::too_many_arguments)]
    pub fn scale_write(
        &mut self,
        res: &ResourceInfo,
        version: &str,
        ns: &str,
        name: &str,
        patch: Option<(PatchKind, &Value)>,
        body: Option<&Value>,
        opts: &WriteOpts,
    ) -> Result<Value, ApiError> {
        let Some(paths) = res.scale.clone() else {
            return Err(ApiError::no_route());
        };
        let old = self.get(res, ns, name)?;
        let current = self.scale_of(res, &old);
        let scale = match (patch, body) {
            (Some((PatchKind::Json, p)), _) => patch::json_patch(&current, p),
            (Some((PatchKind::Merge | PatchKind::Strategic, p)), _) => {
                patch::merge_patch(&current, p)
            }
            (Some((PatchKind::Apply, p)), _) => patch::merge_patch(&current, p),
            (None, Some(b)) => Ok(b.clone()),
            (None, None) => Ok(current.clone()),
        }
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let rv = meta_str(&scale, "resourceVersion");
        if !rv.is_empty() && rv != meta_str(&old, "resourceVersion") {
            return Err(ApiError::stale(&res.group, &res.plural, name));
        }
        let Some(replicas) = scale["spec"]["replicas"].as_i64() else {
            return Err(ApiError::invalid(
                "autoscaling",
                "Scale",
                name,
                vec![Cause::required("spec.replicas", "")],
            ));
        };
        if replicas < 0 {
            return Err(ApiError::invalid(
                "autoscaling",
                "Scale",
                name,
                vec![Cause::invalid(
                    "spec.replicas",
                    &json!(replicas),
                    "must be greater than or equal to 0",
                )],
            ));
        }
        let mut next = (*old).clone();
        write_path(&mut next, &paths.spec_replicas, json!(replicas));
        let opts = WriteOpts {
            subresource: "scale".into(),
            ..opts.clone()
        };
        let written = self.finish_update(res, version, ns, name, old, next, None, &opts, false)?;
        Ok(self.scale_of(res, &written))
    }
}

fn unreachable_apply() -> Result<Value, PatchError> {
    Err(PatchError::Malformed(
        "apply patches are handled separately".into(),
    ))
}

fn invalid_managed_fields(res: &ResourceInfo, name: &str, e: &ManagedFieldsError) -> ApiError {
    ApiError::invalid(
        &res.group,
        &res.kind,
        name,
        vec![Cause::invalid(
            "metadata.managedFields",
            &Value::Null,
            &e.to_string(),
        )],
    )
}

/// The managers an update or patch asks for, when its object carries other `managedFields`
/// than the stored object (`None`: keep the stored ones).
fn request_managers(
    res: &ResourceInfo,
    name: &str,
    old: &Value,
    new: &Value,
) -> Result<Option<Managers>, ApiError> {
    if new["metadata"].get("managedFields") == old["metadata"].get("managedFields") {
        return Ok(None);
    }
    Managers::from_request(new).map_err(|e| invalid_managed_fields(res, name, &e))
}

fn set_managers(obj: &mut Value, managers: &Managers) {
    let v = managers.to_value();
    if v.as_array().is_some_and(Vec::is_empty) {
        remove_meta(obj, "managedFields");
    } else {
        set_meta(obj, "managedFields", v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> Store {
        Store::new(StoreConfig {
            history_limit: 1000,
            namespace_objects: false,
        })
    }

    fn res(s: &Store, group: &str, plural: &str) -> ResourceInfo {
        s.catalogue().by_plural(group, plural).unwrap().clone()
    }

    fn opts(manager: &str) -> WriteOpts {
        WriteOpts {
            manager: manager.into(),
            ..Default::default()
        }
    }

    fn cm(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"a": "1"}})
    }

    #[test]
    fn creates_get_metadata_and_one_increasing_resource_version() {
        let mut s = store();
        let cms = res(&s, "", "configmaps");
        let a = s
            .create(&cms, "v1", "default", cm("a"), &opts("test"))
            .unwrap();
        let b = s
            .create(&cms, "v1", "default", cm("b"), &opts("test"))
            .unwrap();
        let rva: u64 = a["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let rvb: u64 = b["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(rvb > rva);
        assert_eq!(a["metadata"]["uid"].as_str().unwrap().len(), 36);
        assert!(a["metadata"]["creationTimestamp"].is_string());
        assert!(a["metadata"].get("generation").is_none());
        assert_eq!(
            s.create(&cms, "v1", "default", cm("a"), &opts("t"))
                .unwrap_err()
                .code,
            409
        );
        assert_eq!(
            s.create(&cms, "v1", "nope", cm("c"), &opts("t"))
                .unwrap_err()
                .code,
            404
        );
    }

    #[test]
    fn generate_name_and_stale_updates() {
        let mut s = store();
        let cms = res(&s, "", "configmaps");
        let a = s
            .create(
                &cms,
                "v1",
                "default",
                json!({"metadata": {"generateName": "x-"}, "data": {}}),
                &opts("t"),
            )
            .unwrap();
        let name = a["metadata"]["name"].as_str().unwrap().to_string();
        assert!(name.starts_with("x-") && name.len() == 7);
        let mut stale = a.clone();
        stale["data"] = json!({"b": "2"});
        s.update(&cms, "v1", "default", &name, stale.clone(), &opts("t"))
            .unwrap();
        let err = s
            .update(&cms, "v1", "default", &name, stale, &opts("t"))
            .unwrap_err();
        assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
    }

    #[test]
    fn generation_moves_on_spec_changes_only() {
        let mut s = store();
        let deps = res(&s, "apps", "deployments");
        let d = json!({"metadata": {"name": "web"}, "spec": {"selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}});
        let created = s.create(&deps, "v1", "default", d, &opts("t")).unwrap();
        assert_eq!(created["metadata"]["generation"], 1);
        let labelled = s
            .patch(
                &deps,
                "v1",
                "default",
                "web",
                PatchKind::Merge,
                &json!({"metadata": {"labels": {"x": "y"}}}),
                &opts("t"),
            )
            .unwrap();
        assert_eq!(labelled["metadata"]["generation"], 1);
        let scaled = s
            .patch(
                &deps,
                "v1",
                "default",
                "web",
                PatchKind::Merge,
                &json!({"spec": {"replicas": 3}}),
                &opts("t"),
            )
            .unwrap();
        assert_eq!(scaled["metadata"]["generation"], 2);
        let status = s
            .patch(
                &deps,
                "v1",
                "default",
                "web",
                PatchKind::Merge,
                &json!({"status": {"replicas": 3}}),
                &WriteOpts {
                    subresource: "status".into(),
                    ..opts("t")
                },
            )
            .unwrap();
        assert_eq!(status["metadata"]["generation"], 2);
        assert_eq!(status["status"]["replicas"], 3);
        // The main resource ignores status.
        let ignored = s
            .patch(
                &deps,
                "v1",
                "default",
                "web",
                PatchKind::Merge,
                &json!({"status": {"replicas": 9}}),
                &opts("t"),
            )
            .unwrap();
        assert_eq!(ignored["status"]["replicas"], 3);
    }

    #[test]
    fn finalizers_hold_deletion_until_removed() {
        let mut s = store();
        let cms = res(&s, "", "configmaps");
        let mut c = cm("f");
        c["metadata"]["finalizers"] = json!(["example.com/hold"]);
        s.create(&cms, "v1", "default", c, &opts("t")).unwrap();
        let marked = s
            .delete(&cms, "default", "f", &DeleteOpts::default(), &opts("t"))
            .unwrap();
        let Deleted::Marked(m) = marked else {
            panic!("expected only a mark")
        };
        assert!(m["metadata"]["deletionTimestamp"].is_string());
        s.patch(
            &cms,
            "v1",
            "default",
            "f",
            PatchKind::Merge,
            &json!({"metadata": {"finalizers": null}}),
            &opts("t"),
        )
        .unwrap();
        assert_eq!(s.get(&cms, "default", "f").unwrap_err().code, 404);
        let last = s.events_since(0).unwrap().pop().unwrap();
        assert_eq!(last.type_, EventType::Deleted);
    }

    #[test]
    fn deleting_a_namespace_deletes_its_objects() {
        let mut s = store();
        let nss = res(&s, "", "namespaces");
        let cms = res(&s, "", "configmaps");
        s.create(
            &nss,
            "v1",
            "",
            json!({"metadata": {"name": "team"}}),
            &opts("t"),
        )
        .unwrap();
        s.create(&cms, "v1", "team", cm("a"), &opts("t")).unwrap();
        s.delete(&nss, "", "team", &DeleteOpts::default(), &opts("t"))
            .unwrap();
        assert_eq!(s.get(&cms, "team", "a").unwrap_err().code, 404);
        assert_eq!(s.get(&nss, "", "team").unwrap_err().code, 404);
    }

    #[test]
    fn paging_returns_every_object_once() {
        let mut s = store();
        let cms = res(&s, "", "configmaps");
        for i in 0..7 {
            s.create(&cms, "v1", "default", cm(&format!("c{i}")), &opts("t"))
                .unwrap();
        }
        let mut seen = Vec::new();
        let mut token = None;
        loop {
            let page = s
                .list(
                    &cms,
                    Some("default"),
                    &ListQuery {
                        limit: Some(3),
                        continue_token: token,
                        ..Default::default()
                    },
                )
                .unwrap();
            seen.extend(
                page.items
                    .iter()
                    .map(|o| o["metadata"]["name"].as_str().unwrap().to_string()),
            );
            token = page.continue_token;
            if token.is_none() {
                break;
            }
        }
        assert_eq!(seen.len(), 7);
        let labels = ListQuery {
            fields: FieldSelector::parse("metadata.name=c3", "ConfigMap").unwrap(),
            ..Default::default()
        };
        assert_eq!(s.list(&cms, None, &labels).unwrap().items.len(), 1);
    }

    #[test]
    fn history_is_bounded_and_compactable() {
        let mut s = Store::new(StoreConfig {
            history_limit: 3,
            namespace_objects: false,
        });
        let cms = res(&s, "", "configmaps");
        for i in 0..5 {
            s.create(&cms, "v1", "default", cm(&format!("c{i}")), &opts("t"))
                .unwrap();
        }
        let rv = s.resource_version();
        assert_eq!(s.events_since(rv - 3).unwrap().len(), 3);
        assert_eq!(s.events_since(1).unwrap_err().code, 410);
        s.compact();
        assert_eq!(s.events_since(rv - 1).unwrap_err().reason, "Expired");
        assert!(s.events_since(rv).unwrap().is_empty());
    }

    #[test]
    fn dry_run_stores_nothing() {
        let mut s = store();
        let cms = res(&s, "", "configmaps");
        let rv = s.resource_version();
        let o = s
            .create(
                &cms,
                "v1",
                "default",
                cm("d"),
                &WriteOpts {
                    dry_run: true,
                    ..opts("t")
                },
            )
            .unwrap();
        assert_eq!(o["metadata"]["name"], "d");
        assert_eq!(s.resource_version(), rv);
        assert_eq!(s.get(&cms, "default", "d").unwrap_err().code, 404);
    }

    #[test]
    fn a_crd_serves_its_resource_until_deleted() {
        let mut s = store();
        let crds = res(&s, "apiextensions.k8s.io", "customresourcedefinitions");
        let crd = json!({"metadata": {"name": "widgets.example.com"}, "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}});
        let created = s.create(&crds, "v1", "", crd, &opts("t")).unwrap();
        assert_eq!(created["status"]["conditions"][1]["type"], "Established");
        let widgets = s
            .catalogue()
            .lookup("example.com", "v1", "widgets")
            .unwrap()
            .clone();
        s.create(
            &widgets,
            "v1",
            "default",
            json!({"metadata": {"name": "w"}, "spec": {"size": 1}}),
            &opts("t"),
        )
        .unwrap();
        s.delete(
            &crds,
            "",
            "widgets.example.com",
            &DeleteOpts::default(),
            &opts("t"),
        )
        .unwrap();
        assert!(
            s.catalogue()
                .lookup("example.com", "v1", "widgets")
                .is_none()
        );
        assert!(s.snapshot(&widgets, None).is_empty());
    }

    #[test]
    fn scale_reads_and_writes_replicas() {
        let mut s = store();
        let deps = res(&s, "apps", "deployments");
        let d = json!({"metadata": {"name": "web"}, "spec": {"selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}});
        let created = s.create(&deps, "v1", "default", d, &opts("t")).unwrap();
        let scale = s.scale_of(&deps, &created);
        assert_eq!(scale["spec"]["replicas"], 1);
        assert_eq!(scale["status"]["selector"], "app=web");
        let out = s
            .scale_write(
                &deps,
                "v1",
                "default",
                "web",
                Some((PatchKind::Merge, &json!({"spec": {"replicas": 3}}))),
                None,
                &opts("kubectl"),
            )
            .unwrap();
        assert_eq!(out["spec"]["replicas"], 3);
        let d = s.get(&deps, "default", "web").unwrap();
        assert_eq!(d["spec"]["replicas"], 3);
        let scale_manager = d["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["subresource"] == "scale")
            .unwrap();
        assert_eq!(
            scale_manager["fieldsV1"],
            json!({"f:spec": {"f:replicas": {}}})
        );
    }
}
