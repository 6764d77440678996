//! What diagnose observes on the node, as plain data ([`NodeFacts`]), and the one trait the
//! observation sits behind ([`NodeObserver`]): the Linux implementation reads the kernel
//! (`linux.rs`), [`FixtureObserver`] hands back prepared facts and records what it was asked.
//!
//! Every fact carries its own error, so one unreadable source (no `nft` binary, say) fails the
//! check that needs it and leaves the others running.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Mutex;

use isthmus_dataplane::firewall::view::TableView;
use isthmus_dataplane::routes::overlay::Reach;
use isthmus_dataplane::routes::{LinkEntry, RouteEntry, VxlanView};
use isthmus_dataplane::tunnel::{DeviceView, ModuleState};

/// A fact, or why it could not be read.
pub type Observed<T> = Result<T, String>;

/// Everything the checks look at on this node.
#[derive(Debug, Clone)]
pub struct NodeFacts {
    /// The WireGuard kernel module, from the kernel's files.
    pub module: ModuleState,
    /// Every link.
    pub links: Observed<Vec<LinkEntry>>,
    /// Every IPv4 route of every table.
    pub routes: Observed<Vec<RouteEntry>>,
    /// Our nftables table (`None`: absent).
    pub table: Observed<Option<TableView>>,
    /// The WireGuard device on the requested interface (`None`: no such link).
    pub device: Observed<Option<DeviceView>>,
    /// Local addresses of every UDP socket in the namespace.
    pub udp_sockets: Observed<Vec<SocketAddr>>,
    /// Each peer endpoint (`host:port` as the TunnelEndpoint says) resolved to an IPv4 address.
    pub endpoints: BTreeMap<String, Observed<SocketAddr>>,
    /// The kernel's route lookup for each resolved endpoint address.
    pub lookups: BTreeMap<Ipv4Addr, Observed<RouteEntry>>,
    /// How the kernel reaches each gateway node address the TunnelEndpoints publish.
    pub reach: BTreeMap<Ipv4Addr, Observed<Reach>>,
    /// The route agent's overlay link `isthmus-vx0` (`None`: absent).
    pub overlay: Observed<Option<VxlanView>>,
    /// The route agent's NAT exemption, table `inet isthmus-node` (`None`: absent).
    pub node_table: Observed<Option<TableView>>,
    /// Reverse-path filtering (`net.ipv4.conf.<name>.rp_filter`) of `all` and every link.
    pub rp_filter: Observed<BTreeMap<String, u8>>,
}

/// What to observe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObserveRequest {
    /// The WireGuard interface.
    pub interface: String,
    /// Peer endpoints to resolve and look routes up for.
    pub endpoints: Vec<String>,
    /// Gateway node addresses (`status.gatewayIP`) to look routes up for.
    pub gateways: Vec<Ipv4Addr>,
}

/// Reads the node's kernel (blocking).
pub trait NodeObserver: Send + Sync {
    /// Observes everything `request` names. Never fails as a whole: each fact has its error.
    fn observe(&self, request: &ObserveRequest) -> NodeFacts;
}

/// Hands back prepared facts and records every request (for tests).
#[derive(Debug)]
pub struct FixtureObserver {
    facts: NodeFacts,
    /// Requests received, in order.
    pub requests: Mutex<Vec<ObserveRequest>>,
}

impl FixtureObserver {
    /// An observer that always answers `facts`.
    pub fn new(facts: NodeFacts) -> Self {
        FixtureObserver {
            facts,
            requests: Mutex::new(Vec::new()),
        }
    }
}

impl NodeObserver for FixtureObserver {
    fn observe(&self, request: &ObserveRequest) -> NodeFacts {
        if let Ok(mut requests) = self.requests.lock() {
            requests.push(request.clone());
        }
        self.facts.clone()
    }
}

impl NodeFacts {
    /// The link called `name`, if it was read and exists.
    pub fn link(&self, name: &str) -> Option<&LinkEntry> {
        self.links.as_ref().ok()?.iter().find(|l| l.name == name)
    }

    /// The resolved address of `endpoint`, if it resolved.
    pub fn endpoint(&self, endpoint: &str) -> Option<SocketAddr> {
        self.endpoints.get(endpoint)?.as_ref().ok().copied()
    }
}
