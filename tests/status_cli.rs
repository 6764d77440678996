//! `isthmus status` as an operator runs it: the built binary against an in-memory API served
//! over HTTP, holding the bench fixture (peers connected and connecting) plus a peer still
//! waiting and a NetworkConfig too invalid to parse. Checks the JSON fields, the table rows, the
//! `--lab` lookup and the exit code and message of each way the API can fail to be read.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Output;

use isthmus::bench::status_fixture::{self, FixtureShape, NAMESPACE};
use isthmus_api::ForeignCluster;
use isthmus_memkube::{HttpServer, MemKube};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

const PEERS: usize = 12;
const PER_PEER: usize = 3;

async fn run(args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_isthmus"))
        .arg("status")
        .args(args)
        .output()
        .await
        .expect("isthmus runs")
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn failure(out: &Output) -> String {
    assert!(!out.status.success(), "expected a failure, got success");
    String::from_utf8(out.stderr.clone()).unwrap()
}

async fn serve(kube: &MemKube) -> HttpServer {
    kube.serve_http(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap()
}

/// A peer `waiting` with only a ForeignCluster, and an invalid NetworkConfig from `broken`.
async fn add_problem_peers(client: &kube::Client) {
    let fcs: Api<ForeignCluster> = Api::all(client.clone());
    let fc: ForeignCluster = serde_json::from_value(json!({
        "apiVersion": "net.isthmus.io/v1alpha1", "kind": "ForeignCluster",
        "metadata": {"name": "waiting"},
        "spec": {"clusterID": "waiting", "labCluster": "waiting"},
    }))
    .unwrap();
    fcs.create(&PostParams::default(), &fc).await.unwrap();
    let status = json!({"status": {"phase": "Peering", "conditions": [{
        "type": "PeerProcessed", "status": "False", "reason": "Waiting",
        "message": "the peer has not processed our NetworkConfig yet",
        "lastTransitionTime": "2025-01-01T00:00:00Z"}]}});
    fcs.patch_status("waiting", &PatchParams::default(), &Patch::Merge(status))
        .await
        .unwrap();
    let ar = ApiResource::erase::<isthmus_api::NetworkConfig>(&());
    let home = isthmus_api::peer_namespace(NAMESPACE, &"broken".parse().unwrap());
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &Default::default(),
            &serde_json::from_value(json!({"metadata": {"name": home}})).unwrap(),
        )
        .await
        .unwrap();
    let ncs: Api<DynamicObject> = Api::namespaced_with(client.clone(), &home, &ar);
    let raw = json!({
        "apiVersion": "net.isthmus.io/v1alpha1", "kind": "NetworkConfig",
        "metadata": {"name": "broken", "namespace": home},
        "spec": {"clusterID": "hub", "originClusterID": "broken",
                 "podCIDR": "10.0.0.1/16", "externalCIDR": "10.1.0.0/16",
                 "endpoint": "192.168.100.99:51820", "backendType": "wireguard",
                 "backendConfig": {"publicKey": "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="}},
    });
    ncs.create(
        &PostParams::default(),
        &serde_json::from_value(raw).unwrap(),
    )
    .await
    .unwrap();
    let status = json!({"status": {"processed": false, "conditions": [{
        "type": "Processed", "status": "False", "reason": "InvalidSpec",
        "message": "podCIDR 10.0.0.1/16 has host bits set",
        "lastTransitionTime": "2025-01-01T00:00:00Z"}]}});
    ncs.patch_status("broken", &PatchParams::default(), &Patch::Merge(status))
        .await
        .unwrap();
}

async fn cluster() -> (MemKube, HttpServer) {
    let kube = MemKube::new();
    for crd in isthmus_api::all_crds() {
        kube.register_crd(&crd).unwrap();
    }
    kube.create_namespace(NAMESPACE).unwrap();
    let shape = FixtureShape {
        peers: PEERS,
        mappings_per_peer: PER_PEER,
    };
    status_fixture::populate(&kube.client(), shape, Timestamp::now())
        .await
        .unwrap();
    add_problem_peers(&kube.client()).await;
    let server = serve(&kube).await;
    (kube, server)
}

fn peer<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["clusterID"] == id)
        .unwrap_or_else(|| panic!("no peer {id}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_reports_every_peer_and_the_ipam_usage() {
    let (_kube, server) = cluster().await;
    let out = run(&["--server", &server.url(), "-o", "json"]).await;
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["formatVersion"], 1);
    assert_eq!(report["clusterID"], "hub");
    assert_eq!(report["namespace"], NAMESPACE);
    let summary = &report["summary"];
    assert_eq!(summary["peers"], PEERS + 2);
    assert_eq!(summary["connected"], PEERS - 1, "p009 is connecting");
    assert_eq!(summary["connecting"], 1);
    assert_eq!(summary["error"], 1);
    assert_eq!(summary["pending"], 1);
    assert_eq!(
        summary["text"],
        "11/14 peers connected; error: broken (InvalidSpec); connecting: p009; pending: waiting (Waiting)"
    );
    let p1 = peer(&report, "p001");
    assert_eq!(p1["state"], "connected");
    assert_eq!(
        (p1["rxBytes"].as_u64(), p1["txBytes"].as_u64()),
        (Some(2000), Some(4000))
    );
    assert_eq!(p1["rttMs"], 0.501);
    let age = p1["handshakeAgeSeconds"].as_u64().unwrap();
    assert!(
        (1..60).contains(&age),
        "handshake 1 s ago when written: {age}"
    );
    assert_eq!(p1["natMappings"], PER_PEER);
    assert_eq!(p1["gatewayIP"], "172.16.0.10");
    assert_eq!(p1["nat"]["peerPods"]["addressedAs"], "10.100.2.0/24");
    assert_eq!(p1["nat"]["peerPods"]["remapped"], true);
    assert_eq!(p1["nat"]["localExternal"]["remapped"], false);
    let p9 = peer(&report, "p009");
    assert_eq!(p9["state"], "connecting");
    assert_eq!(p9["message"], "no reply to the last 2 probes");
    let broken = peer(&report, "broken");
    assert_eq!(
        (&broken["state"], &broken["reason"]),
        (&json!("error"), &json!("InvalidSpec"))
    );
    assert!(
        broken["warnings"][0]
            .as_str()
            .unwrap()
            .contains("cannot be read")
    );
    let waiting = peer(&report, "waiting");
    assert_eq!(
        (&waiting["state"], &waiting["tunnelEndpoint"]),
        (&json!("pending"), &json!(false))
    );
    let external = &report["usage"]["external"];
    assert_eq!(external["cidr"], "10.2.0.0/16");
    assert_eq!(external["allocated"], PEERS * PER_PEER);
    assert_eq!(external["available"], 65_533 - PEERS * PER_PEER);
    let pool = &report["usage"]["pools"][0];
    // Pod, Service and External /16s, and two /24 views per peer.
    assert_eq!(pool["allocated"], 3 * 65_536 + 2 * PEERS * 256);
    assert_eq!(report["warnings"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_table_has_a_summary_and_a_row_per_peer() {
    let (_kube, server) = cluster().await;
    let out = run(&["--server", &server.url()]).await;
    let text = stdout(&out);
    assert!(
        text.starts_with("cluster hub: 11/14 peers connected; error: broken (InvalidSpec)"),
        "{text}"
    );
    for i in 0..PEERS {
        let id = status_fixture::peer_id(i);
        let state = if status_fixture::connected(i) {
            "connected"
        } else {
            "connecting"
        };
        assert!(
            text.lines()
                .any(|l| l.split_whitespace().take(2).eq([id.as_str(), state])),
            "no row for {id}:\n{text}"
        );
    }
    assert!(
        text.contains("\n  └ InvalidSpec: podCIDR 10.0.0.1/16 has host bits set\n"),
        "{text}"
    );
    assert!(
        text.contains("ExternalCIDR  10.2.0.0/16  36 of 65533 mapped"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lab_cluster_is_found_through_the_lab_state() {
    let (kube, server) = cluster().await;
    let dir = tempfile::tempdir().unwrap();
    write_lab_state(dir.path(), &server.url(), &kube.admin_token());
    let state_dir = dir.path().to_str().unwrap();
    let out = run(&["--lab", "b", "--lab-dir", state_dir, "-o", "json"]).await;
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["server"], server.url());
    let out = run(&["--lab", "q", "--lab-dir", state_dir]).await;
    assert!(failure(&out).contains("the lab has no cluster \"q\" (it has a, b)"));
    let empty = tempfile::tempdir().unwrap();
    let out = run(&["--lab", "b", "--lab-dir", empty.path().to_str().unwrap()]).await;
    assert!(failure(&out).contains("no lab is running"));
}

/// A ready lab of this (live) process whose cluster `b` is served at `url` (its admin
/// kubeconfig written next to the state, as the lab does).
fn write_lab_state(dir: &Path, url: &str, token: &str) {
    let kubeconfig = dir.join("b.kubeconfig");
    std::fs::write(
        &kubeconfig,
        isthmus_memkube::kubeconfig_yaml(url, None, token, "isthmus"),
    )
    .unwrap();
    let state = json!({
        "pid": std::process::id(), "phase": "ready", "shape": "hub",
        "clusters": [
            {"id": "a", "api_url": "http://127.0.0.1:9", "grpc": "127.0.0.1:9"},
            {"id": "b", "api_url": url, "grpc": "127.0.0.1:9", "kubeconfig": kubeconfig},
        ],
        "peerings": [], "reflections": [],
        "timings": {"topology": {"secs": 0, "nanos": 0}, "components": {"secs": 0, "nanos": 0},
                    "peered": {"secs": 0, "nanos": 0}, "reflected": {"secs": 0, "nanos": 0}},
    });
    std::fs::write(dir.join("lab.json"), state.to_string()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_to_read_exit_non_zero_and_say_why() {
    // Nothing listens: unreachable.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let out = run(&["--server", &format!("http://{closed}"), "--timeout", "2"]).await;
    let err = failure(&out);
    assert!(
        err.contains(&format!(
            "cannot reach the Kubernetes API at http://{closed}"
        )),
        "{err}"
    );
    // An API without the CRDs.
    let bare = MemKube::new();
    let bare_server = serve(&bare).await;
    let err = failure(&run(&["--server", &bare_server.url()]).await);
    assert!(err.contains("the isthmus CRDs are not installed"), "{err}");
    assert!(
        err.contains("TunnelEndpoint, NetworkConfig, ForeignCluster, NatMapping, IpamStorage"),
        "{err}"
    );
    // CRDs, but nothing in the namespace asked for.
    let (_kube, server) = cluster().await;
    let err = failure(&run(&["--server", &server.url(), "-n", "elsewhere"]).await);
    assert!(
        err.contains("isthmus is not installed in namespace elsewhere"),
        "{err}"
    );
    assert!(err.contains("although 13 ForeignClusters exist"), "{err}");
}

/// A kubeconfig whose current context `down` points at a closed port and whose context `up`
/// points at `url`.
fn write_kubeconfig(path: &Path, url: &str, closed: &str) {
    let config = format!(
        "apiVersion: v1
kind: Config
current-context: down
clusters:
- {{name: up, cluster: {{server: \"{url}\"}}}}
- {{name: down, cluster: {{server: \"{closed}\"}}}}
users:
- {{name: nobody, user: {{}}}}
contexts:
- {{name: up, context: {{cluster: up, user: nobody}}}}
- {{name: down, context: {{cluster: down, user: nobody}}}}
"
    );
    std::fs::write(path, config).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubeconfig_and_context_select_the_cluster() {
    let (_kube, server) = cluster().await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config");
    write_kubeconfig(&path, &server.url(), &closed);
    let file = path.to_str().unwrap();
    let out = run(&["--kubeconfig", file, "--context", "up", "-o", "json"]).await;
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["clusterID"], "hub");
    // The current context is used when none is named, from --kubeconfig or from KUBECONFIG.
    let err = failure(&run(&["--kubeconfig", file, "--timeout", "2"]).await);
    assert!(
        err.contains(&format!("cannot reach the Kubernetes API at {closed}")),
        "{err}"
    );
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_isthmus"))
        .args(["status", "--context", "up"])
        .env("KUBECONFIG", &path)
        .output()
        .await
        .unwrap();
    assert!(stdout(&out).starts_with("cluster hub: "));
    let err = failure(&run(&["--kubeconfig", file, "--context", "nope"]).await);
    assert!(err.contains("cannot load the kubeconfig"), "{err}");
}
