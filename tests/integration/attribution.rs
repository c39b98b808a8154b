//! The attribution webhooks over real HTTPS: EventList batches of copied real audit events with
//! a client certificate, bad input refused with a 4xx, AdmissionReviews always allowed.

use gitops_reverser::attribution::{
    FactIndex, FactKey, Lookup, Resolver, Source, WebhookConfig, WebhookServer,
};
use gitops_reverser::audit::AuditEvent;
use gitops_reverser::audit::read::read_events;
use gitops_reverser::identity::AuthorMapping;
use gitops_reverser::manifest::{content_hash, sanitize};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TIME: &str = "2026-06-02T11:16:29.174537Z";

fn data(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/audit")
        .join(path)
}

/// The events of a copied audit file, with the lab's placeholders made concrete: `<ts>` a fixed
/// time, `<uid-N>`, `<rv-N>`, ... values unique to the file; a missing request time is `TIME`.
fn events(path: &str) -> Vec<AuditEvent> {
    let mut text = std::fs::read_to_string(data(path)).expect("test data");
    text = text.replace("<ts>", TIME);
    let stem = path.rsplit('/').next().unwrap_or(path).replace('.', "-");
    for name in ["uid", "rv", "ns", "auditID", "ip", "credential"] {
        for n in 1..10 {
            text = text.replace(&format!("<{name}-{n}>"), &format!("{stem}-{name}-{n}"));
        }
    }
    let mut events = read_events(text.as_bytes(), path)
        .expect("audit data")
        .events;
    // Some captures were trimmed of their timestamps; the API server always sends one.
    for event in &mut events {
        if event.request_received().is_none() {
            event.request_received_timestamp = Some(TIME.to_string());
        }
    }
    events
}

fn event_list(events: &[AuditEvent]) -> Vec<u8> {
    json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {},
        "items": events})
    .to_string()
    .into_bytes()
}

pub(crate) struct Pki {
    _dir: tempfile::TempDir,
    /// PEM of the CA, and of the client certificate and key (what the apiserver presents).
    pub(crate) ca_pem: String,
    pub(crate) client_cert_pem: String,
    pub(crate) client_key_pem: String,
    ca: CertificateDer<'static>,
    client_chain: Vec<CertificateDer<'static>>,
    client_key: PrivateKeyDer<'static>,
    pub(crate) cert_file: PathBuf,
    pub(crate) key_file: PathBuf,
    ca_file: PathBuf,
}

/// A test CA, a server certificate for 127.0.0.1 and a client certificate (the apiserver's).
pub(crate) fn pki() -> Pki {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "attribution-test-ca");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().expect("key");
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca");
    let issuer = Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate().expect("key");
    let server_params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("server params");
    let server = server_params
        .signed_by(&server_key, &issuer)
        .expect("server cert");

    let client_key = KeyPair::generate().expect("key");
    let mut client_params = CertificateParams::new(Vec::<String>::new()).expect("client params");
    client_params
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver-audit");
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client = client_params
        .signed_by(&client_key, &issuer)
        .expect("client cert");

    let cert_file = dir.path().join("tls.crt");
    let key_file = dir.path().join("tls.key");
    let ca_file = dir.path().join("ca.crt");
    std::fs::write(&cert_file, server.pem()).expect("write");
    std::fs::write(&key_file, server_key.serialize_pem()).expect("write");
    std::fs::write(&ca_file, ca_cert.pem()).expect("write");
    Pki {
        ca_pem: ca_cert.pem(),
        client_cert_pem: client.pem(),
        client_key_pem: client_key.serialize_pem(),
        ca: ca_cert.der().clone(),
        client_chain: vec![client.der().clone()],
        client_key: PrivateKeyDer::from_pem_slice(client_key.serialize_pem().as_bytes())
            .expect("client key"),
        _dir: dir,
        cert_file,
        key_file,
        ca_file,
    }
}

struct Reply {
    status: u16,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// A TLS client trusting the test CA, with the apiserver's client certificate or without.
fn client_config(pki: &Pki, client_cert: bool) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca.clone()).expect("root");
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots);
    Arc::new(if client_cert {
        builder
            .with_client_auth_cert(pki.client_chain.clone(), pki.client_key.clone_key())
            .expect("client auth")
    } else {
        builder.with_no_client_auth()
    })
}

