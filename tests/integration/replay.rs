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
