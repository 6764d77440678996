//! `isthmus peer` and `isthmus unpeer` against two memkube clusters served over HTTPS with
//! authentication and RBAC on, named by kubeconfig files as a user names real ones (CA inline,
//! a bearer token). Bad input is refused with one sentence before
//! anything is written (checked by each API's resourceVersion: nothing changed); `--dry-run`
//! writes nothing; a peering with the real network-managers and gateway controllers (on the
//! recording fakes) comes up `connected` both ways; running `peer` again refreshes the tokens
//! and leaves the rest as it was; `unpeer` removes everything, the gateways' kernel state first,
//! and when a gateway is not running it says so and keeps the Secrets.
//!
//! Tokens are minted by memkube's TokenRequest API through the production `TokenRequests`
//! (`CountingTokens` only counts the calls), and the network-managers use them under RBAC: the
//! peer identity may touch NetworkConfigs and nothing else.

use crate::peer_common::*;

use std::time::Duration;

use isthmus::peer::error::PeerError;
use isthmus::peer::{run_peer, unpeer::run_unpeer};
use isthmus_api::{ConnectionState, ForeignCluster, TunnelEndpoint};
use kube::Api;

/// Generous: the peering needs a few reconciles and probe ticks (200 ms each).
const WAIT: Duration = Duration::from_secs(30);

/// The API's latest resourceVersion of each site: unchanged means nothing was written.
fn versions(sites: &[&Site]) -> Vec<u64> {
    sites.iter().map(|s| s.kube.resource_version()).collect()
}

