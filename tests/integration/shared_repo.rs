//! The agent in a repository people also edit, built like a real Flux repository: a kustomize
//! tree with comments, multi-document files, `kustomization.yaml` files with `resources:` and
//! `namespace:`, a README, kinds the agent does not watch and a file that does not parse. Live
//! edits change only their lines, new objects are placed and listed, deletes unlist, a restart
//! prunes only what is provably the agent's, and `kubectl kustomize` (real kustomize) builds
//! the folder after every commit.

use crate::support::agent_env::*;
use crate::support::git_servers::{commit_by_hand, git, require_binary};
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::json;
use std::path::{Path, PathBuf};

const KUSTOMIZATION: &str = "# The dev cluster: everything Flux applies from this folder.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: shop
resources:
  # The shop's configuration, kept by hand and by the agent.
  - shop/config.yaml
  - infra/releases.yaml # owned by the platform team
";

const CONFIG: &str = "# Configuration of the shop. Reviewed by the platform team.
---
# settings: read by the web frontend at start.
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  mode: fast   # fast or safe; safe during sales
  retries: '3'
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: flags
  labels:
    team: web
data:
  checkout: \"on\"
---
# A ConfigMap removed from the cluster while nobody recorded it.
apiVersion: v1
kind: ConfigMap
metadata:
  name: old
data:
  stale: \"yes\"
";

const RELEASES: &str = "apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: podinfo
spec:
  interval: 10m
  chart:
    spec:
      chart: podinfo
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: addons
spec:
  interval: 10m
  path: ./addons
  prune: true
";

const README: &str =
    "# clusters/dev\n\nApplied by Flux; ConfigMaps are recorded by gitops-reverser.\n";
const BROKEN: &str = "this: [is not\n  yaml: at all\n";

/// Every file of the folder at `main`: path → content.
fn tree(repo: &Path) -> std::collections::BTreeMap<String, String> {
    let dir = repo.to_str().expect("utf-8");
    git(
        repo,
        &[
            "--git-dir",
            dir,
            "ls-tree",
            "-r",
            "--name-only",
            "main",
            FOLDER,
        ],
        None,
    )
    .lines()
    .filter(|p| !p.ends_with(".gitops-reverser-owner"))
    .map(|p| (p.to_string(), show(repo, p).expect("file")))
    .collect()
}

/// The Flux-style fixture committed by a person: the kustomization, the commented multi-document
/// ConfigMap file, the unwatched kinds, and (`full`) the README and the file that does not parse.
fn commit_fixture(env: &Env, full: bool) {
    let path = |p: &str| format!("{FOLDER}/{p}");
    let mut files = vec![
        (path("kustomization.yaml"), KUSTOMIZATION),
        (path("shop/config.yaml"), CONFIG),
        (path("infra/releases.yaml"), RELEASES),
    ];
    if full {
        files.push((path("README.md"), README));
        files.push((path("notes/broken.yaml"), BROKEN));
    }
    let files: Vec<(&str, &str)> = files.iter().map(|(p, t)| (p.as_str(), *t)).collect();
    commit_by_hand(env.scratch.path(), &env.repo, &files);
}

