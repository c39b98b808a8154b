//! Field sets as server-side apply records them: trees of path elements (`f:`, `k:`, `v:`, `i:`),
//! set algebra, and the `fieldsV1` JSON encoding of `metadata.managedFields`. Pure logic.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value};

/// One step of a field path. The derived order (fields, keys, values, indexes) is the order the
/// real server's encoder uses.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathElement {
    /// A struct field or map key: `f:name`.
    Field(String),
    /// A list item identified by key fields, stored as compact JSON with sorted keys: `k:{"name":"x"}`.
    Key(String),
    /// A set item identified by its value, as compact JSON: `v:"x"`.
    Value(String),
    /// A list item by position: `i:0`.
    Index(usize),
}

impl PathElement {
    fn encode(&self) -> String {
        match self {
            PathElement::Field(f) => format!("f:{f}"),
            PathElement::Key(k) => format!("k:{k}"),
            PathElement::Value(v) => format!("v:{v}"),
            PathElement::Index(i) => format!("i:{i}"),
        }
    }

    fn decode(s: &str) -> Result<Self, String> {
        let (prefix, rest) = s
            .split_once(':')
            .ok_or_else(|| format!("invalid path element {s:?}"))?;
        match prefix {
            "f" => Ok(PathElement::Field(rest.into())),
            "k" => {
                let v: Value =
                    serde_json::from_str(rest).map_err(|e| format!("invalid key {rest:?}: {e}"))?;
                if !v.is_object() {
                    return Err(format!("invalid key {rest:?}: not an object"));
                }
                Ok(PathElement::Key(v.to_string()))
            }
            "v" => {
                let v: Value = serde_json::from_str(rest)
                    .map_err(|e| format!("invalid value {rest:?}: {e}"))?;
                Ok(PathElement::Value(v.to_string()))
            }
            "i" => rest
                .parse()
                .map(PathElement::Index)
                .map_err(|e| format!("invalid index {rest:?}: {e}")),
            _ => Err(format!("invalid path element {s:?}")),
        }
    }
}

