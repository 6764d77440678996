//! What the node should hold according to the cluster's resources, computed with the real
//! planners (pure): the gateway's plan ([`isthmus_gateway::plan`]) → the validated spec → the
//! NAT plan → the rendered table ([`render`]) read as a [`TableView`]; the gateway's routes into
//! the tunnel; the route agent's plan for this node (routes, overlay link, NAT exemption, with
//! the path to each gateway address as the node's kernel reports it); our ranges and every peer's ranges
//! as we address them; and whether this node is the gateway node.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use isthmus_api::{BACKEND_PUBLIC_KEY, Cidr, TunnelEndpoint, TunnelEndpointStatus};
use isthmus_dataplane::firewall::view::TableView;
use isthmus_dataplane::firewall::{NatPlan, TABLE, render};
use isthmus_dataplane::model::ValidSpec;
use isthmus_dataplane::routes::Route;
use isthmus_dataplane::routes::overlay::Reach;
use isthmus_dataplane::{PrivateKey, PublicKey};
use isthmus_gateway::plan::{Device, Resolved, plan};
use isthmus_route_agent::RoutePlan;
use isthmus_route_agent::plan::OverlayInput;
use kube::ResourceExt;

use super::Resources;

/// What diagnose was pointed at (beyond the API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Namespace of the TunnelEndpoints and NatMappings.
    pub namespace: String,
    /// The gateway's WireGuard interface.
    pub interface: String,
    /// Whether `interface` was asked for (`--interface`, the lab's naming). When not, and every
    /// TunnelEndpoint reports the same `status.interfaceName`, that one is inspected instead.
    pub interface_given: bool,
    /// This node's name, when known (`--node-name`, the lab node).
    pub node_name: Option<String>,
    /// The gateway's UDP port, when given (`--listen-port`); else the device's is taken.
    pub listen_port: Option<u16>,
    /// The API, for the report.
    pub api: String,
    /// Set when the target is a lab cluster: hints then name lab commands, not kubectl ones.
    pub lab: Option<LabHints>,
    /// The route agents' overlay settings (`--overlay-mode`, `--overlay-vni`,
    /// `--overlay-port`; the chart's `routeAgent.overlay`).
    pub overlay: isthmus_dataplane::routes::overlay::OverlaySettings,
}

/// What a hint needs to know of the lab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabHints {
    /// How the user runs isthmus (`target/release/isthmus`).
    pub command: String,
    /// The lab daemon's log, where every component of the lab logs.
    pub log: std::path::PathBuf,
}

impl LabHints {
    /// The lab runs every component in its own process: restarting one means restarting the lab.
    pub fn restart(&self) -> String {
        format!(
            "the lab restarts its components together: `sudo {0} lab down`, then `sudo {0} lab up`",
            self.command
        )
    }
}

/// One TunnelEndpoint, as the checks need it.
#[derive(Debug, Clone)]
pub struct PeerView {
    /// The TunnelEndpoint's name.
    pub tep: String,
    /// The peer cluster ID.
    pub peer: String,
    /// `host:port`.
    pub endpoint: String,
    /// Its WireGuard key, when it parses.
    pub public_key: Option<PublicKey>,
    /// The peer's Pod CIDR as we address it.
    pub pod: Ipv4Net,
    /// The peer's ExternalCIDR as we address it.
    pub external: Ipv4Net,
    /// Why the gateway leaves it out (condition reason, message); `None` when configured.
    pub problem: Option<(&'static str, String)>,
    /// What the gateway reported.
    pub status: Option<TunnelEndpointStatus>,
}

/// The desired state of this node.
#[derive(Debug, Clone)]
pub struct Desired {
    /// Every TunnelEndpoint, by name.
    pub peers: Vec<PeerView>,
    /// What the gateway programs (`None`: no usable peer, so no datapath at all).
    pub spec: Option<ValidSpec>,
    /// The NAT plan of `spec`.
    pub nat: Option<NatPlan>,
    /// The table `render` builds for `nat`.
    pub table: Option<TableView>,
    /// The gateway's routes into the tunnel (protocol 153).
    pub gateway_routes: Vec<Route>,
    /// The route agent's routes on this node (protocol 154; empty on the gateway node).
    pub node_routes: RoutePlan,
    /// Our ranges: `(what, range)`, one entry per distinct value.
    pub local: Vec<(String, Ipv4Net)>,
    /// Why the NatMappings could not be read (map elements are then not compared).
    pub nat_mappings_error: Option<String>,
}

impl Desired {
    /// The peer whose ranges (as we address them) contain `net`, if any.
    pub fn peer_of(&self, net: Ipv4Net) -> Option<&PeerView> {
        self.peers
            .iter()
            .find(|p| p.pod.contains(&net) || p.external.contains(&net))
    }

