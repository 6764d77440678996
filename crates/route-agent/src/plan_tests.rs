//! Unit tests of the planner.

use std::net::Ipv4Addr;

use isthmus_api::{TunnelEndpoint, TunnelEndpointSpec, TunnelEndpointStatus};
use isthmus_dataplane::routes::{NextHop, Route};
use pretty_assertions::assert_eq;

use super::*;

const GW: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 1);

fn tep(name: &str, pod: &str, ext: &str, gateway: Option<(&str, Ipv4Addr)>) -> TunnelEndpoint {
    let c = |s: &str| s.parse().unwrap();
    let spec = TunnelEndpointSpec {
        cluster_id: name.parse().unwrap(),
        local_pod_cidr: c("10.0.0.0/16"),
        local_nat_pod_cidr: c("10.0.0.0/16"),
        local_external_cidr: c("10.1.0.0/16"),
        local_nat_external_cidr: c("10.1.0.0/16"),
        remote_pod_cidr: c("10.0.0.0/16"),
        remote_nat_pod_cidr: c(pod),
        remote_external_cidr: c("10.1.0.0/16"),
        remote_nat_external_cidr: c(ext),
        endpoint: "192.168.100.2:51820".into(),
        backend_type: Default::default(),
        backend_config: Default::default(),
    };
    let mut t = TunnelEndpoint::new(name, spec);
    t.status = gateway.map(|(node, ip)| TunnelEndpointStatus {
        gateway_node: Some(node.into()),
        gateway_ip: Some(ip),
        ..Default::default()
    });
    t
}

fn via(dst: &str, gw: Ipv4Addr) -> Route {
    Route {
        dst: dst.parse().unwrap(),
        via: NextHop::Via(gw, None),
    }
}

#[test]
fn a_worker_routes_both_remote_ranges_to_the_gateway_node() {
    let teps = [tep("b", "10.3.0.0/16", "10.4.0.0/16", Some(("gw", GW)))];
    let p = plan("worker-1", &teps);
    assert_eq!(
        p.routes(),
        vec![via("10.3.0.0/16", GW), via("10.4.0.0/16", GW)]
    );
    assert_eq!(p.peers[0].peer.as_str(), "b");
    assert_eq!(
        p.peer_of("10.4.0.0/16".parse().unwrap()).unwrap().as_str(),
        "b"
    );
    assert!(p.skipped.is_empty());
}

#[test]
fn the_gateway_node_wants_nothing() {
    let teps = [tep("b", "10.3.0.0/16", "10.4.0.0/16", Some(("gw", GW)))];
    let p = plan("gw", &teps);
    assert_eq!(p.routes(), vec![]);
    assert_eq!(p.skipped, vec![("b".to_owned(), Skipped::GatewayNode)]);
}

#[test]
fn no_route_until_the_gateway_publishes_its_address() {
    let mut unnamed = tep("c", "10.5.0.0/16", "10.6.0.0/16", None);
    let p = plan("worker-1", [&unnamed]);
    assert_eq!(p.skipped, vec![("c".to_owned(), Skipped::NoGatewayAddress)]);
    // An address without a node name: this node cannot be the gateway, so it routes.
    unnamed.status = Some(TunnelEndpointStatus {
        gateway_ip: Some(GW),
        ..Default::default()
    });
    assert_eq!(plan("worker-1", [&unnamed]).routes().len(), 2);
}

#[test]
fn unusable_and_deleted_endpoints_contribute_nothing() {
    let bad = tep(
        "b",
        "10.3.0.0/16",
        "10.4.0.0/16",
        Some(("gw", Ipv4Addr::LOCALHOST)),
    );
    let mut gone = tep("c", "10.5.0.0/16", "10.6.0.0/16", Some(("gw", GW)));
    gone.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        Default::default(),
    ));
    let p = plan("worker-1", [&bad, &gone]);
    assert_eq!(p.routes(), vec![]);
    assert_eq!(
        p.skipped,
        vec![
            (
                "b".to_owned(),
                Skipped::UnusableGateway(Ipv4Addr::LOCALHOST)
            ),
            ("c".to_owned(), Skipped::Deleting),
        ]
    );
}

