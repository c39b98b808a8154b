//! kubectl 1.32 against the simulator: every command the issue lists, over HTTP and HTTPS.

use kubesim::SimConfig;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::support::*;

const DEPLOYMENT: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: demo
  labels:
    app: web
spec:
  replicas: 1
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: nginx:1.27
        ports:
        - containerPort: 80
        env:
        - name: MODE
          value: "one"
"#;

async fn tls_sim() -> kubesim::SimHandle {
    sim_with(SimConfig::default().with_tls()).await
}

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("kubectl printed invalid JSON ({e}): {s}"))
}

#[tokio::test]
async fn version_and_api_resources_over_plain_http() {
    // kubectl sends no token over plain HTTP; the `sim` command lets such requests act as admin.
    let sim = sim_with(SimConfig {
        anonymous: Some("admin".into()),
        ..SimConfig::default()
    })
    .await;
    let Some(k) = Kubectl::new(&sim, "admin") else {
        return;
    };
    let v = json(&k.ok(&["version", "-o", "json"]).await);
    assert_eq!(v["serverVersion"]["minor"], "33");
    let resources = k.ok(&["api-resources"]).await;
    for line in [
        "deployments",
        "customresourcedefinitions",
        "clusterrolebindings",
        "leases",
        "networkpolicies",
    ] {
        assert!(
            resources.contains(line),
            "{line} missing from:\n{resources}"
        );
    }
    let namespaced = k
        .ok(&["api-resources", "--namespaced=false", "-o", "name"])
        .await;
    assert!(namespaced.lines().any(|l| l == "namespaces"));
    assert!(!namespaced.lines().any(|l| l == "configmaps"));
}

#[tokio::test]
async fn create_apply_twice_get_label_annotate_and_delete() {
    let sim = tls_sim().await;
    let Some(k) = Kubectl::new(&sim, "admin") else {
        return;
    };
    k.ok(&["create", "namespace", "demo"]).await;
    let f = k.file("deploy.yaml", DEPLOYMENT);
    k.ok(&["apply", "-f", &f]).await;
    let changed = DEPLOYMENT
        .replace("value: \"one\"", "value: \"two\"")
        .replace("replicas: 1", "replicas: 2");
    let f2 = k.file("deploy2.yaml", &changed);
    let out = k.ok(&["apply", "-f", &f2]).await;
    assert!(out.contains("configured"), "{out}");
    let d = json(
        &k.ok(&["get", "deployment", "web", "-n", "demo", "-o", "json"])
            .await,
    );
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"],
        "two"
    );
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
        "IfNotPresent"
    );
    assert!(
        d["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .is_string()
    );
    let yaml = k
        .ok(&["get", "deployment", "web", "-n", "demo", "-o", "yaml"])
        .await;
    assert!(yaml.contains("progressDeadlineSeconds: 600"), "{yaml}");
    let table = k.ok(&["get", "deployments", "-n", "demo"]).await;
    assert!(table.contains("web"), "{table}");

    k.ok(&["label", "deployment", "web", "-n", "demo", "tier=frontend"])
        .await;
    k.ok(&[
        "annotate",
        "deployment",
        "web",
        "-n",
        "demo",
        "owner=team-a",
    ])
    .await;
    let d = json(
        &k.ok(&["get", "deployment", "web", "-n", "demo", "-o", "json"])
            .await,
    );
    assert_eq!(d["metadata"]["labels"]["tier"], "frontend");
    assert_eq!(d["metadata"]["annotations"]["owner"], "team-a");
    let selected = k
        .ok(&[
            "get",
            "deployments",
            "-n",
            "demo",
            "-l",
            "tier=frontend",
            "-o",
            "name",
        ])
        .await;
    assert_eq!(selected.trim(), "deployment.apps/web");

    k.ok(&["delete", "-f", &f2]).await;
    let gone = k.run(&["get", "deployment", "web", "-n", "demo"]).await;
    assert!(
        !gone.ok && gone.stderr.contains("NotFound"),
        "{}",
        gone.stderr
    );
}

#[tokio::test]
async fn server_side_apply_and_all_three_patch_types_and_scale() {
    let sim = sim_with(SimConfig::default().with_tls()).await;
    let Some(k) = Kubectl::new(&sim, "admin") else {
        return;
    };
    k.ok(&["create", "namespace", "demo"]).await;
    let f = k.file("deploy.yaml", DEPLOYMENT);
    k.ok(&["apply", "--server-side", "-f", &f]).await;
    let d = json(
        &k.ok(&[
            "get",
            "deployment",
            "web",
            "-n",
            "demo",
            "-o",
            "json",
            "--show-managed-fields",
        ])
        .await,
    );
    let entries = d["metadata"]["managedFields"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["manager"], "kubectl");
    assert_eq!(entries[0]["operation"], "Apply");
    // A default is not the applier's.
    assert!(
        entries[0]["fieldsV1"]["f:spec"]
            .get("f:progressDeadlineSeconds")
            .is_none()
    );

    k.ok(&[
        "patch",
        "deployment",
        "web",
        "-n",
        "demo",
        "--type=strategic",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"nginx:1.28"}]}}}}"#,
    ])
    .await;
    k.ok(&[
        "patch",
        "deployment",
        "web",
        "-n",
        "demo",
        "--type=merge",
        "-p",
        r#"{"metadata":{"labels":{"patched":"merge"}}}"#,
    ])
    .await;
    k.ok(&[
        "patch",
        "deployment",
        "web",
        "-n",
        "demo",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/metadata/annotations","value":{"patched":"json"}}]"#,
    ])
    .await;
    k.ok(&["scale", "deployment", "web", "-n", "demo", "--replicas=3"])
        .await;
    let d = json(
        &k.ok(&["get", "deployment", "web", "-n", "demo", "-o", "json"])
            .await,
    );
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "nginx:1.28");
    assert_eq!(
        c["env"][0]["name"], "MODE",
        "the strategic merge kept the env list"
    );
    assert_eq!(d["metadata"]["labels"]["patched"], "merge");
    assert_eq!(d["metadata"]["annotations"]["patched"], "json");
    assert_eq!(d["spec"]["replicas"], 3);
}

