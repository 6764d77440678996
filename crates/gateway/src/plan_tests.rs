//! Unit tests of the planner: TunnelEndpoints + NatMappings → GatewaySpec, bad peers isolated.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use isthmus_api::{BackendType, NatMappingSpec, TunnelEndpointSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use pretty_assertions::assert_eq;

use super::*;

/// Peer `peer` (index `i`): we see its pods as 10.10i.0.0/24 and its ExternalCIDR as
/// 10.20i.0.0/24; it sees ours as 10.110.0.0/24 and 10.210.0.0/24.
fn tep(name: &str, peer: &str, i: u8, created: i64) -> TunnelEndpoint {
    let c = |s: String| s.parse().unwrap();
    let mut t = TunnelEndpoint::new(
        name,
        TunnelEndpointSpec {
            cluster_id: peer.parse().unwrap(),
            local_pod_cidr: c("10.0.0.0/24".into()),
            local_nat_pod_cidr: c("10.110.0.0/24".into()),
            local_external_cidr: c("10.200.0.0/24".into()),
            local_nat_external_cidr: c("10.200.0.0/24".into()),
            remote_pod_cidr: c("10.0.0.0/24".into()),
            remote_nat_pod_cidr: c(format!("10.10{i}.0.0/24")),
            remote_external_cidr: c("10.200.0.0/24".into()),
            remote_nat_external_cidr: c(format!("10.20{i}.0.0/24")),
            endpoint: format!("192.168.100.1{i}:51820"),
            backend_type: BackendType::default(),
            backend_config: BTreeMap::from([(
                "publicKey".to_owned(),
                PrivateKey::generate().public_key().to_string(),
            )]),
        },
    );
    t.metadata.creation_timestamp = Some(Time(Timestamp::from_second(created).unwrap()));
    t
}

fn nat(name: &str, peer: &str, pairs: &[(&str, &str)]) -> NatMapping {
    NatMapping::new(
        name,
        NatMappingSpec {
            cluster_id: peer.parse().unwrap(),
            block: None,
            cluster_mappings: pairs
                .iter()
                .map(|(a, b)| (a.parse().unwrap(), b.parse().unwrap()))
                .collect(),
        },
    )
}

fn resolved(teps: &[TunnelEndpoint]) -> Resolved {
    teps.iter()
        .filter_map(|t| Some((t.spec.endpoint.clone(), Ok(t.spec.endpoint.parse().ok()?))))
        .collect()
}

