//! Routes: the driver trait, route specs, and the pure diff that makes them idempotent.
//!
//! On the gateway node the remote ranges go into the tunnel (`dev wg`). On other nodes they go to
//! the gateway node, either as a direct next hop on the same L2 or over a VXLAN overlay. Every
//! route we install carries our own routing protocol number, so we list and remove exactly ours.

pub mod fake;
pub mod linux;
pub mod overlay;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::{Error, Result};

/// Routing protocol number marking the gateway's routes (`ip route show proto 153`).
pub const ROUTE_PROTOCOL: u8 = 153;
/// Routing protocol number marking a route agent's routes (`ip route show proto 154`): distinct
/// from the gateway's, since both run on the gateway node and each removes what it does not want.
pub const NODE_ROUTE_PROTOCOL: u8 = 154;

/// The main routing table (`ip route show`).
pub const MAIN_TABLE: u32 = 254;
/// The local table (addresses of the host, `ip route show table local`).
pub const LOCAL_TABLE: u32 = 255;

/// What kind of route the kernel holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RouteKind {
    /// Forwarded (through a device or a gateway).
    Unicast,
    /// An address of this host.
    Local,
    /// A broadcast address of this host.
    Broadcast,
    /// Silently dropped.
    Blackhole,
    /// Answered with "network unreachable".
    Unreachable,
    /// Answered with "administratively prohibited".
    Prohibit,
    /// Any other type (`RTN_*` number).
    Other(u8),
}

/// Any IPv4 route as the kernel lists it, whoever installed it (inspection reads these; the
/// drivers only touch [`Route`]s of their own protocol).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RouteEntry {
    /// Destination.
    pub dst: Ipv4Net,
    /// Next-hop address, if any.
    pub gateway: Option<Ipv4Addr>,
    /// Output device, if any.
    pub dev: Option<String>,
    /// Routing protocol number (2 kernel, 3 boot, 4 static, [`ROUTE_PROTOCOL`], ...).
    pub protocol: u8,
    /// Routing table ([`MAIN_TABLE`], [`LOCAL_TABLE`], ...).
    pub table: u32,
    /// Route type.
    pub kind: RouteKind,
    /// Metric (`metric N`; lower wins between routes of the same prefix).
    pub metric: u32,
    /// A per-route MTU (`mtu N`), when set.
    pub mtu: Option<u32>,
}

/// A network link as inspection sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkEntry {
    /// Interface index.
    pub index: u32,
    /// Name.
    pub name: String,
    /// MTU.
    pub mtu: Option<u32>,
    /// Administratively up.
    pub up: bool,
    /// Link kind (`wireguard`, `tun`, `veth`, `bridge`, ...), when the kernel says.
    pub kind: Option<String>,
}

/// A routing protocol number for people: `kernel`, `boot`, `static`, `153 (isthmus gateway)`.
pub fn protocol_name(protocol: u8) -> String {
    match protocol {
        0 => "unspec".into(),
        1 => "redirect".into(),
        2 => "kernel".into(),
        3 => "boot".into(),
        4 => "static".into(),
        16 => "dhcp".into(),
        ROUTE_PROTOCOL => format!("{ROUTE_PROTOCOL} (isthmus gateway)"),
        NODE_ROUTE_PROTOCOL => format!("{NODE_ROUTE_PROTOCOL} (isthmus route agent)"),
        186 => "bgp".into(),
        188 => "ospf".into(),
        other => other.to_string(),
    }
}

/// Where a route sends packets.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NextHop {
    /// Out of an interface (the tunnel, or a point-to-point overlay).
    Dev(String),
    /// Through a gateway address, optionally on a given interface.
    Via(Ipv4Addr, Option<String>),
    /// Through a gateway address taken as on-link on an interface whatever its addresses
    /// (`via <ip> dev <link> onlink`): the node overlay, where the gateway node's underlay
    /// address is the next hop on the VXLAN link ([`overlay`]).
    Onlink(Ipv4Addr, String),
}

/// One route we own.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Route {
    /// Destination.
    pub dst: Ipv4Net,
    /// Next hop.
    pub via: NextHop,
}

