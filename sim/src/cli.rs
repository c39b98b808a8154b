//! The `sim` command: run a simulator until interrupted, write a kubeconfig for it, and print
//! where it listens and how to point kubectl at it.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::auth::User;
use crate::errors::SimError;
use crate::{SimConfig, SimHandle, Simulator};

/// Arguments of `gitops-reverser sim`.
#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub listen: SocketAddr,
    /// Where to write a kubeconfig for kubectl and kube-rs.
    #[arg(long)]
    pub kubeconfig: PathBuf,
    /// Serve HTTPS with a fresh self-signed CA (written into the kubeconfig).
    #[arg(long)]
    pub tls: bool,
    /// Extra admin users as NAME=TOKEN (repeatable); `admin` always exists.
    #[arg(long = "user", value_name = "NAME=TOKEN", value_parser = User::parse_flag)]
    pub users: Vec<User>,
}

/// Start a simulator as the arguments say and write its kubeconfig; returns the running handle
/// and the lines to print.
pub async fn start(args: &SimArgs) -> Result<(SimHandle, String), SimError> {
    let mut config = SimConfig {
        listen: args.listen,
        tls: args.tls,
        // kubectl sends no token over plain HTTP: without TLS, unauthenticated requests are admin.
        anonymous: (!args.tls).then(|| "admin".to_string()),
        ..SimConfig::default()
    };
    for u in &args.users {
        config = config.with_user(u.clone());
    }
    let handle = Simulator::start(config).await?;
    let text = handle.kubeconfig("admin")?;
    std::fs::write(&args.kubeconfig, text).map_err(|source| SimError::Write {
        path: args.kubeconfig.display().to_string(),
        source,
    })?;
    let users: Vec<String> = handle
        .users()
        .iter()
        .map(|u| format!("{}@kubesim", u.name))
        .collect();
    let banner = format!(
        "kubesim (Kubernetes API simulator, {}) listening on {}\n\
         kubeconfig written to {}\n\
         \n\
         Point kubectl at it:\n  export KUBECONFIG={}\n  kubectl get namespaces\n\
         Contexts: {}\n\
         {}\n\
         Press Ctrl-C to stop.",
        crate::discovery::GIT_VERSION,
        handle.url(),
        args.kubeconfig.display(),
        args.kubeconfig.display(),
        users.join(", "),
        if args.tls {
            "Every request needs a bearer token from the kubeconfig."
        } else {
            "Plain HTTP: kubectl sends no token over HTTP, so requests without one act as admin (use --tls to require tokens)."
        },
    );
    Ok((handle, banner))
}

/// The `sim` subcommand: serve until Ctrl-C, printing the banner on `out`.
pub async fn run_sim(args: SimArgs, out: &mut dyn Write) -> Result<(), SimError> {
    let (handle, banner) = start(&args).await?;
    let _ = writeln!(out, "{banner}");
    let _ = out.flush();
    tokio::signal::ctrl_c().await.map_err(SimError::Signal)?;
    handle.shutdown();
    Ok(())
}

/// [`run_sim`] for a synchronous caller: runs its own multi-threaded tokio runtime.
pub fn run_sim_blocking(args: SimArgs, out: &mut dyn Write) -> Result<(), SimError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| SimError::Config(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(run_sim(args, out))
}
