//! Which audit events are changes that persisted, and what each changed (create, update, patch,
//! delete, deletecollection members, scale); every other event gets a stable skip reason.

use super::event::{AuditEvent, ObjectReference};
use super::read::Malformed;
use crate::identity::UserInfo;
use crate::manifest::ObjectId;
use jiff::Timestamp;
use serde_json::{Map, Value};
use std::fmt;

/// A verb that can persist a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verb {
    Create,
    Update,
    Patch,
    Delete,
    DeleteCollection,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Update => "update",
            Self::Patch => "patch",
            Self::Delete => "delete",
            Self::DeleteCollection => "deletecollection",
        }
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a change did to the stored object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// The object exists afterwards; `object` is its stored state (create, update, patch).
    Upsert,
    /// A delete that did not remove the object yet: it has finalizers or a grace period, so it is
    /// still stored, now with `metadata.deletionTimestamp`; `object` is that state. The object
    /// goes later, by a [`ChangeKind::DeleteFinalized`] update or a further delete.
    DeletePending,
    /// The object is gone; `object` is its last state when the response carried it.
    Delete,
    /// An update or patch that removed the last finalizer of an object whose deletion was
    /// pending: the API server removed the object. The deletion was asked for earlier (join on
    /// the uid with the [`ChangeKind::DeletePending`] change to find who asked).
    DeleteFinalized,
}

impl ChangeKind {
    /// True when the object no longer exists after the change.
    pub fn removes_object(self) -> bool {
        matches!(self, Self::Delete | Self::DeleteFinalized)
    }
}

/// The object a change is about. Group, version, kind, namespace, name and uid come from the
/// response object when there is one (authoritative), else from the event's `objectRef`; the
/// kind is unknown for deletes without a body and for the parent of a scale.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ChangeTarget {
    /// API group; `""` for the core group.
    pub group: String,
    pub version: String,
    /// Resource plural from `objectRef.resource` (e.g. `configmaps`); may be empty.
    pub resource: String,
    pub kind: Option<String>,
    pub namespace: Option<String>,
    pub name: String,
    pub uid: Option<String>,
}

impl ChangeTarget {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The manifest core's identity, when the kind is known.
    pub fn object_id(&self) -> Option<ObjectId> {
        Some(ObjectId {
            group: self.group.clone(),
            version: self.version.clone(),
            kind: self.kind.clone()?,
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        })
    }

    fn from_ref(object_ref: &ObjectReference, name: &str) -> Self {
        let (group, version) = object_ref.group_version();
        Self {
            group,
            version,
            resource: object_ref.resource().unwrap_or_default().to_string(),
            kind: None,
            namespace: object_ref.namespace().map(str::to_string),
            name: name.to_string(),
            uid: object_ref.uid().map(str::to_string),
        }
    }
}

/// `apps/v1 deployments shop/web` (the kind replaces the resource when known).
impl fmt::Display for ChangeTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = self.kind.as_deref().unwrap_or(&self.resource);
        write!(f, "{} {what} ", self.api_version())?;
        if let Some(ns) = &self.namespace {
            write!(f, "{ns}/")?;
        }
        f.write_str(&self.name)
    }
}

/// A persisted change to one object, from one audit event.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditChange {
    pub audit_id: Option<String>,
    /// The request's verb (`DeleteCollection` for each member of a deletecollection).
    pub verb: Verb,
    pub kind: ChangeKind,
    pub target: ChangeTarget,
    /// The object's state after the change (upserts, pending deletes), its last state (deletes
    /// whose response carried it), or `None`. Members of a deletecollection get the list's
    /// `apiVersion` and kind when they lack them.
    pub object: Option<Value>,
    /// `metadata.resourceVersion` of the object in the response, when there is one.
    pub resource_version: Option<String>,
    /// The authenticated user of the request.
    pub user: UserInfo,
    /// The user the request impersonated, when it did (then the author).
    pub impersonated_user: Option<UserInfo>,
    /// When the API server received the request: the author date.
    pub request_received: Timestamp,
}

impl AuditChange {
    /// The author: the impersonated user when there was impersonation, else the user.
    pub fn author_user(&self) -> &UserInfo {
        self.impersonated_user.as_ref().unwrap_or(&self.user)
    }

    /// Who impersonated the author, when someone did.
    pub fn impersonator(&self) -> Option<&UserInfo> {
        self.impersonated_user.as_ref().map(|_| &self.user)
    }
}

