//! gRPC server calls per method and status code: `isthmus_grpc_requests_total{method,code}` and
//! `isthmus_grpc_request_duration_seconds{method,code}` (codes as gRPC names: `OK`,
//! `INVALID_ARGUMENT`, `NOT_FOUND`, `RESOURCE_EXHAUSTED` …).

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::duration_histogram;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Call {
    method: &'static str,
    code: &'static str,
}

/// gRPC metrics; clones share their values.
#[derive(Clone, Debug)]
pub struct Grpc {
    requests: Family<Call, Counter>,
    duration: Family<Call, Histogram, fn() -> Histogram>,
}

impl Default for Grpc {
    fn default() -> Self {
        Grpc {
            requests: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
        }
    }
}

impl Grpc {
    /// Registers both families.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "isthmus_grpc_requests",
            "gRPC calls served, per method and status code",
            self.requests.clone(),
        );
        registry.register(
            "isthmus_grpc_request_duration_seconds",
            "Time from request to reply, per method and status code",
            self.duration.clone(),
        );
    }

    /// One call of `method` answered with `code` after `took`.
    pub fn record(&self, method: &'static str, code: &'static str, took: Duration) {
        let call = Call { method, code };
        self.requests.get_or_create(&call).inc();
        self.duration
            .get_or_create(&call)
            .observe(took.as_secs_f64());
    }

    /// Calls of `method` answered with `code` so far.
    pub fn count(&self, method: &'static str, code: &'static str) -> u64 {
        self.requests
            .get(&Call { method, code })
            .map_or(0, |c| c.get())
    }
}
