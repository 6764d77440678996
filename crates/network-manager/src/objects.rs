//! The objects the network-manager writes, built as values (pure): their names, labels and owner
//! references, the NetworkConfig we send to a peer, the merged TunnelEndpoint and the NatMapping.
//!
//! Naming: in every API an object of a peering is named after the *other* cluster it concerns:
//! our NetworkConfig in peer P's API is named after us (in our namespace there,
//! `<namespace>-peer-<us>`); in our API the NetworkConfig P sent (in P's namespace,
//! `<namespace>-peer-<P>`) and the TunnelEndpoint for P are named after P, and P's NatMapping
//! shards `P.block256-<i>` (a cluster ID has no dot, so no shard name is ever another peer's
//! object name).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use isthmus_api::{
    BACKEND_PUBLIC_KEY, BackendType, ClusterId, ForeignCluster, LABEL_NAT_SHARD,
    LABEL_ORIGIN_CLUSTER, LABEL_REMOTE_CLUSTER, NatMapping, NatMappingSpec, NetworkConfig,
    NetworkConfigSpec, TunnelEndpoint, TunnelEndpointSpec,
};
use isthmus_ipam::{LocalNetworks, NAT_BLOCK_SIZE, PeerNetworks};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;

use crate::config::NetworkManagerConfig;

/// Field manager of every write the network-manager makes.
pub const FIELD_MANAGER: &str = "isthmus-network-manager";
/// Finalizer the network-manager puts on ForeignClusters.
pub const FINALIZER: &str = "net.isthmus.io/network-manager";
/// `app.kubernetes.io/managed-by` value on every object we write.
pub const MANAGED_BY: &str = "isthmus-network-manager";
const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";

/// Label selector of the objects we manage for any peer.
pub fn managed_selector() -> String {
    format!("{LABEL_MANAGED_BY}={MANAGED_BY}")
}

/// Label selector of the objects we manage for `peer` (its NatMapping shards, and the older
/// whole-peer NatMapping).
pub fn peer_selector(peer: &ClusterId) -> String {
    format!("{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_REMOTE_CLUSTER}={peer}")
}

/// The name of `peer`'s NatMapping shard for NAT block `block`: `<peer>.block256-<i>`, the
/// block size in the name. Shards of another size (the 1,024-address `<peer>.block-<i>` of
/// earlier versions) never share a name with these, so the full pass at start retires them
/// after writing these, and, sorting before them, they lose any contested address at the
/// gateway meanwhile.
pub fn nat_shard_name(peer: &ClusterId, block: u32) -> String {
    format!("{peer}.block{NAT_BLOCK_SIZE}-{block}")
}

fn labels(origin: Option<&ClusterId>, remote: &ClusterId) -> BTreeMap<String, String> {
    let mut l = BTreeMap::from([
        (LABEL_REMOTE_CLUSTER.to_owned(), remote.to_string()),
        (LABEL_MANAGED_BY.to_owned(), MANAGED_BY.to_owned()),
    ]);
    if let Some(o) = origin {
        l.insert(LABEL_ORIGIN_CLUSTER.to_owned(), o.to_string());
    }
    l
}

/// An owner reference to `fc`, so that what a peering created locally is collected with it.
pub fn owner_reference(fc: &ForeignCluster) -> Option<OwnerReference> {
    fc.controller_owner_ref(&())
}

/// The NetworkConfig we write into `peer`'s API: our networks and gateway.
pub fn outgoing_network_config(
    config: &NetworkManagerConfig,
    local: &LocalNetworks,
    peer: &ClusterId,
) -> NetworkConfig {
    let spec = NetworkConfigSpec {
        cluster_id: peer.clone(),
        origin_cluster_id: config.cluster_id.clone(),
        pod_cidr: local.pod_cidr,
        external_cidr: local.external_cidr,
        endpoint: config.gateway.endpoint.clone(),
        backend_type: BackendType::WireGuard,
        backend_config: BTreeMap::from([(
            BACKEND_PUBLIC_KEY.to_owned(),
            config.gateway.public_key.clone(),
        )]),
    };
    let mut nc = NetworkConfig::new(config.cluster_id.as_str(), spec);
    nc.metadata.namespace = Some(config.sent_namespace());
    nc.metadata.labels = Some(labels(Some(&config.cluster_id), peer));
    nc
}

/// The merged view of a peering: our networks and how the peer addresses them
/// (its decision), the peer's networks and how we address them (ours), the peer's gateway.
pub fn tunnel_endpoint_spec(
    local: &LocalNetworks,
    networks: &PeerNetworks,
    received: &NetworkConfigSpec,
) -> TunnelEndpointSpec {
    TunnelEndpointSpec {
        cluster_id: received.origin_cluster_id.clone(),
        local_pod_cidr: local.pod_cidr,
        local_nat_pod_cidr: networks.local_pod_nat.unwrap_or(local.pod_cidr),
        local_external_cidr: local.external_cidr,
        local_nat_external_cidr: networks.local_external_nat.unwrap_or(local.external_cidr),
        remote_pod_cidr: networks.remote_pod,
        remote_nat_pod_cidr: networks.remote_pod_view,
        remote_external_cidr: networks.remote_external,
        remote_nat_external_cidr: networks.remote_external_view,
        endpoint: received.endpoint.clone(),
        backend_type: received.backend_type,
        backend_config: received.backend_config.clone(),
    }
}