/// `kubectl kustomize` of the folder at `main` (a checkout): the documents it builds.
fn kustomize(kubectl: &Path, scratch: &Path, repo: &Path) -> Vec<serde_json::Value> {
    let work: PathBuf = scratch.join("build");
    let _ = std::fs::remove_dir_all(&work);
    let url = format!("file://{}", repo.display());
    git(scratch, &["clone", "-q", &url, "build"], None);
    let out = std::process::Command::new(kubectl)
        .arg("kustomize")
        .arg(work.join(FOLDER))
        .output()
        .expect("kubectl runs");
    assert!(
        out.status.success(),
        "kubectl kustomize: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    gitops_reverser::manifest::yaml::parse_documents(&String::from_utf8_lossy(&out.stdout), "build")
        .expect("kustomize output reads")
}

fn names(docs: &[serde_json::Value], kind: &str) -> Vec<String> {
    let mut names: Vec<String> = docs
        .iter()
        .filter(|d| d["kind"] == kind)
        .map(|d| {
            format!(
                "{}/{}",
                d["metadata"]["namespace"].as_str().unwrap_or(""),
                d["metadata"]["name"].as_str().unwrap_or("")
            )
        })
        .collect();
    names.sort();
    names
}

fn diff_lines(repo: &Path) -> (Vec<String>, Vec<String>, Vec<String>) {
    let dir = repo.to_str().expect("utf-8");
    let files = git(
        repo,
        &["--git-dir", dir, "diff", "--name-only", "main~1", "main"],
        None,
    )
    .lines()
    .filter(|p| !p.ends_with(".gitops-reverser-owner"))
    .map(str::to_string)
    .collect();
    let patch = git(
        repo,
        &[
            "--git-dir",
            dir,
            "diff",
            "-U0",
            "main~1",
            "main",
            "--",
            &format!(":!{FOLDER}/.gitops-reverser-owner"),
        ],
        None,
    );
    let removed = patch
        .lines()
        .filter(|l| l.starts_with('-') && !l.starts_with("---"))
        .map(|l| l[1..].to_string())
        .collect();
    let added = patch
        .lines()
        .filter(|l| l.starts_with('+') && !l.starts_with("+++"))
        .map(|l| l[1..].to_string())
        .collect();
    (files, removed, added)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_edits_a_flux_repository_in_place_and_never_touches_what_is_not_its() {
    let kubectl = require_binary("kubectl", "kubectl").expect("kubectl");
    let env = Env::new().await;
    install_crd(
        &env,
        "helm.toolkit.fluxcd.io",
        "v2",
        "HelmRelease",
        "helmreleases",
    )
    .await;
    install_crd(
        &env,
        "kustomize.toolkit.fluxcd.io",
        "v1",
        "Kustomization",
        "kustomizations",
    )
    .await;
    let path = |p: &str| format!("{FOLDER}/{p}");
    commit_fixture(&env, true);
    // The cluster as Flux applied it (the kustomization's namespace), minus `old`.
    let built = kustomize(&kubectl, env.scratch.path(), &env.repo);
    for doc in &built {
        if doc["metadata"]["name"] != "old" {
            apply_as(&env.client, "kustomize-controller", doc).await;
        }
    }
    env.configure().await;
    let before = tree(&env.repo);
    let agent = env.start("state");
    agent.ready().await;

    // The restart's reconcile: the stale document of a watched type goes, with its comment;
    // every other byte of the repository stays (the person's equivalent documents too).
    until("the reconcile commit", || commits(&env.repo) == 2).await;
    let after = tree(&env.repo);
    let config = &after[&path("shop/config.yaml")];
    let expected = CONFIG[..CONFIG.find("---\n# A ConfigMap removed").expect("old")].to_string();
    assert_eq!(config, &expected, "only the stale document left the file");
    for file in [
        "kustomization.yaml",
        "infra/releases.yaml",
        "README.md",
        "notes/broken.yaml",
    ] {
        assert_eq!(after[&path(file)], before[&path(file)], "{file} untouched");
    }
    let body = git(
        &env.repo,
        &[
            "--git-dir",
            env.repo.to_str().unwrap(),
            "log",
            "-1",
            "--format=%s%n%b",
            "main",
        ],
        None,
    );
    assert!(
        body.starts_with("reconcile: 0 added, 0 updated, 1 removed"),
        "{body}"
    );
    assert!(
        body.contains("Not read (left as it is): clusters/dev/notes/broken.yaml"),
        "{body}"
    );

    // The destination says which file it left as it is.
    let readable = until_condition(
        &env.client,
        "gitdestinations",
        "shop",
        "dev",
        "FolderReadable",
        "False",
    )
    .await;
    assert_eq!(readable["reason"], "FilesLeftAsTheyAre");
    assert!(
        readable["message"]
            .as_str()
            .unwrap_or("")
            .contains("clusters/dev/notes/broken.yaml"),
        "{readable}"
    );

    // A live edit of an object in the multi-document file: one commit, only its lines.
    let configmaps = env.configmaps("shop");
    configmaps
        .patch(
            "settings",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"mode": "safe"}})),
        )
        .await
        .expect("edit");
    until("the edit's commit", || commits(&env.repo) == 3).await;
    let (files, removed, added) = diff_lines(&env.repo);
    assert_eq!(files, [path("shop/config.yaml")]);
    assert_eq!(
        removed,
        ["  mode: fast   # fast or safe; safe during sales"]
    );
    assert!(
        added.contains(&"  mode: safe   # fast or safe; safe during sales".to_string())
            || added.contains(&"  mode: safe # fast or safe; safe during sales".to_string()),
        "{added:?}"
    );
    assert!(
        added.iter().all(|l| l.contains("mode: safe")
            || l.contains("annotations:")
            || l.contains("configbutler.ai/content-hash")),
        "only the change and the hash annotation: {added:?}"
    );
    let message = git(
        &env.repo,
        &[
            "--git-dir",
            env.repo.to_str().unwrap(),
            "log",
            "-1",
            "--format=%B",
            "main",
        ],
        None,
    );
    assert!(
        message.contains("Content-Hash: clusters/dev/shop/config.yaml sha256:"),
        "the trailer names the file the object lives in: {message}"
    );
    let config = show(&env.repo, &path("shop/config.yaml")).expect("config");
    assert!(config.starts_with("# Configuration of the shop."));
    assert!(config.contains("# settings: read by the web frontend at start."));
    assert!(
        config.contains("  name: flags\n  labels:\n    team: web\ndata:\n  checkout: \"on\"\n"),
        "{config}"
    );
    assert!(
        !config.contains("namespace:"),
        "the kustomization's namespace stays implicit"
    );

    // A new object: placed by the template, listed in the kustomization; kustomize builds it.
    env.put_configmap("shop", "extra", "1").await;
    let placed = path("shop/core/configmaps/extra.yaml");
    until("the new file", || show(&env.repo, &placed).is_some()).await;
    let kustomization = show(&env.repo, &path("kustomization.yaml")).expect("kustomization");
    assert_eq!(
        kustomization,
        KUSTOMIZATION.replace(
            "  - infra/releases.yaml # owned by the platform team\n",
            "  - infra/releases.yaml # owned by the platform team\n  - shop/core/configmaps/extra.yaml\n"
        )
    );
    let built = kustomize(&kubectl, env.scratch.path(), &env.repo);
    assert_eq!(
        names(&built, "ConfigMap"),
        ["shop/extra", "shop/flags", "shop/settings"]
    );
    assert_eq!(names(&built, "HelmRelease"), ["shop/podinfo"]);

    // Deletes: a document leaves its file; the last one takes the file and its listing.
    configmaps
        .delete("flags", &DeleteParams::default())
        .await
        .expect("delete");
    until("flags removed", || {
        show(&env.repo, &path("shop/config.yaml")).is_some_and(|c| !c.contains("name: flags"))
    })
    .await;
    configmaps
        .delete("extra", &DeleteParams::default())
        .await
        .expect("delete");
    until("extra removed", || show(&env.repo, &placed).is_none()).await;
    assert_eq!(
        show(&env.repo, &path("kustomization.yaml")).expect("k"),
        KUSTOMIZATION
    );
    let config = show(&env.repo, &path("shop/config.yaml")).expect("config");
    assert!(
        config.starts_with(
            "# Configuration of the shop. Reviewed by the platform team.\n---\n# settings:"
        ) && config.ends_with("  retries: '3'\n"),
        "{config}"
    );
    let built = kustomize(&kubectl, env.scratch.path(), &env.repo);
    assert_eq!(names(&built, "ConfigMap"), ["shop/settings"]);

    // A Flux-like reconciler applying the build, ten rounds: not one commit.
    let settled = commits(&env.repo);
    for _ in 0..10 {
        let built = kustomize(&kubectl, env.scratch.path(), &env.repo);
        for doc in &built {
            let mut doc = doc.clone();
            doc["metadata"]["labels"]["kustomize.toolkit.fluxcd.io/name"] = json!("dev");
            apply_as(&env.client, "kustomize-controller", &doc).await;
        }
    }
    env.sentinel("101").await;
    assert_eq!(
        commits(&env.repo),
        settled + 1,
        "only the sentinel's commit"
    );
    // A person's edit: exactly one commit.
    configmaps
        .patch(
            "settings",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"retries": "5"}})),
        )
        .await
        .expect("edit");
    env.sentinel("102").await;
    assert_eq!(commits(&env.repo), settled + 3);
    let (files, _, _) = diff_lines(&env.repo);
    assert_eq!(files.len(), 1, "{files:?}");
    let config = show(&env.repo, &path("shop/config.yaml")).expect("config");
    assert!(
        config.contains("retries: '5'") || config.contains("retries: \"5\""),
        "{config}"
    );
    agent.stop().await;
    for file in ["infra/releases.yaml", "README.md", "notes/broken.yaml"] {
        assert_eq!(
            show(&env.repo, &path(file)).expect(file),
            before[&path(file)],
            "{file} untouched"
        );
    }
}

