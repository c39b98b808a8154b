//! Repository URLs: normalization into the key that decides which worker a destination uses,
//! and redaction so that no credential in a URL reaches a log or an error message.

/// Returns `url` with any password (and any user-info on http(s) URLs) replaced by `***`.
/// Safe to call on anything; text that is not a URL comes back unchanged.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = match userinfo.split_once(':') {
                Some((user, _password)) => format!("{user}:***"),
                None if scheme.starts_with("http") => "***".to_string(),
                None => userinfo.to_string(),
            };
            format!("{scheme}://{user}@{host}{path}")
        }
        None => url.to_string(),
    }
}

use std::fmt;

/// A repository URL reduced to what identifies the repository: scheme, user (SSH only), host
/// (case-folded), port (default ports dropped) and path (`.git` and trailing `/` stripped).
/// scp-style `git@host:org/repo.git` is `ssh://git@host/org/repo`; a plain path is `file://`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NormalizedUrl(String);

/// A URL that cannot name a repository.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("repository URL {url:?}: {problem}")]
pub struct UrlError {
    /// The URL, redacted.
    pub url: String,
    pub problem: &'static str,
}

impl NormalizedUrl {
    pub fn parse(url: &str) -> Result<Self, UrlError> {
        let fail = |problem| UrlError {
            url: redact(url),
            problem,
        };
        let url = url.trim();
        if url.is_empty() {
            return Err(fail("is empty"));
        }
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(fail("contains whitespace or control characters"));
        }
        let (scheme, user, host, port, path) = if let Some((scheme, rest)) = url.split_once("://") {
            let scheme = scheme.to_ascii_lowercase();
            if scheme == "file" {
                (
                    "file".to_string(),
                    None,
                    String::new(),
                    None,
                    rest.to_string(),
                )
            } else {
                let (authority, path) = match rest.find('/') {
                    Some(i) => rest.split_at(i),
                    None => (rest, ""),
                };
                let (userinfo, hostport) = match authority.rsplit_once('@') {
                    Some((u, h)) => (Some(u), h),
                    None => (None, authority),
                };
                let (host, port) =
                    split_port(hostport).ok_or_else(|| fail("has an invalid port"))?;
                // Credentials in http(s) URLs are not part of the repository's identity.
                let user = match scheme.as_str() {
                    "ssh" | "git+ssh" | "ssh+git" => {
                        userinfo.map(|u| u.split(':').next().unwrap_or(u).to_string())
                    }
                    _ => None,
                };
                let scheme = if scheme.contains("ssh") {
                    "ssh".to_string()
                } else {
                    scheme
                };
                (
                    scheme,
                    user,
                    host.to_ascii_lowercase(),
                    port,
                    path.to_string(),
                )
            }
        } else if url.starts_with('/') || url.starts_with("./") || url.starts_with("../") {
            (
                "file".to_string(),
                None,
                String::new(),
                None,
                url.to_string(),
            )
        } else if let Some((authority, path)) = url.split_once(':') {
            // scp-like syntax: [user@]host:path
            let (user, host) = match authority.rsplit_once('@') {
                Some((u, h)) => (Some(u.to_string()), h),
                None => (None, authority),
            };
            let path = if path.starts_with('/') {
                path.to_string()
            } else {
                format!("/{path}")
            };
            (
                "ssh".to_string(),
                user,
                host.to_ascii_lowercase(),
                None,
                path,
            )
        } else {
            return Err(fail(
                "is neither a URL, an scp-style address nor an absolute path",
            ));
        };
        if scheme != "file" && host.is_empty() {
            return Err(fail("has no host"));
        }
        let default_port = match scheme.as_str() {
            "https" => Some(443),
            "http" => Some(80),
            "ssh" => Some(22),
            "git" => Some(9418),
            _ => None,
        };
        let port = port.filter(|p| Some(*p) != default_port);
        // `.git` and trailing slashes go, as often as they come: the key of a key is itself.
        let mut path = path.trim_end_matches('/').to_string();
        while let Some(stripped) = path.strip_suffix(".git") {
            path = stripped.trim_end_matches('/').to_string();
        }
        if path.is_empty() || path == "/" {
            return Err(fail("has no repository path"));
        }
        let mut out = format!("{scheme}://");
        if let Some(user) = user.filter(|u| !u.is_empty()) {
            out.push_str(&user);
            out.push('@');
        }
        out.push_str(&host);
        if let Some(port) = port {
            out.push_str(&format!(":{port}"));
        }
        if !path.starts_with('/') {
            out.push('/');
        }
        out.push_str(&path);
        Ok(Self(out))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NormalizedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn split_port(hostport: &str) -> Option<(&str, Option<u16>)> {
    // IPv6 literals keep their brackets: [::1]:22
    if let Some(end) = hostport.strip_prefix('[').and_then(|h| h.find(']')) {
        let (host, rest) = hostport.split_at(end + 2);
        return match rest.strip_prefix(':') {
            Some("") | None => Some((host, None)),
            Some(port) => port.parse().ok().map(|p| (host, Some(p))),
        };
    }
    // Outside brackets a host has no colon: `example.com::` is no host and port.
    match hostport.split_once(':') {
        Some(("", _)) => None,
        Some((_, port)) if port.contains(':') => None,
        Some((host, "")) => Some((host, None)),
        Some((host, port)) => port.parse().ok().map(|p| (host, Some(p))),
        None => Some((hostport, None)),
    }
}

/// What a worker is keyed by: one repository and one branch.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoKey {
    pub url: NormalizedUrl,
    pub branch: String,
}

