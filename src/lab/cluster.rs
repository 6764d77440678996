//! One lab cluster at run time, set up as an operator sets up a real one: an API server (memkube,
//! or a real one), reachable by the cluster's nodes at an address of its LAN and by the other
//! clusters at an address of the underlay (the lab forwards both to the server); the Helm chart
//! installed into it with the lab's values; and the chart's pods run by the lab's kubelet as OS
//! processes in the nodes' network namespaces, each with a token of its own ServiceAccount. The
//! daemons' gRPC and telemetry ports are forwarded to this host's loopback; the lab's IPAM
//! clients call the gRPC port with a token of the chart's IPAM client ServiceAccount.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use isthmus_api::ClusterId;
use isthmus_kubetarget::ApiServer;

use crate::grpc::client::BearerToken;
use crate::lab::chart::{self, LabValues};
use crate::lab::component::Failures;
use crate::lab::forward::{Forward, Side};
use crate::lab::ipam_token::IpamToken;
use crate::lab::kubelet::pods::{LabNode, PodProcess};
use crate::lab::kubelet::{Kubelet, KubeletConfig};

/// Namespace of every isthmus object in a lab cluster (the chart's release namespace).
pub const NAMESPACE: &str = chart::RELEASE;
/// WireGuard port of every lab gateway (each has its own underlay address).
pub const WIREGUARD_PORT: u16 = 51820;
/// The port the API is forwarded to on the LAN and on the underlay.
pub const API_PORT: u16 = 6443;

/// What the runner knows of one cluster's namespaces and addresses.
#[derive(Debug, Clone)]
pub struct Site {
    pub index: usize,
    pub id: ClusterId,
    pub pod_cidr: isthmus_api::Cidr,
    pub service_cidr: isthmus_api::Cidr,
    /// Networks the IPAM must never hand out (node network, underlay).
    pub reserved: Vec<isthmus_api::Cidr>,
    pub underlay: Ipv4Addr,
    /// The endpoint the cluster advertises (`gateway.endpoint`): the gateway node's address, or
    /// the NodePort or load balancer in front of it (`--exposure`).
    pub gateway_endpoint: std::net::SocketAddrV4,
    pub wg_interface: String,
    pub mtu: u32,
    /// The chart's `gateway.replicas` (placed on the nodes in order, as the lab's kubelet does).
    pub gateway_replicas: usize,
    /// Address pools of the IPAM (empty: the RFC 1918 ranges).
    pub pools: Vec<isthmus_api::Cidr>,
    /// Nodes; the first is the gateway node.
    pub nodes: Vec<LabNode>,
    /// The LAN's namespace and the API's address there.
    pub lan_netns: String,
    pub api_lan: Ipv4Addr,
    /// The underlay's namespace and the API's address there.
    pub wan_netns: String,
    pub api_wan: Ipv4Addr,
}

impl Site {
    /// The URL other clusters reach this cluster's API at.
    pub fn api_url_on_underlay(&self, api: &ApiServer) -> String {
        format!("{}://{}:{API_PORT}", scheme(api), self.api_wan)
    }

    fn values(&self) -> LabValues {
        LabValues {
            cluster_id: self.id.to_string(),
            pod_cidr: self.pod_cidr.to_string(),
            service_cidr: self.service_cidr.to_string(),
            reserved: self.reserved.iter().map(ToString::to_string).collect(),
            pools: self.pools.iter().map(ToString::to_string).collect(),
            gateway_endpoint: self.gateway_endpoint.to_string(),
            wg_interface: self.wg_interface.clone(),
            wireguard_port: WIREGUARD_PORT,
            mtu: self.mtu,
            gateway_replicas: self.gateway_replicas,
        }
    }
}

fn scheme(api: &ApiServer) -> &'static str {
    if api.url.starts_with("https://") {
        "https"
    } else {
        "http"
    }
}

/// Which component to restart or stop (the chart's `app.kubernetes.io/component`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    NetworkManager,
    Gateway,
    RouteAgents,
}

impl Kind {
    fn component(self) -> &'static str {
        match self {
            Kind::NetworkManager => "network-manager",
            Kind::Gateway => "gateway",
            Kind::RouteAgents => "route-agent",
        }
    }
}

/// What every cluster of one lab shares.
#[derive(Debug, Clone)]
pub struct LabContext {
    /// The `isthmus` binary the pods run.
    pub binary: PathBuf,
    /// The lab's working directory (kubeconfigs, tokens, logs, the chart).
    pub dir: PathBuf,
    /// The chart, written out.
    pub chart: PathBuf,
}

/// A running cluster.
#[derive(Debug)]
pub struct ClusterRuntime {
    pub site: Site,
    pub api: Arc<ApiServer>,
    /// A kubeconfig with every right (helm, kubectl, `isthmus status`).
    pub admin_kubeconfig: PathBuf,
    /// The network-manager's gRPC IPAM, forwarded to this host.
    pub grpc: SocketAddr,
    /// Telemetry address per pod (`network-manager`, `gateway`, `route-agent/<node>`), forwarded.
    pub metrics: BTreeMap<String, SocketAddr>,
    /// What the lab's IPAM clients send to `grpc`.
    ipam_token: IpamToken,
    kubelet: Option<Kubelet>,
    _forwards: Vec<Forward>,
    /// The API's forward on the underlay (none while other clusters are cut off from it).
    wan_forward: Option<Forward>,
    api_target: SocketAddr,
}

