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
use crate::{Error, NamedKubeconfig, Source};
use isthmus_memkube::{Credential, KubeconfigSpec, render_kubeconfig as render};

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
    /// A real control plane this process started (stopped when dropped; locked while its
    /// kube-apiserver is taken down and brought back).
    Envtest(Box<tokio::sync::Mutex<ControlPlane>>),
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
    /// The admin's bearer token, when this process made the server.
    admin_token: Option<String>,
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
    let specs: Vec<(&str, Vec<IpAddr>)> = names.iter().map(|n| (*n, Vec::new())).collect();
    start_with(source, &specs).await
}

/// [`start`], where a server this process starts also carries the given addresses in its
/// certificate (the addresses a forwarder gives it elsewhere). A real API server named by a
/// kubeconfig keeps its certificate: clients that reach it elsewhere name its own host
/// (`tls-server-name`) instead.
pub async fn start_with(
    source: &Source,
    servers: &[(&str, Vec<IpAddr>)],
) -> Result<Vec<ApiServer>, Error> {
    let mut out = Vec::with_capacity(servers.len());
    for (name, ips) in servers {
        out.push(match source {
            Source::Memkube => ApiServer::memkube_with(name, ips).await?,
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
            Source::Envtest { assets } => ApiServer::envtest(name, assets, ips).await?,
        });
    }
    Ok(out)
}

impl ApiServer {
    /// A fresh memkube, served over HTTPS on 127.0.0.1 as a real API server is: every request
    /// over the network needs a token (no anonymous access) and RBAC decides what it may do.
    /// The admin client works in-process.
    pub async fn memkube(name: &str) -> Result<ApiServer, Error> {
        Self::memkube_with(name, &[]).await
    }

