//! `IpamStorage`: the IPAM's durable state in Kubernetes. One root object holds the networks
//! and per-peer decisions; endpoint mappings are spread over shard objects so that no object
//! approaches the ~1.5 MB limit and a write touches only the shards that changed.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Cidr, ClusterId};

/// One object of the IPAM's state: the root (with `networks`) or an endpoint shard.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[kube(
    group = "net.isthmus.io",
    version = "v1alpha1",
    kind = "IpamStorage",
    namespaced,
    shortname = "ipams",
    category = "isthmus",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Shard","type":"integer","jsonPath":".spec.shard"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct IpamStorageSpec {
    /// Endpoint shard index; absent on the root object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<u32>,
    /// Number of endpoint shards (root object only).
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
    /// Endpoint reflections, keyed by endpoint IP (shard objects only).
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
}

/// One endpoint reflected with an ExternalCIDR address.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct EndpointMapping {
    /// The address of our ExternalCIDR allocated to the endpoint.
    pub ip: Ipv4Addr,
    /// The clusters the endpoint is reflected to.
    pub clusters: BTreeSet<ClusterId>,
}
