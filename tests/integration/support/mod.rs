//! Shared test support: real Git servers on 127.0.0.1 (file://, git daemon, smart HTTP, sshd),
//! started and stopped by the tests, and `git` CLI helpers to build and inspect repositories.

pub mod agent_env;
pub mod git_servers;
