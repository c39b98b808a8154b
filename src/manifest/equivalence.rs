//! Equivalence: whether a live object is what its file in Git says (hash annotation, exact, or near
//! with server defaults judged from managedFields and last-applied), with a reason for each verdict.

use super::hash::{ContentHash, annotated_hash, content_hash};
use super::object::split_api_version;
use super::quantity;
use super::sanitize::sanitized;
use serde_json::{Map, Value};
use std::fmt;

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The outcome of comparing a file in Git with the live object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing to write.
    Equivalent(Equivalence),
    /// Write the live content; `paths` are the differing fields, sorted, in dotted form
    /// (`spec.template.spec.containers[name=web].image`; a dot inside a key is written `\.`).
    Different { paths: Vec<String> },
}

/// Why a live object counts as the file in Git.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Equivalence {
    /// Same content after sanitizing.
    Exact,
    /// Same content, and the live object carries the hash annotation of that content: it came from
    /// Git (through Flux or Argo CD) unchanged.
    HashAnnotation,
    /// Every value in the file is in the live object; every extra live field was filled in by the
    /// server. `reason` says which evidence showed it and what was tolerated.
    Near { reason: String },
}

impl Verdict {
    pub fn is_equivalent(&self) -> bool {
        matches!(self, Verdict::Equivalent(_))
    }
}

impl fmt::Display for Equivalence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Equivalence::Exact => f.write_str("exact"),
            Equivalence::HashAnnotation => f.write_str("hash-annotation"),
            Equivalence::Near { reason } => write!(f, "near ({reason})"),
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Equivalent(how) => write!(f, "equivalent: {how}"),
            Verdict::Different { paths } => write!(f, "different: {}", paths.join(", ")),
        }
    }
}

/// Compares the document stored in Git (hand-written or written by the agent, with or without the
/// hash annotation) with the live object as the API server returns it (status, managedFields,
/// last-applied annotation and all). Cheapest first, as DESIGN.md §3 orders it:
///
/// 1. **hash-annotation**: the live object's hash annotation equals the hash of its own sanitized
///    content *and* that of the file. The second condition is deliberate: a live object that still
///    carries the hash of an older revision of the file (Git edited, not yet synced) would
///    otherwise be called equivalent to a file it differs from, and `diff` would hide the change.
///    The check that needs no file at all is [`verified_hash_annotation`]; the file's own
///    annotation is not trusted, since a hand edit leaves it stale.
/// 2. **exact**: the sanitized documents are equal.
/// 3. **near** (the walk below): every file value is in the live object (quantities and numbers by
///    value), and every extra live field is one no field manager owns (server-side apply leaves
///    server defaults unowned), or one absent from the last-applied configuration and owned by no
///    one but the client-side applier that wrote it.
/// 4. otherwise **different**, naming every field that differs.
pub fn compare(git: &Value, live: &Value) -> Verdict {
    let git_clean = sanitized(git);
    let live_clean = sanitized(live);
    let git_hash = content_hash(&git_clean);
    let live_hash = content_hash(&live_clean);
    if annotated_hash(live) == Some(live_hash) && live_hash == git_hash {
        return Verdict::Equivalent(Equivalence::HashAnnotation);
    }
    if live_hash == git_hash {
        return Verdict::Equivalent(Equivalence::Exact);
    }
    let evidence = Evidence::of(live);
    let mut walk = Walk::new(&git_clean, &evidence);
    walk.value(&git_clean, &live_clean);
    walk.verdict()
}

/// The live object's hash annotation when it equals the hash of the object's own sanitized
/// content: the object is unchanged since it was written from Git, whichever revision that was.
/// Needs no file; `compare` additionally requires the file to have that content.
pub fn verified_hash_annotation(live: &Value) -> Option<ContentHash> {
    annotated_hash(live).filter(|hash| *hash == content_hash(&sanitized(live)))
}

// ---------------------------------------------------------------------------------------------
// Evidence: who owns which live field, and what the last client-side apply sent.

/// What the live object says about how its fields got there.
struct Evidence<'a> {
    /// Field sets (`fieldsV1`) by manager name; `None` when the object has no managedFields, so
    /// that "owned by nobody" is never concluded from missing data.
    managers: Option<Vec<(&'a str, &'a Map<String, Value>)>>,
    /// The sanitized last-applied configuration of a client-side apply (`kubectl apply`, Argo CD).
    last_applied: Option<Value>,
    /// The managers that wrote the last-applied annotation: the client-side appliers.
    appliers: Vec<&'a str>,
}

