//! NatMapping shards: a batch of mappings writes only the shards of the blocks it touched (API
//! requests counted), every shard stays far below the object size limit with managedFields,
//! an emptied shard is deleted, and the older layouts (one object per peer; shards of 1,024
//! addresses) are replaced by shards at start (shards first, then the old objects deleted).

use crate::common;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use common::*;
use futures::future::join_all;
use http::Method;
use isthmus_api::{LABEL_NAT_SHARD, NatMapping, NatMappingSpec};
use isthmus_network_manager::LabPeers;
use kube::ResourceExt;
use kube::api::PostParams;

/// Like `peered_pair`, with every request of a's network-manager to a's API recorded.
async fn logged_pair() -> (Cluster, Cluster, Arc<LabPeers>, ApiLog) {
    let log = ApiLog::default();
    let mut a = Cluster::new("a", 1, "10.0.0.0/16", None).await;
    a.manager_client = Some(Logged::client(&a.kube, &log));
    let mut b = Cluster::new("b", 2, "10.0.0.0/16", None).await;
    let peers = Arc::new(lab(&[&a, &b]));
    a.start(peers.clone());
    b.start(peers.clone());
    mesh(&[&a, &b]).await;
    wait_peered(&a, &b).await;
    (a, b, peers, log)
}

fn ep(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 80, 0, 0)) + i)
}

/// Maps endpoints `range` to `peer` in a, 256 at a time.
async fn map(a: &Cluster, peer: &Cluster, range: std::ops::Range<u32>) {
    let all: Vec<u32> = range.collect();
    for chunk in all.chunks(256) {
        let calls = chunk
            .iter()
            .map(|i| a.ipam().map_endpoint_ip(&peer.id, ep(*i)));
        for r in join_all(calls).await {
            r.unwrap();
        }
    }
}

