//! The durable IPAM over `IpamStorage` objects, against memkube: one object written per group
//! commit, recovery, compaction into blocks, the upgrade from the sharded layout, missing
//! objects named, and a second writer stopped (fencing).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use http::Method;
use isthmus_api::{EndpointMapping, IpamNetworks, IpamStorage, IpamStorageSpec};
use isthmus_ipam::{ClusterId, IpamConfig, default_pools};
use isthmus_ipam_store::{CompactionPolicy, DurableIpam, KubeStore, LABEL_IPAM, ServiceError};
use kube::api::{Api, DeleteParams, ListParams, PostParams};

use crate::faulty_api::FaultyApi;

pub fn config() -> IpamConfig {
    IpamConfig {
        pod_cidr: "10.0.0.0/16".parse().unwrap(),
        service_cidr: None,
        external_cidr: Some("10.200.0.0/16".parse().unwrap()),
        pools: default_pools(),
        reserved: vec![],
    }
}

pub fn id(s: &str) -> ClusterId {
    s.parse().unwrap()
}

pub fn store(api: &FaultyApi, policy: CompactionPolicy) -> KubeStore {
    KubeStore::new(api.client(), "isthmus", "ipam").with_compaction(policy)
}

pub async fn open(api: &FaultyApi) -> Result<DurableIpam, ServiceError> {
    DurableIpam::open(&config(), store(api, CompactionPolicy::default())).await
}

pub async fn peer(ipam: &DurableIpam, name: &str) {
    ipam.upsert_peer(
        &id(name),
        "10.0.0.0/16".parse().unwrap(),
        "10.5.0.0/16".parse().unwrap(),
    )
    .await
    .unwrap();
    ipam.set_peer_view(&id(name), None, None).await.unwrap();
}

/// Closes `ipam` and checks that a new open of the same objects recovers exactly its state.
pub async fn recovers_exactly(api: &FaultyApi, ipam: DurableIpam) {
    let before = ipam.read(|i| i.snapshot()).unwrap();
    ipam.close().await;
    assert_eq!(
        open(api).await.unwrap().read(|i| i.snapshot()).unwrap(),
        before
    );
}

pub fn ep(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(172, 20, 0, 0)) + i)
}