impl fmt::Display for PathElement {
    /// The form used in conflict messages: `.name`, `[name="x"]`, `[="x"]`, `[0]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathElement::Field(name) => write!(f, ".{name}"),
            PathElement::Key(k) => {
                let parsed: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
                let parts: Vec<String> = parsed.iter().map(|(k, v)| format!("{k}={v}")).collect();
                write!(f, "[{}]", parts.join(","))
            }
            PathElement::Value(v) => write!(f, "[={v}]"),
            PathElement::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// A path of elements, displayed as in conflict messages (`.spec.containers[name="web"].image`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Path(pub Vec<PathElement>);

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for pe in &self.0 {
            write!(f, "{pe}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Node {
    member: bool,
    children: FieldSet,
}

/// A set of field paths, stored as a tree. A path is a member only if inserted; its ancestors
/// exist in the tree without being members.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet {
    children: BTreeMap<PathElement, Node>,
}

impl FieldSet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.children.is_empty()
    }

    pub fn insert(&mut self, path: &[PathElement]) {
        let Some((first, rest)) = path.split_first() else {
            return;
        };
        let node = self.children.entry(first.clone()).or_default();
        if rest.is_empty() {
            node.member = true;
        } else {
            node.children.insert(rest);
        }
    }

    pub fn contains(&self, path: &[PathElement]) -> bool {
        let Some((first, rest)) = path.split_first() else {
            return false;
        };
        match self.children.get(first) {
            Some(node) if rest.is_empty() => node.member,
            Some(node) => node.children.contains(rest),
            None => false,
        }
    }

    /// Whether any member lies at or below `path`.
    pub fn has_prefix(&self, path: &[PathElement]) -> bool {
        let Some((first, rest)) = path.split_first() else {
            return !self.is_empty();
        };
        match self.children.get(first) {
            Some(node) if rest.is_empty() => node.member || !node.children.is_empty(),
            Some(node) => node.children.has_prefix(rest),
            None => false,
        }
    }

    /// The part of the set below one top-level element.
    pub fn only(&self, first: &PathElement) -> FieldSet {
        let mut out = FieldSet::new();
        if let Some(node) = self.children.get(first) {
            out.children.insert(first.clone(), node.clone());
        }
        out
    }

    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        for (pe, node) in &other.children {
            let mine = out.children.entry(pe.clone()).or_default();
            mine.member |= node.member;
            mine.children = mine.children.union(&node.children);
        }
        out
    }

    /// Members of `self` that are not members of `other`.
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet::new();
        for (pe, node) in &self.children {
            let (member, children) = match other.children.get(pe) {
                Some(o) => (
                    node.member && !o.member,
                    node.children.difference(&o.children),
                ),
                None => (node.member, node.children.clone()),
            };
            if member || !children.is_empty() {
                out.children.insert(pe.clone(), Node { member, children });
            }
        }
        out
    }

    /// Members of `self` that are neither members of `other` nor below one of its members.
    pub fn recursive_difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet::new();
        for (pe, node) in &self.children {
            match other.children.get(pe) {
                Some(o) if o.member => {}
                Some(o) => {
                    let children = node.children.recursive_difference(&o.children);
                    if node.member || !children.is_empty() {
                        out.children.insert(
                            pe.clone(),
                            Node {
                                member: node.member,
                                children,
                            },
                        );
                    }
                }
                None => {
                    out.children.insert(pe.clone(), node.clone());
                }
            }
        }
        out
    }

    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet::new();
        for (pe, node) in &self.children {
            if let Some(o) = other.children.get(pe) {
                let member = node.member && o.member;
                let children = node.children.intersection(&o.children);
                if member || !children.is_empty() {
                    out.children.insert(pe.clone(), Node { member, children });
                }
            }
        }
        out
    }

    /// The set with every struct field that has members below it made a member too, as
    /// structured-merge-diff's `EnsureNamedFieldsAreMembers` does (`a.b.c` also owns `a` and
    /// `a.b`, but not a list item `k:{...}` or `v:...` above `c`). The simulator treats every
    /// object field as a named field: built-in maps hold scalars, so their keys have no children.
    pub fn with_named_fields_as_members(&self) -> FieldSet {
        let mut out = FieldSet::new();
        for (pe, node) in &self.children {
            let children = node.children.with_named_fields_as_members();
            let member =
                node.member || (matches!(pe, PathElement::Field(_)) && !children.is_empty());
            out.children.insert(pe.clone(), Node { member, children });
        }
        out
    }

    /// The top-level elements: each with whether it is a member and the set below it.
    pub fn entries(&self) -> impl Iterator<Item = (&PathElement, bool, &FieldSet)> {
        self.children
            .iter()
            .map(|(pe, node)| (pe, node.member, &node.children))
    }

    /// Every member path, in order.
    pub fn paths(&self) -> Vec<Path> {
        let mut out = Vec::new();
        self.collect(&mut Vec::new(), &mut out);
        out
    }

    fn collect(&self, prefix: &mut Vec<PathElement>, out: &mut Vec<Path>) {
        for (pe, node) in &self.children {
            prefix.push(pe.clone());
            if node.member {
                out.push(Path(prefix.clone()));
            }
            node.children.collect(prefix, out);
            prefix.pop();
        }
    }

    /// The `fieldsV1` encoding: `{"f:data":{".":{},"f:key":{}}}`.
    pub fn to_fields_v1(&self) -> Value {
        let mut m = Map::new();
        for (pe, node) in &self.children {
            let mut inner = match node.children.to_fields_v1() {
                Value::Object(o) => o,
                _ => Map::new(),
            };
            if node.member && !inner.is_empty() {
                inner.insert(".".into(), Value::Object(Map::new()));
            }
            m.insert(pe.encode(), Value::Object(inner));
        }
        Value::Object(m)
    }

    /// Parse a `fieldsV1` value.
    pub fn from_fields_v1(v: &Value) -> Result<FieldSet, String> {
        let obj = v.as_object().ok_or("fieldsV1 must be an object")?;
        let mut out = FieldSet::new();
        for (k, child) in obj {
            if k == "." {
                continue;
            }
            let pe = PathElement::decode(k)?;
            let child_obj = child
                .as_object()
                .ok_or_else(|| format!("fieldsV1 entry {k:?} must be an object"))?;
            let children = FieldSet::from_fields_v1(child)?;
            let member = child_obj.is_empty() || child_obj.contains_key(".");
            out.children.insert(pe, Node { member, children });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(s: &str) -> PathElement {
        PathElement::Field(s.into())
    }

    #[test]
    fn encodes_members_with_children_using_a_dot() {
        let mut s = FieldSet::new();
        s.insert(&[f("data")]);
        s.insert(&[f("data"), f("a")]);
        s.insert(&[f("metadata"), f("labels"), f("app")]);
        s.insert(&[
            f("spec"),
            f("containers"),
            PathElement::Key(r#"{"name":"web"}"#.into()),
        ]);
        s.insert(&[
            f("spec"),
            f("containers"),
            PathElement::Key(r#"{"name":"web"}"#.into()),
            f("image"),
        ]);
        let v = s.to_fields_v1();
        assert_eq!(
            v,
            json!({
                "f:data": {".": {}, "f:a": {}},
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {".": {}, "f:image": {}}}}
            })
        );
        assert_eq!(FieldSet::from_fields_v1(&v).unwrap(), s);
    }

    #[test]
    fn set_algebra_works_on_members() {
        let mut a = FieldSet::new();
        a.insert(&[f("x"), f("y")]);
        a.insert(&[f("z")]);
        let mut b = FieldSet::new();
        b.insert(&[f("x"), f("y")]);
        assert_eq!(a.difference(&b).paths().len(), 1);
        assert_eq!(a.intersection(&b), b);
        assert_eq!(a.union(&b), a);
        let mut parent = FieldSet::new();
        parent.insert(&[f("x")]);
        assert_eq!(
            a.recursive_difference(&parent).paths(),
            vec![Path(vec![f("z")])]
        );
        assert!(a.has_prefix(&[f("x")]) && !a.contains(&[f("x")]));
    }

    #[test]
    fn paths_display_like_conflict_messages() {
        let p = Path(vec![
            f("spec"),
            f("ports"),
            PathElement::Key(r#"{"port":80,"protocol":"TCP"}"#.into()),
            f("targetPort"),
        ]);
        assert_eq!(
            p.to_string(),
            r#".spec.ports[port=80,protocol="TCP"].targetPort"#
        );
        assert_eq!(
            Path(vec![
                f("metadata"),
                f("finalizers"),
                PathElement::Value("\"a\"".into())
            ])
            .to_string(),
            r#".metadata.finalizers[="a"]"#
        );
    }

    #[test]
    fn rejects_malformed_fields_v1() {
        assert!(FieldSet::from_fields_v1(&json!({"x:y": {}})).is_err());
        assert!(FieldSet::from_fields_v1(&json!({"f:a": 1})).is_err());
        assert!(FieldSet::from_fields_v1(&json!([])).is_err());
    }
}
