//! The manifest core: what a cluster object looks like in Git, decided without I/O or async.
//! Sanitize, exclusions, content hash, equivalence, path layout and the one YAML writer.

pub mod yaml;
