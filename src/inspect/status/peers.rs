//! One row per peer: the objects of a peering grouped by peer ID (TunnelEndpoint,
//! ForeignCluster, the NetworkConfig it sent us, its NatMapping, our IPAM decision, anything
//! unreadable) and joined into a [`PeerStatus`]: the tunnel as the gateway reports it, or — with
//! no TunnelEndpoint yet — why not, from the conditions.

use std::collections::BTreeMap;

use isthmus_api::{
    ClusterSubnets, ConnectionState, ForeignCluster, NatMapping, NetworkConfig, TunnelEndpoint,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;

use crate::inspect::status::input::{Fetched, Unreadable};
use crate::inspect::status::report::{ConditionView, NatViews, PeerState, PeerStatus, RangeView};

/// WireGuard drops a session 180 s after its last handshake (REJECT_AFTER_TIME) and re-keys
/// every 120 s while traffic flows: a `connected` tunnel with an older handshake is a stale
/// status.
pub const STALE_HANDSHAKE_SECONDS: u64 = 180;

/// Reasons that mean "waiting for someone", not "something is wrong".
const WAITING_REASONS: [&str; 4] = ["", "Waiting", "Peering", "NoForeignCluster"];

/// Everything known about one peer.
#[derive(Debug, Default)]
pub struct PeerObjects<'a> {
    pub tunnel_endpoint: Option<&'a TunnelEndpoint>,
    pub foreign_cluster: Option<&'a ForeignCluster>,
    pub network_config: Option<&'a NetworkConfig>,
    /// The peer's NatMapping shards (and an older whole-peer object).
    pub nat_mappings: Vec<&'a NatMapping>,
    /// Our IPAM's decision about the peer's networks.
    pub subnets: Option<&'a ClusterSubnets>,
    pub unreadable: Vec<&'a Unreadable>,
}

/// Groups the objects by peer ID. NetworkConfigs that we wrote ourselves (origin = `local`)
/// are not a peer's.
pub fn group<'a>(
    fetched: &'a Fetched,
    subnets: Option<&'a BTreeMap<String, ClusterSubnets>>,
    local: Option<&str>,
) -> BTreeMap<String, PeerObjects<'a>> {
    let mut peers: BTreeMap<String, PeerObjects<'a>> = BTreeMap::new();
    for t in &fetched.tunnel_endpoints {
        peers
            .entry(t.spec.cluster_id.to_string())
            .or_default()
            .tunnel_endpoint = Some(t);
    }
    for f in &fetched.foreign_clusters {
        peers
            .entry(f.spec.cluster_id.to_string())
            .or_default()
            .foreign_cluster = Some(f);
    }
    for n in &fetched.network_configs {
        let origin = n.spec.origin_cluster_id.as_str();
        if Some(origin) != local {
            peers.entry(origin.to_owned()).or_default().network_config = Some(n);
        }
    }
    for m in &fetched.nat_mappings {
        peers
            .entry(m.spec.cluster_id.to_string())
            .or_default()
            .nat_mappings
            .push(m);
    }
    for u in &fetched.unreadable {
        if let Some(p) = u.peer.as_deref().filter(|p| Some(*p) != local) {
            peers.entry(p.to_owned()).or_default().unreadable.push(u);
        }
    }
    if let Some(subnets) = subnets {
        for (id, peer) in &mut peers {
            peer.subnets = subnets.get(id);
        }
    }
    peers
}

fn views(source: &str, conditions: &[Condition]) -> impl Iterator<Item = ConditionView> {
    conditions.iter().map(move |c| ConditionView {
        source: source.to_owned(),
        type_: c.type_.clone(),
        status: c.status.clone(),
        reason: c.reason.clone(),
        message: c.message.clone(),
        last_transition_time: c.last_transition_time.0.to_string(),
    })
}

/// Every condition of the peering, ForeignCluster first.
fn conditions(p: &PeerObjects<'_>) -> Vec<ConditionView> {
    let none = Vec::new();
    let fc = p.foreign_cluster.and_then(|f| f.status.as_ref());
    let nc = p.network_config.and_then(|n| n.status.as_ref());
    let tep = p.tunnel_endpoint.and_then(|t| t.status.as_ref());
    let mut out: Vec<ConditionView> = views("ForeignCluster", fc.map_or(&none, |s| &s.conditions))
        .chain(views("NetworkConfig", nc.map_or(&none, |s| &s.conditions)))
        .chain(views(
            "TunnelEndpoint",
            tep.map_or(&none, |s| &s.conditions),
        ))
        .collect();
    for u in &p.unreadable {
        out.extend(views(u.kind, &u.conditions));
    }
    out
}

/// Why a peer has no tunnel: the most telling condition that is not `True` (a problem before a
/// wait, the ForeignCluster's summary `Ready` last), or an unreadable object.
fn cause(p: &PeerObjects<'_>, conds: &[ConditionView]) -> (PeerState, String, String) {
    let failing = |c: &&ConditionView| {
        c.status != "True" && !(c.source == "ForeignCluster" && c.type_ == "Ready")
    };
    let problem = conds
        .iter()
        .filter(failing)
        .find(|c| !WAITING_REASONS.contains(&c.reason.as_str()));
    if let Some(c) = problem {
        return (PeerState::Error, c.reason.clone(), c.message.clone());
    }
    if let Some(u) = p.unreadable.first() {
        let message = format!("{} {} cannot be read: {}", u.kind, u.name, u.error);
        return (PeerState::Error, "Unreadable".to_owned(), message);
    }
    let ready = conds
        .iter()
        .find(|c| c.source == "ForeignCluster" && c.type_ == "Ready" && c.status != "True");
    if let Some(c) = conds.iter().find(failing).or(ready) {
        let state = if WAITING_REASONS.contains(&c.reason.as_str()) {
            PeerState::Pending
        } else {
            PeerState::Error
        };
        return (state, c.reason.clone(), c.message.clone());
    }
    let message = match (p.foreign_cluster, p.network_config) {
        (None, _) => "no ForeignCluster for this peer here",
        (Some(_), _) => "the network-manager has not reported on this peering yet",
    };
    (
        PeerState::Pending,
        "NoTunnelEndpoint".to_owned(),
        message.to_owned(),
    )
}

