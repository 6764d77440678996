//! The isthmus route agent: one per node. It watches the TunnelEndpoints of its
//! namespace and keeps this node's routes to every peer's ranges pointing at the gateway node:
//!
//! - [`plan`]: pure; TunnelEndpoints (and how this node reaches each gateway address) in, the
//!   wanted routes out (nothing on the gateway node): a direct next hop, or the VXLAN overlay
//!   `isthmus-vx0` when the gateway node is not on-link (the gateway node keeps its receiving
//!   end; [`isthmus_dataplane::routes::overlay`]), and
//!   the NAT exemption of this node: a table of its own, `inet isthmus-node`, binding
//!   connections from our Pod CIDR to those ranges to their own source before a CNI's
//!   masquerade runs ([`isthmus_dataplane::node_nat`]); removed when no range is routed;
//! - the agent loop: a TunnelEndpoint watch, one sync through
//!   [`isthmus_dataplane::routes::sync`] after every change that alters the plan and every
//!   `resync` (repairs routes removed from outside), retries with exponential backoff.
//!
//! Only routes with the isthmus protocol number of route agents (154; the gateway uses 153) are
//! ever listed, replaced or removed, and only the table `inet isthmus-node`. The agent never
//! removes either (nor the overlay link) when it stops: a restarted agent finds them in place and converges (traffic,
//! source addresses included, keeps flowing across restarts and upgrades); both go when the last
//! peering goes.

mod agent;
pub mod config;
pub mod error;
pub mod plan;
pub mod telemetry;

use std::future::Future;

use isthmus_dataplane::node_nat::NodeNatDriver;
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
/// and `nat` its NAT exemption table (their calls block: they run on tokio's blocking pool, one
/// at a time).
pub async fn run<R: RouteDriver + 'static, N: NodeNatDriver + 'static>(
    config: RouteAgentConfig,
    client: kube::Client,
    driver: R,
    nat: N,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    run_observed(
        config,
        RouteAgentTelemetry::default(),
        client,
        driver,
        nat,
        shutdown,
    )
    .await
}

/// [`run`], recording metrics and health into `telemetry`.
pub async fn run_observed<R: RouteDriver + 'static, N: NodeNatDriver + 'static>(
    config: RouteAgentConfig,
    telemetry: RouteAgentTelemetry,
    client: kube::Client,
    driver: R,
    nat: N,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    config.validate()?;
    let span = tracing::info_span!("route_agent", node = %config.node_name);
    agent::run(config, telemetry, client, (driver, nat), shutdown)
        .instrument(span)
        .await
}
