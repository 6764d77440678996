//! [`IpamError`]: every way an IPAM request or configuration can be refused. Each variant says
//! what was wrong; none leaves the state changed.

use std::net::Ipv4Addr;

use crate::{Cidr, ClusterId, ForbiddenEndpoint};

/// Why the IPAM refused a request. The state is unchanged whenever one is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    #[error("{network} ({what}) overlaps {other}")]
    Overlap {
        network: Cidr,
        what: String,
        other: String,
    },
    #[error("unknown peer cluster {0}")]
    UnknownPeer(ClusterId),
    #[error(
        "peer {0} has not yet said how it addresses this cluster (its NetworkConfig status); \
         retry once the peering is established"
    )]
    PeerViewUnknown(ClusterId),
    #[error("no free /{prefix_len} network left in the pools to remap {network} of peer {cluster}")]
    PoolsExhausted {
        cluster: ClusterId,
        network: Cidr,
        prefix_len: u8,
    },
    #[error("ExternalCIDR {0} has no free address left")]
    ExternalExhausted(Cidr),
    #[error("endpoint IP {ip} is {class}: never a DNAT target, so never an endpoint")]
    ForbiddenEndpoint {
        ip: Ipv4Addr,
        class: ForbiddenEndpoint,
    },
    #[error("invalid endpoint IP {ip}: {reason}")]
    InvalidEndpoint { ip: Ipv4Addr, reason: String },
    #[error("invalid network for peer {cluster}: {reason}")]
    InvalidPeerNetwork { cluster: ClusterId, reason: String },
    #[error("corrupt IPAM log or snapshot: {0}")]
    Corrupt(String),
}
