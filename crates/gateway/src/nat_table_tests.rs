//! Unit tests of [`NatTable`]: a shard change becomes the delta of its changed entries only,
//! and the older whole-peer object and the shards merge by name during an upgrade.

use super::*;

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn m(pairs: &[(&str, &str)]) -> Mappings {
    pairs.iter().map(|(a, b)| (ip(a), ip(b))).collect()
}

#[test]
fn a_shard_change_is_the_delta_of_its_changed_entries() {
    let mut t = NatTable::default();
    let first = m(&[("10.9.0.2", "10.77.0.1"), ("10.9.0.3", "10.77.0.2")]);
    let d = t.update("b.block-0", Some(("b", &first)));
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].peer, "b");
    assert_eq!(d[0].entries.len(), 2);
    // another block of the same peer: only its entries
    let other = m(&[("10.9.4.1", "10.77.0.3")]);
    let d = t.update("b.block-1", Some(("b", &other)));
    assert_eq!(d[0].entries, vec![(ip("10.9.4.1"), Some(ip("10.77.0.3")))]);
    // one entry changed, one removed, one added, one unchanged
    let next = m(&[("10.9.0.2", "10.77.0.9"), ("10.9.0.4", "10.77.0.4")]);
    let d = t.update("b.block-0", Some(("b", &next)));
    assert_eq!(
        d[0].entries,
        vec![
            (ip("10.9.0.2"), Some(ip("10.77.0.9"))),
            (ip("10.9.0.3"), None),
            (ip("10.9.0.4"), Some(ip("10.77.0.4"))),
        ]
    );
    // the same content again: nothing
    assert!(t.update("b.block-0", Some(("b", &next))).is_empty());
    // a deleted shard removes its entries only
    let d = t.update("b.block-1", None);
    assert_eq!(d[0].entries, vec![(ip("10.9.4.1"), None)]);
    assert_eq!(t.entries("b"), next);
    assert_eq!(t.len(), 1);
}

#[test]
fn during_an_upgrade_the_shard_wins_and_deleting_the_old_object_changes_nothing_it_holds() {
    let mut t = NatTable::default();
    let old = m(&[
        ("10.9.0.2", "10.77.0.1"),
        ("10.9.0.3", "10.77.0.2"),
        ("10.9.0.5", "1.2.3.4"),
    ]);
    t.update("b", Some(("b", &old)));
    let shard = m(&[("10.9.0.2", "10.77.0.1"), ("10.9.0.3", "10.77.0.7")]);
    let d = t.update("b.block-0", Some(("b", &shard)));
    // only the contested entry whose target differs changes
    assert_eq!(d[0].entries, vec![(ip("10.9.0.3"), Some(ip("10.77.0.7")))]);
    // the old object goes: only what no shard holds goes with it
    let d = t.update("b", None);
    assert_eq!(d[0].entries, vec![(ip("10.9.0.5"), None)]);
    assert_eq!(t.entries("b"), shard);
}

#[test]
fn merge_uses_the_same_rule() {
    let old = NatMapping::new(
        "b",
        isthmus_api::NatMappingSpec {
            cluster_id: "b".parse().unwrap(),
            block: None,
            cluster_mappings: m(&[("10.9.0.3", "10.77.0.2"), ("10.9.0.5", "1.2.3.4")]),
        },
    );
    let shard = NatMapping::new(
        "b.block-0",
        isthmus_api::NatMappingSpec {
            cluster_id: "b".parse().unwrap(),
            block: Some(0),
            cluster_mappings: m(&[("10.9.0.3", "10.77.0.7")]),
        },
    );
    let want = m(&[("10.9.0.3", "10.77.0.7"), ("10.9.0.5", "1.2.3.4")]);
    assert_eq!(merge([&shard, &old]), want);
    assert_eq!(merge([&old, &shard]), want);
}
