//! The pure planner: TunnelEndpoints in, the routes this node wants out.
//!
//! A node other than the gateway node routes every peer's ranges as it addresses them (our
//! decision: `remoteNATPodCIDR`, `remoteNATExternalCIDR`) to the gateway node's address, which
//! the gateway publishes in the TunnelEndpoint status (`gatewayNode`, `gatewayIP`). The gateway
//! node itself routes those ranges into the tunnel (the gateway's job), so it wants nothing here.
//!
//! The same inputs give the node's NAT exemption ([`NodeNatPlan`]): connections from our Pod
//! CIDR (`localPodCIDR`) to exactly the ranges routed here are bound to their own source before a
//! CNI's masquerade can rewrite it (docs/datapath.md). No route, no exemption.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use isthmus_api::{Cidr, ClusterId, TunnelEndpoint};
use isthmus_dataplane::node_nat::NodeNatPlan;
use isthmus_dataplane::routes::{NodePath, Route, node_routes};

/// The routes wanted for one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRoutes {
    /// The TunnelEndpoint's name.
    pub tunnel_endpoint: String,
    /// The peer.
    pub peer: ClusterId,
    /// The gateway node's address: the next hop.
    pub gateway: Ipv4Addr,
    /// The peer's ranges via the gateway node.
    pub routes: Vec<Route>,
}

/// Why a TunnelEndpoint contributes no route (or fewer than its ranges).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skipped {
    /// The gateway has not published its address yet.
    NoGatewayAddress,
    /// This node is the gateway node: the gateway routes into the tunnel itself.
    GatewayNode,
    /// The TunnelEndpoint is being deleted: the peering goes away.
    Deleting,
    /// The published gateway address cannot be a next hop.
    UnusableGateway(Ipv4Addr),
    /// A range another TunnelEndpoint already routes (the IPAM keeps views unique, so this means
    /// a stale object); the first TunnelEndpoint by name keeps it.
    Duplicate { dst: Ipv4Net, kept_by: String },
}

/// The desired routes of this node, by peer, and what was left out and why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutePlan {
    pub peers: Vec<PeerRoutes>,
    /// `(TunnelEndpoint name, reason)`.
    pub skipped: Vec<(String, Skipped)>,
    /// The NAT exemption of this node: our Pod CIDR to every routed range (empty: no table).
    pub nat: NodeNatPlan,
}

impl RoutePlan {
    /// Every wanted route.
    pub fn routes(&self) -> Vec<Route> {
        self.peers
            .iter()
            .flat_map(|p| p.routes.iter().cloned())
            .collect()
    }

    /// The peer whose route goes to `dst`, if any.
    pub fn peer_of(&self, dst: Ipv4Net) -> Option<&ClusterId> {
        self.peers
            .iter()
            .find(|p| p.routes.iter().any(|r| r.dst == dst))
            .map(|p| &p.peer)
    }
}

/// `Cidr` (validated, host bits zero) as the dataplane's prefix type.
pub fn to_net(cidr: Cidr) -> Ipv4Net {
    // The prefix length of a Cidr is at most 32, so this never fails.
    Ipv4Net::new(cidr.network(), cidr.prefix_len())
        .unwrap_or_else(|_| Ipv4Net::from(cidr.network()))
}

fn usable_next_hop(ip: Ipv4Addr) -> bool {
    !(ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() || ip.is_broadcast())
}

/// Plans the routes of node `node` from the TunnelEndpoints (in any order; they are taken by
/// name so the plan is deterministic).
pub fn plan<'a>(node: &str, teps: impl IntoIterator<Item = &'a TunnelEndpoint>) -> RoutePlan {
    let mut by_name: Vec<&TunnelEndpoint> = teps.into_iter().collect();
    by_name.sort_by_key(|t| t.metadata.name.clone());
    let mut out = RoutePlan::default();
    let mut owners: BTreeMap<Ipv4Net, String> = BTreeMap::new();
    let mut sources = Vec::new();
    for tep in by_name {
        let name = tep.metadata.name.clone().unwrap_or_default();
        let status = tep.status.as_ref();
        let gateway_node = status.and_then(|s| s.gateway_node.as_deref());
        let gateway = match status.and_then(|s| s.gateway_ip) {
            _ if tep.metadata.deletion_timestamp.is_some() => Err(Skipped::Deleting),
            None => Err(Skipped::NoGatewayAddress),
            Some(_) if gateway_node == Some(node) => Err(Skipped::GatewayNode),
            Some(ip) if !usable_next_hop(ip) => Err(Skipped::UnusableGateway(ip)),
            Some(ip) => Ok(ip),
        };
        let gateway = match gateway {
            Ok(ip) => ip,
            Err(why) => {
                out.skipped.push((name, why));
                continue;
            }
        };
        let mut ranges = Vec::new();
        for dst in [
            tep.spec.remote_nat_pod_cidr,
            tep.spec.remote_nat_external_cidr,
        ]
        .map(to_net)
        {
            match owners.get(&dst) {
                Some(kept_by) => out.skipped.push((
                    name.clone(),
                    Skipped::Duplicate {
                        dst,
                        kept_by: kept_by.clone(),
                    },
                )),
                None => {
                    owners.insert(dst, name.clone());
                    ranges.push(dst);
                }
            }
        }
        if !ranges.is_empty() {
            sources.push(to_net(tep.spec.local_pod_cidr));
        }
        out.peers.push(PeerRoutes {
            tunnel_endpoint: name,
            peer: tep.spec.cluster_id.clone(),
            gateway,
            routes: node_routes(&ranges, &NodePath::Direct { gateway }),
        });
    }
    let destinations: Vec<Ipv4Net> = out.routes().iter().map(|r| r.dst).collect();
    out.nat = NodeNatPlan::new(sources, destinations);
    out
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