fn run(teps: &[TunnelEndpoint], nats: &[NatMapping]) -> Plan {
    let key = PrivateKey::generate();
    let device = Device {
        interface: "isthmus0",
        private_key: &key,
        listen_port: 51820,
        mtu: 1420,
        keepalive: Some(25),
    };
    plan(&device, teps, nats, &resolved(teps))
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

#[test]
fn a_tunnel_endpoint_becomes_a_peer_with_views_and_mappings() {
    let teps = [tep("b", "b", 1, 10)];
    let nats = [
        nat("b", "b", &[("10.200.0.7", "10.102.0.10")]),
        nat("c", "c", &[("10.200.0.8", "10.0.0.5")]),
    ];
    let p = run(&teps, &nats);
    assert_eq!(
        p.spec.transit_source,
        Some(IpAddr::V4(Ipv4Addr::new(10, 200, 0, 1)))
    );
    assert_eq!(p.spec.peers.len(), 1);
    let peer = &p.spec.peers[0];
    assert_eq!(peer.name, "b");
    assert_eq!(
        peer.endpoint,
        Some("192.168.100.11:51820".parse::<SocketAddr>().unwrap())
    );
    assert_eq!(
        peer.remote,
        vec![net("10.101.0.0/24"), net("10.201.0.0/24")]
    );
    // Only the PodCIDR was remapped by the peer.
    assert_eq!(
        peer.local_nat,
        vec![PrefixNat {
            real: net("10.0.0.0/24"),
            view: net("10.110.0.0/24")
        }]
    );
    assert_eq!(
        peer.mappings,
        vec![Mapping {
            new_ip: "10.200.0.7".parse().unwrap(),
            target: "10.102.0.10".parse().unwrap()
        }]
    );
    let b = &p.endpoints["b"];
    assert_eq!(b.probe_target, Ipv4Addr::new(10, 201, 0, 1));
    assert!(b.problem.is_none());
    p.spec.validate().unwrap();
}

#[test]
fn a_bad_tunnel_endpoint_is_left_out_alone() {
    let mut bad_key = tep("c", "c", 2, 20);
    bad_key
        .spec
        .backend_config
        .insert("publicKey".into(), "nope".into());
    let mut overlapping = tep("d", "d", 3, 30);
    overlapping.spec.remote_nat_pod_cidr = "10.101.0.0/16".parse().unwrap();
    let mut no_key = tep("e", "e", 4, 40);
    no_key.spec.backend_config.clear();
    let mut other_ext = tep("f", "f", 5, 50);
    other_ext.spec.local_external_cidr = "10.250.0.0/24".parse().unwrap();
    let teps = [
        tep("b", "b", 1, 10),
        bad_key,
        overlapping,
        no_key,
        other_ext,
    ];
    let p = run(&teps, &[]);
    let names: Vec<&str> = p.spec.peers.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["b"]);
    let reason = |n: &str| p.endpoints[n].problem.as_ref().map(Error::reason);
    assert_eq!(reason("b"), None);
    assert_eq!(reason("c"), Some("InvalidTunnelEndpoint"));
    assert_eq!(reason("d"), Some("PeerConflict"));
    assert_eq!(reason("e"), Some("InvalidTunnelEndpoint"));
    assert_eq!(reason("f"), Some("ExternalCIDRMismatch"));
    p.spec.validate().unwrap();
}

#[test]
fn the_older_of_two_claims_wins_and_unresolved_endpoints_wait() {
    let younger = tep("b-again", "b", 2, 20);
    let older = tep("b", "b", 1, 10);
    let mut unresolved = tep("c", "c", 3, 5);
    unresolved.spec.endpoint = "gw.example.invalid:51820".into();
    let teps = [younger, older, unresolved];
    let p = run(&teps, &[]);
    assert_eq!(p.spec.peers.len(), 1);
    assert_eq!(p.spec.peers[0].remote[0], net("10.101.0.0/24"));
    assert_eq!(
        p.endpoints["b-again"].problem.as_ref().map(Error::reason),
        Some("PeerConflict")
    );
    assert_eq!(
        p.endpoints["c"].problem.as_ref().map(Error::reason),
        Some("EndpointUnresolvable")
    );
}

#[test]
fn no_tunnel_endpoints_means_no_peers_and_no_transit_address() {
    let p = run(&[], &[]);
    assert!(p.spec.peers.is_empty());
    assert_eq!(p.spec.transit_source, None);
}

#[test]
fn mapping_only_changes_are_recognised() {
    let teps = [tep("b", "b", 1, 10)];
    let key = PrivateKey::generate();
    let device = Device {
        interface: "isthmus0",
        private_key: &key,
        listen_port: 51820,
        mtu: 1420,
        keepalive: Some(25),
    };
    let r = resolved(&teps);
    let before = plan(&device, &teps, &[], &r).spec;
    let nats = [nat("b", "b", &[("10.200.0.7", "10.102.0.10")])];
    let after = plan(&device, &teps, &nats, &r).spec;
    assert!(differs_only_in_mappings(&before, &after));
    let mut moved = teps[0].clone();
    moved.spec.endpoint = "192.168.100.99:51820".into();
    let moved = [moved];
    let other = plan(&device, &moved, &nats, &resolved(&moved)).spec;
    assert!(!differs_only_in_mappings(&after, &other));
}
