//! The network-manager's Kubernetes mode (`run_kube`) against memkube: two clusters peer through
//! ForeignClusters, the gRPC IPAM answers and its reflections reach the NatMapping, the IPAM state
//! lives in IpamStorage objects and survives a restart; and the binary refuses bad flags before it
//! contacts anything.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use isthmus::daemons::network_manager::{IPAM_STORAGE_NAME, KubeModeConfig, run_kube};
use isthmus::grpc::auth::{AllowList, AuthConfig, DEFAULT_AUDIENCE};
use isthmus::grpc::client::{AuthedIpamClient, BearerToken};
use isthmus::grpc::pb::MapRequest;
use isthmus_api::{ForeignCluster, ForeignClusterSpec, IpamStorage, NatMapping, TunnelEndpoint};
use isthmus_ipam::{IpamConfig, default_pools};
use isthmus_memkube::MemKube;
use isthmus_network_manager::{Backoff, LabPeers, LocalGateway, NetworkManagerConfig};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const NS: &str = "isthmus";
/// The ServiceAccount allowed to call the gRPC IPAM.
const IPAM_CLIENT: &str = "ipam-client";
const SHARDS: u32 = 4;

/// One cluster: its API, and its network-manager in Kubernetes mode when running.
struct Cluster {
    name: String,
    index: u8,
    client: Client,
    kube: MemKube,
    running: Option<(oneshot::Sender<()>, JoinHandle<anyhow::Result<()>>)>,
    addr: Option<SocketAddr>,
}

impl Cluster {
    async fn new(name: &str, index: u8) -> Cluster {
        let kube = MemKube::new();
        for crd in isthmus_api::all_crds() {
            kube.register_crd(&crd).unwrap();
        }
        let client = kube.client();
        kube.create_namespace(NS).unwrap();
        let sa = serde_json::json!({"metadata": {"name": IPAM_CLIENT, "namespace": NS}});
        Api::<ServiceAccount>::namespaced(client.clone(), NS)
            .create(&PostParams::default(), &serde_json::from_value(sa).unwrap())
            .await
            .unwrap();
        Cluster {
            name: name.into(),
            index,
            client,
            kube,
            running: None,
            addr: None,
        }
    }

    fn config(&self) -> KubeModeConfig {
        let gateway = LocalGateway {
            endpoint: format!("192.168.200.{}:51820", self.index),
            public_key: format!("{:A<43}=", format!("Key{}", self.name)),
        };
        let mut manager = NetworkManagerConfig::new(self.name.parse().unwrap(), NS, gateway);
        manager.backoff = Backoff {
            min: Duration::from_millis(50),
            max: Duration::from_millis(500),
        };
        manager.pending_recheck = Duration::from_secs(2);
        let ipam = IpamConfig {
            pod_cidr: "10.0.0.0/16".parse().unwrap(),
            service_cidr: Some("10.1.0.0/16".parse().unwrap()),
            external_cidr: None,
            pools: default_pools(),
            reserved: vec![],
        };
        KubeModeConfig {
            manager,
            ipam,
            ipam_shards: SHARDS,
            metrics_listen: None,
            identity: format!("{}-nm", self.name),
            grpc_auth: AuthConfig {
                audience: DEFAULT_AUDIENCE.into(),
                allowed: AllowList::new([format!("{NS}/{IPAM_CLIENT}").parse().unwrap()]),
                cache_ttl: Duration::from_secs(60),
            },
        }
    }

