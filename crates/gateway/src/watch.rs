//! Watches of the gateway namespace: reflector stores of TunnelEndpoints and NatMappings, and
//! the triggers they raise. A TunnelEndpoint raises [`Trigger::Full`] only when its spec changed
//! or it went (our own status patches must not loop back into reconciles); a NatMapping raises
//! [`Trigger::Nat`], served by the datapath's NAT fast path.

use std::collections::HashMap;

use futures::StreamExt;
use isthmus_api::{NatMapping, TunnelEndpoint, TunnelEndpointSpec};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::Event;
use kube::runtime::{WatchStreamExt, watcher as watch};
use kube::{Api, Client, ResourceExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Why a reconcile is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Trigger {
    /// NatMapping entries changed: the NAT table may be enough.
    Nat,
    /// TunnelEndpoints changed (or a watch restarted): full reconcile.
    Full,
}

/// The stores and the tasks that keep them.
#[derive(Debug)]
pub struct Watches {
    pub teps: Store<TunnelEndpoint>,
    pub nats: Store<NatMapping>,
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
            let mut seen: HashMap<String, TunnelEndpointSpec> = HashMap::new();
            let mut stream = std::pin::pin!(tep_stream);
            while let Some(event) = stream.next().await {
                let trigger = match event {
                    Ok(Event::Apply(o) | Event::InitApply(o)) => {
                        let changed = seen.get(&o.name_any()) != Some(&o.spec);
                        seen.insert(o.name_any(), o.spec);
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
        let nat_task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(nat_stream);
            while let Some(event) = stream.next().await {
                let trigger = match event {
                    Ok(Event::Apply(_) | Event::Delete(_)) => Some(Trigger::Nat),
                    Ok(Event::InitDone) => Some(Trigger::Full),
                    Ok(Event::Init | Event::InitApply(_)) => None,
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
        });
        Watches {
            teps,
            nats,
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

impl Drop for Watches {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
