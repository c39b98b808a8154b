//! What one destination's task reports while it runs: its events by decision, the changes
//! waiting for their author and, in `Observe` mode, what it would have written. The task writes
//! (atomics, and a short lock for the observed changes); the status page and the status writer
//! read. Nothing here waits for a worker.

use crate::ops::metrics::EventDecision;
use crate::ops::status::{WouldWriteChange, WouldWriteStatus};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// The would-be changes an observing destination keeps to show (the newest).
pub const RECENT_OBSERVED: usize = 20;

/// One destination's live numbers. Shared behind an `Arc` by its task and the readers.
#[derive(Debug, Default)]
pub struct DestinationLive {
    decisions: [AtomicU64; EventDecision::ALL.len()],
    awaiting_attribution: AtomicU64,
    observed: Mutex<Observed>,
    /// Objects each rule selected at the last reconcile.
    selected: Mutex<BTreeMap<crate::config::RuleKey, u64>>,
}

#[derive(Debug, Default)]
struct Observed {
    changes: u64,
    recent: VecDeque<WouldWriteChange>,
    reconcile: Option<String>,
}

impl DestinationLive {
    fn observed(&self) -> std::sync::MutexGuard<'_, Observed> {
        // Each update leaves the record whole; a poisoned lock still holds a valid one.
        self.observed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts one event's decision.
    pub fn record(&self, decision: EventDecision) {
        if let Some(i) = EventDecision::ALL.iter().position(|d| *d == decision) {
            self.decisions[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Events by decision label (every decision, zeros included).
    pub fn events(&self) -> BTreeMap<String, u64> {
        EventDecision::ALL
            .iter()
            .zip(&self.decisions)
            .map(|(d, n)| (d.as_str().to_string(), n.load(Ordering::Relaxed)))
            .collect()
    }

    /// A change started waiting for its author.
    pub fn attribution_started(&self) {
        self.awaiting_attribution.fetch_add(1, Ordering::Relaxed);
    }

    /// A change's author is known (or its wait is over) and it went to the worker.
    pub fn attribution_finished(&self) {
        let _ = self
            .awaiting_attribution
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// Changes waiting for their author now.
    pub fn awaiting_attribution(&self) -> u64 {
        self.awaiting_attribution.load(Ordering::Relaxed)
    }

    /// In `Observe` mode: a change that would have been committed (`summary` is its commit
    /// subject).
    pub fn observe(&self, at: jiff::Timestamp, summary: String, path: String) {
        let mut observed = self.observed();
        observed.changes += 1;
        if observed.recent.len() == RECENT_OBSERVED {
            observed.recent.pop_back();
        }
        observed.recent.push_front(WouldWriteChange {
            at: at.to_string(),
            summary,
            path,
        });
    }

    /// In `Observe` mode: what the reconcile would have committed.
    pub fn observe_reconcile(&self, outcome: String) {
        self.observed().reconcile = Some(outcome);
    }

    /// The objects each rule selected, as the reconcile listed them.
    pub fn set_selected(&self, counts: BTreeMap<crate::config::RuleKey, u64>) {
        *self.selected.lock().unwrap_or_else(|p| p.into_inner()) = counts;
    }

    /// Objects each rule selected at the last reconcile.
    pub fn selected(&self) -> BTreeMap<crate::config::RuleKey, u64> {
        self.selected
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// What would have been written so far (`None` when nothing was observed, as in `Record`
    /// mode).
    pub fn would_write(&self) -> Option<WouldWriteStatus> {
        let observed = self.observed();
        if observed.changes == 0 && observed.reconcile.is_none() {
            return None;
        }
        Some(WouldWriteStatus {
            changes: observed.changes,
            recent: observed.recent.iter().cloned().collect(),
            reconcile: observed.reconcile.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_attribution_and_observed_changes_are_counted() {
        let live = DestinationLive::default();
        live.record(EventDecision::Written);
        live.record(EventDecision::Written);
        live.record(EventDecision::Near);
        let events = live.events();
        assert_eq!(events["written"], 2);
        assert_eq!(events["near"], 1);
        assert_eq!(events["deleted"], 0);

        live.attribution_started();
        live.attribution_started();
        live.attribution_finished();
        assert_eq!(live.awaiting_attribution(), 1);
        live.attribution_finished();
        live.attribution_finished();
        assert_eq!(live.awaiting_attribution(), 0, "never below zero");

        assert_eq!(live.would_write(), None);
        let at = jiff::Timestamp::UNIX_EPOCH;
        for n in 0..RECENT_OBSERVED + 5 {
            live.observe(
                at,
                format!("create v1 ConfigMap shop/c{n}"),
                format!("p{n}"),
            );
        }
        live.observe_reconcile("reconcile: 1 added, 0 updated, 0 removed".into());
        let would = live.would_write().unwrap();
        assert_eq!(would.changes, (RECENT_OBSERVED + 5) as u64);
        assert_eq!(would.recent.len(), RECENT_OBSERVED);
        assert_eq!(
            would.recent[0].summary,
            format!("create v1 ConfigMap shop/c{}", RECENT_OBSERVED + 4),
            "newest first"
        );
        assert_eq!(
            would.reconcile.as_deref(),
            Some("reconcile: 1 added, 0 updated, 0 removed")
        );
    }
}
