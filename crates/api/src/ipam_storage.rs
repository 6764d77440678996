//! `IpamStorage`: the IPAM's durable state in Kubernetes, as three roles of one kind
//! (`docs/architecture.md`, "IpamStorage layout"):
//!
//! - the **root** (`layout: 2`): the networks, the per-peer decisions, the checkpoint (every
//!   commit up to it is in the blocks) and which blocks exist per peer;
//! - **blocks**: one per peer and 1,024-address block of the ExternalCIDR, the peer's mappings
//!   there (ExternalCIDR address → endpoint), each with the commit it is exact at;
//! - **journal segments**: one per group commit, created whole (one atomic write), holding the
//!   batch's changes; folded into the blocks and deleted by compaction.
//!
//! The fields of the first, sharded layout (`shard`, `shardCount`, `endpointMappings`) are still
//! read so that a network-manager upgrades that layout at start.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Cidr, ClusterId};

/// One object of the IPAM's state: the root (with `networks`), a block, or a journal segment.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[kube(
    group = "net.isthmus.io",
    version = "v1alpha1",
    kind = "IpamStorage",
    namespaced,
    shortname = "ipams",
    category = "isthmus",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Peer","type":"string","jsonPath":".spec.block.cluster"}"#,
    printcolumn = r#"{"name":"Block","type":"string","jsonPath":".spec.block.first"}"#,
    printcolumn = r#"{"name":"Commit","type":"integer","jsonPath":".spec.journal.commit"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct IpamStorageSpec {
    /// Layout of the state (root object only): absent for the first, sharded layout; 2 for
    /// root + blocks + journal segments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<u32>,
    /// The process that last wrote this object (root, blocks, segments): how a retried write
    /// recognises its own earlier attempt, and a second writer is told apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writer: Option<String>,
    /// Every commit up to this one is in the blocks (root object only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<u64>,
    /// The blocks of each peer at the checkpoint, as block-index ranges (`0-3,7`), so that a
    /// missing block is an error that names it (root object only).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub blocks: BTreeMap<String, String>,
    /// One peer's mappings in one block of the ExternalCIDR (block objects only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block: Option<IpamBlock>,
    /// One group commit's changes (journal segments only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal: Option<IpamJournal>,
    /// Legacy sharded layout: endpoint shard index; absent on the root object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<u32>,
    /// Legacy sharded layout: number of endpoint shards (root object only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard_count: Option<u32>,
    /// The local networks (root object only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networks: Option<IpamNetworks>,
    /// Per-peer network decisions, keyed by cluster ID (root object only).
    #[serde(
        rename = "clusterSubnets",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub cluster_subnets: BTreeMap<String, ClusterSubnets>,
    /// Legacy sharded layout: endpoint reflections, keyed by endpoint IP (shard objects only).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub endpoint_mappings: BTreeMap<Ipv4Addr, EndpointMapping>,
}

/// The local cluster's networks.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IpamNetworks {
    #[serde(rename = "podCIDR")]
    pub pod_cidr: Cidr,
    #[serde(
        rename = "serviceCIDR",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub service_cidr: Option<Cidr>,
    #[serde(rename = "externalCIDR")]
    pub external_cidr: Cidr,
    pub pools: Vec<Cidr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reserved: Vec<Cidr>,
}

/// The networks of one peer, in both views (as in the reference thesis's `Subnets`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct ClusterSubnets {
    /// The peer's real Pod CIDR.
    #[serde(rename = "remotePodCIDR")]
    pub remote_pod_cidr: Cidr,
    /// How we address it (equal when accepted as-is).
    #[serde(rename = "remoteNATPodCIDR")]
    pub remote_nat_pod_cidr: Cidr,
    /// The peer's real ExternalCIDR.
    #[serde(rename = "remoteExternalCIDR")]
    pub remote_external_cidr: Cidr,
    /// How we address it (equal when accepted as-is).
    #[serde(rename = "remoteNATExternalCIDR")]
    pub remote_nat_external_cidr: Cidr,
    /// How the peer addresses our Pod CIDR, when it remapped it.
    #[serde(
        rename = "localNATPodCIDR",
        default,
        with = "isthmus_addr::none_as_absent",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<Cidr>")]
    pub local_nat_pod_cidr: Option<Cidr>,
    /// How the peer addresses our ExternalCIDR, when it remapped it.
    #[serde(
        rename = "localNATExternalCIDR",
        default,
        with = "isthmus_addr::none_as_absent",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<Cidr>")]
    pub local_nat_external_cidr: Option<Cidr>,
    /// Whether the peer has told us how it addresses us (absent: it has, as in states written
    /// before this field).
    #[serde(
        rename = "peerViewKnown",
        default = "peer_view_known",
        skip_serializing_if = "is_true"
    )]
    pub peer_view_known: bool,
}

/// One endpoint reflected with an ExternalCIDR address.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct EndpointMapping {
    /// The address of our ExternalCIDR allocated to the endpoint.
    pub ip: Ipv4Addr,
    /// The clusters the endpoint is reflected to.
    pub clusters: BTreeSet<ClusterId>,
}

/// One peer's mappings in one block of the ExternalCIDR.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IpamBlock {
    /// The peer the addresses are reflected to.
    pub cluster: ClusterId,
    /// The block's first address (its size is fixed by the layout: 1,024 addresses).
    pub first: Ipv4Addr,
    /// The commit this block is exact at: every change up to it is here, none after it.
    pub seq: u64,
    /// ExternalCIDR address → endpoint.
    #[serde(default)]
    pub mappings: BTreeMap<Ipv4Addr, Ipv4Addr>,
}

/// The changes of one group commit, in order.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IpamJournal {
    /// The commit number: segments follow each other without gaps.
    pub commit: u64,
    /// The changes, applied in order.
    #[serde(default)]
    pub entries: Vec<JournalEntry>,
}

/// What one journal entry does.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum JournalOp {
    /// The peer's networks, created or replaced (`subnets`).
    PeerSet,
    /// The peer and everything of it are gone.
    PeerRemoved,
    /// `endpoint` is reflected to the peer with ExternalCIDR address `external`.
    Reflected,
    /// `endpoint` (which held `external`) is no longer reflected to the peer.
    Unreflected,
}

/// One change of the IPAM, as the journal records it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JournalEntry {
    pub op: JournalOp,
    /// The peer.
    pub cluster: ClusterId,
    /// The endpoint (Reflected, Unreflected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<Ipv4Addr>,
    /// Its ExternalCIDR address (Reflected, Unreflected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<Ipv4Addr>,
    /// The peer's networks (PeerSet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnets: Option<ClusterSubnets>,
}

fn peer_view_known() -> bool {
    true
}

fn is_true(v: &bool) -> bool {
    *v
}
