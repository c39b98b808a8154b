//! `plan()`: GitRepoConfigs → GitDestinations → rules, then the shared watch set and the
//! routing table that sends each live object event to its destinations.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use kube::core::Selector;

use super::destinations::{DestinationPlan, plan_destinations};
use super::discovery::Discovery;
use super::repos::{RemoteProblem, RepoPlan, plan_repo};
use super::rules::{
    Context, NamespaceScope, Operations, Origin, ProblemKind, RulePlan, RuleView, compile,
};
use super::selector;
use super::{ObjectKey, RuleKey};
use crate::crd::{ClusterWatchRule, GitDestination, GitRepoConfig, Operation, WatchRule};
use crate::git::url::RepoKey;
use crate::manifest::user_exclude::UserExclusions;

/// Everything the plan is a function of: what the API server holds, plus the results of the
/// I/O checks. Order within the vectors does not matter.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    pub repos: Vec<GitRepoConfig>,
    pub destinations: Vec<GitDestination>,
    pub watch_rules: Vec<WatchRule>,
    pub cluster_rules: Vec<ClusterWatchRule>,
    /// Namespace name → labels (namespace selectors and access policies).
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
    /// The resources the API server serves.
    pub discovery: Discovery,
    /// Per GitRepoConfig (namespace/name): the check of its credentials Secret, `Ok` or why
    /// not. Missing: not checked yet (`CredentialsValid` Unknown).
    pub credentials: BTreeMap<ObjectKey, Result<(), String>>,
    /// Per GitRepoConfig: the last authenticated remote check or push, `Ok` or why not.
    /// Missing: not checked yet (`RepositoryReachable` Unknown). This is the hook the I/O code
    /// fills.
    pub reachability: BTreeMap<ObjectKey, Result<(), RemoteProblem>>,
    /// Per GitRepoConfig with `commit.signingKeyRef`: the key's fingerprint and public key, or
    /// why it cannot be used. Missing: not read yet.
    pub signing: BTreeMap<ObjectKey, Result<String, String>>,
    /// `--allow-secrets`: Secrets may be selected.
    pub allow_secrets: bool,
}

/// One watch the agent runs: a resource in its canonical version, in one namespace or in all
/// (`namespace: None`; always `None` for cluster-scoped resources).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WatchKey {
    pub group: String,
    pub version: String,
    /// Plural resource name.
    pub resource: String,
    pub kind: String,
    pub namespaced: bool,
    pub namespace: Option<String>,
}

impl fmt::Display for WatchKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let gv = if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        };
        match (&self.namespace, self.namespaced) {
            (Some(ns), _) => write!(f, "{gv} {} in namespace {ns}", self.resource),
            (None, true) => write!(f, "{gv} {} in all namespaces", self.resource),
            (None, false) => write!(f, "{gv} {}", self.resource),
        }
    }
}

/// The identity and labels of one live object, as a source saw it. The version is not used
/// for routing: every version is a view of the same object.
#[derive(Clone, Copy, Debug)]
pub struct ObjectRef<'a> {
    pub group: &'a str,
    pub version: &'a str,
    /// Plural resource name.
    pub resource: &'a str,
    pub namespace: Option<&'a str>,
    pub labels: &'a BTreeMap<String, String>,
}

/// One destination an object goes to, and the rule that sends it there (the first by
/// [`RuleKey`] order when several rules do).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub destination: ObjectKey,
    pub rule: RuleKey,
    /// The `spec.exclusions` of every rule that selects the object for this destination
    /// (whatever operations each writes), merged; `None` when none of them has any.
    pub exclusions: Option<Arc<UserExclusions>>,
}

#[derive(Clone, Debug, PartialEq)]
enum EntryScope {
    Cluster,
    Namespaced(NamespaceScope),
}

#[derive(Clone, Debug, PartialEq)]
struct RouteEntry {
    rule: RuleKey,
    destination: ObjectKey,
    operations: Operations,
    scope: EntryScope,
    object_selector: Option<Selector>,
    /// The rule's exclusions; `None` when it has none.
    exclusions: Option<Arc<UserExclusions>>,
}

/// What the agent must do. Deterministic: equal inputs (in any order) give an equal plan.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub repos: BTreeMap<ObjectKey, RepoPlan>,
    pub destinations: BTreeMap<ObjectKey, DestinationPlan>,
    pub rules: BTreeMap<RuleKey, RulePlan>,
    /// Every watch needed, shared by all rules selecting the resource.
    pub watches: BTreeSet<WatchKey>,
    /// group → plural → entries of Ready rules, in rule order.
    routes: BTreeMap<String, BTreeMap<String, Vec<RouteEntry>>>,
    namespaces: BTreeMap<String, BTreeMap<String, String>>,
}

