//! Unit tests of the pure report: peers joined across objects, remapped ranges marked, handshake
//! age, peers without a TunnelEndpoint and why, the summary line and the IPAM usage.

use isthmus_api::ConnectionState;

use super::*;
use crate::inspect::status::fixtures::*;
use crate::inspect::status::input::Fetched;
use crate::inspect::status::report::PeerState;
use crate::inspect::status::table;

#[test]
fn every_peer_gets_one_row_joined_across_objects() {
    let r = build(&hub(), &source());
    let ids: Vec<&str> = r.peers.iter().map(|p| p.cluster_id.as_str()).collect();
    assert_eq!(ids, ["a", "c", "d", "e", "z"]);
    assert_eq!(
        r.cluster_id.as_deref(),
        Some("b"),
        "from the NetworkConfigs' clusterID"
    );
    let a = peer(&r, "a");
    assert_eq!(a.state, PeerState::Connected);
    assert_eq!((a.reason.as_deref(), a.message.as_deref()), (None, None));
    assert!(a.tunnel_endpoint && a.network_config && !a.foreign_cluster);
    assert_eq!(a.nat_mappings, 3);
    assert_eq!(a.rtt_ms, Some(0.892));
    assert_eq!((a.rx_bytes, a.tx_bytes), (Some(156), Some(3 * 1024 * 1024)));
    assert_eq!(a.gateway_node.as_deref(), Some("b-node0"));
    let c = peer(&r, "c");
    assert_eq!(c.state, PeerState::Connecting);
    assert_eq!(c.message.as_deref(), Some("no reply to the last 2 probes"));
    assert_eq!(c.nat_mappings, 0);
}

#[test]
fn remapped_ranges_are_marked_in_both_views() {
    let r = build(&hub(), &source());
    let a = &peer(&r, "a").nat;
    let pods = a.peer_pods.unwrap();
    assert_eq!(
        (pods.cidr, pods.addressed_as, pods.remapped),
        (c("10.0.0.0/16"), c("10.3.0.0/16"), true)
    );
    assert!(!a.peer_external.unwrap().remapped, "accepted as-is");
    assert!(a.local_pods.unwrap().remapped, "the peer remapped our pods");
    assert!(!a.local_external.unwrap().remapped);
    assert!(
        !peer(&r, "c").nat.peer_pods.unwrap().remapped,
        "same range: not remapped"
    );
    let text = table::render(&r);
    let addressing: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("ADDRESSING"))
        .collect();
    assert!(
        addressing.iter().all(|l| !l.starts_with("d ")),
        "no views, no row: {text}"
    );
    let row = text
        .lines()
        .find(|l| l.starts_with("a ") && l.contains("10.3.0.0/16"))
        .unwrap();
    assert_eq!(
        row.split_whitespace().collect::<Vec<_>>(),
        [
            "a",
            "10.3.0.0/16*",
            "10.9.0.0/16",
            "10.4.0.0/16*",
            "10.2.0.0/16"
        ]
    );
}

#[test]
fn handshake_age_is_now_minus_the_last_handshake() {
    let r = build(&hub(), &source());
    assert_eq!(peer(&r, "a").handshake_age_seconds, Some(12));
    assert_eq!(peer(&r, "c").handshake_age_seconds, Some(400));
    let mut f = hub();
    f.tunnel_endpoints[0] = tep("a", "10.3.0.0/16", ConnectionState::Connected, Some(-5));
    assert_eq!(
        peer(&build(&f, &source()), "a").handshake_age_seconds,
        Some(0),
        "clock skew"
    );
    f.tunnel_endpoints[0] = tep("a", "10.3.0.0/16", ConnectionState::Connecting, None);
    let r = build(&f, &source());
    assert_eq!(peer(&r, "a").handshake_age_seconds, None);
    assert!(
        table::render(&r)
            .lines()
            .any(|l| l.starts_with("a ") && l.contains("never"))
    );
}

#[test]
fn a_connected_tunnel_with_an_old_handshake_is_flagged_stale() {
    let mut f = hub();
    f.tunnel_endpoints[0] = tep("a", "10.3.0.0/16", ConnectionState::Connected, Some(181));
    let a = peer(&build(&f, &source()), "a").clone();
    assert_eq!(a.state, PeerState::Connected);
    assert!(
        a.warnings.iter().any(|w| w.contains("stale")),
        "{:?}",
        a.warnings
    );
    f.tunnel_endpoints[0] = tep("a", "10.3.0.0/16", ConnectionState::Connected, Some(180));
    assert!(peer(&build(&f, &source()), "a").warnings.is_empty());
}

