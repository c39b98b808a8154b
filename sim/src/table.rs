//! Alternative representations clients ask for in `Accept`: `meta.k8s.io/v1` Tables for
//! `kubectl get` (Name, Age, a CRD's printer columns) and PartialObjectMetadata. Pure.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::catalogue::ResourceInfo;
use crate::store::read_path;

/// Whether an Accept header asks for a Table.
pub fn wants_table(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|first| first.contains("as=Table"))
}

/// Whether an Accept header asks for PartialObjectMetadata (kube-rs metadata lists and watches).
pub fn wants_metadata(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|first| first.contains("as=PartialObjectMetadata"))
}

/// An object reduced to its metadata.
pub fn partial(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]})
}

/// A PartialObjectMetadataList.
pub fn partial_list(objects: &[Arc<Value>], list_meta: Value) -> Value {
    json!({
        "kind": "PartialObjectMetadataList",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "items": objects.iter().map(|o| partial(o)).collect::<Vec<_>>(),
    })
}

fn columns(res: &ResourceInfo) -> Vec<Value> {
    let mut cols = vec![
        json!({"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace.", "priority": 0}),
    ];
    for c in &res.printer_columns {
        cols.push(json!({"name": c.name, "type": c.type_, "format": "", "description": c.json_path, "priority": 0}));
    }
    cols.push(json!({"name": "Age", "type": "date", "format": "", "description": "CreationTimestamp is a timestamp representing the server time when this object was created.", "priority": 0}));
    cols
}

fn row(res: &ResourceInfo, obj: &Value) -> Value {
    let meta = &obj["metadata"];
    let mut cells = vec![meta["name"].clone()];
    for c in &res.printer_columns {
        let v = read_path(obj, &c.json_path);
        cells.push(if v.is_null() { json!("") } else { v.clone() });
    }
    cells.push(meta["creationTimestamp"].clone());
    let partial =
        json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta});
    json!({"cells": cells, "object": partial})
}

/// A Table of objects.
pub fn table(
    res: &ResourceInfo,
    objects: &[Arc<Value>],
    resource_version: u64,
    continue_token: Option<&str>,
) -> Value {
    let mut meta = json!({"resourceVersion": resource_version.to_string()});
    if let Some(c) = continue_token {
        meta["continue"] = json!(c);
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": columns(res),
        "rows": objects.iter().map(|o| row(res, o)).collect::<Vec<_>>(),
    })
}
