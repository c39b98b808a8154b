//! SOPS with age (issue #16 item 1): `sanitize --age-recipient` prints a Secret as the SOPS
//! document the agent commits, which an independent implementation decrypts to exactly the
//! live values — Debian's `age` tool for the data key and `support/sops_decrypt.py` (Python's
//! `cryptography`, no code shared with the agent) for the values and the MAC — and whose keyed
//! hash stays the same for the same value while the ciphertexts change.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const LIVE: &str = "examples/sops-age/db-credentials.live.yaml";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn agent(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_gitops-reverser"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the binary runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn tool(program: &str, args: &[&str]) -> Output {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("{program} must be installed (.ci/run installs Debian's age and python3): {e}")
        });
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A new age key file made by `age-keygen`; returns its path and recipient.
fn age_key(dir: &Path, name: &str) -> (PathBuf, String) {
    let file = dir.join(name);
    tool("age-keygen", &["-o", file.to_str().expect("utf-8")]);
    let public = tool("age-keygen", &["-y", file.to_str().expect("utf-8")]);
    let recipient = String::from_utf8(public.stdout).expect("utf-8");
    (file, recipient.trim().to_string())
}

/// The document decrypted by the independent reader.
fn independent_decrypt(identity: &Path, sops_file: &Path) -> Value {
    let script = repo("tests/integration/support/sops_decrypt.py");
    let out = tool(
        "python3",
        &[
            script.to_str().expect("utf-8"),
            identity.to_str().expect("utf-8"),
            sops_file.to_str().expect("utf-8"),
        ],
    );
    serde_json::from_slice(&out.stdout).expect("the reader prints JSON")
}

fn live() -> Value {
    let text = std::fs::read_to_string(repo(LIVE)).expect("example");
    gitops_reverser::manifest::yaml::parse_documents(&text, LIVE)
        .expect("yaml")
        .remove(0)
}

#[test]
fn sanitize_with_age_recipients_prints_a_sops_document_each_recipient_decrypts_independently() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (alice_key, alice) = age_key(dir.path(), "alice.txt");
    let (flux_key, flux) = age_key(dir.path(), "flux.txt");
    let out = agent(&[
        "sanitize",
        "--age-recipient",
        &alice,
        "--age-recipient",
        &flux,
        LIVE,
    ]);
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let live = live();
    for (name, value) in live["data"].as_object().expect("data") {
        let encoded = value.as_str().expect("string");
        assert!(!text.contains(encoded), "{name} in clear:\n{text}");
    }
    assert!(!text.contains("correct horse"), "{text}");
    assert!(text.contains("recipient: ") && text.contains(&alice) && text.contains(&flux));
    let file = dir.path().join("db-credentials.sops.yaml");
    std::fs::write(&file, &text).expect("write");
    for key in [&alice_key, &flux_key] {
        let clear = independent_decrypt(key, &file);
        assert_eq!(clear["data"], live["data"], "exactly the live values");
        assert_eq!(clear["type"], live["type"]);
        assert_eq!(clear["metadata"]["name"], live["metadata"]["name"]);
        assert_eq!(clear["metadata"]["labels"], live["metadata"]["labels"]);
        assert!(
            clear["metadata"].get("resourceVersion").is_none(),
            "sanitized"
        );
    }
    // A key that is not a recipient opens nothing.
    let (stranger, _) = age_key(dir.path(), "stranger.txt");
    let refused = Command::new("python3")
        .arg(repo("tests/integration/support/sops_decrypt.py"))
        .arg(&stranger)
        .arg(&file)
        .output()
        .expect("python3");
    assert!(!refused.status.success());
}

#[test]
fn the_keyed_hash_is_stable_for_a_value_and_changes_with_it_while_ciphertexts_always_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, recipient) = age_key(dir.path(), "key.txt");
    let hash_key = dir.path().join("hash.key");
    std::fs::write(&hash_key, b"0123456789abcdef0123456789abcdef").expect("write");
    let hash_key = hash_key.to_str().expect("utf-8");
    let sanitize = |input: &str, paths: bool| {
        let mut args = vec!["sanitize", "--age-recipient", &recipient];
        args.extend(["--hash-key-file", hash_key, input]);
        if paths {
            args.push("--paths");
        }
        String::from_utf8(agent(&args).stdout).expect("utf-8")
    };
    let paths = |input: &str| sanitize(input, true);
    let documents = |input: &str| sanitize(input, false);
    let first = paths(LIVE);
    assert!(
        first.starts_with("shop/core/secrets/db-credentials.sops.yaml hmac-sha256:"),
        "{first}"
    );
    assert_eq!(paths(LIVE), first, "same value, same keyed hash");
    assert_ne!(
        documents(LIVE),
        documents(LIVE),
        "ciphertexts differ per run"
    );
    let changed = dir.path().join("changed.yaml");
    let mut doc = live();
    doc["data"]["password"] = Value::from("b3RoZXI=");
    std::fs::write(&changed, serde_json::to_string(&doc).expect("json")).expect("write");
    let other = paths(changed.to_str().expect("utf-8"));
    assert_ne!(other, first, "a changed value has another hash");
    // The plain sha256 of the content is nowhere: only the keyed hash is written.
    let plain = agent(&["sanitize", "--allow-secrets", "--paths", LIVE]);
    let plain = String::from_utf8(plain.stdout).expect("utf-8");
    let plain_hash = plain.split_whitespace().nth(1).expect("hash");
    assert!(!documents(LIVE).contains(plain_hash.trim_start_matches("sha256:")));
}
