//! The IPAM's change records and snapshot, in the serde form a durable store writes.
//!
//! An [`Effect`] carries a decision already taken (the address allocated, the network chosen), so
//! replaying a log never re-runs an allocation and always rebuilds exactly the logged state.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::{Cidr, ClusterId};

/// The local cluster's networks, fixed at initialisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalNetworks {
    pub pod_cidr: Cidr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_cidr: Option<Cidr>,
    pub external_cidr: Cidr,
    pub pools: Vec<Cidr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reserved: Vec<Cidr>,
}

/// One peer's networks in both directions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerNetworks {
    /// The peer's real Pod CIDR.
    pub remote_pod: Cidr,
    /// How we address the peer's pods (our decision; equal to `remote_pod` when accepted).
    pub remote_pod_view: Cidr,
    /// The peer's real ExternalCIDR.
    pub remote_external: Cidr,
    /// How we address the peer's ExternalCIDR (our decision).
    pub remote_external_view: Cidr,
    /// How the peer addresses our Pod CIDR, when it remapped it (the peer's decision).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_pod_nat: Option<Cidr>,
    /// How the peer addresses our ExternalCIDR, when it remapped it (the peer's decision).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_external_nat: Option<Cidr>,
    /// Whether the peer has told us its decision (the two fields above). Until it has, nothing
    /// can be answered in its view of us. States stored before this field existed knew it.
    #[serde(default = "known", skip_serializing_if = "is_known")]
    pub view_known: bool,
}

fn known() -> bool {
    true
}

fn is_known(known: &bool) -> bool {
    *known
}

/// One durable change. Applied in log order; see [`crate::Ipam::apply`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum Effect {
    /// The peer's networks, created or replaced.
    PeerSet {
        cluster: ClusterId,
        networks: PeerNetworks,
    },
    /// The peer and everything of it (networks, reflections, addresses only it used) is gone.
    PeerRemoved { cluster: ClusterId },
    /// `endpoint` is reflected to `cluster` using ExternalCIDR address `external`.
    Reflected {
        endpoint: Ipv4Addr,
        external: Ipv4Addr,
        cluster: ClusterId,
    },
    /// `endpoint` is no longer reflected to `cluster`; its address is freed after the last one.
    Unreflected {
        endpoint: Ipv4Addr,
        cluster: ClusterId,
    },
}

/// One endpoint reflected with an ExternalCIDR address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRecord {
    pub endpoint: Ipv4Addr,
    pub external: Ipv4Addr,
    pub clusters: Vec<ClusterId>,
}

/// The whole IPAM state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpamSnapshot {
    pub networks: LocalNetworks,
    pub peers: BTreeMap<ClusterId, PeerNetworks>,
    pub endpoints: Vec<EndpointRecord>,
}
