//! Unit tests of `report`: progress lines, the reasons given on a timeout, the final table.

use super::*;
use isthmus_api::{
    ConnectionStatus, ForeignClusterSpec, ForeignClusterStatus, TunnelEndpointSpec,
    TunnelEndpointStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

const P: Pair<'static> = Pair {
    side: "cluster-a",
    peer: "cluster-b",
    namespace: "isthmus",
    public_key: "isthmus-gateway-pubkey",
    lease: "isthmus-gateway",
};

fn now() -> Timestamp {
    Timestamp::from_second(1_000_000).unwrap()
}

fn condition(type_: &str, status: &str, reason: &str, message: &str) -> Condition {
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: None,
        last_transition_time: Time(now()),
    }
}

fn fc(phase: Option<&str>, conditions: Vec<Condition>) -> ForeignCluster {
    let mut fc = ForeignCluster::new(
        "cluster-b",
        ForeignClusterSpec {
            cluster_id: "cluster-b".parse().unwrap(),
            kubeconfig_secret_ref: None,
            lab_cluster: Some("b".into()),
        },
    );
    fc.status = phase.map(|p| ForeignClusterStatus {
        phase: Some(p.into()),
        conditions,
        observed_generation: None,
    });
    fc
}

fn tep(state: Option<(ConnectionState, &str, &str)>) -> TunnelEndpoint {
    let c = |s: &str| -> isthmus_api::Cidr { s.parse().unwrap() };
    let mut t = TunnelEndpoint::new(
        "cluster-b",
        TunnelEndpointSpec {
            cluster_id: "cluster-b".parse().unwrap(),
            local_pod_cidr: c("10.0.0.0/16"),
            local_nat_pod_cidr: c("10.4.0.0/16"),
            local_external_cidr: c("10.1.0.0/16"),
            local_nat_external_cidr: c("10.5.0.0/16"),
            remote_pod_cidr: c("10.0.0.0/16"),
            remote_nat_pod_cidr: c("10.3.0.0/16"),
            remote_external_cidr: c("10.1.0.0/16"),
            remote_nat_external_cidr: c("10.6.0.0/16"),
            endpoint: "192.0.2.2:51820".into(),
            backend_type: Default::default(),
            backend_config: Default::default(),
        },
    );
    t.status = state.map(|(status, reason, message)| TunnelEndpointStatus {
        connection: ConnectionStatus {
            status,
            message: message.into(),
            latency: (status == ConnectionState::Connected).then(|| "0.42ms".to_owned()),
            ..ConnectionStatus::default()
        },
        conditions: vec![condition("Connected", "False", reason, message)],
        ..TunnelEndpointStatus::default()
    });
    t
}

fn lease(holder: Option<&str>, renewed_secs_ago: i64) -> LeaseView {
    LeaseView {
        name: "isthmus-gateway".into(),
        holder: holder.map(str::to_owned),
        renewed: Some(Timestamp::from_second(1_000_000 - renewed_secs_ago).unwrap()),
        duration_secs: Some(15),
    }
}

fn view(fc: Option<ForeignCluster>, tep: Option<TunnelEndpoint>) -> PeeringView {
    PeeringView {
        foreign_cluster: fc,
        tunnel: tep,
        gateway_key: Some(true),
        lease: Some(lease(Some("gw-0"), 2)),
        ..PeeringView::default()
    }
}

#[test]
fn progress_follows_the_peering_from_foreign_cluster_to_tunnel() {
    let steps = [
        (
            view(Some(fc(None, vec![])), None),
            "ForeignCluster written, waiting for the network-manager",
        ),
        (
            view(
                Some(fc(
                    Some("Peering"),
                    vec![condition("PeerProcessed", "False", "Waiting", "not yet")],
                )),
                None,
            ),
            "Peering: PeerProcessed Waiting: not yet",
        ),
        (
            view(Some(fc(Some("Peered"), vec![])), Some(tep(None))),
            "TunnelEndpoint written, waiting for the gateway",
        ),
        (
            view(
                Some(fc(Some("Peered"), vec![])),
                Some(tep(Some((
                    ConnectionState::Connecting,
                    "NoHandshake",
                    "no WireGuard handshake",
                )))),
            ),
            "tunnel connecting: no WireGuard handshake",
        ),
        (
            view(
                Some(fc(Some("Peered"), vec![])),
                Some(tep(Some((ConnectionState::Connected, "Connected", "")))),
            ),
            "tunnel connected (0.42ms)",
        ),
    ];
    for (v, want) in steps {
        assert_eq!(progress(P, &v), format!("cluster-a → cluster-b: {want}"));
    }
    assert!(!connected(&view(
        Some(fc(Some("Peered"), vec![])),
        Some(tep(None))
    )));
    let up = view(
        Some(fc(Some("Peered"), vec![])),
        Some(tep(Some((ConnectionState::Connected, "Connected", "")))),
    );
    assert!(connected(&up));
}

#[test]
fn a_timeout_names_the_missing_gateway_key_or_network_manager() {
    let mut v = view(Some(fc(None, vec![])), None);
    v.gateway_key = Some(false);
    let why = why_not_connected(P, &v, now());
    assert_eq!(why.len(), 1);
    assert!(
        why[0].contains("ConfigMap isthmus/isthmus-gateway-pubkey is missing"),
        "{}",
        why[0]
    );
    v.gateway_key = Some(true);
    let why = why_not_connected(P, &v, now());
    assert!(
        why[0].contains("is the network-manager running in namespace isthmus"),
        "{}",
        why[0]
    );
}

