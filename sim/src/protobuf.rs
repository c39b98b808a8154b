//! The Kubernetes protobuf wire format (`application/vnd.kubernetes.protobuf`) for the few kinds
//! kubectl's typed clients send as protobuf: Namespace, ConfigMap, Secret, ServiceAccount. Pure.

use base64::Engine;
use serde_json::{Map, Value, json};

/// How a field is decoded.
#[derive(Clone, Copy)]
enum F {
    Str,
    Int,
    Bool,
    /// Bytes shown as base64 (Secret and binary data).
    Bytes,
    Msg(&'static [Field]),
    RepStr,
    RepMsg(&'static [Field]),
    MapStrStr,
    MapStrBytes,
    /// A `metav1.Time` (seconds, nanos), shown as RFC 3339.
    Time,
}

type Field = (u32, &'static str, F);

const OWNER_REF: &[Field] = &[
    (1, "kind", F::Str),
    (3, "name", F::Str),
    (4, "uid", F::Str),
    (5, "apiVersion", F::Str),
    (6, "controller", F::Bool),
    (7, "blockOwnerDeletion", F::Bool),
];
const OBJECT_META: &[Field] = &[
    (1, "name", F::Str),
    (2, "generateName", F::Str),
    (3, "namespace", F::Str),
    (4, "selfLink", F::Str),
    (5, "uid", F::Str),
    (6, "resourceVersion", F::Str),
    (7, "generation", F::Int),
    (8, "creationTimestamp", F::Time),
    (9, "deletionTimestamp", F::Time),
    (10, "deletionGracePeriodSeconds", F::Int),
    (11, "labels", F::MapStrStr),
    (12, "annotations", F::MapStrStr),
    (13, "ownerReferences", F::RepMsg(OWNER_REF)),
    (14, "finalizers", F::RepStr),
];
const NAMESPACE_SPEC: &[Field] = &[(1, "finalizers", F::RepStr)];
const NAMESPACE_STATUS: &[Field] = &[(1, "phase", F::Str)];
const NAMESPACE: &[Field] = &[
    (1, "metadata", F::Msg(OBJECT_META)),
    (2, "spec", F::Msg(NAMESPACE_SPEC)),
    (3, "status", F::Msg(NAMESPACE_STATUS)),
];
const CONFIGMAP: &[Field] = &[
    (1, "metadata", F::Msg(OBJECT_META)),
    (2, "data", F::MapStrStr),
    (3, "binaryData", F::MapStrBytes),
    (4, "immutable", F::Bool),
];
const SECRET: &[Field] = &[
    (1, "metadata", F::Msg(OBJECT_META)),
    (2, "data", F::MapStrBytes),
    (3, "type", F::Str),
    (4, "stringData", F::MapStrStr),
    (5, "immutable", F::Bool),
];
const OBJECT_REF: &[Field] = &[
    (1, "kind", F::Str),
    (2, "namespace", F::Str),
    (3, "name", F::Str),
    (4, "uid", F::Str),
    (5, "apiVersion", F::Str),
    (6, "resourceVersion", F::Str),
    (7, "fieldPath", F::Str),
];
const LOCAL_REF: &[Field] = &[(1, "name", F::Str)];
const SERVICE_ACCOUNT: &[Field] = &[
    (1, "metadata", F::Msg(OBJECT_META)),
    (2, "secrets", F::RepMsg(OBJECT_REF)),
    (3, "imagePullSecrets", F::RepMsg(LOCAL_REF)),
    (4, "automountServiceAccountToken", F::Bool),
];
const TYPE_META: &[Field] = &[(1, "apiVersion", F::Str), (2, "kind", F::Str)];
const UNKNOWN: &[Field] = &[
    (1, "typeMeta", F::Msg(TYPE_META)),
    (2, "raw", F::Bytes),
    (3, "contentEncoding", F::Str),
    (4, "contentType", F::Str),
];

/// The kinds this module decodes.
pub const SUPPORTED: &[&str] = &["Namespace", "ConfigMap", "Secret", "ServiceAccount"];

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, String> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or("truncated varint")?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint too long".into())
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let n = self.varint()? as usize;
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or("truncated field")?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn skip(&mut self, wire: u64) -> Result<(), String> {
        match wire {
            0 => self.varint().map(|_| ()),
            1 => self.advance(8),
            2 => self.bytes().map(|_| ()),
            5 => self.advance(4),
            w => Err(format!("unsupported wire type {w}")),
        }
    }

    fn advance(&mut self, n: usize) -> Result<(), String> {
        if self.pos + n > self.buf.len() {
            return Err("truncated field".into());
        }
        self.pos += n;
        Ok(())
    }
}

fn utf8(b: &[u8]) -> Result<String, String> {
    String::from_utf8(b.to_vec()).map_err(|_| "invalid UTF-8 in a string field".to_string())
}

fn map_entry(b: &[u8], bytes_value: bool) -> Result<(String, Value), String> {
    let mut r = Reader { buf: b, pos: 0 };
    let (mut k, mut v) = (String::new(), json!(""));
    while r.pos < b.len() {
        let tag = r.varint()?;
        match (tag >> 3, tag & 7) {
            (1, 2) => k = utf8(r.bytes()?)?,
            (2, 2) => {
                let raw = r.bytes()?;
                v = if bytes_value {
                    json!(base64::engine::general_purpose::STANDARD.encode(raw))
                } else {
                    json!(utf8(raw)?)
                };
            }
            (_, w) => r.skip(w)?,
        }
    }
    Ok((k, v))
}

fn time(b: &[u8]) -> Result<Value, String> {
    let mut r = Reader { buf: b, pos: 0 };
    let mut secs: i64 = 0;
    while r.pos < b.len() {
        let tag = r.varint()?;
        match (tag >> 3, tag & 7) {
            (1, 0) => secs = r.varint()? as i64,
            (_, w) => r.skip(w)?,
        }
    }
    Ok(if b.is_empty() {
        Value::Null
    } else {
        json!(crate::ids::rfc3339(secs))
    })
}

/// Decode a message; zero values are left out, as Go's JSON encoding omits them.
fn message(b: &[u8], schema: &[Field], at: &str) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    let mut r = Reader { buf: b, pos: 0 };
    while r.pos < b.len() {
        let tag = r.varint()?;
        let (num, wire) = ((tag >> 3) as u32, tag & 7);
        let Some((_, name, f)) = schema.iter().find(|(n, _, _)| *n == num) else {
            return Err(format!(
                "field {num} of {at} is not modelled by kubesim's protobuf decoder"
            ));
        };
        let name = name.to_string();
        let here = format!("{at}.{name}");
        match (f, wire) {
            (F::Str, 2) => {
                let s = utf8(r.bytes()?)?;
                if !s.is_empty() {
                    out.insert(name, json!(s));
                }
            }
            (F::Int, 0) => {
                let v = r.varint()? as i64;
                if v != 0 {
                    out.insert(name, json!(v));
                }
            }
            (F::Bool, 0) => {
                out.insert(name, json!(r.varint()? != 0));
            }
            (F::Bytes, 2) => {
                out.insert(
                    name,
                    json!(base64::engine::general_purpose::STANDARD.encode(r.bytes()?)),
                );
            }
            (F::Time, 2) => {
                let t = time(r.bytes()?)?;
                if !t.is_null() {
                    out.insert(name, t);
                }
            }
            (F::Msg(s), 2) => {
                let m = message(r.bytes()?, s, &here)?;
                if !m.is_empty() {
                    out.insert(name, Value::Object(m));
                }
            }
            (F::RepStr, 2) => {
                let s = utf8(r.bytes()?)?;
                if let Some(a) = out.entry(name).or_insert_with(|| json!([])).as_array_mut() {
                    a.push(json!(s))
                }
            }
            (F::RepMsg(s), 2) => {
                let m = message(r.bytes()?, s, &here)?;
                if let Some(a) = out.entry(name).or_insert_with(|| json!([])).as_array_mut() {
                    a.push(Value::Object(m))
                }
            }
            (F::MapStrStr | F::MapStrBytes, 2) => {
                let (k, v) = map_entry(r.bytes()?, matches!(f, F::MapStrBytes))?;
                if let Some(m) = out.entry(name).or_insert_with(|| json!({})).as_object_mut() {
                    m.insert(k, v);
                }
            }
            (_, w) => return Err(format!("field {here} has unexpected wire type {w}")),
        }
    }
    Ok(out)
}

/// Decode a protobuf request body (`k8s\0` + `runtime.Unknown`) into a JSON object.
pub fn decode(body: &[u8]) -> Result<Value, String> {
    let rest = body
        .strip_prefix(b"k8s\x00")
        .ok_or("missing the protobuf magic prefix")?;
    let envelope = message(rest, UNKNOWN, "Unknown")?;
    let kind = envelope["typeMeta"]["kind"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let api_version = envelope["typeMeta"]["apiVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let schema = match kind.as_str() {
        "Namespace" => NAMESPACE,
        "ConfigMap" => CONFIGMAP,
        "Secret" => SECRET,
        "ServiceAccount" => SERVICE_ACCOUNT,
        other => {
            return Err(format!(
                "kubesim decodes protobuf only for {}; got {other:?} (send JSON or YAML)",
                SUPPORTED.join(", ")
            ));
        }
    };
    let raw = envelope
        .get("raw")
        .and_then(Value::as_str)
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        .unwrap_or_default();
    let mut obj = message(&raw, schema, &kind)?;
    obj.insert("apiVersion".into(), json!(api_version));
    obj.insert("kind".into(), json!(kind));
    Ok(Value::Object(obj))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(num: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![((num << 3) | 2) as u8, payload.len() as u8];
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn decodes_a_namespace_like_kubectl_sends_it() {
        let meta = [field(1, b"demo"), field(8, b"")].concat();
        let raw = field(1, &meta);
        let type_meta = [field(1, b"v1"), field(2, b"Namespace")].concat();
        let envelope = [field(1, &type_meta), field(2, &raw)].concat();
        let body = [b"k8s\x00".as_slice(), &envelope].concat();
        assert_eq!(
            decode(&body).unwrap(),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo"}})
        );
    }

    #[test]
    fn maps_and_bytes() {
        let entry = [field(1, b"k"), field(2, b"v")].concat();
        let meta = field(1, b"c");
        let raw = [field(1, &meta), field(2, &entry), field(3, &entry)].concat();
        let m = message(&raw, CONFIGMAP, "ConfigMap").unwrap();
        assert_eq!(
            Value::Object(m),
            json!({"metadata": {"name": "c"}, "data": {"k": "v"}, "binaryData": {"k": "dg=="}})
        );
        assert!(decode(b"nope").is_err());
        assert!(
            message(&field(9, b"x"), CONFIGMAP, "ConfigMap")
                .unwrap_err()
                .contains("not modelled")
        );
    }
}
