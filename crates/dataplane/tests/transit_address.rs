//! The tunnel carries the gateway's transit address: each gateway pings the other's transit
//! address (in its own, remapped view) from its own namespace, and the address stays single
//! and unchanged across reconciles. Needs root; builds its own lab.

use crate::common;

use std::net::{IpAddr, Ipv4Addr};

use common::*;

/// Identical PodCIDRs and ExternalCIDRs (10.0.0.0/24, 10.200.0.0/24) on both sides; a sees b's
/// as 10.101.0.0/24 and 10.201.0.0/24, b sees a's as 10.110.0.0/24 and 10.210.0.0/24.
#[test]
fn each_gateway_answers_a_ping_to_its_transit_address_through_the_tunnel() {
    let (lab, mut c) = clusters(&["10.0.0.0/24", "10.0.0.0/24"]);
    let transit = IpAddr::V4(Ipv4Addr::new(10, 200, 0, 1));
    let a_local = [
        ("10.0.0.0/24", "10.110.0.0/24"),
        ("10.200.0.0/24", "10.210.0.0/24"),
    ];
    let b_local = [
        ("10.0.0.0/24", "10.101.0.0/24"),
        ("10.200.0.0/24", "10.201.0.0/24"),
    ];
    let mut spec_a = spec(
        &lab,
        &c[0],
        vec![peer(
            &lab,
            &c[1],
            &["10.101.0.0/24", "10.201.0.0/24"],
            &a_local,
        )],
    );
    spec_a.transit_source = Some(transit);
    let mut spec_b = spec(
        &lab,
        &c[1],
        vec![peer(
            &lab,
            &c[0],
            &["10.110.0.0/24", "10.210.0.0/24"],
            &b_local,
        )],
    );
    spec_b.transit_source = Some(transit);
    c[0].gateway.reconcile(&spec_a).unwrap();
    c[1].gateway.reconcile(&spec_b).unwrap();

    assert_ping(&lab.sites[0].gw_rt, v4("10.201.0.1"));
    assert_ping(&lab.sites[1].gw_rt, v4("10.210.0.1"));

    c[0].gateway.reconcile(&spec_a).unwrap();
    let site = &lab.sites[0];
    let addrs = isthmus_dataplane::lab::ip(
        &site.gw.name,
        &format!("-4 -o addr show dev {}", site.ifname),
    )
    .unwrap();
    assert_eq!(addrs.matches("inet ").count(), 1, "{addrs}");
    assert!(addrs.contains("10.200.0.1/32"), "{addrs}");

    // Without a transit source the address goes, and the probe fails.
    spec_a.transit_source = None;
    c[0].gateway.reconcile(&spec_a).unwrap();
    let addrs = isthmus_dataplane::lab::ip(
        &site.gw.name,
        &format!("-4 -o addr show dev {}", site.ifname),
    )
    .unwrap();
    assert!(!addrs.contains("inet "), "{addrs}");
    assert!(!isthmus_dataplane::lab::ping(&site.gw_rt, v4("10.201.0.1"), 2).unwrap());
}
