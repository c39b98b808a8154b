//! Fuzzing on stable Rust: property-based fuzz targets (proptest) for every parser of untrusted
//! input — audit logs, the audit and admission webhook bodies, YAML documents from Git, arbitrary
//! Kubernetes objects through sanitize, hash and equivalence, repository URLs, credential Secrets,
//! and the packs the engine writes. Inputs are random bytes and random mutations of real inputs
//! (tests/data, examples/), and structured objects. Each property runs `PROPTEST_CASES` cases
//! (proptest's default, 256); CONTRIBUTING.md says how to run longer. A crash found here becomes
//! a plain regression test at the end of this file.

use gitops_reverser::attribution::webhook::admission_fact;
use gitops_reverser::attribution::{
    AdmissionIgnored, FactIndex, FactKey, ingest_events, parse_admission_review, parse_event_list,
};
use gitops_reverser::audit::read::{AuditReader, read_events};
use gitops_reverser::audit::{AuditEvent, Entry};
use gitops_reverser::git::credentials::{Credentials, CredentialsError};
use gitops_reverser::git::pack::PackWriter;
use gitops_reverser::git::url::{NormalizedUrl, redact};
use gitops_reverser::manifest::equivalence::{compare, verified_hash_annotation};
use gitops_reverser::manifest::hash::{HASH_ANNOTATION, annotated_hash, content_hash};
use gitops_reverser::manifest::layout::{Location, PathTemplate, escape};
use gitops_reverser::manifest::sanitize::sanitized;
use gitops_reverser::manifest::yaml::{parse_documents, parse_single_document, to_yaml};
use gitops_reverser::manifest::{ExclusionPolicy, Outcome, prepare};
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

// ---------------------------------------------------------------------------------------------
// Seeds and mutations

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every regular file under `dirs` (relative to the crate), sorted, as bytes.
fn files_under(dirs: &[&str]) -> Vec<(PathBuf, Vec<u8>)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut paths = Vec::new();
    for dir in dirs {
        walk(&root().join(dir), &mut paths);
    }
    paths.sort();
    let files: Vec<_> = paths
        .into_iter()
        .filter(|p| p.extension().is_none_or(|e| e != "md"))
        .map(|p| {
            let bytes = std::fs::read(&p).expect("seed file");
            (p, bytes)
        })
        .collect();
    assert!(!files.is_empty(), "no seed files under {dirs:?}");
    files
}

/// The audit inputs copied from real clusters (JSON lines, EventLists, YAML).
fn audit_seeds() -> &'static [(PathBuf, Vec<u8>)] {
    static SEEDS: OnceLock<Vec<(PathBuf, Vec<u8>)>> = OnceLock::new();
    SEEDS.get_or_init(|| files_under(&["tests/data/audit", "examples/audit"]))
}

/// Manifests: sample objects, real-world objects, custom resource examples.
fn manifest_seeds() -> &'static [(PathBuf, Vec<u8>)] {
    static SEEDS: OnceLock<Vec<(PathBuf, Vec<u8>)>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        files_under(&[
            "examples/objects",
            "examples/flux",
            "examples/argocd",
            "tests/data/realworld",
            "src/manifest/testdata",
        ])
        .into_iter()
        .chain(
            [
                "02-gitrepoconfig",
                "03-gitdestination",
                "04-watchrule",
                "05-clusterwatchrule",
            ]
            .map(|name| {
                let path = root().join(format!("examples/{name}.yaml"));
                let bytes = std::fs::read(&path).expect("example");
                (path, bytes)
            }),
        )
        .collect()
    })
}

/// The audit events of the seeds, each as read once (so that writing and reading it again gives
/// the same event).
fn seed_events() -> &'static [AuditEvent] {
    static EVENTS: OnceLock<Vec<AuditEvent>> = OnceLock::new();
    EVENTS.get_or_init(|| {
        let events: Vec<AuditEvent> = audit_seeds()
            .iter()
            .filter_map(|(path, bytes)| read_events(bytes.as_slice(), &path.to_string_lossy()).ok())
            .flat_map(|input| input.events)
            .collect();
        assert!(events.len() > 100, "only {} seed events", events.len());
        events
    })
}

/// The AdmissionReviews kube-audit-rest recorded.
fn admission_seeds() -> &'static [Vec<u8>] {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let text = std::fs::read_to_string(
            root().join("tests/data/audit/admission/kube-audit-rest-rancher-desktop.jsonl"),
        )
        .expect("admission seeds");
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.as_bytes().to_vec())
            .collect()
    })
}

/// One edit of a byte string: what libFuzzer's mutators do, in a form proptest can shrink.
#[derive(Clone, Debug)]
enum Edit {
    FlipBit(usize, u8),
    SetByte(usize, u8),
    Delete(usize, usize),
    Insert(usize, Vec<u8>),
    /// Copies a slice of the input to another place (repeats structure: keys, lines, braces).
    Duplicate(usize, usize, usize),
    Truncate(usize),
}

fn arb_edit() -> impl Strategy<Value = Edit> {
    let interesting = prop_oneof![
        proptest::collection::vec(any::<u8>(), 1..8),
        proptest::sample::select(vec![
            b"{".to_vec(),
            b"}".to_vec(),
            b"[".to_vec(),
            b"]".to_vec(),
            b"\"".to_vec(),
            b"\n".to_vec(),
            b"\r\n".to_vec(),
            b": ".to_vec(),
            b"- ".to_vec(),
            b"---\n".to_vec(),
            b"null".to_vec(),
            b"-1".to_vec(),
            b"1e999".to_vec(),
            b"18446744073709551616".to_vec(),
            b"\xef\xbb\xbf".to_vec(),
            b"\x1f\x8b".to_vec(),
            b"&a ".to_vec(),
            b"*a".to_vec(),
            b"!!binary ".to_vec(),
            b"<<: ".to_vec(),
            b"\\u0000".to_vec(),
            b"\xff".to_vec(),
        ]),
    ];
    prop_oneof![
        (any::<usize>(), 0..8u8).prop_map(|(at, bit)| Edit::FlipBit(at, bit)),
        (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Edit::SetByte(at, b)),
        (any::<usize>(), 1..64usize).prop_map(|(at, n)| Edit::Delete(at, n)),
        (any::<usize>(), interesting).prop_map(|(at, bytes)| Edit::Insert(at, bytes)),
        (any::<usize>(), 1..256usize, any::<usize>())
            .prop_map(|(from, n, to)| Edit::Duplicate(from, n, to)),
        any::<usize>().prop_map(Edit::Truncate),
    ]
}

