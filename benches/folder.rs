//! Indexing a destination folder (issue #13: 10,000 documents in 2,000 files under 1 s, under
//! 200 bytes held per document), and bringing the index forward after one file changed.
//! Run: `cargo bench --bench folder`. The memory figure is printed once, before the timings.

use gitops_reverser::folder::{FileVersion, FolderIndex};
use std::collections::BTreeMap;
use std::sync::LazyLock;

#[global_allocator]
static ALLOCATOR: cap::Cap<std::alloc::System> = cap::Cap::new(std::alloc::System, usize::MAX);

const FILES: usize = 2_000;
const PER_FILE: usize = 5;

fn document(file: usize, doc: usize) -> String {
    let i = file * PER_FILE + doc;
    if doc.is_multiple_of(2) {
        format!(
            "# ConfigMap {i}: settings read at start.\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings-{i}\n  labels:\n    app.kubernetes.io/part-of: shop\n  annotations:\n    configbutler.ai/content-hash: sha256:{i:064x}\ndata:\n  mode: fast   # or safe\n  retries: '3'\n  url: https://shop.example.com/api/v1/{i}\n"
        )
    } else {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web-{i}\n  namespace: team-{}\nspec:\n  replicas: 2\n  selector:\n    matchLabels:\n      app: web-{i}\n  template:\n    metadata:\n      labels:\n        app: web-{i}\n    spec:\n      containers:\n        - name: web\n          image: ghcr.io/example/web:1.{i}\n          ports:\n            - containerPort: 8080\n          resources:\n            requests: {{cpu: 100m, memory: 64Mi}}\n",
            file % 20
        )
    }
}

/// 2,000 files of 5 documents under 20 folders, each folder with a kustomization giving a
/// namespace to the ConfigMaps.
static FOLDER: LazyLock<BTreeMap<String, Vec<u8>>> = LazyLock::new(|| {
    let mut files = BTreeMap::new();
    for dir in 0..20 {
        let resources: String = (0..FILES / 20)
            .map(|f| format!("  - app-{}.yaml\n", dir * (FILES / 20) + f))
            .collect();
        files.insert(
            format!("clusters/prod/team-{dir}/kustomization.yaml"),
            format!("namespace: team-{dir}\nresources:\n{resources}").into_bytes(),
        );
    }
    for file in 0..FILES {
        let text: Vec<String> = (0..PER_FILE).map(|d| document(file, d)).collect();
        files.insert(
            format!("clusters/prod/team-{}/app-{file}.yaml", file / (FILES / 20)),
            text.join("---\n").into_bytes(),
        );
    }
    files
});

fn version(path: &str) -> FileVersion {
    let mut v = [0u8; 20];
    for (i, b) in path.bytes().enumerate() {
        v[i % 20] = v[i % 20].wrapping_mul(31).wrapping_add(b);
    }
    v
}

fn build() -> FolderIndex {
    let files = &*FOLDER;
    FolderIndex::build(
        "clusters/prod",
        files.keys().map(|p| (p.clone(), version(p))),
        &|p| files.get(p).cloned(),
    )
}

fn main() {
    LazyLock::force(&FOLDER);
    let before = ALLOCATOR.allocated();
    let index = build();
    let held = ALLOCATOR.allocated() - before;
    println!(
        "index of {} documents in {} files: {} bytes held, {} bytes per document",
        index.len(),
        FOLDER.len(),
        held,
        held / index.len().max(1)
    );
    assert_eq!(index.len(), FILES * PER_FILE);
    drop(index);
    divan::main();
}

/// The whole folder indexed from its files.
#[divan::bench(sample_count = 10)]
fn index_10k_documents_in_2k_files() -> FolderIndex {
    build()
}

/// One file changed: the index brought forward (what a worker does after each commit).
#[divan::bench(sample_count = 20)]
fn update_after_one_file_changed(bencher: divan::Bencher) {
    let index = build();
    let files = &*FOLDER;
    let changed = "clusters/prod/team-3/app-300.yaml".to_string();
    bencher.bench_local(|| {
        let mut next = index.clone();
        next.update([(changed.clone(), Some([7u8; 20]))], &|p| {
            files.get(p).cloned()
        });
        next
    });
}
