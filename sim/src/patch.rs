//! The three patch formats of PATCH requests: JSON patch (RFC 6902), JSON merge patch (RFC 7386)
//! and strategic merge patch with its list merge keys and `$patch` directives. Pure logic.

use serde_json::{Map, Value};

use crate::schema::{self, PatchStrategy};

/// Why a patch could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The patch document itself is malformed (400).
    #[error("{0}")]
    Malformed(String),
    /// The patch is well formed but does not apply to this object (422).
    #[error("{0}")]
    Inapplicable(String),
}

/// Apply an RFC 6902 JSON patch.
pub fn json_patch(doc: &Value, patch: &Value) -> Result<Value, PatchError> {
    let ops: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|e| PatchError::Malformed(format!("invalid JSON patch: {e}")))?;
    let mut out = doc.clone();
    json_patch::patch(&mut out, &ops).map_err(|e| PatchError::Inapplicable(e.to_string()))?;
    Ok(out)
}

/// Apply an RFC 7386 JSON merge patch.
pub fn merge_patch(doc: &Value, patch: &Value) -> Result<Value, PatchError> {
    if !patch.is_object() {
        return Err(PatchError::Malformed(
            "merge patch must be a JSON object".into(),
        ));
    }
    let mut out = doc.clone();
    json_patch::merge(&mut out, patch);
    Ok(out)
}

/// Apply a strategic merge patch to a built-in object.
pub fn strategic_merge_patch(doc: &Value, patch: &Value) -> Result<Value, PatchError> {
    let (Value::Object(d), Value::Object(p)) = (doc, patch) else {
        return Err(PatchError::Malformed(
            "strategic merge patch must be a JSON object".into(),
        ));
    };
    let mut names = Vec::new();
    Ok(merge_map(d, p, &mut names)?
        .map(Value::Object)
        .unwrap_or_else(|| Value::Object(Map::new())))
}

const ORDER_PREFIX: &str = "$setElementOrder/";
const DELETE_PRIMITIVE_PREFIX: &str = "$deleteFromPrimitiveList/";

/// Merge a patch map into an original map; `None` means the map itself is deleted.
fn merge_map(
    original: &Map<String, Value>,
    patch: &Map<String, Value>,
    names: &mut Vec<String>,
) -> Result<Option<Map<String, Value>>, PatchError> {
    match patch.get("$patch").map(|v| v.as_str()) {
        Some(Some("delete")) => return Ok(None),
        Some(Some("replace")) => {
            let mut out = patch.clone();
            out.remove("$patch");
            return Ok(Some(out));
        }
        Some(Some("merge")) | None => {}
        Some(other) => {
            return Err(PatchError::Malformed(format!(
                "unknown patch type: {other:?}"
            )));
        }
    }
    let mut out = original.clone();
    let mut orders = Vec::new();
    for (key, pv) in patch {
        if key == "$patch" || key == "$retainKeys" {
            continue;
        }
        if let Some(field) = key.strip_prefix(ORDER_PREFIX) {
            orders.push((field.to_string(), pv.clone()));
            continue;
        }
        if let Some(field) = key.strip_prefix(DELETE_PRIMITIVE_PREFIX) {
            let remove = pv
                .as_array()
                .ok_or_else(|| PatchError::Malformed(format!("{key} must be a list")))?;
            if let Some(Value::Array(items)) = out.get_mut(field) {
                items.retain(|i| !remove.contains(i));
            }
            continue;
        }
        if key.starts_with('$') {
            return Err(PatchError::Malformed(format!("unknown directive {key:?}")));
        }
        if pv.is_null() {
            out.remove(key);
            continue;
        }
        names.push(key.clone());
        let merged = match (original.get(key), pv) {
            (Some(Value::Object(o)), Value::Object(p)) => {
                merge_map(o, p, names)?.map(Value::Object)
            }
            (None, Value::Object(p)) => merge_map(&Map::new(), p, names)?.map(Value::Object),
            (Some(Value::Array(o)), Value::Array(p)) => Some(merge_list(o, p, names)?),
            (None, Value::Array(p)) => Some(merge_list(&[], p, names)?),
            (_, other) => Some(other.clone()),
        };
        names.pop();
        match merged {
            Some(v) => {
                out.insert(key.clone(), v);
            }
            None => {
                out.remove(key);
            }
        }
    }
    if let Some(retain) = patch.get("$retainKeys") {
        let keep: Vec<&str> = retain
            .as_array()
            .ok_or_else(|| PatchError::Malformed("$retainKeys must be a list".into()))?
            .iter()
            .filter_map(Value::as_str)
            .collect();
        out.retain(|k, _| keep.contains(&k.as_str()));
    }
    for (field, order) in orders {
        names.push(field.clone());
        let strategy =
            schema::patch_strategy(&names.iter().map(String::as_str).collect::<Vec<_>>());
        names.pop();
        if let (Some(Value::Array(items)), Value::Array(order)) = (out.get_mut(&field), order) {
            reorder(items, &order, &strategy);
        }
    }
    Ok(Some(out))
}

fn item_matches(item: &Value, key: &str, want: &Value) -> bool {
    item.get(key) == Some(want)
}

/// Put items in the order `$setElementOrder` gives; items it does not name keep their place after.
fn reorder(items: &mut Vec<Value>, order: &[Value], strategy: &PatchStrategy) {
    let mut sorted = Vec::with_capacity(items.len());
    let mut rest = std::mem::take(items);
    for o in order {
        let pos = match strategy {
            PatchStrategy::MergeKey(k) => o
                .get(*k)
                .and_then(|want| rest.iter().position(|i| item_matches(i, k, want))),
            _ => rest.iter().position(|i| i == o),
        };
        if let Some(pos) = pos {
            sorted.push(rest.remove(pos));
        }
    }
    sorted.extend(rest);
    *items = sorted;
}

