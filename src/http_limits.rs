//! The bounds every HTTP server of the agent keeps (the attribution webhooks and the operations
//! server): a header-read timeout and a header size limit per connection, a cap on open
//! connections, and a budget of request-body bytes held at once, so that slow or oversized
//! clients get closed or a clear 413/503 instead of growing the process's memory.

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a client has to send a request's headers (from the moment the server waits for
/// them, an idle keep-alive connection included); then the connection is closed.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Bytes of a request head (request line and headers) read at most per connection.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// An HTTP/1 connection builder with the header-read timeout and head size limit.
pub fn http1() -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES);
    builder
}

/// A cap on open connections: past it a new connection is closed at once (before TLS), so a
/// flood of idle or slow clients costs a file descriptor for an instant, not memory.
#[derive(Clone, Debug)]
pub struct ConnectionCap {
    slots: Arc<Semaphore>,
}

impl ConnectionCap {
    pub fn new(connections: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(connections.max(1))),
        }
    }

    /// A slot for one connection (freed when dropped), or `None` when all are taken.
    pub fn admit(&self) -> Option<OwnedSemaphorePermit> {
        self.slots.clone().try_acquire_owned().ok()
    }
}

/// A budget of request-body bytes held at once: read, parsed, or queued for processing.
#[derive(Clone, Debug)]
pub struct BodyBudget {
    bytes: Arc<Semaphore>,
    total: usize,
}

/// The body budget is spent: the request is refused (503) and may be retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the server is already holding request bodies up to its budget of {total} bytes; this one \
     needs {wanted}: retry shortly"
)]
pub struct OverBudget {
    pub wanted: usize,
    pub total: usize,
}

impl BodyBudget {
    pub fn new(total: usize) -> Self {
        let total = total.clamp(1, u32::MAX as usize);
        Self {
            bytes: Arc::new(Semaphore::new(total)),
            total,
        }
    }

    pub fn total(&self) -> usize {
        self.total
    }

    /// Reserves `bytes` (given back when the permit is dropped), without waiting.
    pub fn reserve(&self, bytes: usize) -> Result<OwnedSemaphorePermit, OverBudget> {
        let over = OverBudget {
            wanted: bytes,
            total: self.total,
        };
        let n = u32::try_from(bytes.max(1)).map_err(|_| over)?;
        self.bytes
            .clone()
            .try_acquire_many_owned(n)
            .map_err(|_| over)
    }

    /// Bytes reserved now.
    pub fn held(&self) -> usize {
        self.total - self.bytes.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_refuses_past_its_total_and_frees_on_drop() {
        let budget = BodyBudget::new(100);
        let a = budget.reserve(60).unwrap();
        assert_eq!(budget.held(), 60);
        let refused = budget.reserve(50).unwrap_err();
        assert_eq!(refused.wanted, 50);
        assert!(refused.to_string().contains("budget of 100 bytes"));
        drop(a);
        assert_eq!(budget.held(), 0);
        let _b = budget.reserve(100).unwrap();
        assert!(budget.reserve(1).is_err());
        assert!(BodyBudget::new(10).reserve(usize::MAX).is_err());
    }

    #[test]
    fn the_cap_admits_up_to_its_number() {
        let cap = ConnectionCap::new(2);
        let (a, b) = (cap.admit(), cap.admit());
        assert!(a.is_some() && b.is_some());
        assert!(cap.admit().is_none());
        drop(a);
        assert!(cap.admit().is_some());
    }
}
