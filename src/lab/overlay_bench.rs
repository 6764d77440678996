//! `isthmus lab overlay`: what the VXLAN overlay from a worker to the gateway node costs a pod's
//! traffic to a remote pod, against a direct next hop, in one lab and in alternating rounds.
//! Clusters a and b, three nodes each, `--worker-subnet`: on a, `node2` shares the gateway
//! node's L2 (its route agent uses a direct next hop), `node1` sits on another subnet behind the
//! LAN's router (its route agent uses the overlay), and `node0` is the gateway node itself. A
//! pod on each dials the same pod of b: HTTP request-response on a new TCP connection (as the
//! datapath benchmark does) and iperf3 TCP throughput. The overlay path also crosses the router,
//! which the direct path does not: the plain round trip from each worker to the gateway node is
//! printed so that hop can be told apart.

use std::fmt;
use std::time::Duration;

use anyhow::{Context, bail};
use isthmus_dataplane::bench::measure::{self, IperfServer, Latency, Throughput};
use isthmus_dataplane::{Netns, NsRuntime};
use isthmus_lab::PodRecord;

use crate::lab::plan::Shape;
use crate::lab::runner::{Lab, LabOptions};

/// What to measure.
#[derive(Debug, Clone, clap::Args)]
pub struct OverlayBenchOptions {
    /// Rounds; each round measures every path once, in turn.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// HTTP requests per path and round.
    #[arg(long, default_value_t = 200)]
    pub requests: usize,
    /// Seconds of one iperf3 run (one per path and round).
    #[arg(long, default_value_t = 3)]
    pub iperf_seconds: u32,
}

/// One path's figures.
#[derive(Debug, Clone)]
pub struct PathFigures {
    pub label: &'static str,
    pub latency: Latency,
    pub throughput: Throughput,
    /// Plain ICMP round trip from the client's node to the gateway node (none for the gateway
    /// node itself).
    pub node_rtt: Option<Duration>,
}

/// The figures of every path.
#[derive(Debug, Clone)]
pub struct OverlayBenchReport {
    pub paths: Vec<PathFigures>,
    pub options: OverlayBenchOptions,
}

/// The lab: a and b, a gateway node and two workers each, odd workers on their own subnet.
pub fn lab_options() -> LabOptions {
    LabOptions {
        clusters: 2,
        shape: Shape::Mesh,
        workers: 2,
        worker_subnet: true,
        ..LabOptions::default()
    }
}

/// Runs it on a fresh lab and removes the lab.
pub async fn run(options: OverlayBenchOptions) -> anyhow::Result<OverlayBenchReport> {
    let (lab, matrix) = Lab::up(lab_options()).await?;
    if !matrix.all_reachable() {
        lab.shutdown().await;
        bail!(
            "the lab did not reach full connectivity:\n{}",
            matrix.render_list()
        );
    }
    let result = measure_lab(&lab, options).await;
    lab.shutdown().await;
    result
}

/// The pod of cluster `cluster` on node `node`.
fn pod_on(lab: &Lab, cluster: usize, node: &str) -> anyhow::Result<PodRecord> {
    lab.pods(cluster)
        .iter()
        .find(|p| p.node == node)
        .cloned()
        .with_context(|| format!("no pod on {node}"))
}

async fn measure_lab(
    lab: &Lab,
    options: OverlayBenchOptions,
) -> anyhow::Result<OverlayBenchReport> {
    let server = pod_on(lab, 1, "node0")?;
    let dst = lab
        .reflections
        .iter()
        .find(|r| r.from == 0 && r.to == 1 && r.pod == server.name)
        .context("b's pod is not exposed to a")?
        .address();
    let paths = [
        ("gateway node's pod (no hop)", "node0"),
        ("worker on the gateway node's L2: direct next hop", "node2"),
        (
            "worker on another subnet: VXLAN overlay (+ a routed hop)",
            "node1",
        ),
    ];
    let cluster = &lab.topology.clusters[0];
    let gateway_ip = cluster.gateway().ip;
    let mut clients = Vec::new();
    for (label, node) in paths {
        let pod = pod_on(lab, 0, node)?;
        let node_ns = cluster
            .nodes
            .iter()
            .find(|n| n.name == node)
            .map(|n| n.namespace.clone())
            .context("node")?;
        clients.push((label, node, pod, node_ns));
    }
    let options2 = options.clone();
    tokio::task::spawn_blocking(move || {
        let server_rt = NsRuntime::new(Netns::Named(server.namespace.clone()), 2)?;
        measure::start_http_server(&server_rt)?;
        let _iperf = IperfServer::start(&server_rt)?;
        let mut latency: Vec<Vec<f64>> = vec![Vec::new(); clients.len()];
        let mut throughput: Vec<Vec<f64>> = vec![Vec::new(); clients.len()];
        let runtimes = clients
            .iter()
            .map(|(.., pod, _)| NsRuntime::new(Netns::Named(pod.namespace.clone()), 2))
            .collect::<Result<Vec<_>, _>>()?;
        for _ in 0..options2.rounds {
            for (i, rt) in runtimes.iter().enumerate() {
                latency[i].extend(measure::http_samples(rt, dst, options2.requests)?);
                throughput[i].push(measure::iperf_once(rt, dst, options2.iperf_seconds)?);
            }
        }
        let mut out = Vec::new();
        for (i, (label, node, _, node_ns)) in clients.iter().enumerate() {
            let node_rtt = if *node == "node0" {
                None
            } else {
                isthmus_lab::probe::ping_rtt(
                    node_ns.as_str(),
                    gateway_ip,
                    20,
                    Duration::from_secs(1),
                )?
            };
            out.push(PathFigures {
                label,
                latency: Latency::from_samples(std::mem::take(&mut latency[i])),
                throughput: Throughput::from_runs(std::mem::take(&mut throughput[i])),
                node_rtt,
            });
        }
        anyhow::Ok(out)
    })
    .await?
    .map(|paths| OverlayBenchReport { paths, options })
}

impl fmt::Display for OverlayBenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.options;
        writeln!(
            f,
            "overlay vs direct next hop, a's pods → b's pod on b's gateway node ({} rounds \
             alternating the paths; per round {} HTTP request-responses on new TCP connections \
             and one {} s iperf3 run per path)",
            o.rounds, o.requests, o.iperf_seconds
        )?;
        writeln!(
            f,
            "  {:<58} {:>9} {:>9} {:>12} {:>14}",
            "path", "RR p50", "RR p99", "TCP Mbit/s", "node → gw RTT"
        )?;
        for p in &self.paths {
            let rtt = p.node_rtt.map_or("-".to_owned(), |d| {
                format!("{:.3} ms", d.as_secs_f64() * 1e3)
            });
            writeln!(
                f,
                "  {:<58} {:>6.0} µs {:>6.0} µs {:>12.0} {:>14}",
                p.label, p.latency.p50_us, p.latency.p99_us, p.throughput.trimmed_mean_mbps, rtt
            )?;
        }
        if let [_, direct, overlay] = self.paths.as_slice() {
            let added = overlay.latency.p50_us - direct.latency.p50_us;
            let loss =
                1.0 - overlay.throughput.trimmed_mean_mbps / direct.throughput.trimmed_mean_mbps;
            writeln!(
                f,
                "  overlay − direct: RR p50 {added:+.0} µs, throughput {:+.1} % (targets ≤ +100 µs, ≥ −10 %)",
                -loss * 100.0
            )?;
        }
        Ok(())
    }
}
