//! The Git engine: a bare cache per remote edited in memory with gix, pushes through the `git`
//! CLI, one worker per repository and branch, commit windows, snapshot commits.

// pub mod change; (needs crate::identity)
pub mod credentials;
pub mod transport;
pub mod url;
// pub mod window; (needs crate::identity)
