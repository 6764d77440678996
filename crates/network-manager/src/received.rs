//! The received-NetworkConfig controller: for every NetworkConfig in a peer's namespace whose
//! `clusterID` is us, check that it speaks for the cluster whose namespace it is in (`origin`),
//! validate it, take the IPAM decision about the origin's networks (accept or remap) and report
//! it in the status (`processed`, `podCIDRNAT`, `externalCIDRNAT`, the `Processed` condition,
//! `observedGeneration`).
//!
//! Each peer writes into its own namespace (`<release namespace>-peer-<cluster ID>`), so the
//! controller watches NetworkConfigs in every namespace (a read of public data; writes need the
//! per-peer Role `isthmus peer` creates). A NetworkConfig whose `originClusterID` or name is
//! not the namespace's cluster is refused with reason `OriginMismatch` and changes nothing.
//!
//! Objects are watched untyped so that one malformed object (a CIDR with host bits set, say)
//! gets a condition instead of breaking the watch of every other one. A NetworkConfig from a
//! cluster we have no ForeignCluster for is not processed: peering needs consent on both sides,
//! and the IPAM entry of a peer lives exactly as long as its ForeignCluster.

use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use isthmus_api::{
    ClusterId, ForeignCluster, NetworkConfig, NetworkConfigSpec, NetworkConfigStatus,
    peer_namespace,
};
use isthmus_ipam_store::ServiceError;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;

use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::objects::FIELD_MANAGER;
use crate::origin::{self, Verdict};
use crate::plan::{self, REASON_INVALID_SPEC, REASON_NO_FOREIGN_CLUSTER, ReceivedOutcome};

/// A NetworkConfig read leniently: the spec may be malformed, the status may be missing.
#[derive(Debug, Clone)]
pub struct ReceivedConfig {
    pub name: String,
    /// Where it was found: the namespace decides which cluster it may speak for.
    pub namespace: String,
    /// `spec.clusterID` as written, even when the rest of the spec is malformed.
    pub receiver: Option<String>,
    /// `spec.originClusterID` as written.
    pub origin: Option<String>,
    pub spec: Result<NetworkConfigSpec, String>,
    pub status: NetworkConfigStatus,
    pub generation: Option<i64>,
}

