//! What the network-manager tells about itself while two memkube clusters peer: reconciles
//! counted per controller, readiness once the watches listed and NatMappings synced, and
//! Kubernetes Events on the peering transitions (Peered, a NetworkConfig processed, an
//! unreachable peer).

use crate::common;

use std::time::Instant;

use common::*;
use isthmus_api::{ForeignCluster, ForeignClusterSpec};
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{ListParams, PostParams};

/// (type, reason, regarding kind, regarding name) of every Event in `namespace`.
async fn events(c: &Cluster, namespace: &str) -> Vec<(String, String, String, String)> {
    Api::<Event>::namespaced(c.client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|e| {
            let r = e.regarding.unwrap_or_default();
            (
                e.type_.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                r.kind.unwrap_or_default(),
                r.name.unwrap_or_default(),
            )
        })
        .collect()
}

fn has(events: &[(String, String, String, String)], want: (&str, &str, &str, &str)) -> bool {
    events
        .iter()
        .any(|e| (e.0.as_str(), e.1.as_str(), e.2.as_str(), e.3.as_str()) == want)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peering_is_counted_ready_and_announced() {
    let (a, b, _peers) = peered_pair().await;
    let t = &a.telemetry;
    assert!(t.reconciles.count("foreign-cluster", true) > 0);
    assert!(t.reconciles.count("network-config", true) > 0);
    eventually("a ready", || async { t.health.readiness().ok() }).await;
    assert!(t.reconciles.count("nat-mappings", true) > 0);
    assert!(t.health.liveness(Instant::now()).ok());
    eventually("a Peered event on ForeignCluster b", || async {
        has(
            &events(&a, "default").await,
            ("Normal", "Peered", "ForeignCluster", "b"),
        )
    })
    .await;
    eventually("b's NetworkConfig processed, announced in a", || async {
        let got = events(&a, &peer_ns("b")).await;
        got.iter()
            .any(|e| e.0 == "Normal" && e.2 == "NetworkConfig" && e.3 == "b")
    })
    .await;
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_peer_is_a_warning_event() {
    let mut a = Cluster::new("a", 1, "10.0.0.0/16", None).await;
    a.start(std::sync::Arc::new(lab(&[&a])));
    let fc = ForeignCluster::new(
        "ghost",
        ForeignClusterSpec {
            cluster_id: "ghost".parse().unwrap(),
            kubeconfig_secret_ref: None,
            lab_cluster: Some("ghost".into()),
        },
    );
    a.fcs().create(&PostParams::default(), &fc).await.unwrap();
    eventually(
        "a PeerUnreachable warning on ForeignCluster ghost",
        || async {
            has(
                &events(&a, "default").await,
                ("Warning", "PeerUnreachable", "ForeignCluster", "ghost"),
            )
        },
    )
    .await;
    assert!(a.telemetry.reconciles.count("foreign-cluster", false) > 0);
    a.stop().await;
}
