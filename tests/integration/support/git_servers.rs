//! Real Git servers on 127.0.0.1 for tests, each serving a bare repository made for the test and
//! stopped on drop: `file://`, `git daemon`, `git http-backend` behind basic auth, and `sshd`.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gitops_reverser::git::credentials::{Credentials, SecretString};
use gitops_reverser::git::transport::Remote;
use gix::ObjectId;
use tempfile::TempDir;

/// How long a server may take to accept connections.
const START_DEADLINE: Duration = Duration::from_secs(20);

/// The environment variable that lets tests whose server or tool is missing be skipped (visibly)
/// instead of failing. `.ci/run` never sets it; see CONTRIBUTING.md.
pub const SKIP_MISSING_TOOLS: &str = "GITOPS_REVERSER_SKIP_MISSING_TOOLS";

/// The path of `name` (looked up in `PATH`, `/usr/sbin` and git's exec dir). A missing binary
/// fails the test, naming the Debian package to install, so that no test passes without
/// testing. Only with `GITOPS_REVERSER_SKIP_MISSING_TOOLS=1` (and not under `CI=true`) does it
/// return `None` after writing a `SKIPPED: …` line to stderr, past the test harness's capture,
/// so the skip shows in the output of a passing run.
pub fn require_binary(name: &str, package: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/lib/git-core"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file());
    if found.is_none() {
        let why = format!(
            "`{name}` is not installed (Debian package `{package}`: apt-get install -y {package})"
        );
        let under_ci = std::env::var("CI").is_ok_and(|v| v == "true");
        let skip = std::env::var(SKIP_MISSING_TOOLS).is_ok_and(|v| v == "1");
        if under_ci || !skip {
            panic!(
                "{why}; install it{}, or set {SKIP_MISSING_TOOLS}=1 to skip the tests that need \
                 it (never under CI)",
                if under_ci { " in .ci/run" } else { "" }
            );
        }
        let test = std::thread::current()
            .name()
            .unwrap_or("a test")
            .to_string();
        // Written to the process's stderr, not through `eprintln!`: the harness captures that.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: {test}: {why} ({SKIP_MISSING_TOOLS}=1)"
        );
    }
    found
}

