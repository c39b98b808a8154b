//! Path layout: where an object's file lives inside a destination folder. The mapping is a
//! template over escaped identity fields; it is injective and never leaves the folder.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha2::{Digest, Sha256};

/// The default layout: `{namespace or _cluster}/{group or core}/{resource}/{name}.yaml`.
pub const DEFAULT_TEMPLATE: &str = "{namespace}/{group}/{resource}/{name}.yaml";
/// What `{namespace}` renders to for a cluster-scoped object.
pub const CLUSTER_SCOPE: &str = "_cluster";
/// What `{group}` renders to for the core (legacy) API group.
pub const CORE_GROUP: &str = "core";
/// Longest escaped value kept whole in one path segment; longer ones are shortened with a hash.
const MAX_VALUE_BYTES: usize = 180;

/// Every byte outside `[A-Za-z0-9.-]` is percent-encoded: `/`, `\`, `:`, `%`, `_`, `~`, spaces
/// and non-ASCII never reach the file system as themselves.
const ESCAPED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.');

/// A template or folder that cannot be used, and why.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LayoutError {
    #[error("path template {template:?}: {problem}")]
    Template { template: String, problem: String },
    #[error("folder {folder:?}: {problem}")]
    Folder {
        folder: String,
        problem: &'static str,
    },
}

/// The identity fields a path is made of.
#[derive(Clone, Copy, Debug)]
pub struct Location<'a> {
    pub group: &'a str,
    pub version: &'a str,
    pub kind: &'a str,
    /// The plural resource name (`deployments`), from discovery or [`guess_resource`].
    pub resource: &'a str,
    pub namespace: Option<&'a str>,
    pub name: &'a str,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Namespace,
    Group,
    Version,
    Kind,
    Resource,
    Name,
}

impl Field {
    const ALL: [(&'static str, Field); 6] = [
        ("namespace", Field::Namespace),
        ("group", Field::Group),
        ("version", Field::Version),
        ("kind", Field::Kind),
        ("resource", Field::Resource),
        ("name", Field::Name),
    ];
}

/// One path segment: literal text around at most one placeholder.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Segment {
    prefix: String,
    field: Option<Field>,
    suffix: String,
}

/// A parsed, validated path template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathTemplate {
    segments: Vec<Segment>,
}

impl Default for PathTemplate {
    fn default() -> Self {
        Self::parse(DEFAULT_TEMPLATE).unwrap_or(Self {
            segments: Vec::new(),
        })
    }
}

impl PathTemplate {
    /// Parses a template such as [`DEFAULT_TEMPLATE`]. It must be a relative path ending in
    /// `.yaml` or `.yml`, use `{name}`, `{namespace}`, `{group}` and one of `{resource}` or
    /// `{kind}` (so that two objects never share a file), and put at most one placeholder in
    /// each path segment (so that values cannot run into each other).
    pub fn parse(template: &str) -> Result<Self, LayoutError> {
        let fail = |problem: String| LayoutError::Template {
            template: template.to_string(),
            problem,
        };
        if template.starts_with('/') || template.contains('\\') {
            return Err(fail("must be a relative path with `/` separators".into()));
        }
        if !(template.ends_with(".yaml") || template.ends_with(".yml")) {
            return Err(fail("must end in .yaml or .yml".into()));
        }
        let mut segments = Vec::new();
        for raw in template.split('/') {
            segments.push(parse_segment(raw).map_err(fail)?);
        }
        let has = |f: Field| segments.iter().any(|s| s.field == Some(f));
        for (field, name) in [
            (Field::Name, "{name}"),
            (Field::Namespace, "{namespace}"),
            (Field::Group, "{group}"),
        ] {
            if !has(field) {
                return Err(fail(format!(
                    "must use {name}, or two objects could share a file"
                )));
            }
        }
        if !has(Field::Resource) && !has(Field::Kind) {
            return Err(fail(
                "must use {resource} or {kind}, or two objects could share a file".into(),
            ));
        }
        if segments
            .last()
            .is_some_and(|s| s.field != Some(Field::Name))
        {
            return Err(fail(
                "the file name (last segment) must contain {name}".into(),
            ));
        }
        Ok(Self { segments })
    }

    /// The path of an object's file relative to the destination folder.
    pub fn render(&self, at: &Location<'_>) -> String {
        let mut out = String::new();
        for (i, segment) in self.segments.iter().enumerate() {
            if i > 0 {
                out.push('/');
            }
            out.push_str(&segment.prefix);
            if let Some(field) = segment.field {
                out.push_str(&render_value(field, at));
            }
            out.push_str(&segment.suffix);
        }
        out
    }

    /// The path of an object's file inside `folder` (already validated with [`validate_folder`]).
    pub fn path_in(&self, folder: &str, at: &Location<'_>) -> String {
        let folder = folder.trim_end_matches('/');
        format!("{folder}/{}", self.render(at))
    }
}

