//! Building a lab in the kernel from its planned [`TopologyRecord`], in phases of parallel `ip`
//! batches (one process per namespace and phase); a failure rolls back everything built so far.
//!
//! 1. every namespace (one batch), with forwarding on and reverse-path filtering off in nodes;
//! 2. bridges (WAN, LANs, each node's `cni0`) and veth pairs, created from the node's side;
//! 3. addresses and bridge ports up, then the other ends of the veths up; wait until every bridge
//!    port is operationally up and every other veth end has its carrier and queue;
//! 4. bridges up, and routes: each node routes the other nodes' pod subnets via their node IP
//!    (what a CNI does), each pod's default route goes via `.1` of its node's pod subnet; then
//!    wait until every bridge has its carrier and queue.
//!
//! With a workers' subnet (`--worker-subnet`) the LAN namespace is also a router: a second bridge
//! [`WORKER_BRIDGE`] holds the workers, `.1` of each network is on its bridge, forwarding is on,
//! and nodes on one side reach the other side (its node IPs and pod subnets) via that `.1`.
//!
//! The waits matter: the kernel attaches a new link's queue asynchronously (link watch) and drops
//! what is sent before. A bridge brought up after its ports are up gets its queue at once; one
//! brought up first waits for link watch's next run (up to a second).

use std::time::{Duration, Instant};

use crate::kernel::{Readiness, ip_batch, ip_batches, netns_exists, sysctls, wait_links_ready};
use crate::record::{
    ClusterRecord, NODE_IF, NodeRecord, POD_BRIDGE, POD_IF, TopologyRecord, UNDERLAY_IF,
    WORKER_BRIDGE,
};
use crate::spec::TopologySpec;
use crate::teardown::{destroy, destroy_stale, uapi_socket};
use crate::{Error, Result, naming};

/// The bridge in the WAN and LAN namespaces.
pub const BRIDGE: &str = "br0";

/// A built lab. It stays up when dropped (another process may tear it down from its record);
/// use [`Topology::guard`] for a lab destroyed on drop.
#[derive(Debug, Clone)]
pub struct Topology {
    /// Everything about it, as plain data.
    pub record: TopologyRecord,
    /// How long [`Topology::build`] took.
    pub build_time: Duration,
}

impl std::ops::Deref for Topology {
    type Target = TopologyRecord;

    fn deref(&self) -> &TopologyRecord {
        &self.record
    }
}

impl Topology {
    /// Removes the labs of dead processes ([`destroy_stale`]), validates `spec`, picks a
    /// host-unique tag, builds every namespace, link, address and route,
    /// and writes the record to `spec.state_file` if set. Blocks (runs `ip`); on failure,
    /// everything already built is removed and both errors are reported.
    pub fn build(spec: &TopologySpec) -> Result<Topology> {
        let started = Instant::now();
        // Labs of processes that died without tearing down (a killed test) go first.
        if let Err(error) = destroy_stale(None) {
            tracing::warn!(%error, "removing stale labs failed");
        }
        let existing = crate::kernel::list_netns()?;
        let tag = naming::new_tag(|tag| {
            existing.iter().any(|n| naming::belongs_to(n, tag))
                || uapi_socket(&naming::wg_interface(tag, "a")).exists()
        });
        let mut record = spec.plan(&tag)?;
        let result = build_kernel(&record).and_then(|()| match spec.state_file.clone() {
            Some(path) => record.save(&path),
            None => Ok(()),
        });
        if let Err(cause) = result {
            return Err(match destroy(&record) {
                Ok(()) => cause,
                Err(rollback) => Error::RollbackFailed {
                    cause: Box::new(cause),
                    rollback: Box::new(rollback),
                },
            });
        }
        let build_time = started.elapsed();
        tracing::info!(tag = %record.tag, clusters = record.clusters.len(), ?build_time, "lab built");
        Ok(Topology { record, build_time })
    }

    /// This lab, destroyed when the guard is dropped (panics included). For tests.
    pub fn guard(self) -> TopologyGuard {
        TopologyGuard {
            topology: Some(self),
        }
    }

    /// Tears the lab down (see [`destroy`]).
    pub fn destroy(self) -> Result<()> {
        destroy(&self.record)
    }
}

/// A lab destroyed on drop; errors on drop are logged. Dereferences to [`Topology`].
#[derive(Debug)]
pub struct TopologyGuard {
    /// Always set; taken only by [`TopologyGuard::keep`].
    topology: Option<Topology>,
}

