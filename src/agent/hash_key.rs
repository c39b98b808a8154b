//! The key of the keyed content hash of encrypted Secrets, kept in a cluster Secret (never in
//! Git): read at first need, created with 32 random bytes when the Secret does not exist yet.
//! Every replica and every restart reads the same key, so an unchanged Secret keeps its hash.
//! The install manifests grant only `get` on Secrets; where creating is not allowed, the error
//! says the one command that creates it.

use crate::config::ObjectKey;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::PostParams;
use std::collections::BTreeMap;

/// The Secret's data key holding the hash key.
pub const DATA_KEY: &str = "key";
/// The default Secret: `gitops-reverser-system/gitops-reverser-hash-key`.
pub const DEFAULT_NAMESPACE: &str = "gitops-reverser-system";
pub const DEFAULT_NAME: &str = "gitops-reverser-hash-key";

/// Reading or creating the hash key Secret failed (the message names the Secret, never the
/// key).
#[derive(Debug, thiserror::Error)]
pub enum HashKeyError {
    #[error("cannot read the hash key Secret {secret}: {source}")]
    Read {
        secret: ObjectKey,
        source: kube::Error,
    },
    #[error(
        "cannot create the hash key Secret {secret} ({source}); create it once with `kubectl -n {} create secret generic {} --from-literal=key=\"$(head -c 32 /dev/urandom | base64)\"`",
        secret.namespace,
        secret.name
    )]
    Create {
        secret: ObjectKey,
        source: kube::Error,
    },
    #[error("the hash key Secret {secret} has no `{DATA_KEY}` of at least 16 bytes")]
    Unusable { secret: ObjectKey },
}

/// The key in `secret`, creating the Secret with a random key when it is missing (a replica
/// that loses the race to create it reads the winner's).
pub async fn load_or_create(
    client: kube::Client,
    secret: &ObjectKey,
) -> Result<Vec<u8>, HashKeyError> {
    let api: Api<Secret> = Api::namespaced(client, &secret.namespace);
    let read = |found: Secret| {
        found
            .data
            .and_then(|mut d| d.remove(DATA_KEY))
            .map(|b| b.0)
            .filter(|k| k.len() >= 16)
            .ok_or_else(|| HashKeyError::Unusable {
                secret: secret.clone(),
            })
    };
    match api.get_opt(&secret.name).await {
        Ok(Some(found)) => return read(found),
        Ok(None) => {}
        Err(source) => {
            return Err(HashKeyError::Read {
                secret: secret.clone(),
                source,
            });
        }
    }
    let mut key = vec![0u8; 32];
    aes_gcm::aead::rand_core::RngCore::fill_bytes(&mut aes_gcm::aead::OsRng, &mut key);
    let mut fresh = Secret::default();
    fresh.metadata.name = Some(secret.name.clone());
    fresh.metadata.labels = Some(BTreeMap::from([(
        "app.kubernetes.io/name".to_string(),
        "gitops-reverser".to_string(),
    )]));
    fresh.data = Some(BTreeMap::from([(
        DATA_KEY.to_string(),
        ByteString(key.clone()),
    )]));
    match api.create(&PostParams::default(), &fresh).await {
        Ok(_) => {
            tracing::info!(secret = %secret, "created the hash key Secret of encrypted Secrets");
            Ok(key)
        }
        Err(kube::Error::Api(e)) if e.code == 409 => match api.get(&secret.name).await {
            Ok(found) => read(found),
            Err(source) => Err(HashKeyError::Read {
                secret: secret.clone(),
                source,
            }),
        },
        Err(source) => Err(HashKeyError::Create {
            secret: secret.clone(),
            source,
        }),
    }
}
