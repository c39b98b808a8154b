//! The repositories as the agent sees them: the credentials read from each GitRepoConfig's
//! Secret, and each repository's reachability from cheap probes (`git ls-remote`) and from the
//! workers' push rounds. Probes run on their own tasks; nothing here blocks the main loop
//! beyond reading the Secrets.

use crate::config::{ObjectKey, Plan, RemoteProblem, RepoPlan};
use crate::crd::GitRepoConfig;
use crate::git::credentials::{Credentials, SecretString};
use crate::git::signing::SshSigner;

/// Keys of a signing Secret that may hold the OpenSSH private key, in order of preference.
const SIGNING_KEYS: [&str; 3] = ["signing-key", "identity", "ssh-privatekey"];
use crate::git::transport::{Remote, TlsSettings, Transport};
use crate::git::worker::{PushEvent, WorkerError};
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc};

/// How often a repository's reachability is checked again while nothing changes.
const PROBE_INTERVAL: Duration = Duration::from_secs(300);
/// How soon an unreachable repository is checked again, so its condition recovers promptly,
/// and how often credentials Secrets are read again (a rotated token is used from then on).
pub const DEFAULT_RECHECK: Duration = Duration::from_secs(20);

/// What a reachability check was about: a change of any of these checks again at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeKey {
    url: String,
    generation: Option<i64>,
    /// The credentials probed with (`Debug` prints no secret): a rotated token is verified
    /// again at once.
    credentials: Option<Credentials>,
    tls: TlsSettings,
}

/// A reachability check: what, when, and the answer (`None` while it runs).
type Probe = (ProbeKey, Instant, Option<Result<(), RemoteProblem>>);

/// The outcome of the latest push round per repository URL, written by the workers (from
/// their blocking threads) and taken by the main loop: a failed push marks the repository
/// unreachable at once, a successful one clears it. Bounded: one entry per repository.
#[derive(Default)]
pub struct PushLedger {
    latest: std::sync::Mutex<BTreeMap<crate::git::url::NormalizedUrl, Result<(), RemoteProblem>>>,
    pub(crate) changed: Notify,
}

impl PushLedger {
    pub(crate) fn record(&self, key: &crate::git::url::RepoKey, event: &PushEvent<'_>) {
        let result = match event {
            PushEvent::Pushed { .. } => Ok(()),
            PushEvent::Failed(WorkerError::Transport { source, .. }) => Err(RemoteProblem::new(
                format!("the last push failed: {source}"),
                source.rejects_credentials(),
            )),
            // Contention and local cache problems say nothing about reachability.
            PushEvent::Failed(_) => return,
        };
        if let Ok(mut latest) = self.latest.lock() {
            latest.insert(key.url.clone(), result);
        }
        self.changed.notify_one();
    }

    pub(crate) fn take(
        &self,
    ) -> BTreeMap<crate::git::url::NormalizedUrl, Result<(), RemoteProblem>> {
        self.latest
            .lock()
            .map(|mut latest| std::mem::take(&mut *latest))
            .unwrap_or_default()
    }
}

/// What to probe a repository with, or `None` when it names a Secret that gave no usable
/// credentials (`CredentialsValid` says why; probing without them would only mislead).
fn probe_key(
    repo: &RepoPlan,
    access: Option<&Result<Access, String>>,
    insecure: bool,
) -> Option<ProbeKey> {
    let (creds, ca_bundle) = match (&repo.secret, access) {
        (None, _) => (None, None),
        (Some(_), Some(Ok(a))) => (a.credentials.clone(), a.ca_bundle.clone()),
        (Some(_), _) => return None,
    };
    Some(ProbeKey {
        url: repo.remote_url.clone(),
        generation: repo.generation,
        credentials: creds,
        tls: TlsSettings {
            ca_bundle,
            insecure_skip_verify: insecure,
        },
    })
}

/// What a credentials Secret holds: how to authenticate (nothing, for a Secret that only
/// carries a CA), and the CA bundle to verify the HTTPS server with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access {
    pub credentials: Option<Credentials>,
    pub ca_bundle: Option<String>,
}

