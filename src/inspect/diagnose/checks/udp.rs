//! Check 6, gateway UDP reachability (gateway node): our WireGuard port is bound; per peer, the
//! gateway accepted its TunnelEndpoint, its endpoint resolves, the kernel has a usable route to
//! it, WireGuard has the peer, and the last handshake is recent for the keepalive in use.
//!
//! What this can prove: a recent handshake means UDP worked both ways at that moment; a missing
//! port, route or peer is certain. What it cannot: why a handshake is missing (our side, theirs,
//! or a firewall in between, and in which direction) — only the other gateway's diagnose and the
//! network path can tell.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use isthmus_api::ConnectionState;
use isthmus_dataplane::routes::RouteKind;
use isthmus_dataplane::tunnel::{DeviceView, PeerStatus};

use super::{Inputs, age, restart_gateway};
use crate::inspect::diagnose::desired::PeerView;
use crate::inspect::diagnose::report::{Check, CheckId, Finding};

/// After this long without a handshake WireGuard drops the session keys (REJECT_AFTER_TIME);
/// a tunnel with traffic or keepalive re-handshakes every 2 minutes, so an older handshake means
/// the peer stopped answering.
pub const STALE_AFTER: Duration = Duration::from_secs(180);

fn udp_hint(endpoint: &str, port: u16, keepalive: Option<u16>) -> String {
    let keepalive = keepalive.map_or_else(|| "off".to_owned(), |k| format!("{k} s"));
    format!(
        "UDP to {endpoint} may be blocked. A handshake needs UDP both ways: check that the peer's gateway \
         runs (its TunnelEndpoint for this cluster); that security groups / firewalls allow UDP {port} \
         inbound on both gateways; that a NodePort or LoadBalancer Service in front of a gateway \
         forwards UDP to its WireGuard port; that NAT between the gateways keeps the mapping \
         (keepalive: {keepalive}). This check cannot tell which direction is blocked: run diagnose on \
         the peer's gateway too."
    )
}

fn port(i: &Inputs<'_>, device: &DeviceView) -> Vec<Finding> {
    let p = device.listen_port;
    if let Some(want) = i.target.listen_port.filter(|w| *w != p) {
        return vec![Finding::fail(
            format!("{} listens on UDP {p}, not on {want}", i.target.interface),
            format!(
                "Peers dial the port our network-manager published; give the gateway --listen-port \
                 {want} (or diagnose the right port) and restart it: {}",
                restart_gateway(i.target)
            ),
        )];
    }
    if p == 0 {
        return vec![Finding::fail(
            format!("{} has no UDP listen port", i.target.interface),
            format!(
                "The gateway sets it at every resync; restart it: {}",
                restart_gateway(i.target)
            ),
        )];
    }
    match &i.facts.udp_sockets {
        Err(err) => vec![Finding::warn(
            format!("UDP sockets not read ({err}); the device says port {p}"),
            "diagnose reads /proc/thread-self/net/udp in the node's network namespace",
        )],
        Ok(sockets) => match sockets.iter().find(|s| s.port() == p) {
            Some(bound) => vec![Finding::ok(format!("UDP {p} is bound ({bound})"))],
            None => vec![Finding::fail(
                format!(
                    "nothing is bound to UDP {p} in this network namespace: every peer's packets are refused"
                ),
                format!(
                    "The WireGuard engine is not listening: restart the gateway ({}) and read its logs",
                    restart_gateway(i.target)
                ),
            )],
        },
    }
}

fn route_to(i: &Inputs<'_>, peer: &PeerView, addr: SocketAddr) -> Option<Finding> {
    let IpAddr::V4(v4) = addr.ip() else {
        return None;
    };
    let name = &peer.peer;
    match i.facts.lookups.get(&v4) {
        None => None,
        Some(Err(err)) => Some(Finding::fail(
            format!("peer {name}: no route to its endpoint {v4}: {err}"),
            "Add a route (or a default route) toward the peer's gateway network on this node",
        )),
        Some(Ok(found)) if found.dev.as_deref() == Some(i.target.interface.as_str()) => {
            Some(Finding::fail(
                format!(
                    "peer {name}: its endpoint {v4} is routed into the tunnel itself (dev {}): a routing loop",
                    i.target.interface
                ),
                "A peer range contains the peer's own endpoint; the peer's ranges as we address them must \
             not contain gateway addresses (see overlapping ranges)",
            ))
        }
        Some(Ok(found)) if found.kind != RouteKind::Unicast && found.kind != RouteKind::Local => {
            Some(Finding::fail(
                format!(
                    "peer {name}: the route to its endpoint {v4} is of type {}",
                    format!("{:?}", found.kind).to_lowercase()
                ),
                format!("Remove that route: ip route show {v4}"),
            ))
        }
        Some(Ok(_)) => None,
    }
}

