//! Alternative representations clients ask for in `Accept`: `meta.k8s.io/v1` Tables for
//! `kubectl get` (Name, Age, a CRD's printer columns) and PartialObjectMetadata. Pure.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::catalogue::{PrinterColumn, ResourceInfo};
use crate::jsonpath;

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

const CREATION_DESCRIPTION: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.";

/// The columns after Name: a CRD's printer columns (with their priority: kubectl shows those
/// above 0 only with `-o wide`), or Age when it declares none — as the server's table convertor.
fn extra_columns(res: &ResourceInfo) -> Vec<PrinterColumn> {
    if res.printer_columns.is_empty() {
        vec![PrinterColumn {
            name: "Age".into(),
            type_: "date".into(),
            format: String::new(),
            description: CREATION_DESCRIPTION.into(),
            priority: 0,
            json_path: ".metadata.creationTimestamp".into(),
        }]
    } else {
        res.printer_columns.clone()
    }
}

fn columns(res: &ResourceInfo) -> Vec<Value> {
    let mut cols = vec![
        json!({"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names", "priority": 0}),
    ];
    for c in extra_columns(res) {
        cols.push(json!({"name": c.name, "type": c.type_, "format": c.format, "description": c.description, "priority": c.priority}));
    }
    cols
}

/// A cell as the server fills it: the first value the path selects, as text for `string`
/// columns, as the JSON value for the others, null when nothing matches.
fn cell(obj: &Value, c: &PrinterColumn) -> Value {
    let Some(v) = jsonpath::find(obj, &c.json_path).into_iter().next() else {
        return Value::Null;
    };
    match (c.type_.as_str(), v) {
        ("string", Value::String(_)) => v.clone(),
        ("string", Value::Null) => Value::Null,
        ("string", other) => json!(other.to_string()),
        ("integer", Value::Number(n)) => n.as_i64().map_or(Value::Null, |i| json!(i)),
        ("number", Value::Number(_)) | ("boolean", Value::Bool(_)) | ("date", Value::String(_)) => {
            v.clone()
        }
        _ => Value::Null,
    }
}

fn row(res: &ResourceInfo, obj: &Value) -> Value {
    let meta = &obj["metadata"];
    let mut cells = vec![meta["name"].clone()];
    for c in extra_columns(res) {
        cells.push(cell(obj, &c));
    }
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
