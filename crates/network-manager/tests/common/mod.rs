//! Shared fixtures: an in-memory cluster (its own memkube API, its own durable IPAM over a
//! FileStore in a temporary directory, its own network-manager), peering helpers, and polling
//! with a generous deadline.
#![allow(dead_code)]

mod api_log;
pub use api_log::{ApiLog, Logged};

use std::collections::BTreeMap;
use std::future::Future;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use isthmus_api::{
    Cidr, ClusterId, ForeignCluster, ForeignClusterSpec, LABEL_REMOTE_CLUSTER, NatMapping,
    NetworkConfig, TunnelEndpoint, all_crds,
};
use isthmus_ipam::{IpamConfig, default_pools};
use isthmus_ipam_store::{DurableIpam, FileStore};
use isthmus_memkube::MemKube;
use isthmus_network_manager::{
    Backoff, LabPeers, LocalGateway, NetworkManagerConfig, NetworkManagerTelemetry, PeerClient,
    PeerResolver, ResolveError,
};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const NS: &str = "isthmus";

/// The namespace of peer `peer` in a cluster (where it writes its NetworkConfig).
pub fn peer_ns(peer: &str) -> String {
    isthmus_api::peer_namespace(NS, &peer.parse().unwrap())
}

pub fn cidr(s: &str) -> Cidr {
    s.parse().unwrap()
}

/// One simulated cluster.
pub struct Cluster {
    pub name: String,
    pub id: ClusterId,
    pub kube: MemKube,
    pub client: Client,
    /// The client the network-manager uses, when not `client` (say one that records requests).
    pub manager_client: Option<Client>,
    pub ipam_config: IpamConfig,
    pub ipam: Option<DurableIpam>,
    dir: tempfile::TempDir,
    running: Option<(
        oneshot::Sender<()>,
        JoinHandle<isthmus_network_manager::Result<()>>,
    )>,
    pub index: u8,
    /// What the network-manager records (Events go to this cluster's API).
    pub telemetry: NetworkManagerTelemetry,
}

impl Cluster {
    /// A cluster with the CRDs registered, namespace `isthmus`, and its IPAM open.
    pub async fn new(name: &str, index: u8, pod: &str, pools: Option<Vec<Cidr>>) -> Self {
        let kube = MemKube::new();
        for crd in all_crds() {
            kube.register_crd(&crd).unwrap();
        }
        let client = kube.client();
        kube.create_namespace(NS).unwrap();
        let telemetry = NetworkManagerTelemetry {
            events: isthmus_telemetry::Events::new(client.clone(), "isthmus-network-manager", name),
            ..NetworkManagerTelemetry::default()
        };
        let ipam_config = IpamConfig {
            pod_cidr: cidr(pod),
            service_cidr: None,
            external_cidr: None,
            pools: pools.unwrap_or_else(default_pools),
            reserved: vec![],
        };
        let mut c = Cluster {
            name: name.to_owned(),
            id: name.parse().unwrap(),
            kube,
            client,
            manager_client: None,
            ipam_config,
            ipam: None,
            dir: tempfile::tempdir().unwrap(),
            running: None,
            index,
            telemetry,
        };
        c.open_ipam().await;
        c
    }

    /// (Re)opens the durable IPAM over this cluster's store directory.
    pub async fn open_ipam(&mut self) {
        let store = FileStore::open(self.dir.path()).unwrap();
        self.ipam = Some(DurableIpam::open(&self.ipam_config, store).await.unwrap());
    }

    pub fn ipam(&self) -> &DurableIpam {
        self.ipam.as_ref().expect("IPAM open")
    }

    /// This cluster's gateway public key (distinct per cluster, valid base64 for 32 bytes).
    pub fn public_key(&self) -> String {
        format!("{:A<43}=", format!("Key{}", self.name))
    }

    pub fn endpoint(&self) -> String {
        format!("192.168.200.{}:51820", self.index)
    }

    pub fn config(&self) -> NetworkManagerConfig {
        let gw = LocalGateway {
            endpoint: self.endpoint(),
            public_key: self.public_key(),
        };
        let mut c = NetworkManagerConfig::new(self.id.clone(), NS, gw);
        c.backoff = Backoff {
            min: Duration::from_millis(50),
            max: Duration::from_millis(500),
        };
        c.pending_recheck = Duration::from_secs(2);
        c
    }

    /// Starts this cluster's network-manager.
    pub fn start(&mut self, peers: Arc<dyn PeerResolver>) {
        assert!(self.running.is_none(), "already running");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(isthmus_network_manager::run_observed(
            self.config(),
            self.telemetry.clone(),
            self.manager_client.clone().unwrap_or(self.client.clone()),
            peers,
            self.ipam().clone(),
            async move {
                let _ = rx.await;
            },
        ));
        self.running = Some((tx, task));
    }

    /// Stops the network-manager and closes the IPAM.
    pub async fn stop(&mut self) {
        if let Some((tx, task)) = self.running.take() {
            let _ = tx.send(());
            let r = tokio::time::timeout(Duration::from_secs(30), task).await;
            r.expect("network-manager stops").unwrap().unwrap();
        }
        self.ipam = None;
    }

