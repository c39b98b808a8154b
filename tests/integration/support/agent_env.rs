//! An agent under test: the API simulator with our CRDs and namespace `shop`, a real bare
//! repository, and helpers to configure, start and stop agents and to read what they wrote.

use crate::support::git_servers::BareRepo;
use gitops_reverser::agent::runtime::{AgentOptions, RunningAgent, spawn};
use gitops_reverser::git::transport::GitCli;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const FOLDER: &str = "clusters/dev";

pub fn show(repo: &Path, path: &str) -> Option<String> {
    let dir = repo.to_str().expect("utf-8");
    let out = crate::support::git_servers::git_output(
        repo,
        &["--git-dir", dir, "show", &format!("main:{path}")],
        None,
    );
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn commits(repo: &Path) -> usize {
    let dir = repo.to_str().expect("utf-8");
    let out = crate::support::git_servers::git_output(
        repo,
        &["--git-dir", dir, "rev-list", "--count", "main"],
        None,
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

/// Waits until `check` holds, polling what a user would look at (the repository).
pub async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The dynamic API of the object's kind, in its namespace (discovery tells the resource).
pub async fn api_of(client: &kube::Client, object: &serde_json::Value) -> Api<DynamicObject> {
    let gvk = kube::core::GroupVersionKind::try_from(&kube::core::TypeMeta {
        api_version: object["apiVersion"]
            .as_str()
            .expect("apiVersion")
            .to_string(),
        kind: object["kind"].as_str().expect("kind").to_string(),
    })
    .expect("gvk");
    let (resource, _) = kube::discovery::pinned_kind(client, &gvk)
        .await
        .expect("discovered");
    match object["metadata"]["namespace"].as_str() {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    }
}

/// Server-side apply as field manager `manager`, forcing conflicts.
pub async fn apply_as(client: &kube::Client, manager: &str, object: &serde_json::Value) {
    let name = object["metadata"]["name"]
        .as_str()
        .expect("name")
        .to_string();
    api_of(client, object)
        .await
        .patch(
            &name,
            &PatchParams::apply(manager).force(),
            &Patch::Apply(object),
        )
        .await
        .expect("applied");
}

pub async fn apply(client: &kube::Client, object: serde_json::Value) {
    apply_as(client, "test", &object).await;
}

/// A simulator with the CRDs installed and namespace `shop`, a bare repository, and a way to
/// start and stop agents against them.
pub struct Env {
    pub sim: kubesim::SimHandle,
    pub client: kube::Client,
    pub scratch: tempfile::TempDir,
    pub repo: std::path::PathBuf,
}

impl Env {
    pub async fn new() -> Self {
        Self::with(kubesim::SimConfig::default()).await
    }

    pub async fn with(config: kubesim::SimConfig) -> Self {
        let sim = kubesim::Simulator::start(config).await.expect("simulator");
        let client = sim.client().await.expect("client");
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        for crd in gitops_reverser::crd::all_crds() {
            crds.create(&PostParams::default(), &crd)
                .await
                .expect("CRD");
        }
        let scratch = tempfile::TempDir::new().expect("scratch");
        let repo = BareRepo::init(scratch.path().join("repo.git")).path;
        let env = Self {
            sim,
            client,
            scratch,
            repo,
        };
        env.namespace("shop", json!({})).await;
        env
    }

    pub async fn namespace(&self, name: &str, labels: serde_json::Value) {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let ns = serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}}))
            .expect("ns");
        namespaces
            .create(&PostParams::default(), &ns)
            .await
            .expect("ns");
    }

    pub fn url(&self) -> String {
        format!("file://{}", self.repo.display())
    }

    /// GitRepoConfig `repo`, GitDestination `dev` (folder `clusters/dev`) and WatchRule `apps`
    /// (configmaps) in `shop`, one commit per change.
    pub async fn configure(&self) {
        self.configure_quiet("0s").await;
    }

    /// As [`Env::configure`], with this commit-window quiet period.
    pub async fn configure_quiet(&self, quiet: &str) {
        for object in [
            json!({"apiVersion": "configbutler.ai/v1alpha1", "kind": "GitRepoConfig", "metadata": {"name": "repo", "namespace": "shop"},
                "spec": {"url": self.url(), "commit": {"window": {"quiet": quiet}}}}),
            json!({"apiVersion": "configbutler.ai/v1alpha1", "kind": "GitDestination", "metadata": {"name": "dev", "namespace": "shop"},
                "spec": {"repoRef": {"name": "repo"}, "branch": "main", "folder": FOLDER}}),
            json!({"apiVersion": "configbutler.ai/v1alpha1", "kind": "WatchRule", "metadata": {"name": "apps", "namespace": "shop"},
                "spec": {"destinationRef": {"name": "dev"}, "rules": [{"apiGroups": [""], "resources": ["configmaps"]}]}}),
        ] {
            apply(&self.client, object).await;
        }
    }

    /// Replaces the rules of WatchRule `shop/apps` (which writes to `dev`).
    pub async fn watch_rules(&self, rules: serde_json::Value) {
        apply(
            &self.client,
            json!({"apiVersion": "configbutler.ai/v1alpha1", "kind": "WatchRule",
            "metadata": {"name": "apps", "namespace": "shop"},
            "spec": {"destinationRef": {"name": "dev"}, "rules": rules}}),
        )
        .await;
    }

    pub fn start(&self, state: &str) -> Running {
        self.start_with(state, false)
    }

    pub fn start_with(&self, state: &str, allow_secrets: bool) -> Running {
        self.start_full(state, allow_secrets, None)
    }

    pub fn start_full(
        &self,
        state: &str,
        allow_secrets: bool,
        resolver: Option<Arc<gitops_reverser::attribution::Resolver>>,
    ) -> Running {
        self.start_tuned(state, |options| {
            options.allow_secrets = allow_secrets;
            options.resolver = resolver;
        })
    }

    /// Starts an agent with the test defaults (state in `state`, short settle and recheck
    /// intervals), adjusted by `tune`.
    pub fn start_tuned(&self, state: &str, tune: impl FnOnce(&mut AgentOptions)) -> Running {
        let mut options = AgentOptions {
            state_dir: self.scratch.path().join(state),
            cluster: "test".into(),
            transport: Arc::new(GitCli::new()),
            settle: Duration::from_millis(50),
            recheck: Duration::from_millis(300),
            shutdown_grace: Duration::from_secs(10),
            ..AgentOptions::default()
        };
        tune(&mut options);
        let running = spawn(self.client.clone(), options);
        Running {
            agent: running.handle.clone(),
            running,
        }
    }

    pub fn configmaps(&self, ns: &str) -> Api<ConfigMap> {
        Api::namespaced(self.client.clone(), ns)
    }

    pub async fn put_configmap(&self, ns: &str, name: &str, value: &str) {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}, "data": {"value": value}});
        self.configmaps(ns)
            .patch(
                name,
                &PatchParams::apply("test").force(),
                &Patch::Apply(&cm),
            )
            .await
            .expect("configmap");
    }

    /// Sets ConfigMap `shop/sentinel` to `value` and waits until Git has it: every event
    /// before it was decided by then.
    pub async fn sentinel(&self, value: &str) {
        self.put_configmap("shop", "sentinel", value).await;
        let want = format!("value: \"{value}\"");
        until(&format!("the sentinel {value}"), || {
            self.file("shop", "sentinel")
                .is_some_and(|f| f.contains(&want))
        })
        .await;
    }

    /// Sets the sentinel to `value` and asserts that it made the only commit since there were
    /// `settled`: every event before it was decided and none wrote anything.
    pub async fn only_the_sentinel(&self, value: &str, settled: usize) {
        self.sentinel(value).await;
        assert_eq!(
            self.subjects().len(),
            settled + 1,
            "only the sentinel: {:?}",
            self.subjects()
        );
    }

    pub fn file(&self, ns: &str, name: &str) -> Option<String> {
        show(
            &self.repo,
            &format!("{FOLDER}/{ns}/core/configmaps/{name}.yaml"),
        )
    }

    pub fn subjects(&self) -> Vec<String> {
        let dir = self.repo.to_str().expect("utf-8");
        let out = crate::support::git_servers::git_output(
            &self.repo,
            &["--git-dir", dir, "log", "--format=%s", "main"],
            None,
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }
}

