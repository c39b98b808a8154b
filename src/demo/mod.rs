//! The `demo` command: the API simulator, a local bare repository and the agent in one process,
//! driven through a scripted scenario in which every step must have its expected effect in Git.
//! Behind the `demo` feature: not in the agent's image. The scenario's steps (`scenario`), the
//! test PKI (`pki`) and reading the repository (`repo`) are submodules.

mod pki;
mod repo;
mod scenario;

use pki::*;
use repo::*;
use scenario::*;

use crate::agent::runtime::{AgentError, AgentHandle, AgentOptions};
use crate::attribution::{FactIndex, Resolver, WebhookConfig, WebhookError, WebhookServer};
use crate::crd::{GitDestination, GitRepoConfig, WatchRule};
use crate::git::marker::MARKER_FILE;
use crate::git::transport::GitCli;
use crate::identity::AuthorMapping;
use crate::manifest::yaml::parse_documents;
use crate::ops::metrics::EventDecision;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// Exit code when a step of the scenario did not behave.
pub const EXIT_STEP_FAILED: u8 = 1;
/// Every step behaved.
pub const EXIT_OK: u8 = 0;

/// `gitops-reverser demo`'s arguments.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Directory for the bare repository (repo.git), the agent's state, the webhook's test
    /// certificates and, with --serve, alice's and bob's kubeconfigs; created if missing, must
    /// not hold a previous demo (default: a new temporary directory, printed and kept).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Keep the cluster, the agent and the repository running after the scenario and print
    /// kubeconfigs (alice, bob) and commands to try, until Ctrl-C.
    #[arg(long)]
    pub serve: bool,
}

/// The namespace the scenario works in.
pub const NAMESPACE: &str = "shop";
/// The repository folder the demo destination writes.
pub const FOLDER: &str = "clusters/demo";
/// The quiet period of the demo's commit windows: short, so each step is quick, and long enough
/// that a step's burst of changes is one commit.
pub const QUIET: &str = "500ms";
/// How long a step may take before it counts as failed.
const STEP_DEADLINE: Duration = Duration::from_secs(60);
/// How long after the agent decided on the Flux re-apply a commit would have to appear.
const NO_COMMIT_WATCH: Duration = Duration::from_millis(2500);
const POLL: Duration = Duration::from_millis(100);
/// The field manager and labels Flux's kustomize-controller applies with.
const FLUX_MANAGER: &str = "kustomize-controller";
const FLUX_NAME_LABEL: &str = "kustomize.toolkit.fluxcd.io/name";
const FLUX_NAMESPACE_LABEL: &str = "kustomize.toolkit.fluxcd.io/namespace";
const DEMO_MANAGER: &str = "gitops-reverser-demo";
/// The two people of the scenario: simulator users (admins) with these bearer tokens.
const ALICE: &str = "alice";
const BOB: &str = "bob";
/// How long a change waits for its audit fact before it is committed as `unknown`.
const GRACE: Duration = Duration::from_secs(3);
/// The folder of `DIR` the demo's certificates go to.
const PKI_DIR: &str = "pki";

