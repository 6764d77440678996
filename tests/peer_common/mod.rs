//! Fixtures of the `isthmus peer` / `isthmus unpeer` tests. A [`Site`] is one simulated
//! cluster: a memkube API served over HTTP holding what the Helm chart installs (CRDs, the
//! namespace, the cluster-info ConfigMap, the peer ServiceAccount, the gateway's key Secret), a
//! kubeconfig file that names it, and, when started, its real network-manager (reaching peers
//! through the kubeconfig Secrets `peer` writes: `KubeconfigPeers`) and its real gateway
//! controller on the recording fakes, where every peer has shaken hands and every probe is
//! answered. Tokens come from [`FakeTokens`]: memkube has no TokenRequest yet.

#![allow(dead_code)]

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use isthmus::peer::args::Clusters;
use isthmus::peer::token::{Minted, Token, TokenSource};
use isthmus::peer::{Console, PeerArgs, UnpeerArgs};
use isthmus_api::{ClusterId, ForeignCluster, NatMapping, NetworkConfig, TunnelEndpoint, all_crds};
use isthmus_dataplane::firewall::fake::FakeFirewall;
use isthmus_dataplane::routes::fake::FakeRoutes;
use isthmus_dataplane::tunnel::Backend;
use isthmus_dataplane::tunnel::fake::{FakeTraffic, FakeTunnel};
use isthmus_dataplane::{Gateway, GatewayHandle, PrivateKey};
use isthmus_gateway::{FakeProber, GatewayConfig};
use isthmus_ipam::{IpamConfig, default_pools};
use isthmus_ipam_store::{DurableIpam, FileStore};
use isthmus_memkube::{HttpServer, MemKube};
use isthmus_network_manager::{Backoff, KubeconfigPeers, LocalGateway, NetworkManagerConfig};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const NS: &str = "isthmus";
pub const KEY_SECRET: &str = "isthmus-gateway-key";

/// What of the chart a site has.
#[derive(Debug, Clone, Copy)]
pub struct Install {
    pub crds: bool,
    pub namespace: bool,
    pub cluster_info: bool,
    pub peer_account: bool,
    pub gateway_key: bool,
}

impl Install {
    pub const FULL: Install = Install {
        crds: true,
        namespace: true,
        cluster_info: true,
        peer_account: true,
        gateway_key: true,
    };
}

type FakeHandle = GatewayHandle<FakeTunnel, FakeFirewall, FakeRoutes>;

/// A gateway controller running on fakes.
pub struct RunningGateway {
    pub handle: FakeHandle,
    stop: oneshot::Sender<()>,
    task: JoinHandle<isthmus_gateway::Result<()>>,
}

/// One simulated cluster.
pub struct Site {
    pub id: String,
    pub index: u8,
    pub kube: MemKube,
    pub client: Client,
    pub http: HttpServer,
    pub dir: tempfile::TempDir,
    /// A kubeconfig file with one context, `ctx-<id>`.
    pub kubeconfig: PathBuf,
    /// The gateway's key (its Secret exists when `Install::gateway_key`).
    pub key: PrivateKey,
    network_manager: Option<(
        oneshot::Sender<()>,
        JoinHandle<isthmus_network_manager::Result<()>>,
    )>,
    pub gateway: Option<RunningGateway>,
}

/// A kubeconfig naming `server` as context `ctx-<id>` (no credentials: memkube takes anyone).
pub fn kubeconfig_entry(id: &str, server: &str) -> serde_json::Value {
    json!({
        "cluster": {"name": format!("c-{id}"), "cluster": {"server": server}},
        "user": {"name": format!("u-{id}"), "user": {}},
        "context": {"name": format!("ctx-{id}"), "context": {"cluster": format!("c-{id}"), "user": format!("u-{id}")}},
    })
}

/// A kubeconfig file with the given entries, the first one current.
pub fn write_kubeconfig(path: &PathBuf, entries: &[serde_json::Value]) {
    let pick = |k: &str| entries.iter().map(|e| e[k].clone()).collect::<Vec<_>>();
    let current = entries[0]["context"]["name"].clone();
    let doc = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": pick("cluster"), "users": pick("user"), "contexts": pick("context"),
        "current-context": current,
    });
    std::fs::write(path, serde_yaml::to_string(&doc).unwrap()).unwrap();
}