#[test]
fn a_timeout_quotes_the_foreign_cluster_conditions() {
    let v = view(
        Some(fc(
            Some("Error"),
            vec![
                condition(
                    "PeerAPIReachable",
                    "False",
                    "PeerUnreachable",
                    "cannot reach the API of peer cluster-b: connection refused",
                ),
                condition("LocalProcessed", "True", "Accepted", ""),
                condition(
                    "PeerProcessed",
                    "False",
                    "PoolsExhausted",
                    "no free /16 in the pools",
                ),
            ],
        )),
        None,
    );
    let why = why_not_connected(P, &v, now());
    assert_eq!(
        why,
        [
            "cluster-a → cluster-b: ForeignCluster cluster-b is Error: PeerAPIReachable PeerUnreachable: cannot reach the API of peer cluster-b: connection refused",
            "cluster-a → cluster-b: ForeignCluster cluster-b is Error: PeerProcessed PoolsExhausted: no free /16 in the pools",
        ]
    );
}

#[test]
fn a_timeout_says_when_no_gateway_runs_and_quotes_the_tunnel() {
    let peered = Some(fc(Some("Peered"), vec![]));
    let mut v = view(peered.clone(), Some(tep(None)));
    v.lease = None;
    assert!(
        why_not_connected(P, &v, now())[0].contains("Lease isthmus/isthmus-gateway does not exist")
    );
    v.lease = Some(lease(None, 2));
    assert!(
        why_not_connected(P, &v, now())[0].contains("nobody holds Lease isthmus/isthmus-gateway")
    );
    v.lease = Some(lease(Some("gw-0"), 120));
    let stale = &why_not_connected(P, &v, now())[0];
    assert!(
        stale.contains("(holder gw-0) was last renewed 120s ago"),
        "{stale}"
    );
    v.lease = Some(lease(Some("gw-0"), 2));
    assert!(
        why_not_connected(P, &v, now())[0]
            .contains("has not reported on TunnelEndpoint isthmus/cluster-b")
    );
    let v = view(
        peered,
        Some(tep(Some((
            ConnectionState::Connecting,
            "NoHandshake",
            "no WireGuard handshake with the peer yet",
        )))),
    );
    let line = &why_not_connected(P, &v, now())[0];
    assert!(
        line.starts_with(
            "cluster-a → cluster-b: tunnel connecting (NoHandshake): no WireGuard handshake"
        ),
        "{line}"
    );
    assert!(line.contains("gateway.endpoint"), "{line}");
}

#[test]
fn unpeering_names_what_is_left_and_why() {
    let mut going = fc(
        Some("Unpeering"),
        vec![
            condition(
                "PeerAPIReachable",
                "False",
                "PeerUnreachable",
                "cannot reach the API of peer cluster-b",
            ),
            condition(
                "Ready",
                "False",
                "UnpeeringBlocked",
                "cannot reach the API of peer cluster-b",
            ),
        ],
    );
    going.metadata.finalizers = Some(vec![NETWORK_MANAGER_FINALIZER.into()]);
    let mut held = tep(None);
    held.metadata.finalizers = Some(vec![GATEWAY_FINALIZER.into()]);
    held.metadata.deletion_timestamp = Some(Time(now()));
    let mut v = view(Some(going), Some(held));
    v.nat_mapping = true;
    v.lease = Some(lease(None, 2));
    assert!(!unpeered(&v));
    assert_eq!(
        unpeer_progress(P, &v),
        "cluster-a → cluster-b: waiting for ForeignCluster cluster-b (Unpeering), TunnelEndpoint (gateway cleaning the kernel), NatMapping"
    );
    let why = why_not_unpeered(P, &v, now());
    assert_eq!(why.len(), 3);
    assert!(why[0].ends_with("the network-manager cannot finish: Ready UnpeeringBlocked: cannot reach the API of peer cluster-b"), "{}", why[0]);
    assert!(
        why[1].contains(
            "the gateway has not removed the peer from the kernel: no gateway is running"
        ),
        "{}",
        why[1]
    );
    assert!(
        why[2]
            .starts_with("cluster-a → cluster-b: NatMappings isthmus/cluster-b.* are still there")
    );
    v.lease = Some(lease(Some("gw-0"), 2));
    let busy = &why_not_unpeered(P, &v, now())[1];
    assert!(
        busy.contains(
            "the gateway (gw-0) is still removing the peer from the kernel; if this lasts"
        ),
        "{busy}"
    );
    let gone = PeeringView::default();
    assert!(unpeered(&gone));
    assert_eq!(unpeer_progress(P, &gone), "cluster-a → cluster-b: removed");
}

#[test]
fn the_table_shows_both_tunnels_and_views() {
    let up = view(
        Some(fc(Some("Peered"), vec![])),
        Some(tep(Some((ConnectionState::Connected, "Connected", "")))),
    );
    let back = Pair {
        side: "cluster-b",
        peer: "cluster-a",
        ..P
    };
    let text = table(&[(P, &up), (back, &up)]);
    assert_eq!(
        text,
        "CLUSTER    PEER       STATE      LATENCY  LOCAL PODS AS  REMOTE PODS AS\n\
         cluster-a  cluster-b  connected  0.42ms   10.4.0.0/16    10.3.0.0/16\n\
         cluster-b  cluster-a  connected  0.42ms   10.4.0.0/16    10.3.0.0/16\n"
    );
}