/// What went wrong, naming what the demo was doing.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot start the async runtime: {0}")]
    Runtime(io::Error),
    #[error("cannot prepare the demo directory {path}: {source}")]
    Dir { path: String, source: io::Error },
    #[error(
        "{path} already holds a demo repository (repo.git); pass an empty or new --dir, or remove it"
    )]
    DirInUse { path: String },
    #[error("git {args}: {problem}")]
    Git { args: String, problem: String },
    #[error("cannot start the Kubernetes API simulator: {0}")]
    Sim(#[from] kubesim::SimError),
    #[error("cannot make the demo's certificates: {0}")]
    Pki(#[from] rcgen::Error),
    #[error("cannot start the attribution webhook server: {0}")]
    Webhook(#[from] WebhookError),
    #[error("{what}: {source}")]
    Kube { what: String, source: kube::Error },
    #[error("{what}: {problem}")]
    Object { what: String, problem: String },
    #[error("timed out after {}s waiting for {what}", after.as_secs())]
    Timeout { what: String, after: Duration },
    #[error("the agent stopped: {0}")]
    AgentStopped(String),
    #[error("{0}")]
    Unexpected(String),
    #[error("cannot write {path}: {source}")]
    Write { path: String, source: io::Error },
    #[error("waiting for Ctrl-C: {0}")]
    Signal(io::Error),
    #[error("cannot write output: {0}")]
    Output(#[from] io::Error),
}

fn kube_error(what: impl Into<String>) -> impl FnOnce(kube::Error) -> DemoError {
    let what = what.into();
    move |source| DemoError::Kube { what, source }
}

/// Runs `gitops-reverser demo`; returns the exit code (0, or [`EXIT_STEP_FAILED`] naming the
/// step on `out`). Errors are failures to set the demo up.
pub fn run(args: &DemoArgs, out: &mut dyn Write) -> Result<u8, DemoError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(DemoError::Runtime)?;
    let mut servers = Servers::default();
    let result = runtime.block_on(demo(args, out, &mut servers));
    // Every task ends before the simulator and the webhook go away: otherwise the agent's watches
    // could still see the simulator's TLS connections end and log about it while this thread
    // may be holding stderr.
    drop(runtime);
    drop(servers);
    result
}

/// The demo's simulator and attribution webhook server, dropped only after the runtime.
#[derive(Default)]
struct Servers {
    sim: Option<kubesim::SimHandle>,
    webhook: Option<WebhookServer>,
}

async fn demo(
    args: &DemoArgs,
    out: &mut dyn Write,
    servers: &mut Servers,
) -> Result<u8, DemoError> {
    let dir = prepare_dir(args.dir.as_deref())?;
    let repo = dir.join("repo.git");
    let dir_text = dir.display().to_string();
    git(
        &dir,
        &[
            "init",
            "-q",
            "--bare",
            "-b",
            "main",
            &repo.display().to_string(),
        ],
    )?;
    let pki = Pki::generate(&dir.join(PKI_DIR))?;
    let index = Arc::new(FactIndex::default());
    let mut webhook = WebhookConfig::new(
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        pki.server_cert_file.clone(),
        pki.server_key_file.clone(),
    );
    webhook.client_ca_file = Some(pki.ca_file.clone());
    let webhook = &*servers
        .webhook
        .insert(WebhookServer::start(webhook, index.clone()).await?);
    let audit_url = format!("https://{}/audit", webhook.local_addr());
    // HTTPS, so that kubectl sends the users' bearer tokens (it never does over plain HTTP).
    let sim = kubesim::Simulator::start(
        kubesim::SimConfig::default()
            .with_tls()
            .with_user(kubesim::User::admin(ALICE, "alice-token"))
            .with_user(kubesim::User::admin(BOB, "bob-token"))
            .with_audit_sink(kubesim::AuditSink::new(&audit_url).with_tls(
                &pki.ca_pem,
                Some((&pki.client_cert_pem, &pki.client_key_pem)),
            )),
    )
    .await?;
    let sim = &*servers.sim.insert(sim);
    writeln!(out, "gitops-reverser demo")?;
    writeln!(out, "  directory:  {dir_text}")?;
    writeln!(out, "  repository: {} (folder {FOLDER})", repo.display())?;
    writeln!(
        out,
        "  cluster:    kubesim at {} (simulated; users admin, {ALICE}, {BOB})",
        sim.url()
    )?;
    writeln!(
        out,
        "  audit:      the simulator posts its audit events to the agent's webhook {audit_url} (client certificate; certificates in {})",
        dir.join(PKI_DIR).display()
    )?;
    out.flush()?;

    let client = sim.client().await?;
    let people = People {
        alice: sim.client_for(ALICE).await?,
        bob: sim.client_for(BOB).await?,
    };
    install(&client, &repo).await?;
    let options = AgentOptions {
        state_dir: dir.join("state"),
        allow_secrets: false,
        cluster: "demo".into(),
        streaming_lists: false,
        transport: Arc::new(GitCli::new()),
        settle: Duration::from_millis(50),
        resolver: Some(Arc::new(Resolver::new(
            index,
            GRACE,
            AuthorMapping::default(),
        ))),
        ..AgentOptions::default()
    };
    let agent = crate::agent::runtime::handle(&options);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(crate::agent::runtime::run(
        client.clone(),
        options,
        agent.clone(),
        async {
            let _ = stopped.await;
        },
    ));
    let demo = Demo {
        client,
        people,
        repo: repo.clone(),
        agent,
        running,
    };
    writeln!(
        out,
        "  agent:      started; GitRepoConfig, GitDestination and WatchRule `demo` in namespace {NAMESPACE} (configmaps, deployments, services; commit window quiet {QUIET}); each change waits up to {}s for its author",
        GRACE.as_secs()
    )?;
    writeln!(out)?;
    out.flush()?;
    let outcome = match demo.wait_until_ready().await {
        Ok(()) => demo.scenario(out).await?,
        Err(e) => Outcome {
            verdicts: Vec::new(),
            failed: Some((0, format!("✗ setup: the agent's initial reconcile → {e}"))),
        },
    };

    writeln!(out)?;
    writeln!(out, "History of {} (git log --stat):", repo.display())?;
    writeln!(out)?;
    match history(&repo) {
        Ok(text) if text.trim().is_empty() => writeln!(out, "  (no commits)")?,
        Ok(text) => out.write_all(text.as_bytes())?,
        Err(e) => writeln!(out, "  cannot show the history: {e}")?,
    }
    writeln!(out)?;
    for verdict in &outcome.verdicts {
        writeln!(out, "{verdict}")?;
    }
    let code = match &outcome.failed {
        None => {
            writeln!(out, "Every step behaved.")?;
            EXIT_OK
        }
        Some((step, line)) => {
            writeln!(out, "{line}")?;
            if *step == 0 {
                writeln!(out, "The demo failed before its first step.")?;
            } else {
                writeln!(out, "The demo failed at step {step}.")?;
            }
            EXIT_STEP_FAILED
        }
    };
    out.flush()?;

    if args.serve {
        let mut kubeconfigs = Vec::new();
        for user in [ALICE, BOB] {
            let path = dir.join(format!("kubeconfig-{user}"));
            write_file(&path, sim.kubeconfig(user)?.as_bytes(), false)?;
            kubeconfigs.push(path);
        }
        serve_banner(out, &kubeconfigs, &repo)?;
        out.flush()?;
        interrupted().await?;
        writeln!(
            out,
            "Stopping: the agent flushes its open windows and pushes."
        )?;
        out.flush()?;
    }
    let _ = stop.send(());
    match demo.running.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => writeln!(out, "the agent stopped with an error: {e}")?,
        Err(e) => writeln!(out, "the agent task failed: {e}")?,
    }
    Ok(code)
}

/// Creates the demo directory (a new temporary one, kept, when none is given) and returns its
/// absolute path.
fn prepare_dir(dir: Option<&Path>) -> Result<PathBuf, DemoError> {
    let dir = match dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|source| DemoError::Dir {
                path: dir.display().to_string(),
                source,
            })?;
            dir.to_path_buf()
        }
        None => tempfile::Builder::new()
            .prefix("gitops-reverser-demo-")
            .tempdir()
            .map_err(|source| DemoError::Dir {
                path: std::env::temp_dir().display().to_string(),
                source,
            })?
            .keep(),
    };
    let dir = std::fs::canonicalize(&dir).map_err(|source| DemoError::Dir {
        path: dir.display().to_string(),
        source,
    })?;
    if dir.join("repo.git").exists() {
        return Err(DemoError::DirInUse {
            path: dir.display().to_string(),
        });
    }
    Ok(dir)
}

