//! GitRepoConfig planning: URL normalization, commit window, credentials and reachability
//! conditions, and the access-policy checks every destination and rule goes through.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use super::ObjectKey;
use super::conditions::{self, Check, reason, with_ready};
use super::selector;
use crate::crd::{AccessPolicy, GitRepoConfig, NamespacedRulesMode, WindowSettings};
use crate::git::url::{NormalizedUrl, redact};

/// Why the remote did not answer a check or a push, as the I/O code saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteProblem {
    /// The remote's answer or the transport's error (URLs redacted, no secrets).
    pub message: String,
    /// True when the remote refused the credentials (authentication failed or the SSH host
    /// key did not match): `CredentialsValid` turns False with this message.
    pub credentials_rejected: bool,
}

impl RemoteProblem {
    pub fn new(message: impl Into<String>, credentials_rejected: bool) -> Self {
        Self {
            message: message.into(),
            credentials_rejected,
        }
    }
}

/// What the plan concluded about one GitRepoConfig.
#[derive(Clone, Debug, PartialEq)]
pub struct RepoPlan {
    /// `metadata.generation`, copied into every condition's `observedGeneration`.
    pub generation: Option<i64>,
    /// The normalized URL; `None` when `spec.url` is invalid (Ready says why).
    pub url: Option<NormalizedUrl>,
    /// `spec.url` as written, for the transport (spellings differ; the worker key does not).
    /// Never log it: a user may have put credentials in it; log `url` or a redacted form.
    pub remote_url: String,
    /// The credentials Secret (namespace of the GitRepoConfig, `secretRef.name`).
    pub secret: Option<ObjectKey>,
    /// The parsed commit window; `None` when invalid (Ready says why).
    pub window: Option<WindowSettings>,
    /// No signing key is configured, or the configured one is usable.
    pub signing_ready: bool,
    /// `Ready`, `CredentialsValid`, `RepositoryReachable`.
    pub conditions: Vec<Condition>,
    pub ready: bool,
    /// GitDestinations whose `repoRef` resolves to this GitRepoConfig (Ready or not).
    pub destinations: BTreeSet<ObjectKey>,
}

impl RepoPlan {
    /// True when destinations can be resolved through it (URL and commit window valid).
    /// Credentials and reachability are not required: a Git outage delays pushes, it does
    /// not stop capture.
    pub fn usable(&self) -> bool {
        self.url.is_some() && self.window.is_some() && self.signing_ready
    }
}