fn mutate(seed: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut out = seed.to_vec();
    for edit in edits {
        let len = out.len();
        let at = |i: usize| if len == 0 { 0 } else { i % (len + 1) };
        match edit {
            Edit::FlipBit(i, bit) if len > 0 => out[i % len] ^= 1 << bit,
            Edit::SetByte(i, b) if len > 0 => out[i % len] = *b,
            Edit::Delete(i, n) => {
                let start = at(*i);
                let end = (start + n).min(len);
                out.drain(start..end);
            }
            Edit::Insert(i, bytes) => {
                let start = at(*i);
                out.splice(start..start, bytes.iter().copied());
            }
            Edit::Duplicate(from, n, to) => {
                let start = at(*from);
                let end = (start + n).min(len);
                let piece = out[start..end].to_vec();
                let to = at(*to);
                out.splice(to..to, piece);
            }
            Edit::Truncate(i) => out.truncate(at(*i)),
            _ => {}
        }
    }
    out
}

/// A seed (by index into `seeds`) with up to 8 edits.
fn mutated(seeds: &'static [Vec<u8>]) -> impl Strategy<Value = Vec<u8>> {
    (0..seeds.len(), proptest::collection::vec(arb_edit(), 0..8))
        .prop_map(move |(i, edits)| mutate(&seeds[i], &edits))
}

fn audit_bytes() -> &'static [Vec<u8>] {
    static BYTES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    BYTES.get_or_init(|| audit_seeds().iter().map(|(_, b)| b.clone()).collect())
}

fn manifest_bytes() -> &'static [Vec<u8>] {
    static BYTES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    BYTES.get_or_init(|| manifest_seeds().iter().map(|(_, b)| b.clone()).collect())
}

