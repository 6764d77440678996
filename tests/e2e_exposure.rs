//! End-to-end through a NAT in front of the gateways (root; real namespaces, real packets): the
//! lab with `--exposure nodeport` puts a kube-proxy-like DNAT of UDP 31820 to 51820 on every
//! gateway node and advertises `<node>:31820`; with `--exposure loadbalancer` a DNAT from a load
//! balancer address in the underlay's namespace. The gateways still send from port 51820 of
//! their own address, so a peer's WireGuard roams to an endpoint that is not the advertised one.
//! That must not be taken for drift: the peer is set once, the handshake stays, every
//! TunnelEndpoint stays `connected` and a TCP session runs through without a break. Status is
//! truthful: when the tunnel's UDP is dropped on the underlay it leaves `connected` within a few
//! probe intervals, and comes back when the packets do.

use crate::e2e_common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e_common::*;
use isthmus::lab::cluster::WIREGUARD_PORT;
use isthmus::lab::plan::Shape;
use isthmus::lab::runner::{Lab, LabOptions};
use isthmus_api::ConnectionState;
use isthmus_dataplane::tunnel::linux::read_device;
use isthmus_dataplane::{Netns, NsRuntime};
use isthmus_lab::exposure::{self, Exposure, NODE_PORT};
use isthmus_lab::probe::{EchoServer, EchoSession};

const ECHO: u16 = 8083;
/// The lab's gateways probe their peers every second (the chart values of `src/lab/chart.rs`).
const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// What the gateway logs each time it gives WireGuard a peer (`crates/dataplane/src/gateway.rs`).
const SET_PEER_LINE: &str = "setting WireGuard peer";
/// A table that drops the tunnels' UDP on the underlay bridge.
const CUT_TABLE: &str = "lab-cut";

/// A two-cluster lab exposed through `exposure`.
async fn lab(exposure: Exposure) -> Lab {
    lab_with(LabOptions {
        clusters: 2,
        shape: Shape::Mesh,
        exposure,
        ..options()
    })
    .await
}

/// `nft list ruleset` of a namespace.
fn ruleset(ns: &str) -> String {
    isthmus_dataplane::lab::run(&["ip", "netns", "exec", ns, "nft", "list", "ruleset"]).unwrap()
}

/// How many times cluster `i`'s gateway has set a WireGuard peer, from its log.
fn peer_sets(lab: &Lab, i: usize) -> usize {
    let (_, log) = lab.clusters[i]
        .logs()
        .into_iter()
        .find(|(label, _)| label.contains("gateway"))
        .expect("a gateway pod");
    std::fs::read_to_string(&log)
        .unwrap_or_else(|e| panic!("{}: {e}", log.display()))
        .matches(SET_PEER_LINE)
        .count()
}

/// The endpoint and handshake time cluster `i`'s WireGuard device has for its only peer.
async fn device_peer(lab: &Lab, i: usize) -> (Option<SocketAddr>, bool) {
    let ns = gateway_ns(lab, i);
    let ifname = lab.clusters[i].site.wg_interface.clone();
    tokio::task::spawn_blocking(move || {
        let rt: Arc<NsRuntime> = NsRuntime::new(Netns::Named(ns), 1).unwrap();
        let device = read_device(&rt, &ifname).unwrap().expect("the device");
        let [peer] = device.peers.as_slice() else {
            panic!("one peer expected: {:?}", device.peers);
        };
        (peer.endpoint, peer.last_handshake.is_some())
    })
    .await
    .unwrap()
}

/// Whether cluster `i`'s TunnelEndpoint for `j` is `connected` with a handshake (else why not).
async fn connected(lab: &Lab, i: usize, j: usize) -> Result<(), String> {
    let tep = tep(lab, i, j).await.ok_or("no TunnelEndpoint")?;
    let c = tep.status.ok_or("no status")?.connection;
    if c.status == ConnectionState::Connected && c.last_handshake.is_some() {
        Ok(())
    } else {
        Err(format!("{} ({})", c.status, c.message))
    }
}

/// The underlay address cluster `i`'s gateway really sends from.
fn real_endpoint(lab: &Lab, i: usize) -> SocketAddr {
    SocketAddr::from((lab.topology.clusters[i].underlay, WIREGUARD_PORT))
}

/// Every TunnelEndpoint advertises `want(i)` for the peer `i`.
async fn advertised_endpoints_are(lab: &Lab, want: impl Fn(usize) -> SocketAddr) {
    for (i, j) in [(0, 1), (1, 0)] {
        let tep = tep(lab, i, j).await.expect("TunnelEndpoint");
        assert_eq!(tep.spec.endpoint, want(j).to_string(), "{i}→{j}");
    }
}

