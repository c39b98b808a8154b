//! Discovery as kube-rs sees it: built-in resources with their scope and verbs.

use kube::discovery::{Discovery, Scope, verbs};

use crate::support::*;

#[tokio::test]
async fn kube_rs_discovers_the_builtin_catalogue() {
    let sim = sim().await;
    let client = sim.client().await.unwrap();
    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    let mut seen = Vec::new();
    for group in discovery.groups() {
        for (ar, caps) in group.recommended_resources() {
            seen.push((
                ar.group.clone(),
                ar.plural.clone(),
                caps.scope.clone(),
                caps.supports_operation(verbs::WATCH),
            ));
        }
    }
    for (g, p, scope) in [
        ("", "namespaces", Scope::Cluster),
        ("", "configmaps", Scope::Namespaced),
        ("", "secrets", Scope::Namespaced),
        ("", "services", Scope::Namespaced),
        ("", "serviceaccounts", Scope::Namespaced),
        ("", "pods", Scope::Namespaced),
        ("", "events", Scope::Namespaced),
        ("", "endpoints", Scope::Namespaced),
        ("", "persistentvolumeclaims", Scope::Namespaced),
        ("apps", "deployments", Scope::Namespaced),
        ("apps", "statefulsets", Scope::Namespaced),
        ("apps", "daemonsets", Scope::Namespaced),
        ("apps", "replicasets", Scope::Namespaced),
        ("batch", "jobs", Scope::Namespaced),
        ("batch", "cronjobs", Scope::Namespaced),
        ("networking.k8s.io", "ingresses", Scope::Namespaced),
        ("networking.k8s.io", "networkpolicies", Scope::Namespaced),
        ("rbac.authorization.k8s.io", "roles", Scope::Namespaced),
        (
            "rbac.authorization.k8s.io",
            "rolebindings",
            Scope::Namespaced,
        ),
        ("rbac.authorization.k8s.io", "clusterroles", Scope::Cluster),
        (
            "rbac.authorization.k8s.io",
            "clusterrolebindings",
            Scope::Cluster,
        ),
        ("coordination.k8s.io", "leases", Scope::Namespaced),
        (
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            Scope::Cluster,
        ),
        (
            "admissionregistration.k8s.io",
            "validatingwebhookconfigurations",
            Scope::Cluster,
        ),
        (
            "admissionregistration.k8s.io",
            "mutatingwebhookconfigurations",
            Scope::Cluster,
        ),
    ] {
        assert!(
            seen.iter()
                .any(|(sg, sp, ss, w)| sg == g && sp == p && *ss == scope && *w),
            "{g}/{p} missing"
        );
    }
}

#[tokio::test]
async fn health_version_and_openapi_answer() {
    let sim = sim().await;
    let (code, _) = raw(&sim, "GET", "/healthz", None, "", "").await;
    assert_eq!(code, 200);
    let client = sim.client().await.unwrap();
    let v = client.apiserver_version().await.unwrap();
    assert_eq!((v.major.as_str(), v.minor.as_str()), ("1", "33"));
    let (code, root) = raw(&sim, "GET", "/openapi/v3", ADMIN, "", "").await;
    assert_eq!(code, 200);
    let url = root["paths"]["apis/apps/v1"]["serverRelativeURL"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, doc) = raw(&sim, "GET", &url, ADMIN, "", "").await;
    assert_eq!(code, 200);
    assert!(
        doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .any(|p| p["patch"]["x-kubernetes-group-version-kind"]["kind"] == "Deployment")
    );
    let (code, v2) = raw(&sim, "GET", "/openapi/v2", ADMIN, "", "").await;
    assert_eq!(code, 200);
    assert_eq!(v2["swagger"], "2.0");
}

#[tokio::test]
async fn https_with_the_generated_ca_works_for_kube_rs() {
    let sim = sim_with(kubesim::SimConfig::default().with_tls()).await;
    assert!(sim.url().starts_with("https://"));
    let client = sim.client().await.unwrap();
    let api: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client);
    let names: Vec<String> = api
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    assert!(names.contains(&"default".to_string()) && names.contains(&"kube-system".to_string()));
    assert!(
        sim.kubeconfig("admin")
            .unwrap()
            .contains("certificate-authority-data")
    );
}

#[tokio::test]
async fn dropping_the_handle_stops_the_server() {
    let sim = sim().await;
    let addr = sim.addr();
    let (code, _) = raw(&sim, "GET", "/readyz", None, "", "").await;
    assert_eq!(code, 200);
    drop(sim);
    let refused = within(async {
        loop {
            if tokio::net::TcpStream::connect(addr).await.is_err() {
                break true;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(refused);
}
