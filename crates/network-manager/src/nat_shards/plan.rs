//! The pure half of NatMapping publishing: what the publisher believes it has written
//! ([`Published`]: per shard a digest, not the entries), and which shards to write or delete,
//! either for the blocks a batch changed ([`plan_dirty`]) or, rarely, for everything compared
//! with what the API lists ([`plan_full`], which also retires the older whole-peer objects).
//! Values in, values out: the IPAM reads and the API calls are the caller's.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::net::Ipv4Addr;

use isthmus_api::ClusterId;

/// New IP (as the peer addresses it) → endpoint IP.
pub type Mappings = BTreeMap<Ipv4Addr, Ipv4Addr>;

/// A shard: one peer, one IPAM block.
pub type ShardKey = (ClusterId, u32);

/// A digest of a shard's entries: equal entries, equal digests (within one process).
pub fn digest(m: &Mappings) -> u64 {
    let mut h = DefaultHasher::new();
    m.hash(&mut h);
    h.finish()
}

/// The shards the publisher wrote (or found) and their digests: what the API holds as far as
/// this writer knows. A periodic full pass repairs it if someone else changed the API.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Published {
    shards: BTreeMap<ShardKey, u64>,
}

impl Published {
    /// The published blocks of `peer`.
    pub fn blocks_of(&self, peer: &ClusterId) -> Vec<u32> {
        self.shards
            .range((peer.clone(), 0)..=(peer.clone(), u32::MAX))
            .map(|((_, b), _)| *b)
            .collect()
    }

    /// Records a plan as carried out.
    pub fn record(&mut self, plan: &ShardPlan) {
        for (key, m) in &plan.write {
            self.wrote(key, m);
        }
        for key in &plan.delete {
            self.removed(key);
        }
    }

    /// Records one shard written with `m`.
    pub fn wrote(&mut self, key: &ShardKey, m: &Mappings) {
        self.shards.insert(key.clone(), digest(m));
    }

    /// Records one shard deleted.
    pub fn removed(&mut self, key: &ShardKey) {
        self.shards.remove(key);
    }

    /// How many shards are published.
    pub fn len(&self) -> usize {
        self.shards.len()
    }

    /// Whether no shard is published.
    pub fn is_empty(&self) -> bool {
        self.shards.is_empty()
    }
}

/// The API writes that make the shards equal to the IPAM.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardPlan {
    /// Shards to create or replace (server-side apply), with their whole content.
    pub write: Vec<(ShardKey, Mappings)>,
    /// Shards to delete (they became empty, or their peer is gone).
    pub delete: Vec<ShardKey>,
    /// Older whole-peer NatMappings (by name) to delete, after the writes.
    pub retire: Vec<String>,
}

impl ShardPlan {
    /// Whether the plan does nothing.
    pub fn is_empty(&self) -> bool {
        self.write.is_empty() && self.delete.is_empty() && self.retire.is_empty()
    }

    /// How many API calls it takes.
    pub fn calls(&self) -> usize {
        self.write.len() + self.delete.len() + self.retire.len()
    }
}

/// The batch path. `read`: the content the IPAM has now for every dirty shard (empty when the
/// block holds nothing or the peer is gone). `writable`: whether a peer may be written (it has
/// a live ForeignCluster; a peer being removed is left to its removal, which deletes by label).
/// Only shards whose content differs from what was published are written; empty ones that were
/// published are deleted.
pub fn plan_dirty(
    read: BTreeMap<ShardKey, Mappings>,
    published: &Published,
    writable: impl Fn(&ClusterId) -> bool,
) -> ShardPlan {
    let mut plan = ShardPlan::default();
    for (key, m) in read {
        let current = published.shards.get(&key);
        if m.is_empty() {
            if current.is_some() {
                plan.delete.push(key);
            }
        } else if writable(&key.0) && current != Some(&digest(&m)) {
            plan.write.push((key, m));
        }
    }
    plan
}

/// What the API lists: shards by key, and the older whole-peer objects by name and peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listed {
    pub shards: BTreeMap<ShardKey, Mappings>,
    pub legacy: BTreeMap<String, ClusterId>,
}

/// The full pass. `desired`: every non-empty block of every peer with a live ForeignCluster;
/// `known`: every peer of the IPAM. Shards that differ are written; shards of live peers that
/// should not exist and every shard of a peer the IPAM forgot are deleted; an older whole-peer
/// object is retired once its peer's shards are written (a peer the IPAM knows without a live
/// ForeignCluster is being removed: its objects are left to that removal).
pub fn plan_full(
    desired: &BTreeMap<ShardKey, Mappings>,
    known: &BTreeSet<ClusterId>,
    live: &BTreeSet<ClusterId>,
    listed: &Listed,
) -> ShardPlan {
    let write = desired
        .iter()
        .filter(|(key, m)| listed.shards.get(*key) != Some(*m))
        .map(|(k, m)| (k.clone(), m.clone()))
        .collect();
    let delete = listed
        .shards
        .keys()
        .filter(|key| !desired.contains_key(*key))
        .filter(|(peer, _)| live.contains(peer) || !known.contains(peer))
        .cloned()
        .collect();
    let retire = listed
        .legacy
        .iter()
        .filter(|(_, peer)| live.contains(*peer) || !known.contains(*peer))
        .map(|(name, _)| name.clone())
        .collect();
    ShardPlan {
        write,
        delete,
        retire,
    }
}

/// What is published once a full plan is carried out: `desired`, plus the listed shards it
/// left alone (those of peers being removed).
pub fn published_after_full(
    desired: &BTreeMap<ShardKey, Mappings>,
    listed: &Listed,
    plan: &ShardPlan,
) -> Published {
    let deleted: BTreeSet<&ShardKey> = plan.delete.iter().collect();
    let kept = listed
        .shards
        .iter()
        .filter(|(k, _)| !deleted.contains(k) && !desired.contains_key(*k));
    let shards = desired
        .iter()
        .chain(kept)
        .map(|(k, m)| (k.clone(), digest(m)))
        .collect();
    Published { shards }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
