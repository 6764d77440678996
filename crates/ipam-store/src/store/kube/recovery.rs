//! Recovery of the IPAM state from the listed `IpamStorage` objects, pure: which layout they are
//! in, whether every object the root names is there, which segments to replay, what is garbage.
//! A missing or unreadable object is an error that names it, never an empty state.

use std::collections::{BTreeMap, BTreeSet};

use isthmus_api::{IpamStorage, IpamStorageSpec};
use isthmus_ipam::{ClusterId, EndpointRecord, IpamSnapshot, LocalNetworks};

use super::codec::{decode_ranges, peer_networks};
use super::layout::{Block, LAYOUT_VERSION, Layout};
use crate::StoreError;

/// What the objects hold.
#[derive(Debug)]
pub enum Stored {
    /// No object at all: a new state.
    Empty,
    /// The first, sharded layout (root + `shardCount` shards), to upgrade.
    Legacy {
        snapshot: IpamSnapshot,
        shards: Vec<String>,
    },
    /// Root + blocks + journal, replayed.
    Current {
        layout: Layout,
        /// Objects nothing needs any more (old segments, dropped blocks, legacy shards).
        garbage: Vec<String>,
        /// Segments replayed past the checkpoint.
        replayed: usize,
    },
}

fn corrupt(path: &str, message: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        path: format!("IpamStorage {path}"),
        message: message.into(),
    }
}

/// Sorts the objects of the state rooted at `root` and recovers it.
pub fn recover(root: &str, objects: Vec<(String, IpamStorageSpec)>) -> Result<Stored, StoreError> {
    let mut objects: BTreeMap<String, IpamStorageSpec> = objects.into_iter().collect();
    let Some(root_spec) = objects.remove(root) else {
        if objects.is_empty() {
            return Ok(Stored::Empty);
        }
        let names: Vec<&String> = objects.keys().take(5).collect();
        return Err(corrupt(
            root,
            format!(
                "the root object is missing but {} objects of its state exist ({names:?}…)",
                objects.len()
            ),
        ));
    };
    match root_spec.layout {
        None => legacy(root, &root_spec, objects),
        Some(LAYOUT_VERSION) => current(root, &root_spec, objects),
        Some(other) => Err(corrupt(
            root,
            format!("layout {other} is unknown to this version (it knows {LAYOUT_VERSION})"),
        )),
    }
}

fn networks_of(root: &str, spec: &IpamStorageSpec) -> Result<LocalNetworks, StoreError> {
    let n = spec
        .networks
        .clone()
        .ok_or_else(|| corrupt(root, "the root has no networks"))?;
    Ok(LocalNetworks {
        pod_cidr: n.pod_cidr,
        service_cidr: n.service_cidr,
        external_cidr: n.external_cidr,
        pools: n.pools,
        reserved: n.reserved,
    })
}

fn cluster(root: &str, id: &str) -> Result<ClusterId, StoreError> {
    id.parse()
        .map_err(|e| corrupt(root, format!("cluster ID {id:?}: {e}")))
}

/// The first layout: every shard `<root>-<i>` for `i < shardCount` must exist.
fn legacy(
    root: &str,
    spec: &IpamStorageSpec,
    mut objects: BTreeMap<String, IpamStorageSpec>,
) -> Result<Stored, StoreError> {
    let networks = networks_of(root, spec)?;
    let count = spec.shard_count.unwrap_or(0);
    let mut peers = BTreeMap::new();
    for (id, s) in &spec.cluster_subnets {
        peers.insert(cluster(root, id)?, peer_networks(s));
    }
    let mut endpoints = Vec::new();
    let mut shards = Vec::new();
    for i in 0..count {
        let name = format!("{root}-{i}");
        let shard = objects.remove(&name).ok_or_else(|| {
            corrupt(
                &name,
                format!("shard {i} of {count} is missing (sharded layout)"),
            )
        })?;
        if shard.shard != Some(i) {
            return Err(corrupt(&name, format!("is not shard {i}")));
        }
        for (ep, m) in shard.endpoint_mappings {
            endpoints.push(EndpointRecord {
                endpoint: ep,
                external: m.ip,
                clusters: m.clusters.into_iter().collect(),
            });
        }
        shards.push(name);
    }
    endpoints.sort_by_key(|r| r.endpoint);
    let snapshot = IpamSnapshot {
        networks,
        peers,
        endpoints,
    };
    Ok(Stored::Legacy { snapshot, shards })
}

