//! How a lab cluster exposes its gateway on the underlay (`isthmus lab up --exposure`), and the
//! NAT that stands in front of it when the exposure is not the node's own address:
//!
//! - [`Exposure::Node`] (the default): the gateway node's underlay address and the WireGuard
//!   port, no NAT;
//! - [`Exposure::NodePort`]: what kube-proxy does for a NodePort Service whose endpoint is a
//!   hostNetwork pod: on every gateway node, a table that is not ours (`ip lab-kube-proxy`)
//!   DNATs `udp dport 31820` addressed to the node to the node's port 51820. The cluster
//!   advertises `<node underlay address>:31820`;
//! - [`Exposure::LoadBalancer`]: a load balancer address per cluster on the underlay bridge, in
//!   the WAN namespace (`.(50+i)`, [`crate::lb`]): stateless, it sends what reaches the address
//!   on to the node of the active gateway replica, which the caller points it at (the lab's
//!   runner follows the gateway's Lease). The cluster advertises `<load balancer address>:51820`.
//!
//! Neither touches what the gateway sends: it sends from its own address and port 51820 (the
//! NodePort's replies to a flow it translated are translated back by conntrack; the load
//! balancer returns nothing), so a peer sees packets from an endpoint other than the advertised
//! one and WireGuard roams to it, as on a real cluster. Installed before the daemons start,
//! removed with the namespaces.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::str::FromStr;

use ipnet::Ipv4Net;

use crate::cni::nft_load;
use crate::{Error, Result, TopologyRecord};

/// The NodePort the clusters advertise with [`Exposure::NodePort`] (in kube-proxy's range).
pub const NODE_PORT: u16 = 31820;
/// The NodePort emulation's table on each gateway node (family `ip`).
pub const KUBE_PROXY_TABLE: &str = "lab-kube-proxy";
/// How every cluster of a lab exposes its gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Exposure {
    /// The gateway node's own underlay address and WireGuard port.
    #[default]
    Node,
    /// A NodePort in front of the gateway node (a DNAT on the node, as kube-proxy's).
    NodePort,
    /// A load balancer address in front of the gateway node (a DNAT in the WAN namespace).
    LoadBalancer,
}

impl fmt::Display for Exposure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Exposure::Node => "node",
            Exposure::NodePort => "nodeport",
            Exposure::LoadBalancer => "loadbalancer",
        })
    }
}

impl FromStr for Exposure {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "node" => Ok(Exposure::Node),
            "nodeport" => Ok(Exposure::NodePort),
            "loadbalancer" => Ok(Exposure::LoadBalancer),
            other => Err(Error::spec(format!(
                "exposure must be node, nodeport or loadbalancer, not {other:?}"
            ))),
        }
    }
}

/// Cluster `index`'s load balancer address on the underlay `wan` ([`crate::lb::vip`]).
pub fn load_balancer_address(wan: Ipv4Net, index: usize) -> Result<Ipv4Addr> {
    crate::lb::vip(wan, index)
}

impl Exposure {
    /// The endpoint cluster `index` advertises, its gateway listening on `port` (pure).
    pub fn advertised(self, lab: &TopologyRecord, index: usize, port: u16) -> Result<SocketAddrV4> {
        let underlay = lab.clusters[index].underlay;
        Ok(match self {
            Exposure::Node => SocketAddrV4::new(underlay, port),
            Exposure::NodePort => SocketAddrV4::new(underlay, NODE_PORT),
            Exposure::LoadBalancer => {
                SocketAddrV4::new(load_balancer_address(lab.wan.network, index)?, port)
            }
        })
    }
}

/// The NodePort emulation of a gateway node (pure): UDP to one of the node's own addresses at
/// [`NODE_PORT`] goes to the same address at `port`.
pub fn node_port_ruleset(port: u16) -> String {
    format!(
        "table ip {KUBE_PROXY_TABLE} {{\n\tchain prerouting {{\n\t\ttype nat hook prerouting \
         priority dstnat; policy accept;\n\t\tfib daddr type local udp dport {NODE_PORT} dnat \
         to :{port}\n\t}}\n}}\n"
    )
}

/// Installs the NAT `exposure` needs in front of every gateway of `lab` (nothing for
/// [`Exposure::Node`]); the gateways listen on `port`.
pub fn install(lab: &TopologyRecord, exposure: Exposure, port: u16) -> Result<()> {
    match exposure {
        Exposure::Node => Ok(()),
        Exposure::NodePort => install_node_ports(lab, port),
        Exposure::LoadBalancer => install_load_balancers(lab, port),
    }
}

/// The NodePort table on every gateway node of every cluster.
fn install_node_ports(lab: &TopologyRecord, port: u16) -> Result<()> {
    let ruleset = node_port_ruleset(port);
    for cluster in &lab.clusters {
        for node in cluster.nodes.iter().filter(|n| n.underlay.is_some()) {
            nft_load(&node.namespace, &ruleset)?;
        }
    }
    Ok(())
}

/// The load balancer addresses on the WAN bridge, pointing nowhere until the caller points
/// them at a gateway node ([`crate::lb::point_at`]).
fn install_load_balancers(lab: &TopologyRecord, port: u16) -> Result<()> {
    let ns = &lab.wan.namespace;
    for (index, cluster) in lab.clusters.iter().enumerate() {
        let address = load_balancer_address(lab.wan.network, index)?;
        crate::lb::install(ns, lab.wan.network, address)?;
        crate::lb::point_at(ns, &cluster.id, address, port, None)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TopologySpec;

    #[test]
    fn the_node_port_rule_dnats_the_node_port_to_the_gateway_port() {
        let text = node_port_ruleset(51820);
        assert!(text.starts_with("table ip lab-kube-proxy {"));
        assert!(text.contains("type nat hook prerouting priority dstnat;"));
        assert!(text.contains("fib daddr type local udp dport 31820 dnat to :51820"));
    }

    #[test]
    fn each_exposure_advertises_its_own_endpoint() {
        let lab = TopologySpec::with_clusters(2).plan("il1x0").unwrap();
        let at = |e: Exposure| e.advertised(&lab, 1, 51820).unwrap().to_string();
        assert_eq!(at(Exposure::Node), "192.168.100.11:51820");
        assert_eq!(at(Exposure::NodePort), "192.168.100.11:31820");
        assert_eq!(at(Exposure::LoadBalancer), "192.168.100.51:51820");
    }

    #[test]
    fn the_names_round_trip_and_unknown_ones_are_refused() {
        for e in [Exposure::Node, Exposure::NodePort, Exposure::LoadBalancer] {
            assert_eq!(e.to_string().parse::<Exposure>().unwrap(), e);
        }
        assert!("clusterip".parse::<Exposure>().is_err());
    }

    #[test]
    fn a_load_balancer_needs_room_on_the_underlay() {
        let small: Ipv4Net = "192.168.100.0/26".parse().unwrap();
        assert!(load_balancer_address(small, 0).is_ok());
        assert!(load_balancer_address(small, 27).is_err());
    }
}
