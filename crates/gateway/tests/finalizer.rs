//! The gateway's finalizer on TunnelEndpoints (`net.isthmus.io/gateway`), against memkube and
//! the recording fakes: a programmed peer holds it; a deleted TunnelEndpoint keeps it while the
//! kernel refuses to let the peer go and loses it only once the peer's WireGuard peer, routes
//! and NAT rules are gone; the last one goes with the whole datapath; with no gateway running the
//! deletion waits, and the next leader finishes it.

use crate::common;

use std::time::Duration;

use common::*;
use isthmus_api::TunnelEndpoint;
use isthmus_dataplane::PrivateKey;
use isthmus_dataplane::firewall::FirewallDriver as _;
use isthmus_gateway::FakeProber;
use isthmus_gateway::finalizer::FINALIZER;
use kube::Api;
use kube::api::DeleteParams;

const LIMIT: Duration = Duration::from_secs(10);

fn teps(client: &kube::Client) -> Api<TunnelEndpoint> {
    Api::namespaced(client.clone(), NS)
}

async fn finalizers(client: &kube::Client, name: &str) -> Option<Vec<String>> {
    let tep = teps(client).get_opt(name).await.unwrap()?;
    Some(tep.metadata.finalizers.unwrap_or_default())
}

async fn delete(client: &kube::Client, name: &str) {
    teps(client)
        .delete(name, &DeleteParams::default())
        .await
        .unwrap();
}

/// What the fake kernel holds of peer `i`: (WireGuard peer, routes, NAT rules).
fn kernel_has(gw: &Running, key: &PrivateKey, i: u8) -> (bool, bool, bool) {
    let pods = format!("10.10{i}.0.0/24");
    gw.handle.inspect(|g| {
        let peer = g.tunnel.peers.contains_key(&key.public_key());
        let routes = g.routes.routes.iter().any(|r| r.dst.to_string() == pods);
        let nat = g.firewall.applied().is_some_and(|p| {
            p.peers
                .iter()
                .any(|n| n.ranges.iter().any(|r| r.to_string() == pods))
        });
        (peer, routes, nat)
    })
}

fn ensures(gw: &Running) -> usize {
    gw.handle.inspect(|g| {
        g.tunnel
            .calls
            .iter()
            .filter(|c| c.starts_with("ensure"))
            .count()
    })
}

#[tokio::test]
async fn a_deleted_peer_is_released_only_once_the_kernel_lost_it() {
    let (_kube, client) = cluster().await;
    let gw = start(&client, config("gw-0"), FakeProber::default());
    let (key_b, key_c) = (PrivateKey::generate(), PrivateKey::generate());
    create_tep(&client, &tep("b", 1, &key_b)).await;
    create_tep(&client, &tep("c", 2, &key_c)).await;
    wait_for("both peers programmed and held", LIMIT, || async {
        gw.peers() == 2
            && finalizers(&client, "b").await == Some(vec![FINALIZER.to_owned()])
            && finalizers(&client, "c").await == Some(vec![FINALIZER.to_owned()])
    })
    .await;
    assert_eq!(kernel_has(&gw, &key_b, 1), (true, true, true));

    // The kernel refuses every NAT change: b cannot leave the kernel completely.
    gw.handle
        .inspect(|g| g.firewall.log.lock().unwrap().failing = true);
    delete(&client, "b").await;
    let removal = format!("remove {}", key_b.public_key());
    wait_for("b's WireGuard peer removed", LIMIT, || async {
        gw.handle.inspect(|g| g.tunnel.calls.contains(&removal))
    })
    .await;
    let attempts = ensures(&gw);
    wait_for("two more reconciles, both failing", LIMIT, || async {
        ensures(&gw) >= attempts + 2
    })
    .await;
    let (_, routes, _) = kernel_has(&gw, &key_b, 1);
    assert!(
        routes,
        "the refused NAT change stopped the reconcile before b's routes"
    );
    let held = teps(&client).get("b").await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());
    assert_eq!(
        held.metadata.finalizers,
        Some(vec![FINALIZER.to_owned()]),
        "b is still in the kernel: its TunnelEndpoint must stay"
    );

    // The kernel accepts again: b goes, and only after its kernel state.
    gw.handle
        .inspect(|g| g.firewall.log.lock().unwrap().failing = false);
    wait_for("b released", LIMIT, || async {
        finalizers(&client, "b").await.is_none()
    })
    .await;
    assert_eq!(kernel_has(&gw, &key_b, 1), (false, false, false));
    assert_eq!(
        kernel_has(&gw, &key_c, 2),
        (true, true, true),
        "c untouched"
    );

    // The last peer goes with the whole datapath.
    delete(&client, "c").await;
    wait_for("c released", LIMIT, || async {
        finalizers(&client, "c").await.is_none()
    })
    .await;
    gw.handle.inspect(|g| {
        assert!(
            g.tunnel.device.is_none(),
            "interface removed before c was released"
        );
        assert!(g.routes.routes.is_empty());
        assert!(g.firewall.applied().is_none());
    });
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn with_no_gateway_running_the_deletion_waits_for_the_next_leader() {
    let (_kube, client) = cluster().await;
    let first = start(&client, config("gw-0"), FakeProber::default());
    let key = PrivateKey::generate();
    create_tep(&client, &tep("b", 1, &key)).await;
    wait_for("b programmed and held", LIMIT, || async {
        first.peers() == 1 && finalizers(&client, "b").await == Some(vec![FINALIZER.to_owned()])
    })
    .await;
    // A clean stop leaves the kernel as it is, so the finalizer must stay.
    first.stop().await.unwrap();
    delete(&client, "b").await;
    let held = teps(&client).get("b").await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());
    assert_eq!(held.metadata.finalizers, Some(vec![FINALIZER.to_owned()]));

    let next = start(&client, config("gw-1"), FakeProber::default());
    wait_for("the next leader releases b", LIMIT, || async {
        finalizers(&client, "b").await.is_none()
    })
    .await;
    assert_eq!(
        next.peers(),
        0,
        "the deleted peer was never programmed again"
    );
    next.stop().await.unwrap();
}
