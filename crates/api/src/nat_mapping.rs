//! `NatMapping`: one per peer cluster, written from the IPAM's endpoint reflections. Each entry
//! maps an address the peer uses (in its view of our ExternalCIDR) to the real endpoint; the
//! gateway turns the set into a DNAT map for packets from that peer.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ClusterId;

/// Per-IP DNAT entries for packets arriving from `clusterID`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "net.isthmus.io",
    version = "v1alpha1",
    kind = "NatMapping",
    namespaced,
    shortname = "nm",
    category = "isthmus",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Peer","type":"string","jsonPath":".spec.clusterID"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
pub struct NatMappingSpec {
    /// The peer the packets come from.
    #[serde(rename = "clusterID")]
    pub cluster_id: ClusterId,
    /// New IP (as the peer addresses it) → endpoint IP.
    #[serde(rename = "clusterMappings", default)]
    pub cluster_mappings: BTreeMap<Ipv4Addr, Ipv4Addr>,
}
