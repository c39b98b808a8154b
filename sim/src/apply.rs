//! Server-side apply and `metadata.managedFields`: field sets of objects, comparisons, the apply
//! merge, pruning, conflicts, and the managers list as the real server records it. Pure logic.
//! Long because structured-merge-diff's rules (merge, prune, conflicts, ownership) only make
//! sense together; the schema they follow is generated data (`builtin_schema.txt`).

use serde_json::{Map, Value, json};

use crate::errors::ApiError;
use crate::fieldpath::{FieldSet, Path, PathElement};
use crate::schema::{self, ListType, Slot};

/// Whether a manager applied (server-side apply) or updated (create, update, patch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    Apply,
    Update,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// One entry of `metadata.managedFields`.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagerEntry {
    pub manager: String,
    pub operation: Operation,
    pub api_version: String,
    pub time: String,
    pub subresource: String,
    pub fields: FieldSet,
}

impl ManagerEntry {
    fn same_identity(&self, manager: &str, operation: Operation, subresource: &str) -> bool {
        self.manager == manager && self.operation == operation && self.subresource == subresource
    }

    /// How conflict messages name this manager: `"kubectl" ` or `"kubectl-edit" using v1`.
    fn display(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            s = format!("{s} with subresource {:?}", self.subresource);
        }
        if self.operation == Operation::Update {
            s = format!("{s} using {}", self.api_version);
        }
        s
    }
}

/// The managers of one object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Managers(pub Vec<ManagerEntry>);

/// Who is acting, on which subresource, at which apiVersion, and when.
#[derive(Debug, Clone)]
pub struct Actor<'a> {
    pub manager: &'a str,
    pub api_version: &'a str,
    pub subresource: &'a str,
    pub time: &'a str,
    pub builtin: bool,
    pub kind: &'a str,
    /// A custom resource's CRD schema for this version, if it has one.
    pub schema: Option<std::sync::Arc<Value>>,
}

impl Actor<'_> {
    /// Where this actor's kind starts in the schema.
    pub fn root(&self) -> Slot {
        if self.builtin {
            Slot::root(self.api_version, self.kind, true)
        } else {
            Slot::custom(self.schema.clone())
        }
    }
}

fn f(name: &str) -> PathElement {
    PathElement::Field(name.into())
}

/// Fields no manager ever owns (the server's own bookkeeping).
fn stripped() -> FieldSet {
    let mut s = FieldSet::new();
    s.insert(&[f("apiVersion")]);
    s.insert(&[f("kind")]);
    s.insert(&[f("metadata")]);
    for m in [
        "name",
        "namespace",
        "creationTimestamp",
        "selfLink",
        "uid",
        "generation",
        "managedFields",
        "resourceVersion",
    ] {
        s.insert(&[f("metadata"), f(m)]);
    }
    s
}

/// Restrict a set to what a request on `subresource` may own: `status` only for the status
/// subresource, everything but `status` for the main resource of a kind with a status subresource.
fn scope_to_subresource(set: FieldSet, subresource: &str, has_status: bool) -> FieldSet {
    let mut status = FieldSet::new();
    status.insert(&[f("status")]);
    if subresource == "status" {
        set.only(&f("status"))
    } else if has_status {
        set.recursive_difference(&status)
    } else {
        set
    }
}

fn strip(set: FieldSet) -> FieldSet {
    set.difference(&stripped())
}

/// The list item key of `item` under a keyed list, e.g. `{"name":"web"}`.
fn item_key(item: &Value, keys: &[String]) -> Option<PathElement> {
    let obj = item.as_object()?;
    let mut key = Map::new();
    for k in keys {
        match obj.get(k) {
            Some(v) => {
                key.insert(k.clone(), v.clone());
            }
            // The real schema defaults `protocol` of ports, and it is part of their key.
            None if *k == "protocol" => {
                key.insert("protocol".into(), json!("TCP"));
            }
            None => {}
        }
    }
    if key.is_empty() {
        return None;
    }
    Some(PathElement::Key(Value::Object(key).to_string()))
}

fn keyed_items<'v>(items: &'v [Value], keys: &[String]) -> Option<Vec<(PathElement, &'v Value)>> {
    items
        .iter()
        .map(|i| item_key(i, keys).map(|k| (k, i)))
        .collect()
}

static EMPTY_ARRAY: Value = Value::Array(Vec::new());

