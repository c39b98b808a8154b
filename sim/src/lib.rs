//! kubesim: an in-process Kubernetes API simulator for tests and demos.
//! It shares no code with the agent, so it tests the agent instead of mirroring it.
//! Start one with [`Simulator::start`]; talk to it with [`SimHandle::client_for`] or kubectl.
#![forbid(unsafe_code)]

pub mod admission;
pub mod apply;
pub mod audit;
pub mod auth;
pub mod catalogue;
pub mod cli;
pub mod convert;
pub mod defaults;
pub mod discovery;
pub mod errors;
pub mod faults;
pub mod fieldpath;
pub mod ids;
pub mod jsonpath;
pub mod kubeconfig;
pub mod openapi;
pub mod outbound;
pub mod patch;
pub mod protobuf;
pub mod quantity;
pub mod routes;
pub mod schema;
pub mod selectors;
pub mod server;
#[cfg(test)]
mod smd_scenarios;
pub mod store;
pub mod table;
pub mod tls;
pub mod validation;
pub mod watch;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch as tokio_watch;

pub use audit::AuditSink;
pub use auth::{Access, User};
pub use errors::{ApiError, SimError};
pub use server::AuditEntry;
pub use store::StoreConfig;

/// The token of the default `admin` user.
pub const ADMIN_TOKEN: &str = "kubesim-admin-token";

/// How to run a simulator.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Where to listen; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Serve HTTPS with a fresh self-signed CA.
    pub tls: bool,
    /// The users and their bearer tokens; the first is the default of kubeconfigs.
    pub users: Vec<User>,
    /// Watch events kept; watches from older resourceVersions get `410 Gone`.
    pub history_limit: usize,
    /// How often watches that allow bookmarks get one.
    pub bookmark_interval: Duration,
    /// Give each namespace a `kube-root-ca.crt` ConfigMap and a `default` ServiceAccount.
    pub namespace_objects: bool,
    /// The user a request without a token acts as; `None` answers such requests with 401.
    /// kubectl sends no credentials over plain HTTP, so `sim` without `--tls` sets this.
    pub anonymous: Option<String>,
    /// Where audit events of mutating requests go (the audit webhook backend); `None`: nowhere.
    pub audit_sink: Option<AuditSink>,
    /// The client certificate and key (PEM) presented to every admission webhook, as a real
    /// kube-apiserver does when its AdmissionConfiguration names a kubeconfig with
    /// `client-certificate-data`; `None`: no client certificate.
    pub admission_client: Option<(String, String)>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls: false,
            users: vec![User::admin("admin", ADMIN_TOKEN)],
            history_limit: 100_000,
            bookmark_interval: Duration::from_secs(5),
            namespace_objects: true,
            anonymous: None,
            audit_sink: None,
            admission_client: None,
        }
    }
}

impl SimConfig {
    /// Serve HTTPS.
    pub fn with_tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// Add a user (replacing one of the same name).
    pub fn with_user(mut self, user: User) -> Self {
        self.users.retain(|u| u.name != user.name);
        self.users.push(user);
        self
    }

    /// Send audit events to `sink`.
    pub fn with_audit_sink(mut self, sink: AuditSink) -> Self {
        self.audit_sink = Some(sink);
        self
    }

    /// Present this client certificate and key (PEM) to every admission webhook.
    pub fn with_admission_client_cert(mut self, cert_pem: String, key_pem: String) -> Self {
        self.admission_client = Some((cert_pem, key_pem));
        self
    }

    /// Add an admin user whose token is `<name>-token`.
    pub fn with_admin(self, name: &str) -> Self {
        let token = format!("{name}-token");
        self.with_user(User::admin(name, &token))
    }
}

/// Entry point.
pub struct Simulator;

impl Simulator {
    /// Start serving on `config.listen`; the simulator runs until the handle is dropped.
    pub async fn start(config: SimConfig) -> Result<SimHandle, SimError> {
        if config.users.is_empty() {
            return Err(SimError::Config("at least one user is required".into()));
        }
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| SimError::Bind {
                addr: config.listen.to_string(),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| SimError::Bind {
            addr: config.listen.to_string(),
            source,
        })?;
        let tls = if config.tls {
            let mut hosts = vec![
                "localhost".to_string(),
                "127.0.0.1".to_string(),
                "::1".to_string(),
            ];
            if !addr.ip().is_loopback() && !addr.ip().is_unspecified() {
                hosts.push(addr.ip().to_string());
            }
            Some(tls::generate(&hosts)?)
        } else {
            None
        };
        let mut store = store::Store::new(StoreConfig {
            history_limit: config.history_limit.max(1),
            namespace_objects: false,
        });
        if let Some(t) = &tls {
            store.set_root_ca(t.ca_pem.clone());
        }
        if config.namespace_objects {
            store.enable_namespace_objects();
        }
        let anonymous = match &config.anonymous {
            Some(name) => Some(
                config
                    .users
                    .iter()
                    .find(|u| &u.name == name)
                    .cloned()
                    .ok_or_else(|| SimError::UnknownUser(name.clone()))?,
            ),
            None => None,
        };
        let (shutdown_tx, shutdown_rx) = tokio_watch::channel(false);
        let shared = server::Shared::new(
            store,
            auth::Users::new(config.users.clone()).with_anonymous(anonymous),
            server::dial_address(addr),
            shutdown_rx.clone(),
            config.bookmark_interval,
        );
        let pipeline = match &config.audit_sink {
            Some(sink) => Some(audit::Pipeline::start(
                sink,
                shared.faults.audit_knobs(),
                shutdown_rx.clone(),
            )?),
            None => None,
        };
        let shared = Arc::new(
            shared
                .with_audit_sink(pipeline)
                .with_admission_client(config.admission_client.clone()),
        );
        let acceptor = tls
            .as_ref()
            .map(|t| tokio_rustls::TlsAcceptor::from(t.server_config.clone()));
        tokio::spawn(server::serve(
            listener,
            shared.clone(),
            acceptor,
            shutdown_rx,
        ));
        Ok(SimHandle {
            shared,
            addr,
            tls,
            users: config.users,
            shutdown: shutdown_tx,
        })
    }
}

