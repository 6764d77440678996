//! `isthmus bench nat-shards`: what publishing NatMappings costs per batch as the state grows.
//! A network-manager runs against an in-process memkube with one peer (its ForeignCluster
//! live, its networks decided directly in the IPAM); the bench maps endpoints to it in batches
//! and, per batch, times the mappings and the lag until the last one is published, and counts
//! the NatMapping writes (watch events) and their bytes. The older layout rewrote the peer's
//! one object whole per batch; its size at each state is shown next to the figures.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use isthmus_api::{ForeignCluster, ForeignClusterSpec, NatMapping, NatMappingSpec};
use isthmus_ipam::{ClusterId, IpamConfig, default_pools};
use isthmus_ipam_store::{DurableIpam, FileStore};
use isthmus_memkube::MemKube;
use isthmus_network_manager::{LabPeers, LocalGateway, NetworkManagerConfig};
use kube::Api;
use kube::api::PostParams;
use kube::runtime::watcher::{self, Event};
use tokio::sync::mpsc;

const NS: &str = "isthmus";

/// What to run.
#[derive(Debug, Clone, clap::Args)]
pub struct NatShardsBenchOptions {
    /// Mappings in the state at the end, all for one peer.
    #[arg(long, default_value_t = 100_000)]
    pub mappings: u32,
    /// Mappings per measured batch.
    #[arg(long, default_value_t = 1_000)]
    pub batch: u32,
    /// Concurrent callers.
    #[arg(long, default_value_t = 64)]
    pub clients: u32,
    /// Latency added to every write of the memkube, in milliseconds (about 3 ms is what etcd's
    /// fsync costs a real API server on this kind of machine).
    #[arg(long, default_value_t = 0.0)]
    pub write_latency_ms: f64,
}

/// One measured batch.
#[derive(Debug, Clone)]
pub struct BatchFigures {
    pub state_before: u32,
    pub map: Duration,
    pub publish_lag: Duration,
    pub writes: usize,
    pub bytes: usize,
    pub older_layout_bytes: usize,
}

/// Runs the bench; returns one line per state size `1k, 10k, 50k, 100k` reached (and the last).
pub async fn run(o: NatShardsBenchOptions) -> anyhow::Result<Vec<BatchFigures>> {
    let kube = MemKube::new();
    for crd in isthmus_api::all_crds() {
        kube.register_crd(&crd)?;
    }
    kube.create_namespace(NS)?;
    let client = kube.client();
    let dir = tempfile::tempdir()?;
    let config = IpamConfig {
        pod_cidr: "10.0.0.0/12".parse()?,
        service_cidr: None,
        external_cidr: None,
        pools: default_pools(),
        reserved: vec![],
    };
    let ipam = DurableIpam::open(&config, FileStore::open(dir.path())?).await?;
    let peer: ClusterId = "peer-b".parse()?;
    ipam.upsert_peer(&peer, "172.16.0.0/16".parse()?, "172.17.0.0/16".parse()?)
        .await?;
    ipam.set_peer_view(&peer, None, None).await?;
    let fc = ForeignCluster::new(
        peer.as_str(),
        ForeignClusterSpec {
            cluster_id: peer.clone(),
            kubeconfig_secret_ref: None,
            lab_cluster: Some(peer.to_string()),
        },
    );
    Api::<ForeignCluster>::all(client.clone())
        .create(&PostParams::default(), &fc)
        .await?;
    let gateway = LocalGateway {
        endpoint: "192.168.200.1:51820".into(),
        public_key: format!("{:A<43}=", "Bench"),
    };
    let nm_config = NetworkManagerConfig::new("bench-a".parse()?, NS, gateway);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let manager = tokio::spawn(isthmus_network_manager::run(
        nm_config,
        client.clone(),
        Arc::new(LabPeers::new()),
        ipam.clone(),
        async move {
            let _ = stop_rx.await;
        },
    ));
    let mut published = follow(Api::namespaced(client.clone(), NS));
    let latency = Duration::from_secs_f64(o.write_latency_ms.max(0.0) / 1e3);
    kube.faults().set_write_latency(latency);
    let mut out = Vec::new();
    let mut state = 0u32;
    let marks = [1_000, 10_000, 50_000, 100_000, o.mappings];
    while state < o.mappings {
        let n = o.batch.min(o.mappings - state);
        let measure = marks.contains(&state) || state + n == o.mappings;
        let figures = batch(&ipam, &peer, state, n, o.clients, &mut published).await?;
        if measure {
            out.push(figures);
        }
        state += n;
    }
    let _ = stop_tx.send(());
    manager.await??;
    Ok(out)
}