/// Plans one GitRepoConfig given the I/O checks of its Secret (its shape) and of the remote
/// (the last authenticated probe or push; `None`: not checked yet).
///
/// `CredentialsValid` is True only once the remote accepted the credentials: a well-formed
/// Secret is not enough (a wrong token is well-formed).
pub(crate) fn plan_repo(
    key: &ObjectKey,
    repo: &GitRepoConfig,
    credentials: Option<&Result<(), String>>,
    reachability: Option<&Result<(), RemoteProblem>>,
    signing: Option<&Result<String, String>>,
) -> RepoPlan {
    let spec = &repo.spec;
    let who = format!("GitRepoConfig {key}");
    let mut checks = Vec::new();

    let url = NormalizedUrl::parse(&spec.url);
    if let Err(err) = &url {
        checks.push(Check::ready_only(
            reason::INVALID_URL,
            format!("{who}: spec.url: {err}"),
        ));
    }
    let window = spec.window();
    if let Err(err) = &window {
        checks.push(Check::ready_only(
            reason::INVALID_COMMIT_WINDOW,
            format!("{who}: spec.{err}"),
        ));
    }
    if let Err(problem) = policy_selector(&spec.access_policy) {
        checks.push(Check::ready_only(
            reason::INVALID_ACCESS_POLICY,
            format!("{who}: {problem}; no namespace's rules may write through it until fixed"),
        ));
    }

    let secret = spec
        .secret_name()
        .map(|name| ObjectKey::new(&key.namespace, name));
    let shown = redact(&spec.url);
    checks.push(match (&secret, credentials, reachability) {
        (None, _, _) => Check::ok(
            conditions::CREDENTIALS_VALID,
            reason::NO_SECRET,
            format!("{who} has no secretRef: the repository is accessed without credentials"),
        ),
        (Some(s), Some(Err(problem)), _) => Check::failed(
            conditions::CREDENTIALS_VALID,
            reason::CREDENTIALS_INVALID,
            format!("{who}: Secret {s}: {problem}"),
        ),
        (Some(s), None, _) => Check::pending(
            conditions::CREDENTIALS_VALID,
            reason::PENDING,
            format!("{who}: Secret {s} has not been read yet"),
        ),
        (Some(s), Some(Ok(())), Some(Ok(()))) => Check::ok(
            conditions::CREDENTIALS_VALID,
            reason::CREDENTIALS_VALID,
            format!("{shown} accepted the credentials in Secret {s}"),
        ),
        (Some(s), Some(Ok(())), Some(Err(problem))) if problem.credentials_rejected => {
            Check::failed(
                conditions::CREDENTIALS_VALID,
                reason::CREDENTIALS_REJECTED,
                format!(
                    "{who}: {shown} rejected the credentials in Secret {s}: {}",
                    problem.message
                ),
            )
        }
        (Some(s), Some(Ok(())), Some(Err(_))) => Check::pending(
            conditions::CREDENTIALS_VALID,
            reason::NOT_VERIFIED,
            format!(
                "{who}: Secret {s} is well-formed, but {shown} could not be reached to verify \
                 it (see RepositoryReachable)"
            ),
        ),
        (Some(s), Some(Ok(())), None) => Check::pending(
            conditions::CREDENTIALS_VALID,
            reason::PENDING,
            format!("{who}: Secret {s} is well-formed; waiting for {shown} to accept it"),
        ),
    });

    checks.push(match (&url, reachability) {
        (Err(_), _) => Check::failed(
            conditions::REPOSITORY_REACHABLE,
            reason::INVALID_URL,
            format!("{who}: not checked because spec.url {shown:?} is invalid"),
        ),
        (Ok(_), Some(Ok(()))) => Check::ok(
            conditions::REPOSITORY_REACHABLE,
            reason::REACHABLE,
            format!("{shown} answered"),
        ),
        (Ok(_), Some(Err(problem))) => Check::failed(
            conditions::REPOSITORY_REACHABLE,
            reason::UNREACHABLE,
            format!("{who}: {shown}: {}", problem.message),
        ),
        (Ok(_), None) => Check::pending(
            conditions::REPOSITORY_REACHABLE,
            reason::PENDING,
            format!("{who}: {shown} has not been checked yet"),
        ),
    });

    // Signing: configured keys must work before anything is committed (never unsigned).
    let mut signing_ready = true;
    if let Some(name) = spec.signing_secret_name() {
        let s = ObjectKey::new(&key.namespace, name);
        checks.push(match signing {
            Some(Ok(key_text)) => Check::ok(
                conditions::COMMITS_SIGNED,
                reason::SIGNED,
                format!("every commit is signed with the SSH key in Secret {s}: {key_text}"),
            ),
            Some(Err(problem)) => {
                signing_ready = false;
                Check::failed(
                    conditions::COMMITS_SIGNED,
                    reason::SIGNING_KEY_INVALID,
                    format!(
                        "{who}: Secret {s}: {problem}; nothing is committed until it holds a \
                         usable key"
                    ),
                )
            }
            None => {
                signing_ready = false;
                Check::pending(
                    conditions::COMMITS_SIGNED,
                    reason::PENDING,
                    format!("{who}: the signing key in Secret {s} has not been read yet"),
                )
            }
        });
    }

    let generation = repo.metadata.generation;
    let (conditions, ready) = with_ready(
        checks,
        format!("{shown} is reachable and usable"),
        generation,
    );
    RepoPlan {
        generation,
        url: url.ok(),
        remote_url: spec.url.clone(),
        secret,
        window: window.ok(),
        signing_ready,
        conditions,
        ready,
        destinations: BTreeSet::new(),
    }
}

