//! HTTPS: a `kube::Client` built from `kubeconfig_yaml` verifies the serving certificate
//! against the instance's CA (and fails without it, or with another instance's CA, or for a
//! name the certificate does not carry), extra SANs, and kubectl over HTTPS with a
//! ServiceAccount token (`get`, a Forbidden error, `auth can-i`, `auth whoami`, `create
//! token`, the last three with protobuf bodies) or a bad one (401). Needs the machine's
//! kubectl.

use crate::rbac_cases::{Actor, Cluster, actor, namespace, role, role_binding, rule, sa, whoami};

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use isthmus_memkube::{Config, HttpServer, MemKube, TlsOptions, kubeconfig_yaml};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use tokio::process::Command;

struct Mem(MemKube);

impl Cluster for Mem {
    fn admin(&self) -> Client {
        self.0.client()
    }
    fn with_token(&self, token: &str) -> Client {
        self.0.client_with_token(token)
    }
}

async fn https(kube: &MemKube, addr: &str, opts: TlsOptions) -> HttpServer {
    kube.serve_https(addr.parse().unwrap(), opts).await.unwrap()
}

async fn client_from(kubeconfig: Kubeconfig) -> Client {
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

async fn client_from_yaml(yaml: &str) -> Client {
    client_from(Kubeconfig::from_yaml(yaml).unwrap()).await
}

/// Asserts the client cannot even talk to the server (TLS fails; no API answer).
async fn assert_tls_refused(client: &Client) {
    match whoami(client).await {
        Err(kube::Error::Api(status)) => panic!("the server answered: {status:?}"),
        Ok(user) => panic!("the server answered as {user}"),
        Err(_) => {}
    }
}

#[tokio::test]
async fn a_kube_client_from_the_kubeconfig_verifies_the_ca() {
    let kube = MemKube::new();
    let server = https(&kube, "127.0.0.1:0", TlsOptions::default()).await;
    assert!(
        server.url().starts_with("https://127.0.0.1:"),
        "{}",
        server.url()
    );
    let ca = server.ca_pem().unwrap();
    assert_eq!(ca, kube.ca_pem().unwrap());
    let token = kube.admin_token();
    let admin =
        client_from_yaml(&kubeconfig_yaml(&server.url(), Some(ca), &token, "default")).await;
    assert_eq!(whoami(&admin).await.unwrap(), "memkube-admin");

    let m = Mem(kube.clone());
    let ns = namespace(&m.admin()).await;
    let a = actor(&m, &ns, "remote").await;
    let remote = client_from_yaml(&kubeconfig_yaml(&server.url(), Some(ca), &a.token, &ns)).await;
    assert_eq!(whoami(&remote).await.unwrap(), a.user);
    let configmaps: Api<ConfigMap> = Api::default_namespaced(remote);
    let err = configmaps.list(&Default::default()).await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(s) if s.code == 403 && s.message.contains(&format!("in the namespace \"{ns}\"")))
    );

    let untrusted =
        client_from_yaml(&kubeconfig_yaml(&server.url(), None, &token, "default")).await;
    assert_tls_refused(&untrusted).await;
    let foreign_ca = MemKube::new().ca_pem().unwrap();
    let foreign = client_from_yaml(&kubeconfig_yaml(
        &server.url(),
        Some(&foreign_ca),
        &token,
        "default",
    ))
    .await;
    assert_tls_refused(&foreign).await;
    assert!(
        kube.serve_http("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap()
            .ca_pem()
            .is_none()
    );
}

#[tokio::test]
async fn extra_names_are_in_the_serving_certificate() {
    let kube = MemKube::new();
    let opts = TlsOptions {
        ip_sans: vec!["127.0.0.2".parse().unwrap()],
        dns_sans: vec!["api.memkube.test".into()],
    };
    let server = https(&kube, "127.0.0.2:0", opts).await;
    let ca = server.ca_pem().unwrap().to_string();
    let yaml = kubeconfig_yaml(&server.url(), Some(&ca), &kube.admin_token(), "default");
    assert_eq!(
        whoami(&client_from_yaml(&yaml).await).await.unwrap(),
        "memkube-admin"
    );
    let with_name = |name: &str| {
        let mut kc = Kubeconfig::from_yaml(&yaml).unwrap();
        kc.clusters[0].cluster.as_mut().unwrap().tls_server_name = Some(name.into());
        kc
    };
    let named = client_from(with_name("api.memkube.test")).await;
    assert_eq!(whoami(&named).await.unwrap(), "memkube-admin");
    assert_tls_refused(&client_from(with_name("other.memkube.test")).await).await;
    let plain = https(&kube, "127.0.0.2:0", TlsOptions::default()).await;
    let yaml = kubeconfig_yaml(&plain.url(), Some(&ca), &kube.admin_token(), "default");
    assert_tls_refused(&client_from_yaml(&yaml).await).await;
}

