//! One lab cluster at run time: its in-memory API (also served over HTTP for `kubectl`), its
//! gRPC IPAM address, the gateway's key, and its supervised components: the network-manager,
//! the gateway (in the gateway node's namespace) and one route agent per node.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::FutureExt;
use isthmus_api::{ClusterId, ForeignCluster, ForeignClusterSpec};
use isthmus_dataplane::{Netns, PrivateKey};
use isthmus_memkube::{HttpServer, MemKube};
use isthmus_network_manager::{LabPeers, LocalGateway, NetworkManagerConfig, PeerResolver};
use kube::Api;
use kube::api::{DeleteParams, PostParams};

use crate::lab::component::{Component, Starter};

/// Namespace of every isthmus object in a lab cluster.
pub const NAMESPACE: &str = "isthmus";
/// WireGuard port of every lab gateway (each has its own underlay address).
pub const WIREGUARD_PORT: u16 = 51820;

/// What the runner needs to know of one cluster's namespaces and addresses.
#[derive(Debug, Clone)]
pub struct Site {
    pub index: usize,
    pub id: ClusterId,
    pub pod_cidr: isthmus_api::Cidr,
    /// Networks the IPAM must never hand out (node network, underlay).
    pub reserved: Vec<isthmus_api::Cidr>,
    pub underlay: Ipv4Addr,
    pub wg_interface: String,
    pub mtu: u32,
    /// Address pools of the IPAM (empty: the RFC 1918 ranges).
    pub pools: Vec<isthmus_api::Cidr>,
    /// Nodes: name, namespace, node address; the first is the gateway node.
    pub nodes: Vec<(String, Netns, Ipv4Addr)>,
}

/// Which component to restart or stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    NetworkManager,
    Gateway,
    RouteAgents,
}

/// A running cluster.
#[derive(Debug)]
pub struct ClusterRuntime {
    pub site: Site,
    pub kube: MemKube,
    http: Option<HttpServer>,
    pub grpc: SocketAddr,
    /// Telemetry address per component (`network-manager`, `gateway`, `route-agent/<node>`).
    pub metrics: BTreeMap<String, SocketAddr>,
    key: PrivateKey,
    peers: Arc<LabPeers>,
    network_manager: Option<Component>,
    gateway: Option<Component>,
    agents: Vec<Component>,
}

