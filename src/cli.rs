//! The command line: `crds`, `sanitize` and `diff`, with their output and exit-code contracts.
//! Each command reads its inputs, calls the pure core, and writes to the streams it is given.

use crate::manifest::equivalence::Verdict;
use crate::manifest::exclude::ExclusionPolicy;
use crate::manifest::layout::PathTemplate;
use crate::manifest::object::describe;
use crate::manifest::pipeline::{Outcome, expand_list, prepare};
use crate::manifest::sanitize::sanitized;
use crate::manifest::yaml::{parse_documents, to_multi_yaml, to_yaml};
use clap::{Parser, Subcommand};
use serde_json::Value;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Exit code of a command that worked (and, for `diff`, found the documents equivalent).
pub const EXIT_OK: u8 = 0;
/// Exit code of `diff` when the documents differ.
pub const EXIT_DIFFERENT: u8 = 1;
/// Exit code for unreadable input or another error.
pub const EXIT_ERROR: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "gitops-reverser",
    version,
    about = "Keeps a folder of a Git repository equal to the live state of selected Kubernetes objects",
    long_about = None
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent against a simulated cluster and a local repository through a scripted
    /// scenario, checking each step's effect in Git; no cluster needed.
    ///
    /// Steps: create a ConfigMap, a Deployment and a Service in namespace `shop`; edit the
    /// ConfigMap; scale the Deployment; delete the Service; re-apply the repository's files the way
    /// Flux would (expecting no commit). Prints the history and one verdict per step. Exit 0 when
    /// every step behaved, 1 naming the step that did not, 2 when the demo cannot start.
    #[cfg(feature = "demo")]
    Demo(DemoArgs),
    /// Print every CustomResourceDefinition of gitops-reverser as multi-document YAML
    /// (the same bytes as the files in crds/, concatenated in name order).
    Crds,
    /// Print objects exactly as they would be written to Git: sanitized, with their content hash.
    ///
    /// Reads one object, a List, or a multi-document YAML/JSON stream. A skipped object prints
    /// one line on stderr: `skipped <apiVersion>/<Kind> <namespace/>name: <reason>`.
    Sanitize(SanitizeArgs),
    /// Compare a document from Git with a live object (as `kubectl get -o yaml|json` prints it).
    ///
    /// Exit 0 with `equivalent: exact|hash-annotation|near (<reason>)`; exit 1 with a unified
    /// diff of the sanitized documents and a line naming the differing paths (with `--output
    /// json-patch`: the patch that restores Git's version); exit 2 on error.
    Diff(DiffArgs),
    /// Rebuild a folder's Git history from kube-apiserver audit logs; no cluster needed.
    ///
    /// Reads JSON-lines logs (the log backend) or EventList documents (the webhook backend),
    /// gzip accepted. Only changes that persisted are used; each becomes a commit by the person
    /// who made it, dated when the API server received it, grouped by the same windows as the
    /// live agent. Replaying the same log again adds no commit.
    Replay(Box<ReplayArgs>),
    /// Run the agent: watch what the custom resources select and keep their Git folders equal
    /// to it. Serves /metrics, /healthz and /readyz.
    Run(Box<RunArgs>),
    /// Run the Kubernetes API simulator (kubesim) until interrupted; writes a kubeconfig that
    /// kubectl and kube-rs can use. For tests and demos: it is not a Kubernetes.
    #[cfg(feature = "demo")]
    Sim(kubesim::cli::SimArgs),
}

#[cfg(feature = "demo")]
pub use crate::demo::DemoArgs;

