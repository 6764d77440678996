//! The daemons' telemetry wiring: the `/metrics`, `/healthz`, `/readyz` server of one component
//! (registry with the build info plus the component's families, bound with a short retry so a
//! restarted process can take over its port), the IPAM as a metrics source, and the
//! network-manager process's telemetry (controllers, gRPC server, IPAM on one `/metrics`).

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use isthmus_ipam_store::{DurableIpam, StoreHealth};
use isthmus_network_manager::NetworkManagerTelemetry;
use isthmus_telemetry::metrics::{
    Grpc, IpamFigures, IpamUsage, RangeUsage, UsageSource, register_build_info,
};
use isthmus_telemetry::{Events, Health, Registry, Server};

/// How long a port still held by a previous run is retried.
const BIND_PATIENCE: Duration = Duration::from_secs(5);

/// Serves `component`'s metrics (those `register` adds) and `health` on `addr`.
pub async fn serve(
    addr: SocketAddr,
    component: &str,
    health: Health,
    register: impl FnOnce(&mut Registry),
) -> anyhow::Result<Server> {
    let mut registry = Registry::default();
    register_build_info(&mut registry, component, env!("CARGO_PKG_VERSION"));
    register(&mut registry);
    let registry = Arc::new(registry);
    let started = tokio::time::Instant::now();
    loop {
        match isthmus_telemetry::serve(addr, registry.clone(), health.clone()).await {
            Ok(server) => return Ok(server),
            Err(err) if started.elapsed() < BIND_PATIENCE => {
                tracing::debug!(error = %err, "metrics port busy; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => return Err(err.into()),
        }
    }
}

/// The IPAM as seen by the metrics: nothing until it is open, then its live figures.
#[derive(Debug, Clone, Default)]
pub struct IpamSource {
    ipam: Arc<OnceLock<DurableIpam>>,
}

impl IpamSource {
    /// Makes the opened IPAM visible to the metrics.
    pub fn set(&self, ipam: DurableIpam) {
        let _ = self.ipam.set(ipam);
    }
}

impl UsageSource for IpamSource {
    fn figures(&self) -> Option<IpamFigures> {
        let ipam = self.ipam.get()?;
        ipam.read(|i| {
            let external = i.external_usage();
            let mut ranges = vec![RangeUsage {
                range: "external",
                cidr: i.local().external_cidr.to_string(),
                allocated: external.allocated,
                available: external.capacity - external.allocated,
            }];
            ranges.extend(i.pool_usage().into_iter().map(|(pool, usage)| RangeUsage {
                range: "pool",
                cidr: pool.to_string(),
                allocated: usage.allocated,
                available: usage.capacity.saturating_sub(usage.allocated),
            }));
            IpamFigures {
                ranges,
                peers: i.peers().count() as u64,
                endpoint_mappings: i.endpoint_count() as u64,
            }
        })
        .ok()
    }
}

/// The process's telemetry: the controllers' (reconciles, Events, health), the gRPC server's
/// and the IPAM's usage, all served on one `/metrics`.
#[derive(Debug, Clone)]
pub struct NetworkManagerProcess {
    pub manager: NetworkManagerTelemetry,
    pub grpc: Grpc,
    ipam: IpamSource,
}

impl NetworkManagerProcess {
    pub fn new(client: &kube::Client, identity: &str) -> Self {
        let events = Events::new(client.clone(), "isthmus-network-manager", identity);
        NetworkManagerProcess {
            manager: NetworkManagerTelemetry {
                events,
                ..NetworkManagerTelemetry::default()
            },
            grpc: Grpc::default(),
            ipam: IpamSource::default(),
        }
    }

    pub async fn serve(&self, addr: SocketAddr) -> anyhow::Result<isthmus_telemetry::Server> {
        let health = self.manager.health.clone();
        crate::daemons::telemetry::serve(addr, "network-manager", health, |registry| {
            self.manager.register(registry);
            self.grpc.register(registry);
            IpamUsage::new(Arc::new(self.ipam.clone())).register(registry);
        })
        .await
    }

    /// The IPAM is open: its figures become visible; a failed store fails liveness (a restart
    /// reloads the state) and readiness; a store that retries fails readiness only.
    pub fn ipam_opened(&self, ipam: &DurableIpam) {
        self.ipam.set(ipam.clone());
        let alive = |ipam: DurableIpam| {
            move || match ipam.is_healthy() {
                true => Ok(()),
                false => Err("the IPAM store failed; a restart reloads the state".to_owned()),
            }
        };
        let ready = |ipam: DurableIpam| {
            move || match ipam.health() {
                StoreHealth::Serving => Ok(()),
                StoreHealth::Degraded(why) => {
                    Err(format!("the IPAM store cannot write (retrying): {why}"))
                }
                StoreHealth::Failed(why) => Err(format!("the IPAM store failed: {why}")),
            }
        };
        let health = &self.manager.health;
        health.liveness_probe("ipam-store", alive(ipam.clone()));
        health.readiness_probe("ipam-store", ready(ipam.clone()));
    }
}
