//! The real-API tier: every portable case of `fidelity` and `rbac_cases` (the bodies that
//! describe Kubernetes behaviour and that the other tests run against memkube) run against a real
//! kube-apiserver, when the environment names one: `ISTHMUS_KUBECONFIGS` (a real server you
//! have; the first one named is used) or `KUBEBUILDER_ASSETS` (envtest's binaries: a control
//! plane is started). Each case runs in a namespace of its own; the CRDs the cases use are
//! installed first. Without either variable this tier does not run, and says so loudly.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use isthmus_kubetarget::{ApiServer, Source};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};

use crate::fidelity;
use crate::rbac_cases::{self, Cluster};

/// A real API server as a [`Cluster`] of the RBAC cases.
struct Real(ApiServer);

impl Cluster for Real {
    fn admin(&self) -> Client {
        self.0.admin()
    }
    fn with_token(&self, token: &str) -> Client {
        self.0.client_with_token_now(token).expect("a client")
    }
    fn settle(&self) -> Duration {
        // RBAC changes reach a real authorizer through informers
        Duration::from_secs(2)
    }
}

type Case = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The fidelity cases, each given a client and a fresh namespace.
fn fidelity_cases(client: &Client, ns: &str) -> Vec<(&'static str, Case)> {
    use fidelity::*;
    let c = || client.clone();
    let n = ns.to_owned();
    macro_rules! cases {
        ($($module:ident :: $case:ident),* $(,)?) => {
            vec![$((
                concat!(stringify!($module), "::", stringify!($case)),
                Box::pin({ let (c, n) = (c(), n.clone()); async move { $module::$case(c, &n).await } }) as Case,
            )),*]
        };
    }
    crate::fidelity_cases!(cases)
}

/// The RBAC cases against `real`.
fn rbac_cases(real: &'static Real) -> Vec<(&'static str, Case)> {
    use rbac_cases::*;
    macro_rules! cases {
        ($($module:ident :: $case:ident),* $(,)?) => {
            vec![$((
                concat!(stringify!($module), "::", stringify!($case)),
                Box::pin($module::$case(real)) as Case,
            )),*]
        };
    }
    crate::portable_rbac_cases!(cases)
}

/// A new namespace whose name is as long as [`fidelity::NS`] (the size cases count the bytes of
/// etcd keys, which contain it).
async fn fresh_namespace(admin: &Client) -> String {
    let name: String = std::iter::once('f')
        .chain((1..fidelity::NS.len()).map(|_| fastrand::lowercase()))
        .collect();
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    Api::<Namespace>::all(admin.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("a namespace")
        .metadata
        .name
        .expect("a generated name")
}

async fn install_crds(admin: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(admin.clone());
    for crd in fidelity::crd_fixtures() {
        let name = crd.metadata.name.clone().expect("named");
        api.patch(
            &name,
            &PatchParams::apply("isthmus-tests").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap_or_else(|e| panic!("installing CRD {name}: {e}"));
    }
    // established: the API serves the new types
    tokio::time::sleep(Duration::from_secs(3)).await;
}

/// Longest a case may take.
const CASE_LIMIT: Duration = Duration::from_secs(120);

/// Runs each case in its own task, bounded by [`CASE_LIMIT`]; the names of those that failed.
async fn run(cases: Vec<(&'static str, Case)>) -> Vec<String> {
    let mut failed = Vec::new();
    for (name, case) in cases {
        match tokio::time::timeout(CASE_LIMIT, tokio::spawn(case)).await {
            Ok(Ok(())) => eprintln!("real-API tier: {name}: ok"),
            Ok(Err(e)) => {
                eprintln!("real-API tier: {name}: FAILED: {e}");
                failed.push(name.to_owned());
            }
            Err(_) => {
                eprintln!(
                    "real-API tier: {name}: FAILED: no end after {} s",
                    CASE_LIMIT.as_secs()
                );
                failed.push(name.to_owned());
            }
        }
    }
    failed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_portable_case_against_a_real_api_server() {
    let source = Source::from_env().expect("ISTHMUS_KUBECONFIGS is valid");
    if !source.is_real() {
        eprintln!(
            "\n==== REAL-API TIER NOT RUN: no real API server named (set ISTHMUS_KUBECONFIGS=a=PATH \
             or KUBEBUILDER_ASSETS=DIR); the portable cases ran against memkube only ====\n"
        );
        return;
    }
    let name = match &source {
        Source::Kubeconfigs(list) => list[0].name.clone(),
        _ => "a".to_owned(),
    };
    let server = isthmus_kubetarget::start(&source, &[name.as_str()])
        .await
        .expect("the real API server")
        .remove(0);
    eprintln!(
        "real-API tier: against {} ({})",
        server.url,
        source.describe()
    );
    let admin = server.admin();
    install_crds(&admin).await;
    let mut failed = Vec::new();
    let names: Vec<&str> = fidelity_cases(&admin, "-")
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    for case in names {
        // each case in a namespace of its own
        let ns = fresh_namespace(&admin).await;
        let one: Vec<_> = fidelity_cases(&admin, &ns)
            .into_iter()
            .filter(|(n, _)| *n == case)
            .collect();
        failed.extend(run(one).await);
        let _ = Api::<Namespace>::all(admin.clone())
            .delete(&ns, &DeleteParams::default())
            .await;
    }
    let real: &'static Real = Box::leak(Box::new(Real(server)));
    failed.extend(run(rbac_cases(real)).await);
    assert!(
        failed.is_empty(),
        "cases that failed against the real API server: {failed:?}"
    );
}
