//! Watch streams: newline-delimited JSON events from a resourceVersion (or from a snapshot), with
//! selector transitions, bookmarks, timeouts, `410 Gone`, and the knobs that end streams early.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::catalogue::ResourceInfo;
use crate::errors::ApiError;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::server::{Shared, present};
use crate::store::{Event, EventType};
use crate::table;

/// A response body fed by a channel (one chunk per event).
pub struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

/// Where a watch starts.
#[derive(Debug, Clone)]
pub enum Start {
    /// Synthetic ADDED events for the current state first; with `end_bookmark`, then the
    /// `k8s.io/initial-events-end` bookmark.
    Snapshot { end_bookmark: bool },
    /// Events after this resourceVersion.
    After(u64),
}

/// What a watch request asked for.
#[derive(Debug, Clone)]
pub struct WatchSpec {
    pub res: ResourceInfo,
    pub version: String,
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub start: Start,
    pub bookmarks: bool,
    pub timeout: Duration,
    pub table: bool,
    /// Send PartialObjectMetadata objects.
    pub metadata_only: bool,
}

impl WatchSpec {
    fn in_scope(&self, e: &Event) -> bool {
        *e.group == *self.res.group
            && *e.plural == *self.res.plural
            && self
                .namespace
                .as_deref()
                .is_none_or(|ns| ns == &*e.namespace)
    }

    fn matches(&self, obj: &Value) -> bool {
        self.labels.matches_object(obj) && self.fields.matches(obj)
    }

    /// The event a client of this watch sees, if any (objects leaving the selection are DELETED,
    /// objects entering it ADDED).
    fn translate(&self, e: &Event) -> Option<EventType> {
        if !self.in_scope(e) {
            return None;
        }
        let now = self.matches(&e.object);
        let before = e.prev.as_deref().is_some_and(|p| self.matches(p));
        match e.type_ {
            EventType::Added => now.then_some(EventType::Added),
            EventType::Deleted => (now || before).then_some(EventType::Deleted),
            EventType::Modified => match (before, now) {
                (true, true) => Some(EventType::Modified),
                (false, true) => Some(EventType::Added),
                (true, false) => Some(EventType::Deleted),
                (false, false) => None,
            },
        }
    }

    fn encode(&self, type_: &str, obj: &Value) -> Bytes {
        let object = if self.table && type_ != "BOOKMARK" && type_ != "ERROR" {
            let rv = obj["metadata"]["resourceVersion"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            table::table(&self.res, &[Arc::new(obj.clone())], rv, None)
        } else if self.metadata_only && type_ != "BOOKMARK" && type_ != "ERROR" {
            table::partial(obj)
        } else {
            obj.clone()
        };
        let mut line =
            serde_json::to_vec(&json!({"type": type_, "object": object})).unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rv.to_string(), "creationTimestamp": null});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj = json!({"kind": self.res.kind, "apiVersion": self.res.api_version(&self.version), "metadata": meta});
        self.encode("BOOKMARK", &obj)
    }

    fn error(&self, e: &ApiError) -> Bytes {
        self.encode("ERROR", &e.to_status())
    }
}

/// Start a watch; the returned body streams its events until it ends.
pub fn start(shared: Arc<Shared>, spec: WatchSpec) -> ChannelBody {
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(run(shared, spec, tx));
    ChannelBody { rx }
}

async fn run(shared: Arc<Shared>, spec: WatchSpec, tx: mpsc::Sender<Bytes>) {
    let mut rv_rx = shared.rv_tx.subscribe();
    let mut drop_rx = shared.faults.drop_signal();
    let mut expire_rx = shared.faults.expiry_signal();
    expire_rx.borrow_and_update();
    let mut shutdown = shared.shutdown_rx.clone();
    rv_rx.borrow_and_update();
    drop_rx.borrow_and_update();
    let deadline = tokio::time::sleep(spec.timeout);
    tokio::pin!(deadline);
    let mut bookmark_timer = tokio::time::interval(shared.bookmark_interval);
    bookmark_timer.tick().await;

    // The starting point, under the store lock.
    let (initial, mut last) = {
        let store = shared.lock();
        match &spec.start {
            Start::Snapshot { end_bookmark } => {
                let ns = spec.namespace.as_deref();
                let mut out: Vec<Bytes> = store
                    .snapshot(&spec.res, ns)
                    .iter()
                    .filter(|o| spec.matches(o))
                    .map(|o| spec.encode("ADDED", &present(&spec.res, &spec.version, o, false)))
                    .collect();
                if *end_bookmark {
                    out.push(spec.bookmark(store.resource_version(), true));
                }
                (out, store.resource_version())
            }
            Start::After(rv) => match store.events_since(*rv) {
                Ok(_) => (vec![], *rv),
                Err(e) => (vec![spec.error(&e)], u64::MAX),
            },
        }
    };
    for chunk in initial {
        if tx.send(chunk).await.is_err() {
            return;
        }
    }
    if last == u64::MAX {
        return;
    }
    loop {
        // Deliver everything after `last`.
        let batch = {
            let store = shared.lock();
            let batch = store.events_since(last);
            let now = store.resource_version();
            if batch.is_ok() {
                last = now;
            }
            batch
        };
        match batch {
            Ok(events) => {
                for e in events {
                    if let Some(t) = spec.translate(&e) {
                        let obj = present(&spec.res, &spec.version, &e.object, false);
                        if tx.send(spec.encode(t.as_str(), &obj)).await.is_err() {
                            return;
                        }
                    }
                }
            }
            Err(e) => {
                let _ = tx.send(spec.error(&e)).await;
                return;
            }
        }
        tokio::select! {
            changed = rv_rx.changed() => if changed.is_err() { return },
            _ = drop_rx.changed() => return,
            _ = expire_rx.changed() => {
                let oldest = shared.lock().oldest_watchable();
                let _ = tx.send(spec.error(&ApiError::expired(last, oldest.max(last) + 1))).await;
                return;
            }
            _ = shutdown.changed() => return,
            _ = &mut deadline => return,
            _ = tx.closed() => return,
            _ = bookmark_timer.tick() => {
                if spec.bookmarks && tx.send(spec.bookmark(last, false)).await.is_err() {
                    return;
                }
            }
        }
    }
}
