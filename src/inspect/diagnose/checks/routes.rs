//! Check 4, routes: on the gateway node every peer range (as we address it) goes into the tunnel
//! with protocol 153; on another node it goes to the gateway node (`status.gatewayIP`) with
//! protocol 154. Reports routes that are missing or point elsewhere, ours that serve no peer, and
//! ours that a more specific foreign route shadows. Only the main table is read; policy routing
//! (`ip rule`) is outside this check.

use ipnet::Ipv4Net;
use isthmus_dataplane::routes::{
    MAIN_TABLE, NODE_ROUTE_PROTOCOL, NextHop, ROUTE_PROTOCOL, Route, RouteEntry, protocol_name,
};
use isthmus_route_agent::Skipped;

use super::{Inputs, capped, restart_gateway, restart_route_agents};
use crate::inspect::diagnose::report::{Check, CheckId, Finding};

/// `dev isthmus0`, `via 172.16.0.10`, `blackhole` …
fn next_hop(r: &RouteEntry) -> String {
    match (&r.gateway, &r.dev) {
        (Some(gw), Some(dev)) => format!("via {gw} dev {dev}"),
        (Some(gw), None) => format!("via {gw}"),
        (None, Some(dev)) => format!("dev {dev}"),
        (None, None) => format!("{:?}", r.kind).to_lowercase(),
    }
}

fn want_text(r: &Route) -> String {
    match &r.via {
        NextHop::Dev(dev) => format!("dev {dev}"),
        NextHop::Via(gw, _) => format!("via {gw}"),
        NextHop::Onlink(gw, dev) => format!("via {gw} dev {dev} onlink"),
    }
}

fn satisfies(have: &RouteEntry, want: &Route) -> bool {
    match &want.via {
        NextHop::Dev(dev) => have.gateway.is_none() && have.dev.as_ref() == Some(dev),
        NextHop::Via(gw, dev) => {
            have.gateway == Some(*gw) && dev.as_ref().is_none_or(|d| have.dev.as_ref() == Some(d))
        }
        NextHop::Onlink(gw, dev) => have.gateway == Some(*gw) && have.dev.as_ref() == Some(dev),
    }
}

/// What this node's routes must be: the wanted routes, our protocol, who owns them.
struct Expected {
    routes: Vec<Route>,
    protocol: u8,
    owner: &'static str,
    other_protocol: u8,
}

fn expected(i: &Inputs<'_>) -> Expected {
    if i.role.gateway {
        Expected {
            routes: i.desired.gateway_routes.clone(),
            protocol: ROUTE_PROTOCOL,
            owner: "gateway",
            other_protocol: NODE_ROUTE_PROTOCOL,
        }
    } else {
        Expected {
            routes: i.desired.node_routes.routes(),
            protocol: NODE_ROUTE_PROTOCOL,
            owner: "route agent",
            other_protocol: ROUTE_PROTOCOL,
        }
    }
}

fn missing_hint(owner: &str, i: &Inputs<'_>) -> String {
    let restart = if owner == "gateway" {
        restart_gateway(i.target)
    } else {
        restart_route_agents(i.target)
    };
    format!(
        "The {owner} re-adds its routes at its next resync (gateway: every probe interval; route \
         agent: every resync period). If they keep vanishing, another agent removes routes it does \
         not own (a CNI, NetworkManager, a routing daemon): watch with `ip monitor route`. If the \
         {owner} does not run here, restart it: {restart}"
    )
}

fn ours_vs_wanted(i: &Inputs<'_>, e: &Expected, main: &[&RouteEntry]) -> Vec<Finding> {
    let mut out = Vec::new();
    let proto = e.protocol;
    for want in &e.routes {
        let label = i.desired.range_label(want.dst);
        let have: Vec<&&RouteEntry> = main
            .iter()
            .filter(|r| r.protocol == proto && r.dst == want.dst)
            .collect();
        if have.is_empty() {
            out.push(Finding::fail(
                format!(
                    "no route for {} ({label} as we address it) {} proto {proto}: traffic to it does not \
                     reach the peer",
                    want.dst,
                    want_text(want)
                ),
                missing_hint(e.owner, i),
            ));
        } else if !have.iter().any(|h| satisfies(h, want)) {
            out.push(Finding::fail(
                format!(
                    "the route for {} ({label}) goes {}; the {} wants {}",
                    want.dst,
                    next_hop(have[0]),
                    e.owner,
                    want_text(want)
                ),
                missing_hint(e.owner, i),
            ));
        }
    }
    out
}

