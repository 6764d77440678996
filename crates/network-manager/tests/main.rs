//! Every integration test of `isthmus-network-manager`, in one binary: one link instead of one per file
//! (nextest still runs each test in its own process). Each module is one former test file.

mod common;

mod failures;
mod forged_origin;
mod held_tunnel;
mod kubeconfig;
mod nat_shards;
mod natmapping;
mod peering;
mod telemetry;
