//! The live view of the queues (`/status`, `/status.json`) rendered by a real browser, and the
//! GitDestination switches it reports: `spec.suspend` (one reconcile commit on resume) and
//! `spec.mode: Observe` (decides and reports, writes nothing). Issue #15 items 4 and 6.

use crate::support::agent_env::*;
use crate::support::git_servers::{git, require_binary};
use gitops_reverser::ops::status::{StatusReport, StatusSource};
use gitops_reverser::ops::{OpsServer, OpsState};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Set to a file path to keep the browser's screenshot of the page (docs/status-page.png is
/// made this way).
const SCREENSHOT_ENV: &str = "GITOPS_REVERSER_STATUS_SCREENSHOT";

/// Runs headless Chromium on `url` with `output` (`--dump-dom` or `--screenshot=…`), as root
/// in a container allows, with a fresh profile; returns its stdout. Fails after 60 s.
fn chromium(binary: &Path, url: &str, output: &[&str]) -> String {
    let profile = tempfile::TempDir::new().expect("profile dir");
    let mut child = Command::new(binary)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            "--window-size=1400,900",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(output)
        .arg(url)
        .current_dir(profile.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(_status) = child.try_wait().expect("chromium runs") {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within 60 s on {url}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().expect("chromium output");
    assert!(
        output.status.success(),
        "chromium failed on {url}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Polls the agent's status report until `check` holds.
async fn until_report(
    source: &dyn StatusSource,
    what: &str,
    check: impl Fn(&StatusReport) -> bool,
) -> StatusReport {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let report = source.report();
        if check(&report) {
            return report;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; the report: {}",
            report.to_json()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn tip(repo: &Path) -> String {
    let dir = repo.to_str().expect("utf-8");
    git(repo, &["--git-dir", dir, "rev-parse", "main"], None)
}

/// The browser test of issue #15 item 4: the agent runs on the simulator with a long commit
/// window; the page Chromium renders names the repository, the commit the reconcile pushed,
/// and the open window of the change made since (its author and file count); `/status.json`
/// says the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_in_a_browser_shows_the_repository_its_last_push_and_an_open_window() {
    let Some(browser) = require_binary("chromium", "chromium") else {
        return;
    };
    let env = Env::new().await;
    env.configure_quiet("5m").await;
    env.put_configmap("shop", "before", "1").await;
    let agent = env.start("state");
    agent.ready().await;
    until("the reconcile commit", || commits(&env.repo) >= 1).await;
    let pushed = tip(&env.repo);
    env.put_configmap("shop", "web", "2").await;
    let board = agent.agent.board.clone();
    let report = until_report(&*board, "an open window and the last push", |r| {
        r.workers.first().is_some_and(|w| {
            w.open_windows.len() == 1 && w.last_push.as_ref().is_some_and(|p| p.commit == pushed)
        })
    })
    .await;
    let repository = report.workers[0].repository.clone();
    assert!(repository.ends_with("#main"), "{repository}");

    let server = OpsServer::bind("127.0.0.1:0".parse().unwrap())
        .await
        .expect("bind");
    let addr = server.local_addr();
    let state = OpsState {
        metrics: agent.agent.metrics.clone(),
        readiness: agent.agent.readiness.clone(),
        status: Some(board.clone()),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run(state, async {
        let _ = stopped.await;
    }));

    let url = format!("http://{addr}/status");
    let (browser_dom, page) = (browser.clone(), url.clone());
    let dom = tokio::task::spawn_blocking(move || chromium(&browser_dom, &page, &["--dump-dom"]))
        .await
        .expect("chromium task");
    assert!(
        dom.contains("<title>gitops-reverser status</title>"),
        "{dom}"
    );
    assert!(dom.contains(&repository), "the repository is named: {dom}");
    assert!(
        dom.contains(&format!("<code class=\"commit\">{pushed}</code>")),
        "the pushed commit is shown: {dom}"
    );
    assert!(
        dom.contains("<span class=\"author\">unknown (unattributed) &lt;"),
        "the open window's author is shown: {dom}"
    );
    assert!(
        dom.contains(": 1 file in <code>clusters/dev</code>"),
        "the open window's size and folder are shown: {dom}"
    );
    assert!(
        dom.contains("<td class=\"name\">shop/dev</td>"),
        "the destination is listed: {dom}"
    );
    assert!(dom.contains(&env.url()), "the URL as configured: {dom}");

    let json_url = format!("http://{addr}/status.json");
    let (browser_json, page) = (browser.clone(), json_url);
    let json_dom =
        tokio::task::spawn_blocking(move || chromium(&browser_json, &page, &["--dump-dom"]))
            .await
            .expect("chromium task");
    assert!(
        json_dom.contains(&format!("\"commit\": \"{pushed}\"")),
        "{json_dom}"
    );

    let shot_dir = tempfile::TempDir::new().expect("dir");
    let shot = shot_dir.path().join("status.png");
    let arg = format!("--screenshot={}", shot.display());
    let (browser_shot, page) = (browser, url);
    tokio::task::spawn_blocking(move || chromium(&browser_shot, &page, &[&arg]))
        .await
        .expect("chromium task");
    let png = std::fs::read(&shot).expect("the screenshot was written");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    if let Some(keep) = std::env::var_os(SCREENSHOT_ENV) {
        std::fs::copy(&shot, PathBuf::from(keep)).expect("screenshot kept");
    }

    let _ = stop.send(());
    serving.await.expect("served").expect("server ran");

    // The resources' status says the same (#15 item 5), written at most every few seconds.
    let status = until_status(&env.client, "gitdestinations", "shop", "dev", |s| {
        s["lastPushedCommit"] == pushed.as_str() && s["openWindows"] == 1
    })
    .await;
    assert_eq!(status["pendingChanges"], 1, "{status}");
    assert!(status["lastPushTime"].is_string(), "{status}");
    assert!(status.get("observed").is_none(), "{status}");
    let repo = until_status(&env.client, "gitrepoconfigs", "shop", "repo", |s| {
        s["reachable"] == true
    })
    .await;
    assert_eq!(repo["url"], env.url(), "the URL as configured: {repo}");
    assert!(repo.get("signingKeyFingerprint").is_none(), "{repo}");
    let rule = until_status(&env.client, "watchrules", "shop", "apps", |s| {
        s["selectedObjects"].is_u64()
    })
    .await;
    assert_eq!(
        rule["selectedObjects"], 2,
        "`before` and the namespace's kube-root-ca.crt (excluded, but selected): {rule}"
    );
    agent.stop().await;
}

async fn set_destination(env: &Env, spec: serde_json::Value) {
    let mut full = json!({"repoRef": {"name": "repo"}, "branch": "main", "folder": FOLDER});
    if let (Some(full), Some(extra)) = (full.as_object_mut(), spec.as_object()) {
        full.extend(extra.clone());
    }
    apply(
        &env.client,
        json!({"apiVersion": "configbutler.ai/v1alpha1", "kind": "GitDestination",
        "metadata": {"name": "dev", "namespace": "shop"}, "spec": full}),
    )
    .await;
}

/// `spec.suspend`: nothing is written while it is true (the condition says `Suspended`); what
/// changed meanwhile lands as one reconcile commit when it is set back to false.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_writes_nothing_and_resume_lands_the_changes_as_one_commit() {
    let env = Env::new().await;
    env.configure().await;
    let agent = env.start("state");
    agent.ready().await;
    env.put_configmap("shop", "web", "1").await;
    until("web written", || env.file("shop", "web").is_some()).await;
    let before = commits(&env.repo);

    set_destination(&env, json!({"suspend": true})).await;
    let suspended = until_condition(
        &env.client,
        "gitdestinations",
        "shop",
        "dev",
        "Suspended",
        "True",
    )
    .await;
    assert_eq!(suspended["reason"], "Suspended");
    let board = agent.agent.board.clone();
    until_report(
        &*board,
        "the destination shown suspended and stopped",
        |r| {
            r.destinations
                .iter()
                .any(|d| d.name == "shop/dev" && d.suspended && d.queue.is_none())
        },
    )
    .await;
    env.put_configmap("shop", "web", "2").await;
    env.put_configmap("shop", "api", "1").await;
    env.configmaps("shop")
        .delete("web", &Default::default())
        .await
        .expect("deleted");
    env.put_configmap("shop", "db", "1").await;
    assert_eq!(
        commits(&env.repo),
        before,
        "nothing written while suspended"
    );

    set_destination(&env, json!({"suspend": false})).await;
    until_condition(
        &env.client,
        "gitdestinations",
        "shop",
        "dev",
        "Suspended",
        "False",
    )
    .await;
    until("the reconcile commit", || commits(&env.repo) > before).await;
    agent.ready().await;
    assert_eq!(commits(&env.repo), before + 1, "one reconcile commit");
    assert_eq!(
        env.subjects()[0],
        "reconcile: 2 added, 0 updated, 1 removed",
        "api and db added, web removed"
    );
    assert!(env.file("shop", "web").is_none());
    assert!(env.file("shop", "db").is_some());
    agent.stop().await;
}

/// `spec.mode: Observe`: the reconcile and every change are decided and reported (status page,
/// `Ready` message) and nothing reaches the repository.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observe_mode_reports_what_it_would_write_and_writes_nothing() {
    let env = Env::new().await;
    env.configure().await;
    set_destination(&env, json!({"mode": "Observe"})).await;
    env.put_configmap("shop", "before", "1").await;
    let agent = env.start("state");
    agent.ready().await;
    let ready = until_condition(
        &env.client,
        "gitdestinations",
        "shop",
        "dev",
        "Ready",
        "True",
    )
    .await;
    assert!(
        ready["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("observes folder"),
        "{ready}"
    );
    env.put_configmap("shop", "web", "1").await;
    env.put_configmap("shop", "web", "2").await;
    let board = agent.agent.board.clone();
    let web = |c: &&gitops_reverser::ops::status::WouldWriteChange| {
        c.summary.ends_with("v1 ConfigMap shop/web")
    };
    let report = until_report(&*board, "both changes of web and the reconcile", |r| {
        r.destinations.iter().any(|d| {
            d.would_write
                .as_ref()
                .is_some_and(|w| w.reconcile.is_some() && w.recent.iter().filter(web).count() == 2)
        })
    })
    .await;
    let destination = &report.destinations[0];
    assert_eq!(destination.mode, "Observe");
    let would = destination.would_write.as_ref().expect("observed");
    assert_eq!(
        would.reconcile.as_deref(),
        Some("reconcile: 1 added, 0 updated, 0 removed"),
        "the reconcile would add `before`"
    );
    assert_eq!(would.recent[0].summary, "update v1 ConfigMap shop/web");
    assert_eq!(would.recent[1].summary, "create v1 ConfigMap shop/web");
    assert_eq!(
        would.recent[0].path,
        format!("{FOLDER}/shop/core/configmaps/web.yaml")
    );
    assert_eq!(destination.events.get("written"), Some(&would.changes));
    let html = report.to_html();
    assert!(
        html.contains(&format!("would have written {} changes", would.changes)),
        "{html}"
    );
    let status = until_status(&env.client, "gitdestinations", "shop", "dev", |s| {
        s["observed"]["changes"] == would.changes
    })
    .await;
    assert_eq!(
        status["observed"]["reconcile"],
        "reconcile: 1 added, 0 updated, 0 removed"
    );
    assert_eq!(
        status["observed"]["recent"][0],
        format!("update v1 ConfigMap shop/web ({FOLDER}/shop/core/configmaps/web.yaml)")
    );
    assert!(status.get("lastPushedCommit").is_none(), "{status}");
    assert_eq!(commits(&env.repo), 0, "nothing written to the repository");
    agent.stop().await;
    assert_eq!(commits(&env.repo), 0, "nor at shutdown");
}
