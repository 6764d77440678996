//! Read-only commands that inspect a running installation through the Kubernetes API:
//! `isthmus status` (one cluster's peers, tunnels and IPAM usage). `target` selects the cluster
//! (kubeconfig, context, plain-HTTP server or lab cluster) for every such command.

pub mod cause;
pub mod status;
pub mod target;
