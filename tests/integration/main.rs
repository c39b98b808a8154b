//! Integration tests of gitops-reverser, one binary: the CLI contracts and the generated CRDs.
//! Each module drives the built `gitops-reverser` binary or the library as a user would.

mod agent;
mod agent_authors;
mod agent_pairing;
mod attribution;
mod brownfield;
mod cli;
mod corpus;
mod crash;
mod crds;
#[cfg(feature = "demo")]
mod demo;
mod exclusions;
mod features;
mod fresh_install;
mod fuzz;
mod git_engine;
mod git_transport;
mod install;
mod isolation;
mod leases;
mod ops;
mod release;
mod replay;
mod sealed_secrets;
mod shared_repo;
mod signing;
mod sops;
mod status_page;
mod support;
