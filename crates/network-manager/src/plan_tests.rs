//! Tests of the pure status planning.

use super::*;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use pretty_assertions::assert_eq;

fn cidr(s: &str) -> Cidr {
    s.parse().unwrap()
}

fn t(s: i64) -> Timestamp {
    Timestamp::from_second(s).unwrap()
}

fn networks(pod_view: &str) -> PeerNetworks {
    PeerNetworks {
        remote_pod: cidr("10.0.0.0/16"),
        remote_pod_view: cidr(pod_view),
        remote_external: cidr("10.1.0.0/16"),
        remote_external_view: cidr("10.1.0.0/16"),
        local_pod_nat: None,
        local_external_nat: None,
        view_known: true,
    }
}

fn condition<'a>(conditions: &'a [Condition], type_: &str) -> &'a Condition {
    conditions.iter().find(|c| c.type_ == type_).unwrap()
}

#[test]
fn accepted_as_is_has_no_nat() {
    let out = ReceivedOutcome::Accepted(networks("10.0.0.0/16"));
    let s = received_status(&NetworkConfigStatus::default(), &out, Some(3), t(1));
    assert!(s.processed);
    assert_eq!(s.pod_cidr_nat, None);
    assert_eq!(s.external_cidr_nat, None);
    assert_eq!(s.observed_generation, Some(3));
    let c = condition(&s.conditions, COND_PROCESSED);
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "Accepted"));
}

#[test]
fn remapped_reports_only_the_remapped_view() {
    let out = ReceivedOutcome::Accepted(networks("10.2.0.0/16"));
    let s = received_status(&NetworkConfigStatus::default(), &out, Some(1), t(1));
    assert_eq!(s.pod_cidr_nat, Some(cidr("10.2.0.0/16")));
    assert_eq!(s.external_cidr_nat, None);
    assert_eq!(condition(&s.conditions, COND_PROCESSED).reason, "Remapped");
}

#[test]
fn refusal_clears_the_decision_and_keeps_the_reason() {
    let before = received_status(
        &NetworkConfigStatus::default(),
        &ReceivedOutcome::Accepted(networks("10.2.0.0/16")),
        Some(1),
        t(1),
    );
    let out = ReceivedOutcome::Refused {
        reason: REASON_POOLS_EXHAUSTED,
        message: "no free /16".into(),
    };
    let s = received_status(&before, &out, Some(2), t(2));
    assert!(!s.processed);
    assert_eq!(s.pod_cidr_nat, None);
    let c = condition(&s.conditions, COND_PROCESSED);
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "PoolsExhausted")
    );
    assert_eq!(c.last_transition_time.0, t(2));
    assert_eq!(s.conditions.len(), 1);
}

#[test]
fn ipam_errors_map_to_reasons_in_one_place() {
    let c: isthmus_api::ClusterId = "b".parse().unwrap();
    let exhausted = IpamError::PoolsExhausted {
        cluster: c.clone(),
        network: cidr("10.0.0.0/16"),
        prefix_len: 16,
    };
    assert_eq!(refusal_reason(&exhausted), Some(REASON_POOLS_EXHAUSTED));
    let invalid = IpamError::InvalidPeerNetwork {
        cluster: c.clone(),
        reason: "x".into(),
    };
    assert_eq!(refusal_reason(&invalid), Some(REASON_INVALID_SPEC));
    assert_eq!(refusal_reason(&IpamError::UnknownPeer(c)), None);
}

#[test]
fn a_side_counts_only_at_the_current_generation() {
    let processed = NetworkConfigStatus {
        processed: true,
        pod_cidr_nat: Some(cidr("10.9.0.0/16")),
        observed_generation: Some(1),
        ..Default::default()
    };
    let (side, d) = side_of(Some(1), Some(&processed), "w");
    assert_eq!(side, Side::Processed);
    assert_eq!(d.unwrap().pod_nat, Some(cidr("10.9.0.0/16")));
    let (side, d) = side_of(Some(2), Some(&processed), "w");
    assert_eq!(side, Side::Waiting("w".into()));
    assert!(d.is_none());
    let refused = received_status(
        &NetworkConfigStatus::default(),
        &ReceivedOutcome::Refused {
            reason: REASON_INVALID_SPEC,
            message: "bad".into(),
        },
        Some(2),
        t(1),
    );
    let (side, _) = side_of(Some(2), Some(&refused), "w");
    assert_eq!(
        side,
        Side::Refused {
            reason: "InvalidSpec".into(),
            message: "bad".into()
        }
    );
}

