//! `isthmus bench ipam`: the reference thesis's benchmark B1 over real TCP gRPC. M concurrent clients (one
//! HTTP/2 connection each by default, or sharing K connections as the reflectors of one virtual
//! kubelet share its client) send N `MapEndpointIP` calls each, then the matching
//! `UnmapEndpointIP` calls. One request in four maps a local pod IP (a pure translation); the rest
//! map distinct external endpoint IPs (an ExternalCIDR allocation, durable before the reply).
//! Every call carries the bearer token given (`--token-file`), if any, as a virtual kubelet's
//! calls do against an IPAM that authenticates them.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use isthmus_ipam::Cidr;
use tonic::transport::Endpoint;

use super::stats::LatencySummary;
use crate::grpc::client::{AuthedIpamClient, BearerToken};
use crate::grpc::pb::{MapRequest, UnmapRequest};

/// What to run.
#[derive(Debug, Clone)]
pub struct IpamBenchOptions {
    /// `host:port` of the IPAM gRPC server.
    pub target: String,
    pub cluster_id: String,
    pub clients: usize,
    /// HTTP/2 connections the clients share (round robin); `clients` gives one each.
    pub connections: usize,
    pub requests: usize,
    /// The server's local Pod CIDR (the local-pod requests pick addresses in it).
    pub pod_cidr: Cidr,
    /// First external endpoint address; client c, request i uses `base + c * N + i`.
    pub endpoint_base: Ipv4Addr,
    /// Sent with every call (none: calls go unauthenticated).
    pub token: BearerToken,
}

/// The figures of a run.
#[derive(Debug, Clone)]
pub struct IpamBenchReport {
    pub map: LatencySummary,
    pub unmap: LatencySummary,
    /// Failed requests by gRPC code.
    pub errors: BTreeMap<String, usize>,
}

impl std::fmt::Display for IpamBenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "MapEndpointIP:   {}", self.map)?;
        writeln!(f, "UnmapEndpointIP: {}", self.unmap)?;
        if self.errors.is_empty() {
            write!(f, "errors: none")
        } else {
            let errors: Vec<String> = self
                .errors
                .iter()
                .map(|(code, n)| format!("{code} ×{n}"))
                .collect();
            write!(f, "errors: {}", errors.join(", "))
        }
    }
}

/// The endpoint IP of request `i` of client `c`.
fn endpoint(opts: &IpamBenchOptions, c: usize, i: usize) -> Ipv4Addr {
    let n = (c * opts.requests + i) as u64;
    if i.is_multiple_of(4) {
        let hosts = opts.pod_cidr.size().saturating_sub(2).max(1);
        opts.pod_cidr
            .nth(1 + n % hosts)
            .unwrap_or(opts.pod_cidr.network())
    } else {
        Ipv4Addr::from(u32::from(opts.endpoint_base).wrapping_add(n as u32))
    }
}

struct ClientRun {
    map: Vec<Duration>,
    unmap: Vec<Duration>,
    errors: Vec<tonic::Code>,
}

async fn client_run(
    mut client: AuthedIpamClient,
    opts: IpamBenchOptions,
    c: usize,
    start: std::sync::Arc<tokio::sync::Barrier>,
    unmap_start: std::sync::Arc<tokio::sync::Barrier>,
) -> ClientRun {
    let mut run = ClientRun {
        map: Vec::new(),
        unmap: Vec::new(),
        errors: Vec::new(),
    };
    start.wait().await;
    for i in 0..opts.requests {
        let req = MapRequest {
            cluster_id: opts.cluster_id.clone(),
            ip: endpoint(&opts, c, i).to_string(),
        };
        let t = Instant::now();
        match client.map_endpoint_ip(req).await {
            Ok(_) => run.map.push(t.elapsed()),
            Err(s) => run.errors.push(s.code()),
        }
    }
    unmap_start.wait().await;
    for i in 0..opts.requests {
        let req = UnmapRequest {
            cluster_id: opts.cluster_id.clone(),
            ip: endpoint(&opts, c, i).to_string(),
        };
        let t = Instant::now();
        match client.unmap_endpoint_ip(req).await {
            Ok(_) => run.unmap.push(t.elapsed()),
            Err(s) => run.errors.push(s.code()),
        }
    }
    run
}

/// Runs the benchmark. Phase times span from the start barrier to the last client's end.
pub async fn run(opts: IpamBenchOptions) -> anyhow::Result<IpamBenchReport> {
    if opts.clients == 0 || opts.requests == 0 {
        bail!("--clients and --requests must be at least 1");
    }
    let uri = format!("http://{}", opts.target);
    let endpoint = Endpoint::from_shared(uri.clone())
        .context("invalid --target")?
        .tcp_nodelay(true);
    let mut clients = Vec::with_capacity(opts.clients);
    for _ in 0..opts.clients {
        let ch = endpoint
            .connect()
            .await
            .with_context(|| format!("cannot connect to {uri}"))?;
        clients.push(opts.token.client(ch));
    }
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(opts.clients + 1));
    let unmap_start = std::sync::Arc::new(tokio::sync::Barrier::new(opts.clients + 1));
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(c, client)| {
            let (o, s, u) = (opts.clone(), start.clone(), unmap_start.clone());
            tokio::spawn(client_run(client, o, c, s, u))
        })
        .collect();
    start.wait().await;
    let t0 = Instant::now();
    unmap_start.wait().await;
    let map_total = t0.elapsed();
    let t1 = Instant::now();
    let mut runs = Vec::new();
    for t in tasks {
        runs.push(t.await?);
    }
    let unmap_total = t1.elapsed();
    let mut errors = BTreeMap::new();
    for code in runs.iter().flat_map(|r| r.errors.iter()) {
        *errors.entry(format!("{code:?}")).or_default() += 1;
    }
    let map = runs.iter().flat_map(|r| r.map.iter().copied()).collect();
    let unmap = runs.iter_mut().flat_map(|r| r.unmap.drain(..)).collect();
    Ok(IpamBenchReport {
        map: LatencySummary::from_samples(map, map_total),
        unmap: LatencySummary::from_samples(unmap, unmap_total),
        errors,
    })
}
