//! [`KubeStore`]: the IPAM state as `IpamStorage` objects. A root object `<name>` holds the
//! networks and per-peer decisions; endpoint mappings live in `<name>-<i>` shard objects, the
//! shard chosen by the endpoint IP, so each object stays far below the API's ~1.5 MB limit and a
//! batch rewrites only the objects it changed.
//!
//! Every write is a replace carrying the last seen `resourceVersion`: a second writer (a stale
//! replica) gets a conflict and stops instead of overwriting. There is no separate log: the
//! objects are the state, so `compact` rewrites everything and `wants_compaction` is never true.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use isthmus_api::{ClusterSubnets, EndpointMapping, IpamNetworks, IpamStorage, IpamStorageSpec};
use isthmus_ipam::{ClusterId, Effect, EndpointRecord, IpamSnapshot, LocalNetworks, PeerNetworks};
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use tokio::runtime::Handle;

use super::{Recovered, Store};
use crate::StoreError;

/// Label naming the IPAM a storage object belongs to.
pub const LABEL_IPAM: &str = "net.isthmus.io/ipam";

/// `IpamStorage` objects through a Kubernetes client.
pub struct KubeStore {
    api: Api<IpamStorage>,
    runtime: Handle,
    name: String,
    shard_count: u32,
    root: IpamStorageSpec,
    shards: Vec<IpamStorageSpec>,
    /// Last seen resourceVersion per object name; absent = not created yet.
    versions: BTreeMap<String, String>,
}

impl std::fmt::Debug for KubeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeStore")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl KubeStore {
    /// A store named `name` in `namespace`, with `shard_count` endpoint shards for a new state
    /// (an existing state keeps the count it was created with). Must be used off the runtime's
    /// worker threads (the durable layer calls it from its committer thread).
    pub fn new(client: kube::Client, namespace: &str, name: &str, shard_count: u32) -> Self {
        KubeStore {
            api: Api::namespaced(client, namespace),
            runtime: Handle::current(),
            name: name.to_owned(),
            shard_count: shard_count.max(1),
            root: IpamStorageSpec::default(),
            shards: Vec::new(),
            versions: BTreeMap::new(),
        }
    }

    fn shard_name(&self, i: u32) -> String {
        format!("{}-{i}", self.name)
    }

    fn shard_of(&self, ip: Ipv4Addr) -> usize {
        // Fibonacci hashing spreads consecutive addresses over the shards.
        (u32::from(ip).wrapping_mul(0x9E37_79B9) % self.shard_count) as usize
    }

    fn reset_shards(&mut self) {
        self.shards = (0..self.shard_count)
            .map(|i| IpamStorageSpec {
                shard: Some(i),
                ..Default::default()
            })
            .collect();
    }

    /// Writes one object: create when never seen, else replace at the last seen version.
    fn write(&mut self, name: String, spec: IpamStorageSpec) -> Result<(), StoreError> {
        let mut obj = IpamStorage::new(&name, spec);
        obj.metadata = ObjectMeta {
            name: Some(name.clone()),
            labels: Some([(LABEL_IPAM.to_owned(), self.name.clone())].into()),
            resource_version: self.versions.get(&name).cloned(),
            ..Default::default()
        };
        let api = self.api.clone();
        let pp = PostParams::default();
        let created = self.versions.contains_key(&name);
        let result = self.runtime.block_on(async {
            if created {
                api.replace(&name, &pp, &obj).await
            } else {
                api.create(&pp, &obj).await
            }
        });
        match result {
            Ok(o) => {
                let rv = o.metadata.resource_version.unwrap_or_default();
                self.versions.insert(name, rv);
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.is_conflict() || s.is_already_exists() => {
                Err(StoreError::Conflict { name })
            }
            Err(e) => Err(e.into()),
        }
    }

    fn write_root(&mut self) -> Result<(), StoreError> {
        let spec = self.root.clone();
        self.write(self.name.clone(), spec)
    }

    fn write_shard(&mut self, i: usize) -> Result<(), StoreError> {
        let spec = self.shards[i].clone();
        self.write(self.shard_name(i as u32), spec)
    }

    /// Applies one effect to the mirrored objects; returns (root dirty, dirty shards).
    fn mirror(&mut self, effect: &Effect, dirty: &mut BTreeSet<usize>) -> bool {
        match effect {
            Effect::PeerSet { cluster, networks } => {
                self.root
                    .cluster_subnets
                    .insert(cluster.to_string(), subnets(networks));
                true
            }
            Effect::PeerRemoved { cluster } => {
                self.root.cluster_subnets.remove(cluster.as_str());
                for (i, shard) in self.shards.iter_mut().enumerate() {
                    let before = shard.endpoint_mappings.len();
                    let mut touched = false;
                    shard.endpoint_mappings.retain(|_, m| {
                        touched |= m.clusters.remove(cluster);
                        !m.clusters.is_empty()
                    });
                    if touched || before != shard.endpoint_mappings.len() {
                        dirty.insert(i);
                    }
                }
                true
            }
            Effect::Reflected {
                endpoint,
                external,
                cluster,
            } => {
                let i = self.shard_of(*endpoint);
                let m = self.shards[i]
                    .endpoint_mappings
                    .entry(*endpoint)
                    .or_insert_with(|| EndpointMapping {
                        ip: *external,
                        clusters: BTreeSet::new(),
                    });
                m.clusters.insert(cluster.clone());
                dirty.insert(i);
                false
            }
            Effect::Unreflected { endpoint, cluster } => {
                let i = self.shard_of(*endpoint);
                let map = &mut self.shards[i].endpoint_mappings;
                if let Some(m) = map.get_mut(endpoint) {
                    m.clusters.remove(cluster);
                    if m.clusters.is_empty() {
                        map.remove(endpoint);
                    }
                }
                dirty.insert(i);
                false
            }
        }
    }

    fn snapshot_of_objects(&self) -> Result<IpamSnapshot, StoreError> {
        let n = self
            .root
            .networks
            .clone()
            .ok_or_else(|| StoreError::Corrupt {
                path: self.name.clone(),
                message: "root IpamStorage has no networks".into(),
            })?;
        let networks = LocalNetworks {
            pod_cidr: n.pod_cidr,
            service_cidr: n.service_cidr,
            external_cidr: n.external_cidr,
            pools: n.pools,
            reserved: n.reserved,
        };
        let mut peers = BTreeMap::new();
        for (id, s) in &self.root.cluster_subnets {
            let cluster: ClusterId = id.parse().map_err(|e| StoreError::Corrupt {
                path: self.name.clone(),
                message: format!("cluster ID {id:?}: {e}"),
            })?;
            peers.insert(cluster, peer_networks(s));
        }
        let mut endpoints: Vec<EndpointRecord> = self
            .shards
            .iter()
            .flat_map(|s| s.endpoint_mappings.iter())
            .map(|(ep, m)| EndpointRecord {
                endpoint: *ep,
                external: m.ip,
                clusters: m.clusters.iter().cloned().collect(),
            })
            .collect();
        endpoints.sort_by_key(|r| r.endpoint);
        Ok(IpamSnapshot {
            networks,
            peers,
            endpoints,
        })
    }
}

