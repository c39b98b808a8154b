//! Talking to remotes through the `git` CLI (gix has no push): fetch, push with a lease, and a
//! cheap reachability probe, in a clean environment with credentials that never reach arguments.
