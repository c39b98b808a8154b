//! Test fixtures for the config planner: builders for the four custom resources, a small
//! discovery catalogue and namespaces with labels.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::Resource;
use serde_json::json;

use super::Inputs;
use super::discovery::{ApiResource, Discovery};
use crate::crd::{
    ClusterWatchRule, GitDestination, GitRepoConfig, ResourceRule, RuleScope, WatchRule,
};

fn from_json<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).unwrap_or_else(|e| panic!("fixture does not parse: {e}"))
}

fn namespaced<T: Resource>(mut obj: T, ns: &str) -> T {
    obj.meta_mut().namespace = Some(ns.to_string());
    obj.meta_mut().generation = Some(1);
    obj
}

pub fn repo(ns: &str, name: &str, url: &str) -> GitRepoConfig {
    namespaced(GitRepoConfig::new(name, from_json(json!({"url": url}))), ns)
}

/// A destination whose `repoRef` has no namespace (its own).
pub fn dest(ns: &str, name: &str, repo: &str, branch: &str, folder: &str) -> GitDestination {
    let spec = from_json(json!({
        "repoRef": {"name": repo}, "branch": branch, "folder": folder
    }));
    namespaced(GitDestination::new(name, spec), ns)
}

pub fn with_repo_ns(mut d: GitDestination, repo_ns: &str) -> GitDestination {
    d.spec.repo_ref.namespace = Some(repo_ns.to_string());
    d
}

pub fn created<T: Resource>(mut obj: T, second: i64) -> T {
    obj.meta_mut().creation_timestamp = Some(Time(
        Timestamp::from_second(second).unwrap_or(Timestamp::UNIX_EPOCH),
    ));
    obj
}

pub fn rr(groups: &[&str], resources: &[&str]) -> ResourceRule {
    from_json(json!({"apiGroups": groups, "resources": resources}))
}

pub fn scoped(mut rule: ResourceRule, scope: RuleScope) -> ResourceRule {
    rule.scope = Some(scope);
    rule
}

pub fn watch_rule(ns: &str, name: &str, dest: &str, rules: Vec<ResourceRule>) -> WatchRule {
    let mut spec: crate::crd::WatchRuleSpec = from_json(json!({
        "destinationRef": {"name": dest}, "rules": []
    }));
    spec.rules = rules;
    namespaced(WatchRule::new(name, spec), ns)
}

pub fn cluster_rule(
    name: &str,
    dest_ns: &str,
    dest: &str,
    rules: Vec<ResourceRule>,
) -> ClusterWatchRule {
    let mut spec: crate::crd::ClusterWatchRuleSpec = from_json(json!({
        "destinationRef": {"name": dest, "namespace": dest_ns}, "rules": []
    }));
    spec.rules = rules;
    let mut rule = ClusterWatchRule::new(name, spec);
    rule.metadata.generation = Some(1);
    rule
}

pub fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// infra (team=platform), shop and a (env=prod), dev and b (env=dev).
pub fn namespaces() -> BTreeMap<String, BTreeMap<String, String>> {
    [
        ("infra", labels(&[("team", "platform")])),
        ("shop", labels(&[("env", "prod"), ("team", "shop")])),
        ("a", labels(&[("env", "prod")])),
        ("dev", labels(&[("env", "dev")])),
        ("b", labels(&[("env", "dev")])),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// A small cluster: core (configmaps, pods, services, secrets, events, namespaces, create-only
/// bindings), apps (deployments, controllerrevisions), rbac clusterroles, coordination leases,
/// create-only tokenreviews, and a CRD example.com/widgets served in v1 and v1beta1.
pub fn discovery() -> Discovery {
    Discovery::new()
        .with(ApiResource::new("", "v1", "ConfigMap", "configmaps", true))
        .with(ApiResource::new("", "v1", "Pod", "pods", true))
        .with(ApiResource::new("", "v1", "Service", "services", true))
        .with(ApiResource::new("", "v1", "Secret", "secrets", true))
        .with(ApiResource::new("", "v1", "Event", "events", true))
        .with(ApiResource::new("", "v1", "Namespace", "namespaces", false))
        .with(ApiResource::new("", "v1", "Binding", "bindings", true).with_verbs(&["create"]))
        .with(ApiResource::new(
            "apps",
            "v1",
            "Deployment",
            "deployments",
            true,
        ))
        .with(ApiResource::new(
            "apps",
            "v1",
            "Deployment",
            "deployments/status",
            true,
        ))
        .with(ApiResource::new(
            "apps",
            "v1",
            "ControllerRevision",
            "controllerrevisions",
            true,
        ))
        .with(ApiResource::new(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRole",
            "clusterroles",
            false,
        ))
        .with(ApiResource::new(
            "coordination.k8s.io",
            "v1",
            "Lease",
            "leases",
            true,
        ))
        .with(
            ApiResource::new(
                "authentication.k8s.io",
                "v1",
                "TokenReview",
                "tokenreviews",
                false,
            )
            .with_verbs(&["create"]),
        )
        .with(ApiResource::new(
            "example.com",
            "v1beta1",
            "Widget",
            "widgets",
            true,
        ))
        .with(ApiResource::new(
            "example.com",
            "v1",
            "Widget",
            "widgets",
            true,
        ))
        .with_preferred("example.com", "v1")
}

/// Namespaces, discovery and one GitRepoConfig infra/main (default policy: SameNamespace).
pub fn base_inputs() -> Inputs {
    Inputs {
        repos: vec![repo("infra", "main", "git@github.com:org/repo.git")],
        namespaces: namespaces(),
        discovery: discovery(),
        ..Inputs::default()
    }
}
