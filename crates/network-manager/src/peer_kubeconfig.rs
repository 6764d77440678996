//! The kubeconfig of a peer, as read from the Secret a ForeignCluster names, in the only form the
//! network-manager accepts ([`PeerKubeconfig`]), and the client configuration built from it
//! ([`client_config`]). Pure: no I/O.
//!
//! Whoever can write that Secret must not be able to make the network-manager run a command
//! (`exec`, `auth-provider`), read one of its files (`tokenFile`, `client-certificate`,
//! `client-key`, `certificate-authority`), send a password, skip the server's certificate check,
//! or go through a proxy. So only the current context's cluster and user are read, and of them
//! only: an `https://` server, an optional `tls-server-name`, an optional inline CA
//! (`certificate-authority-data`; none: the system roots), and one inline credential (`token`,
//! or `client-certificate-data` with `client-key-data`). Anything else in that cluster or user
//! is refused, even a field this code does not know (it may be a new way to run or read
//! something).
//!
//! A [`Refusal`] names the field (by position and key, e.g. `users[0].user.exec`) and never
//! quotes a value: the Secret's bytes (its token) never reach an error, a condition, an Event
//! or a log.

use base64::Engine;
use kube::config::AuthInfo;
use secrecy::SecretString;
use serde_yaml::{Mapping, Value};

/// The accepted fields of a cluster entry, for refusals of unknown ones.
const CLUSTER_FIELDS: &str = "server, certificate-authority-data, tls-server-name, \
                              insecure-skip-tls-verify: false, disable-compression, extensions";
/// The accepted fields of a user entry, for refusals of unknown ones.
const USER_FIELDS: &str = "token, client-certificate-data, client-key-data, extensions";

/// A peer's API and how the network-manager authenticates to it. `Debug` shows no credential.
#[derive(Clone, PartialEq, Eq)]
pub struct PeerKubeconfig {
    /// The API's `https://` URL.
    pub server: http::Uri,
    /// The name the server's certificate must carry, when not the URL's host.
    pub tls_server_name: Option<String>,
    /// DER certificates the server's certificate must chain to (`None`: the system roots).
    pub ca: Option<Vec<Vec<u8>>>,
    pub credential: PeerCredential,
    /// The context's default namespace.
    pub namespace: Option<String>,
}

/// The one inline credential of a peer kubeconfig. `Debug` shows its kind only.
#[derive(Clone, PartialEq, Eq)]
pub enum PeerCredential {
    /// A bearer token.
    Token(String),
    /// A client certificate and its key, base64 of PEM as in the kubeconfig (checked to decode
    /// to a `CERTIFICATE` and a `PRIVATE KEY`).
    ClientCertificate {
        certificate_data: String,
        key_data: String,
    },
}

impl std::fmt::Debug for PeerCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerCredential::Token(_) => f.write_str("Token(<redacted>)"),
            PeerCredential::ClientCertificate { .. } => {
                f.write_str("ClientCertificate(<redacted>)")
            }
        }
    }
}

impl std::fmt::Debug for PeerKubeconfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerKubeconfig")
            .field("server", &self.server)
            .field("tls_server_name", &self.tls_server_name)
            .field("ca_certificates", &self.ca.as_ref().map(Vec::len))
            .field("credential", &self.credential)
            .field("namespace", &self.namespace)
            .finish()
    }
}

/// Why a peer kubeconfig is refused: the field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct Refusal {
    /// Where, by position and key (`users[0].user.exec`); never a value of the kubeconfig.
    pub field: String,
    pub problem: Problem,
}