/// The i-th endpoint mapped (distinct, outside every local network).
fn endpoint(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(100, 64, 0, 0)) + i)
}

/// Every NatMapping written: its entries and serialized size.
fn follow(api: Api<NatMapping>) -> mpsc::UnboundedReceiver<(NatMappingSpec, usize)> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut events = std::pin::pin!(watcher::watcher(api, watcher::Config::default()));
        while let Some(event) = events.next().await {
            if let Ok(Event::Apply(nm) | Event::InitApply(nm)) = event {
                let bytes = serde_json::to_vec(&nm).map_or(0, |b| b.len());
                if tx.send((nm.spec, bytes)).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

async fn batch(
    ipam: &DurableIpam,
    peer: &ClusterId,
    from: u32,
    n: u32,
    clients: u32,
    published: &mut mpsc::UnboundedReceiver<(NatMappingSpec, usize)>,
) -> anyhow::Result<BatchFigures> {
    while published.try_recv().is_ok() {} // what earlier batches wrote
    let started = Instant::now();
    let ids: Vec<u32> = (from..from + n).collect();
    let mut last = None;
    let per_client = ids.len().div_ceil(clients.max(1) as usize);
    for chunk in ids.chunks(per_client.max(1) * clients.max(1) as usize) {
        let calls = chunk
            .iter()
            .map(|i| ipam.map_endpoint_ip(peer, endpoint(*i)));
        for reply in futures::future::join_all(calls).await {
            last = reply?.nat_entry.or(last);
        }
    }
    let map = started.elapsed();
    let (last_ip, last_ep) = last.ok_or_else(|| anyhow::anyhow!("no NAT entry"))?;
    let (mut writes, mut bytes) = (0, 0);
    let deadline = Duration::from_secs(120);
    loop {
        let next = tokio::time::timeout(deadline, published.recv()).await?;
        let (spec, size) = next.ok_or_else(|| anyhow::anyhow!("watch ended"))?;
        writes += 1;
        bytes += size;
        if spec.cluster_mappings.get(&last_ip) == Some(&last_ep) {
            break;
        }
    }
    let publish_lag = started.elapsed() - map;
    let whole: BTreeMap<Ipv4Addr, Ipv4Addr> =
        ipam.read(|i| i.nat_mapping(peer))?.unwrap_or_default();
    let older = NatMapping::new(
        peer.as_str(),
        NatMappingSpec {
            cluster_id: peer.clone(),
            block: None,
            cluster_mappings: whole,
        },
    );
    Ok(BatchFigures {
        state_before: from,
        map,
        publish_lag,
        writes,
        bytes,
        older_layout_bytes: serde_json::to_vec(&older)?.len(),
    })
}

/// The figures as a table.
pub fn render(o: &NatShardsBenchOptions, rows: &[BatchFigures]) -> String {
    let mut s = format!(
        "bench nat-shards: {} mappings for one peer, batches of {}, {} clients, {} ms per API write\n\
         {:>9} {:>9} {:>12} {:>7} {:>11} {:>20}\n",
        o.mappings,
        o.batch,
        o.clients,
        o.write_latency_ms,
        "state",
        "map ms",
        "publish ms",
        "writes",
        "KiB written",
        "older layout KiB"
    );
    for r in rows {
        s.push_str(&format!(
            "{:>9} {:>9.1} {:>12.1} {:>7} {:>11.1} {:>20.1}\n",
            r.state_before,
            r.map.as_secs_f64() * 1e3,
            r.publish_lag.as_secs_f64() * 1e3,
            r.writes,
            r.bytes as f64 / 1024.0,
            r.older_layout_bytes as f64 / 1024.0,
        ));
    }
    s
}
