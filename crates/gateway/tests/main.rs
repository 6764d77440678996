//! Every integration test of `isthmus-gateway`, in one binary: one link instead of one per file
//! (nextest still runs each test in its own process). Each module is one former test file.

mod common;

mod controller;
mod finalizer;
mod kernel;
mod leader;
mod nat_shards;
mod telemetry;
