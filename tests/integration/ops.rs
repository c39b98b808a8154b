//! Operating the agent: the metrics and health endpoints over real HTTP (with a real worker's
//! numbers), and the install manifests: objects, RBAC limits, hardening, CRD copies, kustomize.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gitops_reverser::crd::crd_files;
use gitops_reverser::git::change::{Change, FileChange};
use gitops_reverser::git::registry::Registry as Workers;
use gitops_reverser::git::transport::GitCli;
use gitops_reverser::git::worker::WorkerConfig;
use gitops_reverser::identity::Author;
use gitops_reverser::manifest::yaml::parse_documents;
use gitops_reverser::ops::{
    EventDecision, Metrics, OpsError, OpsServer, OpsState, Readiness, WorkerSample,
};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::git_servers::GitServer;

// ---------------------------------------------------------------------------------------------
// The HTTP endpoints

struct Reply {
    status: u16,
    content_type: String,
    body: String,
}

/// One HTTP/1.1 GET with `Connection: close`, read to the end.
async fn get(addr: SocketAddr, path: &str, accept: Option<&str>) -> Reply {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let accept = accept
            .map(|a| format!("Accept: {a}\r\n"))
            .unwrap_or_default();
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{accept}Connection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.expect("read");
        raw
    };
    let raw = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .unwrap_or_else(|_| panic!("GET {path}: no answer within 10 s"));
    let text = String::from_utf8(raw).expect("UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("header end");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let content_type = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    Reply {
        status,
        content_type,
        body: body.to_string(),
    }
}