impl TopologyGuard {
    /// Disarms the guard: the lab stays up.
    pub fn keep(mut self) -> Topology {
        self.topology
            .take()
            .expect("a guard holds its lab until kept")
    }
}

impl std::ops::Deref for TopologyGuard {
    type Target = Topology;

    fn deref(&self) -> &Topology {
        self.topology
            .as_ref()
            .expect("a guard holds its lab until kept")
    }
}

impl Drop for TopologyGuard {
    fn drop(&mut self) {
        let Some(topology) = self.topology.take() else {
            return;
        };
        if let Err(error) = destroy(&topology.record) {
            tracing::error!(tag = %topology.tag, %error, "lab teardown failed");
            eprintln!("lab {} teardown failed: {error}", topology.tag);
        }
    }
}

fn build_kernel(lab: &TopologyRecord) -> Result<()> {
    let namespaces = lab.namespaces();
    if let Some(taken) = namespaces.iter().find(|n| netns_exists(n)) {
        return Err(Error::spec(format!("namespace {taken} already exists")));
    }
    let adds: Vec<String> = namespaces
        .iter()
        .map(|n| format!("netns add {n}"))
        .collect();
    ip_batch(None, &adds, false)?;
    node_sysctls(lab)?;
    ip_batches(&devices(lab))?;
    ip_batches(&ports_up(lab))?;
    ip_batches(&ends_up(lab))?;
    wait_links_ready(&veths_ready(lab), LINKS_TIMEOUT)?;
    ip_batches(&routes(lab))?;
    wait_links_ready(&bridges_ready(lab), LINKS_TIMEOUT)
}

/// How long links may take to be ready after their batch.
const LINKS_TIMEOUT: Duration = Duration::from_secs(5);

/// What to wait for after the veths are up: bridge ports operationally up (a bridge enables only
/// those), every other veth end with its carrier and queue. Per namespace.
fn veths_ready(lab: &TopologyRecord) -> Vec<(String, Vec<(String, Readiness)>)> {
    let port = |name: String| (name, Readiness::Up);
    let end = |name: &str| (name.to_owned(), Readiness::Carrier);
    let wan = lab.clusters.iter().flat_map(|c| {
        c.gateway_capable()
            .map(|(j, _)| port(naming::wan_port_of(&c.id, j)))
    });
    let mut all = vec![(lab.wan.namespace.clone(), wan.collect())];
    for cluster in &lab.clusters {
        let lan = (0..cluster.nodes.len()).map(|j| port(format!("n{j}")));
        all.push((cluster.lan_namespace.clone(), lan.collect()));
        for node in &cluster.nodes {
            let mut links = vec![end(NODE_IF)];
            links.extend(node.underlay.map(|_| end(UNDERLAY_IF)));
            let pods = cluster.pods_on(&node.name).count();
            links.extend((0..pods).map(|k| port(format!("veth{k}"))));
            all.push((node.namespace.clone(), links));
        }
        for pod in &cluster.pods {
            all.push((pod.namespace.clone(), vec![end(POD_IF)]));
        }
    }
    all
}

/// Every bridge with ports, once brought up: carrier and queue. Per namespace.
fn bridges_ready(lab: &TopologyRecord) -> Vec<(String, Vec<(String, Readiness)>)> {
    let bridge = |name: &str| vec![(name.to_owned(), Readiness::Carrier)];
    let mut all = vec![(lab.wan.namespace.clone(), bridge(BRIDGE))];
    for cluster in &lab.clusters {
        let mut lan = bridge(BRIDGE);
        if cluster.worker_network.is_some() {
            lan.push((WORKER_BRIDGE.to_owned(), Readiness::Carrier));
        }
        all.push((cluster.lan_namespace.clone(), lan));
        for node in &cluster.nodes {
            if cluster.pods_on(&node.name).next().is_some() {
                all.push((node.namespace.clone(), bridge(POD_BRIDGE)));
            }
        }
    }
    all
}

