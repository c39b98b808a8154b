//! Request routing: which endpoint a URL path names (discovery, OpenAPI, a resource, one object, a
//! subresource) and the query parameters the API understands. Pure parsing.

/// The endpoint a path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Version,
    Health(&'static str),
    CoreVersions,
    Groups,
    Group(String),
    GroupVersion {
        group: String,
        version: String,
    },
    OpenApiRoot,
    OpenApiDoc(String),
    /// `/openapi/v2` (the whole-cluster Swagger 2.0 document).
    OpenApiV2,
    Resource(Target),
    NotFound,
}

/// A resource request: a collection, one object, or a subresource of one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Target {
    pub group: String,
    pub version: String,
    pub plural: String,
    /// `None` for cluster-scoped resources and all-namespace collections.
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// Route a URL path.
pub fn route(path: &str) -> Route {
    let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match parts.as_slice() {
        ["version"] => Route::Version,
        ["healthz", ..] => Route::Health("healthz"),
        ["readyz", ..] => Route::Health("readyz"),
        ["livez", ..] => Route::Health("livez"),
        ["api"] => Route::CoreVersions,
        ["apis"] => Route::Groups,
        ["openapi", "v2"] => Route::OpenApiV2,
        ["openapi", "v3"] => Route::OpenApiRoot,
        ["openapi", "v3", rest @ ..] => Route::OpenApiDoc(rest.join("/")),
        ["api", version] => Route::GroupVersion {
            group: String::new(),
            version: version.to_string(),
        },
        ["apis", group] => Route::Group(group.to_string()),
        ["apis", group, version] => Route::GroupVersion {
            group: group.to_string(),
            version: version.to_string(),
        },
        ["api", version, rest @ ..] => resource("", version, rest),
        ["apis", group, version, rest @ ..] => resource(group, version, rest),
        _ => Route::NotFound,
    }
}

fn resource(group: &str, version: &str, rest: &[&str]) -> Route {
    let mut t = Target {
        group: group.into(),
        version: version.into(),
        ..Default::default()
    };
    let mut parts = rest;
    if parts.first() == Some(&"namespaces")
        && parts.len() > 2
        && !matches!(parts[2], "status" | "finalize")
    {
        t.namespace = Some(parts[1].to_string());
        parts = &parts[2..];
    }
    match parts {
        [plural] => t.plural = plural.to_string(),
        [plural, name] => {
            t.plural = plural.to_string();
            t.name = Some(name.to_string());
        }
        [plural, name, sub] => {
            t.plural = plural.to_string();
            t.name = Some(name.to_string());
            t.subresource = Some(sub.to_string());
        }
        _ => return Route::NotFound,
    }
    Route::Resource(t)
}

/// The query parameters of API requests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    pub watch: bool,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
    pub timeout_seconds: Option<u64>,
    pub allow_watch_bookmarks: bool,
    pub send_initial_events: bool,
    pub label_selector: String,
    pub field_selector: String,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
    pub dry_run: bool,
    pub field_manager: Option<String>,
    pub force: bool,
    pub field_validation: Option<String>,
}

fn truthy(v: &str) -> bool {
    v.is_empty() || v == "true" || v == "1"
}

/// Parse a query string; a malformed number is reported.
pub fn parse_query(q: &str) -> Result<Query, String> {
    let mut out = Query::default();
    for (k, v) in form_urlencoded::parse(q.as_bytes()) {
        match k.as_ref() {
            "watch" => out.watch = truthy(&v),
            "resourceVersion" => out.resource_version = Some(v.into_owned()),
            "resourceVersionMatch" => out.resource_version_match = Some(v.into_owned()),
            "timeoutSeconds" => {
                out.timeout_seconds = Some(
                    v.parse()
                        .map_err(|_| format!("invalid timeoutSeconds {v:?}"))?,
                )
            }
            "allowWatchBookmarks" => out.allow_watch_bookmarks = truthy(&v),
            "sendInitialEvents" => out.send_initial_events = truthy(&v),
            "labelSelector" => out.label_selector = v.into_owned(),
            "fieldSelector" => out.field_selector = v.into_owned(),
            "limit" => {
                let n: i64 = v.parse().map_err(|_| format!("invalid limit {v:?}"))?;
                out.limit = (n > 0).then_some(n as usize);
            }
            "continue" if !v.is_empty() => out.continue_token = Some(v.into_owned()),
            "dryRun" => {
                if v != "All" {
                    return Err(format!(
                        "Invalid dry run value: {v:?}: supported values: \"All\""
                    ));
                }
                out.dry_run = true;
            }
            "fieldManager" => out.field_manager = Some(v.into_owned()),
            "force" => out.force = truthy(&v),
            "fieldValidation" => out.field_validation = Some(v.into_owned()),
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_resource_paths_like_the_real_server() {
        assert_eq!(
            route("/api/v1/namespaces/default/configmaps/x"),
            Route::Resource(Target {
                version: "v1".into(),
                plural: "configmaps".into(),
                namespace: Some("default".into()),
                name: Some("x".into()),
                ..Default::default()
            })
        );
        assert_eq!(
            route("/api/v1/namespaces/team/status"),
            Route::Resource(Target {
                version: "v1".into(),
                plural: "namespaces".into(),
                name: Some("team".into()),
                subresource: Some("status".into()),
                ..Default::default()
            })
        );
        assert_eq!(
            route("/apis/apps/v1/namespaces/d/deployments/web/scale"),
            Route::Resource(Target {
                group: "apps".into(),
                version: "v1".into(),
                plural: "deployments".into(),
                namespace: Some("d".into()),
                name: Some("web".into()),
                subresource: Some("scale".into()),
            })
        );
        assert_eq!(
            route("/apis/apps/v1/deployments"),
            Route::Resource(Target {
                group: "apps".into(),
                version: "v1".into(),
                plural: "deployments".into(),
                ..Default::default()
            })
        );
        assert_eq!(
            route("/api/v1/namespaces/default"),
            Route::Resource(Target {
                version: "v1".into(),
                plural: "namespaces".into(),
                name: Some("default".into()),
                ..Default::default()
            })
        );
        assert_eq!(route("/apis/apps"), Route::Group("apps".into()));
        assert_eq!(
            route("/openapi/v3/apis/apps/v1"),
            Route::OpenApiDoc("apis/apps/v1".into())
        );
        assert_eq!(route("/nope"), Route::NotFound);
    }

    #[test]
    fn parses_query_parameters() {
        let q = parse_query("watch=1&resourceVersion=10&labelSelector=app%3Dweb%2Cenv+in+%28a%29&limit=5&dryRun=All&force=true").unwrap();
        assert!(q.watch && q.dry_run && q.force);
        assert_eq!(q.label_selector, "app=web,env in (a)");
        assert_eq!(q.limit, Some(5));
        assert!(parse_query("dryRun=Some").is_err());
        assert!(parse_query("timeoutSeconds=x").is_err());
    }
}