/// `PROPTEST_CASES` when set, else `default`: for properties slower than the rest.
fn cases_or(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(default)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

// ---------------------------------------------------------------------------------------------
// Arbitrary values

/// Strings YAML 1.1 and 1.2 readers treat specially, and other troublemakers.
const TRICKY: &[&str] = &[
    "",
    " ",
    "yes",
    "No",
    "ON",
    "off",
    "y",
    "n",
    "true",
    "False",
    "null",
    "Null",
    "~",
    "0",
    "-0",
    "00",
    "0o17",
    "017",
    "0x1F",
    "0b101",
    "1e3",
    "1E-3",
    "+1",
    ".5",
    "1.",
    "1_000",
    "12:30:00",
    "190:20:30",
    "2001-12-14",
    "2001-12-14t21:59:43.10-05:00",
    ".inf",
    "-.Inf",
    ".NaN",
    "- a",
    "a: b",
    "a:b",
    "#c",
    "a #c",
    "'q'",
    "\"d\"",
    "@x",
    "`x",
    "%x",
    "!x",
    "!!str",
    "&a",
    "*a",
    "|",
    "|-",
    ">",
    "> x",
    "[a]",
    "{a: 1}",
    "?",
    "? x",
    "-",
    "--- x",
    "...",
    " lead",
    "trail ",
    "multi\nline",
    "multi\nline\n",
    "ends\n\n",
    "\n",
    "\nlead",
    "tab\there",
    "\t",
    "a\u{85}b",
    "\u{feff}x",
    "\u{2028}",
    "cr\rlf",
    "\r\n",
    "nul\u{0}",
    "esc\u{1b}[0m",
    "\\",
    "\"",
    "'",
    "日本語",
    "emoji 🚀",
    "<<",
    "=",
    "1:2",
    "0:0:0",
    "1,000",
    "0.1",
    "1e400",
];

fn arb_string() -> BoxedStrategy<String> {
    prop_oneof![
        3 => "[a-z0-9.-]{0,12}",
        2 => proptest::sample::select(TRICKY).prop_map(str::to_string),
        2 => any::<String>(),
        1 => proptest::collection::vec(proptest::sample::select(TRICKY), 1..4)
            .prop_map(|parts| parts.concat()),
    ]
    .boxed()
}

fn arb_number() -> BoxedStrategy<Value> {
    prop_oneof![
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        proptest::sample::select(vec![0.1, 1.0, -0.0, 1e21, 1e-7, 123456789.125, f64::MAX])
            .prop_map(|f| json!(f)),
    ]
    .boxed()
}

fn arb_json(depth: u32) -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        arb_number(),
        arb_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(depth, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            proptest::collection::btree_map(arb_key(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}

/// Keys: random ones, and the ones sanitize and equivalence look at.
fn arb_key() -> BoxedStrategy<String> {
    prop_oneof![
        3 => arb_string(),
        1 => proptest::sample::select(vec![
            "status", "creationTimestamp", "clusterIP", "clusterIPs", "nodeName", "replicas",
            "managedFields", "fieldsV1", "f:spec", "f:metadata", "manager", "operation",
            "resourceVersion", "uid", "generation", "selfLink", "annotations", "labels",
            "name", "namespace", "containers", "resources", "cpu", "memory", "image",
            "ownerReferences", "finalizers", "caBundle", "webhook", "clientConfig",
        ])
        .prop_map(str::to_string),
    ]
    .boxed()
}

/// Label and annotation keys, among them the ones sanitize drops and the hash annotation.
fn arb_meta_key() -> BoxedStrategy<String> {
    prop_oneof![
        2 => "[a-z]{1,6}(\\.[a-z]{1,4}/)?[a-z-]{1,8}",
        1 => proptest::sample::select(vec![
            "kubectl.kubernetes.io/last-applied-configuration",
            "kubectl.kubernetes.io/restartedAt",
            "deployment.kubernetes.io/revision",
            "kustomize.toolkit.fluxcd.io/name",
            "kustomize.toolkit.fluxcd.io/namespace",
            "argocd.argoproj.io/tracking-id",
            "app.kubernetes.io/instance",
            HASH_ANNOTATION,
        ])
        .prop_map(str::to_string),
        1 => arb_string(),
    ]
    .boxed()
}

/// Something shaped like a live Kubernetes object, with random content where it may vary.
fn arb_object() -> BoxedStrategy<Value> {
    let type_meta = proptest::sample::select(vec![
        ("v1", "ConfigMap"),
        ("v1", "Service"),
        ("v1", "Pod"),
        ("v1", "Namespace"),
        ("v1", "PersistentVolumeClaim"),
        ("v1", "Secret"),
        ("apps/v1", "Deployment"),
        ("apps/v1", "StatefulSet"),
        ("batch/v1", "Job"),
        ("batch/v1", "CronJob"),
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
        (
            "admissionregistration.k8s.io/v1",
            "ValidatingWebhookConfiguration",
        ),
        ("example.com/v1", "Widget"),
    ]);
    let meta_map = || {
        proptest::collection::btree_map(arb_meta_key(), arb_string().prop_map(Value::String), 0..5)
    };
    (
        type_meta,
        "[a-z0-9]([-a-z0-9.]{0,20}[a-z0-9])?",
        proptest::option::of("[a-z0-9-]{1,12}"),
        meta_map(),
        meta_map(),
        proptest::collection::btree_map(arb_key(), arb_json(2), 0..4),
        proptest::collection::btree_map(arb_key(), arb_json(3), 0..6),
    )
        .prop_map(
            |((api_version, kind), name, namespace, labels, annotations, extra_meta, rest)| {
                let mut metadata = Map::new();
                metadata.insert("name".into(), json!(name));
                if let Some(ns) = namespace {
                    metadata.insert("namespace".into(), json!(ns));
                }
                if !labels.is_empty() {
                    metadata.insert("labels".into(), json!(labels));
                }
                if !annotations.is_empty() {
                    metadata.insert("annotations".into(), json!(annotations));
                }
                for (k, v) in extra_meta {
                    // Kubernetes only stores maps of strings there.
                    if !["name", "namespace", "labels", "annotations"].contains(&k.as_str()) {
                        metadata.entry(k).or_insert(v);
                    }
                }
                let mut obj = Map::new();
                for (k, v) in rest {
                    obj.insert(k, v);
                }
                obj.insert("apiVersion".into(), json!(api_version));
                obj.insert("kind".into(), json!(kind));
                obj.insert("metadata".into(), Value::Object(metadata));
                Value::Object(obj)
            },
        )
        .boxed()
}

/// A real object from the seeds with one random field set somewhere inside.
fn arb_seed_object() -> BoxedStrategy<Value> {
    let objects: Vec<Value> = manifest_seeds()
        .iter()
        .filter_map(|(path, bytes)| {
            parse_documents(std::str::from_utf8(bytes).ok()?, &path.to_string_lossy()).ok()
        })
        .flatten()
        .filter(|v| v.get("metadata").is_some())
        .collect();
    assert!(objects.len() > 10, "only {} seed objects", objects.len());
    (
        proptest::sample::select(objects),
        proptest::collection::vec(any::<prop::sample::Index>(), 1..6),
        arb_json(2),
    )
        .prop_map(|(mut obj, path, value)| {
            set_somewhere(&mut obj, &path, value);
            obj
        })
        .boxed()
}

/// Walks down `path` (each index picks a child) and replaces the value where the walk ends (at a
/// leaf, an empty container, or the end of the path). The top level itself is never replaced.
fn set_somewhere(obj: &mut Value, path: &[prop::sample::Index], value: Value) {
    if let Some((first, rest)) = path.split_first()
        && has_children(obj)
        && let Some(child) = child_at(obj, first)
    {
        set_in(child, rest, value);
    }
}

fn set_in(at: &mut Value, path: &[prop::sample::Index], value: Value) {
    match path.split_first() {
        Some((index, rest)) if has_children(at) => {
            if let Some(child) = child_at(at, index) {
                set_in(child, rest, value);
            }
        }
        _ => *at = value,
    }
}

fn has_children(v: &Value) -> bool {
    match v {
        Value::Object(map) => !map.is_empty(),
        Value::Array(items) => !items.is_empty(),
        _ => false,
    }
}

fn child_at<'a>(v: &'a mut Value, index: &prop::sample::Index) -> Option<&'a mut Value> {
    match v {
        Value::Object(map) => {
            let key = map.keys().nth(index.index(map.len().max(1)))?.clone();
            map.get_mut(&key)
        }
        Value::Array(items) => {
            let i = index.index(items.len().max(1));
            items.get_mut(i)
        }
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// 1. The audit log reader (src/audit/read.rs): files given to `replay`

/// Reads everything with the streaming reader and with `read_events`; they must agree.
fn read_all(bytes: &[u8]) -> Result<(usize, usize), String> {
    let mut events = 0;
    let mut malformed = 0;
    for entry in AuditReader::new(bytes, "fuzz") {
        match entry {
            Ok(Entry::Event { .. }) => events += 1,
            Ok(Entry::Malformed(m)) => {
                assert!(m.to_string().starts_with("fuzz: "), "{m}");
                malformed += 1;
            }
            Err(e) => {
                assert!(e.to_string().starts_with("fuzz"), "{e}");
                return Err(e.to_string());
            }
        }
    }
    Ok((events, malformed))
}

fn check_reader(bytes: &[u8]) -> Result<(), TestCaseError> {
    let streamed = read_all(bytes);
    let whole = read_events(bytes, "fuzz");
    match (&streamed, &whole) {
        (Ok((events, malformed)), Ok(input)) => {
            prop_assert_eq!(*events, input.events.len());
            prop_assert_eq!(*malformed, input.malformed.len());
        }
        (Err(a), Err(b)) => prop_assert_eq!(a, &b.to_string()),
        _ => prop_assert!(false, "streamed {streamed:?} but read_events {whole:?}"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(Config::default())]

    #[test]
    fn audit_reader_takes_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        check_reader(&bytes)?;
    }

    #[test]
    fn audit_reader_takes_mutated_audit_files(bytes in mutated(audit_bytes())) {
        check_reader(&bytes)?;
    }

    #[test]
    fn audit_reader_takes_mutated_gzip(bytes in mutated(audit_bytes()), cut in any::<prop::sample::Index>()) {
        // Whole gzip members of mutated files, and a member cut short anywhere.
        let packed = gzip(&bytes);
        check_reader(&packed)?;
        check_reader(&packed[..cut.index(packed.len() + 1)])?;
    }

    /// A bad line in a JSON lines log loses nothing else: every event is read, in order, and
    /// each bad line is reported once.
    #[test]
    fn a_bad_line_loses_no_event(
        picks in proptest::collection::vec(any::<prop::sample::Index>(), 1..12),
        garbage in proptest::collection::vec((any::<prop::sample::Index>(), "[^\n\r]{0,40}"), 0..6),
    ) {
        let seeds = seed_events();
        let events: Vec<&AuditEvent> = picks.iter().map(|i| &seeds[i.index(seeds.len())]).collect();
        let mut lines: Vec<String> = events
            .iter()
            .map(|e| serde_json::to_string(e).expect("event"))
            .collect();
        // Garbage never comes first: the first line decides the format.
        for (at, text) in &garbage {
            lines.insert(1 + at.index(lines.len()), format!("#{text}"));
        }
        let input = lines.join("\n");
        let read = read_events(input.as_bytes(), "log").expect("an audit log");
        prop_assert_eq!(read.events.len(), events.len());
        for (read, written) in read.events.iter().zip(&events) {
            prop_assert_eq!(read, *written);
        }
        prop_assert_eq!(read.malformed.len(), garbage.len());
    }
}

// ---------------------------------------------------------------------------------------------
// 2. The webhooks' bodies (src/attribution/webhook.rs): what the API server (or anyone who can
//    reach the port with a valid client certificate) POSTs

fn event_list_body(events: &[Value]) -> Vec<u8> {
    json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": events})
        .to_string()
        .into_bytes()
}

fn check_event_list(body: &[u8]) -> Result<(), TestCaseError> {
    match parse_event_list(body) {
        Ok(events) => {
            let index = FactIndex::default();
            let done = ingest_events(&index, &events);
            prop_assert_eq!(done.used + done.skipped, events.len() as u64);
            prop_assert!(done.facts > 0 || index.is_empty());
        }
        Err(refused) => {
            prop_assert!(refused.status.is_client_error(), "{refused}");
        }
    }
    Ok(())
}

fn arb_event_list() -> BoxedStrategy<Vec<u8>> {
    let events = seed_events();
    (
        proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
        proptest::collection::vec(
            (
                any::<prop::sample::Index>(),
                proptest::collection::vec(any::<prop::sample::Index>(), 1..5),
                arb_json(2),
            ),
            0..4,
        ),
    )
        .prop_map(move |(picks, changes)| {
            let mut items: Vec<Value> = picks
                .iter()
                .map(|i| {
                    let mut e =
                        serde_json::to_value(&events[i.index(events.len())]).expect("event");
                    // The webhook requires these; the copied logs sometimes lack an auditID.
                    if e.get("auditID").is_none() {
                        e["auditID"] = json!(format!("fuzz-{}", i.index(1 << 20)));
                    }
                    e
                })
                .collect();
            if !items.is_empty() {
                for (which, path, value) in changes {
                    let n = items.len();
                    set_somewhere(&mut items[which.index(n)], &path, value);
                }
            }
            event_list_body(&items)
        })
        .boxed()
}

proptest! {
    #![proptest_config(Config::default())]

    #[test]
    fn audit_webhook_takes_any_body(body in proptest::collection::vec(any::<u8>(), 0..1024)) {
        check_event_list(&body)?;
    }

    #[test]
    fn audit_webhook_takes_mutated_event_lists(
        list in arb_event_list(),
        edits in proptest::collection::vec(arb_edit(), 0..6),
    ) {
        check_event_list(&mutate(&list, &edits))?;
    }

    #[test]
    fn audit_webhook_takes_event_lists_with_odd_fields(list in arb_event_list()) {
        check_event_list(&list)?;
    }

    #[test]
    fn admission_webhook_takes_any_body(body in proptest::collection::vec(any::<u8>(), 0..1024)) {
        check_admission(&body)?;
    }

    #[test]
    fn admission_webhook_takes_mutated_reviews(body in mutated(admission_seeds())) {
        check_admission(&body)?;
    }

    /// CREATE and UPDATE give the content hash of the object as it will be stored: the hash of
    /// the sanitized object, whatever the object holds.
    #[test]
    fn admission_fact_is_the_hash_of_the_sanitized_object(
        object in prop_oneof![arb_object(), arb_seed_object()],
        operation in proptest::sample::select(vec!["CREATE", "UPDATE", "DELETE", "CONNECT"]),
        user in arb_json(2),
        old in proptest::option::of(arb_json(2)),
    ) {
        let body = json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "u-1",
                "operation": operation,
                "userInfo": user,
                "object": object,
                "oldObject": old,
                "name": object.pointer("/metadata/name"),
                "namespace": object.pointer("/metadata/namespace"),
                "resource": {"group": "", "version": "v1", "resource": "things"},
            }
        });
        let body = body.to_string().into_bytes();
        // The watch reads the stored object from the same kind of JSON text.
        let watched: Value = serde_json::from_str(&object.to_string()).expect("json");
        let Ok((review, uid)) = parse_admission_review(&body) else {
            // A userInfo of the wrong shape is refused: fine, as long as it is a 4xx.
            return check_admission(&body);
        };
        prop_assert_eq!(uid, "u-1");
        let request = review.request.expect("request");
        let fact = admission_fact(&request, jiff::Timestamp::UNIX_EPOCH);
        match operation {
            "CREATE" | "UPDATE" => {
                let (_, keys) = fact.expect("a fact");
                prop_assert_eq!(keys, vec![FactKey::Hash(content_hash(&sanitized(&watched)))]);
            }
            // A delete with a name is always a fact (keyed by that name, and the uid if known).
            "DELETE" if request.name.as_deref().is_some_and(|n| !n.is_empty()) => {
                prop_assert!(fact.is_ok(), "{fact:?}");
            }
            "DELETE" => {}
            _ => prop_assert!(matches!(fact, Err(AdmissionIgnored::Operation))),
        }
    }
}

