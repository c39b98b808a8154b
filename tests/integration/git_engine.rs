//! The Git engine against real bare repositories over `file://`: workers shared per repository,
//! commit windows and authors, two writers on one branch, and a remote that goes away.

use crate::support::git_servers::{BareRepo, git as support_git};
use gitops_reverser::git::change::{Change, FileChange};
use gitops_reverser::git::registry::Registry;
use gitops_reverser::git::transport::{GitCli, Remote};
use gitops_reverser::git::window::WindowConfig;
use gitops_reverser::git::worker::{Clock, WorkerConfig};
use gitops_reverser::identity::Author;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A temporary directory holding bare repositories and state directories.
struct Scratch(tempfile::TempDir);

impl Scratch {
    fn new(_name: &str) -> Self {
        Self(tempfile::TempDir::new().expect("scratch dir"))
    }

    fn path(&self) -> &Path {
        self.0.path()
    }

    fn bare(&self, name: &str) -> PathBuf {
        BareRepo::init(self.path().join(name)).path
    }
}

/// `git --git-dir <repo> <args>`, stdout with the trailing newline removed.
fn git(args: &[&str], repo: Option<&Path>) -> String {
    let repo = repo.expect("a repository");
    let mut all = vec!["--git-dir", repo.to_str().expect("utf-8")];
    all.extend_from_slice(args);
    support_git(repo, &all, None)
}

fn url(path: &Path) -> String {
    format!("file://{}", path.display())
}

fn config(quiet_ms: u64, clock: Clock) -> WorkerConfig {
    WorkerConfig {
        windows: WindowConfig {
            quiet: Duration::from_millis(quiet_ms),
            max_age: Duration::from_secs(60),
            max_changes: 200,
        },
        retry_initial: Duration::from_millis(50),
        retry_max: Duration::from_millis(400),
        clock,
        ..WorkerConfig::default()
    }
}

fn registry(state: &Path, config: WorkerConfig) -> Registry {
    Registry::new(
        state,
        Arc::new(GitCli::new().with_timeout(Duration::from_secs(30))),
        config,
    )
}

