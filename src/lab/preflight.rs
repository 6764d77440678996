//! What `lab up` checks before anything starts: the counts, the topology's address plan (Pod CIDR
//! against the lab's node network and underlay, room for every node and pod), and every
//! cluster's IPAM decisions, computed by the real, pure IPAM: each cluster chooses its
//! ExternalCIDR from the pools, then accepts or remaps every peer it will peer with. A lab that
//! would fail later (a network-manager that cannot start, a peering stuck in `PoolsExhausted`)
//! fails here, in one sentence that names the cause and a fix. No I/O.

use isthmus_ipam::{Cidr, ClusterId, Ipam, IpamError};
use isthmus_lab::TopologyRecord;

use crate::lab::plan;
use crate::lab::runner::LabOptions;

/// Why a lab cannot be built as asked.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error("{0}")]
    Options(String),
    #[error("{0}")]
    Topology(String),
    #[error(
        "cluster {cluster} cannot choose an ExternalCIDR: every cluster needs a free network of its \
         Pod CIDR's size (/{prefix}) in the pools ({pools}) besides its Pod CIDR {pod_cidr}, and \
         there is none; use a smaller --pod-cidr (the default is 10.0.0.0/16)"
    )]
    NoExternalCidr {
        cluster: String,
        prefix: u8,
        pod_cidr: Cidr,
        pools: String,
    },
    #[error(
        "cluster {cluster} cannot address cluster {peer}: {reason}; use a smaller --pod-cidr or \
         fewer --clusters (each peering needs up to two free /{prefix} networks in the pools {pools})"
    )]
    Peering {
        cluster: String,
        peer: String,
        reason: String,
        prefix: u8,
        pools: String,
    },
}

/// Checks everything that can be checked without touching the kernel.
pub fn check(options: &LabOptions) -> Result<TopologyRecord, PreflightError> {
    options
        .validate()
        .map_err(|e| PreflightError::Options(e.to_string()))?;
    let tag = format!("il{}x0", std::process::id());
    let record = options
        .topology_spec()
        .plan(&tag)
        .map_err(|e| PreflightError::Topology(e.to_string()))?;
    check_ipam(options, &record)?;
    Ok(record)
}

fn cidr(net: ipnet::Ipv4Net) -> Cidr {
    net.to_string().parse().expect("an Ipv4Net is a valid CIDR")
}

fn check_ipam(options: &LabOptions, record: &TopologyRecord) -> Result<(), PreflightError> {
    let mut ipams = Vec::new();
    for (index, cluster) in record.clusters.iter().enumerate() {
        let config = options.ipam_config(index, cidr(cluster.pod_cidr), record);
        let pools = list(&config.pools);
        let ipam = Ipam::new(&config).map_err(|e| match e {
            IpamError::InvalidConfig(_) => PreflightError::NoExternalCidr {
                cluster: cluster.id.clone(),
                prefix: config.pod_cidr.prefix_len(),
                pod_cidr: config.pod_cidr,
                pools: pools.clone(),
            },
            other => PreflightError::Topology(format!("cluster {}: {other}", cluster.id)),
        })?;
        ipams.push(ipam);
    }
    for (i, j) in plan::peerings(options.clusters, options.shape) {
        for (x, y) in [(i, j), (j, i)] {
            let peer_id: ClusterId = record.clusters[y]
                .id
                .parse()
                .expect("lab cluster IDs are valid");
            let (pod, external) = (ipams[y].local().pod_cidr, ipams[y].local().external_cidr);
            let pools = list(&ipams[x].local().pools);
            let refused = |e: IpamError| PreflightError::Peering {
                cluster: record.clusters[x].id.clone(),
                peer: peer_id.to_string(),
                reason: e.to_string(),
                prefix: pod.prefix_len(),
                pools: pools.clone(),
            };
            let effect = ipams[x]
                .plan_peer(&peer_id, pod, external)
                .map_err(refused)?;
            ipams[x].apply(&effect).map_err(refused)?;
        }
    }
    Ok(())
}

fn list(cidrs: &[Cidr]) -> String {
    cidrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::plan::Shape;

    fn options(pod_cidr: &str, clusters: usize) -> LabOptions {
        LabOptions {
            clusters,
            pod_cidr: pod_cidr.parse().unwrap(),
            ..LabOptions::default()
        }
    }

    #[test]
    fn the_default_lab_passes() {
        check(&LabOptions::default()).unwrap();
        check(&LabOptions {
            shape: Shape::Mesh,
            ..options("10.0.0.0/16", 8)
        })
        .unwrap();
    }

    #[test]
    fn a_pod_cidr_too_large_for_the_pools_is_refused_with_the_fix() {
        let err = check(&options("10.0.0.0/8", 3)).unwrap_err().to_string();
        assert!(
            err.starts_with("cluster a cannot choose an ExternalCIDR") && err.contains("/8"),
            "{err}"
        );
        assert!(err.contains("use a smaller --pod-cidr"), "{err}");
    }

    #[test]
    fn pools_that_run_out_for_the_hub_name_the_pair() {
        // Only 10.0.0.0/8 holds /11s (eight): the pods take one, each cluster its ExternalCIDR, and
        // the hub needs two more per peer: it runs out at its fourth.
        let err = check(&options("10.0.0.0/11", 8)).unwrap_err().to_string();
        assert!(err.starts_with("cluster "), "{err}");
        assert!(err.contains("cannot address cluster") && err.contains("fewer --clusters"));
    }

    #[test]
    fn overlaps_with_the_lab_networks_and_bad_counts_are_named() {
        let err = check(&options("172.16.0.0/16", 3)).unwrap_err().to_string();
        assert!(
            err.contains("overlaps the lab's node network 172.16.0.0/24"),
            "{err}"
        );
        let err = check(&options("10.0.0.0/16", 9)).unwrap_err().to_string();
        assert!(err.contains("--clusters must be between 2 and 8"), "{err}");
        let err = check(&LabOptions {
            pods_per_node: 0,
            ..LabOptions::default()
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("--pods-per-node"), "{err}");
    }
}
