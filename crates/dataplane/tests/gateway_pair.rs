//! Real packets between two gateways: traffic both ways, restart convergence, repair after an
//! outside flush, bad input rejected with no change. Needs root; each test builds its own lab.

use crate::common;

use common::*;
use isthmus_dataplane::firewall::Applied;

fn pair() -> (isthmus_dataplane::lab::Lab, Vec<Cluster>) {
    let (lab, mut c) = clusters(&["10.0.0.0/24", "10.1.0.0/24"]);
    let spec_a = spec(&lab, &c[0], vec![peer(&lab, &c[1], &["10.1.0.0/24"], &[])]);
    let spec_b = spec(&lab, &c[1], vec![peer(&lab, &c[0], &["10.0.0.0/24"], &[])]);
    c[0].gateway.reconcile(&spec_a).unwrap();
    c[1].gateway.reconcile(&spec_b).unwrap();
    (lab, c)
}

#[test]
fn two_gateways_carry_tcp_and_icmp_both_ways() {
    let (lab, mut c) = pair();
    assert_eq!(
        whoami(&lab.sites[0].pod_rt, v4("10.1.0.10")).to_string(),
        "10.0.0.10"
    );
    assert_eq!(
        whoami(&lab.sites[1].pod_rt, v4("10.0.0.10")).to_string(),
        "10.1.0.10"
    );
    assert_ping(&lab.sites[0].pod_rt, v4("10.1.0.10"));
    assert_ping(&lab.sites[1].pod_rt, v4("10.0.0.10"));
    let spec_a = spec(&lab, &c[0], vec![peer(&lab, &c[1], &["10.1.0.0/24"], &[])]);
    let status = c[0].gateway.reconcile(&spec_a).unwrap();
    assert_eq!(status.firewall, Applied::Unchanged);
    let b = &status.peers[0];
    assert!(b.last_handshake.is_some(), "{b:?}");
    assert!(b.rx_bytes > 0 && b.tx_bytes > 0, "{b:?}");
    assert_eq!(b.routes, vec!["10.1.0.0/24".parse().unwrap()]);
}

#[test]
fn restart_converges_without_duplicates_and_repairs_an_outside_flush() {
    let (lab, mut c) = pair();
    let spec_a = spec(&lab, &c[0], vec![peer(&lab, &c[1], &["10.1.0.0/24"], &[])]);
    whoami(&lab.sites[0].pod_rt, v4("10.1.0.10"));
    let before = kernel_state(&lab.sites[0]);
    let peers_before = wg_peers(&lab.sites[0]);

    // Gateway restart: drop the drivers and build new ones on the same namespace.
    c[0].gateway = gateway_on(&lab.sites[0]);
    c[0].gateway.reconcile(&spec_a).unwrap();
    c[0].gateway.reconcile(&spec_a).unwrap();
    assert_eq!(kernel_state(&lab.sites[0]), before);
    assert_eq!(wg_peers(&lab.sites[0]), peers_before);
    assert_eq!(
        whoami(&lab.sites[0].pod_rt, v4("10.1.0.10")).to_string(),
        "10.0.0.10"
    );

    // Someone flushes our table: the next reconcile rebuilds it.
    isthmus_dataplane::lab::run(&[
        "ip",
        "netns",
        "exec",
        &lab.sites[0].gw.name,
        "nft",
        "flush",
        "table",
        "inet",
        "isthmus",
    ])
    .unwrap();
    assert_ne!(kernel_state(&lab.sites[0]), before);
    assert_eq!(
        c[0].gateway.reconcile(&spec_a).unwrap().firewall,
        Applied::Replaced
    );
    assert_eq!(kernel_state(&lab.sites[0]), before);
}

/// An element deleted from our DNAT map, or a rule replaced in place (same rule count): the next
/// reconcile sees the difference (an exact comparison) and rebuilds the table.
#[test]
fn an_outside_edit_of_one_element_or_rule_is_repaired() {
    let (lab, mut c) = pair();
    let mut b = peer(&lab, &c[1], &["10.1.0.0/24"], &[]);
    b.mappings = vec![mapping(v4("10.0.0.200"), v4("10.0.0.10"))];
    let spec_a = spec(&lab, &c[0], vec![b]);
    c[0].gateway.reconcile(&spec_a).unwrap();
    let before = kernel_state(&lab.sites[0]);
    assert!(before.0.contains("10.0.0.200 : 10.0.0.10"), "{}", before.0);
    let nft = |args: &[&str]| {
        let mut argv = vec!["ip", "netns", "exec", &lab.sites[0].gw.name, "nft"];
        argv.extend(args);
        isthmus_dataplane::lab::run(&argv).unwrap()
    };
    let map = format!("dnat_{}", c[1].name.replace('-', "_"));
    nft(&[
        "delete",
        "element",
        "inet",
        "isthmus",
        &map,
        "{ 10.0.0.200 }",
    ]);
    assert_ne!(kernel_state(&lab.sites[0]), before);
    let status = c[0].gateway.reconcile(&spec_a).unwrap();
    assert_eq!(status.firewall, Applied::Replaced);
    assert_eq!(kernel_state(&lab.sites[0]), before);

    // The first forward rule swapped for another one: same count, different rule.
    let listing = nft(&["-a", "list", "chain", "inet", "isthmus", "forward"]);
    let handle = listing
        .lines()
        .find_map(|l| l.split("# handle ").nth(1).filter(|_| l.contains("accept")))
        .expect("a forward accept rule")
        .trim()
        .to_owned();
    nft(&[
        "replace",
        "rule",
        "inet",
        "isthmus",
        "forward",
        "handle",
        &handle,
        "ip",
        "daddr",
        "192.0.2.1",
        "accept",
    ]);
    assert_ne!(kernel_state(&lab.sites[0]), before);
    let status = c[0].gateway.reconcile(&spec_a).unwrap();
    assert_eq!(status.firewall, Applied::Replaced);
    assert_eq!(kernel_state(&lab.sites[0]), before);
}

