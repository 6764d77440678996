//! The chart's RBAC, enforced by the API server: the chart is installed with the real `helm` into
//! an API server (memkube with authentication and RBAC, or a real one when `ISTHMUS_KUBECONFIGS`
//! or `KUBEBUILDER_ASSETS` names one), a token is minted through TokenRequest for each of the
//! chart's ServiceAccounts, and each identity is shown what it may and may not do: every daemon
//! can make the requests its code makes, and is refused (403 Forbidden, from the API server) the
//! ones it has no business making. On a real API server the release goes into a namespace of its
//! own, removed afterwards.

use std::time::Duration;

use isthmus::lab::chart::{LabValues, install_release, write_chart};
use isthmus_api::{ForeignCluster, NetworkConfig, TunnelEndpoint};
use isthmus_kubetarget::{ApiServer, Source};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};

/// The outcome of one request, reduced to what RBAC decides.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Allowed,
    Forbidden,
}

fn verdict<T>(result: Result<T, kube::Error>, what: &str) -> Verdict {
    match result {
        // allowed, even when the object is missing or the request otherwise fails validation
        Ok(_) => Verdict::Allowed,
        Err(kube::Error::Api(s)) if s.code == 403 => {
            assert_eq!(s.reason, "Forbidden", "{what}: {s:?}");
            Verdict::Forbidden
        }
        Err(kube::Error::Api(s)) if [404, 409, 422].contains(&s.code) => Verdict::Allowed,
        Err(e) => panic!("{what}: unexpected error {e}"),
    }
}

struct Release {
    api: ApiServer,
    namespace: String,
    fullname: String,
}

impl Release {
    async fn client_of(&self, account: &str) -> Client {
        let token = self
            .api
            .token(
                &self.namespace,
                &format!("{}-{account}", self.fullname),
                Duration::from_secs(600),
            )
            .await
            .unwrap_or_else(|e| panic!("a token for {account}: {e}"));
        self.api
            .client_for_token(&token, &self.namespace)
            .await
            .unwrap()
    }
}