/// Writes `bytes` to `path`; `private` files (keys) are readable by the owner only.
fn write_file(path: &Path, bytes: &[u8], private: bool) -> Result<(), DemoError> {
    use std::os::unix::fs::OpenOptionsExt;
    let error = |source| DemoError::Write {
        path: path.display().to_string(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(path)
        .map_err(error)?;
    file.write_all(bytes).map_err(error)
}

/// Installs the CRDs, the namespace and the example GitRepoConfig, GitDestination and WatchRule.
async fn install(client: &kube::Client, repo: &Path) -> Result<(), DemoError> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in crate::crd::all_crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        crds.create(&PostParams::default(), &crd)
            .await
            .map_err(kube_error(format!("creating CRD {name}")))?;
    }
    let namespace: Namespace = from_json("namespace", json!({"metadata": {"name": NAMESPACE}}))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .map_err(kube_error(format!("creating namespace {NAMESPACE}")))?;
    let resources = [
        (
            ApiResource::erase::<GitRepoConfig>(&()),
            json!({"apiVersion": "configbutler.ai/v1alpha1", "kind": "GitRepoConfig",
                "metadata": {"name": "demo", "namespace": NAMESPACE},
                "spec": {"url": format!("file://{}", repo.display()),
                    "commit": {"window": {"quiet": QUIET}}}}),
        ),
        (
            ApiResource::erase::<GitDestination>(&()),
            json!({"apiVersion": "configbutler.ai/v1alpha1", "kind": "GitDestination",
                "metadata": {"name": "demo", "namespace": NAMESPACE},
                "spec": {"repoRef": {"name": "demo"}, "branch": "main", "folder": FOLDER}}),
        ),
        (
            ApiResource::erase::<WatchRule>(&()),
            json!({"apiVersion": "configbutler.ai/v1alpha1", "kind": "WatchRule",
                "metadata": {"name": "demo", "namespace": NAMESPACE},
                "spec": {"destinationRef": {"name": "demo"}, "rules": [
                    {"apiGroups": [""], "resources": ["configmaps", "services"]},
                    {"apiGroups": ["apps"], "resources": ["deployments"]}]}}),
        ),
    ];
    for (resource, object) in resources {
        let what = format!("applying {} {NAMESPACE}/demo", resource.kind);
        Api::<DynamicObject>::namespaced_with(client.clone(), NAMESPACE, &resource)
            .patch(
                "demo",
                &PatchParams::apply(DEMO_MANAGER).force(),
                &Patch::Apply(&object),
            )
            .await
            .map_err(kube_error(what))?;
    }
    Ok(())
}

