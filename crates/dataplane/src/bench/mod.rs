//! The datapath benchmark (`isthmus bench datapath`): request-response latency and TCP
//! throughput between two pods over each path, and the time to apply NatMapping entries —
//! all in namespaces it creates and removes; [`nat_delta`] times NatMapping deltas alone.

pub mod measure;
pub mod nat_delta;
pub mod scenario;

use std::fmt;
use std::net::Ipv4Addr;
use std::time::Instant;

use measure::{IperfServer, Latency, Throughput};
use scenario::{Path, Topology};

use crate::firewall::Applied;
use crate::lab::Lab;
use crate::tunnel::Backend;
use crate::{Error, LinuxGateway, PrivateKey, Result};

/// What to run.
#[derive(Debug, Clone)]
pub struct DatapathBenchOptions {
    /// Sequential HTTP requests per path.
    pub requests: usize,
    /// iperf3 runs per path; the best and the worst are dropped.
    pub iperf_runs: usize,
    /// Seconds per iperf3 run.
    pub iperf_seconds: u32,
    /// Single-mapping applies timed (p50/p99).
    pub mapping_applies: usize,
    /// Size of the bulk mapping apply.
    pub bulk_mappings: usize,
    /// Also measure Debian's wireguard-go as the reference.
    pub wireguard_go: bool,
}

impl Default for DatapathBenchOptions {
    fn default() -> Self {
        DatapathBenchOptions {
            requests: 10_000,
            iperf_runs: 12,
            iperf_seconds: 5,
            mapping_applies: 1_000,
            bulk_mappings: 10_000,
            wireguard_go: true,
        }
    }
}

/// One path's results.
#[derive(Debug, Clone)]
pub struct PathReport {
    /// Which path.
    pub path: Path,
    /// HTTP request-response latency.
    pub latency: Latency,
    /// iperf3 TCP throughput.
    pub throughput: Throughput,
}

/// NatMapping apply times, in milliseconds.
#[derive(Debug, Clone, Default)]
pub struct MappingReport {
    /// Single-entry applies: p50.
    pub single_p50_ms: f64,
    /// Single-entry applies: p99.
    pub single_p99_ms: f64,
    /// Bulk entries added to an existing table in one element batch.
    pub bulk_incremental_ms: f64,
    /// The whole table rebuilt with the bulk entries (first apply, or repair).
    pub bulk_rebuild_ms: f64,
    /// Bulk size.
    pub bulk: usize,
    /// Single applies measured.
    pub singles: usize,
}

/// Everything measured.
#[derive(Debug, Clone)]
pub struct DatapathReport {
    /// The options used.
    pub options: DatapathBenchOptions,
    /// Per path.
    pub paths: Vec<PathReport>,
    /// Mapping apply times.
    pub mappings: MappingReport,
}

/// Runs the whole benchmark. Needs root; blocks for several minutes with the defaults.
pub fn run(options: &DatapathBenchOptions) -> Result<DatapathReport> {
    let mut paths = vec![
        Path::PlainVeth,
        Path::Tunnel(Backend::Userspace),
        Path::PrefixNat,
        Path::DnatMap(1),
        Path::DnatMap(options.bulk_mappings.max(1)),
    ];
    if options.wireguard_go {
        paths.push(Path::Tunnel(Backend::WireguardGo));
    }
    let mut reports = Vec::new();
    for path in paths {
        tracing::info!(path = %path.label(), "measuring");
        reports.push(measure_path(path, options)?);
    }
    let mappings = measure_mappings(options)?;
    Ok(DatapathReport {
        options: options.clone(),
        paths: reports,
        mappings,
    })
}

/// Measures one path in a topology of its own.
pub fn measure_path(path: Path, options: &DatapathBenchOptions) -> Result<PathReport> {
    let topology: Topology = scenario::build(path)?;
    let (client, server) = (&topology.lab.sites[0].pod_rt, &topology.lab.sites[1].pod_rt);
    measure::start_http_server(server)?;
    let latency = measure::http_request_response(client, topology.target, options.requests)?;
    let _iperf = IperfServer::start(server)?;
    let throughput = measure::iperf_runs(
        client,
        topology.target,
        options.iperf_runs,
        options.iperf_seconds,
    )?;
    Ok(PathReport {
        path,
        latency,
        throughput,
    })
}