#[derive(Debug, clap::Args)]
pub struct SanitizeArgs {
    /// File to read; `-` or nothing reads standard input.
    #[arg(value_name = "FILE|-")]
    pub input: Option<PathBuf>,
    /// Let Secrets through (by default they are never written; prefer SealedSecrets).
    #[arg(long)]
    pub allow_secrets: bool,
    /// Print `<path> sha256:<hex>` per kept object instead of the documents.
    #[arg(long)]
    pub paths: bool,
    /// Folder the paths are inside (with --paths).
    #[arg(long, default_value = ".", value_name = "FOLDER")]
    pub folder: String,
    /// Path template (with --paths); placeholders {namespace} {group} {version} {kind}
    /// {resource} {name}.
    #[arg(long, default_value = crate::manifest::layout::DEFAULT_TEMPLATE, value_name = "TEMPLATE")]
    pub path_template: String,
    /// Write Secrets as SOPS documents encrypted to this age recipient (`age1…`; repeat for
    /// more), as a destination with encryption commits them (`….sops.yaml`).
    #[arg(long = "age-recipient", value_name = "RECIPIENT")]
    pub age_recipients: Vec<String>,
    /// The key of the keyed content hash of encrypted Secrets (the agent keeps it in a cluster
    /// Secret); without it a random one-off key is used.
    #[arg(long, value_name = "FILE", requires = "age_recipients")]
    pub hash_key_file: Option<PathBuf>,
    /// A YAML file with exclusions as a GitDestination's `spec.exclusions` has them (`objects`,
    /// `fields`); what they leave out is said on stderr with the rule.
    #[arg(long, value_name = "FILE")]
    pub exclusions: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    /// The document as stored in Git (with LIVE_FILE; or use --kubeconfig to compare a folder
    /// with a cluster).
    #[arg(required_unless_present = "kubeconfig", requires = "live_file")]
    pub git_file: Option<PathBuf>,
    /// The live object, as `kubectl get -o yaml` or `-o json` prints it.
    pub live_file: Option<PathBuf>,
    /// Compare a folder of Git with this cluster instead: each document is fetched live and
    /// judged; objects of the same kinds that Git lacks are listed.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["git_file", "live_file"])]
    pub kubeconfig: Option<PathBuf>,
    /// The repository to read the folder from (with --kubeconfig).
    #[arg(long, value_name = "URL", requires_all = ["kubeconfig", "folder"], conflicts_with = "dir")]
    pub repo: Option<String>,
    /// The branch of --repo.
    #[arg(long, default_value = "main")]
    pub branch: String,
    /// The folder of --repo to compare.
    #[arg(long, value_name = "PATH")]
    pub folder: Option<String>,
    /// A local checkout's folder to compare instead of --repo.
    #[arg(long, value_name = "DIR", requires = "kubeconfig")]
    pub dir: Option<PathBuf>,
    /// A Kubernetes Secret manifest with the credentials of --repo.
    #[arg(long, value_name = "FILE")]
    pub credentials: Option<PathBuf>,
    /// What to print for GIT_FILE and LIVE_FILE (the exit code is the same).
    #[arg(long, value_enum, default_value_t = DiffOutput::Diff, conflicts_with = "kubeconfig")]
    pub output: DiffOutput,
    /// A YAML file with exclusions as a GitDestination's `spec.exclusions` has them: fields
    /// they leave out are not compared, and each is named with its rule.
    #[arg(long, value_name = "FILE", conflicts_with = "kubeconfig")]
    pub exclusions: Option<PathBuf>,
}

