//! Leader election between gateway replicas on one memkube: only the holder programs the
//! datapath; a clean stop hands over at once, a crash after the lease expires; a replica that
//! loses its lease to another tears the datapath down and returns an error, while one that
//! merely cannot reach the API keeps its datapath and leads again when it can. Also the key
//! Secret.

use crate::common;

use std::time::Duration;

use common::*;
use isthmus_dataplane::PrivateKey;
use isthmus_dataplane::firewall::FirewallDriver;
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

#[tokio::test]
async fn an_api_outage_stops_programming_but_keeps_the_datapath_and_leading_resumes() {
    let (kube, client) = cluster().await;
    create_tep(&client, &tep("b", 1, &PrivateKey::generate())).await;
    let gw = start(&client, config("gw-0"), FakeProber::default());
    wait_for("gw-0 leads", LIMIT, || async { gw.peers() == 1 }).await;
    let calls_before = gw.handle.inspect(|g| g.tunnel.calls.len());
    // Longer than the renew deadline (1.3 s) and the lease (2 s): the lease cannot be renewed.
    kube.faults().outage(Duration::from_secs(3));
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let (device, peers, calls) = gw.handle.inspect(|g| {
        (
            g.tunnel.device.is_some(),
            g.tunnel.peers.len(),
            g.tunnel.calls.clone(),
        )
    });
    assert!(
        device && peers == 1 && !calls.contains(&"remove device".to_owned()),
        "the datapath stays through the outage: {calls:?}"
    );
    assert!(!gw.task.is_finished(), "the gateway keeps running");
    // Once the API answers, the same replica renews its lease and programs again.
    create_tep(&client, &tep("c", 2, &PrivateKey::generate())).await;
    wait_for("gw-0 programs again", LIMIT, || async { gw.peers() == 2 }).await;
    assert_eq!(holder(&client).await.as_deref(), Some("gw-0"));
    let removed = gw.handle.inspect(|g| {
        g.tunnel.calls[calls_before..]
            .iter()
            .any(|c| c == "remove device")
    });
    assert!(!removed, "the datapath was never torn down");
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn a_replica_that_could_not_renew_tears_down_once_another_holds_the_lease() {
    let (kube, client) = cluster().await;
    create_tep(&client, &tep("b", 1, &PrivateKey::generate())).await;
    let gw = start(&client, config("gw-0"), FakeProber::default());
    wait_for("gw-0 leads", LIMIT, || async { gw.peers() == 1 }).await;
    // The gateway loses the API for longer than its renew deadline...
    kube.faults().outage(Duration::from_secs(2));
    tokio::time::sleep(Duration::from_millis(1800)).await;
    // ...and when it returns, another replica holds the lease (written by the admin client,
    // which is in-process and unaffected once the outage ends).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let api: Api<Lease> = Api::namespaced(client.clone(), NS);
    let mut lease = api.get("isthmus-gateway").await.unwrap();
    let spec = lease.spec.as_mut().unwrap();
    spec.holder_identity = Some("gw-1".into());
    spec.renew_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
        k8s_openapi::jiff::Timestamp::now(),
    ));
    api.replace("isthmus-gateway", &PostParams::default(), &lease)
        .await
        .unwrap();
    let result = tokio::time::timeout(LIMIT, gw.task).await.unwrap().unwrap();
    assert!(
        matches!(result, Err(Error::LeadershipLost(_))),
        "{result:?}"
    );
    let device = gw.handle.inspect(|g| g.tunnel.device.is_some());
    assert!(
        !device,
        "the datapath is removed once another replica leads"
    );
}

