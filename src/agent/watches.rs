//! Dynamic watches: one `kube::runtime::watcher` per selected (resource, scope), started and
//! stopped as the plan changes, turning relists into the deletes a dropped watch missed.

use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::watcher;
use std::collections::{BTreeMap, HashSet};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use crate::config::WatchKey;

/// What a watch reports.
#[derive(Debug)]
pub enum WatchEvent {
    /// The object exists with this content (added, modified, or seen in a (re)list).
    Upsert {
        key: WatchKey,
        object: Box<DynamicObject>,
        initial: bool,
    },
    /// The object is gone. After a relist this is synthesized for objects the watch knew and
    /// the new listing no longer has (deleted while the watch was down).
    Delete {
        key: WatchKey,
        object: Box<DynamicObject>,
    },
    /// A complete listing has been delivered (after the first list and after each relist).
    Listed { key: WatchKey, objects: usize },
    /// The watch failed; it retries with backoff. Nothing is deleted because of it.
    Failed { key: WatchKey, error: String },
}

/// Starts and stops watches; every watch sends into one channel.
pub struct WatchManager {
    client: kube::Client,
    tx: mpsc::Sender<WatchEvent>,
    tasks: BTreeMap<WatchKey, JoinHandle<()>>,
    streaming_lists: bool,
}

impl WatchManager {
    pub fn new(client: kube::Client, tx: mpsc::Sender<WatchEvent>, streaming_lists: bool) -> Self {
        Self {
            client,
            tx,
            tasks: BTreeMap::new(),
            streaming_lists,
        }
    }

    /// Makes the running watches exactly `wanted`.
    pub fn sync<'a>(&mut self, wanted: impl IntoIterator<Item = &'a WatchKey>) {
        let wanted: HashSet<&WatchKey> = wanted.into_iter().collect();
        self.tasks.retain(|key, task| {
            let keep = wanted.contains(key) && !task.is_finished();
            if !keep {
                tracing::info!(watch = %key, "stopping watch");
                task.abort();
            }
            keep
        });
        for key in wanted {
            if !self.tasks.contains_key(key) {
                tracing::info!(watch = %key, "starting watch");
                let task = tokio::spawn(run_watch(
                    self.client.clone(),
                    key.clone(),
                    self.tx.clone(),
                    self.streaming_lists,
                ));
                self.tasks.insert(key.clone(), task);
            }
        }
    }

    /// The watches running now.
    pub fn keys(&self) -> Vec<WatchKey> {
        self.tasks.keys().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
}

impl Drop for WatchManager {
    fn drop(&mut self) {
        for task in self.tasks.values() {
            task.abort();
        }
    }
}

pub(crate) fn api_for(client: kube::Client, key: &WatchKey) -> Api<DynamicObject> {
    let resource = ApiResource {
        group: key.group.clone(),
        version: key.version.clone(),
        api_version: if key.group.is_empty() {
            key.version.clone()
        } else {
            format!("{}/{}", key.group, key.version)
        },
        kind: key.kind.clone(),
        plural: key.resource.clone(),
    };
    match &key.namespace {
        Some(ns) if key.namespaced => Api::namespaced_with(client, ns, &resource),
        _ => Api::all_with(client, &resource),
    }
}

type ObjectName = (Option<String>, String);

fn name_of(object: &DynamicObject) -> Option<ObjectName> {
    Some((
        object.metadata.namespace.clone(),
        object.metadata.name.clone()?,
    ))
}

async fn run_watch(
    client: kube::Client,
    key: WatchKey,
    tx: mpsc::Sender<WatchEvent>,
    streaming: bool,
) {
    let api = api_for(client, &key);
    let config = if streaming {
        watcher::Config::default().streaming_lists()
    } else {
        watcher::Config::default()
    };
    let mut stream = watcher(api, config).boxed();
    // The objects this watch knows (names only, never whole objects), and those seen in the
    // listing in progress.
    let mut known: HashSet<ObjectName> = HashSet::new();
    let mut listing: Option<HashSet<ObjectName>> = None;
    let mut backoff = std::time::Duration::from_millis(200);
    while let Some(item) = stream.next().await {
        let sent = match item {
            Ok(watcher::Event::Init) => {
                listing = Some(HashSet::new());
                true
            }
            Ok(watcher::Event::InitApply(object)) | Ok(watcher::Event::Apply(object)) => {
                backoff = std::time::Duration::from_millis(200);
                let initial = listing.is_some();
                if let Some(name) = name_of(&object) {
                    if let Some(seen) = listing.as_mut() {
                        seen.insert(name.clone());
                    }
                    known.insert(name);
                }
                tx.send(WatchEvent::Upsert {
                    key: key.clone(),
                    object: Box::new(object),
                    initial,
                })
                .await
                .is_ok()
            }
            Ok(watcher::Event::Delete(object)) => {
                if let Some(name) = name_of(&object) {
                    known.remove(&name);
                }
                tx.send(WatchEvent::Delete {
                    key: key.clone(),
                    object: Box::new(object),
                })
                .await
                .is_ok()
            }
            Ok(watcher::Event::InitDone) => {
                let seen = listing.take().unwrap_or_default();
                let gone: Vec<ObjectName> = known
                    .iter()
                    .filter(|n| !seen.contains(*n))
                    .cloned()
                    .collect();
                let mut ok = true;
                for name in gone {
                    known.remove(&name);
                    tracing::info!(watch = %key, namespace = ?name.0, name = %name.1,
                        "object gone while the watch was down; deleting its file");
                    let object = skeleton(&key, name);
                    ok &= tx
                        .send(WatchEvent::Delete {
                            key: key.clone(),
                            object,
                        })
                        .await
                        .is_ok();
                }
                ok && tx
                    .send(WatchEvent::Listed {
                        key: key.clone(),
                        objects: known.len(),
                    })
                    .await
                    .is_ok()
            }
            Err(e) => {
                let error = e.to_string();
                tracing::warn!(watch = %key, %error, retry_in = ?backoff, "watch failed; retrying");
                let ok = tx
                    .send(WatchEvent::Failed {
                        key: key.clone(),
                        error,
                    })
                    .await
                    .is_ok();
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(std::time::Duration::from_secs(30));
                ok
            }
        };
        if !sent {
            break; // the agent stopped listening
        }
    }
}

/// Just enough of an object to name it in a synthesized delete: apiVersion, kind, name,
/// namespace. The agent keeps names, not contents.
fn skeleton(key: &WatchKey, (namespace, name): ObjectName) -> Box<DynamicObject> {
    let api_version = if key.group.is_empty() {
        key.version.clone()
    } else {
        format!("{}/{}", key.group, key.version)
    };
    let meta = kube::api::ObjectMeta {
        name: Some(name),
        namespace,
        ..Default::default()
    };
    Box::new(DynamicObject {
        types: Some(kube::api::TypeMeta {
            api_version,
            kind: key.kind.clone(),
        }),
        metadata: meta,
        data: serde_json::Value::Null,
    })
}