/// Waits until some gateway's device has roamed: its peer's endpoint is the peer's real address
/// and port, not the advertised one (the NAT is really in the path).
async fn some_peer_roamed(lab: &Lab) -> usize {
    let started = Instant::now();
    loop {
        for (i, j) in [(0, 1), (1, 0)] {
            if device_peer(lab, i).await.0 == Some(real_endpoint(lab, j)) {
                return i;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no device roamed to its peer's real endpoint: {:?} {:?}",
            device_peer(lab, 0).await,
            device_peer(lab, 1).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An echo session from a pod of cluster 0 to a pod of cluster 1.
async fn echo_session(lab: &Lab) -> (EchoServer, EchoSession) {
    echo_a_to_b(
        lab,
        ECHO,
        Duration::from_millis(100),
        Duration::from_secs(1),
    )
    .await
}

/// For `window`, every TunnelEndpoint stays `connected` with a handshake, the device that
/// roamed keeps the roamed endpoint, no gateway sets a WireGuard peer again and the echo session
/// does not break.
async fn stable_for(lab: &Lab, window: Duration, roamed: usize, session: &EchoSession) {
    let sets = [peer_sets(lab, 0), peer_sets(lab, 1)];
    let peer = 1 - roamed;
    let started = Instant::now();
    while started.elapsed() < window {
        for (i, j) in [(0, 1), (1, 0)] {
            if let Err(why) = connected(lab, i, j).await {
                panic!(
                    "{i}→{j} left connected after {:?}: {why}",
                    started.elapsed()
                );
            }
        }
        let (endpoint, handshake) = device_peer(lab, roamed).await;
        assert_eq!(
            endpoint,
            Some(real_endpoint(lab, peer)),
            "the roamed endpoint is kept"
        );
        assert!(handshake, "the handshake stays");
        assert_eq!(
            [peer_sets(lab, 0), peer_sets(lab, 1)],
            sets,
            "a gateway set its WireGuard peer again after {:?}",
            started.elapsed()
        );
        let status = session.status();
        assert!(status.broken.is_none(), "the TCP session broke: {status:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Drops (`true`) or lets through (`false`) the tunnels' UDP on the underlay bridge.
fn cut_tunnels(wan_ns: &str, cut: bool) {
    let run = |args: &[&str]| isthmus_dataplane::lab::run(args).unwrap();
    if cut {
        let ports = format!("{{ {WIREGUARD_PORT}, {NODE_PORT} }}");
        let chain = format!("bridge {CUT_TABLE} forward");
        let rules = format!(
            "add table bridge {CUT_TABLE}; add chain {chain} {{ type filter hook forward priority \
             filter; policy accept; }}; add rule {chain} ether type ip udp dport {ports} drop; \
             add rule {chain} ether type ip udp sport {ports} drop"
        );
        run(&["ip", "netns", "exec", wan_ns, "nft", &rules]);
    } else {
        run(&[
            "ip", "netns", "exec", wan_ns, "nft", "delete", "table", "bridge", CUT_TABLE,
        ]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodeport_exposure_roams_without_resetting_the_peer_and_status_tracks_packets() {
    let lab = lab(Exposure::NodePort).await;
    for cluster in &lab.topology.clusters {
        for node in cluster.nodes.iter().filter(|n| n.gateway) {
            let rules = ruleset(&node.namespace);
            assert!(rules.contains("table ip lab-kube-proxy {"), "{rules}");
            assert!(rules.contains("udp dport 31820 dnat to :51820"), "{rules}");
        }
    }
    advertised_endpoints_are(&lab, |i| {
        SocketAddr::from((lab.topology.clusters[i].underlay, NODE_PORT))
    })
    .await;
    let roamed = some_peer_roamed(&lab).await;
    let (_server, session) = echo_session(&lab).await;

    stable_for(&lab, 10 * PROBE_INTERVAL, roamed, &session).await;
    assert!(session.status().exchanges > 50, "{:?}", session.status());
    drop(session);

    // Status tracks packets: no tunnel packet crosses the underlay, no `connected`. Nothing
    // about the peer changed, so it is not set again either.
    let sets = [peer_sets(&lab, 0), peer_sets(&lab, 1)];
    let wan = lab.topology.wan.namespace.clone();
    cut_tunnels(&wan, true);
    let lost = eventually(
        "both tunnels leave connected",
        10 * PROBE_INTERVAL,
        || async { connected(&lab, 0, 1).await.is_err() && connected(&lab, 1, 0).await.is_err() },
    )
    .await;
    cut_tunnels(&wan, false);
    let back = eventually(
        "both tunnels are connected again",
        30 * PROBE_INTERVAL,
        || async { connected(&lab, 0, 1).await.is_ok() && connected(&lab, 1, 0).await.is_ok() },
    )
    .await;
    eprintln!("cut: not connected after {lost:?}; restored: connected after {back:?}");
    assert_eq!(
        [peer_sets(&lab, 0), peer_sets(&lab, 1)],
        sets,
        "a peer was set again"
    );
    let matrix = lab.wait_full_connectivity(Duration::from_secs(10)).await;
    assert!(matrix.all_reachable(), "{}", matrix.render_list());
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn loadbalancer_exposure_roams_without_resetting_the_peer() {
    let lab = lab(Exposure::LoadBalancer).await;
    let wan = lab.topology.wan.clone();
    let rules = ruleset(&wan.namespace);
    assert!(rules.contains("table ip lab-lb {"), "{rules}");
    let lb = |i: usize| exposure::load_balancer_address(wan.network, i).unwrap();
    for i in 0..2 {
        // one replica: the balancer follows the Lease to the gateway node
        let gw = lab.topology.clusters[i].underlay;
        assert!(
            rules.contains(&format!(
                "ip daddr {} udp dport 51820 notrack ip daddr set {gw}",
                lb(i)
            )),
            "{rules}"
        );
        assert_ne!(lb(i), gw);
    }
    advertised_endpoints_are(&lab, |i| SocketAddr::from((lb(i), WIREGUARD_PORT))).await;
    let roamed = some_peer_roamed(&lab).await;
    let (_server, session) = echo_session(&lab).await;
    stable_for(&lab, 5 * PROBE_INTERVAL, roamed, &session).await;
    assert!(session.status().exchanges > 20, "{:?}", session.status());
    lab.shutdown().await;
}
