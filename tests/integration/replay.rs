//! `replay` end to end: real audit logs into a real bare repository through the binary; the
//! files equal the last persisted state of each surviving object, and a second replay adds
//! nothing.

use crate::support::git_servers::BareRepo;
use gitops_reverser::audit::change::{ChangeKind, Classified, classify};
use gitops_reverser::audit::read::read_events;
use gitops_reverser::manifest::exclude::ExclusionPolicy;
use gitops_reverser::manifest::layout::PathTemplate;
use gitops_reverser::manifest::pipeline::{Outcome, prepare};
use gitops_reverser::manifest::yaml::to_yaml;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `git --git-dir <repo> <args>`, stdout with the trailing newline removed.
fn git(repo: &Path, args: &[&str]) -> String {
    let mut all = vec!["--git-dir", repo.to_str().expect("utf-8")];
    all.extend_from_slice(args);
    crate::support::git_servers::git(repo, &all, None)
}

fn replay(logs: &[PathBuf], repo: &Path, state: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_gitops-reverser"))
        .arg("replay")
        .args(logs)
        .args([
            "--repo",
            &format!("file://{}", repo.display()),
            "--folder",
            "clusters/lab",
        ])
        .arg("--state-dir")
        .arg(state)
        .output()
        .expect("replay runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn logs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/audit");
    let mut files = Vec::new();
    for dir in [
        "falco-k8s_audit",
        "gitops-reverser",
        "gitops-reverser-mutationlab",
    ] {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(root.join(dir))
            .expect("dir")
            .map(|e| e.expect("entry").path())
            .collect();
        entries.sort();
        files.extend(entries);
    }
    files.push(root.join("audit2rbac-demo-v1.log"));
    files
}

/// What the folder must hold: for every object, its last persisted state (sanitized, as
/// `sanitize` writes it) unless it was deleted afterwards.
fn expected(logs: &[PathBuf]) -> BTreeMap<String, String> {
    let mut changes = Vec::new();
    for (i, log) in logs.iter().enumerate() {
        let file = std::fs::File::open(log).expect("log");
        for (j, event) in read_events(file, &log.display().to_string())
            .expect("reads")
            .events
            .iter()
            .enumerate()
        {
            let list = match classify(event) {
                Classified::Change(c) => vec![c],
                Classified::Changes(cs) => cs,
                _ => continue,
            };
            changes.extend(list.into_iter().map(|c| ((c.request_received, i, j), c)));
        }
    }
    changes.sort_by_key(|a| a.0);
    let template = PathTemplate::default();
    let mut files = BTreeMap::new();
    for (_, change) in changes {
        let path = template.path_in(
            "clusters/lab",
            &gitops_reverser::manifest::layout::Location {
                group: &change.target.group,
                version: &change.target.version,
                kind: "",
                resource: &change.target.resource,
                namespace: change.target.namespace.as_deref(),
                name: &change.target.name,
            },
        );
        if change.kind == ChangeKind::Delete || change.kind == ChangeKind::DeleteFinalized {
            files.remove(&path);
            continue;
        }
        let Some(object) = change.object else {
            continue;
        };
        if let Ok(Outcome::Kept(manifest)) = prepare(object, &ExclusionPolicy::default()) {
            files.insert(path, to_yaml(&manifest.doc).expect("yaml"));
        }
    }
    files
}

#[test]
fn replay_writes_the_last_state_of_each_surviving_object_and_a_second_replay_adds_nothing() {
    let dir = tempfile::TempDir::new().expect("scratch");
    let scratch = dir.path();
    let repo = BareRepo::init(scratch.join("repo.git")).path;
    let logs = logs();

    let summary = replay(&logs, &repo, &scratch.join("state-1"));
    assert!(summary.contains("dry run: "), "{summary}");
    let commits = git(&repo, &["rev-list", "--count", "main"]);
    assert!(
        commits.trim().parse::<u32>().expect("count") >= 3,
        "{summary}"
    );

    let want = expected(&logs);
    assert!(!want.is_empty());
    let listed = git(&repo, &["ls-tree", "-r", "--name-only", "main"]);
    let got: Vec<&str> = listed.lines().filter(|p| p.ends_with(".yaml")).collect();
    assert_eq!(
        got,
        want.keys().map(String::as_str).collect::<Vec<_>>(),
        "{summary}"
    );
    for (path, content) in &want {
        assert_eq!(
            git(&repo, &["show", &format!("main:{path}")]),
            content.trim_end(),
            "{path}"
        );
    }

    // Again, with a fresh state directory: nothing new.
    let again = replay(&logs, &repo, &scratch.join("state-2"));
    assert!(again.contains("commits: 0"), "{again}");
    assert_eq!(git(&repo, &["rev-list", "--count", "main"]), commits);
}

