//! One of the two clusters, as the user named it (a kubeconfig and a context, as kubectl reads
//! them: `--kubeconfig` or `$KUBECONFIG` or `~/.kube/config`, `--context` or the current one),
//! and the connection to it: a client, and what a peer's kubeconfig needs from the user's one
//! (the server URL, the CA inline, a TLS server name). Reading the kubeconfig is the only I/O
//! here besides building the client; nothing is sent to the API.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::inspect::cause::describe;
use crate::peer::error::{PeerError, Result, first_line};
use crate::peer::kubeconfig::pem_certificate;

/// Which of the two clusters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `--kubeconfig`, `--context`, `--namespace`, `--api-url`.
    Local,
    /// `--remote-kubeconfig`, `--remote-context`, `--remote-namespace`, `--remote-api-url`.
    Remote,
}

impl Role {
    /// `local` or `remote`.
    pub fn name(self) -> &'static str {
        match self {
            Role::Local => "local",
            Role::Remote => "remote",
        }
    }

    /// The prefix of this side's flags.
    pub fn flag(self) -> &'static str {
        match self {
            Role::Local => "",
            Role::Remote => "remote-",
        }
    }
}

/// How messages name a cluster: `the remote cluster (context kind-b)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    pub role: Role,
    pub context: String,
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the {} cluster (context {})",
            self.role.name(),
            self.context
        )
    }
}

/// How the user named one cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterRef {
    pub role: Role,
    /// None: `$KUBECONFIG`, then `~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    /// None: the kubeconfig's current context.
    pub context: Option<String>,
    /// The namespace isthmus is installed in.
    pub namespace: String,
    /// Where the OTHER cluster's network-manager reaches this cluster's API (None: the
    /// kubeconfig's server URL).
    pub api_url: Option<String>,
}

/// One cluster, reached.
#[derive(Clone)]
pub struct Connection {
    pub label: Label,
    pub client: kube::Client,
    /// The kubeconfig's server URL (no trailing slash).
    pub server: String,
    /// The URL peers are given (`--api-url`, or `server`).
    pub api_url: String,
    /// The CA of the API's certificate as PEM, from the kubeconfig (inline data or file).
    pub ca_pem: Option<String>,
    /// The kubeconfig's `tls-server-name`, if any.
    pub tls_server_name: Option<String>,
    /// The kubeconfig skips TLS verification.
    pub insecure: bool,
    pub namespace: String,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("label", &self.label)
            .field("server", &self.server)
            .field("api_url", &self.api_url)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

/// Reads the kubeconfig, resolves the context and builds a client whose requests give up after
/// `request_timeout`.
pub async fn connect(r: &ClusterRef, request_timeout: Duration) -> Result<Connection> {
    let role = r.role.name();
    let (kubeconfig, file) = read(r)?;
    let context = context_of(r, &kubeconfig, &file)?;
    let options = KubeConfigOptions {
        context: Some(context.clone()),
        ..KubeConfigOptions::default()
    };
    let bad = |message: String| PeerError::Kubeconfig {
        role,
        file: file.clone(),
        message,
    };
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| bad(first_line(format!("context {context}: {}", describe(&e)))))?;
    config = isthmus_kubeclient::with_timeouts(config);
    config.connect_timeout = Some(request_timeout);
    config.read_timeout = Some(request_timeout);
    let label = Label {
        role: r.role,
        context,
    };
    let server = config
        .cluster_url
        .to_string()
        .trim_end_matches('/')
        .to_owned();
    let api_url = match &r.api_url {
        Some(url) => checked_url(url).map_err(|message| PeerError::Config {
            side: label.clone(),
            message: format!("--{}api-url {url:?}: {message}", r.role.flag()),
        })?,
        None => server.clone(),
    };
    if api_url.to_ascii_lowercase().starts_with("http://") {
        // the peer's network-manager refuses such a kubeconfig: do not write one
        return Err(PeerError::Config {
            side: label,
            message: format!(
                "the peer would reach this API at {api_url}, plain HTTP: the token would cross \
                 the network in clear, and network-managers accept only https:// servers. Pass \
                 --{}api-url https://…",
                r.role.flag()
            ),
        });
    }
    let ca_pem = config.root_cert.as_ref().map(|certs| {
        certs
            .iter()
            .map(|der| pem_certificate(der))
            .collect::<String>()
    });
    let tls_server_name = config.tls_server_name.clone();
    let insecure = config.accept_invalid_certs;
    let client = kube::Client::try_from(config).map_err(|e| bad(first_line(describe(&e))))?;
    Ok(Connection {
        label,
        client,
        server,
        api_url,
        ca_pem,
        tls_server_name,
        insecure,
        namespace: r.namespace.clone(),
    })
}

fn read(r: &ClusterRef) -> Result<(Kubeconfig, PathBuf)> {
    let role = r.role.name();
    let (result, file) = match &r.kubeconfig {
        Some(path) => (Kubeconfig::read_from(path), path.clone()),
        None => (Kubeconfig::read(), default_file()),
    };
    let kubeconfig = result.map_err(|e| PeerError::Kubeconfig {
        role,
        file: file.clone(),
        message: first_line(describe(&e)),
    })?;
    Ok((kubeconfig, file))
}

/// What `Kubeconfig::read` reads, for messages.
fn default_file() -> PathBuf {
    match std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
        Some(list) => PathBuf::from(list),
        None => PathBuf::from("~/.kube/config"),
    }
}

fn context_of(r: &ClusterRef, kubeconfig: &Kubeconfig, file: &Path) -> Result<String> {
    let role = r.role.name();
    let known: Vec<String> = kubeconfig.contexts.iter().map(|c| c.name.clone()).collect();
    match &r.context {
        Some(context) if known.contains(context) => Ok(context.clone()),
        Some(context) => Err(PeerError::UnknownContext {
            role,
            file: file.to_owned(),
            context: context.clone(),
            known,
        }),
        None => kubeconfig
            .current_context
            .clone()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| PeerError::NoContext {
                role,
                flag: r.role.flag(),
                file: file.to_owned(),
            }),
    }
}

/// `url` if it is `http(s)://host[:port][/path]`, else why not.
pub fn checked_url(url: &str) -> std::result::Result<String, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("{e}"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("https" | "http"), Some(host)) if !host.is_empty() => {
            Ok(url.trim_end_matches('/').to_owned())
        }
        _ => Err("expected https://host:port".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_urls_need_a_scheme_and_a_host() {
        assert_eq!(
            checked_url("https://10.0.0.1:6443/").as_deref(),
            Ok("https://10.0.0.1:6443")
        );
        assert!(checked_url("10.0.0.1:6443").is_err());
        assert!(checked_url("ftp://x").is_err());
        assert!(checked_url("https://").is_err());
    }

    #[test]
    fn only_the_first_line_of_a_yaml_error_is_kept() {
        assert_eq!(
            first_line("bad: line 1\n --> <input>\n".into()),
            "bad: line 1"
        );
        assert_eq!(first_line("one".into()), "one");
    }

    #[test]
    fn labels_name_the_side_and_the_context() {
        let label = Label {
            role: Role::Remote,
            context: "kind-b".into(),
        };
        assert_eq!(label.to_string(), "the remote cluster (context kind-b)");
    }
}
