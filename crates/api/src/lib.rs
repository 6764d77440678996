//! The isthmus API: custom resources in `net.isthmus.io/v1alpha1`, their validation and the
//! Kubernetes-style conditions they carry. Pure data; no client, no I/O.
//!
//! | kind | scope | written by | read by |
//! |---|---|---|---|
//! | [`ForeignCluster`] | cluster | the operator | network-manager |
//! | [`NetworkConfig`] | namespaced | cluster X into its namespace in peer Y's API ([`peer_namespace`]; spec), Y (status) | both |
//! | [`TunnelEndpoint`] | namespaced | network-manager (spec), gateway (status) | gateway, route-agent |
//! | [`NatMapping`] | namespaced | network-manager (from the IPAM) | gateway |
//! | [`IpamStorage`] | namespaced | network-manager (the IPAM's durable state) | network-manager |

mod conditions;
mod crds;
mod foreign_cluster;
mod ipam_storage;
mod nat_mapping;
mod network_config;
mod peer_namespace;
mod schema;
mod tunnel_endpoint;
mod validate;

pub use conditions::{ConditionStatus, set_condition};
pub use crds::{all_crds, crd_file_name, crd_yaml};
pub use foreign_cluster::{ForeignCluster, ForeignClusterSpec, ForeignClusterStatus, SecretKeyRef};
pub use ipam_storage::{
    ClusterSubnets, EndpointMapping, IpamBlock, IpamJournal, IpamNetworks, IpamStorage,
    IpamStorageSpec, JournalEntry, JournalOp,
};
pub use isthmus_addr::{Cidr, ClusterId};
pub use nat_mapping::{LABEL_NAT_SHARD, NatMapping, NatMappingSpec};
pub use network_config::{BackendType, NetworkConfig, NetworkConfigSpec, NetworkConfigStatus};
pub use peer_namespace::{LABEL_PEER_CLUSTER, NAMESPACE_MAX, peer_namespace};
pub use tunnel_endpoint::{
    ConnectionState, ConnectionStatus, TunnelEndpoint, TunnelEndpointSpec, TunnelEndpointStatus,
};
pub use validate::{ValidationError, validate_endpoint};

/// The API group of every isthmus resource.
pub const GROUP: &str = "net.isthmus.io";
/// The API version of every isthmus resource.
pub const VERSION: &str = "v1alpha1";
/// Label carrying the remote cluster ID a resource belongs to.
pub const LABEL_REMOTE_CLUSTER: &str = "net.isthmus.io/remote-cluster-id";
/// Label carrying the cluster ID of the cluster that wrote a replicated resource.
pub const LABEL_ORIGIN_CLUSTER: &str = "net.isthmus.io/origin-cluster-id";
/// Key of the WireGuard public key in a backend configuration map.
pub const BACKEND_PUBLIC_KEY: &str = "publicKey";