/// Runs `git` with no system or user configuration in `dir`, feeding `stdin`; panics on failure.
/// Returns stdout without the trailing newline.
pub fn git(dir: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let output = git_output(dir, args, stdin);
    assert!(
        output.status.success(),
        "git {args:?} in {dir:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .trim_end()
        .to_string()
}

/// Like [`git`], returning the raw output whatever the exit status.
pub fn git_output(dir: &Path, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    let mut child = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", std::env::temp_dir())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("LC_ALL", "C")
        .env("GIT_AUTHOR_NAME", "Test Author")
        .env("GIT_AUTHOR_EMAIL", "author@example.test")
        .env("GIT_COMMITTER_NAME", "Test Committer")
        .env("GIT_COMMITTER_EMAIL", "committer@example.test")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("git starts");
    let mut pipe = child.stdin.take().expect("stdin");
    pipe.write_all(stdin.unwrap_or_default().as_bytes())
        .expect("write stdin");
    drop(pipe);
    child.wait_with_output().expect("git finishes")
}

/// A bare repository read and written through the `git` CLI.
pub struct BareRepo {
    pub path: PathBuf,
}

impl BareRepo {
    /// `git init --bare -b main` at `path`.
    pub fn init(path: PathBuf) -> Self {
        let parent = path.parent().expect("a parent directory");
        std::fs::create_dir_all(parent).expect("create parent");
        git(
            parent,
            &["init", "-q", "--bare", "-b", "main", path_str(&path)],
            None,
        );
        Self { path }
    }

    fn git(&self, args: &[&str], stdin: Option<&str>) -> String {
        let mut all = vec!["--git-dir", path_str(&self.path)];
        all.extend_from_slice(args);
        git(&self.path, &all, stdin)
    }

    /// The commit `rev` names (`main`, `refs/remotes/origin/main`, ...), if it exists.
    pub fn tip(&self, rev: &str) -> Option<ObjectId> {
        let output = git_output(
            &self.path,
            &[
                "--git-dir",
                path_str(&self.path),
                "rev-parse",
                "--verify",
                "--quiet",
                &format!("{rev}^{{commit}}"),
            ],
            None,
        );
        output.status.success().then(|| {
            ObjectId::from_hex(String::from_utf8_lossy(&output.stdout).trim().as_bytes())
                .expect("rev-parse prints an object id")
        })
    }

    /// The content of `path` at `rev`.
    pub fn show(&self, rev: &str, path: &str) -> String {
        self.git(&["show", &format!("{rev}:{path}")], None)
    }

    /// The subjects of the first-parent history of `rev`, newest first.
    pub fn log(&self, rev: &str) -> Vec<String> {
        self.git(&["log", "--first-parent", "--format=%s", rev], None)
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Commits top-level `files` (name, content) as a new commit on `parent` (a root commit
    /// when `None`), made with plumbing; no ref changes.
    pub fn commit(
        &self,
        parent: Option<ObjectId>,
        files: &[(&str, &str)],
        message: &str,
    ) -> ObjectId {
        let mut listing = String::new();
        for (name, content) in files {
            let blob = self.git(&["hash-object", "-w", "--stdin"], Some(content));
            listing.push_str(&format!("100644 blob {blob}\t{name}\n"));
        }
        let tree = self.git(&["mktree"], Some(&listing));
        let parent = parent.map(|p| p.to_string());
        let mut args = vec!["commit-tree", tree.as_str(), "-m", message];
        if let Some(parent) = &parent {
            args.extend(["-p", parent.as_str()]);
        }
        ObjectId::from_hex(self.git(&args, None).as_bytes()).expect("commit-tree prints an id")
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

/// A scratch bare repository (the local cache a worker would own) in its own temp dir.
pub struct Scratch {
    pub repo: BareRepo,
    _dir: TempDir,
}

impl Scratch {
    pub fn new() -> Self {
        let dir = TempDir::new().expect("temp dir");
        let repo = BareRepo::init(dir.path().join("cache.git"));
        Self { repo, _dir: dir }
    }

    pub fn path(&self) -> &Path {
        &self.repo.path
    }
}

/// A free TCP port on 127.0.0.1 (nothing listens on it when this returns).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// Polls until something accepts connections on `port`, failing early if `child` exits.
fn wait_until_listening(port: u16, child: &mut Child, what: &str, log: Option<&Path>) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + START_DEADLINE;
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        if let Some(status) = child.try_wait().expect("try_wait") {
            let log = log
                .and_then(|p| std::fs::read_to_string(p).ok())
                .unwrap_or_default();
            eprintln!("{what} exited before listening on {port} ({status}): {log}");
            return false;
        }
        assert!(
            Instant::now() < deadline,
            "{what} does not accept connections on 127.0.0.1:{port} after {START_DEADLINE:?}"
        );
        // Polling interval, bounded by the deadline above.
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A server process in its own process group, killed (with everything it forked) on drop.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let pid = rustix::process::Pid::from_child(&self.0);
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        let _ = self.0.wait();
    }
}

/// Starts `command` on a fresh port (retrying if the port was taken meanwhile).
fn start_listening(
    what: &str,
    log: Option<&Path>,
    mut command: impl FnMut(u16) -> Command,
) -> (Process, u16) {
    for _ in 0..5 {
        let port = free_port();
        let mut child = command(port)
            .process_group(0)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {what}: {e}"));
        if wait_until_listening(port, &mut child, what, log) {
            return (Process(child), port);
        }
    }
    panic!("{what} did not start");
}

/// A Git server serving one bare repository, `repo`, at `url`.
pub struct GitServer {
    pub name: &'static str,
    pub url: String,
    pub credentials: Option<Credentials>,
    /// The repository the server serves, for assertions.
    pub repo: BareRepo,
    /// SSH only: a `known_hosts` naming another key for the same host and port.
    pub wrong_known_hosts: Option<String>,
    /// HTTP only: the accepted username and password.
    pub basic_auth: Option<(String, String)>,
    /// SSH only: a second authorized user key, encrypted, and its passphrase.
    pub encrypted_key: Option<(String, String)>,
    // Dropped in this order: the server stops before its directory goes.
    _process: Option<Process>,
    _http: Option<HttpServer>,
    dir: TempDir,
}

/// The `stringData` of a Kubernetes Secret holding `credentials`, as a user would write it.
pub fn secret_string_data(credentials: &Credentials) -> serde_json::Value {
    match credentials {
        Credentials::Basic { username, password } => {
            serde_json::json!({"username": username, "password": password.expose()})
        }
        Credentials::Ssh {
            private_key,
            known_hosts,
            ..
        } => serde_json::json!({"identity": private_key.expose(), "known_hosts": known_hosts}),
        Credentials::Bearer { token } => serde_json::json!({"bearerToken": token.expose()}),
    }
}

impl GitServer {
    /// The remote, with the server's credentials.
    pub fn remote(&self) -> Remote {
        Remote::new(self.url.clone(), self.credentials.clone())
    }

    /// The temp directory the server's files live in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `file://` to a bare repository.
    pub fn file() -> Self {
        let dir = TempDir::new().expect("temp dir");
        let repo = BareRepo::init(dir.path().join("srv/repo.git"));
        Self {
            name: "file",
            url: format!("file://{}", repo.path.display()),
            credentials: None,
            repo,
            wrong_known_hosts: None,
            basic_auth: None,
            encrypted_key: None,
            _process: None,
            _http: None,
            dir,
        }
    }

    /// `git daemon` with receive-pack enabled, on a free port.
    pub fn daemon() -> Option<Self> {
        require_binary("git-daemon", "git")?;
        let dir = TempDir::new().expect("temp dir");
        let root = dir.path().join("srv");
        let repo = BareRepo::init(root.join("repo.git"));
        let (process, port) = start_listening("git daemon", None, |port| {
            let mut cmd = Command::new("git");
            cmd.args(["daemon", "--reuseaddr", "--listen=127.0.0.1"])
                .arg(format!("--port={port}"))
                .arg(format!("--base-path={}", root.display()))
                .args([
                    "--export-all",
                    "--enable=receive-pack",
                    "--informative-errors",
                ])
                .arg(&root)
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env("GIT_CONFIG_GLOBAL", "/dev/null");
            cmd
        });
        Some(Self {
            name: "git daemon",
            url: format!("git://127.0.0.1:{port}/repo.git"),
            credentials: None,
            repo,
            wrong_known_hosts: None,
            basic_auth: None,
            encrypted_key: None,
            _process: Some(process),
            _http: None,
            dir,
        })
    }

    /// Smart HTTP: `git http-backend` as CGI behind a test server that demands basic auth.
    pub fn http() -> Option<Self> {
        let backend = require_binary("git-http-backend", "git")?;
        let dir = TempDir::new().expect("temp dir");
        let root = dir.path().join("srv");
        let repo = BareRepo::init(root.join("repo.git"));
        let (username, password) = ("alice".to_string(), "correct-Horse-42".to_string());
        let server = HttpServer::start(HttpConfig {
            backend,
            project_root: root,
            username: username.clone(),
            password: password.clone(),
            token: false,
        });
        Some(Self {
            name: "http",
            url: format!("http://127.0.0.1:{}/repo.git", server.port),
            credentials: Some(Credentials::Basic {
                username: username.clone(),
                password: SecretString::new(password.clone()),
            }),
            repo,
            wrong_known_hosts: None,
            basic_auth: Some((username, password)),
            encrypted_key: None,
            _process: None,
            _http: Some(server),
            dir,
        })
    }

    /// Smart HTTPS with basic auth, the server's certificate signed by a private test CA
    /// (`ca_pem`, which no system trusts).
    pub fn https() -> Option<(Self, String)> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let backend = require_binary("git-http-backend", "git")?;
        let pki = crate::attribution::pki();
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&pki.cert_file)
            .expect("cert")
            .collect::<Result<_, _>>()
            .expect("cert");
        let key = PrivateKeyDer::from_pem_file(&pki.key_file).expect("key");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server config");
        let dir = TempDir::new().expect("temp dir");
        let root = dir.path().join("srv");
        let repo = BareRepo::init(root.join("repo.git"));
        let (username, password) = ("alice".to_string(), "correct-Horse-42".to_string());
        let server = HttpServer::start_with(
            HttpConfig {
                backend,
                project_root: root,
                username: username.clone(),
                password: password.clone(),
                token: false,
            },
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))),
        );
        let server = Self {
            name: "https (private CA)",
            url: format!("https://127.0.0.1:{}/repo.git", server.port),
            credentials: Some(Credentials::Basic {
                username: username.clone(),
                password: SecretString::new(password.clone()),
            }),
            repo,
            wrong_known_hosts: None,
            basic_auth: Some((username, password)),
            encrypted_key: None,
            _process: None,
            _http: Some(server),
            dir,
        };
        Some((server, pki.ca_pem.clone()))
    }

    /// Smart HTTP behind a server that takes a token (bearer, or basic auth with any username);
    /// the credentials are the bearer token.
    pub fn http_token() -> Option<Self> {
        let backend = require_binary("git-http-backend", "git")?;
        let dir = TempDir::new().expect("temp dir");
        let root = dir.path().join("srv");
        let repo = BareRepo::init(root.join("repo.git"));
        let token = "ghp_Token-0123456789abcdef".to_string();
        let server = HttpServer::start(HttpConfig {
            backend,
            project_root: root,
            username: "nobody-in-particular".into(),
            password: token.clone(),
            token: true,
        });
        Some(Self {
            name: "http (token)",
            url: format!("http://127.0.0.1:{}/repo.git", server.port),
            credentials: Some(Credentials::Bearer {
                token: SecretString::new(token.clone()),
            }),
            repo,
            wrong_known_hosts: None,
            basic_auth: None,
            encrypted_key: None,
            _process: None,
            _http: Some(server),
            dir,
        })
    }

    /// `sshd` on a free port with a generated host key; the user key is authorized for the
    /// current user and the credentials carry it with a `known_hosts` line for the server.
    pub fn ssh() -> Option<Self> {
        let sshd = require_binary("sshd", "openssh-server")?;
        require_binary("ssh", "openssh-client")?;
        require_binary("ssh-keygen", "openssh-client")?;
        let dir = TempDir::new().expect("temp dir");
        let root = dir.path().join("srv");
        let repo = BareRepo::init(root.join("repo.git"));
        let keys = dir.path().join("ssh");
        std::fs::create_dir_all(&keys).expect("ssh dir");
        let keygen = |name: &str| {
            let status = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
                .arg(keys.join(name))
                .stdin(Stdio::null())
                .status()
                .expect("ssh-keygen runs");
            assert!(status.success(), "ssh-keygen {name}");
            let public = std::fs::read_to_string(keys.join(format!("{name}.pub"))).expect("pub");
            let private = std::fs::read_to_string(keys.join(name)).expect("key");
            (public, private)
        };
        let (host_pub, _) = keygen("host_key");
        let (wrong_host_pub, _) = keygen("wrong_host_key");
        let (user_pub, user_key) = keygen("user_key");
        // A second user key, encrypted with a passphrase (as Flux keeps them).
        let passphrase = "open-Sesame-7";
        let status = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", passphrase, "-C", "enc", "-f"])
            .arg(keys.join("enc_key"))
            .stdin(Stdio::null())
            .status()
            .expect("ssh-keygen runs");
        assert!(status.success(), "ssh-keygen enc_key");
        let enc_pub = std::fs::read_to_string(keys.join("enc_key.pub")).expect("pub");
        let enc_key = std::fs::read_to_string(keys.join("enc_key")).expect("key");
        std::fs::write(keys.join("authorized_keys"), format!("{user_pub}{enc_pub}"))
            .expect("authorized_keys");
        // sshd needs its privilege separation directory.
        if !Path::new("/run/sshd").exists() {
            let _ = std::fs::create_dir_all("/run/sshd");
        }
        let user = whoami();
        let log = keys.join("sshd.log");
        let (process, port) = start_listening("sshd", Some(&log), |port| {
            let config = keys.join("sshd_config");
            std::fs::write(
                &config,
                format!(
                    "Port {port}\n\
                     ListenAddress 127.0.0.1\n\
                     HostKey {host_key}\n\
                     AuthorizedKeysFile {authorized}\n\
                     PidFile {pid}\n\
                     PubkeyAuthentication yes\n\
                     PasswordAuthentication no\n\
                     KbdInteractiveAuthentication no\n\
                     PermitRootLogin prohibit-password\n\
                     StrictModes no\n\
                     UsePAM no\n\
                     AllowTcpForwarding no\n\
                     X11Forwarding no\n\
                     PrintMotd no\n\
                     LogLevel ERROR\n",
                    host_key = keys.join("host_key").display(),
                    authorized = keys.join("authorized_keys").display(),
                    pid = keys.join("sshd.pid").display(),
                ),
            )
            .expect("sshd_config");
            let log_file = std::fs::File::create(&log).expect("sshd log");
            let mut cmd = Command::new(&sshd);
            cmd.args(["-D", "-e", "-f"]).arg(&config).stderr(log_file);
            cmd
        });
        let host_line = |public: &str| {
            let mut fields = public.split_whitespace();
            let (kind, key) = (fields.next().expect("type"), fields.next().expect("key"));
            format!("[127.0.0.1]:{port} {kind} {key}\n")
        };
        Some(Self {
            name: "ssh",
            url: format!("ssh://{user}@127.0.0.1:{port}{}", repo.path.display()),
            credentials: Some(Credentials::Ssh {
                private_key: SecretString::new(user_key),
                known_hosts: host_line(&host_pub),
                user: None,
                passphrase: None,
            }),
            repo,
            wrong_known_hosts: Some(host_line(&wrong_host_pub)),
            basic_auth: None,
            encrypted_key: Some((enc_key, passphrase.to_string())),
            _process: Some(process),
            _http: None,
            dir,
        })
    }
}

