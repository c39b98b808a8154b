//! `exclusions`: what a user keeps out of Git on top of the built-in rules — objects by name
//! pattern, label or annotation selector; fields by JSON pointer and by the field managers that
//! own them — and its compilation into [`UserExclusions`].

use crate::manifest::user_exclude::{FieldRule, ObjectRule, UserExclusions};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Objects and fields never written.
#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Exclusions {
    /// Objects never written; an object matching any entry is skipped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub objects: Vec<ObjectExclusion>,
    /// Fields never written, nor hashed, nor compared: a change only there makes no commit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub fields: Vec<FieldExclusion>,
}

/// Objects matching every condition given (at least one).
#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ObjectExclusion {
    /// Name pattern: `*` matches any run of characters, `?` one character.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub name: Option<String>,
    /// Objects whose labels match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<LabelSelector>,
    /// Objects whose annotations match (a label selector applied to annotations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotation_selector: Option<LabelSelector>,
}

/// Fields of objects of `group`/`kind` (any when not given), as Argo CD's `ignoreDifferences`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FieldExclusion {
    /// API group; `""` is the core group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Kind, e.g. `Deployment`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// JSON pointers (RFC 6901) of fields, e.g. `/spec/replicas`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[schemars(extend("items" = {"type": "string", "pattern": "^(/.*)?$"}))]
    pub json_pointers: Vec<String>,
    /// Field managers (as `metadata.managedFields[].manager` names them, e.g.
    /// `kube-controller-manager` for a HorizontalPodAutoscaler's scaling): the fields they own
    /// are left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub managed_fields_managers: Vec<String>,
}

/// An exclusion the agent cannot evaluate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct ExclusionError {
    /// Where it is, e.g. `spec.exclusions.objects[0].labelSelector`.
    pub field: String,
    pub problem: String,
}

impl Exclusions {
    /// Compiles the exclusions found at `at` (e.g. `spec.exclusions`); rule ids are named
    /// `<origin> <at>.objects[i]` / `<origin> <at>.fields[i]`.
    pub fn compile(&self, origin: &str, at: &str) -> Result<UserExclusions, ExclusionError> {
        let fail = |field: String, problem: String| ExclusionError { field, problem };
        let selector = |field: String, s: &Option<LabelSelector>| {
            s.clone()
                .map(|s| kube::core::Selector::try_from(s).map_err(|e| fail(field, e.to_string())))
                .transpose()
        };
        let mut out = UserExclusions::default();
        for (i, o) in self.objects.iter().enumerate() {
            let field = format!("{at}.objects[{i}]");
            if o.name.is_none() && o.label_selector.is_none() && o.annotation_selector.is_none() {
                return Err(fail(
                    field,
                    "give name, labelSelector or annotationSelector".into(),
                ));
            }
            out.objects.push(ObjectRule {
                id: format!("{origin} {field}"),
                name: o.name.clone(),
                labels: selector(format!("{field}.labelSelector"), &o.label_selector)?,
                annotations: selector(
                    format!("{field}.annotationSelector"),
                    &o.annotation_selector,
                )?,
            });
        }
        for (i, f) in self.fields.iter().enumerate() {
            let field = format!("{at}.fields[{i}]");
            if f.json_pointers.is_empty() && f.managed_fields_managers.is_empty() {
                return Err(fail(
                    field,
                    "give jsonPointers or managedFieldsManagers".into(),
                ));
            }
            if let Some(p) = f.json_pointers.iter().find(|p| !p.starts_with('/')) {
                return Err(fail(
                    format!("{field}.jsonPointers"),
                    format!("{p:?} is not a JSON pointer (starts with /)"),
                ));
            }
            out.fields.push(FieldRule {
                id: format!("{origin} {field}"),
                group: f.group.clone(),
                kind: f.kind.clone(),
                json_pointers: f.json_pointers.clone(),
                managers: f.managed_fields_managers.clone(),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn compiles_with_rule_ids_and_refuses_what_cannot_match() {
        let e: Exclusions = serde_json::from_value(json!({
            "objects": [{"name": "tmp-*", "labelSelector": {"matchLabels": {"a": "b"}}}],
            "fields": [{"group": "apps", "kind": "Deployment", "jsonPointers": ["/spec/replicas"],
                "managedFieldsManagers": ["kube-controller-manager"]}]}))
        .expect("reads");
        let c = e
            .compile("GitDestination shop/dev", "spec.exclusions")
            .expect("compiles");
        assert_eq!(
            c.objects[0].id,
            "GitDestination shop/dev spec.exclusions.objects[0]"
        );
        assert_eq!(c.fields[0].managers, ["kube-controller-manager"]);
        for bad in [
            json!({"objects": [{}]}),
            json!({"fields": [{"kind": "Deployment"}]}),
            json!({"fields": [{"jsonPointers": ["spec/replicas"]}]}),
            json!({"objects": [{"labelSelector": {"matchExpressions": [
                {"key": "a", "operator": "Sometimes"}]}}]}),
        ] {
            let e: Exclusions = serde_json::from_value(bad.clone()).expect("reads");
            assert!(e.compile("x", "spec.exclusions").is_err(), "{bad}");
        }
    }
}