#[test]
fn bad_input_is_rejected_with_no_change() {
    let (lab, mut c) = pair();
    let good = spec(&lab, &c[0], vec![peer(&lab, &c[1], &["10.1.0.0/24"], &[])]);
    let before = (kernel_state(&lab.sites[0]), wg_peers(&lab.sites[0]));
    let other = peer(&lab, &c[1], &["10.9.0.0/24"], &[]);

    let mut bad_key = good.clone();
    let mut p = other.clone();
    (p.name, p.public_key) = ("cluster-x".into(), "not-a-wireguard-key".into());
    bad_key.peers.push(p);
    let err = c[0].gateway.reconcile(&bad_key).unwrap_err().to_string();
    assert!(err.contains("public key"), "{err}");

    let mut overlap = good.clone();
    let mut p = other.clone();
    (p.name, p.public_key) = (
        "cluster-y".into(),
        isthmus_dataplane::PrivateKey::generate()
            .public_key()
            .to_string(),
    );
    p.remote = vec![net("10.1.0.128/25")];
    overlap.peers.push(p);
    let err = c[0].gateway.reconcile(&overlap).unwrap_err().to_string();
    assert!(err.contains("overlap"), "{err}");

    let mut family = good.clone();
    family.peers[0].local_nat = vec![isthmus_dataplane::PrefixNat {
        real: net("10.0.0.0/24"),
        view: net("fd00::/120"),
    }];
    let err = c[0].gateway.reconcile(&family).unwrap_err().to_string();
    assert!(err.contains("wrong address family"), "{err}");

    assert_eq!(
        (kernel_state(&lab.sites[0]), wg_peers(&lab.sites[0])),
        before
    );
}

#[test]
fn shutdown_stops_the_engine_and_a_restart_converges() {
    let (lab, mut c) = pair();
    let site = &lab.sites[0];
    let socket = format!("/var/run/wireguard/{}.sock", site.ifname);
    assert!(std::path::Path::new(&socket).exists());
    c[0].gateway.shutdown().unwrap();
    assert!(
        !std::path::Path::new(&socket).exists(),
        "UAPI socket removed"
    );
    let links = isthmus_dataplane::lab::ip(&site.gw.name, "-br link").unwrap();
    assert!(
        !links.contains(&site.ifname),
        "userspace interface gone: {links}"
    );

    c[0].gateway = gateway_on(site);
    let spec_a = spec(&lab, &c[0], vec![peer(&lab, &c[1], &["10.1.0.0/24"], &[])]);
    c[0].gateway.reconcile(&spec_a).unwrap();
    assert_eq!(
        whoami(&lab.sites[1].pod_rt, v4("10.0.0.10")).to_string(),
        "10.1.0.10"
    );
}

#[test]
fn teardown_leaves_nothing_behind_and_other_tables_alone() {
    let (lab, mut c) = pair();
    let site = &lab.sites[0];
    let nft = |args: &[&str]| {
        let mut full = vec!["ip", "netns", "exec", site.gw.name.as_str(), "nft"];
        full.extend_from_slice(args);
        isthmus_dataplane::lab::run(&full)
    };
    nft(&["add", "table", "inet", "other"]).unwrap();
    nft(&[
        "add",
        "chain",
        "inet",
        "other",
        "keep",
        "{ type filter hook forward priority 10; }",
    ])
    .unwrap();
    let spec_a = spec(&lab, &c[0], vec![peer(&lab, &c[1], &["10.1.0.0/24"], &[])]);
    c[0].gateway.reconcile(&spec_a).unwrap();

    c[0].gateway.teardown().unwrap();
    let ruleset = nft(&["list", "ruleset"]).unwrap();
    assert!(!ruleset.contains("isthmus"), "{ruleset}");
    assert!(
        ruleset.contains("table inet other") && ruleset.contains("chain keep"),
        "{ruleset}"
    );
    assert_eq!(
        isthmus_dataplane::lab::ip(&site.gw.name, "route show proto 153").unwrap(),
        ""
    );
    assert!(
        !isthmus_dataplane::lab::ip(&site.gw.name, "-br link")
            .unwrap()
            .contains(&site.ifname)
    );
    assert!(!std::path::Path::new(&format!("/var/run/wireguard/{}.sock", site.ifname)).exists());
}

#[test]
fn an_interface_name_in_use_on_the_host_is_refused() {
    let (lab, c) = pair();
    // A third namespace tries to use gateway A's interface name: the UAPI socket is host-wide.
    let other =
        isthmus_dataplane::lab::NsGuard::new(format!("{}-other", lab.sites[0].gw.name)).unwrap();
    let rt = isthmus_dataplane::NsRuntime::new(other.netns(), 1).unwrap();
    let mut gateway = isthmus_dataplane::LinuxGateway::linux_on(
        rt,
        isthmus_dataplane::tunnel::Backend::Userspace,
    )
    .unwrap();
    let err = gateway
        .reconcile(&spec(&lab, &c[0], vec![]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("runs on this host"), "{err}");
    assert_eq!(
        whoami(&lab.sites[1].pod_rt, v4("10.0.0.10")).to_string(),
        "10.1.0.10"
    );
}
