//! The read-only inspection paths against a real kernel: our nftables table read back equals
//! what was rendered (and shows a deleted map element), every route with its protocol, a route
//! lookup to the peer's endpoint, links with MTU and kind, the WireGuard device's port and peers.
//! Needs root; builds its own namespaces.

use crate::common;

use common::*;
use isthmus_dataplane::firewall::view::{Element, TableView, diff};
use isthmus_dataplane::firewall::{NatPlan, TABLE, nft, render};
use isthmus_dataplane::routes::linux::NetlinkRoutes;
use isthmus_dataplane::routes::{MAIN_TABLE, ROUTE_PROTOCOL};
use isthmus_dataplane::tunnel::linux::read_device;

#[test]
fn reads_back_table_routes_links_and_device() {
    let (lab, mut c) = clusters(&["10.0.0.0/24", "10.1.0.0/24"]);
    let mut peer_b = peer(&lab, &c[1], &["10.1.0.0/24"], &[]);
    peer_b.mappings = vec![mapping(v4("10.1.0.77"), v4("10.0.0.10"))];
    let spec_a = spec(&lab, &c[0], vec![peer_b]);
    let spec_b = spec(&lab, &c[1], vec![peer(&lab, &c[0], &["10.0.0.0/24"], &[])]);
    c[0].gateway.reconcile(&spec_a).unwrap();
    c[1].gateway.reconcile(&spec_b).unwrap();
    assert_ping(&lab.sites[0].pod_rt, v4("10.1.0.10"));
    let site = &lab.sites[0];
    let ns = &site.gw_rt;

    // nftables: the kernel's table reads exactly as the rendered batch.
    let want = TableView::from_batch(
        &render::render(&NatPlan::from_spec(&spec_a.validate().unwrap())),
        TABLE,
    );
    let listing = nft::read_table(ns, TABLE).unwrap().expect("table exists");
    let have = TableView::from_listing(&listing, TABLE);
    assert!(diff(&want, &have).is_empty(), "{:#?}", diff(&want, &have));
    isthmus_dataplane::lab::run(&[
        "ip",
        "netns",
        "exec",
        &site.gw.name,
        "nft",
        "delete element inet isthmus dnat_cluster_b { 10.1.0.77 }",
    ])
    .unwrap();
    let listing = nft::read_table(ns, TABLE).unwrap().unwrap();
    let d = diff(&want, &TableView::from_listing(&listing, TABLE));
    assert_eq!(
        d.missing_elements,
        [Element {
            map: "dnat_cluster_b".into(),
            key: "10.1.0.77".into(),
            value: "10.0.0.10".into()
        }]
    );
    assert!(
        nft::read_table(&lab.sites[0].pod_rt, TABLE)
            .unwrap()
            .is_none()
    );

    // Routes: ours with protocol 153, the underlay's from the kernel; a lookup picks u0.
    let routes = NetlinkRoutes::new(ns.clone()).unwrap();
    let all = routes.all_routes().unwrap();
    let ours = all
        .iter()
        .find(|r| r.protocol == ROUTE_PROTOCOL)
        .expect("our route");
    assert_eq!(ours.dst.to_string(), "10.1.0.0/24");
    assert_eq!(ours.dev.as_deref(), Some(site.ifname.as_str()));
    assert_eq!(ours.table, MAIN_TABLE);
    let found = routes.lookup(lab.sites[1].underlay).unwrap();
    assert_eq!(found.dev.as_deref(), Some("u0"));
    assert!(
        routes.lookup(v4("203.0.113.9")).is_err(),
        "no default route"
    );

    // Links: the tunnel with its MTU.
    let links = routes.links().unwrap();
    let tunnel = links.iter().find(|l| l.name == site.ifname).unwrap();
    assert_eq!(tunnel.mtu, Some(1420));
    assert!(tunnel.up);

    // The device: port and the peer with a handshake.
    let device = read_device(ns, &site.ifname).unwrap().expect("device");
    assert_eq!(device.listen_port, PORT);
    assert_eq!(device.peers.len(), 1);
    assert_eq!(device.peers[0].public_key, c[1].key.public_key());
    assert!(device.peers[0].last_handshake.is_some());
    assert!(read_device(ns, "nosuchlink").unwrap().is_none());
}
