//! Signing commits with an SSH key, as `git commit -S` does with `gpg.format=ssh`: the commit
//! without its signature is signed by `ssh-keygen -Y sign -n git`, and the armored signature
//! becomes the commit's `gpgsig` header, which `git verify-commit` checks against an
//! allowed-signers file. The private key is written to a 0600 file in a private temporary
//! directory only while `ssh-keygen` runs, and never reaches arguments, logs or errors.

use super::credentials::SecretString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Why a signing key cannot be used or a commit cannot be signed. Never holds key material.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("cannot read the signing key {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot prepare a private directory for ssh-keygen: {source}")]
    Setup { source: std::io::Error },
    #[error("cannot run ssh-keygen ({what}): {source}")]
    Spawn {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("ssh-keygen could not {what}: {detail}")]
    Refused { what: &'static str, detail: String },
}

/// An SSH signing key (an OpenSSH private key without passphrase), with its public key and
/// fingerprint for the status and the allowed-signers file.
pub struct SshSigner {
    key: SecretString,
    public_key: String,
    fingerprint: String,
}

impl std::fmt::Debug for SshSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshSigner")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl SshSigner {
    /// Reads an OpenSSH private key file (`replay --signing-key FILE`).
    pub fn from_file(path: &Path) -> Result<Self, SigningError> {
        let text = std::fs::read_to_string(path).map_err(|source| SigningError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_private_key(SecretString::new(text))
    }

    /// Takes an OpenSSH private key (a Secret's value) and derives its public key and
    /// fingerprint, which also proves the key is usable.
    pub fn from_private_key(key: SecretString) -> Result<Self, SigningError> {
        let (public_key, fingerprint) = with_key_file(&key, |file| {
            let public = ssh_keygen("derive the public key", &["-y", "-f"], file, None)?;
            let listed = ssh_keygen("fingerprint the key", &["-l", "-f"], file, None)?;
            Ok((public, listed))
        })?;
        let public_key = String::from_utf8_lossy(&public_key).trim().to_string();
        let fingerprint = String::from_utf8_lossy(&fingerprint)
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string();
        Ok(Self {
            key,
            public_key,
            fingerprint,
        })
    }

    /// The public key (`ssh-ed25519 AAAA…`), for an allowed-signers file.
    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    /// The key's fingerprint (`SHA256:…`), as `ssh-keygen -l` and the forges show it.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The armored SSH signature (`-----BEGIN SSH SIGNATURE-----`…) of `payload` in the `git`
    /// namespace.
    pub fn sign(&self, payload: &[u8]) -> Result<String, SigningError> {
        let signature = with_key_file(&self.key, |file| {
            ssh_keygen(
                "sign a commit",
                &["-Y", "sign", "-n", "git", "-f"],
                file,
                Some(payload),
            )
        })?;
        Ok(String::from_utf8_lossy(&signature).trim_end().to_string())
    }
}

/// Runs `f` with the key in a 0600 file of a private temporary directory, removed afterwards.
fn with_key_file<T>(
    key: &SecretString,
    f: impl FnOnce(&Path) -> Result<T, SigningError>,
) -> Result<T, SigningError> {
    let dir =
        super::private_dir::create("signing").map_err(|source| SigningError::Setup { source })?;
    let path = dir.path().join("key");
    let mut file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|source| SigningError::Setup { source })?
    };
    let mut text = key.expose().to_string();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|source| SigningError::Setup { source })?;
    drop(file);
    f(&path)
}

/// `ssh-keygen <args> <file>` with `stdin` (or nothing) on its standard input; its output.
fn ssh_keygen(
    what: &'static str,
    args: &[&str],
    file: &Path,
    stdin: Option<&[u8]>,
) -> Result<Vec<u8>, SigningError> {
    let mut child = Command::new("ssh-keygen")
        .args(args)
        .arg(file)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| SigningError::Spawn { what, source })?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input)
            .map_err(|source| SigningError::Spawn { what, source })?;
    }
    let out = child
        .wait_with_output()
        .map_err(|source| SigningError::Spawn { what, source })?;
    if !out.status.success() {
        let detail = String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .take(3)
            .collect::<Vec<_>>()
            .join("; ")
            .replace(&file.display().to_string(), "<key>");
        return Err(SigningError::Refused { what, detail });
    }
    Ok(out.stdout)
}
