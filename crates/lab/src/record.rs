//! What a built lab is, as plain data: the [`TopologyRecord`] the orchestrator reads and the JSON
//! state file another process (`isthmus lab status`, `lab down`) finds it by.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use isthmus_dataplane::Netns;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Where `isthmus lab` keeps state files by default (`<dir>/<tag>.json`).
pub const DEFAULT_STATE_DIR: &str = "/run/isthmus-lab";

/// A whole lab: the underlay and its clusters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopologyRecord {
    /// The host-unique tag every name of this lab starts with.
    pub tag: String,
    /// The process that built it (also encoded in the tag).
    pub owner_pid: u32,
    /// The underlay between gateways.
    pub wan: WanRecord,
    /// The clusters, in order (`a`, `b`, …).
    pub clusters: Vec<ClusterRecord>,
    /// The state file this record was written to, if any ([`crate::destroy`] removes it).
    #[serde(default)]
    pub state_file: Option<PathBuf>,
}

/// The underlay: one bridge in its own namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WanRecord {
    /// Namespace holding the bridge `br0`.
    pub namespace: String,
    /// The underlay network (gateway of cluster `i` = `.(10+i)`).
    pub network: Ipv4Net,
}

/// One cluster: a LAN of nodes (node 0 is the gateway node), pods on the nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRecord {
    /// Cluster ID (`a`, `b`, …).
    pub id: String,
    /// The cluster's Pod CIDR (node `j` owns its `j`-th /24).
    pub pod_cidr: Ipv4Net,
    /// The node network (reserve it in the IPAM): the gateway node's subnet, and every node's
    /// unless [`ClusterRecord::worker_network`] is set.
    pub node_network: Ipv4Net,
    /// With `--worker-subnet`: the odd workers' own subnet (reserve it too), joined to the node network
    /// by the LAN namespace acting as a router (`.1` on both bridges), so that the gateway node is
    /// not on-link for a worker.
    #[serde(default)]
    pub worker_network: Option<Ipv4Net>,
    /// Namespace holding the LAN bridge `br0`.
    pub lan_namespace: String,
    /// The gateway node's underlay address (on its interface [`UNDERLAY_IF`]).
    pub underlay: Ipv4Addr,
    /// The WireGuard interface name to create on the gateway node (unique on the host).
    pub wg_interface: String,
    /// Where the cluster's nodes reach its API: an address of the LAN bridge (`.2` of the node
    /// network), where the lab forwards to the API server.
    pub api_lan: Ipv4Addr,
    /// Where other clusters reach its API: an address of the underlay bridge (`.(200+i)`).
    pub api_wan: Ipv4Addr,
    /// Nodes; index 0 is the gateway node.
    pub nodes: Vec<NodeRecord>,
    /// Pods of every node.
    pub pods: Vec<PodRecord>,
}

/// The bridge of the workers' subnet in the LAN namespace (with `--worker-subnet`).
pub const WORKER_BRIDGE: &str = "br1";

/// A node's interface on the node network.
pub const NODE_IF: &str = "eth0";
/// The gateway node's interface on the underlay.
pub const UNDERLAY_IF: &str = "u0";
/// The bridge on each node that joins its pods (holds `.1` of the node's pod subnet).
pub const POD_BRIDGE: &str = "cni0";
/// A pod's interface.
pub const POD_IF: &str = "eth0";

/// A node: a namespace on the cluster's LAN, routing for its pods.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Name inside the cluster (`node0`, `node1`, …).
    pub name: String,
    /// Its network namespace.
    pub namespace: String,
    /// Its address on the node network (interface [`NODE_IF`]).
    pub ip: Ipv4Addr,
    /// The pod subnet it owns (`.1` is on its bridge [`POD_BRIDGE`]).
    pub pod_subnet: Ipv4Net,
    /// Whether this is the gateway node (node 0, on the underlay).
    pub gateway: bool,
    /// Its address on the underlay (interface [`UNDERLAY_IF`]) when it is on it: the gateway
    /// node, and a second node that can run a standby gateway replica.
    #[serde(default)]
    pub underlay: Option<Ipv4Addr>,
}

/// A pod: a namespace with `eth0` on its node's pod bridge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodRecord {
    /// Name inside the cluster (`pod<node>-<k>`).
    pub name: String,
    /// Its network namespace.
    pub namespace: String,
    /// Its address (interface [`POD_IF`]).
    pub ip: Ipv4Addr,
    /// The node it runs on (a [`NodeRecord::name`]).
    pub node: String,
}

impl NodeRecord {
    /// As a driver target.
    pub fn netns(&self) -> Netns {
        Netns::Named(self.namespace.clone())
    }
}

impl PodRecord {
    /// As a driver target.
    pub fn netns(&self) -> Netns {
        Netns::Named(self.namespace.clone())
    }
}

impl ClusterRecord {
    /// The gateway node (node 0).
    pub fn gateway(&self) -> &NodeRecord {
        self.nodes
            .iter()
            .find(|n| n.gateway)
            .expect("a cluster record always has a gateway node")
    }

    /// The gateway node's namespace, as a driver target.
    pub fn gateway_netns(&self) -> Netns {
        self.gateway().netns()
    }

