//! The durable IPAM over the file store: restart recovers exactly the acknowledged state, torn
//! tails are cut, corruption refuses the start, compaction keeps the state, concurrent requests
//! never share an address.

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::net::Ipv4Addr;
use std::os::unix::fs::FileExt;

use isthmus_ipam::{Cidr, ClusterId, IpamConfig, default_pools};
use isthmus_ipam_store::{DurableIpam, FileStore, ServiceError};

fn config() -> IpamConfig {
    IpamConfig {
        pod_cidr: "10.0.0.0/16".parse().unwrap(),
        service_cidr: Some("10.1.0.0/16".parse().unwrap()),
        external_cidr: None,
        pools: default_pools(),
        reserved: vec![],
    }
}

fn id(s: &str) -> ClusterId {
    s.parse().unwrap()
}

fn c(s: &str) -> Cidr {
    s.parse().unwrap()
}

fn ep(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(172, 20, 0, 0)) + i)
}

async fn open(dir: &std::path::Path) -> DurableIpam {
    DurableIpam::open(&config(), FileStore::open(dir).unwrap())
        .await
        .unwrap()
}

async fn populate(ipam: &DurableIpam) {
    ipam.upsert_peer(&id("b"), c("10.0.0.0/16"), c("10.2.0.0/16"))
        .await
        .unwrap();
    ipam.set_peer_view(&id("b"), None, None).await.unwrap();
    ipam.upsert_peer(&id("c"), c("10.60.0.0/16"), c("10.61.0.0/16"))
        .await
        .unwrap();
    ipam.set_peer_view(&id("c"), Some(c("10.9.0.0/16")), None)
        .await
        .unwrap();
    for i in 1..=50 {
        ipam.map_endpoint_ip(&id("b"), ep(i)).await.unwrap();
    }
    ipam.unmap_endpoint_ip(&id("b"), ep(7)).await.unwrap();
}

fn snapshot(ipam: &DurableIpam) -> isthmus_ipam::IpamSnapshot {
    ipam.read(|i| i.snapshot()).unwrap()
}

#[tokio::test]
async fn restart_recovers_exactly_the_acknowledged_state() {
    let dir = tempfile::tempdir().unwrap();
    let ipam = open(dir.path()).await;
    populate(&ipam).await;
    let before = snapshot(&ipam);
    drop(ipam);
    let again = open(dir.path()).await;
    assert_eq!(snapshot(&again), before);
    assert_eq!(before.endpoints.len(), 49);
    // The same endpoint keeps its address after the restart.
    let m = again.map_endpoint_ip(&id("b"), ep(3)).await.unwrap();
    let n = before
        .endpoints
        .iter()
        .find(|r| r.endpoint == ep(3))
        .unwrap()
        .external;
    assert_eq!(m.new_ip, n);
}

#[tokio::test]
async fn a_torn_tail_is_cut_and_a_corrupt_middle_refuses_start() {
    let dir = tempfile::tempdir().unwrap();
    let ipam = open(dir.path()).await;
    populate(&ipam).await;
    let before = snapshot(&ipam);
    drop(ipam);
    let journal = dir.path().join("journal.log");
    // A write cut by a crash: a partial line at the end of the data, before the zeros.
    let bytes = std::fs::read(&journal).unwrap();
    let end = bytes.iter().position(|b| *b == 0).unwrap() as u64;
    let f = OpenOptions::new().write(true).open(&journal).unwrap();
    f.write_all_at(br#"{"seq":999,"effect":{"op":"reflec"#, end)
        .unwrap();
    drop(f);
    let again = open(dir.path()).await;
    assert_eq!(snapshot(&again), before, "torn tail ignored");
    again.map_endpoint_ip(&id("b"), ep(100)).await.unwrap();
    drop(again);
    // Now damage a line in the middle.
    let text = std::fs::read(&journal).unwrap();
    let damaged = String::from_utf8(text)
        .unwrap()
        .replacen("\"op\"", "\"XX\"", 1);
    std::fs::write(&journal, damaged).unwrap();
    let err = DurableIpam::open(&config(), FileStore::open(dir.path()).unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, ServiceError::Store(_)), "{err}");
}

#[tokio::test]
async fn compaction_keeps_the_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path())
        .unwrap()
        .with_compaction_after(10);
    let ipam = DurableIpam::open(&config(), store).await.unwrap();
    populate(&ipam).await;
    let before = snapshot(&ipam);
    drop(ipam);
    let journal = std::fs::read(dir.path().join("journal.log")).unwrap();
    let lines = journal
        .iter()
        .take_while(|b| **b != 0)
        .filter(|b| **b == b'\n')
        .count();
    assert!(lines < 20, "journal was compacted ({lines} lines)");
    assert_eq!(snapshot(&open(dir.path()).await), before);
}

