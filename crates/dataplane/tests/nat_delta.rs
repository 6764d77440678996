//! A NatMapping delta through the real nftables driver: only the named elements change, and
//! the kernel's table then equals the driver's record exactly (`intact`). Needs root; builds
//! its own namespaces.

use crate::common;

use common::*;
use isthmus_dataplane::firewall::delta::MapDelta;
use isthmus_dataplane::firewall::view::TableView;
use isthmus_dataplane::firewall::{Applied, FirewallDriver, TABLE, nft};

#[test]
fn a_delta_changes_only_its_elements_in_the_kernel() {
    let (lab, mut c) = clusters(&["10.0.0.0/24", "10.1.0.0/24"]);
    let mut peer_b = peer(&lab, &c[1], &["10.1.0.0/24"], &[]);
    peer_b.mappings = vec![
        mapping(v4("10.1.0.77"), v4("10.0.0.10")),
        mapping(v4("10.1.0.79"), v4("10.0.0.12")),
    ];
    let spec_a = spec(&lab, &c[0], vec![peer_b]);
    c[0].gateway.reconcile(&spec_a).unwrap();
    let delta = MapDelta {
        peer: "cluster-b".into(),
        entries: vec![
            (v4("10.1.0.77"), None),
            (v4("10.1.0.78"), Some(v4("10.0.0.11"))),
            (v4("10.1.0.79"), Some(v4("10.0.0.13"))),
        ],
    };
    let applied = c[0]
        .gateway
        .reconcile_nat_delta(std::slice::from_ref(&delta))
        .unwrap();
    assert_eq!(applied, Applied::Incremental);
    assert!(
        c[0].gateway.firewall.intact().unwrap(),
        "kernel equals the record"
    );
    let listing = nft::read_table(&lab.sites[0].gw_rt, TABLE)
        .unwrap()
        .unwrap();
    let view = TableView::from_listing(&listing, TABLE);
    let have: Vec<(String, String)> = view.maps["dnat_cluster_b"]
        .elements
        .clone()
        .into_iter()
        .collect();
    assert_eq!(
        have,
        [
            ("10.1.0.78".to_owned(), "10.0.0.11".to_owned()),
            ("10.1.0.79".to_owned(), "10.0.0.13".to_owned())
        ]
    );
    // the same delta again sends nothing
    let again = c[0].gateway.reconcile_nat_delta(&[delta]).unwrap();
    assert_eq!(again, Applied::Unchanged);
}
