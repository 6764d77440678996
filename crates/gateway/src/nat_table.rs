//! [`NatTable`]: the NatMapping objects of the namespace as the watch saw them, per object and
//! merged per peer, so that one object's change becomes the [`MapDelta`] of just the entries
//! whose effective target changed. Pure: the watch feeds it, the controller sends the deltas.
//!
//! A peer's entries are the union of its objects (its shards, and during an upgrade the older
//! objects: the whole-peer object, or the 1,024-address shards `<peer>.block-<i>`). Should two
//! objects of a peer name the same new IP, **the object with the greatest name wins**: a shard
//! `<peer>.block256-<i>` sorts after both older kinds, so the shard, written from the IPAM more
//! recently, is believed. [`merge`] applies the same rule for the full plan.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;

use isthmus_api::NatMapping;
use isthmus_dataplane::firewall::delta::MapDelta;
use kube::ResourceExt;

/// New IP → target.
pub type Mappings = BTreeMap<Ipv4Addr, Ipv4Addr>;

/// Per new IP: every object that names it, with its target.
type Contributions = Vec<(Arc<str>, Ipv4Addr)>;

/// Every NatMapping object's entries, and per peer the entries merged.
#[derive(Debug, Default)]
pub struct NatTable {
    /// Object name → (peer, entries).
    objects: HashMap<Arc<str>, (String, Mappings)>,
    /// Peer → new IP → the objects naming it.
    peers: HashMap<String, BTreeMap<Ipv4Addr, Contributions>>,
}

impl NatTable {
    /// Records that object `name` now holds `now` (`None`: it is gone) and returns what changed
    /// in the merged entries of the peers concerned (empty deltas left out).
    pub fn update(&mut self, name: &str, now: Option<(&str, &Mappings)>) -> Vec<MapDelta> {
        let name: Arc<str> = Arc::from(name);
        let before = self.objects.remove(&name);
        // keys touched, per peer, with their effective target before the change
        let mut touched: BTreeMap<String, BTreeMap<Ipv4Addr, Option<Ipv4Addr>>> = BTreeMap::new();
        let sides = before.iter().map(|(p, m)| (p.as_str(), m));
        for (peer, m) in sides.chain(now) {
            let keys = touched.entry(peer.to_owned()).or_default();
            for key in m.keys() {
                keys.entry(*key)
                    .or_insert_with(|| self.effective(peer, *key));
            }
        }
        if let Some((peer, m)) = &before {
            self.withdraw(peer, &name, m);
        }
        if let Some((peer, m)) = now {
            self.contribute(peer, &name, m);
            self.objects.insert(name, (peer.to_owned(), m.clone()));
        }
        touched
            .into_iter()
            .map(|(peer, keys)| {
                let entries = keys
                    .into_iter()
                    .filter_map(|(key, was)| {
                        let is = self.effective(&peer, key);
                        (is != was).then_some((key, is))
                    })
                    .collect();
                MapDelta { peer, entries }
            })
            .filter(|d| !d.is_empty())
            .collect()
    }

    /// The merged entries of `peer`.
    pub fn entries(&self, peer: &str) -> Mappings {
        self.peers
            .get(peer)
            .into_iter()
            .flatten()
            .filter_map(|(key, _)| self.effective(peer, *key).map(|t| (*key, t)))
            .collect()
    }

    /// How many objects it holds.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// Whether it holds no object.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    fn effective(&self, peer: &str, key: Ipv4Addr) -> Option<Ipv4Addr> {
        let by = self.peers.get(peer)?.get(&key)?;
        by.iter().max_by(|a, b| a.0.cmp(&b.0)).map(|(_, t)| *t)
    }

    fn withdraw(&mut self, peer: &str, name: &Arc<str>, m: &Mappings) {
        let Some(keys) = self.peers.get_mut(peer) else {
            return;
        };
        for key in m.keys() {
            if let Some(by) = keys.get_mut(key) {
                by.retain(|(n, _)| n != name);
                if by.is_empty() {
                    keys.remove(key);
                }
            }
        }
        if keys.is_empty() {
            self.peers.remove(peer);
        }
    }

    fn contribute(&mut self, peer: &str, name: &Arc<str>, m: &Mappings) {
        let keys = self.peers.entry(peer.to_owned()).or_default();
        for (key, target) in m {
            keys.entry(*key).or_default().push((name.clone(), *target));
        }
    }
}

/// The merged entries of the objects given (one peer's), by the same rule as [`NatTable`]: the
/// object with the greatest name wins a contested new IP.
pub fn merge<'a>(objects: impl IntoIterator<Item = &'a NatMapping>) -> Mappings {
    let mut sorted: Vec<&NatMapping> = objects.into_iter().collect();
    sorted.sort_by_key(|nm| nm.name_any());
    let mut out = Mappings::new();
    for nm in sorted {
        out.extend(nm.spec.cluster_mappings.iter().map(|(k, v)| (*k, *v)));
    }
    out
}

#[cfg(test)]
#[path = "nat_table_tests.rs"]
mod tests;
