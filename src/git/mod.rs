//! The Git engine: a bare cache per remote edited in memory with gix, pushes through the `git`
//! CLI, one worker per repository and branch, commit windows, snapshot commits.

pub mod apply;
pub mod change;
pub mod credentials;
pub mod marker;
pub mod pack;
pub mod private_dir;
pub mod progress;
pub mod registry;
pub mod remote;
pub mod signing;
pub mod snapshot;
pub mod snapshot_commit;
pub mod store;
pub mod transport;
pub mod url;
pub mod window;
pub mod worker;
