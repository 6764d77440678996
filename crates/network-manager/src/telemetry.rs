//! What the network-manager controllers record about themselves: reconciles per controller
//! (`foreign-cluster`, `network-config`, `nat-mappings`), Events on peering transitions
//! (ForeignCluster phase changes, received NetworkConfigs accepted, remapped or refused), a
//! heartbeat of the NatMapping loop, and readiness gates that open once the watches have their
//! first lists and the first NatMapping sync is through.

use isthmus_api::ForeignCluster;
use isthmus_telemetry::metrics::Reconciles;
use isthmus_telemetry::{EventKind, Events, Health, Registry};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::ListParams;
use kube::{Api, Resource};

/// The controllers' telemetry handles; clones share their values.
#[derive(Debug, Clone, Default)]
pub struct NetworkManagerTelemetry {
    pub reconciles: Reconciles,
    pub events: Events,
    pub health: Health,
}

impl NetworkManagerTelemetry {
    /// Registers every metric family the controllers record.
    pub fn register(&self, registry: &mut Registry) {
        self.reconciles.register(registry);
    }

    /// An Event on `fc` for its new phase; `reason` and `message` from its Ready condition.
    pub(crate) fn phase_changed(
        &self,
        fc: &ForeignCluster,
        phase: &str,
        reason: &str,
        message: &str,
    ) {
        let kind = match phase {
            "Peered" | "Peering" => EventKind::Normal,
            _ => EventKind::Warning,
        };
        let reason = match (phase, reason) {
            ("Peered", _) => "Peered",
            (_, "") => phase,
            (_, reason) => reason,
        };
        let mut note = format!("peering with {} is {phase}", fc.spec.cluster_id);
        if !message.is_empty() {
            note.push_str(": ");
            note.push_str(message);
        }
        self.events
            .publish(fc.object_ref(&()), kind, reason, "Peering", note);
    }

    /// An Event on a received NetworkConfig after it was processed (or refused).
    pub(crate) fn network_config_processed(
        &self,
        regarding: ObjectReference,
        processed: bool,
        reason: &str,
        message: &str,
    ) {
        let kind = match processed {
            true => EventKind::Normal,
            false => EventKind::Warning,
        };
        let reason = if reason.is_empty() {
            "Processed"
        } else {
            reason
        };
        self.events
            .publish(regarding, kind, reason, "Process", message.to_owned());
    }
}

/// Opens readiness gate `name` once `api` answers a LIST (the API is reachable, the CRD
/// installed, RBAC allows it), retrying every 2 s and saying why until then.
///
/// Not the controller's own store readiness: kube's `Store::wait_until_ready` wakes only the
/// last of several concurrent waiters, and the controller itself is one of them.
pub(crate) fn ready_when_listable<K>(telemetry: &NetworkManagerTelemetry, name: &str, api: Api<K>)
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let gate = telemetry
        .health
        .gate(name, "waiting for the first list from the API");
    tokio::spawn(async move {
        loop {
            match api.list(&ListParams::default().limit(1)).await {
                Ok(_) => return gate.open(),
                Err(err) => gate.close(&format!("cannot list: {err}")),
            }
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        }
    });
}