fn check_admission(body: &[u8]) -> Result<(), TestCaseError> {
    match parse_admission_review(body) {
        Ok((review, uid)) => {
            prop_assert!(!uid.is_empty());
            let request = review.request.expect("a parsed review has a request");
            let _ = admission_fact(&request, jiff::Timestamp::UNIX_EPOCH);
        }
        Err(refused) => prop_assert!(refused.status.is_client_error(), "{refused}"),
    }
    Ok(())
}

// The same bodies through the real HTTPS server: any method, path, content type and body, with
// or without the API server's client certificate, gets a well-formed 2xx or 4xx answer (never a
// 5xx, a hang or a dead server), and a valid batch is still accepted right after.

struct LiveWebhook {
    runtime: tokio::runtime::Runtime,
    _pki: crate::attribution::Pki,
    _server: gitops_reverser::attribution::WebhookServer,
    addr: std::net::SocketAddr,
    with_cert: std::sync::Arc<rustls::ClientConfig>,
    without_cert: std::sync::Arc<rustls::ClientConfig>,
}

/// Bodies above this are refused with a 413 (kept small so that the limit is exercised).
const LIVE_MAX_BODY: usize = 16 * 1024;

fn live_webhook() -> &'static LiveWebhook {
    static LIVE: OnceLock<LiveWebhook> = OnceLock::new();
    LIVE.get_or_init(|| {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let pki = crate::attribution::pki();
        let (server, _index) = runtime.block_on(crate::attribution::start(&pki, LIVE_MAX_BODY));
        let addr = server.local_addr();
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).expect("CA"))
            .expect("root");
        let builder = || {
            rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots.clone())
        };
        let chain =
            vec![CertificateDer::from_pem_slice(pki.client_cert_pem.as_bytes()).expect("cert")];
        let key = PrivateKeyDer::from_pem_slice(pki.client_key_pem.as_bytes()).expect("key");
        let with_cert = std::sync::Arc::new(
            builder()
                .with_client_auth_cert(chain, key)
                .expect("client auth"),
        );
        let without_cert = std::sync::Arc::new(builder().with_no_client_auth());
        LiveWebhook {
            runtime,
            _pki: pki,
            _server: server,
            addr,
            with_cert,
            without_cert,
        }
    })
}

/// Sends one request (`Connection: close`) and returns the status and body of the answer.
fn send(request: &[u8], client_cert: bool) -> Result<(u16, String), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let live = live_webhook();
    let config = if client_cert {
        &live.with_cert
    } else {
        &live.without_cert
    };
    let connector = tokio_rustls::TlsConnector::from(config.clone());
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(live.addr)
            .await
            .map_err(|e| e.to_string())?;
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
        let mut tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        // The server may answer (and close) before reading all of a refused body.
        let _ = tls.write_all(request).await;
        let _ = tls.flush().await;
        let mut raw = Vec::new();
        let _ = tls.read_to_end(&mut raw).await;
        let text = String::from_utf8_lossy(&raw).to_string();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("no HTTP status in {text:?}"))?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Ok((status, body))
    };
    live.runtime
        .block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(10), exchange).await
        })
        .map_err(|_| "no answer within 10 s".to_string())?
}

