//! Exclusions a user configures (GitDestination `spec.exclusions`, `sanitize`/`diff
//! --exclusions FILE`): whole objects by name pattern, label selector or annotation selector;
//! fields by JSON pointer (optionally only for a group and kind) and by the field managers that
//! own them (`managedFieldsManagers`, as Argo CD's `ignoreDifferences` has it: the fields are
//! read from the live object's `metadata.managedFields` `fieldsV1`). Excluded fields are
//! removed before hashing, writing and equivalence. Every rule has an id that `diff`, logs and
//! metrics name.

use kube::core::{Selector, SelectorExt};
use serde_json::Value;
use std::collections::BTreeMap;

/// The exclusions a user configured, compiled.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserExclusions {
    pub objects: Vec<ObjectRule>,
    pub fields: Vec<FieldRule>,
}

/// Objects never written: every condition given must hold (an empty rule matches nothing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectRule {
    /// Names it in `diff`, logs and metrics, e.g. `exclusions.objects[0]`.
    pub id: String,
    /// A name pattern: `*` any run of characters, `?` one.
    pub name: Option<String>,
    pub labels: Option<Selector>,
    pub annotations: Option<Selector>,
}

/// Fields never written: at these JSON pointers, or owned by these field managers; for
/// objects of `group`/`kind` when given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldRule {
    pub id: String,
    /// API group (`""` for the core group); `None`: any.
    pub group: Option<String>,
    /// Kind; `None`: any.
    pub kind: Option<String>,
    pub json_pointers: Vec<String>,
    pub managers: Vec<String>,
}

/// One field an exclusion removes: where, and which rule said so.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ExcludedField {
    pub pointer: String,
    pub rule: String,
}

impl UserExclusions {
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty() && self.fields.is_empty()
    }

    /// All rules of `parts`, in order (an object or field any of them excludes is excluded).
    pub fn merged<'a>(parts: impl IntoIterator<Item = &'a UserExclusions>) -> Self {
        let mut out = Self::default();
        for part in parts {
            out.objects.extend(part.objects.iter().cloned());
            out.fields.extend(part.fields.iter().cloned());
        }
        out
    }

    /// The first object rule `obj` matches.
    pub fn object_rule(&self, obj: &Value) -> Option<&ObjectRule> {
        self.objects.iter().find(|r| r.matches(obj))
    }

    /// The fields of `live` (as the API server sent it, with `managedFields`) that the rules
    /// exclude and that it has, deepest array items last-first so they can be removed in order.
    pub fn fields_of(&self, live: &Value) -> Vec<ExcludedField> {
        let (group, kind) = group_kind(live);
        let mut out = Vec::new();
        for rule in &self.fields {
            if rule.group.as_deref().is_some_and(|g| g != group)
                || rule.kind.as_deref().is_some_and(|k| k != kind)
            {
                continue;
            }
            for pointer in &rule.json_pointers {
                if live.pointer(pointer).is_some() {
                    out.push(ExcludedField {
                        pointer: pointer.clone(),
                        rule: format!("{} jsonPointers {pointer}", rule.id),
                    });
                }
            }
            if rule.managers.is_empty() {
                continue;
            }
            for entry in live
                .pointer("/metadata/managedFields")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let Some(manager) = entry.get("manager").and_then(Value::as_str) else {
                    continue;
                };
                if !rule.managers.iter().any(|m| m == manager) {
                    continue;
                }
                let Some(fields) = entry.get("fieldsV1") else {
                    continue;
                };
                let mut owned = Vec::new();
                owned_leaves(fields, live, String::new(), &mut owned);
                out.extend(owned.into_iter().map(|pointer| ExcludedField {
                    pointer,
                    rule: format!("{} managedFieldsManagers {manager}", rule.id),
                }));
            }
        }
        out.sort_by(|a, b| pointer_order(&b.pointer, &a.pointer));
        out.dedup_by(|a, b| a.pointer == b.pointer);
        out
    }
}

impl ObjectRule {
    fn matches(&self, obj: &Value) -> bool {
        if self.name.is_none() && self.labels.is_none() && self.annotations.is_none() {
            return false;
        }
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let map = |field: &str| -> BTreeMap<String, String> {
            obj.pointer(&format!("/metadata/{field}"))
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                        .collect()
                })
                .unwrap_or_default()
        };
        self.name.as_deref().is_none_or(|p| glob(p, name))
            && self
                .labels
                .as_ref()
                .is_none_or(|s| s.matches(&map("labels")))
            && self
                .annotations
                .as_ref()
                .is_none_or(|s| s.matches(&map("annotations")))
    }
}

