//! Label selectors: checking a `LabelSelector` once (errors name the field and the bad
//! requirement) and turning it into kube's `Selector`, which does the matching.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::core::{Selector, SelectorExt};
use std::collections::BTreeMap;

/// A label selector the agent cannot evaluate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct SelectorError {
    /// Where it is, e.g. `spec.objectSelector.matchExpressions[1]`.
    pub field: String,
    pub problem: String,
}

/// Checks `selector` (at `field`) and converts it. An empty selector selects everything.
pub fn parse(field: &str, selector: &LabelSelector) -> Result<Selector, SelectorError> {
    for (i, req) in selector.match_expressions.iter().flatten().enumerate() {
        let fail = |problem: String| SelectorError {
            field: format!("{field}.matchExpressions[{i}]"),
            problem,
        };
        let values = req.values.as_deref().unwrap_or_default();
        match req.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => {
                return Err(fail(format!(
                    "operator {} on key {:?} needs at least one value",
                    req.operator, req.key
                )));
            }
            "Exists" | "DoesNotExist" if !values.is_empty() => {
                return Err(fail(format!(
                    "operator {} on key {:?} takes no values",
                    req.operator, req.key
                )));
            }
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => {
                return Err(fail(format!(
                    "operator {other:?} is not one of In, NotIn, Exists, DoesNotExist"
                )));
            }
        }
    }
    Selector::try_from(selector.clone()).map_err(|e| SelectorError {
        field: field.to_string(),
        problem: e.to_string(),
    })
}

/// True when `labels` satisfy `selector`.
pub fn matches(selector: &Selector, labels: &BTreeMap<String, String>) -> bool {
    selector.matches(labels)
}

/// The selector in `kubectl` syntax, or `everything` when it is empty.
pub fn describe(selector: &Selector) -> String {
    if selector.selects_all() {
        "everything".to_string()
    } else {
        selector.to_string()
    }
}

/// Labels as `k=v,k2=v2`, or `no labels`.
pub fn describe_labels(labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return "no labels".to_string();
    }
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sel(value: serde_json::Value) -> LabelSelector {
        serde_json::from_value(value).unwrap_or_default()
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn match_labels_and_expressions() {
        let selector = parse(
            "s",
            &sel(json!({
                "matchLabels": {"env": "prod"},
                "matchExpressions": [
                    {"key": "tier", "operator": "In", "values": ["web", "api"]},
                    {"key": "legacy", "operator": "DoesNotExist"},
                    {"key": "team", "operator": "NotIn", "values": ["x"]},
                    {"key": "owner", "operator": "Exists"}
                ]
            })),
        )
        .unwrap();
        let table: &[(&[(&str, &str)], bool)] = &[
            (&[("env", "prod"), ("tier", "web"), ("owner", "a")], true),
            (
                &[
                    ("env", "prod"),
                    ("tier", "api"),
                    ("owner", "a"),
                    ("team", "y"),
                ],
                true,
            ),
            (&[("env", "dev"), ("tier", "web"), ("owner", "a")], false),
            (&[("env", "prod"), ("tier", "db"), ("owner", "a")], false),
            (
                &[
                    ("env", "prod"),
                    ("tier", "web"),
                    ("owner", "a"),
                    ("legacy", "1"),
                ],
                false,
            ),
            (
                &[
                    ("env", "prod"),
                    ("tier", "web"),
                    ("owner", "a"),
                    ("team", "x"),
                ],
                false,
            ),
            (&[("env", "prod"), ("tier", "web")], false),
        ];
        for (l, want) in table {
            assert_eq!(matches(&selector, &labels(l)), *want, "{l:?}");
        }
        assert!(matches(&parse("s", &sel(json!({}))).unwrap(), &labels(&[])));
    }

    #[test]
    fn bad_requirements_name_field_and_problem() {
        let table = [
            (
                json!({"key": "a", "operator": "Equals", "values": ["x"]}),
                "\"Equals\"",
            ),
            (
                json!({"key": "a", "operator": "In", "values": []}),
                "at least one value",
            ),
            (json!({"key": "a", "operator": "In"}), "at least one value"),
            (
                json!({"key": "a", "operator": "Exists", "values": ["x"]}),
                "takes no values",
            ),
        ];
        for (req, want) in table {
            let err = parse(
                "spec.objectSelector",
                &sel(json!({"matchExpressions": [{"key": "ok", "operator": "Exists"}, req]})),
            )
            .unwrap_err();
            assert_eq!(err.field, "spec.objectSelector.matchExpressions[1]");
            assert!(err.problem.contains(want), "{err}");
        }
    }
}
