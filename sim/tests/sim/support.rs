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
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(sim.addr())
        .await
        .expect("connect");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Content-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
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