/// A persisted write to the `scale` subresource: the parent's `spec.replicas` is now `replicas`.
#[derive(Clone, Debug, PartialEq)]
pub struct ScaleChange {
    pub audit_id: Option<String>,
    pub verb: Verb,
    /// The scaled object (kind unknown: the event names its resource, e.g. `deployments`).
    pub parent: ChangeTarget,
    pub replicas: i64,
    /// The parent's resourceVersion after the change (the Scale carries the parent's).
    pub resource_version: Option<String>,
    pub user: UserInfo,
    pub impersonated_user: Option<UserInfo>,
    pub request_received: Timestamp,
}

impl ScaleChange {
    pub fn author_user(&self) -> &UserInfo {
        self.impersonated_user.as_ref().unwrap_or(&self.user)
    }

    pub fn impersonator(&self) -> Option<&UserInfo> {
        self.impersonated_user.as_ref().map(|_| &self.user)
    }
}

/// Why an event is not a persisted change. [`SkipReason::label`] is short, stable and of bounded
/// cardinality (usable as a metric label or summary key); `Display` adds the detail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SkipReason {
    NoStage,
    /// A stage other than `ResponseComplete`.
    Stage(String),
    NoResponseStatus,
    /// A response code outside 2xx.
    Failed(i64),
    NoVerb,
    /// get, list, watch.
    ReadOnlyVerb(String),
    /// Any other verb that does not write.
    UnsupportedVerb(String),
    /// A non-resource request (`/healthz`, ...).
    NoObjectRef,
    DryRun,
    /// A subresource other than `scale` (status, exec, eviction, ...).
    Subresource(String),
    /// A write without `responseObject`: the audit level was below RequestResponse (or an
    /// aggregated API server sent none).
    NoResponseObject,
    /// The response to a write was a `Status`, not the object.
    ResponseIsStatus,
    /// The response was not the object the request named; the text says why.
    ResponseNotObject(String),
    /// A deletecollection whose response does not list the deleted objects.
    DeleteCollectionWithoutObjects,
    /// A deletecollection that deleted nothing.
    DeleteCollectionEmpty,
    /// A delete without an object name.
    NoName,
    /// An update or patch that left the resourceVersion as it was: nothing was written.
    NoOp,
    /// No request time that parses (missing, or a placeholder like `<ts>`).
    NoTimestamp,
    /// An input entry that is not an audit event (from the reader); the text says where.
    Malformed(String),
}

impl SkipReason {
    /// The stable short label.
    pub fn label(&self) -> String {
        match self {
            Self::NoStage => "no stage".into(),
            Self::Stage(s) => match s.as_str() {
                "RequestReceived" | "ResponseStarted" | "Panic" => format!("stage:{s}"),
                _ => "stage:other".into(),
            },
            Self::NoResponseStatus => "no responseStatus".into(),
            Self::Failed(code) if (100..1000).contains(code) => format!("failed: {code}"),
            Self::Failed(_) => "failed: other".into(),
            Self::NoVerb => "no verb".into(),
            Self::ReadOnlyVerb(v) => format!("read-only verb {v}"),
            Self::UnsupportedVerb(_) => "unsupported verb".into(),
            Self::NoObjectRef => "no objectRef".into(),
            Self::DryRun => "dry run".into(),
            Self::Subresource(s)
                if (1..=32).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_lowercase()) =>
            {
                format!("subresource {s}")
            }
            Self::Subresource(_) => "subresource other".into(),
            Self::NoResponseObject => "no responseObject".into(),
            Self::ResponseIsStatus => "responseObject is a Status".into(),
            Self::ResponseNotObject(_) => "responseObject is not the object".into(),
            Self::DeleteCollectionWithoutObjects => {
                "deletecollection without the deleted objects in the response".into()
            }
            Self::DeleteCollectionEmpty => "deletecollection deleted nothing".into(),
            Self::NoName => "no object name".into(),
            Self::NoOp => "no-op".into(),
            Self::NoTimestamp => "no timestamp".into(),
            Self::Malformed(_) => "malformed".into(),
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnsupportedVerb(v) => write!(f, "unsupported verb {v:?}"),
            Self::Stage(s) => write!(f, "stage {s:?}"),
            Self::Subresource(s) => write!(f, "subresource {s:?}"),
            Self::NoResponseObject => {
                f.write_str("no responseObject (audit level below RequestResponse)")
            }
            Self::ResponseNotObject(why) => write!(f, "responseObject is not the object: {why}"),
            Self::NoOp => f.write_str("no-op (resourceVersion unchanged)"),
            Self::NoTimestamp => {
                f.write_str("no timestamp (requestReceivedTimestamp missing or not RFC 3339)")
            }
            Self::Malformed(text) => f.write_str(text),
            other => f.write_str(&other.label()),
        }
    }
}

