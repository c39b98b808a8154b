//! Throughput of the manifest core (exclusion, sanitize, hash, YAML write) over a corpus of
//! 10,000+ realistic live objects, next to the cost of only parsing and re-serializing them.

use divan::counter::ItemsCount;
use gitops_reverser::manifest::exclude::{CONTROLLER_OWNED, ExclusionPolicy, SECRETS};
use gitops_reverser::manifest::pipeline::{Outcome, expand_list, prepare};
use gitops_reverser::manifest::yaml::{parse_documents, to_yaml};
use serde_json::{Value, json};
use std::sync::LazyLock;

fn main() {
    divan::main();
}

/// Live objects as the API server sends them (JSON text), built from the real-world fixtures
/// in tests/data/realworld by renaming and varying them, with the runtime fields a live object
/// carries (uid, resourceVersion, managedFields, status).
static CORPUS: LazyLock<Vec<String>> = LazyLock::new(build_corpus);

const TARGET: usize = 10_000;

fn build_corpus() -> Vec<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/realworld");
    let mut seeds = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("fixture dir")
        .flatten()
        .collect();
    entries.sort_by_key(|e| e.path());
    for entry in entries {
        let path = entry.path();
        if !matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "json")
        ) {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("fixture");
        for doc in parse_documents(&text, &path.display().to_string()).expect("fixture parses") {
            seeds.extend(
                expand_list(doc)
                    .into_iter()
                    .filter(|d| d.get("kind").is_some()),
            );
        }
    }
    assert!(!seeds.is_empty(), "no fixtures in {dir}");
    (0..TARGET)
        .map(|i| {
            let mut obj = seeds[i % seeds.len()].clone();
            liven(&mut obj, i);
            serde_json::to_string(&obj).expect("serializable")
        })
        .collect()
}

fn liven(obj: &mut Value, i: usize) {
    let Some(root) = obj.as_object_mut() else {
        return;
    };
    let metadata = root.entry("metadata").or_insert_with(|| json!({}));
    let name = metadata["name"].as_str().unwrap_or("object").to_string();
    metadata["name"] = json!(format!("{name}-{i}"));
    metadata["uid"] = json!(format!("00000000-0000-0000-0000-{i:012}"));
    metadata["resourceVersion"] = json!((100_000 + i).to_string());
    metadata["creationTimestamp"] = json!("2026-11-01T10:00:00Z");
    if metadata.get("managedFields").is_none() {
        metadata["managedFields"] = json!([{
            "apiVersion": "v1", "fieldsType": "FieldsV1", "manager": "kubectl-client-side-apply",
            "operation": "Update", "time": "2026-11-01T10:00:00Z",
            "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}}}, "f:spec": {".": {}}}
        }]);
    }
    if let Some(labels) = metadata
        .as_object_mut()
        .map(|m| m.entry("labels").or_insert_with(|| json!({})))
    {
        labels["pod-template-hash"] = json!(format!("{:x}", i * 2_654_435_761 % 1_000_000_007));
    }
    if root.get("status").is_none() {
        root.insert(
            "status".into(),
            json!({"observedGeneration": i, "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-01T10:00:00Z"}]}),
        );
    }
}

#[divan::bench]
fn parse_and_serialize_json_baseline(bencher: divan::Bencher) {
    let corpus = &*CORPUS;
    bencher.counter(ItemsCount::new(corpus.len())).bench(|| {
        let mut bytes = 0;
        for text in corpus {
            let value: Value = serde_json::from_str(text).expect("corpus parses");
            bytes += serde_json::to_string(&value).expect("serializes").len();
        }
        bytes
    });
}

#[divan::bench]
fn full_pipeline_parse_sanitize_hash_yaml(bencher: divan::Bencher) {
    let corpus = &*CORPUS;
    // Every object takes the full path: Secrets and controller-owned Pods are let through.
    let policy = ExclusionPolicy {
        disabled: [SECRETS, CONTROLLER_OWNED].map(String::from).into(),
        ..ExclusionPolicy::default()
    };
    bencher.counter(ItemsCount::new(corpus.len())).bench(|| {
        let mut bytes = 0;
        for text in corpus {
            let value: Value = serde_json::from_str(text).expect("corpus parses");
            let Ok(Outcome::Kept(manifest)) = prepare(value, &policy) else {
                panic!("every corpus object is kept");
            };
            bytes += to_yaml(&manifest.doc).expect("writes").len();
        }
        bytes
    });
}
