//! The chart's RBAC, enforced by the API server: the chart is installed with the real `helm` into
//! an API server (memkube with authentication and RBAC, or a real one when `ISTHMUS_KUBECONFIGS`
//! or `KUBEBUILDER_ASSETS` names one), a token is minted through TokenRequest for each of the
//! chart's ServiceAccounts, and each identity is shown what it may and may not do: every daemon
//! can make the requests its code makes, and is refused (403 Forbidden, from the API server) the
//! ones it has no business making. On a real API server the release goes into a namespace of its
//! own, removed afterwards.

use std::time::Duration;

use isthmus::lab::chart::{LabValues, install_release, write_chart};
use isthmus::peer::access::{PEER_ACCOUNT, PeerSpace};
use isthmus::peer::side::Role as Side;
use isthmus_api::{ForeignCluster, NetworkConfig, TunnelEndpoint};
use isthmus_kubetarget::{ApiServer, Source};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

/// A case's name built at run time (the test is one process; the leak is bounded).
fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

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

pub(crate) struct Release {
    pub(crate) api: ApiServer,
    pub(crate) namespace: String,
    fullname: String,
}

impl Release {
    pub(crate) async fn client_of(&self, account: &str) -> Client {
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

pub(crate) async fn install() -> Release {
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
        gateway_replicas: 1,
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
    let (nm, gw, ra) = (
        r.client_of("network-manager").await,
        r.client_of("gateway").await,
        r.client_of("route-agent").await,
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
    let pubkey = format!("{}-gateway-pubkey", r.fullname);
    let lease = format!("{}-gateway", r.fullname);
    let cases: Vec<(&'static str, Verdict, Verdict)> = vec![
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
            "network-manager reads the gateway's public key",
            verdict(
                Api::<ConfigMap>::namespaced(nm.clone(), ns)
                    .get(&pubkey)
                    .await,
                "nm pubkey",
            ),
            Verdict::Allowed,
        ),
        (
            "network-manager reads another ConfigMap",
            verdict(
                Api::<ConfigMap>::namespaced(nm.clone(), ns)
                    .get(&format!("{}-cluster", r.fullname))
                    .await,
                "nm cm",
            ),
            Verdict::Forbidden,
        ),
        (
            "network-manager lists NetworkConfigs in every namespace",
            verdict(
                Api::<NetworkConfig>::all(nm.clone()).list(&lp).await,
                "nm nc all",
            ),
            Verdict::Allowed,
        ),
        (
            "network-manager writes a NetworkConfig's status outside a peer namespace",
            verdict(
                Api::<NetworkConfig>::namespaced(nm.clone(), ns)
                    .patch_status("x", &PatchParams::default(), &Patch::Merge(json!({})))
                    .await,
                "nm nc status",
            ),
            Verdict::Forbidden,
        ),
    ];
    let mut cases = cases;
    // no component but the gateway reads a Secret holding a private key (nor lists Secrets)
    for (who, client) in [("network-manager", &nm), ("route agent", &ra)] {
        let secrets = Api::<Secret>::namespaced(client.clone(), ns);
        cases.push((
            leak(format!("{who} reads the gateway's key Secret")),
            verdict(secrets.get(&key_secret).await, "key"),
            Verdict::Forbidden,
        ));
        cases.push((
            leak(format!("{who} lists Secrets")),
            verdict(secrets.list(&lp).await, "secrets"),
            Verdict::Forbidden,
        ));
    }
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

/// Makes peer `peer`'s namespace and identity in the release as `isthmus peer` does (the same
/// objects, from `isthmus::peer::access`), with the kubeconfig Secret for reaching it; returns the
/// namespace and a client holding a token of the peer's ServiceAccount (TokenRequest).
async fn peer_identity(r: &Release, peer: &str) -> (String, Client) {
    let space = PeerSpace::new(
        Side::Local,
        &"a".parse().unwrap(),
        &r.namespace,
        &format!("{}-network-manager", r.fullname),
        &peer.parse().unwrap(),
        &format!("isthmus-peer-{peer}"),
    );
    let admin = r.api.admin();
    let ns = space.namespace.clone();
    let pp = PatchParams::apply("chart-rbac-test").force();
    Api::<Namespace>::all(admin.clone())
        .patch(&ns, &pp, &Patch::Apply(&space.namespace()))
        .await
        .unwrap();
    Api::<ServiceAccount>::namespaced(admin.clone(), &ns)
        .patch(PEER_ACCOUNT, &pp, &Patch::Apply(&space.service_account()))
        .await
        .unwrap();
    for (role, binding) in space.roles() {
        let name = role.metadata.name.clone().unwrap();
        Api::<Role>::namespaced(admin.clone(), &ns)
            .patch(&name, &pp, &Patch::Apply(&role))
            .await
            .unwrap();
        Api::<RoleBinding>::namespaced(admin.clone(), &ns)
            .patch(&name, &pp, &Patch::Apply(&binding))
            .await
            .unwrap();
    }
    for (name, key) in [
        (format!("isthmus-peer-{peer}"), "kubeconfig"),
        ("decoy".into(), "privateKey"),
    ] {
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": ns}, "stringData": {key: "s3cr3t"},
        }))
        .unwrap();
        Api::<Secret>::namespaced(admin.clone(), &ns)
            .patch(&name, &pp, &Patch::Apply(&secret))
            .await
            .unwrap();
    }
    let token = r
        .api
        .token(&ns, PEER_ACCOUNT, Duration::from_secs(600))
        .await
        .unwrap();
    (
        ns.clone(),
        r.api.client_for_token(&token, &ns).await.unwrap(),
    )
}

