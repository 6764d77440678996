//! Unpeering one ForeignCluster (the finalizer's cleanup step): our NetworkConfig leaves the
//! peer's API; the IPAM forgets the peer; the TunnelEndpoint, the NatMapping shards and the
//! NetworkConfig the peer sent us leave our API. Every step is tried even when an earlier one
//! failed; the finalizer is released only when all succeeded (an unreachable peer API keeps the
//! ForeignCluster, retried with backoff, and says so in its status).

use isthmus_api::{ClusterId, ForeignCluster, NatMapping, NetworkConfig};
use kube::api::{DeleteParams, ListParams};
use kube::runtime::controller::Action;
use kube::{Api, Client};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::objects;
use crate::plan::PeeringObservation;
use crate::received;

use super::peering::{delete_tunnel_endpoint, ignore_not_found, report};

/// Removes everything the peering with `fc` created, in both APIs and in the IPAM.
pub async fn cleanup(fc: &ForeignCluster, ctx: &Context) -> Result<Action> {
    let peer = &fc.spec.cluster_id;
    let mut errors = Vec::new();
    let mut unreachable = None;
    match ctx.peers.resolve(fc).await {
        Ok(client) => {
            if let Err(e) = delete_sent(ctx, client.client).await {
                unreachable = Some(format!("removing our NetworkConfig from {peer}: {e}"));
            }
        }
        Err(e) => unreachable = Some(format!("cannot reach the API of peer {peer}: {e}")),
    }
    ctx.peer_watches.stop(peer);
    {
        let lock = ctx.peer_lock(peer);
        let _guard = lock.lock().await;
        if let Err(e) = ctx.ipam.remove_peer(peer).await {
            errors.push(format!("IPAM: {e}"));
        }
    }
    if let Err(e) = delete_local(ctx, peer).await {
        errors.push(format!("local objects: {e}"));
    }
    if let Some(m) = unreachable {
        report(fc, ctx, &PeeringObservation::UnpeeringBlocked(m.clone())).await?;
        errors.push(m);
    }
    if !errors.is_empty() {
        return Err(Error::Cleanup(errors));
    }
    tracing::info!(cluster = %ctx.config.cluster_id, %peer, "unpeered");
    Ok(Action::await_change())
}

async fn delete_sent(ctx: &Context, client: Client) -> kube::Result<()> {
    let api: Api<NetworkConfig> = Api::namespaced(client, &ctx.config.sent_namespace());
    let name = ctx.config.cluster_id.as_str();
    ignore_not_found(api.delete(name, &DeleteParams::default()).await)
}

/// Removes the local objects of the peering, trying each even after a failure.
async fn delete_local(ctx: &Context, peer: &ClusterId) -> Result<()> {
    let mut errors = Vec::new();
    if let Err(e) = delete_tunnel_endpoint(ctx, peer).await {
        errors.push(format!("TunnelEndpoint: {e}"));
    }
    let nms: Api<NatMapping> = Api::namespaced(ctx.local.clone(), &ctx.config.namespace);
    let dp = DeleteParams::default();
    // every shard of the peer, and the older whole-peer object, in one call
    let shards = ListParams::default().labels(&objects::peer_selector(peer));
    if let Err(e) = nms.delete_collection(&dp, &shards).await {
        errors.push(format!("NatMappings: {e}"));
    }
    let ncs = received::peer_api(ctx, peer);
    if let Err(e) = ignore_not_found(ncs.delete(peer.as_str(), &dp).await) {
        errors.push(format!("received NetworkConfig: {e}"));
    }
    match errors.is_empty() {
        true => Ok(()),
        false => Err(Error::Cleanup(errors)),
    }
}
