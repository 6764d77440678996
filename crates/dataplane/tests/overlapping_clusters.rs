//! Real packets between clusters that all use PodCIDR 10.0.0.0/24: a full mesh through remapped
//! views, the hub path through a NatMapping entry, removing a peer, and 10,000 map entries.
//! Needs root; each test builds its own lab.
//!
//! Views: cluster x sees cluster y's pods as 10.(100 + 10x + y).0.0/24, so a sees b as
//! 10.101.0.0/24 and b sees a as 10.110.0.0/24.

use crate::common;

use std::net::Ipv4Addr;

use common::*;
use isthmus_dataplane::firewall::Applied;
use isthmus_dataplane::lab::Lab;

fn view(x: usize, y: usize) -> String {
    format!("10.{}.0.0/24", 100 + 10 * x + y)
}

fn view_host(x: usize, y: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, (100 + 10 * x + y) as u8, 0, 10)
}

fn mesh_spec(
    lab: &Lab,
    c: &[Cluster],
    x: usize,
    except: Option<usize>,
) -> isthmus_dataplane::GatewaySpec {
    let peers = (0..c.len())
        .filter(|y| *y != x && Some(*y) != except)
        .map(|y| peer(lab, &c[y], &[&view(x, y)], &[("10.0.0.0/24", &view(y, x))]))
        .collect();
    spec(lab, &c[x], peers)
}

fn mesh() -> (Lab, Vec<Cluster>) {
    let (lab, mut c) = clusters(&["10.0.0.0/24"; 3]);
    for x in 0..3 {
        let desired = mesh_spec(&lab, &c, x, None);
        c[x].gateway.reconcile(&desired).unwrap();
    }
    (lab, c)
}

#[test]
fn full_mesh_with_identical_pod_cidrs_through_remapped_views() {
    let (lab, _c) = mesh();
    for x in 0..3 {
        for y in (0..3).filter(|y| *y != x) {
            let seen = whoami(&lab.sites[x].pod_rt, view_host(x, y));
            // y's pod sees x's pod through y's own view of x.
            assert_eq!(seen, view_host(y, x), "pod {x} -> pod {y}");
            assert_ping(&lab.sites[x].pod_rt, view_host(x, y));
        }
    }
}

#[test]
fn removing_a_peer_removes_its_state_and_keeps_the_others() {
    let (lab, mut c) = mesh();
    whoami(&lab.sites[0].pod_rt, view_host(0, 2));
    let without_c = mesh_spec(&lab, &c, 0, Some(2));
    let status = c[0].gateway.reconcile(&without_c).unwrap();
    assert_eq!(status.peers.len(), 1);
    let (nft, routes) = kernel_state(&lab.sites[0]);
    assert!(
        !nft.contains("dnat_cluster_c") && !nft.contains(&view(0, 2)[..9]),
        "{nft}"
    );
    assert!(!routes.contains(&view(0, 2)), "{routes}");
    let peers = wg_peers(&lab.sites[0]);
    assert!(
        !peers.contains(&c[2].key.public_key().to_string()),
        "{peers}"
    );
    assert_eq!(
        whoami(&lab.sites[0].pod_rt, view_host(0, 1)),
        view_host(1, 0)
    );
    assert!(
        isthmus_dataplane::lab::tcp_whoami(&lab.sites[0].pod_rt, view_host(0, 2), WHOAMI).is_err()
    );
    // b and c are untouched by a's change.
    assert_eq!(
        whoami(&lab.sites[1].pod_rt, view_host(1, 2)),
        view_host(2, 1)
    );
}

/// A peers B, B peers C, A and C do not peer. B's external CIDR is 10.200.0.0/24 (A sees it as
/// 10.201.0.0/24, C as 10.210.0.0/24); B reflects C's pod to A as 10.201.0.7 and uses 10.200.0.1
/// as the transit source.
#[test]
fn hub_path_through_a_natmapping_entry_with_transit_snat() {
    let (lab, mut c) = clusters(&["10.0.0.0/24"; 3]);
    let a = spec(
        &lab,
        &c[0],
        vec![peer(
            &lab,
            &c[1],
            &["10.101.0.0/24", "10.201.0.0/24"],
            &[("10.0.0.0/24", "10.110.0.0/24")],
        )],
    );
    let mut to_a = peer(
        &lab,
        &c[0],
        &["10.110.0.0/24"],
        &[
            ("10.0.0.0/24", "10.101.0.0/24"),
            ("10.200.0.0/24", "10.201.0.0/24"),
        ],
    );
    to_a.mappings = vec![mapping(v4("10.201.0.7"), v4("10.112.0.10"))];
    let to_c = peer(
        &lab,
        &c[2],
        &["10.112.0.0/24"],
        &[
            ("10.0.0.0/24", "10.121.0.0/24"),
            ("10.200.0.0/24", "10.210.0.0/24"),
        ],
    );
    let mut b = spec(&lab, &c[1], vec![to_a, to_c]);
    b.transit_source = Some("10.200.0.1".parse().unwrap());
    let cc = spec(
        &lab,
        &c[2],
        vec![peer(
            &lab,
            &c[1],
            &["10.121.0.0/24", "10.210.0.0/24"],
            &[("10.0.0.0/24", "10.112.0.0/24")],
        )],
    );
    c[0].gateway.reconcile(&a).unwrap();
    c[1].gateway.reconcile(&b).unwrap();
    c[2].gateway.reconcile(&cc).unwrap();

    // C's pod sees the transit address in its own view of B; the reply finds its way back to A.
    assert_eq!(
        whoami(&lab.sites[0].pod_rt, v4("10.201.0.7")).to_string(),
        "10.210.0.1"
    );
    assert_ping(&lab.sites[0].pod_rt, v4("10.201.0.7"));
    // The direct paths still work: A -> B's pod, C -> B's pod.
    assert_eq!(
        whoami(&lab.sites[0].pod_rt, v4("10.101.0.10")).to_string(),
        "10.110.0.10"
    );
    assert_eq!(
        whoami(&lab.sites[2].pod_rt, v4("10.121.0.10")).to_string(),
        "10.112.0.10"
    );
}

