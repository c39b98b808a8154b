//! SOPS with age (issue #16 item 1): `sanitize --age-recipient` prints a Secret as the SOPS
//! document the agent commits, which two independent implementations decrypt to exactly the
//! live values — Debian's `age` tool for the data key with `support/sops_decrypt.py` (Python's
//! `cryptography`) for the values and the MAC, and the `rops` crate (a dev-dependency, no code
//! shared with the agent's SOPS writer) — and whose keyed hash stays the same for the same value
//! while the ciphertexts change.

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

/// The document decrypted by both independent readers, which must agree.
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
    let python: Value = serde_json::from_slice(&out.stdout).expect("the reader prints JSON");
    let rops = rops_decrypt(identity, sops_file).expect("rops decrypts");
    assert_eq!(python, rops, "the two readers agree");
    python
}

/// Set in the child process that [`rops_decrypt`] starts: the SOPS file to decrypt.
const ROPS_CHILD: &str = "GITOPS_REVERSER_TEST_ROPS_FILE";
/// How the child prints the document it decrypted.
const ROPS_OUTPUT: &str = "rops-decrypted: ";

/// The document decrypted by `rops`, or its error. rops takes age identities only from the
/// environment (`ROPS_AGE`), which a test must not change in its own process (other tests run
/// in parallel threads), so it runs in a child process of this test binary: [`rops_reader`] in
/// child mode.
fn rops_decrypt(identity: &Path, sops_file: &Path) -> Result<Value, String> {
    let keys: Vec<String> = std::fs::read_to_string(identity)
        .expect("identity file")
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("AGE-SECRET-KEY-"))
        .map(str::to_string)
        .collect();
    let out = Command::new(std::env::current_exe().expect("the test binary"))
        .args([
            "--exact",
            "sops::rops_reader",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("ROPS_AGE", keys.join(","))
        .env(ROPS_CHILD, sops_file)
        .output()
        .expect("the test binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // libtest prints `test sops::rops_reader ... ` on the same line first.
    match stdout
        .lines()
        .find_map(|l| l.split_once(ROPS_OUTPUT).map(|(_, json)| json))
    {
        Some(json) if out.status.success() => Ok(serde_json::from_str(json).expect("JSON")),
        _ => Err(format!("{stdout}{}", String::from_utf8_lossy(&out.stderr))),
    }
}

/// The `rops` reader. In the child process [`rops_decrypt`] starts, it decrypts the file it is
/// given (values, data key and MAC checked by rops) and prints the document as JSON; run as a
/// test, it checks that rops reads what `sanitize --age-recipient` prints, and refuses it
/// without the key.
#[test]
fn rops_reader() {
    use rops::cryptography::{cipher::AES256GCM, hasher::SHA512};
    use rops::file::{RopsFile, format::YamlFileFormat, state::EncryptedFile};
    if let Some(file) = std::env::var_os(ROPS_CHILD) {
        let text = std::fs::read_to_string(&file).expect("the SOPS file");
        let decrypted = text
            .parse::<RopsFile<EncryptedFile<AES256GCM, SHA512>, YamlFileFormat>>()
            .expect("rops parses the SOPS document")
            .decrypt::<YamlFileFormat>()
            .expect("rops decrypts it");
        let doc = serde_json::to_value(decrypted.into_inner_map()).expect("JSON");
        println!("{ROPS_OUTPUT}{doc}");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, recipient) = age_key(dir.path(), "key.txt");
    let out = agent(&["sanitize", "--age-recipient", &recipient, LIVE]);
    let file = dir.path().join("db-credentials.sops.yaml");
    std::fs::write(&file, &out.stdout).expect("write");
    let clear = rops_decrypt(&key, &file).expect("rops decrypts");
    let live = live();
    assert_eq!(clear["data"], live["data"], "exactly the live values");
    assert_eq!(clear["metadata"]["name"], live["metadata"]["name"]);
    assert!(clear.get("sops").is_none());
    let (stranger, _) = age_key(dir.path(), "stranger.txt");
    assert!(
        rops_decrypt(&stranger, &file).is_err(),
        "another key opens nothing"
    );
    // A value changed in Git after encryption: the MAC no longer matches.
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let value_of = |key: &str| {
        text.lines()
            .find_map(|l| l.trim_start().strip_prefix(&format!("{key}: ")))
            .filter(|v| v.starts_with("ENC["))
            .expect("an encrypted value")
            .to_string()
    };
    let (username, password) = (value_of("username"), value_of("password"));
    let swapped = text
        .replace(&username, "SWAP")
        .replace(&password, &username)
        .replace("SWAP", &password);
    std::fs::write(&file, swapped).expect("write");
    assert!(rops_decrypt(&key, &file).is_err(), "tampering is refused");
}

/// Every file under `dir`, recursively.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
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

/// Everything the agent logs, at every level (its own events at `trace`).
#[derive(Clone, Default)]
struct Logs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("logs").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("logs")).into_owned()
    }
}