#[test]
fn several_peers_each_through_their_published_gateway() {
    let other = Ipv4Addr::new(192, 168, 50, 7);
    let teps = [
        tep("c", "10.5.0.0/16", "10.6.0.0/16", Some(("gw2", other))),
        tep("b", "10.3.0.0/16", "10.4.0.0/16", Some(("gw", GW))),
    ];
    let p = plan("worker-1", &teps);
    assert_eq!(
        p.routes(),
        vec![
            via("10.3.0.0/16", GW),
            via("10.4.0.0/16", GW),
            via("10.5.0.0/16", other),
            via("10.6.0.0/16", other),
        ]
    );
}

#[test]
fn a_range_claimed_twice_stays_with_the_first_endpoint_by_name() {
    let teps = [
        tep("c", "10.3.0.0/16", "10.6.0.0/16", Some(("gw", GW))),
        tep("b", "10.3.0.0/16", "10.4.0.0/16", Some(("gw", GW))),
    ];
    let p = plan("worker-1", &teps);
    assert_eq!(p.routes().len(), 3);
    assert_eq!(
        p.peer_of("10.3.0.0/16".parse().unwrap()).unwrap().as_str(),
        "b"
    );
    assert_eq!(
        p.skipped,
        vec![(
            "c".to_owned(),
            Skipped::Duplicate {
                dst: "10.3.0.0/16".parse().unwrap(),
                kept_by: "b".into()
            }
        )]
    );
}

fn nets(list: &[&str]) -> Vec<Ipv4Net> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

#[test]
fn the_nat_exemption_covers_exactly_the_routed_ranges_from_our_pod_cidr() {
    let other = Ipv4Addr::new(192, 168, 50, 7);
    let teps = [
        tep("c", "10.5.0.0/16", "10.6.0.0/16", Some(("gw2", other))),
        tep("b", "10.3.0.0/16", "10.4.0.0/16", Some(("gw", GW))),
        tep("d", "10.7.0.0/16", "10.8.0.0/16", None),
    ];
    let p = plan("worker-1", &teps);
    assert_eq!(p.nat.table, "isthmus-node");
    assert_eq!(p.nat.sources, nets(&["10.0.0.0/16"]));
    assert_eq!(
        p.nat.destinations,
        nets(&["10.3.0.0/16", "10.4.0.0/16", "10.5.0.0/16", "10.6.0.0/16"])
    );
}

#[test]
fn no_route_no_exemption() {
    let teps = [tep("b", "10.3.0.0/16", "10.4.0.0/16", Some(("gw", GW)))];
    assert!(
        plan("gw", &teps).nat.is_empty(),
        "the gateway's table covers its node"
    );
    assert!(plan("worker-1", []).nat.is_empty());
    let p = plan("worker-1", &teps);
    assert!(!p.nat.is_empty());
}

mod overlay_choice {
    use super::{GW, OverlayInput, Skipped, plan_with, tep, via};
    use isthmus_dataplane::routes::overlay::{OverlayMode, Reach};
    use isthmus_dataplane::routes::{NextHop, Route};
    use pretty_assertions::assert_eq;
    use std::net::Ipv4Addr;

    const ROUTER: Ipv4Addr = Ipv4Addr::new(192, 168, 51, 1);

    fn input(mode: OverlayMode, reach: Option<Reach>) -> OverlayInput {
        let mut input = OverlayInput::default();
        input.settings.mode = mode;
        input.reach.extend(reach.map(|r| (GW, r)));
        input
    }

    fn onlink(dst: &str) -> Route {
        Route {
            dst: dst.parse().unwrap(),
            via: NextHop::Onlink(GW, "isthmus-vx0".into()),
        }
    }

