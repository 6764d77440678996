//! The isthmus network-manager controllers (Liqo's network module, as the reference thesis describes it
//! chapters 4-5):
//!
//! - **ForeignCluster** → our `NetworkConfig` in the peer's API (PodCIDR, ExternalCIDR, gateway
//!   endpoint, WireGuard public key), the peer's decision copied back into the IPAM, the
//!   `TunnelEndpoint` once both sides processed, and, behind a finalizer, removal of everything
//!   the peering created (`foreign_cluster`).
//! - **received NetworkConfig** (its `clusterID` is us, in the namespace of the peer it speaks
//!   for: `origin`) → validation, the IPAM decision (accept or remap) and its status
//!   (`received`).
//! - **NatMapping** shards published from the IPAM's endpoint reflections (`nat_shards`): only
//!   the blocks each durable batch changed.
//!
//! [`run`] starts all three over one local client, a [`PeerResolver`] and a [`DurableIpam`].
//! Planning is pure ([`plan`], [`objects`]); the controllers fetch, plan, apply and report.

pub mod config;
mod context;
pub mod error;
mod foreign_cluster;
pub mod nat_shards;
pub mod objects;
pub mod origin;
pub mod peer_kubeconfig;
mod peer_watch;
pub mod peers;
pub mod plan;
mod received;
pub mod telemetry;
mod triggers;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use isthmus_ipam_store::DurableIpam;

use crate::context::Context;
use tokio::sync::watch;

pub use config::{Backoff, ConfigError, LocalGateway, NetworkManagerConfig};
pub use error::{Error, Result};
pub use nat_shards::Pacing;
pub use peers::{KubeconfigPeers, LabPeers, PeerClient, PeerResolver, ResolveError};
pub use telemetry::NetworkManagerTelemetry;

/// Runs the network-manager controllers until `shutdown` resolves, then lets the reconciles in
/// flight finish and returns. The configuration is validated before anything starts.
///
/// `local` is this cluster's API (ForeignClusters, received NetworkConfigs, TunnelEndpoints,
/// NatMappings live in it); `peers` turns a ForeignCluster into a client for the peer's API;
/// `ipam` is this cluster's durable IPAM (the same instance the gRPC IPAM service serves).
pub async fn run(
    config: NetworkManagerConfig,
    local: kube::Client,
    peers: Arc<dyn PeerResolver>,
    ipam: DurableIpam,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let telemetry = NetworkManagerTelemetry::default();
    run_observed(config, telemetry, local, peers, ipam, shutdown).await
}

/// How long the controllers may take to finish their in-flight reconciles once asked to stop
/// (well inside a pod's 30 s termination grace period).
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// [`run`], recording metrics, health and Events into `telemetry`.
pub async fn run_observed(
    config: NetworkManagerConfig,
    telemetry: NetworkManagerTelemetry,
    local: kube::Client,
    peers: Arc<dyn PeerResolver>,
    ipam: DurableIpam,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    config.validate()?;
    tracing::info!(cluster = %config.cluster_id, namespace = %config.namespace,
        ipam = %ipam.store_name(), "network-manager starting");
    let (stop_tx, stop_rx) = watch::channel(false);
    let (peer_watches, peer_events) = peer_watch::PeerWatches::new();
    let ctx = Arc::new(Context::new(
        config,
        local,
        peers,
        ipam,
        peer_watches,
        telemetry,
    ));
    let signal = tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let fc = foreign_cluster::controller(ctx.clone(), peer_events, stopped(stop_rx.clone()));
    let nc = received::controller(ctx.clone(), stopped(stop_rx.clone()));
    let nat = nat_shards::run(ctx.clone(), stop_rx.clone());
    let all = async {
        tokio::join!(fc, nc, nat);
    };
    // The controllers finish their in-flight reconciles after the stop, within a grace period;
    // past it they are dropped (every reconcile is idempotent and crash-safe). A controller
    // stopped while it was still starting was seen to wait forever (about 1 stop in 30 under
    // load, cause inside the controller runtime not found).
    let grace = async {
        stopped(stop_rx).await;
        tokio::time::sleep(STOP_GRACE).await;
    };
    tokio::select! {
        () = all => {}
        () = grace => tracing::warn!(cluster = %ctx.config.cluster_id, grace = ?STOP_GRACE,
            "controllers still busy after the stop's grace period; dropped"),
    }
    ctx.peer_watches.stop_all();
    signal.abort();
    tracing::info!(cluster = %ctx.config.cluster_id, "network-manager stopped");
    Ok(())
}

/// Resolves once `rx` turns true (or its sender is gone).
async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}
