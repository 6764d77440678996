//! IPAM usage from the `IpamStorage` objects: which object is the root, the local networks it
//! records, how much of the ExternalCIDR the endpoint mappings use (the state recovered from the
//! root, blocks and journal; or the shards of the first layout), and how much
//! of each pool the reserved networks cover. The arithmetic is the IPAM's own
//! (`isthmus_ipam::Ipam::external_usage`): the network, transit (network + 1) and broadcast
//! addresses are never handed out, so a /16 offers 65,533 addresses.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use isthmus_api::{Cidr, IpamNetworks, IpamStorage};
use isthmus_ipam_store::LABEL_IPAM;

use crate::inspect::status::report::{
    ExternalUsage, Holder, LocalNetworks, PoolNetwork, PoolUsage, Usage,
};

/// Name the network-manager gives its root object.
const ROOT_NAME: &str = crate::daemons::network_manager::IPAM_STORAGE_NAME;

/// The root object: the one with networks, preferring the network-manager's name.
pub fn root(storages: &[IpamStorage]) -> Option<&IpamStorage> {
    let mut roots = storages.iter().filter(|s| s.spec.networks.is_some());
    let first = roots.next()?;
    Some(
        std::iter::once(first)
            .chain(roots)
            .find(|s| s.metadata.name.as_deref() == Some(ROOT_NAME))
            .unwrap_or(first),
    )
}

/// The shard objects of `root`: labelled with its name (or, unlabelled, named `<root>-<i>`).
pub fn shards<'a>(
    root: &'a IpamStorage,
    storages: &'a [IpamStorage],
) -> impl Iterator<Item = &'a IpamStorage> {
    let name = root.metadata.name.clone().unwrap_or_default();
    storages.iter().filter(move |s| {
        let Some(index) = s.spec.shard else {
            return false;
        };
        match s.metadata.labels.as_ref().and_then(|l| l.get(LABEL_IPAM)) {
            Some(owner) => *owner == name,
            None => s.metadata.name.as_deref() == Some(&format!("{name}-{index}")),
        }
    })
}

/// The local networks the root records.
pub fn local_networks(n: &IpamNetworks) -> LocalNetworks {
    LocalNetworks {
        pod_cidr: n.pod_cidr,
        service_cidr: n.service_cidr,
        external_cidr: n.external_cidr,
        pools: n.pools.clone(),
        reserved: n.reserved.clone(),
    }
}

/// The ExternalCIDR's usage, and how many mapped addresses lie outside what the IPAM hands out
/// (a sign of corrupt state: the IPAM would refuse to load it).
pub fn external_usage(
    external: Cidr,
    mapped: impl IntoIterator<Item = Ipv4Addr>,
) -> (ExternalUsage, usize) {
    let size = external.size();
    let capacity = size.saturating_sub(3);
    let (first, last) = (
        u64::from(external.first_u32()) + 2,
        u64::from(external.last_u32()).saturating_sub(1),
    );
    let distinct: BTreeSet<Ipv4Addr> = mapped.into_iter().collect();
    let inside = distinct
        .iter()
        .filter(|ip| (first..=last).contains(&u64::from(u32::from(**ip))))
        .count() as u64;
    let usage = ExternalUsage {
        cidr: external,
        size,
        reserved_by_ipam: size - capacity,
        capacity,
        allocated: inside,
        available: capacity - inside,
    };
    (usage, distinct.len() - inside as usize)
}

/// Every network the IPAM reserves, with its holder: the local ones and our view of each peer's.
pub fn reservations(root: &IpamStorage) -> Vec<PoolNetwork> {
    let spec = &root.spec;
    let mut out = Vec::new();
    let mut push = |cidr, holder, peer: Option<&String>| {
        out.push(PoolNetwork {
            cidr,
            holder,
            peer: peer.cloned(),
        });
    };
    if let Some(n) = &spec.networks {
        push(n.pod_cidr, Holder::LocalPods, None);
        if let Some(s) = n.service_cidr {
            push(s, Holder::LocalServices, None);
        }
        push(n.external_cidr, Holder::LocalExternal, None);
        for r in &n.reserved {
            push(*r, Holder::Reserved, None);
        }
    }
    for (peer, s) in &spec.cluster_subnets {
        push(s.remote_nat_pod_cidr, Holder::PeerPods, Some(peer));
        push(s.remote_nat_external_cidr, Holder::PeerExternal, Some(peer));
    }
    out
}

/// Each pool: the reserved networks in it and how many of its addresses they cover (overlaps
/// counted once).
pub fn pool_usage(pools: &[Cidr], reserved: &[PoolNetwork]) -> Vec<PoolUsage> {
    pools
        .iter()
        .map(|pool| {
            let inside: Vec<&PoolNetwork> =
                reserved.iter().filter(|n| n.cidr.overlaps(pool)).collect();
            let mut spans: Vec<(u32, u32)> = inside
                .iter()
                .map(|n| {
                    (
                        n.cidr.first_u32().max(pool.first_u32()),
                        n.cidr.last_u32().min(pool.last_u32()),
                    )
                })
                .collect();
            PoolUsage {
                cidr: *pool,
                size: pool.size(),
                allocated: union_size(&mut spans),
                networks: inside.into_iter().cloned().collect(),
            }
        })
        .collect()
}

/// Addresses covered by inclusive spans, each address counted once.
fn union_size(spans: &mut [(u32, u32)]) -> u64 {
    spans.sort_unstable();
    let mut total = 0u64;
    let mut covered_to: Option<u32> = None;
    for &(start, end) in spans.iter() {
        let start = match covered_to {
            Some(c) if c >= end => continue,
            Some(c) if c >= start => c + 1,
            _ => start,
        };
        total += u64::from(end - start) + 1;
        covered_to = Some(end);
    }
    total
}

/// The root's usage figures; the second value counts mappings outside the allocatable range.
pub fn usage(root: &IpamStorage, storages: &[IpamStorage]) -> Option<(Usage, usize)> {
    let networks = root.spec.networks.as_ref()?;
    let mapped: Vec<Ipv4Addr> = match root.spec.layout {
        None => shards(root, storages)
            .flat_map(|s| s.spec.endpoint_mappings.values())
            .map(|m| m.ip)
            .collect(),
        Some(_) => {
            // Root, blocks and journal: the state the network-manager would recover.
            let name = root.metadata.name.clone().unwrap_or_default();
            let own: Vec<IpamStorage> = storages
                .iter()
                .filter(|s| {
                    s.metadata.labels.as_ref().and_then(|l| l.get(LABEL_IPAM)) == Some(&name)
                        || s.metadata.name.as_deref() == Some(name.as_str())
                })
                .cloned()
                .collect();
            let snapshot = isthmus_ipam_store::stored_snapshot(&name, &own).ok()??;
            snapshot.endpoints.iter().map(|r| r.external).collect()
        }
    };
    let mapped = mapped.into_iter();
    let (external, outside) = external_usage(networks.external_cidr, mapped);
    let pools = pool_usage(&networks.pools, &reservations(root));
    Some((Usage { external, pools }, outside))
}

#[cfg(test)]
#[path = "usage_tests.rs"]
mod tests;
