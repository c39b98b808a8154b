//! What the attribution webhooks accept, parsed and checked without I/O: an audit.k8s.io
//! `EventList` and its events as facts, an `AdmissionReview` as a fact and its response; each
//! refusal a 4xx naming what was wrong.

use super::facts::{Fact, FactIndex, FactKey, NameKey, Source, audit_facts};
use crate::audit::{AuditEvent, Classified, classify};
use crate::identity::UserInfo;
use crate::manifest::{content_hash, sanitize};
use axum::http::StatusCode;
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{Value, json};

/// A request refused with a 4xx: the status and a message naming what was wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct BadRequest {
    pub status: StatusCode,
    pub message: String,
}

impl BadRequest {
    pub(super) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub(super) fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }
}

// ---------------------------------------------------------------------------------------------
// Audit: parsing and ingesting

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventList {
    kind: Option<String>,
    api_version: Option<String>,
    items: Option<Vec<AuditEvent>>,
}

/// Parses an `audit.k8s.io/v1` `EventList` body. Refused (422): a kind other than `EventList`,
/// an apiVersion outside `audit.k8s.io`, no `items`, an item without `auditID`, `stage` or
/// `verb`; malformed JSON is a 400 naming the line and column.
pub fn parse_event_list(body: &[u8]) -> Result<Vec<AuditEvent>, BadRequest> {
    let list: EventList = serde_json::from_slice(body).map_err(|e| {
        BadRequest::new(
            StatusCode::BAD_REQUEST,
            format!("the body is not an audit EventList (JSON): {e}"),
        )
    })?;
    match list.kind.as_deref() {
        Some("EventList") => {}
        Some(other) => {
            return Err(BadRequest::invalid(format!(
                "kind is {other:?}, expected \"EventList\""
            )));
        }
        None => return Err(BadRequest::invalid("the EventList has no kind")),
    }
    match list.api_version.as_deref() {
        Some(v) if v.starts_with("audit.k8s.io/") => {}
        Some(other) => {
            return Err(BadRequest::invalid(format!(
                "apiVersion is {other:?}, expected audit.k8s.io/v1"
            )));
        }
        None => return Err(BadRequest::invalid("the EventList has no apiVersion")),
    }
    let items = list
        .items
        .ok_or_else(|| BadRequest::invalid("the EventList has no items"))?;
    for (i, event) in items.iter().enumerate() {
        let missing = if event.audit_id().is_none() {
            Some("auditID")
        } else if event.stage().is_none() {
            Some("stage")
        } else if event.verb().is_none() {
            Some("verb")
        } else {
            None
        };
        if let Some(field) = missing {
            return Err(BadRequest::invalid(format!(
                "items[{i}] has no {field} (an audit.k8s.io Event always has it)"
            )));
        }
    }
    Ok(items)
}

/// What [`ingest_events`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ingested {
    /// Events that were persisted changes (each gives one or more facts).
    pub used: u64,
    pub skipped: u64,
    /// Facts stored (a deletecollection gives one per member).
    pub facts: u64,
}

/// Classifies events and stores the facts of those that are persisted changes, in one insert.
pub fn ingest_events(index: &FactIndex, events: &[AuditEvent]) -> Ingested {
    let mut out = Ingested::default();
    let mut facts = Vec::new();
    for event in events {
        let classified = classify(event);
        if matches!(classified, Classified::Skipped(_)) {
            out.skipped += 1;
            continue;
        }
        let these = audit_facts(&classified);
        out.used += 1;
        out.facts += these.len() as u64;
        facts.extend(these);
    }
    index.insert_many(facts);
    out
}

// ---------------------------------------------------------------------------------------------
// Admission

