//! Objects as the server shapes them: canonical quantities, defaults inside nested templates,
//! `creationTimestamp: null` in templates — and none of it seen as a change by a re-apply.

use kubesim::SimConfig;
use serde_json::Value;

use crate::support::*;

const STATEFULSET: &str = r#"apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
  namespace: default
spec:
  serviceName: db
  selector:
    matchLabels:
      app: db
  template:
    metadata:
      labels:
        app: db
    spec:
      containers:
      - name: db
        image: postgres:16
        resources:
          requests:
            cpu: 2000m
            memory: 1024Mi
          limits:
            cpu: 4
            memory: 2Gi
  volumeClaimTemplates:
  - metadata:
      name: data
    spec:
      accessModes: ["ReadWriteOnce"]
      resources:
        requests:
          storage: 1024Mi
"#;

const CRONJOB: &str = r#"apiVersion: batch/v1
kind: CronJob
metadata:
  name: backup
  namespace: default
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers:
          - name: backup
            image: busybox:1.36
            resources:
              requests:
                memory: 0.5Gi
"#;

fn json_of(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("kubectl printed invalid JSON ({e}): {s}"))
}

#[tokio::test]
async fn the_server_returns_canonical_quantities_and_nested_template_defaults() {
    let sim = sim_with(SimConfig::default().with_tls()).await;
    let Some(k) = Kubectl::new(&sim, "admin") else {
        return;
    };
    let sts_file = k.file("sts.yaml", STATEFULSET);
    let cj_file = k.file("cj.yaml", CRONJOB);
    k.ok(&[
        "apply",
        "--server-side",
        "--field-manager=flux",
        "-f",
        &sts_file,
    ])
    .await;
    k.ok(&["apply", "-f", &cj_file]).await;

    let sts = json_of(&k.ok(&["get", "statefulset", "db", "-o", "json"]).await);
    let res = &sts["spec"]["template"]["spec"]["containers"][0]["resources"];
    assert_eq!(res["requests"]["cpu"], "2", "{res}");
    assert_eq!(res["requests"]["memory"], "1Gi", "{res}");
    assert_eq!(
        res["limits"]["cpu"], "4",
        "a number becomes a string: {res}"
    );
    assert_eq!(res["limits"]["memory"], "2Gi", "{res}");
    let vct = &sts["spec"]["volumeClaimTemplates"][0];
    assert_eq!(
        vct["spec"]["resources"]["requests"]["storage"], "1Gi",
        "{vct}"
    );
    assert!(
        vct["metadata"]
            .as_object()
            .unwrap()
            .get("creationTimestamp")
            .is_some_and(Value::is_null),
        "{vct}"
    );
    assert_eq!(vct["spec"]["volumeMode"], "Filesystem", "{vct}");
    assert_eq!(vct["status"]["phase"], "Pending", "{vct}");

    let cj = json_of(&k.ok(&["get", "cronjob", "backup", "-o", "json"]).await);
    let jt = &cj["spec"]["jobTemplate"];
    assert!(
        jt["metadata"]
            .as_object()
            .unwrap()
            .get("creationTimestamp")
            .is_some_and(Value::is_null),
        "{jt}"
    );
    assert_eq!(jt["spec"]["backoffLimit"], 6, "{jt}");
    let pod = &jt["spec"]["template"];
    assert!(pod["metadata"]["creationTimestamp"].is_null(), "{pod}");
    assert_eq!(pod["spec"]["dnsPolicy"], "ClusterFirst", "{pod}");
    assert_eq!(
        pod["spec"]["containers"][0]["resources"]["requests"]["memory"],
        "512Mi"
    );

    // Re-applying the original spellings changes nothing, server-side or client-side.
    let rv = |o: &Value| o["metadata"]["resourceVersion"].clone();
    let out = k
        .ok(&[
            "apply",
            "--server-side",
            "--field-manager=flux",
            "-f",
            &sts_file,
        ])
        .await;
    assert!(out.contains("serverside-applied"), "{out}");
    let again = json_of(&k.ok(&["get", "statefulset", "db", "-o", "json"]).await);
    assert_eq!(
        rv(&again),
        rv(&sts),
        "the same quantities in another spelling are no change"
    );
    // kubectl's three-way patch sends `0.5Gi` again (the live object says `512Mi`), as it does
    // against a real server; the server stores nothing.
    k.ok(&["apply", "-f", &cj_file]).await;
    let again = json_of(&k.ok(&["get", "cronjob", "backup", "-o", "json"]).await);
    assert_eq!(rv(&again), rv(&cj));
}
