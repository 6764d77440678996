//! The command line: subcommands, flags, the runtime, and the dispatch from a parsed command to
//! the library. It lives in the library, not in `main.rs`, so that the binary crate is a shim
//! that builds in a second: compiled there, the async dispatch re-instantiated the whole program
//! and cost a minute of every release build.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use crate::bench::ipam::IpamBenchOptions;
use anyhow::bail;
use clap::{Args, Parser, Subcommand, ValueEnum};
use isthmus_ipam::Cidr;

/// `isthmus --version`: the version and the Cargo profile that built the binary.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("ISTHMUS_BUILD_PROFILE"),
    " build)"
);

/// isthmus: a multi-cluster network overlay for Kubernetes.
#[derive(Debug, Parser)]
#[command(name = "isthmus", version = VERSION, about)]
pub struct Cli {
    /// Log format on stderr (level from RUST_LOG, default info).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// Async worker threads of daemons (default: one per core).
    #[arg(long, env = "ISTHMUS_WORKER_THREADS", global = true)]
    pub worker_threads: Option<usize>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the network-manager (IPAM, NetworkConfig processing, gRPC IPAM service).
    NetworkManager(Box<crate::daemons::network_manager::Args>),
    /// Run the gateway (TunnelEndpoints and NatMappings into WireGuard, routes and NAT).
    Gateway(crate::daemons::gateway::Args),
    /// Run the route agent of one node (remote ranges routed to the gateway node).
    RouteAgent(crate::daemons::route_agent::Args),
    /// Check this node's datapath against the cluster's resources; every finding says how to fix it.
    Diagnose(crate::inspect::diagnose::Args),
    /// Several clusters in network namespaces on this machine (root).
    #[command(subcommand)]
    Lab(crate::lab::LabCommand),
    /// One cluster at a glance: peers, tunnels, NAT views, IPAM usage (read from its API).
    Status(crate::inspect::status::StatusArgs),
    /// Peer this cluster with another: check both, write each side's kubeconfig Secret and
    /// ForeignCluster, wait until both tunnels are connected.
    Peer(crate::peer::PeerArgs),
    /// Undo `peer`: delete both ForeignClusters, wait until the network-managers and gateways
    /// have cleaned up (kernel included), delete the kubeconfig Secrets.
    Unpeer(crate::peer::UnpeerArgs),
    /// Benchmarks that print their figures.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Write the CRD YAML files generated from the API types.
    Crdgen {
        /// Output directory.
        #[arg(long, default_value = "crds")]
        out: PathBuf,
        /// Only check that the directory matches; exit non-zero on drift.
        #[arg(long)]
        check: bool,
    },
}

