//! gitops-reverser: keeps a Git folder equal to the live state of selected Kubernetes objects.
//! `manifest` is the pure core (sanitize, hash, equivalence, layout, YAML); `crd` holds the
//! custom resource types; `cli` implements the command line on top of both. The `demo` feature
//! (default) adds the `demo` and `sim` commands and the simulator they run.
#![forbid(unsafe_code)]

pub mod agent;
pub mod attribution;
pub mod audit;
pub mod cli;
pub mod cluster_diff;
pub mod config;
pub mod crd;
#[cfg(feature = "demo")]
pub mod demo;
pub mod folder;
pub mod git;
pub mod http_limits;
pub mod identity;
pub mod manifest;
pub mod ops;
pub mod replay;
pub mod secrets;
