//! The gateway's datapath: `isthmus_nftables_apply_duration_seconds{path="full"|"nat",
//! outcome="unchanged"|"incremental"|"replaced"}` (one atomic nft batch each),
//! `isthmus_nat_mapping_lag_seconds` (a NatMapping change seen by the gateway's watch → its
//! DNAT elements in the kernel by the fast path), `isthmus_datapath_errors_total{operation}` and
//! `isthmus_gateway_leader` (1 on the replica that holds the lease and programs the kernel).

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::duration_histogram;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Apply {
    path: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Operation {
    operation: &'static str,
}

/// Datapath metrics; clones share their values.
#[derive(Clone, Debug)]
pub struct Datapath {
    nft_apply: Family<Apply, Histogram, fn() -> Histogram>,
    nat_lag: Histogram,
    errors: Family<Operation, Counter>,
    leader: Gauge,
}

impl Default for Datapath {
    fn default() -> Self {
        Datapath {
            nft_apply: Family::new_with_constructor(duration_histogram),
            nat_lag: duration_histogram(),
            errors: Family::default(),
            leader: Gauge::default(),
        }
    }
}

impl Datapath {
    /// Registers every family.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "isthmus_nftables_apply_duration_seconds",
            "Time of one nftables apply of our table (path full or nat fast path; outcome)",
            self.nft_apply.clone(),
        );
        registry.register(
            "isthmus_nat_mapping_lag_seconds",
            "Time from a NatMapping change seen by the gateway's watch to its DNAT elements in \
             the kernel (NAT fast path: batch window, waiting for the controller, apply)",
            self.nat_lag.clone(),
        );
        registry.register(
            "isthmus_datapath_errors",
            "Failed datapath operations (reconcile, nat, teardown, finalizer)",
            self.errors.clone(),
        );
        registry.register(
            "isthmus_gateway_leader",
            "1 when this replica holds the gateway lease and programs the kernel",
            self.leader.clone(),
        );
    }

    /// One nft apply on `path` with `outcome`, taking `took`.
    pub fn nft_applied(&self, path: &'static str, outcome: &'static str, took: Duration) {
        self.nft_apply
            .get_or_create(&Apply { path, outcome })
            .observe(took.as_secs_f64());
    }

    /// NatMapping changes first seen `lag` ago are now in the kernel.
    pub fn nat_lag(&self, lag: Duration) {
        self.nat_lag.observe(lag.as_secs_f64());
    }

    /// A datapath `operation` failed.
    pub fn failed(&self, operation: &'static str) {
        self.errors.get_or_create(&Operation { operation }).inc();
    }

    /// Whether this replica leads.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }
}
