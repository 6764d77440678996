//! The gateway controller against memkube with the recording datapath fakes and a scripted
//! prober: TunnelEndpoint → peer and status; NatMapping → NAT fast path; deletion; probe
//! failures → `connecting` within the window; a bad TunnelEndpoint isolated.

use crate::common;

use isthmus_dataplane::firewall::FirewallDriver as _;
use std::time::Duration;

use common::*;
use isthmus_api::{ConnectionState, NatMapping, TunnelEndpoint};
use isthmus_dataplane::PrivateKey;
use isthmus_gateway::FakeProber;
use kube::Api;
use kube::api::{DeleteParams, PostParams};

const LIMIT: Duration = Duration::from_secs(10);

async fn state(client: &kube::Client, name: &str) -> Option<ConnectionState> {
    get_tep(client, name)
        .await
        .status
        .map(|s| s.connection.status)
}

#[tokio::test]
async fn a_tunnel_endpoint_becomes_a_peer_and_reports_connected() {
    let (_kube, client) = cluster().await;
    let gw = start(&client, config("gw-0"), FakeProber::default());
    let key = PrivateKey::generate();
    create_tep(&client, &tep("b", 1, &key)).await;
    wait_for("peer configured", LIMIT, || async { gw.peers() == 1 }).await;
    let (routes, address) = gw.handle.inspect(|g| {
        let routes: Vec<String> = g.routes.routes.iter().map(|r| r.dst.to_string()).collect();
        (routes, g.tunnel.device.as_ref().and_then(|d| d.address))
    });
    assert_eq!(routes, ["10.101.0.0/24", "10.201.0.0/24"]);
    assert_eq!(
        address,
        Some("10.200.0.1".parse().unwrap()),
        "transit address"
    );
    wait_for("status connecting (no handshake yet)", LIMIT, || async {
        state(&client, "b").await == Some(ConnectionState::Connecting)
    })
    .await;

    handshake(&gw.handle, &key);
    gw.prober
        .answer(target(1), Some(Duration::from_micros(420)));
    wait_for("status connected", LIMIT, || async {
        state(&client, "b").await == Some(ConnectionState::Connected)
    })
    .await;
    let status = get_tep(&client, "b").await.status.unwrap();
    assert_eq!(status.connection.latency.as_deref(), Some("0.42ms"));
    assert_eq!(status.connection.latency_micros, Some(420));
    assert_eq!(
        (status.connection.rx_bytes, status.connection.tx_bytes),
        (1000, 2000)
    );
    assert!(status.connection.last_handshake.is_some());
    assert_eq!(status.gateway_node.as_deref(), Some("node-1"));
    assert_eq!(status.gateway_ip, Some("172.16.0.1".parse().unwrap()));
    assert_eq!(status.interface_name.as_deref(), Some("isthmus0"));
    assert_eq!(status.backend.as_deref(), Some("userspace"));
    assert_eq!(status.phase.as_deref(), Some("Ready"));
    let types: Vec<(&str, &str)> = status
        .conditions
        .iter()
        .map(|c| (c.type_.as_str(), c.status.as_str()))
        .collect();
    assert_eq!(types, [("TunnelConfigured", "True"), ("Connected", "True")]);
    assert!(gw.prober.probes().contains(&target(1)));
    gw.stop().await.unwrap();
}

/// NatMapping `b` with one entry, 10.200.0.7 → 10.102.0.10.
async fn create_one_mapping(client: &kube::Client) {
    let api: Api<NatMapping> = Api::namespaced(client.clone(), NS);
    api.create(
        &PostParams::default(),
        &nat_mapping("b", &[("10.200.0.7", "10.102.0.10")]),
    )
    .await
    .unwrap();
}

/// Whether the gateway's firewall record holds exactly one DNAT entry.
fn one_mapping_applied(gw: &Running) -> bool {
    gw.handle.inspect(|g| {
        use isthmus_dataplane::firewall::FirewallDriver;
        g.firewall.applied().is_some_and(|p| p.mapping_count() == 1)
    })
}