/// A foreign route more specific than one of ours (or as specific with a lower metric).
fn shadowing(i: &Inputs<'_>, e: &Expected, main: &[&RouteEntry]) -> Vec<Finding> {
    let foreign =
        |r: &&&RouteEntry| r.protocol != ROUTE_PROTOCOL && r.protocol != NODE_ROUTE_PROTOCOL;
    let mut out = Vec::new();
    for want in &e.routes {
        let ours_metric = main
            .iter()
            .find(|r| r.protocol == e.protocol && r.dst == want.dst)
            .map(|r| r.metric);
        for f in main.iter().filter(foreign) {
            let inside = want.dst.contains(&f.dst)
                && (f.dst.prefix_len() > want.dst.prefix_len()
                    || (f.dst == want.dst && ours_metric.is_none_or(|m| f.metric <= m)));
            if !inside {
                continue;
            }
            out.push(Finding::fail(
                format!(
                    "{} {} (proto {}) shadows our route for {} ({}): traffic to {} bypasses the tunnel",
                    f.dst,
                    next_hop(f),
                    protocol_name(f.protocol),
                    want.dst,
                    i.desired.range_label(want.dst),
                    f.dst
                ),
                format!(
                    "Find who installs it (`ip route show {}`; proto {}): a CNI, a VPN, a static route. \
                     Remove it, or reserve that range in the network-manager's IPAM so peers are \
                     remapped elsewhere.",
                    f.dst,
                    protocol_name(f.protocol)
                ),
            ));
        }
    }
    out
}

fn leftovers(i: &Inputs<'_>, e: &Expected, main: &[&RouteEntry]) -> Vec<Finding> {
    let wanted: Vec<Ipv4Net> = e.routes.iter().map(|r| r.dst).collect();
    let mut out = Vec::new();
    for r in main
        .iter()
        .filter(|r| r.protocol == e.protocol && !wanted.contains(&r.dst))
    {
        out.push(Finding::warn(
            format!(
                "route {} {} (proto {}) serves no peer: a leftover",
                r.dst,
                next_hop(r),
                e.protocol
            ),
            format!(
                "The {} removes routes it no longer wants at its next resync; if it stays, the {} does \
                 not run here. Remove it: ip route del {} proto {}",
                e.owner, e.owner, r.dst, e.protocol
            ),
        ));
    }
    for r in main.iter().filter(|r| r.protocol == e.other_protocol) {
        let (this, other) = if i.role.gateway {
            ("the gateway node", "route agent")
        } else {
            ("a node that is not the gateway node", "gateway")
        };
        out.push(Finding::warn(
            format!(
                "route {} {} (proto {}) of the {other} on {this}: a leftover (the gateway moved?)",
                r.dst,
                next_hop(r),
                e.other_protocol
            ),
            format!(
                "Remove it: ip route del {} proto {}",
                r.dst, e.other_protocol
            ),
        ));
    }
    out
}

fn skipped(i: &Inputs<'_>) -> Vec<Finding> {
    if i.role.gateway {
        return vec![];
    }
    let ns = &i.target.namespace;
    i.desired
        .node_routes
        .skipped
        .iter()
        .filter_map(|(tep, why)| match why {
            Skipped::NoGatewayAddress => Some(Finding::warn(
                format!("TunnelEndpoint {tep}: no route planned, the gateway has not published status.gatewayIP"),
                format!("Is the gateway running and leading? kubectl -n {ns} get lease; its logs"),
            )),
            Skipped::UnusableGateway(ip) => Some(Finding::fail(
                format!("TunnelEndpoint {tep}: status.gatewayIP {ip} cannot be a next hop"),
                "Set the gateway's --node-ip (NODE_IP) to the node's cluster address",
            )),
            _ => None,
        })
        .collect()
}

