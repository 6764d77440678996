//! Tests of the usage arithmetic, including a cross-check against the real IPAM: the figures
//! computed from `IpamStorage` objects must equal `Ipam::external_usage` and `Ipam::pool_usage`
//! of the same state.

use std::collections::{BTreeMap, BTreeSet};

use isthmus_api::{ClusterSubnets, EndpointMapping, IpamStorageSpec};
use isthmus_ipam::{ClusterId, Ipam, IpamConfig, IpamSnapshot};

use super::*;

fn c(s: &str) -> Cidr {
    s.parse().unwrap()
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn object(name: &str, spec: IpamStorageSpec, owner: Option<&str>) -> IpamStorage {
    let mut o = IpamStorage::new(name, spec);
    if let Some(owner) = owner {
        o.metadata.labels = Some([(LABEL_IPAM.to_owned(), owner.to_owned())].into());
    }
    o
}

/// The objects a KubeStore with `shards` shards would hold for `snapshot`.
fn objects_of(snapshot: &IpamSnapshot, shards: u32) -> Vec<IpamStorage> {
    let n = &snapshot.networks;
    let root = IpamStorageSpec {
        shard_count: Some(shards),
        networks: Some(IpamNetworks {
            pod_cidr: n.pod_cidr,
            service_cidr: n.service_cidr,
            external_cidr: n.external_cidr,
            pools: n.pools.clone(),
            reserved: n.reserved.clone(),
        }),
        cluster_subnets: snapshot
            .peers
            .iter()
            .map(|(id, p)| {
                let s = ClusterSubnets {
                    remote_pod_cidr: p.remote_pod,
                    remote_nat_pod_cidr: p.remote_pod_view,
                    remote_external_cidr: p.remote_external,
                    remote_nat_external_cidr: p.remote_external_view,
                    local_nat_pod_cidr: p.local_pod_nat,
                    local_nat_external_cidr: p.local_external_nat,
                    peer_view_known: p.view_known,
                };
                (id.to_string(), s)
            })
            .collect(),
        ..Default::default()
    };
    let mut out = vec![object("ipam", root, Some("ipam"))];
    for i in 0..shards {
        let mut spec = IpamStorageSpec {
            shard: Some(i),
            ..Default::default()
        };
        for (k, rec) in snapshot.endpoints.iter().enumerate() {
            if k as u32 % shards == i {
                let m = EndpointMapping {
                    ip: rec.external,
                    clusters: rec.clusters.iter().cloned().collect(),
                };
                spec.endpoint_mappings.insert(rec.endpoint, m);
            }
        }
        out.push(object(&format!("ipam-{i}"), spec, Some("ipam")));
    }
    out
}

#[test]
fn external_usage_matches_the_ipam_until_the_range_is_full() {
    let config = IpamConfig {
        pod_cidr: c("10.0.0.0/16"),
        service_cidr: Some(c("10.1.0.0/16")),
        external_cidr: Some(c("10.9.0.0/28")),
        pools: vec![c("10.0.0.0/8")],
        reserved: vec![],
    };
    let mut ipam = Ipam::new(&config).unwrap();
    let b: ClusterId = "b".parse().unwrap();
    let effect = ipam
        .plan_peer(&b, c("10.0.0.0/16"), c("10.1.0.0/16"))
        .unwrap();
    ipam.apply(&effect).unwrap();
    ipam.apply(&ipam.plan_peer_view(&b, None, None).unwrap())
        .unwrap();
    let mut mapped = 0;
    loop {
        let snapshot = ipam.snapshot();
        let objects = objects_of(&snapshot, 4);
        let (u, outside) = usage(root(&objects).unwrap(), &objects).unwrap();
        let expected = ipam.external_usage();
        assert_eq!(u.external.allocated, expected.allocated, "after {mapped}");
        assert_eq!(u.external.capacity, expected.capacity);
        assert_eq!(u.external.available, expected.capacity - expected.allocated);
        assert_eq!(outside, 0);
        let pools: Vec<(Cidr, u64)> = u.pools.iter().map(|p| (p.cidr, p.allocated)).collect();
        let expected: Vec<(Cidr, u64)> = ipam
            .pool_usage()
            .into_iter()
            .map(|(c, u)| (c, u.allocated))
            .collect();
        assert_eq!(pools, expected, "pool usage as the IPAM counts it");
        let endpoint = Ipv4Addr::from(u32::from(ip("192.168.0.1")) + mapped);
        match ipam.plan_map(&b, endpoint) {
            Ok(out) => ipam.apply(&out.effect.unwrap()).unwrap(),
            Err(_) => break,
        }
        mapped += 1;
    }
    assert_eq!(mapped, 13, "a /28 offers 16 - 3 addresses");
}

#[test]
fn reserved_addresses_duplicates_and_strays_are_not_counted() {
    let ext = c("10.2.0.0/16");
    let (u, outside) = external_usage(
        ext,
        [
            ip("10.2.0.2"),
            ip("10.2.0.2"),     // the same address twice
            ip("10.2.0.1"),     // the transit address: never handed out
            ip("10.2.255.255"), // broadcast
            ip("10.3.0.5"),     // not even in the range
            ip("10.2.255.254"),
        ],
    );
    assert_eq!(
        (u.size, u.reserved_by_ipam, u.capacity),
        (65_536, 3, 65_533)
    );
    assert_eq!((u.allocated, u.available), (2, 65_531));
    assert_eq!(outside, 3);
    let (tiny, _) = external_usage(c("10.2.0.0/30"), []);
    assert_eq!((tiny.capacity, tiny.available), (1, 1));
    let (none, _) = external_usage(c("10.2.0.0/31"), []);
    assert_eq!((none.capacity, none.reserved_by_ipam), (0, 2));
}

#[test]
fn pools_count_every_reserved_network_once() {
    let spec = IpamStorageSpec {
        networks: Some(IpamNetworks {
            pod_cidr: c("10.0.0.0/16"),
            service_cidr: None,
            external_cidr: c("10.1.0.0/16"),
            pools: vec![c("10.0.0.0/8"), c("172.16.0.0/12"), c("192.168.0.0/16")],
            reserved: vec![c("172.16.0.0/24"), c("172.16.0.0/16")],
        }),
        cluster_subnets: BTreeMap::from([(
            "a".to_owned(),
            ClusterSubnets {
                remote_pod_cidr: c("10.0.0.0/16"),
                remote_nat_pod_cidr: c("10.2.0.0/16"),
                remote_external_cidr: c("100.64.0.0/16"),
                remote_nat_external_cidr: c("100.64.0.0/16"), // accepted, outside the pools
                local_nat_pod_cidr: None,
                local_nat_external_cidr: None,
                peer_view_known: true,
            },
        )]),
        ..Default::default()
    };
    let root = object("ipam", spec, None);
    let pools = pool_usage(
        &root.spec.networks.as_ref().unwrap().pools,
        &reservations(&root),
    );
    assert_eq!(pools[0].allocated, 3 * 65_536);
    assert_eq!(pools[0].networks.len(), 3);
    let peer = &pools[0].networks[2];
    assert_eq!(
        (peer.holder, peer.peer.as_deref()),
        (Holder::PeerPods, Some("a"))
    );
    assert_eq!(pools[1].allocated, 65_536, "the /24 inside the /16 once");
    assert_eq!(pools[2].allocated, 0);
    assert!(pools[2].networks.is_empty());
    // A network larger than the pool covers all of it.
    let big = [PoolNetwork {
        cidr: c("10.0.0.0/8"),
        holder: Holder::Reserved,
        peer: None,
    }];
    assert_eq!(pool_usage(&[c("10.4.0.0/16")], &big)[0].allocated, 65_536);
}

#[test]
fn the_root_and_its_shards_are_found_by_name_and_label() {
    let networks = IpamNetworks {
        pod_cidr: c("10.0.0.0/16"),
        service_cidr: None,
        external_cidr: c("10.1.0.0/16"),
        pools: vec![c("10.0.0.0/8")],
        reserved: vec![],
    };
    let root_spec = IpamStorageSpec {
        networks: Some(networks),
        ..Default::default()
    };
    let shard = |i, ep: &str, ext: &str| IpamStorageSpec {
        shard: Some(i),
        endpoint_mappings: BTreeMap::from([(
            ip(ep),
            EndpointMapping {
                ip: ip(ext),
                clusters: BTreeSet::from(["b".parse().unwrap()]),
            },
        )]),
        ..Default::default()
    };
    let objects = vec![
        object("other", root_spec.clone(), Some("other")),
        object("other-0", shard(0, "1.1.1.1", "10.1.0.9"), Some("other")),
        object("ipam", root_spec, Some("ipam")),
        object("ipam-0", shard(0, "1.1.1.2", "10.1.0.2"), Some("ipam")),
        object("ipam-1", shard(1, "1.1.1.3", "10.1.0.3"), None),
    ];
    let r = root(&objects).unwrap();
    assert_eq!(r.metadata.name.as_deref(), Some("ipam"));
    assert_eq!(shards(r, &objects).count(), 2);
    assert_eq!(usage(r, &objects).unwrap().0.external.allocated, 2);
    assert!(root(&objects[1..2]).is_none(), "a shard is no root");
}
