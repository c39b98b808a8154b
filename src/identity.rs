//! Who a Kubernetes user is in Git: the deterministic mapping from a Kubernetes `UserInfo` to a
//! commit author (name and e-mail), and the identity trailers; docs/authors.md documents it.

use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The default e-mail domain of mapped authors. `.invalid` is reserved (RFC 2606, RFC 6761): it
/// can never resolve, so an address in it can never be a real mailbox.
pub const DEFAULT_EMAIL_DOMAIN: &str = "users.gitops-reverser.invalid";

/// The author of changes nobody could be found for.
pub const UNKNOWN_AUTHOR_NAME: &str = "unknown (unattributed)";
/// The fixed e-mail of [`Author::unknown`]; outside [`DEFAULT_EMAIL_DOMAIN`], so no mapped user
/// of the default mapping can ever get it.
pub const UNKNOWN_AUTHOR_EMAIL: &str = "unattributed@gitops-reverser.invalid";

/// Trailer key naming the Kubernetes username of the author.
pub const USER_TRAILER: &str = "Kubernetes-User";
/// Trailer key naming who impersonated the author (the authenticated user of the request).
/// Not `On-behalf-of`: on the author's commit that would read backwards.
pub const IMPERSONATOR_TRAILER: &str = "Impersonated-by";

/// A Kubernetes user as the API server authenticated it (`authentication.k8s.io/v1` UserInfo),
/// the same shape in audit events and admission requests. `null` fields read as empty.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct UserInfo {
    #[serde(deserialize_with = "null_default")]
    pub username: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub groups: Vec<String>,
    #[serde(
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// A user with only a username, as tests and simple callers need.
    pub fn named(username: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            ..Self::default()
        }
    }
}

/// Reads `null` as the type's default value (Kubernetes writes `null` for empty lists and maps).
pub(crate) fn null_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// A configured person: the table's answer for one Kubernetes username.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    pub name: String,
    pub email: String,
}

/// A commit author: a name and an e-mail that are safe in a Git identity line (no `<`, `>`,
/// control characters or line breaks; the e-mail also has no spaces).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Author {
    pub name: String,
    pub email: String,
}

impl Author {
    /// The explicit "nobody known" author: name `unknown (unattributed)`, a fixed e-mail.
    pub fn unknown() -> Self {
        Self {
            name: UNKNOWN_AUTHOR_NAME.to_string(),
            email: UNKNOWN_AUTHOR_EMAIL.to_string(),
        }
    }

    /// True for [`Author::unknown`].
    pub fn is_unknown(&self) -> bool {
        self.email == UNKNOWN_AUTHOR_EMAIL && self.name == UNKNOWN_AUTHOR_NAME
    }
}

/// How Kubernetes users become commit authors. Deterministic: the same user and mapping always
/// give the same author. See docs/authors.md for the rules and examples.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AuthorMapping {
    /// Domain of generated e-mails (default [`DEFAULT_EMAIL_DOMAIN`]).
    pub email_domain: String,
    /// Exact Kubernetes username → person; wins over everything else.
    pub table: BTreeMap<String, Person>,
    /// `user.extra` key whose first value is the display name (e.g. from an OIDC claim).
    pub name_claim: Option<String>,
    /// `user.extra` key whose first value is the e-mail; used only when it is a plain address.
    pub email_claim: Option<String>,
}

impl Default for AuthorMapping {
    fn default() -> Self {
        Self {
            email_domain: DEFAULT_EMAIL_DOMAIN.to_string(),
            table: BTreeMap::new(),
            name_claim: None,
            email_claim: None,
        }
    }
}

impl AuthorMapping {
    /// The commit author for a Kubernetes user (the impersonated user when there was one).
    ///
    /// Order: the table (exact username); then the configured `user.extra` claims for the name
    /// and/or e-mail; then the defaults: name = the username, e-mail = the username when it is a
    /// plain address, else a generated address (service accounts, nodes and other `system:`
    /// users each in their own subdomain). An empty username is [`Author::unknown`].
    pub fn author(&self, user: &UserInfo) -> Author {
        let username = user.username.as_str();
        if username.trim().is_empty() {
            return Author::unknown();
        }
        let domain = self.domain();
        if let Some(person) = self.table.get(username) {
            let email = plain_email(&person.email)
                .map(str::to_string)
                .unwrap_or_else(|| generated_email(username, &domain));
            return finish(&person.name, email);
        }
        let claim_name = self
            .name_claim
            .as_deref()
            .and_then(|key| first_value(user, key))
            .filter(|name| !sanitize_name(name).is_empty());
        let claim_email = self
            .email_claim
            .as_deref()
            .and_then(|key| first_value(user, key))
            .and_then(plain_email);
        let email = match claim_email {
            Some(email) => email.to_string(),
            None => match plain_email(username) {
                Some(email) if !in_domain(email, &domain) => email.to_string(),
                _ => generated_email(username, &domain),
            },
        };
        finish(claim_name.unwrap_or(username), email)
    }