fn parse_segment(raw: &str) -> Result<Segment, String> {
    if raw.is_empty() || raw == "." || raw == ".." {
        return Err(format!("segment {raw:?} is not allowed"));
    }
    let mut field = None;
    let mut prefix = String::new();
    let mut suffix = String::new();
    let mut rest = raw;
    while let Some(open) = rest.find('{') {
        let close = rest[open..]
            .find('}')
            .map(|c| open + c)
            .ok_or(format!("unclosed {{ in {raw:?}"))?;
        let name = &rest[open + 1..close];
        let found = Field::ALL
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, f)| *f)
            .ok_or_else(|| format!("unknown placeholder {{{name}}}; known: namespace, group, version, kind, resource, name"))?;
        if field.is_some() {
            return Err(format!(
                "segment {raw:?} has two placeholders; put each in its own segment"
            ));
        }
        field = Some(found);
        prefix.push_str(&rest[..open]);
        rest = &rest[close + 1..];
    }
    if rest.contains('}') {
        return Err(format!("unmatched }} in {raw:?}"));
    }
    if field.is_some() {
        suffix.push_str(rest);
    } else {
        prefix.push_str(rest);
    }
    if field.is_none() && prefix.starts_with('.') {
        return Err(format!("segment {raw:?} would be hidden"));
    }
    Ok(Segment {
        prefix,
        field,
        suffix,
    })
}

fn render_value(field: Field, at: &Location<'_>) -> String {
    match field {
        Field::Namespace => match at.namespace {
            Some(ns) if !ns.is_empty() => escape(ns),
            _ => CLUSTER_SCOPE.to_string(),
        },
        Field::Group if at.group.is_empty() => CORE_GROUP.to_string(),
        // A group really named `core` must not share the core group's folder.
        Field::Group if at.group == CORE_GROUP => "%63ore".to_string(),
        Field::Group => escape(at.group),
        Field::Version => escape(at.version),
        Field::Kind => escape(at.kind),
        Field::Resource => escape(at.resource),
        Field::Name => escape(at.name),
    }
}

/// Escapes one value so it is a single, visible, portable path segment, distinct for distinct
/// inputs: percent-encoding, a leading `.` encoded, and over-long values shortened to a prefix
/// plus `~` and a hash of the whole value (`~` never appears otherwise).
pub fn escape(value: &str) -> String {
    if value.is_empty() {
        return "%".to_string(); // only the empty value renders to a lone `%`
    }
    let mut out: String = utf8_percent_encode(value, ESCAPED).collect();
    if out.starts_with('.') {
        out.replace_range(..1, "%2E");
    }
    if out.len() > MAX_VALUE_BYTES {
        let digest = Sha256::digest(value.as_bytes());
        let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        // The escaped text is ASCII; step back so the cut does not split a `%XX` escape.
        let mut cut = MAX_VALUE_BYTES - 17;
        if let Some(p) = out[cut - 2..cut].find('%') {
            cut = cut - 2 + p;
        }
        out.truncate(cut);
        out.push('~');
        out.push_str(&hex);
    }
    out
}

/// Checks a destination folder: a non-empty relative path with `/` separators, no empty, `.`
/// or `..` segments, no backslash. The same rule the CRD's validation expresses in CEL.
pub fn validate_folder(folder: &str) -> Result<(), LayoutError> {
    let fail = |problem| {
        Err(LayoutError::Folder {
            folder: folder.to_string(),
            problem,
        })
    };
    if folder.trim_end_matches('/').is_empty() {
        return fail("must not be empty");
    }
    if folder.starts_with('/') {
        return fail("must be relative to the repository root");
    }
    if folder.contains('\\') {
        return fail("must use `/` as separator");
    }
    if folder.chars().any(char::is_control) {
        return fail("must not contain control characters");
    }
    if folder
        .trim_end_matches('/')
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return fail("must not contain empty, `.` or `..` segments");
    }
    Ok(())
}