    /// `peer a's Pod CIDR` / `peer a's ExternalCIDR` for one of a peer's ranges.
    pub fn range_label(&self, net: Ipv4Net) -> String {
        match self.peer_of(net) {
            Some(p) if p.pod == net => format!("peer {}'s Pod CIDR", p.peer),
            Some(p) if p.external == net => format!("peer {}'s ExternalCIDR", p.peer),
            Some(p) => format!("a range of peer {}", p.peer),
            None => "no peer's range".into(),
        }
    }
}

/// The target with the interface the gateway reports, when none was asked for and the
/// TunnelEndpoints agree on one.
pub fn with_reported_interface(target: &Target, teps: &[TunnelEndpoint]) -> Target {
    let mut out = target.clone();
    if target.interface_given {
        return out;
    }
    let reported: std::collections::BTreeSet<&str> = teps
        .iter()
        .filter_map(|t| t.status.as_ref()?.interface_name.as_deref())
        .collect();
    if let (1, Some(name)) = (reported.len(), reported.first()) {
        out.interface = (*name).to_owned();
    }
    out
}

/// Whether this node is the gateway node, and why diagnose thinks so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    /// The gateway node (else: a node reaching peers through it).
    pub gateway: bool,
    /// Why.
    pub basis: String,
    /// The gateway node the TunnelEndpoints name, if any.
    pub gateway_node: Option<String>,
}

fn net(cidr: Cidr) -> Ipv4Net {
    isthmus_route_agent::plan::to_net(cidr)
}

/// Decides the node's role from `--node-name`, the gateway's reported node, and whether the
/// tunnel interface exists here.
pub fn role(node_name: Option<&str>, teps: &[TunnelEndpoint], tunnel_here: bool) -> Role {
    let reported = teps
        .iter()
        .filter_map(|t| t.status.as_ref()?.gateway_node.clone())
        .next();
    let (gateway, basis) = match (node_name, &reported) {
        (Some(me), Some(gw)) if me == gw.as_str() => (
            true,
            format!("TunnelEndpoints say the gateway runs on {gw}"),
        ),
        (Some(_), Some(gw)) => (
            false,
            format!("TunnelEndpoints say the gateway runs on {gw}"),
        ),
        (_, None) if tunnel_here => (
            true,
            "no gateway node reported yet; the tunnel interface exists here".to_owned(),
        ),
        (None, Some(gw)) if tunnel_here => (
            true,
            format!(
                "the tunnel interface exists here; TunnelEndpoints name {gw} (pass --node-name to be sure)"
            ),
        ),
        (None, Some(gw)) => (
            false,
            format!("no tunnel interface here; TunnelEndpoints say the gateway runs on {gw}"),
        ),
        (_, None) => (
            false,
            "no gateway node reported and no tunnel interface here".to_owned(),
        ),
    };
    Role {
        gateway,
        basis,
        gateway_node: reported,
    }
}