/// `admission.k8s.io/v1` `AdmissionReview`, the fields attribution reads.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AdmissionReview {
    pub api_version: Option<String>,
    pub kind: Option<String>,
    pub request: Option<AdmissionRequest>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AdmissionRequest {
    pub uid: Option<String>,
    pub operation: Option<String>,
    #[serde(deserialize_with = "crate::identity::null_default")]
    pub user_info: UserInfo,
    pub object: Option<Value>,
    pub old_object: Option<Value>,
    pub dry_run: Option<bool>,
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub resource: Option<GroupVersionResource>,
    pub sub_resource: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct GroupVersionResource {
    pub group: String,
    pub version: String,
    pub resource: String,
}

/// Parses an AdmissionReview and returns it with its request uid. Refused: malformed JSON
/// (400), a kind other than `AdmissionReview`, no `request`, no `request.uid` (422).
pub fn parse_admission_review(body: &[u8]) -> Result<(AdmissionReview, String), BadRequest> {
    let review: AdmissionReview = serde_json::from_slice(body).map_err(|e| {
        BadRequest::new(
            StatusCode::BAD_REQUEST,
            format!("the body is not an AdmissionReview (JSON): {e}"),
        )
    })?;
    if let Some(kind) = review.kind.as_deref().filter(|k| *k != "AdmissionReview") {
        return Err(BadRequest::invalid(format!(
            "kind is {kind:?}, expected \"AdmissionReview\""
        )));
    }
    let uid = review
        .request
        .as_ref()
        .ok_or_else(|| BadRequest::invalid("the AdmissionReview has no request"))?
        .uid
        .clone()
        .filter(|u| !u.is_empty())
        .ok_or_else(|| BadRequest::invalid("the AdmissionReview request has no uid"))?;
    Ok((review, uid))
}

/// Why an admission request gave no fact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdmissionIgnored {
    DryRun,
    /// A subresource (status, scale, ...): the stored parent's content is not in the request.
    Subresource,
    /// CONNECT, or an operation the request does not name.
    Operation,
    /// A create or update without `object`, or a delete without any name or uid.
    NoObject,
}

/// The fact of an admission request (not stored): the user and `received` under the content
/// hash of the object as it will be stored (CREATE, UPDATE) or the uid and name (DELETE).
pub fn admission_fact(
    request: &AdmissionRequest,
    received: Timestamp,
) -> Result<(Fact, Vec<FactKey>), AdmissionIgnored> {
    if request.dry_run == Some(true) {
        return Err(AdmissionIgnored::DryRun);
    }
    if request
        .sub_resource
        .as_deref()
        .is_some_and(|s| !s.is_empty())
    {
        return Err(AdmissionIgnored::Subresource);
    }
    let fact = Fact {
        // The API server gives admission the impersonated user; who impersonated is not there.
        user: request.user_info.clone(),
        impersonator: None,
        time: received,
        source: Source::Admission,
        audit_id: None,
    };
    let mut keys = Vec::new();
    match request.operation.as_deref() {
        Some("CREATE" | "UPDATE") => {
            let Some(object) = request.object.as_ref().filter(|o| o.is_object()) else {
                return Err(AdmissionIgnored::NoObject);
            };
            let mut object = object.clone();
            sanitize(&mut object);
            keys.push(FactKey::Hash(content_hash(&object)));
        }
        Some("DELETE") => {
            let old = request.old_object.as_ref();
            let uid = old
                .and_then(|o| o.pointer("/metadata/uid"))
                .and_then(Value::as_str)
                .filter(|u| !u.is_empty());
            if let Some(uid) = uid {
                keys.push(FactKey::DeleteUid(uid.to_string()));
            }
            let name = request.name.clone().filter(|n| !n.is_empty()).or_else(|| {
                old.and_then(|o| o.pointer("/metadata/name"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            });
            if let (Some(name), Some(gvr)) = (name, request.resource.as_ref()) {
                keys.push(FactKey::DeleteName(NameKey {
                    group: gvr.group.clone(),
                    resource: gvr.resource.clone(),
                    namespace: request.namespace.clone().filter(|n| !n.is_empty()),
                    name,
                }));
            }
            if keys.is_empty() {
                return Err(AdmissionIgnored::NoObject);
            }
        }
        _ => return Err(AdmissionIgnored::Operation),
    }
    Ok((fact, keys))
}

/// The answer to every AdmissionReview: allowed, with the request's uid.
pub fn admission_response(uid: &str) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": uid, "allowed": true}
    })
}
