//! Operating the agent: Prometheus metrics, the `/metrics`, `/healthz` and `/readyz` endpoints,
//! the readiness flag that the initial reconcile sets, and the status page (`/status`).

pub mod metrics;
pub mod server;
pub mod status;

pub use metrics::{EventDecision, Format, Metrics, WorkerSample};
pub use server::{DEFAULT_METRICS_ADDR, OpsError, OpsServer, OpsState, router, serve};

use std::sync::{Arc, Mutex};

/// Whether the agent is ready, and why not. Cheap to clone; every clone shares one flag.
/// Starts not ready ("starting").
#[derive(Clone, Debug)]
pub struct Readiness {
    /// `None`: ready; `Some(reason)`: not ready.
    state: Arc<Mutex<Option<String>>>,
}

impl Default for Readiness {
    fn default() -> Self {
        Self::new()
    }
}

impl Readiness {
    pub fn new() -> Self {
        Self {
            state: Arc::new(Mutex::new(Some("starting".into()))),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        // The state is one value replaced whole; a poisoned lock still holds a valid one.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ready: the initial reconcile of every destination has finished or reported why it
    /// cannot.
    pub fn set_ready(&self) {
        *self.lock() = None;
    }

    /// Not ready, with a short reason that `/readyz` returns.
    pub fn set_not_ready(&self, reason: impl Into<String>) {
        *self.lock() = Some(reason.into());
    }

    /// `Ok` when ready, else the reason.
    pub fn check(&self) -> Result<(), String> {
        match &*self.lock() {
            None => Ok(()),
            Some(reason) => Err(reason.clone()),
        }
    }

    pub fn is_ready(&self) -> bool {
        self.check().is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_starts_not_ready_and_is_shared_by_clones() {
        let readiness = Readiness::new();
        let clone = readiness.clone();
        assert_eq!(clone.check(), Err("starting".to_string()));
        readiness.set_ready();
        assert!(clone.is_ready());
        readiness.set_not_ready("destination shop/web: listing failed");
        assert_eq!(
            clone.check(),
            Err("destination shop/web: listing failed".to_string())
        );
    }
}
