//! `isthmus lab bench`: the figures of the lab, measured on a fresh hub lab (a, b, c) whose
//! daemons run as processes with the chart's flags against their clusters' APIs: bring-up times
//! (`isthmus peer` → both tunnels connected, first packet, lab up → full connectivity); every
//! daemon's resident memory once idle; the reference thesis's B1 in Kubernetes mode (M clients ×
//! N `MapEndpointIP` calls to the hub's network-manager, whose IPAM state lives in `IpamStorage`
//! objects); and its B2: a `MapEndpointIP` reply at the hub → the DNAT entry carrying packets in
//! the kernel (p50 and p99 over N sequential mappings, each proven by an echo reply through both
//! tunnels), and M mappings created at once → all present in the kernel's DNAT map. A write
//! latency can be given to every memkube, to predict a real API server (etcd's fsync).

use std::fmt;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;

use crate::grpc::pb::{MapRequest, UnmapRequest};
use crate::lab::bench_hops::{
    NatWatch, histogram, histogram_totals, mean_between, quantile_between, reconcile_totals,
};
use crate::lab::cluster::NAMESPACE;
use crate::lab::plan::Shape;
use crate::lab::runner::{Lab, LabOptions};
use crate::lab::state::Timings;

/// What to measure.
#[derive(Debug, Clone, clap::Args)]
pub struct LabBenchOptions {
    /// Sequential mappings timed one by one (B2 p50/p99).
    #[arg(long, default_value_t = 1000)]
    pub mappings: usize,
    /// Mappings created at once for the bulk figure.
    #[arg(long, default_value_t = 10_000)]
    pub bulk: usize,
    /// Latency added to every write of every cluster's memkube after bring-up, in milliseconds
    /// (about 3 ms is what etcd's fsync costs a real API server on this kind of machine).
    #[arg(long, default_value_t = 0.0)]
    pub api_write_latency_ms: f64,
    /// B1 points, `CLIENTSxREQUESTS` separated by commas (empty: none).
    #[arg(long, default_value = "5x100,5x200,64x200", value_parser = parse_b1_points)]
    pub b1: B1Points,
}

/// The B1 points to run: (clients, requests per client), checked before the lab starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct B1Points(pub Vec<(usize, usize)>);

/// `5x100,64x200` → [(5, 100), (64, 200)]; the empty string is no point at all.
pub fn parse_b1_points(text: &str) -> Result<B1Points, String> {
    let mut points = Vec::new();
    for point in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let parsed = point
            .split_once('x')
            .and_then(|(c, r)| Some((c.parse::<usize>().ok()?, r.parse::<usize>().ok()?)));
        match parsed {
            Some((clients, requests)) if clients > 0 && requests > 0 => {
                points.push((clients, requests))
            }
            _ => {
                return Err(format!(
                    "`{point}`: expected CLIENTSxREQUESTS with both above zero, e.g. 5x100"
                ));
            }
        }
    }
    Ok(B1Points(points))
}

/// The figures.
#[derive(Debug, Clone)]
pub struct LabBenchReport {
    pub timings: Timings,
    /// Echo round trip a → c through the hub on an established mapping (the floor of B2).
    pub path_rtt: Option<Duration>,
    /// Map reply → first echo reply through the new DNAT entry, sorted.
    pub activation: Vec<Duration>,
    pub bulk: usize,
    /// All bulk `MapEndpointIP` replies received.
    pub bulk_acked: Duration,
    /// First bulk request → every entry in the kernel's map.
    pub bulk_active: Duration,
    /// The hub network-manager's own time per bulk `MapEndpointIP` (its handler: the IPAM and
    /// the wait for the commit; not the token check or the transport), mean, from its metrics.
    pub bulk_server_mean: Option<Duration>,
    /// Each pod's resident memory once the lab is idle: label, component, KiB.
    pub idle_rss: Vec<(String, String, u64)>,
    /// B1 points: (clients, requests per client, report).
    pub b1: Vec<(usize, usize, crate::bench::ipam::IpamBenchReport)>,
    /// The write latency given to the APIs.
    pub api_write_latency: Duration,
    /// B2's sequential mappings hop by hop.
    pub hops: Hops,
}

