//! Reconcile counts, errors and durations per controller: `isthmus_reconciles_total{controller,
//! result="ok"|"error"}` and `isthmus_reconcile_duration_seconds{controller}`.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::duration_histogram;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    controller: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Controller {
    controller: &'static str,
}

/// Reconcile metrics; clones share their values.
#[derive(Clone, Debug)]
pub struct Reconciles {
    total: Family<Outcome, Counter>,
    duration: Family<Controller, Histogram, fn() -> Histogram>,
}

impl Default for Reconciles {
    fn default() -> Self {
        Reconciles {
            total: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
        }
    }
}

impl Reconciles {
    /// Registers both families.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "isthmus_reconciles",
            "Reconciles per controller and result (ok or error)",
            self.total.clone(),
        );
        registry.register(
            "isthmus_reconcile_duration_seconds",
            "Time one reconcile took, per controller",
            self.duration.clone(),
        );
    }

    /// One reconcile of `controller` ended (`ok`) after `took`.
    pub fn record(&self, controller: &'static str, ok: bool, took: Duration) {
        let result = if ok { "ok" } else { "error" };
        self.total
            .get_or_create(&Outcome { controller, result })
            .inc();
        self.duration
            .get_or_create(&Controller { controller })
            .observe(took.as_secs_f64());
    }

    /// Reconciles of `controller` so far with `result` (tests, status).
    pub fn count(&self, controller: &'static str, ok: bool) -> u64 {
        let result = if ok { "ok" } else { "error" };
        self.total
            .get(&Outcome { controller, result })
            .map_or(0, |c| c.get())
    }
}