fn request(method: &str, path: &str, content_type: Option<&str>, body: &[u8]) -> Vec<u8> {
    let content_type = content_type
        .map(|c| format!("Content-Type: {c}\r\n"))
        .unwrap_or_default();
    let mut out = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{content_type}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

fn arb_webhook_body() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        arb_event_list(),
        (
            arb_event_list(),
            proptest::collection::vec(arb_edit(), 1..6)
        )
            .prop_map(|(b, e)| mutate(&b, &e)),
        mutated(admission_seeds()),
        proptest::collection::vec(any::<u8>(), 0..512),
        (0..3usize).prop_map(|n| vec![b'{'; LIVE_MAX_BODY + n]),
    ]
    .boxed()
}

proptest! {
    #![proptest_config(Config::with_cases(cases_or(64)))]

    #[test]
    fn the_webhook_server_answers_every_request_with_a_2xx_or_4xx(
        method in proptest::sample::select(vec!["POST", "POST", "POST", "GET", "PUT", "DELETE"]),
        path in prop_oneof![
            3 => proptest::sample::select(vec!["/audit", "/admission"]).prop_map(str::to_string),
            1 => proptest::sample::select(vec!["/", "/audit/", "/admission?x=1", "/metrics", "//audit", "/%61udit"]).prop_map(str::to_string),
        ],
        content_type in proptest::option::of(proptest::sample::select(vec![
            "application/json", "application/json; charset=utf-8", "APPLICATION/JSON", "text/plain",
            "application/yaml", "", "application/json;;;",
        ])),
        body in arb_webhook_body(),
        client_cert in any::<bool>(),
    ) {
        let (status, answer) = send(&request(method, &path, content_type, &body), client_cert)
            .map_err(TestCaseError::fail)?;
        prop_assert!((200..300).contains(&status) || (400..500).contains(&status), "{status}: {answer}");
        prop_assert!(serde_json::from_str::<Value>(&answer).is_ok(), "{status}: not JSON: {answer:?}");
        // The server is still there, and still takes a valid batch.
        let valid = event_list_body(&[]);
        let (status, answer) = send(&request("POST", "/audit", Some("application/json"), &valid), true)
            .map_err(TestCaseError::fail)?;
        prop_assert_eq!(status, 200, "{}", answer);
    }
}

/// Batches as the API server sends them: copied events that have what an audit.k8s.io Event
/// always has.
fn arb_valid_event_list() -> BoxedStrategy<(Vec<u8>, usize)> {
    let events: Vec<Value> = seed_events()
        .iter()
        .filter(|e| e.stage().is_some() && e.verb().is_some())
        .enumerate()
        .map(|(i, e)| {
            let mut v = serde_json::to_value(e).expect("event");
            if v.get("auditID").is_none() {
                v["auditID"] = json!(format!("fuzz-{i}"));
            }
            v
        })
        .collect();
    proptest::collection::vec(proptest::sample::select(events), 0..12)
        .prop_map(|items| (event_list_body(&items), items.len()))
        .boxed()
}

proptest! {
    #![proptest_config(Config::with_cases(cases_or(64)))]

    /// What the API server sends is always taken: every event of a batch is accepted (or, with
    /// a full queue, shed and counted), every AdmissionReview is allowed with its own uid.
    #[test]
    fn the_webhook_server_takes_what_the_api_server_sends(
        audit in arb_valid_event_list(),
        review in proptest::sample::select(admission_seeds()),
        charset in any::<bool>(),
    ) {
        let content_type = if charset { "application/json; charset=utf-8" } else { "application/json" };
        let (batch, n) = audit;
        let (status, answer) = send(&request("POST", "/audit", Some(content_type), &batch), true)
            .map_err(TestCaseError::fail)?;
        prop_assert_eq!(status, 200, "{}", answer);
        let answer: Value = serde_json::from_str(&answer).expect("JSON");
        let taken = answer["accepted"].as_u64().unwrap_or(0) + answer["shed"].as_u64().unwrap_or(0);
        prop_assert_eq!(taken, n as u64, "{}", answer);

        let (status, answer) = send(&request("POST", "/admission", Some(content_type), &review), true)
            .map_err(TestCaseError::fail)?;
        prop_assert_eq!(status, 200, "{}", answer);
        let answer: Value = serde_json::from_str(&answer).expect("JSON");
        let sent: Value = serde_json::from_slice(&review).expect("seed");
        prop_assert_eq!(&answer["response"]["uid"], &sent["request"]["uid"]);
        prop_assert_eq!(&answer["response"]["allowed"], &json!(true));
        prop_assert_eq!(&answer["kind"], "AdmissionReview");
    }
}

// ---------------------------------------------------------------------------------------------
// 3. YAML documents from Git (src/manifest/yaml.rs): files anyone with push access writes

