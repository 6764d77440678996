//! The peers' NAT mappings cut into blocks: which block of which peer an [`Effect`] changes
//! ([`Ipam::nat_touch`], asked before the effect is applied), what one block holds
//! ([`Ipam::nat_block`], a bounded read), which blocks of a peer hold anything
//! ([`Ipam::nat_blocks`]), and the set of changed blocks a publisher has not written yet
//! ([`NatDirty`]).
//!
//! A NAT block is [`NAT_BLOCK_SIZE`] consecutive addresses of the ExternalCIDR, counted from its
//! first address. The peer's view of our ExternalCIDR has the same prefix length, so a new IP and
//! its ExternalCIDR address have the same offset: a block is the same whatever the view. It is
//! not the `IpamStorage` block ([`BLOCK_SIZE`], four times larger): that one bounds what a
//! compaction rewrites, this one what every batch's NatMapping write and watch event carry.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use crate::{ClusterId, Effect, Ipam};

/// Addresses per `IpamStorage` block (a /22): the unit of the persisted layout.
pub const BLOCK_SIZE: u32 = 1024;

/// Addresses per NAT block (a /24): at most 256 mappings per published NatMapping shard. A
/// server-side apply costs the API server the size of the whole object, and every watcher
/// decodes the whole object, for each batch that touches it; at 1,024 entries a shard cost a
/// lab bulk run several times what 256 do (`docs/BENCHMARKS.md`). Kubernetes' EndpointSlices
/// hold 100 endpoints by default for the same reason.
pub const NAT_BLOCK_SIZE: u32 = 256;

/// The part of the NAT mappings one effect changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NatTouch {
    /// No NAT mapping changes.
    Nothing,
    /// One block of one peer.
    Block(ClusterId, u32),
    /// Every block of the peer (its view of us changed, it appeared, or it was removed).
    Peer(ClusterId),
}

/// Changed blocks not yet published. Bounded by peers × blocks, however many changes it folds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NatDirty {
    /// Peers whose every block must be looked at again.
    pub peers: BTreeSet<ClusterId>,
    /// Single blocks, `(peer, block)`, of peers not in `peers`.
    pub blocks: BTreeSet<(ClusterId, u32)>,
}

impl NatDirty {
    /// Folds one touch in.
    pub fn add(&mut self, touch: NatTouch) {
        match touch {
            NatTouch::Nothing => {}
            NatTouch::Block(peer, block) if !self.peers.contains(&peer) => {
                self.blocks.insert((peer, block));
            }
            NatTouch::Block(..) => {}
            NatTouch::Peer(peer) => {
                self.blocks.retain(|(p, _)| *p != peer);
                self.peers.insert(peer);
            }
        }
    }

    /// Folds another dirty set in.
    pub fn merge(&mut self, other: NatDirty) {
        for peer in other.peers {
            self.add(NatTouch::Peer(peer));
        }
        for (peer, block) in other.blocks {
            self.add(NatTouch::Block(peer, block));
        }
    }

    /// Whether nothing is dirty.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty() && self.blocks.is_empty()
    }
}

impl Ipam {
    /// The NAT block `external` (an ExternalCIDR address) lies in.
    pub fn block_of(&self, external: Ipv4Addr) -> u32 {
        u32::from(external).wrapping_sub(self.local.external_cidr.first_u32()) / NAT_BLOCK_SIZE
    }

    /// What `effect` changes in the NAT mappings. Ask before applying it: an unreflection
    /// needs the address the endpoint still holds.
    pub fn nat_touch(&self, effect: &Effect) -> NatTouch {
        match effect {
            Effect::PeerSet { cluster, .. } | Effect::PeerRemoved { cluster } => {
                NatTouch::Peer(cluster.clone())
            }
            Effect::Reflected {
                external, cluster, ..
            } => NatTouch::Block(cluster.clone(), self.block_of(*external)),
            Effect::Unreflected { endpoint, cluster } => match self.endpoints.get(endpoint) {
                Some(e) if e.clusters.contains(cluster) => {
                    NatTouch::Block(cluster.clone(), self.block_of(e.external))
                }
                _ => NatTouch::Nothing,
            },
        }
    }

    /// Block `block` of `cluster`'s NAT mapping: new IP (in the peer's view) → endpoint. Empty
    /// for an unknown peer or block. Costs O(log n + the block's entries).
    pub fn nat_block(&self, cluster: &ClusterId, block: u32) -> BTreeMap<Ipv4Addr, Ipv4Addr> {
        let (Some(peer), Some(reflected)) = (self.peers.get(cluster), self.by_cluster.get(cluster))
        else {
            return BTreeMap::new();
        };
        let view = peer.local_external_nat.unwrap_or(self.local.external_cidr);
        let Some((first, last)) = self.block_range(block) else {
            return BTreeMap::new();
        };
        reflected
            .range(first..=last)
            .map(|(external, ep)| (view.map_ip(*external), *ep))
            .collect()
    }

    /// The blocks of `cluster` that hold at least one mapping, ascending. Costs
    /// O(blocks × log n): one range lookup per block, not one step per mapping.
    pub fn nat_blocks(&self, cluster: &ClusterId) -> Vec<u32> {
        let Some(reflected) = self.by_cluster.get(cluster) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut from = Ipv4Addr::UNSPECIFIED;
        while let Some((external, _)) = reflected.range(from..).next() {
            let block = self.block_of(*external);
            out.push(block);
            match self.block_range(block + 1) {
                Some((next, _)) => from = next,
                None => break,
            }
        }
        out
    }