fn change(folder: &str, name: &str) -> Change {
    Change {
        folder: folder.into(),
        destination: format!("shop/{folder}"),
        author: Author {
            name: "alice".into(),
            email: "alice@example.com".into(),
        },
        user: Some("alice".into()),
        impersonator: None,
        audit_id: None,
        received: jiff::Timestamp::now(),
        file: FileChange {
            object: None,
            bundle: false,
            path: format!("{folder}/{name}.yaml"),
            content: Some(format!("name: {name}\n").into_bytes().into()),
            hash: None,
            summary: format!("create v1 ConfigMap shop/{name}"),
            namespace: Some("shop".into()),
            live: None,
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_serve_health_readiness_and_a_real_workers_metrics() {
    let server = GitServer::file();
    let state_dir = tempfile::TempDir::new().expect("temp dir");
    let workers = Workers::new(
        state_dir.path(),
        Arc::new(GitCli::new()),
        WorkerConfig::default(),
    );
    let handle = workers
        .acquire(server.remote(), "main", "GitDestination shop/web")
        .expect("acquire a worker");
    handle.send(change("web", "one")).await.expect("send");
    handle.send(change("web", "two")).await.expect("send");
    handle.flush().await.expect("flush pushes");
    let repository = handle.key().to_string();

    let sample = WorkerSample::of(&handle);
    assert_eq!(sample.repository, repository);
    assert_eq!((sample.commits, sample.pushes), (1, 1), "{sample:?}");
    assert_eq!(
        (sample.queued, sample.waiting_changes),
        (0, 0),
        "{sample:?}"
    );
    assert!(!repository.contains('@') || repository.starts_with("ssh://"));

    let handles = [handle.clone()];
    let metrics = Arc::new(Metrics::new(move || {
        handles.iter().map(WorkerSample::of).collect()
    }));
    metrics.record_event(EventDecision::Written);
    let readiness = Readiness::new();
    let ops = OpsServer::bind("127.0.0.1:0".parse().expect("address"))
        .await
        .expect("bind");
    let addr = ops.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let state = OpsState {
        metrics: metrics.clone(),
        readiness: readiness.clone(),
        status: None,
    };
    let serving = tokio::spawn(ops.run(state, async {
        let _ = stopped.await;
    }));

    let health = get(addr, "/healthz", None).await;
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    assert!(health.content_type.starts_with("text/plain"));

    let ready = get(addr, "/readyz", None).await;
    assert_eq!(
        (ready.status, ready.body.as_str()),
        (503, "not ready: starting\n")
    );
    readiness.set_not_ready("destination shop/web: initial reconcile running");
    let ready = get(addr, "/readyz", None).await;
    assert_eq!(ready.status, 503);
    assert!(ready.body.contains("shop/web"), "{}", ready.body);
    readiness.set_ready();
    let ready = get(addr, "/readyz", None).await;
    assert_eq!((ready.status, ready.body.as_str()), (200, "ready\n"));

    let prometheus_accept = "application/openmetrics-text;version=1.0.0,\
                             text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let open = get(addr, "/metrics", Some(prometheus_accept)).await;
    assert_eq!(open.status, 200);
    assert_eq!(
        open.content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(open.body.ends_with("# EOF\n"), "{}", open.body);
    for line in [
        "gitops_reverser_events_total{decision=\"written\"} 1".to_string(),
        "gitops_reverser_events_total{decision=\"no-route\"} 0".to_string(),
        "gitops_reverser_workers 1".to_string(),
        format!("gitops_reverser_commits_total{{repository=\"{repository}\"}} 1"),
        format!("gitops_reverser_pushes_total{{repository=\"{repository}\"}} 1"),
        format!("gitops_reverser_push_failures_total{{repository=\"{repository}\"}} 0"),
        format!("gitops_reverser_queue_depth{{repository=\"{repository}\"}} 0"),
        format!("gitops_reverser_waiting_changes{{repository=\"{repository}\"}} 0"),
    ] {
        assert!(
            open.body.lines().any(|l| l == line),
            "{line} in\n{}",
            open.body
        );
    }

    let plain = get(addr, "/metrics", None).await;
    assert_eq!(plain.status, 200);
    assert_eq!(
        plain.content_type,
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert!(!plain.body.contains("# EOF"));
    assert!(plain.body.contains("gitops_reverser_pushes_total{"));

    assert_eq!(get(addr, "/nothing-here", None).await.status, 404);
    // Without an agent in the process there is no status to show, and it says so.
    let status = get(addr, "/status", None).await;
    assert_eq!(status.status, 404);
    assert!(
        status.body.contains("the agent is not running"),
        "{}",
        status.body
    );
    assert_eq!(get(addr, "/status.json", None).await.status, 404);

    stop.send(()).expect("server still running");
    let result = tokio::time::timeout(Duration::from_secs(10), serving)
        .await
        .expect("the server stops after the shutdown signal")
        .expect("server task");
    assert!(result.is_ok(), "{result:?}");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "nothing listens after shutdown"
    );
}

#[tokio::test]
async fn serve_reports_an_address_in_use_by_name() {
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = taken.local_addr().expect("local address");
    let state = OpsState {
        metrics: Arc::new(Metrics::new(Vec::new)),
        readiness: Readiness::new(),
        status: None,
    };
    let error = gitops_reverser::ops::serve(addr, state, std::future::pending())
        .await
        .expect_err("the address is taken");
    assert!(matches!(error, OpsError::Bind { .. }), "{error:?}");
    assert!(error.to_string().contains(&addr.to_string()), "{error}");
}

/// A client that sends its headers slowly (or not at all) is closed after the header-read
/// timeout, while others are answered; shutdown still waits for nobody idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_header_clients_are_closed_and_others_answered() {
    let ops = OpsServer::bind("127.0.0.1:0".parse().expect("address"))
        .await
        .expect("bind");
    let addr = ops.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let state = OpsState {
        metrics: Arc::new(Metrics::new(Vec::new)),
        readiness: Readiness::new(),
        status: None,
    };
    let serving = tokio::spawn(ops.run(state, async {
        let _ = stopped.await;
    }));
    let slow: Vec<_> = (0..20)
        .map(|i| {
            tokio::spawn(async move {
                let started = std::time::Instant::now();
                let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
                if i % 2 == 0 {
                    let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\n").await;
                }
                let mut buf = [0u8; 256];
                // Closed (EOF or an error answer) by the server, or still open after 30 s.
                let _ = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buf)).await;
                started.elapsed()
            })
        })
        .collect();
    assert_eq!(get(addr, "/healthz", None).await.status, 200);
    for task in slow {
        let held = task.await.expect("slow client");
        assert!(
            held < Duration::from_secs(15),
            "a slow client was held {held:?}"
        );
    }
    assert_eq!(get(addr, "/readyz", None).await.status, 503);
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), serving)
        .await
        .expect("the server stops")
        .expect("task")
        .expect("served");
}

