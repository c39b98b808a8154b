//! `kube::runtime::watcher` against the simulator: every final state is seen across creates,
//! updates, deletes, a dropped connection and a forced `410 Gone`, with list-watch and streaming lists.

use std::collections::BTreeMap;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event};
use serde_json::json;

use crate::support::*;

type State = BTreeMap<String, String>;

/// A consumer of watcher events that keeps name → data["v"], swapping in relists at InitDone.
struct Mirror {
    state: State,
    relist: Option<State>,
    inits: usize,
    errors: Vec<String>,
}

impl Mirror {
    fn new() -> Self {
        Mirror {
            state: State::new(),
            relist: None,
            inits: 0,
            errors: vec![],
        }
    }

    fn apply(&mut self, e: Event<ConfigMap>) {
        let entry = |cm: &ConfigMap| {
            (
                cm.metadata.name.clone().unwrap_or_default(),
                cm.data
                    .as_ref()
                    .and_then(|d| d.get("v").cloned())
                    .unwrap_or_default(),
            )
        };
        match e {
            Event::Init => {
                self.inits += 1;
                self.relist = Some(State::new());
            }
            Event::InitApply(cm) => {
                let (k, v) = entry(&cm);
                if let Some(r) = self.relist.as_mut() {
                    r.insert(k, v);
                }
            }
            Event::InitDone => {
                if let Some(r) = self.relist.take() {
                    self.state = r;
                }
            }
            Event::Apply(cm) => {
                let (k, v) = entry(&cm);
                self.state.insert(k, v);
            }
            Event::Delete(cm) => {
                self.state.remove(&entry(&cm).0);
            }
        }
    }
}

fn cm(name: &str, v: &str) -> ConfigMap {
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": {"watched": "yes"}}, "data": {"v": v}}),
    )
    .unwrap()
}

fn expect(pairs: &[(&str, &str)]) -> State {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn until<S>(stream: &mut S, mirror: &mut Mirror, want: &State)
where
    S: futures::Stream<Item = Result<Event<ConfigMap>, watcher::Error>> + Unpin,
{
    within(async {
        while mirror.state != *want || mirror.relist.is_some() {
            // The watcher reports a 410 as an error item, then relists on the next poll.
            match stream.next().await.expect("stream ended") {
                Ok(e) => mirror.apply(e),
                Err(e) => mirror.errors.push(e.to_string()),
            }
        }
    })
    .await;
}

async fn scenario(config: watcher::Config) {
    let sim = sim().await;
    let client = sim.client().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    api.create(&PostParams::default(), &cm("before", "0"))
        .await
        .unwrap();
    let mut stream = watcher::watcher(api.clone(), config.labels("watched=yes")).boxed();
    let mut m = Mirror::new();
    until(&mut stream, &mut m, &expect(&[("before", "0")])).await;

    api.create(&PostParams::default(), &cm("a", "1"))
        .await
        .unwrap();
    api.create(&PostParams::default(), &cm("b", "1"))
        .await
        .unwrap();
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "2"}})),
    )
    .await
    .unwrap();
    api.delete("before", &DeleteParams::default())
        .await
        .unwrap();
    until(&mut stream, &mut m, &expect(&[("a", "2"), ("b", "1")])).await;
    let inits_before = m.inits;

    // A dropped connection: the watcher re-watches from where it was and misses nothing.
    sim.faults().drop_watches();
    api.patch(
        "b",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "3"}})),
    )
    .await
    .unwrap();
    api.create(&PostParams::default(), &cm("c", "1"))
        .await
        .unwrap();
    until(
        &mut stream,
        &mut m,
        &expect(&[("a", "2"), ("b", "3"), ("c", "1")]),
    )
    .await;

    // A forced 410: the watcher must relist, and still sees every final state.
    sim.faults().expire_watches();
    api.delete("a", &DeleteParams::default()).await.unwrap();
    api.patch(
        "c",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "9"}})),
    )
    .await
    .unwrap();
    // Leaving the selector looks like a delete to the watcher.
    api.patch(
        "b",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"watched": "no"}}})),
    )
    .await
    .unwrap();
    until(&mut stream, &mut m, &expect(&[("c", "9")])).await;
    api.create(&PostParams::default(), &cm("d", "1"))
        .await
        .unwrap();
    until(&mut stream, &mut m, &expect(&[("c", "9"), ("d", "1")])).await;
    assert!(m.inits > inits_before, "the 410 made the watcher relist");
    assert!(
        m.errors.iter().all(|e| e.contains("Expired")),
        "only the forced 410: {:?}",
        m.errors
    );
    let watches = sim
        .audit_log()
        .iter()
        .filter(|a| a.verb == "watch" && a.resource == "configmaps")
        .count();
    assert!(
        watches >= 3,
        "the watcher re-watched after the drop and the 410 ({watches} watches)"
    );
}

