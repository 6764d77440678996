//! Check 7, overlay: the VXLAN link `isthmus-vx0` against the route agent's own plan for this
//! node (computed from the TunnelEndpoints and how this node's kernel reaches each gateway
//! address): present with the planned VNI, port, remote and MAC, up, on a node that reaches the
//! gateway node through a router (or the receiving end on the gateway node); absent where every
//! gateway address is on-link; and, on a node that sends over it, reverse-path filtering that
//! does not drop the replies coming back by the CNI's path.

use std::net::Ipv4Addr;

use isthmus_dataplane::routes::overlay::OVERLAY_LINK;
use isthmus_dataplane::routes::{VxlanSpec, VxlanView};
use isthmus_route_agent::Skipped;

use super::{Inputs, restart_route_agents};
use crate::inspect::diagnose::report::{Check, CheckId, Finding};

fn mac_text(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn hint(i: &Inputs<'_>) -> String {
    format!(
        "The route agent of this node creates, fixes or removes {OVERLAY_LINK} at its next resync. If \
         it does not, it is not running here or fails: its logs, or restart it: {}",
        restart_route_agents(i.target)
    )
}

/// What differs between the planned link and the one found.
fn differences(want: &VxlanSpec, have: &VxlanView) -> Vec<String> {
    let mut out = Vec::new();
    if have.vni != Some(want.vni) {
        out.push(format!("VNI {:?}, planned {}", have.vni, want.vni));
    }
    if have.port != Some(want.port) {
        out.push(format!("UDP port {:?}, planned {}", have.port, want.port));
    }
    if have.remote != want.remote {
        let show =
            |r: Option<Ipv4Addr>| r.map_or("none (receive only)".to_owned(), |r| r.to_string());
        out.push(format!(
            "remote {}, planned {}",
            show(have.remote),
            show(want.remote)
        ));
    }
    if let Some(mac) = &want.mac
        && have.mac.as_ref() != Some(mac)
    {
        out.push(format!(
            "MAC {}, planned {}",
            have.mac.as_ref().map_or("none".into(), mac_text),
            mac_text(mac)
        ));
    }
    out
}

/// The link against the plan.
fn link(i: &Inputs<'_>, want: Option<&VxlanSpec>, have: Option<&VxlanView>) -> Vec<Finding> {
    match (want, have) {
        (None, None) => vec![Finding::ok(match i.target.overlay.mode {
            isthmus_dataplane::routes::overlay::OverlayMode::Never => {
                "no overlay (mode never): direct next hops only".to_owned()
            }
            _ => "no overlay here: every gateway address is on-link (direct next hop)".to_owned(),
        })],
        (None, Some(_)) => vec![Finding::warn(
            format!(
                "{OVERLAY_LINK} exists but the route agent plans no overlay on this node: a leftover"
            ),
            hint(i),
        )],
        (Some(w), None) => vec![Finding::fail(
            match w.remote {
                Some(remote) => format!(
                    "{OVERLAY_LINK} is missing: this node reaches the gateway node {remote} through a \
                     router, so its routes to the peers need the overlay"
                ),
                None => format!(
                    "{OVERLAY_LINK} (receiving end) is missing on the gateway node: packets the other \
                     nodes send over the overlay are dropped"
                ),
            },
            hint(i),
        )],
        (Some(w), Some(h)) => {
            let diffs = differences(w, h);
            if !diffs.is_empty() {
                return vec![Finding::fail(
                    format!("{OVERLAY_LINK} differs from the plan: {}", diffs.join("; ")),
                    hint(i),
                )];
            }
            let mut out = Vec::new();
            match i.facts.link(OVERLAY_LINK) {
                Some(l) if !l.up => out.push(Finding::fail(
                    format!("{OVERLAY_LINK} is down"),
                    format!("ip link set {OVERLAY_LINK} up; {}", hint(i)),
                )),
                Some(l) if l.mtu.is_some_and(|m| m != w.mtu) => out.push(Finding::warn(
                    format!(
                        "{OVERLAY_LINK} has MTU {}, planned {} (the underlay's MTU minus 50)",
                        l.mtu.unwrap_or_default(),
                        w.mtu
                    ),
                    hint(i),
                )),
                _ => {}
            }
            if out.is_empty() {
                out.push(Finding::ok(match w.remote {
                    Some(remote) => format!(
                        "{OVERLAY_LINK} to the gateway node {remote} (VNI {}, UDP {}), up",
                        w.vni, w.port
                    ),
                    None => format!(
                        "{OVERLAY_LINK} receiving end on the gateway node (VNI {}, UDP {}), up",
                        w.vni, w.port
                    ),
                }));
            }
            out
        }
    }
}

/// Strict reverse-path filtering on the underlay device of a node that sends over the overlay.
fn rp_filter(i: &Inputs<'_>, want: &VxlanSpec) -> Vec<Finding> {
    let Some(remote) = want.remote else {
        return vec![];
    };
    let Ok(values) = &i.facts.rp_filter else {
        return vec![];
    };
    let dev = i
        .facts
        .reach
        .get(&remote)
        .and_then(|r| r.as_ref().ok())
        .and_then(|r| r.dev.clone());
    let all = values.get("all").copied().unwrap_or(0);
    let on = |name: &str| values.get(name).copied().unwrap_or(0).max(all);
    let strict: Vec<String> = dev
        .iter()
        .map(String::as_str)
        .chain([OVERLAY_LINK])
        .filter(|name| on(name) == 1)
        .map(str::to_owned)
        .collect();
    if strict.is_empty() {
        return vec![];
    }
    vec![Finding::fail(
        format!(
            "strict reverse-path filtering (rp_filter=1) on {}: packets to the peers leave over \
             {OVERLAY_LINK}, their replies come back by the CNI's path and are dropped",
            strict.join(", ")
        ),
        format!(
            "Loose filtering keeps the protection and lets them in: sysctl -w \
             net.ipv4.conf.all.rp_filter=2{}",
            dev.map(|d| format!(" net.ipv4.conf.{d}.rp_filter=2"))
                .unwrap_or_default()
        ),
    )]
}

/// TunnelEndpoints left out because the link already points at another gateway address.
fn busy(i: &Inputs<'_>) -> Vec<Finding> {
    i.desired
        .node_routes
        .skipped
        .iter()
        .filter_map(|(tep, why)| match why {
            Skipped::OverlayBusy { gateway, kept_by } => Some(Finding::warn(
                format!(
                    "TunnelEndpoint {tep}: its gateway address {gateway} differs from the one \
                     {OVERLAY_LINK} points at (kept by {kept_by}): no route over the overlay for it"
                ),
                "The gateway moves its TunnelEndpoints one at a time after a failover; if this \
                 lasts, they name different gateway nodes: kubectl get tunnelendpoints -o wide",
            )),
            _ => None,
        })
        .collect()
}

/// The check.
pub fn check(i: &Inputs<'_>) -> Check {
    let have = match &i.facts.overlay {
        Ok(have) => have.as_ref(),
        Err(err) => {
            return Check::new(
                CheckId::Overlay,
                vec![Finding::fail(
                    format!("cannot read {OVERLAY_LINK}: {err}"),
                    "diagnose needs to run in the node's network namespace (hostNetwork)",
                )],
            );
        }
    };
    let want = i.desired.node_routes.overlay.as_ref();
    let mut findings = link(i, want, have);
    if let Some(w) = want {
        findings.extend(rp_filter(i, w));
    }
    findings.extend(busy(i));
    Check::new(CheckId::Overlay, findings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::diagnose::checks::fixtures::World;
    use crate::inspect::diagnose::report::Status;

    #[test]
    fn the_gateway_node_holds_the_receiving_end() {
        let check = World::healthy().check(CheckId::Overlay);
        assert_eq!(check.status, Status::Ok, "{check:#?}");
        assert!(
            check.findings[0].message.contains("receiving end"),
            "{check:#?}"
        );
    }

    #[test]
    fn a_routed_worker_needs_its_link_pointed_at_the_gateway_node() {
        let healthy = World::worker(true);
        let check = healthy.check(CheckId::Overlay);
        assert_eq!(check.status, Status::Ok, "{check:#?}");
        assert!(
            check.findings[0]
                .message
                .contains("to the gateway node 172.16.0.10")
        );

        let mut gone = World::worker(true);
        gone.facts.overlay = Ok(None);
        let check = gone.check(CheckId::Overlay);
        assert_eq!(check.status, Status::Fail);
        assert!(
            check.findings[0].message.contains("is missing"),
            "{check:#?}"
        );

        let mut elsewhere = World::worker(true);
        if let Ok(Some(view)) = &mut elsewhere.facts.overlay {
            view.remote = Some("172.16.0.99".parse().unwrap());
            view.vni = Some(7);
        }
        let check = elsewhere.check(CheckId::Overlay);
        assert_eq!(check.status, Status::Fail);
        let message = &check.findings[0].message;
        assert!(message.contains("VNI Some(7), planned 4801"), "{message}");
        assert!(
            message.contains("remote 172.16.0.99, planned 172.16.0.10"),
            "{message}"
        );
    }

    #[test]
    fn an_on_link_worker_wants_no_link_and_calls_one_a_leftover() {
        let check = World::worker(false).check(CheckId::Overlay);
        assert_eq!(check.status, Status::Ok, "{check:#?}");
        let mut left = World::worker(false);
        left.facts.overlay = Ok(Some(VxlanView {
            vni: Some(4801),
            port: Some(4801),
            remote: Some("172.16.0.10".parse().unwrap()),
            mac: None,
        }));
        let check = left.check(CheckId::Overlay);
        assert_eq!(check.status, Status::Warn, "{check:#?}");
        assert!(check.findings[0].message.contains("a leftover"));
    }

    #[test]
    fn strict_reverse_path_filtering_on_an_overlay_node_fails() {
        let mut w = World::worker(true);
        w.facts.rp_filter = Ok([("all".to_owned(), 0), ("eth0".to_owned(), 1)].into());
        let check = w.check(CheckId::Overlay);
        assert_eq!(check.status, Status::Fail, "{check:#?}");
        let strict = check
            .findings
            .iter()
            .find(|f| f.message.contains("rp_filter=1"))
            .unwrap();
        assert!(strict.message.contains("on eth0"), "{strict:#?}");
        // loose filtering is fine
        let mut loose = World::worker(true);
        loose.facts.rp_filter = Ok([("all".to_owned(), 2), ("eth0".to_owned(), 1)].into());
        assert_eq!(loose.check(CheckId::Overlay).status, Status::Ok);
    }

    #[test]
    fn a_down_link_fails() {
        let mut w = World::worker(true);
        for l in w.facts.links.as_mut().unwrap() {
            if l.name == OVERLAY_LINK {
                l.up = false;
            }
        }
        let check = w.check(CheckId::Overlay);
        assert_eq!(check.status, Status::Fail);
        assert!(check.findings[0].message.contains("is down"));
    }
}
