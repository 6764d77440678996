//! `isthmus bench …`: benchmarks that print their figures. Each submodule owns one benchmark.

pub mod ipam;
pub mod ipam_state;
pub mod stats;
