//! [`ApiServer`]: one API server of any [`Source`], with what tests and the lab need of it: an
//! admin client, tokens of ServiceAccounts (TokenRequest), kubeconfigs carrying them, and, for
//! memkube, the instance itself (fault injection).

use std::net::IpAddr;
use std::time::Duration;

use isthmus_memkube::MemKube;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::Api;
use kube::api::{ObjectMeta, PostParams};

use crate::envtest::ControlPlane;
use crate::kubeconfig::{KubeconfigSpec, render};
use crate::{Error, NamedKubeconfig, Source};

/// What is behind an [`ApiServer`].
#[derive(Debug)]
pub enum Backend {
    /// memkube, in this process, also served over HTTP.
    Memkube {
        kube: MemKube,
        http: isthmus_memkube::HttpServer,
    },
    /// A real API server someone else runs.
    Kubeconfig(NamedKubeconfig),
    /// A real control plane this process started (stopped when dropped).
    Envtest(Box<ControlPlane>),
}

/// One API server.
pub struct ApiServer {
    /// The name the lab or the test gave it (`a`, `b`, …).
    pub name: String,
    /// Its URL as seen from this host.
    pub url: String,
    /// The CA of its serving certificate, when it is not publicly trusted.
    pub ca_pem: Option<String>,
    admin: kube::Client,
    backend: Backend,
}

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServer")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

