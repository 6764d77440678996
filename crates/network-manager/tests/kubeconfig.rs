//! The production resolver: each peer's API reached over HTTPS (memkube serves each cluster on
//! 127.0.0.1 with its own CA) through a kubeconfig with a TokenRequest token, stored in a
//! Secret the ForeignCluster references. A missing Secret is reported as an unreachable peer
//! until it appears; a refused kubeconfig is a condition naming the field, quotes nothing of the
//! Secret and changes nothing; a rotated token is used without a restart, by the controller and
//! by the watch on the peer.

use crate::common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::*;
use isthmus_api::{ForeignCluster, ForeignClusterSpec, NetworkConfig, SecretKeyRef};
use isthmus_memkube::{HttpServer, TlsOptions, kubeconfig_yaml};
use isthmus_network_manager::{KubeconfigPeers, PeerResolver};
use k8s_openapi::ByteString;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleRef, Subject};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

async fn serve(c: &Cluster) -> HttpServer {
    let any_port = "127.0.0.1:0".parse().unwrap();
    c.kube
        .serve_https(any_port, TlsOptions::default())
        .await
        .unwrap()
}

/// A fresh token of ServiceAccount `peer` of `c` (bound to `cluster-admin` the first time).
async fn mint(c: &Cluster) -> String {
    let sas: Api<ServiceAccount> = Api::namespaced(c.client.clone(), NS);
    let pp = PostParams::default();
    if sas.get_opt("peer").await.unwrap().is_none() {
        let mut sa = ServiceAccount::default();
        sa.metadata.name = Some("peer".into());
        sas.create(&pp, &sa).await.unwrap();
        let mut crb = ClusterRoleBinding::default();
        crb.metadata.name = Some("peer".into());
        crb.role_ref = RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "ClusterRole".into(),
            name: "cluster-admin".into(),
        };
        crb.subjects = Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: "peer".into(),
            namespace: Some(NS.into()),
            ..Subject::default()
        }]);
        let crbs: Api<ClusterRoleBinding> = Api::all(c.client.clone());
        crbs.create(&pp, &crb).await.unwrap();
    }
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    };
    let answer = sas
        .create_token_request("peer", &pp, &request)
        .await
        .unwrap();
    answer.status.unwrap().token.unwrap()
}

/// The kubeconfig `isthmus peer` would write for `server` (the same renderer).
fn kubeconfig(server: &HttpServer, token: &str) -> String {
    kubeconfig_yaml(&server.url(), server.ca_pem(), token, NS)
}

/// Creates or replaces Secret `name` of `c` holding `text` under key `kubeconfig`.
async fn put_secret(c: &Cluster, name: &str, text: &str) {
    let api: Api<Secret> = Api::namespaced(c.client.clone(), NS);
    let data = BTreeMap::from([("kubeconfig".to_owned(), ByteString(text.into()))]);
    match api.get_opt(name).await.unwrap() {
        Some(mut s) => {
            s.data = Some(data);
            api.replace(name, &PostParams::default(), &s).await.unwrap();
        }
        None => {
            let mut s = Secret::default();
            s.metadata.name = Some(name.to_owned());
            s.data = Some(data);
            api.create(&PostParams::default(), &s).await.unwrap();
        }
    }
}

fn foreign_cluster(peer: &Cluster) -> ForeignCluster {
    let spec = ForeignClusterSpec {
        cluster_id: peer.id.clone(),
        kubeconfig_secret_ref: Some(SecretKeyRef {
            name: format!("{}-kubeconfig", peer.name),
            namespace: NS.to_owned(),
            key: None,
        }),
        lab_cluster: None,
    };
    ForeignCluster::new(&peer.name, spec)
}

