//! Peering one ForeignCluster (the finalizer's apply step), as a story: resolve the peer's API,
//! send our NetworkConfig, read both sides' decisions, record the peer's decision in the IPAM,
//! write or remove the TunnelEndpoint, report the status.

use isthmus_api::{ClusterId, ForeignCluster, NetworkConfig, TunnelEndpoint};
use isthmus_ipam::{IpamError, LocalNetworks, PeerNetworks};
use isthmus_ipam_store::ServiceError;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::objects::{self, FIELD_MANAGER};
use crate::peers::PeerClient;
use crate::plan::{self, PeerDecision, PeeringObservation, Side};
use crate::received::{self, ReceivedConfig};

/// Brings the peering of `fc` one step closer to `Peered` and reports where it stands.
pub async fn apply(fc: &ForeignCluster, ctx: &Context) -> Result<Action> {
    let peer = fc.spec.cluster_id.clone();
    if let Err(message) = check(fc, ctx) {
        report(fc, ctx, &PeeringObservation::Invalid(message)).await?;
        return Ok(Action::await_change());
    }
    let observed = match ctx.peers.resolve(fc).await {
        Ok(client) => exchange(fc, ctx, &peer, client).await,
        Err(source) => Err(Error::PeerUnreachable { peer, source }),
    };
    match observed {
        Ok(observation) => {
            report(fc, ctx, &observation).await?;
            let settled = matches!(
                observation,
                PeeringObservation::Observed { tunnel: true, .. }
            );
            let wait = match settled {
                true => ctx.config.resync,
                false => ctx.config.pending_recheck,
            };
            Ok(Action::requeue(wait))
        }
        Err(e) if e.is_kubeconfig_refused() => {
            // nothing was built or written; retried with backoff, so a fixed Secret is read
            report(
                fc,
                ctx,
                &PeeringObservation::KubeconfigRefused(e.to_string()),
            )
            .await?;
            Err(e)
        }
        Err(e) if e.is_peer_unreachable() => {
            report(fc, ctx, &PeeringObservation::Unreachable(e.to_string())).await?;
            Err(e)
        }
        Err(e) => Err(e),
    }
}

fn check(fc: &ForeignCluster, ctx: &Context) -> Result<(), String> {
    fc.spec.validate().map_err(|e| e.to_string())?;
    if fc.spec.cluster_id == ctx.config.cluster_id {
        return Err(format!("{} is this cluster's own ID", fc.spec.cluster_id));
    }
    Ok(())
}

/// Everything that talks to both APIs; returns what it observed.
async fn exchange(
    fc: &ForeignCluster,
    ctx: &Context,
    peer: &ClusterId,
    client: PeerClient,
) -> Result<PeeringObservation> {
    let config = &ctx.config;
    let our_name = config.cluster_id.as_str();
    ctx.peer_watches
        .ensure(peer, &client, &config.sent_namespace(), our_name);
    let client = client.client;
    let local = ctx.ipam.read(|i| i.local().clone())?;
    let sent = send_network_config(ctx, peer, client, &local).await?;
    let (mut peer_side, decision) = plan::peer_side(&sent);
    let received = received_from(ctx, peer).await?;
    let local_side = local_side(received.as_ref());
    let networks = record_peer_decision(ctx, peer, decision, &mut peer_side).await?;
    let received_spec = received.as_ref().and_then(|r| r.spec.as_ref().ok());
    let ready = plan::ready_for_tunnel(&peer_side, &local_side, networks.as_ref(), received_spec);
    let tunnel = match (ready, received_spec) {
        (Some(n), Some(spec)) => {
            let spec = objects::tunnel_endpoint_spec(&local, n, spec);
            let tep = objects::tunnel_endpoint(config, spec, objects::owner_reference(fc));
            apply_tunnel_endpoint(ctx, &tep).await?;
            true
        }
        _ => {
            delete_tunnel_endpoint(ctx, peer).await?;
            false
        }
    };
    Ok(PeeringObservation::Observed {
        peer: peer_side,
        local: local_side,
        tunnel,
    })
}

/// Creates or updates our NetworkConfig in the peer's API; returns it as stored there.
async fn send_network_config(
    ctx: &Context,
    peer: &ClusterId,
    client: Client,
    local: &LocalNetworks,
) -> Result<NetworkConfig> {
    let nc = objects::outgoing_network_config(&ctx.config, local, peer);
    let api: Api<NetworkConfig> = Api::namespaced(client, &ctx.config.sent_namespace());
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(&nc.name_any(), &params, &Patch::Apply(&nc))
        .await
        .map_err(|source| Error::PeerApi {
            peer: peer.clone(),
            source,
        })
}

