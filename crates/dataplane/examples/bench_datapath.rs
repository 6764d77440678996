//! Runs the datapath benchmark until the root binary wires `isthmus bench datapath`:
//! `cargo run --release -p isthmus-dataplane --example bench_datapath [-- requests runs seconds]`.

use isthmus_dataplane::bench::{self, DatapathBenchOptions};

fn main() -> Result<(), isthmus_dataplane::Error> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let mut options = DatapathBenchOptions::default();
    if let Some(requests) = args.first() {
        options.requests = *requests;
    }
    if let Some(runs) = args.get(1) {
        options.iperf_runs = *runs;
    }
    if let Some(seconds) = args.get(2) {
        options.iperf_seconds = *seconds as u32;
    }
    let report = bench::run(&options)?;
    println!("{report}");
    Ok(())
}