/// A VXLAN link between a node and the gateway node (unicast only: the remote is the default
/// FDB entry; no multicast group, no learning).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanSpec {
    /// Link name.
    pub name: String,
    /// VXLAN network identifier.
    pub vni: u32,
    /// UDP port.
    pub port: u16,
    /// MTU of the overlay link.
    pub mtu: u32,
    /// The link's MAC (`None`: whatever the kernel picks).
    pub mac: Option<[u8; 6]>,
    /// Underlay device to bind to (`None`: the kernel routes the outer packets).
    pub dev: Option<String>,
    /// Our underlay address (`None`: the kernel picks the source).
    pub local: Option<Ipv4Addr>,
    /// The other end's underlay address: where every frame goes (`None`: receive only).
    pub remote: Option<Ipv4Addr>,
    /// Our overlay address on the link, if any.
    pub address: Option<Ipv4Net>,
    /// Permanent neighbor entries on the link: next hop → its MAC (no ARP over the overlay).
    pub neighbors: Vec<(Ipv4Addr, [u8; 6])>,
    /// Loose reverse-path filtering on the link (`rp_filter=2`, best effort): what arrives here
    /// is answered by another path.
    pub loose_rp_filter: bool,
}

/// A VXLAN link as read back for inspection: what identifies it (what [`VxlanSpec`] asks for
/// and `ensure_vxlan` compares).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanView {
    /// VXLAN network identifier.
    pub vni: Option<u32>,
    /// UDP port.
    pub port: Option<u16>,
    /// The default remote (`None`: receive only).
    pub remote: Option<Ipv4Addr>,
    /// The link's MAC.
    pub mac: Option<[u8; 6]>,
}

/// Links and routes of one namespace.
pub trait RouteDriver: Send {
    /// Turns on IPv4 forwarding in the namespace (a gateway forwards between pods and tunnel).
    fn enable_forwarding(&mut self) -> Result<()>;
    /// Sets a link up, with an MTU when given.
    fn link_up(&mut self, name: &str, mtu: Option<u32>) -> Result<()>;
    /// Creates the VXLAN link if missing (recreates it when its VNI, port, remote or MAC
    /// differ), addresses it, installs its neighbor entries and sets it up.
    fn ensure_vxlan(&mut self, spec: &VxlanSpec) -> Result<()>;
    /// How the kernel reaches `dst` now (`ip route get`): next hop, device and its MTU.
    fn reach(&mut self, dst: Ipv4Addr) -> Result<overlay::Reach>;
    /// Deletes a link if it exists.
    fn delete_link(&mut self, name: &str) -> Result<()>;
    /// Routes carrying [`ROUTE_PROTOCOL`] in the main table.
    fn routes(&mut self) -> Result<Vec<Route>>;
    /// Adds or replaces a route.
    fn add_route(&mut self, route: &Route) -> Result<()>;
    /// Deletes a route.
    fn del_route(&mut self, route: &Route) -> Result<()>;
}

/// How a non-gateway node reaches the gateway node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodePath {
    /// Same L2: the gateway node's address is the next hop.
    Direct {
        /// Gateway node address.
        gateway: Ipv4Addr,
    },
    /// Over the node overlay ([`overlay`]): the gateway node's underlay address, on-link on the
    /// VXLAN link.
    Overlay {
        /// The VXLAN link.
        link: String,
        /// The gateway node's underlay address.
        gateway: Ipv4Addr,
    },
    /// Over a VXLAN link to the gateway node, addressed on both ends.
    Vxlan {
        /// The VXLAN link (see [`VxlanSpec`]).
        link: String,
        /// The gateway node's overlay address on it.
        gateway: Ipv4Addr,
    },
}

/// The routes a non-gateway node needs for the remote ranges.
pub fn node_routes(remote: &[Ipv4Net], path: &NodePath) -> Vec<Route> {
    let via = match path {
        NodePath::Direct { gateway } => NextHop::Via(*gateway, None),
        NodePath::Vxlan { link, gateway } => NextHop::Via(*gateway, Some(link.clone())),
        NodePath::Overlay { link, gateway } => NextHop::Onlink(*gateway, link.clone()),
    };
    remote
        .iter()
        .map(|dst| Route {
            dst: *dst,
            via: via.clone(),
        })
        .collect()
}

/// What changed in a sync.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteDiff {
    /// Routes added.
    pub added: Vec<Route>,
    /// Routes removed.
    pub removed: Vec<Route>,
}