/// The status code of an HTTP answer.
fn status_of(text: &str) -> u16 {
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"))
}

/// One HTTPS POST with `Connection: close`, read to the end.
async fn post(
    pki: &Pki,
    addr: SocketAddr,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
    client_cert: bool,
) -> Reply {
    let connector = tokio_rustls::TlsConnector::from(client_config(pki, client_cert));
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let mut tls = connector
            .connect(ServerName::try_from("127.0.0.1").expect("name"), tcp)
            .await
            .expect("TLS handshake");
        let content_type = content_type
            .map(|c| format!("Content-Type: {c}\r\n"))
            .unwrap_or_default();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\n{content_type}Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        // The server may answer (and close) before reading an oversized body: write errors are
        // not the test's concern, the answer is.
        let _ = tls.write_all(head.as_bytes()).await;
        let _ = tls.write_all(body).await;
        let _ = tls.flush().await;
        let mut raw = Vec::new();
        let _ = tls.read_to_end(&mut raw).await;
        let text = String::from_utf8_lossy(&raw).to_string();
        let status = status_of(&text);
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Reply { status, body }
    };
    tokio::time::timeout(Duration::from_secs(20), exchange)
        .await
        .expect("the webhook answered in time")
}

pub(crate) async fn start(pki: &Pki, max_body_bytes: usize) -> (WebhookServer, Arc<FactIndex>) {
    let index = Arc::new(FactIndex::default());
    let mut config = WebhookConfig::new(
        "127.0.0.1:0".parse().expect("addr"),
        pki.cert_file.clone(),
        pki.key_file.clone(),
    );
    config.client_ca_file = Some(pki.ca_file.clone());
    config.max_body_bytes = max_body_bytes;
    let server = WebhookServer::start(config, index.clone())
        .await
        .expect("webhook server starts");
    (server, index)
}