/// B2 hop by hop (`bench_hops`).
#[derive(Debug, Clone, Default)]
pub struct Hops {
    /// Reply → the entry seen in b's API by a watch, sorted (zero when seen before the reply).
    pub to_api: Vec<Duration>,
    /// Entry seen in the API → first echo answered through it, sorted.
    pub to_packets: Vec<Duration>,
    /// Mappings whose entry the watch never saw.
    pub unseen: usize,
    /// The network-manager's NatMapping publisher: mean per run, runs.
    pub publisher: Option<(Duration, u64)>,
    /// The gateway's NAT fast path (watch deltas → nft): mean per run, runs.
    pub gateway_nat: Option<(Duration, u64)>,
    /// The gateway's own NatMapping lag (its watch event → elements in the kernel), upper
    /// bounds of p50, p90 and p99 from its histogram's buckets.
    pub gateway_lag: Option<[Duration; 3]>,
}

impl fmt::Display for Hops {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dist = |d: &[Duration]| {
            if d.is_empty() {
                return "none seen".to_owned();
            }
            format!(
                "p50 {}  p90 {}  p99 {}",
                ms(pct(d, 0.5)),
                ms(pct(d, 0.9)),
                ms(pct(d, 0.99))
            )
        };
        let mean = |m: Option<(Duration, u64)>| {
            m.map_or("not scraped".to_owned(), |(d, n)| {
                format!("{} over {n} runs", ms(d))
            })
        };
        writeln!(f, "B2 hop by hop (the same mappings)")?;
        writeln!(
            f,
            "  reply → entry seen in b's API by a watch   {}",
            dist(&self.to_api)
        )?;
        writeln!(
            f,
            "  entry seen → packets carried               {}",
            dist(&self.to_packets)
        )?;
        if self.unseen > 0 {
            writeln!(f, "  ({} entries never seen by the watch)", self.unseen)?;
        }
        writeln!(
            f,
            "  network-manager NatMapping publish, mean   {}",
            mean(self.publisher)
        )?;
        writeln!(
            f,
            "  gateway NAT fast path, mean               {}",
            mean(self.gateway_nat)
        )?;
        let bound = |d: Duration| match d {
            Duration::MAX => "> last bucket".to_owned(),
            d => format!("≤ {}", ms(d)),
        };
        match self.gateway_lag {
            Some([p50, p90, p99]) => writeln!(
                f,
                "  gateway: its watch event → in the kernel  p50 {}  p90 {}  p99 {} (buckets)",
                bound(p50),
                bound(p90),
                bound(p99)
            ),
            None => writeln!(f, "  gateway: its watch event → in the kernel  not scraped"),
        }
    }
}

/// The gateway's histogram of NatMapping changes seen by its watch → in the kernel.
const LAG: &str = "isthmus_nat_mapping_lag_seconds";

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

impl fmt::Display for LabBenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.timings;
        let opt = |d: Option<Duration>| d.map_or("-".to_owned(), ms);
        writeln!(f, "lab bring-up (3 clusters, hub b, identical Pod CIDRs)")?;
        writeln!(f, "  namespaces built                  {}", ms(t.topology))?;
        writeln!(
            f,
            "  clusters (API, chart, pods)       {}",
            ms(t.components)
        )?;
        writeln!(
            f,
            "  isthmus peer a b → both connected {}",
            opt(t.peer_command)
        )?;
        writeln!(
            f,
            "  isthmus peer → first packet       {}",
            opt(t.first_packet)
        )?;
        writeln!(f, "  every pair peered and connected   {}", ms(t.peered))?;
        writeln!(
            f,
            "  lab up → full connectivity        {}",
            opt(t.full_connectivity)
        )?;
        writeln!(
            f,
            "B2: MapEndpointIP reply at b → DNAT entry carrying a → c echo ({} mappings)",
            self.activation.len()
        )?;
        writeln!(
            f,
            "  p50 {}  p90 {}  p99 {}  max {}",
            ms(pct(&self.activation, 0.5)),
            ms(pct(&self.activation, 0.9)),
            ms(pct(&self.activation, 0.99)),
            ms(pct(&self.activation, 1.0))
        )?;
        writeln!(
            f,
            "  (includes one echo round trip a → b → c and back: {})",
            opt(self.path_rtt)
        )?;
        write!(f, "{}", self.hops)?;
        writeln!(f, "idle resident memory (VmRSS)")?;
        for (pod, _, kib) in &self.idle_rss {
            writeln!(f, "  {pod:<32} {:.1} MiB", *kib as f64 / 1024.0)?;
        }
        writeln!(
            f,
            "API write latency added: {} ms",
            self.api_write_latency.as_secs_f64() * 1e3
        )?;
        for (clients, requests, report) in &self.b1 {
            writeln!(
                f,
                "B1 (Kubernetes mode, hub b for peer a): {clients} clients × {requests} requests"
            )?;
            writeln!(f, "  {}", report.to_string().replace('\n', "\n  "))?;
        }
        writeln!(f, "B2 bulk: {} mappings at once", self.bulk)?;
        writeln!(
            f,
            "  all MapEndpointIP replies         {}",
            ms(self.bulk_acked)
        )?;
        writeln!(
            f,
            "  all entries in b's kernel map     {}",
            ms(self.bulk_active)
        )?;
        if let Some(mean) = self.bulk_server_mean {
            let client_mean =
                self.bulk_acked.as_secs_f64() * BULK_CONCURRENCY as f64 / self.bulk.max(1) as f64;
            writeln!(
                f,
                "  per request, mean: {} in the network-manager's handler (IPAM, commit), \
                 ~{:.2} ms as the client saw it ({BULK_CONCURRENCY} in flight)",
                ms(mean),
                client_mean * 1e3
            )?;
        }
        Ok(())
    }
}

