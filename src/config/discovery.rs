//! The resource catalogue rules are resolved against: what the API server serves (group,
//! version, kind, plural, scope, verbs) and each group's preferred version, from discovery.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use kube::core::Version;

/// Verbs a resource needs so the agent can list and watch it.
pub const REQUIRED_VERBS: [&str; 2] = ["list", "watch"];

/// One resource the API server serves in one version.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApiResource {
    /// API group; `""` for the core group.
    pub group: String,
    pub version: String,
    pub kind: String,
    /// Plural resource name (`deployments`); never a subresource.
    pub plural: String,
    pub namespaced: bool,
    /// Verbs the server supports (`get`, `list`, `watch`, ...).
    pub verbs: BTreeSet<String>,
}

impl ApiResource {
    /// A resource with the usual verbs of a regular resource (get, list, watch, create,
    /// update, patch, delete).
    pub fn new(group: &str, version: &str, kind: &str, plural: &str, namespaced: bool) -> Self {
        Self {
            group: group.to_string(),
            version: version.to_string(),
            kind: kind.to_string(),
            plural: plural.to_string(),
            namespaced,
            verbs: [
                "get", "list", "watch", "create", "update", "patch", "delete",
            ]
            .into_iter()
            .map(String::from)
            .collect(),
        }
    }

    /// The same resource with exactly these verbs.
    pub fn with_verbs(mut self, verbs: &[&str]) -> Self {
        self.verbs = verbs.iter().map(|v| v.to_string()).collect();
        self
    }

    /// True when the agent can list and watch it.
    pub fn can_list_and_watch(&self) -> bool {
        REQUIRED_VERBS.iter().all(|v| self.verbs.contains(*v))
    }

    /// `apps/v1`, or `v1` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Group {
    preferred: Option<String>,
    /// version → plural → resource
    versions: BTreeMap<String, BTreeMap<String, ApiResource>>,
}

/// What the API server serves. Built by I/O code from discovery (see the `From<&kube::Discovery>`
/// impl) or by hand in tests; subresources (`deployments/status`) are never part of it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Discovery {
    groups: BTreeMap<String, Group>,
}

impl Discovery {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a resource. Subresources (a plural with `/`) are ignored: they are
    /// not objects of their own and are never watched.
    pub fn insert(&mut self, resource: ApiResource) {
        if resource.plural.contains('/') || resource.plural.is_empty() {
            return;
        }
        self.groups
            .entry(resource.group.clone())
            .or_default()
            .versions
            .entry(resource.version.clone())
            .or_default()
            .insert(resource.plural.clone(), resource);
    }

    /// Records the version the server prefers for `group` (discovery's `preferredVersion`).
    pub fn set_preferred_version(&mut self, group: &str, version: &str) {
        self.groups.entry(group.to_string()).or_default().preferred = Some(version.to_string());
    }

    /// Builder form of [`Discovery::insert`].
    pub fn with(mut self, resource: ApiResource) -> Self {
        self.insert(resource);
        self
    }

    /// Builder form of [`Discovery::set_preferred_version`].
    pub fn with_preferred(mut self, group: &str, version: &str) -> Self {
        self.set_preferred_version(group, version);
        self
    }

    /// Every group that serves at least one resource, in name order.
    pub fn groups(&self) -> impl Iterator<Item = &str> {
        self.groups
            .iter()
            .filter(|(_, g)| g.versions.values().any(|r| !r.is_empty()))
            .map(|(name, _)| name.as_str())
    }

    /// True when `group` serves at least one resource.
    pub fn has_group(&self, group: &str) -> bool {
        self.groups
            .get(group)
            .is_some_and(|g| g.versions.values().any(|r| !r.is_empty()))
    }

    /// The group's versions, most preferred first: the server's preferred version, then by
    /// Kubernetes version priority (`v2` > `v1` > `v1beta2` > `v1alpha1` > others).
    pub fn versions(&self, group: &str) -> Vec<&str> {
        let Some(g) = self.groups.get(group) else {
            return Vec::new();
        };
        let mut versions: Vec<&str> = g.versions.keys().map(String::as_str).collect();
        versions.sort_by_cached_key(|v| {
            (
                Some(*v) != g.preferred.as_deref(),
                Reverse(Version::parse(v).priority()),
            )
        });
        versions
    }

