//! Turning what the clusters show ([`PeeringView`]) into words, without I/O: a progress line per
//! direction while `peer` or `unpeer` waits, the reasons when it times out (the network-manager's
//! conditions, a gateway that never published its key or does not hold its Lease, the
//! TunnelEndpoint's own message), and the final table of both tunnels. Time is passed in.

use isthmus_api::{ConnectionState, ForeignCluster, TunnelEndpoint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use crate::peer::observe::{LeaseView, PeeringView};

/// The gateway's finalizer on a TunnelEndpoint (see `isthmus_gateway::finalizer`).
pub const GATEWAY_FINALIZER: &str = "net.isthmus.io/gateway";
/// The network-manager's finalizer on a ForeignCluster.
pub const NETWORK_MANAGER_FINALIZER: &str = "net.isthmus.io/network-manager";

/// One cluster's side of the peering, for messages: `cluster-a → cluster-b`.
#[derive(Debug, Clone, Copy)]
pub struct Pair<'a> {
    pub side: &'a str,
    pub peer: &'a str,
    pub namespace: &'a str,
    /// The gateway's key Secret and Lease (from the chart's cluster-info ConfigMap).
    pub public_key: &'a str,
    pub lease: &'a str,
}

/// The tunnel is up as the gateway reports it.
pub fn connected(v: &PeeringView) -> bool {
    v.tunnel.as_ref().is_some_and(|t| {
        t.metadata.deletion_timestamp.is_none()
            && t.status
                .as_ref()
                .is_some_and(|s| s.connection.status == ConnectionState::Connected)
    })
}

/// Nothing of the peering is left: no ForeignCluster, no TunnelEndpoint, no NatMapping.
pub fn unpeered(v: &PeeringView) -> bool {
    v.read_error.is_none() && v.foreign_cluster.is_none() && v.tunnel.is_none() && !v.nat_mapping
}

/// The `False` conditions of a list, `Type Reason: message`.
fn failing(conditions: &[Condition]) -> Vec<String> {
    conditions
        .iter()
        .filter(|c| c.status == "False")
        .map(|c| match c.message.is_empty() {
            true => format!("{} {}", c.type_, c.reason),
            false => format!("{} {}: {}", c.type_, c.reason, c.message),
        })
        .collect()
}

/// The `False` conditions that say why a peering waits: every one but the summary `Ready`,
/// which only repeats them (it stays when it is alone).
fn causes(conditions: &[Condition]) -> Vec<String> {
    let (summary, details): (Vec<&Condition>, Vec<&Condition>) =
        conditions.iter().partition(|c| c.type_ == "Ready");
    let details: Vec<Condition> = details.into_iter().cloned().collect();
    match failing(&details) {
        found if !found.is_empty() => found,
        _ => failing(&summary.into_iter().cloned().collect::<Vec<_>>()),
    }
}

fn phase(fc: &ForeignCluster) -> Option<&str> {
    fc.status.as_ref().and_then(|s| s.phase.as_deref())
}

fn tunnel_words(t: &TunnelEndpoint) -> String {
    let Some(s) = &t.status else {
        return "TunnelEndpoint written, waiting for the gateway".to_owned();
    };
    let mut out = format!("tunnel {}", s.connection.status);
    if let Some(latency) = &s.connection.latency {
        out.push_str(&format!(" ({latency})"));
    }
    if !s.connection.message.is_empty() && s.connection.status != ConnectionState::Connected {
        out.push_str(&format!(": {}", s.connection.message));
    }
    out
}

/// One line: where `peer`'s direction stands.
pub fn progress(p: Pair<'_>, v: &PeeringView) -> String {
    let state = match (&v.read_error, &v.foreign_cluster, &v.tunnel) {
        (Some(e), _, _) => format!("cannot read the API: {e}"),
        (None, None, _) => "no ForeignCluster".to_owned(),
        (None, Some(fc), None) => match phase(fc) {
            None => "ForeignCluster written, waiting for the network-manager".to_owned(),
            Some(phase) => {
                let why = fc
                    .status
                    .as_ref()
                    .map(|s| causes(&s.conditions))
                    .and_then(|f| f.into_iter().next());
                match why {
                    Some(why) => format!("{phase}: {why}"),
                    None => phase.to_owned(),
                }
            }
        },
        (None, Some(_), Some(t)) => tunnel_words(t),
    };
    format!("{} → {}: {state}", p.side, p.peer)
}

