//! The `gitops-reverser` binary: parses the command line and hands it to the library.
//! `anyhow` and process exit codes live here and nowhere else.
#![forbid(unsafe_code)]

use clap::Parser;
use gitops_reverser::cli::{Cli, Command, LogFormat, run};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The agent says what it decided at the default level (a line per commit and push, a
    // warning per skipped object); one-shot commands only warn. RUST_LOG overrides both.
    let (default, format) = match &cli.command {
        Command::Run(args) => ("info", args.log_format),
        _ => ("warn", LogFormat::Text),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match format {
        // One JSON object per line, the event's fields beside `message` at the top level.
        LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
        LogFormat::Text => logs.init(),
    }
    let code = run(
        cli,
        // Unlocked handles: a stderr locked for the whole run would block every thread that
        // logs (tracing writes to stderr) while a long command such as `run` or `demo` runs.
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    );
    ExitCode::from(code)
}