/// GitDestination `dev` with this prune policy.
async fn prune_policy(env: &Env, prune: &str) {
    apply(
        &env.client,
        json!({"apiVersion": "configbutler.ai/v1alpha1", "kind": "GitDestination",
            "metadata": {"name": "dev", "namespace": "shop"},
            "spec": {"repoRef": {"name": "repo"}, "branch": "main", "folder": FOLDER, "prune": prune}}),
    )
    .await;
}

/// `Never` removes nothing, deletes included; `OnEvent` removes on a delete event but never at a
/// restart; `Sweep` removes at a restart what the listing lacked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_never_on_event_and_sweep_behave_as_documented() {
    let env = Env::new().await;
    let path = |p: &str| format!("{FOLDER}/{p}");
    commit_fixture(&env, false);
    // `settings` and `flags` live; `old` is stale.
    for (name, data) in [
        ("settings", json!({"mode": "fast", "retries": "3"})),
        ("flags", json!({"checkout": "on"})),
    ] {
        let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "shop"}, "data": data});
        if name == "flags" {
            cm["metadata"]["labels"] = json!({"team": "web"});
        }
        apply_as(&env.client, "kustomize-controller", &cm).await;
    }
    env.configure().await;
    prune_policy(&env, "Never").await;
    let agent = env.start("state");
    agent.ready().await;
    env.configmaps("shop")
        .delete("flags", &DeleteParams::default())
        .await
        .expect("delete");
    env.sentinel("1").await;
    let config = show(&env.repo, &path("shop/config.yaml")).expect("config");
    assert!(
        config.contains("name: old") && config.contains("name: flags"),
        "Never: {config}"
    );
    agent.stop().await;

    prune_policy(&env, "OnEvent").await;
    let agent = env.start("state");
    agent.ready().await;
    env.sentinel("2").await;
    let config = show(&env.repo, &path("shop/config.yaml")).expect("config");
    assert!(
        config.contains("name: old") && config.contains("name: flags"),
        "OnEvent, at start: {config}"
    );
    env.put_configmap("shop", "extra", "1").await;
    until("extra", || {
        show(&env.repo, &path("shop/core/configmaps/extra.yaml")).is_some()
    })
    .await;
    env.configmaps("shop")
        .delete("extra", &DeleteParams::default())
        .await
        .expect("delete");
    until("extra removed on its delete event", || {
        show(&env.repo, &path("shop/core/configmaps/extra.yaml")).is_none()
    })
    .await;
    agent.stop().await;

    prune_policy(&env, "Sweep").await;
    let agent = env.start("state");
    agent.ready().await;
    until("the stale documents swept", || {
        show(&env.repo, &path("shop/config.yaml"))
            .is_some_and(|c| !c.contains("name: old") && !c.contains("name: flags"))
    })
    .await;
    agent.stop().await;
    assert_eq!(
        show(&env.repo, &path("infra/releases.yaml")).as_deref(),
        Some(RELEASES),
        "an unwatched kind stays"
    );
}

