//! NatMapping publishing: the IPAM is the one source of truth of every peer's NAT mapping, and
//! the NatMapping objects are a projection of it with one writer, cut into bounded shards (one
//! object per peer and NAT block of 256 addresses), the way Kubernetes' EndpointSlice
//! controller publishes a Service's endpoints.
//!
//! - `plan` (pure): the shards to write or delete for a set of changed blocks, or for a full
//!   comparison with what the API lists;
//! - `publish` (I/O): the [`Publisher`](publish::Publisher) that reads the IPAM block by block
//!   and talks to the API;
//! - [`run`] (this file): the loop. A durable IPAM batch wakes it (after `nat_debounce`), and it
//!   publishes just the blocks that batch changed; every `resync`, and first at start, it runs
//!   the full pass, which heals drift and retires the older one-object-per-peer layout.

mod plan;
mod publish;

pub use plan::{Listed, Mappings, Published, ShardKey, ShardPlan, plan_dirty, plan_full};
pub use publish::Publisher;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::context::Context;

/// Keeps the NatMapping shards in sync until `shutdown` turns true.
pub async fn run(ctx: Arc<Context>, mut shutdown: watch::Receiver<bool>) {
    const KEY: &str = "natmapping-sync";
    let mut changes = ctx.ipam.subscribe();
    changes.borrow_and_update();
    let health = &ctx.telemetry.health;
    let gate = health.gate("nat-mappings", "the first NatMapping sync has not run");
    let heartbeat = health.heartbeat("nat-sync", ctx.config.resync * 3 + Duration::from_secs(30));
    let mut publisher = Publisher::default();
    let mut next_full: Option<Instant> = None; // None: the first full pass has not succeeded
    loop {
        let full = next_full.is_none_or(|at| Instant::now() >= at);
        let started = Instant::now();
        let result = match full {
            true => publisher.sync_full(&ctx).await,
            false => publisher.sync_dirty(&ctx).await,
        };
        let kind = if full { "full" } else { "batch" };
        ctx.telemetry
            .reconciles
            .record("nat-mappings", result.is_ok(), started.elapsed());
        heartbeat.beat();
        let wait = match result {
            Ok(plan) => {
                if full {
                    next_full = Some(Instant::now() + ctx.config.resync);
                }
                gate.open();
                ctx.succeeded(KEY);
                if !plan.is_empty() {
                    tracing::debug!(cluster = %ctx.config.cluster_id, kind, calls = plan.calls(),
                        shards = publisher.published(), took = ?started.elapsed(),
                        "NatMapping shards published");
                }
                next_full.map_or(Duration::ZERO, |at| {
                    at.saturating_duration_since(Instant::now())
                })
            }
            Err(e) => {
                let delay = ctx.next_retry(KEY);
                tracing::warn!(cluster = %ctx.config.cluster_id, kind, error = %e, ?delay,
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
                // Leading edge: publish at once; changes arriving meanwhile are picked up
                // together by the next pass (natural batching under load).
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
