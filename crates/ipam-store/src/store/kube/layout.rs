//! [`Layout`]: what the `IpamStorage` objects hold, as pure data, and how a change or a
//! compaction moves it. No I/O: `KubeStore` writes what this module plans.
//!
//! The objects (names for a root called `ipam`):
//! - `ipam`, the root: networks, peer decisions, the checkpoint and each peer's block indexes;
//! - `ipam-b-<peer>-<index>`, one **block** per peer and [`BLOCK_SIZE`] addresses of the
//!   ExternalCIDR: that peer's mappings there, exact at commit `seq`;
//! - `ipam-j-<commit>`, one **journal segment** per group commit, created whole.
//!
//! A group commit is one segment create: O(batch), one atomic write. Compaction writes the
//! blocks changed since the checkpoint (each exact at the new checkpoint), then the root (the
//! switch), then deletes what the root no longer needs. Every prefix of that sequence recovers
//! the same state, because a block at `seq` is skipped by the replay of every commit up to
//! `seq`, and a block the root does not list is garbage unless it is newer than the checkpoint.
//! The same holds with segments of later commits created while a compaction is written: a
//! plan ([`Layout::compaction`]) is exact at the commit it was taken at, and those segments
//! lie past it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;

use isthmus_api::{
    ClusterSubnets, IpamBlock, IpamJournal, IpamNetworks, IpamStorageSpec, JournalEntry, JournalOp,
};
use isthmus_ipam::{ClusterId, Effect, EndpointRecord, IpamSnapshot, LocalNetworks};

use super::codec::{peer_networks, subnets};
use crate::StoreError;

/// Addresses of the ExternalCIDR per block object (a /22): at most 1,024 mappings of ~25 bytes,
/// ~50 KiB with the API server's managedFields, far below 256 KiB. The IPAM's own block size,
/// so a storage block and a published NatMapping shard cover the same addresses.
pub const BLOCK_SIZE: u32 = isthmus_ipam::BLOCK_SIZE;

/// The layout version written in the root.
pub const LAYOUT_VERSION: u32 = 2;

/// What the earlier effects of one commit did to the mappings, as [`Layout::entries`] reads
/// them before the commit is applied.
#[derive(Debug, Default)]
struct Earlier {
    /// (cluster, endpoint) → its external address now, `None` once unreflected.
    mappings: HashMap<(ClusterId, Ipv4Addr), Option<Ipv4Addr>>,
    /// Peers removed (their mappings with them).
    removed: HashSet<ClusterId>,
}

impl Earlier {
    fn record(&mut self, e: &JournalEntry) {
        match e.op {
            JournalOp::Reflected | JournalOp::Unreflected => {
                if let Some(endpoint) = e.endpoint {
                    let now = (e.op == JournalOp::Reflected)
                        .then_some(e.external)
                        .flatten();
                    self.mappings.insert((e.cluster.clone(), endpoint), now);
                }
            }
            JournalOp::PeerRemoved => {
                self.mappings.retain(|(c, _), _| c != &e.cluster);
                self.removed.insert(e.cluster.clone());
            }
            JournalOp::PeerSet => {}
        }
    }
}

/// A block: one peer, one block index.
pub type BlockKey = (ClusterId, u32);

/// One block's content.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Block {
    /// Every commit up to this one is in `mappings`.
    pub seq: u64,
    /// ExternalCIDR address → endpoint.
    pub mappings: BTreeMap<Ipv4Addr, Ipv4Addr>,
}

/// The state the objects describe, the commit it is at, and what changed since the checkpoint.
#[derive(Debug, Clone)]
pub struct Layout {
    pub root: String,
    pub networks: LocalNetworks,
    pub peers: BTreeMap<ClusterId, ClusterSubnets>,
    pub blocks: BTreeMap<BlockKey, Block>,
    /// (peer, endpoint) → its ExternalCIDR address: what an unreflection needs to find its block.
    index: HashMap<(ClusterId, Ipv4Addr), Ipv4Addr>,
    /// The last commit applied.
    pub commit: u64,
    /// The root's checkpoint: every commit up to it is in the blocks.
    pub checkpoint: u64,
    /// Blocks changed since the checkpoint (including ones that became empty).
    pub dirty: BTreeSet<BlockKey>,
    /// The root's content changed since the checkpoint (peers).
    pub root_dirty: bool,
}

/// The writes of one compaction, in order: blocks, then the root, then the deletions.
#[derive(Debug, Clone, PartialEq)]
pub struct Compaction {
    pub checkpoint: u64,
    /// Blocks to write (non-empty), by name.
    pub blocks: Vec<(String, IpamStorageSpec)>,
    pub root: IpamStorageSpec,
    /// Blocks that became empty: deleted once the root no longer lists them.
    pub drop_blocks: Vec<String>,
    /// The blocks this compaction makes exact: dirty again if it fails.
    pub covers: BTreeSet<BlockKey>,
    /// Whether the root's peers changed since the previous compaction.
    pub root_changed: bool,
}