/// What is wrong with a field. No variant carries a value of the kubeconfig.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("not valid YAML{0}")]
    NotYaml(Position),
    #[error("must be {0}")]
    WrongType(&'static str),
    #[error("missing")]
    Missing,
    #[error("empty")]
    Empty,
    #[error("names no entry of `{0}`")]
    NoSuchEntry(&'static str),
    #[error("names more than one entry of `{0}`")]
    Ambiguous(&'static str),
    #[error(
        "runs a command inside the network-manager: refused (only inline credentials: `token`, \
         or `client-certificate-data` with `client-key-data`)"
    )]
    RunsCommand,
    #[error("reads a file inside the network-manager: refused (put the data inline, in `{0}`)")]
    ReadsFile(&'static str),
    #[error("basic authentication: refused (use `token` or a client certificate)")]
    BasicAuth,
    #[error("turns off the check of the server's certificate: refused")]
    SkipsTlsVerification,
    #[error(
        "a proxy: refused (the requests and the credential would go through a host the Secret \
         chooses, and the network-manager is built without proxy support)"
    )]
    Proxy,
    #[error("impersonation: refused (the peer grants the network-manager's own identity)")]
    Impersonation,
    #[error("must be an https:// URL (the credential must not cross the network in clear)")]
    NotHttps,
    #[error("not a valid URL with a host")]
    InvalidUrl,
    #[error("not valid base64")]
    InvalidBase64,
    #[error("holds no PEM {0}")]
    NoPem(&'static str),
    #[error("has a field that is not accepted (accepted: {0})")]
    UnknownField(&'static str),
    #[error("no credential: give `token`, or `client-certificate-data` with `client-key-data`")]
    NoCredential,
    #[error("both a token and a client certificate: give one")]
    TwoCredentials,
    #[error("needs `{0}` too")]
    Incomplete(&'static str),
}

/// Where YAML parsing stopped (line and column only, never the text there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position(pub Option<(usize, usize)>);

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some((line, column)) => write!(f, " (line {line}, column {column})"),
            None => Ok(()),
        }
    }
}

fn refuse<T>(field: impl Into<String>, problem: Problem) -> Result<T, Refusal> {
    Err(Refusal {
        field: field.into(),
        problem,
    })
}

/// Reads `text` (kubeconfig YAML) into the accepted form, or names the first field refused.
pub fn parse(text: &str) -> Result<PeerKubeconfig, Refusal> {
    let doc: Value = match serde_yaml::from_str(text) {
        Ok(doc) => doc,
        // serde_yaml's messages can quote the input: keep the position only
        Err(e) => {
            let at = e.location().map(|l| (l.line(), l.column()));
            return refuse("kubeconfig", Problem::NotYaml(Position(at)));
        }
    };
    let top = mapping(&doc, "kubeconfig")?;
    let current = string(top, "current-context", "current-context")?;
    let (i, context) = entry(top, "contexts", "context", current, "current-context")?;
    let path = format!("contexts[{i}].context");
    let cluster_name = string(context, "cluster", &format!("{path}.cluster"))?;
    let user_name = string(context, "user", &format!("{path}.user"))?;
    let namespace = optional_string(context, "namespace", &format!("{path}.namespace"))?;
    let cluster_ref = format!("{path}.cluster");
    let (k, cluster) = entry(top, "clusters", "cluster", cluster_name, &cluster_ref)?;
    let (u, user) = entry(top, "users", "user", user_name, &format!("{path}.user"))?;
    let cluster = parse_cluster(cluster, &format!("clusters[{k}].cluster"))?;
    let credential = parse_user(user, &format!("users[{u}].user"))?;
    Ok(PeerKubeconfig {
        server: cluster.server,
        tls_server_name: cluster.tls_server_name,
        ca: cluster.ca,
        credential,
        namespace: namespace.map(str::to_owned),
    })
}

/// What a cluster entry gives.
struct Cluster {
    server: http::Uri,
    tls_server_name: Option<String>,
    ca: Option<Vec<Vec<u8>>>,
}

fn parse_cluster(map: &Mapping, path: &str) -> Result<Cluster, Refusal> {
    let (mut server, mut tls_server_name, mut ca) = (None, None, None);
    for (key, value) in fields(map, path, CLUSTER_FIELDS)? {
        let at = format!("{path}.{key}");
        match key {
            "server" => server = Some(https_url(value, &at)?),
            "tls-server-name" => tls_server_name = Some(non_empty(value, &at)?.to_owned()),
            "certificate-authority-data" => ca = Some(certificates(value, &at)?),
            "insecure-skip-tls-verify" => match value {
                Value::Bool(false) => {}
                Value::Bool(true) => return refuse(at, Problem::SkipsTlsVerification),
                _ => return refuse(at, Problem::WrongType("true or false")),
            },
            "certificate-authority" => {
                return refuse(at, Problem::ReadsFile("certificate-authority-data"));
            }
            "proxy-url" => return refuse(at, Problem::Proxy),
            "disable-compression" | "extensions" => {}
            _ => return refuse(path, Problem::UnknownField(CLUSTER_FIELDS)),
        }
    }
    let Some(server) = server else {
        return refuse(format!("{path}.server"), Problem::Missing);
    };
    Ok(Cluster {
        server,
        tls_server_name,
        ca,
    })
}

