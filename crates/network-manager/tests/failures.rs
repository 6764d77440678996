//! Bad input and bad weather against memkube: an invalid received NetworkConfig, exhausted
//! pools, an unreachable peer API. Each gets a status condition with a clear reason and no
//! TunnelEndpoint; the unreachable peer is retried until it answers.

use crate::common;

use std::sync::Arc;

use common::*;
use isthmus_api::{NetworkConfig, NetworkConfigStatus};
use kube::api::PostParams;
use serde_json::json;

/// A NetworkConfig from `origin` to `receiver`, with raw (possibly invalid) CIDRs.
fn raw_network_config(origin: &str, receiver: &str, pod: &str, ext: &str) -> serde_json::Value {
    json!({
        "apiVersion": "net.isthmus.io/v1alpha1", "kind": "NetworkConfig",
        "metadata": {"name": origin, "namespace": peer_ns(origin)},
        "spec": {
            "clusterID": receiver, "originClusterID": origin,
            "podCIDR": pod, "externalCIDR": ext, "endpoint": "192.168.200.9:51820",
            "backendType": "wireguard",
            "backendConfig": {"publicKey": "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="},
        }
    })
}

async fn create_raw(c: &Cluster, body: serde_json::Value) {
    use kube::api::{ApiResource, DynamicObject};
    let ar = ApiResource::erase::<NetworkConfig>(&());
    let obj: DynamicObject = serde_json::from_value(body).unwrap();
    let ns = obj.metadata.namespace.clone().unwrap();
    c.ensure_namespace(&ns);
    let api: kube::Api<DynamicObject> = kube::Api::namespaced_with(c.client.clone(), &ns, &ar);
    api.create(&PostParams::default(), &obj).await.unwrap();
}

/// The status of NetworkConfig `name` in `c`, read untyped (the spec may not parse).
async fn raw_status(c: &Cluster, name: &str) -> Option<NetworkConfigStatus> {
    use kube::api::{ApiResource, DynamicObject};
    let ar = ApiResource::erase::<NetworkConfig>(&());
    let api: kube::Api<DynamicObject> =
        kube::Api::namespaced_with(c.client.clone(), &peer_ns(name), &ar);
    let obj = api.get_opt(name).await.unwrap()?;
    serde_json::from_value(obj.data.get("status")?.clone()).ok()
}

