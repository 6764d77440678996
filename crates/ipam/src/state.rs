//! [`Ipam`]: the state (local networks, reserved networks, peers, endpoint reflections), its
//! construction from configuration or a snapshot, and [`Ipam::apply`], the only mutator.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

use crate::effect::{Effect, EndpointRecord, IpamSnapshot, LocalNetworks, PeerNetworks};
use crate::endpoints::EndpointEntry;
use crate::network_set::{NetworkOwner, NetworkSet};
use crate::{AddressPool, Cidr, ClusterId, IpamError};

/// The three RFC 1918 ranges, the default pools.
pub fn default_pools() -> Vec<Cidr> {
    ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// What the operator configures. The ExternalCIDR is chosen from the pools when absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpamConfig {
    pub pod_cidr: Cidr,
    pub service_cidr: Option<Cidr>,
    pub external_cidr: Option<Cidr>,
    pub pools: Vec<Cidr>,
    pub reserved: Vec<Cidr>,
}

/// Usage figures of one range, for status and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub allocated: u64,
    pub capacity: u64,
}

/// The IPAM state. Mutated only by [`Ipam::apply`].
#[derive(Debug, Clone)]
pub struct Ipam {
    pub(crate) local: LocalNetworks,
    pub(crate) networks: NetworkSet,
    pub(crate) external_pool: AddressPool,
    pub(crate) peers: BTreeMap<ClusterId, PeerNetworks>,
    pub(crate) endpoints: HashMap<Ipv4Addr, EndpointEntry>,
    /// Per peer: ExternalCIDR address → endpoint, ordered so that one block is one range.
    pub(crate) by_cluster: HashMap<ClusterId, BTreeMap<Ipv4Addr, Ipv4Addr>>,
}

impl Ipam {
    /// A fresh IPAM: validates the configuration, reserves the local networks and chooses the
    /// ExternalCIDR (same prefix length as the Pod CIDR) when it is not configured.
    pub fn new(config: &IpamConfig) -> Result<Self, IpamError> {
        if config.pools.is_empty() {
            return Err(IpamError::InvalidConfig("no address pools".into()));
        }
        let mut networks = NetworkSet::default();
        reserve_locals(&mut networks, config)?;
        let external_cidr = match config.external_cidr {
            Some(e) => e,
            None => networks
                .find_free(&config.pools, config.pod_cidr.prefix_len())
                .ok_or_else(|| {
                    IpamError::InvalidConfig(format!(
                        "no free /{} network in the pools for the ExternalCIDR",
                        config.pod_cidr.prefix_len()
                    ))
                })?,
        };
        let local = LocalNetworks {
            pod_cidr: config.pod_cidr,
            service_cidr: config.service_cidr,
            external_cidr,
            pools: config.pools.clone(),
            reserved: config.reserved.clone(),
        };
        Self::from_local(local)
    }

    fn from_local(local: LocalNetworks) -> Result<Self, IpamError> {
        let ext = local.external_cidr;
        if ext.prefix_len() > 30 {
            return Err(IpamError::InvalidConfig(format!(
                "ExternalCIDR {ext} is too small: at least a /30 is needed"
            )));
        }
        let mut networks = NetworkSet::default();
        let config = IpamConfig {
            pod_cidr: local.pod_cidr,
            service_cidr: local.service_cidr,
            external_cidr: Some(ext),
            pools: local.pools.clone(),
            reserved: local.reserved.clone(),
        };
        reserve_locals(&mut networks, &config)?;
        networks.reserve(ext, NetworkOwner::LocalExternal)?;
        // Network address, transit address (network + 1) and broadcast are never handed out.
        let first = Ipv4Addr::from(ext.first_u32() + 2);
        let last = Ipv4Addr::from(ext.last_u32() - 1);
        Ok(Ipam {
            local,
            networks,
            external_pool: AddressPool::new(first, last),
            peers: BTreeMap::new(),
            endpoints: HashMap::new(),
            by_cluster: HashMap::new(),
        })
    }

    /// Rebuilds the state a snapshot describes, checking every invariant on the way.
    pub fn from_snapshot(snapshot: &IpamSnapshot) -> Result<Self, IpamError> {
        let mut ipam = Self::from_local(snapshot.networks.clone())?;
        for (cluster, networks) in &snapshot.peers {
            let set = Effect::PeerSet {
                cluster: cluster.clone(),
                networks: networks.clone(),
            };
            ipam.apply(&set)
                .map_err(|e| IpamError::Corrupt(e.to_string()))?;
        }
        for rec in &snapshot.endpoints {
            for cluster in &rec.clusters {
                let r = Effect::Reflected {
                    endpoint: rec.endpoint,
                    external: rec.external,
                    cluster: cluster.clone(),
                };
                ipam.apply(&r)?;
            }
        }
        Ok(ipam)
    }

