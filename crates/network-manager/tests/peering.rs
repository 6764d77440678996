//! Peering end to end against memkube: two and three in-memory clusters with identical Pod
//! CIDRs, each with its own durable IPAM and network-manager, running concurrently.

use crate::common;

use std::sync::Arc;

use common::*;
use isthmus_api::{BACKEND_PUBLIC_KEY, LABEL_ORIGIN_CLUSTER, LABEL_REMOTE_CLUSTER};
use kube::ResourceExt;
use pretty_assertions::assert_eq;

/// `a`'s TunnelEndpoint for `b` and `b`'s for `a` describe the same tunnel from both ends, and
/// agree with the decisions recorded in the NetworkConfig statuses and the IPAMs.
async fn assert_crossed_views(a: &Cluster, b: &Cluster) {
    let ab = a.tep(b).await.expect("a's TunnelEndpoint").spec;
    let ba = b.tep(a).await.expect("b's TunnelEndpoint").spec;
    assert_eq!(ab.cluster_id, b.id);
    assert_eq!(ab.local_pod_cidr, ba.remote_pod_cidr);
    assert_eq!(ab.local_nat_pod_cidr, ba.remote_nat_pod_cidr);
    assert_eq!(ab.local_external_cidr, ba.remote_external_cidr);
    assert_eq!(ab.local_nat_external_cidr, ba.remote_nat_external_cidr);
    assert_eq!(ab.remote_nat_pod_cidr, ba.local_nat_pod_cidr);
    assert_eq!(ab.remote_nat_external_cidr, ba.local_nat_external_cidr);
    assert_eq!(ab.endpoint, b.endpoint());
    assert_eq!(ab.backend_config[BACKEND_PUBLIC_KEY], b.public_key());
    // a's view of b is what b's NetworkConfig status (in a's API) tells b
    let from_b = a.ncs_from(&b.name).get(&b.name).await.unwrap();
    let status = from_b.status.expect("processed");
    assert!(status.processed);
    let view = status.pod_cidr_nat.unwrap_or(from_b.spec.pod_cidr);
    assert_eq!(view, ab.remote_nat_pod_cidr);
    let ext_view = status
        .external_cidr_nat
        .unwrap_or(from_b.spec.external_cidr);
    assert_eq!(ext_view, ab.remote_nat_external_cidr);
    // and b recorded it as its local NAT view in its IPAM
    let b_peer = b.ipam().read(|i| i.peer(&a.id).cloned()).unwrap().unwrap();
    assert_eq!(b_peer.local_pod_nat.unwrap_or(ab.remote_pod_cidr), view);
    let a_peer = a.ipam().read(|i| i.peer(&b.id).cloned()).unwrap().unwrap();
    assert_eq!(a_peer.remote_pod_view, ab.remote_nat_pod_cidr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clusters_with_identical_pod_cidrs_peer_through_remapped_views() {
    let (mut a, mut b, _peers) = peered_pair().await;
    assert_crossed_views(&a, &b).await;
    assert_crossed_views(&b, &a).await;

    let ab = a.tep(&b).await.unwrap();
    // identical Pod CIDRs: each side had to remap the other's
    assert_ne!(ab.spec.remote_nat_pod_cidr, cidr("10.0.0.0/16"));
    assert_ne!(ab.spec.local_nat_pod_cidr, cidr("10.0.0.0/16"));
    // the TunnelEndpoint belongs to the ForeignCluster
    let fc = a.fcs().get("b").await.unwrap();
    let owners = ab.owner_references();
    assert_eq!(owners.len(), 1);
    assert_eq!(Some(&owners[0].uid), fc.metadata.uid.as_ref());
    // what a wrote into b's API: a's networks and public parameters, labelled
    let sent = b.ncs_from("a").get("a").await.unwrap();
    assert_eq!(sent.labels()[LABEL_ORIGIN_CLUSTER], "a");
    assert_eq!(sent.labels()[LABEL_REMOTE_CLUSTER], "b");
    assert_eq!(sent.spec.pod_cidr, cidr("10.0.0.0/16"));
    assert_eq!(sent.spec.backend_config[BACKEND_PUBLIC_KEY], a.public_key());
    assert_eq!(sent.spec.validate(), Ok(()));

    // a TunnelEndpoint deleted or edited by someone else is put back
    a.teps().delete("b", &Default::default()).await.unwrap();
    eventually("deleted TunnelEndpoint restored", || async {
        a.tep(&b).await.is_some_and(|t| t.spec == ab.spec)
    })
    .await;
    let edit = serde_json::json!({"spec": {"endpoint": "10.10.10.10:1"}});
    let pp = kube::api::PatchParams::default();
    a.teps()
        .patch("b", &pp, &kube::api::Patch::Merge(edit))
        .await
        .unwrap();
    eventually("edited TunnelEndpoint restored", || async {
        a.tep(&b).await.is_some_and(|t| t.spec == ab.spec)
    })
    .await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_clusters_in_a_full_mesh_get_disjoint_consistent_views() {
    let mut cs = Vec::new();
    for (i, n) in ["a", "b", "c"].into_iter().enumerate() {
        cs.push(Cluster::new(n, i as u8 + 1, "10.0.0.0/16", None).await);
    }
    let refs: Vec<&Cluster> = cs.iter().collect();
    let peers = Arc::new(lab(&refs));
    for c in &mut cs {
        c.start(peers.clone());
    }
    let refs: Vec<&Cluster> = cs.iter().collect();
    mesh(&refs).await;
    for (i, x) in cs.iter().enumerate() {
        for y in &cs[i + 1..] {
            wait_peered(x, y).await;
        }
    }
    for x in &cs {
        let mut seen = vec![
            x.ipam_config.pod_cidr,
            x.ipam().read(|i| i.local().external_cidr).unwrap(),
        ];
        for y in cs.iter().filter(|y| y.name != x.name) {
            assert_crossed_views(x, y).await;
            let t = x.tep(y).await.unwrap().spec;
            seen.push(t.remote_nat_pod_cidr);
            seen.push(t.remote_nat_external_cidr);
        }
        for (i, n) in seen.iter().enumerate() {
            for m in &seen[i + 1..] {
                assert!(!n.overlaps(m), "{}: {n} overlaps {m}", x.name);
            }
        }
    }
    for c in &mut cs {
        c.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_network_manager_converges_without_new_decisions() {
    let (mut a, mut b, peers) = peered_pair().await;
    let endpoint = "10.77.0.9".parse().unwrap();
    let reply = a.ipam().map_endpoint_ip(&b.id, endpoint).await.unwrap();
    eventually("NatMapping shard written", || async {
        a.nat_entries(&b).await.get(&reply.new_ip) == Some(&endpoint)
    })
    .await;
    let a_before = a.ipam().read(|i| i.snapshot()).unwrap();
    let b_before = b.ipam().read(|i| i.snapshot()).unwrap();
    let tep_before = a.tep(&b).await.unwrap();

    // a stops; its tunnel and NatMapping shards are lost meanwhile; it restarts over the same
    // store
    a.stop().await;
    a.teps().delete("b", &Default::default()).await.unwrap();
    for nm in a.nat_objects(&b).await {
        a.nms()
            .delete(&nm.name_any(), &Default::default())
            .await
            .unwrap();
    }
    a.open_ipam().await;
    a.start(peers.clone());
    wait_peered(&a, &b).await;
    eventually("NatMapping shard rewritten", || async {
        a.nat_entries(&b).await.get(&reply.new_ip) == Some(&endpoint)
    })
    .await;
    assert_eq!(a.tep(&b).await.unwrap().spec, tep_before.spec);
    assert_eq!(a.ipam().read(|i| i.snapshot()).unwrap(), a_before);
    assert_eq!(b.ipam().read(|i| i.snapshot()).unwrap(), b_before);
    assert_crossed_views(&a, &b).await;

    // b restarts with its gateway at a new address: a's tunnel follows, decisions stay
    b.stop().await;
    b.index = 12;
    b.open_ipam().await;
    b.start(peers.clone());
    eventually("a's TunnelEndpoint has b's new endpoint", || async {
        a.tep(&b)
            .await
            .is_some_and(|t| t.spec.endpoint == b.endpoint())
    })
    .await;
    wait_peered(&a, &b).await;
    assert_eq!(a.ipam().read(|i| i.snapshot()).unwrap(), a_before);
    assert_eq!(b.ipam().read(|i| i.snapshot()).unwrap(), b_before);
    assert_crossed_views(&a, &b).await;
    a.stop().await;
    b.stop().await;
}