proptest! {
    #![proptest_config(Config::default())]

    #[test]
    fn yaml_reader_takes_any_text(text in any::<String>()) {
        let _ = parse_documents(&text, "fuzz");
        let _ = parse_single_document(text.as_bytes(), "fuzz");
    }

    #[test]
    fn yaml_reader_takes_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        let _ = parse_single_document(&bytes, "fuzz");
    }

    #[test]
    fn yaml_reader_takes_mutated_manifests(bytes in mutated(manifest_bytes())) {
        if let Ok(text) = std::str::from_utf8(&bytes)
            && let Err(e) = parse_documents(text, "fuzz.yaml")
        {
            prop_assert!(e.to_string().starts_with("fuzz.yaml: "), "{e}");
        }
        let _ = parse_single_document(&bytes, "fuzz.yaml");
    }

    /// Whatever the agent writes, it reads back as the same document.
    #[test]
    fn written_yaml_reads_back_the_same(doc in prop_oneof![arb_object(), arb_seed_object()]) {
        let text = to_yaml(&doc).expect("writable");
        let back = parse_single_document(text.as_bytes(), "written");
        prop_assert_eq!(back.as_ref(), Some(&doc), "written as:\n{}", text);
    }

    /// Any JSON value, not only objects, survives writing and reading.
    #[test]
    fn written_yaml_of_any_value_reads_back_the_same(doc in arb_json(4)) {
        let text = to_yaml(&json!({"apiVersion": "v1", "kind": "ConfigMap", "data": doc.clone()})).expect("writable");
        let back = parse_single_document(text.as_bytes(), "written");
        prop_assert_eq!(back.as_ref().and_then(|b| b.get("data")), Some(&doc), "written as:\n{}", text);
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Sanitize, hash and equivalence (src/manifest/) on arbitrary objects

/// Whether the API server could hold this object's metadata: labels and annotations, when
/// present, are maps of strings.
fn storable(obj: &Value) -> bool {
    let Some(metadata) = obj.get("metadata").and_then(Value::as_object) else {
        return false;
    };
    ["labels", "annotations"]
        .iter()
        .all(|section| match metadata.get(*section) {
            None => true,
            Some(Value::Object(map)) => map.values().all(Value::is_string),
            Some(_) => false,
        })
}

fn check_object(live: &Value) -> Result<(), TestCaseError> {
    // Sanitize is idempotent.
    let once = sanitized(live);
    prop_assert_eq!(&sanitized(&once), &once);
    let hash = content_hash(&once);
    // An object is equivalent to its own rendering: what the agent would write, read back. (For
    // objects the API server could store: labels and annotations are maps of strings.)
    match prepare(live.clone(), &ExclusionPolicy::default()) {
        Ok(Outcome::Kept(manifest)) if storable(live) => {
            prop_assert_eq!(annotated_hash(&manifest.doc), Some(manifest.hash));
            prop_assert_eq!(manifest.hash, hash);
            let text = to_yaml(&manifest.doc).expect("writable");
            let file = parse_single_document(text.as_bytes(), "file").expect("readable");
            prop_assert_eq!(&file, &manifest.doc, "written as:\n{}", text);
            let verdict = compare(&file, live);
            prop_assert!(
                verdict.is_equivalent(),
                "{verdict}\nfile:\n{text}\nlive: {live}"
            );
            // Applied back, the file is the same object: its hash annotation verifies.
            prop_assert_eq!(verified_hash_annotation(&file), Some(manifest.hash));
        }
        Ok(Outcome::Kept(manifest)) => {
            let text = to_yaml(&manifest.doc).expect("writable");
            let file = parse_single_document(text.as_bytes(), "file").expect("readable");
            prop_assert_eq!(&file, &manifest.doc, "written as:\n{}", text);
        }
        Ok(Outcome::Skipped { .. }) | Err(_) => {}
    }
    // Comparing anything with anything does not panic.
    let _ = compare(live, &once);
    Ok(())
}

proptest! {
    #![proptest_config(Config::default())]

    #[test]
    fn random_objects_sanitize_hash_and_compare(live in arb_object()) {
        check_object(&live)?;
    }

    #[test]
    fn mutated_real_objects_sanitize_hash_and_compare(live in arb_seed_object()) {
        check_object(&live)?;
    }

    #[test]
    fn any_json_sanitizes_and_compares(a in arb_json(4), b in arb_json(4)) {
        let once = sanitized(&a);
        prop_assert_eq!(&sanitized(&once), &once);
        let _ = content_hash(&a);
        let _ = compare(&a, &b);
        let _ = compare(&a, &a);
        let _ = prepare(a, &ExclusionPolicy::default());
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Repository URLs (src/git/url.rs) and credential Secrets (src/git/credentials.rs)

/// A password of characters RFC 3986 allows in user-info, long enough not to occur by chance.
fn arb_password() -> impl Strategy<Value = String> {
    "S3cr[A-Za-z0-9._~!$&'()*+,;=%-]{6,20}"
}

fn arb_host() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z][a-zA-Z0-9-]{0,10}(\\.[a-zA-Z]{2,5}){0,2}",
        Just("[::1]".to_string()),
        Just("127.0.0.1".to_string()),
    ]
}

proptest! {
    #![proptest_config(Config::default())]

    #[test]
    fn url_parsing_takes_any_text(url in any::<String>()) {
        let redacted = redact(&url);
        match NormalizedUrl::parse(&url) {
            Ok(normalized) => prop_assert!(!normalized.as_str().is_empty()),
            Err(e) => prop_assert_eq!(e.url, redacted),
        }
    }

    #[test]
    fn url_parsing_takes_url_shaped_text(
        url in "(([a-zA-Z+]{1,8}://)?([a-z:@%]{0,8}@)?([a-zA-Z0-9.-]{0,16}|\\[[0-9a-f:]{2,8}\\])(:[0-9]{0,6})?[/:][a-zA-Z0-9./~_-]{0,16})"
    ) {
        if let Ok(normalized) = NormalizedUrl::parse(&url) {
            // A key is a URL itself and names the same repository when read again.
            let again = NormalizedUrl::parse(normalized.as_str());
            prop_assert_eq!(again.as_ref(), Ok(&normalized), "{}", url);
        }
    }

    /// No password of an http(s) or ssh URL reaches the worker key, a redacted URL or an error.
    #[test]
    fn no_password_survives_parsing_or_redaction(
        scheme in proptest::sample::select(vec!["https", "http", "ssh", "HTTPS", "git+ssh"]),
        user in "[a-z][a-z0-9._-]{0,8}",
        password in arb_password(),
        host in arb_host(),
        port in proptest::option::of(prop_oneof![Just("22".to_string()), Just("443".to_string()), "[0-9]{1,7}", Just(String::new())]),
        path in "(/[a-zA-Z0-9._~-]{0,10}){0,3}(\\.git)?/?",
    ) {
        let port = port.map(|p| format!(":{p}")).unwrap_or_default();
        let url = format!("{scheme}://{user}:{password}@{host}{port}{path}");
        let redacted = redact(&url);
        prop_assert!(!redacted.contains(&password), "{url} redacted as {redacted}");
        match NormalizedUrl::parse(&url) {
            Ok(key) => prop_assert!(!key.as_str().contains(&password), "{url} → {key}"),
            Err(e) => prop_assert!(!e.to_string().contains(&password), "{url} → {e}"),
        }
    }

    /// Spellings of one repository give one key: scheme and host case, default ports, `.git`,
    /// trailing slashes, and credentials in http(s) URLs.
    #[test]
    fn spellings_of_one_repository_give_one_key(
        host in "[a-z][a-z0-9-]{0,10}(\\.[a-z]{2,5}){0,2}",
        path in "(/[a-zA-Z0-9_~-][a-zA-Z0-9._~-]{0,10}){1,3}"
            .prop_filter("a path that ends in .git is another repository", |p| !p.ends_with(".git")),
        password in arb_password(),
    ) {
        let plain = NormalizedUrl::parse(&format!("https://{host}{path}")).expect("a URL");
        for spelling in [
            format!("HTTPS://{}{path}", host.to_uppercase()),
            format!("https://{host}:443{path}.git"),
            format!("https://{host}{path}/"),
            format!("https://{host}{path}.git/"),
            format!("https://bot:{password}@{host}{path}"),
        ] {
            let key = NormalizedUrl::parse(&spelling).expect("a URL");
            prop_assert_eq!(&key, &plain, "{}", spelling);
        }
        let scp = NormalizedUrl::parse(&format!("git@{host}:{}.git", path.trim_start_matches('/'))).expect("scp-style");
        let ssh = NormalizedUrl::parse(&format!("ssh://git@{host}:22{path}")).expect("ssh URL");
        prop_assert_eq!(scp, ssh);
    }
}

