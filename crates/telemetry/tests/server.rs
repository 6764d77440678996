//! The telemetry server over a real socket: status codes and bodies of `/metrics`, `/healthz`
//! and `/readyz` as a kubelet or Prometheus would see them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use isthmus_telemetry::metrics::Reconciles;
use isthmus_telemetry::{Health, Registry, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    let code = raw[9..12].parse().unwrap();
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

#[tokio::test]
async fn metrics_health_and_readiness_over_http() {
    let health = Health::default();
    let reconciles = Reconciles::default();
    let mut registry = Registry::default();
    reconciles.register(&mut registry);
    let gate = health.gate("ipam", "store not loaded");
    let beat = health.heartbeat("controller", Duration::from_secs(30));
    let server = serve(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(registry),
        health.clone(),
    )
    .await
    .unwrap();
    let addr = server.local_addr();

    reconciles.record("tunnel-endpoints", true, Duration::from_millis(3));
    let (code, body) = get(addr, "/metrics").await;
    assert_eq!(code, 200);
    assert!(
        body.contains("isthmus_reconciles_total{controller=\"tunnel-endpoints\",result=\"ok\"} 1"),
        "{body}"
    );
    assert!(
        body.contains(
            "isthmus_reconcile_duration_seconds_count{controller=\"tunnel-endpoints\"} 1"
        )
    );

    let (code, body) = get(addr, "/readyz").await;
    assert_eq!(
        (code, body.contains("[-] ipam failed: store not loaded")),
        (503, true),
        "{body}"
    );
    gate.open();
    assert_eq!(get(addr, "/readyz").await.0, 200);

    assert_eq!(get(addr, "/healthz").await.0, 200);
    drop(beat);
    let (code, body) = get(addr, "/healthz").await;
    assert_eq!(
        (code, body.contains("controller failed: the loop ended")),
        (503, true),
        "{body}"
    );

    assert_eq!(get(addr, "/nothing").await.0, 404);
}

#[tokio::test]
async fn a_taken_port_is_a_clear_error() {
    let first = serve(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(Registry::default()),
        Health::default(),
    )
    .await
    .unwrap();
    let err = serve(
        first.local_addr(),
        Arc::new(Registry::default()),
        Health::default(),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("cannot listen for metrics and health"),
        "{err}"
    );
}
