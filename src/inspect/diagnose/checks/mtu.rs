//! Check 2, MTU and MSS clamping (gateway node): the tunnel interface's MTU against the underlay
//! toward each peer (the MTU of the device the kernel routes the peer's endpoint through, or the
//! route's own MTU, minus WireGuard's overhead: 60 bytes over IPv4, 80 over IPv6), and the MSS
//! clamping rules of our table's forward chain.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use super::{Inputs, restart_gateway};
use crate::inspect::diagnose::report::{Check, CheckId, Finding};

/// Outer IPv4 (20) + UDP (8) + WireGuard header (16) + auth tag (16).
pub const OVERHEAD_V4: u32 = 60;
/// Outer IPv6 (40) + the rest.
pub const OVERHEAD_V6: u32 = 80;

/// The underlay path toward one peer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Path {
    dev: String,
    underlay: u32,
    overhead: u32,
}

fn path(i: &Inputs<'_>, endpoint: SocketAddr) -> Result<Path, String> {
    let IpAddr::V4(addr) = endpoint.ip() else {
        return Err("IPv6 endpoint".into());
    };
    let found = match i.facts.lookups.get(&addr) {
        Some(Ok(found)) => found,
        Some(Err(_)) | None => return Err("no route to its endpoint (see UDP reachability)".into()),
    };
    let dev = found.dev.clone().unwrap_or_default();
    if dev == i.target.interface {
        return Err("its endpoint is routed into the tunnel (see UDP reachability)".into());
    }
    let underlay = found
        .mtu
        .or_else(|| i.facts.link(&dev).and_then(|l| l.mtu))
        .ok_or_else(|| format!("the MTU of {dev} is unknown"))?;
    let overhead = if endpoint.is_ipv4() {
        OVERHEAD_V4
    } else {
        OVERHEAD_V6
    };
    Ok(Path {
        dev,
        underlay,
        overhead,
    })
}

/// The tunnel MTU `mtu` does not fit the path `p` toward `peer`.
fn too_big(i: &Inputs<'_>, peer: &str, p: &Path, mtu: u32) -> Finding {
    let max = p.underlay.saturating_sub(p.overhead);
    let family = if p.overhead == OVERHEAD_V4 {
        "IPv4"
    } else {
        "IPv6"
    };
    Finding::fail(
        format!(
            "{} MTU {mtu} is above what the underlay to peer {peer} carries: {} MTU {} − {} \
             (WireGuard over {family}) = {max}; tunnel packets of {}..{mtu} bytes are fragmented \
             or dropped",
            i.target.interface,
            p.dev,
            p.underlay,
            p.overhead,
            max + 1
        ),
        format!(
            "Set the gateway's --mtu (Helm value gateway.mtu) to at most {max} and restart it \
             ({}). If the interface was changed by hand, the gateway restores its configured \
             MTU at its next resync. MSS clamping keeps TCP going meanwhile; UDP and ICMP \
             above {max} bytes still break.",
            restart_gateway(i.target)
        ),
    )
}

fn tunnel_mtu(i: &Inputs<'_>) -> Vec<Finding> {
    let iface = &i.target.interface;
    let Some(spec) = &i.desired.spec else {
        return vec![Finding::ok("no peer configured: no tunnel MTU to check")];
    };
    let Some(mtu) = i.facts.link(iface).and_then(|l| l.mtu) else {
        return vec![Finding::warn(
            format!("MTU not checked: no interface {iface} (see WireGuard backend)"),
            "Fix the interface first",
        )];
    };
    let mut fitting: BTreeMap<Path, Vec<String>> = BTreeMap::new();
    let mut out = Vec::new();
    for peer in &spec.peers {
        let Some(endpoint) = peer.endpoint else {
            continue;
        };
        match path(i, endpoint) {
            Err(why) => out.push(Finding::warn(
                format!("MTU toward peer {} not checked: {why}", peer.name),
                "Fix the route to the peer's endpoint first",
            )),
            Ok(p) if mtu + p.overhead > p.underlay => out.push(too_big(i, &peer.name, &p, mtu)),
            Ok(p) => fitting.entry(p).or_default().push(peer.name.clone()),
        }
    }
    for (p, peers) in fitting {
        out.insert(
            0,
            Finding::ok(format!(
                "{iface} MTU {mtu} fits the underlay to peer(s) {}: {} MTU {} − {} = {}",
                peers.join(", "),
                p.dev,
                p.underlay,
                p.overhead,
                p.underlay - p.overhead
            )),
        );
    }
    out
}

