//! NatMapping sync: one NatMapping per peer, kept equal to the IPAM's NAT mapping of that peer
//! (`DurableIpam::read(|i| i.nat_mapping(&peer))`). Runs at start, whenever the IPAM reports a
//! durable batch (after a short debounce, so many mappings become one write per peer), and
//! periodically. The diff against what exists is a pure [`NatPlan`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use isthmus_api::{ClusterId, ForeignCluster, NatMapping};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use tokio::sync::watch;

use crate::context::Context;
use crate::error::Result;
use crate::foreign_cluster::ignore_not_found;
use crate::objects::{self, FIELD_MANAGER};

/// New IP (as the peer addresses it) → endpoint IP.
pub type Mappings = BTreeMap<Ipv4Addr, Ipv4Addr>;

/// The writes that make the NatMappings equal to the IPAM.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NatPlan {
    /// Peers whose NatMapping must be created or replaced, with the mappings.
    pub write: Vec<(ClusterId, Mappings)>,
    /// NatMappings (by name) of peers the IPAM no longer knows.
    pub delete: Vec<String>,
}

/// Diffs `desired` (peers with a live ForeignCluster), `known` (every peer of the IPAM) and
/// `existing` (the NatMappings we wrote, by name). A peer the IPAM knows without a live
/// ForeignCluster is being removed: its NatMapping is left to that removal.
pub fn plan(
    desired: &BTreeMap<ClusterId, Mappings>,
    known: &BTreeSet<ClusterId>,
    existing: &BTreeMap<String, Mappings>,
) -> NatPlan {
    let write = desired
        .iter()
        .filter(|(peer, m)| existing.get(peer.as_str()) != Some(*m))
        .map(|(p, m)| (p.clone(), m.clone()))
        .collect();
    let delete = existing
        .keys()
        .filter(|name| !known.iter().any(|k| k.as_str() == name.as_str()))
        .cloned()
        .collect();
    NatPlan { write, delete }
}

/// One pass: read the IPAM and the API, diff, write.
pub async fn sync(ctx: &Context) -> Result<NatPlan> {
    let fcs: Api<ForeignCluster> = Api::all(ctx.local.clone());
    let live: BTreeMap<ClusterId, ForeignCluster> = fcs
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|fc| fc.metadata.deletion_timestamp.is_none())
        .map(|fc| (fc.spec.cluster_id.clone(), fc))
        .collect();
    let (known, desired) = ctx.ipam.read(|i| {
        let known: BTreeSet<ClusterId> = i.peers().map(|(c, _)| c.clone()).collect();
        let desired: BTreeMap<ClusterId, Mappings> = known
            .iter()
            .filter(|c| live.contains_key(*c))
            .map(|c| (c.clone(), i.nat_mapping(c).unwrap_or_default()))
            .collect();
        (known, desired)
    })?;
    let api: Api<NatMapping> = Api::namespaced(ctx.local.clone(), &ctx.config.namespace);
    let lp = ListParams::default().labels(&objects::managed_selector());
    let existing: BTreeMap<String, Mappings> = api
        .list(&lp)
        .await?
        .items
        .into_iter()
        .map(|nm| (nm.name_any(), nm.spec.cluster_mappings))
        .collect();
    let plan = plan(&desired, &known, &existing);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    for (peer, mappings) in &plan.write {
        let owner = live.get(peer).and_then(objects::owner_reference);
        let nm = objects::nat_mapping(&ctx.config, peer, mappings.clone(), owner);
        api.patch(peer.as_str(), &params, &Patch::Apply(&nm))
            .await?;
    }
    for name in &plan.delete {
        ignore_not_found(api.delete(name, &DeleteParams::default()).await)?;
    }
    Ok(plan)
}

/// Keeps the NatMappings in sync until `shutdown` turns true.
pub async fn run(ctx: Arc<Context>, mut shutdown: watch::Receiver<bool>) {
    const KEY: &str = "natmapping-sync";
    let mut changes = ctx.ipam.subscribe();
    changes.borrow_and_update();
    let health = &ctx.telemetry.health;
    let gate = health.gate("nat-mappings", "the first NatMapping sync has not run");
    let heartbeat = health.heartbeat("nat-sync", ctx.config.resync * 3 + Duration::from_secs(30));
    loop {
        let started = Instant::now();
        let result = sync(&ctx).await;
        ctx.telemetry
            .reconciles
            .record("nat-mappings", result.is_ok(), started.elapsed());
        heartbeat.beat();
        let wait = match result {
            Ok(plan) => {
                gate.open();
                ctx.succeeded(KEY);
                if plan != NatPlan::default() {
                    tracing::debug!(cluster = %ctx.config.cluster_id, ?plan, "NatMappings synced");
                }
                ctx.config.resync
            }
            Err(e) => {
                let delay = ctx.next_retry(KEY);
                tracing::warn!(cluster = %ctx.config.cluster_id, error = %e, ?delay,
                    "NatMapping sync failed");
                gate.close(&format!("NatMapping sync failed: {e}"));
                delay
            }
        };
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    heartbeat.retire();
                    return;
                }
                // Leading edge: sync at once; changes arriving while a sync runs are picked
                // up together by the next one (natural batching under load).
                if !ctx.config.nat_debounce.is_zero() {
                    tokio::time::sleep(ctx.config.nat_debounce).await;
                }
                changes.borrow_and_update();
            }
            _ = tokio::time::sleep(wait) => {}
            _ = stopped(&mut shutdown) => {
                heartbeat.retire();
                return;
            }
        }
    }
}

/// Resolves once `rx` turns true or its sender is gone (holds no borrow across the await's end).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await.map(|_| ());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> ClusterId {
        s.parse().unwrap()
    }

    fn m(pairs: &[(&str, &str)]) -> Mappings {
        pairs
            .iter()
            .map(|(a, b)| (a.parse().unwrap(), b.parse().unwrap()))
            .collect()
    }

    #[test]
    fn writes_only_what_differs_and_deletes_unknown_peers() {
        let desired =
            BTreeMap::from([(id("b"), m(&[("10.1.0.2", "10.0.5.5")])), (id("c"), m(&[]))]);
        let known = BTreeSet::from([id("b"), id("c"), id("d")]);
        let existing = BTreeMap::from([
            ("b".to_owned(), m(&[("10.1.0.2", "10.0.5.5")])),
            ("d".to_owned(), m(&[])),
            ("gone".to_owned(), m(&[("10.1.0.3", "10.0.5.6")])),
        ]);
        let p = plan(&desired, &known, &existing);
        assert_eq!(p.write, vec![(id("c"), m(&[]))]);
        assert_eq!(p.delete, vec!["gone".to_owned()]);
    }

    #[test]
    fn changed_mappings_are_rewritten_whole() {
        let desired = BTreeMap::from([(
            id("b"),
            m(&[("10.1.0.2", "10.0.5.5"), ("10.1.0.3", "1.2.3.4")]),
        )]);
        let known = BTreeSet::from([id("b")]);
        let existing = BTreeMap::from([("b".to_owned(), m(&[("10.1.0.2", "10.0.5.5")]))]);
        let p = plan(&desired, &known, &existing);
        assert_eq!(p.write.len(), 1);
        assert_eq!(p.write[0].1.len(), 2);
        assert!(p.delete.is_empty());
    }
}