/// A NetworkConfig `name` (claiming to come from `name`) for cluster `a`, in `ns`.
fn network_config(name: &str, ns: &str) -> NetworkConfig {
    serde_json::from_value(json!({
        "apiVersion": "net.isthmus.io/v1alpha1", "kind": "NetworkConfig",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "clusterID": "a", "originClusterID": name,
            "podCIDR": "10.9.0.0/16", "externalCIDR": "10.10.0.0/16",
            "endpoint": "203.0.113.9:51820", "backendType": "wireguard",
            "backendConfig": {"publicKey": "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="},
        }
    }))
    .unwrap()
}

/// Attacks (issue 13, part 7a-c): a hostile peer's own token, minted for the identity `isthmus
/// peer` gives it, may write its own NetworkConfig and nothing else: not another peer's, not one
/// in the release namespace, not the status of its own (our decision), not any Secret. Our
/// network-manager may answer it and read the one kubeconfig Secret of that namespace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_peer_token_may_write_only_its_own_network_config() {
    let r = install().await;
    let ns = r.namespace.as_str();
    let (own, hostile) = peer_identity(&r, "b").await;
    let (other, _) = peer_identity(&r, "c").await;
    let nm = r.client_of("network-manager").await;
    let admin = r.api.admin();
    let post = PostParams::default();
    let apply = PatchParams::apply("isthmus-network-manager").force();
    let merge = || Patch::Merge(json!({"spec": {"endpoint": "203.0.113.66:51820"}}));
    let status =
        || Patch::Merge(json!({"status": {"processed": true, "podCIDRNAT": "10.0.0.0/16"}}));
    // what the other peer and we have written
    Api::<NetworkConfig>::namespaced(admin.clone(), &other)
        .create(&post, &network_config("c", &other))
        .await
        .unwrap();
    Api::<NetworkConfig>::namespaced(admin.clone(), ns)
        .create(&post, &network_config("x", ns))
        .await
        .unwrap();
    let in_ns = |n: &str| Api::<NetworkConfig>::namespaced(hostile.clone(), n);
    let secrets = |n: &str| Api::<Secret>::namespaced(hostile.clone(), n);
    let lp = ListParams::default();
    let cases: Vec<(&str, Verdict, Verdict)> = vec![
        (
            "the peer writes its own NetworkConfig (server-side apply)",
            verdict(
                in_ns(&own)
                    .patch("b", &apply, &Patch::Apply(network_config("b", &own)))
                    .await,
                "own",
            ),
            Verdict::Allowed,
        ),
        (
            "the peer reads its own NetworkConfig's status (our decision)",
            verdict(in_ns(&own).get_status("b").await, "own status"),
            Verdict::Allowed,
        ),
        (
            "(a) the peer creates another cluster's NetworkConfig in that peer's namespace",
            verdict(
                in_ns(&other)
                    .create(&post, &network_config("d", &other))
                    .await,
                "create other",
            ),
            Verdict::Forbidden,
        ),
        (
            "(a) the peer patches another peer's NetworkConfig",
            verdict(
                in_ns(&other)
                    .patch("c", &PatchParams::default(), &merge())
                    .await,
                "patch other",
            ),
            Verdict::Forbidden,
        ),
        (
            "(a) the peer applies another peer's NetworkConfig",
            verdict(
                in_ns(&other)
                    .patch("c", &apply, &Patch::Apply(network_config("c", &other)))
                    .await,
                "apply other",
            ),
            Verdict::Forbidden,
        ),
        (
            "(a) the peer creates a NetworkConfig in the release namespace",
            verdict(
                in_ns(ns).create(&post, &network_config("c", ns)).await,
                "create release",
            ),
            Verdict::Forbidden,
        ),
        (
            "(a) the peer patches a NetworkConfig in the release namespace",
            verdict(
                in_ns(ns)
                    .patch("x", &PatchParams::default(), &merge())
                    .await,
                "patch release",
            ),
            Verdict::Forbidden,
        ),
        (
            "(a) the peer lists NetworkConfigs of every namespace",
            verdict(
                Api::<NetworkConfig>::all(hostile.clone()).list(&lp).await,
                "list all",
            ),
            Verdict::Forbidden,
        ),
        (
            "(b) the peer reads the kubeconfig Secret in its own namespace",
            verdict(secrets(&own).get("isthmus-peer-b").await, "own secret"),
            Verdict::Forbidden,
        ),
        (
            "(b) the peer lists Secrets in its own namespace",
            verdict(secrets(&own).list(&lp).await, "own secrets"),
            Verdict::Forbidden,
        ),
        (
            "(b) the peer reads the gateway's key Secret",
            verdict(
                secrets(ns)
                    .get(&format!("{}-gateway-key", r.fullname))
                    .await,
                "key",
            ),
            Verdict::Forbidden,
        ),
        (
            "(b) the peer lists Secrets of every namespace",
            verdict(
                Api::<Secret>::all(hostile.clone()).list(&lp).await,
                "all secrets",
            ),
            Verdict::Forbidden,
        ),
        (
            "(c) the peer patches the status of its own NetworkConfig",
            verdict(
                in_ns(&own)
                    .patch_status("b", &PatchParams::default(), &status())
                    .await,
                "own status patch",
            ),
            Verdict::Forbidden,
        ),
        (
            "(c) the peer applies the status of its own NetworkConfig",
            verdict(
                in_ns(&own)
                    .patch_status(
                        "b",
                        &apply,
                        &Patch::Apply(json!({
                        "apiVersion": "net.isthmus.io/v1alpha1", "kind": "NetworkConfig",
                        "status": {"processed": true}})),
                    )
                    .await,
                "own status apply",
            ),
            Verdict::Forbidden,
        ),
        (
            "the network-manager answers the peer's NetworkConfig (status)",
            verdict(
                Api::<NetworkConfig>::namespaced(nm.clone(), &own)
                    .patch_status("b", &PatchParams::default(), &status())
                    .await,
                "nm status",
            ),
            Verdict::Allowed,
        ),
        (
            "the network-manager reads the kubeconfig Secret of the peer's namespace",
            verdict(
                Api::<Secret>::namespaced(nm.clone(), &own)
                    .get("isthmus-peer-b")
                    .await,
                "nm kubeconfig",
            ),
            Verdict::Allowed,
        ),
        (
            "the network-manager reads another Secret of the peer's namespace",
            verdict(
                Api::<Secret>::namespaced(nm.clone(), &own)
                    .get("decoy")
                    .await,
                "nm decoy",
            ),
            Verdict::Forbidden,
        ),
    ];
    let wrong: Vec<String> = cases
        .iter()
        .filter(|(_, got, want)| got != want)
        .map(|(what, got, want)| format!("{what}: {got:?}, the design means {want:?}"))
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // the refused status write changed nothing: the decision is still ours alone
    let stored = Api::<NetworkConfig>::namespaced(admin.clone(), &own)
        .get("b")
        .await
        .unwrap();
    assert_eq!(
        stored.status.map(|s| s.pod_cidr_nat.map(|c| c.to_string())),
        Some(Some("10.0.0.0/16".into())),
        "only the network-manager's write is there"
    );
    if r.api.is_real() {
        for n in [ns, own.as_str(), other.as_str()] {
            let _ = Api::<Namespace>::all(admin.clone())
                .delete(n, &DeleteParams::default())
                .await;
        }
    }
}