    /// The group's preferred version: the server's choice if it serves it, else the
    /// highest-priority version.
    pub fn preferred_version(&self, group: &str) -> Option<&str> {
        self.versions(group).into_iter().next()
    }

    /// One resource in one version.
    pub fn resource(&self, group: &str, version: &str, plural: &str) -> Option<&ApiResource> {
        self.groups.get(group)?.versions.get(version)?.get(plural)
    }

    /// Every version serving `group`/`plural`, most preferred first.
    pub fn served(&self, group: &str, plural: &str) -> Vec<&ApiResource> {
        self.versions(group)
            .into_iter()
            .filter_map(|v| self.resource(group, v, plural))
            .collect()
    }

    /// The version the agent watches `group`/`plural` in: the most preferred one serving it.
    /// Versions are views of the same objects, so each object is watched and written once.
    pub fn canonical(&self, group: &str, plural: &str) -> Option<&ApiResource> {
        self.served(group, plural).into_iter().next()
    }

    /// The plural names served in `group`, in any version.
    pub fn plurals(&self, group: &str) -> BTreeSet<&str> {
        self.groups
            .get(group)
            .map(|g| {
                g.versions
                    .values()
                    .flat_map(|r| r.keys().map(String::as_str))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Number of (group, version, plural) entries.
    pub fn len(&self) -> usize {
        self.groups
            .values()
            .flat_map(|g| g.versions.values())
            .map(BTreeMap::len)
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<&kube::Discovery> for Discovery {
    fn from(discovery: &kube::Discovery) -> Self {
        let mut out = Discovery::new();
        for group in discovery.groups() {
            for version in group.versions() {
                for (resource, caps) in group.versioned_resources(version) {
                    out.insert(ApiResource {
                        group: resource.group,
                        version: resource.version,
                        kind: resource.kind,
                        plural: resource.plural,
                        namespaced: caps.scope == kube::discovery::Scope::Namespaced,
                        verbs: caps.operations.into_iter().collect(),
                    });
                }
            }
            if let Some(preferred) = group.preferred_version() {
                out.set_preferred_version(group.name(), preferred);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preferred_version_is_the_servers_choice_else_by_priority() {
        let d = Discovery::new()
            .with(ApiResource::new("x.io", "v1beta1", "W", "widgets", true))
            .with(ApiResource::new("x.io", "v1", "W", "widgets", true))
            .with(ApiResource::new("x.io", "v2alpha1", "W", "widgets", true))
            .with(ApiResource::new("x.io", "v1beta1", "G", "gadgets", true));
        assert_eq!(d.versions("x.io"), vec!["v1", "v1beta1", "v2alpha1"]);
        assert_eq!(d.preferred_version("x.io"), Some("v1"));
        let d = d.with_preferred("x.io", "v1beta1");
        assert_eq!(d.preferred_version("x.io"), Some("v1beta1"));
        assert_eq!(
            d.canonical("x.io", "widgets").map(|r| r.version.as_str()),
            Some("v1beta1")
        );
        // A resource missing from the preferred version is watched in its best other version.
        let d = d.with_preferred("x.io", "v1");
        assert_eq!(
            d.canonical("x.io", "gadgets").map(|r| r.version.as_str()),
            Some("v1beta1")
        );
        assert_eq!(d.preferred_version("nope"), None);
    }

    #[test]
    fn subresources_are_not_catalogued() {
        let d = Discovery::new()
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
            ));
        assert_eq!(d.len(), 1);
        assert_eq!(d.plurals("apps"), BTreeSet::from(["deployments"]));
        assert!(d.has_group("apps") && !d.has_group("batch"));
    }

    #[test]
    fn list_and_watch_are_required() {
        let r = ApiResource::new("", "v1", "Binding", "bindings", true).with_verbs(&["create"]);
        assert!(!r.can_list_and_watch());
        assert!(ApiResource::new("", "v1", "ConfigMap", "configmaps", true).can_list_and_watch());
        assert_eq!(r.api_version(), "v1");
    }
}
