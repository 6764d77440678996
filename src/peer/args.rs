//! The command lines of `isthmus peer` and `isthmus unpeer`: the two clusters, named as kubectl
//! names them (a kubeconfig and a context each; the local one defaults to `$KUBECONFIG` and its
//! current context, the remote one must be named by a context or a kubeconfig), the namespaces,
//! the API URLs handed to the other side, the timeout and `--dry-run`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Args};

use crate::daemons::route_agent::parse_duration;
use crate::peer::side::{ClusterRef, Role};

/// The namespace isthmus is installed in unless told otherwise.
pub const DEFAULT_NAMESPACE: &str = "isthmus";

/// The two clusters.
#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("remote").args(["remote_kubeconfig", "remote_context"]).required(true).multiple(true)))]
pub struct Clusters {
    /// Kubeconfig of this cluster (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Context of this cluster (default: the kubeconfig's current context).
    #[arg(long)]
    pub context: Option<String>,
    /// Namespace isthmus is installed in, in this cluster.
    #[arg(short, long, default_value = DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// Kubeconfig of the other cluster (default: the same kubeconfig as this cluster's).
    #[arg(long)]
    pub remote_kubeconfig: Option<PathBuf>,
    /// Context of the other cluster (default: the remote kubeconfig's current context).
    #[arg(long)]
    pub remote_context: Option<String>,
    /// Namespace isthmus is installed in, in the other cluster.
    #[arg(long, default_value = DEFAULT_NAMESPACE)]
    pub remote_namespace: String,
    /// How long to wait for the result: 60s, 2m, 500ms, or plain seconds.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// `isthmus peer …`
#[derive(Debug, Clone, Args)]
pub struct PeerArgs {
    #[command(flatten)]
    pub clusters: Clusters,
    /// URL at which the OTHER cluster's network-manager reaches this cluster's API (default:
    /// the server URL of this cluster's kubeconfig).
    #[arg(long)]
    pub api_url: Option<String>,
    /// URL at which THIS cluster's network-manager reaches the other cluster's API (default:
    /// the server URL of the remote kubeconfig).
    #[arg(long)]
    pub remote_api_url: Option<String>,
    /// Check both clusters and print what would be written (tokens redacted); change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `isthmus unpeer …`
#[derive(Debug, Clone, Args)]
pub struct UnpeerArgs {
    #[command(flatten)]
    pub clusters: Clusters,
    /// Check both clusters and print what would be deleted; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

impl Clusters {
    /// The local and the remote cluster, as the rest of the command uses them.
    pub fn refs(&self, api_url: Option<String>, remote_api_url: Option<String>) -> [ClusterRef; 2] {
        [
            ClusterRef {
                role: Role::Local,
                kubeconfig: self.kubeconfig.clone(),
                context: self.context.clone(),
                namespace: self.namespace.clone(),
                api_url,
            },
            ClusterRef {
                role: Role::Remote,
                kubeconfig: self
                    .remote_kubeconfig
                    .clone()
                    .or_else(|| self.kubeconfig.clone()),
                context: self.remote_context.clone(),
                namespace: self.remote_namespace.clone(),
                api_url: remote_api_url,
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        peer: PeerArgs,
    }

    #[test]
    fn the_remote_cluster_must_be_named() {
        let err = Cli::try_parse_from(["peer"]).unwrap_err().to_string();
        assert!(
            err.contains("--remote-kubeconfig") || err.contains("--remote-context"),
            "{err}"
        );
        let ok = Cli::try_parse_from(["peer", "--kubeconfig", "/k", "--remote-context", "kind-b"])
            .unwrap();
        assert_eq!(ok.peer.clusters.timeout, Duration::from_secs(60));
        assert_eq!(ok.peer.clusters.namespace, "isthmus");
        let [local, remote] = ok
            .peer
            .clusters
            .refs(None, Some("https://10.0.0.3:6443".into()));
        assert_eq!((local.role, local.context), (Role::Local, None));
        assert_eq!(remote.context.as_deref(), Some("kind-b"));
        assert_eq!(
            remote.kubeconfig,
            Some(PathBuf::from("/k")),
            "the same kubeconfig"
        );
        assert_eq!(remote.api_url.as_deref(), Some("https://10.0.0.3:6443"));
    }

    #[test]
    fn the_timeout_takes_units() {
        let ok = Cli::try_parse_from(["peer", "--remote-context", "b", "--timeout", "2m"]).unwrap();
        assert_eq!(ok.peer.clusters.timeout, Duration::from_secs(120));
    }
}
