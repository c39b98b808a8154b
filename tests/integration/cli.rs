//! The command-line contracts that scripts rely on: `crds`, `sanitize` and `diff` output and
//! exit codes, driven through the built binary on the files in `examples/`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn run(args: &[&str]) -> Output {
    run_with_stdin(args, None)
}

fn run_with_stdin(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gitops-reverser"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write stdin");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("the binary finishes")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn crds_prints_the_files_of_crds_concatenated_in_name_order() {
    let out = run(&["crds"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo("crds"))
        .expect("crds/")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    let want: String = files
        .iter()
        .map(|f| std::fs::read_to_string(f).expect("read"))
        .collect();
    assert_eq!(stdout(&out), want);
}

#[test]
fn sanitize_prints_what_git_gets_with_a_content_hash() {
    let out = run(&["sanitize", "examples/objects/deployment.live.yaml"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n"),
        "{text}"
    );
    assert!(
        text.contains("configbutler.ai/content-hash: sha256:"),
        "{text}"
    );
    for gone in [
        "status:",
        "managedFields",
        "resourceVersion",
        "uid:",
        "kustomize.toolkit.fluxcd.io",
        "creationTimestamp",
        "deployment.kubernetes.io/revision",
    ] {
        assert!(!text.contains(gone), "{gone} left in:\n{text}");
    }
    assert!(text.contains("image: ghcr.io/example/web:1.4.2"), "{text}");
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));

    // Its own output is a fixed point: sanitizing what Git holds gives the same bytes.
    let again = run_with_stdin(&["sanitize", "-"], Some(&text));
    assert_eq!(stdout(&again), text);
}

#[test]
fn sanitize_skips_secrets_and_per_cluster_objects_with_a_reason() {
    let out = run(&["sanitize", "examples/objects/configmap.live.json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("name: settings") && text.contains("FEATURE_X: \"on\""),
        "{text}"
    );
    assert!(
        !text.contains("kube-root-ca.crt") && !text.contains("password"),
        "{text}"
    );
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].starts_with("skipped v1/ConfigMap shop/kube-root-ca.crt: "),
        "{err}"
    );
    assert!(
        lines[1].starts_with("skipped v1/Secret shop/db-password: "),
        "{err}"
    );

    let allowed = run(&[
        "sanitize",
        "--allow-secrets",
        "examples/objects/configmap.live.json",
    ]);
    assert!(
        stdout(&allowed).contains("name: db-password"),
        "{}",
        stdout(&allowed)
    );
}

