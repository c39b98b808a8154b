//! The audit.k8s.io Event (v1 and v1beta1) as serde types, read leniently: timestamps stay
//! strings until asked for (a placeholder like `<ts>` never fails a read), `null` reads as empty.

use crate::identity::{UserInfo, null_default};
use jiff::Timestamp;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// One audit event. Every field is optional on reading; [`super::classify`] decides what a
/// missing field means. Unknown fields (v1beta1 `metadata`, ...) are ignored.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AuditEvent {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    #[serde(
        rename = "auditID",
        deserialize_with = "lenient_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub audit_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    #[serde(rename = "requestURI", skip_serializing_if = "Option::is_none")]
    pub request_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verb: Option<String>,
    #[serde(deserialize_with = "null_default")]
    pub user: UserInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub impersonated_user: Option<UserInfo>,
    #[serde(
        rename = "sourceIPs",
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub source_ips: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_ref: Option<ObjectReference>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_status: Option<ResponseStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_object: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_object: Option<Value>,
    #[serde(
        deserialize_with = "lenient_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub request_received_timestamp: Option<String>,
    #[serde(
        deserialize_with = "lenient_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub stage_timestamp: Option<String>,
    /// v1beta1 only (removed in v1): when the request reached the API server.
    #[serde(
        deserialize_with = "lenient_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub timestamp: Option<String>,
    #[serde(
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub annotations: BTreeMap<String, String>,
}

/// `objectRef`: what the request addressed. Empty strings mean "not set", as the API server and
/// hand-written captures both use them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ObjectReference {
    #[serde(
        deserialize_with = "lenient_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub resource: Option<String>,
    #[serde(
        deserialize_with = "lenient_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub namespace: Option<String>,
    #[serde(
        deserialize_with = "lenient_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub name: Option<String>,
    #[serde(
        deserialize_with = "lenient_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub uid: Option<String>,
    #[serde(
        deserialize_with = "lenient_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub api_group: Option<String>,
    #[serde(
        deserialize_with = "lenient_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub api_version: Option<String>,
    #[serde(
        deserialize_with = "lenient_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub resource_version: Option<String>,
    #[serde(
        deserialize_with = "lenient_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub subresource: Option<String>,
}

impl ObjectReference {
    pub fn resource(&self) -> Option<&str> {
        non_empty(&self.resource)
    }
    pub fn namespace(&self) -> Option<&str> {
        non_empty(&self.namespace)
    }
    pub fn name(&self) -> Option<&str> {
        non_empty(&self.name)
    }
    pub fn uid(&self) -> Option<&str> {
        non_empty(&self.uid)
    }
    pub fn resource_version(&self) -> Option<&str> {
        non_empty(&self.resource_version)
    }
    pub fn subresource(&self) -> Option<&str> {
        non_empty(&self.subresource)
    }

    /// `(group, version)`; the core group is `""`. An `apiVersion` written as `group/version`
    /// (seen in old captures) is split.
    pub fn group_version(&self) -> (String, String) {
        let version = non_empty(&self.api_version).unwrap_or_default();
        match version.split_once('/') {
            Some((group, version)) => (group.to_string(), version.to_string()),
            None => (
                non_empty(&self.api_group).unwrap_or_default().to_string(),
                version.to_string(),
            ),
        }
    }
}

/// `responseStatus`: the HTTP outcome (a `metav1.Status` without its list metadata).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ResponseStatus {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<i64>,
    #[serde(
        deserialize_with = "lenient_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub status: Option<String>,
    #[serde(
        deserialize_with = "lenient_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub reason: Option<String>,
    #[serde(
        deserialize_with = "lenient_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

impl AuditEvent {
    pub fn stage(&self) -> Option<&str> {
        non_empty(&self.stage)
    }
    pub fn verb(&self) -> Option<&str> {
        non_empty(&self.verb)
    }
    pub fn audit_id(&self) -> Option<&str> {
        non_empty(&self.audit_id)
    }
    pub fn response_code(&self) -> Option<i64> {
        self.response_status.as_ref()?.code
    }

    /// The user the request acted as: the impersonated user when there was impersonation,
    /// otherwise the authenticated user. This is the author of the change.
    pub fn author_user(&self) -> &UserInfo {
        self.impersonated()
            .map(|(impersonated, _)| impersonated)
            .unwrap_or(&self.user)
    }

    /// The authenticated user who impersonated [`Self::author_user`], when there was one.
    pub fn impersonator(&self) -> Option<&UserInfo> {
        self.impersonated().map(|(_, real)| real)
    }

    fn impersonated(&self) -> Option<(&UserInfo, &UserInfo)> {
        self.impersonated_user
            .as_ref()
            .filter(|u| !u.username.is_empty())
            .map(|u| (u, &self.user))
    }

    /// When the request was received: `requestReceivedTimestamp`, else the v1beta1 `timestamp`
    /// (same meaning, second precision), else `stageTimestamp` (when the stage was reached,
    /// milliseconds later). `None` when none parses (missing, or a placeholder like `<ts>`).
    pub fn request_received(&self) -> Option<Timestamp> {
        [
            &self.request_received_timestamp,
            &self.timestamp,
            &self.stage_timestamp,
        ]
        .into_iter()
        .find_map(|t| parse_timestamp(t.as_deref()?))
    }

