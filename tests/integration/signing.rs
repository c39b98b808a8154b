//! Signed commits from the agent (issue #14): a GitRepoConfig naming a signing key Secret gets
//! every commit signed — the snapshot of the initial reconcile and each change's commit —
//! verified by the real `git verify-commit`; its `CommitsSigned` condition shows the key's
//! fingerprint and public key; a Secret without a usable key commits nothing and says why.

use crate::support::agent_env::*;
use crate::support::git_servers::{git, git_output, require_binary};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use std::path::Path;
use std::process::Command;

/// A new ed25519 key: (private key text, public key line).
fn keypair(dir: &Path) -> (String, String) {
    require_binary("ssh-keygen", "openssh-client");
    let key = dir.join("signing");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "agent", "-f"])
        .arg(&key)
        .status()
        .expect("ssh-keygen runs");
    assert!(status.success());
    (
        std::fs::read_to_string(&key).expect("key"),
        std::fs::read_to_string(key.with_extension("pub")).expect("public key"),
    )
}

async fn put_signing_secret(env: &Env, data: serde_json::Value) {
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), "shop");
    let secret = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "commit-signing", "namespace": "shop"}, "stringData": data});
    secrets
        .patch(
            "commit-signing",
            &PatchParams::apply("test").force(),
            &Patch::Apply(&secret),
        )
        .await
        .expect("secret");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_commit_of_the_agent_is_signed_with_the_named_key() {
    let env = Env::new().await;
    let (private, public) = keypair(env.scratch.path());
    put_signing_secret(&env, json!({"signing-key": private})).await;
    env.configure().await;
    apply(
        &env.client,
        json!({"apiVersion": "configbutler.ai/v1alpha1", "kind": "GitRepoConfig",
        "metadata": {"name": "repo", "namespace": "shop"},
        "spec": {"url": env.url(), "commit": {"window": {"quiet": "0s"},
            "signingKeyRef": {"name": "commit-signing"}}}}),
    )
    .await;
    env.put_configmap("shop", "settings", "1").await;
    let agent = env.start("state");
    agent.ready().await;
    until("the snapshot", || env.file("shop", "settings").is_some()).await;
    env.put_configmap("shop", "settings", "2").await;
    until("the change", || {
        env.file("shop", "settings")
            .is_some_and(|f| f.contains("value: \"2\""))
    })
    .await;

    let signed = until_condition(
        &env.client,
        "gitrepoconfigs",
        "shop",
        "repo",
        "CommitsSigned",
        "True",
    )
    .await;
    let fingerprint = String::from_utf8_lossy(
        &Command::new("ssh-keygen")
            .args(["-l", "-f"])
            .arg(env.scratch.path().join("signing.pub"))
            .output()
            .expect("fingerprint")
            .stdout,
    )
    .split_whitespace()
    .nth(1)
    .expect("a fingerprint")
    .to_string();
    let message = signed["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&fingerprint)
            && message.contains(public.split_whitespace().nth(1).unwrap_or("?")),
        "{message}"
    );
    // The status field says the same (#15 item 5).
    until_status(&env.client, "gitrepoconfigs", "shop", "repo", |s| {
        s["signingKeyFingerprint"] == fingerprint.as_str()
    })
    .await;

    let allowed = env.scratch.path().join("allowed_signers");
    std::fs::write(
        &allowed,
        format!("gitops-reverser@configbutler.ai {public}"),
    )
    .expect("write");
    let dir = env.repo.to_str().expect("utf-8");
    let commits = git(&env.repo, &["--git-dir", dir, "rev-list", "main"], None);
    assert_eq!(commits.lines().count(), 2, "{commits}");
    for commit in commits.lines() {
        let checked = git_output(
            &env.repo,
            &[
                "--git-dir",
                dir,
                "-c",
                "gpg.format=ssh",
                "-c",
                &format!("gpg.ssh.allowedSignersFile={}", allowed.display()),
                "verify-commit",
                commit,
            ],
            None,
        );
        assert!(
            checked.status.success(),
            "{commit}: {}",
            String::from_utf8_lossy(&checked.stderr)
        );
    }

    // A Secret without a usable key: nothing is committed (never unsigned), and it says why.
    put_signing_secret(&env, json!({"signing-key": "not a key"})).await;
    let broken = until_condition(
        &env.client,
        "gitrepoconfigs",
        "shop",
        "repo",
        "CommitsSigned",
        "False",
    )
    .await;
    assert_eq!(broken["reason"], "SigningKeyInvalid", "{broken}");
    assert!(
        !broken["message"]
            .as_str()
            .unwrap_or_default()
            .contains("not a key"),
        "no key material in the condition: {broken}"
    );
    agent.stop().await;
}
