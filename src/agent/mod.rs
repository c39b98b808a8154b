//! The agent: turns custom resources into watches and Git workers, and live events into
//! commits. `capture` is the pure decision for one object and one destination.

pub mod capture;
pub mod runtime;
pub mod watches;