async fn install() -> Release {
    let source = Source::from_env().expect("ISTHMUS_KUBECONFIGS is valid");
    if !source.is_real() {
        eprintln!(
            "chart_rbac: against memkube; set ISTHMUS_KUBECONFIGS or KUBEBUILDER_ASSETS to also \
             run it against a real API server"
        );
    }
    let api = isthmus_kubetarget::start(&source, &["a"])
        .await
        .expect("an API server")
        .remove(0);
    // a real API server may be shared: a namespace and a release name of this run's own
    let suffix = if api.is_real() {
        format!(
            "-{}",
            isthmus_kubetarget::envtest::random_token()[..6].to_owned()
        )
    } else {
        String::new()
    };
    let (namespace, release) = (format!("isthmus{suffix}"), format!("isthmus{suffix}"));
    let dir = tempfile::tempdir().unwrap();
    let chart = write_chart(dir.path()).unwrap();
    let kubeconfig = dir.path().join("admin.kubeconfig");
    std::fs::write(&kubeconfig, api.admin_kubeconfig().unwrap()).unwrap();
    let values = LabValues {
        cluster_id: "a".into(),
        pod_cidr: "10.0.0.0/16".into(),
        service_cidr: "172.31.0.0/16".into(),
        reserved: Vec::new(),
        pools: Vec::new(),
        gateway_endpoint: "192.0.2.1:51820".into(),
        wg_interface: "isthmus0".into(),
        wireguard_port: 51820,
        mtu: 1420,
    };
    install_release(
        &chart,
        &kubeconfig,
        (&release, &namespace),
        &values,
        dir.path(),
        api.is_real(),
    )
    .await
    .expect("helm install");
    Release {
        api,
        namespace,
        fullname: release,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_identity_of_the_chart_gets_what_its_daemon_needs_and_nothing_more() {
    let r = install().await;
    let ns = r.namespace.as_str();
    let (nm, gw, ra, peer) = (
        r.client_of("network-manager").await,
        r.client_of("gateway").await,
        r.client_of("route-agent").await,
        r.client_of("peer").await,
    );
    let ipam_client = r.client_of("ipam-client").await;
    let review = || TokenReview {
        spec: TokenReviewSpec {
            token: "a-token".into(),
            audiences: Some(vec!["isthmus-ipam".into()]),
        },
        ..TokenReview::default()
    };
    let pp = PostParams::default();
    let lp = ListParams::default();
    let dp = DeleteParams::default();
    let key_secret = format!("{}-gateway-key", r.fullname);
    let lease = format!("{}-gateway", r.fullname);
    let cases: Vec<(&str, Verdict, Verdict)> = vec![
        // (request, what the API answered, what the chart means)
        (
            "network-manager lists ForeignClusters",
            verdict(
                Api::<ForeignCluster>::all(nm.clone()).list(&lp).await,
                "nm fc",
            ),
            Verdict::Allowed,
        ),
        (
            "network-manager lists TunnelEndpoints",
            verdict(
                Api::<TunnelEndpoint>::namespaced(nm.clone(), ns)
                    .list(&lp)
                    .await,
                "nm tep",
            ),
            Verdict::Allowed,
        ),
        (
            "network-manager reviews a gRPC caller's token",
            verdict(
                Api::<TokenReview>::all(nm.clone())
                    .create(&pp, &review())
                    .await,
                "nm tokenreview",
            ),
            Verdict::Allowed,
        ),
        (
            "gateway reviews a token",
            verdict(
                Api::<TokenReview>::all(gw.clone())
                    .create(&pp, &review())
                    .await,
                "gw tokenreview",
            ),
            Verdict::Forbidden,
        ),
        (
            "the IPAM client lists TunnelEndpoints",
            verdict(
                Api::<TunnelEndpoint>::namespaced(ipam_client.clone(), ns)
                    .list(&lp)
                    .await,
                "ipam-client tep",
            ),
            Verdict::Forbidden,
        ),
        (
            "the IPAM client reviews a token",
            verdict(
                Api::<TokenReview>::all(ipam_client.clone())
                    .create(&pp, &review())
                    .await,
                "ipam-client tokenreview",
            ),
            Verdict::Forbidden,
        ),
        (
            "network-manager deletes a ForeignCluster",
            verdict(
                Api::<ForeignCluster>::all(nm.clone())
                    .delete("x", &dp)
                    .await,
                "nm fc del",
            ),
            Verdict::Forbidden,
        ),
        (
            "network-manager writes the gateway's Lease",
            verdict(
                Api::<Lease>::namespaced(nm.clone(), ns)
                    .delete(&lease, &dp)
                    .await,
                "nm lease",
            ),
            Verdict::Forbidden,
        ),
        (
            "gateway reads its key Secret",
            verdict(
                Api::<Secret>::namespaced(gw.clone(), ns)
                    .get(&key_secret)
                    .await,
                "gw key",
            ),
            Verdict::Allowed,
        ),
        (
            "gateway reads another Secret",
            verdict(
                Api::<Secret>::namespaced(gw.clone(), ns).get("other").await,
                "gw other",
            ),
            Verdict::Forbidden,
        ),
        (
            "gateway lists Secrets",
            verdict(
                Api::<Secret>::namespaced(gw.clone(), ns).list(&lp).await,
                "gw secrets",
            ),
            Verdict::Forbidden,
        ),
        (
            "gateway deletes a NetworkConfig",
            verdict(
                Api::<NetworkConfig>::namespaced(gw.clone(), ns)
                    .delete("x", &dp)
                    .await,
                "gw nc",
            ),
            Verdict::Forbidden,
        ),
        (
            "route agent lists TunnelEndpoints",
            verdict(
                Api::<TunnelEndpoint>::namespaced(ra.clone(), ns)
                    .list(&lp)
                    .await,
                "ra tep",
            ),
            Verdict::Allowed,
        ),
        (
            "route agent writes a NetworkConfig",
            verdict(
                Api::<NetworkConfig>::namespaced(ra.clone(), ns)
                    .delete("x", &dp)
                    .await,
                "ra nc",
            ),
            Verdict::Forbidden,
        ),
        (
            "route agent reads a Secret",
            verdict(
                Api::<Secret>::namespaced(ra.clone(), ns)
                    .get(&key_secret)
                    .await,
                "ra secret",
            ),
            Verdict::Forbidden,
        ),
        (
            "peer lists NetworkConfigs",
            verdict(
                Api::<NetworkConfig>::namespaced(peer.clone(), ns)
                    .list(&lp)
                    .await,
                "peer nc",
            ),
            Verdict::Allowed,
        ),
        (
            "peer reads a Secret",
            verdict(
                Api::<Secret>::namespaced(peer.clone(), ns)
                    .get(&key_secret)
                    .await,
                "peer secret",
            ),
            Verdict::Forbidden,
        ),
        (
            "peer lists TunnelEndpoints",
            verdict(
                Api::<TunnelEndpoint>::namespaced(peer.clone(), ns)
                    .list(&lp)
                    .await,
                "peer tep",
            ),
            Verdict::Forbidden,
        ),
        (
            "peer lists ForeignClusters",
            verdict(
                Api::<ForeignCluster>::all(peer.clone()).list(&lp).await,
                "peer fc",
            ),
            Verdict::Forbidden,
        ),
    ];
    let wrong: Vec<String> = cases
        .iter()
        .filter(|(_, got, want)| got != want)
        .map(|(what, got, want)| format!("{what}: {got:?}, the chart means {want:?}"))
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    if r.api.is_real() {
        let _ = Api::<Namespace>::all(r.api.admin())
            .delete(&r.namespace, &dp)
            .await;
    }
}
