//! The Kubernetes protobuf wire format (`application/vnd.kubernetes.protobuf`), as kubectl's typed
//! clients send it (`kubectl create deployment|service|job|role|...`): the `k8s\0` + `runtime.Unknown`
//! envelope and every built-in kind of Kubernetes 1.33, decoded with the field numbers of
//! `builtin_protobuf.txt` (generated from the Go types' `protobuf` tags by
//! `sim/tests/tools/gen_builtin_protobuf.py`). Pure.

use std::collections::HashMap;
use std::sync::LazyLock;

use base64::Engine;
use serde_json::{Map, Value, json};

/// How a field's payload is decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Str,
    Int,
    Bool,
    /// Bytes, shown as base64 (Secret data, certificates).
    Bytes,
    Double,
    Msg,
    /// `metav1.Time`, shown as RFC 3339.
    Time,
    /// `metav1.MicroTime`, RFC 3339 with microseconds.
    MicroTime,
    /// `metav1.Duration`, shown as Go prints durations.
    Duration,
    IntOrString,
    Quantity,
    /// `runtime.RawExtension`: embedded JSON.
    RawExtension,
    /// `metav1.FieldsV1`: embedded JSON.
    FieldsV1,
    /// A map with string keys and values of this kind (`true`: each value a list of strings).
    Map(Box<Kind>, bool),
}

#[derive(Debug, Clone)]
struct PbField {
    /// JSON name; `None` for an inlined struct (its fields join the parent's).
    name: Option<&'static str>,
    kind: Kind,
    repeated: bool,
    target: Option<&'static str>,
    pointer: bool,
    omitempty: bool,
}

fn kind_of(s: &str) -> Option<Kind> {
    Some(match s {
        "string" => Kind::Str,
        "int" => Kind::Int,
        "bool" => Kind::Bool,
        "bytes" => Kind::Bytes,
        "double" => Kind::Double,
        "msg" => Kind::Msg,
        "time" => Kind::Time,
        "microtime" => Kind::MicroTime,
        "duration" => Kind::Duration,
        "intstr" => Kind::IntOrString,
        "quantity" => Kind::Quantity,
        "rawext" => Kind::RawExtension,
        "fieldsv1" => Kind::FieldsV1,
        m => {
            let rest = m.strip_prefix("map:")?;
            let (_, value) = rest.split_once(':')?;
            let (value, list) = match value.strip_suffix('*') {
                Some(v) => (v, true),
                None => (value, false),
            };
            Kind::Map(Box::new(kind_of(value)?), list)
        }
    })
}

/// Message type → field number → field.
static TABLE: LazyLock<HashMap<&'static str, HashMap<u32, PbField>>> = LazyLock::new(|| {
    let mut t: HashMap<&'static str, HashMap<u32, PbField>> = HashMap::new();
    for line in include_str!("builtin_protobuf.txt").lines() {
        let c: Vec<&'static str> = line.split('\t').collect();
        let ["M", ty, num, name, kind, target, flags] = c.as_slice() else {
            continue;
        };
        let (kind, repeated) = match kind.strip_suffix('*') {
            Some(k) if !k.starts_with("map:") => (k, true),
            _ => (*kind, false),
        };
        let (Ok(num), Some(kind)) = (num.parse::<u32>(), kind_of(kind)) else {
            continue;
        };
        t.entry(*ty).or_default().insert(
            num,
            PbField {
                name: (*name != "-").then_some(*name),
                kind,
                repeated,
                target: (*target != "-").then_some(*target),
                pointer: flags.contains('p'),
                omitempty: flags.contains('o'),
            },
        );
    }
    t
});

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

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

    fn fixed64(&mut self) -> Result<[u8; 8], String> {
        let end = self.pos + 8;
        let b: [u8; 8] = self
            .buf
            .get(self.pos..end)
            .and_then(|s| s.try_into().ok())
            .ok_or("truncated field")?;
        self.pos = end;
        Ok(b)
    }

    fn skip(&mut self, wire: u64) -> Result<(), String> {
        match wire {
            0 => self.varint().map(|_| ()),
            1 => self.fixed64().map(|_| ()),
            2 => self.bytes().map(|_| ()),
            5 => {
                if self.pos + 4 > self.buf.len() {
                    return Err("truncated field".into());
                }
                self.pos += 4;
                Ok(())
            }
            w => Err(format!("unsupported wire type {w}")),
        }
    }

    /// The fields of a message: (number, wire type, varint or bytes).
    fn fields(mut self) -> Result<Vec<(u32, Payload<'a>)>, String> {
        let mut out = Vec::new();
        while !self.done() {
            let tag = self.varint()?;
            let num = (tag >> 3) as u32;
            let p = match tag & 7 {
                0 => Payload::Varint(self.varint()?),
                1 => Payload::Fixed64(self.fixed64()?),
                2 => Payload::Bytes(self.bytes()?),
                w => {
                    self.skip(w)?;
                    continue;
                }
            };
            out.push((num, p));
        }
        Ok(out)
    }
}

