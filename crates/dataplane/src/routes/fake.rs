//! A recording route driver for unit tests.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use super::overlay::Reach;
use super::{Route, RouteDriver, VxlanSpec};
use crate::Result;

/// Keeps routes and links in memory and logs every call.
#[derive(Debug, Default, Clone)]
pub struct FakeRoutes {
    /// Installed routes.
    pub routes: BTreeSet<Route>,
    /// Links that are up or created.
    pub links: BTreeSet<String>,
    /// Every call, in order (`add 10.1.0.0/24`, ...).
    pub calls: Vec<String>,
    /// VXLAN links as last ensured.
    pub vxlans: BTreeMap<String, VxlanSpec>,
    /// What [`RouteDriver::reach`] answers per destination (missing: on-link on `eth0`, 1500).
    pub reach: BTreeMap<Ipv4Addr, Reach>,
}

impl RouteDriver for FakeRoutes {
    fn enable_forwarding(&mut self) -> Result<()> {
        self.calls.push("forwarding on".into());
        Ok(())
    }

    fn link_up(&mut self, name: &str, mtu: Option<u32>) -> Result<()> {
        self.calls.push(format!("up {name} {mtu:?}"));
        self.links.insert(name.to_owned());
        Ok(())
    }

    fn ensure_vxlan(&mut self, spec: &VxlanSpec) -> Result<()> {
        self.calls.push(format!("vxlan {}", spec.name));
        self.links.insert(spec.name.clone());
        self.vxlans.insert(spec.name.clone(), spec.clone());
        Ok(())
    }

    fn reach(&mut self, dst: Ipv4Addr) -> Result<Reach> {
        let default = Reach::on_link("eth0", 1500);
        Ok(self.reach.get(&dst).cloned().unwrap_or(default))
    }

    fn delete_link(&mut self, name: &str) -> Result<()> {
        // like the real driver: a missing link is no change, and no call worth recording
        if self.links.remove(name) {
            self.calls.push(format!("delete link {name}"));
        }
        self.vxlans.remove(name);
        Ok(())
    }

    fn routes(&mut self) -> Result<Vec<Route>> {
        Ok(self.routes.iter().cloned().collect())
    }

    fn add_route(&mut self, route: &Route) -> Result<()> {
        self.calls.push(format!("add {}", route.dst));
        self.routes.retain(|r| r.dst != route.dst);
        self.routes.insert(route.clone());
        Ok(())
    }

    fn del_route(&mut self, route: &Route) -> Result<()> {
        self.calls.push(format!("del {}", route.dst));
        self.routes.remove(route);
        Ok(())
    }
}