// ---------------------------------------------------------------------------------------------
// The manifests

const NAMESPACE: &str = "gitops-reverser-system";
const SERVICE_ACCOUNT: &str = "gitops-reverser";
const OWN_GROUP: &str = "configbutler.ai";
const READ_VERBS: [&str; 3] = ["get", "list", "watch"];

fn manifests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests")
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

fn parse_file(path: &Path) -> Vec<Value> {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parse_documents(&text, &path.display().to_string())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every object the top-level manifests (not the kustomization, not the CRDs) hold.
fn objects() -> Vec<Value> {
    yaml_files(&manifests_dir())
        .iter()
        .filter(|p| p.file_name().is_some_and(|n| n != "kustomization.yaml"))
        .flat_map(|p| parse_file(p))
        .collect()
}

fn str_of<'a>(doc: &'a Value, pointer: &str) -> &'a str {
    doc.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .map(|items| items.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{kind} {name} in manifests/"))
}

#[test]
fn manifests_hold_the_expected_objects() {
    let found: BTreeSet<(String, String, String)> = objects()
        .iter()
        .map(|o| {
            (
                str_of(o, "/kind").to_string(),
                str_of(o, "/metadata/name").to_string(),
                str_of(o, "/metadata/namespace").to_string(),
            )
        })
        .collect();
    let ns = NAMESPACE.to_string();
    let expected: BTreeSet<(String, String, String)> = [
        ("Namespace", NAMESPACE, ""),
        ("ServiceAccount", SERVICE_ACCOUNT, NAMESPACE),
        ("ClusterRole", "gitops-reverser-controller", ""),
        ("ClusterRoleBinding", "gitops-reverser-controller", ""),
        ("ClusterRole", "gitops-reverser-read", ""),
        ("ClusterRole", "gitops-reverser-read-builtin", ""),
        ("ClusterRoleBinding", "gitops-reverser-read", ""),
        ("Role", "gitops-reverser-secrets", NAMESPACE),
        ("RoleBinding", "gitops-reverser-secrets", NAMESPACE),
        ("Role", "gitops-reverser-leader-election", NAMESPACE),
        ("RoleBinding", "gitops-reverser-leader-election", NAMESPACE),
        ("Deployment", "gitops-reverser", NAMESPACE),
        ("PodDisruptionBudget", "gitops-reverser", NAMESPACE),
        ("Service", "gitops-reverser-metrics", NAMESPACE),
    ]
    .into_iter()
    .map(|(k, n, s)| (k.to_string(), n.to_string(), s.to_string()))
    .collect();
    assert_eq!(found, expected);
    assert!(expected.iter().all(|(_, _, s)| s.is_empty() || *s == ns));
}

#[test]
fn the_kustomization_lists_every_manifest_and_the_image() {
    let dir = manifests_dir();
    let kustomization = parse_file(&dir.join("kustomization.yaml"));
    let [k] = kustomization.as_slice() else {
        panic!("one document in kustomization.yaml");
    };
    assert_eq!(k["kind"], "Kustomization");
    assert_eq!(k["namespace"], NAMESPACE);
    let listed: BTreeSet<&str> = strings(&k["resources"]).into_iter().collect();
    let mut on_disk: BTreeSet<String> = yaml_files(&dir)
        .iter()
        .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
        .filter(|n| n != "kustomization.yaml")
        .collect();
    on_disk.extend(
        yaml_files(&dir.join("crds"))
            .iter()
            .filter_map(|p| Some(format!("crds/{}", p.file_name()?.to_str()?))),
    );
    let on_disk: BTreeSet<&str> = on_disk.iter().map(String::as_str).collect();
    assert_eq!(listed, on_disk);
    let objects = objects();
    let deployment = find(&objects, "Deployment", "gitops-reverser");
    let image = str_of(deployment, "/spec/template/spec/containers/0/image");
    let image_name = str_of(k, "/images/0/name");
    assert_eq!(image, format!("{image_name}:latest"));
    assert_eq!(image_name, "ghcr.io/configbutler/gitops-reverser");
}

