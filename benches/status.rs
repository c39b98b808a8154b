//! The status page's costs: rendering `/status` (HTML) and `/status.json` for a large agent
//! (50 repository workers with 20 open windows each, 500 destinations), and what a worker does
//! after every round for the page: listing its open windows (1,000 of them).
//! Run: `cargo bench --bench status`.

use gitops_reverser::git::change::{Change, FileChange};
use gitops_reverser::git::window::{WindowConfig, Windows};
use gitops_reverser::identity::Author;
use gitops_reverser::ops::status::{
    ConditionStatus, DestinationStatus, Fill, PushStatus, StatusReport, WindowStatus, WorkerStatus,
};
use std::sync::LazyLock;
use std::time::Duration;

fn main() {
    divan::main();
}

const WORKERS: usize = 50;
const WINDOWS_PER_WORKER: usize = 20;
const DESTINATIONS: usize = 500;

static REPORT: LazyLock<StatusReport> = LazyLock::new(|| {
    let workers = (0..WORKERS)
        .map(|w| WorkerStatus {
            repository: format!("https://git.example.com/org/repo-{w}#main"),
            queue: Fill {
                depth: w,
                capacity: 10_000,
            },
            open_windows: (0..WINDOWS_PER_WORKER)
                .map(|a| WindowStatus {
                    author: format!("person-{a} <person-{a}@example.com>"),
                    destination: format!("team-{w}/prod"),
                    folder: format!("clusters/prod/team-{w}"),
                    age_seconds: a as u64,
                    files: a + 1,
                })
                .collect(),
            waiting_commits: 3,
            waiting_files: 40,
            last_push: Some(PushStatus {
                at: "2026-12-04T20:00:00Z".into(),
                commit: "0123456789abcdef0123456789abcdef01234567".into(),
                took_ms: 120,
            }),
            reachable: Some(true),
            commits: 1000,
            pushes: 900,
            ..WorkerStatus::default()
        })
        .collect();
    let destinations = (0..DESTINATIONS)
        .map(|d| DestinationStatus {
            name: format!("team-{}/prod-{d}", d % WORKERS),
            url: format!("https://git.example.com/org/repo-{}.git", d % WORKERS),
            repository: format!("https://git.example.com/org/repo-{}#main", d % WORKERS),
            branch: "main".into(),
            folder: format!("clusters/prod/{d}"),
            mode: "Record".into(),
            ready: Some(ConditionStatus {
                status: "True".into(),
                reason: "Ready".into(),
                message: "writes folder".into(),
            }),
            queue: Some(Fill {
                depth: 0,
                capacity: 1024,
            }),
            events: [("written".to_string(), 10), ("exact".to_string(), 90)].into(),
            ..DestinationStatus::default()
        })
        .collect();
    StatusReport {
        generated_at: "2026-12-04T20:00:00Z".into(),
        workers,
        destinations,
        ..StatusReport::default()
    }
});

#[divan::bench]
fn status_html(bencher: divan::Bencher) {
    let report = &*REPORT;
    bencher.bench(|| report.to_html().len());
}

#[divan::bench]
fn status_json(bencher: divan::Bencher) {
    let report = &*REPORT;
    bencher.bench(|| report.to_json().len());
}

/// 1,000 open windows (one per author) of one worker: what it lists after every round.
#[divan::bench]
fn open_windows_1000(bencher: divan::Bencher) {
    let mut windows = Windows::new(WindowConfig {
        quiet: Duration::from_secs(60),
        max_age: Duration::from_secs(600),
        max_changes: 200,
    });
    let now = jiff::Timestamp::now();
    for a in 0..1000 {
        let name = format!("person-{a}");
        windows.add(Change {
            folder: "clusters/prod".into(),
            destination: "team/prod".into(),
            author: Author {
                email: format!("{name}@example.com"),
                name,
            },
            user: None,
            impersonator: None,
            audit_id: None,
            received: now,
            file: FileChange {
                object: None,
                bundle: false,
                path: format!("clusters/prod/shop/core/configmaps/c{a}.yaml"),
                content: Some(b"data: {}\n".to_vec().into()),
                hash: None,
                summary: format!("update v1 ConfigMap shop/c{a}"),
                namespace: Some("shop".into()),
                live: None,
            },
        });
    }
    assert_eq!(windows.open_counts().0, 1000);
    bencher.bench(|| windows.open_windows().len());
}
