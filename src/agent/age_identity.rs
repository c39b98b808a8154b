//! The age identities of a destination that encrypts Secrets, read from the Secret its
//! `spec.encryption.sops.ageIdentitySecretRef` names (shaped as Flux's `sops-age` Secret: each
//! data key ending in `.agekey` holds an age key file). Read with `get` once, when the
//! destination starts; they only let the agent check that a SOPS file in Git already holds the
//! live values (`secrets::Encryption::decrypts_to`).

use crate::config::ObjectKey;
use crate::secrets::{Identities, SopsError};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;

/// The suffix of the data keys holding age key files (Flux reads the same: `age.agekey`).
pub const KEY_SUFFIX: &str = ".agekey";

/// Reading the identity Secret failed; the message names the Secret and its keys, never a
/// value.
#[derive(Debug, thiserror::Error)]
pub enum AgeIdentityError {
    #[error("cannot read the age identity Secret {secret}: {source}")]
    Read {
        secret: ObjectKey,
        source: kube::Error,
    },
    #[error("the age identity Secret {secret} does not exist")]
    Missing { secret: ObjectKey },
    #[error("the age identity Secret {secret} has no data key ending in `{KEY_SUFFIX}`")]
    NoKey { secret: ObjectKey },
    #[error(transparent)]
    Parse(#[from] SopsError),
}

/// The identities in `secret`'s data keys ending in `.agekey`.
pub async fn load(
    client: kube::Client,
    secret: &ObjectKey,
) -> Result<Identities, AgeIdentityError> {
    let api: Api<Secret> = Api::namespaced(client, &secret.namespace);
    let found = api
        .get_opt(&secret.name)
        .await
        .map_err(|source| AgeIdentityError::Read {
            secret: secret.clone(),
            source,
        })?
        .ok_or_else(|| AgeIdentityError::Missing {
            secret: secret.clone(),
        })?;
    parse(secret, found)
}

/// The identities of a Secret as read (pure).
pub fn parse(secret: &ObjectKey, found: Secret) -> Result<Identities, AgeIdentityError> {
    let mut text = String::new();
    for (key, value) in found.data.unwrap_or_default() {
        if !key.ends_with(KEY_SUFFIX) {
            continue;
        }
        let file = String::from_utf8(value.0).map_err(|_| SopsError::BadIdentity {
            what: format!("{secret} {key}"),
        })?;
        text.push_str(&file);
        text.push('\n');
    }
    if text.is_empty() {
        return Err(AgeIdentityError::NoKey {
            secret: secret.clone(),
        });
    }
    Ok(Identities::parse(&text, &format!("in Secret {secret}"))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret(entries: &[(&str, &str)]) -> Secret {
        Secret {
            data: Some(
                entries
                    .iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Secret::default()
        }
    }

    #[test]
    fn reads_the_agekey_entries_as_flux_does_and_never_names_a_value() {
        let key = ObjectKey::new("shop", "sops-age");
        let id = age::x25519::Identity::generate();
        let file = format!(
            "# created: 2026-12-05\n# public key: {}\n{}\n",
            id.to_public(),
            secrecy::ExposeSecret::expose_secret(&id.to_string())
        );
        assert!(parse(&key, secret(&[("age.agekey", &file), ("README", "x")])).is_ok());
        let err = parse(&key, secret(&[("identity", &file)])).unwrap_err();
        assert!(
            err.to_string().contains("no data key ending in `.agekey`"),
            "{err}"
        );
        let err = parse(&key, secret(&[("age.agekey", "AGE-SECRET-KEY-1NOTAKEY")])).unwrap_err();
        assert!(err.to_string().contains("shop/sops-age"), "{err}");
        assert!(!err.to_string().contains("NOTAKEY"), "{err}");
    }
}
