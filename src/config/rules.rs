//! The one rule compiler shared by WatchRule and ClusterWatchRule: resolves `rules[]` through
//! discovery, checks the destination and the access policy, and says what the rule selects.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::core::Selector;

use super::conditions::{self, Check, Health, Status, join_limited, reason, with_ready};
use super::destinations::DestinationPlan;
use super::discovery::{ApiResource, Discovery};
use super::repos::{RepoPlan, admit_cluster_rules, admit_namespace};
use super::selector;
use super::{ObjectKey, RuleKey};
use crate::crd::{Exclusions, GitRepoConfig, Operation, ResourceRule, RuleScope};
use crate::manifest::exclude::{RULES as EXCLUSIONS, SECRETS};
use crate::manifest::user_exclude::UserExclusions;

/// A resource independent of version; displays kubectl-style (`deployments.apps`, `configmaps`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupResource {
    pub group: String,
    pub resource: String,
}

impl GroupResource {
    pub fn new(group: &str, resource: &str) -> Self {
        Self {
            group: group.to_string(),
            resource: resource.to_string(),
        }
    }
}

impl fmt::Display for GroupResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.group.is_empty() {
            f.write_str(&self.resource)
        } else {
            write!(f, "{}.{}", self.resource, self.group)
        }
    }
}

/// Which kinds of change a rule writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Operations {
    pub create: bool,
    pub update: bool,
    pub delete: bool,
}

impl Operations {
    /// The operations a rule entry lists (`*` is all three).
    pub fn of(ops: &[Operation]) -> Self {
        let mut out = Self::default();
        for op in ops {
            match op {
                Operation::Create => out.create = true,
                Operation::Update => out.update = true,
                Operation::Delete => out.delete = true,
                Operation::All => {
                    out = Self {
                        create: true,
                        update: true,
                        delete: true,
                    }
                }
            }
        }
        out
    }

    /// True when `op` is included; `Operation::All` asks "any of them" (used for listings,
    /// where an object exists without a specific change).
    pub fn covers(self, op: Operation) -> bool {
        match op {
            Operation::Create => self.create,
            Operation::Update => self.update,
            Operation::Delete => self.delete,
            Operation::All => self.create || self.update || self.delete,
        }
    }

    fn union(self, other: Self) -> Self {
        Self {
            create: self.create || other.create,
            update: self.update || other.update,
            delete: self.delete || other.delete,
        }
    }
}

/// Where a rule selects namespaced resources.
#[derive(Clone, Debug, PartialEq)]
pub enum NamespaceScope {
    /// A WatchRule: its own namespace.
    Only(String),
    /// A ClusterWatchRule without `namespaceSelector`: every namespace.
    All,
    /// A ClusterWatchRule with `namespaceSelector`: namespaces whose labels match.
    Matching(Selector),
}

impl NamespaceScope {
    /// True when `namespace` (with labels from `namespaces`; unknown = no labels) is in scope.
    pub fn admits(
        &self,
        namespace: &str,
        namespaces: &BTreeMap<String, BTreeMap<String, String>>,
    ) -> bool {
        match self {
            NamespaceScope::Only(ns) => ns == namespace,
            NamespaceScope::All => true,
            NamespaceScope::Matching(sel) => match namespaces.get(namespace) {
                Some(labels) => selector::matches(sel, labels),
                None => selector::matches(sel, &BTreeMap::new()),
            },
        }
    }
}

/// One resource a rule selects, in the version the agent watches it, with the union of the
/// operations of every `rules[]` entry naming it.
#[derive(Clone, Debug, PartialEq)]
pub struct SelectedResource {
    pub api: ApiResource,
    pub operations: Operations,
}

/// Why a resource named or matched by a `rules[]` entry is not selected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemKind {
    /// Not served by the API server (yet): re-resolved when discovery changes.
    NotServed,
    /// A subresource such as `deployments/status`.
    Subresource,
    /// Cluster-scoped where namespaced is required, or the reverse.
    WrongScope,
    /// A ClusterWatchRule entry without `scope`.
    MissingScope,
    /// The server does not offer list and watch on it.
    NotListable,
    /// Never written (Secrets without `--allow-secrets`, events, leases, ...).
    Excluded,
}

/// A resource a `rules[]` entry could not select, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceProblem {
    /// Index into `spec.rules`.
    pub rule: usize,
    pub kind: ProblemKind,
    /// A sentence naming the resource and what to do.
    pub message: String,
    /// True when the resource was named in the rule; false when only a `*` matched it (then
    /// it is mentioned, not treated as an error).
    pub explicit: bool,
}