impl<'a> Evidence<'a> {
    fn of(live: &'a Value) -> Self {
        let managers: Vec<(&str, &Map<String, Value>)> = live
            .pointer("/metadata/managedFields")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|entry| {
                let fields = entry.get("fieldsV1")?.as_object()?;
                Some((
                    entry.get("manager").and_then(Value::as_str).unwrap_or(""),
                    fields,
                ))
            })
            .collect();
        let annotation = [
            Seg::Key("metadata"),
            Seg::Key("annotations"),
            Seg::Key(LAST_APPLIED),
        ];
        let appliers = managers
            .iter()
            .filter(|(_, fields)| owns(fields, &annotation))
            .map(|(name, _)| *name)
            .collect();
        let last_applied = live
            .pointer("/metadata/annotations")
            .and_then(|annotations| annotations.get(LAST_APPLIED))
            .and_then(Value::as_str)
            .and_then(|text| serde_json::from_str::<Value>(text).ok())
            .filter(Value::is_object)
            .map(|applied| sanitized(&applied));
        Self {
            managers: (!managers.is_empty()).then_some(managers),
            last_applied,
            appliers,
        }
    }

    /// Whether an extra live field (absent from the file) was filled in by the server, and by
    /// which evidence; `None` means someone set it.
    fn explain(&self, path: &[Seg<'_>]) -> Option<Tolerance> {
        let owners: Vec<&str> = self
            .managers
            .iter()
            .flatten()
            .filter(|(_, fields)| owns(fields, path))
            .map(|(name, _)| *name)
            .collect();
        if self.managers.is_some() && owners.is_empty() {
            return Some(Tolerance::Unowned);
        }
        let applied = self.last_applied.as_ref()?;
        let only_appliers = owners.iter().all(|owner| self.appliers.contains(owner));
        (only_appliers && !present(applied, path)).then_some(Tolerance::NotLastApplied)
    }
}

/// Whether a field set (`fieldsV1`: `f:<field>`, `k:<json key>`, `v:<json value>`, `i:<index>`,
/// `.` for the node itself) owns the field at `path`. A leaf (`{}`) owns everything under it, as
/// for atomic values (`f:selector: {}`).
fn owns(set: &Map<String, Value>, path: &[Seg<'_>]) -> bool {
    let Some((first, rest)) = path.split_first() else {
        return true;
    };
    let child = match first {
        Seg::Key(key) => set.get(&format!("f:{key}")),
        Seg::Item { index, item, .. } => set
            .iter()
            .find(|(name, _)| names_item(name, *index, item))
            .map(|(_, node)| node),
    };
    match child.and_then(Value::as_object) {
        Some(node) if node.is_empty() => true,
        Some(node) => owns(node, rest),
        None => false,
    }
}

fn names_item(name: &str, index: usize, item: &Value) -> bool {
    if let Some(key) = name.strip_prefix("k:") {
        serde_json::from_str::<Map<String, Value>>(key)
            .is_ok_and(|key| !key.is_empty() && key.iter().all(|(k, v)| item.get(k) == Some(v)))
    } else if let Some(value) = name.strip_prefix("v:") {
        serde_json::from_str::<Value>(value).is_ok_and(|value| value == *item)
    } else if let Some(position) = name.strip_prefix("i:") {
        position
            .parse::<usize>()
            .is_ok_and(|position| position == index)
    } else {
        false
    }
}

/// Whether `path` (found in the live object) exists in `doc`; list items are found by key where
/// the live list was matched by key, else by position.
fn present(doc: &Value, path: &[Seg<'_>]) -> bool {
    let Some((first, rest)) = path.split_first() else {
        return !doc.is_null();
    };
    let child = match first {
        Seg::Key(key) => doc.get(*key),
        Seg::Item { key: Some(key), .. } => doc.as_array().and_then(|items| {
            items
                .iter()
                .find(|i| key_of(i, key.fields).as_ref() == Some(&key.values))
        }),
        Seg::Item {
            index, key: None, ..
        } => doc.get(*index),
    };
    child.is_some_and(|child| present(child, rest))
}

// ---------------------------------------------------------------------------------------------
// The near-equivalence walk.

/// What was tolerated on the way to a `near` verdict, in the order the reason lists it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Tolerance {
    Unowned,
    NotLastApplied,
    ByValue,
    Empty,
    Namespace,
}

impl Tolerance {
    const ALL: [Tolerance; 5] = [
        Tolerance::Unowned,
        Tolerance::NotLastApplied,
        Tolerance::ByValue,
        Tolerance::Empty,
        Tolerance::Namespace,
    ];

    fn label(self, count: usize) -> &'static str {
        let one = count == 1;
        match self {
            Tolerance::Unowned if one => "server default unowned in managedFields",
            Tolerance::Unowned => "server defaults unowned in managedFields",
            Tolerance::NotLastApplied if one => "field absent from last-applied-configuration",
            Tolerance::NotLastApplied => "fields absent from last-applied-configuration",
            Tolerance::ByValue if one => "quantity equal by value",
            Tolerance::ByValue => "quantities equal by value",
            Tolerance::Empty if one => "empty value the server omits",
            Tolerance::Empty => "empty values the server omits",
            Tolerance::Namespace => "namespace implied by the file's place",
        }
    }
}

/// Maps whose values are opaque strings: never compared as quantities (`"1.0"` ≠ `"1"`).
const OPAQUE_MAPS: &[&str] = &["labels", "annotations", "matchLabels", "nodeSelector"];
/// Per-kind fields holding opaque strings: (group, kind, path of the map).
const OPAQUE_FIELDS: &[(&str, &str, &[&str])] = &[
    ("", "ConfigMap", &["data"]),
    ("", "ConfigMap", &["binaryData"]),
    ("", "Secret", &["data"]),
    ("", "Secret", &["stringData"]),
    ("", "Service", &["spec", "selector"]),
];

