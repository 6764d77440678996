//! A whole lab, driven from this process: the topology (namespaces), one API server per cluster
//! (memkube by default, or real ones), one [`ClusterRuntime`] per cluster (the chart installed,
//! its pods running as processes), peering (a kubeconfig Secret and a ForeignCluster in both
//! clusters of each pair), waiting for the tunnels, the reflector and the connectivity matrix.
//! `isthmus lab run` and the end-to-end tests drive this.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ipnet::Ipv4Net;
use isthmus_api::{ConnectionState, TunnelEndpoint};
use isthmus_kubetarget::Source;
use isthmus_lab::exposure::Exposure;
use isthmus_lab::{PodRecord, Topology, TopologyGuard, TopologySpec};
use kube::Api;

use crate::lab::cluster::{ClusterRuntime, LabContext, NAMESPACE, Site, WIREGUARD_PORT};
use crate::lab::gateway_lb;
use crate::lab::kubelet::pods::LabNode;
use crate::lab::matrix::{Matrix, Probe};
use crate::lab::plan::{self, Path, Shape};
use crate::lab::reflector::{Reflection, Reflector};
use crate::lab::state::Timings;

/// What to build.
#[derive(Debug, Clone)]
pub struct LabOptions {
    pub clusters: usize,
    pub shape: Shape,
    pub pod_cidr: Ipv4Net,
    pub workers: usize,
    pub pods_per_node: usize,
    /// Per cluster index, IPAM pools replacing the default RFC 1918 ranges (tests exhaust them).
    pub pools: Vec<(usize, Vec<isthmus_api::Cidr>)>,
    /// Where `isthmus-lab` writes the topology record (none: not written).
    pub topology_file: Option<std::path::PathBuf>,
    /// Where the API servers come from (memkube unless told otherwise).
    pub source: Source,
    /// The `isthmus` binary the clusters' pods run (none: this process's own executable).
    pub binary: Option<std::path::PathBuf>,
    /// The lab's working directory: kubeconfigs, tokens, pod logs (none: a temporary one).
    pub work_dir: Option<std::path::PathBuf>,
    /// A kindnet-like masquerade (`ip cni-nat`) on every node, installed before the daemons.
    pub cni_masquerade: bool,
    /// Workers on their own subnet, routed to the gateway node's by the LAN namespace
    /// (`--worker-subnet`): the route agents there must use the VXLAN overlay.
    pub worker_subnet: bool,
    /// Gateway replicas per cluster, 1 or 2 (`--gateway-replicas`): with 2, `node1` is on the
    /// underlay too and runs the standby (the chart's `gateway.replicas`).
    pub gateway_replicas: usize,
    /// How the gateways are exposed on the underlay (`--exposure`): their node's address, a
    /// NodePort or a load balancer in front of them (`isthmus_lab::exposure`).
    pub exposure: Exposure,
}

impl Default for LabOptions {
    fn default() -> Self {
        LabOptions {
            clusters: 3,
            shape: Shape::Hub,
            pod_cidr: "10.0.0.0/16".parse().expect("literal"),
            workers: 1,
            pods_per_node: 1,
            pools: Vec::new(),
            topology_file: None,
            source: Source::Memkube,
            binary: None,
            work_dir: None,
            cni_masquerade: false,
            worker_subnet: false,
            gateway_replicas: 1,
            exposure: Exposure::Node,
        }
    }
}

/// The Service CIDR every lab cluster declares (reserved in its IPAM, as on a real cluster).
pub const SERVICE_CIDR: &str = "172.31.0.0/16";

impl LabOptions {
    /// Checks what the topology builder does not.
    pub fn validate(&self) -> anyhow::Result<()> {
        if !(2..=8).contains(&self.clusters) {
            bail!("--clusters must be between 2 and 8, not {}", self.clusters);
        }
        if self.pods_per_node == 0 {
            bail!("--pods-per-node must be at least 1");
        }
        if self.gateway_replicas == 2 && self.exposure != Exposure::LoadBalancer {
            bail!(
                "--gateway-replicas 2 needs --exposure loadbalancer: the lab's node and NodePort \
                 exposures reach only node0's replica, not whichever replica is active"
            );
        }
        if !(1..=2).contains(&self.gateway_replicas) {
            bail!(
                "--gateway-replicas must be 1 or 2, not {}",
                self.gateway_replicas
            );
        }
        if self.gateway_replicas > self.workers + 1 {
            bail!(
                "--gateway-replicas {} needs at least {} worker(s): one gateway replica per node",
                self.gateway_replicas,
                self.gateway_replicas - 1
            );
        }
        Ok(())
    }

