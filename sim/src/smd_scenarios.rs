//! Server-side apply scenarios whose expected results come from the reference implementation,
//! kubernetes-sigs/structured-merge-diff: each case restates one of its merge tests (named in
//! `upstream`, file `merge/<file>`, test function and case) on a real Kubernetes type with the
//! same list or map semantics — its keyed `list` becomes a Pod's `containers` (keyed by `name`),
//! its nested sets an `env` list inside a container, its `struct` a Pod's or Deployment's `spec`,
//! its set `metadata.finalizers`, its atomic map a Service's `spec.selector`, its leaves
//! ConfigMap `data`. Where a real type differs (a Go struct that always exists is never owned by
//! `.`), the case says so.

use serde_json::{Value, json};

use crate::apply::{Actor, Managers};

enum Step {
    Apply(&'static str, Value),
    ForceApply(&'static str, Value),
    Update(&'static str, Value),
    /// An apply that fails with these conflicts (`manager path`) and changes nothing.
    Conflicts(&'static str, Value, &'static [&'static str]),
}

struct Scenario {
    upstream: &'static str,
    api_version: &'static str,
    kind: &'static str,
    steps: Vec<Step>,
    /// The object afterwards, without its metadata.
    object: Value,
    /// (manager, fieldsV1) of every manager afterwards.
    managers: Vec<(&'static str, Value)>,
}

fn actor<'a>(s: &'a Scenario, manager: &'a str) -> Actor<'a> {
    Actor {
        manager,
        api_version: s.api_version,
        subresource: "",
        time: "2025-01-01T00:00:00Z",
        builtin: true,
        kind: s.kind,
        schema: None,
    }
}

fn with_meta(s: &Scenario, body: &Value) -> Value {
    let mut o = body.clone();
    o["apiVersion"] = json!(s.api_version);
    o["kind"] = json!(s.kind);
    if !o["metadata"].is_object() {
        o["metadata"] = json!({});
    }
    o["metadata"]["name"] = json!("x");
    o
}

fn run(s: &Scenario) {
    let mut live: Option<Value> = None;
    let mut managers = Managers::default();
    for (i, step) in s.steps.iter().enumerate() {
        let at = format!("{} step {}", s.upstream, i + 1);
        match step {
            Step::Apply(m, body) | Step::ForceApply(m, body) => {
                let force = matches!(step, Step::ForceApply(..));
                let merged = managers
                    .apply(
                        live.as_ref(),
                        &with_meta(s, body),
                        &actor(s, m),
                        force,
                        false,
                    )
                    .unwrap_or_else(|c| panic!("{at}: unexpected conflicts {:?}", c.0));
                live = Some(merged);
            }
            Step::Update(m, body) => {
                let new = with_meta(s, body);
                managers.update(live.as_ref(), &new, &actor(s, m), false);
                live = Some(new);
            }
            Step::Conflicts(m, body, expected) => {
                let before = managers.clone();
                let err = managers
                    .apply(
                        live.as_ref(),
                        &with_meta(s, body),
                        &actor(s, m),
                        false,
                        false,
                    )
                    .expect_err(&at);
                let got: Vec<String> = err.0.iter().map(|(m, p)| format!("{m} {p}")).collect();
                assert_eq!(got, *expected, "{at}");
                assert_eq!(managers, before, "{at}: a refused apply changes no owner");
            }
        }
    }
    let mut obj = live.expect("a scenario writes");
    obj.as_object_mut().unwrap().remove("metadata");
    obj.as_object_mut().unwrap().remove("apiVersion");
    obj.as_object_mut().unwrap().remove("kind");
    assert_eq!(obj, s.object, "{}: object", s.upstream);
    let got: Vec<(String, Value)> = managers
        .to_value()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["manager"].as_str().unwrap().to_string(),
                e["fieldsV1"].clone(),
            )
        })
        .collect();
    let mut want: Vec<(String, Value)> = s
        .managers
        .iter()
        .map(|(m, f)| (m.to_string(), f.clone()))
        .collect();
    let mut got_sorted = got.clone();
    got_sorted.sort_by(|a, b| a.0.cmp(&b.0));
    want.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(got_sorted, want, "{}: managers", s.upstream);
}

fn containers(items: Value) -> Value {
    json!({"spec": {"containers": items}})
}

fn k(name: &str) -> String {
    format!("k:{{\"name\":\"{name}\"}}")
}

/// fieldsV1 of containers keyed by name: (name, env names).
fn owned_containers(items: &[(&str, &[&str])]) -> Value {
    let mut m = serde_json::Map::new();
    for (name, env) in items {
        let mut item = json!({".": {}, "f:name": {}});
        if !env.is_empty() {
            let mut e = serde_json::Map::new();
            for n in *env {
                e.insert(k(n), json!({".": {}, "f:name": {}}));
            }
            item["f:env"] = Value::Object(e);
        }
        m.insert(k(name), item);
    }
    json!({"f:spec": {"f:containers": m}})
}

fn finalizers(values: &[&str]) -> Value {
    json!({"metadata": {"finalizers": values}})
}

fn owned_finalizers(values: &[&str]) -> Value {
    let mut m = serde_json::Map::new();
    for v in values {
        m.insert(format!("v:\"{v}\""), json!({}));
    }
    json!({"f:metadata": {"f:finalizers": m}})
}

fn scenarios() -> Vec<Scenario> {
    use Step::*;
    vec![
        Scenario {
            upstream: "multiple_appliers_test.go TestMultipleAppliersSet/remove_one",
            api_version: "v1",
            kind: "Pod",
            steps: vec![
                Apply(
                    "apply-one",
                    containers(json!([{"name": "a"}, {"name": "b"}])),
                ),
                Apply("apply-two", containers(json!([{"name": "c"}]))),
                Apply("apply-one", containers(json!([{"name": "a"}]))),
            ],
            object: containers(json!([{"name": "a"}, {"name": "c"}])),
            managers: vec![
                ("apply-one", owned_containers(&[("a", &[])])),
                ("apply-two", owned_containers(&[("c", &[])])),
            ],
        },
        Scenario {
            upstream: "multiple_appliers_test.go TestMultipleAppliersSet/same_value_no_conflict",
            api_version: "v1",
            kind: "Pod",
            steps: vec![
                Apply(
                    "apply-one",
                    containers(json!([{"name": "a", "image": "0"}])),
                ),
                Apply(
                    "apply-two",
                    containers(json!([{"name": "a", "image": "0"}])),
                ),
            ],
            object: containers(json!([{"name": "a", "image": "0"}])),
            managers: vec![
                (
                    "apply-one",
                    json!({"f:spec": {"f:containers": {k("a"): {".": {}, "f:name": {}, "f:image": {}}}}}),
                ),
                (
                    "apply-two",
                    json!({"f:spec": {"f:containers": {k("a"): {".": {}, "f:name": {}, "f:image": {}}}}}),
                ),
            ],
        },
        Scenario {
            upstream: "multiple_appliers_test.go TestMultipleAppliersSet/change_value_yes_conflict",
            api_version: "v1",
            kind: "Pod",
            steps: vec![
                Apply(
                    "apply-one",
                    containers(json!([{"name": "a", "image": "0"}])),
                ),
                Conflicts(
                    "apply-two",
                    containers(json!([{"name": "a", "image": "1"}])),
                    &["\"apply-one\" .spec.containers[name=\"a\"].image"],
                ),
            ],
            object: containers(json!([{"name": "a", "image": "0"}])),
            managers: vec![(
                "apply-one",
                json!({"f:spec": {"f:containers": {k("a"): {".": {}, "f:name": {}, "f:image": {}}}}}),
            )],
        },
        Scenario {
            upstream: "multiple_appliers_test.go TestMultipleAppliersSet/remove_one_keep_one",
            api_version: "v1",
            kind: "Pod",
            steps: vec![
                Apply(
                    "apply-one",
                    containers(json!([{"name": "a"}, {"name": "b"}, {"name": "c"}])),
                ),
                Apply(
                    "apply-two",
                    containers(json!([{"name": "c"}, {"name": "d"}])),
                ),
                Apply("apply-one", containers(json!([{"name": "a"}]))),
            ],
            object: containers(json!([{"name": "a"}, {"name": "c"}, {"name": "d"}])),
            managers: vec![
                ("apply-one", owned_containers(&[("a", &[])])),
                ("apply-two", owned_containers(&[("c", &[]), ("d", &[])])),
            ],
        },
        Scenario {
            upstream: "multiple_appliers_test.go TestMultipleAppliersFieldUnsetting/unset_scalar_sole_owner",
            api_version: "apps/v1",
            kind: "Deployment",
            steps: vec![
                Apply(
                    "apply-one",
                    json!({"spec": {"replicas": 1, "minReadySeconds": 5}}),
                ),
                Apply("apply-one", json!({"spec": {"replicas": 1}})),
            ],
            object: json!({"spec": {"replicas": 1}}),
            managers: vec![("apply-one", json!({"f:spec": {"f:replicas": {}}}))],
        },
        Scenario {
            upstream: "multiple_appliers_test.go TestMultipleAppliersFieldUnsetting/unset_scalar_shared_with_applier",
            api_version: "apps/v1",
            kind: "Deployment",
            steps: vec![
                Apply(
                    "apply-one",
                    json!({"spec": {"replicas": 1, "minReadySeconds": 5}}),
                ),
                Apply("apply-two", json!({"spec": {"minReadySeconds": 5}})),
                Apply("apply-one", json!({"spec": {"replicas": 1}})),
            ],
            object: json!({"spec": {"replicas": 1, "minReadySeconds": 5}}),
            managers: vec![
                ("apply-one", json!({"f:spec": {"f:replicas": {}}})),
                ("apply-two", json!({"f:spec": {"f:minReadySeconds": {}}})),
            ],
        },
        Scenario {
            // Upstream the updater also owns `struct` (it created it); a Deployment's `spec` is a
            // Go struct that always exists, so nobody owns it on a real server.
            upstream: "multiple_appliers_test.go TestMultipleAppliersFieldUnsetting/unset_scalar_shared_with_updater",
            api_version: "apps/v1",
            kind: "Deployment",
            steps: vec![
                Update(
                    "updater",
                    json!({"spec": {"replicas": 1, "minReadySeconds": 5}}),
                ),
                Apply(
                    "applier",
                    json!({"spec": {"replicas": 1, "minReadySeconds": 5}}),
                ),
                Apply("applier", json!({"spec": {"replicas": 1}})),
            ],
            object: json!({"spec": {"replicas": 1, "minReadySeconds": 5}}),
            managers: vec![
                (
                    "updater",
                    json!({"f:spec": {"f:replicas": {}, "f:minReadySeconds": {}}}),
                ),
                ("applier", json!({"f:spec": {"f:replicas": {}}})),
            ],
        },
        Scenario {
            upstream: "multiple_appliers_test.go TestMultipleAppliersFieldUnsetting/updater_claims_field",
            api_version: "apps/v1",
            kind: "Deployment",
            steps: vec![
                Apply(
                    "applier",
                    json!({"spec": {"replicas": 1, "minReadySeconds": 5}}),
                ),
                Update(
                    "updater",
                    json!({"spec": {"replicas": 1, "minReadySeconds": 6}}),
                ),
            ],
            object: json!({"spec": {"replicas": 1, "minReadySeconds": 6}}),
            managers: vec![
                ("updater", json!({"f:spec": {"f:minReadySeconds": {}}})),
                ("applier", json!({"f:spec": {"f:replicas": {}}})),
            ],
        },
        Scenario {
            upstream: "multiple_appliers_test.go TestMultipleAppliersFieldUnsetting/unset_complex_sole_owner",
            api_version: "v1",
            kind: "Pod",
            steps: vec![
                Apply(
                    "apply-one",
                    json!({"spec": {"hostname": "a", "securityContext": {"runAsUser": 1}}}),
                ),
                Apply("apply-one", json!({"spec": {"hostname": "a"}})),
            ],
            object: json!({"spec": {"hostname": "a"}}),
            managers: vec![("apply-one", json!({"f:spec": {"f:hostname": {}}}))],
        },
        Scenario {
            upstream: "multiple_appliers_test.go TestMultipleAppliersFieldUnsetting/unset_complex_shared_with_applier",
            api_version: "v1",
            kind: "Pod",
            steps: vec![
                Apply(
                    "apply-one",
                    json!({"spec": {"hostname": "a", "securityContext": {"runAsUser": 1}}}),
                ),
                Apply(
                    "apply-two",
                    json!({"spec": {"securityContext": {"runAsUser": 1}}}),
                ),
                Apply("apply-one", json!({"spec": {"hostname": "a"}})),
            ],
            object: json!({"spec": {"hostname": "a", "securityContext": {"runAsUser": 1}}}),
            managers: vec![
                ("apply-one", json!({"f:spec": {"f:hostname": {}}})),
                (
                    "apply-two",
                    json!({"f:spec": {"f:securityContext": {"f:runAsUser": {}}}}),
                ),
            ],
        },
        Scenario {
            upstream: "multiple_appliers_test.go TestMultipleAppliersNestedType/remove_one_keep_one_with_two_sub_items",
            api_version: "v1",
            kind: "Pod",
            steps: vec![
                Apply(
                    "apply-one",
                    containers(json!([{"name": "a"}, {"name": "b", "env": [{"name": "c"}]}])),
                ),
                Apply(
                    "apply-two",
                    containers(json!([{"name": "b", "env": [{"name": "d"}]}])),
                ),
                Apply("apply-one", containers(json!([{"name": "a"}]))),
            ],
            object: containers(json!([{"name": "a"}, {"name": "b", "env": [{"name": "d"}]}])),
            managers: vec![
                ("apply-one", owned_containers(&[("a", &[])])),
                ("apply-two", owned_containers(&[("b", &["d"])])),
            ],
        },
        Scenario {
            upstream: "multiple_appliers_test.go TestMultipleAppliersNestedType/remove_one_keep_one_with_dangling_subitem",
            api_version: "v1",
            kind: "Pod",
            steps: vec![
                Apply(
                    "apply-one",
                    containers(json!([{"name": "a"}, {"name": "b", "env": [{"name": "c"}]}])),
                ),
                Apply(
                    "apply-two",
                    containers(json!([{"name": "b", "env": [{"name": "d"}]}])),
                ),
                Update(
                    "controller",
                    containers(
                        json!([{"name": "a"}, {"name": "b", "env": [{"name": "c"}, {"name": "d"}, {"name": "e"}]}]),
                    ),
                ),
                Apply("apply-one", containers(json!([{"name": "a"}]))),
            ],
            object: containers(
                json!([{"name": "a"}, {"name": "b", "env": [{"name": "d"}, {"name": "e"}]}]),
            ),
            managers: vec![
                ("apply-one", owned_containers(&[("a", &[])])),
                ("apply-two", owned_containers(&[("b", &["d"])])),
                (
                    "controller",
                    json!({"f:spec": {"f:containers": {k("b"): {"f:env": {k("e"): {".": {}, "f:name": {}}}}}}}),
                ),
            ],
        },
        Scenario {
            upstream: "multiple_appliers_test.go TestMultipleAppliersNestedType/remove_one_with_dangling_subitem_keep_one",
            api_version: "v1",
            kind: "Pod",
            steps: vec![
                Apply(
                    "apply-one",
                    containers(json!([{"name": "a"}, {"name": "b", "env": [{"name": "c"}]}])),
                ),
                Apply(
                    "apply-two",
                    containers(json!([{"name": "a", "env": [{"name": "b"}]}])),
                ),
                Update(
                    "controller",
                    containers(
                        json!([{"name": "a", "env": [{"name": "b"}]}, {"name": "b", "env": [{"name": "c"}, {"name": "d"}]}]),
                    ),
                ),
                Apply("apply-one", containers(json!([{"name": "a"}]))),
            ],
            object: containers(json!([{"name": "a", "env": [{"name": "b"}]}])),
            managers: vec![
                ("apply-one", owned_containers(&[("a", &[])])),
                ("apply-two", owned_containers(&[("a", &["b"])])),
            ],
        },
        Scenario {
            upstream: "key_test.go TestUpdateAssociativeLists/removing_obsolete_applied_structs",
            api_version: "v1",
            kind: "Pod",
            steps: vec![
                Apply("default", containers(json!([{"name": "a", "image": "1"}]))),
                Apply("default", containers(json!([{"name": "b", "image": "2"}]))),
            ],
            object: containers(json!([{"name": "b", "image": "2"}])),
            managers: vec![(
                "default",
                json!({"f:spec": {"f:containers": {k("b"): {".": {}, "f:name": {}, "f:image": {}}}}}),
            )],
        },
        Scenario {
            upstream: "leaf_test.go TestUpdateLeaf/apply_update_apply_with_conflict",
            api_version: "v1",
            kind: "ConfigMap",
            steps: vec![
                Apply(
                    "default",
                    json!({"data": {"numeric": "1", "string": "string"}}),
                ),
                Update(
                    "controller",
                    json!({"data": {"numeric": "1", "string": "controller string", "bool": "true"}}),
                ),
                Conflicts(
                    "default",
                    json!({"data": {"numeric": "2", "string": "user string"}}),
                    &["\"controller\" using v1 .data.string"],
                ),
                ForceApply(
                    "default",
                    json!({"data": {"numeric": "2", "string": "user string"}}),
                ),
            ],
            object: json!({"data": {"numeric": "2", "string": "user string", "bool": "true"}}),
            managers: vec![
                (
                    "default",
                    json!({"f:data": {"f:numeric": {}, "f:string": {}}}),
                ),
                ("controller", json!({"f:data": {"f:bool": {}}})),
            ],
        },
        Scenario {
            upstream: "nested_test.go TestUpdateNestedType/struct_apply_update_remove_all",
            api_version: "v1",
            kind: "Pod",
            steps: vec![
                Apply(
                    "default",
                    json!({"spec": {"securityContext": {"runAsUser": 1}}}),
                ),
                Update(
                    "controller",
                    json!({"spec": {"securityContext": {"runAsUser": 1, "runAsGroup": 2}}}),
                ),
                Apply("default", json!({})),
            ],
            object: json!({"spec": {"securityContext": {"runAsGroup": 2}}}),
            managers: vec![(
                "controller",
                json!({"f:spec": {"f:securityContext": {"f:runAsGroup": {}}}}),
            )],
        },
        Scenario {
            upstream: "nested_test.go TestUpdateNestedType/struct_apply_update_took_over",
            api_version: "v1",
            kind: "Pod",
            steps: vec![
                Apply(
                    "default",
                    json!({"spec": {"securityContext": {"runAsUser": 1}}}),
                ),
                Update(
                    "controller",
                    json!({"spec": {"securityContext": {"runAsUser": 2, "runAsGroup": 2}}}),
                ),
                Apply("default", json!({})),
            ],
            object: json!({"spec": {"securityContext": {"runAsUser": 2, "runAsGroup": 2}}}),
            managers: vec![(
                "controller",
                json!({"f:spec": {"f:securityContext": {"f:runAsUser": {}, "f:runAsGroup": {}}}}),
            )],
        },
        Scenario {
            upstream: "set_test.go TestUpdateSet/apply_twice",
            api_version: "v1",
            kind: "ConfigMap",
            steps: vec![
                Apply("default", finalizers(&["a", "c"])),
                Apply("default", finalizers(&["a", "b", "c", "d"])),
            ],
            object: json!({}),
            managers: vec![("default", owned_finalizers(&["a", "b", "c", "d"]))],
        },
        Scenario {
            upstream: "set_test.go TestUpdateSet/apply_update_apply_no_overlap",
            api_version: "v1",
            kind: "ConfigMap",
            steps: vec![
                Apply("default", finalizers(&["a", "c"])),
                Update("controller", finalizers(&["a", "b", "c", "d"])),
                Apply("default", finalizers(&["a", "aprime", "c", "cprime"])),
            ],
            object: json!({}),
            managers: vec![
                ("default", owned_finalizers(&["a", "aprime", "c", "cprime"])),
                ("controller", owned_finalizers(&["b", "d"])),
            ],
        },
        Scenario {
            upstream: "set_test.go TestUpdateSet/apply_update_apply_with_overlap",
            api_version: "v1",
            kind: "ConfigMap",
            steps: vec![
                Apply("default", finalizers(&["a", "c"])),
                Update("controller", finalizers(&["a", "b", "c", "d"])),
                Apply("default", finalizers(&["a", "b", "c"])),
            ],
            object: json!({}),
            managers: vec![
                ("default", owned_finalizers(&["a", "b", "c"])),
                ("controller", owned_finalizers(&["b", "d"])),
            ],
        },
        Scenario {
            upstream: "set_test.go TestUpdateSet/apply_update_apply_reorder",
            api_version: "v1",
            kind: "ConfigMap",
            steps: vec![
                Apply("default", finalizers(&["a", "b", "c", "d"])),
                Update("controller", finalizers(&["a", "d", "c", "b"])),
                Apply("default", finalizers(&["a", "b", "c", "d"])),
            ],
            object: json!({}),
            managers: vec![("default", owned_finalizers(&["a", "b", "c", "d"]))],
        },
        Scenario {
            upstream: "set_test.go TestUpdateSet/apply_twice_remove",
            api_version: "v1",
            kind: "ConfigMap",
            steps: vec![
                Apply("default", finalizers(&["a", "b", "c", "d"])),
                Apply("default", finalizers(&["a", "c"])),
            ],
            object: json!({}),
            managers: vec![("default", owned_finalizers(&["a", "c"]))],
        },
        Scenario {
            upstream: "multiple_appliers_test.go TestMultipleApplierAtomicMaps/force",
            api_version: "v1",
            kind: "Service",
            steps: vec![
                Apply("apply-one", json!({"spec": {"selector": {"field1": "a"}}})),
                Conflicts(
                    "apply-two",
                    json!({"spec": {"selector": {"field2": "b"}}}),
                    &["\"apply-one\" .spec.selector"],
                ),
                ForceApply("apply-two", json!({"spec": {"selector": {"field2": "b"}}})),
            ],
            object: json!({"spec": {"selector": {"field2": "b"}}}),
            managers: vec![("apply-two", json!({"f:spec": {"f:selector": {}}}))],
        },
    ]
}

/// The finalizers a scenario ends with, in order (they live in the metadata the object
/// comparison leaves out).
#[test]
fn sets_merge_in_the_reference_order() {
    type Names = &'static [&'static str];
    let cases: [(Names, Names, Names, Names); 3] = [
        // set_test.go TestUpdateSet/apply_update_apply_no_overlap
        (
            &["a", "c"],
            &["a", "b", "c", "d"],
            &["a", "aprime", "c", "cprime"],
            &["a", "b", "aprime", "c", "d", "cprime"],
        ),
        // set_test.go TestUpdateSet/apply_update_apply_with_overlap
        (
            &["a", "c"],
            &["a", "b", "c", "d"],
            &["a", "b", "c"],
            &["a", "b", "c", "d"],
        ),
        // set_test.go TestUpdateSet/apply_update_apply_reorder
        (
            &["a", "b", "c", "d"],
            &["a", "d", "c", "b"],
            &["a", "b", "c", "d"],
            &["a", "b", "c", "d"],
        ),
    ];
    for (first, update, second, want) in cases {
        let s = Scenario {
            upstream: "order",
            api_version: "v1",
            kind: "ConfigMap",
            steps: vec![],
            object: json!({}),
            managers: vec![],
        };
        let mut m = Managers::default();
        let live = m
            .apply(
                None,
                &with_meta(&s, &finalizers(first)),
                &actor(&s, "default"),
                false,
                false,
            )
            .unwrap();
        let updated = with_meta(&s, &finalizers(update));
        m.update(Some(&live), &updated, &actor(&s, "controller"), false);
        let out = m
            .apply(
                Some(&updated),
                &with_meta(&s, &finalizers(second)),
                &actor(&s, "default"),
                false,
                false,
            )
            .unwrap();
        assert_eq!(
            out["metadata"]["finalizers"],
            json!(want),
            "{first:?} {update:?} {second:?}"
        );
    }
}

#[test]
fn structured_merge_diff_scenarios() {
    for s in scenarios() {
        run(&s);
    }
}
