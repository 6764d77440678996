//! The node NAT exemption against a real CNI-like masquerade (needs root): a pod behind a node
//! whose foreign table `ip cni-nat` masquerades everything leaving the Pod CIDR, as kindnet
//! does. Without our table the far end sees the node's address; with `inet isthmus-node`
//! (priority srcnat - 10, null SNAT) it sees the pod's. Outside deletes are repaired, removal
//! leaves the foreign table alone.
//!
//! ```text
//!  pod (10.0.0.10) ── p0 10.0.0.1 [node] n0 192.168.77.1 ── 192.168.77.2 [far] lo 10.101.0.10
//! ```

use std::net::{IpAddr, Ipv4Addr};

use isthmus_dataplane::lab::{self, NsGuard};
use isthmus_dataplane::netns::NsRuntime;
use isthmus_dataplane::node_nat::nft::NftNodeNat;
use isthmus_dataplane::node_nat::{NODE_TABLE, NodeNatApplied, NodeNatDriver, NodeNatPlan};

const PORT: u16 = 7301;
const POD: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 10);
const FAR: Ipv4Addr = Ipv4Addr::new(10, 101, 0, 10);
const NODE: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 1);

const CNI_MASQUERADE: &str = "table ip cni-nat {
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        ip saddr 10.0.0.0/16 ip daddr != 10.0.0.0/16 masquerade
    }
}
";

fn nft(ns: &str, args: &[&str]) -> String {
    let mut all = vec!["ip", "netns", "exec", ns, "nft"];
    all.extend(args);
    lab::run(&all).unwrap_or_default()
}

fn nft_file(ns: &str, text: &str) {
    let path = std::env::temp_dir().join(format!("{ns}.nft"));
    std::fs::write(&path, text).unwrap();
    lab::run(&[
        "ip",
        "netns",
        "exec",
        ns,
        "nft",
        "-f",
        path.to_str().unwrap(),
    ])
    .unwrap();
    let _ = std::fs::remove_file(path);
}

/// pod, node and far namespaces, wired as in the module doc; the node masquerades like kindnet.
fn namespaces() -> [NsGuard; 3] {
    let [pod, node, far] = ["p", "n", "f"].map(|_| NsGuard::new(lab::unique("ist")).unwrap());
    lab::ip(
        &pod.name,
        &format!("link add eth0 type veth peer name p0 netns {}", node.name),
    )
    .unwrap();
    lab::ip(
        &far.name,
        &format!("link add eth0 type veth peer name n0 netns {}", node.name),
    )
    .unwrap();
    for (ns, lines) in [
        (
            &pod.name,
            &[
                "addr add 10.0.0.10/24 dev eth0",
                "link set eth0 up",
                "route add default via 10.0.0.1",
            ][..],
        ),
        (
            &node.name,
            &[
                "addr add 10.0.0.1/24 dev p0",
                "link set p0 up",
                "addr add 192.168.77.1/24 dev n0",
                "link set n0 up",
                "route add 10.101.0.0/24 via 192.168.77.2",
            ][..],
        ),
        (
            &far.name,
            &[
                "addr add 192.168.77.2/24 dev eth0",
                "link set eth0 up",
                "addr add 10.101.0.10/32 dev lo",
                "route add default via 192.168.77.1",
            ][..],
        ),
    ] {
        for line in lines {
            lab::ip(ns, line).unwrap();
        }
    }
    lab::run(&[
        "ip",
        "netns",
        "exec",
        &node.name,
        "sysctl",
        "-qw",
        "net.ipv4.ip_forward=1",
    ])
    .unwrap();
    nft_file(&node.name, CNI_MASQUERADE);
    [pod, node, far]
}

#[test]
fn a_cni_masquerade_is_skipped_for_connections_to_peer_ranges() {
    lab::require_root();
    let [pod, node, far] = namespaces();
    let pod_rt = NsRuntime::new(pod.netns(), 1).unwrap();
    let far_rt = NsRuntime::new(far.netns(), 1).unwrap();
    let node_rt = NsRuntime::new(node.netns(), 1).unwrap();
    lab::start_whoami(&far_rt, PORT).unwrap();
    let seen = || lab::tcp_whoami(&pod_rt, FAR, PORT).unwrap();

    // The test can fail: without our table the CNI rewrites the source to the node's address.
    assert_eq!(seen(), IpAddr::V4(NODE), "the CNI masquerade is in effect");

    let mut driver = NftNodeNat::new(node_rt);
    let plan = NodeNatPlan::new(
        ["10.0.0.0/16".parse().unwrap()],
        ["10.101.0.0/24".parse().unwrap()],
    );
    assert_eq!(driver.apply(&plan).unwrap(), NodeNatApplied::Replaced);
    assert_eq!(
        seen(),
        IpAddr::V4(POD),
        "bound by our chain before the masquerade"
    );
    assert_eq!(driver.apply(&plan).unwrap(), NodeNatApplied::Unchanged);
    let listing = nft(&node.name, &["list", "table", "inet", NODE_TABLE]);
    assert!(listing.contains("priority srcnat - 10"), "{listing}");
    assert!(
        listing.contains("ip saddr 10.0.0.0/16 ip daddr 10.101.0.0/24 snat ip to ip saddr"),
        "{listing}"
    );

    // An outside delete is noticed and repaired by the next apply.
    nft(&node.name, &["delete", "table", "inet", NODE_TABLE]);
    assert_eq!(seen(), IpAddr::V4(NODE));
    assert_eq!(driver.apply(&plan).unwrap(), NodeNatApplied::Replaced);
    assert_eq!(seen(), IpAddr::V4(POD));

    // No peer left: our table goes, the CNI's stays and masquerades again.
    let empty = NodeNatPlan::new(["10.0.0.0/16".parse().unwrap()], []);
    assert_eq!(driver.apply(&empty).unwrap(), NodeNatApplied::Removed);
    assert_eq!(nft(&node.name, &["list", "table", "inet", NODE_TABLE]), "");
    assert!(nft(&node.name, &["list", "table", "ip", "cni-nat"]).contains("masquerade"));
    assert_eq!(seen(), IpAddr::V4(NODE));
    driver.remove().unwrap();
}