fn mss_clamping(i: &Inputs<'_>) -> Vec<Finding> {
    let Some(want) = &i.desired.table else {
        return vec![];
    };
    let clamps: Vec<&String> = want
        .chains
        .values()
        .flat_map(|c| c.rules.iter())
        .filter(|r| r.contains("maxseg"))
        .collect();
    let have = match &i.facts.table {
        Ok(Some(view)) => view,
        Ok(None) | Err(_) => {
            return vec![Finding::warn(
                "MSS clamping not checked: our table could not be read or is missing (see nftables)",
                "Fix the table first",
            )];
        }
    };
    let present = |rule: &String| have.chains.values().any(|c| c.rules.contains(rule));
    let missing: Vec<&&String> = clamps.iter().filter(|r| !present(r)).collect();
    if missing.is_empty() {
        return vec![Finding::ok(format!(
            "TCP MSS clamped to the route MTU on SYNs both ways through {}",
            i.target.interface
        ))];
    }
    missing
        .into_iter()
        .map(|rule| {
            Finding::fail(
                format!("MSS clamping rule missing from chain forward: `{rule}`"),
                format!(
                    "Without it TCP through the tunnel depends on path-MTU discovery, which ICMP \
                     filtering often breaks (connections stall after the handshake). The gateway \
                     rebuilds its table at its next resync when the rule count changed; otherwise \
                     restart it: {}",
                    restart_gateway(i.target)
                ),
            )
        })
        .collect()
}

/// The check.
pub fn check(i: &Inputs<'_>) -> Check {
    let mut findings = tunnel_mtu(i);
    findings.extend(mss_clamping(i));
    Check::new(CheckId::Mtu, findings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::diagnose::checks::fixtures::World;
    use crate::inspect::diagnose::report::Status;

    fn set_mtu(w: &mut World, name: &str, mtu: u32) {
        for l in w.facts.links.as_mut().unwrap() {
            if l.name == name {
                l.mtu = Some(mtu);
            }
        }
    }

    #[test]
    fn a_fitting_mtu_and_both_clamps_are_ok() {
        let check = World::healthy().check(CheckId::Mtu);
        assert_eq!(check.status, Status::Ok, "{check:#?}");
        assert!(
            check.findings[0]
                .message
                .contains("u0 MTU 1500 − 60 = 1440"),
            "{check:#?}"
        );
        assert!(
            check.findings[0].message.contains("peer(s) a, c"),
            "{check:#?}"
        );
    }

    #[test]
    fn a_tunnel_mtu_above_the_underlay_fails_per_peer() {
        let mut w = World::healthy();
        set_mtu(&mut w, "isthmus0", 1500);
        let check = w.check(CheckId::Mtu);
        assert_eq!(check.status, Status::Fail);
        let fails: Vec<_> = check.with(Status::Fail).collect();
        assert_eq!(fails.len(), 2);
        assert!(
            fails[0].message.contains(
                "isthmus0 MTU 1500 is above what the underlay to peer a carries: u0 MTU 1500 − 60"
            ),
            "{fails:?}"
        );
        assert!(fails[0].hint.as_deref().unwrap().contains("at most 1440"));
    }

    #[test]
    fn a_smaller_underlay_or_route_mtu_fails() {
        let mut w = World::healthy();
        set_mtu(&mut w, "u0", 1450);
        assert_eq!(w.check(CheckId::Mtu).status, Status::Fail);
        let mut w = World::healthy();
        for found in w.facts.lookups.values_mut() {
            found.as_mut().unwrap().mtu = Some(1400);
        }
        let check = w.check(CheckId::Mtu);
        assert!(check.findings.iter().any(|f| {
            f.message
                .contains("u0 MTU 1400 − 60 (WireGuard over IPv4) = 1340")
        }));
    }

    #[test]
    fn a_missing_clamp_rule_fails() {
        let mut w = World::healthy();
        let table = w.facts.table.as_mut().unwrap().as_mut().unwrap();
        table.chains.get_mut("forward").unwrap().rules.remove(1);
        let check = w.check(CheckId::Mtu);
        assert_eq!(check.status, Status::Fail);
        let fail = check.with(Status::Fail).next().unwrap();
        assert!(
            fail.message.contains(
                r#"`oifname "isthmus0" tcp flags syn tcp option maxseg size set rt mtu`"#
            ),
            "{fail:?}"
        );
        assert!(fail.hint.as_deref().unwrap().contains("path-MTU discovery"));
    }
}
