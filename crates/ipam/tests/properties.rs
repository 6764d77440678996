//! Property tests of the IPAM invariants over random sequences of peer / view / map / unmap /
//! unpeer operations on a deliberately small address space (so exhaustion and remapping happen):
//! - no ExternalCIDR address is ever held by two endpoints, and none is both held and free;
//! - every peer's NAT mapping matches exactly the endpoints reflected to it;
//! - an address is freed after the last unmap (allocated count == endpoint count);
//! - peer views are disjoint from each other and from the local networks;
//! - replaying the effect log, and rebuilding from a snapshot, give the same state;
//! - the same sequence gives the same decisions (determinism).

use std::collections::{BTreeSet, HashSet};
use std::net::Ipv4Addr;

use isthmus_ipam::{Cidr, ClusterId, Effect, Ipam, IpamConfig};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Peer {
        cluster: usize,
        pod: usize,
        ext: usize,
    },
    View {
        cluster: usize,
        pod_nat: Option<usize>,
        ext_nat: Option<usize>,
    },
    Remove {
        cluster: usize,
    },
    Map {
        cluster: usize,
        endpoint: usize,
    },
    Unmap {
        cluster: usize,
        endpoint: usize,
    },
}

const CLUSTERS: [&str; 3] = ["alpha", "beta", "gamma"];
/// Candidate /24 networks for peers; several collide with the local ones.
const NETS: [&str; 5] = [
    "10.0.0.0/24",
    "10.0.1.0/24",
    "10.0.2.0/24",
    "10.0.9.0/24",
    "10.0.0.0/24",
];

fn op() -> impl Strategy<Value = Op> {
    let cl = 0..CLUSTERS.len();
    prop_oneof![
        (cl.clone(), 0..NETS.len(), 0..NETS.len()).prop_map(|(cluster, pod, ext)| Op::Peer {
            cluster,
            pod,
            ext
        }),
        (
            cl.clone(),
            proptest::option::of(0..4usize),
            proptest::option::of(0..4usize)
        )
            .prop_map(|(cluster, pod_nat, ext_nat)| Op::View {
                cluster,
                pod_nat,
                ext_nat
            }),
        cl.clone().prop_map(|cluster| Op::Remove { cluster }),
        (cl.clone(), 0..40usize).prop_map(|(cluster, endpoint)| Op::Map { cluster, endpoint }),
        (cl, 0..40usize).prop_map(|(cluster, endpoint)| Op::Unmap { cluster, endpoint }),
    ]
}

fn config() -> IpamConfig {
    IpamConfig {
        pod_cidr: "10.0.0.0/24".parse().unwrap(),
        service_cidr: Some("10.0.1.0/24".parse().unwrap()),
        // 16 addresses, 13 usable: exhaustion happens.
        external_cidr: Some("10.0.2.0/28".parse().unwrap()),
        pools: vec!["10.0.0.0/21".parse().unwrap()],
        reserved: vec![],
    }
}

fn id(i: usize) -> ClusterId {
    CLUSTERS[i].parse().unwrap()
}

/// Endpoints: half local pods (pure translations), half external addresses.
fn endpoint(i: usize) -> Ipv4Addr {
    if i.is_multiple_of(2) {
        Ipv4Addr::new(10, 0, 0, i as u8 + 1)
    } else {
        Ipv4Addr::new(172, 30, 0, i as u8)
    }
}

fn view_net(i: usize) -> Cidr {
    format!("192.168.{i}.0/24").parse().unwrap()
}