async fn shard_names(a: &Cluster, peer: &Cluster) -> Vec<String> {
    let mut names: Vec<String> = a
        .nat_objects(peer)
        .await
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_writes_only_the_shards_it_touched() {
    let (mut a, mut b, _peers, log) = logged_pair().await;
    // 600 mappings fill block 0 (254 addresses: the network and transit addresses are never
    // handed out) and block 1 (256), and start block 2
    map(&a, &b, 0..600).await;
    eventually("600 entries in three shards", || async {
        a.nat_entries(&b).await.len() == 600 && a.nat_objects(&b).await.len() == 3
    })
    .await;
    assert_eq!(
        shard_names(&a, &b).await,
        ["b.block256-0", "b.block256-1", "b.block256-2"]
    );
    let whole = a.ipam().read(|i| i.nat_mapping(&b.id)).unwrap().unwrap();
    assert_eq!(a.nat_entries(&b).await, whole);
    for nm in a.nat_objects(&b).await {
        assert!(
            nm.metadata.managed_fields.is_some(),
            "stored with managedFields"
        );
        let bytes = serde_json::to_vec(&nm).unwrap().len();
        assert!(bytes < 256 * 1024, "{} is {bytes} bytes", nm.name_any());
        assert_eq!(
            nm.labels()[LABEL_NAT_SHARD],
            nm.spec.block.unwrap().to_string()
        );
    }

    // five more mappings land in block 2: only that shard is written, nothing is listed
    log.clear();
    map(&a, &b, 600..605).await;
    eventually("605 entries", || async {
        a.nat_entries(&b).await.len() == 605
    })
    .await;
    let writes = log.writes_of("natmappings");
    assert!(!writes.is_empty());
    assert!(
        writes
            .iter()
            .all(|(m, name)| *m == Method::PATCH && name == "b.block256-2"),
        "{writes:?}"
    );
    assert_eq!(log.lists_of("natmappings"), 0);

    // emptying block 0 deletes its shard and writes no other
    log.clear();
    let block0: Vec<Ipv4Addr> = a
        .ipam()
        .read(|i| i.nat_block(&b.id, 0).into_values().collect())
        .unwrap();
    assert_eq!(block0.len(), 254);
    let unmaps = block0.iter().map(|e| a.ipam().unmap_endpoint_ip(&b.id, *e));
    for r in join_all(unmaps).await {
        r.unwrap();
    }
    eventually("block 0's shard deleted", || async {
        shard_names(&a, &b).await == ["b.block256-1", "b.block256-2"]
    })
    .await;
    let writes = log.writes_of("natmappings");
    assert!(
        writes.iter().all(|(_, name)| name == "b.block256-0"),
        "{writes:?}"
    );
    assert_eq!(writes.last().map(|(m, _)| m), Some(&Method::DELETE));
    assert_eq!(a.nat_entries(&b).await.len(), 605 - 254);
    a.stop().await;
    b.stop().await;
}

/// The shards of 1,500 mappings once the layout is current.
const CURRENT: [&str; 6] = [
    "b.block256-0",
    "b.block256-1",
    "b.block256-2",
    "b.block256-3",
    "b.block256-4",
    "b.block256-5",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_whole_peer_natmapping_is_replaced_by_shards_at_start() {
    replaced_at_start(|peer, mappings, labels| {
        let mut old = NatMapping::new(
            "b",
            NatMappingSpec {
                cluster_id: peer.clone(),
                block: None,
                cluster_mappings: mappings,
            },
        );
        old.metadata.labels = Some(labels);
        vec![old]
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_shards_of_1024_addresses_are_replaced_by_current_shards_at_start() {
    replaced_at_start(|peer, mappings, labels| {
        let mut blocks: BTreeMap<u32, BTreeMap<Ipv4Addr, Ipv4Addr>> = BTreeMap::new();
        for (new_ip, ep) in mappings {
            // the offset in b's view of a's ExternalCIDR, a /16
            let block = (u32::from(new_ip) & 0xffff) / 1024;
            blocks.entry(block).or_default().insert(new_ip, ep);
        }
        blocks
            .into_iter()
            .map(|(block, entries)| {
                let mut old = NatMapping::new(
                    &format!("b.block-{block}"),
                    NatMappingSpec {
                        cluster_id: peer.clone(),
                        block: Some(block),
                        cluster_mappings: entries,
                    },
                );
                let mut labels = labels.clone();
                labels.insert(LABEL_NAT_SHARD.to_owned(), block.to_string());
                old.metadata.labels = Some(labels);
                old
            })
            .collect()
    })
    .await;
}

/// a maps 1,500 endpoints to b, stops, and its API is put back in an older layout: the objects
/// `older` builds from every mapping (and a stale one), labelled as a peer's objects are. The
/// network-manager started again writes the current shards, then deletes the older objects.
async fn replaced_at_start(
    older: impl Fn(
        &isthmus_api::ClusterId,
        BTreeMap<Ipv4Addr, Ipv4Addr>,
        BTreeMap<String, String>,
    ) -> Vec<NatMapping>,
) {
    let (mut a, mut b, peers, log) = logged_pair().await;
    map(&a, &b, 0..1500).await;
    eventually("1,500 entries", || async {
        a.nat_entries(&b).await.len() == 1500
    })
    .await;
    let want = a.ipam().read(|i| i.nat_mapping(&b.id)).unwrap().unwrap();
    let mut labels = a.nat_objects(&b).await[0].labels().clone();
    labels.remove(LABEL_NAT_SHARD);

    a.stop().await;
    for nm in a.nat_objects(&b).await {
        a.nms()
            .delete(&nm.name_any(), &Default::default())
            .await
            .unwrap();
    }
    let mut old_entries: BTreeMap<Ipv4Addr, Ipv4Addr> = want.clone();
    old_entries.insert(
        "10.1.255.200".parse().unwrap(),
        "10.99.0.1".parse().unwrap(),
    );
    let old = older(&b.id, old_entries, labels);
    let old_names: Vec<String> = old.iter().map(ResourceExt::name_any).collect();
    for nm in &old {
        a.nms().create(&PostParams::default(), nm).await.unwrap();
    }

    log.clear();
    a.open_ipam().await;
    a.start(peers.clone());
    eventually("the older objects replaced by shards", || async {
        shard_names(&a, &b).await == CURRENT && a.nat_entries(&b).await == want
    })
    .await;
    let writes = log.writes_of("natmappings");
    let last_shard = writes
        .iter()
        .rposition(|(m, name)| *m == Method::PATCH && name.starts_with("b.block256-"))
        .expect("shards written");
    for name in &old_names {
        let deleted = writes
            .iter()
            .position(|w| *w == (Method::DELETE, name.clone()))
            .unwrap_or_else(|| panic!("{name} was not deleted: {writes:?}"));
        assert!(
            last_shard < deleted,
            "shards first, then the old objects: {writes:?}"
        );
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_whose_writes_failed_are_written_by_a_later_pass() {
    let (mut a, mut b, _peers, log) = logged_pair().await;
    // half of a's API writes answer 503 while 1,300 mappings (six shards) are made: some
    // shards of a pass are written and some not, in whatever order the calls complete
    a.kube.faults().fail_randomly(
        isthmus_memkube::Verbs::WRITES,
        0.5,
        isthmus_memkube::ServerError::Unavailable,
    );
    map(&a, &b, 0..1300).await;
    // The passes so far may all have been lucky (a loaded machine folds the batches into a few
    // passes of six writes): until one fails, keep changing one mapping, a pass each time.
    let mut changes = 0;
    while a.telemetry.reconciles.count("nat-mappings", false) == 0 {
        assert!(
            changes < 500,
            "no NatMapping pass failed with half the writes refused"
        );
        a.ipam().unmap_endpoint_ip(&b.id, ep(0)).await.unwrap();
        map(&a, &b, 0..1).await;
        changes += 1;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(!log.writes_of("natmappings").is_empty());
    a.kube.faults().clear_failures();
    let want = a.ipam().read(|i| i.nat_mapping(&b.id)).unwrap().unwrap();
    assert_eq!(want.len(), 1300);
    eventually(
        "every shard written once the API accepts writes",
        || async { shard_names(&a, &b).await == CURRENT[..6] && a.nat_entries(&b).await == want },
    )
    .await;
    a.stop().await;
    b.stop().await;
}
