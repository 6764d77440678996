//! Pure planning of what the controllers report: the status of a received NetworkConfig from the
//! IPAM's decision, where each side of a peering stands, and the ForeignCluster status from what
//! was observed. No I/O and no clock: time is passed in.

use isthmus_api::{
    Cidr, ConditionStatus, ForeignClusterStatus, NetworkConfig, NetworkConfigSpec,
    NetworkConfigStatus, set_condition,
};
use isthmus_ipam::{IpamError, PeerNetworks};
use k8s_openapi::jiff::Timestamp;

/// Condition type on NetworkConfigs: whether the receiver processed the spec.
pub const COND_PROCESSED: &str = "Processed";
/// ForeignCluster condition: whether the peer's API answered.
pub const COND_PEER_REACHABLE: &str = "PeerAPIReachable";
/// ForeignCluster condition: whether the peer processed our NetworkConfig.
pub const COND_PEER_PROCESSED: &str = "PeerProcessed";
/// ForeignCluster condition: whether we processed the peer's NetworkConfig.
pub const COND_LOCAL_PROCESSED: &str = "LocalProcessed";
/// ForeignCluster condition: whether the TunnelEndpoint exists.
pub const COND_READY: &str = "Ready";

pub const REASON_INVALID_SPEC: &str = "InvalidSpec";
pub const REASON_POOLS_EXHAUSTED: &str = "PoolsExhausted";
pub const REASON_NO_FOREIGN_CLUSTER: &str = "NoForeignCluster";
/// The peer's kubeconfig (its Secret) asks for something refused; the message names the field.
pub const REASON_KUBECONFIG_REFUSED: &str = "KubeconfigRefused";
/// The peer's view of our networks cannot be used (e.g. another prefix length).
pub const REASON_INVALID_PEER_DECISION: &str = "InvalidPeerDecision";

/// What the IPAM made of a received NetworkConfig.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceivedOutcome {
    /// Accepted as-is or remapped: our view of the origin's networks.
    Accepted(PeerNetworks),
    /// Not processed, for a reason the sender must fix (or a ForeignCluster must be created).
    Refused {
        reason: &'static str,
        message: String,
    },
}

/// The one place an IPAM refusal becomes a condition reason; `None` for errors worth retrying.
pub fn refusal_reason(err: &IpamError) -> Option<&'static str> {
    match err {
        IpamError::PoolsExhausted { .. } => Some(REASON_POOLS_EXHAUSTED),
        IpamError::InvalidPeerNetwork { .. } | IpamError::Overlap { .. } => {
            Some(REASON_INVALID_SPEC)
        }
        _ => None,
    }
}

/// The status of a received NetworkConfig: `processed`, the NAT views (absent when accepted
/// as-is), the `Processed` condition and `observedGeneration`.
pub fn received_status(
    previous: &NetworkConfigStatus,
    outcome: &ReceivedOutcome,
    generation: Option<i64>,
    now: Timestamp,
) -> NetworkConfigStatus {
    let mut conditions = previous.conditions.clone();
    let status = match outcome {
        ReceivedOutcome::Accepted(p) => {
            let pod_nat = (p.remote_pod_view != p.remote_pod).then_some(p.remote_pod_view);
            let ext_nat =
                (p.remote_external_view != p.remote_external).then_some(p.remote_external_view);
            let (reason, message) = match (pod_nat, ext_nat) {
                (None, None) => ("Accepted", "networks accepted as-is".to_owned()),
                _ => (
                    "Remapped",
                    format!(
                        "Pod CIDR {} as {}, ExternalCIDR {} as {}",
                        p.remote_pod, p.remote_pod_view, p.remote_external, p.remote_external_view
                    ),
                ),
            };
            let s = ConditionStatus::True;
            set_condition(
                &mut conditions,
                COND_PROCESSED,
                s,
                reason,
                &message,
                generation,
                now,
            );
            NetworkConfigStatus {
                processed: true,
                pod_cidr_nat: pod_nat,
                external_cidr_nat: ext_nat,
                ..NetworkConfigStatus::default()
            }
        }
        ReceivedOutcome::Refused { reason, message } => {
            let s = ConditionStatus::False;
            set_condition(
                &mut conditions,
                COND_PROCESSED,
                s,
                reason,
                message,
                generation,
                now,
            );
            NetworkConfigStatus::default()
        }
    };
    NetworkConfigStatus {
        observed_generation: generation,
        conditions,
        ..status
    }
}

/// How one side of a peering processed the NetworkConfig it received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Side {
    /// Not (yet) processed at the current generation.
    Waiting(String),
    /// Refused, with the receiver's reason.
    Refused { reason: String, message: String },
    /// Processed.
    Processed,
}

/// The peer's decision about our networks: how it addresses them (`None` = as-is).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerDecision {
    pub pod_nat: Option<Cidr>,
    pub external_nat: Option<Cidr>,
}

/// Where a NetworkConfig stands, from its status, and the decision it carries when processed.
pub fn side_of(
    generation: Option<i64>,
    status: Option<&NetworkConfigStatus>,
    waiting: &str,
) -> (Side, Option<PeerDecision>) {
    let Some(s) = status.filter(|s| s.observed_generation == generation) else {
        return (Side::Waiting(waiting.to_owned()), None);
    };
    if s.processed {
        let d = PeerDecision {
            pod_nat: s.pod_cidr_nat,
            external_nat: s.external_cidr_nat,
        };
        return (Side::Processed, Some(d));
    }
    match s.conditions.iter().find(|c| c.type_ == COND_PROCESSED) {
        Some(c) if c.status == "False" => (
            Side::Refused {
                reason: c.reason.clone(),
                message: c.message.clone(),
            },
            None,
        ),
        _ => (Side::Waiting(waiting.to_owned()), None),
    }
}