fn whoami() -> String {
    let output = Command::new("id").arg("-un").output().expect("id runs");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

struct HttpConfig {
    backend: PathBuf,
    project_root: PathBuf,
    username: String,
    password: String,
    /// Accept the password as a token: `Authorization: Bearer <password>`, or basic auth with
    /// any username (as GitHub, Azure DevOps and Gitea do for tokens).
    token: bool,
}

/// A small HTTP/1.1 server (axum) that checks basic auth and runs `git http-backend` as CGI.
struct HttpServer {
    port: u16,
    runtime: Option<tokio::runtime::Runtime>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl HttpServer {
    fn start(config: HttpConfig) -> Self {
        Self::start_with(config, None)
    }

    /// Serves over TLS with `tls` when given (HTTPS), plain HTTP otherwise.
    fn start_with(config: HttpConfig, tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = axum::Router::new()
            .fallback(cgi)
            .with_state(Arc::new(config));
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            match tls {
                None => axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = rx.await;
                    })
                    .await
                    .expect("serve"),
                Some(acceptor) => axum::serve(TlsListener { listener, acceptor }, app)
                    .with_graceful_shutdown(async {
                        let _ = rx.await;
                    })
                    .await
                    .expect("serve"),
            }
        });
        Self {
            port,
            runtime: Some(runtime),
            shutdown: Some(tx),
        }
    }
}

