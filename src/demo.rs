//! The `demo` command: the API simulator, a local bare repository and the agent in one process,
//! driven through a scripted scenario in which every step must have its expected effect in Git.
//! Long because the scenario is one story (set-up, six steps with their checks, the printed
//! history and the --serve mode); it is behind the `demo` feature and not in the agent's image.

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

/// The demo's certificates, as a cluster would have them: a CA, the agent's serving certificate
/// for 127.0.0.1, and the client certificate the API server presents to the audit webhook.
struct Pki {
    ca_pem: String,
    client_cert_pem: String,
    client_key_pem: String,
    ca_file: PathBuf,
    server_cert_file: PathBuf,
    server_key_file: PathBuf,
}

impl Pki {
    /// Makes the certificates and writes them (PEM) into `dir`.
    fn generate(dir: &Path) -> Result<Self, DemoError> {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair, KeyUsagePurpose,
        };
        std::fs::create_dir_all(dir).map_err(|source| DemoError::Dir {
            path: dir.display().to_string(),
            source,
        })?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "gitops-reverser-demo-ca");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate()?;
        let ca = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate()?;
        let mut server_params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])?;
        server_params
            .distinguished_name
            .push(DnType::CommonName, "gitops-reverser-webhook");
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server = server_params.signed_by(&server_key, &issuer)?;

        let client_key = KeyPair::generate()?;
        let mut client_params = CertificateParams::new(Vec::<String>::new())?;
        client_params
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver-audit");
        client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client = client_params.signed_by(&client_key, &issuer)?;

        let pki = Pki {
            ca_pem: ca.pem(),
            client_cert_pem: client.pem(),
            client_key_pem: client_key.serialize_pem(),
            ca_file: dir.join("ca.crt"),
            server_cert_file: dir.join("webhook.crt"),
            server_key_file: dir.join("webhook.key"),
        };
        write_file(&pki.ca_file, pki.ca_pem.as_bytes(), false)?;
        write_file(&pki.server_cert_file, server.pem().as_bytes(), false)?;
        write_file(
            &pki.server_key_file,
            server_key.serialize_pem().as_bytes(),
            true,
        )?;
        write_file(
            &dir.join("apiserver-client.crt"),
            pki.client_cert_pem.as_bytes(),
            false,
        )?;
        write_file(
            &dir.join("apiserver-client.key"),
            pki.client_key_pem.as_bytes(),
            true,
        )?;
        Ok(pki)
    }
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

/// The verdicts printed so far and the failing step (0 for the setup), with its line.
struct Outcome {
    verdicts: Vec<String>,
    failed: Option<(usize, String)>,
}

/// What one step did, as its verdict says it, and the commits it made.
struct StepResult {
    effect: String,
    commits: Vec<Commit>,
}

/// A commit on `main`: its author's name and its subject.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Commit {
    author: String,
    subject: String,
}

/// The scenario's people: clients authenticated as alice and as bob.
struct People {
    alice: kube::Client,
    bob: kube::Client,
}

struct Demo {
    /// The admin's client: installs the demo's objects and plays Flux.
    client: kube::Client,
    people: People,
    repo: PathBuf,
    agent: AgentHandle,
    running: JoinHandle<Result<(), AgentError>>,
}

fn path_of(group_and_resource: &str, name: &str) -> String {
    format!("{FOLDER}/{NAMESPACE}/{group_and_resource}/{name}.yaml")
}

