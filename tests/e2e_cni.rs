//! End-to-end with a CNI that masquerades (root; real namespaces, real packets): the lab with
//! `cni_masquerade` puts a kindnet-like `ip saddr <podCIDR> ip daddr != <podCIDR> masquerade`
//! at postrouting priority srcnat on every node, in a table that is not ours. Every pod still
//! reaches every remote pod, and the remote pod sees the address its cluster was handed, from
//! the gateway node (the gateway's table binds first) and from a worker node (the route agent's
//! `inet isthmus-node` binds first), with workers on two subnets (one over the VXLAN overlay, one
//! on the gateway node's L2). Without the worker's table the same probe fails.

use crate::e2e_common;

use std::net::IpAddr;
use std::time::Duration;

use e2e_common::*;
use isthmus::lab::cluster::Kind;
use isthmus::lab::plan::Shape;
use isthmus::lab::runner::{Lab, LabOptions};
use isthmus_lab::PodRecord;
use isthmus_lab::probe::{WhoamiServer, whoami};

const WHOAMI: u16 = 8090;

/// `nft list ruleset` of a node namespace.
fn ruleset(ns: &str) -> String {
    isthmus_dataplane::lab::run(&["ip", "netns", "exec", ns, "nft", "list", "ruleset"]).unwrap()
}

/// The source a pod of `to` sees when `client` (a pod of `from`) dials `server` (a pod of
/// `to`) at the address `from` was handed for it; `None` when the connection failed.
async fn seen(
    lab: &Lab,
    from: usize,
    client: &PodRecord,
    to: usize,
    server: &str,
) -> Option<IpAddr> {
    let dst = reflection(lab, from, to, server).address();
    let c = client.clone();
    tokio::task::spawn_blocking(move || whoami(&c, dst, WHOAMI, Duration::from_secs(3)).unwrap())
        .await
        .unwrap()
}

/// How `to` addresses `client` of `from`: what its pods must see.
fn expected(lab: &Lab, from: usize, client: &PodRecord, to: usize) -> IpAddr {
    IpAddr::V4(reflection(lab, to, from, &client.name).address())
}

/// Every pod of `from` dials every pod of `to`: each server sees the client's view.
async fn sources_are_views(lab: &Lab, from: usize, to: usize) {
    let servers: Vec<WhoamiServer> = lab
        .pods(to)
        .iter()
        .map(|p| WhoamiServer::start(p, WHOAMI).unwrap())
        .collect();
    for server in lab.pods(to).to_vec() {
        for client in lab.pods(from).to_vec() {
            let want = expected(lab, from, &client, to);
            let got = seen(lab, from, &client, to, &server.name).await;
            assert_eq!(
                got,
                Some(want),
                "{}/{} (node {}) → {}/{}",
                lab.clusters[from].site.id,
                client.name,
                client.node,
                lab.clusters[to].site.id,
                server.name
            );
        }
    }
    drop(servers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cni_masquerade_on_every_node_keeps_sources_as_views_and_fails_without_the_exemption() {
    // lab_with checks the whole ping matrix (hub paths included) before returning. Workers on
    // two subnets: node1 reaches its gateway node over the VXLAN overlay, node2 directly.
    let lab = lab_with(LabOptions {
        clusters: 3,
        shape: Shape::Hub,
        cni_masquerade: true,
        workers: 2,
        worker_subnet: true,
        ..options()
    })
    .await;
    for cluster in &lab.topology.clusters {
        for node in &cluster.nodes {
            let rules = ruleset(&node.namespace);
            let masquerade = format!("ip saddr {0} ip daddr != {0} masquerade", cluster.pod_cidr);
            assert!(rules.contains(&masquerade), "{}: {rules}", node.namespace);
            // our early binding: the gateway's table on the gateway node, the route agent's elsewhere
            let ours = if node.gateway {
                "table inet isthmus {"
            } else {
                "table inet isthmus-node {"
            };
            assert!(rules.contains(ours), "{}: {rules}", node.namespace);
            assert!(
                rules.contains("priority srcnat - 10"),
                "{}: {rules}",
                node.namespace
            );
        }
    }
    let gateway_node = lab.topology.clusters[0].gateway().name.clone();
    let workers: Vec<PodRecord> = lab
        .pods(0)
        .iter()
        .filter(|p| p.node != gateway_node)
        .cloned()
        .collect();
    assert!(!workers.is_empty(), "the lab has pods on a worker node");
    for (from, to) in [(0, 1), (1, 0), (1, 2), (2, 1)] {
        sources_are_views(&lab, from, to).await;
    }

    // Without the route agent's table on a's worker node the CNI masquerades a's worker pod to
    // the node's address, which b's gateway refuses (not in a's AllowedIPs): the probe fails.
    let mut lab = lab;
    lab.clusters[0].stop(Kind::RouteAgents).await;
    let worker = lab.topology.clusters[0]
        .nodes
        .iter()
        .find(|n| !n.gateway)
        .unwrap()
        .clone();
    isthmus_dataplane::lab::run(&[
        "ip",
        "netns",
        "exec",
        &worker.namespace,
        "nft",
        "delete",
        "table",
        "inet",
        "isthmus-node",
    ])
    .unwrap();
    let server = lab.pods(1)[0].clone();
    let _server = WhoamiServer::start(&server, WHOAMI).unwrap();
    let client = workers[0].clone();
    let want = expected(&lab, 0, &client, 1);
    let got = seen(&lab, 0, &client, 1, &server.name).await;
    assert_ne!(got, Some(want), "masqueraded without the exemption");
    // The gateway node's pods keep their view: the gateway's own table binds them.
    let on_gateway = lab
        .pods(0)
        .iter()
        .find(|p| p.node == gateway_node)
        .unwrap()
        .clone();
    let gw_want = expected(&lab, 0, &on_gateway, 1);
    assert_eq!(
        seen(&lab, 0, &on_gateway, 1, &server.name).await,
        Some(gw_want)
    );

    // The route agent comes back and puts its table back: the view again.
    lab.clusters[0].resume(Kind::RouteAgents);
    let lab_ref = &lab;
    eventually(
        "the worker pod's source is its view again",
        Duration::from_secs(30),
        || {
            let client = client.clone();
            let server = server.name.clone();
            async move { seen(lab_ref, 0, &client, 1, &server).await == Some(want) }
        },
    )
    .await;
    lab.shutdown().await;
}
