//! [`PeerWatches`]: one watch per peer on the NetworkConfig we wrote into its API, so that the
//! peer's decision (written into that object's status) re-triggers the ForeignCluster controller
//! at once instead of at the next periodic check. A watch runs with the client it was started
//! with; when the peer's client changes (its Secret was edited: a rotated token, another
//! server), the watch is restarted with the new one, so it never keeps using old credentials.
//! A watch the peer refuses (401, 403: the token expired or was revoked) re-triggers the
//! controller too, which reads the Secret again: a token rotated there is picked up then, not at
//! the next periodic check.

use std::collections::HashMap;
use std::sync::Mutex;

use futures::StreamExt;
use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use isthmus_api::{ClusterId, NetworkConfig};
use kube::Api;
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::task::AbortHandle;

use crate::peers::PeerClient;

/// One running watch and the version of the client it runs with.
#[derive(Debug)]
struct Running {
    task: AbortHandle,
    client_version: u64,
}

/// The running peer watches; each event sends a unit on the trigger channel.
#[derive(Debug)]
pub struct PeerWatches {
    tasks: Mutex<HashMap<ClusterId, Running>>,
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

    /// Starts watching object `name` in `namespace` of `peer`'s API through `client`, unless
    /// already watching through that client; a watch through another version of the client is
    /// stopped and replaced.
    pub fn ensure(&self, peer: &ClusterId, client: &PeerClient, namespace: &str, name: &str) {
        let mut tasks = self.lock();
        match tasks.get(peer) {
            Some(r) if r.client_version == client.version && !r.task.is_finished() => return,
            Some(r) => r.task.abort(),
            None => {}
        }
        let ar = ApiResource::erase::<NetworkConfig>(&());
        let api: Api<DynamicObject> = Api::namespaced_with(client.client.clone(), namespace, &ar);
        let config = isthmus_kubeclient::watcher_config().fields(&format!("metadata.name={name}"));
        let trigger = self.trigger.clone();
        let peer_id = peer.clone();
        let task = tokio::spawn(async move {
            let mut events = std::pin::pin!(watcher(api, config).default_backoff());
            while let Some(event) = events.next().await {
                let wake = match event {
                    Ok(_) => true,
                    Err(e) => {
                        tracing::debug!(peer = %peer_id, error = %e, "peer watch error");
                        is_refused(&e)
                    }
                };
                if wake && trigger.unbounded_send(()).is_err() {
                    return;
                }
            }
        });
        let running = Running {
            task: task.abort_handle(),
            client_version: client.version,
        };
        tasks.insert(peer.clone(), running);
    }

    /// Stops watching `peer`.
    pub fn stop(&self, peer: &ClusterId) {
        if let Some(r) = self.lock().remove(peer) {
            r.task.abort();
        }
    }

    /// Stops every watch.
    pub fn stop_all(&self) {
        for (_, r) in self.lock().drain() {
            r.task.abort();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ClusterId, Running>> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Whether the peer's API refused the watch's credentials (401 or 403).
fn is_refused(e: &watcher::Error) -> bool {
    let inner = match e {
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) => e,
        watcher::Error::WatchError(s) => return matches!(s.code, 401 | 403),
        watcher::Error::NoResourceVersion => return false,
    };
    matches!(inner, kube::Error::Api(s) if matches!(s.code, 401 | 403))
}
