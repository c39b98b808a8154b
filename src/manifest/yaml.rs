//! The one YAML reader and writer: kubectl-style block YAML with a stable key order, and quoting
//! that YAML 1.1 readers (kubectl, Flux, Argo CD) read back as the same strings.

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::Value;

/// Keys that lead a top-level document, in this order; every other key follows, sorted.
const LEADING_KEYS: [&str; 3] = ["apiVersion", "kind", "metadata"];

/// Reading or writing YAML failed; the message names the input and the position where known.
#[derive(Debug, thiserror::Error)]
pub enum YamlError {
    #[error("{input}: {message}")]
    Parse { input: String, message: String },
    #[error("cannot write YAML: {0}")]
    Write(String),
}

/// Writes one document as block YAML, without a leading `---`.
pub fn to_yaml(doc: &Value) -> Result<String, YamlError> {
    serde_saphyr::to_string_with_options(
        &Ordered {
            value: doc,
            top: true,
        },
        writer_options(),
    )
    .map_err(|e| YamlError::Write(e.to_string()))
}

/// Writes documents as one multi-document stream, each introduced by `---`.
pub fn to_multi_yaml<'a>(docs: impl IntoIterator<Item = &'a Value>) -> Result<String, YamlError> {
    let mut out = String::new();
    for doc in docs {
        out.push_str("---\n");
        out.push_str(&to_yaml(doc)?);
    }
    Ok(out)
}

fn writer_options() -> serde_saphyr::SerializerOptions {
    let mut options = serde_saphyr::SerializerOptions::default();
    // Multi-line strings become literal block scalars; long single-line strings stay on one line
    // (folding them would make diffs noisy and depend on a wrap width).
    options.prefer_block_scalars = true;
    options.folded_wrap_chars = usize::MAX;
    options.min_fold_chars = usize::MAX;
    // Quote YAML 1.1 booleans, nulls, sexagesimals, octals and timestamps for Go readers.
    options.yaml_12 = false;
    options
}

/// Parses a stream of YAML or JSON documents. Empty documents are skipped; a JSON array at the
/// top level is read as its elements. `input` names the source in error messages.
pub fn parse_documents(text: &str, input: &str) -> Result<Vec<Value>, YamlError> {
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        return parse_json_stream(trimmed, input);
    }
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| YamlError::Parse {
        input: input.to_string(),
        message: e.to_string(),
    })?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// The one document of a file (a manifest in Git), or `None` when the bytes are not UTF-8
/// YAML/JSON holding exactly one document.
pub fn parse_single_document(bytes: &[u8], input: &str) -> Option<Value> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut docs = parse_documents(text, input).ok()?;
    (docs.len() == 1).then(|| docs.remove(0))
}

fn parse_json_stream(text: &str, input: &str) -> Result<Vec<Value>, YamlError> {
    let mut docs = Vec::new();
    for item in serde_json::Deserializer::from_str(text).into_iter::<Value>() {
        match item {
            Ok(Value::Array(items)) => docs.extend(items),
            Ok(doc) => docs.push(doc),
            Err(e) => {
                return Err(YamlError::Parse {
                    input: input.to_string(),
                    message: format!(
                        "invalid JSON at line {} column {}: {e}",
                        e.line(),
                        e.column()
                    ),
                });
            }
        }
    }
    Ok(docs)
}

/// Serializes a JSON value with sorted keys, and at the top level `apiVersion`, `kind` and
/// `metadata` first, whatever map type `serde_json` was built with.
struct Ordered<'a> {
    value: &'a Value,
    top: bool,
}

impl Serialize for Ordered<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.value {
            Value::Object(map) => {
                let keys = written_order(map, self.top);
                let mut out = serializer.serialize_map(Some(keys.len()))?;
                for key in keys {
                    out.serialize_entry(
                        key,
                        &Ordered {
                            value: &map[key],
                            top: false,
                        },
                    )?;
                }
                out.end()
            }
            Value::Array(items) => {
                let mut out = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    out.serialize_element(&Ordered {
                        value: item,
                        top: false,
                    })?;
                }
                out.end()
            }
            scalar => scalar.serialize(serializer),
        }
    }
}

/// The keys of a map in the order [`to_yaml`] writes them (`top`: the document's own map).
/// Whoever must walk a document as its file lists it (the SOPS MAC) uses this.
pub fn written_order(map: &serde_json::Map<String, Value>, top: bool) -> Vec<&String> {
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort_by(|a, b| key_rank(a, top).cmp(&key_rank(b, top)).then(a.cmp(b)));
    keys
}