impl Site {
    /// A site with `install` of the chart, served on 127.0.0.1.
    pub async fn new(id: &str, index: u8, install: Install) -> Site {
        let kube = MemKube::new();
        if install.crds {
            for crd in all_crds() {
                kube.register_crd(&crd).unwrap();
            }
        }
        if install.namespace {
            kube.create_namespace(NS).unwrap();
        }
        let client = kube.client();
        let http = kube
            .serve_http(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        write_kubeconfig(&kubeconfig, &[kubeconfig_entry(id, &http.url())]);
        let site = Site {
            id: id.to_owned(),
            index,
            kube,
            client,
            http,
            dir,
            kubeconfig,
            key: PrivateKey::generate(),
            network_manager: None,
            gateway: None,
        };
        site.install_in(NS, install).await;
        site
    }

    /// Creates what the chart would in namespace `ns` (which must exist).
    pub async fn install_in(&self, ns: &str, install: Install) {
        if install.cluster_info {
            let cm: ConfigMap = serde_json::from_value(json!({
                "metadata": {"name": "isthmus-cluster", "namespace": ns,
                    "labels": {"net.isthmus.io/cluster-info": "true"}},
                "data": {"clusterID": self.id, "peerServiceAccount": "isthmus-peer",
                    "gatewayKeySecret": KEY_SECRET, "gatewayLease": "isthmus-gateway"},
            }))
            .unwrap();
            Api::<ConfigMap>::namespaced(self.client.clone(), ns)
                .create(&PostParams::default(), &cm)
                .await
                .unwrap();
        }
        if install.peer_account {
            let sa: ServiceAccount = serde_json::from_value(
                json!({"metadata": {"name": "isthmus-peer", "namespace": ns}}),
            )
            .unwrap();
            Api::<ServiceAccount>::namespaced(self.client.clone(), ns)
                .create(&PostParams::default(), &sa)
                .await
                .unwrap();
        }
        if install.gateway_key {
            let secret: Secret = serde_json::from_value(json!({
                "metadata": {"name": KEY_SECRET, "namespace": ns},
                "stringData": {"privateKey": self.key.expose_base64(),
                    "publicKey": self.key.public_key().to_string()},
            }))
            .unwrap();
            Api::<Secret>::namespaced(self.client.clone(), ns)
                .create(&PostParams::default(), &secret)
                .await
                .unwrap();
        }
    }

    pub fn cluster_id(&self) -> ClusterId {
        self.id.parse().unwrap()
    }

    /// Starts the network-manager (IPAM in a FileStore; peers through kubeconfig Secrets).
    pub async fn start_network_manager(&mut self) {
        let ipam_config = IpamConfig {
            pod_cidr: "10.0.0.0/16".parse().unwrap(),
            service_cidr: None,
            external_cidr: None,
            pools: default_pools(),
            reserved: vec![],
        };
        let state = self.dir.path().join("ipam");
        std::fs::create_dir_all(&state).unwrap();
        let store = FileStore::open(&state).unwrap();
        let ipam = DurableIpam::open(&ipam_config, store).await.unwrap();
        let gateway = LocalGateway {
            endpoint: format!("192.168.200.{}:51820", self.index),
            public_key: self.key.public_key().to_string(),
        };
        let mut config = NetworkManagerConfig::new(self.cluster_id(), NS, gateway);
        config.backoff = Backoff {
            min: Duration::from_millis(50),
            max: Duration::from_millis(500),
        };
        config.pending_recheck = Duration::from_secs(1);
        let (tx, rx) = oneshot::channel::<()>();
        let peers = Arc::new(KubeconfigPeers::new(self.client.clone()));
        let task = tokio::spawn(isthmus_network_manager::run(
            config,
            self.client.clone(),
            peers,
            ipam,
            async move {
                let _ = rx.await;
            },
        ));
        self.network_manager = Some((tx, task));
    }

    /// Starts the gateway controller on fakes: `peers` have all shaken hands with it, and every
    /// probe is answered.
    pub fn start_gateway(&mut self, peers: &[&PrivateKey]) {
        let mut config = GatewayConfig::new(
            self.cluster_id(),
            NS,
            "isthmus0",
            "node-1",
            Ipv4Addr::new(172, 16, 0, self.index),
            &format!("gw-{}", self.id),
        );
        config.probe_interval = Duration::from_millis(200);
        config.probe_timeout = Duration::from_millis(100);
        config.leader.lease_duration = Duration::from_secs(2);
        config.leader.renew_period = Duration::from_millis(300);
        config.leader.retry_period = Duration::from_millis(100);
        let mut tunnel = FakeTunnel::new(Backend::Kernel);
        for peer in peers {
            let shaken = FakeTraffic {
                last_handshake: Some(SystemTime::now()),
                rx_bytes: 1000,
                tx_bytes: 2000,
            };
            tunnel.traffic.insert(peer.public_key(), shaken);
        }
        let handle = GatewayHandle::new(Gateway::new(
            tunnel,
            FakeFirewall::default(),
            FakeRoutes::default(),
        ));
        let prober = FakeProber::default();
        prober.answer_every(Some(Duration::from_micros(420)));
        let (stop, rx) = oneshot::channel();
        let task = tokio::spawn(isthmus_gateway::run(
            config,
            self.client.clone(),
            handle.clone(),
            self.key.clone(),
            Arc::new(prober),
            async move {
                let _ = rx.await;
            },
        ));
        self.gateway = Some(RunningGateway { handle, stop, task });
    }

    /// Stops the gateway cleanly (the kernel, and so the finalizers, stay as they are).
    pub async fn stop_gateway(&mut self) -> Option<FakeHandle> {
        let gw = self.gateway.take()?;
        let _ = gw.stop.send(());
        tokio::time::timeout(Duration::from_secs(10), gw.task)
            .await
            .expect("the gateway stops")
            .unwrap()
            .unwrap();
        Some(gw.handle)
    }

    /// Stops everything this site runs.
    pub async fn stop(&mut self) {
        self.stop_gateway().await;
        if let Some((tx, task)) = self.network_manager.take() {
            let _ = tx.send(());
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("the network-manager stops")
                .unwrap()
                .unwrap();
        }
    }

    /// Everything a peering leaves in this cluster's API, as `Kind/name`.
    pub async fn peering_objects(&self) -> Vec<String> {
        let c = || self.client.clone();
        let mut out = Vec::new();
        out.extend(names("ForeignCluster", Api::<ForeignCluster>::all(c())).await);
        out.extend(names("TunnelEndpoint", Api::<TunnelEndpoint>::namespaced(c(), NS)).await);
        out.extend(names("NatMapping", Api::<NatMapping>::namespaced(c(), NS)).await);
        out.extend(names("NetworkConfig", Api::<NetworkConfig>::namespaced(c(), NS)).await);
        let secrets = names("Secret", Api::<Secret>::namespaced(c(), NS)).await;
        out.extend(
            secrets
                .into_iter()
                .filter(|n| n.starts_with("Secret/isthmus-peer-")),
        );
        out
    }

    /// The kubeconfig `peer` stored for `reached`, as text.
    pub async fn stored_kubeconfig(&self, reached: &Site) -> Option<String> {
        let secret = Api::<Secret>::namespaced(self.client.clone(), NS)
            .get_opt(&format!("isthmus-peer-{}", reached.id))
            .await
            .unwrap()?;
        let bytes = secret.data?.get("kubeconfig")?.0.clone();
        Some(String::from_utf8(bytes).unwrap())
    }
}

/// `Kind/name` of every object `api` lists.
async fn names<K>(kind: &str, api: Api<K>) -> Vec<String>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.list_metadata(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|o| format!("{kind}/{}", kube::ResourceExt::name_any(o)))
        .collect()
}

