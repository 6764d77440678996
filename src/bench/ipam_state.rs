//! `isthmus bench ipam-state`: the IPAM at scale. Fills a file-store state with N endpoint
//! mappings (in process, through the durable service), then starts the real server binary on that
//! state and reports how long it took to answer its first request (restart time, process start
//! included) and its resident memory holding N mappings.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use isthmus_ipam::{Cidr, ClusterId, IpamConfig, default_pools};
use isthmus_ipam_store::{DurableIpam, FileStore};

use crate::grpc::pb::MapRequest;
use crate::grpc::pb::ipam_client::IpamClient;

/// What to run.
#[derive(Debug, Clone)]
pub struct StateBenchOptions {
    pub mappings: u32,
    pub state_dir: PathBuf,
    /// The `isthmus` binary to start (normally the running one).
    pub binary: PathBuf,
}

/// The figures of a run.
#[derive(Debug, Clone)]
pub struct StateBenchReport {
    pub mappings: u32,
    pub fill: Duration,
    pub restart_to_first_answer: Duration,
    pub rss_kib: u64,
}

impl std::fmt::Display for StateBenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "filled {} mappings in {:.2} s",
            self.mappings,
            self.fill.as_secs_f64()
        )?;
        writeln!(
            f,
            "restart with {} mappings: first answer after {:.3} s (process start included)",
            self.mappings,
            self.restart_to_first_answer.as_secs_f64()
        )?;
        write!(
            f,
            "server RSS holding {} mappings: {:.1} MiB",
            self.mappings,
            self.rss_kib as f64 / 1024.0
        )
    }
}

const POD: &str = "10.0.0.0/16";
const EXTERNAL: &str = "10.128.0.0/12";
const PEERS: &str = "- {clusterID: bench-peer, podCIDR: 10.0.0.0/16, externalCIDR: 10.2.0.0/16}\n";

fn endpoint(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(100, 64, 0, 0)) + i)
}

async fn fill(opts: &StateBenchOptions) -> anyhow::Result<Duration> {
    let config = IpamConfig {
        pod_cidr: POD.parse()?,
        service_cidr: None,
        external_cidr: Some(EXTERNAL.parse()?),
        pools: default_pools(),
        reserved: vec![],
    };
    let ipam = DurableIpam::open(&config, FileStore::open(&opts.state_dir)?).await?;
    let peer: ClusterId = "bench-peer".parse()?;
    let (pod, ext): (Cidr, Cidr) = ("10.0.0.0/16".parse()?, "10.2.0.0/16".parse()?);
    ipam.upsert_peer(&peer, pod, ext).await?;
    // the peer addresses us as-is
    ipam.set_peer_view(&peer, None, None).await?;
    let start = Instant::now();
    let workers = 64u32;
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let (ipam, peer, n) = (ipam.clone(), peer.clone(), opts.mappings);
            tokio::spawn(async move {
                for i in (w..n).step_by(workers as usize) {
                    ipam.map_endpoint_ip(&peer, endpoint(i)).await?;
                }
                Ok::<_, isthmus_ipam_store::ServiceError>(())
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    Ok(start.elapsed())
}

/// The resident memory of process `pid` (VmRSS), in KiB.
pub(super) fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("bad VmRSS")?
        .parse()?)
}

/// A child process killed and reaped when dropped.
pub(super) struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the benchmark; the state directory must be empty or absent.
pub async fn run(opts: StateBenchOptions) -> anyhow::Result<StateBenchReport> {
    if opts.state_dir.exists() && std::fs::read_dir(&opts.state_dir)?.next().is_some() {
        bail!("{} is not empty", opts.state_dir.display());
    }
    let fill_time = fill(&opts).await?;
    let peers = opts.state_dir.join("bench-peers.yaml");
    std::fs::write(&peers, PEERS)?;
    let mut server = Command::new(&opts.binary);
    server
        .args([
            "network-manager",
            "--standalone",
            "--pod-cidr",
            POD,
            "--external-cidr",
            EXTERNAL,
        ])
        .arg("--state-dir")
        .arg(&opts.state_dir)
        .arg("--peers")
        .arg(&peers);
    let (answered, rss) = restart(server).await?;
    Ok(StateBenchReport {
        mappings: opts.mappings,
        fill: fill_time,
        restart_to_first_answer: answered,
        rss_kib: rss,
    })
}

/// Starts the network-manager `server` (its arguments but `--listen`) on a free port; the time
/// from the start to its first answer for an existing mapping, and its resident memory then (KiB).
pub(super) async fn restart(mut server: Command) -> anyhow::Result<(Duration, u64)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let addr = format!("127.0.0.1:{port}");
    let start = Instant::now();
    let child = server
        .args(["--listen", &addr])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .context("cannot start the server")?;
    let child = KillOnDrop(child);
    let answered = first_answer(&addr, start).await?;
    Ok((answered, rss_kib(child.0.id())?))
}

/// Asks the server at `addr` for an existing mapping until it answers; the time since `start`.
async fn first_answer(addr: &str, start: Instant) -> anyhow::Result<Duration> {
    let probe = MapRequest {
        cluster_id: "bench-peer".into(),
        ip: endpoint(0).to_string(),
    };
    loop {
        if start.elapsed() > Duration::from_secs(60) {
            bail!("the server did not answer within 60 s");
        }
        if let Ok(mut c) = IpamClient::connect(format!("http://{addr}")).await
            && c.map_endpoint_ip(probe.clone()).await.is_ok()
        {
            return Ok(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