/// `spec.resyncInterval`: a person's edit of a recorded document in Git is brought back to the
/// cluster's truth by the next resync, in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resync_brings_a_hand_edited_document_back_to_the_cluster() {
    let env = Env::new().await;
    env.configure().await;
    apply(
        &env.client,
        json!({"apiVersion": "configbutler.ai/v1alpha1", "kind": "GitDestination",
            "metadata": {"name": "dev", "namespace": "shop"},
            "spec": {"repoRef": {"name": "repo"}, "branch": "main", "folder": FOLDER, "resyncInterval": "10s"}}),
    )
    .await;
    env.put_configmap("shop", "settings", "1").await;
    let agent = env.start("state");
    agent.ready().await;
    until("the file", || env.file("shop", "settings").is_some()).await;
    let recorded = env.file("shop", "settings").expect("file");
    let edited = recorded.replace("value: \"1\"", "value: \"edited in Git\" # a person's edit");
    assert_ne!(edited, recorded);
    commit_by_hand(
        env.scratch.path(),
        &env.repo,
        &[(
            &format!("{FOLDER}/shop/core/configmaps/settings.yaml"),
            &edited,
        )],
    );
    until("the resync", || {
        env.file("shop", "settings")
            .is_some_and(|f| f.contains("value: \"1\""))
    })
    .await;
    let restored = env.file("shop", "settings").expect("file");
    assert!(
        restored.contains("# a person's edit"),
        "edited in place: {restored}"
    );
    agent.stop().await;
}