/// Whether an installed route does what a wanted one asks (a wanted next hop without a device
/// accepts the device the kernel picked).
fn satisfies(have: &Route, want: &Route) -> bool {
    have.dst == want.dst
        && match (&have.via, &want.via) {
            (NextHop::Via(a, _), NextHop::Via(b, None)) => a == b,
            (have, want) => have == want,
        }
}

/// Pure diff: routes to add (added with "replace", so a changed next hop overwrites the old one)
/// and routes to remove (their destination is no longer wanted).
pub fn diff(current: &[Route], desired: &[Route]) -> RouteDiff {
    let wanted: BTreeSet<Ipv4Net> = desired.iter().map(|r| r.dst).collect();
    let mut added: Vec<Route> = desired
        .iter()
        .filter(|want| !current.iter().any(|have| satisfies(have, want)))
        .cloned()
        .collect();
    added.sort();
    added.dedup();
    let removed = current
        .iter()
        .filter(|have| !wanted.contains(&have.dst))
        .cloned()
        .collect();
    RouteDiff { added, removed }
}

/// Makes our routes exactly `desired`. Removal keeps going past errors and reports them all.
pub fn sync(driver: &mut dyn RouteDriver, desired: &[Route]) -> Result<RouteDiff> {
    let current = driver.routes()?;
    let change = diff(&current, desired);
    for route in &change.added {
        driver.add_route(route)?;
    }
    let errors: Vec<Error> = change
        .removed
        .iter()
        .filter_map(|r| driver.del_route(r).err())
        .collect();
    if !change.added.is_empty() || !change.removed.is_empty() {
        tracing::debug!(added = ?change.added, removed = ?change.removed, "routes synced");
    }
    Error::collect(errors)?;
    Ok(change)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(dst: &str) -> Route {
        Route {
            dst: dst.parse().unwrap(),
            via: NextHop::Dev("wg0".into()),
        }
    }

    #[test]
    fn sync_is_idempotent_and_removes_only_extras() {
        let mut driver = fake::FakeRoutes::default();
        let desired = vec![dev("10.101.0.0/24"), dev("10.102.0.0/24")];
        assert_eq!(sync(&mut driver, &desired).unwrap().added.len(), 2);
        assert_eq!(sync(&mut driver, &desired).unwrap(), RouteDiff::default());
        let diff = sync(&mut driver, &desired[..1]).unwrap();
        assert_eq!(diff.removed, vec![dev("10.102.0.0/24")]);
    }

    #[test]
    fn a_next_hop_without_device_accepts_the_kernel_device() {
        let gateway = Ipv4Addr::new(172, 16, 0, 1);
        let want = Route {
            dst: "10.1.0.0/24".parse().unwrap(),
            via: NextHop::Via(gateway, None),
        };
        let have = Route {
            via: NextHop::Via(gateway, Some("eth0".into())),
            ..want.clone()
        };
        assert_eq!(
            diff(std::slice::from_ref(&have), std::slice::from_ref(&want)),
            RouteDiff::default()
        );
        let moved = Route {
            via: NextHop::Dev("vx0".into()),
            ..want.clone()
        };
        assert_eq!(
            diff(&[have], std::slice::from_ref(&moved)),
            RouteDiff {
                added: vec![moved],
                removed: vec![]
            }
        );
    }

    #[test]
    fn protocol_numbers_read_as_names() {
        assert_eq!(protocol_name(2), "kernel");
        assert_eq!(protocol_name(153), "153 (isthmus gateway)");
        assert_eq!(protocol_name(154), "154 (isthmus route agent)");
        assert_eq!(protocol_name(99), "99");
    }

    #[test]
    fn node_routes_point_at_the_gateway_node() {
        let remote = ["10.101.0.0/24".parse().unwrap()];
        let gateway = Ipv4Addr::new(172, 17, 0, 1);
        let routes = node_routes(
            &remote,
            &NodePath::Vxlan {
                link: "vx0".into(),
                gateway,
            },
        );
        assert_eq!(routes[0].via, NextHop::Via(gateway, Some("vx0".into())));
        let routes = node_routes(&remote, &NodePath::Direct { gateway });
        assert_eq!(routes[0].via, NextHop::Via(gateway, None));
        let link = overlay::OVERLAY_LINK.to_owned();
        let routes = node_routes(&remote, &NodePath::Overlay { link, gateway });
        assert_eq!(
            routes[0].via,
            NextHop::Onlink(gateway, "isthmus-vx0".into())
        );
    }
}
