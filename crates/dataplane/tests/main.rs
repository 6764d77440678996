//! Every integration test of `isthmus-dataplane`, in one binary: one link instead of one per file
//! (nextest still runs each test in its own process). Each module is one former test file.

mod common;

mod bench_smoke;
mod gateway_pair;
mod inspect;
mod nat_delta;
mod nat_netlink;
mod node_nat;
mod node_routes;
mod overlapping_clusters;
mod transit_address;
