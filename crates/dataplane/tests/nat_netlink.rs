//! DNAT element batches over netlink against the kernel: in a fresh namespace whose table the
//! `nft` driver built, deltas add, replace and delete exactly the named elements (read back with
//! `nft -j list map`), and a batch the kernel refuses names its map and operation and changes
//! nothing. Needs root.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use isthmus_dataplane::Error;
use isthmus_dataplane::firewall::delta::MapDelta;
use isthmus_dataplane::firewall::netlink::socket::ElementSocket;
use isthmus_dataplane::firewall::netlink::{ElementOp, NlNftError};
use isthmus_dataplane::firewall::nft::NftFirewall;
use isthmus_dataplane::firewall::{
    Applied, ElementChange, FirewallDriver, NatPlan, PeerNat, TABLE,
};
use isthmus_dataplane::lab::{self, NsGuard};
use isthmus_dataplane::netns::NsRuntime;

use crate::common::v4;

fn peer(name: &str, range: &str, mappings: &[(&str, &str)]) -> PeerNat {
    PeerNat {
        name: name.into(),
        ranges: vec![range.parse().unwrap()],
        prefix_nat: vec![],
        transit_snat: None,
        mappings: mappings.iter().map(|(k, v)| (v4(k), v4(v))).collect(),
    }
}

/// `nft -j list map inet isthmus <map>` in the namespace, as `key -> value`.
fn elements(ns: &NsGuard, map: &str) -> BTreeMap<Ipv4Addr, Ipv4Addr> {
    let args = [
        "ip", "netns", "exec", &ns.name, "nft", "-j", "list", "map", "inet", TABLE, map,
    ];
    let text = lab::run(&args).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let items = json["nftables"].as_array().unwrap();
    let map = items.iter().find_map(|i| i.get("map")).unwrap();
    let Some(elem) = map.get("elem").and_then(|e| e.as_array()) else {
        return BTreeMap::new();
    };
    elem.iter()
        .map(|pair| (v4(pair[0].as_str().unwrap()), v4(pair[1].as_str().unwrap())))
        .collect()
}

fn expect(pairs: &[(&str, &str)]) -> BTreeMap<Ipv4Addr, Ipv4Addr> {
    pairs.iter().map(|(k, v)| (v4(k), v4(v))).collect()
}

#[test]
fn netlink_deltas_add_replace_delete_and_refusals_change_nothing() {
    lab::require_root();
    let ns = NsGuard::new(lab::unique("nlnf")).unwrap();
    let rt = NsRuntime::new(ns.netns(), 1).unwrap();
    let mut firewall = NftFirewall::new(rt.clone());
    let plan = NatPlan {
        table: TABLE.into(),
        tunnel: "wg0".into(),
        peers: vec![
            peer(
                "cluster-b",
                "10.1.0.0/24",
                &[("10.1.0.77", "10.0.0.10"), ("10.1.0.79", "10.0.0.12")],
            ),
            peer("cluster-c", "10.2.0.0/24", &[("10.2.0.5", "10.0.0.20")]),
        ],
    };
    assert_eq!(firewall.apply(&plan).unwrap(), Applied::Replaced);

    // add, replace and delete in one delta, across two maps
    let deltas = [
        MapDelta {
            peer: "cluster-b".into(),
            entries: vec![
                (v4("10.1.0.77"), None),
                (v4("10.1.0.78"), Some(v4("10.0.0.11"))),
                (v4("10.1.0.79"), Some(v4("10.0.0.13"))),
            ],
        },
        MapDelta {
            peer: "cluster-c".into(),
            entries: vec![(v4("10.2.0.6"), Some(v4("10.0.0.21")))],
        },
    ];
    assert_eq!(firewall.apply_delta(&deltas).unwrap(), Applied::Incremental);
    let want_b = expect(&[("10.1.0.78", "10.0.0.11"), ("10.1.0.79", "10.0.0.13")]);
    let want_c = expect(&[("10.2.0.5", "10.0.0.20"), ("10.2.0.6", "10.0.0.21")]);
    assert_eq!(elements(&ns, "dnat_cluster_b"), want_b);
    assert_eq!(elements(&ns, "dnat_cluster_c"), want_c);
    assert!(firewall.intact().unwrap(), "kernel equals the record");
    assert_eq!(firewall.apply_delta(&deltas).unwrap(), Applied::Unchanged);

    // a batch naming a map that does not exist: refused as a whole, its valid part too
    let mut socket = rt.run_blocking(ElementSocket::open).unwrap();
    let changes = [
        ElementChange {
            map: "dnat_cluster_b".into(),
            upsert: vec![(v4("10.1.0.90"), v4("10.0.0.90"))],
            delete: vec![v4("10.1.0.78")],
        },
        ElementChange {
            map: "dnat_nope".into(),
            upsert: vec![(v4("10.9.0.1"), v4("10.0.0.1"))],
            delete: vec![],
        },
    ];
    let err = socket.apply(TABLE, &changes).unwrap_err();
    let NlNftError::Refused {
        op,
        ref map,
        ref source,
        ..
    } = err
    else {
        panic!("{err}")
    };
    assert_eq!((op, map.as_str()), (ElementOp::Add, "dnat_nope"));
    assert_eq!(source.raw_os_error(), Some(2), "ENOENT: {err}");
    assert!(
        err.to_string()
            .contains("add elements of map isthmus/dnat_nope"),
        "{err}"
    );
    assert_eq!(elements(&ns, "dnat_cluster_b"), want_b);
    assert_eq!(elements(&ns, "dnat_cluster_c"), want_c);
    // the socket still works after a refusal
    socket.apply(TABLE, &changes[..1]).unwrap();
    socket
        .apply(
            TABLE,
            &[ElementChange {
                map: "dnat_cluster_b".into(),
                upsert: vec![(v4("10.1.0.78"), v4("10.0.0.11"))],
                delete: vec![v4("10.1.0.90")],
            }],
        )
        .unwrap();
    assert_eq!(elements(&ns, "dnat_cluster_b"), want_b);

    // an element deleted from outside: the driver's delete is refused, the record forgotten
    let outside = [
        "ip",
        "netns",
        "exec",
        &ns.name,
        "nft",
        "delete",
        "element",
        "inet",
        TABLE,
        "dnat_cluster_c",
        "{ 10.2.0.6 }",
    ];
    lab::run(&outside).unwrap();
    let gone = [MapDelta {
        peer: "cluster-c".into(),
        entries: vec![
            (v4("10.2.0.6"), None),
            (v4("10.2.0.7"), Some(v4("10.0.0.22"))),
        ],
    }];
    let err = firewall.apply_delta(&gone).unwrap_err();
    assert!(
        matches!(
            err,
            Error::NftNetlink(NlNftError::Refused {
                op: ElementOp::Delete,
                ..
            })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("dnat_cluster_c"), "{err}");
    assert!(
        firewall.applied().is_none(),
        "a failed batch forgets the record"
    );
    assert_eq!(
        elements(&ns, "dnat_cluster_c"),
        expect(&[("10.2.0.5", "10.0.0.20")])
    );
    firewall.remove().unwrap();
}
