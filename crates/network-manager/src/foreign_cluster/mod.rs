//! The ForeignCluster controller: for each peer, our NetworkConfig in the peer's API, the peer's
//! decision copied back into the IPAM, the TunnelEndpoint once both sides processed, the status,
//! and (behind a finalizer) the removal of everything the peering created.
//!
//! This file owns the controller wiring, `reconcile` and `error_policy`; the steps live in
//! `peering` (apply) and `cleanup` (finalizer).

mod cleanup;
mod peering;

pub use peering::ignore_not_found;

use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use futures::channel::mpsc::UnboundedReceiver;
use isthmus_api::{ForeignCluster, NetworkConfig, TunnelEndpoint};
use kube::api::ApiResource;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{self, Event, finalizer};
use kube::runtime::reflector::ObjectRef;

use kube::{Api, ResourceExt};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::objects::FINALIZER;
use crate::{received, triggers};

fn retry_key(fc: &ForeignCluster) -> String {
    format!("foreigncluster/{}", fc.name_any())
}

/// Peers (apply) or unpeers (cleanup) one ForeignCluster; timed and counted.
pub async fn reconcile(fc: Arc<ForeignCluster>, ctx: Arc<Context>) -> Result<Action> {
    let started = std::time::Instant::now();
    let result = reconcile_once(fc, ctx.clone()).await;
    let ok = result.is_ok();
    ctx.telemetry
        .reconciles
        .record("foreign-cluster", ok, started.elapsed());
    result
}

async fn reconcile_once(fc: Arc<ForeignCluster>, ctx: Arc<Context>) -> Result<Action> {
    let api: Api<ForeignCluster> = Api::all(ctx.local.clone());
    let key = retry_key(&fc);
    let action = finalizer(&api, FINALIZER, fc, |event| async {
        match event {
            Event::Apply(fc) => peering::apply(&fc, &ctx).await,
            Event::Cleanup(fc) => cleanup::cleanup(&fc, &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(other.to_string()),
    })?;
    ctx.succeeded(&key);
    Ok(action)
}

fn error_policy(fc: Arc<ForeignCluster>, err: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.next_retry(&retry_key(&fc));
    tracing::warn!(
        cluster = %ctx.config.cluster_id, peer = %fc.spec.cluster_id, error = %err, ?delay,
        "ForeignCluster reconcile failed; retrying"
    );
    Action::requeue(delay)
}

/// The controller, until `shutdown` resolves. Re-triggered by: the ForeignCluster, its
/// TunnelEndpoint (spec changes and deletion, not status), the NetworkConfig the peer sent us, and (through `peer_events`) the
/// NetworkConfig we wrote into the peer's API.
pub fn controller(
    ctx: Arc<Context>,
    peer_events: UnboundedReceiver<()>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> impl Future<Output = ()> {
    let api: Api<ForeignCluster> = Api::all(ctx.local.clone());
    let c = Controller::new(api.clone(), isthmus_kubeclient::watcher_config());
    let store = c.store();
    crate::telemetry::ready_when_listable(&ctx.telemetry, "foreign-clusters", api.clone());
    let teps: Api<TunnelEndpoint> = Api::namespaced(ctx.local.clone(), &ctx.config.namespace);
    // a TunnelEndpoint changed or deleted by someone else re-runs every peering (they are few)
    let tep_changes = triggers::spec_changes(teps).map(|_| ());
    let others = futures::stream::select(peer_events, tep_changes);
    c.watches_with(
        received::all_api(&ctx),
        ApiResource::erase::<NetworkConfig>(&()),
        isthmus_kubeclient::watcher_config(),
        move |nc| {
            let origin = received::parse(&nc).origin;
            store
                .state()
                .into_iter()
                .filter(|fc| Some(fc.spec.cluster_id.as_str()) == origin.as_deref())
                .map(|fc| ObjectRef::from_obj(fc.as_ref()))
                .collect::<Vec<_>>()
        },
    )
    .reconcile_all_on(others)
    .graceful_shutdown_on(shutdown)
    .run(reconcile, error_policy, ctx)
    .for_each(|_| async {})
}
