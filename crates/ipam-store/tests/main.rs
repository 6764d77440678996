//! Every integration test of `isthmus-ipam-store`, in one binary: one link instead of one per file
//! (nextest still runs each test in its own process). Each module is one former test file.

mod faulty_api;
mod file_store;
mod kube_compaction;
mod kube_faults;
mod kube_store;
