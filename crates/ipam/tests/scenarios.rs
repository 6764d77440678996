//! Scenario tests of the pure IPAM: local networks, peer decisions, endpoint reflection and
//! every refusal, each checked to leave the state unchanged.

use std::net::Ipv4Addr;

use isthmus_ipam::{Cidr, ClusterId, Effect, Ipam, IpamConfig, IpamError, default_pools};

fn c(s: &str) -> Cidr {
    s.parse().unwrap()
}
fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}
fn id(s: &str) -> ClusterId {
    s.parse().unwrap()
}

fn config() -> IpamConfig {
    IpamConfig {
        pod_cidr: c("10.0.0.0/16"),
        service_cidr: Some(c("10.1.0.0/16")),
        external_cidr: None,
        pools: default_pools(),
        reserved: vec![],
    }
}

/// Plans with `f`, applies the effect, returns it.
fn run(ipam: &mut Ipam, f: impl FnOnce(&Ipam) -> Result<Effect, IpamError>) -> Effect {
    let e = f(ipam).unwrap();
    ipam.apply(&e).unwrap();
    e
}

/// A peer whose networks we decided and whose view of us (as-is) it has told us.
fn peer(ipam: &mut Ipam, name: &str, pod: &str, ext: &str) -> isthmus_ipam::PeerNetworks {
    let cl = id(name);
    run(ipam, |i| i.plan_peer(&cl, c(pod), c(ext)));
    run(ipam, |i| i.plan_peer_view(&cl, None, None));
    ipam.peer(&cl).unwrap().clone()
}

fn map(ipam: &mut Ipam, cluster: &str, endpoint: &str) -> Ipv4Addr {
    let out = ipam.plan_map(&id(cluster), ip(endpoint)).unwrap();
    if let Some(e) = &out.effect {
        ipam.apply(e).unwrap();
    }
    out.new_ip
}

fn unmap(ipam: &mut Ipam, cluster: &str, endpoint: &str) {
    let out = ipam.plan_unmap(&id(cluster), ip(endpoint)).unwrap();
    if let Some(e) = &out.effect {
        ipam.apply(e).unwrap();
    }
}

#[test]
fn external_cidr_is_chosen_free_with_the_pod_prefix_length() {
    let ipam = Ipam::new(&config()).unwrap();
    assert_eq!(ipam.local().external_cidr, c("10.2.0.0/16"));
    assert_eq!(ipam.transit_ip(), ip("10.2.0.1"));
}

#[test]
fn configured_networks_must_not_overlap() {
    let mut cfg = config();
    cfg.external_cidr = Some(c("10.0.128.0/17"));
    let err = Ipam::new(&cfg).unwrap_err();
    assert!(
        err.to_string()
            .contains("overlaps 10.0.0.0/16 held by the local Pod CIDR"),
        "{err}"
    );
    cfg.external_cidr = Some(c("192.168.0.0/31"));
    assert!(matches!(Ipam::new(&cfg), Err(IpamError::InvalidConfig(_))));
}

#[test]
fn free_peer_networks_are_accepted_as_is() {
    let mut ipam = Ipam::new(&config()).unwrap();
    let p = peer(&mut ipam, "b", "10.50.0.0/16", "10.51.0.0/16");
    assert_eq!(
        (p.remote_pod_view, p.remote_external_view),
        (p.remote_pod, p.remote_external)
    );
}

#[test]
fn conflicting_peer_networks_are_remapped_stably() {
    let mut ipam = Ipam::new(&config()).unwrap();
    let b = peer(&mut ipam, "b", "10.0.0.0/16", "10.2.0.0/16");
    assert_eq!(b.remote_pod_view, c("10.3.0.0/16"));
    assert_eq!(b.remote_external_view, c("10.4.0.0/16"));
    // Same input again: same decision, and the networks stay reserved once.
    let again = ipam
        .plan_peer(&id("b"), c("10.0.0.0/16"), c("10.2.0.0/16"))
        .unwrap();
    assert_eq!(
        again,
        Effect::PeerSet {
            cluster: id("b"),
            networks: b.clone()
        }
    );
    let cc = peer(&mut ipam, "c", "10.0.0.0/16", "10.2.0.0/16");
    assert_eq!(cc.remote_pod_view, c("10.5.0.0/16"));
}