    async fn start(&mut self, peers: &Arc<LabPeers>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        self.addr = Some(listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(run_kube(
            self.config(),
            self.client.clone(),
            peers.clone(),
            listener,
            async move {
                let _ = rx.await;
            },
        ));
        self.running = Some((tx, task));
    }

    async fn stop(&mut self) {
        let (tx, task) = self.running.take().expect("running");
        let _ = tx.send(());
        let r = tokio::time::timeout(Duration::from_secs(30), task).await;
        r.expect("run_kube stops").unwrap().unwrap();
    }

    /// A gRPC client with a token of the allowed ServiceAccount, minted for the IPAM.
    async fn grpc(&self) -> AuthedIpamClient {
        let url = format!("http://{}", self.addr.unwrap());
        let channel = tonic::transport::Channel::from_shared(url)
            .unwrap()
            .connect()
            .await
            .unwrap();
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                audiences: Some(vec![DEFAULT_AUDIENCE.into()]),
                ..TokenRequestSpec::default()
            }),
            ..TokenRequest::default()
        };
        let minted = Api::<ServiceAccount>::namespaced(self.client.clone(), NS)
            .create_token_request(IPAM_CLIENT, &PostParams::default(), &request)
            .await
            .unwrap();
        let token = minted.status.and_then(|s| s.token).unwrap();
        BearerToken::new(&token).unwrap().client(channel)
    }

    async fn map(&self, peer: &str, ip: &str) -> String {
        let req = MapRequest {
            cluster_id: peer.into(),
            ip: ip.into(),
        };
        let mut c = self.grpc().await;
        c.map_endpoint_ip(req).await.unwrap().into_inner().ip
    }

    /// The ForeignCluster for `peer` and, as `isthmus peer` makes it, the namespace each writes
    /// its NetworkConfig into in the other's API.
    async fn add_peer(&self, peer: &Cluster) {
        for (site, of) in [(self, peer), (peer, self)] {
            let ns = isthmus_api::peer_namespace(NS, &of.name.parse().unwrap());
            if let Err(e) = site.kube.create_namespace(&ns) {
                assert!(e.to_string().contains("already exists"), "{e}");
            }
        }
        let spec = ForeignClusterSpec {
            cluster_id: peer.name.parse().unwrap(),
            kubeconfig_secret_ref: None,
            lab_cluster: Some(peer.name.clone()),
        };
        Api::<ForeignCluster>::all(self.client.clone())
            .create(
                &PostParams::default(),
                &ForeignCluster::new(&peer.name, spec),
            )
            .await
            .unwrap();
    }

    async fn tep(&self, peer: &str) -> Option<TunnelEndpoint> {
        let api: Api<TunnelEndpoint> = Api::namespaced(self.client.clone(), NS);
        api.get_opt(peer).await.unwrap()
    }

    /// The first NatMapping shard of `peer` (found by label).
    async fn nat_mapping(&self, peer: &str) -> Option<NatMapping> {
        let api: Api<NatMapping> = Api::namespaced(self.client.clone(), NS);
        let of_peer = kube::api::ListParams::default()
            .labels(&format!("{}={peer}", isthmus_api::LABEL_REMOTE_CLUSTER));
        api.list(&of_peer).await.unwrap().items.into_iter().next()
    }
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clusters_peer_serve_the_ipam_and_keep_its_state_across_a_restart() {
    let mut a = Cluster::new("a", 1).await;
    let mut b = Cluster::new("b", 2).await;
    let peers = Arc::new(LabPeers::new());
    peers.insert("a", a.client.clone());
    peers.insert("b", b.client.clone());
    a.start(&peers).await;
    b.start(&peers).await;
    a.add_peer(&b).await;
    b.add_peer(&a).await;
    eventually("TunnelEndpoints in both clusters", || async {
        a.tep("b").await.is_some() && b.tep("a").await.is_some()
    })
    .await;

    // Both clusters use 10.0.0.0/16: b remapped a's pods, so a local pod has another address
    // in b's view; an address outside our Pod CIDR gets one of our ExternalCIDR.
    let pod_view = a.map("b", "10.0.3.4").await;
    assert_ne!(pod_view, "10.0.3.4", "b remapped our Pod CIDR");
    let tep = a.tep("b").await.unwrap();
    let local_nat_pod = tep.spec.local_nat_pod_cidr;
    assert!(
        local_nat_pod.contains(pod_view.parse().unwrap()),
        "{pod_view} in {local_nat_pod}"
    );
    let reflected = a.map("b", "10.80.1.1").await;
    eventually("the NatMapping entry", || async {
        a.nat_mapping("b").await.is_some_and(|nm| {
            nm.spec
                .cluster_mappings
                .values()
                .any(|endpoint| endpoint.to_string() == "10.80.1.1")
        })
    })
    .await;

    let storage: Api<IpamStorage> = Api::namespaced(a.client.clone(), NS);
    let root = storage.get(IPAM_STORAGE_NAME).await.unwrap();
    assert_eq!(root.spec.layout, Some(2), "root + blocks + journal");
    let names: Vec<String> = storage
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|o| o.metadata.name)
        .collect();
    assert!(
        names.iter().any(|n| n.starts_with("ipam-j-")),
        "a journal segment holds the mapping: {names:?}"
    );

    // Restart on the same API: the state comes back from the IpamStorage objects.
    a.stop().await;
    a.start(&peers).await;
    assert_eq!(a.map("b", "10.80.1.1").await, reflected);
    assert_eq!(a.map("b", "10.0.3.4").await, pod_view);
    assert!(
        a.tep("b").await.is_some(),
        "the peering survives the restart"
    );
    a.stop().await;
    b.stop().await;
}