/// The plural resource name Kubernetes would guess for a kind when discovery is not at hand
/// (`UnsafeGuessKindToResource`): lower-cased, `s`/`x`/`z`/`ch`/`sh` → `es`, consonant + `y`
/// → `ies`, otherwise `s`. `Endpoints` is its own plural.
pub fn guess_resource(kind: &str) -> String {
    let lower = kind.to_ascii_lowercase();
    if lower.is_empty() || lower == "endpoints" {
        return lower;
    }
    if let Some(stem) = lower.strip_suffix('y')
        && !stem.ends_with(['a', 'e', 'i', 'o', 'u'])
    {
        return format!("{stem}ies");
    }
    if lower.ends_with(['s', 'x', 'z']) || lower.ends_with("ch") || lower.ends_with("sh") {
        return format!("{lower}es");
    }
    format!("{lower}s")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at<'a>(group: &'a str, kind: &'a str, ns: Option<&'a str>, name: &'a str) -> Location<'a> {
        Location {
            group,
            version: "v1",
            kind,
            resource: "things",
            namespace: ns,
            name,
        }
    }

    #[test]
    fn default_layout() {
        let t = PathTemplate::default();
        let cases = [
            (
                at("apps", "Deployment", Some("shop"), "web"),
                "shop/apps/things/web.yaml",
            ),
            (
                at("", "Namespace", None, "shop"),
                "_cluster/core/things/shop.yaml",
            ),
            (
                at(
                    "rbac.authorization.k8s.io",
                    "ClusterRole",
                    None,
                    "system:view",
                ),
                "_cluster/rbac.authorization.k8s.io/things/system%3Aview.yaml",
            ),
            (
                at("", "ConfigMap", Some("a"), "../../etc/passwd"),
                "a/core/things/%2E.%2F..%2Fetc%2Fpasswd.yaml",
            ),
            (at("core", "X", Some("a"), "b"), "a/%63ore/things/b.yaml"),
        ];
        for (loc, want) in cases {
            assert_eq!(t.render(&loc), want);
        }
        assert_eq!(
            t.path_in("clusters/prod/", &cases_first()),
            "clusters/prod/shop/apps/things/web.yaml"
        );
    }

    fn cases_first() -> Location<'static> {
        at("apps", "Deployment", Some("shop"), "web")
    }

    #[test]
    fn templates_that_could_collide_or_escape_are_rejected() {
        let bad = [
            "{name}.yaml",
            "{namespace}/{group}/{name}.yaml",
            "/{namespace}/{group}/{kind}/{name}.yaml",
            "{namespace}/../{group}/{kind}/{name}.yaml",
            "{namespace}-{group}/{kind}/{name}.yaml",
            "{namespace}/{kind}.{group}/{name}.yaml",
            "{namespace}/{group}/{kind}/{name}.json",
            "{namespace}/{group}/{name}/{kind}.yaml",
            "{namespace}/{grp}/{kind}/{name}.yaml",
            "{namespace}//{group}/{kind}/{name}.yaml",
        ];
        for template in bad {
            assert!(
                PathTemplate::parse(template).is_err(),
                "{template} accepted"
            );
        }
        let t = PathTemplate::parse("ns-{namespace}/{group}/{kind}/{name}.yml").unwrap();
        assert_eq!(
            t.render(&at("apps", "Deployment", Some("shop"), "web")),
            "ns-shop/apps/Deployment/web.yml"
        );
    }

    #[test]
    fn folders() {
        for ok in ["apps", "clusters/prod", "clusters/prod/"] {
            assert_eq!(validate_folder(ok), Ok(()), "{ok}");
        }
        for bad in [
            "", "/", "/abs", "../x", "a/../b", "a\\b", ".", "a//b", "a/./b",
        ] {
            assert!(validate_folder(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn plural_guesses_match_kubernetes() {
        let cases = [
            ("Deployment", "deployments"),
            ("Ingress", "ingresses"),
            ("NetworkPolicy", "networkpolicies"),
            ("Gateway", "gateways"),
            ("Endpoints", "endpoints"),
            ("Mesh", "meshes"),
            ("Box", "boxes"),
        ];
        for (kind, want) in cases {
            assert_eq!(guess_resource(kind), want);
        }
    }

    #[test]
    fn long_names_are_shortened_distinctly() {
        let a = "a".repeat(253);
        let mut b = a.clone();
        b.replace_range(252.., "b");
        let (ea, eb) = (escape(&a), escape(&b));
        assert!(ea.len() <= MAX_VALUE_BYTES && eb.len() <= MAX_VALUE_BYTES);
        assert_ne!(ea, eb);
        assert!(ea.contains('~'));
        let percent = "%".repeat(100);
        assert!(escape(&percent).len() <= MAX_VALUE_BYTES);
        assert!(
            !escape(&percent)
                .split('~')
                .next()
                .unwrap_or("")
                .ends_with(['%'])
        );
    }

    proptest::proptest! {
        #[test]
        fn mapping_is_injective_and_stays_inside_the_folder(
            a in (".{0,3}", "\\PC{0,300}", proptest::option::of("[a-z_.%/]{0,8}"), "\\PC{0,8}"),
            b in (".{0,3}", "\\PC{0,300}", proptest::option::of("[a-z_.%/]{0,8}"), "\\PC{0,8}"),
        ) {
            let t = PathTemplate::default();
            fn loc(x: &(String, String, Option<String>, String)) -> Location<'_> {
                Location { group: &x.0, version: "v1", kind: "K", resource: "ks", namespace: x.2.as_deref(), name: &x.1 }
            }
            let (pa, pb) = (t.path_in("base", &loc(&a)), t.path_in("base", &loc(&b)));
            for p in [&pa, &pb] {
                let segments: Vec<&str> = p.split('/').collect();
                proptest::prop_assert_eq!(segments.len(), 5, "{}", p);
                proptest::prop_assert!(segments.iter().all(|s| !s.is_empty() && !s.starts_with('.') && s.len() < 255), "{}", p);
            }
            let same = |x: &(String, String, Option<String>, String), y: &(String, String, Option<String>, String)| {
                x.0 == y.0 && x.1 == y.1 && x.2.as_deref().filter(|n| !n.is_empty()) == y.2.as_deref().filter(|n| !n.is_empty())
            };
            proptest::prop_assert_eq!(pa == pb, same(&a, &b), "{} vs {}", pa, pb);
        }
    }
}