fn key_rank(key: &str, top: bool) -> usize {
    if top {
        LEADING_KEYS
            .iter()
            .position(|k| *k == key)
            .unwrap_or(LEADING_KEYS.len())
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kubectl_style_block_yaml_with_stable_key_order() {
        let doc = json!({
            "spec": {"replicas": 2, "template": {"spec": {"containers": [
                {"name": "web", "image": "nginx:1.27", "args": ["--port", "8080"]}]}}},
            "metadata": {"name": "web", "namespace": "shop", "labels": {"b": "2", "a": "1"}},
            "kind": "Deployment",
            "apiVersion": "apps/v1",
            "data": {"script": "#!/bin/sh\necho hi\n", "empty": {}, "none": []}
        });
        let want = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  labels:
    a: "1"
    b: "2"
  name: web
  namespace: shop
data:
  empty: {}
  none: []
  script: |
    #!/bin/sh
    echo hi
spec:
  replicas: 2
  template:
    spec:
      containers:
      - args:
        - --port
        - "8080"
        image: nginx:1.27
        name: web
"#;
        assert_eq!(to_yaml(&doc).unwrap(), want);
    }

    /// Strings a YAML 1.1 reader (Go's yaml.v2, used by kubectl, Flux and Argo CD) would turn
    /// into booleans, numbers, nulls or timestamps unless quoted.
    const YAML11_AMBIGUOUS: &[&str] = &[
        "yes",
        "Yes",
        "YES",
        "no",
        "No",
        "on",
        "On",
        "off",
        "OFF",
        "y",
        "Y",
        "n",
        "N",
        "true",
        "False",
        "~",
        "null",
        "Null",
        "NULL",
        "",
        "0123",
        "0o17",
        "0x1F",
        "0b101",
        "1e3",
        "1E3",
        "1_000",
        "+1",
        "-1",
        ".5",
        "1.",
        ".inf",
        "-.Inf",
        ".NaN",
        "12:30",
        "190:20:30",
        "2024-01-01",
        "2024-01-01T10:00:00Z",
        "2001-12-14 21:59:43.10 -5",
    ];

    #[test]
    fn yaml11_ambiguous_strings_are_quoted() {
        for s in YAML11_AMBIGUOUS {
            let text = to_yaml(&json!({ "v": s })).unwrap();
            let scalar = text.trim_end().strip_prefix("v: ").unwrap_or(&text);
            assert!(
                scalar.starts_with('"') || scalar.starts_with('\''),
                "{s:?} written bare as {text:?}"
            );
            assert_eq!(
                parse_documents(&text, "t").unwrap(),
                vec![json!({ "v": s })],
                "{s:?}"
            );
        }
    }

    #[test]
    fn multi_document_streams_and_json_input() {
        let docs = vec![json!({"kind": "A"}), json!({"kind": "B", "x": [1, 2]})];
        let text = to_multi_yaml(&docs).unwrap();
        assert_eq!(text, "---\nkind: A\n---\nkind: B\nx:\n- 1\n- 2\n");
        assert_eq!(parse_documents(&text, "t").unwrap(), docs);
        assert_eq!(
            parse_documents(r#"{"kind":"A"} {"kind":"B","x":[1,2]}"#, "t").unwrap(),
            docs
        );
        assert_eq!(
            parse_documents(r#"[{"kind":"A"},{"kind":"B","x":[1,2]}]"#, "t").unwrap(),
            docs
        );
        assert_eq!(
            parse_documents("---\n---\nkind: A\n", "t").unwrap(),
            vec![json!({"kind": "A"})]
        );
    }

    #[test]
    fn unreadable_input_names_the_input_and_position() {
        let err = parse_documents("a: 1\nb: [unclosed\n", "broken.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("broken.yaml: "), "{err}");
        assert!(err.contains("line 2") || err.contains("2:"), "{err}");
        let err = parse_documents("{\"a\": 1,\n \"b\": }", "broken.json")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("broken.json: ") && err.contains("line 2"),
            "{err}"
        );
    }

    fn arb_json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<u64>().prop_map(|n| json!(n)),
            (-1.0e15f64..1.0e15).prop_map(|f| json!(f)),
            proptest::sample::select(YAML11_AMBIGUOUS).prop_map(|s| json!(s)),
            "\\PC{0,12}".prop_map(Value::String),
            "[ a-z#:\n-]{0,20}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map("\\PC{0,8}", inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn writing_then_reading_gives_the_same_json(value in arb_json()) {
            // Documents are objects (what the agent writes); anything may be inside.
            let doc = json!({"apiVersion": "v1", "kind": "ConfigMap", "data": value});
            let text = to_yaml(&doc).unwrap();
            let back = parse_documents(&text, "t").unwrap();
            proptest::prop_assert_eq!(back, vec![doc], "{}", text);
        }
    }
}
