//! The pure heart of `isthmus status`: fetched objects + the time → [`StatusReport`]. Finds our
//! cluster ID, the IPAM root and its usage, one row per peer, the summary line and the warnings.
//! No I/O, no clock.

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;

use crate::inspect::status::input::Fetched;
use crate::inspect::status::report::{
    FORMAT_VERSION, PeerState, PeerStatus, StatusReport, Summary,
};
use crate::inspect::status::{peers, usage};

/// Where and when the objects were read.
#[derive(Debug, Clone)]
pub struct Source {
    pub server: String,
    pub namespace: String,
    pub now: Timestamp,
}

/// Peer names listed per state in the summary line before `+N more`.
const NAMES_IN_SUMMARY: usize = 5;

/// The report of one cluster.
pub fn build(fetched: &Fetched, source: &Source) -> StatusReport {
    let mut warnings = Vec::new();
    let cluster_id = local_cluster_id(fetched, &mut warnings);
    let root = usage::root(&fetched.ipam_storages);
    let (local, usage) = match root {
        Some(r) => {
            let local = r.spec.networks.as_ref().map(usage::local_networks);
            let usage = usage::usage(r, &fetched.ipam_storages).map(|(u, outside)| {
                if outside > 0 {
                    warnings.push(format!(
                        "{outside} endpoint mappings hold addresses the IPAM never hands out \
                         (outside the ExternalCIDR's allocatable range): the IPAM state looks corrupt"
                    ));
                }
                u
            });
            (local, usage)
        }
        None => {
            warnings.push(format!(
                "no IpamStorage root object in namespace {}: the network-manager has not started \
                 here, so local networks and IPAM usage are unknown",
                source.namespace
            ));
            (None, None)
        }
    };
    for u in fetched.unreadable.iter().filter(|u| u.peer.is_none()) {
        warnings.push(format!("{} {} cannot be read: {}", u.kind, u.name, u.error));
    }
    let subnets = root.map(|r| &r.spec.cluster_subnets);
    let peers: Vec<PeerStatus> = peers::group(fetched, subnets, cluster_id.as_deref())
        .iter()
        .map(|(id, objects)| peers::peer_status(id, objects, source.now))
        .collect();
    StatusReport {
        format_version: FORMAT_VERSION,
        generated_at: source.now.to_string(),
        server: source.server.clone(),
        namespace: source.namespace.clone(),
        cluster_id,
        summary: summary(&peers),
        local,
        usage,
        peers,
        warnings,
    }
}

/// Our cluster ID: what the NetworkConfigs peers sent us are addressed to (`spec.clusterID`).
fn local_cluster_id(fetched: &Fetched, warnings: &mut Vec<String>) -> Option<String> {
    let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
    for n in &fetched.network_configs {
        *votes.entry(n.spec.cluster_id.as_str()).or_default() += 1;
    }
    if votes.len() > 1 {
        let list: Vec<String> = votes.iter().map(|(id, n)| format!("{id} ({n})")).collect();
        warnings.push(format!(
            "the NetworkConfigs here are addressed to different clusters: {}",
            list.join(", ")
        ));
    }
    let best = votes
        .iter()
        .max_by_key(|(id, n)| (**n, std::cmp::Reverse(**id)))?;
    Some(best.0.to_string())
}

/// Counts per state and the line printed first, e.g.
/// `2/4 peers connected; connecting: c; error: d (PoolsExhausted)`.
pub fn summary(peers: &[PeerStatus]) -> Summary {
    let count = |s: PeerState| peers.iter().filter(|p| p.state == s).count();
    let mut s = Summary {
        peers: peers.len(),
        connected: count(PeerState::Connected),
        connecting: count(PeerState::Connecting),
        error: count(PeerState::Error),
        pending: count(PeerState::Pending),
        text: String::new(),
    };
    if peers.is_empty() {
        s.text = "no peers (no TunnelEndpoint, ForeignCluster or NetworkConfig)".to_owned();
        return s;
    }
    s.text = format!("{}/{} peers connected", s.connected, s.peers);
    for state in [PeerState::Error, PeerState::Connecting, PeerState::Pending] {
        let names: Vec<String> = peers
            .iter()
            .filter(|p| p.state == state)
            .map(|p| match &p.reason {
                Some(r) if state != PeerState::Connecting => format!("{} ({r})", p.cluster_id),
                _ => p.cluster_id.clone(),
            })
            .collect();
        if names.is_empty() {
            continue;
        }
        let shown = names.len().min(NAMES_IN_SUMMARY);
        s.text += &format!("; {}: {}", state.as_str(), names[..shown].join(", "));
        if names.len() > shown {
            s.text += &format!(" +{} more", names.len() - shown);
        }
    }
    s
}

#[cfg(test)]
#[path = "build_tests.rs"]
mod tests;