    /// First and last ExternalCIDR address of `block`, if the ExternalCIDR reaches it.
    fn block_range(&self, block: u32) -> Option<(Ipv4Addr, Ipv4Addr)> {
        let ext = &self.local.external_cidr;
        let first = ext
            .first_u32()
            .checked_add(block.checked_mul(NAT_BLOCK_SIZE)?)?;
        if first > ext.last_u32() {
            return None;
        }
        let last = first.saturating_add(NAT_BLOCK_SIZE - 1).min(ext.last_u32());
        Some((Ipv4Addr::from(first), Ipv4Addr::from(last)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{IpamConfig, default_pools};

    fn id(s: &str) -> ClusterId {
        s.parse().unwrap()
    }

    /// An IPAM with ExternalCIDR 10.1.0.0/16 and one peer `b` whose view of it is 10.9.0.0/16.
    fn ipam() -> Ipam {
        let config = IpamConfig {
            pod_cidr: "10.0.0.0/16".parse().unwrap(),
            service_cidr: None,
            external_cidr: Some("10.1.0.0/16".parse().unwrap()),
            pools: default_pools(),
            reserved: vec![],
        };
        let mut i = Ipam::new(&config).unwrap();
        let set = i
            .plan_peer(
                &id("b"),
                "10.200.0.0/16".parse().unwrap(),
                "10.201.0.0/16".parse().unwrap(),
            )
            .unwrap();
        i.apply(&set).unwrap();
        let view = i
            .plan_peer_view(&id("b"), None, Some("10.9.0.0/16".parse().unwrap()))
            .unwrap();
        i.apply(&view).unwrap();
        i
    }

    fn reflect(i: &mut Ipam, endpoint: &str, external: &str) -> NatTouch {
        let e = Effect::Reflected {
            endpoint: endpoint.parse().unwrap(),
            external: external.parse().unwrap(),
            cluster: id("b"),
        };
        let touch = i.nat_touch(&e);
        i.apply(&e).unwrap();
        touch
    }

    #[test]
    fn an_effect_touches_the_block_of_its_address() {
        let mut i = ipam();
        assert_eq!(
            reflect(&mut i, "10.77.0.1", "10.1.0.2"),
            NatTouch::Block(id("b"), 0)
        );
        assert_eq!(
            reflect(&mut i, "10.77.0.2", "10.1.1.0"),
            NatTouch::Block(id("b"), 1)
        );
        assert_eq!(
            reflect(&mut i, "10.77.0.3", "10.1.255.254"),
            NatTouch::Block(id("b"), 255)
        );
        let unmap = Effect::Unreflected {
            endpoint: "10.77.0.2".parse().unwrap(),
            cluster: id("b"),
        };
        assert_eq!(i.nat_touch(&unmap), NatTouch::Block(id("b"), 1));
        let never = Effect::Unreflected {
            endpoint: "10.77.0.99".parse().unwrap(),
            cluster: id("b"),
        };
        assert_eq!(i.nat_touch(&never), NatTouch::Nothing);
        let gone = Effect::PeerRemoved { cluster: id("b") };
        assert_eq!(i.nat_touch(&gone), NatTouch::Peer(id("b")));
    }

    #[test]
    fn a_block_reads_only_its_range_in_the_peer_view() {
        let mut i = ipam();
        reflect(&mut i, "10.77.0.1", "10.1.0.255");
        reflect(&mut i, "10.77.0.2", "10.1.1.0");
        reflect(&mut i, "10.77.0.3", "10.1.1.255");
        reflect(&mut i, "10.77.0.4", "10.1.2.0");
        let block1 = i.nat_block(&id("b"), 1);
        let want: BTreeMap<Ipv4Addr, Ipv4Addr> =
            [("10.9.1.0", "10.77.0.2"), ("10.9.1.255", "10.77.0.3")]
                .iter()
                .map(|(a, b)| (a.parse().unwrap(), b.parse().unwrap()))
                .collect();
        assert_eq!(block1, want);
        assert_eq!(i.nat_blocks(&id("b")), vec![0, 1, 2]);
        assert!(i.nat_block(&id("b"), 5).is_empty());
        assert!(i.nat_block(&id("b"), 1 << 30).is_empty());
        assert!(i.nat_block(&id("zz"), 0).is_empty());
        // the blocks together are the whole mapping
        let whole: BTreeMap<_, _> = i
            .nat_blocks(&id("b"))
            .into_iter()
            .flat_map(|b| i.nat_block(&id("b"), b))
            .collect();
        assert_eq!(whole, i.nat_mapping(&id("b")).unwrap());
    }

    #[test]
    fn a_dirty_peer_absorbs_its_blocks() {
        let mut d = NatDirty::default();
        d.add(NatTouch::Block(id("b"), 1));
        d.add(NatTouch::Block(id("c"), 2));
        d.add(NatTouch::Nothing);
        d.add(NatTouch::Peer(id("b")));
        d.add(NatTouch::Block(id("b"), 3));
        assert_eq!(d.peers, BTreeSet::from([id("b")]));
        assert_eq!(d.blocks, BTreeSet::from([(id("c"), 2)]));
        let mut e = NatDirty::default();
        e.merge(d.clone());
        assert_eq!(e, d);
        assert!(!e.is_empty() && NatDirty::default().is_empty());
    }
}
