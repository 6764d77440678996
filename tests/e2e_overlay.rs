//! End-to-end with nodes on several subnets (root; real namespaces, real packets): the lab with
//! `worker_subnet` puts each cluster's `node1` on 172.16.1.0/24, behind a router, while `node2`
//! stays on the gateway node's L2. The route agent of `node1` reaches the gateway node over its
//! VXLAN link (`isthmus-vx0`), the one of `node2` by a direct next hop; every pod reaches every
//! remote pod; a few MB of TCP from a pod on `node1` to a remote pod cross without one fragment
//! and without one "fragmentation needed" (the gateway clamps the MSS below the overlay's MTU);
//! unpeering removes every overlay link.

use crate::e2e_common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::time::Duration;

use e2e_common::*;
use isthmus::lab::plan::Shape;
use isthmus::lab::runner::{Lab, LabOptions};
use isthmus_lab::probe::EchoServer;
use isthmus_lab::{NodeRecord, PodRecord};

const ECHO: u16 = 8091;
/// What the bulk transfer sends (and reads back).
const BULK: usize = 4 << 20;

/// `Ip: FragCreates` and `IcmpMsg: OutType3` (destination unreachable, fragmentation needed
/// included) of a namespace.
fn fragment_counters(ns: &str) -> (u64, u64) {
    let snmp =
        isthmus_dataplane::lab::run(&["ip", "netns", "exec", ns, "cat", "/proc/net/snmp"]).unwrap();
    let value = |prefix: &str, field: &str| -> u64 {
        let mut lines = snmp.lines().filter(|l| l.starts_with(prefix));
        let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
            return 0;
        };
        let index = names.split_whitespace().position(|n| n == field);
        index
            .and_then(|i| values.split_whitespace().nth(i))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (value("Ip:", "FragCreates"), value("IcmpMsg:", "OutType3"))
}

/// Sends `BULK` bytes from `client` to an echo server at `dst` and reads them back; returns the
/// MSS the connection settled on.
fn bulk_echo(client: &PodRecord, dst: Ipv4Addr) -> u32 {
    let target = SocketAddr::V4(SocketAddrV4::new(dst, ECHO));
    let stream = isthmus_lab::in_netns(&client.namespace, || {
        Ok(TcpStream::connect_timeout(&target, Duration::from_secs(5)).expect("connects"))
    })
    .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mss = socket2::SockRef::from(&stream).tcp_mss().unwrap();
    let mut reader = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let mut writer = stream;
        let line = [b'x'; 8191];
        for _ in 0..BULK / 8192 {
            writer.write_all(&line).unwrap();
            writer.write_all(b"\n").unwrap();
        }
        writer
    });
    let mut buffer = vec![0u8; BULK];
    reader.read_exact(&mut buffer).expect("every byte echoed");
    assert!(buffer.chunks(8192).all(|c| c[8191] == b'\n'));
    drop(sender.join().unwrap());
    mss
}

