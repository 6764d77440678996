//! Endpoint reflection, the reference thesis's Algorithms 3 and 4: `MapEndpointIP`, `UnmapEndpointIP`, and
//! the read-only `GetHomePodIP` / `BelongsToPodCIDR`, plus the NAT mapping entries they imply.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use crate::effect::Effect;
use crate::endpoint_class::forbidden_endpoint;
use crate::{ClusterId, Ipam, IpamError};

/// One endpoint reflected with an ExternalCIDR address.
#[derive(Debug, Clone)]
pub(crate) struct EndpointEntry {
    pub(crate) external: Ipv4Addr,
    pub(crate) clusters: Vec<ClusterId>,
}

/// The answer to `MapEndpointIP`, and the change to make durable (none for a pure translation or
/// a repeated request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapOutcome {
    /// The address the peer must use.
    pub new_ip: Ipv4Addr,
    /// Set when the endpoint got (or already had) an ExternalCIDR address: the NAT mapping entry
    /// `new_ip → endpoint` of that peer.
    pub nat_entry: bool,
    pub effect: Option<Effect>,
}

/// The answer to `UnmapEndpointIP`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnmapOutcome {
    /// The NAT mapping entry (`new_ip`) removed from the peer's mapping, if there was one.
    pub removed_new_ip: Option<Ipv4Addr>,
    pub effect: Option<Effect>,
}

impl Ipam {
    /// Algorithm 3. An address that can never be a DNAT target ([`forbidden_endpoint`]) is
    /// refused. A local pod IP is translated into the peer's view of our Pod CIDR; any other
    /// IP gets an ExternalCIDR address (allocated once, shared by every peer), answered in the
    /// peer's view of our ExternalCIDR.
    pub fn plan_map(&self, cluster: &ClusterId, ip: Ipv4Addr) -> Result<MapOutcome, IpamError> {
        let peer = self
            .peers
            .get(cluster)
            .ok_or_else(|| IpamError::UnknownPeer(cluster.clone()))?;
        if !peer.view_known {
            // an answer now would be in a view the peer has not chosen: possibly wrong
            return Err(IpamError::PeerViewUnknown(cluster.clone()));
        }
        let l = &self.local;
        if let Some(class) = forbidden_endpoint(ip, l) {
            return Err(IpamError::ForbiddenEndpoint { ip, class });
        }
        if l.pod_cidr.contains(ip) {
            let view = peer.local_pod_nat.unwrap_or(l.pod_cidr);
            return Ok(MapOutcome {
                new_ip: view.map_ip(ip),
                nat_entry: false,
                effect: None,
            });
        }
        let ext_view = peer.local_external_nat.unwrap_or(l.external_cidr);
        let (external, effect) = match self.endpoints.get(&ip) {
            Some(e) if e.clusters.contains(cluster) => (e.external, None),
            Some(e) => (e.external, Some(self.reflected(ip, e.external, cluster))),
            None => {
                let external = self.peek_allocation()?;
                (external, Some(self.reflected(ip, external, cluster)))
            }
        };
        Ok(MapOutcome {
            new_ip: ext_view.map_ip(external),
            nat_entry: true,
            effect,
        })
    }

    fn reflected(&self, endpoint: Ipv4Addr, external: Ipv4Addr, cluster: &ClusterId) -> Effect {
        Effect::Reflected {
            endpoint,
            external,
            cluster: cluster.clone(),
        }
    }

    /// The address the next allocation would take, without taking it.
    fn peek_allocation(&self) -> Result<Ipv4Addr, IpamError> {
        self.external_pool
            .peek()
            .ok_or(IpamError::ExternalExhausted(self.local.external_cidr))
    }

    /// Algorithm 4. Unmapping something never mapped is a no-op (as in the reference thesis).
    pub fn plan_unmap(&self, cluster: &ClusterId, ip: Ipv4Addr) -> Result<UnmapOutcome, IpamError> {
        let peer = self
            .peers
            .get(cluster)
            .ok_or_else(|| IpamError::UnknownPeer(cluster.clone()))?;
        match self.endpoints.get(&ip) {
            Some(e) if e.clusters.contains(cluster) => {
                let view = peer.local_external_nat.unwrap_or(self.local.external_cidr);
                Ok(UnmapOutcome {
                    removed_new_ip: Some(view.map_ip(e.external)),
                    effect: Some(Effect::Unreflected {
                        endpoint: ip,
                        cluster: cluster.clone(),
                    }),
                })
            }
            _ => Ok(UnmapOutcome {
                removed_new_ip: None,
                effect: None,
            }),
        }
    }