impl Layout {
    /// The layout of `snapshot` at `commit`, everything dirty (a new state, or an upgrade).
    pub fn from_snapshot(root: &str, snapshot: &IpamSnapshot, commit: u64) -> Self {
        let peers = snapshot
            .peers
            .iter()
            .map(|(c, p)| (c.clone(), subnets(p)))
            .collect();
        let mut layout = Layout::empty(root, snapshot.networks.clone(), peers, commit);
        for rec in &snapshot.endpoints {
            for cluster in &rec.clusters {
                let key = (cluster.clone(), layout.block_index(rec.external));
                let block = layout.blocks.entry(key.clone()).or_default();
                block.seq = commit;
                block.mappings.insert(rec.external, rec.endpoint);
                layout
                    .index
                    .insert((cluster.clone(), rec.endpoint), rec.external);
                layout.dirty.insert(key);
            }
        }
        layout.root_dirty = true;
        layout
    }

    /// A layout with no blocks.
    pub fn empty(
        root: &str,
        networks: LocalNetworks,
        peers: BTreeMap<ClusterId, ClusterSubnets>,
        checkpoint: u64,
    ) -> Self {
        Layout {
            root: root.to_owned(),
            networks,
            peers,
            blocks: BTreeMap::new(),
            index: HashMap::new(),
            commit: checkpoint,
            checkpoint,
            dirty: BTreeSet::new(),
            root_dirty: false,
        }
    }

    /// Adds a block read from the API (recovery), exact at `seq`.
    pub fn insert_block(&mut self, key: BlockKey, block: Block) {
        for (external, endpoint) in &block.mappings {
            self.index.insert((key.0.clone(), *endpoint), *external);
        }
        self.blocks.insert(key, block);
    }

    /// The block holding `external`.
    pub fn block_index(&self, external: Ipv4Addr) -> u32 {
        u32::from(external).wrapping_sub(self.networks.external_cidr.first_u32()) / BLOCK_SIZE
    }

    /// The first address of block `index`.
    pub fn block_first(&self, index: u32) -> Ipv4Addr {
        Ipv4Addr::from(self.networks.external_cidr.first_u32() + index * BLOCK_SIZE)
    }

    /// The journal entries recording `effects`, one commit's worth, in order. An unreflection
    /// carries the address it frees, which an earlier effect of the same commit may have given
    /// (a map and an unmap of one endpoint queued together), so each effect sees the ones
    /// before it.
    pub fn entries(&self, effects: &[Effect]) -> Result<Vec<JournalEntry>, StoreError> {
        let mut earlier = Earlier::default();
        effects
            .iter()
            .map(|e| {
                let entry = self.entry(e, &earlier)?;
                earlier.record(&entry);
                Ok(entry)
            })
            .collect()
    }

    /// The external address `cluster`'s mapping of `endpoint` has, after the `earlier` effects of
    /// the same commit.
    fn external_of(
        &self,
        earlier: &Earlier,
        cluster: &ClusterId,
        endpoint: Ipv4Addr,
    ) -> Option<Ipv4Addr> {
        let key = (cluster.clone(), endpoint);
        match earlier.mappings.get(&key) {
            Some(changed) => *changed,
            None if earlier.removed.contains(cluster) => None,
            None => self.index.get(&key).copied(),
        }
    }

    /// The journal entry recording `effect`, after the `earlier` ones of its commit.
    fn entry(&self, effect: &Effect, earlier: &Earlier) -> Result<JournalEntry, StoreError> {
        let entry = |op, cluster: &ClusterId| JournalEntry {
            op,
            cluster: cluster.clone(),
            endpoint: None,
            external: None,
            subnets: None,
        };
        Ok(match effect {
            Effect::PeerSet { cluster, networks } => JournalEntry {
                subnets: Some(subnets(networks)),
                ..entry(JournalOp::PeerSet, cluster)
            },
            Effect::PeerRemoved { cluster } => entry(JournalOp::PeerRemoved, cluster),
            Effect::Reflected {
                endpoint,
                external,
                cluster,
            } => JournalEntry {
                endpoint: Some(*endpoint),
                external: Some(*external),
                ..entry(JournalOp::Reflected, cluster)
            },
            Effect::Unreflected { endpoint, cluster } => {
                let external = self.external_of(earlier, cluster, *endpoint);
                let Some(external) = external else {
                    return Err(StoreError::Other(format!(
                        "unreflecting {endpoint} from {cluster}: the stored layout has no such mapping"
                    )));
                };
                JournalEntry {
                    endpoint: Some(*endpoint),
                    external: Some(external),
                    ..entry(JournalOp::Unreflected, cluster)
                }
            }
        })
    }