/// Every object of a repository, blobs included and unreachable ones too, decompressed.
fn every_object(git_dir: &Path) -> String {
    let dir = git_dir.to_str().expect("utf-8");
    let out = Command::new("git")
        .args([
            "--git-dir",
            dir,
            "cat-file",
            "--batch-all-objects",
            "--batch",
        ])
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The agent with a destination that encrypts (#16 items 1 and 2): a Secret is committed as a
/// SOPS document that decrypts independently to the live values; a Flux-like reconciler that
/// decrypts the agent's own file and applies it, ten times (and ten times again after a change
/// and after a restart), causes no commit; a changed value causes one; no plaintext value is
/// anywhere in the repository (every object of the remote and of the agent's cache), in the
/// agent's logs (captured at every level) or in its metrics.
#[test]
fn an_encrypting_destination_commits_sops_files_and_flux_applying_them_back_commits_nothing() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let dispatch = tracing::Dispatch::new(subscriber);
    // Callsite interest is asked of every live dispatcher once there are two (other tests run
    // in parallel threads without one).
    let _second = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
    let threads = dispatch.clone();
    // Every thread of the runtime (workers and blocking threads) logs to the capture.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_start(move || std::mem::forget(tracing::dispatcher::set_default(&threads)))
        .build()
        .expect("runtime");
    tracing::dispatcher::with_default(&dispatch, || runtime.block_on(encrypting_agent(logs)));
}

/// Flux's kustomize-controller, ten times: decrypts the file Git holds and applies it with its
/// labels, as its field manager.
async fn flux_applies(client: &kube::Client, decrypt: &dyn Fn() -> Value) {
    for _ in 0..10 {
        let mut object = decrypt();
        object["metadata"]["labels"] = serde_json::json!({
            "kustomize.toolkit.fluxcd.io/name": "apps",
            "kustomize.toolkit.fluxcd.io/namespace": "flux-system"});
        crate::support::agent_env::apply_as(client, "kustomize-controller", &object).await;
    }
}

async fn encrypting_agent(logs: Logs) {
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
    flux_applies(&env.client, &decrypt).await;
    // A sentinel after the applies: once it lands, their events were decided too.
    env.only_the_sentinel("1", settled).await;

    // A changed value is one commit.
    let rotated = "tr0ub4dor&3";
    apply_as(&env.client, "kubectl", &secret(rotated)).await;
    until("the rotated value in Git", || {
        decrypt()["data"]["password"] == live(rotated)
    })
    .await;
    env.sentinel("2").await;
    assert_eq!(env.subjects().len(), settled + 3, "{:?}", env.subjects());
    // Flux applies the changed file back, ten times: nothing more.
    flux_applies(&env.client, &decrypt).await;
    env.sentinel("20").await;
    assert_eq!(env.subjects().len(), settled + 4, "{:?}", env.subjects());

    // A restart with a fresh cache reconciles the folder: the Secret is unchanged, its file
    // stays byte for byte (no re-encryption, no commit).
    agent.stop().await;
    let agent = env.start_tuned("fresh", |o| {
        o.hash_key_secret = ObjectKey::new("shop", "gitops-reverser-hash-key");
    });
    agent.ready().await;
    let before = show(&env.repo, &path);
    env.sentinel("3").await;
    assert_eq!(env.subjects().len(), settled + 5, "{:?}", env.subjects());
    assert_eq!(show(&env.repo, &path), before);
    flux_applies(&env.client, &decrypt).await;
    env.sentinel("40").await;
    assert_eq!(env.subjects().len(), settled + 6, "{:?}", env.subjects());
    assert_eq!(show(&env.repo, &path), before);

    // No plaintext anywhere: the history (every commit's patch), every object of the remote
    // and of the agent's caches (blobs included, reachable or not), the logs, the metrics.
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
    let mut places = vec![
        ("history", history),
        ("objects of the remote", every_object(&env.repo)),
        ("metrics", metrics),
    ];
    let mut caches = 0;
    for state in ["state", "fresh"] {
        for entry in walk(&env.scratch.path().join(state)) {
            if entry.file_name().is_some_and(|n| n == "HEAD") {
                let git_dir = entry.parent().expect("a git dir");
                if git_dir.join("objects").is_dir() {
                    places.push(("objects of an agent cache", every_object(git_dir)));
                    caches += 1;
                }
            }
        }
    }
    assert!(caches >= 2, "the agents' caches were searched");
    let log_text = logs.text();
    assert!(
        log_text.contains("gitops_reverser") && log_text.contains("db-credentials"),
        "the agent's logs were captured"
    );
    places.push(("logs", log_text));
    for value in [password, rotated] {
        let encoded = live(value);
        for (place, text) in &places {
            assert!(!text.contains(value), "{value:?} in the {place}");
            assert!(
                !text.contains(encoded.as_str().expect("string")),
                "{value:?} (base64) in the {place}"
            );
        }
    }
    let file = show(&env.repo, &path).expect("the file");
    assert!(
        file.contains("content-hash: hmac-sha256:") && !file.contains("content-hash: sha256:"),
        "{file}"
    );
    agent.stop().await;
}

/// Commits `content` at `path` on `main` of the bare repository `repo`, as a person with `git`
/// would (a clone, a commit, a push).
fn push_file(repo: &Path, scratch: &Path, path: &str, content: &str) {
    let work = scratch.join("person");
    let run = |dir: &Path, args: &[&str]| {
        crate::support::git_servers::git(dir, args, None);
    };
    run(
        scratch,
        &[
            "clone",
            "-q",
            repo.to_str().expect("utf-8"),
            work.to_str().expect("utf-8"),
        ],
    );
    let file = work.join(path);
    std::fs::create_dir_all(file.parent().expect("a folder")).expect("mkdir");
    std::fs::write(&file, content).expect("write");
    run(&work, &["add", path]);
    run(
        &work,
        &[
            "-c",
            "user.name=Ann",
            "-c",
            "user.email=ann@example.com",
            "commit",
            "-q",
            "-m",
            "Add the db credentials, encrypted with sops",
        ],
    );
    run(&work, &["push", "-q", "origin", "HEAD:main"]);
}

/// The age identity (#16 item 1): a SOPS file in Git whose keyed hash the agent cannot check
/// (made under another hash key, as after a rotation or by another cluster) is opened with the
/// destination's `ageIdentitySecretRef` and, holding the live values, kept byte for byte — no
/// commit at the start nor when Flux applies it back — while the identity Secret itself never
/// reaches Git; a changed value is still one commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_age_identity_a_sops_file_from_another_hash_key_is_kept_and_the_key_never_written()
{
    use crate::support::agent_env::*;
    use gitops_reverser::config::ObjectKey;
    use serde_json::json;

    let env = Env::new().await;
    env.configure().await;
    let (flux_key, recipient) = age_key(env.scratch.path(), "flux.agekey");
    let key_file = std::fs::read_to_string(&flux_key).expect("key file");
    // Flux's `sops-age` Secret, copied into the destination's namespace.
    apply_as(
        &env.client,
        "kubectl",
        &json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "sops-age", "namespace": "shop"},
        "stringData": {"age.agekey": key_file}}),
    )
    .await;
    let secret = |password: &str| {
        json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "db-credentials", "namespace": "shop"},
            "type": "Opaque", "stringData": {"username": "admin", "password": password}})
    };
    let password = "correct horse battery staple";
    apply_as(&env.client, "kubectl", &secret(password)).await;

    // The file in Git: the live Secret encrypted under a hash key that is not the cluster's.
    let live = api_of(&env.client, &secret(password))
        .await
        .get("db-credentials")
        .await
        .expect("the Secret");
    let live_file = env.scratch.path().join("live.json");
    std::fs::write(&live_file, serde_json::to_string(&live).expect("json")).expect("write");
    let other_key = env.scratch.path().join("other.key");
    std::fs::write(&other_key, b"a hash key from before the rotation").expect("write");
    let sanitize = |paths: bool| {
        let mut args = vec![
            "sanitize",
            "--age-recipient",
            &recipient,
            "--hash-key-file",
            other_key.to_str().expect("utf-8"),
            live_file.to_str().expect("utf-8"),
        ];
        if paths {
            args.push("--paths");
        }
        String::from_utf8(agent(&args).stdout).expect("utf-8")
    };
    let relative = sanitize(true);
    let relative = relative.split_whitespace().next().expect("a path");
    let path = format!("{FOLDER}/{relative}");
    let content = sanitize(false);
    push_file(&env.repo, env.scratch.path(), &path, &content);

    apply(
        &env.client,
        json!({"apiVersion": "configbutler.ai/v1alpha1", "kind": "GitDestination",
        "metadata": {"name": "dev", "namespace": "shop"},
        "spec": {"repoRef": {"name": "repo"}, "branch": "main", "folder": FOLDER,
            "encryption": {"sops": {"ageRecipients": [recipient],
                "ageIdentitySecretRef": {"name": "sops-age"}}}}}),
    )
    .await;
    env.watch_rules(json!([{"apiGroups": [""], "resources": ["configmaps", "secrets"]}]))
        .await;
    let agent = env.start_tuned("state", |o| {
        o.hash_key_secret = ObjectKey::new("shop", "gitops-reverser-hash-key");
    });
    agent.ready().await;
    env.sentinel("1").await;
    assert_eq!(
        show(&env.repo, &path).as_deref(),
        Some(content.as_str()),
        "kept byte for byte"
    );
    let settled = env.subjects().len();

    // Flux applies it back, ten times: nothing.
    let decrypt = || {
        let file = env.scratch.path().join("from-git.sops.yaml");
        std::fs::write(&file, show(&env.repo, &path).expect("the file")).expect("write");
        independent_decrypt(&flux_key, &file)
    };
    flux_applies(&env.client, &decrypt).await;
    env.sentinel("2").await;
    assert_eq!(env.subjects().len(), settled + 1, "{:?}", env.subjects());
    assert_eq!(show(&env.repo, &path).as_deref(), Some(content.as_str()));

    // A changed value: one commit, under the cluster's hash key.
    apply_as(&env.client, "kubectl", &secret("tr0ub4dor&3")).await;
    until("the changed value in Git", || {
        show(&env.repo, &path).is_some_and(|f| f != content)
    })
    .await;
    env.sentinel("3").await;
    assert_eq!(env.subjects().len(), settled + 3, "{:?}", env.subjects());

    // The private key never reaches Git, not even encrypted.
    let dir = env.repo.to_str().expect("utf-8");
    let listed = crate::support::git_servers::git(
        &env.repo,
        &["--git-dir", dir, "log", "--all", "--name-only", "--format="],
        None,
    );
    assert!(!listed.contains("sops-age"), "{listed}");
    let objects = every_object(&env.repo);
    assert!(!objects.contains("AGE-SECRET-KEY-"));
    let metrics = agent
        .agent
        .metrics
        .encode(gitops_reverser::ops::metrics::Format::Prometheus)
        .expect("metrics");
    assert!(
        metrics.contains("rule=\"agent-keys\",what=\"object\""),
        "{metrics}"
    );
    agent.stop().await;
}
