//! [`Publisher`]: the I/O half of NatMapping publishing. The batch path takes the blocks the
//! IPAM's durable batches changed, reads each one alone (one short IPAM lock per block, no API
//! call under it) and writes or deletes only those shards: no LIST, cost proportional to the
//! batch. The full pass (at start and every `resync`) lists the ForeignClusters and our
//! NatMappings, reads every block and repairs any drift; at start it is also the upgrade from
//! the older one-object-per-peer layout (the shards are written, then the old object deleted).

use std::collections::{BTreeMap, BTreeSet};

use futures::{StreamExt, stream};
use isthmus_api::{ClusterId, ForeignCluster, NatMapping};
use isthmus_ipam::NatDirty;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};

use super::plan::{
    Listed, Mappings, Published, ShardKey, ShardPlan, plan_dirty, plan_full, published_after_full,
};
use crate::context::Context;
use crate::error::Result;
use crate::foreign_cluster::ignore_not_found;
use crate::objects::{self, FIELD_MANAGER};

/// API calls of one step of a plan in flight at once.
const IN_FLIGHT: usize = 8;

/// The one writer of the NatMapping shards and what it knows it published.
#[derive(Debug, Default)]
pub struct Publisher {
    published: Published,
    /// Peers with a live ForeignCluster, with the owner reference their shards carry.
    owners: BTreeMap<ClusterId, Option<OwnerReference>>,
    /// Blocks taken from the IPAM and not yet published (kept across a failed attempt).
    pending: NatDirty,
}

impl Publisher {
    /// The batch path: publishes the blocks changed since the last call.
    pub async fn sync_dirty(&mut self, ctx: &Context) -> Result<ShardPlan> {
        self.pending.merge(ctx.ipam.take_nat_changes());
        if self.pending.is_empty() {
            return Ok(ShardPlan::default());
        }
        let unknown_owner = {
            let peers = self.pending.peers.iter();
            let block_peers = self.pending.blocks.iter().map(|(p, _)| p);
            peers
                .chain(block_peers)
                .any(|p| !self.owners.contains_key(p))
        };
        if unknown_owner {
            // a new peering: once per peer, not per batch
            self.refresh_owners(ctx).await?;
        }
        let read = self.read_dirty(ctx)?;
        let plan = plan_dirty(read, &self.published, |p| self.owners.contains_key(p));
        self.carry_out(ctx, &plan).await?;
        self.pending = NatDirty::default();
        Ok(plan)
    }

    /// The dirty shards' content, one bounded IPAM read per block.
    fn read_dirty(&self, ctx: &Context) -> Result<BTreeMap<ShardKey, Mappings>> {
        let mut keys: BTreeSet<ShardKey> = self.pending.blocks.clone();
        for peer in &self.pending.peers {
            let blocks = ctx.ipam.read(|i| i.nat_blocks(peer))?;
            let published = self.published.blocks_of(peer);
            keys.extend(
                blocks
                    .into_iter()
                    .chain(published)
                    .map(|b| (peer.clone(), b)),
            );
        }
        let mut read = BTreeMap::new();
        for (peer, block) in keys {
            let m = ctx.ipam.read(|i| i.nat_block(&peer, block))?;
            read.insert((peer, block), m);
        }
        Ok(read)
    }

    /// The full pass: everything compared with what the API lists.
    pub async fn sync_full(&mut self, ctx: &Context) -> Result<ShardPlan> {
        // taken first: whatever changes from here on is read below or in the next batch
        drop(ctx.ipam.take_nat_changes());
        self.pending = NatDirty::default();
        self.refresh_owners(ctx).await?;
        let known: BTreeSet<ClusterId> = ctx
            .ipam
            .read(|i| i.peers().map(|(c, _)| c.clone()).collect())?;
        let live: BTreeSet<ClusterId> = known
            .iter()
            .filter(|p| self.owners.contains_key(*p))
            .cloned()
            .collect();
        let mut desired = BTreeMap::new();
        for peer in &live {
            for block in ctx.ipam.read(|i| i.nat_blocks(peer))? {
                let m = ctx.ipam.read(|i| i.nat_block(peer, block))?;
                if !m.is_empty() {
                    desired.insert((peer.clone(), block), m);
                }
            }
        }
        let listed = list(ctx).await?;
        let plan = plan_full(&desired, &known, &live, &listed);
        self.carry_out(ctx, &plan).await?;
        self.published = published_after_full(&desired, &listed, &plan);
        Ok(plan)
    }