struct Walker {
    /// Where the walk stands in the schema; the last is the current value's.
    slots: Vec<Slot>,
    prefix: Vec<PathElement>,
}

impl Walker {
    fn new(root: &Slot) -> Self {
        Walker {
            slots: vec![root.clone()],
            prefix: vec![],
        }
    }

    fn slot(&self) -> &Slot {
        self.slots.last().expect("the walk has a root")
    }

    fn list_type(&self) -> ListType {
        self.slot().list_type()
    }

    /// Whether the map or struct here is owned and replaced as a whole.
    fn atomic_map(&self) -> bool {
        self.slot().atomic()
    }

    /// Walk into the list item `pe` of the list here.
    fn descend_item(&mut self, pe: PathElement, body: impl FnOnce(&mut Self)) {
        let item = self.slot().item();
        self.slots.push(item);
        self.prefix.push(pe);
        body(self);
        self.prefix.pop();
        self.slots.pop();
    }

    fn apply_set(&mut self, v: &Value, out: &mut FieldSet) {
        match v {
            Value::Object(m) if !m.is_empty() && !self.atomic_map() => {
                for (k, child) in m {
                    self.descend_field(k, |w| w.apply_set(child, out));
                }
            }
            Value::Array(items) => match self.list_type() {
                ListType::Set => {
                    for item in items {
                        self.prefix.push(PathElement::Value(item.to_string()));
                        out.insert(&self.prefix);
                        self.prefix.pop();
                    }
                }
                ListType::Map(keys) => match keyed_items(items, &keys) {
                    Some(keyed) => {
                        for (k, item) in keyed {
                            self.descend_item(k, |w| {
                                out.insert(&w.prefix);
                                w.apply_set(item, out);
                            });
                        }
                    }
                    None => out.insert(&self.prefix),
                },
                ListType::Atomic => out.insert(&self.prefix),
            },
            _ => out.insert(&self.prefix),
        }
    }

    fn descend_field(&mut self, name: &str, body: impl FnOnce(&mut Self)) {
        let slot = self.slot().field(name);
        self.slots.push(slot);
        self.prefix.push(f(name));
        body(self);
        self.prefix.pop();
        self.slots.pop();
    }

    /// Every node of `v`, each a member (what an Update that created `v` here owns).
    fn all_nodes(&mut self, v: &Value, out: &mut FieldSet) {
        out.insert(&self.prefix);
        match v {
            Value::Object(m) if !self.atomic_map() => {
                for (k, child) in m {
                    self.descend_field(k, |w| w.all_nodes(child, out));
                }
            }
            Value::Array(items) => match self.list_type() {
                ListType::Set => {
                    for item in items {
                        self.prefix.push(PathElement::Value(item.to_string()));
                        out.insert(&self.prefix);
                        self.prefix.pop();
                    }
                }
                ListType::Map(keys) => {
                    if let Some(keyed) = keyed_items(items, &keys) {
                        for (k, item) in keyed {
                            self.descend_item(k, |w| w.all_nodes(item, out));
                        }
                    }
                }
                ListType::Atomic => {}
            },
            _ => {}
        }
    }

