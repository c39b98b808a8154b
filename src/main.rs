//! The `gitops-reverser` binary: parses the command line and hands it to the library.
//! `anyhow` and process exit codes live here and nowhere else.
#![forbid(unsafe_code)]

use clap::Parser;
use gitops_reverser::cli::{Cli, run};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The agent says what it decided at the default level (a line per commit and push, a
    // warning per skipped object); one-shot commands only warn. RUST_LOG overrides both.
    let default = match cli.command {
        gitops_reverser::cli::Command::Run(_) => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .init();
    let code = run(
        cli,
        // Unlocked handles: a stderr locked for the whole run would block every thread that
        // logs (tracing writes to stderr) while a long command such as `run` or `demo` runs.
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    );
    ExitCode::from(code)
}