/// The FromSelector selector, or why the policy cannot be evaluated.
fn policy_selector(policy: &AccessPolicy) -> Result<Option<kube::core::Selector>, String> {
    let rules = &policy.namespaced_rules;
    if rules.mode != NamespacedRulesMode::FromSelector {
        return Ok(None);
    }
    match &rules.namespace_selector {
        None => Err(
            "accessPolicy.namespacedRules.mode=FromSelector but namespaceSelector is \
                     missing"
                .to_string(),
        ),
        Some(s) => selector::parse("accessPolicy.namespacedRules.namespaceSelector", s)
            .map(Some)
            .map_err(|e| format!("{e}")),
    }
}

/// Whether the repository `repo` (in namespace `repo.namespace`) admits writes from
/// `namespace`: `Ok` or `Err`, each with an explanation naming the policy.
pub(crate) fn admit_namespace(
    repo: &ObjectKey,
    policy: &AccessPolicy,
    namespace: &str,
    namespaces: &BTreeMap<String, BTreeMap<String, String>>,
) -> Result<String, String> {
    match policy.namespaced_rules.mode {
        NamespacedRulesMode::SameNamespace if namespace == repo.namespace => Ok(
            "accessPolicy.namespacedRules.mode=SameNamespace and it is the GitRepoConfig's own \
             namespace"
                .to_string(),
        ),
        NamespacedRulesMode::SameNamespace => Err(format!(
            "accessPolicy.namespacedRules.mode=SameNamespace admits only namespace {}",
            repo.namespace
        )),
        NamespacedRulesMode::AllNamespaces => {
            Ok("accessPolicy.namespacedRules.mode=AllNamespaces".to_string())
        }
        NamespacedRulesMode::FromSelector => {
            let selector = match policy_selector(policy) {
                Ok(Some(s)) => s,
                Ok(None) => return Err("accessPolicy has no namespaceSelector".to_string()),
                Err(problem) => return Err(format!("{problem}, so no namespace is admitted")),
            };
            let shown = selector::describe(&selector);
            match namespaces.get(namespace) {
                Some(labels) if selector::matches(&selector, labels) => Ok(format!(
                    "accessPolicy.namespacedRules.mode=FromSelector and its labels match {shown}"
                )),
                Some(labels) => Err(format!(
                    "accessPolicy.namespacedRules.mode=FromSelector admits namespaces matching \
                     {shown}; namespace {namespace} has {}",
                    selector::describe_labels(labels)
                )),
                None => Err(format!(
                    "accessPolicy.namespacedRules.mode=FromSelector admits namespaces matching \
                     {shown}; namespace {namespace} is not known to the agent"
                )),
            }
        }
    }
}