impl Demo {
    /// Polls `check` until it yields a value, the agent stops, or the step's deadline passes.
    async fn until<T>(
        &self,
        what: &str,
        mut check: impl FnMut() -> Result<Option<T>, DemoError>,
    ) -> Result<T, DemoError> {
        let deadline = Instant::now() + STEP_DEADLINE;
        loop {
            if let Some(value) = check()? {
                return Ok(value);
            }
            if self.running.is_finished() {
                return Err(DemoError::AgentStopped(
                    "its task ended; see the log above".into(),
                ));
            }
            if Instant::now() >= deadline {
                return Err(DemoError::Timeout {
                    what: what.into(),
                    after: STEP_DEADLINE,
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// True when no worker holds a queued change, an open window or an unpushed commit.
    fn workers_idle(&self) -> bool {
        self.agent.registry.handles().iter().all(|worker| {
            worker.queued() == 0 && worker.stats().waiting_changes.load(Ordering::SeqCst) == 0
        })
    }

    /// Waits until the agent watches what the rule selects and its initial reconcile is done.
    /// An empty folder's reconcile commits nothing, so this reads the agent's state; it must hold
    /// on two polls in a row, so a readiness left over from a plan without the destination (set
    /// a moment before the watches were counted) is not mistaken for the reconcile's.
    async fn wait_until_ready(&self) -> Result<(), DemoError> {
        let agent = &self.agent;
        let what = "the agent to watch configmaps, deployments and services and finish its initial reconcile";
        let mut held = 0;
        let result = self
            .until(what, || {
                let ready = agent.watches() >= 3
                    && !agent.registry.is_empty()
                    && agent.readiness.is_ready()
                    && self.workers_idle();
                held = if ready { held + 1 } else { 0 };
                Ok((held >= 2).then_some(()))
            })
            .await;
        match (result, agent.readiness.check()) {
            (Err(DemoError::Timeout { what, after }), Err(reason)) => Err(DemoError::Timeout {
                what: format!("{what} (not ready: {reason})"),
                after,
            }),
            (result, _) => result,
        }
    }

    /// Runs the steps in order; stops at the first that misbehaves.
    async fn scenario(&self, out: &mut dyn Write) -> Result<Outcome, DemoError> {
        let mut outcome = Outcome {
            verdicts: Vec::new(),
            failed: None,
        };
        // Who acts in each step; their step's commits must all be authored by them.
        let steps: [(&str, Step, Option<&str>); 5] = [
            (
                "alice creates ConfigMap shop/settings, Deployment shop/web, Service shop/web",
                Step::Create,
                Some(ALICE),
            ),
            (
                "bob edits ConfigMap shop/settings (data.mode: standard → sale)",
                Step::Edit,
                Some(BOB),
            ),
            (
                "alice scales Deployment shop/web to 3 replicas (scale subresource)",
                Step::Scale,
                Some(ALICE),
            ),
            ("bob deletes Service shop/web", Step::Delete, Some(BOB)),
            (
                "Flux re-apply (server-side apply as kustomize-controller, Flux labels)",
                Step::FluxReapply,
                None,
            ),
        ];
        for (index, (title, step, author)) in steps.into_iter().enumerate() {
            let number = index + 1;
            writeln!(out, "step {number}: {title} …")?;
            out.flush()?;
            let result = self.step(step).await.and_then(|result| match author {
                Some(who) if result.commits.iter().any(|c| c.author != who) => {
                    Err(DemoError::Unexpected(format!(
                        "{}, expected every commit authored by {who}",
                        describe_commits(&result.commits)
                    )))
                }
                _ => Ok(result),
            });
            match result {
                Ok(result) => {
                    outcome
                        .verdicts
                        .push(format!("✓ step {number}: {title} → {}", result.effect));
                }
                Err(e) => {
                    let line = format!("✗ step {number}: {title} → {e}");
                    outcome.failed = Some((number, line));
                    break;
                }
            }
        }
        Ok(outcome)
    }

    async fn step(&self, step: Step) -> Result<StepResult, DemoError> {
        match step {
            Step::Create => self.create(&self.people.alice).await,
            Step::Edit => self.edit(&self.people.bob).await,
            Step::Scale => self.scale(&self.people.alice).await,
            Step::Delete => self.delete(&self.people.bob).await,
            Step::FluxReapply => self.flux_reapply().await,
        }
    }

    /// Step 1: three new objects → their three files.
    async fn create(&self, client: &kube::Client) -> Result<StepResult, DemoError> {
        let before = tip(&self.repo)?;
        let configmap: ConfigMap = from_json(
            "ConfigMap shop/settings",
            json!({"metadata": {"name": "settings", "namespace": NAMESPACE},
                "data": {"mode": "standard", "currency": "EUR"}}),
        )?;
        let deployment: Deployment = from_json(
            "Deployment shop/web",
            json!({"metadata": {"name": "web", "namespace": NAMESPACE, "labels": {"app": "web"}},
                "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{"name": "web", "image": "nginx:1.27",
                            "ports": [{"containerPort": 8080}]}]}}}}),
        )?;
        let service: Service = from_json(
            "Service shop/web",
            json!({"metadata": {"name": "web", "namespace": NAMESPACE},
                "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}}),
        )?;
        let post = PostParams {
            field_manager: Some(DEMO_MANAGER.into()),
            ..PostParams::default()
        };
        Api::<ConfigMap>::namespaced(client.clone(), NAMESPACE)
            .create(&post, &configmap)
            .await
            .map_err(kube_error("creating ConfigMap shop/settings"))?;
        Api::<Deployment>::namespaced(client.clone(), NAMESPACE)
            .create(&post, &deployment)
            .await
            .map_err(kube_error("creating Deployment shop/web"))?;
        Api::<Service>::namespaced(client.clone(), NAMESPACE)
            .create(&post, &service)
            .await
            .map_err(kube_error("creating Service shop/web"))?;
        let paths = [
            path_of("core/configmaps", "settings"),
            path_of("apps/deployments", "web"),
            path_of("core/services", "web"),
        ];
        self.until("the three files in the repository", || {
            for path in &paths {
                if file(&self.repo, path)?.is_none() {
                    return Ok(None);
                }
            }
            Ok(self.workers_idle().then_some(()))
        })
        .await?;
        let new = commits_since(&self.repo, before.as_deref())?;
        let changed = changed_files(&self.repo, before.as_deref())?;
        let added = changed.iter().filter(|(status, _)| status == "A").count();
        if new.is_empty() || added != paths.len() {
            return Err(DemoError::Unexpected(format!(
                "{} commits adding {added} files, expected the 3 files added",
                new.len()
            )));
        }
        Ok(StepResult {
            effect: format!("{}, {added} files added", describe_commits(&new)),
            commits: new,
        })
    }

    /// Step 2: one field of the ConfigMap → one commit that changes its file.
    async fn edit(&self, client: &kube::Client) -> Result<StepResult, DemoError> {
        let before = tip(&self.repo)?;
        Api::<ConfigMap>::namespaced(client.clone(), NAMESPACE)
            .patch(
                "settings",
                &PatchParams {
                    field_manager: Some(DEMO_MANAGER.into()),
                    ..PatchParams::default()
                },
                &Patch::Merge(json!({"data": {"mode": "sale"}})),
            )
            .await
            .map_err(kube_error("patching ConfigMap shop/settings"))?;
        let path = path_of("core/configmaps", "settings");
        self.until("mode: sale in the ConfigMap's file", || {
            let edited = file(&self.repo, &path)?.is_some_and(|text| text.contains("mode: sale"));
            Ok((edited && self.workers_idle()).then_some(()))
        })
        .await?;
        self.one_commit_changing(before.as_deref(), &path, "M")
    }

    /// Step 3: `spec.replicas` through the scale subresource → one commit.
    async fn scale(&self, client: &kube::Client) -> Result<StepResult, DemoError> {
        let before = tip(&self.repo)?;
        Api::<Deployment>::namespaced(client.clone(), NAMESPACE)
            .patch_scale(
                "web",
                &PatchParams {
                    field_manager: Some(DEMO_MANAGER.into()),
                    ..PatchParams::default()
                },
                &Patch::Merge(json!({"spec": {"replicas": 3}})),
            )
            .await
            .map_err(kube_error("scaling Deployment shop/web"))?;
        let path = path_of("apps/deployments", "web");
        self.until("replicas: 3 in the Deployment's file", || {
            let scaled = file(&self.repo, &path)?.is_some_and(|text| text.contains("replicas: 3"));
            Ok((scaled && self.workers_idle()).then_some(()))
        })
        .await?;
        self.one_commit_changing(before.as_deref(), &path, "M")
    }

    /// Step 4: a deleted object → one commit removing its file.
    async fn delete(&self, client: &kube::Client) -> Result<StepResult, DemoError> {
        let before = tip(&self.repo)?;
        Api::<Service>::namespaced(client.clone(), NAMESPACE)
            .delete("web", &DeleteParams::default())
            .await
            .map_err(kube_error("deleting Service shop/web"))?;
        let path = path_of("core/services", "web");
        self.until("the Service's file to be removed", || {
            let gone = file(&self.repo, &path)?.is_none();
            Ok((gone && self.workers_idle()).then_some(()))
        })
        .await?;
        let mut result = self.one_commit_changing(before.as_deref(), &path, "D")?;
        result.effect.push_str(", file removed");
        Ok(result)
    }

    /// Exactly one new commit since `before`, and it changes `path` (`status` A/M/D).
    fn one_commit_changing(
        &self,
        before: Option<&str>,
        path: &str,
        status: &str,
    ) -> Result<StepResult, DemoError> {
        let new = commits_since(&self.repo, before)?;
        let changed = changed_files(&self.repo, before)?;
        let expected = vec![(status.to_string(), path.to_string())];
        if new.len() != 1 || changed != expected {
            let files: Vec<String> = changed.iter().map(|(s, p)| format!("{s} {p}")).collect();
            return Err(DemoError::Unexpected(format!(
                "{} changing [{}], expected 1 commit changing {status} {path}",
                describe_commits(&new),
                files.join(", ")
            )));
        }
        Ok(StepResult {
            effect: describe_commits(&new),
            commits: new,
        })
    }

    /// Step 5: every file of the folder applied back the way Flux does → the agent recognises
    /// each object as what Git says and commits nothing.
    async fn flux_reapply(&self) -> Result<StepResult, DemoError> {
        let before = tip(&self.repo)?;
        let commits_before = commits_since(&self.repo, None)?.len();
        let paths = folder_files(&self.repo)?;
        let metrics = &self.agent.metrics;
        let counted = [
            EventDecision::Exact,
            EventDecision::HashAnnotation,
            EventDecision::Near,
            EventDecision::Written,
            EventDecision::Excluded,
            EventDecision::StatusOnly,
        ];
        let counts_before: Vec<u64> = counted.iter().map(|d| metrics.events(*d)).collect();
        let mut applied = 0u64;
        for path in &paths {
            let Some(text) = file(&self.repo, path)? else {
                continue;
            };
            let mut documents = parse_documents(&text, path).map_err(|e| DemoError::Object {
                what: path.clone(),
                problem: e.to_string(),
            })?;
            let Some(mut object) = documents.pop() else {
                continue;
            };
            self.flux_apply(path, &mut object).await?;
            applied += 1;
        }
        if applied == 0 {
            return Err(DemoError::Unexpected(format!(
                "no files in {FOLDER} to re-apply"
            )));
        }
        let deltas = self
            .until("the agent's decision on every re-applied object", || {
                let deltas: Vec<u64> = counted
                    .iter()
                    .zip(&counts_before)
                    .map(|(d, before)| metrics.events(*d).saturating_sub(*before))
                    .collect();
                Ok((deltas.iter().sum::<u64>() >= applied).then_some(deltas))
            })
            .await?;
        let decided: Vec<String> = counted
            .iter()
            .zip(&deltas)
            .filter(|(_, n)| **n > 0)
            .map(|(d, n)| format!("{d} ×{n}"))
            .collect();
        let written = metrics
            .events(EventDecision::Written)
            .saturating_sub(counts_before[3]);
        if written > 0 {
            return Err(DemoError::Unexpected(format!(
                "the agent decided to write {written} file(s) ({})",
                decided.join(", ")
            )));
        }
        // Decided; a commit would now be at most a quiet period and a push away.
        let watch_until = Instant::now() + NO_COMMIT_WATCH;
        while Instant::now() < watch_until {
            if tip(&self.repo)? != before || !self.workers_idle() {
                let new = commits_since(&self.repo, before.as_deref())?;
                return Err(DemoError::Unexpected(format!(
                    "{} after the re-apply ({}), expected none",
                    describe_commits(&new),
                    decided.join(", ")
                )));
            }
            tokio::time::sleep(POLL).await;
        }
        let commits_after = commits_since(&self.repo, None)?.len();
        if commits_after != commits_before {
            return Err(DemoError::Unexpected(format!(
                "{commits_before} commits before the re-apply, {commits_after} after"
            )));
        }
        Ok(StepResult {
            effect: format!(
                "{applied} files applied, no commit ({})",
                decided.join(", ")
            ),
            commits: Vec::new(),
        })
    }

    /// Server-side applies one file as kustomize-controller, with Flux's labels added.
    async fn flux_apply(&self, path: &str, object: &mut Value) -> Result<(), DemoError> {
        let problem = |problem: &str| DemoError::Object {
            what: path.to_string(),
            problem: problem.to_string(),
        };
        let labels = object
            .pointer_mut("/metadata")
            .and_then(Value::as_object_mut)
            .ok_or_else(|| problem("no metadata"))?
            .entry("labels")
            .or_insert_with(|| json!({}));
        let labels = labels
            .as_object_mut()
            .ok_or_else(|| problem("metadata.labels is not a mapping"))?;
        labels.insert(FLUX_NAME_LABEL.into(), json!("demo"));
        labels.insert(FLUX_NAMESPACE_LABEL.into(), json!("flux-system"));
        let text = |pointer: &str| object.pointer(pointer).and_then(Value::as_str);
        let (Some(api_version), Some(kind), Some(name)) =
            (text("/apiVersion"), text("/kind"), text("/metadata/name"))
        else {
            return Err(problem("apiVersion, kind or metadata.name missing"));
        };
        let namespace = text("/metadata/namespace").map(str::to_string);
        let gvk = kube::core::GroupVersionKind::try_from(&kube::core::TypeMeta {
            api_version: api_version.to_string(),
            kind: kind.to_string(),
        })
        .map_err(|e| problem(&e.to_string()))?;
        let name = name.to_string();
        let (resource, _) = kube::discovery::pinned_kind(&self.client, &gvk)
            .await
            .map_err(kube_error(format!("discovering {api_version} {kind}")))?;
        let api: Api<DynamicObject> = match &namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &resource),
            None => Api::all_with(self.client.clone(), &resource),
        };
        api.patch(
            &name,
            &PatchParams::apply(FLUX_MANAGER).force(),
            &Patch::Apply(&*object),
        )
        .await
        .map_err(kube_error(format!("applying {path} as {FLUX_MANAGER}")))?;
        Ok(())
    }
}

