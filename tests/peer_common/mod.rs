//! Fixtures of the `isthmus peer` / `isthmus unpeer` tests. A [`Site`] is one simulated
//! cluster: a memkube API served over HTTPS (its own CA; authentication and RBAC on) holding what
//! the Helm chart renders (`helm template`: its ServiceAccounts, Roles, bindings and cluster-info
//! ConfigMap, as objects; the CRDs and the namespace), the gateway's key Secret and public-key
//! ConfigMap, a kubeconfig file
//! that names it as a user's would (the CA inline, the admin's token), and, when started, its
//! real network-manager and gateway controller, each acting as its own ServiceAccount under the
//! chart's RBAC. The network-manager reaches the peer through the kubeconfig Secret `peer` wrote
//! (`KubeconfigPeers`), as its own identity in the peer; the gateway runs on the recording fakes, where
//! every peer has shaken hands and every probe is answered. Tokens are minted by memkube's
//! TokenRequest API ([`CountingTokens`] counts them).

#![allow(dead_code)]

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use isthmus::peer::args::Clusters;
use isthmus::peer::kubeconfig::base64;
use isthmus::peer::token::{Minted, TokenRequests, TokenSource};
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
use isthmus_memkube::{HttpServer, MemKube, TlsOptions};
use isthmus_network_manager::{Backoff, KubeconfigPeers, LocalGateway, NetworkManagerConfig};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const NS: &str = "isthmus";
pub const KEY_SECRET: &str = "isthmus-gateway-key";
pub const PUBLIC_KEY_CONFIG_MAP: &str = "isthmus-gateway-pubkey";

/// The namespace of peer `peer` in a site (its identity, its NetworkConfig, our kubeconfig
/// Secret for it).
pub fn peer_ns(peer: &str) -> String {
    isthmus_api::peer_namespace(NS, &peer.parse().unwrap())
}

/// What of the chart a site has.
#[derive(Debug, Clone, Copy)]
pub struct Install {
    pub crds: bool,
    pub namespace: bool,
    pub cluster_info: bool,
    /// The network-manager's ServiceAccount (each peer namespace binds it).
    pub nm_account: bool,
    pub gateway_key: bool,
}