/// What the plan concluded about one WatchRule or ClusterWatchRule.
#[derive(Clone, Debug, PartialEq)]
pub struct RulePlan {
    pub generation: Option<i64>,
    /// The GitDestination it writes to.
    pub destination: ObjectKey,
    /// `Ready`, `AccessAllowed`, `DestinationResolved`, `ResourcesResolved`.
    pub conditions: Vec<Condition>,
    /// True when it writes: destination Ready, access allowed, at least one resource selected.
    pub ready: bool,
    /// What its rules resolve to (also when not Ready, for status and diagnostics).
    pub selected: BTreeMap<GroupResource, SelectedResource>,
    pub problems: Vec<ResourceProblem>,
    /// Where it selects namespaced resources; `None` when `namespaceSelector` is invalid.
    pub namespaces: Option<NamespaceScope>,
    /// Only objects whose labels match; `None` selects every object.
    pub object_selector: Option<Selector>,
    /// `spec.exclusions`, compiled (rule ids name this rule); empty when none or invalid.
    pub exclusions: Arc<UserExclusions>,
}

/// Where a rule lives, which decides its scope check and its access check.
pub(crate) enum Origin<'a> {
    /// A WatchRule in this namespace.
    Namespace(&'a str),
    /// A ClusterWatchRule.
    Cluster {
        namespace_selector: Option<&'a LabelSelector>,
    },
}

/// The parts of a WatchRule or ClusterWatchRule the compiler reads.
pub(crate) struct RuleView<'a> {
    pub key: RuleKey,
    pub generation: Option<i64>,
    pub destination: ObjectKey,
    pub origin: Origin<'a>,
    pub object_selector: Option<&'a LabelSelector>,
    pub rules: &'a [ResourceRule],
    pub exclusions: Option<&'a Exclusions>,
}

/// What the compiler looks things up in.
pub(crate) struct Context<'a> {
    pub discovery: &'a Discovery,
    pub destinations: &'a BTreeMap<ObjectKey, DestinationPlan>,
    pub repos: &'a BTreeMap<ObjectKey, (&'a GitRepoConfig, RepoPlan)>,
    pub namespaces: &'a BTreeMap<String, BTreeMap<String, String>>,
    pub allow_secrets: bool,
}

