//! `isthmus lab`: several clusters in network namespaces on this machine, every component of every
//! cluster in one process, each cluster with its own in-memory API.
//!
//! `lab up` starts the lab daemon (`lab run`, in the background), waits until it is ready and
//! prints what it measured; `lab status` reads the daemon's state and measures again; `lab down`
//! stops the daemon and removes every namespace a lab created, also after a crash.

pub mod bench;
pub mod bench_hops;
pub mod chart;
pub mod cluster;
pub mod component;
mod daemon;
pub mod failover;
pub mod forward;
pub mod gateway_lb;
pub mod ipam_token;
pub mod kubelet;
pub mod matrix;
pub mod overlay_bench;
pub mod peering;
pub mod plan;
pub mod preflight;
pub mod reflector;
pub mod report;
pub mod runner;
pub mod state;

use std::path::PathBuf;

use clap::{Args, Subcommand};
use ipnet::Ipv4Net;
use isthmus_lab::exposure::Exposure;

pub use crate::lab::daemon::self_command;
use crate::lab::plan::Shape;
use crate::lab::runner::LabOptions;

/// `isthmus lab …`
#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Build the clusters, peer them, expose pods across them and print the connectivity matrix.
    /// The lab keeps running in the background until `isthmus lab down`.
    Up(UpArgs),
    /// Tunnel states and a fresh connectivity matrix of the running lab.
    Status {
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
        /// Directory of the lab's state and log.
        #[arg(long, default_value = state::STATE_DIR)]
        state_dir: PathBuf,
    },
    /// Stop the lab and remove everything it created (also after a crash of `lab up`).
    Down {
        /// Directory of the lab's state and log.
        #[arg(long, default_value = state::STATE_DIR)]
        state_dir: PathBuf,
    },
    /// Bring-up times and the reference thesis's benchmark B2 (MapEndpointIP → DNAT active in the kernel) on a fresh
    /// hub lab, which is removed afterwards.
    Bench(bench::LabBenchOptions),
    /// Gateway failover on a fresh lab (a and b, two gateway replicas each): the active
    /// replica of a is killed, stopped cleanly or crashed while ICMP flows cross the tunnels;
    /// prints the time until packets flow again. The lab is removed afterwards.
    Failover(failover::FailoverOptions),
    /// What the VXLAN overlay from a worker to the gateway node costs (request-response and
    /// TCP throughput to a remote pod) against a direct next hop, on a fresh lab with workers on
    /// two subnets, which is removed afterwards.
    Overlay(overlay_bench::OverlayBenchOptions),
    /// The lab daemon itself (what `lab up` starts in the background).
    #[command(hide = true)]
    Run(UpArgs),
}

/// Options of `lab up`.
#[derive(Debug, Clone, Args)]
pub struct UpArgs {
    /// Number of clusters (IDs a, b, c, …).
    #[arg(long, default_value_t = 3)]
    pub clusters: usize,
    /// mesh: every pair peers; hub: b peers with every other cluster, which reach each other
    /// through b.
    #[arg(long, value_enum, default_value_t = Shape::Hub)]
    pub topology: Shape,
    /// Pod CIDR of every cluster (identical on purpose: remapping is exercised).
    #[arg(long, default_value = "10.0.0.0/16")]
    pub pod_cidr: Ipv4Net,
    /// Worker nodes per cluster, besides the gateway node.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Pods per node.
    #[arg(long, default_value_t = 1)]
    pub pods_per_node: usize,
    /// Run in the foreground (Ctrl-C stops the lab and removes it).
    #[arg(long)]
    pub foreground: bool,
    /// Directory of the lab's state and log.
    #[arg(long, default_value = state::STATE_DIR)]
    pub state_dir: PathBuf,
    /// Real API servers instead of memkube: one kubeconfig per cluster, `a=PATH,b=PATH,…`
    /// (`NAME=PATH@CONTEXT` picks a context). Without it, `ISTHMUS_KUBECONFIGS` says the same,
    /// else `KUBEBUILDER_ASSETS` (envtest's `etcd` and `kube-apiserver`) starts one control
    /// plane per cluster, else every cluster gets an embedded memkube.
    #[arg(long = "kubeconfig", value_name = "NAME=PATH,...")]
    pub kubeconfigs: Option<String>,
    /// Install on every node a kindnet-like masquerade of pod traffic leaving the Pod CIDR, in a
    /// table that is not isthmus's (`ip cni-nat`), before the daemons start (docs/lab.md).
    #[arg(long)]
    pub cni_masquerade: bool,
    /// Put every cluster's workers on their own subnet (172.16.1.0/24), routed to the gateway
    /// node's (172.16.0.0/24) by a router: the route agents reach the gateway node over their
    /// VXLAN overlay (docs/lab.md).
    #[arg(long)]
    pub worker_subnet: bool,
    /// Gateway replicas per cluster, 1 or 2: with 2, node1 is on the underlay too and runs a
    /// standby gateway that takes over when the active one dies (`isthmus lab failover`).
    #[arg(long, default_value_t = 1)]
    pub gateway_replicas: usize,
    /// How every cluster exposes its gateway on the underlay: `node` (its node's address and
    /// port 51820), `nodeport` (a kube-proxy-like DNAT of port 31820 on the gateway node) or
    /// `loadbalancer` (a DNAT from a load balancer address in the underlay's namespace).
    #[arg(long, default_value = "node")]
    pub exposure: Exposure,
}

impl UpArgs {
    fn options(&self) -> anyhow::Result<LabOptions> {
        let source = match &self.kubeconfigs {
            Some(list) => isthmus_kubetarget::Source::Kubeconfigs(
                isthmus_kubetarget::parse_kubeconfigs(list)?,
            ),
            None => isthmus_kubetarget::Source::from_env()?,
        };
        Ok(LabOptions {
            clusters: self.clusters,
            shape: self.topology,
            pod_cidr: self.pod_cidr,
            workers: self.workers,
            pods_per_node: self.pods_per_node,
            pools: Vec::new(),
            topology_file: Some(self.state_dir.join("topology.json")),
            source,
            binary: None,
            work_dir: Some(self.state_dir.join("clusters")),
            cni_masquerade: self.cni_masquerade,
            worker_subnet: self.worker_subnet,
            gateway_replicas: self.gateway_replicas,
            exposure: self.exposure,
        })
    }
}

/// Runs a lab command.
pub async fn main(command: LabCommand) -> anyhow::Result<()> {
    if let LabCommand::Up(args) = &command {
        // Before root is asked for and before anything starts: bad input fails in one sentence.
        preflight::check(&args.options()?)?;
    }
    require_root()?;
    match command {
        LabCommand::Up(args) if args.foreground => daemon::run(args, true).await,
        LabCommand::Up(args) => daemon::up(args).await,
        LabCommand::Run(args) => daemon::run(args, false).await,
        LabCommand::Status { json, state_dir } => daemon::status(&state_dir, json).await,
        LabCommand::Down { state_dir } => daemon::down(&state_dir).await,
        LabCommand::Bench(options) => {
            println!("{}", bench::run(options).await?);
            Ok(())
        }
        LabCommand::Overlay(options) => {
            println!("{}", overlay_bench::run(options).await?);
            Ok(())
        }
        LabCommand::Failover(options) => {
            println!("{}", failover::run(options).await?);
            Ok(())
        }
    }
}

fn require_root() -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        anyhow::bail!("the lab needs root (it creates network namespaces); run it with sudo");
    }
    Ok(())
}