/// Plans the node from the resources: the gateway's real planner and renderer, the route
/// agent's real planner. `key` only stands in for the gateway's (which diagnose never reads).
pub fn desired(
    target: &Target,
    resources: &Resources,
    (resolved, reach): (&Resolved, &BTreeMap<Ipv4Addr, Reach>),
    key: &PrivateKey,
) -> Desired {
    let teps = &resources.teps;
    let device = Device {
        interface: &target.interface,
        private_key: key,
        listen_port: target.listen_port.unwrap_or(51820),
        mtu: 1420,
        keepalive: None,
    };
    let plan = plan(&device, teps, &resources.nat_mappings, resolved);
    let spec = (!plan.spec.peers.is_empty())
        .then(|| plan.spec.validate().ok())
        .flatten();
    let nat = spec.as_ref().map(NatPlan::from_spec);
    let table = nat
        .as_ref()
        .map(|n| TableView::from_batch(&render::render(n), TABLE));
    let gateway_routes = spec
        .as_ref()
        .map(isthmus_dataplane::gateway::tunnel_routes)
        .unwrap_or_default();
    let node = target.node_name.as_deref().unwrap_or_default();
    let overlay = OverlayInput {
        settings: target.overlay,
        reach: reach.clone(),
    };
    let node_routes = isthmus_route_agent::plan::plan_with(node, teps, &overlay);
    let mut peers = peer_views(teps, &plan);
    peers.sort_by(|a, b| a.tep.cmp(&b.tep));
    Desired {
        peers,
        spec,
        nat,
        table,
        gateway_routes,
        node_routes,
        local: local_ranges(teps),
        nat_mappings_error: resources.nat_mappings_error.clone(),
    }
}

fn peer_views(teps: &[TunnelEndpoint], plan: &isthmus_gateway::plan::Plan) -> Vec<PeerView> {
    teps.iter()
        .map(|t| PeerView {
            tep: t.name_any(),
            peer: t.spec.cluster_id.to_string(),
            endpoint: t.spec.endpoint.clone(),
            public_key: t
                .spec
                .backend_config
                .get(BACKEND_PUBLIC_KEY)
                .and_then(|k| k.parse().ok()),
            pod: net(t.spec.remote_nat_pod_cidr),
            external: net(t.spec.remote_nat_external_cidr),
            problem: plan
                .endpoints
                .get(&t.name_any())
                .and_then(|p| p.problem.as_ref())
                .map(|e| (e.reason(), e.to_string())),
            status: t.status.clone(),
        })
        .collect()
}

fn local_ranges(teps: &[TunnelEndpoint]) -> Vec<(String, Ipv4Net)> {
    let mut out: Vec<(String, Ipv4Net)> = Vec::new();
    for t in teps {
        for (what, cidr) in [
            ("our Pod CIDR", t.spec.local_pod_cidr),
            ("our ExternalCIDR", t.spec.local_external_cidr),
        ] {
            let entry = (what.to_owned(), net(cidr));
            if !out.contains(&entry) {
                out.push(entry);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::diagnose::checks::fixtures::World;

    #[test]
    fn the_role_follows_the_node_name_then_the_tunnel_interface() {
        let teps = World::healthy().teps;
        assert!(role(Some("node0"), &teps, false).gateway);
        let worker = role(Some("node1"), &teps, true);
        assert!(!worker.gateway);
        assert_eq!(worker.gateway_node.as_deref(), Some("node0"));
        let guessed = role(None, &teps, true);
        assert!(guessed.gateway && guessed.basis.contains("--node-name"));
        assert!(!role(None, &teps, false).gateway);
        assert!(role(Some("node7"), &[], true).gateway);
        assert!(!role(Some("node7"), &[], false).gateway);
    }

    #[test]
    fn the_reported_interface_replaces_the_default_only() {
        let w = World::healthy();
        let mut target = w.target.clone();
        target.interface = "isthmus-default".into();
        assert_eq!(
            with_reported_interface(&target, &w.teps).interface,
            "isthmus0"
        );
        target.interface_given = true;
        assert_eq!(
            with_reported_interface(&target, &w.teps).interface,
            "isthmus-default"
        );
        let mut teps = w.teps.clone();
        teps[1].status.as_mut().unwrap().interface_name = Some("other".into());
        target.interface_given = false;
        assert_eq!(
            with_reported_interface(&target, &teps).interface,
            "isthmus-default",
            "no agreement, no guess"
        );
    }
}