/// Two fully installed sites, `cluster-a` and `cluster-b`, each with its network-manager and
/// gateway running; their gateways have shaken hands with each other.
pub async fn running_pair() -> (Site, Site) {
    let mut a = Site::new("cluster-a", 1, Install::FULL).await;
    let mut b = Site::new("cluster-b", 2, Install::FULL).await;
    a.start_network_manager().await;
    b.start_network_manager().await;
    let (ka, kb) = (a.key.clone(), b.key.clone());
    a.start_gateway(&[&kb]);
    b.start_gateway(&[&ka]);
    (a, b)
}

/// Tokens for tests: `tok-<n>-<namespace>-<account>`, distinct per call; counts the calls.
#[derive(Debug, Default)]
pub struct FakeTokens {
    pub minted: AtomicUsize,
}

impl FakeTokens {
    pub fn count(&self) -> usize {
        self.minted.load(Ordering::SeqCst)
    }
}

impl TokenSource for FakeTokens {
    fn mint<'a>(
        &'a self,
        _client: &'a Client,
        namespace: &'a str,
        account: &'a str,
        _lifetime: Duration,
    ) -> BoxFuture<'a, Result<Minted, String>> {
        let n = self.minted.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            Ok(Minted {
                token: Token::new(format!("tok-{n}-{namespace}-{account}")),
                expires: Some("2099-01-01T00:00:00Z".to_owned()),
            })
        })
    }
}

/// Console output captured for assertions.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

/// A console writing into a buffer (not a terminal).
pub fn captured() -> (Console, Captured) {
    let out = Captured::default();
    (Console::new(Box::new(out.clone()), false), out)
}

fn clusters(a: &Site, b: &Site, timeout: Duration) -> Clusters {
    Clusters {
        kubeconfig: Some(a.kubeconfig.clone()),
        context: None,
        namespace: NS.to_owned(),
        remote_kubeconfig: Some(b.kubeconfig.clone()),
        remote_context: None,
        remote_namespace: NS.to_owned(),
        timeout,
    }
}

/// `isthmus peer` from `a` (local) to `b` (remote), waiting at most `timeout`.
pub fn peer_args(a: &Site, b: &Site, timeout: Duration) -> PeerArgs {
    PeerArgs {
        clusters: clusters(a, b, timeout),
        api_url: None,
        remote_api_url: None,
        dry_run: false,
    }
}

/// `isthmus unpeer` from `a` (local) to `b` (remote).
pub fn unpeer_args(a: &Site, b: &Site, timeout: Duration) -> UnpeerArgs {
    UnpeerArgs {
        clusters: clusters(a, b, timeout),
        dry_run: false,
    }
}