#[tokio::test]
async fn a_natmapping_change_takes_the_fast_path() {
    let (_kube, client) = cluster().await;
    let mut c = config("gw-0");
    // Long probe period: no periodic full reconcile interferes with the measurement.
    c.probe_interval = Duration::from_secs(10);
    c.connection.error_after = Duration::from_secs(60);
    let gw = start(&client, c, FakeProber::default());
    create_tep(&client, &tep("b", 1, &PrivateKey::generate())).await;
    wait_for("peer configured", LIMIT, || async { gw.peers() == 1 }).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ensures = || {
        gw.handle.inspect(|g| {
            g.tunnel
                .calls
                .iter()
                .filter(|c| c.starts_with("ensure"))
                .count()
        })
    };
    let before = ensures();

    create_one_mapping(&client).await;
    let mapped = || one_mapping_applied(&gw);
    let took = wait_for("DNAT entry applied", LIMIT, || async { mapped() }).await;
    assert!(
        took < Duration::from_secs(1),
        "NatMapping → DNAT took {took:?}"
    );
    assert_eq!(
        ensures(),
        before,
        "no full reconcile for a mapping-only change"
    );
    let last = gw
        .handle
        .inspect(|g| g.firewall.log.lock().unwrap().batches.last().cloned());
    assert!(last.unwrap().to_string().contains("10.200.0.7"));
    gw.stop().await.unwrap();
}

