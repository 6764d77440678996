//! What to build: [`TopologySpec`], validated and turned into a [`TopologyRecord`] by pure
//! address arithmetic ([`TopologySpec::plan`]) before anything touches the kernel.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnet::Ipv4Net;

use crate::naming;
use crate::record::{ClusterRecord, NodeRecord, PodRecord, TopologyRecord, WanRecord};
use crate::{Error, Result};

/// First host number handed out in every network (node `j` = `.(10+j)`, pod `k` = `.(10+k)`,
/// gateway of cluster `i` on the underlay = `.(10+i)`).
pub const FIRST_HOST: u32 = 10;
/// Host number of a cluster's API on its node network (on the LAN bridge).
pub const API_LAN_HOST: u32 = 2;
/// First host number of the clusters' APIs on the underlay (cluster `i` = `.(200+i)`).
pub const API_WAN_FIRST_HOST: u32 = 200;
/// First host number of the second gateway-capable nodes on the underlay (`node1` of cluster
/// `i` = `.(100+i)`).
pub const SECOND_GATEWAY_FIRST_HOST: u32 = 100;

/// The shape of a lab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologySpec {
    /// Number of clusters (IDs `a`, `b`, …; at most 26).
    pub clusters: usize,
    /// Worker nodes per cluster, besides the gateway node.
    pub workers: usize,
    /// Pods per node (gateway node included).
    pub pods_per_node: usize,
    /// The Pod CIDR of every cluster (node `j` owns its `j`-th /24).
    pub pod_cidr: Ipv4Net,
    /// Per-cluster Pod CIDR overrides: cluster `i` uses `pod_cidr_overrides[i]` when present.
    pub pod_cidr_overrides: Vec<Ipv4Net>,
    /// The node network of every cluster (separate L2s, so the same one is fine).
    pub node_network: Ipv4Net,
    /// The underlay between gateways.
    pub wan_network: Ipv4Net,
    /// Put the odd-numbered workers (`node1`, `node3`, …) on their own subnet
    /// ([`TopologySpec::worker_network`]), routed to the node network by the LAN namespace: the
    /// gateway node is then not on-link for them. Even-numbered workers stay on its L2.
    pub worker_subnet: bool,
    /// The workers' subnet when `worker_subnet` is set.
    pub worker_network: Ipv4Net,
    /// Nodes on the underlay per cluster, 1 or 2: with 2, `node1` is on it too (at
    /// [`SECOND_GATEWAY_FIRST_HOST`]` + i`) and can run a second gateway replica.
    pub gateway_nodes: usize,
    /// Where to write the lab's record once built (none: not written).
    pub state_file: Option<PathBuf>,
}

impl Default for TopologySpec {
    fn default() -> Self {
        TopologySpec {
            clusters: 3,
            workers: 1,
            pods_per_node: 1,
            pod_cidr: "10.0.0.0/16".parse().expect("literal"),
            pod_cidr_overrides: Vec::new(),
            node_network: "172.16.0.0/24".parse().expect("literal"),
            wan_network: "192.168.100.0/24".parse().expect("literal"),
            worker_subnet: false,
            worker_network: "172.16.1.0/24".parse().expect("literal"),
            gateway_nodes: 1,
            state_file: None,
        }
    }
}

/// Whether two networks share an address.
fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// `.n` of `net`, if it is a host address of `net`.
fn host(net: Ipv4Net, n: u32) -> Option<Ipv4Addr> {
    let addr = Ipv4Addr::from(u32::from(net.network()).checked_add(n)?);
    (net.contains(&addr) && addr != net.broadcast() && n != 0).then_some(addr)
}

fn host_or(net: Ipv4Net, n: u32, what: &str) -> Result<Ipv4Addr> {
    host(net, n).ok_or_else(|| Error::spec(format!("{net} has no room for {what} (.{n})")))
}

impl TopologySpec {
    /// A spec with `clusters` clusters and the defaults otherwise.
    pub fn with_clusters(clusters: usize) -> Self {
        TopologySpec {
            clusters,
            ..Self::default()
        }
    }

    /// The Pod CIDR of cluster `index`.
    pub fn pod_cidr_of(&self, index: usize) -> Ipv4Net {
        self.pod_cidr_overrides
            .get(index)
            .copied()
            .unwrap_or(self.pod_cidr)
    }

    /// Checks the spec and computes every name and address of the lab tagged `tag`.
    pub fn plan(&self, tag: &str) -> Result<TopologyRecord> {
        if self.clusters == 0 {
            return Err(Error::spec("a lab needs at least one cluster"));
        }
        let mut clusters = Vec::with_capacity(self.clusters);
        for index in 0..self.clusters {
            clusters.push(self.plan_cluster(tag, index)?);
        }
        Ok(TopologyRecord {
            tag: tag.to_owned(),
            owner_pid: naming::pid_of(tag).unwrap_or_else(std::process::id),
            wan: WanRecord {
                namespace: naming::wan_namespace(tag),
                network: self.wan_network,
            },
            clusters,
            // Set once the record is written (Topology::build does that).
            state_file: None,
        })
    }

