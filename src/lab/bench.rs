//! `isthmus lab bench`: the peering figures of the lab, measured on a fresh hub lab (a, b, c):
//! bring-up times (ForeignClusters → first packet, lab up → full connectivity), and the reference thesis's
//! B2: a `MapEndpointIP` reply at the hub → the DNAT entry carrying packets in the kernel (p50 and
//! p99 over N sequential mappings, each proven by an echo reply through both tunnels), and M
//! mappings created at once → all present in the kernel's DNAT map.

use std::fmt;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;

use crate::grpc::pb::ipam_client::IpamClient;
use crate::grpc::pb::{MapRequest, UnmapRequest};
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
}

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
            "  ForeignClusters → first packet    {}",
            opt(t.first_packet)
        )?;
        writeln!(f, "  ForeignClusters → all connected   {}", ms(t.peered))?;
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
        )
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

async fn measure(lab: &mut Lab, options: &LabBenchOptions) -> anyhow::Result<LabBenchReport> {
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
    let mut client = IpamClient::connect(format!("http://{}", lab.clusters[1].grpc)).await?;
    let a = lab.clusters[0].site.id.to_string();
    let mut activation = Vec::with_capacity(options.mappings);
    for _ in 0..options.mappings {
        let reply = client
            .map_endpoint_ip(MapRequest {
                cluster_id: a.clone(),
                ip: hub_step.ip.to_string(),
            })
            .await?;
        let acked = Instant::now();
        let address: Ipv4Addr = reply.into_inner().ip.parse()?;
        ping_until(lab, address, Duration::from_secs(5))
            .await?
            .with_context(|| format!("{address} never answered"))?;
        activation.push(acked.elapsed());
        client
            .unmap_endpoint_ip(UnmapRequest {
                cluster_id: a.clone(),
                ip: hub_step.ip.to_string(),
            })
            .await?;
    }
    activation.sort();
    let (bulk_acked, bulk_active) = bulk(lab, options.bulk).await?;
    Ok(LabBenchReport {
        timings: lab.timings.clone(),
        path_rtt,
        activation,
        bulk: options.bulk,
        bulk_acked,
        bulk_active,
    })
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
        let mut client = IpamClient::new(channel.clone());
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
        .buffer_unordered(64)
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
