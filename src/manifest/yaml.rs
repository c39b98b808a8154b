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
    serde_saphyr::to_string_with_options(&Ordered { value: doc, top: true }, writer_options())
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
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(text).map_err(|e| YamlError::Parse {
            input: input.to_string(),
            message: e.to_string(),
        })?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
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
                    message: format!("invalid JSON at line {} column {}: {e}", e.line(), e.column()),
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
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort_by(|a, b| key_rank(a, self.top).cmp(&key_rank(b, self.top)).then(a.cmp(b)));
                let mut out = serializer.serialize_map(Some(keys.len()))?;
                for key in keys {
                    out.serialize_entry(key, &Ordered { value: &map[key], top: false })?;
                }
                out.end()
            }
            Value::Array(items) => {
                let mut out = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    out.serialize_element(&Ordered { value: item, top: false })?;
                }
                out.end()
            }
            scalar => scalar.serialize(serializer),
        }
    }
}

fn key_rank(key: &str, top: bool) -> usize {
    if top {
        LEADING_KEYS.iter().position(|k| *k == key).unwrap_or(LEADING_KEYS.len())
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn experiment() {
        let v = json!({"spec": {"z": 1, "a": ["yes", "on", "No", "0123", "1e3", "~", "null", "0x1F", "2024-01-01", "plain", "12:30", "y", "n", "true", "", " lead", "a: b", "#x"]},
            "metadata": {"name": "x", "annotations": {"long": "a ".repeat(80), "multi": "line1\nline2\n", "multi2": "a\nb", "sp": "  x\n"}}, "kind": "ConfigMap", "apiVersion": "v1",
            "data": {"f": 1.5, "i": 3, "neg": -2, "big": 12345678901234567890u64, "e": {}, "l": [], "b": true, "nul": null}});
        let y = to_yaml(&v).unwrap();
        println!("{y}");
        let back = parse_documents(&y, "t").unwrap();
        assert_eq!(back, vec![v]);
    }
}
