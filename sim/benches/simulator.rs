//! The simulator under load: one watcher served while 10,000 objects are created through
//! kube-rs, and a list of 10,000 objects. It must never be the bottleneck of the agent's benchmarks.

use std::sync::LazyLock;

use divan::counter::ItemsCount;
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use kubesim::{SimConfig, SimHandle, Simulator};
use serde_json::json;

fn main() {
    divan::main();
}

const N: usize = 10_000;
/// Requests in flight while creating (a busy controller's worth).
const CONCURRENCY: usize = 16;

static RT: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
});

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "bench", "tier": "backend"}, "annotations": {"note": "a realistic small object"}},
        "data": {"config.yaml": "key: value\nother: 42\n", "mode": "fast"}
    }))
    .expect("configmap")
}

async fn create_all(api: &Api<ConfigMap>, prefix: &str) {
    stream::iter(0..N)
        .map(|i| {
            let api = api.clone();
            let name = format!("{prefix}-{i}");
            async move {
                api.create(&PostParams::default(), &cm(&name))
                    .await
                    .map(|_| ())
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await
        .expect("every create succeeds");
}

async fn start() -> (SimHandle, Api<ConfigMap>) {
    let config = SimConfig {
        namespace_objects: false,
        ..SimConfig::default()
    };
    let sim = Simulator::start(config).await.expect("simulator");
    let api = Api::namespaced(sim.client().await.expect("client"), "default");
    (sim, api)
}

/// 10,000 creates while one watcher receives every ADDED event (the time until it has all).
#[divan::bench(sample_count = 3, sample_size = 1)]
fn watch_while_creating_10k(bencher: divan::Bencher) {
    bencher.counter(ItemsCount::new(N)).bench_local(|| {
        RT.block_on(async {
            let (sim, api) = start().await;
            let rv = sim.resource_version().to_string();
            let mut events = api
                .watch(&WatchParams::default(), &rv)
                .await
                .expect("watch")
                .boxed();
            let watcher = tokio::spawn(async move {
                let mut added = 0;
                while added < N {
                    match events
                        .try_next()
                        .await
                        .expect("watch stream")
                        .expect("stream open")
                    {
                        WatchEvent::Added(_) => added += 1,
                        WatchEvent::Error(e) => panic!("watch error {e:?}"),
                        _ => {}
                    }
                }
            });
            create_all(&api, "w").await;
            watcher.await.expect("watcher saw every object");
        })
    });
}

static LISTED: LazyLock<(SimHandle, Api<ConfigMap>)> = LazyLock::new(|| {
    RT.block_on(async {
        let (sim, api) = start().await;
        create_all(&api, "l").await;
        (sim, api)
    })
});

/// One LIST of 10,000 objects, decoded by kube-rs.
#[divan::bench(sample_count = 10, sample_size = 1)]
fn list_10k(bencher: divan::Bencher) {
    let (_, api) = &*LISTED;
    bencher.counter(ItemsCount::new(N)).bench_local(|| {
        RT.block_on(async {
            let list = api.list(&ListParams::default()).await.expect("list");
            assert_eq!(list.items.len(), N);
        })
    });
}