/// Where the peer stands with the NetworkConfig we sent it. A decision the peer took about an
/// older generation still counts while it re-processes: our networks cannot change while our
/// IPAM state lives (only the endpoint or key can), so the tunnel need not flap meanwhile.
pub fn peer_side(sent: &NetworkConfig) -> (Side, Option<PeerDecision>) {
    let waiting = "the peer has not processed our NetworkConfig yet";
    let status = sent.status.as_ref();
    let current = side_of(sent.metadata.generation, status, waiting);
    match (&current.0, status) {
        (Side::Waiting(_), Some(s)) if s.processed => {
            side_of(s.observed_generation, Some(s), waiting)
        }
        _ => current,
    }
}

/// Whether both sides processed the peering and our IPAM holds the peer's networks as received,
/// so that a TunnelEndpoint can be written.
pub fn ready_for_tunnel<'a>(
    peer: &Side,
    local: &Side,
    networks: Option<&'a PeerNetworks>,
    received: Option<&NetworkConfigSpec>,
) -> Option<&'a PeerNetworks> {
    let (Side::Processed, Side::Processed) = (peer, local) else {
        return None;
    };
    let (n, r) = (networks?, received?);
    (n.remote_pod == r.pod_cidr && n.remote_external == r.external_cidr).then_some(n)
}

/// What the ForeignCluster controller observed in one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeeringObservation {
    /// The peer's API could not be used.
    Unreachable(String),
    /// The peer's kubeconfig is refused (the message names the Secret, key and field).
    KubeconfigRefused(String),
    /// Unpeering waits for the peer's API (everything local is already removed).
    UnpeeringBlocked(String),
    /// The ForeignCluster itself is invalid.
    Invalid(String),
    /// Both sides as observed, and whether the TunnelEndpoint is in place.
    Observed {
        peer: Side,
        local: Side,
        tunnel: bool,
    },
}

/// The ForeignCluster status: phase `Error` (peer unreachable, its kubeconfig refused, invalid,
/// or a side refused),
/// `Peered` (TunnelEndpoint in place), `Peering`, or `Unpeering` (blocked on the peer's API),
/// with one condition per observation.
pub fn foreign_cluster_status(
    previous: Option<&ForeignClusterStatus>,
    observation: &PeeringObservation,
    generation: Option<i64>,
    now: Timestamp,
) -> ForeignClusterStatus {
    let mut conditions = previous.map(|s| s.conditions.clone()).unwrap_or_default();
    let mut set = |type_: &str, status, reason: &str, message: &str| {
        set_condition(
            &mut conditions,
            type_,
            status,
            reason,
            message,
            generation,
            now,
        );
    };
    let f = ConditionStatus::False;
    let phase = match observation {
        PeeringObservation::Unreachable(m) => {
            set(COND_PEER_REACHABLE, f, "PeerUnreachable", m);
            set(COND_READY, f, "PeerUnreachable", m);
            "Error"
        }
        PeeringObservation::KubeconfigRefused(m) => {
            set(COND_PEER_REACHABLE, f, REASON_KUBECONFIG_REFUSED, m);
            set(COND_READY, f, REASON_KUBECONFIG_REFUSED, m);
            "Error"
        }
        PeeringObservation::UnpeeringBlocked(m) => {
            set(COND_PEER_REACHABLE, f, "PeerUnreachable", m);
            set(COND_READY, f, "UnpeeringBlocked", m);
            "Unpeering"
        }
        PeeringObservation::Invalid(m) => {
            set(COND_READY, f, REASON_INVALID_SPEC, m);
            "Error"
        }
        PeeringObservation::Observed {
            peer,
            local,
            tunnel,
        } => observed_conditions(&mut set, peer, local, *tunnel),
    };
    ForeignClusterStatus {
        phase: Some(phase.to_owned()),
        conditions,
        observed_generation: generation,
    }
}

/// Sets the conditions of a pass that reached both APIs; returns the phase.
fn observed_conditions(
    set: &mut impl FnMut(&str, ConditionStatus, &str, &str),
    peer: &Side,
    local: &Side,
    tunnel: bool,
) -> &'static str {
    let (t, f) = (ConditionStatus::True, ConditionStatus::False);
    set(COND_PEER_REACHABLE, t, "Reachable", "");
    for (type_, side) in [(COND_PEER_PROCESSED, peer), (COND_LOCAL_PROCESSED, local)] {
        match side {
            Side::Processed => set(type_, t, "Processed", ""),
            Side::Waiting(m) => set(type_, f, "Waiting", m),
            Side::Refused { reason, message } => set(type_, f, reason, message),
        }
    }
    let refused = [peer, local]
        .into_iter()
        .any(|s| matches!(s, Side::Refused { .. }));
    let (status, reason, phase) = match (tunnel, refused) {
        (true, _) => (t, "TunnelEndpointReady", "Peered"),
        (false, true) => (f, "Refused", "Error"),
        (false, false) => (f, "Peering", "Peering"),
    };
    set(COND_READY, status, reason, "");
    phase
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