    fn compare(&mut self, old: Option<&Value>, new: Option<&Value>, c: &mut Comparison) {
        match (old, new) {
            (None, None) => {}
            (None, Some(n)) => self.all_nodes(n, &mut c.added),
            (Some(o), None) => self.all_nodes(o, &mut c.removed),
            // A null the zero object holds (a Go slice or map without omitempty) is an empty container.
            (Some(Value::Null), Some(n @ Value::Array(_))) => {
                self.compare(Some(&EMPTY_ARRAY), Some(n), c)
            }
            (Some(Value::Null), Some(Value::Object(m))) if !m.is_empty() => {
                for (k, nv) in m {
                    self.descend_field(k, |w| w.compare(None, Some(nv), c));
                }
            }
            (Some(Value::Object(a)), Some(Value::Object(b))) => {
                if a.is_empty() && b.is_empty() {
                    return;
                }
                if self.atomic_map() {
                    if a != b {
                        c.modified.insert(&self.prefix);
                    }
                    return;
                }
                let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
                keys.sort();
                keys.dedup();
                for k in keys {
                    let (ov, nv) = (a.get(k), b.get(k));
                    self.descend_field(k, |w| w.compare(ov, nv, c));
                }
            }
            (Some(Value::Array(a)), Some(Value::Array(b))) => match self.list_type() {
                ListType::Set => {
                    for item in b.iter().filter(|i| !a.contains(i)) {
                        self.prefix.push(PathElement::Value(item.to_string()));
                        c.added.insert(&self.prefix);
                        self.prefix.pop();
                    }
                    for item in a.iter().filter(|i| !b.contains(i)) {
                        self.prefix.push(PathElement::Value(item.to_string()));
                        c.removed.insert(&self.prefix);
                        self.prefix.pop();
                    }
                }
                ListType::Map(keys) => match (keyed_items(a, &keys), keyed_items(b, &keys)) {
                    (Some(ka), Some(kb)) => {
                        let mut all: Vec<&PathElement> = ka
                            .iter()
                            .map(|(k, _)| k)
                            .chain(kb.iter().map(|(k, _)| k))
                            .collect();
                        all.sort();
                        all.dedup();
                        for k in all {
                            let ov = ka.iter().find(|(x, _)| x == k).map(|(_, v)| *v);
                            let nv = kb.iter().find(|(x, _)| x == k).map(|(_, v)| *v);
                            self.descend_item(k.clone(), |w| w.compare(ov, nv, c));
                        }
                    }
                    _ => {
                        if a != b {
                            c.modified.insert(&self.prefix);
                        }
                    }
                },
                ListType::Atomic => {
                    if a != b {
                        c.modified.insert(&self.prefix);
                    }
                }
            },
            (Some(a), Some(b)) => {
                if a != b {
                    c.modified.insert(&self.prefix);
                }
            }
        }
    }

    /// The server-side apply merge of a configuration into a live object.
    fn merge(&mut self, live: &Value, config: &Value) -> Value {
        match (live, config) {
            (Value::Object(l), Value::Object(c)) if !self.atomic_map() => {
                let mut out = l.clone();
                for (k, cv) in c {
                    let merged = match l.get(k) {
                        Some(lv) => {
                            let mut r = Value::Null;
                            self.descend_field(k, |w| r = w.merge(lv, cv));
                            r
                        }
                        None => cv.clone(),
                    };
                    out.insert(k.clone(), merged);
                }
                Value::Object(out)
            }
            (Value::Array(l), Value::Array(c)) => {
                let (kl, kc) = match self.list_type() {
                    ListType::Set => (set_items(l), set_items(c)),
                    ListType::Map(keys) => match (keyed_items(l, &keys), keyed_items(c, &keys)) {
                        (Some(kl), Some(kc)) => (kl, kc),
                        _ => return config.clone(),
                    },
                    ListType::Atomic => return config.clone(),
                };
                let lpes: Vec<PathElement> = kl.iter().map(|(k, _)| k.clone()).collect();
                let cpes: Vec<PathElement> = kc.iter().map(|(k, _)| k.clone()).collect();
                let mut out = Vec::new();
                for (li, ci) in merge_order(&lpes, &cpes) {
                    match (li, ci) {
                        (Some(li), Some(ci)) => {
                            let mut r = Value::Null;
                            let (pe, item) = &kl[li];
                            let citem = kc[ci].1;
                            self.descend_item(pe.clone(), |w| r = w.merge(item, citem));
                            out.push(r);
                        }
                        (Some(li), None) => out.push(kl[li].1.clone()),
                        (None, Some(ci)) => out.push(kc[ci].1.clone()),
                        (None, None) => {}
                    }
                }
                Value::Array(out)
            }
            _ => config.clone(),
        }
    }
}

/// The items of a set, each with its `v:` path element (duplicates once).
fn set_items(items: &[Value]) -> Vec<(PathElement, &Value)> {
    let mut out: Vec<(PathElement, &Value)> = Vec::new();
    for item in items {
        let pe = PathElement::Value(item.to_string());
        if !out.iter().any(|(k, _)| *k == pe) {
            out.push((pe, item));
        }
    }
    out
}