impl From<&Malformed> for SkipReason {
    fn from(m: &Malformed) -> Self {
        Self::Malformed(m.to_string())
    }
}

/// The outcome of [`classify`].
#[derive(Clone, Debug, PartialEq)]
pub enum Classified {
    Change(AuditChange),
    /// The members of a deletecollection whose response listed them, one delete each.
    Changes(Vec<AuditChange>),
    Scale(ScaleChange),
    Skipped(SkipReason),
}

/// Decides whether an event is a persisted change. Checks, in order (the first that fails is
/// the skip reason): stage `ResponseComplete`; a 2xx response code; a writing verb (create,
/// update, patch, delete, deletecollection); an `objectRef`; not a dry run; no subresource other
/// than `scale` (update/patch); a response that is the object (create/update/patch), lists the
/// deleted objects (deletecollection) or is a `Scale`; a changed resourceVersion (update/patch
/// whose objectRef has one); a parseable request time.
///
/// Deletes: a `Status` response or none is a [`ChangeKind::Delete`] identified by the
/// `objectRef`; a response that is the object is a [`ChangeKind::DeletePending`] when it still
/// has finalizers or a grace period (the API server only set `deletionTimestamp`), else a
/// [`ChangeKind::Delete`] carrying the last state. An update or patch whose response has
/// `deletionTimestamp` and no finalizers left (and no grace period) is a
/// [`ChangeKind::DeleteFinalized`]: the API server removed the object.
pub fn classify(event: &AuditEvent) -> Classified {
    match classify_inner(event) {
        Ok(c) => c,
        Err(reason) => Classified::Skipped(reason),
    }
}

fn classify_inner(event: &AuditEvent) -> Result<Classified, SkipReason> {
    let stage = event.stage().ok_or(SkipReason::NoStage)?;
    if stage != "ResponseComplete" {
        return Err(SkipReason::Stage(stage.to_string()));
    }
    let code = event.response_code().ok_or(SkipReason::NoResponseStatus)?;
    if !(200..300).contains(&code) {
        return Err(SkipReason::Failed(code));
    }
    let verb = match event.verb().ok_or(SkipReason::NoVerb)? {
        "create" => Verb::Create,
        "update" => Verb::Update,
        "patch" => Verb::Patch,
        "delete" => Verb::Delete,
        "deletecollection" => Verb::DeleteCollection,
        v @ ("get" | "list" | "watch") => return Err(SkipReason::ReadOnlyVerb(v.to_string())),
        v => return Err(SkipReason::UnsupportedVerb(v.to_string())),
    };
    let object_ref = event.object_ref.as_ref().ok_or(SkipReason::NoObjectRef)?;
    if event.is_dry_run() {
        return Err(SkipReason::DryRun);
    }
    match (object_ref.subresource(), verb) {
        (None, _) => {}
        (Some("scale"), Verb::Update | Verb::Patch) => {
            return scale(event, object_ref, verb).map(Classified::Scale);
        }
        (Some(sub), _) => return Err(SkipReason::Subresource(sub.to_string())),
    }
    match verb {
        Verb::Create | Verb::Update | Verb::Patch => {
            upsert(event, object_ref, verb).map(Classified::Change)
        }
        Verb::Delete => delete(event, object_ref).map(Classified::Change),
        Verb::DeleteCollection => delete_collection(event, object_ref).map(Classified::Changes),
    }
}

fn upsert(
    event: &AuditEvent,
    object_ref: &ObjectReference,
    verb: Verb,
) -> Result<AuditChange, SkipReason> {
    let object = event
        .response_object
        .as_ref()
        .ok_or(SkipReason::NoResponseObject)?;
    let target = target_of(object, object_ref)?;
    let resource_version = metadata_str(object, "resourceVersion");
    if matches!(verb, Verb::Update | Verb::Patch)
        && resource_version.is_some()
        && object_ref.resource_version() == resource_version.as_deref()
    {
        return Err(SkipReason::NoOp);
    }
    let kind = if verb != Verb::Create && deletion_finalized(object) {
        ChangeKind::DeleteFinalized
    } else {
        ChangeKind::Upsert
    };
    change(
        event,
        verb,
        kind,
        target,
        Some(object.clone()),
        resource_version,
    )
}

