//! The `isthmus` binary's library: everything the subcommands run, so integration tests can
//! drive the same code. Each module owns one subcommand or one protocol edge.

pub mod bench;
pub mod cli;
pub mod crdgen;
pub mod daemons;
pub mod grpc;
pub mod inspect;
pub mod lab;
pub mod logging;
pub mod peer;
pub mod standalone;