/// Accepts TCP connections and completes their TLS handshake (failed handshakes are dropped).
struct TlsListener {
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, addr)) = self.listener.accept().await else {
                continue;
            };
            if let Ok(tls) = self.acceptor.accept(stream).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

async fn cgi(
    axum::extract::State(config): axum::extract::State<Arc<HttpConfig>>,
    request: axum::extract::Request,
) -> axum::response::Response {
    use axum::http::{StatusCode, header};
    use base64::Engine;
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", config.username, config.password))
    );
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes().to_vec())
        .unwrap_or_default();
    let as_token = || {
        let given = String::from_utf8_lossy(&given);
        if given == format!("Bearer {}", config.password) {
            return true;
        }
        given
            .strip_prefix("Basic ")
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .and_then(|d| String::from_utf8(d).ok())
            .and_then(|d| d.split_once(':').map(|(_, p)| p == config.password))
            .unwrap_or(false)
    };
    let authorized = given == expected.as_bytes() || (config.token && as_token());
    if !authorized {
        return axum::response::Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .header(header::WWW_AUTHENTICATE, "Basic realm=\"git\"")
            .body(axum::body::Body::from("authentication required\n"))
            .expect("response");
    }
    match run_cgi(&config, request).await {
        Ok(response) => response,
        Err(message) => axum::response::Response::builder()
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .body(axum::body::Body::from(message))
            .expect("response"),
    }
}