#[derive(Clone, Copy)]
enum Step {
    Create,
    Edit,
    Scale,
    Delete,
    FluxReapply,
}

/// `1 commit by alice (subject)`, `N commits by alice (subject; subject)`, or with several
/// authors `N commits (subject by alice; subject by bob)`.
fn describe_commits(commits: &[Commit]) -> String {
    let Some(first) = commits.first() else {
        return "no commit".into();
    };
    let count = match commits.len() {
        1 => "1 commit".to_string(),
        n => format!("{n} commits"),
    };
    if commits.iter().all(|c| c.author == first.author) {
        let subjects: Vec<&str> = commits.iter().map(|c| c.subject.as_str()).collect();
        format!("{count} by {} ({})", first.author, subjects.join("; "))
    } else {
        let each: Vec<String> = commits
            .iter()
            .map(|c| format!("{} by {}", c.subject, c.author))
            .collect();
        format!("{count} ({})", each.join("; "))
    }
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

/// Runs `git` in `cwd`; fails when it exits non-zero.
fn git(cwd: &Path, args: &[&str]) -> Result<String, DemoError> {
    match git_status(cwd, args)? {
        Ok(text) => Ok(text),
        Err(problem) => Err(DemoError::Git {
            args: args.join(" "),
            problem,
        }),
    }
}

/// Runs `git` in `cwd`: `Ok(stdout)` or `Err(stderr)` by its exit status; an error when it
/// cannot run at all.
fn git_status(cwd: &Path, args: &[&str]) -> Result<Result<String, String>, DemoError> {
    let output = Command::new("git")
        .args(args)
        .current_dir(cwd)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .map_err(|e| DemoError::Git {
            args: args.join(" "),
            problem: format!("cannot run git (is it installed?): {e}"),
        })?;
    if output.status.success() {
        Ok(Ok(String::from_utf8_lossy(&output.stdout).into_owned()))
    } else {
        Ok(Err(String::from_utf8_lossy(&output.stderr)
            .trim()
            .to_string()))
    }
}

fn git_dir_args<'a>(repo: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["--git-dir", repo];
    all.extend_from_slice(args);
    all
}