#[tokio::test]
async fn yaml_1_1_booleans_in_configmap_data_are_refused() {
    let sim = tls_sim().await;
    let Some(k) = Kubectl::new(&sim, "admin") else {
        return;
    };
    let f = k.file(
        "flags.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: flags\ndata:\n  enabled: yes\n",
    );
    let out = k.run(&["apply", "-f", &f]).await;
    assert!(!out.ok, "{}", out.stdout);
    assert!(
        out.stderr.contains("cannot be handled as a ConfigMap"),
        "{}",
        out.stderr
    );
    let quoted = k.file(
        "quoted.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: flags\ndata:\n  enabled: \"yes\"\n",
    );
    k.ok(&["apply", "-f", &quoted]).await;
}

#[tokio::test]
async fn get_watch_prints_rows_as_changes_arrive() {
    let sim = tls_sim().await;
    let Some(k) = Kubectl::new(&sim, "admin") else {
        return;
    };
    k.ok(&["create", "configmap", "first", "--from-literal=a=1"])
        .await;
    let mut child = k.spawn(&["get", "configmaps", "-w"]);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    within(async {
        while !seen.iter().any(|l: &String| l.starts_with("first")) {
            seen.push(lines.next_line().await.unwrap().unwrap());
        }
    })
    .await;
    assert!(seen[0].starts_with("NAME"), "{seen:?}");
    k.ok(&["create", "configmap", "second", "--from-literal=a=1"])
        .await;
    within(async {
        while !seen.iter().any(|l: &String| l.starts_with("second")) {
            seen.push(lines.next_line().await.unwrap().unwrap());
        }
    })
    .await;
    let _ = child.kill().await;
}

#[tokio::test]
async fn get_watch_sees_a_change() {
    let sim = tls_sim().await;
    let Some(k) = Kubectl::new(&sim, "admin") else {
        return;
    };
    k.ok(&["create", "configmap", "watched", "--from-literal=a=1"])
        .await;
    let mut child = k.spawn(&["get", "configmap", "watched", "-w", "-o", "json"]);
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut buf = String::new();
    // The initial state.
    within(async {
        while let Some(l) = lines.next_line().await.unwrap() {
            buf.push_str(&l);
            if l == "}" {
                break;
            }
        }
    })
    .await;
    assert!(buf.contains("\"a\": \"1\""), "{buf}");
    buf.clear();
    k.ok(&[
        "patch",
        "configmap",
        "watched",
        "--type=merge",
        "-p",
        r#"{"data":{"a":"2"}}"#,
    ])
    .await;
    within(async {
        while let Some(l) = lines.next_line().await.unwrap() {
            buf.push_str(&l);
            if l == "}" {
                break;
            }
        }
    })
    .await;
    assert!(buf.contains("\"a\": \"2\""), "{buf}");
    let _ = child.kill().await;
}

#[tokio::test]
async fn a_crd_then_a_custom_resource() {
    let sim = tls_sim().await;
    let Some(k) = Kubectl::new(&sim, "admin") else {
        return;
    };
    let crd = k.file(
        "crd.yaml",
        r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names:
    plural: widgets
    singular: widget
    kind: Widget
    shortNames: [wd]
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
    subresources:
      status: {}
"#,
    );
    k.ok(&["apply", "-f", &crd]).await;
    k.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/widgets.example.com",
        "--timeout=10s",
    ])
    .await;
    let cr = k.file(
        "cr.yaml",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w1\n  namespace: default\nspec:\n  size: 3\n",
    );
    k.ok(&["apply", "-f", &cr]).await;
    let cr2 = k.file(
        "cr2.yaml",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w1\n  namespace: default\nspec:\n  size: 4\n",
    );
    k.ok(&["apply", "-f", &cr2]).await;
    let w = json(&k.ok(&["get", "wd", "w1", "-o", "json"]).await);
    assert_eq!(w["spec"]["size"], 4);
    assert_eq!(w["metadata"]["generation"], 2);
    let listed = k.ok(&["get", "widgets"]).await;
    assert!(listed.contains("w1"), "{listed}");
    k.ok(&["delete", "-f", &crd]).await;
    let gone = k.run(&["get", "widgets.example.com"]).await;
    assert!(!gone.ok, "{}", gone.stdout);
}