    pub fn fcs(&self) -> Api<ForeignCluster> {
        Api::all(self.client.clone())
    }
    /// Every NetworkConfig of this cluster, in any namespace.
    pub fn ncs(&self) -> Api<NetworkConfig> {
        Api::all(self.client.clone())
    }
    /// The NetworkConfigs peer `peer` writes into this cluster: those of its namespace.
    pub fn ncs_from(&self, peer: &str) -> Api<NetworkConfig> {
        Api::namespaced(self.client.clone(), &peer_ns(peer))
    }
    pub fn teps(&self) -> Api<TunnelEndpoint> {
        Api::namespaced(self.client.clone(), NS)
    }
    pub fn nms(&self) -> Api<NatMapping> {
        Api::namespaced(self.client.clone(), NS)
    }

    /// Every NatMapping object about `peer` (its shards, and an older whole-peer object).
    pub async fn nat_objects(&self, peer: &Cluster) -> Vec<NatMapping> {
        let lp = ListParams::default().labels(&format!("{LABEL_REMOTE_CLUSTER}={}", peer.id));
        self.nms().list(&lp).await.unwrap().items
    }

    /// The union of `peer`'s NatMapping shards: new IP → endpoint.
    pub async fn nat_entries(&self, peer: &Cluster) -> BTreeMap<Ipv4Addr, Ipv4Addr> {
        let objects = self.nat_objects(peer).await;
        objects
            .into_iter()
            .flat_map(|nm| nm.spec.cluster_mappings)
            .collect()
    }

    /// Creates the ForeignCluster for `peer` (named after it), reached as lab cluster `peer`,
    /// and, as `isthmus peer` does, the namespace of each in the other's API.
    pub async fn add_peer(&self, peer: &Cluster) {
        self.ensure_namespace(&peer_ns(&peer.name));
        peer.ensure_namespace(&peer_ns(&self.name));
        let spec = ForeignClusterSpec {
            cluster_id: peer.id.clone(),
            kubeconfig_secret_ref: None,
            lab_cluster: Some(peer.name.clone()),
        };
        let fc = ForeignCluster::new(&peer.name, spec);
        self.fcs()
            .create(&PostParams::default(), &fc)
            .await
            .unwrap();
    }

    /// Creates namespace `name` unless it exists.
    pub fn ensure_namespace(&self, name: &str) {
        if let Err(e) = self.kube.create_namespace(name) {
            assert!(
                e.to_string().contains("already exists"),
                "namespace {name}: {e}"
            );
        }
    }

    pub async fn remove_peer(&self, peer: &Cluster) {
        self.fcs()
            .delete(&peer.name, &DeleteParams::default())
            .await
            .unwrap();
    }

    pub async fn phase(&self, peer: &Cluster) -> Option<String> {
        let fc = self.fcs().get_opt(&peer.name).await.ok()??;
        fc.status?.phase
    }

    pub async fn tep(&self, peer: &Cluster) -> Option<TunnelEndpoint> {
        self.teps().get_opt(&peer.name).await.unwrap()
    }
}

/// A lab resolver over every cluster.
pub fn lab(clusters: &[&Cluster]) -> LabPeers {
    let peers = LabPeers::new();
    for c in clusters {
        peers.insert(&c.name, c.client.clone());
    }
    peers
}

/// Peers every pair of `clusters` both ways.
pub async fn mesh(clusters: &[&Cluster]) {
    for a in clusters {
        for b in clusters {
            if a.name != b.name {
                a.add_peer(b).await;
            }
        }
    }
}

/// Two clusters "a" and "b" with the same Pod CIDR 10.0.0.0/16, both network-managers running
/// over one lab resolver, peered both ways and waited for.
pub async fn peered_pair() -> (Cluster, Cluster, Arc<LabPeers>) {
    let mut a = Cluster::new("a", 1, "10.0.0.0/16", None).await;
    let mut b = Cluster::new("b", 2, "10.0.0.0/16", None).await;
    let peers = Arc::new(lab(&[&a, &b]));
    a.start(peers.clone());
    b.start(peers.clone());
    mesh(&[&a, &b]).await;
    wait_peered(&a, &b).await;
    (a, b, peers)
}

/// Polls `check` until it holds; fails after a generous deadline.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `a` and `b` both say `Peered` and both TunnelEndpoints exist.
pub async fn wait_peered(a: &Cluster, b: &Cluster) {
    let what = format!("{} and {} peered", a.name, b.name);
    eventually(&what, || async {
        a.phase(b).await.as_deref() == Some("Peered")
            && b.phase(a).await.as_deref() == Some("Peered")
            && a.tep(b).await.is_some()
            && b.tep(a).await.is_some()
    })
    .await;
}

/// A resolver that counts calls and delegates to a [`LabPeers`].
#[derive(Debug, Default)]
pub struct CountingPeers {
    pub inner: LabPeers,
    pub calls: AtomicUsize,
}

impl CountingPeers {
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl PeerResolver for CountingPeers {
    fn resolve<'a>(
        &'a self,
        fc: &'a ForeignCluster,
    ) -> BoxFuture<'a, Result<PeerClient, ResolveError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.resolve(fc)
    }
}

/// The condition `type_` of a condition list, as (status, reason, message).
pub fn condition(
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    type_: &str,
) -> Option<(String, String, String)> {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}
