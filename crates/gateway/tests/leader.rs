//! Leader election between gateway replicas on one memkube: only the holder programs the
//! datapath; a clean stop hands over at once, a crash after the lease expires; a replica that
//! loses its lease tears the datapath down and returns an error. Also the key Secret.

use crate::common;

use std::time::Duration;

use common::*;
use isthmus_dataplane::PrivateKey;
use isthmus_gateway::{Error, FakeProber, load_or_create_key};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::PostParams;

const LIMIT: Duration = Duration::from_secs(10);

async fn holder(client: &kube::Client) -> Option<String> {
    let lease = Api::<Lease>::namespaced(client.clone(), NS)
        .get_opt("isthmus-gateway")
        .await
        .unwrap()?;
    lease.spec?.holder_identity
}

#[tokio::test]
async fn only_the_leader_programs_and_a_clean_stop_hands_over_at_once() {
    let (_kube, client) = cluster().await;
    create_tep(&client, &tep("b", 1, &PrivateKey::generate())).await;
    let first = start(&client, config("gw-0"), FakeProber::default());
    wait_for("gw-0 leads", LIMIT, || async { first.peers() == 1 }).await;
    let second = start(&client, config("gw-1"), FakeProber::default());
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        !second.has_device(),
        "the follower must not touch the datapath"
    );
    assert_eq!(holder(&client).await.as_deref(), Some("gw-0"));

    first.stop().await.unwrap();
    let took = wait_for("gw-1 takes over", LIMIT, || async { second.peers() == 1 }).await;
    assert!(
        took < Duration::from_secs(1),
        "a released lease is taken at once ({took:?})"
    );
    assert_eq!(holder(&client).await.as_deref(), Some("gw-1"));
    second.stop().await.unwrap();
    assert_eq!(holder(&client).await, None, "released on shutdown");
}

#[tokio::test]
async fn a_crashed_leader_is_replaced_after_its_lease_expires() {
    let (_kube, client) = cluster().await;
    create_tep(&client, &tep("b", 1, &PrivateKey::generate())).await;
    let first = start(&client, config("gw-0"), FakeProber::default());
    wait_for("gw-0 leads", LIMIT, || async { first.peers() == 1 }).await;
    let second = start(&client, config("gw-1"), FakeProber::default());
    first.task.abort();
    let took = wait_for("gw-1 takes over", LIMIT, || async { second.peers() == 1 }).await;
    assert!(
        took >= Duration::from_secs(1),
        "not before the lease expired ({took:?})"
    );
    second.stop().await.unwrap();
}

#[tokio::test]
async fn losing_the_lease_tears_down_and_fails() {
    let (_kube, client) = cluster().await;
    create_tep(&client, &tep("b", 1, &PrivateKey::generate())).await;
    let gw = start(&client, config("gw-0"), FakeProber::default());
    wait_for("gw-0 leads", LIMIT, || async { gw.peers() == 1 }).await;
    let api: Api<Lease> = Api::namespaced(client.clone(), NS);
    let mut lease = api.get("isthmus-gateway").await.unwrap();
    lease.spec.as_mut().unwrap().holder_identity = Some("usurper".into());
    api.replace("isthmus-gateway", &PostParams::default(), &lease)
        .await
        .unwrap();
    let result = tokio::time::timeout(LIMIT, gw.task).await.unwrap().unwrap();
    assert!(
        matches!(result, Err(Error::LeadershipLost(_))),
        "{result:?}"
    );
    let (device, calls) = gw
        .handle
        .inspect(|g| (g.tunnel.device.is_some(), g.tunnel.calls.clone()));
    assert!(
        !device && calls.contains(&"remove device".to_owned()),
        "{calls:?}"
    );
}

#[tokio::test]
async fn the_key_secret_is_created_once_and_holds_the_public_key() {
    let (_kube, client) = cluster().await;
    let key = load_or_create_key(client.clone(), NS, "isthmus-gateway-key")
        .await
        .unwrap();
    let again = load_or_create_key(client.clone(), NS, "isthmus-gateway-key")
        .await
        .unwrap();
    assert_eq!(key, again);
    let secret = Api::<Secret>::namespaced(client.clone(), NS)
        .get("isthmus-gateway-key")
        .await
        .unwrap();
    let data = secret.data.unwrap();
    assert_eq!(
        String::from_utf8(data["publicKey"].0.clone()).unwrap(),
        key.public_key().to_string()
    );
    assert_eq!(
        PrivateKey::parse(std::str::from_utf8(&data["privateKey"].0).unwrap()).unwrap(),
        key
    );
}