impl Access {
    /// Reads a Secret's data: credentials (any shape [`Credentials::from_secret_data`] takes)
    /// and a CA bundle (`caFile` as Flux names it, or `ca.crt`). A Secret with only a CA
    /// bundle is fine: the repository is then read without credentials.
    pub fn from_secret_data(
        data: &BTreeMap<String, Vec<u8>>,
    ) -> Result<Self, crate::git::credentials::CredentialsError> {
        let ca_bundle = crate::git::credentials::ca_bundle_from_secret_data(data)?;
        match Credentials::from_secret_data(data) {
            Ok(credentials) => Ok(Self {
                credentials: Some(credentials),
                ca_bundle,
            }),
            Err(crate::git::credentials::CredentialsError::NoCredentials { .. })
                if ca_bundle.is_some() =>
            {
                Ok(Self {
                    credentials: None,
                    ca_bundle,
                })
            }
            Err(e) => Err(e),
        }
    }
}

/// A finished probe: which GitRepoConfig, what was probed, the answer.
pub type Probed = (ObjectKey, ProbeKey, Result<(), RemoteProblem>);

/// A signing key as read: the key text (to notice a rotation) and the signer, or why not.
type SigningEntry = (Option<SecretString>, Result<Arc<SshSigner>, String>);

/// Credentials and reachability of every GitRepoConfig.
pub struct Remotes {
    client: kube::Client,
    transport: Arc<dyn Transport>,
    recheck: Duration,
    ledger: Arc<PushLedger>,
    /// Reachability of each GitRepoConfig's repository: what was probed (URL, credentials,
    /// generation), when, and the answer (`None` while the probe runs).
    probes: BTreeMap<ObjectKey, Probe>,
    probe_tx: mpsc::Sender<Probed>,
    /// The credentials read last, per GitRepoConfig.
    credentials: BTreeMap<ObjectKey, Result<Access, String>>,
    /// The GitRepoConfigs of the last plan (their Secrets are read again between plans).
    repos: Vec<GitRepoConfig>,
    /// The signing key of each GitRepoConfig that names one: the key text it was made from
    /// (to notice a rotation) and the signer, or why the key cannot be used.
    signers: BTreeMap<ObjectKey, SigningEntry>,
}

impl Remotes {
    pub fn new(
        client: kube::Client,
        transport: Arc<dyn Transport>,
        recheck: Duration,
        ledger: Arc<PushLedger>,
        probe_tx: mpsc::Sender<Probed>,
    ) -> Self {
        Self {
            client,
            transport,
            recheck,
            ledger,
            probes: BTreeMap::new(),
            probe_tx,
            credentials: BTreeMap::new(),
            repos: Vec::new(),
            signers: BTreeMap::new(),
        }
    }

    /// Reads the signing key of each GitRepoConfig that names one (`commit.signingKeyRef`) and
    /// keeps a signer for it; returns each one's fingerprint and public key, or why not, for the
    /// plan's inputs.
    pub async fn read_signing_keys(
        &mut self,
        repos: &[GitRepoConfig],
    ) -> BTreeMap<ObjectKey, Result<String, String>> {
        let texts = self.signing_key_texts(repos).await;
        let mut signers = BTreeMap::new();
        for (key, text) in texts {
            let reused = self
                .signers
                .remove(&key)
                .filter(|(old, _)| old.as_ref().ok_or(()) == text.as_ref().map_err(|_| ()));
            let entry = match (reused, text) {
                (Some(entry), _) => entry,
                (None, Err(problem)) => (None, Err(problem)),
                (None, Ok(text)) => {
                    let made = {
                        let text = text.clone();
                        tokio::task::spawn_blocking(move || SshSigner::from_private_key(text)).await
                    };
                    let signer = match made {
                        Ok(Ok(signer)) => Ok(Arc::new(signer)),
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(e) => Err(e.to_string()),
                    };
                    (Some(text), signer)
                }
            };
            signers.insert(key, entry);
        }
        self.signers = signers;
        self.signers
            .iter()
            .map(|(k, (_, signer))| {
                let shown = signer.as_ref().map(|s| {
                    format!(
                        "fingerprint {}, public key {}",
                        s.fingerprint(),
                        s.public_key()
                    )
                });
                (k.clone(), shown.map_err(Clone::clone))
            })
            .collect()
    }

    /// The signer of a GitRepoConfig, when it names a usable signing key.
    pub fn signer_of(&self, repo: &ObjectKey) -> Option<Arc<SshSigner>> {
        self.signers
            .get(repo)
            .and_then(|(_, s)| s.as_ref().ok())
            .cloned()
    }