    /// Applies the entries of commit `commit`. The root part applies when `commit` is past the
    /// checkpoint, a block part when it is past the block's `seq` (so replaying commits a block
    /// already holds changes nothing).
    pub fn apply(&mut self, entries: &[JournalEntry], commit: u64) -> Result<(), StoreError> {
        for e in entries {
            self.apply_entry(e, commit)?;
        }
        self.commit = self.commit.max(commit);
        Ok(())
    }

    fn apply_entry(&mut self, e: &JournalEntry, commit: u64) -> Result<(), StoreError> {
        let bad = |what: &str| StoreError::Corrupt {
            path: format!("IpamStorage journal commit {commit}"),
            message: format!("{:?} entry for {} without {what}", e.op, e.cluster),
        };
        match e.op {
            JournalOp::PeerSet => {
                let s = e.subnets.clone().ok_or_else(|| bad("subnets"))?;
                if commit > self.checkpoint {
                    self.peers.insert(e.cluster.clone(), s);
                    self.root_dirty = true;
                }
            }
            JournalOp::PeerRemoved => {
                if commit > self.checkpoint {
                    self.peers.remove(&e.cluster);
                    self.root_dirty = true;
                }
                self.remove_peer_blocks(&e.cluster, commit);
            }
            JournalOp::Reflected | JournalOp::Unreflected => {
                let endpoint = e.endpoint.ok_or_else(|| bad("endpoint"))?;
                let external = e.external.ok_or_else(|| bad("external"))?;
                if e.op == JournalOp::Reflected {
                    self.reflect(&e.cluster, endpoint, external, commit);
                } else {
                    self.unreflect(&e.cluster, endpoint, external, commit);
                }
            }
        }
        Ok(())
    }

    /// The block of `external` for `cluster`, marked dirty, if `commit` is newer than it.
    fn block_for(
        &mut self,
        cluster: &ClusterId,
        external: Ipv4Addr,
        commit: u64,
    ) -> Option<&mut Block> {
        let key = (cluster.clone(), self.block_index(external));
        let checkpoint = self.checkpoint;
        let block = self.blocks.entry(key.clone()).or_insert_with(|| Block {
            seq: checkpoint,
            mappings: BTreeMap::new(),
        });
        if block.seq >= commit {
            return None;
        }
        self.dirty.insert(key);
        Some(block)
    }

    fn reflect(
        &mut self,
        cluster: &ClusterId,
        endpoint: Ipv4Addr,
        external: Ipv4Addr,
        commit: u64,
    ) {
        if let Some(block) = self.block_for(cluster, external, commit) {
            block.mappings.insert(external, endpoint);
            self.index.insert((cluster.clone(), endpoint), external);
        }
    }

    fn unreflect(
        &mut self,
        cluster: &ClusterId,
        endpoint: Ipv4Addr,
        external: Ipv4Addr,
        commit: u64,
    ) {
        if let Some(block) = self.block_for(cluster, external, commit) {
            block.mappings.remove(&external);
            self.index.remove(&(cluster.clone(), endpoint));
        }
    }

