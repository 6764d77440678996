//! Peer network decisions: accept a peer's Pod CIDR and ExternalCIDR as-is only when they lie
//! inside our pools and overlap nothing we know (our networks, the reserved ranges, other
//! peers), else remap each 1:1 to the lowest free network of the same prefix length in the
//! pools. A peer cannot steer a range outside the pools (a public network, one of our node
//! subnets) into our tunnel. Processing the same networks again gives the same answer; a peer's
//! view of us is recorded as it reports it.

use crate::effect::{Effect, PeerNetworks};
use crate::network_set::{NetworkOwner, NetworkSet};
use crate::{Cidr, ClusterId, Ipam, IpamError};

/// Shortest and longest prefix accepted for a peer network.
const PEER_PREFIX_RANGE: std::ops::RangeInclusive<u8> = 8..=30;

impl Ipam {
    /// Decides how we address `cluster`'s networks. Returns the effect to apply; the answer is
    /// the same for the same input, and unchanged networks keep their decision. The peer's view
    /// of us (`local_*_nat`) is kept from an earlier decision.
    pub fn plan_peer(
        &self,
        cluster: &ClusterId,
        remote_pod: Cidr,
        remote_external: Cidr,
    ) -> Result<Effect, IpamError> {
        validate_peer_networks(cluster, remote_pod, remote_external)?;
        let existing = self.peers.get(cluster);
        // An earlier decision stands, unless it took a network outside today's pools (a state
        // written before this rule, or pools narrowed since): that one is decided again.
        if let Some(p) = existing
            && p.remote_pod == remote_pod
            && p.remote_external == remote_external
            && self.in_pools(&p.remote_pod_view)
            && self.in_pools(&p.remote_external_view)
        {
            return Ok(Effect::PeerSet {
                cluster: cluster.clone(),
                networks: p.clone(),
            });
        }
        let mut scratch = self.networks.clone();
        if let Some(p) = existing {
            scratch.release(&p.remote_pod_view);
            scratch.release(&p.remote_external_view);
        }
        let pod_owner = NetworkOwner::PeerPods(cluster.clone());
        let remote_pod_view = self.decide(&mut scratch, cluster, remote_pod, pod_owner)?;
        let ext_owner = NetworkOwner::PeerExternal(cluster.clone());
        let remote_external_view =
            self.decide(&mut scratch, cluster, remote_external, ext_owner)?;
        let networks = PeerNetworks {
            remote_pod,
            remote_pod_view,
            remote_external,
            remote_external_view,
            local_pod_nat: existing.and_then(|p| p.local_pod_nat),
            local_external_nat: existing.and_then(|p| p.local_external_nat),
            // a new peer has not told us how it addresses us yet
            view_known: existing.is_some_and(|p| p.view_known),
        };
        Ok(Effect::PeerSet {
            cluster: cluster.clone(),
            networks,
        })
    }

    fn decide(
        &self,
        scratch: &mut NetworkSet,
        cluster: &ClusterId,
        wanted: Cidr,
        owner: NetworkOwner,
    ) -> Result<Cidr, IpamError> {
        let chosen = if self.in_pools(&wanted) && scratch.conflict(&wanted).is_none() {
            wanted
        } else {
            scratch
                .find_free(&self.local.pools, wanted.prefix_len())
                .ok_or_else(|| IpamError::PoolsExhausted {
                    cluster: cluster.clone(),
                    network: wanted,
                    prefix_len: wanted.prefix_len(),
                })?
        };
        scratch.reserve(chosen, owner)?;
        Ok(chosen)
    }

    /// Whether `network` lies entirely inside one of our pools.
    fn in_pools(&self, network: &Cidr) -> bool {
        self.local.pools.iter().any(|pool| pool.covers(network))
    }

    /// Records how `cluster` addresses our networks (its decision, from its NetworkConfig
    /// status). `None` means "as-is". A view must have the prefix length of what it maps.
    pub fn plan_peer_view(
        &self,
        cluster: &ClusterId,
        local_pod_nat: Option<Cidr>,
        local_external_nat: Option<Cidr>,
    ) -> Result<Effect, IpamError> {
        let peer = self
            .peers
            .get(cluster)
            .ok_or_else(|| IpamError::UnknownPeer(cluster.clone()))?;
        let check = |view: Option<Cidr>, ours: Cidr, what: &str| match view {
            Some(v) if v.prefix_len() != ours.prefix_len() => Err(IpamError::InvalidPeerNetwork {
                cluster: cluster.clone(),
                reason: format!("its view {v} of our {what} {ours} has a different prefix length"),
            }),
            _ => Ok(()),
        };
        check(local_pod_nat, self.local.pod_cidr, "Pod CIDR")?;
        check(local_external_nat, self.local.external_cidr, "ExternalCIDR")?;
        let normalise = |v: Option<Cidr>, ours: Cidr| v.filter(|v| *v != ours);
        let networks = PeerNetworks {
            local_pod_nat: normalise(local_pod_nat, self.local.pod_cidr),
            local_external_nat: normalise(local_external_nat, self.local.external_cidr),
            view_known: true,
            ..peer.clone()
        };
        Ok(Effect::PeerSet {
            cluster: cluster.clone(),
            networks,
        })
    }

    /// Removes a peer: its networks, its reflections, and the addresses only it used.
    pub fn plan_remove_peer(&self, cluster: &ClusterId) -> Result<Effect, IpamError> {
        if !self.peers.contains_key(cluster) {
            return Err(IpamError::UnknownPeer(cluster.clone()));
        }
        Ok(Effect::PeerRemoved {
            cluster: cluster.clone(),
        })
    }

    pub(crate) fn apply_peer_set(
        &mut self,
        cluster: &ClusterId,
        networks: &PeerNetworks,
    ) -> Result<(), IpamError> {
        let mut scratch = self.networks.clone();
        if let Some(old) = self.peers.get(cluster) {
            scratch.release(&old.remote_pod_view);
            scratch.release(&old.remote_external_view);
        }
        scratch.reserve(
            networks.remote_pod_view,
            NetworkOwner::PeerPods(cluster.clone()),
        )?;
        let ext_owner = NetworkOwner::PeerExternal(cluster.clone());
        scratch.reserve(networks.remote_external_view, ext_owner)?;
        self.networks = scratch;
        self.peers.insert(cluster.clone(), networks.clone());
        Ok(())
    }

    pub(crate) fn apply_peer_removed(&mut self, cluster: &ClusterId) -> Result<(), IpamError> {
        let Some(old) = self.peers.remove(cluster) else {
            return Err(IpamError::UnknownPeer(cluster.clone()));
        };
        self.networks.release(&old.remote_pod_view);
        self.networks.release(&old.remote_external_view);
        let reflected = self.by_cluster.remove(cluster).unwrap_or_default();
        for endpoint in reflected.into_values() {
            self.drop_reflection(endpoint, cluster);
        }
        Ok(())
    }
}

fn validate_peer_networks(cluster: &ClusterId, pod: Cidr, ext: Cidr) -> Result<(), IpamError> {
    let bad = |reason: String| IpamError::InvalidPeerNetwork {
        cluster: cluster.clone(),
        reason,
    };
    for (what, net) in [("Pod CIDR", pod), ("ExternalCIDR", ext)] {
        if !PEER_PREFIX_RANGE.contains(&net.prefix_len()) {
            return Err(bad(format!(
                "{what} {net}: prefix length must be /8 to /30"
            )));
        }
    }
    if pod.overlaps(&ext) {
        return Err(bad(format!(
            "Pod CIDR {pod} overlaps its ExternalCIDR {ext}"
        )));
    }
    Ok(())
}
