//! Identity of a Kubernetes object as written to Git: apiVersion group and version, kind,
//! namespace and name, read from a JSON document with errors that say what is missing.

use serde_json::Value;
use std::fmt;

/// What was wrong with a document that should be a Kubernetes object.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ObjectError {
    #[error("document is not an object (found {found})")]
    NotAnObject { found: &'static str },
    #[error("object has no {field}")]
    MissingField { field: &'static str },
    #[error("object field {field} is not a string")]
    NotAString { field: &'static str },
}

/// The identity that finds an object's file, whatever its path: group, kind, namespace, name.
/// The version is carried for display and layout, but two versions of one object are one object.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectId {
    /// Reads the identity of a document; `metadata.name` is required (use it on stored objects).
    pub fn of(obj: &Value) -> Result<Self, ObjectError> {
        let map = obj.as_object().ok_or(ObjectError::NotAnObject {
            found: json_type(obj),
        })?;
        let api_version = required_str(map.get("apiVersion"), "apiVersion")?;
        let kind = required_str(map.get("kind"), "kind")?;
        let metadata = map.get("metadata");
        let name = required_str(metadata.and_then(|m| m.get("name")), "metadata.name")?;
        let namespace = match metadata.and_then(|m| m.get("namespace")) {
            None | Some(Value::Null) => None,
            Some(Value::String(ns)) if ns.is_empty() => None,
            Some(Value::String(ns)) => Some(ns.clone()),
            Some(_) => {
                return Err(ObjectError::NotAString {
                    field: "metadata.namespace",
                });
            }
        };
        let (group, version) = split_api_version(api_version);
        Ok(Self {
            group: group.to_string(),
            version: version.to_string(),
            kind: kind.to_string(),
            namespace,
            name: name.to_string(),
        })
    }

    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `apps/v1 Deployment shop/web`, as commit messages name an object.
    pub fn summary(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {} {ns}/{}", self.api_version(), self.kind, self.name),
            None => format!("{} {} {}", self.api_version(), self.kind, self.name),
        }
    }

    /// The identity without the version.
    pub fn identity(&self) -> ObjectIdentity {
        ObjectIdentity::from(self)
    }

    /// True when both name the same object, whichever API version each was read at.
    pub fn same_object(&self, other: &Self) -> bool {
        self.group == other.group
            && self.kind == other.kind
            && self.namespace == other.namespace
            && self.name == other.name
    }
}

/// What finds one object in a folder, whatever file holds it and at whichever API version:
/// group, kind, namespace, name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectIdentity {
    pub group: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectIdentity {
    /// One string that compares and hashes as the identity does (the folder index's key).
    pub fn key(&self) -> String {
        format!(
            "{}\u{0}{}\u{0}{}\u{0}{}",
            self.group,
            self.kind,
            self.namespace.as_deref().unwrap_or(""),
            self.name
        )
    }
}

impl From<&ObjectId> for ObjectIdentity {
    fn from(id: &ObjectId) -> Self {
        Self {
            group: id.group.clone(),
            kind: id.kind.clone(),
            namespace: id.namespace.clone(),
            name: id.name.clone(),
        }
    }
}

/// `group/Kind namespace/name` (`Kind name` for core cluster-scoped objects).
impl fmt::Display for ObjectIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.group.is_empty() {
            write!(f, "{}/", self.group)?;
        }
        write!(f, "{} ", self.kind)?;
        if let Some(ns) = &self.namespace {
            write!(f, "{ns}/")?;
        }
        f.write_str(&self.name)
    }
}

/// `apiVersion/Kind namespace/name`, as the CLI and logs print an object.
impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} ", self.api_version(), self.kind)?;
        if let Some(ns) = &self.namespace {
            write!(f, "{ns}/")?;
        }
        f.write_str(&self.name)
    }
}

/// Splits `apps/v1` into (`apps`, `v1`) and `v1` into (``, `v1`).
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    api_version.rsplit_once('/').unwrap_or(("", api_version))
}

/// A short description of a document for messages about objects that lack an identity.
pub fn describe(obj: &Value) -> String {
    let field = |p: &str| {
        obj.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string()
    };
    let ns = obj.pointer("/metadata/namespace").and_then(Value::as_str);
    let name = obj
        .pointer("/metadata/name")
        .or_else(|| obj.pointer("/metadata/generateName"))
        .and_then(Value::as_str)
        .unwrap_or("?");
    match ns {
        Some(ns) if !ns.is_empty() => {
            format!("{}/{} {ns}/{name}", field("/apiVersion"), field("/kind"))
        }
        _ => format!("{}/{} {name}", field("/apiVersion"), field("/kind")),
    }
}

fn required_str<'a>(v: Option<&'a Value>, field: &'static str) -> Result<&'a str, ObjectError> {
    match v {
        None | Some(Value::Null) => Err(ObjectError::MissingField { field }),
        Some(Value::String(s)) if s.is_empty() => Err(ObjectError::MissingField { field }),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(ObjectError::NotAString { field }),
    }
}

pub(crate) fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_identity_and_prints_it_like_the_cli() {
        let id = ObjectId::of(&json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop"}}))
        .unwrap();
        assert_eq!(id.to_string(), "apps/v1/Deployment shop/web");
        let id = ObjectId::of(&json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "shop"}}))
        .unwrap();
        assert_eq!((id.group.as_str(), id.namespace.as_deref()), ("", None));
        assert_eq!(id.to_string(), "v1/Namespace shop");
    }

    #[test]
    fn says_what_is_missing() {
        let cases = [
            (json!([1]), ObjectError::NotAnObject { found: "a list" }),
            (
                json!({"kind": "X", "metadata": {"name": "a"}}),
                ObjectError::MissingField {
                    field: "apiVersion",
                },
            ),
            (
                json!({"apiVersion": "v1", "kind": "X"}),
                ObjectError::MissingField {
                    field: "metadata.name",
                },
            ),
            (
                json!({"apiVersion": "v1", "kind": 3, "metadata": {"name": "a"}}),
                ObjectError::NotAString { field: "kind" },
            ),
        ];
        for (doc, want) in cases {
            assert_eq!(ObjectId::of(&doc), Err(want), "{doc}");
        }
    }
}