pub async fn objects(api: &FaultyApi) -> BTreeMap<String, IpamStorage> {
    let list: Api<IpamStorage> = Api::namespaced(api.kube.client(), "isthmus");
    let lp = ListParams::default().labels(&format!("{LABEL_IPAM}=ipam"));
    let items = list.list(&lp).await.unwrap().items;
    items
        .into_iter()
        .map(|o| (o.metadata.name.clone().unwrap(), o))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_segment_per_commit_recovered_after_restart() {
    let api = FaultyApi::new();
    let ipam = open(&api).await.unwrap();
    peer(&ipam, "b").await;
    api.take_writes();
    let reply = ipam.map_endpoint_ip(&id("b"), ep(1)).await.unwrap();
    let writes = api.take_writes();
    assert_eq!(writes.len(), 1, "one write per commit: {writes:?}");
    assert_eq!(writes[0].0, Method::POST, "a segment is created");
    let before = ipam.read(|i| i.snapshot()).unwrap();
    ipam.close().await;
    let again = open(&api).await.unwrap();
    assert_eq!(again.read(|i| i.snapshot()).unwrap(), before);
    assert_eq!(again.map_endpoint_ip(&id("b"), ep(1)).await.unwrap(), reply);
    let root = &objects(&api).await["ipam"];
    assert_eq!(root.spec.layout, Some(2));
    assert!(root.spec.cluster_subnets.contains_key("b"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_folds_segments_into_blocks() {
    let api = FaultyApi::new();
    let policy = CompactionPolicy {
        segments: 8,
        dirty_blocks: 64,
        ..CompactionPolicy::default()
    };
    let ipam = DurableIpam::open(&config(), store(&api, policy))
        .await
        .unwrap();
    peer(&ipam, "b").await;
    peer(&ipam, "c").await;
    for i in 0..300 {
        ipam.map_endpoint_ip(&id(if i % 2 == 0 { "b" } else { "c" }), ep(i))
            .await
            .unwrap();
    }
    for i in (0..300).step_by(3) {
        ipam.unmap_endpoint_ip(&id(if i % 2 == 0 { "b" } else { "c" }), ep(i))
            .await
            .unwrap();
    }
    let before = ipam.read(|i| i.snapshot()).unwrap();
    ipam.close().await;
    let objs = objects(&api).await;
    let segments = objs.values().filter(|o| o.spec.journal.is_some()).count();
    let blocks: Vec<_> = objs
        .values()
        .filter_map(|o| o.spec.block.as_ref())
        .collect();
    assert!(
        segments < 140,
        "{segments} segments left: compaction deletes them"
    );
    assert_eq!(blocks.len(), 2, "one block per peer");
    let in_blocks: usize = blocks.iter().map(|b| b.mappings.len()).sum();
    // The blocks hold the state at the last checkpoint: one of the last compactions of the
    // unmaps (a due compaction is skipped while the one before it is still being written, which
    // on a loaded machine can be two or three in a row; 216 was exceeded once, 219, in a run of
    // the crate's tests beside a build).
    assert!(
        (200..=250).contains(&in_blocks),
        "{in_blocks}: the state at a recent checkpoint"
    );
    let again = open(&api).await.unwrap();
    assert_eq!(again.read(|i| i.snapshot()).unwrap(), before);
    again.remove_peer(&id("c")).await.unwrap();
    let snapshot = again.read(|i| i.snapshot()).unwrap();
    again.close().await;
    assert_eq!(
        open(&api).await.unwrap().read(|i| i.snapshot()).unwrap(),
        snapshot
    );
}

/// The objects the first, sharded layout left: a root with `shardCount` and the shards.
async fn legacy_state(api: &FaultyApi, shards: u32, skip: Option<u32>) {
    let a: Api<IpamStorage> = Api::namespaced(api.kube.client(), "isthmus");
    let pp = PostParams::default();
    let label = |mut o: IpamStorage| {
        o.metadata.labels = Some([(LABEL_IPAM.to_owned(), "ipam".to_owned())].into());
        o
    };
    let root = IpamStorageSpec {
        shard_count: Some(shards),
        networks: Some(IpamNetworks {
            pod_cidr: "10.0.0.0/16".parse().unwrap(),
            service_cidr: None,
            external_cidr: "10.200.0.0/16".parse().unwrap(),
            pools: default_pools(),
            reserved: vec![],
        }),
        cluster_subnets: [(
            "b".to_owned(),
            serde_json::from_value(serde_json::json!({"remotePodCIDR":"10.0.0.0/16","remoteNATPodCIDR":"10.2.0.0/16","remoteExternalCIDR":"10.5.0.0/16","remoteNATExternalCIDR":"10.5.0.0/16"})).unwrap(),
        )]
        .into(),
        ..Default::default()
    };
    a.create(&pp, &label(IpamStorage::new("ipam", root)))
        .await
        .unwrap();
    for s in (0..shards).filter(|s| Some(*s) != skip) {
        let mut spec = IpamStorageSpec {
            shard: Some(s),
            ..Default::default()
        };
        for i in (0..40u32).filter(|i| i % shards == s) {
            let m = EndpointMapping {
                ip: Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 200, 0, 2)) + i),
                clusters: BTreeSet::from([id("b")]),
            };
            spec.endpoint_mappings.insert(ep(i), m);
        }
        a.create(&pp, &label(IpamStorage::new(&format!("ipam-{s}"), spec)))
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sharded_layout_is_upgraded_at_start() {
    let api = FaultyApi::new();
    legacy_state(&api, 4, None).await;
    let ipam = open(&api).await.unwrap();
    assert_eq!(ipam.read(|i| i.endpoint_count()).unwrap(), 40);
    let got = ipam.map_endpoint_ip(&id("b"), ep(7)).await.unwrap();
    assert_eq!(
        got.new_ip,
        Ipv4Addr::new(10, 200, 0, 9),
        "the upgraded mapping is kept"
    );
    let objs = objects(&api).await;
    assert!(
        objs.keys().all(|n| !n.starts_with("ipam-")
            || n.starts_with("ipam-b-")
            || n.starts_with("ipam-j-")),
        "{:?}",
        objs.keys()
    );
    assert_eq!(objs["ipam"].spec.layout, Some(2));
    ipam.close().await;
    assert_eq!(
        open(&api)
            .await
            .unwrap()
            .read(|i| i.endpoint_count())
            .unwrap(),
        40
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_object_is_an_error_that_names_it() {
    let api = FaultyApi::new();
    legacy_state(&api, 4, Some(2)).await;
    let err = open(&api).await.unwrap_err().to_string();
    assert!(err.contains("ipam-2") && err.contains("missing"), "{err}");

    let api = FaultyApi::new();
    let ipam = open(&api).await.unwrap();
    peer(&ipam, "b").await;
    ipam.map_endpoint_ip(&id("b"), ep(1)).await.unwrap();
    ipam.map_endpoint_ip(&id("b"), ep(2)).await.unwrap();
    ipam.close().await;
    let a: Api<IpamStorage> = Api::namespaced(api.kube.client(), "isthmus");
    let first = objects(&api)
        .await
        .into_keys()
        .find(|n| n.starts_with("ipam-j-"))
        .unwrap();
    a.delete(&first, &DeleteParams::default()).await.unwrap();
    let err = open(&api).await.unwrap_err().to_string();
    assert!(err.contains(&first), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_writer_is_stopped() {
    let api = FaultyApi::new();
    let first = open(&api).await.unwrap();
    peer(&first, "b").await;
    // A second replica takes over and writes.
    let second = open(&api).await.unwrap();
    second.map_endpoint_ip(&id("b"), ep(1)).await.unwrap();
    // The first one's next write collides: it must refuse, and keep refusing.
    let err = first.map_endpoint_ip(&id("b"), ep(2)).await.unwrap_err();
    assert!(err.to_string().contains("another writer"), "{err}");
    assert!(!first.is_healthy());
    let err = first.map_endpoint_ip(&id("b"), ep(3)).await.unwrap_err();
    assert!(matches!(err, ServiceError::Unavailable(_)));
    assert!(second.is_healthy());
}

/// A map and an unmap of the same endpoint that land in one group commit (queued while the
/// commit before them was being written): the unmap's journal entry must find the address the
/// map, earlier in the same segment, gave; the IPAM goes on serving and recovers exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_map_and_an_unmap_of_one_endpoint_in_one_commit() {
    let api = FaultyApi::new();
    let ipam = open(&api).await.unwrap();
    peer(&ipam, "b").await;
    api.set_write_latency(std::time::Duration::from_millis(50));
    let b = id("b");
    // holds the committer in a slow write while the next two queue behind it
    let first = {
        let (ipam, b) = (ipam.clone(), b.clone());
        tokio::spawn(async move { ipam.map_endpoint_ip(&b, ep(100)).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    let (map, unmap) = tokio::join!(ipam.map_endpoint_ip(&b, ep(1)), async {
        tokio::task::yield_now().await;
        ipam.unmap_endpoint_ip(&b, ep(1)).await
    });
    first.await.unwrap().unwrap();
    map.expect("the map is answered");
    unmap.expect("the unmap is answered");
    api.set_write_latency(std::time::Duration::ZERO);
    ipam.map_endpoint_ip(&b, ep(2))
        .await
        .expect("the IPAM still serves after the shared commit");
    recovers_exactly(&api, ipam).await;
}
