//! `isthmus network-manager`: the command line of the network-manager daemon and its wiring, in
//! both modes: standalone (file-backed IPAM, peers from a YAML file) and Kubernetes (IPAM state
//! in `IpamStorage` objects, the controllers of `isthmus_network_manager`, the gRPC IPAM).
//!
//! Kubernetes mode, in order: every flag validated (CIDRs, the IPAM configuration, cluster ID,
//! namespace, gateway endpoint, a given public key, who may call the gRPC IPAM); the client
//! built; the gateway's public key read from the ConfigMap the gateway publishes it in, if not
//! given (waiting for the gateway to write it; the network-manager reads no Secret of the
//! gateway's); only then the gRPC
//! port bound and [`run_kube`] started.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::Args as ClapArgs;
use isthmus_api::{BACKEND_PUBLIC_KEY, ClusterId};
use isthmus_ipam::{Cidr, IpamConfig};
use isthmus_ipam_store::{CompactionPolicy, CrashPoint, DurableIpam, KubeStore};
use isthmus_network_manager::{KubeconfigPeers, LocalGateway, NetworkManagerConfig, PeerResolver};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::daemons::telemetry::NetworkManagerProcess as Telemetry;
use crate::grpc::auth::{
    AllowList, AuthConfig, Authenticator, DEFAULT_AUDIENCE, KubeTokenReviewer, ServiceAccountRef,
};
use crate::standalone::{StandaloneConfig, ipam_config, read_peers};

/// Name of the root `IpamStorage` object (blocks are `ipam-b-<peer>-<i>`, journal segments
/// `ipam-j-<commit>`).
pub const IPAM_STORAGE_NAME: &str = "ipam";
/// Most endpoint shards accepted (each is one API object).
const MAX_IPAM_SHARDS: u32 = 1024;
/// A syntactically valid key, used to validate the rest of the configuration while the real key
/// is still to be read from the gateway's ConfigMap.
const PLACEHOLDER_KEY: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

