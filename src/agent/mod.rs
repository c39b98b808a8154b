//! The agent: turns custom resources into watches, Git workers and one task per destination,
//! and live events into commits. `capture` is the pure decision for one event and one
//! destination; `runtime` is the wiring (see docs/architecture.md for the task structure).

pub mod age_identity;
pub mod board;
pub mod capture;
mod cluster;
pub mod destination;
pub mod election;
pub mod hash_key;
pub mod identity;
pub mod leases;
pub mod live;
pub mod reconcile;
pub mod remotes;
pub mod runtime;
pub mod status;
pub mod triggers;
pub mod watches;