/// Computes the plan. Pure: no I/O, no clock.
///
/// Watch scope: a namespaced resource is watched in one namespace only when every Ready rule
/// selecting it is a WatchRule in that same namespace; as soon as rules select it in two
/// namespaces, or a ClusterWatchRule selects it (all namespaces or a selector, whose matches
/// change with namespace labels), one cluster-wide watch serves everybody and [`Plan::route`]
/// filters. One watch per resource keeps the event stream single (no duplicate events from
/// overlapping watches) and a label change on a namespace needs no watch restart.
pub fn plan(inputs: &Inputs) -> Plan {
    let repos: BTreeMap<ObjectKey, (&GitRepoConfig, RepoPlan)> = inputs
        .repos
        .iter()
        .filter_map(|r| {
            let key = ObjectKey::of(&r.metadata)?;
            let p = plan_repo(
                &key,
                r,
                inputs.credentials.get(&key),
                inputs.reachability.get(&key),
                inputs.signing.get(&key),
            );
            Some((key, (r, p)))
        })
        .collect();
    let mut destinations = plan_destinations(&inputs.destinations, &repos, &inputs.namespaces);

    let mut rules = BTreeMap::new();
    {
        let ctx = Context {
            discovery: &inputs.discovery,
            destinations: &destinations,
            repos: &repos,
            namespaces: &inputs.namespaces,
            allow_secrets: inputs.allow_secrets,
        };
        for rule in &inputs.watch_rules {
            let Some(key) = ObjectKey::of(&rule.metadata) else {
                continue;
            };
            let view = RuleView {
                destination: ObjectKey::new(&key.namespace, &rule.spec.destination_ref.name),
                generation: rule.metadata.generation,
                origin: Origin::Namespace(&key.namespace),
                object_selector: rule.spec.object_selector.as_ref(),
                rules: &rule.spec.rules,
                exclusions: rule.spec.exclusions.as_ref(),
                key: RuleKey::Namespaced(key.clone()),
            };
            rules.insert(view.key.clone(), compile(view, &ctx));
        }
        for rule in &inputs.cluster_rules {
            let Some(name) = rule.metadata.name.clone() else {
                continue;
            };
            let dest = &rule.spec.destination_ref;
            let view = RuleView {
                key: RuleKey::Cluster(name),
                generation: rule.metadata.generation,
                destination: ObjectKey::new(&dest.namespace, &dest.name),
                origin: Origin::Cluster {
                    namespace_selector: rule.spec.namespace_selector.as_ref(),
                },
                object_selector: rule.spec.object_selector.as_ref(),
                rules: &rule.spec.rules,
                exclusions: rule.spec.exclusions.as_ref(),
            };
            rules.insert(view.key.clone(), compile(view, &ctx));
        }
    }

    let mut repo_plans: BTreeMap<ObjectKey, RepoPlan> =
        repos.into_iter().map(|(k, (_, p))| (k, p)).collect();
    for (key, dest) in &destinations {
        if let Some(repo) = dest.repo.as_ref().and_then(|r| repo_plans.get_mut(r)) {
            repo.destinations.insert(key.clone());
        }
    }
    for (key, rule) in rules.iter().filter(|(_, r)| r.ready) {
        if let Some(dest) = destinations.get_mut(&rule.destination) {
            dest.rules.insert(key.clone());
        }
    }

    Plan {
        watches: watch_set(&rules),
        routes: route_table(&rules),
        repos: repo_plans,
        destinations,
        rules,
        namespaces: inputs.namespaces.clone(),
    }
}

/// Per watched resource: its kind and scope, and the one namespace every rule selects it in
/// (`None` once two namespaces or a cluster rule want it).
struct Wanted<'a> {
    kind: &'a str,
    namespaced: bool,
    single: Option<&'a str>,
}

/// See [`plan`] for the scope choice.
fn watch_set(rules: &BTreeMap<RuleKey, RulePlan>) -> BTreeSet<WatchKey> {
    let mut wanted: BTreeMap<(&str, &str, &str), Wanted<'_>> = BTreeMap::new();
    for rule in rules.values().filter(|r| r.ready) {
        for sel in rule.selected.values() {
            let api = &sel.api;
            let single = match (&rule.namespaces, api.namespaced) {
                (Some(NamespaceScope::Only(ns)), true) => Some(ns.as_str()),
                _ => None,
            };
            wanted
                .entry((&api.group, &api.version, &api.plural))
                .and_modify(|w| {
                    if w.single != single {
                        w.single = None;
                    }
                })
                .or_insert(Wanted {
                    kind: &api.kind,
                    namespaced: api.namespaced,
                    single,
                });
        }
    }
    wanted
        .into_iter()
        .map(|((group, version, resource), w)| WatchKey {
            group: group.to_string(),
            version: version.to_string(),
            resource: resource.to_string(),
            kind: w.kind.to_string(),
            namespaced: w.namespaced,
            namespace: w.single.map(str::to_string),
        })
        .collect()
}

