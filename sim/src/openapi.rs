//! OpenAPI v3 discovery: the `/openapi/v3` index and one document per group-version whose
//! operations carry `x-kubernetes-group-version-kind` and the query parameters kubectl checks for.

use serde_json::{Map, Value, json};

use crate::catalogue::{Catalogue, ResourceInfo};

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn all_group_versions(cat: &Catalogue) -> Vec<(String, String)> {
    let mut out = vec![(String::new(), "v1".to_string())];
    for (g, vs) in cat.groups() {
        for v in vs {
            out.push((g.clone(), v));
        }
    }
    out
}

/// A short stable hash of the catalogue, so clients re-fetch documents after CRDs change.
fn hash_of(v: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in v.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016X}")
}

/// `/openapi/v3`.
pub fn root(cat: &Catalogue) -> Value {
    let mut paths = Map::new();
    for (g, v) in all_group_versions(cat) {
        let p = gv_path(&g, &v);
        let kinds: Vec<String> = cat
            .in_group_version(&g, &v)
            .iter()
            .map(|r| format!("{}{}", r.plural, r.namespaced))
            .collect();
        let hash = hash_of(&format!("{p}{}", kinds.join(",")));
        paths.insert(
            p.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={hash}")}),
        );
    }
    json!({"paths": paths})
}

fn param(name: &str, location: &str, description: &str) -> Value {
    json!({"name": name, "in": location, "description": description, "schema": {"type": "string", "uniqueItems": true}})
}

fn op(r: &ResourceInfo, version: &str, action: &str, id: &str, params: &[&str]) -> Value {
    let parameters: Vec<Value> = params.iter().map(|p| param(p, "query", p)).collect();
    let schema_ref = json!({"$ref": format!("#/components/schemas/{}", schema_name(r, version))});
    json!({
        "operationId": id,
        "parameters": parameters,
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": schema_ref}}}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": r.group, "version": version, "kind": r.kind},
    })
}

fn schema_name(r: &ResourceInfo, version: &str) -> String {
    let group = if r.group.is_empty() {
        "core".to_string()
    } else {
        r.group.clone()
    };
    format!("{group}.{version}.{}", r.kind)
}

const WRITE_PARAMS: &[&str] = &["dryRun", "fieldManager", "fieldValidation", "pretty"];
const PATCH_PARAMS: &[&str] = &[
    "dryRun",
    "fieldManager",
    "fieldValidation",
    "force",
    "pretty",
];
const LIST_PARAMS: &[&str] = &[
    "allowWatchBookmarks",
    "continue",
    "fieldSelector",
    "labelSelector",
    "limit",
    "resourceVersion",
    "resourceVersionMatch",
    "sendInitialEvents",
    "timeoutSeconds",
    "watch",
];

/// The document of one group-version (`api/v1`, `apis/apps/v1`), if served.
pub fn document(cat: &Catalogue, path: &str) -> Option<Value> {
    let (g, v) = all_group_versions(cat)
        .into_iter()
        .find(|(g, v)| gv_path(g, v) == path)?;
    let mut paths = Map::new();
    let mut schemas = Map::new();
    for r in cat.in_group_version(&g, &v) {
        let base = if g.is_empty() {
            format!("/api/{v}")
        } else {
            format!("/apis/{g}/{v}")
        };
        let collection = if r.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}", r.plural)
        } else {
            format!("{base}/{}", r.plural)
        };
        let item = format!("{collection}/{{name}}");
        let id = |verb: &str| format!("{verb}{}", r.kind);
        let mut coll_ops = json!({
            "get": op(r, &v, "list", &id("list"), LIST_PARAMS),
            "post": op(r, &v, "post", &id("create"), WRITE_PARAMS),
        });
        if r.has_verb("deletecollection") {
            coll_ops["delete"] = op(
                r,
                &v,
                "deletecollection",
                &id("deletecollection"),
                &["dryRun", "labelSelector", "fieldSelector"],
            );
        }
        paths.insert(collection.clone(), coll_ops);
        paths.insert(
            item.clone(),
            json!({
                "get": op(r, &v, "get", &id("read"), &["pretty"]),
                "put": op(r, &v, "put", &id("replace"), WRITE_PARAMS),
                "patch": op(r, &v, "patch", &id("patch"), PATCH_PARAMS),
                "delete": op(r, &v, "delete", &id("delete"), &["dryRun", "gracePeriodSeconds", "propagationPolicy"]),
            }),
        );
        if r.status {
            paths.insert(
                format!("{item}/status"),
                json!({
                    "get": op(r, &v, "get", &id("readStatus"), &["pretty"]),
                    "put": op(r, &v, "put", &id("replaceStatus"), WRITE_PARAMS),
                    "patch": op(r, &v, "patch", &id("patchStatus"), PATCH_PARAMS),
                }),
            );
        }
        schemas.insert(
            schema_name(r, &v),
            json!({
                "type": "object",
                "description": format!("{} (kubesim: schema not modelled)", r.kind),
                "properties": {
                    "apiVersion": {"type": "string"},
                    "kind": {"type": "string"},
                    "metadata": {"type": "object"},
                },
                "x-kubernetes-group-version-kind": [{"group": r.group, "version": v, "kind": r.kind}],
            }),
        );
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": crate::discovery::GIT_VERSION},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_operations_declare_field_validation_and_their_kind() {
        let cat = Catalogue::builtin();
        let doc = document(&cat, "apis/apps/v1").unwrap();
        let patch =
            &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"]["kind"],
            "Deployment"
        );
        assert!(
            patch["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "fieldValidation")
        );
        assert!(
            root(&cat)["paths"]["api/v1"]["serverRelativeURL"]
                .as_str()
                .unwrap()
                .starts_with("/openapi/v3/api/v1?hash=")
        );
        assert!(document(&cat, "apis/nope/v1").is_none());
    }
}