    /// [`Self::memkube`] with extra addresses in its certificate.
    pub async fn memkube_with(name: &str, ips: &[IpAddr]) -> Result<ApiServer, Error> {
        let kube = MemKube::with_config(isthmus_memkube::Config {
            anonymous_is_admin: false,
            ..isthmus_memkube::Config::default()
        });
        let http = kube
            .serve_https(
                std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
                isthmus_memkube::TlsOptions {
                    ip_sans: ips.to_vec(),
                    ..isthmus_memkube::TlsOptions::default()
                },
            )
            .await
            .map_err(|e| Error::Memkube(e.to_string()))?;
        Ok(ApiServer {
            name: name.to_owned(),
            url: http.url(),
            ca_pem: http.ca_pem().map(str::to_owned),
            admin: kube.client(),
            admin_token: Some(kube.admin_token()),
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
                .map(|der| isthmus_memkube::pem_certificate(der))
                .collect::<Vec<_>>()
                .join("")
        });
        let admin = kube::Client::try_from(crate::kubeconfig::raw_answers(config))
            .map_err(|e| Error::Kubeconfig(format!("{}: {e}", entry.path.display())))?;
        Ok(ApiServer {
            name: entry.name.clone(),
            url,
            ca_pem,
            admin,
            admin_token: None,
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
            credential: Credential::Token(&plane.admin_token),
            namespace: "default",
        });
        Ok(ApiServer {
            name: name.to_owned(),
            url: plane.url(),
            ca_pem: Some(plane.ca_pem.clone()),
            admin: crate::kubeconfig::client(&yaml).await?,
            admin_token: Some(plane.admin_token.clone()),
            backend: Backend::Envtest(Box::new(tokio::sync::Mutex::new(plane))),
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

    /// The memkube instance, when it is one.
    pub fn memkube_instance(&self) -> Option<&MemKube> {
        match &self.backend {
            Backend::Memkube { kube, .. } => Some(kube),
            _ => None,
        }
    }

    /// A kubeconfig with every right, for helm and kubectl: the user's own file for a real API
    /// server named by one (its current context set to the one asked for), else one rendered
    /// with the server's admin token.
    pub fn admin_kubeconfig(&self) -> Result<String, Error> {
        match &self.backend {
            Backend::Memkube { kube, .. } => Ok(render(&KubeconfigSpec {
                name: &self.name,
                server: &self.url,
                ca_pem: self.ca_pem.as_deref(),
                tls_server_name: None,
                credential: Credential::Token(&kube.admin_token()),
                namespace: "default",
            })),
            Backend::Envtest(_) => Ok(render(&KubeconfigSpec {
                name: &self.name,
                server: &self.url,
                ca_pem: self.ca_pem.as_deref(),
                tls_server_name: None,
                credential: Credential::Token(self.admin_token.as_deref().unwrap_or_default()),
                namespace: "default",
            })),
            Backend::Kubeconfig(entry) => {
                let text = std::fs::read_to_string(&entry.path)
                    .map_err(|e| Error::Kubeconfig(format!("{}: {e}", entry.path.display())))?;
                let mut doc: serde_yaml::Value = serde_yaml::from_str(&text)
                    .map_err(|e| Error::Kubeconfig(format!("{}: {e}", entry.path.display())))?;
                if let Some(context) = &entry.context {
                    doc["current-context"] = serde_yaml::Value::String(context.clone());
                }
                name_the_host(&mut doc);
                serde_yaml::to_string(&doc).map_err(|e| Error::Kubeconfig(e.to_string()))
            }
        }
    }

    /// Takes the API away for `duration`, then brings it back: memkube refuses every connection
    /// (its fault injection); an envtest kube-apiserver is killed with SIGKILL and started again
    /// on the same data. A real API server someone else runs cannot be taken down (an error
    /// that says so).
    pub async fn outage(&self, duration: Duration) -> Result<(), Error> {
        match &self.backend {
            Backend::Memkube { kube, .. } => {
                kube.faults().outage(duration);
                tokio::time::sleep(duration).await;
                Ok(())
            }
            Backend::Envtest(plane) => {
                let mut plane = plane.lock().await;
                plane.kill_apiserver();
                tokio::time::sleep(duration).await;
                plane.restart_apiserver().await
            }
            Backend::Kubeconfig(entry) => Err(Error::Setup(format!(
                "{} is a real API server named by {}: it cannot be taken down from here",
                self.name,
                entry.path.display()
            ))),
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
        self.token_for(namespace, name, ttl, &[]).await
    }

    /// [`Self::token`] for `audiences` (none: the API server's own), as a projected
    /// ServiceAccount token with an `audience` is: for a service that reviews it, not the API.
    pub async fn token_for(
        &self,
        namespace: &str,
        name: &str,
        ttl: Duration,
        audiences: &[&str],
    ) -> Result<String, Error> {
        let api: Api<ServiceAccount> = Api::namespaced(self.admin(), namespace);
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                expiration_seconds: Some(ttl.as_secs().max(600) as i64),
                audiences: (!audiences.is_empty())
                    .then(|| audiences.iter().map(|a| (*a).to_owned()).collect()),
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
        self.kubeconfig_with(Credential::Token(token), namespace, server)
    }

    /// [`Self::kubeconfig_for`] with any credential.
    pub fn kubeconfig_with(
        &self,
        credential: Credential<'_>,
        namespace: &str,
        server: Option<&str>,
    ) -> String {
        render(&KubeconfigSpec {
            name: &self.name,
            server: server.unwrap_or(&self.url),
            ca_pem: self.ca_pem.as_deref(),
            tls_server_name: server.and_then(|_| self.tls_server_name()),
            credential,
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

    /// A client acting with `token`, built without I/O (the CA in the kubeconfig is parsed
    /// here): for callers that cannot wait.
    pub fn client_with_token_now(&self, token: &str) -> Result<kube::Client, Error> {
        let url = self
            .url
            .parse()
            .map_err(|e| Error::Kubeconfig(format!("{}: {e}", self.url)))?;
        let mut config = kube::Config::new(url);
        config.root_cert = self.ca_pem.as_deref().map(pem_to_ders).transpose()?;
        config.auth_info.token = Some(token.to_owned().into());
        kube::Client::try_from(crate::kubeconfig::raw_answers(config))
            .map_err(|e| Error::Kubeconfig(e.to_string()))
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

/// Gives every cluster of a kubeconfig the `tls-server-name` of its own host (when it has none),
/// so that a copy of it still verifies the server when given another address (a forwarder's).
fn name_the_host(doc: &mut serde_yaml::Value) {
    let Some(clusters) = doc.get_mut("clusters").and_then(|c| c.as_sequence_mut()) else {
        return;
    };
    for entry in clusters {
        let Some(cluster) = entry.get_mut("cluster").and_then(|c| c.as_mapping_mut()) else {
            continue;
        };
        let host = cluster
            .get("server")
            .and_then(|s| s.as_str())
            .and_then(|s| s.parse::<http::Uri>().ok())
            .and_then(|u| u.host().map(|h| h.trim_matches(['[', ']']).to_owned()));
        if let Some(host) = host
            && !cluster.contains_key("tls-server-name")
        {
            cluster.insert("tls-server-name".into(), host.into());
        }
    }
}

/// The DER bytes of every certificate in a PEM text.
fn pem_to_ders(pem: &str) -> Result<Vec<Vec<u8>>, Error> {
    let mut out = Vec::new();
    let mut body = String::new();
    let mut inside = false;
    for line in pem.lines().map(str::trim) {
        match line {
            "-----BEGIN CERTIFICATE-----" => {
                inside = true;
                body.clear();
            }
            "-----END CERTIFICATE-----" => {
                inside = false;
                let der: k8s_openapi::ByteString =
                    serde_json::from_value(serde_json::Value::String(std::mem::take(&mut body)))
                        .map_err(|e| Error::Certificates(format!("a PEM certificate: {e}")))?;
                out.push(der.0);
            }
            line if inside => body.push_str(line),
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copied_kubeconfig_names_its_servers_host_for_other_addresses() {
        let mut doc: serde_yaml::Value = serde_yaml::from_str(
            "clusters:\n\
             - {name: a, cluster: {server: 'https://127.0.0.1:6443'}}\n\
             - {name: b, cluster: {server: 'https://kind-b:443', tls-server-name: kube}}\n",
        )
        .unwrap();
        name_the_host(&mut doc);
        assert_eq!(
            doc["clusters"][0]["cluster"]["tls-server-name"],
            "127.0.0.1"
        );
        assert_eq!(doc["clusters"][1]["cluster"]["tls-server-name"], "kube");
    }

    #[test]
    fn a_pem_bundle_gives_every_certificate() {
        let one = isthmus_memkube::pem_certificate(&[1, 2, 3]);
        let two = isthmus_memkube::pem_certificate(&[9; 70]);
        let ders = pem_to_ders(&format!("{one}{two}")).unwrap();
        assert_eq!(ders, vec![vec![1, 2, 3], vec![9; 70]]);
        assert!(pem_to_ders("junk").unwrap().is_empty());
    }
}
