//! Attack (issue 13, part 7d): a peer writes, in its own namespace of our cluster, a
//! NetworkConfig that claims to come from another cluster (a forged `originClusterID`). The
//! network-manager refuses it with condition `OriginMismatch` and changes nothing: no
//! TunnelEndpoint is written or changed, and the IPAM takes no decision about anyone.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use isthmus_api::NetworkConfig;
use kube::api::PostParams;

/// A NetworkConfig claiming to come from `claimed`, written into `namespace` of `into`.
fn forged(claimed: &Cluster, receiver: &Cluster, namespace: &str, pod: &str) -> NetworkConfig {
    let body = serde_json::json!({
        "apiVersion": "net.isthmus.io/v1alpha1", "kind": "NetworkConfig",
        "metadata": {"name": claimed.name, "namespace": namespace},
        "spec": {
            "clusterID": receiver.name, "originClusterID": claimed.name,
            "podCIDR": pod, "externalCIDR": "10.77.0.0/16", "endpoint": "203.0.113.66:51820",
            "backendType": "wireguard",
            "backendConfig": {"publicKey": "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="},
        }
    });
    serde_json::from_value(body).unwrap()
}

/// `x`'s TunnelEndpoints for `b` and `c`: specs and resource versions.
async fn tunnels(x: &Cluster, b: &Cluster, c: &Cluster) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    for peer in [b, c] {
        let t = x.tep(peer).await.expect("a TunnelEndpoint");
        out.push((
            serde_json::to_string(&t.spec).unwrap(),
            t.metadata.resource_version,
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_config_with_a_forged_origin_is_refused_and_changes_nothing() {
    let mut a = Cluster::new("a", 1, "10.0.0.0/16", None).await;
    let mut b = Cluster::new("b", 2, "10.0.0.0/16", None).await;
    let mut c = Cluster::new("c", 3, "10.0.0.0/16", None).await;
    let peers = Arc::new(lab(&[&a, &b, &c]));
    for x in [&mut a, &mut b, &mut c] {
        x.start(peers.clone());
    }
    mesh(&[&a, &b, &c]).await;
    wait_peered(&a, &b).await;
    wait_peered(&a, &c).await;
    let decisions = |x: &Cluster| {
        x.ipam()
            .read(|i| {
                i.peers()
                    .map(|(id, n)| (id.clone(), n.clone()))
                    .collect::<Vec<_>>()
            })
            .unwrap()
    };
    let before_ipam = decisions(&a);
    let before_teps = tunnels(&a, &b, &c).await;
    // b, in its own namespace in a, speaks for c (another Pod CIDR, another gateway) ...
    let nc = forged(&c, &a, &peer_ns("b"), "10.66.0.0/16");
    a.ncs_from("b")
        .create(&PostParams::default(), &nc)
        .await
        .unwrap();
    // ... and for a cluster a does not peer with
    let d = Cluster::new("d", 4, "10.0.0.0/16", None).await;
    let nd = forged(&d, &a, &peer_ns("b"), "10.68.0.0/16");
    a.ncs_from("b")
        .create(&PostParams::default(), &nd)
        .await
        .unwrap();
    for name in ["c", "d"] {
        eventually(&format!("forged NetworkConfig {name} refused"), || async {
            let nc = a.ncs_from("b").get(name).await.unwrap();
            let st = nc.status.unwrap_or_default();
            !st.processed
                && condition(&st.conditions, "Processed").is_some_and(|(s, r, m)| {
                    s == "False"
                        && r == "OriginMismatch"
                        && m.contains("belongs to peer b")
                        && m.contains(&format!("originClusterID {name}"))
                })
        })
        .await;
    }
    // give a wrong decision time to happen, then check that none did
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(decisions(&a), before_ipam, "the IPAM decided nothing");
    assert_eq!(
        tunnels(&a, &b, &c).await,
        before_teps,
        "no TunnelEndpoint changed"
    );
    assert_eq!(a.phase(&b).await.as_deref(), Some("Peered"));
    assert_eq!(a.phase(&c).await.as_deref(), Some("Peered"));
    for x in [&mut a, &mut b, &mut c] {
        x.stop().await;
    }
}
