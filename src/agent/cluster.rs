//! What the agent reads of the cluster around its plan: a start-up check that the custom
//! resources are served and listable, reflectors on the configuration kinds, and discovery.

use super::runtime::AgentError;
use crate::config;
use crate::crd::{ClusterWatchRule, GitDestination, GitRepoConfig, WatchRule};
use futures::StreamExt;
use kube::Resource;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use std::sync::Arc;
use tokio::sync::Notify;

/// Fails fast when the agent could not work at all: a custom resource kind that is not served
/// (CRDs missing) or that the service account may not list.
pub(super) async fn preflight(client: &kube::Client) -> Result<(), AgentError> {
    async fn check<K>(client: &kube::Client) -> Result<(), AgentError>
    where
        K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        let resource = format!("{}.{}", K::plural(&()), K::group(&()));
        let api: Api<K> = Api::all(client.clone());
        match api.list(&kube::api::ListParams::default().limit(1)).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Err(AgentError::CrdMissing { resource }),
            Err(kube::Error::Api(e)) if e.code == 403 => Err(AgentError::Forbidden {
                resource,
                detail: e.message,
            }),
            Err(source) => Err(AgentError::Preflight { resource, source }),
        }
    }
    check::<GitRepoConfig>(client).await?;
    check::<GitDestination>(client).await?;
    check::<WatchRule>(client).await?;
    check::<ClusterWatchRule>(client).await
}

/// A reflector on every object of kind `K`, notifying `changed` on each event.
pub(super) fn reflect<K>(client: kube::Client, changed: Arc<Notify>) -> reflector::Store<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let api: Api<K> = Api::all(client);
    let stream = reflector(writer, watcher(api, watcher::Config::default())).default_backoff();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            if let Err(e) = event {
                tracing::warn!(kind = %K::kind(&()), error = %e, "watch of configuration failed; retrying");
                continue;
            }
            changed.notify_one();
        }
    });
    reader
}

pub(super) fn state<K: Clone + Resource<DynamicType = ()>>(store: &reflector::Store<K>) -> Vec<K> {
    store.state().iter().map(|o| (**o).clone()).collect()
}

pub(super) async fn discover(client: &kube::Client) -> config::Discovery {
    match kube::Discovery::new(client.clone()).run().await {
        Ok(discovery) => config::Discovery::from(&discovery),
        Err(e) => {
            tracing::warn!(error = %e, "discovery failed; using no resources until the next change");
            config::Discovery::default()
        }
    }
}