fn route_table(
    rules: &BTreeMap<RuleKey, RulePlan>,
) -> BTreeMap<String, BTreeMap<String, Vec<RouteEntry>>> {
    let mut table: BTreeMap<String, BTreeMap<String, Vec<RouteEntry>>> = BTreeMap::new();
    for (key, rule) in rules.iter().filter(|(_, r)| r.ready) {
        let Some(namespaces) = &rule.namespaces else {
            continue;
        };
        for (gr, sel) in &rule.selected {
            table
                .entry(gr.group.clone())
                .or_default()
                .entry(gr.resource.clone())
                .or_default()
                .push(RouteEntry {
                    rule: key.clone(),
                    destination: rule.destination.clone(),
                    operations: sel.operations,
                    scope: if sel.api.namespaced {
                        EntryScope::Namespaced(namespaces.clone())
                    } else {
                        EntryScope::Cluster
                    },
                    object_selector: rule.object_selector.clone(),
                    exclusions: Some(rule.exclusions.clone()).filter(|e| !e.is_empty()),
                });
        }
    }
    table
}

impl Plan {
    /// The destinations one object event goes to, one [`Route`] per destination, ordered by
    /// destination. More than one entry means the object is written to several destinations.
    /// `Operation::All` matches a rule with any operation (for initial listings).
    pub fn route(&self, object: &ObjectRef<'_>, operation: Operation) -> Vec<Route> {
        let Some(entries) = self
            .routes
            .get(object.group)
            .and_then(|by_resource| by_resource.get(object.resource))
        else {
            return Vec::new();
        };
        let mut out: BTreeMap<&ObjectKey, &RuleKey> = BTreeMap::new();
        // The exclusions of every rule selecting the object, per destination.
        let mut exclusions: BTreeMap<&ObjectKey, Vec<&Arc<UserExclusions>>> = BTreeMap::new();
        for entry in entries {
            if entry.exclusions.is_none() && !entry.operations.covers(operation) {
                continue;
            }
            // A cluster-scoped object may come spelled `namespace: ""`: that is no namespace.
            let namespace = object.namespace.filter(|ns| !ns.is_empty());
            let in_scope = match (&entry.scope, namespace) {
                (EntryScope::Cluster, None) => true,
                (EntryScope::Namespaced(scope), Some(ns)) => scope.admits(ns, &self.namespaces),
                _ => false,
            };
            if !in_scope {
                continue;
            }
            if let Some(sel) = &entry.object_selector
                && !selector::matches(sel, object.labels)
            {
                continue;
            }
            if let Some(e) = &entry.exclusions {
                let of = exclusions.entry(&entry.destination).or_default();
                if !of.iter().any(|known| Arc::ptr_eq(known, e)) {
                    of.push(e);
                }
            }
            if entry.operations.covers(operation) {
                out.entry(&entry.destination).or_insert(&entry.rule);
            }
        }
        out.into_iter()
            .map(|(destination, rule)| Route {
                destination: destination.clone(),
                rule: rule.clone(),
                exclusions: match exclusions.remove(destination).as_deref() {
                    None | Some([]) => None,
                    Some([one]) => Some(Arc::clone(one)),
                    Some(many) => Some(Arc::new(UserExclusions::merged(
                        many.iter().map(|e| e.as_ref()),
                    ))),
                },
            })
            .collect()
    }

    /// The workers to hold: each repository + branch with the Ready destinations using it.
    pub fn workers(&self) -> BTreeMap<RepoKey, BTreeSet<ObjectKey>> {
        let mut out: BTreeMap<RepoKey, BTreeSet<ObjectKey>> = BTreeMap::new();
        for (key, dest) in &self.destinations {
            if let Some(resolved) = dest.resolved.as_ref().filter(|_| dest.ready) {
                out.entry(resolved.repo_key.clone())
                    .or_default()
                    .insert(key.clone());
            }
        }
        out
    }

    /// The watches whose objects a destination's Ready rules select (what its initial
    /// reconcile must list completely before it may remove files).
    pub fn watches_for(&self, destination: &ObjectKey) -> BTreeSet<WatchKey> {
        let Some(dest) = self.destinations.get(destination) else {
            return BTreeSet::new();
        };
        let wanted: BTreeSet<(&str, &str)> = dest
            .rules
            .iter()
            .filter_map(|k| self.rules.get(k))
            .flat_map(|r| r.selected.keys())
            .map(|gr| (gr.group.as_str(), gr.resource.as_str()))
            .collect();
        self.watches
            .iter()
            .filter(|w| wanted.contains(&(w.group.as_str(), w.resource.as_str())))
            .cloned()
            .collect()
    }
}