/// `UPDATE_CRDS=1` rewrites manifests/crds/ (with crds/); otherwise both must equal the
/// generated files byte for byte.
#[test]
fn the_crd_copies_equal_crds() {
    let files = crd_files().expect("CRDs render");
    let copies = manifests_dir().join("crds");
    let hint = "run `UPDATE_CRDS=1 cargo test --test integration crds` and commit both folders";
    if std::env::var("UPDATE_CRDS").is_ok_and(|v| v == "1") {
        fs::create_dir_all(&copies).expect("create manifests/crds");
        for path in yaml_files(&copies) {
            if !files
                .iter()
                .any(|(n, _)| path.file_name() == Some(n.as_ref()))
            {
                fs::remove_file(&path).expect("remove a stale copy");
            }
        }
        for (name, contents) in &files {
            fs::write(copies.join(name), contents).expect("write a copy");
        }
    }
    let names = |dir: &Path| -> BTreeSet<String> {
        yaml_files(dir)
            .iter()
            .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
            .collect()
    };
    let expected: BTreeSet<String> = files.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(names(&copies), expected, "{hint}");
    let originals = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    for (name, contents) in &files {
        let copy = fs::read(copies.join(name)).expect("read a copy");
        assert!(
            copy == contents.as_bytes(),
            "manifests/crds/{name} is out of date; {hint}"
        );
        if !std::env::var("UPDATE_CRDS").is_ok_and(|v| v == "1") {
            let original = fs::read(originals.join(name)).expect("read crds/");
            assert!(
                copy == original,
                "manifests/crds/{name} differs from crds/; {hint}"
            );
        }
    }
}

/// Who may do what: (kind, namespace) of the role → its rules.
fn roles(objects: &[Value]) -> BTreeMap<(String, String), &Value> {
    objects
        .iter()
        .filter(|o| o["kind"] == "ClusterRole" || o["kind"] == "Role")
        .map(|o| {
            (
                (
                    str_of(o, "/kind").to_string(),
                    str_of(o, "/metadata/name").to_string(),
                ),
                o,
            )
        })
        .collect()
}

