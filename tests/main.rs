//! Every integration test of `isthmus`, in one binary: one link instead of one per file
//! (nextest still runs each test in its own process). Each module is one former test file.

mod common;
mod e2e_common;
mod peer_common;

mod chart;
mod chart_rbac;
mod chart_rbac_ipam;
mod crash;
mod crash_kube;
mod crds;
mod daemon_network_manager;
mod daemon_route_agent;
mod e2e;
mod e2e_cni;
mod e2e_diagnose;
mod e2e_exposure;
mod e2e_failover;
mod e2e_outage;
mod e2e_overlay;
mod e2e_status;
mod e2e_telemetry;
mod grpc;
mod grpc_auth;
mod lab_cli;
mod peer_cli;
mod python_client;
mod status_cli;