#[test]
fn peer_networks_outside_the_pools_are_remapped_into_them() {
    // A peer announcing a public range, or one straddling a pool's edge, does not get it
    // routed into our tunnel as-is: it is remapped inside the pools.
    let mut ipam = Ipam::new(&config()).unwrap();
    let b = peer(&mut ipam, "b", "203.0.113.0/24", "8.8.8.0/24");
    assert!(
        default_pools().iter().any(|p| p.covers(&b.remote_pod_view)),
        "{b:?}"
    );
    assert!(
        default_pools()
            .iter()
            .any(|p| p.covers(&b.remote_external_view))
    );
    assert_ne!(b.remote_pod_view, c("203.0.113.0/24"));
    assert_ne!(b.remote_external_view, c("8.8.8.0/24"));
    // 192.168.0.0/15 holds the pool 192.168.0.0/16 and 192.169.0.0/16 beyond it
    let straddling = peer(&mut ipam, "c", "192.168.0.0/15", "11.255.255.0/24");
    assert_eq!(straddling.remote_pod_view.prefix_len(), 15);
    assert!(
        default_pools()
            .iter()
            .any(|p| p.covers(&straddling.remote_pod_view))
    );
    assert!(
        default_pools()
            .iter()
            .any(|p| p.covers(&straddling.remote_external_view))
    );
}

#[test]
fn peer_networks_over_reserved_ranges_are_remapped() {
    // The node and infrastructure networks listed as reserved stay out of the peers' views.
    let mut cfg = config();
    cfg.reserved = vec![c("192.168.10.0/24"), c("172.20.0.0/16")];
    let mut ipam = Ipam::new(&cfg).unwrap();
    let b = peer(&mut ipam, "b", "192.168.10.0/24", "172.20.4.0/24");
    assert!(!b.remote_pod_view.overlaps(&c("192.168.10.0/24")), "{b:?}");
    assert!(
        !b.remote_external_view.overlaps(&c("172.20.0.0/16")),
        "{b:?}"
    );
}

#[test]
fn a_decision_outside_narrowed_pools_is_taken_again() {
    // A state decided under wider pools (or before this rule) holds a view outside today's
    // pools: the same networks are decided again rather than kept.
    let mut ipam = Ipam::new(&config()).unwrap();
    let b = peer(&mut ipam, "b", "172.16.0.0/16", "172.17.0.0/16");
    assert_eq!(b.remote_pod_view, c("172.16.0.0/16"));
    let mut snapshot = ipam.snapshot();
    snapshot.networks.pools = vec![c("10.0.0.0/8")];
    let mut ipam2 = Ipam::from_snapshot(&snapshot).unwrap();
    let again = ipam2
        .plan_peer(&id("b"), c("172.16.0.0/16"), c("172.17.0.0/16"))
        .unwrap();
    ipam2.apply(&again).unwrap();
    let b2 = ipam2.peer(&id("b")).unwrap();
    assert!(c("10.0.0.0/8").covers(&b2.remote_pod_view), "{b2:?}");
    assert!(c("10.0.0.0/8").covers(&b2.remote_external_view), "{b2:?}");
}

#[test]
fn exhausted_pools_refuse_and_change_nothing() {
    let mut cfg = config();
    cfg.pools = vec![c("10.0.0.0/14")];
    let ipam = Ipam::new(&cfg).unwrap();
    let before = ipam.snapshot();
    let err = ipam
        .plan_peer(&id("b"), c("10.0.0.0/16"), c("10.1.0.0/16"))
        .unwrap_err();
    assert!(matches!(err, IpamError::PoolsExhausted { .. }), "{err}");
    assert_eq!(ipam.snapshot(), before);
}

#[test]
fn local_pod_endpoints_translate_into_the_peer_view() {
    let mut ipam = Ipam::new(&config()).unwrap();
    peer(&mut ipam, "b", "10.0.0.0/16", "10.2.0.0/16");
    assert_eq!(map(&mut ipam, "b", "10.0.3.4"), ip("10.0.3.4"));
    let v = ipam
        .plan_peer_view(&id("b"), Some(c("10.9.0.0/16")), None)
        .unwrap();
    ipam.apply(&v).unwrap();
    assert_eq!(map(&mut ipam, "b", "10.0.3.4"), ip("10.9.3.4"));
    assert_eq!(
        ipam.endpoint_count(),
        0,
        "a pod translation allocates nothing"
    );
}