/// Why the gateway is not acting on `p`'s TunnelEndpoint, from its Lease.
fn gateway_absent(p: Pair<'_>, lease: Option<&LeaseView>, now: Timestamp) -> Option<String> {
    let Some(lease) = lease else {
        return Some(format!(
            "no gateway has ever run: Lease {}/{} does not exist (is the gateway deployed?)",
            p.namespace, p.lease
        ));
    };
    let Some(holder) = &lease.holder else {
        return Some(format!(
            "no gateway is running: nobody holds Lease {}/{} (check the gateway pod)",
            p.namespace, lease.name
        ));
    };
    let age = lease
        .renewed
        .map(|t| now.duration_since(t).as_secs())
        .unwrap_or(i64::MAX);
    let limit = i64::from(lease.duration_secs.unwrap_or(15));
    (age > limit).then(|| {
        format!(
            "no gateway is running: Lease {}/{} (holder {holder}) was last renewed {}s ago, \
             longer than its {limit}s (check the gateway pod)",
            p.namespace,
            lease.name,
            if age == i64::MAX { -1 } else { age }
        )
    })
}

/// The reasons `p`'s direction is not connected, one line each.
pub fn why_not_connected(p: Pair<'_>, v: &PeeringView, now: Timestamp) -> Vec<String> {
    let at = format!("{} → {}", p.side, p.peer);
    if let Some(e) = &v.read_error {
        return vec![format!("{at}: cannot read {}'s API: {e}", p.side)];
    }
    let Some(fc) = &v.foreign_cluster else {
        return vec![format!(
            "{at}: {} has no ForeignCluster for {} (deleted meanwhile?)",
            p.side, p.peer
        )];
    };
    let Some(tep) = &v.tunnel else {
        return peering_reasons(&at, p, fc, v);
    };
    if let Some(why) = gateway_absent(p, v.lease.as_ref(), now) {
        return vec![format!("{at}: {why}")];
    }
    vec![tunnel_reason(&at, p, tep)]
}

/// Why the network-manager has not written a TunnelEndpoint: it is not running (or waits for
/// the gateway's key), or the ForeignCluster's conditions say.
fn peering_reasons(at: &str, p: Pair<'_>, fc: &ForeignCluster, v: &PeeringView) -> Vec<String> {
    let Some(status) = &fc.status else {
        if v.gateway_key == Some(false) {
            return vec![format!(
                "{at}: the gateway has not published its key (ConfigMap {}/{} is missing), and the \
                 network-manager waits for it before it starts: is the gateway running?",
                p.namespace, p.public_key
            )];
        }
        return vec![format!(
            "{at}: no network-manager has reported on ForeignCluster {}: is the network-manager \
             running in namespace {}?",
            fc.name_any(),
            p.namespace
        )];
    };
    let conditions = causes(&status.conditions);
    let phase = phase(fc).unwrap_or("Pending");
    if conditions.is_empty() {
        return vec![format!(
            "{at}: ForeignCluster {} is {phase}, no TunnelEndpoint yet",
            fc.name_any()
        )];
    }
    conditions
        .into_iter()
        .map(|c| format!("{at}: ForeignCluster {} is {phase}: {c}", fc.name_any()))
        .collect()
}

/// What the gateway says about the tunnel (a running gateway).
fn tunnel_reason(at: &str, p: Pair<'_>, tep: &TunnelEndpoint) -> String {
    let Some(status) = &tep.status else {
        return format!(
            "{at}: the gateway has not reported on TunnelEndpoint {}/{} yet",
            p.namespace,
            tep.name_any()
        );
    };
    let find = |type_: &str| status.conditions.iter().find(|c| c.type_ == type_);
    let reason = find("TunnelConfigured")
        .filter(|c| c.status == "False")
        .or_else(|| find("Connected"))
        .map_or("", |c| c.reason.as_str());
    let mut line = format!(
        "{at}: tunnel {} ({reason}): {}",
        status.connection.status, status.connection.message
    );
    if reason == "NoHandshake" {
        line.push_str(
            " (UDP between the gateways: check each side's gateway.endpoint and firewalls; \
             docs/operations.md, Troubleshoot, Tunnel)",
        );
    }
    line
}

/// One line: what is left of `p`'s direction while unpeering.
pub fn unpeer_progress(p: Pair<'_>, v: &PeeringView) -> String {
    if let Some(e) = &v.read_error {
        return format!("{} → {}: cannot read the API: {e}", p.side, p.peer);
    }
    let mut left = Vec::new();
    if let Some(fc) = &v.foreign_cluster {
        left.push(format!(
            "ForeignCluster {} ({})",
            fc.name_any(),
            phase(fc).unwrap_or("no status")
        ));
    }
    if v.tunnel.is_some() {
        left.push("TunnelEndpoint (gateway cleaning the kernel)".to_owned());
    }
    if v.nat_mapping {
        left.push("NatMapping".to_owned());
    }
    match left.is_empty() {
        true => format!("{} → {}: removed", p.side, p.peer),
        false => format!("{} → {}: waiting for {}", p.side, p.peer, left.join(", ")),
    }
}

