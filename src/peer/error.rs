//! Why `isthmus peer` or `isthmus unpeer` stopped: one variant per thing the user would do
//! differently, each one sentence naming the cluster (`the remote cluster (context kind-b)`) and
//! the fix. Everything found before anything was written says so by construction: those
//! variants are returned by the preflight, which writes nothing.

use std::path::PathBuf;
use std::time::Duration;

use crate::peer::side::Label;

/// A failed `peer` or `unpeer`.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("cannot read the {role} kubeconfig {}: {message}", file.display())]
    Kubeconfig {
        role: &'static str,
        file: PathBuf,
        message: String,
    },
    #[error("the {role} kubeconfig {} has no context {context:?} (it has: {})", file.display(), known.join(", "))]
    UnknownContext {
        role: &'static str,
        file: PathBuf,
        context: String,
        known: Vec<String>,
    },
    #[error("the {role} kubeconfig {} has no current context: name one with --{flag}context", file.display())]
    NoContext {
        role: &'static str,
        flag: &'static str,
        file: PathBuf,
    },
    #[error("{side}: {message}")]
    Config { side: Label, message: String },
    #[error("{side}: the API at {server} does not answer: {message}")]
    Unreachable {
        side: Label,
        server: String,
        message: String,
    },
    #[error(
        "{side}: isthmus's CRDs are not installed (the API does not serve {}); install the Helm chart or apply crds/",
        missing.join(", ")
    )]
    NoCrds {
        side: Label,
        missing: Vec<&'static str>,
    },
    #[error(
        "{side}: namespace {namespace} does not exist; install isthmus there or name its namespace with --{flag}namespace"
    )]
    NoNamespace {
        side: Label,
        namespace: String,
        flag: &'static str,
    },
    #[error(
        "{side}: isthmus is not installed in namespace {namespace} (no ConfigMap labelled {label}; \
         chart 0.2.0 or later creates it)"
    )]
    NotInstalled {
        side: Label,
        namespace: String,
        label: &'static str,
    },
    #[error("{side}: ConfigMap {namespace}/{name} is not usable: {message}")]
    BadClusterInfo {
        side: Label,
        namespace: String,
        name: String,
        message: String,
    },
    #[error(
        "{side}: the peer ServiceAccount {namespace}/{name} does not exist; install the chart with \
         peering.createPeerServiceAccount=true"
    )]
    NoPeerAccount {
        side: Label,
        namespace: String,
        name: String,
    },
    #[error("both sides are the same cluster ({why}); name two different clusters")]
    SameCluster { why: String },
    #[error(
        "the namespaces differ ({local} here, {remote} there): each network-manager writes into \
         the peer's namespace of its own namespace's name, so install both releases into \
         namespaces of the same name"
    )]
    NamespaceMismatch { local: String, remote: String },
    #[error("{side}: {message}")]
    Conflict { side: Label, message: String },
    #[error("{side}: minting a token for ServiceAccount {namespace}/{account} failed: {message}")]
    Token {
        side: Label,
        namespace: String,
        account: String,
        message: String,
    },
    #[error("{side}: {what} failed: {message}")]
    Api {
        side: Label,
        what: String,
        message: String,
    },
    #[error("{message}")]
    Apply { message: String },
    #[error("not done after {}s:\n{}", after.as_secs(), reasons.join("\n"))]
    Timeout {
        after: Duration,
        reasons: Vec<String>,
    },
    #[error("cannot write to the terminal: {0}")]
    Output(#[from] std::io::Error),
}

/// `Result` with [`PeerError`].
pub type Result<T, E = PeerError> = std::result::Result<T, E>;
