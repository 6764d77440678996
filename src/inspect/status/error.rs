//! Why `isthmus status` could not read the cluster, one variant per thing an operator would do
//! differently: fix the connection, install the CRDs, get permissions, or look in another
//! namespace. Peers being down is not an error (the report says so and the exit code is 0).
//! Client errors are shown inline, each message of their chain once (`cause::describe`), and
//! kept as a field (not a `source`) so they are not printed twice.

use crate::inspect::cause::describe;
use crate::inspect::target::TargetError;

/// A failure to produce the report.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error("cannot reach the Kubernetes API at {server}: {}", describe(error))]
    Unreachable { server: String, error: kube::Error },
    #[error(
        "the isthmus CRDs are not installed at {server}: the API does not serve {} \
         (apply crds/ or install the Helm chart)",
        kinds.join(", ")
    )]
    CrdsMissing {
        server: String,
        kinds: Vec<&'static str>,
    },
    #[error("access denied listing {kind} at {server}: {message}")]
    Denied {
        kind: &'static str,
        server: String,
        message: String,
    },
    #[error("listing {kind} at {server} failed: {}", describe(error))]
    Api {
        kind: &'static str,
        server: String,
        error: kube::Error,
    },
    #[error(
        "isthmus is not installed in namespace {namespace}: it holds no IpamStorage, \
         TunnelEndpoint, NetworkConfig or NatMapping{} (wrong --namespace? the network-manager \
         creates IpamStorage when it first starts)",
        if *foreign_clusters > 0 {
            format!(", although {foreign_clusters} ForeignClusters exist")
        } else {
            String::new()
        }
    )]
    NotInstalled {
        namespace: String,
        foreign_clusters: usize,
    },
    #[error("cannot write the report as JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("cannot write the report: {0}")]
    Write(#[from] std::io::Error),
}