#[test]
fn sanitize_paths_prints_one_line_per_kept_object() {
    let out = run(&[
        "sanitize",
        "--paths",
        "--folder",
        "clusters/prod",
        "examples/objects/configmap.live.json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{text}");
    let (path, hash) = lines[0].split_once(' ').expect("two columns");
    assert_eq!(path, "clusters/prod/shop/core/configmaps/settings.yaml");
    assert!(hash.starts_with("sha256:") && hash.len() == 71, "{hash}");

    // The hash is the one written into the document.
    let doc = stdout(&run(&["sanitize", "examples/objects/configmap.live.json"]));
    assert!(
        doc.contains(&format!("configbutler.ai/content-hash: {hash}")),
        "{doc}"
    );
}

#[test]
fn sanitize_reports_unreadable_input_with_its_name_and_position() {
    let dir = std::env::temp_dir().join(format!("gr-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let broken = dir.join("broken.yaml");
    std::fs::write(
        &broken,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: [x\n",
    )
    .expect("write");
    let out = run(&["sanitize", broken.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("broken.yaml") && err.contains("line"), "{err}");
    assert!(stdout(&out).is_empty());

    let out = run_with_stdin(
        &["sanitize"],
        Some("{\"apiVersion\": \"v1\",\n \"kind\": }"),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("<stdin>") && stderr(&out).contains("line 2"),
        "{}",
        stderr(&out)
    );

    let out = run_with_stdin(
        &["sanitize"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n"),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("document 1") && stderr(&out).contains("metadata.name"),
        "{}",
        stderr(&out)
    );

    let missing = run(&["sanitize", "no/such/file.yaml"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        stderr(&missing).contains("no/such/file.yaml"),
        "{}",
        stderr(&missing)
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn diff_says_near_for_a_flux_applied_object_with_defaults() {
    let out = run(&[
        "diff",
        "examples/objects/deployment.git.yaml",
        "examples/objects/deployment.live.yaml",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let text = stdout(&out);
    assert!(text.starts_with("equivalent: near ("), "{text}");
    assert_eq!(text.lines().count(), 1, "{text}");
}

#[test]
fn diff_shows_a_kubectl_edit_as_a_unified_diff_and_the_paths() {
    let out = run(&[
        "diff",
        "examples/objects/deployment.git.yaml",
        "examples/objects/deployment.edited.live.yaml",
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let text = stdout(&out);
    assert!(
        text.contains("--- git: examples/objects/deployment.git.yaml"),
        "{text}"
    );
    assert!(
        text.contains("-  replicas: 2\n") && text.contains("+  replicas: 5\n"),
        "{text}"
    );
    let last = text.lines().last().expect("a last line");
    assert!(last.starts_with("different: "), "{text}");
    assert!(last.contains("spec.replicas"), "{last}");
    assert!(last.contains("image"), "{last}");
}

#[test]
fn diff_recognises_an_object_that_came_from_git() {
    // What sanitize writes is what Flux applies; the live copy carries the hash annotation.
    let written = stdout(&run(&["sanitize", "examples/objects/deployment.live.yaml"]));
    let dir = std::env::temp_dir().join(format!("gr-diff-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let git = dir.join("git.yaml");
    std::fs::write(&git, &written).expect("write");
    let live_text = written.replacen(
        "\nmetadata:\n",
        "\nmetadata:\n  resourceVersion: \"9\"\n  uid: abc\n",
        1,
    ) + "status:\n  replicas: 2\n";
    let live = dir.join("live.yaml");
    std::fs::write(&live, live_text).expect("write");
    let out = run(&[
        "diff",
        git.to_str().expect("utf-8"),
        live.to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert_eq!(stdout(&out), "equivalent: hash-annotation\n");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn every_subcommand_has_help() {
    for sub in [
        &["--help"][..],
        &["crds", "--help"],
        &["sanitize", "--help"],
        &["diff", "--help"],
    ] {
        let out = run(sub);
        assert_eq!(out.status.code(), Some(0), "{sub:?}");
        assert!(
            stdout(&out).contains("Usage: gitops-reverser"),
            "{sub:?}: {}",
            stdout(&out)
        );
    }
}

#[test]
fn diff_json_patch_prints_the_patch_on_stdout_and_the_verdict_on_stderr() {
    let out = run(&[
        "diff",
        "--output",
        "json-patch",
        "examples/objects/deployment.git.yaml",
        "examples/objects/deployment.edited.live.yaml",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let patch: serde_json::Value = serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", stdout(&out)));
    let ops = patch.as_array().expect("an array of operations");
    assert!(
        ops.contains(&serde_json::json!({"op": "replace", "path": "/spec/replicas", "value": 2})),
        "{patch:#}"
    );
    for op in ops {
        let path = op["path"].as_str().expect("path");
        assert!(
            !path.starts_with("/status") && !path.starts_with("/metadata/managedFields"),
            "{op}"
        );
    }
    assert!(stderr(&out).starts_with("different: "), "{}", stderr(&out));

    let same = run(&[
        "diff",
        "--output",
        "json-patch",
        "examples/objects/deployment.git.yaml",
        "examples/objects/deployment.live.yaml",
    ]);
    assert_eq!(same.status.code(), Some(0), "{}", stderr(&same));
    assert_eq!(stdout(&same), "[]\n");
    assert!(
        stderr(&same).starts_with("equivalent: near ("),
        "{}",
        stderr(&same)
    );

    let cluster = run(&["diff", "--output", "json-patch", "--kubeconfig", "x"]);
    assert_eq!(cluster.status.code(), Some(2), "{}", stderr(&cluster));
}

/// kubectl against the simulator: someone edits a Deployment that came from Git; the patch
/// `diff --output json-patch` prints is accepted by `kubectl patch --type json`, and afterwards
/// `diff` finds the cluster equivalent to Git again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_applies_the_json_patch_and_the_cluster_equals_git_again() {
    let Some(kubectl) = crate::support::git_servers::require_binary("kubectl", "kubectl") else {
        return;
    };
    let sim = kubesim::Simulator::start(kubesim::SimConfig::default().with_tls())
        .await
        .expect("simulator");
    let dir = tempfile::TempDir::new().expect("scratch");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, sim.kubeconfig("admin").expect("kubeconfig")).expect("write");
    let k = |args: Vec<String>| {
        let mut command = tokio::process::Command::new(&kubectl);
        command
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(args)
            .env("HOME", dir.path())
            .env("KUBECACHEDIR", dir.path().join("cache"))
            .env_remove("KUBECONFIG")
            .kill_on_drop(true);
        async move {
            let out = tokio::time::timeout(std::time::Duration::from_secs(60), command.output())
                .await
                .expect("kubectl finished within 60s")
                .expect("kubectl runs");
            assert!(
                out.status.success(),
                "kubectl failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
    };
    let args = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let git = repo("examples/objects/deployment.git.yaml");
    let git = git.to_str().expect("utf-8");
    k(args(&["create", "namespace", "shop"])).await;
    k(args(&["apply", "-f", git])).await;
    // The edits diff must undo: a scale, an image, a label, an annotation.
    k(args(&[
        "scale",
        "deployment",
        "web",
        "-n",
        "shop",
        "--replicas=5",
    ]))
    .await;
    k(args(&[
        "patch",
        "deployment",
        "web",
        "-n",
        "shop",
        "--type=merge",
        "-p",
        r#"{"metadata":{"labels":{"tier":"frontend"},"annotations":{"owner":"bob"}},
            "spec":{"template":{"spec":{"containers":[{"name":"web","image":"ghcr.io/example/web:1.5.0",
            "ports":[{"containerPort":8080}],"resources":{"requests":{"cpu":"1","memory":"256Mi"}}}]}}}}"#,
    ]))
    .await;
    let live = dir.path().join("live.yaml");
    let get = args(&["get", "deployment", "web", "-n", "shop", "-o", "yaml"]);
    std::fs::write(&live, k(get.clone()).await).expect("write");
    let live_path = live.to_str().expect("utf-8");

    let out = run(&["diff", "--output", "json-patch", git, live_path]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    // What was edited is restored; the server's defaults are left alone.
    let patch = stdout(&out);
    for restored in ["/spec/replicas", "/spec/template/spec/containers/0/image"] {
        assert!(patch.contains(restored), "{restored}: {patch}");
    }
    assert!(!patch.contains("progressDeadlineSeconds"), "{patch}");
    let patch_file = dir.path().join("patch.json");
    std::fs::write(&patch_file, stdout(&out)).expect("write");
    k(args(&[
        "patch",
        "deployment",
        "web",
        "-n",
        "shop",
        "--type=json",
        "--patch-file",
        patch_file.to_str().expect("utf-8"),
    ]))
    .await;

    std::fs::write(&live, k(get).await).expect("write");
    let after = run(&["diff", git, live_path]);
    assert_eq!(
        after.status.code(),
        Some(0),
        "patch:\n{}\ndiff after it:\n{}{}",
        stdout(&out),
        stdout(&after),
        stderr(&after)
    );
    assert!(
        stdout(&after).starts_with("equivalent: "),
        "{}",
        stdout(&after)
    );
    sim.shutdown();
}

/// `run` against a cluster without the CRDs exits non-zero at once with one line that says
/// what to install, instead of running and reporting ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_without_the_crds_exits_non_zero_naming_them() {
    let sim = kubesim::Simulator::start(kubesim::SimConfig::default().with_tls())
        .await
        .expect("simulator");
    let scratch = tempfile::TempDir::new().expect("scratch");
    let kubeconfig = scratch.path().join("kubeconfig");
    std::fs::write(&kubeconfig, sim.kubeconfig("admin").expect("kubeconfig")).expect("write");
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_gitops-reverser"))
            .args(["run", "--metrics-addr", "127.0.0.1:0"])
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg("--state-dir")
            .arg(scratch.path().join("state"))
            .output(),
    )
    .await
    .expect("run exits by itself")
    .expect("run starts");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("gitrepoconfigs.configbutler.ai is not served")
            && stderr.contains("install the CRDs"),
        "{stderr}"
    );
}

/// `run --log-format json`: every line on stderr is one JSON object with the conventional
/// fields (timestamp, level, target, message) and the event's own fields beside them; the
/// fatal error (here: no CRDs) is such a line too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_logs_json_lines_on_request() {
    let sim = kubesim::Simulator::start(kubesim::SimConfig::default().with_tls())
        .await
        .expect("simulator");
    let scratch = tempfile::TempDir::new().expect("scratch");
    let kubeconfig = scratch.path().join("kubeconfig");
    std::fs::write(&kubeconfig, sim.kubeconfig("admin").expect("kubeconfig")).expect("write");
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_gitops-reverser"))
            .args([
                "run",
                "--log-format",
                "json",
                "--metrics-addr",
                "127.0.0.1:0",
            ])
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg("--state-dir")
            .arg(scratch.path().join("state"))
            .env_remove("RUST_LOG")
            .output(),
    )
    .await
    .expect("run exits by itself")
    .expect("run starts");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for line in &lines {
        for field in ["timestamp", "level", "target", "message"] {
            assert!(line[field].is_string(), "no {field}: {line}");
        }
    }
    let serving = lines
        .iter()
        .find(|l| l["message"] == "serving /metrics, /healthz, /readyz, /status and /status.json")
        .unwrap_or_else(|| panic!("no line about the metrics server: {stderr}"));
    assert_eq!(serving["level"], "INFO");
    assert!(
        serving["addr"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:"))
    );
    let fatal = lines.last().expect("a line");
    assert_eq!(fatal["level"], "ERROR");
    assert!(
        fatal["error"]
            .as_str()
            .is_some_and(|e| e.contains("install the CRDs")),
        "{fatal}"
    );
}
