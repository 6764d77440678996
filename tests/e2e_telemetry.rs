//! Telemetry of a running lab (root; real namespaces, real packets): every component's
//! `/metrics`, `/healthz` and `/readyz` over HTTP, per-peer tunnel series that move as traffic
//! flows, IPAM and gRPC figures that match what the lab did, and the Kubernetes Events of the
//! peering.

use crate::e2e_common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use e2e_common::*;
use isthmus::lab::cluster::NAMESPACE;
use isthmus::lab::plan::Shape;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::ListParams;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `GET path` → (status code, body).
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    let code = raw.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b.to_owned());
    (code, body.unwrap_or_default())
}

/// Polls `get` until it answers 200 or `limit` passes; returns the last answer.
async fn eventually_ok<F, Fut>(limit: Duration, mut get: F) -> (u16, String)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = (u16, String)>,
{
    let started = std::time::Instant::now();
    loop {
        let answer = get().await;
        if answer.0 == 200 || started.elapsed() > limit {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Endpoint mappings recorded in a cluster's IpamStorage objects (root, blocks, journal).
async fn stored_mappings(client: kube::Client) -> usize {
    let objects = Api::<isthmus_api::IpamStorage>::namespaced(client, NAMESPACE)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    isthmus_ipam_store::stored_snapshot("ipam", &objects)
        .unwrap()
        .map_or(0, |s| s.endpoints.len())
}

/// Every sample of a scrape: `name{labels}` → value.
async fn scrape(addr: SocketAddr) -> BTreeMap<String, f64> {
    let (code, body) = get(addr, "/metrics").await;
    assert_eq!(code, 200, "{body}");
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

fn value(samples: &BTreeMap<String, f64>, series: &str) -> f64 {
    *samples
        .get(series)
        .unwrap_or_else(|| panic!("no series {series} in {samples:#?}"))
}

/// `count` echo requests from pod 0 of `from` to pod 0 of `to`, one after the other; returns
/// how many were answered.
async fn ping_burst(lab: &isthmus::lab::runner::Lab, from: usize, to: usize, count: u16) -> usize {
    let pod = lab.pods(from)[0].clone();
    let dst = reflection(lab, from, to, &lab.pods(to)[0].name).address();
    tokio::task::spawn_blocking(move || {
        isthmus_lab::probe::ping(&pod, dst, count, Duration::from_secs(1))
            .expect("ping runs")
            .rtts
            .len()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_component_serves_metrics_health_and_events_that_follow_the_traffic() {
    // a - b - c: b is the hub and holds the endpoint mappings of the a↔c paths.
    let lab = lab_up(3, Shape::Hub).await;
    let a = &lab.clusters[0];
    for (component, addr) in &a.metrics {
        let ready = eventually_ok(Duration::from_secs(10), || get(*addr, "/readyz")).await;
        assert_eq!(ready.0, 200, "{component} /readyz: {}", ready.1);
        let (code, body) = get(*addr, "/healthz").await;
        assert_eq!(code, 200, "{component} /healthz: {body}");
        let samples = scrape(*addr).await;
        let build = format!(
            "isthmus_build_info{{component=\"{}\",version=\"{}\"}}",
            component.split('/').next().unwrap(),
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(value(&samples, &build), 1.0, "{component}");
    }

    // The gateway's per-peer series: connected, with an RTT and a fresh handshake, and byte
    // counters that grow by at least the traffic sent through the tunnel.
    let gateway = a.metrics["gateway"];
    let before = scrape(gateway).await;
    assert_eq!(
        value(
            &before,
            "isthmus_tunnel_state{peer=\"b\",state=\"connected\"}"
        ),
        1.0
    );
    assert_eq!(
        value(&before, "isthmus_tunnel_state{peer=\"b\",state=\"error\"}"),
        0.0
    );
    let rtt = value(&before, "isthmus_tunnel_rtt_seconds{peer=\"b\"}");
    assert!(rtt > 0.0 && rtt < 1.0, "rtt {rtt}");
    let age = value(
        &before,
        "isthmus_tunnel_last_handshake_age_seconds{peer=\"b\"}",
    );
    assert!((0.0..180.0).contains(&age), "handshake age {age}");
    assert_eq!(value(&before, "isthmus_gateway_leader"), 1.0);
    let tx = "isthmus_tunnel_transmit_bytes_total{peer=\"b\"}";
    let rx = "isthmus_tunnel_receive_bytes_total{peer=\"b\"}";
    let (tx0, rx0) = (value(&before, tx), value(&before, rx));
    let answered = ping_burst(&lab, 0, 1, 300).await;
    assert_eq!(answered, 300, "every echo through the tunnel answered");
    // Each echo and each reply is at least its IPv4 and ICMP headers (28 bytes) however a
    // WireGuard implementation counts (ciphertext or plaintext): at least 8.4 kB more each way,
    // against ~0.2 kB/s of probes and keepalives without the burst.
    let least = 300.0 * 28.0;
    let started = std::time::Instant::now();
    let moved = loop {
        let now = scrape(gateway).await;
        let (dtx, drx) = (value(&now, tx) - tx0, value(&now, rx) - rx0);
        if dtx >= least && drx >= least {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "tunnel counters moved only tx +{dtx}, rx +{drx} (from {tx0}, {rx0}); want +{least}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!("per-peer counters moved by the burst, seen {moved:?} after it");
    let after = scrape(gateway).await;
    assert!(
        value(
            &after,
            "isthmus_reconciles_total{controller=\"gateway\",result=\"ok\"}"
        ) > 0.0
    );
    assert!(
        value(
            &after,
            "isthmus_nftables_apply_duration_seconds_count{path=\"full\",outcome=\"replaced\"}"
        ) >= 1.0
    );

    // The hub's network-manager: the IPAM holds exactly the endpoint mappings its IpamStorage
    // shards record, each asked for over gRPC.
    let hub = &lab.clusters[1];
    let nm = scrape(hub.metrics["network-manager"]).await;
    let mappings = value(&nm, "isthmus_ipam_endpoint_mappings");
    let stored = stored_mappings(hub.client()).await;
    assert!(stored > 0, "the hub maps the a↔c endpoints");
    assert_eq!(mappings, stored as f64, "metric vs IpamStorage");
    let maps = value(
        &nm,
        "isthmus_grpc_requests_total{method=\"MapEndpointIP\",code=\"OK\"}",
    );
    assert!(
        maps >= mappings,
        "{maps} MapEndpointIP calls for {mappings} mappings"
    );
    assert!(nm.contains_key(
        "isthmus_grpc_request_duration_seconds_count{method=\"MapEndpointIP\",code=\"OK\"}"
    ));
    assert_eq!(value(&nm, "isthmus_ipam_peers"), 2.0);
    let external = nm
        .iter()
        .find(|(k, _)| k.starts_with("isthmus_ipam_allocated_addresses{range=\"external\""))
        .map(|(_, v)| *v)
        .expect("external range usage");
    assert!(
        external >= mappings,
        "external addresses {external} < mappings {mappings}"
    );
    let ok = "isthmus_reconciles_total{controller=\"foreign-cluster\",result=\"ok\"}";
    assert!(value(&nm, ok) > 0.0);

    // A worker's route agent keeps the peer's two ranges.
    let worker = a
        .metrics
        .iter()
        .find(|(k, _)| k.starts_with("route-agent/") && !k.ends_with("node0"));
    let (name, addr) = worker.expect("the lab has a worker node");
    let agent = scrape(*addr).await;
    assert_eq!(value(&agent, "isthmus_node_routes"), 2.0, "{name}");
    let ok = "isthmus_reconciles_total{controller=\"routes\",result=\"ok\"}";
    assert!(value(&agent, ok) >= 1.0, "{name}");

    // Events: the peering and the tunnel, as `kubectl get events` shows them.
    let client = a.client();
    let reasons = |ns: &'static str| {
        let client = client.clone();
        async move {
            Api::<Event>::namespaced(client, ns)
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .into_iter()
                .filter_map(|e| e.reason)
                .collect::<Vec<_>>()
        }
    };
    assert!(reasons("default").await.contains(&"Peered".to_owned()));
    assert!(
        reasons(NAMESPACE)
            .await
            .contains(&"TunnelConnected".to_owned())
    );
    lab.shutdown().await;
}