    /// How many shards this writer has published.
    pub fn published(&self) -> usize {
        self.published.len()
    }

    async fn refresh_owners(&mut self, ctx: &Context) -> Result<()> {
        let fcs: Api<ForeignCluster> = Api::all(ctx.local.clone());
        self.owners = fcs
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter(|fc| fc.metadata.deletion_timestamp.is_none())
            .map(|fc| (fc.spec.cluster_id.clone(), objects::owner_reference(&fc)))
            .collect();
        Ok(())
    }

    /// Writes, then deletes, then retires older objects, each step [`IN_FLIGHT`] calls at a
    /// time (a full pass or a peer's change of view writes hundreds of shards, and each write is
    /// a round trip and an fsync on a real API server); records each success as it happens, and
    /// goes on to the next step only if every call of this one succeeded.
    async fn carry_out(&mut self, ctx: &Context, plan: &ShardPlan) -> Result<()> {
        let api: Api<NatMapping> = Api::namespaced(ctx.local.clone(), &ctx.config.namespace);
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let writes: Vec<_> = plan
            .write
            .iter()
            .map(|((peer, block), m)| {
                let owner = self.owners.get(peer).cloned().flatten();
                let nm = objects::nat_shard(&ctx.config, peer, *block, m.clone(), owner);
                let name = objects::nat_shard_name(peer, *block);
                let (api, params, key) = (api.clone(), params.clone(), (peer.clone(), *block));
                async move {
                    let result = api.patch(&name, &params, &Patch::Apply(&nm)).await;
                    ((key, nm.spec.cluster_mappings), result.map(drop))
                }
            })
            .collect();
        in_flight(writes, |(key, m)| self.published.wrote(&key, &m)).await?;
        let dp = DeleteParams::default();
        let deletes: Vec<_> = plan
            .delete
            .iter()
            .map(|key| {
                let name = objects::nat_shard_name(&key.0, key.1);
                let (api, dp, key) = (api.clone(), dp.clone(), key.clone());
                async move { (key, ignore_not_found(api.delete(&name, &dp).await)) }
            })
            .collect();
        in_flight(deletes, |key| self.published.removed(&key)).await?;
        for name in &plan.retire {
            ignore_not_found(api.delete(name, &dp).await)?;
            tracing::info!(cluster = %ctx.config.cluster_id, natmapping = %name,
                "older NatMapping replaced by shards and deleted");
        }
        Ok(())
    }
}

/// Runs `calls` [`IN_FLIGHT`] at a time, handing each success's value to `done`; once all have
/// ended, the first error if any failed.
async fn in_flight<T, F>(calls: Vec<F>, mut done: impl FnMut(T)) -> Result<()>
where
    F: Future<Output = (T, kube::Result<()>)>,
{
    let mut first_error = None;
    let mut results = stream::iter(calls).buffer_unordered(IN_FLIGHT);
    while let Some((value, result)) = results.next().await {
        match result {
            Ok(()) => done(value),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    first_error.map_or(Ok(()), |e| Err(e.into()))
}

/// Our NatMappings, split into shards and older whole-peer objects.
async fn list(ctx: &Context) -> Result<Listed> {
    let api: Api<NatMapping> = Api::namespaced(ctx.local.clone(), &ctx.config.namespace);
    let lp = ListParams::default().labels(&objects::managed_selector());
    let mut listed = Listed::default();
    for nm in api.list(&lp).await?.items {
        let peer = nm.spec.cluster_id.clone();
        match nm.spec.block {
            Some(block) if nm.name_any() == objects::nat_shard_name(&peer, block) => {
                listed
                    .shards
                    .insert((peer, block), nm.spec.cluster_mappings);
            }
            // a shard under another name is not ours to keep: retire it like an older object
            _ => {
                listed.legacy.insert(nm.name_any(), peer);
            }
        }
    }
    Ok(listed)
}