#[derive(Debug, ClapArgs)]
pub struct Args {
    /// Run without Kubernetes: file-backed IPAM state, peers from a YAML file.
    #[arg(long)]
    pub standalone: bool,
    /// Directory of the IPAM state (standalone mode with the file store).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Where standalone mode keeps the IPAM state: `file` (--state-dir) or `kubernetes`
    /// (IpamStorage objects in --namespace, through KUBECONFIG or the in-cluster client, as the
    /// Kubernetes mode does; no controllers run).
    #[arg(long, value_enum, default_value_t = StandaloneStore::File)]
    pub ipam_store: StandaloneStore,
    /// The local Pod CIDR.
    #[arg(long)]
    pub pod_cidr: Cidr,
    /// The local Service CIDR.
    #[arg(long)]
    pub service_cidr: Option<Cidr>,
    /// The local ExternalCIDR (chosen from the pools when absent).
    #[arg(long)]
    pub external_cidr: Option<Cidr>,
    /// Address pools for the ExternalCIDR and remapping (default: the RFC 1918 ranges).
    #[arg(long = "pool", value_delimiter = ',')]
    pub pools: Vec<Cidr>,
    /// Networks never to hand out (node network, other reserved ranges); addresses in them are
    /// never endpoints either (MapEndpointIP answers INVALID_ARGUMENT).
    #[arg(long = "reserved", value_delimiter = ',')]
    pub reserved: Vec<Cidr>,
    /// YAML list of peers: clusterID, podCIDR, externalCIDR, optional podCIDRNAT/externalCIDRNAT.
    #[arg(long)]
    pub peers: Option<PathBuf>,
    /// gRPC listen address (default 127.0.0.1:6000 standalone, 0.0.0.0:6000 in Kubernetes).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// This cluster's ID (Kubernetes mode).
    #[arg(long)]
    pub cluster_id: Option<ClusterId>,
    /// Namespace of our objects: TunnelEndpoints, NatMappings, IpamStorage, received
    /// NetworkConfigs (Kubernetes mode).
    #[arg(long, default_value = "isthmus")]
    pub namespace: String,
    /// `host:port` where peers reach our gateway (Kubernetes mode).
    #[arg(long)]
    pub gateway_endpoint: Option<String>,
    /// The gateway's WireGuard public key; read from --gateway-public-key-config-map when absent.
    #[arg(long)]
    pub gateway_public_key: Option<String>,
    /// ConfigMap (in --namespace) where the gateway publishes its public key (data key
    /// `publicKey`). The network-manager reads no Secret of the gateway's.
    #[arg(long, default_value = "isthmus-gateway-pubkey")]
    pub gateway_public_key_config_map: String,
    /// Ignored: the sharded IpamStorage layout it sized is upgraded at start (kept so that old
    /// command lines still run).
    #[arg(long, default_value_t = 16, hide = true)]
    pub ipam_shards: u32,
    /// Compact the IPAM journal after this many commits (tests force frequent compactions).
    #[arg(long, default_value_t = 128, hide = true)]
    pub ipam_compact_every: u64,
    /// Test hook: abort the process at this point of an IPAM compaction (`block`, `root`,
    /// `unpeer-block`, `unpeer-root`), to prove every crash point recovers.
    #[arg(long, hide = true)]
    pub test_crash_at: Option<String>,
    /// Where `/metrics`, `/healthz` and `/readyz` are served (Kubernetes mode).
    #[arg(long, default_value = "0.0.0.0:9090")]
    pub metrics_listen: SocketAddr,
    /// This replica's name, reported on the Events it writes.
    #[arg(long, env = "POD_NAME", default_value = "isthmus-network-manager")]
    pub pod_name: String,
    /// ServiceAccounts that may call the gRPC IPAM, `namespace/name` or `namespace/*`
    /// (repeatable, or comma-separated). Kubernetes mode needs at least one.
    #[arg(long = "grpc-allow", value_delimiter = ',')]
    pub grpc_allow: Vec<ServiceAccountRef>,
    /// The audience gRPC callers' ServiceAccount tokens must be minted for.
    #[arg(long, default_value = DEFAULT_AUDIENCE)]
    pub grpc_audience: String,
    /// Seconds an admitted token is trusted without a new TokenReview (0: review every call).
    #[arg(long, default_value_t = 60)]
    pub grpc_auth_cache_seconds: u64,
    /// Standalone mode: authenticate gRPC callers through the TokenReview API of the cluster
    /// of KUBECONFIG (or in-cluster), as Kubernetes mode always does.
    #[arg(long)]
    pub grpc_auth: bool,
    /// Standalone mode: serve the gRPC IPAM without authentication on an address that is not
    /// loopback (anyone who reaches it can allocate and unmap).
    #[arg(long)]
    pub insecure_grpc: bool,
}

impl Args {
    /// Who may call the gRPC IPAM, as the flags say.
    fn auth_config(&self) -> AuthConfig {
        AuthConfig {
            audience: self.grpc_audience.clone(),
            allowed: AllowList::new(self.grpc_allow.iter().cloned()),
            cache_ttl: Duration::from_secs(self.grpc_auth_cache_seconds),
        }
    }
}

/// The store of standalone mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StandaloneStore {
    File,
    Kubernetes,
}

/// What the Kubernetes mode runs: the controllers' configuration, the IPAM's, the store's.
#[derive(Debug, Clone)]
pub struct KubeModeConfig {
    pub manager: NetworkManagerConfig,
    pub ipam: IpamConfig,
    /// Ignored (the first, sharded layout's shard count); kept for callers that set it.
    pub ipam_shards: u32,
    /// Where telemetry is served (none: not served).
    pub metrics_listen: Option<SocketAddr>,
    /// This replica's name on its Events.
    pub identity: String,
    /// Who may call the gRPC IPAM (checked through the TokenReview API of `client`).
    pub grpc_auth: AuthConfig,
}