impl ClusterRuntime {
    /// Forwards the API into the LAN and the underlay, installs the chart, starts the pods.
    pub async fn start(site: Site, api: ApiServer, ctx: &LabContext) -> anyhow::Result<Self> {
        let api = Arc::new(api);
        let dir = ctx.dir.join(site.id.as_str());
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let target = api_address(&api).await?;
        let mut forwards = vec![
            Forward::start(
                Side::Netns(site.lan_netns.clone()),
                SocketAddr::from((site.api_lan, API_PORT)),
                Side::Host,
                target,
            )
            .await
            .context("forwarding the API into the LAN")?,
        ];
        let wan_forward = Some(wan_forward(&site, target).await?);
        if api.is_real() {
            wipe_isthmus_objects(&api.admin()).await?;
        }
        let admin_kubeconfig = dir.join("admin.kubeconfig");
        write_secret_file(&admin_kubeconfig, api.admin_kubeconfig()?.as_bytes())?;
        chart::install(
            &ctx.chart,
            &admin_kubeconfig,
            &site.values(),
            &dir,
            api.is_real(),
        )
        .await?;
        let kubelet = Kubelet::start(
            site.id.as_str(),
            api.clone(),
            &site.nodes,
            KubeletConfig {
                binary: ctx.binary.clone(),
                dir: dir.join("pods"),
                api_url_on_nodes: format!("{}://{}:{API_PORT}", scheme(&api), site.api_lan),
                namespace: NAMESPACE.to_owned(),
            },
        )
        .await?;
        let (grpc, metrics) = forward_ports(&kubelet, &mut forwards).await?;
        let ipam_token = IpamToken::mint(api.clone(), NAMESPACE).await?;
        Ok(ClusterRuntime {
            site,
            api,
            admin_kubeconfig,
            grpc,
            metrics,
            ipam_token,
            kubelet: Some(kubelet),
            _forwards: forwards,
            wan_forward,
            api_target: target,
        })
    }

    /// Cuts the other clusters off from this cluster's API (`false`), or lets them in again.
    pub async fn set_api_reachable_from_peers(&mut self, reachable: bool) -> anyhow::Result<()> {
        self.wan_forward = None;
        if reachable {
            self.wan_forward = Some(wan_forward(&self.site, self.api_target).await?);
        }
        Ok(())
    }

    /// The bearer token the lab's IPAM clients send to this cluster's gRPC IPAM (kept fresh).
    pub fn ipam_token(&self) -> BearerToken {
        self.ipam_token.bearer()
    }

    /// A client of the cluster's API with every right.
    pub fn client(&self) -> kube::Client {
        self.api.admin()
    }

    /// The API's URL as this host reaches it.
    pub fn api_url(&self) -> String {
        self.api.url.clone()
    }

    fn kubelet(&mut self) -> &mut Kubelet {
        self.kubelet.as_mut().expect("running until shutdown")
    }

    /// Stops a component cleanly and starts it again.
    pub async fn restart(&mut self, kind: Kind) {
        self.kubelet().stop(kind.component()).await;
        self.kubelet().resume(kind.component());
    }

    /// Stops a component (it stays stopped until [`Self::resume`]).
    pub async fn stop(&mut self, kind: Kind) {
        self.kubelet().stop(kind.component()).await;
    }

    /// Starts a stopped component.
    pub fn resume(&mut self, kind: Kind) {
        self.kubelet().resume(kind.component());
    }

    /// Kills one pod (SIGKILL) and leaves it stopped, as on a lost node.
    pub fn kill_pod(&mut self, pod_name: &str) -> anyhow::Result<()> {
        self.kubelet().kill_pod(pod_name)
    }

    /// Stops one pod cleanly (SIGTERM) and leaves it stopped, as in a rolling upgrade.
    pub async fn stop_pod(&mut self, pod_name: &str) -> anyhow::Result<()> {
        self.kubelet().stop_pod(pod_name).await
    }

    /// Starts one stopped pod again.
    pub fn start_pod(&mut self, pod_name: &str) -> anyhow::Result<()> {
        self.kubelet().start_pod_named(pod_name)
    }

    /// Kills the network-manager (SIGKILL) and starts it again.
    pub fn crash_network_manager(&mut self) {
        self.kubelet().crash(Kind::NetworkManager.component());
    }

    /// Every pod that has failed at least once, with its failures.
    pub fn failing(&self) -> Vec<(String, Failures)> {
        self.kubelet
            .as_ref()
            .map(Kubelet::failing)
            .unwrap_or_default()
    }

    /// Every running pod: label, component, pid.
    pub fn pids(&self) -> Vec<(String, String, u32)> {
        self.kubelet.as_ref().map(Kubelet::pids).unwrap_or_default()
    }