/// Reads a NetworkConfig without failing on a malformed spec.
pub fn parse(obj: &DynamicObject) -> ReceivedConfig {
    let spec_value = obj.data.get("spec").cloned().unwrap_or_default();
    let text = |k: &str| {
        spec_value
            .get(k)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    let spec = serde_json::from_value::<NetworkConfigSpec>(spec_value.clone())
        .map_err(|e| format!("spec: {e}"));
    let status = obj
        .data
        .get("status")
        .and_then(|s| serde_json::from_value(s.clone()).ok())
        .unwrap_or_default();
    ReceivedConfig {
        name: obj.name_any(),
        namespace: obj.namespace().unwrap_or_default(),
        receiver: text("clusterID"),
        origin: text("originClusterID"),
        spec,
        status,
        generation: obj.meta().generation,
    }
}

fn api_resource() -> ApiResource {
    ApiResource::erase::<NetworkConfig>(&())
}

/// The NetworkConfigs of every namespace, untyped (what the controllers watch).
pub fn all_api(ctx: &Context) -> Api<DynamicObject> {
    Api::all_with(ctx.local.clone(), &api_resource())
}

/// The NetworkConfigs of one namespace, untyped.
pub fn namespaced_api(ctx: &Context, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(ctx.local.clone(), namespace, &api_resource())
}

/// The NetworkConfigs peer `peer` writes into our cluster: those of its namespace.
pub fn peer_api(ctx: &Context, peer: &ClusterId) -> Api<DynamicObject> {
    namespaced_api(ctx, &ctx.config.received_namespace(peer))
}

/// Validates, decides and reports one received NetworkConfig; timed and counted.
pub async fn reconcile(obj: Arc<DynamicObject>, ctx: Arc<Context>) -> Result<Action> {
    let started = std::time::Instant::now();
    let result = reconcile_once(obj, ctx.clone()).await;
    let ok = result.is_ok();
    ctx.telemetry
        .reconciles
        .record("network-config", ok, started.elapsed());
    result
}

async fn reconcile_once(obj: Arc<DynamicObject>, ctx: Arc<Context>) -> Result<Action> {
    let received = parse(&obj);
    let ours = received.receiver.as_deref() == Some(ctx.config.cluster_id.as_str());
    if !ours || obj.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let Some(outcome) = decide(&ctx, &received).await? else {
        tracing::debug!(cluster = %ctx.config.cluster_id, namespace = %received.namespace,
            name = %received.name, "NetworkConfig outside every peer namespace ignored");
        return Ok(Action::await_change());
    };
    let now = Timestamp::now();
    let status = plan::received_status(&received.status, &outcome, received.generation, now);
    let changed = status != received.status;
    if changed {
        let patch = json!({
            "apiVersion": NetworkConfig::api_version(&()),
            "kind": NetworkConfig::kind(&()),
            "status": status,
        });
        let params = PatchParams::apply(FIELD_MANAGER).force();
        namespaced_api(&ctx, &received.namespace)
            .patch_status(&received.name, &params, &Patch::Apply(patch))
            .await?;
    }
    if changed {
        let condition = status.conditions.first();
        let reason = condition.map(|c| c.reason.as_str()).unwrap_or("");
        let message = condition.map(|c| c.message.as_str()).unwrap_or("");
        tracing::info!(
            cluster = %ctx.config.cluster_id, peer = ?received.origin, name = %received.name,
            namespace = %received.namespace,
            processed = status.processed, reason, "received NetworkConfig processed"
        );
        let regarding = obj.object_ref(&api_resource());
        ctx.telemetry
            .network_config_processed(regarding, status.processed, reason, message);
    }
    ctx.succeeded(&retry_key(&received.name));
    Ok(match outcome {
        // pools may free up when another peer goes
        ReceivedOutcome::Refused { reason, .. } if reason == plan::REASON_POOLS_EXHAUSTED => {
            Action::requeue(ctx.config.resync)
        }
        _ => Action::await_change(),
    })
}

/// The IPAM decision, under the peer's lock so that it cannot race the ForeignCluster's removal;
/// `None` for a NetworkConfig outside every peer's namespace (not ours to answer).
async fn decide(ctx: &Context, received: &ReceivedConfig) -> Result<Option<ReceivedOutcome>> {
    let refuse = |reason, message: String| Ok(Some(ReceivedOutcome::Refused { reason, message }));
    let (peer, live) = match claimed(ctx, &live_peers(ctx).await?, received) {
        Verdict::Process(peer) => (peer, true),
        Verdict::Unpeered(peer) => (peer, false),
        Verdict::Refuse { reason, message } => return refuse(reason, message),
        Verdict::Ignore => return Ok(None),
    };
    let spec = match &received.spec {
        Ok(s) => s,
        Err(m) => return refuse(REASON_INVALID_SPEC, m.clone()),
    };
    if let Err(e) = spec.validate() {
        return refuse(REASON_INVALID_SPEC, e.to_string());
    }
    let lock = ctx.peer_lock(&peer);
    let _guard = lock.lock().await;
    if !live || !live_peers(ctx).await?.contains(&peer) {
        let m = format!("no ForeignCluster for cluster {peer} in this cluster");
        return refuse(REASON_NO_FOREIGN_CLUSTER, m);
    }
    match ctx
        .ipam
        .upsert_peer(&peer, spec.pod_cidr, spec.external_cidr)
        .await
    {
        Ok(networks) => Ok(Some(ReceivedOutcome::Accepted(networks))),
        Err(ServiceError::Ipam(e)) => match plan::refusal_reason(&e) {
            Some(reason) => refuse(reason, e.to_string()),
            None => Err(ServiceError::Ipam(e).into()),
        },
        Err(e) => Err(e.into()),
    }
}

/// Which cluster `received` may speak for, from the namespace it is in ([`origin::verdict`]).
fn claimed(ctx: &Context, live: &[ClusterId], received: &ReceivedConfig) -> Verdict {
    let ns = &ctx.config.namespace;
    match received.origin.as_deref().map(str::parse::<ClusterId>) {
        Some(Ok(origin)) => origin::verdict(ns, live, &received.namespace, &received.name, &origin),
        _ if live
            .iter()
            .any(|p| peer_namespace(ns, p) == received.namespace) =>
        {
            Verdict::Refuse {
                reason: REASON_INVALID_SPEC,
                message: "spec.originClusterID is missing or not a cluster ID".to_owned(),
            }
        }
        _ => Verdict::Ignore,
    }
}

/// The cluster IDs of the ForeignClusters that exist and are not being deleted (read from the
/// API, not a cache, so that a deletion in progress is seen).
async fn live_peers(ctx: &Context) -> Result<Vec<ClusterId>> {
    let fcs: Api<ForeignCluster> = Api::all(ctx.local.clone());
    let list = fcs.list(&ListParams::default()).await?;
    Ok(list
        .items
        .into_iter()
        .filter(|fc| fc.metadata.deletion_timestamp.is_none())
        .map(|fc| fc.spec.cluster_id)
        .collect())
}

fn retry_key(name: &str) -> String {
    format!("networkconfig/{name}")
}

fn error_policy(obj: Arc<DynamicObject>, err: &Error, ctx: Arc<Context>) -> Action {
    let name = obj.name_any();
    let delay = ctx.next_retry(&retry_key(&name));
    tracing::warn!(cluster = %ctx.config.cluster_id, %name, error = %err, ?delay,
        "received NetworkConfig reconcile failed");
    Action::requeue(delay)
}

/// Whether `nc` is waiting for room in the pools.
fn waits_for_pools(nc: &ReceivedConfig) -> bool {
    nc.status
        .conditions
        .iter()
        .any(|c| c.type_ == plan::COND_PROCESSED && c.reason == plan::REASON_POOLS_EXHAUSTED)
}

/// The controller, until `shutdown` resolves. A ForeignCluster appearing or going re-triggers
/// the NetworkConfigs of its cluster; one going (its removal frees networks) also re-triggers
/// those that were refused for lack of room in the pools.
pub fn controller(
    ctx: Arc<Context>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> impl Future<Output = ()> {
    let ar = api_resource();
    let c = Controller::new_with(
        all_api(&ctx),
        isthmus_kubeclient::watcher_config(),
        ar.clone(),
    );
    let store = c.store();
    crate::telemetry::ready_when_listable(&ctx.telemetry, "network-configs", all_api(&ctx));
    let fcs: Api<ForeignCluster> = Api::all(ctx.local.clone());
    let release_namespace = ctx.config.namespace.clone();
    c.watches(fcs, isthmus_kubeclient::watcher_config(), move |fc| {
        let cluster = fc.spec.cluster_id.to_string();
        let namespace = peer_namespace(&release_namespace, &fc.spec.cluster_id);
        let going = fc.metadata.deletion_timestamp.is_some();
        store
            .state()
            .into_iter()
            .filter(|nc| {
                let nc = parse(nc);
                nc.origin.as_deref() == Some(cluster.as_str())
                    || nc.namespace == namespace
                    || (going && waits_for_pools(&nc))
            })
            .map(|nc| ObjectRef::from_obj_with(nc.as_ref(), ar.clone()))
            .collect::<Vec<_>>()
    })
    .graceful_shutdown_on(shutdown)
    .run(reconcile, error_policy, ctx)
    .for_each(|_| async {})
}