/// The order of a merged associative list or set, as structured-merge-diff's merge makes it:
/// the configuration's items in its order, the live object's other items kept where they were
/// relative to the items both share. Each entry: (index in `live`, index in `config`).
fn merge_order(
    live: &[PathElement],
    config: &[PathElement],
) -> Vec<(Option<usize>, Option<usize>)> {
    let in_config = |pe: &PathElement| config.iter().position(|c| c == pe);
    let in_live = |pe: &PathElement| live.iter().position(|l| l == pe);
    let mut shared = config.iter().filter(|pe| in_live(pe).is_some());
    let mut next_shared = shared.next();
    let mut merged: Vec<&PathElement> = Vec::new();
    let mut out = Vec::new();
    let (mut li, mut ci) = (0, 0);
    while li < live.len() || ci < config.len() {
        if li < live.len() && ci < config.len() {
            let pe = &live[li];
            if *pe == config[ci] {
                merged.push(pe);
                out.push((Some(li), Some(ci)));
                li += 1;
                ci += 1;
                next_shared = shared.next();
                continue;
            }
            if in_config(pe).is_some() && next_shared.is_some_and(|n| n != pe) {
                li += 1;
                continue;
            }
        }
        if li < live.len() {
            let pe = &live[li];
            if in_config(pe).is_none() {
                out.push((Some(li), None));
                li += 1;
                continue;
            } else if merged.contains(&pe) {
                li += 1;
            }
        }
        if ci < config.len() {
            let pe = &config[ci];
            merged.push(pe);
            out.push((in_live(pe), Some(ci)));
            ci += 1;
            if next_shared == Some(pe) {
                next_shared = shared.next();
            }
        }
    }
    out
}

/// What changed between two objects, as field sets.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Comparison {
    pub added: FieldSet,
    pub modified: FieldSet,
    pub removed: FieldSet,
}

