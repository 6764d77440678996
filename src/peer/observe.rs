//! Reading where a peering stands in one cluster, for the wait loops of `peer` and `unpeer`:
//! the ForeignCluster for the peer, its TunnelEndpoint and NatMapping, whether the gateway has
//! published its key (its public-key ConfigMap exists) and who holds the
//! gateway's Lease. A failed read is recorded, not fatal: the loop tries again.

use isthmus_api::{ClusterId, ForeignCluster, LABEL_REMOTE_CLUSTER, NatMapping, TunnelEndpoint};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::{Api, ResourceExt};

use crate::peer::error::request_error;
use crate::peer::preflight::Facts;

/// The gateway's Lease, as last written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseView {
    pub name: String,
    pub holder: Option<String>,
    pub renewed: Option<Timestamp>,
    pub duration_secs: Option<i32>,
}

/// What one cluster shows about its peering with one peer.
#[derive(Debug, Clone, Default)]
pub struct PeeringView {
    pub foreign_cluster: Option<ForeignCluster>,
    pub tunnel: Option<TunnelEndpoint>,
    pub nat_mapping: bool,
    /// The gateway's public-key ConfigMap exists (None: not read).
    pub gateway_key: Option<bool>,
    pub lease: Option<LeaseView>,
    /// A read failed (the view is then partial).
    pub read_error: Option<String>,
}

/// Reads `facts`' cluster's view of its peering with `peer`.
pub async fn observe(facts: &Facts, peer: &ClusterId) -> PeeringView {
    let mut view = PeeringView::default();
    if let Err(e) = read_into(&mut view, facts, peer).await {
        view.read_error = Some(request_error(&e));
    }
    view
}

async fn read_into(view: &mut PeeringView, facts: &Facts, peer: &ClusterId) -> kube::Result<()> {
    let client = facts.conn.client.clone();
    let ns = facts.conn.namespace.as_str();
    let fcs: Api<ForeignCluster> = Api::all(client.clone());
    view.foreign_cluster = fcs
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|fc| fc.spec.cluster_id == *peer)
        .min_by_key(|fc| fc.name_any() != peer.as_str());
    let teps: Api<TunnelEndpoint> = Api::namespaced(client.clone(), ns);
    view.tunnel = teps.get_opt(peer.as_str()).await?;
    // the peer's NatMapping shards (and an older whole-peer object), found by label
    let nms: Api<NatMapping> = Api::namespaced(client.clone(), ns);
    let of_peer = ListParams::default().labels(&format!("{LABEL_REMOTE_CLUSTER}={peer}"));
    view.nat_mapping = !nms.list_metadata(&of_peer).await?.items.is_empty();
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    view.gateway_key = Some(
        config_maps
            .get_metadata_opt(&facts.info.gateway_public_key)
            .await?
            .is_some(),
    );
    let leases: Api<Lease> = Api::namespaced(client, ns);
    view.lease = leases.get_opt(&facts.info.gateway_lease).await?.map(|l| {
        let spec = l.spec.unwrap_or_default();
        LeaseView {
            name: facts.info.gateway_lease.clone(),
            holder: spec.holder_identity.filter(|h| !h.is_empty()),
            renewed: spec.renew_time.map(|t| t.0),
            duration_secs: spec.lease_duration_seconds,
        }
    });
    Ok(())
}
