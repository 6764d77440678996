//! The layout's promises, checked on plain data: a commit is one segment; every prefix of a
//! compaction's writes recovers exactly the committed state; a missing object is an error that
//! names it; objects stay far below 256 KiB.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use isthmus_api::{ClusterSubnets, IpamStorageSpec, JournalEntry, JournalOp};
use isthmus_ipam::{Effect, Ipam, IpamConfig, IpamSnapshot, default_pools};

use super::*;
use crate::store::kube::recovery::{Stored, recover};

type Objects = BTreeMap<String, IpamStorageSpec>;

fn id(s: &str) -> ClusterId {
    s.parse().unwrap()
}

fn ipam() -> Ipam {
    let config = IpamConfig {
        pod_cidr: "10.0.0.0/16".parse().unwrap(),
        service_cidr: None,
        external_cidr: Some("10.200.0.0/16".parse().unwrap()),
        pools: default_pools(),
        reserved: vec![],
    };
    let mut ipam = Ipam::new(&config).unwrap();
    for (peer, pod, ext) in [
        ("b", "10.0.0.0/16", "10.51.0.0/16"),
        ("c", "10.60.0.0/16", "10.61.0.0/16"),
    ] {
        let e = ipam
            .plan_peer(&id(peer), pod.parse().unwrap(), ext.parse().unwrap())
            .unwrap();
        ipam.apply(&e).unwrap();
        let e = ipam.plan_peer_view(&id(peer), None, None).unwrap();
        ipam.apply(&e).unwrap();
    }
    ipam
}

/// A store on plain data: the objects, the layout, the IPAM it mirrors.
struct Sim {
    objects: Objects,
    layout: Layout,
    ipam: Ipam,
}

impl Sim {
    fn new() -> Sim {
        let ipam = ipam();
        let layout = Layout::from_snapshot("ipam", &ipam.snapshot(), 0);
        let mut sim = Sim {
            objects: Objects::new(),
            layout,
            ipam,
        };
        for op in sim.compaction_ops() {
            sim.run(&op);
        }
        sim
    }

    /// One group commit of `effects`: one segment.
    fn commit(&mut self, effects: &[Effect]) {
        let entries: Vec<JournalEntry> = self.layout.entries(effects).unwrap();
        let commit = self.layout.commit + 1;
        let spec = self.layout.segment(commit, entries.clone(), "w");
        self.objects.insert(self.layout.segment_name(commit), spec);
        self.layout.apply(&entries, commit).unwrap();
        for e in effects {
            self.ipam.apply(e).unwrap();
        }
    }

    fn map(&mut self, cluster: &str, endpoint: Ipv4Addr) {
        let out = self.ipam.plan_map(&id(cluster), endpoint).unwrap();
        if let Some(e) = out.effect {
            self.commit(&[e]);
        }
    }

    fn unmap(&mut self, cluster: &str, endpoint: Ipv4Addr) {
        let out = self.ipam.plan_unmap(&id(cluster), endpoint).unwrap();
        if let Some(e) = out.effect {
            self.commit(&[e]);
        }
    }

    /// The writes of a compaction, in order, and the layout after it.
    fn compaction_ops(&mut self) -> Vec<Op> {
        let (ops, plan) = self.planned_ops();
        self.layout.compacted(&plan);
        ops
    }

    /// The writes of a compaction planned now, in order, and its plan (not yet written).
    fn planned_ops(&mut self) -> (Vec<Op>, Compaction) {
        let plan = self.layout.compaction("w");
        let mut ops: Vec<Op> = plan
            .blocks
            .iter()
            .cloned()
            .map(|(n, s)| Op::Put(n, Box::new(s)))
            .collect();
        ops.push(Op::Put("ipam".into(), Box::new(plan.root.clone())));
        ops.extend(plan.drop_blocks.iter().cloned().map(Op::Delete));
        for (name, spec) in &self.objects {
            if spec
                .journal
                .as_ref()
                .is_some_and(|j| j.commit <= plan.checkpoint)
            {
                ops.push(Op::Delete(name.clone()));
            }
        }
        (ops, plan)
    }