#[tokio::test]
async fn a_changed_configuration_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()).await);
    let mut cfg = config();
    cfg.pod_cidr = c("10.100.0.0/16");
    let err = DurableIpam::open(&cfg, FileStore::open(dir.path()).unwrap())
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("stored state has Pod CIDR 10.0.0.0/16"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_never_share_an_address() {
    let dir = tempfile::tempdir().unwrap();
    let ipam = open(dir.path()).await;
    ipam.upsert_peer(&id("b"), c("10.50.0.0/16"), c("10.51.0.0/16"))
        .await
        .unwrap();
    ipam.set_peer_view(&id("b"), None, None).await.unwrap();
    let mut tasks = Vec::new();
    for t in 0..32u32 {
        let ipam = ipam.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for i in 0..100u32 {
                // Overlapping endpoint sets across tasks: the same endpoint must get one address.
                let e = ep((t * 50 + i) % 1600);
                got.push((e, ipam.map_endpoint_ip(&id("b"), e).await.unwrap().new_ip));
            }
            got
        }));
    }
    let mut by_endpoint = std::collections::HashMap::new();
    for t in tasks {
        for (e, ip) in t.await.unwrap() {
            assert_eq!(
                *by_endpoint.entry(e).or_insert(ip),
                ip,
                "endpoint {e} got two addresses"
            );
        }
    }
    let distinct: HashSet<_> = by_endpoint.values().collect();
    assert_eq!(
        distinct.len(),
        by_endpoint.len(),
        "an address was handed out twice"
    );
    let before = snapshot(&ipam);
    drop(ipam);
    assert_eq!(snapshot(&open(dir.path()).await), before);
}

#[tokio::test]
async fn unknown_peers_and_exhaustion_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config();
    cfg.external_cidr = Some(c("192.168.0.0/30"));
    let ipam = DurableIpam::open(&cfg, FileStore::open(dir.path()).unwrap())
        .await
        .unwrap();
    let err = ipam.map_endpoint_ip(&id("zz"), ep(1)).await.unwrap_err();
    assert!(matches!(
        err,
        ServiceError::Ipam(isthmus_ipam::IpamError::UnknownPeer(_))
    ));
    ipam.upsert_peer(&id("b"), c("10.50.0.0/16"), c("10.51.0.0/16"))
        .await
        .unwrap();
    ipam.set_peer_view(&id("b"), None, None).await.unwrap();
    ipam.map_endpoint_ip(&id("b"), ep(1)).await.unwrap();
    let err = ipam.map_endpoint_ip(&id("b"), ep(2)).await.unwrap_err();
    assert!(matches!(
        err,
        ServiceError::Ipam(isthmus_ipam::IpamError::ExternalExhausted(_))
    ));
}

#[tokio::test]
async fn subscribers_hear_of_every_durable_batch() {
    let dir = tempfile::tempdir().unwrap();
    let ipam = open(dir.path()).await;
    let mut changes = ipam.subscribe();
    let start = *changes.borrow_and_update();
    ipam.upsert_peer(&id("b"), c("10.50.0.0/16"), c("10.51.0.0/16"))
        .await
        .unwrap();
    ipam.set_peer_view(&id("b"), None, None).await.unwrap();
    assert!(changes.has_changed().unwrap());
    // two changes: b's networks, then b's view of us
    assert_eq!(*changes.borrow_and_update(), start + 2);
    // A pure translation changes nothing and wakes nobody.
    ipam.map_endpoint_ip(&id("b"), "10.0.0.9".parse().unwrap())
        .await
        .unwrap();
    assert!(!changes.has_changed().unwrap());
}

#[tokio::test]
async fn durable_batches_say_which_nat_blocks_they_changed() {
    let dir = tempfile::tempdir().unwrap();
    let ipam = open(dir.path()).await;
    ipam.upsert_peer(&id("b"), c("10.50.0.0/16"), c("10.51.0.0/16"))
        .await
        .unwrap();
    ipam.set_peer_view(&id("b"), None, None).await.unwrap();
    let peering = ipam.take_nat_changes();
    assert_eq!(peering.peers, [id("b")].into());
    assert!(ipam.take_nat_changes().is_empty(), "taking empties the set");

    let first = ipam.map_endpoint_ip(&id("b"), ep(1)).await.unwrap();
    let (new_ip, _) = first.nat_entry.unwrap();
    let block = ipam
        .read(|i| i.block_of(i.local().external_cidr.map_ip(new_ip)))
        .unwrap();
    ipam.map_endpoint_ip(&id("b"), ep(2)).await.unwrap();
    ipam.unmap_endpoint_ip(&id("b"), ep(2)).await.unwrap();
    // a repeated map changes nothing and touches nothing
    ipam.map_endpoint_ip(&id("b"), ep(1)).await.unwrap();
    let dirty = ipam.take_nat_changes();
    assert!(dirty.peers.is_empty());
    assert_eq!(dirty.blocks, [(id("b"), block)].into());
    // a pure translation touches nothing either
    ipam.map_endpoint_ip(&id("b"), "10.0.0.9".parse().unwrap())
        .await
        .unwrap();
    assert!(ipam.take_nat_changes().is_empty());
    ipam.remove_peer(&id("b")).await.unwrap();
    assert_eq!(ipam.take_nat_changes().peers, [id("b")].into());
}