fn parse_user(map: &Mapping, path: &str) -> Result<PeerCredential, Refusal> {
    let (mut token, mut cert, mut key) = (None, None, None);
    for (field, value) in fields(map, path, USER_FIELDS)? {
        let at = format!("{path}.{field}");
        match field {
            "token" => token = Some(non_empty(value, &at)?.to_owned()),
            "client-certificate-data" => cert = Some(pem_data(value, &at, "CERTIFICATE")?),
            "client-key-data" => key = Some(pem_data(value, &at, "PRIVATE KEY")?),
            "exec" | "auth-provider" => return refuse(at, Problem::RunsCommand),
            "tokenFile" | "token-file" => return refuse(at, Problem::ReadsFile("token")),
            "client-certificate" => {
                return refuse(at, Problem::ReadsFile("client-certificate-data"));
            }
            "client-key" => return refuse(at, Problem::ReadsFile("client-key-data")),
            "username" | "password" => return refuse(at, Problem::BasicAuth),
            "as" | "as-uid" | "as-groups" | "as-user-extra" => {
                return refuse(at, Problem::Impersonation);
            }
            "extensions" => {}
            _ => return refuse(path, Problem::UnknownField(USER_FIELDS)),
        }
    }
    match (token, cert, key) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => refuse(path, Problem::TwoCredentials),
        (Some(t), None, None) => Ok(PeerCredential::Token(t)),
        (None, Some(c), Some(k)) => Ok(PeerCredential::ClientCertificate {
            certificate_data: c,
            key_data: k,
        }),
        (None, Some(_), None) => refuse(
            format!("{path}.client-certificate-data"),
            Problem::Incomplete("client-key-data"),
        ),
        (None, None, Some(_)) => refuse(
            format!("{path}.client-key-data"),
            Problem::Incomplete("client-certificate-data"),
        ),
        (None, None, None) => refuse(path, Problem::NoCredential),
    }
}

/// The entries of `map` whose value is not null, keyed by name. A key that is not a string is
/// an unknown field (it is not named: it could be anything).
fn fields<'a>(
    map: &'a Mapping,
    path: &str,
    accepted: &'static str,
) -> Result<Vec<(&'a str, &'a Value)>, Refusal> {
    let mut out = Vec::with_capacity(map.len());
    for (key, value) in map {
        let Value::String(key) = key else {
            return refuse(path, Problem::UnknownField(accepted));
        };
        if !value.is_null() {
            out.push((key.as_str(), value));
        }
    }
    Ok(out)
}

/// The `inner` mapping of the one entry of list `list` named `name`; `by` is the field that
/// named it.
fn entry<'a>(
    top: &'a Mapping,
    list: &'static str,
    inner: &str,
    name: &str,
    by: &str,
) -> Result<(usize, &'a Mapping), Refusal> {
    let Some(items) = top.get(list).filter(|v| !v.is_null()) else {
        return refuse(list, Problem::Missing);
    };
    let Value::Sequence(items) = items else {
        return refuse(list, Problem::WrongType("a list"));
    };
    let mut found = None;
    for (i, item) in items.iter().enumerate() {
        let item = mapping(item, &format!("{list}[{i}]"))?;
        let named = item.get("name").and_then(Value::as_str) == Some(name);
        match (named, found) {
            (true, Some(_)) => return refuse(by, Problem::Ambiguous(list)),
            (true, None) => found = Some((i, item)),
            (false, _) => {}
        }
    }
    let Some((i, item)) = found else {
        return refuse(by, Problem::NoSuchEntry(list));
    };
    let path = format!("{list}[{i}].{inner}");
    match item.get(inner) {
        None | Some(Value::Null) => refuse(path, Problem::Missing),
        Some(v) => Ok((i, mapping(v, &path)?)),
    }
}

fn mapping<'a>(v: &'a Value, path: &str) -> Result<&'a Mapping, Refusal> {
    match v {
        Value::Mapping(m) => Ok(m),
        _ => refuse(path, Problem::WrongType("a mapping")),
    }
}

