//! Integration tests of gitops-reverser, one binary: the CLI contracts and the generated CRDs.
//! Each module drives the built `gitops-reverser` binary or the library as a user would.

mod agent;
mod attribution;
mod cli;
mod crds;
mod demo;
mod fuzz;
mod git_engine;
mod git_transport;
mod ops;
mod release;
mod replay;
mod support;