/// One step of a path: a map key, or a list item (with the item, to find it in field sets).
#[derive(Clone)]
enum Seg<'a> {
    Key(&'a str),
    Item {
        index: usize,
        item: &'a Value,
        key: Option<ListKey>,
    },
}

/// Walks the sanitized file and live object together. Values of the file must be in the live
/// object: maps by key, lists of maps with a merge key (`containers`, `env`, `ports`, ...) by that
/// key and in the same order, other lists by position and length. A file value that is `null`,
/// `{}` or `[]` matches an absent live field (the API server drops them). Live fields the file
/// lacks are judged leaf by leaf by [`Evidence::explain`].
struct Walk<'a> {
    evidence: &'a Evidence<'a>,
    group: &'a str,
    kind: &'a str,
    path: Vec<Seg<'a>>,
    differences: Vec<String>,
    tolerated: Vec<(Tolerance, String)>,
}

impl<'a> Walk<'a> {
    fn new(git: &'a Value, evidence: &'a Evidence<'a>) -> Self {
        let text = |field: &str| git.get(field).and_then(Value::as_str).unwrap_or("");
        Self {
            evidence,
            group: split_api_version(text("apiVersion")).0,
            kind: text("kind"),
            path: Vec::new(),
            differences: Vec::new(),
            tolerated: Vec::new(),
        }
    }

    fn value(&mut self, git: &'a Value, live: &'a Value) {
        match (git, live) {
            (Value::Object(git), Value::Object(live)) => self.map(git, live),
            (Value::Array(git), Value::Array(live)) => self.list(git, live),
            _ if git == live => {}
            _ if is_scalar(git)
                && is_scalar(live)
                && !self.opaque()
                && quantity::equal_by_value(git, live) =>
            {
                self.tolerate(Tolerance::ByValue)
            }
            _ => self.differ(),
        }
    }

    fn map(&mut self, git: &'a Map<String, Value>, live: &'a Map<String, Value>) {
        for (key, git_value) in git {
            self.path.push(Seg::Key(key));
            match live.get(key) {
                Some(live_value) if git_value.is_null() && !live_value.is_null() => {
                    self.extra(live_value)
                }
                Some(live_value) => self.value(git_value, live_value),
                None if is_empty(git_value) => self.tolerate(Tolerance::Empty),
                None => self.differ(),
            }
            self.path.pop();
        }
        for (key, live_value) in live.iter().filter(|(key, _)| !git.contains_key(*key)) {
            self.path.push(Seg::Key(key));
            self.extra(live_value);
            self.path.pop();
        }
    }

    fn list(&mut self, git: &'a [Value], live: &'a [Value]) {
        let Some(fields) = key_fields(self.field(), &[git, live]) else {
            if git.len() != live.len() {
                return self.differ();
            }
            for (index, (git_item, live_item)) in git.iter().zip(live).enumerate() {
                self.path.push(Seg::Item {
                    index,
                    item: live_item,
                    key: None,
                });
                self.value(git_item, live_item);
                self.path.pop();
            }
            return;
        };
        let live_keys: Vec<Option<Vec<Value>>> = live.iter().map(|i| key_of(i, fields)).collect();
        let mut matched = vec![false; live.len()];
        let mut previous: Option<usize> = None;
        let mut in_order = true;
        for (git_index, git_item) in git.iter().enumerate() {
            let values = key_of(git_item, fields);
            let key = values.clone().map(|values| ListKey { fields, values });
            match live_keys.iter().position(|live_key| *live_key == values) {
                Some(index) => {
                    matched[index] = true;
                    in_order &= previous.is_none_or(|previous| previous < index);
                    previous = Some(index);
                    self.path.push(Seg::Item {
                        index,
                        item: &live[index],
                        key,
                    });
                    self.value(git_item, &live[index]);
                }
                None => {
                    self.path.push(Seg::Item {
                        index: git_index,
                        item: git_item,
                        key,
                    });
                    self.differ();
                }
            }
            self.path.pop();
        }
        if !in_order {
            self.differ();
        }
        for (index, item) in live
            .iter()
            .enumerate()
            .filter(|(index, _)| !matched[*index])
        {
            let key = live_keys[index]
                .clone()
                .map(|values| ListKey { fields, values });
            self.path.push(Seg::Item { index, item, key });
            self.extra(item);
            self.path.pop();
        }
    }

    /// A live value the file does not have: judged at each of its leaves.
    fn extra(&mut self, live: &'a Value) {
        match live {
            Value::Object(map) if !map.is_empty() => {
                for (key, value) in map {
                    self.path.push(Seg::Key(key));
                    self.extra(value);
                    self.path.pop();
                }
            }
            Value::Array(items) if !items.is_empty() => {
                let Some(fields) = key_fields(self.field(), &[items]) else {
                    return self.judge();
                };
                for (index, item) in items.iter().enumerate() {
                    let key = key_of(item, fields).map(|values| ListKey { fields, values });
                    self.path.push(Seg::Item { index, item, key });
                    self.extra(item);
                    self.path.pop();
                }
            }
            _ => self.judge(),
        }
    }

