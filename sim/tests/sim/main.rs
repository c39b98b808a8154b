//! Integration tests of kubesim, judged by real clients: kube-rs and kubectl.
//! One test binary; each module covers one area the issue lists.

mod admission;
mod apply;
mod audit;
mod canonical;
mod catalogue;
mod cli;
mod crd;
mod create;
mod crud;
mod discovery;
mod errors;
mod faults;
mod kubectl;
mod lists;
mod migration;
mod schema_source;
mod support;
mod watch;
