//! Who this agent is: the cluster's identity (the uid of `kube-system`, unless configured) and
//! this replica's (the pod name).

use k8s_openapi::api::core::v1::Namespace;
use kube::Api;

/// The cluster's identity could not be read.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(
        "cannot read the uid of namespace kube-system for the cluster's identity: {source} \
         (grant get on namespaces, or set --cluster-name)"
    )]
    Read { source: kube::Error },
    #[error("namespace kube-system has no uid; set --cluster-name")]
    NoUid,
}

/// The uid of the `kube-system` namespace: stable for the cluster's life and different for
/// every cluster, so two clusters installed from the same manifests are never one owner.
pub async fn cluster_uid(client: &kube::Client) -> Result<String, IdentityError> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = namespaces
        .get("kube-system")
        .await
        .map_err(|source| IdentityError::Read { source })?;
    ns.metadata
        .uid
        .filter(|u| !u.is_empty())
        .ok_or(IdentityError::NoUid)
}

/// This replica's name: `POD_NAME` (the downward API), else the host name.
pub fn pod_name() -> String {
    std::env::var("POD_NAME")
        .ok()
        .filter(|n| !n.trim().is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| format!("gitops-reverser-{}", std::process::id()))
}