/// Starts (or connects to) one API server per name.
pub async fn start(source: &Source, names: &[&str]) -> Result<Vec<ApiServer>, Error> {
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        out.push(match source {
            Source::Memkube => ApiServer::memkube(name).await?,
            Source::Kubeconfigs(list) => {
                let entry = list.iter().find(|k| k.name == *name).ok_or_else(|| {
                    Error::Source(format!(
                        "no kubeconfig for {name} (named: {})",
                        list.iter()
                            .map(|k| k.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?;
                ApiServer::kubeconfig(entry.clone()).await?
            }
            Source::Envtest { assets } => ApiServer::envtest(name, assets, &[]).await?,
        });
    }
    Ok(out)
}

impl ApiServer {
    /// A fresh memkube, served over HTTP on 127.0.0.1.
    pub async fn memkube(name: &str) -> Result<ApiServer, Error> {
        let kube = MemKube::new();
        let http = kube
            .serve_http(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .map_err(|e| Error::Memkube(e.to_string()))?;
        Ok(ApiServer {
            name: name.to_owned(),
            url: http.url(),
            ca_pem: None,
            admin: kube.client(),
            backend: Backend::Memkube { kube, http },
        })
    }

    /// A real API server named by a kubeconfig (the user's own: its credentials, exec plugins
    /// included, are trusted as kubectl trusts them).
    pub async fn kubeconfig(entry: NamedKubeconfig) -> Result<ApiServer, Error> {
        let kc = kube::config::Kubeconfig::read_from(&entry.path)
            .map_err(|e| Error::Kubeconfig(format!("{}: {e}", entry.path.display())))?;
        let options = kube::config::KubeConfigOptions {
            context: entry.context.clone(),
            ..Default::default()
        };
        let config = kube::Config::from_custom_kubeconfig(kc, &options)
            .await
            .map_err(|e| Error::Kubeconfig(format!("{}: {e}", entry.path.display())))?;
        let url = config
            .cluster_url
            .to_string()
            .trim_end_matches('/')
            .to_owned();
        let ca_pem = config.root_cert.as_ref().map(|certs| {
            certs
                .iter()
                .map(|der| der_to_pem(der))
                .collect::<Vec<_>>()
                .join("")
        });
        let admin = kube::Client::try_from(config)
            .map_err(|e| Error::Kubeconfig(format!("{}: {e}", entry.path.display())))?;
        Ok(ApiServer {
            name: entry.name.clone(),
            url,
            ca_pem,
            admin,
            backend: Backend::Kubeconfig(entry),
        })
    }

    /// A control plane started from envtest's binaries; `extra_ips` go into its certificate.
    pub async fn envtest(
        name: &str,
        assets: &std::path::Path,
        extra_ips: &[IpAddr],
    ) -> Result<ApiServer, Error> {
        let plane = ControlPlane::start(assets, extra_ips).await?;
        let yaml = render(&KubeconfigSpec {
            name,
            server: &plane.url(),
            ca_pem: Some(&plane.ca_pem),
            tls_server_name: None,
            token: &plane.admin_token,
            namespace: "default",
        });
        Ok(ApiServer {
            name: name.to_owned(),
            url: plane.url(),
            ca_pem: Some(plane.ca_pem.clone()),
            admin: crate::kubeconfig::client(&yaml).await?,
            backend: Backend::Envtest(Box::new(plane)),
        })
    }

    /// A client with every right.
    pub fn admin(&self) -> kube::Client {
        self.admin.clone()
    }

    /// What is behind it.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// Mutable access (to kill and restart an envtest kube-apiserver).
    pub fn backend_mut(&mut self) -> &mut Backend {
        &mut self.backend
    }

    /// The memkube instance, when it is one.
    pub fn memkube_instance(&self) -> Option<&MemKube> {
        match &self.backend {
            Backend::Memkube { kube, .. } => Some(kube),
            _ => None,
        }
    }

    /// Whether it is a real kube-apiserver.
    pub fn is_real(&self) -> bool {
        !matches!(self.backend, Backend::Memkube { .. })
    }

    /// Creates namespace `name` unless it exists.
    pub async fn ensure_namespace(&self, name: &str) -> Result<(), Error> {
        let api: Api<Namespace> = Api::all(self.admin());
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                ..Default::default()
            },
            ..Default::default()
        };
        match api.create(&PostParams::default(), &ns).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(Error::api(format!("creating namespace {name}"), e)),
        }
    }

    /// A token of ServiceAccount `namespace/name`, minted through the TokenRequest API (the
    /// ServiceAccount must exist), valid for `ttl` (at least 10 minutes, as the API requires).
    pub async fn token(&self, namespace: &str, name: &str, ttl: Duration) -> Result<String, Error> {
        let api: Api<ServiceAccount> = Api::namespaced(self.admin(), namespace);
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                expiration_seconds: Some(ttl.as_secs().max(600) as i64),
                ..Default::default()
            }),
            ..Default::default()
        };
        let answer = api
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .map_err(|e| {
                Error::api(
                    format!("minting a token for ServiceAccount {namespace}/{name}"),
                    e,
                )
            })?;
        answer
            .status
            .and_then(|s| s.token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::Setup(format!("the API minted no token for {namespace}/{name}")))
    }

    /// A kubeconfig that reaches this server at `server` (default: its own URL) with `token`.
    pub fn kubeconfig_for(&self, token: &str, namespace: &str, server: Option<&str>) -> String {
        render(&KubeconfigSpec {
            name: &self.name,
            server: server.unwrap_or(&self.url),
            ca_pem: self.ca_pem.as_deref(),
            tls_server_name: server.and_then(|_| self.tls_server_name()),
            token,
            namespace,
        })
    }

    /// The name the server's certificate carries, for a client that reaches it through another
    /// address (none for plain HTTP).
    fn tls_server_name(&self) -> Option<&str> {
        self.url
            .strip_prefix("https://")
            .and_then(|rest| rest.rsplit_once(':').map(|(host, _)| host))
            .map(|host| host.trim_start_matches('[').trim_end_matches(']'))
    }

    /// A client acting with `token` (over the network, as another process would).
    pub async fn client_for_token(
        &self,
        token: &str,
        namespace: &str,
    ) -> Result<kube::Client, Error> {
        crate::kubeconfig::client(&self.kubeconfig_for(token, namespace, None)).await
    }
}

fn der_to_pem(der: &[u8]) -> String {
    let body = crate::kubeconfig::base64(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}
