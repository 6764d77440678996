//! `isthmus network-manager`: the command line of the network-manager daemon and its wiring, in
//! both modes: standalone (file-backed IPAM, peers from a YAML file) and Kubernetes.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::bail;
use clap::Args as ClapArgs;
use isthmus_ipam::Cidr;

use crate::standalone::{StandaloneConfig, ipam_config, read_peers};

#[derive(Debug, ClapArgs)]
pub struct Args {
    /// Run without Kubernetes: file-backed IPAM state, peers from a YAML file.
    #[arg(long)]
    pub standalone: bool,
    /// Directory of the IPAM state (standalone mode).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// The local Pod CIDR.
    #[arg(long)]
    pub pod_cidr: Cidr,
    /// The local Service CIDR.
    #[arg(long)]
    pub service_cidr: Option<Cidr>,
    /// The local ExternalCIDR (chosen from the pools when absent).
    #[arg(long)]
    pub external_cidr: Option<Cidr>,
    /// Address pools for the ExternalCIDR and remapping (default: the RFC 1918 ranges).
    #[arg(long = "pool", value_delimiter = ',')]
    pub pools: Vec<Cidr>,
    /// Networks never to hand out (node network, other reserved ranges).
    #[arg(long = "reserved", value_delimiter = ',')]
    pub reserved: Vec<Cidr>,
    /// YAML list of peers: clusterID, podCIDR, externalCIDR, optional podCIDRNAT/externalCIDRNAT.
    #[arg(long)]
    pub peers: Option<PathBuf>,
    /// gRPC listen address.
    #[arg(long, default_value = "127.0.0.1:6000")]
    pub listen: SocketAddr,
}

/// Runs the network-manager as the command line asks.
pub async fn main(args: Args) -> anyhow::Result<()> {
    crate::standalone::run(standalone_config(args)?).await
}

fn standalone_config(a: Args) -> anyhow::Result<StandaloneConfig> {
    if !a.standalone {
        bail!(
            "the Kubernetes mode of the network-manager is not built yet; \
             run with --standalone --state-dir DIR --peers FILE"
        );
    }
    let Some(state_dir) = a.state_dir else {
        bail!("--standalone needs --state-dir DIR")
    };
    let Some(peers) = a.peers else {
        bail!("--standalone needs --peers FILE")
    };
    let peers = read_peers(&peers)?;
    let ipam = ipam_config(
        a.pod_cidr,
        a.service_cidr,
        a.external_cidr,
        a.pools,
        a.reserved,
    );
    Ok(StandaloneConfig {
        state_dir,
        listen: a.listen,
        ipam,
        peers,
    })
}

