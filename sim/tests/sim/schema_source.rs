//! `sim/src/builtin_schema.txt` says what k8s-openapi (the crate this workspace builds, feature
//! v1_33) says: every keyed list, set and atomic map of its generated merge strategies is in the
//! table with the same keys, and the table claims no other — except where the table's header records
//! that the Go markers of Kubernetes v0.33.9 win.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

const TABLE: &str = include_str!("../../src/builtin_schema.txt");

fn k8s_openapi_dir() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--manifest-path",
        ])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata is JSON");
    let pkg = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "k8s-openapi" && p["version"].as_str().unwrap().starts_with("0.29"))
        .expect("k8s-openapi 0.29 is a dependency");
    PathBuf::from(pkg["manifest_path"].as_str().unwrap())
        .parent()
        .unwrap()
        .join("src/v1_33")
}

/// (type, json field) → shape, from the generated `DeepMerge` impls.
fn strategies(dir: &PathBuf) -> BTreeMap<(String, String), String> {
    let mut files = vec![];
    let mut stack = vec![dir.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                files.push(p);
            }
        }
    }
    // First pass: rust field → json name of every struct.
    let mut json_names: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut texts = vec![];
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let Some(name) = text.lines().find_map(|l| {
            l.strip_prefix("pub struct ")
                .and_then(|r| r.strip_suffix(" {"))
        }) else {
            continue;
        };
        let module = f
            .parent()
            .unwrap()
            .strip_prefix(dir)
            .unwrap()
            .iter()
            .map(|c| c.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("::");
        let ty = format!("{module}::{name}");
        let mut names = BTreeMap::new();
        for l in text.lines() {
            let l = l.trim();
            if let Some((json, rest)) = l
                .strip_prefix('"')
                .and_then(|r| r.split_once("\" => Field::Key_"))
            {
                names.insert(rest.trim_end_matches(',').to_string(), json.to_string());
            }
        }
        json_names.insert(ty.clone(), names);
        texts.push((ty, text));
    }
    let field_type = |text: &str, field: &str| -> Option<String> {
        let decl = text.lines().find(|l| {
            l.starts_with(&format!("    pub {field}: "))
                || l.starts_with(&format!("    pub r#{field}: "))
        })?;
        let at = decl.rfind("crate::")?;
        let path: String = decl[at + 7..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        Some(path)
    };
    let mut out = BTreeMap::new();
    for (ty, text) in &texts {
        let names = &json_names[ty];
        let mut rest = text.as_str();
        while let Some(at) = rest.find("crate::merge_strategies::") {
            rest = &rest[at + "crate::merge_strategies::".len()..];
            let call_end = rest.find(");\n").unwrap_or(rest.len());
            let call = &rest[..call_end];
            let Some((how, args)) = call.split_once('(') else {
                continue;
            };
            let Some(args) = args.trim_start().strip_prefix("&mut self.") else {
                continue;
            };
            let field = args
                .split(',')
                .next()
                .unwrap()
                .trim_start_matches("r#")
                .to_string();
            let json = names.get(&field).cloned().unwrap_or(field.clone());
            let shape = match how {
                "list::map" => {
                    // `List<T>` (the generic list type) has no item type of its own.
                    let Some(item_names) =
                        field_type(text, &field).and_then(|i| json_names.get(&i))
                    else {
                        continue;
                    };
                    let keys: Vec<String> = call
                        .split("lhs.")
                        .skip(1)
                        .map(|k| {
                            let k: String = k
                                .chars()
                                .take_while(|c| c.is_alphanumeric() || *c == '_')
                                .collect();
                            item_names.get(&k).cloned().unwrap_or(k)
                        })
                        .collect();
                    format!("map:{}", keys.join(","))
                }
                "list::set" => "set".into(),
                "map::atomic" => "atomicmap".into(),
                _ => continue,
            };
            out.insert((ty.clone(), json), shape);
        }
    }
    out
}

#[test]
fn the_schema_table_matches_k8s_openapi_merge_strategies() {
    let ours: BTreeMap<(String, String), String> = TABLE
        .lines()
        .filter_map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            (c.len() == 5
                && c[0] == "F"
                && (c[3].starts_with("map:") || c[3] == "set" || c[3] == "atomicmap"))
                .then(|| ((c[1].to_string(), c[2].to_string()), c[3].to_string()))
        })
        .collect();
    let atomic: BTreeSet<&str> = TABLE
        .lines()
        .filter_map(|l| l.strip_prefix("A\t"))
        .collect();
    let overridden: BTreeSet<String> = TABLE
        .lines()
        .filter_map(|l| l.strip_prefix("# "))
        .filter_map(|l| l.split_once(": k8s-openapi").map(|(f, _)| f.to_string()))
        .collect();
    let theirs = strategies(&k8s_openapi_dir());
    assert!(theirs.len() > 90, "found only {} strategies", theirs.len());
    let mut problems = vec![];
    for ((ty, field), shape) in &theirs {
        if atomic.contains(ty.as_str()) || overridden.contains(&format!("{ty}.{field}")) {
            continue;
        }
        match ours.get(&(ty.clone(), field.clone())) {
            Some(s) if s == shape => {}
            other => problems.push(format!(
                "{ty}.{field}: k8s-openapi {shape}, table {other:?}"
            )),
        }
    }
    for ((ty, field), shape) in &ours {
        if !overridden.contains(&format!("{ty}.{field}"))
            && !theirs.contains_key(&(ty.clone(), field.clone()))
        {
            problems.push(format!(
                "{ty}.{field}: table {shape}, k8s-openapi has no such strategy"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