fn current(
    root: &str,
    spec: &IpamStorageSpec,
    objects: BTreeMap<String, IpamStorageSpec>,
) -> Result<Stored, StoreError> {
    let networks = networks_of(root, spec)?;
    let checkpoint = spec
        .checkpoint
        .ok_or_else(|| corrupt(root, "the root has no checkpoint"))?;
    let mut peers = BTreeMap::new();
    for (id, s) in &spec.cluster_subnets {
        peers.insert(cluster(root, id)?, s.clone());
    }
    let mut layout = Layout::empty(root, networks, peers, checkpoint);
    let mut listed = BTreeSet::new();
    for (id, ranges) in &spec.blocks {
        let c = cluster(root, id)?;
        let idx = decode_ranges(ranges).ok_or_else(|| {
            corrupt(
                root,
                format!("blocks of {id}: {ranges:?} is not a range list"),
            )
        })?;
        listed.extend(idx.into_iter().map(|i| (c.clone(), i)));
    }
    let mut garbage = Vec::new();
    let mut segments = BTreeMap::new();
    for (name, o) in objects {
        if let Some(b) = o.block {
            let index = layout.block_index(b.first);
            let key = (b.cluster.clone(), index);
            if layout.block_first(index) != b.first || layout.block_name(&key) != name {
                return Err(corrupt(
                    &name,
                    format!("is not the block of {} at {}", b.cluster, b.first),
                ));
            }
            if listed.remove(&key) || b.seq > checkpoint {
                let seq = b.seq.max(checkpoint);
                layout.insert_block(
                    key,
                    Block {
                        seq,
                        mappings: b.mappings,
                    },
                );
            } else {
                garbage.push(name);
            }
        } else if let Some(j) = o.journal {
            if j.commit > checkpoint {
                segments.insert(j.commit, (name, j.entries));
            } else {
                garbage.push(name);
            }
        } else if o.shard.is_some() {
            garbage.push(name);
        } else {
            return Err(corrupt(&name, "is neither a block nor a journal segment"));
        }
    }
    if let Some(key) = listed.into_iter().next() {
        let name = layout.block_name(&key);
        return Err(corrupt(
            &name,
            "is missing: the root lists it at the checkpoint",
        ));
    }
    let replayed = segments.len();
    for (expected, (commit, (name, entries))) in (checkpoint + 1..).zip(segments) {
        if commit != expected {
            let missing = layout.segment_name(expected);
            return Err(corrupt(
                &missing,
                format!("journal segment missing before {name}"),
            ));
        }
        layout.apply(&entries, commit)?;
    }
    Ok(Stored::Current {
        layout,
        garbage,
        replayed,
    })
}

/// The IPAM state the objects of `root` describe (for readers such as `isthmus status`): the
/// snapshot after replaying the journal. The legacy layout is read too.
pub fn stored_snapshot(
    root: &str,
    objects: &[IpamStorage],
) -> Result<Option<IpamSnapshot>, StoreError> {
    let named = objects
        .iter()
        .map(|o| (o.metadata.name.clone().unwrap_or_default(), o.spec.clone()))
        .collect();
    match recover(root, named)? {
        Stored::Empty => Ok(None),
        Stored::Legacy { snapshot, .. } => Ok(Some(snapshot)),
        Stored::Current { layout, .. } => layout.snapshot().map(Some),
    }
}