    /// The private key text of each named signing Secret, or why it cannot be read.
    async fn signing_key_texts(
        &self,
        repos: &[GitRepoConfig],
    ) -> BTreeMap<ObjectKey, Result<SecretString, String>> {
        let mut out = BTreeMap::new();
        for repo in repos {
            let Some(name) = repo.spec.signing_secret_name() else {
                continue;
            };
            let ns = repo.namespace().unwrap_or_default();
            let key = ObjectKey::new(&ns, repo.name_any());
            let text = self.secret_data(&ns, name).await.and_then(|data| {
                SIGNING_KEYS
                    .iter()
                    .find_map(|k| data.get(*k))
                    .map(|bytes| SecretString::new(String::from_utf8_lossy(bytes).into_owned()))
                    .ok_or_else(|| {
                        format!(
                            "Secret {ns}/{name} has none of the keys {}",
                            SIGNING_KEYS.join(", ")
                        )
                    })
            });
            out.insert(key, text);
        }
        out
    }

    /// A Secret's data (`data` and `stringData`), or why it cannot be read. Names, never values.
    async fn secret_data(&self, ns: &str, name: &str) -> Result<BTreeMap<String, Vec<u8>>, String> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        match api.get_opt(name).await {
            Ok(Some(secret)) => {
                let mut data: BTreeMap<String, Vec<u8>> = secret
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0))
                    .collect();
                for (k, v) in secret.string_data.unwrap_or_default() {
                    data.insert(k, v.into_bytes());
                }
                Ok(data)
            }
            Ok(None) => Err(format!("Secret {ns}/{name} not found")),
            Err(e) => Err(format!("Secret {ns}/{name} cannot be read: {e}")),
        }
    }

    /// Reads the credentials of `repos` (a new plan's GitRepoConfigs) and keeps them; returns
    /// each one's check for the plan's inputs.
    pub async fn read_credentials(
        &mut self,
        repos: &[GitRepoConfig],
    ) -> BTreeMap<ObjectKey, Result<(), String>> {
        self.credentials = self.check_credentials(repos).await;
        self.repos = repos.to_vec();
        self.credentials
            .iter()
            .map(|(k, v)| (k.clone(), v.as_ref().map(|_| ()).map_err(Clone::clone)))
            .collect()
    }

    /// The remote of a GitRepoConfig: `url` with the credentials and CA bundle of its Secret
    /// (when it names a usable one) and its `insecureSkipTlsVerify`.
    pub fn remote_for(&self, repo: &ObjectKey, url: &str) -> Remote {
        let access = self
            .credentials
            .get(repo)
            .and_then(|r| r.as_ref().ok())
            .cloned();
        let (credentials, ca_bundle) = access
            .map(|a| (a.credentials, a.ca_bundle))
            .unwrap_or_default();
        Remote::new(url, credentials).with_tls(TlsSettings {
            ca_bundle,
            insecure_skip_verify: self.insecure(repo),
        })
    }

    /// The GitRepoConfig's `insecureSkipTlsVerify`.
    fn insecure(&self, repo: &ObjectKey) -> bool {
        self.repos.iter().any(|r| {
            r.spec.insecure_skip_tls_verify
                && r.metadata.name.as_deref() == Some(repo.name.as_str())
                && r.metadata.namespace.as_deref() == Some(repo.namespace.as_str())
        })
    }

    /// A probe finished: true when the answer differs from the last one (conditions change).
    pub fn probed(&mut self, (key, probe, result): Probed) -> bool {
        let before = self.probes.get(&key).and_then(|(_, _, r)| r.clone());
        let changed = before.as_ref() != Some(&result);
        self.probes
            .insert(key, (probe, Instant::now(), Some(result)));
        changed
    }

    pub fn reachability(&self) -> BTreeMap<ObjectKey, Result<(), RemoteProblem>> {
        self.probes
            .iter()
            .filter_map(|(key, (_, _, result))| Some((key.clone(), result.clone()?)))
            .collect()
    }

    /// Starts a cheap remote check (`git ls-remote`) for each repository whose URL, credentials
    /// or generation changed, or whose last check is older than [`PROBE_INTERVAL`] (or
    /// [`AgentOptions::recheck`] while it is unreachable).
    pub fn probe(&mut self, plan: &Plan) {
        let credentials = &self.credentials;
        self.probes.retain(|key, _| plan.repos.contains_key(key));
        for (key, repo) in &plan.repos {
            if repo.url.is_none() {
                continue;
            }
            let Some(probe) = probe_key(repo, credentials.get(key), self.insecure(key)) else {
                continue; // CredentialsValid already says why
            };
            let creds = probe.credentials.clone();
            let tls = probe.tls.clone();
            let fresh = self.probes.get(key).is_some_and(|(p, at, result)| {
                let every = match result {
                    Some(Err(_)) => self.recheck,
                    _ => PROBE_INTERVAL,
                };
                *p == probe && at.elapsed() < every
            });
            if fresh {
                continue;
            }
            let previous = self.probes.get(key).and_then(|(_, _, r)| r.clone());
            self.probes
                .insert(key.clone(), (probe.clone(), Instant::now(), previous));
            let transport = self.transport.clone();
            let remote = Remote::new(repo.remote_url.clone(), creds).with_tls(tls);
            let tx = self.probe_tx.clone();
            let key = key.clone();
            tokio::spawn(async move {
                let result = tokio::task::spawn_blocking(move || {
                    transport
                        .probe(&remote)
                        .map(|_| ())
                        .map_err(|e| RemoteProblem::new(e.to_string(), e.rejects_credentials()))
                })
                .await
                .unwrap_or_else(|e| Err(RemoteProblem::new(e.to_string(), false)));
                let _ = tx.send((key, probe, result)).await;
            });
        }
    }

    /// Records the workers' latest push outcomes as each repository's reachability (a failed
    /// push marks it unreachable at once; a successful one clears it). True when a condition
    /// changes.
    pub fn take_push_results(&mut self, plan: &Plan) -> bool {
        let results = self.ledger.take();
        let mut changed = false;
        for (url, result) in results {
            for (key, repo) in &plan.repos {
                if repo.url.as_ref() != Some(&url) {
                    continue;
                }
                // A push with unusable credentials (a Secret gone or broken) still tells
                // whether the remote took it.
                let probe = probe_key(repo, self.credentials.get(key), self.insecure(key))
                    .unwrap_or_else(|| ProbeKey {
                        url: repo.remote_url.clone(),
                        generation: repo.generation,
                        credentials: None,
                        tls: TlsSettings::default(),
                    });
                let before = self.probes.get(key).and_then(|(_, _, r)| r.clone());
                if before.as_ref() != Some(&result) {
                    match &result {
                        Ok(()) => {
                            tracing::info!(repository = %key, "push succeeded; repository reachable")
                        }
                        Err(problem) => {
                            tracing::warn!(repository = %key, reason = %problem.message,
                            "push failed; repository marked unreachable until a push or probe succeeds")
                        }
                    }
                    changed = true;
                }
                self.probes
                    .insert(key.clone(), (probe, Instant::now(), Some(result.clone())));
            }
        }
        changed
    }

    /// Reads the credentials Secrets again (between plan applies): true when any changed, so
    /// the plan is applied again and the workers use the new credentials from their next push.
    pub async fn credentials_changed(&mut self) -> bool {
        if self.repos.is_empty() {
            return false;
        }
        let fresh = self.check_credentials(&self.repos).await;
        if fresh != self.credentials {
            return true;
        }
        let texts = self.signing_key_texts(&self.repos).await;
        texts.len() != self.signers.len()
            || texts.iter().any(|(key, text)| {
                self.signers
                    .get(key)
                    .is_none_or(|(old, _)| old.as_ref().ok_or(()) != text.as_ref().map_err(|_| ()))
            })
    }

    /// Reads each referenced credentials Secret and checks its shape.
    pub async fn check_credentials(
        &self,
        repos: &[GitRepoConfig],
    ) -> BTreeMap<ObjectKey, Result<Access, String>> {
        let mut out = BTreeMap::new();
        for repo in repos {
            let Some(name) = repo.spec.secret_name() else {
                continue;
            };
            let ns = repo.namespace().unwrap_or_default();
            let key = ObjectKey::new(&ns, repo.name_any());
            let result = self.secret_data(&ns, name).await.and_then(|data| {
                Access::from_secret_data(&data).map_err(|e| format!("Secret {ns}/{name}: {e}"))
            });
            out.insert(key, result);
        }
        out
    }
}