    /// The namespaces and addresses to build.
    pub fn topology_spec(&self) -> TopologySpec {
        TopologySpec {
            clusters: self.clusters,
            workers: self.workers,
            pods_per_node: self.pods_per_node,
            pod_cidr: self.pod_cidr,
            state_file: self.topology_file.clone(),
            worker_subnet: self.worker_subnet,
            gateway_nodes: self.gateway_replicas,
            ..TopologySpec::default()
        }
    }

    /// The IPAM pools of cluster `index` (empty: the RFC 1918 ranges).
    fn pools_of(&self, index: usize) -> Vec<isthmus_api::Cidr> {
        self.pools
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, p)| p.clone())
            .unwrap_or_default()
    }

    /// The IPAM configuration cluster `index`'s network-manager gets.
    pub fn ipam_config(
        &self,
        index: usize,
        pod_cidr: isthmus_api::Cidr,
        record: &isthmus_lab::TopologyRecord,
    ) -> isthmus_ipam::IpamConfig {
        crate::standalone::ipam_config(
            pod_cidr,
            Some(SERVICE_CIDR.parse().expect("literal")),
            None,
            self.pools_of(index),
            reserved_networks(&record.clusters[index], record.wan.network),
        )
    }
}

/// What a lab cluster's IPAM must never hand out: its node networks and the underlay.
fn reserved_networks(cluster: &isthmus_lab::ClusterRecord, wan: Ipv4Net) -> Vec<isthmus_api::Cidr> {
    let mut networks = cluster.node_networks();
    networks.push(wan);
    networks
        .iter()
        .map(|n| n.to_string().parse().expect("an Ipv4Net is a valid CIDR"))
        .collect()
}