impl Store for KubeStore {
    fn load(&mut self) -> Result<Option<Recovered>, StoreError> {
        let api = self.api.clone();
        let lp = ListParams::default().labels(&format!("{LABEL_IPAM}={}", self.name));
        let list = self.runtime.block_on(api.list(&lp))?;
        let mut objects: BTreeMap<String, IpamStorage> = BTreeMap::new();
        for o in list.items {
            let name = o.metadata.name.clone().unwrap_or_default();
            self.versions.insert(
                name.clone(),
                o.metadata.resource_version.clone().unwrap_or_default(),
            );
            objects.insert(name, o);
        }
        let Some(root) = objects.remove(&self.name) else {
            return Ok(None);
        };
        self.root = root.spec;
        self.shard_count = self.root.shard_count.unwrap_or(self.shard_count).max(1);
        self.reset_shards();
        for i in 0..self.shard_count {
            if let Some(o) = objects.remove(&self.shard_name(i)) {
                self.shards[i as usize] = o.spec;
            }
        }
        let snapshot = self.snapshot_of_objects()?;
        Ok(Some(Recovered {
            snapshot,
            log: Vec::new(),
        }))
    }

    fn append(&mut self, effects: &[Effect]) -> Result<(), StoreError> {
        let mut dirty = BTreeSet::new();
        let mut root_dirty = false;
        for e in effects {
            root_dirty |= self.mirror(e, &mut dirty);
        }
        if root_dirty {
            self.write_root()?;
        }
        for i in dirty {
            self.write_shard(i)?;
        }
        Ok(())
    }

    fn compact(&mut self, snapshot: &IpamSnapshot) -> Result<(), StoreError> {
        let l = &snapshot.networks;
        self.root = IpamStorageSpec {
            shard_count: Some(self.shard_count),
            networks: Some(IpamNetworks {
                pod_cidr: l.pod_cidr,
                service_cidr: l.service_cidr,
                external_cidr: l.external_cidr,
                pools: l.pools.clone(),
                reserved: l.reserved.clone(),
            }),
            cluster_subnets: snapshot
                .peers
                .iter()
                .map(|(c, p)| (c.to_string(), subnets(p)))
                .collect(),
            ..Default::default()
        };
        self.reset_shards();
        for rec in &snapshot.endpoints {
            let i = self.shard_of(rec.endpoint);
            let clusters = rec.clusters.iter().cloned().collect();
            self.shards[i].endpoint_mappings.insert(
                rec.endpoint,
                EndpointMapping {
                    ip: rec.external,
                    clusters,
                },
            );
        }
        self.write_root()?;
        for i in 0..self.shards.len() {
            self.write_shard(i)?;
        }
        Ok(())
    }

    fn wants_compaction(&self) -> bool {
        false
    }

    fn describe(&self) -> String {
        format!("kube:{}/{}", self.api.resource_url(), self.name)
    }
}

fn subnets(p: &PeerNetworks) -> ClusterSubnets {
    ClusterSubnets {
        remote_pod_cidr: p.remote_pod,
        remote_nat_pod_cidr: p.remote_pod_view,
        remote_external_cidr: p.remote_external,
        remote_nat_external_cidr: p.remote_external_view,
        local_nat_pod_cidr: p.local_pod_nat,
        local_nat_external_cidr: p.local_external_nat,
    }
}

fn peer_networks(s: &ClusterSubnets) -> PeerNetworks {
    PeerNetworks {
        remote_pod: s.remote_pod_cidr,
        remote_pod_view: s.remote_nat_pod_cidr,
        remote_external: s.remote_external_cidr,
        remote_external_view: s.remote_nat_external_cidr,
        local_pod_nat: s.local_nat_pod_cidr,
        local_external_nat: s.local_nat_external_cidr,
    }
}
