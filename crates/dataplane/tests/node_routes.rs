//! A non-gateway node reaches a remote cluster through the gateway node: first with a direct
//! next hop, then over VXLAN; routes are idempotent and removed on unpeer. Needs root.
//!
//! The node namespace hangs off gateway A (`n0` 172.16.0.1/24 <-> node `eth0` 172.16.0.2/24) and
//! hosts a pod address 10.0.0.130 (inside A's PodCIDR) on its loopback.

use crate::common;

use std::sync::Arc;

use common::*;
use isthmus_dataplane::lab::{self, NsGuard};
use isthmus_dataplane::netns::NsRuntime;
use isthmus_dataplane::routes::linux::NetlinkRoutes;
use isthmus_dataplane::routes::{self, NodePath, RouteDiff, RouteDriver, VxlanSpec};

fn vxlan(local: &str, remote: &str, dev: &str, address: &str) -> VxlanSpec {
    VxlanSpec {
        name: "vx0".into(),
        vni: 42,
        dev: Some(dev.into()),
        local: Some(v4(local)),
        remote: Some(v4(remote)),
        address: Some(address.parse().unwrap()),
        port: 4789,
        mtu: 1450,
        mac: None,
        neighbors: Vec::new(),
        loose_rp_filter: false,
    }
}

#[test]
fn node_reaches_remote_pods_by_next_hop_and_by_vxlan() {
    let (lab, mut c) = clusters(&["10.0.0.0/24", "10.1.0.0/24"]);
    let spec_a = spec(&lab, &c[0], vec![peer(&lab, &c[1], &["10.1.0.0/24"], &[])]);
    let spec_b = spec(&lab, &c[1], vec![peer(&lab, &c[0], &["10.0.0.0/24"], &[])]);
    c[0].gateway.reconcile(&spec_a).unwrap();
    c[1].gateway.reconcile(&spec_b).unwrap();

    let gw = lab.sites[0].gw.name.clone();
    let node = NsGuard::new(format!("{gw}-node")).unwrap();
    lab::ip(
        &gw,
        &format!("link add n0 type veth peer name eth0 netns {}", node.name),
    )
    .unwrap();
    lab::ip(&gw, "addr add 172.16.0.1/24 dev n0").unwrap();
    lab::ip(&gw, "link set n0 up").unwrap();
    lab::ip(&node.name, "addr add 172.16.0.2/24 dev eth0").unwrap();
    lab::ip(&node.name, "link set eth0 up").unwrap();
    lab::ip(&node.name, "addr add 10.0.0.130/32 dev lo").unwrap();
    let node_rt: Arc<NsRuntime> = NsRuntime::new(node.netns(), 1).unwrap();
    let mut node_routes = NetlinkRoutes::new(node_rt.clone()).unwrap();
    let remote = ["10.1.0.0/24".parse().unwrap()];

    // Direct next hop.
    lab::ip(&gw, "route add 10.0.0.130/32 via 172.16.0.2").unwrap();
    let direct = routes::node_routes(
        &remote,
        &NodePath::Direct {
            gateway: v4("172.16.0.1"),
        },
    );
    assert_eq!(
        routes::sync(&mut node_routes, &direct).unwrap().added.len(),
        1
    );
    assert_eq!(
        routes::sync(&mut node_routes, &direct).unwrap(),
        RouteDiff::default()
    );
    let seen = lab::tcp_whoami_from(&node_rt, v4("10.0.0.130"), v4("10.1.0.10"), WHOAMI).unwrap();
    assert_eq!(seen.to_string(), "10.0.0.130");

    // VXLAN overlay between the node and the gateway node.
    let mut gw_routes = NetlinkRoutes::new(lab.sites[0].gw_rt.clone()).unwrap();
    gw_routes
        .ensure_vxlan(&vxlan("172.16.0.1", "172.16.0.2", "n0", "172.17.0.1/30"))
        .unwrap();
    node_routes
        .ensure_vxlan(&vxlan("172.16.0.2", "172.16.0.1", "eth0", "172.17.0.2/30"))
        .unwrap();
    node_routes
        .ensure_vxlan(&vxlan("172.16.0.2", "172.16.0.1", "eth0", "172.17.0.2/30"))
        .unwrap();
    lab::ip(&gw, "route replace 10.0.0.130/32 via 172.17.0.2 dev vx0").unwrap();
    let overlay = routes::node_routes(
        &remote,
        &NodePath::Vxlan {
            link: "vx0".into(),
            gateway: v4("172.17.0.1"),
        },
    );
    let diff = routes::sync(&mut node_routes, &overlay).unwrap();
    assert_eq!(
        (diff.added.len(), diff.removed.len()),
        (1, 0),
        "the new next hop replaces the old"
    );
    assert_eq!(
        routes::sync(&mut node_routes, &overlay).unwrap(),
        RouteDiff::default()
    );
    let seen = lab::tcp_whoami_from(&node_rt, v4("10.0.0.130"), v4("10.1.0.10"), WHOAMI).unwrap();
    assert_eq!(seen.to_string(), "10.0.0.130");
    let shown = lab::ip(&node.name, "route show proto 153").unwrap();
    assert!(
        shown.contains("10.1.0.0/24 via 172.17.0.1 dev vx0"),
        "{shown}"
    );

    // Unpeer: our routes go, the remote cluster is unreachable from the node.
    routes::sync(&mut node_routes, &[]).unwrap();
    assert_eq!(lab::ip(&node.name, "route show proto 153").unwrap(), "");
    assert!(lab::tcp_whoami_from(&node_rt, v4("10.0.0.130"), v4("10.1.0.10"), WHOAMI).is_err());
    node_routes.delete_link("vx0").unwrap();
}