fn merge_list(
    original: &[Value],
    patch: &[Value],
    names: &mut Vec<String>,
) -> Result<Value, PatchError> {
    let strategy = schema::patch_strategy(&names.iter().map(String::as_str).collect::<Vec<_>>());
    // `{"$patch": "replace"}` as an item replaces the whole list with the other items.
    if patch
        .iter()
        .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        return Ok(Value::Array(
            patch
                .iter()
                .filter(|i| i.get("$patch").is_none())
                .cloned()
                .collect(),
        ));
    }
    match strategy {
        PatchStrategy::Replace => Ok(Value::Array(patch.to_vec())),
        PatchStrategy::MergePrimitive => {
            let mut out = original.to_vec();
            for item in patch {
                if !out.contains(item) {
                    out.push(item.clone());
                }
            }
            Ok(Value::Array(out))
        }
        PatchStrategy::MergeKey(key) => {
            let mut out = original.to_vec();
            for item in patch {
                let Value::Object(pm) = item else {
                    return Err(PatchError::Malformed(format!(
                        "list {} items must be objects with the merge key {key:?}",
                        names.join(".")
                    )));
                };
                let Some(want) = pm.get(key) else {
                    return Err(PatchError::Malformed(format!(
                        "map: {pm:?} does not contain declared merge key: {key}"
                    )));
                };
                let pos = out.iter().position(|o| item_matches(o, key, want));
                if pm.get("$patch").and_then(Value::as_str) == Some("delete") {
                    if let Some(pos) = pos {
                        out.remove(pos);
                    }
                    continue;
                }
                match pos {
                    Some(pos) => {
                        let merged = match &out[pos] {
                            Value::Object(om) => merge_map(om, pm, names)?,
                            _ => Some(pm.clone()),
                        };
                        match merged {
                            Some(m) => out[pos] = Value::Object(m),
                            None => {
                                out.remove(pos);
                            }
                        }
                    }
                    None => {
                        if let Some(m) = merge_map(&Map::new(), pm, names)? {
                            out.push(Value::Object(m));
                        }
                    }
                }
            }
            Ok(Value::Array(out))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment() -> Value {
        json!({"spec": {"template": {"spec": {"containers": [
            {"name": "web", "image": "nginx:1", "env": [{"name": "A", "value": "1"}], "ports": [{"containerPort": 80}]},
            {"name": "side", "image": "busybox"}
        ], "volumes": [{"name": "v", "emptyDir": {}}]}}}})
    }

    #[test]
    fn containers_merge_by_name_and_env_by_name() {
        let p = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "web", "image": "nginx:2", "env": [{"name": "B", "value": "2"}]}
        ]}}}});
        let out = strategic_merge_patch(&deployment(), &p).unwrap();
        let c = &out["spec"]["template"]["spec"]["containers"];
        assert_eq!(c.as_array().unwrap().len(), 2);
        assert_eq!(c[0]["image"], "nginx:2");
        assert_eq!(
            c[0]["env"],
            json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}])
        );
        assert_eq!(c[0]["ports"], json!([{"containerPort": 80}]));
    }

    #[test]
    fn directives_delete_replace_and_order() {
        let p = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "side"}, {"name": "web"}],
            "containers": [{"name": "web", "$patch": "delete"}],
            "volumes": [{"$patch": "replace"}, {"name": "w", "emptyDir": {}}]
        }}}});
        let out = strategic_merge_patch(&deployment(), &p).unwrap();
        let spec = &out["spec"]["template"]["spec"];
        assert_eq!(
            spec["containers"],
            json!([{"name": "side", "image": "busybox"}])
        );
        assert_eq!(spec["volumes"], json!([{"name": "w", "emptyDir": {}}]));
        let reordered = strategic_merge_patch(
            &deployment(),
            &json!({"spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "side"}, {"name": "web"}]}}}}),
        )
        .unwrap();
        assert_eq!(
            reordered["spec"]["template"]["spec"]["containers"][0]["name"],
            "side"
        );
    }

    #[test]
    fn null_deletes_and_unkeyed_lists_replace() {
        let doc =
            json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"args": ["x", "y"]}});
        let out = strategic_merge_patch(
            &doc,
            &json!({"metadata": {"labels": {"a": null}}, "spec": {"args": ["z"]}}),
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"metadata": {"labels": {"b": "2"}}, "spec": {"args": ["z"]}})
        );
    }

    #[test]
    fn finalizers_merge_as_a_set_and_can_be_deleted() {
        let doc = json!({"metadata": {"finalizers": ["a", "b"]}});
        let out = strategic_merge_patch(&doc, &json!({"metadata": {"finalizers": ["c"]}})).unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "b", "c"]));
        let out = strategic_merge_patch(
            &doc,
            &json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
        )
        .unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
    }

    #[test]
    fn json_and_merge_patches() {
        let doc = json!({"data": {"a": "1"}});
        let out = json_patch(
            &doc,
            &json!([{"op": "add", "path": "/data/b", "value": "2"}]),
        )
        .unwrap();
        assert_eq!(out["data"]["b"], "2");
        assert!(matches!(
            json_patch(&doc, &json!([{"op": "remove", "path": "/nope"}])),
            Err(PatchError::Inapplicable(_))
        ));
        assert!(matches!(
            json_patch(&doc, &json!({"op": "x"})),
            Err(PatchError::Malformed(_))
        ));
        assert_eq!(
            merge_patch(&doc, &json!({"data": {"a": null}})).unwrap(),
            json!({"data": {}})
        );
        assert!(merge_patch(&doc, &json!([1])).is_err());
        assert!(strategic_merge_patch(&doc, &json!({"$patch": "bogus"})).is_err());
    }
}