/// Fill the structs a kind's zero object always has, so ownership starts below them.
fn with_zero(v: &Value, zero: &Value) -> Value {
    match (v, zero) {
        (Value::Object(m), Value::Object(z)) => {
            let mut out = m.clone();
            for (k, zv) in z {
                let merged = match m.get(k) {
                    Some(mv) => with_zero(mv, zv),
                    None => zv.clone(),
                };
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        _ => v.clone(),
    }
}

/// The apply-style field set of a configuration (what an Apply manager owns).
pub fn apply_set(config: &Value, root: &Slot) -> FieldSet {
    let mut out = FieldSet::new();
    Walker::new(root).apply_set(config, &mut out);
    strip(out)
}

/// Compare two objects of a kind (`old` is `None` for a create).
pub fn compare(old: Option<&Value>, new: &Value, actor: &Actor) -> Comparison {
    let zero = schema::zero_object(actor.builtin, actor.kind);
    let old = with_zero(old.unwrap_or(&Value::Null), &zero);
    let old = if old.is_null() { zero.clone() } else { old };
    let new = with_zero(new, &zero);
    let mut c = Comparison::default();
    Walker::new(&actor.root()).compare(Some(&old), Some(&new), &mut c);
    Comparison {
        added: strip(c.added),
        modified: strip(c.modified),
        removed: strip(c.removed),
    }
}

/// Merge an apply configuration into a live object.
pub fn merge(live: &Value, config: &Value, root: &Slot) -> Value {
    Walker::new(root).merge(live, config)
}

/// Every field of an object as structured-merge-diff's `ToFieldSet` lists it (leaves, list
/// items, atomic lists and maps, empty maps), server bookkeeping included.
fn object_set(obj: &Value, root: &Slot) -> FieldSet {
    let mut out = FieldSet::new();
    Walker::new(root).apply_set(obj, &mut out);
    out.with_named_fields_as_members()
}

/// Remove from `merged` what the applying manager applied last time (`last`), no longer applies
/// and nobody else owns (`owned`: every manager's set, the applier's new configuration included).
/// Structured-merge-diff's `prune`, `addBackOwnedItems` and `addBackDanglingItems`, in that
/// order: remove everything last applied, add back what anyone owns, then remove only what the
/// removal took that was in the last applied set. A field below a removed map or list item that
/// someone still owns keeps its parent, so an apply never removes a field of its own
/// configuration.
fn prune(merged: Value, last: &FieldSet, owned: &FieldSet, root: &Slot) -> Value {
    if last.is_empty() {
        return merged;
    }
    let last = last.with_named_fields_as_members();
    let owned = owned.with_named_fields_as_members();
    let merged_set = object_set(&merged, root);
    let mut first = merged.clone();
    remove_fields(&mut first, &last);
    let kept = object_set(&first, root).union(&owned);
    let mut added_back = merged.clone();
    remove_fields(&mut added_back, &merged_set.difference(&kept));
    let dangling = merged_set
        .difference(&object_set(&added_back, root))
        .intersection(&last);
    let mut out = merged;
    remove_fields(&mut out, &dangling);
    out
}

/// Remove the members of `set` from an object, each with everything below it, as
/// structured-merge-diff's `RemoveItems` does; maps and lists the removal empties go too.
pub fn remove_fields(obj: &mut Value, set: &FieldSet) {
    for (pe, member, below) in set.entries() {
        match (&mut *obj, pe) {
            (Value::Object(m), PathElement::Field(name)) => {
                if member {
                    m.remove(name);
                } else if let Some(child) = m.get_mut(name) {
                    let was_empty = is_empty_container(child);
                    remove_fields(child, below);
                    if !was_empty && is_empty_container(child) {
                        m.remove(name);
                    }
                }
            }
            (Value::Array(items), pe) => {
                let Some(idx) = items
                    .iter()
                    .enumerate()
                    .position(|(i, item)| item_matches(item, i, pe))
                else {
                    continue;
                };
                if member {
                    items.remove(idx);
                } else {
                    remove_fields(&mut items[idx], below);
                }
            }
            _ => {}
        }
    }
}

fn is_empty_container(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// Whether a list item is the one a path element names.
fn item_matches(item: &Value, index: usize, pe: &PathElement) -> bool {
    match pe {
        PathElement::Key(k) => {
            let key: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
            key.iter().all(|(kk, kv)| {
                item.get(kk) == Some(kv)
                    || (kk == "protocol" && item.get(kk).is_none() && kv == "TCP")
            })
        }
        PathElement::Value(v) => &item.to_string() == v,
        PathElement::Index(n) => *n == index,
        PathElement::Field(_) => false,
    }
}

/// A server-side apply that would change fields other managers own.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflicts(pub Vec<(String, Path)>);

impl Conflicts {
    /// The 409 Status the real server answers with.
    pub fn to_error(&self) -> ApiError {
        let n = self.0.len();
        let message = if n == 1 {
            format!(
                "Apply failed with 1 conflict: conflict with {}: {}",
                self.0[0].0, self.0[0].1
            )
        } else {
            let mut managers: Vec<&String> = self.0.iter().map(|(m, _)| m).collect();
            managers.sort();
            managers.dedup();
            let mut lines = Vec::new();
            for m in managers {
                lines.push(format!("conflicts with {m}:"));
                for (_, p) in self.0.iter().filter(|(x, _)| x == m) {
                    lines.push(format!("- {p}"));
                }
            }
            format!("Apply failed with {n} conflicts: {}", lines.join("\n"))
        };
        let causes: Vec<Value> = self
            .0
            .iter()
            .map(|(m, p)| json!({"reason": "FieldManagerConflict", "message": format!("conflict with {m}"), "field": p.to_string()}))
            .collect();
        ApiError::new(409, "Conflict", message).with_details(json!({"causes": causes}))
    }
}

/// Why a `metadata.managedFields` value cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManagedFieldsError {
    #[error("metadata.managedFields must be a list")]
    NotAList,
    #[error(
        "metadata.managedFields[{index}].operation: Unsupported value: {value:?}: supported values: \"Apply\", \"Update\""
    )]
    Operation { index: usize, value: String },
    #[error("metadata.managedFields[{index}].fieldsType: Unsupported value: must be \"FieldsV1\"")]
    FieldsType { index: usize },
    #[error("metadata.managedFields[{index}].fieldsV1: {message}")]
    Fields { index: usize, message: String },
}

