//! Values the unit tests of the status report share: a hub cluster `b` whose peers are in every
//! state (connected, connecting, refused, waiting, invalid), and the constructors behind it.

use std::collections::BTreeMap;

use isthmus_api::{
    BackendType, ConnectionState, ConnectionStatus, ForeignCluster, ForeignClusterSpec,
    ForeignClusterStatus, IpamNetworks, IpamStorage, IpamStorageSpec, NatMapping, NatMappingSpec,
    NetworkConfig, NetworkConfigSpec, NetworkConfigStatus, TunnelEndpoint, TunnelEndpointSpec,
    TunnelEndpointStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::inspect::status::build::Source;
use crate::inspect::status::input::{Fetched, Unreadable};
use crate::inspect::status::report::{PeerStatus, StatusReport};

pub const NOW: i64 = 1_700_000_000;

pub fn c(s: &str) -> isthmus_api::Cidr {
    s.parse().unwrap()
}

pub fn at(second: i64) -> Time {
    Time(Timestamp::from_second(second).unwrap())
}

pub fn cond(type_: &str, status: &str, reason: &str, message: &str) -> Condition {
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: None,
        last_transition_time: at(NOW - 100),
    }
}

pub fn source() -> Source {
    Source {
        server: "http://127.0.0.1:1".into(),
        namespace: "isthmus".into(),
        now: Timestamp::from_second(NOW).unwrap(),
    }
}

/// b's tunnel to `peer`: b's pods seen by the peer as 10.4.0.0/16 (remapped), b's external
/// accepted as-is; the peer's pods remapped by us to `pods_as`.
pub fn tep(
    peer: &str,
    pods_as: &str,
    state: ConnectionState,
    handshake_ago: Option<i64>,
) -> TunnelEndpoint {
    let spec = TunnelEndpointSpec {
        cluster_id: peer.parse().unwrap(),
        local_pod_cidr: c("10.0.0.0/16"),
        local_nat_pod_cidr: c("10.4.0.0/16"),
        local_external_cidr: c("10.2.0.0/16"),
        local_nat_external_cidr: c("10.2.0.0/16"),
        remote_pod_cidr: c("10.0.0.0/16"),
        remote_nat_pod_cidr: c(pods_as),
        remote_external_cidr: c("10.9.0.0/16"),
        remote_nat_external_cidr: c("10.9.0.0/16"),
        endpoint: "192.168.100.10:51820".into(),
        backend_type: BackendType::WireGuard,
        backend_config: BTreeMap::new(),
    };
    let mut t = TunnelEndpoint::new(peer, spec);
    t.status = Some(TunnelEndpointStatus {
        phase: Some("Ready".into()),
        connection: ConnectionStatus {
            status: state,
            message: if state == ConnectionState::Connected {
                String::new()
            } else {
                "no reply to the last 2 probes".into()
            },
            last_handshake: handshake_ago.map(|s| at(NOW - s)),
            rx_bytes: 156,
            tx_bytes: 3 * 1024 * 1024,
            latency: Some("0.89ms".into()),
            latency_micros: Some(892),
        },
        interface_name: Some("isthmus0".into()),
        backend: Some("userspace".into()),
        gateway_node: Some("b-node0".into()),
        gateway_ip: Some("172.16.0.10".parse().unwrap()),
        observed_generation: None,
        conditions: vec![],
    });
    t
}

pub fn fc(peer: &str, conditions: Vec<Condition>) -> ForeignCluster {
    let mut f = ForeignCluster::new(
        peer,
        ForeignClusterSpec {
            cluster_id: peer.parse().unwrap(),
            kubeconfig_secret_ref: None,
            lab_cluster: Some(peer.into()),
        },
    );
    f.status = Some(ForeignClusterStatus {
        phase: Some("Error".into()),
        conditions,
        observed_generation: None,
    });
    f
}

pub fn nc(peer: &str, to: &str, conditions: Vec<Condition>) -> NetworkConfig {
    let mut n = NetworkConfig::new(
        peer,
        NetworkConfigSpec {
            cluster_id: to.parse().unwrap(),
            origin_cluster_id: peer.parse().unwrap(),
            pod_cidr: c("10.0.0.0/16"),
            external_cidr: c("10.9.0.0/16"),
            endpoint: "192.168.100.12:51820".into(),
            backend_type: BackendType::WireGuard,
            backend_config: BTreeMap::new(),
        },
    );
    n.status = Some(NetworkConfigStatus {
        conditions,
        ..Default::default()
    });
    n
}

pub fn nat(peer: &str, entries: u32) -> NatMapping {
    let spec = NatMappingSpec {
        cluster_id: peer.parse().unwrap(),
        block: None,
        cluster_mappings: (0..entries)
            .map(|k| {
                (
                    std::net::Ipv4Addr::from(0x0a02_0002 + k),
                    std::net::Ipv4Addr::from(0x6440_0000 + k),
                )
            })
            .collect(),
    };
    NatMapping::new(peer, spec)
}

pub fn root() -> IpamStorage {
    IpamStorage::new(
        "ipam",
        IpamStorageSpec {
            networks: Some(IpamNetworks {
                pod_cidr: c("10.0.0.0/16"),
                service_cidr: None,
                external_cidr: c("10.2.0.0/16"),
                pools: vec![c("10.0.0.0/8")],
                reserved: vec![],
            }),
            ..Default::default()
        },
    )
}

/// Hub b: a connected, c connecting, d refused (pools exhausted), e waiting, z invalid.
pub fn hub() -> Fetched {
    let exhausted = "no free /16 network in the pools";
    Fetched {
        tunnel_endpoints: vec![
            tep("a", "10.3.0.0/16", ConnectionState::Connected, Some(12)),
            tep("c", "10.0.0.0/16", ConnectionState::Connecting, Some(400)),
        ],
        network_configs: vec![
            nc("a", "b", vec![]),
            nc("c", "b", vec![]),
            nc(
                "d",
                "b",
                vec![cond("Processed", "False", "PoolsExhausted", exhausted)],
            ),
        ],
        foreign_clusters: vec![
            fc(
                "d",
                vec![
                    cond("PeerAPIReachable", "True", "Reachable", ""),
                    cond("PeerProcessed", "True", "Processed", ""),
                    cond("LocalProcessed", "False", "PoolsExhausted", exhausted),
                    cond("Ready", "False", "Refused", ""),
                ],
            ),
            fc(
                "e",
                vec![
                    cond("PeerAPIReachable", "True", "Reachable", ""),
                    cond(
                        "PeerProcessed",
                        "False",
                        "Waiting",
                        "the peer has not processed our NetworkConfig yet",
                    ),
                    cond("Ready", "False", "Peering", ""),
                ],
            ),
        ],
        nat_mappings: vec![nat("a", 3), nat("c", 0)],
        ipam_storages: vec![root()],
        unreadable: vec![Unreadable {
            namespace: None,
            kind: "NetworkConfig",
            name: "z".into(),
            peer: Some("z".into()),
            conditions: vec![cond(
                "Processed",
                "False",
                "InvalidSpec",
                "10.0.0.1/16: host bits set",
            )],
            error: "invalid CIDR".into(),
        }],
    }
}

pub fn peer<'a>(r: &'a StatusReport, id: &str) -> &'a PeerStatus {
    r.peers
        .iter()
        .find(|p| p.cluster_id == id)
        .unwrap_or_else(|| panic!("no row for {id}"))
}