/// Brings up a hub lab, measures, removes it.
pub async fn run(options: LabBenchOptions) -> anyhow::Result<LabBenchReport> {
    let (mut lab, matrix) = Lab::up(LabOptions {
        clusters: 3,
        shape: Shape::Hub,
        ..LabOptions::default()
    })
    .await?;
    if !matrix.all_reachable() {
        lab.shutdown().await;
        bail!(
            "the lab did not reach full connectivity:\n{}",
            matrix.render_list()
        );
    }
    let result = measure(&mut lab, &options).await;
    lab.shutdown().await;
    result
}

/// Every pod's VmRSS in KiB, after the lab has been idle for a while.
async fn idle_rss(lab: &Lab) -> Vec<(String, String, u64)> {
    tokio::time::sleep(Duration::from_secs(15)).await;
    let mut out = Vec::new();
    for cluster in &lab.clusters {
        for (label, component, pid) in cluster.pids() {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let kib = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0);
            out.push((label, component, kib));
        }
    }
    out
}

/// The B1 points against the hub's IPAM, for peer a.
async fn b1(
    lab: &Lab,
    points: &B1Points,
) -> anyhow::Result<Vec<(usize, usize, crate::bench::ipam::IpamBenchReport)>> {
    let mut out = Vec::new();
    for (k, &(clients, requests)) in points.0.iter().enumerate() {
        let options = crate::bench::ipam::IpamBenchOptions {
            target: lab.clusters[1].grpc.to_string(),
            cluster_id: lab.clusters[0].site.id.to_string(),
            clients,
            connections: clients,
            requests,
            pod_cidr: lab.clusters[1].site.pod_cidr,
            // a fresh range for every point: each maps new endpoints
            endpoint_base: Ipv4Addr::new(100, 96 + k as u8, 0, 0),
            token: lab.clusters[1].ipam_token(),
        };
        out.push((clients, requests, crate::bench::ipam::run(options).await?));
    }
    Ok(out)
}

