//! isthmus-dataplane: the gateway datapath.
//!
//! - [`tunnel`]: WireGuard, kernel backend when the module exists, in-process userspace engine
//!   otherwise, both configured through `defguard_wireguard_rs`;
//! - [`firewall`]: one nftables table (`inet isthmus`) rendered from a pure [`firewall::NatPlan`];
//! - [`node_nat`]: the route agent's table (`inet isthmus-node`) exempting isthmus traffic from a
//!   CNI's masquerade on every node;
//! - [`routes`]: routes into the tunnel (gateway node) or to the gateway node (VXLAN or next hop);
//! - [`gateway`]: the entry point the controllers call, [`gateway::Gateway::reconcile`], and
//!   [`handle::GatewayHandle`], the same for async callers;
//! - [`lab`] and [`bench`]: network namespaces for tests and the datapath benchmark.
//!
//! Every driver works on one network namespace through a [`netns::NsRuntime`]. The drivers'
//! methods block: call them from synchronous code, `tokio::task::spawn_blocking`, or through
//! [`GatewayHandle`].
//!
//! `defguard_wireguard_rs` logs interface configuration (private key included) at `debug` and
//! `trace`; a binary using this crate must cap that target with [`LOG_DIRECTIVE`].

pub mod bench;
pub mod error;
pub mod firewall;
pub mod gateway;
pub mod handle;
pub mod keys;
pub mod lab;
pub mod model;
mod netlink;
pub mod netns;
pub mod node_nat;
pub mod routes;
pub mod tunnel;

pub use error::{Error, Result};
pub use gateway::{Gateway, GatewayStatus, LinuxGateway, PeerObserved};
pub use handle::GatewayHandle;
pub use keys::{PrivateKey, PublicKey};
pub use model::{GatewaySpec, Mapping, PeerSpec, PrefixNat};
pub use netns::{Netns, NsRuntime};

/// Tracing filter directive that keeps `defguard_wireguard_rs` from logging key material.
pub const LOG_DIRECTIVE: &str = "defguard_wireguard_rs=info";
