//! The authenticated gRPC IPAM, attacked over a real socket: the server of Kubernetes mode
//! (`isthmus::grpc::serve` with an `Authenticator`) checks callers through the TokenReview API
//! of an API server served over HTTPS with authentication and RBAC (memkube, or a real one when
//! `ISTHMUS_KUBECONFIGS` / `KUBEBUILDER_ASSETS` names one). No token, a garbage token, a token
//! for the API server's audience, a token of a ServiceAccount not allowed, a revoked or expired
//! token: each is refused with its code and the IPAM state does not change; an allowed token
//! maps. A TokenReview API that fails gives `UNAVAILABLE`, never an admission. Health and
//! reflection stay open. The standalone binary refuses a non-loopback address without
//! authentication, and authenticates with `--grpc-auth`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use isthmus::grpc::auth::{AllowList, AuthConfig, Authenticator, KubeTokenReviewer};
use isthmus::grpc::client::BearerToken;
use isthmus::grpc::pb::{MapRequest, UnmapRequest};
use isthmus_ipam::{ClusterId, IpamConfig, default_pools};
use isthmus_ipam_store::{DurableIpam, FileStore};
use isthmus_kubetarget::ApiServer;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use tonic::Code;
use tonic::transport::Channel;

const NS: &str = "ipam-auth";
const AUDIENCE: &str = "isthmus-ipam";
const PEER: &str = "cluster-b";
const TTL: Duration = Duration::from_secs(600);

/// An IPAM served with authentication, the API that reviews its callers, and its state.
struct Served {
    api: ApiServer,
    ipam: DurableIpam,
    addr: std::net::SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

async fn service_account(api: &ApiServer, name: &str) {
    let sa: ServiceAccount = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": NS}
    }))
    .unwrap();
    Api::<ServiceAccount>::namespaced(api.admin(), NS)
        .create(&PostParams::default(), &sa)
        .await
        .unwrap();
}