#[test]
fn external_endpoints_share_one_address_freed_after_the_last_unmap() {
    let mut ipam = Ipam::new(&config()).unwrap();
    peer(&mut ipam, "b", "10.60.0.0/16", "10.61.0.0/16");
    peer(&mut ipam, "c", "10.62.0.0/16", "10.63.0.0/16");
    let v = ipam
        .plan_peer_view(&id("c"), None, Some(c("172.16.0.0/16")))
        .unwrap();
    ipam.apply(&v).unwrap();
    let for_b = map(&mut ipam, "b", "192.168.7.7");
    let for_c = map(&mut ipam, "c", "192.168.7.7");
    assert_eq!(for_b, ip("10.2.0.2"));
    assert_eq!(
        for_c,
        ip("172.16.0.2"),
        "same external address, in c's view"
    );
    assert_eq!(
        map(&mut ipam, "b", "192.168.7.7"),
        for_b,
        "repeat is idempotent"
    );
    assert_eq!(
        ipam.nat_mapping(&id("c")).unwrap().get(&for_c),
        Some(&ip("192.168.7.7"))
    );
    unmap(&mut ipam, "b", "192.168.7.7");
    assert_eq!(ipam.external_usage().allocated, 1);
    assert!(ipam.nat_mapping(&id("b")).unwrap().is_empty());
    unmap(&mut ipam, "c", "192.168.7.7");
    assert_eq!(ipam.external_usage().allocated, 0);
    unmap(&mut ipam, "c", "192.168.7.7");
}

#[test]
fn bad_requests_are_refused() {
    let mut ipam = Ipam::new(&config()).unwrap();
    peer(&mut ipam, "b", "10.60.0.0/16", "10.61.0.0/16");
    assert!(matches!(
        ipam.plan_map(&id("x"), ip("1.2.3.4")),
        Err(IpamError::UnknownPeer(_))
    ));
    assert!(matches!(
        ipam.plan_unmap(&id("x"), ip("1.2.3.4")),
        Err(IpamError::UnknownPeer(_))
    ));
    for bad in [
        "0.0.0.0",
        "127.0.0.1",
        "224.0.0.1",
        "255.255.255.255",
        "10.2.0.9",
    ] {
        let r = ipam.plan_map(&id("b"), ip(bad));
        assert!(
            matches!(r, Err(IpamError::ForbiddenEndpoint { .. })),
            "{bad}: {r:?}"
        );
    }
    let r = ipam.plan_peer(&id("b"), c("10.60.0.0/16"), c("10.60.0.0/24"));
    assert!(matches!(r, Err(IpamError::InvalidPeerNetwork { .. })));
    let r = ipam.plan_peer_view(&id("b"), Some(c("10.9.0.0/24")), None);
    assert!(matches!(r, Err(IpamError::InvalidPeerNetwork { .. })));
}

#[test]
fn a_full_external_cidr_is_reported() {
    let mut cfg = config();
    cfg.external_cidr = Some(c("192.168.0.0/29"));
    let mut ipam = Ipam::new(&cfg).unwrap();
    peer(&mut ipam, "b", "10.60.0.0/16", "10.61.0.0/16");
    for i in 1..=5 {
        map(&mut ipam, "b", &format!("172.20.0.{i}"));
    }
    let before = ipam.snapshot();
    let err = ipam.plan_map(&id("b"), ip("172.20.0.99")).unwrap_err();
    assert_eq!(err, IpamError::ExternalExhausted(c("192.168.0.0/29")));
    assert_eq!(ipam.snapshot(), before);
}

#[test]
fn removing_a_peer_frees_everything_of_it() {
    let mut ipam = Ipam::new(&config()).unwrap();
    let fresh = ipam.snapshot();
    peer(&mut ipam, "b", "10.0.0.0/16", "10.2.0.0/16");
    map(&mut ipam, "b", "172.20.0.1");
    map(&mut ipam, "b", "172.20.0.2");
    run(&mut ipam, |i| i.plan_remove_peer(&id("b")));
    assert_eq!(ipam.snapshot(), fresh);
    assert!(
        ipam.plan_peer(&id("c"), c("10.3.0.0/16"), c("10.4.0.0/16"))
            .is_ok()
    );
}

#[test]
fn home_pod_ip_and_belongs() {
    let mut ipam = Ipam::new(&config()).unwrap();
    peer(&mut ipam, "b", "10.0.0.0/16", "10.2.0.0/16");
    assert_eq!(
        ipam.home_pod_ip(&id("b"), ip("10.0.1.2")).unwrap(),
        ip("10.3.1.2")
    );
    assert!(ipam.home_pod_ip(&id("b"), ip("10.9.1.2")).is_err());
    assert!(ipam.belongs_to_pod_cidr(ip("10.0.200.1")));
    assert!(!ipam.belongs_to_pod_cidr(ip("10.1.0.1")));
}