#[derive(Debug, Clone, Copy)]
enum Payload<'a> {
    Varint(u64),
    Fixed64([u8; 8]),
    Bytes(&'a [u8]),
}

fn utf8(b: &[u8]) -> Result<String, String> {
    String::from_utf8(b.to_vec()).map_err(|_| "invalid UTF-8 in a string field".to_string())
}

fn b64(b: &[u8]) -> Value {
    json!(base64::engine::general_purpose::STANDARD.encode(b))
}

fn bytes_of<'a>(p: Payload<'a>, at: &str) -> Result<&'a [u8], String> {
    match p {
        Payload::Bytes(b) => Ok(b),
        _ => Err(format!("field {at} has an unexpected wire type")),
    }
}

fn varint_of(p: Payload, at: &str) -> Result<u64, String> {
    match p {
        Payload::Varint(v) => Ok(v),
        _ => Err(format!("field {at} has an unexpected wire type")),
    }
}

/// `seconds` and `nanos` of a Time or MicroTime.
fn timestamp(b: &[u8], micro: bool) -> Result<Value, String> {
    let (mut secs, mut nanos) = (0i64, 0i64);
    for (num, p) in Reader::new(b).fields()? {
        match (num, p) {
            (1, Payload::Varint(v)) => secs = v as i64,
            (2, Payload::Varint(v)) => nanos = v as i64,
            _ => {}
        }
    }
    if b.is_empty() {
        return Ok(Value::Null);
    }
    let base = crate::ids::rfc3339(secs);
    Ok(json!(if micro {
        format!("{}.{:06}Z", base.trim_end_matches('Z'), nanos / 1000)
    } else {
        base
    }))
}

/// A duration in nanoseconds as Go's `time.Duration.String()` prints it (`1h0m0s`, `1.5s`, `0s`).
fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    if n < 1_000_000_000 {
        let (v, unit) = if n < 1_000 {
            (n as f64, "ns")
        } else if n < 1_000_000 {
            (n as f64 / 1e3, "µs")
        } else {
            (n as f64 / 1e6, "ms")
        };
        return format!("{sign}{v}{unit}");
    }
    let secs = n / 1_000_000_000;
    let frac = n % 1_000_000_000;
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    let mut sec = s.to_string();
    if frac != 0 {
        sec = format!("{s}.{}", format!("{frac:09}").trim_end_matches('0'));
    }
    if h > 0 {
        format!("{sign}{h}h{m}m{sec}s")
    } else if m > 0 {
        format!("{sign}{m}m{sec}s")
    } else {
        format!("{sign}{sec}s")
    }
}

/// One value of a non-message kind.
fn scalar(kind: &Kind, p: Payload, at: &str) -> Result<Value, String> {
    Ok(match kind {
        Kind::Str => json!(utf8(bytes_of(p, at)?)?),
        Kind::Int => json!(varint_of(p, at)? as i64),
        Kind::Bool => json!(varint_of(p, at)? != 0),
        Kind::Bytes => b64(bytes_of(p, at)?),
        Kind::Double => match p {
            Payload::Fixed64(b) => json!(f64::from_le_bytes(b)),
            _ => return Err(format!("field {at} has an unexpected wire type")),
        },
        Kind::Time => timestamp(bytes_of(p, at)?, false)?,
        Kind::MicroTime => timestamp(bytes_of(p, at)?, true)?,
        Kind::Duration => {
            let mut nanos = 0i64;
            for (num, f) in Reader::new(bytes_of(p, at)?).fields()? {
                if let (1, Payload::Varint(v)) = (num, f) {
                    nanos = v as i64;
                }
            }
            json!(go_duration(nanos))
        }
        Kind::IntOrString => {
            let (mut type_, mut int_val, mut str_val) = (0u64, 0i64, String::new());
            for (num, f) in Reader::new(bytes_of(p, at)?).fields()? {
                match (num, f) {
                    (1, Payload::Varint(v)) => type_ = v,
                    (2, Payload::Varint(v)) => int_val = v as i32 as i64,
                    (3, Payload::Bytes(b)) => str_val = utf8(b)?,
                    _ => {}
                }
            }
            if type_ == 1 {
                json!(str_val)
            } else {
                json!(int_val)
            }
        }
        Kind::Quantity => {
            let mut s = String::new();
            for (num, f) in Reader::new(bytes_of(p, at)?).fields()? {
                if let (1, Payload::Bytes(b)) = (num, f) {
                    s = utf8(b)?;
                }
            }
            json!(s)
        }
        Kind::RawExtension | Kind::FieldsV1 => {
            let mut raw: &[u8] = b"";
            for (num, f) in Reader::new(bytes_of(p, at)?).fields()? {
                if let (1, Payload::Bytes(b)) = (num, f) {
                    raw = b;
                }
            }
            if raw.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(raw)
                    .map_err(|e| format!("field {at} does not hold JSON: {e}"))?
            }
        }
        Kind::Msg | Kind::Map(..) => return Err(format!("field {at} is not a scalar")),
    })
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Bool(b) => !b,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
    }
}

