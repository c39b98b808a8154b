//! Label selectors (equality- and set-based) and field selectors: parsing the query strings and
//! matching objects. Pure logic.

use std::collections::BTreeMap;

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Eq,
    NotEq,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    Gt,
    Lt,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Requirement {
    key: String,
    op: Op,
    values: Vec<String>,
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

/// Split on commas that are not inside parentheses.
fn split_top_level(s: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut current = String::new();
    for c in s.chars() {
        match c {
            '(' => {
                depth += 1;
                current.push(c);
            }
            ')' => {
                depth -= 1;
                current.push(c);
            }
            ',' if depth == 0 => parts.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    parts.push(current);
    parts
}

fn valid_label_key(key: &str) -> bool {
    let name = match key.rsplit_once('/') {
        Some((prefix, name)) => {
            if prefix.is_empty() || prefix.len() > 253 {
                return false;
            }
            name
        }
        None => key,
    };
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn valid_label_value(v: &str) -> bool {
    v.is_empty()
        || (v.len() <= 63
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && v.starts_with(|c: char| c.is_ascii_alphanumeric())
            && v.ends_with(|c: char| c.is_ascii_alphanumeric()))
}

impl LabelSelector {
    /// Parse `app=web,tier!=db,env in (a,b),!legacy`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut requirements = Vec::new();
        if s.trim().is_empty() {
            return Ok(LabelSelector { requirements });
        }
        for raw in split_top_level(s) {
            let part = raw.trim();
            if part.is_empty() {
                return Err(format!("found '', expected: identifier in selector {s:?}"));
            }
            let req = if let Some(key) = part.strip_prefix('!') {
                Requirement {
                    key: key.trim().into(),
                    op: Op::DoesNotExist,
                    values: vec![],
                }
            } else if let Some((key, rest)) = split_word(part, " notin ") {
                Requirement {
                    key,
                    op: Op::NotIn,
                    values: parse_set(&rest)?,
                }
            } else if let Some((key, rest)) = split_word(part, " in ") {
                Requirement {
                    key,
                    op: Op::In,
                    values: parse_set(&rest)?,
                }
            } else if let Some((k, v)) = part.split_once("!=") {
                Requirement {
                    key: k.trim().into(),
                    op: Op::NotEq,
                    values: vec![v.trim().into()],
                }
            } else if let Some((k, v)) = part.split_once("==") {
                Requirement {
                    key: k.trim().into(),
                    op: Op::Eq,
                    values: vec![v.trim().into()],
                }
            } else if let Some((k, v)) = part.split_once('=') {
                Requirement {
                    key: k.trim().into(),
                    op: Op::Eq,
                    values: vec![v.trim().into()],
                }
            } else if let Some((k, v)) = part.split_once('>') {
                Requirement {
                    key: k.trim().into(),
                    op: Op::Gt,
                    values: vec![v.trim().into()],
                }
            } else if let Some((k, v)) = part.split_once('<') {
                Requirement {
                    key: k.trim().into(),
                    op: Op::Lt,
                    values: vec![v.trim().into()],
                }
            } else {
                Requirement {
                    key: part.into(),
                    op: Op::Exists,
                    values: vec![],
                }
            };
            if !valid_label_key(&req.key) {
                return Err(format!("invalid label key {:?}", req.key));
            }
            if let Some(bad) = req.values.iter().find(|v| !valid_label_value(v)) {
                return Err(format!("invalid label value: {bad:?}"));
            }
            if matches!(req.op, Op::Gt | Op::Lt) && req.values[0].parse::<i64>().is_err() {
                return Err(format!(
                    "for 'Gt', 'Lt' operators, the value must be an integer: {:?}",
                    req.values[0]
                ));
            }
            requirements.push(req);
        }
        Ok(LabelSelector { requirements })
    }

    /// The selector of a `metav1.LabelSelector` object (`matchLabels`, `matchExpressions`).
    pub fn from_object(sel: &Value) -> Result<Self, String> {
        let mut requirements = Vec::new();
        if let Some(m) = sel.get("matchLabels").and_then(Value::as_object) {
            for (k, v) in m {
                let v = v
                    .as_str()
                    .ok_or_else(|| format!("matchLabels value of {k:?} is not a string"))?;
                requirements.push(Requirement {
                    key: k.clone(),
                    op: Op::Eq,
                    values: vec![v.into()],
                });
            }
        }
        if let Some(exprs) = sel.get("matchExpressions").and_then(Value::as_array) {
            for e in exprs {
                let key = e["key"]
                    .as_str()
                    .ok_or("matchExpressions key is required")?
                    .to_string();
                let values: Vec<String> = e["values"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default();
                let op = match e["operator"].as_str() {
                    Some("In") => Op::In,
                    Some("NotIn") => Op::NotIn,
                    Some("Exists") => Op::Exists,
                    Some("DoesNotExist") => Op::DoesNotExist,
                    other => {
                        return Err(format!("{other:?} is not a valid label selector operator"));
                    }
                };
                requirements.push(Requirement { key, op, values });
            }
        }
        Ok(LabelSelector { requirements })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether a set of labels satisfies every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| {
            let v = labels.get(&r.key);
            match r.op {
                Op::Eq | Op::In => v.is_some_and(|v| r.values.contains(v)),
                Op::NotEq | Op::NotIn => v.is_none_or(|v| !r.values.contains(v)),
                Op::Exists => v.is_some(),
                Op::DoesNotExist => v.is_none(),
                Op::Gt | Op::Lt => {
                    let (Some(have), Ok(want)) = (
                        v.and_then(|v| v.parse::<i64>().ok()),
                        r.values[0].parse::<i64>(),
                    ) else {
                        return false;
                    };
                    if r.op == Op::Gt {
                        have > want
                    } else {
                        have < want
                    }
                }
            }
        })
    }

    /// Match an object's `metadata.labels`.
    pub fn matches_object(&self, obj: &Value) -> bool {
        self.is_empty() || self.matches(&labels_of(obj))
    }

    /// The selector as a string, as the `scale` subresource reports it.
    pub fn to_query(&self) -> String {
        self.requirements
            .iter()
            .map(|r| match r.op {
                Op::Eq => format!("{}={}", r.key, r.values[0]),
                Op::NotEq => format!("{}!={}", r.key, r.values[0]),
                Op::In => format!("{} in ({})", r.key, r.values.join(",")),
                Op::NotIn => format!("{} notin ({})", r.key, r.values.join(",")),
                Op::Exists => r.key.clone(),
                Op::DoesNotExist => format!("!{}", r.key),
                Op::Gt => format!("{}>{}", r.key, r.values[0]),
                Op::Lt => format!("{}<{}", r.key, r.values[0]),
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn split_word(part: &str, word: &str) -> Option<(String, String)> {
    let (k, rest) = part.split_once(word)?;
    Some((k.trim().to_string(), rest.trim().to_string()))
}

fn parse_set(s: &str) -> Result<Vec<String>, String> {
    let inner = s
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| format!("found {s:?}, expected: '('"))?;
    Ok(inner
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect())
}

/// `metadata.labels` as a map of strings.
pub fn labels_of(obj: &Value) -> BTreeMap<String, String> {
    obj["metadata"]["labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// A parsed field selector (`metadata.name=x,metadata.namespace!=y`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    terms: Vec<(String, bool, String)>,
}

/// The fields a resource can be selected by, beyond `metadata.name` and `metadata.namespace`.
fn extra_fields(kind: &str) -> &'static [&'static str] {
    match kind {
        "Pod" => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "status.phase",
            "status.podIP",
        ],
        "Secret" => &["type"],
        "Event" => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        "Namespace" => &["status.phase"],
        "Job" => &["status.successful"],
        _ => &[],
    }
}

impl FieldSelector {
    /// Parse a field selector for a resource of `kind`.
    pub fn parse(s: &str, kind: &str) -> Result<Self, String> {
        let mut terms = Vec::new();
        if s.trim().is_empty() {
            return Ok(FieldSelector { terms });
        }
        for part in s.split(',') {
            let part = part.trim();
            let (field, eq, value) = if let Some((f, v)) = part.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, true, v)
            } else {
                return Err(format!(
                    "invalid selector: '{s}'; can't understand '{part}'"
                ));
            };
            let field = field.trim();
            if field != "metadata.name"
                && field != "metadata.namespace"
                && !extra_fields(kind).contains(&field)
            {
                return Err(format!("field label not supported: {field}"));
            }
            terms.push((field.to_string(), eq, value.trim().to_string()));
        }
        Ok(FieldSelector { terms })
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// The single name this selector pins (`metadata.name=x`), if any.
    pub fn pinned_name(&self) -> Option<&str> {
        self.terms
            .iter()
            .find(|(f, eq, _)| f == "metadata.name" && *eq)
            .map(|(_, _, v)| v.as_str())
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.terms.iter().all(|(field, eq, want)| {
            let mut v = obj;
            for seg in field.split('.') {
                v = &v[seg];
            }
            let have = match v {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            (have == *want) == *eq
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn label_selectors_match_like_kubectl_expects() {
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], bool);
        let cases: &[Case] = &[
            ("", &[], true),
            ("app=web", &[("app", "web")], true),
            ("app==web", &[("app", "db")], false),
            ("app!=web", &[], true),
            ("env in (prod, staging)", &[("env", "staging")], true),
            ("env notin (prod)", &[("env", "prod")], false),
            ("env notin (prod)", &[], true),
            ("tier", &[("tier", "x")], true),
            ("!tier", &[("tier", "x")], false),
            (
                "app=web,env in (a,b),!legacy",
                &[("app", "web"), ("env", "b")],
                true,
            ),
            ("n>3", &[("n", "4")], true),
            ("n<3", &[("n", "4")], false),
        ];
        for (sel, l, want) in cases {
            assert_eq!(
                LabelSelector::parse(sel).unwrap().matches(&labels(l)),
                *want,
                "{sel}"
            );
        }
        assert!(LabelSelector::parse("a in b").is_err());
        assert!(LabelSelector::parse("bad key=x").is_err());
    }

    #[test]
    fn selector_objects_round_trip_to_strings() {
        let s = LabelSelector::from_object(&json!({"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "env", "operator": "In", "values": ["a"]}]})).unwrap();
        assert_eq!(s.to_query(), "app=web,env in (a)");
    }

    #[test]
    fn field_selectors_support_name_and_namespace() {
        let obj = json!({"metadata": {"name": "a", "namespace": "ns"}});
        assert!(
            FieldSelector::parse("metadata.name=a", "ConfigMap")
                .unwrap()
                .matches(&obj)
        );
        assert!(
            !FieldSelector::parse("metadata.namespace!=ns", "ConfigMap")
                .unwrap()
                .matches(&obj)
        );
        assert_eq!(
            FieldSelector::parse("metadata.name==a", "ConfigMap")
                .unwrap()
                .pinned_name(),
            Some("a")
        );
        assert_eq!(
            FieldSelector::parse("spec.x=1", "ConfigMap").unwrap_err(),
            "field label not supported: spec.x"
        );
        assert!(FieldSelector::parse("type=Opaque", "Secret").is_ok());
    }
}