impl ClusterRuntime {
    /// Starts the API, binds the gRPC port and starts every component.
    pub async fn start(site: Site, peers: Arc<LabPeers>) -> anyhow::Result<Self> {
        let kube = MemKube::new();
        for crd in isthmus_api::all_crds() {
            kube.register_crd(&crd)?;
        }
        kube.create_namespace(NAMESPACE)?;
        let http = kube
            .serve_http(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await?;
        let grpc = crate::grpc::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await?
            .local_addr()?;
        peers.insert(site.id.as_str(), kube.client());
        let metrics = metrics_addresses(&site).await?;
        let mut cluster = ClusterRuntime {
            site,
            kube,
            http: Some(http),
            grpc,
            metrics,
            key: PrivateKey::generate(),
            peers,
            network_manager: None,
            gateway: None,
            agents: Vec::new(),
        };
        for kind in [Kind::NetworkManager, Kind::Gateway, Kind::RouteAgents] {
            cluster.start_kind(kind);
        }
        Ok(cluster)
    }

    /// `http://127.0.0.1:PORT` of the cluster's API, for kubectl.
    pub fn api_url(&self) -> String {
        self.http.as_ref().map(|h| h.url()).unwrap_or_default()
    }

    /// A client of the cluster's API.
    pub fn client(&self) -> kube::Client {
        self.kube.client()
    }

    fn name(&self, what: &str) -> String {
        format!("{}/{what}", self.site.id)
    }

    fn start_kind(&mut self, kind: Kind) {
        match kind {
            Kind::NetworkManager => {
                let starter = self.network_manager_starter();
                self.network_manager =
                    Some(Component::spawn(self.name("network-manager"), starter));
            }
            Kind::Gateway => {
                let starter = self.gateway_starter();
                self.gateway = Some(Component::spawn(self.name("gateway"), starter));
            }
            Kind::RouteAgents => {
                self.agents = (0..self.site.nodes.len())
                    .map(|i| {
                        let name = self.name(&format!("route-agent/{}", self.site.nodes[i].0));
                        Component::spawn(name, self.route_agent_starter(i))
                    })
                    .collect();
            }
        }
    }

    async fn stop_kind(&mut self, kind: Kind) {
        match kind {
            Kind::NetworkManager => {
                if let Some(c) = self.network_manager.take() {
                    c.stop().await;
                }
            }
            Kind::Gateway => {
                if let Some(c) = self.gateway.take() {
                    c.stop().await;
                }
            }
            Kind::RouteAgents => {
                for c in std::mem::take(&mut self.agents) {
                    c.stop().await;
                }
            }
        }
    }

    /// Stops a component cleanly and starts it again.
    pub async fn restart(&mut self, kind: Kind) {
        self.stop_kind(kind).await;
        self.start_kind(kind);
    }

    /// Stops a component (it stays stopped until [`Self::start`]ed).
    pub async fn stop(&mut self, kind: Kind) {
        self.stop_kind(kind).await;
    }

    /// Starts a stopped component.
    pub fn resume(&mut self, kind: Kind) {
        self.start_kind(kind);
    }

    /// Kills the network-manager without a clean shutdown, then starts it again.
    pub fn crash_network_manager(&mut self) {
        if let Some(c) = self.network_manager.take() {
            c.kill();
        }
        self.start_kind(Kind::NetworkManager);
    }

    /// Every component that has failed at least once, with its failures.
    pub fn failing(&self) -> Vec<(String, crate::lab::component::Failures)> {
        self.network_manager
            .iter()
            .chain(self.gateway.iter())
            .chain(self.agents.iter())
            .map(|c| (c.name().to_owned(), c.failures()))
            .filter(|(_, f)| f.count > 0)
            .collect()
    }

    /// The telemetry address of `component`.
    fn metrics_addr(&self, component: &str) -> Option<SocketAddr> {
        self.metrics.get(component).copied()
    }

    fn network_manager_starter(&self) -> Starter {
        let site = self.site.clone();
        let metrics = self.metrics_addr("network-manager");
        let client = self.kube.client();
        let peers: Arc<dyn PeerResolver> = self.peers.clone();
        let grpc = self.grpc;
        let public_key = self.key.public_key().to_string();
        Arc::new(move |shutdown| {
            let config = network_manager_config(&site, &public_key, metrics);
            let (client, peers) = (client.clone(), peers.clone());
            async move {
                let listener = bind_again(grpc).await?;
                crate::daemons::network_manager::run_kube(
                    config?, client, peers, listener, shutdown,
                )
                .await
            }
            .boxed()
        })
    }

    fn gateway_starter(&self) -> Starter {
        let site = self.site.clone();
        let metrics = self.metrics_addr("gateway");
        let client = self.kube.client();
        let key = self.key.clone();
        Arc::new(move |shutdown| {
            let (name, netns, node_ip) = site.nodes[0].clone();
            let mut config = isthmus_gateway::GatewayConfig::new(
                site.id.clone(),
                NAMESPACE,
                &site.wg_interface,
                &name,
                node_ip,
                &format!("{}-gateway-0", site.id),
            );
            config.listen_port = WIREGUARD_PORT;
            config.mtu = site.mtu;
            config.keepalive = Some(10);
            config.probe_interval = Duration::from_secs(1);
            let (client, key) = (client.clone(), key.clone());
            async move {
                crate::daemons::gateway::run(config, client, netns, key, metrics, shutdown).await
            }
            .boxed()
        })
    }

    fn route_agent_starter(&self, node: usize) -> Starter {
        let (name, netns, _) = self.site.nodes[node].clone();
        let metrics = self.metrics_addr(&format!("route-agent/{name}"));
        let client = self.kube.client();
        Arc::new(move |shutdown| {
            let mut config = isthmus_route_agent::RouteAgentConfig::new(&name, NAMESPACE);
            config.resync = Duration::from_secs(10);
            let (client, netns) = (client.clone(), netns.clone());
            async move {
                crate::daemons::route_agent::run(config, client, netns, metrics, shutdown).await
            }
            .boxed()
        })
    }

    /// Creates the ForeignCluster for `peer` (resolved through the lab).
    pub async fn peer_with(&self, peer: &ClusterId) -> anyhow::Result<()> {
        let api: Api<ForeignCluster> = Api::all(self.client());
        let fc = ForeignCluster::new(
            peer.as_str(),
            ForeignClusterSpec {
                cluster_id: peer.clone(),
                kubeconfig_secret_ref: None,
                lab_cluster: Some(peer.to_string()),
            },
        );
        api.create(&PostParams::default(), &fc)
            .await
            .with_context(|| format!("creating ForeignCluster {peer} in {}", self.site.id))?;
        Ok(())
    }

    /// Deletes the ForeignCluster for `peer` (unpeering; the finalizer finishes the job).
    pub async fn unpeer(&self, peer: &ClusterId) -> anyhow::Result<()> {
        let api: Api<ForeignCluster> = Api::all(self.client());
        api.delete(peer.as_str(), &DeleteParams::default())
            .await
            .with_context(|| format!("deleting ForeignCluster {peer} in {}", self.site.id))?;
        Ok(())
    }

    /// Stops every component and the API server.
    pub async fn shutdown(mut self) {
        for kind in [Kind::RouteAgents, Kind::Gateway, Kind::NetworkManager] {
            self.stop_kind(kind).await;
        }
        self.peers.remove(self.site.id.as_str());
        if let Some(http) = self.http.take() {
            http.shutdown().await;
        }
    }
}

/// The network-manager's configuration in the lab: fast rechecks, the topology's reserved
/// networks, and the gateway's underlay address as its endpoint.
fn network_manager_config(
    site: &Site,
    public_key: &str,
    metrics_listen: Option<SocketAddr>,
) -> anyhow::Result<crate::daemons::network_manager::KubeModeConfig> {
    let gateway = LocalGateway {
        endpoint: format!("{}:{WIREGUARD_PORT}", site.underlay),
        public_key: public_key.to_owned(),
    };
    let mut manager = NetworkManagerConfig::new(site.id.clone(), NAMESPACE, gateway);
    manager.pending_recheck = Duration::from_secs(1);
    let ipam = crate::standalone::ipam_config(
        site.pod_cidr,
        None,
        None,
        site.pools.clone(),
        site.reserved.clone(),
    );
    Ok(crate::daemons::network_manager::KubeModeConfig {
        manager,
        ipam,
        ipam_shards: 16,
        metrics_listen,
        identity: format!("{}-network-manager-0", site.id),
    })
}

/// A free loopback port for each component's telemetry, kept across its restarts.
async fn metrics_addresses(site: &Site) -> anyhow::Result<BTreeMap<String, SocketAddr>> {
    let mut components = vec!["network-manager".to_owned(), "gateway".to_owned()];
    components.extend(
        site.nodes
            .iter()
            .map(|(name, ..)| format!("route-agent/{name}")),
    );
    let mut out = BTreeMap::new();
    // All held until every port is chosen, so no two components get the same one.
    let mut held = Vec::new();
    for component in components {
        let probe = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        out.insert(component, probe.local_addr()?);
        held.push(probe);
    }
    Ok(out)
}

/// Binds the cluster's gRPC address again after a restart (the old socket may linger briefly).
async fn bind_again(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    let mut last = None;
    for _ in 0..50 {
        match crate::grpc::bind(addr).await {
            Ok(listener) => return Ok(listener),
            Err(err) => last = Some(err),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(last.map_or_else(|| anyhow::anyhow!("cannot bind {addr}"), Into::into))
}
