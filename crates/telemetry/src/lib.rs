//! isthmus-telemetry: what every daemon tells about itself.
//!
//! - [`metrics`]: the Prometheus metric families the components record into (reconciles, gRPC
//!   calls, tunnels, the IPAM, datapath applies), each registered once into a
//!   [`prometheus_client::registry::Registry`] by the daemon that owns them;
//! - [`health`]: liveness heartbeats and readiness gates — what `/healthz` and `/readyz` answer;
//! - [`server`]: the small HTTP server for `/metrics`, `/healthz` and `/readyz`;
//! - [`events`]: Kubernetes Events on transitions (peered, connected, lost …), best effort.
//!
//! Metric handles are cheap clones sharing their values: a component keeps its own copy and
//! records; an unregistered copy (the [`Default`]) records into nothing anyone scrapes, which is
//! what tests and library users that do not serve metrics get.

pub mod events;
pub mod health;
pub mod metrics;
pub mod server;

pub use events::{EventKind, Events};
pub use health::{Gate, Health, Heartbeat};
pub use prometheus_client::registry::Registry;
pub use server::{Error, Server, serve};