#[test]
fn peers_without_a_tunnel_say_why() {
    let r = build(&hub(), &source());
    let d = peer(&r, "d");
    assert_eq!(d.state, PeerState::Error);
    assert_eq!(d.reason.as_deref(), Some("PoolsExhausted"));
    assert_eq!(
        d.message.as_deref(),
        Some("no free /16 network in the pools")
    );
    assert!(!d.tunnel_endpoint && d.foreign_cluster && d.network_config);
    assert_eq!(d.phase.as_deref(), Some("Error"));
    assert_eq!(
        d.conditions.len(),
        5,
        "4 on the ForeignCluster, 1 on the NetworkConfig"
    );
    let e = peer(&r, "e");
    assert_eq!(
        (e.state, e.reason.as_deref()),
        (PeerState::Pending, Some("Waiting"))
    );
    assert!(e.message.as_deref().unwrap().contains("not processed"));
    let z = peer(&r, "z");
    assert_eq!(
        (z.state, z.reason.as_deref()),
        (PeerState::Error, Some("InvalidSpec"))
    );
    assert!(
        z.warnings[0].contains("NetworkConfig z cannot be read"),
        "{:?}",
        z.warnings
    );
    let text = table::render(&r);
    assert!(
        text.contains("  └ PoolsExhausted: no free /16 network in the pools\n"),
        "{text}"
    );
    assert!(
        text.contains("  └ InvalidSpec: 10.0.0.1/16: host bits set\n"),
        "{text}"
    );
}

#[test]
fn an_unreachable_peer_api_outranks_the_summary_condition() {
    let mut f = Fetched::default();
    f.ipam_storages.push(root());
    f.foreign_clusters.push(fc(
        "x",
        vec![
            cond(
                "PeerAPIReachable",
                "False",
                "PeerUnreachable",
                "peer \"x\": connection refused",
            ),
            cond(
                "Ready",
                "False",
                "PeerUnreachable",
                "peer \"x\": connection refused",
            ),
        ],
    ));
    let r = build(&f, &source());
    let x = peer(&r, "x");
    assert_eq!(
        (x.state, x.reason.as_deref()),
        (PeerState::Error, Some("PeerUnreachable"))
    );
    assert_eq!(r.cluster_id, None, "no NetworkConfig: our ID is unknown");
    assert!(
        table::render(&r)
            .starts_with("cluster (ID unknown): 0/1 peers connected; error: x (PeerUnreachable)\n")
    );
}

#[test]
fn the_summary_counts_states_and_names_the_rest() {
    let r = build(&hub(), &source());
    let s = &r.summary;
    assert_eq!(
        (s.peers, s.connected, s.connecting, s.error, s.pending),
        (5, 1, 1, 2, 1)
    );
    assert_eq!(
        s.text,
        "1/5 peers connected; error: d (PoolsExhausted), z (InvalidSpec); connecting: c; pending: e (Waiting)"
    );
    let mut many = Fetched::default();
    for i in 0..8 {
        many.foreign_clusters.push(fc(&format!("p{i}"), vec![]));
    }
    let text = build(&many, &source()).summary.text;
    assert_eq!(
        text,
        "0/8 peers connected; pending: p0 (NoTunnelEndpoint), p1 (NoTunnelEndpoint), \
         p2 (NoTunnelEndpoint), p3 (NoTunnelEndpoint), p4 (NoTunnelEndpoint) +3 more"
    );
    assert_eq!(build(&Fetched::default(), &source()).summary.peers, 0);
}

#[test]
fn usage_and_warnings_come_from_the_ipam_objects() {
    let r = build(&hub(), &source());
    let u = r.usage.as_ref().unwrap();
    assert_eq!((u.external.capacity, u.external.allocated), (65_533, 0));
    assert_eq!(
        u.pools[0].allocated,
        2 * 65_536,
        "our Pod CIDR and ExternalCIDR"
    );
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    let mut f = hub();
    f.ipam_storages.clear();
    let r = build(&f, &source());
    assert!(r.local.is_none() && r.usage.is_none());
    assert!(r.warnings[0].starts_with("no IpamStorage root object in namespace isthmus"));
}
