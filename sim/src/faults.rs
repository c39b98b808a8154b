//! Fault knobs tests turn: drop watches, fail the next N requests, add latency, compact the watch
//! history, and delay, reorder or duplicate the batches sent to the audit sink.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

/// Fault state shared by the server and the test's handle.
#[derive(Debug)]
pub struct FaultState {
    inner: Mutex<Inner>,
    drops: watch::Sender<u64>,
    expiries: watch::Sender<u64>,
    audit: Arc<Mutex<AuditFaults>>,
}

/// How the audit sink misbehaves.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AuditFaults {
    /// Extra delay before each batch is sent (batches keep their order).
    pub delay: Duration,
    /// Hold each batch until the next one has been sent (a lone batch goes after
    /// [`REORDER_HOLD`]).
    pub reorder: bool,
    /// Send every batch twice.
    pub duplicate: bool,
}

/// How long a reordered batch waits for a successor.
pub const REORDER_HOLD: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
struct Inner {
    fail_remaining: u32,
    fail_code: u16,
    latency: Duration,
    /// Resources (plural) whose LIST requests fail with this code until cleared.
    failing_lists: std::collections::HashMap<String, u16>,
}

impl Default for FaultState {
    fn default() -> Self {
        FaultState {
            inner: Mutex::new(Inner::default()),
            drops: watch::channel(0).0,
            expiries: watch::channel(0).0,
            audit: Arc::default(),
        }
    }
}

impl FaultState {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// End every open watch stream now.
    pub fn drop_watches(&self) {
        self.drops.send_modify(|n| *n += 1);
    }

    /// Tell every open watch its position expired (an `ERROR` event with `410 Gone`).
    pub fn expire_watches(&self) {
        self.expiries.send_modify(|n| *n += 1);
    }

    /// A receiver that changes whenever open watches are to expire.
    pub fn expiry_signal(&self) -> watch::Receiver<u64> {
        self.expiries.subscribe()
    }

    /// A receiver that changes whenever watches are to be dropped.
    pub fn drop_signal(&self) -> watch::Receiver<u64> {
        self.drops.subscribe()
    }

    /// Make the next `n` resource requests fail with `code` (500 or 429 are the useful ones).
    pub fn fail_next(&self, n: u32, code: u16) {
        let mut i = self.lock();
        i.fail_remaining = n;
        i.fail_code = code;
    }

    /// Make every LIST (not watch) of resource `plural` fail with `code` until cleared with
    /// `None`.
    pub fn fail_lists(&self, plural: &str, code: Option<u16>) {
        let mut i = self.lock();
        match code {
            Some(code) => i.failing_lists.insert(plural.to_string(), code),
            None => i.failing_lists.remove(plural),
        };
    }

    /// The code a LIST of `plural` fails with now, if any.
    pub fn list_failure(&self, plural: &str) -> Option<u16> {
        self.lock().failing_lists.get(plural).copied()
    }

    /// Add this delay before answering each request.
    pub fn set_latency(&self, latency: Duration) {
        self.lock().latency = latency;
    }

    pub fn latency(&self) -> Duration {
        self.lock().latency
    }

    /// The audit sink's knobs, shared with its sender.
    pub fn audit_knobs(&self) -> Arc<Mutex<AuditFaults>> {
        self.audit.clone()
    }

    /// Change the audit sink's knobs.
    pub fn update_audit(&self, f: impl FnOnce(&mut AuditFaults)) {
        f(&mut self.audit.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// Take one injected failure, if any are pending.
    pub fn take_failure(&self) -> Option<u16> {
        let mut i = self.lock();
        if i.fail_remaining == 0 {
            return None;
        }
        i.fail_remaining -= 1;
        Some(i.fail_code)
    }
}