/// Renews the lease as holder `who` every 300 ms with a `renewTime` an hour in the past, as a
/// live holder whose clock runs an hour behind ours would, until `stop` is dropped.
fn renew_with_a_slow_clock(
    client: &kube::Client,
    who: &'static str,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> tokio::task::JoinHandle<()> {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
    use k8s_openapi::jiff::{Timestamp, ToSpan};
    let api: Api<Lease> = Api::namespaced(client.clone(), NS);
    let renew = async move {
        loop {
            let behind = Timestamp::now() - 1.hour();
            let mut lease = api
                .get_opt("isthmus-gateway")
                .await
                .unwrap()
                .unwrap_or(Lease {
                    metadata: kube::api::ObjectMeta {
                        name: Some("isthmus-gateway".into()),
                        ..Default::default()
                    },
                    spec: None,
                });
            lease.spec = Some(k8s_openapi::api::coordination::v1::LeaseSpec {
                holder_identity: Some(who.into()),
                lease_duration_seconds: Some(2),
                renew_time: Some(MicroTime(behind)),
                ..Default::default()
            });
            let written = if lease.metadata.resource_version.is_some() {
                api.replace("isthmus-gateway", &PostParams::default(), &lease)
                    .await
            } else {
                api.create(&PostParams::default(), &lease).await
            };
            written.unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    tokio::spawn(async move {
        tokio::select! {
            _ = renew => {}
            _ = stop => {}
        }
    })
}

#[tokio::test]
async fn a_standby_never_takes_a_live_lease_whatever_the_holders_clock_says() {
    let (_kube, client) = cluster().await;
    create_tep(&client, &tep("b", 1, &PrivateKey::generate())).await;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let slow = renew_with_a_slow_clock(&client, "gw-slow", stop_rx);
    wait_for("the slow holder holds the lease", LIMIT, || async {
        holder(&client).await.as_deref() == Some("gw-slow")
    })
    .await;
    let standby = start(&client, config("gw-1"), FakeProber::default());
    // Longer than the lease duration (2 s): by its renewTime the lease looks an hour stale
    // all along, but the record keeps changing, so its holder is alive.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !standby.has_device(),
        "the standby took a live lease by comparing clocks"
    );
    assert_eq!(holder(&client).await.as_deref(), Some("gw-slow"));
    // Once the holder stops renewing, the record stays unchanged for a lease duration.
    drop(stop_tx);
    slow.await.unwrap();
    wait_for("gw-1 takes over", LIMIT, || async { standby.peers() == 1 }).await;
    assert_eq!(holder(&client).await.as_deref(), Some("gw-1"));
    standby.stop().await.unwrap();
}

#[tokio::test]
async fn a_renewal_that_hangs_gives_up_at_the_renew_deadline() {
    use isthmus_gateway::leader::Elector;
    let (kube, client) = cluster().await;
    let leader = config("gw-0").leader;
    let mut elector = Elector::new(client.clone(), NS, leader.clone());
    let (_stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    assert!(elector.campaign(&mut stop_rx).await, "gw-0 leads");
    let holding = tokio::spawn(elector.hold(stop_rx));
    // Every write now takes 60 s: the next renewal hangs far past the renew deadline (1.3 s)
    // and the lease (2 s), after which a standby may take over.
    kube.faults().set_write_latency(Duration::from_secs(60));
    let result = tokio::time::timeout(LIMIT, holding)
        .await
        .expect("the holder gives up instead of waiting for the hung renewal")
        .unwrap();
    assert!(matches!(result, Err(Error::RenewalFailed(_))), "{result:?}");
    kube.faults().set_write_latency(Duration::ZERO);
}

/// Drivers holding what a leader on this node left: interface `isthmus0` with a peer, a route
/// into it, the NAT table.
fn node_with_leftovers() -> FakeHandle {
    use isthmus_dataplane::{GatewaySpec, PeerSpec};
    let handle = fake_handle();
    let spec = GatewaySpec {
        interface: "isthmus0".into(),
        private_key: PrivateKey::generate(),
        listen_port: 51820,
        mtu: 1420,
        transit_source: None,
        peers: vec![PeerSpec {
            name: "b".into(),
            public_key: PrivateKey::generate().public_key().to_string(),
            endpoint: None,
            keepalive: None,
            remote: vec!["10.101.0.0/24".parse().unwrap()],
            local_nat: vec![],
            mappings: vec![],
        }],
    };
    handle.inspect(|gw| gw.reconcile(&spec)).unwrap();
    handle
}

fn has_leftovers(handle: &FakeHandle) -> (bool, bool, bool) {
    handle.inspect(|gw| {
        (
            gw.tunnel.device.is_some(),
            !gw.routes.routes.is_empty(),
            gw.firewall.applied().is_some(),
        )
    })
}

#[tokio::test]
async fn a_standby_removes_what_an_earlier_leader_left_on_its_node_once_another_node_leads() {
    let (_kube, client) = cluster().await;
    create_tep(&client, &tep("b", 1, &PrivateKey::generate())).await;
    let leader = start(&client, config_on("gw-0", "node-0"), FakeProber::default());
    wait_for("gw-0 leads", LIMIT, || async { leader.peers() == 1 }).await;
    // node-1 was the gateway node before (killed, restarting): its datapath is still there.
    let node1 = node_with_leftovers();
    assert_eq!(has_leftovers(&node1), (true, true, true));
    let standby = start_on(
        &client,
        config_on("gw-1", "node-1"),
        FakeProber::default(),
        node1.clone(),
    );
    wait_for("the standby cleans its node", LIMIT, || async {
        has_leftovers(&node1) == (false, false, false)
    })
    .await;
    assert!(node1.inspect(|gw| {
        gw.tunnel
            .calls
            .contains(&"remove leftover isthmus0".to_owned())
    }));
    assert_eq!(holder(&client).await.as_deref(), Some("gw-0"));
    assert_eq!(leader.peers(), 1, "the leader's node is not touched");
    standby.stop().await.unwrap();
    leader.stop().await.unwrap();
}

#[tokio::test]
async fn a_standby_keeps_the_datapath_when_the_holder_ran_on_its_own_node() {
    let (_kube, client) = cluster().await;
    create_tep(&client, &tep("b", 1, &PrivateKey::generate())).await;
    // The holder recorded this very node (an earlier incarnation here whose lease has not
    // expired yet): the datapath here is the live one, to be taken over, not removed.
    let leader = start(&client, config_on("gw-0", "node-1"), FakeProber::default());
    wait_for("gw-0 leads", LIMIT, || async { leader.peers() == 1 }).await;
    let node1 = node_with_leftovers();
    let standby = start_on(
        &client,
        config_on("gw-1", "node-1"),
        FakeProber::default(),
        node1.clone(),
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(has_leftovers(&node1), (true, true, true));
    standby.stop().await.unwrap();
    leader.stop().await.unwrap();
}

#[tokio::test]
async fn the_holder_writes_its_node_on_the_lease() {
    let (_kube, client) = cluster().await;
    let leader = start(&client, config_on("gw-0", "node-7"), FakeProber::default());
    wait_for("gw-0 holds the lease", LIMIT, || async {
        holder(&client).await.as_deref() == Some("gw-0")
    })
    .await;
    let lease = Api::<Lease>::namespaced(client.clone(), NS)
        .get("isthmus-gateway")
        .await
        .unwrap();
    let node = lease
        .metadata
        .annotations
        .unwrap_or_default()
        .get(isthmus_gateway::leader::NODE_ANNOTATION)
        .cloned();
    assert_eq!(node.as_deref(), Some("node-7"));
    leader.stop().await.unwrap();
}