    #[test]
    fn an_on_link_gateway_node_is_a_direct_next_hop_and_no_link() {
        let teps = [tep("b", "10.3.0.0/16", "10.4.0.0/16", Some(("gw", GW)))];
        let reach = Reach::on_link("eth0", 1500);
        let p = plan_with("worker-1", &teps, &input(OverlayMode::Auto, Some(reach)));
        assert_eq!(
            p.routes(),
            vec![via("10.3.0.0/16", GW), via("10.4.0.0/16", GW)]
        );
        assert_eq!(p.overlay, None);
        assert_eq!(p.gateways, vec![GW]);
        assert!(!p.peers[0].overlay);
    }

    #[test]
    fn a_routed_gateway_node_is_reached_over_the_overlay() {
        let teps = [tep("b", "10.3.0.0/16", "10.4.0.0/16", Some(("gw", GW)))];
        let reach = Reach::routed(ROUTER, "eth0", 1500);
        let p = plan_with("worker-1", &teps, &input(OverlayMode::Auto, Some(reach)));
        assert_eq!(
            p.routes(),
            vec![onlink("10.3.0.0/16"), onlink("10.4.0.0/16")]
        );
        let link = p.overlay.expect("an overlay link");
        assert_eq!(link.remote, Some(GW));
        assert_eq!(link.neighbors, vec![(GW, [2, 0x49, 192, 168, 50, 1])]);
        assert_eq!(link.mtu, 1450);
        assert_eq!(link.mac, None);
        // the NAT exemption does not depend on the path
        assert_eq!(p.nat.destinations.len(), 2);
    }

    #[test]
    fn modes_override_the_choice() {
        let teps = [tep("b", "10.3.0.0/16", "10.4.0.0/16", Some(("gw", GW)))];
        let routed = Reach::routed(ROUTER, "eth0", 1500);
        let never = plan_with("w", &teps, &input(OverlayMode::Never, Some(routed)));
        assert_eq!(never.overlay, None);
        assert_eq!(never.routes()[0], via("10.3.0.0/16", GW));
        let on_link = Reach::on_link("eth0", 1500);
        let always = plan_with("w", &teps, &input(OverlayMode::Always, Some(on_link)));
        assert_eq!(always.routes()[0], onlink("10.3.0.0/16"));
    }

    #[test]
    fn the_gateway_node_keeps_the_receiving_end_unless_never() {
        let teps = [tep("b", "10.3.0.0/16", "10.4.0.0/16", Some(("gw", GW)))];
        let p = plan_with("gw", &teps, &input(OverlayMode::Auto, None));
        assert_eq!(p.routes(), vec![]);
        let link = p.overlay.expect("the receiving end");
        assert_eq!(
            (link.remote, link.mac),
            (None, Some([2, 0x49, 192, 168, 50, 1]))
        );
        assert!(link.loose_rp_filter);
        assert_eq!(
            plan_with("gw", &teps, &input(OverlayMode::Never, None)).overlay,
            None
        );
        // no peer: no link anywhere
        assert_eq!(
            plan_with("gw", [], &input(OverlayMode::Auto, None)).overlay,
            None
        );
    }

    #[test]
    fn the_link_follows_the_gateway_and_one_remote_at_a_time() {
        const MOVED: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 2);
        let mut input = input(OverlayMode::Always, None);
        let teps = [
            tep("b", "10.3.0.0/16", "10.4.0.0/16", Some(("gw", GW))),
            tep("c", "10.5.0.0/16", "10.6.0.0/16", Some(("gw2", MOVED))),
        ];
        let p = plan_with("w", &teps, &input);
        assert_eq!(p.overlay.unwrap().remote, Some(GW));
        assert_eq!(
            p.skipped,
            vec![(
                "c".to_owned(),
                Skipped::OverlayBusy {
                    gateway: GW,
                    kept_by: "b".into()
                }
            )]
        );
        // the gateway moved for every peer: the link points at the new node
        let moved = [tep("b", "10.3.0.0/16", "10.4.0.0/16", Some(("gw2", MOVED)))];
        input.reach.clear();
        let p = plan_with("w", &moved, &input);
        assert_eq!(p.overlay.unwrap().remote, Some(MOVED));
        assert_eq!(p.gateways, vec![MOVED]);
    }
}