fn handshake(i: &Inputs<'_>, peer: &PeerView, wg: &PeerStatus, port: u16) -> Finding {
    let name = &peer.peer;
    let hint = udp_hint(&peer.endpoint, port, wg.keepalive);
    let Some(at) = wg.last_handshake else {
        return Finding::fail(
            format!("peer {name}: no handshake since WireGuard was configured for it"),
            hint,
        );
    };
    let since = i.now.duration_since(at).unwrap_or_default();
    if since > STALE_AFTER {
        let message = format!(
            "peer {name}: last handshake {} ago (WireGuard re-handshakes every 2 min while packets flow)",
            age(since)
        );
        return match wg.keepalive {
            Some(_) => Finding::fail(message, hint),
            None => Finding::warn(
                format!("{message}; keepalive is off, so an idle tunnel also looks like this"),
                hint,
            ),
        };
    }
    let connection = peer.status.as_ref().map(|s| &s.connection);
    match connection {
        Some(c) if c.status != ConnectionState::Connected => Finding::warn(
            format!(
                "peer {name}: handshake {} ago, but the gateway reports {}: {}",
                age(since),
                c.status,
                c.message
            ),
            "UDP works (a handshake happened), the probe through the tunnel does not: look at the \
             peer's nftables and routes (run diagnose on its gateway)",
        ),
        _ => Finding::ok(format!(
            "peer {name}: handshake {} ago via {} (UDP worked both ways then)",
            age(since),
            peer.endpoint
        )),
    }
}

fn per_peer(i: &Inputs<'_>, device: Option<&DeviceView>, peer: &PeerView) -> Vec<Finding> {
    let name = &peer.peer;
    let Some(addr) = i.facts.endpoint(&peer.endpoint) else {
        let why = match i.facts.endpoints.get(&peer.endpoint) {
            Some(Err(err)) => err.clone(),
            _ => "not resolved".into(),
        };
        return vec![Finding::fail(
            format!(
                "peer {name}: endpoint {} does not resolve: {why}",
                peer.endpoint
            ),
            "Check DNS from this node; the endpoint is what the peer published (its gateway Service)",
        )];
    };
    if let Some((reason, message)) = &peer.problem {
        return vec![Finding::fail(
            format!(
                "peer {name}: the gateway leaves TunnelEndpoint {} out ({reason}): {message}",
                peer.tep
            ),
            "Fix the TunnelEndpoint (written by the network-manager from both clusters' NetworkConfigs); \
             its status.conditions say the same",
        )];
    }
    if let Some(bad) = route_to(i, peer, addr) {
        return vec![bad];
    }
    let Some(device) = device else {
        return vec![];
    };
    let wg = peer
        .public_key
        .as_ref()
        .and_then(|k| device.peers.iter().find(|p| &p.public_key == k));
    match wg {
        None => vec![Finding::fail(
            format!(
                "peer {name} is not configured on the WireGuard device {}",
                i.target.interface
            ),
            format!(
                "The gateway adds it at its next resync; if it does not, read its logs and restart it: {}",
                restart_gateway(i.target)
            ),
        )],
        Some(wg) => vec![handshake(i, peer, wg, device.listen_port)],
    }
}

