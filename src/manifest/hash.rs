//! The content hash: sha256 over the canonical JSON of a sanitized object (keys sorted, no
//! whitespace), with the hash annotation itself excluded, and the annotation that carries it.
//! Encrypted Secrets carry a keyed hash instead (HMAC-SHA256 under a key kept in the cluster),
//! which does not let anyone who reads Git test guesses of the plaintext.

use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::fmt;
use std::io::Write;

/// The annotation every written file carries: `sha256:<64 hex>`.
pub const HASH_ANNOTATION: &str = "configbutler.ai/content-hash";
const PREFIX: &str = "sha256:";
const KEYED_PREFIX: &str = "hmac-sha256:";

/// A content hash, displayed (and stored in the annotation) as `sha256:<64 lowercase hex>`, or
/// for a keyed hash `hmac-sha256:<64 lowercase hex>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentHash {
    bytes: [u8; 32],
    keyed: bool,
}

impl ContentHash {
    /// Reads `sha256:<64 hex>` or `hmac-sha256:<64 hex>`; anything else (another algorithm,
    /// wrong length) is `None`.
    pub fn parse(text: &str) -> Option<Self> {
        let (hex, keyed) = match text.strip_prefix(PREFIX) {
            Some(hex) => (hex, false),
            None => (text.strip_prefix(KEYED_PREFIX)?, true),
        };
        if hex.len() != 64 {
            return None;
        }
        let mut bytes = [0u8; 32];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Self { bytes, keyed })
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// An HMAC under a key (see [`keyed_content_hash`]) rather than a plain sha256.
    pub fn is_keyed(&self) -> bool {
        self.keyed
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.keyed { KEYED_PREFIX } else { PREFIX })?;
        self.bytes.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The hash of an object as it is (call it on sanitized objects). The hash annotation is
/// ignored, and so is an `annotations` map that holds nothing else.
pub fn content_hash(obj: &Value) -> ContentHash {
    let mut hasher = HashWriter(Sha256::new());
    write_top(obj, &mut hasher);
    ContentHash {
        bytes: hasher.0.finalize().into(),
        keyed: false,
    }
}

/// The keyed hash of an object: HMAC-SHA256 under `key` over the same canonical JSON as
/// [`content_hash`]. Without the key, a reader of Git cannot test a guessed value against it.
pub fn keyed_content_hash(obj: &Value, key: &[u8]) -> ContentHash {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mac = <Hmac<Sha256> as Mac>::new_from_slice(key).map(|m| {
        let mut writer = MacWriter(m);
        write_top(obj, &mut writer);
        writer.0.finalize().into_bytes().into()
    });
    ContentHash {
        bytes: mac.unwrap_or([0; 32]),
        keyed: true,
    }
}

/// The canonical JSON the hash is taken over, for tools and tests that want to see it.
pub fn canonical_json(obj: &Value) -> String {
    let mut out = Vec::new();
    write_top(obj, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// The hash recorded in an object's annotation, if it carries a well-formed one.
pub fn annotated_hash(obj: &Value) -> Option<ContentHash> {
    obj.pointer("/metadata/annotations")?
        .get(HASH_ANNOTATION)?
        .as_str()
        .and_then(ContentHash::parse)
}

/// The hash a document in Git stands for: the hash of its content — which is its annotation
/// when the agent wrote it and nobody edited it since; a hand-written document, or one a person
/// edited after the agent wrote it (the annotation left stale), stands for what it says. A SOPS
/// document stands for its annotation (a keyed hash of values that cannot be read here).
pub fn recorded_hash(doc: &Value) -> ContentHash {
    match annotated_hash(doc) {
        Some(hash) if doc.get("sops").is_some() => hash,
        _ => content_hash(doc),
    }
}

/// Writes the hash annotation into the object (creating `metadata.annotations` as needed).
pub fn stamp(obj: &mut Value, hash: ContentHash) {
    let Some(root) = obj.as_object_mut() else {
        return;
    };
    let metadata = root
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    let Some(metadata) = metadata.as_object_mut() else {
        return;
    };
    let annotations = metadata
        .entry("annotations")
        .or_insert_with(|| Value::Object(Map::new()));
    if !annotations.is_object() {
        *annotations = Value::Object(Map::new());
    }
    if let Some(annotations) = annotations.as_object_mut() {
        annotations.insert(HASH_ANNOTATION.to_string(), Value::String(hash.to_string()));
    }
}

/// Hashes an object and stamps the result into it; returns the hash.
pub fn hash_and_stamp(obj: &mut Value) -> ContentHash {
    let hash = content_hash(obj);
    stamp(obj, hash);
    hash
}

struct HashWriter(Sha256);

impl Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct MacWriter(Hmac<Sha256>);

impl Write for MacWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Which entries of a map the canonical form leaves out.
#[derive(Clone, Copy)]
enum Skip {
    Nothing,
    /// The top level: inside `metadata`, annotations are filtered.
    Top,
    /// `metadata`: the annotations map is filtered, and left out when only the hash remains.
    Metadata,
    /// `metadata.annotations`: the hash annotation is left out.
    Annotations,
}

fn write_top(obj: &Value, out: &mut impl Write) {
    write_value(obj, Skip::Top, out);
}

fn write_value(value: &Value, skip: Skip, out: &mut impl Write) {
    match value {
        Value::Object(map) => write_map(map, skip, out),
        Value::Array(items) => {
            let _ = out.write_all(b"[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    let _ = out.write_all(b",");
                }
                write_value(item, Skip::Nothing, out);
            }
            let _ = out.write_all(b"]");
        }
        // Strings are escaped by serde_json; numbers, booleans and null print canonically.
        scalar => {
            let _ = serde_json::to_writer(&mut *out, scalar);
        }
    }
}

fn write_map(map: &Map<String, Value>, skip: Skip, out: &mut impl Write) {
    let mut keys: Vec<&String> = map.keys().collect();
    // serde_json keeps keys sorted unless `preserve_order` is enabled somewhere in the build;
    // sort anyway so the hash never depends on a feature flag.
    if !keys.is_sorted() {
        keys.sort_unstable();
    }
    let _ = out.write_all(b"{");
    let mut first = true;
    for key in keys {
        let value = &map[key];
        let child = match (skip, key.as_str()) {
            (Skip::Annotations, HASH_ANNOTATION) => continue,
            (Skip::Metadata, "annotations") => {
                if only_hash_annotation(value) {
                    continue;
                }
                Skip::Annotations
            }
            (Skip::Top, "metadata") => Skip::Metadata,
            _ => Skip::Nothing,
        };
        if !first {
            let _ = out.write_all(b",");
        }
        first = false;
        let _ = serde_json::to_writer(&mut *out, key);
        let _ = out.write_all(b":");
        write_value(value, child, out);
    }
    let _ = out.write_all(b"}");
}

fn only_hash_annotation(annotations: &Value) -> bool {
    annotations
        .as_object()
        .is_some_and(|a| a.keys().all(|k| k == HASH_ANNOTATION))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_form_is_sorted_and_compact() {
        let obj = json!({"kind": "ConfigMap", "apiVersion": "v1", "data": {"b": "x y", "a": 1}});
        assert_eq!(
            canonical_json(&obj),
            r#"{"apiVersion":"v1","data":{"a":1,"b":"x y"},"kind":"ConfigMap"}"#
        );
    }

    #[test]
    fn hash_ignores_its_own_annotation_and_an_annotations_map_left_empty() {
        let bare = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}});
        let mut stamped = bare.clone();
        let hash = hash_and_stamp(&mut stamped);
        assert_eq!(content_hash(&stamped), hash);
        assert_eq!(annotated_hash(&stamped), Some(hash));
        // A stale hash is ignored too.
        stamped["metadata"]["annotations"][HASH_ANNOTATION] = json!("sha256:00");
        assert_eq!(content_hash(&stamped), hash);
        // Other annotations count.
        stamped["metadata"]["annotations"]["team"] = json!("shop");
        assert_ne!(content_hash(&stamped), hash);
    }

    #[test]
    fn display_and_parse_round_trip() {
        let hash = content_hash(&json!({"a": 1}));
        let text = hash.to_string();
        assert!(text.starts_with("sha256:") && text.len() == 71, "{text}");
        assert_eq!(ContentHash::parse(&text), Some(hash));
        for bad in [
            "",
            "sha256:",
            "md5:00",
            &text[..70],
            &format!("{}zz", &text[..69]),
        ] {
            assert_eq!(ContentHash::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn keyed_hash_needs_the_key_and_round_trips() {
        let obj = json!({"apiVersion": "v1", "kind": "Secret", "data": {"p": "aHVudGVyMg=="}});
        let keyed = keyed_content_hash(&obj, b"cluster key");
        assert!(keyed.is_keyed());
        assert_ne!(keyed.bytes(), content_hash(&obj).bytes());
        assert_ne!(keyed, keyed_content_hash(&obj, b"another key"));
        let text = keyed.to_string();
        assert!(
            text.starts_with("hmac-sha256:") && text.len() == 76,
            "{text}"
        );
        assert_eq!(ContentHash::parse(&text), Some(keyed));
        // HMAC-SHA256 of the canonical `{"a":1}` under the key `key`, computed independently
        // with `printf '{"a":1}' | openssl dgst -sha256 -hmac key`.
        assert_eq!(
            keyed_content_hash(&json!({"a": 1}), b"key").to_string(),
            "hmac-sha256:88a67f24bbcdaed0e6c997404bb79a743baf44c6bab2f4c27328e3009d22e342"
        );
    }

    #[test]
    fn known_vector() {
        // sha256 of the canonical `{"a":1}`, computed independently with `printf '{"a":1}' | sha256sum`.
        assert_eq!(
            content_hash(&json!({"a": 1})).to_string(),
            "sha256:015abd7f5cc57a2dd94b7590f04ad8084273905ee33ec5cebeae62276a97f862"
        );
    }

    proptest::proptest! {
        #[test]
        fn hash_ignores_key_order_and_the_hash_annotation(
            entries in proptest::collection::btree_map("[a-z]{1,6}", "\\PC{0,6}", 0..8),
            stale in "\\PC{0,80}",
        ) {
            // The same object written with its keys in two orders.
            let text = |keys: Vec<(&String, &String)>| {
                let body: Vec<String> = keys.iter().map(|(k, v)| format!("{}:{}",
                    serde_json::to_string(k).unwrap(), serde_json::to_string(v).unwrap())).collect();
                format!(r#"{{"kind":"ConfigMap","data":{{{}}},"metadata":{{"name":"a"}},"apiVersion":"v1"}}"#, body.join(","))
            };
            let forward: Value = serde_json::from_str(&text(entries.iter().collect())).unwrap();
            let backward: Value = serde_json::from_str(&text(entries.iter().rev().collect())).unwrap();
            let hash = content_hash(&forward);
            proptest::prop_assert_eq!(content_hash(&backward), hash);
            let mut annotated = forward.clone();
            annotated["metadata"]["annotations"] = json!({HASH_ANNOTATION: stale});
            proptest::prop_assert_eq!(content_hash(&annotated), hash);
        }
    }
}