/// Forwarding on, reverse-path filtering off (before any device exists, so every later device,
/// WireGuard's included, inherits `default`): the lab never depends on the host's settings.
fn node_sysctls(lab: &TopologyRecord) -> Result<()> {
    let settings = [
        ("net/ipv4/conf/all/rp_filter", "0"),
        ("net/ipv4/conf/default/rp_filter", "0"),
        ("net/ipv4/ip_forward", "1"),
    ];
    let nodes = lab.clusters.iter().flat_map(|c| &c.nodes);
    let mut namespaces: Vec<&str> = nodes.map(|n: &NodeRecord| n.namespace.as_str()).collect();
    // a LAN namespace that routes between the node network and the workers' subnet
    let routers = lab.clusters.iter().filter(|c| c.worker_network.is_some());
    namespaces.extend(routers.map(|c| c.lan_namespace.as_str()));
    let errors: Vec<Error> = std::thread::scope(|scope| {
        let handles: Vec<_> = namespaces
            .iter()
            .map(|ns| scope.spawn(|| sysctls(ns, &settings)))
            .collect();
        let results = handles
            .into_iter()
            .map(|h| h.join().expect("sysctl thread"));
        results.filter_map(Result::err).collect()
    });
    Error::collect(errors)
}

type Phase = Vec<(String, Vec<String>)>;

fn bridge_lines() -> Vec<String> {
    vec![
        "link set lo up".into(),
        format!("link add {BRIDGE} type bridge"),
    ]
}

fn devices(lab: &TopologyRecord) -> Phase {
    let mut phase = vec![(lab.wan.namespace.clone(), bridge_lines())];
    for cluster in &lab.clusters {
        let mut lan = bridge_lines();
        if cluster.worker_network.is_some() {
            lan.push(format!("link add {WORKER_BRIDGE} type bridge"));
        }
        phase.push((cluster.lan_namespace.clone(), lan));
        for (j, node) in cluster.nodes.iter().enumerate() {
            let mut lines = vec![
                "link set lo up".to_owned(),
                format!(
                    "link add {NODE_IF} type veth peer name n{j} netns {}",
                    cluster.lan_namespace
                ),
                format!("link add {POD_BRIDGE} type bridge"),
            ];
            if node.underlay.is_some() {
                lines.push(format!(
                    "link add {UNDERLAY_IF} type veth peer name {} netns {}",
                    naming::wan_port_of(&cluster.id, j),
                    lab.wan.namespace
                ));
            }
            for (k, pod) in cluster.pods_on(&node.name).enumerate() {
                lines.push(format!(
                    "link add veth{k} type veth peer name {POD_IF} netns {}",
                    pod.namespace
                ));
            }
            phase.push((node.namespace.clone(), lines));
        }
    }
    phase
}

/// Addresses everywhere, and the bridge ports up (their peers are still down).
fn ports_up(lab: &TopologyRecord) -> Phase {
    let wan_prefix = lab.wan.network.prefix_len();
    let wan_ports = lab.clusters.iter().flat_map(|c| {
        let ports = c.gateway_capable().map(|(j, _)| {
            let port = naming::wan_port_of(&c.id, j);
            format!("link set {port} master {BRIDGE} up")
        });
        // the address other clusters reach this cluster's API at
        let api = format!("addr add {}/{wan_prefix} dev {BRIDGE}", c.api_wan);
        ports.chain(std::iter::once(api)).collect::<Vec<_>>()
    });
    let mut phase = vec![(lab.wan.namespace.clone(), wan_ports.collect())];
    for cluster in &lab.clusters {
        let mut lan_lines: Vec<String> = (cluster.nodes.iter().enumerate())
            .map(|(j, node)| format!("link set n{j} master {} up", lan_bridge(cluster, node)))
            .collect();
        // the address the cluster's nodes reach its API at
        lan_lines.push(format!(
            "addr add {}/{} dev {BRIDGE}",
            cluster.api_lan,
            cluster.node_network.prefix_len()
        ));
        if let Some(workers) = cluster.worker_network {
            for (net, bridge) in [(cluster.node_network, BRIDGE), (workers, WORKER_BRIDGE)] {
                let router = ClusterRecord::router_on(net);
                let prefix = net.prefix_len();
                lan_lines.push(format!("addr add {router}/{prefix} dev {bridge}"));
            }
        }
        phase.push((cluster.lan_namespace.clone(), lan_lines));
        for node in &cluster.nodes {
            phase.push((node.namespace.clone(), node_lines(lab, cluster, node)));
        }
        for pod in &cluster.pods {
            let prefix = cluster
                .node(&pod.node)
                .expect("planned")
                .pod_subnet
                .prefix_len();
            let lines = vec![
                "link set lo up".to_owned(),
                format!("addr add {}/{prefix} dev {POD_IF}", pod.ip),
            ];
            phase.push((pod.namespace.clone(), lines));
        }
    }
    phase
}