#[test]
fn replay_attributes_commits_to_people_at_request_time() {
    let dir = tempfile::TempDir::new().expect("scratch");
    let scratch = dir.path();
    let repo = BareRepo::init(scratch.join("repo.git")).path;
    let log = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/audit/shop.audit.log");
    let summary = replay(&[log], &repo, &scratch.join("state"));
    assert!(
        summary.contains("dry run: 1") && summary.contains("read-only verb get: 1"),
        "{summary}"
    );
    let history = git(&repo, &["log", "--reverse", "--format=%an|%aI|%s"]);
    assert_eq!(
        history.lines().collect::<Vec<_>>(),
        [
            "alice@example.com|2026-11-02T09:00:02Z|alice@example.com: 2 changes in shop",
            "carol@example.com|2026-11-02T09:10:00Z|update v1 ConfigMap shop/settings",
            "bob@example.com|2026-11-02T09:12:00Z|delete v1 ConfigMap shop/limits",
        ]
    );
    let carol = git(&repo, &["log", "-1", "--format=%B", "main~1"]);
    assert!(
        carol.contains("Impersonated-by: admin")
            && carol.contains("Kubernetes-User: carol@example.com"),
        "{carol}"
    );
    // YAML 1.1-ambiguous values stay strings.
    let settings = git(
        &repo,
        &[
            "show",
            "main:clusters/lab/shop/core/configmaps/settings.yaml",
        ],
    );
    assert!(settings.contains("FEATURE_X: \"off\""), "{settings}");
}

/// A `replay` process writing `folder` of `url`'s `main`, started now.
fn start_replay(logs: &[PathBuf], url: &str, folder: &str, state: &Path) -> std::process::Child {
    start_replay_with(logs, url, folder, state, None)
}

/// As [`start_replay`], with `--credentials FILE` (a Secret manifest).
fn start_replay_with(
    logs: &[PathBuf],
    url: &str,
    folder: &str,
    state: &Path,
    credentials: Option<&Path>,
) -> std::process::Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gitops-reverser"));
    command
        .arg("replay")
        .args(logs)
        .args(["--repo", url, "--folder", folder])
        .arg("--state-dir")
        .arg(state);
    if let Some(file) = credentials {
        command.arg("--credentials").arg(file);
    }
    command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("replay starts")
}

/// The server's credentials as a Secret manifest in `dir` (what `--credentials` reads).
fn credentials_file(
    server: &crate::support::git_servers::GitServer,
    dir: &Path,
) -> Option<PathBuf> {
    let data = crate::support::git_servers::secret_string_data(server.credentials.as_ref()?);
    let file = dir.join("credentials.json");
    let secret = serde_json::json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "git"}, "stringData": data});
    std::fs::write(&file, secret.to_string()).expect("write credentials");
    Some(file)
}