    /// True when the request asked not to persist: a non-empty `dryRun` query parameter in the
    /// request URI, or a non-empty `dryRun` list in the options body (DeleteOptions carries it
    /// there for deletes).
    pub fn is_dry_run(&self) -> bool {
        let in_query = self
            .request_uri
            .as_deref()
            .is_some_and(|uri| query_has_value(uri, "dryRun"));
        let in_options = self.request_object.as_ref().is_some_and(|body| {
            let options_kind = body
                .get("kind")
                .and_then(Value::as_str)
                .is_some_and(|k| k.ends_with("Options"));
            options_kind
                && match body.get("dryRun") {
                    Some(Value::Array(values)) => values
                        .iter()
                        .any(|v| v.as_str().is_some_and(|s| !s.is_empty())),
                    Some(Value::String(s)) => !s.is_empty(),
                    _ => false,
                }
        });
        in_query || in_options
    }
}

/// An RFC 3339 timestamp, or `None` for anything else (placeholders included).
pub fn parse_timestamp(text: &str) -> Option<Timestamp> {
    text.trim().parse::<Timestamp>().ok()
}

/// True when the query of `uri` has `key` with a non-empty value (percent-decoded).
fn query_has_value(uri: &str, key: &str) -> bool {
    let Some((_, query)) = uri.split_once('?') else {
        return false;
    };
    let query = query.split('#').next().unwrap_or_default();
    query.split('&').any(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        decode(k) == key && !decode(v).trim().is_empty()
    })
}

fn decode(s: &str) -> String {
    let s = s.replace('+', " ");
    percent_encoding::percent_decode_str(&s)
        .decode_utf8_lossy()
        .into_owned()
}

pub(crate) fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

/// Reads a string; numbers and booleans (unquoted in hand-written YAML) become their text,
/// `null` is `None`. Objects and lists are an error.
fn lenient_string<'de, D>(deserializer: D) -> Result<Option<String>, D::Error>
where
    D: Deserializer<'de>,
{
    match Option::<Value>::deserialize(deserializer)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(Value::Bool(b)) => Ok(Some(b.to_string())),
        Some(other) => Err(serde::de::Error::custom(format!(
            "expected a string, found {}",
            crate::manifest::object::json_type(&other)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(v: Value) -> AuditEvent {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn timestamps_fall_back_and_placeholders_are_none() {
        let e = event(json!({"requestReceivedTimestamp": "2018-10-26T13:13:03.539180Z"}));
        assert_eq!(
            e.request_received().unwrap().to_string(),
            "2018-10-26T13:13:03.53918Z"
        );
        let v1beta1 = event(json!({"timestamp": "2017-09-11T19:55:05Z"}));
        assert_eq!(
            v1beta1.request_received().unwrap().to_string(),
            "2017-09-11T19:55:05Z"
        );
        let stage = event(json!({"requestReceivedTimestamp": "<ts>",
            "stageTimestamp": "2026-06-02T11:16:29.174537Z"}));
        assert_eq!(
            stage.request_received().unwrap().to_string(),
            "2026-06-02T11:16:29.174537Z"
        );
        let placeholder =
            event(json!({"requestReceivedTimestamp": "<ts>", "stageTimestamp": "<ts>"}));
        assert_eq!(placeholder.request_received(), None);
        assert_eq!(AuditEvent::default().request_received(), None);
    }

    #[test]
    fn dry_run_from_query_and_options() {
        let dry = |uri: &str| event(json!({ "requestURI": uri })).is_dry_run();
        assert!(dry("/api/v1/namespaces/a/configmaps?dryRun=All"));
        assert!(dry("/api/v1/x/y?fieldManager=k&dryRun=All&force=true"));
        assert!(dry("/api/v1/x/y?dry%52un=All"));
        assert!(!dry("/api/v1/x/y?dryRun="));
        assert!(!dry("/api/v1/x/y?fieldManager=dryRun"));
        assert!(!dry("/api/v1/x/dryRun=All"));
        let body = event(json!({"requestURI": "/api/v1/x/y",
            "requestObject": {"kind": "DeleteOptions", "apiVersion": "v1", "dryRun": ["All"]}}));
        assert!(body.is_dry_run());
        let not_options = event(json!({"requestURI": "/api/v1/x/y",
            "requestObject": {"kind": "Widget", "dryRun": ["All"]}}));
        assert!(!not_options.is_dry_run());
    }

    #[test]
    fn impersonation_picks_the_impersonated_user() {
        let e = event(json!({"user": {"username": "system:admin"},
            "impersonatedUser": {"username": "bob", "groups": ["system:authenticated"]}}));
        assert_eq!(e.author_user().username, "bob");
        assert_eq!(e.impersonator().unwrap().username, "system:admin");
        let plain = event(json!({"user": {"username": "alice"}, "impersonatedUser": null}));
        assert_eq!(plain.author_user().username, "alice");
        assert!(plain.impersonator().is_none());
    }

    #[test]
    fn lenient_fields() {
        let e = event(json!({"auditID": 12, "user": null, "sourceIPs": null,
            "objectRef": {"name": 123, "resourceVersion": 456, "apiVersion": "extensions/v1beta1"}}));
        assert_eq!(e.audit_id(), Some("12"));
        let r = e.object_ref.unwrap();
        assert_eq!(r.name(), Some("123"));
        assert_eq!(r.resource_version(), Some("456"));
        assert_eq!(
            r.group_version(),
            ("extensions".to_string(), "v1beta1".to_string())
        );
        assert!(serde_json::from_value::<AuditEvent>(json!({"verb": {"a": 1}})).is_err());
    }
}
