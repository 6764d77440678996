//! The route agent with the Linux route driver in network namespaces (root; fails otherwise):
//! a worker node and a gateway node on one L2 (a veth pair), the agent in the worker's namespace
//! installs `proto 154` routes via the gateway node's address and its NAT exemption table
//! `inet isthmus-node`, leaves routes and tables it does not own alone, and removes its own when
//! the TunnelEndpoint goes.

use crate::common;

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use isthmus_dataplane::lab::{NsGuard, ip, require_root, run, unique};
use isthmus_dataplane::node_nat::nft::NftNodeNat;
use isthmus_dataplane::routes::NODE_ROUTE_PROTOCOL;
use isthmus_dataplane::routes::linux::NetlinkRoutes;
use isthmus_dataplane::{Netns, NsRuntime};

const GATEWAY_NODE: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 1);

/// `nft list table inet isthmus-node` in `ns`, empty when absent.
fn our_table(ns: &str) -> String {
    run(&[
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

/// `ip route show proto 154` in `ns`, one route per line, trimmed.
fn our_routes(ns: &str) -> Vec<String> {
    ip(ns, "route show proto 154")
        .unwrap()
        .lines()
        .map(|l| l.trim().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_linux_driver_routes_remote_ranges_to_the_gateway_node() {
    require_root();
    let base = unique("ist");
    let worker = NsGuard::new(format!("{base}-w")).unwrap();
    let gateway = NsGuard::new(format!("{base}-g")).unwrap();
    ip(
        &worker.name,
        &format!("link add v0 type veth peer name v1 netns {}", gateway.name),
    )
    .unwrap();
    ip(&worker.name, "addr add 192.168.77.2/24 dev v0").unwrap();
    ip(&worker.name, "link set v0 up").unwrap();
    ip(&gateway.name, "addr add 192.168.77.1/24 dev v1").unwrap();
    ip(&gateway.name, "link set v1 up").unwrap();
    // A route somebody else owns, through the same next hop: never touched.
    ip(&worker.name, "route add 10.9.0.0/16 via 192.168.77.1").unwrap();
    // A table somebody else owns (a CNI's masquerade): never touched.
    run(&[
        "ip",
        "netns",
        "exec",
        &worker.name,
        "nft",
        "add",
        "table",
        "ip",
        "cni-nat",
    ])
    .unwrap();

    let netns = worker.netns();
    let (driver, nat) = tokio::task::spawn_blocking(move || {
        let rt: Arc<NsRuntime> = NsRuntime::new(netns, 1)?;
        let nat = NftNodeNat::new(rt.clone());
        NetlinkRoutes::with_protocol(rt, NODE_ROUTE_PROTOCOL).map(|r| (r, nat))
    })
    .await
    .unwrap()
    .unwrap();
    let (_kube, client) = api().await;
    let agent = Agent::with_nat(
        config("worker-1", Duration::from_secs(3600)),
        &client,
        driver,
        nat,
    );
    create_tep(&client, "b", "10.3.0.0/16", "10.4.0.0/16").await;
    set_gateway(&client, "b", "gw-1", GATEWAY_NODE).await;
    let want = vec![
        "10.3.0.0/16 via 192.168.77.1 dev v0".to_owned(),
        "10.4.0.0/16 via 192.168.77.1 dev v0".to_owned(),
    ];
    eventually("proto 154 routes", || async {
        our_routes(&worker.name) == want
    })
    .await;
    let table = our_table(&worker.name);
    assert!(table.contains("priority srcnat - 10"), "{table}");
    for range in ["10.3.0.0/16", "10.4.0.0/16"] {
        let rule = format!("ip saddr 10.0.0.0/16 ip daddr {range} snat ip to ip saddr");
        assert!(table.contains(&rule), "{table}");
    }

    delete_tep(&client, "b").await;
    eventually("routes and table removed", || async {
        our_routes(&worker.name).is_empty() && our_table(&worker.name).is_empty()
    })
    .await;
    let foreign = run(&["ip", "netns", "exec", &worker.name, "nft", "list", "tables"]).unwrap();
    assert!(foreign.contains("table ip cni-nat"), "{foreign}");
    let all = ip(&worker.name, "route show").unwrap();
    assert!(all.contains("10.9.0.0/16 via 192.168.77.1"), "{all}");
    agent.stop().await;
    assert_eq!(Netns::Named(worker.name.clone()).label(), worker.name);
}