#[tokio::test]
async fn list_watch_sees_every_final_state_across_drops_and_gone() {
    scenario(watcher::Config::default()).await;
}

#[tokio::test]
async fn streaming_list_sees_every_final_state_across_drops_and_gone() {
    scenario(watcher::Config::default().streaming_lists()).await;
}

#[tokio::test]
async fn watch_from_a_compacted_resource_version_is_gone_and_bookmarks_arrive() {
    let sim = sim_with(kubesim::SimConfig {
        bookmark_interval: std::time::Duration::from_millis(50),
        ..Default::default()
    })
    .await;
    let client = sim.client().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let first = api
        .create(&PostParams::default(), &cm("x", "1"))
        .await
        .unwrap();
    let rv = first.metadata.resource_version.clone().unwrap();
    api.patch(
        "x",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "2"}})),
    )
    .await
    .unwrap();
    sim.faults().compact_history();
    let (code, body) = raw(
        &sim,
        "GET",
        &format!("/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv}"),
        ADMIN,
        "",
        "",
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(body["type"], "ERROR");
    assert_eq!(body["object"]["code"], 410);
    assert_eq!(body["object"]["reason"], "Expired");

    // Bookmarks, the initial-events-end bookmark, and timeoutSeconds ending the stream.
    let now = sim.resource_version();
    let text = raw_text(&sim, "/api/v1/namespaces/default/configmaps?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=1").await;
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let names: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "ADDED")
        .map(|e| e["object"]["metadata"]["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"x") && names.contains(&"kube-root-ca.crt"));
    let end = events
        .iter()
        .position(|e| e["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"] == "true")
        .unwrap();
    assert_eq!(events[end]["type"], "BOOKMARK");
    assert_eq!(
        events[end]["object"]["metadata"]["resourceVersion"],
        now.to_string()
    );
    assert!(
        events[end + 1..].iter().any(|e| e["type"] == "BOOKMARK"),
        "a periodic bookmark within the second"
    );
}

#[tokio::test]
async fn metadata_watcher_and_metadata_lists() {
    use kube::core::PartialObjectMeta;
    let sim = sim().await;
    let api: Api<ConfigMap> = Api::namespaced(sim.client().await.unwrap(), "default");
    api.create(&PostParams::default(), &cm("m1", "1"))
        .await
        .unwrap();
    let list = api
        .list_metadata(&kube::api::ListParams::default().labels("watched=yes"))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 1);
    assert_eq!(list.items[0].metadata.name.as_deref(), Some("m1"));
    let meta_api: Api<PartialObjectMeta<ConfigMap>> =
        Api::namespaced(sim.client().await.unwrap(), "default");
    let mut stream =
        watcher::watcher(meta_api, watcher::Config::default().labels("watched=yes")).boxed();
    let mut names = Vec::new();
    api.create(&PostParams::default(), &cm("m2", "1"))
        .await
        .unwrap();
    within(async {
        while !names.contains(&"m2".to_string()) {
            let e: Event<PartialObjectMeta<ConfigMap>> = stream.next().await.unwrap().unwrap();
            if let Event::Apply(o) | Event::InitApply(o) = e {
                names.push(o.metadata.name.unwrap());
            }
        }
    })
    .await;
    assert!(names.contains(&"m1".to_string()));
}