/// The NetworkConfig the peer sent us (into its own namespace), if any.
async fn received_from(ctx: &Context, peer: &ClusterId) -> Result<Option<ReceivedConfig>> {
    let obj = received::peer_api(ctx, peer).get_opt(peer.as_str()).await?;
    Ok(obj
        .map(|o| received::parse(&o))
        .filter(|r| r.origin.as_deref() == Some(peer.as_str())))
}

fn local_side(received: Option<&ReceivedConfig>) -> Side {
    match received {
        None => Side::Waiting("no NetworkConfig received from the peer yet".into()),
        Some(r) => {
            plan::side_of(
                r.generation,
                Some(&r.status),
                "we have not processed it yet",
            )
            .0
        }
    }
}

/// Records the peer's decision about us in the IPAM, once we know the peer (our own decision
/// exists); returns the peer's networks as the IPAM now holds them. A decision the IPAM refuses
/// (a view of another size than our network) turns the peer's side into `Refused`.
async fn record_peer_decision(
    ctx: &Context,
    peer: &ClusterId,
    decision: Option<PeerDecision>,
    peer_side: &mut Side,
) -> Result<Option<PeerNetworks>> {
    let lock = ctx.peer_lock(peer);
    let _guard = lock.lock().await;
    let known = ctx.ipam.read(|i| i.peer(peer).cloned())?;
    let (Some(known), Some(d)) = (known.clone(), decision) else {
        return Ok(known);
    };
    match ctx
        .ipam
        .set_peer_view(peer, d.pod_nat, d.external_nat)
        .await
    {
        Ok(networks) => Ok(Some(networks)),
        Err(ServiceError::Ipam(e @ IpamError::InvalidPeerNetwork { .. })) => {
            *peer_side = Side::Refused {
                reason: plan::REASON_INVALID_PEER_DECISION.to_owned(),
                message: e.to_string(),
            };
            Ok(Some(known))
        }
        Err(e) => Err(e.into()),
    }
}

async fn apply_tunnel_endpoint(ctx: &Context, tep: &TunnelEndpoint) -> Result<()> {
    let api: Api<TunnelEndpoint> = Api::namespaced(ctx.local.clone(), &ctx.config.namespace);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(&tep.name_any(), &params, &Patch::Apply(tep))
        .await?;
    Ok(())
}

/// Removes the TunnelEndpoint of `peer` if it exists. One already being deleted is left alone:
/// the gateway holds it (finalizer `net.isthmus.io/gateway`) until the peer is out of the
/// kernel, and nothing here waits for that.
pub async fn delete_tunnel_endpoint(ctx: &Context, peer: &ClusterId) -> Result<()> {
    let api: Api<TunnelEndpoint> = Api::namespaced(ctx.local.clone(), &ctx.config.namespace);
    let existing = api.get_opt(peer.as_str()).await?;
    if existing.is_some_and(|t| t.metadata.deletion_timestamp.is_none()) {
        ignore_not_found(api.delete(peer.as_str(), &DeleteParams::default()).await)?;
    }
    Ok(())
}

/// Treats "already gone" as done.
pub fn ignore_not_found<T>(r: kube::Result<T>) -> kube::Result<()> {
    match r {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Patches the ForeignCluster status from `observation`, when it changes anything.
pub async fn report(
    fc: &ForeignCluster,
    ctx: &Context,
    observation: &PeeringObservation,
) -> Result<()> {
    let generation = fc.metadata.generation;
    let now = Timestamp::now();
    let status = plan::foreign_cluster_status(fc.status.as_ref(), observation, generation, now);
    if fc.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let before = fc.status.as_ref().and_then(|s| s.phase.as_deref());
    if before != status.phase.as_deref() {
        tracing::info!(
            cluster = %ctx.config.cluster_id, peer = %fc.spec.cluster_id,
            phase = ?status.phase, ?observation, "peering phase changed"
        );
        let ready = status
            .conditions
            .iter()
            .find(|c| c.type_ == plan::COND_READY);
        ctx.telemetry.phase_changed(
            fc,
            status.phase.as_deref().unwrap_or(""),
            ready.map_or("", |c| c.reason.as_str()),
            ready.map_or("", |c| c.message.as_str()),
        );
    }
    let api: Api<ForeignCluster> = Api::all(ctx.local.clone());
    let patch = json!({ "status": status });
    api.patch_status(
        &fc.name_any(),
        &PatchParams::default(),
        &Patch::Merge(patch),
    )
    .await?;
    Ok(())
}
