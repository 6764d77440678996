//! The isthmus IPAM, pure: no I/O, no clock, no async.
//!
//! It owns three decisions:
//! - the local networks: Pod and Service CIDRs reserved, an ExternalCIDR chosen from the pools;
//! - per peer: its Pod CIDR and ExternalCIDR accepted as-is when free, otherwise remapped 1:1 to a
//!   free network of the same prefix length (stable across repeats);
//! - per endpoint reflection (the reference thesis's Algorithms 3 and 4): a local pod IP is translated
//!   arithmetically into the peer's view; any other IP gets one ExternalCIDR address shared by all
//!   peers it is reflected to, recorded in that peer's NAT mapping, freed after the last unmap.
//!
//! Every change is expressed as an [`Effect`]: operations compute effects, [`Ipam::apply`]
//! performs them. A durable layer logs effects and replays them on restart, so recovery never
//! re-runs a decision. Allocation is O(log n) per request (interval maps, no linear scans).

mod address_pool;
mod effect;
mod endpoint_class;
mod endpoints;
mod error;
mod nat_blocks;
mod network_set;
mod peers;
mod state;

pub use address_pool::AddressPool;
pub use effect::{Effect, EndpointRecord, IpamSnapshot, LocalNetworks, PeerNetworks};
pub use endpoint_class::{ForbiddenEndpoint, forbidden_endpoint};
pub use endpoints::{MapOutcome, UnmapOutcome};
pub use error::IpamError;
pub use isthmus_addr::{Cidr, ClusterId};
pub use nat_blocks::{BLOCK_SIZE, NAT_BLOCK_SIZE, NatDirty, NatTouch};
pub use network_set::{NetworkOwner, NetworkSet};
pub use state::{Ipam, IpamConfig, Usage, default_pools};
