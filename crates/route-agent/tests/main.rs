//! Every integration test of `isthmus-route-agent`, in one binary: one link instead of one per file
//! (nextest still runs each test in its own process). Each module is one former test file.

mod common;

mod agent;
mod kernel;