/// Removes `fields` from `doc` (pointers into it); returns those it held.
pub fn remove_fields(doc: &mut Value, fields: &[ExcludedField]) -> Vec<ExcludedField> {
    let mut removed = Vec::new();
    for field in fields {
        let Some((parent, last)) = field.pointer.rsplit_once('/') else {
            continue;
        };
        let key = last.replace("~1", "/").replace("~0", "~");
        let gone = match doc.pointer_mut(parent) {
            Some(Value::Object(map)) => map.remove(&key).is_some(),
            Some(Value::Array(items)) => match key.parse::<usize>() {
                Ok(i) if i < items.len() => {
                    items.remove(i);
                    true
                }
                _ => false,
            },
            _ => false,
        };
        if gone {
            removed.push(field.clone());
        }
    }
    removed
}

/// `*` matches any run of characters, `?` one character; everything else itself.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

fn group_kind(obj: &Value) -> (&str, &str) {
    let api = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let group = api.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
    (group, obj.get("kind").and_then(Value::as_str).unwrap_or(""))
}

/// Pointers sorted so that removing them in order never shifts a later one: array items by
/// descending index under the same parent.
fn pointer_order(a: &str, b: &str) -> std::cmp::Ordering {
    let seg = |p: &str| -> Vec<(Option<usize>, String)> {
        p.split('/')
            .map(|s| (s.parse().ok(), s.to_string()))
            .collect()
    };
    seg(a).cmp(&seg(b))
}

/// The leaves a `fieldsV1` set names in `value`, as JSON pointers: `f:<name>` fields,
/// `k:<json>` list items by key, `v:<json>` set items by value, `i:<n>` items by index.
fn owned_leaves(set: &Value, value: &Value, at: String, out: &mut Vec<String>) {
    let Some(set) = set.as_object() else {
        return;
    };
    for (key, child) in set {
        let found = if let Some(name) = key.strip_prefix("f:") {
            value.get(name).map(|v| (escape(name), v))
        } else if let Some(json) = key.strip_prefix("k:") {
            let Ok(Value::Object(want)) = serde_json::from_str::<Value>(json) else {
                continue;
            };
            value.as_array().and_then(|items| {
                items.iter().enumerate().find_map(|(i, item)| {
                    want.iter()
                        .all(|(k, v)| item.get(k) == Some(v))
                        .then(|| (i.to_string(), item))
                })
            })
        } else if let Some(json) = key.strip_prefix("v:") {
            let Ok(want) = serde_json::from_str::<Value>(json) else {
                continue;
            };
            value.as_array().and_then(|items| {
                items
                    .iter()
                    .position(|item| *item == want)
                    .map(|i| (i.to_string(), &items[i]))
            })
        } else if let Some(index) = key.strip_prefix("i:") {
            index
                .parse::<usize>()
                .ok()
                .and_then(|i| value.get(i).map(|v| (i.to_string(), v)))
        } else {
            continue; // `.`: the node itself, owned along with its members
        };
        let Some((segment, child_value)) = found else {
            continue;
        };
        let pointer = format!("{at}/{segment}");
        let members = child
            .as_object()
            .is_some_and(|m| m.keys().any(|k| k != "."));
        if members {
            owned_leaves(child, child_value, pointer, out);
        } else {
            out.push(pointer);
        }
    }
}

