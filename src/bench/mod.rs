//! `isthmus bench …`: benchmarks that print their figures. Each submodule owns one benchmark;
//! `status_fixture` is the cluster `bench status` and `tests/status_cli.rs` read.

pub mod auth_api;
pub mod ipam;
pub mod ipam_kube;
pub mod ipam_kube_restart;
pub mod ipam_state;
pub mod nat_shards;
pub mod stats;
pub mod status;
pub mod status_fixture;