    fn judge(&mut self) {
        if self.at(&["metadata", "namespace"]) {
            // The file's place says the namespace; the caller matched the object by identity.
            return self.tolerate(Tolerance::Namespace);
        }
        match self.evidence.explain(&self.path) {
            Some(tolerance) => self.tolerate(tolerance),
            None => self.differ(),
        }
    }

    /// The name of the field holding the current value, if it is a map entry.
    fn field(&self) -> Option<&'a str> {
        match self.path.last() {
            Some(Seg::Key(key)) => Some(key),
            _ => None,
        }
    }

    fn at(&self, keys: &[&str]) -> bool {
        self.path.len() == keys.len()
            && self
                .path
                .iter()
                .zip(keys)
                .all(|(seg, key)| matches!(seg, Seg::Key(k) if k == key))
    }

    /// Whether the current scalar sits in a map of opaque strings.
    fn opaque(&self) -> bool {
        let Some((_, parents)) = self.path.split_last() else {
            return false;
        };
        if matches!(parents.last(), Some(Seg::Key(key)) if OPAQUE_MAPS.contains(key)) {
            return true;
        }
        OPAQUE_FIELDS.iter().any(|(group, kind, map)| {
            *group == self.group
                && *kind == self.kind
                && parents.len() == map.len()
                && parents
                    .iter()
                    .zip(*map)
                    .all(|(seg, key)| matches!(seg, Seg::Key(k) if k == key))
        })
    }

    fn tolerate(&mut self, tolerance: Tolerance) {
        self.tolerated.push((tolerance, render(&self.path)));
    }

    fn differ(&mut self) {
        self.differences.push(render(&self.path));
    }

    fn verdict(mut self) -> Verdict {
        if !self.differences.is_empty() {
            self.differences.sort();
            self.differences.dedup();
            return Verdict::Different {
                paths: self.differences,
            };
        }
        Verdict::Equivalent(Equivalence::Near {
            reason: self.reason(),
        })
    }

    /// One line: per kind of tolerance, how many and the first two paths.
    fn reason(&self) -> String {
        let parts: Vec<String> = Tolerance::ALL
            .iter()
            .filter_map(|kind| {
                let mut paths: Vec<&str> = self
                    .tolerated
                    .iter()
                    .filter(|(tolerance, _)| tolerance == kind)
                    .map(|(_, path)| path.as_str())
                    .collect();
                paths.sort_unstable();
                let (shown, more) = paths.split_at_checked(2).unwrap_or((&paths, &[]));
                let ellipsis = if more.is_empty() { "" } else { ", …" };
                (!paths.is_empty()).then(|| {
                    format!(
                        "{} {}: {}{ellipsis}",
                        paths.len(),
                        kind.label(paths.len()),
                        shown.join(", ")
                    )
                })
            })
            .collect();
        if parts.is_empty() {
            "no difference after sanitizing".to_string()
        } else {
            parts.join("; ")
        }
    }
}

