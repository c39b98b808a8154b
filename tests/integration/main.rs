//! Integration tests of gitops-reverser, one binary: the CLI contracts and the generated CRDs.
//! Each module drives the built `gitops-reverser` binary or the library as a user would.

mod agent;
mod attribution;
mod cli;
mod crds;
#[cfg(feature = "demo")]
mod demo;
mod features;
mod git_engine;
mod git_transport;
mod install;
mod ops;
mod replay;
mod support;