    /// Every pod's log file.
    pub fn logs(&self) -> Vec<(String, PathBuf)> {
        self.kubelet.as_ref().map(Kubelet::logs).unwrap_or_default()
    }

    /// Stops every pod (the API server stops when the last reference to it is dropped).
    pub async fn shutdown(mut self) {
        if let Some(kubelet) = self.kubelet.take() {
            kubelet.shutdown().await;
        }
    }
}

/// The API's forward onto the underlay, where the other clusters reach it.
async fn wan_forward(site: &Site, target: SocketAddr) -> anyhow::Result<Forward> {
    Forward::start(
        Side::Netns(site.wan_netns.clone()),
        SocketAddr::from((site.api_wan, API_PORT)),
        Side::Host,
        target,
    )
    .await
    .context("forwarding the API onto the underlay")
}

/// The API server's address on this host.
async fn api_address(api: &ApiServer) -> anyhow::Result<SocketAddr> {
    let uri: http::Uri = api
        .url
        .parse()
        .with_context(|| format!("API URL {}", api.url))?;
    let host = uri.host().context("the API URL has no host")?;
    let port = uri
        .port_u16()
        .unwrap_or(if scheme(api) == "https" { 443 } else { 80 });
    tokio::net::lookup_host((host.trim_start_matches('[').trim_end_matches(']'), port))
        .await
        .with_context(|| format!("resolving {host}"))?
        .find(SocketAddr::is_ipv4)
        .with_context(|| format!("{host} has no IPv4 address"))
}

/// The port of `--flag=ADDR:PORT` among a pod's arguments.
fn port_arg(pod: &PodProcess, flag: &str) -> Option<u16> {
    let prefix = format!("{flag}=");
    pod.args
        .iter()
        .find_map(|a| a.strip_prefix(&prefix))
        .and_then(|addr| addr.rsplit_once(':'))
        .and_then(|(_, port)| port.parse().ok())
}

/// Forwards the network-manager's gRPC port and every pod's telemetry port to this host.
async fn forward_ports(
    kubelet: &Kubelet,
    forwards: &mut Vec<Forward>,
) -> anyhow::Result<(SocketAddr, BTreeMap<String, SocketAddr>)> {
    let mut grpc = None;
    let mut metrics = BTreeMap::new();
    for pod in kubelet.pods() {
        let into = |port: u16| {
            (
                Side::Netns(pod.node.netns.clone()),
                SocketAddr::from(([127, 0, 0, 1], port)),
            )
        };
        if pod.component == "network-manager"
            && let Some(port) = port_arg(pod, "--listen")
        {
            let (side, target) = into(port);
            let f = Forward::start(Side::Host, "127.0.0.1:0".parse()?, side, target).await?;
            grpc = Some(f.listen);
            forwards.push(f);
        }
        if let Some(port) = port_arg(pod, "--metrics-listen") {
            let (side, target) = into(port);
            let f = Forward::start(Side::Host, "127.0.0.1:0".parse()?, side, target).await?;
            let name = match pod.component.as_str() {
                "route-agent" => format!("route-agent/{}", pod.node.name),
                other => other.to_owned(),
            };
            metrics.insert(name, f.listen);
            forwards.push(f);
        }
    }
    let grpc = grpc.context("the chart renders no network-manager with --listen")?;
    Ok((grpc, metrics))
}

/// Writes a file readable by root only.
fn write_secret_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(bytes)?;
    Ok(())
}

/// Removes what an earlier lab left in a real API server (a lab that crashed, or the last one:
/// a real server outlives the lab): every isthmus object, finalizers dropped first, so that the
/// new lab starts from nothing as a new memkube does. Kinds that are not installed are skipped.
async fn wipe_isthmus_objects(client: &kube::Client) -> anyhow::Result<()> {
    use isthmus_api::{ForeignCluster, IpamStorage, NatMapping, NetworkConfig, TunnelEndpoint};
    wipe::<ForeignCluster>(kube::Api::all(client.clone())).await?;
    wipe::<NetworkConfig>(kube::Api::namespaced(client.clone(), NAMESPACE)).await?;
    wipe::<TunnelEndpoint>(kube::Api::namespaced(client.clone(), NAMESPACE)).await?;
    wipe::<NatMapping>(kube::Api::namespaced(client.clone(), NAMESPACE)).await?;
    wipe::<IpamStorage>(kube::Api::namespaced(client.clone(), NAMESPACE)).await
}

async fn wipe<K>(api: kube::Api<K>) -> anyhow::Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
    let items = match api.list(&ListParams::default()).await {
        Ok(list) => list.items,
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
        Err(e) => return Err(e).context("listing what an earlier lab left"),
    };
    let no_finalizers = serde_json::json!({"metadata": {"finalizers": null}});
    for item in items {
        let Some(name) = item.meta().name.clone() else {
            continue;
        };
        let _ = api
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(&no_finalizers),
            )
            .await;
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e).with_context(|| format!("deleting {name}")),
        }
    }
    Ok(())
}
