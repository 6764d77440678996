//! What the gateway records about itself: reconcile and nftables apply timings, per-peer tunnel
//! samples, leadership, liveness and readiness, and Events on connection transitions. The
//! daemon registers the metric families and serves them; a default instance records into
//! nothing anyone scrapes (tests).

use isthmus_api::{ConnectionState, TunnelEndpoint};
use isthmus_dataplane::firewall::Applied;
use isthmus_telemetry::metrics::{Datapath, Reconciles, TunnelState, Tunnels};
use isthmus_telemetry::{EventKind, Events, Health, Registry};
use kube::Resource;

/// The gateway's telemetry handles; clones share their values.
#[derive(Debug, Clone, Default)]
pub struct GatewayTelemetry {
    pub reconciles: Reconciles,
    pub datapath: Datapath,
    pub tunnels: Tunnels,
    pub health: Health,
    pub events: Events,
}

impl GatewayTelemetry {
    /// Registers every metric family the gateway records.
    pub fn register(&self, registry: &mut Registry) {
        self.reconciles.register(registry);
        self.datapath.register(registry);
        self.tunnels.register(registry);
    }

    /// An Event on `tep` for a connection state change.
    pub(crate) fn connection_changed(
        &self,
        tep: &TunnelEndpoint,
        from: Option<ConnectionState>,
        to: ConnectionState,
        message: &str,
    ) {
        let (kind, reason) = match (from, to) {
            (_, ConnectionState::Connected) => (EventKind::Normal, "TunnelConnected"),
            (Some(ConnectionState::Connected), ConnectionState::Connecting) => {
                (EventKind::Warning, "TunnelLost")
            }
            (_, ConnectionState::Connecting) => (EventKind::Normal, "TunnelConnecting"),
            (_, ConnectionState::Error) => (EventKind::Warning, "TunnelError"),
        };
        let peer = &tep.spec.cluster_id;
        let note = match message {
            "" => format!("tunnel to peer {peer} is {}", state_word(to)),
            message => format!("tunnel to peer {peer} is {}: {message}", state_word(to)),
        };
        self.events
            .publish(tep.object_ref(&()), kind, reason, "Probe", note);
    }
}

fn state_word(state: ConnectionState) -> &'static str {
    match state {
        ConnectionState::Connected => "connected",
        ConnectionState::Connecting => "connecting",
        ConnectionState::Error => "in error",
    }
}

/// The metric label of a connection state.
pub(crate) fn tunnel_state(state: ConnectionState) -> TunnelState {
    match state {
        ConnectionState::Connected => TunnelState::Connected,
        ConnectionState::Connecting => TunnelState::Connecting,
        ConnectionState::Error => TunnelState::Error,
    }
}

/// The metric label of a firewall apply outcome.
pub(crate) fn outcome(applied: Applied) -> &'static str {
    match applied {
        Applied::Unchanged => "unchanged",
        Applied::Incremental => "incremental",
        Applied::Replaced => "replaced",
    }
}