/// Runs `peer` with `args` expected to be refused; the error, after checking that it is one
/// sentence, that nothing was minted and that neither API changed.
async fn refused(args: isthmus::peer::PeerArgs, sites: &[&Site]) -> String {
    let before = versions(sites);
    let tokens = CountingTokens::default();
    let (mut console, _) = captured();
    let err = run_peer(&args, &tokens, &mut console)
        .await
        .expect_err("refused");
    let message = err.to_string();
    assert!(!message.contains('\n'), "one line: {message}");
    assert_eq!(tokens.count(), 0, "no token minted");
    assert_eq!(versions(sites), before, "nothing written: {message}");
    message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_kubeconfigs_and_contexts_are_refused_before_anything_is_written() {
    let a = Site::new("cluster-a", 1, Install::FULL).await;
    let b = Site::new("cluster-b", 2, Install::FULL).await;

    let mut args = peer_args(&a, &b, WAIT);
    args.clusters.remote_context = Some("nope".into());
    let m = refused(args, &[&a, &b]).await;
    assert!(m.starts_with("the remote kubeconfig"), "{m}");
    assert!(
        m.ends_with("has no context \"nope\" (it has: ctx-cluster-b)"),
        "{m}"
    );

    let mut args = peer_args(&a, &b, WAIT);
    args.clusters.kubeconfig = Some(a.dir.path().join("missing"));
    let m = refused(args, &[&a, &b]).await;
    assert!(m.starts_with("cannot read the local kubeconfig"), "{m}");
    assert!(m.contains("missing"), "{m}");

    let garbage = a.dir.path().join("garbage");
    std::fs::write(&garbage, "clusters: [not, a, kubeconfig").unwrap();
    let mut args = peer_args(&a, &b, WAIT);
    args.clusters.remote_kubeconfig = Some(garbage);
    let m = refused(args, &[&a, &b]).await;
    assert!(m.starts_with("cannot read the remote kubeconfig"), "{m}");

    let mut args = peer_args(&a, &b, WAIT);
    args.api_url = Some("172.18.0.2:6443".into());
    let m = refused(args, &[&a, &b]).await;
    assert!(
        m.contains("--api-url \"172.18.0.2:6443\": expected https://host:port"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_cluster_twice_is_refused() {
    let a = Site::new("cluster-a", 1, Install::FULL).await;
    let b = Site::new("cluster-b", 2, Install::FULL).await;
    // the same kubeconfig and context on both sides
    let mut args = peer_args(&a, &b, WAIT);
    args.clusters.remote_kubeconfig = Some(a.kubeconfig.clone());
    let m = refused(args, &[&a, &b]).await;
    assert_eq!(
        m,
        "both sides are the same cluster (both have cluster ID cluster-a); name two different clusters"
    );
    // two clusters that claim the same cluster ID
    let twin = Site::new("cluster-a", 3, Install::FULL).await;
    let m = refused(peer_args(&a, &twin, WAIT), &[&a, &twin]).await;
    assert!(m.contains("both have cluster ID cluster-a"), "{m}");
    // one kubeconfig, two contexts, one server
    let both = a.dir.path().join("both");
    write_kubeconfig(
        &both,
        &[
            a.entry("one", None),
            a.entry("two", Some(&format!("{}/", a.http.url()))),
        ],
    );
    let mut args = peer_args(&a, &b, WAIT);
    args.clusters.kubeconfig = Some(both.clone());
    args.clusters.remote_kubeconfig = None;
    args.clusters.remote_context = Some("ctx-two".into());
    let m = refused(args, &[&a, &b]).await;
    assert!(m.starts_with("both sides are the same cluster"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_without_isthmus_is_refused() {
    let a = Site::new("cluster-a", 1, Install::FULL).await;
    let cases = [
        (
            Install {
                crds: false,
                ..Install::FULL
            },
            "the remote cluster (context ctx-cluster-b): isthmus's CRDs are not installed (the API does not serve ForeignCluster, NetworkConfig, TunnelEndpoint, NatMapping); install the Helm chart or apply crds/",
        ),
        (
            Install {
                namespace: false,
                cluster_info: false,
                nm_account: false,
                gateway_key: false,
                ..Install::FULL
            },
            "the remote cluster (context ctx-cluster-b): namespace isthmus does not exist; install isthmus there or name its namespace with --remote-namespace",
        ),
        (
            Install {
                cluster_info: false,
                ..Install::FULL
            },
            "the remote cluster (context ctx-cluster-b): isthmus is not installed in namespace isthmus (no ConfigMap labelled net.isthmus.io/cluster-info; chart 0.2.0 or later creates it)",
        ),
        (
            Install {
                nm_account: false,
                ..Install::FULL
            },
            "the remote cluster (context ctx-cluster-b): the network-manager's ServiceAccount isthmus/isthmus-network-manager does not exist; is the chart installed completely?",
        ),
    ];
    for (install, want) in cases {
        let b = Site::new("cluster-b", 2, install).await;
        assert_eq!(refused(peer_args(&a, &b, WAIT), &[&a, &b]).await, want);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_api_and_other_namespaces_are_refused() {
    let a = Site::new("cluster-a", 1, Install::FULL).await;
    let b = Site::new("cluster-b", 2, Install::FULL).await;
    // an API nobody serves: a port that was free a moment ago
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let gone = a.dir.path().join("gone");
    write_kubeconfig(
        &gone,
        &[kubeconfig_entry(
            "gone",
            &format!("https://127.0.0.1:{port}"),
            None,
            None,
        )],
    );
    let mut args = peer_args(&a, &b, Duration::from_secs(5));
    args.clusters.remote_kubeconfig = Some(gone);
    let m = refused(args, &[&a, &b]).await;
    assert!(
        m.starts_with(&format!(
            "the remote cluster (context ctx-gone): the API at https://127.0.0.1:{port} does not answer: "
        )),
        "{m}"
    );
    // a plain-HTTP API: network-managers would refuse its kubeconfig, so none is written
    let plain = a.dir.path().join("plain");
    let url = format!("http://127.0.0.1:{port}");
    write_kubeconfig(&plain, &[kubeconfig_entry("plain", &url, None, None)]);
    let mut args = peer_args(&a, &b, Duration::from_secs(5));
    args.clusters.remote_kubeconfig = Some(plain);
    let m = refused(args, &[&a, &b]).await;
    assert!(
        m.starts_with(&format!(
            "the remote cluster (context ctx-plain): the peer would reach this API at {url}, plain HTTP"
        )),
        "{m}"
    );
    // isthmus in namespaces of different names on the two sides
    b.kube.create_namespace("isthmus-b").unwrap();
    let elsewhere = Install {
        gateway_key: false,
        ..Install::FULL
    };
    b.install_in("isthmus-b", elsewhere).await;
    let mut args = peer_args(&a, &b, WAIT);
    args.clusters.remote_namespace = "isthmus-b".into();
    let m = refused(args, &[&a, &b]).await;
    assert!(
        m.starts_with("the namespaces differ (isthmus here, isthmus-b there)"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_says_one_sentence_and_exits_1() {
    let a = Site::new("cluster-a", 1, Install::FULL).await;
    let before = a.kube.resource_version();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_isthmus"))
        .args(["peer", "--kubeconfig"])
        .arg(&a.kubeconfig)
        .args(["--remote-context", "kind-b"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        stderr,
        format!(
            "error: the remote kubeconfig {} has no context \"kind-b\" (it has: ctx-cluster-a)\n",
            a.kubeconfig.display()
        )
    );
    assert_eq!(a.kube.resource_version(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_prints_the_plan_and_writes_nothing() {
    let a = Site::new("cluster-a", 1, Install::FULL).await;
    let b = Site::new("cluster-b", 2, Install::FULL).await;
    let before = versions(&[&a, &b]);
    let mut args = peer_args(&a, &b, WAIT);
    args.dry_run = true;
    args.api_url = Some("https://172.18.0.2:6443".into());
    args.remote_api_url = Some("https://172.18.0.3:6443".into());
    let (mut console, out) = captured();
    let tokens = CountingTokens::default();
    let outcome = run_peer(&args, &tokens, &mut console).await.unwrap();
    assert!(outcome.applied.is_none());
    assert_eq!(tokens.count(), 0, "no token minted");
    assert_eq!(versions(&[&a, &b]), before, "nothing written");
    let text = out.text();
    for want in [
        "name: isthmus-peer-cluster-b",
        "name: isthmus-peer-cluster-a",
        "kind: ForeignCluster",
        "server: https://172.18.0.2:6443",
        "server: https://172.18.0.3:6443",
        "token: '<redacted: minted when applied>'",
        "dry run: nothing was written",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }
    assert!(
        !text.contains("warning"),
        "reachable https URLs and the kubeconfigs' CAs: nothing to warn about\n{text}"
    );
    assert!(text.contains("certificate-authority-data: "), "{text}");
}

/// The kubeconfig `peer` stored is the holder's own identity in the peer: NetworkConfigs of its
/// own namespace there yes, anywhere else no, Secrets no.
async fn assert_only_network_configs(kubeconfig: &str, holder: &str) {
    let kc = kube::config::Kubeconfig::from_yaml(kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let own = peer_ns(holder);
    let ncs: Api<isthmus_api::NetworkConfig> = Api::namespaced(client.clone(), &own);
    ncs.list(&Default::default())
        .await
        .expect("NetworkConfigs of its own namespace are allowed");
    let release: Api<isthmus_api::NetworkConfig> = Api::namespaced(client.clone(), NS);
    match release.list(&Default::default()).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 403, "{s:?}"),
        other => panic!("the peer identity listed the release namespace: {other:?}"),
    }
    for ns in [NS, own.as_str()] {
        let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), ns);
        match secrets.list(&Default::default()).await {
            Err(kube::Error::Api(s)) => assert_eq!(s.code, 403, "{s:?}"),
            other => panic!("the peer identity listed Secrets in {ns}: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_brings_both_tunnels_up_connected_and_says_so() {
    let (mut a, mut b) = running_pair().await;
    let tokens = CountingTokens::default();
    let (mut console, out) = captured();
    let outcome = run_peer(&peer_args(&a, &b, WAIT), &tokens, &mut console)
        .await
        .unwrap();
    assert_eq!(tokens.count(), 2);
    for (site, peer) in [(&a, &b), (&b, &a)] {
        let tep = Api::<TunnelEndpoint>::namespaced(site.client.clone(), NS)
            .get(&peer.id)
            .await
            .unwrap();
        let status = tep.status.unwrap();
        assert_eq!(status.connection.status, ConnectionState::Connected);
        assert_eq!(status.connection.latency.as_deref(), Some("0.42ms"));
        // the kubeconfig the network-manager used: this peer's API, inline token, nothing else
        let text = site.stored_kubeconfig(peer).await.unwrap();
        let kc = kube::config::Kubeconfig::from_yaml(&text).unwrap();
        let cluster = kc.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.server.as_deref(), Some(peer.http.url().as_str()));
        assert!(cluster.certificate_authority.is_none());
        let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        let user = doc["users"][0]["user"].as_mapping().unwrap();
        assert_eq!(user.len(), 1, "only a token: {user:?}");
        assert!(
            cluster.certificate_authority_data.is_some(),
            "the CA, inline"
        );
        assert_only_network_configs(&text, &site.id).await;
    }
    let text = out.text();
    assert!(text.contains("peered cluster-a and cluster-b:"), "{text}");
    assert_eq!(text.matches("connected  0.42ms").count(), 2, "{text}");
    for (site, peer) in [(&a, &b), (&b, &a)] {
        let token = site.stored_token(peer).await.unwrap();
        assert!(
            !token.is_empty() && !text.contains(&token),
            "a token was printed:\n{text}"
        );
    }
    assert_eq!(text.matches("expires 20").count(), 2, "one year: {text}");
    assert_eq!(
        outcome.applied.unwrap().created.len(),
        6,
        "2 namespaces, 2 Secrets, 2 ForeignClusters"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_peer_again_refreshes_the_tokens_and_changes_nothing_else() {
    let (mut a, mut b) = running_pair().await;
    let tokens = CountingTokens::default();
    let (mut console, _) = captured();
    run_peer(&peer_args(&a, &b, WAIT), &tokens, &mut console)
        .await
        .unwrap();
    let fc_before = Api::<ForeignCluster>::all(a.client.clone())
        .get("cluster-b")
        .await
        .unwrap();
    let tep_before = Api::<TunnelEndpoint>::namespaced(a.client.clone(), NS)
        .get("cluster-b")
        .await
        .unwrap();
    let kubeconfig_before = a.stored_kubeconfig(&b).await.unwrap();

    // from the other side this time: the same peering
    let (mut console, out) = captured();
    let again = run_peer(&peer_args(&b, &a, WAIT), &tokens, &mut console)
        .await
        .unwrap();
    assert_eq!(tokens.count(), 4, "fresh tokens");
    assert_eq!(
        again.applied.unwrap().created,
        Vec::<String>::new(),
        "nothing new created"
    );
    let fc_after = Api::<ForeignCluster>::all(a.client.clone())
        .get("cluster-b")
        .await
        .unwrap();
    assert_eq!(fc_after.metadata.uid, fc_before.metadata.uid);
    assert_eq!(fc_after.metadata.generation, fc_before.metadata.generation);
    assert_eq!(fc_after.spec, fc_before.spec);
    let tep_after = Api::<TunnelEndpoint>::namespaced(a.client.clone(), NS)
        .get("cluster-b")
        .await
        .unwrap();
    assert_eq!(
        tep_after.metadata.uid, tep_before.metadata.uid,
        "the tunnel was not rebuilt"
    );
    assert_eq!(tep_after.spec, tep_before.spec);
    let kubeconfig_after = a.stored_kubeconfig(&b).await.unwrap();
    assert_ne!(kubeconfig_after, kubeconfig_before, "a fresh token");
    assert!(out.text().contains("peered cluster-b and cluster-a:"));
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpeer_removes_everything_on_both_sides_kernel_included() {
    let (mut a, mut b) = running_pair().await;
    let (mut console, _) = captured();
    run_peer(
        &peer_args(&a, &b, WAIT),
        &CountingTokens::default(),
        &mut console,
    )
    .await
    .unwrap();
    for site in [&a, &b] {
        assert!(
            site.gateway
                .as_ref()
                .unwrap()
                .handle
                .inspect(|g| g.tunnel.peers.len())
                == 1
        );
    }

    let (mut console, out) = captured();
    run_unpeer(&unpeer_args(&a, &b, WAIT), &mut console)
        .await
        .unwrap();
    for site in [&a, &b] {
        assert_eq!(
            site.peering_objects().await,
            Vec::<String>::new(),
            "{}",
            site.id
        );
        // by the time unpeer returned, the gateway had taken the peer out of the kernel
        site.gateway.as_ref().unwrap().handle.inspect(|g| {
            assert!(
                g.tunnel.peers.is_empty() && g.tunnel.device.is_none(),
                "{}",
                site.id
            );
            assert!(g.routes.routes.is_empty(), "{}", site.id);
        });
    }
    let text = out.text();
    assert!(
        text.contains(
            "cluster-a: delete ForeignCluster cluster-b, Namespace isthmus-peer-cluster-b (last)"
        ),
        "{text}"
    );
    assert!(text.contains("unpeered cluster-a and cluster-b"), "{text}");
    // nothing left to do: a second unpeer finishes at once
    let (mut console, _) = captured();
    run_unpeer(&unpeer_args(&a, &b, WAIT), &mut console)
        .await
        .unwrap();
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpeer_without_a_gateway_says_so_and_keeps_the_secrets() {
    let (mut a, mut b) = running_pair().await;
    let (mut console, _) = captured();
    run_peer(
        &peer_args(&a, &b, WAIT),
        &CountingTokens::default(),
        &mut console,
    )
    .await
    .unwrap();
    // b's gateway stops cleanly: its kernel state, and so its finalizer, stay
    let stopped = b.stop_gateway().await.unwrap();

    let (mut console, _) = captured();
    let err = run_unpeer(&unpeer_args(&a, &b, Duration::from_secs(3)), &mut console)
        .await
        .expect_err("b's gateway is not running");
    let PeerError::Timeout { reasons, .. } = &err else {
        panic!("{err}");
    };
    let held: Vec<&String> = reasons
        .iter()
        .filter(|r| r.starts_with("cluster-b → cluster-a:"))
        .collect();
    assert_eq!(held.len(), 1, "{reasons:#?}");
    assert!(
        held[0].contains("TunnelEndpoint isthmus/cluster-a is still there: the gateway has not removed the peer from the kernel: no gateway is running: nobody holds Lease isthmus/isthmus-gateway"),
        "{}",
        held[0]
    );
    assert!(
        err.to_string()
            .contains("the peer namespaces and their kubeconfig Secrets are kept")
    );
    assert!(b.stored_kubeconfig(&a).await.is_some() && a.stored_kubeconfig(&b).await.is_some());
    stopped.inspect(|g| {
        assert_eq!(
            g.tunnel.peers.len(),
            1,
            "b's kernel still has a's WireGuard peer"
        );
        assert!(!g.routes.routes.is_empty(), "and its routes");
    });

    // the gateway comes back: unpeer finishes
    let ka = a.key.clone();
    b.start_gateway(&[&ka]).await;
    let (mut console, _) = captured();
    run_unpeer(&unpeer_args(&a, &b, WAIT), &mut console)
        .await
        .unwrap();
    for site in [&a, &b] {
        assert_eq!(
            site.peering_objects().await,
            Vec::<String>::new(),
            "{}",
            site.id
        );
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_says_why_from_what_the_api_shows() {
    // a runs everything; b has the chart but its gateway never started (no key) and so its
    // network-manager cannot start either
    let mut a = Site::new("cluster-a", 1, Install::FULL).await;
    let b = Site::new(
        "cluster-b",
        2,
        Install {
            gateway_key: false,
            ..Install::FULL
        },
    )
    .await;
    a.start_network_manager().await;
    let kb = b.key.clone();
    a.start_gateway(&[&kb]).await;
    let (mut console, out) = captured();
    let err = run_peer(
        &peer_args(&a, &b, Duration::from_secs(3)),
        &CountingTokens::default(),
        &mut console,
    )
    .await
    .expect_err("b cannot peer");
    let PeerError::Timeout { reasons, .. } = &err else {
        panic!("{err}");
    };
    let from_b: Vec<&String> = reasons
        .iter()
        .filter(|r| r.starts_with("cluster-b → cluster-a:"))
        .collect();
    assert_eq!(
        from_b,
        [
            "cluster-b → cluster-a: the gateway has not published its key (ConfigMap isthmus/isthmus-gateway-pubkey is missing), and the network-manager waits for it before it starts: is the gateway running?"
        ]
    );
    assert!(
        reasons
            .last()
            .unwrap()
            .contains("`isthmus unpeer` removes them")
    );
    assert!(out.text().contains(
        "cluster-b → cluster-a: ForeignCluster written, waiting for the network-manager"
    ));
    a.stop().await;
}

/// Mints like [`CountingTokens`], and meanwhile removes the ForeignCluster CRD from `sabotaged`:
/// the write into that cluster fails after the other cluster's objects were written.
struct CrdRemovedWhileMinting {
    tokens: CountingTokens,
    sabotaged: kube::Client,
}

impl std::fmt::Debug for CrdRemovedWhileMinting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CrdRemovedWhileMinting")
    }
}

impl isthmus::peer::TokenSource for CrdRemovedWhileMinting {
    fn mint<'a>(
        &'a self,
        client: &'a kube::Client,
        namespace: &'a str,
        account: &'a str,
        lifetime: Duration,
    ) -> futures::future::BoxFuture<'a, Result<isthmus::peer::token::Minted, String>> {
        Box::pin(async move {
            let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
                Api::all(self.sabotaged.clone());
            let _ = crds
                .delete("foreignclusters.net.isthmus.io", &Default::default())
                .await;
            self.tokens.mint(client, namespace, account, lifetime).await
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_rolls_back_what_the_run_created() {
    let a = Site::new("cluster-a", 1, Install::FULL).await;
    let b = Site::new("cluster-b", 2, Install::FULL).await;
    let tokens = CrdRemovedWhileMinting {
        tokens: CountingTokens::default(),
        sabotaged: b.client.clone(),
    };
    let (mut console, _) = captured();
    let err = run_peer(&peer_args(&a, &b, WAIT), &tokens, &mut console)
        .await
        .expect_err("b lost its ForeignCluster CRD");
    let m = err.to_string();
    assert!(
        m.starts_with(
            "the remote cluster (context ctx-cluster-b): writing ForeignCluster cluster-a: "
        ),
        "{m}"
    );
    assert!(
        m.ends_with(
            "removed what this run had created (Secret isthmus-peer-cluster-a, ForeignCluster cluster-b, Secret isthmus-peer-cluster-b, Namespace isthmus-peer-cluster-a, Namespace isthmus-peer-cluster-b)"
        ),
        "{m}"
    );
    assert_eq!(a.peering_objects().await, Vec::<String>::new());
    let b_namespace = Api::<k8s_openapi::api::core::v1::Namespace>::all(b.client.clone())
        .get_opt(&peer_ns("cluster-a"))
        .await
        .unwrap();
    assert!(b_namespace.is_none(), "the namespace this run made is gone");
    let b_secrets = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(
        b.client.clone(),
        &peer_ns("cluster-a"),
    )
    .get_opt("isthmus-peer-cluster-a")
    .await
    .unwrap();
    assert!(b_secrets.is_none());
}
