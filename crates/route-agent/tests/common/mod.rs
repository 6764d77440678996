//! Shared fixtures of the route agent's tests: an in-memory API with the CRDs and namespace
//! `isthmus`, TunnelEndpoints with a gateway status, a shared fake driver, and a running agent.
#![allow(dead_code)]

use std::future::Future;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use isthmus_api::{TunnelEndpoint, TunnelEndpointSpec, all_crds};
use isthmus_dataplane::node_nat::NodeNatDriver;
use isthmus_dataplane::node_nat::fake::FakeNodeNat;
use isthmus_dataplane::routes::fake::FakeRoutes;
use isthmus_dataplane::routes::{Route, RouteDriver, VxlanSpec};
use isthmus_memkube::MemKube;
use isthmus_route_agent::{RouteAgentConfig, RouteAgentTelemetry};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const NS: &str = "isthmus";

/// An API with the CRDs and the namespace.
pub async fn api() -> (MemKube, Client) {
    let kube = MemKube::new();
    for crd in all_crds() {
        kube.register_crd(&crd).unwrap();
    }
    let client = kube.client();
    kube.create_namespace(NS).unwrap();
    (kube, client)
}

pub fn teps(client: &Client) -> Api<TunnelEndpoint> {
    Api::namespaced(client.clone(), NS)
}

/// Creates TunnelEndpoint `peer` whose remote ranges, as we address them, are `pod` and `ext`.
pub async fn create_tep(client: &Client, peer: &str, pod: &str, ext: &str) {
    let c = |s: &str| s.parse().unwrap();
    let spec = TunnelEndpointSpec {
        cluster_id: peer.parse().unwrap(),
        local_pod_cidr: c("10.0.0.0/16"),
        local_nat_pod_cidr: c("10.0.0.0/16"),
        local_external_cidr: c("10.1.0.0/16"),
        local_nat_external_cidr: c("10.1.0.0/16"),
        remote_pod_cidr: c("10.0.0.0/16"),
        remote_nat_pod_cidr: c(pod),
        remote_external_cidr: c("10.1.0.0/16"),
        remote_nat_external_cidr: c(ext),
        endpoint: "192.168.100.2:51820".into(),
        backend_type: Default::default(),
        backend_config: Default::default(),
    };
    teps(client)
        .create(&PostParams::default(), &TunnelEndpoint::new(peer, spec))
        .await
        .unwrap();
}

/// Writes the gateway's part of the status, as the gateway does.
pub async fn set_gateway(client: &Client, peer: &str, node: &str, ip: Ipv4Addr) {
    let status = serde_json::json!({"status": {"gatewayNode": node, "gatewayIP": ip.to_string()}});
    teps(client)
        .patch_status(peer, &PatchParams::default(), &Patch::Merge(status))
        .await
        .unwrap();
}

pub async fn delete_tep(client: &Client, peer: &str) {
    teps(client)
        .delete(peer, &DeleteParams::default())
        .await
        .unwrap();
}

/// A [`FakeRoutes`] the test keeps looking at while the agent owns a handle to it. Adding
/// routes fails while `fail_adds` is above zero (one failure per call).
#[derive(Debug, Clone, Default)]
pub struct SharedRoutes {
    pub inner: Arc<Mutex<FakeRoutes>>,
    pub fail_adds: Arc<Mutex<u32>>,
}

impl SharedRoutes {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, FakeRoutes> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Installed routes as `dst via gateway` strings, sorted.
    pub fn routes(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .lock()
            .routes
            .iter()
            .map(|r| match &r.via {
                isthmus_dataplane::routes::NextHop::Via(ip, _) => format!("{} via {ip}", r.dst),
                isthmus_dataplane::routes::NextHop::Dev(d) => format!("{} dev {d}", r.dst),
                isthmus_dataplane::routes::NextHop::Onlink(ip, d) => {
                    format!("{} via {ip} dev {d} onlink", r.dst)
                }
            })
            .collect();
        v.sort();
        v
    }

    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }
}

impl RouteDriver for SharedRoutes {
    fn enable_forwarding(&mut self) -> isthmus_dataplane::Result<()> {
        self.lock().enable_forwarding()
    }
    fn link_up(&mut self, name: &str, mtu: Option<u32>) -> isthmus_dataplane::Result<()> {
        self.lock().link_up(name, mtu)
    }
    fn ensure_vxlan(&mut self, spec: &VxlanSpec) -> isthmus_dataplane::Result<()> {
        self.lock().ensure_vxlan(spec)
    }
    fn delete_link(&mut self, name: &str) -> isthmus_dataplane::Result<()> {
        self.lock().delete_link(name)
    }
    fn reach(
        &mut self,
        dst: std::net::Ipv4Addr,
    ) -> isthmus_dataplane::Result<isthmus_dataplane::routes::overlay::Reach> {
        self.lock().reach(dst)
    }
    fn routes(&mut self) -> isthmus_dataplane::Result<Vec<Route>> {
        self.lock().routes()
    }
    fn add_route(&mut self, route: &Route) -> isthmus_dataplane::Result<()> {
        let mut fail = self
            .fail_adds
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if *fail > 0 {
            *fail -= 1;
            return Err(isthmus_dataplane::Error::Io(std::io::Error::other(
                "injected failure",
            )));
        }
        self.lock().add_route(route)
    }
    fn del_route(&mut self, route: &Route) -> isthmus_dataplane::Result<()> {
        self.lock().del_route(route)
    }
}

/// A running agent, stopped on [`Agent::stop`].
pub struct Agent {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<isthmus_route_agent::Result<()>>,
}

/// Test timings: fast retries, resync as given.
pub fn config(node: &str, resync: Duration) -> RouteAgentConfig {
    let mut c = RouteAgentConfig::new(node, NS);
    c.resync = resync;
    c.backoff.min = Duration::from_millis(20);
    c.backoff.max = Duration::from_millis(200);
    c
}

impl Agent {
    pub fn start<R: RouteDriver + 'static>(
        config: RouteAgentConfig,
        client: &Client,
        driver: R,
    ) -> Agent {
        Agent::observed(config, RouteAgentTelemetry::default(), client, driver)
    }

    /// Started with a NAT exemption driver of the test's choosing.
    pub fn with_nat<R: RouteDriver + 'static, N: NodeNatDriver + 'static>(
        config: RouteAgentConfig,
        client: &Client,
        driver: R,
        nat: N,
    ) -> Agent {
        Agent::spawn(config, RouteAgentTelemetry::default(), client, driver, nat)
    }

    /// Started with `telemetry` recording.
    pub fn observed<R: RouteDriver + 'static>(
        config: RouteAgentConfig,
        telemetry: RouteAgentTelemetry,
        client: &Client,
        driver: R,
    ) -> Agent {
        Agent::spawn(config, telemetry, client, driver, FakeNodeNat::default())
    }

    fn spawn<R: RouteDriver + 'static, N: NodeNatDriver + 'static>(
        config: RouteAgentConfig,
        telemetry: RouteAgentTelemetry,
        client: &Client,
        driver: R,
        nat: N,
    ) -> Agent {
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(isthmus_route_agent::run_observed(
            config,
            telemetry,
            client.clone(),
            driver,
            nat,
            async move {
                let _ = rx.await;
            },
        ));
        Agent {
            stop: Some(tx),
            task,
        }
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let r = tokio::time::timeout(Duration::from_secs(10), self.task).await;
        r.expect("agent stops").unwrap().unwrap();
    }
}

/// Polls `check` until it holds; fails after a generous deadline.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