/// Three writers (separate processes, separate caches) replaying into different folders of
/// one branch at the same time, over `file://`, `git daemon`, `git http-backend` and `sshd`: no
/// writer gives up on another holding or moving the branch, every change lands exactly once,
/// the history is linear and `git fsck --strict` finds nothing.
/// `GITOPS_REVERSER_CONTENTION_TRIALS` runs more trials (CI runs 2 per transport).
#[test]
fn concurrent_replays_on_one_branch_all_land_exactly_once() {
    let trials: usize = std::env::var("GITOPS_REVERSER_CONTENTION_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let logs = logs();
    let want = expected(&logs);
    let one = tempfile::TempDir::new().expect("scratch");
    // What one writer alone commits, for the exactly-once count.
    let alone = BareRepo::init(one.path().join("alone.git"));
    replay(&logs, &alone.path, &one.path().join("state"));
    let commits_alone: usize = git(&alone.path, &["rev-list", "--count", "main"])
        .parse()
        .expect("count");
    for trial in 0..trials {
        for server in [
            crate::support::git_servers::GitServer::file(),
            crate::support::git_servers::GitServer::daemon().expect("git daemon"),
            crate::support::git_servers::GitServer::http().expect("git http-backend"),
            crate::support::git_servers::GitServer::ssh().expect("sshd"),
        ] {
            let scratch = tempfile::TempDir::new().expect("scratch");
            let credentials = credentials_file(&server, scratch.path());
            let folders = ["clusters/a", "clusters/b", "clusters/c"];
            let children: Vec<_> = folders
                .iter()
                .enumerate()
                .map(|(i, folder)| {
                    let state = scratch.path().join(format!("state-{i}"));
                    start_replay_with(&logs, &server.url, folder, &state, credentials.as_deref())
                })
                .collect();
            for (child, folder) in children.into_iter().zip(folders) {
                let out = child.wait_with_output().expect("replay ends");
                assert!(
                    out.status.success(),
                    "trial {trial}, {}: writer of {folder} failed: {}{}",
                    server.name,
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let repo = &server.repo.path;
            for folder in folders {
                let files = git(repo, &["ls-tree", "-r", "--name-only", "main", folder]);
                let listed: Vec<&str> = files
                    .lines()
                    .filter(|f| !f.ends_with(".gitops-reverser-owner"))
                    .collect();
                let expected: Vec<String> = want
                    .keys()
                    .map(|p| p.replacen("clusters/lab", folder, 1))
                    .collect();
                assert_eq!(listed, expected, "trial {trial}, {}: {folder}", server.name);
            }
            let merges = git(repo, &["rev-list", "--merges", "--count", "main"]);
            assert_eq!(merges, "0", "a linear history");
            let total: usize = git(repo, &["rev-list", "--count", "main"])
                .parse()
                .expect("count");
            assert_eq!(
                total,
                3 * commits_alone,
                "trial {trial}, {}: every change exactly once",
                server.name
            );
            git(repo, &["fsck", "--strict"]);
        }
    }
}

/// `replay --signing-key FILE` signs every commit it writes, snapshot-free history included:
/// the real `git verify-commit` (SSH format, an allowed-signers file) accepts each one. A replay
/// without a key writes unsigned commits, as before.
#[test]
fn replay_with_a_signing_key_signs_every_commit() {
    crate::support::git_servers::require_binary("ssh-keygen", "openssh-client");
    let scratch = tempfile::TempDir::new().expect("scratch");
    let key = scratch.path().join("signing");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "signing", "-f"])
        .arg(&key)
        .status()
        .expect("ssh-keygen runs");
    assert!(status.success());
    let public = std::fs::read_to_string(key.with_extension("pub")).expect("public key");
    let allowed = scratch.path().join("allowed_signers");
    std::fs::write(
        &allowed,
        format!("gitops-reverser@configbutler.ai {public}"),
    )
    .expect("write");

    let repo = BareRepo::init(scratch.path().join("signed.git"));
    let out = Command::new(env!("CARGO_BIN_EXE_gitops-reverser"))
        .arg("replay")
        .args(logs())
        .args(["--repo", &format!("file://{}", repo.path.display())])
        .args(["--folder", "clusters/lab", "--signing-key"])
        .arg(&key)
        .arg("--state-dir")
        .arg(scratch.path().join("state"))
        .output()
        .expect("replay runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verify = |repo: &Path, commit: &str| {
        crate::support::git_servers::git_output(
            repo,
            &[
                "--git-dir",
                repo.to_str().expect("utf-8"),
                "-c",
                "gpg.format=ssh",
                "-c",
                &format!("gpg.ssh.allowedSignersFile={}", allowed.display()),
                "verify-commit",
                commit,
            ],
            None,
        )
    };
    let commits = git(&repo.path, &["rev-list", "main"]);
    assert!(commits.lines().count() > 5, "{commits}");
    for commit in commits.lines() {
        let checked = verify(&repo.path, commit);
        assert!(
            checked.status.success(),
            "{commit}: {}",
            String::from_utf8_lossy(&checked.stderr)
        );
    }
    git(&repo.path, &["fsck", "--strict"]);

    // Without a key: unsigned, as before.
    let plain = BareRepo::init(scratch.path().join("plain.git"));
    replay(&logs(), &plain.path, &scratch.path().join("state-plain"));
    let tip = git(&plain.path, &["rev-parse", "main"]);
    assert!(!verify(&plain.path, &tip).status.success());
}

/// `replay` killed with SIGKILL at random moments, then run again on the same cache: the last
/// run completes the history (the folder equals the logs' last states), nothing the kills left
/// blocks it, and `git fsck --strict` is clean.
#[test]
fn a_killed_replay_is_completed_by_the_next_run() {
    let logs = logs();
    let scratch = tempfile::TempDir::new().expect("scratch");
    let repo = BareRepo::init(scratch.path().join("repo.git"));
    let state = scratch.path().join("state");
    let url = format!("file://{}", repo.path.display());
    let seed = fastrand::u64(..);
    let mut rng = fastrand::Rng::with_seed(seed);
    for _ in 0..3 {
        let mut child = start_replay(&logs, &url, "clusters/lab", &state);
        std::thread::sleep(std::time::Duration::from_millis(rng.u64(20..400)));
        let _ = child.kill();
        let _ = child.wait();
    }
    replay(&logs, &repo.path, &state);
    let want = expected(&logs);
    let files = git(
        &repo.path,
        &["ls-tree", "-r", "--name-only", "main", "clusters/lab"],
    );
    let listed: Vec<&str> = files
        .lines()
        .filter(|f| !f.ends_with(".gitops-reverser-owner"))
        .collect();
    assert_eq!(
        listed,
        want.keys().map(String::as_str).collect::<Vec<_>>(),
        "seed {seed}"
    );
    for (path, content) in &want {
        assert_eq!(
            &git(&repo.path, &["show", &format!("main:{path}")]),
            content.trim_end(),
            "{path} (seed {seed})"
        );
    }
    git(&repo.path, &["fsck", "--strict"]);
}
