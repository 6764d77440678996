//! Peering lab clusters the way a user does: `isthmus peer` and `isthmus unpeer` (the `peer`
//! module, the same code), given each cluster's admin kubeconfig and, as the URL each side hands
//! the other, the API's address on the underlay. Their output goes to the lab's log.

use std::time::Duration;

use crate::lab::cluster::{ClusterRuntime, NAMESPACE};
use crate::peer::args::{Clusters, PeerArgs, UnpeerArgs};
use crate::peer::{Console, TokenRequests};

fn clusters(a: &ClusterRuntime, b: &ClusterRuntime, timeout: Duration) -> Clusters {
    Clusters {
        kubeconfig: Some(a.admin_kubeconfig.clone()),
        context: None,
        namespace: NAMESPACE.to_owned(),
        remote_kubeconfig: Some(b.admin_kubeconfig.clone()),
        remote_context: None,
        remote_namespace: NAMESPACE.to_owned(),
        timeout,
    }
}

/// A console writing into the lab's log.
fn log_console() -> Console {
    Console::new(Box::new(std::io::stderr()), false)
}

/// `isthmus peer` between `a` and `b`: both sides written, then both tunnels `connected` within
/// `timeout` (the peering stays when they are not: the error says why).
pub async fn peer(a: &ClusterRuntime, b: &ClusterRuntime, timeout: Duration) -> anyhow::Result<()> {
    let args = PeerArgs {
        clusters: clusters(a, b, timeout),
        api_url: Some(a.site.api_url_on_underlay(&a.api)),
        remote_api_url: Some(b.site.api_url_on_underlay(&b.api)),
        dry_run: false,
    };
    crate::peer::run_peer(&args, &TokenRequests, &mut log_console()).await?;
    Ok(())
}

/// `isthmus unpeer` between `a` and `b`: every object gone, the gateways' kernel state removed.
pub async fn unpeer(
    a: &ClusterRuntime,
    b: &ClusterRuntime,
    timeout: Duration,
) -> anyhow::Result<()> {
    let args = UnpeerArgs {
        clusters: clusters(a, b, timeout),
        dry_run: false,
    };
    crate::peer::unpeer::run_unpeer(&args, &mut log_console()).await?;
    Ok(())
}