#[test]
fn rbac_grants_no_secrets_cluster_wide_and_writes_only_its_own() {
    let objects = objects();
    let roles = roles(&objects);
    assert!(!roles.is_empty());
    let mut secret_rules = 0;
    for ((kind, name), role) in &roles {
        let namespaced = kind == "Role";
        if namespaced {
            assert_eq!(role["metadata"]["namespace"], NAMESPACE, "{kind} {name}");
        }
        let rules = role["rules"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        for rule in rules {
            let groups = strings(&rule["apiGroups"]);
            let resources = strings(&rule["resources"]);
            let verbs = strings(&rule["verbs"]);
            let what = format!("{kind} {name}: {rule}");
            assert!(!verbs.is_empty() && !groups.is_empty() && !resources.is_empty());
            assert!(!verbs.contains(&"*"), "no wildcard verb: {what}");
            assert!(!groups.contains(&"*"), "no wildcard group: {what}");
            assert!(
                rule.get("nonResourceURLs").is_none() && rule.get("resourceNames").is_none(),
                "{what}"
            );
            let core = groups.contains(&"");
            let secrets = resources
                .iter()
                .any(|r| *r == "secrets" || r.starts_with("secrets/"));
            assert!(!(core && resources.contains(&"*")), "core `*`: {what}");
            if core && secrets {
                secret_rules += 1;
                assert!(namespaced, "Secrets only in a namespaced Role: {what}");
                assert_eq!(groups, [""], "{what}");
                assert_eq!(resources, ["secrets"], "{what}");
                assert_eq!(verbs, ["get"], "Secrets: get only: {what}");
            }
            let writes = verbs.iter().any(|v| !READ_VERBS.contains(v));
            if writes {
                let own = groups == [OWN_GROUP];
                let events = resources == ["events"]
                    && groups.iter().all(|g| g.is_empty() || *g == "events.k8s.io")
                    && verbs.iter().all(|v| ["create", "patch"].contains(v));
                let leases =
                    namespaced && groups == ["coordination.k8s.io"] && resources == ["leases"];
                assert!(own || events || leases, "write outside its own: {what}");
                // The one delete: the agent's own member Leases, in its own namespace (a
                // replica's at its shutdown, and those left by replicas killed long ago).
                assert!(
                    !verbs.iter().any(|v| {
                        (*v == "delete" && !leases)
                            || ["deletecollection", "escalate", "bind", "impersonate"].contains(v)
                    }),
                    "{what}"
                );
            }
        }
    }
    assert_eq!(secret_rules, 1, "one Role reads Secrets");

    // Every binding names a role defined here and only the agent's service account.
    let bindings: Vec<&Value> = objects
        .iter()
        .filter(|o| o["kind"] == "ClusterRoleBinding" || o["kind"] == "RoleBinding")
        .collect();
    assert_eq!(bindings.len(), 4);
    for binding in bindings {
        let role_kind = str_of(binding, "/roleRef/kind");
        let role_name = str_of(binding, "/roleRef/name");
        assert!(
            roles.contains_key(&(role_kind.to_string(), role_name.to_string())),
            "{binding}"
        );
        if binding["kind"] == "ClusterRoleBinding" {
            assert_eq!(role_kind, "ClusterRole", "{binding}");
        } else {
            assert_eq!(
                role_kind, "Role",
                "a RoleBinding binds a Role here: {binding}"
            );
        }
        let subjects = binding["subjects"].as_array().expect("subjects");
        assert_eq!(subjects.len(), 1, "{binding}");
        assert_eq!(subjects[0]["kind"], "ServiceAccount");
        assert_eq!(subjects[0]["name"], SERVICE_ACCOUNT);
        assert_eq!(subjects[0]["namespace"], NAMESPACE);
    }

    // The aggregated read role selects the built-in one and has no rules of its own.
    let read = find(&objects, "ClusterRole", "gitops-reverser-read");
    assert_eq!(read["rules"], serde_json::json!([]));
    let selector = &read["aggregationRule"]["clusterRoleSelectors"][0]["matchLabels"];
    let builtin = find(&objects, "ClusterRole", "gitops-reverser-read-builtin");
    let labels = &builtin["metadata"]["labels"];
    let selector = selector.as_object().expect("matchLabels");
    assert!(!selector.is_empty());
    for (key, value) in selector {
        assert_eq!(&labels[key], value, "the built-in read role is aggregated");
    }
    for rule in builtin["rules"].as_array().expect("rules") {
        assert_eq!(strings(&rule["verbs"]), READ_VERBS, "{rule}");
    }

    // The controller role covers its own resources and their status.
    let controller = find(&objects, "ClusterRole", "gitops-reverser-controller");
    let granted = |resource: &str, verb: &str| {
        controller["rules"]
            .as_array()
            .expect("rules")
            .iter()
            .any(|r| {
                strings(&r["apiGroups"]).contains(&OWN_GROUP)
                    && strings(&r["resources"]).contains(&resource)
                    && strings(&r["verbs"]).contains(&verb)
            })
    };
    for plural in [
        "gitrepoconfigs",
        "gitdestinations",
        "watchrules",
        "clusterwatchrules",
    ] {
        for verb in ["get", "list", "watch", "update", "patch"] {
            assert!(granted(plural, verb), "{plural} {verb}");
        }
        for verb in ["update", "patch"] {
            assert!(
                granted(&format!("{plural}/status"), verb),
                "{plural}/status {verb}"
            );
        }
    }
}

#[test]
fn the_deployment_runs_hardened_with_probes_on_the_metrics_port() {
    let objects = objects();
    let deployment = find(&objects, "Deployment", "gitops-reverser");
    let spec = &deployment["spec"];
    assert_eq!(spec["replicas"], 2);
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], SERVICE_ACCOUNT);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let containers = pod["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    assert_eq!(
        strings(&c["args"]),
        [
            "run",
            "--metrics-addr",
            "0.0.0.0:9090",
            "--state-dir",
            "/var/lib/gitops-reverser",
            "--leader-elect"
        ]
    );
    // The Lease holder is the pod: its name from the downward API.
    let env = c["env"].as_array().expect("env");
    let pod_name = env
        .iter()
        .find(|e| e["name"] == "POD_NAME")
        .expect("POD_NAME");
    assert_eq!(
        pod_name["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.name"
    );
    // A drain never takes both replicas.
    let pdb = find(&objects, "PodDisruptionBudget", "gitops-reverser");
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    for (key, value) in pdb["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("pdb selector")
    {
        assert_eq!(
            &spec["template"]["metadata"]["labels"][key], value,
            "pdb {key}"
        );
    }
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"]);
    assert_eq!(c["ports"][0]["name"], "metrics");
    assert_eq!(c["ports"][0]["containerPort"], 9090);
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["livenessProbe"]["httpGet"]["port"], "metrics");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["readinessProbe"]["httpGet"]["port"], "metrics");
    for side in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(
                c["resources"][side][resource].is_string(),
                "{side}.{resource}"
            );
        }
    }
    // Every path the process writes is a volume (the root filesystem is read-only).
    let volumes: BTreeMap<&str, &Value> = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .map(|v| (str_of(v, "/name"), v))
        .collect();
    let mounts: BTreeMap<&str, &str> = c["volumeMounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .map(|m| (str_of(m, "/mountPath"), str_of(m, "/name")))
        .collect();
    for path in ["/var/lib/gitops-reverser", "/tmp"] {
        let volume = mounts.get(path).unwrap_or_else(|| panic!("{path} mounted"));
        assert!(
            volumes[volume].get("emptyDir").is_some(),
            "{path}: emptyDir"
        );
    }

    // The Service selects the pod and exposes the metrics port by name.
    let service = find(&objects, "Service", "gitops-reverser-metrics");
    let pod_labels = &spec["template"]["metadata"]["labels"];
    for (key, value) in service["spec"]["selector"].as_object().expect("selector") {
        assert_eq!(&pod_labels[key], value, "selector {key}");
    }
    for (key, value) in spec["selector"]["matchLabels"]
        .as_object()
        .expect("matchLabels")
    {
        assert_eq!(&pod_labels[key], value, "matchLabels {key}");
    }
    assert_eq!(service["spec"]["ports"][0]["name"], "metrics");
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "metrics");
}

