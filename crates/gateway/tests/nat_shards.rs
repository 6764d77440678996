//! The gateway and NatMapping shards, against memkube with the recording firewall: a shard
//! change reaches the firewall as a batch of just its changed elements (no table rebuild, no
//! other shard's entries), and during an upgrade the older whole-peer object and the shards
//! merge, so deleting the old object removes only what no shard holds.

use crate::common;

use std::time::Duration;

use common::*;
use isthmus_api::NatMapping;
use isthmus_dataplane::PrivateKey;
use isthmus_dataplane::firewall::FirewallDriver as _;
use isthmus_gateway::FakeProber;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(10);

fn shard(peer: &str, block: u32, pairs: &[(&str, &str)]) -> NatMapping {
    let mut nm = nat_mapping(peer, pairs);
    nm.metadata.name = Some(format!("{peer}.block-{block}"));
    nm.spec.block = Some(block);
    nm
}

/// The batches the fake firewall received since `from`.
fn batches(gw: &Running, from: usize) -> Vec<Value> {
    gw.handle
        .inspect(|g| g.firewall.log.lock().unwrap().batches[from..].to_vec())
}

fn batch_count(gw: &Running) -> usize {
    gw.handle
        .inspect(|g| g.firewall.log.lock().unwrap().batches.len())
}

fn applied(gw: &Running) -> Vec<(String, String)> {
    gw.handle.inspect(|g| {
        g.firewall
            .applied()
            .map(|p| {
                p.peers
                    .iter()
                    .flat_map(|peer| peer.mappings.iter())
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            })
            .unwrap_or_default()
    })
}

/// A gateway with peer `b` configured and no periodic full reconcile in the way.
async fn gateway() -> (kube::Client, Running) {
    let (_kube, client) = cluster().await;
    let mut c = config("gw-0");
    // long probe period: no periodic full reconcile sends a batch meanwhile
    c.probe_interval = Duration::from_secs(10);
    c.connection.error_after = Duration::from_secs(60);
    let gw = start(&client, c, FakeProber::default());
    create_tep(&client, &tep("b", 1, &PrivateKey::generate())).await;
    wait_for("peer configured", LIMIT, || async { gw.peers() == 1 }).await;
    (client, gw)
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = list
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn a_shard_change_is_sent_as_its_changed_elements_only() {
    let (client, gw) = gateway().await;
    let api: Api<NatMapping> = Api::namespaced(client.clone(), NS);
    let pp = PostParams::default();
    let block0 = [("10.200.0.2", "10.102.0.2"), ("10.200.0.3", "10.102.0.3")];
    let block1 = [("10.200.4.1", "10.102.4.1")];
    api.create(&pp, &shard("b", 0, &block0)).await.unwrap();
    api.create(&pp, &shard("b", 1, &block1)).await.unwrap();
    let all = pairs(&[block0[0], block0[1], block1[0]]);
    wait_for("three entries", LIMIT, || async { applied(&gw) == all }).await;

    // block 0: one target changes, one entry goes, one comes; block 1 untouched
    let from = batch_count(&gw);
    let mut next = api.get("b.block-0").await.unwrap();
    next.spec.cluster_mappings = shard(
        "b",
        0,
        &[("10.200.0.2", "10.102.0.9"), ("10.200.0.4", "10.102.0.4")],
    )
    .spec
    .cluster_mappings;
    api.replace("b.block-0", &pp, &next).await.unwrap();
    let want = pairs(&[
        ("10.200.0.2", "10.102.0.9"),
        ("10.200.0.4", "10.102.0.4"),
        block1[0],
    ]);
    wait_for("the change applied", LIMIT, || async {
        applied(&gw) == want
    })
    .await;
    let sent = batches(&gw, from);
    assert_eq!(sent.len(), 1, "one batch: {sent:?}");
    let text = sent[0].to_string();
    assert!(
        !text.contains("\"chain\"") && !text.contains("\"table\":{"),
        "no rebuild: {text}"
    );
    for changed in ["10.200.0.2", "10.200.0.3", "10.200.0.4"] {
        assert!(text.contains(changed), "{changed} missing from {text}");
    }
    assert!(
        !text.contains("10.200.4.1"),
        "block 1 was not touched: {text}"
    );
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn the_older_object_and_the_shards_merge_during_an_upgrade() {
    let (client, gw) = gateway().await;
    let api: Api<NatMapping> = Api::namespaced(client.clone(), NS);
    let pp = PostParams::default();
    let old = nat_mapping(
        "b",
        &[("10.200.0.2", "10.102.0.2"), ("10.200.0.3", "10.102.0.3")],
    );
    api.create(&pp, &old).await.unwrap();
    let both = pairs(&[("10.200.0.2", "10.102.0.2"), ("10.200.0.3", "10.102.0.3")]);
    wait_for("older object applied", LIMIT, || async {
        applied(&gw) == both
    })
    .await;

    // the network-manager writes the shard (one entry gone since), then deletes the old object
    let from = batch_count(&gw);
    api.create(&pp, &shard("b", 0, &[("10.200.0.2", "10.102.0.2")]))
        .await
        .unwrap();
    api.delete("b", &DeleteParams::default()).await.unwrap();
    let only = pairs(&[("10.200.0.2", "10.102.0.2")]);
    wait_for("only the shard's entry left", LIMIT, || async {
        applied(&gw) == only
    })
    .await;
    let text: String = batches(&gw, from).iter().map(Value::to_string).collect();
    assert!(!text.contains("\"chain\""), "no rebuild: {text}");
    assert!(
        text.contains("10.200.0.3"),
        "the stale entry was deleted: {text}"
    );
    assert!(
        !text.contains("10.200.0.2"),
        "the entry both hold was never touched: {text}"
    );
    gw.stop().await.unwrap();
}