/// Plans one operation; returns the effect to apply if the IPAM accepted it.
fn plan(ipam: &Ipam, op: &Op) -> Option<Effect> {
    let r = match op {
        Op::Peer { cluster, pod, ext } => ipam.plan_peer(
            &id(*cluster),
            NETS[*pod].parse().unwrap(),
            NETS[*ext].parse().unwrap(),
        ),
        Op::View {
            cluster,
            pod_nat,
            ext_nat,
        } => {
            let ext_nat = ext_nat.map(|i| format!("192.169.{i}.0/28").parse().unwrap());
            ipam.plan_peer_view(&id(*cluster), pod_nat.map(view_net), ext_nat)
        }
        Op::Remove { cluster } => ipam.plan_remove_peer(&id(*cluster)),
        Op::Map {
            cluster,
            endpoint: e,
        } => ipam
            .plan_map(&id(*cluster), endpoint(*e))
            .map(|o| o.effect)
            .transpose()?,
        Op::Unmap {
            cluster,
            endpoint: e,
        } => ipam
            .plan_unmap(&id(*cluster), endpoint(*e))
            .map(|o| o.effect)
            .transpose()?,
    };
    r.ok()
}

fn check_invariants(ipam: &Ipam) -> Result<(), TestCaseError> {
    let snap = ipam.snapshot();
    let ext = snap.networks.external_cidr;
    let mut held = HashSet::new();
    for rec in &snap.endpoints {
        prop_assert!(
            held.insert(rec.external),
            "{} handed out twice",
            rec.external
        );
        prop_assert!(ext.contains(rec.external) && rec.external != ipam.transit_ip());
        prop_assert!(!rec.clusters.is_empty());
    }
    prop_assert_eq!(ipam.external_usage().allocated, snap.endpoints.len() as u64);
    for (cluster, p) in &snap.peers {
        let expected: BTreeSet<(Ipv4Addr, Ipv4Addr)> = snap
            .endpoints
            .iter()
            .filter(|r| r.clusters.contains(cluster))
            .map(|r| {
                (
                    p.local_external_nat.unwrap_or(ext).map_ip(r.external),
                    r.endpoint,
                )
            })
            .collect();
        let got: BTreeSet<_> = ipam.nat_mapping(cluster).unwrap().into_iter().collect();
        prop_assert_eq!(&got, &expected, "NAT mapping of {} drifted", cluster);
        let by_blocks: BTreeSet<_> = ipam
            .nat_blocks(cluster)
            .into_iter()
            .flat_map(|b| ipam.nat_block(cluster, b))
            .collect();
        prop_assert_eq!(
            by_blocks,
            got,
            "the blocks of {} are not its NAT mapping",
            cluster
        );
    }
    let nets: Vec<Cidr> = ipam.reservations().map(|(n, _)| n).collect();
    for (i, a) in nets.iter().enumerate() {
        for b in &nets[i + 1..] {
            prop_assert!(!a.overlaps(b), "{} overlaps {}", a, b);
        }
    }
    prop_assert_eq!(&Ipam::from_snapshot(&snap).unwrap().snapshot(), &snap);
    Ok(())
}

fn run(ops: &[Op]) -> Result<(Ipam, Vec<Effect>), TestCaseError> {
    let mut ipam = Ipam::new(&config()).unwrap();
    let mut log = Vec::new();
    for op in ops {
        let before = ipam.snapshot();
        match plan(&ipam, op) {
            Some(e) => {
                ipam.apply(&e).unwrap();
                log.push(e);
            }
            None => prop_assert_eq!(&ipam.snapshot(), &before, "a refusal changed state"),
        }
        check_invariants(&ipam)?;
    }
    Ok((ipam, log))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn invariants_hold_over_random_sequences(ops in proptest::collection::vec(op(), 1..120)) {
        let (ipam, log) = run(&ops)?;
        // Replaying the effect log from scratch rebuilds exactly the same state.
        let mut replayed = Ipam::new(&config()).unwrap();
        for e in &log {
            replayed.apply(e).unwrap();
        }
        prop_assert_eq!(replayed.snapshot(), ipam.snapshot());
        // The same sequence makes the same decisions.
        let (again, log2) = run(&ops)?;
        prop_assert_eq!(log2, log);
        prop_assert_eq!(again.snapshot(), ipam.snapshot());
    }
}
