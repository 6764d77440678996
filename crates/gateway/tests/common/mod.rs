//! Shared fixtures of the controller tests: one memkube cluster, gateway controllers on
//! recording fakes with a scripted prober, TunnelEndpoints, and polling with a deadline.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use isthmus_api::{
    BackendType, NatMapping, NatMappingSpec, TunnelEndpoint, TunnelEndpointSpec, all_crds,
};
use isthmus_dataplane::firewall::fake::FakeFirewall;
use isthmus_dataplane::routes::fake::FakeRoutes;
use isthmus_dataplane::tunnel::Backend;
use isthmus_dataplane::tunnel::fake::FakeTunnel;
use isthmus_dataplane::{Gateway, GatewayHandle, PrivateKey};
use isthmus_gateway::{FakeProber, GatewayConfig};
use isthmus_memkube::MemKube;
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const NS: &str = "isthmus";

pub type FakeHandle = GatewayHandle<FakeTunnel, FakeFirewall, FakeRoutes>;

/// A memkube API with the CRDs and the namespace.
pub async fn cluster() -> (MemKube, Client) {
    let kube = MemKube::new();
    for crd in all_crds() {
        kube.register_crd(&crd).unwrap();
    }
    let client = kube.client();
    kube.create_namespace(NS).unwrap();
    (kube, client)
}

/// [`config`] for a replica on node `node`.
pub fn config_on(identity: &str, node: &str) -> GatewayConfig {
    let mut c = config(identity);
    c.node_name = node.to_owned();
    c.leader.node = node.to_owned();
    c
}

/// Fast timing: probes every 200 ms, a 2 s lease.
pub fn config(identity: &str) -> GatewayConfig {
    let mut c = GatewayConfig::new(
        "a".parse().unwrap(),
        NS,
        "isthmus0",
        "node-1",
        Ipv4Addr::new(172, 16, 0, 1),
        identity,
    );
    c.probe_interval = Duration::from_millis(200);
    c.probe_timeout = Duration::from_millis(100);
    c.connection.error_after = Duration::from_secs(5);
    c.leader.lease_duration = Duration::from_secs(2);
    c.leader.renew_period = Duration::from_millis(300);
    c.leader.renew_deadline = Duration::from_millis(1300);
    c.leader.retry_period = Duration::from_millis(100);
    c
}

/// A running controller.
pub struct Running {
    pub handle: FakeHandle,
    pub prober: FakeProber,
    stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<isthmus_gateway::Result<()>>,
}

impl Running {
    /// Stops it cleanly and returns what `run` returned.
    pub async fn stop(mut self) -> isthmus_gateway::Result<()> {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("run returns after shutdown")
            .unwrap()
    }

    /// Peers configured in the fake tunnel.
    pub fn peers(&self) -> usize {
        self.handle.inspect(|gw| gw.tunnel.peers.len())
    }

    /// Whether the fake tunnel has a device.
    pub fn has_device(&self) -> bool {
        self.handle.inspect(|gw| gw.tunnel.device.is_some())
    }
}

pub fn start(client: &Client, config: GatewayConfig, prober: FakeProber) -> Running {
    start_on(client, config, prober, fake_handle())
}

/// A gateway on fresh recording fakes.
pub fn fake_handle() -> FakeHandle {
    GatewayHandle::new(Gateway::new(
        FakeTunnel::new(Backend::Userspace),
        FakeFirewall::default(),
        FakeRoutes::default(),
    ))
}

/// [`start`] on the given drivers (which may hold state already, as a node does).
pub fn start_on(
    client: &Client,
    config: GatewayConfig,
    prober: FakeProber,
    handle: FakeHandle,
) -> Running {
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(isthmus_gateway::run(
        config,
        client.clone(),
        handle.clone(),
        PrivateKey::generate(),
        Arc::new(prober.clone()),
        async move {
            let _ = rx.await;
        },
    ));
    Running {
        handle,
        prober,
        stop: Some(tx),
        task,
    }
}

/// TunnelEndpoint `peer` (index `i`): we see its pods as 10.10i.0.0/24 and its ExternalCIDR
/// as 10.20i.0.0/24 (probe target 10.20i.0.1); it sees ours as 10.110.0.0/24, 10.210.0.0/24.
pub fn tep(peer: &str, i: u8, key: &PrivateKey) -> TunnelEndpoint {
    let c = |s: String| s.parse().unwrap();
    TunnelEndpoint::new(
        peer,
        TunnelEndpointSpec {
            cluster_id: peer.parse().unwrap(),
            local_pod_cidr: c("10.0.0.0/24".into()),
            local_nat_pod_cidr: c("10.110.0.0/24".into()),
            local_external_cidr: c("10.200.0.0/24".into()),
            local_nat_external_cidr: c("10.210.0.0/24".into()),
            remote_pod_cidr: c("10.0.0.0/24".into()),
            remote_nat_pod_cidr: c(format!("10.10{i}.0.0/24")),
            remote_external_cidr: c("10.200.0.0/24".into()),
            remote_nat_external_cidr: c(format!("10.20{i}.0.0/24")),
            endpoint: format!("192.168.100.1{i}:51820"),
            backend_type: BackendType::default(),
            backend_config: BTreeMap::from([(
                "publicKey".to_owned(),
                key.public_key().to_string(),
            )]),
        },
    )
}

pub fn target(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 200 + i, 0, 1)
}

pub async fn create_tep(client: &Client, tep: &TunnelEndpoint) {
    Api::<TunnelEndpoint>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), tep)
        .await
        .unwrap();
}

pub fn nat_mapping(peer: &str, pairs: &[(&str, &str)]) -> NatMapping {
    NatMapping::new(
        peer,
        NatMappingSpec {
            cluster_id: peer.parse().unwrap(),
            block: None,
            cluster_mappings: pairs
                .iter()
                .map(|(a, b)| (a.parse().unwrap(), b.parse().unwrap()))
                .collect(),
        },
    )
}

pub async fn get_tep(client: &Client, name: &str) -> TunnelEndpoint {
    Api::<TunnelEndpoint>::namespaced(client.clone(), NS)
        .get(name)
        .await
        .unwrap()
}

/// Polls `check` every 20 ms until it holds; panics with `what` after `limit`.
pub async fn wait_for<Fut: std::future::Future<Output = bool>>(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> Fut,
) -> Duration {
    let start = Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "timed out after {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Marks `key`'s peer as having shaken hands, with some traffic.
pub fn handshake(handle: &FakeHandle, key: &PrivateKey) {
    handle.inspect(|gw| {
        gw.tunnel.traffic.insert(
            key.public_key(),
            isthmus_dataplane::tunnel::fake::FakeTraffic {
                last_handshake: Some(std::time::SystemTime::now()),
                rx_bytes: 1000,
                tx_bytes: 2000,
            },
        )
    });
}