/// The binary, working directory and chart of a lab (a temporary directory when none is given).
fn lab_context(options: &LabOptions) -> anyhow::Result<(LabContext, Option<tempfile::TempDir>)> {
    let binary = match &options.binary {
        Some(b) => b.clone(),
        None => std::env::current_exe().context("locating the isthmus binary")?,
    };
    let (dir, temp) = match &options.work_dir {
        Some(dir) => (dir.clone(), None),
        None => {
            let temp = tempfile::Builder::new().prefix("isthmus-lab-").tempdir()?;
            (temp.path().to_owned(), Some(temp))
        }
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let chart = crate::lab::chart::write_chart(&dir).context("writing the chart")?;
    Ok((LabContext { binary, dir, chart }, temp))
}

/// A running lab. Dropping it without [`Lab::shutdown`] still removes the namespaces.
#[derive(Debug)]
pub struct Lab {
    pub options: LabOptions,
    pub topology: TopologyGuard,
    pub clusters: Vec<ClusterRuntime>,
    pub peerings: Vec<(usize, usize)>,
    pub reflector: Reflector,
    pub reflections: Vec<Reflection>,
    pub timings: Timings,
    /// The load balancers following the gateway Leases (two replicas per cluster).
    _balancers: Vec<gateway_lb::Balancer>,
    /// The working directory, when the lab made a temporary one (removed with the lab).
    _work_dir: Option<tempfile::TempDir>,
}

/// How long to wait for every tunnel to come up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

fn site_of(
    index: usize,
    lab: &isthmus_lab::TopologyRecord,
    options: &LabOptions,
) -> anyhow::Result<Site> {
    let cluster = &lab.clusters[index];
    let wan = lab.wan.network;
    let mut nodes: Vec<LabNode> = cluster
        .nodes
        .iter()
        .map(|n| LabNode {
            name: n.name.clone(),
            netns: n.namespace.clone(),
            ip: n.ip,
        })
        .collect();
    nodes.sort_by_key(|n| n.name != cluster.gateway().name);
    Ok(Site {
        index,
        id: cluster.id.parse()?,
        pod_cidr: cluster.pod_cidr.to_string().parse()?,
        service_cidr: SERVICE_CIDR.parse()?,
        reserved: reserved_networks(cluster, wan),
        underlay: cluster.underlay,
        gateway_endpoint: options.exposure.advertised(lab, index, WIREGUARD_PORT)?,
        wg_interface: cluster.wg_interface.clone(),
        mtu: 1420,
        gateway_replicas: options.gateway_replicas,
        pools: options.pools_of(index),
        nodes,
        lan_netns: cluster.lan_namespace.clone(),
        api_lan: cluster.api_lan,
        wan_netns: lab.wan.namespace.clone(),
        api_wan: cluster.api_wan,
    })
}

impl Lab {
    /// Builds the namespaces and starts every cluster's API and components (not yet peered).
    pub async fn start(options: LabOptions) -> anyhow::Result<Lab> {
        // Only the cheap checks: tests build labs whose peerings are meant to fail (exhausted
        // pools); `lab up` runs the whole preflight before it starts anything.
        options.validate()?;
        let spec = options.topology_spec();
        let topology = tokio::task::spawn_blocking(move || Topology::build(&spec))
            .await??
            .guard();
        if options.cni_masquerade {
            let record = isthmus_lab::TopologyRecord::clone(&topology);
            tokio::task::spawn_blocking(move || isthmus_lab::cni::install_masquerade(&record))
                .await?
                .context("installing the CNI masquerade on the nodes")?;
        }
        if options.exposure != Exposure::Node {
            let record = isthmus_lab::TopologyRecord::clone(&topology);
            let exposure = options.exposure;
            tokio::task::spawn_blocking(move || {
                isthmus_lab::exposure::install(&record, exposure, WIREGUARD_PORT)
            })
            .await?
            .with_context(|| format!("installing the {exposure} NAT in front of the gateways"))?;
        }
        let mut timings = Timings {
            topology: topology.build_time,
            ..Timings::default()
        };
        let started = Instant::now();
        let (ctx, temp) = lab_context(&options)?;
        // the forwards' addresses go into the certificates of the servers the lab starts
        let servers: Vec<(&str, Vec<std::net::IpAddr>)> = topology
            .clusters
            .iter()
            .map(|c| (c.id.as_str(), vec![c.api_lan.into(), c.api_wan.into()]))
            .collect();
        let apis = isthmus_kubetarget::start_with(&options.source, &servers)
            .await
            .with_context(|| format!("API servers ({})", options.source.describe()))?;
        let mut clusters = Vec::new();
        let mut balancers = Vec::new();
        for ((i, record), api) in topology.clusters.iter().enumerate().zip(apis) {
            let site = site_of(i, &topology, &options)?;
            let cluster = ClusterRuntime::start(site, api, &ctx)
                .await
                .with_context(|| format!("starting cluster {}", record.id))?;
            if options.exposure == Exposure::LoadBalancer {
                let vip = *cluster.site.gateway_endpoint.ip();
                let wan_ns = topology.wan.namespace.as_str();
                let client = cluster.client();
                balancers.push(gateway_lb::follow(wan_ns, record.clone(), vip, client));
            }
            clusters.push(cluster);
        }
        timings.components = started.elapsed();
        let names = clusters.iter().map(|c| c.site.id.to_string()).collect();
        let endpoints: Vec<_> = clusters.iter().map(|c| (c.grpc, c.ipam_token())).collect();
        let reflector = Reflector::new(names, &endpoints)?;
        Ok(Lab {
            peerings: plan::peerings(options.clusters, options.shape),
            options,
            topology,
            clusters,
            reflector,
            reflections: Vec::new(),
            timings,
            _balancers: balancers,
            _work_dir: temp,
        })
    }

    /// Brings a lab all the way up: start, peer, wait for the tunnels, reflect, probe.
    pub async fn up(options: LabOptions) -> anyhow::Result<(Lab, Matrix)> {
        let began = Instant::now();
        let mut lab = Lab::start(options).await?;
        lab.peer_all().await?;
        let reflect_start = Instant::now();
        lab.reflect_all().await?;
        lab.timings.reflected = reflect_start.elapsed();
        let matrix = lab.wait_full_connectivity(Duration::from_secs(30)).await;
        if matrix.all_reachable() {
            lab.timings.full_connectivity = Some(began.elapsed());
        }
        Ok((lab, matrix))
    }

    /// The record of pod `name` in cluster `cluster`.
    pub fn pod(&self, cluster: usize, name: &str) -> Option<&PodRecord> {
        self.topology.clusters[cluster].pod(name)
    }

    /// Every pod of cluster `cluster`.
    pub fn pods(&self, cluster: usize) -> &[PodRecord] {
        &self.topology.clusters[cluster].pods
    }

    /// Peers every planned pair, measures the first packet through the first pair's tunnel, and
    /// waits until every TunnelEndpoint is `connected`.
    pub async fn peer_all(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        let pairs = self.peerings.clone();
        if let Some(&(i, j)) = pairs.first() {
            // the first packet is looked for while `isthmus peer` runs
            let path = Path {
                from: i,
                to: j,
                via: None,
            };
            let (peered, first) = tokio::join!(
                async {
                    self.peer(i, j).await?;
                    anyhow::Ok(started.elapsed())
                },
                self.first_packet(path, started, CONNECT_TIMEOUT)
            );
            self.timings.peer_command = Some(peered?);
            self.timings.first_packet = first.ok();
        }
        for &(i, j) in pairs.iter().skip(1) {
            self.peer(i, j).await?;
        }
        self.wait_connected(&self.peerings.clone(), CONNECT_TIMEOUT)
            .await?;
        self.timings.peered = started.elapsed();
        Ok(())
    }

    /// Peers one pair with `isthmus peer` (a kubeconfig Secret and a ForeignCluster on each
    /// side), waiting until both tunnels are connected.
    pub async fn peer(&self, i: usize, j: usize) -> anyhow::Result<()> {
        self.peer_within(i, j, CONNECT_TIMEOUT).await
    }

    /// [`Self::peer`], giving up the wait after `timeout` (the peering stays).
    pub async fn peer_within(&self, i: usize, j: usize, timeout: Duration) -> anyhow::Result<()> {
        crate::lab::peering::peer(&self.clusters[i], &self.clusters[j], timeout).await
    }

    /// Unpeers one pair with `isthmus unpeer`: both ForeignClusters deleted, their cleanup and
    /// the gateways' kernel cleanup waited for, the kubeconfig Secrets deleted.
    pub async fn unpeer(&self, i: usize, j: usize) -> anyhow::Result<()> {
        crate::lab::peering::unpeer(&self.clusters[i], &self.clusters[j], CONNECT_TIMEOUT).await
    }

    /// Polls `MapEndpointIP` then ping from the first pod of `path.from` to the first pod of
    /// `path.to` until a reply comes back; the time since `since`.
    pub async fn first_packet(
        &self,
        path: Path,
        since: Instant,
        timeout: Duration,
    ) -> anyhow::Result<Duration> {
        let src = self.pods(path.from)[0].clone();
        let dst = self.pods(path.to)[0].clone();
        let deadline = since + timeout;
        while Instant::now() < deadline {
            if let Ok(r) = self.reflector.reflect(path, &dst.name, dst.ip).await {
                let address = r.address();
                let src = src.clone();
                let rtt = tokio::task::spawn_blocking(move || {
                    isthmus_lab::probe::ping_rtt(&src, address, 1, Duration::from_millis(20))
                })
                .await??;
                if rtt.is_some() {
                    return Ok(since.elapsed());
                }
            } else {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        bail!("no packet through {path} within {} s", timeout.as_secs())
    }

    /// Cluster `i`'s TunnelEndpoint for cluster `j`.
    pub async fn tunnel_endpoint(&self, i: usize, j: usize) -> anyhow::Result<TunnelEndpoint> {
        let api: Api<TunnelEndpoint> = Api::namespaced(self.clusters[i].client(), NAMESPACE);
        let name = self.clusters[j].site.id.as_str();
        api.get_opt(name).await?.with_context(|| {
            format!(
                "cluster {} has no TunnelEndpoint {name}",
                self.clusters[i].site.id
            )
        })
    }

    /// The connection state of cluster `i`'s TunnelEndpoint for cluster `j`.
    pub async fn tunnel_state(&self, i: usize, j: usize) -> Option<ConnectionState> {
        let api: Api<TunnelEndpoint> = Api::namespaced(self.clusters[i].client(), NAMESPACE);
        let tep = api
            .get_opt(self.clusters[j].site.id.as_str())
            .await
            .ok()??;
        Some(tep.status?.connection.status)
    }

    /// Waits until both TunnelEndpoints of every pair say `connected`.
    pub async fn wait_connected(
        &self,
        pairs: &[(usize, usize)],
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut pending = Vec::new();
            for &(i, j) in pairs {
                for (x, y) in [(i, j), (j, i)] {
                    let state = self.tunnel_state(x, y).await;
                    if state != Some(ConnectionState::Connected) {
                        let state = state.map_or_else(
                            || "no TunnelEndpoint status yet".to_owned(),
                            |s| s.to_string(),
                        );
                        pending.push(format!(
                            "{}→{}: {state}",
                            self.clusters[x].site.id, self.clusters[y].site.id
                        ));
                    }
                }
            }
            if pending.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "tunnels not connected after {} s: {}{}",
                    timeout.as_secs(),
                    pending.join(", "),
                    self.failing_components()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `; a/network-manager failed 12 times, last: …` for every component that keeps failing.
    fn failing_components(&self) -> String {
        let mut out = String::new();
        for (name, f) in self.clusters.iter().flat_map(|c| c.failing()) {
            let last = f.last.unwrap_or_default();
            out.push_str(&format!("; {name} failed {} times, last: {last}", f.count));
        }
        out
    }

    /// Exposes every pod along every path (hub paths included).
    pub async fn reflect_all(&mut self) -> anyhow::Result<()> {
        for path in plan::paths(self.clusters.len(), &self.peerings) {
            for pod in self.pods(path.to).to_vec() {
                let r = self
                    .reflector
                    .reflect(path, &pod.name, pod.ip)
                    .await
                    .with_context(|| format!("reflecting {} along {path}", pod.name))?;
                tracing::info!(from = %self.clusters[path.from].site.id, pod = %pod.name,
                    to = %self.clusters[path.to].site.id, address = %r.address(), "pod reflected");
                self.reflections.push(r);
            }
        }
        Ok(())
    }

    /// Probes every reflection from every pod of the dialling cluster once.
    pub async fn matrix(&self) -> Matrix {
        probe_all(&self.topology, &self.reflections).await
    }

    /// Probes until every probe answers or `timeout` passes; the last matrix.
    pub async fn wait_full_connectivity(&self, timeout: Duration) -> Matrix {
        let deadline = Instant::now() + timeout;
        loop {
            let m = self.matrix().await;
            if m.all_reachable() || Instant::now() > deadline {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stops every component, then removes the namespaces.
    pub async fn shutdown(self) {
        for cluster in self.clusters {
            cluster.shutdown().await;
        }
        drop(self.topology);
    }
}

/// Probes every reflection from every pod of the dialling cluster: 3 echo requests each, in
/// parallel on the blocking pool.
pub async fn probe_all(
    topology: &isthmus_lab::TopologyRecord,
    reflections: &[Reflection],
) -> Matrix {
    let mut tasks = Vec::new();
    for r in reflections {
        for src in &topology.clusters[r.from].pods {
            let (src, r) = (src.clone(), r.clone());
            tasks.push(tokio::task::spawn_blocking(move || {
                let address: Ipv4Addr = r.address();
                let rtt =
                    isthmus_lab::probe::ping_rtt(&src, address, 3, Duration::from_millis(500))
                        .ok()
                        .flatten();
                Probe {
                    from: r.from,
                    from_pod: src.name.clone(),
                    to: r.to,
                    to_pod: r.pod.clone(),
                    via: r.via,
                    address,
                    rtt,
                }
            }));
        }
    }
    let mut probes = Vec::new();
    for t in tasks {
        if let Ok(p) = t.await {
            probes.push(p);
        }
    }
    probes.sort_by(|a, b| {
        (a.from, &a.from_pod, a.to, &a.to_pod).cmp(&(b.from, &b.from_pod, b.to, &b.to_pod))
    });
    Matrix { probes }
}