    fn plan_cluster(&self, tag: &str, index: usize) -> Result<ClusterRecord> {
        let id = naming::cluster_id(index)
            .ok_or_else(|| Error::spec(format!("at most 26 clusters, not {}", self.clusters)))?;
        let wg_interface = naming::wg_interface(tag, &id);
        if wg_interface.len() > naming::IFNAME_MAX {
            return Err(Error::spec(format!(
                "interface name {wg_interface} is longer than {} characters",
                naming::IFNAME_MAX
            )));
        }
        let pod_cidr = self.pod_cidr_of(index);
        if !(1..=2).contains(&self.gateway_nodes) || self.gateway_nodes > self.workers + 1 {
            return Err(Error::spec(format!(
                "{} gateway-capable nodes asked for: 1 or 2, and at most the {} nodes there are",
                self.gateway_nodes,
                self.workers + 1
            )));
        }
        let worker_network = self.worker_subnet.then_some(self.worker_network);
        if let Some(net) = worker_network
            && (overlaps(net, self.node_network) || overlaps(net, self.wan_network))
        {
            return Err(Error::spec(format!(
                "the workers' subnet {net} overlaps the node network {} or the underlay {}",
                self.node_network, self.wan_network
            )));
        }
        let networks = [
            (Some(self.node_network), "node network"),
            (Some(self.wan_network), "underlay between gateways"),
            (worker_network, "workers' subnet"),
        ];
        for (network, what) in networks.into_iter().filter_map(|(n, w)| Some((n?, w))) {
            if overlaps(pod_cidr, network) {
                return Err(Error::spec(format!(
                    "Pod CIDR {pod_cidr} overlaps the lab's {what} {network}; choose one clear of \
                     {} and {} (the default is 10.0.0.0/16)",
                    self.node_network, self.wan_network
                )));
            }
        }
        if pod_cidr.prefix_len() > 24 {
            return Err(Error::spec(format!(
                "Pod CIDR {pod_cidr} must be /24 or larger (one /24 per node)"
            )));
        }
        let subnets: Vec<Ipv4Net> = pod_cidr
            .subnets(24)
            .expect("prefix checked")
            .take(self.workers + 1)
            .collect();
        if subnets.len() <= self.workers {
            return Err(Error::spec(format!(
                "Pod CIDR {pod_cidr} has fewer than {} /24s",
                self.workers + 1
            )));
        }
        let mut nodes = Vec::new();
        let mut pods = Vec::new();
        for (j, subnet) in subnets.into_iter().enumerate() {
            let name = naming::node_name(j);
            // odd workers move, even ones stay beside the gateway node: one lab shows both paths
            let network = match worker_network {
                Some(net) if j % 2 == 1 => net,
                _ => self.node_network,
            };
            let ip = host_or(network, FIRST_HOST + j as u32, "a node")?;
            for k in 0..self.pods_per_node {
                let pod = naming::pod_name(j, k);
                pods.push(PodRecord {
                    namespace: naming::member_namespace(tag, &id, &pod),
                    ip: host_or(subnet, FIRST_HOST + k as u32, "a pod")?,
                    name: pod,
                    node: name.clone(),
                });
            }
            let underlay = match j {
                0 => Some(host_or(
                    self.wan_network,
                    FIRST_HOST + index as u32,
                    "a gateway",
                )?),
                1 if self.gateway_nodes == 2 => Some(host_or(
                    self.wan_network,
                    SECOND_GATEWAY_FIRST_HOST + index as u32,
                    "a second gateway node",
                )?),
                _ => None,
            };
            nodes.push(NodeRecord {
                namespace: naming::member_namespace(tag, &id, &name),
                name,
                ip,
                pod_subnet: subnet,
                gateway: j == 0,
                underlay,
            });
        }
        Ok(ClusterRecord {
            lan_namespace: naming::lan_namespace(tag, &id),
            underlay: host_or(self.wan_network, FIRST_HOST + index as u32, "a gateway")?,
            wg_interface,
            api_lan: host_or(self.node_network, API_LAN_HOST, "the API's address")?,
            api_wan: host_or(
                self.wan_network,
                API_WAN_FIRST_HOST + index as u32,
                "the API's address",
            )?,
            pod_cidr,
            node_network: self.node_network,
            worker_network,
            nodes,
            pods,
            id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_plan_has_the_documented_addresses() {
        let spec = TopologySpec::with_clusters(2);
        let lab = spec.plan("il42x0").unwrap();
        assert_eq!(lab.wan.namespace, "il42x0-wan");
        let b = lab.cluster("b").unwrap();
        assert_eq!(b.underlay, Ipv4Addr::new(192, 168, 100, 11));
        assert_eq!(b.wg_interface, "il42x0-b");
        assert_eq!(b.api_lan, Ipv4Addr::new(172, 16, 0, 2));
        assert_eq!(b.api_wan, Ipv4Addr::new(192, 168, 100, 201));
        assert_eq!(b.lan_namespace, "il42x0-b-lan");
        assert_eq!(b.gateway().name, "node0");
        assert_eq!(b.gateway().namespace, "il42x0-b-node0");
        let worker = b.workers().next().unwrap();
        assert_eq!(worker.ip, Ipv4Addr::new(172, 16, 0, 11));
        assert_eq!(worker.pod_subnet, "10.0.1.0/24".parse::<Ipv4Net>().unwrap());
        let pod = b.pods_on("node1").next().unwrap();
        assert_eq!(pod.name, "pod1-0");
        assert_eq!(pod.namespace, "il42x0-b-pod1-0");
        assert_eq!(pod.ip, Ipv4Addr::new(10, 0, 1, 10));
        assert_eq!(lab.namespaces().len(), 1 + 2 * (1 + 2 + 2));
        assert_eq!(lab.pods().count(), 4);
        let text = lab.to_string();
        assert!(text.contains("cluster b: pods 10.0.0.0/16"), "{text}");
        assert!(
            text.contains("    pod1-0 10.0.1.10 (il42x0-b-pod1-0)"),
            "{text}"
        );
        // Same Pod CIDR everywhere: identical pod addresses.
        assert_eq!(lab.clusters[0].pods, {
            let mut a = b.pods.clone();
            for p in &mut a {
                p.namespace = p.namespace.replace("-b-", "-a-");
            }
            a
        });
    }

    #[test]
    fn worker_subnet_moves_the_workers_only() {
        let spec = TopologySpec {
            worker_subnet: true,
            workers: 2,
            ..TopologySpec::with_clusters(2)
        };
        let lab = spec.plan("il42x0").unwrap();
        let a = lab.cluster("a").unwrap();
        assert_eq!(a.gateway().ip, Ipv4Addr::new(172, 16, 0, 10));
        let ips: Vec<Ipv4Addr> = a.workers().map(|w| w.ip).collect();
        assert_eq!(
            ips,
            [Ipv4Addr::new(172, 16, 1, 11), Ipv4Addr::new(172, 16, 0, 12)]
        );
        assert_eq!(a.node_networks().len(), 2);
        assert_eq!(
            ClusterRecord::router_on(a.network_of(a.workers().next().unwrap())),
            Ipv4Addr::new(172, 16, 1, 1)
        );
        assert_eq!(
            TopologySpec::default().plan("il1x0").unwrap().clusters[0].worker_network,
            None
        );
        let clash = TopologySpec {
            worker_subnet: true,
            pod_cidr: "172.16.1.0/24".parse().unwrap(),
            ..TopologySpec::with_clusters(2)
        };
        assert!(clash.plan("il1x0").is_err());
    }

    #[test]
    fn overrides_and_limits() {
        let mut spec = TopologySpec::with_clusters(2);
        spec.pod_cidr_overrides = vec![spec.pod_cidr, "10.1.0.0/16".parse().unwrap()];
        spec.workers = 2;
        spec.pods_per_node = 3;
        let lab = spec.plan("il1x0").unwrap();
        assert_eq!(lab.clusters[1].pods.len(), 9);
        assert_eq!(lab.clusters[1].pods[8].ip, Ipv4Addr::new(10, 1, 2, 12));
        assert!(TopologySpec::with_clusters(0).plan("il1x0").is_err());
        assert!(TopologySpec::with_clusters(27).plan("il1x0").is_err());
        let mut small = TopologySpec::with_clusters(1);
        small.pod_cidr = "10.0.0.0/25".parse().unwrap();
        assert!(small.plan("il1x0").is_err());
        small.pod_cidr = "10.0.0.0/24".parse().unwrap();
        assert!(small.plan("il1x0").is_err(), "two nodes need two /24s");
        let mut crowded = TopologySpec::with_clusters(1);
        crowded.pods_per_node = 250;
        assert!(crowded.plan("il1x0").is_err());
        assert!(
            TopologySpec::with_clusters(1)
                .plan("il4194304x1234")
                .is_err()
        );
        for (cidr, named) in [
            ("172.16.0.0/16", "node network 172.16.0.0/24"),
            (
                "192.168.0.0/16",
                "underlay between gateways 192.168.100.0/24",
            ),
        ] {
            let mut overlapping = TopologySpec::with_clusters(2);
            overlapping.pod_cidr = cidr.parse().unwrap();
            let err = overlapping.plan("il1x0").unwrap_err().to_string();
            assert!(err.contains(named) && err.contains(cidr), "{err}");
        }
    }
}