/// B maps 10,000 addresses of 10.50.0.0/16 for packets from A; the last one leads to B's pod.
#[test]
fn ten_thousand_mappings_and_a_packet_to_the_last() {
    let (lab, mut c) = clusters(&["10.0.0.0/24", "10.1.0.0/24"]);
    let a = spec(
        &lab,
        &c[0],
        vec![peer(&lab, &c[1], &["10.1.0.0/24", "10.50.0.0/16"], &[])],
    );
    let mut to_a = peer(&lab, &c[0], &["10.0.0.0/24"], &[]);
    let base = u32::from(v4("10.50.0.0"));
    to_a.mappings = (0..10_000)
        .map(|i| mapping(Ipv4Addr::from(base + i), v4("10.1.0.10")))
        .collect();
    let b = spec(&lab, &c[1], vec![to_a.clone()]);
    c[0].gateway.reconcile(&a).unwrap();
    let status = c[1].gateway.reconcile(&b).unwrap();
    assert_eq!(status.peers[0].mappings, 10_000);

    let last = Ipv4Addr::from(base + 9_999);
    assert_eq!(last, v4("10.50.39.15"));
    assert_eq!(whoami(&lab.sites[0].pod_rt, last).to_string(), "10.0.0.10");
    let map = isthmus_dataplane::lab::run(&[
        "ip",
        "netns",
        "exec",
        &lab.sites[1].gw.name,
        "nft",
        "-j",
        "list",
        "map",
        "inet",
        "isthmus",
        "dnat_cluster_a",
    ])
    .unwrap();
    let json: serde_json::Value = serde_json::from_str(&map).unwrap();
    let elements = json["nftables"][1]["map"]["elem"]
        .as_array()
        .map_or(0, Vec::len);
    assert_eq!(elements, 10_000);

    // One more entry goes in as an element batch, not a rebuild.
    let mut more = b.clone();
    more.peers[0]
        .mappings
        .push(mapping(Ipv4Addr::from(base + 10_000), v4("10.1.0.10")));
    assert_eq!(
        c[1].gateway.reconcile_nat(&more).unwrap(),
        Applied::Incremental
    );
    assert_eq!(
        whoami(&lab.sites[0].pod_rt, Ipv4Addr::from(base + 10_000)).to_string(),
        "10.0.0.10"
    );
}

#[test]
fn updating_a_peer_leaves_the_other_sessions_alone() {
    let (lab, mut c) = mesh();
    whoami(&lab.sites[0].pod_rt, view_host(0, 1));
    whoami(&lab.sites[0].pod_rt, view_host(0, 2));
    let mut desired = mesh_spec(&lab, &c, 0, None);
    let before = c[0].gateway.reconcile(&desired).unwrap();
    let c_before = before
        .peers
        .iter()
        .find(|p| p.name == "cluster-c")
        .unwrap()
        .clone();
    assert!(c_before.last_handshake.is_some());

    // Change peer b in place (keepalive), then use both peers again.
    desired
        .peers
        .iter_mut()
        .find(|p| p.name == "cluster-b")
        .unwrap()
        .keepalive = Some(10);
    let after = c[0].gateway.reconcile(&desired).unwrap();
    let c_after = after.peers.iter().find(|p| p.name == "cluster-c").unwrap();
    // A re-created peer would start from zero counters and no handshake; c's carry on.
    assert!(
        c_after.last_handshake.is_some(),
        "peer c's session was not touched"
    );
    assert!(
        c_after.tx_bytes >= c_before.tx_bytes && c_after.rx_bytes >= c_before.rx_bytes,
        "peer c's counters were not reset"
    );
    assert_eq!(
        whoami(&lab.sites[0].pod_rt, view_host(0, 1)),
        view_host(1, 0)
    );
    assert_eq!(
        whoami(&lab.sites[0].pod_rt, view_host(0, 2)),
        view_host(2, 0)
    );
}