/// What changed between two plans, for the controllers to apply: stop before start, release
/// before acquire (a destination whose repository URL changed appears in both).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delta {
    pub stop_watches: BTreeSet<WatchKey>,
    pub start_watches: BTreeSet<WatchKey>,
    /// Ready destinations of the previous plan that no longer hold this worker, or whose path
    /// template or prune policy changed (released, then acquired again).
    pub release: BTreeMap<ObjectKey, RepoKey>,
    /// Ready destinations of this plan that did not hold this worker before (or were
    /// reconfigured).
    pub acquire: BTreeMap<ObjectKey, RepoKey>,
}

impl Delta {
    pub fn is_empty(&self) -> bool {
        self.stop_watches.is_empty()
            && self.start_watches.is_empty()
            && self.release.is_empty()
            && self.acquire.is_empty()
    }
}

impl Plan {
    /// Ready destinations that are not suspended, and the worker each holds.
    pub fn holders(&self) -> BTreeMap<ObjectKey, RepoKey> {
        self.destinations
            .iter()
            .filter(|(_, d)| d.ready)
            .filter_map(|(k, d)| {
                let resolved = d.resolved.as_ref().filter(|r| !r.suspended)?;
                Some((k.clone(), resolved.repo_key.clone()))
            })
            .collect()
    }

    /// Why some resource types a destination's rules name are not watched (the resource is not
    /// served, not listable, has the wrong scope...), one line per problem naming the rule.
    /// Their files are never pruned, and the reconcile says so. Excluded resources (Secrets,
    /// events) are no problem: they are simply never written.
    pub fn unresolved_types(&self, destination: &ObjectKey) -> Vec<String> {
        let Some(plan) = self.destinations.get(destination) else {
            return Vec::new();
        };
        plan.rules
            .iter()
            .filter_map(|r| self.rules.get(r).map(|p| (r, p)))
            .flat_map(|(r, p)| {
                p.problems
                    .iter()
                    .filter(|problem| problem.explicit && problem.kind != ProblemKind::Excluded)
                    .map(move |problem| format!("{r}: {}", problem.message))
            })
            .collect()
    }

    /// What to stop, start, release and acquire to go from `previous` to this plan.
    pub fn delta_from(&self, previous: &Plan) -> Delta {
        let (old, new) = (previous.holders(), self.holders());
        let moved = |from: &BTreeMap<ObjectKey, RepoKey>, to: &BTreeMap<ObjectKey, RepoKey>| {
            from.iter()
                .filter(|(k, repo)| to.get(*k) != Some(*repo))
                .map(|(k, repo)| (k.clone(), repo.clone()))
                .collect()
        };
        let mut release: BTreeMap<ObjectKey, RepoKey> = moved(&old, &new);
        let mut acquire: BTreeMap<ObjectKey, RepoKey> = moved(&new, &old);
        // Same worker, but the layout, the prune policy, the mode, the encryption or the
        // exclusions changed: started anew (its task holds them).
        for (key, repo) in &new {
            let settings = |p: &Plan| {
                p.destinations
                    .get(key)
                    .and_then(|d| d.resolved.as_ref())
                    .map(|r| {
                        (
                            (r.path_template.clone(), r.prune, r.mode),
                            (r.placements.clone(), r.resync),
                            (r.age_recipients.clone(), r.age_identity.clone()),
                            r.exclusions.clone(),
                        )
                    })
            };
            if old.get(key) == Some(repo) && settings(previous) != settings(self) {
                release.insert(key.clone(), repo.clone());
                acquire.insert(key.clone(), repo.clone());
            }
        }
        Delta {
            stop_watches: previous
                .watches
                .difference(&self.watches)
                .cloned()
                .collect(),
            start_watches: self
                .watches
                .difference(&previous.watches)
                .cloned()
                .collect(),
            release,
            acquire,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::conditions::{DESTINATION_RESOLVED, READY};
    use super::super::testkit::*;
    use super::*;
    use crate::crd::{NamespacedRulesMode, ResourceRule, RuleScope};
    use proptest::prelude::*;
    use serde_json::json;

    fn watch_strings(p: &Plan) -> Vec<String> {
        p.watches.iter().map(ToString::to_string).collect()
    }

    fn obj<'a>(
        group: &'a str,
        resource: &'a str,
        namespace: Option<&'a str>,
        labels: &'a BTreeMap<String, String>,
    ) -> ObjectRef<'a> {
        ObjectRef {
            group,
            version: "v1",
            resource,
            namespace,
            labels,
        }
    }

    fn dests(routes: &[Route]) -> Vec<String> {
        routes.iter().map(|r| r.destination.to_string()).collect()
    }

    /// Repo infra/main admitting every namespace and cluster rules; destinations `<ns>/d` for
    /// each namespace given.
    fn open_inputs(namespaces: &[&str]) -> Inputs {
        let mut inputs = base_inputs();
        inputs.repos[0].spec.access_policy.namespaced_rules.mode =
            NamespacedRulesMode::AllNamespaces;
        inputs.repos[0].spec.access_policy.allow_cluster_rules = true;
        inputs.destinations = namespaces
            .iter()
            .map(|ns| with_repo_ns(dest(ns, "d", "main", "main", ns), "infra"))
            .collect();
        inputs
    }