    /// The whole state as a snapshot (endpoints sorted, so equal states give equal snapshots).
    pub fn snapshot(&self) -> IpamSnapshot {
        let mut endpoints: Vec<EndpointRecord> = self
            .endpoints
            .iter()
            .map(|(ip, e)| EndpointRecord {
                endpoint: *ip,
                external: e.external,
                clusters: e.clusters.clone(),
            })
            .collect();
        endpoints.sort_by_key(|r| r.endpoint);
        IpamSnapshot {
            networks: self.local.clone(),
            peers: self.peers.clone(),
            endpoints,
        }
    }

    /// Fails unless the stored networks are the configured ones (the ExternalCIDR may have been
    /// chosen at first start; then any stored value is accepted).
    pub fn check_config(&self, config: &IpamConfig) -> Result<(), IpamError> {
        let l = &self.local;
        let mismatch = |what: &str, stored: String, configured: String| {
            Err(IpamError::InvalidConfig(format!(
                "stored state has {what} {stored} but {configured} is configured; \
                 migrate or wipe the IPAM state deliberately"
            )))
        };
        if l.pod_cidr != config.pod_cidr {
            return mismatch(
                "Pod CIDR",
                l.pod_cidr.to_string(),
                config.pod_cidr.to_string(),
            );
        }
        if l.service_cidr != config.service_cidr {
            return mismatch(
                "Service CIDR",
                fmt_opt(l.service_cidr),
                fmt_opt(config.service_cidr),
            );
        }
        if let Some(e) = config.external_cidr
            && e != l.external_cidr
        {
            return mismatch("ExternalCIDR", l.external_cidr.to_string(), e.to_string());
        }
        Ok(())
    }

    /// The local networks.
    pub fn local(&self) -> &LocalNetworks {
        &self.local
    }

    /// The address of our ExternalCIDR reserved for the gateway's transit SNAT (hub path).
    pub fn transit_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.local.external_cidr.first_u32() + 1)
    }

    /// A peer's networks.
    pub fn peer(&self, cluster: &ClusterId) -> Option<&PeerNetworks> {
        self.peers.get(cluster)
    }

    /// Every peer.
    pub fn peers(&self) -> impl Iterator<Item = (&ClusterId, &PeerNetworks)> {
        self.peers.iter()
    }

    /// How much of the ExternalCIDR is in use.
    pub fn external_usage(&self) -> Usage {
        let capacity = self.external_pool.capacity();
        Usage {
            allocated: capacity - self.external_pool.free_count(),
            capacity,
        }
    }

    /// How much of each pool is taken by reserved networks (local, peers' remapped views,
    /// operator reservations), in addresses; pools in configuration order.
    pub fn pool_usage(&self) -> Vec<(Cidr, Usage)> {
        self.local
            .pools
            .iter()
            .map(|pool| {
                let allocated = self
                    .networks
                    .iter()
                    .map(|(net, _)| overlap(pool, &net))
                    .sum();
                (
                    *pool,
                    Usage {
                        allocated,
                        capacity: pool.size(),
                    },
                )
            })
            .collect()
    }

    /// Every reserved network and its holder, in address order.
    pub fn reservations(&self) -> impl Iterator<Item = (Cidr, &NetworkOwner)> {
        self.networks.iter()
    }

    /// Performs one effect. Effects produced by this IPAM's own operations always apply; an
    /// effect that contradicts the state (a corrupt log) is refused and changes nothing.
    pub fn apply(&mut self, effect: &Effect) -> Result<(), IpamError> {
        match effect {
            Effect::PeerSet { cluster, networks } => self.apply_peer_set(cluster, networks),
            Effect::PeerRemoved { cluster } => self.apply_peer_removed(cluster),
            Effect::Reflected {
                endpoint,
                external,
                cluster,
            } => self.apply_reflected(*endpoint, *external, cluster),
            Effect::Unreflected { endpoint, cluster } => {
                self.apply_unreflected(*endpoint, cluster);
                Ok(())
            }
        }
    }
}

fn fmt_opt(c: Option<Cidr>) -> String {
    c.map_or_else(|| "none".to_owned(), |c| c.to_string())
}

fn reserve_locals(networks: &mut NetworkSet, config: &IpamConfig) -> Result<(), IpamError> {
    networks.reserve(config.pod_cidr, NetworkOwner::LocalPods)?;
    if let Some(s) = config.service_cidr {
        networks.reserve(s, NetworkOwner::LocalServices)?;
    }
    for r in &config.reserved {
        networks.reserve(*r, NetworkOwner::Reserved)?;
    }
    if let Some(e) = config.external_cidr
        && let Some((other, by)) = networks.conflict(&e)
    {
        return Err(IpamError::Overlap {
            network: e,
            what: NetworkOwner::LocalExternal.to_string(),
            other: format!("{other} held by {by}"),
        });
    }
    Ok(())
}

/// Addresses `a` and `b` have in common.
fn overlap(a: &Cidr, b: &Cidr) -> u64 {
    let first = a.first_u32().max(b.first_u32());
    let last = a.last_u32().min(b.last_u32());
    if first > last {
        0
    } else {
        u64::from(last - first) + 1
    }
}
