//! A new user's install (issue #15 item 7): real `kubectl apply -k manifests/` on the simulator,
//! then every example in order; every kustomize component and the cert-manager variant build;
//! and the agent's self-made webhook certificate: the agent creates the CA and certificate in its
//! Secret, sets the ValidatingWebhookConfiguration's `caBundle`, the simulator calls `/admission`
//! trusting only that bundle, commits name the person, and a restart reuses the Secret.

use crate::support::agent_env::*;
use crate::support::git_servers::{git, require_binary};
use gitops_reverser::manifest::yaml::parse_documents;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const NAMESPACE: &str = "gitops-reverser-system";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parse_documents(&text, &path.display().to_string())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `kubectl kustomize DIR`, parsed.
fn kustomize(kubectl: &Path, dir: &Path) -> Vec<Value> {
    let out = Command::new(kubectl)
        .arg("kustomize")
        .arg(dir)
        .output()
        .expect("kubectl runs");
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    parse_documents(&text, &dir.display().to_string()).expect("YAML")
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
}

fn args(docs: &[Value]) -> Vec<String> {
    let deployment = find(docs, "Deployment", "gitops-reverser").expect("the Deployment");
    deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect()
}

/// Every component builds on its own; the default install and the cert-manager variant build
/// and hold what each needs (and nothing the other needs).
#[test]
fn every_component_and_the_cert_manager_variant_build() {
    let Some(kubectl) = require_binary("kubectl", "kubectl") else {
        return;
    };
    let components = root().join("manifests/components");
    let mut built = Vec::new();
    for entry in std::fs::read_dir(&components).expect("manifests/components") {
        let dir = entry.expect("entry").path();
        assert!(
            dir.join("kustomization.yaml").is_file(),
            "{}",
            dir.display()
        );
        kustomize(&kubectl, &dir);
        built.push(
            dir.file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned(),
        );
    }
    built.sort();
    assert_eq!(
        built,
        [
            "admission-webhook",
            "cert-manager",
            "self-signed-certificate"
        ]
    );

    // The default: the admission webhook with the agent's own certificate.
    let default = kustomize(&kubectl, &root().join("manifests"));
    let webhook = find(
        &default,
        "ValidatingWebhookConfiguration",
        "gitops-reverser-attribution",
    )
    .expect("the webhook configuration");
    let hook = &webhook["webhooks"][0];
    assert!(
        hook["clientConfig"].get("caBundle").is_none(),
        "re-applying must not reset the caBundle the agent sets: {hook}"
    );
    assert_eq!(
        hook["clientConfig"]["service"]["name"],
        "gitops-reverser-webhook"
    );
    assert_eq!(hook["failurePolicy"], "Ignore");
    let default_args = args(&default);
    assert!(
        default_args.contains(&"--webhook-addr=0.0.0.0:9443".to_string()),
        "{default_args:?}"
    );
    assert!(
        !default_args.iter().any(|a| a.starts_with("--webhook-cert")),
        "{default_args:?}"
    );
    let secret = find(&default, "Secret", "gitops-reverser-webhook-tls").expect("the Secret");
    assert!(
        secret.get("data").is_none() && secret.get("stringData").is_none(),
        "{secret}"
    );
    // Least privilege: get and patch on the one Secret and the one webhook configuration.
    let role = find(&default, "Role", "gitops-reverser-webhook-certificate").expect("Role");
    assert_eq!(
        role["rules"],
        json!([{"apiGroups": [""], "resources": ["secrets"],
            "resourceNames": ["gitops-reverser-webhook-tls"], "verbs": ["get", "patch"]}])
    );
    let cluster_role =
        find(&default, "ClusterRole", "gitops-reverser-webhook-ca-bundle").expect("ClusterRole");
    assert_eq!(
        cluster_role["rules"],
        json!([{"apiGroups": ["admissionregistration.k8s.io"],
            "resources": ["validatingwebhookconfigurations"],
            "resourceNames": ["gitops-reverser-attribution"], "verbs": ["get", "patch"]}])
    );
    let service = find(&default, "Service", "gitops-reverser-webhook").expect("the Service");
    let deployment = find(&default, "Deployment", "gitops-reverser").expect("Deployment");
    let ports = &deployment["spec"]["template"]["spec"]["containers"][0]["ports"];
    let target = service["spec"]["ports"][0]["targetPort"]
        .as_str()
        .expect("named");
    assert!(
        ports
            .as_array()
            .expect("ports")
            .iter()
            .any(|p| p["name"] == target && p["containerPort"] == 9443),
        "{ports}"
    );

    // cert-manager: its Certificate, the CA injector's annotation, the mounted files; none of
    // the self-made certificate's objects.
    let variant = kustomize(&kubectl, &root().join("examples/cert-manager"));
    let webhook = find(
        &variant,
        "ValidatingWebhookConfiguration",
        "gitops-reverser-attribution",
    )
    .expect("the webhook configuration");
    assert_eq!(
        webhook["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
        format!("{NAMESPACE}/gitops-reverser-webhook")
    );
    let certificate =
        find(&variant, "Certificate", "gitops-reverser-webhook").expect("Certificate");
    assert_eq!(
        certificate["spec"]["dnsNames"][0],
        format!("gitops-reverser-webhook.{NAMESPACE}.svc")
    );
    assert!(find(&variant, "Issuer", "gitops-reverser-selfsigned").is_some());
    let variant_args = args(&variant);
    for flag in [
        "--webhook-cert=/etc/gitops-reverser/webhook/tls.crt",
        "--webhook-key=/etc/gitops-reverser/webhook/tls.key",
    ] {
        assert!(variant_args.contains(&flag.to_string()), "{variant_args:?}");
    }
    for (kind, name) in [
        ("Secret", "gitops-reverser-webhook-tls"),
        ("Role", "gitops-reverser-webhook-certificate"),
        ("ClusterRole", "gitops-reverser-webhook-ca-bundle"),
    ] {
        assert!(
            find(&variant, kind, name).is_none(),
            "{kind} {name} with cert-manager"
        );
    }
}

/// kubectl against a TLS simulator as admin, with a private HOME and cache.
struct Kubectl {
    kubectl: PathBuf,
    dir: tempfile::TempDir,
}

impl Kubectl {
    fn run(&self, args: &[&str]) -> String {
        let out = Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(self.dir.path().join("kubeconfig"))
            .args(args)
            .env("HOME", self.dir.path())
            .env("KUBECACHEDIR", self.dir.path().join("cache"))
            .env_remove("KUBECONFIG")
            .current_dir(root())
            .output()
            .expect("kubectl runs");
        assert!(
            out.status.success(),
            "kubectl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// `kubectl apply -k manifests/`, then each example in `examples/` in order (the order of
/// `kubectl apply -f examples/`), on a fresh simulator: every step succeeds, and the examples'
/// resources exist where they say.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_install_then_every_example_applies_in_order() {
    let Some(kubectl) = require_binary("kubectl", "kubectl") else {
        return;
    };
    let sim = kubesim::Simulator::start(kubesim::SimConfig::default().with_tls())
        .await
        .expect("simulator");
    let dir = tempfile::TempDir::new().expect("scratch");
    std::fs::write(
        dir.path().join("kubeconfig"),
        sim.kubeconfig("admin").expect("kubeconfig"),
    )
    .expect("write");
    let k = Kubectl { kubectl, dir };
    let out = tokio::task::block_in_place(|| k.run(&["apply", "-k", "manifests/"]));
    for created in [
        "deployment.apps/gitops-reverser created",
        "validatingwebhookconfiguration.admissionregistration.k8s.io/gitops-reverser-attribution created",
        "secret/gitops-reverser-webhook-tls created",
    ] {
        assert!(out.contains(created), "{out}");
    }
    let mut examples: Vec<PathBuf> = std::fs::read_dir(root().join("examples"))
        .expect("examples/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    examples.sort();
    assert!(examples.len() >= 5, "{examples:?}");
    for example in &examples {
        let path = example.to_str().expect("UTF-8");
        tokio::task::block_in_place(|| k.run(&["apply", "-f", path]));
    }
    // Applying them again, all at once, changes nothing and fails nothing.
    let again = tokio::task::block_in_place(|| k.run(&["apply", "-f", "examples/"]));
    assert!(!again.contains("created"), "{again}");
    for (resource, namespace, name) in [
        (
            "gitrepoconfigs.configbutler.ai",
            NAMESPACE,
            "platform-config",
        ),
        ("gitdestinations.configbutler.ai", "team-a", "prod"),
        ("watchrules.configbutler.ai", "team-a", "apps"),
    ] {
        let got = tokio::task::block_in_place(|| {
            k.run(&["get", resource, "-n", namespace, name, "-o", "name"])
        });
        assert!(got.contains(name), "{resource} {namespace}/{name}: {got}");
    }
    let got = tokio::task::block_in_place(|| {
        k.run(&[
            "get",
            "clusterwatchrules.configbutler.ai",
            "platform",
            "-o",
            "name",
        ])
    });
    assert!(got.contains("platform"), "{got}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port()
}

/// The body of `GET path` on the agent's metrics port, when it answers 200.
async fn get(port: u16, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
        .await
        .ok()?
        .ok()?;
    let answer = String::from_utf8(answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

/// Whether the agent on `port` finished its initial reconcile (the reconcile histogram counted
/// one): changes made from then on are events, not part of a reconcile snapshot.
async fn reconciled(port: u16) -> Option<()> {
    let metrics = get(port, "/metrics").await?;
    metrics
        .lines()
        .filter(|l| l.starts_with("gitops_reverser_reconcile_duration") && l.contains("_count"))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .any(|n| n >= 1.0)
        .then_some(())
}

/// The agent as components/admission-webhook runs it, with the simulator's address as a name;
/// its metrics (and `/readyz`) on `ports.1`.
fn start_agent(kubeconfig: &Path, state: &Path, ports: (u16, u16), log: &Path) -> Child {
    let (webhook_port, metrics_port) = ports;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    Command::new(env!("CARGO_BIN_EXE_gitops-reverser"))
        .args(["run", "--cluster-name", "install"])
        .arg(format!("--metrics-addr=127.0.0.1:{metrics_port}"))
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--state-dir")
        .arg(state)
        .arg(format!("--webhook-addr=127.0.0.1:{webhook_port}"))
        .args([
            "--admission-without-client-cert",
            "--webhook-namespace",
            NAMESPACE,
        ])
        .args(["--webhook-dns-name", "127.0.0.1"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("the agent starts")
}

async fn wait_for<T>(what: &str, log: &Path, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; the agent's log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn stop(mut agent: Child) {
    let _ = rustix::process::kill_process(
        rustix::process::Pid::from_child(&agent),
        rustix::process::Signal::TERM,
    );
    let _ = agent.wait();
}

fn author_of_last_commit(repo: &Path) -> String {
    let dir = repo.to_str().expect("utf-8");
    git(
        repo,
        &["--git-dir", dir, "log", "-1", "--format=%an", "main"],
        None,
    )
    .trim()
    .to_string()
}

/// The default install's attribution, end to end with the real binary: the shipped Secret
/// (empty) and webhook configuration (no caBundle; its URL pointed at the agent), the agent
/// started as the component starts it. It fills the Secret and the caBundle; the simulator, which
/// trusts only that caBundle, calls `/admission`; alice's change is committed as alice. A restart
/// reuses the Secret and puts back a caBundle removed meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_makes_its_certificate_and_the_api_server_trusts_it() {
    let env = Env::with(
        kubesim::SimConfig::default().with_user(kubesim::User::admin("alice", "alice-token")),
    )
    .await;
    env.namespace(NAMESPACE, json!({})).await;
    let components = root().join("manifests/components");
    for secret in documents(&components.join("self-signed-certificate/secret.yaml")) {
        apply(&env.client, secret).await;
    }
    let port = free_port();
    let ports = (port, free_port());
    let url = format!("https://127.0.0.1:{port}/admission");
    let mut webhook =
        documents(&components.join("admission-webhook/validatingwebhookconfiguration.yaml"))
            .remove(0);
    let shipped = webhook.clone();
    webhook["webhooks"][0]["clientConfig"] = json!({"url": url});
    let configurations: Api<ValidatingWebhookConfiguration> = Api::all(env.client.clone());
    configurations
        .create(
            &PostParams::default(),
            &serde_json::from_value(webhook.clone()).expect("typed"),
        )
        .await
        .expect("the webhook configuration");
    env.configure().await;
    env.put_configmap("shop", "before", "0").await;

    let kubeconfig = env.scratch.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        env.sim.kubeconfig("admin").expect("kubeconfig"),
    )
    .expect("write");
    let state = env.scratch.path().join("state");
    let log = env.scratch.path().join("agent.log");
    let agent = start_agent(&kubeconfig, &state, ports, &log);

    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), NAMESPACE);
    let secret_ca = async || {
        let secret = secrets.get("gitops-reverser-webhook-tls").await.ok()?;
        let data = secret.data?;
        ["tls.crt", "tls.key", "ca.key"]
            .iter()
            .all(|k| data.contains_key(*k))
            .then_some(())?;
        Some(data.get("ca.crt")?.0.clone())
    };
    let ca = wait_for("the Secret's certificate", &log, secret_ca).await;
    assert!(String::from_utf8_lossy(&ca).contains("BEGIN CERTIFICATE"));
    let bundle = async || {
        let current = configurations
            .get("gitops-reverser-attribution")
            .await
            .ok()?;
        current
            .webhooks?
            .first()?
            .client_config
            .ca_bundle
            .clone()
            .map(|b| b.0)
    };
    let set = wait_for("the caBundle", &log, bundle).await;
    assert_eq!(set, ca, "the caBundle is the Secret's CA");

    // The initial reconcile, then alice's change, committed as alice: the simulator reached
    // /admission over TLS verified against the caBundle alone.
    wait_for("the initial reconcile", &log, async || {
        reconciled(ports.1).await
    })
    .await;
    assert!(env.file("shop", "before").is_some());
    let as_alice: Api<ConfigMap> =
        Api::namespaced(env.sim.client_for("alice").await.expect("alice"), "shop");
    as_alice
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "settings"}, "data": {"a": "1"}}))
                .expect("cm"),
        )
        .await
        .expect("alice creates");
    wait_for("alice's commit", &log, async || {
        env.file("shop", "settings").map(|_| ())
    })
    .await;
    assert_eq!(author_of_last_commit(&env.repo), "alice");
    let first_rv = secrets
        .get("gitops-reverser-webhook-tls")
        .await
        .expect("secret")
        .metadata
        .resource_version;
    stop(agent);

    // Re-applied as shipped (someone's `kubectl apply`, or the configuration recreated): no
    // caBundle. A restart reuses the Secret and sets the caBundle again.
    configurations
        .delete("gitops-reverser-attribution", &Default::default())
        .await
        .expect("delete");
    let mut recreated = shipped;
    recreated["webhooks"][0]["clientConfig"] = json!({"url": url});
    configurations
        .create(
            &PostParams::default(),
            &serde_json::from_value(recreated).expect("typed"),
        )
        .await
        .expect("recreate");
    let agent = start_agent(&kubeconfig, &state, ports, &log);
    let again = wait_for("the caBundle again", &log, bundle).await;
    wait_for("the reconcile after the restart", &log, async || {
        reconciled(ports.1).await
    })
    .await;
    assert_eq!(again, ca, "the same CA after a restart");
    let secret = secrets
        .get("gitops-reverser-webhook-tls")
        .await
        .expect("secret");
    assert_eq!(
        secret.metadata.resource_version, first_rv,
        "the Secret was reused as it was"
    );
    let data: BTreeMap<String, k8s_openapi::ByteString> =
        secret.data.expect("data").into_iter().collect();
    assert_eq!(data["ca.crt"].0, ca);

    as_alice
        .patch(
            "settings",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"data": {"a": "2"}})),
        )
        .await
        .expect("alice edits");
    wait_for("alice's edit", &log, async || {
        env.file("shop", "settings")
            .filter(|f| f.contains("a: \"2\""))
            .map(|_| ())
    })
    .await;
    assert_eq!(author_of_last_commit(&env.repo), "alice");
    stop(agent);
}
