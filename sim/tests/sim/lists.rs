//! `kind: List` files with real kubectl: it validates them against `/openapi/v2` before sending
//! their items one by one.

use kubesim::SimConfig;

use crate::support::*;

const LIST: &str = r#"apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata:
    name: a
    namespace: default
  data:
    k: v
- apiVersion: autoscaling/v2
  kind: HorizontalPodAutoscaler
  metadata:
    name: web
    namespace: default
  spec:
    scaleTargetRef:
      apiVersion: apps/v1
      kind: Deployment
      name: web
    maxReplicas: 3
"#;

#[tokio::test]
async fn kubectl_creates_and_applies_a_list_and_reapplies_what_get_printed() {
    let sim = sim_with(SimConfig::default().with_tls()).await;
    let Some(k) = Kubectl::new(&sim, "admin") else {
        return;
    };
    let f = k.file("list.yaml", LIST);
    let created = k.ok(&["create", "-f", &f]).await;
    assert!(created.contains("configmap/a created"), "{created}");
    assert!(
        created.contains("horizontalpodautoscaler.autoscaling/web created"),
        "{created}"
    );
    k.ok(&["delete", "-f", &f]).await;
    let applied = k.ok(&["apply", "-f", &f]).await;
    assert_eq!(applied.matches("created").count(), 2, "{applied}");
    let ssa = k.ok(&["apply", "--server-side", "-f", &f]).await;
    assert_eq!(ssa.matches("serverside-applied").count(), 2, "{ssa}");
    // A file made by `kubectl get -o yaml` is a List too.
    let dumped = k.ok(&["get", "configmap/a", "hpa/web", "-o", "yaml"]).await;
    assert!(dumped.contains("kind: List"), "{dumped}");
    let g = k.file("dumped.yaml", &dumped);
    k.ok(&["apply", "--dry-run=server", "-f", &g]).await;
    // The first apply of a printed object records it as the last-applied configuration (a real
    // server does the same); every field stays.
    k.ok(&["apply", "-f", &g]).await;
    assert_eq!(
        k.ok(&[
            "get",
            "configmap/a",
            "hpa/web",
            "-o",
            "jsonpath={.items[0].data.k} {.items[1].spec.maxReplicas}"
        ])
        .await,
        "v 3"
    );
}
