//! Credentials for a remote, read from a Secret's data (native, Flux- and Argo CD-shaped):
//! an SSH private key with `known_hosts`, or a username with a password or token.

use std::collections::BTreeMap;
use std::fmt;

use secrecy::ExposeSecret;

/// A secret text: `Debug` and `Display` print `***`, the memory is zeroed on drop
/// (a thin wrapper around [`secrecy::SecretString`], which prints `[REDACTED]` instead).
#[derive(Clone)]
pub struct SecretString(secrecy::SecretString);

impl SecretString {
    pub fn new(value: impl Into<String>) -> Self {
        Self(secrecy::SecretString::from(value.into()))
    }

    /// The secret itself. Use it only to hand it to the process that needs it.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl From<&str> for SecretString {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl PartialEq for SecretString {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for SecretString {}

/// How to authenticate to a remote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// A private key (PEM or OpenSSH format) and the `known_hosts` lines the server's host key
    /// is checked against; `user` is used when the URL names no user; `passphrase` unlocks an
    /// encrypted key (Flux keeps it in `password` beside the key).
    Ssh {
        private_key: SecretString,
        known_hosts: String,
        user: Option<String>,
        passphrase: Option<SecretString>,
    },
    /// An HTTP bearer token (`bearerToken`), sent as `Authorization: Bearer …`.
    Bearer { token: SecretString },
    /// HTTP(S) basic authentication; the password may be a token.
    Basic {
        username: String,
        password: SecretString,
    },
}

