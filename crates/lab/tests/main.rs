//! Every integration test of `isthmus-lab`, in one binary: one link instead of one per file
//! (nextest still runs each test in its own process). Each module is one former test file.

mod probes;
mod topology;
