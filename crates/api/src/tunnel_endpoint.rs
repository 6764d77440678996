//! `TunnelEndpoint`: the merge of both NetworkConfigs of a peering, one per peer. The
//! network-manager writes the spec (every range in both views, always filled); the gateway
//! reports the connection in the status.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{BackendType, Cidr, ClusterId};

/// Desired tunnel to one peer. A `*NAT*` range equals its real range when nobody remapped it.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "net.isthmus.io",
    version = "v1alpha1",
    kind = "TunnelEndpoint",
    namespaced,
    status = "TunnelEndpointStatus",
    shortname = "tep",
    category = "isthmus",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Peer","type":"string","jsonPath":".spec.clusterID"}"#,
    printcolumn = r#"{"name":"State","type":"string","jsonPath":".status.connection.status"}"#,
    printcolumn = r#"{"name":"Local Pods As","type":"string","jsonPath":".spec.localNATPodCIDR"}"#,
    printcolumn = r#"{"name":"Remote Pods As","type":"string","jsonPath":".spec.remoteNATPodCIDR"}"#,
    printcolumn = r#"{"name":"Latency","type":"string","jsonPath":".status.connection.latency"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
pub struct TunnelEndpointSpec {
    /// The peer.
    #[serde(rename = "clusterID")]
    pub cluster_id: ClusterId,
    /// Our real Pod CIDR.
    #[serde(rename = "localPodCIDR")]
    pub local_pod_cidr: Cidr,
    /// How the peer addresses our pods (the peer's decision).
    #[serde(rename = "localNATPodCIDR")]
    pub local_nat_pod_cidr: Cidr,
    /// Our ExternalCIDR.
    #[serde(rename = "localExternalCIDR")]
    pub local_external_cidr: Cidr,
    /// How the peer addresses our ExternalCIDR (the peer's decision).
    #[serde(rename = "localNATExternalCIDR")]
    pub local_nat_external_cidr: Cidr,
    /// The peer's real Pod CIDR.
    #[serde(rename = "remotePodCIDR")]
    pub remote_pod_cidr: Cidr,
    /// How we address the peer's pods (our decision).
    #[serde(rename = "remoteNATPodCIDR")]
    pub remote_nat_pod_cidr: Cidr,
    /// The peer's ExternalCIDR.
    #[serde(rename = "remoteExternalCIDR")]
    pub remote_external_cidr: Cidr,
    /// How we address the peer's ExternalCIDR (our decision).
    #[serde(rename = "remoteNATExternalCIDR")]
    pub remote_nat_external_cidr: Cidr,
    /// The peer gateway's endpoint, `host:port`.
    pub endpoint: String,
    #[serde(rename = "backendType", default)]
    pub backend_type: BackendType,
    /// The peer's public connection parameters.
    #[serde(rename = "backendConfig", default)]
    pub backend_config: BTreeMap<String, String>,
}

/// `connected`, `connecting` or `error`, as in the reference thesis.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ConnectionState {
    Connected,
    #[default]
    Connecting,
    Error,
}

impl std::fmt::Display for ConnectionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ConnectionState::Connected => "connected",
            ConnectionState::Connecting => "connecting",
            ConnectionState::Error => "error",
        })
    }
}

/// The tunnel as the gateway observes it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionStatus {
    #[serde(default)]
    pub status: ConnectionState,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// When the last WireGuard handshake with the peer completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<crate::schema::Time>")]
    pub last_handshake: Option<Time>,
    #[serde(default)]
    pub rx_bytes: u64,
    #[serde(default)]
    pub tx_bytes: u64,
    /// Round-trip time through the tunnel, human readable (e.g. `0.42ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<String>,
    /// Round-trip time through the tunnel, in microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_micros: Option<u64>,
}

/// What the gateway reports.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TunnelEndpointStatus {
    /// `Pending`, `Ready` or `Error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default)]
    pub connection: ConnectionStatus,
    /// The tunnel interface and WireGuard backend (`kernel` or `userspace`) in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// The node the active gateway runs on, and its address inside the cluster: the next hop
    /// route agents on other nodes use for the peer's ranges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_node: Option<String>,
    #[serde(rename = "gatewayIP", default, skip_serializing_if = "Option::is_none")]
    pub gateway_ip: Option<std::net::Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Vec<crate::schema::Condition>")]
    pub conditions: Vec<Condition>,
}