/// The check.
pub fn check(i: &Inputs<'_>) -> Check {
    let device = match &i.facts.device {
        Ok(Some(device)) => Some(device),
        _ => None,
    };
    let mut findings = match device {
        Some(device) => port(i, device),
        None => vec![Finding::warn(
            "listen port and peers not checked: no readable WireGuard device (see WireGuard backend)",
            "Fix the interface first",
        )],
    };
    for peer in &i.desired.peers {
        findings.extend(per_peer(i, device, peer));
    }
    Check::new(CheckId::GatewayUdp, findings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::diagnose::checks::fixtures::{World, now};
    use crate::inspect::diagnose::report::Status;

    #[test]
    fn a_bound_port_and_fresh_handshakes_are_ok() {
        let check = World::healthy().check(CheckId::GatewayUdp);
        assert_eq!(check.status, Status::Ok, "{check:#?}");
        assert_eq!(
            check.findings[0].message,
            "UDP 51820 is bound (0.0.0.0:51820)"
        );
        assert_eq!(
            check.findings[1].message,
            "peer a: handshake 10s ago via 192.168.100.10:51820 (UDP worked both ways then)"
        );
    }

    #[test]
    fn an_unbound_port_fails() {
        let mut w = World::healthy();
        w.facts.udp_sockets = Ok(vec!["0.0.0.0:53".parse().unwrap()]);
        let check = w.check(CheckId::GatewayUdp);
        assert_eq!(check.status, Status::Fail);
        assert!(
            check.findings[0]
                .message
                .starts_with("nothing is bound to UDP 51820")
        );
        let mut w = World::healthy();
        w.target.listen_port = Some(4500);
        assert!(
            w.check(CheckId::GatewayUdp).findings[0]
                .message
                .contains("not on 4500")
        );
    }

    #[test]
    fn a_stale_or_missing_handshake_says_udp_may_be_blocked() {
        let mut w = World::healthy();
        w.peers_mut()[0].last_handshake = Some(now() - Duration::from_secs(600));
        w.peers_mut()[1].last_handshake = None;
        let check = w.check(CheckId::GatewayUdp);
        let fails: Vec<_> = check.with(Status::Fail).collect();
        assert_eq!(fails.len(), 2, "{check:#?}");
        assert!(
            fails
                .iter()
                .any(|f| f.message.contains("last handshake 10m00s ago"))
        );
        assert!(fails.iter().any(|f| {
            f.message
                .ends_with("no handshake since WireGuard was configured for it")
        }));
        let hint = fails[0].hint.as_deref().unwrap();
        assert!(
            hint.contains("UDP to 192.168.100.") && hint.contains("security groups"),
            "{hint}"
        );
        assert!(hint.contains("cannot tell which direction"));
    }

    #[test]
    fn without_keepalive_an_old_handshake_only_warns() {
        let mut w = World::healthy();
        for p in w.peers_mut() {
            p.keepalive = None;
            p.last_handshake = Some(now() - Duration::from_secs(600));
        }
        assert_eq!(w.check(CheckId::GatewayUdp).status, Status::Warn);
    }

    #[test]
    fn unresolvable_unroutable_looping_and_unknown_peers_fail() {
        let mut w = World::healthy();
        let endpoint = w.teps[0].spec.endpoint.clone();
        w.facts
            .endpoints
            .insert(endpoint, Err("no IPv4 address".into()));
        let check = w.check(CheckId::GatewayUdp);
        assert!(
            check
                .findings
                .iter()
                .any(|f| f.status == Status::Fail && f.message.contains("does not resolve")),
            "{check:#?}"
        );

        let mut w = World::healthy();
        let first = *w.facts.lookups.keys().next().unwrap();
        w.facts
            .lookups
            .insert(first, Err("Network is unreachable".into()));
        let check = w.check(CheckId::GatewayUdp);
        assert!(
            check.findings.iter().any(|f| f.message
                == "peer a: no route to its endpoint 192.168.100.10: Network is unreachable"),
            "{check:#?}"
        );

        let mut w = World::healthy();
        w.facts
            .lookups
            .get_mut(&first)
            .unwrap()
            .as_mut()
            .unwrap()
            .dev = Some("isthmus0".into());
        assert!(
            w.check(CheckId::GatewayUdp)
                .findings
                .iter()
                .any(|f| f.message.contains("routing loop"))
        );

        let mut w = World::healthy();
        w.peers_mut().remove(0);
        assert!(
            w.check(CheckId::GatewayUdp)
                .findings
                .iter()
                .any(|f| f.message == "peer a is not configured on the WireGuard device isthmus0")
        );
    }

    #[test]
    fn a_peer_the_gateway_leaves_out_fails_with_its_reason() {
        let mut w = World::healthy();
        w.teps[1]
            .spec
            .backend_config
            .insert("publicKey".into(), "not-a-key".into());
        let check = w.check(CheckId::GatewayUdp);
        let fail = check.with(Status::Fail).next().unwrap();
        assert!(
            fail.message.starts_with(
                "peer c: the gateway leaves TunnelEndpoint c out (InvalidTunnelEndpoint)"
            ),
            "{fail:?}"
        );
    }
}
