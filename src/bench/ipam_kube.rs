//! `isthmus bench ipam-kube`: the durable IPAM over `IpamStorage` objects (`KubeStore`) in an
//! in-process memkube, optionally with a latency added before every write (what etcd's fsync
//! costs a real API server, ~2-3 ms): N `MapEndpointIP`-equivalent calls from 64 concurrent
//! tasks, the time of every thousand, the largest object stored, and the time to recover the
//! state (a restart's `DurableIpam::open`).

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use futures::StreamExt;
use isthmus_api::IpamStorage;
use isthmus_ipam::{Cidr, ClusterId, IpamConfig, default_pools};
use isthmus_ipam_store::{DurableIpam, KubeStore};
use isthmus_memkube::MemKube;
use kube::Api;

/// What to run.
#[derive(Debug, Clone, clap::Args)]
pub struct KubeBenchOptions {
    /// Endpoint mappings to create, all for one peer.
    #[arg(long, default_value_t = 10_000)]
    pub mappings: u32,
    /// Latency added before every write, in milliseconds.
    #[arg(long, default_value_t = 0.0)]
    pub write_latency_ms: f64,
    /// Concurrent callers.
    #[arg(long, default_value_t = 64)]
    pub clients: u32,
    /// Instead: fill the mappings into a memkube served over HTTPS, then start the real
    /// network-manager on them (time to its first answer, its RSS).
    #[arg(long)]
    pub restart: bool,
}

/// The figures of a run.
#[derive(Debug, Clone)]
pub struct KubeBenchReport {
    pub options: KubeBenchOptions,
    pub total: Duration,
    /// Time of each thousand mappings, in order.
    pub per_thousand: Vec<Duration>,
    pub objects: usize,
    pub largest_object: (String, usize),
    pub recovery: Duration,
}

impl std::fmt::Display for KubeBenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let o = &self.options;
        let ms = |d: &Duration| d.as_secs_f64() * 1e3;
        writeln!(
            f,
            "bench ipam-kube: {} mappings, {} clients, write latency {} ms",
            o.mappings, o.clients, o.write_latency_ms
        )?;
        writeln!(
            f,
            "  all replied (durable)        {:.3} s",
            self.total.as_secs_f64()
        )?;
        let first = self.per_thousand.first().map_or(0.0, ms);
        let last = self.per_thousand.last().map_or(0.0, ms);
        let mut sorted = self.per_thousand.clone();
        sorted.sort();
        let median = sorted.get(sorted.len() / 2).map_or(0.0, ms);
        writeln!(
            f,
            "  per 1,000: first {first:.1} ms, median {median:.1} ms, last {last:.1} ms"
        )?;
        writeln!(f, "  objects stored               {}", self.objects)?;
        writeln!(
            f,
            "  largest object               {} ({} bytes as JSON)",
            self.largest_object.0, self.largest_object.1
        )?;
        write!(
            f,
            "  recovery (open on the state) {:.3} s",
            self.recovery.as_secs_f64()
        )
    }
}

pub(super) fn config() -> anyhow::Result<IpamConfig> {
    Ok(IpamConfig {
        pod_cidr: "10.0.0.0/16".parse()?,
        service_cidr: None,
        external_cidr: Some("10.128.0.0/12".parse()?),
        pools: default_pools(),
        reserved: vec![],
    })
}

/// Peers the bench peer, then maps `options.mappings` endpoints for it from `options.clients`
/// concurrent callers; returns the time of all and of each thousand.
pub(super) async fn fill(
    ipam: &DurableIpam,
    options: &KubeBenchOptions,
) -> anyhow::Result<(Duration, Vec<Duration>)> {
    let peer: ClusterId = "bench-peer".parse()?;
    let (pod, ext): (Cidr, Cidr) = ("10.0.0.0/16".parse()?, "10.2.0.0/16".parse()?);
    ipam.upsert_peer(&peer, pod, ext).await?;
    // the peer addresses us as-is
    ipam.set_peer_view(&peer, None, None).await?;
    let started = Instant::now();
    let mut per_thousand = Vec::new();
    let mut chunk = Instant::now();
    let calls = (0..options.mappings).map(|i| {
        let (ipam, peer) = (ipam.clone(), peer.clone());
        async move {
            let ep = Ipv4Addr::from(u32::from(Ipv4Addr::new(100, 64, 0, 0)) + i);
            ipam.map_endpoint_ip(&peer, ep).await
        }
    });
    let mut replies = futures::stream::iter(calls).buffer_unordered(options.clients as usize);
    let mut done = 0u32;
    while let Some(reply) = replies.next().await {
        reply?;
        done += 1;
        if done.is_multiple_of(1000) {
            per_thousand.push(chunk.elapsed());
            chunk = Instant::now();
        }
    }
    Ok((started.elapsed(), per_thousand))
}

/// Every `IpamStorage` object in namespace `isthmus`.
pub(super) async fn stored_objects(client: &kube::Client) -> anyhow::Result<Vec<IpamStorage>> {
    let api: Api<IpamStorage> = Api::namespaced(client.clone(), "isthmus");
    Ok(api.list(&Default::default()).await?.items)
}

/// Runs the benchmark.
pub async fn run(options: KubeBenchOptions) -> anyhow::Result<KubeBenchReport> {
    let kube = MemKube::new();
    for crd in isthmus_api::all_crds() {
        kube.register_crd(&crd)?;
    }
    kube.create_namespace("isthmus")?;
    // memkube's fault injection: every write waits as etcd's fsync makes a real one wait
    kube.faults()
        .set_write_latency(Duration::from_secs_f64(options.write_latency_ms / 1e3));
    let client = kube.client();
    let store = KubeStore::new(client.clone(), "isthmus", "ipam");
    let ipam = DurableIpam::open(&config()?, store).await?;
    let (total, per_thousand) = fill(&ipam, &options).await?;
    // the restart below must not race a compaction still being written
    ipam.close().await;
    let objects = stored_objects(&client).await?;
    let largest = objects
        .iter()
        .map(|o| {
            (
                o.metadata.name.clone().unwrap_or_default(),
                serde_json::to_vec(o).map_or(0, |v| v.len()),
            )
        })
        .max_by_key(|(_, n)| *n)
        .unwrap_or_default();
    let opened = Instant::now();
    let again = DurableIpam::open(&config()?, KubeStore::new(client, "isthmus", "ipam")).await?;
    let recovery = opened.elapsed();
    anyhow::ensure!(
        again.read(|i| i.endpoint_count())? == options.mappings as usize,
        "the recovered state does not hold every mapping"
    );
    Ok(KubeBenchReport {
        options,
        total,
        per_thousand,
        objects: objects.len(),
        largest_object: largest,
        recovery,
    })
}
