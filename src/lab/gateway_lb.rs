//! The lab's load balancer in front of a cluster's gateway replicas (`--exposure loadbalancer`,
//! required with `--gateway-replicas 2`): [`isthmus_lab::exposure`] puts the cluster's address
//! on the underlay, and [`follow`] points it at the node of the replica holding the gateway's
//! Lease, as a cloud load balancer's
//! health check (or a Service's endpoints) follows the one Ready replica. It follows the Lease
//! within [`POLL`]; a real load balancer takes its health-check interval. Established peers do
//! not wait for it: the new active replica sends its handshake from its own address and the
//! peers' WireGuard roams to it. The cluster advertises the virtual address as its endpoint.

use std::net::Ipv4Addr;
use std::time::Duration;

use isthmus_lab::ClusterRecord;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use tokio::task::JoinHandle;

use crate::lab::cluster::{NAMESPACE, WIREGUARD_PORT};
use crate::lab::failover::LEASE;

/// How often the Lease is read.
pub const POLL: Duration = Duration::from_millis(100);

/// A running follower; stops when dropped.
#[derive(Debug)]
pub struct Balancer {
    task: JoinHandle<()>,
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The underlay address of the node the Lease names, if it is one of `cluster`'s.
fn backend(cluster: &ClusterRecord, lease: Option<Lease>) -> Option<Ipv4Addr> {
    let holder = isthmus_gateway::leader::Holder::of(&lease?);
    if holder.identity.is_empty() {
        return None;
    }
    let node = holder.node?;
    cluster.nodes.iter().find(|n| n.name == node)?.underlay
}

/// Follows the Lease of the cluster whose API `client` reaches, re-pointing `vip` on changes.
pub fn follow(
    wan_ns: &str,
    cluster: ClusterRecord,
    vip: Ipv4Addr,
    client: kube::Client,
) -> Balancer {
    let wan_ns = wan_ns.to_owned();
    let task = tokio::spawn(async move {
        let api: Api<Lease> = Api::namespaced(client, NAMESPACE);
        let mut current = None;
        loop {
            // an unreadable Lease changes nothing: the API may be down while the data plane is not
            if let Ok(lease) = api.get_opt(LEASE).await {
                let want = backend(&cluster, lease);
                if want.is_some() && want != current {
                    let (ns, id) = (wan_ns.clone(), cluster.id.clone());
                    let done = tokio::task::spawn_blocking(move || {
                        isthmus_lab::lb::point_at(&ns, &id, vip, WIREGUARD_PORT, want)
                    })
                    .await;
                    match done {
                        Ok(Ok(())) => {
                            tracing::info!(cluster = %cluster.id, %vip, backend = ?want,
                                "lab load balancer follows the gateway lease");
                            current = want;
                        }
                        Ok(Err(err)) => tracing::warn!(cluster = %cluster.id, error = %err,
                            "lab load balancer: re-pointing failed"),
                        Err(err) => tracing::warn!(error = %err, "lab load balancer task"),
                    }
                }
            }
            tokio::time::sleep(POLL).await;
        }
    });
    Balancer { task }
}