fn local_meta(
    config: &NetworkManagerConfig,
    peer: &ClusterId,
    owner: Option<OwnerReference>,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(peer.to_string()),
        namespace: Some(config.namespace.clone()),
        labels: Some(labels(None, peer)),
        owner_references: owner.map(|o| vec![o]),
        ..ObjectMeta::default()
    }
}

/// The TunnelEndpoint object for a peering.
pub fn tunnel_endpoint(
    config: &NetworkManagerConfig,
    spec: TunnelEndpointSpec,
    owner: Option<OwnerReference>,
) -> TunnelEndpoint {
    let metadata = local_meta(config, &spec.cluster_id, owner);
    let name = spec.cluster_id.to_string();
    let mut tep = TunnelEndpoint::new(&name, spec);
    tep.metadata = metadata;
    tep
}

/// One NatMapping shard of a peer: the entries of IPAM block `block`.
pub fn nat_shard(
    config: &NetworkManagerConfig,
    peer: &ClusterId,
    block: u32,
    mappings: BTreeMap<Ipv4Addr, Ipv4Addr>,
    owner: Option<OwnerReference>,
) -> NatMapping {
    let spec = NatMappingSpec {
        cluster_id: peer.clone(),
        block: Some(block),
        cluster_mappings: mappings,
    };
    let name = nat_shard_name(peer, block);
    let mut nm = NatMapping::new(&name, spec);
    nm.metadata = local_meta(config, peer, owner);
    nm.metadata.name = Some(name);
    if let Some(labels) = nm.metadata.labels.as_mut() {
        labels.insert(LABEL_NAT_SHARD.to_owned(), block.to_string());
    }
    nm
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LocalGateway;

    fn cidr(s: &str) -> isthmus_api::Cidr {
        s.parse().unwrap()
    }

    fn setup() -> (NetworkManagerConfig, LocalNetworks) {
        let gw = LocalGateway {
            endpoint: "172.18.0.2:51820".into(),
            public_key: "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=".into(),
        };
        let config = NetworkManagerConfig::new("a".parse().unwrap(), "isthmus", gw);
        let local = LocalNetworks {
            pod_cidr: cidr("10.0.0.0/16"),
            service_cidr: None,
            external_cidr: cidr("10.1.0.0/16"),
            pools: vec![cidr("10.0.0.0/8")],
            reserved: vec![],
        };
        (config, local)
    }

    #[test]
    fn outgoing_network_config_is_valid_and_labelled() {
        let (config, local) = setup();
        let nc = outgoing_network_config(&config, &local, &"b".parse().unwrap());
        assert_eq!(nc.spec.validate(), Ok(()));
        assert_eq!(nc.metadata.name.as_deref(), Some("a"));
        assert_eq!(nc.metadata.namespace.as_deref(), Some("isthmus-peer-a"));
        let l = nc.metadata.labels.unwrap();
        assert_eq!(l[LABEL_ORIGIN_CLUSTER], "a");
        assert_eq!(l[LABEL_REMOTE_CLUSTER], "b");
        assert_eq!(nc.spec.pod_cidr, cidr("10.0.0.0/16"));
    }

    #[test]
    fn tunnel_endpoint_merges_both_decisions() {
        let (config, local) = setup();
        let received = outgoing_network_config(&config, &local, &"a".parse().unwrap()).spec;
        let received = NetworkConfigSpec {
            origin_cluster_id: "b".parse().unwrap(),
            ..received
        };
        let networks = PeerNetworks {
            remote_pod: cidr("10.0.0.0/16"),
            remote_pod_view: cidr("10.2.0.0/16"),
            remote_external: cidr("10.1.0.0/16"),
            remote_external_view: cidr("10.3.0.0/16"),
            local_pod_nat: Some(cidr("10.4.0.0/16")),
            local_external_nat: None,
            view_known: true,
        };
        let spec = tunnel_endpoint_spec(&local, &networks, &received);
        assert_eq!(spec.cluster_id.as_str(), "b");
        assert_eq!(spec.local_nat_pod_cidr, cidr("10.4.0.0/16"));
        assert_eq!(spec.local_nat_external_cidr, local.external_cidr);
        assert_eq!(spec.remote_nat_pod_cidr, cidr("10.2.0.0/16"));
        assert_eq!(spec.remote_nat_external_cidr, cidr("10.3.0.0/16"));
        assert_eq!(spec.endpoint, received.endpoint);
    }
}
