//! `isthmus bench status`: how long `isthmus status` takes for a cluster with N peers. Builds an
//! in-memory API served over HTTP holding the fixture of `status_fixture` (N TunnelEndpoints
//! with statuses, N NetworkConfigs and ForeignCluster, N NatMappings with entries, an
//! IpamStorage root and shards), then times (1) in process: client build, the five LISTs, the
//! report and its table, and (2) the real command: the `isthmus status` process against the same
//! URL, process start included.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use isthmus_memkube::MemKube;
use k8s_openapi::jiff::Timestamp;

use crate::bench::stats::LatencySummary;
use crate::bench::status_fixture::{self, FixtureCounts, FixtureShape, NAMESPACE};
use crate::inspect::status::fetch::fetch;
use crate::inspect::status::{self, Output, Source, build};
use crate::inspect::target::{TargetArgs, connect};

/// Options of `isthmus bench status`.
#[derive(Debug, Clone, Args)]
pub struct StatusBenchOptions {
    /// Peers in the cluster.
    #[arg(long, default_value_t = 100)]
    pub peers: usize,
    /// NatMapping entries (and IPAM endpoint mappings) per peer.
    #[arg(long, default_value_t = 10)]
    pub mappings_per_peer: usize,
    /// In-process runs (client, fetch, report, table) to time.
    #[arg(long, default_value_t = 200)]
    pub runs: usize,
    /// Runs of the `isthmus status` process to time.
    #[arg(long, default_value_t = 20)]
    pub process_runs: usize,
}

/// The figures of a run.
#[derive(Debug, Clone)]
pub struct StatusBenchReport {
    pub counts: FixtureCounts,
    pub table_bytes: usize,
    pub in_process: LatencySummary,
    /// p50 of each in-process phase (`PHASES`).
    pub phases: [Duration; 4],
    pub process: LatencySummary,
}

fn line(f: &mut fmt::Formatter<'_>, what: &str, s: &LatencySummary) -> fmt::Result {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    writeln!(
        f,
        "{what:<44} n={:<4} p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms",
        s.requests,
        ms(s.p50),
        ms(s.p99),
        ms(s.max)
    )
}

impl fmt::Display for StatusBenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counts;
        writeln!(
            f,
            "bench status: {} peers ({} connected), {} endpoint mappings; table {} bytes",
            c.peers, c.connected, c.endpoint_mappings, self.table_bytes
        )?;
        line(
            f,
            "in process (client, 5 LISTs, report, table)",
            &self.in_process,
        )?;
        let parts: Vec<String> = PHASES
            .iter()
            .zip(self.phases)
            .map(|(name, d)| format!("{name} {:.2} ms", d.as_secs_f64() * 1e3))
            .collect();
        writeln!(f, "  p50 per phase: {}", parts.join(", "))?;
        line(
            f,
            "`isthmus status` process (start included)",
            &self.process,
        )
    }
}

/// Phases of one in-process status, in order.
const PHASES: [&str; 4] = ["client", "5 LISTs", "report", "table"];

/// One in-process status: client, fetch, report, table. Returns the time of each phase and the
/// table.
async fn once(url: &str) -> anyhow::Result<([Duration; 4], String)> {
    let t0 = Instant::now();
    let target = connect(&TargetArgs::server(url)).await?;
    let t1 = Instant::now();
    let fetched = fetch(&target.client, NAMESPACE, &target.server).await?;
    let t2 = Instant::now();
    let source = Source {
        server: target.server.clone(),
        namespace: NAMESPACE.to_owned(),
        now: Timestamp::now(),
    };
    let report = build(&fetched, &source);
    let t3 = Instant::now();
    let table = status::render(&report, Output::Table)?;
    let t4 = Instant::now();
    Ok(([t1 - t0, t2 - t1, t3 - t2, t4 - t3], table))
}

async fn time_process(binary: &PathBuf, url: &str, runs: usize) -> anyhow::Result<Vec<Duration>> {
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        let out = tokio::process::Command::new(binary)
            .args(["status", "--server", url, "-o", "table"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .await
            .with_context(|| format!("starting {}", binary.display()))?;
        samples.push(started.elapsed());
        if !out.status.success() {
            bail!(
                "isthmus status failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    Ok(samples)
}

/// Builds the cluster, checks one report, then times both ways.
pub async fn run(opts: StatusBenchOptions, binary: PathBuf) -> anyhow::Result<StatusBenchReport> {
    let kube = MemKube::new();
    for crd in isthmus_api::all_crds() {
        kube.register_crd(&crd)?;
    }
    kube.create_namespace(NAMESPACE)?;
    let shape = FixtureShape {
        peers: opts.peers,
        mappings_per_peer: opts.mappings_per_peer,
    };
    let counts = status_fixture::populate(&kube.client(), shape, Timestamp::now()).await?;
    let server = kube
        .serve_http(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await?;
    let url = server.url();
    let target = connect(&TargetArgs::server(&url)).await?;
    let report = status::collect(&target, NAMESPACE).await?;
    if report.peers.len() != counts.peers || report.summary.connected != counts.connected {
        bail!(
            "the report does not match the fixture: {}",
            report.summary.text
        );
    }
    let table_bytes = once(&url).await?.1.len();
    let mut samples = Vec::with_capacity(opts.runs);
    let mut phases: [Vec<Duration>; 4] = Default::default();
    let started = Instant::now();
    for _ in 0..opts.runs {
        let (times, _) = once(&url).await?;
        samples.push(times.iter().sum());
        for (all, t) in phases.iter_mut().zip(times) {
            all.push(t);
        }
    }
    let in_process = LatencySummary::from_samples(samples, started.elapsed());
    let phases = phases.map(|p| LatencySummary::from_samples(p, Duration::ZERO).p50);
    let started = Instant::now();
    let samples = time_process(&binary, &url, opts.process_runs).await?;
    let process = LatencySummary::from_samples(samples, started.elapsed());
    server.shutdown().await;
    Ok(StatusBenchReport {
        counts,
        table_bytes,
        in_process,
        phases,
        process,
    })
}