fn rtt_ms(micros: Option<u64>, text: Option<&str>) -> Option<f64> {
    micros.map(|us| us as f64 / 1000.0).or_else(|| {
        text.and_then(|t| t.strip_suffix("ms"))
            .and_then(|t| t.trim().parse().ok())
    })
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

/// Fills the tunnel's fields from the TunnelEndpoint and its status.
fn with_tunnel(p: &mut PeerStatus, tep: &TunnelEndpoint, now: Timestamp) {
    let s = &tep.spec;
    p.endpoint = Some(s.endpoint.clone());
    p.nat = NatViews {
        peer_pods: Some(RangeView::new(s.remote_pod_cidr, s.remote_nat_pod_cidr)),
        peer_external: Some(RangeView::new(
            s.remote_external_cidr,
            s.remote_nat_external_cidr,
        )),
        local_pods: Some(RangeView::new(s.local_pod_cidr, s.local_nat_pod_cidr)),
        local_external: Some(RangeView::new(
            s.local_external_cidr,
            s.local_nat_external_cidr,
        )),
    };
    let Some(st) = &tep.status else {
        p.state = PeerState::Connecting;
        p.reason = Some("NoStatus".to_owned());
        p.message =
            Some("the gateway has not reported on this tunnel yet (is it running?)".to_owned());
        return;
    };
    let c = &st.connection;
    p.state = match c.status {
        ConnectionState::Connected => PeerState::Connected,
        ConnectionState::Connecting => PeerState::Connecting,
        ConnectionState::Error => PeerState::Error,
    };
    if p.state != PeerState::Connected {
        let failed = st.conditions.iter().find(|c| c.status != "True");
        p.reason = failed.map(|c| c.reason.clone()).and_then(|r| non_empty(&r));
        p.message = non_empty(&c.message).or_else(|| failed.and_then(|c| non_empty(&c.message)));
    }
    p.last_handshake = c.last_handshake.as_ref().map(|t| t.0.to_string());
    p.handshake_age_seconds = c
        .last_handshake
        .as_ref()
        .map(|t| now.as_second().saturating_sub(t.0.as_second()).max(0) as u64);
    p.rtt_ms = rtt_ms(c.latency_micros, c.latency.as_deref());
    (p.rx_bytes, p.tx_bytes) = (Some(c.rx_bytes), Some(c.tx_bytes));
    p.backend = st.backend.clone();
    p.interface = st.interface_name.clone();
    p.gateway_node = st.gateway_node.clone();
    p.gateway_ip = st.gateway_ip;
    if p.state == PeerState::Connected
        && let Some(age) = p
            .handshake_age_seconds
            .filter(|a| *a > STALE_HANDSHAKE_SECONDS)
    {
        p.warnings.push(format!(
            "connected, but the last handshake was {age} s ago: WireGuard drops a session after \
             {STALE_HANDSHAKE_SECONDS} s, so this status is stale (is the gateway running?)"
        ));
    }
    if let (Some(seen), Some(want)) = (st.observed_generation, tep.metadata.generation)
        && seen < want
    {
        p.warnings.push(format!(
            "the status describes generation {seen} of the TunnelEndpoint, the spec is at {want}: \
             the gateway has not caught up"
        ));
    }
}

/// The row of one peer.
pub fn peer_status(id: &str, p: &PeerObjects<'_>, now: Timestamp) -> PeerStatus {
    let conds = conditions(p);
    let mut row = PeerStatus {
        cluster_id: id.to_owned(),
        state: PeerState::Pending,
        reason: None,
        message: None,
        tunnel_endpoint: p.tunnel_endpoint.is_some(),
        foreign_cluster: p.foreign_cluster.is_some(),
        network_config: p.network_config.is_some(),
        phase: p
            .foreign_cluster
            .and_then(|f| f.status.as_ref()?.phase.clone()),
        last_handshake: None,
        handshake_age_seconds: None,
        rtt_ms: None,
        rx_bytes: None,
        tx_bytes: None,
        backend: None,
        interface: None,
        gateway_node: None,
        gateway_ip: None,
        endpoint: None,
        nat: NatViews::default(),
        nat_mappings: p
            .nat_mappings
            .iter()
            .map(|m| m.spec.cluster_mappings.len())
            .sum(),
        conditions: Vec::new(),
        warnings: p
            .unreadable
            .iter()
            .map(|u| format!("{} {} cannot be read: {}", u.kind, u.name, u.error))
            .collect(),
    };
    if let Some(tep) = p.tunnel_endpoint {
        with_tunnel(&mut row, tep, now);
    } else {
        let (state, reason, message) = cause(p, &conds);
        row.state = state;
        row.reason = Some(reason);
        row.message = non_empty(&message);
        if let Some(s) = p.subnets {
            row.nat.peer_pods = Some(RangeView::new(s.remote_pod_cidr, s.remote_nat_pod_cidr));
            row.nat.peer_external = Some(RangeView::new(
                s.remote_external_cidr,
                s.remote_nat_external_cidr,
            ));
        }
    }
    row.conditions = conds;
    row
}