impl KubeModeConfig {
    /// Checks everything that can be checked without I/O (the IPAM configuration by building a
    /// fresh allocator from it).
    pub fn validate(&self) -> anyhow::Result<()> {
        self.manager.validate()?;
        isthmus_ipam::Ipam::new(&self.ipam).context("IPAM configuration")?;
        self.grpc_auth.validate().map_err(|e| anyhow!(e))?;
        if !(1..=MAX_IPAM_SHARDS).contains(&self.ipam_shards) {
            bail!("--ipam-shards must be between 1 and {MAX_IPAM_SHARDS}");
        }
        Ok(())
    }
}

/// How the IPAM's `KubeStore` is run.
#[derive(Debug, Clone, Default)]
pub struct IpamStoreTuning {
    /// Compact after this many commits (0: the store's default).
    pub compact_every: u64,
    /// Abort at this compaction point (crash tests only).
    pub crash_at: Option<CrashPoint>,
}

impl IpamStoreTuning {
    /// The store, tuned.
    fn store(&self, client: kube::Client, namespace: &str) -> KubeStore {
        let mut store = KubeStore::new(client, namespace, IPAM_STORAGE_NAME);
        if self.compact_every > 0 {
            store = store.with_compaction(CompactionPolicy {
                segments: self.compact_every,
                ..CompactionPolicy::default()
            });
        }
        if let Some(at) = self.crash_at {
            store = store.with_crash_hook(Arc::new(move |point| {
                if point == at {
                    eprintln!("test hook: aborting at {point:?}");
                    std::process::abort();
                }
            }));
        }
        store
    }
}

/// `--test-crash-at` names a compaction point.
fn crash_point(text: &str) -> anyhow::Result<CrashPoint> {
    Ok(match text {
        "block" => CrashPoint::BlockWritten { unpeering: false },
        "root" => CrashPoint::RootWritten { unpeering: false },
        "unpeer-block" => CrashPoint::BlockWritten { unpeering: true },
        "unpeer-root" => CrashPoint::RootWritten { unpeering: true },
        other => bail!("--test-crash-at {other:?}: one of block, root, unpeer-block, unpeer-root"),
    })
}

/// Where the gateway's public key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum KeySource {
    Flag,
    ConfigMap(String),
}

/// Runs the network-manager as the command line asks.
pub async fn main(args: Args) -> anyhow::Result<()> {
    let tuning = IpamStoreTuning {
        compact_every: args.ipam_compact_every,
        crash_at: args.test_crash_at.as_deref().map(crash_point).transpose()?,
    };
    if args.standalone {
        return standalone(args, &tuning).await;
    }
    let (mut config, keys, listen) = kube_config(args)?;
    // every request bounded, every watch restarted when its connection dies silently
    let client = isthmus_kubeclient::client()
        .await
        .context("cannot build a Kubernetes client (in-cluster or KUBECONFIG)")?;
    // Served before anything waits, so that the kubelet's probes see a live, unready process.
    let telemetry = Telemetry::new(&client, &config.identity);
    let _server = match config.metrics_listen.take() {
        Some(addr) => Some(telemetry.serve(addr).await?),
        None => None,
    };
    if let KeySource::ConfigMap(name) = keys {
        let ns = config.manager.namespace.clone();
        let gate = telemetry.manager.health.gate(
            "gateway-key",
            &format!("waiting for the gateway's public key in ConfigMap {ns}/{name}"),
        );
        let key = tokio::select! {
            key = gateway_key(&client, &ns, &name) => key?,
            () = crate::standalone::shutdown_signal() => return Ok(()),
        };
        config.manager.gateway.public_key = key;
        config
            .manager
            .validate()
            .with_context(|| format!("ConfigMap {ns}/{name}"))?;
        gate.open();
    }
    let listener = crate::grpc::bind(listen).await?;
    let peers = Arc::new(KubeconfigPeers::new(client.clone()));
    let shutdown = crate::standalone::shutdown_signal();
    let parts = Parts {
        telemetry,
        client,
        peers,
        listener,
    };
    run_observed(config, &tuning, parts, shutdown).await
}