/// What `diff GIT_FILE LIVE_FILE` prints on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DiffOutput {
    /// The verdict; when different, a unified diff of the sanitized documents and the paths.
    Diff,
    /// An RFC 6902 JSON patch that brings the live object back to the Git document (`[]` when
    /// they are equivalent), for `kubectl patch --type json --patch-file`: it changes what the
    /// verdict names and leaves server defaults, status and bookkeeping alone. The verdict line
    /// goes to stderr.
    JsonPatch,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Kubeconfig to use; without it, the in-cluster configuration or the usual kubeconfig
    /// ($KUBECONFIG, ~/.kube/config).
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// Where the local repository caches live.
    #[arg(long, value_name = "DIR", default_value = "/var/lib/gitops-reverser")]
    pub state_dir: PathBuf,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, value_name = "ADDR", default_value = crate::ops::server::DEFAULT_METRICS_ADDR)]
    pub metrics_addr: std::net::SocketAddr,
    /// Let Secrets through (by default they are never written; prefer SealedSecrets).
    #[arg(long)]
    pub allow_secrets: bool,
    /// This cluster's name in the ownership marker of every folder it writes; by default the
    /// uid of the `kube-system` namespace (stable for the cluster's life, different per cluster).
    #[arg(long, value_name = "NAME")]
    pub cluster_name: Option<String>,
    /// Share the repositories between replicas: one Lease (coordination.k8s.io/v1) per
    /// repository and branch in the agent's namespace; only its holder writes and pushes.
    #[arg(long)]
    pub leader_elect: bool,
    /// How long a Lease stays held after its holder last renewed it; a surviving replica takes
    /// over a dead one's repositories after it.
    #[arg(long, default_value = "15s", value_parser = parse_duration_arg, value_name = "DURATION")]
    pub leader_elect_lease_duration: std::time::Duration,
    /// How long a holder keeps pushing after its last successful renewal began (less than the
    /// lease duration: the difference is the safety margin before another replica may push).
    #[arg(long, default_value = "10s", value_parser = parse_duration_arg, value_name = "DURATION")]
    pub leader_elect_renew_deadline: std::time::Duration,
    /// How often Leases are renewed and free ones tried.
    #[arg(long, default_value = "2s", value_parser = parse_duration_arg, value_name = "DURATION")]
    pub leader_elect_retry_period: std::time::Duration,
    /// The namespace of the Leases; by default the agent's own (`POD_NAMESPACE`, the service
    /// account's, or the kubeconfig's).
    #[arg(long, value_name = "NAMESPACE")]
    pub leader_elect_resource_namespace: Option<String>,
    /// Use streaming lists (`sendInitialEvents`) for watches instead of list-then-watch.
    #[arg(long)]
    pub streaming_lists: bool,
    /// Serve the attribution webhooks (HTTPS: `/audit` for the kube-apiserver's audit webhook
    /// backend, `/admission` for a ValidatingWebhookConfiguration) on this address. Without it,
    /// every commit is authored "unknown (unattributed)".
    /// The serving certificate is `--webhook-cert` and `--webhook-key` when given; otherwise
    /// the agent makes and keeps its own (see `--webhook-certificate-secret`).
    #[arg(long, value_name = "ADDR")]
    pub webhook_addr: Option<std::net::SocketAddr>,
    /// PEM certificate (chain) of the webhook server; re-read when it changes.
    #[arg(long, value_name = "FILE", requires_all = ["webhook_key", "webhook_addr"])]
    pub webhook_cert: Option<PathBuf>,
    /// PEM private key of the webhook server.
    #[arg(long, value_name = "FILE", requires_all = ["webhook_cert", "webhook_addr"])]
    pub webhook_key: Option<PathBuf>,
    /// Without `--webhook-cert`: the Secret of `--webhook-namespace` where the agent keeps the
    /// serving certificate it makes (a CA and a certificate for the webhook Service, issued on
    /// the first start, shared by every replica and kept across restarts, renewed 30 days
    /// before it expires). The agent needs `get` and `patch` on it.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "gitops-reverser-webhook-tls"
    )]
    pub webhook_certificate_secret: String,
    /// The agent's namespace, which holds that Secret and the webhook Service (default: the
    /// namespace of the service account, or of the kubeconfig's context).
    #[arg(long, value_name = "NAMESPACE")]
    pub webhook_namespace: Option<String>,
    /// The Service the API server calls the webhook through; the self-made certificate is for
    /// `<service>.<namespace>.svc` and `<service>.<namespace>.svc.cluster.local`.
    #[arg(long, value_name = "NAME", default_value = "gitops-reverser-webhook")]
    pub webhook_service: String,
    /// Another name (DNS name or IP address) for the self-made certificate; repeatable.
    #[arg(long = "webhook-dns-name", value_name = "NAME")]
    pub webhook_dns_names: Vec<String>,
    /// Without `--webhook-cert`: the ValidatingWebhookConfiguration whose `caBundle` the agent
    /// keeps equal to its CA (needs `get` and `patch` on it); `""` for none.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "gitops-reverser-attribution"
    )]
    pub webhook_configuration: String,
    /// PEM CA that signs the kube-apiserver's client certificate; `/audit` and `/admission`
    /// accept only requests presenting a certificate it signed.
    #[arg(long, value_name = "FILE", alias = "audit-client-ca")]
    pub webhook_client_ca: Option<PathBuf>,
    /// Accept AdmissionReviews without a client certificate (for API servers that cannot be
    /// given one). Anyone who can reach the webhook port can then name a change's author:
    /// restrict the port with a NetworkPolicy. Audit facts still outrank admission facts.
    #[arg(long)]
    pub admission_without_client_cert: bool,
    /// How long a change waits for its audit or admission fact before it is committed as
    /// "unknown (unattributed)".
    #[arg(long, default_value = "3s", value_parser = parse_duration_arg, value_name = "DURATION")]
    pub attribution_grace: std::time::Duration,
    /// Domain of the e-mail addresses made up for Kubernetes users.
    #[arg(long, value_name = "DOMAIN")]
    pub author_email_domain: Option<String>,
    /// A YAML file with the author mapping (emailDomain, table, nameClaim, emailClaim).
    #[arg(long, value_name = "FILE")]
    pub authors: Option<PathBuf>,
    /// How log lines are written on stderr: `text` for people, `json` (one object per line:
    /// `timestamp`, `level`, `target`, `message` and the event's fields) for log collectors.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// The Secret holding the key of the keyed content hash of encrypted Secrets (created with
    /// a random key when missing, at the first GitDestination with `encryption`).
    #[arg(
        long,
        value_name = "NAMESPACE/NAME",
        default_value = "gitops-reverser-system/gitops-reverser-hash-key"
    )]
    pub hash_key_secret: String,
}

/// The format of `run`'s log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Audit log files (JSON lines or EventList documents, optionally gzipped).
    #[arg(required = true, value_name = "AUDIT_LOG")]
    pub logs: Vec<PathBuf>,
    /// The Git repository to write to (https://, ssh://, git@host:path, git://, file:// or a path).
    #[arg(long, value_name = "URL")]
    pub repo: String,
    #[arg(long, default_value = "main")]
    pub branch: String,
    /// Folder of the repository that holds the objects.
    #[arg(long, default_value = "cluster", value_name = "PATH")]
    pub folder: String,
    /// Where the local repository cache lives (default: a folder in the system temp dir).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// A Kubernetes Secret manifest with the repository credentials (SSH key and known_hosts,
    /// or username and password/token; Flux- and Argo CD-shaped Secrets work too).
    #[arg(long, value_name = "FILE")]
    pub credentials: Option<PathBuf>,
    /// Quiet period that closes a commit window (Go duration).
    #[arg(long, default_value = "3s", value_parser = parse_duration_arg)]
    pub window_quiet: std::time::Duration,
    /// Age at which a commit window closes however busy it is.
    #[arg(long, default_value = "60s", value_parser = parse_duration_arg)]
    pub window_max_age: std::time::Duration,
    /// Number of changes at which a commit window closes.
    #[arg(long, default_value_t = 200)]
    pub window_max_changes: usize,
    /// Domain of the e-mail addresses made up for Kubernetes users.
    #[arg(long, value_name = "DOMAIN")]
    pub author_email_domain: Option<String>,
    /// A YAML file with the author mapping (emailDomain, table, nameClaim, emailClaim).
    #[arg(long, value_name = "FILE")]
    pub authors: Option<PathBuf>,
    /// Let Secrets through (by default they are never written).
    #[arg(long)]
    pub allow_secrets: bool,
    #[arg(long, default_value = crate::manifest::layout::DEFAULT_TEMPLATE, value_name = "TEMPLATE")]
    pub path_template: String,
    /// This cluster's name in the folder's ownership marker.
    #[arg(long, default_value = "replay")]
    pub cluster: String,
    /// An OpenSSH private key file (no passphrase) that signs every commit of the replay
    /// (`git verify-commit` with `gpg.format=ssh` checks them).
    #[arg(long, value_name = "FILE")]
    pub signing_key: Option<PathBuf>,
}