/// Why a Secret's data does not make credentials. Names keys, never values.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CredentialsError {
    #[error(
        "no credentials in the Secret (keys present: {present}); expected an SSH key \
         (`ssh-privatekey`, `identity` or `sshPrivateKey`) with `known_hosts`, \
         or `username` with `password`"
    )]
    NoCredentials { present: String },
    #[error(
        "SSH key present (`{key}`) but known_hosts missing: host keys are always verified; \
         add a `known_hosts` key"
    )]
    KnownHostsMissing { key: &'static str },
    #[error(
        "`{key}` holds a passphrase but the SSH key is not encrypted; remove `{key}` or use the \
         encrypted key"
    )]
    PassphraseUnused { key: &'static str },
    #[error("username present but password missing: add a `password` key")]
    PasswordMissing,
    #[error(
        "the Secret has both an SSH key (`{key}`) and a bearer token: a Secret must hold one \
         kind of credentials; remove one"
    )]
    Ambiguous { key: &'static str },
    #[error("`{key}` is not UTF-8 text")]
    NotUtf8 { key: &'static str },
    #[error("`{key}` is empty")]
    Empty { key: &'static str },
    #[error(
        "`{key}`: private key is not PEM/OpenSSH (expected a `-----BEGIN ... PRIVATE KEY-----` block)"
    )]
    NotPem { key: &'static str },
    #[error(
        "`{key}`: the private key is encrypted; add its passphrase as `password` (or \
         `ssh-password`), or provide an unencrypted key"
    )]
    EncryptedKey { key: &'static str },
    #[error("`{key}` line {line} is not a known_hosts entry (`host key-type base64-key`)")]
    KnownHostsLine { key: &'static str, line: usize },
    #[error("`{key}` holds no host key")]
    KnownHostsEmpty { key: &'static str },
    #[error("`{key}` is not a PEM certificate bundle (expected `-----BEGIN CERTIFICATE-----`)")]
    NotCertificate { key: &'static str },
}

/// Keys that hold a CA bundle for HTTPS: Flux's `caFile`, and `ca.crt` (cert-manager, kubectl).
const CA_KEYS: [&str; 2] = ["caFile", "ca.crt"];

/// The CA bundle (PEM certificates) of a Secret, if it has one, to verify an HTTPS server
/// signed by a private CA.
pub fn ca_bundle_from_secret_data(
    data: &BTreeMap<String, Vec<u8>>,
) -> Result<Option<String>, CredentialsError> {
    let Some((key, bytes)) = first_present(data, &CA_KEYS) else {
        return Ok(None);
    };
    let pem = text(key, bytes)?;
    if !pem.contains("-----BEGIN CERTIFICATE-----") {
        return Err(CredentialsError::NotCertificate { key });
    }
    Ok(Some(pem.replace("\r\n", "\n")))
}

/// Keys that hold a private key: native/kubernetes.io/ssh-auth, Flux, Argo CD.
const PRIVATE_KEY_KEYS: [&str; 3] = ["ssh-privatekey", "identity", "sshPrivateKey"];
/// Keys that hold `known_hosts` lines: native/Flux, and the Argo CD ConfigMap's name.
const KNOWN_HOSTS_KEYS: [&str; 2] = ["known_hosts", "ssh_known_hosts"];
const USERNAME_KEY: &str = "username";
const PASSWORD_KEY: &str = "password";
/// Keys that hold an SSH key's passphrase next to the key (Flux: `password`).
const PASSPHRASE_KEYS: [&str; 2] = ["password", "ssh-password"];
const BEARER_KEY: &str = "bearerToken";
/// The username sent with a token that comes without one (any username works for the forges
/// that issue such tokens: GitHub, Azure DevOps, Gitea, Bitbucket).
pub const TOKEN_USERNAME: &str = "git";

impl Credentials {
    /// Reads credentials from a Secret's `data`. Accepted shapes:
    /// - SSH: a key in `ssh-privatekey` (kubernetes.io/ssh-auth), `identity` (Flux) or
    ///   `sshPrivateKey` (Argo CD), with `known_hosts` (or `ssh_known_hosts`); an optional
    ///   `username` is the SSH user when the URL names none.
    ///   An encrypted key takes its passphrase from `password` or `ssh-password`.
    /// - Basic: `username` and `password` (kubernetes.io/basic-auth, Flux, Argo CD); a
    ///   `password` alone is a token sent with the username [`TOKEN_USERNAME`].
    /// - Bearer: `bearerToken` (Flux), sent as `Authorization: Bearer …`.
    ///
    /// Other keys (`identity.pub`, Argo CD's `url`, `type`, `project`, ...) are ignored.
    pub fn from_secret_data(data: &BTreeMap<String, Vec<u8>>) -> Result<Self, CredentialsError> {
        let private_key = first_present(data, &PRIVATE_KEY_KEYS);
        let known_hosts = first_present(data, &KNOWN_HOSTS_KEYS);
        let username = data.get(USERNAME_KEY).map(|v| (USERNAME_KEY, v.as_slice()));
        let password = data.get(PASSWORD_KEY).map(|v| (PASSWORD_KEY, v.as_slice()));

        let bearer = data.get(BEARER_KEY).map(|v| (BEARER_KEY, v.as_slice()));
        if let Some((key_name, key_bytes)) = private_key {
            if bearer.is_some() {
                return Err(CredentialsError::Ambiguous { key: key_name });
            }
            let key = text(key_name, key_bytes)?;
            let encrypted = check_private_key(key_name, key)?;
            let passphrase = match first_present(data, &PASSPHRASE_KEYS) {
                Some((name, bytes)) if encrypted => {
                    Some(SecretString::new(line_value(name, bytes)?))
                }
                Some((name, _)) => return Err(CredentialsError::PassphraseUnused { key: name }),
                None if encrypted => return Err(CredentialsError::EncryptedKey { key: key_name }),
                None => None,
            };
            let Some((hosts_name, hosts_bytes)) = known_hosts else {
                return Err(CredentialsError::KnownHostsMissing { key: key_name });
            };
            let hosts = text(hosts_name, hosts_bytes)?;
            check_known_hosts(hosts_name, hosts)?;
            let user = match username {
                Some((name, bytes)) => Some(line_value(name, bytes)?),
                None => None,
            };
            let mut private_key = key.replace("\r\n", "\n");
            if !private_key.ends_with('\n') {
                private_key.push('\n');
            }
            return Ok(Credentials::Ssh {
                private_key: SecretString::new(private_key),
                known_hosts: hosts.replace("\r\n", "\n"),
                user,
                passphrase,
            });
        }
        if let Some((name, bytes)) = bearer {
            return Ok(Credentials::Bearer {
                token: SecretString::new(line_value(name, bytes)?),
            });
        }

        match (username, password) {
            (Some((user_name, user_bytes)), Some((pass_name, pass_bytes))) => {
                Ok(Credentials::Basic {
                    username: line_value(user_name, user_bytes)?,
                    password: SecretString::new(line_value(pass_name, pass_bytes)?),
                })
            }
            (None, Some((pass_name, pass_bytes))) => Ok(Credentials::Basic {
                username: TOKEN_USERNAME.to_string(),
                password: SecretString::new(line_value(pass_name, pass_bytes)?),
            }),
            (Some(_), None) => Err(CredentialsError::PasswordMissing),
            (None, None) => {
                let present = if data.is_empty() {
                    "none".to_string()
                } else {
                    data.keys()
                        .map(String::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                Err(CredentialsError::NoCredentials { present })
            }
        }
    }
}

fn first_present<'a>(
    data: &'a BTreeMap<String, Vec<u8>>,
    keys: &[&'static str],
) -> Option<(&'static str, &'a [u8])> {
    keys.iter()
        .find_map(|k| data.get(*k).map(|v| (*k, v.as_slice())))
}

fn text<'a>(key: &'static str, bytes: &'a [u8]) -> Result<&'a str, CredentialsError> {
    let text = std::str::from_utf8(bytes).map_err(|_| CredentialsError::NotUtf8 { key })?;
    if text.trim().is_empty() {
        return Err(CredentialsError::Empty { key });
    }
    Ok(text)
}

/// A one-line value: a trailing line ending (as left by `echo` or `--from-file`) is dropped.
fn line_value(key: &'static str, bytes: &[u8]) -> Result<String, CredentialsError> {
    let value = text(key, bytes)?;
    let value = value.strip_suffix('\n').unwrap_or(value);
    let value = value.strip_suffix('\r').unwrap_or(value);
    Ok(value.to_string())
}

/// Checks that `pem` is a private key block; returns whether it is encrypted.
fn check_private_key(key: &'static str, pem: &str) -> Result<bool, CredentialsError> {
    let trimmed = pem.trim();
    let mut lines = trimmed.lines();
    let first = lines.next().unwrap_or_default().trim();
    let last = trimmed.lines().last().unwrap_or_default().trim();
    let is_block = first.starts_with("-----BEGIN ")
        && first.ends_with("PRIVATE KEY-----")
        && last.starts_with("-----END ")
        && last.ends_with("PRIVATE KEY-----");
    if !is_block {
        return Err(CredentialsError::NotPem { key });
    }
    if trimmed.contains("Proc-Type: 4,ENCRYPTED") || first.contains("ENCRYPTED PRIVATE KEY") {
        return Ok(true);
    }
    if first == "-----BEGIN OPENSSH PRIVATE KEY-----" {
        let body: String = lines
            .take_while(|l| !l.trim().starts_with("-----END"))
            .flat_map(|l| l.trim().chars())
            .collect();
        return match openssh_cipher(&body) {
            Some(cipher) => Ok(cipher != b"none"),
            None => Err(CredentialsError::NotPem { key }),
        };
    }
    Ok(false)
}

/// The cipher name of an `openssh-key-v1` key (`none` when unencrypted), from the base64 body.
fn openssh_cipher(base64_body: &str) -> Option<Vec<u8>> {
    let head: String = base64_body.chars().take(64).collect();
    let bytes = decode_base64_prefix(&head)?;
    let rest = bytes.strip_prefix(b"openssh-key-v1\0")?;
    let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    rest.get(4..4 + len).map(<[u8]>::to_vec)
}

/// Decodes whole 4-character groups of standard base64 (enough to read a key's header).
fn decode_base64_prefix(text: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let mut out = Vec::new();
    for group in text.as_bytes().chunks_exact(4) {
        if group.contains(&b'=') {
            break;
        }
        let mut n = 0u32;
        for &c in group {
            n = (n << 6) | value(c)?;
        }
        out.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8]);
    }
    Some(out)
}

fn check_known_hosts(key: &'static str, hosts: &str) -> Result<(), CredentialsError> {
    let mut entries = 0;
    for (i, line) in hosts.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        // `@cert-authority` / `@revoked` markers take one more field.
        let needed = if line.starts_with('@') { 4 } else { 3 };
        if fields.len() < needed {
            return Err(CredentialsError::KnownHostsLine { key, line: i + 1 });
        }
        entries += 1;
    }
    if entries == 0 {
        return Err(CredentialsError::KnownHostsEmpty { key });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // The shape of an unencrypted ed25519 key: a real `openssh-key-v1` header, a body that is no usable key.
    const OPENSSH_KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACBlKqq3mGv1Pq4OcA7nYp1OqCV0T5ujwvNwfNvYh9wB9wAAAJDOZ3wmzmd8
JgAAAAtzc2gtZWQyNTUxOQAAACBlKqq3mGv1Pq4OcA7nYp1OqCV0T5ujwvNwfNvYh9wB9w
AAAEBsE8mb1nCywV7o7aVqhm8ZV2Eo2AZ2QwVr+X2tzmN3R2Uqqrecl9Q+rg5wDudinU6o
JXRPm6PC83B829iH3AH3AAAAB3Rlc3RrZXkBAgMEBQY=
-----END OPENSSH PRIVATE KEY-----
";
    // The header of a key encrypted with aes256-ctr (only the header is inspected).
    const ENCRYPTED_OPENSSH_KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAACmFlczI1Ni1jdHIAAAAGYmNyeXB0AAAAGAAAABBLPBlsRr
-----END OPENSSH PRIVATE KEY-----
";
    const PEM_KEY: &str =
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----";
    const ENCRYPTED_PEM_KEY: &str = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nMIIE\n-----END RSA PRIVATE KEY-----\n";
    const KNOWN_HOSTS: &str = "# a comment\n[127.0.0.1]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGUqqreYa/U+rg5wDudinU6o\n";

    type Data = BTreeMap<String, Vec<u8>>;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    fn ssh(user: Option<&str>) -> Credentials {
        Credentials::Ssh {
            private_key: SecretString::new(OPENSSH_KEY),
            known_hosts: KNOWN_HOSTS.to_string(),
            user: user.map(str::to_string),
            passphrase: None,
        }
    }

    fn basic(user: &str, password: &str) -> Credentials {
        Credentials::Basic {
            username: user.to_string(),
            password: SecretString::new(password),
        }
    }

    #[test]
    fn accepted_shapes() {
        let cases: Vec<(&str, Data, Credentials)> = vec![
            (
                "native / kubernetes.io/ssh-auth",
                data(&[
                    ("ssh-privatekey", OPENSSH_KEY),
                    ("known_hosts", KNOWN_HOSTS),
                ]),
                ssh(None),
            ),
            (
                "flux ssh with identity.pub",
                data(&[
                    ("identity", OPENSSH_KEY),
                    ("identity.pub", "ssh-ed25519 AAAA test"),
                    ("known_hosts", KNOWN_HOSTS),
                ]),
                ssh(None),
            ),
            (
                "argo cd ssh with ssh_known_hosts and url",
                data(&[
                    ("sshPrivateKey", OPENSSH_KEY),
                    ("ssh_known_hosts", KNOWN_HOSTS),
                    ("url", "git@github.com:org/repo.git"),
                    ("type", "git"),
                ]),
                ssh(None),
            ),
            (
                "ssh with a user",
                data(&[
                    ("identity", OPENSSH_KEY),
                    ("known_hosts", KNOWN_HOSTS),
                    ("username", "git\n"),
                ]),
                ssh(Some("git")),
            ),
            (
                "key without trailing newline gets one",
                data(&[
                    ("identity", OPENSSH_KEY.trim_end()),
                    ("known_hosts", KNOWN_HOSTS),
                ]),
                ssh(None),
            ),
            (
                "native / kubernetes.io/basic-auth",
                data(&[("username", "alice"), ("password", "s3cret")]),
                basic("alice", "s3cret"),
            ),
            (
                "trailing newlines of --from-file are dropped",
                data(&[("username", "alice\r\n"), ("password", "tok en\n")]),
                basic("alice", "tok en"),
            ),
            (
                "argo cd https",
                data(&[
                    ("username", "git"),
                    ("password", "ghp_token"),
                    ("url", "https://github.com/org/repo"),
                ]),
                basic("git", "ghp_token"),
            ),
        ];
        for (name, input, want) in cases {
            assert_eq!(Credentials::from_secret_data(&input), Ok(want), "{name}");
        }
        let pem = data(&[("ssh-privatekey", PEM_KEY), ("known_hosts", KNOWN_HOSTS)]);
        assert!(Credentials::from_secret_data(&pem).is_ok());
    }

    #[test]
    fn rejected_shapes_name_the_key_and_never_the_value() {
        let cases: Vec<(&str, Data, CredentialsError, &str)> = vec![
            (
                "ssh without known_hosts",
                data(&[("sshPrivateKey", OPENSSH_KEY)]),
                CredentialsError::KnownHostsMissing {
                    key: "sshPrivateKey",
                },
                "known_hosts missing: host keys are always verified",
            ),
            (
                "username without password",
                data(&[("username", "alice")]),
                CredentialsError::PasswordMissing,
                "password missing",
            ),
            (
                "not a key",
                data(&[("identity", "hunter2"), ("known_hosts", KNOWN_HOSTS)]),
                CredentialsError::NotPem { key: "identity" },
                "not PEM/OpenSSH",
            ),
            (
                "encrypted pem key",
                data(&[
                    ("identity", ENCRYPTED_PEM_KEY),
                    ("known_hosts", KNOWN_HOSTS),
                ]),
                CredentialsError::EncryptedKey { key: "identity" },
                "encrypted",
            ),
            (
                "encrypted openssh key",
                data(&[
                    ("identity", ENCRYPTED_OPENSSH_KEY),
                    ("known_hosts", KNOWN_HOSTS),
                ]),
                CredentialsError::EncryptedKey { key: "identity" },
                "encrypted",
            ),
            (
                "unencrypted key and a passphrase",
                data(&[
                    ("identity", OPENSSH_KEY),
                    ("known_hosts", KNOWN_HOSTS),
                    ("password", "hunter2"),
                ]),
                CredentialsError::PassphraseUnused { key: "password" },
                "not encrypted",
            ),
            (
                "key and bearer token",
                data(&[
                    ("identity", OPENSSH_KEY),
                    ("known_hosts", KNOWN_HOSTS),
                    ("bearerToken", "hunter2"),
                ]),
                CredentialsError::Ambiguous { key: "identity" },
                "both an SSH key",
            ),
            (
                "bad known_hosts line",
                data(&[
                    ("identity", OPENSSH_KEY),
                    ("known_hosts", "# c\ngithub.com hunter2\n"),
                ]),
                CredentialsError::KnownHostsLine {
                    key: "known_hosts",
                    line: 2,
                },
                "line 2",
            ),
            (
                "known_hosts with only comments",
                data(&[("identity", OPENSSH_KEY), ("known_hosts", "# nothing\n\n")]),
                CredentialsError::KnownHostsEmpty { key: "known_hosts" },
                "no host key",
            ),
            (
                "empty password",
                data(&[("username", "alice"), ("password", "")]),
                CredentialsError::Empty { key: "password" },
                "`password` is empty",
            ),
            (
                "password not utf-8",
                BTreeMap::from([
                    ("username".to_string(), b"alice".to_vec()),
                    ("password".to_string(), vec![0xff, 0xfe]),
                ]),
                CredentialsError::NotUtf8 { key: "password" },
                "not UTF-8",
            ),
            (
                "nothing usable",
                data(&[("url", "https://x"), ("type", "git")]),
                CredentialsError::NoCredentials {
                    present: "type, url".to_string(),
                },
                "keys present: type, url",
            ),
        ];
        for (name, input, want, text) in cases {
            let err = Credentials::from_secret_data(&input).unwrap_err();
            assert_eq!(err, want, "{name}");
            let message = err.to_string();
            assert!(message.contains(text), "{name}: {message}");
            assert!(!message.contains("hunter2"), "{name}: {message}");
        }
    }

    #[test]
    fn secrets_do_not_print() {
        let creds = basic("alice", "hunter2");
        assert_eq!(
            format!("{creds:?}"),
            r#"Basic { username: "alice", password: *** }"#
        );
        let key = SecretString::new("hunter2");
        assert_eq!(format!("{key} {key:?} {key:#?}"), "*** *** ***");
        assert!(!format!("{:?}", ssh(None)).contains("OPENSSH"));
    }
}
