//! The generated CRDs: `crds/` matches the Rust types, the schemas are structural and carry
//! their CEL rules and defaults, and every example in `examples/` reads as its Rust type.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use gitops_reverser::crd::{
    ClusterWatchRule, GitDestination, GitRepoConfig, WatchRule, all_crds, crd_files, render_all,
};
use gitops_reverser::manifest::yaml::parse_documents;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn crds_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("crds")
}

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// With `UPDATE_CRDS=1` rewrites `crds/`; otherwise fails when a file differs, is missing or
/// is extra.
#[test]
fn crds_on_disk_match_the_rust_types() {
    let files = crd_files().expect("CRDs render as YAML");
    let dir = crds_dir();
    let hint = "run `UPDATE_CRDS=1 cargo test --test integration crds` and commit crds/";
    if std::env::var("UPDATE_CRDS").is_ok_and(|v| v == "1") {
        fs::create_dir_all(&dir).expect("create crds/");
        for entry in fs::read_dir(&dir).expect("read crds/") {
            let path = entry.expect("read crds/ entry").path();
            let known = files
                .iter()
                .any(|(name, _)| path.file_name() == Some(name.as_ref()));
            if !known && path.extension().is_some_and(|e| e == "yaml") {
                fs::remove_file(&path).expect("remove stale CRD file");
            }
        }
        for (name, contents) in &files {
            fs::write(dir.join(name), contents).expect("write CRD file");
        }
    }
    let on_disk: BTreeSet<String> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}; {hint}", dir.display()))
        .map(|entry| {
            entry
                .expect("read crds/ entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let expected: BTreeSet<String> = files.iter().map(|(name, _)| name.clone()).collect();
    assert_eq!(
        on_disk, expected,
        "crds/ holds other files than the generated ones; {hint}"
    );
    for (name, contents) in &files {
        let actual = fs::read_to_string(dir.join(name)).expect("read CRD file");
        assert!(
            actual == *contents,
            "crds/{name} is out of date with src/crd/; {hint}"
        );
    }
}

#[test]
fn file_names_and_stream_are_in_name_order() {
    let files = crd_files().unwrap();
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "clusterwatchrules.configbutler.ai.yaml",
            "gitdestinations.configbutler.ai.yaml",
            "gitrepoconfigs.configbutler.ai.yaml",
            "watchrules.configbutler.ai.yaml",
        ]
    );
    for (name, contents) in &files {
        assert!(contents.starts_with('#'), "{name} starts with a comment");
        let first_line_end = contents.find('\n').unwrap();
        assert!(
            contents[first_line_end + 1..].starts_with("---\n"),
            "{name}: --- after header"
        );
    }
    let stream = render_all().unwrap();
    let docs = parse_documents(&stream, "render_all").unwrap();
    let kinds: Vec<&str> = docs
        .iter()
        .map(|d| d["spec"]["names"]["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "ClusterWatchRule",
            "GitDestination",
            "GitRepoConfig",
            "WatchRule"
        ]
    );
    for doc in &docs {
        assert_eq!(doc["apiVersion"], "apiextensions.k8s.io/v1");
        assert_eq!(doc["kind"], "CustomResourceDefinition");
    }
}

fn crd_value(kind: &str) -> Value {
    all_crds()
        .into_iter()
        .map(|crd| serde_json::to_value(crd).unwrap())
        .find(|crd| crd["spec"]["names"]["kind"] == kind)
        .unwrap_or_else(|| panic!("no CRD for {kind}"))
}