#[test]
fn snapshots_rebuild_the_same_state() {
    let mut ipam = Ipam::new(&config()).unwrap();
    peer(&mut ipam, "b", "10.0.0.0/16", "10.2.0.0/16");
    peer(&mut ipam, "c", "10.0.0.0/16", "10.2.0.0/16");
    for i in 1u32..=20 {
        map(
            &mut ipam,
            if i.is_multiple_of(2) { "b" } else { "c" },
            &format!("172.20.0.{i}"),
        );
    }
    let snap = ipam.snapshot();
    let json = serde_json::to_string(&snap).unwrap();
    let back = Ipam::from_snapshot(&serde_json::from_str(&json).unwrap()).unwrap();
    assert_eq!(back.snapshot(), snap);
    assert_eq!(
        back.nat_mapping(&id("b")).unwrap(),
        ipam.nat_mapping(&id("b")).unwrap()
    );
}

#[test]
fn corrupt_records_are_refused() {
    let mut ipam = Ipam::new(&config()).unwrap();
    peer(&mut ipam, "b", "10.60.0.0/16", "10.61.0.0/16");
    let bad = Effect::Reflected {
        endpoint: ip("1.1.1.1"),
        external: ip("9.9.9.9"),
        cluster: id("b"),
    };
    assert!(matches!(ipam.apply(&bad), Err(IpamError::Corrupt(_))));
    let unknown = Effect::Reflected {
        endpoint: ip("1.1.1.1"),
        external: ip("10.2.0.5"),
        cluster: id("z"),
    };
    assert!(matches!(
        ipam.apply(&unknown),
        Err(IpamError::UnknownPeer(_))
    ));
}

#[test]
fn pool_usage_counts_every_network_taken_from_each_pool() {
    let config = IpamConfig {
        pod_cidr: c("10.0.0.0/16"),
        service_cidr: None,
        external_cidr: None,
        pools: vec![c("10.0.0.0/8"), c("192.168.0.0/16")],
        reserved: vec![c("192.168.1.0/24")],
    };
    let mut ipam = Ipam::new(&config).unwrap();
    // pod /16 and the chosen ExternalCIDR /16 come out of 10.0.0.0/8; the reservation from the
    // second pool
    let before = ipam.pool_usage();
    assert_eq!(before[0].0, c("10.0.0.0/8"));
    assert_eq!(before[0].1.allocated, 2 * 65_536);
    assert_eq!(before[0].1.capacity, 1 << 24);
    assert_eq!(before[1].1.allocated, 256);
    // a peer with the same Pod CIDR is remapped to another /16 of the pool, and its
    // ExternalCIDR too
    peer(&mut ipam, "b", "10.0.0.0/16", "10.1.0.0/16");
    let after = ipam.pool_usage();
    assert_eq!(after[0].1.allocated, 4 * 65_536, "{after:?}");
    assert_eq!(after[1].1.allocated, 256);
}

#[test]
fn nothing_is_answered_in_a_view_the_peer_has_not_told_yet() {
    let mut ipam = Ipam::new(&config()).unwrap();
    let b = id("b");
    run(&mut ipam, |i| {
        i.plan_peer(&b, c("10.0.0.0/16"), c("10.2.0.0/16"))
    });
    // b has not said how it addresses us: "as-is" would be a guess, possibly wrong
    for endpoint in ["10.0.0.5", "192.168.7.7"] {
        assert_eq!(
            ipam.plan_map(&b, ip(endpoint)),
            Err(IpamError::PeerViewUnknown(b.clone())),
            "{endpoint}"
        );
    }
    // once it has (it remapped our Pod CIDR), answers are in its view
    run(&mut ipam, |i| {
        i.plan_peer_view(&b, Some(c("10.9.0.0/16")), None)
    });
    assert_eq!(map(&mut ipam, "b", "10.0.0.5"), ip("10.9.0.5"));
    // a re-decision of b's networks keeps what b told us
    run(&mut ipam, |i| {
        i.plan_peer(&b, c("10.5.0.0/16"), c("10.2.0.0/16"))
    });
    assert_eq!(map(&mut ipam, "b", "10.0.0.6"), ip("10.9.0.6"));
}