/// Standalone mode over the store the flags name.
async fn standalone(args: Args, tuning: &IpamStoreTuning) -> anyhow::Result<()> {
    let kind = args.ipam_store;
    let namespace = args.namespace.clone();
    let state_dir = args.state_dir.clone();
    let config = standalone_config(args)?;
    match (kind, state_dir) {
        (StandaloneStore::File, None) => bail!("--standalone needs --state-dir DIR"),
        (StandaloneStore::File, Some(dir)) => {
            let store = isthmus_ipam_store::FileStore::open(&dir)?;
            crate::standalone::run(config, store).await
        }
        (StandaloneStore::Kubernetes, Some(_)) => bail!(
            "--state-dir belongs to --ipam-store file; the Kubernetes store keeps the state in IpamStorage objects"
        ),
        (StandaloneStore::Kubernetes, None) => {
            let client = isthmus_kubeclient::client()
                .await
                .context("cannot build a Kubernetes client (in-cluster or KUBECONFIG)")?;
            let store = tuning.store(client, &namespace);
            crate::standalone::run(config, store).await
        }
    }
}

fn standalone_config(a: Args) -> anyhow::Result<StandaloneConfig> {
    let auth = if a.grpc_auth {
        let auth = a.auth_config();
        auth.validate().map_err(|e| anyhow!(e))?;
        Some(auth)
    } else {
        None
    };
    let listen = a.listen.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 6000)));
    if auth.is_none() && !listen.ip().is_loopback() {
        if !a.insecure_grpc {
            bail!(
                "--listen {listen} is not a loopback address: anyone who reaches it could allocate \
                 and unmap addresses. Add --grpc-auth (callers' tokens checked through the \
                 Kubernetes API) or, knowingly, --insecure-grpc"
            );
        }
        tracing::warn!(%listen, "the gRPC IPAM is served WITHOUT AUTHENTICATION on a non-loopback \
            address (--insecure-grpc): anyone who reaches it can allocate and unmap addresses");
    }
    let Some(peers) = a.peers else {
        bail!("--standalone needs --peers FILE")
    };
    let peers = read_peers(&peers)?;
    let ipam = ipam_config(
        a.pod_cidr,
        a.service_cidr,
        a.external_cidr,
        a.pools,
        a.reserved,
    );
    Ok(StandaloneConfig {
        listen,
        ipam,
        peers,
        auth,
    })
}

/// The Kubernetes mode's validated configuration, where the key comes from, the listen address.
fn kube_config(a: Args) -> anyhow::Result<(KubeModeConfig, KeySource, SocketAddr)> {
    if a.state_dir.is_some() || a.peers.is_some() {
        bail!(
            "--state-dir and --peers belong to --standalone; Kubernetes mode keeps its state in IpamStorage objects and its peers in ForeignClusters"
        );
    }
    if a.insecure_grpc {
        bail!(
            "--insecure-grpc belongs to --standalone; Kubernetes mode always authenticates gRPC callers"
        );
    }
    let grpc_auth = a.auth_config();
    let cluster_id = a
        .cluster_id
        .ok_or_else(|| anyhow!("Kubernetes mode needs --cluster-id (or run with --standalone)"))?;
    let endpoint = a
        .gateway_endpoint
        .ok_or_else(|| anyhow!("Kubernetes mode needs --gateway-endpoint HOST:PORT"))?;
    let keys = match &a.gateway_public_key {
        Some(_) => KeySource::Flag,
        None => KeySource::ConfigMap(a.gateway_public_key_config_map.clone()),
    };
    let gateway = LocalGateway {
        endpoint,
        public_key: a
            .gateway_public_key
            .unwrap_or_else(|| PLACEHOLDER_KEY.to_owned()),
    };
    let manager = NetworkManagerConfig::new(cluster_id, &a.namespace, gateway);
    if let KeySource::ConfigMap(name) = &keys
        && name.parse::<ClusterId>().is_err()
    {
        bail!("--gateway-public-key-config-map {name:?} is not a valid ConfigMap name");
    }
    let ipam = ipam_config(
        a.pod_cidr,
        a.service_cidr,
        a.external_cidr,
        a.pools,
        a.reserved,
    );
    let config = KubeModeConfig {
        manager,
        ipam,
        ipam_shards: a.ipam_shards,
        metrics_listen: Some(a.metrics_listen),
        identity: a.pod_name.clone(),
        grpc_auth,
    };
    config.validate()?;
    let listen = a.listen.unwrap_or(SocketAddr::from(([0, 0, 0, 0], 6000)));
    Ok((config, keys, listen))
}

