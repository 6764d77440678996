//! NatMapping shards: a batch of mappings writes only the shards of the blocks it touched (API
//! requests counted), every shard stays far below the object size limit with managedFields,
//! an emptied shard is deleted, and the older one-object-per-peer layout is replaced by shards
//! at start (shards first, then the old object deleted).

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
    // 2,500 mappings fill block 0 (1,022 addresses: the network and transit addresses are
    // never handed out) and block 1, and start block 2
    map(&a, &b, 0..2500).await;
    eventually("2,500 entries in three shards", || async {
        a.nat_entries(&b).await.len() == 2500 && a.nat_objects(&b).await.len() == 3
    })
    .await;
    assert_eq!(
        shard_names(&a, &b).await,
        ["b.block-0", "b.block-1", "b.block-2"]
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
    map(&a, &b, 2500..2505).await;
    eventually("2,505 entries", || async {
        a.nat_entries(&b).await.len() == 2505
    })
    .await;
    let writes = log.writes_of("natmappings");
    assert!(!writes.is_empty());
    assert!(
        writes
            .iter()
            .all(|(m, name)| *m == Method::PATCH && name == "b.block-2"),
        "{writes:?}"
    );
    assert_eq!(log.lists_of("natmappings"), 0);

    // emptying block 0 deletes its shard and writes no other
    log.clear();
    let block0: Vec<Ipv4Addr> = a
        .ipam()
        .read(|i| i.nat_block(&b.id, 0).into_values().collect())
        .unwrap();
    assert_eq!(block0.len(), 1022);
    let unmaps = block0.iter().map(|e| a.ipam().unmap_endpoint_ip(&b.id, *e));
    for r in join_all(unmaps).await {
        r.unwrap();
    }
    eventually("block 0's shard deleted", || async {
        shard_names(&a, &b).await == ["b.block-1", "b.block-2"]
    })
    .await;
    let writes = log.writes_of("natmappings");
    assert!(
        writes.iter().all(|(_, name)| name == "b.block-0"),
        "{writes:?}"
    );
    assert_eq!(writes.last().map(|(m, _)| m), Some(&Method::DELETE));
    assert_eq!(a.nat_entries(&b).await.len(), 2505 - 1022);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_whole_peer_natmapping_is_replaced_by_shards_at_start() {
    let (mut a, mut b, peers, log) = logged_pair().await;
    map(&a, &b, 0..1500).await;
    eventually("1,500 entries", || async {
        a.nat_entries(&b).await.len() == 1500
    })
    .await;
    let want = a.ipam().read(|i| i.nat_mapping(&b.id)).unwrap().unwrap();
    let mut labels = a.nat_objects(&b).await[0].labels().clone();
    labels.remove(LABEL_NAT_SHARD);

    // a stops and its API is put back in the older layout: one object named after the peer,
    // without the shard label, holding every mapping (and a stale one)
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
    let mut old = NatMapping::new(
        "b",
        NatMappingSpec {
            cluster_id: b.id.clone(),
            block: None,
            cluster_mappings: old_entries,
        },
    );
    old.metadata.labels = Some(labels);
    a.nms().create(&PostParams::default(), &old).await.unwrap();

    log.clear();
    a.open_ipam().await;
    a.start(peers.clone());
    eventually("the older object replaced by shards", || async {
        a.nms().get_opt("b").await.unwrap().is_none()
            && shard_names(&a, &b).await == ["b.block-0", "b.block-1"]
            && a.nat_entries(&b).await == want
    })
    .await;
    let writes = log.writes_of("natmappings");
    let deleted = writes
        .iter()
        .position(|w| *w == (Method::DELETE, "b".to_owned()))
        .expect("the older object was deleted");
    let last_shard = writes
        .iter()
        .rposition(|(m, name)| *m == Method::PATCH && name.starts_with("b.block-"))
        .expect("shards written");
    assert!(
        last_shard < deleted,
        "shards first, then the old object: {writes:?}"
    );
    a.stop().await;
    b.stop().await;
}
