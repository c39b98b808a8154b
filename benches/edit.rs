//! Editing one document in place in a 1 MiB multi-document file (issue #13: under 10 ms): about
//! 900 hand-written-looking Deployments and ConfigMaps (comments, quoting, indented sequences)
//! joined by `---`, one of them edited (replicas, an image, a new env var, a removed label) and
//! the file joined again.
//! Run: `cargo bench --bench edit`.

use gitops_reverser::manifest::documents::{self, Span};
use gitops_reverser::manifest::edit::edit_document;
use gitops_reverser::manifest::yaml::parse_documents;
use serde_json::{Value, json};
use std::sync::LazyLock;

fn main() {
    divan::main();
}

const DOCUMENTS: usize = 900;
const EDITED: usize = 250;

fn deployment(i: usize) -> String {
    format!(
        r#"# Deployment web-{i}: the shop's front end, scaled by hand (see runbook).
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web-{i}
  namespace: shop-{ns}
  labels:
    app.kubernetes.io/name: web-{i}
    app.kubernetes.io/part-of: shop   # the Service selects on this
    tier: 'frontend'
  annotations:
    configbutler.ai/content-hash: sha256:{i:064x}
spec:
  # Two replicas outside sales; three during them.
  replicas: 2
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      app.kubernetes.io/name: web-{i}
  strategy:
    type: RollingUpdate
    rollingUpdate: {{maxSurge: 1, maxUnavailable: 0}}
  template:
    metadata:
      labels:
        app.kubernetes.io/name: web-{i}
    spec:
      serviceAccountName: web
      containers:
        - name: web
          image: "registry.example.com/shop/web:1.{i}.0"
          args: ["--port", "8080", "--log-level", "info"]
          ports:
            - name: http
              containerPort: 8080
          env:
            - name: FEATURE_CHECKOUT
              value: "on"     # quoted: YAML 1.1 would read a boolean
            - name: CACHE_TTL
              value: "300"
            - name: UPSTREAM
              value: http://api-{i}.shop.svc:8080
          resources:
            requests: {{cpu: 100m, memory: 128Mi}}
            limits:
              memory: 256Mi
          readinessProbe:
            httpGet: {{path: /healthz, port: http}}
            periodSeconds: 10
        - name: envoy
          image: envoyproxy/envoy:v1.30.1
          args:
            - --config-path
            - /etc/envoy/envoy.yaml
"#,
        ns = i % 7
    )
}

fn configmap(i: usize) -> String {
    format!(
        r#"# Settings of web-{i}; the script runs at start.
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-{i}-settings
  namespace: shop-{ns}
data:
  LOG_LEVEL: info
  MAX_CONNECTIONS: "512"
  ENABLED: 'yes'
  start.sh: |
    #!/bin/sh
    # wait for the upstream
    until wget -q -O- http://api-{i}.shop.svc:8080/healthz; do sleep 1; done
    exec /usr/bin/web --config /etc/web/config.yaml
  config.yaml: |
    server:
      port: 8080
      timeouts: {{read: 5s, write: 10s}}
    cache:
      ttl: 300
      size: 1024
    upstreams:
      - http://api-{i}.shop.svc:8080
      - http://api-{i}-canary.shop.svc:8080
"#,
        ns = i % 7
    )
}

/// The file, and its documents.
static FILE: LazyLock<(String, Vec<Span>)> = LazyLock::new(|| {
    let mut text = String::new();
    let mut i = 0;
    while text.len() < 1 << 20 {
        if !text.is_empty() {
            text.push_str("---\n");
        }
        text.push_str(&if i % 2 == 0 {
            deployment(i)
        } else {
            configmap(i)
        });
        i += 1;
    }
    let spans = documents::split(&text);
    assert!(spans.len() >= DOCUMENTS, "{} documents", spans.len());
    eprintln!("file: {} bytes, {} documents", text.len(), spans.len());
    (text, spans)
});

/// What the edited document becomes: scaled, a new image, a new env var, a label gone.
static NEW: LazyLock<Value> = LazyLock::new(|| {
    let (text, spans) = &*FILE;
    let mut doc = parse_documents(spans[EDITED].of(text), "doc")
        .expect("document reads")
        .remove(0);
    doc["spec"]["replicas"] = json!(3);
    let containers = &mut doc["spec"]["template"]["spec"]["containers"];
    containers[0]["image"] = json!("registry.example.com/shop/web:2.0.0");
    containers[0]["env"]
        .as_array_mut()
        .expect("env")
        .push(json!({"name": "REGION", "value": "eu-west-1"}));
    doc["metadata"]["labels"]
        .as_object_mut()
        .expect("labels")
        .remove("tier");
    doc
});

/// What the agent does for an update: find the documents of the file, edit the one, join.
fn edit_in_file(text: &str, index: usize, new: &Value) -> String {
    let spans = documents::split(text);
    let edited = edit_document(spans[index].of(text), new).expect("edit");
    documents::replace(text, &spans[index], &edited)
}

#[divan::bench]
fn edit_one_document_in_1mib_file(bencher: divan::Bencher) {
    let (text, _) = &*FILE;
    let new = &*NEW;
    let out = edit_in_file(text, EDITED, new);
    // In place: a few lines changed, every comment still there.
    assert!(out.len().abs_diff(text.len()) < 200, "a small edit");
    assert_eq!(out.matches("# ").count(), text.matches("# ").count());
    bencher.bench(|| edit_in_file(divan::black_box(text), EDITED, new));
}

#[divan::bench]
fn edit_one_document(bencher: divan::Bencher) {
    let (text, spans) = &*FILE;
    let doc = spans[EDITED].of(text);
    let new = &*NEW;
    bencher.bench(|| edit_document(divan::black_box(doc), new).expect("edit"));
}

#[divan::bench]
fn unchanged_document(bencher: divan::Bencher) {
    let (text, spans) = &*FILE;
    let doc = spans[EDITED].of(text);
    let same = parse_documents(doc, "doc").expect("reads").remove(0);
    bencher.bench(|| edit_document(divan::black_box(doc), &same).expect("edit"));
}
