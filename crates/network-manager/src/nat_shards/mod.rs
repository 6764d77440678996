//! NatMapping publishing: the IPAM is the one source of truth of every peer's NAT mapping, and
//! the NatMapping objects are a projection of it with one writer, cut into bounded shards (one
//! object per peer and NAT block of 256 addresses), the way Kubernetes' EndpointSlice
//! controller publishes a Service's endpoints.
//!
//! - `plan` (pure): the shards to write or delete for a set of changed blocks, or for a full
//!   comparison with what the API lists;
//! - `publish` (I/O): the [`Publisher`](publish::Publisher) that reads the IPAM block by block
//!   and talks to the API;
//! - `pacing` (pure): how long a burst's next pass waits, so that it writes fewer, fuller shards;
//! - [`run`] (this file): the loop. A durable IPAM batch wakes it (at once after a lone change,
//!   paced under a burst), and it publishes just the blocks changed since its last pass; every
//!   `resync`, and first at start, it runs the full pass, which heals drift and retires the
//!   older one-object-per-peer layout.

mod pacing;
mod plan;
mod publish;

pub use pacing::Pacing;

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
    // IPAM effects made durable: as of the pass being run, and as of the one before
    let mut effects = *changes.borrow_and_update();
    let mut effects_before = effects;
    let mut not_before = Instant::now();
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
                } else if !plan.is_empty() {
                    let pause = ctx
                        .config
                        .nat_pacing
                        .pause(started.elapsed(), effects.saturating_sub(effects_before));
                    not_before = Instant::now() + pause;
                }
                effects_before = effects;
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
                // together by the next pass, which waits out its pacing under a burst.
                // (only a pause in the future: tokio rounds a deadline up to its next 1 ms
                // tick, so even one just past could cost up to a millisecond)
                if not_before > Instant::now() {
                    tokio::time::sleep_until(not_before.into()).await;
                }
                effects = *changes.borrow_and_update();
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
