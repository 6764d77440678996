//! NatMappings follow the IPAM's endpoint reflections (MapEndpointIP / UnmapEndpointIP), and
//! unpeering removes everything of a peering from both APIs and from both IPAMs.

use crate::common;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use common::*;
use kube::api::ListParams;

async fn mappings(c: &Cluster, peer: &Cluster) -> BTreeMap<Ipv4Addr, Ipv4Addr> {
    c.nat_entries(peer).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nat_mapping_follows_map_and_unmap() {
    let (mut a, mut b, _peers) = peered_pair().await;
    assert!(mappings(&a, &b).await.is_empty(), "no mapping, no shard");

    // an endpoint outside a's Pod CIDR (say a pod of a third cluster) reflected to b
    let endpoint: Ipv4Addr = "10.77.0.9".parse().unwrap();
    let reply = a.ipam().map_endpoint_ip(&b.id, endpoint).await.unwrap();
    assert_eq!(reply.nat_entry, Some((reply.new_ip, endpoint)));
    eventually("mapping appears", || async {
        mappings(&a, &b).await.get(&reply.new_ip) == Some(&endpoint)
    })
    .await;
    // the new IP is in b's view of a's ExternalCIDR
    let tep = b.tep(&a).await.unwrap();
    assert!(tep.spec.remote_nat_external_cidr.contains(reply.new_ip));

    // many concurrent mappings end up in the one NatMapping
    let many: Vec<Ipv4Addr> = (1..=100u8).map(|i| Ipv4Addr::new(10, 78, 0, i)).collect();
    let replies =
        futures::future::join_all(many.iter().map(|ip| a.ipam().map_endpoint_ip(&b.id, *ip))).await;
    eventually("101 mappings", || async {
        mappings(&a, &b).await.len() == 101
    })
    .await;
    let m = mappings(&a, &b).await;
    for (ip, r) in many.iter().zip(replies) {
        assert_eq!(m.get(&r.unwrap().new_ip), Some(ip));
    }

    a.ipam().unmap_endpoint_ip(&b.id, endpoint).await.unwrap();
    eventually("mapping disappears", || async {
        let m = mappings(&a, &b).await;
        m.len() == 100 && !m.contains_key(&reply.new_ip)
    })
    .await;
    a.stop().await;
    b.stop().await;
}

/// Nothing of the peering with `peer` is left in `c`'s API.
async fn nothing_left(c: &Cluster, peer: &Cluster) -> bool {
    c.fcs().get_opt(&peer.name).await.unwrap().is_none()
        && c.tep(peer).await.is_none()
        && c.nat_objects(peer).await.is_empty()
        && c.ncs()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
        && c.ipam().read(|i| i.peers().count() == 0).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_foreign_clusters_removes_the_peering_everywhere() {
    let (mut a, mut b, _peers) = peered_pair().await;
    a.ipam()
        .map_endpoint_ip(&b.id, "10.77.0.9".parse().unwrap())
        .await
        .unwrap();
    eventually("mapping written", || async {
        mappings(&a, &b).await.len() == 1
    })
    .await;
    let ext_free_before = a.ipam().read(|i| i.external_usage().allocated).unwrap();
    assert!(ext_free_before >= 1);

    // a unpeers first: a forgets b at once, b loses its tunnel to a
    a.remove_peer(&b).await;
    eventually("a forgot b", || async {
        a.fcs().get_opt("b").await.unwrap().is_none()
            && a.tep(&b).await.is_none()
            && a.nat_objects(&b).await.is_empty()
            && a.ipam().read(|i| i.peer(&b.id).is_none()).unwrap()
            && b.ncs_from("a").get_opt("a").await.unwrap().is_none()
            && b.tep(&a).await.is_none()
    })
    .await;
    assert_eq!(a.ipam().read(|i| i.external_usage().allocated).unwrap(), 0);
    // then b unpeers too: nothing remains anywhere
    b.remove_peer(&a).await;
    eventually("nothing left", || async {
        nothing_left(&a, &b).await && nothing_left(&b, &a).await
    })
    .await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpeering_waits_for_an_unreachable_peer_and_says_so() {
    let mut a = Cluster::new("a", 1, "10.0.0.0/16", None).await;
    let mut b = Cluster::new("b", 2, "10.0.0.0/16", None).await;
    let a_peers = Arc::new(CountingPeers::default());
    a_peers.inner.insert("b", b.client.clone());
    a.start(a_peers.clone());
    b.start(Arc::new(lab(&[&a, &b])));
    mesh(&[&a, &b]).await;
    wait_peered(&a, &b).await;

    // b's API becomes unreachable for a, then a unpeers
    a_peers.inner.remove("b");
    a.remove_peer(&b).await;
    eventually("a's unpeering is blocked and says so", || async {
        let Some(fc) = a.fcs().get_opt("b").await.unwrap() else {
            return false;
        };
        let st = fc.status.unwrap_or_default();
        let ready = condition(&st.conditions, "Ready");
        st.phase.as_deref() == Some("Unpeering")
            && ready.is_some_and(|(s, r, _)| s == "False" && r == "UnpeeringBlocked")
    })
    .await;
    // everything local is gone already; our NetworkConfig is still in b's API
    assert!(a.tep(&b).await.is_none());
    assert!(a.ipam().read(|i| i.peer(&b.id).is_none()).unwrap());
    assert!(b.ncs_from("a").get_opt("a").await.unwrap().is_some());
    let calls = a_peers.calls();
    eventually("a keeps retrying", || async {
        a_peers.calls() >= calls + 2
    })
    .await;

    // b answers again: the unpeering completes
    a_peers.inner.insert("b", b.client.clone());
    eventually("unpeered", || async {
        a.fcs().get_opt("b").await.unwrap().is_none()
            && b.ncs_from("a").get_opt("a").await.unwrap().is_none()
            && b.tep(&a).await.is_none()
    })
    .await;
    a.stop().await;
    b.stop().await;
}