/// Compiles one rule.
pub(crate) fn compile(view: RuleView<'_>, ctx: &Context<'_>) -> RulePlan {
    let who = view.key.to_string();
    let mut selector_problems = Vec::new();
    let object_selector = view.object_selector.and_then(|s| {
        selector::parse("spec.objectSelector", s)
            .map_err(|e| selector_problems.push(e.to_string()))
            .ok()
    });
    let namespaces = match &view.origin {
        Origin::Namespace(ns) => Some(NamespaceScope::Only(ns.to_string())),
        Origin::Cluster {
            namespace_selector: None,
        } => Some(NamespaceScope::All),
        Origin::Cluster {
            namespace_selector: Some(s),
        } => selector::parse("spec.namespaceSelector", s)
            .map(NamespaceScope::Matching)
            .map_err(|e| selector_problems.push(e.to_string()))
            .ok(),
    };
    // Invalid exclusions fail the rule (nothing is written rather than what they would keep
    // out of Git).
    let (exclusions, exclusion_problem) =
        match view.exclusions.map(|e| e.compile(&who, "spec.exclusions")) {
            None => (UserExclusions::default(), None),
            Some(Ok(e)) => (e, None),
            Some(Err(e)) => (UserExclusions::default(), Some(e.to_string())),
        };

    let dest_key = &view.destination;
    let dest = ctx.destinations.get(dest_key);
    let destination_check = match dest {
        None => Check::failed(
            conditions::DESTINATION_RESOLVED,
            reason::DESTINATION_NOT_FOUND,
            format!("{who}: GitDestination {dest_key} not found"),
        ),
        Some(d) if !d.ready => {
            let (why, detail) = d
                .conditions
                .first()
                .map(|c| (c.reason.as_str(), c.message.as_str()))
                .unwrap_or_default();
            Check::failed(
                conditions::DESTINATION_RESOLVED,
                reason::DESTINATION_NOT_READY,
                format!("{who}: GitDestination {dest_key} is not Ready ({why}: {detail})"),
            )
        }
        Some(d) => Check::ok(
            conditions::DESTINATION_RESOLVED,
            reason::RESOLVED,
            match &d.resolved {
                Some(r) => format!(
                    "GitDestination {dest_key} writes folder {} on {}",
                    r.folder, r.repo_key
                ),
                None => format!("GitDestination {dest_key} is Ready"),
            },
        ),
    };

    let repo = dest
        .and_then(|d| d.repo.as_ref())
        .and_then(|r| ctx.repos.get(r).map(|(config, _)| (r, *config)));
    let access_check = match (repo, &view.origin) {
        (None, _) => Check::pending(
            conditions::ACCESS_ALLOWED,
            reason::DESTINATION_NOT_RESOLVED,
            format!(
                "{who}: the access policy is checked once GitDestination {dest_key} resolves \
                 its GitRepoConfig"
            ),
        ),
        (Some((repo_key, config)), Origin::Namespace(ns)) => {
            match admit_namespace(repo_key, &config.spec.access_policy, ns, ctx.namespaces) {
                Ok(why) => Check::ok(
                    conditions::ACCESS_ALLOWED,
                    reason::ACCESS_ALLOWED,
                    format!("namespace {ns} is admitted by GitRepoConfig {repo_key} ({why})"),
                ),
                Err(why) => Check::failed(
                    conditions::ACCESS_ALLOWED,
                    reason::NAMESPACE_NOT_ADMITTED,
                    format!(
                        "{who}: namespace {ns} is not admitted by GitRepoConfig {repo_key} ({why})"
                    ),
                ),
            }
        }
        (Some((repo_key, config)), Origin::Cluster { .. }) => {
            match admit_cluster_rules(&config.spec.access_policy) {
                Ok(why) => Check::ok(
                    conditions::ACCESS_ALLOWED,
                    reason::ACCESS_ALLOWED,
                    format!("GitRepoConfig {repo_key} admits ClusterWatchRules ({why})"),
                ),
                Err(why) => Check::failed(
                    conditions::ACCESS_ALLOWED,
                    reason::CLUSTER_RULES_NOT_ALLOWED,
                    format!(
                        "{who}: GitRepoConfig {repo_key} does not admit ClusterWatchRules ({why})"
                    ),
                ),
            }
        }
    };

    let in_namespace = matches!(view.origin, Origin::Namespace(_));
    // A destination that encrypts Secrets may be sent them.
    let secrets_allowed = ctx.allow_secrets
        || dest
            .and_then(|d| d.resolved.as_ref())
            .is_some_and(|r| r.age_recipients.is_some());
    let (selected, problems) = resolve(view.rules, in_namespace, ctx.discovery, secrets_allowed);
    let resources_check = match exclusion_problem {
        Some(problem) => Check::failed(
            conditions::RESOURCES_RESOLVED,
            reason::INVALID_EXCLUSIONS,
            format!("{who}: {problem}"),
        ),
        None => resources_check(&who, &selected, &problems, &selector_problems),
    };

    let ready_message = format!(
        "writes {} resource{} to GitDestination {dest_key}",
        selected.len(),
        if selected.len() == 1 { "" } else { "s" }
    );
    let (conditions, ready) = with_ready(
        vec![access_check, destination_check, resources_check],
        ready_message,
        view.generation,
    );
    RulePlan {
        generation: view.generation,
        destination: view.destination,
        conditions,
        ready,
        selected,
        problems,
        namespaces,
        object_selector,
        exclusions: Arc::new(exclusions),
    }
}

fn resources_check(
    who: &str,
    selected: &BTreeMap<GroupResource, SelectedResource>,
    problems: &[ResourceProblem],
    selector_problems: &[String],
) -> Check {
    let type_ = conditions::RESOURCES_RESOLVED;
    if !selector_problems.is_empty() {
        return Check::failed(
            type_,
            reason::INVALID_SELECTOR,
            format!("{who}: {}", selector_problems.join("; ")),
        );
    }
    let listed = join_limited(selected.keys().map(ToString::to_string), 20);
    let implicit: Vec<String> = problems
        .iter()
        .filter(|p| !p.explicit)
        .map(|p| p.message.clone())
        .collect();
    let skipped = if implicit.is_empty() {
        String::new()
    } else {
        format!(
            "; skipped among wildcard matches: {}",
            join_limited(implicit, 10)
        )
    };
    let explicit: Vec<&ResourceProblem> = problems.iter().filter(|p| p.explicit).collect();
    if !explicit.is_empty() {
        let not_served = explicit.iter().any(|p| p.kind == ProblemKind::NotServed);
        let what = explicit
            .iter()
            .map(|p| format!("rules[{}]: {}", p.rule, p.message))
            .collect::<Vec<_>>()
            .join("; ");
        let retry = if not_served {
            " (resources not served yet are resolved again when discovery changes)"
        } else {
            ""
        };
        let outcome = if selected.is_empty() {
            "nothing is selected".to_string()
        } else {
            format!("selecting {listed}")
        };
        return Check {
            type_,
            status: Status::False,
            reason: if not_served {
                reason::RESOURCES_NOT_FOUND
            } else {
                reason::RESOURCES_REJECTED
            },
            message: format!("{who}: {what}{retry}; {outcome}{skipped}"),
            health: if selected.is_empty() {
                Health::Failed
            } else {
                Health::Ok
            },
            emit: true,
        };
    }
    if selected.is_empty() {
        return Check::failed(
            type_,
            reason::NO_RESOURCES_SELECTED,
            format!(
                "{who}: the rules match no resource the API server serves (resolved again when \
                 discovery changes){skipped}"
            ),
        );
    }
    Check::ok(
        type_,
        reason::RESOLVED,
        format!("selects {listed}{skipped}"),
    )
}