/// Serves the IPAM with `allowed` callers and a cache of `cache_ttl`; the reviewer acts as the
/// admin of the API (the chart's RBAC for it is shown by `chart_rbac`).
async fn serve(cache_ttl: Duration) -> Served {
    let source = isthmus_kubetarget::Source::from_env().expect("a valid API source");
    let api = isthmus_kubetarget::start(&source, &["a"])
        .await
        .expect("an API server")
        .remove(0);
    api.ensure_namespace(NS).await.unwrap();
    for name in ["vk", "intruder"] {
        service_account(&api, name).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = IpamConfig {
        pod_cidr: "10.0.0.0/16".parse().unwrap(),
        service_cidr: Some("10.1.0.0/16".parse().unwrap()),
        external_cidr: Some("10.2.0.0/16".parse().unwrap()),
        pools: default_pools(),
        reserved: vec![],
    };
    let ipam = DurableIpam::open(&config, FileStore::open(dir.path()).unwrap())
        .await
        .unwrap();
    let peer: ClusterId = PEER.parse().unwrap();
    ipam.upsert_peer(
        &peer,
        "10.80.0.0/16".parse().unwrap(),
        "10.81.0.0/16".parse().unwrap(),
    )
    .await
    .unwrap();
    ipam.set_peer_view(&peer, None, None).await.unwrap();
    let auth = Authenticator::new(
        Arc::new(KubeTokenReviewer::new(api.admin())),
        AuthConfig {
            audience: AUDIENCE.into(),
            allowed: AllowList::new([format!("{NS}/vk").parse().unwrap()]),
            cache_ttl,
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let metrics = isthmus_telemetry::metrics::Grpc::default();
    tokio::spawn(isthmus::grpc::serve(
        ipam.clone(),
        metrics,
        Some(auth),
        listener,
        async move {
            let _ = stopped.await;
        },
    ));
    Served {
        api,
        ipam,
        addr,
        _stop: stop,
        _dir: dir,
    }
}

impl Served {
    async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    async fn token(&self, account: &str, audiences: &[&str]) -> String {
        self.api
            .token_for(NS, account, TTL, audiences)
            .await
            .unwrap()
    }

    /// MapEndpointIP then UnmapEndpointIP of `ip` with `token`: their codes.
    async fn map(&self, token: &BearerToken, ip: Ipv4Addr) -> Result<Ipv4Addr, Code> {
        let request = MapRequest {
            cluster_id: PEER.into(),
            ip: ip.to_string(),
        };
        match token
            .client(self.channel().await)
            .map_endpoint_ip(request)
            .await
        {
            Ok(reply) => Ok(reply.into_inner().ip.parse().unwrap()),
            Err(status) => Err(status.code()),
        }
    }

    async fn unmap(&self, token: &BearerToken, ip: Ipv4Addr) -> Result<(), Code> {
        let request = UnmapRequest {
            cluster_id: PEER.into(),
            ip: ip.to_string(),
        };
        let answer = token
            .client(self.channel().await)
            .unmap_endpoint_ip(request)
            .await;
        answer.map(|_| ()).map_err(|s| s.code())
    }

    /// What a caller could change: the peer's NAT mapping and the number of reflections.
    fn state(&self) -> (BTreeMap<Ipv4Addr, Ipv4Addr>, usize) {
        self.ipam
            .read(|i| {
                let peer: ClusterId = PEER.parse().unwrap();
                (i.nat_mapping(&peer).unwrap(), i.endpoint_count())
            })
            .unwrap()
    }

    /// `token` may neither map a new endpoint nor unmap the one already mapped (`victim`),
    /// gets `code` for both, and the state stays as it was.
    async fn refused(&self, what: &str, token: &BearerToken, victim: Ipv4Addr, code: Code) {
        let before = self.state();
        let fresh = Ipv4Addr::new(10, 80, 9, 9);
        assert_eq!(self.map(token, fresh).await, Err(code), "{what}: map");
        assert_eq!(self.unmap(token, victim).await, Err(code), "{what}: unmap");
        assert_eq!(self.state(), before, "{what}: the IPAM state changed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_caller_without_an_allowed_token_for_our_audience_is_refused_and_changes_nothing() {
    let s = serve(Duration::from_secs(60)).await;
    let allowed = BearerToken::new(&s.token("vk", &[AUDIENCE]).await).unwrap();
    let victim = Ipv4Addr::new(10, 80, 1, 1);
    let mapped = s
        .map(&allowed, victim)
        .await
        .expect("an allowed token maps");
    assert!(mapped.to_string().starts_with("10.2."), "{mapped}");
    assert_eq!(s.state().1, 1);

    s.refused(
        "no token",
        &BearerToken::none(),
        victim,
        Code::Unauthenticated,
    )
    .await;
    let garbage = BearerToken::new("not-a-token-at-all").unwrap();
    s.refused("a garbage token", &garbage, victim, Code::Unauthenticated)
        .await;
    // a valid token of the allowed account, but minted for the API server, not for us
    let api_token = BearerToken::new(&s.token("vk", &[]).await).unwrap();
    s.refused(
        "a token for the API's audience",
        &api_token,
        victim,
        Code::Unauthenticated,
    )
    .await;
    let other_audience = BearerToken::new(&s.token("vk", &["another-service"]).await).unwrap();
    s.refused(
        "a token for another audience",
        &other_audience,
        victim,
        Code::Unauthenticated,
    )
    .await;
    // a valid token for our audience of a ServiceAccount that is not allowed
    let intruder = BearerToken::new(&s.token("intruder", &[AUDIENCE]).await).unwrap();
    s.refused(
        "an account not allowed",
        &intruder,
        victim,
        Code::PermissionDenied,
    )
    .await;

    // the allowed caller still works, and unmaps its own entry
    assert_eq!(s.map(&allowed, victim).await, Ok(mapped));
    assert_eq!(s.unmap(&allowed, victim).await, Ok(()));
    assert_eq!(s.state().1, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_revoked_tokens_are_refused() {
    let s = serve(Duration::from_secs(1)).await;
    let Some(kube) = s.api.memkube_instance().cloned() else {
        eprintln!("expiring tokens needs memkube's test hook: only revocation is checked here");
        return;
    };
    let victim = Ipv4Addr::new(10, 80, 1, 1);
    let first = BearerToken::new(&s.token("vk", &[AUDIENCE]).await).unwrap();
    s.map(&first, victim).await.expect("allowed");
    // expired: a token never seen before, past its expiry
    let expiring = BearerToken::new(&s.token("vk", &[AUDIENCE]).await).unwrap();
    kube.expire_tokens();
    s.refused("an expired token", &expiring, victim, Code::Unauthenticated)
        .await;
    // revoked: the ServiceAccount deleted; a token admitted before is refused once its cache
    // entry (1 s here) has run out
    let revoked = BearerToken::new(&s.token("vk", &[AUDIENCE]).await).unwrap();
    s.map(&revoked, Ipv4Addr::new(10, 80, 1, 2))
        .await
        .expect("allowed");
    Api::<ServiceAccount>::namespaced(s.api.admin(), NS)
        .delete("vk", &DeleteParams::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    s.refused("a revoked token", &revoked, victim, Code::Unauthenticated)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_token_review_is_unavailable_never_an_admission() {
    let s = serve(Duration::ZERO).await;
    let Some(kube) = s.api.memkube_instance().cloned() else {
        eprintln!("needs memkube's fault injection");
        return;
    };
    let token = BearerToken::new(&s.token("vk", &[AUDIENCE]).await).unwrap();
    let victim = Ipv4Addr::new(10, 80, 1, 1);
    s.map(&token, victim).await.expect("allowed");
    kube.faults().outage(Duration::from_secs(30));
    s.refused("TokenReview down", &token, victim, Code::Unavailable)
        .await;
    kube.faults().end_outage();
    assert!(s.map(&token, Ipv4Addr::new(10, 80, 1, 3)).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection_stay_open() {
    let s = serve(Duration::from_secs(60)).await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(s.channel().await);
    let answer = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "ipam".into(),
        })
        .await
        .expect("health answers without a token");
    assert_eq!(answer.into_inner().status, 1, "SERVING");
}

/// `isthmus network-manager --standalone` on a non-loopback address without authentication
/// refuses to start, naming both ways out.
#[test]
fn standalone_refuses_an_unauthenticated_non_loopback_address() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("peers.yaml"), "[]").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_isthmus"))
        .args([
            "network-manager",
            "--standalone",
            "--pod-cidr",
            "10.0.0.0/16",
        ])
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--peers")
        .arg(dir.path().join("peers.yaml"))
        .args(["--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not a loopback address")
            && err.contains("--grpc-auth")
            && err.contains("--insecure-grpc"),
        "{err}"
    );
    assert!(
        !dir.path().join("state").exists(),
        "nothing opened before refusing"
    );
}

/// The standalone binary with `--grpc-auth` checks callers through the API of KUBECONFIG.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_with_grpc_auth_checks_tokens_through_the_api() {
    let api = ApiServer::memkube("a").await.unwrap();
    api.ensure_namespace(NS).await.unwrap();
    service_account(&api, "vk").await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, api.admin_kubeconfig().unwrap()).unwrap();
    let mut cmd_env = vec![("KUBECONFIG", kubeconfig.display().to_string())];
    cmd_env.push(("RUST_LOG", "warn".into()));
    let server = crate::common::Server::start_with_env(
        dir.path(),
        "10.2.0.0/16",
        crate::common::PEERS,
        &["--grpc-auth", "--grpc-allow", &format!("{NS}/vk")],
        &cmd_env,
    );
    let channel = Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let request = || MapRequest {
        cluster_id: "cluster-c".into(),
        ip: "10.80.1.1".into(),
    };
    let anonymous = BearerToken::none()
        .client(channel.clone())
        .map_endpoint_ip(request())
        .await;
    assert_eq!(anonymous.unwrap_err().code(), Code::Unauthenticated);
    let token = api.token_for(NS, "vk", TTL, &[AUDIENCE]).await.unwrap();
    let answer = BearerToken::new(&token)
        .unwrap()
        .client(channel)
        .map_endpoint_ip(request())
        .await
        .expect("an allowed token maps");
    assert!(!answer.into_inner().ip.is_empty());
}
