//! [`NetworkSet`]: the non-overlapping networks reserved in this cluster's address space, each with
//! its owner, and the search for a free network of a given size inside the pools.
//!
//! Stored as an interval map keyed by first address, so an overlap check is one predecessor
//! lookup (O(log n)) and a free-network search skips whole reserved intervals at a time.

use std::collections::BTreeMap;
use std::fmt;

use crate::{Cidr, ClusterId, IpamError};

/// Who holds a reserved network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkOwner {
    LocalPods,
    LocalServices,
    LocalExternal,
    Reserved,
    PeerPods(ClusterId),
    PeerExternal(ClusterId),
}

impl fmt::Display for NetworkOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetworkOwner::LocalPods => f.write_str("the local Pod CIDR"),
            NetworkOwner::LocalServices => f.write_str("the local Service CIDR"),
            NetworkOwner::LocalExternal => f.write_str("the local ExternalCIDR"),
            NetworkOwner::Reserved => f.write_str("a reserved network"),
            NetworkOwner::PeerPods(c) => write!(f, "the Pod CIDR of peer {c}"),
            NetworkOwner::PeerExternal(c) => write!(f, "the ExternalCIDR of peer {c}"),
        }
    }
}

#[derive(Debug, Clone)]
struct Reservation {
    network: Cidr,
    owner: NetworkOwner,
}

/// Reserved networks, pairwise disjoint.
#[derive(Debug, Clone, Default)]
pub struct NetworkSet {
    by_first: BTreeMap<u32, Reservation>,
}

impl NetworkSet {
    /// The reservation overlapping `network`, if any.
    pub fn conflict(&self, network: &Cidr) -> Option<(Cidr, &NetworkOwner)> {
        let (_, r) = self.by_first.range(..=network.last_u32()).next_back()?;
        r.network.overlaps(network).then_some((r.network, &r.owner))
    }

    /// Reserves `network` for `owner`, refusing any overlap.
    pub fn reserve(&mut self, network: Cidr, owner: NetworkOwner) -> Result<(), IpamError> {
        if let Some((other, by)) = self.conflict(&network) {
            return Err(IpamError::Overlap {
                network,
                what: owner.to_string(),
                other: format!("{other} held by {by}"),
            });
        }
        self.by_first
            .insert(network.first_u32(), Reservation { network, owner });
        Ok(())
    }

    /// Releases exactly `network` if it is reserved; returns whether it was.
    pub fn release(&mut self, network: &Cidr) -> bool {
        match self.by_first.get(&network.first_u32()) {
            Some(r) if r.network == *network => {
                self.by_first.remove(&network.first_u32());
                true
            }
            _ => false,
        }
    }

    /// The lowest free network of prefix length `len` inside `pools` (searched in order).
    /// Each step jumps past a whole reservation: O(k log n) for k reservations in the way.
    pub fn find_free(&self, pools: &[Cidr], len: u8) -> Option<Cidr> {
        pools
            .iter()
            .filter(|p| p.prefix_len() <= len)
            .find_map(|p| self.free_in(p, len))
    }

    fn free_in(&self, pool: &Cidr, len: u8) -> Option<Cidr> {
        let size = 1u64 << (32 - u32::from(len));
        let end = u64::from(pool.last_u32());
        let mut candidate = u64::from(pool.first_u32());
        while candidate + size - 1 <= end {
            let net = Cidr::new(std::net::Ipv4Addr::from(candidate as u32), len).ok()?;
            match self.conflict(&net) {
                None => return Some(net),
                Some((other, _)) => {
                    let after = u64::from(other.last_u32()) + 1;
                    candidate = after.div_ceil(size) * size;
                }
            }
        }
        None
    }

    /// Every reservation, in address order.
    pub fn iter(&self) -> impl Iterator<Item = (Cidr, &NetworkOwner)> {
        self.by_first.values().map(|r| (r.network, &r.owner))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn refuses_overlaps_and_names_the_holder() {
        let mut s = NetworkSet::default();
        s.reserve(c("10.0.0.0/16"), NetworkOwner::LocalPods)
            .unwrap();
        let err = s
            .reserve(c("10.0.5.0/24"), NetworkOwner::Reserved)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "10.0.5.0/24 (a reserved network) overlaps 10.0.0.0/16 held by the local Pod CIDR"
        );
        assert!(s.reserve(c("10.1.0.0/16"), NetworkOwner::Reserved).is_ok());
    }

    #[test]
    fn finds_lowest_aligned_free_network() {
        let mut s = NetworkSet::default();
        s.reserve(c("10.0.0.0/24"), NetworkOwner::LocalPods)
            .unwrap();
        s.reserve(c("10.0.2.0/23"), NetworkOwner::Reserved).unwrap();
        let pools = [c("10.0.0.0/16")];
        assert_eq!(s.find_free(&pools, 24), Some(c("10.0.1.0/24")));
        assert_eq!(s.find_free(&pools, 23), Some(c("10.0.4.0/23")));
        assert_eq!(s.find_free(&pools, 8), None);
    }

    #[test]
    fn release_frees_only_exact_networks() {
        let mut s = NetworkSet::default();
        s.reserve(c("10.0.0.0/24"), NetworkOwner::LocalPods)
            .unwrap();
        assert!(!s.release(&c("10.0.0.0/25")));
        assert!(s.release(&c("10.0.0.0/24")));
        assert!(s.conflict(&c("10.0.0.0/8")).is_none());
    }

    #[test]
    fn search_reaches_the_end_of_the_address_space() {
        let mut s = NetworkSet::default();
        s.reserve(c("255.255.255.0/25"), NetworkOwner::Reserved)
            .unwrap();
        let pools = [c("255.255.255.0/24")];
        assert_eq!(s.find_free(&pools, 25), Some(c("255.255.255.128/25")));
        s.reserve(c("255.255.255.128/25"), NetworkOwner::Reserved)
            .unwrap();
        assert_eq!(s.find_free(&pools, 25), None);
    }
}