    /// The configured domain, lower-cased and stripped of anything that cannot be in a domain;
    /// the default when nothing is left.
    fn domain(&self) -> String {
        let domain: String = self
            .email_domain
            .trim()
            .trim_start_matches('@')
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '-')
            .collect::<String>()
            .to_ascii_lowercase();
        let domain = domain.trim_matches('.');
        if domain.is_empty() {
            DEFAULT_EMAIL_DOMAIN.to_string()
        } else {
            domain.to_string()
        }
    }
}

/// `Kubernetes-User: <username>`, the trailer naming the author's Kubernetes identity.
pub fn user_trailer(user: &UserInfo) -> String {
    format!("{USER_TRAILER}: {}", trailer_value(&user.username))
}

/// `Impersonated-by: <username>`, the trailer naming the user who impersonated the author.
pub fn impersonation_trailer(impersonator: &UserInfo) -> String {
    format!(
        "{IMPERSONATOR_TRAILER}: {}",
        trailer_value(&impersonator.username)
    )
}

/// A trailer value on one line: control characters (line breaks included) become spaces, so a
/// username can never start a trailer or a paragraph of its own.
/// A trailer value kept on one line (no control characters).
pub fn trailer_value(value: &str) -> String {
    let cleaned = collapse_spaces(value.chars().map(|c| if unsafe_char(c) { ' ' } else { c }));
    if cleaned.is_empty() {
        "(empty)".to_string()
    } else {
        cleaned
    }
}

fn first_value<'a>(user: &'a UserInfo, key: &str) -> Option<&'a str> {
    user.extra
        .get(key)?
        .iter()
        .map(|v| v.trim())
        .find(|v| !v.is_empty())
}

fn finish(name: &str, email: String) -> Author {
    let mut name = sanitize_name(name);
    if name.is_empty() {
        // Nothing printable was left: the e-mail's local part still tells who it is.
        name = email.split('@').next().unwrap_or_default().to_string();
    }
    Author { name, email }
}

/// A name fit for a Git identity: `<` and `>` become `(` and `)`, control characters (line
/// breaks included) and bidirectional/zero-width format characters become spaces, runs of
/// whitespace collapse to one space, and the ends are trimmed.
pub fn sanitize_name(name: &str) -> String {
    collapse_spaces(name.chars().map(|c| match c {
        '<' => '(',
        '>' => ')',
        c if unsafe_char(c) => ' ',
        c => c,
    }))
}

fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{2060}'..='\u{2069}'
                | '\u{061C}'
                | '\u{FEFF}'
        )
}

fn collapse_spaces(chars: impl Iterator<Item = char>) -> String {
    let mut out = String::new();
    let mut space = false;
    for c in chars {
        if c.is_whitespace() {
            space = !out.is_empty();
        } else {
            if space {
                out.push(' ');
                space = false;
            }
            out.push(c);
        }
    }
    out
}