async fn run_cgi(
    config: &HttpConfig,
    request: axum::extract::Request,
) -> Result<axum::response::Response, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (method, path, query, content_type, encoding, protocol) = {
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        (
            request.method().to_string(),
            request.uri().path().to_string(),
            request.uri().query().unwrap_or_default().to_string(),
            header("content-type"),
            header("content-encoding"),
            header("git-protocol"),
        )
    };
    let body = axum::body::to_bytes(request.into_body(), usize::MAX)
        .await
        .map_err(|e| format!("read body: {e}"))?;

    let mut cmd = tokio::process::Command::new(&config.backend);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_PROJECT_ROOT", &config.project_root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REMOTE_USER", &config.username)
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("REQUEST_METHOD", &method)
        .env("PATH_INFO", &path)
        .env("QUERY_STRING", &query)
        .env("CONTENT_LENGTH", body.len().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    for (name, value) in [
        ("CONTENT_TYPE", content_type),
        ("HTTP_CONTENT_ENCODING", encoding),
        ("GIT_PROTOCOL", protocol),
    ] {
        if let Some(value) = value {
            cmd.env(name, value);
        }
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("start http-backend: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("stdin")?;
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(&body).await;
    });
    let mut output = Vec::new();
    child
        .stdout
        .take()
        .ok_or("stdout")?
        .read_to_end(&mut output)
        .await
        .map_err(|e| format!("read http-backend: {e}"))?;
    let _ = writer.await;
    child.wait().await.map_err(|e| format!("wait: {e}"))?;

    let (head, body) = split_cgi(&output).ok_or("http-backend printed no header")?;
    let mut response = axum::response::Response::builder();
    for line in String::from_utf8_lossy(head).lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().unwrap_or("500");
            response = response.status(code.parse::<u16>().map_err(|e| e.to_string())?);
        } else {
            response = response.header(name.trim(), value);
        }
    }
    response
        .body(axum::body::Body::from(body.to_vec()))
        .map_err(|e| e.to_string())
}