/// Waits until the queue's worker has processed `events` events.
async fn processed(server: &WebhookServer, events: u64) {
    for _ in 0..400 {
        let s = server.stats();
        if s.audit_events_used + s.audit_events_skipped >= events {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("audit events not processed: {:?}", server.stats());
}

fn good_batch() -> Vec<AuditEvent> {
    let mut batch = Vec::new();
    for file in [
        "gitops-reverser-mutationlab/configmap__create-succeeds__audit.create.yaml",
        "gitops-reverser-mutationlab/configmap__update__audit.update.yaml",
        "gitops-reverser-mutationlab/configmap__dry-run-create__audit.create.yaml",
        "gitops-reverser-mutationlab/configmap__conflict-update__audit.update.yaml",
        "gitops-reverser-mutationlab/configmap__deletion-intent-actor__audit.delete.yaml",
        "gitops-reverser/deployment-scale-subresource.json",
        "falco-k8s_audit/create_configmap.json",
        "falco-k8s_audit/delete_configmap.json",
    ] {
        batch.extend(events(file));
    }
    batch
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_batches_with_a_client_certificate_become_facts() {
    let pki = pki();
    let (server, index) = start(&pki, 1024 * 1024).await;
    let addr = server.local_addr();
    let batch = good_batch();
    let n = batch.len() as u64;
    let reply = post(
        &pki,
        addr,
        "/audit",
        Some("application/json"),
        &event_list(&batch),
        true,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["accepted"], n);
    processed(&server, n).await;
    let stats = server.stats();
    // The dry run and the 409 conflict are not facts.
    assert!(stats.audit_events_skipped >= 2, "{stats:?}");
    assert!(stats.audit_events_used >= 5, "{stats:?}");

    let resolver = Resolver::new(index.clone(), Duration::ZERO, AuthorMapping::default());
    // kubectl scale: the Deployment's change is found by the parent's uid and rv.
    let scale = resolver
        .resolve(Lookup {
            uid: Some("251415e8-3e88-4fd3-93e0-a07f99d0a890".into()),
            resource_version: Some("6977".into()),
            group: "apps".into(),
            resource: "deployments".into(),
            namespace: Some("scale-audit-capture".into()),
            name: "scale-audit-target".into(),
            observed_at: TIME.parse().expect("time"),
            ..Lookup::default()
        })
        .await;
    assert_eq!(scale.user.as_deref(), Some("system:admin"));
    assert_eq!(scale.source, Source::Audit);
    assert_eq!(
        scale.audit_id.as_deref(),
        Some("539bcccb-1b11-4820-83fa-356b5846b95e")
    );
    // The update in the lab file: uid-1 at rv-2, with the request time as the author date.
    let stem = "configmap__update__audit-update-yaml";
    let update = index
        .get(&FactKey::UidRv {
            uid: format!("{stem}-uid-1"),
            rv: format!("{stem}-rv-2"),
        })
        .expect("the update's fact");
    assert_eq!(update.user.username, "system:admin");
    assert_eq!(update.time, TIME.parse().expect("time"));
    // The dry run left nothing under its name.
    let dry = "configmap__dry-run-create__audit-create-yaml";
    assert!(
        index
            .get(&FactKey::DeleteUid(format!("{dry}-uid-1")))
            .is_none()
    );
    server.shutdown().await;
}

/// What, content type, body, with a client certificate, expected status, text in the message.
type BadCase = (
    &'static str,
    Option<&'static str>,
    Vec<u8>,
    bool,
    u16,
    &'static str,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_and_the_server_keeps_answering() {
    let pki = pki();
    let (server, index) = start(&pki, 64 * 1024).await;
    let addr = server.local_addr();
    let good = event_list(&events(
        "gitops-reverser-mutationlab/configmap__create-succeeds__audit.create.yaml",
    ));
    let json = Some("application/json");

    let cases: Vec<BadCase> = vec![
        ("no client certificate", json, good.clone(), false, 401, "client certificate"),
        ("malformed JSON", json, b"{\"kind\":\"EventList\",".to_vec(), true, 400, "JSON"),
        ("wrong content type", Some("text/plain"), good.clone(), true, 415, "application/json"),
        ("no content type", None, good.clone(), true, 415, "content type none"),
        ("oversized", json, vec![b' '; 200 * 1024], true, 413, "larger than 65536 bytes"),
        (
            "missing items",
            json,
            br#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1"}"#.to_vec(),
            true,
            422,
            "no items",
        ),
        (
            "event without stage",
            json,
            br#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{"auditID":"x","verb":"create"}]}"#
                .to_vec(),
            true,
            422,
            "items[0] has no stage",
        ),
    ];
    for (what, content_type, body, cert, status, message) in cases {
        let reply = post(&pki, addr, "/audit", content_type, &body, cert).await;
        assert_eq!(reply.status, status, "{what}: {}", reply.body);
        let text = reply.json()["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(text.contains(message), "{what}: {text}");
        assert!(index.is_empty(), "{what}: no fact recorded");
        // The next good request is still served.
        let ok = post(&pki, addr, "/admission", json, b"{}", true).await;
        assert_eq!(ok.status, 422, "{what}: the server still answers");
    }
    assert_eq!(server.stats().rejected, 14);
    let reply = post(&pki, addr, "/audit", json, &good, true).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    processed(&server, 1).await;
    assert!(!index.is_empty());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_reviews_are_allowed_and_recorded_except_dry_runs() {
    let pki = pki();
    let (server, index) = start(&pki, 1024 * 1024).await;
    let addr = server.local_addr();
    let text = std::fs::read_to_string(data("admission/kube-audit-rest-rancher-desktop.jsonl"))
        .expect("admission data");
    let review: Value = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|r| r.pointer("/request/kind/kind") == Some(&json!("Event")))
        .expect("an Event CREATE");
    let uid = review["request"]["uid"].as_str().expect("uid").to_string();
    let user = review["request"]["userInfo"]["username"]
        .as_str()
        .expect("user")
        .to_string();

    // Without the API server's client certificate, a review is refused and records nothing:
    // whoever could post one would choose a commit's author.
    let forged = post(
        &pki,
        addr,
        "/admission",
        Some("application/json"),
        review.to_string().as_bytes(),
        false,
    )
    .await;
    assert_eq!(forged.status, 401, "{}", forged.body);
    assert!(
        forged.json()["message"]
            .as_str()
            .unwrap_or_default()
            .contains("requires a client certificate"),
        "{}",
        forged.body
    );
    assert!(index.is_empty(), "a forged review records no fact");

    let reply = post(
        &pki,
        addr,
        "/admission",
        Some("application/json"),
        review.to_string().as_bytes(),
        true,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let answer = reply.json();
    assert_eq!(answer["kind"], "AdmissionReview");
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(answer["response"]["uid"], json!(uid));
    assert_eq!(answer["response"]["allowed"], true);

    let mut stored = review["request"]["object"].clone();
    sanitize(&mut stored);
    let fact = index
        .get(&FactKey::Hash(content_hash(&stored)))
        .expect("the admission fact, by the stored content's hash");
    assert_eq!(fact.user.username, user);
    assert_eq!(fact.source, Source::Admission);

    // A dry run is allowed and recorded nowhere.
    let mut dry = review.clone();
    dry["request"]["uid"] = json!("dry-run-uid");
    dry["request"]["dryRun"] = json!(true);
    dry["request"]["object"]["message"] = json!("only a dry run");
    let before = index.len();
    let reply = post(
        &pki,
        addr,
        "/admission",
        Some("application/json; charset=utf-8"),
        dry.to_string().as_bytes(),
        true,
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["response"]["uid"], "dry-run-uid");
    assert_eq!(reply.json()["response"]["allowed"], true);
    assert_eq!(index.len(), before);
    let stats = server.stats();
    assert_eq!(stats.admission_requests, 2);
    assert_eq!(stats.admission_facts, 1);
    assert_eq!(stats.admission_ignored, 1);
    server.shutdown().await;
}

/// Reads a `Vm…` line of /proc/<pid>/status, in bytes.
fn vm(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// A TLS connection to the webhook with the apiserver's client certificate.
async fn connect(
    pki: &Pki,
    addr: SocketAddr,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tokio_rustls::TlsConnector::from(client_config(pki, true))
        .connect(ServerName::try_from("127.0.0.1").expect("name"), tcp)
        .await
        .expect("TLS handshake")
}

/// Posts `body` to /audit while reading the answer (the server may answer 503 before it read
/// the body); returns the status and the Retry-After header.
async fn post_big(pki: &Pki, addr: SocketAddr, body: Arc<Vec<u8>>) -> (u16, Option<String>) {
    let tls = connect(pki, addr).await;
    let (mut rx, mut tx) = tokio::io::split(tls);
    let head = format!(
        "POST /audit HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let writer = tokio::spawn(async move {
        let _ = tx.write_all(head.as_bytes()).await;
        let _ = tx.write_all(&body).await;
        let _ = tx.flush().await;
        tx
    });
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    // The head of the answer is all this needs.
    while !raw.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(60), rx.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => raw.extend_from_slice(&buf[..n]),
            Err(_) => panic!("no answer within 60 s"),
        }
    }
    writer.abort();
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = status_of(&text);
    let retry_after = text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("retry-after"))
        .map(|(_, v)| v.trim().to_string());
    (status, retry_after)
}

/// Slow and oversized requests in parallel against the real binary (issue #15 item 2): 200
/// connections that send their headers a line a second are closed after the header-read
/// timeout, 48 parallel 9.9 MB EventLists either land or get 503 with `Retry-After` (the body
/// budget), the process's peak RSS stays far below the Deployment's 512 Mi, and a normal batch
/// is answered afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_oversized_requests_leave_memory_bounded() {
    let env = crate::support::agent_env::Env::with(kubesim::SimConfig::default().with_tls()).await;
    let kubeconfig = env.scratch.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        env.sim.kubeconfig("admin").expect("kubeconfig"),
    )
    .expect("write");
    let pki = Arc::new(pki());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let mut agent = std::process::Command::new(env!("CARGO_BIN_EXE_gitops-reverser"))
        .args([
            "run",
            "--metrics-addr",
            "127.0.0.1:0",
            "--cluster-name",
            "bounds",
        ])
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .arg("--state-dir")
        .arg(env.scratch.path().join("state"))
        .arg("--webhook-addr")
        .arg(addr.to_string())
        .arg("--webhook-cert")
        .arg(&pki.cert_file)
        .arg("--webhook-key")
        .arg(&pki.key_file)
        .arg("--webhook-client-ca")
        .arg(&pki.ca_file)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the agent starts");
    let pid = agent.id();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the webhook never listened"
        );
        assert!(
            agent.try_wait().expect("status").is_none(),
            "the agent exited"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let normal = event_list(&good_batch());
    let post_normal = async || {
        post(
            &pki,
            addr,
            "/audit",
            Some("application/json"),
            &normal,
            true,
        )
        .await
    };
    let warm = post_normal().await;
    assert_eq!(warm.status, 200, "{}", warm.body);
    let before = vm(pid, "VmRSS");

    // 9.9 MB of real audit events.
    let one = good_batch();
    let unit = event_list(&one).len();
    let copies = 9_900_000 / unit;
    let big: Vec<AuditEvent> = (0..copies).flat_map(|_| one.clone()).collect();
    let big = Arc::new(event_list(&big));
    assert!(
        big.len() > 9_000_000 && big.len() < 10 * 1024 * 1024,
        "{}",
        big.len()
    );

    let slow: Vec<_> = (0..200)
        .map(|_| {
            let pki = pki.clone();
            tokio::spawn(async move {
                let started = std::time::Instant::now();
                let mut tls = connect(&pki, addr).await;
                let _ = tls.write_all(b"POST /audit HTTP/1.1\r\nHost: x\r\n").await;
                let mut buf = [0u8; 256];
                // A header line a second until the server closes (or 60 s).
                while started.elapsed() < Duration::from_secs(60) {
                    match tokio::time::timeout(Duration::from_secs(1), tls.read(&mut buf)).await {
                        Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
                        Ok(Ok(_)) => return started.elapsed(), // an error answer, then close
                        Err(_) => {
                            if tls.write_all(b"X-Slow: 1\r\n").await.is_err() {
                                return started.elapsed();
                            }
                        }
                    }
                }
                started.elapsed()
            })
        })
        .collect();
    let large: Vec<_> = (0..48)
        .map(|_| {
            let (pki, body) = (pki.clone(), big.clone());
            tokio::spawn(async move { post_big(&pki, addr, body).await })
        })
        .collect();
    let mut statuses = BTreeMap::new();
    for task in large {
        let (status, retry_after) = task.await.expect("post");
        if status == 503 {
            assert_eq!(retry_after.as_deref(), Some("1"));
        }
        *statuses.entry(status).or_insert(0) += 1;
    }
    let mut held = Vec::new();
    for task in slow {
        held.push(task.await.expect("slow client"));
    }
    let longest = held.iter().max().copied().unwrap_or_default();
    let peak = vm(pid, "VmHWM");
    eprintln!(
        "bounds: statuses {statuses:?}; slow connections closed after at most {longest:?}; \
         RSS before {} MiB, peak {} MiB",
        before >> 20,
        peak >> 20
    );
    assert!(
        agent.try_wait().expect("status").is_none(),
        "the agent died"
    );
    // Every large body either landed or was refused for the budget; some landed.
    assert!(
        statuses.keys().all(|s| *s == 200 || *s == 503),
        "{statuses:?}"
    );
    assert!(statuses.get(&200).is_some_and(|n| *n >= 1), "{statuses:?}");
    assert!(statuses.get(&503).is_some_and(|n| *n >= 1), "{statuses:?}");
    // Slow-header connections are closed after the header-read timeout (5 s), not held.
    assert!(longest < Duration::from_secs(15), "held {longest:?}");
    // Half the Deployment's limit (without the budget: about 550 MiB, measured).
    assert!(peak < 256 << 20, "peak RSS {} MiB", peak >> 20);
    // And the server still answers a normal request.
    let after = post_normal().await;
    assert_eq!(after.status, 200, "{}", after.body);
    let _ = agent.kill();
    let _ = agent.wait();
}