    fn remove_peer_blocks(&mut self, cluster: &ClusterId, commit: u64) {
        let keys: Vec<BlockKey> = self
            .blocks
            .range((cluster.clone(), 0)..=(cluster.clone(), u32::MAX))
            .filter(|(_, b)| b.seq < commit)
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            if let Some(block) = self.blocks.get_mut(&key) {
                for endpoint in block.mappings.values() {
                    self.index.remove(&(cluster.clone(), *endpoint));
                }
                block.mappings.clear();
                self.dirty.insert(key);
            }
        }
    }

    /// The whole IPAM state. Fails when two endpoints share an address or one endpoint has two.
    pub fn snapshot(&self) -> Result<IpamSnapshot, StoreError> {
        let mut endpoints: BTreeMap<Ipv4Addr, EndpointRecord> = BTreeMap::new();
        let mut holders: HashMap<Ipv4Addr, Ipv4Addr> = HashMap::new();
        for ((cluster, _), block) in &self.blocks {
            for (external, endpoint) in &block.mappings {
                let clash = |message: String| StoreError::Corrupt {
                    path: self.root.clone(),
                    message,
                };
                match holders.insert(*external, *endpoint) {
                    Some(other) if other != *endpoint => {
                        return Err(clash(format!(
                            "{external} is held by {other} and {endpoint}"
                        )));
                    }
                    _ => {}
                }
                let rec = endpoints
                    .entry(*endpoint)
                    .or_insert_with(|| EndpointRecord {
                        endpoint: *endpoint,
                        external: *external,
                        clusters: Vec::new(),
                    });
                if rec.external != *external {
                    return Err(clash(format!(
                        "{endpoint} holds {} and {external}",
                        rec.external
                    )));
                }
                rec.clusters.push(cluster.clone());
            }
        }
        Ok(IpamSnapshot {
            networks: self.networks.clone(),
            peers: self
                .peers
                .iter()
                .map(|(c, s)| (c.clone(), peer_networks(s)))
                .collect(),
            endpoints: endpoints.into_values().collect(),
        })
    }

    /// Name of a block object.
    pub fn block_name(&self, key: &BlockKey) -> String {
        format!("{}-b-{}-{}", self.root, key.0, key.1)
    }

    /// Name of the journal segment of `commit`.
    pub fn segment_name(&self, commit: u64) -> String {
        segment_name(&self.root, commit)
    }

    /// The segment recording `entries` as commit `commit`.
    pub fn segment(
        &self,
        commit: u64,
        entries: Vec<JournalEntry>,
        writer: &str,
    ) -> IpamStorageSpec {
        IpamStorageSpec {
            writer: Some(writer.to_owned()),
            journal: Some(IpamJournal { commit, entries }),
            ..Default::default()
        }
    }

    /// The writes that make the blocks and the root exact at the current commit. The blocks it
    /// covers are no longer dirty (commits after it dirty them again) and hold `seq` = its
    /// checkpoint; empty ones are forgotten. The checkpoint moves once the writes are done
    /// ([`Layout::compacted`]); if they fail, [`Layout::compaction_failed`] marks the blocks
    /// dirty again, so the next compaction writes them.
    pub fn compaction(&mut self, writer: &str) -> Compaction {
        let at = self.commit;
        let covers = std::mem::take(&mut self.dirty);
        let mut blocks = Vec::new();
        let mut drop_blocks = Vec::new();
        for key in &covers {
            let name = self.block_name(key);
            let first = self.block_first(key.1);
            match self.blocks.get_mut(key) {
                Some(block) if !block.mappings.is_empty() => {
                    block.seq = at;
                    blocks.push((name, block_spec(writer, key, first, block)));
                }
                // empty, or forgotten by an earlier compaction that then failed
                _ => drop_blocks.push(name),
            }
        }
        self.blocks.retain(|_, b| !b.mappings.is_empty());
        Compaction {
            checkpoint: at,
            blocks,
            root: self.root_spec(writer, at),
            drop_blocks,
            covers,
            root_changed: std::mem::take(&mut self.root_dirty),
        }
    }

    /// The root object at checkpoint `at`.
    pub fn root_spec(&self, writer: &str, at: u64) -> IpamStorageSpec {
        let l = &self.networks;
        let mut ranges: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        for ((cluster, index), block) in &self.blocks {
            if !block.mappings.is_empty() {
                ranges.entry(cluster.to_string()).or_default().push(*index);
            }
        }
        IpamStorageSpec {
            layout: Some(LAYOUT_VERSION),
            writer: Some(writer.to_owned()),
            checkpoint: Some(at),
            networks: Some(IpamNetworks {
                pod_cidr: l.pod_cidr,
                service_cidr: l.service_cidr,
                external_cidr: l.external_cidr,
                pools: l.pools.clone(),
                reserved: l.reserved.clone(),
            }),
            cluster_subnets: self
                .peers
                .iter()
                .map(|(c, s)| (c.to_string(), s.clone()))
                .collect(),
            blocks: ranges
                .into_iter()
                .map(|(c, idx)| (c, super::codec::encode_ranges(&idx)))
                .collect(),
            ..Default::default()
        }
    }

    /// Records that `compaction` is durable: every commit up to its checkpoint is in the blocks.
    pub fn compacted(&mut self, compaction: &Compaction) {
        self.checkpoint = self.checkpoint.max(compaction.checkpoint);
    }

    /// Records that `compaction` failed (some of its writes may have landed): what it covered
    /// is dirty again. The checkpoint stays.
    pub fn compaction_failed(&mut self, compaction: &Compaction) {
        self.dirty.extend(compaction.covers.iter().cloned());
        self.root_dirty |= compaction.root_changed;
    }
}

/// The object of block `key` (first address `first`) exact at `block.seq`.
fn block_spec(writer: &str, key: &BlockKey, first: Ipv4Addr, block: &Block) -> IpamStorageSpec {
    IpamStorageSpec {
        writer: Some(writer.to_owned()),
        block: Some(IpamBlock {
            cluster: key.0.clone(),
            first,
            seq: block.seq,
            mappings: block.mappings.clone(),
        }),
        ..Default::default()
    }
}

/// Name of the journal segment of `commit` of the state rooted at `root`.
pub fn segment_name(root: &str, commit: u64) -> String {
    format!("{root}-j-{commit:012}")
}

#[cfg(test)]
#[path = "layout_tests.rs"]
mod tests;