const KEY_NAMES: &[&str] = &[
    "ssh-privatekey",
    "identity",
    "sshPrivateKey",
    "known_hosts",
    "ssh_known_hosts",
    "username",
    "password",
    "bearerToken",
    "identity.pub",
    "url",
    "type",
];

fn openssh_key(cipher: &[u8], tail: &[u8]) -> String {
    use base64::Engine;
    let mut body = b"openssh-key-v1\0".to_vec();
    body.extend_from_slice(&(cipher.len() as u32).to_be_bytes());
    body.extend_from_slice(cipher);
    body.extend_from_slice(tail);
    let encoded = base64::engine::general_purpose::STANDARD.encode(body);
    let lines: Vec<&str> = encoded
        .as_bytes()
        .chunks(70)
        .map(|c| std::str::from_utf8(c).expect("base64"))
        .collect();
    format!(
        "-----BEGIN OPENSSH PRIVATE KEY-----\n{}\n-----END OPENSSH PRIVATE KEY-----\n",
        lines.join("\n")
    )
}

fn arb_secret_value() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        arb_string().prop_map(String::into_bytes),
        Just(b"S3crETvalue-do-not-log\n".to_vec()),
        (proptest::collection::vec(any::<u8>(), 0..12), proptest::collection::vec(any::<u8>(), 0..40))
            .prop_map(|(cipher, tail)| openssh_key(&cipher, &tail).into_bytes()),
        proptest::collection::vec(any::<u8>(), 0..80).prop_map(|bytes| {
            use base64::Engine;
            format!(
                "-----BEGIN OPENSSH PRIVATE KEY-----\n{}\n-----END OPENSSH PRIVATE KEY-----",
                base64::engine::general_purpose::STANDARD.encode(bytes)
            )
            .into_bytes()
        }),
        Just(b"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nAAAA\n-----END RSA PRIVATE KEY-----\n".to_vec()),
        "[a-z.]{1,10} ssh-(ed25519|rsa) [A-Za-z0-9+/=]{4,40}\n?".prop_map(String::into_bytes),
    ]
    .boxed()
}