fn escape(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(replicas_manager: &str) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop", "labels": {"tier": "cache"},
                "annotations": {"team": "shop"},
                "managedFields": [
                    {"manager": "kubectl", "operation": "Apply", "fieldsType": "FieldsV1",
                     "fieldsV1": {"f:spec": {"f:template": {"f:spec": {"f:containers": {
                         "k:{\"name\":\"web\"}": {".": {}, "f:image": {}, "f:name": {}}}}}}}},
                    {"manager": replicas_manager, "operation": "Update", "subresource": "scale",
                     "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}}]},
            "spec": {"replicas": 5, "template": {"spec": {"containers": [
                {"name": "sidecar", "image": "envoy"}, {"name": "web", "image": "nginx"}]}}}})
    }

    fn fields(rule: FieldRule) -> UserExclusions {
        UserExclusions {
            objects: vec![],
            fields: vec![rule],
        }
    }

    #[test]
    fn fields_owned_by_a_manager_are_found_through_managed_fields() {
        let hpa = fields(FieldRule {
            id: "exclusions.fields[0]".into(),
            group: Some("apps".into()),
            kind: Some("Deployment".into()),
            json_pointers: vec![],
            managers: vec!["kube-controller-manager".into()],
        });
        let found = hpa.fields_of(&deployment("kube-controller-manager"));
        assert_eq!(
            found,
            vec![ExcludedField {
                pointer: "/spec/replicas".into(),
                rule: "exclusions.fields[0] managedFieldsManagers kube-controller-manager".into()
            }]
        );
        // A person scaled it: not excluded.
        assert!(hpa.fields_of(&deployment("kubectl-scale")).is_empty());
        // Keyed list items resolve to their index.
        let kubectl = fields(FieldRule {
            id: "r".into(),
            group: None,
            kind: None,
            json_pointers: vec![],
            managers: vec!["kubectl".into()],
        });
        let mut pointers: Vec<String> = kubectl
            .fields_of(&deployment("x"))
            .into_iter()
            .map(|f| f.pointer)
            .collect();
        pointers.sort();
        assert_eq!(
            pointers,
            [
                "/spec/template/spec/containers/1/image",
                "/spec/template/spec/containers/1/name"
            ]
        );
    }

    #[test]
    fn json_pointers_apply_per_kind_and_are_removed() {
        let rule = fields(FieldRule {
            id: "exclusions.fields[1]".into(),
            group: Some("apps".into()),
            kind: Some("Deployment".into()),
            json_pointers: vec!["/spec/replicas".into(), "/metadata/annotations/team".into()],
            managers: vec![],
        });
        let mut live = deployment("x");
        let found = rule.fields_of(&live);
        assert_eq!(found.len(), 2);
        let removed = remove_fields(&mut live, &found);
        assert_eq!(removed.len(), 2);
        assert!(live.pointer("/spec/replicas").is_none());
        assert!(live.pointer("/metadata/annotations/team").is_none());
        let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "spec": {"replicas": 1}});
        assert!(rule.fields_of(&cm).is_empty(), "another kind");
        assert!(remove_fields(&mut cm, &[]).is_empty());
    }

    #[test]
    fn objects_by_name_pattern_labels_and_annotations() {
        // `key=value` as matchLabels, a bare `key` as an Exists expression.
        let selector = |s: &str| -> Selector {
            let sel: k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector =
                serde_json::from_value(match s.split_once('=') {
                    Some((k, v)) => json!({"matchLabels": {k: v}}),
                    None => json!({"matchExpressions": [{"key": s, "operator": "Exists"}]}),
                })
                .expect("selector");
            Selector::try_from(sel).expect("valid")
        };
        let rule =
            |name: Option<&str>, labels: Option<&str>, annotations: Option<&str>| UserExclusions {
                objects: vec![ObjectRule {
                    id: "exclusions.objects[0]".into(),
                    name: name.map(str::to_string),
                    labels: labels.map(selector),
                    annotations: annotations.map(selector),
                }],
                fields: vec![],
            };
        let obj = deployment("x");
        assert!(rule(Some("w?b"), None, None).object_rule(&obj).is_some());
        assert!(rule(Some("web-*"), None, None).object_rule(&obj).is_none());
        assert!(
            rule(None, Some("tier=cache"), None)
                .object_rule(&obj)
                .is_some()
        );
        assert!(
            rule(None, Some("tier=web"), None)
                .object_rule(&obj)
                .is_none()
        );
        assert!(rule(None, None, Some("team")).object_rule(&obj).is_some());
        assert!(
            rule(Some("*"), Some("tier=cache"), Some("team=other"))
                .object_rule(&obj)
                .is_none()
        );
        assert!(
            rule(None, None, None).object_rule(&obj).is_none(),
            "empty rule"
        );
    }

    #[test]
    fn glob_patterns() {
        for (p, t, want) in [
            ("*", "", true),
            ("tmp-*", "tmp-1", true),
            ("tmp-*", "tmp", false),
            ("*-canary", "web-canary", true),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("a*b*c", "axxbyyc", true),
        ] {
            assert_eq!(glob(p, t), want, "{p} {t}");
        }
    }
}
