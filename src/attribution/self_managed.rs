//! The webhook's serving certificate made and kept by the agent itself (installs without
//! cert-manager): the CA and certificate live in one Secret of the agent's namespace, shared by
//! every replica and reused across restarts; the serving files are written for the webhook
//! server (which reloads them), and the ValidatingWebhookConfiguration's `caBundle` is kept
//! equal to the CA. The decisions are [`super::pki`]'s; this is the I/O around them.

use super::pki::{self, Next, WebhookPki};
use base64::Engine;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The Secret's keys.
const CA_CERT: &str = "ca.crt";
const CA_KEY: &str = "ca.key";
const CERT: &str = "tls.crt";
const KEY: &str = "tls.key";
/// Field manager of the agent's writes.
const MANAGER: &str = "gitops-reverser";
/// Attempts when other replicas write the Secret at the same time.
const ATTEMPTS: usize = 5;

/// Where the certificate is kept and what it is for.
#[derive(Debug, Clone)]
pub struct SelfManaged {
    /// The agent's namespace, which holds the Secret.
    pub namespace: String,
    /// The Secret holding the CA and the serving certificate.
    pub secret: String,
    /// The ValidatingWebhookConfiguration whose `caBundle` is kept current; `None` leaves
    /// webhook configurations alone (the audit webhook alone, configured by hand).
    pub webhook_configuration: Option<String>,
    /// The serving certificate's names (DNS names or IP addresses).
    pub names: Vec<String>,
    /// Where the serving certificate and key are written for the webhook server.
    pub dir: PathBuf,
    /// How often the Secret and the `caBundle` are checked again.
    pub recheck: Duration,
}

impl SelfManaged {
    /// The DNS names of Service `service` in `namespace`, as the API server calls it.
    pub fn service_names(service: &str, namespace: &str) -> Vec<String> {
        vec![
            format!("{service}.{namespace}.svc"),
            format!("{service}.{namespace}.svc.cluster.local"),
        ]
    }

    pub fn cert_file(&self) -> PathBuf {
        self.dir.join(CERT)
    }

    pub fn key_file(&self) -> PathBuf {
        self.dir.join(KEY)
    }
}

/// A step of keeping the certificate failed; each names the object or file.
#[derive(Debug, thiserror::Error)]
pub enum SelfManagedError {
    #[error("Secret {namespace}/{name}: cannot {verb} it: {source}")]
    Secret {
        namespace: String,
        name: String,
        verb: &'static str,
        source: Box<kube::Error>,
    },
    #[error(
        "Secret {namespace}/{name} does not exist and cannot be created: {source} (the \
         manifests ship it empty; apply manifests/components/webhook-self-signed or grant \
         `create` on secrets in {namespace})"
    )]
    Missing {
        namespace: String,
        name: String,
        source: Box<kube::Error>,
    },
    #[error("Secret {namespace}/{name}: still changing after {ATTEMPTS} attempts (other replicas)")]
    Contended { namespace: String, name: String },
    #[error(
        "ValidatingWebhookConfiguration {name}: cannot {verb} its caBundle: {source} (apply \
         manifests/components/admission-webhook, or pass --webhook-configuration \"\" when only \
         the audit webhook is used)"
    )]
    Configuration {
        name: String,
        verb: &'static str,
        source: Box<kube::Error>,
    },
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    #[error("{path}: cannot write the webhook's serving certificate: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn text(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone())
        .ok()
        .filter(|s| !s.is_empty())
}

/// The PKI stored in the Secret, when every key is there.
fn stored(secret: &Secret) -> Option<WebhookPki> {
    Some(WebhookPki {
        ca_cert: text(secret, CA_CERT)?,
        ca_key: text(secret, CA_KEY)?,
        cert: text(secret, CERT)?,
        key: text(secret, KEY)?,
    })
}

fn data(pki: &WebhookPki) -> serde_json::Value {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    json!({CA_CERT: b64(&pki.ca_cert), CA_KEY: b64(&pki.ca_key), CERT: b64(&pki.cert), KEY: b64(&pki.key)})
}

fn is_code(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(status) if status.code == code)
}

/// The PKI to serve with: the Secret's when usable, else a newly issued one written to the
/// Secret (guarded by its resourceVersion, so two replicas starting together agree on one).
pub async fn ensure_secret(
    client: &kube::Client,
    settings: &SelfManaged,
) -> Result<WebhookPki, SelfManagedError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &settings.namespace);
    let secret_error = |verb: &'static str| {
        move |e: kube::Error| SelfManagedError::Secret {
            namespace: settings.namespace.clone(),
            name: settings.secret.clone(),
            verb,
            source: Box::new(e),
        }
    };
    for _ in 0..ATTEMPTS {
        let current = api
            .get_opt(&settings.secret)
            .await
            .map_err(secret_error("read"))?;
        let names = settings.names.clone();
        let from = current.as_ref().and_then(stored);
        let next = tokio::task::spawn_blocking(move || pki::next(from, &names, SystemTime::now()))
            .await
            .map_err(|e| pki::PkiError::Issue {
                what: "certificate",
                message: e.to_string(),
            })??;
        let (pki, reason) = match next {
            Next::Keep(pki) => return Ok(pki),
            Next::Issue { pki, reason } => (pki, reason),
        };
        match current {
            None => {
                let secret: Secret = serde_json::from_value(json!({
                    "metadata": {"name": settings.secret, "namespace": settings.namespace,
                        "labels": {"app.kubernetes.io/name": "gitops-reverser",
                                   "app.kubernetes.io/component": "attribution"}},
                    "type": "Opaque",
                    "data": data(&pki),
                }))
                .expect("a Secret");
                match api.create(&PostParams::default(), &secret).await {
                    Ok(_) => {}
                    Err(e) if is_code(&e, 409) => continue,
                    Err(e) => {
                        return Err(SelfManagedError::Missing {
                            namespace: settings.namespace.clone(),
                            name: settings.secret.clone(),
                            source: Box::new(e),
                        });
                    }
                }
            }
            Some(secret) => {
                let patch = json!({
                    "metadata": {"resourceVersion": secret.metadata.resource_version},
                    "data": data(&pki),
                });
                match api
                    .patch(
                        &settings.secret,
                        &PatchParams {
                            field_manager: Some(MANAGER.into()),
                            ..PatchParams::default()
                        },
                        &Patch::Merge(&patch),
                    )
                    .await
                {
                    Ok(_) => {}
                    Err(e) if is_code(&e, 409) => continue,
                    Err(e) => return Err(secret_error("patch")(e)),
                }
            }
        }
        tracing::info!(secret = %format!("{}/{}", settings.namespace, settings.secret),
            reason = %reason, "issued the webhook's serving certificate");
        return Ok(pki);
    }
    Err(SelfManagedError::Contended {
        namespace: settings.namespace.clone(),
        name: settings.secret.clone(),
    })
}