impl fmt::Display for RepoKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.url, self.branch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_repository_normalize_to_one_key() {
        let groups: &[&[&str]] = &[
            &[
                "git@github.com:org/repo.git",
                "ssh://git@github.com/org/repo",
                "ssh://git@GitHub.com:22/org/repo.git/",
                "git+ssh://git@github.com/org/repo.git",
                "git@GITHUB.COM:org/repo",
            ],
            &[
                "https://github.com/org/repo",
                "https://github.com/org/repo.git",
                "HTTPS://GitHub.com:443/org/repo/",
                "https://token:s3cret@github.com/org/repo.git",
                "https://alice@github.com/org/repo",
            ],
            &["git://127.0.0.1/repo.git", "git://127.0.0.1:9418/repo"],
            &[
                "file:///srv/git/repo.git",
                "/srv/git/repo.git",
                "/srv/git/repo/",
            ],
            &[
                "ssh://git@host:2222/org/repo",
                "ssh://git@HOST:2222/org/repo.git",
            ],
        ];
        for group in groups {
            let keys: Vec<_> = group
                .iter()
                .map(|u| NormalizedUrl::parse(u).unwrap())
                .collect();
            assert!(
                keys.windows(2).all(|w| w[0] == w[1]),
                "{group:?} → {keys:?}"
            );
        }
        // ...and different repositories stay apart.
        let distinct = [
            "git@github.com:org/repo.git",
            "git@github.com:Org/repo.git",
            "ssh://deploy@github.com/org/repo",
            "https://github.com/org/repo",
            "http://github.com/org/repo",
            "ssh://git@host:2222/org/repo",
            "ssh://git@host/org/repo",
            "https://github.com/org/repo2",
        ];
        let keys: std::collections::BTreeSet<_> = distinct
            .iter()
            .map(|u| NormalizedUrl::parse(u).unwrap())
            .collect();
        assert_eq!(keys.len(), distinct.len());
        assert_eq!(
            NormalizedUrl::parse("git@GitHub.com:org/repo.git")
                .unwrap()
                .as_str(),
            "ssh://git@github.com/org/repo"
        );
    }

    #[test]
    fn bad_urls_are_refused_without_leaking_credentials() {
        for bad in [
            "",
            "   ",
            "repo",
            "https://",
            "https://host",
            "https://host:99999/x",
            "https://u:pw@host:abc/x",
            "a b:c",
        ] {
            let err = NormalizedUrl::parse(bad).expect_err(bad);
            assert!(!err.to_string().contains("pw@"), "{err}");
        }
    }

    #[test]
    fn redaction() {
        let cases = [
            ("https://user:tok3n@host/repo", "https://user:***@host/repo"),
            ("https://tok3n@host/repo", "https://***@host/repo"),
            ("ssh://git@host/repo", "ssh://git@host/repo"),
            ("git@host:repo", "git@host:repo"),
            ("https://host/repo", "https://host/repo"),
        ];
        for (input, want) in cases {
            assert_eq!(redact(input), want);
        }
    }
}