fn delete(event: &AuditEvent, object_ref: &ObjectReference) -> Result<AuditChange, SkipReason> {
    let name = object_ref.name().ok_or(SkipReason::NoName)?;
    let response = event.response_object.as_ref();
    let object = response.filter(|r| {
        r.get("kind")
            .and_then(Value::as_str)
            .is_some_and(|k| k != "Status")
    });
    if let Some(object) = object
        && let Ok(target) = target_of(object, object_ref)
    {
        let kind = if deletion_pending(object) {
            ChangeKind::DeletePending
        } else {
            ChangeKind::Delete
        };
        let rv = metadata_str(object, "resourceVersion");
        return change(event, Verb::Delete, kind, target, Some(object.clone()), rv);
    }
    // Deleted, and the response is a Status (which may name the uid), nothing, or not
    // recognisably the object: the objectRef identifies what was deleted.
    let mut target = ChangeTarget::from_ref(object_ref, name);
    if let Some(uid) = response
        .and_then(|r| r.pointer("/details/uid"))
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
    {
        target.uid = Some(uid.to_string());
    }
    change(event, Verb::Delete, ChangeKind::Delete, target, None, None)
}

fn delete_collection(
    event: &AuditEvent,
    object_ref: &ObjectReference,
) -> Result<Vec<AuditChange>, SkipReason> {
    let list = event
        .response_object
        .as_ref()
        .filter(|r| r.get("kind").and_then(Value::as_str) != Some("Status"))
        .ok_or(SkipReason::DeleteCollectionWithoutObjects)?;
    let items = list
        .get("items")
        .and_then(Value::as_array)
        .ok_or(SkipReason::DeleteCollectionWithoutObjects)?;
    if items.is_empty() {
        return Err(SkipReason::DeleteCollectionEmpty);
    }
    let list_kind = list.get("kind").and_then(Value::as_str);
    let item_kind = list_kind.and_then(|k| k.strip_suffix("List"));
    let api_version = list.get("apiVersion").and_then(Value::as_str);
    let request_received = request_received(event)?;
    let mut changes = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let mut item = item.clone();
        if let Value::Object(map) = &mut item {
            fill(map, "kind", item_kind);
            fill(map, "apiVersion", api_version);
        }
        let target = target_of(&item, object_ref)
            .map_err(|e| SkipReason::ResponseNotObject(format!("item {}: {e}", i + 1)))?;
        let kind = if deletion_pending(&item) {
            ChangeKind::DeletePending
        } else {
            ChangeKind::Delete
        };
        let resource_version = metadata_str(&item, "resourceVersion");
        changes.push(AuditChange {
            audit_id: event.audit_id().map(str::to_string),
            verb: Verb::DeleteCollection,
            kind,
            target,
            object: Some(item),
            resource_version,
            user: event.user.clone(),
            impersonated_user: event.impersonator().map(|_| event.author_user().clone()),
            request_received,
        });
    }
    Ok(changes)
}

fn scale(
    event: &AuditEvent,
    object_ref: &ObjectReference,
    verb: Verb,
) -> Result<ScaleChange, SkipReason> {
    let scale = event
        .response_object
        .as_ref()
        .ok_or(SkipReason::NoResponseObject)?;
    match scale.get("kind").and_then(Value::as_str) {
        Some("Scale") => {}
        Some("Status") => return Err(SkipReason::ResponseIsStatus),
        other => {
            return Err(SkipReason::ResponseNotObject(format!(
                "expected a Scale, found kind {}",
                other.unwrap_or("(none)")
            )));
        }
    }
    let spec = scale
        .get("spec")
        .and_then(Value::as_object)
        .ok_or_else(|| SkipReason::ResponseNotObject("Scale without spec".into()))?;
    // autoscaling/v1 omits `replicas: 0` (omitempty).
    let replicas = match spec.get("replicas") {
        None | Some(Value::Null) => 0,
        Some(v) => v
            .as_i64()
            .ok_or_else(|| SkipReason::ResponseNotObject(format!("Scale spec.replicas is {v}")))?,
    };
    let name = object_ref
        .name()
        .map(str::to_string)
        .or_else(|| metadata_str(scale, "name"))
        .ok_or(SkipReason::NoName)?;
    let mut parent = ChangeTarget::from_ref(object_ref, &name);
    if parent.namespace.is_none() {
        parent.namespace = metadata_str(scale, "namespace");
    }
    if let Some(uid) = metadata_str(scale, "uid") {
        parent.uid = Some(uid);
    }
    let resource_version = metadata_str(scale, "resourceVersion");
    if resource_version.is_some() && object_ref.resource_version() == resource_version.as_deref() {
        return Err(SkipReason::NoOp);
    }
    Ok(ScaleChange {
        audit_id: event.audit_id().map(str::to_string),
        verb,
        parent,
        replicas,
        resource_version,
        user: event.user.clone(),
        impersonated_user: event.impersonator().map(|_| event.author_user().clone()),
        request_received: request_received(event)?,
    })
}

