//! What the route agent records about itself: syncs (`isthmus_reconciles_total{controller=
//! "routes"}` and durations), the routes it keeps (`isthmus_node_routes`), a heartbeat of its
//! loop and a readiness gate that opens after the first successful sync.

use isthmus_telemetry::metrics::Reconciles;
use isthmus_telemetry::{Health, Registry};
use prometheus_client::metrics::gauge::Gauge;

/// The agent's telemetry handles; clones share their values.
#[derive(Debug, Clone, Default)]
pub struct RouteAgentTelemetry {
    pub reconciles: Reconciles,
    /// Routes this agent keeps on its node.
    pub routes: Gauge,
    pub health: Health,
}

impl RouteAgentTelemetry {
    /// Registers every metric family the agent records.
    pub fn register(&self, registry: &mut Registry) {
        self.reconciles.register(registry);
        registry.register(
            "isthmus_node_routes",
            "Routes to peer ranges this route agent keeps on its node",
            self.routes.clone(),
        );
    }
}
