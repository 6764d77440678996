//! The production resolver: each peer's API reached over HTTP through a kubeconfig stored in a
//! Secret the ForeignCluster references (memkube serves each cluster on 127.0.0.1). A missing
//! Secret is reported as an unreachable peer until it appears.

use crate::common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::*;
use isthmus_api::{ForeignCluster, ForeignClusterSpec, SecretKeyRef};
use isthmus_network_manager::KubeconfigPeers;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::PostParams;

fn kubeconfig(server: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\n\
         clusters: [{{name: peer, cluster: {{server: \"{server}\"}}}}]\n\
         users: [{{name: peer, user: {{}}}}]\n\
         contexts: [{{name: peer, context: {{cluster: peer, user: peer}}}}]\n\
         current-context: peer\n"
    )
}

async fn add_secret(c: &Cluster, name: &str, server: &str) {
    let mut s = Secret::default();
    s.metadata.name = Some(name.to_owned());
    s.data = Some(BTreeMap::from([(
        "kubeconfig".to_owned(),
        ByteString(kubeconfig(server).into_bytes()),
    )]));
    let api: Api<Secret> = Api::namespaced(c.client.clone(), NS);
    api.create(&PostParams::default(), &s).await.unwrap();
}

async fn add_peer_via_secret(c: &Cluster, peer: &Cluster) {
    let spec = ForeignClusterSpec {
        cluster_id: peer.id.clone(),
        kubeconfig_secret_ref: Some(SecretKeyRef {
            name: format!("{}-kubeconfig", peer.name),
            namespace: NS.to_owned(),
            key: None,
        }),
        lab_cluster: None,
    };
    let fc = ForeignCluster::new(&peer.name, spec);
    c.fcs().create(&PostParams::default(), &fc).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_reached_through_kubeconfig_secrets() {
    let mut a = Cluster::new("a", 1, "10.0.0.0/16", None).await;
    let mut b = Cluster::new("b", 2, "10.0.0.0/16", None).await;
    let any_port = "127.0.0.1:0".parse().unwrap();
    let a_http = a.kube.serve_http(any_port).await.unwrap();
    let b_http = b.kube.serve_http(any_port).await.unwrap();
    a.start(Arc::new(KubeconfigPeers::new(a.client.clone())));
    b.start(Arc::new(KubeconfigPeers::new(b.client.clone())));
    add_secret(&b, "a-kubeconfig", &a_http.url()).await;
    add_peer_via_secret(&b, &a).await;
    // a's ForeignCluster comes first, its Secret later
    add_peer_via_secret(&a, &b).await;
    eventually("a reports the missing Secret", || async {
        let Some(st) = a.fcs().get("b").await.unwrap().status else {
            return false;
        };
        condition(&st.conditions, "PeerAPIReachable")
            .is_some_and(|(s, _, m)| s == "False" && m.contains("b-kubeconfig"))
    })
    .await;
    add_secret(&a, "b-kubeconfig", &b_http.url()).await;
    wait_peered(&a, &b).await;
    let sent = b.ncs().get("a").await.unwrap();
    assert_eq!(sent.spec.endpoint, a.endpoint());
    a.stop().await;
    b.stop().await;
    a_http.shutdown().await;
    b_http.shutdown().await;
}
