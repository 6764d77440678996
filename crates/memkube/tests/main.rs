//! Every integration test of `isthmus-memkube`, in one binary: one link instead of one per file
//! (nextest still runs each test in its own process). Each module is one former test file.

mod common;

mod api_verbs;
mod controller;
mod faults;
mod fidelity;
mod http;
mod https;
mod kubectl;
mod namespace_fixture;
mod rbac;
mod rbac_cases;
mod real_api;
mod semantics;
mod watch;