async fn add_peer_via_secret(c: &Cluster, peer: &Cluster) {
    c.ensure_namespace(&peer_ns(&peer.name));
    peer.ensure_namespace(&peer_ns(&c.name));
    let fc = foreign_cluster(peer);
    c.fcs().create(&PostParams::default(), &fc).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_reached_through_kubeconfig_secrets() {
    let mut a = Cluster::new("a", 1, "10.0.0.0/16", None).await;
    let mut b = Cluster::new("b", 2, "10.0.0.0/16", None).await;
    let (a_https, b_https) = (serve(&a).await, serve(&b).await);
    a.start(Arc::new(KubeconfigPeers::new(a.client.clone())));
    b.start(Arc::new(KubeconfigPeers::new(b.client.clone())));
    put_secret(&b, "a-kubeconfig", &kubeconfig(&a_https, &mint(&a).await)).await;
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
    put_secret(&a, "b-kubeconfig", &kubeconfig(&b_https, &mint(&b).await)).await;
    wait_peered(&a, &b).await;
    let sent = b.ncs_from("a").get("a").await.unwrap();
    assert_eq!(sent.spec.endpoint, a.endpoint());
    a.stop().await;
    b.stop().await;
    a_https.shutdown().await;
    b_https.shutdown().await;
}

/// Every Event message and note in `c`'s namespaces `default` and `isthmus`.
async fn event_texts(c: &Cluster) -> Vec<String> {
    let mut out = Vec::new();
    for ns in ["default", NS] {
        let api: Api<Event> = Api::namespaced(c.client.clone(), ns);
        for e in api.list(&ListParams::default()).await.unwrap() {
            out.push(format!(
                "{} {}",
                e.reason.unwrap_or_default(),
                e.note.unwrap_or_default()
            ));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_kubeconfig_is_a_condition_naming_the_field_and_changes_nothing() {
    let mut a = Cluster::new("a", 1, "10.0.0.0/16", None).await;
    let b = Cluster::new("b", 2, "10.0.0.0/16", None).await;
    let b_https = serve(&b).await;
    let token = mint(&b).await;
    let dir = tempfile::tempdir().unwrap();
    let ran = dir.path().join("ran");
    // a valid kubeconfig, plus a command the old loader would have run at the first request
    let exec = format!(
        "    exec: {{command: touch, args: [{}]}}\n    token: ",
        ran.display()
    );
    let hostile = kubeconfig(&b_https, &token).replace("    token: ", &exec);
    assert!(hostile.contains("exec:"), "{hostile}");
    put_secret(&a, "b-kubeconfig", &hostile).await;
    a.start(Arc::new(KubeconfigPeers::new(a.client.clone())));
    add_peer_via_secret(&a, &b).await;
    eventually("a names the refused field", || async {
        let Some(st) = a.fcs().get("b").await.unwrap().status else {
            return false;
        };
        let reachable = condition(&st.conditions, "PeerAPIReachable");
        reachable.is_some_and(|(s, r, _)| s == "False" && r == "KubeconfigRefused")
            && st.phase.as_deref() == Some("Error")
    })
    .await;
    let st = a.fcs().get("b").await.unwrap().status.unwrap();
    let (_, _, message) = condition(&st.conditions, "PeerAPIReachable").unwrap();
    let (_, ready_reason, _) = condition(&st.conditions, "Ready").unwrap();
    assert_eq!(ready_reason, "KubeconfigRefused");
    assert!(message.contains("b-kubeconfig"), "{message}");
    assert!(message.contains("users[0].user.exec"), "{message}");
    assert!(message.contains("runs a command"), "{message}");
    assert!(!message.contains(&token), "{message}");
    eventually("a Warning Event says so", || async {
        event_texts(&a)
            .await
            .iter()
            .any(|t| t.starts_with("KubeconfigRefused"))
    })
    .await;
    for text in event_texts(&a).await {
        assert!(!text.contains(&token), "{text}");
    }
    // nothing else happened: no command, no NetworkConfig in b, no peer in the IPAM
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(!ran.exists(), "the exec plugin ran");
    assert!(b.ncs_from("a").get_opt("a").await.unwrap().is_none());
    assert!(a.ipam().read(|i| i.peer(&b.id).cloned()).unwrap().is_none());
    assert!(a.tep(&b).await.is_none());
    // the fixed Secret is read at the next retry
    put_secret(&a, "b-kubeconfig", &kubeconfig(&b_https, &token)).await;
    eventually("a's NetworkConfig reaches b", || async {
        b.ncs_from("a").get_opt("a").await.unwrap().is_some()
    })
    .await;
    a.stop().await;
    b_https.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_resolve_uses_the_rotated_token() {
    let a = Cluster::new("a", 1, "10.0.0.0/16", None).await;
    let b = Cluster::new("b", 2, "10.0.0.0/16", None).await;
    let b_https = serve(&b).await;
    let peers = KubeconfigPeers::new(a.client.clone());
    let fc = foreign_cluster(&b);
    put_secret(&a, "b-kubeconfig", &kubeconfig(&b_https, &mint(&b).await)).await;
    let old = peers.resolve(&fc).await.unwrap();
    let ncs = |c: kube::Client| Api::<NetworkConfig>::namespaced(c, NS);
    ncs(old.client.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    b.kube.expire_tokens();
    let refused = ncs(old.client.clone()).list(&ListParams::default()).await;
    assert!(
        matches!(&refused, Err(kube::Error::Api(s)) if s.code == 401),
        "{refused:?}"
    );
    put_secret(&a, "b-kubeconfig", &kubeconfig(&b_https, &mint(&b).await)).await;
    let new = peers.resolve(&fc).await.unwrap();
    assert_ne!(
        new.version, old.version,
        "a new client for the edited Secret"
    );
    ncs(new.client.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    let again = peers.resolve(&fc).await.unwrap();
    assert_eq!(
        again.version, new.version,
        "cached while the Secret is unchanged"
    );
    b_https.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_token_is_picked_up_by_the_controller_and_the_peer_watch() {
    let mut a = Cluster::new("a", 1, "10.0.0.0/16", None).await;
    let mut b = Cluster::new("b", 2, "10.0.0.0/16", None).await;
    let (a_https, b_https) = (serve(&a).await, serve(&b).await);
    a.start(Arc::new(KubeconfigPeers::new(a.client.clone())));
    b.start(Arc::new(KubeconfigPeers::new(b.client.clone())));
    put_secret(&b, "a-kubeconfig", &kubeconfig(&a_https, &mint(&a).await)).await;
    put_secret(&a, "b-kubeconfig", &kubeconfig(&b_https, &mint(&b).await)).await;
    add_peer_via_secret(&a, &b).await;
    add_peer_via_secret(&b, &a).await;
    wait_peered(&a, &b).await;
    // a's token for b dies, and so does a's watch on b (it must list again)
    b.kube.expire_tokens();
    b.kube.expire_watches();
    put_secret(&a, "b-kubeconfig", &kubeconfig(&b_https, &mint(&b).await)).await;
    wait_peered(&a, &b).await;
    // once b's own controllers are gone, the only watch on b's API is a's peer watch: it runs
    // with the new token (a watch left with the old one gets 401 and never opens)
    b.stop().await;
    eventually("a watches b with the new token", || async {
        b.kube.watch_count() == 1
    })
    .await;
    // and it works: b's decision about a's NetworkConfig reaches a without any other trigger
    // (a peered ForeignCluster is otherwise re-checked every 5 minutes)
    let generation = b.ncs_from("a").get("a").await.unwrap().metadata.generation;
    let status = json!({"status": {
        "processed": false,
        "observedGeneration": generation,
        "conditions": [{"type": "Processed", "status": "False", "reason": "RotationTest",
            "message": "refused by the test", "lastTransitionTime": "2025-01-01T00:00:00Z",
            "observedGeneration": generation}],
    }});
    b.ncs_from("a")
        .patch_status("a", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    eventually("a sees b's decision through the watch", || async {
        let st = a.fcs().get("b").await.unwrap().status.unwrap_or_default();
        condition(&st.conditions, "PeerProcessed").is_some_and(|(_, r, _)| r == "RotationTest")
    })
    .await;
    a.stop().await;
    a_https.shutdown().await;
    b_https.shutdown().await;
}
