//! Check 5, overlapping ranges: our Pod CIDR and ExternalCIDR and every peer's Pod CIDR and
//! ExternalCIDR *as we address them* must be pairwise disjoint; and no route or address on this
//! node that isthmus did not install may cover a peer range (a more specific foreign route is the
//! routes check's "shadowed").

use ipnet::Ipv4Net;
use isthmus_dataplane::routes::{
    LOCAL_TABLE, MAIN_TABLE, NODE_ROUTE_PROTOCOL, ROUTE_PROTOCOL, RouteEntry, RouteKind,
    protocol_name,
};

use super::Inputs;
use crate::inspect::diagnose::report::{Check, CheckId, Finding};

/// A labelled range: `("our Pod CIDR", 10.0.0.0/16)`, `("peer a's Pod CIDR as we address it", …)`.
type Labelled = (String, Ipv4Net, bool);

fn ranges(i: &Inputs<'_>) -> Vec<Labelled> {
    let mut out: Vec<Labelled> = i
        .desired
        .local
        .iter()
        .map(|(what, net)| (what.clone(), *net, false))
        .collect();
    for p in &i.desired.peers {
        out.push((
            format!("peer {}'s Pod CIDR as we address it", p.peer),
            p.pod,
            true,
        ));
        out.push((
            format!("peer {}'s ExternalCIDR as we address it", p.peer),
            p.external,
            true,
        ));
    }
    out
}

fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(b) || b.contains(a)
}

fn pairwise(i: &Inputs<'_>, all: &[Labelled]) -> Vec<Finding> {
    let ns = &i.target.namespace;
    let mut out = Vec::new();
    for (k, (la, a, peer_a)) in all.iter().enumerate() {
        for (lb, b, peer_b) in &all[k + 1..] {
            if !overlaps(a, b) {
                continue;
            }
            let hint = match (peer_a, peer_b) {
                (false, false) if la == lb => format!(
                    "TunnelEndpoints disagree on {la} ({a} and {b}): the network-manager writes them all \
                     from one configuration; delete the stale TunnelEndpoint (kubectl -n {ns} get \
                     tunnelendpoints) or check the network-manager's configuration"
                ),
                (false, false) => "Our own ranges overlap: fix the network-manager's Pod CIDR / \
                    ExternalCIDR configuration"
                    .to_owned(),
                (true, true) => format!(
                    "The gateway refuses the second of these TunnelEndpoints (PeerConflict). The IPAM keeps \
                     views unique, so one is probably stale: kubectl -n {ns} get tunnelendpoints"
                ),
                _ => {
                    "Addresses in the overlap are ambiguous: this cluster routes them locally. The \
                      network-manager should have remapped the peer; check its NetworkConfig \
                      decision (kubectl get networkconfigs -A -o yaml) and the network-manager's \
                      logs"
                        .to_owned()
                }
            };
            let disagree = la == lb && !peer_a;
            let message = if disagree {
                format!(
                    "TunnelEndpoints name two different values for {la}: {a} and {b}, which overlap"
                )
            } else {
                format!("{la} {a} overlaps {lb} {b}")
            };
            out.push(Finding::fail(message, hint));
        }
    }
    out
}

fn foreign(r: &RouteEntry) -> bool {
    r.protocol != ROUTE_PROTOCOL && r.protocol != NODE_ROUTE_PROTOCOL
}

fn describe(r: &RouteEntry) -> String {
    let hop = match (&r.gateway, &r.dev) {
        (Some(gw), _) => format!("via {gw}"),
        (None, Some(dev)) => format!("dev {dev}"),
        _ => format!("{:?}", r.kind).to_lowercase(),
    };
    format!("{} {hop} (proto {})", r.dst, protocol_name(r.protocol))
}

fn against_node(i: &Inputs<'_>, all: &[Labelled], routes: &[RouteEntry]) -> Vec<Finding> {
    let mut out = Vec::new();
    let reserve = "Reserve that range in the network-manager's IPAM (its reserved networks) so \
                   peers are remapped elsewhere, or remove the route if it is stale";
    for (label, net, is_peer) in all {
        if !is_peer {
            continue;
        }
        for r in routes.iter().filter(|r| foreign(r)) {
            let address_here = r.table == LOCAL_TABLE
                && r.kind == RouteKind::Local
                && r.dev.as_deref() != Some(i.target.interface.as_str())
                && net.contains(&r.dst.addr());
            if address_here {
                out.push(Finding::fail(
                    format!(
                        "address {} on {} lies inside {label} {net}: this node answers for it itself",
                        r.dst.addr(),
                        r.dev.as_deref().unwrap_or("?")
                    ),
                    reserve,
                ));
            }
            if r.table != MAIN_TABLE || r.dst.prefix_len() == 0 || !r.dst.contains(net) {
                continue;
            }
            if r.dst == *net {
                out.push(Finding::fail(
                    format!(
                        "route {} covers exactly {label} {net}: it competes with ours",
                        describe(r)
                    ),
                    reserve,
                ));
            } else {
                out.push(Finding::warn(
                    format!(
                        "{label} {net} lies inside route {}: this node prefers the more specific \
                         isthmus route, so anything in {net} behind that route is unreachable from \
                         this cluster",
                        describe(r)
                    ),
                    reserve,
                ));
            }
        }
    }
    out
}

