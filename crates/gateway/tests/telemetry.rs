//! What the gateway tells about itself while it runs against memkube with the recording
//! datapath: per-peer tunnel samples (state, counters, RTT), reconcile counts, readiness that
//! follows the lease and the datapath, and Events on connection transitions.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use isthmus_dataplane::firewall::fake::FakeFirewall;
use isthmus_dataplane::routes::fake::FakeRoutes;
use isthmus_dataplane::tunnel::Backend;
use isthmus_dataplane::tunnel::fake::FakeTunnel;
use isthmus_dataplane::{Gateway, GatewayHandle, PrivateKey};
use isthmus_gateway::{FakeProber, GatewayTelemetry};
use isthmus_telemetry::Events;
use isthmus_telemetry::metrics::TunnelState;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::ListParams;

const LIMIT: Duration = Duration::from_secs(10);

async fn reasons(client: &kube::Client) -> Vec<(String, String)> {
    Api::<Event>::namespaced(client.clone(), NS)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|e| {
            let regarding = e.regarding.and_then(|r| r.name).unwrap_or_default();
            (e.reason.unwrap_or_default(), regarding)
        })
        .collect()
}

#[tokio::test]
async fn samples_readiness_and_events_follow_the_tunnel() {
    let (_kube, client) = cluster().await;
    let telemetry = GatewayTelemetry {
        events: Events::new(client.clone(), "isthmus-gateway", "gw-0"),
        ..GatewayTelemetry::default()
    };
    let handle = GatewayHandle::new(Gateway::new(
        FakeTunnel::new(Backend::Userspace),
        FakeFirewall::default(),
        FakeRoutes::default(),
    ));
    let prober = FakeProber::default();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(isthmus_gateway::run_observed(
        config("gw-0"),
        telemetry.clone(),
        client.clone(),
        handle.clone(),
        PrivateKey::generate(),
        Arc::new(prober.clone()),
        async move {
            let _ = stopped.await;
        },
    ));

    let key = PrivateKey::generate();
    create_tep(&client, &tep("b", 1, &key)).await;
    wait_for(
        "ready: leading with the datapath programmed",
        LIMIT,
        || async { telemetry.health.readiness().ok() },
    )
    .await;
    handshake(&handle, &key);
    prober.answer(target(1), Some(Duration::from_micros(420)));
    wait_for("sample connected", LIMIT, || async {
        telemetry
            .tunnels
            .samples()
            .iter()
            .any(|s| s.peer == "b" && s.state == TunnelState::Connected)
    })
    .await;
    let sample = telemetry.tunnels.samples().remove(0);
    assert_eq!((sample.rx_bytes, sample.tx_bytes), (1000, 2000));
    assert_eq!(sample.rtt, Some(Duration::from_micros(420)));
    assert!(sample.last_handshake.is_some());
    assert!(telemetry.reconciles.count("gateway", true) > 0);
    assert!(telemetry.health.liveness(std::time::Instant::now()).ok());
    wait_for("a TunnelConnected event on b", LIMIT, || async {
        reasons(&client)
            .await
            .contains(&("TunnelConnected".into(), "b".into()))
    })
    .await;

    prober.answer(target(1), None);
    wait_for("a TunnelLost event on b", LIMIT, || async {
        reasons(&client)
            .await
            .contains(&("TunnelLost".into(), "b".into()))
    })
    .await;
    assert_eq!(
        telemetry.tunnels.samples()[0].state,
        TunnelState::Connecting
    );

    let _ = stop.send(());
    task.await.unwrap().unwrap();
    let readiness = telemetry.health.readiness();
    assert!(!readiness.ok());
    assert!(
        readiness
            .to_string()
            .contains("lease failed: no longer leading"),
        "{readiness}"
    );
}
