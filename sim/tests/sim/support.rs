//! Shared helpers: start a simulator, raw HTTP requests, awaiting watcher events with timeouts.

use std::time::Duration;

use kubesim::{SimConfig, SimHandle, Simulator};
use serde_json::Value;

pub async fn sim() -> SimHandle {
    Simulator::start(SimConfig::default())
        .await
        .expect("simulator starts")
}

pub async fn sim_with(config: SimConfig) -> SimHandle {
    Simulator::start(config).await.expect("simulator starts")
}

/// A raw HTTP request as the admin (or with `token`), returning the status code and JSON body.
pub async fn raw(
    sim: &SimHandle,
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: &str,
    body: &str,
) -> (u16, Value) {
    raw_with(sim, method, path, token, content_type, body, &[]).await
}

/// [`raw`] with extra request headers (impersonation).
pub async fn raw_with(
    sim: &SimHandle,
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(sim.addr())
        .await
        .expect("connect");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{auth}{extra}Content-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf))
        .await
        .expect("response in time")
        .expect("read");
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, rest) = text.split_once("\r\n\r\n").expect("HTTP response");
    let code: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    (
        code,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    )
}

fn dechunk(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&after[..n.min(after.len())]);
        rest = after.get(n + 2..).unwrap_or("");
    }
    out
}

pub const ADMIN: Option<&str> = Some(kubesim::ADMIN_TOKEN);

/// Wait for `fut` at most 10 seconds.
pub async fn within<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .expect("event within 10s")
}

/// kubectl against a simulator, with its own kubeconfig, HOME and discovery cache.
pub struct Kubectl {
    pub dir: tempfile::TempDir,
    kubeconfig: std::path::PathBuf,
    bin: std::path::PathBuf,
}

pub struct Out {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

fn find_kubectl() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("KUBECTL") {
        return Some(p.into());
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("kubectl"))
            .find(|p| p.is_file())
    })
}

impl Kubectl {
    /// kubectl for `user`; `None` (test skipped with a printed reason) when kubectl is missing
    /// outside CI. In CI (`CI=true`) a missing kubectl fails the test.
    pub fn new(sim: &SimHandle, user: &str) -> Option<Kubectl> {
        let Some(bin) = find_kubectl() else {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("kubectl is required in CI (CI=true) but is not on PATH");
            }
            eprintln!("SKIPPED: kubectl is not on PATH (install it to run the kubectl tests)");
            return None;
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, sim.kubeconfig(user).expect("kubeconfig"))
            .expect("write kubeconfig");
        Some(Kubectl {
            dir,
            kubeconfig,
            bin,
        })
    }

    pub fn file(&self, name: &str, content: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, content).expect("write manifest");
        p.display().to_string()
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(&self.bin);
        c.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
        c.env("HOME", self.dir.path());
        c.env("KUBECACHEDIR", self.dir.path().join("cache"));
        c.env_remove("KUBECONFIG");
        c.stdin(std::process::Stdio::null());
        c.kill_on_drop(true);
        c
    }

    pub async fn run(&self, args: &[&str]) -> Out {
        let out = tokio::time::timeout(Duration::from_secs(60), self.command(args).output())
            .await
            .expect("kubectl finished within 60s")
            .expect("kubectl runs");
        Out {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into(),
            stderr: String::from_utf8_lossy(&out.stderr).into(),
        }
    }

    /// Run and insist on success; returns stdout.
    pub async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(
            out.ok,
            "kubectl {args:?} failed:\nstdout: {}\nstderr: {}",
            out.stdout, out.stderr
        );
        out.stdout
    }

    /// Start a long-running kubectl (for `get -w`).
    pub fn spawn(&self, args: &[&str]) -> tokio::process::Child {
        let mut c = self.command(args);
        c.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        c.spawn().expect("kubectl starts")
    }
}