fn repo_str(repo: &Path) -> String {
    repo.display().to_string()
}

/// The commit `main` points at, if the branch exists.
fn tip(repo: &Path) -> Result<Option<String>, DemoError> {
    let dir = repo_str(repo);
    Ok(git_status(
        repo,
        &git_dir_args(&dir, &["rev-parse", "--verify", "-q", "refs/heads/main"]),
    )?
    .ok()
    .map(|text| text.trim().to_string()))
}

/// A file of `main`, if it exists.
fn file(repo: &Path, path: &str) -> Result<Option<String>, DemoError> {
    let dir = repo_str(repo);
    let spec = format!("refs/heads/main:{path}");
    Ok(git_status(repo, &git_dir_args(&dir, &["show", &spec]))?.ok())
}

/// The commits on `main` after `before` (all of them without it), oldest first.
fn commits_since(repo: &Path, before: Option<&str>) -> Result<Vec<Commit>, DemoError> {
    if tip(repo)?.is_none() {
        return Ok(Vec::new());
    }
    let dir = repo_str(repo);
    let range = match before {
        Some(commit) => format!("{commit}..refs/heads/main"),
        None => "refs/heads/main".to_string(),
    };
    // A tab cannot occur in an author name (Git identities have no control characters).
    let text = git(
        repo,
        &git_dir_args(&dir, &["log", "--reverse", "--format=%an%x09%s", &range]),
    )?;
    Ok(text
        .lines()
        .map(|line| {
            let (author, subject) = line.split_once('\t').unwrap_or(("", line));
            Commit {
                author: author.to_string(),
                subject: subject.to_string(),
            }
        })
        .collect())
}