/// Runs the binary's network-manager with `args`; returns (exit code, stderr).
fn network_manager(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_isthmus"))
        .arg("network-manager")
        .args(args)
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("RUST_LOG", "warn")
        .output()
        .expect("cannot run the isthmus binary");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const KEY: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";

#[test]
fn bad_flags_are_refused_before_anything_is_contacted() {
    let good = [
        "--cluster-id",
        "a",
        "--pod-cidr",
        "10.0.0.0/16",
        "--gateway-endpoint",
        "192.168.1.1:51820",
        "--gateway-public-key",
        KEY,
        "--grpc-allow",
        "isthmus/ipam-client",
    ];
    let with = |name: &str, value: &str| -> Vec<String> {
        let mut v: Vec<String> = good.iter().map(|s| s.to_string()).collect();
        let i = v.iter().position(|a| a == name).unwrap();
        v[i + 1] = value.to_owned();
        v
    };
    let cases: Vec<(Vec<String>, i32, &str)> = vec![
        (with("--pod-cidr", "10.0.0.0/33"), 2, "10.0.0.0/33"),
        (with("--gateway-endpoint", "nowhere"), 1, "gateway endpoint"),
        (with("--gateway-public-key", "short="), 1, "public key"),
        (with("--cluster-id", "Not_A_Cluster"), 2, "Not_A_Cluster"),
        (
            good[2..].iter().map(|s| s.to_string()).collect(),
            1,
            "--cluster-id",
        ),
        (
            [&good[..6], &good[8..]]
                .concat()
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
            1,
            "Kubernetes client",
        ),
        (with("--grpc-allow", "no-slash"), 2, "no-slash"),
        (
            good[..8].iter().map(|s| s.to_string()).collect(),
            1,
            "--grpc-allow",
        ),
    ];
    for (args, code, message) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (got, stderr) = network_manager(&args);
        assert_eq!(got, Some(code), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
    // The IPAM configuration is checked as a whole: an ExternalCIDR inside the Pod CIDR.
    let mut args: Vec<&str> = good.to_vec();
    args.extend(["--external-cidr", "10.0.128.0/17"]);
    let (got, stderr) = network_manager(&args);
    assert_eq!(got, Some(1), "{stderr}");
    assert!(stderr.contains("IPAM configuration"), "{stderr}");
    // Good flags get as far as the (missing) Kubernetes client.
    let (got, stderr) = network_manager(&good);
    assert_eq!(got, Some(1), "{stderr}");
    assert!(stderr.contains("Kubernetes client"), "{stderr}");
}

/// The binary in Kubernetes mode against memkube served over HTTP: without
/// `--gateway-public-key` it waits (and says so) for the gateway's ConfigMap, and serves once
/// the key is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_waits_for_the_gateways_public_key_config_map() {
    use std::io::Read;
    use std::process::Stdio;

    let a = Cluster::new("a", 1).await;
    let server = a
        .kube
        .serve_http("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let yaml = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: lab\n\
         clusters: [{{name: lab, cluster: {{server: \"{}\"}}}}]\n\
         users: [{{name: lab, user: {{}}}}]\n\
         contexts: [{{name: lab, context: {{cluster: lab, user: lab, namespace: {NS}}}}}]\n",
        server.url()
    );
    std::fs::write(&kubeconfig, yaml).unwrap();
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_isthmus"))
        .args([
            "network-manager",
            "--cluster-id",
            "a",
            "--pod-cidr",
            "10.0.0.0/16",
        ])
        .args([
            "--gateway-endpoint",
            "192.168.1.1:51820",
            "--ipam-shards",
            "2",
        ])
        .args(["--listen", &addr.to_string()])
        .args(["--grpc-allow", "isthmus/ipam-client"])
        .env("KUBECONFIG", &kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "still waiting, not exited"
    );
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "nothing bound before the key is known"
    );

    let cm: k8s_openapi::api::core::v1::ConfigMap = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "isthmus-gateway-pubkey", "namespace": NS},
        "data": {"publicKey": KEY}
    }))
    .unwrap();
    Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(a.client.clone(), NS)
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
    eventually("the gRPC port", || async {
        std::net::TcpStream::connect(addr).is_ok()
    })
    .await;
    let storage: Api<IpamStorage> = Api::namespaced(a.client.clone(), NS);
    eventually("the IpamStorage root", || async {
        storage.get_opt(IPAM_STORAGE_NAME).await.unwrap().is_some()
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        stderr.contains("waiting for the gateway's public key"),
        "{stderr}"
    );
    server.shutdown().await;
}