impl Managers {
    /// Parse `metadata.managedFields` as a client sent or the server stored it. Entries without
    /// fields (the `{}` of `[{}]`, which clients send to strip managedFields) are dropped.
    pub fn from_object(obj: &Value) -> Result<Managers, ManagedFieldsError> {
        let Some(entries) = obj["metadata"].get("managedFields") else {
            return Ok(Managers::default());
        };
        if entries.is_null() {
            return Ok(Managers::default());
        }
        let entries = entries.as_array().ok_or(ManagedFieldsError::NotAList)?;
        let mut out = Vec::new();
        for (index, e) in entries.iter().enumerate() {
            let fields = match e.get("fieldsV1") {
                Some(v) => FieldSet::from_fields_v1(v)
                    .map_err(|message| ManagedFieldsError::Fields { index, message })?,
                None => FieldSet::new(),
            };
            if fields.is_empty() {
                continue;
            }
            let operation = match e["operation"].as_str() {
                Some("Apply") => Operation::Apply,
                Some("Update") => Operation::Update,
                other => {
                    return Err(ManagedFieldsError::Operation {
                        index,
                        value: other.unwrap_or_default().to_string(),
                    });
                }
            };
            if e["fieldsType"].as_str().is_some_and(|t| t != "FieldsV1") {
                return Err(ManagedFieldsError::FieldsType { index });
            }
            out.push(ManagerEntry {
                manager: e["manager"].as_str().unwrap_or_default().to_string(),
                operation,
                api_version: e["apiVersion"].as_str().unwrap_or_default().into(),
                time: e["time"].as_str().unwrap_or_default().into(),
                subresource: e["subresource"].as_str().unwrap_or_default().into(),
                fields,
            });
        }
        Ok(Managers(out))
    }