    #[test]
    fn watch_sharing_and_scope() {
        let cm = || vec![rr(&[""], &["configmaps"])];
        type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, bool, Vec<&'a str>);
        let table: Vec<Case<'_>> = vec![
            (
                "one rule: namespace watch",
                vec![("a", "r1")],
                false,
                vec!["v1 configmaps in namespace a"],
            ),
            (
                "two rules in one namespace",
                vec![("a", "r1"), ("a", "r2")],
                false,
                vec!["v1 configmaps in namespace a"],
            ),
            (
                "rules in a and b: one cluster-wide watch",
                vec![("a", "r1"), ("b", "r2")],
                false,
                vec!["v1 configmaps in all namespaces"],
            ),
            (
                "a rule in a plus a cluster rule",
                vec![("a", "r1")],
                true,
                vec!["v1 configmaps in all namespaces"],
            ),
        ];
        for (name, watch_rules, with_cluster_rule, want) in table {
            let mut inputs = open_inputs(&["a", "b", "infra"]);
            inputs.watch_rules = watch_rules
                .iter()
                .map(|(ns, n)| watch_rule(ns, n, "d", cm()))
                .collect();
            if with_cluster_rule {
                let mut c = cluster_rule(
                    "c",
                    "infra",
                    "d",
                    vec![scoped(rr(&[""], &["configmaps"]), RuleScope::Namespaced)],
                );
                c.spec.namespace_selector =
                    serde_json::from_value(json!({"matchLabels": {"env": "prod"}})).ok();
                inputs.cluster_rules = vec![c];
            }
            assert_eq!(watch_strings(&plan(&inputs)), want, "{name}");
        }
        // Cluster-scoped resources are always watched cluster-wide.
        let mut inputs = open_inputs(&["infra"]);
        inputs.cluster_rules = vec![cluster_rule(
            "c",
            "infra",
            "d",
            vec![scoped(rr(&[""], &["namespaces"]), RuleScope::Cluster)],
        )];
        assert_eq!(watch_strings(&plan(&inputs)), vec!["v1 namespaces"]);
        // A cluster-scoped object routes whether its namespace is missing or spelled "" (as
        // server-side apply may leave it); it never routes through a namespaced rule.
        let p = plan(&inputs);
        let none = BTreeMap::new();
        for namespace in [None, Some("")] {
            assert_eq!(
                dests(&p.route(&obj("", "namespaces", namespace, &none), Operation::Create)),
                vec!["infra/d"],
                "{namespace:?}"
            );
        }
    }

    /// A rule naming an excluded resource (Secrets) and one the server does not serve: only
    /// the unserved one keeps its type from being pruned, and the line names the rule and it.
    #[test]
    fn unresolved_types_name_the_unserved_resource_not_the_excluded_one() {
        let mut inputs = open_inputs(&["a"]);
        inputs.watch_rules = vec![watch_rule(
            "a",
            "apps",
            "d",
            vec![
                rr(&[""], &["configmaps", "secrets"]),
                rr(&["example.org"], &["gadgets"]),
            ],
        )];
        let p = plan(&inputs);
        let lines = p.unresolved_types(&ObjectKey::new("a", "d"));
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].contains("WatchRule a/apps") && lines[0].contains("gadgets.example.org"),
            "{lines:?}"
        );
        assert!(p.unresolved_types(&ObjectKey::new("a", "nope")).is_empty());
    }

    #[test]
    fn routing_by_namespace_object_selector_and_operation() {
        let mut inputs = open_inputs(&["a", "b", "infra"]);
        let mut labelled = watch_rule("a", "web", "d", vec![rr(&[""], &["configmaps"])]);
        labelled.spec.object_selector =
            serde_json::from_value(json!({"matchLabels": {"app": "web"}})).ok();
        let deletes_only = watch_rule(
            "b",
            "gone",
            "d",
            vec![ResourceRule {
                operations: vec![Operation::Delete],
                ..rr(&[""], &["configmaps"])
            }],
        );
        let mut prod = cluster_rule(
            "prod",
            "infra",
            "d",
            vec![
                scoped(rr(&[""], &["configmaps"]), RuleScope::Namespaced),
                scoped(rr(&[""], &["namespaces"]), RuleScope::Cluster),
            ],
        );
        prod.spec.namespace_selector =
            serde_json::from_value(json!({"matchLabels": {"env": "prod"}})).ok();
        inputs.watch_rules = vec![labelled, deletes_only];
        inputs.cluster_rules = vec![prod];
        let p = plan(&inputs);

        let web = labels(&[("app", "web")]);
        let other = labels(&[("app", "db")]);
        let table: Vec<(&str, ObjectRef<'_>, Operation, Vec<&str>)> = vec![
            // namespace a has env=prod: the WatchRule and the ClusterWatchRule both match.
            (
                "a, matching labels",
                obj("", "configmaps", Some("a"), &web),
                Operation::Update,
                vec!["a/d", "infra/d"],
            ),
            (
                "a, other labels",
                obj("", "configmaps", Some("a"), &other),
                Operation::Update,
                vec!["infra/d"],
            ),
            // namespace b has env=dev: only its delete-only rule.
            (
                "b, update",
                obj("", "configmaps", Some("b"), &other),
                Operation::Update,
                vec![],
            ),
            (
                "b, delete",
                obj("", "configmaps", Some("b"), &other),
                Operation::Delete,
                vec!["b/d"],
            ),
            (
                "b, listing",
                obj("", "configmaps", Some("b"), &other),
                Operation::All,
                vec!["b/d"],
            ),
            (
                "unknown namespace",
                obj("", "configmaps", Some("zzz"), &web),
                Operation::Create,
                vec![],
            ),
            (
                "cluster-scoped",
                obj("", "namespaces", None, &other),
                Operation::Create,
                vec!["infra/d"],
            ),
            (
                "cluster-scoped with a namespace is not routed",
                obj("", "namespaces", Some("a"), &other),
                Operation::Create,
                vec![],
            ),
            (
                "unselected resource",
                obj("apps", "deployments", Some("a"), &web),
                Operation::Create,
                vec![],
            ),
        ];
        for (name, o, op, want) in table {
            assert_eq!(dests(&p.route(&o, op)), want, "{name}");
        }
        let routes = p.route(&obj("", "configmaps", Some("a"), &web), Operation::Create);
        assert_eq!(
            routes[0].rule,
            RuleKey::Namespaced(ObjectKey::new("a", "web"))
        );
        assert_eq!(routes[1].rule, RuleKey::Cluster("prod".into()));
    }

    #[test]
    fn a_route_carries_the_exclusions_of_every_rule_selecting_the_object() {
        let mut inputs = open_inputs(&["shop"]);
        let mut deletes = rr(&[""], &["configmaps"]);
        deletes.operations = vec![Operation::Delete];
        let mut excluding = watch_rule("shop", "deletes", "d", vec![deletes]);
        excluding.spec.exclusions = Some(
            serde_json::from_value(json!({"fields": [{"jsonPointers": ["/data/token"]}]}))
                .expect("exclusions"),
        );
        let mut quiet = watch_rule("shop", "quiet", "d", vec![rr(&[""], &["configmaps"])]);
        quiet.spec.exclusions = Some(
            serde_json::from_value(json!({"objects": [{"name": "tmp-*"}]})).expect("exclusions"),
        );
        let plain = watch_rule("shop", "web", "d", vec![rr(&[""], &["configmaps"])]);
        inputs.watch_rules = vec![plain.clone()];
        let none = BTreeMap::new();
        let cm = obj("", "configmaps", Some("shop"), &none);
        assert_eq!(
            plan(&inputs).route(&cm, Operation::Create)[0].exclusions,
            None
        );

        inputs.watch_rules = vec![plain, excluding, quiet];
        let p = plan(&inputs);
        let routes = p.route(&cm, Operation::Update);
        assert_eq!(dests(&routes), vec!["shop/d"]);
        // The delete-only rule does not write updates, but it selects the object: its
        // exclusions apply as well.
        let e = routes[0].exclusions.as_ref().expect("exclusions");
        let ids: Vec<&str> = e
            .objects
            .iter()
            .map(|r| r.id.as_str())
            .chain(e.fields.iter().map(|r| r.id.as_str()))
            .collect();
        assert_eq!(
            ids,
            [
                "WatchRule shop/quiet spec.exclusions.objects[0]",
                "WatchRule shop/deletes spec.exclusions.fields[0]"
            ]
        );

        // Invalid exclusions fail the rule: it selects nothing rather than leak.
        let mut broken = watch_rule("shop", "broken", "d", vec![rr(&[""], &["configmaps"])]);
        broken.spec.exclusions = Some(
            serde_json::from_value(json!({"fields": [{"jsonPointers": ["data"]}]}))
                .expect("exclusions"),
        );
        inputs.watch_rules = vec![broken];
        let p = plan(&inputs);
        let rule = &p.rules[&RuleKey::Namespaced(ObjectKey::new("shop", "broken"))];
        assert!(!rule.ready);
        assert!(
            rule.conditions
                .iter()
                .any(|c| c.reason == "InvalidExclusions" && c.message.contains("jsonPointers")),
            "{:?}",
            rule.conditions
        );
        assert!(p.route(&cm, Operation::Create).is_empty());
    }

    #[test]
    fn tightening_a_policy_stops_routes_and_watches_loosening_restarts_them() {
        let mut inputs = open_inputs(&["shop"]);
        inputs.watch_rules = vec![watch_rule(
            "shop",
            "web",
            "d",
            vec![rr(&[""], &["configmaps"])],
        )];
        let none = BTreeMap::new();
        let cm = obj("", "configmaps", Some("shop"), &none);
        let key = RuleKey::Namespaced(ObjectKey::new("shop", "web"));

        let open = plan(&inputs);
        assert_eq!(dests(&open.route(&cm, Operation::Create)), vec!["shop/d"]);
        assert_eq!(
            watch_strings(&open),
            vec!["v1 configmaps in namespace shop"]
        );
        assert_eq!(open.workers().len(), 1);

        inputs.repos[0].spec.access_policy.namespaced_rules.mode =
            NamespacedRulesMode::SameNamespace;
        let tight = plan(&inputs);
        assert!(tight.route(&cm, Operation::Create).is_empty());
        assert!(tight.watches.is_empty());
        assert!(tight.workers().is_empty());
        let ready = &tight.rules[&key].conditions[0];
        assert_eq!(ready.type_, READY);
        assert!(
            ready
                .message
                .contains("SameNamespace admits only namespace infra"),
            "{}",
            ready.message
        );

        inputs.repos[0].spec.access_policy.namespaced_rules.mode =
            NamespacedRulesMode::AllNamespaces;
        assert_eq!(plan(&inputs), open);
    }

    #[test]
    fn a_deleted_destination_removes_its_rules_routes() {
        let mut inputs = open_inputs(&["a", "b"]);
        inputs.watch_rules = vec![
            watch_rule("a", "r", "d", vec![rr(&[""], &["configmaps"])]),
            watch_rule("b", "r", "d", vec![rr(&[""], &["configmaps"])]),
        ];
        inputs
            .destinations
            .retain(|d| d.metadata.namespace.as_deref() != Some("b"));
        let p = plan(&inputs);
        let none = BTreeMap::new();
        assert!(
            p.route(&obj("", "configmaps", Some("b"), &none), Operation::Create)
                .is_empty()
        );
        assert_eq!(
            dests(&p.route(&obj("", "configmaps", Some("a"), &none), Operation::Create)),
            vec!["a/d"]
        );
        assert_eq!(watch_strings(&p), vec!["v1 configmaps in namespace a"]);
        let b = &p.rules[&RuleKey::Namespaced(ObjectKey::new("b", "r"))];
        let resolved = b
            .conditions
            .iter()
            .find(|c| c.type_ == DESTINATION_RESOLVED);
        assert_eq!(
            resolved.map(|c| (c.status.as_str(), c.reason.as_str())),
            Some(("False", "DestinationNotFound"))
        );
        assert_eq!(p.destinations[&ObjectKey::new("a", "d")].rules.len(), 1);
    }

    #[test]
    fn two_spellings_share_one_worker() {
        let mut inputs = open_inputs(&[]);
        inputs
            .repos
            .push(repo("infra", "alias", "https://GITHUB.com/org/repo/"));
        inputs.repos[0].spec.url = "https://github.com/org/repo.git".into();
        inputs.destinations = vec![
            dest("infra", "one", "main", "main", "one"),
            dest("infra", "two", "alias", "main", "two"),
        ];
        let p = plan(&inputs);
        let workers: Vec<(String, usize)> = p
            .workers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.len()))
            .collect();
        assert_eq!(
            workers,
            vec![("https://github.com/org/repo#main".to_string(), 2)]
        );
        assert_eq!(
            p.repos[&ObjectKey::new("infra", "alias")]
                .destinations
                .len(),
            1
        );
    }

    #[test]
    fn watches_for_a_destination() {
        let mut inputs = open_inputs(&["a", "b"]);
        inputs.watch_rules = vec![
            watch_rule(
                "a",
                "r",
                "d",
                vec![rr(&[""], &["configmaps"]), rr(&["apps"], &["deployments"])],
            ),
            watch_rule("b", "r", "d", vec![rr(&[""], &["configmaps"])]),
        ];
        let p = plan(&inputs);
        let for_b: Vec<String> = p
            .watches_for(&ObjectKey::new("b", "d"))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(for_b, vec!["v1 configmaps in all namespaces"]);
        assert_eq!(p.watches_for(&ObjectKey::new("a", "d")).len(), 2);
    }

    #[test]
    fn delta_between_plans() {
        let mut inputs = open_inputs(&["a", "b"]);
        inputs.watch_rules = vec![watch_rule("a", "r", "d", vec![rr(&[""], &["configmaps"])])];
        let first = plan(&inputs);
        let from_nothing = first.delta_from(&Plan::default());
        assert_eq!(from_nothing.acquire.len(), 2);
        assert_eq!(from_nothing.start_watches.len(), 1);
        assert!(first.delta_from(&first).is_empty());

        // A second namespace widens the watch: the namespace watch stops, a cluster-wide starts.
        inputs
            .watch_rules
            .push(watch_rule("b", "r", "d", vec![rr(&[""], &["configmaps"])]));
        let second = plan(&inputs);
        let d = second.delta_from(&first);
        let show = |w: &BTreeSet<WatchKey>| w.iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(show(&d.stop_watches), vec!["v1 configmaps in namespace a"]);
        assert_eq!(
            show(&d.start_watches),
            vec!["v1 configmaps in all namespaces"]
        );
        assert!(d.acquire.is_empty() && d.release.is_empty());

        // A destination's path template or prune policy changes: it is started anew.
        let mut reconfigured = inputs.clone();
        reconfigured.destinations[0].spec.prune = crate::crd::PrunePolicy::Never;
        let d = plan(&reconfigured).delta_from(&second);
        let key = ObjectKey::new("a", "d");
        assert!(
            d.release.contains_key(&key) && d.acquire.contains_key(&key),
            "{d:?}"
        );
        assert_eq!((d.release.len(), d.acquire.len()), (1, 1));

        // The repository moves: every destination releases the old worker and acquires the new.
        inputs.repos[0].spec.url = "https://example.com/other.git".into();
        let d = plan(&inputs).delta_from(&second);
        assert_eq!(d.release.len(), 2);
        assert!(
            d.acquire
                .values()
                .all(|k| k.url.as_str() == "https://example.com/other")
        );

        // Teardown: nothing left to hold.
        let d = Plan::default().delta_from(&second);
        assert_eq!((d.release.len(), d.stop_watches.len()), (2, 1));
        assert!(d.acquire.is_empty() && d.start_watches.is_empty());
    }

    #[test]
    fn nothing_in_nothing_out() {
        let p = plan(&Inputs::default());
        assert_eq!(p, Plan::default());
        assert!(p.workers().is_empty() && p.watches.is_empty());
    }

    /// A scenario with ties and overlaps: destinations on two spellings of one repository,
    /// some sharing creation times, rules of both kinds.
    fn scenario(folders: &[(usize, usize, i64)], rule_ns: &[usize]) -> Inputs {
        const NS: [&str; 3] = ["a", "b", "infra"];
        const FOLDERS: [&str; 4] = ["apps", "apps/prod", "apps2", "x"];
        let mut inputs = open_inputs(&[]);
        inputs
            .repos
            .push(repo("infra", "alias", "git@github.com:org/repo.git"));
        inputs.repos[0].spec.url = "ssh://git@github.com/org/repo".into();
        inputs.destinations = folders
            .iter()
            .enumerate()
            .map(|(i, (ns, f, t))| {
                let repo_name = if i % 2 == 0 { "main" } else { "alias" };
                created(
                    with_repo_ns(
                        dest(
                            NS[*ns % 3],
                            &format!("d{}", i % 3),
                            repo_name,
                            "main",
                            FOLDERS[*f % 4],
                        ),
                        "infra",
                    ),
                    *t,
                )
            })
            .collect();
        // Keys must be unique, as in the API server.
        let mut seen = BTreeSet::new();
        inputs
            .destinations
            .retain(|d| seen.insert(ObjectKey::of(&d.metadata)));
        inputs.watch_rules = rule_ns
            .iter()
            .enumerate()
            .map(|(i, ns)| {
                watch_rule(
                    NS[*ns % 3],
                    &format!("r{i}"),
                    "d0",
                    vec![rr(&[""], &["configmaps"])],
                )
            })
            .collect();
        inputs.cluster_rules = vec![
            cluster_rule(
                "c1",
                "infra",
                "d1",
                vec![scoped(rr(&["*"], &["*"]), RuleScope::Cluster)],
            ),
            cluster_rule(
                "c0",
                "a",
                "d0",
                vec![scoped(rr(&["apps"], &["*"]), RuleScope::Namespaced)],
            ),
        ];
        inputs
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn plan_is_deterministic_under_input_order(
            folders in prop::collection::vec((0usize..3, 0usize..4, 0i64..3), 0..8),
            rule_ns in prop::collection::vec(0usize..3, 0..5),
            seed in any::<u64>(),
        ) {
            let inputs = scenario(&folders, &rule_ns);
            let mut shuffled = inputs.clone();
            shuffle(&mut shuffled.repos, seed);
            shuffle(&mut shuffled.destinations, seed.rotate_left(7));
            shuffle(&mut shuffled.watch_rules, seed.rotate_left(13));
            shuffle(&mut shuffled.cluster_rules, seed.rotate_left(19));
            prop_assert_eq!(plan(&shuffled), plan(&inputs));
        }
    }

    /// A small deterministic Fisher–Yates shuffle driven by `seed`.
    fn shuffle<T>(items: &mut [T], mut seed: u64) {
        for i in (1..items.len()).rev() {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let j = usize::try_from((seed >> 33) % (i as u64 + 1)).unwrap_or(0);
            items.swap(i, j);
        }
    }
}
