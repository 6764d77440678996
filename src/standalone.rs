//! `isthmus network-manager --standalone`: the IPAM and its gRPC service without Kubernetes, for
//! newcomers, benchmarks and crash tests. Peers come from a YAML file (what NetworkConfigs would
//! carry); state lives in a directory (the file store) or in IpamStorage objects (the Kubernetes
//! store, the same as the Kubernetes mode's, without its controllers).
//!
//! Everything is parsed and validated before the state directory is opened or a socket bound.
//! The peers file is the desired set: peers missing from it are unpeered at start. Callers are
//! not authenticated unless `--grpc-auth` asks for the Kubernetes mode's check (TokenReview
//! through the API of KUBECONFIG); without it a non-loopback `--listen` is refused unless
//! `--insecure-grpc` says it is meant.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, bail};
use isthmus_ipam::{Cidr, ClusterId, IpamConfig, PeerNetworks, default_pools};
use isthmus_ipam_store::{DurableIpam, Store};
use serde::Deserialize;

/// One peer, as the peers file gives it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerSpec {
    #[serde(rename = "clusterID")]
    pub cluster_id: ClusterId,
    #[serde(rename = "podCIDR")]
    pub pod_cidr: Cidr,
    #[serde(rename = "externalCIDR")]
    pub external_cidr: Cidr,
    /// How that peer remapped our Pod CIDR (its NetworkConfig status), if it did.
    #[serde(rename = "podCIDRNAT", default, with = "isthmus_addr::none_as_absent")]
    pub pod_cidr_nat: Option<Cidr>,
    /// How that peer remapped our ExternalCIDR, if it did.
    #[serde(
        rename = "externalCIDRNAT",
        default,
        with = "isthmus_addr::none_as_absent"
    )]
    pub external_cidr_nat: Option<Cidr>,
}

/// A validated standalone configuration.
#[derive(Debug, Clone)]
pub struct StandaloneConfig {
    pub listen: SocketAddr,
    pub ipam: IpamConfig,
    pub peers: Vec<PeerSpec>,
    /// Who may call (none: anyone who reaches `listen`).
    pub auth: Option<crate::grpc::auth::AuthConfig>,
}

/// Reads and checks the peers file: YAML list, unique cluster IDs.
pub fn read_peers(path: &Path) -> anyhow::Result<Vec<PeerSpec>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read peers file {}", path.display()))?;
    let peers: Vec<PeerSpec> = serde_yaml::from_str(&text)
        .with_context(|| format!("invalid peers file {}", path.display()))?;
    let mut seen = BTreeSet::new();
    for p in &peers {
        if !seen.insert(p.cluster_id.clone()) {
            bail!(
                "peers file {}: cluster {} appears twice",
                path.display(),
                p.cluster_id
            );
        }
    }
    Ok(peers)
}

/// Builds the IPAM configuration; pools default to RFC 1918.
pub fn ipam_config(
    pod_cidr: Cidr,
    service_cidr: Option<Cidr>,
    external_cidr: Option<Cidr>,
    pools: Vec<Cidr>,
    reserved: Vec<Cidr>,
) -> IpamConfig {
    let pools = if pools.is_empty() {
        default_pools()
    } else {
        pools
    };
    IpamConfig {
        pod_cidr,
        service_cidr,
        external_cidr,
        pools,
        reserved,
    }
}

/// Describes one decision for the log: accepted as-is or remapped.
fn decision(what: &str, real: Cidr, view: Cidr) -> String {
    if real == view {
        format!("{what} {real} accepted as-is")
    } else {
        format!("{what} {real} remapped to {view}")
    }
}

/// Brings the IPAM's peers in line with the file and logs every decision.
pub async fn apply_peers(ipam: &DurableIpam, peers: &[PeerSpec]) -> anyhow::Result<()> {
    let wanted: BTreeSet<ClusterId> = peers.iter().map(|p| p.cluster_id.clone()).collect();
    let stale: Vec<ClusterId> = ipam.read(|i| {
        i.peers()
            .map(|(c, _)| c.clone())
            .filter(|c| !wanted.contains(c))
            .collect()
    })?;
    for cluster in stale {
        ipam.remove_peer(&cluster).await?;
        tracing::info!(peer = %cluster, "peer no longer in the peers file: unpeered, its addresses freed");
    }
    for p in peers {
        ipam.upsert_peer(&p.cluster_id, p.pod_cidr, p.external_cidr)
            .await
            .with_context(|| format!("peer {}", p.cluster_id))?;
        let n: PeerNetworks = ipam
            .set_peer_view(&p.cluster_id, p.pod_cidr_nat, p.external_cidr_nat)
            .await
            .with_context(|| format!("peer {}", p.cluster_id))?;
        tracing::info!(
            peer = %p.cluster_id,
            "{}; {}; it addresses our pods as {} and our ExternalCIDR as {}",
            decision("Pod CIDR", n.remote_pod, n.remote_pod_view),
            decision("ExternalCIDR", n.remote_external, n.remote_external_view),
            n.local_pod_nat.map_or("ours (as-is)".to_owned(), |c| c.to_string()),
            n.local_external_nat.map_or("ours (as-is)".to_owned(), |c| c.to_string()),
        );
    }
    Ok(())
}

/// Opens the state in `store`, applies the peers, serves gRPC until SIGINT/SIGTERM.
pub async fn run<S: Store>(config: StandaloneConfig, store: S) -> anyhow::Result<()> {
    let auth = match &config.auth {
        None => None,
        Some(auth) => {
            let client = isthmus_kubeclient::client().await.context(
                "--grpc-auth needs a Kubernetes client (KUBECONFIG or in-cluster) for TokenReview",
            )?;
            let reviewer = std::sync::Arc::new(crate::grpc::auth::KubeTokenReviewer::new(client));
            Some(crate::grpc::auth::Authenticator::new(
                reviewer,
                auth.clone(),
            ))
        }
    };
    let ipam = DurableIpam::open(&config.ipam, store).await?;
    let (local, transit) = ipam.read(|i| (i.local().clone(), i.transit_ip()))?;
    tracing::info!(
        pod_cidr = %local.pod_cidr,
        service_cidr = ?local.service_cidr,
        external_cidr = %local.external_cidr,
        %transit,
        store = ipam.store_name(),
        "IPAM ready"
    );
    apply_peers(&ipam, &config.peers).await?;
    let listener = crate::grpc::bind(config.listen).await?;
    let checked = if auth.is_some() {
        "callers' tokens checked by TokenReview"
    } else {
        "open"
    };
    tracing::info!(listen = %listener.local_addr()?, "serving gRPC (ipam: {checked}; health, reflection)");
    let metrics = isthmus_telemetry::metrics::Grpc::default();
    crate::grpc::serve(ipam, metrics, auth, listener, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