    /// How we address a pod of `cluster` whose real IP (in the peer's Pod CIDR) is `ip`.
    pub fn home_pod_ip(&self, cluster: &ClusterId, ip: Ipv4Addr) -> Result<Ipv4Addr, IpamError> {
        let peer = self
            .peers
            .get(cluster)
            .ok_or_else(|| IpamError::UnknownPeer(cluster.clone()))?;
        if !peer.remote_pod.contains(ip) {
            return Err(IpamError::InvalidEndpoint {
                ip,
                reason: format!("not in the Pod CIDR {} of peer {cluster}", peer.remote_pod),
            });
        }
        Ok(peer.remote_pod_view.map_ip(ip))
    }

    /// Whether `ip` belongs to the local Pod CIDR.
    pub fn belongs_to_pod_cidr(&self, ip: Ipv4Addr) -> bool {
        self.local.pod_cidr.contains(ip)
    }

    /// The NAT mapping of `cluster`: new IP (in the peer's view of our ExternalCIDR) → endpoint.
    pub fn nat_mapping(
        &self,
        cluster: &ClusterId,
    ) -> Result<BTreeMap<Ipv4Addr, Ipv4Addr>, IpamError> {
        let peer = self
            .peers
            .get(cluster)
            .ok_or_else(|| IpamError::UnknownPeer(cluster.clone()))?;
        let view = peer.local_external_nat.unwrap_or(self.local.external_cidr);
        let reflected = self.by_cluster.get(cluster);
        Ok(reflected
            .into_iter()
            .flatten()
            .map(|(external, ep)| (view.map_ip(*external), *ep))
            .collect())
    }

    /// How many endpoints are reflected with an ExternalCIDR address.
    pub fn endpoint_count(&self) -> usize {
        self.endpoints.len()
    }

    pub(crate) fn apply_reflected(
        &mut self,
        endpoint: Ipv4Addr,
        external: Ipv4Addr,
        cluster: &ClusterId,
    ) -> Result<(), IpamError> {
        if !self.peers.contains_key(cluster) {
            return Err(IpamError::UnknownPeer(cluster.clone()));
        }
        match self.endpoints.get_mut(&endpoint) {
            Some(e) if e.external != external => {
                return Err(IpamError::Corrupt(format!(
                    "endpoint {endpoint} holds {} but a record gives it {external}",
                    e.external
                )));
            }
            Some(e) => {
                if !e.clusters.contains(cluster) {
                    e.clusters.push(cluster.clone());
                }
            }
            None => {
                if !self.external_pool.allocate_specific(external) {
                    return Err(IpamError::Corrupt(format!(
                        "{external} is not a free address of the ExternalCIDR"
                    )));
                }
                let entry = EndpointEntry {
                    external,
                    clusters: vec![cluster.clone()],
                };
                self.endpoints.insert(endpoint, entry);
            }
        }
        self.by_cluster
            .entry(cluster.clone())
            .or_default()
            .insert(external, endpoint);
        Ok(())
    }

    pub(crate) fn apply_unreflected(&mut self, endpoint: Ipv4Addr, cluster: &ClusterId) {
        let external = self.endpoints.get(&endpoint).map(|e| e.external);
        if let (Some(set), Some(external)) = (self.by_cluster.get_mut(cluster), external) {
            if set.get(&external) == Some(&endpoint) {
                set.remove(&external);
            }
            if set.is_empty() {
                self.by_cluster.remove(cluster);
            }
        }
        self.drop_reflection(endpoint, cluster);
    }

    /// Removes `cluster` from the endpoint's reflections; frees its address after the last one.
    pub(crate) fn drop_reflection(&mut self, endpoint: Ipv4Addr, cluster: &ClusterId) {
        let Some(e) = self.endpoints.get_mut(&endpoint) else {
            return;
        };
        e.clusters.retain(|c| c != cluster);
        if e.clusters.is_empty() {
            let external = e.external;
            self.endpoints.remove(&endpoint);
            self.external_pool.release(external);
        }
    }
}
