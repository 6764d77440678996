//! The gateway holds a TunnelEndpoint with its finalizer (`net.isthmus.io/gateway`) until the
//! peer is out of the kernel. Here a stand-in gateway holds and releases them: unpeering still
//! completes at once (the ForeignCluster, NatMapping and NetworkConfigs go; the held
//! TunnelEndpoint waits), and peering again while the old TunnelEndpoint is held converges once
//! the gateway lets it go.

use crate::common;

use common::*;
use kube::api::{Patch, PatchParams};
use serde_json::json;

const GATEWAY_FINALIZER: &str = "net.isthmus.io/gateway";

/// What the gateway does when it programs a peer.
async fn hold(c: &Cluster, peer: &Cluster) {
    let patch = json!({"metadata": {"finalizers": [GATEWAY_FINALIZER]}});
    c.teps()
        .patch(&peer.name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .unwrap();
}

/// What the gateway does once the peer is out of the kernel.
async fn release(c: &Cluster, peer: &Cluster) {
    let patch = json!({"metadata": {"finalizers": null}});
    c.teps()
        .patch(&peer.name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .unwrap();
}

async fn held_and_deleting(c: &Cluster, peer: &Cluster) -> bool {
    c.tep(peer).await.is_some_and(|t| {
        t.metadata.deletion_timestamp.is_some()
            && t.metadata.finalizers == Some(vec![GATEWAY_FINALIZER.to_owned()])
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpeering_completes_while_the_gateway_holds_the_tunnel_endpoint() {
    let (mut a, mut b, _peers) = peered_pair().await;
    hold(&a, &b).await;
    hold(&b, &a).await;

    a.remove_peer(&b).await;
    b.remove_peer(&a).await;
    eventually(
        "the network-managers finished; the tunnels are held",
        || async {
            a.fcs().get_opt("b").await.unwrap().is_none()
                && b.fcs().get_opt("a").await.unwrap().is_none()
                && a.nat_objects(&b).await.is_empty()
                && b.nat_objects(&a).await.is_empty()
                && a.ncs_from("b").get_opt("b").await.unwrap().is_none()
                && b.ncs_from("a").get_opt("a").await.unwrap().is_none()
                && a.ipam().read(|i| i.peer(&b.id).is_none()).unwrap()
                && held_and_deleting(&a, &b).await
                && held_and_deleting(&b, &a).await
        },
    )
    .await;

    release(&a, &b).await;
    release(&b, &a).await;
    eventually("the released TunnelEndpoints are gone", || async {
        a.tep(&b).await.is_none() && b.tep(&a).await.is_none()
    })
    .await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peering_again_while_the_old_tunnel_is_held_converges_once_it_is_released() {
    let (mut a, mut b, _peers) = peered_pair().await;
    hold(&a, &b).await;
    a.remove_peer(&b).await;
    eventually("a unpeered, its tunnel held", || async {
        a.fcs().get_opt("b").await.unwrap().is_none() && held_and_deleting(&a, &b).await
    })
    .await;

    a.add_peer(&b).await;
    eventually("a's ForeignCluster is being processed again", || async {
        a.phase(&b).await.is_some()
    })
    .await;
    assert!(
        held_and_deleting(&a, &b).await,
        "a held TunnelEndpoint cannot be revived; it must be replaced"
    );
    release(&a, &b).await;
    eventually("a new TunnelEndpoint replaced the held one", || async {
        a.tep(&b)
            .await
            .is_some_and(|t| t.metadata.deletion_timestamp.is_none())
    })
    .await;
    wait_peered(&a, &b).await;
    a.stop().await;
    b.stop().await;
}