async fn measure(lab: &mut Lab, options: &LabBenchOptions) -> anyhow::Result<LabBenchReport> {
    let idle_rss = idle_rss(lab).await;
    let api_write_latency = Duration::from_secs_f64(options.api_write_latency_ms.max(0.0) / 1e3);
    for cluster in &lab.clusters {
        if let Some(kube) = cluster.api.memkube_instance() {
            kube.faults().set_write_latency(api_write_latency);
        }
    }
    let b1 = b1(lab, &options.b1).await?;
    // Withdraw the reflection of c's first pod into a: the bench maps it again and again.
    let c_pod = lab.pods(2)[0].name.clone();
    let r = lab
        .reflections
        .iter()
        .find(|r| r.from == 0 && r.to == 2 && r.pod == c_pod)
        .cloned()
        .context("no reflection of c's pod into a")?;
    let hub_step = r
        .steps
        .last()
        .context("hub reflection without steps")?
        .clone();
    let path_rtt = ping_until(lab, r.address(), Duration::from_secs(2)).await?;
    lab.reflector.unreflect(&r).await?;
    lab.reflections.retain(|x| x != &r);
    let channel =
        tonic::transport::Channel::from_shared(format!("http://{}", lab.clusters[1].grpc))?
            .connect()
            .await?;
    let mut client = lab.clusters[1].ipam_token().client(channel);
    let a = lab.clusters[0].site.id.to_string();
    let mut activation = Vec::with_capacity(options.mappings);
    let watch = NatWatch::start(lab.clusters[1].client(), NAMESPACE).await;
    let metrics = |component: &str| lab.clusters[1].metrics.get(component).copied();
    let (nm_metrics, gw_metrics) = (metrics("network-manager"), metrics("gateway"));
    let totals = |addr: Option<std::net::SocketAddr>, controller: &'static str| async move {
        match addr {
            Some(addr) => reconcile_totals(addr, controller).await.ok(),
            None => None,
        }
    };
    let nm_before = totals(nm_metrics, "nat-mappings").await;
    let gw_before = totals(gw_metrics, "gateway-nat").await;
    let lag = |addr: Option<std::net::SocketAddr>| async move { histogram(addr?, LAG).await.ok() };
    let lag_before = lag(gw_metrics).await;
    let mut hops = Hops::default();
    for _ in 0..options.mappings {
        let sent = Instant::now();
        let reply = client
            .map_endpoint_ip(MapRequest {
                cluster_id: a.clone(),
                ip: hub_step.ip.to_string(),
            })
            .await?;
        let acked = Instant::now();
        let address: Ipv4Addr = reply.into_inner().ip.parse()?;
        let answered = first_answer(lab, address, Duration::from_secs(5))
            .await?
            .with_context(|| format!("{address} never answered"))?;
        let carried = answered.saturating_duration_since(acked);
        activation.push(carried);
        match watch.seen_after(address, sent) {
            Some(seen) => {
                let to_api = seen.saturating_duration_since(acked);
                hops.to_api.push(to_api);
                hops.to_packets.push(carried.saturating_sub(to_api));
            }
            None => hops.unseen += 1,
        }
        client
            .unmap_endpoint_ip(UnmapRequest {
                cluster_id: a.clone(),
                ip: hub_step.ip.to_string(),
            })
            .await?;
    }
    activation.sort();
    drop(watch);
    let between = |before: Option<(f64, f64)>, after: Option<(f64, f64)>| {
        before.zip(after).and_then(|(b, a)| mean_between(b, a))
    };
    hops.publisher = between(nm_before, totals(nm_metrics, "nat-mappings").await);
    hops.gateway_nat = between(gw_before, totals(gw_metrics, "gateway-nat").await);
    if let (Some(before), Some(after)) = (lag_before, lag(gw_metrics).await) {
        let q = |q| quantile_between(&before, &after, q).unwrap_or(Duration::MAX);
        hops.gateway_lag = Some([q(0.5), q(0.9), q(0.99)]);
    }
    hops.to_api.sort();
    hops.to_packets.sort();
    const GRPC: &str = "isthmus_grpc_request_duration_seconds";
    const MAP_OK: &str = "method=\"MapEndpointIP\",code=\"OK\"";
    let map_totals = || async move { histogram_totals(nm_metrics?, GRPC, MAP_OK).await.ok() };
    let map_before = map_totals().await;
    let (bulk_acked, bulk_active) = bulk(lab, options.bulk).await?;
    let bulk_server_mean = between(map_before, map_totals().await).map(|(mean, _)| mean);
    Ok(LabBenchReport {
        timings: lab.timings.clone(),
        path_rtt,
        activation,
        bulk: options.bulk,
        bulk_acked,
        bulk_active,
        bulk_server_mean,
        idle_rss,
        b1,
        api_write_latency,
        hops,
    })
}

/// An echo request from a's first pod to `address` every 200 µs, each a new flow, until any is
/// answered: when the first answer arrived (`None` after `timeout`).
async fn first_answer(
    lab: &Lab,
    address: Ipv4Addr,
    timeout: Duration,
) -> anyhow::Result<Option<Instant>> {
    let src = lab.pods(0)[0].clone();
    let every = Duration::from_micros(200);
    Ok(tokio::task::spawn_blocking(move || {
        isthmus_lab::probe::first_answer(&src, address, every, timeout)
    })
    .await??)
}

/// Echo requests from a's first pod to `address`, 1 ms apart, until one is answered; the
/// round-trip time of the answered one, `None` after `timeout`.
async fn ping_until(
    lab: &Lab,
    address: Ipv4Addr,
    timeout: Duration,
) -> anyhow::Result<Option<Duration>> {
    let src = lab.pods(0)[0].clone();
    Ok(tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(rtt) =
                isthmus_lab::probe::ping_rtt(&src, address, 1, Duration::from_millis(1))?
            {
                return Ok::<_, isthmus_lab::Error>(Some(rtt));
            }
        }
        Ok(None)
    })
    .await??)
}