/// The non-empty string `key` of `map`.
fn string<'a>(map: &'a Mapping, key: &str, path: &str) -> Result<&'a str, Refusal> {
    match optional_string(map, key, path)? {
        Some(s) => Ok(s),
        None => refuse(path, Problem::Missing),
    }
}

fn optional_string<'a>(
    map: &'a Mapping,
    key: &str,
    path: &str,
) -> Result<Option<&'a str>, Refusal> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => non_empty(v, path).map(Some),
    }
}

fn non_empty<'a>(v: &'a Value, path: &str) -> Result<&'a str, Refusal> {
    match v {
        Value::String(s) if s.is_empty() => refuse(path, Problem::Empty),
        Value::String(s) => Ok(s),
        _ => refuse(path, Problem::WrongType("a string")),
    }
}

fn https_url(v: &Value, path: &str) -> Result<http::Uri, Refusal> {
    let Ok(uri) = non_empty(v, path)?.parse::<http::Uri>() else {
        return refuse(path, Problem::InvalidUrl);
    };
    let Some(authority) = uri.authority() else {
        return refuse(path, Problem::InvalidUrl);
    };
    if authority.as_str().contains('@') {
        // a user name and password in the URL
        return refuse(path, Problem::BasicAuth);
    }
    match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("https") => Ok(uri),
        _ => refuse(path, Problem::NotHttps),
    }
}

fn base64_bytes(v: &Value, path: &str) -> Result<Vec<u8>, Refusal> {
    let text = non_empty(v, path)?;
    match base64::engine::general_purpose::STANDARD.decode(text) {
        Ok(bytes) => Ok(bytes),
        // the decoder's message quotes the offending byte
        Err(_) => refuse(path, Problem::InvalidBase64),
    }
}

/// The PEM blocks of tag `tag` in base64 `v`, as DER.
fn pem_blocks(v: &Value, path: &str, tag: &'static str) -> Result<Vec<Vec<u8>>, Refusal> {
    let bytes = base64_bytes(v, path)?;
    let blocks = pem::parse_many(&bytes).unwrap_or_default();
    // exactly `CERTIFICATE` (as kube reads CAs); any unencrypted `… PRIVATE KEY`
    let key = tag == "PRIVATE KEY";
    let wanted =
        |t: &str| t == tag || (key && t.ends_with(" PRIVATE KEY") && !t.starts_with("ENCRYPTED"));
    let der: Vec<Vec<u8>> = blocks
        .into_iter()
        .filter(|p| wanted(p.tag()))
        .map(pem::Pem::into_contents)
        .collect();
    match der.is_empty() {
        true => refuse(path, Problem::NoPem(tag)),
        false => Ok(der),
    }
}

fn certificates(v: &Value, path: &str) -> Result<Vec<Vec<u8>>, Refusal> {
    pem_blocks(v, path, "CERTIFICATE")
}

/// `v` as given (base64 of PEM, as kube reads it), once checked to hold a `tag` block.
fn pem_data(v: &Value, path: &str, tag: &'static str) -> Result<String, Refusal> {
    pem_blocks(v, path, tag)?;
    Ok(non_empty(v, path)?.to_owned())
}

/// The client configuration for `k`, built field by field (never through kube's kubeconfig
/// loader), with isthmus's timeouts.
pub fn client_config(k: &PeerKubeconfig) -> kube::Config {
    let mut config = kube::Config::new(k.server.clone());
    if let Some(ns) = &k.namespace {
        config.default_namespace = ns.clone();
    }
    config.root_cert = k.ca.clone();
    config.tls_server_name = k.tls_server_name.clone();
    config.accept_invalid_certs = false;
    config.proxy_url = None;
    config.auth_info = match &k.credential {
        PeerCredential::Token(t) => AuthInfo {
            token: Some(SecretString::from(t.clone())),
            ..AuthInfo::default()
        },
        PeerCredential::ClientCertificate {
            certificate_data,
            key_data,
        } => AuthInfo {
            client_certificate_data: Some(certificate_data.clone()),
            client_key_data: Some(SecretString::from(key_data.clone())),
            ..AuthInfo::default()
        },
    };
    isthmus_kubeclient::with_timeouts(config)
}

#[cfg(test)]
#[path = "peer_kubeconfig_tests.rs"]
mod tests;