impl Install {
    pub const FULL: Install = Install {
        crds: true,
        namespace: true,
        cluster_info: true,
        nm_account: true,
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

/// A kubeconfig entry naming `server` as context `ctx-<id>`, with the CA and the bearer token
/// when given (over plain HTTP memkube takes a request without credentials as the admin).
pub fn kubeconfig_entry(
    id: &str,
    server: &str,
    ca_pem: Option<&str>,
    token: Option<&str>,
) -> serde_json::Value {
    let mut cluster = json!({ "server": server });
    if let Some(ca) = ca_pem {
        cluster["certificate-authority-data"] = json!(base64(ca.as_bytes()));
    }
    let user = token.map_or_else(|| json!({}), |t| json!({ "token": t }));
    json!({
        "cluster": {"name": format!("c-{id}"), "cluster": cluster},
        "user": {"name": format!("u-{id}"), "user": user},
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

/// Creates `value` (a JSON manifest) through `api`.
async fn create<K>(api: Api<K>, value: serde_json::Value)
where
    K: kube::Resource + Clone + DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let obj: K = serde_json::from_value(value).unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap();
}

/// The chart, rendered by `helm template` for cluster `id` into namespace `ns`, as JSON objects.
/// Needs `helm` (installed by `scripts/setup test`); fails, never skips, without it.
pub fn chart(id: &str, ns: &str) -> Vec<serde_json::Value> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new("helm")
        .args(["template", "isthmus"])
        .arg(root.join("deploy/helm/isthmus"))
        .args(["-n", ns, "--set", &format!("clusterID={id}")])
        .args([
            "--set",
            "podCIDR=10.0.0.0/16",
            "--set",
            "serviceCIDR=10.1.0.0/16",
        ])
        .args(["--set", "gateway.endpoint=192.0.2.1:51820"])
        .output()
        .expect("helm runs (install it with `sudo scripts/setup test`)");
    assert!(
        out.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .filter_map(|doc| serde_yaml::Value::deserialize(doc).ok())
        .filter(|v| !v.is_null())
        .map(|v| serde_json::to_value(v).unwrap())
        .collect()
}

/// Creates `value` through `api` unless an object of that name exists.
async fn create_once<K>(api: Api<K>, value: serde_json::Value)
where
    K: kube::Resource + Clone + DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let obj: K = serde_json::from_value(value).unwrap();
    match api.create(&PostParams::default(), &obj).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => panic!("{e}"),
    }
}

impl Site {
    /// A site with `install` of the chart, served over HTTPS on 127.0.0.1.
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
        let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
        let http = kube
            .serve_https(any_port, TlsOptions::default())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
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
        write_kubeconfig(&site.kubeconfig, &[site.entry(id, None)]);
        if install.namespace {
            site.install_in(NS, install).await;
        }
        site
    }

    /// A kubeconfig entry reaching this site as its admin, as context `ctx-<name>`, at `url`
    /// (default: its own URL).
    pub fn entry(&self, name: &str, url: Option<&str>) -> serde_json::Value {
        let url = url.map_or_else(|| self.http.url(), str::to_owned);
        let token = self.kube.admin_token();
        kubeconfig_entry(name, &url, self.http.ca_pem(), Some(&token))
    }

    /// Creates what the chart renders for this cluster into namespace `ns` (which must exist):
    /// the daemons' identities (the network-manager's as `install` says), the cluster-info
    /// ConfigMap as `install` says, and the gateway's key Secret and public-key ConfigMap (as the
    /// gateway would at its first start).
    pub async fn install_in(&self, ns: &str, install: Install) {
        for doc in chart(&self.id, ns) {
            let kind = doc["kind"].as_str().unwrap_or_default().to_owned();
            let name = doc["metadata"]["name"].as_str().unwrap_or_default();
            let nm = name.ends_with("-network-manager");
            let wanted = match kind.as_str() {
                "ConfigMap" => install.cluster_info,
                "ServiceAccount" if nm => install.nm_account,
                "ServiceAccount" | "Role" | "RoleBinding" | "ClusterRole"
                | "ClusterRoleBinding" => true,
                _ => false,
            };
            if wanted {
                self.create_object(&kind, doc).await;
            }
        }
        if install.gateway_key {
            create(
                Api::<Secret>::namespaced(self.client.clone(), ns),
                json!({
                    "metadata": {"name": KEY_SECRET, "namespace": ns},
                    "stringData": {"privateKey": self.key.expose_base64(),
                        "publicKey": self.key.public_key().to_string()},
                }),
            )
            .await;
            create(
                Api::<ConfigMap>::namespaced(self.client.clone(), ns),
                json!({
                    "metadata": {"name": PUBLIC_KEY_CONFIG_MAP, "namespace": ns},
                    "data": {"publicKey": self.key.public_key().to_string()},
                }),
            )
            .await;
        }
    }

    /// Creates one rendered object; one that exists already (cluster-scoped objects and
    /// `default`'s Role for Events, when a second namespace gets an installation) is kept.
    async fn create_object(&self, kind: &str, doc: serde_json::Value) {
        let c = self.client.clone();
        let ns = doc["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_owned();
        match kind {
            "ConfigMap" => create_once(Api::<ConfigMap>::namespaced(c, &ns), doc).await,
            "ServiceAccount" => create_once(Api::<ServiceAccount>::namespaced(c, &ns), doc).await,
            "Role" => create_once(Api::<Role>::namespaced(c, &ns), doc).await,
            "RoleBinding" => create_once(Api::<RoleBinding>::namespaced(c, &ns), doc).await,
            "ClusterRole" => create_once(Api::<ClusterRole>::all(c), doc).await,
            "ClusterRoleBinding" => create_once(Api::<ClusterRoleBinding>::all(c), doc).await,
            other => panic!("not installed here: {other}"),
        }
    }

    /// A client acting as ServiceAccount `name` of the chart (a token from TokenRequest).
    pub async fn client_as(&self, name: &str) -> Client {
        let minted = TokenRequests
            .mint(&self.client, NS, name, Duration::from_secs(3600))
            .await
            .unwrap();
        self.kube.client_with_token(minted.token.expose())
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
        let client = self.client_as("isthmus-network-manager").await;
        let peers = Arc::new(KubeconfigPeers::new(client.clone()));
        let task = tokio::spawn(isthmus_network_manager::run(
            config,
            client,
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
    pub async fn start_gateway(&mut self, peers: &[&PrivateKey]) {
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
        config.leader.renew_deadline = Duration::from_millis(1300);
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
            self.client_as("isthmus-gateway").await,
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
        out.extend(names("NetworkConfig", Api::<NetworkConfig>::all(c())).await);
        let secrets = names("Secret", Api::<Secret>::all(c())).await;
        out.extend(
            secrets
                .into_iter()
                .filter(|n| n.starts_with("Secret/isthmus-peer-")),
        );
        let namespaces = names("Namespace", Api::<Namespace>::all(c())).await;
        out.extend(
            namespaces
                .into_iter()
                .filter(|n| n.starts_with(&format!("Namespace/{NS}-peer-"))),
        );
        out
    }

    /// The token in the kubeconfig `peer` stored for `reached`.
    pub async fn stored_token(&self, reached: &Site) -> Option<String> {
        let text = self.stored_kubeconfig(reached).await?;
        let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        doc["users"][0]["user"]["token"].as_str().map(str::to_owned)
    }

    /// The kubeconfig `peer` stored for `reached`, as text.
    pub async fn stored_kubeconfig(&self, reached: &Site) -> Option<String> {
        let secret = Api::<Secret>::namespaced(self.client.clone(), &peer_ns(&reached.id))
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
    a.start_gateway(&[&kb]).await;
    b.start_gateway(&[&ka]).await;
    (a, b)
}

/// The TokenRequest API, counting the tokens it was asked for.
#[derive(Debug, Default)]
pub struct CountingTokens {
    pub minted: AtomicUsize,
}

impl CountingTokens {
    pub fn count(&self) -> usize {
        self.minted.load(Ordering::SeqCst)
    }
}

impl TokenSource for CountingTokens {
    fn mint<'a>(
        &'a self,
        client: &'a Client,
        namespace: &'a str,
        account: &'a str,
        lifetime: Duration,
    ) -> BoxFuture<'a, Result<Minted, String>> {
        self.minted.fetch_add(1, Ordering::SeqCst);
        TokenRequests.mint(client, namespace, account, lifetime)
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
