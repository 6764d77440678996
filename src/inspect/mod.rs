//! Read-only inspection commands: they read the cluster's resources (and, for `diagnose`, this
//! node's kernel) and report; they never change either. `status` shows one cluster's peers,
//! tunnels and IPAM usage; `diagnose` checks a node's datapath. `target` builds the API client
//! `status` reads through (kubeconfig, context, plain-HTTP server or lab cluster); `cause` turns
//! an error chain into one line.

pub mod cause;
pub mod diagnose;
pub mod status;
pub mod target;
