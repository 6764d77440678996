//! The benchmark end to end with tiny counts: every path carries traffic (wireguard-go
//! included) and every figure is filled in. No timing is asserted. Needs root and iperf3.

use isthmus_dataplane::bench::{self, DatapathBenchOptions};

#[test]
fn benchmark_runs_every_path_with_small_counts() {
    isthmus_dataplane::lab::require_root();
    let options = DatapathBenchOptions {
        requests: 50,
        iperf_runs: 3,
        iperf_seconds: 1,
        mapping_applies: 20,
        bulk_mappings: 500,
        wireguard_go: true,
    };
    let report = bench::run(&options).unwrap();
    assert_eq!(report.paths.len(), 6);
    for path in &report.paths {
        assert!(path.latency.p50_us > 0.0, "{path:?}");
        assert_eq!(path.throughput.runs_mbps.len(), 3);
        assert!(path.throughput.trimmed_mean_mbps > 0.0, "{path:?}");
    }
    assert!(report.mappings.single_p50_ms > 0.0 && report.mappings.bulk_rebuild_ms > 0.0);
    println!("{report}");
}

#[test]
fn nat_delta_benchmark_times_both_paths() {
    use isthmus_dataplane::bench::nat_delta::{self, NatDeltaBenchOptions};
    use isthmus_dataplane::firewall::nft::ElementPath;
    isthmus_dataplane::lab::require_root();
    let options = NatDeltaBenchOptions {
        deltas: 20,
        paths: vec![ElementPath::Nft, ElementPath::Netlink],
    };
    let report = nat_delta::run(&options).unwrap();
    assert_eq!(report.paths.len(), 2);
    for path in &report.paths {
        assert!(path.latency.p50_us > 0.0, "{path:?}");
    }
    println!("{report}");
}