/// A probe round runs beside the loop: while a peer's probe does not return, NatMapping
/// changes still reach the kernel (the loop used to wait for every probe of a tick).
#[tokio::test]
async fn a_probe_that_does_not_return_holds_no_natmapping_change_back() {
    let (_kube, client) = cluster().await;
    let prober = FakeProber::default();
    prober.answer_every(Some(Duration::from_millis(1)));
    let gw = start(&client, config("gw-0"), prober.clone());
    create_tep(&client, &tep("b", 1, &PrivateKey::generate())).await;
    wait_for("peer configured", LIMIT, || async { gw.peers() == 1 }).await;
    prober.hold(true);
    let probed = prober.probes().len();
    wait_for("a probe round in flight", LIMIT, || async {
        prober.probes().len() > probed
    })
    .await;

    create_one_mapping(&client).await;
    wait_for(
        "DNAT entry applied while the probe hangs",
        LIMIT,
        || async { one_mapping_applied(&gw) },
    )
    .await;
    prober.hold(false);
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn deleting_a_tunnel_endpoint_removes_its_peer() {
    let (_kube, client) = cluster().await;
    let gw = start(&client, config("gw-0"), FakeProber::default());
    create_tep(&client, &tep("b", 1, &PrivateKey::generate())).await;
    create_tep(&client, &tep("c", 2, &PrivateKey::generate())).await;
    wait_for("two peers", LIMIT, || async { gw.peers() == 2 }).await;
    Api::<TunnelEndpoint>::namespaced(client.clone(), NS)
        .delete("b", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("peer b removed", LIMIT, || async { gw.peers() == 1 }).await;
    let routes = gw.handle.inspect(|g| {
        g.routes
            .routes
            .iter()
            .map(|r| r.dst.to_string())
            .collect::<Vec<_>>()
    });
    assert_eq!(routes, ["10.102.0.0/24", "10.202.0.0/24"]);
    // The last peer gone: no interface, no route, no NAT table is left.
    Api::<TunnelEndpoint>::namespaced(client.clone(), NS)
        .delete("c", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("datapath removed", LIMIT, || async {
        gw.handle.inspect(|g| {
            g.tunnel.device.is_none()
                && g.routes.routes.is_empty()
                && g.firewall.applied().is_none()
        })
    })
    .await;
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn failing_probes_turn_connecting_within_the_window_and_back() {
    let (_kube, client) = cluster().await;
    let c = config("gw-0");
    let window = c.detection_time();
    let gw = start(&client, c, FakeProber::default());
    let key = PrivateKey::generate();
    create_tep(&client, &tep("b", 1, &key)).await;
    wait_for("peer configured", LIMIT, || async { gw.peers() == 1 }).await;
    handshake(&gw.handle, &key);
    gw.prober.answer(target(1), Some(Duration::from_millis(1)));
    wait_for("connected", LIMIT, || async {
        state(&client, "b").await == Some(ConnectionState::Connected)
    })
    .await;

    gw.prober.answer(target(1), None);
    let took = wait_for("connecting after the peer went", LIMIT, || async {
        state(&client, "b").await == Some(ConnectionState::Connecting)
    })
    .await;
    assert!(
        took <= window + Duration::from_millis(500),
        "{took:?} > {window:?}"
    );
    let status = get_tep(&client, "b").await.status.unwrap();
    assert_eq!(status.connection.latency, None);
    let connected = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Connected")
        .unwrap();
    assert_eq!(
        (connected.status.as_str(), connected.reason.as_str()),
        ("False", "ProbeFailing")
    );

    gw.prober.answer(target(1), Some(Duration::from_millis(1)));
    wait_for("connected again", LIMIT, || async {
        state(&client, "b").await == Some(ConnectionState::Connected)
    })
    .await;
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn a_bad_tunnel_endpoint_gets_an_error_and_the_others_work() {
    let (_kube, client) = cluster().await;
    let gw = start(&client, config("gw-0"), FakeProber::default());
    create_tep(&client, &tep("b", 1, &PrivateKey::generate())).await;
    let mut bad = tep("c", 2, &PrivateKey::generate());
    bad.spec
        .backend_config
        .insert("publicKey".into(), "not-a-key".into());
    create_tep(&client, &bad).await;
    wait_for("bad one reported", LIMIT, || async {
        state(&client, "c").await == Some(ConnectionState::Error)
    })
    .await;
    assert_eq!(gw.peers(), 1);
    let status = get_tep(&client, "c").await.status.unwrap();
    let configured = status
        .conditions
        .iter()
        .find(|c| c.type_ == "TunnelConfigured")
        .unwrap();
    assert_eq!(configured.reason, "InvalidTunnelEndpoint");
    assert!(
        status.connection.message.contains("public key"),
        "{}",
        status.connection.message
    );
    assert_eq!(status.phase.as_deref(), Some("Error"));
    assert_ne!(state(&client, "b").await, Some(ConnectionState::Error));
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn a_bad_configuration_is_refused_before_anything_starts() {
    let (kube, client) = cluster().await;
    let mut c = config("gw-0");
    c.probe_interval = Duration::from_secs(60);
    let gw = start(&client, c, FakeProber::default());
    let result = tokio::time::timeout(Duration::from_secs(2), gw.task)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(result, Err(isthmus_gateway::Error::Config(_))),
        "{result:?}"
    );
    assert_eq!(kube.watch_count(), 0);
}

#[tokio::test]
async fn a_steady_connection_is_not_patched_again() {
    let (_kube, client) = cluster().await;
    let gw = start(&client, config("gw-0"), FakeProber::default());
    let key = PrivateKey::generate();
    create_tep(&client, &tep("b", 1, &key)).await;
    wait_for("peer configured", LIMIT, || async { gw.peers() == 1 }).await;
    handshake(&gw.handle, &key);
    gw.prober
        .answer(target(1), Some(Duration::from_micros(300)));
    wait_for("connected", LIMIT, || async {
        state(&client, "b").await == Some(ConnectionState::Connected)
    })
    .await;
    let version = get_tep(&client, "b").await.metadata.resource_version;
    let probes = gw.prober.probes().len();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        gw.prober.probes().len() >= probes + 3,
        "probes keep running"
    );
    assert_eq!(
        get_tep(&client, "b").await.metadata.resource_version,
        version,
        "nothing changed, nothing patched"
    );
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn spec_changes_and_watch_restarts_are_followed() {
    let (kube, client) = cluster().await;
    let gw = start(&client, config("gw-0"), FakeProber::default());
    let api: Api<TunnelEndpoint> = Api::namespaced(client.clone(), NS);
    create_tep(&client, &tep("b", 1, &PrivateKey::generate())).await;
    wait_for("peer configured", LIMIT, || async { gw.peers() == 1 }).await;

    let mut moved = api.get("b").await.unwrap();
    moved.spec.endpoint = "192.168.100.99:51820".into();
    api.replace("b", &PostParams::default(), &moved)
        .await
        .unwrap();
    let endpoint = || {
        gw.handle.inspect(|g| {
            g.tunnel
                .peers
                .values()
                .next()
                .and_then(|p| p.endpoint)
                .map(|e| e.to_string())
        })
    };
    wait_for("endpoint updated", LIMIT, || async {
        endpoint().as_deref() == Some("192.168.100.99:51820")
    })
    .await;

    kube.expire_watches();
    create_tep(&client, &tep("c", 2, &PrivateKey::generate())).await;
    wait_for("peer after a watch restart", LIMIT, || async {
        gw.peers() == 2
    })
    .await;
    gw.stop().await.unwrap();
}
