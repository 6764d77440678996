//! Real packets between two gateways: traffic both ways, restart convergence, repair after an
//! outside flush, bad input rejected with no change. Needs root; each test builds its own lab.

use crate::common;

use common::*;
use isthmus_dataplane::firewall::Applied;
use isthmus_dataplane::firewall::delta::MapDelta;

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
/// reconcile sees the difference (an exact comparison) and rebuilds the table. The element is
/// deleted while the check is answered by the ruleset generation (no listing since our own
/// last commits, a NAT delta among them), so that shortcut must notice the outside commit.
#[test]
fn an_outside_edit_of_one_element_or_rule_is_repaired() {
    let (lab, mut c) = pair();
    let mut b = peer(&lab, &c[1], &["10.1.0.0/24"], &[]);
    b.mappings = vec![mapping(v4("10.0.0.200"), v4("10.0.0.10"))];
    let mut spec_a = spec(&lab, &c[0], vec![b]);
    c[0].gateway.reconcile(&spec_a).unwrap();
    c[0].gateway.reconcile(&spec_a).unwrap(); // lists the table once: known clean
    let listed = c[0].gateway.firewall.listings();
    let delta = MapDelta {
        peer: c[1].name.clone(),
        entries: vec![(v4("10.0.0.201"), Some(v4("10.0.0.11")))],
    };
    c[0].gateway.reconcile_nat_delta(&[delta]).unwrap();
    spec_a.peers[0]
        .mappings
        .push(mapping(v4("10.0.0.201"), v4("10.0.0.11")));
    assert_eq!(
        c[0].gateway.reconcile(&spec_a).unwrap().firewall,
        Applied::Unchanged
    );
    assert_eq!(
        c[0].gateway.firewall.listings(),
        listed,
        "only our own commits since the listing: the generation answers"
    );
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

#[test]
fn a_standby_removes_what_an_earlier_leader_left_and_spares_a_live_engine() {
    let (lab, mut c) = pair();
    let site = &lab.sites[0];
    let socket = format!("/var/run/wireguard/{}.sock", site.ifname);
    // A clean stop leaves the NAT table; a killed kernel-backend gateway also leaves its link and
    // the routes into it: a bridge of the same name stands in for that link (no WireGuard module
    // here), with the stale UAPI socket file of a killed userspace engine.
    c[0].gateway.shutdown().unwrap();
    for line in [
        format!("link add {} type bridge", site.ifname),
        format!("link set {} up", site.ifname),
        format!("route add 10.1.0.0/24 dev {} proto 153", site.ifname),
    ] {
        isthmus_dataplane::lab::ip(&site.gw.name, &line).unwrap();
    }
    std::fs::write(&socket, b"").unwrap();
    let (table, routes) = kernel_state(site);
    assert!(table.contains("table inet isthmus"), "{table}");
    assert!(!routes.is_empty());

    let mut standby = gateway_on(site);
    let (interface, removed_routes) = standby.remove_leftovers(&site.ifname).unwrap();
    assert!(interface);
    assert!(removed_routes > 0);
    assert_eq!(kernel_state(site), (String::new(), String::new()));
    assert!(
        !isthmus_dataplane::lab::ip(&site.gw.name, "-br link")
            .unwrap()
            .contains(&site.ifname)
    );
    assert!(!std::path::Path::new(&socket).exists());
    // Nothing left: a second pass finds nothing and fails on nothing.
    assert_eq!(standby.remove_leftovers(&site.ifname).unwrap(), (false, 0));

    // A socket someone answers on belongs to a live engine (in the lab, another node's with the
    // same name): neither it nor a link of that name is touched.
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    isthmus_dataplane::lab::ip(
        &site.gw.name,
        &format!("link add {} type bridge", site.ifname),
    )
    .unwrap();
    assert!(!standby.remove_leftovers(&site.ifname).unwrap().0);
    assert!(std::path::Path::new(&socket).exists());
    assert!(
        isthmus_dataplane::lab::ip(&site.gw.name, "-br link")
            .unwrap()
            .contains(&site.ifname)
    );
    drop(listener);
    let _ = std::fs::remove_file(&socket);
}