fn is_scalar(value: &Value) -> bool {
    !matches!(value, Value::Object(_) | Value::Array(_))
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(map) => map.is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

/// `spec.template.spec.containers[name=web].image`; a dot inside a key is written `\.`.
fn render(path: &[Seg<'_>]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(&key.replace('.', "\\."));
            }
            Seg::Item { key: Some(key), .. } => {
                let parts: Vec<String> = key
                    .fields
                    .iter()
                    .zip(&key.values)
                    .map(|(field, value)| match value {
                        Value::String(text) => format!("{}={text}", field.name),
                        other => format!("{}={other}", field.name),
                    })
                    .collect();
                out.push_str(&format!("[{}]", parts.join(",")));
            }
            Seg::Item {
                index, key: None, ..
            } => out.push_str(&format!("[{index}]")),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Lists matched by key.

/// A field of a list item's key, with the value the API server defaults it to.
#[derive(Debug, PartialEq)]
struct KeyField {
    name: &'static str,
    default: Option<&'static str>,
}

/// The key of one item of a keyed list (defaults filled in).
#[derive(Clone, Debug, PartialEq)]
struct ListKey {
    fields: &'static [KeyField],
    values: Vec<Value>,
}

const fn key(name: &'static str) -> KeyField {
    KeyField {
        name,
        default: None,
    }
}

const BY_NAME: &[KeyField] = &[key("name")];
const PROTOCOL: KeyField = KeyField {
    name: "protocol",
    default: Some("TCP"),
};
const CONTAINER_PORT: &[KeyField] = &[key("containerPort"), PROTOCOL];
const SERVICE_PORT: &[KeyField] = &[key("port"), PROTOCOL];

/// Lists of maps matched by key rather than position (the strategic-merge / server-side-apply
/// keys of the built-in types), by field name; the first alternative every item has wins. A list
/// whose items lack the key or repeat it is compared by position.
const KEYED_LISTS: &[(&str, &[&[KeyField]])] = &[
    ("containers", &[BY_NAME]),
    ("initContainers", &[BY_NAME]),
    ("ephemeralContainers", &[BY_NAME]),
    ("volumes", &[BY_NAME]),
    ("env", &[BY_NAME]),
    ("imagePullSecrets", &[BY_NAME]),
    ("resourceClaims", &[BY_NAME]),
    ("webhooks", &[BY_NAME]),
    ("volumeMounts", &[&[key("mountPath")]]),
    ("volumeDevices", &[&[key("devicePath")]]),
    ("hostAliases", &[&[key("ip")]]),
    (
        "topologySpreadConstraints",
        &[&[key("topologyKey"), key("whenUnsatisfiable")]],
    ),
    ("ports", &[CONTAINER_PORT, SERVICE_PORT]),
];

fn key_fields(field: Option<&str>, lists: &[&[Value]]) -> Option<&'static [KeyField]> {
    let (_, alternatives) = KEYED_LISTS.iter().find(|(name, _)| Some(*name) == field)?;
    alternatives.iter().copied().find(|fields| {
        lists.iter().all(|items| {
            let keys: Vec<Option<Vec<Value>>> = items.iter().map(|i| key_of(i, fields)).collect();
            keys.iter()
                .enumerate()
                .all(|(i, k)| k.is_some() && !keys[..i].contains(k))
        })
    })
}

fn key_of(item: &Value, fields: &[KeyField]) -> Option<Vec<Value>> {
    fields
        .iter()
        .map(|field| match item.get(field.name) {
            Some(value) if !value.is_null() => Some(value.clone()),
            _ => field
                .default
                .map(|default| Value::String(default.to_string())),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::hash::{hash_and_stamp, stamp};
    use crate::manifest::yaml::parse_documents;
    use proptest::prelude::*;
    use serde_json::json;

    fn doc(text: &str, name: &str) -> Value {
        match parse_documents(text, name) {
            Ok(mut docs) if docs.len() == 1 => docs.remove(0),
            other => panic!("{name}: expected one document, got {other:?}"),
        }
    }

    fn near_reason(verdict: &Verdict) -> &str {
        match verdict {
            Verdict::Equivalent(Equivalence::Near { reason }) => reason,
            other => panic!("expected near, got {other}"),
        }
    }

    fn paths(verdict: &Verdict) -> Vec<&str> {
        match verdict {
            Verdict::Different { paths } => paths.iter().map(String::as_str).collect(),
            other => panic!("expected different, got {other}"),
        }
    }

    fn flux() -> (Value, Value) {
        (
            doc(
                include_str!("testdata/equivalence/flux-web.desired.yaml"),
                "flux-web.desired.yaml",
            ),
            doc(
                include_str!("testdata/equivalence/flux-web.live.yaml"),
                "flux-web.live.yaml",
            ),
        )
    }

    /// Adds a managedFields entry for an imperative `kubectl edit`.
    fn edited_by_kubectl(live: &mut Value, fields: Value) {
        if let Some(entries) = live["metadata"]["managedFields"].as_array_mut() {
            entries.push(
                json!({"apiVersion": "apps/v1", "fieldsType": "FieldsV1", "fieldsV1": fields,
                "manager": "kubectl-edit", "operation": "Update", "time": "2025-03-05T08:00:00Z"}),
            );
        }
    }

    #[test]
    fn flux_server_side_apply_of_a_hand_written_file_is_near() {
        let (git, live) = flux();
        let verdict = compare(&git, &live);
        let reason = near_reason(&verdict);
        assert!(
            reason.starts_with(
                "18 server defaults unowned in managedFields: spec.progressDeadlineSeconds, \
                 spec.revisionHistoryLimit, …; 2 quantities equal by value: "
            ),
            "{reason}"
        );
        assert!(reason.contains("2 quantities equal by value"), "{reason}");
        assert!(!reason.contains("last-applied"), "{reason}");
        assert_eq!(verdict.to_string(), format!("equivalent: near ({reason})"));
    }

    #[test]
    fn kubectl_edit_of_a_field_in_the_file_is_different() {
        let (git, mut live) = flux();
        live["spec"]["replicas"] = json!(5);
        edited_by_kubectl(&mut live, json!({"f:spec": {"f:replicas": {}}}));
        let verdict = compare(&git, &live);
        assert_eq!(paths(&verdict), ["spec.replicas"]);
        assert_eq!(verdict.to_string(), "different: spec.replicas");
    }

    #[test]
    fn a_field_added_by_kubectl_edit_is_different_and_the_same_field_unowned_is_a_default() {
        let (git, mut live) = flux();
        live["spec"]["template"]["spec"]["nodeSelector"] = json!({"disktype": "ssd"});
        live["spec"]["minReadySeconds"] = json!(10);
        assert!(
            compare(&git, &live).is_equivalent(),
            "unowned fields are the server's"
        );
        edited_by_kubectl(
            &mut live,
            json!({"f:spec": {"f:minReadySeconds": {},
                "f:template": {"f:spec": {"f:nodeSelector": {".": {}, "f:disktype": {}}}}}}),
        );
        assert_eq!(
            paths(&compare(&git, &live)),
            [
                "spec.minReadySeconds",
                "spec.template.spec.nodeSelector.disktype"
            ]
        );
    }

    #[test]
    fn an_extra_list_item_is_judged_by_its_owner() {
        let (git, mut live) = flux();
        let sidecar = json!({"name": "debug", "image": "busybox", "imagePullPolicy": "Always",
            "resources": {}, "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File"});
        if let Some(containers) = live["spec"]["template"]["spec"]["containers"].as_array_mut() {
            containers.push(sidecar);
        }
        edited_by_kubectl(
            &mut live,
            json!({"f:spec": {"f:template": {"f:spec": {"f:containers": {
                "k:{\"name\":\"debug\"}": {".": {}, "f:image": {}, "f:name": {}}}}}}}),
        );
        assert_eq!(
            paths(&compare(&git, &live)),
            [
                "spec.template.spec.containers[name=debug].image",
                "spec.template.spec.containers[name=debug].name",
            ]
        );
    }

    #[test]
    fn argo_client_side_apply_with_matching_last_applied_is_near() {
        let git = doc(
            include_str!("testdata/equivalence/argo-guestbook-ui.desired.yaml"),
            "desired",
        );
        let live = doc(
            include_str!("testdata/equivalence/argo-live-deployment.yaml"),
            "live",
        );
        // Here argocd (operation Update) owns the defaults too: only last-applied tells them apart.
        let verdict = compare(&git, &live);
        let reason = near_reason(&verdict);
        assert!(
            reason.starts_with(
                "13 fields absent from last-applied-configuration: spec.progressDeadlineSeconds, "
            ),
            "{reason}"
        );
        assert!(!reason.contains("managedFields"), "{reason}");
    }

    #[test]
    fn argo_live_object_scaled_by_another_manager_is_different() {
        let git = doc(
            include_str!("testdata/equivalence/argo-managed-replica.desired.yaml"),
            "desired",
        );
        let live = doc(
            include_str!("testdata/equivalence/argo-live-deployment-with-managed-replica.yaml"),
            "live",
        );
        assert_eq!(paths(&compare(&git, &live)), ["spec.replicas"]);
        // Once the file says what the cluster says, the rest are defaults the applier never sent.
        let mut scaled = git.clone();
        scaled["spec"]["replicas"] = json!(2);
        assert!(compare(&scaled, &live).is_equivalent());
    }

    #[test]
    fn argo_container_added_by_a_manual_apply_is_different() {
        let git = doc(
            include_str!("testdata/equivalence/argo-manual-apply.desired.yaml"),
            "desired",
        );
        let live = doc(
            include_str!("testdata/equivalence/argo-ssd-deploy-with-manual-apply-live.yaml"),
            "live",
        );
        let verdict = compare(&git, &live);
        let paths = paths(&verdict);
        assert!(
            paths.contains(&"spec.template.spec.containers[name=idle].image"),
            "{verdict}"
        );
        // No last-applied annotation and defaults owned by an Update manager: no evidence they
        // are defaults, so they count as differences too.
        assert!(paths.contains(&"spec.progressDeadlineSeconds"), "{verdict}");
    }

    #[test]
    fn without_managed_fields_last_applied_is_the_only_evidence() {
        let git = doc(
            include_str!("testdata/equivalence/argo-deployment.desired.yaml"),
            "desired",
        );
        let live = doc(
            include_str!("testdata/equivalence/argo-deployment-live.json"),
            "live",
        );
        // VAR2 was added outside the applied configuration: as kubectl apply and Argo CD's diff
        // see it, not the applier's field.
        let verdict = compare(&git, &live);
        assert!(
            near_reason(&verdict).starts_with("17 fields absent from last-applied"),
            "{verdict}"
        );
        let mut no_evidence = live.clone();
        if let Some(annotations) = no_evidence["metadata"]["annotations"].as_object_mut() {
            annotations.remove(LAST_APPLIED);
        }
        let verdict = compare(&git, &no_evidence);
        let paths = paths(&verdict);
        assert!(paths.contains(&"spec.progressDeadlineSeconds"), "{verdict}");
        assert!(
            paths.contains(&"spec.template.spec.containers[name=guestbook-ui].env[name=VAR2].name")
        );
    }

    /// A minimal server-side-applied Deployment around one container each; the applier's
    /// managedFields entry owns nothing in the container.
    fn pair(git_container: Value, live_container: Value) -> (Value, Value) {
        let object = |container: Value| {
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web", "namespace": "shop"},
                "spec": {"template": {"spec": {"containers": [container]}}}})
        };
        let mut live = object(live_container);
        live["metadata"]["managedFields"] = json!([{"manager": "kustomize-controller",
            "operation": "Apply", "fieldsV1": {"f:metadata": {"f:labels": {"f:app": {}}}}}]);
        (object(git_container), live)
    }

    #[test]
    fn quantities_compare_by_value() {
        let container = |cpu: Value, memory: Value| json!({"name": "web", "resources": {"requests": {"cpu": cpu, "memory": memory}}});
        let near = [
            (json!("1000m"), json!("1Gi"), json!("1"), json!("1Gi")),
            (json!(1), json!("1024Mi"), json!("1"), json!("1Gi")),
            (json!(0.5), json!("1Gi"), json!("500m"), json!("1Gi")),
        ];
        for (git_cpu, git_memory, live_cpu, live_memory) in near {
            let (git, live) = pair(
                container(git_cpu, git_memory),
                container(live_cpu, live_memory),
            );
            let verdict = compare(&git, &live);
            assert!(
                near_reason(&verdict).contains("equal by value"),
                "{verdict}"
            );
        }
        let (git, live) = pair(
            container(json!("100m"), json!("1Gi")),
            container(json!("1"), json!("1Gi")),
        );
        assert_eq!(
            paths(&compare(&git, &live)),
            ["spec.template.spec.containers[name=web].resources.requests.cpu"]
        );
    }

    #[test]
    fn opaque_strings_are_not_quantities() {
        let config = |value: &str| {
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c",
                "labels": {"version": value}}, "data": {"cpu": value}})
        };
        assert_eq!(
            paths(&compare(&config("1.0"), &config("1"))),
            ["data.cpu", "metadata.labels.version"]
        );
        assert_eq!(
            paths(&compare(&config("1000m"), &config("1"))),
            ["data.cpu", "metadata.labels.version"]
        );
    }

    #[test]
    fn lists_match_by_key_in_order_or_by_position() {
        let env = |names: &[&str]| -> Value {
            names
                .iter()
                .map(|n| json!({"name": n, "value": "x"}))
                .collect()
        };
        let with = |env: Value, args: Value| json!({"name": "web", "env": env, "args": args});
        let list = "spec.template.spec.containers[name=web]";
        let cases = [
            (
                with(env(&["A", "B"]), json!(["x"])),
                with(env(&["A", "B"]), json!(["x"])),
                "equivalent: exact".to_string(),
            ),
            // Reordered env: variables may refer to earlier ones, so order is content.
            (
                with(env(&["A", "B"]), json!([])),
                with(env(&["B", "A"]), json!([])),
                format!("different: {list}.env"),
            ),
            (
                with(env(&["A"]), json!(["x"])),
                with(env(&["A"]), json!(["x", "y"])),
                format!("different: {list}.args"),
            ),
            (
                with(env(&["A", "B"]), json!([])),
                with(env(&["A"]), json!([])),
                format!("different: {list}.env[name=B]"),
            ),
            // An empty list in the file matches an absent one: the API server drops it.
            (
                with(env(&["A"]), json!([])),
                json!({"name": "web", "env": env(&["A"])}),
                format!("equivalent: near (1 empty value the server omits: {list}.args)"),
            ),
        ];
        for (git_container, live_container, want) in cases {
            let (git, live) = pair(git_container, live_container);
            assert_eq!(compare(&git, &live).to_string(), want);
        }
    }

    #[test]
    fn missing_and_changed_fields_are_different() {
        let (git, mut live) = flux();
        live["metadata"]["labels"]["app"] = json!("api");
        live["spec"]["template"]["spec"]["containers"][0]["image"] =
            json!("ghcr.io/example/web:1.5");
        if let Some(containers) = live["spec"]["template"]["spec"]["containers"].as_array_mut() {
            containers.remove(1);
        }
        assert_eq!(
            compare(&git, &live).to_string(),
            "different: metadata.labels.app, spec.template.spec.containers[name=metrics], \
             spec.template.spec.containers[name=web].image"
        );
    }

    #[test]
    fn hash_annotation_counts_only_when_live_content_is_unchanged_and_is_the_file() {
        let (mut git, _) = flux();
        hash_and_stamp(&mut git);
        let mut live = git.clone();
        live["metadata"]["uid"] = json!("u-1");
        live["metadata"]["resourceVersion"] = json!("7");
        live["metadata"]["labels"]["kustomize.toolkit.fluxcd.io/name"] = json!("apps");
        live["status"] = json!({"replicas": 2});
        assert_eq!(
            compare(&git, &live),
            Verdict::Equivalent(Equivalence::HashAnnotation)
        );
        assert!(verified_hash_annotation(&live).is_some());
        // A file without the annotation is the same content.
        let mut unstamped = git.clone();
        if let Some(metadata) = unstamped["metadata"].as_object_mut() {
            metadata.remove("annotations");
        }
        assert_eq!(
            compare(&unstamped, &live),
            Verdict::Equivalent(Equivalence::HashAnnotation)
        );

        // Stale: the live object changed since it was stamped.
        let mut edited = live.clone();
        edited["spec"]["replicas"] = json!(3);
        assert_eq!(verified_hash_annotation(&edited), None);
        assert_eq!(paths(&compare(&git, &edited)), ["spec.replicas"]);
        let mut now = git.clone();
        now["spec"]["replicas"] = json!(3);
        assert_eq!(
            compare(&now, &edited),
            Verdict::Equivalent(Equivalence::Exact)
        );

        // The live object is an older revision of the file, unchanged since: not equivalent.
        assert!(verified_hash_annotation(&live).is_some());
        assert_eq!(paths(&compare(&now, &live)), ["spec.replicas"]);
    }

    #[test]
    fn identical_content_is_exact() {
        let (git, _) = flux();
        let mut live = git.clone();
        live["metadata"]["resourceVersion"] = json!("12");
        live["metadata"]["managedFields"] = json!([]);
        live["status"] = json!({"observedGeneration": 1});
        assert_eq!(
            compare(&git, &live),
            Verdict::Equivalent(Equivalence::Exact)
        );
        assert_eq!(compare(&git, &live).to_string(), "equivalent: exact");
        // A file that leaves the namespace to its place (kustomize, Argo CD's destination).
        let mut without_namespace = git.clone();
        if let Some(metadata) = without_namespace["metadata"].as_object_mut() {
            metadata.remove("namespace");
        }
        assert_eq!(
            compare(&without_namespace, &live).to_string(),
            "equivalent: near (1 namespace implied by the file's place: metadata.namespace)"
        );
    }

    // -- properties -------------------------------------------------------------------------

    fn scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            any::<i64>().prop_map(Value::from),
            (-1000i64..1000).prop_map(Value::from),
            (-1000i64..1000).prop_map(|n| Value::from(n as f64 / 4.0)),
            any::<bool>().prop_map(Value::from),
            "[a-z0-9.]{0,6}".prop_map(Value::from),
            prop::sample::select(vec![
                "1", "1000m", "500m", "0.5", "1Gi", "1024Mi", "100Mi", "2"
            ])
            .prop_map(Value::from),
            Just(Value::Null),
            Just(json!({})),
            Just(json!([])),
        ]
    }

    fn tree() -> impl Strategy<Value = Value> {
        scalar().prop_recursive(4, 48, 5, |inner| {
            prop_oneof![
                prop::collection::btree_map("[a-z]{1,5}", inner.clone(), 1..5)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
                prop::collection::vec(inner, 1..4).prop_map(Value::Array),
            ]
        })
    }

    /// Every leaf of `value`, with its rendered path and the steps to it. Generated lists hold no
    /// maps with merge keys, so they are compared by position.
    fn leaves(
        value: &Value,
        path: String,
        out: &mut Vec<(String, Vec<PathStep>)>,
        steps: Vec<PathStep>,
    ) {
        match value {
            Value::Object(map) if !map.is_empty() => {
                for (key, child) in map {
                    let mut next = steps.clone();
                    next.push(PathStep::Key(key.clone()));
                    leaves(child, format!("{path}.{key}"), out, next);
                }
            }
            Value::Array(items) if !items.is_empty() => {
                for (index, child) in items.iter().enumerate() {
                    let mut next = steps.clone();
                    next.push(PathStep::Index(index));
                    leaves(child, format!("{path}[{index}]"), out, next);
                }
            }
            _ => out.push((path, steps)),
        }
    }

    #[derive(Clone, Debug)]
    enum PathStep {
        Key(String),
        Index(usize),
    }

    fn at_mut<'v>(value: &'v mut Value, steps: &[PathStep]) -> Option<&'v mut Value> {
        steps.iter().try_fold(value, |value, step| match step {
            PathStep::Key(key) => value.get_mut(key.as_str()),
            PathStep::Index(index) => value.get_mut(*index),
        })
    }

    fn widget(spec: Value) -> Value {
        json!({"apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w", "namespace": "ns"}, "spec": spec})
    }

    fn as_live(git: &Value, stamped: bool) -> Value {
        let mut live = git.clone();
        if stamped {
            stamp(&mut live, content_hash(&sanitized(git)));
        }
        live["metadata"]["uid"] = json!("0f7e9a5c-1");
        live["metadata"]["resourceVersion"] = json!("4711");
        live["metadata"]["generation"] = json!(3);
        live["metadata"]["creationTimestamp"] = json!("2025-01-01T00:00:00Z");
        live["metadata"]["managedFields"] = json!([{"manager": "kubectl", "operation": "Apply",
            "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}}]);
        live["status"] = json!({"observedGeneration": 3});
        live
    }

    proptest! {
        #[test]
        fn an_object_is_equivalent_to_itself_as_live(spec in tree(), stamped in any::<bool>()) {
            let git = widget(spec);
            let verdict = compare(&git, &as_live(&git, stamped));
            let want = if stamped { Equivalence::HashAnnotation } else { Equivalence::Exact };
            prop_assert_eq!(verdict, Verdict::Equivalent(want));
        }

        #[test]
        fn changing_one_leaf_of_the_file_names_that_leaf(
            spec in tree().prop_filter("an object spec", |s| s.is_object()),
            pick in any::<prop::sample::Index>(),
            new in scalar(),
        ) {
            let live = as_live(&widget(spec.clone()), false);
            let mut found = Vec::new();
            leaves(&spec, "spec".to_string(), &mut found, vec![PathStep::Key("spec".into())]);
            let (path, steps) = pick.get(&found).clone();
            let mut git = widget(spec);
            let Some(leaf) = at_mut(&mut git, &steps) else { return Err(TestCaseError::fail("no leaf")) };
            let old = std::mem::replace(leaf, new.clone());
            let verdict = compare(&git, &live);
            if old == new {
                prop_assert_eq!(verdict, Verdict::Equivalent(Equivalence::Exact));
            } else if is_scalar(&old) && is_scalar(&new) && quantity::equal_by_value(&new, &old) {
                prop_assert!(near_reason(&verdict).contains("equal by value"), "{}", verdict);
            } else {
                prop_assert_eq!(verdict, Verdict::Different { paths: vec![path] });
            }
        }
    }
}