fn parse_duration_arg(text: &str) -> Result<std::time::Duration, String> {
    crate::crd::parse_duration(text).map_err(|e| e.to_string())
}

/// Runs a parsed command line; returns the process exit code. Errors are printed on `err`.
pub fn run(cli: Cli, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    // With JSON logs every line on stderr is JSON, the fatal error too.
    let json_logs =
        matches!(&cli.command, Command::Run(args) if args.log_format == LogFormat::Json);
    let result = match cli.command {
        #[cfg(feature = "demo")]
        Command::Demo(args) => crate::demo::run(&args, out).map_err(|e| CliError::Input {
            input: "demo".into(),
            problem: e.to_string(),
        }),
        Command::Crds => crds(out),
        Command::Sanitize(args) => sanitize(&args, out, err),
        Command::Diff(args) => diff(&args, out, err),
        Command::Replay(args) => replay(*args, out),
        Command::Run(args) => run_agent(*args),
        #[cfg(feature = "demo")]
        Command::Sim(args) => kubesim::cli::run_sim_blocking(args, out)
            .map(|()| EXIT_OK)
            .map_err(CliError::from),
    };
    match result {
        Ok(code) => code,
        Err(e) if json_logs => {
            tracing::error!(error = %e, "the agent stopped");
            EXIT_ERROR
        }
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            EXIT_ERROR
        }
    }
}