/// A running simulator. Dropping it stops the server and ends every connection.
pub struct SimHandle {
    shared: Arc<server::Shared>,
    addr: SocketAddr,
    tls: Option<tls::TlsMaterial>,
    users: Vec<User>,
    shutdown: tokio_watch::Sender<bool>,
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle")
            .field("url", &self.url())
            .finish_non_exhaustive()
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

impl SimHandle {
    /// `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The CA certificate (PEM) clients must trust, when serving TLS.
    pub fn ca_pem(&self) -> Option<&str> {
        self.tls.as_ref().map(|t| t.ca_pem.as_str())
    }

    pub fn users(&self) -> &[User] {
        &self.users
    }

    /// A kubeconfig whose current context is `user`; every other user has a context too.
    pub fn kubeconfig(&self, user: &str) -> Result<String, SimError> {
        if !self.users.iter().any(|u| u.name == user) {
            return Err(SimError::UnknownUser(user.into()));
        }
        let users: Vec<&User> = self.users.iter().collect();
        Ok(kubeconfig::render(&self.url(), self.ca_pem(), &users, user))
    }

    /// A kube-rs client authenticated as `user`, built from [`SimHandle::kubeconfig`].
    pub async fn client_for(&self, user: &str) -> Result<kube::Client, SimError> {
        let text = self.kubeconfig(user)?;
        let kc = kube::config::Kubeconfig::from_yaml(&text)
            .map_err(|e| SimError::Client(e.to_string()))?;
        let config =
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| SimError::Client(e.to_string()))?;
        kube::Client::try_from(config).map_err(|e| SimError::Client(e.to_string()))
    }

    /// A kube-rs client for the first configured user (by default `admin`).
    pub async fn client(&self) -> Result<kube::Client, SimError> {
        let first = self
            .users
            .first()
            .map(|u| u.name.clone())
            .unwrap_or_default();
        self.client_for(&first).await
    }

    /// The fault knobs.
    pub fn faults(&self) -> Faults {
        Faults(self.shared.clone())
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.lock().resource_version()
    }

    /// Every resource request answered so far: who, what, and the HTTP code.
    pub fn audit_log(&self) -> Vec<AuditEntry> {
        self.shared.audit_log()
    }

    /// Stop serving now.
    pub fn shutdown(self) {
        drop(self);
    }
}

/// Knobs to make the simulator misbehave, for tests of a client's resilience.
#[derive(Clone)]
pub struct Faults(Arc<server::Shared>);

impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Faults")
    }
}

impl Faults {
    /// End every open watch stream (clients see the stream close and re-watch).
    pub fn drop_watches(&self) {
        self.0.faults.drop_watches();
    }

    /// Fail the next `n` resource requests with `code` (500 → InternalError, 429 → TooManyRequests
    /// with `Retry-After: 1`, anything else as an InternalError-shaped Status with that code).
    pub fn fail_next(&self, n: u32, code: u16) {
        self.0.faults.fail_next(n, code);
    }

    /// Make every LIST (not watch) of resource `plural` fail with `code` (an InternalError-shaped
    /// Status) until called again with `None`. Watches keep working.
    pub fn fail_lists(&self, plural: &str, code: Option<u16>) {
        self.0.faults.fail_lists(plural, code);
    }

    /// Delay every request by `latency` (zero turns it off).
    pub fn set_latency(&self, latency: Duration) {
        self.0.faults.set_latency(latency);
    }

    /// Forget the watch history (like an etcd compaction): a watch from any resourceVersion
    /// before now gets `410 Gone` (`Expired`). Open watches are not affected.
    pub fn compact_history(&self) {
        let mut store = self.0.lock();
        store.compact();
    }

    /// Delay every audit batch by `delay` after it is closed (zero turns it off); batches keep
    /// their order.
    pub fn delay_audit(&self, delay: Duration) {
        self.0.faults.update_audit(|a| a.delay = delay);
    }

    /// Send audit batches out of order: each batch is held until the next one has been sent
    /// (a batch without successor goes after one second).
    pub fn reorder_audit(&self, on: bool) {
        self.0.faults.update_audit(|a| a.reorder = on);
    }

    /// Send every audit batch twice.
    pub fn duplicate_audit(&self, on: bool) {
        self.0.faults.update_audit(|a| a.duplicate = on);
    }

    /// Compact the history and send every open watch an `ERROR` event with `410 Gone`, as a real
    /// server does to a watcher that fell too far behind: clients must relist.
    pub fn expire_watches(&self) {
        self.compact_history();
        self.0.faults.expire_watches();
    }
}