pub struct Running {
    pub agent: gitops_reverser::agent::runtime::AgentHandle,
    pub running: RunningAgent,
}

impl Running {
    pub async fn ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Err(reason) = self.agent.readiness.check() {
            assert!(Instant::now() < deadline, "not ready: {reason}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn stop(self) {
        self.running
            .stop()
            .await
            .expect("the agent stopped cleanly");
    }

    /// Stops an agent that is expected to hold changes it could not push.
    pub async fn stop_unflushed(self) {
        let _ = self.running.stop().await;
    }
}

/// The condition `type_` of a configbutler.ai object, as `kubectl get -o yaml` would show it.
pub async fn condition(
    client: &kube::Client,
    plural: &str,
    ns: &str,
    name: &str,
    type_: &str,
) -> Option<serde_json::Value> {
    let resource = configbutler(plural);
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource);
    let object = api.get(name).await.ok()?;
    object.data["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .cloned()
}

pub async fn until_condition(
    client: &kube::Client,
    plural: &str,
    ns: &str,
    name: &str,
    type_: &str,
    status: &str,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(c) = condition(client, plural, ns, name, type_)
            .await
            .filter(|c| c["status"] == status)
        {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "{plural} {ns}/{name}: {type_} never became {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the `status` of a configbutler.ai object satisfies `check` (as `kubectl get -o
/// yaml` would show it; `ns` empty for cluster-scoped kinds) and returns it.
pub async fn until_status(
    client: &kube::Client,
    plural: &str,
    ns: &str,
    name: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let resource = configbutler(plural);
    let api: Api<DynamicObject> = if ns.is_empty() {
        Api::all_with(client.clone(), &resource)
    } else {
        Api::namespaced_with(client.clone(), ns, &resource)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = api
            .get(name)
            .await
            .map(|o| o.data["status"].clone())
            .unwrap_or_default();
        if check(&status) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "{plural} {ns}/{name}: the status never got there: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Installs a namespaced CRD that accepts any content (a stand-in for Flux's, Argo CD's or a
/// user's custom resources).
pub async fn install_crd(env: &Env, group: &str, version: &str, kind: &str, plural: &str) {
    apply(&env.client, json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.{group}")},
        "spec": {"group": group, "scope": "Namespaced",
            "names": {"plural": plural, "singular": kind.to_lowercase(), "kind": kind, "listKind": format!("{kind}List")},
            "versions": [{"name": version, "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}})).await;
}

/// The dynamic API resource of one of our kinds (`gitrepoconfigs`, `watchrules`, ...).
pub fn configbutler(plural: &str) -> kube::api::ApiResource {
    kube::api::ApiResource {
        group: "configbutler.ai".into(),
        version: "v1alpha1".into(),
        api_version: "configbutler.ai/v1alpha1".into(),
        kind: String::new(),
        plural: plural.into(),
    }
}