#[test]
fn tunnel_needs_both_sides_and_matching_networks() {
    let n = networks("10.2.0.0/16");
    let spec = NetworkConfigSpec {
        cluster_id: "a".parse().unwrap(),
        origin_cluster_id: "b".parse().unwrap(),
        pod_cidr: cidr("10.0.0.0/16"),
        external_cidr: cidr("10.1.0.0/16"),
        endpoint: "1.2.3.4:51820".into(),
        backend_type: Default::default(),
        backend_config: Default::default(),
    };
    let p = Side::Processed;
    let w = Side::Waiting("w".into());
    assert!(ready_for_tunnel(&p, &p, Some(&n), Some(&spec)).is_some());
    assert!(ready_for_tunnel(&w, &p, Some(&n), Some(&spec)).is_none());
    assert!(ready_for_tunnel(&p, &w, Some(&n), Some(&spec)).is_none());
    assert!(ready_for_tunnel(&p, &p, None, Some(&spec)).is_none());
    let moved = NetworkConfigSpec {
        pod_cidr: cidr("10.5.0.0/16"),
        ..spec.clone()
    };
    assert!(ready_for_tunnel(&p, &p, Some(&n), Some(&moved)).is_none());
}

#[test]
fn foreign_cluster_phases() {
    let p = Side::Processed;
    let obs = |peer: Side, tunnel| PeeringObservation::Observed {
        peer,
        local: Side::Processed,
        tunnel,
    };
    let s = foreign_cluster_status(None, &obs(p.clone(), true), Some(1), t(1));
    assert_eq!(s.phase.as_deref(), Some("Peered"));
    assert_eq!(condition(&s.conditions, COND_READY).status, "True");
    let s = foreign_cluster_status(
        Some(&s),
        &obs(Side::Waiting("w".into()), false),
        Some(1),
        t(2),
    );
    assert_eq!(s.phase.as_deref(), Some("Peering"));
    assert_eq!(
        condition(&s.conditions, COND_PEER_PROCESSED).reason,
        "Waiting"
    );
    let refused = Side::Refused {
        reason: "PoolsExhausted".into(),
        message: "m".into(),
    };
    let s = foreign_cluster_status(Some(&s), &obs(refused, false), Some(1), t(3));
    assert_eq!(s.phase.as_deref(), Some("Error"));
    assert_eq!(
        condition(&s.conditions, COND_PEER_PROCESSED).reason,
        "PoolsExhausted"
    );
    let down = PeeringObservation::Unreachable("connection refused".into());
    let s = foreign_cluster_status(Some(&s), &down, Some(1), t(4));
    assert_eq!(s.phase.as_deref(), Some("Error"));
    let c = condition(&s.conditions, COND_PEER_REACHABLE);
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "PeerUnreachable")
    );
    assert_eq!(c.message, "connection refused");
}

#[test]
fn the_peers_decision_about_an_older_generation_still_counts() {
    use isthmus_api::NetworkConfig;
    let spec = NetworkConfigSpec {
        cluster_id: "b".parse().unwrap(),
        origin_cluster_id: "a".parse().unwrap(),
        pod_cidr: cidr("10.0.0.0/16"),
        external_cidr: cidr("10.1.0.0/16"),
        endpoint: "1.2.3.4:51820".into(),
        backend_type: Default::default(),
        backend_config: Default::default(),
    };
    let mut sent = NetworkConfig::new("a", spec);
    sent.metadata.generation = Some(2);
    assert!(matches!(peer_side(&sent).0, Side::Waiting(_)));
    sent.status = Some(NetworkConfigStatus {
        processed: true,
        pod_cidr_nat: Some(cidr("10.9.0.0/16")),
        observed_generation: Some(1),
        ..Default::default()
    });
    let (side, d) = peer_side(&sent);
    assert_eq!(side, Side::Processed);
    assert_eq!(d.unwrap().pod_nat, Some(cidr("10.9.0.0/16")));
    // a refusal counts only at the current generation
    sent.status = Some(received_status(
        &NetworkConfigStatus::default(),
        &ReceivedOutcome::Refused {
            reason: REASON_POOLS_EXHAUSTED,
            message: "m".into(),
        },
        Some(1),
        t(1),
    ));
    assert!(matches!(peer_side(&sent).0, Side::Waiting(_)));
}