async fn wait_refused(c: &Cluster, name: &str, reason: &str) -> String {
    let refused = |s: &NetworkConfigStatus| match condition(&s.conditions, "Processed") {
        Some((st, r, m)) if st == "False" && r == reason && !s.processed => Some(m),
        _ => None,
    };
    eventually(&format!("{name} refused with {reason}"), || async {
        raw_status(c, name)
            .await
            .is_some_and(|s| refused(&s).is_some())
    })
    .await;
    refused(&raw_status(c, name).await.unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_network_configs_get_a_condition_and_no_tunnel() {
    let mut a = Cluster::new("a", 1, "10.0.0.0/16", None).await;
    // b has an API but no network-manager: the NetworkConfig "from b" is written by hand
    let b = Cluster::new("b", 2, "10.0.0.0/16", None).await;
    let peers = Arc::new(lab(&[&a, &b]));
    a.start(peers);
    a.add_peer(&b).await;
    // host bits set: passes the schema pattern, fails to parse as a Cidr
    create_raw(
        &a,
        raw_network_config("b", "a", "10.0.0.1/16", "10.1.0.0/16"),
    )
    .await;
    let m = wait_refused(&a, "b", "InvalidSpec").await;
    assert!(m.contains("host bits"), "{m}");
    // a rule violation: overlapping networks, from a cluster without ForeignCluster
    create_raw(
        &a,
        raw_network_config("c", "a", "10.5.0.0/16", "10.5.0.0/24"),
    )
    .await;
    let m = wait_refused(&a, "c", "InvalidSpec").await;
    assert!(m.contains("overlaps"), "{m}");
    // a valid one from a cluster we do not peer with: not processed either
    create_raw(
        &a,
        raw_network_config("d", "a", "10.6.0.0/16", "10.7.0.0/16"),
    )
    .await;
    wait_refused(&a, "d", "NoForeignCluster").await;
    // the peering with b says why it is stuck, and there is no tunnel
    eventually("a's ForeignCluster reports the refusal", || async {
        let Some(st) = a.fcs().get("b").await.unwrap().status else {
            return false;
        };
        let local = condition(&st.conditions, "LocalProcessed");
        st.phase.as_deref() == Some("Error")
            && local.is_some_and(|(s, r, _)| s == "False" && r == "InvalidSpec")
    })
    .await;
    assert!(a.tep(&b).await.is_none());
    assert!(a.ipam().read(|i| i.peer(&b.id).is_none()).unwrap());
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_pools_get_a_condition_and_no_tunnel() {
    // a's pools hold only its own Pod CIDR and ExternalCIDR: b's identical networks cannot be
    // remapped
    let mut a = Cluster::new("a", 1, "10.0.0.0/16", Some(vec![cidr("10.0.0.0/15")])).await;
    let mut b = Cluster::new("b", 2, "10.0.0.0/16", None).await;
    let peers = Arc::new(lab(&[&a, &b]));
    a.start(peers.clone());
    b.start(peers);
    mesh(&[&a, &b]).await;
    let m = wait_refused(&a, "b", "PoolsExhausted").await;
    assert!(m.contains("no free /16"), "{m}");
    eventually("b learns that a refused it", || async {
        let Some(st) = b.fcs().get("a").await.unwrap().status else {
            return false;
        };
        let peer = condition(&st.conditions, "PeerProcessed");
        st.phase.as_deref() == Some("Error")
            && peer.is_some_and(|(s, r, _)| s == "False" && r == "PoolsExhausted")
    })
    .await;
    assert_eq!(a.phase(&b).await.as_deref(), Some("Error"));
    assert!(a.tep(&b).await.is_none());
    assert!(b.tep(&a).await.is_none());
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_peer_is_retried_and_reported_until_it_answers() {
    let mut a = Cluster::new("a", 1, "10.0.0.0/16", None).await;
    let mut b = Cluster::new("b", 2, "10.0.0.0/16", None).await;
    // a cannot resolve b yet; b can resolve a
    let a_peers = Arc::new(CountingPeers::default());
    a_peers.inner.insert("a", a.client.clone());
    let b_peers = Arc::new(lab(&[&a, &b]));
    a.start(a_peers.clone());
    b.start(b_peers);
    mesh(&[&a, &b]).await;
    eventually("a reports b unreachable", || async {
        let Some(st) = a.fcs().get("b").await.unwrap().status else {
            return false;
        };
        let reach = condition(&st.conditions, "PeerAPIReachable");
        st.phase.as_deref() == Some("Error")
            && reach.is_some_and(|(s, r, m)| {
                s == "False" && r == "PeerUnreachable" && m.contains("\"b\"")
            })
    })
    .await;
    let calls = a_peers.calls();
    eventually("a keeps retrying", || async {
        a_peers.calls() >= calls + 3
    })
    .await;
    assert!(a.tep(&b).await.is_none());
    // the peer's API becomes reachable: the peering completes
    a_peers.inner.insert("b", b.client.clone());
    wait_peered(&a, &b).await;
    let st = a.fcs().get("b").await.unwrap().status.unwrap();
    let reach = condition(&st.conditions, "PeerAPIReachable").unwrap();
    assert_eq!(reach.0, "True");
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_configuration_is_refused_before_anything_starts() {
    let a = Cluster::new("a", 1, "10.0.0.0/16", None).await;
    let mut config = a.config();
    config.gateway.public_key = "not a key".into();
    let r = isthmus_network_manager::run(
        config,
        a.client.clone(),
        Arc::new(lab(&[&a])),
        a.ipam().clone(),
        std::future::pending(),
    )
    .await;
    match r {
        Err(isthmus_network_manager::Error::Config(e)) => {
            assert!(e.to_string().contains("public key"), "{e}")
        }
        other => panic!("expected a configuration error, got {other:?}"),
    }
    assert_eq!(a.kube.watch_count(), 0);
}

/// Plays peer `b` by hand for `a`: writes b's NetworkConfig into a's API and b's decision about
/// a into the status of a's NetworkConfig in b's API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_played_peer_decision_is_checked_and_used() {
    use kube::api::{Patch, PatchParams};
    let mut a = Cluster::new("a", 1, "10.0.0.0/16", None).await;
    let b = Cluster::new("b", 2, "10.0.0.0/16", None).await;
    a.start(Arc::new(lab(&[&a, &b])));
    a.add_peer(&b).await;
    create_raw(
        &a,
        raw_network_config("b", "a", "10.0.0.0/16", "10.1.0.0/16"),
    )
    .await;
    eventually("a's NetworkConfig in b", || async {
        b.ncs_from("a").get_opt("a").await.unwrap().is_some()
    })
    .await;
    let decide = |pod_nat: &str| json!({"status": {"processed": true, "podCIDRNAT": pod_nat, "observedGeneration": 1}});
    let pp = PatchParams::default();
    // a /24 view of a's /16 Pod CIDR cannot be right
    b.ncs_from("a")
        .patch_status("a", &pp, &Patch::Merge(decide("10.9.0.0/24")))
        .await
        .unwrap();
    eventually("a refuses b's decision", || async {
        let Some(st) = a.fcs().get("b").await.unwrap().status else {
            return false;
        };
        condition(&st.conditions, "PeerProcessed")
            .is_some_and(|(s, r, _)| s == "False" && r == "InvalidPeerDecision")
    })
    .await;
    assert!(a.tep(&b).await.is_none());
    // a usable decision: the tunnel appears with b's view of a
    b.ncs_from("a")
        .patch_status("a", &pp, &Patch::Merge(decide("10.9.0.0/16")))
        .await
        .unwrap();
    eventually("a's tunnel uses b's view", || async {
        a.tep(&b)
            .await
            .is_some_and(|t| t.spec.local_nat_pod_cidr == cidr("10.9.0.0/16"))
    })
    .await;
    let tep = a.tep(&b).await.unwrap().spec;
    assert_eq!(tep.endpoint, "192.168.200.9:51820");
    assert_eq!(tep.local_nat_external_cidr, tep.local_external_cidr);
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_refused_for_lack_of_room_is_processed_once_another_peer_goes() {
    // a's pools leave room for exactly one remapped peer (two /16s)
    let mut a = Cluster::new("a", 1, "10.0.0.0/16", Some(vec![cidr("10.0.0.0/14")])).await;
    let mut b = Cluster::new("b", 2, "10.0.0.0/16", None).await;
    let mut c = Cluster::new("c", 3, "10.0.0.0/16", None).await;
    let peers = Arc::new(lab(&[&a, &b, &c]));
    for x in [&mut a, &mut b, &mut c] {
        x.start(peers.clone());
    }
    mesh(&[&a, &b]).await;
    wait_peered(&a, &b).await;
    mesh(&[&a, &c]).await;
    wait_refused(&a, "c", "PoolsExhausted").await;
    assert!(a.tep(&c).await.is_none());
    // b goes: its networks are freed and c gets them, well before the periodic resync
    a.remove_peer(&b).await;
    wait_peered(&a, &c).await;
    assert!(a.ipam().read(|i| i.peer(&b.id).is_none()).unwrap());
    for x in [&mut a, &mut b, &mut c] {
        x.stop().await;
    }
}