/// Resolves `rules` through `discovery`. `in_namespace` is true for a WatchRule (namespaced
/// resources only, `scope` must not be Cluster); otherwise each entry's `scope` decides.
/// Each (group, resource) is selected in one version, [`Discovery::canonical`]: versions are
/// views of the same objects, and the agent writes each object once.
fn resolve(
    rules: &[ResourceRule],
    in_namespace: bool,
    discovery: &Discovery,
    allow_secrets: bool,
) -> (
    BTreeMap<GroupResource, SelectedResource>,
    Vec<ResourceProblem>,
) {
    let mut selected: BTreeMap<GroupResource, SelectedResource> = BTreeMap::new();
    let mut problems = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        let mut problem = |kind, message: String, explicit| {
            problems.push(ResourceProblem {
                rule: i,
                kind,
                message,
                explicit,
            })
        };
        let want_namespaced = match (in_namespace, rule.scope) {
            (true, None | Some(RuleScope::Namespaced)) => true,
            (true, Some(RuleScope::Cluster)) => {
                problem(
                    ProblemKind::WrongScope,
                    "scope: Cluster is not allowed in a WatchRule, which only selects namespaced \
                     resources in its own namespace; use a ClusterWatchRule"
                        .to_string(),
                    true,
                );
                continue;
            }
            (false, Some(RuleScope::Namespaced)) => true,
            (false, Some(RuleScope::Cluster)) => false,
            (false, None) => {
                problem(
                    ProblemKind::MissingScope,
                    "scope is required in a ClusterWatchRule (Cluster or Namespaced)".to_string(),
                    true,
                );
                continue;
            }
        };
        let operations = Operations::of(&rule.operations);
        let all_groups = rule.api_groups.iter().any(|g| g == "*");
        let all_resources = rule.resources.iter().any(|r| r == "*");
        let any_version = rule.api_versions.iter().any(|v| v == "*");
        let mut named: BTreeSet<&str> = BTreeSet::new();
        for r in rule.resources.iter().filter(|r| *r != "*") {
            match r.split_once('/') {
                Some((base, _)) => problem(
                    ProblemKind::Subresource,
                    format!(
                        "{r} is a subresource, which is not watched (the object is written \
                         whole; name {base:?} instead)"
                    ),
                    true,
                ),
                None => {
                    named.insert(r);
                }
            }
        }
        let groups: BTreeSet<&str> = if all_groups {
            discovery.groups().collect()
        } else {
            let mut groups = BTreeSet::new();
            for g in &rule.api_groups {
                if discovery.has_group(g) {
                    groups.insert(g.as_str());
                } else {
                    let what = if all_resources {
                        "its resources".to_string()
                    } else {
                        named
                            .iter()
                            .map(|r| GroupResource::new(g, r).to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    problem(
                        ProblemKind::NotServed,
                        format!(
                            "API group {g:?} is not served by the API server ({what} not \
                             watched)"
                        ),
                        true,
                    );
                }
            }
            groups
        };
        let mut found: BTreeSet<&str> = BTreeSet::new();
        for group in groups {
            let plurals = discovery.plurals(group);
            let candidates: Vec<&str> = if all_resources {
                plurals.iter().copied().collect()
            } else {
                for r in &named {
                    if !all_groups && !plurals.contains(r) {
                        let gr = GroupResource::new(group, r);
                        problem(
                            ProblemKind::NotServed,
                            format!("{gr} is not served by the API server"),
                            true,
                        );
                    }
                }
                named
                    .iter()
                    .copied()
                    .filter(|r| plurals.contains(r))
                    .collect()
            };
            for plural in candidates {
                let explicit = named.contains(plural);
                let gr = GroupResource::new(group, plural);
                let served = discovery.served(group, plural);
                if !any_version
                    && !served
                        .iter()
                        .any(|r| rule.api_versions.contains(&r.version))
                {
                    if explicit {
                        let versions: Vec<&str> =
                            served.iter().map(|r| r.version.as_str()).collect();
                        problem(
                            ProblemKind::NotServed,
                            format!(
                                "{gr} is not served in apiVersions [{}] (served: {})",
                                rule.api_versions.join(", "),
                                versions.join(", ")
                            ),
                            true,
                        );
                        found.insert(plural);
                    }
                    continue;
                }
                found.insert(plural);
                let Some(api) = served.first() else {
                    continue;
                };
                if api.namespaced != want_namespaced {
                    if explicit {
                        problem(
                            ProblemKind::WrongScope,
                            wrong_scope(&gr, api, in_namespace),
                            true,
                        );
                    }
                    continue;
                }
                if !api.can_list_and_watch() {
                    let verbs: Vec<&str> = api.verbs.iter().map(String::as_str).collect();
                    problem(
                        ProblemKind::NotListable,
                        format!(
                            "{gr} cannot be listed and watched (verbs: {})",
                            verbs.join(", ")
                        ),
                        explicit,
                    );
                    continue;
                }
                if let Some(why) = excluded(api, allow_secrets) {
                    problem(
                        ProblemKind::Excluded,
                        format!("{gr} is never written: {why}"),
                        explicit,
                    );
                    continue;
                }
                selected
                    .entry(gr)
                    .and_modify(|s| s.operations = s.operations.union(operations))
                    .or_insert_with(|| SelectedResource {
                        api: (*api).clone(),
                        operations,
                    });
            }
        }
        if all_groups {
            for r in named.difference(&found) {
                problem(
                    ProblemKind::NotServed,
                    format!("resource {r:?} is not served by any API group"),
                    true,
                );
            }
        }
    }
    (selected, problems)
}

fn wrong_scope(gr: &GroupResource, api: &ApiResource, in_namespace: bool) -> String {
    match (in_namespace, api.namespaced) {
        (true, _) => format!(
            "{gr} is cluster-scoped; a WatchRule only selects namespaced resources in its own \
             namespace (use a ClusterWatchRule with scope: Cluster)"
        ),
        (false, true) => {
            format!("{gr} is namespaced but this entry has scope: Cluster (use scope: Namespaced)")
        }
        (false, false) => {
            format!(
                "{gr} is cluster-scoped but this entry has scope: Namespaced (use scope: Cluster)"
            )
        }
    }
}

/// Why every object of this resource is excluded from Git, from the exclusion table's
/// kind-wide rows (such resources are not even watched).
fn excluded(api: &ApiResource, allow_secrets: bool) -> Option<&'static str> {
    EXCLUSIONS
        .iter()
        .filter(|r| r.name.is_none() && r.namespace.is_none())
        .filter(|r| !(allow_secrets && r.id == SECRETS))
        .find(|r| r.group == api.group && r.kind == api.kind)
        .map(|r| r.reason)
}