proptest! {
    #![proptest_config(Config::default())]

    /// Any Secret: no panic, and no value ever appears in an error message or a `Debug` print.
    #[test]
    fn credential_secrets_never_leak_a_value(
        data in proptest::collection::btree_map(
            prop_oneof![3 => proptest::sample::select(KEY_NAMES).prop_map(str::to_string), 1 => "[a-z_.-]{1,12}"],
            arb_secret_value(),
            0..6,
        ),
    ) {
        const SECRET_KEYS: [&str; 5] = ["password", "ssh-privatekey", "identity", "sshPrivateKey", "bearerToken"];
        let text = |v: &Vec<u8>| String::from_utf8_lossy(v).trim().to_string();
        // What may be shown: key names, and the values of keys that are not secret.
        let public: Vec<String> = data
            .iter()
            .flat_map(|(k, v)| {
                let value = if SECRET_KEYS.contains(&k.as_str()) { String::new() } else { text(v) };
                [k.clone(), value]
            })
            .chain(KEY_NAMES.iter().map(|k| k.to_string()))
            .collect();
        let secrets: Vec<String> = data
            .iter()
            .filter(|(k, _)| SECRET_KEYS.contains(&k.as_str()))
            .map(|(_, v)| text(v))
            .filter(|v| v.len() >= 8 && !public.iter().any(|p| p.contains(v.as_str())))
            .collect();
        let shown = match Credentials::from_secret_data(&data) {
            Ok(credentials) => format!("{credentials:?}"),
            Err(e) => format!("{e} {e:?}"),
        };
        for secret in &secrets {
            prop_assert!(!shown.contains(secret.as_str()), "{shown} shows {secret:?}");
        }
    }

    /// An OpenSSH key is accepted exactly when its cipher is `none`.
    #[test]
    fn openssh_keys_are_accepted_only_unencrypted(
        cipher in prop_oneof![Just(b"none".to_vec()), Just(b"aes256-ctr".to_vec()), proptest::collection::vec(any::<u8>(), 0..12)],
        // Real keys are hundreds of bytes: the header is always followed by more.
        tail in proptest::collection::vec(any::<u8>(), 64..200),
        key_name in proptest::sample::select(vec!["ssh-privatekey", "identity", "sshPrivateKey"]),
    ) {
        let data = BTreeMap::from([
            (key_name.to_string(), openssh_key(&cipher, &tail).into_bytes()),
            ("known_hosts".to_string(), b"example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI\n".to_vec()),
        ]);
        let read = Credentials::from_secret_data(&data);
        if cipher == b"none" {
            prop_assert!(matches!(read, Ok(Credentials::Ssh { .. })), "{read:?}");
        } else {
            prop_assert_eq!(read, Err(CredentialsError::EncryptedKey { key: match key_name {
                "ssh-privatekey" => "ssh-privatekey",
                "identity" => "identity",
                _ => "sshPrivateKey",
            } }));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 6. Packs the engine writes (src/git/pack.rs), read by gix (the engine) and by git

fn arb_pack_objects() -> impl Strategy<Value = Vec<(gix::objs::Kind, Vec<u8>)>> {
    let size = prop_oneof![
        0..64usize,
        proptest::sample::select(vec![
            15usize, 16, 127, 128, 2047, 2048, 2049, 16383, 16384, 65536
        ]),
        0..20_000usize,
    ];
    let data = (size, any::<u8>(), any::<bool>()).prop_flat_map(|(len, fill, random)| {
        if random {
            proptest::collection::vec(any::<u8>(), len).boxed()
        } else {
            Just(vec![fill; len]).boxed()
        }
    });
    let kind = proptest::sample::select(vec![
        gix::objs::Kind::Blob,
        gix::objs::Kind::Blob,
        gix::objs::Kind::Tree,
        gix::objs::Kind::Commit,
        gix::objs::Kind::Tag,
    ]);
    proptest::collection::vec((kind, data), 1..16)
}

proptest! {
    // Each case writes a pack and runs git: fewer cases by default.
    #![proptest_config(Config::with_cases(cases_or(64)))]

    #[test]
    fn packs_the_engine_writes_read_back(objects in arb_pack_objects()) {
        let dir = tempfile::tempdir().expect("tempdir");
        gix::init_bare(dir.path()).expect("bare repository");
        let mut pack = PackWriter::new(dir.path()).expect("pack");
        let mut written = BTreeMap::new();
        for (kind, data) in &objects {
            let id = gix::objs::compute_hash(gix::hash::Kind::Sha1, *kind, data).expect("id");
            // The engine never adds an object twice.
            if written.insert(id, (*kind, data.clone())).is_none() {
                pack.add(*kind, id, data).expect("add");
            }
        }
        prop_assert!(pack.finish().expect("finish").is_some());
        let repo = gix::open(dir.path()).expect("open");
        for (id, (kind, data)) in &written {
            let object = repo.find_object(*id).expect("object in pack");
            prop_assert_eq!(object.kind, *kind);
            prop_assert_eq!(&object.data, data);
        }
        // git checks the pack and its index (checksums, CRCs, offsets, sizes).
        let packs: Vec<PathBuf> = std::fs::read_dir(dir.path().join("objects/pack"))
            .expect("pack dir")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "idx"))
            .collect();
        prop_assert_eq!(packs.len(), 1);
        let out = std::process::Command::new("git")
            .arg("verify-pack")
            .arg(&packs[0])
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .output()
            .expect("git");
        prop_assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        if written.values().all(|(kind, _)| *kind == gix::objs::Kind::Blob) {
            let fsck = std::process::Command::new("git")
                .args(["--git-dir"])
                .arg(dir.path())
                .args(["fsck", "--strict", "--no-dangling"])
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .output()
                .expect("git");
            prop_assert!(fsck.status.success(), "{}", String::from_utf8_lossy(&fsck.stderr));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 7. File paths (src/manifest/layout.rs): names, namespaces and groups chosen by whoever creates
//    the objects must never lead a file out of its folder, nor two objects into one file

fn arb_template() -> impl Strategy<Value = PathTemplate> {
    (
        proptest::sample::select(vec!["{resource}", "{kind}", "r-{resource}"]),
        proptest::collection::vec(
            proptest::sample::select(vec!["{version}", "static", "v{version}", "_{kind}"]),
            0..2,
        ),
        proptest::sample::select(vec!["{name}.yaml", "{name}.yml", "obj-{name}.yaml"]),
    )
        .prop_flat_map(|(kind_or_resource, extra, file)| {
            let mut segments = vec!["{namespace}", "{group}", kind_or_resource];
            segments.extend(extra);
            Just(segments).prop_shuffle().prop_map(move |mut segments| {
                segments.push(file);
                segments.join("/")
            })
        })
        .prop_map(|template| PathTemplate::parse(&template).expect("a valid template"))
}

/// Values as anyone may choose them (names are validated by the API server, but group, kind and
/// resource of a custom resource, and values read from Git or audit logs, are free text).
fn arb_segment_value() -> BoxedStrategy<String> {
    prop_oneof![
        2 => arb_string(),
        1 => proptest::sample::select(vec![
            "..", ".", "../..", "/", "a/../../b", "%2E%2E", "%", "", "~", "a~0123456789abcdef",
            "\\", "C:", "\u{0}", "kube-system", "system:view",
        ])
        .prop_map(str::to_string),
        1 => "[a-z.%~/-]{150,260}",
    ]
    .boxed()
}

fn location(v: &[String], namespaced: bool) -> Location<'_> {
    Location {
        group: &v[0],
        version: &v[1],
        kind: &v[2],
        resource: &v[3],
        namespace: namespaced.then_some(v[4].as_str()),
        name: &v[5],
    }
}

fn stays_inside(folder: &str, path: &str) -> Result<(), TestCaseError> {
    let rest = path.strip_prefix(&format!("{folder}/"));
    prop_assert!(rest.is_some(), "{path} is not in {folder}");
    for segment in rest.unwrap_or_default().split('/') {
        prop_assert!(
            !matches!(segment, "" | "." | ".."),
            "segment {segment:?} in {path:?}"
        );
        prop_assert!(
            !segment.chars().any(|c| c.is_control() || c == '\\'),
            "segment {segment:?} in {path:?}"
        );
    }
    let mut components = std::path::Path::new(path).components();
    prop_assert!(components.all(|c| matches!(c, std::path::Component::Normal(_))));
    Ok(())
}

proptest! {
    #![proptest_config(Config::default())]

    #[test]
    fn paths_stay_in_their_folder_and_never_collide(
        template in arb_template(),
        folder in proptest::sample::select(vec!["clusters/prod", "a", "x/y/z"]),
        values in proptest::collection::vec(arb_segment_value(), 6),
        other in arb_segment_value(),
        which in 0..6usize,
        namespaced in any::<bool>(),
    ) {
        let path = template.path_in(folder, &location(&values, namespaced));
        stays_inside(folder, &path)?;
        // Change one value: the file changes when the template uses that value.
        let mut changed = values.clone();
        changed[which] = other.clone();
        let other_path = template.path_in(folder, &location(&changed, namespaced));
        stays_inside(folder, &other_path)?;
        let used = match which {
            0 | 5 => true,
            4 => namespaced,
            _ => false,
        };
        if used && values[which] != other {
            prop_assert_ne!(&path, &other_path, "{:?} and {:?}", values[which], other);
        }
    }

    /// Escaping is a single visible segment, and distinct values never share one.
    #[test]
    fn escaped_values_are_single_distinct_segments(a in arb_segment_value(), b in arb_segment_value()) {
        let (ea, eb) = (escape(&a), escape(&b));
        for e in [&ea, &eb] {
            prop_assert!(!e.is_empty() && !e.contains('/') && !e.starts_with('.'), "{e:?}");
            prop_assert!(e.len() <= 200, "{} bytes", e.len());
        }
        prop_assert_eq!(a == b, ea == eb, "{:?} / {:?} → {:?}", a, b, ea);
    }
}

// ---------------------------------------------------------------------------------------------
// Regressions: inputs the properties above found, kept as plain tests. No input has made any
// parser panic; these two findings were wrong answers, fixed since.

/// JSON numbers are read exactly (serde_json's `float_roundtrip`), as the YAML reader reads
/// them: an object from the API server (JSON) and its file in Git (YAML) agree on every float.
#[test]
fn json_and_yaml_read_floats_alike() {
    for text in [
        "-2.4001310425159862e-113",
        "1.913611840078595e-308",
        "-2.367047073132214e-237",
    ] {
        let json: f64 = serde_json::from_str(text).expect("json");
        let exact: f64 = text.parse().expect("std");
        assert_eq!(json.to_bits(), exact.to_bits(), "{text}");
    }
}

/// A host with a `:` outside IPv6 brackets is refused, and `.git` goes however often it is
/// repeated: the key of a key is itself.
#[test]
fn url_keys_parse_back_to_themselves() {
    for bad in ["https://example.com::/org/repo", "a://::/0", "a://:0:/0"] {
        assert!(NormalizedUrl::parse(bad).is_err(), "{bad}");
    }
    let key = NormalizedUrl::parse("https://h/a.git.git").expect("key");
    assert_eq!(key.as_str(), "https://h/a");
    assert_eq!(NormalizedUrl::parse(key.as_str()).as_ref(), Ok(&key));
}
