//! `isthmus bench …`: benchmarks that print their figures. Each submodule owns one benchmark.

pub mod ipam;
pub mod stats;