#[cfg(test)]
mod tests {
    use super::super::conditions::{
        ACCESS_ALLOWED, DESTINATION_RESOLVED, READY, RESOURCES_RESOLVED,
    };
    use super::super::testkit::*;
    use super::super::{Inputs, Plan, plan};
    use super::*;
    use crate::crd::{AccessPolicy, NamespacedRulesMode, NamespacedRulesPolicy};
    use serde_json::json;

    fn status<'a>(p: &'a Plan, key: &RuleKey, type_: &str) -> (&'a str, &'a str, &'a str) {
        p.rules
            .get(key)
            .and_then(|r| r.conditions.iter().find(|c| c.type_ == type_))
            .map(|c| (c.status.as_str(), c.reason.as_str(), c.message.as_str()))
            .unwrap_or(("missing", "missing", "missing"))
    }

    fn selected(p: &Plan, key: &RuleKey) -> Vec<String> {
        p.rules
            .get(key)
            .map(|r| r.selected.keys().map(ToString::to_string).collect())
            .unwrap_or_default()
    }

    fn wr(ns: &str, name: &str) -> RuleKey {
        RuleKey::Namespaced(ObjectKey::new(ns, name))
    }

    fn policy(
        mode: NamespacedRulesMode,
        sel: Option<serde_json::Value>,
        cluster: bool,
    ) -> AccessPolicy {
        AccessPolicy {
            namespaced_rules: NamespacedRulesPolicy {
                mode,
                namespace_selector: sel.and_then(|v| serde_json::from_value(v).ok()),
            },
            allow_cluster_rules: cluster,
        }
    }

    /// A repo in infra, a destination in `ns` using it, and a WatchRule `ns/web` on configmaps.
    fn one_rule_in(ns: &str, access: AccessPolicy) -> Inputs {
        let mut inputs = base_inputs();
        inputs.repos[0].spec.access_policy = access;
        inputs.destinations = vec![with_repo_ns(dest(ns, "d", "main", "main", ns), "infra")];
        inputs.watch_rules = vec![watch_rule(ns, "web", "d", vec![rr(&[""], &["configmaps"])])];
        inputs
    }

    #[test]
    fn access_policy_modes() {
        use NamespacedRulesMode::*;
        let prod = Some(json!({"matchLabels": {"env": "prod"}}));
        let table = [
            (
                policy(SameNamespace, None, false),
                "infra",
                true,
                "own namespace",
            ),
            (
                policy(SameNamespace, None, false),
                "shop",
                false,
                "WatchRule shop/web: namespace shop is not admitted by GitRepoConfig infra/main \
                 (accessPolicy.namespacedRules.mode=SameNamespace admits only namespace infra)",
            ),
            (
                policy(AllNamespaces, None, false),
                "shop",
                true,
                "AllNamespaces",
            ),
            (
                policy(FromSelector, prod.clone(), false),
                "shop",
                true,
                "match env=prod",
            ),
            (
                policy(FromSelector, prod, false),
                "dev",
                false,
                "WatchRule dev/web: namespace dev is not admitted by GitRepoConfig infra/main \
                 (accessPolicy.namespacedRules.mode=FromSelector admits namespaces matching \
                 env=prod; namespace dev has env=dev)",
            ),
        ];
        for (access, ns, allowed, text) in table {
            let p = plan(&one_rule_in(ns, access));
            let key = wr(ns, "web");
            let (st, why, msg) = status(&p, &key, ACCESS_ALLOWED);
            assert_eq!(st, if allowed { "True" } else { "False" }, "{ns}: {msg}");
            assert!(msg.contains(text), "{ns}: {msg}");
            assert_eq!(p.rules[&key].ready, allowed, "{ns}");
            assert_eq!(!p.watches.is_empty(), allowed, "{ns}");
            if !allowed {
                assert_eq!(why, "NamespaceNotAdmitted");
                // Ready names the policy, not only the destination that the policy also stops.
                assert_eq!(status(&p, &key, READY).2, msg);
                assert_eq!(
                    status(&p, &key, DESTINATION_RESOLVED).1,
                    "DestinationNotReady"
                );
            }
        }
    }

    #[test]
    fn cluster_rules_need_allow_cluster_rules() {
        for allow in [false, true] {
            let mut inputs = base_inputs();
            inputs.repos[0].spec.access_policy.allow_cluster_rules = allow;
            inputs.destinations = vec![dest("infra", "d", "main", "main", "cluster")];
            inputs.cluster_rules = vec![cluster_rule(
                "all-ns",
                "infra",
                "d",
                vec![scoped(rr(&[""], &["namespaces"]), RuleScope::Cluster)],
            )];
            let p = plan(&inputs);
            let key = RuleKey::Cluster("all-ns".into());
            let (st, why, msg) = status(&p, &key, ACCESS_ALLOWED);
            assert_eq!(p.rules[&key].ready, allow);
            if allow {
                assert_eq!(st, "True");
                assert_eq!(p.watches.len(), 1);
            } else {
                assert_eq!((st, why), ("False", "ClusterRulesNotAllowed"));
                assert!(
                    msg.contains(
                        "ClusterWatchRule all-ns: GitRepoConfig infra/main does not admit"
                    ) && msg.contains("allowClusterRules"),
                    "{msg}"
                );
                assert!(p.watches.is_empty());
            }
        }
    }

    #[test]
    fn wildcards_over_resources_and_groups() {
        let table: Vec<(&str, ResourceRule, bool, Vec<&str>)> = vec![
            // Core group, every resource: cluster-scoped, unlistable and excluded ones drop out.
            (
                "core *",
                rr(&[""], &["*"]),
                false,
                vec!["configmaps", "pods", "services"],
            ),
            (
                "core * with secrets",
                rr(&[""], &["*"]),
                true,
                vec!["configmaps", "pods", "secrets", "services"],
            ),
            (
                "any group, one resource",
                rr(&["*"], &["deployments"]),
                false,
                vec!["deployments.apps"],
            ),
            (
                "any group, any resource",
                rr(&["*"], &["*"]),
                false,
                vec![
                    "configmaps",
                    "pods",
                    "services",
                    "deployments.apps",
                    "widgets.example.com",
                ],
            ),
        ];
        for (name, rule, allow_secrets, want) in table {
            let mut inputs = one_rule_in("infra", AccessPolicy::default());
            inputs.allow_secrets = allow_secrets;
            inputs.watch_rules[0].spec.rules = vec![rule];
            let p = plan(&inputs);
            let key = wr("infra", "web");
            assert_eq!(selected(&p, &key), want, "{name}");
            let (st, _, msg) = status(&p, &key, RESOURCES_RESOLVED);
            assert_eq!(st, "True", "{name}: {msg}");
            if !allow_secrets && name.starts_with("core") {
                assert!(
                    msg.contains("events is never written")
                        && msg.contains("secrets is never written"),
                    "{msg}"
                );
            }
        }
    }

    #[test]
    fn cluster_rule_scopes_select_by_scope() {
        let mut inputs = base_inputs();
        inputs.repos[0].spec.access_policy.allow_cluster_rules = true;
        inputs.destinations = vec![dest("infra", "d", "main", "main", "c")];
        inputs.cluster_rules = vec![
            cluster_rule(
                "cluster",
                "infra",
                "d",
                vec![scoped(rr(&["*"], &["*"]), RuleScope::Cluster)],
            ),
            cluster_rule(
                "namespaced",
                "infra",
                "d",
                vec![scoped(rr(&["", "apps"], &["*"]), RuleScope::Namespaced)],
            ),
        ];
        let p = plan(&inputs);
        assert_eq!(
            selected(&p, &RuleKey::Cluster("cluster".into())),
            vec!["namespaces", "clusterroles.rbac.authorization.k8s.io"]
        );
        assert_eq!(
            selected(&p, &RuleKey::Cluster("namespaced".into())),
            vec!["configmaps", "pods", "services", "deployments.apps"]
        );
    }

    #[test]
    fn named_problems_are_reported_with_rule_index_and_fix() {
        let table: Vec<(&str, ResourceRule, &str, &str)> = vec![
            (
                "subresource",
                rr(&["apps"], &["deployments/status"]),
                "ResourcesRejected",
                "rules[0]: deployments/status is a subresource",
            ),
            (
                "unknown resource",
                rr(&["example.com"], &["gizmos"]),
                "ResourcesNotFound",
                "rules[0]: gizmos.example.com is not served",
            ),
            (
                "unknown group",
                rr(&["monitoring.coreos.com"], &["servicemonitors"]),
                "ResourcesNotFound",
                "API group \"monitoring.coreos.com\" is not served",
            ),
            (
                "unknown in any group",
                rr(&["*"], &["gizmos"]),
                "ResourcesNotFound",
                "resource \"gizmos\" is not served by any API group",
            ),
            (
                "cluster-scoped in WatchRule",
                rr(&[""], &["namespaces"]),
                "ResourcesRejected",
                "namespaces is cluster-scoped; a WatchRule only selects",
            ),
            (
                "not listable",
                rr(&[""], &["bindings"]),
                "ResourcesRejected",
                "bindings cannot be listed and watched (verbs: create)",
            ),
            (
                "excluded",
                rr(&[""], &["secrets"]),
                "ResourcesRejected",
                "secrets is never written: Secrets are not written unless allowed",
            ),
            (
                "version not served",
                ResourceRule {
                    api_versions: vec!["v2".into()],
                    ..rr(&["example.com"], &["widgets"])
                },
                "ResourcesNotFound",
                "widgets.example.com is not served in apiVersions [v2] (served: v1, v1beta1)",
            ),
            (
                "scope in WatchRule",
                scoped(rr(&[""], &["configmaps"]), RuleScope::Cluster),
                "ResourcesRejected",
                "scope: Cluster is not allowed in a WatchRule",
            ),
        ];
        for (name, rule, why, text) in table {
            let mut inputs = one_rule_in("infra", AccessPolicy::default());
            inputs.watch_rules[0].spec.rules = vec![rule];
            let p = plan(&inputs);
            let key = wr("infra", "web");
            let (st, reason, msg) = status(&p, &key, RESOURCES_RESOLVED);
            assert_eq!((st, reason), ("False", why), "{name}: {msg}");
            assert!(
                msg.starts_with("WatchRule infra/web: ") && msg.contains(text),
                "{name}: {msg}"
            );
            assert!(!p.rules[&key].ready, "{name}");
            assert_eq!(status(&p, &key, READY).1, why, "{name}");
        }
    }

    #[test]
    fn a_partly_resolved_rule_is_ready_and_says_what_it_skipped() {
        let mut inputs = one_rule_in("infra", AccessPolicy::default());
        inputs.watch_rules[0].spec.rules =
            vec![rr(&["apps"], &["deployments", "deployments/status"])];
        let p = plan(&inputs);
        let key = wr("infra", "web");
        assert!(p.rules[&key].ready);
        let (st, _, msg) = status(&p, &key, RESOURCES_RESOLVED);
        assert_eq!(st, "False");
        assert!(msg.contains("selecting deployments.apps"), "{msg}");
    }

    #[test]
    fn unknown_resource_resolves_when_discovery_gains_it() {
        let mut inputs = one_rule_in("infra", AccessPolicy::default());
        inputs.watch_rules[0].spec.rules =
            vec![rr(&["monitoring.coreos.com"], &["servicemonitors"])];
        let key = wr("infra", "web");
        let before = plan(&inputs);
        assert_eq!(status(&before, &key, READY).1, "ResourcesNotFound");
        assert!(before.watches.is_empty());

        inputs.discovery.insert(ApiResource::new(
            "monitoring.coreos.com",
            "v1",
            "ServiceMonitor",
            "servicemonitors",
            true,
        ));
        let after = plan(&inputs);
        assert_eq!(status(&after, &key, RESOURCES_RESOLVED).0, "True");
        assert!(after.rules[&key].ready);
        let watched: Vec<String> = after
            .watches
            .iter()
            .map(|w| format!("{}/{}/{}", w.group, w.version, w.resource))
            .collect();
        assert_eq!(watched, vec!["monitoring.coreos.com/v1/servicemonitors"]);
    }

    #[test]
    fn explicit_versions_filter_but_the_canonical_version_is_watched() {
        let mut inputs = one_rule_in("infra", AccessPolicy::default());
        inputs.watch_rules[0].spec.rules = vec![ResourceRule {
            api_versions: vec!["v1beta1".into()],
            ..rr(&["example.com"], &["widgets"])
        }];
        let p = plan(&inputs);
        let versions: Vec<&str> = p.watches.iter().map(|w| w.version.as_str()).collect();
        assert_eq!(versions, vec!["v1"]);
    }

    #[test]
    fn missing_scope_and_bad_selectors() {
        let mut inputs = base_inputs();
        inputs.repos[0].spec.access_policy.allow_cluster_rules = true;
        inputs.destinations = vec![dest("infra", "d", "main", "main", "c")];
        let mut bad = cluster_rule(
            "bad-selector",
            "infra",
            "d",
            vec![scoped(rr(&[""], &["configmaps"]), RuleScope::Namespaced)],
        );
        bad.spec.namespace_selector =
            serde_json::from_value(json!({"matchExpressions": [{"key": "a", "operator": "Has"}]}))
                .ok();
        inputs.cluster_rules = vec![
            cluster_rule("no-scope", "infra", "d", vec![rr(&[""], &["configmaps"])]),
            bad,
        ];
        let p = plan(&inputs);
        let (_, why, msg) = status(&p, &RuleKey::Cluster("no-scope".into()), RESOURCES_RESOLVED);
        assert_eq!(why, "ResourcesRejected");
        assert!(msg.contains("scope is required"), "{msg}");
        let (_, why, msg) = status(&p, &RuleKey::Cluster("bad-selector".into()), READY);
        assert_eq!(why, "InvalidSelector");
        assert!(
            msg.contains("spec.namespaceSelector.matchExpressions[0]") && msg.contains("\"Has\""),
            "{msg}"
        );
        assert!(p.watches.is_empty());
    }

    #[test]
    fn missing_destination_is_reported() {
        let mut inputs = one_rule_in("infra", AccessPolicy::default());
        inputs.destinations.clear();
        let p = plan(&inputs);
        let key = wr("infra", "web");
        let (st, why, msg) = status(&p, &key, DESTINATION_RESOLVED);
        assert_eq!((st, why), ("False", "DestinationNotFound"));
        assert_eq!(msg, "WatchRule infra/web: GitDestination infra/d not found");
        assert_eq!(status(&p, &key, ACCESS_ALLOWED).0, "Unknown");
    }

    #[test]
    fn operations_union_and_cover() {
        let ops = Operations::of(&[Operation::Create]).union(Operations::of(&[Operation::Delete]));
        assert!(ops.covers(Operation::Create) && ops.covers(Operation::Delete));
        assert!(!ops.covers(Operation::Update) && ops.covers(Operation::All));
        assert!(!Operations::default().covers(Operation::All));
        assert_eq!(
            Operations::of(&[Operation::All]),
            Operations {
                create: true,
                update: true,
                delete: true
            }
        );
    }
}