/// The other end of every veth up: it opens with its carrier on, so its queue is attached at once.
fn ends_up(lab: &TopologyRecord) -> Phase {
    let mut phase = Vec::new();
    for cluster in &lab.clusters {
        for node in &cluster.nodes {
            let mut lines = vec![format!("link set {NODE_IF} up")];
            lines.extend(node.underlay.map(|_| format!("link set {UNDERLAY_IF} up")));
            phase.push((node.namespace.clone(), lines));
        }
        for pod in &cluster.pods {
            phase.push((pod.namespace.clone(), vec![format!("link set {POD_IF} up")]));
        }
    }
    phase
}

/// The LAN bridge node `node` is a port of.
fn lan_bridge(cluster: &ClusterRecord, node: &NodeRecord) -> &'static str {
    if cluster.network_of(node) == cluster.node_network {
        BRIDGE
    } else {
        WORKER_BRIDGE
    }
}

fn node_lines(lab: &TopologyRecord, cluster: &ClusterRecord, node: &NodeRecord) -> Vec<String> {
    let node_prefix = cluster.network_of(node).prefix_len();
    let gateway_ip = pod_gateway(node);
    let pod_prefix = node.pod_subnet.prefix_len();
    let mut lines = vec![
        format!("addr add {}/{node_prefix} dev {NODE_IF}", node.ip),
        format!("addr add {gateway_ip}/{pod_prefix} dev {POD_BRIDGE}"),
    ];
    if let Some(underlay) = node.underlay {
        let wan_prefix = lab.wan.network.prefix_len();
        lines.push(format!(
            "addr add {underlay}/{wan_prefix} dev {UNDERLAY_IF}"
        ));
    }
    for k in 0..cluster.pods_on(&node.name).count() {
        lines.push(format!("link set veth{k} master {POD_BRIDGE} up"));
    }
    lines
}

/// `.1` of a node's pod subnet: the pods' default gateway, on the node's `cni0`.
pub fn pod_gateway(node: &NodeRecord) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::from(u32::from(node.pod_subnet.network()) + 1)
}

fn routes(lab: &TopologyRecord) -> Phase {
    let bridge_up = vec![format!("link set {BRIDGE} up")];
    let mut phase = vec![(lab.wan.namespace.clone(), bridge_up.clone())];
    for cluster in &lab.clusters {
        phase.push((cluster.lan_namespace.clone(), lan_routes(cluster)));
        for node in &cluster.nodes {
            phase.push((node.namespace.clone(), node_routes(cluster, node)));
        }
        for pod in &cluster.pods {
            let node = cluster.node(&pod.node).expect("planned");
            let line = format!("route add default via {} dev {POD_IF}", pod_gateway(node));
            phase.push((pod.namespace.clone(), vec![line]));
        }
    }
    phase
}

/// The LAN bridges up; on a router, a route to every node's pod subnet via the node.
fn lan_routes(cluster: &ClusterRecord) -> Vec<String> {
    let mut lines = vec![format!("link set {BRIDGE} up")];
    if cluster.worker_network.is_some() {
        lines.push(format!("link set {WORKER_BRIDGE} up"));
        let nodes = cluster.nodes.iter();
        lines.extend(nodes.map(|n| format!("route add {} via {}", n.pod_subnet, n.ip)));
    }
    lines
}

/// A node's pod bridge up, and the routes a CNI would give it: every other node's pod subnet via
/// that node (on-link), or via the router when the other node is on the other subnet (which is
/// itself reached via the router).
fn node_routes(cluster: &ClusterRecord, node: &NodeRecord) -> Vec<String> {
    let mut lines = vec![format!("link set {POD_BRIDGE} up")];
    let own = cluster.network_of(node);
    let router = ClusterRecord::router_on(own);
    let other_networks = cluster.node_networks().into_iter().filter(|n| *n != own);
    lines.extend(other_networks.map(|n| format!("route add {n} via {router} dev {NODE_IF}")));
    for other in cluster.nodes.iter().filter(|o| o.name != node.name) {
        let via = if cluster.network_of(other) == own {
            other.ip
        } else {
            router
        };
        lines.push(format!(
            "route add {} via {via} dev {NODE_IF}",
            other.pod_subnet
        ));
    }
    lines
}
