//! Watches of the gateway namespace: reflector stores of TunnelEndpoints and NatMappings, and
//! the triggers they raise. A TunnelEndpoint raises [`Trigger::Full`] only when its spec changed,
//! its deletion began, or it went (our own status patches must not loop back into reconciles); a NatMapping raises
//! [`Trigger::Nat`], served by the datapath's NAT fast path: the watch keeps every object's
//! entries in a [`NatTable`] and queues the [`MapDelta`] of each change in [`NatDeltas`], so
//! the controller sends just those map elements. A (re)list rebuilds the table and raises
//! [`Trigger::Full`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::StreamExt;
use isthmus_api::{NatMapping, TunnelEndpoint, TunnelEndpointSpec};
use isthmus_dataplane::firewall::delta::MapDelta;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::Event;
use kube::runtime::{WatchStreamExt, watcher as watch};
use kube::{Api, Client, ResourceExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::nat_table::NatTable;

/// Why a reconcile is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Trigger {
    /// NatMapping entries changed: the NAT table may be enough.
    Nat,
    /// TunnelEndpoints changed (or a watch restarted): full reconcile.
    Full,
}

/// NatMapping deltas the watch saw and the controller has not sent yet, in order, with when the
/// oldest of them arrived (for `isthmus_nat_mapping_lag_seconds`).
#[derive(Debug, Clone, Default)]
pub struct NatDeltas(Arc<Mutex<Pending>>);

#[derive(Debug, Default)]
struct Pending {
    deltas: Vec<MapDelta>,
    since: Option<Instant>,
}

impl NatDeltas {
    /// Takes every queued delta, and the instant the oldest of them was queued.
    pub fn take(&self) -> (Vec<MapDelta>, Option<Instant>) {
        let mut pending = self.0.lock().unwrap_or_else(|e| e.into_inner());
        (std::mem::take(&mut pending.deltas), pending.since.take())
    }

    fn push(&self, deltas: Vec<MapDelta>) {
        let mut pending = self.0.lock().unwrap_or_else(|e| e.into_inner());
        pending.since.get_or_insert_with(Instant::now);
        pending.deltas.extend(deltas);
    }

    fn clear(&self) {
        drop(self.take());
    }
}

/// The stores and the tasks that keep them.
#[derive(Debug)]
pub struct Watches {
    pub teps: Store<TunnelEndpoint>,
    pub nats: Store<NatMapping>,
    /// What each NatMapping change changed, for the NAT fast path.
    pub nat_deltas: NatDeltas,
    tasks: Vec<JoinHandle<()>>,
}

impl Watches {
    /// Starts both watches; triggers go to `tx`.
    pub fn start(client: &Client, namespace: &str, tx: mpsc::UnboundedSender<Trigger>) -> Self {
        let tep_api: Api<TunnelEndpoint> = Api::namespaced(client.clone(), namespace);
        let nat_api: Api<NatMapping> = Api::namespaced(client.clone(), namespace);
        let (teps, tep_writer) = reflector::store();
        let (nats, nat_writer) = reflector::store();
        let tep_stream = reflector::reflector(
            tep_writer,
            watch(tep_api, isthmus_kubeclient::watcher_config()),
        )
        .default_backoff();
        let nat_stream = reflector::reflector(
            nat_writer,
            watch(nat_api, isthmus_kubeclient::watcher_config()),
        )
        .default_backoff();
        let tep_tx = tx.clone();
        let tep_task = tokio::spawn(async move {
            // spec and whether it is being deleted
            let mut seen: HashMap<String, (TunnelEndpointSpec, bool)> = HashMap::new();
            let mut stream = std::pin::pin!(tep_stream);
            while let Some(event) = stream.next().await {
                let trigger = match event {
                    Ok(Event::Apply(o) | Event::InitApply(o)) => {
                        let now = (o.spec.clone(), o.metadata.deletion_timestamp.is_some());
                        let changed = seen.get(&o.name_any()) != Some(&now);
                        seen.insert(o.name_any(), now);
                        changed
                    }
                    Ok(Event::Delete(o)) => {
                        seen.remove(&o.name_any());
                        true
                    }
                    Ok(Event::InitDone) => true,
                    Ok(Event::Init) => false,
                    Err(err) => {
                        tracing::warn!(error = %err, "TunnelEndpoint watch error");
                        false
                    }
                };
                if trigger && tep_tx.send(Trigger::Full).is_err() {
                    return;
                }
            }
        });
        let nat_deltas = NatDeltas::default();
        let nat_task = tokio::spawn(follow_nat_mappings(nat_stream, nat_deltas.clone(), tx));
        Watches {
            teps,
            nats,
            nat_deltas,
            tasks: vec![tep_task, nat_task],
        }
    }

    /// Waits until both stores hold a complete first list.
    pub async fn ready(&self) -> Result<(), String> {
        self.teps
            .wait_until_ready()
            .await
            .map_err(|e| e.to_string())?;
        self.nats
            .wait_until_ready()
            .await
            .map_err(|e| e.to_string())
    }
}

/// Keeps the [`NatTable`] from the NatMapping events, queues each change's delta and raises
/// the triggers.
async fn follow_nat_mappings(
    events: impl futures::Stream<Item = Result<Event<NatMapping>, watch::Error>>,
    deltas: NatDeltas,
    tx: mpsc::UnboundedSender<Trigger>,
) {
    let mut table = NatTable::default();
    let mut relisting = NatTable::default();
    let mut stream = std::pin::pin!(events);
    while let Some(event) = stream.next().await {
        let trigger = match event {
            Ok(Event::Apply(o)) => {
                let entries = (o.spec.cluster_id.as_str(), &o.spec.cluster_mappings);
                deltas.push(table.update(&o.name_any(), Some(entries)));
                Some(Trigger::Nat)
            }
            Ok(Event::Delete(o)) => {
                deltas.push(table.update(&o.name_any(), None));
                Some(Trigger::Nat)
            }
            Ok(Event::Init) => {
                relisting = NatTable::default();
                None
            }
            Ok(Event::InitApply(o)) => {
                let entries = (o.spec.cluster_id.as_str(), &o.spec.cluster_mappings);
                drop(relisting.update(&o.name_any(), Some(entries)));
                None
            }
            Ok(Event::InitDone) => {
                // the full reconcile this raises plans from the store, which has the new list
                table = std::mem::take(&mut relisting);
                deltas.clear();
                Some(Trigger::Full)
            }
            Err(err) => {
                tracing::warn!(error = %err, "NatMapping watch error");
                None
            }
        };
        if let Some(trigger) = trigger
            && tx.send(trigger).is_err()
        {
            return;
        }
    }
}

impl Drop for Watches {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
