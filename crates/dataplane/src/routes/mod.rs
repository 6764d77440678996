//! Routes: the driver trait, route specs, and the pure diff that makes them idempotent.
//!
//! On the gateway node the remote ranges go into the tunnel (`dev wg`). On other nodes they go to
//! the gateway node, either as a direct next hop on the same L2 or over a VXLAN overlay. Every
//! route we install carries our own routing protocol number, so we list and remove exactly ours.

pub mod fake;
pub mod linux;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::{Error, Result};

/// Routing protocol number marking our routes (`ip route show proto 153`).
pub const ROUTE_PROTOCOL: u8 = 153;

/// Where a route sends packets.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NextHop {
    /// Out of an interface (the tunnel, or a point-to-point overlay).
    Dev(String),
    /// Through a gateway address, optionally on a given interface.
    Via(Ipv4Addr, Option<String>),
}

/// One route we own.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Route {
    /// Destination.
    pub dst: Ipv4Net,
    /// Next hop.
    pub via: NextHop,
}

/// A point-to-point VXLAN link from a node to the gateway node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanSpec {
    /// Link name.
    pub name: String,
    /// VXLAN network identifier.
    pub vni: u32,
    /// Underlay device.
    pub dev: String,
    /// Our underlay address.
    pub local: Ipv4Addr,
    /// The other end's underlay address.
    pub remote: Ipv4Addr,
    /// Our overlay address on the link.
    pub address: Ipv4Net,
    /// UDP port (4789 by default).
    pub port: u16,
    /// MTU of the overlay link.
    pub mtu: u32,
}

/// Links and routes of one namespace.
pub trait RouteDriver: Send {
    /// Turns on IPv4 forwarding in the namespace (a gateway forwards between pods and tunnel).
    fn enable_forwarding(&mut self) -> Result<()>;
    /// Sets a link up, with an MTU when given.
    fn link_up(&mut self, name: &str, mtu: Option<u32>) -> Result<()>;
    /// Creates the VXLAN link if missing, addresses it and sets it up.
    fn ensure_vxlan(&mut self, spec: &VxlanSpec) -> Result<()>;
    /// Deletes a link if it exists.
    fn delete_link(&mut self, name: &str) -> Result<()>;
    /// Routes carrying [`ROUTE_PROTOCOL`] in the main table.
    fn routes(&mut self) -> Result<Vec<Route>>;
    /// Adds or replaces a route.
    fn add_route(&mut self, route: &Route) -> Result<()>;
    /// Deletes a route.
    fn del_route(&mut self, route: &Route) -> Result<()>;
}

/// What changed in a sync.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteDiff {
    /// Routes added.
    pub added: Vec<Route>,
    /// Routes removed.
    pub removed: Vec<Route>,
}

/// Pure diff: what to add and what to remove to go from `current` to `desired`.
pub fn diff(current: &[Route], desired: &[Route]) -> RouteDiff {
    let have: BTreeSet<&Route> = current.iter().collect();
    let want: BTreeSet<&Route> = desired.iter().collect();
    RouteDiff {
        added: want.difference(&have).map(|r| (*r).clone()).collect(),
        removed: have.difference(&want).map(|r| (*r).clone()).collect(),
    }
}

/// Makes our routes exactly `desired`. Removal keeps going past errors and reports them all.
pub fn sync(driver: &mut dyn RouteDriver, desired: &[Route]) -> Result<RouteDiff> {
    let current = driver.routes()?;
    let change = diff(&current, desired);
    for route in &change.added {
        driver.add_route(route)?;
    }
    let errors: Vec<Error> = change.removed.iter().filter_map(|r| driver.del_route(r).err()).collect();
    Error::collect(errors)?;
    Ok(change)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(dst: &str) -> Route {
        Route { dst: dst.parse().unwrap(), via: NextHop::Dev("wg0".into()) }
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
}
