//! Snapshot commit of 10,000 and 100,000 small manifests (2 KiB each) through the Git engine,
//! against the same files written to a work tree and committed with `git add -A && git commit`.
//! Run: `cargo bench --bench snapshot` (prints times, the ratio and the engine's peak RSS).

use gitops_reverser::git::store::{Signature, Store};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn main() {
    // `cargo test --benches` passes `--test`/`--bench`; only run the full sizes when benchmarking.
    let quick = std::env::args().any(|a| a == "--test");
    // SNAPSHOT_SIZES=20000,40000 overrides the sizes (for exploring how time scales).
    let custom: Vec<usize> = std::env::var("SNAPSHOT_SIZES")
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_default();
    let sizes: &[usize] = if !custom.is_empty() {
        &custom
    } else if quick {
        &[200]
    } else {
        &[10_000, 100_000]
    };
    let root = std::env::temp_dir().join(format!("gr-snapshot-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    // The engine runs first, in this process, so the peak RSS read below is the engine's.
    let mut engine = Vec::new();
    for &n in sizes {
        let dir = root.join(format!("engine-{n}"));
        engine.push(time_engine(&dir, n));
    }
    let peak = peak_rss_kib();
    println!(
        "snapshot commit, 2 KiB manifests (engine peak RSS {} MiB)",
        peak / 1024
    );
    for (i, &n) in sizes.iter().enumerate() {
        let cli = time_cli(&root.join(format!("cli-{n}")), n);
        let ratio = cli.as_secs_f64() / engine[i].as_secs_f64();
        println!(
            "  {n:>7} files: engine {:>8.2?}  git add+commit {:>8.2?}  ratio {ratio:.1}x",
            engine[i], cli
        );
    }
    let _ = std::fs::remove_dir_all(&root);
}

/// Deterministic 2 KiB manifest number `i`, generated on demand (the input is never held whole).
fn manifest(i: usize) -> (String, Vec<u8>) {
    let ns = format!("ns-{:03}", i % 200);
    let name = format!("cm-{i:06}");
    let mut body = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  annotations:\n    configbutler.ai/content-hash: sha256:{:064x}\n  name: {name}\n  namespace: {ns}\ndata:\n",
        i as u128 * 0x9e37_79b9_7f4a_7c15
    );
    let mut k = 0;
    while body.len() < 2048 - 40 {
        body.push_str(&format!("  key-{k:03}: value-{i:06}-{k:03}-abcdefghij\n"));
        k += 1;
    }
    (
        format!("{ns}/core/configmaps/{name}.yaml"),
        body.into_bytes(),
    )
}

fn time_engine(dir: &Path, n: usize) -> Duration {
    let store = Store::open_dir(dir).expect("store");
    let who = Signature {
        name: "bench".into(),
        email: "bench@example.com".into(),
        time: jiff::Timestamp::now(),
    };
    let start = Instant::now();
    let (commit, stats) = store
        .snapshot(
            None,
            "clusters/prod",
            (0..n).map(manifest),
            |_| false,
            gitops_reverser::git::store::SnapshotCommit {
                agent: &who,
                notes: &[],
                extra: None,
                subject: None,
            },
        )
        .expect("snapshot")
        .expect("a commit");
    store
        .update_ref("refs/heads/main", commit, None)
        .expect("ref");
    let elapsed = start.elapsed();
    assert_eq!(stats.added, n);
    elapsed
}

fn time_cli(dir: &Path, n: usize) -> Duration {
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .current_dir(dir)
            .args(args)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_NAME", "bench")
            .env("GIT_AUTHOR_EMAIL", "bench@example.com")
            .env("GIT_COMMITTER_NAME", "bench")
            .env("GIT_COMMITTER_EMAIL", "bench@example.com")
            .output()
            .expect("git runs");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::create_dir_all(dir).expect("dir");
    git(&["init", "-q", "-b", "main"]);
    // Dump tools write the files and commit them; both steps are timed.
    let start = Instant::now();
    for i in 0..n {
        let (path, bytes) = manifest(i);
        let path = dir.join("clusters/prod").join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("dirs");
        }
        std::fs::write(path, bytes).expect("write");
    }
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "snapshot"]);
    start.elapsed()
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}