impl Command {
    /// Commands that print what went wrong themselves: client logs would only repeat it, in
    /// another format (`isthmus status`, `peer`, `unpeer`, `lab status`, `lab down`).
    pub fn reports_its_own_errors(&self) -> bool {
        use crate::lab::LabCommand;
        matches!(
            self,
            Command::Status(_)
                | Command::Peer(_)
                | Command::Unpeer(_)
                | Command::Lab(LabCommand::Status { .. } | LabCommand::Down { .. })
        )
    }
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Benchmark B1 of the reference thesis: concurrent MapEndpointIP / UnmapEndpointIP over gRPC.
    Ipam(IpamBenchArgs),
    /// The datapath in namespaces it creates and removes (root): request-response and
    /// iperf3 throughput for veth, tunnel, NAT and DNAT-map paths, and mapping applies.
    Datapath(DatapathBenchArgs),
    /// NatMapping deltas applied by the gateway's firewall driver, one element each, through an
    /// `nft` process and through a netlink batch, in a namespace it creates and removes (root).
    NatDelta(NatDeltaBenchArgs),
    /// `isthmus status` against an in-memory API with N peers: end-to-end time, p50/p99/max.
    Status(crate::bench::status::StatusBenchOptions),
    /// The IPAM over IpamStorage objects in an in-process memkube: N mappings (time per
    /// thousand), object sizes, recovery time; with --restart, the real network-manager's
    /// restart time and RSS on N mappings in a memkube served over HTTPS.
    IpamKube(crate::bench::ipam_kube::KubeBenchOptions),
    /// NatMapping publishing per batch as the state grows: a network-manager over an
    /// in-process memkube, writes and bytes per batch of mappings.
    NatShards(crate::bench::nat_shards::NatShardsBenchOptions),
    /// The API server an authenticated `bench ipam` needs: memkube over HTTPS, a client
    /// ServiceAccount, a kubeconfig and a token for it written to --dir.
    AuthApi(crate::bench::auth_api::AuthApiOptions),
    /// The IPAM at scale: N mappings, then the server's restart time and memory.
    IpamState {
        /// Endpoint mappings to create.
        #[arg(long, default_value_t = 100_000)]
        mappings: u32,
        /// An empty (or absent) directory for the state.
        #[arg(long)]
        state_dir: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct DatapathBenchArgs {
    /// Sequential HTTP requests per path.
    #[arg(long, default_value_t = 10_000)]
    requests: usize,
    /// iperf3 runs per path; the best and worst are dropped.
    #[arg(long, default_value_t = 12)]
    iperf_runs: usize,
    /// Seconds per iperf3 run.
    #[arg(long, default_value_t = 5)]
    iperf_seconds: u32,
    /// Single-mapping applies timed for p50/p99.
    #[arg(long, default_value_t = 1_000)]
    mapping_applies: usize,
    /// Entries of the large DNAT map and of the bulk apply.
    #[arg(long, default_value_t = 10_000)]
    bulk_mappings: usize,
    /// Skip the reference measurement over Debian's wireguard-go.
    #[arg(long)]
    no_wireguard_go: bool,
}

async fn bench_datapath(a: DatapathBenchArgs) -> anyhow::Result<()> {
    let opts = isthmus_dataplane::bench::DatapathBenchOptions {
        requests: a.requests,
        iperf_runs: a.iperf_runs,
        iperf_seconds: a.iperf_seconds,
        mapping_applies: a.mapping_applies,
        bulk_mappings: a.bulk_mappings,
        wireguard_go: !a.no_wireguard_go,
    };
    let report =
        tokio::task::spawn_blocking(move || isthmus_dataplane::bench::run(&opts)).await??;
    println!("{report}");
    Ok(())
}

#[derive(Debug, Args)]
pub struct NatDeltaBenchArgs {
    /// One-element deltas timed per path.
    #[arg(long, default_value_t = 1_000)]
    deltas: usize,
    /// Which paths to measure.
    #[arg(long, value_enum, default_value_t = DeltaPaths::Both)]
    path: DeltaPaths,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DeltaPaths {
    Both,
    Nft,
    Netlink,
}

async fn bench_nat_delta(a: NatDeltaBenchArgs) -> anyhow::Result<()> {
    use isthmus_dataplane::firewall::nft::ElementPath;
    let paths = match a.path {
        DeltaPaths::Both => vec![ElementPath::Nft, ElementPath::Netlink],
        DeltaPaths::Nft => vec![ElementPath::Nft],
        DeltaPaths::Netlink => vec![ElementPath::Netlink],
    };
    let opts = isthmus_dataplane::bench::nat_delta::NatDeltaBenchOptions {
        deltas: a.deltas,
        paths,
    };
    let report =
        tokio::task::spawn_blocking(move || isthmus_dataplane::bench::nat_delta::run(&opts))
            .await??;
    println!("{report}");
    Ok(())
}

#[derive(Debug, Args)]
pub struct IpamBenchArgs {
    /// `host:port` of the IPAM gRPC server.
    #[arg(long)]
    target: String,
    #[arg(long)]
    cluster_id: String,
    /// Concurrent clients (M).
    #[arg(long, default_value_t = 5)]
    clients: usize,
    /// HTTP/2 connections shared by the clients (default: one per client).
    #[arg(long)]
    connections: Option<usize>,
    /// MapEndpointIP calls per client (N).
    #[arg(long, default_value_t = 100)]
    requests: usize,
    /// The server's Pod CIDR (one request in four maps a pod IP in it).
    #[arg(long, default_value = "10.0.0.0/16")]
    pod_cidr: Cidr,
    /// First external endpoint IP used.
    #[arg(long, default_value = "100.64.0.0")]
    endpoint_base: Ipv4Addr,
    /// A ServiceAccount token minted for the IPAM's audience (e.g. `kubectl create token
    /// isthmus-ipam-client --audience isthmus-ipam`), sent as `authorization: Bearer` with
    /// every call. Without it calls go unauthenticated (a standalone IPAM on loopback).
    #[arg(long)]
    token_file: Option<std::path::PathBuf>,
}

impl TryFrom<IpamBenchArgs> for IpamBenchOptions {
    type Error = anyhow::Error;

    fn try_from(a: IpamBenchArgs) -> anyhow::Result<Self> {
        let token = match &a.token_file {
            Some(path) => crate::grpc::client::BearerToken::from_file(path)?,
            None => crate::grpc::client::BearerToken::none(),
        };
        Ok(IpamBenchOptions {
            connections: a.connections.unwrap_or(a.clients),
            target: a.target,
            cluster_id: a.cluster_id,
            clients: a.clients,
            requests: a.requests,
            pod_cidr: a.pod_cidr,
            endpoint_base: a.endpoint_base,
            token,
        })
    }
}

async fn bench_ipam(args: IpamBenchArgs) -> anyhow::Result<()> {
    let opts = IpamBenchOptions::try_from(args)?;
    println!(
        "bench ipam: {} clients on {} connections x {} requests against {}",
        opts.clients, opts.connections, opts.requests, opts.target
    );
    let report = crate::bench::ipam::run(opts).await?;
    println!("{report}");
    if !report.errors.is_empty() {
        bail!("{} requests failed", report.errors.values().sum::<usize>());
    }
    Ok(())
}

/// Runs one parsed command.
pub async fn run(command: Command) -> anyhow::Result<()> {
    let benchmarks = matches!(
        &command,
        Command::Bench(_)
            | Command::Lab(
                crate::lab::LabCommand::Bench(_)
                    | crate::lab::LabCommand::Overlay(_)
                    | crate::lab::LabCommand::Failover(_)
            )
    );
    if let Some(note) = crate::bench::profile_warning().filter(|_| benchmarks) {
        eprintln!("{note}");
    }
    match command {
        Command::NetworkManager(args) => crate::daemons::network_manager::main(*args).await,
        Command::Gateway(args) => crate::daemons::gateway::main(args).await,
        Command::RouteAgent(args) => crate::daemons::route_agent::main(args).await,
        Command::Diagnose(args) => crate::inspect::diagnose::cli::main(args).await,
        Command::Lab(command) => crate::lab::main(command).await,
        Command::Status(args) => Ok(crate::inspect::status::main(args).await?),
        Command::Peer(args) => crate::peer::peer_main(args).await,
        Command::Unpeer(args) => crate::peer::unpeer_main(args).await,
        Command::Bench(BenchCommand::Ipam(args)) => bench_ipam(args).await,
        Command::Bench(BenchCommand::Datapath(args)) => bench_datapath(args).await,
        Command::Bench(BenchCommand::NatDelta(args)) => bench_nat_delta(args).await,
        Command::Bench(BenchCommand::Status(options)) => {
            let binary = std::env::current_exe()?;
            println!("{}", crate::bench::status::run(options, binary).await?);
            Ok(())
        }
        Command::Bench(BenchCommand::AuthApi(options)) => {
            crate::bench::auth_api::run(options).await
        }
        Command::Bench(BenchCommand::IpamKube(options)) if options.restart => {
            let binary = std::env::current_exe()?;
            let report = crate::bench::ipam_kube_restart::run(options, binary).await?;
            println!("{report}");
            Ok(())
        }
        Command::Bench(BenchCommand::IpamKube(options)) => {
            println!("{}", crate::bench::ipam_kube::run(options).await?);
            Ok(())
        }
        Command::Bench(BenchCommand::NatShards(options)) => {
            let rows = crate::bench::nat_shards::run(options.clone()).await?;
            print!("{}", crate::bench::nat_shards::render(&options, &rows));
            Ok(())
        }
        Command::Bench(BenchCommand::IpamState {
            mappings,
            state_dir,
        }) => {
            let binary = std::env::current_exe()?;
            let opts = crate::bench::ipam_state::StateBenchOptions {
                mappings,
                state_dir,
                binary,
            };
            println!(
                "bench ipam-state: {mappings} mappings in {}",
                opts.state_dir.display()
            );
            println!("{}", crate::bench::ipam_state::run(opts).await?);
            Ok(())
        }
        Command::Crdgen { out, check } => crdgen(out, check),
    }
}

fn crdgen(out: PathBuf, check: bool) -> anyhow::Result<()> {
    if check {
        let drift = crate::crdgen::drift(&out)?;
        if !drift.is_empty() {
            bail!(
                "{} differ from the API types; run `isthmus crdgen`: {drift:?}",
                out.display()
            );
        }
        println!("{} is up to date", out.display());
        return Ok(());
    }
    for f in crate::crdgen::write(&out)? {
        println!("wrote {}", out.join(f.name).display());
    }
    Ok(())
}

/// Parses the command line, sets logging and the runtime up, runs the subcommand; the process's
/// exit code. Errors are printed here, once.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if std::env::var_os(crate::lab::kubelet::process::EXIT_WITH_PARENT).is_some() {
        exit_with_parent();
    }
    // A report prints what went wrong itself; client logs would only repeat it.
    let quiet = cli.command.reports_its_own_errors();
    init_tracing(cli.log_format, quiet);
    // The IPAM load generator runs on one thread: it then takes at most one core from the
    // server it measures on a 2-core machine, and avoids cross-thread wake-ups per request.
    let mut builder = match &cli.command {
        Command::Bench(BenchCommand::Ipam(_)) => tokio::runtime::Builder::new_current_thread(),
        _ => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            if let Some(n) = cli.worker_threads {
                b.worker_threads(n.max(1));
            }
            b
        }
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: LogFormat, quiet: bool) {
    let format = match format {
        LogFormat::Text => crate::logging::Format::Text,
        LogFormat::Json => crate::logging::Format::Json,
    };
    crate::logging::init(format, quiet);
}

/// A pod of the lab: exit when the lab that started this process is gone (its parent changes),
/// so that a killed lab leaves no daemon behind.
fn exit_with_parent() {
    let parent = nix::unistd::getppid();
    let watch = std::thread::Builder::new()
        .name("exit-with-parent".into())
        .spawn(move || {
            loop {
                std::thread::sleep(std::time::Duration::from_secs(1));
                if nix::unistd::getppid() != parent {
                    eprintln!("the lab that started this process is gone; exiting");
                    std::process::exit(1);
                }
            }
        });
    if let Err(e) = watch {
        eprintln!("warning: cannot watch the parent process: {e}");
    }
}

/// Parses `argv` (without the program name) into the flags `T` of one subcommand, as the
/// command line would: what the subcommands' flag tests share.
#[cfg(test)]
pub(crate) fn parse_flags<T: clap::Args>(argv: &[&str]) -> Result<T, clap::Error> {
    #[derive(Parser)]
    struct Flags<T: clap::Args> {
        #[command(flatten)]
        flags: T,
    }
    Flags::<T>::try_parse_from(std::iter::once("isthmus").chain(argv.iter().copied()))
        .map(|f| f.flags)
}