/// `kubectl kustomize manifests/` (kustomize built into kubectl) renders the whole install.
#[test]
fn kustomize_renders_the_install() {
    let Some(kubectl) = crate::support::git_servers::require_binary("kubectl", "kubectl") else {
        return;
    };
    let output = std::process::Command::new(kubectl)
        .arg("kustomize")
        .arg(manifests_dir())
        .output()
        .expect("run kubectl kustomize");
    assert!(
        output.status.success(),
        "kubectl kustomize manifests/: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("UTF-8");
    let docs = parse_documents(&text, "kubectl kustomize manifests/").expect("YAML");
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for doc in &docs {
        *kinds.entry(str_of(doc, "/kind")).or_default() += 1;
        let namespace = str_of(doc, "/metadata/namespace");
        assert!(namespace.is_empty() || namespace == NAMESPACE, "{doc}");
    }
    // With components/admission-webhook and components/self-signed-certificate.
    let expected: BTreeMap<&str, usize> = [
        ("ClusterRole", 4),
        ("ClusterRoleBinding", 3),
        ("CustomResourceDefinition", 4),
        ("Deployment", 1),
        ("Namespace", 1),
        ("PodDisruptionBudget", 1),
        ("Role", 3),
        ("RoleBinding", 3),
        ("Secret", 1),
        ("Service", 2),
        ("ServiceAccount", 1),
        ("ValidatingWebhookConfiguration", 1),
    ]
    .into_iter()
    .collect();
    assert_eq!(kinds, expected);
}
