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

/// The agent with a destination that encrypts (#16 items 1 and 2): a Secret is committed as a
/// SOPS document that decrypts independently to the live values; a Flux-like reconciler that
/// decrypts the agent's own file and applies it, ten times, causes no commit; a changed value
/// causes one; no plaintext value is anywhere in the history or the metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypting_destination_commits_sops_files_and_flux_applying_them_back_commits_nothing()
{
    use crate::support::agent_env::*;
    use gitops_reverser::config::ObjectKey;
    use serde_json::json;

    let env = Env::new().await;
    env.configure().await;
    let (flux_key, recipient) = age_key(env.scratch.path(), "flux.agekey");
    apply(
        &env.client,
        json!({"apiVersion": "configbutler.ai/v1alpha1", "kind": "GitDestination",
        "metadata": {"name": "dev", "namespace": "shop"},
        "spec": {"repoRef": {"name": "repo"}, "branch": "main", "folder": FOLDER,
            "encryption": {"sops": {"ageRecipients": [recipient]}}}}),
    )
    .await;
    env.watch_rules(json!([
            {"apiGroups": [""], "resources": ["configmaps", "secrets"]}]))
        .await;
    let agent = env.start_tuned("state", |o| {
        o.hash_key_secret = ObjectKey::new("shop", "gitops-reverser-hash-key");
    });
    agent.ready().await;

    // A person creates the Secret (`kubectl create secret generic --from-literal`).
    let password = "correct horse battery staple";
    let secret = |password: &str| {
        json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "db-credentials", "namespace": "shop"},
            "type": "Opaque", "stringData": {"username": "admin", "password": password}})
    };
    apply_as(&env.client, "kubectl", &secret(password)).await;
    let path = format!("{FOLDER}/shop/core/secrets/db-credentials.sops.yaml");
    until("the SOPS file", || show(&env.repo, &path).is_some()).await;
    let decrypt = || {
        let file = env.scratch.path().join("from-git.sops.yaml");
        std::fs::write(&file, show(&env.repo, &path).expect("the file")).expect("write");
        independent_decrypt(&flux_key, &file)
    };
    let live = |value: &str| {
        use base64::Engine;
        serde_json::Value::from(base64::engine::general_purpose::STANDARD.encode(value))
    };
    let clear = decrypt();
    assert_eq!(clear["data"]["password"], live(password));
    assert_eq!(clear["data"]["username"], live("admin"));
    assert!(
        show(
            &env.repo,
            &format!("{FOLDER}/shop/core/secrets/db-credentials.yaml")
        )
        .is_none(),
        "never a plain file"
    );

    // Flux's kustomize-controller: decrypt the agent's own file, apply it; ten times.
    let settled = env.subjects().len();
    for _ in 0..10 {
        let mut object = decrypt();
        object["metadata"]["labels"] = json!({"kustomize.toolkit.fluxcd.io/name": "apps",
            "kustomize.toolkit.fluxcd.io/namespace": "flux-system"});
        apply_as(&env.client, "kustomize-controller", &object).await;
    }
    // A sentinel after the applies: once it lands, their events were decided too.
    env.sentinel("1").await;
    assert_eq!(
        env.subjects().len(),
        settled + 1,
        "only the sentinel: {:?}",
        env.subjects()
    );

    // A changed value is one commit.
    let rotated = "tr0ub4dor&3";
    apply_as(&env.client, "kubectl", &secret(rotated)).await;
    until("the rotated value in Git", || {
        decrypt()["data"]["password"] == live(rotated)
    })
    .await;
    env.sentinel("2").await;
    assert_eq!(env.subjects().len(), settled + 3, "{:?}", env.subjects());

    // A restart with a fresh cache reconciles the folder: the Secret is unchanged, its file
    // stays byte for byte (no re-encryption, no commit).
    agent.stop().await;
    let agent = env.start_tuned("fresh", |o| {
        o.hash_key_secret = ObjectKey::new("shop", "gitops-reverser-hash-key");
    });
    agent.ready().await;
    let before = show(&env.repo, &path);
    env.sentinel("3").await;
    assert_eq!(env.subjects().len(), settled + 4, "{:?}", env.subjects());
    assert_eq!(show(&env.repo, &path), before);

    // No plaintext anywhere: history (every commit's patch) and metrics.
    let dir = env.repo.to_str().expect("utf-8");
    let history = crate::support::git_servers::git(
        &env.repo,
        &["--git-dir", dir, "log", "-p", "--all"],
        None,
    );
    let metrics = agent
        .agent
        .metrics
        .encode(gitops_reverser::ops::metrics::Format::Prometheus)
        .expect("metrics");
    for value in [password, rotated] {
        for text in [&history, &metrics] {
            assert!(!text.contains(value));
            assert!(!text.contains(live(value).as_str().expect("string")));
        }
    }
    let file = show(&env.repo, &path).expect("the file");
    assert!(
        file.contains("content-hash: hmac-sha256:") && !file.contains("content-hash: sha256:"),
        "{file}"
    );
    agent.stop().await;
}