    fn run(&mut self, op: &Op) {
        match op {
            Op::Put(name, spec) => {
                self.objects.insert(name.clone(), (**spec).clone());
            }
            Op::Delete(name) => {
                self.objects.remove(name);
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Put(String, Box<IpamStorageSpec>),
    Delete(String),
}

fn recovered(objects: &Objects) -> Result<IpamSnapshot, StoreError> {
    let listed = objects
        .iter()
        .map(|(n, s)| (n.clone(), s.clone()))
        .collect();
    match recover("ipam", listed)? {
        Stored::Current { layout, .. } => layout.snapshot(),
        other => panic!("{other:?}"),
    }
}

fn endpoint(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(172, 16, 0, 0)) + i)
}

#[test]
fn every_prefix_of_a_compaction_recovers_the_committed_state() {
    let mut sim = Sim::new();
    for i in 0..2200 {
        sim.map(if i % 3 == 0 { "c" } else { "b" }, endpoint(i));
    }
    let mut last = None;
    for round in 0..3 {
        // Unmaps scattered over the blocks, a peer removed in the last round.
        for i in (round..2200).step_by(13) {
            let out = sim.ipam.plan_unmap(&id("b"), endpoint(i)).unwrap();
            if let Some(e) = out.effect {
                sim.commit(&[e]);
            }
        }
        if round == 2 {
            let e = sim.ipam.plan_remove_peer(&id("c")).unwrap();
            sim.commit(&[e]);
        }
        let want = sim.ipam.snapshot();
        assert_eq!(
            recovered(&sim.objects).unwrap(),
            want,
            "journal replay, round {round}"
        );
        let ops = sim.compaction_ops();
        assert!(ops.len() > 3, "{} writes", ops.len());
        for op in &ops {
            sim.run(op);
            assert_eq!(recovered(&sim.objects).unwrap(), want, "after {op:?}");
        }
        last = Some(want);
    }
    let segments = sim.objects.values().filter(|s| s.journal.is_some()).count();
    assert_eq!(segments, 0, "compaction leaves no segment behind");
    assert_eq!(Ipam::from_snapshot(&last.unwrap()).map(|_| ()), Ok(()));
}

#[test]
fn a_crash_between_blocks_and_root_then_more_commits_recovers() {
    let mut sim = Sim::new();
    for i in 0..1500 {
        sim.map("b", endpoint(i));
    }
    let ops = sim.compaction_ops();
    // Only the first block lands; the root still has the old checkpoint.
    sim.run(&ops[0]);
    let mut layout = match recover("ipam", sim.objects.clone().into_iter().collect()).unwrap() {
        Stored::Current { layout, .. } => layout,
        other => panic!("{other:?}"),
    };
    assert_eq!(layout.snapshot().unwrap(), sim.ipam.snapshot());
    // The recovered layout goes on: one more commit, a full compaction, the same state.
    let e = sim
        .ipam
        .plan_unmap(&id("b"), endpoint(3))
        .unwrap()
        .effect
        .unwrap();
    sim.ipam.apply(&e).unwrap();
    let entry = layout.entries(std::slice::from_ref(&e)).unwrap().remove(0);
    let commit = layout.commit + 1;
    sim.objects.insert(
        layout.segment_name(commit),
        layout.segment(commit, vec![entry.clone()], "w2"),
    );
    layout.apply(&[entry], commit).unwrap();
    sim.layout = layout;
    for op in sim.compaction_ops() {
        sim.run(&op);
    }
    assert_eq!(recovered(&sim.objects).unwrap(), sim.ipam.snapshot());
}

/// What the objects recover to must be what was committed.
fn assert_recovers(sim: &Sim, after: &str) {
    assert_eq!(
        recovered(&sim.objects).unwrap(),
        sim.ipam.snapshot(),
        "after {after}"
    );
}

/// The commits that land while the compaction of round `round` is written: maps (one into a
/// block that compaction drops), unmaps of older mappings and of new ones, an unpeering.
fn concurrent_commit(sim: &mut Sim, round: u32, j: u32, older: &mut Vec<u32>) {
    let new = |j: u32| endpoint(20_000 + round * 10_000 + j);
    match j % 4 {
        _ if round == 2 && j == 1 => {
            let e = sim.ipam.plan_remove_peer(&id("c")).unwrap();
            sim.commit(&[e]);
        }
        1 => match older.pop() {
            Some(i) => sim.unmap("b", endpoint(i)),
            None => sim.map("b", new(j)),
        },
        3 => sim.unmap("b", new(j - 3)),
        _ => sim.map("b", new(j)),
    }
}

#[test]
fn commits_during_a_compaction_recover_at_every_write() {
    let mut sim = Sim::new();
    let mappings = 1100;
    for i in 0..mappings {
        sim.map(if i % 3 == 0 { "c" } else { "b" }, endpoint(i));
    }
    let mut older: Vec<u32> = (BLOCK_SIZE..mappings).filter(|i| i % 3 != 0).collect();
    for round in 0..3u32 {
        if round == 1 {
            // b's first block becomes empty: this compaction drops it
            for i in (0..BLOCK_SIZE).filter(|i| i % 3 != 0) {
                sim.unmap("b", endpoint(i));
            }
        }
        let (ops, plan) = sim.planned_ops();
        assert!(ops.len() > 3, "round {round}: {} writes", ops.len());
        let mut j = 0;
        for (n, op) in ops.iter().enumerate() {
            sim.run(op);
            assert_recovers(&sim, &format!("round {round}, {op:?}"));
            // commits between the block and root writes, and between some deletions
            if matches!(op, Op::Put(..)) || n % 8 == 0 {
                concurrent_commit(&mut sim, round, j, &mut older);
                j += 1;
                assert_recovers(&sim, &format!("round {round}, commit {j} after {op:?}"));
            }
        }
        assert!(j > 4, "round {round}: {j} commits during the compaction");
        sim.layout.compacted(&plan);
    }
    for op in sim.compaction_ops() {
        sim.run(&op);
        assert_recovers(&sim, &format!("the last compaction's {op:?}"));
    }
    let segments = sim.objects.values().filter(|s| s.journal.is_some()).count();
    assert_eq!(segments, 0, "compaction leaves no segment behind");
}

#[test]
fn a_failed_compaction_is_written_whole_by_the_next() {
    let mut sim = Sim::new();
    for i in 0..1100 {
        sim.map("b", endpoint(i));
    }
    let (ops, failed) = sim.planned_ops();
    // The first block lands, then the API fails; commits go on.
    sim.run(&ops[0]);
    sim.layout.compaction_failed(&failed);
    // the commits after it touch the first block only
    sim.unmap("b", endpoint(5));
    sim.unmap("b", endpoint(6));
    let (ops, plan) = sim.planned_ops();
    for op in &ops {
        sim.run(op);
        assert_recovers(&sim, &format!("{op:?}"));
    }
    sim.layout.compacted(&plan);
    let segments = sim.objects.values().filter(|s| s.journal.is_some()).count();
    assert_eq!(segments, 0, "the blocks alone hold the state");
    assert_recovers(&sim, "the second compaction");
}

#[test]
fn missing_objects_are_errors_that_name_them() {
    let mut sim = Sim::new();
    for i in 0..2100 {
        sim.map("b", endpoint(i));
    }
    for op in sim.compaction_ops() {
        sim.run(&op);
    }
    sim.map("b", endpoint(5000));
    sim.map("b", endpoint(5001));
    let mut gap = sim.objects.clone();
    let first_segment = sim.layout.segment_name(sim.layout.checkpoint + 1);
    gap.remove(&first_segment);
    let err = recovered(&gap).unwrap_err().to_string();
    assert!(err.contains(&first_segment), "{err}");
    let mut lost = sim.objects.clone();
    lost.remove("ipam-b-b-1");
    let err = recovered(&lost).unwrap_err().to_string();
    assert!(
        err.contains("ipam-b-b-1") && err.contains("missing"),
        "{err}"
    );
    let mut rootless = sim.objects.clone();
    rootless.remove("ipam");
    let err = recovered(&rootless).unwrap_err().to_string();
    assert!(err.contains("root object is missing"), "{err}");
}

#[test]
fn objects_stay_far_below_256_kib() {
    // A full block: 1,024 mappings.
    let mut sim = Sim::new();
    for i in 0..BLOCK_SIZE {
        sim.map("b", endpoint(i));
    }
    let plan = sim.layout.compaction("w");
    let largest = plan
        .blocks
        .iter()
        .map(|(_, s)| serde_json::to_vec(s).unwrap().len())
        .max()
        .unwrap();
    assert!(largest < 40 * 1024, "a full block is {largest} bytes");
    // The largest possible segment: PeerSets with 63-character cluster IDs.
    let long: ClusterId = "x".repeat(63).parse().unwrap();
    let cidr = "255.255.255.252/30".parse().unwrap();
    let subnets = ClusterSubnets {
        remote_pod_cidr: cidr,
        remote_nat_pod_cidr: cidr,
        remote_external_cidr: cidr,
        remote_nat_external_cidr: cidr,
        local_nat_pod_cidr: Some(cidr),
        local_nat_external_cidr: Some(cidr),
        // written only when false: the larger form
        peer_view_known: false,
    };
    let entry = JournalEntry {
        op: JournalOp::PeerSet,
        cluster: long,
        endpoint: Some(Ipv4Addr::BROADCAST),
        external: Some(Ipv4Addr::BROADCAST),
        subnets: Some(subnets),
    };
    let spec = sim.layout.segment(
        u64::MAX,
        vec![entry; crate::MAX_SEGMENT_ENTRIES],
        &"w".repeat(40),
    );
    let bytes = serde_json::to_vec(&spec).unwrap().len();
    assert!(bytes < 256 * 1024, "the largest segment is {bytes} bytes");
}

/// One commit that maps an endpoint, unmaps it and maps it again, and maps one of a peer it
/// then removes: each unmap's entry finds the address given earlier in the same commit, and the
/// objects recover exactly.
#[test]
fn a_commit_may_unmap_what_it_maps() {
    let mut sim = Sim::new();
    let mut planner = sim.ipam.clone();
    let mut effects = Vec::new();
    let steps: [&dyn Fn(&Ipam) -> Effect; 5] = [
        &|i| i.plan_map(&id("b"), endpoint(7)).unwrap().effect.unwrap(),
        &|i| i.plan_unmap(&id("b"), endpoint(7)).unwrap().effect.unwrap(),
        &|i| i.plan_map(&id("b"), endpoint(7)).unwrap().effect.unwrap(),
        &|i| i.plan_map(&id("c"), endpoint(8)).unwrap().effect.unwrap(),
        &|i| i.plan_remove_peer(&id("c")).unwrap(),
    ];
    for step in steps {
        let e = step(&planner);
        planner.apply(&e).unwrap();
        effects.push(e);
    }
    sim.commit(&effects);
    assert_eq!(recovered(&sim.objects).unwrap(), sim.ipam.snapshot());
}
