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
            .map(|r| format!("{}{}{:?}", r.plural, r.namespaced, r.schemas))
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

/// The schema of a kind: a CRD's own `openAPIV3Schema` for its version (what `kubectl explain`
/// reads), with `apiVersion`, `kind` and `metadata` as the real server adds them; a placeholder for
/// built-in kinds.
fn kind_schema(r: &ResourceInfo, version: &str) -> Value {
    let gvk = json!([{"group": r.group, "version": version, "kind": r.kind}]);
    let own = r
        .schemas
        .iter()
        .find(|(v, _)| v == version)
        .map(|(_, s)| (**s).clone());
    let mut schema = own.unwrap_or_else(|| {
        json!({"type": "object", "description": format!("{} (kubesim: schema not modelled)", r.kind)})
    });
    if !schema["properties"].is_object() {
        schema["properties"] = json!({});
    }
    let props = &mut schema["properties"];
    props["apiVersion"] = json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources"});
    props["kind"] = json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"});
    props["metadata"] = json!({"type": "object", "description": "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"});
    schema["x-kubernetes-group-version-kind"] = gvk;
    schema
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
        schemas.insert(schema_name(r, &v), kind_schema(r, &v));
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": crate::discovery::GIT_VERSION},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

/// `/openapi/v2` as JSON: a Swagger 2.0 document without paths or definitions. kubectl fetches
/// it only to validate `kind: List` files on the client; with no definitions it validates no
/// item, and the server validates each item as it is written.
pub fn v2_document() -> Value {
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": crate::discovery::GIT_VERSION},
        "paths": {},
        "definitions": {},
    })
}

/// Content type of the protobuf `/openapi/v2` document (gnostic's `openapi_v2.Document`). Clients
/// ask for `...spec.v2@v1.0+protobuf`; the server answers with this spelling, which Go's MIME
/// parser accepts.
pub const V2_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// `/openapi/v2` as the protobuf kubectl asks for: `Document{swagger: "2.0", info: {title,
/// version}}` (fields 1 and 2; `Info` fields 1 and 2).
pub fn v2_protobuf() -> Vec<u8> {
    fn field(num: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![(num << 3) | 2];
        let mut len = payload.len();
        loop {
            let byte = (len & 0x7f) as u8;
            len >>= 7;
            if len == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        }
        out.extend_from_slice(payload);
        out
    }
    let info = [
        field(1, b"Kubernetes"),
        field(2, crate::discovery::GIT_VERSION.as_bytes()),
    ]
    .concat();
    [field(1, b"2.0"), field(2, &info)].concat()
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

    #[test]
    fn the_v2_document_is_a_valid_protobuf_message() {
        let pb = v2_protobuf();
        assert_eq!(&pb[..5], &[0x0a, 3, b'2', b'.', b'0']);
        assert_eq!(pb[5], 0x12);
        assert_eq!(pb[6] as usize, pb.len() - 7);
        assert_eq!(v2_document()["swagger"], "2.0");
    }
}