    /// The nodes on the underlay, which can run a gateway replica, with their index.
    pub fn gateway_capable(&self) -> impl Iterator<Item = (usize, &NodeRecord)> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.underlay.is_some())
    }

    /// The worker nodes (every node but the gateway).
    pub fn workers(&self) -> impl Iterator<Item = &NodeRecord> {
        self.nodes.iter().filter(|n| !n.gateway)
    }

    /// The networks of this cluster's nodes: the node network, and the workers' subnet if any.
    pub fn node_networks(&self) -> Vec<Ipv4Net> {
        std::iter::once(self.node_network)
            .chain(self.worker_network)
            .collect()
    }

    /// The network node `node` is on.
    pub fn network_of(&self, node: &NodeRecord) -> Ipv4Net {
        match self.worker_network {
            Some(net) if net.contains(&node.ip) => net,
            _ => self.node_network,
        }
    }

    /// The router's address (`.1`, on the LAN namespace) on `network`: the next hop between the
    /// node network and the workers' subnet.
    pub fn router_on(network: Ipv4Net) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(network.network()) + 1)
    }

    /// A node by name.
    pub fn node(&self, name: &str) -> Option<&NodeRecord> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// A pod by name.
    pub fn pod(&self, name: &str) -> Option<&PodRecord> {
        self.pods.iter().find(|p| p.name == name)
    }

    /// The pods running on node `node`.
    pub fn pods_on<'a>(&'a self, node: &'a str) -> impl Iterator<Item = &'a PodRecord> {
        self.pods.iter().filter(move |p| p.node == node)
    }
}

impl TopologyRecord {
    /// A cluster by ID.
    pub fn cluster(&self, id: &str) -> Option<&ClusterRecord> {
        self.clusters.iter().find(|c| c.id == id)
    }

    /// Every pod of every cluster, with its cluster (for connectivity matrices).
    pub fn pods(&self) -> impl Iterator<Item = (&ClusterRecord, &PodRecord)> {
        self.clusters
            .iter()
            .flat_map(|c| c.pods.iter().map(move |p| (c, p)))
    }

    /// Every namespace of the lab, in creation order (pods last).
    pub fn namespaces(&self) -> Vec<String> {
        let mut names = vec![self.wan.namespace.clone()];
        for cluster in &self.clusters {
            names.push(cluster.lan_namespace.clone());
            names.extend(cluster.nodes.iter().map(|n| n.namespace.clone()));
        }
        for cluster in &self.clusters {
            names.extend(cluster.pods.iter().map(|p| p.namespace.clone()));
        }
        names
    }

    /// The default state file of this lab in `dir` (`<dir>/<tag>.json`).
    pub fn default_state_file(&self, dir: &Path) -> PathBuf {
        dir.join(format!("{}.json", self.tag))
    }

    /// Writes the record (as pretty JSON) to `path`, creating its directory; once written, the
    /// record remembers the path.
    /// The file is replaced atomically (written beside it, then renamed).
    pub fn save(&mut self, path: &Path) -> Result<()> {
        let io = |source| Error::StateFile {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let saved = TopologyRecord {
            state_file: Some(path.to_owned()),
            ..self.clone()
        };
        let text = serde_json::to_string_pretty(&saved).expect("a record always serializes");
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text + "\n").map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)?;
        *self = saved;
        Ok(())
    }

    /// Reads a record written by [`TopologyRecord::save`].
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::StateFile {
            path: path.to_owned(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| Error::StateFormat {
            path: path.to_owned(),
            source,
        })
    }

    /// Every record in a state directory (files that do not parse are skipped).
    pub fn load_dir(dir: &Path) -> Vec<TopologyRecord> {
        let entries = std::fs::read_dir(dir).into_iter().flatten().flatten();
        let mut records: Vec<_> = entries
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .filter_map(|p| Self::load(&p).ok())
            .collect();
        records.sort_by(|a, b| a.tag.cmp(&b.tag));
        records
    }
}

/// A human summary (`isthmus lab status`): one line per cluster, node and pod.
impl fmt::Display for TopologyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "lab {} (pid {}), WAN {} in {}",
            self.tag, self.owner_pid, self.wan.network, self.wan.namespace
        )?;
        for c in &self.clusters {
            writeln!(
                f,
                "cluster {}: pods {}, nodes {}, underlay {}, wireguard {}",
                c.id, c.pod_cidr, c.node_network, c.underlay, c.wg_interface
            )?;
            if let Some(net) = c.worker_network {
                writeln!(
                    f,
                    "  workers on {net}, routed by {} (LAN namespace)",
                    ClusterRecord::router_on(net)
                )?;
            }
            for n in &c.nodes {
                let role = if n.gateway { "gateway" } else { "worker" };
                writeln!(
                    f,
                    "  {} {role} {} pods {} ({})",
                    n.name, n.ip, n.pod_subnet, n.namespace
                )?;
                for p in c.pods_on(&n.name) {
                    writeln!(f, "    {} {} ({})", p.name, p.ip, p.namespace)?;
                }
            }
        }
        Ok(())
    }
}