fn schema_of(kind: &str) -> Value {
    crd_value(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

fn rules_at(schema: &Value) -> Vec<String> {
    schema["x-kubernetes-validations"]
        .as_array()
        .map(|rules| {
            rules
                .iter()
                .map(|r| r["rule"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn names_scopes_and_subresources() {
    let table = [
        ("GitRepoConfig", "gitrepoconfigs", "grc", "Namespaced"),
        ("GitDestination", "gitdestinations", "gd", "Namespaced"),
        ("WatchRule", "watchrules", "wr", "Namespaced"),
        ("ClusterWatchRule", "clusterwatchrules", "cwr", "Cluster"),
    ];
    for (kind, plural, short, scope) in table {
        let crd = crd_value(kind);
        assert_eq!(crd["metadata"]["name"], format!("{plural}.configbutler.ai"));
        assert_eq!(crd["spec"]["group"], "configbutler.ai");
        assert_eq!(crd["spec"]["names"]["plural"], plural);
        assert_eq!(crd["spec"]["names"]["shortNames"][0], short);
        assert_eq!(crd["spec"]["scope"], scope);
        let version = &crd["spec"]["versions"][0];
        assert_eq!(version["name"], "v1alpha1");
        assert_eq!(
            version["subresources"]["status"],
            serde_json::json!({}),
            "{kind} status"
        );
        let columns: Vec<&str> = version["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert!(
            columns.contains(&"Ready") && columns.contains(&"Age"),
            "{kind}: {columns:?}"
        );
        let status = &version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"];
        assert_eq!(status["observedGeneration"]["type"], "integer");
        let conditions = &status["conditions"];
        assert_eq!(conditions["x-kubernetes-list-type"], "map", "{kind}");
        assert_eq!(
            conditions["x-kubernetes-list-map-keys"],
            serde_json::json!(["type"]),
            "{kind}"
        );
    }
}

#[test]
fn schemas_carry_cel_rules() {
    let dest = schema_of("GitDestination");
    let spec = &dest["properties"]["spec"]["properties"];
    for field in ["repoRef", "branch", "folder"] {
        assert!(
            rules_at(&spec[field]).contains(&"self == oldSelf".to_string()),
            "GitDestination spec.{field} is immutable"
        );
    }
    let folder_rules = rules_at(&spec["folder"]).join("\n");
    assert!(folder_rules.contains("startsWith('/')"), "{folder_rules}");
    assert!(
        folder_rules.contains("(^|/)[.]{0,2}(/|$)"),
        "{folder_rules}"
    );
    assert_eq!(spec["folder"]["minLength"], 1);
    assert_eq!(spec["folder"]["maxLength"], 512);

    let wr = schema_of("WatchRule");
    assert_eq!(
        rules_at(&wr["properties"]["spec"]),
        ["self.rules.all(r, !has(r.scope))"]
    );
    let cwr = schema_of("ClusterWatchRule");
    assert_eq!(
        rules_at(&cwr["properties"]["spec"]),
        ["self.rules.all(r, has(r.scope))"]
    );
    for schema in [&wr, &cwr] {
        let rules = &schema["properties"]["spec"]["properties"]["rules"];
        assert_eq!(rules["minItems"], 1);
        assert!(
            rules["maxItems"].is_u64(),
            "rules bounded so CEL cost is bounded"
        );
    }

    let grc = schema_of("GitRepoConfig");
    let policy = &grc["properties"]["spec"]["properties"]["accessPolicy"]["properties"];
    let namespaced = rules_at(&policy["namespacedRules"]);
    assert!(
        namespaced
            .iter()
            .any(|r| r.contains("FromSelector") && r.contains("has(self.namespaceSelector)")),
        "{namespaced:?}"
    );
}

#[test]
fn schemas_carry_defaults_and_enums() {
    let grc = schema_of("GitRepoConfig");
    let spec = &grc["properties"]["spec"]["properties"];
    assert_eq!(spec["allowedBranches"]["default"], serde_json::json!(["*"]));
    let window = &spec["commit"]["properties"]["window"]["properties"];
    assert_eq!(window["quiet"]["default"], "3s");
    assert_eq!(window["maxAge"]["default"], "60s");
    assert_eq!(window["maxChanges"]["default"], 200);
    assert_eq!(window["maxChanges"]["minimum"].as_f64(), Some(1.0));
    assert!(window["quiet"]["pattern"].is_string());
    let mode = &spec["accessPolicy"]["properties"]["namespacedRules"]["properties"]["mode"];
    assert_eq!(mode["default"], "SameNamespace");
    assert_eq!(
        mode["enum"],
        serde_json::json!(["SameNamespace", "AllNamespaces", "FromSelector"])
    );
    assert_eq!(
        spec["accessPolicy"]["properties"]["allowClusterRules"]["default"],
        false
    );
    assert_eq!(
        grc["properties"]["spec"]["required"],
        serde_json::json!(["url"])
    );

    let dest = schema_of("GitDestination");
    let prune = &dest["properties"]["spec"]["properties"]["prune"];
    assert_eq!(prune["default"], "Sweep");
    assert_eq!(
        prune["enum"],
        serde_json::json!(["Sweep", "OnEvent", "Never"])
    );

    let cwr = schema_of("ClusterWatchRule");
    let rule = &cwr["properties"]["spec"]["properties"]["rules"]["items"]["properties"];
    assert_eq!(
        rule["operations"]["items"]["enum"],
        serde_json::json!(["CREATE", "UPDATE", "DELETE", "*"])
    );
    assert_eq!(rule["operations"]["default"], serde_json::json!(["*"]));
    assert_eq!(
        rule["scope"]["enum"],
        serde_json::json!(["Cluster", "Namespaced"])
    );
    let dest_ref = &cwr["properties"]["spec"]["properties"]["destinationRef"];
    assert_eq!(
        dest_ref["required"],
        serde_json::json!(["name", "namespace"])
    );
}

/// The apiserver only accepts structural schemas: every node has a type (or is int-or-string /
/// preserves unknown fields), and there are no `$ref`s or type-carrying `anyOf`/`oneOf`.
#[test]
fn schemas_are_structural() {
    fn walk(node: &Value, path: &str, problems: &mut Vec<String>) {
        let Some(obj) = node.as_object() else { return };
        for key in ["$ref", "anyOf", "oneOf", "allOf", "definitions", "$defs"] {
            if obj.contains_key(key) {
                problems.push(format!("{path}: has {key}"));
            }
        }
        let typed = obj.contains_key("type")
            || obj.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true))
            || obj.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
        if !typed {
            problems.push(format!("{path}: no type"));
        }
        if obj.contains_key("description") && obj["description"].as_str().is_none_or(str::is_empty)
        {
            problems.push(format!("{path}: empty description"));
        }
        if let Some(props) = obj.get("properties").and_then(Value::as_object) {
            for (name, prop) in props {
                walk(prop, &format!("{path}.{name}"), problems);
            }
        }
        if let Some(items) = obj.get("items") {
            walk(items, &format!("{path}[]"), problems);
        }
        if let Some(extra) = obj.get("additionalProperties").filter(|v| v.is_object()) {
            walk(extra, &format!("{path}{{}}"), problems);
        }
    }
    for kind in [
        "GitRepoConfig",
        "GitDestination",
        "WatchRule",
        "ClusterWatchRule",
    ] {
        let mut problems = Vec::new();
        walk(&schema_of(kind), kind, &mut problems);
        assert!(problems.is_empty(), "{problems:#?}");
    }
}

/// Every field of `example` is also in `typed` (the example read as its Rust type and written
/// back), so a misspelled or unknown field in an example fails instead of being dropped.
fn assert_subset(example: &Value, typed: &Value, path: &str) {
    match (example, typed) {
        (Value::Object(e), Value::Object(t)) => {
            for (key, value) in e {
                let other = t
                    .get(key)
                    .unwrap_or_else(|| panic!("{path}.{key} is not a known field"));
                assert_subset(value, other, &format!("{path}.{key}"));
            }
        }
        (Value::Array(e), Value::Array(t)) => {
            assert_eq!(e.len(), t.len(), "{path}");
            for (i, (a, b)) in e.iter().zip(t).enumerate() {
                assert_subset(a, b, &format!("{path}[{i}]"));
            }
        }
        (e, t) => assert_eq!(e, t, "{path}"),
    }
}

fn read_as<T: DeserializeOwned + Serialize>(doc: &Value, name: &str) -> T {
    let typed: T = serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_subset(doc, &serde_json::to_value(&typed).unwrap(), name);
    typed
}

#[test]
fn examples_read_as_their_rust_types() {
    let mut seen = BTreeSet::new();
    let mut entries: Vec<PathBuf> = fs::read_dir(examples_dir())
        .expect("examples/ exists")
        .map(|e| e.expect("read examples/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    entries.sort();
    for path in entries {
        let name = path.display().to_string();
        let text = fs::read_to_string(&path).unwrap();
        for doc in parse_documents(&text, &name).unwrap() {
            if doc["apiVersion"] != "configbutler.ai/v1alpha1" {
                continue;
            }
            let kind = doc["kind"].as_str().unwrap_or_default().to_string();
            let label = format!("{name} ({kind} {})", doc["metadata"]["name"]);
            match kind.as_str() {
                "GitRepoConfig" => {
                    let grc: GitRepoConfig = read_as(&doc, &label);
                    grc.spec.window().unwrap_or_else(|e| panic!("{label}: {e}"));
                }
                "GitDestination" => {
                    let gd: GitDestination = read_as(&doc, &label);
                    gd.spec
                        .validate()
                        .unwrap_or_else(|e| panic!("{label}: {e}"));
                }
                "WatchRule" => {
                    let wr: WatchRule = read_as(&doc, &label);
                    assert!(
                        wr.spec.rules.iter().all(|r| r.scope.is_none()),
                        "{label}: scope set"
                    );
                }
                "ClusterWatchRule" => {
                    let cwr: ClusterWatchRule = read_as(&doc, &label);
                    assert!(
                        cwr.spec.rules.iter().all(|r| r.scope.is_some()),
                        "{label}: scope missing"
                    );
                }
                other => panic!("{label}: unknown kind {other}"),
            }
            seen.insert(kind);
        }
    }
    let all: BTreeSet<String> = [
        "ClusterWatchRule",
        "GitDestination",
        "GitRepoConfig",
        "WatchRule",
    ]
    .map(String::from)
    .into();
    assert_eq!(seen, all, "every kind has an example");
}

/// Every `spec` field path of a schema: `spec.commit.window.quiet`, `spec.rules[].resources`.
fn field_paths(schema: &Value, path: &str, out: &mut Vec<String>) {
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    for (name, child) in properties {
        let full = format!("{path}.{name}");
        out.push(full.clone());
        field_paths(child, &full, out);
        if let Some(items) = child.get("items") {
            field_paths(items, &format!("{full}[]"), out);
        }
    }
}

#[test]
fn the_configuration_reference_names_every_field_and_every_flag() {
    let doc =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md"))
            .expect("docs/configuration.md");
    for kind in [
        "GitRepoConfig",
        "GitDestination",
        "WatchRule",
        "ClusterWatchRule",
    ] {
        let mut paths = Vec::new();
        field_paths(&schema_of(kind)["properties"]["spec"], "spec", &mut paths);
        assert!(!paths.is_empty(), "{kind}");
        for path in paths {
            assert!(
                doc.contains(&format!("`{path}`")),
                "docs/configuration.md lacks {kind} field {path}; regenerate the field tables"
            );
        }
    }
    for command in ["demo", "crds", "sanitize", "diff", "replay", "run", "sim"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_gitops-reverser"))
            .args([command, "--help"])
            .output()
            .expect("help");
        let help = String::from_utf8_lossy(&out.stdout);
        for flag in help.split_whitespace().filter(|w| w.starts_with("--")) {
            let flag = flag
                .trim_end_matches([',', '.'])
                .split('=')
                .next()
                .unwrap_or(flag);
            assert!(
                doc.contains(flag),
                "docs/configuration.md lacks `{command} {flag}`"
            );
        }
    }
}