fn change(who: &str, folder: &str, name: &str, body: &str, second: i64) -> Change {
    Change {
        folder: folder.to_string(),
        destination: format!("shop/{folder}"),
        author: Author {
            name: who.to_string(),
            email: format!("{who}@example.com"),
        },
        user: Some(who.to_string()),
        impersonator: None,
        audit_id: None,
        received: jiff::Timestamp::from_second(1_800_000_000 + second).expect("time"),
        file: FileChange {
            object: None,
            bundle: false,
            path: format!("{folder}/{name}.yaml"),
            content: Some(body.as_bytes().to_vec().into()),
            hash: None,
            summary: format!("update v1 ConfigMap shop/{name}"),
            namespace: Some("shop".to_string()),
            live: None,
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn differently_spelled_urls_share_one_worker_and_release_frees_it() {
    let scratch = Scratch::new("share");
    let repo = scratch.bare("repo.git");
    let reg = registry(&scratch.path().join("state"), config(0, Clock::Wall));
    let a = reg
        .acquire(Remote::new(url(&repo), None), "main", "GitDestination a/x")
        .expect("acquire");
    let spelled = format!("{}/", repo.display()); // a plain path with a trailing slash
    let b = reg
        .acquire(Remote::new(spelled, None), "main", "GitDestination b/y")
        .expect("acquire");
    assert_eq!(reg.len(), 1);
    assert_eq!(a.key(), b.key());
    reg.acquire(Remote::new(url(&repo), None), "other", "GitDestination c/z")
        .expect("acquire");
    assert_eq!(reg.len(), 2);
    reg.release("GitDestination a/x");
    assert_eq!(reg.len(), 2, "b still holds main");
    reg.release("GitDestination b/y");
    reg.release("GitDestination c/z");
    assert!(reg.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_make_one_commit_per_burst_and_per_author_with_receive_times() {
    let scratch = Scratch::new("windows");
    let repo = scratch.bare("repo.git");
    let reg = registry(&scratch.path().join("state"), config(3_000, Clock::Events));
    let worker = reg
        .acquire(Remote::new(url(&repo), None), "main", "d")
        .expect("acquire");
    // alice: a burst of three; bob interleaves on other files; then bob touches alice's file.
    for c in [
        change("alice", "apps", "a", "1", 0),
        change("bob", "apps", "b", "1", 1),
        change("alice", "apps", "c", "1", 1),
        change("alice", "apps", "a", "2", 2),
        change("bob", "apps", "a", "3", 3),
        // Ten seconds later: a new window for alice.
        change("alice", "apps", "d", "1", 13),
    ] {
        worker.send(c).await.expect("send");
    }
    worker.flush().await.expect("flush");
    let log = git(
        &["log", "--reverse", "--format=%an|%at|%s", "main"],
        Some(&repo),
    );
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(
        lines,
        [
            "alice|1800000002|alice: 2 changes in shop",
            "bob|1800000003|bob: 2 changes in shop",
            "alice|1800000013|update v1 ConfigMap shop/d",
        ],
        "{log}"
    );
    assert_eq!(git(&["show", "main:apps/a.yaml"], Some(&repo)), "3");
    let body = git(&["log", "-1", "--format=%B", "main~2"], Some(&repo));
    assert!(
        body.contains("- update v1 ConfigMap shop/a\n- update v1 ConfigMap shop/c\n"),
        "{body}"
    );
    assert!(body.contains("Kubernetes-User: alice"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clusters_on_one_branch_lose_nothing_and_keep_history_linear() {
    let scratch = Scratch::new("race");
    let repo = scratch.bare("repo.git");
    const EACH: usize = 300;
    let mut tasks = Vec::new();
    for cluster in ["east", "west"] {
        let state = scratch.path().join(format!("state-{cluster}"));
        let url = url(&repo);
        tasks.push(tokio::spawn(async move {
            // A registry per cluster: separate caches, as two agents would have.
            let reg = registry(&state, config(5, Clock::Wall));
            let worker = reg
                .acquire(Remote::new(url, None), "main", cluster)
                .expect("acquire");
            for i in 0..EACH {
                let c = change(
                    cluster,
                    cluster,
                    &format!("cm-{i:03}"),
                    &format!("{cluster} {i}"),
                    i as i64,
                );
                worker.send(c).await.expect("send");
                if i % 50 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            worker.flush().await.expect("flush lands everything");
            let stats = worker.stats();
            (
                stats
                    .push_conflicts
                    .load(std::sync::atomic::Ordering::Relaxed),
                stats
                    .waiting_changes
                    .load(std::sync::atomic::Ordering::Relaxed),
            )
        }));
    }
    for task in tasks {
        let (_conflicts, waiting) = task.await.expect("task");
        assert_eq!(waiting, 0);
    }
    let files = git(&["ls-tree", "-r", "--name-only", "main"], Some(&repo));
    for cluster in ["east", "west"] {
        let count = files
            .lines()
            .filter(|l| l.starts_with(&format!("{cluster}/")) && l.ends_with(".yaml"))
            .count();
        assert_eq!(count, EACH, "{cluster}: every change landed");
        assert_eq!(
            git(
                &["show", &format!("main:{cluster}/cm-{:03}.yaml", EACH - 1)],
                Some(&repo)
            ),
            format!("{cluster} {}", EACH - 1)
        );
    }
    assert_eq!(
        git(&["rev-list", "--merges", "--count", "main"], Some(&repo)).trim(),
        "0",
        "history is linear"
    );
    git(&["fsck", "--strict"], Some(&repo));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_delays_changes_and_they_land_once_in_order() {
    let scratch = Scratch::new("outage");
    let repo = scratch.bare("repo.git");
    let reg = registry(&scratch.path().join("state"), config(0, Clock::Wall));
    let worker = reg
        .acquire(Remote::new(url(&repo), None), "main", "d")
        .expect("acquire");
    worker
        .send(change("alice", "apps", "before", "1", 0))
        .await
        .expect("send");
    worker.flush().await.expect("first push");

    // The remote disappears.
    let away = scratch.path().join("away.git");
    std::fs::rename(&repo, &away).expect("take the remote away");
    for i in 0..5 {
        worker
            .send(change("alice", "apps", &format!("during-{i}"), "1", 1 + i))
            .await
            .expect("send");
    }
    let err = worker.flush().await.expect_err("the remote is gone");
    assert!(err.to_string().contains("repo.git"), "{err}");
    assert!(
        worker
            .stats()
            .waiting_changes
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );

    // It comes back: everything lands, once, in order.
    std::fs::rename(&away, &repo).expect("bring the remote back");
    worker.flush().await.expect("lands after the outage");
    let log = git(&["log", "--reverse", "--format=%s", "main"], Some(&repo));
    let want: Vec<String> = std::iter::once("update v1 ConfigMap shop/before".to_string())
        .chain((0..5).map(|i| format!("update v1 ConfigMap shop/during-{i}")))
        .collect();
    assert_eq!(log.lines().collect::<Vec<_>>(), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_with_a_fresh_marker_of_another_owner_is_refused_and_a_stale_one_taken_over() {
    use gitops_reverser::git::worker::WorkerConfig;
    let scratch = Scratch::new("marker");
    let repo = scratch.bare("repo.git");
    let cluster = |name: &str, stale: Duration| WorkerConfig {
        cluster: name.to_string(),
        marker_stale_after: stale,
        ..config(0, Clock::Wall)
    };
    let east = registry(
        &scratch.path().join("east"),
        cluster("east", Duration::from_secs(3600)),
    );
    let w = east
        .acquire(Remote::new(url(&repo), None), "main", "d")
        .expect("acquire");
    w.send(change("alice", "apps", "a", "east", 0))
        .await
        .expect("send");
    w.flush().await.expect("east writes");
    let marker = git(&["show", "main:apps/.gitops-reverser-owner"], Some(&repo));
    assert!(
        marker.contains("cluster: east") && marker.contains("destination: shop/apps"),
        "{marker}"
    );

    let west = registry(
        &scratch.path().join("west"),
        cluster("west", Duration::from_secs(3600)),
    );
    let w = west
        .acquire(Remote::new(url(&repo), None), "main", "d")
        .expect("acquire");
    w.send(change("bob", "apps", "a", "west", 1))
        .await
        .expect("send");
    w.flush().await.expect("nothing to push is not an error");
    assert_eq!(
        w.stats().refused.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert_eq!(
        git(&["show", "main:apps/a.yaml"], Some(&repo)),
        "east",
        "refused: not clobbered"
    );

    // With a stale limit of zero, east's marker is stale: west takes the folder over.
    let late = registry(
        &scratch.path().join("late"),
        cluster("west", Duration::ZERO),
    );
    let w = late
        .acquire(Remote::new(url(&repo), None), "main", "d")
        .expect("acquire");
    w.send(change("bob", "apps", "a", "west", 2))
        .await
        .expect("send");
    w.flush().await.expect("west takes over");
    assert_eq!(git(&["show", "main:apps/a.yaml"], Some(&repo)), "west");
    assert!(
        git(&["show", "main:apps/.gitops-reverser-owner"], Some(&repo)).contains("cluster: west")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_writes_the_folder_difference_once() {
    use gitops_reverser::git::snapshot::SnapshotObject;
    use gitops_reverser::git::worker::{Prune, SnapshotRequest};
    let scratch = Scratch::new("snapshot");
    let repo = scratch.bare("repo.git");
    let reg = registry(&scratch.path().join("state"), config(0, Clock::Wall));
    let w = reg
        .acquire(Remote::new(url(&repo), None), "main", "d")
        .expect("acquire");
    let cm = |name: &str, v: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: shop\ndata:\n  v: \"{v}\"\n"
        )
    };
    // Ours: ConfigMaps. Everything else in the folder is someone else's.
    let ours = |id: &gitops_reverser::manifest::ObjectIdentity, _: &serde_json::Value| {
        id.kind == "ConfigMap"
    };
    let request = |files: Vec<(&str, String)>| {
        let (objects, files): (Vec<_>, Vec<_>) =
            files.into_iter().partition(|(p, _)| p.ends_with(".yaml"));
        SnapshotRequest {
            folder: "clusters/prod".into(),
            destination: "flux-system/prod".into(),
            prune: Prune::Owned(std::sync::Arc::new(ours)),
            notes: vec!["Not pruned: widgets (not served)".into()],
            objects: objects
                .into_iter()
                .map(|(p, c)| {
                    let doc =
                        gitops_reverser::manifest::yaml::parse_single_document(c.as_bytes(), p)
                            .expect("a document");
                    SnapshotObject {
                        id: gitops_reverser::manifest::ObjectId::of(&doc)
                            .expect("an object")
                            .identity(),
                        path: format!("clusters/prod/{p}"),
                        bundle: false,
                        hash: gitops_reverser::manifest::content_hash(&doc),
                        content: c.into_bytes(),
                        keep: false,
                    }
                })
                .collect(),
            files: files
                .into_iter()
                .map(|(p, c)| (p.to_string(), c.into_bytes()))
                .collect(),
        }
    };
    let first = w
        .snapshot(request(vec![
            ("shop/core/configmaps/a.yaml", cm("a", "1")),
            ("shop/core/configmaps/b.yaml", cm("b", "1")),
            ("README.md", "# prod\n".into()),
            (
                "shop/example.com/widgets/w.yaml",
                "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n".into(),
            ),
        ]))
        .await
        .expect("snapshot");
    let again = w
        .snapshot(request(vec![
            ("shop/core/configmaps/a.yaml", cm("a", "1")),
            ("shop/core/configmaps/b.yaml", cm("b", "1")),
        ]))
        .await
        .expect("snapshot");
    assert_eq!(
        first, again,
        "nothing of ours differs: no commit, nothing else removed"
    );
    w.snapshot(request(vec![("shop/core/configmaps/a.yaml", cm("a", "2"))]))
        .await
        .expect("snapshot");
    let log = git(&["log", "--format=%an|%s", "main"], Some(&repo));
    assert_eq!(
        log.lines().collect::<Vec<_>>(),
        [
            "gitops-reverser|reconcile: 0 added, 1 updated, 1 removed",
            "gitops-reverser|reconcile: 4 added, 0 updated, 0 removed"
        ],
        "{log}"
    );
    let body = git(&["log", "-1", "--format=%b", "main"], Some(&repo));
    assert!(body.contains("Not pruned: widgets (not served)"), "{body}");
    let files = git(&["ls-tree", "-r", "--name-only", "main"], Some(&repo));
    assert_eq!(
        files
            .lines()
            .filter(|f| !f.ends_with("/.gitops-reverser-owner"))
            .collect::<Vec<_>>(),
        [
            "clusters/prod/README.md",
            "clusters/prod/shop/core/configmaps/a.yaml",
            "clusters/prod/shop/example.com/widgets/w.yaml",
        ],
        "the README and the Widget are not ours: they stay"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_branch_starts_from_the_default_branch_and_a_force_push_is_survived() {
    let scratch = Scratch::new("branches");
    let repo = scratch.bare("repo.git");
    let reg = registry(&scratch.path().join("state"), config(0, Clock::Wall));
    let main = reg
        .acquire(Remote::new(url(&repo), None), "main", "m")
        .expect("acquire");
    main.send(change("alice", "apps", "a", "1", 0))
        .await
        .expect("send");
    let main_tip = main.flush().await.expect("main").expect("a tip");

    // A destination on a branch that does not exist yet: it starts from main.
    let feature = reg
        .acquire(Remote::new(url(&repo), None), "feature", "f")
        .expect("acquire");
    feature
        .send(change("bob", "other", "b", "1", 1))
        .await
        .expect("send");
    feature.flush().await.expect("feature");
    assert_eq!(
        git(&["rev-parse", "feature~1"], Some(&repo)),
        main_tip.to_string()
    );
    assert_eq!(git(&["show", "feature:apps/a.yaml"], Some(&repo)), "1");

    // Someone force-pushes main to an unrelated history; the worker's next change lands on it.
    let work = BareRepo::init(scratch.path().join("rewrite.git"));
    let tree = support_git(
        &work.path,
        &["--git-dir", work.path.to_str().expect("utf-8"), "mktree"],
        Some(""),
    );
    let root = support_git(
        &work.path,
        &[
            "--git-dir",
            work.path.to_str().expect("utf-8"),
            "commit-tree",
            &tree,
            "-m",
            "rewritten",
        ],
        None,
    );
    support_git(
        &work.path,
        &[
            "--git-dir",
            work.path.to_str().expect("utf-8"),
            "push",
            "-q",
            "--force",
            &url(&repo),
            &format!("{root}:refs/heads/main"),
        ],
        None,
    );
    main.send(change("alice", "apps", "c", "1", 2))
        .await
        .expect("send");
    main.flush().await.expect("lands on the rewritten branch");
    assert_eq!(git(&["rev-parse", "main~1"], Some(&repo)), root);
    assert_eq!(
        git(&["log", "-1", "--format=%s", "main"], Some(&repo)),
        "update v1 ConfigMap shop/c"
    );
    assert!(
        main.stats()
            .push_conflicts
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
}
