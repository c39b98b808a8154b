//! Secrets in Git, encrypted: a destination with age recipients writes Secrets as SOPS
//! documents (`sops`), stamped with a keyed content hash so that a Secret applied back from
//! its own file is recognised without decrypting it and without a hash anyone could test
//! guesses against (`seal`).

pub mod sops;

use crate::manifest::hash::{ContentHash, keyed_content_hash, stamp};
use serde_json::Value;
pub use sops::{Identities, Recipients, SopsError};

/// What a destination encrypts Secrets with: the age recipients of the SOPS documents and the
/// key of the keyed content hash (kept in a cluster Secret, never in Git).
#[derive(Clone)]
pub struct Encryption {
    pub recipients: Recipients,
    hash_key: std::sync::Arc<secrecy::SecretBox<Vec<u8>>>,
    /// The age identities that open Git's SOPS files (the destination's
    /// `ageIdentitySecretRef`), when given.
    identities: Option<std::sync::Arc<Identities>>,
}

impl Encryption {
    pub fn new(recipients: Recipients, hash_key: Vec<u8>) -> Self {
        Self {
            recipients,
            hash_key: std::sync::Arc::new(secrecy::SecretBox::new(Box::new(hash_key))),
            identities: None,
        }
    }

    /// With age identities that open Git's SOPS files: see [`Encryption::decrypts_to`].
    pub fn with_identities(mut self, identities: Identities) -> Self {
        self.identities = Some(std::sync::Arc::new(identities));
        self
    }

    /// True when identities were given.
    pub fn has_identities(&self) -> bool {
        self.identities.is_some()
    }

    /// The keyed hash of a sanitized object (its hash annotation ignored).
    pub fn hash(&self, doc: &Value) -> ContentHash {
        keyed_content_hash(doc, secrecy::ExposeSecret::expose_secret(&*self.hash_key))
    }

    /// True when `git_doc`, a SOPS document whose keyed hash cannot be checked (none, or one
    /// made with another key), opens with the destination's identities to exactly `doc` (a
    /// sanitized Secret; hash annotations ignored): then Git already holds the live values and
    /// its file stays as it is. False without identities, for anything that does not decrypt
    /// (another recipient, a MAC that does not match) and for other values. The clear text is
    /// compared through the keyed hash and dropped; it is never returned.
    pub fn decrypts_to(&self, git_doc: &Value, doc: &Value) -> bool {
        let Some(identities) = &self.identities else {
            return false;
        };
        if !sops::is_sops(git_doc) {
            return false;
        }
        sops::decrypt(git_doc, identities).is_ok_and(|clear| self.hash(&clear) == self.hash(doc))
    }
}

impl std::fmt::Debug for Encryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encryption")
            .field("recipients", &self.recipients)
            .finish_non_exhaustive()
    }
}

/// True for the objects that are encrypted: core Secrets.
pub fn is_encrypted_kind(doc: &Value) -> bool {
    doc.get("apiVersion").and_then(Value::as_str) == Some("v1")
        && doc.get("kind").and_then(Value::as_str) == Some("Secret")
}

/// A sanitized Secret as the file the agent commits: stamped with its keyed hash (replacing
/// the plain one, which would let a reader of Git test guesses), then encrypted. Returns the
/// keyed hash and the YAML text.
pub fn seal(
    mut doc: Value,
    encryption: &Encryption,
    now: jiff::Timestamp,
) -> Result<(ContentHash, String), SopsError> {
    let hash = encryption.hash(&doc);
    stamp(&mut doc, hash);
    let text = sops::encrypt(&doc, &encryption.recipients, now)?;
    Ok((hash, text))
}

/// True when `new` is a re-encryption of the same Secret as `old`: both SOPS documents
/// recording the same keyed hash. The file in Git then stays as it is — its ciphertexts differ
/// from a new encryption's, its values do not — so re-encrypting never makes a commit.
pub fn same_sealed(old: &[u8], new: &[u8]) -> bool {
    let keyed = |bytes: &[u8]| {
        // Cheap refusal for the files that are not SOPS documents with a keyed hash.
        let text = std::str::from_utf8(bytes).ok()?;
        if !text.contains("hmac-sha256:") || !text.contains("\nsops:") {
            return None;
        }
        let doc = crate::manifest::yaml::parse_single_document(bytes, "file")?;
        sops::is_sops(&doc)
            .then(|| crate::manifest::hash::annotated_hash(&doc))
            .flatten()
            .filter(ContentHash::is_keyed)
    };
    keyed(new).is_some_and(|hash| keyed(old) == Some(hash))
}

/// The file name of an encrypted document: `….sops.yaml` for `….yaml` (as users of sops and
/// Flux name them); other names get `.sops` before their extension, or at their end.
pub fn sops_path(path: &str) -> String {
    if path.ends_with(".sops.yaml") {
        return path.to_string();
    }
    match path.rsplit_once('.') {
        Some((stem, ext)) if !ext.contains('/') => format!("{stem}.sops.{ext}"),
        _ => format!("{path}.sops"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::hash::annotated_hash;
    use crate::manifest::yaml::parse_single_document;
    use serde_json::json;

    #[test]
    fn sealed_files_carry_a_keyed_hash_that_an_unchanged_value_reproduces() {
        let id = age::x25519::Identity::generate();
        let recipients = Recipients::parse([id.to_public().to_string().as_str()]).unwrap();
        let enc = Encryption::new(recipients, b"cluster key".to_vec());
        let secret = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "db", "namespace": "shop"}, "data": {"password": "aHVudGVyMg=="}});
        let now = jiff::Timestamp::now();
        let (first, text_a) = seal(secret.clone(), &enc, now).unwrap();
        let (again, text_b) = seal(secret.clone(), &enc, now).unwrap();
        assert!(first.is_keyed());
        assert_eq!(first, again, "same value, same keyed hash");
        assert_ne!(text_a, text_b, "ciphertexts differ per run");
        let doc = parse_single_document(text_a.as_bytes(), "t").unwrap();
        assert_eq!(annotated_hash(&doc), Some(first));
        let mut changed = secret;
        changed["data"]["password"] = json!("b3RoZXI=");
        assert_ne!(enc.hash(&changed), first);
        assert!(!format!("{enc:?}").contains("cluster key"));
        assert!(same_sealed(text_a.as_bytes(), text_b.as_bytes()));
        let (_, rotated) = seal(changed, &enc, now).unwrap();
        assert!(!same_sealed(text_a.as_bytes(), rotated.as_bytes()));
        let plain = b"apiVersion: v1\nkind: ConfigMap\n";
        assert!(!same_sealed(plain, plain), "only SOPS documents");
    }

    #[test]
    fn encrypted_files_are_named_sops_yaml() {
        assert_eq!(
            sops_path("a/v1/secrets/db.yaml"),
            "a/v1/secrets/db.sops.yaml"
        );
        assert_eq!(sops_path("db.sops.yaml"), "db.sops.yaml");
        assert_eq!(sops_path("a.b/db"), "a.b/db.sops");
    }
}
