//! Quick engine comparison (tunnel path only): userspace engine vs Debian's wireguard-go.
//! `cargo run --release -p isthmus-dataplane --example bench_engines [-- runs seconds]`.

use isthmus_dataplane::bench::scenario::Path;
use isthmus_dataplane::bench::{DatapathBenchOptions, measure_path};
use isthmus_dataplane::tunnel::Backend;

fn main() -> Result<(), isthmus_dataplane::Error> {
    let args: Vec<u32> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let options = DatapathBenchOptions {
        requests: 500,
        iperf_runs: args.first().copied().unwrap_or(5) as usize,
        iperf_seconds: args.get(1).copied().unwrap_or(3),
        ..DatapathBenchOptions::default()
    };
    for path in [
        Path::Tunnel(Backend::Userspace),
        Path::Tunnel(Backend::WireguardGo),
    ] {
        let report = measure_path(path, &options)?;
        println!(
            "{}: {:.0} Mbit/s {:?}",
            path.label(),
            report.throughput.trimmed_mean_mbps,
            report.throughput.runs_mbps
        );
    }
    Ok(())
}