/// Sets `caBundle` of every webhook of the configuration to `ca_pem` where it differs.
/// `Ok(true)` when it patched.
pub async fn ensure_ca_bundle(
    client: &kube::Client,
    configuration: &str,
    ca_pem: &str,
) -> Result<bool, SelfManagedError> {
    let error = |verb: &'static str| {
        move |e: kube::Error| SelfManagedError::Configuration {
            name: configuration.to_string(),
            verb,
            source: Box::new(e),
        }
    };
    let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let current = api.get(configuration).await.map_err(error("read"))?;
    let wanted = ByteString(ca_pem.as_bytes().to_vec());
    let mut ops = Vec::new();
    for (i, webhook) in current.webhooks.iter().flatten().enumerate() {
        if webhook.client_config.ca_bundle.as_ref() != Some(&wanted) {
            // The name is tested first, so a list reordered meanwhile is not patched blindly.
            ops.push(
                json!({"op": "test", "path": format!("/webhooks/{i}/name"), "value": webhook.name}),
            );
            ops.push(
                json!({"op": "add", "path": format!("/webhooks/{i}/clientConfig/caBundle"),
                "value": base64::engine::general_purpose::STANDARD.encode(ca_pem)}),
            );
        }
    }
    if ops.is_empty() {
        return Ok(false);
    }
    let patch: json_patch::Patch =
        serde_json::from_value(serde_json::Value::Array(ops)).expect("a JSON patch");
    api.patch(
        configuration,
        &PatchParams {
            field_manager: Some(MANAGER.into()),
            ..PatchParams::default()
        },
        &Patch::<()>::Json(patch),
    )
    .await
    .map_err(error("patch"))?;
    tracing::info!(
        configuration,
        "set the webhook configuration's caBundle to the agent's CA"
    );
    Ok(true)
}

fn write_if_changed(path: &Path, content: &str, private: bool) -> Result<bool, SelfManagedError> {
    if std::fs::read_to_string(path).is_ok_and(|old| old == content) {
        return Ok(false);
    }
    let error = |source| SelfManagedError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(error)?;
    // Written aside and renamed, so the server never reads half a file.
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(error)?;
    if private {
        use std::os::unix::fs::PermissionsExt;
        file.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(error)?;
    }
    std::io::Write::write_all(&mut file, content.as_bytes()).map_err(error)?;
    file.persist(path).map_err(|e| error(e.error))?;
    Ok(true)
}

/// Writes the serving key, then the certificate, where they differ from the files.
pub async fn write_files(
    settings: &SelfManaged,
    pki: &WebhookPki,
) -> Result<bool, SelfManagedError> {
    let (cert_file, key_file) = (settings.cert_file(), settings.key_file());
    let (cert, key) = (pki.cert.clone(), pki.key.clone());
    tokio::task::spawn_blocking(move || {
        let key_changed = write_if_changed(&key_file, &key, true)?;
        let cert_changed = write_if_changed(&cert_file, &cert, false)?;
        Ok(key_changed || cert_changed)
    })
    .await
    .map_err(|e| SelfManagedError::Write {
        path: settings.dir.clone(),
        source: std::io::Error::other(e.to_string()),
    })?
}

/// One round: the Secret (issuing or renewing when needed), the files, the `caBundle`.
pub async fn reconcile(
    client: &kube::Client,
    settings: &SelfManaged,
) -> Result<WebhookPki, SelfManagedError> {
    let pki = ensure_secret(client, settings).await?;
    write_files(settings, &pki).await?;
    if let Some(configuration) = &settings.webhook_configuration {
        ensure_ca_bundle(client, configuration, &pki.ca_cert).await?;
    }
    Ok(pki)
}

/// Repeats [`reconcile`] every `recheck` until `stop` resolves: renews before expiry, follows a
/// certificate another replica issued, and puts back a `caBundle` someone overwrote.
pub async fn keep_current(
    client: kube::Client,
    settings: SelfManaged,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(settings.recheck) => {}
        }
        if let Err(e) = reconcile(&client, &settings).await {
            tracing::warn!(error = %e, "cannot keep the webhook's serving certificate current");
        }
    }
}
