//! `isthmus route-agent`: the lab entry (`daemons::route_agent::run`) on a node's network
//! namespace installs `proto 154` routes via the gateway node, keeps them across a restart and
//! removes them when the TunnelEndpoint goes (root; fails otherwise); the binary refuses bad flags.

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

use isthmus::daemons::route_agent::run;
use isthmus_api::{TunnelEndpoint, TunnelEndpointSpec};
use isthmus_dataplane::lab::{NsGuard, ip, require_root, unique};
use isthmus_memkube::MemKube;
use isthmus_route_agent::RouteAgentConfig;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const NS: &str = "isthmus";

async fn api() -> (MemKube, Client) {
    let kube = MemKube::new();
    for crd in isthmus_api::all_crds() {
        kube.register_crd(&crd).unwrap();
    }
    let client = kube.client();
    kube.create_namespace(NS).unwrap();
    (kube, client)
}

/// TunnelEndpoint `b` (we address b's pods as 10.3.0.0/16, its ExternalCIDR as 10.4.0.0/16),
/// its gateway on node `gw-1` at `gateway`.
async fn peer_b(client: &Client, gateway: Ipv4Addr) {
    let c = |s: &str| s.parse().unwrap();
    let spec = TunnelEndpointSpec {
        cluster_id: "b".parse().unwrap(),
        local_pod_cidr: c("10.0.0.0/16"),
        local_nat_pod_cidr: c("10.0.0.0/16"),
        local_external_cidr: c("10.1.0.0/16"),
        local_nat_external_cidr: c("10.1.0.0/16"),
        remote_pod_cidr: c("10.0.0.0/16"),
        remote_nat_pod_cidr: c("10.3.0.0/16"),
        remote_external_cidr: c("10.1.0.0/16"),
        remote_nat_external_cidr: c("10.4.0.0/16"),
        endpoint: "192.168.100.2:51820".into(),
        backend_type: Default::default(),
        backend_config: Default::default(),
    };
    let api: Api<TunnelEndpoint> = Api::namespaced(client.clone(), NS);
    api.create(&PostParams::default(), &TunnelEndpoint::new("b", spec))
        .await
        .unwrap();
    let status = serde_json::json!({"status": {"gatewayNode": "gw-1", "gatewayIP": gateway}});
    api.patch_status("b", &PatchParams::default(), &Patch::Merge(status))
        .await
        .unwrap();
}

fn start(
    client: &Client,
    node_ns: &NsGuard,
) -> (oneshot::Sender<()>, JoinHandle<anyhow::Result<()>>) {
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(run(
        RouteAgentConfig::new("worker-1", NS),
        client.clone(),
        node_ns.netns(),
        None,
        async move {
            let _ = rx.await;
        },
    ));
    (tx, task)
}

async fn stop((tx, task): (oneshot::Sender<()>, JoinHandle<anyhow::Result<()>>)) {
    let _ = tx.send(());
    let r = tokio::time::timeout(Duration::from_secs(10), task).await;
    r.expect("agent stops").unwrap().unwrap();
}

async fn wait_routes(ns: &str, want: &[&str]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let got: Vec<String> = ip(ns, "route show proto 154")
            .unwrap()
            .lines()
            .map(|l| l.trim().to_owned())
            .collect();
        if got == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "routes in {ns}: {got:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lab_entry_routes_a_node_namespace_and_survives_a_restart() {
    require_root();
    let base = unique("ist");
    let worker = NsGuard::new(format!("{base}-w")).unwrap();
    let gateway = NsGuard::new(format!("{base}-g")).unwrap();
    let link = format!("link add v0 type veth peer name v1 netns {}", gateway.name);
    ip(&worker.name, &link).unwrap();
    ip(&worker.name, "addr add 192.168.78.2/24 dev v0").unwrap();
    ip(&worker.name, "link set v0 up").unwrap();
    ip(&gateway.name, "addr add 192.168.78.1/24 dev v1").unwrap();
    ip(&gateway.name, "link set v1 up").unwrap();

    let (_kube, client) = api().await;
    let agent = start(&client, &worker);
    peer_b(&client, Ipv4Addr::new(192, 168, 78, 1)).await;
    let want = [
        "10.3.0.0/16 via 192.168.78.1 dev v0",
        "10.4.0.0/16 via 192.168.78.1 dev v0",
    ];
    wait_routes(&worker.name, &want).await;
    stop(agent).await;
    wait_routes(&worker.name, &want).await;

    let agent = start(&client, &worker);
    let teps: Api<TunnelEndpoint> = Api::namespaced(client.clone(), NS);
    teps.delete("b", &DeleteParams::default()).await.unwrap();
    wait_routes(&worker.name, &[]).await;
    stop(agent).await;
}

/// Runs the binary's route-agent with `args`; returns (exit code, stderr).
fn route_agent(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_isthmus"))
        .arg("route-agent")
        .args(args)
        .env_remove("NODE_NAME")
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .expect("cannot run the isthmus binary");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_flags_are_refused_before_anything_is_contacted() {
    let cases: [(&[&str], i32, &str); 5] = [
        (&[], 2, "--node-name"),
        (&["--node-name", "Bad_Node"], 1, "node name"),
        (&["--node-name", "n1", "--namespace", "a.b"], 1, "namespace"),
        (
            &["--node-name", "n1", "--resync", "0s"],
            2,
            "more than zero",
        ),
        (&["--node-name", "n1"], 1, "Kubernetes client"),
    ];
    for (args, code, message) in cases {
        let (got, stderr) = route_agent(args);
        assert_eq!(got, Some(code), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
}