/// Times NatMapping applies on a gateway of its own (the peer need not answer).
pub fn measure_mappings(options: &DatapathBenchOptions) -> Result<MappingReport> {
    let mut lab = Lab::new()?;
    lab.add_site("10.0.0.0/24".parse().expect("v4"))?;
    lab.add_site("10.1.0.0/24".parse().expect("v4"))?;
    let key = PrivateKey::generate();
    let mut gateway = LinuxGateway::linux_on(lab.sites[0].gw_rt.clone(), Backend::Userspace)?;
    let peer = PrivateKey::generate();
    let peer = scenario_peer(&lab, &peer);
    let mut spec = scenario::gateway_spec(&lab, 0, &key, peer);
    gateway.reconcile(&spec)?;
    let target = Ipv4Addr::new(10, 0, 0, 10);
    let mut samples = Vec::with_capacity(options.mapping_applies);
    for i in 0..options.mapping_applies as u32 {
        spec.peers[0].mappings.push(scenario::map_entry(i, target));
        let start = Instant::now();
        let applied = gateway.reconcile_nat(&spec)?;
        samples.push(start.elapsed().as_secs_f64() * 1e3);
        expect(applied, Applied::Incremental)?;
    }
    let singles = Latency::from_samples(samples);
    spec.peers[0].mappings.clear();
    gateway.reconcile_nat(&spec)?;
    spec.peers[0].mappings = (0..options.bulk_mappings as u32)
        .map(|i| scenario::map_entry(i, target))
        .collect();
    let start = Instant::now();
    expect(gateway.reconcile_nat(&spec)?, Applied::Incremental)?;
    let bulk_incremental_ms = start.elapsed().as_secs_f64() * 1e3;
    gateway.firewall_forget();
    let start = Instant::now();
    expect(gateway.reconcile_nat(&spec)?, Applied::Replaced)?;
    let bulk_rebuild_ms = start.elapsed().as_secs_f64() * 1e3;
    gateway.teardown()?;
    Ok(MappingReport {
        single_p50_ms: singles.p50_us,
        single_p99_ms: singles.p99_us,
        bulk_incremental_ms,
        bulk_rebuild_ms,
        bulk: options.bulk_mappings,
        singles: options.mapping_applies,
    })
}

fn scenario_peer(lab: &Lab, key: &PrivateKey) -> crate::PeerSpec {
    crate::PeerSpec {
        name: "site-1".into(),
        public_key: key.public_key().to_string(),
        endpoint: Some(std::net::SocketAddr::new(
            lab.sites[1].underlay.into(),
            51820,
        )),
        keepalive: None,
        remote: vec![
            "10.1.0.0/24".parse().expect("v4"),
            "10.50.0.0/16".parse().expect("v4"),
        ],
        local_nat: Vec::new(),
        mappings: Vec::new(),
    }
}

fn expect(got: Applied, want: Applied) -> Result<()> {
    if got == want {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "mapping apply was {got:?}, expected {want:?}"
        )))
    }
}

impl DatapathReport {
    /// Throughput of a path, if measured.
    pub fn mbps(&self, path: Path) -> Option<f64> {
        self.paths
            .iter()
            .find(|p| p.path == path)
            .map(|p| p.throughput.trimmed_mean_mbps)
    }

    /// Latency of a path, if measured.
    pub fn latency(&self, path: Path) -> Option<Latency> {
        self.paths
            .iter()
            .find(|p| p.path == path)
            .map(|p| p.latency)
    }
}

impl fmt::Display for DatapathReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.options;
        writeln!(
            f,
            "Request-response: {} sequential HTTP requests, one TCP connection each (µs).",
            o.requests
        )?;
        writeln!(
            f,
            "Throughput: iperf3 TCP, {} runs of {} s, best and worst dropped (Mbit/s).\n",
            o.iperf_runs, o.iperf_seconds
        )?;
        writeln!(
            f,
            "| path | mean | p50 | p99 | max | Mbit/s (trimmed mean) | min | max |"
        )?;
        writeln!(f, "|---|---:|---:|---:|---:|---:|---:|---:|")?;
        for p in &self.paths {
            let (l, t) = (&p.latency, &p.throughput);
            let lo = t.runs_mbps.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = t.runs_mbps.iter().copied().fold(0.0, f64::max);
            writeln!(
                f,
                "| {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
                p.path.label(),
                l.mean_us,
                l.p50_us,
                l.p99_us,
                l.max_us,
                t.trimmed_mean_mbps,
                lo,
                hi
            )?;
        }
        write_targets(self, f)?;
        let m = &self.mappings;
        writeln!(
            f,
            "\nNatMapping applies: 1 entry p50 {:.2} ms, p99 {:.2} ms (over {});",
            m.single_p50_ms, m.single_p99_ms, m.singles
        )?;
        writeln!(
            f,
            "{} entries in one element batch {:.1} ms; whole table rebuilt with them {:.1} ms.",
            m.bulk, m.bulk_incremental_ms, m.bulk_rebuild_ms
        )
    }
}

fn write_targets(r: &DatapathReport, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    writeln!(f)?;
    if let (Some(ours), Some(go)) = (
        r.mbps(Path::Tunnel(Backend::Userspace)),
        r.mbps(Path::Tunnel(Backend::WireguardGo)),
    ) {
        writeln!(
            f,
            "userspace engine / wireguard-go throughput: {:.2}x (target >= 2.5x)",
            ours / go
        )?;
    }
    if let (Some(t), Some(v)) = (
        r.latency(Path::Tunnel(Backend::Userspace)),
        r.latency(Path::PlainVeth),
    ) {
        writeln!(
            f,
            "tunnel p50 overhead over plain veth: {:.3} ms (target <= 0.5 ms)",
            (t.p50_us - v.p50_us) / 1e3
        )?;
    }
    let big = Path::DnatMap(r.options.bulk_mappings.max(1));
    if let (Some(one), Some(many)) = (r.mbps(Path::DnatMap(1)), r.mbps(big)) {
        writeln!(
            f,
            "DNAT map {} entries vs 1: {:+.1}% throughput (target >= -5%)",
            r.options.bulk_mappings,
            (many / one - 1.0) * 100.0
        )?;
    }
    Ok(())
}
