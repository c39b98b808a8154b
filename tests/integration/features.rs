//! The agent's build (`cargo build --release --no-default-features`, what the Dockerfile runs)
//! leaves out the simulator and the demo; it keeps rcgen, for the webhook's self-made certificate.

use std::process::Command;

/// The packages `gitops-reverser` links with `args` (normal dependencies only: no dev- or
/// build-dependencies), from `cargo tree` on the lock file, offline.
fn linked_packages(args: &[&str]) -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "tree",
            "--offline",
            "--locked",
            "--package",
            "gitops-reverser",
            "--edges",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "cargo tree {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[test]
fn the_agent_build_does_not_link_the_simulator() {
    let agent = linked_packages(&["--no-default-features"]);
    for present in ["kube", "rcgen"] {
        assert!(agent.iter().any(|p| p == present), "{present}: {agent:?}");
    }
    assert!(
        !agent.iter().any(|p| p == "kubesim"),
        "`cargo build --no-default-features` links kubesim: it belongs behind the `demo` \
         feature (or in [dev-dependencies])"
    );
}

#[test]
fn the_default_build_has_the_demo_and_the_simulator() {
    let default = linked_packages(&[]);
    for present in ["kubesim", "rcgen"] {
        assert!(
            default.iter().any(|p| p == present),
            "{present}: {default:?}"
        );
    }
}