    /// The managers a write asks for through its object's `metadata.managedFields`, as the real
    /// server reads them: `None` (keep the stored ones) when the field is absent, null or an
    /// empty list — so clients unaware of the field never drop it — and an empty set for `[{}]`.
    pub fn from_request(obj: &Value) -> Result<Option<Managers>, ManagedFieldsError> {
        match obj["metadata"].get("managedFields") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(a)) if a.is_empty() => Ok(None),
            Some(_) => Managers::from_object(obj).map(Some),
        }
    }

    /// The `metadata.managedFields` value, sorted as the real server sorts it.
    pub fn to_value(&self) -> Value {
        let mut entries: Vec<&ManagerEntry> =
            self.0.iter().filter(|e| !e.fields.is_empty()).collect();
        entries.sort_by(|a, b| {
            a.operation
                .cmp(&b.operation)
                .then(a.time.cmp(&b.time))
                .then(a.manager.cmp(&b.manager))
                .then(a.api_version.cmp(&b.api_version))
                .then(a.subresource.cmp(&b.subresource))
        });
        Value::Array(
            entries
                .into_iter()
                .map(|e| {
                    let mut m = json!({
                        "manager": e.manager,
                        "operation": e.operation.as_str(),
                        "apiVersion": e.api_version,
                        "time": e.time,
                        "fieldsType": "FieldsV1",
                        "fieldsV1": e.fields.to_fields_v1(),
                    });
                    if !e.subresource.is_empty() {
                        m["subresource"] = json!(e.subresource);
                    }
                    m
                })
                .collect(),
        )
    }

    fn entry_mut(&mut self, actor: &Actor, operation: Operation) -> &mut ManagerEntry {
        let at = match self
            .0
            .iter()
            .position(|e| e.same_identity(actor.manager, operation, actor.subresource))
        {
            Some(at) => at,
            None => {
                self.0.push(ManagerEntry {
                    manager: actor.manager.into(),
                    operation,
                    api_version: actor.api_version.into(),
                    time: actor.time.into(),
                    subresource: actor.subresource.into(),
                    fields: FieldSet::new(),
                });
                self.0.len() - 1
            }
        };
        let e = &mut self.0[at];
        e.api_version = actor.api_version.into();
        e.time = actor.time.into();
        e
    }

    fn forget_empty(&mut self) {
        self.0.retain(|e| !e.fields.is_empty());
    }

    /// Record an Update (create, update, patch): the actor owns what it added or changed; other
    /// managers lose what changed and what was removed.
    pub fn update(&mut self, old: Option<&Value>, new: &Value, actor: &Actor, has_status: bool) {
        let c = compare(old, new, actor);
        let changed =
            scope_to_subresource(c.added.union(&c.modified), actor.subresource, has_status);
        let removed = c.removed;
        for e in &mut self.0 {
            if e.same_identity(actor.manager, Operation::Update, actor.subresource) {
                continue;
            }
            e.fields = e.fields.difference(&changed).recursive_difference(&removed);
        }
        let e = self.entry_mut(actor, Operation::Update);
        e.fields = e.fields.union(&changed).recursive_difference(&removed);
        self.forget_empty();
    }

    /// Server-side apply `config` onto `live` (`None` when creating). Returns the merged object
    /// (before defaulting) or the conflicts when `force` is false.
    pub fn apply(
        &mut self,
        live: Option<&Value>,
        config: &Value,
        actor: &Actor,
        force: bool,
        has_status: bool,
    ) -> Result<Value, Conflicts> {
        let config_set = scope_to_subresource(
            apply_set(config, &actor.root()),
            actor.subresource,
            has_status,
        );
        let base = live.cloned().unwrap_or_else(|| json!({}));
        let merged = merge(&base, config, &actor.root());
        let last = self
            .0
            .iter()
            .find(|e| e.same_identity(actor.manager, Operation::Apply, actor.subresource))
            .map(|e| e.fields.clone())
            .unwrap_or_default();
        let owned = self
            .0
            .iter()
            .filter(|e| !e.same_identity(actor.manager, Operation::Apply, actor.subresource))
            .fold(config_set.clone(), |acc, e| acc.union(&e.fields));
        let merged = prune(merged, &last, &owned, &actor.root());
        let c = compare(live, &merged, actor);
        let changed = c.modified.union(&c.added);
        let mut conflicts = Vec::new();
        for e in &self.0 {
            if e.same_identity(actor.manager, Operation::Apply, actor.subresource) {
                continue;
            }
            for p in e.fields.intersection(&changed).paths() {
                conflicts.push((e.display(), p));
            }
        }
        if !conflicts.is_empty() && !force {
            return Err(Conflicts(conflicts));
        }
        for e in &mut self.0 {
            if e.same_identity(actor.manager, Operation::Apply, actor.subresource) {
                continue;
            }
            e.fields = e
                .fields
                .difference(&changed)
                .recursive_difference(&c.removed);
        }
        let e = self.entry_mut(actor, Operation::Apply);
        e.fields = config_set;
        self.forget_empty();
        Ok(merged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor<'a>(manager: &'a str, kind: &'a str) -> Actor<'a> {
        Actor {
            manager,
            api_version: "v1",
            subresource: "",
            time: "2024-01-01T00:00:00Z",
            builtin: true,
            kind,
            schema: None,
        }
    }

    #[test]
    fn an_update_manager_owns_what_it_created_with_dots_on_new_maps() {
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "labels": {"x": "1"}}, "data": {"k": "v"}});
        let mut m = Managers::default();
        m.update(None, &obj, &actor("kubectl-create", "ConfigMap"), false);
        assert_eq!(
            m.to_value()[0]["fieldsV1"],
            json!({"f:data": {".": {}, "f:k": {}}, "f:metadata": {"f:labels": {".": {}, "f:x": {}}}})
        );
    }

    #[test]
    fn struct_fields_of_a_kind_get_no_dot() {
        let obj = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "a"},
            "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "web", "image": "nginx"}]}}}});
        let mut m = Managers::default();
        m.update(
            None,
            &obj,
            &Actor {
                api_version: "apps/v1",
                ..actor("kubectl-create", "Deployment")
            },
            true,
        );
        assert_eq!(
            m.to_value()[0]["fieldsV1"],
            json!({"f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
                "k:{\"name\":\"web\"}": {".": {}, "f:image": {}, "f:name": {}}}}}}})
        );
    }

    #[test]
    fn an_apply_manager_owns_exactly_its_configuration() {
        let config = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "labels": {"x": "1"}}, "data": {"k": "v"}});
        let mut m = Managers::default();
        let merged = m
            .apply(None, &config, &actor("flux", "ConfigMap"), false, false)
            .unwrap();
        assert_eq!(merged, config);
        assert_eq!(m.to_value()[0]["operation"], "Apply");
        assert_eq!(
            m.to_value()[0]["fieldsV1"],
            json!({"f:data": {"f:k": {}}, "f:metadata": {"f:labels": {"f:x": {}}}})
        );
    }

    #[test]
    fn applying_a_field_another_manager_set_differently_conflicts_unless_forced() {
        let live = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "v", "j": "1"}});
        let mut m = Managers::default();
        m.update(None, &live, &actor("kubectl-edit", "ConfigMap"), false);
        let config = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "changed", "j": "1"}});
        let err = m
            .clone()
            .apply(
                Some(&live),
                &config,
                &actor("flux", "ConfigMap"),
                false,
                false,
            )
            .unwrap_err();
        let status = err.to_error();
        assert_eq!(status.code, 409);
        assert_eq!(
            status.message,
            "Apply failed with 1 conflict: conflict with \"kubectl-edit\" using v1: .data.k"
        );
        let merged = m
            .apply(
                Some(&live),
                &config,
                &actor("flux", "ConfigMap"),
                true,
                false,
            )
            .unwrap();
        assert_eq!(merged["data"]["k"], "changed");
        let v = m.to_value();
        // flux owns both; kubectl-edit keeps the shared, unchanged j.
        assert_eq!(v[0]["manager"], "flux");
        assert_eq!(v[1]["fieldsV1"], json!({"f:data": {".": {}, "f:j": {}}}));
    }

    #[test]
    fn dropping_a_field_from_the_configuration_removes_it_when_nobody_else_owns_it() {
        let mut m = Managers::default();
        let c1 = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "labels": {"x": "1"}}, "data": {"a": "1", "b": "2"}});
        let live = m
            .apply(None, &c1, &actor("flux", "ConfigMap"), false, false)
            .unwrap();
        let c2 = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"a": "1"}});
        let merged = m
            .apply(Some(&live), &c2, &actor("flux", "ConfigMap"), false, false)
            .unwrap();
        assert_eq!(merged["data"], json!({"a": "1"}));
        assert!(merged["metadata"].get("labels").is_none());
    }

    #[test]
    fn a_map_the_applier_owned_with_a_dot_keeps_the_keys_it_still_applies() {
        // kubectl's migration gives the applier `f:data {".", f:a}`; applying `data.a` again
        // owns `f:data.f:a` only, and must not take `a` away with the `data` map.
        let live = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "annotations": {"old": "x"}}, "data": {"a": "1"}});
        let mut m = Managers(vec![ManagerEntry {
            manager: "flux".into(),
            operation: Operation::Apply,
            api_version: "v1".into(),
            time: "t".into(),
            subresource: String::new(),
            fields: FieldSet::from_fields_v1(&json!({"f:data": {".": {}, "f:a": {}},
                "f:metadata": {"f:annotations": {".": {}, "f:old": {}}}}))
            .unwrap(),
        }]);
        let config = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}});
        let merged = m
            .apply(
                Some(&live),
                &config,
                &actor("flux", "ConfigMap"),
                false,
                false,
            )
            .unwrap();
        assert_eq!(merged["data"], json!({"a": "1"}));
        assert!(merged["metadata"].get("annotations").is_none(), "{merged}");
        assert_eq!(m.to_value()[0]["fieldsV1"], json!({"f:data": {"f:a": {}}}));
    }

    #[test]
    fn managed_fields_of_a_request_follow_the_real_server() {
        let with = |v: Value| json!({"metadata": {"managedFields": v}});
        assert_eq!(Managers::from_request(&json!({"metadata": {}})), Ok(None));
        assert_eq!(Managers::from_request(&with(json!([]))), Ok(None));
        assert_eq!(
            Managers::from_request(&with(json!([{}]))),
            Ok(Some(Managers::default()))
        );
        assert_eq!(
            Managers::from_request(&with(
                json!([{"manager": "x", "operation": "Nope", "fieldsV1": {"f:a": {}}}])
            )),
            Err(ManagedFieldsError::Operation {
                index: 0,
                value: "Nope".into()
            })
        );
    }

    #[test]
    fn keyed_lists_merge_by_key() {
        let live = json!({"spec": {"containers": [{"name": "a", "image": "x", "imagePullPolicy": "Always"}, {"name": "b", "image": "y"}]}});
        let config = json!({"spec": {"containers": [{"name": "a", "image": "z"}, {"name": "c", "image": "w"}]}});
        let merged = merge(&live, &config, &Slot::root("v1", "Pod", true));
        assert_eq!(
            merged["spec"]["containers"][0],
            json!({"name": "a", "image": "z", "imagePullPolicy": "Always"})
        );
        assert_eq!(merged["spec"]["containers"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn ports_are_keyed_with_a_defaulted_protocol() {
        let s = apply_set(
            &json!({"spec": {"ports": [{"port": 80}]}}),
            &Slot::root("v1", "Service", true),
        );
        assert_eq!(
            s.to_fields_v1(),
            json!({"f:spec": {"f:ports": {"k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:port": {}}}}})
        );
    }
}