/// Reads the gateway's public key from ConfigMap `namespace/name`, waiting (and saying so) until
/// the gateway has published it.
async fn gateway_key(client: &kube::Client, namespace: &str, name: &str) -> anyhow::Result<String> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let at = format!("{namespace}/{name}");
    let mut delay = Duration::from_millis(500);
    let mut said = false;
    loop {
        let why = match api.get_opt(name).await {
            Ok(Some(cm)) => match cm.data.and_then(|d| d.get(BACKEND_PUBLIC_KEY).cloned()) {
                Some(key) => {
                    tracing::info!(config_map = %at, "gateway public key read");
                    return Ok(key.trim().to_owned());
                }
                None => format!("it has no data key {BACKEND_PUBLIC_KEY:?} yet"),
            },
            Ok(None) => "it does not exist yet".to_owned(),
            Err(e) => format!("cannot read it: {e}"),
        };
        if !said {
            tracing::info!(config_map = %at,
                "waiting for the gateway's public key: {why}; retrying until the gateway writes it");
            said = true;
        } else {
            tracing::debug!(config_map = %at, "still waiting: {why}");
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

/// The Kubernetes mode: opens the IPAM over `IpamStorage` objects in the manager's namespace,
/// then serves the gRPC IPAM on `listener` and runs the network-manager controllers until
/// `shutdown` resolves. If either ends early or fails, the other is stopped and the error
/// returned.
pub async fn run_kube(
    config: KubeModeConfig,
    client: kube::Client,
    peers: Arc<dyn PeerResolver>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    config.validate()?;
    let telemetry = Telemetry::new(&client, &config.identity);
    let _server = match config.metrics_listen {
        Some(addr) => Some(telemetry.serve(addr).await?),
        None => None,
    };
    let parts = Parts {
        telemetry,
        client,
        peers,
        listener,
    };
    run_observed(config, &IpamStoreTuning::default(), parts, shutdown).await
}

/// What the Kubernetes mode runs on, made before it starts.
struct Parts {
    telemetry: Telemetry,
    client: kube::Client,
    peers: Arc<dyn PeerResolver>,
    listener: tokio::net::TcpListener,
}

/// [`run_kube`] with telemetry already made (and served, if it is).
async fn run_observed(
    config: KubeModeConfig,
    tuning: &IpamStoreTuning,
    parts: Parts,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    config.validate()?;
    let Parts {
        telemetry,
        client,
        peers,
        listener,
    } = parts;
    let ns = config.manager.namespace.clone();
    let store = tuning.store(client.clone(), &ns);
    let ipam_gate = telemetry
        .manager
        .health
        .gate("ipam", "loading the IPAM state");
    let ipam = DurableIpam::open(&config.ipam, store)
        .await
        .with_context(|| {
            format!("cannot open the IPAM state (IpamStorage {ns}/{IPAM_STORAGE_NAME})")
        })?;
    telemetry.ipam_opened(&ipam);
    ipam_gate.open();
    let (local, transit) = ipam.read(|i| (i.local().clone(), i.transit_ip()))?;
    tracing::info!(cluster = %config.manager.cluster_id, pod_cidr = %local.pod_cidr,
        external_cidr = %local.external_cidr, %transit, store = ipam.store_name(), "IPAM ready");
    warn_ignored_settings(&config.ipam, &local);
    tracing::info!(listen = %listener.local_addr()?, audience = %config.grpc_auth.audience,
        allowed = %config.grpc_auth.allowed.describe(),
        "serving gRPC (ipam: callers' tokens checked by TokenReview; health, reflection: open)");
    let reviewer = Arc::new(KubeTokenReviewer::new(client.clone()));
    let auth = Authenticator::new(reviewer, config.grpc_auth.clone());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut grpc: JoinHandle<anyhow::Result<()>> = tokio::spawn({
        let (ipam, stop) = (ipam.clone(), stopped(stop_rx.clone()));
        let metrics = telemetry.grpc.clone();
        async move { Ok(crate::grpc::serve(ipam, metrics, Some(auth), listener, stop).await?) }
    });
    let mut manager: JoinHandle<anyhow::Result<()>> = tokio::spawn({
        let stop = stopped(stop_rx);
        async move {
            let observed = telemetry.manager.clone();
            isthmus_network_manager::run_observed(
                config.manager,
                observed,
                client,
                peers,
                ipam,
                stop,
            )
            .await?;
            Ok(())
        }
    });
    let mut shutdown = std::pin::pin!(shutdown);
    let early = tokio::select! {
        () = &mut shutdown => None,
        r = &mut grpc => Some((ended("gRPC server", r), true)),
        r = &mut manager => Some((ended("network-manager controllers", r), false)),
    };
    let _ = stop_tx.send(true);
    match early {
        None => {
            let (g, m) = tokio::join!(grpc, manager);
            joined("gRPC server", g).and(joined("network-manager controllers", m))?;
        }
        Some((error, grpc_ended)) => {
            tracing::error!("{error:#}; stopping the rest");
            let other = if grpc_ended {
                manager.await
            } else {
                grpc.await
            };
            if let Err(e) = joined("stopping", other) {
                tracing::error!("{e:#}");
            }
            return Err(error);
        }
    }
    tracing::info!("network-manager stopped");
    Ok(())
}

/// Resolves once `rx` turns true (or its sender is gone).
async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// A task's outcome after shutdown was requested.
fn joined(what: &str, r: Result<anyhow::Result<()>, tokio::task::JoinError>) -> anyhow::Result<()> {
    r.map_err(|e| anyhow!("{what} panicked: {e}"))?
        .with_context(|| what.to_owned())
}

/// A task's outcome when it ended before shutdown: an error either way.
fn ended(what: &str, r: Result<anyhow::Result<()>, tokio::task::JoinError>) -> anyhow::Error {
    match joined(what, r) {
        Err(e) => e,
        Ok(()) => anyhow!("{what} stopped unexpectedly"),
    }
}

/// Pools and reserved networks are fixed by the first start; say so when the flags now differ
/// from the stored state instead of ignoring them silently.
fn warn_ignored_settings(asked: &IpamConfig, stored: &isthmus_ipam::LocalNetworks) {
    if asked.pools != stored.pools {
        tracing::warn!(stored = %cidr_list(&stored.pools), asked = %cidr_list(&asked.pools),
            "--pool differs from the IPAM state, which keeps the pools of its first start; \
             changing them needs a new IPAM state (unpeer everything, delete the IpamStorage objects)");
    }
    if asked.reserved != stored.reserved {
        tracing::warn!(stored = %cidr_list(&stored.reserved), asked = %cidr_list(&asked.reserved),
            "--reserved differs from the IPAM state, which keeps the reservations of its first start");
    }
}

/// `10.0.0.0/8, 172.16.0.0/12` (`none` when empty), for logs.
fn cidr_list(cidrs: &[Cidr]) -> String {
    if cidrs.is_empty() {
        return "none".to_owned();
    }
    cidrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
