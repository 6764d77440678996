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
//!
//! The path to the gateway node ([`OverlayInput`]): a direct next hop when the gateway node is
//! on-link, else (mode `auto`) the VXLAN overlay ([`isthmus_dataplane::routes::overlay`]); the
//! gateway node itself keeps the receiving end of the overlay while it is the gateway node of
//! any TunnelEndpoint (unless the mode is `never`). How this node reaches each gateway address is
//! observed by the agent and passed in, so this stays pure.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use isthmus_api::{Cidr, ClusterId, TunnelEndpoint};
use isthmus_dataplane::node_nat::NodeNatPlan;
use isthmus_dataplane::routes::overlay::{self, OVERLAY_LINK, OverlayMode, OverlaySettings, Reach};
use isthmus_dataplane::routes::{NodePath, Route, VxlanSpec, node_routes};

/// What the planner needs to choose the path to the gateway node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OverlayInput {
    /// Mode, VNI and port.
    pub settings: OverlaySettings,
    /// How this node's kernel reaches each gateway address (missing: not looked up yet).
    pub reach: BTreeMap<Ipv4Addr, Reach>,
}

/// The routes wanted for one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRoutes {
    /// The TunnelEndpoint's name.
    pub tunnel_endpoint: String,
    /// The peer.
    pub peer: ClusterId,
    /// The gateway node's address: the next hop.
    pub gateway: Ipv4Addr,
    /// Whether the routes go over the overlay link.
    pub overlay: bool,
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
    /// The overlay link already points at another gateway address (kept by the first
    /// TunnelEndpoint by name; the gateway moves one TunnelEndpoint at a time).
    OverlayBusy { gateway: Ipv4Addr, kept_by: String },
}

/// The desired routes of this node, by peer, and what was left out and why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutePlan {
    pub peers: Vec<PeerRoutes>,
    /// `(TunnelEndpoint name, reason)`.
    pub skipped: Vec<(String, Skipped)>,
    /// The NAT exemption of this node: our Pod CIDR to every routed range (empty: no table).
    pub nat: NodeNatPlan,
    /// The overlay link this node wants (none: no link; an existing one is removed).
    pub overlay: Option<VxlanSpec>,
    /// Every gateway address this node routes to: what the agent looks up for the next plan.
    pub gateways: Vec<Ipv4Addr>,
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
/// name so the plan is deterministic), with the default overlay settings and nothing looked up
/// yet (direct next hops).
pub fn plan<'a>(node: &str, teps: impl IntoIterator<Item = &'a TunnelEndpoint>) -> RoutePlan {
    plan_with(node, teps, &OverlayInput::default())
}

/// The gateway address of a TunnelEndpoint, or why it gives no route here.
fn gateway_of(node: &str, tep: &TunnelEndpoint) -> Result<Ipv4Addr, Skipped> {
    let status = tep.status.as_ref();
    let gateway_node = status.and_then(|s| s.gateway_node.as_deref());
    match status.and_then(|s| s.gateway_ip) {
        _ if tep.metadata.deletion_timestamp.is_some() => Err(Skipped::Deleting),
        None => Err(Skipped::NoGatewayAddress),
        Some(_) if gateway_node == Some(node) => Err(Skipped::GatewayNode),
        Some(ip) if !usable_next_hop(ip) => Err(Skipped::UnusableGateway(ip)),
        Some(ip) => Ok(ip),
    }
}

/// [`plan`] with the overlay's settings and what the agent observed.
pub fn plan_with<'a>(
    node: &str,
    teps: impl IntoIterator<Item = &'a TunnelEndpoint>,
    input: &OverlayInput,
) -> RoutePlan {
    let mut by_name: Vec<&TunnelEndpoint> = teps.into_iter().collect();
    by_name.sort_by_key(|t| t.metadata.name.clone());
    let mut out = RoutePlan::default();
    let mut owners: BTreeMap<Ipv4Net, String> = BTreeMap::new();
    let mut sources = Vec::new();
    // the receiving end's MAC, when this node is a gateway node; the sending end's gateway
    let mut receiver: Option<Ipv4Addr> = None;
    let mut sender: Option<(Ipv4Addr, String)> = None;
    for tep in by_name {
        let name = tep.metadata.name.clone().unwrap_or_default();
        let gateway = match gateway_of(node, tep) {
            Ok(ip) => ip,
            Err(why) => {
                if why == Skipped::GatewayNode && input.settings.mode != OverlayMode::Never {
                    let ip = tep.status.as_ref().and_then(|s| s.gateway_ip);
                    receiver = receiver.or(ip);
                }
                out.skipped.push((name, why));
                continue;
            }
        };
        let use_overlay = overlay::choose(input.settings.mode, input.reach.get(&gateway));
        if use_overlay {
            match &sender {
                Some((ip, kept_by)) if *ip != gateway => {
                    let why = Skipped::OverlayBusy {
                        gateway: *ip,
                        kept_by: kept_by.clone(),
                    };
                    out.skipped.push((name, why));
                    continue;
                }
                Some(_) => {}
                None => sender = Some((gateway, name.clone())),
            }
        }
        if !out.gateways.contains(&gateway) {
            out.gateways.push(gateway);
        }
        let ranges = claim_ranges(tep, &name, &mut owners, &mut out.skipped);
        if !ranges.is_empty() {
            sources.push(to_net(tep.spec.local_pod_cidr));
        }
        let path = if use_overlay {
            NodePath::Overlay {
                link: OVERLAY_LINK.to_owned(),
                gateway,
            }
        } else {
            NodePath::Direct { gateway }
        };
        out.peers.push(PeerRoutes {
            tunnel_endpoint: name,
            peer: tep.spec.cluster_id.clone(),
            gateway,
            overlay: use_overlay,
            routes: node_routes(&ranges, &path),
        });
    }
    let destinations: Vec<Ipv4Net> = out.routes().iter().map(|r| r.dst).collect();
    out.nat = NodeNatPlan::new(sources, destinations);
    let own_mac = receiver.map(overlay::overlay_mac);
    out.overlay = match (sender, receiver) {
        (Some((gw, _)), _) => Some(overlay::sender_link(
            &input.settings,
            gw,
            input.reach.get(&gw),
            own_mac,
        )),
        (None, Some(gw)) => Some(overlay::receiver_link(&input.settings, gw)),
        (None, None) => None,
    };
    out
}

/// The TunnelEndpoint's two remote ranges that no earlier TunnelEndpoint routes.
fn claim_ranges(
    tep: &TunnelEndpoint,
    name: &str,
    owners: &mut BTreeMap<Ipv4Net, String>,
    skipped: &mut Vec<(String, Skipped)>,
) -> Vec<Ipv4Net> {
    let mut ranges = Vec::new();
    for dst in [
        tep.spec.remote_nat_pod_cidr,
        tep.spec.remote_nat_external_cidr,
    ]
    .map(to_net)
    {
        match owners.get(&dst) {
            Some(kept_by) => skipped.push((
                name.to_owned(),
                Skipped::Duplicate {
                    dst,
                    kept_by: kept_by.clone(),
                },
            )),
            None => {
                owners.insert(dst, name.to_owned());
                ranges.push(dst);
            }
        }
    }
    ranges
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