/// The check.
pub fn check(i: &Inputs<'_>) -> Check {
    let all = ranges(i);
    let mut findings = pairwise(i, &all);
    match &i.facts.routes {
        Ok(routes) => findings.extend(against_node(i, &all, routes)),
        Err(err) => findings.push(Finding::warn(
            format!("routes of this node not compared: {err}"),
            "diagnose needs to run in the node's network namespace",
        )),
    }
    if findings.is_empty() {
        let shown: Vec<String> = all.iter().map(|(l, n, _)| format!("{l} {n}")).collect();
        findings.push(Finding::ok(format!(
            "{} ranges, pairwise disjoint, none covered by a foreign route here: {}",
            all.len(),
            shown.join("; ")
        )));
    }
    Check::new(CheckId::Overlap, findings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::diagnose::checks::fixtures::{World, route};
    use crate::inspect::diagnose::report::Status;

    #[test]
    fn disjoint_ranges_are_ok() {
        let check = World::healthy().check(CheckId::Overlap);
        assert_eq!(check.status, Status::Ok, "{check:#?}");
        assert!(
            check.findings[0]
                .message
                .starts_with("6 ranges, pairwise disjoint")
        );
    }

    #[test]
    fn a_peer_range_over_our_pod_cidr_fails() {
        let mut w = World::healthy();
        w.teps[1].spec.remote_nat_pod_cidr = "10.0.0.0/16".parse().unwrap();
        let check = w.check(CheckId::Overlap);
        assert_eq!(check.status, Status::Fail);
        let fail = check.with(Status::Fail).next().unwrap();
        assert_eq!(
            fail.message,
            "our Pod CIDR 10.0.0.0/16 overlaps peer c's Pod CIDR as we address it 10.0.0.0/16"
        );
        assert!(fail.hint.as_deref().unwrap().contains("networkconfigs"));
    }

    #[test]
    fn two_peers_overlapping_fail_with_the_conflict_hint() {
        let mut w = World::healthy();
        w.teps[1].spec.remote_nat_external_cidr = "10.5.128.0/17".parse().unwrap();
        let check = w.check(CheckId::Overlap);
        let fail = check.with(Status::Fail).next().unwrap();
        assert!(
            fail.message.contains(
                "peer a's ExternalCIDR as we address it 10.5.0.0/16 overlaps peer c's ExternalCIDR"
            ),
            "{fail:?}"
        );
        assert!(fail.hint.as_deref().unwrap().contains("PeerConflict"));
    }

    #[test]
    fn node_routes_and_addresses_over_a_peer_range() {
        let mut w = World::healthy();
        w.routes_mut()
            .push(route("10.0.0.0/8", "eth0", Some("172.16.0.1"), 4));
        w.routes_mut()
            .push(route("10.8.0.0/16", "eth0", Some("172.16.0.1"), 3));
        let mut addr = route("10.4.0.1/32", "eth0", None, 2);
        addr.table = LOCAL_TABLE;
        addr.kind = RouteKind::Local;
        w.routes_mut().push(addr);
        let check = w.check(CheckId::Overlap);
        let messages: Vec<_> = check
            .findings
            .iter()
            .map(|f| (f.status, f.message.as_str()))
            .collect();
        assert!(messages.contains(&(Status::Fail, "route 10.8.0.0/16 via 172.16.0.1 (proto boot) covers exactly peer c's ExternalCIDR as we address it 10.8.0.0/16: it competes with ours")), "{messages:#?}");
        assert!(messages.iter().any(|(s, m)| *s == Status::Warn && m.starts_with("peer a's Pod CIDR as we address it 10.4.0.0/16 lies inside route 10.0.0.0/8 via 172.16.0.1 (proto static)")), "{messages:#?}");
        assert!(messages.contains(&(Status::Fail, "address 10.4.0.1 on eth0 lies inside peer a's Pod CIDR as we address it 10.4.0.0/16: this node answers for it itself")), "{messages:#?}");
    }
}