/// The body of a (streaming) GET as text, read until the server ends it.
pub async fn raw_text(sim: &SimHandle, path: &str) -> String {
    let (_, body) = raw(sim, "GET", path, ADMIN, "", "").await;
    match body {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

/// A webhook receiver for tests: an HTTP(S) server that hands every JSON body it is POSTed to the
/// test and answers with what `answer` makes of it (with status `__status` when it has one).
pub struct Receiver {
    pub url: String,
    pub rx: tokio::sync::mpsc::UnboundedReceiver<Value>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

pub type Answer = std::sync::Arc<dyn Fn(&Value) -> Value + Send + Sync>;

impl Receiver {
    pub async fn start(
        tls: Option<std::sync::Arc<rustls::ServerConfig>>,
        answer: Answer,
    ) -> Receiver {
        use http_body_util::BodyExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
                    _ = &mut stop_rx => break,
                };
                let (tx, answer, acceptor) = (tx.clone(), answer.clone(), acceptor.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            let (tx, answer) = (tx.clone(), answer.clone());
                            async move {
                                let body = req
                                    .into_body()
                                    .collect()
                                    .await
                                    .map(|c| c.to_bytes())
                                    .unwrap_or_default();
                                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                                let out = answer(&v);
                                let _ = tx.send(v);
                                let status =
                                    out.get("__status").and_then(Value::as_u64).unwrap_or(200)
                                        as u16;
                                Ok::<_, std::convert::Infallible>(
                                    http::Response::builder()
                                        .status(status)
                                        .header("content-type", "application/json")
                                        .body(http_body_util::Full::new(bytes::Bytes::from(
                                            out.to_string(),
                                        )))
                                        .unwrap(),
                                )
                            }
                        },
                    );
                    let b = hyper::server::conn::http1::Builder::new();
                    match acceptor {
                        Some(a) => {
                            if let Ok(s) = a.accept(stream).await {
                                let _ = b
                                    .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                                    .await;
                            }
                        }
                        None => {
                            let _ = b
                                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                                .await;
                        }
                    }
                });
            }
        });
        Receiver {
            url: format!("{scheme}://{addr}"),
            rx,
            _stop: stop_tx,
        }
    }

    /// The next body received, within 10 seconds.
    pub async fn next(&mut self) -> Value {
        within(self.rx.recv()).await.expect("receiver open")
    }
}

/// A test PKI: a CA, a server certificate for 127.0.0.1 and a client certificate.
pub struct Pki {
    pub ca_pem: String,
    pub server: std::sync::Arc<rustls::ServerConfig>,
    pub client_cert_pem: String,
    pub client_key_pem: String,
    ca_der: rustls::pki_types::CertificateDer<'static>,
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key_der: Vec<u8>,
}

fn server_config(
    chain: &[rustls::pki_types::CertificateDer<'static>],
    key_der: &[u8],
    client_ca: Option<&rustls::pki_types::CertificateDer<'static>>,
) -> std::sync::Arc<rustls::ServerConfig> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.clone()).unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                std::sync::Arc::new(roots),
                provider,
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key_der.to_vec().into());
    std::sync::Arc::new(builder.with_single_cert(chain.to_vec(), key).unwrap())
}

impl Pki {
    pub fn new() -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let server_key = KeyPair::generate().unwrap();
        let server = CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&server_key, &issuer)
            .unwrap();
        let client_key = KeyPair::generate().unwrap();
        let mut client_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        client_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "kube-apiserver");
        let client = client_params.signed_by(&client_key, &issuer).unwrap();
        let chain = vec![server.der().clone()];
        let key_der = server_key.serialize_der();
        let config = server_config(&chain, &key_der, None);
        Pki {
            ca_pem: ca.pem(),
            server: config,
            client_cert_pem: client.pem(),
            client_key_pem: client_key.serialize_pem(),
            ca_der: ca.der().clone(),
            chain,
            key_der,
        }
    }

    /// The server configuration, demanding a client certificate from this CA.
    pub fn server_requiring_client_certs(&self) -> std::sync::Arc<rustls::ServerConfig> {
        server_config(&self.chain, &self.key_der, Some(&self.ca_der))
    }
}