/// Decode a message of a type of the table. Zero values of `omitempty` fields are left out, as
/// Go's JSON encoding leaves them out.
fn message(b: &[u8], ty: &str, at: &str) -> Result<Map<String, Value>, String> {
    let fields = TABLE
        .get(ty)
        .ok_or_else(|| format!("{at}: type {ty} is not modelled by kubesim's protobuf decoder"))?;
    let mut out = Map::new();
    for (num, p) in Reader::new(b).fields()? {
        let Some(f) = fields.get(&num) else {
            return Err(format!(
                "field {num} of {at} is not modelled by kubesim's protobuf decoder"
            ));
        };
        let name = f.name.unwrap_or("");
        let here = format!("{at}.{name}");
        let value = match &f.kind {
            Kind::Msg => {
                let target = f.target.ok_or_else(|| format!("{here}: no message type"))?;
                let m = message(bytes_of(p, &here)?, target, &here)?;
                if f.name.is_none() {
                    out.extend(m);
                    continue;
                }
                Value::Object(m)
            }
            Kind::Map(value_kind, list) => {
                let (mut k, mut v) = (String::new(), Value::Null);
                for (n, e) in Reader::new(bytes_of(p, &here)?).fields()? {
                    match n {
                        1 => k = utf8(bytes_of(e, &here)?)?,
                        2 if *list => {
                            let mut items = vec![];
                            for (n2, item) in Reader::new(bytes_of(e, &here)?).fields()? {
                                if n2 == 1 {
                                    items.push(json!(utf8(bytes_of(item, &here)?)?));
                                }
                            }
                            v = Value::Array(items);
                        }
                        2 => v = scalar(value_kind, e, &here)?,
                        _ => {}
                    }
                }
                if let Some(m) = out
                    .entry(name.to_string())
                    .or_insert_with(|| json!({}))
                    .as_object_mut()
                {
                    m.insert(k, v);
                }
                continue;
            }
            // A packed repeated number.
            kind @ (Kind::Int | Kind::Bool) if f.repeated && matches!(p, Payload::Bytes(_)) => {
                let mut r = Reader::new(bytes_of(p, &here)?);
                let list = out.entry(name.to_string()).or_insert_with(|| json!([]));
                while !r.done() {
                    let v = r.varint()?;
                    if let Some(a) = list.as_array_mut() {
                        a.push(if *kind == Kind::Bool {
                            json!(v != 0)
                        } else {
                            json!(v as i64)
                        });
                    }
                }
                continue;
            }
            kind => scalar(kind, p, &here)?,
        };
        if f.repeated {
            if let Some(a) = out
                .entry(name.to_string())
                .or_insert_with(|| json!([]))
                .as_array_mut()
            {
                a.push(value);
            }
        } else if f.pointer || !f.omitempty || !is_zero(&value) {
            if value.is_null() && f.omitempty {
                continue;
            }
            out.insert(name.to_string(), value);
        }
    }
    Ok(out)
}

/// The Go package of an apiVersion in the table: `v1` → `core/v1`, `apps/v1` → `apps/v1`,
/// `rbac.authorization.k8s.io/v1` → `rbac/v1`.
fn package(api_version: &str) -> String {
    match api_version.split_once('/') {
        None => format!("core/{api_version}"),
        Some((group, version)) => {
            format!("{}/{version}", group.split('.').next().unwrap_or(group))
        }
    }
}

/// Why a protobuf body cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtobufError {
    #[error("missing the protobuf magic prefix")]
    NoMagic,
    #[error(
        "kubesim decodes protobuf for the built-in kinds of Kubernetes 1.33; {api_version} {kind:?} is not one (send JSON or YAML)"
    )]
    UnknownKind { api_version: String, kind: String },
    #[error("{0}")]
    Malformed(String),
}

/// Decode a protobuf request body (`k8s\0` + `runtime.Unknown`) into a JSON object.
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    let rest = body
        .strip_prefix(b"k8s\x00")
        .ok_or(ProtobufError::NoMagic)?;
    decode_envelope(rest)
}

