//! Unit tests of the shard planner: which shards a delta writes or deletes, and the full pass
//! with its retirement of the older whole-peer objects.

use super::*;

fn id(s: &str) -> ClusterId {
    s.parse().unwrap()
}

fn m(pairs: &[(&str, &str)]) -> Mappings {
    pairs
        .iter()
        .map(|(a, b)| (a.parse().unwrap(), b.parse().unwrap()))
        .collect()
}

fn published(shards: &[(&str, u32, Mappings)]) -> Published {
    let mut p = Published::default();
    p.record(&ShardPlan {
        write: shards
            .iter()
            .map(|(peer, b, m)| ((id(peer), *b), m.clone()))
            .collect(),
        ..ShardPlan::default()
    });
    p
}

#[test]
fn a_delta_writes_only_the_changed_shards_and_deletes_the_emptied_ones() {
    let one = m(&[("10.1.0.2", "10.77.0.1")]);
    let before = published(&[
        ("b", 0, one.clone()),
        ("b", 1, m(&[("10.1.4.1", "10.77.0.2")])),
    ]);
    let read = BTreeMap::from([
        ((id("b"), 0), one.clone()),                     // unchanged: no write
        ((id("b"), 1), Mappings::new()),                 // emptied: delete
        ((id("b"), 2), m(&[("10.1.8.1", "10.77.0.3")])), // new: write
        ((id("b"), 3), Mappings::new()),                 // never published, empty: nothing
        ((id("c"), 0), m(&[("10.1.0.9", "10.77.0.4")])), // peer not writable: nothing
    ]);
    let plan = plan_dirty(read, &before, |p| p.as_str() == "b");
    assert_eq!(
        plan.write,
        vec![((id("b"), 2), m(&[("10.1.8.1", "10.77.0.3")]))]
    );
    assert_eq!(plan.delete, vec![(id("b"), 1)]);
    assert!(plan.retire.is_empty());
    assert_eq!(plan.calls(), 2);
    let mut after = before.clone();
    after.record(&plan);
    assert_eq!(after.blocks_of(&id("b")), vec![0, 2]);
    assert!(after.blocks_of(&id("c")).is_empty());
}

#[test]
fn a_changed_entry_rewrites_its_shard() {
    let before = published(&[("b", 0, m(&[("10.1.0.2", "10.77.0.1")]))]);
    let read = BTreeMap::from([((id("b"), 0), m(&[("10.1.0.2", "10.77.0.9")]))]);
    let plan = plan_dirty(read, &before, |_| true);
    assert_eq!(plan.write.len(), 1);
    assert!(plan.delete.is_empty());
}

#[test]
fn a_full_pass_repairs_drift_and_retires_the_older_objects() {
    let known = BTreeSet::from([id("b"), id("c"), id("going")]);
    let live = BTreeSet::from([id("b"), id("c")]);
    let desired = BTreeMap::from([
        ((id("b"), 0), m(&[("10.1.0.2", "10.77.0.1")])),
        ((id("b"), 5), m(&[("10.1.20.2", "10.77.0.5")])),
        ((id("c"), 0), m(&[("10.1.0.3", "10.77.0.6")])),
    ]);
    let listed = Listed {
        shards: BTreeMap::from([
            ((id("b"), 0), m(&[("10.1.0.2", "10.77.0.1")])), // equal: kept
            ((id("b"), 5), m(&[("10.1.20.2", "1.2.3.4")])),  // drifted: rewritten
            ((id("b"), 7), m(&[("10.1.28.2", "10.77.0.7")])), // should not exist: deleted
            ((id("going"), 0), m(&[("10.1.0.4", "10.77.0.8")])), // being removed: left
            ((id("gone"), 0), m(&[("10.1.0.5", "10.77.0.9")])), // IPAM forgot it: deleted
        ]),
        legacy: BTreeMap::from([
            ("c".to_owned(), id("c")),
            ("going".to_owned(), id("going")),
            ("gone".to_owned(), id("gone")),
        ]),
    };
    let plan = plan_full(&desired, &known, &live, &listed);
    let written: Vec<&ShardKey> = plan.write.iter().map(|(k, _)| k).collect();
    assert_eq!(written, vec![&(id("b"), 5), &(id("c"), 0)]);
    assert_eq!(plan.delete, vec![(id("b"), 7), (id("gone"), 0)]);
    assert_eq!(plan.retire, vec!["c".to_owned(), "gone".to_owned()]);
    let after = published_after_full(&desired, &listed, &plan);
    assert_eq!(after.blocks_of(&id("b")), vec![0, 5]);
    assert_eq!(after.blocks_of(&id("going")), vec![0]);
    assert!(after.blocks_of(&id("gone")).is_empty());
    assert_eq!(after.len(), 4);
    // once carried out, the same state plans nothing
    let listed_after = Listed {
        shards: desired
            .clone()
            .into_iter()
            .chain([((id("going"), 0), m(&[("10.1.0.4", "10.77.0.8")]))])
            .collect(),
        legacy: BTreeMap::from([("going".to_owned(), id("going"))]),
    };
    assert!(plan_full(&desired, &known, &live, &listed_after).is_empty());
}