/// Whether `repo` lets ClusterWatchRules write through it, with an explanation.
pub(crate) fn admit_cluster_rules(policy: &AccessPolicy) -> Result<String, String> {
    if policy.allow_cluster_rules {
        Ok("accessPolicy.allowClusterRules is true".to_string())
    } else {
        Err(
            "accessPolicy.allowClusterRules is false; set it to true to let ClusterWatchRules \
             write through it"
                .to_string(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::conditions::{CREDENTIALS_VALID, READY, REPOSITORY_REACHABLE};
    use super::super::testkit::*;
    use super::*;
    use crate::crd::NamespacedRulesPolicy;
    use serde_json::json;

    fn cond<'a>(plan: &'a RepoPlan, type_: &str) -> (&'a str, &'a str) {
        plan.conditions
            .iter()
            .find(|c| c.type_ == type_)
            .map(|c| (c.status.as_str(), c.reason.as_str()))
            .unwrap_or(("missing", "missing"))
    }

    #[test]
    fn repo_conditions_from_url_credentials_and_reachability() {
        let ok: Result<(), String> = Ok(());
        let bad: Result<(), String> = Err("key \"identity\" is missing".into());
        let answered: Result<(), RemoteProblem> = Ok(());
        let down: Result<(), RemoteProblem> =
            Err(RemoteProblem::new("cannot reach https://h/r.git", false));
        let refused: Result<(), RemoteProblem> = Err(RemoteProblem::new(
            "authentication to https://h/r.git failed (probe): HTTP 401",
            true,
        ));
        let key = ObjectKey::new("infra", "main");
        let with_secret = |url: &str| {
            let mut r = repo("infra", "main", url);
            r.spec.secret_ref = Some(crate::crd::SecretRef {
                name: "creds".into(),
            });
            r
        };
        type Case<'a> = (
            GitRepoConfig,
            Option<&'a Result<(), String>>,
            Option<&'a Result<(), RemoteProblem>>,
            (&'a str, &'a str),
            (&'a str, &'a str),
            (&'a str, &'a str),
        );
        let table: Vec<Case<'_>> = vec![
            (
                repo("infra", "main", "https://h/r.git"),
                None,
                Some(&answered),
                ("True", "Ready"),
                ("True", "NoSecret"),
                ("True", "Reachable"),
            ),
            // Well-formed and accepted by the remote.
            (
                with_secret("https://h/r.git"),
                Some(&ok),
                Some(&answered),
                ("True", "Ready"),
                ("True", "CredentialsValid"),
                ("True", "Reachable"),
            ),
            // Well-formed, but not yet tried against the remote: not claimed valid.
            (
                with_secret("https://h/r.git"),
                Some(&ok),
                None,
                ("Unknown", "Pending"),
                ("Unknown", "Pending"),
                ("Unknown", "Pending"),
            ),
            // Well-formed, refused by the remote: False with the remote's answer.
            (
                with_secret("https://h/r.git"),
                Some(&ok),
                Some(&refused),
                ("False", "CredentialsRejected"),
                ("False", "CredentialsRejected"),
                ("False", "Unreachable"),
            ),
            // Well-formed, remote down: cannot be verified.
            (
                with_secret("https://h/r.git"),
                Some(&ok),
                Some(&down),
                ("False", "Unreachable"),
                ("Unknown", "NotVerified"),
                ("False", "Unreachable"),
            ),
            (
                with_secret("https://h/r.git"),
                Some(&bad),
                Some(&answered),
                ("False", "CredentialsInvalid"),
                ("False", "CredentialsInvalid"),
                ("True", "Reachable"),
            ),
            (
                with_secret("https://h/r.git"),
                None,
                None,
                ("Unknown", "Pending"),
                ("Unknown", "Pending"),
                ("Unknown", "Pending"),
            ),
            (
                repo("infra", "main", "https://h/r.git"),
                None,
                Some(&down),
                ("False", "Unreachable"),
                ("True", "NoSecret"),
                ("False", "Unreachable"),
            ),
            (
                repo("infra", "main", "https://u:pw@host"),
                None,
                None,
                ("False", "InvalidURL"),
                ("True", "NoSecret"),
                ("False", "InvalidURL"),
            ),
        ];
        for (r, creds, reach, ready, cv, rr) in table {
            let p = plan_repo(&key, &r, creds, reach, None);
            assert_eq!(cond(&p, READY), ready, "{}", r.spec.url);
            assert_eq!(cond(&p, CREDENTIALS_VALID), cv, "{}", r.spec.url);
            assert_eq!(cond(&p, REPOSITORY_REACHABLE), rr, "{}", r.spec.url);
            assert!(p.conditions.iter().all(|c| !c.message.contains("pw")));
        }
        // The remote's own answer reaches the condition a person reads.
        let p = plan_repo(
            &key,
            &with_secret("https://h/r.git"),
            Some(&ok),
            Some(&refused),
            None,
        );
        let cv = p
            .conditions
            .iter()
            .find(|c| c.type_ == CREDENTIALS_VALID)
            .map(|c| c.message.clone())
            .unwrap_or_default();
        assert!(
            cv.contains("HTTP 401") && cv.contains("infra/creds"),
            "{cv}"
        );
        let p = plan_repo(
            &key,
            &with_secret("git@H:org/r.git"),
            Some(&bad),
            None,
            None,
        );
        assert_eq!(p.secret, Some(ObjectKey::new("infra", "creds")));
        assert_eq!(
            p.url.as_ref().map(|u| u.as_str()),
            Some("ssh://git@h/org/r")
        );
        let msg = &p.conditions[0].message;
        assert!(
            msg.contains("GitRepoConfig infra/main")
                && msg.contains("infra/creds")
                && msg.contains("identity"),
            "{msg}"
        );
    }

    #[test]
    fn invalid_window_and_policy_make_the_repo_not_ready() {
        let key = ObjectKey::new("infra", "main");
        let mut r = repo("infra", "main", "https://h/r");
        r.spec.commit.window.quiet = "soon".into();
        let p = plan_repo(&key, &r, None, Some(&Ok(())), None);
        assert_eq!(cond(&p, READY), ("False", "InvalidCommitWindow"));
        assert!(
            p.conditions[0].message.contains("commit.window.quiet"),
            "{}",
            p.conditions[0].message
        );
        assert!(!p.usable());

        let mut r = repo("infra", "main", "https://h/r");
        r.spec.access_policy.namespaced_rules = NamespacedRulesPolicy {
            mode: NamespacedRulesMode::FromSelector,
            namespace_selector: None,
        };
        let p = plan_repo(&key, &r, None, Some(&Ok(())), None);
        assert_eq!(cond(&p, READY), ("False", "InvalidAccessPolicy"));
        assert!(p.usable());
    }

    #[test]
    fn namespace_admission_by_mode() {
        let repo_key = ObjectKey::new("infra", "main");
        let namespaces = namespaces();
        let policy = |mode, sel: Option<serde_json::Value>| AccessPolicy {
            namespaced_rules: NamespacedRulesPolicy {
                mode,
                namespace_selector: sel.map(|v| serde_json::from_value(v).unwrap_or_default()),
            },
            allow_cluster_rules: false,
        };
        use NamespacedRulesMode::*;
        let prod = Some(json!({"matchLabels": {"env": "prod"}}));
        let bad = Some(json!({"matchExpressions": [{"key": "env", "operator": "Is"}]}));
        let table = [
            (policy(SameNamespace, None), "infra", true, "own namespace"),
            (
                policy(SameNamespace, None),
                "shop",
                false,
                "admits only namespace infra",
            ),
            (policy(AllNamespaces, None), "shop", true, "AllNamespaces"),
            (
                policy(FromSelector, prod.clone()),
                "shop",
                true,
                "match env=prod",
            ),
            (
                policy(FromSelector, prod.clone()),
                "dev",
                false,
                "namespace dev has env=dev",
            ),
            (
                policy(FromSelector, prod.clone()),
                "infra",
                false,
                "matching env=prod",
            ),
            (policy(FromSelector, prod), "ghost", false, "not known"),
            (policy(FromSelector, bad), "shop", false, "\"Is\""),
            (
                policy(FromSelector, None),
                "shop",
                false,
                "namespaceSelector is missing",
            ),
        ];
        for (p, ns, want, text) in table {
            let got = admit_namespace(&repo_key, &p, ns, &namespaces);
            assert_eq!(got.is_ok(), want, "{ns}: {got:?}");
            let explanation = got.unwrap_or_else(|e| e);
            assert!(explanation.contains(text), "{ns}: {explanation}");
        }
        let mut p = policy(SameNamespace, None);
        assert!(admit_cluster_rules(&p).is_err());
        p.allow_cluster_rules = true;
        assert!(admit_cluster_rules(&p).is_ok());
    }
}