fn kubectl_path() -> PathBuf {
    let candidates = ["/usr/bin/kubectl", "/usr/local/bin/kubectl"];
    let found = candidates.iter().map(PathBuf::from).find(|p| p.exists());
    found.expect("kubectl is required for this test (looked in /usr/bin and /usr/local/bin)")
}

/// Runs kubectl with `kubeconfig`; returns (success, stdout, stderr).
async fn kubectl(home: &Path, kubeconfig: &str, args: &[&str]) -> (bool, String, String) {
    let file = home.join(format!("kubeconfig-{}", fastrand::u32(..)));
    std::fs::write(&file, kubeconfig).unwrap();
    let mut cmd = Command::new(kubectl_path());
    cmd.env("HOME", home)
        .arg("--kubeconfig")
        .arg(&file)
        .arg("--cache-dir")
        .arg(home.join("cache"))
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .expect("kubectl finished in time")
        .expect("kubectl runs");
    let text = |b: &[u8]| String::from_utf8_lossy(b).to_string();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

/// An HTTPS instance refusing anonymous requests, with ServiceAccount `operator` allowed to
/// get and list configmaps in a fresh namespace, which holds configmap `visible`.
struct KubectlFixture {
    kube: MemKube,
    server: HttpServer,
    ca: String,
    operator: Actor,
}

impl KubectlFixture {
    async fn new() -> Self {
        let kube = MemKube::with_config(Config {
            anonymous_is_admin: false,
            ..Config::default()
        });
        let server = https(&kube, "127.0.0.1:0", TlsOptions::default()).await;
        let ca = server.ca_pem().unwrap().to_string();
        let m = Mem(kube.clone());
        let ns = namespace(&m.admin()).await;
        let operator = actor(&m, &ns, "operator").await;
        role(
            &m,
            &ns,
            "reader",
            vec![rule(&["get", "list"], &[""], &["configmaps"])],
        )
        .await;
        role_binding(&m, &ns, "reader", ("Role", "reader"), vec![sa(&operator)]).await;
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some("visible".into()),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        };
        let configmaps = Api::<ConfigMap>::namespaced(m.admin(), &ns);
        configmaps
            .create(&PostParams::default(), &cm)
            .await
            .unwrap();
        Self {
            kube,
            server,
            ca,
            operator,
        }
    }

    /// A kubeconfig for the instance with `token`, in the operator's namespace.
    fn kubeconfig(&self, token: &str) -> String {
        let ns = &self.operator.namespace;
        kubeconfig_yaml(&self.server.url(), Some(&self.ca), token, ns)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_over_https_with_a_service_account_token() {
    let f = KubectlFixture::new().await;
    let (a, ns) = (&f.operator, &f.operator.namespace);
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let as_sa = f.kubeconfig(&a.token);
    let (ok, out, err) = kubectl(home, &as_sa, &["get", "configmaps", "-o", "name"]).await;
    assert!(ok && out.contains("configmap/visible"), "{out}{err}");
    let (ok, _, err) = kubectl(home, &as_sa, &["get", "secrets"]).await;
    let forbidden = format!(
        "Error from server (Forbidden): secrets is forbidden: User \"{}\" cannot list resource \"secrets\" in API group \"\" in the namespace \"{ns}\"",
        a.user
    );
    assert!(!ok && err.contains(&forbidden), "{err}");
    let (ok, out, err) = kubectl(home, &as_sa, &["auth", "can-i", "list", "configmaps"]).await;
    assert!(ok && out.trim() == "yes", "{out}{err}");
    let (ok, out, err) = kubectl(home, &as_sa, &["auth", "can-i", "list", "secrets"]).await;
    assert!(!ok && out.trim() == "no", "{out}{err}");
    let (ok, out, err) = kubectl(home, &as_sa, &["auth", "can-i", "--list"]).await;
    let configmaps = out
        .lines()
        .find(|l| l.starts_with("configmaps "))
        .unwrap_or_default();
    assert!(ok && configmaps.contains("[get list]"), "{out}{err}");
    let whoami_args = [
        "auth",
        "whoami",
        "-o",
        "jsonpath={.status.userInfo.username}",
    ];
    let (ok, out, err) = kubectl(home, &as_sa, &whoami_args).await;
    assert!(ok && out == a.user, "{out}{err}");
    f.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_over_https_creates_tokens_and_is_refused_with_a_bad_one() {
    let f = KubectlFixture::new().await;
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let as_admin = f.kubeconfig(&f.kube.admin_token());
    let args = ["create", "token", "operator", "--duration", "10m"];
    let (ok, out, err) = kubectl(home, &as_admin, &args).await;
    assert!(ok, "{err}");
    let minted = f.kube.client_with_token(out.trim());
    assert_eq!(whoami(&minted).await.unwrap(), f.operator.user);
    let stranger = f.kubeconfig("not-a-token");
    let (ok, _, err) = kubectl(home, &stranger, &["get", "configmaps"]).await;
    // "(Unauthorized)" with a warm discovery cache, client-go's 401 text with a cold one
    let refused = "error: You must be logged in to the server (";
    assert!(!ok && err.contains(refused), "{err}");
    f.server.shutdown().await;
}
