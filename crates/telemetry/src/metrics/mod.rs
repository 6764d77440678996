//! The metric families, grouped by what records them. Every family is created unregistered
//! (`Default`) and registered by the daemon with `register`; names are prefixed `isthmus_`.
//! The catalogue with meanings and labels is `docs/operations.md` § Metrics.

pub mod datapath;
pub mod grpc;
pub mod ipam;
pub mod reconcile;
pub mod tunnel;

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

pub use datapath::Datapath;
pub use grpc::Grpc;
pub use ipam::{IpamFigures, IpamUsage, RangeUsage, UsageSource};
pub use reconcile::Reconciles;
pub use tunnel::{PeerSample, TunnelState, Tunnels};

/// Latency buckets from 0.25 ms to ~8 s (doubling): gRPC calls, reconciles and applies.
pub fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// `isthmus_build_info{component, version} 1`, and `isthmus_up 1` for simple alerting.
pub fn register_build_info(registry: &mut Registry, component: &str, version: &str) {
    let info = Info::new(vec![
        ("component".to_owned(), component.to_owned()),
        ("version".to_owned(), version.to_owned()),
    ]);
    registry.register(
        "isthmus_build",
        "Which isthmus component and version this is",
        info,
    );
    let up: Gauge = Gauge::default();
    up.set(1);
    registry.register("isthmus_up", "1 while the process serves metrics", up);
}