fn change(
    event: &AuditEvent,
    verb: Verb,
    kind: ChangeKind,
    target: ChangeTarget,
    object: Option<Value>,
    resource_version: Option<String>,
) -> Result<AuditChange, SkipReason> {
    Ok(AuditChange {
        audit_id: event.audit_id().map(str::to_string),
        verb,
        kind,
        target,
        object,
        resource_version,
        user: event.user.clone(),
        impersonated_user: event.impersonator().map(|_| event.author_user().clone()),
        request_received: request_received(event)?,
    })
}

fn request_received(event: &AuditEvent) -> Result<Timestamp, SkipReason> {
    event.request_received().ok_or(SkipReason::NoTimestamp)
}

/// The identity of a response object, checked against the `objectRef`.
fn target_of(object: &Value, object_ref: &ObjectReference) -> Result<ChangeTarget, SkipReason> {
    if !object.is_object() {
        return Err(SkipReason::ResponseNotObject(format!(
            "found {}",
            crate::manifest::object::json_type(object)
        )));
    }
    if object.get("kind").and_then(Value::as_str) == Some("Status") {
        return Err(SkipReason::ResponseIsStatus);
    }
    let id = ObjectId::of(object).map_err(|e| SkipReason::ResponseNotObject(e.to_string()))?;
    if let Some(name) = object_ref.name()
        && name != id.name
    {
        return Err(SkipReason::ResponseNotObject(format!(
            "it is named {:?}, the request {name:?}",
            id.name
        )));
    }
    if let (Some(ns), Some(obj_ns)) = (object_ref.namespace(), id.namespace.as_deref())
        && ns != obj_ns
    {
        return Err(SkipReason::ResponseNotObject(format!(
            "it is in namespace {obj_ns:?}, the request in {ns:?}"
        )));
    }
    Ok(ChangeTarget {
        group: id.group,
        version: id.version,
        resource: object_ref.resource().unwrap_or_default().to_string(),
        kind: Some(id.kind),
        namespace: id
            .namespace
            .or_else(|| object_ref.namespace().map(str::to_string)),
        name: id.name,
        uid: metadata_str(object, "uid").or_else(|| object_ref.uid().map(str::to_string)),
    })
}

fn metadata_str(object: &Value, field: &str) -> Option<String> {
    object
        .get("metadata")?
        .get(field)?
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn has_finalizers(object: &Value) -> bool {
    object
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty())
}

fn grace_period(object: &Value) -> i64 {
    object
        .pointer("/metadata/deletionGracePeriodSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

fn has_deletion_timestamp(object: &Value) -> bool {
    object
        .pointer("/metadata/deletionTimestamp")
        .and_then(Value::as_str)
        .is_some_and(|t| !t.is_empty())
}

/// A delete response that is the object still stored: finalizers or a grace period hold it.
fn deletion_pending(object: &Value) -> bool {
    has_finalizers(object) || grace_period(object) > 0
}

/// An update response after which the API server deletes the object (its rule: deletion
/// requested, no finalizers left, no grace period).
fn deletion_finalized(object: &Value) -> bool {
    has_deletion_timestamp(object) && !has_finalizers(object) && grace_period(object) == 0
}

fn fill(map: &mut Map<String, Value>, key: &str, value: Option<&str>) {
    let missing = map
        .get(key)
        .and_then(Value::as_str)
        .is_none_or(str::is_empty);
    if let (true, Some(value)) = (missing, value) {
        map.insert(key.to_string(), Value::String(value.to_string()));
    }
}