/// `(status, path)` of every object file that differs between `before` and `main` (the
/// ownership marker is left out: the agent refreshes it along with other changes).
fn changed_files(repo: &Path, before: Option<&str>) -> Result<Vec<(String, String)>, DemoError> {
    let dir = repo_str(repo);
    let text = match before {
        Some(commit) => git(
            repo,
            &git_dir_args(
                &dir,
                &[
                    "diff",
                    "--name-status",
                    commit,
                    "refs/heads/main",
                    "--",
                    FOLDER,
                ],
            ),
        )?,
        None => folder_files(repo)?
            .into_iter()
            .map(|path| format!("A\t{path}\n"))
            .collect(),
    };
    Ok(text
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .filter(|(_, path)| !path.ends_with(MARKER_FILE))
        .map(|(status, path)| (status.to_string(), path.to_string()))
        .collect())
}

/// The object files of the demo folder on `main`.
fn folder_files(repo: &Path) -> Result<Vec<String>, DemoError> {
    if tip(repo)?.is_none() {
        return Ok(Vec::new());
    }
    let dir = repo_str(repo);
    let text = git(
        repo,
        &git_dir_args(
            &dir,
            &[
                "ls-tree",
                "-r",
                "--name-only",
                "refs/heads/main",
                "--",
                FOLDER,
            ],
        ),
    )?;
    Ok(text
        .lines()
        .filter(|path| path.ends_with(".yaml"))
        .map(str::to_string)
        .collect())
}

/// The history of `main` like `git log --stat`, newest first, a blank line between commits.
fn history(repo: &Path) -> Result<String, DemoError> {
    if tip(repo)?.is_none() {
        return Ok(String::new());
    }
    let dir = repo_str(repo);
    let text = git(
        repo,
        &git_dir_args(
            &dir,
            &[
                "log",
                "--stat",
                "--no-color",
                "--date=iso",
                "--format=commit %h%nAuthor: %an <%ae>%nDate:   %ad%n%n    %s",
                "refs/heads/main",
            ],
        ),
    )?;
    let mut out = String::with_capacity(text.len() + 64);
    for (index, line) in text.lines().enumerate() {
        if index > 0 && line.starts_with("commit ") {
            out.push('\n');
        }
        out.push_str(line);
        out.push('\n');
    }
    Ok(out)
}