fn node<'a>(lab: &'a Lab, cluster: usize, name: &str) -> &'a NodeRecord {
    lab.topology.clusters[cluster].node(name).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_on_another_subnet_reach_remote_pods_over_the_overlay() {
    // lab_with checks the whole ping matrix (every pod of every node, both ways) first.
    let lab = lab_with(LabOptions {
        clusters: 2,
        shape: Shape::Mesh,
        workers: 2,
        worker_subnet: true,
        ..options()
    })
    .await;
    for (i, cluster) in lab.topology.clusters.iter().enumerate() {
        let gateway = cluster.gateway();
        assert!(has_link(&gateway.namespace, "isthmus-vx0"), "receiving end");
        let routed = node(&lab, i, "node1");
        let on_link = node(&lab, i, "node2");
        assert_eq!(routed.ip, Ipv4Addr::new(172, 16, 1, 11));
        let path = ip(&routed.namespace, &format!("route get {}", gateway.ip));
        assert!(path.contains("via 172.16.1.1"), "not on-link: {path}");
        let routes = ip(&routed.namespace, "route show proto 154");
        let overlay = format!("via {} dev isthmus-vx0 onlink", gateway.ip);
        assert_eq!(routes.lines().count(), 2, "{routes}");
        assert!(routes.lines().all(|l| l.contains(&overlay)), "{routes}");
        let details = ip(&routed.namespace, "-d link show isthmus-vx0");
        assert!(
            details.contains(&format!("vxlan id 4801 remote {}", gateway.ip))
                && details.contains("mtu 1450")
                && details.contains("dstport 4801"),
            "{details}"
        );
        let routes = ip(&on_link.namespace, "route show proto 154");
        assert_eq!(routes.lines().count(), 2, "{routes}");
        assert!(
            routes
                .lines()
                .all(|l| l.contains(&format!("via {} dev eth0", gateway.ip))),
            "direct next hop on the gateway node's L2: {routes}"
        );
        assert!(!has_link(&on_link.namespace, "isthmus-vx0"));
    }

    // A full-size TCP transfer from a pod behind the router to a remote pod: no fragment, no
    // "fragmentation needed" anywhere on the path.
    let client = lab
        .pods(0)
        .iter()
        .find(|p| p.node == "node1")
        .unwrap()
        .clone();
    let server = lab.pods(1)[0].clone();
    let _echo = EchoServer::start(&server, ECHO).unwrap();
    let dst = reflection(&lab, 0, 1, &server.name).address();
    let watched = [
        node(&lab, 0, "node1").namespace.clone(),
        node(&lab, 0, "node0").namespace.clone(),
        node(&lab, 1, "node0").namespace.clone(),
    ];
    let before: Vec<(u64, u64)> = watched.iter().map(|ns| fragment_counters(ns)).collect();
    let mss = tokio::task::spawn_blocking(move || bulk_echo(&client, dst))
        .await
        .unwrap();
    let after: Vec<(u64, u64)> = watched.iter().map(|ns| fragment_counters(ns)).collect();
    assert_eq!(
        before, after,
        "fragments or ICMP unreachables in {watched:?}"
    );
    // the gateway clamps the SYN-ACK to the tunnel's MTU (1420 - 40) on its way in
    assert!(mss <= 1380, "MSS {mss}");

    diagnose_sees_the_overlay_and_the_exemption(&lab).await;

    // Unpeer: with no peer left every overlay link goes, on both ends.
    lab.unpeer(0, 1).await.unwrap();
    let nodes: Vec<String> = (lab.topology.clusters.iter())
        .flat_map(|c| c.nodes.iter().map(|n| n.namespace.clone()))
        .collect();
    eventually("every isthmus-vx0 removed", Duration::from_secs(30), || {
        let left = nodes.iter().any(|ns| has_link(ns, "isthmus-vx0"));
        async move { !left }
    })
    .await;
    lab.shutdown().await;
}

/// diagnose on cluster a's two workers: the overlay check and the NAT exemption check pass on
/// both (node1 over the overlay, node2 direct), and the overlay check fails on node1 once its
/// link is gone (deleted again until diagnose sees it: the route agent puts it back).
async fn diagnose_sees_the_overlay_and_the_exemption(lab: &Lab) {
    use isthmus::inspect::diagnose::desired::Target;
    use isthmus::inspect::diagnose::linux::LinuxObserver;
    use isthmus::inspect::diagnose::report::{CheckId, Status};
    let run = |node: &'static str| {
        let ns = node_ns(lab, 0, node);
        let client = lab.clusters[0].client();
        let target = Target {
            namespace: isthmus::lab::cluster::NAMESPACE.into(),
            interface: lab.clusters[0].site.wg_interface.clone(),
            interface_given: true,
            node_name: Some(node.into()),
            listen_port: None,
            api: "lab cluster a".into(),
            lab: None,
            overlay: Default::default(),
        };
        async move {
            let netns = isthmus_dataplane::Netns::Named(ns);
            let observer = tokio::task::spawn_blocking(move || LinuxObserver::new(netns))
                .await
                .unwrap()
                .unwrap();
            isthmus::inspect::diagnose::diagnose(client, &target, std::sync::Arc::new(observer))
                .await
                .unwrap()
        }
    };
    for node in ["node1", "node2"] {
        let report = run(node).await;
        for id in [CheckId::Overlay, CheckId::NodeNat, CheckId::Routes] {
            let check = report.check(id).unwrap();
            assert_eq!(check.status, Status::Ok, "{node}: {}", report.render_text());
        }
    }
    let ns = node_ns(lab, 0, "node1");
    for _ in 0..40 {
        let _ = isthmus_dataplane::lab::run(&[
            "ip",
            "netns",
            "exec",
            &ns,
            "ip",
            "link",
            "del",
            "isthmus-vx0",
        ]);
        let report = run("node1").await;
        if report.check(CheckId::Overlay).unwrap().status == Status::Fail {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("diagnose never saw isthmus-vx0 missing on node1");
}

fn node_ns(lab: &Lab, cluster: usize, name: &str) -> String {
    node(lab, cluster, name).namespace.clone()
}
