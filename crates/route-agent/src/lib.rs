//! The isthmus route agent: one per node. It watches the TunnelEndpoints of its
//! namespace and keeps this node's routes to every peer's ranges pointing at the gateway node:
//!
//! - [`plan`]: pure; TunnelEndpoints in, the wanted routes out (nothing on the gateway node);
//! - the agent loop: a TunnelEndpoint watch, one sync through
//!   [`isthmus_dataplane::routes::sync`] after every change that alters the plan and every
//!   `resync` (repairs routes removed from outside), retries with exponential backoff.
//!
//! Only routes with the isthmus protocol number of route agents (154; the gateway uses 153) are ever listed, replaced or removed. The
//! agent never removes routes when it stops: a restarted agent finds them in place and converges
//! (traffic keeps flowing across restarts and upgrades).

mod agent;
pub mod config;
pub mod error;
pub mod plan;
pub mod telemetry;

use std::future::Future;

use isthmus_dataplane::routes::RouteDriver;
use tracing::Instrument;

pub use config::{Backoff, ConfigError, RouteAgentConfig};
pub use error::{Error, Result};
pub use plan::{PeerRoutes, RoutePlan, Skipped};
pub use telemetry::RouteAgentTelemetry;

/// Runs the route agent until `shutdown` resolves (a sync in flight finishes first), leaving the
/// routes in place. The configuration is validated before the watch opens.
///
/// `client` is this cluster's API; `driver` manages the routes of this node's network namespace
/// (its calls block: they run on tokio's blocking pool, one at a time).
pub async fn run<R: RouteDriver + 'static>(
    config: RouteAgentConfig,
    client: kube::Client,
    driver: R,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    run_observed(
        config,
        RouteAgentTelemetry::default(),
        client,
        driver,
        shutdown,
    )
    .await
}

/// [`run`], recording metrics and health into `telemetry`.
pub async fn run_observed<R: RouteDriver + 'static>(
    config: RouteAgentConfig,
    telemetry: RouteAgentTelemetry,
    client: kube::Client,
    driver: R,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    config.validate()?;
    let span = tracing::info_span!("route_agent", node = %config.node_name);
    agent::run(config, telemetry, client, driver, shutdown)
        .instrument(span)
        .await
}
