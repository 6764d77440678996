//! [`PeerWatches`]: one watch per peer on the NetworkConfig we wrote into its API, so that the
//! peer's decision (written into that object's status) re-triggers the ForeignCluster controller
//! at once instead of at the next periodic check.

use std::collections::HashMap;
use std::sync::Mutex;

use futures::StreamExt;
use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use isthmus_api::{ClusterId, NetworkConfig};
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::task::AbortHandle;

/// The running peer watches; each event sends a unit on the trigger channel.
#[derive(Debug)]
pub struct PeerWatches {
    tasks: Mutex<HashMap<ClusterId, AbortHandle>>,
    trigger: UnboundedSender<()>,
}

impl PeerWatches {
    /// The watches and the receiving end of their trigger channel.
    pub fn new() -> (Self, UnboundedReceiver<()>) {
        let (trigger, rx) = unbounded();
        let w = PeerWatches {
            tasks: Mutex::default(),
            trigger,
        };
        (w, rx)
    }

    /// Starts watching object `name` in `namespace` of `peer`'s API, unless already watching.
    pub fn ensure(&self, peer: &ClusterId, client: Client, namespace: &str, name: &str) {
        let mut tasks = self.lock();
        if tasks.get(peer).is_some_and(|t| !t.is_finished()) {
            return;
        }
        let ar = ApiResource::erase::<NetworkConfig>(&());
        let api: Api<DynamicObject> = Api::namespaced_with(client, namespace, &ar);
        let config = isthmus_kubeclient::watcher_config().fields(&format!("metadata.name={name}"));
        let trigger = self.trigger.clone();
        let peer_id = peer.clone();
        let task = tokio::spawn(async move {
            let mut events = std::pin::pin!(watcher(api, config).default_backoff());
            while let Some(event) = events.next().await {
                match event {
                    Ok(_) => {
                        if trigger.unbounded_send(()).is_err() {
                            return;
                        }
                    }
                    Err(e) => tracing::debug!(peer = %peer_id, error = %e, "peer watch error"),
                }
            }
        });
        tasks.insert(peer.clone(), task.abort_handle());
    }

    /// Stops watching `peer`.
    pub fn stop(&self, peer: &ClusterId) {
        if let Some(t) = self.lock().remove(peer) {
            t.abort();
        }
    }

    /// Stops every watch.
    pub fn stop_all(&self) {
        for (_, t) in self.lock().drain() {
            t.abort();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ClusterId, AbortHandle>> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }
}