/// Bulk requests in flight at once.
const BULK_CONCURRENCY: usize = 64;

/// Maps `count` endpoints (in b's view of c's Pod CIDR, where no pod lives) for a at once; the time until every
/// reply came, and until b's kernel DNAT map for a holds them all.
async fn bulk(lab: &Lab, count: usize) -> anyhow::Result<(Duration, Duration)> {
    let b_c = lab.tunnel_endpoint(1, 2).await?;
    let view: ipnet::Ipv4Net = b_c.spec.remote_nat_pod_cidr.to_string().parse()?;
    // Endpoints from the upper half of the view: no lab pod lives there (a pod already
    // reflected would share its existing address and not add an entry).
    let first = view.hosts().count() / 2;
    if first + count >= view.hosts().count() {
        bail!("{count} mappings do not fit the upper half of {view}");
    }
    let a = lab.clusters[0].site.id.to_string();
    let channel =
        tonic::transport::Channel::from_shared(format!("http://{}", lab.clusters[1].grpc))?
            .connect()
            .await?;
    let gw = lab.topology.clusters[1].gateway().namespace.clone();
    let targets = (
        Ipv4Addr::from(u32::from(view.network()) + first as u32),
        Ipv4Addr::from(u32::from(view.network()) + (first + count - 1) as u32),
    );
    let started = Instant::now();
    let requests = (0..count).map(|k| {
        let mut client = lab.clusters[1].ipam_token().client(channel.clone());
        let ip = Ipv4Addr::from(u32::from(view.network()) + (first + k) as u32);
        let a = a.clone();
        async move {
            client
                .map_endpoint_ip(MapRequest {
                    cluster_id: a,
                    ip: ip.to_string(),
                })
                .await
        }
    });
    let replies: Vec<_> = futures::stream::iter(requests)
        .buffer_unordered(BULK_CONCURRENCY)
        .collect()
        .await;
    let acked = started.elapsed();
    if let Some(err) = replies.into_iter().find_map(Result::err) {
        bail!("bulk MapEndpointIP failed: {err}");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = kernel_entries(&gw, "a", targets).await?;
        if now >= count {
            return Ok((acked, started.elapsed()));
        }
        if Instant::now() > deadline {
            bail!("after 60 s b's DNAT map for a holds {now} of the {count} entries");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Entries of our DNAT map for packets from `peer` in namespace `ns` whose target lies in
/// the inclusive range `targets` (read with `nft -j`).
async fn kernel_entries(
    ns: &str,
    peer: &str,
    targets: (Ipv4Addr, Ipv4Addr),
) -> anyhow::Result<usize> {
    let map = format!("dnat_{peer}");
    let out = tokio::process::Command::new("ip")
        .args([
            "netns", "exec", ns, "nft", "-j", "list", "map", "inet", "isthmus", &map,
        ])
        .output()
        .await?;
    if !out.status.success() {
        return Ok(0);
    }
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let (lo, hi) = (u32::from(targets.0), u32::from(targets.1));
    let len = json["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| item.get("map"))
        .filter_map(|map| map.get("elem").and_then(|e| e.as_array()))
        .flatten()
        .filter_map(|pair| pair.get(1)?.as_str()?.parse::<Ipv4Addr>().ok())
        .filter(|target| (lo..=hi).contains(&u32::from(*target)))
        .count();
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(argv: &[&str]) -> Result<LabBenchOptions, clap::Error> {
        crate::cli::parse_flags(argv)
    }

    #[test]
    fn b1_points_are_checked_before_anything_starts_and_empty_means_none() {
        let default = parse(&[]).unwrap().b1;
        assert_eq!(default, B1Points(vec![(5, 100), (5, 200), (64, 200)]));
        assert_eq!(parse(&["--b1", ""]).unwrap().b1, B1Points(vec![]));
        assert_eq!(
            parse(&["--b1", "2x3, 4x5"]).unwrap().b1,
            B1Points(vec![(2, 3), (4, 5)])
        );
        for bad in ["5x", "x5", "0x10", "5x0", "five"] {
            let err = parse(&["--b1", bad]).unwrap_err().to_string();
            assert!(err.contains("expected CLIENTSxREQUESTS"), "{bad}: {err}");
        }
    }
}
