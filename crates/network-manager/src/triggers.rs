//! Trigger streams for controllers: [`spec_changes`] watches a kind and yields an object only
//! when its `generation` changed or it was deleted, so that status-only updates (the gateway
//! reports a TunnelEndpoint's connection every few seconds) do not re-run the owner's reconcile.

use std::collections::HashMap;
use std::fmt::Debug;

use futures::{Stream, StreamExt, future};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher as watch};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;

/// The objects of `api` whose generation changed since last seen, and deleted objects.
pub fn spec_changes<K>(api: Api<K>) -> impl Stream<Item = Result<K, watcher::Error>> + Send
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let mut seen: HashMap<(Option<String>, String), Option<i64>> = HashMap::new();
    watch(api, isthmus_kubeclient::watcher_config())
        .default_backoff()
        .filter_map(move |event| {
            let out = match event {
                Ok(Event::Apply(o) | Event::InitApply(o)) => {
                    let key = (o.namespace(), o.name_any());
                    let generation = o.meta().generation;
                    (seen.insert(key, generation) != Some(generation)).then_some(Ok(o))
                }
                Ok(Event::Delete(o)) => {
                    seen.remove(&(o.namespace(), o.name_any()));
                    Some(Ok(o))
                }
                Ok(Event::Init | Event::InitDone) => None,
                Err(e) => Some(Err(e)),
            };
            future::ready(out)
        })
}