/// What is still there of `p`'s direction, and why, one line each.
pub fn why_not_unpeered(p: Pair<'_>, v: &PeeringView, now: Timestamp) -> Vec<String> {
    let at = format!("{} → {}", p.side, p.peer);
    if let Some(e) = &v.read_error {
        return vec![format!("{at}: cannot read {}'s API: {e}", p.side)];
    }
    let mut out = Vec::new();
    if let Some(fc) = &v.foreign_cluster {
        out.push(format!(
            "{at}: ForeignCluster {} is still there: {}",
            fc.name_any(),
            foreign_cluster_left(p, fc)
        ));
    }
    if let Some(tep) = &v.tunnel {
        out.push(format!(
            "{at}: TunnelEndpoint {}/{} is still there: {}",
            p.namespace,
            tep.name_any(),
            tunnel_left(p, tep, v.lease.as_ref(), now)
        ));
    }
    if v.nat_mapping {
        out.push(format!(
            "{at}: NatMappings {}/{}.* are still there (the network-manager deletes them when it unpeers)",
            p.namespace, p.peer
        ));
    }
    out
}

/// Why a deleted ForeignCluster is still there.
fn foreign_cluster_left(p: Pair<'_>, fc: &ForeignCluster) -> String {
    let held = fc
        .finalizers()
        .iter()
        .any(|f| f == NETWORK_MANAGER_FINALIZER);
    // the summary first: while unpeering it says what blocks (UnpeeringBlocked)
    let mut conditions = fc
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    conditions.sort_by_key(|c| c.type_ != "Ready");
    let conditions = failing(&conditions);
    match (held, conditions.first()) {
        (true, Some(c)) => format!("the network-manager cannot finish: {c}"),
        (true, None) => format!(
            "its finalizer {NETWORK_MANAGER_FINALIZER} is still on: is the network-manager \
             running in namespace {}?",
            p.namespace
        ),
        (false, _) => "held by another finalizer".to_owned(),
    }
}

/// Why a TunnelEndpoint of an unpeered cluster is still there.
fn tunnel_left(
    p: Pair<'_>,
    tep: &TunnelEndpoint,
    lease: Option<&LeaseView>,
    now: Timestamp,
) -> String {
    let held = tep.finalizers().iter().any(|f| f == GATEWAY_FINALIZER);
    match (tep.metadata.deletion_timestamp.is_some(), held) {
        (false, _) => "not deleted yet (the network-manager deletes it when it unpeers)".to_owned(),
        (true, false) => "held by another finalizer".to_owned(),
        (true, true) => match gateway_absent(p, lease, now) {
            Some(absent) => {
                format!("the gateway has not removed the peer from the kernel: {absent}")
            }
            None => {
                let holder = lease.and_then(|l| l.holder.as_deref()).unwrap_or("?");
                format!(
                    "the gateway ({holder}) is still removing the peer from the kernel; if this \
                     lasts, its log and /readyz say why (`datapath reconcile failed: …`)"
                )
            }
        },
    }
}

/// The final table: one row per direction (state, latency, how each side addresses the other's
/// pods and is addressed).
pub fn table(rows: &[(Pair<'_>, &PeeringView)]) -> String {
    let header = [
        "CLUSTER",
        "PEER",
        "STATE",
        "LATENCY",
        "LOCAL PODS AS",
        "REMOTE PODS AS",
    ];
    let mut lines: Vec<[String; 6]> = vec![header.map(str::to_owned)];
    for (p, v) in rows {
        let tep = v.tunnel.as_ref();
        let status = tep.and_then(|t| t.status.as_ref());
        lines.push([
            p.side.to_owned(),
            p.peer.to_owned(),
            status.map_or("-".to_owned(), |s| s.connection.status.to_string()),
            status
                .and_then(|s| s.connection.latency.clone())
                .unwrap_or_else(|| "-".to_owned()),
            tep.map_or("-".to_owned(), |t| t.spec.local_nat_pod_cidr.to_string()),
            tep.map_or("-".to_owned(), |t| t.spec.remote_nat_pod_cidr.to_string()),
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|i| {
            lines
                .iter()
                .map(|l| l[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for l in &lines {
        let cells: Vec<String> = l
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
#[path = "report_tests.rs"]
mod tests;
