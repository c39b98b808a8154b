//! kubesim: an in-process Kubernetes API simulator for tests and demos.
//! It shares no code with the agent, so it tests the agent instead of mirroring it.
#![forbid(unsafe_code)]

pub mod apply;
pub mod catalogue;
pub mod errors;
pub mod fieldpath;
pub mod ids;
pub mod schema;
pub mod selectors;
pub mod defaults;
pub mod patch;
pub mod store;
pub mod validation;