/// An error of the command line, naming the input it is about.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("cannot read {input}: {source}")]
    Read { input: String, source: io::Error },
    #[error(transparent)]
    Yaml(#[from] crate::manifest::yaml::YamlError),
    #[error("{input}: document {index}: {problem}")]
    Document {
        input: String,
        index: usize,
        problem: String,
    },
    #[error(transparent)]
    Layout(#[from] crate::manifest::layout::LayoutError),
    #[error(transparent)]
    Replay(#[from] crate::replay::ReplayError),
    #[cfg(feature = "demo")]
    #[error(transparent)]
    Sim(#[from] kubesim::SimError),
    #[error("Kubernetes client configuration: {0}")]
    KubeConfig(String),
    #[error(transparent)]
    Agent(#[from] crate::agent::runtime::AgentError),
    #[error(transparent)]
    Ops(#[from] crate::ops::server::OpsError),
    #[error(transparent)]
    Identity(#[from] crate::agent::identity::IdentityError),
    #[error("{input}: {problem}")]
    Input { input: String, problem: String },
    #[error("cannot write output: {0}")]
    Write(#[from] io::Error),
}

fn crds(out: &mut dyn Write) -> Result<u8, CliError> {
    out.write_all(crate::crd::render_all()?.as_bytes())?;
    Ok(EXIT_OK)
}

fn sanitize(args: &SanitizeArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<u8, CliError> {
    let template = PathTemplate::parse(&args.path_template)?;
    if args.folder != "." {
        crate::manifest::layout::validate_folder(&args.folder)?;
    }
    let encryption = encryption_of(args)?;
    let mut policy = if args.allow_secrets || encryption.is_some() {
        ExclusionPolicy::allowing_secrets()
    } else {
        ExclusionPolicy::default()
    };
    policy.user = read_exclusions(args.exclusions.as_deref())?;
    let (input, docs) = read_documents(args.input.as_deref())?;
    let mut kept = Vec::new();
    for (index, doc) in docs.into_iter().flat_map(expand_list).enumerate() {
        let label = describe(&doc);
        match prepare(doc, &policy) {
            Ok(Outcome::Kept(manifest)) => {
                for field in &manifest.excluded_fields {
                    writeln!(
                        err,
                        "excluded {} of {}: {}",
                        field.pointer, manifest.id, field.rule
                    )?;
                }
                kept.push(manifest)
            }
            Ok(Outcome::Skipped { id, exclusion }) => {
                writeln!(err, "skipped {id}: {}", exclusion.reason)?;
            }
            Err(problem) => {
                return Err(CliError::Document {
                    input,
                    index: index + 1,
                    problem: format!("{label}: {problem}"),
                });
            }
        }
    }
    let Some(encryption) = encryption else {
        if args.paths {
            for manifest in &kept {
                writeln!(
                    out,
                    "{} {}",
                    manifest.path(&template, &args.folder, None),
                    manifest.hash
                )?;
            }
        } else {
            out.write_all(to_multi_yaml(kept.iter().map(|m| &m.doc))?.as_bytes())?;
        }
        return Ok(EXIT_OK);
    };
    let now = jiff::Timestamp::now();
    let single = kept.len() == 1;
    for manifest in kept {
        let path = manifest.path(&template, &args.folder, None);
        let (path, hash, text) = if crate::secrets::is_encrypted_kind(&manifest.doc) {
            let (hash, text) =
                crate::secrets::seal(manifest.doc, &encryption, now).map_err(|e| {
                    CliError::Input {
                        input: input.clone(),
                        problem: format!("{}: {e}", manifest.id),
                    }
                })?;
            (crate::secrets::sops_path(&path), hash, text)
        } else {
            (path, manifest.hash, to_yaml(&manifest.doc)?)
        };
        if args.paths {
            writeln!(out, "{path} {hash}")?;
        } else {
            if !single {
                out.write_all(b"---\n")?;
            }
            out.write_all(text.as_bytes())?;
        }
    }
    Ok(EXIT_OK)
}

/// The exclusions of `--exclusions FILE` (the shape of a GitDestination's `spec.exclusions`).
fn read_exclusions(
    file: Option<&Path>,
) -> Result<crate::manifest::user_exclude::UserExclusions, CliError> {
    let Some(file) = file else {
        return Ok(Default::default());
    };
    let input = file.display().to_string();
    let problem = |problem: String| CliError::Input {
        input: input.clone(),
        problem,
    };
    let doc = read_single(file)?;
    let exclusions: crate::crd::Exclusions =
        serde_json::from_value(doc).map_err(|e| problem(e.to_string()))?;
    exclusions
        .compile(&input, "exclusions")
        .map_err(|e| problem(e.to_string()))
}

/// The encryption `sanitize --age-recipient` writes Secrets with, if asked for.
fn encryption_of(args: &SanitizeArgs) -> Result<Option<crate::secrets::Encryption>, CliError> {
    if args.age_recipients.is_empty() {
        return Ok(None);
    }
    let recipients = crate::secrets::Recipients::parse(
        args.age_recipients.iter().map(String::as_str),
    )
    .map_err(|e| CliError::Input {
        input: "--age-recipient".into(),
        problem: e.to_string(),
    })?;
    let key = match &args.hash_key_file {
        Some(file) => std::fs::read(file).map_err(|source| CliError::Read {
            input: file.display().to_string(),
            source,
        })?,
        None => {
            let mut key = vec![0u8; 32];
            aes_gcm::aead::rand_core::RngCore::fill_bytes(&mut aes_gcm::aead::OsRng, &mut key);
            key
        }
    };
    Ok(Some(crate::secrets::Encryption::new(recipients, key)))
}

fn diff(args: &DiffArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<u8, CliError> {
    if let Some(kubeconfig) = &args.kubeconfig {
        return diff_cluster(args, kubeconfig, out);
    }
    let (Some(git_file), Some(live_file)) = (&args.git_file, &args.live_file) else {
        return Err(CliError::Input {
            input: "diff".into(),
            problem: "give GIT_FILE and LIVE_FILE, or --kubeconfig with --repo/--folder or --dir"
                .into(),
        });
    };
    let git = read_single(git_file)?;
    let live = read_single(live_file)?;
    let policy = ExclusionPolicy {
        user: read_exclusions(args.exclusions.as_deref())?,
        ..ExclusionPolicy::default()
    };
    if let Some(skip) = policy.user.object_rule(&live) {
        writeln!(out, "excluded: {} (never written)", skip.id)?;
        return Ok(EXIT_OK);
    }
    let (verdict, excluded) = crate::manifest::pipeline::compare_with(&git, &live, &policy);
    for field in &excluded {
        writeln!(out, "excluded {}: {}", field.pointer, field.rule)?;
    }
    let without = |doc: &Value| {
        let mut doc = sanitized(doc);
        crate::manifest::user_exclude::remove_fields(&mut doc, &excluded);
        doc
    };
    if args.output == DiffOutput::JsonPatch {
        let (patch, code) = match &verdict {
            Verdict::Different { .. } => (
                crate::cluster_diff::patch_to_git(&git, &live),
                EXIT_DIFFERENT,
            ),
            Verdict::Equivalent(_) => (json_patch::Patch::default(), EXIT_OK),
        };
        let text = serde_json::to_string_pretty(&patch).map_err(io::Error::other)?;
        writeln!(out, "{text}")?;
        writeln!(err, "{verdict}")?;
        return Ok(code);
    }
    if let Verdict::Different { paths } = &verdict {
        let (git_yaml, live_yaml) = (to_yaml(&without(&git))?, to_yaml(&without(&live))?);
        let diff = similar::TextDiff::from_lines(&git_yaml, &live_yaml);
        let header_git = format!("git: {}", git_file.display());
        let header_live = format!("live: {}", live_file.display());
        write!(
            out,
            "{}",
            diff.unified_diff()
                .context_radius(3)
                .header(&header_git, &header_live)
        )?;
        writeln!(out, "different: {}", paths.join(", "))?;
        return Ok(EXIT_DIFFERENT);
    }
    writeln!(out, "{verdict}")?;
    Ok(EXIT_OK)
}

fn diff_cluster(args: &DiffArgs, kubeconfig: &Path, out: &mut dyn Write) -> Result<u8, CliError> {
    let source = match (&args.dir, &args.repo, &args.folder) {
        (Some(dir), _, _) => crate::cluster_diff::GitSource::Dir(dir.clone()),
        (None, Some(repo), Some(folder)) => {
            let credentials = match &args.credentials {
                Some(path) => Some(read_credentials(path)?),
                None => None,
            };
            crate::cluster_diff::GitSource::Repo {
                remote: crate::git::transport::Remote::new(repo.clone(), credentials),
                branch: args.branch.clone(),
                folder: folder.clone(),
                state_dir: std::env::temp_dir().join("gitops-reverser"),
            }
        }
        _ => {
            return Err(CliError::Input {
                input: "diff --kubeconfig".into(),
                problem: "give --repo URL --folder PATH, or --dir DIR".into(),
            });
        }
    };
    let runtime = runtime()?;
    let equivalent = runtime.block_on(async {
        let client = kube_client(Some(kubeconfig)).await?;
        crate::cluster_diff::diff_cluster(client, &source, out)
            .await
            .map_err(|e| CliError::Input {
                input: "diff".into(),
                problem: e.to_string(),
            })
    })?;
    Ok(if equivalent { EXIT_OK } else { EXIT_DIFFERENT })
}

/// The async runtime of the commands that talk to a cluster or a remote.
fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(CliError::Write)
}

/// A Kubernetes client from a kubeconfig file, or the inferred configuration (in-cluster,
/// `$KUBECONFIG`, `~/.kube/config`) without one.
async fn kube_client(kubeconfig: Option<&Path>) -> Result<kube::Client, CliError> {
    let config = match kubeconfig {
        Some(path) => {
            let fail = |e: &dyn std::fmt::Display| {
                CliError::KubeConfig(format!("{}: {e}", path.display()))
            };
            let file = kube::config::Kubeconfig::read_from(path).map_err(|e| fail(&e))?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| fail(&e))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| CliError::KubeConfig(e.to_string()))?,
    };
    kube::Client::try_from(config).map_err(|e| CliError::KubeConfig(e.to_string()))
}

/// Private directories for git and ssh under `<state_dir>/tmp`, with a killed run's leftovers
/// (key files, askpass scripts) removed now.
fn private_dirs_under(state_dir: &std::path::Path) -> Result<(), CliError> {
    let root = state_dir.join("tmp");
    match crate::git::private_dir::set_root(&root) {
        Ok(0) => Ok(()),
        Ok(n) => {
            tracing::warn!(removed = n, dir = %root.display(),
                "removed private directories a killed run left behind");
            Ok(())
        }
        Err(e) => Err(CliError::Input {
            input: root.display().to_string(),
            problem: format!("cannot prepare the private directory for git and ssh: {e}"),
        }),
    }
}

/// The self-made serving certificate's settings: when the webhooks are served and no
/// certificate files are given.
fn self_managed(
    args: &RunArgs,
    default_namespace: &str,
) -> Option<crate::attribution::self_managed::SelfManaged> {
    if args.webhook_addr.is_none() || args.webhook_cert.is_some() {
        return None;
    }
    let namespace = args
        .webhook_namespace
        .clone()
        .unwrap_or_else(|| default_namespace.to_string());
    let mut names = crate::attribution::self_managed::SelfManaged::service_names(
        &args.webhook_service,
        &namespace,
    );
    names.extend(args.webhook_dns_names.iter().cloned());
    Some(crate::attribution::self_managed::SelfManaged {
        namespace,
        secret: args.webhook_certificate_secret.clone(),
        webhook_configuration: Some(args.webhook_configuration.clone())
            .filter(|name| !name.is_empty()),
        names,
        dir: args.state_dir.join("webhook-tls"),
        recheck: std::time::Duration::from_secs(300),
    })
}

fn run_agent(args: RunArgs) -> Result<u8, CliError> {
    private_dirs_under(&args.state_dir)?;
    let runtime = runtime()?;
    runtime.block_on(async move {
        let client = kube_client(args.kubeconfig.as_deref()).await?;
        let authors = read_authors(args.authors.as_deref(), args.author_email_domain.clone())?;
        let self_managed = self_managed(&args, client.default_namespace());
        let serving = match (&self_managed, &args.webhook_cert, &args.webhook_key) {
            (Some(settings), _, _) => {
                crate::attribution::self_managed::reconcile(&client, settings)
                    .await
                    .map_err(|e| CliError::Input {
                        input: "the webhook's serving certificate".into(),
                        problem: e.to_string(),
                    })?;
                Some((settings.cert_file(), settings.key_file()))
            }
            (None, Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
            _ => None,
        };
        let (resolver, webhook) = match (&args.webhook_addr, &serving) {
            (Some(addr), Some((cert, key))) => {
                let index = std::sync::Arc::new(crate::attribution::FactIndex::default());
                let mut config =
                    crate::attribution::WebhookConfig::new(*addr, cert.clone(), key.clone());
                config.client_ca_file = args.webhook_client_ca.clone();
                config.admission_without_client_cert = args.admission_without_client_cert;
                if args.admission_without_client_cert {
                    tracing::warn!(
                        "/admission accepts AdmissionReviews from any TLS client \
                         (--admission-without-client-cert): whoever reaches the port can name \
                         a change's author"
                    );
                }
                let server = crate::attribution::WebhookServer::start(config, index.clone())
                    .await
                    .map_err(|e| CliError::Input {
                        input: addr.to_string(),
                        problem: e.to_string(),
                    })?;
                let resolver = crate::attribution::Resolver::new(
                    index.clone(),
                    args.attribution_grace,
                    authors,
                );
                // With the audit webhook in use, a change found only by an admission fact
                // waits (up to the grace) for its audit fact, which outranks it.
                let resolver = std::sync::Arc::new(
                    resolver.preferring_audit(args.webhook_client_ca.is_some()),
                );
                (Some(resolver), Some(server))
            }
            _ => (None, None),
        };
        let cluster = match &args.cluster_name {
            Some(name) => name.clone(),
            None => crate::agent::identity::cluster_uid(&client).await?,
        };
        let election = if args.leader_elect {
            let config = crate::agent::election::ElectionConfig {
                identity: crate::agent::identity::pod_name(),
                namespace: args
                    .leader_elect_resource_namespace
                    .clone()
                    .or_else(|| {
                        std::env::var("POD_NAMESPACE")
                            .ok()
                            .filter(|n| !n.is_empty())
                    })
                    .unwrap_or_else(|| client.default_namespace().to_string()),
                lease_duration: args.leader_elect_lease_duration,
                renew_deadline: args.leader_elect_renew_deadline,
                retry_period: args.leader_elect_retry_period,
            };
            config.validate().map_err(|e| CliError::Input {
                input: "--leader-elect".into(),
                problem: e.to_string(),
            })?;
            tracing::info!(identity = %config.identity, namespace = %config.namespace,
                lease_duration = ?config.lease_duration, "leader election per repository");
            Some(config)
        } else {
            None
        };
        tracing::info!(%cluster, "cluster identity in ownership markers");
        let options = crate::agent::runtime::AgentOptions {
            state_dir: args.state_dir,
            allow_secrets: args.allow_secrets,
            cluster,
            election,
            streaming_lists: args.streaming_lists,
            transport: std::sync::Arc::new(crate::git::transport::GitCli::new()),
            settle: std::time::Duration::from_millis(200),
            resolver: resolver.clone(),
            hash_key_secret: match args.hash_key_secret.split_once('/') {
                Some((ns, name)) if !ns.is_empty() && !name.is_empty() => {
                    crate::config::ObjectKey::new(ns, name)
                }
                _ => {
                    return Err(CliError::Input {
                        input: "--hash-key-secret".into(),
                        problem: format!("{:?} is not NAMESPACE/NAME", args.hash_key_secret),
                    });
                }
            },
            ..crate::agent::runtime::AgentOptions::default()
        };
        let resolver_for_metrics = resolver;
        let handle = crate::agent::runtime::handle(&options);
        if let (Some(resolver), Some(server)) = (&resolver_for_metrics, &webhook) {
            let (resolver, counters) = (resolver.clone(), server.counters());
            handle
                .metrics
                .set_attribution(move || crate::ops::metrics::AttributionSample {
                    webhook: counters.snapshot(),
                    facts: resolver.index().stats(),
                    resolver: resolver.stats(),
                });
        }
        let server = crate::ops::server::OpsServer::bind(args.metrics_addr).await?;
        let state = crate::ops::server::OpsState {
            metrics: handle.metrics.clone(),
            readiness: handle.readiness.clone(),
            status: Some(handle.board.clone()),
        };
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut ops_stop = stop_rx.clone();
        let ops = tokio::spawn(server.run(state, async move {
            let _ = ops_stop.wait_for(|stop| *stop).await;
        }));
        let shutdown = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            let terminated = async {
                match term.as_mut() {
                    Some(term) => {
                        term.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminated => {}
            }
            tracing::info!("shutting down: flushing open windows and pushing");
        };
        let keeper = self_managed.map(|settings| {
            let mut stop = stop_rx.clone();
            tokio::spawn(crate::attribution::self_managed::keep_current(
                client.clone(),
                settings,
                async move {
                    let _ = stop.wait_for(|stop| *stop).await;
                },
            ))
        });
        let result = crate::agent::runtime::run(client, options, handle, shutdown).await;
        let _ = stop_tx.send(true);
        if let Some(keeper) = keeper {
            let _ = keeper.await;
        }
        let _ = ops.await;
        if let Some(webhook) = webhook {
            webhook.shutdown().await;
        }
        result?;
        Ok(EXIT_OK)
    })
}

fn replay(args: ReplayArgs, out: &mut dyn Write) -> Result<u8, CliError> {
    crate::manifest::layout::validate_folder(&args.folder)?;
    let credentials = match &args.credentials {
        Some(path) => Some(read_credentials(path)?),
        None => None,
    };
    let authors = read_authors(args.authors.as_deref(), args.author_email_domain)?;
    let state_dir = args
        .state_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("gitops-reverser"));
    private_dirs_under(&state_dir)?;
    let options = crate::replay::ReplayOptions {
        repo: crate::git::transport::Remote::new(args.repo, credentials),
        branch: args.branch,
        destination: format!("replay/{}", args.folder),
        folder: args.folder,
        state_dir,
        windows: crate::git::window::WindowConfig {
            quiet: args.window_quiet,
            max_age: args.window_max_age,
            max_changes: args.window_max_changes,
        },
        authors,
        exclusions: if args.allow_secrets {
            ExclusionPolicy::allowing_secrets()
        } else {
            ExclusionPolicy::default()
        },
        template: PathTemplate::parse(&args.path_template)?,
        cluster: args.cluster,
        signer: match &args.signing_key {
            Some(path) => Some(std::sync::Arc::new(
                crate::git::signing::SshSigner::from_file(path).map_err(|e| CliError::Input {
                    input: path.display().to_string(),
                    problem: e.to_string(),
                })?,
            )),
            None => None,
        },
    };
    let runtime = runtime()?;
    let summary = runtime.block_on(crate::replay::replay(&args.logs, options))?;
    writeln!(out, "{summary}")?;
    Ok(EXIT_OK)
}

/// The author mapping from a YAML file (or the default), with the e-mail domain overridden.
fn read_authors(
    path: Option<&Path>,
    domain: Option<String>,
) -> Result<crate::identity::AuthorMapping, CliError> {
    let mut authors = match path {
        Some(path) => {
            let (input, mut docs) = read_documents(Some(path))?;
            let doc = docs.pop().unwrap_or(Value::Null);
            serde_json::from_value(doc).map_err(|e| CliError::Input {
                input,
                problem: e.to_string(),
            })?
        }
        None => crate::identity::AuthorMapping::default(),
    };
    if let Some(domain) = domain {
        authors.email_domain = domain;
    }
    Ok(authors)
}

/// Reads repository credentials from a Secret manifest (`data` base64, `stringData` plain).
fn read_credentials(path: &Path) -> Result<crate::git::credentials::Credentials, CliError> {
    use base64::Engine;
    let (input, docs) = read_documents(Some(path))?;
    let secret = docs.into_iter().next().unwrap_or(Value::Null);
    let mut data = std::collections::BTreeMap::new();
    if let Some(map) = secret.get("data").and_then(Value::as_object) {
        for (key, value) in map {
            let text = value.as_str().unwrap_or_default();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|_| CliError::Input {
                    input: input.clone(),
                    problem: format!("data.{key} is not base64"),
                })?;
            data.insert(key.clone(), bytes);
        }
    }
    if let Some(map) = secret.get("stringData").and_then(Value::as_object) {
        for (key, value) in map {
            data.insert(
                key.clone(),
                value.as_str().unwrap_or_default().as_bytes().to_vec(),
            );
        }
    }
    crate::git::credentials::Credentials::from_secret_data(&data).map_err(|e| CliError::Input {
        input,
        problem: e.to_string(),
    })
}

/// Reads a file (or stdin for `-`/nothing) and parses it into documents; returns the name used
/// in messages with them.
fn read_documents(path: Option<&Path>) -> Result<(String, Vec<Value>), CliError> {
    let (input, text) = match path {
        None => read_stdin()?,
        Some(p) if p.as_os_str() == "-" => read_stdin()?,
        Some(p) => {
            let input = p.display().to_string();
            let text = std::fs::read_to_string(p).map_err(|source| CliError::Read {
                input: input.clone(),
                source,
            })?;
            (input, text)
        }
    };
    let docs = parse_documents(&text, &input)?;
    Ok((input, docs))
}

fn read_stdin() -> Result<(String, String), CliError> {
    let input = "<stdin>".to_string();
    let mut text = String::new();
    io::stdin()
        .read_to_string(&mut text)
        .map_err(|source| CliError::Read {
            input: input.clone(),
            source,
        })?;
    Ok((input, text))
}

fn read_single(path: &Path) -> Result<Value, CliError> {
    let (input, docs) = read_documents(Some(path))?;
    let count = docs.len();
    let mut docs = docs.into_iter();
    match (docs.next(), count) {
        (Some(doc), 1) if doc.is_object() => Ok(doc),
        (Some(_), 1) => Err(CliError::Document {
            input,
            index: 1,
            problem: "expected a Kubernetes object (a mapping)".into(),
        }),
        _ => Err(CliError::Document {
            input,
            index: count,
            problem: format!("expected exactly one document, found {count}"),
        }),
    }
}