/// Splits CGI output into its header block and body.
fn split_cgi(output: &[u8]) -> Option<(&[u8], &[u8])> {
    for separator in [&b"\r\n\r\n"[..], &b"\n\n"[..]] {
        if let Some(i) = output.windows(separator.len()).position(|w| w == separator) {
            return Some((&output[..i], &output[i + separator.len()..]));
        }
    }
    None
}

/// A script at `path` that logs its arguments to `log` and runs the real `git` with
/// `GIT_TRACE` writing every command git starts (with its arguments) to `trace`. Written by
/// another process so that no open write handle of ours can make it "text file busy".
pub fn tracing_git_wrapper(path: &Path, log: &Path, trace: &Path) {
    let script = format!(
        "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{log}'\nGIT_TRACE='{trace}'\nexport GIT_TRACE\nexec git \"$@\"\n",
        log = log.display(),
        trace = trace.display()
    );
    let status = Command::new("sh")
        .args(["-c", "cat > \"$1\" && chmod 700 \"$1\"", "sh"])
        .arg(path)
        .stdin(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(script.as_bytes())?;
            child.wait()
        })
        .expect("write wrapper");
    assert!(status.success());
}

/// The text of the files at `paths` (missing ones skipped), joined.
pub fn read_all(paths: &[&Path]) -> String {
    paths
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Commits `files` (path → content) on `main` of the bare repository `repo` as a person would
/// (Pat): a clone under `scratch`, the files written, one commit, a push.
pub fn commit_by_hand(scratch: &Path, repo: &Path, files: &[(&str, &str)]) {
    let work = scratch.join("hand");
    let _ = std::fs::remove_dir_all(&work);
    let url = format!("file://{}", repo.display());
    git(scratch, &["clone", "-q", &url, "hand"], None);
    for (path, content) in files {
        let file = work.join(path);
        std::fs::create_dir_all(file.parent().expect("parent")).expect("dir");
        std::fs::write(&file, content).expect("write");
    }
    git(&work, &["add", "-A"], None);
    git(
        &work,
        &[
            "-c",
            "user.name=Pat",
            "-c",
            "user.email=pat@example.com",
            "commit",
            "-q",
            "-m",
            "by hand",
        ],
        None,
    );
    git(&work, &["push", "-q", "origin", "HEAD:main"], None);
}