/// The check.
pub fn check(i: &Inputs<'_>) -> Check {
    let routes = match &i.facts.routes {
        Ok(routes) => routes,
        Err(err) => {
            return Check::new(
                CheckId::Routes,
                vec![Finding::fail(
                    format!("cannot read routes: {err}"),
                    "diagnose needs to run in the node's network namespace (hostNetwork)",
                )],
            );
        }
    };
    let main: Vec<&RouteEntry> = routes.iter().filter(|r| r.table == MAIN_TABLE).collect();
    let e = expected(i);
    let mut findings = ours_vs_wanted(i, &e, &main);
    findings.extend(shadowing(i, &e, &main));
    let mut findings = capped(findings, 12, "route problems");
    findings.extend(leftovers(i, &e, &main));
    findings.extend(skipped(i));
    if findings.is_empty() {
        let how = if i.role.gateway {
            format!("into {} (proto {ROUTE_PROTOCOL})", i.target.interface)
        } else {
            format!("to the gateway node (proto {NODE_ROUTE_PROTOCOL})")
        };
        findings.push(Finding::ok(if e.routes.is_empty() {
            "no peer range to route".to_owned()
        } else {
            format!(
                "{} peer range(s) routed {how}, none shadowed by a more specific route",
                e.routes.len()
            )
        }));
    }
    Check::new(CheckId::Routes, findings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::diagnose::checks::fixtures::{World, route};
    use crate::inspect::diagnose::report::Status;

    #[test]
    fn every_peer_range_into_the_tunnel_is_ok() {
        let check = World::healthy().check(CheckId::Routes);
        assert_eq!(check.status, Status::Ok, "{check:#?}");
        assert_eq!(
            check.findings[0].message,
            "4 peer range(s) routed into isthmus0 (proto 153), none shadowed by a more specific route"
        );
    }

    #[test]
    fn a_deleted_route_fails_with_its_peer() {
        let mut w = World::healthy();
        w.routes_mut()
            .retain(|r| r.dst.to_string() != "10.5.0.0/16");
        let check = w.check(CheckId::Routes);
        assert_eq!(check.status, Status::Fail);
        assert_eq!(
            check.findings[0].message,
            "no route for 10.5.0.0/16 (peer a's ExternalCIDR as we address it) dev isthmus0 proto 153: \
             traffic to it does not reach the peer"
        );
        assert!(
            check.findings[0]
                .hint
                .as_deref()
                .unwrap()
                .contains("ip monitor route")
        );
    }

    #[test]
    fn a_route_elsewhere_a_leftover_and_a_shadow() {
        let mut w = World::healthy();
        for r in w.routes_mut() {
            if r.dst.to_string() == "10.4.0.0/16" {
                r.dev = Some("eth0".into());
            }
        }
        w.routes_mut()
            .push(route("10.99.0.0/16", "isthmus0", None, 153));
        w.routes_mut()
            .push(route("10.7.3.0/24", "eth0", Some("172.16.0.1"), 4));
        let check = w.check(CheckId::Routes);
        let messages: Vec<_> = check.findings.iter().map(|f| f.message.as_str()).collect();
        assert!(messages.contains(&"the route for 10.4.0.0/16 (peer a's Pod CIDR) goes dev eth0; the gateway wants dev isthmus0"), "{messages:?}");
        assert!(messages.contains(&"10.7.3.0/24 via 172.16.0.1 dev eth0 (proto static) shadows our route for 10.7.0.0/16 (peer c's Pod CIDR): traffic to 10.7.3.0/24 bypasses the tunnel"), "{messages:?}");
        let leftover = check.with(Status::Warn).next().unwrap();
        assert!(
            leftover
                .message
                .starts_with("route 10.99.0.0/16 dev isthmus0 (proto 153) serves no peer")
        );
        assert_eq!(check.status, Status::Fail);
    }

    #[test]
    fn another_node_wants_its_routes_via_the_gateway_ip() {
        let mut w = World::healthy();
        w.target.node_name = Some("node1".into());
        w.facts.device = Ok(None);
        w.facts
            .links
            .as_mut()
            .unwrap()
            .retain(|l| l.name != "isthmus0");
        let via = Some("172.16.0.10");
        *w.routes_mut() = ["10.4.0.0/16", "10.5.0.0/16", "10.7.0.0/16"]
            .iter()
            .map(|d| route(d, "eth0", via, 154))
            .collect();
        let report = w.report();
        assert_eq!(report.context.role, "node");
        assert_eq!(report.skipped.len(), 3);
        let check = report.check(CheckId::Routes).unwrap();
        assert_eq!(check.status, Status::Fail);
        assert_eq!(
            check.findings[0].message,
            "no route for 10.8.0.0/16 (peer c's ExternalCIDR as we address it) via 172.16.0.10 proto 154: \
             traffic to it does not reach the peer"
        );
        assert!(
            check.findings[0]
                .hint
                .as_deref()
                .unwrap()
                .contains("route-agent")
        );
    }
}