fn decode_envelope(rest: &[u8]) -> Result<Value, ProtobufError> {
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &b""[..]);
    let malformed = ProtobufError::Malformed;
    for (num, p) in Reader::new(rest).fields().map_err(malformed)? {
        match num {
            1 => {
                let type_meta = bytes_of(p, "Unknown.typeMeta").map_err(malformed)?;
                for (n, f) in Reader::new(type_meta).fields().map_err(malformed)? {
                    let text = bytes_of(f, "TypeMeta").and_then(utf8).map_err(malformed)?;
                    match n {
                        1 => api_version = text,
                        2 => kind = text,
                        _ => {}
                    }
                }
            }
            2 => raw = bytes_of(p, "Unknown.raw").map_err(malformed)?,
            _ => {}
        }
    }
    let ty = format!("{}.{kind}", package(&api_version));
    if !TABLE.contains_key(ty.as_str()) {
        return Err(ProtobufError::UnknownKind { api_version, kind });
    }
    let mut obj = message(raw, &ty, &kind).map_err(ProtobufError::Malformed)?;
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

    fn varint_field(num: u32, v: u8) -> Vec<u8> {
        vec![(num << 3) as u8, v]
    }

    fn envelope(api_version: &[u8], kind: &[u8], raw: &[u8]) -> Vec<u8> {
        let type_meta = [field(1, api_version), field(2, kind)].concat();
        let envelope = [field(1, &type_meta), field(2, raw)].concat();
        [b"k8s\x00".as_slice(), &envelope].concat()
    }

    #[test]
    fn decodes_a_namespace_like_kubectl_sends_it() {
        let meta = [field(1, b"demo"), field(8, b"")].concat();
        let raw = field(1, &meta);
        assert_eq!(
            decode(&envelope(b"v1", b"Namespace", &raw)).unwrap(),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo"}})
        );
    }

    #[test]
    fn maps_and_bytes() {
        let entry = [field(1, b"k"), field(2, b"v")].concat();
        let meta = field(1, b"c");
        let raw = [field(1, &meta), field(2, &entry), field(3, &entry)].concat();
        let m = message(&raw, "core/v1.ConfigMap", "ConfigMap").unwrap();
        assert_eq!(
            Value::Object(m),
            json!({"metadata": {"name": "c"}, "data": {"k": "v"}, "binaryData": {"k": "dg=="}})
        );
        assert!(decode(b"nope").is_err());
        assert!(
            message(&field(15, b"x"), "core/v1.ConfigMap", "ConfigMap")
                .unwrap_err()
                .contains("not modelled")
        );
    }

    #[test]
    fn a_deployment_with_zero_replicas_an_int_or_string_and_quantities() {
        // spec.replicas = 0 (a pointer: kept), strategy.rollingUpdate.maxSurge = "30%",
        // a container with requests.cpu = 100m.
        let quantity = field(1, b"100m");
        let requests = [field(1, b"cpu"), field(2, &quantity)].concat();
        let resources = field(2, &requests);
        let container = [field(1, b"web"), field(2, b"nginx"), field(8, &resources)].concat();
        let pod_spec = field(2, &container);
        let template = field(2, &pod_spec);
        let max_surge = [varint_field(1, 1), field(3, b"30%")].concat();
        let rolling = field(2, &max_surge);
        let strategy = [field(1, b"RollingUpdate"), field(2, &rolling)].concat();
        let spec = [varint_field(1, 0), field(3, &template), field(4, &strategy)].concat();
        let raw = [field(1, &field(1, b"web")), field(2, &spec)].concat();
        let d = decode(&envelope(b"apps/v1", b"Deployment", &raw)).unwrap();
        assert_eq!(d["spec"]["replicas"], 0);
        assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "30%");
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["image"], "nginx");
        assert_eq!(c["resources"]["requests"]["cpu"], "100m");
    }

    #[test]
    fn inlined_structs_join_their_parent_and_durations_print_like_go() {
        // A Volume's VolumeSource (field 2) is inlined in JSON.
        let empty_dir = field(2, b"");
        let raw = [field(1, b"data"), field(2, &empty_dir)].concat();
        assert_eq!(
            Value::Object(message(&raw, "core/v1.Volume", "Volume").unwrap()),
            json!({"name": "data", "emptyDir": {}})
        );
        assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
        assert_eq!(go_duration(1_500_000_000), "1.5s");
        assert_eq!(go_duration(90_000_000_000), "1m30s");
        assert_eq!(package("rbac.authorization.k8s.io/v1"), "rbac/v1");
        assert_eq!(package("v1"), "core/v1");
    }
}
