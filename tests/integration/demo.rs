//! `gitops-reverser demo` through the built binary: every scripted step behaves, the output has
//! each step's verdict and the history, and the repository holds what the verdicts say — with
//! alice's and bob's changes authored by alice and bob (attribution from the audit webhook).

use std::path::Path;
use std::process::{Command, Output};

fn demo(dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gitops-reverser"))
        .args(["demo", "--dir"])
        .arg(dir)
        .output()
        .expect("the binary runs")
}

#[test]
fn the_demo_runs_every_step_and_exits_0() {
    let scratch = tempfile::TempDir::new().expect("scratch");
    let dir = scratch.path().join("demo");
    let output = demo(&dir);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    for verdict in [
        "✓ step 1: alice creates ConfigMap shop/settings, Deployment shop/web, Service shop/web → ",
        " by alice (",
        "3 files added",
        "✓ step 2: pat comments the ConfigMap's file in Git; bob edits ConfigMap shop/settings (data.mode: standard → sale) → 1 commit by bob (update v1 ConfigMap shop/settings), pat's comment kept",
        "✓ step 3: alice scales Deployment shop/web to 3 replicas (scale subresource) → 1 commit by alice (update apps/v1 Deployment shop/web)",
        "✓ step 4: bob deletes Service shop/web → 1 commit by bob (delete v1 Service shop/web), file removed",
        "✓ step 5: Flux re-apply (server-side apply as kustomize-controller, Flux labels) → 2 files applied, no commit (",
        "Every step behaved.",
        "Author: alice <alice@users.gitops-reverser.invalid>",
        "Author: bob <bob@users.gitops-reverser.invalid>",
        "clusters/demo/shop/core/configmaps/settings.yaml |",
    ] {
        assert!(
            stdout.contains(verdict),
            "missing {verdict:?} in:\n{stdout}"
        );
    }
    assert!(!stdout.contains('✗'), "{stdout}");
    assert!(!stdout.contains("unknown (unattributed)"), "{stdout}");

    // The repository is left behind and says what the verdicts say.
    let repo = dir.join("repo.git");
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .arg("--git-dir")
            .arg(&repo)
            .args(args)
            .output()
            .expect("git runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let files = git(&["ls-tree", "-r", "--name-only", "main"]);
    assert!(
        files.contains("clusters/demo/shop/core/configmaps/settings.yaml")
            && files.contains("clusters/demo/shop/apps/deployments/web.yaml")
            && !files.contains("services/web.yaml"),
        "{files}"
    );
    // Oldest first: alice's creates (one or more commits), then Pat's comment in Git, bob,
    // alice, bob.
    let authors = git(&["log", "--reverse", "--format=%an", "main"]);
    let authors: Vec<&str> = authors.lines().collect();
    let creates = authors.len().saturating_sub(4);
    assert!(
        creates >= 1
            && authors[..creates].iter().all(|a| *a == "alice")
            && authors[creates..] == ["Pat", "bob", "alice", "bob"],
        "{authors:?}"
    );
    // Pat's comment survived bob's edit: the agent edited the line in place.
    let settings = git(&[
        "show",
        "main:clusters/demo/shop/core/configmaps/settings.yaml",
    ]);
    assert!(
        settings.contains("mode: sale # standard, or sale during promotions"),
        "{settings}"
    );
    // The certificates the audit webhook and the simulator used are left in the directory.
    for file in ["ca.crt", "webhook.crt", "webhook.key"] {
        assert!(dir.join("pki").join(file).is_file(), "pki/{file}");
    }
    let deployment = git(&["show", "main:clusters/demo/shop/apps/deployments/web.yaml"]);
    assert!(deployment.contains("replicas: 3"), "{deployment}");
    // The Flux labels never reach Git.
    assert!(!git(&["log", "-p", "main"]).contains("kustomize.toolkit.fluxcd.io"));

    // A directory that already holds a demo is refused before anything starts.
    let again = demo(&dir);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds a demo repository"));
}
