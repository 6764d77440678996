//! isthmus-lab: the kernel side of `isthmus lab`.
//!
//! - [`TopologySpec`] → [`TopologySpec::plan`] (pure: every name and address) → [`Topology::build`]
//!   (namespaces, bridges, veths, addresses, routes, in parallel `ip` batches);
//! - [`TopologyRecord`]: the built lab as plain data, saved to a JSON state file so another process
//!   finds it; [`destroy`], [`destroy_tag`], [`destroy_stale`] and [`TopologyGuard`] tear it down;
//! - [`lb`]: a stateless load balancer in front of a cluster's gateway replicas (`--gateway-replicas 2`);
//! - [`cni`]: a kindnet-like masquerade in a foreign table on every node (`--cni-masquerade`);
//! - [`exposure`]: how the clusters expose their gateways (`--exposure`), and the NodePort or load
//!   balancer NAT in front of them;
//! - [`probe`]: ping with round-trip times, a whoami server and client, and a long-lived TCP echo
//!   session, each run inside a pod's (or any lab) namespace.
//!
//! Everything here blocks (it runs `ip` or waits on sockets): call it from synchronous code or
//! `tokio::task::spawn_blocking`. The lab touches only namespaces and sockets carrying its tag,
//! never the host's own interfaces, routes, rules or nftables (nftables only inside its nodes). See `README.md` for the picture.

mod build;
pub mod cni;
pub mod error;
pub mod exposure;
mod kernel;
pub mod lb;
pub mod naming;
pub mod probe;
pub mod record;
mod spec;
mod teardown;

pub use build::{BRIDGE, Topology, TopologyGuard, pod_gateway};
pub use error::{Error, Result};
pub use kernel::{in_netns, list_netns};
pub use record::{
    ClusterRecord, DEFAULT_STATE_DIR, NodeRecord, PodRecord, TopologyRecord, WanRecord,
};
pub use spec::TopologySpec;
pub use teardown::{
    UAPI_DIR, destroy, destroy_stale, destroy_tag, exists, lab_tags, process_alive, uapi_socket,
};

/// Fails loudly unless running as root (lab tests never skip).
pub fn require_root() {
    isthmus_dataplane::lab::require_root();
}
