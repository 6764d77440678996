//! [`StatusReport`]: what `isthmus status` knows about one cluster, as a value. It is the
//! `-o json` output (camelCase, numbers as numbers, durations in fields named `…Seconds` /
//! `…Ms`); `docs/status.md` documents every field. Adding a field is compatible; renaming or
//! removing one bumps [`FORMAT_VERSION`].

use std::net::Ipv4Addr;

use isthmus_api::Cidr;
use serde::{Deserialize, Serialize};

/// Version of the JSON layout.
pub const FORMAT_VERSION: u32 = 1;

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusReport {
    pub format_version: u32,
    /// When the objects were read (RFC 3339).
    pub generated_at: String,
    /// The API server read.
    pub server: String,
    pub namespace: String,
    /// Our cluster ID, from the NetworkConfigs peers sent us (absent before any arrived).
    #[serde(rename = "clusterID")]
    pub cluster_id: Option<String>,
    pub summary: Summary,
    /// Our networks (from the IpamStorage root object; absent without one).
    pub local: Option<LocalNetworks>,
    /// How full the ExternalCIDR and the pools are (absent without an IpamStorage root).
    pub usage: Option<Usage>,
    /// One per peer, by cluster ID.
    pub peers: Vec<PeerStatus>,
    /// Things that look wrong beyond one peer (unreadable objects, missing IPAM state).
    pub warnings: Vec<String>,
}

/// Counts of peers per state, and the one-line summary printed first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub peers: usize,
    pub connected: usize,
    pub connecting: usize,
    pub error: usize,
    pub pending: usize,
    /// e.g. `2/3 peers connected; error: c (PoolsExhausted)`.
    pub text: String,
}

/// The local cluster's networks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalNetworks {
    #[serde(rename = "podCIDR")]
    pub pod_cidr: Cidr,
    #[serde(rename = "serviceCIDR")]
    pub service_cidr: Option<Cidr>,
    #[serde(rename = "externalCIDR")]
    pub external_cidr: Cidr,
    pub pools: Vec<Cidr>,
    pub reserved: Vec<Cidr>,
}

/// IPAM usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    pub external: ExternalUsage,
    pub pools: Vec<PoolUsage>,
}

/// Addresses of the ExternalCIDR handed out to reflected endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalUsage {
    pub cidr: Cidr,
    /// Addresses in the range.
    pub size: u64,
    /// Never handed out: network, transit (network + 1) and broadcast addresses.
    pub reserved_by_ipam: u64,
    /// `size - reservedByIpam`: what endpoints can get.
    pub capacity: u64,
    /// Endpoint mappings (one address each).
    pub allocated: u64,
    /// `capacity - allocated`.
    pub available: u64,
}

/// One pool and the networks reserved inside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolUsage {
    pub cidr: Cidr,
    pub size: u64,
    /// Addresses of the pool covered by reserved networks.
    pub allocated: u64,
    pub networks: Vec<PoolNetwork>,
}

/// A reserved network that lies (at least partly) in a pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolNetwork {
    pub cidr: Cidr,
    pub holder: Holder,
    /// The peer, for `peerPods` / `peerExternal`.
    pub peer: Option<String>,
}

/// Who holds a reserved network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Holder {
    LocalPods,
    LocalServices,
    LocalExternal,
    Reserved,
    /// Our view of a peer's Pod CIDR.
    PeerPods,
    /// Our view of a peer's ExternalCIDR.
    PeerExternal,
}

/// Where a peering stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerState {
    /// The gateway has a handshake and the peer's gateway answers probes.
    Connected,
    /// A TunnelEndpoint exists but the tunnel is not (yet, or no longer) up.
    Connecting,
    /// The tunnel failed, or the peering was refused or cannot reach the peer.
    Error,
    /// No TunnelEndpoint yet, and nothing known to be wrong: waiting for a side.
    Pending,
}

impl PeerState {
    pub fn as_str(self) -> &'static str {
        match self {
            PeerState::Connected => "connected",
            PeerState::Connecting => "connecting",
            PeerState::Error => "error",
            PeerState::Pending => "pending",
        }
    }
}

/// One peer: its TunnelEndpoint joined with its ForeignCluster, received NetworkConfig and
/// NatMapping, whichever exist.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerStatus {
    #[serde(rename = "clusterID")]
    pub cluster_id: String,
    pub state: PeerState,
    /// A condition reason or the gateway's, when not connected.
    pub reason: Option<String>,
    pub message: Option<String>,
    /// Which objects of the peering exist here.
    pub tunnel_endpoint: bool,
    pub foreign_cluster: bool,
    pub network_config: bool,
    /// The ForeignCluster's phase.
    pub phase: Option<String>,
    pub last_handshake: Option<String>,
    /// Now minus the last handshake.
    pub handshake_age_seconds: Option<u64>,
    /// Round-trip time through the tunnel, in milliseconds.
    pub rtt_ms: Option<f64>,
    pub rx_bytes: Option<u64>,
    pub tx_bytes: Option<u64>,
    /// `kernel` or `userspace` WireGuard.
    pub backend: Option<String>,
    pub interface: Option<String>,
    pub gateway_node: Option<String>,
    #[serde(rename = "gatewayIP")]
    pub gateway_ip: Option<Ipv4Addr>,
    /// The peer gateway's endpoint, `host:port`.
    pub endpoint: Option<String>,
    pub nat: NatViews,
    /// Entries of the peer's NatMapping (per-IP DNAT for packets from it).
    pub nat_mappings: usize,
    /// Every condition of the peering's objects.
    pub conditions: Vec<ConditionView>,
    pub warnings: Vec<String>,
}

/// Both sides' views of the four ranges of a peering.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NatViews {
    /// How we address the peer's pods.
    pub peer_pods: Option<RangeView>,
    /// How we address the peer's ExternalCIDR.
    pub peer_external: Option<RangeView>,
    /// How the peer addresses our pods (known once it decided).
    pub local_pods: Option<RangeView>,
    /// How the peer addresses our ExternalCIDR.
    pub local_external: Option<RangeView>,
}

/// A real range and the range the other side uses for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RangeView {
    pub cidr: Cidr,
    pub addressed_as: Cidr,
    pub remapped: bool,
}

impl RangeView {
    pub fn new(cidr: Cidr, addressed_as: Cidr) -> Self {
        RangeView {
            cidr,
            addressed_as,
            remapped: cidr != addressed_as,
        }
    }
}

/// A condition and the object carrying it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConditionView {
    /// `ForeignCluster`, `NetworkConfig` or `TunnelEndpoint`.
    pub source: String,
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    pub reason: String,
    pub message: String,
    pub last_transition_time: String,
}