/// `spec.placements`: a bundle puts a namespace's ConfigMaps in one file, ordered by name; a
/// delete takes one document out; a placement that could put two objects at one path without
/// `bundle` is refused with a reason that says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_placement_keeps_objects_in_one_file_ordered_by_name() {
    let env = Env::new().await;
    env.configure().await;
    let destination = |bundle: bool| {
        json!({"apiVersion": "configbutler.ai/v1alpha1", "kind": "GitDestination",
            "metadata": {"name": "dev", "namespace": "shop"},
            "spec": {"repoRef": {"name": "repo"}, "branch": "main", "folder": FOLDER,
                "placements": [{"kinds": ["ConfigMap"], "path": "{namespace}/configmaps.yaml", "bundle": bundle}]}})
    };
    let agent = env.start("state");
    agent.ready().await;
    apply(&env.client, destination(false)).await;
    let refused = until_condition(
        &env.client,
        "gitdestinations",
        "shop",
        "dev",
        "Ready",
        "False",
    )
    .await;
    assert_eq!(refused["reason"], "InvalidPathTemplate", "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap_or("")
            .contains("bundle: true"),
        "{refused}"
    );
    apply(&env.client, destination(true)).await;
    until_condition(
        &env.client,
        "gitdestinations",
        "shop",
        "dev",
        "Ready",
        "True",
    )
    .await;
    for name in ["cherry", "apple", "banana"] {
        env.put_configmap("shop", name, "1").await;
    }
    let bundle = format!("{FOLDER}/shop/configmaps.yaml");
    let names = |text: &str| -> Vec<String> {
        gitops_reverser::manifest::yaml::parse_documents(text, "bundle")
            .expect("bundle reads")
            .iter()
            .map(|d| d["metadata"]["name"].as_str().unwrap_or("").to_string())
            .collect()
    };
    until("the bundle", || {
        show(&env.repo, &bundle).is_some_and(|t| names(&t) == ["apple", "banana", "cherry"])
    })
    .await;
    env.put_configmap("shop", "avocado", "1").await;
    until("avocado in its place", || {
        show(&env.repo, &bundle)
            .is_some_and(|t| names(&t) == ["apple", "avocado", "banana", "cherry"])
    })
    .await;
    env.configmaps("shop")
        .delete("banana", &DeleteParams::default())
        .await
        .expect("delete");
    until("banana's document gone", || {
        show(&env.repo, &bundle).is_some_and(|t| names(&t) == ["apple", "avocado", "cherry"])
    })
    .await;
    agent.stop().await;
}