fn from_json<T: serde::de::DeserializeOwned>(what: &str, value: Value) -> Result<T, DemoError> {
    serde_json::from_value(value).map_err(|e| DemoError::Object {
        what: what.into(),
        problem: e.to_string(),
    })
}

/// What to try with `--serve`: `kubeconfigs` are alice's and bob's, in that order.
fn serve_banner(out: &mut dyn Write, kubeconfigs: &[PathBuf], repo: &Path) -> io::Result<()> {
    let git_dir = repo.display();
    writeln!(out)?;
    writeln!(
        out,
        "Everything keeps running: the simulated cluster, the agent and the repository."
    )?;
    for (user, kubeconfig) in [ALICE, BOB].iter().zip(kubeconfigs) {
        writeln!(
            out,
            "  kubeconfig: {} (acts as {user})",
            kubeconfig.display()
        )?;
    }
    writeln!(out, "  repository: {git_dir} (folder {FOLDER})")?;
    writeln!(out)?;
    if let [alice, bob, ..] = kubeconfigs {
        writeln!(out, "Try, in another terminal, as {ALICE}:")?;
        writeln!(out, "  export KUBECONFIG={}", alice.display())?;
        writeln!(
            out,
            "  kubectl get configmaps,deployments,services -n {NAMESPACE}"
        )?;
        writeln!(out, "  kubectl edit configmap settings -n {NAMESPACE}")?;
        writeln!(
            out,
            "  kubectl create configmap feature-flags -n {NAMESPACE} --from-literal=beta=true"
        )?;
        writeln!(out, "and as {BOB}:")?;
        writeln!(
            out,
            "  kubectl --kubeconfig {} scale deployment web -n {NAMESPACE} --replicas 5",
            bob.display()
        )?;
        writeln!(out, "then look at who did what:")?;
    }
    writeln!(out, "  git --git-dir {git_dir} log --stat")?;
    writeln!(
        out,
        "  git --git-dir {git_dir} show main:{FOLDER}/{NAMESPACE}/core/configmaps/settings.yaml"
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "Each change becomes a commit authored by whoever made it, about {QUIET} after their last one. Press Ctrl-C to stop."
    )?;
    Ok(())
}

/// Waits for Ctrl-C or SIGTERM.
async fn interrupted() -> Result<(), DemoError> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(DemoError::Signal)?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.map_err(DemoError::Signal),
        _ = term.recv() => Ok(()),
    }
}
