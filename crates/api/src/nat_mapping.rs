//! `NatMapping`: per peer cluster, the IPAM's endpoint reflections published in **shards**, one
//! object per NAT block (256 addresses of our ExternalCIDR, `isthmus_ipam::NAT_BLOCK_SIZE`)
//! that holds any mapping, so an object stays ~15 KiB stored whatever the scale.
//! Each entry maps an address the peer uses (in its view of our ExternalCIDR) to the real
//! endpoint; the gateway turns the union of a peer's shards into a DNAT map for packets from
//! that peer.
//!
//! A shard carries `spec.block` and the label [`LABEL_NAT_SHARD`]; an object without them is
//! the older layout (one object per peer, named after it, holding every mapping), which is
//! still read: the network-manager replaces it by shards at start, and the gateway merges both
//! while that happens (a shard wins over the older object for the same address).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ClusterId;

/// Label on every shard: its block index. Absent on the older one-object-per-peer layout.
pub const LABEL_NAT_SHARD: &str = "net.isthmus.io/nat-shard";

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
    printcolumn = r#"{"name":"Block","type":"integer","jsonPath":".spec.block"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
pub struct NatMappingSpec {
    /// The peer the packets come from.
    #[serde(rename = "clusterID")]
    pub cluster_id: ClusterId,
    /// The block of our ExternalCIDR this shard covers (addresses `block × 256` to
    /// `block × 256 + 255` from its first address, in the peer's view; shards named
    /// `<peer>.block-<i>`, of earlier versions, covered 1,024). Absent on the older layout, whose
    /// one object held every mapping of the peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block: Option<u32>,
    /// New IP (as the peer addresses it) → endpoint IP.
    #[serde(rename = "clusterMappings", default)]
    pub cluster_mappings: BTreeMap<Ipv4Addr, Ipv4Addr>,
}

impl NatMappingSpec {
    /// Whether this object is a shard (rather than the older whole-peer object).
    pub fn is_shard(&self) -> bool {
        self.block.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_older_layout_still_reads() {
        let old = r#"{"clusterID":"b","clusterMappings":{"10.1.0.2":"10.77.0.1"}}"#;
        let spec: NatMappingSpec = serde_json::from_str(old).unwrap();
        assert_eq!(spec.block, None);
        assert!(!spec.is_shard());
        assert_eq!(spec.cluster_mappings.len(), 1);
        let shard = r#"{"clusterID":"b","block":3}"#;
        let spec: NatMappingSpec = serde_json::from_str(shard).unwrap();
        assert!(spec.is_shard() && spec.cluster_mappings.is_empty());
    }
}
