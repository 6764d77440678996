//! Shared fixtures of the end-to-end tests: a lab brought up in this process, polling with a
//! deadline, and the kernel and API checks the tests make.
#![allow(dead_code)]

use std::future::Future;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use isthmus::lab::cluster::NAMESPACE;
use isthmus::lab::plan::Shape;
use isthmus::lab::reflector::Reflection;
use isthmus::lab::runner::{Lab, LabOptions};
use isthmus_api::{ForeignCluster, NatMapping, NetworkConfig, TunnelEndpoint};
use isthmus_lab::probe::{EchoServer, EchoSession};
use kube::Api;
use kube::api::ListParams;

/// The options every end-to-end lab starts from: this build's `isthmus` binary for the pods, and
/// the API servers the environment names (memkube unless `ISTHMUS_KUBECONFIGS` or
/// `KUBEBUILDER_ASSETS` says otherwise).
pub fn options() -> LabOptions {
    LabOptions {
        binary: Some(env!("CARGO_BIN_EXE_isthmus").into()),
        source: isthmus_kubetarget::Source::from_env().expect("ISTHMUS_KUBECONFIGS is valid"),
        ..LabOptions::default()
    }
}

/// Builds, peers and exposes pods; panics (after removing everything) when any step fails.
pub async fn lab_up(clusters: usize, shape: Shape) -> Lab {
    lab_with(LabOptions {
        clusters,
        shape,
        ..options()
    })
    .await
}

/// Same, with options.
pub async fn lab_with(options: LabOptions) -> Lab {
    isthmus_lab::require_root();
    let mut lab = Lab::start(options).await.expect("lab starts");
    lab.peer_all().await.expect("every tunnel connects");
    lab.reflect_all().await.expect("every pod is exposed");
    let matrix = lab.wait_full_connectivity(Duration::from_secs(30)).await;
    assert!(matrix.all_reachable(), "{}", matrix.render_list());
    lab
}

/// Polls `check` every 100 ms until it holds; panics with `what` after `timeout`. Returns how
/// long it took.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    started.elapsed()
}

/// One ping from a pod of `cluster` (by pod index) to `address`.
pub async fn ping(lab: &Lab, cluster: usize, pod: usize, address: Ipv4Addr) -> bool {
    let src = lab.pods(cluster)[pod].clone();
    tokio::task::spawn_blocking(move || {
        isthmus_lab::probe::ping_rtt(&src, address, 2, Duration::from_millis(500))
            .unwrap()
            .is_some()
    })
    .await
    .unwrap()
}

/// The reflection of pod `pod` of `to` into `from`.
pub fn reflection<'a>(lab: &'a Lab, from: usize, to: usize, pod: &str) -> &'a Reflection {
    lab.reflections
        .iter()
        .find(|r| r.from == from && r.to == to && r.pod == pod)
        .unwrap_or_else(|| panic!("no reflection of {to}/{pod} into {from}"))
}

/// `ip -n NS …` output.
pub fn ip(ns: &str, args: &str) -> String {
    isthmus_dataplane::lab::ip(ns, args).unwrap_or_else(|e| panic!("ip -n {ns} {args}: {e}"))
}

/// Our routes (proto 153) in a namespace.
pub fn our_routes(ns: &str) -> String {
    ip(ns, "route show proto 153")
}

/// `nft list table inet isthmus` in a namespace, empty when the table does not exist.
pub fn our_table(ns: &str) -> String {
    isthmus_dataplane::lab::run(&[
        "ip", "netns", "exec", ns, "nft", "list", "table", "inet", "isthmus",
    ])
    .unwrap_or_default()
}

/// `nft list table inet isthmus-node` (the route agent's) in a namespace, empty when absent.
pub fn node_table(ns: &str) -> String {
    isthmus_dataplane::lab::run(&[
        "ip",
        "netns",
        "exec",
        ns,
        "nft",
        "list",
        "table",
        "inet",
        "isthmus-node",
    ])
    .unwrap_or_default()
}

/// Whether the namespace has a link called `name`.
pub fn has_link(ns: &str, name: &str) -> bool {
    isthmus_dataplane::lab::run(&["ip", "-n", ns, "link", "show", name]).is_ok()
}

/// Every isthmus object of one cluster's API, as `kind/name` strings.
pub async fn isthmus_objects(lab: &Lab, cluster: usize) -> Vec<String> {
    let client = lab.clusters[cluster].client();
    let lp = ListParams::default();
    let mut out = Vec::new();
    let fcs: Api<ForeignCluster> = Api::all(client.clone());
    out.extend(
        fcs.list(&lp)
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|o| format!("ForeignCluster/{}", name(&o.metadata))),
    );
    // received NetworkConfigs live in the peers' namespaces
    let ncs: Api<NetworkConfig> = Api::all(client.clone());
    out.extend(
        ncs.list(&lp)
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|o| format!("NetworkConfig/{}", name(&o.metadata))),
    );
    let teps: Api<TunnelEndpoint> = Api::namespaced(client.clone(), NAMESPACE);
    out.extend(
        teps.list(&lp)
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|o| format!("TunnelEndpoint/{}", name(&o.metadata))),
    );
    let nms: Api<NatMapping> = Api::namespaced(client, NAMESPACE);
    out.extend(
        nms.list(&lp)
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|o| format!("NatMapping/{}", name(&o.metadata))),
    );
    out
}

fn name(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    meta.name.clone().unwrap_or_default()
}

/// Cluster `i`'s TunnelEndpoint for cluster `j`.
pub async fn tep(lab: &Lab, i: usize, j: usize) -> Option<TunnelEndpoint> {
    let api: Api<TunnelEndpoint> = Api::namespaced(lab.clusters[i].client(), NAMESPACE);
    api.get_opt(lab.clusters[j].site.id.as_str()).await.unwrap()
}

/// The gateway node namespace of cluster `i`.
pub fn gateway_ns(lab: &Lab, i: usize) -> String {
    lab.topology.clusters[i].gateway().namespace.clone()
}

/// A long-lived TCP echo session from a's first pod to b's first pod (at the address a was
/// handed), a numbered line every `interval`, each waited for up to `timeout`; and its server.
pub async fn echo_a_to_b(
    lab: &Lab,
    port: u16,
    interval: Duration,
    timeout: Duration,
) -> (EchoServer, EchoSession) {
    let server_pod = lab.pods(1)[0].clone();
    let server = EchoServer::start(&server_pod, port).unwrap();
    let dst = reflection(lab, 0, 1, &server_pod.name).address();
    let client = lab.pods(0)[0].clone();
    let session = tokio::task::spawn_blocking(move || {
        EchoSession::open(&client, dst, port, interval, timeout)
    })
    .await
    .unwrap()
    .unwrap();
    (server, session)
}