/// The address itself when `s` is a plain e-mail address: one `@`, a local part of
/// `[A-Za-z0-9._%+-]`, a dotted domain of `[A-Za-z0-9-]` labels. Anything else is `None`.
fn plain_email(s: &str) -> Option<&str> {
    let (local, domain) = s.split_once('@')?;
    let local_ok = !local.is_empty()
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._%+-".contains(c));
    let labels_ok = domain.contains('.')
        && domain.split('.').all(|label| {
            !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    (local_ok && labels_ok).then_some(s)
}

/// True when `email` is in `domain` or one of its subdomains, where generated addresses live; a
/// username there is encoded instead, so it cannot take a generated address.
fn in_domain(email: &str, domain: &str) -> bool {
    let host = email
        .rsplit_once('@')
        .map(|(_, host)| host.to_ascii_lowercase())
        .unwrap_or_default();
    host == domain || host.ends_with(&format!(".{domain}"))
}

/// The generated address of a username. Each kind of user has its own domain, so no two kinds
/// can produce the same address, and [`encode_local`] is injective within each:
/// - `system:serviceaccount:<ns>:<name>` → `<name>.<ns>@serviceaccount.<domain>`
/// - `system:node:<node>` → `<node>@node.<domain>`
/// - other `system:<rest>` → `<encode(rest)>@system.<domain>`
/// - anything else → `<encode(username)>@<domain>`
fn generated_email(username: &str, domain: &str) -> String {
    if let Some((namespace, name)) = service_account(username) {
        return format!("{name}.{namespace}@serviceaccount.{domain}");
    }
    if let Some(node) = username
        .strip_prefix("system:node:")
        .filter(|n| dns_subdomain(n))
    {
        return format!("{node}@node.{domain}");
    }
    if let Some(rest) = username.strip_prefix("system:") {
        return format!("{}@system.{domain}", encode_local(rest));
    }
    format!("{}@{domain}", encode_local(username))
}

/// `(namespace, name)` of a service account username whose parts are valid Kubernetes names (a
/// DNS label and a DNS subdomain). The namespace has no dot, so `<name>.<ns>` is unambiguous.
fn service_account(username: &str) -> Option<(&str, &str)> {
    let rest = username.strip_prefix("system:serviceaccount:")?;
    let (namespace, name) = rest.split_once(':')?;
    (dns_label(namespace) && dns_subdomain(name)).then_some((namespace, name))
}

fn dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(dns_label)
}

/// The e-mail local part of a username: `a`–`z`, `0`–`9`, `.` and `-` stay; every other
/// character (upper case, `_`, `:`, `@`, spaces, non-ASCII, ...) becomes `_` followed by the
/// two lower-case hex digits of each of its UTF-8 bytes (`A` → `_41`, `:` → `_3a`, `_` → `_5f`).
/// The result is lower case and the mapping is injective: distinct usernames never share it.
pub fn encode_local(username: &str) -> String {
    let mut out = String::with_capacity(username.len());
    for c in username.chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-' {
            out.push(c);
        } else {
            let mut bytes = [0u8; 4];
            for b in c.encode_utf8(&mut bytes).bytes() {
                // Writing to a String cannot fail.
                let _ = write!(out, "_{b:02x}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> UserInfo {
        UserInfo::named(name)
    }

    fn author(mapping: &AuthorMapping, name: &str) -> (String, String) {
        let a = mapping.author(&user(name));
        (a.name, a.email)
    }

    /// Every author is safe in a Git identity line `name <email> time zone`.
    fn assert_git_safe(a: &Author) {
        for field in [&a.name, &a.email] {
            assert!(!field.is_empty(), "{a:?}");
            assert!(
                !field.contains(['<', '>', '\n', '\r', '\0']),
                "unsafe author {a:?}"
            );
            assert_eq!(field.trim(), field.as_str(), "{a:?}");
        }
        assert!(!a.email.contains(char::is_whitespace), "{a:?}");
        assert_eq!(a.email.matches('@').count(), 1, "{a:?}");
    }

    #[test]
    fn default_mapping_table() {
        let m = AuthorMapping::default();
        let d = DEFAULT_EMAIL_DOMAIN;
        let cases: Vec<(&str, String, String)> = vec![
            ("alice", "alice".into(), format!("alice@{d}")),
            (
                "jane@acme.com",
                "jane@acme.com".into(),
                "jane@acme.com".into(),
            ),
            (
                "Jane.Doe@Acme.com",
                "Jane.Doe@Acme.com".into(),
                "Jane.Doe@Acme.com".into(),
            ),
            (
                "system:serviceaccount:flux-system:kustomize-controller",
                "system:serviceaccount:flux-system:kustomize-controller".into(),
                format!("kustomize-controller.flux-system@serviceaccount.{d}"),
            ),
            (
                "system:serviceaccount:kube-system:replicaset-controller",
                "system:serviceaccount:kube-system:replicaset-controller".into(),
                format!("replicaset-controller.kube-system@serviceaccount.{d}"),
            ),
            (
                "system:node:minikube",
                "system:node:minikube".into(),
                format!("minikube@node.{d}"),
            ),
            (
                "system:admin",
                "system:admin".into(),
                format!("admin@system.{d}"),
            ),
            (
                "system:kube-controller-manager",
                "system:kube-controller-manager".into(),
                format!("kube-controller-manager@system.{d}"),
            ),
            (
                "system:anonymous",
                "system:anonymous".into(),
                format!("anonymous@system.{d}"),
            ),
            ("Alice", "Alice".into(), format!("_41lice@{d}")),
            (
                "oidc:alice",
                "oidc:alice".into(),
                format!("oidc_3aalice@{d}"),
            ),
            (
                "first_last",
                "first_last".into(),
                format!("first_5flast@{d}"),
            ),
            ("jürgen", "jürgen".into(), format!("j_c3_bcrgen@{d}")),
            // Not a valid service account: the generic system: rule applies.
            (
                "system:serviceaccount:Bad NS:x",
                "system:serviceaccount:Bad NS:x".into(),
                format!("serviceaccount_3a_42ad_20_4e_53_3ax@system.{d}"),
            ),
            // An address in the generated domain is encoded, so it cannot take alice's address.
            (
                "alice@users.gitops-reverser.invalid",
                "alice@users.gitops-reverser.invalid".into(),
                format!("alice_40users.gitops-reverser.invalid@{d}"),
            ),
        ];
        for (username, name, email) in cases {
            let got = m.author(&user(username));
            assert_eq!(
                (got.name.clone(), got.email.clone()),
                (name, email),
                "{username}"
            );
            assert_git_safe(&got);
        }
    }

    #[test]
    fn hostile_usernames_are_git_safe() {
        let m = AuthorMapping::default();
        let d = DEFAULT_EMAIL_DOMAIN;
        let cases: Vec<(&str, &str, String)> = vec![
            (
                "eve <eve@evil.example>",
                "eve (eve@evil.example)",
                format!("eve_20_3ceve_40evil.example_3e@{d}"),
            ),
            (
                "mallory\nCommitter: x <x@y>",
                "mallory Committer: x (x@y)",
                format!("mallory_0a_43ommitter_3a_20x_20_3cx_40y_3e@{d}"),
            ),
            ("  padded  ", "padded", format!("_20_20padded_20_20@{d}")),
            ("\u{202e}evil", "evil", format!("_e2_80_aeevil@{d}")),
            // Nothing printable is left of the name: the e-mail's local part stands in.
            (
                "\u{202e}\u{200b}",
                "_e2_80_ae_e2_80_8b",
                format!("_e2_80_ae_e2_80_8b@{d}"),
            ),
            ("<>", "()", format!("_3c_3e@{d}")),
            ("a@b@c.d", "a@b@c.d", format!("a_40b_40c.d@{d}")),
            (
                "x@y <z>.com",
                "x@y (z).com",
                format!("x_40y_20_3cz_3e.com@{d}"),
            ),
        ];
        for (username, name, email) in cases {
            let got = m.author(&user(username));
            assert_eq!(
                (got.name.as_str(), got.email.clone()),
                (name, email),
                "{username:?}"
            );
            assert_git_safe(&got);
        }
    }

    #[test]
    fn empty_username_is_unknown() {
        let m = AuthorMapping::default();
        assert_eq!(m.author(&user("")), Author::unknown());
        assert_eq!(m.author(&user("   ")), Author::unknown());
        assert_eq!(m.author(&user("\n\r\t")), Author::unknown());
        let u = Author::unknown();
        assert_eq!(u.name, "unknown (unattributed)");
        assert_eq!(u.email, "unattributed@gitops-reverser.invalid");
        assert!(u.is_unknown());
        assert_git_safe(&u);
    }

    #[test]
    fn table_then_claims_then_defaults() {
        let mut m = AuthorMapping {
            email_domain: "Corp.Example.".into(),
            name_claim: Some("example.com/name".into()),
            email_claim: Some("example.com/email".into()),
            ..AuthorMapping::default()
        };
        m.table.insert(
            "alice".into(),
            Person {
                name: "Alice Liddell".into(),
                email: "alice@wonderland.example".into(),
            },
        );
        m.table.insert(
            "bob".into(),
            Person {
                name: "Bob <B>".into(),
                email: "not an e-mail".into(),
            },
        );
        // Table wins over claims.
        let mut alice = user("alice");
        alice
            .extra
            .insert("example.com/name".into(), vec!["Other".into()]);
        assert_eq!(
            m.author(&alice),
            Author {
                name: "Alice Liddell".into(),
                email: "alice@wonderland.example".into()
            }
        );
        // A table e-mail that is not an address falls back to the generated one.
        assert_eq!(
            author(&m, "bob"),
            ("Bob (B)".into(), "bob@corp.example".into())
        );
        // Claims: first non-empty value; an invalid e-mail claim is ignored.
        let mut carol = user("oidc:carol");
        carol.extra.insert(
            "example.com/name".into(),
            vec!["".into(), "Carol Danvers".into()],
        );
        carol.extra.insert(
            "example.com/email".into(),
            vec!["carol@corp.example".into()],
        );
        assert_eq!(
            m.author(&carol),
            Author {
                name: "Carol Danvers".into(),
                email: "carol@corp.example".into()
            }
        );
        carol
            .extra
            .insert("example.com/email".into(), vec!["<carol>".into()]);
        assert_eq!(m.author(&carol).email, "oidc_3acarol@corp.example");
        // A name claim with nothing printable is ignored.
        carol
            .extra
            .insert("example.com/name".into(), vec!["\n".into()]);
        assert_eq!(m.author(&carol).name, "oidc:carol");
        // Configured domain is normalised; service accounts use its subdomain.
        assert_eq!(
            author(&m, "system:serviceaccount:ci:builder"),
            (
                "system:serviceaccount:ci:builder".into(),
                "builder.ci@serviceaccount.corp.example".into()
            )
        );
        // A domain with nothing usable falls back to the default.
        let empty = AuthorMapping {
            email_domain: " <> ".into(),
            ..AuthorMapping::default()
        };
        assert_eq!(
            author(&empty, "dave").1,
            format!("dave@{DEFAULT_EMAIL_DOMAIN}")
        );
    }

    #[test]
    fn mapping_is_deterministic_and_injective_on_samples() {
        let m = AuthorMapping::default();
        let names = [
            "alice",
            "Alice",
            "ALICE",
            "alice_",
            "alice-",
            "alice.",
            "a_5flice",
            "system:alice",
            "system:node:alice",
            "system:serviceaccount:alice:x",
            "system:serviceaccount:x:alice",
            "x.alice@serviceaccount.users.gitops-reverser.invalid",
            "alice@system.users.gitops-reverser.invalid",
        ];
        let mut emails = std::collections::BTreeSet::new();
        for n in names {
            let a = m.author(&user(n));
            assert_eq!(a, m.author(&user(n)));
            assert!(
                emails.insert(a.email.clone()),
                "duplicate e-mail for {n}: {a:?}"
            );
        }
    }

    #[test]
    fn encode_local_is_injective_on_escapes() {
        assert_eq!(encode_local("a_41"), "a_5f41");
        assert_eq!(encode_local("aA"), "a_41");
        assert_ne!(encode_local("a_41"), encode_local("aA"));
    }

    #[test]
    fn trailers_stay_on_one_line() {
        assert_eq!(
            impersonation_trailer(&user("system:admin")),
            "Impersonated-by: system:admin"
        );
        assert_eq!(user_trailer(&user("bob")), "Kubernetes-User: bob");
        let hostile = user("x\n\nSigned-off-by: y <y@z>");
        assert_eq!(
            impersonation_trailer(&hostile),
            "Impersonated-by: x Signed-off-by: y <y@z>"
        );
        assert!(!user_trailer(&hostile).contains('\n'));
        assert_eq!(user_trailer(&user("\n")), "Kubernetes-User: (empty)");
    }

    #[test]
    fn user_info_reads_nulls_and_round_trips() {
        let u: UserInfo =
            serde_json::from_str(r#"{"username":"bob","groups":null,"extra":null,"uid":"1"}"#)
                .unwrap();
        assert_eq!(u.username, "bob");
        assert!(u.groups.is_empty() && u.extra.is_empty());
        let back: UserInfo = serde_json::from_value(serde_json::to_value(&u).unwrap()).unwrap();
        assert_eq!(back, u);
        let m: AuthorMapping =
            serde_json::from_str(r#"{"emailDomain":"corp.example","nameClaim":"n"}"#).unwrap();
        assert_eq!(m.email_domain, "corp.example");
        assert_eq!(m.name_claim.as_deref(), Some("n"));
        assert!(m.table.is_empty());
    }

    /// The examples in docs/authors.md are what the default mapping produces.
    #[test]
    fn documented_examples_hold() {
        let doc = include_str!("../docs/authors.md");
        let block = doc
            .split("<!-- examples:begin -->")
            .nth(1)
            .and_then(|rest| rest.split("<!-- examples:end -->").next())
            .expect("docs/authors.md has an examples block");
        let m = AuthorMapping::default();
        let mut checked = 0;
        for line in block.lines().filter(|l| l.starts_with("| `")) {
            let cells: Vec<&str> = line
                .split('|')
                .map(|c| c.trim().trim_matches('`'))
                .collect();
            let (username, name, email) = (cells[1], cells[2], cells[3]);
            let got = m.author(&user(username));
            assert_eq!(
                (got.name.as_str(), got.email.as_str()),
                (name, email),
                "{line}"
            );
            checked += 1;
        }
        assert!(checked >= 8, "only {checked} documented examples");
    }
}
