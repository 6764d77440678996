//! [`Context`]: what every controller of one network-manager shares: configuration, the local
//! client, the peer resolver, the IPAM, a per-peer lock that serialises IPAM decisions about one
//! peer across controllers, and the retry counters behind the exponential backoff.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use isthmus_api::ClusterId;
use isthmus_ipam_store::DurableIpam;
use kube::Client;

use crate::config::NetworkManagerConfig;
use crate::peer_watch::PeerWatches;
use crate::peers::PeerResolver;
use crate::telemetry::NetworkManagerTelemetry;

/// Shared state of the controllers.
pub struct Context {
    pub config: NetworkManagerConfig,
    pub local: Client,
    pub peers: Arc<dyn PeerResolver>,
    pub ipam: DurableIpam,
    pub peer_watches: PeerWatches,
    pub telemetry: NetworkManagerTelemetry,
    peer_locks: Mutex<HashMap<ClusterId, Arc<tokio::sync::Mutex<()>>>>,
    failures: Mutex<HashMap<String, u32>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("config", &self.config)
            .field("peers", &self.peers)
            .field("ipam", &self.ipam)
            .finish_non_exhaustive()
    }
}

impl Context {
    pub fn new(
        config: NetworkManagerConfig,
        local: Client,
        peers: Arc<dyn PeerResolver>,
        ipam: DurableIpam,
        peer_watches: PeerWatches,
        telemetry: NetworkManagerTelemetry,
    ) -> Self {
        Context {
            config,
            local,
            peers,
            ipam,
            peer_watches,
            telemetry,
            peer_locks: Mutex::default(),
            failures: Mutex::default(),
        }
    }

    /// The lock serialising IPAM changes about `peer` (decision, peer view, removal) with the
    /// checks that justify them.
    pub fn peer_lock(&self, peer: &ClusterId) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.peer_locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(peer.clone()).or_default().clone()
    }

    /// Records a failed reconcile of `key` and returns how long to wait before the next try.
    pub fn next_retry(&self, key: &str) -> Duration {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = f.entry(key.to_owned()).or_insert(0);
        let delay = self.config.backoff.delay(*n);
        *n = n.saturating_add(1);
        delay
    }

    /// Forgets the failures of `key` after a successful reconcile.
    pub fn succeeded(&self, key: &str) {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        f.remove(key);
    }
}
